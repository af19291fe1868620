/*
 * worker.h - a worker process: serves the gRPC services on the shared port
 *
 * Started by the master with fork(); everything with threads or file
 * locks (gRPC, SQLite) is set up after the fork, in worker_main().
 */
#ifndef BFDB_WORKER_WORKER_H
#define BFDB_WORKER_WORKER_H

#include <grpc/grpc.h>
#include <pthread.h>
#include <signal.h>
#include <sys/types.h>

#include "common/config.h"
#include "shm/cache.h"
#include "shm/shm.h"
#include "store/store.h"
#include "worker/call.h"

/* Exit status of a worker that must not be restarted: its configuration
 * cannot work (store cannot be opened, address cannot be bound). */
#define BFDB_EXIT_MISCONFIGURED 2

#define WORKER_REQUESTS_PER_METHOD 4
#define WORKER_CATCHALL_REQUESTS 2
#define WORKER_QUEUE_HIGH 64   /* responses queued before reads pause */
#define WORKER_QUEUE_HIGH_BYTES (4u << 20) /* ... or this many bytes */
#define WORKER_STREAM_WINDOW (8 << 20) /* HTTP/2 receive window per stream */
/* replies held back while more requests are ready to be read, so that
 * one write(2) carries several (see call.c, "Coalescing") */
#define WORKER_COALESCE 32
#define WORKER_COALESCE_BYTES (32u << 10)
#define WORKER_FLUSH_EVENTS 64
#define WORKER_FLUSH_NS 200000  /* ... or once the oldest waited 200 us */

/* A message from a worker to the master, on the status pipe.  Smaller
 * than PIPE_BUF, so one write(2) arrives whole. */
struct worker_msg {
    int32_t slot;
    int32_t pid;
    int32_t generation;
    int32_t type; /* WMSG_* */
};
enum { WMSG_READY = 1 };

struct worker {
    int slot;
    int generation;
    const struct bfdb_config *cfg;
    bfdb_store *kv;
    bfdb_store *blob;
    bfdb_shm *shm;               /* inherited from the master */
    bfdb_cache *cache;           /* NULL when cache_size is 0 */
    bfdb_store *qpool[2][4];     /* idle Query connections, by target */
    int qpool_n[2];
    pid_t pid;
    grpc_server *server;
    grpc_completion_queue *cq;
    void *method_handles[32];
    int nmethods;
    struct call *calls;          /* live calls */
    struct call *flush;          /* calls whose replies wait for call_flush */
    uint64_t flush_since;        /* CLOCK_MONOTONIC ns when flush filled */
    char pid_str[16];
    int shutting_down;
};

extern const struct bfdb_method *const worker_methods[];
extern const int worker_nmethods;

/*
 * worker_main - the worker's whole life after fork: never returns.  Exits
 * 0 after a graceful stop, BFDB_EXIT_MISCONFIGURED if its configuration
 * cannot work, 1 on other failures.  status_fd is the write end of the
 * master's status pipe; close_fds are the master's fds to drop; record is
 * its record in the shared region (the master's process index).
 */
void worker_main(const struct bfdb_config *cfg, int slot, int generation,
                 int status_fd, const int *close_fds, int nclose,
                 bfdb_shm *shm, int record) __attribute__((noreturn));

#endif /* BFDB_WORKER_WORKER_H */
