/*
 * locktab.c - the lock table: named exclusive locks in shared memory
 *
 * Who uses it
 *   The master formats the table (bfdb_locktab_shm_init) in a MAP_SHARED
 *   mapping before it forks; workers inherit the mapping, the CLI and
 *   tests map the same memory and find it with bfdb_locktab_at.  Workers
 *   and the CLI acquire and release; the master only calls
 *   bfdb_locktab_release_pid after reaping a worker, and that never takes
 *   the table's mutex, so the master never blocks here.
 *
 * Layout (byte by byte in src/shm/README, "Lock table")
 *   A 128-byte header, then nslots slots of 80 bytes, no pointers: every
 *   process may map the table at a different address.
 *     header  magic, nslots, the wake sequence (a futex word), a count of
 *             waiters, statistics, and a process-shared robust mutex
 *     slot    state word = generation << 2 | kind (0 empty, 1 held,
 *             2 tombstone), owner pid, txn, the name's 128-bit XXH3 hash,
 *             the name's length and its first BFDB_LOCKTAB_NAME_SHOWN bytes
 *   Slots are an open-addressing hash table, linear probing from
 *   hash % nslots.  A probe chain ends at an empty slot or after nslots
 *   slots; tombstones keep chains whole.
 *
 * Locking rules
 *   - The mutex orders every change except release_pid's: claiming a slot,
 *     releasing by name or by txn, turning tombstones back into empty slots.
 *   - release_pid changes one thing without the mutex: a held slot's state
 *     word, to a tombstone, by compare-and-swap.  Everything under the mutex
 *     that ends a held slot therefore uses compare-and-swap too, and treats
 *     a failed one as "already released".
 *   - Every change of a state word gives it a new generation, so a
 *     compare-and-swap from a value read earlier fails if the slot was
 *     released and taken again in between (ABA).  Slot fields are written
 *     while the slot is not held, then published by a release store of the
 *     state word (a seqlock: readers without the mutex check the state word
 *     again after reading the fields).
 *   - A slot is only ever changed by single stores of whole fields, so a
 *     process that dies holding the mutex leaves nothing half done that
 *     matters: fields written into a slot not yet published are ignored.
 *     The robust mutex reports the death (EOWNERDEAD); the next locker
 *     marks it consistent and wakes every waiter, in case the dead process
 *     released a lock but did not get to wake anyone.
 *   - Waiting: a waiter reads the wake sequence before it looks at the
 *     slots, drops the mutex and sleeps in FUTEX_WAIT on that value; every
 *     release bumps the sequence after changing the slot and then wakes all
 *     sleepers (FUTEX_WAKE), if any registered.  The futex calls are the
 *     shared (not _PRIVATE) ones: the sleepers are in other processes.
 *
 * Lock order: the table's mutex is a leaf; nothing else is taken while it
 * is held, and no futex wait happens with it held.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/error.h"
#include "common/log.h"
#include "shm/locktab.h"

/* ---- layout ------------------------------------------------------------ */

/* "BLT" and a layout version: a table of another layout is not ours */
#define LOCKTAB_MAGIC 0x424c5401u

#define KIND_EMPTY 0u /* no probe chain passes through this slot */
#define KIND_HELD 1u  /* a lock: the fields are valid */
#define KIND_TOMB 2u  /* was held; probe chains go on past it */
#define KIND_MASK 3u

#define SHOWN_WORDS (BFDB_LOCKTAB_NAME_SHOWN / 8)

struct locktab_hdr {
    _Atomic uint32_t magic;    /*  0: LOCKTAB_MAGIC once formatted */
    uint32_t nslots;           /*  4: number of slots, > 0 */
    _Atomic uint32_t wake_seq; /*  8: futex word, bumped by every release */
    _Atomic uint32_t nwaiters; /* 12: processes in or about to FUTEX_WAIT */
    _Atomic uint64_t acquired; /* 16: locks taken (not re-takes) */
    _Atomic uint64_t waits;    /* 24: acquisitions that had to wait */
    _Atomic uint64_t timeouts; /* 32: acquisitions that returned EBUSY */
    uint8_t reserved[24];      /* 40: zero */
    union {                    /* 64: process-shared robust mutex */
        pthread_mutex_t m;
        uint8_t pad[64];
    } mutex;
};

struct locktab_slot {
    _Atomic uint32_t state;            /*  0: generation << 2 | kind */
    _Atomic int32_t pid;               /*  4: owner pid */
    _Atomic uint64_t txn;              /*  8: owner txn, 0 for none */
    _Atomic uint64_t hash_lo;          /* 16: XXH3-128 of the name, low */
    _Atomic uint64_t hash_hi;          /* 24: and high 64 bits */
    _Atomic uint64_t len;              /* 32: full length of the name */
    _Atomic uint64_t shown[SHOWN_WORDS]; /* 40: first bytes, zero-padded */
};

struct bfdb_locktab {
    struct locktab_hdr hdr;
    struct locktab_slot slots[];
};

/*
 * The table is shared between processes that may map it at different
 * addresses: atomics must be lock-free (hence address-free) and the layout
 * must be the one src/shm/README describes.
 */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "32-bit atomics must be lock-free");
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2,
               "64-bit atomics must be lock-free");
_Static_assert(sizeof(pid_t) == 4, "pid_t must be 32 bits");
_Static_assert(BFDB_LOCKTAB_NAME_SHOWN % 8 == 0,
               "the shown name is stored as 64-bit words");
_Static_assert(sizeof(pthread_mutex_t) <= 64, "mutex must fit its 64 bytes");
_Static_assert(sizeof(_Atomic uint32_t) == 4, "futex word must be 32 bits");
_Static_assert(offsetof(struct locktab_hdr, wake_seq) == 8, "layout");
_Static_assert(offsetof(struct locktab_hdr, acquired) == 16, "layout");
_Static_assert(offsetof(struct locktab_hdr, mutex) == 64, "layout");
_Static_assert(sizeof(struct locktab_hdr) == 128, "layout");
_Static_assert(offsetof(struct locktab_slot, txn) == 8, "layout");
_Static_assert(offsetof(struct locktab_slot, hash_lo) == 16, "layout");
_Static_assert(offsetof(struct locktab_slot, len) == 32, "layout");
_Static_assert(offsetof(struct locktab_slot, shown) == 40, "layout");
_Static_assert(sizeof(struct locktab_slot) == 80, "layout");
_Static_assert(offsetof(struct bfdb_locktab, slots) == 128, "layout");

/* ---- small helpers ----------------------------------------------------- */

struct locktab_key {
    uint64_t lo, hi, len;
};

static void
locktab_key_of(struct locktab_key *k, const void *name, size_t len)
{
    XXH128_hash_t h = XXH3_128bits(len ? name : "", len);

    k->lo = h.low64;
    k->hi = h.high64;
    k->len = len;
}

/* the state a slot gets next: same slot, next generation, new kind */
static uint32_t
state_next(uint32_t s, uint32_t kind)
{
    return (((s >> 2) + 1u) << 2) | kind;
}

static uint32_t
state_kind(uint32_t s)
{
    return s & KIND_MASK;
}

static int
owner_matches(pid_t spid, uint64_t stxn, pid_t pid, uint64_t txn)
{
    if (txn != 0)
        return stxn == txn;
    return stxn == 0 && spid == pid;
}

static int
key_matches(struct locktab_slot *s, const struct locktab_key *k)
{
    return atomic_load_explicit(&s->hash_lo, memory_order_relaxed) == k->lo &&
           atomic_load_explicit(&s->hash_hi, memory_order_relaxed) == k->hi &&
           atomic_load_explicit(&s->len, memory_order_relaxed) == k->len;
}

static int64_t
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- futex ------------------------------------------------------------- */

/*
 * locktab_wake_all - tell every sleeper that something was released: bump
 * the wake sequence, then FUTEX_WAKE if anyone registered as a waiter (or
 * always, with force).  Called after the slot change is visible; with or
 * without the mutex.
 */
static void
locktab_wake_all(bfdb_locktab *t, int force)
{
    struct locktab_hdr *h = &t->hdr;

    atomic_fetch_add_explicit(&h->wake_seq, 1, memory_order_seq_cst);
    if (!force && atomic_load_explicit(&h->nwaiters, memory_order_seq_cst) == 0)
        return;
    if (syscall(SYS_futex, (uint32_t *)&h->wake_seq, FUTEX_WAKE, INT_MAX,
                NULL, NULL, 0) == -1)
        log_warn("futex(FUTEX_WAKE) failed: %s", strerror(errno));
}

/*
 * locktab_sleep - sleep until the wake sequence is no longer seq, a wake,
 * a signal or until deadline (CLOCK_MONOTONIC ns).  Returns 0 (the caller
 * looks again whatever woke it), or BFDB_EINTERNAL if the futex call
 * itself is refused.  Mutex not held.
 */
static int
locktab_sleep(bfdb_locktab *t, uint32_t seq, int64_t deadline)
{
    int64_t left = deadline - now_ns();
    struct timespec ts;

    if (left <= 0)
        return 0;
    ts.tv_sec = (time_t)(left / 1000000000);
    ts.tv_nsec = (long)(left % 1000000000);
    if (syscall(SYS_futex, (uint32_t *)&t->hdr.wake_seq, FUTEX_WAIT, seq, &ts,
                NULL, 0) == -1 &&
        errno != EAGAIN && errno != EINTR && errno != ETIMEDOUT) {
        log_error("futex(FUTEX_WAIT) failed: %s", strerror(errno));
        return BFDB_EINTERNAL;
    }
    return 0;
}

/* ---- mutex ------------------------------------------------------------- */

/*
 * locktab_lock - take the table's mutex.  If its last owner died holding
 * it, mark it consistent (every slot is whole, see the banner) and wake
 * all waiters, since the dead process may have released a lock without
 * waking anyone.  Returns 0 with the mutex held, or BFDB_EINTERNAL.
 */
static int
locktab_lock(bfdb_locktab *t)
{
    pthread_mutex_t *m = &t->hdr.mutex.m;
    int e = pthread_mutex_lock(m);

    if (e == EOWNERDEAD) {
        e = pthread_mutex_consistent(m);
        if (e != 0) {
            log_error("pthread_mutex_consistent() failed: %s", strerror(e));
            pthread_mutex_unlock(m);
            return BFDB_EINTERNAL;
        }
        log_warn("lock table: a process died holding the table's mutex, "
                 "recovered");
        locktab_wake_all(t, 1);
        return 0;
    }
    if (e != 0) {
        log_error("pthread_mutex_lock() failed: %s", strerror(e));
        return BFDB_EINTERNAL;
    }
    return 0;
}

static void
locktab_unlock(bfdb_locktab *t)
{
    int e = pthread_mutex_unlock(&t->hdr.mutex.m);

    if (e != 0)
        log_error("pthread_mutex_unlock() failed: %s", strerror(e));
}

/* ---- probing and slot changes (mutex held) ----------------------------- */

/*
 * locktab_find_locked - walk the probe chain of k.  Returns the index of
 * the slot holding k, or -1; then *freep is the first tombstone or empty
 * slot of the chain (where k would go), or -1 if the chain has neither.
 * Mutex held; release_pid may still turn a held slot into a tombstone
 * meanwhile, which at worst makes the caller wait for a wake already sent.
 */
static long
locktab_find_locked(bfdb_locktab *t, const struct locktab_key *k, long *freep)
{
    uint32_t n = t->hdr.nslots;
    uint32_t i = (uint32_t)(k->lo % n);
    long first_free = -1;

    for (uint32_t probes = 0; probes < n;
         probes++, i = (i + 1 == n) ? 0 : i + 1) {
        struct locktab_slot *s = &t->slots[i];
        uint32_t st = atomic_load_explicit(&s->state, memory_order_acquire);

        switch (state_kind(st)) {
        case KIND_EMPTY:
            if (first_free < 0)
                first_free = i;
            *freep = first_free;
            return -1;
        case KIND_HELD:
            if (key_matches(s, k))
                return i;
            break;
        default:
            if (first_free < 0)
                first_free = i;
            break;
        }
    }
    *freep = first_free;
    return -1;
}

/*
 * locktab_claim_locked - fill slot i (empty or tombstone) for k and publish
 * it as held.  Mutex held.
 */
static void
locktab_claim_locked(bfdb_locktab *t, uint32_t i, const struct locktab_key *k,
                     const void *name, pid_t pid, uint64_t txn)
{
    struct locktab_slot *s = &t->slots[i];
    uint32_t st = atomic_load_explicit(&s->state, memory_order_relaxed);
    unsigned char shown[BFDB_LOCKTAB_NAME_SHOWN] = { 0 };
    size_t nshown = k->len < sizeof(shown) ? (size_t)k->len : sizeof(shown);

    if (nshown > 0)
        memcpy(shown, name, nshown);
    /*
     * Pairs with the acquire fence in the lock-free readers: one that reads
     * a field written below also sees the state change that ended the
     * slot's previous lifetime, so its compare-and-swap or re-check fails.
     */
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&s->pid, pid, memory_order_relaxed);
    atomic_store_explicit(&s->txn, txn, memory_order_relaxed);
    atomic_store_explicit(&s->hash_lo, k->lo, memory_order_relaxed);
    atomic_store_explicit(&s->hash_hi, k->hi, memory_order_relaxed);
    atomic_store_explicit(&s->len, k->len, memory_order_relaxed);
    for (int w = 0; w < SHOWN_WORDS; w++) {
        uint64_t v;

        memcpy(&v, shown + 8 * w, 8);
        atomic_store_explicit(&s->shown[w], v, memory_order_relaxed);
    }
    atomic_store_explicit(&s->state, state_next(st, KIND_HELD),
                          memory_order_release);
    atomic_fetch_add_explicit(&t->hdr.acquired, 1, memory_order_relaxed);
}

/*
 * locktab_end_locked - release held slot i, whose state word was seen as
 * st: a tombstone, or an empty slot when no chain can pass through it (the
 * next slot is empty), and then earlier tombstones become empty as long as
 * that holds.  Returns 1, or 0 if release_pid released it first.  Does not
 * wake anyone.  Mutex held.
 */
static int
locktab_end_locked(bfdb_locktab *t, uint32_t i, uint32_t st)
{
    uint32_t n = t->hdr.nslots;
    struct locktab_slot *s = &t->slots[i];
    uint32_t next = (i + 1 == n) ? 0 : i + 1;
    uint32_t nst = atomic_load_explicit(&t->slots[next].state,
                                        memory_order_relaxed);
    int to_empty = n == 1 || state_kind(nst) == KIND_EMPTY;

    if (!atomic_compare_exchange_strong_explicit(
            &s->state, &st, state_next(st, to_empty ? KIND_EMPTY : KIND_TOMB),
            memory_order_acq_rel, memory_order_relaxed))
        return 0;
    if (!to_empty)
        return 1;
    /*
     * Slot i is empty now, so a tombstone just before it ends no chain that
     * matters: a key placed past it would have had to skip slot i+1, which
     * was empty.  Only the mutex holder changes tombstones, so plain stores
     * do; each step keeps "empty only before an empty".
     */
    for (uint32_t k = 1; k < n; k++) {
        uint32_t j = (i + n - k) % n;
        struct locktab_slot *p = &t->slots[j];
        uint32_t pst = atomic_load_explicit(&p->state, memory_order_relaxed);

        if (state_kind(pst) != KIND_TOMB)
            break;
        atomic_store_explicit(&p->state, state_next(pst, KIND_EMPTY),
                              memory_order_release);
    }
    return 1;
}

/* ---- lock-free snapshot of one slot ------------------------------------ */

struct locktab_view {
    pid_t pid;
    uint64_t txn;
    uint64_t len;
    char shown[BFDB_LOCKTAB_NAME_SHOWN + 1];
};

/*
 * locktab_read_slot - copy held slot i without the mutex (seqlock read:
 * state, fields, state again).  Returns 1 with *v filled, 0 if the slot is
 * not held or kept changing.
 */
static int
locktab_read_slot(bfdb_locktab *t, uint32_t i, struct locktab_view *v)
{
    struct locktab_slot *s = &t->slots[i];

    for (int tries = 0; tries < 4; tries++) {
        uint32_t st = atomic_load_explicit(&s->state, memory_order_acquire);

        if (state_kind(st) != KIND_HELD)
            return 0;
        v->pid = atomic_load_explicit(&s->pid, memory_order_relaxed);
        v->txn = atomic_load_explicit(&s->txn, memory_order_relaxed);
        v->len = atomic_load_explicit(&s->len, memory_order_relaxed);
        for (int w = 0; w < SHOWN_WORDS; w++) {
            uint64_t x = atomic_load_explicit(&s->shown[w],
                                              memory_order_relaxed);

            memcpy(v->shown + 8 * w, &x, 8);
        }
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&s->state, memory_order_relaxed) == st) {
            size_t nshown = v->len < BFDB_LOCKTAB_NAME_SHOWN
                                ? (size_t)v->len
                                : BFDB_LOCKTAB_NAME_SHOWN;

            v->shown[nshown] = '\0';
            return 1;
        }
    }
    return 0;
}

/* ---- the interface ----------------------------------------------------- */

size_t
bfdb_locktab_shm_size(uint32_t nslots)
{
    if (nslots == 0)
        return 0;
#if SIZE_MAX <= UINT32_MAX
    /* only a 32-bit size_t can overflow: nslots is 32 bits */
    if (nslots > (SIZE_MAX - sizeof(struct locktab_hdr)) /
                     sizeof(struct locktab_slot))
        return 0;
#endif
    return sizeof(struct locktab_hdr) +
           (size_t)nslots * sizeof(struct locktab_slot);
}

bfdb_locktab *
bfdb_locktab_shm_init(void *mem, uint32_t nslots)
{
    bfdb_locktab *t = mem;
    size_t size = bfdb_locktab_shm_size(nslots);
    pthread_mutexattr_t a;
    int e;

    if (mem == NULL || size == 0 || (uintptr_t)mem % alignof(uint64_t) != 0)
        return NULL;
    memset(mem, 0, size);
    t->hdr.nslots = nslots;
    if ((e = pthread_mutexattr_init(&a)) != 0) {
        log_error("pthread_mutexattr_init() failed: %s", strerror(e));
        return NULL;
    }
    if ((e = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED)) != 0) {
        log_error("pthread_mutexattr_setpshared() failed: %s", strerror(e));
        goto fail;
    }
    if ((e = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST)) != 0) {
        log_error("pthread_mutexattr_setrobust() failed: %s", strerror(e));
        goto fail;
    }
    if ((e = pthread_mutex_init(&t->hdr.mutex.m, &a)) != 0) {
        log_error("pthread_mutex_init() failed: %s", strerror(e));
        goto fail;
    }
    pthread_mutexattr_destroy(&a);
    atomic_store_explicit(&t->hdr.magic, LOCKTAB_MAGIC, memory_order_release);
    return t;

fail:
    pthread_mutexattr_destroy(&a);
    return NULL;
}

bfdb_locktab *
bfdb_locktab_at(void *mem)
{
    bfdb_locktab *t = mem;

    if (mem == NULL || (uintptr_t)mem % alignof(uint64_t) != 0 ||
        atomic_load_explicit(&t->hdr.magic, memory_order_acquire) !=
            LOCKTAB_MAGIC ||
        t->hdr.nslots == 0)
        return NULL;
    return t;
}

int
bfdb_locktab_acquire(bfdb_locktab *t, const void *name, size_t len,
                     pid_t pid, uint64_t txn, int timeout_ms,
                     pid_t *holder_pid, uint64_t *holder_txn)
{
    struct locktab_key k;
    int64_t deadline;
    int waiting = 0;
    int rc;

    if (t == NULL || (name == NULL && len > 0) || pid <= 0 || timeout_ms < 0)
        return BFDB_EINVAL;
    locktab_key_of(&k, name, len);
    deadline = now_ns() + (int64_t)timeout_ms * 1000000;

    if ((rc = locktab_lock(t)) != 0)
        return rc;
    for (;;) {
        /*
         * Read the sequence before looking at the slots: a release that
         * this look misses bumps it later, so the sleep below returns at
         * once instead of missing the wake.
         */
        uint32_t seq = atomic_load_explicit(&t->hdr.wake_seq,
                                            memory_order_seq_cst);
        long fr = -1;
        long i = locktab_find_locked(t, &k, &fr);
        struct locktab_slot *s;
        pid_t spid;
        uint64_t stxn;

        if (i < 0) {
            if (fr < 0) {
                rc = BFDB_EFULL;
                break;
            }
            locktab_claim_locked(t, (uint32_t)fr, &k, name, pid, txn);
            rc = 0;
            break;
        }
        s = &t->slots[i];
        spid = atomic_load_explicit(&s->pid, memory_order_relaxed);
        stxn = atomic_load_explicit(&s->txn, memory_order_relaxed);
        if (owner_matches(spid, stxn, pid, txn)) {
            rc = 0;
            break;
        }
        if (timeout_ms == 0 || now_ns() >= deadline) {
            if (holder_pid != NULL)
                *holder_pid = spid;
            if (holder_txn != NULL)
                *holder_txn = stxn;
            atomic_fetch_add_explicit(&t->hdr.timeouts, 1,
                                      memory_order_relaxed);
            rc = BFDB_EBUSY;
            break;
        }
        if (!waiting) {
            /*
             * Register before reading the sequence again (the loop does):
             * release_pid, which has no mutex, bumps the sequence before
             * it reads the count, so one of the two sees the other.
             */
            waiting = 1;
            atomic_fetch_add_explicit(&t->hdr.nwaiters, 1,
                                      memory_order_seq_cst);
            atomic_fetch_add_explicit(&t->hdr.waits, 1, memory_order_relaxed);
            continue;
        }
        locktab_unlock(t);
        rc = locktab_sleep(t, seq, deadline);
        if (rc == 0)
            rc = locktab_lock(t);
        if (rc != 0)
            goto out; /* mutex not held */
    }
    locktab_unlock(t);
out:
    if (waiting)
        atomic_fetch_sub_explicit(&t->hdr.nwaiters, 1, memory_order_seq_cst);
    return rc;
}

int
bfdb_locktab_release(bfdb_locktab *t, const void *name, size_t len,
                     pid_t pid, uint64_t txn)
{
    struct locktab_key k;
    long fr, i;
    int rc;

    if (t == NULL || (name == NULL && len > 0))
        return BFDB_EINVAL;
    locktab_key_of(&k, name, len);
    if ((rc = locktab_lock(t)) != 0)
        return rc;
    rc = BFDB_ENOTFOUND;
    i = locktab_find_locked(t, &k, &fr);
    if (i >= 0) {
        struct locktab_slot *s = &t->slots[i];
        uint32_t st = atomic_load_explicit(&s->state, memory_order_acquire);

        if (state_kind(st) == KIND_HELD &&
            owner_matches(atomic_load_explicit(&s->pid, memory_order_relaxed),
                          atomic_load_explicit(&s->txn, memory_order_relaxed),
                          pid, txn) &&
            locktab_end_locked(t, (uint32_t)i, st)) {
            locktab_wake_all(t, 0);
            rc = 0;
        }
    }
    locktab_unlock(t);
    return rc;
}

int
bfdb_locktab_release_txn(bfdb_locktab *t, uint64_t txn)
{
    int count = 0;
    int rc;

    if (t == NULL || txn == 0)
        return BFDB_EINVAL;
    if ((rc = locktab_lock(t)) != 0)
        return rc;
    for (uint32_t i = 0; i < t->hdr.nslots; i++) {
        struct locktab_slot *s = &t->slots[i];
        uint32_t st = atomic_load_explicit(&s->state, memory_order_acquire);

        if (state_kind(st) == KIND_HELD &&
            atomic_load_explicit(&s->txn, memory_order_relaxed) == txn)
            count += locktab_end_locked(t, i, st);
    }
    if (count > 0)
        locktab_wake_all(t, 0);
    locktab_unlock(t);
    return count;
}

/*
 * bfdb_locktab_release_pid - no mutex: the master must never block on a
 * lock a worker holds (or held when it died).  Each slot is read like a
 * seqlock and ended by one compare-and-swap from the state word read first;
 * if the slot was released and taken again since, its generation differs
 * and the compare-and-swap fails, so a new owner never loses its lock.
 * Only turns held slots into tombstones (never empty), so no probe chain
 * breaks under a concurrent lookup.
 */
/* release_matching - the lock-free release behind release_pid and
 * release_txn_nb: one compare-and-swap per held slot that matches */
static int
release_matching(bfdb_locktab *t, pid_t pid, uint64_t txn)
{
    int count = 0;

    for (uint32_t i = 0; i < t->hdr.nslots; i++) {
        struct locktab_slot *s = &t->slots[i];
        uint32_t st = atomic_load_explicit(&s->state, memory_order_acquire);
        pid_t spid;
        uint64_t stxn;

        if (state_kind(st) != KIND_HELD)
            continue;
        spid = atomic_load_explicit(&s->pid, memory_order_relaxed);
        stxn = atomic_load_explicit(&s->txn, memory_order_relaxed);
        /* pairs with the release fence in locktab_claim_locked */
        atomic_thread_fence(memory_order_acquire);
        if (txn != 0 ? stxn != txn : (spid != pid || stxn != 0))
            continue;
        if (atomic_compare_exchange_strong_explicit(
                &s->state, &st, state_next(st, KIND_TOMB),
                memory_order_acq_rel, memory_order_relaxed))
            count++;
    }
    if (count > 0)
        locktab_wake_all(t, 0);
    return count;
}

int
bfdb_locktab_release_pid(bfdb_locktab *t, pid_t pid)
{
    if (t == NULL || pid <= 0)
        return BFDB_EINVAL;
    return release_matching(t, pid, 0);
}

int
bfdb_locktab_release_txn_nb(bfdb_locktab *t, uint64_t txn)
{
    if (t == NULL || txn == 0)
        return BFDB_EINVAL;
    return release_matching(t, 0, txn);
}

int
bfdb_locktab_holder(bfdb_locktab *t, const void *name, size_t len, pid_t *pid,
                    uint64_t *txn)
{
    struct locktab_key k;
    long fr, i;
    int rc;

    if (t == NULL || (name == NULL && len > 0))
        return BFDB_EINVAL;
    locktab_key_of(&k, name, len);
    if ((rc = locktab_lock(t)) != 0)
        return rc;
    i = locktab_find_locked(t, &k, &fr);
    if (i >= 0) {
        if (pid != NULL)
            *pid = atomic_load_explicit(&t->slots[i].pid, memory_order_relaxed);
        if (txn != NULL)
            *txn = atomic_load_explicit(&t->slots[i].txn, memory_order_relaxed);
    }
    locktab_unlock(t);
    return i >= 0;
}

void
bfdb_locktab_stats(bfdb_locktab *t, struct bfdb_locktab_stats *st)
{
    uint32_t held = 0;

    memset(st, 0, sizeof(*st));
    if (t == NULL)
        return;
    for (uint32_t i = 0; i < t->hdr.nslots; i++)
        if (state_kind(atomic_load_explicit(&t->slots[i].state,
                                            memory_order_relaxed)) ==
            KIND_HELD)
            held++;
    st->slots = t->hdr.nslots;
    st->held = held;
    st->acquired = atomic_load_explicit(&t->hdr.acquired,
                                        memory_order_relaxed);
    st->waits = atomic_load_explicit(&t->hdr.waits, memory_order_relaxed);
    st->timeouts = atomic_load_explicit(&t->hdr.timeouts,
                                        memory_order_relaxed);
}

void
bfdb_locktab_foreach(bfdb_locktab *t,
                     void (*fn)(void *arg, const char *name, size_t len,
                                pid_t pid, uint64_t txn),
                     void *arg)
{
    struct locktab_view v;

    if (t == NULL || fn == NULL)
        return;
    for (uint32_t i = 0; i < t->hdr.nslots; i++)
        if (locktab_read_slot(t, i, &v))
            fn(arg, v.shown, (size_t)v.len, v.pid, v.txn);
}

int
bfdb_locktab_test_lock_mutex(bfdb_locktab *t)
{
    if (t == NULL)
        return BFDB_EINVAL;
    return locktab_lock(t);
}
