/*
 * test_weights.c - safetensors and GGUF header parsing (common/weights.c)
 *
 * Files are built in memory by the small encoders below and read back
 * through a callback over the buffer, which may be told to hand out at
 * most a few bytes per call.  Malformed files must give BFDB_EINVAL with
 * a message and leave the result empty (ASan builds check for leaks).
 */
#include "config.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/weights.h"

TestSuite(weights, .timeout = 60.);

/* ------------------------------------------------------------------ */
/* encoders                                                            */
/* ------------------------------------------------------------------ */

struct buf {
    uint8_t *p;
    size_t n, cap;
};

static void
put(struct buf *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        cr_assert_not_null(b->p);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void
put_le(struct buf *b, uint64_t v, int bytes)
{
    uint8_t t[8];
    for (int i = 0; i < bytes; i++)
        t[i] = (uint8_t)(v >> (8 * i));
    put(b, t, (size_t)bytes);
}

static void put_u8(struct buf *b, uint8_t v) { put_le(b, v, 1); }
static void put_u16(struct buf *b, uint16_t v) { put_le(b, v, 2); }
static void put_u32(struct buf *b, uint32_t v) { put_le(b, v, 4); }
static void put_u64(struct buf *b, uint64_t v) { put_le(b, v, 8); }

static void
put_f32(struct buf *b, float f)
{
    uint32_t w;
    memcpy(&w, &f, 4);
    put_u32(b, w);
}

static void
put_f64(struct buf *b, double d)
{
    uint64_t w;
    memcpy(&w, &d, 8);
    put_u64(b, w);
}

static void
put_zeros(struct buf *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        put_u8(b, (uint8_t)(i * 7));
}

/* a GGUF string: u64 length + bytes */
static void
put_gstr(struct buf *b, const char *s)
{
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}

enum { U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 };

static void
gguf_head(struct buf *b, uint32_t version, uint64_t ntensors, uint64_t nkv)
{
    put(b, "GGUF", 4);
    put_u32(b, version);
    put_u64(b, ntensors);
    put_u64(b, nkv);
}

static void
gguf_key(struct buf *b, const char *key, uint32_t type)
{
    put_gstr(b, key);
    put_u32(b, type);
}

static void
gguf_tinfo(struct buf *b, const char *name, uint32_t ndim,
           const uint64_t *dims, uint32_t type, uint64_t offset)
{
    put_gstr(b, name);
    put_u32(b, ndim);
    for (uint32_t i = 0; i < ndim; i++)
        put_u64(b, dims[i]);
    put_u32(b, type);
    put_u64(b, offset);
}

static void
pad_to(struct buf *b, size_t align)
{
    while (b->n % align)
        put_u8(b, 0);
}

/* a safetensors file: u64 length, the JSON, datalen bytes */
static struct buf
st_file(const char *json, size_t datalen)
{
    struct buf b = {0};
    put_u64(&b, strlen(json));
    put(&b, json, strlen(json));
    put_zeros(&b, datalen);
    return b;
}

/* ------------------------------------------------------------------ */
/* the read callback                                                   */
/* ------------------------------------------------------------------ */

struct src {
    const uint8_t *p;
    size_t n;       /* bytes held */
    uint64_t vsize; /* bytes past n up to this read as zeros */
    size_t chunk;   /* at most this many per call (0: no limit) */
    int fail_rc;    /* if set, every read returns it */
    uint64_t maxend;/* highest offset + got handed out */
    size_t calls;
};

static int
mem_read(void *arg, uint64_t off, void *dst, size_t n, size_t *got)
{
    struct src *s = arg;
    s->calls++;
    if (s->fail_rc)
        return s->fail_rc;
    if (off >= s->n) {
        uint64_t left = off < s->vsize ? s->vsize - off : 0;
        size_t z = left < n ? (size_t)left : n;
        if (s->chunk && z > s->chunk)
            z = s->chunk;
        memset(dst, 0, z);
        *got = z;
        if (z && off + z > s->maxend)
            s->maxend = off + z;
        return 0;
    }
    size_t k = s->n - (size_t)off;
    if (k > n)
        k = n;
    if (s->chunk && k > s->chunk)
        k = s->chunk;
    memcpy(dst, s->p + off, k);
    *got = k;
    if (off + k > s->maxend)
        s->maxend = off + k;
    return 0;
}

static char errbuf[512];

/* parse the first len bytes of b as a file of len bytes */
static int
parse_n(const struct buf *b, size_t len, size_t chunk,
        struct bfdb_weights_meta *m)
{
    struct src s = {.p = b->p, .n = len, .chunk = chunk};
    errbuf[0] = '\0';
    return bfdb_weights_parse(mem_read, &s, len, m, errbuf, sizeof(errbuf));
}

static int
parse(const struct buf *b, size_t chunk, struct bfdb_weights_meta *m)
{
    return parse_n(b, b->n, chunk, m);
}

static int
meta_is_empty(const struct bfdb_weights_meta *m)
{
    return m->format == 0 && m->tensors == NULL && m->ntensors == 0 &&
           m->dtypes == NULL && m->keys == NULL && m->values == NULL &&
           m->nkv == 0 && m->parameter_count == 0;
}

/* expect_einval - parsing b fails with EINVAL, a message containing
 * needle (if any), and an empty result */
static void
expect_einval(const struct buf *b, const char *needle)
{
    struct bfdb_weights_meta m;
    int rc = parse(b, 0, &m);
    cr_assert_eq(rc, BFDB_EINVAL, "rc %d (%s)", rc, errbuf);
    cr_assert_neq(errbuf[0], '\0', "a message is given");
    if (needle)
        cr_assert_not_null(strstr(errbuf, needle), "message \"%s\" lacks"
                           " \"%s\"", errbuf, needle);
    cr_assert(meta_is_empty(&m));
    bfdb_weights_meta_free(&m);
}

static const char *
kv(const struct bfdb_weights_meta *m, const char *key)
{
    for (size_t i = 0; i < m->nkv; i++)
        if (strcmp(m->keys[i], key) == 0)
            return m->values[i];
    return NULL;
}

/* ------------------------------------------------------------------ */
/* safetensors                                                         */
/* ------------------------------------------------------------------ */

static const char st_json[] =
    "{\"b.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],"
    "\"data_offsets\":[0,24]},"
    "\"__metadata__\":{\"z\":\"last\",\"format\":\"pt\"},"
    "\"a.bias\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[24,30]},"
    "\"c.scale\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[30,34]}}"
    "    ";

static void
check_st(const struct bfdb_weights_meta *m)
{
    uint64_t ds = 8 + strlen(st_json);
    cr_assert_eq(m->format, BFDB_WF_SAFETENSORS);
    cr_assert_eq(m->version, 0);
    cr_assert_eq(m->data_start, ds);
    cr_assert_eq(m->ntensors, 3);
    cr_assert_str_eq(m->tensors[0].name, "a.bias");
    cr_assert_str_eq(m->tensors[0].dtype, "BF16");
    cr_assert_eq(m->tensors[0].ndim, 1);
    cr_assert_eq(m->tensors[0].shape[0], 3);
    cr_assert_eq(m->tensors[0].offset, ds + 24);
    cr_assert_eq(m->tensors[0].nbytes, 6);
    cr_assert_str_eq(m->tensors[1].name, "b.weight");
    cr_assert_str_eq(m->tensors[1].dtype, "F32");
    cr_assert_eq(m->tensors[1].ndim, 2);
    cr_assert_eq(m->tensors[1].shape[0], 2);
    cr_assert_eq(m->tensors[1].shape[1], 3);
    cr_assert_eq(m->tensors[1].offset, ds);
    cr_assert_eq(m->tensors[1].nbytes, 24);
    cr_assert_str_eq(m->tensors[2].name, "c.scale");
    cr_assert_eq(m->tensors[2].ndim, 0, "a scalar has shape []");
    cr_assert_null(m->tensors[2].shape);
    cr_assert_eq(m->parameter_count, 6 + 3 + 1);
    cr_assert_eq(m->ndtypes, 2);
    cr_assert_str_eq(m->dtypes[0], "BF16");
    cr_assert_str_eq(m->dtypes[1], "F32");
    cr_assert_eq(m->nkv, 2);
    cr_assert_str_eq(m->keys[0], "format", "metadata sorted by key");
    cr_assert_str_eq(m->values[0], "pt");
    cr_assert_str_eq(m->keys[1], "z");
    cr_assert_str_eq(m->values[1], "last");
}

Test(weights, safetensors_tensors_dtypes_metadata)
{
    struct buf b = st_file(st_json, 34);
    struct bfdb_weights_meta m;
    cr_assert_eq(parse(&b, 0, &m), 0, "%s", errbuf);
    check_st(&m);
    bfdb_weights_meta_free(&m);
    cr_assert(meta_is_empty(&m), "free zeroes the struct");
    bfdb_weights_meta_free(&m); /* and a second free is harmless */
    free(b.p);
}

Test(weights, safetensors_short_reads)
{
    struct buf b = st_file(st_json, 34);
    struct bfdb_weights_meta m;
    for (size_t chunk = 1; chunk <= 9; chunk++) {
        cr_assert_eq(parse(&b, chunk, &m), 0, "chunk %zu: %s", chunk,
                     errbuf);
        check_st(&m);
        bfdb_weights_meta_free(&m);
    }
    free(b.p);
}

Test(weights, safetensors_zero_dims_subbyte_and_unknown_dtypes)
{
    /* [0, huge] has 0 elements (not an overflow); F4 packs two per byte;
     * an unknown dtype is accepted without a size check */
    const char *j =
        "{\"e\":{\"dtype\":\"F16\",\"shape\":[0,9223372036854775807],"
        "\"data_offsets\":[0,0]},"
        "\"f4\":{\"dtype\":\"F4\",\"shape\":[3,2],\"data_offsets\":[0,3]},"
        "\"x\":{\"dtype\":\"NF4_FUTURE\",\"shape\":[5],"
        "\"data_offsets\":[3,10]}}";
    struct buf b = st_file(j, 10);
    struct bfdb_weights_meta m;
    cr_assert_eq(parse(&b, 0, &m), 0, "%s", errbuf);
    cr_assert_eq(m.ntensors, 3);
    cr_assert_eq(m.parameter_count, 0 + 6 + 5);
    cr_assert_eq(m.ndtypes, 3);
    cr_assert_str_eq(m.dtypes[0], "F16");
    cr_assert_str_eq(m.dtypes[1], "F4");
    cr_assert_str_eq(m.dtypes[2], "NF4_FUTURE");
    cr_assert_eq(m.nkv, 0);
    cr_assert_null(m.keys);
    bfdb_weights_meta_free(&m);
    free(b.p);

    /* 3 F4 elements are 12 bits: not whole bytes */
    b = st_file("{\"f\":{\"dtype\":\"F4\",\"shape\":[3],"
                "\"data_offsets\":[0,2]}}", 2);
    expect_einval(&b, "whole bytes");
    free(b.p);
}

Test(weights, safetensors_empty_header_object)
{
    struct buf b = st_file("{}", 0);
    struct bfdb_weights_meta m;
    cr_assert_eq(parse(&b, 0, &m), 0, "%s", errbuf);
    cr_assert_eq(m.format, BFDB_WF_SAFETENSORS);
    cr_assert_eq(m.ntensors, 0);
    cr_assert_eq(m.ndtypes, 0);
    cr_assert_eq(m.parameter_count, 0);
    bfdb_weights_meta_free(&m);
    free(b.p);
}

Test(weights, safetensors_huge_header_length)
{
    struct buf b = {0};
    put_u64(&b, (uint64_t)1 << 40);
    put(&b, "{\"a\":1}", 7);
    expect_einval(&b, NULL); /* not even sniffed as safetensors */

    /* over the 100 MiB limit, though the claimed file is big enough: the
     * header is refused before anything is allocated or read */
    struct buf h = {0};
    put_u64(&h, (uint64_t)BFDB_WEIGHTS_MAX_JSON + 1);
    put(&h, "{\"a\":1}", 7);
    struct src s = {.p = h.p, .n = h.n};
    struct bfdb_weights_meta m;
    int rc = bfdb_weights_parse(mem_read, &s, (uint64_t)1 << 32, &m, errbuf,
                                sizeof(errbuf));
    cr_assert_eq(rc, BFDB_EINVAL);
    cr_assert_eq(bfdb_weights_sniff(h.p, h.n, (uint64_t)1 << 32),
                 BFDB_WF_NONE);
    cr_assert(meta_is_empty(&m));

    /* N one byte beyond the file */
    struct buf c = {0};
    put_u64(&c, 8);
    put(&c, "{\"a\":1}", 7);
    expect_einval(&c, NULL);
    free(b.p);
    free(h.p);
    free(c.p);
}

Test(weights, safetensors_malformed_headers)
{
    static const struct {
        const char *json;
        size_t datalen;
        const char *needle;
    } bad[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}",
         4, "not valid JSON"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
         4, "not valid JSON"},
        {"{\"a\":[1,2]}", 0, "not a JSON object"},
        {"{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype"},
        {"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "shape"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}",
         4, "non-negative"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}",
         4, "non-negative"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}",
         4, "data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,8]}}",
         4, "outside"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}",
         4, "outside"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}",
         8, "need 8"},
        /* 2^32 * 2^32 elements: the count overflows */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
         "\"data_offsets\":[0,4]}}", 4, "overflows"},
        /* 2^62 F32 elements: the byte count overflows */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],"
         "\"data_offsets\":[0,4]}}", 4, "overflow"},
        {"{\"__metadata__\":{\"k\":1}}", 0, "not a string"},
        {"{\"__metadata__\":[]}", 0, "__metadata__"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}"
         "trailing", 4, "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct buf b = st_file(bad[i].json, bad[i].datalen);
        struct bfdb_weights_meta m;
        int rc = parse(&b, 0, &m);
        cr_assert_eq(rc, BFDB_EINVAL, "case %zu: rc %d", i, rc);
        cr_assert_not_null(strstr(errbuf, bad[i].needle),
                           "case %zu: \"%s\" lacks \"%s\"", i, errbuf,
                           bad[i].needle);
        cr_assert(meta_is_empty(&m), "case %zu", i);
        free(b.p);
    }
}

Test(weights, safetensors_too_many_dims)
{
    char json[1024];
    size_t o = (size_t)snprintf(json, sizeof(json),
                                "{\"a\":{\"dtype\":\"U8\",\"shape\":[");
    for (int i = 0; i < 65; i++)
        o += (size_t)snprintf(json + o, sizeof(json) - o, "%s1",
                              i ? "," : "");
    snprintf(json + o, sizeof(json) - o, "],\"data_offsets\":[0,1]}}");
    struct buf b = st_file(json, 1);
    expect_einval(&b, "dimensions");
    free(b.p);
}

/* truncating a valid file anywhere (the stated size truthful) must fail */
static void
every_prefix_fails(const struct buf *b, size_t chunk)
{
    for (size_t len = 0; len < b->n; len++) {
        struct bfdb_weights_meta m;
        int rc = parse_n(b, len, chunk, &m);
        cr_assert_eq(rc, BFDB_EINVAL, "prefix %zu of %zu: rc %d", len, b->n,
                     rc);
        cr_assert_neq(errbuf[0], '\0', "prefix %zu", len);
        cr_assert(meta_is_empty(&m), "prefix %zu", len);
    }
}

/* a file whose stated size is more than the callback delivers */
static void
every_short_source_fails(const struct buf *b)
{
    for (size_t len = 0; len < b->n; len += 3) {
        struct src s = {.p = b->p, .n = len, .chunk = 5};
        struct bfdb_weights_meta m;
        int rc = bfdb_weights_parse(mem_read, &s, b->n, &m, errbuf,
                                    sizeof(errbuf));
        /* only a prefix holding the whole header can succeed */
        if (rc == 0) {
            cr_assert_geq(len, m.data_start, "prefix %zu", len);
            bfdb_weights_meta_free(&m);
        } else {
            cr_assert_eq(rc, BFDB_EINVAL, "prefix %zu: rc %d", len, rc);
            cr_assert(meta_is_empty(&m));
        }
    }
}

Test(weights, safetensors_every_prefix_rejected)
{
    struct buf b = st_file(st_json, 34);
    every_prefix_fails(&b, 0);
    every_prefix_fails(&b, 7);
    every_short_source_fails(&b);
    free(b.p);
}

/* ------------------------------------------------------------------ */
/* GGUF                                                                */
/* ------------------------------------------------------------------ */

/* every kv type, nested arrays, four tensors (Q4_K, F32, F16 and an
 * unknown ggml type 99) in the data after 32-byte alignment */
static struct buf
gguf_full(uint32_t version)
{
    struct buf b = {0};
    gguf_head(&b, version, 4, 19);
    gguf_key(&b, "general.architecture", STR);
    put_gstr(&b, "llama");
    gguf_key(&b, "k.u8", U8);
    put_u8(&b, 200);
    gguf_key(&b, "k.i8", I8);
    put_u8(&b, (uint8_t)-5);
    gguf_key(&b, "k.u16", U16);
    put_u16(&b, 65535);
    gguf_key(&b, "k.i16", I16);
    put_u16(&b, (uint16_t)-300);
    gguf_key(&b, "k.u32", U32);
    put_u32(&b, 4000000000u);
    gguf_key(&b, "k.i32", I32);
    put_u32(&b, (uint32_t)INT32_MIN);
    gguf_key(&b, "k.f32", F32);
    put_f32(&b, 1e-5f);
    gguf_key(&b, "k.bool", BOOL);
    put_u8(&b, 1);
    gguf_key(&b, "k.false", BOOL);
    put_u8(&b, 0);
    gguf_key(&b, "k.u64", U64);
    put_u64(&b, UINT64_MAX);
    gguf_key(&b, "k.i64", I64);
    put_u64(&b, (uint64_t)INT64_MIN);
    gguf_key(&b, "k.f64", F64);
    put_f64(&b, 0.1);
    gguf_key(&b, "general.alignment", U32);
    put_u32(&b, 32);
    /* an array of strings */
    gguf_key(&b, "tokenizer.ggml.tokens", ARR);
    put_u32(&b, STR);
    put_u64(&b, 3);
    put_gstr(&b, "<s>");
    put_gstr(&b, "");
    put_gstr(&b, "hello");
    /* an array of f32 */
    gguf_key(&b, "tokenizer.ggml.scores", ARR);
    put_u32(&b, F32);
    put_u64(&b, 3);
    put_f32(&b, 0.f);
    put_f32(&b, -1.f);
    put_f32(&b, 2.5f);
    /* an array of arrays: [[1, 2], ["x"], []] */
    gguf_key(&b, "k.nested", ARR);
    put_u32(&b, ARR);
    put_u64(&b, 3);
    put_u32(&b, U16);
    put_u64(&b, 2);
    put_u16(&b, 1);
    put_u16(&b, 2);
    put_u32(&b, STR);
    put_u64(&b, 1);
    put_gstr(&b, "x");
    put_u32(&b, I64);
    put_u64(&b, 0);
    /* an empty array of arrays, and a non-UTF-8 string */
    gguf_key(&b, "k.empty", ARR);
    put_u32(&b, ARR);
    put_u64(&b, 0);
    gguf_key(&b, "k.bytes", STR);
    put_u64(&b, 4);
    put(&b, "a\xff\0b", 4);

    uint64_t d_q4k[] = {256, 10}, d_f32[] = {256}, d_f16[] = {4, 4},
             d_unk[] = {8};
    gguf_tinfo(&b, "token_embd.weight", 2, d_q4k, 12, 0);   /* 1440 B */
    gguf_tinfo(&b, "output_norm.weight", 1, d_f32, 0, 1440); /* 1024 B */
    gguf_tinfo(&b, "odd.weight", 1, d_unk, 99, 2464);
    gguf_tinfo(&b, "blk.0.attn_q.weight", 2, d_f16, 1, 2496); /* 32 B */
    pad_to(&b, 32);
    put_zeros(&b, 2528); /* the last tensor is a known size: it ends here */
    return b;
}

static void
check_gguf_full(const struct bfdb_weights_meta *m, const struct buf *b,
                uint32_t version)
{
    uint64_t ds = b->n - 2528;
    cr_assert_eq(m->format, BFDB_WF_GGUF);
    cr_assert_eq(m->version, version);
    cr_assert_eq(m->data_start, ds);
    cr_assert_eq(m->data_start % 32, 0);

    cr_assert_eq(m->ntensors, 4);
    /* by name */
    cr_assert_str_eq(m->tensors[0].name, "blk.0.attn_q.weight");
    cr_assert_str_eq(m->tensors[0].dtype, "F16");
    cr_assert_eq(m->tensors[0].offset, ds + 2496);
    cr_assert_eq(m->tensors[0].nbytes, 32);
    cr_assert_str_eq(m->tensors[1].name, "odd.weight");
    cr_assert_str_eq(m->tensors[1].dtype, "type99");
    cr_assert_eq(m->tensors[1].nbytes, BFDB_WEIGHTS_NBYTES_UNKNOWN);
    cr_assert_eq(m->tensors[1].offset, ds + 2464);
    cr_assert_str_eq(m->tensors[2].name, "output_norm.weight");
    cr_assert_str_eq(m->tensors[2].dtype, "F32");
    cr_assert_eq(m->tensors[2].nbytes, 1024);
    cr_assert_str_eq(m->tensors[3].name, "token_embd.weight");
    cr_assert_str_eq(m->tensors[3].dtype, "Q4_K");
    cr_assert_eq(m->tensors[3].ndim, 2);
    cr_assert_eq(m->tensors[3].shape[0], 256);
    cr_assert_eq(m->tensors[3].shape[1], 10);
    cr_assert_eq(m->tensors[3].offset, ds);
    cr_assert_eq(m->tensors[3].nbytes, 10 * 144);
    cr_assert_eq(m->parameter_count, 2560 + 256 + 16 + 8);

    cr_assert_eq(m->ndtypes, 4);
    cr_assert_str_eq(m->dtypes[0], "F16");
    cr_assert_str_eq(m->dtypes[1], "F32");
    cr_assert_str_eq(m->dtypes[2], "Q4_K");
    cr_assert_str_eq(m->dtypes[3], "type99");

    cr_assert_eq(m->nkv, 19);
    cr_assert_str_eq(m->keys[0], "general.architecture", "file order");
    cr_assert_str_eq(m->keys[18], "k.bytes");
    cr_assert_str_eq(kv(m, "general.architecture"), "llama");
    cr_assert_str_eq(kv(m, "k.u8"), "200");
    cr_assert_str_eq(kv(m, "k.i8"), "-5");
    cr_assert_str_eq(kv(m, "k.u16"), "65535");
    cr_assert_str_eq(kv(m, "k.i16"), "-300");
    cr_assert_str_eq(kv(m, "k.u32"), "4000000000");
    cr_assert_str_eq(kv(m, "k.i32"), "-2147483648");
    cr_assert_str_eq(kv(m, "k.f32"), "1e-05");
    cr_assert_str_eq(kv(m, "k.bool"), "true");
    cr_assert_str_eq(kv(m, "k.false"), "false");
    cr_assert_str_eq(kv(m, "k.u64"), "18446744073709551615");
    cr_assert_str_eq(kv(m, "k.i64"), "-9223372036854775808");
    cr_assert_str_eq(kv(m, "k.f64"), "0.1");
    cr_assert_str_eq(kv(m, "general.alignment"), "32");
    cr_assert_str_eq(kv(m, "tokenizer.ggml.tokens"),
                     "[array of 3 string]");
    cr_assert_str_eq(kv(m, "tokenizer.ggml.scores"),
                     "[array of 3 float32]");
    cr_assert_str_eq(kv(m, "k.nested"), "[array of 3 array]");
    cr_assert_str_eq(kv(m, "k.empty"), "[array of 0 array]");
    cr_assert_str_eq(kv(m, "k.bytes"), "a\xef\xbf\xbd\xef\xbf\xbd" "b",
                     "bad UTF-8 and NUL become U+FFFD");
}

Test(weights, gguf_v3_every_kv_type)
{
    struct buf b = gguf_full(3);
    struct bfdb_weights_meta m;
    cr_assert_eq(parse(&b, 0, &m), 0, "%s", errbuf);
    check_gguf_full(&m, &b, 3);
    bfdb_weights_meta_free(&m);
    free(b.p);
}

Test(weights, gguf_v2_and_short_reads)
{
    struct buf b = gguf_full(2);
    struct bfdb_weights_meta m;
    for (size_t chunk = 1; chunk <= 7; chunk += 3) {
        cr_assert_eq(parse(&b, chunk, &m), 0, "chunk %zu: %s", chunk,
                     errbuf);
        check_gguf_full(&m, &b, 2);
        bfdb_weights_meta_free(&m);
    }
    free(b.p);
}

Test(weights, gguf_every_prefix_rejected)
{
    struct buf b = gguf_full(3);
    every_prefix_fails(&b, 0);
    every_prefix_fails(&b, 7);
    every_short_source_fails(&b);
    free(b.p);
}

Test(weights, gguf_no_tensors_and_default_alignment)
{
    struct buf b = {0};
    gguf_head(&b, 3, 1, 0);
    uint64_t d[] = {64};
    gguf_tinfo(&b, "t", 1, d, 8 /* Q8_0 */, 0);
    pad_to(&b, 32);
    put_zeros(&b, 2 * 34);
    struct bfdb_weights_meta m;
    cr_assert_eq(parse(&b, 0, &m), 0, "%s", errbuf);
    cr_assert_eq(m.nkv, 0);
    cr_assert_eq(m.ntensors, 1);
    cr_assert_str_eq(m.tensors[0].dtype, "Q8_0");
    cr_assert_eq(m.tensors[0].nbytes, 68);
    cr_assert_eq(m.data_start, b.n - 68);
    bfdb_weights_meta_free(&m);
    free(b.p);

    struct buf e = {0};
    gguf_head(&e, 3, 0, 0);
    cr_assert_eq(parse(&e, 0, &m), 0, "%s", errbuf);
    cr_assert_eq(m.format, BFDB_WF_GGUF);
    cr_assert_eq(m.ntensors, 0);
    cr_assert_eq(m.parameter_count, 0);
    bfdb_weights_meta_free(&m);
    free(e.p);
}

/* a tokenizer-sized array of strings: spans several 64 KiB windows */
Test(weights, gguf_large_string_array_spans_windows)
{
    struct buf b = {0};
    char tok[32];
    gguf_head(&b, 3, 1, 2);
    gguf_key(&b, "tokenizer.ggml.tokens", ARR);
    put_u32(&b, STR);
    put_u64(&b, 20000);
    for (int i = 0; i < 20000; i++) {
        snprintf(tok, sizeof(tok), "token-%d", i);
        put_gstr(&b, tok);
    }
    gguf_key(&b, "after", STR);
    put_gstr(&b, "still in step");
    uint64_t d[] = {3};
    gguf_tinfo(&b, "w", 1, d, 0, 0);
    pad_to(&b, 32);
    put_zeros(&b, 12);
    cr_assert_gt(b.n, 3 * 65536);

    struct bfdb_weights_meta m;
    for (size_t chunk = 0; chunk <= 7; chunk += 7) {
        cr_assert_eq(parse(&b, chunk, &m), 0, "%s", errbuf);
        cr_assert_str_eq(kv(&m, "tokenizer.ggml.tokens"),
                         "[array of 20000 string]");
        cr_assert_str_eq(kv(&m, "after"), "still in step");
        cr_assert_eq(m.ntensors, 1);
        cr_assert_eq(m.parameter_count, 3);
        bfdb_weights_meta_free(&m);
    }
    free(b.p);
}

/* a GGUF with one tensor info, the rest as given */
static struct buf
gguf_one(uint32_t ndim, const uint64_t *dims, uint32_t type, uint64_t off,
         size_t datalen)
{
    struct buf b = {0};
    gguf_head(&b, 3, 1, 0);
    gguf_tinfo(&b, "t", ndim, dims, type, off);
    pad_to(&b, 32);
    put_zeros(&b, datalen);
    return b;
}

Test(weights, gguf_bad_tensor_infos)
{
    uint64_t dims[100];
    for (int i = 0; i < 100; i++)
        dims[i] = 1;
    struct buf b = gguf_one(100, dims, 0, 0, 4);
    expect_einval(&b, "dimensions");
    free(b.p);

    uint64_t d4[] = {4};
    b = gguf_one(1, d4, 0, 0, 15); /* 16 bytes of F32 needed */
    expect_einval(&b, "beyond the end");
    free(b.p);

    b = gguf_one(1, d4, 0, 64, 16); /* offset past the data */
    expect_einval(&b, "beyond the end");
    free(b.p);

    b = gguf_one(1, d4, 0, 8, 64); /* not a multiple of 32 */
    expect_einval(&b, "alignment");
    free(b.p);

    uint64_t d100[] = {100};
    b = gguf_one(1, d100, 12, 0, 4096); /* Q4_K: blocks of 256 */
    expect_einval(&b, "block size");
    free(b.p);

    uint64_t dbig[] = {(uint64_t)1 << 32, (uint64_t)1 << 32, 2};
    b = gguf_one(3, dbig, 0, 0, 64);
    expect_einval(&b, "overflows");
    free(b.p);

    uint64_t dneg[] = {UINT64_MAX};
    b = gguf_one(1, dneg, 0, 0, 64);
    expect_einval(&b, "dimension");
    free(b.p);

    /* unknown type with a huge shape: no size check, the count saturates */
    uint64_t dsat[] = {(uint64_t)1 << 40, (uint64_t)1 << 40};
    b = gguf_one(2, dsat, 1000, 0, 8);
    struct bfdb_weights_meta m;
    cr_assert_eq(parse(&b, 0, &m), 0, "%s", errbuf);
    cr_assert_eq(m.parameter_count, UINT64_MAX);
    cr_assert_str_eq(m.tensors[0].dtype, "type1000");
    bfdb_weights_meta_free(&m);
    free(b.p);
}

Test(weights, gguf_duplicates_rejected)
{
    struct buf b = {0};
    uint64_t d[] = {1};
    gguf_head(&b, 3, 2, 0);
    gguf_tinfo(&b, "t", 1, d, 0, 0);
    gguf_tinfo(&b, "t", 1, d, 0, 32);
    pad_to(&b, 32);
    put_zeros(&b, 36);
    expect_einval(&b, "duplicate tensor");
    free(b.p);

    b = (struct buf){0};
    gguf_head(&b, 3, 0, 2);
    gguf_key(&b, "a", U8);
    put_u8(&b, 1);
    gguf_key(&b, "a", U8);
    put_u8(&b, 2);
    expect_einval(&b, "duplicate key");
    free(b.p);
}

Test(weights, gguf_bad_strings_and_counts)
{
    /* a key whose length runs past the end of the file */
    struct buf b = {0};
    gguf_head(&b, 3, 0, 1);
    put_u64(&b, 1000);
    put(&b, "abc", 3);
    put_zeros(&b, 20);
    expect_einval(&b, "truncated");
    free(b.p);

    /* a string value claiming 2^63 bytes */
    b = (struct buf){0};
    gguf_head(&b, 3, 0, 1);
    gguf_key(&b, "s", STR);
    put_u64(&b, (uint64_t)1 << 63);
    put_zeros(&b, 16);
    expect_einval(&b, "more than");
    free(b.p);

    /* a string inside an array claiming more than the file */
    b = (struct buf){0};
    gguf_head(&b, 3, 0, 1);
    gguf_key(&b, "a", ARR);
    put_u32(&b, STR);
    put_u64(&b, 1);
    put_u64(&b, 1000);
    put_zeros(&b, 16);
    expect_einval(&b, "truncated");
    free(b.p);

    /* an array of 2^60 strings: refused without looping */
    b = (struct buf){0};
    gguf_head(&b, 3, 0, 1);
    gguf_key(&b, "a", ARR);
    put_u32(&b, STR);
    put_u64(&b, (uint64_t)1 << 60);
    put_zeros(&b, 64);
    expect_einval(&b, "does not fit");
    free(b.p);

    /* an array of 2^62 uint64: the byte count overflows */
    b = (struct buf){0};
    gguf_head(&b, 3, 0, 1);
    gguf_key(&b, "a", ARR);
    put_u32(&b, U64);
    put_u64(&b, (uint64_t)1 << 62);
    put_zeros(&b, 64);
    expect_einval(&b, "overflows");
    free(b.p);

    /* counts the file cannot hold */
    b = (struct buf){0};
    gguf_head(&b, 3, 100, 0);
    put_zeros(&b, 64);
    expect_einval(&b, "tensor count");
    free(b.p);
    b = (struct buf){0};
    gguf_head(&b, 3, 0, (uint64_t)1 << 40);
    put_zeros(&b, 64);
    expect_einval(&b, "metadata count");
    free(b.p);
    b = (struct buf){0};
    gguf_head(&b, 3, UINT64_MAX, UINT64_MAX);
    expect_einval(&b, "count");
    free(b.p);
}

Test(weights, gguf_unknown_types_rejected)
{
    struct buf b = {0};
    gguf_head(&b, 3, 0, 1);
    gguf_key(&b, "k", 13);
    put_zeros(&b, 16);
    expect_einval(&b, "unknown value type");
    free(b.p);

    b = (struct buf){0};
    gguf_head(&b, 3, 0, 1);
    gguf_key(&b, "k", ARR);
    put_u32(&b, 77);
    put_u64(&b, 1);
    put_zeros(&b, 16);
    expect_einval(&b, "unknown array element type");
    free(b.p);

    /* an unknown type inside a nested array */
    b = (struct buf){0};
    gguf_head(&b, 3, 0, 1);
    gguf_key(&b, "k", ARR);
    put_u32(&b, ARR);
    put_u64(&b, 1);
    put_u32(&b, 4242);
    put_u64(&b, 1);
    put_zeros(&b, 16);
    expect_einval(&b, "unknown array element type");
    free(b.p);
}

Test(weights, gguf_deep_nesting_rejected)
{
    struct buf b = {0};
    gguf_head(&b, 3, 0, 1);
    gguf_key(&b, "k", ARR);
    for (int i = 0; i < 40; i++) {
        put_u32(&b, ARR);
        put_u64(&b, 1);
    }
    put_u32(&b, U8);
    put_u64(&b, 0);
    expect_einval(&b, "nested");
    free(b.p);
}

Test(weights, gguf_versions_and_alignment)
{
    struct buf b = {0};
    gguf_head(&b, 1, 0, 0);
    expect_einval(&b, "version 1");
    free(b.p);

    b = (struct buf){0};
    put(&b, "GGUF", 4);
    put(&b, "\0\0\0\3", 4); /* version 3, big-endian */
    put_zeros(&b, 16);
    expect_einval(&b, "big-endian");
    free(b.p);

    b = (struct buf){0};
    gguf_head(&b, 3, 0, 1);
    gguf_key(&b, "general.alignment", U32);
    put_u32(&b, 24);
    expect_einval(&b, "alignment");
    free(b.p);

    b = (struct buf){0};
    gguf_head(&b, 3, 0, 1);
    gguf_key(&b, "general.alignment", U64);
    put_u64(&b, 32);
    expect_einval(&b, "alignment");
    free(b.p);

    /* a 64-byte alignment moves the data start */
    b = (struct buf){0};
    uint64_t d[] = {2};
    gguf_head(&b, 3, 1, 1);
    gguf_key(&b, "general.alignment", U32);
    put_u32(&b, 64);
    gguf_tinfo(&b, "t", 1, d, 0, 0);
    pad_to(&b, 64);
    put_zeros(&b, 8);
    struct bfdb_weights_meta m;
    cr_assert_eq(parse(&b, 0, &m), 0, "%s", errbuf);
    cr_assert_eq(m.data_start, b.n - 8);
    cr_assert_eq(m.data_start % 64, 0);
    cr_assert_eq(m.tensors[0].offset, m.data_start);
    bfdb_weights_meta_free(&m);
    free(b.p);
}

/*
 * A virtual GGUF of ~1 GiB: one array of 1000 strings of 1 MiB each.
 * Walking it would pass the header limit: refused, with only the string
 * lengths ever read.
 */
struct vfile {
    struct buf head;    /* header up to the array's first element */
    uint64_t size;
    uint64_t read_bytes;
};

#define VSTR ((uint64_t)1 << 20)

static int
vfile_read(void *arg, uint64_t off, void *dst, size_t n, size_t *got)
{
    struct vfile *v = arg;
    uint8_t *d = dst;
    if (off >= v->size) {
        *got = 0;
        return 0;
    }
    if (n > v->size - off)
        n = (size_t)(v->size - off);
    for (size_t i = 0; i < n; i++) {
        uint64_t o = off + i;
        if (o < v->head.n) {
            d[i] = v->head.p[o];
            continue;
        }
        uint64_t e = (o - v->head.n) % (8 + VSTR);
        d[i] = e < 8 ? (uint8_t)(VSTR >> (8 * e)) : 'x';
    }
    v->read_bytes += n;
    *got = n;
    return 0;
}

Test(weights, gguf_header_limit)
{
    struct vfile v = {0};
    gguf_head(&v.head, 3, 0, 1);
    gguf_key(&v.head, "huge", ARR);
    put_u32(&v.head, STR);
    put_u64(&v.head, 1000);
    v.size = v.head.n + 1000 * (8 + VSTR);
    struct bfdb_weights_meta m;
    int rc = bfdb_weights_parse(vfile_read, &v, v.size, &m, errbuf,
                                sizeof(errbuf));
    cr_assert_eq(rc, BFDB_EINVAL);
    cr_assert_not_null(strstr(errbuf, "limit"), "%s", errbuf);
    cr_assert(meta_is_empty(&m));
    /* about one 64 KiB window per string walked, not the strings */
    cr_assert_lt(v.read_bytes, (uint64_t)600 * 65536);
    free(v.head.p);
}

/* ------------------------------------------------------------------ */
/* reading                                                             */
/* ------------------------------------------------------------------ */

Test(weights, reads_only_the_header)
{
    /* 2.5 GiB of F32 behind a small header: only the header is read */
    const char *j = "{\"w\":{\"dtype\":\"F32\",\"shape\":[655360,1024],"
                    "\"data_offsets\":[0,2684354560]}}";
    struct buf h = {0};
    put_u64(&h, strlen(j));
    put(&h, j, strlen(j));
    put_zeros(&h, 1024);
    uint64_t size = 8 + strlen(j) + 2684354560ull;
    struct src s = {.p = h.p, .n = h.n, .vsize = size};
    struct bfdb_weights_meta m;
    int rc = bfdb_weights_parse(mem_read, &s, size, &m, errbuf,
                                sizeof(errbuf));
    cr_assert_eq(rc, 0, "%s", errbuf);
    cr_assert_eq(m.parameter_count, 655360ull * 1024);
    cr_assert_eq(m.tensors[0].nbytes, 2684354560ull);
    /* one 64 KiB window from the start, nothing of the data beyond it */
    cr_assert_leq(s.maxend, 65536);
    cr_assert_leq(s.calls, 2);
    bfdb_weights_meta_free(&m);
    free(h.p);
}

Test(weights, read_errors_pass_through)
{
    struct buf b = gguf_full(3);
    struct src s = {.p = b.p, .n = b.n, .fail_rc = BFDB_EIO};
    struct bfdb_weights_meta m;
    int rc = bfdb_weights_parse(mem_read, &s, b.n, &m, errbuf,
                                sizeof(errbuf));
    cr_assert_eq(rc, BFDB_EIO);
    cr_assert_not_null(strstr(errbuf, "could not read"), "%s", errbuf);
    cr_assert(meta_is_empty(&m));
    free(b.p);
}

Test(weights, not_a_model_file)
{
    struct buf b = {0};
    const char *zip = "PK\3\4 this is a zip file, not a model";
    put(&b, zip, strlen(zip));
    expect_einval(&b, "not a safetensors or GGUF");
    free(b.p);

    struct bfdb_weights_meta m;
    struct src s = {0};
    cr_assert_eq(bfdb_weights_parse(mem_read, &s, 0, &m, errbuf,
                                    sizeof(errbuf)), BFDB_EINVAL);
    cr_assert(meta_is_empty(&m));
    /* a NULL err buffer of length 0 is allowed */
    cr_assert_eq(bfdb_weights_parse(mem_read, &s, 0, &m, NULL, 0),
                 BFDB_EINVAL);
}

/* ------------------------------------------------------------------ */
/* sniffing                                                            */
/* ------------------------------------------------------------------ */

Test(weights, sniff_recognises_both_formats)
{
    struct buf g = gguf_full(3), st = st_file(st_json, 34);
    cr_assert_eq(bfdb_weights_sniff(g.p, 16, g.n), BFDB_WF_GGUF);
    cr_assert_eq(bfdb_weights_sniff(g.p, 8, g.n), BFDB_WF_GGUF);
    cr_assert_eq(bfdb_weights_sniff(st.p, 16, st.n), BFDB_WF_SAFETENSORS);
    cr_assert_eq(bfdb_weights_sniff(st.p, 9, st.n), BFDB_WF_SAFETENSORS);
    cr_assert_eq(bfdb_weights_sniff(st.p, 8, st.n), BFDB_WF_NONE,
                 "the '{' is not visible yet");
    /* a header length beyond the stated size */
    cr_assert_eq(bfdb_weights_sniff(st.p, 16, 20), BFDB_WF_NONE);
    cr_assert_eq(strcmp(bfdb_weights_format_name(BFDB_WF_GGUF), "gguf"), 0);
    cr_assert_eq(strcmp(bfdb_weights_format_name(BFDB_WF_SAFETENSORS),
                        "safetensors"), 0);
    cr_assert_eq(strcmp(bfdb_weights_format_name(7), "none"), 0);
    free(g.p);
    free(st.p);
}

Test(weights, sniff_rejects_random_and_empty)
{
    uint8_t r[16];
    uint64_t x = 0x9e3779b97f4a7c15ull;
    int hits = 0;
    cr_assert_eq(bfdb_weights_sniff("", 0, 0), BFDB_WF_NONE);
    cr_assert_eq(bfdb_weights_sniff("GGUF", 4, 4), BFDB_WF_NONE);
    cr_assert_eq(bfdb_weights_sniff("GGUF\x09\0\0\0", 8, 1000),
                 BFDB_WF_NONE, "version 9");
    for (int i = 0; i < 100000; i++) {
        for (int k = 0; k < 16; k++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            r[k] = (uint8_t)x;
        }
        hits += bfdb_weights_sniff(r, sizeof(r), (uint64_t)1 << 30) !=
                BFDB_WF_NONE;
    }
    cr_assert_eq(hits, 0);
}
