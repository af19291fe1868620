/*
 * test_server.c - the gRPC server end to end: the real buffdb binary
 * ($BUFFDB_BIN) started by tests/helpers/server.c and driven over gRPC by
 * tests/helpers/grpc_client.c.
 *
 * Every test starts its own server (2 workers unless it says otherwise)
 * on 127.0.0.1 and a free port, in its own directory; it ends with
 * ts_stop_ok(), which asserts a clean exit (status 0) and a log free of
 * sanitizer reports.  The suite's .fini stops whatever an assertion left
 * running.  Requests are built with the protobuf-c code generated from
 * proto/ (string fields as bytes, proto3 optional as a oneof `_f`), and
 * every response is unpacked and checked, not merely counted.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <grpc/grpc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "../helpers/grpc_client.h"
#include "../helpers/helpers.h"
#include "../helpers/kv_client.h"
#include "../helpers/server.h"
#include "blob.pb-c.h"
#include "google/protobuf/any.pb-c.h"
#include "google/protobuf/struct.pb-c.h"
#include "google/protobuf/wrappers.pb-c.h"
#include "kv.pb-c.h"
#include "query.pb-c.h"

TestSuite(server, .init = kc_suite_init, .fini = kc_suite_fini,
          .timeout = 120.);

/* ---- small helpers ------------------------------------------------------- */

/* random_bytes - n bytes from a fixed-seed xorshift */
static uint8_t *
random_bytes(size_t n, uint64_t seed)
{
    uint8_t *p = malloc(n ? n : 1);
    uint64_t x = seed | 1;

    cr_assert_not_null(p);
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)(x >> 24);
    }
    return p;
}

/* ---- request builders ---------------------------------------------------- */

static void
add_kv_set(struct gc_reqs *q, ProtobufCBinaryData k, ProtobufCBinaryData v)
{
    Buffdb__Kv__SetRequest m = BUFFDB__KV__SET_REQUEST__INIT;
    m.key = k;
    m.value = v;
    gc_reqs_add(q, &m.base);
}

static void
add_kv_key(struct gc_reqs *q, const ProtobufCMessageDescriptor *d,
           ProtobufCBinaryData k)
{
    /* GetRequest, DeleteRequest, EqRequest and NotEqRequest all have
     * key = 1 first; build through the right descriptor anyway */
    if (d == &buffdb__kv__get_request__descriptor) {
        Buffdb__Kv__GetRequest m = BUFFDB__KV__GET_REQUEST__INIT;
        m.key = k;
        gc_reqs_add(q, &m.base);
    } else if (d == &buffdb__kv__delete_request__descriptor) {
        Buffdb__Kv__DeleteRequest m = BUFFDB__KV__DELETE_REQUEST__INIT;
        m.key = k;
        gc_reqs_add(q, &m.base);
    } else if (d == &buffdb__kv__eq_request__descriptor) {
        Buffdb__Kv__EqRequest m = BUFFDB__KV__EQ_REQUEST__INIT;
        m.key = k;
        gc_reqs_add(q, &m.base);
    } else {
        Buffdb__Kv__NotEqRequest m = BUFFDB__KV__NOT_EQ_REQUEST__INIT;
        m.key = k;
        gc_reqs_add(q, &m.base);
    }
}

static void
add_blob_store(struct gc_reqs *q, ProtobufCBinaryData data, const char *meta,
               size_t mlen)
{
    Buffdb__Blob__StoreRequest m = BUFFDB__BLOB__STORE_REQUEST__INIT;
    m.bytes = data;
    if (meta != NULL) {
        m._metadata_case = BUFFDB__BLOB__STORE_REQUEST___METADATA_METADATA;
        m.metadata = kc_bytes(meta, mlen);
    }
    gc_reqs_add(q, &m.base);
}

static void
add_blob_id(struct gc_reqs *q, const ProtobufCMessageDescriptor *d,
            uint64_t id)
{
    if (d == &buffdb__blob__get_request__descriptor) {
        Buffdb__Blob__GetRequest m = BUFFDB__BLOB__GET_REQUEST__INIT;
        m.id = id;
        gc_reqs_add(q, &m.base);
    } else if (d == &buffdb__blob__delete_request__descriptor) {
        Buffdb__Blob__DeleteRequest m = BUFFDB__BLOB__DELETE_REQUEST__INIT;
        m.id = id;
        gc_reqs_add(q, &m.base);
    } else if (d == &buffdb__blob__eq_data_request__descriptor) {
        Buffdb__Blob__EqDataRequest m = BUFFDB__BLOB__EQ_DATA_REQUEST__INIT;
        m.id = id;
        gc_reqs_add(q, &m.base);
    } else {
        Buffdb__Blob__NotEqDataRequest m =
            BUFFDB__BLOB__NOT_EQ_DATA_REQUEST__INIT;
        m.id = id;
        gc_reqs_add(q, &m.base);
    }
}

/* ---- calls with their checks --------------------------------------------- */

/* run - one call of the requests in q; q is emptied */
static void
run(struct gc_conn *c, const char *method, struct gc_reqs *q,
    struct gc_result *r)
{
    gc_call(c, method, q->v, q->n, KC_DEADLINE_MS, r);
    gc_reqs_free(q);
}

/* bool_of - the BoolValue a comparison answered; asserts exactly one */
static int
bool_of(const struct gc_result *r, const char *what)
{
    cr_assert_eq(r->n, 1, "%s: %zu responses, expected one BoolValue", what,
                 r->n);
    Google__Protobuf__BoolValue *b = google__protobuf__bool_value__unpack(
        NULL, r->msgs[0].len, r->msgs[0].data);
    cr_assert_not_null(b, "%s: undecodable BoolValue", what);
    int v = b->value;
    google__protobuf__bool_value__free_unpacked(b, NULL);
    return v;
}

/* kv_cmp - Eq or NotEq over keys; returns the answer, asserting OK */
static int
kv_cmp(struct gc_conn *c, const char *method, const char *const *keys, int n)
{
    const ProtobufCMessageDescriptor *d =
        strcmp(method, KC_KV_EQ) == 0 ? &buffdb__kv__eq_request__descriptor
                                   : &buffdb__kv__not_eq_request__descriptor;
    struct gc_reqs q = {0};
    struct gc_result r;

    for (int i = 0; i < n; i++)
        add_kv_key(&q, d, kc_str(keys[i]));
    run(c, method, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, method);
    int v = bool_of(&r, method);
    gc_result_free(&r);
    return v;
}

/* blob_store - store one blob, returning its id */
static uint64_t
blob_store(struct gc_conn *c, const void *data, size_t len, const char *meta)
{
    struct gc_reqs q = {0};
    struct gc_result r;

    add_blob_store(&q, kc_bytes(data, len), meta, meta ? strlen(meta) : 0);
    run(c, KC_BLOB_STORE, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "Blob.Store");
    cr_assert_eq(r.n, 1);
    Buffdb__Blob__StoreResponse *m = buffdb__blob__store_response__unpack(
        NULL, r.msgs[0].len, r.msgs[0].data);
    cr_assert_not_null(m, "undecodable StoreResponse");
    uint64_t id = m->id;
    buffdb__blob__store_response__free_unpacked(m, NULL);
    gc_result_free(&r);
    return id;
}

/* blob_expect - assert blob id's data and metadata (meta NULL: absent) */
static void
blob_expect(struct gc_conn *c, uint64_t id, const void *data, size_t len,
            const char *meta)
{
    struct gc_reqs q = {0};
    struct gc_result r;
    char what[64];

    snprintf(what, sizeof(what), "blob %llu", (unsigned long long)id);
    add_blob_id(&q, &buffdb__blob__get_request__descriptor, id);
    run(c, KC_BLOB_GET, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, what);
    cr_assert_eq(r.n, 1);
    Buffdb__Blob__GetResponse *m = buffdb__blob__get_response__unpack(
        NULL, r.msgs[0].len, r.msgs[0].data);
    cr_assert_not_null(m, "undecodable Blob GetResponse");
    kc_expect_bytes(m->bytes, data, len, what);
    if (meta == NULL) {
        cr_assert_eq(m->_metadata_case,
                     BUFFDB__BLOB__GET_RESPONSE___METADATA__NOT_SET,
                     "%s: metadata present, expected absent", what);
    } else {
        cr_assert_eq(m->_metadata_case,
                     BUFFDB__BLOB__GET_RESPONSE___METADATA_METADATA,
                     "%s: metadata absent, expected \"%s\"", what, meta);
        kc_expect_bytes(m->metadata, meta, strlen(meta), what);
    }
    buffdb__blob__get_response__free_unpacked(m, NULL);
    gc_result_free(&r);
}

/* blob_cmp - EqData or NotEqData over ids, asserting OK */
static int
blob_cmp(struct gc_conn *c, const char *method, const uint64_t *ids, int n)
{
    const ProtobufCMessageDescriptor *d =
        strcmp(method, KC_BLOB_EQ_DATA) == 0
            ? &buffdb__blob__eq_data_request__descriptor
            : &buffdb__blob__not_eq_data_request__descriptor;
    struct gc_reqs q = {0};
    struct gc_result r;

    for (int i = 0; i < n; i++)
        add_blob_id(&q, d, ids[i]);
    run(c, method, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, method);
    int v = bool_of(&r, method);
    gc_result_free(&r);
    return v;
}

/* rows_changed - the RowsChanged of response i */
static uint64_t
rows_changed(const struct gc_result *r, size_t i)
{
    cr_assert_lt(i, r->n);
    Buffdb__Query__RowsChanged *m = buffdb__query__rows_changed__unpack(
        NULL, r->msgs[i].len, r->msgs[i].data);
    cr_assert_not_null(m, "undecodable RowsChanged");
    uint64_t v = m->rows_changed;
    buffdb__query__rows_changed__free_unpacked(m, NULL);
    return v;
}

/* ---- Any columns --------------------------------------------------------- */

static Buffdb__Query__QueryResult *
query_row(const struct gc_result *r, size_t i, size_t ncols)
{
    cr_assert_lt(i, r->n, "row %zu of %zu", i, r->n);
    Buffdb__Query__QueryResult *m = buffdb__query__query_result__unpack(
        NULL, r->msgs[i].len, r->msgs[i].data);
    cr_assert_not_null(m, "undecodable QueryResult");
    cr_assert_eq(m->n_fields, ncols, "row %zu: %zu columns, expected %zu", i,
                 m->n_fields, ncols);
    return m;
}

static void
expect_url(const Google__Protobuf__Any *a, const char *url)
{
    cr_assert(a->type_url.len == strlen(url) &&
                  memcmp(a->type_url.data, url, a->type_url.len) == 0,
              "type_url \"%.*s\", expected \"%s\"", (int)a->type_url.len,
              (const char *)a->type_url.data, url);
}

static void
expect_int(const Google__Protobuf__Any *a, int64_t v)
{
    expect_url(a, KC_URL_INT64);
    Google__Protobuf__Int64Value *m = google__protobuf__int64_value__unpack(
        NULL, a->value.len, a->value.data);
    cr_assert_not_null(m);
    cr_assert_eq(m->value, v, "Int64Value %lld, expected %lld",
                 (long long)m->value, (long long)v);
    google__protobuf__int64_value__free_unpacked(m, NULL);
}

static void
expect_double(const Google__Protobuf__Any *a, double v)
{
    expect_url(a, KC_URL_DOUBLE);
    Google__Protobuf__DoubleValue *m = google__protobuf__double_value__unpack(
        NULL, a->value.len, a->value.data);
    cr_assert_not_null(m);
    cr_assert(m->value == v, "DoubleValue %.17g, expected %.17g", m->value, v);
    google__protobuf__double_value__free_unpacked(m, NULL);
}

static void
expect_string(const Google__Protobuf__Any *a, const char *s, size_t n)
{
    expect_url(a, KC_URL_STRING);
    Google__Protobuf__StringValue *m = google__protobuf__string_value__unpack(
        NULL, a->value.len, a->value.data);
    cr_assert_not_null(m);
    kc_expect_bytes(m->value, s, n, "StringValue");
    google__protobuf__string_value__free_unpacked(m, NULL);
}

static void
expect_blobval(const Google__Protobuf__Any *a, const void *p, size_t n)
{
    expect_url(a, KC_URL_BYTES);
    Google__Protobuf__BytesValue *m = google__protobuf__bytes_value__unpack(
        NULL, a->value.len, a->value.data);
    cr_assert_not_null(m);
    kc_expect_bytes(m->value, p, n, "BytesValue");
    google__protobuf__bytes_value__free_unpacked(m, NULL);
}

static void
expect_null(const Google__Protobuf__Any *a)
{
    expect_url(a, KC_URL_VALUE);
    Google__Protobuf__Value *m =
        google__protobuf__value__unpack(NULL, a->value.len, a->value.data);
    cr_assert_not_null(m);
    cr_assert_eq(m->kind_case, GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE,
                 "google.protobuf.Value of kind %d, expected null_value",
                 (int)m->kind_case);
    google__protobuf__value__free_unpacked(m, NULL);
}

/* ============================================================================
 * Kv
 * ========================================================================== */

Test(server, kv_set_answers_each_key_in_order)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    static const char *const keys[] = {"alpha", "beta", "gamma", "alpha"};
    struct gc_reqs q = {0};
    struct gc_result r;

    for (int i = 0; i < 4; i++)
        add_kv_set(&q, kc_str(keys[i]), kc_str(i == 3 ? "replaced" : "v"));
    run(c, KC_KV_SET, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "Kv.Set");
    cr_assert_neq(r.worker_pid, 0, "no buffdb-worker-pid metadata");
    cr_assert_eq(r.n, 4);
    for (int i = 0; i < 4; i++) {
        Buffdb__Kv__SetResponse *m = buffdb__kv__set_response__unpack(
            NULL, r.msgs[i].len, r.msgs[i].data);
        cr_assert_not_null(m);
        kc_expect_bytes(m->key, keys[i], strlen(keys[i]), "SetResponse.key");
        buffdb__kv__set_response__free_unpacked(m, NULL);
    }
    gc_result_free(&r);
    kc_kv_expect(c, NULL, "alpha", "replaced");
    kc_kv_expect(c, NULL, "gamma", "v");
    gc_close(c);
    ts_stop_ok(s);
}

Test(server, kv_get_returns_values_in_order)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    static const char *const keys[] = {"k3", "k1", "k2", "k1"};
    static const char *const vals[] = {"three", "one", "two", "one"};
    struct gc_reqs q = {0};
    struct gc_result r;

    kc_kv_set_ok(c, NULL, "k1", "one");
    kc_kv_set_ok(c, NULL, "k2", "two");
    kc_kv_set_ok(c, NULL, "k3", "three");
    for (int i = 0; i < 4; i++)
        add_kv_key(&q, &buffdb__kv__get_request__descriptor, kc_str(keys[i]));
    run(c, KC_KV_GET, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "Kv.Get");
    cr_assert_eq(r.n, 4);
    for (int i = 0; i < 4; i++) {
        Buffdb__Kv__GetResponse *m = buffdb__kv__get_response__unpack(
            NULL, r.msgs[i].len, r.msgs[i].data);
        cr_assert_not_null(m);
        kc_expect_bytes(m->value, vals[i], strlen(vals[i]), keys[i]);
        buffdb__kv__get_response__free_unpacked(m, NULL);
    }
    gc_result_free(&r);
    gc_close(c);
    ts_stop_ok(s);
}

Test(server, kv_get_missing_key_ends_the_stream_with_not_found)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    struct gc_reqs q = {0};
    struct gc_result r;

    kc_kv_set_ok(c, NULL, "present", "here");
    kc_kv_set_ok(c, NULL, "later", "never read");
    add_kv_key(&q, &buffdb__kv__get_request__descriptor, kc_str("present"));
    add_kv_key(&q, &buffdb__kv__get_request__descriptor, kc_str("present"));
    add_kv_key(&q, &buffdb__kv__get_request__descriptor, kc_str("no-such-key"));
    add_kv_key(&q, &buffdb__kv__get_request__descriptor, kc_str("later"));
    run(c, KC_KV_GET, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_NOT_FOUND, "Get of a missing key");
    cr_assert(strstr(r.details, "no-such-key") != NULL,
              "the details do not name the key: \"%s\"", r.details);
    /* the two answers before the error arrive; nothing after it */
    cr_assert_eq(r.n, 2, "%zu responses, expected the 2 before the error",
                 r.n);
    for (int i = 0; i < 2; i++) {
        Buffdb__Kv__GetResponse *m = buffdb__kv__get_response__unpack(
            NULL, r.msgs[i].len, r.msgs[i].data);
        cr_assert_not_null(m);
        kc_expect_bytes(m->value, "here", 4, "present");
        buffdb__kv__get_response__free_unpacked(m, NULL);
    }
    gc_result_free(&r);

    /* later requests are not processed: a Set after a failing Set in the
     * same stream does not happen */
    add_kv_set(&q, kc_str("first"), kc_str("1"));
    add_kv_set(&q, kc_bytes("\xff", 1), kc_str("bad key"));
    add_kv_set(&q, kc_str("after-error"), kc_str("3"));
    run(c, KC_KV_SET, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_INVALID_ARGUMENT, "Set of a bad key");
    cr_assert_eq(r.n, 1);
    gc_result_free(&r);
    kc_kv_expect(c, NULL, "first", "1");
    kc_kv_expect_missing(c, NULL, "after-error");
    gc_close(c);
    ts_stop_ok(s);
}

Test(server, kv_delete_of_missing_key_is_ok_and_echoes_it)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    struct gc_reqs q = {0};
    struct gc_result r;

    kc_kv_set_ok(c, NULL, "doomed", "x");
    add_kv_key(&q, &buffdb__kv__delete_request__descriptor,
               kc_str("never-was"));
    add_kv_key(&q, &buffdb__kv__delete_request__descriptor, kc_str("doomed"));
    run(c, KC_KV_DELETE, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "Kv.Delete");
    cr_assert_eq(r.n, 2);
    static const char *const echo[] = {"never-was", "doomed"};
    for (int i = 0; i < 2; i++) {
        Buffdb__Kv__DeleteResponse *m = buffdb__kv__delete_response__unpack(
            NULL, r.msgs[i].len, r.msgs[i].data);
        cr_assert_not_null(m);
        kc_expect_bytes(m->key, echo[i], strlen(echo[i]), "DeleteResponse.key");
        buffdb__kv__delete_response__free_unpacked(m, NULL);
    }
    gc_result_free(&r);
    kc_kv_expect_missing(c, NULL, "doomed");
    gc_close(c);
    ts_stop_ok(s);
}

Test(server, kv_eq_and_not_eq)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    struct gc_reqs q = {0};
    struct gc_result r;

    kc_kv_set_ok(c, NULL, "x", "same");
    kc_kv_set_ok(c, NULL, "y", "same");
    kc_kv_set_ok(c, NULL, "z", "other");

    /* empty streams: true */
    cr_assert_eq(kv_cmp(c, KC_KV_EQ, NULL, 0), 1, "Eq of nothing");
    cr_assert_eq(kv_cmp(c, KC_KV_NOT_EQ, NULL, 0), 1, "NotEq of nothing");
    /* one key: trivially both */
    cr_assert_eq(kv_cmp(c, KC_KV_EQ, (const char *[]){"x"}, 1), 1);
    cr_assert_eq(kv_cmp(c, KC_KV_NOT_EQ, (const char *[]){"x"}, 1), 1);
    cr_assert_eq(kv_cmp(c, KC_KV_EQ, (const char *[]){"x", "y"}, 2), 1,
                 "equal values");
    cr_assert_eq(kv_cmp(c, KC_KV_EQ, (const char *[]){"x", "y", "z"}, 3), 0,
                 "different values");
    cr_assert_eq(kv_cmp(c, KC_KV_NOT_EQ, (const char *[]){"x", "z"}, 2), 1,
                 "different values");
    cr_assert_eq(kv_cmp(c, KC_KV_NOT_EQ, (const char *[]){"z", "x", "y"}, 3), 0,
                 "two equal values");
    /* false is final: a missing key after it is not an error */
    cr_assert_eq(kv_cmp(c, KC_KV_EQ, (const char *[]){"x", "z", "missing"}, 3),
                 0);

    /* a missing key first: NOT_FOUND */
    add_kv_key(&q, &buffdb__kv__eq_request__descriptor, kc_str("missing"));
    add_kv_key(&q, &buffdb__kv__eq_request__descriptor, kc_str("x"));
    run(c, KC_KV_EQ, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_NOT_FOUND, "Eq with a missing key first");
    cr_assert(strstr(r.details, "missing") != NULL, "details: %s", r.details);
    cr_assert_eq(r.n, 0);
    gc_result_free(&r);
    add_kv_key(&q, &buffdb__kv__not_eq_request__descriptor, kc_str("missing"));
    add_kv_key(&q, &buffdb__kv__not_eq_request__descriptor, kc_str("x"));
    run(c, KC_KV_NOT_EQ, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_NOT_FOUND,
                     "NotEq with a missing key first");
    cr_assert_eq(r.n, 0);
    gc_result_free(&r);
    gc_close(c);
    ts_stop_ok(s);
}

Test(server, kv_nul_bytes_and_utf8_round_trip)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    /* NUL inside, UTF-8 of 2, 3 and 4 bytes, NUL at both ends */
    static const char key[] = "\0k\0\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\0";
    static const char val[] = "\0v\0al\0\xe6\x97\xa5\xe6\x9c\xac\0";
    const size_t klen = sizeof(key) - 1, vlen = sizeof(val) - 1;
    static const char key2[] = "k\0";
    struct gc_reqs q = {0};
    struct gc_result r;

    add_kv_set(&q, kc_bytes(key, klen), kc_bytes(val, vlen));
    add_kv_set(&q, kc_bytes(key2, 2), kc_str("a different key"));
    run(c, KC_KV_SET, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "Set with NUL bytes");
    cr_assert_eq(r.n, 2);
    Buffdb__Kv__SetResponse *sr = buffdb__kv__set_response__unpack(
        NULL, r.msgs[0].len, r.msgs[0].data);
    cr_assert_not_null(sr);
    kc_expect_bytes(sr->key, key, klen, "echoed key");
    buffdb__kv__set_response__free_unpacked(sr, NULL);
    gc_result_free(&r);

    add_kv_key(&q, &buffdb__kv__get_request__descriptor, kc_bytes(key, klen));
    add_kv_key(&q, &buffdb__kv__get_request__descriptor, kc_bytes(key2, 2));
    add_kv_key(&q, &buffdb__kv__get_request__descriptor, kc_str("k"));
    run(c, KC_KV_GET, &q, &r);
    /* "k" without its NUL is another key, and missing */
    kc_expect_status(&r, GRPC_STATUS_NOT_FOUND, "Get of the truncated key");
    cr_assert_eq(r.n, 2);
    Buffdb__Kv__GetResponse *gr = buffdb__kv__get_response__unpack(
        NULL, r.msgs[0].len, r.msgs[0].data);
    cr_assert_not_null(gr);
    kc_expect_bytes(gr->value, val, vlen, "value with NUL bytes");
    buffdb__kv__get_response__free_unpacked(gr, NULL);
    gr = buffdb__kv__get_response__unpack(NULL, r.msgs[1].len,
                                          r.msgs[1].data);
    cr_assert_not_null(gr);
    kc_expect_bytes(gr->value, "a different key", 15, "value of \"k\\0\"");
    buffdb__kv__get_response__free_unpacked(gr, NULL);
    gc_result_free(&r);
    gc_close(c);
    ts_stop_ok(s);
}

Test(server, kv_invalid_utf8_is_invalid_argument)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    /* a bare continuation byte, an overlong '/', a UTF-16 surrogate */
    static const char *const bad[] = {"a\x80", "\xc0\xaf", "\xed\xa0\x80"};
    struct gc_reqs q = {0};
    struct gc_result r;

    for (int i = 0; i < 3; i++) {
        add_kv_set(&q, kc_str(bad[i]), kc_str("v"));
        run(c, KC_KV_SET, &q, &r);
        kc_expect_status(&r, GRPC_STATUS_INVALID_ARGUMENT, "Set of a bad key");
        cr_assert(strstr(r.details, "UTF-8") != NULL, "details: %s",
                  r.details);
        cr_assert_eq(r.n, 0);
        gc_result_free(&r);
        add_kv_key(&q, &buffdb__kv__get_request__descriptor, kc_str(bad[i]));
        run(c, KC_KV_GET, &q, &r);
        kc_expect_status(&r, GRPC_STATUS_INVALID_ARGUMENT, "Get of a bad key");
        gc_result_free(&r);
    }
    /* a value that is not UTF-8 is refused too */
    add_kv_set(&q, kc_str("good-key"), kc_bytes("\xff\xfe", 2));
    run(c, KC_KV_SET, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_INVALID_ARGUMENT, "Set of a bad value");
    gc_result_free(&r);
    kc_kv_expect_missing(c, NULL, "good-key");
    gc_close(c);
    ts_stop_ok(s);
}

Test(server, kv_empty_get_stream_is_ok_with_no_responses)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    static const char *const methods[] = {KC_KV_GET, KC_KV_SET, KC_KV_DELETE,
                                          KC_BLOB_GET, KC_QUERY_EXECUTE};
    struct gc_result r;

    for (int i = 0; i < 5; i++) {
        gc_call(c, methods[i], NULL, 0, KC_DEADLINE_MS, &r);
        kc_expect_status(&r, GRPC_STATUS_OK, methods[i]);
        cr_assert_eq(r.n, 0, "%s: %zu responses to no request", methods[i],
                     r.n);
        cr_assert_neq(r.worker_pid, 0, "no buffdb-worker-pid metadata");
        gc_result_free(&r);
    }
    gc_close(c);
    ts_stop_ok(s);
}

/* ============================================================================
 * Blob
 * ========================================================================== */

Test(server, blob_store_and_get_keep_metadata_presence)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    static const char d2[] = "\0two\0";
    struct gc_reqs q = {0};
    struct gc_result r;

    add_blob_store(&q, kc_str("one"), NULL, 0);        /* metadata absent */
    add_blob_store(&q, kc_bytes(d2, 5), "{\"m\":2}", 7); /* present */
    add_blob_store(&q, kc_bytes("", 0), "", 0);          /* present but empty */
    run(c, KC_BLOB_STORE, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "Blob.Store");
    cr_assert_eq(r.n, 3);
    for (size_t i = 0; i < 3; i++) {
        Buffdb__Blob__StoreResponse *m = buffdb__blob__store_response__unpack(
            NULL, r.msgs[i].len, r.msgs[i].data);
        cr_assert_not_null(m);
        cr_assert_eq(m->id, i + 1, "id %llu, expected %zu",
                     (unsigned long long)m->id, i + 1);
        buffdb__blob__store_response__free_unpacked(m, NULL);
    }
    gc_result_free(&r);

    /* one stream, three answers in order */
    add_blob_id(&q, &buffdb__blob__get_request__descriptor, 3);
    add_blob_id(&q, &buffdb__blob__get_request__descriptor, 1);
    add_blob_id(&q, &buffdb__blob__get_request__descriptor, 2);
    run(c, KC_BLOB_GET, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "Blob.Get");
    cr_assert_eq(r.n, 3);
    Buffdb__Blob__GetResponse *m[3];
    for (int i = 0; i < 3; i++) {
        m[i] = buffdb__blob__get_response__unpack(NULL, r.msgs[i].len,
                                                  r.msgs[i].data);
        cr_assert_not_null(m[i]);
    }
    kc_expect_bytes(m[0]->bytes, "", 0, "blob 3");
    cr_assert_eq(m[0]->_metadata_case,
                 BUFFDB__BLOB__GET_RESPONSE___METADATA_METADATA,
                 "blob 3: empty metadata came back absent");
    cr_assert_eq(m[0]->metadata.len, 0);
    kc_expect_bytes(m[1]->bytes, "one", 3, "blob 1");
    cr_assert_eq(m[1]->_metadata_case,
                 BUFFDB__BLOB__GET_RESPONSE___METADATA__NOT_SET,
                 "blob 1: absent metadata came back present");
    kc_expect_bytes(m[2]->bytes, d2, 5, "blob 2");
    kc_expect_bytes(m[2]->metadata, "{\"m\":2}", 7, "blob 2 metadata");
    for (int i = 0; i < 3; i++)
        buffdb__blob__get_response__free_unpacked(m[i], NULL);
    gc_result_free(&r);
    gc_close(c);
    ts_stop_ok(s);
}

/* blob_update - one UpdateRequest: data if data != NULL; should_update_
 * metadata = upd, metadata meta (NULL: absent); asserts OK and the echo */
static void
blob_update(struct gc_conn *c, uint64_t id, const char *data, int upd,
            const char *meta)
{
    Buffdb__Blob__UpdateRequest m = BUFFDB__BLOB__UPDATE_REQUEST__INIT;
    struct gc_reqs q = {0};
    struct gc_result r;

    m.id = id;
    if (data != NULL) {
        m._bytes_case = BUFFDB__BLOB__UPDATE_REQUEST___BYTES_BYTES;
        m.bytes = kc_str(data);
    }
    m.should_update_metadata = upd;
    if (meta != NULL) {
        m._metadata_case = BUFFDB__BLOB__UPDATE_REQUEST___METADATA_METADATA;
        m.metadata = kc_str(meta);
    }
    gc_reqs_add(&q, &m.base);
    run(c, KC_BLOB_UPDATE, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "Blob.Update");
    cr_assert_eq(r.n, 1);
    Buffdb__Blob__UpdateResponse *u = buffdb__blob__update_response__unpack(
        NULL, r.msgs[0].len, r.msgs[0].data);
    cr_assert_not_null(u);
    cr_assert_eq(u->id, id, "UpdateResponse.id %llu, expected %llu",
                 (unsigned long long)u->id, (unsigned long long)id);
    buffdb__blob__update_response__free_unpacked(u, NULL);
    gc_result_free(&r);
}

Test(server, blob_update_matrix)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);

    cr_assert_eq(blob_store(c, "d0", 2, "m0"), 1);
    blob_expect(c, 1, "d0", 2, "m0");

    /* data only: metadata unchanged (even if some is sent, unflagged) */
    blob_update(c, 1, "d1", 0, "ignored");
    blob_expect(c, 1, "d1", 2, "m0");
    /* metadata only */
    blob_update(c, 1, NULL, 1, "m1");
    blob_expect(c, 1, "d1", 2, "m1");
    /* metadata flagged but absent: removed */
    blob_update(c, 1, NULL, 1, NULL);
    blob_expect(c, 1, "d1", 2, NULL);
    /* both */
    blob_update(c, 1, "d2-longer", 1, "");
    blob_expect(c, 1, "d2-longer", 9, "");
    /* neither: nothing changes */
    blob_update(c, 1, NULL, 0, NULL);
    blob_expect(c, 1, "d2-longer", 9, "");
    /* data to empty */
    blob_update(c, 1, "", 0, NULL);
    blob_expect(c, 1, "", 0, "");
    gc_close(c);
    ts_stop_ok(s);
}

Test(server, blob_missing_ids)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    struct gc_reqs q = {0};
    struct gc_result r;

    cr_assert_eq(blob_store(c, "x", 1, NULL), 1);
    /* Delete of a missing id: OK, id echoed */
    add_blob_id(&q, &buffdb__blob__delete_request__descriptor, 42);
    run(c, KC_BLOB_DELETE, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "Delete of a missing id");
    cr_assert_eq(r.n, 1);
    Buffdb__Blob__DeleteResponse *d = buffdb__blob__delete_response__unpack(
        NULL, r.msgs[0].len, r.msgs[0].data);
    cr_assert_not_null(d);
    cr_assert_eq(d->id, 42);
    buffdb__blob__delete_response__free_unpacked(d, NULL);
    gc_result_free(&r);
    /* Update of a missing id: OK, id echoed, nothing created */
    blob_update(c, 43, "data", 1, "meta");
    /* Get of a missing id: NOT_FOUND naming it, after earlier answers */
    add_blob_id(&q, &buffdb__blob__get_request__descriptor, 1);
    add_blob_id(&q, &buffdb__blob__get_request__descriptor, 43);
    add_blob_id(&q, &buffdb__blob__get_request__descriptor, 1);
    run(c, KC_BLOB_GET, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_NOT_FOUND, "Get of a missing id");
    cr_assert(strstr(r.details, "43") != NULL, "details: %s", r.details);
    cr_assert_eq(r.n, 1);
    gc_result_free(&r);
    /* the blob that exists is untouched */
    blob_expect(c, 1, "x", 1, NULL);
    gc_close(c);
    ts_stop_ok(s);
}

Test(server, blob_id_above_int64_max_is_invalid_argument)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    const uint64_t big = (uint64_t)1 << 63;
    static const ProtobufCMessageDescriptor *const descs[] = {
        &buffdb__blob__get_request__descriptor,
        &buffdb__blob__delete_request__descriptor,
        &buffdb__blob__eq_data_request__descriptor};
    static const char *const methods[] = {KC_BLOB_GET, KC_BLOB_DELETE,
                                          KC_BLOB_EQ_DATA};
    struct gc_reqs q = {0};
    struct gc_result r;

    for (int i = 0; i < 3; i++) {
        add_blob_id(&q, descs[i], big);
        run(c, methods[i], &q, &r);
        kc_expect_status(&r, GRPC_STATUS_INVALID_ARGUMENT, methods[i]);
        cr_assert(strstr(r.details, "9223372036854775808") != NULL,
                  "details: %s", r.details);
        gc_result_free(&r);
    }
    Buffdb__Blob__UpdateRequest u = BUFFDB__BLOB__UPDATE_REQUEST__INIT;
    u.id = UINT64_MAX;
    u.should_update_metadata = 1;
    gc_reqs_add(&q, &u.base);
    run(c, KC_BLOB_UPDATE, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_INVALID_ARGUMENT, "Update of id 2^64-1");
    gc_result_free(&r);
    /* the largest valid id is merely missing */
    add_blob_id(&q, &buffdb__blob__get_request__descriptor, big - 1);
    run(c, KC_BLOB_GET, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_NOT_FOUND, "Get of id 2^63-1");
    gc_result_free(&r);
    gc_close(c);
    ts_stop_ok(s);
}

Test(server, blob_ids_are_never_reused)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    struct gc_reqs q = {0};
    struct gc_result r;

    for (uint64_t i = 1; i <= 3; i++)
        cr_assert_eq(blob_store(c, "b", 1, NULL), i);
    add_blob_id(&q, &buffdb__blob__delete_request__descriptor, 3);
    add_blob_id(&q, &buffdb__blob__delete_request__descriptor, 2);
    run(c, KC_BLOB_DELETE, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "Delete");
    cr_assert_eq(r.n, 2);
    gc_result_free(&r);
    cr_assert_eq(blob_store(c, "new", 3, NULL), 4,
                 "the id of a deleted blob was given out again");
    /* a second connection, perhaps another worker, agrees */
    struct gc_conn *c2 = kc_conn_to(s);
    cr_assert_eq(blob_store(c2, "newer", 5, NULL), 5);
    blob_expect(c2, 4, "new", 3, NULL);
    gc_close(c2);
    gc_close(c);
    ts_stop_ok(s);
}

Test(server, blob_eq_data_and_not_eq_data)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    struct gc_reqs q = {0};
    struct gc_result r;

    cr_assert_eq(blob_store(c, "same", 4, "meta a"), 1);
    cr_assert_eq(blob_store(c, "same", 4, NULL), 2); /* metadata ignored */
    cr_assert_eq(blob_store(c, "different", 9, "meta a"), 3);

    cr_assert_eq(blob_cmp(c, KC_BLOB_EQ_DATA, NULL, 0), 1, "EqData of nothing");
    cr_assert_eq(blob_cmp(c, KC_BLOB_NOT_EQ_DATA, NULL, 0), 1);
    cr_assert_eq(blob_cmp(c, KC_BLOB_EQ_DATA, (uint64_t[]){1, 2}, 2), 1);
    cr_assert_eq(blob_cmp(c, KC_BLOB_EQ_DATA, (uint64_t[]){1, 2, 3}, 3), 0);
    cr_assert_eq(blob_cmp(c, KC_BLOB_NOT_EQ_DATA, (uint64_t[]){1, 3}, 2), 1);
    cr_assert_eq(blob_cmp(c, KC_BLOB_NOT_EQ_DATA, (uint64_t[]){3, 1, 2}, 3), 0);

    add_blob_id(&q, &buffdb__blob__eq_data_request__descriptor, 99);
    add_blob_id(&q, &buffdb__blob__eq_data_request__descriptor, 1);
    run(c, KC_BLOB_EQ_DATA, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_NOT_FOUND, "EqData of a missing id");
    cr_assert_eq(r.n, 0);
    gc_result_free(&r);
    add_blob_id(&q, &buffdb__blob__not_eq_data_request__descriptor, 99);
    run(c, KC_BLOB_NOT_EQ_DATA, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_NOT_FOUND, "NotEqData of a missing id");
    gc_result_free(&r);
    gc_close(c);
    ts_stop_ok(s);
}

/* ============================================================================
 * Query
 * ========================================================================== */

Test(server, query_returns_typed_any_columns)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    struct gc_reqs q = {0};
    struct gc_result r;
    Buffdb__Query__QueryResult *m;

    kc_kv_set_ok(c, NULL, "a", "1");
    kc_kv_set_ok(c, NULL, "b", "\xc3\xa9t\xc3\xa9");
    kc_add_query(&q, "SELECT 42, -9223372036854775808, 1.5, 'text', "
                     "x'00ff10', NULL, ''", BUFFDB__QUERY__TARGET_STORE__KV);
    kc_add_query(&q, "SELECT key, value FROM kv ORDER BY key",
                 BUFFDB__QUERY__TARGET_STORE__KV);
    kc_add_query(&q, "SELECT 1 WHERE 0", BUFFDB__QUERY__TARGET_STORE__KV);
    run(c, KC_QUERY_QUERY, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "Query");
    cr_assert_eq(r.n, 3, "%zu rows, expected 1 + 2 + 0", r.n);

    m = query_row(&r, 0, 7);
    expect_int(m->fields[0], 42);
    expect_int(m->fields[1], INT64_MIN);
    expect_double(m->fields[2], 1.5);
    expect_string(m->fields[3], "text", 4);
    expect_blobval(m->fields[4], "\x00\xff\x10", 3);
    expect_null(m->fields[5]);
    expect_string(m->fields[6], "", 0);
    buffdb__query__query_result__free_unpacked(m, NULL);

    m = query_row(&r, 1, 2);
    expect_string(m->fields[0], "a", 1);
    expect_string(m->fields[1], "1", 1);
    buffdb__query__query_result__free_unpacked(m, NULL);
    m = query_row(&r, 2, 2);
    expect_string(m->fields[0], "b", 1);
    expect_string(m->fields[1], "\xc3\xa9t\xc3\xa9", 5);
    buffdb__query__query_result__free_unpacked(m, NULL);
    gc_result_free(&r);
    gc_close(c);
    ts_stop_ok(s);
}

Test(server, query_on_blob_target)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    struct gc_reqs q = {0};
    struct gc_result r;
    Buffdb__Query__QueryResult *m;

    cr_assert_eq(blob_store(c, "\x00\x01\x02", 3, "meta"), 1);
    kc_add_query(&q, "SELECT rowid, data, metadata, length(data) FROM blob",
                 BUFFDB__QUERY__TARGET_STORE__BLOB);
    run(c, KC_QUERY_QUERY, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "Query on BLOB");
    cr_assert_eq(r.n, 1);
    m = query_row(&r, 0, 4);
    expect_int(m->fields[0], 1);
    expect_blobval(m->fields[1], "\x00\x01\x02", 3);
    expect_string(m->fields[2], "meta", 4);
    expect_int(m->fields[3], 3);
    buffdb__query__query_result__free_unpacked(m, NULL);
    gc_result_free(&r);

    /* the kv store has no blob table: the target really picks the file */
    kc_add_query(&q, "SELECT rowid FROM blob", BUFFDB__QUERY__TARGET_STORE__KV);
    run(c, KC_QUERY_QUERY, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_INVALID_ARGUMENT, "blob table on KV");
    cr_assert(strstr(r.details, "no such table") != NULL, "details: %s",
              r.details);
    gc_result_free(&r);
    gc_close(c);
    ts_stop_ok(s);
}

Test(server, query_unknown_target_is_invalid_argument)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    struct gc_reqs q = {0};
    struct gc_result r;

    kc_add_query(&q, "SELECT 1", 7);
    run(c, KC_QUERY_QUERY, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_INVALID_ARGUMENT, "Query on target 7");
    cr_assert_eq(r.n, 0);
    cr_assert(strstr(r.details, "7") != NULL, "details: %s", r.details);
    gc_result_free(&r);
    kc_add_query(&q, "DELETE FROM kv", 7);
    run(c, KC_QUERY_EXECUTE, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_INVALID_ARGUMENT, "Execute on target 7");
    gc_result_free(&r);
    gc_close(c);
    ts_stop_ok(s);
}

Test(server, execute_answers_rows_changed_in_order_visible_to_kv)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    struct gc_reqs q = {0};
    struct gc_result r;

    kc_add_query(&q, "INSERT INTO kv(key, value) VALUES ('e1', '1'), "
                     "('e2', '2'), ('e3', '3')",
                 BUFFDB__QUERY__TARGET_STORE__KV);
    kc_add_query(&q, "UPDATE kv SET value = 'updated' WHERE key = 'e1'",
                 BUFFDB__QUERY__TARGET_STORE__KV);
    kc_add_query(&q, "DELETE FROM kv WHERE key IN ('e2', 'e3')",
                 BUFFDB__QUERY__TARGET_STORE__KV);
    kc_add_query(&q, "DELETE FROM kv WHERE key = 'none'",
                 BUFFDB__QUERY__TARGET_STORE__KV);
    run(c, KC_QUERY_EXECUTE, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "Execute");
    cr_assert_eq(r.n, 4);
    cr_assert_eq(rows_changed(&r, 0), 3);
    cr_assert_eq(rows_changed(&r, 1), 1);
    cr_assert_eq(rows_changed(&r, 2), 2);
    cr_assert_eq(rows_changed(&r, 3), 0);
    gc_result_free(&r);

    /* visible to Kv, on this connection and on another */
    kc_kv_expect(c, NULL, "e1", "updated");
    kc_kv_expect_missing(c, NULL, "e2");
    struct gc_conn *c2 = kc_conn_to(s);
    kc_kv_expect(c2, NULL, "e1", "updated");
    gc_close(c2);

    /* the blob store too */
    cr_assert_eq(blob_store(c, "b", 1, "old"), 1);
    kc_add_query(&q, "UPDATE blob SET metadata = 'new' WHERE rowid = 1",
                 BUFFDB__QUERY__TARGET_STORE__BLOB);
    run(c, KC_QUERY_EXECUTE, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "Execute on BLOB");
    cr_assert_eq(rows_changed(&r, 0), 1);
    gc_result_free(&r);
    blob_expect(c, 1, "b", 1, "new");
    gc_close(c);
    ts_stop_ok(s);
}

Test(server, execute_refuses_selects_several_statements_and_bad_sql)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    struct gc_reqs q = {0};
    struct gc_result r;

    kc_add_query(&q, "SELECT 1", BUFFDB__QUERY__TARGET_STORE__KV);
    run(c, KC_QUERY_EXECUTE, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_INVALID_ARGUMENT, "Execute of a SELECT");
    cr_assert_eq(r.n, 0);
    gc_result_free(&r);

    kc_add_query(&q, "INSERT INTO kv VALUES ('t1', '1'); "
                     "INSERT INTO kv VALUES ('t2', '2')",
                 BUFFDB__QUERY__TARGET_STORE__KV);
    run(c, KC_QUERY_EXECUTE, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_INVALID_ARGUMENT, "two statements");
    gc_result_free(&r);
    kc_kv_expect_missing(c, NULL, "t1");

    kc_add_query(&q, "SELEC 1", BUFFDB__QUERY__TARGET_STORE__KV);
    run(c, KC_QUERY_EXECUTE, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_INVALID_ARGUMENT, "a syntax error");
    cr_assert(strstr(r.details, "near \"SELEC\": syntax error") != NULL,
              "not SQLite's message: \"%s\"", r.details);
    gc_result_free(&r);

    kc_add_query(&q, "SELEC 1", BUFFDB__QUERY__TARGET_STORE__KV);
    run(c, KC_QUERY_QUERY, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_INVALID_ARGUMENT, "Query: a syntax error");
    cr_assert(strstr(r.details, "syntax error") != NULL, "details: %s",
              r.details);
    gc_result_free(&r);

    /* the error ends the stream: the statement after it is not run */
    kc_add_query(&q, "INSERT INTO kv VALUES ('before', '1')",
                 BUFFDB__QUERY__TARGET_STORE__KV);
    kc_add_query(&q, "SELECT 1", BUFFDB__QUERY__TARGET_STORE__KV);
    kc_add_query(&q, "INSERT INTO kv VALUES ('after', '1')",
                 BUFFDB__QUERY__TARGET_STORE__KV);
    run(c, KC_QUERY_EXECUTE, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_INVALID_ARGUMENT, "SELECT mid-stream");
    cr_assert_eq(r.n, 1);
    cr_assert_eq(rows_changed(&r, 0), 1);
    gc_result_free(&r);
    kc_kv_expect(c, NULL, "before", "1");
    kc_kv_expect_missing(c, NULL, "after");
    gc_close(c);
    ts_stop_ok(s);
}

/* ============================================================================
 * Transactions and unknown methods
 * ========================================================================== */

/* kv_set_txn - Set key=value in transaction id, asserting OK */
static void
kv_set_txn(struct gc_conn *c, const char *id, const char *key,
           const char *value)
{
    Buffdb__Kv__SetRequest m = BUFFDB__KV__SET_REQUEST__INIT;
    struct gc_reqs q = {0};
    struct gc_result r;

    m.key = kc_str(key);
    m.value = kc_str(value);
    m._transaction_id_case =
        BUFFDB__KV__SET_REQUEST___TRANSACTION_ID_TRANSACTION_ID;
    m.transaction_id = kc_str(id);
    gc_reqs_add(&q, &m.base);
    run(c, KC_KV_SET, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "Set in a transaction");
    cr_assert_eq(r.n, 1);
    gc_result_free(&r);
}

/*
 * Transactions, as far as the gRPC surface goes (their semantics across
 * workers belong to a suite of their own): ids, visibility at commit,
 * rollback, and the answers for an unknown id.
 */
Test(server, transactions_commit_roll_back_and_refuse_unknown_ids)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    struct gc_conn *other = kc_conn_to(s);
    char err[256];

    /* commit: invisible to others until then, visible to all after */
    char *t1 = kc_txn_begin(c);
    kv_set_txn(c, t1, "t-key", "committed");
    kc_kv_expect_missing(other, NULL, "t-key");
    cr_assert(kc_txn_end(other, t1, 1, err, sizeof(err)),
              "commit failed: %s", err);
    kc_kv_expect(other, NULL, "t-key", "committed");
    kc_kv_expect(c, NULL, "t-key", "committed");
    /* ended: a second commit or a rollback says so */
    cr_assert(!kc_txn_end(c, t1, 1, err, sizeof(err)),
              "a committed transaction committed again");
    cr_assert_neq(err[0], '\0', "no error_message");
    free(t1);

    /* rollback: the write never shows */
    char *t2 = kc_txn_begin(c);
    kv_set_txn(c, t2, "r-key", "rolled back");
    cr_assert(kc_txn_end(c, t2, 0, err, sizeof(err)), "rollback failed: %s",
              err);
    kc_kv_expect_missing(other, NULL, "r-key");
    free(t2);

    /* an id nobody gave out */
    cr_assert(!kc_txn_end(c, "00000000-0000-0000-0000-000000000000", 1, err,
                          sizeof(err)), "commit of an unknown id succeeded");
    cr_assert_neq(err[0], '\0', "no error_message");
    cr_assert(!kc_txn_end(c, "no-such-transaction", 0, err, sizeof(err)),
              "rollback of an unknown id succeeded");
    cr_assert_neq(err[0], '\0', "no error_message");
    gc_close(other);
    gc_close(c);
    ts_stop_ok(s);
}

Test(server, requests_naming_an_unknown_transaction_fail_precondition)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    struct gc_reqs q = {0};
    struct gc_result r;
    const ProtobufCBinaryData txn = kc_str("txn-1");

    kc_kv_set_ok(c, NULL, "k", "v");
    cr_assert_eq(blob_store(c, "b", 1, NULL), 1);

    Buffdb__Kv__GetRequest kg = BUFFDB__KV__GET_REQUEST__INIT;
    kg.key = kc_str("k");
    kg._transaction_id_case =
        BUFFDB__KV__GET_REQUEST___TRANSACTION_ID_TRANSACTION_ID;
    kg.transaction_id = txn;
    gc_reqs_add(&q, &kg.base);
    run(c, KC_KV_GET, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_FAILED_PRECONDITION, "Kv.Get in a txn");
    cr_assert_eq(r.n, 0);
    gc_result_free(&r);

    Buffdb__Kv__SetRequest ks = BUFFDB__KV__SET_REQUEST__INIT;
    ks.key = kc_str("k");
    ks.value = kc_str("changed");
    ks._transaction_id_case =
        BUFFDB__KV__SET_REQUEST___TRANSACTION_ID_TRANSACTION_ID;
    ks.transaction_id = kc_str(""); /* present, even if empty */
    gc_reqs_add(&q, &ks.base);
    run(c, KC_KV_SET, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_FAILED_PRECONDITION, "Kv.Set in a txn");
    gc_result_free(&r);

    Buffdb__Kv__DeleteRequest kd = BUFFDB__KV__DELETE_REQUEST__INIT;
    kd.key = kc_str("k");
    kd._transaction_id_case =
        BUFFDB__KV__DELETE_REQUEST___TRANSACTION_ID_TRANSACTION_ID;
    kd.transaction_id = txn;
    gc_reqs_add(&q, &kd.base);
    run(c, KC_KV_DELETE, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_FAILED_PRECONDITION, "Kv.Delete in a txn");
    gc_result_free(&r);
    kc_kv_expect(c, NULL, "k", "v"); /* neither changed nor deleted */

    Buffdb__Blob__GetRequest bg = BUFFDB__BLOB__GET_REQUEST__INIT;
    bg.id = 1;
    bg._transaction_id_case =
        BUFFDB__BLOB__GET_REQUEST___TRANSACTION_ID_TRANSACTION_ID;
    bg.transaction_id = txn;
    gc_reqs_add(&q, &bg.base);
    run(c, KC_BLOB_GET, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_FAILED_PRECONDITION, "Blob.Get in a txn");
    gc_result_free(&r);

    Buffdb__Blob__StoreRequest bs = BUFFDB__BLOB__STORE_REQUEST__INIT;
    bs.bytes = kc_str("new");
    bs._transaction_id_case =
        BUFFDB__BLOB__STORE_REQUEST___TRANSACTION_ID_TRANSACTION_ID;
    bs.transaction_id = txn;
    gc_reqs_add(&q, &bs.base);
    run(c, KC_BLOB_STORE, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_FAILED_PRECONDITION,
                     "Blob.Store in a txn");
    gc_result_free(&r);

    Buffdb__Blob__UpdateRequest bu = BUFFDB__BLOB__UPDATE_REQUEST__INIT;
    bu.id = 1;
    bu._bytes_case = BUFFDB__BLOB__UPDATE_REQUEST___BYTES_BYTES;
    bu.bytes = kc_str("changed");
    bu._transaction_id_case =
        BUFFDB__BLOB__UPDATE_REQUEST___TRANSACTION_ID_TRANSACTION_ID;
    bu.transaction_id = txn;
    gc_reqs_add(&q, &bu.base);
    run(c, KC_BLOB_UPDATE, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_FAILED_PRECONDITION,
                     "Blob.Update in a txn");
    gc_result_free(&r);

    Buffdb__Blob__DeleteRequest bd = BUFFDB__BLOB__DELETE_REQUEST__INIT;
    bd.id = 1;
    bd._transaction_id_case =
        BUFFDB__BLOB__DELETE_REQUEST___TRANSACTION_ID_TRANSACTION_ID;
    bd.transaction_id = txn;
    gc_reqs_add(&q, &bd.base);
    run(c, KC_BLOB_DELETE, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_FAILED_PRECONDITION,
                     "Blob.Delete in a txn");
    gc_result_free(&r);

    /* nothing was stored, changed or deleted */
    blob_expect(c, 1, "b", 1, NULL);
    add_blob_id(&q, &buffdb__blob__get_request__descriptor, 2);
    run(c, KC_BLOB_GET, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_NOT_FOUND, "the blob a txn Store made");
    gc_result_free(&r);
    gc_close(c);
    ts_stop_ok(s);
}

Test(server, unknown_method_is_unimplemented_promptly)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    static const char *const methods[] = {
        "/buffdb.kv.Kv/Nope", "/buffdb.nothing.Here/Get", "/grpc.Foo/Bar"};
    struct gc_reqs q = {0};
    struct gc_result r;

    for (int i = 0; i < 3; i++) {
        add_kv_key(&q, &buffdb__kv__get_request__descriptor, kc_str("k"));
        run(c, methods[i], &q, &r);
        kc_expect_status(&r, GRPC_STATUS_UNIMPLEMENTED, methods[i]);
        /* answered at once, not left to the 20 s deadline */
        cr_assert_lt(r.elapsed_ms, 5000, "%s took %ld ms", methods[i],
                     r.elapsed_ms);
        gc_result_free(&r);
    }
    /* more unknown calls than the worker keeps catch-all requests for */
    for (int i = 0; i < 8; i++) {
        gc_call(c, "/buffdb.kv.Kv/Nope", NULL, 0, KC_DEADLINE_MS, &r);
        kc_expect_status(&r, GRPC_STATUS_UNIMPLEMENTED, "Nope again");
        gc_result_free(&r);
    }
    kc_kv_set_ok(c, NULL, "still", "serving");
    gc_close(c);
    ts_stop_ok(s);
}

/* ============================================================================
 * Volume and size
 * ========================================================================== */

#define PIPELINE_N 10000

Test(server, ten_thousand_pipelined_sets_then_gets_in_order)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    struct gc_reqs q = {0};
    struct gc_result r;
    char k[32], v[64];

    for (int i = 0; i < PIPELINE_N; i++) {
        snprintf(k, sizeof(k), "pipe-%05d", i);
        snprintf(v, sizeof(v), "value-%05d-%0*d", i, i % 40, 0);
        add_kv_set(&q, kc_str(k), kc_str(v));
    }
    gc_call_pipelined(c, KC_KV_SET, q.v, q.n, 120000, &r);
    gc_reqs_free(&q);
    kc_expect_status(&r, GRPC_STATUS_OK, "10,000 Sets");
    cr_assert_eq(r.n, PIPELINE_N, "%zu SetResponses", r.n);
    for (int i = 0; i < PIPELINE_N; i++) {
        Buffdb__Kv__SetResponse *m = buffdb__kv__set_response__unpack(
            NULL, r.msgs[i].len, r.msgs[i].data);
        cr_assert_not_null(m);
        snprintf(k, sizeof(k), "pipe-%05d", i);
        kc_expect_bytes(m->key, k, strlen(k), "SetResponse.key in order");
        buffdb__kv__set_response__free_unpacked(m, NULL);
    }
    gc_result_free(&r);

    /* read them back in another order: reversed */
    for (int i = PIPELINE_N - 1; i >= 0; i--) {
        snprintf(k, sizeof(k), "pipe-%05d", i);
        add_kv_key(&q, &buffdb__kv__get_request__descriptor, kc_str(k));
    }
    gc_call_pipelined(c, KC_KV_GET, q.v, q.n, 120000, &r);
    gc_reqs_free(&q);
    kc_expect_status(&r, GRPC_STATUS_OK, "10,000 Gets");
    cr_assert_eq(r.n, PIPELINE_N, "%zu GetResponses", r.n);
    for (int j = 0; j < PIPELINE_N; j++) {
        int i = PIPELINE_N - 1 - j;
        Buffdb__Kv__GetResponse *m = buffdb__kv__get_response__unpack(
            NULL, r.msgs[j].len, r.msgs[j].data);
        cr_assert_not_null(m);
        snprintf(v, sizeof(v), "value-%05d-%0*d", i, i % 40, 0);
        kc_expect_bytes(m->value, v, strlen(v), "GetResponse.value in order");
        buffdb__kv__get_response__free_unpacked(m, NULL);
    }
    gc_result_free(&r);
    gc_close(c);
    ts_stop_ok(s);
}

Test(server, a_thousand_gets_sent_before_reading_any_answer)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    struct gc_reqs q = {0};
    struct gc_result r;
    char k[32];

    kc_kv_set_ok(c, NULL, "k", "the value");
    /* gc_call sends everything and half-closes before it reads: the
     * worker must answer all of it although it pauses reading while its
     * answers wait */
    for (int i = 0; i < 1000; i++)
        add_kv_key(&q, &buffdb__kv__get_request__descriptor, kc_str("k"));
    gc_call(c, KC_KV_GET, q.v, q.n, 30000, &r);
    gc_reqs_free(&q);
    kc_expect_status(&r, GRPC_STATUS_OK, "1000 Gets");
    cr_assert_eq(r.n, 1000, "%zu answers", r.n);
    for (size_t i = 0; i < r.n; i++) {
        Buffdb__Kv__GetResponse *m = buffdb__kv__get_response__unpack(
            NULL, r.msgs[i].len, r.msgs[i].data);
        cr_assert_not_null(m);
        snprintf(k, sizeof(k), "answer %zu", i);
        kc_expect_bytes(m->value, "the value", 9, k);
        buffdb__kv__get_response__free_unpacked(m, NULL);
    }
    gc_result_free(&r);
    gc_close(c);
    ts_stop_ok(s);
}

/* expect_answers - read n Get answers from st; answer i must be the value
 * of key keys[i] (vals[i]) */
static void
expect_answers(struct gc_stream *st, const char *const *vals, size_t n,
               const char *what)
{
    for (size_t i = 0; i < n; i++) {
        struct gc_buf b = {0};
        int got = gc_stream_recv(st, &b);
        cr_assert_eq(got, 1, "%s: answer %zu of %zu did not arrive (%d)",
                     what, i + 1, n, got);
        Buffdb__Kv__GetResponse *m =
            buffdb__kv__get_response__unpack(NULL, b.len, b.data);
        cr_assert_not_null(m, "%s: answer %zu does not decode", what, i);
        char label[96];
        snprintf(label, sizeof(label), "%s: answer %zu", what, i);
        kc_expect_bytes(m->value, vals[i], strlen(vals[i]), label);
        buffdb__kv__get_response__free_unpacked(m, NULL);
        free(b.data);
    }
}

/*
 * A worker holds answers back while more requests are ready, to write
 * them together (call.c, "Coalescing").  Whatever the burst, an answer
 * must go out once the client waits for it: bursts sent message by
 * message and bursts that arrive in one write, around the count
 * (WORKER_COALESCE, 32) and byte (32 KiB) bounds, answered in order.  A
 * held answer that never left would end the stream by its deadline.
 */
Test(server, held_answers_go_out_whatever_the_burst)
{
    static const size_t bursts[] = {1, 2, 3, 16, 31, 32, 33, 64, 65, 150};
    enum { NKEYS = 200, NBIG = 24, BIG = 4000 };
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    char *vals[NKEYS + NBIG], k[32];

    for (int i = 0; i < NKEYS + NBIG; i++) {
        snprintf(k, sizeof(k), "key%d", i);
        vals[i] = malloc(i < NKEYS ? 32 : BIG + 1);
        cr_assert_not_null(vals[i]);
        if (i < NKEYS) {
            snprintf(vals[i], 32, "value %d", i);
        } else {
            memset(vals[i], 'a' + i % 26, BIG);
            vals[i][BIG] = '\0';
        }
        kc_kv_set_ok(c, NULL, k, vals[i]);
    }

    const char *want[NKEYS];
    struct gc_reqs q = {0};
    struct gc_result r = {0};
    size_t next = 0;
    /* each burst in one write on a fresh stream (so its first answer,
     * the one with the initial metadata, has more queued behind it),
     * then all the bursts message by message on one stream */
    for (int one_by_one = 0; one_by_one < 2; one_by_one++) {
        struct gc_stream *st = NULL;
        for (size_t b = 0; b < sizeof(bursts) / sizeof(bursts[0]); b++) {
            size_t n = bursts[b];
            char what[64];
            snprintf(what, sizeof(what), "%s of %zu",
                     one_by_one ? "one by one" : "one write", n);
            if (st == NULL) {
                st = gc_stream_start(c, KC_KV_GET, 15000);
                cr_assert_not_null(st);
            }
            for (size_t i = 0; i < n; i++, next++) {
                snprintf(k, sizeof(k), "key%zu", next % NKEYS);
                want[i] = vals[next % NKEYS];
                add_kv_key(&q, &buffdb__kv__get_request__descriptor,
                           kc_str(k));
            }
            if (!one_by_one)
                cr_assert_eq(gc_stream_send_burst(st, q.v, n), 0, "%s", what);
            else
                for (size_t i = 0; i < n; i++)
                    cr_assert_eq(gc_stream_send(st, &q.v[i]), 0,
                                 "%s: send %zu", what, i);
            expect_answers(st, want, n, what);
            gc_reqs_free(&q);
            if (!one_by_one) {
                gc_stream_finish(st, &r);
                kc_expect_status(&r, GRPC_STATUS_OK, what);
                cr_assert_eq(r.n, 0, "%s: %zu answers too many", what, r.n);
                gc_result_free(&r);
                st = NULL;
            }
        }
        if (st == NULL)
            continue;
        /* 24 answers of 4,000 bytes: past the byte bound in one burst */
        for (int i = 0; i < NBIG; i++) {
            snprintf(k, sizeof(k), "key%d", NKEYS + i);
            want[i] = vals[NKEYS + i];
            add_kv_key(&q, &buffdb__kv__get_request__descriptor, kc_str(k));
        }
        cr_assert_eq(gc_stream_send_burst(st, q.v, NBIG), 0);
        expect_answers(st, want, NBIG, "big values in one write");
        gc_reqs_free(&q);
        gc_stream_finish(st, &r);
        kc_expect_status(&r, GRPC_STATUS_OK, "the Get stream");
        cr_assert_eq(r.n, 0, "%zu answers after the last burst", r.n);
        gc_result_free(&r);
    }
    for (int i = 0; i < NKEYS + NBIG; i++)
        free(vals[i]);
    gc_close(c);
    ts_stop_ok(s);
}

Test(server, blob_of_20_mib_round_trips)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    const size_t n = (size_t)20 << 20;
    uint8_t *data = random_bytes(n, 20);

    cr_assert_eq(blob_store(c, data, n, "{\"size\":\"20M\"}"), 1);
    struct gc_conn *c2 = kc_conn_to(s); /* perhaps the other worker */
    blob_expect(c2, 1, data, n, "{\"size\":\"20M\"}");
    uint64_t ids[] = {1, 1};
    cr_assert_eq(blob_cmp(c2, KC_BLOB_EQ_DATA, ids, 2), 1);
    free(data);
    gc_close(c2);
    gc_close(c);
    ts_stop_ok(s);
}

struct big_call {
    struct gc_conn *c;
    uint8_t *data;
    size_t len;
    struct gc_result r;
    volatile int done;
};

static void *
big_store(void *arg)
{
    struct big_call *b = arg;
    struct gc_reqs q = {0};

    add_blob_store(&q, kc_bytes(b->data, b->len), NULL, 0);
    gc_call(b->c, KC_BLOB_STORE, q.v, q.n, 60000, &b->r);
    gc_reqs_free(&q);
    __atomic_store_n(&b->done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

Test(server, request_of_100_mib_is_refused_while_others_are_served)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *small = kc_conn_to(s);
    struct big_call b = {0};
    pthread_t thr;
    pid_t before[TS_MAX_WORKERS], after[TS_MAX_WORKERS];
    char key[32];
    int nb = ts_worker_pids(s, before, TS_MAX_WORKERS);

    kc_kv_set_ok(small, NULL, "before", "1");
    kc_kv_expect(small, NULL, "before", "1");

    b.c = kc_conn_to(s);
    b.len = (size_t)100 << 20;
    b.data = random_bytes(b.len, 100);
    cr_assert_eq(pthread_create(&thr, NULL, big_store, &b), 0);
    /* the other connection keeps working while the big one is refused */
    long until = ts_now_ms() + 60000;
    int during = 0;
    while (!__atomic_load_n(&b.done, __ATOMIC_SEQ_CST) &&
           ts_now_ms() < until && during < 100000) {
        snprintf(key, sizeof(key), "during-%d", during++);
        kc_kv_set_ok(small, NULL, key, "x");
        kc_kv_expect(small, NULL, key, "x");
    }
    pthread_join(thr, NULL);
    free(b.data);
    cr_log_info("100 MiB Store: %s after %ld ms; %d Set+Get pairs meanwhile",
                gc_status_name(b.r.code), b.r.elapsed_ms, during);
    kc_expect_status(&b.r, GRPC_STATUS_RESOURCE_EXHAUSTED, "a 100 MiB Store");
    cr_assert_eq(b.r.n, 0);
    gc_result_free(&b.r);
    gc_close(b.c);

    /* nothing was stored, and both connections still work */
    kc_kv_set_ok(small, NULL, "after", "2");
    kc_kv_expect(small, NULL, "after", "2");
    struct gc_conn *fresh = kc_conn_to(s);
    cr_assert_eq(blob_store(fresh, "small", 5, NULL), 1,
                 "the refused blob took an id");
    kc_kv_expect(fresh, NULL, "before", "1");
    gc_close(fresh);
    gc_close(small);
    /* no worker died over it */
    int na = ts_worker_pids(s, after, TS_MAX_WORKERS);
    cr_assert_eq(na, nb);
    cr_assert_arr_eq(after, before, (size_t)na * sizeof(pid_t),
                     "the workers changed");
    cr_assert(!ts_log_has(s, "killed by signal"), "%s", ts_tail(s, 2000));
    ts_stop_ok(s);
}

Test(server, max_message_size_comes_from_the_config_file)
{
    struct ts_opts o = {.config = "# small messages\n"
                                  "max_message_size = 2M\n"};
    struct ts_server *s = ts_start(&o);
    struct gc_conn *c = kc_conn_to(s);
    const size_t mib = (size_t)1 << 20;
    uint8_t *data = random_bytes(3 * mib, 3);
    struct gc_reqs q = {0};
    struct gc_result r;

    add_blob_store(&q, kc_bytes(data, 3 * mib), NULL, 0);
    run(c, KC_BLOB_STORE, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_RESOURCE_EXHAUSTED, "a 3 MiB Store");
    gc_result_free(&r);

    cr_assert_eq(blob_store(c, data, mib, NULL), 1, "a 1 MiB Store");
    blob_expect(c, 1, data, mib, NULL);

    /* the limit holds for responses too: a 3 MiB blob written by raw SQL
     * cannot be read back, nor selected */
    kc_add_query(&q, "INSERT INTO blob(data) VALUES (zeroblob(3 * 1048576))",
                 BUFFDB__QUERY__TARGET_STORE__BLOB);
    run(c, KC_QUERY_EXECUTE, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "INSERT of a 3 MiB blob");
    cr_assert_eq(rows_changed(&r, 0), 1);
    gc_result_free(&r);
    add_blob_id(&q, &buffdb__blob__get_request__descriptor, 2);
    run(c, KC_BLOB_GET, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_RESOURCE_EXHAUSTED, "Get of a 3 MiB blob");
    cr_assert(strstr(r.details, "max_message_size") != NULL, "details: %s",
              r.details);
    gc_result_free(&r);
    kc_add_query(&q, "SELECT zeroblob(3 * 1048576)",
                 BUFFDB__QUERY__TARGET_STORE__KV);
    run(c, KC_QUERY_QUERY, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_RESOURCE_EXHAUSTED, "a 3 MiB row");
    gc_result_free(&r);
    /* and the worker is fine */
    blob_expect(c, 1, data, mib, NULL);
    free(data);
    gc_close(c);
    ts_stop_ok(s);
}

/* ============================================================================
 * Workers
 * ========================================================================== */

Test(server, connections_are_spread_over_workers)
{
    struct ts_server *s = ts_start(NULL);
    pid_t workers[TS_MAX_WORKERS];
    int nw = ts_worker_pids(s, workers, TS_MAX_WORKERS);
    int distinct = 0;

    cr_assert_eq(nw, 2, "%d workers, expected 2", nw);
    /* 8 connections land on one worker with probability 2^-7; a few new
     * rounds make a false failure practically impossible */
    for (int round = 0; round < 5 && distinct < 2; round++) {
        struct gc_conn *c[8];
        pid_t seen[8];
        distinct = 0;
        for (int i = 0; i < 8; i++) {
            struct gc_reqs q = {0};
            struct gc_result r;
            char key[32];
            c[i] = kc_conn_to(s);
            snprintf(key, sizeof(key), "conn-%d-%d", round, i);
            add_kv_set(&q, kc_str(key), kc_str("v"));
            run(c[i], KC_KV_SET, &q, &r);
            kc_expect_status(&r, GRPC_STATUS_OK, key);
            cr_assert(kc_pid_in(r.worker_pid, workers, nw),
                      "served by pid %ld, not a worker",
                      (long)r.worker_pid);
            if (!kc_pid_in(r.worker_pid, seen, distinct))
                seen[distinct++] = r.worker_pid;
            gc_result_free(&r);
        }
        for (int i = 0; i < 8; i++)
            gc_close(c[i]);
    }
    cr_assert_geq(distinct, 2, "every connection reached the same worker");
    ts_stop_ok(s);
}

/* the writer of worker_killed_...: single Sets on fresh connections */
#define WRITER_MAX 20000
struct writer {
    const char *addr;
    volatile int stop;
    int acked;                  /* keys 0..acked-1 in `keys` */
    int keys[WRITER_MAX];       /* the index of each acknowledged key */
    pid_t pids[WRITER_MAX];     /* the worker that acknowledged it */
    int unavailable;
    int other;                  /* errors that are not UNAVAILABLE */
    char other_detail[256];
};

static void *
writer_main(void *arg)
{
    struct writer *w = arg;
    long until = ts_now_ms() + 90000;

    for (int i = 0; i < WRITER_MAX && !__atomic_load_n(&w->stop,
                                                         __ATOMIC_SEQ_CST) &&
                    ts_now_ms() < until;
         i++) {
        struct gc_conn *c = gc_connect(w->addr);
        struct gc_reqs q = {0};
        struct gc_result r;
        char key[32], val[32];

        if (c == NULL)
            break;
        snprintf(key, sizeof(key), "w-%05d", i);
        snprintf(val, sizeof(val), "v-%05d", i);
        add_kv_set(&q, kc_str(key), kc_str(val));
        gc_call(c, KC_KV_SET, q.v, q.n, 5000, &r);
        gc_reqs_free(&q);
        if (r.code == GRPC_STATUS_OK && r.n == 1) {
            int n = w->acked;
            w->keys[n] = i;
            w->pids[n] = r.worker_pid;
            __atomic_store_n(&w->acked, n + 1, __ATOMIC_SEQ_CST);
        } else if (r.code == GRPC_STATUS_UNAVAILABLE) {
            w->unavailable++;
        } else if (w->other++ == 0) {
            snprintf(w->other_detail, sizeof(w->other_detail), "%s: %s",
                     gc_status_name(r.code), r.details);
        }
        gc_result_free(&r);
        gc_close(c);
    }
    return NULL;
}

/* wait_acked - until the writer acknowledged n keys; 1 if it did */
static int
wait_acked(struct writer *w, int n, int timeout_ms)
{
    long until = ts_now_ms() + timeout_ms;
    while (__atomic_load_n(&w->acked, __ATOMIC_SEQ_CST) < n) {
        if (ts_now_ms() >= until)
            return 0;
        ts_sleep_ms(10);
    }
    return 1;
}

Test(server, killed_worker_is_replaced_and_no_acknowledged_write_is_lost)
{
    struct ts_server *s = ts_start(NULL);
    struct writer *w = calloc(1, sizeof(*w));
    pid_t old[TS_MAX_WORKERS], now[TS_MAX_WORKERS];
    pid_t fresh = 0;
    pthread_t thr;
    char line[128];

    cr_assert_not_null(w);
    int nold = ts_worker_pids(s, old, TS_MAX_WORKERS);
    cr_assert_eq(nold, 2);
    w->addr = s->addr;
    cr_assert_eq(pthread_create(&thr, NULL, writer_main, w), 0);
    int ok = wait_acked(w, 30, 30000);

    /* step 1: kill -9 one worker while the writer writes */
    pid_t victim = old[0];
    if (ok)
        kill(victim, SIGKILL);
    /* step 2: the master notices and starts a replacement */
    snprintf(line, sizeof(line), "(pid %ld) killed by signal 9",
             (long)victim);
    int logged = ok && ts_wait_log(s, line, 1, 10000) &&
                 ts_wait_log(s, "restarting worker", 1, 10000);
    long until = ts_now_ms() + 15000;
    while (logged && fresh == 0 && ts_now_ms() < until) {
        pid_t l[64];
        int nl = ts_listening_pids(s, l, 64);
        int n = ts_worker_pids(s, now, TS_MAX_WORKERS);
        for (int i = 0; i < n; i++)
            if (!kc_pid_in(now[i], old, nold) && kc_pid_in(now[i], l, nl))
                fresh = now[i];
        if (fresh == 0)
            ts_sleep_ms(20);
    }
    /* step 3: the writer goes on, and the new worker serves some of it */
    int at_restart = __atomic_load_n(&w->acked, __ATOMIC_SEQ_CST);
    int served_by_fresh = 0;
    until = ts_now_ms() + 20000;
    while (fresh != 0 && ts_now_ms() < until && !served_by_fresh) {
        int n = __atomic_load_n(&w->acked, __ATOMIC_SEQ_CST);
        for (int i = at_restart; i < n; i++)
            served_by_fresh |= w->pids[i] == fresh;
        if (!served_by_fresh)
            ts_sleep_ms(20);
    }
    wait_acked(w, at_restart + 30, 20000);
    __atomic_store_n(&w->stop, 1, __ATOMIC_SEQ_CST);
    pthread_join(thr, NULL);

    cr_assert(ok, "the writer did not get going: %d acknowledged",
              w->acked);
    cr_assert(logged, "the master did not log the kill and a restart\n%s",
              ts_tail(s, 3000));
    cr_assert_neq(fresh, 0, "no new worker listened\n%s", ts_tail(s, 3000));
    int nnow = ts_worker_pids(s, now, TS_MAX_WORKERS);
    cr_assert(!kc_pid_in(victim, now, nnow),
              "the killed worker is still there");
    cr_assert_geq(w->acked, at_restart + 30,
                  "only %d writes acknowledged after the restart",
                  w->acked - at_restart);
    cr_assert(served_by_fresh, "the new worker %ld served no write",
              (long)fresh);
    cr_assert_eq(w->other, 0, "%d errors other than UNAVAILABLE, first: %s",
                 w->other, w->other_detail);
    cr_log_info("kill -9: %d writes acknowledged, %d UNAVAILABLE retried",
                w->acked, w->unavailable);

    /* every acknowledged key is there */
    struct gc_conn *c = kc_conn_to(s);
    struct gc_reqs q = {0};
    struct gc_result r;
    char key[32], val[32];
    for (int i = 0; i < w->acked; i++) {
        snprintf(key, sizeof(key), "w-%05d", w->keys[i]);
        add_kv_key(&q, &buffdb__kv__get_request__descriptor, kc_str(key));
    }
    gc_call_pipelined(c, KC_KV_GET, q.v, q.n, 60000, &r);
    gc_reqs_free(&q);
    kc_expect_status(&r, GRPC_STATUS_OK, "Get of every acknowledged key");
    cr_assert_eq(r.n, (size_t)w->acked);
    for (int i = 0; i < w->acked; i++) {
        Buffdb__Kv__GetResponse *m = buffdb__kv__get_response__unpack(
            NULL, r.msgs[i].len, r.msgs[i].data);
        cr_assert_not_null(m);
        snprintf(val, sizeof(val), "v-%05d", w->keys[i]);
        kc_expect_bytes(m->value, val, strlen(val), "an acknowledged value");
        buffdb__kv__get_response__free_unpacked(m, NULL);
    }
    gc_result_free(&r);
    gc_close(c);
    free(w);
    ts_stop_ok(s);
}

/* ============================================================================
 * Signals
 * ========================================================================== */

/* open_get_stream - a Kv.Get stream with one request answered, left open */
static struct gc_stream *
open_get_stream(struct gc_conn *c)
{
    struct gc_stream *st = gc_stream_start(c, KC_KV_GET, 60000);
    struct gc_reqs q = {0};
    struct gc_buf got;

    cr_assert_not_null(st);
    add_kv_key(&q, &buffdb__kv__get_request__descriptor, kc_str("k"));
    cr_assert_eq(gc_stream_send(st, &q.v[0]), 0, "could not send");
    gc_reqs_free(&q);
    cr_assert_eq(gc_stream_recv(st, &got), 1, "no answer to the first Get");
    Buffdb__Kv__GetResponse *m =
        buffdb__kv__get_response__unpack(NULL, got.len, got.data);
    cr_assert_not_null(m);
    kc_expect_bytes(m->value, "v", 1, "k");
    buffdb__kv__get_response__free_unpacked(m, NULL);
    free(got.data);
    return st;
}

Test(server, sigterm_lets_a_call_in_flight_finish)
{
    struct ts_opts o = {.config = "shutdown_grace = 3s\n"};
    struct ts_server *s = ts_start(&o);
    struct gc_conn *c = kc_conn_to(s);
    struct gc_reqs q = {0};
    struct gc_result r = {0};
    struct gc_buf got;

    kc_kv_set_ok(c, NULL, "k", "v");
    struct gc_stream *st = open_get_stream(c);

    /* step 1: SIGTERM while the stream is open */
    long t0 = ts_now_ms();
    cr_assert_eq(ts_signal(s, SIGTERM), 0);
    cr_assert(ts_wait_log(s, "stopping: finishing calls in flight", 1, 5000),
              "no worker began to stop\n%s", ts_tail(s, 2000));
    ts_sleep_ms(300);
    cr_assert(!ts_wait_exit(s, 0), "the server exited with a call open");

    /* step 2: the call in flight is still served, then ends OK */
    add_kv_key(&q, &buffdb__kv__get_request__descriptor, kc_str("k"));
    cr_assert_eq(gc_stream_send(st, &q.v[0]), 0,
                 "the call in flight was cut off");
    gc_reqs_free(&q);
    cr_assert_eq(gc_stream_recv(st, &got), 1, "no answer during the grace");
    free(got.data);
    gc_stream_finish(st, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "the call in flight");
    gc_result_free(&r);

    /* step 3: the server exits 0 within the grace period */
    cr_assert(ts_wait_exit(s, 3000 + 2000), "still running %ld ms after "
              "SIGTERM\n%s", ts_now_ms() - t0, ts_tail(s, 2000));
    long took = ts_now_ms() - t0;
    cr_assert_lt(took, 3000 + 1500, "exit took %ld ms", took);
    cr_assert_eq(s->status, 0, "exit status %d\n%s", s->status,
                 ts_tail(s, 2000));
    cr_assert(!ts_log_has(s, "grace period over"), "a call was cancelled");
    cr_assert(!ts_port_open(s->port), "something still listens");
    gc_close(c);
    ts_stop_ok(s);
}

Test(server, sigterm_cancels_a_call_still_open_after_the_grace_period)
{
    struct ts_opts o = {.config = "shutdown_grace = 3s\n"};
    struct ts_server *s = ts_start(&o);
    struct gc_conn *c = kc_conn_to(s);
    struct gc_result r = {0};
    struct gc_buf got;

    kc_kv_set_ok(c, NULL, "k", "v");
    struct gc_stream *st = open_get_stream(c);

    long t0 = ts_now_ms();
    cr_assert_eq(ts_signal(s, SIGTERM), 0);
    /* the client never half-closes: this waits until the server gives up */
    int rr = gc_stream_recv(st, &got);
    long cut = ts_now_ms() - t0;
    if (rr == 1)
        free(got.data);
    cr_assert_neq(rr, 1, "an answer to a request never sent");
    gc_stream_finish(st, &r);
    cr_assert_neq(r.code, GRPC_STATUS_OK, "the open call ended OK");
    cr_log_info("call still open at the end of the grace: %s (%s) after "
                "%ld ms", gc_status_name(r.code), r.details, cut);
    gc_result_free(&r);
    cr_assert_geq(cut, 2500, "the call was cut after %ld ms, before the "
                  "3 s grace", cut);

    cr_assert(ts_wait_exit(s, 10000), "still running %ld ms after "
              "SIGTERM\n%s", ts_now_ms() - t0, ts_tail(s, 2000));
    long took = ts_now_ms() - t0;
    cr_assert_lt(took, 3000 + 3000, "exit took %ld ms", took);
    cr_assert_eq(s->status, 0, "exit status %d\n%s", s->status,
                 ts_tail(s, 2000));
    cr_assert(ts_log_has(s, "grace period over"), "%s", ts_tail(s, 2000));
    gc_close(c);
    ts_stop_ok(s);
}

Test(server, sighup_replaces_every_worker_while_serving)
{
    struct ts_server *s = ts_start(NULL);
    pid_t old[TS_MAX_WORKERS], now[TS_MAX_WORKERS];
    int nold = ts_worker_pids(s, old, TS_MAX_WORKERS);
    int n = 0, calls = 0, retried = 0, replaced = 0;
    char key[32];

    cr_assert_eq(nold, 2);
    cr_assert_eq(ts_signal(s, SIGHUP), 0);
    /* keep calling, each on a fresh connection, until both are replaced.
     * A connection the kernel queued on an old worker's listener just as
     * that worker stops is reset (SO_REUSEPORT does not hand a closing
     * listener's queue to the others unless net.ipv4.tcp_migrate_req is
     * set), and a call that reaches an old worker on a connection it
     * accepted just before it began to stop is cancelled by gRPC core
     * (a "zombie" call, never seen by buffdb).  Such a call is UNAVAILABLE
     * or CANCELLED and is retried on a new connection, a few times at
     * most over the whole reload. */
    long until = ts_now_ms() + 30000;
    while (ts_now_ms() < until && !replaced) {
        struct gc_reqs q = {0};
        struct gc_result r;
        snprintf(key, sizeof(key), "hup-%d", calls++);
        for (int attempt = 0; attempt < 3; attempt++) {
            struct gc_conn *c = kc_conn_to(s);
            add_kv_set(&q, kc_str(key), kc_str("v"));
            run(c, KC_KV_SET, &q, &r);
            gc_close(c);
            if ((r.code != GRPC_STATUS_UNAVAILABLE &&
                 r.code != GRPC_STATUS_CANCELLED) || r.n != 0 ||
                attempt == 2)
                break;
            if (retried++ == 0)
                cr_log_info("SIGHUP: a call was refused: %s", r.details);
            gc_result_free(&r);
        }
        kc_expect_status(&r, GRPC_STATUS_OK, "a Set during the reload");
        gc_result_free(&r);
        n = ts_worker_pids(s, now, TS_MAX_WORKERS);
        replaced = ts_log_has(s, "reload complete") && n == 2 &&
                   !kc_pid_in(now[0], old, nold) &&
                   !kc_pid_in(now[1], old, nold);
    }
    cr_assert(replaced, "the workers were not all replaced\n%s",
              ts_tail(s, 3000));
    cr_log_info("SIGHUP: %d calls during the reload, %d retried", calls,
                retried);
    /* two listeners closed: a reset or two each at the very most */
    cr_assert_leq(retried, 4, "%d of %d calls were refused", retried, calls);

    /* after: served by the new workers only, and every write is there */
    struct gc_conn *c = kc_conn_to(s);
    struct gc_reqs q = {0};
    struct gc_result r;
    add_kv_set(&q, kc_str("after"), kc_str("1"));
    run(c, KC_KV_SET, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "a Set after the reload");
    cr_assert(kc_pid_in(r.worker_pid, now, n), "served by %ld, an old worker",
              (long)r.worker_pid);
    gc_result_free(&r);
    kc_kv_expect(c, NULL, "hup-0", "v");
    snprintf(key, sizeof(key), "hup-%d", calls - 1);
    kc_kv_expect(c, NULL, key, "v");
    gc_close(c);
    ts_stop_ok(s);
}

/* ============================================================================
 * Start-up errors
 * ========================================================================== */

Test(server, unknown_directive_exits_2_naming_file_and_line)
{
    struct ts_opts o = {.config = "# a test configuration\n"
                                  "workers = 2\n"
                                  "frobnicate = yes\n"
                                  "also_unknown = 1\n",
                        .config_name = "bad.conf",
                        .workers = -1,
                        .no_wait = 1};
    struct ts_server *s = ts_start(&o);

    cr_assert(ts_wait_exit(s, 5000), "buffdb run did not exit\n%s",
              ts_tail(s, 2000));
    cr_assert_eq(s->status, 2, "exit status %d\n%s", s->status,
                 ts_tail(s, 2000));
    cr_assert(ts_log_has(s, "bad.conf:3"), "%s", ts_tail(s, 2000));
    cr_assert(ts_log_has(s, "frobnicate"), "%s", ts_tail(s, 2000));
    cr_assert(!ts_log_has(s, "also_unknown"), "more than the first error");
    cr_assert(!ts_log_has(s, "listening"), "%s", ts_tail(s, 2000));
    cr_assert(!ts_port_open(s->port), "something listens on %s", s->addr);
    char *kv = ts_path(s, "kv_store.db");
    cr_assert_neq(access(kv, F_OK), 0, "the kv store was created");
    free(kv);
    ts_assert_log_clean(s);
}

Test(server, bad_value_exits_2_naming_the_directive)
{
    struct ts_opts o = {.config = "workers = lots\n",
                        .config_name = "bad.conf",
                        .workers = -1,
                        .no_wait = 1};
    struct ts_server *s = ts_start(&o);

    cr_assert(ts_wait_exit(s, 5000), "buffdb run did not exit");
    cr_assert_eq(s->status, 2, "exit status %d\n%s", s->status,
                 ts_tail(s, 2000));
    cr_assert(ts_log_has(s, "bad.conf:1: workers: 'lots'"), "%s",
              ts_tail(s, 2000));
    cr_assert(!ts_port_open(s->port), "something listens on %s", s->addr);
    ts_assert_log_clean(s);

    /* a bad value on the command line is refused alike */
    static const char *const args[] = {"--workers", "9999", NULL};
    struct ts_opts o2 = {.workers = -1, .no_wait = 1, .args = args};
    struct ts_server *s2 = ts_start(&o2);
    cr_assert(ts_wait_exit(s2, 5000), "buffdb run did not exit");
    cr_assert_eq(s2->status, 2, "exit status %d\n%s", s2->status,
                 ts_tail(s2, 2000));
    cr_assert(ts_log_has(s2, "workers"), "%s", ts_tail(s2, 2000));
    ts_assert_log_clean(s2);
}

Test(server, second_server_on_the_same_address_is_refused)
{
    struct ts_server *s = ts_start(NULL);
    pid_t before[TS_MAX_WORKERS], after[TS_MAX_WORKERS];
    int nb = ts_worker_pids(s, before, TS_MAX_WORKERS);
    struct ts_opts o = {.addr = s->addr, .no_wait = 1};
    struct ts_server *s2 = ts_start(&o);

    cr_assert(ts_wait_exit(s2, 10000), "the second server did not exit\n%s",
              ts_tail(s2, 2000));
    cr_assert_eq(s2->status, 2, "exit status %d\n%s", s2->status,
                 ts_tail(s2, 2000));
    cr_assert(ts_log_has(s2, "already running"), "%s", ts_tail(s2, 2000));
    ts_assert_log_clean(s2);

    /* the first one is untouched and serves on */
    struct gc_conn *c = kc_conn_to(s);
    kc_kv_set_ok(c, NULL, "still", "mine");
    kc_kv_expect(c, NULL, "still", "mine");
    gc_close(c);
    int na = ts_worker_pids(s, after, TS_MAX_WORKERS);
    cr_assert_eq(na, nb);
    cr_assert_arr_eq(after, before, (size_t)na * sizeof(pid_t));
    ts_stop_ok(s);
}

/* ============================================================================
 * Deadlines
 * ========================================================================== */

Test(server, deadline_stops_a_runaway_query_and_the_worker_serves_on)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    struct gc_reqs q = {0};
    struct gc_result r;

    add_kv_set(&q, kc_str("k"), kc_str("v"));
    run(c, KC_KV_SET, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "Set");
    pid_t worker = r.worker_pid;
    gc_result_free(&r);

    kc_add_query(&q, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL "
                     "SELECT x + 1 FROM c) SELECT count(*) FROM c",
                 BUFFDB__QUERY__TARGET_STORE__KV);
    gc_call(c, KC_QUERY_QUERY, q.v, q.n, 1000, &r);
    gc_reqs_free(&q);
    kc_expect_status(&r, GRPC_STATUS_DEADLINE_EXCEEDED, "an endless query");
    cr_assert_lt(r.elapsed_ms, 4000, "DEADLINE_EXCEEDED after %ld ms",
                 r.elapsed_ms);
    gc_result_free(&r);

    /* the same connection, so the same worker: it is free again (a worker
     * still stuck in SQLite would answer nothing within 5 s) */
    for (int i = 0; i < 3; i++) {
        add_kv_key(&q, &buffdb__kv__get_request__descriptor, kc_str("k"));
        gc_call(c, KC_KV_GET, q.v, q.n, 5000, &r);
        gc_reqs_free(&q);
        kc_expect_status(&r, GRPC_STATUS_OK, "a Get after the runaway query");
        cr_assert_eq(r.worker_pid, worker, "served by another worker");
        gc_result_free(&r);
    }
    /* and the same statement with a generous deadline is also stopped by
     * the server, not only abandoned by the client */
    kc_add_query(&q, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL "
                     "SELECT x + 1 FROM c) SELECT count(*) FROM c",
                 BUFFDB__QUERY__TARGET_STORE__KV);
    gc_call(c, KC_QUERY_QUERY, q.v, q.n, 2000, &r);
    gc_reqs_free(&q);
    kc_expect_status(&r, GRPC_STATUS_DEADLINE_EXCEEDED, "an endless query");
    gc_result_free(&r);
    kc_kv_expect(c, NULL, "k", "v");
    gc_close(c);
    ts_stop_ok(s);
}

/* ============================================================================
 * Robustness
 * ========================================================================== */

Test(server, malformed_request_is_invalid_argument)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    static const char *const methods[] = {KC_KV_GET, KC_KV_SET, KC_KV_EQ,
                                          KC_BLOB_STORE, KC_BLOB_UPDATE,
                                          KC_QUERY_QUERY, KC_QUERY_EXECUTE};
    struct gc_reqs q = {0};
    struct gc_result r;

    for (size_t i = 0; i < sizeof(methods) / sizeof(*methods); i++) {
        /* a varint that never ends */
        gc_reqs_add_raw(&q, "\xff\xff\xff\xff", 4);
        run(c, methods[i], &q, &r);
        kc_expect_status(&r, GRPC_STATUS_INVALID_ARGUMENT, methods[i]);
        cr_assert(strstr(r.details, "malformed") != NULL, "%s: details: %s",
                  methods[i], r.details);
        gc_result_free(&r);
    }
    kc_kv_set_ok(c, NULL, "still", "serving");
    gc_close(c);
    ts_stop_ok(s);
}

Test(server, query_streams_a_hundred_thousand_rows_in_order)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    struct gc_reqs q = {0};
    struct gc_result r;
    char text[32];
    const int rows = 100000;

    kc_add_query(&q, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 "
                     "FROM c WHERE x < 100000) SELECT x, 'row ' || x FROM c",
                 BUFFDB__QUERY__TARGET_STORE__KV);
    gc_call(c, KC_QUERY_QUERY, q.v, q.n, 120000, &r);
    gc_reqs_free(&q);
    kc_expect_status(&r, GRPC_STATUS_OK, "a query of 100,000 rows");
    cr_assert_eq(r.n, (size_t)rows, "%zu rows", r.n);
    for (int i = 0; i < rows; i++) {
        Buffdb__Query__QueryResult *m = query_row(&r, (size_t)i, 2);
        expect_int(m->fields[0], i + 1);
        snprintf(text, sizeof(text), "row %d", i + 1);
        expect_string(m->fields[1], text, strlen(text));
        buffdb__query__query_result__free_unpacked(m, NULL);
    }
    gc_result_free(&r);
    gc_close(c);
    ts_stop_ok(s);
}

Test(server, client_cancel_mid_stream_leaves_the_worker_serving)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    struct gc_reqs q = {0};
    struct gc_result r;
    struct gc_buf got;

    add_kv_set(&q, kc_str("k"), kc_str("v"));
    run(c, KC_KV_SET, &q, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "Set");
    pid_t worker = r.worker_pid;
    gc_result_free(&r);

    /* an endless result set: read ten rows, then walk away */
    for (int round = 0; round < 3; round++) {
        struct gc_stream *st = gc_stream_start(c, KC_QUERY_QUERY, 60000);
        cr_assert_not_null(st);
        kc_add_query(&q, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL "
                         "SELECT x + 1 FROM c) SELECT x FROM c",
                     BUFFDB__QUERY__TARGET_STORE__KV);
        cr_assert_eq(gc_stream_send(st, &q.v[0]), 0);
        gc_reqs_free(&q);
        for (int i = 0; i < 10; i++) {
            cr_assert_eq(gc_stream_recv(st, &got), 1, "row %d missing", i);
            Buffdb__Query__QueryResult *m =
                buffdb__query__query_result__unpack(NULL, got.len, got.data);
            cr_assert_not_null(m);
            cr_assert_eq(m->n_fields, 1);
            expect_int(m->fields[0], i + 1);
            buffdb__query__query_result__free_unpacked(m, NULL);
            free(got.data);
        }
        gc_stream_cancel(st);
    }
    /* a Get stream left open, then cancelled */
    struct gc_stream *st = open_get_stream(c);
    gc_stream_cancel(st);
    /* a Set stream cancelled by its deadline while the client dawdles */
    st = gc_stream_start(c, KC_KV_SET, 300);
    cr_assert_not_null(st);
    add_kv_set(&q, kc_str("slow"), kc_str("1"));
    cr_assert_eq(gc_stream_send(st, &q.v[0]), 0);
    gc_reqs_free(&q);
    ts_sleep_ms(600);
    memset(&r, 0, sizeof(r));
    gc_stream_finish(st, &r);
    kc_expect_status(&r, GRPC_STATUS_DEADLINE_EXCEEDED, "a dawdling Set");
    gc_result_free(&r);

    /* the same worker answers at once */
    add_kv_key(&q, &buffdb__kv__get_request__descriptor, kc_str("k"));
    gc_call(c, KC_KV_GET, q.v, q.n, 5000, &r);
    gc_reqs_free(&q);
    kc_expect_status(&r, GRPC_STATUS_OK, "a Get after the cancelled calls");
    cr_assert_eq(r.worker_pid, worker, "another worker answered");
    gc_result_free(&r);
    gc_close(c);
    ts_stop_ok(s);
}

Test(server, sighup_with_a_broken_config_keeps_the_running_workers)
{
    struct ts_opts o = {.config = "workers = 2\n", .workers = -1};
    struct ts_server *s = ts_start(&o);
    pid_t old[TS_MAX_WORKERS], now[TS_MAX_WORKERS];
    int nold = ts_worker_pids(s, old, TS_MAX_WORKERS);
    struct gc_conn *c;

    cr_assert_eq(nold, 2);
    /* step 1: a broken file is refused; the workers stay */
    cr_assert_eq(th_write_file(s->conf_path, "workers = 2\nfrobnicate = 1\n",
                               27), 0);
    cr_assert_eq(ts_signal(s, SIGHUP), 0);
    cr_assert(ts_wait_log(s, "reload failed", 1, 10000), "%s",
              ts_tail(s, 2000));
    cr_assert(ts_log_has(s, "frobnicate"), "%s", ts_tail(s, 2000));
    ts_sleep_ms(200);
    int n = ts_worker_pids(s, now, TS_MAX_WORKERS);
    cr_assert_eq(n, nold);
    cr_assert_arr_eq(now, old, (size_t)n * sizeof(pid_t),
                     "workers replaced after a failed reload");
    c = kc_conn_to(s);
    kc_kv_set_ok(c, NULL, "during", "1");
    gc_close(c);

    /* step 2: a good file with another worker count takes effect */
    cr_assert_eq(th_write_file(s->conf_path, "workers = 3\n", 12), 0);
    cr_assert_eq(ts_signal(s, SIGHUP), 0);
    cr_assert(ts_wait_log(s, "reload complete: 3 workers", 1, 20000), "%s",
              ts_tail(s, 3000));
    long until = ts_now_ms() + 15000;
    int fresh = 0;
    while (ts_now_ms() < until && !fresh) {
        n = ts_worker_pids(s, now, TS_MAX_WORKERS);
        fresh = n == 3;
        for (int i = 0; i < n; i++)
            fresh &= !kc_pid_in(now[i], old, nold);
        if (!fresh)
            ts_sleep_ms(20);
    }
    cr_assert(fresh, "not 3 new workers\n%s", ts_tail(s, 3000));
    c = kc_conn_to(s);
    kc_kv_expect(c, NULL, "during", "1");
    gc_close(c);
    ts_stop_ok(s);
}

/* ---- systemd notification --------------------------------------------- */

/* notify_recv - the next datagram on fd within ms, NUL-terminated in buf;
 * 0 if one came */
static int
notify_recv(int fd, char *buf, size_t cap, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ssize_t n = recv(fd, buf, cap - 1, 0);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return 0;
}

/* notify_wait - receive datagrams until one contains want (bounded) */
static int
notify_wait(int fd, const char *want, int ms)
{
    char buf[512];
    long until = ts_now_ms() + ms;

    while (ts_now_ms() < until) {
        if (notify_recv(fd, buf, sizeof(buf), 200) == 0 &&
            strstr(buf, want) != NULL)
            return 0;
    }
    return -1;
}

Test(server, systemd_is_told_ready_reloading_and_stopping)
{
    char *dir = th_tmpdir();
    char *path = th_path(dir, "notify.sock");
    struct sockaddr_un un;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    cr_assert(fd >= 0);
    memset(&un, 0, sizeof(un));
    un.sun_family = AF_UNIX;
    snprintf(un.sun_path, sizeof(un.sun_path), "%s", path);
    cr_assert_eq(bind(fd, (struct sockaddr *)&un, sizeof(un)), 0, "bind %s",
                 path);
    /* Criterion runs each test in its own process: the variable stays
     * with this test and the server it starts */
    setenv("NOTIFY_SOCKET", path, 1);

    struct ts_opts o = {.workers = 2};
    struct ts_server *s = ts_start(&o);
    cr_assert_eq(notify_wait(fd, "READY=1", 10000), 0,
                 "no READY=1 once the workers listen");

    cr_assert_eq(ts_signal(s, SIGHUP), 0);
    cr_assert_eq(notify_wait(fd, "RELOADING=1", 10000), 0,
                 "no RELOADING=1 on SIGHUP");
    cr_assert_eq(notify_wait(fd, "READY=1", 20000), 0,
                 "no READY=1 after the reload");

    cr_assert_eq(ts_signal(s, SIGTERM), 0);
    cr_assert_eq(notify_wait(fd, "STOPPING=1", 10000), 0,
                 "no STOPPING=1 on SIGTERM");
    cr_assert_eq(ts_wait_exit(s, TS_STOP_TIMEOUT_MS), 1, "did not exit");
    cr_assert_eq(s->status, 0);
    ts_assert_log_clean(s);
    unsetenv("NOTIFY_SOCKET");
    close(fd);
    th_rmrf(dir);
    free(path);
    free(dir);
}
