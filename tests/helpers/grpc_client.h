/*
 * grpc_client.h - a small synchronous gRPC C-core client for the
 * integration tests
 *
 * Every method of buffdb is driven as a stream: requests are encoded
 * protobuf-c messages (gc_pack), responses come back as raw bytes for the
 * test to unpack with the generated *_unpack.  One connection (gc_conn)
 * is one channel with channel arguments of its own, so it is its own TCP
 * connection, and so reaches a worker of its own choosing by the kernel's
 * SO_REUSEPORT hash.
 *
 * The caller runs grpc_init() before using anything here and
 * gc_cleanup_all() then grpc_shutdown_blocking() at the end (the test
 * suite's .init and .fini): Criterion forks each test, and gRPC must be
 * initialised in the process that uses it.  Nothing here asserts; calls
 * report what happened and the tests decide.
 *
 * Thread safety: a gc_conn may be used by one thread at a time; different
 * connections may be used from different threads at once.
 */
#ifndef BFDB_TESTS_GRPC_CLIENT_H
#define BFDB_TESTS_GRPC_CLIENT_H

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* the client's receive limit: above anything a test asks the server for */
#define GC_MAX_RECEIVE (256 << 20)

struct gc_conn;
struct gc_stream;

/* gc_buf - one encoded message */
struct gc_buf {
    uint8_t *data;
    size_t len;
};

/* gc_reqs - a growing list of encoded requests */
struct gc_reqs {
    struct gc_buf *v;
    size_t n, cap;
};

/* gc_result - how a call ended; gc_result_free releases it */
struct gc_result {
    grpc_status_code code;
    char *details;       /* status details, NUL-terminated, never NULL */
    pid_t worker_pid;    /* buffdb-worker-pid initial metadata, 0 if none */
    struct gc_buf *msgs; /* the responses, in order */
    size_t n;
    size_t sent;         /* requests whose SEND_MESSAGE succeeded */
    long elapsed_ms;     /* from the start of the call to its status */
};

/* gc_pack - encode m into a malloc'd buffer */
struct gc_buf gc_pack(const ProtobufCMessage *m);

/* gc_reqs_add - append the encoding of m; gc_reqs_add_raw - append bytes */
void gc_reqs_add(struct gc_reqs *r, const ProtobufCMessage *m);
void gc_reqs_add_raw(struct gc_reqs *r, const void *data, size_t len);
void gc_reqs_free(struct gc_reqs *r);

/*
 * gc_connect - a channel to target ("127.0.0.1:port") with its own
 * channel arguments (local subchannel pool and a unique id), so its own
 * TCP connection; no retries, 256 MiB receive limit.  The connection is
 * made lazily by the first call.  Returns NULL only if gRPC refuses.
 */
struct gc_conn *gc_connect(const char *target);

/* gc_close - destroy the channel; calls on it must be finished */
void gc_close(struct gc_conn *c);

/*
 * gc_call - one streaming call of method ("/buffdb.kv.Kv/Set"): send the
 * n requests one SEND_MESSAGE at a time, half-close, read every response
 * until the end of the stream, then the status.  If the server ends the
 * call early, the requests left are not sent.  The call's deadline is
 * deadline_ms from now.  Returns 0 with *res filled, or -1 if gRPC
 * refused to start the call (res then says INTERNAL).
 */
int gc_call(struct gc_conn *c, const char *method, const struct gc_buf *reqs,
            size_t n, int deadline_ms, struct gc_result *res);

/*
 * gc_call_pipelined - as gc_call, but with a send and a receive in flight
 * at once, so that any number of requests can be streamed without either
 * side stalling on flow control.
 */
int gc_call_pipelined(struct gc_conn *c, const char *method,
                      const struct gc_buf *reqs, size_t n, int deadline_ms,
                      struct gc_result *res);

/* gc_result_free - free what a call returned; res may be reused after */
void gc_result_free(struct gc_result *res);

/*
 * A stream driven step by step, for calls kept open across events (a
 * signal to the server, say).  gc_stream_send and gc_stream_recv wait for
 * their operation; gc_stream_finish half-closes (unless already done),
 * reads the remaining responses into res (zeroed by the caller) and waits
 * for the status, then frees the stream.  gc_stream_cancel cancels and
 * frees it.  A stream's deadline is deadline_ms from gc_stream_start.
 */
struct gc_stream *gc_stream_start(struct gc_conn *c, const char *method,
                                  int deadline_ms);
/* returns 0 if the message was sent, -1 if the call is over */
int gc_stream_send(struct gc_stream *s, const struct gc_buf *msg);
/* gc_stream_send_burst - send msgs[0..n) with GRPC_WRITE_BUFFER_HINT on
 * all but the last, so that they leave in as few writes as gRPC can
 * (they arrive together, as from a client that batches its pipeline);
 * 0 if all were sent, -1 if the call is over */
int gc_stream_send_burst(struct gc_stream *s, const struct gc_buf *msgs,
                         size_t n);
/* returns 1 with a message in *out (free out->data), 0 at the end of the
 * stream, -1 if the call failed */
int gc_stream_recv(struct gc_stream *s, struct gc_buf *out);
int gc_stream_half_close(struct gc_stream *s);
void gc_stream_finish(struct gc_stream *s, struct gc_result *res);
void gc_stream_cancel(struct gc_stream *s);

/*
 * gc_cleanup_all - cancel and free every stream and close every
 * connection still open (an assertion left them behind); call before
 * grpc_shutdown_blocking.
 */
void gc_cleanup_all(void);

/* gc_status_name - "NOT_FOUND" etc., for messages */
const char *gc_status_name(grpc_status_code code);

#endif /* BFDB_TESTS_GRPC_CLIENT_H */
