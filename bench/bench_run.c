/*
 * bench_run.c - the load engine of buffdb-bench (see bench_run.h)
 *
 * Threads: the main thread creates the channels and one completion queue
 * per engine thread, then for each phase starts the threads and waits.
 * A thread owns its queue, its slots and every call on them, so nothing
 * here locks; the only shared writes are a relaxed atomic counter read
 * for the progress line and the blob id table (one writer per entry).
 *
 * Tags are small structs embedded in the call, one per operation kind.
 * Per streamed call, at most one SEND_MESSAGE and one RECV_MESSAGE are
 * pending (gRPC's rule); the ring of the call's requests holds, oldest
 * first, those sent and awaiting an answer, then those waiting to be
 * sent.  With --coalesce, requests issued on an answer are held while
 * the thread's queue has more completions ready (and at most
 * HOLD_EVENTS of them), then written back to back with
 * GRPC_WRITE_BUFFER_HINT on all but the last, so that one sendmsg(2)
 * carries them, as redis-benchmark -P writes its pipeline.  A streamed
 * call is freed when its status has arrived and none of its batches is
 * pending; a unary call when its one batch completes.
 *
 * The txn workload chains unary calls on a slot: BeginTransaction,
 * --txn-sets Sets carrying the id it returned, CommitTransaction (after a
 * failed Set, RollbackTransaction instead), then the next transaction.
 * The unit counted is a committed transaction, from the moment its Begin
 * was issued to the moment the Commit answered success; a failed call
 * counts an error with its status.  Once the phase ends no transaction
 * is begun, but one under way is carried to its end, so none is left
 * open on the server holding key locks.
 *
 * Every wait is bounded: completion queue waits time out after 100 ms;
 * a thread stops issuing at the phase's end (or quota), cancels its calls
 * BENCH_DRAIN_S after that and gives up BENCH_GIVEUP_S later still.
 */
#include "config.h"

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench_run.h"

#define UNAVAILABLE_LIMIT 1000 /* in a row without a success: give up */
#define TICK_MS 100
#define HOLD_EVENTS 64 /* --coalesce: completions before held requests go */

/* ---- structures ---------------------------------------------------------- */

struct conn {
    grpc_channel *ch;
    void *handle[BO_N];
};

struct ent {
    uint64_t t;        /* issued, ns */
    uint64_t key;
    unsigned op : 4;
    unsigned measured : 1;
};

enum { K_SEND, K_RECV, K_STATUS, K_CLOSE, K_UNARY };

struct tag {
    void *obj;
    int kind;
};

/* the part common to both call kinds: the thread's list of live calls */
struct callhdr {
    struct callhdr *next, *prev;
    grpc_call *call;
};

struct bthread;

/* where a slot's transaction is (txn workload): the call to make next */
enum { TX_IDLE, TX_BEGIN, TX_SET, TX_COMMIT, TX_ROLLBACK };

struct txn {
    int step;                 /* TX_* */
    int nset;                 /* Sets answered OK so far */
    int measured;             /* begun after the warmup */
    uint64_t t0;              /* BeginTransaction issued, ns */
    size_t idlen;
    char id[BENCH_TXN_ID_MAX];
};

struct slot {
    struct bthread *t;
    struct conn *conn;
    int inflight;              /* requests issued and not yet resolved */
    struct scall *lane[BO_N];  /* the open stream per op, or NULL */
    struct txn tx;             /* the txn workload only */
};

/* a streamed call */
struct scall {
    struct callhdr h;
    struct slot *slot;
    int op;
    struct tag t_send, t_recv, t_status, t_close;
    grpc_metadata_array md, trailing;
    grpc_status_code status;
    grpc_slice details;
    grpc_byte_buffer *send_buf, *recv_buf;
    struct ent *ring;
    unsigned cap, head, n, nsent; /* n entries from head; nsent sent */
    int pending;                  /* batches started, not completed */
    unsigned send_inflight : 1, recv_inflight : 1, md_sent : 1,
        md_posted : 1, closing : 1, close_sent : 1, dead : 1,
        status_done : 1, held : 1;
    struct scall *hnext, *hprev;  /* the thread's streams holding requests */
};

/* a unary-style call: one request */
struct ucall {
    struct callhdr h;
    struct slot *slot;
    struct ent e;
    struct tag t_done;
    grpc_metadata_array md, trailing;
    grpc_status_code status;
    grpc_slice details;
    grpc_byte_buffer *send_buf, *recv_buf;
};

struct bthread {
    struct bench_engine *e;
    int idx;
    pthread_t tid;
    grpc_completion_queue *cq;
    struct conn **conns;
    int nconns;
    struct slot *slots;
    int nslots;
    struct callhdr live; /* list head */
    uint64_t nlive;
    uint64_t rng;
    /* the phase */
    const struct bench_phase *ph;
    int streamed;
    int txn;        /* the txn workload (and not its preload) */
    gpr_timespec deadline;
    uint64_t quota, issued_measured;
    uint64_t next_key, key_end;
    int stopping, cancelled;
    uint64_t t_stop, t_cancel;
    int unavail_streak;
    struct bench_stats st;
    uint64_t done;  /* atomic (relaxed): requests resolved, for progress */
    uint64_t errs;  /* atomic (relaxed) */
    int finished;   /* atomic */
    int coalesce;   /* --coalesce and streamed */
    int hold_ok;    /* handling an answer: new requests may be held */
    struct scall *holding; /* streams with requests held */
    int held_for;   /* completions handled since the first was held */
    int created;    /* its pthread exists */
};

struct bench_engine {
    const struct bench_ctx *ctx;
    int nthreads;
    struct bthread *threads;
    struct conn *conns;
    int nconns;
    int ops[2]; /* the ops of the workload */
    int nops;
};

/* ---- small helpers ------------------------------------------------------- */

uint64_t
bench_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *
xcalloc_or_die(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);

    if (p == NULL) {
        fprintf(stderr, "buffdb-bench: out of memory\n");
        abort();
    }
    return p;
}

/* splitmix64: small, fast, and good enough to pick keys */
static uint64_t
rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double
rng_unit(uint64_t *s)
{
    return (double)(rng_next(s) >> 11) * 0x1.0p-53;
}

static void
live_add(struct bthread *t, struct callhdr *h)
{
    h->prev = &t->live;
    h->next = t->live.next;
    t->live.next->prev = h;
    t->live.next = h;
    t->nlive++;
}

static void
live_del(struct bthread *t, struct callhdr *h)
{
    h->prev->next = h->next;
    h->next->prev = h->prev;
    t->nlive--;
}

static grpc_call *
new_call(struct slot *s, int op)
{
    struct bthread *t = s->t;

    return grpc_channel_create_registered_call(
        s->conn->ch, NULL, GRPC_PROPAGATE_DEFAULTS, t->cq,
        s->conn->handle[op], t->deadline, NULL);
}

static void
note_error(struct bthread *t, grpc_status_code code, grpc_slice details)
{
    if (t->st.first_error[0] != '\0')
        return;
    snprintf(t->st.first_error, sizeof(t->st.first_error), "%s: %.*s",
             bench_status_name((int)code), (int)GRPC_SLICE_LENGTH(details),
             (const char *)GRPC_SLICE_START_PTR(details));
}

/* count_error - a request (or a stream) failed with code */
static void
count_error(struct bthread *t, grpc_status_code code, int measured)
{
    if (measured)
        t->st.errors[(int)code < BENCH_NCODES ? (int)code : 2]++;
    else
        t->st.warmup_errors++;
    __atomic_add_fetch(&t->errs, 1, __ATOMIC_RELAXED);
    if (code == GRPC_STATUS_UNAVAILABLE &&
        ++t->unavail_streak >= UNAVAILABLE_LIMIT && !t->st.gave_up) {
        t->st.gave_up = 1;
        t->stopping = 1;
    }
}

/* record - the response to e arrived at now, judged resp */
static void
record(struct bthread *t, const struct ent *e, uint64_t now, int resp,
       uint64_t id)
{
    const struct bench_ctx *ctx = t->e->ctx;

    __atomic_add_fetch(&t->done, 1, __ATOMIC_RELAXED);
    if (resp != BR_BAD)
        t->unavail_streak = 0;
    if (t->ph->preload && e->op == BO_BLOB_STORE && resp == BR_OK &&
        ctx->blob_ids != NULL)
        ctx->blob_ids[e->key] = id;
    if (!e->measured)
        return;
    if (resp == BR_OK)
        t->st.ok++;
    else if (resp == BR_MISS)
        t->st.misses++;
    else
        t->st.bad++;
    bench_hist_add(&t->st.hist, now > e->t ? now - e->t : 0);
    t->st.last_ns = now;
}

/* ---- choosing requests --------------------------------------------------- */

static int
pick_op(struct bthread *t)
{
    const struct bench_opts *o = t->e->ctx->o;

    if (t->ph->preload)
        return t->ph->op_preload;
    if (o->workload == BW_KV_MIXED)
        return rng_unit(&t->rng) < o->read_ratio ? BO_GET : BO_SET;
    return t->e->ops[0];
}

static uint64_t
pick_key(struct bthread *t)
{
    const struct bench_ctx *ctx = t->e->ctx;
    uint64_t n = ctx->o->keyspace;

    if (t->ph->preload)
        return t->next_key++;
    if (ctx->zipf_cdf == NULL)
        return (uint64_t)(((unsigned __int128)rng_next(&t->rng) * n) >> 64);
    /* the first rank whose cumulative probability reaches u */
    double u = rng_unit(&t->rng);
    uint64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (ctx->zipf_cdf[mid] >= u)
            hi = mid;
        else
            lo = mid + 1;
    }
    /* spread the hot ranks over the key space (2654435761 is a prime
     * larger than any keyspace, so this is a permutation) */
    return (lo * 2654435761ULL) % n;
}

/* may_issue - whether the thread may issue another request now; sets
 * t->stopping once it may not */
static int
may_issue(struct bthread *t, uint64_t now)
{
    const struct bench_phase *ph = t->ph;

    if (t->stopping)
        return 0;
    if (ph->preload ? t->next_key >= t->key_end
                    : (now >= ph->t_end ||
                       (ph->requests && now >= ph->t_measure &&
                        t->issued_measured >= t->quota))) {
        t->stopping = 1;
        t->t_stop = now;
        return 0;
    }
    return 1;
}

/* ---- streamed calls ------------------------------------------------------ */

static void scall_progress(struct scall *sc);

static int
start(struct callhdr *h, const grpc_op *ops, size_t n, struct tag *tag)
{
    return grpc_call_start_batch(h->call, ops, n, tag, NULL) == GRPC_CALL_OK
               ? 0
               : -1;
}

/* hold_unlink - sc leaves its thread's list of streams holding requests */
static void
hold_unlink(struct scall *sc)
{
    struct bthread *t = sc->slot->t;

    if (!sc->held)
        return;
    if (sc->hprev)
        sc->hprev->hnext = sc->hnext;
    else
        t->holding = sc->hnext;
    if (sc->hnext)
        sc->hnext->hprev = sc->hprev;
    sc->hnext = sc->hprev = NULL;
    sc->held = 0;
}

static void
scall_free(struct scall *sc)
{
    struct bthread *t = sc->slot->t;

    hold_unlink(sc);
    live_del(t, &sc->h);
    if (sc->send_buf)
        grpc_byte_buffer_destroy(sc->send_buf);
    if (sc->recv_buf)
        grpc_byte_buffer_destroy(sc->recv_buf);
    grpc_metadata_array_destroy(&sc->md);
    grpc_metadata_array_destroy(&sc->trailing);
    grpc_slice_unref(sc->details);
    grpc_call_unref(sc->h.call);
    free(sc->ring);
    free(sc);
}

/* scall_detach - no new request goes to sc */
static void
scall_detach(struct scall *sc)
{
    if (sc->slot->lane[sc->op] == sc)
        sc->slot->lane[sc->op] = NULL;
}

static void
scall_die(struct scall *sc)
{
    sc->dead = 1;
    scall_detach(sc);
}

static struct scall *
scall_new(struct slot *s, int op)
{
    struct bthread *t = s->t;
    struct scall *sc = xcalloc_or_die(1, sizeof(*sc));
    grpc_op gop;

    sc->slot = s;
    sc->op = op;
    sc->cap = (unsigned)t->ph->pipeline;
    sc->ring = xcalloc_or_die(sc->cap, sizeof(*sc->ring));
    sc->t_send = (struct tag){sc, K_SEND};
    sc->t_recv = (struct tag){sc, K_RECV};
    sc->t_status = (struct tag){sc, K_STATUS};
    sc->t_close = (struct tag){sc, K_CLOSE};
    grpc_metadata_array_init(&sc->md);
    grpc_metadata_array_init(&sc->trailing);
    sc->details = grpc_empty_slice();
    sc->h.call = new_call(s, op);
    if (sc->h.call == NULL) {
        grpc_metadata_array_destroy(&sc->md);
        grpc_metadata_array_destroy(&sc->trailing);
        free(sc->ring);
        free(sc);
        return NULL;
    }
    live_add(t, &sc->h);
    memset(&gop, 0, sizeof(gop));
    gop.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    gop.data.recv_status_on_client.trailing_metadata = &sc->trailing;
    gop.data.recv_status_on_client.status = &sc->status;
    gop.data.recv_status_on_client.status_details = &sc->details;
    if (start(&sc->h, &gop, 1, &sc->t_status) != 0) {
        scall_free(sc);
        return NULL;
    }
    sc->pending++;
    s->lane[op] = sc;
    return sc;
}

static void
scall_send(struct scall *sc)
{
    struct bthread *t = sc->slot->t;
    const struct ent *e = &sc->ring[(sc->head + sc->nsent) % sc->cap];
    grpc_op ops[2];
    size_t n = 0;

    sc->send_buf = bench_encode(t->e->ctx, e->op, e->key, 1);
    if (sc->send_buf == NULL) {
        fprintf(stderr, "buffdb-bench: could not encode a request\n");
        abort();
    }
    memset(ops, 0, sizeof(ops));
    if (!sc->md_sent) {
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        sc->md_sent = 1;
    }
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    /* more to send after this one: let chttp2 buffer it (never with the
     * initial metadata, which a hinted message would hold back) */
    if (t->coalesce && n == 0 && sc->nsent + 1 < sc->n)
        ops[n].flags = GRPC_WRITE_BUFFER_HINT;
    ops[n++].data.send_message.send_message = sc->send_buf;
    if (start(&sc->h, ops, n, &sc->t_send) != 0) {
        grpc_byte_buffer_destroy(sc->send_buf);
        sc->send_buf = NULL;
        scall_die(sc);
        return;
    }
    sc->pending++;
    sc->send_inflight = 1;
    sc->nsent++;
}

static void
scall_recv(struct scall *sc)
{
    grpc_op ops[2];
    size_t n = 0;

    memset(ops, 0, sizeof(ops));
    if (!sc->md_posted) {
        ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[n++].data.recv_initial_metadata.recv_initial_metadata = &sc->md;
        sc->md_posted = 1;
    }
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n++].data.recv_message.recv_message = &sc->recv_buf;
    if (start(&sc->h, ops, n, &sc->t_recv) != 0) {
        scall_die(sc);
        return;
    }
    sc->pending++;
    sc->recv_inflight = 1;
}

static void
scall_close(struct scall *sc)
{
    grpc_op op;

    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    sc->close_sent = 1;
    if (start(&sc->h, &op, 1, &sc->t_close) != 0) {
        scall_die(sc);
        return;
    }
    sc->pending++;
    /* read the end of the stream, so the status can arrive */
    if (!sc->recv_inflight)
        scall_recv(sc);
}

/* scall_progress - start what sc can start; frees sc when it is over */
static void
scall_progress(struct scall *sc)
{
    if (!sc->dead) {
        struct bthread *t = sc->slot->t;
        if (!sc->send_inflight && sc->nsent < sc->n) {
            if (t->hold_ok && sc->md_sent) {
                if (!sc->held) {
                    sc->held = 1;
                    sc->hprev = NULL;
                    sc->hnext = t->holding;
                    if (t->holding)
                        t->holding->hprev = sc;
                    t->holding = sc;
                }
            } else {
                scall_send(sc);
            }
        }
        if (!sc->dead && !sc->recv_inflight && sc->n > 0)
            scall_recv(sc);
        if (!sc->dead && sc->closing && !sc->close_sent &&
            !sc->send_inflight && sc->n == 0)
            scall_close(sc);
    }
    if (sc->status_done && sc->pending == 0)
        scall_free(sc);
}

/* scall_on_status - the stream is over: settle what it left unanswered */
static void
scall_on_status(struct scall *sc)
{
    struct bthread *t = sc->slot->t;

    sc->status_done = 1;
    scall_die(sc);
    if (sc->status != GRPC_STATUS_OK) {
        note_error(t, sc->status, sc->details);
        /* buffdb fails the oldest request and reads no further */
        count_error(t, sc->status, sc->n ? sc->ring[sc->head].measured : 1);
        for (unsigned i = 1; i < sc->n; i++)
            if (sc->ring[(sc->head + i) % sc->cap].measured)
                t->st.unanswered++;
    } else {
        for (unsigned i = 0; i < sc->n; i++)
            if (sc->ring[(sc->head + i) % sc->cap].measured)
                t->st.unanswered++;
    }
    __atomic_add_fetch(&t->done, sc->n, __ATOMIC_RELAXED);
    sc->slot->inflight -= (int)sc->n;
    sc->n = sc->nsent = 0;
}

/* scall_on_recv - a response (or the end of the stream) arrived */
static void
scall_on_recv(struct scall *sc, int ok, uint64_t now)
{
    struct bthread *t = sc->slot->t;

    if (!ok || sc->recv_buf == NULL) {
        scall_die(sc);
        return;
    }
    if (sc->n == 0 || sc->nsent == 0) {
        /* an answer to nothing: the stream is out of step */
        t->st.bad++;
        grpc_byte_buffer_destroy(sc->recv_buf);
        sc->recv_buf = NULL;
        return;
    }
    struct ent e = sc->ring[sc->head];
    uint64_t id = 0;
    int resp = bench_check(t->e->ctx, (int)e.op, sc->recv_buf, &id);
    grpc_byte_buffer_destroy(sc->recv_buf);
    sc->recv_buf = NULL;
    sc->head = (sc->head + 1) % sc->cap;
    sc->n--;
    sc->nsent--;
    sc->slot->inflight--;
    record(t, &e, now, resp, id);
}

/* ---- unary-style calls --------------------------------------------------- */

static void
ucall_free(struct ucall *u)
{
    live_del(u->slot->t, &u->h);
    if (u->send_buf)
        grpc_byte_buffer_destroy(u->send_buf);
    if (u->recv_buf)
        grpc_byte_buffer_destroy(u->recv_buf);
    grpc_metadata_array_destroy(&u->md);
    grpc_metadata_array_destroy(&u->trailing);
    grpc_slice_unref(u->details);
    grpc_call_unref(u->h.call);
    free(u);
}

/* ucall_start - one request in a call of its own; -1 if gRPC refused */
static int
ucall_start(struct slot *s, const struct ent *e)
{
    struct bthread *t = s->t;
    struct ucall *u = xcalloc_or_die(1, sizeof(*u));
    grpc_op ops[6];

    u->slot = s;
    u->e = *e;
    u->t_done = (struct tag){u, K_UNARY};
    grpc_metadata_array_init(&u->md);
    grpc_metadata_array_init(&u->trailing);
    u->details = grpc_empty_slice();
    u->h.call = new_call(s, (int)e->op);
    if (u->h.call == NULL) {
        grpc_metadata_array_destroy(&u->md);
        grpc_metadata_array_destroy(&u->trailing);
        free(u);
        return -1;
    }
    live_add(t, &u->h);
    if (e->op >= BO_TXN_BEGIN)
        u->send_buf = bench_encode_txn(t->e->ctx, (int)e->op, e->key,
                                       s->tx.id, s->tx.idlen);
    else
        u->send_buf = bench_encode(t->e->ctx, (int)e->op, e->key, 0);
    if (u->send_buf == NULL) {
        fprintf(stderr, "buffdb-bench: could not encode a request\n");
        abort();
    }
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = u->send_buf;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &u->md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &u->recv_buf;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &u->trailing;
    ops[5].data.recv_status_on_client.status = &u->status;
    ops[5].data.recv_status_on_client.status_details = &u->details;
    if (start(&u->h, ops, 6, &u->t_done) != 0) {
        ucall_free(u);
        return -1;
    }
    s->inflight++;
    return 0;
}

/*
 * txn_done - a call of the slot's transaction finished: move the
 * transaction on.  A committed transaction is recorded (latency from its
 * Begin); a Commit answering success false counts a bad response with the
 * server's message as the first error.
 */
static void
txn_done(struct ucall *u, int ok, uint64_t now)
{
    struct slot *s = u->slot;
    struct bthread *t = s->t;
    struct txn *tx = &s->tx;
    const struct bench_opts *o = t->e->ctx->o;
    int resp = BR_BAD;
    char err[160];

    err[0] = '\0';
    if (!ok) {
        count_error(t, GRPC_STATUS_INTERNAL, tx->measured);
    } else if (u->status != GRPC_STATUS_OK) {
        note_error(t, u->status, u->details);
        count_error(t, u->status, tx->measured);
    } else if (u->recv_buf != NULL) {
        resp = bench_check_txn(t->e->ctx, (int)u->e.op, u->recv_buf, tx->id,
                               &tx->idlen, err, sizeof(err));
        if (resp == BR_OK)
            t->unavail_streak = 0;
    }
    int failed_call = !ok || u->status != GRPC_STATUS_OK;
    switch (u->e.op) {
    case BO_TXN_BEGIN:
        if (resp == BR_OK)
            tx->step = o->txn_sets > 0 ? TX_SET : TX_COMMIT;
        else {
            if (!failed_call && tx->measured)
                t->st.bad++;
            tx->step = TX_IDLE;
        }
        break;
    case BO_TXN_SET:
        if (resp == BR_OK) {
            tx->nset++;
            tx->step = tx->nset >= o->txn_sets ? TX_COMMIT : TX_SET;
        } else {
            if (!failed_call && tx->measured)
                t->st.bad++;
            tx->step = TX_ROLLBACK;
        }
        break;
    case BO_TXN_COMMIT: {
        struct ent e = u->e;
        e.t = tx->t0;
        e.measured = (unsigned)tx->measured & 1;
        if (resp == BR_OK) {
            record(t, &e, now, BR_OK, 0);
        } else if (!failed_call) {
            if (t->st.first_error[0] == '\0')
                snprintf(t->st.first_error, sizeof(t->st.first_error),
                         "CommitTransaction: success false: %s", err);
            record(t, &e, now, BR_BAD, 0);
        }
        tx->step = TX_IDLE;
        break;
    }
    default: /* BO_TXN_ROLLBACK, whatever it answered */
        tx->step = TX_IDLE;
        break;
    }
    s->inflight--;
    ucall_free(u);
}

static void
ucall_done(struct ucall *u, int ok, uint64_t now)
{
    struct slot *s = u->slot;
    struct bthread *t = s->t;

    if (u->e.op >= BO_TXN_BEGIN) {
        txn_done(u, ok, now);
        return;
    }

    if (!ok) {
        /* the batch itself failed: no status to trust */
        count_error(t, GRPC_STATUS_INTERNAL, u->e.measured);
        __atomic_add_fetch(&t->done, 1, __ATOMIC_RELAXED);
    } else if (u->status != GRPC_STATUS_OK) {
        note_error(t, u->status, u->details);
        count_error(t, u->status, u->e.measured);
        __atomic_add_fetch(&t->done, 1, __ATOMIC_RELAXED);
    } else if (u->recv_buf == NULL) {
        /* OK with no message: a query with no row, or a broken server */
        record(t, &u->e, now, u->e.op == BO_QUERY ? BR_MISS : BR_BAD, 0);
    } else {
        uint64_t id = 0;
        int resp = bench_check(t->e->ctx, (int)u->e.op, u->recv_buf, &id);
        record(t, &u->e, now, resp, id);
    }
    s->inflight--;
    ucall_free(u);
}

/* ---- slots --------------------------------------------------------------- */

/* issue - one request on s; -1 if it could not be started */
static int
issue(struct slot *s, uint64_t now)
{
    struct bthread *t = s->t;
    struct ent e;

    e.op = (unsigned)pick_op(t) & 0xf;
    e.key = pick_key(t);
    e.t = now;
    e.measured = t->ph->preload || now >= t->ph->t_measure;
    if (!t->streamed) {
        if (ucall_start(s, &e) != 0)
            goto refused;
    } else {
        struct scall *sc = s->lane[e.op];
        if (sc == NULL && (sc = scall_new(s, (int)e.op)) == NULL)
            goto refused;
        sc->ring[(sc->head + sc->n) % sc->cap] = e;
        sc->n++;
        s->inflight++;
        scall_progress(sc);
    }
    if (e.measured) {
        t->issued_measured++;
        t->st.issued++;
    }
    return 0;
refused:
    /* gRPC would not start a call: count it and let the next tick retry */
    count_error(t, GRPC_STATUS_INTERNAL, e.measured);
    if (e.measured) {
        t->issued_measured++;
        t->st.issued++;
    }
    return -1;
}

/*
 * txn_fill - start the slot's next transaction call if none is in
 * flight: a new transaction only while the thread may issue, the calls
 * of one under way even after the end of the phase (until the cancel).
 */
static void
txn_fill(struct slot *s, uint64_t now)
{
    struct bthread *t = s->t;
    struct txn *tx = &s->tx;
    struct ent e;

    if (s->inflight > 0 || t->cancelled)
        return;
    if (tx->step == TX_IDLE) {
        if (!may_issue(t, now))
            return;
        tx->step = TX_BEGIN;
        tx->nset = 0;
        tx->idlen = 0;
        tx->t0 = now;
        tx->measured = now >= t->ph->t_measure;
        if (tx->measured) {
            t->issued_measured++;
            t->st.issued++;
        }
    }
    switch (tx->step) {
    case TX_BEGIN: e.op = BO_TXN_BEGIN; break;
    case TX_SET: e.op = BO_TXN_SET; break;
    case TX_COMMIT: e.op = BO_TXN_COMMIT; break;
    default: e.op = BO_TXN_ROLLBACK; break;
    }
    e.key = tx->step == TX_SET ? pick_key(t) : 0;
    e.t = now;
    e.measured = (unsigned)tx->measured & 1;
    if (ucall_start(s, &e) != 0) {
        /* gRPC would not start a call: count it and drop the
         * transaction (the server expires it); the next tick begins
         * another */
        count_error(t, GRPC_STATUS_INTERNAL, tx->measured);
        tx->step = TX_IDLE;
    }
}

/* slot_fill - issue while there is room; once the thread stops, close the
 * slot's idle streams */
static void
slot_fill(struct slot *s, uint64_t now)
{
    struct bthread *t = s->t;

    if (t->txn) {
        txn_fill(s, now);
        return;
    }

    while (s->inflight < t->ph->pipeline && may_issue(t, now))
        if (issue(s, now) != 0)
            break;
    if (!t->stopping || !t->streamed)
        return;
    for (int op = 0; op < BO_N; op++) {
        struct scall *sc = s->lane[op];
        if (sc != NULL && sc->n == 0) {
            scall_detach(sc);
            sc->closing = 1;
            scall_progress(sc);
        }
    }
}

/* ---- the thread ---------------------------------------------------------- */

static void
dispatch(struct bthread *t, struct tag *tag, int ok, uint64_t now)
{
    if (tag->kind == K_UNARY) {
        struct ucall *u = tag->obj;
        struct slot *s = u->slot;
        ucall_done(u, ok, now);
        slot_fill(s, now);
        return;
    }
    struct scall *sc = tag->obj;
    struct slot *s = sc->slot;
    sc->pending--;
    switch (tag->kind) {
    case K_SEND:
        sc->send_inflight = 0;
        grpc_byte_buffer_destroy(sc->send_buf);
        sc->send_buf = NULL;
        if (!ok)
            scall_die(sc);
        break;
    case K_RECV:
        sc->recv_inflight = 0;
        scall_on_recv(sc, ok, now);
        break;
    case K_STATUS:
        scall_on_status(sc);
        break;
    case K_CLOSE:
        if (!ok)
            scall_die(sc);
        break;
    }
    /* refill first (it may close this stream if it went idle), then move
     * this call on; it may be freed there */
    slot_fill(s, now);
    scall_progress(sc);
    (void)t;
}

static void
cancel_all(struct bthread *t)
{
    for (struct callhdr *h = t->live.next; h != &t->live; h = h->next)
        grpc_call_cancel(h->call, NULL);
}

/* flush_held - write the requests held back by --coalesce */
static void
flush_held(struct bthread *t)
{
    t->held_for = 0;
    while (t->holding != NULL) {
        struct scall *sc = t->holding;
        hold_unlink(sc);
        scall_progress(sc); /* may free sc */
    }
}

static void *
thread_main(void *arg)
{
    struct bthread *t = arg;
    uint64_t now = bench_now_ns();
    int was_stopping = 0;

    for (int i = 0; i < t->nslots; i++)
        slot_fill(&t->slots[i], now);
    for (;;) {
        gpr_timespec dl =
            gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                         gpr_time_from_millis(TICK_MS, GPR_TIMESPAN));
        if (t->holding != NULL && t->held_for > HOLD_EVENTS)
            flush_held(t);
        if (t->holding == NULL)
            t->held_for = 0;
        grpc_event ev = grpc_completion_queue_next(
            t->cq, t->holding ? gpr_inf_past(GPR_CLOCK_MONOTONIC) : dl, NULL);
        now = bench_now_ns();
        if (ev.type == GRPC_QUEUE_TIMEOUT && t->holding != NULL) {
            flush_held(t);
            continue;
        }
        if (ev.type == GRPC_OP_COMPLETE) {
            struct tag *tg = ev.tag;
            t->hold_ok = t->coalesce && tg->kind == K_RECV;
            t->held_for++;
            dispatch(t, ev.tag, ev.success, now);
            t->hold_ok = 0;
        }
        else if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type == GRPC_QUEUE_TIMEOUT || t->stopping != was_stopping ||
            (!t->stopping && now >= t->ph->t_end)) {
            /* a tick: retry slots gRPC refused, notice the end of the
             * phase, close idle streams */
            for (int i = 0; i < t->nslots; i++)
                slot_fill(&t->slots[i], now);
            if (t->stopping && !was_stopping && t->t_stop == 0)
                t->t_stop = now;
            was_stopping = t->stopping;
        }
        if (!t->stopping)
            continue;
        if (t->nlive == 0)
            break;
        if (!t->cancelled && now >= t->t_stop + BENCH_DRAIN_S * 1000000000ULL) {
            cancel_all(t);
            t->cancelled = 1;
            t->t_cancel = now;
        }
        if (t->cancelled &&
            now >= t->t_cancel + BENCH_GIVEUP_S * 1000000000ULL) {
            t->st.leaked = t->nlive;
            break;
        }
    }
    __atomic_store_n(&t->finished, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* ---- the engine ---------------------------------------------------------- */

static int
workload_ops(int workload, int *ops)
{
    switch (workload) {
    case BW_KV_GET: ops[0] = BO_GET; return 1;
    case BW_KV_SET: ops[0] = BO_SET; return 1;
    case BW_KV_MIXED: ops[0] = BO_GET; ops[1] = BO_SET; return 2;
    case BW_KV_DELETE: ops[0] = BO_DELETE; return 1;
    case BW_BLOB_STORE: ops[0] = BO_BLOB_STORE; return 1;
    case BW_BLOB_GET: ops[0] = BO_BLOB_GET; return 1;
    case BW_QUERY: ops[0] = BO_QUERY; return 1;
    case BW_TXN: ops[0] = BO_TXN_BEGIN; return 1;
    default: ops[0] = BO_ECHO; return 1;
    }
}

static int
open_conn(struct conn *c, const struct bench_opts *o, int id)
{
    grpc_arg args[4];
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();

    memset(args, 0, sizeof(args));
    /* a subchannel pool of its own and an argument no other channel has:
     * gRPC would otherwise share one TCP connection between channels */
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = (char *)GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL;
    args[0].value.integer = 1;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = (char *)"buffdb-bench.connection";
    args[1].value.integer = id;
    args[2].type = GRPC_ARG_INTEGER;
    args[2].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[2].value.integer = -1;
    /* no retry machinery: it buffers every message sent */
    args[3].type = GRPC_ARG_INTEGER;
    args[3].key = (char *)GRPC_ARG_ENABLE_RETRIES;
    args[3].value.integer = 0;
    grpc_channel_args cargs = {4, args};
    c->ch = grpc_channel_create(o->addr, creds, &cargs);
    grpc_channel_credentials_release(creds);
    if (c->ch == NULL)
        return -1;
    for (int op = 0; op < BO_N; op++) {
        const char *m = bench_method(o->target, op);
        c->handle[op] = m ? grpc_channel_register_call(c->ch, m, NULL, NULL)
                          : NULL;
    }
    return 0;
}

struct bench_engine *
bench_engine_new(const struct bench_ctx *ctx)
{
    const struct bench_opts *o = ctx->o;
    struct bench_engine *e = xcalloc_or_die(1, sizeof(*e));

    e->ctx = ctx;
    e->nops = workload_ops(o->workload, e->ops);
    e->nconns = o->connections;
    e->conns = xcalloc_or_die((size_t)e->nconns, sizeof(*e->conns));
    e->nthreads = o->threads;
    e->threads = xcalloc_or_die((size_t)e->nthreads, sizeof(*e->threads));
    for (int i = 0; i < e->nthreads; i++) {
        struct bthread *t = &e->threads[i];
        t->e = e;
        t->idx = i;
        t->cq = grpc_completion_queue_create_for_next(NULL);
        t->conns = xcalloc_or_die((size_t)e->nconns, sizeof(*t->conns));
        t->rng = o->seed ^ (0x9e3779b97f4a7c15ULL * (uint64_t)(i + 1));
    }
    for (int c = 0; c < e->nconns; c++) {
        if (open_conn(&e->conns[c], o, c) != 0) {
            fprintf(stderr, "buffdb-bench: could not create a channel to %s\n",
                    o->addr);
            e->nconns = c;
            bench_engine_free(e);
            return NULL;
        }
        /* connections round-robin over the threads */
        struct bthread *t = &e->threads[c % e->nthreads];
        t->conns[t->nconns++] = &e->conns[c];
    }
    for (int i = 0; i < e->nthreads; i++) {
        struct bthread *t = &e->threads[i];
        t->nslots = t->nconns * o->streams;
        t->slots = xcalloc_or_die((size_t)t->nslots, sizeof(*t->slots));
        for (int s = 0; s < t->nslots; s++) {
            t->slots[s].t = t;
            t->slots[s].conn = t->conns[s / o->streams];
        }
    }
    return e;
}

static void
print_progress(struct bench_engine *e, uint64_t t0, uint64_t now,
               uint64_t *last_done, uint64_t *last_t)
{
    uint64_t done = 0, errs = 0;

    for (int i = 0; i < e->nthreads; i++) {
        done += __atomic_load_n(&e->threads[i].done, __ATOMIC_RELAXED);
        errs += __atomic_load_n(&e->threads[i].errs, __ATOMIC_RELAXED);
    }
    double dt = (double)(now - *last_t) / 1e9;
    fprintf(stderr, "\r%6.1f s %12.0f ops/s %12llu done %8llu errors   ",
            (double)(now - t0) / 1e9,
            dt > 0 ? (double)(done - *last_done) / dt : 0.0,
            (unsigned long long)done, (unsigned long long)errs);
    fflush(stderr);
    *last_done = done;
    *last_t = now;
}

static uint64_t
tv_ns(struct timeval tv)
{
    return (uint64_t)tv.tv_sec * 1000000000u + (uint64_t)tv.tv_usec * 1000u;
}

void
bench_engine_run(struct bench_engine *e, const struct bench_phase *ph,
                 struct bench_stats *out)
{
    const struct bench_opts *o = e->ctx->o;
    uint64_t now = bench_now_ns();
    struct rusage ru0, ru1;
    int have_ru0 = 0;

    memset(out, 0, sizeof(*out));
    bench_hist_init(&out->hist);
    /* every call of the phase may live until its end plus the drain */
    uint64_t life = (ph->t_end > now ? ph->t_end - now : 0) +
                    BENCH_DRAIN_S * 1000000000ULL;
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                     gpr_time_from_nanos((int64_t)life, GPR_TIMESPAN));
    uint64_t base = o->keyspace / (uint64_t)e->nthreads;
    uint64_t extra = o->keyspace % (uint64_t)e->nthreads;
    uint64_t key = 0;
    for (int i = 0; i < e->nthreads; i++) {
        struct bthread *t = &e->threads[i];
        /* keep the connections, queue, slots and random state; reset
         * the rest (a phase starts with no call alive) */
        memset(&t->st, 0, sizeof(t->st));
        bench_hist_init(&t->st.hist);
        t->live.next = t->live.prev = &t->live;
        t->nlive = 0;
        t->ph = ph;
        t->streamed = o->target != BT_ETCD && ph->pipeline > 1;
        t->txn = o->workload == BW_TXN && !ph->preload;
        t->coalesce = t->streamed && o->coalesce;
        t->held_for = t->hold_ok = 0;
        t->holding = NULL;
        t->deadline = deadline;
        t->quota = ph->requests / (uint64_t)e->nthreads +
                   ((uint64_t)i < ph->requests % (uint64_t)e->nthreads);
        t->issued_measured = 0;
        t->next_key = key;
        key += base + ((uint64_t)i < extra);
        t->key_end = key;
        t->stopping = t->cancelled = 0;
        t->t_stop = t->t_cancel = 0;
        t->unavail_streak = 0;
        t->done = t->errs = 0;
        t->finished = 0;
        for (int s = 0; s < t->nslots; s++) {
            t->slots[s].inflight = 0;
            memset(t->slots[s].lane, 0, sizeof(t->slots[s].lane));
            memset(&t->slots[s].tx, 0, sizeof(t->slots[s].tx));
        }
    }
    if (now >= ph->t_measure) {
        getrusage(RUSAGE_SELF, &ru0);
        have_ru0 = 1;
    }
    for (int i = 0; i < e->nthreads; i++) {
        struct bthread *t = &e->threads[i];
        t->created = pthread_create(&t->tid, NULL, thread_main, t) == 0;
        if (!t->created) {
            fprintf(stderr, "buffdb-bench: could not start a thread\n");
            t->finished = 1;
        }
    }
    uint64_t t0 = bench_now_ns(), last_t = t0, last_done = 0;
    uint64_t next_tick = t0 + 1000000000ULL;
    for (;;) {
        int all = 1;
        for (int i = 0; i < e->nthreads; i++)
            all &= __atomic_load_n(&e->threads[i].finished, __ATOMIC_ACQUIRE);
        if (all)
            break;
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
        now = bench_now_ns();
        if (!have_ru0 && now >= ph->t_measure) {
            getrusage(RUSAGE_SELF, &ru0);
            have_ru0 = 1;
        }
        if (ph->progress && now >= next_tick) {
            print_progress(e, t0, now, &last_done, &last_t);
            next_tick += 1000000000ULL;
        }
    }
    for (int i = 0; i < e->nthreads; i++)
        if (e->threads[i].created)
            pthread_join(e->threads[i].tid, NULL);
    getrusage(RUSAGE_SELF, &ru1);
    if (!have_ru0)
        ru0 = ru1;
    if (ph->progress)
        fprintf(stderr, "\r%*s\r", 70, "");
    for (int i = 0; i < e->nthreads; i++) {
        struct bench_stats *s = &e->threads[i].st;
        bench_hist_merge(&out->hist, &s->hist);
        out->issued += s->issued;
        out->ok += s->ok;
        out->misses += s->misses;
        out->bad += s->bad;
        for (int c = 0; c < BENCH_NCODES; c++)
            out->errors[c] += s->errors[c];
        out->unanswered += s->unanswered;
        out->warmup_errors += s->warmup_errors;
        if (s->last_ns > out->last_ns)
            out->last_ns = s->last_ns;
        out->leaked += s->leaked;
        out->gave_up |= s->gave_up;
        if (out->first_error[0] == '\0' && s->first_error[0] != '\0')
            memcpy(out->first_error, s->first_error, sizeof(out->first_error));
    }
    uint64_t u0 = tv_ns(ru0.ru_utime), u1 = tv_ns(ru1.ru_utime);
    uint64_t s0 = tv_ns(ru0.ru_stime), s1 = tv_ns(ru1.ru_stime);
    out->cpu_user_ns = u1 > u0 ? u1 - u0 : 0;
    out->cpu_sys_ns = s1 > s0 ? s1 - s0 : 0;
}

int
bench_engine_free(struct bench_engine *e)
{
    for (int i = 0; i < e->nthreads; i++)
        if (e->threads[i].st.leaked)
            return -1;
    for (int c = 0; c < e->nconns; c++)
        grpc_channel_destroy(e->conns[c].ch);
    for (int i = 0; i < e->nthreads; i++) {
        struct bthread *t = &e->threads[i];
        grpc_completion_queue_shutdown(t->cq);
        /* bounded: every call is gone, so only the shutdown is left */
        for (int n = 0; n < 1000; n++) {
            grpc_event ev = grpc_completion_queue_next(
                t->cq,
                gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                             gpr_time_from_millis(TICK_MS, GPR_TIMESPAN)),
                NULL);
            if (ev.type == GRPC_QUEUE_SHUTDOWN)
                break;
        }
        grpc_completion_queue_destroy(t->cq);
        free(t->conns);
        free(t->slots);
    }
    free(e->threads);
    free(e->conns);
    free(e);
    return 0;
}
