/*
 * txntab.h - the transaction table: every open transaction of a server,
 * in shared memory
 *
 * A transaction may be used from any connection, hence any worker, so its
 * state lives here and not in one worker's memory; its write set is staged
 * in the store files (src/store/txn.c).  Slots move through
 *
 *   FREE -> ACTIVE -> COMMITTING -> ENDED (committed or rolled back)
 *                  \-> ABORTED (expired, or its worker died: locks freed,
 *                       staged writes still to discard) -> ENDED
 *   COMMITTING whose worker died -> RECOVER (a worker finishes or undoes
 *                       the commit from what the stores say) -> ENDED
 *
 * ENDED slots keep the outcome so a late Commit/Rollback can say "already
 * committed"; they are reused oldest first when the table is full.  A
 * worker operating on a transaction holds the slot's busy mark (pid, by
 * compare-and-swap) so two workers never run the same transaction at once.
 * Everything is atomics; nothing here blocks.  The master only marks
 * (expiry, dead workers); SQLite work is done by workers.
 */
#ifndef BFDB_SHM_TXNTAB_H
#define BFDB_SHM_TXNTAB_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum bfdb_txn_state {
    BFDB_TXN_FREE = 0,
    BFDB_TXN_ACTIVE = 1,
    BFDB_TXN_COMMITTING = 2,
    BFDB_TXN_ABORTED = 3,
    BFDB_TXN_RECOVER = 4,
    BFDB_TXN_ENDED = 5
};

enum bfdb_txn_outcome {
    BFDB_TXN_OUT_NONE = 0,
    BFDB_TXN_OUT_COMMITTED = 1,
    BFDB_TXN_OUT_ROLLED_BACK = 2,
    BFDB_TXN_OUT_EXPIRED = 3,
    BFDB_TXN_OUT_WORKER_DIED = 4
};

struct bfdb_txn_slot {
    uint32_t state;       /* atomic, enum bfdb_txn_state */
    uint32_t outcome;     /* enum bfdb_txn_outcome, set with ENDED/ABORTED */
    uint8_t id[16];       /* the client's transaction_id, a UUID */
    uint64_t num;         /* internal number: lock owner and staging key */
    int32_t owner_pid;    /* the worker that began it */
    int32_t busy_pid;     /* atomic: the worker running an op on it, or 0 */
    uint64_t deadline_ms; /* CLOCK_MONOTONIC ms */
    uint64_t ended_ms;    /* when it ended (for reuse order) */
    uint32_t read_only;
    uint32_t blob_ops;    /* atomic: staged blob operations */
    uint32_t kv_ops;      /* atomic: staged kv operations */
    uint32_t cleanup;     /* atomic: 1 while a worker discards its stage */
    uint32_t committed;   /* atomic: 1 once past the commit point */
    uint32_t pad;
};

typedef struct bfdb_txntab bfdb_txntab;

size_t bfdb_txntab_shm_size(uint32_t nslots);
bfdb_txntab *bfdb_txntab_shm_init(void *mem, uint32_t nslots,
                                  uint64_t first_num);
bfdb_txntab *bfdb_txntab_at(void *mem);
uint32_t bfdb_txntab_slots(bfdb_txntab *t);
struct bfdb_txn_slot *bfdb_txntab_slot(bfdb_txntab *t, uint32_t i);

uint64_t bfdb_txn_now_ms(void);

/* bfdb_txntab_begin - take a slot for a new ACTIVE transaction with a
 * fresh random id; NULL if every slot is in use (no ENDED one to reuse) */
struct bfdb_txn_slot *bfdb_txntab_begin(bfdb_txntab *t, pid_t owner,
                                        int read_only, uint32_t timeout_ms);

/* bfdb_txntab_find - the slot holding id in any state but FREE, or NULL */
struct bfdb_txn_slot *bfdb_txntab_find(bfdb_txntab *t, const uint8_t id[16]);

/*
 * bfdb_txntab_enter - mark s busy for pid, waiting up to wait_ms while
 * another worker runs an op on it.  Returns 0, or -1 if it stayed busy.
 * A slot that is not ACTIVE (any more) is still entered: the caller
 * checks the state once it holds the mark.
 */
int bfdb_txntab_enter(struct bfdb_txn_slot *s, pid_t pid, int wait_ms);
void bfdb_txntab_leave(struct bfdb_txn_slot *s, pid_t pid);

/* bfdb_txntab_end - ENDED with outcome (the slot stays for reporting) */
void bfdb_txntab_end(struct bfdb_txn_slot *s, int outcome);

/* bfdb_txntab_committed - 1 if transaction number num is past its commit
 * point (the blob store's before-images of it are then stale) */
int bfdb_txntab_committed(bfdb_txntab *t, uint64_t num);

/* bfdb_txn_id_parse / _format - the text form "xxxxxxxx-xxxx-..." (36
 * chars, libuuid); parse returns -1 for anything else */
int bfdb_txn_id_parse(const void *text, size_t len, uint8_t id[16]);
void bfdb_txn_id_format(const uint8_t id[16], char out[37]);

/* bfdb_txn_outcome_text - "committed", "rolled back", "expired", ... */
const char *bfdb_txn_outcome_text(int outcome);

/*
 * For the master, never blocking.  bfdb_txntab_expire: ACTIVE slots past
 * their deadline and not busy become ABORTED (expired); returns how many,
 * filling nums (up to max) with their numbers so their locks can be freed.
 * bfdb_txntab_worker_died: ACTIVE slots begun by or busy in pid become
 * ABORTED (worker died), COMMITTING ones busy in pid become RECOVER.
 */
int bfdb_txntab_expire(bfdb_txntab *t, uint64_t now_ms, uint64_t *nums,
                       int max);
int bfdb_txntab_worker_died(bfdb_txntab *t, pid_t pid, uint64_t *nums,
                            int max);

#endif /* BFDB_SHM_TXNTAB_H */
