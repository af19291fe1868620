/*
 * kv_client.h - what the gRPC integration suites (test_server, test_txn,
 * test_coherence, test_index, test_model) share on top of grpc_client.h:
 * the suite's .init and .fini, reaching a server and a given worker,
 * status checks, and Kv, transaction and raw Query calls with their
 * checks.  What only one suite needs stays in that suite.
 *
 * Two kinds of function, as in the suites before them:
 *   - the *_r calls and the request builders assert nothing and only
 *     report what happened, so a suite's own threads may use them;
 *   - the others use Criterion's cr_assert and may only be called from
 *     the test's own thread; a failed check names the call, its key or
 *     statement, and the status and details the server answered.
 *
 * Strings are sent as protobuf bytes without their NUL.  A txn argument
 * NULL leaves a request's transaction_id field absent.
 */
#ifndef BFDB_TESTS_KV_CLIENT_H
#define BFDB_TESTS_KV_CLIENT_H

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "grpc_client.h"
#include "server.h"

#define KC_DEADLINE_MS 20000 /* for calls that should be quick */
#define KC_FIND_TRIES 40     /* fresh connections tried to reach a worker */

/* the methods of buffdb.kv.Kv, buffdb.blob.Blob and buffdb.query.Query */
#define KC_KV_GET "/buffdb.kv.Kv/Get"
#define KC_KV_SET "/buffdb.kv.Kv/Set"
#define KC_KV_DELETE "/buffdb.kv.Kv/Delete"
#define KC_KV_EQ "/buffdb.kv.Kv/Eq"
#define KC_KV_NOT_EQ "/buffdb.kv.Kv/NotEq"
#define KC_KV_BEGIN "/buffdb.kv.Kv/BeginTransaction"
#define KC_KV_COMMIT "/buffdb.kv.Kv/CommitTransaction"
#define KC_KV_ROLLBACK "/buffdb.kv.Kv/RollbackTransaction"
#define KC_BLOB_GET "/buffdb.blob.Blob/Get"
#define KC_BLOB_STORE "/buffdb.blob.Blob/Store"
#define KC_BLOB_UPDATE "/buffdb.blob.Blob/Update"
#define KC_BLOB_DELETE "/buffdb.blob.Blob/Delete"
#define KC_BLOB_EQ_DATA "/buffdb.blob.Blob/EqData"
#define KC_BLOB_NOT_EQ_DATA "/buffdb.blob.Blob/NotEqData"
#define KC_QUERY_QUERY "/buffdb.query.Query/Query"
#define KC_QUERY_EXECUTE "/buffdb.query.Query/Execute"

/* the type URLs of the Any columns a Query answers */
#define KC_URL_INT64 "type.googleapis.com/google.protobuf.Int64Value"
#define KC_URL_DOUBLE "type.googleapis.com/google.protobuf.DoubleValue"
#define KC_URL_STRING "type.googleapis.com/google.protobuf.StringValue"
#define KC_URL_BYTES "type.googleapis.com/google.protobuf.BytesValue"
#define KC_URL_VALUE "type.googleapis.com/google.protobuf.Value"

/* which worker kc_conn_find looks for */
enum kc_which {
    KC_OTHER = 0, /* any worker but pid */
    KC_SAME = 1,  /* worker pid itself */
};

/* ---- the suite ---------------------------------------------------------- */

/*
 * kc_suite_init / kc_suite_fini - a suite's .init and .fini: grpc_init();
 * then gc_cleanup_all(), ts_cleanup_all() and grpc_shutdown_blocking(),
 * which close and stop whatever a failed assertion left behind.
 */
void kc_suite_init(void);
void kc_suite_fini(void);

/* ---- small helpers (no assertions) -------------------------------------- */

/* kc_str - a NUL-terminated string as protobuf bytes (not copied) */
ProtobufCBinaryData kc_str(const char *s);

/* kc_bytes - n bytes as protobuf bytes (not copied) */
ProtobufCBinaryData kc_bytes(const void *p, size_t n);

/* kc_dupn - a NUL-terminated malloc'd copy of n bytes, NULL if out of
 * memory */
char *kc_dupn(const void *p, size_t n);

/* kc_pid_in - 1 if p is one of set[0..n) */
int kc_pid_in(pid_t p, const pid_t *set, int n);

/* ---- calls and their status (kc_call1: no assertions) ------------------- */

/* kc_conn_to - a new connection to s; asserts gRPC made the channel */
struct gc_conn *kc_conn_to(struct ts_server *s);

/* kc_call1 - one call of method with the single request m; r as answered
 * (gc_result_free it) */
void kc_call1(struct gc_conn *c, const char *method, const ProtobufCMessage *m,
              int deadline_ms, struct gc_result *r);

/* kc_expect_status - assert the call ended with code; the message says
 * what (the call), the status, its details and the responses before it */
void kc_expect_status(const struct gc_result *r, grpc_status_code code,
                      const char *what);

/* kc_expect_fail - assert code, no response, and details containing
 * needle (needle NULL: any details) */
void kc_expect_fail(const struct gc_result *r, grpc_status_code code,
                    const char *needle, const char *what);

/* kc_expect_bytes - assert got holds exactly want[0..wlen); the message
 * shows the start of both */
void kc_expect_bytes(ProtobufCBinaryData got, const void *want, size_t wlen,
                     const char *what);

/* ---- requests (no assertions: usable from any thread) ------------------- */

/* kc_add_kv_set - append a SetRequest key = val to q */
void kc_add_kv_set(struct gc_reqs *q, const char *key, const char *val);

/* kc_add_query - append a RawQuery of sql on target (a
 * Buffdb__Query__TargetStore) to q */
void kc_add_query(struct gc_reqs *q, const char *sql, int target);

/* kc_kv_set_r / kc_kv_get_r / kc_kv_del_r - one Set, Get or Delete
 * (Get and Delete with KC_DEADLINE_MS); r as answered */
void kc_kv_set_r(struct gc_conn *c, const char *txn, const char *key,
                 const char *val, int deadline_ms, struct gc_result *r);
void kc_kv_get_r(struct gc_conn *c, const char *txn, const char *key,
                 struct gc_result *r);
void kc_kv_del_r(struct gc_conn *c, const char *txn, const char *key,
                 struct gc_result *r);

/*
 * kc_begin_r - BeginTransaction (ro < 0, timeout_ms < 0: that field
 * absent).  Returns 0 with the 36-character id in out, or -1 (out "") if
 * the call failed, did not answer one response or the id is not 36
 * characters; r says why.
 */
int kc_begin_r(struct gc_conn *c, int ro, int timeout_ms, char out[37],
               struct gc_result *r);

/*
 * kc_end_r - CommitTransaction (commit 1) or RollbackTransaction of id.
 * Returns 1 for success, 0 for success = false (err holds error_message,
 * "" if none), -1 if the call failed or its response does not decode (r
 * says why).
 */
int kc_end_r(struct gc_conn *c, const char *id, int commit, char *err,
             size_t errlen, int deadline_ms, struct gc_result *r);

/* kc_query_r / kc_execute_r - one Query or Execute of sql on target;
 * r as answered */
void kc_query_r(struct gc_conn *c, const char *sql, int target,
                struct gc_result *r);
void kc_execute_r(struct gc_conn *c, const char *sql, int target,
                  struct gc_result *r);

/* ---- Kv with assertions (test thread only) ------------------------------ */

/* kc_kv_set_ok - Set, asserting OK and the key echoed; returns the pid of
 * the worker that served it */
pid_t kc_kv_set_ok(struct gc_conn *c, const char *txn, const char *key,
                   const char *val);

/* kc_kv_del_ok - Delete, asserting OK and one response */
void kc_kv_del_ok(struct gc_conn *c, const char *txn, const char *key);

/* kc_kv_expect - assert key's value as seen with txn */
void kc_kv_expect(struct gc_conn *c, const char *txn, const char *key,
                  const char *val);

/* kc_kv_expect_missing - assert Get of key is NOT_FOUND, with no response */
void kc_kv_expect_missing(struct gc_conn *c, const char *txn,
                          const char *key);

/* kc_kv_value - key's value (malloc'd), NULL if NOT_FOUND; asserts the Get
 * answered one or the other */
char *kc_kv_value(struct gc_conn *c, const char *key);

/* ---- transactions (test thread only) ------------------------------------ */

/* kc_txn_begin_ex - kc_begin_r, asserting OK and a 36-character id
 * (malloc'd); *pid (if not NULL): the worker that served it */
char *kc_txn_begin_ex(struct gc_conn *c, int ro, int timeout_ms, pid_t *pid);

/* kc_txn_begin - kc_txn_begin_ex with neither read_only nor timeout_ms */
char *kc_txn_begin(struct gc_conn *c);

/* kc_txn_end - Commit (commit 1) or Rollback, asserting an OK call with a
 * decodable response; returns success, error_message in err ("" if
 * none) */
int kc_txn_end(struct gc_conn *c, const char *id, int commit, char *err,
               size_t errlen);

/* ---- raw Query (test thread only) --------------------------------------- */

/* kc_query_int - the value of a one-row, one-column Int64 Query of sql on
 * target, asserting that shape */
int64_t kc_query_int(struct gc_conn *c, const char *sql, int target);

/* kc_blob_count - SELECT count(*) FROM blob */
int64_t kc_blob_count(struct gc_conn *c);

/* ---- reaching a particular worker (test thread only) -------------------- */

/*
 * kc_conn_probe - a fresh connection and the worker it reached, found by a
 * Set of the key "probe" (deadline_ms) and its buffdb-worker-pid
 * metadata; *pid 0 if the probe did not answer OK.
 */
struct gc_conn *kc_conn_probe(struct ts_server *s, int deadline_ms,
                              pid_t *pid);

/*
 * kc_conn_find - a fresh connection served by worker pid (KC_SAME) or by
 * a worker other than pid (KC_OTHER), within KC_FIND_TRIES probes; asserts
 * it found one.  *got (if not NULL): its worker.
 */
struct gc_conn *kc_conn_find(struct ts_server *s, pid_t pid,
                             enum kc_which which, int deadline_ms,
                             pid_t *got);

/* kc_fresh_worker - wait up to timeout_ms for a worker not in
 * old[0..nold) that logged "listening"; its pid, or 0 */
pid_t kc_fresh_worker(struct ts_server *s, const pid_t *old, int nold,
                      int timeout_ms);

/* ---- killing and restarting (test thread only) -------------------------- */

/* kc_kill_server - SIGKILL the master and every worker, wait until all are
 * gone (bounded), reap, and assert the log is clean */
void kc_kill_server(struct ts_server *s);

/* kc_restart - a new server (new port, new log) on the stores of old; *kv
 * and *blob are their paths (the caller frees them) */
struct ts_server *kc_restart(struct ts_server *old, char **kv, char **blob);

#endif /* BFDB_TESTS_KV_CLIENT_H */
