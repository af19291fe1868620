/*
 * handlers_txn.c - BeginTransaction, CommitTransaction, RollbackTransaction
 * and the transaction side of the kv and blob handlers
 *
 * A transaction is a slot of the shared transaction table (txntab.h) plus
 * its writes staged in the store files (store.h, "transactions"), so any
 * worker can serve any of its requests.  Writes take exclusive locks in
 * the lock table owned by the transaction's number; they are freed at
 * commit, rollback, expiry (the master) or when its worker dies (the
 * master).  Reads inside a transaction see its own staged writes over
 * committed data; nobody else sees them before the commit.
 */
#include "config.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "kv.pb-c.h"
#include "worker/handlers.h"
#include "worker/worker.h"

/* ---- shared with the kv and blob handlers --------------------------------- */

/* drop_staged - discard everything the transaction staged and free its
 * locks (its slot is left to the caller) */
static void
drop_staged(struct worker *w, struct bfdb_txn_slot *s)
{
    if (bfdb_txn_discard(w->kv, s->num) != BFDB_OK ||
        bfdb_txn_discard(w->blob, s->num) != BFDB_OK)
        log_warn("could not discard a transaction's staged writes; they go "
                 "at the next start");
    bfdb_locktab_release_txn(w->shm->locktab, s->num);
}

/* settle_aborted - a transaction the master aborted (expired, its worker
 * died): drop what it staged, record how it ended */
static void
settle_aborted(struct worker *w, struct bfdb_txn_slot *s)
{
    uint32_t zero = 0;

    if (!__atomic_compare_exchange_n(&s->cleanup, &zero, 1, 0,
                                     __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
        return; /* another worker is at it */
    drop_staged(w, s);
    bfdb_txntab_end(s, s->outcome ? (int)s->outcome
                                  : BFDB_TXN_OUT_ROLLED_BACK);
}

/* expire - the transaction outlived its timeout while we hold it busy */
static void
expire(struct worker *w, struct bfdb_txn_slot *s)
{
    uint32_t active = BFDB_TXN_ACTIVE;

    s->outcome = BFDB_TXN_OUT_EXPIRED;
    if (__atomic_compare_exchange_n(&s->state, &active, BFDB_TXN_ABORTED, 0,
                                    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
        settle_aborted(w, s);
}

static const char *
state_text(struct bfdb_txn_slot *s)
{
    switch (__atomic_load_n(&s->state, __ATOMIC_SEQ_CST)) {
    case BFDB_TXN_COMMITTING: return "is being committed";
    case BFDB_TXN_RECOVER: return "is being recovered";
    case BFDB_TXN_ABORTED:
    case BFDB_TXN_ENDED: return bfdb_txn_outcome_text((int)s->outcome);
    default: return "is not active";
    }
}

/*
 * txn_open - the ACTIVE transaction id names, marked busy for this worker
 * (settling it first if it expired or the master aborted it).  NULL with
 * msg saying why and *busy set if another call kept it busy beyond
 * lock_wait.  text receives the id as text.
 */
static struct bfdb_txn_slot *
txn_open(struct worker *w, const ProtobufCBinaryData *id, char text[37],
         char *msg, size_t cap, int *busy)
{
    uint8_t raw[16];

    *busy = 0;
    text[0] = '\0';
    if (bfdb_txn_id_parse(id->data, id->len, raw) != 0) {
        snprintf(msg, cap, "unknown transaction_id (not one "
                 "BeginTransaction gave)");
        return NULL;
    }
    bfdb_txn_id_format(raw, text);
    struct bfdb_txn_slot *s = bfdb_txntab_find(w->shm->txntab, raw);
    if (s == NULL) {
        snprintf(msg, cap, "unknown transaction %s", text);
        return NULL;
    }
    if (bfdb_txntab_enter(s, w->pid, w->cfg->lock_wait_ms) != 0) {
        snprintf(msg, cap, "transaction %s is busy in another call beyond "
                 "lock_wait", text);
        *busy = 1;
        return NULL;
    }
    uint32_t st = __atomic_load_n(&s->state, __ATOMIC_SEQ_CST);
    if (st == BFDB_TXN_ACTIVE && bfdb_txn_now_ms() > s->deadline_ms)
        expire(w, s);
    else if (st == BFDB_TXN_ABORTED)
        settle_aborted(w, s);
    if (__atomic_load_n(&s->state, __ATOMIC_SEQ_CST) != BFDB_TXN_ACTIVE ||
        memcmp(s->id, raw, 16) != 0) {
        snprintf(msg, cap, "transaction %s %s", text, state_text(s));
        bfdb_txntab_leave(s, w->pid);
        return NULL;
    }
    return s;
}

struct bfdb_txn_slot *
h_txn_enter(struct call *c, const ProtobufCBinaryData *id, int write)
{
    struct worker *w = c->w;
    char text[37], msg[256];
    int busy;

    struct bfdb_txn_slot *s = txn_open(w, id, text, msg, sizeof(msg), &busy);
    if (s == NULL) {
        call_fail(c, busy ? GRPC_STATUS_ABORTED
                          : GRPC_STATUS_FAILED_PRECONDITION, "%s", msg);
        return NULL;
    }
    if (write && s->read_only) {
        call_fail(c, GRPC_STATUS_FAILED_PRECONDITION,
                  "transaction %s is read-only: writes are refused", text);
        bfdb_txntab_leave(s, w->pid);
        return NULL;
    }
    return s;
}

void
h_txn_leave(struct call *c, struct bfdb_txn_slot *s)
{
    bfdb_txntab_leave(s, c->w->pid);
}

int
h_txn_recheck(struct call *c, struct bfdb_txn_slot *s, int fail_call)
{
    struct worker *w = c->w;
    char text[37];

    if (__atomic_load_n(&s->state, __ATOMIC_SEQ_CST) == BFDB_TXN_ACTIVE)
        return 0;
    drop_staged(w, s);
    if (fail_call) {
        bfdb_txn_id_format(s->id, text);
        call_fail(c, GRPC_STATUS_FAILED_PRECONDITION, "transaction %s %s",
                  text, state_text(s));
    }
    return -1;
}

/* ---- the RPCs -------------------------------------------------------------- */

#define BAD_MESSAGE(c, type)                                                   \
    call_fail((c), GRPC_STATUS_INVALID_ARGUMENT, "malformed " type " message")

static void
begin_request(struct call *c, const uint8_t *data, size_t len)
{
    struct worker *w = c->w;
    Buffdb__Kv__BeginTransactionRequest *req =
        buffdb__kv__begin_transaction_request__unpack(NULL, len, data);
    char text[37];

    if (req == NULL) {
        BAD_MESSAGE(c, "BeginTransactionRequest");
        return;
    }
    int ro = req->_read_only_case != 0 && req->read_only;
    long timeout = w->cfg->txn_timeout_ms;
    if (req->_timeout_ms_case != 0) {
        if (req->timeout_ms <= 0 || req->timeout_ms > BFDB_MAX_TXN_TIMEOUT_MS) {
            call_fail(c, GRPC_STATUS_INVALID_ARGUMENT,
                      "timeout_ms must be from 1 to %d", BFDB_MAX_TXN_TIMEOUT_MS);
            goto out;
        }
        timeout = req->timeout_ms;
    }
    struct bfdb_txn_slot *s =
        bfdb_txntab_begin(w->shm->txntab, w->pid, ro, (uint32_t)timeout);
    if (s == NULL) {
        call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
                  "too many open transactions (%u): commit or roll back some",
                  bfdb_txntab_slots(w->shm->txntab));
        goto out;
    }
    bfdb_txn_id_format(s->id, text);
    Buffdb__Kv__BeginTransactionResponse resp =
        BUFFDB__KV__BEGIN_TRANSACTION_RESPONSE__INIT;
    resp.transaction_id.data = (uint8_t *)text;
    resp.transaction_id.len = 36;
    call_reply(c, &resp.base);
    call_finish(c);
out:
    buffdb__kv__begin_transaction_request__free_unpacked(req, NULL);
}

/* end_reply - CommitTransactionResponse and RollbackTransactionResponse
 * have the same shape: success = 1, optional error_message = 2 */
static void
end_reply(struct call *c, int success, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
end_reply(struct call *c, int success, const char *fmt, ...)
{
    Buffdb__Kv__CommitTransactionResponse resp =
        BUFFDB__KV__COMMIT_TRANSACTION_RESPONSE__INIT;
    char msg[1024];

    resp.success = success;
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        resp._error_message_case =
            BUFFDB__KV__COMMIT_TRANSACTION_RESPONSE___ERROR_MESSAGE_ERROR_MESSAGE;
        resp.error_message.data = (uint8_t *)msg;
        resp.error_message.len = strlen(msg);
    }
    call_reply(c, &resp.base);
    call_finish(c);
}

/* end_find - the slot for an ending call, busy for us; or NULL after
 * answering success=false */
static struct bfdb_txn_slot *
end_find(struct call *c, const ProtobufCBinaryData *id, char text[37])
{
    char msg[256];
    int busy;

    struct bfdb_txn_slot *s = txn_open(c->w, id, text, msg, sizeof(msg),
                                       &busy);
    if (s == NULL)
        end_reply(c, 0, "%s", msg);
    return s;
}

/* rollback_staged - drop everything the transaction staged */
static void
rollback_staged(struct worker *w, struct bfdb_txn_slot *s, int outcome)
{
    drop_staged(w, s);
    bfdb_txntab_end(s, outcome);
}

/*
 * cache_commit_begin - the cache's side of a commit that writes kv keys:
 * drop the entries of exactly the keys it staged (the slot is ours and
 * COMMITTING, so no op adds one meanwhile), or, if they cannot be
 * listed, invalidate the whole cache as raw SQL does.  Ended by
 * bfdb_cache_global_end.
 */
static void
cache_commit_begin(struct worker *w, uint64_t num)
{
    char **keys;
    size_t *lens, n;

    if (bfdb_txn_kv_keys(w->kv, num, &keys, &lens, &n) != BFDB_OK) {
        log_warn("could not list a commit's keys (%s): invalidating the "
                 "whole cache", bfdb_store_errmsg(w->kv));
        bfdb_cache_global_begin(w->shm);
        return;
    }
    bfdb_cache_keys_begin(w->cache, w->shm, (const char *const *)keys, lens,
                          n);
    bfdb_txn_kv_keys_free(keys, lens, n);
}

static void
commit_request(struct call *c, const uint8_t *data, size_t len)
{
    struct worker *w = c->w;
    Buffdb__Kv__CommitTransactionRequest *req =
        buffdb__kv__commit_transaction_request__unpack(NULL, len, data);
    char text[37];
    int rc = BFDB_OK, prepared = 0;

    if (req == NULL) {
        BAD_MESSAGE(c, "CommitTransactionRequest");
        return;
    }
    struct bfdb_txn_slot *s = end_find(c, &req->transaction_id, text);
    if (s == NULL)
        goto out;
    uint32_t active = BFDB_TXN_ACTIVE;
    if (!__atomic_compare_exchange_n(&s->state, &active, BFDB_TXN_COMMITTING,
                                     0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
        end_reply(c, 0, "transaction %s %s", text, state_text(s));
        bfdb_txntab_leave(s, w->pid);
        goto out;
    }
    uint32_t nblob = __atomic_load_n(&s->blob_ops, __ATOMIC_SEQ_CST);
    uint32_t nkv = __atomic_load_n(&s->kv_ops, __ATOMIC_SEQ_CST);

    /* 1: blobs first, so no kv value can name a blob that is not there */
    if (nblob > 0) {
        rc = bfdb_txn_blob_prepare(w->blob, s->num);
        if (rc != BFDB_OK) {
            end_reply(c, 0, "commit of %s failed, nothing applied: %s", text,
                      bfdb_store_errmsg(w->blob));
            rollback_staged(w, s, BFDB_TXN_OUT_ROLLED_BACK);
            bfdb_txntab_leave(s, w->pid);
            goto out;
        }
        prepared = 1;
    }
    bfdb_inject("txn-commit-prepared");
    /* 2: the commit point */
    if (nkv > 0 || prepared) {
        if (nkv > 0)
            cache_commit_begin(w, s->num);
        rc = bfdb_txn_kv_commit(w->kv, s->num, prepared);
        if (rc == BFDB_OK) /* past the commit point: its blobs are current */
            __atomic_store_n(&s->committed, 1, __ATOMIC_SEQ_CST);
        if (nkv > 0)
            bfdb_cache_global_end(w->shm);
        if (rc != BFDB_OK) {
            char why[512];
            snprintf(why, sizeof(why), "%s", bfdb_store_errmsg(w->kv));
            int committed = 0;
            if (bfdb_txn_recover(w->kv, w->blob, s->num, prepared,
                                 &committed) != BFDB_OK)
                log_error("could not undo the blobs of failed commit %s; "
                          "the next start will", text);
            end_reply(c, 0, "commit of %s failed, nothing applied: %s", text,
                      why);
            rollback_staged(w, s, BFDB_TXN_OUT_ROLLED_BACK);
            bfdb_txntab_leave(s, w->pid);
            goto out;
        }
    }
    bfdb_inject("txn-commit-done");
    /* 3: past the commit point, only tidying up */
    if (prepared && bfdb_txn_blob_finish(w->blob, w->kv, s->num) != BFDB_OK)
        log_warn("transaction %s committed, but its undo images stay until "
                 "the next start: %s", text, bfdb_store_errmsg(w->blob));
    bfdb_locktab_release_txn(w->shm->locktab, s->num);
    bfdb_txntab_end(s, BFDB_TXN_OUT_COMMITTED);
    bfdb_txntab_leave(s, w->pid);
    end_reply(c, 1, NULL);
out:
    buffdb__kv__commit_transaction_request__free_unpacked(req, NULL);
}

static void
rollback_request(struct call *c, const uint8_t *data, size_t len)
{
    struct worker *w = c->w;
    Buffdb__Kv__RollbackTransactionRequest *req =
        buffdb__kv__rollback_transaction_request__unpack(NULL, len, data);
    char text[37];

    if (req == NULL) {
        BAD_MESSAGE(c, "RollbackTransactionRequest");
        return;
    }
    struct bfdb_txn_slot *s = end_find(c, &req->transaction_id, text);
    if (s != NULL) {
        rollback_staged(w, s, BFDB_TXN_OUT_ROLLED_BACK);
        bfdb_txntab_leave(s, w->pid);
        end_reply(c, 1, NULL);
    }
    buffdb__kv__rollback_transaction_request__free_unpacked(req, NULL);
}

static void
no_request(struct call *c)
{
    call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "no request message");
}

const struct bfdb_method bfdb_method_kv_begin = {
    "/buffdb.kv.Kv/BeginTransaction", CALL_CLIENT_STREAM, begin_request,
    no_request, NULL, NULL};
const struct bfdb_method bfdb_method_kv_commit = {
    "/buffdb.kv.Kv/CommitTransaction", CALL_CLIENT_STREAM, commit_request,
    no_request, NULL, NULL};
const struct bfdb_method bfdb_method_kv_rollback = {
    "/buffdb.kv.Kv/RollbackTransaction", CALL_CLIENT_STREAM, rollback_request,
    no_request, NULL, NULL};

/* ---- housekeeping ----------------------------------------------------------- */

void
h_txn_housekeeping(struct worker *w)
{
    bfdb_txntab *t = w->shm->txntab;

    for (uint32_t i = 0; i < bfdb_txntab_slots(t); i++) {
        struct bfdb_txn_slot *s = bfdb_txntab_slot(t, i);
        uint32_t st = __atomic_load_n(&s->state, __ATOMIC_SEQ_CST);
        if (st == BFDB_TXN_ABORTED) {
            settle_aborted(w, s);
        } else if (st == BFDB_TXN_RECOVER &&
                   bfdb_txntab_enter(s, w->pid, 0) == 0) {
            /* its committer died: the files say how far it got */
            int committed = 0;
            char text[37];
            bfdb_txn_id_format(s->id, text);
            if (bfdb_txn_recover(w->kv, w->blob, s->num,
                                 __atomic_load_n(&s->blob_ops,
                                                 __ATOMIC_SEQ_CST) > 0,
                                 &committed) != BFDB_OK) {
                bfdb_txntab_leave(s, w->pid);
                continue; /* try again at the next round */
            }
            log_info("transaction %s, whose worker died committing it, %s",
                     text, committed ? "committed" : "was rolled back");
            bfdb_locktab_release_txn(w->shm->locktab, s->num);
            bfdb_txntab_end(s, committed ? BFDB_TXN_OUT_COMMITTED
                                         : BFDB_TXN_OUT_WORKER_DIED);
            bfdb_txntab_leave(s, w->pid);
        }
    }
}
