/*
 * grpc_client.c - synchronous gRPC client for the tests (see grpc_client.h)
 *
 * Each call has a completion queue of its own, so waiting for one of its
 * operations never sees another call's events.  At start a call posts
 * SEND_INITIAL_METADATA, RECV_INITIAL_METADATA and RECV_STATUS_ON_CLIENT
 * as three batches; messages then go one SEND_MESSAGE and one
 * RECV_MESSAGE at a time, the rule being one pending operation of each
 * type per call.  Tags are the operation kinds (1..T_N).  Every wait is
 * bounded: past the call's deadline plus a margin the call is cancelled,
 * which makes gRPC complete whatever is pending.
 */
#include "config.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "grpc_client.h"

#define CANCEL_MARGIN_MS 10000 /* past the deadline: cancel the call */
#define GIVE_UP_MS 20000       /* past the cancel: stop waiting */

enum { T_MD_SEND, T_MD_RECV, T_SEND, T_RECV, T_CLOSE, T_STATUS, T_N };

struct gc_conn {
    grpc_channel *ch;
    struct gc_conn *next, *prev;
};

struct gc_stream {
    struct gc_conn *conn;
    grpc_call *call;
    grpc_completion_queue *cq;
    grpc_metadata_array md, trailing;
    grpc_status_code code;
    grpc_slice details;
    grpc_byte_buffer *send_buf, *recv_buf;
    int pending[T_N];
    int ok[T_N];
    int half_closed;
    int cancelled;
    int lost;          /* gave up waiting: leak rather than free in use */
    size_t sent;
    long t0, t_status;
    long cancel_at;    /* ms, monotonic */
    struct gc_stream *next, *prev;
};

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct gc_conn *conns;
static struct gc_stream *streams;
static int conn_counter;

static long
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *
xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        abort();
    return p;
}

const char *
gc_status_name(grpc_status_code code)
{
    static const char *const names[] = {
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
        "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
        "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE",
        "DATA_LOSS", "UNAUTHENTICATED"};
    if ((int)code >= 0 && (size_t)code < sizeof(names) / sizeof(names[0]))
        return names[code];
    return "(unknown status)";
}

/* ---- messages ------------------------------------------------------------ */

struct gc_buf
gc_pack(const ProtobufCMessage *m)
{
    struct gc_buf b;

    b.len = protobuf_c_message_get_packed_size(m);
    b.data = xmalloc(b.len);
    protobuf_c_message_pack(m, b.data);
    return b;
}

static void
reqs_grow(struct gc_reqs *r)
{
    if (r->n < r->cap)
        return;
    r->cap = r->cap ? r->cap * 2 : 16;
    r->v = realloc(r->v, r->cap * sizeof(*r->v));
    if (r->v == NULL)
        abort();
}

void
gc_reqs_add(struct gc_reqs *r, const ProtobufCMessage *m)
{
    reqs_grow(r);
    r->v[r->n++] = gc_pack(m);
}

void
gc_reqs_add_raw(struct gc_reqs *r, const void *data, size_t len)
{
    reqs_grow(r);
    r->v[r->n].data = xmalloc(len);
    if (len)
        memcpy(r->v[r->n].data, data, len);
    r->v[r->n].len = len;
    r->n++;
}

void
gc_reqs_free(struct gc_reqs *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->v[i].data);
    free(r->v);
    memset(r, 0, sizeof(*r));
}

void
gc_result_free(struct gc_result *res)
{
    for (size_t i = 0; i < res->n; i++)
        free(res->msgs[i].data);
    free(res->msgs);
    free(res->details);
    memset(res, 0, sizeof(*res));
}

static void
result_add(struct gc_result *res, struct gc_buf b, size_t *cap)
{
    if (res->n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        res->msgs = realloc(res->msgs, *cap * sizeof(*res->msgs));
        if (res->msgs == NULL)
            abort();
    }
    res->msgs[res->n++] = b;
}

/* ---- connections --------------------------------------------------------- */

struct gc_conn *
gc_connect(const char *target)
{
    struct gc_conn *c = calloc(1, sizeof(*c));
    grpc_arg args[4];
    int id;

    if (c == NULL)
        abort();
    pthread_mutex_lock(&reg_mu);
    id = ++conn_counter;
    pthread_mutex_unlock(&reg_mu);

    memset(args, 0, sizeof(args));
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = GC_MAX_RECEIVE;
    /* a subchannel pool of its own and an argument no other channel has:
     * gRPC shares a subchannel (a TCP connection) only between channels
     * whose arguments are equal */
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = (char *)GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL;
    args[1].value.integer = 1;
    args[2].type = GRPC_ARG_INTEGER;
    args[2].key = (char *)"buffdb.test.connection_id";
    args[2].value.integer = id;
    /* a failed call must be seen as failed, not silently replayed */
    args[3].type = GRPC_ARG_INTEGER;
    args[3].key = (char *)GRPC_ARG_ENABLE_RETRIES;
    args[3].value.integer = 0;
    grpc_channel_args cargs = {4, args};

    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    c->ch = grpc_channel_create(target, creds, &cargs);
    grpc_channel_credentials_release(creds);
    if (c->ch == NULL) {
        free(c);
        return NULL;
    }
    pthread_mutex_lock(&reg_mu);
    c->next = conns;
    if (conns)
        conns->prev = c;
    conns = c;
    pthread_mutex_unlock(&reg_mu);
    return c;
}

void
gc_close(struct gc_conn *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&reg_mu);
    if (c->prev)
        c->prev->next = c->next;
    else
        conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    pthread_mutex_unlock(&reg_mu);
    grpc_channel_destroy(c->ch);
    free(c);
}

/* ---- one call ------------------------------------------------------------ */

static void *
tag_of(int t)
{
    return (void *)(intptr_t)(t + 1);
}

/* start - one batch of n ops for tag t; 0 or -1 */
static int
start(struct gc_stream *s, grpc_op *ops, size_t n, int t)
{
    if (grpc_call_start_batch(s->call, ops, n, tag_of(t), NULL) !=
        GRPC_CALL_OK)
        return -1;
    s->pending[t] = 1;
    return 0;
}

/*
 * wait_one - wait for the next completion of s (at most 100 ms) and
 * record it.  Returns the tag completed, T_N on a quiet interval, -1 once
 * waiting is hopeless (cancelled long ago and still nothing).
 */
static int
wait_one(struct gc_stream *s)
{
    gpr_timespec until = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                      gpr_time_from_millis(100, GPR_TIMESPAN));
    grpc_event ev = grpc_completion_queue_next(s->cq, until, NULL);
    long now = now_ms();

    if (ev.type != GRPC_OP_COMPLETE) {
        if (!s->cancelled && now >= s->cancel_at) {
            grpc_call_cancel(s->call, NULL);
            s->cancelled = 1;
        }
        if (s->cancelled && now >= s->cancel_at + GIVE_UP_MS) {
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
    if (t == T_SEND) {
        grpc_byte_buffer_destroy(s->send_buf);
        s->send_buf = NULL;
        if (ev.success)
            s->sent++;
    } else if (t == T_STATUS) {
        s->t_status = now;
    }
    return t;
}

/* wait_for - until operation t is complete; 0, or -1 if given up */
static int
wait_for(struct gc_stream *s, int t)
{
    while (s->pending[t])
        if (wait_one(s) < 0)
            return -1;
    return 0;
}

static void
stream_free(struct gc_stream *s)
{
    int any = 0;

    for (int t = 0; t < T_N; t++)
        any |= s->pending[t];
    if (any && !s->lost) {
        grpc_call_cancel(s->call, NULL);
        s->cancelled = 1;
        for (int t = 0; t < T_N && !s->lost; t++)
            wait_for(s, t);
    }
    pthread_mutex_lock(&reg_mu);
    if (s->prev)
        s->prev->next = s->next;
    else
        streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    pthread_mutex_unlock(&reg_mu);
    if (s->lost) {
        /* gRPC still owns buffers of this call: leaking beats a crash */
        fprintf(stderr, "grpc_client: a call did not complete after being "
                "cancelled; abandoned\n");
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
    for (int i = 0; i < 1000; i++) {
        grpc_event ev = grpc_completion_queue_next(
            s->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
    }
    grpc_completion_queue_destroy(s->cq);
    free(s);
}

struct gc_stream *
gc_stream_start(struct gc_conn *c, const char *method, int deadline_ms)
{
    struct gc_stream *s = calloc(1, sizeof(*s));
    grpc_op ops[1];

    if (s == NULL)
        abort();
    s->conn = c;
    s->t0 = now_ms();
    s->cancel_at = s->t0 + deadline_ms + CANCEL_MARGIN_MS;
    s->details = grpc_empty_slice();
    s->code = GRPC_STATUS_UNKNOWN;
    grpc_metadata_array_init(&s->md);
    grpc_metadata_array_init(&s->trailing);
    s->cq = grpc_completion_queue_create_for_next(NULL);

    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                     gpr_time_from_millis(deadline_ms, GPR_TIMESPAN));
    grpc_slice m = grpc_slice_from_copied_string(method);
    s->call = grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS,
                                       s->cq, m, NULL, deadline, NULL);
    grpc_slice_unref(m);
    if (s->call == NULL) {
        grpc_metadata_array_destroy(&s->md);
        grpc_metadata_array_destroy(&s->trailing);
        grpc_completion_queue_shutdown(s->cq);
        grpc_completion_queue_destroy(s->cq);
        free(s);
        return NULL;
    }
    pthread_mutex_lock(&reg_mu);
    s->next = streams;
    if (streams)
        streams->prev = s;
    streams = s;
    pthread_mutex_unlock(&reg_mu);

    /* three batches, each completing on its own: metadata out, metadata
     * in (when the server sends it, with its first message or status),
     * and the status */
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (start(s, ops, 1, T_MD_SEND) != 0)
        goto fail;
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[0].data.recv_initial_metadata.recv_initial_metadata = &s->md;
    if (start(s, ops, 1, T_MD_RECV) != 0)
        goto fail;
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[0].data.recv_status_on_client.trailing_metadata = &s->trailing;
    ops[0].data.recv_status_on_client.status = &s->code;
    ops[0].data.recv_status_on_client.status_details = &s->details;
    if (start(s, ops, 1, T_STATUS) != 0)
        goto fail;
    return s;

fail:
    stream_free(s);
    return NULL;
}

/* start_send_flags - post one SEND_MESSAGE of msg with these write flags */
static int
start_send_flags(struct gc_stream *s, const struct gc_buf *msg,
                 uint32_t flags)
{
    grpc_op op;
    grpc_slice sl = grpc_slice_from_copied_buffer((const char *)msg->data,
                                                  msg->len);

    s->send_buf = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_SEND_MESSAGE;
    op.flags = flags;
    op.data.send_message.send_message = s->send_buf;
    if (start(s, &op, 1, T_SEND) != 0) {
        grpc_byte_buffer_destroy(s->send_buf);
        s->send_buf = NULL;
        return -1;
    }
    return 0;
}

static int
start_send(struct gc_stream *s, const struct gc_buf *msg)
{
    return start_send_flags(s, msg, 0);
}

static int
start_recv(struct gc_stream *s)
{
    grpc_op op;

    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &s->recv_buf;
    return start(s, &op, 1, T_RECV);
}

static int
start_close(struct gc_stream *s)
{
    grpc_op op;

    s->half_closed = 1;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    return start(s, &op, 1, T_CLOSE);
}

/* take_recv - the received message as a gc_buf; 0 if there was none */
static int
take_recv(struct gc_stream *s, struct gc_buf *out)
{
    grpc_byte_buffer_reader reader;

    if (s->recv_buf == NULL)
        return 0;
    out->data = NULL;
    out->len = 0;
    if (grpc_byte_buffer_reader_init(&reader, s->recv_buf)) {
        grpc_slice sl = grpc_byte_buffer_reader_readall(&reader);
        grpc_byte_buffer_reader_destroy(&reader);
        out->len = GRPC_SLICE_LENGTH(sl);
        out->data = xmalloc(out->len);
        if (out->len)
            memcpy(out->data, GRPC_SLICE_START_PTR(sl), out->len);
        grpc_slice_unref(sl);
    } else {
        out->data = xmalloc(0);
    }
    grpc_byte_buffer_destroy(s->recv_buf);
    s->recv_buf = NULL;
    return 1;
}

int
gc_stream_send(struct gc_stream *s, const struct gc_buf *msg)
{
    if (!s->pending[T_STATUS] || s->half_closed)
        return -1; /* the call is over */
    if (start_send(s, msg) != 0 || wait_for(s, T_SEND) != 0)
        return -1;
    return s->ok[T_SEND] ? 0 : -1;
}

int
gc_stream_send_burst(struct gc_stream *s, const struct gc_buf *msgs,
                     size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!s->pending[T_STATUS] || s->half_closed)
            return -1;
        uint32_t flags = i + 1 < n ? GRPC_WRITE_BUFFER_HINT : 0;
        if (start_send_flags(s, &msgs[i], flags) != 0 ||
            wait_for(s, T_SEND) != 0 || !s->ok[T_SEND])
            return -1;
    }
    return 0;
}

int
gc_stream_recv(struct gc_stream *s, struct gc_buf *out)
{
    if (start_recv(s) != 0 || wait_for(s, T_RECV) != 0)
        return -1;
    if (take_recv(s, out))
        return 1;
    return s->ok[T_RECV] ? 0 : -1;
}

int
gc_stream_half_close(struct gc_stream *s)
{
    if (s->half_closed)
        return 0;
    if (start_close(s) != 0 || wait_for(s, T_CLOSE) != 0)
        return -1;
    return s->ok[T_CLOSE] ? 0 : -1;
}

/* fill_result - status, details and the worker's pid into res */
static void
fill_result(struct gc_stream *s, struct gc_result *res)
{
    if (s->lost || s->pending[T_STATUS]) {
        res->code = GRPC_STATUS_UNKNOWN;
        res->details = strdup("grpc_client: no status (call abandoned)");
    } else {
        size_t n = GRPC_SLICE_LENGTH(s->details);
        res->code = s->code;
        res->details = xmalloc(n + 1);
        memcpy(res->details, GRPC_SLICE_START_PTR(s->details), n);
        res->details[n] = '\0';
    }
    res->worker_pid = 0;
    for (size_t i = 0; !s->pending[T_MD_RECV] && i < s->md.count; i++) {
        grpc_metadata *e = &s->md.metadata[i];
        if (grpc_slice_str_cmp(e->key, "buffdb-worker-pid") == 0) {
            char v[32];
            size_t n = GRPC_SLICE_LENGTH(e->value);
            if (n >= sizeof(v))
                n = sizeof(v) - 1;
            memcpy(v, GRPC_SLICE_START_PTR(e->value), n);
            v[n] = '\0';
            res->worker_pid = (pid_t)strtol(v, NULL, 10);
        }
    }
    res->sent = s->sent;
    res->elapsed_ms = (s->t_status ? s->t_status : now_ms()) - s->t0;
}

void
gc_stream_finish(struct gc_stream *s, struct gc_result *res)
{
    size_t cap = res->n; /* res may already hold messages: keep them */
    struct gc_buf b;

    if (res->msgs == NULL)
        cap = 0;
    if (!s->lost && s->pending[T_STATUS] && !s->half_closed &&
        !s->pending[T_SEND])
        gc_stream_half_close(s);
    while (!s->lost) {
        int r = gc_stream_recv(s, &b);
        if (r != 1)
            break;
        result_add(res, b, &cap);
    }
    if (!s->lost)
        wait_for(s, T_MD_RECV);
    if (!s->lost)
        wait_for(s, T_STATUS);
    free(res->details);
    fill_result(s, res);
    stream_free(s);
}

void
gc_stream_cancel(struct gc_stream *s)
{
    if (s != NULL)
        stream_free(s);
}

static void
start_failed(struct gc_result *res)
{
    memset(res, 0, sizeof(*res));
    res->code = GRPC_STATUS_INTERNAL;
    res->details = strdup("grpc_client: could not start the call");
}

int
gc_call(struct gc_conn *c, const char *method, const struct gc_buf *reqs,
        size_t n, int deadline_ms, struct gc_result *res)
{
    struct gc_stream *s = gc_stream_start(c, method, deadline_ms);

    memset(res, 0, sizeof(*res));
    if (s == NULL) {
        start_failed(res);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if (gc_stream_send(s, &reqs[i]) != 0)
            break;
    gc_stream_finish(s, res);
    return 0;
}

int
gc_call_pipelined(struct gc_conn *c, const char *method,
                  const struct gc_buf *reqs, size_t n, int deadline_ms,
                  struct gc_result *res)
{
    struct gc_stream *s = gc_stream_start(c, method, deadline_ms);
    size_t next = 0, cap = 0;
    int reading = 1, sending = 1;
    struct gc_buf b;

    memset(res, 0, sizeof(*res));
    if (s == NULL) {
        start_failed(res);
        return -1;
    }
    if (start_recv(s) != 0)
        reading = 0;
    if (n > 0) {
        if (start_send(s, &reqs[next++]) != 0)
            sending = 0;
    } else if (start_close(s) != 0) {
        sending = 0;
    }
    /* one send (or the half-close) and one receive in flight at once */
    while (reading || s->pending[T_SEND] || s->pending[T_CLOSE]) {
        int t = wait_one(s);
        if (t < 0)
            break;
        if (t == T_SEND) {
            if (!s->ok[T_SEND]) {
                sending = 0; /* the call is over: the status says why */
            } else if (sending && next < n) {
                if (start_send(s, &reqs[next++]) != 0)
                    sending = 0;
            } else if (sending) {
                if (start_close(s) != 0)
                    sending = 0;
            }
        } else if (t == T_RECV) {
            if (take_recv(s, &b)) {
                result_add(res, b, &cap);
                if (start_recv(s) != 0)
                    reading = 0;
            } else {
                reading = 0;
            }
        }
    }
    (void)sending;
    if (!s->lost)
        wait_for(s, T_MD_RECV);
    if (!s->lost)
        wait_for(s, T_STATUS);
    fill_result(s, res);
    stream_free(s);
    return 0;
}

void
gc_cleanup_all(void)
{
    for (;;) {
        pthread_mutex_lock(&reg_mu);
        struct gc_stream *s = streams;
        pthread_mutex_unlock(&reg_mu);
        if (s == NULL)
            break;
        stream_free(s);
    }
    for (;;) {
        pthread_mutex_lock(&reg_mu);
        struct gc_conn *c = conns;
        pthread_mutex_unlock(&reg_mu);
        if (c == NULL)
            break;
        gc_close(c);
    }
}
