/*
 * weights.h - tensor metadata from the header of a safetensors or GGUF file
 *
 * A model file lives in the blob store as parts, and may be tens of GiB: it
 * is never held in memory.  The parser reads it through a positional read
 * callback and looks only at the header: the tensor names, dtypes, shapes
 * and where each tensor's bytes lie, and the scalar metadata.  The tensor
 * data itself is never read.
 *
 * Everything in a header is untrusted input (a client uploads the file):
 * lengths and counts are bounded (see the BFDB_WEIGHTS_MAX_* limits), every
 * size computation is checked for overflow, and a malformed header gives
 * BFDB_EINVAL with a message, never a crash or an allocation the file's
 * size does not justify.
 *
 * Pure functions over the caller's callback: no global state, usable from
 * any process or thread.
 */
#ifndef BFDB_COMMON_WEIGHTS_H
#define BFDB_COMMON_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

/* Limits on hostile headers.  A safetensors JSON header above
 * MAX_JSON is refused (the reference implementation's own limit is
 * 100 MB); a GGUF header may be larger (its tokenizer vocabulary sits in
 * the key-values) but no more than MAX_GGUF_HEADER bytes are walked. */
#define BFDB_WEIGHTS_MAX_JSON (100u << 20)          /* safetensors header */
#define BFDB_WEIGHTS_MAX_GGUF_HEADER (512u << 20)   /* GGUF kv + tensor info */
#define BFDB_WEIGHTS_MAX_STRING (64u << 20)         /* a GGUF string value */
#define BFDB_WEIGHTS_MAX_NAME (64u << 10)           /* a GGUF key, tensor name */
#define BFDB_WEIGHTS_MAX_TENSORS 10000000u          /* GGUF tensor_count */
#define BFDB_WEIGHTS_MAX_KV 1000000u                /* GGUF metadata_kv_count */
#define BFDB_WEIGHTS_MAX_GGUF_DIMS 8u               /* GGUF n_dims */
#define BFDB_WEIGHTS_MAX_ST_DIMS 64u                /* safetensors shape rank */
#define BFDB_WEIGHTS_MAX_NESTING 16u                /* GGUF arrays of arrays */

/* nbytes of a tensor whose dtype's size is not known (a GGUF type newer
 * than this file) */
#define BFDB_WEIGHTS_NBYTES_UNKNOWN UINT64_MAX

enum bfdb_weights_format {
    BFDB_WF_NONE = 0,
    BFDB_WF_SAFETENSORS = 1,
    BFDB_WF_GGUF = 2
};

struct bfdb_tensor {
    char *name;
    char *dtype;      /* "F32", "BF16", "Q4_K", ...; GGUF unknown: "type<N>" */
    uint64_t *shape;  /* ndim dims, as the file lists them (NULL if ndim 0);
                       * GGUF lists the fastest-varying dim first,
                       * safetensors the slowest (row-major) */
    uint32_t ndim;
    uint64_t offset;  /* absolute file offset of the tensor's bytes */
    uint64_t nbytes;  /* their length, or BFDB_WEIGHTS_NBYTES_UNKNOWN */
};

struct bfdb_weights_meta {
    int format;               /* enum bfdb_weights_format */
    uint32_t version;         /* GGUF version (2 or 3); 0 for safetensors */
    uint64_t data_start;      /* file offset where the tensor data begins */
    struct bfdb_tensor *tensors; /* sorted by name (strcmp) */
    size_t ntensors;
    uint64_t parameter_count; /* sum over tensors of the product of the
                               * shape, saturating at UINT64_MAX */
    char **dtypes;            /* distinct dtype names, sorted (strcmp) */
    size_t ndtypes;
    /* Scalar metadata as text.  safetensors: the "__metadata__" strings,
     * sorted by key.  GGUF: every key-value in file order; numbers in
     * decimal (floats in the shortest form that reads back exactly),
     * bools "true"/"false", strings as is, arrays summarised as
     * "[array of 32000 string]".  GGUF strings are not checked by their
     * writers: bytes that are not UTF-8 (and NUL) become U+FFFD, so every
     * string here is valid UTF-8. */
    char **keys;
    char **values;
    size_t nkv;
};

/* bfdb_weights_read_fn - positional read: up to n bytes at file offset off
 * into buf, the count in *got (fewer than n is allowed, 0 only at end of
 * file).  Returns 0 or a negative BFDB_E* code, which the parser passes
 * through unchanged. */
typedef int (*bfdb_weights_read_fn)(void *arg, uint64_t off, void *buf,
                                    size_t n, size_t *got);

/* bfdb_weights_sniff - the format the first n bytes of a file of size
 * bytes say: BFDB_WF_GGUF for the magic "GGUF" and a version from 1 to 3
 * in either byte order, BFDB_WF_SAFETENSORS for a plausible header length
 * (2..MAX_JSON, within size) followed by '{', else BFDB_WF_NONE.  GGUF
 * needs n >= 8, safetensors n >= 9 (16 recommended); never reads past
 * head[n).  A GGUF that bfdb_weights_parse() refuses (version 1,
 * big-endian) is still reported as GGUF. */
int bfdb_weights_sniff(const void *head, size_t n, uint64_t size);

/* bfdb_weights_parse - read and check the header of the size-byte file
 * behind rd, filling *out (which the caller frees with
 * bfdb_weights_meta_free(), on success only: on failure *out is left
 * empty).  Reads only the header, through a 64 KiB window, plus (for
 * safetensors) a buffer for its JSON.
 * Returns 0; BFDB_EINVAL for a file that is neither format, is malformed
 * or truncated (the callback returning 0 bytes before size), or exceeds a
 * limit, with a message in err; BFDB_ENOMEM; or the callback's own code.
 * err (errlen bytes, may be NULL if errlen is 0) always gets a message on
 * failure. */
int bfdb_weights_parse(bfdb_weights_read_fn rd, void *arg, uint64_t size,
                       struct bfdb_weights_meta *out, char *err,
                       size_t errlen);

/* bfdb_weights_meta_free - release what bfdb_weights_parse() filled and
 * zero *m; safe on a zeroed or already freed struct. */
void bfdb_weights_meta_free(struct bfdb_weights_meta *m);

/* bfdb_weights_format_name - "safetensors", "gguf" or "none" */
const char *bfdb_weights_format_name(int format);

#endif /* BFDB_COMMON_WEIGHTS_H */
