/*
 * cli_rpc.h - the command line's gRPC client plumbing (C core)
 *
 * Used by the commands that talk to a running server (`buffdb model`).
 * One cli_rpc is one channel to one address; calls on it are synchronous
 * and run one at a time from the main thread.  Every call has a
 * completion queue of its own, and every wait on it is bounded:
 *   - a unary call has a gRPC deadline (its timeout, or none);
 *   - a streaming call has no deadline (a push of many gigabytes may take
 *     hours) but an idle bound: if an operation makes no progress for the
 *     connection's timeout, the call is cancelled and reported as
 *     DEADLINE_EXCEEDED;
 *   - SIGINT (see cli_rpc_catch_sigint) cancels the call in progress
 *     within 100 ms, and the call reports st->interrupted.
 * The caller runs grpc_init() before cli_rpc_connect() and
 * grpc_shutdown_blocking() after cli_rpc_close().
 */
#ifndef BFDB_CLI_CLI_RPC_H
#define BFDB_CLI_CLI_RPC_H

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>
#include <signal.h>
#include <stddef.h>

/* the client's receive limit: far above any message the server sends */
#define CLI_RPC_MAX_RECEIVE (256 << 20)

struct cli_rpc {
    grpc_channel *ch;
    char addr[256];
    long timeout_ms; /* connect, unary calls, stream idle bound; > 0 */
};

/* cli_status - how a call ended */
struct cli_status {
    grpc_status_code code;
    char details[1024]; /* status details (truncated), NUL-terminated */
    int interrupted;    /* cancelled because of SIGINT */
    int idle;           /* cancelled because nothing moved for timeout_ms */
};

struct cli_stream;

/* set by the SIGINT handler; every wait polls it */
extern volatile sig_atomic_t cli_rpc_interrupted;

/*
 * cli_rpc_catch_sigint - install a SIGINT handler that sets
 * cli_rpc_interrupted (once: a second ^C kills the process as usual)
 */
void cli_rpc_catch_sigint(void);

/*
 * cli_rpc_connect - open a channel to addr ("HOST:PORT", "[v6]:PORT") and
 * wait until it is connected, at most timeout_ms.  Returns 0, or prints
 * why not ("buffdb: cannot reach a server at ADDR: ...") and returns -1:
 * the connection was refused or failed, or nothing answered in time.
 */
int cli_rpc_connect(struct cli_rpc *r, const char *addr, long timeout_ms);

/* cli_rpc_close - destroy the channel; every call on it must be over
 * (after an abandoned call the channel is left to the process's exit) */
void cli_rpc_close(struct cli_rpc *r);

/* cli_rpc_abandoned - 1 if a call did not end even after being cancelled
 * (then gRPC must not be shut down: grpc_shutdown_blocking would wait for
 * it); the process should just exit */
int cli_rpc_abandoned(void);

/*
 * cli_rpc_unary - one unary call of method ("/buffdb.model.Model/GetInfo")
 * with request req, its deadline deadline_ms from now (0: none).  On
 * status OK the response is unpacked with desc into *resp (free it with
 * protobuf_c_message_free_unpacked) and 0 is returned; otherwise st says
 * why and -1 is returned (a response that does not unpack is INTERNAL).
 */
int cli_rpc_unary(struct cli_rpc *r, const char *method,
                  const ProtobufCMessage *req,
                  const ProtobufCMessageDescriptor *desc,
                  ProtobufCMessage **resp, long deadline_ms,
                  struct cli_status *st);

/*
 * cli_rpc_fail - print "buffdb: <Method>: <STATUS>: <details>" (or that
 * the call was interrupted, or made no progress) and return CLI_ERROR.
 * method may be the full path; only its last component is printed.
 */
int cli_rpc_fail(const char *method, const struct cli_status *st);

/* cli_rpc_status_name - "NOT_FOUND" etc. */
const char *cli_rpc_status_name(grpc_status_code code);

/*
 * Streams (client-, server- or bidi-streaming).  One send and one receive
 * may be in flight at once.  Functions that wait return -1 once the call
 * is over (cancelled, failed, or ended by the server); cli_rpc_stream_end
 * then gives the status.
 */

/* cli_rpc_stream_start - start a call; NULL if gRPC refused (printed) */
struct cli_stream *cli_rpc_stream_start(struct cli_rpc *r,
                                        const char *method);

/* cli_rpc_stream_send_begin - post m (packed now, so the caller may reuse
 * its buffers at once); the previous send must be complete.  0 or -1 */
int cli_rpc_stream_send_begin(struct cli_stream *s, const ProtobufCMessage *m);

/* cli_rpc_stream_send_wait - wait for the send in flight (if any);
 * 0 if it went out, -1 if the call is over */
int cli_rpc_stream_send_wait(struct cli_stream *s);

/* cli_rpc_stream_send - begin and wait */
int cli_rpc_stream_send(struct cli_stream *s, const ProtobufCMessage *m);

/* cli_rpc_stream_close_send - half-close (after any send in flight) */
int cli_rpc_stream_close_send(struct cli_stream *s);

/*
 * cli_rpc_stream_recv - the next response, unpacked with desc into *out:
 * returns 1, 0 at the end of the stream, -1 if the call failed or the
 * message does not unpack (then the call is cancelled, status INTERNAL)
 */
int cli_rpc_stream_recv(struct cli_stream *s,
                        const ProtobufCMessageDescriptor *desc,
                        ProtobufCMessage **out);

/*
 * cli_rpc_stream_end - wait for the status (cancelling the call first if
 * cancel, or if operations are still pending), fill st, free s.  Returns
 * 0 if the status is OK, -1 otherwise.
 */
int cli_rpc_stream_end(struct cli_stream *s, int cancel,
                       struct cli_status *st);

#endif /* BFDB_CLI_CLI_RPC_H */
