/*
 * call.c - the per-call state machine of a worker (see call.h)
 *
 * Every call starts with a RECV_CLOSE_ON_SERVER batch, which completes
 * when the call is over for whatever reason, and one RECV_MESSAGE.  Each
 * request read is handed to the method's handler, which queues responses;
 * at most one read and one write are in flight per call (gRPC's rule),
 * and reading (and a stream's pump) pauses while WORKER_QUEUE_HIGH
 * responses or WORKER_QUEUE_HIGH_BYTES bytes wait, so a client that
 * pipelines faster than it reads, or a Pull of a large model, cannot grow
 * the worker's memory.
 * The status goes out once the queue is empty and the client half-closed
 * or a handler ended the call.  A call's memory is freed when its CLOSE
 * has completed and no batch of it is outstanding.
 */
#include "config.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "worker/worker.h"

enum { OP_NEW, OP_READ, OP_WRITE, OP_STATUS, OP_CLOSE };

static struct call *
call_new(struct worker *w, int mi)
{
    struct call *c = xcalloc(1, sizeof(*c));

    c->w = w;
    c->method_index = mi;
    c->m = mi >= 0 ? worker_methods[mi] : NULL;
    grpc_metadata_array_init(&c->md);
    grpc_call_details_init(&c->details);
    c->final_details = grpc_empty_slice();
    c->t_new = (struct call_tag){c, OP_NEW};
    c->t_read = (struct call_tag){c, OP_READ};
    c->t_write = (struct call_tag){c, OP_WRITE};
    c->t_status = (struct call_tag){c, OP_STATUS};
    c->t_close = (struct call_tag){c, OP_CLOSE};
    c->next = w->calls;
    if (w->calls)
        w->calls->prev = c;
    w->calls = c;
    return c;
}

static void
queue_drop(struct call *c)
{
    while (c->q_len > 0) {
        grpc_byte_buffer_destroy(c->q[c->q_head]);
        c->q_head = (c->q_head + 1) % c->q_cap;
        c->q_len--;
    }
    c->q_bytes = 0;
}

static void
flush_unlink(struct call *c)
{
    if (!c->flush_wait)
        return;
    if (c->fprev)
        c->fprev->fnext = c->fnext;
    else
        c->w->flush = c->fnext;
    if (c->fnext)
        c->fnext->fprev = c->fprev;
    c->fnext = c->fprev = NULL;
    c->flush_wait = 0;
}

static void
call_free(struct call *c)
{
    struct worker *w = c->w;

    flush_unlink(c);
    if (c->m && c->m->cleanup)
        c->m->cleanup(c);
    queue_drop(c);
    free(c->q);
    if (c->writing)
        grpc_byte_buffer_destroy(c->writing);
    if (c->recv_buf)
        grpc_byte_buffer_destroy(c->recv_buf);
    if (c->call)
        grpc_call_unref(c->call);
    grpc_metadata_array_destroy(&c->md);
    grpc_call_details_destroy(&c->details);
    grpc_slice_unref(c->final_details);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
}

void
call_free_all(struct worker *w)
{
    while (w->calls)
        call_free(w->calls);
}

void
call_post_request(struct worker *w, int mi)
{
    struct call *c = call_new(w, mi);
    grpc_call_error e;

    if (mi >= 0)
        e = grpc_server_request_registered_call(
            w->server, w->method_handles[mi], &c->call, &c->deadline, &c->md,
            NULL, w->cq, w->cq, &c->t_new);
    else
        e = grpc_server_request_call(w->server, &c->call, &c->details, &c->md,
                                     w->cq, w->cq, &c->t_new);
    if (e != GRPC_CALL_OK) {
        log_error("could not request a call for %s: error %d",
                  mi >= 0 ? worker_methods[mi]->path : "any method", (int)e);
        call_free(c);
    }
}

/* ---- replies ----------------------------------------------------------- */

static void
enqueue(struct call *c, grpc_byte_buffer *bb)
{
    if (c->q_len == c->q_cap) {
        size_t ncap = c->q_cap ? c->q_cap * 2 : 8;
        grpc_byte_buffer **nq = xmalloc(ncap * sizeof(*nq));
        for (size_t i = 0; i < c->q_len; i++)
            nq[i] = c->q[(c->q_head + i) % c->q_cap];
        free(c->q);
        c->q = nq;
        c->q_head = 0;
        c->q_cap = ncap;
    }
    c->q[(c->q_head + c->q_len) % c->q_cap] = bb;
    c->q_len++;
    c->q_bytes += grpc_byte_buffer_length(bb);
}

static int
reply_fits(struct call *c, size_t size)
{
    uint64_t max = c->w->cfg->max_message_size;

    if (size > max) {
        call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
                  "response of %zu bytes is larger than max_message_size "
                  "(%llu bytes)", size, (unsigned long long)max);
        return 0;
    }
    return 1;
}

void
call_reply(struct call *c, const ProtobufCMessage *msg)
{
    if (c->final_set || c->close_done)
        return;
    size_t size = protobuf_c_message_get_packed_size(msg);
    if (!reply_fits(c, size))
        return;
    grpc_slice s = grpc_slice_malloc(size);
    protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(s));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    enqueue(c, bb);
}

void
call_reply_raw(struct call *c, const uint8_t *data, size_t len)
{
    if (c->final_set || c->close_done || !reply_fits(c, len))
        return;
    grpc_slice s = grpc_slice_from_copied_buffer((const char *)data, len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    enqueue(c, bb);
}

void
call_fail(struct call *c, grpc_status_code code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    if (c->final_set)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    grpc_slice_unref(c->final_details);
    c->final_details = grpc_slice_from_copied_string(msg);
    c->final_code = code;
    c->final_set = 1;
    c->generating = 0;
    log_debug("%s: %s", c->m ? c->m->path : "call", msg);
}

void
call_finish(struct call *c)
{
    if (c->final_set)
        return;
    c->final_code = GRPC_STATUS_OK;
    c->final_set = 1;
    c->generating = 0;
}

int
call_expired(void *arg)
{
    struct call *c = arg;
    gpr_timespec now = gpr_now(c->deadline.clock_type);

    return c->cancelled || gpr_time_cmp(now, c->deadline) > 0;
}

grpc_status_code
call_store_status(int err)
{
    switch (err) {
    case BFDB_OK: return GRPC_STATUS_OK;
    case BFDB_ENOTFOUND: return GRPC_STATUS_NOT_FOUND;
    case BFDB_EINVAL:
    case BFDB_ESQL: return GRPC_STATUS_INVALID_ARGUMENT;
    case BFDB_EBUSY:
    case BFDB_ECANTOPEN: return GRPC_STATUS_UNAVAILABLE;
    case BFDB_EFULL:
    case BFDB_ENOMEM:
    case BFDB_ETOOBIG: return GRPC_STATUS_RESOURCE_EXHAUSTED;
    case BFDB_ECORRUPT: return GRPC_STATUS_DATA_LOSS;
    case BFDB_EPERM: return GRPC_STATUS_PERMISSION_DENIED;
    case BFDB_ECONSTRAINT: return GRPC_STATUS_FAILED_PRECONDITION;
    case BFDB_EINTERRUPTED: return GRPC_STATUS_DEADLINE_EXCEEDED;
    case BFDB_EEXIST: return GRPC_STATUS_ALREADY_EXISTS;
    case BFDB_EPRECOND: return GRPC_STATUS_FAILED_PRECONDITION;
    default: return GRPC_STATUS_INTERNAL;
    }
}

/* ---- batches ----------------------------------------------------------- */

static int
start_batch(struct call *c, grpc_op *ops, size_t n, struct call_tag *tag)
{
    grpc_call_error e = grpc_call_start_batch(c->call, ops, n, tag, NULL);

    if (e != GRPC_CALL_OK) {
        log_error("could not start a batch on %s: error %d",
                  c->m ? c->m->path : "call", (int)e);
        return -1;
    }
    c->pending++;
    return 0;
}

static void
add_initial_md(struct call *c, grpc_op *op)
{
    memset(op, 0, sizeof(*op));
    op->op = GRPC_OP_SEND_INITIAL_METADATA;
    /* the worker's pid lets tests and operators see who served a call */
    c->init_md[0].key = grpc_slice_from_static_string("buffdb-worker-pid");
    c->init_md[0].value = grpc_slice_from_static_string(c->w->pid_str);
    op->data.send_initial_metadata.count = 1;
    op->data.send_initial_metadata.metadata = c->init_md;
    c->md_sent = 1;
}

static void
start_read(struct call *c)
{
    grpc_op op;

    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->recv_buf;
    if (start_batch(c, &op, 1, &c->t_read) == 0)
        c->read_inflight = 1;
    else
        c->half_closed = 1;
}

static void
start_write(struct call *c)
{
    grpc_op ops[2];
    size_t n = 0;

    c->writing = c->q[c->q_head];
    c->q_head = (c->q_head + 1) % c->q_cap;
    c->q_len--;
    c->q_bytes -= grpc_byte_buffer_length(c->writing);
    if (!c->md_sent)
        add_initial_md(c, &ops[n++]);
    memset(&ops[n], 0, sizeof(ops[n]));
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    /* more replies queued behind this one: let chttp2 buffer it (see
     * "Coalescing").  Never on the batch carrying the initial metadata:
     * a server stream's metadata sent with a hinted message waits for a
     * write that nothing starts, and the batch never completes */
    ops[n].flags = c->q_len > 0 && n == 0 ? GRPC_WRITE_BUFFER_HINT : 0;
    ops[n].data.send_message.send_message = c->writing;
    n++;
    if (start_batch(c, ops, n, &c->t_write) == 0) {
        c->write_inflight = 1;
    } else {
        grpc_byte_buffer_destroy(c->writing);
        c->writing = NULL;
        queue_drop(c);
    }
}

static void
maybe_finish(struct call *c)
{
    grpc_op ops[2];
    size_t n = 0;

    if (c->status_sent || c->close_done || c->write_inflight || c->q_len > 0 ||
        c->generating || c->read_inflight || !(c->final_set || c->half_closed))
        return;
    if (!c->final_set)
        call_finish(c);
    if (c->final_code != GRPC_STATUS_OK && c->method_index >= 0 &&
        c->method_index < BFDB_SHM_METHODS)
        BFDB_COUNT(c->w->shm->self, errors[c->method_index]);
    if (!c->md_sent)
        add_initial_md(c, &ops[n++]);
    memset(&ops[n], 0, sizeof(ops[n]));
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = c->final_code;
    ops[n].data.send_status_from_server.status_details =
        c->final_code == GRPC_STATUS_OK ? NULL : &c->final_details;
    n++;
    if (start_batch(c, ops, n, &c->t_status) == 0)
        c->status_sent = 1;
}

/* with_interrupt - run a handler step with the stores polling the call's
 * deadline, so a runaway statement stops when the client gives up */
static void
with_interrupt(struct call *c, int on)
{
    struct worker *w = c->w;

    bfdb_store_set_interrupt(w->kv, on ? call_expired : NULL, c);
    bfdb_store_set_interrupt(w->blob, on ? call_expired : NULL, c);
}

static void
pump_more(struct call *c)
{
    while (c->generating && !c->final_set && !c->close_done &&
           c->q_len < WORKER_QUEUE_HIGH &&
           c->q_bytes < WORKER_QUEUE_HIGH_BYTES) {
        with_interrupt(c, 1);
        int more = c->m->pump(c);
        /* a pump that failed the call (call_fail cleared generating) must
         * not switch it back on, or the status is never sent */
        c->generating = more && !c->final_set ? 1 : 0;
        with_interrupt(c, 0);
    }
}

/*
 * Coalescing.  Every message written on its own costs a sendmsg(2) and
 * the loopback delivery to the client, the largest share of a cached
 * Get.  So a reply produced while the call goes on reading is held back
 * (flush_later) as long as the worker has other completions to handle:
 * the worker loop drains its queue without waiting and calls call_flush
 * once nothing is ready.  Each write but the last of a call's queue
 * carries GRPC_WRITE_BUFFER_HINT, which makes chttp2 buffer it and
 * complete it at once while less than its write buffer (64 KiB) is
 * pending; the last, unhinted, writes them all with one sendmsg(2).
 * Nothing waits for long: held replies go out when the worker would
 * otherwise block, after WORKER_FLUSH_EVENTS completions in a row or
 * WORKER_FLUSH_NS after the first was held (checked between
 * completions), before housekeeping, or as soon as a call has
 * WORKER_COALESCE replies or
 * WORKER_COALESCE_BYTES bytes queued.  A call that stops reading (the
 * client half-closed, an error, a pump) writes at once.
 */
static void
flush_later(struct call *c)
{
    struct worker *w = c->w;

    if (c->flush_wait)
        return;
    if (w->flush == NULL)
        w->flush_since = bfdb_now_ns();
    c->flush_wait = 1;
    c->fprev = NULL;
    c->fnext = w->flush;
    if (w->flush)
        w->flush->fprev = c;
    w->flush = c;
}

void
call_flush(struct worker *w)
{
    while (w->flush) {
        struct call *c = w->flush;
        flush_unlink(c);
        if (!c->write_inflight && c->q_len > 0 && !c->close_done) {
            start_write(c);
            maybe_finish(c); /* the write could not start: end the call */
        }
    }
}

static void
progress(struct call *c)
{
    if (c->close_done && !c->status_sent) {
        /* cancelled by the client, its deadline or server shutdown */
        c->generating = 0;
        queue_drop(c);
        return;
    }
    pump_more(c);
    int reading = !c->half_closed && !c->final_set && !c->generating &&
                  c->q_len < WORKER_QUEUE_HIGH &&
                  c->q_bytes < WORKER_QUEUE_HIGH_BYTES && c->m != NULL;
    if (!c->write_inflight && c->q_len > 0) {
        if (reading && !c->read_inflight && c->q_len < WORKER_COALESCE &&
            c->q_bytes < WORKER_COALESCE_BYTES)
            flush_later(c);
        else
            start_write(c);
    }
    if (reading && !c->read_inflight)
        start_read(c);
    maybe_finish(c);
}

/* ---- completions ------------------------------------------------------- */

/* on_new - a call arrived; returns 0 if c was freed */
static int
on_new(struct call *c, int ok)
{
    struct worker *w = c->w;
    grpc_op op;

    if (!ok) { /* the server is shutting down */
        call_free(c);
        return 0;
    }
    c->started = 1;
    if (c->method_index >= 0 && c->method_index < BFDB_SHM_METHODS)
        BFDB_COUNT(w->shm->self, calls[c->method_index]);
    if (!__atomic_load_n(&w->shutting_down, __ATOMIC_SEQ_CST))
        call_post_request(w, c->method_index);

    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->cancelled;
    if (start_batch(c, &op, 1, &c->t_close) != 0) {
        call_free(c);
        return 0;
    }
    if (c->m == NULL) {
        char *m = grpc_slice_to_c_string(c->details.method);
        call_fail(c, GRPC_STATUS_UNIMPLEMENTED, "method %s is not implemented",
                  m);
        gpr_free(m);
        c->half_closed = 1;
    }
    return 1;
}

static void
on_read(struct call *c, int ok)
{
    if (!ok || c->recv_buf == NULL) {
        c->half_closed = 1;
        if (!c->final_set && !c->close_done && c->m->on_end) {
            with_interrupt(c, 1);
            c->m->on_end(c);
            with_interrupt(c, 0);
        }
        return;
    }
    grpc_byte_buffer_reader reader;
    grpc_slice s = grpc_empty_slice();
    if (grpc_byte_buffer_reader_init(&reader, c->recv_buf)) {
        s = grpc_byte_buffer_reader_readall(&reader);
        grpc_byte_buffer_reader_destroy(&reader);
    }
    grpc_byte_buffer_destroy(c->recv_buf);
    c->recv_buf = NULL;
    if (!c->final_set && !c->close_done) {
        with_interrupt(c, 1);
        c->m->on_request(c, GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s));
        with_interrupt(c, 0);
    }
    grpc_slice_unref(s);
}

void
call_dispatch(struct call_tag *t, int ok)
{
    struct call *c = t->c;

    switch (t->op) {
    case OP_NEW:
        if (!on_new(c, ok))
            return;
        break;
    case OP_READ:
        c->pending--;
        c->read_inflight = 0;
        on_read(c, ok);
        break;
    case OP_WRITE:
        c->pending--;
        c->write_inflight = 0;
        grpc_byte_buffer_destroy(c->writing);
        c->writing = NULL;
        if (!ok)
            queue_drop(c);
        break;
    case OP_STATUS:
        c->pending--;
        break;
    case OP_CLOSE:
        c->pending--;
        c->close_done = 1;
        break;
    }
    if (c->close_done && c->pending == 0) {
        call_free(c);
        return;
    }
    progress(c);
    if (c->close_done && c->pending == 0)
        call_free(c);
}
