/*
 * call.h - one gRPC call inside a worker, and the methods a worker serves
 *
 * A worker has one thread and one completion queue; it owns every call's
 * state, so nothing here locks.  Each method is driven as a stream,
 * whatever its shape on the wire:
 *   CALL_BIDI           one request in, zero or more responses out, in
 *                       order (Kv.Get, Blob.Store, Query.Query, ...)
 *   CALL_CLIENT_STREAM  requests in, one response when the answer is known
 *                       (Kv.Eq, Blob.EqData, ...)
 * A handler answers through call_reply() and ends the call early with
 * call_fail(); the first error ends the call and later requests are not
 * read.  See docs/ARCHITECTURE.md ("The call state machine").
 */
#ifndef BFDB_WORKER_CALL_H
#define BFDB_WORKER_CALL_H

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

struct worker;
struct call;

enum call_kind { CALL_BIDI, CALL_CLIENT_STREAM };

struct bfdb_method {
    const char *path;  /* "/buffdb.kv.Kv/Get" */
    int kind;
    /* one request message (raw bytes); may reply, fail or start a pump */
    void (*on_request)(struct call *c, const uint8_t *data, size_t len);
    /* the client half-closed and no error ended the call; may be NULL */
    void (*on_end)(struct call *c);
    /* produce more output; returns 1 while there is more to come */
    int (*pump)(struct call *c);
    /* free the call's handler state; may be NULL */
    void (*cleanup)(struct call *c);
};

/* call_tag - what a completion means; one embedded per operation kind */
struct call_tag {
    struct call *c;
    int op;
};

struct call {
    struct worker *w;
    const struct bfdb_method *m; /* NULL: the catch-all, UNIMPLEMENTED */
    int method_index;
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_call_details details;   /* catch-all only */
    grpc_byte_buffer *recv_buf;
    int cancelled;               /* set by RECV_CLOSE_ON_SERVER */

    struct call_tag t_new, t_read, t_write, t_status, t_close;
    int pending;                 /* batches started, not completed */
    unsigned read_inflight : 1, write_inflight : 1, read_paused : 1,
        half_closed : 1, status_sent : 1, close_done : 1, md_sent : 1,
        generating : 1, final_set : 1, started : 1, flush_wait : 1;

    grpc_status_code final_code;
    grpc_slice final_details;
    grpc_metadata init_md[1];

    grpc_byte_buffer **q;        /* responses waiting to be written */
    size_t q_head, q_len, q_cap;
    size_t q_bytes;              /* their encoded size */
    grpc_byte_buffer *writing;

    void *state;                 /* the handler's */
    struct call *next, *prev;    /* the worker's list of live calls */
    struct call *fnext, *fprev;  /* the worker's calls waiting to write */
};

/* call_reply - queue msg as the next response; fails the call with
 * RESOURCE_EXHAUSTED if it is larger than the message limit */
void call_reply(struct call *c, const ProtobufCMessage *msg);

/* call_reply_raw - queue an already encoded response */
void call_reply_raw(struct call *c, const uint8_t *data, size_t len);

/* call_fail - end the call with this status once queued replies are out */
void call_fail(struct call *c, grpc_status_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* call_finish - end the call with OK once queued replies are out */
void call_finish(struct call *c);

/* call_expired - 1 if the call's deadline has passed or it was cancelled
 * (the store's interrupt callback) */
int call_expired(void *c);

/* call_store_status - the gRPC status for a BFDB_E* store error */
grpc_status_code call_store_status(int bfdb_err);

/* entry points for worker.c */
void call_post_request(struct worker *w, int method_index);
void call_dispatch(struct call_tag *t, int ok);
void call_free_all(struct worker *w);
void call_flush(struct worker *w);

#endif /* BFDB_WORKER_CALL_H */
