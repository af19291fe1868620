/*
 * cli_rpc.c - synchronous gRPC calls for the command line (cli_rpc.h)
 *
 * Runs in the CLI process only, from its main thread.  A call owns a
 * completion queue; at start it posts SEND_INITIAL_METADATA,
 * RECV_INITIAL_METADATA and RECV_STATUS_ON_CLIENT as three batches, then
 * messages go one SEND_MESSAGE and one RECV_MESSAGE at a time (gRPC
 * allows one pending operation of each type per call).  A unary call is
 * a single batch of all six operations.  Tags are the operation kinds.
 *
 * Every wait is a loop of 100 ms completion-queue polls, so that SIGINT
 * and the idle bound are noticed promptly; either cancels the call,
 * which makes gRPC complete whatever is pending.  If even that does not
 * come within GIVE_UP_MS the call is abandoned (leaked: gRPC may still
 * own its buffers) and reported as failed.
 */
#include "config.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/cli_rpc.h"
#include "common/util.h"

#define POLL_MS 100
#define GIVE_UP_MS 10000 /* after a cancel: stop waiting for gRPC */

volatile sig_atomic_t cli_rpc_interrupted;
static int abandoned; /* a call was given up on: gRPC may still own it */

enum { T_MD_SEND, T_MD_RECV, T_SEND, T_RECV, T_CLOSE, T_STATUS, T_UNARY, T_N };

struct cli_stream {
    struct cli_rpc *rpc;
    const char *method;
    grpc_call *call;
    grpc_completion_queue *cq;
    grpc_metadata_array md, trailing;
    grpc_status_code code;
    grpc_slice details;
    grpc_byte_buffer *send_buf, *recv_buf;
    int pending[T_N];
    int ok[T_N];
    long idle_ms;      /* 0: no idle bound (unary calls have a deadline) */
    long last_move;    /* ms: the last operation started or completed */
    long cancelled_at; /* ms, 0 if not cancelled */
    int half_closed;
    int recv_ended;    /* a RECV_MESSAGE gave no message */
    int interrupted, idle, lost, bad_message;
};

static long
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static gpr_timespec
in_ms(long ms)
{
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                        gpr_time_from_millis(ms, GPR_TIMESPAN));
}

static void
on_sigint(int sig)
{
    (void)sig;
    cli_rpc_interrupted = 1;
}

void
cli_rpc_catch_sigint(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigint;
    sa.sa_flags = SA_RESETHAND; /* a second ^C is not caught */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
}

const char *
cli_rpc_status_name(grpc_status_code code)
{
    static const char *const names[] = {
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
        "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
        "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE",
        "DATA_LOSS", "UNAUTHENTICATED"};

    if ((int)code >= 0 && (size_t)code < sizeof(names) / sizeof(names[0]))
        return names[code];
    return "UNKNOWN_STATUS";
}

static const char *
short_method(const char *method)
{
    const char *p = strrchr(method, '/');

    return p ? p + 1 : method;
}

int
cli_rpc_fail(const char *method, const struct cli_status *st)
{
    const char *m = short_method(method);

    if (st->interrupted)
        return cli_error("%s: interrupted", m);
    if (st->idle)
        return cli_error("%s: DEADLINE_EXCEEDED: %s", m, st->details);
    if (st->details[0] != '\0')
        return cli_error("%s: %s: %s", m, cli_rpc_status_name(st->code),
                         st->details);
    return cli_error("%s: %s", m, cli_rpc_status_name(st->code));
}

/* ---- the channel --------------------------------------------------------- */

int
cli_rpc_connect(struct cli_rpc *r, const char *addr, long timeout_ms)
{
    grpc_arg args[4];
    char agent[64];

    memset(r, 0, sizeof(*r));
    snprintf(r->addr, sizeof(r->addr), "%s", addr);
    r->timeout_ms = timeout_ms;

    memset(args, 0, sizeof(args));
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = CLI_RPC_MAX_RECEIVE;
    snprintf(agent, sizeof(agent), "buffdb-cli/%s", PACKAGE_VERSION);
    args[1].type = GRPC_ARG_STRING;
    args[1].key = (char *)GRPC_ARG_PRIMARY_USER_AGENT_STRING;
    args[1].value.string = agent;
    /* a fixed 8 MiB receive window (no BDP growth): a pull arriving
     * faster than it is written out waits in the server, not in the CLI */
    args[2].type = GRPC_ARG_INTEGER;
    args[2].key = (char *)GRPC_ARG_HTTP2_BDP_PROBE;
    args[2].value.integer = 0;
    args[3].type = GRPC_ARG_INTEGER;
    args[3].key = (char *)GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES;
    args[3].value.integer = 8 << 20;
    grpc_channel_args cargs = {4, args};

    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    r->ch = grpc_channel_create(addr, creds, &cargs);
    grpc_channel_credentials_release(creds);
    if (r->ch == NULL) {
        cli_error("cannot reach a server at %s: gRPC refused the address",
                  addr);
        return -1;
    }

    /*
     * Wait for READY rather than let the first call fail: the message can
     * then say what went wrong.  TRANSIENT_FAILURE right after our own
     * attempt means refused or unreachable: fail at once, as a call that
     * is not wait-for-ready would.
     */
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    long until = now_ms() + timeout_ms;
    const char *why = NULL;
    grpc_connectivity_state st = grpc_channel_check_connectivity_state(r->ch,
                                                                        1);
    while (st != GRPC_CHANNEL_READY) {
        if (st == GRPC_CHANNEL_TRANSIENT_FAILURE) {
            why = "connection failed (refused, unreachable, or the name "
                  "does not resolve)";
            break;
        }
        if (st == GRPC_CHANNEL_SHUTDOWN) {
            why = "the channel was shut down";
            break;
        }
        if (cli_rpc_interrupted) {
            why = "interrupted";
            break;
        }
        long left = until - now_ms();
        if (left <= 0) {
            why = NULL;
            break;
        }
        grpc_channel_watch_connectivity_state(
            r->ch, st, in_ms(left < POLL_MS ? left : POLL_MS), cq, NULL);
        /* the watch always completes: on a change or at its deadline */
        grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC),
                                   NULL);
        st = grpc_channel_check_connectivity_state(r->ch, 1);
    }
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC),
                                      NULL)
               .type != GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
    if (st == GRPC_CHANNEL_READY)
        return 0;
    if (why != NULL)
        cli_error("cannot reach a server at %s: %s", addr, why);
    else
        cli_error("cannot reach a server at %s: no connection within %.3g s",
                  addr, (double)timeout_ms / 1000.0);
    grpc_channel_destroy(r->ch);
    r->ch = NULL;
    return -1;
}

void
cli_rpc_close(struct cli_rpc *r)
{
    if (r->ch != NULL && !abandoned)
        grpc_channel_destroy(r->ch);
    r->ch = NULL;
}

int
cli_rpc_abandoned(void)
{
    return abandoned;
}

/* ---- one call ------------------------------------------------------------ */

static void *
tag_of(int t)
{
    return (void *)(intptr_t)(t + 1);
}

static int
start(struct cli_stream *s, grpc_op *ops, size_t n, int t)
{
    if (grpc_call_start_batch(s->call, ops, n, tag_of(t), NULL) !=
        GRPC_CALL_OK)
        return -1;
    s->pending[t] = 1;
    s->last_move = now_ms();
    return 0;
}

static void
cancel(struct cli_stream *s)
{
    if (s->cancelled_at == 0) {
        grpc_call_cancel(s->call, NULL);
        s->cancelled_at = now_ms();
    }
}

/*
 * wait_one - wait for the next completion of s (one poll interval) and
 * record it; notice SIGINT and the idle bound.  Returns the tag that
 * completed, T_N after a quiet interval, -1 once waiting is hopeless.
 */
static int
wait_one(struct cli_stream *s)
{
    grpc_event ev = grpc_completion_queue_next(s->cq, in_ms(POLL_MS), NULL);
    long now = now_ms();

    /* checked on every event too: a fast stream may never be quiet */
    if (s->cancelled_at == 0 && cli_rpc_interrupted) {
        s->interrupted = 1;
        cancel(s);
    }
    if (ev.type != GRPC_OP_COMPLETE) {
        if (s->cancelled_at == 0 && s->idle_ms > 0 &&
            now - s->last_move > s->idle_ms) {
            s->idle = 1;
            cancel(s);
        }
        if (s->cancelled_at != 0 && now - s->cancelled_at > GIVE_UP_MS) {
            s->lost = 1;
            return -1;
        }
        return T_N;
    }
    int t = (int)(intptr_t)ev.tag - 1;
    if (t < 0 || t >= T_N)
        abort();
    s->pending[t] = 0;
    s->ok[t] = ev.success;
    s->last_move = now;
    if (t == T_SEND) {
        grpc_byte_buffer_destroy(s->send_buf);
        s->send_buf = NULL;
    }
    return t;
}

static int
wait_for(struct cli_stream *s, int t)
{
    while (s->pending[t])
        if (wait_one(s) < 0)
            return -1;
    return 0;
}

static int
any_pending(const struct cli_stream *s)
{
    for (int t = 0; t < T_N; t++)
        if (s->pending[t])
            return 1;
    return 0;
}

/* call_new - a call of method with a deadline (0: none) */
static struct cli_stream *
call_new(struct cli_rpc *r, const char *method, long deadline_ms)
{
    struct cli_stream *s = xcalloc(1, sizeof(*s));

    s->rpc = r;
    s->method = method;
    s->details = grpc_empty_slice();
    s->code = GRPC_STATUS_UNKNOWN;
    s->last_move = now_ms();
    grpc_metadata_array_init(&s->md);
    grpc_metadata_array_init(&s->trailing);
    s->cq = grpc_completion_queue_create_for_next(NULL);
    gpr_timespec deadline = deadline_ms > 0
                                ? in_ms(deadline_ms)
                                : gpr_inf_future(GPR_CLOCK_MONOTONIC);
    grpc_slice m = grpc_slice_from_copied_string(method);
    s->call = grpc_channel_create_call(r->ch, NULL, GRPC_PROPAGATE_DEFAULTS,
                                       s->cq, m, NULL, deadline, NULL);
    grpc_slice_unref(m);
    if (s->call == NULL) {
        grpc_metadata_array_destroy(&s->md);
        grpc_metadata_array_destroy(&s->trailing);
        grpc_completion_queue_shutdown(s->cq);
        grpc_completion_queue_destroy(s->cq);
        free(s);
        cli_error("%s: could not start the call", short_method(method));
        return NULL;
    }
    return s;
}

/* call_free - cancel what is pending, wait for it, release everything */
static void
call_free(struct cli_stream *s)
{
    if (any_pending(s) && !s->lost) {
        cancel(s);
        for (int t = 0; t < T_N && !s->lost; t++)
            wait_for(s, t);
    }
    if (s->lost) {
        /* gRPC still owns buffers of this call: leaking beats a crash */
        abandoned = 1;
        return;
    }
    grpc_call_unref(s->call);
    if (s->send_buf)
        grpc_byte_buffer_destroy(s->send_buf);
    if (s->recv_buf)
        grpc_byte_buffer_destroy(s->recv_buf);
    grpc_metadata_array_destroy(&s->md);
    grpc_metadata_array_destroy(&s->trailing);
    grpc_slice_unref(s->details);
    grpc_completion_queue_shutdown(s->cq);
    while (grpc_completion_queue_next(s->cq,
                                      gpr_inf_future(GPR_CLOCK_MONOTONIC),
                                      NULL)
               .type != GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(s->cq);
    free(s);
}

/* fill_status - how the call ended, into st */
static void
fill_status(struct cli_stream *s, struct cli_status *st)
{
    memset(st, 0, sizeof(*st));
    st->interrupted = s->interrupted;
    st->idle = s->idle;
    if (s->interrupted) {
        st->code = GRPC_STATUS_CANCELLED;
        snprintf(st->details, sizeof(st->details), "interrupted");
    } else if (s->idle) {
        st->code = GRPC_STATUS_DEADLINE_EXCEEDED;
        snprintf(st->details, sizeof(st->details),
                 "no progress for %.3g s", (double)s->idle_ms / 1000.0);
    } else if (s->lost || s->pending[T_STATUS]) {
        st->code = GRPC_STATUS_UNKNOWN;
        snprintf(st->details, sizeof(st->details),
                 "the call did not end after being cancelled");
    } else if (s->bad_message && s->code == GRPC_STATUS_CANCELLED) {
        st->code = GRPC_STATUS_INTERNAL;
        snprintf(st->details, sizeof(st->details),
                 "the server sent a message that does not parse");
    } else {
        size_t n = GRPC_SLICE_LENGTH(s->details);
        if (n >= sizeof(st->details))
            n = sizeof(st->details) - 1;
        st->code = s->code;
        memcpy(st->details, GRPC_SLICE_START_PTR(s->details), n);
        st->details[n] = '\0';
    }
}

/* pack - m as a byte buffer (one slice, no extra copy) */
static grpc_byte_buffer *
pack(const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    grpc_slice sl = grpc_slice_malloc(len);

    protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(sl));
    grpc_byte_buffer *b = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    return b;
}

/* unpack - the byte buffer as a message of desc; NULL if it does not */
static ProtobufCMessage *
unpack(grpc_byte_buffer *b, const ProtobufCMessageDescriptor *desc)
{
    grpc_byte_buffer_reader reader;
    ProtobufCMessage *m = NULL;

    if (!grpc_byte_buffer_reader_init(&reader, b))
        return NULL;
    grpc_slice sl = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    m = protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(sl),
                                  GRPC_SLICE_START_PTR(sl));
    grpc_slice_unref(sl);
    return m;
}

int
cli_rpc_unary(struct cli_rpc *r, const char *method,
              const ProtobufCMessage *req,
              const ProtobufCMessageDescriptor *desc, ProtobufCMessage **resp,
              long deadline_ms, struct cli_status *st)
{
    struct cli_stream *s = call_new(r, method, deadline_ms);
    grpc_op ops[6];
    int rc = -1;

    *resp = NULL;
    if (s == NULL) {
        memset(st, 0, sizeof(*st));
        st->code = GRPC_STATUS_INTERNAL;
        snprintf(st->details, sizeof(st->details),
                 "could not start the call");
        return -1;
    }
    s->send_buf = pack(req);
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = s->send_buf;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &s->md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &s->recv_buf;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &s->trailing;
    ops[5].data.recv_status_on_client.status = &s->code;
    ops[5].data.recv_status_on_client.status_details = &s->details;
    if (start(s, ops, 6, T_UNARY) == 0)
        wait_for(s, T_UNARY);
    if (!s->lost && !s->pending[T_UNARY] && s->code == GRPC_STATUS_OK &&
        !s->interrupted) {
        if (s->recv_buf != NULL)
            *resp = unpack(s->recv_buf, desc);
        if (*resp == NULL)
            s->bad_message = 1;
    }
    fill_status(s, st);
    if (st->code == GRPC_STATUS_OK && *resp == NULL) {
        st->code = GRPC_STATUS_INTERNAL;
        snprintf(st->details, sizeof(st->details),
                 "the server's answer does not parse");
    }
    if (st->code == GRPC_STATUS_OK)
        rc = 0;
    call_free(s);
    return rc;
}

/* ---- streams ------------------------------------------------------------- */

struct cli_stream *
cli_rpc_stream_start(struct cli_rpc *r, const char *method)
{
    struct cli_stream *s = call_new(r, method, 0);
    grpc_op op;

    if (s == NULL)
        return NULL;
    s->idle_ms = r->timeout_ms;
    /* three batches that complete on their own: metadata out, metadata
     * in (with the first message or the status), and the status */
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_SEND_INITIAL_METADATA;
    if (start(s, &op, 1, T_MD_SEND) != 0)
        goto fail;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_INITIAL_METADATA;
    op.data.recv_initial_metadata.recv_initial_metadata = &s->md;
    if (start(s, &op, 1, T_MD_RECV) != 0)
        goto fail;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    op.data.recv_status_on_client.trailing_metadata = &s->trailing;
    op.data.recv_status_on_client.status = &s->code;
    op.data.recv_status_on_client.status_details = &s->details;
    if (start(s, &op, 1, T_STATUS) != 0)
        goto fail;
    return s;

fail:
    call_free(s);
    cli_error("%s: could not start the call", short_method(method));
    return NULL;
}

int
cli_rpc_stream_send_begin(struct cli_stream *s, const ProtobufCMessage *m)
{
    grpc_op op;

    if (s->pending[T_SEND] || s->half_closed || s->cancelled_at != 0 ||
        !s->pending[T_STATUS])
        return -1;
    s->send_buf = pack(m);
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_SEND_MESSAGE;
    op.data.send_message.send_message = s->send_buf;
    if (start(s, &op, 1, T_SEND) != 0) {
        grpc_byte_buffer_destroy(s->send_buf);
        s->send_buf = NULL;
        return -1;
    }
    return 0;
}

int
cli_rpc_stream_send_wait(struct cli_stream *s)
{
    if (!s->pending[T_SEND])
        return 0;
    if (wait_for(s, T_SEND) != 0)
        return -1;
    return s->ok[T_SEND] && s->cancelled_at == 0 ? 0 : -1;
}

int
cli_rpc_stream_send(struct cli_stream *s, const ProtobufCMessage *m)
{
    if (cli_rpc_stream_send_begin(s, m) != 0)
        return -1;
    return cli_rpc_stream_send_wait(s);
}

int
cli_rpc_stream_close_send(struct cli_stream *s)
{
    grpc_op op;

    if (s->half_closed)
        return 0;
    if (cli_rpc_stream_send_wait(s) != 0)
        return -1;
    s->half_closed = 1;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    if (start(s, &op, 1, T_CLOSE) != 0 || wait_for(s, T_CLOSE) != 0)
        return -1;
    return s->ok[T_CLOSE] ? 0 : -1;
}

int
cli_rpc_stream_recv(struct cli_stream *s,
                    const ProtobufCMessageDescriptor *desc,
                    ProtobufCMessage **out)
{
    grpc_op op;

    *out = NULL;
    if (s->recv_ended || s->cancelled_at != 0)
        return s->recv_ended && s->cancelled_at == 0 ? 0 : -1;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &s->recv_buf;
    if (start(s, &op, 1, T_RECV) != 0 || wait_for(s, T_RECV) != 0)
        return -1;
    if (s->recv_buf == NULL) {
        s->recv_ended = 1;
        return s->ok[T_RECV] && s->cancelled_at == 0 ? 0 : -1;
    }
    *out = unpack(s->recv_buf, desc);
    grpc_byte_buffer_destroy(s->recv_buf);
    s->recv_buf = NULL;
    if (*out == NULL) {
        s->bad_message = 1;
        cancel(s);
        return -1;
    }
    return 1;
}

int
cli_rpc_stream_end(struct cli_stream *s, int cancel_call,
                   struct cli_status *st)
{
    int rc;

    if (cli_rpc_interrupted && s->cancelled_at == 0) {
        s->interrupted = 1;
        cancel(s);
    }
    if (cancel_call)
        cancel(s);
    if (!s->lost && !s->half_closed && s->cancelled_at == 0 &&
        s->pending[T_STATUS])
        cli_rpc_stream_close_send(s);
    /* the status comes after the messages: drain any left unread */
    while (!s->lost && s->pending[T_STATUS] && !s->recv_ended &&
           s->cancelled_at == 0) {
        grpc_op op;
        if (s->pending[T_RECV] && wait_for(s, T_RECV) != 0)
            break;
        if (s->recv_buf != NULL) {
            grpc_byte_buffer_destroy(s->recv_buf);
            s->recv_buf = NULL;
        }
        memset(&op, 0, sizeof(op));
        op.op = GRPC_OP_RECV_MESSAGE;
        op.data.recv_message.recv_message = &s->recv_buf;
        if (start(s, &op, 1, T_RECV) != 0 || wait_for(s, T_RECV) != 0)
            break;
        if (s->recv_buf == NULL) {
            s->recv_ended = 1;
            break;
        }
        grpc_byte_buffer_destroy(s->recv_buf);
        s->recv_buf = NULL;
    }
    if (!s->lost)
        wait_for(s, T_STATUS);
    if (!s->lost)
        wait_for(s, T_MD_RECV);
    fill_status(s, st);
    rc = st->code == GRPC_STATUS_OK ? 0 : -1;
    call_free(s);
    return rc;
}
