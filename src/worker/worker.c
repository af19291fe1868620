/*
 * worker.c - a worker process: start-up checklist, event loop, shutdown
 *
 * Start-up, in this order (see docs/ARCHITECTURE.md):
 *   1. name the process in logs; drop the master's fds; die with the master
 *   2. block SIGTERM/SIGINT/SIGHUP before any thread exists (gRPC's
 *      threads inherit the mask); SIGPIPE ignored
 *   3. claim its record in the shared region (inherited mapping); open
 *      the SQLite stores and the LMDB cache (after fork: neither kind of
 *      handle may cross it)
 *   4. grpc_init, register the methods, bind the shared port
 *      (SO_REUSEPORT, gRPC's default on Linux), start, post call requests
 *   5. start the signal thread, tell the master "ready"
 *   6. serve until the server has shut down, then free everything and exit
 * A failure in 3 or 4 exits BFDB_EXIT_MISCONFIGURED: the master does not
 * restart a worker that cannot work.
 *
 * Stopping: SIGTERM/SIGINT reach the signal thread, which shuts the
 * server down (no new calls; calls in flight go on), waits up to the
 * grace period, then cancels whatever is left.
 */
#include "config.h"

#include <errno.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "worker/handlers.h"
#include "worker/worker.h"

const struct bfdb_method *const worker_methods[] = {
    &bfdb_method_kv_get,        &bfdb_method_kv_set,
    &bfdb_method_kv_delete,     &bfdb_method_kv_eq,
    &bfdb_method_kv_not_eq,     &bfdb_method_blob_get,
    &bfdb_method_blob_store,    &bfdb_method_blob_update,
    &bfdb_method_blob_delete,   &bfdb_method_blob_eq_data,
    &bfdb_method_blob_not_eq_data, &bfdb_method_query_query,
    &bfdb_method_query_execute, &bfdb_method_kv_begin,
    &bfdb_method_kv_commit,     &bfdb_method_kv_rollback,
    &bfdb_method_index_create,  &bfdb_method_index_drop,
    &bfdb_method_index_list,    &bfdb_method_index_lookup,
    &bfdb_method_index_range,
    &bfdb_method_model_push,    &bfdb_method_model_push_status,
    &bfdb_method_model_abort_push, &bfdb_method_model_pull,
    &bfdb_method_model_list_models, &bfdb_method_model_list_versions,
    &bfdb_method_model_get_info, &bfdb_method_model_delete,
    &bfdb_method_model_set_alias, &bfdb_method_model_verify,
};
const int worker_nmethods =
    (int)(sizeof(worker_methods) / sizeof(worker_methods[0]));

static int shutdown_tag;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;       /* the event loop has finished */
    int stopping;   /* shutdown_and_notify was called */
    struct worker *w;
} sig = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, NULL};

static void
stop_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
}

/* signal_thread - the only place the worker reacts to signals */
static void *
signal_thread(void *arg)
{
    struct worker *w = arg;
    sigset_t set;
    int signo;

    stop_signals(&set);
    for (;;) {
        if (sigwait(&set, &signo) != 0)
            continue;
        if (signo == SIGHUP)
            continue; /* the master reloads by replacing workers */
        pthread_mutex_lock(&sig.mu);
        if (sig.done) {
            pthread_mutex_unlock(&sig.mu);
            return NULL;
        }
        if (sig.stopping) {
            pthread_mutex_unlock(&sig.mu);
            continue;
        }
        sig.stopping = 1;
        __atomic_store_n(&w->shutting_down, 1, __ATOMIC_SEQ_CST);
        log_info("stopping: finishing calls in flight (grace %d ms)",
                 w->cfg->grace_ms);
        grpc_server_shutdown_and_notify(w->server, w->cq, &shutdown_tag);

        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += w->cfg->grace_ms / 1000;
        until.tv_nsec += (long)(w->cfg->grace_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (!sig.done &&
               pthread_cond_timedwait(&sig.cv, &sig.mu, &until) != ETIMEDOUT)
            ;
        if (!sig.done) {
            log_warn("grace period over: cancelling the calls still open");
            grpc_server_cancel_all_calls(w->server);
        }
        pthread_mutex_unlock(&sig.mu);
        return NULL;
    }
}

static int
txn_committed(void *arg, uint64_t num)
{
    struct worker *w = arg;
    return bfdb_txntab_committed(w->shm->txntab, num);
}

static void
open_stores(struct worker *w)
{
    struct bfdb_store_opts o = {0};
    char err[1024];

    o.sync = w->cfg->sync;
    o.busy_timeout_ms = w->cfg->busy_timeout_ms;
    o.no_create = 1;
    o.skip_schema = 1;
    if (bfdb_store_open(&w->kv, BFDB_STORE_KV, w->cfg->kv_store, &o, err,
                        sizeof(err)) != BFDB_OK)
        fatalx(BFDB_EXIT_MISCONFIGURED, "%s", err);
    if (bfdb_store_open(&w->blob, BFDB_STORE_BLOB, w->cfg->blob_store, &o,
                        err, sizeof(err)) != BFDB_OK)
        fatalx(BFDB_EXIT_MISCONFIGURED, "%s", err);
    bfdb_store_set_txn_oracle(w->blob, txn_committed, w);
}

static void
start_server(struct worker *w)
{
    grpc_arg args[4];
    int max = (int)w->cfg->max_message_size;

    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = max;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
    args[1].value.integer = max;
    /* a fixed HTTP/2 receive window instead of one grown by BDP probes:
     * a client streaming a model faster than the worker stores it is held
     * to this much buffered in the worker, not tens of megabytes */
    args[2].type = GRPC_ARG_INTEGER;
    args[2].key = (char *)GRPC_ARG_HTTP2_BDP_PROBE;
    args[2].value.integer = 0;
    args[3].type = GRPC_ARG_INTEGER;
    args[3].key = (char *)GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES;
    args[3].value.integer = WORKER_STREAM_WINDOW;
    grpc_channel_args cargs = {4, args};

    w->server = grpc_server_create(&cargs, NULL);
    w->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(w->server, w->cq, NULL);
    for (int i = 0; i < worker_nmethods; i++)
        w->method_handles[i] = grpc_server_register_method(
            w->server, worker_methods[i]->path, NULL, GRPC_SRM_PAYLOAD_NONE,
            0);
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    int port = grpc_server_add_http2_port(w->server, w->cfg->listen, creds);
    grpc_server_credentials_release(creds);
    if (port == 0)
        fatalx(BFDB_EXIT_MISCONFIGURED, "could not listen on %s",
               w->cfg->listen);
    grpc_server_start(w->server);
    for (int i = 0; i < worker_nmethods; i++)
        for (int k = 0; k < WORKER_REQUESTS_PER_METHOD; k++)
            call_post_request(w, i);
    for (int k = 0; k < WORKER_CATCHALL_REQUESTS; k++)
        call_post_request(w, -1);
}

void
worker_main(const struct bfdb_config *cfg, int slot, int generation,
            int status_fd, const int *close_fds, int nclose, bfdb_shm *shm,
            int record)
{
    static struct worker w;
    char role[32];
    sigset_t set;
    pthread_t thr;

    /* 1 */
    snprintf(role, sizeof(role), "worker %d", slot);
    bfdb_log_init(role);
    bfdb_log_level = cfg->log_level;
    for (int i = 0; i < nclose; i++)
        if (close_fds[i] >= 0)
            close(close_fds[i]);
    pid_t master = getppid();
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0)
        log_warn("prctl(PR_SET_PDEATHSIG) failed: %s", strerror(errno));
    if (getppid() != master)
        exit(1); /* the master died before prctl took effect */

    w.slot = slot;
    w.generation = generation;
    w.cfg = cfg;
    w.shm = shm;
    w.pid = getpid();
    if (bfdb_shm_claim(shm, record, slot) == NULL)
        fatalx(1, "could not claim shared record %d", record);
    w.nmethods = worker_nmethods;
    snprintf(w.pid_str, sizeof(w.pid_str), "%ld", (long)getpid());

    /* 2 */
    stop_signals(&set);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* 3, 4 */
    open_stores(&w);
    char err[1024];
    if (bfdb_cache_open(&w.cache, shm, err, sizeof(err)) != 0)
        fatalx(BFDB_EXIT_MISCONFIGURED, "%s", err);
    grpc_init();
    start_server(&w);

    /* 5 */
    sig.w = &w;
    if (pthread_create(&thr, NULL, signal_thread, &w) != 0)
        fatalx(1, "could not start the signal thread");
    struct worker_msg msg = {slot, (int32_t)getpid(), generation, WMSG_READY};
    if (bfdb_write_full(status_fd, &msg, sizeof(msg)) != 0)
        log_warn("could not report ready to the master: %s", strerror(errno));
    close(status_fd);
    log_info("listening on %s", cfg->listen);

    /* 6: serve; about once a second, even when busy, settle transactions
     * the master aborted and commits whose worker died */
    gpr_timespec tick = gpr_time_from_millis(1000, GPR_TIMESPAN);
    gpr_timespec next = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), tick);
    int held_for = 0;
    for (;;) {
        /* with replies held back, only look for what is ready; write
         * them once nothing is, or after WORKER_FLUSH_EVENTS completions
         * (call.c, "Coalescing") */
        if (w.flush && (held_for >= WORKER_FLUSH_EVENTS ||
                        bfdb_now_ns() - w.flush_since >= WORKER_FLUSH_NS))
            call_flush(&w);
        if (!w.flush)
            held_for = 0;
        grpc_event ev = grpc_completion_queue_next(
            w.cq, w.flush ? gpr_inf_past(GPR_CLOCK_MONOTONIC) : next, NULL);
        if (ev.type == GRPC_QUEUE_TIMEOUT && w.flush) {
            call_flush(&w);
            continue;
        }
        held_for++;
        if (gpr_time_cmp(gpr_now(GPR_CLOCK_MONOTONIC), next) >= 0) {
            if (!__atomic_load_n(&w.shutting_down, __ATOMIC_SEQ_CST)) {
                call_flush(&w); /* answers first: housekeeping may take long */
                h_txn_housekeeping(&w);
                h_model_housekeeping(&w);
            }
            next = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), tick);
        }
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        if (ev.tag == &shutdown_tag) {
            grpc_completion_queue_shutdown(w.cq);
            continue;
        }
        call_dispatch(ev.tag, ev.success);
    }

    pthread_mutex_lock(&sig.mu);
    sig.done = 1;
    pthread_cond_broadcast(&sig.cv);
    int waiting = !sig.stopping;
    pthread_mutex_unlock(&sig.mu);
    if (waiting)
        pthread_kill(thr, SIGTERM); /* wake it from sigwait */
    pthread_join(thr, NULL);

    call_free_all(&w);
    grpc_server_destroy(w.server);
    grpc_completion_queue_destroy(w.cq);
    grpc_shutdown_blocking();
    bfdb_store_close(w.kv);
    bfdb_store_close(w.blob);
    bfdb_cache_close(w.cache);
    for (int t = 0; t < 2; t++)
        for (int k = 0; k < w.qpool_n[t]; k++)
            bfdb_store_close(w.qpool[t][k]);
    log_info("stopped");
    exit(0);
}
