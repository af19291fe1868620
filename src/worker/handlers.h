/*
 * handlers.h - the methods a worker serves, and helpers they share
 *
 * One bfdb_method per RPC (see call.h).  Handlers run on the worker's one
 * thread; they use the worker's store handles and answer through call.h.
 */
#ifndef BFDB_WORKER_HANDLERS_H
#define BFDB_WORKER_HANDLERS_H

#include <protobuf-c/protobuf-c.h>

#include "shm/txntab.h"
#include "store/store.h"
#include "worker/call.h"

struct worker;

extern const struct bfdb_method bfdb_method_kv_get, bfdb_method_kv_set,
    bfdb_method_kv_delete, bfdb_method_kv_eq, bfdb_method_kv_not_eq,
    bfdb_method_kv_begin, bfdb_method_kv_commit, bfdb_method_kv_rollback;
extern const struct bfdb_method bfdb_method_blob_get, bfdb_method_blob_store,
    bfdb_method_blob_update, bfdb_method_blob_delete,
    bfdb_method_blob_eq_data, bfdb_method_blob_not_eq_data;
extern const struct bfdb_method bfdb_method_query_query,
    bfdb_method_query_execute;
extern const struct bfdb_method bfdb_method_index_create,
    bfdb_method_index_drop, bfdb_method_index_list, bfdb_method_index_lookup,
    bfdb_method_index_range;
extern const struct bfdb_method bfdb_method_model_push,
    bfdb_method_model_push_status, bfdb_method_model_abort_push,
    bfdb_method_model_pull, bfdb_method_model_list_models,
    bfdb_method_model_list_versions, bfdb_method_model_get_info,
    bfdb_method_model_delete, bfdb_method_model_set_alias,
    bfdb_method_model_verify;

/* h_printable - a bounded, escaped copy of a key for messages */
const char *h_printable(const ProtobufCBinaryData *b, char *buf, size_t cap);

/* h_check_utf8 - fail the call with INVALID_ARGUMENT unless b is UTF-8;
 * returns 1 if it is */
int h_check_utf8(struct call *c, const ProtobufCBinaryData *b,
                 const char *field);

/* h_store_fail - fail the call with the status for a store error */
void h_store_fail(struct call *c, int err, const char *msg);

/* h_key_name - the lock name of a kv key ('k' + key) in small if it fits
 * (cap bytes), else malloc'd; free it if it is not small */
char *h_key_name(const ProtobufCBinaryData *key, char *small, size_t cap,
                 size_t *len);

/* h_blob_name - the lock name of a blob ('b' + 8-byte id), 9 bytes */
void h_blob_name(uint64_t id, char out[9]);

/* h_lock - take the lock-table lock name for transaction t (NULL: for
 * this worker, one operation), waiting up to lock_wait; 0, or -1 after
 * failing the call (ABORTED naming `what`, or UNAVAILABLE if the table is
 * full).  h_unlock releases an operation lock (a transaction's locks go
 * when it ends). */
int h_lock(struct call *c, struct bfdb_txn_slot *t, const void *name,
           size_t len, const char *what);
void h_unlock(struct call *c, const void *name, size_t len);

/* h_conn_take - a SQLite connection of the call's own to the kv (target
 * 0) or blob (1) store, from the worker's small pool or newly opened,
 * polling the call's deadline; NULL after failing the call.  A statement
 * left open on the worker's shared connection would hold its transaction
 * open and delay other calls' commits: streams (Query, index Lookup)
 * read from one of these.  h_conn_give puts it back (NULL: no-op). */
bfdb_store *h_conn_take(struct call *c, int target);
void h_conn_give(struct worker *w, int target, bfdb_store *conn);

/* Eq/NotEq/EqData/NotEqData share these: c->state is a struct bfdb_cmp.
 * h_cmp_reply sends the BoolValue and ends the call; h_cmp_end answers
 * when the client half-closed (an empty stream is true). */
void h_cmp_reply(struct call *c, int value);
void h_cmp_end(struct call *c);
void h_cmp_cleanup(struct call *c);

/* Transactions (handlers_txn.c). */

/* h_txn_enter - the active transaction a request names, marked busy for
 * this worker; NULL after failing the call (unknown, ended, expired:
 * FAILED_PRECONDITION; read-only and write: FAILED_PRECONDITION) */
struct bfdb_txn_slot *h_txn_enter(struct call *c,
                                  const ProtobufCBinaryData *id, int write);
void h_txn_leave(struct call *c, struct bfdb_txn_slot *s);

/* h_txn_recheck - after a write of s took its lock (staged or not): 0 if
 * s is still active; otherwise (the master rolled it back meanwhile, e.g.
 * its worker died while this write waited for the lock) drop what it
 * staged and its locks, which whoever settled it may have missed, fail
 * the call FAILED_PRECONDITION if fail_call, and return -1 */
int h_txn_recheck(struct call *c, struct bfdb_txn_slot *s, int fail_call);

/* h_txn_housekeeping - settle transactions the master aborted and finish
 * commits whose worker died; called about once a second */
void h_txn_housekeeping(struct worker *w);

/* h_model_housekeeping - drop unfinished model pushes untouched for
 * push_resume_ttl (worker slot 0, about once a minute) */
void h_model_housekeeping(struct worker *w);

#endif /* BFDB_WORKER_HANDLERS_H */
