/*
 * test_index.c - secondary indexes end to end: the buffdb.index.Index
 * service of the real buffdb binary ($BUFFDB_BIN), started by
 * tests/helpers/server.c and driven over gRPC by tests/helpers/grpc_client.c.
 *
 * Every test starts its own server (2 workers) on 127.0.0.1 and a free
 * port, in its own directory, and ends with ts_stop_ok() (clean exit, a
 * log free of sanitizer reports); a server killed on purpose has its log
 * checked with ts_assert_log_clean().
 *
 * What is covered: every RPC and its statuses (CreateIndex, DropIndex,
 * ListIndexes, Lookup, Range); the model-registry use (a HASH index on
 * "$.framework" of model:<name>:<version>:metadata keys); every way of
 * writing keeps the indexes true (Set, Delete, raw SQL through
 * Query/Execute, a committed transaction; a rolled-back one changes
 * nothing); unique indexes (the refused Set changes nothing, and a race of
 * two workers for one value has exactly one winner per round; a commit
 * breaking unique applies nothing, a swap inside one commits); a clean
 * restart keeps definitions and entries; a kill -9 in the middle of a
 * stream of Sets leaves indexes equal to a full scan (and the restart says
 * it checked them); 100,000 keys under an INTEGER BTREE index.
 *
 * Threads other than the test's own never call cr_assert: they record
 * what happened and the test thread checks it.  Every loop is bounded in
 * count and in time.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <grpc/grpc.h>
#include <inttypes.h>
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
#include "google/protobuf/any.pb-c.h"
#include "google/protobuf/struct.pb-c.h"
#include "google/protobuf/wrappers.pb-c.h"
#include "index.pb-c.h"
#include "kv.pb-c.h"
#include "query.pb-c.h"

#define IX_CREATE "/buffdb.index.Index/CreateIndex"
#define IX_DROP "/buffdb.index.Index/DropIndex"
#define IX_LIST "/buffdb.index.Index/ListIndexes"
#define IX_LOOKUP "/buffdb.index.Index/Lookup"
#define IX_RANGE "/buffdb.index.Index/Range"

#define HASH BUFFDB__INDEX__INDEX_TYPE__HASH
#define BTREE BUFFDB__INDEX__INDEX_TYPE__BTREE
#define VT_STRING BUFFDB__INDEX__VALUE_TYPE__STRING
#define VT_INTEGER BUFFDB__INDEX__VALUE_TYPE__INTEGER

TestSuite(index, .init = kc_suite_init, .fini = kc_suite_fini, .timeout = 150.);

/* ---- small helpers ------------------------------------------------------ */

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ---- transactions and Execute (test thread only) ------------------------ */

/* txn_begin - BeginTransaction, asserting a non-empty id (malloc'd); the
 * form of the id is test_txn's business (kc_txn_begin asserts a UUID) */
static char *
txn_begin(struct gc_conn *c)
{
    Buffdb__Kv__BeginTransactionRequest m =
        BUFFDB__KV__BEGIN_TRANSACTION_REQUEST__INIT;
    struct gc_result r;

    kc_call1(c, KC_KV_BEGIN, &m.base, KC_DEADLINE_MS, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "BeginTransaction");
    cr_assert_eq(r.n, 1);
    Buffdb__Kv__BeginTransactionResponse *p =
        buffdb__kv__begin_transaction_response__unpack(NULL, r.msgs[0].len,
                                                       r.msgs[0].data);
    cr_assert_not_null(p, "undecodable BeginTransactionResponse");
    cr_assert_gt(p->transaction_id.len, 0, "empty transaction_id");
    char *id = kc_dupn(p->transaction_id.data, p->transaction_id.len);
    cr_assert_not_null(id);
    buffdb__kv__begin_transaction_response__free_unpacked(p, NULL);
    gc_result_free(&r);
    return id;
}

/* txn_end_ok - Commit (commit 1) or Rollback, asserting success */
static void
txn_end_ok(struct gc_conn *c, const char *id, int commit)
{
    char err[512];

    cr_assert(kc_txn_end(c, id, commit, err, sizeof(err)),
              "%s of %s failed: %s", commit ? "Commit" : "Rollback", id, err);
}

/* execute_ok - Execute, asserting OK and rows_changed == rows */
static void
execute_ok(struct gc_conn *c, const char *sql, uint64_t rows)
{
    struct gc_result r;

    kc_execute_r(c, sql, BUFFDB__QUERY__TARGET_STORE__KV, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, sql);
    cr_assert_eq(r.n, 1, "%s: %zu responses", sql, r.n);
    Buffdb__Query__RowsChanged *m = buffdb__query__rows_changed__unpack(
        NULL, r.msgs[0].len, r.msgs[0].data);
    cr_assert_not_null(m, "%s: undecodable RowsChanged", sql);
    cr_assert_eq(m->rows_changed, rows, "%s: %" PRIu64 " rows changed, "
                 "expected %" PRIu64, sql, m->rows_changed, rows);
    buffdb__query__rows_changed__free_unpacked(m, NULL);
    gc_result_free(&r);
}

/* ---- Index requests ----------------------------------------------------- */

struct spec {
    const char *name;
    int type;
    int unique;
    const char *prefix;
    const char *path;
    int vtype;
};

static void
ix_create_r(struct gc_conn *c, const struct spec *sp, int deadline_ms,
            struct gc_result *r)
{
    Buffdb__Index__CreateIndexRequest m =
        BUFFDB__INDEX__CREATE_INDEX_REQUEST__INIT;
    Buffdb__Index__IndexSpec is = BUFFDB__INDEX__INDEX_SPEC__INIT;

    is.name = kc_str(sp->name);
    is.type = (Buffdb__Index__IndexType)sp->type;
    is.unique = sp->unique != 0;
    is.key_prefix = kc_str(sp->prefix);
    is.json_path = kc_str(sp->path);
    is.value_type = (Buffdb__Index__ValueType)sp->vtype;
    m.spec = &is;
    kc_call1(c, IX_CREATE, &m.base, deadline_ms, r);
}

/* ix_create_ok - CreateIndex, asserting OK; returns indexed_keys */
static uint64_t
ix_create_ok(struct gc_conn *c, const struct spec *sp, int deadline_ms)
{
    struct gc_result r;
    char what[200];

    snprintf(what, sizeof(what), "CreateIndex %s", sp->name);
    ix_create_r(c, sp, deadline_ms, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, what);
    cr_assert_eq(r.n, 1, "%s: %zu responses", what, r.n);
    Buffdb__Index__CreateIndexResponse *m =
        buffdb__index__create_index_response__unpack(NULL, r.msgs[0].len,
                                                     r.msgs[0].data);
    cr_assert_not_null(m, "%s: undecodable CreateIndexResponse", what);
    uint64_t n = m->indexed_keys;
    buffdb__index__create_index_response__free_unpacked(m, NULL);
    gc_result_free(&r);
    return n;
}

/* ix_create_fail - CreateIndex answered code with details naming needle */
static void
ix_create_fail(struct gc_conn *c, const struct spec *sp, grpc_status_code code,
               const char *needle)
{
    struct gc_result r;
    char what[200];

    snprintf(what, sizeof(what), "CreateIndex \"%s\" (type %d, vtype %d, "
             "path \"%s\")", sp->name, sp->type, sp->vtype, sp->path);
    ix_create_r(c, sp, KC_DEADLINE_MS, &r);
    kc_expect_fail(&r, code, needle, what);
    gc_result_free(&r);
}

static void
ix_drop_r(struct gc_conn *c, const char *name, struct gc_result *r)
{
    Buffdb__Index__DropIndexRequest m = BUFFDB__INDEX__DROP_INDEX_REQUEST__INIT;
    m.name = kc_str(name);
    kc_call1(c, IX_DROP, &m.base, KC_DEADLINE_MS, r);
}

/* ix_list - ListIndexes, asserting OK; free with
 * buffdb__index__list_indexes_response__free_unpacked */
static Buffdb__Index__ListIndexesResponse *
ix_list(struct gc_conn *c)
{
    Buffdb__Index__ListIndexesRequest m =
        BUFFDB__INDEX__LIST_INDEXES_REQUEST__INIT;
    struct gc_result r;

    kc_call1(c, IX_LIST, &m.base, KC_DEADLINE_MS, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "ListIndexes");
    cr_assert_eq(r.n, 1, "ListIndexes: %zu responses", r.n);
    Buffdb__Index__ListIndexesResponse *l =
        buffdb__index__list_indexes_response__unpack(NULL, r.msgs[0].len,
                                                     r.msgs[0].data);
    cr_assert_not_null(l, "undecodable ListIndexesResponse");
    gc_result_free(&r);
    return l;
}

/* expect_list - ListIndexes answers exactly want[0..n) in that order */
static void
expect_list(struct gc_conn *c, const struct spec *want, size_t n)
{
    Buffdb__Index__ListIndexesResponse *l = ix_list(c);

    cr_assert_eq(l->n_indexes, n, "ListIndexes: %zu indexes, expected %zu",
                 l->n_indexes, n);
    for (size_t i = 0; i < n; i++) {
        const Buffdb__Index__IndexSpec *g = l->indexes[i];
        const struct spec *w = &want[i];
        char what[200];
        snprintf(what, sizeof(what), "ListIndexes[%zu] (%s)", i, w->name);
        kc_expect_bytes(g->name, w->name, strlen(w->name), what);
        cr_assert_eq((int)g->type, w->type, "%s: type %d, expected %d", what,
                     (int)g->type, w->type);
        cr_assert_eq(g->unique != 0, w->unique != 0, "%s: unique %d", what,
                     (int)g->unique);
        kc_expect_bytes(g->key_prefix, w->prefix, strlen(w->prefix), what);
        kc_expect_bytes(g->json_path, w->path, strlen(w->path), what);
        cr_assert_eq((int)g->value_type, w->vtype, "%s: value_type %d, "
                     "expected %d", what, (int)g->value_type, w->vtype);
    }
    buffdb__index__list_indexes_response__free_unpacked(l, NULL);
}

static void
lookup_r(struct gc_conn *c, const char *name, const char *value,
         uint32_t limit, struct gc_result *r)
{
    Buffdb__Index__LookupRequest m = BUFFDB__INDEX__LOOKUP_REQUEST__INIT;
    m.name = kc_str(name);
    m.value = kc_str(value);
    m.limit = limit;
    kc_call1(c, IX_LOOKUP, &m.base, KC_DEADLINE_MS, r);
}

/* range_r - Range; lo / hi NULL: that bound absent */
static void
range_r(struct gc_conn *c, const char *name, const char *lo, const char *hi,
        uint32_t limit, int deadline_ms, struct gc_result *r)
{
    Buffdb__Index__RangeRequest m = BUFFDB__INDEX__RANGE_REQUEST__INIT;
    m.name = kc_str(name);
    if (lo != NULL) {
        m._lower_case = BUFFDB__INDEX__RANGE_REQUEST___LOWER_LOWER;
        m.lower = kc_str(lo);
    }
    if (hi != NULL) {
        m._upper_case = BUFFDB__INDEX__RANGE_REQUEST___UPPER_UPPER;
        m.upper = kc_str(hi);
    }
    m.limit = limit;
    kc_call1(c, IX_RANGE, &m.base, deadline_ms, r);
}

/* ents - decoded IndexEntry stream: keys and values as C strings */
struct ents {
    size_t n;
    char **k;
    char **v;
};

static void
ents_free(struct ents *e)
{
    for (size_t i = 0; i < e->n; i++) {
        free(e->k[i]);
        free(e->v[i]);
    }
    free(e->k);
    free(e->v);
    memset(e, 0, sizeof(*e));
}

/* ents_decode - the IndexEntry responses of r; 0, or -1 if one does not
 * decode (no assertions: usable from any thread) */
static int
ents_decode(const struct gc_result *r, struct ents *e)
{
    memset(e, 0, sizeof(*e));
    e->k = calloc(r->n ? r->n : 1, sizeof(char *));
    e->v = calloc(r->n ? r->n : 1, sizeof(char *));
    if (e->k == NULL || e->v == NULL)
        return -1;
    for (size_t i = 0; i < r->n; i++) {
        Buffdb__Index__IndexEntry *m = buffdb__index__index_entry__unpack(
            NULL, r->msgs[i].len, r->msgs[i].data);
        if (m == NULL)
            return -1;
        e->k[i] = kc_dupn(m->key.data, m->key.len);
        e->v[i] = kc_dupn(m->value.data, m->value.len);
        e->n = i + 1;
        buffdb__index__index_entry__free_unpacked(m, NULL);
        if (e->k[i] == NULL || e->v[i] == NULL)
            return -1;
    }
    return 0;
}

/* lookup - Lookup, asserting OK; the entries into e */
static void
lookup(struct gc_conn *c, const char *name, const char *value, uint32_t limit,
       struct ents *e)
{
    struct gc_result r;
    char what[200];

    snprintf(what, sizeof(what), "Lookup %s = \"%s\"", name, value);
    lookup_r(c, name, value, limit, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, what);
    cr_assert_eq(ents_decode(&r, e), 0, "%s: undecodable IndexEntry", what);
    gc_result_free(&r);
}

static void
range(struct gc_conn *c, const char *name, const char *lo, const char *hi,
      uint32_t limit, struct ents *e)
{
    struct gc_result r;
    char what[200];

    snprintf(what, sizeof(what), "Range %s [%s, %s]", name, lo ? lo : "open",
             hi ? hi : "open");
    range_r(c, name, lo, hi, limit, KC_DEADLINE_MS, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, what);
    cr_assert_eq(ents_decode(&r, e), 0, "%s: undecodable IndexEntry", what);
    gc_result_free(&r);
}

/* ents_str - "k1, k2, ..." for messages (static buffer) */
static const char *
ents_str(const struct ents *e)
{
    static char buf[2048];
    size_t off = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < e->n && off < sizeof(buf) - 1; i++)
        off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s%s",
                                i ? ", " : "", e->k[i]);
    return buf;
}

/* expect_ents - e holds exactly the keys keys[0..n) in order, and, when
 * vals is not NULL, their values vals[i] */
static void
expect_ents(const struct ents *e, const char *const *keys,
            const char *const *vals, size_t n, const char *what)
{
    cr_assert_eq(e->n, n, "%s: %zu entries (%s), expected %zu", what, e->n,
                 ents_str(e), n);
    for (size_t i = 0; i < n; i++) {
        cr_assert_str_eq(e->k[i], keys[i], "%s: entry %zu is \"%s\", "
                         "expected \"%s\" (all: %s)", what, i, e->k[i],
                         keys[i], ents_str(e));
        if (vals != NULL)
            cr_assert_str_eq(e->v[i], vals[i], "%s: value of %s is \"%s\", "
                             "expected \"%s\"", what, keys[i], e->v[i],
                             vals[i]);
    }
}

/* expect_lookup - Lookup name = value gives exactly keys (key order) */
static void
expect_lookup(struct gc_conn *c, const char *name, const char *value,
              const char *const *keys, const char *const *vals, size_t n)
{
    struct ents e;
    char what[200];

    snprintf(what, sizeof(what), "Lookup %s = \"%s\"", name, value);
    lookup(c, name, value, 0, &e);
    expect_ents(&e, keys, vals, n, what);
    ents_free(&e);
}

/* expect_lookup_fail / expect_range_fail - the call answered code with
 * details naming needle and no entry */
static void
expect_lookup_fail(struct gc_conn *c, const char *name, const char *value,
                   grpc_status_code code, const char *needle)
{
    struct gc_result r;
    char what[200];

    snprintf(what, sizeof(what), "Lookup %s = \"%s\"", name, value);
    lookup_r(c, name, value, 0, &r);
    kc_expect_fail(&r, code, needle, what);
    gc_result_free(&r);
}

static void
expect_range_fail(struct gc_conn *c, const char *name, const char *lo,
                  const char *hi, grpc_status_code code, const char *needle)
{
    struct gc_result r;
    char what[200];

    snprintf(what, sizeof(what), "Range %s [%s, %s]", name, lo ? lo : "open",
             hi ? hi : "open");
    range_r(c, name, lo, hi, 0, KC_DEADLINE_MS, &r);
    kc_expect_fail(&r, code, needle, what);
    gc_result_free(&r);
}

/* ents_equal - same keys and values in the same order */
static void
expect_same_ents(const struct ents *a, const struct ents *b, const char *what)
{
    expect_ents(b, (const char *const *)a->k, (const char *const *)a->v, a->n,
                what);
}

/* ---- model registry data ------------------------------------------------ */

static const char *const FW[] = {"pytorch", "onnx", "tensorflow"};
#define NFW 3

/* model_json - ModelInfo-like metadata of a model */
static void
model_json(char *out, size_t cap, const char *name, int version,
           const char *framework)
{
    snprintf(out, cap, "{\"name\":\"%s\",\"version\":%d,\"framework\":\"%s\","
             "\"description\":\"model %s v%d\",\"metrics\":{\"accuracy\":0.9"
             "},\"tags\":[\"a\",\"b\"]}", name, version, framework, name,
             version);
}

static void
model_key(char *out, size_t cap, const char *name, int version)
{
    snprintf(out, cap, "model:%s:%d:metadata", name, version);
}

static const struct spec by_framework = {"by_framework", HASH, 0, "model:",
                                         "$.framework", VT_STRING};

/* ============================================================================
 * Every RPC and its statuses
 * ========================================================================== */

Test(index, create_drop_list_lookup_range_and_their_statuses)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    struct gc_result r;
    struct ents e;

    /* p:1..p:5 are indexed by both; p:bad (not JSON) and p:nofield by
     * neither; q:x only by the prefix-less by_tag */
    static const char *const keys[] = {"p:1", "p:2", "p:3", "p:4", "p:5",
                                       "p:bad", "p:nofield", "q:x"};
    static const char *const vals[] = {
        "{\"n\":30,\"tag\":\"red\"}",  "{\"n\":10,\"tag\":\"blue\"}",
        "{\"n\":20,\"tag\":\"red\"}",  "{\"n\":10,\"tag\":\"red\"}",
        "{\"n\":-5,\"tag\":\"green\"}", "not json {",
        "{\"m\":1}",                   "{\"n\":7,\"tag\":\"red\"}"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        kc_kv_set_ok(c, NULL, keys[i], vals[i]);

    const struct spec by_n = {"by_n", BTREE, 0, "p:", "$.n", VT_INTEGER};
    const struct spec by_tag = {"by_tag", HASH, 0, "", "$.tag", VT_STRING};
    const struct spec whole = {"q.whole-value:1", HASH, 1, "q:", "",
                               VT_STRING};
    cr_assert_eq(ix_create_ok(c, &by_n, KC_DEADLINE_MS), 5);
    cr_assert_eq(ix_create_ok(c, &by_tag, KC_DEADLINE_MS), 6);
    cr_assert_eq(ix_create_ok(c, &whole, KC_DEADLINE_MS), 1);

    /* CreateIndex refusals: nothing is created by any of them */
    struct spec bad = by_tag;
    ix_create_fail(c, &bad, GRPC_STATUS_ALREADY_EXISTS, "by_tag");
    bad.name = "";
    ix_create_fail(c, &bad, GRPC_STATUS_INVALID_ARGUMENT, "name");
    bad.name = "bad name!";
    ix_create_fail(c, &bad, GRPC_STATUS_INVALID_ARGUMENT, "name");
    bad = by_tag;
    bad.name = "bad_path";
    bad.path = "x";
    ix_create_fail(c, &bad, GRPC_STATUS_INVALID_ARGUMENT, "\"x\"");
    bad.path = "$.[";
    ix_create_fail(c, &bad, GRPC_STATUS_INVALID_ARGUMENT, "JSON path");
    bad = by_tag;
    bad.name = "bad_type";
    bad.type = 5;
    ix_create_fail(c, &bad, GRPC_STATUS_INVALID_ARGUMENT, "type 5");
    bad = by_tag;
    bad.name = "bad_vtype";
    bad.vtype = 5;
    ix_create_fail(c, &bad, GRPC_STATUS_INVALID_ARGUMENT, "value type 5");
    /* unique over data that already repeats a value ("red" 4 times) */
    bad = by_tag;
    bad.name = "uniq_tag";
    bad.unique = 1;
    ix_create_fail(c, &bad, GRPC_STATUS_FAILED_PRECONDITION, "");
    /* no spec at all */
    Buffdb__Index__CreateIndexRequest nospec =
        BUFFDB__INDEX__CREATE_INDEX_REQUEST__INIT;
    kc_call1(c, IX_CREATE, &nospec.base, KC_DEADLINE_MS, &r);
    kc_expect_fail(&r, GRPC_STATUS_INVALID_ARGUMENT, "spec",
                   "CreateIndex without spec");
    gc_result_free(&r);

    /* ListIndexes: exactly the three, by name, as given */
    const struct spec all3[] = {by_n, by_tag, whole};
    expect_list(c, all3, 3);

    /* Lookup: key order, current values, limit */
    static const char *const red_k[] = {"p:1", "p:3", "p:4", "q:x"};
    const char *const red_v[] = {vals[0], vals[2], vals[3], vals[7]};
    expect_lookup(c, "by_tag", "red", red_k, red_v, 4);
    lookup(c, "by_tag", "red", 2, &e);
    expect_ents(&e, red_k, red_v, 2, "Lookup by_tag = red, limit 2");
    ents_free(&e);
    expect_lookup(c, "by_tag", "purple", NULL, NULL, 0);
    static const char *const ten_k[] = {"p:2", "p:4"};
    const char *const ten_v[] = {vals[1], vals[3]};
    expect_lookup(c, "by_n", "10", ten_k, ten_v, 2);
    expect_lookup(c, "by_n", "-5", (const char *const[]){"p:5"}, NULL, 1);
    expect_lookup(c, "by_n", "7", NULL, NULL, 0); /* q:x: not the prefix */
    expect_lookup(c, "q.whole-value:1", vals[7], (const char *const[]){"q:x"},
                  (const char *const[]){vals[7]}, 1);
    expect_lookup_fail(c, "no_such_index", "red", GRPC_STATUS_NOT_FOUND,
                       "no_such_index");
    expect_lookup_fail(c, "by_n", "abc", GRPC_STATUS_INVALID_ARGUMENT, "abc");

    /* Range: value order (then key order), inclusive bounds, open bounds */
    static const char *const all_k[] = {"p:5", "p:2", "p:4", "p:3", "p:1"};
    const char *const all_v[] = {vals[4], vals[1], vals[3], vals[2], vals[0]};
    range(c, "by_n", "10", "30", 0, &e);
    expect_ents(&e, all_k + 1, all_v + 1, 4, "Range by_n [10, 30]");
    ents_free(&e);
    range(c, "by_n", "11", "29", 0, &e);
    expect_ents(&e, (const char *const[]){"p:3"}, NULL, 1,
                "Range by_n [11, 29]");
    ents_free(&e);
    range(c, "by_n", "20", NULL, 0, &e);
    expect_ents(&e, all_k + 3, all_v + 3, 2, "Range by_n [20, open]");
    ents_free(&e);
    range(c, "by_n", NULL, "10", 0, &e);
    expect_ents(&e, all_k, all_v, 3, "Range by_n [open, 10]");
    ents_free(&e);
    range(c, "by_n", NULL, NULL, 0, &e);
    expect_ents(&e, all_k, all_v, 5, "Range by_n [open, open]");
    ents_free(&e);
    range(c, "by_n", NULL, NULL, 2, &e);
    expect_ents(&e, all_k, all_v, 2, "Range by_n [open, open] limit 2");
    ents_free(&e);
    range(c, "by_n", "21", "29", 0, &e);
    expect_ents(&e, NULL, NULL, 0, "Range by_n [21, 29]");
    ents_free(&e);
    range(c, "by_n", "30", "10", 0, &e);
    expect_ents(&e, NULL, NULL, 0, "Range by_n [30, 10]");
    ents_free(&e);
    expect_range_fail(c, "by_tag", "a", "z", GRPC_STATUS_FAILED_PRECONDITION,
                      "");
    expect_range_fail(c, "no_such_index", NULL, NULL, GRPC_STATUS_NOT_FOUND,
                      "no_such_index");
    expect_range_fail(c, "by_n", "abc", NULL, GRPC_STATUS_INVALID_ARGUMENT,
                      "abc");

    /* DropIndex: OK, then NOT_FOUND; the index is gone everywhere */
    ix_drop_r(c, "by_tag", &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "DropIndex by_tag");
    cr_assert_eq(r.n, 1, "DropIndex: %zu responses", r.n);
    gc_result_free(&r);
    ix_drop_r(c, "by_tag", &r);
    kc_expect_fail(&r, GRPC_STATUS_NOT_FOUND, "by_tag", "second DropIndex");
    gc_result_free(&r);
    expect_lookup_fail(c, "by_tag", "red", GRPC_STATUS_NOT_FOUND, "by_tag");
    const struct spec two[] = {by_n, whole};
    expect_list(c, two, 2);
    /* the name is free again, and the new index starts from the data */
    cr_assert_eq(ix_create_ok(c, &by_tag, KC_DEADLINE_MS), 6);
    expect_lookup(c, "by_tag", "red", red_k, red_v, 4);
    /* writes still work with the remaining indexes */
    kc_kv_set_ok(c, NULL, "p:6", "{\"n\":10,\"tag\":\"red\"}");
    lookup(c, "by_n", "10", 0, &e);
    expect_ents(&e, (const char *const[]){"p:2", "p:4", "p:6"}, NULL, 3,
                "Lookup by_n = 10 after a Set");
    ents_free(&e);

    gc_close(c);
    ts_stop_ok(s);
}

/* ============================================================================
 * The model registry
 * ========================================================================== */

#define ML_MODELS 12

Test(index, model_registry_by_framework)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    char k[128], v[512];
    char *keys[NFW][ML_MODELS * 2], *values[NFW][ML_MODELS * 2];
    size_t nk[NFW] = {0};

    /* ML_MODELS models of two versions each, frameworks mixed */
    for (int m = 0; m < ML_MODELS; m++)
        for (int ver = 1; ver <= 2; ver++) {
            char name[32];
            snprintf(name, sizeof(name), "net%02d", m);
            int f = (m + ver) % NFW;
            model_key(k, sizeof(k), name, ver);
            model_json(v, sizeof(v), name, ver, FW[f]);
            kc_kv_set_ok(c, NULL, k, v);
            keys[f][nk[f]] = strdup(k);
            values[f][nk[f]] = strdup(v);
            nk[f]++;
        }
    /* unrelated keys: other prefixes, not JSON, no framework */
    kc_kv_set_ok(c, NULL, "user:1", "{\"framework\":\"pytorch\"}");
    kc_kv_set_ok(c, NULL, "Model:x:1:metadata", "{\"framework\":\"pytorch\"}");
    kc_kv_set_ok(c, NULL, "model:count", "42");
    kc_kv_set_ok(c, NULL, "model:net00:1:weights", "\x01\x02 binary-ish");
    kc_kv_set_ok(c, NULL, "model:net00:1:notes", "{\"author\":\"x\"}");
    kc_kv_set_ok(c, NULL, "config:default", "{\"framework\":\"onnx\"}");
    kc_kv_set_ok(c, NULL, "model:list", "[\"pytorch\"]");

    cr_assert_eq(ix_create_ok(c, &by_framework, KC_DEADLINE_MS),
                 (uint64_t)ML_MODELS * 2);
    for (int f = 0; f < NFW; f++) {
        qsort(keys[f], nk[f], sizeof(char *), cmp_str);
        /* values follow their keys: recompute them in key order */
        for (size_t i = 0; i < nk[f]; i++) {
            char name[32];
            int ver;
            cr_assert_eq(sscanf(keys[f][i], "model:%31[^:]:%d:metadata", name,
                                &ver), 2);
            free(values[f][i]);
            model_json(v, sizeof(v), name, ver, FW[f]);
            values[f][i] = strdup(v);
        }
        expect_lookup(c, "by_framework", FW[f], (const char *const *)keys[f],
                      (const char *const *)values[f], nk[f]);
    }
    cr_assert_eq(nk[0] + nk[1] + nk[2], ML_MODELS * 2);
    cr_assert_gt(nk[0], 0);
    expect_lookup(c, "by_framework", "jax", NULL, NULL, 0);
    expect_lookup(c, "by_framework", "PyTorch", NULL, NULL, 0);

    for (int f = 0; f < NFW; f++)
        for (size_t i = 0; i < nk[f]; i++) {
            free(keys[f][i]);
            free(values[f][i]);
        }
    gc_close(c);
    ts_stop_ok(s);
}

/* ============================================================================
 * Every way of writing keeps the index true
 * ========================================================================== */

Test(index, set_delete_sql_and_transactions_update_the_index)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s), *c2 = kc_conn_to(s);
    char a[512], b[512], x[512];

    model_json(a, sizeof(a), "a", 1, "pytorch");
    model_json(b, sizeof(b), "b", 1, "onnx");
    kc_kv_set_ok(c, NULL, "model:a:1:metadata", a);
    kc_kv_set_ok(c, NULL, "model:b:1:metadata", b);
    cr_assert_eq(ix_create_ok(c, &by_framework, KC_DEADLINE_MS), 2);

    /* a Set after the index exists adds an entry */
    model_json(x, sizeof(x), "c", 1, "pytorch");
    kc_kv_set_ok(c, NULL, "model:c:1:metadata", x);
    expect_lookup(c2, "by_framework", "pytorch",
                  (const char *const[]){"model:a:1:metadata",
                                        "model:c:1:metadata"},
                  (const char *const[]){a, x}, 2);

    /* a Set overwriting a key moves its entry */
    model_json(a, sizeof(a), "a", 1, "onnx");
    kc_kv_set_ok(c, NULL, "model:a:1:metadata", a);
    expect_lookup(c2, "by_framework", "pytorch",
                  (const char *const[]){"model:c:1:metadata"}, NULL, 1);
    expect_lookup(c2, "by_framework", "onnx",
                  (const char *const[]){"model:a:1:metadata",
                                        "model:b:1:metadata"},
                  (const char *const[]){a, b}, 2);
    /* and a value without the field, or not JSON, removes it */
    kc_kv_set_ok(c, NULL, "model:c:1:metadata", "{\"name\":\"c\"}");
    expect_lookup(c2, "by_framework", "pytorch", NULL, NULL, 0);
    kc_kv_set_ok(c, NULL, "model:c:1:metadata", x);
    kc_kv_set_ok(c, NULL, "model:b:1:metadata", "garbage");
    expect_lookup(c2, "by_framework", "onnx",
                  (const char *const[]){"model:a:1:metadata"}, NULL, 1);
    kc_kv_set_ok(c, NULL, "model:b:1:metadata", b);

    /* a Delete removes it */
    kc_kv_del_ok(c, NULL, "model:c:1:metadata");
    expect_lookup(c2, "by_framework", "pytorch", NULL, NULL, 0);

    /* raw SQL through Query/Execute: INSERT, UPDATE, DELETE */
    execute_ok(c, "INSERT INTO kv(key, value) VALUES "
                  "('model:s1:1:metadata', '{\"framework\":\"pytorch\"}'), "
                  "('model:s2:1:metadata', '{\"framework\":\"pytorch\"}'), "
                  "('other:s3', '{\"framework\":\"pytorch\"}')",
               3);
    expect_lookup(c2, "by_framework", "pytorch",
                  (const char *const[]){"model:s1:1:metadata",
                                        "model:s2:1:metadata"},
                  (const char *const[]){"{\"framework\":\"pytorch\"}",
                                        "{\"framework\":\"pytorch\"}"},
                  2);
    execute_ok(c, "UPDATE kv SET value = json_set(value, '$.framework', "
                  "'tensorflow') WHERE key = 'model:s1:1:metadata'",
               1);
    expect_lookup(c2, "by_framework", "pytorch",
                  (const char *const[]){"model:s2:1:metadata"}, NULL, 1);
    expect_lookup(c2, "by_framework", "tensorflow",
                  (const char *const[]){"model:s1:1:metadata"},
                  (const char *const[]){"{\"framework\":\"tensorflow\"}"}, 1);
    execute_ok(c, "DELETE FROM kv WHERE key IN ('model:s1:1:metadata', "
                  "'model:s2:1:metadata')",
               2);
    expect_lookup(c2, "by_framework", "pytorch", NULL, NULL, 0);
    expect_lookup(c2, "by_framework", "tensorflow", NULL, NULL, 0);

    /* a transaction: nothing shows before the commit, all of it after */
    char *t = txn_begin(c);
    model_json(x, sizeof(x), "t", 1, "pytorch");
    kc_kv_set_ok(c, t, "model:t:1:metadata", x);
    model_json(a, sizeof(a), "a", 1, "pytorch");
    kc_kv_set_ok(c, t, "model:a:1:metadata", a);
    kc_kv_del_ok(c, t, "model:b:1:metadata");
    expect_lookup(c2, "by_framework", "pytorch", NULL, NULL, 0);
    expect_lookup(c, "by_framework", "pytorch", NULL, NULL, 0);
    expect_lookup(c2, "by_framework", "onnx",
                  (const char *const[]){"model:a:1:metadata",
                                        "model:b:1:metadata"},
                  NULL, 2);
    txn_end_ok(c, t, 1);
    free(t);
    expect_lookup(c2, "by_framework", "pytorch",
                  (const char *const[]){"model:a:1:metadata",
                                        "model:t:1:metadata"},
                  (const char *const[]){a, x}, 2);
    expect_lookup(c2, "by_framework", "onnx", NULL, NULL, 0);

    /* a rolled-back transaction never shows */
    t = txn_begin(c);
    model_json(b, sizeof(b), "r", 1, "onnx");
    kc_kv_set_ok(c, t, "model:r:1:metadata", b);
    kc_kv_set_ok(c, t, "model:t:1:metadata", b);
    kc_kv_del_ok(c, t, "model:a:1:metadata");
    txn_end_ok(c, t, 0);
    free(t);
    expect_lookup(c2, "by_framework", "onnx", NULL, NULL, 0);
    expect_lookup(c2, "by_framework", "pytorch",
                  (const char *const[]){"model:a:1:metadata",
                                        "model:t:1:metadata"},
                  (const char *const[]){a, x}, 2);
    kc_kv_expect(c2, NULL, "model:t:1:metadata", x);

    gc_close(c);
    gc_close(c2);
    ts_stop_ok(s);
}

/* ============================================================================
 * Unique indexes
 * ========================================================================== */

Test(index, unique_refuses_a_taken_value_and_changes_nothing)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s), *c2 = kc_conn_to(s);
    struct gc_result r;
    const struct spec by_email = {"by_email", HASH, 1, "user:", "$.email",
                                  VT_STRING};
    const char *u1 = "{\"name\":\"ann\",\"email\":\"ann@example.com\"}";
    const char *u2 = "{\"name\":\"bob\",\"email\":\"bob@example.com\"}";
    const char *steal = "{\"name\":\"bob\",\"email\":\"ann@example.com\"}";

    kc_kv_set_ok(c, NULL, "user:1", u1);
    kc_kv_set_ok(c, NULL, "user:2", u2);
    cr_assert_eq(ix_create_ok(c, &by_email, KC_DEADLINE_MS), 2);

    kc_kv_set_r(c, NULL, "user:2", steal, KC_DEADLINE_MS, &r);
    kc_expect_status(&r, GRPC_STATUS_ALREADY_EXISTS, "Set user:2 to a taken "
                     "email");
    cr_assert_eq(r.n, 0);
    cr_assert(strstr(r.details, "by_email") != NULL, "details \"%s\" do not "
              "name the index", r.details);
    cr_assert(strstr(r.details, "ann@example.com") != NULL, "details \"%s\" "
              "do not name the value", r.details);
    cr_log_info("unique conflict: %s", r.details);
    gc_result_free(&r);
    /* nothing changed: the refused key keeps its value, the holder too */
    kc_kv_expect(c2, NULL, "user:2", u2);
    kc_kv_expect(c2, NULL, "user:1", u1);
    expect_lookup(c2, "by_email", "ann@example.com",
                  (const char *const[]){"user:1"}, (const char *const[]){u1},
                  1);
    expect_lookup(c2, "by_email", "bob@example.com",
                  (const char *const[]){"user:2"}, (const char *const[]){u2},
                  1);
    /* a new key taking the value is refused too, and not created */
    kc_kv_set_r(c, NULL, "user:3", steal, KC_DEADLINE_MS, &r);
    kc_expect_status(&r, GRPC_STATUS_ALREADY_EXISTS, "Set user:3 to a taken "
                     "email");
    gc_result_free(&r);
    cr_assert_null(kc_kv_value(c2, "user:3"), "the refused user:3 exists");
    /* raw SQL is refused the same way */
    kc_execute_r(c, "UPDATE kv SET value = '{\"email\":\"ann@example.com\"}' "
                    "WHERE key = 'user:2'", BUFFDB__QUERY__TARGET_STORE__KV,
                 &r);
    kc_expect_status(&r, GRPC_STATUS_ALREADY_EXISTS,
                     "Execute UPDATE to a taken email");
    gc_result_free(&r);
    kc_kv_expect(c2, NULL, "user:2", u2);
    /* the holder may rewrite its own value; keys outside the prefix and
     * values without the field are not constrained */
    kc_kv_set_ok(c, NULL, "user:1", u1);
    kc_kv_set_ok(c, NULL, "admin:1", steal);
    kc_kv_set_ok(c, NULL, "user:4", "{\"name\":\"no email\"}");
    kc_kv_set_ok(c, NULL, "user:5", "{\"name\":\"no email either\"}");
    /* a transaction giving a taken value to a second key: its commit is
     * refused, naming the index, and nothing of it is applied */
    char err[512];
    char *t = txn_begin(c);
    kc_kv_set_ok(c, t, "user:6", "{\"email\":\"new@example.com\"}");
    kc_kv_set_ok(c, t, "user:2", steal);
    cr_assert(!kc_txn_end(c, t, 1, err, sizeof(err)),
              "a commit breaking unique succeeded");
    cr_assert(strstr(err, "by_email") != NULL, "commit error \"%s\" does not "
              "name the index", err);
    free(t);
    cr_assert_null(kc_kv_value(c2, "user:6"), "user:6 of a refused commit "
                   "exists");
    kc_kv_expect(c2, NULL, "user:2", u2);
    expect_lookup(c2, "by_email", "new@example.com", NULL, NULL, 0);
    /* a transaction swapping two values commits: unique holds at its end */
    const char *u1b = "{\"name\":\"ann\",\"email\":\"bob@example.com\"}";
    const char *u2a = "{\"name\":\"bob\",\"email\":\"ann@example.com\"}";
    t = txn_begin(c);
    kc_kv_set_ok(c, t, "user:1", u1b);
    kc_kv_set_ok(c, t, "user:2", u2a);
    txn_end_ok(c, t, 1);
    free(t);
    expect_lookup(c2, "by_email", "ann@example.com",
                  (const char *const[]){"user:2"},
                  (const char *const[]){u2a}, 1);
    expect_lookup(c2, "by_email", "bob@example.com",
                  (const char *const[]){"user:1"},
                  (const char *const[]){u1b}, 1);
    /* and back, Delete and Set in one transaction this time */
    t = txn_begin(c);
    kc_kv_del_ok(c, t, "user:2");
    kc_kv_set_ok(c, t, "user:1", u1);
    kc_kv_set_ok(c, t, "user:2", u2);
    txn_end_ok(c, t, 1);
    free(t);
    kc_kv_expect(c2, NULL, "user:1", u1);
    kc_kv_expect(c2, NULL, "user:2", u2);

    /* once released, the value can be taken */
    kc_kv_del_ok(c, NULL, "user:1");
    kc_kv_set_ok(c, NULL, "user:2", steal);
    expect_lookup(c2, "by_email", "ann@example.com",
                  (const char *const[]){"user:2"},
                  (const char *const[]){steal}, 1);
    expect_lookup(c2, "by_email", "bob@example.com", NULL, NULL, 0);

    gc_close(c);
    gc_close(c2);
    ts_stop_ok(s);
}

#define RACE_ROUNDS 100

struct racer {
    struct gc_conn *c;
    const char *side;            /* "a" or "b" */
    pthread_barrier_t *barrier;
    grpc_status_code code[RACE_ROUNDS];
    pid_t pid[RACE_ROUNDS];
    char details[RACE_ROUNDS][160];
};

static void *
racer_main(void *arg)
{
    struct racer *R = arg;
    long until = ts_now_ms() + 90000;

    for (int i = 0; i < RACE_ROUNDS; i++) {
        char k[32], v[32];
        struct gc_result r;
        snprintf(k, sizeof(k), "race-%03d-%s", i, R->side);
        snprintf(v, sizeof(v), "v%d", i);
        /* both threads run every round (so the barrier never waits for a
         * thread that left); past the time bound the Set is skipped */
        pthread_barrier_wait(R->barrier);
        if (ts_now_ms() > until) {
            R->code[i] = GRPC_STATUS_DEADLINE_EXCEEDED;
            snprintf(R->details[i], sizeof(R->details[i]), "not run: the "
                     "race took too long");
            continue;
        }
        kc_kv_set_r(R->c, NULL, k, v, KC_DEADLINE_MS, &r);
        R->code[i] = r.code;
        R->pid[i] = r.worker_pid;
        snprintf(R->details[i], sizeof(R->details[i]), "%s", r.details);
        gc_result_free(&r);
    }
    return NULL;
}

Test(index, unique_race_between_two_workers_has_one_winner_per_round)
{
    struct ts_server *s = ts_start(NULL);
    const struct spec uniq = {"race_uniq", BTREE, 1, "race-", "", VT_STRING};
    pid_t pa, pb;
    struct gc_conn *ca = kc_conn_probe(s, KC_DEADLINE_MS, &pa);
    cr_assert_neq(pa, 0, "the first connection's probe failed");
    struct gc_conn *cb = kc_conn_find(s, pa, KC_OTHER, KC_DEADLINE_MS, &pb);
    cr_assert_eq(ix_create_ok(ca, &uniq, KC_DEADLINE_MS), 0);

    pthread_barrier_t bar;
    struct racer *A = calloc(1, sizeof(*A)), *B = calloc(1, sizeof(*B));
    cr_assert(A && B);
    cr_assert_eq(pthread_barrier_init(&bar, NULL, 2), 0);
    A->c = ca;
    A->side = "a";
    A->barrier = &bar;
    B->c = cb;
    B->side = "b";
    B->barrier = &bar;
    pthread_t ta, tb;
    cr_assert_eq(pthread_create(&ta, NULL, racer_main, A), 0);
    cr_assert_eq(pthread_create(&tb, NULL, racer_main, B), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    pthread_barrier_destroy(&bar);

    int wins_a = 0;
    for (int i = 0; i < RACE_ROUNDS; i++) {
        cr_assert_eq(A->pid[i], pa, "round %d: a was served by %ld, not %ld",
                     i, (long)A->pid[i], (long)pa);
        cr_assert_eq(B->pid[i], pb, "round %d: b was served by %ld, not %ld",
                     i, (long)B->pid[i], (long)pb);
        int ok_a = A->code[i] == GRPC_STATUS_OK;
        int ok_b = B->code[i] == GRPC_STATUS_OK;
        cr_assert(ok_a + ok_b == 1 &&
                      (ok_a || A->code[i] == GRPC_STATUS_ALREADY_EXISTS) &&
                      (ok_b || B->code[i] == GRPC_STATUS_ALREADY_EXISTS),
                  "round %d: a %s (\"%s\"), b %s (\"%s\"); expected one OK "
                  "and one ALREADY_EXISTS", i, gc_status_name(A->code[i]),
                  A->details[i], gc_status_name(B->code[i]), B->details[i]);
        struct racer *loser = ok_a ? B : A;
        cr_assert(strstr(loser->details[i], "race_uniq") != NULL,
                  "round %d: ALREADY_EXISTS details \"%s\" do not name the "
                  "index", i, loser->details[i]);
        wins_a += ok_a;
    }
    cr_log_info("unique race: workers %ld and %ld, a won %d of %d rounds",
                (long)pa, (long)pb, wins_a, RACE_ROUNDS);

    /* the index agrees: each round's value is held by its winner alone,
     * and the loser's key was never written */
    struct gc_conn *c = kc_conn_to(s);
    for (int i = 0; i < RACE_ROUNDS; i++) {
        char v[32], kw[32], kl[32];
        int a_won = A->code[i] == GRPC_STATUS_OK;
        snprintf(v, sizeof(v), "v%d", i);
        snprintf(kw, sizeof(kw), "race-%03d-%s", i, a_won ? "a" : "b");
        snprintf(kl, sizeof(kl), "race-%03d-%s", i, a_won ? "b" : "a");
        expect_lookup(c, "race_uniq", v, (const char *const[]){kw},
                      (const char *const[]){v}, 1);
        char *got = kc_kv_value(c, kl);
        cr_assert_null(got, "round %d: the loser %s exists (\"%s\")", i, kl,
                       got ? got : "");
    }
    free(A);
    free(B);
    gc_close(c);
    gc_close(ca);
    gc_close(cb);
    ts_stop_ok(s);
}

/* ============================================================================
 * Restarts
 * ========================================================================== */

/* snapshot - the answers compared across a restart */
struct snapshot {
    struct ents fw[NFW];
    struct ents ver_range, ver_all, ver_one;
};

static void
snapshot_take(struct gc_conn *c, struct snapshot *sn)
{
    for (int f = 0; f < NFW; f++)
        lookup(c, "by_framework", FW[f], 0, &sn->fw[f]);
    range(c, "by_version", "2", "4", 0, &sn->ver_range);
    range(c, "by_version", NULL, NULL, 0, &sn->ver_all);
    lookup(c, "by_version", "3", 0, &sn->ver_one);
}

static void
snapshot_free(struct snapshot *sn)
{
    for (int f = 0; f < NFW; f++)
        ents_free(&sn->fw[f]);
    ents_free(&sn->ver_range);
    ents_free(&sn->ver_all);
    ents_free(&sn->ver_one);
}

Test(index, clean_restart_keeps_definitions_and_entries)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    const struct spec by_version = {"by_version", BTREE, 0, "model:",
                                    "$.version", VT_INTEGER};
    char k[128], v[512], *kv, *blob;

    cr_assert_eq(ix_create_ok(c, &by_framework, KC_DEADLINE_MS), 0);
    cr_assert_eq(ix_create_ok(c, &by_version, KC_DEADLINE_MS), 0);
    for (int m = 0; m < 10; m++)
        for (int ver = 1; ver <= 5; ver++) {
            char name[32];
            snprintf(name, sizeof(name), "r%d", m);
            model_key(k, sizeof(k), name, ver);
            model_json(v, sizeof(v), name, ver, FW[(m * 5 + ver) % NFW]);
            kc_kv_set_ok(c, NULL, k, v);
        }
    kc_kv_del_ok(c, NULL, "model:r0:1:metadata");
    kc_kv_set_ok(c, NULL, "unrelated", "{\"framework\":\"pytorch\"}");

    struct snapshot before = {0}, after = {0};
    snapshot_take(c, &before);
    cr_assert_eq(before.ver_all.n, 49);
    cr_assert_eq(before.ver_range.n, 30);
    cr_assert_eq(before.ver_one.n, 10);
    cr_assert_eq(before.fw[0].n + before.fw[1].n + before.fw[2].n, 49);
    gc_close(c);
    ts_stop_ok(s);

    struct ts_server *s2 = kc_restart(s, &kv, &blob);
    c = kc_conn_to(s2);
    const struct spec both[] = {by_framework, by_version};
    expect_list(c, both, 2);
    snapshot_take(c, &after);
    for (int f = 0; f < NFW; f++)
        expect_same_ents(&before.fw[f], &after.fw[f], FW[f]);
    expect_same_ents(&before.ver_range, &after.ver_range, "versions [2, 4]");
    expect_same_ents(&before.ver_all, &after.ver_all, "every version");
    expect_same_ents(&before.ver_one, &after.ver_one, "version 3");
    cr_assert(!ts_log_has(s2, "index(es) checked"), "a clean stop made the "
              "restart check the indexes:\n%s", ts_tail(s2, 3000));

    /* new writes still update both indexes */
    model_json(v, sizeof(v), "new", 9, "pytorch");
    kc_kv_set_ok(c, NULL, "model:new:9:metadata", v);
    expect_lookup(c, "by_version", "9",
                  (const char *const[]){"model:new:9:metadata"},
                  (const char *const[]){v}, 1);
    struct ents e;
    lookup(c, "by_framework", "pytorch", 0, &e);
    cr_assert_eq(e.n, before.fw[0].n + 1, "pytorch: %zu entries after a new "
                 "Set, expected %zu", e.n, before.fw[0].n + 1);
    ents_free(&e);
    kc_kv_del_ok(c, NULL, "model:r1:3:metadata");
    lookup(c, "by_version", "3", 0, &e);
    cr_assert_eq(e.n, 9, "version 3: %zu entries after a Delete", e.n);
    ents_free(&e);

    snapshot_free(&before);
    snapshot_free(&after);
    gc_close(c);
    ts_stop_ok(s2);
    free(kv);
    free(blob);
}

/* ---- kill -9 during a stream of Sets ------------------------------------ */

#define STREAM_KEYS 40
#define STREAM_MAX 100000

struct streamer {
    const char *addr;
    int acked;                    /* Sets answered (atomic) */
    int stop;                     /* atomic */
    int last_acked[STREAM_KEYS];  /* per key: the last answered write */
    int inflight;                 /* the write sent and not answered, -1 */
    char why[256];
};

/* stream_kv - key and value of write number i: a model's metadata under a
 * rotating framework, every fifth one not JSON (out of the index) */
static void
stream_kv(int i, char *k, size_t kcap, char *v, size_t vcap)
{
    char name[32];

    snprintf(name, sizeof(name), "s%02d", i % STREAM_KEYS);
    model_key(k, kcap, name, 1);
    if (i % 5 == 4)
        snprintf(v, vcap, "raw bytes of write %d", i);
    else
        model_json(v, vcap, name, i, FW[(i / STREAM_KEYS + i) % NFW]);
}

static void *
streamer_main(void *arg)
{
    struct streamer *T = arg;
    struct gc_conn *c = gc_connect(T->addr);
    long until = ts_now_ms() + 60000;

    T->inflight = -1;
    for (int i = 0; i < STREAM_KEYS; i++)
        T->last_acked[i] = -1;
    if (c == NULL) {
        snprintf(T->why, sizeof(T->why), "no channel");
        return NULL;
    }
    struct gc_stream *st = gc_stream_start(c, KC_KV_SET, 90000);
    if (st == NULL) {
        snprintf(T->why, sizeof(T->why), "no stream");
        gc_close(c);
        return NULL;
    }
    int i;
    for (i = 0; i < STREAM_MAX && ts_now_ms() < until &&
                !__atomic_load_n(&T->stop, __ATOMIC_SEQ_CST);
         i++) {
        char k[128], v[512];
        stream_kv(i, k, sizeof(k), v, sizeof(v));
        Buffdb__Kv__SetRequest m = BUFFDB__KV__SET_REQUEST__INIT;
        m.key = kc_str(k);
        m.value = kc_str(v);
        struct gc_buf b = gc_pack(&m.base), out;
        T->inflight = i;
        int rc = gc_stream_send(st, &b);
        free(b.data);
        if (rc != 0) {
            snprintf(T->why, sizeof(T->why), "send %d failed", i);
            break;
        }
        rc = gc_stream_recv(st, &out);
        if (rc != 1) {
            snprintf(T->why, sizeof(T->why), "recv %d: %d", i, rc);
            break;
        }
        free(out.data);
        T->last_acked[i % STREAM_KEYS] = i;
        T->inflight = -1;
        __atomic_add_fetch(&T->acked, 1, __ATOMIC_SEQ_CST);
    }
    if (T->why[0] == '\0')
        snprintf(T->why, sizeof(T->why), "stopped after %d writes", i);
    gc_stream_cancel(st);
    gc_close(c);
    return NULL;
}

/* any_str - a StringValue column as a malloc'd C string, NULL for an SQL
 * NULL (asserts it is one of the two) */
static char *
any_str(const Google__Protobuf__Any *a)
{
    const char *u = (const char *)a->type_url.data;
    size_t ul = a->type_url.len;

    if (ul == strlen(KC_URL_VALUE) && memcmp(u, KC_URL_VALUE, ul) == 0) {
        Google__Protobuf__Value *m = google__protobuf__value__unpack(
            NULL, a->value.len, a->value.data);
        cr_assert_not_null(m);
        cr_assert_eq(m->kind_case, GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE,
                     "a Value column of kind %d", (int)m->kind_case);
        google__protobuf__value__free_unpacked(m, NULL);
        return NULL;
    }
    cr_assert(ul == strlen(KC_URL_STRING) && memcmp(u, KC_URL_STRING, ul) == 0,
              "column of type \"%.*s\"", (int)ul, u);
    Google__Protobuf__StringValue *m = google__protobuf__string_value__unpack(
        NULL, a->value.len, a->value.data);
    cr_assert_not_null(m);
    char *s = kc_dupn(m->value.data, m->value.len);
    cr_assert_not_null(s);
    google__protobuf__string_value__free_unpacked(m, NULL);
    return s;
}

Test(index, kill_during_a_stream_of_sets_leaves_the_index_equal_to_a_scan)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    struct gc_result r;
    char *kvp, *blobp;

    cr_assert_eq(ix_create_ok(c, &by_framework, KC_DEADLINE_MS), 0);
    gc_close(c);

    struct streamer *T = calloc(1, sizeof(*T));
    cr_assert_not_null(T);
    T->addr = s->addr;
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, streamer_main, T), 0);
    long until = ts_now_ms() + 30000;
    while (__atomic_load_n(&T->acked, __ATOMIC_SEQ_CST) < 300 &&
           ts_now_ms() < until)
        ts_sleep_ms(2);
    int acked_at_kill = __atomic_load_n(&T->acked, __ATOMIC_SEQ_CST);
    kc_kill_server(s);
    __atomic_store_n(&T->stop, 1, __ATOMIC_SEQ_CST);
    pthread_join(th, NULL);
    cr_assert_geq(acked_at_kill, 300, "only %d Sets answered before the kill "
                  "(%s)", acked_at_kill, T->why);
    cr_log_info("killed with %d Sets answered; the streamer: %s",
                acked_at_kill, T->why);

    struct ts_server *s2 = kc_restart(s, &kvp, &blobp);
    cr_assert(ts_log_has(s2, "index(es) checked"), "no index check logged "
              "after the unclean stop:\n%s", ts_tail(s2, 3000));
    c = kc_conn_to(s2);

    /* what a full scan says, through raw SQL */
    kc_query_r(c, "SELECT key, CASE WHEN json_valid(value) THEN "
                  "json_extract(value, '$.framework') END FROM kv "
                  "WHERE substr(key, 1, 6) = 'model:'",
               BUFFDB__QUERY__TARGET_STORE__KV, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "Query over kv");
    cr_assert_leq(r.n, STREAM_KEYS, "%zu model keys", r.n);
    char *want[NFW][STREAM_KEYS];
    size_t nwant[NFW] = {0}, nindexed = 0;
    for (size_t i = 0; i < r.n; i++) {
        Buffdb__Query__QueryResult *m = buffdb__query__query_result__unpack(
            NULL, r.msgs[i].len, r.msgs[i].data);
        cr_assert_not_null(m, "undecodable QueryResult");
        cr_assert_eq(m->n_fields, 2);
        char *key = any_str(m->fields[0]);
        char *fw = any_str(m->fields[1]);
        cr_assert_not_null(key, "a NULL key");
        buffdb__query__query_result__free_unpacked(m, NULL);
        int f = -1;
        for (int j = 0; fw != NULL && j < NFW; j++)
            if (strcmp(fw, FW[j]) == 0)
                f = j;
        cr_assert(fw == NULL || f >= 0, "%s: framework \"%s\"", key, fw);
        if (f >= 0) {
            want[f][nwant[f]++] = key;
            nindexed++;
        } else {
            free(key);
        }
        free(fw);
    }
    cr_assert_gt(nindexed, 0, "no key holds a framework");
    gc_result_free(&r);

    /* the index says the same, for every framework */
    for (int f = 0; f < NFW; f++) {
        qsort(want[f], nwant[f], sizeof(char *), cmp_str);
        struct ents e;
        lookup(c, "by_framework", FW[f], 0, &e);
        char what[64];
        snprintf(what, sizeof(what), "Lookup by_framework = %s", FW[f]);
        expect_ents(&e, (const char *const *)want[f], NULL, nwant[f], what);
        ents_free(&e);
        for (size_t i = 0; i < nwant[f]; i++)
            free(want[f][i]);
    }

    /* and every answered Set survived (the one in flight may have too) */
    for (int k = 0; k < STREAM_KEYS; k++) {
        char key[128], v[512], vi[512];
        int last = T->last_acked[k];
        if (last < 0)
            continue;
        stream_kv(last, key, sizeof(key), v, sizeof(v));
        char *got = kc_kv_value(c, key);
        cr_assert_not_null(got, "%s: answered Set %d lost", key, last);
        int ok = strcmp(got, v) == 0;
        if (!ok && T->inflight >= 0 && T->inflight % STREAM_KEYS == k) {
            stream_kv(T->inflight, key, sizeof(key), vi, sizeof(vi));
            ok = strcmp(got, vi) == 0;
        }
        cr_assert(ok, "%s: \"%s\", expected write %d \"%s\"", key, got, last,
                  v);
        free(got);
    }

    /* new writes update the index */
    char v[512];
    model_json(v, sizeof(v), "after", 1, "tensorflow");
    kc_kv_set_ok(c, NULL, "model:zz-after:1:metadata", v);
    struct ents e;
    lookup(c, "by_framework", "tensorflow", 0, &e);
    cr_assert_gt(e.n, 0);
    cr_assert_str_eq(e.k[e.n - 1], "model:zz-after:1:metadata");
    ents_free(&e);

    free(T);
    gc_close(c);
    ts_stop_ok(s2);
    free(kvp);
    free(blobp);
}

/* ============================================================================
 * Volume
 * ========================================================================== */

#define VOL_N 100000
#define VOL_STREAMS 4
#define VOL_MUL 7919 /* prime to VOL_N: i -> value is a permutation */

static int
vol_value(int i)
{
    return (int)(((int64_t)i * VOL_MUL) % VOL_N);
}

Test(index, hundred_thousand_keys_under_an_integer_btree)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);
    struct gc_result r;
    char k[32], v[32];
    long t0 = ts_now_ms();

    /* VOL_N keys in VOL_STREAMS pipelined Set streams */
    int per = VOL_N / VOL_STREAMS;
    for (int part = 0; part < VOL_STREAMS; part++) {
        struct gc_reqs q = {0};
        for (int i = part * per; i < (part + 1) * per; i++) {
            snprintf(k, sizeof(k), "vol-%06d", i);
            snprintf(v, sizeof(v), "%d", vol_value(i));
            kc_add_kv_set(&q, k, v);
        }
        gc_call_pipelined(c, KC_KV_SET, q.v, q.n, 120000, &r);
        gc_reqs_free(&q);
        kc_expect_status(&r, GRPC_STATUS_OK, "pipelined Sets");
        cr_assert_eq(r.n, (size_t)per, "%zu SetResponses, expected %d", r.n,
                     per);
        gc_result_free(&r);
    }
    long t1 = ts_now_ms();

    const struct spec by_num = {"by_num", BTREE, 0, "vol-", "", VT_INTEGER};
    uint64_t n = ix_create_ok(c, &by_num, 120000);
    long t2 = ts_now_ms();
    cr_assert_eq(n, VOL_N, "indexed_keys %" PRIu64 ", expected %d", n, VOL_N);

    /* one value: exactly its key */
    int want_i = 31337;
    snprintf(k, sizeof(k), "vol-%06d", want_i);
    snprintf(v, sizeof(v), "%d", vol_value(want_i));
    expect_lookup(c, "by_num", v, (const char *const[]){k},
                  (const char *const[]){v}, 1);

    /* 1000 consecutive values across a digit boundary: numeric order,
     * not text order ("10000" < "9500" as text) */
    int lo = 9500, hi = 10499;
    char slo[16], shi[16];
    snprintf(slo, sizeof(slo), "%d", lo);
    snprintf(shi, sizeof(shi), "%d", hi);
    struct ents e;
    range(c, "by_num", slo, shi, 0, &e);
    long t3 = ts_now_ms();
    cr_assert_eq(e.n, 1000, "Range [%d, %d]: %zu entries", lo, hi, e.n);
    for (size_t j = 0; j < e.n; j++) {
        int want = lo + (int)j;
        char *end;
        long got = strtol(e.v[j], &end, 10);
        cr_assert(*end == '\0' && got == want, "entry %zu: value \"%s\", "
                  "expected %d", j, e.v[j], want);
        int idx;
        cr_assert_eq(sscanf(e.k[j], "vol-%d", &idx), 1, "key \"%s\"",
                     e.k[j]);
        cr_assert_eq(vol_value(idx), want, "entry %zu: key %s holds %d, not "
                     "%d", j, e.k[j], vol_value(idx), want);
    }
    ents_free(&e);
    /* and a limit stops it */
    range(c, "by_num", slo, shi, 10, &e);
    cr_assert_eq(e.n, 10);
    cr_assert_str_eq(e.v[9], "9509");
    ents_free(&e);
    cr_log_info("%d keys: Sets %ld ms, CreateIndex %ld ms, lookups %ld ms",
                VOL_N, t1 - t0, t2 - t1, t3 - t2);

    gc_close(c);
    ts_stop_ok(s);
}
