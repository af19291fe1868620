/*
 * weights.c - safetensors and GGUF header parsing (see weights.h)
 *
 * FILE LAYOUTS (all integers little-endian)
 *
 * safetensors:
 *     u64 N | N bytes of UTF-8 JSON | data
 *   The JSON is one object: tensor name -> {"dtype": "F32", "shape": [2, 3],
 *   "data_offsets": [begin, end]}, offsets relative to the start of the
 *   data (8 + N), plus an optional "__metadata__": {string: string}.
 *
 * GGUF (versions 2 and 3; version 1 had 32-bit counts and is refused):
 *     "GGUF" | u32 version | u64 tensor_count | u64 kv_count
 *     kv_count x  { string key | u32 type | value }
 *     tensor_count x { string name | u32 n_dims | u64 dims[n_dims]
 *                      | u32 ggml_type | u64 offset }
 *     padding to general.alignment (default 32) | data
 *   string = u64 length | bytes (no NUL); value types: 0 u8, 1 i8, 2 u16,
 *   3 i16, 4 u32, 5 i32, 6 f32, 7 bool (1 byte), 8 string,
 *   9 array = { u32 elem_type | u64 count | count values }, 10 u64, 11 i64,
 *   12 f64.  A tensor's offset is relative to the data and a multiple of
 *   the alignment.
 *
 * Both are read through a 64 KiB window over the caller's read callback.
 * Every length or count from the file is checked against what is left of
 * the file before it is used, so a hostile count costs no more work than
 * the bytes that back it.
 */
#include "config.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/error.h"
#include "common/util.h"
#include "common/weights.h"

#define WINDOW (64u << 10)
#define GGUF_DEFAULT_ALIGNMENT 32u

/* ------------------------------------------------------------------ */
/* errors and checked arithmetic                                       */
/* ------------------------------------------------------------------ */

struct reader {
    bfdb_weights_read_fn rd;
    void *arg;
    uint64_t size;   /* file size */
    uint64_t limit;  /* no header byte is read at or past this offset */
    uint8_t *win;    /* window over [win_off, win_off + win_len) */
    size_t win_cap;
    uint64_t win_off;
    size_t win_len;
    uint64_t pos;    /* next offset to read; pos <= limit <= size */
    char *err;
    size_t errlen;
};

__attribute__((format(printf, 3, 4))) static int
fail(struct reader *r, int rc, const char *fmt, ...)
{
    if (r->err && r->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->err, r->errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static int
oom(struct reader *r)
{
    return fail(r, BFDB_ENOMEM, "out of memory");
}

/* mul_ok / add_ok - *out = a op b; 0 if that overflows 64 bits */
static int
mul_ok(uint64_t a, uint64_t b, uint64_t *out)
{
    if (a != 0 && b > UINT64_MAX / a)
        return 0;
    *out = a * b;
    return 1;
}

static int
add_ok(uint64_t a, uint64_t b, uint64_t *out)
{
    if (b > UINT64_MAX - a)
        return 0;
    *out = a + b;
    return 1;
}

static uint64_t
sat_add(uint64_t a, uint64_t b)
{
    uint64_t r;
    return add_ok(a, b, &r) ? r : UINT64_MAX;
}

/* shape_elems - product of the dims, saturating; a zero dim gives 0
 * whatever the others are (so [0, 2^40, 2^40] is 0, not "overflow") */
static uint64_t
shape_elems(const uint64_t *shape, uint32_t ndim, int *overflow)
{
    uint64_t n = 1;
    *overflow = 0;
    for (uint32_t i = 0; i < ndim; i++)
        if (shape[i] == 0)
            return 0;
    for (uint32_t i = 0; i < ndim; i++)
        if (!mul_ok(n, shape[i], &n)) {
            *overflow = 1;
            return UINT64_MAX;
        }
    return n;
}

static uint32_t
le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static uint64_t
le64(const uint8_t *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* ------------------------------------------------------------------ */
/* the windowed reader                                                 */
/* ------------------------------------------------------------------ */

/* read_exact - n bytes at off straight from the callback, looping over
 * short counts */
static int
read_exact(struct reader *r, uint64_t off, uint8_t *dst, size_t n)
{
    size_t done = 0;
    while (done < n) {
        size_t got = 0;
        int rc = r->rd(r->arg, off + done, dst + done, n - done, &got);
        if (rc)
            return fail(r, rc, "could not read the file at offset %" PRIu64
                        ": %s", off + done, bfdb_strerror(rc));
        if (got > n - done)
            return fail(r, BFDB_EINTERNAL, "read callback returned %zu bytes"
                        " for a %zu-byte read", got, n - done);
        if (got == 0)
            return fail(r, BFDB_EINVAL, "file ends at offset %" PRIu64
                        ", before its stated size %" PRIu64, off + done,
                        r->size);
        done += got;
    }
    return 0;
}

/* need - fail unless n more header bytes exist at pos */
static int
need(struct reader *r, uint64_t n, const char *what)
{
    if (n <= r->limit - r->pos)
        return 0;
    if (r->limit < r->size && n <= r->size - r->pos)
        return fail(r, BFDB_EINVAL, "header longer than the %" PRIu64
                    "-byte limit (reading %s at offset %" PRIu64 ")",
                    r->limit, what, r->pos);
    return fail(r, BFDB_EINVAL, "truncated: %s at offset %" PRIu64 " needs %"
                PRIu64 " bytes, the file has %" PRIu64 " left", what, r->pos,
                n, r->size - r->pos);
}

static int
rd_bytes(struct reader *r, void *dst, size_t n, const char *what)
{
    uint8_t *d = dst;
    int rc = need(r, n, what);
    if (rc)
        return rc;
    while (n) {
        if (r->pos >= r->win_off && r->pos < r->win_off + r->win_len) {
            size_t at = (size_t)(r->pos - r->win_off);
            size_t k = r->win_len - at;
            if (k > n)
                k = n;
            memcpy(d, r->win + at, k);
            d += k;
            n -= k;
            r->pos += k;
            continue;
        }
        if (n >= r->win_cap) {
            /* a large run (the safetensors JSON): skip the window */
            if ((rc = read_exact(r, r->pos, d, n)))
                return rc;
            r->pos += n;
            return 0;
        }
        uint64_t left = r->size - r->pos;
        size_t want = left < r->win_cap ? (size_t)left : r->win_cap;
        r->win_len = 0;
        r->win_off = r->pos;
        if ((rc = read_exact(r, r->pos, r->win, want)))
            return rc;
        r->win_len = want;
    }
    return 0;
}

static int
rd_skip(struct reader *r, uint64_t n, const char *what)
{
    int rc = need(r, n, what);
    if (rc)
        return rc;
    r->pos += n;
    return 0;
}

static int
rd_u32(struct reader *r, uint32_t *v, const char *what)
{
    uint8_t b[4];
    int rc = rd_bytes(r, b, 4, what);
    if (rc == 0)
        *v = le32(b);
    return rc;
}

static int
rd_u64(struct reader *r, uint64_t *v, const char *what)
{
    uint8_t b[8];
    int rc = rd_bytes(r, b, 8, what);
    if (rc == 0)
        *v = le64(b);
    return rc;
}

/* ------------------------------------------------------------------ */
/* small helpers                                                       */
/* ------------------------------------------------------------------ */

/* utf8_clean - a NUL-terminated copy of p[0..n) with every byte that is
 * not part of a well-formed UTF-8 character, and every NUL, replaced by
 * U+FFFD; NULL if out of memory */
static char *
utf8_clean(const uint8_t *p, size_t n)
{
    if (n > (SIZE_MAX - 1) / 3)
        return NULL;
    char *out = malloc(n * 3 + 1);
    size_t o = 0;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        size_t len = c < 0x80 ? 1
                     : c >= 0xc2 && c <= 0xdf ? 2
                     : c >= 0xe0 && c <= 0xef ? 3
                     : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
        if (c != 0 && len && len <= n - i && bfdb_utf8_valid(p + i, len)) {
            memcpy(out + o, p + i, len);
            o += len;
            i += len;
        } else {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        }
    }
    out[o] = '\0';
    char *shrunk = realloc(out, o + 1);
    return shrunk ? shrunk : out;
}

static char *
dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* grow - make room for one more element in *arr (cap in *cap) */
static int
grow(void **arr, size_t *cap, size_t n, size_t elsz)
{
    if (n < *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 16;
    if (ncap < *cap || ncap > SIZE_MAX / elsz)
        return BFDB_ENOMEM;
    void *p = realloc(*arr, ncap * elsz);
    if (!p)
        return BFDB_ENOMEM;
    *arr = p;
    *cap = ncap;
    return 0;
}

/* kv_push - append key/value (taking ownership of both, freed on failure) */
static int
kv_push(struct reader *r, struct bfdb_weights_meta *m, size_t *cap,
        char *key, char *value)
{
    size_t kcap = *cap;
    if (grow((void **)&m->keys, &kcap, m->nkv, sizeof(char *)) ||
        grow((void **)&m->values, cap, m->nkv, sizeof(char *))) {
        free(key);
        free(value);
        return oom(r);
    }
    /* both arrays grew to the same capacity: kcap == *cap */
    m->keys[m->nkv] = key;
    m->values[m->nkv] = value;
    m->nkv++;
    return 0;
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
cmp_tensor(const void *a, const void *b)
{
    return strcmp(((const struct bfdb_tensor *)a)->name,
                  ((const struct bfdb_tensor *)b)->name);
}

/* finish - sort the tensors, sum the parameters, collect the dtypes;
 * EINVAL on two tensors with one name */
static int
finish(struct reader *r, struct bfdb_weights_meta *m)
{
    if (m->ntensors == 0)
        return 0;
    qsort(m->tensors, m->ntensors, sizeof(*m->tensors), cmp_tensor);
    char **dt = malloc(m->ntensors * sizeof(*dt));
    if (!dt)
        return oom(r);
    m->parameter_count = 0;
    for (size_t i = 0; i < m->ntensors; i++) {
        struct bfdb_tensor *t = &m->tensors[i];
        int ovf;
        if (i && strcmp(t->name, m->tensors[i - 1].name) == 0) {
            free(dt);
            return fail(r, BFDB_EINVAL, "duplicate tensor name \"%s\"",
                        t->name);
        }
        m->parameter_count =
            sat_add(m->parameter_count, shape_elems(t->shape, t->ndim, &ovf));
        dt[i] = t->dtype;
    }
    qsort(dt, m->ntensors, sizeof(*dt), cmp_str);
    m->dtypes = malloc(m->ntensors * sizeof(*m->dtypes));
    if (!m->dtypes) {
        free(dt);
        return oom(r);
    }
    for (size_t i = 0; i < m->ntensors; i++) {
        if (i && strcmp(dt[i], dt[i - 1]) == 0)
            continue;
        if (!(m->dtypes[m->ndtypes] = dup_str(dt[i]))) {
            free(dt);
            return oom(r);
        }
        m->ndtypes++;
    }
    free(dt);
    return 0;
}

/* ------------------------------------------------------------------ */
/* safetensors                                                         */
/* ------------------------------------------------------------------ */

/* st_dtype_bits - bits per element of a safetensors dtype, 0 if unknown
 * (the list of the reference implementation's Dtype::bitsize) */
static unsigned
st_dtype_bits(const char *d)
{
    static const struct {
        const char *name;
        unsigned bits;
    } tab[] = {
        {"BOOL", 8},     {"U8", 8},       {"I8", 8},       {"F8_E5M2", 8},
        {"F8_E4M3", 8},  {"F8_E8M0", 8},  {"I16", 16},     {"U16", 16},
        {"F16", 16},     {"BF16", 16},    {"I32", 32},     {"U32", 32},
        {"F32", 32},     {"C64", 64},     {"F64", 64},     {"I64", 64},
        {"U64", 64},     {"F4", 4},       {"F6_E2M3", 6},  {"F6_E3M2", 6},
    };
    for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
        if (strcmp(d, tab[i].name) == 0)
            return tab[i].bits;
    return 0;
}

/* json_u64 - a JSON value as a non-negative integer */
static int
json_u64(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return 0;
    *out = (uint64_t)json_integer_value(v);
    return 1;
}

static int
st_tensor(struct reader *r, const char *name, json_t *v, uint64_t data_start,
          uint64_t data_len, struct bfdb_tensor *t)
{
    json_t *jd = json_object_get(v, "dtype");
    json_t *js = json_object_get(v, "shape");
    json_t *jo = json_object_get(v, "data_offsets");
    uint64_t begin, end;

    if (!json_is_object(v))
        return fail(r, BFDB_EINVAL, "tensor \"%s\" is not a JSON object",
                    name);
    if (!json_is_string(jd) || json_string_length(jd) == 0)
        return fail(r, BFDB_EINVAL, "tensor \"%s\" has no dtype string",
                    name);
    if (!json_is_array(js))
        return fail(r, BFDB_EINVAL, "tensor \"%s\" has no shape array", name);
    if (json_array_size(js) > BFDB_WEIGHTS_MAX_ST_DIMS)
        return fail(r, BFDB_EINVAL, "tensor \"%s\" has %zu dimensions, more"
                    " than %u", name, json_array_size(js),
                    BFDB_WEIGHTS_MAX_ST_DIMS);
    if (!json_is_array(jo) || json_array_size(jo) != 2 ||
        !json_u64(json_array_get(jo, 0), &begin) ||
        !json_u64(json_array_get(jo, 1), &end))
        return fail(r, BFDB_EINVAL, "tensor \"%s\": data_offsets is not two"
                    " non-negative integers", name);
    if (begin > end || end > data_len)
        return fail(r, BFDB_EINVAL, "tensor \"%s\": data_offsets [%" PRIu64
                    ", %" PRIu64 "] outside the %" PRIu64 "-byte data",
                    name, begin, end, data_len);

    if (!(t->name = dup_str(name)) ||
        !(t->dtype = dup_str(json_string_value(jd))))
        return oom(r);
    t->ndim = (uint32_t)json_array_size(js);
    if (t->ndim && !(t->shape = malloc(t->ndim * sizeof(*t->shape))))
        return oom(r);
    for (uint32_t i = 0; i < t->ndim; i++)
        if (!json_u64(json_array_get(js, i), &t->shape[i]))
            return fail(r, BFDB_EINVAL, "tensor \"%s\": shape is not an"
                        " array of non-negative integers", name);
    t->offset = data_start + begin; /* <= size: checked above */
    t->nbytes = end - begin;

    /* Whatever the dtype, more than 2^64 elements cannot be in a file. */
    int ovf;
    uint64_t elems = shape_elems(t->shape, t->ndim, &ovf);
    if (ovf)
        return fail(r, BFDB_EINVAL, "tensor \"%s\": the shape's element"
                    " count overflows 64 bits", name);
    unsigned bits = st_dtype_bits(t->dtype);
    if (bits) {
        /* bytes = elems * bits / 8 without overflowing the product */
        uint64_t q = elems / 8, rem = (elems % 8) * bits, want;
        if (!mul_ok(q, bits, &want) || rem % 8 != 0 ||
            !add_ok(want, rem / 8, &want))
            return fail(r, BFDB_EINVAL, "tensor \"%s\": %s elements of shape"
                        " %" PRIu64 " do not fill whole bytes or overflow",
                        name, t->dtype, elems);
        if (want != t->nbytes)
            return fail(r, BFDB_EINVAL, "tensor \"%s\": data_offsets span %"
                        PRIu64 " bytes, %" PRIu64 " %s elements need %"
                        PRIu64, name, t->nbytes, elems, t->dtype, want);
    }
    return 0;
}

struct kvpair {
    char *k, *v;
};

static int
cmp_kvpair(const void *a, const void *b)
{
    return strcmp(((const struct kvpair *)a)->k,
                  ((const struct kvpair *)b)->k);
}

/* sort_kv - sort m's key-values by key */
static int
sort_kv(struct reader *r, struct bfdb_weights_meta *m)
{
    if (m->nkv < 2)
        return 0;
    struct kvpair *p = malloc(m->nkv * sizeof(*p));
    if (!p)
        return oom(r);
    for (size_t i = 0; i < m->nkv; i++) {
        p[i].k = m->keys[i];
        p[i].v = m->values[i];
    }
    qsort(p, m->nkv, sizeof(*p), cmp_kvpair);
    for (size_t i = 0; i < m->nkv; i++) {
        m->keys[i] = p[i].k;
        m->values[i] = p[i].v;
    }
    free(p);
    return 0;
}

static int
st_metadata(struct reader *r, json_t *obj, struct bfdb_weights_meta *m)
{
    const char *k;
    json_t *v;
    size_t cap = 0;

    if (!json_is_object(obj))
        return fail(r, BFDB_EINVAL, "__metadata__ is not a JSON object");
    json_object_foreach (obj, k, v) {
        if (!json_is_string(v))
            return fail(r, BFDB_EINVAL, "__metadata__ value of \"%s\" is not"
                        " a string", k);
        char *ks = dup_str(k), *vs = dup_str(json_string_value(v));
        if (!ks || !vs) {
            free(ks);
            free(vs);
            return oom(r);
        }
        int rc = kv_push(r, m, &cap, ks, vs);
        if (rc)
            return rc;
    }
    /* JSON objects are unordered: report the keys sorted, values along */
    return sort_kv(r, m);
}

static int
parse_safetensors(struct reader *r, struct bfdb_weights_meta *m)
{
    uint64_t n;
    int rc;

    if ((rc = rd_u64(r, &n, "header length")))
        return rc;
    if (n > BFDB_WEIGHTS_MAX_JSON)
        return fail(r, BFDB_EINVAL, "safetensors header length %" PRIu64
                    " exceeds the %u-byte limit", n, BFDB_WEIGHTS_MAX_JSON);
    if (n > r->size - 8)
        return fail(r, BFDB_EINVAL, "safetensors header length %" PRIu64
                    " exceeds the file (%" PRIu64 " bytes)", n, r->size);

    char *buf = malloc(n ? (size_t)n : 1);
    if (!buf)
        return oom(r);
    if ((rc = rd_bytes(r, buf, (size_t)n, "JSON header"))) {
        free(buf);
        return rc;
    }
    json_error_t jerr;
    json_t *root = json_loadb(buf, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
    free(buf);
    if (!root)
        return fail(r, BFDB_EINVAL, "safetensors header is not valid JSON:"
                    " %s (line %d, column %d)", jerr.text, jerr.line,
                    jerr.column);
    if (!json_is_object(root)) {
        json_decref(root);
        return fail(r, BFDB_EINVAL, "safetensors header is not a JSON"
                    " object");
    }

    m->format = BFDB_WF_SAFETENSORS;
    m->data_start = 8 + n;
    uint64_t data_len = r->size - m->data_start;
    json_t *meta = json_object_get(root, "__metadata__");
    size_t nt = json_object_size(root) - (meta ? 1 : 0);
    if (nt && !(m->tensors = calloc(nt, sizeof(*m->tensors)))) {
        json_decref(root);
        return oom(r);
    }
    const char *k;
    json_t *v;
    rc = 0;
    json_object_foreach (root, k, v) {
        if (v == meta)
            continue;
        /* counted before the call so that meta_free sees the partly
         * filled tensor on failure */
        struct bfdb_tensor *t = &m->tensors[m->ntensors++];
        if ((rc = st_tensor(r, k, v, m->data_start, data_len, t)))
            break;
    }
    if (rc == 0 && meta)
        rc = st_metadata(r, meta, m);
    json_decref(root);
    return rc ? rc : finish(r, m);
}

/* ------------------------------------------------------------------ */
/* GGUF                                                                */
/* ------------------------------------------------------------------ */

enum {
    GV_UINT8, GV_INT8, GV_UINT16, GV_INT16, GV_UINT32, GV_INT32,
    GV_FLOAT32, GV_BOOL, GV_STRING, GV_ARRAY, GV_UINT64, GV_INT64,
    GV_FLOAT64, GV_COUNT
};

static const char *const gv_name[GV_COUNT] = {
    "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
    "bool", "string", "array", "uint64", "int64", "float64"
};

/* bytes of a fixed-size value; 0 for string and array */
static const uint8_t gv_size[GV_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0,
                                           8, 8, 8};

/* ggml types: name, elements per block, bytes per block (0: unknown, the
 * type was removed or is newer than this table's sizes) */
static const struct {
    const char *name;
    uint32_t blck;
    uint32_t bytes;
} ggml_types[] = {
    {"F32", 1, 4},        {"F16", 1, 2},         {"Q4_0", 32, 18},
    {"Q4_1", 32, 20},     {"Q4_2", 0, 0},        {"Q4_3", 0, 0},
    {"Q5_0", 32, 22},     {"Q5_1", 32, 24},      {"Q8_0", 32, 34},
    {"Q8_1", 32, 36},     {"Q2_K", 256, 84},     {"Q3_K", 256, 110},
    {"Q4_K", 256, 144},   {"Q5_K", 256, 176},    {"Q6_K", 256, 210},
    {"Q8_K", 256, 292},   {"IQ2_XXS", 256, 66},  {"IQ2_XS", 256, 74},
    {"IQ3_XXS", 256, 98}, {"IQ1_S", 256, 50},    {"IQ4_NL", 32, 18},
    {"IQ3_S", 256, 110},  {"IQ2_S", 256, 82},    {"IQ4_XS", 256, 136},
    {"I8", 1, 1},         {"I16", 1, 2},         {"I32", 1, 4},
    {"I64", 1, 8},        {"F64", 1, 8},         {"IQ1_M", 256, 56},
    {"BF16", 1, 2},       {"Q4_0_4_4", 0, 0},    {"Q4_0_4_8", 0, 0},
    {"Q4_0_8_8", 0, 0},   {"TQ1_0", 256, 54},    {"TQ2_0", 256, 66},
    {"IQ4_NL_4_4", 0, 0}, {"IQ4_NL_4_8", 0, 0},  {"IQ4_NL_8_8", 0, 0},
    {"MXFP4", 32, 17},    {"NVFP4", 64, 36},     {"Q1_0", 0, 0},
    {"Q2_0", 0, 0},
};
#define N_GGML_TYPES (sizeof(ggml_types) / sizeof(ggml_types[0]))

/* gguf_string - read a string of at most max bytes; *out is a cleaned
 * (UTF-8, NUL-free) malloc'd copy */
static int
gguf_string(struct reader *r, uint64_t max, const char *what, char **out)
{
    uint64_t len;
    int rc;

    *out = NULL;
    if ((rc = rd_u64(r, &len, what)))
        return rc;
    if (len > max)
        return fail(r, BFDB_EINVAL, "%s at offset %" PRIu64 " is %" PRIu64
                    " bytes long, more than %" PRIu64, what, r->pos - 8, len,
                    max);
    if ((rc = need(r, len, what)))
        return rc;
    uint8_t *raw = malloc(len ? (size_t)len : 1);
    if (!raw)
        return oom(r);
    if ((rc = rd_bytes(r, raw, (size_t)len, what))) {
        free(raw);
        return rc;
    }
    *out = utf8_clean(raw, (size_t)len);
    free(raw);
    return *out ? 0 : oom(r);
}

/* gguf_skip - skip one value of type type, depth arrays deep; strings and
 * arrays inside arrays are walked element by element, nothing allocated */
static int
gguf_skip(struct reader *r, uint32_t type, unsigned depth)
{
    uint64_t len, count;
    uint32_t et;
    int rc;

    if (type >= GV_COUNT)
        return fail(r, BFDB_EINVAL, "unknown value type %" PRIu32
                    " at offset %" PRIu64, type, r->pos);
    if (gv_size[type])
        return rd_skip(r, gv_size[type], "value");
    if (type == GV_STRING) {
        if ((rc = rd_u64(r, &len, "string length")))
            return rc;
        if (len > BFDB_WEIGHTS_MAX_STRING)
            return fail(r, BFDB_EINVAL, "string at offset %" PRIu64 " is %"
                        PRIu64 " bytes long, more than %u", r->pos - 8, len,
                        BFDB_WEIGHTS_MAX_STRING);
        return rd_skip(r, len, "string");
    }
    /* an array */
    if (depth >= BFDB_WEIGHTS_MAX_NESTING)
        return fail(r, BFDB_EINVAL, "arrays nested more than %u deep",
                    BFDB_WEIGHTS_MAX_NESTING);
    if ((rc = rd_u32(r, &et, "array type")) ||
        (rc = rd_u64(r, &count, "array length")))
        return rc;
    if (et >= GV_COUNT)
        return fail(r, BFDB_EINVAL, "unknown array element type %" PRIu32
                    " at offset %" PRIu64, et, r->pos - 12);
    if (gv_size[et]) {
        uint64_t bytes;
        if (!mul_ok(count, gv_size[et], &bytes))
            return fail(r, BFDB_EINVAL, "array of %" PRIu64 " %s overflows",
                        count, gv_name[et]);
        return rd_skip(r, bytes, "array");
    }
    /* strings take at least 8 bytes each, arrays 12: a count the rest of
     * the header cannot hold is refused before looping over it */
    uint64_t minsz = et == GV_STRING ? 8 : 12;
    if (count > (r->limit - r->pos) / minsz)
        return fail(r, BFDB_EINVAL, "array of %" PRIu64 " %s at offset %"
                    PRIu64 " does not fit in the header", count, gv_name[et],
                    r->pos - 12);
    for (uint64_t i = 0; i < count; i++)
        if ((rc = gguf_skip(r, et, depth + 1)))
            return rc;
    return 0;
}

static void
fmt_float(char *buf, size_t n, double v, int is_f32)
{
    /* the shortest %g that reads back as the same value */
    for (int p = 1; p <= (is_f32 ? 9 : 17); p++) {
        snprintf(buf, n, "%.*g", p, v);
        double back = strtod(buf, NULL);
        if (is_f32 ? (float)back == (float)v : back == v)
            return;
    }
}

/* sign - a two's complement bits-bit value as int64 (no implementation-
 * defined conversion) */
static int64_t
sign(uint64_t v, unsigned bits)
{
    uint64_t mask = bits == 64 ? UINT64_MAX : ((uint64_t)1 << bits) - 1;
    v &= mask;
    if (v >> (bits - 1))
        return -(int64_t)(~v & mask) - 1;
    return (int64_t)v;
}

/* gguf_value - read one value and render it as text (*out malloc'd) */
static int
gguf_value(struct reader *r, uint32_t type, const char *key, char **out)
{
    char buf[64];
    uint8_t b[8];
    uint64_t u;
    int rc;

    *out = NULL;
    if (type >= GV_COUNT)
        return fail(r, BFDB_EINVAL, "key \"%s\": unknown value type %" PRIu32,
                    key, type);
    if (type == GV_STRING)
        return gguf_string(r, BFDB_WEIGHTS_MAX_STRING, "string value", out);
    if (type == GV_ARRAY) {
        uint32_t et;
        uint64_t count, at = r->pos;
        if ((rc = rd_u32(r, &et, "array type")) ||
            (rc = rd_u64(r, &count, "array length")))
            return rc;
        if (et >= GV_COUNT)
            return fail(r, BFDB_EINVAL, "key \"%s\": unknown array element"
                        " type %" PRIu32, key, et);
        r->pos = at; /* walk it again as a whole (the window still has it) */
        if ((rc = gguf_skip(r, GV_ARRAY, 0)))
            return rc;
        snprintf(buf, sizeof(buf), "[array of %" PRIu64 " %s]", count,
                 gv_name[et]);
    } else {
        if ((rc = rd_bytes(r, b, gv_size[type], "value")))
            return rc;
        u = gv_size[type] == 1   ? b[0]
            : gv_size[type] == 2 ? (uint64_t)b[0] | (uint64_t)b[1] << 8
            : gv_size[type] == 4 ? le32(b)
                                 : le64(b);
        switch (type) {
        case GV_UINT8: case GV_UINT16: case GV_UINT32: case GV_UINT64:
            snprintf(buf, sizeof(buf), "%" PRIu64, u);
            break;
        case GV_INT8: case GV_INT16: case GV_INT32: case GV_INT64:
            snprintf(buf, sizeof(buf), "%" PRId64,
                     sign(u, 8u * gv_size[type]));
            break;
        case GV_BOOL:
            snprintf(buf, sizeof(buf), "%s", u ? "true" : "false");
            break;
        case GV_FLOAT32: {
            float f;
            uint32_t w = (uint32_t)u;
            memcpy(&f, &w, sizeof(f));
            fmt_float(buf, sizeof(buf), f, 1);
            break;
        }
        default: { /* GV_FLOAT64 */
            double d;
            memcpy(&d, &u, sizeof(d));
            fmt_float(buf, sizeof(buf), d, 0);
            break;
        }
        }
    }
    return (*out = dup_str(buf)) ? 0 : oom(r);
}

static int
gguf_tensor(struct reader *r, uint32_t align, struct bfdb_tensor *t)
{
    uint32_t type;
    int rc;

    if ((rc = gguf_string(r, BFDB_WEIGHTS_MAX_NAME, "tensor name",
                          &t->name)) ||
        (rc = rd_u32(r, &t->ndim, "tensor n_dims")))
        return rc;
    if (t->ndim > BFDB_WEIGHTS_MAX_GGUF_DIMS)
        return fail(r, BFDB_EINVAL, "tensor \"%s\" has %" PRIu32
                    " dimensions, more than %u", t->name, t->ndim,
                    BFDB_WEIGHTS_MAX_GGUF_DIMS);
    if (t->ndim && !(t->shape = malloc(t->ndim * sizeof(*t->shape))))
        return oom(r);
    for (uint32_t i = 0; i < t->ndim; i++) {
        if ((rc = rd_u64(r, &t->shape[i], "tensor dimension")))
            return rc;
        if (t->shape[i] > INT64_MAX)
            return fail(r, BFDB_EINVAL, "tensor \"%s\": dimension %" PRIu32
                        " is %" PRIu64, t->name, i, t->shape[i]);
    }
    if ((rc = rd_u32(r, &type, "tensor type")) ||
        (rc = rd_u64(r, &t->offset, "tensor offset")))
        return rc;
    if (t->offset % align)
        return fail(r, BFDB_EINVAL, "tensor \"%s\": offset %" PRIu64
                    " is not a multiple of the alignment %" PRIu32, t->name,
                    t->offset, align);
    if (type < N_GGML_TYPES) {
        t->dtype = dup_str(ggml_types[type].name);
    } else {
        char buf[24];
        snprintf(buf, sizeof(buf), "type%" PRIu32, type);
        t->dtype = dup_str(buf);
    }
    if (!t->dtype)
        return oom(r);

    t->nbytes = BFDB_WEIGHTS_NBYTES_UNKNOWN;
    if (type < N_GGML_TYPES && ggml_types[type].blck) {
        /* ggml stores whole blocks along the first dimension */
        uint64_t blck = ggml_types[type].blck, n = 1;
        uint64_t ne0 = t->ndim ? t->shape[0] : 1;
        if (ne0 % blck)
            return fail(r, BFDB_EINVAL, "tensor \"%s\": first dimension %"
                        PRIu64 " is not a multiple of the %s block size %"
                        PRIu64, t->name, ne0, t->dtype, blck);
        n = ne0 / blck;
        for (uint32_t i = 1; i < t->ndim; i++)
            if (!mul_ok(n, t->shape[i], &n))
                goto toobig;
        if (!mul_ok(n, ggml_types[type].bytes, &t->nbytes))
            goto toobig;
    }
    return 0;
toobig:
    return fail(r, BFDB_EINVAL, "tensor \"%s\": size overflows 64 bits",
                t->name);
}

static int
parse_gguf(struct reader *r, struct bfdb_weights_meta *m)
{
    uint8_t magic[4];
    uint32_t version, align = GGUF_DEFAULT_ALIGNMENT;
    uint64_t ntensors, nkv;
    size_t kvcap = 0;
    int rc;

    if ((rc = rd_bytes(r, magic, 4, "magic")) ||
        (rc = rd_u32(r, &version, "version")))
        return rc;
    if (version == 1)
        return fail(r, BFDB_EINVAL, "GGUF version 1 is not supported");
    if (version != 2 && version != 3) {
        uint32_t sw = (version >> 24) | (version >> 8 & 0xff00) |
                      (version << 8 & 0xff0000) | (version << 24);
        if (sw >= 1 && sw <= 3)
            return fail(r, BFDB_EINVAL, "big-endian GGUF is not supported");
        return fail(r, BFDB_EINVAL, "unsupported GGUF version %" PRIu32,
                    version);
    }
    if ((rc = rd_u64(r, &ntensors, "tensor count")) ||
        (rc = rd_u64(r, &nkv, "metadata count")))
        return rc;
    /* a tensor info takes at least 24 bytes, a key-value 13 */
    if (ntensors > BFDB_WEIGHTS_MAX_TENSORS ||
        ntensors > (r->size - r->pos) / 24)
        return fail(r, BFDB_EINVAL, "tensor count %" PRIu64 " is too large"
                    " for the file", ntensors);
    if (nkv > BFDB_WEIGHTS_MAX_KV || nkv > (r->size - r->pos) / 13)
        return fail(r, BFDB_EINVAL, "metadata count %" PRIu64 " is too large"
                    " for the file", nkv);
    m->format = BFDB_WF_GGUF;
    m->version = version;

    for (uint64_t i = 0; i < nkv; i++) {
        char *key, *value;
        uint32_t type;
        if ((rc = gguf_string(r, BFDB_WEIGHTS_MAX_NAME, "key", &key)))
            return rc;
        if ((rc = rd_u32(r, &type, "value type")) ||
            (rc = gguf_value(r, type, key, &value))) {
            free(key);
            return rc;
        }
        if (strcmp(key, "general.alignment") == 0) {
            uint64_t a = 0;
            if (type != GV_UINT32 || bfdb_parse_u64(value, &a) || a == 0 ||
                (a & (a - 1))) {
                rc = fail(r, BFDB_EINVAL, "general.alignment is not a power"
                          " of two uint32");
                free(key);
                free(value);
                return rc;
            }
            align = (uint32_t)a;
        }
        if ((rc = kv_push(r, m, &kvcap, key, value)))
            return rc;
    }
    if (m->nkv > 1) {
        char **k = malloc(m->nkv * sizeof(*k));
        if (!k)
            return oom(r);
        memcpy(k, m->keys, m->nkv * sizeof(*k));
        qsort(k, m->nkv, sizeof(*k), cmp_str);
        for (size_t i = 1; i < m->nkv; i++)
            if (strcmp(k[i], k[i - 1]) == 0) {
                rc = fail(r, BFDB_EINVAL, "duplicate key \"%s\"", k[i]);
                break;
            }
        free(k);
        if (rc)
            return rc;
    }

    /* grown as infos are read, not sized by the count the file claims */
    size_t tcap = 0;
    for (uint64_t i = 0; i < ntensors; i++) {
        if (grow((void **)&m->tensors, &tcap, m->ntensors,
                 sizeof(*m->tensors)))
            return oom(r);
        struct bfdb_tensor *t = &m->tensors[m->ntensors++];
        memset(t, 0, sizeof(*t));
        if ((rc = gguf_tensor(r, align, t)))
            return rc;
    }

    /* the data starts at the next multiple of the alignment */
    uint64_t pad = (align - r->pos % align) % align;
    m->data_start = pad <= r->size - r->pos ? r->pos + pad : r->size;
    for (size_t i = 0; i < m->ntensors; i++) {
        struct bfdb_tensor *t = &m->tensors[i];
        uint64_t at, end;
        if (!add_ok(r->pos + pad, t->offset, &at) || at > r->size ||
            (t->nbytes != BFDB_WEIGHTS_NBYTES_UNKNOWN &&
             (!add_ok(at, t->nbytes, &end) || end > r->size)))
            return fail(r, BFDB_EINVAL, "tensor \"%s\": data at offset %"
                        PRIu64 " lies beyond the end of the file (%" PRIu64
                        " bytes)", t->name, t->offset, r->size);
        t->offset = at;
    }
    return finish(r, m);
}

/* ------------------------------------------------------------------ */
/* entry points                                                        */
/* ------------------------------------------------------------------ */

int
bfdb_weights_sniff(const void *head, size_t n, uint64_t size)
{
    const uint8_t *p = head;

    if (n >= 8 && memcmp(p, "GGUF", 4) == 0) {
        uint32_t v = le32(p + 4);
        if ((v >= 1 && v <= 3) || v == 0x01000000u || v == 0x02000000u ||
            v == 0x03000000u)
            return BFDB_WF_GGUF;
    }
    if (n >= 9 && size >= 10 && p[8] == '{') {
        uint64_t len = le64(p);
        if (len >= 2 && len <= BFDB_WEIGHTS_MAX_JSON && len <= size - 8)
            return BFDB_WF_SAFETENSORS;
    }
    return BFDB_WF_NONE;
}

const char *
bfdb_weights_format_name(int format)
{
    switch (format) {
    case BFDB_WF_SAFETENSORS: return "safetensors";
    case BFDB_WF_GGUF: return "gguf";
    }
    return "none";
}

int
bfdb_weights_parse(bfdb_weights_read_fn rd, void *arg, uint64_t size,
                   struct bfdb_weights_meta *out, char *err, size_t errlen)
{
    struct reader r;
    uint8_t head[16];
    int rc;

    memset(out, 0, sizeof(*out));
    memset(&r, 0, sizeof(r));
    r.rd = rd;
    r.arg = arg;
    r.size = size;
    r.limit = size;
    r.err = err;
    r.errlen = errlen;
    if (err && errlen)
        err[0] = '\0';

    if (size < 9)
        return fail(&r, BFDB_EINVAL, "file of %" PRIu64 " bytes is too short"
                    " for a safetensors or GGUF header", size);
    r.win_cap = size < WINDOW ? (size_t)size : WINDOW;
    if (!(r.win = malloc(r.win_cap)))
        return oom(&r);

    size_t hn = size < sizeof(head) ? (size_t)size : sizeof(head);
    if ((rc = rd_bytes(&r, head, hn, "file head")))
        goto leave;
    r.pos = 0; /* the window keeps what was read */
    switch (bfdb_weights_sniff(head, hn, size)) {
    case BFDB_WF_SAFETENSORS:
        rc = parse_safetensors(&r, out);
        break;
    case BFDB_WF_GGUF:
        if (size > BFDB_WEIGHTS_MAX_GGUF_HEADER)
            r.limit = BFDB_WEIGHTS_MAX_GGUF_HEADER;
        rc = parse_gguf(&r, out);
        break;
    default:
        rc = fail(&r, BFDB_EINVAL, "not a safetensors or GGUF file");
    }
leave:
    free(r.win);
    if (rc)
        bfdb_weights_meta_free(out);
    return rc;
}

void
bfdb_weights_meta_free(struct bfdb_weights_meta *m)
{
    for (size_t i = 0; i < m->ntensors; i++) {
        free(m->tensors[i].name);
        free(m->tensors[i].dtype);
        free(m->tensors[i].shape);
    }
    free(m->tensors);
    for (size_t i = 0; i < m->ndtypes; i++)
        free(m->dtypes[i]);
    free(m->dtypes);
    for (size_t i = 0; i < m->nkv; i++) {
        free(m->keys[i]);
        free(m->values[i]);
    }
    free(m->keys);
    free(m->values);
    memset(m, 0, sizeof(*m));
}
