/*
 * locktab.h - the lock table: named exclusive locks shared by every
 * process of a buffdb server
 *
 * A fixed-size table inside the shared region (shm.h), sized from the
 * configuration (lock_table_size).  A lock is named by bytes (a kv key,
 * "blob:<id>", ...) and owned by (pid, txn): txn 0 is a lock taken for one
 * operation by one process; a non-zero txn is a transaction's lock, which
 * any process acting for that transaction may take again or release.
 *
 * Usable from every worker, the CLI, and tests; the master only calls
 * bfdb_locktab_release_pid(), which never blocks.  Waiting for a held lock
 * is bounded by the caller's timeout (a futex wait, woken by releases);
 * there is no unbounded spin.  Names are identified by their 128-bit
 * XXH3 hash; the first bytes are kept for display.
 *
 * Layout and locking rules: src/shm/README.
 */
#ifndef BFDB_SHM_LOCKTAB_H
#define BFDB_SHM_LOCKTAB_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define BFDB_LOCKTAB_NAME_SHOWN 40

typedef struct bfdb_locktab bfdb_locktab; /* lives in shared memory */

/* bfdb_locktab_shm_size - bytes needed for a table of nslots (> 0);
 * 0 if nslots is 0 or the size would not fit a size_t */
size_t bfdb_locktab_shm_size(uint32_t nslots);

/* bfdb_locktab_shm_init - format the table at mem (bfdb_locktab_shm_size
 * bytes, zeroed or not, in a MAP_SHARED mapping, 8-byte aligned); master
 * only, before fork.  Returns the table, or NULL if nslots is 0, mem is
 * misaligned or the mutex could not be set up. */
bfdb_locktab *bfdb_locktab_shm_init(void *mem, uint32_t nslots);

/* bfdb_locktab_at - the table formatted at mem earlier (by any process);
 * NULL if mem holds no formatted table (wrong magic) */
bfdb_locktab *bfdb_locktab_at(void *mem);

/*
 * bfdb_locktab_acquire - take the exclusive lock on name for (pid, txn),
 * waiting at most timeout_ms (0: do not wait) while someone else holds it.
 * Taking a lock the same owner already holds succeeds at once (not
 * counted: one release frees it).  Returns 0; BFDB_EBUSY if still held by
 * another owner when the time is up (*holder_pid / *holder_txn, if not
 * NULL, say by whom); BFDB_EFULL if every slot is in use; BFDB_EINVAL for
 * pid <= 0, timeout_ms < 0 or a NULL name with len > 0; BFDB_EINTERNAL if
 * the mutex or futex calls fail.  Takes the table's mutex, never held
 * while waiting.
 */
int bfdb_locktab_acquire(bfdb_locktab *t, const void *name, size_t len,
                         pid_t pid, uint64_t txn, int timeout_ms,
                         pid_t *holder_pid, uint64_t *holder_txn);

/*
 * bfdb_locktab_release - release name if (pid, txn) holds it; with txn != 0
 * the pid is not compared (a transaction may end on another worker).
 * Returns 0, or BFDB_ENOTFOUND if that owner does not hold it.  Wakes
 * every waiter.  Takes the table's mutex.
 */
int bfdb_locktab_release(bfdb_locktab *t, const void *name, size_t len,
                         pid_t pid, uint64_t txn);

/* bfdb_locktab_release_txn - release every lock of transaction txn (!= 0);
 * returns how many, or BFDB_EINVAL for txn 0.  Takes the table's mutex. */
int bfdb_locktab_release_txn(bfdb_locktab *t, uint64_t txn);

/*
 * bfdb_locktab_release_pid - release every lock held with this pid and
 * txn 0 (the operation locks of a dead process); returns how many.  For the
 * master after it reaps a worker: lock-free (one compare-and-swap per
 * slot), so it never blocks on the table.  Locks of a non-zero txn are
 * left alone: the transaction may go on in another process.  Returns
 * BFDB_EINVAL for pid <= 0.
 */
int bfdb_locktab_release_pid(bfdb_locktab *t, pid_t pid);

/* bfdb_locktab_release_txn_nb - bfdb_locktab_release_txn for the master:
 * lock-free like release_pid (for transactions it expires or whose worker
 * died); returns how many */
int bfdb_locktab_release_txn_nb(bfdb_locktab *t, uint64_t txn);

/* bfdb_locktab_holder - who holds name: 1 and the owner (pid / txn if not
 * NULL), or 0 if free; negative on error.  Takes the table's mutex. */
int bfdb_locktab_holder(bfdb_locktab *t, const void *name, size_t len,
                        pid_t *pid, uint64_t *txn);

struct bfdb_locktab_stats {
    uint32_t slots;    /* table size */
    uint32_t held;     /* locks held now */
    uint64_t acquired; /* since start */
    uint64_t waits;    /* acquisitions that had to wait */
    uint64_t timeouts; /* acquisitions that gave up */
};
/* bfdb_locktab_stats - a snapshot without the mutex (counts may be a
 * moment apart) */
void bfdb_locktab_stats(bfdb_locktab *t, struct bfdb_locktab_stats *st);

/* bfdb_locktab_foreach - call fn for every held lock (for `buffdb stats`);
 * name is the shown prefix (the first min(len, BFDB_LOCKTAB_NAME_SHOWN)
 * bytes, NUL-terminated, valid during the call), len the full length.
 * Without the mutex: a best-effort snapshot, slot by slot. */
void bfdb_locktab_foreach(bfdb_locktab *t,
                          void (*fn)(void *arg, const char *name, size_t len,
                                     pid_t pid, uint64_t txn),
                          void *arg);

/* for tests: take the table's mutex and keep it (a test then kills the
 * process to check that the next locker recovers); returns 0 or negative */
int bfdb_locktab_test_lock_mutex(bfdb_locktab *t);

#endif /* BFDB_SHM_LOCKTAB_H */
