/*
 * test_coherence.c - stress tests of the key cache's coherence guarantee
 * (docs/ARCHITECTURE.md, "Cache coherence"): once a Set, Delete or raw SQL
 * write on the kv store has been acknowledged to any client, no Get that
 * starts afterwards, on any worker, returns an older value.
 *
 * The real buffdb binary ($BUFFDB_BIN) is started by tests/helpers/server.c
 * and driven over gRPC by tests/helpers/grpc_client.c from several client
 * threads at once, each with connections of its own (distinct channel
 * arguments, so the kernel spreads them over the workers).  Every call
 * carries one request, and every Get is a call of its own, so "a Get that
 * starts after an acknowledgement" is well defined.  The check itself is
 * described above check_get().
 *
 * The tests end with ts_stop_ok(), which also asserts that the server's
 * log holds no sanitizer report.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <grpc/grpc.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../helpers/grpc_client.h"
#include "../helpers/helpers.h"
#include "../helpers/kv_client.h"
#include "../helpers/server.h"
#include "kv.pb-c.h"
#include "query.pb-c.h"

#define STRESS_DEADLINE_MS 10000

TestSuite(coherence, .init = kc_suite_init, .fini = kc_suite_fini,
          .timeout = 180.);

/* ---- small helpers ------------------------------------------------------- */

static void
add_get(struct gc_reqs *q, const char *k)
{
    Buffdb__Kv__GetRequest m = BUFFDB__KV__GET_REQUEST__INIT;
    m.key = kc_str(k);
    gc_reqs_add(q, &m.base);
}

static void
add_delete(struct gc_reqs *q, const char *k)
{
    Buffdb__Kv__DeleteRequest m = BUFFDB__KV__DELETE_REQUEST__INIT;
    m.key = kc_str(k);
    gc_reqs_add(q, &m.base);
}

/* one_call - one call of the single request in q (q is emptied) */
static void
one_call(struct gc_conn *c, const char *method, struct gc_reqs *q,
         int deadline_ms, struct gc_result *r)
{
    gc_call(c, method, q->v, q->n, deadline_ms, r);
    gc_reqs_free(q);
}

/* get_value - the value of a one-response Get as a malloc'd string, or
 * NULL if the response does not decode */
static char *
get_value(const struct gc_result *r)
{
    if (r->n != 1)
        return NULL;
    Buffdb__Kv__GetResponse *m =
        buffdb__kv__get_response__unpack(NULL, r->msgs[0].len,
                                         r->msgs[0].data);
    if (m == NULL)
        return NULL;
    char *v = malloc(m->value.len + 1);
    if (v != NULL) {
        memcpy(v, m->value.data, m->value.len);
        v[m->value.len] = '\0';
    }
    buffdb__kv__get_response__free_unpacked(m, NULL);
    return v;
}

/* rows_of - the RowsChanged of a one-response Execute, or -1 */
static long long
rows_of(const struct gc_result *r)
{
    if (r->n != 1)
        return -1;
    Buffdb__Query__RowsChanged *m = buffdb__query__rows_changed__unpack(
        NULL, r->msgs[0].len, r->msgs[0].data);
    if (m == NULL)
        return -1;
    long long n = (long long)m->rows_changed;
    buffdb__query__rows_changed__free_unpacked(m, NULL);
    return n;
}

/* ---- main-thread checks (they assert) ------------------------------------ */

static void
kv_set(struct gc_conn *c, const char *k, const char *v)
{
    struct gc_reqs q = {0};
    struct gc_result r;

    kc_add_kv_set(&q, k, v);
    one_call(c, KC_KV_SET, &q, KC_DEADLINE_MS, &r);
    cr_assert_eq(r.code, GRPC_STATUS_OK, "Set %s: %s (%s)", k,
                 gc_status_name(r.code), r.details);
    cr_assert_eq(r.n, 1, "Set %s: %zu responses", k, r.n);
    gc_result_free(&r);
}

/* kv_expect - assert k's value through c; returns the serving worker */
static pid_t
kv_expect(struct gc_conn *c, const char *k, const char *want)
{
    struct gc_reqs q = {0};
    struct gc_result r;

    add_get(&q, k);
    one_call(c, KC_KV_GET, &q, KC_DEADLINE_MS, &r);
    cr_assert_eq(r.code, GRPC_STATUS_OK, "Get %s: %s (%s), expected \"%s\"",
                 k, gc_status_name(r.code), r.details, want);
    char *v = get_value(&r);
    cr_assert_not_null(v, "Get %s: %zu responses or undecodable", k, r.n);
    cr_assert_str_eq(v, want, "Get %s: \"%s\", expected \"%s\"", k, v, want);
    free(v);
    pid_t pid = r.worker_pid;
    gc_result_free(&r);
    return pid;
}

static void
kv_expect_missing(struct gc_conn *c, const char *k)
{
    struct gc_reqs q = {0};
    struct gc_result r;

    add_get(&q, k);
    one_call(c, KC_KV_GET, &q, KC_DEADLINE_MS, &r);
    char *v = r.code == GRPC_STATUS_OK ? get_value(&r) : NULL;
    cr_assert_eq(r.code, GRPC_STATUS_NOT_FOUND,
                 "Get %s: %s (%s) value \"%s\", expected NOT_FOUND", k,
                 gc_status_name(r.code), r.details, v ? v : "");
    free(v);
    gc_result_free(&r);
}

/* stats_out - the output of `buffdb stats -s DIR/kv_store.db [--locks]`,
 * asserting it ran; malloc'd */
static char *
stats_out(struct ts_server *s, int locks)
{
    struct th_run run;
    char *kv = ts_path(s, "kv_store.db");

    int rc = locks ? th_buffdb(&run, NULL, NULL, 0, "stats", "-s", kv,
                               "--locks", (char *)NULL)
                   : th_buffdb(&run, NULL, NULL, 0, "stats", "-s", kv,
                               (char *)NULL);
    free(kv);
    cr_assert_eq(rc, 0, "could not run buffdb stats");
    cr_assert_eq(run.status, 0, "buffdb stats exited %d: %s", run.status,
                 run.err ? run.err : "");
    char *out = run.out;
    run.out = NULL;
    th_run_free(&run);
    return out;
}

struct totals {
    unsigned long long hits, misses, fills, skipped, evictions, calls, errors;
};

/* stats_totals - the "total" row of `buffdb stats` */
static struct totals
stats_totals(struct ts_server *s)
{
    struct totals t;
    char *out = stats_out(s, 0);
    const char *line = strstr(out, "\ntotal ");

    memset(&t, 0, sizeof(t));
    cr_assert_not_null(line, "no \"total\" row in buffdb stats:\n%s", out);
    int n = sscanf(line + 1, "total %*d %llu %llu %llu %llu %llu %llu %llu",
                   &t.hits, &t.misses, &t.fills, &t.skipped, &t.evictions,
                   &t.calls, &t.errors);
    cr_assert_eq(n, 7, "unparsable \"total\" row in buffdb stats:\n%s", out);
    free(out);
    return t;
}

/* get_from - a Get of k served by worker pid, on fresh connections (the
 * kernel picks the worker); asserts the value.  1 if pid served one. */
static int
get_from(struct ts_server *s, pid_t pid, const char *k, const char *want,
         int attempts)
{
    for (int i = 0; i < attempts; i++) {
        struct gc_conn *c = kc_conn_to(s);
        pid_t by = kv_expect(c, k, want);
        gc_close(c);
        if (by == pid)
            return 1;
    }
    return 0;
}

/* ============================================================================
 * The stress harness
 * ========================================================================== */

/*
 * Logical time.  One atomic counter, `clock`, hands out ticks.  A write
 * takes a tick before it is sent: that is its version v, which its value
 * encodes ("v=<v>;k=<key>;..."), so a Get tells exactly which write it
 * saw.  When the acknowledgement arrives the writer takes another tick,
 * the write's ack tick a(v), records it, and then raises acked_max[k] to
 * v.  A write that got no acknowledgement (an error, UNAVAILABLE after a
 * kill) is "maybe": it may or may not have happened, and it never raises
 * acked_max.  A raw UPDATE that changed no row wrote nothing: "noop".
 *
 * The check (check_get).  A reader reads floor = acked_max[k] before it
 * sends its Get, and takes a tick g1 when the answer has arrived.  So the
 * write F with version floor was acknowledged before the Get started, and
 * floor is the newest *invocation* among such writes.  Writes of one key
 * that overlap in time may commit in either order (the key lock, or
 * SQLite for raw SQL, decides), so version order alone proves nothing;
 * real-time order does: if a write W was acknowledged before a write W'
 * was sent, W' committed after W.  Hence:
 *
 *   - the Get returned the value of write u: u is stale iff some write
 *     acknowledged before the Get started was sent after u was
 *     acknowledged, i.e. iff floor > a(u) (the newest such invocation is
 *     floor itself).  A u that is still pending or "maybe" has no a(u) and
 *     is accepted; a u that is "noop", of another key or not a write at
 *     all is a violation too (a value nobody wrote);
 *   - the Get answered NOT_FOUND: fine if nothing was acknowledged on the
 *     key yet (floor = 0), or if some Delete D of k sent before the answer
 *     (v(D) < g1) is pending, "maybe", or acknowledged after floor was
 *     sent (a(D) > floor): that D cannot be proven overwritten.  Otherwise
 *     every Delete was followed by a write acknowledged before the Get
 *     started: a violation.
 *
 * Ticks are taken with sequentially consistent atomics, and a reader
 * reads acked_max before sending, so every conclusion above rests only on
 * the order in which the client threads saw things happen.
 */
#define NKEYS 8
/* the transaction thread writes the last TXN_KEYS keys, the Set/Delete
 * writers the others (readers and raw SQL all of them): a Set waiting for
 * a key a transaction holds would block its worker, and with it the
 * transaction's next call if that worker serves it, until lock_wait */
#define TXN_KEYS 3
#define NCONN 3              /* connections per client thread */
#define RECONNECT_EVERY 64   /* ops: replace one connection (spreads load) */
#define MAX_TICKS (1u << 21) /* the op table */
#define TICK_HEADROOM 4096   /* stop before the table is full */
#define MAX_OPS_PER_THREAD 200000
#define MAX_DELS 32768       /* Deletes remembered per key */
#define MAX_NOTES 8

#define ACK_PENDING 0
#define ACK_MAYBE UINT64_MAX
#define ACK_NOOP (UINT64_MAX - 1)

enum { OP_NONE = 0, OP_SET, OP_DEL, OP_RAW };
enum { ROLE_WRITER, ROLE_RAW, ROLE_TXN, ROLE_READER };

struct stress {
    const char *addr;
    long t_end;
    int stop;                 /* atomic */
    uint64_t clock;           /* atomic; the next tick */
    uint32_t *op_meta;        /* per tick: kind | key << 8 (atomic) */
    uint64_t *op_ack;         /* per tick: ACK_* or the ack tick (atomic) */
    uint64_t acked_max[NKEYS]; /* atomic */
    pthread_mutex_t del_mu[NKEYS];
    uint64_t *dels[NKEYS];
    int ndels[NKEYS];

    /* counters (atomic adds) */
    uint64_t reads, reads_value, reads_missing, reads_failed;
    uint64_t sets, deletes, raws, raw_noops, txns, txns_failed;
    uint64_t maybes, unavailable, other_errors, violations;

    pthread_mutex_t mu;       /* notes and served */
    char notes[MAX_NOTES][320];
    int nnotes;
    char error_note[320];
    char txn_note[320];       /* the first refused commit */
    pid_t served[256];
    int nserved;
};

struct client {
    struct stress *s;
    int role;
    uint64_t rng;
    struct gc_conn *conn[NCONN];
};

static void
bump(uint64_t *n)
{
    __atomic_fetch_add(n, 1, __ATOMIC_SEQ_CST);
}

static uint64_t
rnd(struct client *c)
{
    uint64_t x = c->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return c->rng = x;
}

/* tick - the next tick; past the headroom it also asks everyone to stop */
static uint64_t
tick(struct stress *s)
{
    uint64_t t = __atomic_fetch_add(&s->clock, 1, __ATOMIC_SEQ_CST);
    if (t >= MAX_TICKS - TICK_HEADROOM)
        __atomic_store_n(&s->stop, 1, __ATOMIC_SEQ_CST);
    if (t >= MAX_TICKS)
        abort(); /* cannot happen: each thread takes <= 4 ticks per op */
    return t;
}

static void
note(struct stress *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
note(struct stress *s, const char *fmt, ...)
{
    va_list ap;

    pthread_mutex_lock(&s->mu);
    if (s->nnotes < MAX_NOTES) {
        va_start(ap, fmt);
        vsnprintf(s->notes[s->nnotes++], sizeof(s->notes[0]), fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&s->mu);
}

static void
served_by(struct stress *s, pid_t pid)
{
    if (pid <= 0)
        return;
    pthread_mutex_lock(&s->mu);
    if (!kc_pid_in(pid, s->served, s->nserved) &&
        s->nserved < (int)(sizeof(s->served) / sizeof(s->served[0])))
        s->served[s->nserved++] = pid;
    pthread_mutex_unlock(&s->mu);
}

static int
was_served_by(struct stress *s, pid_t pid)
{
    pthread_mutex_lock(&s->mu);
    int r = kc_pid_in(pid, s->served, s->nserved);
    pthread_mutex_unlock(&s->mu);
    return r;
}

static void
key_name(int k, char *buf, size_t cap)
{
    snprintf(buf, cap, "ck%d", k);
}

/* make_value - the value of write v of key k, of varying length */
static void
make_value(uint64_t v, int k, char *buf, size_t cap)
{
    int pad = (int)(v % 48);
    int n = snprintf(buf, cap, "v=%" PRIu64 ";k=ck%d;", v, k);
    for (int i = 0; i < pad && n + 1 < (int)cap; i++)
        buf[n++] = (char)('a' + (v + (uint64_t)i) % 26);
    buf[n] = '\0';
}

/* parse_value - version and key index of a value; 0, or -1 if foreign */
static int
parse_value(const char *val, uint64_t *v, int *k)
{
    unsigned long long ver;
    int key, used = 0;

    if (sscanf(val, "v=%llu;k=ck%d;%n", &ver, &key, &used) != 2 || used == 0)
        return -1;
    *v = ver;
    *k = key;
    return 0;
}

static void
record_op(struct stress *s, uint64_t v, int kind, int k)
{
    __atomic_store_n(&s->op_meta[v], (uint32_t)kind | (uint32_t)k << 8,
                     __ATOMIC_SEQ_CST);
}

/* acked - write v of key k was acknowledged: its ack tick, then the floor */
static void
acked(struct stress *s, uint64_t v, int k)
{
    uint64_t a = tick(s);
    __atomic_store_n(&s->op_ack[v], a, __ATOMIC_SEQ_CST);
    uint64_t cur = __atomic_load_n(&s->acked_max[k], __ATOMIC_SEQ_CST);
    while (cur < v && !__atomic_compare_exchange_n(&s->acked_max[k], &cur, v,
                                                   0, __ATOMIC_SEQ_CST,
                                                   __ATOMIC_SEQ_CST))
        ;
}

/* failed - a call ended without the expected answer: count it, and
 * replace the connection if the transport looks broken */
static void
failed(struct client *c, int ci, const struct gc_result *r, const char *what)
{
    struct stress *s = c->s;

    if (r->code == GRPC_STATUS_UNAVAILABLE) {
        bump(&s->unavailable);
    } else {
        if (__atomic_fetch_add(&s->other_errors, 1, __ATOMIC_SEQ_CST) == 0) {
            pthread_mutex_lock(&s->mu);
            snprintf(s->error_note, sizeof(s->error_note),
                     "%s: %s (%s) after %zu responses", what,
                     gc_status_name(r->code), r->details, r->n);
            pthread_mutex_unlock(&s->mu);
        }
    }
    if (r->code == GRPC_STATUS_UNAVAILABLE ||
        r->code == GRPC_STATUS_UNKNOWN || r->code == GRPC_STATUS_INTERNAL ||
        r->code == GRPC_STATUS_CANCELLED) {
        gc_close(c->conn[ci]);
        c->conn[ci] = gc_connect(s->addr);
    }
}

static void
do_write(struct client *c, int ci)
{
    struct stress *s = c->s;
    int k = (int)(rnd(c) % (NKEYS - TXN_KEYS));
    int del = rnd(c) % 100 < 25;
    char key[16], val[128];
    struct gc_reqs q = {0};
    struct gc_result r;

    pthread_mutex_lock(&s->del_mu[k]);
    if (s->ndels[k] >= MAX_DELS)
        del = 0;
    uint64_t v = tick(s);
    record_op(s, v, del ? OP_DEL : OP_SET, k);
    if (del)
        s->dels[k][s->ndels[k]++] = v; /* known before it is sent */
    pthread_mutex_unlock(&s->del_mu[k]);

    key_name(k, key, sizeof(key));
    if (del) {
        add_delete(&q, key);
    } else {
        make_value(v, k, val, sizeof(val));
        kc_add_kv_set(&q, key, val);
    }
    one_call(c->conn[ci], del ? KC_KV_DELETE : KC_KV_SET, &q,
             STRESS_DEADLINE_MS, &r);
    if (r.code == GRPC_STATUS_OK && r.n == 1) {
        acked(s, v, k);
        bump(del ? &s->deletes : &s->sets);
        served_by(s, r.worker_pid);
    } else {
        __atomic_store_n(&s->op_ack[v], ACK_MAYBE, __ATOMIC_SEQ_CST);
        bump(&s->maybes);
        failed(c, ci, &r, del ? "Delete" : "Set");
    }
    gc_result_free(&r);
}

/* do_raw - a raw SQL write through Query.Execute: an UPDATE (which
 * changes nothing if the key is deleted) or an INSERT OR REPLACE */
static void
do_raw(struct client *c, int ci)
{
    struct stress *s = c->s;
    int k = (int)(rnd(c) % NKEYS);
    int update = rnd(c) % 100 < 70;
    char key[16], val[128], sql[320];
    struct gc_reqs q = {0};
    struct gc_result r;

    uint64_t v = tick(s);
    record_op(s, v, OP_RAW, k);
    key_name(k, key, sizeof(key));
    make_value(v, k, val, sizeof(val));
    if (update)
        snprintf(sql, sizeof(sql),
                 "UPDATE kv SET value = '%s' WHERE key = '%s'", val, key);
    else
        snprintf(sql, sizeof(sql),
                 "INSERT OR REPLACE INTO kv(key, value) VALUES ('%s', '%s')",
                 key, val);
    kc_add_query(&q, sql, BUFFDB__QUERY__TARGET_STORE__KV);
    one_call(c->conn[ci], KC_QUERY_EXECUTE, &q, STRESS_DEADLINE_MS, &r);
    long long rows = r.code == GRPC_STATUS_OK ? rows_of(&r) : -1;
    if (rows == 1) {
        acked(s, v, k);
        bump(&s->raws);
        served_by(s, r.worker_pid);
    } else if (rows == 0 && update) {
        /* the key was absent when it ran: it wrote nothing */
        __atomic_store_n(&s->op_ack[v], ACK_NOOP, __ATOMIC_SEQ_CST);
        bump(&s->raw_noops);
        served_by(s, r.worker_pid);
    } else {
        __atomic_store_n(&s->op_ack[v], ACK_MAYBE, __ATOMIC_SEQ_CST);
        bump(&s->maybes);
        if (r.code == GRPC_STATUS_OK) {
            struct gc_result bad = r;
            bad.code = GRPC_STATUS_INTERNAL;
            failed(c, ci, &bad, update ? "Execute UPDATE (rows changed)"
                                       : "Execute REPLACE (rows changed)");
        } else {
            failed(c, ci, &r, "Execute");
        }
    }
    gc_result_free(&r);
}

/* failed_txn - remember the first refused commit's message */
static void
failed_txn(struct stress *s, const char *err)
{
    pthread_mutex_lock(&s->mu);
    if (s->txn_note[0] == '\0')
        snprintf(s->txn_note, sizeof(s->txn_note), "%s", err);
    pthread_mutex_unlock(&s->mu);
}

/* do_txn - two keys set in one transaction: invoked when each is staged,
 * acknowledged when the commit answers success; a transaction that did
 * not commit wrote nothing ("noop"), one whose commit call failed maybe */
static void
do_txn(struct client *c, int ci)
{
    struct stress *s = c->s;
    int ks[2];
    uint64_t v[2];
    char id[37], key[16], val[128], err[256];
    struct gc_result r;
    int staged = 0, recorded = 0;

    int a = (int)(rnd(c) % TXN_KEYS);
    ks[0] = NKEYS - TXN_KEYS + a;
    ks[1] = NKEYS - TXN_KEYS + (a + 1 + (int)(rnd(c) % (TXN_KEYS - 1))) %
                                   TXN_KEYS;
    if (kc_begin_r(c->conn[ci], -1, -1, id, &r) != 0) {
        failed(c, ci, &r, "BeginTransaction");
        gc_result_free(&r);
        return;
    }
    gc_result_free(&r);
    for (int i = 0; i < 2; i++) {
        v[i] = tick(s);
        record_op(s, v[i], OP_SET, ks[i]);
        recorded++;
        key_name(ks[i], key, sizeof(key));
        make_value(v[i], ks[i], val, sizeof(val));
        kc_kv_set_r(c->conn[ci], id, key, val, STRESS_DEADLINE_MS, &r);
        int ok = r.code == GRPC_STATUS_OK && r.n == 1;
        if (!ok)
            failed(c, ci, &r, "Set in a transaction");
        gc_result_free(&r);
        if (!ok)
            break;
        staged++;
    }
    int res = kc_end_r(c->conn[ci], id, staged == 2, err, sizeof(err),
                       STRESS_DEADLINE_MS, &r);
    if (staged == 2 && res == 1) {
        for (int i = 0; i < 2; i++)
            acked(s, v[i], ks[i]);
        bump(&s->txns);
        served_by(s, r.worker_pid);
    } else if (staged == 2 && res < 0) {
        /* the commit call failed: it may have committed */
        for (int i = 0; i < recorded; i++)
            __atomic_store_n(&s->op_ack[v[i]], ACK_MAYBE, __ATOMIC_SEQ_CST);
        bump(&s->maybes);
        failed(c, ci, &r, "CommitTransaction");
    } else {
        /* rolled back, refused, or never committed: nothing written */
        for (int i = 0; i < recorded; i++)
            __atomic_store_n(&s->op_ack[v[i]], ACK_NOOP, __ATOMIC_SEQ_CST);
        bump(&s->txns_failed);
        if (staged == 2)
            failed_txn(s, err);
    }
    gc_result_free(&r);
}

/* check_get - see "The check" above; returns 1 if the answer is allowed */
static int
check_get(struct stress *s, int k, uint64_t floor, uint64_t g1,
          const char *val, int found, char *why, size_t cap)
{
    if (!found) {
        if (floor == 0)
            return 1;
        pthread_mutex_lock(&s->del_mu[k]);
        int ok = 0, n = s->ndels[k];
        for (int i = n - 1; i >= 0 && !ok; i--) {
            uint64_t d = s->dels[k][i];
            if (d >= g1)
                continue;
            uint64_t a = __atomic_load_n(&s->op_ack[d], __ATOMIC_SEQ_CST);
            ok = a == ACK_PENDING || a == ACK_MAYBE || a > floor;
        }
        pthread_mutex_unlock(&s->del_mu[k]);
        if (!ok)
            snprintf(why, cap, "Get ck%d: NOT_FOUND, but write %" PRIu64
                     " (acknowledged before the Get) came after every "
                     "Delete of it (%d Deletes)", k, floor, n);
        return ok;
    }
    uint64_t u;
    int uk;
    if (parse_value(val, &u, &uk) != 0 || uk != k || u == 0 ||
        u >= MAX_TICKS) {
        snprintf(why, cap, "Get ck%d: \"%.60s\" is not a value of that key",
                 k, val);
        return 0;
    }
    uint32_t meta = __atomic_load_n(&s->op_meta[u], __ATOMIC_SEQ_CST);
    int kind = (int)(meta & 0xff);
    if ((kind != OP_SET && kind != OP_RAW) || (int)(meta >> 8) != k) {
        snprintf(why, cap, "Get ck%d: version %" PRIu64 " is not a write "
                 "of that key (meta %#x)", k, u, meta);
        return 0;
    }
    uint64_t a = __atomic_load_n(&s->op_ack[u], __ATOMIC_SEQ_CST);
    if (a == ACK_NOOP) {
        snprintf(why, cap, "Get ck%d: version %" PRIu64 " is an UPDATE that "
                 "changed no row", k, u);
        return 0;
    }
    if (a == ACK_PENDING || a == ACK_MAYBE || floor < a)
        return 1;
    snprintf(why, cap, "Get ck%d: stale version %" PRIu64 " (acknowledged at "
             "tick %" PRIu64 "), but write %" PRIu64 ", sent after that, was "
             "acknowledged before the Get started", k, u, a, floor);
    return 0;
}

static void
do_read(struct client *c, int ci)
{
    struct stress *s = c->s;
    int k = (int)(rnd(c) % NKEYS);
    char key[16], why[320];
    struct gc_reqs q = {0};
    struct gc_result r;

    key_name(k, key, sizeof(key));
    uint64_t floor = __atomic_load_n(&s->acked_max[k], __ATOMIC_SEQ_CST);
    add_get(&q, key);
    one_call(c->conn[ci], KC_KV_GET, &q, STRESS_DEADLINE_MS, &r);
    uint64_t g1 = tick(s);
    bump(&s->reads);
    if (r.code == GRPC_STATUS_OK || r.code == GRPC_STATUS_NOT_FOUND) {
        int found = r.code == GRPC_STATUS_OK;
        char *val = found ? get_value(&r) : NULL;
        served_by(s, r.worker_pid);
        if (found && val == NULL) {
            bump(&s->violations);
            note(s, "Get %s: OK with %zu responses or undecodable", key,
                 r.n);
        } else if (!check_get(s, k, floor, g1, val, found, why,
                              sizeof(why))) {
            bump(&s->violations);
            note(s, "%s (worker %ld)", why, (long)r.worker_pid);
        }
        bump(found ? &s->reads_value : &s->reads_missing);
        free(val);
    } else {
        bump(&s->reads_failed);
        failed(c, ci, &r, "Get");
    }
    gc_result_free(&r);
}

static void *
client_main(void *arg)
{
    struct client *c = arg;
    struct stress *s = c->s;

    for (int i = 0; i < NCONN; i++)
        c->conn[i] = gc_connect(s->addr);
    for (int n = 0; n < MAX_OPS_PER_THREAD &&
                    !__atomic_load_n(&s->stop, __ATOMIC_SEQ_CST) &&
                    ts_now_ms() < s->t_end;
         n++) {
        int ci = (int)(rnd(c) % NCONN);
        if (c->conn[ci] == NULL) {
            c->conn[ci] = gc_connect(s->addr);
            if (c->conn[ci] == NULL) {
                note(s, "gc_connect failed");
                break;
            }
        }
        if (c->role == ROLE_WRITER) {
            do_write(c, ci);
        } else if (c->role == ROLE_RAW) {
            do_raw(c, ci);
            ts_sleep_ms(5); /* each raw write empties the whole cache */
        } else if (c->role == ROLE_TXN) {
            do_txn(c, ci);
        } else {
            do_read(c, ci);
        }
        if (n % RECONNECT_EVERY == RECONNECT_EVERY - 1) {
            /* a new TCP connection: the kernel may pick another worker
             * (after a kill, the replacement) */
            int j = (int)(rnd(c) % NCONN);
            gc_close(c->conn[j]);
            c->conn[j] = gc_connect(s->addr);
        }
    }
    for (int i = 0; i < NCONN; i++)
        gc_close(c->conn[i]);
    return NULL;
}

#define NTHREADS 7
static const int roles[NTHREADS] = {ROLE_WRITER, ROLE_WRITER, ROLE_RAW,
                                    ROLE_TXN, ROLE_READER, ROLE_READER,
                                    ROLE_READER};

static struct stress *
stress_new(struct ts_server *srv, int run_ms)
{
    struct stress *s = calloc(1, sizeof(*s));

    cr_assert_not_null(s);
    s->addr = srv->addr;
    s->clock = 1; /* 0 is "nothing acknowledged yet" */
    s->op_meta = calloc(MAX_TICKS, sizeof(*s->op_meta));
    s->op_ack = calloc(MAX_TICKS, sizeof(*s->op_ack));
    cr_assert(s->op_meta != NULL && s->op_ack != NULL);
    for (int k = 0; k < NKEYS; k++) {
        pthread_mutex_init(&s->del_mu[k], NULL);
        s->dels[k] = calloc(MAX_DELS, sizeof(uint64_t));
        cr_assert_not_null(s->dels[k]);
    }
    pthread_mutex_init(&s->mu, NULL);
    s->t_end = ts_now_ms() + run_ms;
    return s;
}

static void
stress_free(struct stress *s)
{
    for (int k = 0; k < NKEYS; k++) {
        pthread_mutex_destroy(&s->del_mu[k]);
        free(s->dels[k]);
    }
    pthread_mutex_destroy(&s->mu);
    free(s->op_meta);
    free(s->op_ack);
    free(s);
}

static void
stress_start(struct stress *s, pthread_t *thr, struct client *cl)
{
    for (int i = 0; i < NTHREADS; i++) {
        cl[i].s = s;
        cl[i].role = roles[i];
        cl[i].rng = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1) ^
                    (uint64_t)ts_now_ms();
        cr_assert_eq(pthread_create(&thr[i], NULL, client_main, &cl[i]), 0);
    }
}

static void
stress_join(struct stress *s, pthread_t *thr)
{
    (void)s;
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(thr[i], NULL);
}

static char *
notes_text(struct stress *s)
{
    size_t cap = MAX_NOTES * 330 + 1;
    char *t = calloc(1, cap);
    size_t n = 0;

    cr_assert_not_null(t);
    for (int i = 0; i < s->nnotes && n < cap; i++)
        n += (size_t)snprintf(t + n, cap - n, "  %s\n", s->notes[i]);
    return t;
}

/* stress_report - log the numbers and assert the common outcome */
static void
stress_report(struct stress *s, struct ts_server *srv, const char *name,
              struct totals *t, long ms)
{
    uint64_t writes = s->sets + s->deletes + s->raws;
    char *notes = notes_text(s);

    *t = stats_totals(srv);
    cr_log_info("%s: %ld ms, %" PRIu64 " reads (%" PRIu64 " values, %" PRIu64
                " NOT_FOUND, %" PRIu64 " failed), %" PRIu64 " sets, %" PRIu64
                " deletes, %" PRIu64 " raw writes (+%" PRIu64 " no-op), %"
                PRIu64 " transactions (+%" PRIu64 " not committed), %"
                PRIu64 " maybe, %" PRIu64 " UNAVAILABLE, %" PRIu64
                " other errors; %d workers served; cache: %llu hits, %llu "
                "misses, %llu fills, %llu skipped; %" PRIu64 " violations",
                name, ms, s->reads, s->reads_value, s->reads_missing,
                s->reads_failed, s->sets, s->deletes, s->raws, s->raw_noops,
                s->txns, s->txns_failed, s->maybes, s->unavailable,
                s->other_errors, s->nserved,
                t->hits, t->misses, t->fills, t->skipped, s->violations);
    cr_assert_eq(s->violations, 0, "%s: %" PRIu64 " coherence violations, "
                 "first ones:\n%s", name, s->violations, notes);
    cr_assert_eq(s->nnotes, 0, "%s: problems:\n%s", name, notes);
    free(notes);
    cr_assert_geq(s->reads_value + s->reads_missing, 300,
                  "%s: only %" PRIu64 " reads answered", name,
                  s->reads_value + s->reads_missing);
    cr_assert_geq(s->reads_value, 100, "%s: only %" PRIu64 " reads found a "
                  "value", name, s->reads_value);
    cr_assert_geq(writes, 200, "%s: only %" PRIu64 " writes acknowledged",
                  name, writes);
    cr_assert_geq(s->sets, 50, "%s: %" PRIu64 " sets", name, s->sets);
    cr_assert_geq(s->deletes, 10, "%s: %" PRIu64 " deletes", name,
                  s->deletes);
    cr_assert_geq(s->raws, 10, "%s: %" PRIu64 " raw writes", name, s->raws);
    cr_assert_geq(s->txns, 10, "%s: %" PRIu64 " transactions", name,
                  s->txns);
    cr_assert_gt(t->hits, 0, "%s: no cache hits at all", name);
    cr_assert_gt(t->fills, 0, "%s: no cache fills at all", name);
}

/* ---- 1. stress ----------------------------------------------------------- */

static void
stress_plain(int workers)
{
    struct ts_opts o = {.workers = workers};
    struct ts_server *srv = ts_start(&o);
    pid_t w[TS_MAX_WORKERS];
    int nw = ts_worker_pids(srv, w, TS_MAX_WORKERS);
    pthread_t thr[NTHREADS];
    struct client cl[NTHREADS];
    char name[32];

    cr_assert_eq(nw, workers, "%d workers, expected %d", nw, workers);
    snprintf(name, sizeof(name), "stress, %d workers", workers);
    memset(cl, 0, sizeof(cl));
    long t0 = ts_now_ms();
    struct stress *s = stress_new(srv, 8000);
    stress_start(s, thr, cl);
    stress_join(s, thr);
    long ms = ts_now_ms() - t0;

    struct totals t;
    stress_report(s, srv, name, &t, ms);
    cr_assert_eq(s->other_errors + s->unavailable, 0,
                 "%s: %" PRIu64 " calls failed (%" PRIu64 " UNAVAILABLE); "
                 "first: %s", name, s->other_errors + s->unavailable,
                 s->unavailable, s->error_note);
    cr_assert_eq(s->maybes, 0);
    cr_assert_eq(s->txns_failed, 0, "%s: %" PRIu64 " transactions did not "
                 "commit; first: %s", name, s->txns_failed, s->txn_note);
    int distinct = 0;
    for (int i = 0; i < s->nserved; i++) {
        cr_assert(kc_pid_in(s->served[i], w, nw), "%s: pid %ld served, not a "
                  "worker", name, (long)s->served[i]);
        distinct++;
    }
    cr_assert_geq(distinct, 2, "%s: only %d worker(s) served", name,
                  distinct);
    stress_free(s);
    ts_stop_ok(srv);
}

Test(coherence, stress_two_workers)
{
    stress_plain(2);
}

Test(coherence, stress_four_workers)
{
    stress_plain(4);
}

/* ---- 2. stress with a worker killed -------------------------------------- */

Test(coherence, stress_with_a_worker_killed)
{
    struct ts_server *srv = ts_start(NULL);
    pid_t old[TS_MAX_WORKERS];
    int nold = ts_worker_pids(srv, old, TS_MAX_WORKERS);
    pthread_t thr[NTHREADS];
    struct client cl[NTHREADS];
    char line[128];

    cr_assert_eq(nold, 2);
    memset(cl, 0, sizeof(cl));
    long t0 = ts_now_ms();
    struct stress *s = stress_new(srv, 10000);
    stress_start(s, thr, cl);

    /* after ~2 s, kill -9 a worker that has been serving (its pid comes
     * from the buffdb-worker-pid metadata) */
    ts_sleep_ms(2000);
    pid_t victim = 0;
    for (int i = 0; i < nold && victim == 0; i++)
        if (was_served_by(s, old[i]))
            victim = old[i];
    if (victim != 0)
        kill(victim, SIGKILL);
    long t_kill = ts_now_ms() - t0;
    snprintf(line, sizeof(line), "(pid %ld) killed by signal 9",
             (long)victim);
    int logged = victim != 0 && ts_wait_log(srv, line, 1, 10000) &&
                 ts_wait_log(srv, "restarting worker", 1, 10000);
    pid_t fresh = logged ? kc_fresh_worker(srv, old, nold, 15000) : 0;
    long t_fresh = ts_now_ms() - t0;
    stress_join(s, thr);
    long ms = ts_now_ms() - t0;

    cr_assert_neq(victim, 0, "no worker served anything in 2 s");
    cr_assert(logged, "the master did not log the kill and a restart\n%s",
              ts_tail(srv, 3000));
    cr_assert_neq(fresh, 0, "no replacement worker listened\n%s",
                  ts_tail(srv, 3000));
    pid_t now[TS_MAX_WORKERS];
    int nnow = ts_worker_pids(srv, now, TS_MAX_WORKERS);
    cr_assert(!kc_pid_in(victim, now, nnow),
              "the killed worker is still there");

    struct totals t;
    stress_report(s, srv, "stress, worker killed", &t, ms);
    cr_assert_eq(s->other_errors, 0, "%" PRIu64 " errors other than "
                 "UNAVAILABLE; first: %s", s->other_errors, s->error_note);
    int fresh_served = was_served_by(s, fresh);
    cr_log_info("killed worker %ld at %ld ms; replacement %ld listening by "
                "%ld ms; it served the stress clients: %s", (long)victim,
                t_kill, (long)fresh, t_fresh, fresh_served ? "yes" : "no");
    /* the replacement serves (and its view is coherent): fresh
     * connections until one reaches it */
    if (!fresh_served) {
        struct gc_conn *c = kc_conn_to(srv);
        kv_set(c, "after-kill", "x");
        gc_close(c);
        fresh_served = get_from(srv, fresh, "after-kill", "x", 64);
    }
    cr_assert(fresh_served, "the replacement worker %ld served nothing",
              (long)fresh);
    stress_free(s);
    ts_stop_ok(srv);
}

/* ---- 3. a worker killed while it holds a key lock ------------------------ */

/* lock_holder - the pid on the line of lock name ("kheld") in `buffdb
 * stats --locks`, 0 if there is none */
static pid_t
lock_holder(struct ts_server *s, const char *name)
{
    char *out = stats_out(s, 1);
    char pat[64];
    long pid = 0;

    snprintf(pat, sizeof(pat), "  %s  pid ", name);
    const char *p = strstr(out, pat);
    if (p != NULL)
        pid = strtol(p + strlen(pat), NULL, 10);
    free(out);
    return (pid_t)pid;
}

Test(coherence, worker_killed_holding_a_key_lock)
{
    /* the server runs in its directory, so "once" is DIR/once: only the
     * first worker that reaches the point stalls, not its replacement */
    setenv("BUFFDB_INJECT", "kv-write-locked:30000", 1);
    setenv("BUFFDB_INJECT_ONCE", "once", 1);
    struct ts_opts o = {.workers = 2, .config = "lock_wait = 3s\n"};
    struct ts_server *srv = ts_start(&o);
    unsetenv("BUFFDB_INJECT");
    unsetenv("BUFFDB_INJECT_ONCE");
    char *once = ts_path(srv, "once");
    pid_t old[TS_MAX_WORKERS];
    int nold = ts_worker_pids(srv, old, TS_MAX_WORKERS);
    cr_assert_eq(nold, 2);

    /* a Set of "held" that stalls in its worker, holding the key's lock */
    struct gc_conn *c1 = kc_conn_to(srv);
    struct gc_stream *st = gc_stream_start(c1, KC_KV_SET, 60000);
    cr_assert_not_null(st);
    struct gc_reqs q = {0};
    kc_add_kv_set(&q, "held", "before");
    cr_assert_eq(gc_stream_send(st, &q.v[0]), 0, "could not send the Set");
    gc_reqs_free(&q);
    cr_assert_eq(gc_stream_half_close(st), 0);

    pid_t holder = 0;
    long until = ts_now_ms() + 15000;
    while (holder == 0 && ts_now_ms() < until) {
        holder = lock_holder(srv, "kheld");
        if (holder == 0)
            ts_sleep_ms(50);
    }
    cr_assert_neq(holder, 0, "no process holds the lock of \"held\":\n%s",
                  stats_out(srv, 1));
    cr_assert(kc_pid_in(holder, old, nold), "lock held by %ld, not a worker",
              (long)holder);
    cr_assert(access(once, F_OK) == 0, "the injection point did not fire");

    /* kill -9 it; wait until it is gone (its listening socket closed) */
    long t_kill = ts_now_ms();
    cr_assert_eq(kill(holder, SIGKILL), 0);
    until = ts_now_ms() + 10000;
    while (ts_pid_alive(holder) && ts_now_ms() < until)
        ts_sleep_ms(5);
    cr_assert(!ts_pid_alive(holder), "the holder survived SIGKILL");

    /* another writer gets the key well within lock_wait (3 s).  A
     * connection the kernel queued on the dead worker's listener just
     * before the kill is reset (UNAVAILABLE): that says nothing about the
     * lock, so connect again, a bounded number of times */
    struct gc_conn *c2 = NULL;
    struct gc_result r;
    for (int tries = 0; tries < 5; tries++) {
        if (c2 != NULL) {
            gc_result_free(&r);
            gc_close(c2);
        }
        c2 = kc_conn_to(srv);
        struct gc_reqs q2 = {0}; /* one_call frees it */
        kc_add_kv_set(&q2, "held", "after");
        one_call(c2, KC_KV_SET, &q2, KC_DEADLINE_MS, &r);
        if (r.code != GRPC_STATUS_UNAVAILABLE)
            break;
    }
    long since_kill = ts_now_ms() - t_kill;
    cr_assert_eq(r.code, GRPC_STATUS_OK, "Set of \"held\" after the kill: "
                 "%s (%s) after %ld ms\n%s", gc_status_name(r.code),
                 r.details, r.elapsed_ms, ts_tail(srv, 3000));
    cr_assert_neq(r.worker_pid, holder);
    cr_assert_lt(since_kill, 1500, "the Set took %ld ms after the kill "
                 "(call %ld ms); lock_wait is 3 s", since_kill,
                 r.elapsed_ms);
    gc_result_free(&r);

    /* the stalled call died with its worker */
    struct gc_result r1;
    memset(&r1, 0, sizeof(r1));
    gc_stream_finish(st, &r1);
    cr_assert_neq(r1.code, GRPC_STATUS_OK, "the stalled Set succeeded");
    gc_result_free(&r1);

    /* the master says it freed the lock; nothing is held any more */
    char line[128];
    snprintf(line, sizeof(line), "released 1 lock held by process %ld",
             (long)holder);
    cr_assert(ts_wait_log(srv, line, 1, 5000), "no \"%s\" in the log\n%s",
              line, ts_tail(srv, 3000));
    char *out = stats_out(srv, 1);
    cr_assert(strstr(out, "locks: 0 held") != NULL &&
                  strstr(out, "kheld") == NULL,
              "a lock is still held:\n%s", out);
    free(out);

    /* the replacement worker serves a Get of "held" */
    cr_assert(ts_wait_log(srv, "restarting worker", 1, 10000), "%s",
              ts_tail(srv, 3000));
    pid_t fresh = kc_fresh_worker(srv, old, nold, 15000);
    cr_assert_neq(fresh, 0, "no replacement listened\n%s",
                  ts_tail(srv, 3000));
    cr_assert(get_from(srv, fresh, "held", "after", 64),
              "the replacement %ld served no Get", (long)fresh);
    cr_log_info("lock of \"held\" (pid %ld) freed; next Set done %ld ms "
                "after the kill; replacement %ld serves", (long)holder,
                since_kill, (long)fresh);
    gc_close(c1);
    gc_close(c2);
    free(once);
    ts_stop_ok(srv);
}

/* ---- 4. CLI writes while the server runs ---------------------------------- */

static void
cli_ok(struct ts_server *s, const char *a1, const char *a2, const char *a3,
       const char *a4)
{
    struct th_run run;
    char *kv = ts_path(s, "kv_store.db");

    int rc = th_buffdb(&run, NULL, NULL, 0, a1, "-s", kv, a2, a3, a4,
                       (char *)NULL);
    cr_assert_eq(rc, 0, "could not run buffdb %s", a1);
    cr_assert_eq(run.status, 0, "buffdb %s -s %s %s %s %s exited %d: %s", a1,
                 kv, a2 ? a2 : "", a3 ? a3 : "", a4 ? a4 : "", run.status,
                 run.err ? run.err : "");
    th_run_free(&run);
    free(kv);
}

/* cached - Get k through every connection, twice, expecting want (NULL:
 * NOT_FOUND), and assert the cache answered some of them */
static void
cached(struct ts_server *s, struct gc_conn **c, int nc, const char *k,
       const char *want)
{
    struct totals before = stats_totals(s);
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < nc; i++) {
            if (want)
                kv_expect(c[i], k, want);
            else
                kv_expect_missing(c[i], k);
        }
    struct totals after = stats_totals(s);
    cr_assert_gt(after.hits, before.hits, "Gets of %s: no cache hit (hits "
                 "%llu -> %llu)", k, before.hits, after.hits);
}

/* everywhere - Get k through every connection expecting want */
static void
everywhere(struct gc_conn **c, int nc, const char *k, const char *want)
{
    for (int i = 0; i < nc; i++) {
        if (want)
            kv_expect(c[i], k, want);
        else
            kv_expect_missing(c[i], k);
    }
}

/*
 * A transaction's commit drops the cache entries of the keys it writes,
 * and only those: the others stay hits.  Counted with `buffdb stats`:
 * after the commit, the Gets of the two untouched keys are hits and only
 * the changed key misses (before, a commit made every entry a miss).
 */
Test(coherence, commit_drops_only_the_entries_of_its_keys)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c = kc_conn_to(s);

    kc_kv_set_ok(c, NULL, "a", "old a");
    kc_kv_set_ok(c, NULL, "b", "old b");
    kc_kv_set_ok(c, NULL, "c", "old c");
    kc_kv_set_ok(c, NULL, "d", "old d");
    /* the Sets put their values: these are hits */
    kv_expect(c, "b", "old b");
    kv_expect(c, "c", "old c");
    struct totals t0 = stats_totals(s);

    char *id = kc_txn_begin(c);
    kc_kv_set_ok(c, id, "a", "new a");
    kc_kv_del_ok(c, id, "d");
    char err[256];
    cr_assert(kc_txn_end(c, id, 1, err, sizeof(err)), "commit: %s", err);
    free(id);

    kv_expect(c, "a", "new a");
    kv_expect_missing(c, "d");
    kv_expect(c, "b", "old b");
    kv_expect(c, "c", "old c");
    struct totals t1 = stats_totals(s);
    cr_expect_eq(t1.misses - t0.misses, 2, "misses %llu -> %llu: a and d",
                 t0.misses, t1.misses);
    cr_expect_eq(t1.hits - t0.hits, 2, "hits %llu -> %llu: b and c",
                 t0.hits, t1.hits);

    /* and what the commit's misses filled is the new state */
    kv_expect(c, "a", "new a");
    kv_expect_missing(c, "d");
    struct totals t2 = stats_totals(s);
    cr_expect_eq(t2.hits - t1.hits, 2, "hits %llu -> %llu: a and d again",
                 t1.hits, t2.hits);
    gc_close(c);
    ts_stop_ok(s);
}

Test(coherence, cli_writes_while_the_server_runs)
{
    struct ts_server *s = ts_start(NULL);
    struct gc_conn *c[6];
    pid_t by[6];
    int distinct = 0;

    for (int i = 0; i < 6; i++)
        c[i] = kc_conn_to(s);
    kv_set(c[0], "c", "fromserver");
    kv_set(c[0], "d", "d-server");
    for (int i = 0; i < 6; i++) {
        pid_t p = kv_expect(c[i], "c", "fromserver");
        if (!kc_pid_in(p, by, distinct))
            by[distinct++] = p;
    }

    /* c is cached; the CLI sets it: every worker sees the new value */
    cached(s, c, 6, "c", "fromserver");
    cli_ok(s, "kv", "set", "c", "fromcli");
    everywhere(c, 6, "c", "fromcli");

    /* cached again; the CLI deletes it */
    cached(s, c, 6, "c", "fromcli");
    cli_ok(s, "kv", "delete", "c", NULL);
    everywhere(c, 6, "c", NULL);

    /* now "no such key" is cached; the CLI sets it again */
    cached(s, c, 6, "c", NULL);
    cli_ok(s, "kv", "set", "c", "again");
    everywhere(c, 6, "c", "again");

    /* raw SQL through the CLI after d was cached */
    cached(s, c, 6, "d", "d-server");
    cli_ok(s, "query", "UPDATE kv SET value='raw' WHERE key='d'", NULL,
           NULL);
    everywhere(c, 6, "d", "raw");
    cached(s, c, 6, "d", "raw");
    cli_ok(s, "query", "DELETE FROM kv WHERE key='d'", NULL, NULL);
    everywhere(c, 6, "d", NULL);

    struct totals t = stats_totals(s);
    cr_log_info("cli writes: %d workers served the Gets; cache %llu hits, "
                "%llu misses, %llu fills", distinct, t.hits, t.misses,
                t.fills);
    for (int i = 0; i < 6; i++)
        gc_close(c[i]);
    ts_stop_ok(s);
}

Test(coherence, cli_finds_a_server_whose_shm_dir_is_elsewhere)
{
    /* shm_dir away from the kv store: the master leaves a redirect in
     * <kv_store>.buffdb, so the CLI, which knows only the kv store, still
     * joins the server's cache protocol */
    char *state = th_tmpdir();
    char conf[PATH_MAX + 32];
    snprintf(conf, sizeof(conf), "shm_dir = %s/state\n", state);
    struct ts_opts o = {.workers = 2, .config = conf};
    struct ts_server *s = ts_start(&o);
    struct gc_conn *c[4];

    for (int i = 0; i < 4; i++)
        c[i] = kc_conn_to(s);
    kv_set(c[0], "c", "fromserver");
    cached(s, c, 4, "c", "fromserver");
    cli_ok(s, "kv", "set", "c", "fromcli");
    everywhere(c, 4, "c", "fromcli");
    cached(s, c, 4, "c", "fromcli");
    cli_ok(s, "query", "UPDATE kv SET value='raw' WHERE key='c'", NULL,
           NULL);
    everywhere(c, 4, "c", "raw");

    for (int i = 0; i < 4; i++)
        gc_close(c[i]);
    ts_stop_ok(s);
    th_rmrf(state);
    free(state);
}
