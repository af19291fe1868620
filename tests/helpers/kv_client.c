/*
 * kv_client.c - the gRPC integration suites' shared client helpers (see
 * kv_client.h)
 *
 * Used by the test process only: the *_r calls and request builders from
 * any of its threads, everything that asserts from the test's own thread
 * (Criterion's cr_assert ends the test from there).
 */
#include "config.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "google/protobuf/wrappers.pb-c.h"
#include "kv.pb-c.h"
#include "kv_client.h"
#include "query.pb-c.h"

/* how much of a value a failed kc_expect_bytes shows */
#define SHOW_MAX 64

/* ---- the suite ---------------------------------------------------------- */

void
kc_suite_init(void)
{
    grpc_init();
}

void
kc_suite_fini(void)
{
    gc_cleanup_all();
    ts_cleanup_all();
    grpc_shutdown_blocking();
}

/* ---- small helpers ------------------------------------------------------ */

ProtobufCBinaryData
kc_str(const char *s)
{
    ProtobufCBinaryData b = {strlen(s), (uint8_t *)s};
    return b;
}

ProtobufCBinaryData
kc_bytes(const void *p, size_t n)
{
    ProtobufCBinaryData b = {n, (uint8_t *)p};
    return b;
}

char *
kc_dupn(const void *p, size_t n)
{
    char *s = malloc(n + 1);

    if (s != NULL) {
        if (n)
            memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

int
kc_pid_in(pid_t p, const pid_t *set, int n)
{
    for (int i = 0; i < n; i++)
        if (set[i] == p)
            return 1;
    return 0;
}

/* ---- calls and their status --------------------------------------------- */

struct gc_conn *
kc_conn_to(struct ts_server *s)
{
    struct gc_conn *c = gc_connect(s->addr);
    cr_assert_not_null(c, "could not create a channel to %s", s->addr);
    return c;
}

void
kc_call1(struct gc_conn *c, const char *method, const ProtobufCMessage *m,
         int deadline_ms, struct gc_result *r)
{
    struct gc_buf b = gc_pack(m);

    gc_call(c, method, &b, 1, deadline_ms, r);
    free(b.data);
}

void
kc_expect_status(const struct gc_result *r, grpc_status_code code,
                 const char *what)
{
    cr_assert_eq(r->code, code, "%s: status %s (\"%s\") after %zu responses, "
                 "expected %s", what, gc_status_name(r->code), r->details,
                 r->n, gc_status_name(code));
}

void
kc_expect_fail(const struct gc_result *r, grpc_status_code code,
               const char *needle, const char *what)
{
    kc_expect_status(r, code, what);
    cr_assert_eq(r->n, 0, "%s: %zu responses before the error", what, r->n);
    cr_assert(needle == NULL || strstr(r->details, needle) != NULL,
              "%s: details \"%s\" do not mention \"%s\"", what, r->details,
              needle ? needle : "");
}

void
kc_expect_bytes(ProtobufCBinaryData got, const void *want, size_t wlen,
                const char *what)
{
    const char *g = got.len ? (const char *)got.data : "";
    const char *w = wlen ? (const char *)want : "";
    int gshow = (int)(got.len < SHOW_MAX ? got.len : SHOW_MAX);
    int wshow = (int)(wlen < SHOW_MAX ? wlen : SHOW_MAX);

    cr_assert_eq(got.len, wlen, "%s: %zu bytes (\"%.*s\"), expected %zu "
                 "(\"%.*s\")", what, got.len, gshow, g, wlen, wshow, w);
    cr_assert(wlen == 0 || memcmp(got.data, want, wlen) == 0,
              "%s: got \"%.*s\", expected \"%.*s\"", what, gshow, g, wshow,
              w);
}

/* ---- requests ----------------------------------------------------------- */

void
kc_add_kv_set(struct gc_reqs *q, const char *key, const char *val)
{
    Buffdb__Kv__SetRequest m = BUFFDB__KV__SET_REQUEST__INIT;
    m.key = kc_str(key);
    m.value = kc_str(val);
    gc_reqs_add(q, &m.base);
}

void
kc_add_query(struct gc_reqs *q, const char *sql, int target)
{
    Buffdb__Query__RawQuery m = BUFFDB__QUERY__RAW_QUERY__INIT;
    m.query = kc_str(sql);
    m.target = (Buffdb__Query__TargetStore)target;
    gc_reqs_add(q, &m.base);
}

void
kc_kv_set_r(struct gc_conn *c, const char *txn, const char *key,
            const char *val, int deadline_ms, struct gc_result *r)
{
    Buffdb__Kv__SetRequest m = BUFFDB__KV__SET_REQUEST__INIT;
    m.key = kc_str(key);
    m.value = kc_str(val);
    if (txn != NULL) {
        m._transaction_id_case =
            BUFFDB__KV__SET_REQUEST___TRANSACTION_ID_TRANSACTION_ID;
        m.transaction_id = kc_str(txn);
    }
    kc_call1(c, KC_KV_SET, &m.base, deadline_ms, r);
}

void
kc_kv_get_r(struct gc_conn *c, const char *txn, const char *key,
            struct gc_result *r)
{
    Buffdb__Kv__GetRequest m = BUFFDB__KV__GET_REQUEST__INIT;
    m.key = kc_str(key);
    if (txn != NULL) {
        m._transaction_id_case =
            BUFFDB__KV__GET_REQUEST___TRANSACTION_ID_TRANSACTION_ID;
        m.transaction_id = kc_str(txn);
    }
    kc_call1(c, KC_KV_GET, &m.base, KC_DEADLINE_MS, r);
}

void
kc_kv_del_r(struct gc_conn *c, const char *txn, const char *key,
            struct gc_result *r)
{
    Buffdb__Kv__DeleteRequest m = BUFFDB__KV__DELETE_REQUEST__INIT;
    m.key = kc_str(key);
    if (txn != NULL) {
        m._transaction_id_case =
            BUFFDB__KV__DELETE_REQUEST___TRANSACTION_ID_TRANSACTION_ID;
        m.transaction_id = kc_str(txn);
    }
    kc_call1(c, KC_KV_DELETE, &m.base, KC_DEADLINE_MS, r);
}

int
kc_begin_r(struct gc_conn *c, int ro, int timeout_ms, char out[37],
           struct gc_result *r)
{
    Buffdb__Kv__BeginTransactionRequest m =
        BUFFDB__KV__BEGIN_TRANSACTION_REQUEST__INIT;
    if (ro >= 0) {
        m._read_only_case =
            BUFFDB__KV__BEGIN_TRANSACTION_REQUEST___READ_ONLY_READ_ONLY;
        m.read_only = ro != 0;
    }
    if (timeout_ms >= 0) {
        m._timeout_ms_case =
            BUFFDB__KV__BEGIN_TRANSACTION_REQUEST___TIMEOUT_MS_TIMEOUT_MS;
        m.timeout_ms = timeout_ms;
    }
    kc_call1(c, KC_KV_BEGIN, &m.base, KC_DEADLINE_MS, r);
    out[0] = '\0';
    if (r->code != GRPC_STATUS_OK || r->n != 1)
        return -1;
    Buffdb__Kv__BeginTransactionResponse *p =
        buffdb__kv__begin_transaction_response__unpack(NULL, r->msgs[0].len,
                                                       r->msgs[0].data);
    if (p == NULL)
        return -1;
    int ok = p->transaction_id.len == 36;
    if (ok) {
        memcpy(out, p->transaction_id.data, 36);
        out[36] = '\0';
    }
    buffdb__kv__begin_transaction_response__free_unpacked(p, NULL);
    return ok ? 0 : -1;
}

int
kc_end_r(struct gc_conn *c, const char *id, int commit, char *err,
         size_t errlen, int deadline_ms, struct gc_result *r)
{
    err[0] = '\0';
    if (commit) {
        Buffdb__Kv__CommitTransactionRequest m =
            BUFFDB__KV__COMMIT_TRANSACTION_REQUEST__INIT;
        m.transaction_id = kc_str(id);
        kc_call1(c, KC_KV_COMMIT, &m.base, deadline_ms, r);
    } else {
        Buffdb__Kv__RollbackTransactionRequest m =
            BUFFDB__KV__ROLLBACK_TRANSACTION_REQUEST__INIT;
        m.transaction_id = kc_str(id);
        kc_call1(c, KC_KV_ROLLBACK, &m.base, deadline_ms, r);
    }
    if (r->code != GRPC_STATUS_OK || r->n != 1)
        return -1;
    /* both responses: success = 1, optional error_message = 2 */
    Buffdb__Kv__CommitTransactionResponse *m =
        buffdb__kv__commit_transaction_response__unpack(NULL, r->msgs[0].len,
                                                        r->msgs[0].data);
    if (m == NULL)
        return -1;
    int ok = m->success ? 1 : 0;
    if (m->_error_message_case != 0)
        snprintf(err, errlen, "%.*s", (int)m->error_message.len,
                 (const char *)m->error_message.data);
    buffdb__kv__commit_transaction_response__free_unpacked(m, NULL);
    return ok;
}

void
kc_query_r(struct gc_conn *c, const char *sql, int target,
           struct gc_result *r)
{
    Buffdb__Query__RawQuery m = BUFFDB__QUERY__RAW_QUERY__INIT;
    m.query = kc_str(sql);
    m.target = (Buffdb__Query__TargetStore)target;
    kc_call1(c, KC_QUERY_QUERY, &m.base, KC_DEADLINE_MS, r);
}

void
kc_execute_r(struct gc_conn *c, const char *sql, int target,
             struct gc_result *r)
{
    Buffdb__Query__RawQuery m = BUFFDB__QUERY__RAW_QUERY__INIT;
    m.query = kc_str(sql);
    m.target = (Buffdb__Query__TargetStore)target;
    kc_call1(c, KC_QUERY_EXECUTE, &m.base, KC_DEADLINE_MS, r);
}

/* ---- Kv with assertions ------------------------------------------------- */

pid_t
kc_kv_set_ok(struct gc_conn *c, const char *txn, const char *key,
             const char *val)
{
    struct gc_result r;
    char what[200];

    snprintf(what, sizeof(what), "Set %s%s", key, txn ? " in a txn" : "");
    kc_kv_set_r(c, txn, key, val, KC_DEADLINE_MS, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, what);
    cr_assert_eq(r.n, 1, "%s: %zu responses", what, r.n);
    Buffdb__Kv__SetResponse *m =
        buffdb__kv__set_response__unpack(NULL, r.msgs[0].len, r.msgs[0].data);
    cr_assert_not_null(m, "%s: undecodable SetResponse", what);
    kc_expect_bytes(m->key, key, strlen(key), what);
    buffdb__kv__set_response__free_unpacked(m, NULL);
    pid_t pid = r.worker_pid;
    gc_result_free(&r);
    return pid;
}

void
kc_kv_del_ok(struct gc_conn *c, const char *txn, const char *key)
{
    struct gc_result r;
    char what[200];

    snprintf(what, sizeof(what), "Delete %s%s", key, txn ? " in a txn" : "");
    kc_kv_del_r(c, txn, key, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, what);
    cr_assert_eq(r.n, 1, "%s: %zu responses", what, r.n);
    gc_result_free(&r);
}

void
kc_kv_expect(struct gc_conn *c, const char *txn, const char *key,
             const char *val)
{
    struct gc_result r;
    char what[200];

    snprintf(what, sizeof(what), "Get %s%s", key, txn ? " in a txn" : "");
    kc_kv_get_r(c, txn, key, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, what);
    cr_assert_eq(r.n, 1, "%s: %zu responses", what, r.n);
    Buffdb__Kv__GetResponse *m =
        buffdb__kv__get_response__unpack(NULL, r.msgs[0].len, r.msgs[0].data);
    cr_assert_not_null(m, "%s: undecodable GetResponse", what);
    kc_expect_bytes(m->value, val, strlen(val), what);
    buffdb__kv__get_response__free_unpacked(m, NULL);
    gc_result_free(&r);
}

void
kc_kv_expect_missing(struct gc_conn *c, const char *txn, const char *key)
{
    struct gc_result r;
    char what[200];

    snprintf(what, sizeof(what), "Get %s%s (expected missing)", key,
             txn ? " in a txn" : "");
    kc_kv_get_r(c, txn, key, &r);
    kc_expect_status(&r, GRPC_STATUS_NOT_FOUND, what);
    cr_assert_eq(r.n, 0, "%s: %zu responses", what, r.n);
    gc_result_free(&r);
}

char *
kc_kv_value(struct gc_conn *c, const char *key)
{
    struct gc_result r;
    char *out = NULL;

    kc_kv_get_r(c, NULL, key, &r);
    cr_assert(r.code == GRPC_STATUS_OK || r.code == GRPC_STATUS_NOT_FOUND,
              "Get %s: %s (\"%s\")", key, gc_status_name(r.code), r.details);
    if (r.code == GRPC_STATUS_OK) {
        cr_assert_eq(r.n, 1, "Get %s: %zu responses", key, r.n);
        Buffdb__Kv__GetResponse *m = buffdb__kv__get_response__unpack(
            NULL, r.msgs[0].len, r.msgs[0].data);
        cr_assert_not_null(m, "Get %s: undecodable GetResponse", key);
        out = kc_dupn(m->value.data, m->value.len);
        cr_assert_not_null(out);
        buffdb__kv__get_response__free_unpacked(m, NULL);
    }
    gc_result_free(&r);
    return out;
}

/* ---- transactions ------------------------------------------------------- */

char *
kc_txn_begin_ex(struct gc_conn *c, int ro, int timeout_ms, pid_t *pid)
{
    struct gc_result r;
    char id[37];

    int rc = kc_begin_r(c, ro, timeout_ms, id, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, "BeginTransaction");
    cr_assert_eq(rc, 0, "BeginTransaction: %zu responses, no 36-character "
                 "transaction_id", r.n);
    if (pid != NULL)
        *pid = r.worker_pid;
    gc_result_free(&r);
    char *out = strdup(id);
    cr_assert_not_null(out);
    return out;
}

char *
kc_txn_begin(struct gc_conn *c)
{
    return kc_txn_begin_ex(c, -1, -1, NULL);
}

int
kc_txn_end(struct gc_conn *c, const char *id, int commit, char *err,
           size_t errlen)
{
    struct gc_result r;
    const char *what = commit ? "Commit" : "Rollback";

    int rc = kc_end_r(c, id, commit, err, errlen, KC_DEADLINE_MS, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, what);
    cr_assert_neq(rc, -1, "%s of %s: %zu responses, none decodable", what,
                  id, r.n);
    gc_result_free(&r);
    return rc;
}

/* ---- raw Query ---------------------------------------------------------- */

int64_t
kc_query_int(struct gc_conn *c, const char *sql, int target)
{
    struct gc_result r;

    kc_query_r(c, sql, target, &r);
    kc_expect_status(&r, GRPC_STATUS_OK, sql);
    cr_assert_eq(r.n, 1, "%s: %zu rows", sql, r.n);
    Buffdb__Query__QueryResult *m = buffdb__query__query_result__unpack(
        NULL, r.msgs[0].len, r.msgs[0].data);
    cr_assert_not_null(m, "%s: undecodable QueryResult", sql);
    cr_assert_eq(m->n_fields, 1, "%s: %zu columns", sql, m->n_fields);
    ProtobufCBinaryData u = m->fields[0]->type_url;
    cr_assert(u.len == strlen(KC_URL_INT64) &&
              memcmp(u.data, KC_URL_INT64, u.len) == 0,
              "%s: a column of type %.*s", sql, (int)u.len,
              u.len ? (const char *)u.data : "");
    Google__Protobuf__Int64Value *v = google__protobuf__int64_value__unpack(
        NULL, m->fields[0]->value.len, m->fields[0]->value.data);
    cr_assert_not_null(v, "%s: undecodable Int64Value", sql);
    int64_t out = v->value;
    google__protobuf__int64_value__free_unpacked(v, NULL);
    buffdb__query__query_result__free_unpacked(m, NULL);
    gc_result_free(&r);
    return out;
}

int64_t
kc_blob_count(struct gc_conn *c)
{
    return kc_query_int(c, "SELECT count(*) FROM blob",
                        BUFFDB__QUERY__TARGET_STORE__BLOB);
}

/* ---- reaching a particular worker --------------------------------------- */

struct gc_conn *
kc_conn_probe(struct ts_server *s, int deadline_ms, pid_t *pid)
{
    struct gc_conn *c = kc_conn_to(s);
    struct gc_result r;

    kc_kv_set_r(c, NULL, "probe", "p", deadline_ms, &r);
    *pid = r.code == GRPC_STATUS_OK ? r.worker_pid : 0;
    gc_result_free(&r);
    return c;
}

struct gc_conn *
kc_conn_find(struct ts_server *s, pid_t pid, enum kc_which which,
             int deadline_ms, pid_t *got)
{
    for (int i = 0; i < KC_FIND_TRIES; i++) {
        pid_t p;
        struct gc_conn *c = kc_conn_probe(s, deadline_ms, &p);
        if (p != 0 && (which == KC_SAME ? p == pid : p != pid)) {
            if (got != NULL)
                *got = p;
            return c;
        }
        gc_close(c);
    }
    cr_assert_fail("%d fresh connections, none reached %s worker %ld",
                   KC_FIND_TRIES,
                   which == KC_SAME ? "the" : "a worker other than",
                   (long)pid);
    return NULL;
}

pid_t
kc_fresh_worker(struct ts_server *s, const pid_t *old, int nold,
                int timeout_ms)
{
    long until = ts_now_ms() + timeout_ms;

    for (;;) {
        pid_t l[64], now[TS_MAX_WORKERS];
        int nl = ts_listening_pids(s, l, 64);
        int n = ts_worker_pids(s, now, TS_MAX_WORKERS);
        for (int i = 0; i < n; i++)
            if (!kc_pid_in(now[i], old, nold) && kc_pid_in(now[i], l, nl))
                return now[i];
        if (ts_now_ms() >= until)
            return 0;
        ts_sleep_ms(20);
    }
}

/* ---- killing and restarting --------------------------------------------- */

void
kc_kill_server(struct ts_server *s)
{
    pid_t w[TS_MAX_WORKERS];
    int n = ts_worker_pids(s, w, TS_MAX_WORKERS);

    cr_assert_gt(n, 0, "no worker to kill");
    cr_assert_eq(ts_signal(s, SIGKILL), 0);
    for (int i = 0; i < n; i++)
        kill(w[i], SIGKILL);
    cr_assert(ts_wait_exit(s, 10000), "the master survived SIGKILL");
    long until = ts_now_ms() + 10000;
    for (int i = 0; i < n; i++)
        while (ts_pid_alive(w[i]) && ts_now_ms() < until)
            ts_sleep_ms(10);
    for (int i = 0; i < n; i++)
        cr_assert(!ts_pid_alive(w[i]), "worker %ld survived SIGKILL",
                  (long)w[i]);
    ts_stop(s); /* reaps; nothing left to signal */
    ts_assert_log_clean(s);
}

struct ts_server *
kc_restart(struct ts_server *old, char **kv, char **blob)
{
    *kv = ts_path(old, "kv_store.db");
    *blob = ts_path(old, "blob_store.db");
    const char *args[] = {"--kv-store", *kv, "--blob-store", *blob, NULL};
    struct ts_opts o = {.no_stores = 1, .args = args};
    return ts_start(&o);
}
