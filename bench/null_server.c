/*
 * null_server.c - a gRPC echo server: the ceiling buffdb-bench measures
 * buffdb against
 *
 * usage: null_server ADDR        (HOST:PORT; port 0 picks a free one)
 *
 * One thread, one completion queue.  The method /bench.Null/Echo is a
 * bidi stream whose every message is sent back unchanged, in order;
 * messages are never decoded.  Any other method is answered
 * UNIMPLEMENTED by a catch-all request.  Once listening it prints
 * "ready: HOST:PORT" (the bound port) on stdout.  SIGTERM or SIGINT stops
 * it: no new calls, calls in flight are cancelled after a second, and it
 * exits 0.  Not part of the buffdb program.
 *
 * Per call: a RECV_CLOSE_ON_SERVER batch (completes when the call is over
 * for any reason), at most one RECV_MESSAGE and one SEND_MESSAGE pending,
 * a FIFO of echoes waiting to be sent; reading pauses while QUEUE_HIGH
 * echoes wait.  The status goes out once the client half-closed and the
 * FIFO is empty.  A call is freed when CLOSE completed and no batch is
 * pending.
 */
#include "config.h"

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ECHO_METHOD "/bench.Null/Echo"
#define QUEUE_HIGH 64
#define POSTED 8      /* call requests kept posted */
#define TICK_MS 200

enum { T_NEW, T_READ, T_WRITE, T_STATUS, T_CLOSE };

struct ncall;

struct ntag {
    struct ncall *c;
    int kind;
};

struct ncall {
    struct ncall *next, *prev;
    int echo;                    /* 0: the catch-all */
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_call_details details;
    grpc_byte_buffer *recv_buf, *writing;
    grpc_byte_buffer *q[QUEUE_HIGH];
    int q_head, q_len;
    int cancelled;
    int pending;
    int read_inflight, write_inflight, half_closed, md_sent, status_sent,
        close_done, started;
    grpc_slice status_details;
    struct ntag t_new, t_read, t_write, t_status, t_close;
};

static volatile sig_atomic_t stop_requested;
static grpc_server *server;
static grpc_completion_queue *cq;
static void *echo_handle;
static struct ncall calls = {.next = &calls, .prev = &calls}; /* list head */
static int shutting_down;

static void
on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void *
xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);

    if (p == NULL) {
        fprintf(stderr, "null_server: out of memory\n");
        abort();
    }
    return p;
}

static struct ncall *
ncall_new(int echo)
{
    struct ncall *c = xcalloc(1, sizeof(*c));

    c->echo = echo;
    grpc_metadata_array_init(&c->md);
    grpc_call_details_init(&c->details);
    c->status_details = grpc_empty_slice();
    c->t_new = (struct ntag){c, T_NEW};
    c->t_read = (struct ntag){c, T_READ};
    c->t_write = (struct ntag){c, T_WRITE};
    c->t_status = (struct ntag){c, T_STATUS};
    c->t_close = (struct ntag){c, T_CLOSE};
    c->next = calls.next;
    c->prev = &calls;
    calls.next->prev = c;
    calls.next = c;
    return c;
}

static void
ncall_free(struct ncall *c)
{
    while (c->q_len > 0) {
        grpc_byte_buffer_destroy(c->q[c->q_head]);
        c->q_head = (c->q_head + 1) % QUEUE_HIGH;
        c->q_len--;
    }
    if (c->writing)
        grpc_byte_buffer_destroy(c->writing);
    if (c->recv_buf)
        grpc_byte_buffer_destroy(c->recv_buf);
    if (c->call)
        grpc_call_unref(c->call);
    grpc_metadata_array_destroy(&c->md);
    grpc_call_details_destroy(&c->details);
    grpc_slice_unref(c->status_details);
    c->prev->next = c->next;
    c->next->prev = c->prev;
    free(c);
}

static void
post_request(int echo)
{
    struct ncall *c = ncall_new(echo);
    grpc_call_error e;

    if (echo)
        e = grpc_server_request_registered_call(server, echo_handle, &c->call,
                                                &c->deadline, &c->md, NULL, cq,
                                                cq, &c->t_new);
    else
        e = grpc_server_request_call(server, &c->call, &c->details, &c->md,
                                     cq, cq, &c->t_new);
    if (e != GRPC_CALL_OK) {
        fprintf(stderr, "null_server: could not request a call: error %d\n",
                (int)e);
        ncall_free(c);
    }
}

static int
batch(struct ncall *c, grpc_op *ops, size_t n, struct ntag *tag)
{
    if (grpc_call_start_batch(c->call, ops, n, tag, NULL) != GRPC_CALL_OK)
        return -1;
    c->pending++;
    return 0;
}

static void
progress(struct ncall *c)
{
    grpc_op ops[2];
    size_t n;

    if (c->close_done)
        return;
    if (!c->write_inflight && c->q_len > 0) {
        c->writing = c->q[c->q_head];
        c->q_head = (c->q_head + 1) % QUEUE_HIGH;
        c->q_len--;
        memset(ops, 0, sizeof(ops));
        n = 0;
        if (!c->md_sent) {
            ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
            c->md_sent = 1;
        }
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = c->writing;
        if (batch(c, ops, n, &c->t_write) == 0)
            c->write_inflight = 1;
    }
    if (c->echo && !c->read_inflight && !c->half_closed &&
        c->q_len < QUEUE_HIGH) {
        memset(ops, 0, sizeof(ops));
        ops[0].op = GRPC_OP_RECV_MESSAGE;
        ops[0].data.recv_message.recv_message = &c->recv_buf;
        if (batch(c, ops, 1, &c->t_read) == 0)
            c->read_inflight = 1;
        else
            c->half_closed = 1;
    }
    if (!c->status_sent && c->half_closed && !c->read_inflight &&
        !c->write_inflight && c->q_len == 0) {
        memset(ops, 0, sizeof(ops));
        n = 0;
        if (!c->md_sent) {
            ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
            c->md_sent = 1;
        }
        ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
        if (c->echo) {
            ops[n].data.send_status_from_server.status = GRPC_STATUS_OK;
        } else {
            ops[n].data.send_status_from_server.status =
                GRPC_STATUS_UNIMPLEMENTED;
            c->status_details =
                grpc_slice_from_static_string("null_server serves only "
                                              ECHO_METHOD);
            ops[n].data.send_status_from_server.status_details =
                &c->status_details;
        }
        n++;
        if (batch(c, ops, n, &c->t_status) == 0)
            c->status_sent = 1;
    }
}

static void
on_new(struct ncall *c, int ok)
{
    grpc_op op;

    if (!ok) { /* shutting down */
        ncall_free(c);
        return;
    }
    c->started = 1;
    if (!shutting_down)
        post_request(c->echo);
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->cancelled;
    if (batch(c, &op, 1, &c->t_close) != 0) {
        ncall_free(c);
        return;
    }
    if (!c->echo)
        c->half_closed = 1; /* answer at once */
    progress(c);
}

static void
dispatch(struct ntag *t, int ok)
{
    struct ncall *c = t->c;

    if (t->kind == T_NEW) {
        on_new(c, ok);
        return;
    }
    c->pending--;
    switch (t->kind) {
    case T_READ:
        c->read_inflight = 0;
        if (!ok || c->recv_buf == NULL) {
            c->half_closed = 1;
        } else {
            /* the echo: the received buffer goes back as it is */
            c->q[(c->q_head + c->q_len) % QUEUE_HIGH] = c->recv_buf;
            c->q_len++;
            c->recv_buf = NULL;
        }
        break;
    case T_WRITE:
        c->write_inflight = 0;
        grpc_byte_buffer_destroy(c->writing);
        c->writing = NULL;
        break;
    case T_STATUS:
        break;
    case T_CLOSE:
        c->close_done = 1;
        break;
    }
    if (c->close_done && c->pending == 0) {
        ncall_free(c);
        return;
    }
    progress(c);
}

static struct ntag shutdown_tag;

int
main(int argc, char **argv)
{
    struct sigaction sa;

    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: null_server HOST:PORT\n");
        return 2;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    grpc_init();
    cq = grpc_completion_queue_create_for_next(NULL);
    /* no SO_REUSEPORT (gRPC's default): a port already in use, by buffdb
     * say, must fail here rather than be shared silently */
    grpc_arg arg;
    memset(&arg, 0, sizeof(arg));
    arg.type = GRPC_ARG_INTEGER;
    arg.key = (char *)GRPC_ARG_ALLOW_REUSEPORT;
    arg.value.integer = 0;
    grpc_channel_args args = {1, &arg};
    server = grpc_server_create(&args, NULL);
    grpc_server_register_completion_queue(server, cq, NULL);
    echo_handle = grpc_server_register_method(server, ECHO_METHOD, NULL,
                                              GRPC_SRM_PAYLOAD_NONE, 0);
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    int port = grpc_server_add_http2_port(server, argv[1], creds);
    grpc_server_credentials_release(creds);
    if (port == 0) {
        fprintf(stderr, "null_server: could not listen on %s\n", argv[1]);
        grpc_server_destroy(server);
        grpc_completion_queue_shutdown(cq);
        while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME),
                                          NULL).type != GRPC_QUEUE_SHUTDOWN)
            ;
        grpc_completion_queue_destroy(cq);
        grpc_shutdown_blocking();
        return 1;
    }
    grpc_server_start(server);
    for (int i = 0; i < POSTED; i++)
        post_request(1);
    post_request(0);
    post_request(0);
    /* the host part as given, the port as bound */
    const char *colon = strrchr(argv[1], ':');
    printf("ready: %.*s:%d\n", colon ? (int)(colon - argv[1]) : 0, argv[1],
           port);
    fflush(stdout);

    int shutdown_done = 0;
    gpr_timespec cancel_at = gpr_inf_future(GPR_CLOCK_MONOTONIC);
    while (!shutdown_done) {
        grpc_event ev = grpc_completion_queue_next(
            cq,
            gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                         gpr_time_from_millis(TICK_MS, GPR_TIMESPAN)),
            NULL);
        if (ev.type == GRPC_OP_COMPLETE) {
            if (ev.tag == &shutdown_tag)
                shutdown_done = 1;
            else
                dispatch(ev.tag, ev.success);
        }
        if (stop_requested && !shutting_down) {
            shutting_down = 1;
            grpc_server_shutdown_and_notify(server, cq, &shutdown_tag);
            cancel_at = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                     gpr_time_from_millis(1000, GPR_TIMESPAN));
        }
        if (shutting_down &&
            gpr_time_cmp(gpr_now(GPR_CLOCK_MONOTONIC), cancel_at) >= 0) {
            /* streams left open by clients would hold the shutdown */
            grpc_server_cancel_all_calls(server);
            cancel_at = gpr_inf_future(GPR_CLOCK_MONOTONIC);
        }
    }
    /* the shutdown notification comes after every call ended; drain what
     * is left of their batches, then the queue (bounded by the tick) */
    grpc_server_destroy(server);
    grpc_completion_queue_shutdown(cq);
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(
            cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type == GRPC_OP_COMPLETE)
            dispatch(ev.tag, ev.success);
    }
    /* requests never matched and calls whose CLOSE never came */
    while (calls.next != &calls)
        ncall_free(calls.next);
    grpc_completion_queue_destroy(cq);
    grpc_shutdown_blocking();
    return 0;
}
