/*
 * test_txn.c - transactions end to end: the real buffdb binary
 * ($BUFFDB_BIN) started by tests/helpers/server.c and driven over gRPC by
 * tests/helpers/grpc_client.c.
 *
 * Every test starts its own server (2 workers) on 127.0.0.1 and a free
 * port, in its own directory, and ends with ts_stop_ok() (clean exit, a
 * log free of sanitizer reports); a server killed on purpose has its log
 * checked with ts_assert_log_clean().  Every connection is a channel with
 * channel arguments of its own, hence its own TCP connection and worker;
 * where a test needs a particular worker it opens fresh connections until
 * the buffdb-worker-pid metadata says it has one (bounded tries).
 *
 * What is covered: visibility (commit, rollback, read-your-writes, nothing
 * seen outside before the commit), one transaction used from several
 * workers, blob ids reserved by Store, expiry (timeout_ms and the
 * transaction_timeout default), read-only transactions, write-write
 * conflicts and opposite lock orders (bounded by lock_wait), the answers
 * for unknown, malformed and ended ids, kill -9 of a worker holding a
 * transaction, and kill -9 of the whole server before the commit point,
 * after it (fault injection: BUFFDB_INJECT, see src/common/util.h) and in
 * the middle of a stream of commits, each followed by a restart on the
 * same files.  Eq/NotEq have no transaction_id and are not covered.
 *
 * Threads other than the test's own never call cr_assert: they record
 * what happened and the test thread checks it.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <grpc/grpc.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../helpers/grpc_client.h"
#include "../helpers/helpers.h"
#include "../helpers/kv_client.h"
#include "../helpers/server.h"
#include "blob.pb-c.h"
#include "kv.pb-c.h"

TestSuite(txn, .init = kc_suite_init, .fini = kc_suite_fini, .timeout = 120.);

/* ---- small helpers ------------------------------------------------------- */

/* random_uuid - a well-formed version 4 UUID nobody gave out */
static void
random_uuid(char out[37])
{
    static uint64_t x;

    if (x == 0)
        x = ((uint64_t)getpid() << 32) ^ (uint64_t)ts_now_ms() ^
            0x9e3779b97f4a7c15ULL;
    uint64_t v[2];
    for (int i = 0; i < 2; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v[i] = x;
    }
    snprintf(out, 37, "%08" PRIx32 "-%04" PRIx32 "-4%03" PRIx32 "-8%03" PRIx32
             "-%012" PRIx64, (uint32_t)(v[0] >> 32),
             (uint32_t)(v[0] >> 16) & 0xffff, (uint32_t)v[0] & 0xfff,
             (uint32_t)(v[1] >> 52) & 0xfff, v[1] & (uint64_t)0xffffffffffff);
}

/* ---- requests (no assertions: usable from any thread) --------------------
 * txn NULL: no transaction_id field */

static void
blob_store_r(struct gc_conn *c, const char *txn, const void *data, size_t len,
             const char *meta, struct gc_result *r)
{
    Buffdb__Blob__StoreRequest m = BUFFDB__BLOB__STORE_REQUEST__INIT;
    m.bytes = kc_bytes(data, len);
    if (meta != NULL) {
        m._metadata_case = BUFFDB__BLOB__STORE_REQUEST___METADATA_METADATA;
        m.metadata = kc_str(meta);
    }
    if (txn != NULL) {
        m._transaction_id_case =
            BUFFDB__BLOB__STORE_REQUEST___TRANSACTION_ID_TRANSACTION_ID;
        m.transaction_id = kc_str(txn);
    }
    kc_call1(c, KC_BLOB_STORE, &m.base, KC_DEADLINE_MS, r);
}

static void
blob_get_r(struct gc_conn *c, const char *txn, uint64_t id,
           struct gc_result *r)
{
    Buffdb__Blob__GetRequest m = BUFFDB__BLOB__GET_REQUEST__INIT;
    m.id = id;
    if (txn != NULL) {
        m._transaction_id_case =
            BUFFDB__BLOB__GET_REQUEST___TRANSACTION_ID_TRANSACTION_ID;
        m.transaction_id = kc_str(txn);
    }
    kc_call1(c, KC_BLOB_GET, &m.base, KC_DEADLINE_MS, r);
}

/* blob_update_r - new data, metadata left alone */
static void
blob_update_r(struct gc_conn *c, const char *txn, uint64_t id,
              const void *data, size_t len, struct gc_result *r)
{
    Buffdb__Blob__UpdateRequest m = BUFFDB__BLOB__UPDATE_REQUEST__INIT;
    m.id = id;
    m._bytes_case = BUFFDB__BLOB__UPDATE_REQUEST___BYTES_BYTES;
    m.bytes = kc_bytes(data, len);
    m.should_update_metadata = 0;
    if (txn != NULL) {
        m._transaction_id_case =
            BUFFDB__BLOB__UPDATE_REQUEST___TRANSACTION_ID_TRANSACTION_ID;
        m.transaction_id = kc_str(txn);
    }
    kc_call1(c, KC_BLOB_UPDATE, &m.base, KC_DEADLINE_MS, r);
}

static void
blob_del_r(struct gc_conn *c, const char *txn, uint64_t id,
           struct gc_result *r)
{
    Buffdb__Blob__DeleteRequest m = BUFFDB__BLOB__DELETE_REQUEST__INIT;
    m.id = id;
    if (txn != NULL) {
        m._transaction_id_case =
            BUFFDB__BLOB__DELETE_REQUEST___TRANSACTION_ID_TRANSACTION_ID;
        m.transaction_id = kc_str(txn);
    }
    kc_call1(c, KC_BLOB_DELETE, &m.base, KC_DEADLINE_MS, r);
}

/* ---- the same with assertions (test thread only) ------------------------- */

/* txn_commit_ok - Commit, asserting success and no error_message */
static void
txn_commit_ok(struct gc_conn *c, const char *id)
{
    char err[512];

    cr_assert(kc_txn_end(c, id, 1, err, sizeof(err)), "commit of %s failed: %s",
              id, err);
    cr_assert_eq(err[0], '\0', "a successful commit says \"%s\"", err);
}

static void
txn_rollback_ok(struct gc_conn *c, const char *id)
{
    char err[512];

    cr_assert(kc_txn_end(c, id, 0, err, sizeof(err)),
              "rollback of %s failed: %s", id, err);
}

/* txn_end_refused - Commit or Rollback answered success=false with an
 * error_message mentioning needle */
static void
txn_end_refused(struct gc_conn *c, const char *id, int commit,
                const char *needle)
{
    char err[512];

    cr_assert(!kc_txn_end(c, id, commit, err, sizeof(err)),
              "%s of \"%s\" succeeded", commit ? "commit" : "rollback", id);
    cr_assert(strstr(err, needle) != NULL,
              "%s of \"%s\": error_message \"%s\" does not mention \"%s\"",
              commit ? "commit" : "rollback", id, err, needle);
}

/* kv_lookup - 1 and the value in buf if key exists, 0 if not (asserts
 * nothing else happened) */
static int
kv_lookup(struct gc_conn *c, const char *key, char *buf, size_t cap)
{
    char *v = kc_kv_value(c, key);
    int found = v != NULL;

    snprintf(buf, cap, "%s", found ? v : "");
    free(v);
    return found;
}

/* blob_store_ok - Store, asserting OK; returns the id */
static uint64_t
blob_store_ok(struct gc_conn *c, const char *txn, const void *data,
              size_t len, const char *meta)
{
    struct gc_result r;
    const char *what = txn ? "Blob.Store in a txn" : "Blob.Store";

    blob_store_r(c, txn, data, len, meta, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, what);
    cr_assert_eq(r.n, 1, "%s: %zu responses", what, r.n);
    Buffdb__Blob__StoreResponse *m = buffdb__blob__store_response__unpack(
        NULL, r.msgs[0].len, r.msgs[0].data);
    cr_assert_not_null(m, "%s: undecodable StoreResponse", what);
    uint64_t id = m->id;
    buffdb__blob__store_response__free_unpacked(m, NULL);
    gc_result_free(&r);
    cr_assert_gt(id, 0, "%s: id 0", what);
    return id;
}

static void
blob_update_ok(struct gc_conn *c, const char *txn, uint64_t id,
               const void *data, size_t len)
{
    struct gc_result r;
    char what[96];

    snprintf(what, sizeof(what), "Blob.Update %" PRIu64 "%s", id,
             txn ? " in a txn" : "");
    blob_update_r(c, txn, id, data, len, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, what);
    cr_assert_eq(r.n, 1, "%s: %zu responses", what, r.n);
    gc_result_free(&r);
}

static void
blob_del_ok(struct gc_conn *c, const char *txn, uint64_t id)
{
    struct gc_result r;
    char what[96];

    snprintf(what, sizeof(what), "Blob.Delete %" PRIu64 "%s", id,
             txn ? " in a txn" : "");
    blob_del_r(c, txn, id, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, what);
    cr_assert_eq(r.n, 1, "%s: %zu responses", what, r.n);
    gc_result_free(&r);
}

/* blob_expect - assert blob id's data (and metadata if meta != NULL) as
 * seen with txn (NULL: outside) */
static void
blob_expect(struct gc_conn *c, const char *txn, uint64_t id, const char *data,
            const char *meta)
{
    struct gc_result r;
    char what[96];

    snprintf(what, sizeof(what), "Blob.Get %" PRIu64 "%s", id,
             txn ? " in a txn" : "");
    blob_get_r(c, txn, id, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, what);
    cr_assert_eq(r.n, 1, "%s: %zu responses", what, r.n);
    Buffdb__Blob__GetResponse *m = buffdb__blob__get_response__unpack(
        NULL, r.msgs[0].len, r.msgs[0].data);
    cr_assert_not_null(m, "%s: undecodable GetResponse", what);
    kc_expect_bytes(m->bytes, data, strlen(data), what);
    if (meta != NULL) {
        cr_assert_eq(m->_metadata_case,
                     BUFFDB__BLOB__GET_RESPONSE___METADATA_METADATA,
                     "%s: metadata absent, expected \"%s\"", what, meta);
        kc_expect_bytes(m->metadata, meta, strlen(meta), what);
    }
    buffdb__blob__get_response__free_unpacked(m, NULL);
    gc_result_free(&r);
}

static void
blob_expect_missing(struct gc_conn *c, const char *txn, uint64_t id)
{
    struct gc_result r;
    char what[96];

    snprintf(what, sizeof(what), "Blob.Get %" PRIu64 "%s (expected missing)",
             id, txn ? " in a txn" : "");
    blob_get_r(c, txn, id, &r);
    kc_expect_status(&r, GRPC_STATUS_NOT_FOUND, what);
    cr_assert_eq(r.n, 0);
    gc_result_free(&r);
}

/* blob_lookup - 1 and the data (as a string) in buf if id exists, 0 if not */
static int
blob_lookup(struct gc_conn *c, uint64_t id, char *buf, size_t cap)
{
    struct gc_result r;
    int found = 0;

    blob_get_r(c, NULL, id, &r);
    cr_assert(r.code == GRPC_STATUS_OK || r.code == GRPC_STATUS_NOT_FOUND,
              "Blob.Get %" PRIu64 ": %s (\"%s\")", id, gc_status_name(r.code),
              r.details);
    buf[0] = '\0';
    if (r.code == GRPC_STATUS_OK) {
        cr_assert_eq(r.n, 1);
        Buffdb__Blob__GetResponse *m = buffdb__blob__get_response__unpack(
            NULL, r.msgs[0].len, r.msgs[0].data);
        cr_assert_not_null(m);
        snprintf(buf, cap, "%.*s", (int)m->bytes.len,
                 (const char *)m->bytes.data);
        buffdb__blob__get_response__free_unpacked(m, NULL);
        found = 1;
    }
    gc_result_free(&r);
    return found;
}

/* ============================================================================
 * Visibility
 * ========================================================================== */

Test(txn, commit_makes_every_write_visible_to_other_connections)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c1 = kc_conn_to(s), *c2 = kc_conn_to(s);

    uint64_t old = blob_store_ok(c2, NULL, "old-bytes", 9, "meta");
    char *t = kc_txn_begin(c1);
    kc_kv_set_ok(c1, t, "c-k1", "v1");
    kc_kv_set_ok(c1, t, "c-k2", "v2");
    kc_kv_set_ok(c1, t, "c-k3", "v3");
    uint64_t nid = blob_store_ok(c1, t, "stored-in-txn", 13, "m2");
    cr_assert_neq(nid, old);
    blob_update_ok(c1, t, old, "updated-in-txn", 14);

    /* nothing shows outside before the commit */
    kc_kv_expect_missing(c2, NULL, "c-k1");
    kc_kv_expect_missing(c2, NULL, "c-k2");
    kc_kv_expect_missing(c2, NULL, "c-k3");
    blob_expect_missing(c2, NULL, nid);
    blob_expect(c2, NULL, old, "old-bytes", "meta");

    txn_commit_ok(c1, t);

    /* everything shows after it, on every connection */
    struct gc_conn *c3 = kc_conn_to(s);
    struct gc_conn *each[3] = {c1, c2, c3};
    for (int i = 0; i < 3; i++) {
        kc_kv_expect(each[i], NULL, "c-k1", "v1");
        kc_kv_expect(each[i], NULL, "c-k2", "v2");
        kc_kv_expect(each[i], NULL, "c-k3", "v3");
        blob_expect(each[i], NULL, nid, "stored-in-txn", "m2");
        blob_expect(each[i], NULL, old, "updated-in-txn", "meta");
    }
    free(t);
    gc_close(c1);
    gc_close(c2);
    gc_close(c3);
    ts_stop_ok(s);
}

Test(txn, rollback_makes_no_write_visible_and_frees_the_locks)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c1 = kc_conn_to(s), *c2 = kc_conn_to(s);

    kc_kv_set_ok(c2, NULL, "r-old", "old");
    kc_kv_set_ok(c2, NULL, "r-gone", "still here");
    uint64_t b = blob_store_ok(c2, NULL, "blob-before", 11, NULL);
    uint64_t d = blob_store_ok(c2, NULL, "to-delete", 9, NULL);

    char *t = kc_txn_begin(c1);
    kc_kv_set_ok(c1, t, "r-new", "new");
    kc_kv_set_ok(c1, t, "r-old", "changed");
    kc_kv_del_ok(c1, t, "r-gone");
    uint64_t nid = blob_store_ok(c1, t, "never", 5, NULL);
    blob_update_ok(c1, t, b, "blob-after", 10);
    blob_del_ok(c1, t, d);
    txn_rollback_ok(c1, t);

    struct gc_conn *c3 = kc_conn_to(s);
    struct gc_conn *each[3] = {c1, c2, c3};
    for (int i = 0; i < 3; i++) {
        kc_kv_expect_missing(each[i], NULL, "r-new");
        kc_kv_expect(each[i], NULL, "r-old", "old");
        kc_kv_expect(each[i], NULL, "r-gone", "still here");
        blob_expect_missing(each[i], NULL, nid);
        blob_expect(each[i], NULL, b, "blob-before", NULL);
        blob_expect(each[i], NULL, d, "to-delete", NULL);
    }
    /* its id is over: a further op says so */
    struct gc_result r;
    kc_kv_get_r(c2, t, "r-old", &r);
    kc_expect_fail(&r, GRPC_STATUS_FAILED_PRECONDITION, "rolled back",
                   "Get in a rolled-back transaction");
    gc_result_free(&r);

    /* its locks are gone: writes outside do not wait (lock_wait is 5 s) */
    kc_kv_set_r(c2, NULL, "r-old", "after", KC_DEADLINE_MS, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "Set of a key the rollback freed");
    cr_assert_lt(r.elapsed_ms, 1500, "the Set waited %ld ms", r.elapsed_ms);
    gc_result_free(&r);
    blob_update_r(c2, NULL, b, "x", 1, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "Update of a blob the rollback freed");
    cr_assert_lt(r.elapsed_ms, 1500, "the Update waited %ld ms",
                 r.elapsed_ms);
    gc_result_free(&r);
    kc_kv_expect(c3, NULL, "r-old", "after");
    free(t);
    gc_close(c1);
    gc_close(c2);
    gc_close(c3);
    ts_stop_ok(s);
}

Test(txn, reads_inside_see_own_writes_and_outside_see_committed_data)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c1 = kc_conn_to(s), *c2 = kc_conn_to(s);

    kc_kv_set_ok(c2, NULL, "y-a", "A0");
    kc_kv_set_ok(c2, NULL, "y-b", "B0");
    uint64_t b1 = blob_store_ok(c2, NULL, "one", 3, "m1");
    uint64_t b2 = blob_store_ok(c2, NULL, "two", 3, NULL);

    char *t = kc_txn_begin(c1);
    kc_kv_set_ok(c1, t, "y-a", "A1");
    kc_kv_set_ok(c1, t, "y-a", "A2"); /* the last write wins */
    kc_kv_del_ok(c1, t, "y-b");
    kc_kv_set_ok(c1, t, "y-new", "N");
    blob_update_ok(c1, t, b1, "ONE", 3);
    blob_del_ok(c1, t, b2);
    uint64_t b3 = blob_store_ok(c1, t, "three", 5, "m3");

    /* inside, from its own connection and from another: its own writes */
    struct gc_conn *in[2] = {c1, c2};
    for (int i = 0; i < 2; i++) {
        kc_kv_expect(in[i], t, "y-a", "A2");
        kc_kv_expect_missing(in[i], t, "y-b");
        kc_kv_expect(in[i], t, "y-new", "N");
        kc_kv_expect_missing(in[i], t, "y-none");
        blob_expect(in[i], t, b1, "ONE", "m1");
        blob_expect_missing(in[i], t, b2);
        blob_expect(in[i], t, b3, "three", "m3");
    }
    /* outside, even on the transaction's own connection: committed data */
    for (int i = 0; i < 2; i++) {
        kc_kv_expect(in[i], NULL, "y-a", "A0");
        kc_kv_expect(in[i], NULL, "y-b", "B0");
        kc_kv_expect_missing(in[i], NULL, "y-new");
        blob_expect(in[i], NULL, b1, "one", "m1");
        blob_expect(in[i], NULL, b2, "two", NULL);
        blob_expect_missing(in[i], NULL, b3);
    }
    txn_commit_ok(c2, t);
    kc_kv_expect(c1, NULL, "y-a", "A2");
    kc_kv_expect_missing(c1, NULL, "y-b");
    kc_kv_expect(c1, NULL, "y-new", "N");
    blob_expect(c1, NULL, b1, "ONE", "m1");
    blob_expect_missing(c1, NULL, b2);
    blob_expect(c1, NULL, b3, "three", "m3");
    free(t);
    gc_close(c1);
    gc_close(c2);
    ts_stop_ok(s);
}

/* ============================================================================
 * One transaction, several workers
 * ========================================================================== */

Test(txn, begin_write_and_commit_on_different_workers)
{
    struct ts_server *s = ts_start(NULL);
    pid_t p1, p2, p3, pb, pw;

    struct gc_conn *c1 = kc_conn_probe(s, KC_DEADLINE_MS, &p1);
    cr_assert_neq(p1, 0, "no worker pid in the metadata");
    struct gc_conn *c2 = kc_conn_find(s, p1, KC_OTHER, KC_DEADLINE_MS, &p2);
    struct gc_conn *c3 = kc_conn_find(s, p1, KC_SAME, KC_DEADLINE_MS, &p3);
    cr_assert_neq(p1, p2);

    char *t = kc_txn_begin_ex(c1, -1, -1, &pb);
    cr_assert_eq(pb, p1, "Begin served by %ld, not %ld", (long)pb, (long)p1);
    pw = kc_kv_set_ok(c2, t, "x-1", "one");
    cr_assert_eq(pw, p2, "Set served by %ld, not %ld", (long)pw, (long)p2);
    kc_kv_set_ok(c2, t, "x-2", "two");
    uint64_t id = blob_store_ok(c2, t, "blob-x", 6, NULL);
    /* the worker that began it reads what another worker wrote in it */
    kc_kv_expect(c1, t, "x-1", "one");
    blob_expect(c1, t, id, "blob-x", NULL);
    kc_kv_expect_missing(c3, NULL, "x-1");
    /* and a third connection (on the first worker) commits it */
    txn_commit_ok(c3, t);
    struct gc_conn *each[3] = {c1, c2, c3};
    for (int i = 0; i < 3; i++) {
        kc_kv_expect(each[i], NULL, "x-1", "one");
        kc_kv_expect(each[i], NULL, "x-2", "two");
        blob_expect(each[i], NULL, id, "blob-x", NULL);
    }
    cr_log_info("begin on worker %ld, writes on %ld, commit on %ld",
                (long)p1, (long)p2, (long)p3);
    free(t);
    gc_close(c1);
    gc_close(c2);
    gc_close(c3);
    ts_stop_ok(s);
}

/* ============================================================================
 * Blob ids
 * ========================================================================== */

Test(txn, blob_store_in_a_transaction_reserves_its_id)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c1 = kc_conn_to(s), *c2 = kc_conn_to(s);

    uint64_t base = blob_store_ok(c2, NULL, "base", 4, NULL);
    char *ta = kc_txn_begin(c1);
    char *tb = kc_txn_begin(c2);
    uint64_t a = blob_store_ok(c1, ta, "from-A", 6, NULL);
    uint64_t b = blob_store_ok(c2, tb, "from-B", 6, NULL);
    uint64_t p = blob_store_ok(c1, NULL, "plain", 5, NULL);
    cr_assert(a != b && a != p && b != p && a != base && b != base &&
                  p != base,
              "ids collide: base %" PRIu64 ", A %" PRIu64 ", B %" PRIu64
              ", plain %" PRIu64, base, a, b, p);
    /* each sees its own; nobody outside sees either */
    blob_expect(c2, ta, a, "from-A", NULL);
    blob_expect_missing(c2, ta, b);
    blob_expect(c1, tb, b, "from-B", NULL);
    blob_expect_missing(c1, tb, a);
    blob_expect_missing(c1, NULL, a);
    blob_expect_missing(c1, NULL, b);
    blob_expect(c2, NULL, p, "plain", NULL);
    txn_commit_ok(c2, tb);
    txn_commit_ok(c1, ta);
    /* committed at the ids Store answered */
    blob_expect(c1, NULL, a, "from-A", NULL);
    blob_expect(c2, NULL, b, "from-B", NULL);
    blob_expect(c2, NULL, p, "plain", NULL);
    blob_expect(c2, NULL, base, "base", NULL);

    /* a rolled-back Store's id is spent */
    char *tc = kc_txn_begin(c1);
    uint64_t r = blob_store_ok(c1, tc, "rolled", 6, NULL);
    cr_assert(r != a && r != b && r != p && r != base);
    txn_rollback_ok(c2, tc);
    blob_expect_missing(c1, NULL, r);
    uint64_t n1 = blob_store_ok(c1, NULL, "after-1", 7, NULL);
    char *td = kc_txn_begin(c2);
    uint64_t n2 = blob_store_ok(c2, td, "after-2", 7, NULL);
    txn_commit_ok(c2, td);
    uint64_t n3 = blob_store_ok(c2, NULL, "after-3", 7, NULL);
    cr_assert(n1 != r && n2 != r && n3 != r,
              "the rolled-back id %" PRIu64 " was given out again (%" PRIu64
              ", %" PRIu64 ", %" PRIu64 ")", r, n1, n2, n3);
    cr_assert(n1 > r && n2 > r && n3 > r, "an id below a spent one");
    cr_assert(n1 != n2 && n2 != n3 && n1 != n3);
    blob_expect_missing(c2, NULL, r);
    blob_expect(c1, NULL, n1, "after-1", NULL);
    blob_expect(c1, NULL, n2, "after-2", NULL);
    blob_expect(c1, NULL, n3, "after-3", NULL);
    free(ta);
    free(tb);
    free(tc);
    free(td);
    gc_close(c1);
    gc_close(c2);
    ts_stop_ok(s);
}

/* ============================================================================
 * Expiry
 * ========================================================================== */

Test(txn, timeout_ms_expires_the_transaction_and_frees_its_locks)
{
    /* lock_wait is the default 5 s: a Set that had to wait for the lock
     * would take that long */
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c1 = kc_conn_to(s), *c2 = kc_conn_to(s);
    struct gc_result r;

    char *t = kc_txn_begin_ex(c1, -1, 500, NULL);
    kc_kv_set_ok(c1, t, "e-key", "in-txn");
    uint64_t bid = blob_store_ok(c2, NULL, "e-blob", 6, NULL);
    blob_update_ok(c1, t, bid, "in-txn", 6);
    ts_sleep_ms(2000);

    /* first, before anything touches the transaction: the master expired
     * it and freed its locks */
    kc_kv_set_r(c2, NULL, "e-key", "outside", KC_DEADLINE_MS, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "Set of the expired txn's key");
    cr_assert_lt(r.elapsed_ms, 1500, "the Set waited %ld ms for the lock",
                 r.elapsed_ms);
    gc_result_free(&r);
    blob_update_r(c2, NULL, bid, "outside", 7, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "Update of the expired txn's blob");
    cr_assert_lt(r.elapsed_ms, 1500, "the Update waited %ld ms",
                 r.elapsed_ms);
    gc_result_free(&r);

    kc_kv_set_r(c1, t, "e-other", "x", KC_DEADLINE_MS, &r);
    kc_expect_fail(&r, GRPC_STATUS_FAILED_PRECONDITION, "expired",
                   "Set in an expired transaction");
    gc_result_free(&r);
    kc_kv_get_r(c2, t, "e-key", &r);
    kc_expect_fail(&r, GRPC_STATUS_FAILED_PRECONDITION, "expired",
                   "Get in an expired transaction");
    gc_result_free(&r);
    txn_end_refused(c1, t, 1, "expired");
    txn_end_refused(c2, t, 0, "expired");

    kc_kv_expect(c1, NULL, "e-key", "outside");
    kc_kv_expect_missing(c1, NULL, "e-other");
    blob_expect(c1, NULL, bid, "outside", NULL);
    cr_assert(ts_log_has(s, "expired"), "the master did not log the expiry");
    free(t);
    gc_close(c1);
    gc_close(c2);
    ts_stop_ok(s);
}

Test(txn, transaction_timeout_from_the_config_applies_by_default)
{
    struct ts_opts o = {.config = "transaction_timeout = 1s\n"};
    struct ts_server *s = ts_start(&o);
    struct gc_conn *c1 = kc_conn_to(s), *c2 = kc_conn_to(s);
    struct gc_result r;

    char *t = kc_txn_begin(c1);                          /* 1 s, the config */
    char *tl = kc_txn_begin_ex(c2, -1, 60000, NULL);     /* a minute, asked */
    kc_kv_set_ok(c1, t, "d-key", "in-txn");
    kc_kv_set_ok(c2, tl, "d-long", "kept");
    ts_sleep_ms(2500);

    kc_kv_set_r(c2, NULL, "d-key", "outside", KC_DEADLINE_MS, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "Set of the expired txn's key");
    cr_assert_lt(r.elapsed_ms, 1500, "the Set waited %ld ms for the lock",
                 r.elapsed_ms);
    gc_result_free(&r);
    kc_kv_get_r(c1, t, "d-key", &r);
    kc_expect_fail(&r, GRPC_STATUS_FAILED_PRECONDITION, "expired",
                   "Get in a transaction past transaction_timeout");
    gc_result_free(&r);
    txn_end_refused(c1, t, 1, "expired");

    /* timeout_ms overrides the configured default */
    kc_kv_set_ok(c1, tl, "d-long-2", "kept too");
    txn_commit_ok(c1, tl);
    kc_kv_expect(c2, NULL, "d-long", "kept");
    kc_kv_expect(c2, NULL, "d-long-2", "kept too");
    kc_kv_expect(c2, NULL, "d-key", "outside");
    free(t);
    free(tl);
    gc_close(c1);
    gc_close(c2);
    ts_stop_ok(s);
}

/* ============================================================================
 * Read-only
 * ========================================================================== */

Test(txn, read_only_transaction_reads_and_refuses_writes)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c1 = kc_conn_to(s), *c2 = kc_conn_to(s);
    struct gc_result r;

    kc_kv_set_ok(c2, NULL, "o-key", "value");
    uint64_t bid = blob_store_ok(c2, NULL, "o-blob", 6, NULL);
    char *t = kc_txn_begin_ex(c1, 1, -1, NULL);

    kc_kv_expect(c1, t, "o-key", "value");
    kc_kv_expect_missing(c2, t, "o-none");
    blob_expect(c2, t, bid, "o-blob", NULL);

    kc_kv_set_r(c1, t, "o-key", "changed", KC_DEADLINE_MS, &r);
    kc_expect_fail(&r, GRPC_STATUS_FAILED_PRECONDITION, "read-only",
                   "Set in a read-only transaction");
    gc_result_free(&r);
    kc_kv_set_r(c1, t, "o-new", "new", KC_DEADLINE_MS, &r);
    kc_expect_fail(&r, GRPC_STATUS_FAILED_PRECONDITION, "read-only",
                   "Set of a new key in a read-only transaction");
    gc_result_free(&r);
    kc_kv_del_r(c1, t, "o-key", &r);
    kc_expect_fail(&r, GRPC_STATUS_FAILED_PRECONDITION, "read-only",
                   "Delete in a read-only transaction");
    gc_result_free(&r);
    blob_store_r(c1, t, "nope", 4, NULL, &r);
    kc_expect_fail(&r, GRPC_STATUS_FAILED_PRECONDITION, "read-only",
                   "Blob.Store in a read-only transaction");
    gc_result_free(&r);
    blob_update_r(c1, t, bid, "nope", 4, &r);
    kc_expect_fail(&r, GRPC_STATUS_FAILED_PRECONDITION, "read-only",
                   "Blob.Update in a read-only transaction");
    gc_result_free(&r);
    blob_del_r(c1, t, bid, &r);
    kc_expect_fail(&r, GRPC_STATUS_FAILED_PRECONDITION, "read-only",
                   "Blob.Delete in a read-only transaction");
    gc_result_free(&r);

    /* still usable for reads; committing it changes nothing */
    kc_kv_expect(c1, t, "o-key", "value");
    txn_commit_ok(c1, t);
    kc_kv_expect(c2, NULL, "o-key", "value");
    kc_kv_expect_missing(c2, NULL, "o-new");
    blob_expect(c2, NULL, bid, "o-blob", NULL);
    /* and it locked nothing: writes outside do not wait */
    kc_kv_set_r(c2, NULL, "o-key", "after", KC_DEADLINE_MS, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "Set after the read-only txn");
    cr_assert_lt(r.elapsed_ms, 1500);
    gc_result_free(&r);

    /* read_only = false, given explicitly, allows writes */
    char *tw = kc_txn_begin_ex(c1, 0, -1, NULL);
    kc_kv_set_ok(c1, tw, "o-new", "written");
    txn_commit_ok(c1, tw);
    kc_kv_expect(c2, NULL, "o-new", "written");
    free(t);
    free(tw);
    gc_close(c1);
    gc_close(c2);
    ts_stop_ok(s);
}

/* ============================================================================
 * Conflicts
 * ========================================================================== */

Test(txn, write_write_conflict_aborts_after_lock_wait)
{
    struct ts_opts o = {.config = "lock_wait = 1s\n"};
    struct ts_server *s = ts_start(&o);
    struct gc_conn *c1 = kc_conn_to(s), *c2 = kc_conn_to(s);
    struct gc_conn *c3 = kc_conn_to(s);
    struct gc_result r;

    uint64_t bid = blob_store_ok(c2, NULL, "w-blob", 6, NULL);
    char *ta = kc_txn_begin(c1);
    kc_kv_set_ok(c1, ta, "w-key", "A");
    blob_update_ok(c1, ta, bid, "A-blob", 6);

    /* a write outside waits lock_wait, then ABORTED naming the key */
    kc_kv_set_r(c2, NULL, "w-key", "X", KC_DEADLINE_MS, &r);
    kc_expect_fail(&r, GRPC_STATUS_ABORTED, "w-key",
                   "Set of a key a transaction holds");
    cr_assert_geq(r.elapsed_ms, 800, "gave up after %ld ms, before lock_wait",
                  r.elapsed_ms);
    cr_assert_lt(r.elapsed_ms, 5000, "took %ld ms", r.elapsed_ms);
    gc_result_free(&r);
    kc_kv_del_r(c3, NULL, "w-key", &r);
    kc_expect_fail(&r, GRPC_STATUS_ABORTED, "w-key",
                   "Delete of a key a transaction holds");
    cr_assert_geq(r.elapsed_ms, 800);
    cr_assert_lt(r.elapsed_ms, 5000);
    gc_result_free(&r);
    blob_update_r(c2, NULL, bid, "X-blob", 6, &r);
    kc_expect_status(&r, GRPC_STATUS_ABORTED,
                     "Update of a blob a transaction holds");
    cr_assert_geq(r.elapsed_ms, 800);
    cr_assert_lt(r.elapsed_ms, 5000);
    gc_result_free(&r);

    /* so does another transaction */
    char *tb = kc_txn_begin(c3);
    kc_kv_set_r(c3, tb, "w-key", "B", KC_DEADLINE_MS, &r);
    kc_expect_fail(&r, GRPC_STATUS_ABORTED, "w-key",
                   "Set in a second transaction of a key the first holds");
    cr_assert_geq(r.elapsed_ms, 800, "gave up after %ld ms", r.elapsed_ms);
    cr_assert_lt(r.elapsed_ms, 5000, "took %ld ms", r.elapsed_ms);
    gc_result_free(&r);
    kc_kv_expect_missing(c2, NULL, "w-key");
    blob_expect(c2, NULL, bid, "w-blob", NULL);

    /* A commits; its locks go, and everyone may write */
    txn_commit_ok(c1, ta);
    kc_kv_expect(c2, NULL, "w-key", "A");
    blob_expect(c2, NULL, bid, "A-blob", NULL);
    kc_kv_set_r(c2, NULL, "w-key", "X2", KC_DEADLINE_MS, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "Set after the commit");
    cr_assert_lt(r.elapsed_ms, 800, "the Set waited %ld ms", r.elapsed_ms);
    gc_result_free(&r);
    kc_kv_expect(c3, NULL, "w-key", "X2");
    /* B, whose write failed, is still open and may now take the key */
    kc_kv_set_ok(c3, tb, "w-key", "B2");
    txn_rollback_ok(c3, tb);
    kc_kv_expect(c1, NULL, "w-key", "X2");
    free(ta);
    free(tb);
    gc_close(c1);
    gc_close(c2);
    gc_close(c3);
    ts_stop_ok(s);
}

struct crossing {
    struct gc_conn *c;
    const char *txn, *key, *val;
    struct gc_result r;
    pthread_barrier_t *start;
};

static void *
crossing_main(void *arg)
{
    struct crossing *x = arg;

    pthread_barrier_wait(x->start);
    kc_kv_set_r(x->c, x->txn, x->key, x->val, KC_DEADLINE_MS, &x->r);
    return NULL;
}

Test(txn, opposite_lock_orders_cannot_hang)
{
    struct ts_opts o = {.config = "lock_wait = 1s\n"};
    struct ts_server *s = ts_start(&o);
    pid_t pa, pb;
    pthread_barrier_t bar;
    pthread_t th[2];

    /* A and B on different workers, so their calls really overlap */
    struct gc_conn *ca = kc_conn_probe(s, KC_DEADLINE_MS, &pa);
    cr_assert_neq(pa, 0);
    struct gc_conn *cb = kc_conn_find(s, pa, KC_OTHER, KC_DEADLINE_MS, &pb);
    char *ta = kc_txn_begin(ca);
    char *tb = kc_txn_begin(cb);
    kc_kv_set_ok(ca, ta, "dl-1", "A");
    kc_kv_set_ok(cb, tb, "dl-2", "B");

    struct crossing x[2] = {{ca, ta, "dl-2", "A", {0}, &bar},
                            {cb, tb, "dl-1", "B", {0}, &bar}};
    cr_assert_eq(pthread_barrier_init(&bar, NULL, 3), 0);
    long t0 = ts_now_ms();
    for (int i = 0; i < 2; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, crossing_main, &x[i]), 0);
    pthread_barrier_wait(&bar);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    long wall = ts_now_ms() - t0;
    pthread_barrier_destroy(&bar);

    int aborted = 0;
    for (int i = 0; i < 2; i++) {
        cr_assert(x[i].r.code == GRPC_STATUS_OK ||
                      x[i].r.code == GRPC_STATUS_ABORTED,
                  "crossing write %d: %s (\"%s\")", i,
                  gc_status_name(x[i].r.code), x[i].r.details);
        cr_assert_lt(x[i].r.elapsed_ms, 1000 + 3000,
                     "crossing write %d took %ld ms", i, x[i].r.elapsed_ms);
        aborted += x[i].r.code == GRPC_STATUS_ABORTED;
        cr_log_info("crossing write %d: %s after %ld ms (%s)", i,
                    gc_status_name(x[i].r.code), x[i].r.elapsed_ms,
                    x[i].r.details);
    }
    cr_assert_geq(aborted, 1, "both crossing writes succeeded");
    cr_assert_lt(wall, 1000 + 3000, "the two writes took %ld ms", wall);
    for (int i = 0; i < 2; i++)
        gc_result_free(&x[i].r);

    txn_rollback_ok(ca, ta);
    txn_rollback_ok(cb, tb);
    struct gc_result r;
    kc_kv_set_r(ca, NULL, "dl-1", "free", KC_DEADLINE_MS, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "Set of dl-1 after both rollbacks");
    cr_assert_lt(r.elapsed_ms, 800);
    gc_result_free(&r);
    kc_kv_set_r(cb, NULL, "dl-2", "free", KC_DEADLINE_MS, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "Set of dl-2 after both rollbacks");
    cr_assert_lt(r.elapsed_ms, 800);
    gc_result_free(&r);
    kc_kv_expect(cb, NULL, "dl-1", "free");
    kc_kv_expect(ca, NULL, "dl-2", "free");
    free(ta);
    free(tb);
    gc_close(ca);
    gc_close(cb);
    ts_stop_ok(s);
}

/* ============================================================================
 * Unknown, malformed and ended ids
 * ========================================================================== */

Test(txn, end_of_unknown_malformed_or_ended_ids_says_which)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s), *c2 = kc_conn_to(s);
    struct gc_result r;
    char unknown[37];

    random_uuid(unknown);
    txn_end_refused(c, unknown, 1, "unknown transaction");
    txn_end_refused(c, unknown, 0, "unknown transaction");
    txn_end_refused(c, "nope", 1, "unknown transaction_id");
    txn_end_refused(c, "nope", 0, "unknown transaction_id");

    char *tc = kc_txn_begin(c);
    kc_kv_set_ok(c, tc, "u-key", "committed");
    txn_commit_ok(c2, tc);
    txn_end_refused(c, tc, 1, "already committed");
    txn_end_refused(c2, tc, 0, "already committed");

    char *tr = kc_txn_begin(c);
    kc_kv_set_ok(c, tr, "u-rolled", "never");
    txn_rollback_ok(c, tr);
    txn_end_refused(c2, tr, 1, "already rolled back");
    txn_end_refused(c, tr, 0, "already rolled back");

    /* an operation naming any of them fails FAILED_PRECONDITION */
    kc_kv_set_r(c, unknown, "u-key", "x", KC_DEADLINE_MS, &r);
    kc_expect_fail(&r, GRPC_STATUS_FAILED_PRECONDITION, "unknown transaction",
                   "Set with an unknown id");
    gc_result_free(&r);
    kc_kv_get_r(c, unknown, "u-key", &r);
    kc_expect_fail(&r, GRPC_STATUS_FAILED_PRECONDITION, "unknown transaction",
                   "Get with an unknown id");
    gc_result_free(&r);
    blob_store_r(c, unknown, "x", 1, NULL, &r);
    kc_expect_fail(&r, GRPC_STATUS_FAILED_PRECONDITION, "unknown transaction",
                   "Blob.Store with an unknown id");
    gc_result_free(&r);
    kc_kv_del_r(c, "nope", "u-key", &r);
    kc_expect_fail(&r, GRPC_STATUS_FAILED_PRECONDITION, "unknown transaction",
                   "Delete with a malformed id");
    gc_result_free(&r);
    kc_kv_set_r(c2, tc, "u-key", "x", KC_DEADLINE_MS, &r);
    kc_expect_fail(&r, GRPC_STATUS_FAILED_PRECONDITION, "already committed",
                   "Set with a committed id");
    gc_result_free(&r);
    blob_get_r(c2, tr, 1, &r);
    kc_expect_fail(&r, GRPC_STATUS_FAILED_PRECONDITION, "already rolled back",
                   "Blob.Get with a rolled-back id");
    gc_result_free(&r);

    kc_kv_expect(c2, NULL, "u-key", "committed");
    kc_kv_expect_missing(c2, NULL, "u-rolled");
    blob_expect_missing(c2, NULL, 1);
    free(tc);
    free(tr);
    gc_close(c);
    gc_close(c2);
    ts_stop_ok(s);
}

/* ============================================================================
 * kill -9
 * ========================================================================== */

Test(txn, killed_worker_rolls_back_its_transaction_and_frees_its_locks)
{
    struct ts_server *s = ts_start(NULL);
    pid_t w, other, pb, old[TS_MAX_WORKERS];
    struct gc_result r;
    char line[128];

    int nold = ts_worker_pids(s, old, TS_MAX_WORKERS);
    cr_assert_eq(nold, 2);
    struct gc_conn *cb = kc_conn_probe(s, KC_DEADLINE_MS, &w);
    cr_assert(kc_pid_in(w, old, nold), "served by %ld, not a worker", (long)w);
    struct gc_conn *cw = kc_conn_find(s, w, KC_SAME, KC_DEADLINE_MS, NULL);
    struct gc_conn *co = kc_conn_find(s, w, KC_OTHER, KC_DEADLINE_MS, &other);

    kc_kv_set_ok(co, NULL, "kw-1", "old-1");
    uint64_t bid = blob_store_ok(co, NULL, "kw-blob", 7, NULL);
    /* begun on W, written through another connection to W */
    char *t = kc_txn_begin_ex(cb, -1, -1, &pb);
    cr_assert_eq(pb, w);
    cr_assert_eq(kc_kv_set_ok(cw, t, "kw-1", "txn-1"), w);
    cr_assert_eq(kc_kv_set_ok(cw, t, "kw-2", "txn-2"), w);
    blob_update_ok(cw, t, bid, "txn-blob", 8);
    uint64_t nid = blob_store_ok(cw, t, "txn-new", 7, NULL);

    cr_assert_eq(kill(w, SIGKILL), 0);
    snprintf(line, sizeof(line), "(pid %ld) killed by signal 9", (long)w);
    cr_assert(ts_wait_log(s, line, 1, 10000), "the master did not log the "
              "kill\n%s", ts_tail(s, 3000));
    cr_assert(ts_wait_log(s, "rolled back 1 transaction", 1, 5000),
              "the master did not roll the transaction back\n%s",
              ts_tail(s, 3000));

    /* its writes never appear; its locks are free at once (lock_wait 5 s) */
    kc_kv_expect(co, NULL, "kw-1", "old-1");
    kc_kv_expect_missing(co, NULL, "kw-2");
    blob_expect(co, NULL, bid, "kw-blob", NULL);
    blob_expect_missing(co, NULL, nid);
    kc_kv_set_r(co, NULL, "kw-1", "new-1", KC_DEADLINE_MS, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "Set of a key the dead txn held");
    cr_assert_lt(r.elapsed_ms, 1500, "the Set waited %ld ms", r.elapsed_ms);
    gc_result_free(&r);
    kc_kv_set_r(co, NULL, "kw-2", "new-2", KC_DEADLINE_MS, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "Set of a key the dead txn held");
    cr_assert_lt(r.elapsed_ms, 1500, "the Set waited %ld ms", r.elapsed_ms);
    gc_result_free(&r);
    blob_update_r(co, NULL, bid, "new-blob", 8, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "Update of a blob the dead txn held");
    cr_assert_lt(r.elapsed_ms, 1500, "the Update waited %ld ms",
                 r.elapsed_ms);
    gc_result_free(&r);

    /* its id: rolled back */
    txn_end_refused(co, t, 1, "rolled back");
    kc_kv_get_r(co, t, "kw-1", &r);
    kc_expect_fail(&r, GRPC_STATUS_FAILED_PRECONDITION, "rolled back",
                   "Get in the dead worker's transaction");
    gc_result_free(&r);
    kc_kv_expect(co, NULL, "kw-1", "new-1");
    kc_kv_expect(co, NULL, "kw-2", "new-2");
    blob_expect(co, NULL, bid, "new-blob", NULL);
    blob_expect_missing(co, NULL, nid);

    /* the replacement serves, transactions included */
    pid_t fresh = kc_fresh_worker(s, old, nold, 15000);
    cr_assert_neq(fresh, 0, "no replacement worker listened\n%s",
                  ts_tail(s, 3000));
    struct gc_conn *cf = kc_conn_find(s, fresh, KC_SAME, KC_DEADLINE_MS, NULL);
    kc_kv_expect(cf, NULL, "kw-1", "new-1");
    char *t2 = kc_txn_begin(cf);
    kc_kv_set_ok(cf, t2, "kw-1", "after");
    txn_commit_ok(cf, t2);
    kc_kv_expect(co, NULL, "kw-1", "after");
    cr_log_info("killed worker %ld; %ld took over, %ld replaced it", (long)w,
                (long)other, (long)fresh);
    free(t);
    free(t2);
    gc_close(cb);
    gc_close(cw);
    gc_close(co);
    gc_close(cf);
    ts_stop_ok(s);
}

/*
 * The worker that began a transaction dies while another worker runs an
 * operation of it (a Set waiting for a key another transaction holds).
 * The master rolls the transaction back at once; the operation still in
 * flight must not then succeed, nor leave a lock that nobody will free.
 */
Test(txn, owner_death_during_an_op_on_another_worker_leaks_nothing)
{
    struct ts_opts o = {.config = "lock_wait = 10s\n"};
    struct ts_server *s = ts_start(&o);
    pid_t w, x, x2, old[TS_MAX_WORKERS];
    pthread_barrier_t bar;
    pthread_t th;
    struct gc_result r;
    char line[128];

    int nold = ts_worker_pids(s, old, TS_MAX_WORKERS);
    cr_assert_eq(nold, 2);
    struct gc_conn *cw = kc_conn_probe(s, KC_DEADLINE_MS, &w);
    cr_assert_neq(w, 0);
    struct gc_conn *cx = kc_conn_find(s, w, KC_OTHER, KC_DEADLINE_MS, &x);
    struct gc_conn *cx2 = kc_conn_find(s, w, KC_OTHER, KC_DEADLINE_MS, &x2);
    cr_assert_eq(x, x2);

    char *ta = kc_txn_begin(cx); /* A, begun on X, holds the key */
    kc_kv_set_ok(cx, ta, "of-key", "A");
    char *t = kc_txn_begin(cw); /* T, begun on W */
    kc_kv_set_ok(cw, t, "of-other", "T");

    /* T's Set of the key waits on X for A */
    struct crossing op = {cx2, t, "of-key", "T", {0}, &bar};
    cr_assert_eq(pthread_barrier_init(&bar, NULL, 2), 0);
    cr_assert_eq(pthread_create(&th, NULL, crossing_main, &op), 0);
    pthread_barrier_wait(&bar);
    ts_sleep_ms(300);

    /* W dies: T is rolled back */
    cr_assert_eq(kill(w, SIGKILL), 0);
    snprintf(line, sizeof(line), "(pid %ld) killed by signal 9", (long)w);
    cr_assert(ts_wait_log(s, line, 1, 5000));
    cr_assert(ts_wait_log(s, "rolled back 1 transaction", 1, 5000),
              "T was not rolled back\n%s", ts_tail(s, 3000));
    pid_t fresh = kc_fresh_worker(s, old, nold, 5000);
    cr_assert_neq(fresh, 0, "no replacement worker\n%s", ts_tail(s, 3000));
    struct gc_conn *cf = kc_conn_find(s, fresh, KC_SAME, 1000, NULL);
    txn_end_refused(cf, t, 1, "rolled back");
    /* A ends: the key is free, and T's waiting Set gets it */
    txn_commit_ok(cf, ta);
    pthread_join(th, NULL);
    pthread_barrier_destroy(&bar);
    cr_log_info("T's Set of the key, in flight when W died: %s (%s) after "
                "%ld ms", gc_status_name(op.r.code), op.r.details,
                op.r.elapsed_ms);

    /* nobody holds the key now: a write does not wait */
    kc_kv_set_r(cf, NULL, "of-key", "after", KC_DEADLINE_MS, &r);
    cr_log_info("Set of the key after T and A ended: %s (%s) after %ld ms",
                gc_status_name(r.code), r.details, r.elapsed_ms);
    kc_expect_status(&r, GRPC_STATUS_OK, "Set of the key after T and A ended");
    cr_assert_lt(r.elapsed_ms, 2000, "the Set waited %ld ms", r.elapsed_ms);
    gc_result_free(&r);
    cr_assert_neq(op.r.code, GRPC_STATUS_OK,
                  "a Set in the rolled-back transaction succeeded");
    gc_result_free(&op.r);
    kc_kv_expect(cx, NULL, "of-key", "after");
    kc_kv_expect_missing(cx, NULL, "of-other");
    free(t);
    free(ta);
    gc_close(cw);
    gc_close(cx);
    gc_close(cx2);
    gc_close(cf);
    ts_stop_ok(s);
}

/* wait_file - until path exists (bounded); 1 if it does */
static int
wait_file(const char *path, int timeout_ms)
{
    long until = ts_now_ms() + timeout_ms;

    while (access(path, F_OK) != 0) {
        if (ts_now_ms() >= until)
            return 0;
        ts_sleep_ms(10);
    }
    return 1;
}

/*
 * crash_in_commit - a transaction updating a blob, storing one and setting
 * kv keys commits in a server stalled at injection point `point`; the
 * whole server is killed there and restarted on the same files.  Returns
 * the new server, with the ids in *upd and *stored.
 */
static struct ts_server *
crash_in_commit(const char *point, struct ts_server **first, uint64_t *upd,
                uint64_t *stored, char **kv, char **blob)
{
    char *idir = th_tmpdir();
    char spec[96];

    cr_assert_not_null(idir);
    char *once = th_path(idir, "inject-once");
    snprintf(spec, sizeof(spec), "%s:20000", point);
    /* the server inherits these; the test process needs them no longer
     * (the restart below runs without them) */
    setenv("BUFFDB_INJECT", spec, 1);
    setenv("BUFFDB_INJECT_ONCE", once, 1);
    struct ts_server *s = ts_start(NULL);
    unsetenv("BUFFDB_INJECT");
    unsetenv("BUFFDB_INJECT_ONCE");
    *first = s;

    struct gc_conn *c = kc_conn_to(s);
    pid_t w = kc_kv_set_ok(c, NULL, "cr-old", "old");
    *upd = blob_store_ok(c, NULL, "old-bytes", 9, "m-old");
    char *t = kc_txn_begin(c);
    blob_update_ok(c, t, *upd, "new-bytes", 9);
    *stored = blob_store_ok(c, t, "stored-bytes", 12, "m-new");
    kc_kv_set_ok(c, t, "cr-1", "v1");
    kc_kv_set_ok(c, t, "cr-2", "v2");
    kc_kv_set_ok(c, t, "cr-old", "new");

    /* the Commit, left hanging in the injected sleep */
    Buffdb__Kv__CommitTransactionRequest m =
        BUFFDB__KV__COMMIT_TRANSACTION_REQUEST__INIT;
    m.transaction_id = kc_str(t);
    struct gc_buf b = gc_pack(&m.base);
    struct gc_stream *st = gc_stream_start(c, KC_KV_COMMIT, 60000);
    cr_assert_not_null(st);
    cr_assert_eq(gc_stream_send(st, &b), 0, "could not send the Commit");
    free(b.data);
    gc_stream_half_close(st);
    cr_assert(wait_file(once, 15000), "the commit never reached %s\n%s",
              point, ts_tail(s, 3000));
    ts_sleep_ms(100);

    /* what the other worker shows meanwhile: before the commit point
     * nothing of the transaction (its blobs are in place, but readers get
     * the before-images); after it, all of it */
    struct gc_conn *co = kc_conn_find(s, w, KC_OTHER, 1000, NULL);
    char got[64];
    int has_upd = blob_lookup(co, *upd, got, sizeof(got));
    int has_stored = blob_lookup(co, *stored, got + 32, 32);
    int has_kv = kv_lookup(co, "cr-1", got + 48, 16);
    int after = strcmp(point, "txn-commit-done") == 0;
    cr_log_info("%s: while the commit is stalled, another worker sees blob "
                "%" PRIu64 " = \"%s\", blob %" PRIu64 " %s, cr-1 %s", point,
                *upd, has_upd ? got : "(missing)", *stored,
                has_stored ? "present" : "missing",
                has_kv ? "present" : "missing");
    cr_assert(has_upd, "blob %" PRIu64 " vanished during the commit", *upd);
    cr_assert_str_eq(got, after ? "new-bytes" : "old-bytes",
                     "%s: another worker read blob %" PRIu64 " = \"%s\"",
                     point, *upd, got);
    cr_assert_eq(has_stored, after, "%s: the stored blob is %s to others",
                 point, has_stored ? "visible" : "invisible");
    cr_assert_eq(has_kv, after, "%s: cr-1 is %s to others", point,
                 has_kv ? "visible" : "invisible");
    gc_close(co);

    kc_kill_server(s);
    struct gc_result r = {0};
    gc_stream_finish(st, &r);
    cr_assert_neq(r.code, GRPC_STATUS_OK,
                  "the Commit was answered although its worker was killed");
    cr_log_info("%s: the Commit ended %s (%s)", point,
                gc_status_name(r.code), r.details);
    gc_result_free(&r);
    gc_close(c);
    free(t);
    th_rmrf(idir);
    free(idir);
    free(once);
    return kc_restart(s, kv, blob);
}

Test(txn, crash_before_the_commit_point_leaves_nothing)
{
    struct ts_server *first;
    uint64_t upd, stored;
    char *kv, *blob;

    struct ts_server *s = crash_in_commit("txn-commit-prepared", &first, &upd,
                                          &stored, &kv, &blob);
    struct gc_conn *c = kc_conn_to(s), *c2 = kc_conn_to(s);
    struct gc_conn *each[2] = {c, c2};
    for (int i = 0; i < 2; i++) {
        blob_expect(each[i], NULL, upd, "old-bytes", "m-old");
        blob_expect_missing(each[i], NULL, stored);
        kc_kv_expect_missing(each[i], NULL, "cr-1");
        kc_kv_expect_missing(each[i], NULL, "cr-2");
        kc_kv_expect(each[i], NULL, "cr-old", "old");
    }
    /* the stored id stays spent; the keys and blob are free */
    uint64_t next = blob_store_ok(c, NULL, "later", 5, NULL);
    cr_assert_gt(next, stored, "id %" PRIu64 " given out after the spent %"
                 PRIu64, next, stored);
    kc_kv_set_ok(c2, NULL, "cr-1", "later");
    blob_update_ok(c2, NULL, upd, "later", 5);
    blob_expect(c, NULL, upd, "later", "m-old");
    gc_close(c);
    gc_close(c2);
    ts_stop_ok(s);
    free(kv);
    free(blob);
    (void)first;
}

Test(txn, crash_after_the_commit_point_keeps_everything)
{
    struct ts_server *first;
    uint64_t upd, stored;
    char *kv, *blob;

    struct ts_server *s = crash_in_commit("txn-commit-done", &first, &upd,
                                          &stored, &kv, &blob);
    struct gc_conn *c = kc_conn_to(s), *c2 = kc_conn_to(s);
    struct gc_conn *each[2] = {c, c2};
    for (int i = 0; i < 2; i++) {
        blob_expect(each[i], NULL, upd, "new-bytes", "m-old");
        blob_expect(each[i], NULL, stored, "stored-bytes", "m-new");
        kc_kv_expect(each[i], NULL, "cr-1", "v1");
        kc_kv_expect(each[i], NULL, "cr-2", "v2");
        kc_kv_expect(each[i], NULL, "cr-old", "new");
    }
    uint64_t next = blob_store_ok(c, NULL, "later", 5, NULL);
    cr_assert_gt(next, stored);
    blob_update_ok(c2, NULL, stored, "later", 5);
    kc_kv_set_ok(c2, NULL, "cr-1", "later");
    kc_kv_expect(c, NULL, "cr-1", "later");
    gc_close(c);
    gc_close(c2);
    ts_stop_ok(s);
    free(kv);
    free(blob);
    (void)first;
}

/* the committer of crash_during_a_stream_of_commits */
#define LOOP_N 30
struct loop_txn {
    int stored;      /* its Store answered, with blob_id */
    int commit_sent; /* its Commit was sent */
    int acked;       /* its Commit answered success */
    uint64_t blob_id;
};
struct loop {
    const char *addr;
    struct loop_txn tx[LOOP_N];
    int tried;      /* transactions begun (atomic) */
    int acked;      /* commits acknowledged (atomic) */
    int committing; /* 1 + index of the commit in flight, or 0 (atomic) */
    int stop;       /* atomic */
    char why[512];  /* how it ended */
};

static void
loop_keys(int i, char *a, char *b, char *va, char *vb, char *blob)
{
    sprintf(a, "loop-%02d-a", i);
    sprintf(b, "loop-%02d-b", i);
    sprintf(va, "va-%02d", i);
    sprintf(vb, "vb-%02d", i);
    sprintf(blob, "blob-of-txn-%02d", i);
}

static void *
loop_main(void *arg)
{
    struct loop *L = arg;
    struct gc_conn *c = gc_connect(L->addr);
    long until = ts_now_ms() + 60000;

    if (c == NULL) {
        snprintf(L->why, sizeof(L->why), "no channel");
        return NULL;
    }
    for (int i = 0; i < LOOP_N && ts_now_ms() < until &&
                    !__atomic_load_n(&L->stop, __ATOMIC_SEQ_CST);
         i++) {
        char id[37], a[32], b[32], va[32], vb[32], blob[32], err[200];
        struct gc_result r;
        const char *step = "Begin";
        loop_keys(i, a, b, va, vb, blob);

        int rc = kc_begin_r(c, -1, -1, id, &r);
        if (rc == 0) {
            __atomic_store_n(&L->tried, i + 1, __ATOMIC_SEQ_CST);
            gc_result_free(&r);
            step = "Set a";
            kc_kv_set_r(c, id, a, va, 10000, &r);
            rc = r.code == GRPC_STATUS_OK ? 0 : -1;
        }
        if (rc == 0) {
            gc_result_free(&r);
            step = "Set b";
            kc_kv_set_r(c, id, b, vb, 10000, &r);
            rc = r.code == GRPC_STATUS_OK ? 0 : -1;
        }
        if (rc == 0) {
            gc_result_free(&r);
            step = "Store";
            blob_store_r(c, id, blob, strlen(blob), NULL, &r);
            rc = r.code == GRPC_STATUS_OK && r.n == 1 ? 0 : -1;
            if (rc == 0) {
                Buffdb__Blob__StoreResponse *m =
                    buffdb__blob__store_response__unpack(NULL, r.msgs[0].len,
                                                         r.msgs[0].data);
                if (m == NULL) {
                    rc = -1;
                } else {
                    L->tx[i].blob_id = m->id;
                    L->tx[i].stored = 1;
                    buffdb__blob__store_response__free_unpacked(m, NULL);
                }
            }
        }
        if (rc == 0) {
            gc_result_free(&r);
            step = "Commit";
            L->tx[i].commit_sent = 1;
            __atomic_store_n(&L->committing, i + 1, __ATOMIC_SEQ_CST);
            int ok = kc_end_r(c, id, 1, err, sizeof(err), 10000, &r);
            __atomic_store_n(&L->committing, 0, __ATOMIC_SEQ_CST);
            if (ok == 1) {
                L->tx[i].acked = 1;
                __atomic_add_fetch(&L->acked, 1, __ATOMIC_SEQ_CST);
            } else if (ok == 0) {
                snprintf(L->why, sizeof(L->why), "txn %d: commit refused: %s",
                         i, err);
                gc_result_free(&r);
                break;
            } else {
                rc = -1;
            }
        }
        if (rc != 0) {
            snprintf(L->why, sizeof(L->why), "txn %d: %s: %s (%s)", i, step,
                     gc_status_name(r.code), r.details);
            gc_result_free(&r);
            break;
        }
        gc_result_free(&r);
    }
    if (L->why[0] == '\0')
        snprintf(L->why, sizeof(L->why), "ran to the end");
    gc_close(c);
    return NULL;
}

Test(txn, crash_during_a_stream_of_commits_is_all_or_nothing)
{
    struct ts_server *s = ts_start(NULL);
    struct loop *L = calloc(1, sizeof(*L));
    pthread_t th;
    char *kv, *blob;

    cr_assert_not_null(L);
    L->addr = s->addr;
    cr_assert_eq(pthread_create(&th, NULL, loop_main, L), 0);

    /* some commits first, then kill -9 as soon as one is in flight */
    long until = ts_now_ms() + 60000;
    while (__atomic_load_n(&L->acked, __ATOMIC_SEQ_CST) < 8 &&
           __atomic_load_n(&L->tried, __ATOMIC_SEQ_CST) < LOOP_N &&
           ts_now_ms() < until)
        ts_sleep_ms(1);
    until = ts_now_ms() + 3000;
    while (__atomic_load_n(&L->committing, __ATOMIC_SEQ_CST) == 0 &&
           __atomic_load_n(&L->tried, __ATOMIC_SEQ_CST) < LOOP_N &&
           ts_now_ms() < until)
        sched_yield();
    int acked_at_kill = __atomic_load_n(&L->acked, __ATOMIC_SEQ_CST);
    int in_flight = __atomic_load_n(&L->committing, __ATOMIC_SEQ_CST);
    kc_kill_server(s);
    __atomic_store_n(&L->stop, 1, __ATOMIC_SEQ_CST);
    pthread_join(th, NULL);
    cr_assert_geq(acked_at_kill, 8, "only %d commits acknowledged before the "
                  "kill (%s)", acked_at_kill, L->why);
    cr_assert_lt(acked_at_kill, LOOP_N, "the loop finished before the kill");
    cr_log_info("killed with %d commits acknowledged, commit %d in flight; "
                "%d begun; the committer: %s", acked_at_kill, in_flight,
                L->tried, L->why);

    struct ts_server *s2 = kc_restart(s, &kv, &blob);
    struct gc_conn *c = kc_conn_to(s2);
    uint64_t maxid = 0;
    int committed = 0, absent = 0;
    int is_committed[LOOP_N] = {0};
    for (int i = 0; i < L->tried; i++) {
        char a[32], b[32], va[32], vb[32], bl[32], got[64];
        loop_keys(i, a, b, va, vb, bl);
        int has_a = kv_lookup(c, a, got, sizeof(got));
        if (has_a)
            cr_assert_str_eq(got, va, "txn %d: %s", i, a);
        int has_b = kv_lookup(c, b, got, sizeof(got));
        if (has_b)
            cr_assert_str_eq(got, vb, "txn %d: %s", i, b);
        int has_blob = 0;
        if (L->tx[i].stored) {
            has_blob = blob_lookup(c, L->tx[i].blob_id, got, sizeof(got));
            if (has_blob)
                cr_assert_str_eq(got, bl, "txn %d: blob %" PRIu64, i,
                                 L->tx[i].blob_id);
            if (L->tx[i].blob_id > maxid)
                maxid = L->tx[i].blob_id;
        }
        int n = has_a + has_b + has_blob;
        if (L->tx[i].acked)
            cr_assert(n == 3, "acknowledged txn %d is not whole: a %d, b %d, "
                      "blob %d", i, has_a, has_b, has_blob);
        else if (!L->tx[i].commit_sent)
            cr_assert(n == 0, "txn %d, never committed, left a %d, b %d, "
                      "blob %d", i, has_a, has_b, has_blob);
        else
            cr_assert(n == 0 || n == 3, "txn %d, commit unacknowledged, is "
                      "half there: a %d, b %d, blob %d", i, has_a, has_b,
                      has_blob);
        is_committed[i] = n == 3;
        committed += n == 3;
        absent += n == 0;
    }
    /* no blob exists but those of committed transactions (an unanswered
     * Store's id is at most one past the highest answered) */
    char got[64];
    for (uint64_t id = 1; id <= maxid + 3; id++) {
        int mine = 0;
        for (int i = 0; i < L->tried; i++)
            mine |= is_committed[i] && L->tx[i].stored &&
                    L->tx[i].blob_id == id;
        int has = blob_lookup(c, id, got, sizeof(got));
        cr_assert_eq(has, mine, "blob %" PRIu64 " %s", id,
                     has ? "exists but no committed transaction stored it"
                         : "of a committed transaction is missing");
    }
    cr_log_info("after restart: %d of %d transactions whole, %d absent",
                committed, L->tried, absent);
    gc_close(c);
    ts_stop_ok(s2);
    free(kv);
    free(blob);
    free(L);
}
