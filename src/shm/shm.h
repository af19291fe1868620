/*
 * shm.h - the shared region of a buffdb server
 *
 * One file, <shm_dir>/shared, mapped MAP_SHARED by the master before it
 * forks (workers inherit the mapping) and by `buffdb kv|query` and
 * `buffdb stats` while the server runs.  It holds what every process must
 * see at once, without a system call:
 *   - the cache's coherence state: a version per key stripe, the global
 *     raw-write version and the cache generation (see cache.h);
 *   - one record per process: who it is, which kv write it has in
 *     progress, and its counters (hits, misses, calls and errors per
 *     method) for `buffdb stats`;
 *   - the lock table (locktab.h).
 * The byte layout, who writes what and the locking order are in
 * src/shm/README.  The master makes a new region at every start, so
 * nothing in it outlives a server.
 */
#ifndef BFDB_SHM_SHM_H
#define BFDB_SHM_SHM_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "shm/locktab.h"
#include "shm/txntab.h"

#define BFDB_SHM_MAGIC "BFDBSHM1"
#define BFDB_SHM_VERSION 2
#define BFDB_SHM_STRIPES 4096          /* power of two */
#define BFDB_SHM_WORKER_RECORDS 512    /* the master's process table */
#define BFDB_SHM_CLI_RECORDS 32
#define BFDB_SHM_RECORDS (BFDB_SHM_WORKER_RECORDS + BFDB_SHM_CLI_RECORDS)
#define BFDB_SHM_METHODS 32
#define BFDB_SHM_REFBITS 65536         /* CLOCK reference bits */
#define BFDB_SHM_TXN_SLOTS 1024        /* open or recently ended txns */

/* Counters a process keeps in its record (only it writes them). */
struct bfdb_counters {
    uint64_t cache_hits;
    uint64_t cache_misses;
    uint64_t cache_fills;      /* entries put after a miss or a write */
    uint64_t cache_fill_skips; /* fills refused: a write raced them */
    uint64_t cache_evictions;
    uint64_t cache_flushes;    /* whole-cache drops (map full) */
    uint64_t calls[BFDB_SHM_METHODS];
    uint64_t errors[BFDB_SHM_METHODS];
};

struct bfdb_shm_record {
    int32_t pid;        /* atomic; 0: free */
    int32_t slot;       /* worker slot; -1 for a CLI process */
    uint32_t writing;   /* atomic: stripe + 1 of a kv write in progress */
    uint32_t global;    /* atomic: 1 while a raw-SQL kv write runs */
    uint64_t started;   /* unix seconds */
    struct bfdb_counters c;
};

struct bfdb_shm_hdr {
    char magic[8];
    uint32_t version;
    uint32_t hdr_size;
    uint64_t total_size;
    int32_t master_pid;
    uint32_t running;       /* 1 while the master serves */
    uint64_t started;       /* unix seconds */
    uint32_t nstripes;
    uint32_t nrecords;
    uint32_t lock_slots;
    uint32_t pad0;
    uint64_t off_stripes;   /* uint64_t[nstripes] */
    uint64_t off_records;   /* struct bfdb_shm_record[nrecords] */
    uint64_t off_refbits;   /* uint64_t[BFDB_SHM_REFBITS / 64] */
    uint64_t off_locktab;
    uint64_t cache_gen;     /* atomic */
    uint64_t global_ver;    /* atomic */
    uint64_t cache_size;    /* bytes; 0: the cache is off */
    uint32_t records_hwm;   /* atomic: worker records in use are below */
    uint32_t pad1;
    struct bfdb_counters retired; /* of processes that exited */
    uint64_t off_txntab;    /* the transaction table (txntab.h) */
    uint32_t txn_slots;
    uint32_t lock_wait_ms;  /* the server's lock_wait, for the CLI */
};

typedef struct bfdb_shm {
    void *base;
    size_t size;
    struct bfdb_shm_hdr *hdr;
    uint64_t *stripes;
    struct bfdb_shm_record *records;
    uint64_t *refbits;
    bfdb_locktab *locktab;
    bfdb_txntab *txntab;
    struct bfdb_shm_record *self; /* this process's record, if claimed */
    char dir[PATH_MAX];
} bfdb_shm;

/* bfdb_shm_dir - the shared directory for a kv store: shm_dir if set,
 * else "<kv_store>.buffdb" */
void bfdb_shm_dir(char *out, size_t cap, const char *shm_dir,
                  const char *kv_store);

/*
 * bfdb_shm_find_dir - for a process that knows only the kv store (the
 * CLI): "<kv_store>.buffdb", or the directory its "redirect" file names
 * (the master leaves one there when shm_dir is set elsewhere).
 */
void bfdb_shm_find_dir(char *out, size_t cap, const char *kv_store);

/* bfdb_shm_set_redirect - master: record in "<kv_store>.buffdb/redirect"
 * where the shared directory is (or remove the file when it is the
 * default), so bfdb_shm_find_dir finds it; -1 with err on failure */
int bfdb_shm_set_redirect(const char *kv_store, const char *dir, char *err,
                          size_t errlen);

/*
 * bfdb_shm_create - master, before forking: make dir (0700) if needed,
 * drop the cache left by an earlier server (it is never the only copy of
 * anything), write a fresh region and map it.  Returns 0 or -1 with err.
 */
int bfdb_shm_create(bfdb_shm *shm, const char *dir, uint32_t lock_slots,
                    uint64_t cache_size, char *err, size_t errlen);

/* bfdb_shm_attach - map the region of a running (or dead) server; -1 with
 * err if there is none or it is not a buffdb region of this version */
int bfdb_shm_attach(bfdb_shm *shm, const char *dir, char *err,
                    size_t errlen);

/* bfdb_shm_detach - unmap; releases this process's record if it has one */
void bfdb_shm_detach(bfdb_shm *shm);

/* bfdb_shm_server_alive - 1 if the region's master is running */
int bfdb_shm_server_alive(const bfdb_shm *shm);

/*
 * bfdb_shm_claim - take record index (a worker: the master's process
 * index) or, index -1, a free CLI record, for the calling process.
 * Returns the record (also shm->self) or NULL if none is free.
 */
struct bfdb_shm_record *bfdb_shm_claim(bfdb_shm *shm, int index, int slot);

/*
 * bfdb_shm_reap - master, after a process died: undo what its record says
 * was in progress (a stripe or raw write: bump the versions so no reader
 * fills from a snapshot taken before), release its operation locks, add
 * its counters to the retired totals, free the record.  Never blocks.
 */
void bfdb_shm_reap(bfdb_shm *shm, pid_t pid);

/* bfdb_shm_reap_dead_cli - master, periodically: reap CLI records whose
 * process is gone */
void bfdb_shm_reap_dead_cli(bfdb_shm *shm);

/* bfdb_counters_add - add every counter of from to to (atomic adds, so
 * to may be shared; reads of from are relaxed atomic loads) */
void bfdb_counters_add(struct bfdb_counters *to,
                       const struct bfdb_counters *from);

/* bfdb_shm_stripe - the stripe of a kv key */
uint32_t bfdb_shm_stripe(const void *key, size_t len);

/* bfdb_shm_lock_exclusive / _shared - the flock on <dir>/lock: the master
 * holds it exclusively while it (re)creates the region, the CLI shared
 * while it writes, so the CLI never writes past a server starting.
 * Return the fd to pass to bfdb_shm_unlock, or -1 with err. */
int bfdb_shm_lock(const char *dir, int exclusive, char *err, size_t errlen);
void bfdb_shm_unlock(int fd);

#define BFDB_COUNT(rec, field)                                                 \
    do {                                                                       \
        if ((rec) != NULL)                                                     \
            __atomic_fetch_add(&(rec)->c.field, 1, __ATOMIC_RELAXED);          \
    } while (0)

#endif /* BFDB_SHM_SHM_H */
