/*
 * test_model.c - the buffdb.model.Model service end to end: the real
 * buffdb binary ($BUFFDB_BIN), started by tests/helpers/server.c and
 * driven over gRPC by tests/helpers/grpc_client.c.
 *
 * Every test starts its own server (2 workers) on 127.0.0.1 and a free
 * port, in its own directory, and ends with ts_stop_ok() (clean exit, a
 * log free of sanitizer reports); a server killed on purpose has its log
 * checked with ts_assert_log_clean().
 *
 * What is covered: Push then Pull of a safetensors file, a GGUF v3 file
 * and a 3-part file built here (digests, blob ids, tensor metadata from
 * the headers); the upstream view of a pushed model (the metadata, index
 * and alias kv keys, the part blobs and their metadata, read with Kv.Get
 * and Blob.Get only); a digest mismatch leaves no version, no unfinished
 * push and no blob; interrupted pushes (cancelled, half-closed early, killed
 * with the server) resume from offset 0 or from the held offsets, a push
 * of other files replaces one, AbortPush frees it; deduplication measured
 * in blobs and in what DeleteVersion frees (also while a push uses its
 * parts, or a Pull reads them); aliases; two pushes of one version at
 * once, two versions of the same bytes at once; malformed requests; a
 * corrupted or deleted part found by Pull (DATA_LOSS) and Verify; a damaged
 * part rewritten (not reused) by a later push of the same bytes, which
 * repairs every version using it; a Pull of a version deleted under it
 * (NOT_FOUND).
 *
 * Sizes are in parts: PART is the server's part size (4 MiB less 64 KiB,
 * so that a part blob with its metadata fits a default 4 MiB client
 * message); "2 * PART + MIB" is two full parts and a third of 1 MiB.
 *
 * Data: files are made here from a fixed-seed generator; digests are
 * computed with OpenSSL, not with the server's code.  Threads other than
 * the test's own never call cr_assert.  Every loop is bounded in count and
 * in time.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <grpc/grpc.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../helpers/grpc_client.h"
#include "../helpers/helpers.h"
#include "../helpers/kv_client.h"
#include "../helpers/server.h"
#include "blob.pb-c.h"
#include "google/protobuf/any.pb-c.h"
#include "google/protobuf/wrappers.pb-c.h"
#include "kv.pb-c.h"
#include "model.pb-c.h"
#include "query.pb-c.h"

#define PUSH_DEADLINE_MS 90000 /* a push or pull of tens of MiB */
#define RETRY_TRIES 100        /* pushes retried while ABORTED (10 s) */
#define WAIT_MS 15000          /* polls of PushStatus */

#define MIB (1u << 20)
/* the server's part size (BFDB_MODEL_PART_SIZE, model.proto) */
#define PART ((4u << 20) - (64u << 10))
/* gRPC's default receive limit (GRPC_DEFAULT_MAX_RECV_MESSAGE_LENGTH) */
#define DEFAULT_MAX_RECV (4 * 1024 * 1024)
#define PULL_CHUNK_MAX ((4u << 20) - (64u << 10))

#define M_PUSH "/buffdb.model.Model/Push"
#define M_STATUS "/buffdb.model.Model/PushStatus"
#define M_ABORT "/buffdb.model.Model/AbortPush"
#define M_PULL "/buffdb.model.Model/Pull"
#define M_LIST_MODELS "/buffdb.model.Model/ListModels"
#define M_LIST_VERSIONS "/buffdb.model.Model/ListVersions"
#define M_INFO "/buffdb.model.Model/GetInfo"
#define M_DELETE "/buffdb.model.Model/DeleteVersion"
#define M_ALIAS "/buffdb.model.Model/SetAlias"
#define M_VERIFY "/buffdb.model.Model/Verify"

typedef Buffdb__Model__ModelInfo ModelInfo;
typedef Buffdb__Model__FileInfo FileInfo;

TestSuite(model, .init = kc_suite_init, .fini = kc_suite_fini, .timeout = 150.);

/* ---- small helpers ------------------------------------------------------ */

/* dupn - kc_dupn, asserting it had the memory */
static char *
dupn(const void *p, size_t n)
{
    char *s = kc_dupn(p, n);

    cr_assert_not_null(s);
    return s;
}

/* beq - whether the bytes field b holds exactly s */
static int
beq(ProtobufCBinaryData b, const char *s)
{
    return b.len == strlen(s) && (b.len == 0 || memcmp(b.data, s, b.len) == 0);
}

/* B - a bytes field as a printable string (static buffers, 4 at a time) */
static const char *
B(ProtobufCBinaryData b)
{
    static char buf[4][256];
    static int k;
    char *o = buf[k++ & 3];

    snprintf(o, 256, "%.*s", (int)(b.len < 255 ? b.len : 255),
             b.len ? (const char *)b.data : "");
    return o;
}

/* fill_random - n bytes from a fixed-seed xorshift generator */
static void
fill_random(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 0x2545f4914f6cdd1dull, v = 0;

    for (size_t i = 0; i < n; i++) {
        if (i % 8 == 0) {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            v = x * 0x2545f4914f6cdd1dull;
        }
        p[i] = (uint8_t)(v >> (8 * (i % 8)));
    }
}

/* sha_hex - lowercase hex SHA-256 of n bytes (OpenSSL, not the server) */
static void
sha_hex(const void *data, size_t n, char out[65])
{
    static const char hx[] = "0123456789abcdef";
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dl = 0;

    cr_assert_eq(EVP_Digest(data, n, d, &dl, EVP_sha256(), NULL), 1);
    cr_assert_eq(dl, 32);
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hx[d[i] >> 4];
        out[2 * i + 1] = hx[d[i] & 15];
    }
    out[64] = '\0';
}

static size_t
parts_of(size_t size)
{
    return (size + PART - 1) / PART;
}

/* ---- model files -------------------------------------------------------- */

struct mfile {
    char path[128];
    uint8_t *data;
    size_t size;
    char sha[65];
    const char *hdr_sha; /* the header's sha256: NULL the real one, "" none */
};

/* mfile_take - f describes data (malloc'd, now owned by f) */
static void
mfile_take(struct mfile *f, const char *path, uint8_t *data, size_t size)
{
    memset(f, 0, sizeof(*f));
    snprintf(f->path, sizeof(f->path), "%s", path);
    f->data = data;
    f->size = size;
    sha_hex(data, size, f->sha);
}

static void
mfile_random(struct mfile *f, const char *path, size_t size, uint64_t seed)
{
    uint8_t *d = malloc(size ? size : 1);

    cr_assert_not_null(d);
    fill_random(d, size, seed);
    mfile_take(f, path, d, size);
}

/* mfile_rehash - after the test changed f->data */
static void
mfile_rehash(struct mfile *f)
{
    sha_hex(f->data, f->size, f->sha);
}

static void
mfiles_free(struct mfile *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(f[i].data);
        f[i].data = NULL;
    }
}

/* a growing byte buffer for the weight files */
struct wbuf {
    uint8_t *p;
    size_t n, cap;
};

static void
wb_put(struct wbuf *b, const void *d, size_t n)
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
wb_u32(struct wbuf *b, uint32_t v)
{
    uint8_t x[4];
    for (int i = 0; i < 4; i++)
        x[i] = (uint8_t)(v >> (8 * i));
    wb_put(b, x, 4);
}

static void
wb_u64(struct wbuf *b, uint64_t v)
{
    uint8_t x[8];
    for (int i = 0; i < 8; i++)
        x[i] = (uint8_t)(v >> (8 * i));
    wb_put(b, x, 8);
}

/* GGUF string: u64 length, bytes */
static void
wb_gstr(struct wbuf *b, const char *s)
{
    wb_u64(b, strlen(s));
    wb_put(b, s, strlen(s));
}

/*
 * make_safetensors - u64 LE header length, JSON header (padded with spaces
 * to a multiple of 8), data: "weight" F32 [2,3] (24 bytes) and "bias" F16
 * [3] (6 bytes), 9 parameters, dtypes F16 and F32
 */
static void
make_safetensors(struct mfile *f, const char *path)
{
    const char *json =
        "{\"__metadata__\":{\"format\":\"pt\"},"
        "\"weight\":{\"dtype\":\"F32\",\"shape\":[2,3],"
        "\"data_offsets\":[0,24]},"
        "\"bias\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[24,30]}}";
    struct wbuf b = {0};
    size_t jl = strlen(json), padded = (jl + 7) / 8 * 8;
    uint8_t data[30];

    wb_u64(&b, padded);
    wb_put(&b, json, jl);
    for (size_t i = jl; i < padded; i++)
        wb_put(&b, " ", 1);
    fill_random(data, sizeof(data), 7);
    wb_put(&b, data, sizeof(data));
    mfile_take(f, path, b.p, b.n);
}

/*
 * make_gguf - a GGUF v3 file: 4 key-values (strings, a u32, an array of
 * strings), tensors "tok_embd.weight" F32 [4,2] at 0 and
 * "output_norm.weight" F16 [8] at 32, data aligned to 32 bytes (the
 * default alignment): 16 parameters, dtypes F16 and F32
 */
static void
make_gguf(struct mfile *f, const char *path)
{
    struct wbuf b = {0};
    uint8_t data[48];

    wb_put(&b, "GGUF", 4);
    wb_u32(&b, 3);  /* version */
    wb_u64(&b, 2);  /* tensor_count */
    wb_u64(&b, 4);  /* kv_count */
    wb_gstr(&b, "general.architecture");
    wb_u32(&b, 8); /* string */
    wb_gstr(&b, "llama");
    wb_gstr(&b, "general.name");
    wb_u32(&b, 8);
    wb_gstr(&b, "tiny-test");
    wb_gstr(&b, "llama.context_length");
    wb_u32(&b, 4); /* u32 */
    wb_u32(&b, 128);
    wb_gstr(&b, "tokenizer.ggml.tokens");
    wb_u32(&b, 9); /* array */
    wb_u32(&b, 8); /* of strings */
    wb_u64(&b, 3);
    wb_gstr(&b, "a");
    wb_gstr(&b, "bc");
    wb_gstr(&b, "def");
    /* tensor infos */
    wb_gstr(&b, "tok_embd.weight");
    wb_u32(&b, 2);
    wb_u64(&b, 4);
    wb_u64(&b, 2);
    wb_u32(&b, 0); /* F32 */
    wb_u64(&b, 0);
    wb_gstr(&b, "output_norm.weight");
    wb_u32(&b, 1);
    wb_u64(&b, 8);
    wb_u32(&b, 1); /* F16 */
    wb_u64(&b, 32);
    while (b.n % 32 != 0)
        wb_put(&b, "", 1);
    fill_random(data, sizeof(data), 11);
    wb_put(&b, data, sizeof(data));
    mfile_take(f, path, b.p, b.n);
}

/* ---- Push requests ------------------------------------------------------ */

static const int64_t IN_SHAPE[] = {1, 3, 224, 224};
static const int64_t OUT_SHAPE[] = {1, 1000};

/* add_header - the PushHeader of name:version with files f (framework
 * "pytorch", parameters layers=50 and owner=tests) */
static void
add_header(struct gc_reqs *q, const char *name, const char *ver,
           const struct mfile *f, size_t n)
{
    ModelInfo mi = BUFFDB__MODEL__MODEL_INFO__INIT;
    FileInfo *fi = calloc(n ? n : 1, sizeof(*fi));
    FileInfo **fp = calloc(n ? n : 1, sizeof(*fp));
    Buffdb__Model__ModelInfo__ParametersEntry pe[2], *pp[2];

    cr_assert(fi != NULL && fp != NULL);
    mi.name = kc_str(name);
    mi.version = kc_str(ver);
    mi.framework = kc_str("pytorch");
    mi.description = kc_str("a model for the tests");
    mi.n_input_shape = 4;
    mi.input_shape = (int64_t *)IN_SHAPE;
    mi.n_output_shape = 2;
    mi.output_shape = (int64_t *)OUT_SHAPE;
    for (int i = 0; i < 2; i++) {
        buffdb__model__model_info__parameters_entry__init(&pe[i]);
        pp[i] = &pe[i];
    }
    pe[0].key = (char *)"layers";
    pe[0].value = (char *)"50";
    pe[1].key = (char *)"owner";
    pe[1].value = (char *)"tests";
    mi.n_parameters = 2;
    mi.parameters = pp;
    for (size_t i = 0; i < n; i++) {
        buffdb__model__file_info__init(&fi[i]);
        fi[i].path = kc_str(f[i].path);
        fi[i].size = f[i].size;
        fi[i].sha256 = kc_str(f[i].hdr_sha ? f[i].hdr_sha : f[i].sha);
        fp[i] = &fi[i];
    }
    mi.n_files = n;
    mi.files = fp;
    Buffdb__Model__PushHeader h = BUFFDB__MODEL__PUSH_HEADER__INIT;
    h.info = &mi;
    Buffdb__Model__PushRequest m = BUFFDB__MODEL__PUSH_REQUEST__INIT;
    m.msg_case = BUFFDB__MODEL__PUSH_REQUEST__MSG_HEADER;
    m.header = &h;
    gc_reqs_add(q, &m.base);
    free(fi);
    free(fp);
}

/* add_chunk - one chunk of file */
static void
add_chunk(struct gc_reqs *q, uint32_t file, uint64_t off, const void *data,
          size_t len)
{
    Buffdb__Model__Chunk ch = BUFFDB__MODEL__CHUNK__INIT;
    ch.file = file;
    ch.offset = off;
    ch.data.data = (uint8_t *)data;
    ch.data.len = len;
    Buffdb__Model__PushRequest m = BUFFDB__MODEL__PUSH_REQUEST__INIT;
    m.msg_case = BUFFDB__MODEL__PUSH_REQUEST__MSG_CHUNK;
    m.chunk = &ch;
    gc_reqs_add(q, &m.base);
}

/* add_chunks - [from, to) of file f (index file) in chunks of `chunk` */
static void
add_chunks(struct gc_reqs *q, uint32_t file, const struct mfile *f,
           size_t from, size_t to, size_t chunk)
{
    for (size_t o = from; o < to; o += chunk)
        add_chunk(q, file, o, f->data + o, to - o < chunk ? to - o : chunk);
}

/* push_reqs - header and every byte of every file, in 1 MiB chunks */
static void
push_reqs(struct gc_reqs *q, const char *name, const char *ver,
          const struct mfile *f, size_t n)
{
    add_header(q, name, ver, f, n);
    for (size_t i = 0; i < n; i++)
        add_chunks(q, (uint32_t)i, &f[i], 0, f[i].size, MIB);
}

static void
push_run(struct gc_conn *c, const struct gc_reqs *q, struct gc_result *r)
{
    gc_call_pipelined(c, M_PUSH, q->v, q->n, PUSH_DEADLINE_MS, r);
}

static ModelInfo *
info_of(const struct gc_buf *b, const char *what)
{
    ModelInfo *mi = buffdb__model__model_info__unpack(NULL, b->len, b->data);
    cr_assert_not_null(mi, "%s: undecodable ModelInfo", what);
    return mi;
}

/* push_q_ok - run a prepared push, retrying (bounded) while ABORTED (a
 * cancelled call of the same version not yet torn down); asserts OK and
 * returns the ModelInfo */
static ModelInfo *
push_q_ok(struct gc_conn *c, const struct gc_reqs *q, const char *what)
{
    struct gc_result r;

    for (int i = 0;; i++) {
        push_run(c, q, &r);
        if (r.code != GRPC_STATUS_ABORTED || i >= RETRY_TRIES)
            break;
        gc_result_free(&r);
        ts_sleep_ms(100);
    }
    kc_expect_status(&r, GRPC_STATUS_OK, what);
    cr_assert_eq(r.n, 1, "%s: %zu responses", what, r.n);
    ModelInfo *mi = info_of(&r.msgs[0], what);
    gc_result_free(&r);
    return mi;
}

/* push_ok - push every byte of f as name:version; the stored ModelInfo */
static ModelInfo *
push_ok(struct gc_conn *c, const char *name, const char *ver,
        const struct mfile *f, size_t n)
{
    struct gc_reqs q = {0};
    char what[300];

    snprintf(what, sizeof(what), "Push %s:%s", name, ver);
    push_reqs(&q, name, ver, f, n);
    ModelInfo *mi = push_q_ok(c, &q, what);
    gc_reqs_free(&q);
    return mi;
}

/* push_fail - push the prepared requests, assert code and details */
static void
push_fail(struct gc_conn *c, const struct gc_reqs *q, grpc_status_code code,
          const char *needle, const char *what)
{
    struct gc_result r;

    push_run(c, q, &r);
    kc_expect_fail(&r, code, needle, what);
    gc_result_free(&r);
}

/* ---- the other Model calls ---------------------------------------------- */

/* push_status - the unfinished push of name:version, NULL if NOT_FOUND */
static Buffdb__Model__PushStatusResponse *
push_status(struct gc_conn *c, const char *name, const char *ver)
{
    Buffdb__Model__PushStatusRequest m =
        BUFFDB__MODEL__PUSH_STATUS_REQUEST__INIT;
    struct gc_result r;
    Buffdb__Model__PushStatusResponse *p = NULL;

    m.name = kc_str(name);
    m.version = kc_str(ver);
    kc_call1(c, M_STATUS, &m.base, KC_DEADLINE_MS, &r);
    cr_assert(r.code == GRPC_STATUS_OK || r.code == GRPC_STATUS_NOT_FOUND,
              "PushStatus %s:%s: %s (\"%s\")", name, ver,
              gc_status_name(r.code), r.details);
    if (r.code == GRPC_STATUS_OK) {
        cr_assert_eq(r.n, 1);
        p = buffdb__model__push_status_response__unpack(NULL, r.msgs[0].len,
                                                        r.msgs[0].data);
        cr_assert_not_null(p, "undecodable PushStatusResponse");
    } else {
        cr_assert_eq(r.n, 0);
    }
    gc_result_free(&r);
    return p;
}

/* held_bytes - PushStatus's held_bytes, -1 if there is no unfinished push */
static int64_t
held_bytes(struct gc_conn *c, const char *name, const char *ver)
{
    Buffdb__Model__PushStatusResponse *p = push_status(c, name, ver);
    int64_t h = p ? (int64_t)p->held_bytes : -1;

    if (p)
        buffdb__model__push_status_response__free_unpacked(p, NULL);
    return h;
}

/* wait_held - poll PushStatus (bounded) until it holds at least want bytes;
 * returns what it holds last */
static int64_t
wait_held(struct gc_conn *c, const char *name, const char *ver, int64_t want)
{
    long until = ts_now_ms() + WAIT_MS;
    int64_t h;

    while ((h = held_bytes(c, name, ver)) < want && ts_now_ms() < until)
        ts_sleep_ms(20);
    return h;
}

static void
expect_no_push(struct gc_conn *c, const char *name, const char *ver,
               const char *what)
{
    Buffdb__Model__PushStatusResponse *p = push_status(c, name, ver);

    cr_assert_null(p, "%s: PushStatus of %s:%s holds %" PRIu64 " of %" PRIu64
                   " bytes, expected NOT_FOUND", what, name, ver,
                   p ? p->held_bytes : 0, p ? p->total_bytes : 0);
}

static void
abort_r(struct gc_conn *c, const char *name, const char *ver,
        struct gc_result *r)
{
    Buffdb__Model__AbortPushRequest m = BUFFDB__MODEL__ABORT_PUSH_REQUEST__INIT;
    m.name = kc_str(name);
    m.version = kc_str(ver);
    kc_call1(c, M_ABORT, &m.base, KC_DEADLINE_MS, r);
}

static void
info_r(struct gc_conn *c, const char *name, const char *ver,
       const char *alias, struct gc_result *r)
{
    Buffdb__Model__GetInfoRequest m = BUFFDB__MODEL__GET_INFO_REQUEST__INIT;
    m.name = kc_str(name);
    m.version = kc_str(ver ? ver : "");
    m.alias = kc_str(alias ? alias : "");
    kc_call1(c, M_INFO, &m.base, KC_DEADLINE_MS, r);
}

/* get_info - GetInfo, asserting OK */
static ModelInfo *
get_info(struct gc_conn *c, const char *name, const char *ver,
         const char *alias)
{
    struct gc_result r;
    char what[300];

    snprintf(what, sizeof(what), "GetInfo %s:%s@%s", name, ver ? ver : "",
             alias ? alias : "");
    info_r(c, name, ver, alias, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, what);
    cr_assert_eq(r.n, 1);
    ModelInfo *mi = info_of(&r.msgs[0], what);
    gc_result_free(&r);
    return mi;
}

static void
expect_no_info(struct gc_conn *c, const char *name, const char *ver,
               const char *alias, const char *what)
{
    struct gc_result r;

    info_r(c, name, ver, alias, &r);
    kc_expect_fail(&r, GRPC_STATUS_NOT_FOUND, NULL, what);
    gc_result_free(&r);
}

static void
delete_r(struct gc_conn *c, const char *name, const char *ver, int force,
         struct gc_result *r)
{
    Buffdb__Model__DeleteVersionRequest m =
        BUFFDB__MODEL__DELETE_VERSION_REQUEST__INIT;
    m.name = kc_str(name);
    m.version = kc_str(ver);
    m.force = force;
    kc_call1(c, M_DELETE, &m.base, KC_DEADLINE_MS, r);
}

static Buffdb__Model__DeleteVersionResponse *
delete_ok(struct gc_conn *c, const char *name, const char *ver, int force)
{
    struct gc_result r;

    delete_r(c, name, ver, force, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "DeleteVersion");
    cr_assert_eq(r.n, 1);
    Buffdb__Model__DeleteVersionResponse *d =
        buffdb__model__delete_version_response__unpack(NULL, r.msgs[0].len,
                                                       r.msgs[0].data);
    cr_assert_not_null(d);
    gc_result_free(&r);
    return d;
}

static void
alias_r(struct gc_conn *c, const char *name, const char *alias,
        const char *ver, struct gc_result *r)
{
    Buffdb__Model__SetAliasRequest m = BUFFDB__MODEL__SET_ALIAS_REQUEST__INIT;
    m.name = kc_str(name);
    m.alias = kc_str(alias);
    m.version = kc_str(ver);
    kc_call1(c, M_ALIAS, &m.base, KC_DEADLINE_MS, r);
}

/* alias_ok - SetAlias, asserting OK and the previous version */
static void
alias_ok(struct gc_conn *c, const char *name, const char *alias,
         const char *ver, const char *previous)
{
    struct gc_result r;

    alias_r(c, name, alias, ver, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "SetAlias");
    cr_assert_eq(r.n, 1);
    Buffdb__Model__SetAliasResponse *a =
        buffdb__model__set_alias_response__unpack(NULL, r.msgs[0].len,
                                                  r.msgs[0].data);
    cr_assert_not_null(a);
    cr_assert(beq(a->previous, previous), "SetAlias %s@%s -> \"%s\": "
              "previous \"%s\", expected \"%s\"", name, alias, ver,
              B(a->previous), previous);
    buffdb__model__set_alias_response__free_unpacked(a, NULL);
    gc_result_free(&r);
}

static Buffdb__Model__VerifyResponse *
verify(struct gc_conn *c, const char *name, const char *ver)
{
    Buffdb__Model__VerifyRequest m = BUFFDB__MODEL__VERIFY_REQUEST__INIT;
    struct gc_result r;

    m.name = kc_str(name);
    m.version = kc_str(ver);
    kc_call1(c, M_VERIFY, &m.base, PUSH_DEADLINE_MS, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "Verify");
    cr_assert_eq(r.n, 1);
    Buffdb__Model__VerifyResponse *v = buffdb__model__verify_response__unpack(
        NULL, r.msgs[0].len, r.msgs[0].data);
    cr_assert_not_null(v);
    gc_result_free(&r);
    return v;
}

static Buffdb__Model__ListVersionsResponse *
list_versions(struct gc_conn *c, const char *name)
{
    Buffdb__Model__ListVersionsRequest m =
        BUFFDB__MODEL__LIST_VERSIONS_REQUEST__INIT;
    struct gc_result r;

    m.name = kc_str(name);
    kc_call1(c, M_LIST_VERSIONS, &m.base, KC_DEADLINE_MS, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "ListVersions");
    cr_assert_eq(r.n, 1);
    Buffdb__Model__ListVersionsResponse *v =
        buffdb__model__list_versions_response__unpack(NULL, r.msgs[0].len,
                                                      r.msgs[0].data);
    cr_assert_not_null(v);
    gc_result_free(&r);
    return v;
}

static Buffdb__Model__ListModelsResponse *
list_models(struct gc_conn *c)
{
    Buffdb__Model__ListModelsRequest m =
        BUFFDB__MODEL__LIST_MODELS_REQUEST__INIT;
    struct gc_result r;

    kc_call1(c, M_LIST_MODELS, &m.base, KC_DEADLINE_MS, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "ListModels");
    cr_assert_eq(r.n, 1);
    Buffdb__Model__ListModelsResponse *v =
        buffdb__model__list_models_response__unpack(NULL, r.msgs[0].len,
                                                    r.msgs[0].data);
    cr_assert_not_null(v);
    gc_result_free(&r);
    return v;
}

/* ---- Pull --------------------------------------------------------------- */

static void
pull_r(struct gc_conn *c, const char *name, const char *ver,
       const char *alias, uint32_t file, uint64_t off, uint32_t chunk,
       struct gc_result *r)
{
    Buffdb__Model__PullRequest m = BUFFDB__MODEL__PULL_REQUEST__INIT;
    m.name = kc_str(name);
    m.version = kc_str(ver ? ver : "");
    m.alias = kc_str(alias ? alias : "");
    m.file = file;
    m.offset = off;
    m.chunk_size = chunk;
    kc_call1(c, M_PULL, &m.base, PUSH_DEADLINE_MS, r);
}

/* what a Pull returned, by file */
struct pulled {
    ModelInfo *mi;
    uint8_t **data;  /* per file: its bytes at their offsets */
    uint64_t *from;  /* per file: the first offset sent */
    uint64_t *to;    /* per file: one past the last byte sent */
    size_t nchunks, max_chunk;
};

/*
 * pulled_decode - check the shape of a Pull's responses: the info first,
 * then chunks in file order, each at the offset following the previous
 * one, starting at (file0, off0); if complete (the call ended OK), every
 * file from file0 on was sent to its end
 */
static void
pulled_decode(const struct gc_result *r, struct pulled *p, uint32_t file0,
              uint64_t off0, int complete)
{
    memset(p, 0, sizeof(*p));
    cr_assert_geq(r->n, 1, "Pull: no response (%s \"%s\")",
                  gc_status_name(r->code), r->details);
    Buffdb__Model__PullResponse *m = buffdb__model__pull_response__unpack(
        NULL, r->msgs[0].len, r->msgs[0].data);
    cr_assert_not_null(m, "Pull: undecodable first response");
    cr_assert_eq(m->msg_case, BUFFDB__MODEL__PULL_RESPONSE__MSG_INFO,
                 "Pull: the first response is not the info");
    p->mi = m->info;
    m->info = NULL;
    m->msg_case = BUFFDB__MODEL__PULL_RESPONSE__MSG__NOT_SET;
    buffdb__model__pull_response__free_unpacked(m, NULL);
    size_t nf = p->mi->n_files;
    p->data = calloc(nf ? nf : 1, sizeof(*p->data));
    p->from = calloc(nf ? nf : 1, sizeof(*p->from));
    p->to = calloc(nf ? nf : 1, sizeof(*p->to));
    cr_assert(p->data && p->from && p->to);
    for (size_t f = 0; f < nf; f++) {
        p->data[f] = calloc(1, p->mi->files[f]->size + 1);
        cr_assert_not_null(p->data[f]);
    }
    uint32_t cur = file0;
    uint64_t at = off0;
    if (cur < nf)
        p->from[cur] = p->to[cur] = at;
    for (size_t i = 1; i < r->n; i++) {
        m = buffdb__model__pull_response__unpack(NULL, r->msgs[i].len,
                                                 r->msgs[i].data);
        cr_assert_not_null(m, "Pull: undecodable response %zu", i);
        cr_assert_eq(m->msg_case, BUFFDB__MODEL__PULL_RESPONSE__MSG_CHUNK,
                     "Pull: response %zu is not a chunk", i);
        Buffdb__Model__Chunk *ch = m->chunk;
        cr_assert_lt(ch->file, nf, "Pull: chunk for file %u of %zu",
                     ch->file, nf);
        cr_assert_geq(ch->file, cur, "Pull: chunk for file %u after file %u",
                      ch->file, cur);
        while (cur < ch->file) {
            cr_assert_eq(at, p->mi->files[cur]->size, "Pull: file %u ends at "
                         "%" PRIu64 " of %" PRIu64 " bytes", cur, at,
                         p->mi->files[cur]->size);
            cur++;
            at = 0;
            p->from[cur] = p->to[cur] = 0;
        }
        cr_assert_eq(ch->offset, at, "Pull: chunk of file %u at %" PRIu64
                     ", expected %" PRIu64, cur, ch->offset, at);
        cr_assert_gt(ch->data.len, 0, "Pull: an empty chunk");
        cr_assert_leq(ch->data.len, p->mi->files[cur]->size - at,
                      "Pull: chunk past the end of file %u", cur);
        memcpy(p->data[cur] + at, ch->data.data, ch->data.len);
        at += ch->data.len;
        p->to[cur] = at;
        p->nchunks++;
        if (ch->data.len > p->max_chunk)
            p->max_chunk = ch->data.len;
        buffdb__model__pull_response__free_unpacked(m, NULL);
    }
    if (complete)
        for (; cur < nf; cur++, at = 0)
            cr_assert_eq(at, p->mi->files[cur]->size, "Pull: file %u ends at "
                         "%" PRIu64 " of %" PRIu64 " bytes", cur, at,
                         p->mi->files[cur]->size);
}

static void
pulled_free(struct pulled *p)
{
    if (p->mi) {
        for (size_t f = 0; f < p->mi->n_files; f++)
            free(p->data[f]);
        buffdb__model__model_info__free_unpacked(p->mi, NULL);
    }
    free(p->data);
    free(p->from);
    free(p->to);
    memset(p, 0, sizeof(*p));
}

/* expect_pull_same - Pull the whole version, assert every file's bytes */
static void
expect_pull_same(struct gc_conn *c, const char *name, const char *ver,
                 const char *alias, const struct mfile *f, size_t n,
                 uint32_t chunk)
{
    struct gc_result r;
    struct pulled p;
    char what[300];

    snprintf(what, sizeof(what), "Pull %s:%s@%s", name, ver ? ver : "",
             alias ? alias : "");
    pull_r(c, name, ver, alias, 0, 0, chunk, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, what);
    pulled_decode(&r, &p, 0, 0, 1);
    cr_assert_eq(p.mi->n_files, n, "%s: %zu files, expected %zu", what,
                 p.mi->n_files, n);
    for (size_t i = 0; i < n; i++) {
        cr_assert(beq(p.mi->files[i]->path, f[i].path), "%s: file %zu is %s",
                  what, i, B(p.mi->files[i]->path));
        cr_assert_eq(p.mi->files[i]->size, f[i].size);
        cr_assert(memcmp(p.data[i], f[i].data, f[i].size) == 0,
                  "%s: the bytes of %s differ from what was pushed", what,
                  f[i].path);
    }
    cr_assert_leq(p.max_chunk, chunk ? chunk : MIB, "%s: a chunk of %zu "
                  "bytes", what, p.max_chunk);
    pulled_free(&p);
    gc_result_free(&r);
}

/* ---- Blob --------------------------------------------------------------- */

/* blob_get_all - one Blob.Get stream of every id, asserting OK */
static void
blob_get_all(struct gc_conn *c, const uint64_t *ids, size_t n,
             struct gc_result *r)
{
    struct gc_reqs q = {0};

    for (size_t i = 0; i < n; i++) {
        Buffdb__Blob__GetRequest m = BUFFDB__BLOB__GET_REQUEST__INIT;
        m.id = ids[i];
        gc_reqs_add(&q, &m.base);
    }
    gc_call_pipelined(c, KC_BLOB_GET, q.v, q.n, PUSH_DEADLINE_MS, r);
    gc_reqs_free(&q);
    kc_expect_status(r, GRPC_STATUS_OK, "Blob.Get");
    cr_assert_eq(r->n, n, "Blob.Get: %zu responses for %zu ids", r->n, n);
}

/* ---- ModelInfo checks --------------------------------------------------- */

/* param - the value of a parameters key, NULL if absent */
static const char *
param(const ModelInfo *mi, const char *key)
{
    for (size_t i = 0; i < mi->n_parameters; i++)
        if (strcmp(mi->parameters[i]->key, key) == 0)
            return mi->parameters[i]->value;
    return NULL;
}

static int
has_str(ProtobufCBinaryData *v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (beq(v[i], s))
            return 1;
    return 0;
}

/* expect_info - the stored info of a push of f: files, digests, parts,
 * sizes, created_at */
static void
expect_info(const ModelInfo *mi, const char *name, const char *ver,
            const struct mfile *f, size_t n)
{
    size_t k = 0;
    uint64_t total = 0;

    cr_assert(beq(mi->name, name), "name %s", B(mi->name));
    cr_assert(beq(mi->version, ver), "version %s, expected %s",
              B(mi->version), ver);
    cr_assert_eq(mi->n_files, n, "%zu files, expected %zu", mi->n_files, n);
    for (size_t i = 0; i < n; i++) {
        const FileInfo *fi = mi->files[i];
        cr_assert(beq(fi->path, f[i].path), "file %zu: %s, expected %s", i,
                  B(fi->path), f[i].path);
        cr_assert_eq(fi->size, f[i].size, "%s: size %" PRIu64 ", expected "
                     "%zu", f[i].path, fi->size, f[i].size);
        cr_assert(beq(fi->sha256, f[i].sha), "%s: sha256 %s, expected %s",
                  f[i].path, B(fi->sha256), f[i].sha);
        cr_assert_eq(fi->n_blob_ids, parts_of(f[i].size), "%s: %zu parts, "
                     "expected %zu", f[i].path, fi->n_blob_ids,
                     parts_of(f[i].size));
        for (size_t j = 0; j < fi->n_blob_ids; j++, k++) {
            cr_assert_lt(k, mi->n_blob_ids, "more file parts than blob_ids");
            cr_assert_eq(fi->blob_ids[j], mi->blob_ids[k], "blob_ids[%zu] "
                         "is not part %zu of %s", k, j, f[i].path);
            cr_assert_gt(fi->blob_ids[j], 0);
        }
        total += f[i].size;
    }
    cr_assert_eq(mi->n_blob_ids, k, "%zu blob_ids, the files have %zu parts",
                 mi->n_blob_ids, k);
    cr_assert_eq(mi->size_bytes, total, "size_bytes %" PRIu64 ", expected %"
                 PRIu64, mi->size_bytes, total);
    /* RFC 3339, UTC: 2026-01-02T03:04:05Z */
    const char *ca = B(mi->created_at);
    cr_assert(strlen(ca) >= 20 && ca[4] == '-' && ca[7] == '-' &&
              ca[10] == 'T' && ca[13] == ':' && ca[strlen(ca) - 1] == 'Z',
              "created_at \"%s\" is not RFC 3339 UTC", ca);
    cr_assert(beq(mi->framework, "pytorch"));
    cr_assert_eq(mi->n_input_shape, 4);
    cr_assert_eq(mi->input_shape[3], 224);
    cr_assert_eq(mi->n_output_shape, 2);
    cr_assert_eq(mi->output_shape[1], 1000);
    cr_assert_str_eq(param(mi, "layers") ? param(mi, "layers") : "(none)",
                     "50");
    cr_assert_str_eq(param(mi, "owner") ? param(mi, "owner") : "(none)",
                     "tests");
}

/* shared_ids - how many of a's blob ids b also has */
static size_t
shared_ids(const ModelInfo *a, const ModelInfo *b)
{
    size_t n = 0;
    for (size_t i = 0; i < a->n_blob_ids; i++)
        for (size_t j = 0; j < b->n_blob_ids; j++)
            if (a->blob_ids[i] == b->blob_ids[j]) {
                n++;
                break;
            }
    return n;
}

/* ---- 1. Push then Pull -------------------------------------------------- */

Test(model, push_then_pull_round_trips_weights_and_a_multipart_file)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    struct mfile f[3];

    make_safetensors(&f[0], "model.safetensors");
    make_gguf(&f[1], "gguf/model-q.gguf");
    mfile_random(&f[2], "extra/tokenizer.bin", 2 * PART + MIB + 12345, 1);
    f[1].hdr_sha = ""; /* optional: the server's digest is kept */

    ModelInfo *mi = push_ok(c, "llm", "1.0", f, 3);
    expect_info(mi, "llm", "1.0", f, 3);
    cr_assert_eq(mi->n_blob_ids, 5, "1 + 1 + 3 parts, got %zu",
                 mi->n_blob_ids);
    cr_assert(beq(mi->files[0]->format, "safetensors"), "format %s",
              B(mi->files[0]->format));
    cr_assert(beq(mi->files[1]->format, "gguf"), "format %s",
              B(mi->files[1]->format));
    cr_assert(beq(mi->files[2]->format, ""), "format %s",
              B(mi->files[2]->format));

    /* from the headers: 2 + 2 tensors, 9 + 16 parameters, F16 and F32 */
    cr_assert_eq(mi->tensor_count, 4, "tensor_count %" PRIu64,
                 mi->tensor_count);
    cr_assert_eq(mi->parameter_count, 25, "parameter_count %" PRIu64,
                 mi->parameter_count);
    cr_assert_eq(mi->n_dtypes, 2, "%zu dtypes", mi->n_dtypes);
    cr_assert(has_str(mi->dtypes, mi->n_dtypes, "F16") &&
              has_str(mi->dtypes, mi->n_dtypes, "F32"), "dtypes %s,%s",
              B(mi->dtypes[0]), B(mi->dtypes[1]));
    cr_assert_eq(mi->n_tensors, 4, "%zu tensors", mi->n_tensors);
    int seen = 0;
    for (size_t i = 0; i < mi->n_tensors; i++) {
        Buffdb__Model__TensorInfo *t = mi->tensors[i];
        if (beq(t->name, "weight")) {
            seen |= 1;
            cr_assert(beq(t->dtype, "F32") && beq(t->file, f[0].path));
            cr_assert(t->n_shape == 2 && t->shape[0] == 2 &&
                      t->shape[1] == 3, "weight: shape of %zu dims",
                      t->n_shape);
        } else if (beq(t->name, "bias")) {
            seen |= 2;
            cr_assert(beq(t->dtype, "F16") && t->n_shape == 1 &&
                      t->shape[0] == 3);
        } else if (beq(t->name, "tok_embd.weight")) {
            seen |= 4;
            cr_assert(beq(t->dtype, "F32") && beq(t->file, f[1].path));
            cr_assert(t->n_shape == 2 && t->shape[0] == 4 &&
                      t->shape[1] == 2);
        } else if (beq(t->name, "output_norm.weight")) {
            seen |= 8;
            cr_assert(beq(t->dtype, "F16") && t->n_shape == 1 &&
                      t->shape[0] == 8);
        } else {
            cr_assert_fail("unexpected tensor %s", B(t->name));
        }
    }
    cr_assert_eq(seen, 15, "tensors seen: mask %d", seen);
    cr_assert_str_eq(param(mi, "tensor_count") ? param(mi, "tensor_count")
                                               : "(none)", "4");
    cr_assert_str_eq(param(mi, "parameter_count")
                         ? param(mi, "parameter_count") : "(none)", "25");
    const char *dt = param(mi, "dtypes");
    cr_assert(dt && (strcmp(dt, "F16,F32") == 0 ||
                     strcmp(dt, "F32,F16") == 0), "parameters dtypes \"%s\"",
              dt ? dt : "(none)");
    cr_assert_eq(mi->n_parameters, 5, "%zu parameters", mi->n_parameters);

    /* GetInfo answers the same */
    ModelInfo *gi = get_info(c, "llm", "1.0", NULL);
    expect_info(gi, "llm", "1.0", f, 3);
    cr_assert(beq(gi->created_at, B(mi->created_at)));
    cr_assert_eq(gi->tensor_count, 4);
    buffdb__model__model_info__free_unpacked(gi, NULL);

    /* Pull: the info, then chunks; default (1 MiB) and 3 MiB chunks, and
     * the latest version when none is named */
    expect_pull_same(c, "llm", "1.0", NULL, f, 3, 0);
    expect_pull_same(c, "llm", NULL, NULL, f, 3, 3 * MIB);
    expect_pull_same(c, "llm", "1.0", NULL, f, 3, 1000);

    struct gc_result r;
    struct pulled p;
    pull_r(c, "llm", "1.0", NULL, 0, 0, 0, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "Pull");
    pulled_decode(&r, &p, 0, 0, 1);
    expect_info(p.mi, "llm", "1.0", f, 3);
    cr_assert_eq(p.mi->parameter_count, 25);
    /* 1 MiB chunks: at least one per MiB of each file */
    cr_assert_geq(p.nchunks, 1 + 1 + (f[2].size + MIB - 1) / MIB,
                  "%zu chunks", p.nchunks);
    pulled_free(&p);
    gc_result_free(&r);

    Buffdb__Model__VerifyResponse *v = verify(c, "llm", "1.0");
    cr_assert(v->ok, "Verify of a fresh push: not ok");
    cr_assert_eq(v->n_files, 3);
    cr_assert_eq(v->bytes_checked, mi->size_bytes);
    buffdb__model__verify_response__free_unpacked(v, NULL);

    cr_assert_eq(kc_blob_count(c), 5, "blobs after one push of 5 parts");
    expect_no_push(c, "llm", "1.0", "after a finished push");
    buffdb__model__model_info__free_unpacked(mi, NULL);
    mfiles_free(f, 3);
    gc_close(c);
    ts_stop_ok(s);
}

/* ---- 2. the upstream view ----------------------------------------------- */

Test(model, upstream_keys_and_blobs_describe_the_model)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    struct mfile f[2];
    static const char *const vers[] = {"2.0", "1.0", "1.5"};
    ModelInfo *mi[3];

    /* 2 parts, then 1 for config.json */
    mfile_random(&f[0], "weights/part-a.bin", PART + MIB + 7, 21);
    mfile_random(&f[1], "config.json", 333, 22);
    for (int i = 0; i < 3; i++) {
        f[0].data[0] = (uint8_t)i; /* versions differ in their first part */
        mfile_rehash(&f[0]);
        mi[i] = push_ok(c, "resnet", vers[i], f, 2);
        expect_info(mi[i], "resnet", vers[i], f, 2);
    }
    /* the last version pushed is what f holds now */

    /* model:<name>:<version>:metadata: upstream's ModelInfo, keys in order */
    char *js = kc_kv_value(c, "model:resnet:1.5:metadata");
    cr_assert_not_null(js, "no metadata key");
    json_error_t je;
    json_t *o = json_loads(js, 0, &je);
    cr_assert_not_null(o, "metadata is not JSON (%s): %s", je.text, js);
    cr_assert(json_is_object(o));
    static const char *const keys[] = {
        "name", "version", "framework", "description", "input_shape",
        "output_shape", "parameters", "created_at", "size_bytes",
        "blob_ids"};
    size_t nk = 0;
    const char *k;
    json_t *val;
    json_object_foreach(o, k, val) {
        cr_assert_lt(nk, 10, "more than 10 keys: %s", js);
        cr_assert_str_eq(k, keys[nk], "key %zu is \"%s\", expected \"%s\": "
                         "%s", nk, k, keys[nk], js);
        nk++;
    }
    cr_assert_eq(nk, 10, "%zu keys: %s", nk, js);
    cr_assert_str_eq(json_string_value(json_object_get(o, "name")), "resnet");
    cr_assert_str_eq(json_string_value(json_object_get(o, "version")), "1.5");
    cr_assert_str_eq(json_string_value(json_object_get(o, "framework")),
                     "pytorch");
    cr_assert_str_eq(json_string_value(json_object_get(o, "description")),
                     "a model for the tests");
    json_t *ins = json_object_get(o, "input_shape");
    cr_assert(json_is_array(ins) && json_array_size(ins) == 4 &&
              json_integer_value(json_array_get(ins, 1)) == 3 &&
              json_integer_value(json_array_get(ins, 3)) == 224, "%s", js);
    json_t *outs = json_object_get(o, "output_shape");
    cr_assert(json_is_array(outs) && json_array_size(outs) == 2 &&
              json_integer_value(json_array_get(outs, 1)) == 1000);
    json_t *pa = json_object_get(o, "parameters");
    cr_assert(json_is_object(pa), "parameters: %s", js);
    cr_assert_str_eq(json_string_value(json_object_get(pa, "layers")), "50");
    cr_assert_str_eq(json_string_value(json_object_get(pa, "owner")),
                     "tests");
    cr_assert_str_eq(json_string_value(json_object_get(o, "created_at")),
                     B(mi[2]->created_at));
    cr_assert_eq(json_integer_value(json_object_get(o, "size_bytes")),
                 (json_int_t)(f[0].size + f[1].size));
    json_t *ids = json_object_get(o, "blob_ids");
    cr_assert(json_is_array(ids) && json_array_size(ids) == 3,
              "blob_ids: %s", js);
    uint64_t idv[3];
    for (size_t i = 0; i < 3; i++) {
        idv[i] = (uint64_t)json_integer_value(json_array_get(ids, i));
        cr_assert_eq(idv[i], mi[2]->blob_ids[i], "blob_ids[%zu]", i);
    }
    json_decref(o);
    free(js);

    /* Blob.Get of each id, concatenated: the files back to back */
    struct gc_result r;
    blob_get_all(c, idv, 3, &r);
    size_t total = f[0].size + f[1].size, at = 0;
    uint8_t *cat = malloc(total);
    cr_assert_not_null(cat);
    for (size_t i = 0; i < 3; i++) {
        Buffdb__Blob__GetResponse *g = buffdb__blob__get_response__unpack(
            NULL, r.msgs[i].len, r.msgs[i].data);
        cr_assert_not_null(g);
        /* part 0 is a full part, part 1 the rest of the file, part 2
         * the whole of config.json */
        size_t want_len = i == 0 ? PART : i == 1 ? f[0].size - PART
                                                 : f[1].size;
        cr_assert_eq(g->bytes.len, want_len, "part %zu: %zu bytes, expected "
                     "%zu", i, g->bytes.len, want_len);
        cr_assert_leq(at + g->bytes.len, total, "the parts are longer than "
                      "the files");
        memcpy(cat + at, g->bytes.data, g->bytes.len);
        at += g->bytes.len;
        /* upstream's blob metadata */
        cr_assert_eq(g->_metadata_case,
                     BUFFDB__BLOB__GET_RESPONSE___METADATA_METADATA,
                     "part %zu has no metadata", i);
        char *ms = dupn(g->metadata.data, g->metadata.len);
        json_t *m = json_loads(ms, 0, &je);
        cr_assert_not_null(m, "part %zu metadata is not JSON: %s", i, ms);
        /* parts 1 and 2 were first stored by 2.0, which named them */
        json_t *want = json_pack("{s:s, s:I, s:s, s:s}", "model", "resnet",
                                 "part", (json_int_t)i, "type", "weights",
                                 "version", i == 0 ? "1.5" : "2.0");
        cr_assert(json_equal(m, want), "part %zu metadata %s", i, ms);
        json_decref(want);
        json_decref(m);
        free(ms);
        buffdb__blob__get_response__free_unpacked(g, NULL);
    }
    cr_assert_eq(at, total, "the parts hold %zu bytes, the files %zu", at,
                 total);
    cr_assert(memcmp(cat, f[0].data, f[0].size) == 0 &&
              memcmp(cat + f[0].size, f[1].data, f[1].size) == 0,
              "the parts concatenated are not the files back to back");
    free(cat);
    gc_result_free(&r);

    /* a part two versions share keeps the first pusher's metadata; each
     * version's own first part names it */
    blob_get_all(c, &mi[0]->blob_ids[0], 1, &r);
    Buffdb__Blob__GetResponse *g0 = buffdb__blob__get_response__unpack(
        NULL, r.msgs[0].len, r.msgs[0].data);
    cr_assert_not_null(g0);
    char *ms0 = dupn(g0->metadata.data, g0->metadata.len);
    cr_assert(strstr(ms0, "\"2.0\"") != NULL, "v2.0 part 0 metadata: %s",
              ms0);
    free(ms0);
    buffdb__blob__get_response__free_unpacked(g0, NULL);
    gc_result_free(&r);
    cr_assert_eq(shared_ids(mi[0], mi[2]), 2, "2.0 and 1.5 share parts 1 "
                 "and 2");
    cr_assert_eq(kc_blob_count(c), 3 + 2, "3 first parts and 2 shared ones");

    /* the index: versions in push order */
    char *idx = kc_kv_value(c, "model:resnet:index");
    cr_assert_not_null(idx, "no index key");
    json_t *ia = json_loads(idx, 0, &je);
    cr_assert(json_is_array(ia) && json_array_size(ia) == 3, "index %s", idx);
    for (size_t i = 0; i < 3; i++)
        cr_assert_str_eq(json_string_value(json_array_get(ia, i)), vers[i],
                         "index %s", idx);
    json_decref(ia);
    free(idx);

    /* ListVersions: oldest first too; ListModels */
    Buffdb__Model__ListVersionsResponse *lv = list_versions(c, "resnet");
    cr_assert_eq(lv->n_versions, 3);
    for (size_t i = 0; i < 3; i++) {
        cr_assert(beq(lv->versions[i]->version, vers[i]), "ListVersions[%zu] "
                  "%s", i, B(lv->versions[i]->version));
        cr_assert(beq(lv->versions[i]->framework, "pytorch"));
        cr_assert_eq(lv->versions[i]->size_bytes, f[0].size + f[1].size);
    }
    buffdb__model__list_versions_response__free_unpacked(lv, NULL);
    Buffdb__Model__ListModelsResponse *lm = list_models(c);
    cr_assert_eq(lm->n_models, 1);
    cr_assert(beq(lm->models[0]->name, "resnet"));
    cr_assert_eq(lm->models[0]->versions, 3);
    cr_assert(beq(lm->models[0]->latest, "1.5"), "latest %s",
              B(lm->models[0]->latest));
    buffdb__model__list_models_response__free_unpacked(lm, NULL);

    /* deleting a version rewrites the index and drops its metadata key
     * (read first, so a cached copy would show) */
    js = kc_kv_value(c, "model:resnet:1.0:metadata");
    cr_assert_not_null(js);
    free(js);
    Buffdb__Model__DeleteVersionResponse *d = delete_ok(c, "resnet", "1.0",
                                                        0);
    cr_assert_eq(d->parts_freed, 1, "1.0 had one part of its own");
    buffdb__model__delete_version_response__free_unpacked(d, NULL);
    js = kc_kv_value(c, "model:resnet:1.0:metadata");
    cr_assert_null(js, "metadata of a deleted version: %s", js);
    idx = kc_kv_value(c, "model:resnet:index");
    cr_assert_not_null(idx);
    ia = json_loads(idx, 0, &je);
    cr_assert(json_is_array(ia) && json_array_size(ia) == 2 &&
              strcmp(json_string_value(json_array_get(ia, 0)), "2.0") == 0 &&
              strcmp(json_string_value(json_array_get(ia, 1)), "1.5") == 0,
              "index after deleting 1.0: %s", idx);
    json_decref(ia);
    free(idx);

    for (int i = 0; i < 3; i++)
        buffdb__model__model_info__free_unpacked(mi[i], NULL);
    mfiles_free(f, 2);
    gc_close(c);
    ts_stop_ok(s);
}

/*
 * Upstream clients read the parts with Blob.Get, most with gRPC's default
 * 4 MiB receive limit: every GetResponse of a part (its bytes, its
 * metadata, the protobuf framing) must fit in 4 MiB, not just its data.
 */
Test(model, every_part_fits_a_default_4mib_client_message)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    struct mfile f;

    mfile_random(&f, "big.bin", 2 * PART + MIB, 31); /* 2 full parts */
    ModelInfo *mi = push_ok(c, "big", "1", &f, 1);
    cr_assert_eq(mi->n_blob_ids, 3, "%zu parts", mi->n_blob_ids);
    struct gc_result r;
    blob_get_all(c, mi->blob_ids, mi->n_blob_ids, &r);
    for (size_t i = 0; i < r.n; i++)
        cr_assert_leq(r.msgs[i].len, (size_t)DEFAULT_MAX_RECV,
                      "Blob.Get of part %zu (blob %" PRIu64 ") is a %zu-byte "
                      "message: a client with the default 4 MiB receive "
                      "limit (%d bytes) cannot read it", i, mi->blob_ids[i],
                      r.msgs[i].len, DEFAULT_MAX_RECV);
    gc_result_free(&r);
    /* Pull's own largest chunk does fit */
    pull_r(c, "big", "1", NULL, 0, 0, PULL_CHUNK_MAX, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "Pull at the largest chunk_size");
    for (size_t i = 0; i < r.n; i++)
        cr_assert_leq(r.msgs[i].len, (size_t)DEFAULT_MAX_RECV,
                      "Pull response %zu: %zu bytes", i, r.msgs[i].len);
    gc_result_free(&r);
    buffdb__model__model_info__free_unpacked(mi, NULL);
    mfiles_free(&f, 1);
    gc_close(c);
    ts_stop_ok(s);
}

/* ---- 3. digest mismatch ------------------------------------------------- */

Test(model, digest_mismatch_is_refused_and_leaves_nothing)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    struct mfile f[2];
    struct gc_reqs q = {0};
    char wrong[65];

    mfile_random(&f[0], "a.bin", PART + MIB, 41); /* 2 parts stored first */
    mfile_random(&f[1], "b/second.bin", PART + 2 * MIB, 42); /* 2 parts */
    int64_t before = kc_blob_count(c);

    /* the second file's digest is wrong: both files' parts were stored by
     * the time it is found */
    sha_hex("something else", 14, wrong);
    f[1].hdr_sha = wrong;
    push_reqs(&q, "m", "1", f, 2);
    push_fail(c, &q, GRPC_STATUS_INVALID_ARGUMENT, "b/second.bin",
              "Push with a wrong sha256");
    gc_reqs_free(&q);
    expect_no_push(c, "m", "1", "after a digest mismatch");
    expect_no_info(c, "m", "1", NULL, "GetInfo after a digest mismatch");
    cr_assert_eq(kc_blob_count(c), before, "blobs left by the refused push");

    /* the first file's digest wrong, in upper case hex */
    char upper[65];
    for (int i = 0; i < 65; i++)
        upper[i] = (char)(wrong[i] >= 'a' && wrong[i] <= 'f' ? wrong[i] - 32
                                                             : wrong[i]);
    f[0].hdr_sha = upper;
    f[1].hdr_sha = NULL;
    push_reqs(&q, "m", "1", f, 2);
    push_fail(c, &q, GRPC_STATUS_INVALID_ARGUMENT, "a.bin",
              "Push with a wrong sha256 for the first file");
    gc_reqs_free(&q);
    expect_no_push(c, "m", "1", "after a digest mismatch");
    cr_assert_eq(kc_blob_count(c), before, "blobs left by the refused push");

    /* the right digests in upper case are accepted */
    char up0[65], up1[65];
    for (int i = 0; i < 65; i++) {
        up0[i] = (char)(f[0].sha[i] >= 'a' ? f[0].sha[i] - 32 : f[0].sha[i]);
        up1[i] = (char)(f[1].sha[i] >= 'a' ? f[1].sha[i] - 32 : f[1].sha[i]);
    }
    f[0].hdr_sha = up0;
    f[1].hdr_sha = up1;
    ModelInfo *mi = push_ok(c, "m", "1", f, 2);
    expect_info(mi, "m", "1", f, 2); /* stored in lower case */
    cr_assert_eq(kc_blob_count(c), before + 4);
    buffdb__model__model_info__free_unpacked(mi, NULL);
    mfiles_free(f, 2);
    gc_close(c);
    ts_stop_ok(s);
}

/* ---- 4. interrupted pushes ---------------------------------------------- */

Test(model, cancelled_push_is_held_and_resumes_from_offset_zero)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s), *c2 = kc_conn_to(s);
    struct mfile f;
    struct gc_reqs q = {0};

    /* parts PART + PART + 2 MiB; 1 MiB chunks: the 10th (last) starts at
     * 9 MiB, past the end of the second part */
    mfile_random(&f, "w.bin", 2 * PART + 2 * MIB, 51);
    int64_t before = kc_blob_count(c);
    push_reqs(&q, "m", "1", &f, 1);
    cr_assert_eq(q.n, 1 + 10);
    cr_assert_geq(9 * MIB, 2 * PART);
    /* header and 9 of the 10 chunks, then the client goes away */
    struct gc_stream *st = gc_stream_start(c, M_PUSH, PUSH_DEADLINE_MS);
    cr_assert_not_null(st);
    for (size_t i = 0; i < 10; i++)
        cr_assert_eq(gc_stream_send(st, &q.v[i]), 0, "send %zu", i);
    int64_t h = wait_held(c2, "m", "1", 2 * PART);
    cr_assert_eq(h, 2 * PART, "held %" PRId64 " before the cancel", h);
    gc_stream_cancel(st);

    /* what is held: whole parts only */
    Buffdb__Model__PushStatusResponse *ps = NULL;
    long until = ts_now_ms() + WAIT_MS;
    do {
        if (ps)
            buffdb__model__push_status_response__free_unpacked(ps, NULL);
        ps = push_status(c2, "m", "1");
        cr_assert_not_null(ps, "no unfinished push after the cancel");
    } while (ps->held_bytes != 2 * PART && ts_now_ms() < until);
    cr_assert_eq(ps->held_bytes, 2 * PART);
    cr_assert_eq(ps->total_bytes, f.size);
    cr_assert_eq(ps->n_files, 1);
    cr_assert(beq(ps->files[0]->path, "w.bin"));
    cr_assert_eq(ps->files[0]->size, f.size);
    cr_assert_eq(ps->files[0]->held, 2 * PART);
    cr_assert_not_null(ps->info);
    cr_assert(beq(ps->info->name, "m") && beq(ps->info->version, "1"));
    buffdb__model__push_status_response__free_unpacked(ps, NULL);
    cr_assert_eq(kc_blob_count(c2), before + 2, "two whole parts stored");
    expect_no_info(c2, "m", "1", NULL, "GetInfo of an unfinished push");

    /* the same files again, every byte from offset 0 */
    ModelInfo *mi = push_q_ok(c2, &q, "Push resumed from offset 0");
    expect_info(mi, "m", "1", &f, 1);
    cr_assert_eq(kc_blob_count(c2), before + 3, "the held parts are reused");
    expect_no_push(c2, "m", "1", "after the resumed push");
    expect_pull_same(c2, "m", "1", NULL, &f, 1, 0);
    buffdb__model__model_info__free_unpacked(mi, NULL);
    gc_reqs_free(&q);
    mfiles_free(&f, 1);
    gc_close(c);
    gc_close(c2);
    ts_stop_ok(s);
}

Test(model, half_closed_push_resumes_from_the_held_offsets)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    struct mfile f[2];
    struct gc_reqs q = {0};
    struct gc_result r;

    mfile_random(&f[0], "a.bin", PART + MIB, 61);           /* 2 parts */
    mfile_random(&f[1], "b.bin", PART + 2 * MIB + 100, 62); /* 2 parts */
    int64_t before = kc_blob_count(c);

    /* all of a.bin and b.bin's first part and half a MiB, then
     * half-close */
    add_header(&q, "m", "2", f, 2);
    add_chunks(&q, 0, &f[0], 0, f[0].size, MIB);
    add_chunks(&q, 1, &f[1], 0, PART + MIB / 2, MIB / 2);
    push_run(c, &q, &r);
    kc_expect_fail(&r, GRPC_STATUS_FAILED_PRECONDITION, "incomplete",
                   "Push closed early");
    gc_result_free(&r);
    gc_reqs_free(&q);

    Buffdb__Model__PushStatusResponse *ps = push_status(c, "m", "2");
    cr_assert_not_null(ps, "no unfinished push after an early half-close");
    cr_assert_eq(ps->n_files, 2);
    cr_assert_eq(ps->files[0]->held, f[0].size, "a.bin held %" PRIu64,
                 ps->files[0]->held);
    cr_assert_eq(ps->files[1]->held, PART, "b.bin held %" PRIu64
                 " (whole parts only)", ps->files[1]->held);
    cr_assert_eq(ps->held_bytes, f[0].size + PART);
    cr_assert_eq(ps->total_bytes, f[0].size + f[1].size);
    uint64_t held1 = ps->files[1]->held;
    buffdb__model__push_status_response__free_unpacked(ps, NULL);
    cr_assert_eq(kc_blob_count(c), before + 3);

    /* resume: the header, then only b.bin from its held offset */
    add_header(&q, "m", "2", f, 2);
    add_chunks(&q, 1, &f[1], held1, f[1].size, MIB);
    ModelInfo *mi = push_q_ok(c, &q, "Push resumed from the held offsets");
    gc_reqs_free(&q);
    expect_info(mi, "m", "2", f, 2);
    cr_assert_eq(kc_blob_count(c), before + 4, "2 + 2 parts, %" PRId64 " blobs",
                 kc_blob_count(c) - before);
    expect_pull_same(c, "m", "2", NULL, f, 2, 0);
    Buffdb__Model__VerifyResponse *v = verify(c, "m", "2");
    cr_assert(v->ok);
    buffdb__model__verify_response__free_unpacked(v, NULL);
    buffdb__model__model_info__free_unpacked(mi, NULL);

    /* a resume may start below what is held: those bytes are ignored */
    f[1].data[0] ^= 1; /* another version, same a.bin */
    mfile_rehash(&f[1]);
    add_header(&q, "m", "3", f, 2);
    add_chunks(&q, 0, &f[0], 0, f[0].size, MIB);
    add_chunks(&q, 1, &f[1], 0, PART + MIB / 2, MIB);
    push_run(c, &q, &r);
    kc_expect_fail(&r, GRPC_STATUS_FAILED_PRECONDITION, "incomplete",
                   "Push closed early");
    gc_result_free(&r);
    gc_reqs_free(&q);
    add_header(&q, "m", "3", f, 2);
    /* from 1 MiB in 1.25 MiB chunks: the one at 3.5 MiB straddles the
     * held PART */
    cr_assert(MIB + 2 * (MIB + MIB / 4) < PART &&
              MIB + 3 * (MIB + MIB / 4) > PART);
    add_chunks(&q, 1, &f[1], MIB, f[1].size, MIB + MIB / 4);
    mi = push_q_ok(c, &q, "Push resumed below its held offset");
    gc_reqs_free(&q);
    expect_info(mi, "m", "3", f, 2);
    expect_pull_same(c, "m", "3", NULL, f, 2, 0);
    buffdb__model__model_info__free_unpacked(mi, NULL);

    mfiles_free(f, 2);
    gc_close(c);
    ts_stop_ok(s);
}

Test(model, other_files_replace_an_unfinished_push_and_abort_frees_it)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    struct mfile x, y;
    struct gc_reqs q = {0};
    struct gc_result r;

    mfile_random(&x, "x.bin", 2 * PART + MIB, 71);     /* 3 parts */
    mfile_random(&y, "y.bin", 2 * PART + 2 * MIB, 72); /* 3 parts */
    int64_t before = kc_blob_count(c);

    add_header(&q, "m", "1", &x, 1);
    add_chunks(&q, 0, &x, 0, 2 * PART, MIB);
    push_run(c, &q, &r);
    kc_expect_fail(&r, GRPC_STATUS_FAILED_PRECONDITION, "incomplete", "Push x");
    gc_result_free(&r);
    gc_reqs_free(&q);
    cr_assert_eq(held_bytes(c, "m", "1"), 2 * PART);
    cr_assert_eq(kc_blob_count(c), before + 2);

    /* other files for the same version: x's parts go */
    add_header(&q, "m", "1", &y, 1);
    add_chunks(&q, 0, &y, 0, PART + 1, MIB);
    push_run(c, &q, &r);
    kc_expect_fail(&r, GRPC_STATUS_FAILED_PRECONDITION, "incomplete", "Push y");
    gc_result_free(&r);
    gc_reqs_free(&q);
    Buffdb__Model__PushStatusResponse *ps = push_status(c, "m", "1");
    cr_assert_not_null(ps);
    cr_assert_eq(ps->n_files, 1);
    cr_assert(beq(ps->files[0]->path, "y.bin"), "the unfinished push is "
              "still of %s", B(ps->files[0]->path));
    cr_assert_eq(ps->held_bytes, PART);
    cr_assert_eq(ps->total_bytes, y.size);
    buffdb__model__push_status_response__free_unpacked(ps, NULL);
    cr_assert_eq(kc_blob_count(c), before + 1, "x's 2 parts freed, y's 1 held");

    /* same paths and sizes but another digest: also other files */
    struct mfile y2 = y;
    char other[65];
    sha_hex("other", 5, other);
    y2.hdr_sha = other;
    add_header(&q, "m", "1", &y2, 1);
    push_run(c, &q, &r);
    kc_expect_fail(&r, GRPC_STATUS_FAILED_PRECONDITION, "incomplete",
                   "Push y with another digest");
    gc_result_free(&r);
    gc_reqs_free(&q);
    cr_assert_eq(held_bytes(c, "m", "1"), 0, "a push with another digest "
                 "resumed the old one");
    cr_assert_eq(kc_blob_count(c), before, "the replaced push's part is freed");

    /* AbortPush frees what only it used */
    add_header(&q, "m", "1", &y, 1);
    add_chunks(&q, 0, &y, 0, 2 * PART + MIB, MIB); /* 2 whole parts */
    push_run(c, &q, &r);
    kc_expect_fail(&r, GRPC_STATUS_FAILED_PRECONDITION, "incomplete", "Push y");
    gc_result_free(&r);
    gc_reqs_free(&q);
    cr_assert_eq(kc_blob_count(c), before + 2);
    abort_r(c, "m", "1", &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "AbortPush");
    cr_assert_eq(r.n, 1);
    Buffdb__Model__AbortPushResponse *a =
        buffdb__model__abort_push_response__unpack(NULL, r.msgs[0].len,
                                                   r.msgs[0].data);
    cr_assert_not_null(a);
    cr_assert_eq(a->parts_freed, 2, "parts_freed %" PRIu64, a->parts_freed);
    buffdb__model__abort_push_response__free_unpacked(a, NULL);
    gc_result_free(&r);
    cr_assert_eq(kc_blob_count(c), before, "blobs after AbortPush");
    expect_no_push(c, "m", "1", "after AbortPush");
    abort_r(c, "m", "1", &r);
    kc_expect_fail(&r, GRPC_STATUS_NOT_FOUND, NULL, "a second AbortPush");
    gc_result_free(&r);

    /* a part a version uses survives the abort of a push that shared it */
    ModelInfo *mi = push_ok(c, "m", "2", &x, 1);
    add_header(&q, "m", "3", &x, 1);
    add_chunks(&q, 0, &x, 0, PART, MIB); /* x's first part, whole */
    push_run(c, &q, &r);
    kc_expect_fail(&r, GRPC_STATUS_FAILED_PRECONDITION, "incomplete", "Push x");
    gc_result_free(&r);
    gc_reqs_free(&q);
    cr_assert_eq(kc_blob_count(c), before + 3);
    abort_r(c, "m", "3", &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "AbortPush of a sharing push");
    a = buffdb__model__abort_push_response__unpack(NULL, r.msgs[0].len,
                                                   r.msgs[0].data);
    cr_assert_not_null(a);
    cr_assert_eq(a->parts_freed, 0, "AbortPush freed a part version 2 uses");
    buffdb__model__abort_push_response__free_unpacked(a, NULL);
    gc_result_free(&r);
    cr_assert_eq(kc_blob_count(c), before + 3);
    expect_pull_same(c, "m", "2", NULL, &x, 1, 0);
    buffdb__model__model_info__free_unpacked(mi, NULL);

    mfiles_free(&x, 1);
    mfiles_free(&y, 1);
    gc_close(c);
    ts_stop_ok(s);
}

/* ---- 5. deduplication --------------------------------------------------- */

/* kv_is - assert key's value through Kv.Get, twice (the second read is
 * served from the key cache once the first filled it) */
static void
kv_is(struct gc_conn *c, const char *key, const char *want)
{
    kc_kv_expect(c, NULL, key, want);
    kc_kv_expect(c, NULL, key, want);
}

/*
 * A push's commit and an alias change drop the cache entries of the kv
 * keys they write (and only those): read through Kv.Get, cached, then
 * changed by the Model service, they read the new value at once.
 */
Test(model, model_writes_keep_their_cached_kv_keys_current)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    struct mfile f;

    kc_kv_set_ok(c, NULL, "other", "x");
    mfile_random(&f, "w.bin", 1000, 91);
    ModelInfo *v1 = push_ok(c, "cm", "v1", &f, 1);
    buffdb__model__model_info__free_unpacked(v1, NULL);
    kv_is(c, "model:cm:index", "[\"v1\"]");
    alias_ok(c, "cm", "prod", "v1", "");
    kv_is(c, "model:cm:alias:prod", "v1");
    kv_is(c, "other", "x");

    f.data[0] ^= 1;
    mfile_rehash(&f);
    ModelInfo *v2 = push_ok(c, "cm", "v2", &f, 1);
    buffdb__model__model_info__free_unpacked(v2, NULL);
    kv_is(c, "model:cm:index", "[\"v1\",\"v2\"]");
    char *md = kc_kv_value(c, "model:cm:v2:metadata");
    cr_assert_not_null(md, "no metadata key for v2");
    cr_expect_not_null(strstr(md, "\"version\":\"v2\""), "%s", md);
    free(md);

    alias_ok(c, "cm", "prod", "v2", "v1");
    kv_is(c, "model:cm:alias:prod", "v2");
    alias_ok(c, "cm", "prod", "", "v2"); /* removed */
    kc_kv_expect_missing(c, NULL, "model:cm:alias:prod");
    kv_is(c, "other", "x");
    mfiles_free(&f, 1);
    gc_close(c);
    ts_stop_ok(s);
}

Test(model, a_changed_byte_costs_one_part_and_delete_frees_only_it)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    struct mfile f;

    mfile_random(&f, "weights.bin", 3 * PART, 81); /* 3 full parts */
    int64_t b0 = kc_blob_count(c);
    ModelInfo *v1 = push_ok(c, "dd", "v1", &f, 1);
    int64_t b1 = kc_blob_count(c);
    cr_assert_eq(b1, b0 + 3);

    f.data[PART + PART / 2] ^= 0x5a; /* the middle part */
    mfile_rehash(&f);
    ModelInfo *v2 = push_ok(c, "dd", "v2", &f, 1);
    expect_info(v2, "dd", "v2", &f, 1);
    cr_assert_eq(kc_blob_count(c), b1 + 1, "v2 added %" PRId64 " blobs",
                 kc_blob_count(c) - b1);
    cr_assert_eq(shared_ids(v1, v2), 2, "v1 and v2 share %zu blob ids",
                 shared_ids(v1, v2));
    cr_assert_eq(v1->blob_ids[0], v2->blob_ids[0]);
    cr_assert_eq(v1->blob_ids[2], v2->blob_ids[2]);
    cr_assert_neq(v1->blob_ids[1], v2->blob_ids[1]);

    /* pushing v1's bytes again as v3 stores nothing */
    f.data[PART + PART / 2] ^= 0x5a;
    mfile_rehash(&f);
    ModelInfo *v3 = push_ok(c, "dd", "v3", &f, 1);
    cr_assert_eq(kc_blob_count(c), b1 + 1);
    cr_assert_eq(shared_ids(v1, v3), 3);
    Buffdb__Model__DeleteVersionResponse *d = delete_ok(c, "dd", "v3", 0);
    cr_assert_eq(d->parts_freed, 0, "v3 shared every part with v1");
    cr_assert_eq(d->bytes_freed, 0);
    buffdb__model__delete_version_response__free_unpacked(d, NULL);

    d = delete_ok(c, "dd", "v1", 0);
    cr_assert_eq(d->parts_freed, 1, "parts_freed %" PRIu64, d->parts_freed);
    cr_assert_eq(d->bytes_freed, PART, "bytes_freed %" PRIu64,
                 d->bytes_freed);
    cr_assert_eq(d->n_aliases_removed, 0);
    buffdb__model__delete_version_response__free_unpacked(d, NULL);
    cr_assert_eq(kc_blob_count(c), b1, "v2's 3 parts left");
    expect_no_info(c, "dd", "v1", NULL, "GetInfo of a deleted version");
    struct gc_result r;
    delete_r(c, "dd", "v1", 0, &r);
    kc_expect_fail(&r, GRPC_STATUS_NOT_FOUND, NULL, "deleting v1 twice");
    gc_result_free(&r);

    f.data[PART + PART / 2] ^= 0x5a; /* v2's bytes */
    mfile_rehash(&f);
    expect_pull_same(c, "dd", "v2", NULL, &f, 1, 0);
    Buffdb__Model__VerifyResponse *v = verify(c, "dd", "v2");
    cr_assert(v->ok, "Verify v2 after deleting v1");
    cr_assert_eq(v->bytes_checked, 3 * PART);
    buffdb__model__verify_response__free_unpacked(v, NULL);

    d = delete_ok(c, "dd", "v2", 0);
    cr_assert_eq(d->parts_freed, 3);
    cr_assert_eq(d->bytes_freed, 3 * PART);
    buffdb__model__delete_version_response__free_unpacked(d, NULL);
    cr_assert_eq(kc_blob_count(c), b0);
    char *ix = kc_kv_value(c, "model:dd:index");
    cr_assert(ix == NULL || strcmp(ix, "[]") == 0, "the index key of a model "
              "with no versions left: %s", ix);
    free(ix);

    buffdb__model__model_info__free_unpacked(v1, NULL);
    buffdb__model__model_info__free_unpacked(v2, NULL);
    buffdb__model__model_info__free_unpacked(v3, NULL);
    mfiles_free(&f, 1);
    gc_close(c);
    ts_stop_ok(s);
}

/*
 * A part an unfinished push has recorded survives the deletion of the
 * version it came from; a Pull of a version deleted under it ends
 * NOT_FOUND, saying the version was deleted during the pull, after only
 * right bytes.
 */
Test(model, delete_during_a_push_or_a_pull_keeps_what_they_use)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s), *c2 = kc_conn_to(s);
    struct mfile f;
    struct gc_reqs q = {0};

    mfile_random(&f, "w.bin", 3 * PART, 181); /* 3 full parts */
    ModelInfo *v1 = push_ok(c, "dp", "v1", &f, 1);

    /* v2 (same bytes) has recorded part 0 when v1 goes */
    push_reqs(&q, "dp", "v2", &f, 1);
    struct gc_stream *st = gc_stream_start(c, M_PUSH, PUSH_DEADLINE_MS);
    cr_assert_not_null(st);
    /* header and 5 MiB: part 0 whole, part 1 not */
    cr_assert(5 * MIB > PART && 5 * MIB < 2 * PART);
    for (size_t i = 0; i < 6; i++)
        cr_assert_eq(gc_stream_send(st, &q.v[i]), 0);
    cr_assert_eq(wait_held(c2, "dp", "v2", PART), PART);
    Buffdb__Model__DeleteVersionResponse *d = delete_ok(c2, "dp", "v1", 0);
    cr_assert_eq(d->parts_freed, 2, "deleting v1 freed %" PRIu64 " parts; "
                 "v2's push holds part 0", d->parts_freed);
    buffdb__model__delete_version_response__free_unpacked(d, NULL);
    cr_assert_eq(kc_blob_count(c2), 1);
    for (size_t i = 6; i < q.n; i++)
        cr_assert_eq(gc_stream_send(st, &q.v[i]), 0);
    struct gc_result r = {0};
    gc_stream_finish(st, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "the push of v2");
    cr_assert_eq(r.n, 1);
    ModelInfo *v2 = info_of(&r.msgs[0], "Push v2");
    gc_result_free(&r);
    expect_info(v2, "dp", "v2", &f, 1);
    cr_assert_eq(v2->blob_ids[0], v1->blob_ids[0], "part 0 was not kept");
    cr_assert_eq(kc_blob_count(c2), 3);
    expect_pull_same(c2, "dp", "v2", NULL, &f, 1, 0);
    gc_reqs_free(&q);

    /* a Pull in progress when its version is deleted: 10 parts (nearly
     * 40 MiB), far more than flow control lets the server send ahead of
     * a client not reading, so parts are still unread when the version
     * goes */
    struct mfile big;
    mfile_random(&big, "big.bin", 10 * PART, 182);
    ModelInfo *vb = push_ok(c, "dp", "big", &big, 1);
    buffdb__model__model_info__free_unpacked(vb, NULL);
    Buffdb__Model__PullRequest pm = BUFFDB__MODEL__PULL_REQUEST__INIT;
    pm.name = kc_str("dp");
    pm.version = kc_str("big");
    pm.chunk_size = 64 << 10;
    struct gc_buf pb = gc_pack(&pm.base);
    st = gc_stream_start(c, M_PULL, PUSH_DEADLINE_MS);
    cr_assert_not_null(st);
    cr_assert_eq(gc_stream_send(st, &pb), 0);
    free(pb.data);
    cr_assert_eq(gc_stream_half_close(st), 0);
    struct gc_buf got;
    for (int i = 0; i < 2; i++) { /* the info and a first chunk */
        cr_assert_eq(gc_stream_recv(st, &got), 1, "Pull: response %d", i);
        gc_reqs_add_raw(&q, got.data, got.len);
        free(got.data);
    }
    d = delete_ok(c2, "dp", "big", 0);
    cr_assert_eq(d->parts_freed, 10);
    buffdb__model__delete_version_response__free_unpacked(d, NULL);
    memset(&r, 0, sizeof(r));
    gc_stream_finish(st, &r);
    cr_log_info("Pull during DeleteVersion: %s (\"%s\") after %zu more "
                "responses", gc_status_name(r.code), r.details, r.n);
    /* whatever was sent is the right bytes, at the right offsets */
    struct gc_result all = {0};
    all.code = r.code;
    all.n = q.n + r.n;
    all.msgs = calloc(all.n, sizeof(*all.msgs));
    cr_assert_not_null(all.msgs);
    for (size_t i = 0; i < q.n; i++)
        all.msgs[i] = q.v[i];
    for (size_t i = 0; i < r.n; i++)
        all.msgs[q.n + i] = r.msgs[i];
    struct pulled p;
    pulled_decode(&all, &p, 0, 0, r.code == GRPC_STATUS_OK);
    cr_assert(memcmp(p.data[0], big.data, p.to[0]) == 0,
              "the bytes sent before the delete are wrong");
    uint64_t sent = p.to[0];
    mfiles_free(&big, 1);
    pulled_free(&p);
    free(all.msgs);
    kc_expect_status(&r, GRPC_STATUS_NOT_FOUND, "Pull of a version deleted "
                     "under it");
    cr_assert(strstr(r.details, "deleted during the pull") != NULL,
              "Pull of a version deleted under it: details \"%s\" do not "
              "say so", r.details);
    cr_assert_lt(sent, 10 * (uint64_t)PART, "every byte was sent");
    gc_result_free(&r);
    gc_reqs_free(&q);

    buffdb__model__model_info__free_unpacked(v1, NULL);
    buffdb__model__model_info__free_unpacked(v2, NULL);
    mfiles_free(&f, 1);
    gc_close(c);
    gc_close(c2);
    ts_stop_ok(s);
}

/* ---- 6. aliases --------------------------------------------------------- */

Test(model, aliases_move_resolve_and_guard_deletes)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    struct mfile f1, f2;
    struct gc_result r;

    mfile_random(&f1, "m.bin", 100000, 91);
    mfile_random(&f2, "m.bin", 120000, 92);
    ModelInfo *a = push_ok(c, "clf", "1", &f1, 1);
    ModelInfo *b = push_ok(c, "clf", "2", &f2, 1);

    alias_ok(c, "clf", "production", "1", "");
    ModelInfo *mi = get_info(c, "clf", NULL, "production");
    cr_assert(beq(mi->version, "1"), "production -> %s", B(mi->version));
    cr_assert(has_str(mi->aliases, mi->n_aliases, "production"),
              "GetInfo of 1 does not list its alias");
    buffdb__model__model_info__free_unpacked(mi, NULL);
    expect_pull_same(c, "clf", NULL, "production", &f1, 1, 0);
    char *v = kc_kv_value(c, "model:clf:alias:production");
    cr_assert(v && strcmp(v, "1") == 0, "alias key holds %s", v ? v : "-");
    free(v);

    alias_ok(c, "clf", "production", "2", "1");
    mi = get_info(c, "clf", NULL, "production");
    cr_assert(beq(mi->version, "2"), "production -> %s", B(mi->version));
    buffdb__model__model_info__free_unpacked(mi, NULL);
    mi = get_info(c, "clf", "1", NULL);
    cr_assert_eq(mi->n_aliases, 0, "version 1 still lists an alias");
    buffdb__model__model_info__free_unpacked(mi, NULL);
    expect_pull_same(c, "clf", NULL, "production", &f2, 1, 0);
    v = kc_kv_value(c, "model:clf:alias:production");
    cr_assert(v && strcmp(v, "2") == 0, "alias key holds %s", v ? v : "-");
    free(v);
    Buffdb__Model__ListModelsResponse *lm = list_models(c);
    cr_assert_eq(lm->n_models, 1);
    cr_assert_eq(lm->models[0]->n_aliases, 1);
    cr_assert_str_eq(lm->models[0]->aliases[0]->key, "production");
    cr_assert_str_eq(lm->models[0]->aliases[0]->value, "2");
    buffdb__model__list_models_response__free_unpacked(lm, NULL);

    /* an alias names an existing version */
    alias_r(c, "clf", "production", "9", &r);
    kc_expect_fail(&r, GRPC_STATUS_NOT_FOUND, NULL, "SetAlias to a missing "
                   "version");
    gc_result_free(&r);
    alias_r(c, "nomodel", "production", "1", &r);
    kc_expect_fail(&r, GRPC_STATUS_NOT_FOUND, NULL, "SetAlias on a missing "
                   "model");
    gc_result_free(&r);
    alias_r(c, "clf", "bad:alias", "1", &r);
    kc_expect_fail(&r, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                   "SetAlias bad:alias");
    gc_result_free(&r);
    mi = get_info(c, "clf", NULL, "production");
    cr_assert(beq(mi->version, "2"), "a refused SetAlias moved the alias");
    buffdb__model__model_info__free_unpacked(mi, NULL);

    /* an aliased version is deleted only with force, which drops it */
    delete_r(c, "clf", "2", 0, &r);
    kc_expect_fail(&r, GRPC_STATUS_FAILED_PRECONDITION, "production",
                   "DeleteVersion of an aliased version");
    gc_result_free(&r);
    mi = get_info(c, "clf", "2", NULL); /* still there */
    buffdb__model__model_info__free_unpacked(mi, NULL);
    Buffdb__Model__DeleteVersionResponse *d = delete_ok(c, "clf", "2", 1);
    cr_assert_eq(d->n_aliases_removed, 1);
    cr_assert(beq(d->aliases_removed[0], "production"));
    cr_assert_eq(d->parts_freed, 1);
    cr_assert_eq(d->bytes_freed, f2.size);
    buffdb__model__delete_version_response__free_unpacked(d, NULL);
    expect_no_info(c, "clf", NULL, "production", "GetInfo by a removed "
                   "alias");
    cr_assert_null(kc_kv_value(c, "model:clf:alias:production"),
                   "the alias key outlived its version");
    struct gc_result pr;
    pull_r(c, "clf", NULL, "production", 0, 0, 0, &pr);
    kc_expect_fail(&pr, GRPC_STATUS_NOT_FOUND, NULL, "Pull by a removed alias");
    gc_result_free(&pr);

    /* empty version removes an alias */
    alias_ok(c, "clf", "staging", "1", "");
    alias_ok(c, "clf", "staging", "", "1");
    expect_no_info(c, "clf", NULL, "staging", "GetInfo by a removed alias");
    cr_assert_null(kc_kv_value(c, "model:clf:alias:staging"));
    d = delete_ok(c, "clf", "1", 0); /* no alias left on 1 */
    cr_assert_eq(d->n_aliases_removed, 0);
    buffdb__model__delete_version_response__free_unpacked(d, NULL);

    buffdb__model__model_info__free_unpacked(a, NULL);
    buffdb__model__model_info__free_unpacked(b, NULL);
    mfiles_free(&f1, 1);
    mfiles_free(&f2, 1);
    gc_close(c);
    ts_stop_ok(s);
}

/* ---- 7. concurrency ----------------------------------------------------- */

Test(model, a_running_push_aborts_a_second_one_on_either_worker)
{
    struct ts_server *s = ts_start(NULL);
    pid_t wa, wb, wc;
    struct gc_conn *ca = kc_conn_find(s, 0, KC_OTHER, KC_DEADLINE_MS, &wa);
    struct gc_conn *cb = kc_conn_find(s, wa, KC_OTHER, KC_DEADLINE_MS, &wb);
    struct gc_conn *cc = kc_conn_find(s, wa, KC_SAME, KC_DEADLINE_MS, &wc);
    struct mfile f;
    struct gc_reqs q = {0};
    struct gc_result r;

    mfile_random(&f, "w.bin", 2 * PART, 101); /* 2 full parts */
    push_reqs(&q, "m", "1", &f, 1);
    struct gc_stream *st = gc_stream_start(ca, M_PUSH, PUSH_DEADLINE_MS);
    cr_assert_not_null(st);
    /* header and 5 MiB: part 0 whole, part 1 not */
    cr_assert(5 * MIB > PART && 5 * MIB < 2 * PART);
    for (size_t i = 0; i < 6; i++)
        cr_assert_eq(gc_stream_send(st, &q.v[i]), 0);
    cr_assert_eq(wait_held(cb, "m", "1", PART), PART);

    /* another worker, then the same worker */
    push_run(cb, &q, &r);
    kc_expect_fail(&r, GRPC_STATUS_ABORTED, "in progress",
                   "a second push on another worker");
    gc_result_free(&r);
    push_run(cc, &q, &r);
    kc_expect_fail(&r, GRPC_STATUS_ABORTED, "in progress",
                   "a second push on the same worker");
    gc_result_free(&r);
    abort_r(cb, "m", "1", &r);
    kc_expect_fail(&r, GRPC_STATUS_ABORTED, NULL,
                   "AbortPush of a running push");
    gc_result_free(&r);
    abort_r(cc, "m", "1", &r);
    kc_expect_fail(&r, GRPC_STATUS_ABORTED, NULL, "AbortPush of a running push "
                   "on its worker");
    gc_result_free(&r);

    for (size_t i = 6; i < q.n; i++)
        cr_assert_eq(gc_stream_send(st, &q.v[i]), 0);
    struct gc_result fr = {0};
    gc_stream_finish(st, &fr);
    kc_expect_status(&fr, GRPC_STATUS_OK, "the first push");
    cr_assert_eq(fr.n, 1);
    gc_result_free(&fr);

    push_run(cb, &q, &r);
    kc_expect_fail(&r, GRPC_STATUS_ALREADY_EXISTS, NULL,
                   "a push of an existing version");
    gc_result_free(&r);
    push_run(cc, &q, &r);
    kc_expect_fail(&r, GRPC_STATUS_ALREADY_EXISTS, NULL,
                   "a push of an existing version");
    gc_result_free(&r);
    Buffdb__Model__ListVersionsResponse *lv = list_versions(cb, "m");
    cr_assert_eq(lv->n_versions, 1);
    buffdb__model__list_versions_response__free_unpacked(lv, NULL);
    expect_pull_same(cc, "m", "1", NULL, &f, 1, 0);
    cr_assert_eq(kc_blob_count(cb), 2);
    expect_no_push(cb, "m", "1", "after the push");

    gc_reqs_free(&q);
    mfiles_free(&f, 1);
    gc_close(ca);
    gc_close(cb);
    gc_close(cc);
    ts_stop_ok(s);
}

struct racer {
    struct gc_conn *c;
    const struct gc_reqs *q;
    pthread_barrier_t *bar;
    grpc_status_code code;
    char details[256];
    pid_t pid;
};

static void *
racer_main(void *arg)
{
    struct racer *rc = arg;
    struct gc_result r;

    pthread_barrier_wait(rc->bar);
    gc_call_pipelined(rc->c, M_PUSH, rc->q->v, rc->q->n, PUSH_DEADLINE_MS,
                      &r);
    rc->code = r.code;
    rc->pid = r.worker_pid;
    snprintf(rc->details, sizeof(rc->details), "%s", r.details);
    gc_result_free(&r);
    return NULL;
}

Test(model, racing_pushes_of_one_version_make_exactly_one)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    struct mfile f[2];
    enum { ROUNDS = 4 };

    mfile_random(&f[0], "w.bin", PART + 2 * MIB, 111); /* 2 parts */
    mfile_random(&f[1], "w.bin", PART + 2 * MIB, 112);
    for (int round = 0; round < ROUNDS; round++) {
        char ver[16];
        pid_t w0, w1;
        snprintf(ver, sizeof(ver), "r%d", round);
        struct gc_conn *c0 = kc_conn_find(s, 0, KC_OTHER, KC_DEADLINE_MS, &w0);
        struct gc_conn *c1 = kc_conn_find(
            s, w0, round % 2 ? KC_SAME : KC_OTHER, KC_DEADLINE_MS, &w1);
        /* odd rounds: both on one worker; the two push different bytes */
        struct gc_reqs q0 = {0}, q1 = {0};
        push_reqs(&q0, "race", ver, &f[0], 1);
        push_reqs(&q1, "race", ver, &f[1], 1);
        pthread_barrier_t bar;
        pthread_barrier_init(&bar, NULL, 2);
        struct racer r0 = {c0, &q0, &bar, 0, "", 0};
        struct racer r1 = {c1, &q1, &bar, 0, "", 0};
        pthread_t t0, t1;
        cr_assert_eq(pthread_create(&t0, NULL, racer_main, &r0), 0);
        cr_assert_eq(pthread_create(&t1, NULL, racer_main, &r1), 0);
        pthread_join(t0, NULL);
        pthread_join(t1, NULL);
        pthread_barrier_destroy(&bar);
        cr_log_info("round %d (workers %ld, %ld): %s \"%s\" / %s \"%s\"",
                    round, (long)r0.pid, (long)r1.pid,
                    gc_status_name(r0.code), r0.details,
                    gc_status_name(r1.code), r1.details);
        int ok0 = r0.code == GRPC_STATUS_OK, ok1 = r1.code == GRPC_STATUS_OK;
        cr_assert(ok0 + ok1 == 1, "round %d: %s \"%s\" and %s \"%s\": not "
                  "exactly one success", round, gc_status_name(r0.code),
                  r0.details, gc_status_name(r1.code), r1.details);
        grpc_status_code lost = ok0 ? r1.code : r0.code;
        cr_assert(lost == GRPC_STATUS_ABORTED ||
                      lost == GRPC_STATUS_ALREADY_EXISTS,
                  "round %d: the loser ended %s (\"%s\")", round,
                  gc_status_name(lost), ok0 ? r1.details : r0.details);
        /* the winner's bytes, intact */
        const struct mfile *won = ok0 ? &f[0] : &f[1];
        expect_pull_same(c, "race", ver, NULL, won, 1, 0);
        Buffdb__Model__VerifyResponse *v = verify(c, "race", ver);
        cr_assert(v->ok, "round %d: Verify not ok", round);
        buffdb__model__verify_response__free_unpacked(v, NULL);
        expect_no_push(c, "race", ver, "after the race");
        gc_reqs_free(&q0);
        gc_reqs_free(&q1);
        gc_close(c0);
        gc_close(c1);
    }
    Buffdb__Model__ListVersionsResponse *lv = list_versions(c, "race");
    cr_assert_eq(lv->n_versions, ROUNDS, "%zu versions after %d rounds",
                 lv->n_versions, ROUNDS);
    buffdb__model__list_versions_response__free_unpacked(lv, NULL);
    /* only the winners' parts: at most 2 per distinct file, none of a
     * loser's left behind */
    int64_t n = kc_blob_count(c);
    cr_assert(n >= 2 && n <= 4, "%" PRId64 " blobs after the races", n);

    /* two versions of new bytes at once, on two workers: both made, each
     * part stored once */
    struct mfile g;
    mfile_random(&g, "g.bin", 2 * PART + 2 * MIB, 113); /* 3 parts */
    pid_t w0, w1;
    struct gc_conn *c0 = kc_conn_find(s, 0, KC_OTHER, KC_DEADLINE_MS, &w0);
    struct gc_conn *c1 = kc_conn_find(s, w0, KC_OTHER, KC_DEADLINE_MS, &w1);
    struct gc_reqs q0 = {0}, q1 = {0};
    push_reqs(&q0, "twin", "a", &g, 1);
    push_reqs(&q1, "twin", "b", &g, 1);
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, 2);
    struct racer r0 = {c0, &q0, &bar, 0, "", 0};
    struct racer r1 = {c1, &q1, &bar, 0, "", 0};
    pthread_t t0, t1;
    cr_assert_eq(pthread_create(&t0, NULL, racer_main, &r0), 0);
    cr_assert_eq(pthread_create(&t1, NULL, racer_main, &r1), 0);
    pthread_join(t0, NULL);
    pthread_join(t1, NULL);
    pthread_barrier_destroy(&bar);
    cr_assert(r0.code == GRPC_STATUS_OK && r1.code == GRPC_STATUS_OK,
              "twin pushes: %s \"%s\" / %s \"%s\"", gc_status_name(r0.code),
              r0.details, gc_status_name(r1.code), r1.details);
    cr_assert_eq(kc_blob_count(c), n + 3, "twin versions stored %" PRId64
                 " blobs for 3 distinct parts", kc_blob_count(c) - n);
    ModelInfo *ia = get_info(c, "twin", "a", NULL);
    ModelInfo *ib = get_info(c, "twin", "b", NULL);
    cr_assert_eq(shared_ids(ia, ib), 3);
    buffdb__model__model_info__free_unpacked(ia, NULL);
    buffdb__model__model_info__free_unpacked(ib, NULL);
    Buffdb__Model__DeleteVersionResponse *d = delete_ok(c, "twin", "a", 0);
    cr_assert_eq(d->parts_freed, 0);
    buffdb__model__delete_version_response__free_unpacked(d, NULL);
    expect_pull_same(c, "twin", "b", NULL, &g, 1, 0);
    gc_reqs_free(&q0);
    gc_reqs_free(&q1);
    gc_close(c0);
    gc_close(c1);
    mfiles_free(&g, 1);
    mfiles_free(f, 2);
    gc_close(c);
    ts_stop_ok(s);
}

/* ---- 8. bad input ------------------------------------------------------- */

Test(model, bad_push_headers_are_invalid_argument)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    struct mfile f;
    struct gc_reqs q = {0};
    struct gc_result r;

    mfile_random(&f, "ok.bin", 1000, 121);

    /* the first message a chunk */
    add_chunk(&q, 0, 0, f.data, 10);
    push_fail(c, &q, GRPC_STATUS_INVALID_ARGUMENT, "header",
              "a push starting with a chunk");
    gc_reqs_free(&q);
    /* no message at all */
    push_run(c, &q, &r);
    kc_expect_fail(&r, GRPC_STATUS_INVALID_ARGUMENT, "header", "an empty push");
    gc_result_free(&r);
    /* two headers */
    add_header(&q, "m", "1", &f, 1);
    add_header(&q, "m", "1", &f, 1);
    push_fail(c, &q, GRPC_STATUS_INVALID_ARGUMENT, NULL, "two headers");
    gc_reqs_free(&q);
    abort_r(c, "m", "1", &r); /* the first header started a push */
    kc_expect_status(&r, GRPC_STATUS_OK, "AbortPush after two headers");
    gc_result_free(&r);

    static const char *const bad_names[] = {"a:b", "a@b", "", "a b",
                                            "caf\xc3\xa9"};
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
        char what[80];
        snprintf(what, sizeof(what), "name \"%s\"", bad_names[i]);
        add_header(&q, bad_names[i], "1", &f, 1);
        push_fail(c, &q, GRPC_STATUS_INVALID_ARGUMENT, "name", what);
        gc_reqs_free(&q);
        snprintf(what, sizeof(what), "version \"%s\"", bad_names[i]);
        add_header(&q, "m", bad_names[i], &f, 1);
        push_fail(c, &q, GRPC_STATUS_INVALID_ARGUMENT, "version", what);
        gc_reqs_free(&q);
    }
    char longname[202];
    memset(longname, 'n', 201);
    longname[201] = '\0';
    add_header(&q, longname, "1", &f, 1);
    push_fail(c, &q, GRPC_STATUS_INVALID_ARGUMENT, "name", "a 201-byte name");
    gc_reqs_free(&q);
    longname[200] = '\0'; /* 200 is allowed */
    ModelInfo *mi = push_ok(c, longname, "a/b+c-d_e.f", &f, 1);
    buffdb__model__model_info__free_unpacked(mi, NULL);

    static const char *const bad_paths[] = {"../x", "/abs", "a/../b", "a//b",
                                            ".", "a/./b", "a/", ""};
    for (size_t i = 0; i < sizeof(bad_paths) / sizeof(bad_paths[0]); i++) {
        struct mfile g = f;
        char what[80];
        snprintf(g.path, sizeof(g.path), "%s", bad_paths[i]);
        snprintf(what, sizeof(what), "path \"%s\"", bad_paths[i]);
        add_header(&q, "m", "1", &g, 1);
        add_chunks(&q, 0, &g, 0, g.size, MIB);
        push_fail(c, &q, GRPC_STATUS_INVALID_ARGUMENT, "path", what);
        gc_reqs_free(&q);
    }
    /* no files; a path twice; a sha256 that is not hex */
    add_header(&q, "m", "1", &f, 0);
    push_fail(c, &q, GRPC_STATUS_INVALID_ARGUMENT, "files", "no files");
    gc_reqs_free(&q);
    struct mfile two[2] = {f, f};
    add_header(&q, "m", "1", two, 2);
    push_fail(c, &q, GRPC_STATUS_INVALID_ARGUMENT, "twice", "a path twice");
    gc_reqs_free(&q);
    struct mfile g = f;
    g.hdr_sha = "xyz";
    add_header(&q, "m", "1", &g, 1);
    push_fail(c, &q, GRPC_STATUS_INVALID_ARGUMENT, "sha256", "sha256 xyz");
    gc_reqs_free(&q);

    expect_no_info(c, "m", "1", NULL, "GetInfo after refused pushes");
    cr_assert_eq(kc_blob_count(c), 1, "only the good push's part");
    mfiles_free(&f, 1);
    gc_close(c);
    ts_stop_ok(s);
}

Test(model, bad_chunks_are_invalid_argument)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    struct mfile f[2];
    struct gc_reqs q = {0};

    mfile_random(&f[0], "a.bin", PART + MIB, 131); /* 2 parts */
    mfile_random(&f[1], "b.bin", 1000, 132);

    /* past the end of a file */
    add_header(&q, "m", "1", f, 2);
    add_chunk(&q, 1, 500, f[1].data, 600);
    push_fail(c, &q, GRPC_STATUS_INVALID_ARGUMENT, NULL,
              "a chunk past the end");
    gc_reqs_free(&q);
    add_header(&q, "m", "1", f, 2);
    add_chunk(&q, 0, f[0].size + 1, f[0].data, 0);
    push_fail(c, &q, GRPC_STATUS_INVALID_ARGUMENT, NULL,
              "an empty chunk past the end");
    gc_reqs_free(&q);
    /* a file index past the header's */
    add_header(&q, "m", "1", f, 2);
    add_chunk(&q, 2, 0, f[1].data, 1);
    push_fail(c, &q, GRPC_STATUS_INVALID_ARGUMENT, "2 files",
              "a chunk of file 2");
    gc_reqs_free(&q);
    /* a gap */
    add_header(&q, "m", "1", f, 2);
    add_chunk(&q, 0, 0, f[0].data, 1000);
    add_chunk(&q, 0, 1001, f[0].data + 1001, 1000);
    push_fail(c, &q, GRPC_STATUS_INVALID_ARGUMENT, "gap", "a gap");
    gc_reqs_free(&q);
    /* a later file before the current one is complete */
    add_header(&q, "m", "1", f, 2);
    add_chunk(&q, 0, 0, f[0].data, 1000);
    add_chunk(&q, 1, 0, f[1].data, 1000);
    push_fail(c, &q, GRPC_STATUS_INVALID_ARGUMENT, "in order",
              "file 1 before file 0 is complete");
    gc_reqs_free(&q);

    /* none of it made a version; an honest push still works */
    expect_no_info(c, "m", "1", NULL, "GetInfo after bad chunks");
    ModelInfo *mi = push_ok(c, "m", "1", f, 2);
    expect_info(mi, "m", "1", f, 2);
    buffdb__model__model_info__free_unpacked(mi, NULL);
    expect_pull_same(c, "m", "1", NULL, f, 2, 0);
    /* resending a complete file's chunks is accepted and ignored */
    add_header(&q, "m", "2", f, 2);
    add_chunks(&q, 0, &f[0], 0, f[0].size, MIB);
    add_chunk(&q, 0, 0, f[0].data, 100);
    add_chunks(&q, 1, &f[1], 0, f[1].size, 300);
    mi = push_q_ok(c, &q, "a push resending file 0's start");
    gc_reqs_free(&q);
    expect_info(mi, "m", "2", f, 2);
    buffdb__model__model_info__free_unpacked(mi, NULL);
    cr_assert_eq(kc_blob_count(c), 3, "2 + 1 parts, shared by both versions");
    mfiles_free(f, 2);
    gc_close(c);
    ts_stop_ok(s);
}

Test(model, pull_errors_and_resume_points)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    struct mfile f[3];
    struct gc_result r;
    struct pulled p;

    mfile_random(&f[0], "a.bin", PART + MIB, 141); /* 2 parts */
    mfile_random(&f[1], "empty.bin", 0, 142);
    mfile_random(&f[2], "c.bin", 3 * MIB + 17, 143); /* 1 part */
    ModelInfo *mi = push_ok(c, "m", "1", f, 3);
    expect_info(mi, "m", "1", f, 3);
    buffdb__model__model_info__free_unpacked(mi, NULL);
    expect_pull_same(c, "m", "1", NULL, f, 3, 0);
    Buffdb__Model__VerifyResponse *v = verify(c, "m", "1");
    cr_assert(v->ok && v->n_files == 3 && v->files[1]->ok,
              "Verify of a model with an empty file");
    buffdb__model__verify_response__free_unpacked(v, NULL);

    pull_r(c, "nope", NULL, NULL, 0, 0, 0, &r);
    kc_expect_fail(&r, GRPC_STATUS_NOT_FOUND, NULL, "Pull of an unknown model");
    gc_result_free(&r);
    pull_r(c, "m", "9", NULL, 0, 0, 0, &r);
    kc_expect_fail(&r, GRPC_STATUS_NOT_FOUND, NULL, "Pull of an unknown "
                   "version");
    gc_result_free(&r);
    pull_r(c, "m", NULL, "nosuch", 0, 0, 0, &r);
    kc_expect_fail(&r, GRPC_STATUS_NOT_FOUND, NULL, "Pull of an unknown alias");
    gc_result_free(&r);
    pull_r(c, "m:x", NULL, NULL, 0, 0, 0, &r);
    kc_expect_fail(&r, GRPC_STATUS_INVALID_ARGUMENT, NULL, "Pull of m:x");
    gc_result_free(&r);
    pull_r(c, "m", "1", NULL, 0, 0, 4 * MIB, &r);
    kc_expect_fail(&r, GRPC_STATUS_INVALID_ARGUMENT, "chunk_size",
                   "Pull with a 4 MiB chunk_size");
    gc_result_free(&r);
    pull_r(c, "m", "1", NULL, 0, 0, PULL_CHUNK_MAX + 1, &r);
    kc_expect_fail(&r, GRPC_STATUS_INVALID_ARGUMENT, "chunk_size",
                   "Pull with chunk_size one above the limit");
    gc_result_free(&r);
    expect_pull_same(c, "m", "1", NULL, f, 3, PULL_CHUNK_MAX);

    /* resume points: (file, offset) on, exactly the bytes left */
    static const struct {
        uint32_t file;
        uint64_t off;
    } at[] = {{0, PART + 100}, {0, PART}, {0, PART - 1}, {0, 1},
              {0, PART + MIB}, {1, 0}, {2, 1000}, {2, 3 * MIB + 16},
              {2, 3 * MIB + 17}, {3, 0}};
    for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
        pull_r(c, "m", "1", NULL, at[i].file, at[i].off, 0, &r);
        kc_expect_status(&r, GRPC_STATUS_OK, "Pull from a resume point");
        pulled_decode(&r, &p, at[i].file, at[i].off, 1);
        uint64_t got = 0, want = 0;
        for (uint32_t k = at[i].file; k < 3; k++) {
            uint64_t from = k == at[i].file ? at[i].off : 0;
            want += f[k].size - from;
            got += p.to[k] - p.from[k];
            cr_assert(f[k].size == from ||
                          memcmp(p.data[k] + from, f[k].data + from,
                                 f[k].size - from) == 0,
                      "resume (%u, %" PRIu64 "): file %u differs", at[i].file,
                      at[i].off, k);
        }
        for (uint32_t k = 0; k < at[i].file && k < 3; k++)
            cr_assert_eq(p.to[k], 0, "resume (%u, %" PRIu64 "): file %u "
                         "sent", at[i].file, at[i].off, k);
        cr_assert_eq(got, want, "resume (%u, %" PRIu64 "): %" PRIu64
                     " bytes, expected %" PRIu64, at[i].file, at[i].off, got,
                     want);
        pulled_free(&p);
        gc_result_free(&r);
    }
    pull_r(c, "m", "1", NULL, 0, PART + MIB + 1, 0, &r);
    kc_expect_fail(&r, GRPC_STATUS_OUT_OF_RANGE, NULL, "resume past a file");
    gc_result_free(&r);
    pull_r(c, "m", "1", NULL, 3, 1, 0, &r);
    kc_expect_fail(&r, GRPC_STATUS_OUT_OF_RANGE, NULL, "resume past the end");
    gc_result_free(&r);
    pull_r(c, "m", "1", NULL, 4, 0, 0, &r);
    kc_expect_fail(&r, GRPC_STATUS_OUT_OF_RANGE, NULL, "resume at file 4");
    gc_result_free(&r);

    mfiles_free(f, 3);
    gc_close(c);
    ts_stop_ok(s);
}

/* ---- 9. corruption ------------------------------------------------------ */

/* corrupt_blob - raw SQL on the blob store: the blob keeps its length, its
 * bytes become zeros */
static void
corrupt_blob(struct gc_conn *c, uint64_t id)
{
    Buffdb__Query__RawQuery q = BUFFDB__QUERY__RAW_QUERY__INIT;
    struct gc_result r;
    char sql[200];

    snprintf(sql, sizeof(sql), "UPDATE blob SET data = zeroblob(length(data)) "
             "WHERE rowid = %" PRIu64, id);
    q.query = kc_str(sql);
    q.target = BUFFDB__QUERY__TARGET_STORE__BLOB;
    kc_call1(c, KC_QUERY_EXECUTE, &q.base, KC_DEADLINE_MS, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, sql);
    cr_assert_eq(r.n, 1);
    Buffdb__Query__RowsChanged *rc = buffdb__query__rows_changed__unpack(
        NULL, r.msgs[0].len, r.msgs[0].data);
    cr_assert_not_null(rc);
    cr_assert_eq(rc->rows_changed, 1, "%s changed %" PRIu64 " rows", sql,
                 rc->rows_changed);
    buffdb__query__rows_changed__free_unpacked(rc, NULL);
    gc_result_free(&r);
}

Test(model, corrupted_part_fails_pull_and_verify_names_the_file)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    struct mfile f[2];
    struct gc_result r;
    struct pulled p;

    mfile_random(&f[0], "layers/a.bin", 2 * PART + MIB, 151); /* 3 parts */
    mfile_random(&f[1], "b.bin", 2000, 152);
    ModelInfo *mi = push_ok(c, "m", "1", f, 2);
    corrupt_blob(c, mi->files[0]->blob_ids[1]);
    char zsql[160];
    snprintf(zsql, sizeof(zsql), "SELECT count(*) FROM blob WHERE "
             "length(data) = %u AND data = zeroblob(%u)", PART, PART);
    cr_assert_eq(kc_query_int(c, zsql, BUFFDB__QUERY__TARGET_STORE__BLOB), 1,
                 "one full part of zeros: %s", zsql);

    /* Pull: part 0 goes out, part 1 is DATA_LOSS */
    pull_r(c, "m", "1", NULL, 0, 0, 0, &r);
    kc_expect_status(&r, GRPC_STATUS_DATA_LOSS, "Pull of a corrupted version");
    cr_assert(strstr(r.details, "layers/a.bin") != NULL,
              "DATA_LOSS details do not name the file: %s", r.details);
    pulled_decode(&r, &p, 0, 0, 0);
    cr_assert_leq(p.to[0], PART, "bytes of the corrupted part were sent");
    cr_assert(memcmp(p.data[0], f[0].data, p.to[0]) == 0);
    pulled_free(&p);
    gc_result_free(&r);
    /* a resume past the bad part does not read it */
    pull_r(c, "m", "1", NULL, 1, 0, 0, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "Pull of the intact file");
    gc_result_free(&r);

    Buffdb__Model__VerifyResponse *v = verify(c, "m", "1");
    cr_assert_not(v->ok, "Verify of a corrupted version says ok");
    cr_assert_eq(v->n_files, 2);
    cr_assert(beq(v->files[0]->path, "layers/a.bin"));
    cr_assert_not(v->files[0]->ok, "the corrupted file checks ok");
    cr_assert(strstr(B(v->files[0]->error), "part 1") != NULL,
              "the error does not name the part: %s", B(v->files[0]->error));
    cr_assert(beq(v->files[1]->path, "b.bin"));
    cr_assert(v->files[1]->ok, "the intact file: %s", B(v->files[1]->error));
    buffdb__model__verify_response__free_unpacked(v, NULL);

    /* an upstream client deletes the other file's blob */
    Buffdb__Blob__DeleteRequest dm = BUFFDB__BLOB__DELETE_REQUEST__INIT;
    dm.id = mi->files[1]->blob_ids[0];
    kc_call1(c, KC_BLOB_DELETE, &dm.base, KC_DEADLINE_MS, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "Blob.Delete of a part");
    gc_result_free(&r);
    pull_r(c, "m", "1", NULL, 1, 0, 0, &r);
    kc_expect_status(&r, GRPC_STATUS_DATA_LOSS, "Pull of a deleted part");
    cr_assert(strstr(r.details, "b.bin") != NULL, "details: %s", r.details);
    gc_result_free(&r);
    v = verify(c, "m", "1");
    cr_assert_not(v->ok);
    cr_assert_not(v->files[1]->ok, "a file whose blob is gone checks ok");
    cr_assert(strstr(B(v->files[1]->error), "part 0") != NULL, "error: %s",
              B(v->files[1]->error));
    buffdb__model__verify_response__free_unpacked(v, NULL);

    buffdb__model__model_info__free_unpacked(mi, NULL);
    mfiles_free(f, 2);
    gc_close(c);
    ts_stop_ok(s);
}

/*
 * A push answers OK only for bytes it verified: a new version with the same
 * bytes as a damaged part does not hand the damage on.  The push checks the
 * stored part, finds it damaged and rewrites it from the pushed bytes, which
 * repairs every version using it.
 */
Test(model, a_new_push_of_the_same_bytes_does_not_reuse_a_damaged_part)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    struct mfile f;

    mfile_random(&f, "a.bin", PART + 2 * MIB, 171); /* 2 parts */
    ModelInfo *mi = push_ok(c, "m", "1", &f, 1);
    uint64_t victim = mi->blob_ids[0];
    corrupt_blob(c, victim);
    int64_t blobs = kc_blob_count(c);

    /* damaged: Verify of m:1 says so (part 0), a Pull fails */
    Buffdb__Model__VerifyResponse *v = verify(c, "m", "1");
    cr_assert_not(v->ok, "Verify of m:1 after its part 0 was zeroed: ok");
    cr_assert(strstr(B(v->files[0]->error), "part 0") != NULL, "error: %s",
              B(v->files[0]->error));
    buffdb__model__verify_response__free_unpacked(v, NULL);
    struct gc_result r;
    pull_r(c, "m", "1", NULL, 0, 0, 0, &r);
    kc_expect_status(&r, GRPC_STATUS_DATA_LOSS, "Pull of the damaged m:1");
    gc_result_free(&r);

    ModelInfo *m2 = push_ok(c, "m", "2", &f, 1);
    expect_info(m2, "m", "2", &f, 1);
    cr_assert_eq(shared_ids(mi, m2), 2, "m:2 shares %zu of m:1's 2 parts",
                 shared_ids(mi, m2));
    cr_assert_eq(kc_blob_count(c), blobs, "the repair added %" PRId64 " blobs",
                 kc_blob_count(c) - blobs);

    /* both versions are whole again */
    static const char *const vers[] = {"1", "2"};
    for (int i = 0; i < 2; i++) {
        v = verify(c, "m", vers[i]);
        cr_assert(v->ok, "Verify of m:%s after the push of m:2: not ok (%s)",
                  vers[i], v->n_files ? B(v->files[0]->error) : "");
        cr_assert_eq(v->bytes_checked, f.size);
        buffdb__model__verify_response__free_unpacked(v, NULL);
        expect_pull_same(c, "m", vers[i], NULL, &f, 1, 0);
    }
    buffdb__model__model_info__free_unpacked(m2, NULL);
    buffdb__model__model_info__free_unpacked(mi, NULL);
    mfiles_free(&f, 1);
    gc_close(c);
    ts_stop_ok(s);
}

/* ---- 10. kill -9 during a push ------------------------------------------ */

Test(model, kill_during_a_push_keeps_held_parts_and_no_orphans)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s), *c2 = kc_conn_to(s);
    struct mfile f;
    struct gc_reqs q = {0};
    char *kvp, *blobp;

    mfile_random(&f, "w.bin", 3 * PART + 2 * MIB, 161); /* 4 parts */
    push_reqs(&q, "m", "1", &f, 1);
    struct gc_stream *st = gc_stream_start(c, M_PUSH, PUSH_DEADLINE_MS);
    cr_assert_not_null(st);
    /* header and 9 MiB: parts 0 and 1 whole, part 2 not */
    cr_assert(9 * MIB > 2 * PART && 9 * MIB < 3 * PART);
    for (size_t i = 0; i < 10; i++)
        cr_assert_eq(gc_stream_send(st, &q.v[i]), 0);
    cr_assert_eq(wait_held(c2, "m", "1", 2 * PART), 2 * PART);
    /* more bytes in flight (to 12 MiB, past part 2's end), the server
     * dies while storing them */
    for (size_t i = 10; i < 13; i++)
        if (gc_stream_send(st, &q.v[i]) != 0)
            break;
    kc_kill_server(s);
    gc_stream_cancel(st);
    gc_close(c);
    gc_close(c2);

    struct ts_server *s2 = kc_restart(s, &kvp, &blobp);
    c = kc_conn_to(s2);
    expect_no_info(c, "m", "1", NULL, "GetInfo after the kill");
    expect_no_info(c, "m", NULL, NULL, "GetInfo of the latest after the "
                   "kill");
    Buffdb__Model__ListModelsResponse *lm = list_models(c);
    cr_assert_eq(lm->n_models, 0, "a model after a killed push");
    buffdb__model__list_models_response__free_unpacked(lm, NULL);
    Buffdb__Model__PushStatusResponse *ps = push_status(c, "m", "1");
    cr_assert_not_null(ps, "the parts recorded before the kill are gone");
    cr_assert(ps->held_bytes == 2 * PART || ps->held_bytes == 3 * PART,
              "held %" PRIu64 " after the kill", ps->held_bytes);
    cr_assert_eq(ps->held_bytes % PART, 0);
    int64_t held = (int64_t)ps->held_bytes;
    buffdb__model__push_status_response__free_unpacked(ps, NULL);
    cr_assert_eq(kc_blob_count(c), held / PART, "%" PRId64 " blobs, the "
                 "unfinished push names %" PRId64, kc_blob_count(c),
                 held / PART);
    cr_assert_eq(kc_query_int(c, "SELECT count(*) FROM kv WHERE key LIKE "
                              "'model:%'", BUFFDB__QUERY__TARGET_STORE__KV), 0,
                 "upstream keys of a version that never finished");

    /* the push resumes from what is held */
    gc_reqs_free(&q);
    add_header(&q, "m", "1", &f, 1);
    add_chunks(&q, 0, &f, (size_t)held, f.size, MIB);
    ModelInfo *mi = push_q_ok(c, &q, "Push resumed after the restart");
    expect_info(mi, "m", "1", &f, 1);
    cr_assert_eq(kc_blob_count(c), 4);
    expect_pull_same(c, "m", "1", NULL, &f, 1, 0);
    buffdb__model__model_info__free_unpacked(mi, NULL);

    gc_reqs_free(&q);
    mfiles_free(&f, 1);
    free(kvp);
    free(blobp);
    gc_close(c);
    ts_stop_ok(s2);
}

/* A header's sizes are only claims: past the limits they are refused, and
 * within them they cost nothing until bytes arrive. */
Test(model, sizes_past_the_limits_are_refused_and_claims_cost_nothing)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    struct mfile f[2];
    struct gc_reqs q = {0};
    struct gc_result r;

    memset(f, 0, sizeof(f));
    snprintf(f[0].path, sizeof(f[0].path), "huge.bin");
    f[0].hdr_sha = "";
    f[0].size = (size_t)((1ull << 40) + 1); /* one byte past 1 TiB */
    add_header(&q, "m", "1", f, 1);
    push_run(c, &q, &r);
    kc_expect_fail(&r, GRPC_STATUS_INVALID_ARGUMENT, "1 TiB",
                   "a file past 1 TiB");
    gc_result_free(&r);
    gc_reqs_free(&q);

    /* 17 files of 1 TiB: each allowed, together past 16 TiB */
    struct mfile many[17];
    memset(many, 0, sizeof(many));
    for (int i = 0; i < 17; i++) {
        snprintf(many[i].path, sizeof(many[i].path), "f%d.bin", i);
        many[i].hdr_sha = "";
        many[i].size = (size_t)(1ull << 40);
    }
    add_header(&q, "m", "1", many, 17);
    push_run(c, &q, &r);
    kc_expect_fail(&r, GRPC_STATUS_INVALID_ARGUMENT, "16 TiB",
                   "files past 16 TiB together");
    gc_result_free(&r);
    gc_reqs_free(&q);
    expect_no_push(c, "m", "1", "after refused headers");

    /* a 1 TiB claim with one real megabyte: held as an unfinished push,
     * the worker still serving, the claim abandoned by AbortPush */
    f[0].size = (size_t)(1ull << 40);
    f[0].data = malloc(MIB);
    cr_assert_not_null(f[0].data);
    memset(f[0].data, 0x5a, MIB);
    add_header(&q, "m", "1", f, 1);
    add_chunks(&q, 0, &f[0], 0, MIB, MIB);
    push_run(c, &q, &r);
    kc_expect_fail(&r, GRPC_STATUS_FAILED_PRECONDITION, "incomplete",
                   "a 1 TiB claim with 1 MiB sent");
    gc_result_free(&r);
    gc_reqs_free(&q);
    abort_r(c, "m", "1", &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "AbortPush of the claim");
    gc_result_free(&r);
    free(f[0].data);
    gc_close(c);
    ts_stop_ok(s);
}
