/*
 * bench_run.h - the load engine of buffdb-bench
 *
 * An engine holds --connections channels (each with channel arguments of
 * its own, hence its own TCP connection) spread over --threads threads;
 * each thread owns a completion queue and --streams slots per connection
 * it holds.  A slot keeps up to `pipeline` requests in flight:
 *
 *  - streamed (buffdb and null targets, pipeline > 1): one long-lived
 *    bidi stream per method the workload uses, requests written one
 *    SEND_MESSAGE at a time and answered in order;
 *  - unary style (pipeline 1, or any pipeline against etcd): a call per
 *    request, one batch of six operations (send metadata, message and
 *    half-close; receive metadata, one message and the status).
 *
 * Latency runs from the moment a request is issued (queued on its slot)
 * to the moment its response is read.  A request is measured if it was
 * issued after the warmup.  A stream that ends with an error counts one
 * error (its status) for the oldest unanswered request and the rest as
 * unanswered (buffdb ends a stream at its first error).
 */
#ifndef BFDB_BENCH_RUN_H
#define BFDB_BENCH_RUN_H

#include <stdint.h>

#include "bench.h"
#include "bench_hist.h"

struct bench_stats {
    struct bench_hist hist;           /* measured latencies, ns */
    uint64_t issued;                  /* measured requests issued */
    uint64_t ok, misses, bad;         /* measured responses, by verdict */
    uint64_t errors[BENCH_NCODES];    /* failed requests (and streams) */
    uint64_t unanswered;              /* dropped by a failed stream */
    uint64_t warmup_errors;           /* failures of unmeasured requests */
    uint64_t last_ns;                 /* last measured response */
    uint64_t cpu_user_ns, cpu_sys_ns; /* process CPU since t_measure */
    uint64_t leaked;                  /* calls that never finished */
    int gave_up;                      /* stopped on repeated UNAVAILABLE */
    char first_error[200];            /* the first failure's status */
};

struct bench_phase {
    int preload;        /* set every key once, sequentially */
    int op_preload;     /* BO_SET or BO_BLOB_STORE */
    uint64_t t_measure; /* monotonic ns: requests issued after count */
    uint64_t t_end;     /* monotonic ns: nothing is issued after */
    uint64_t requests;  /* measured requests in all, 0 = until t_end */
    int pipeline;
    int progress;       /* a progress line on stderr each second */
};

struct bench_engine;

/* bench_now_ns - CLOCK_MONOTONIC in nanoseconds */
uint64_t bench_now_ns(void);

/*
 * bench_engine_new - open the channels of ctx->o (lazily connected: the
 * first call connects) and create the threads' completion queues.
 * grpc_init must have been called.  Returns NULL if gRPC refuses a
 * channel.
 */
struct bench_engine *bench_engine_new(const struct bench_ctx *ctx);

/*
 * bench_engine_run - run one phase on every thread and wait for all of
 * them (bounded: each stops issuing at ph->t_end, cancels its calls
 * BENCH_DRAIN_S later and gives up BENCH_GIVEUP_S after that).  Fills
 * *out with the merged statistics.
 */
void bench_engine_run(struct bench_engine *e, const struct bench_phase *ph,
                      struct bench_stats *out);

/*
 * bench_engine_free - destroy channels and queues.  Returns 0, or -1 if
 * calls were leaked (then nothing is destroyed and the caller must not
 * call grpc_shutdown).
 */
int bench_engine_free(struct bench_engine *e);

#endif /* BFDB_BENCH_RUN_H */
