/*
 * txntab.c - the transaction table (see txntab.h and src/shm/README)
 *
 * Slot state changes are compare-and-swaps on the state word, so the
 * master (expiry, dead workers) and the workers never lose each other's
 * transitions.  Ids come from libuuid's random generator: unguessable.
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include "shm/txntab.h"

#define TXNTAB_MAGIC 0x42545801u /* "BTX", layout 1 */

struct bfdb_txntab {
    uint32_t magic;
    uint32_t nslots;
    uint64_t next_num; /* atomic */
    uint64_t pad[6];
    struct bfdb_txn_slot slots[];
};

size_t
bfdb_txntab_shm_size(uint32_t nslots)
{
    return sizeof(struct bfdb_txntab) +
           (size_t)nslots * sizeof(struct bfdb_txn_slot);
}

bfdb_txntab *
bfdb_txntab_shm_init(void *mem, uint32_t nslots, uint64_t first_num)
{
    struct bfdb_txntab *t = mem;

    memset(t, 0, bfdb_txntab_shm_size(nslots));
    t->nslots = nslots;
    t->next_num = first_num ? first_num : 1;
    __atomic_store_n(&t->magic, TXNTAB_MAGIC, __ATOMIC_SEQ_CST);
    return t;
}

bfdb_txntab *
bfdb_txntab_at(void *mem)
{
    struct bfdb_txntab *t = mem;
    return __atomic_load_n(&t->magic, __ATOMIC_SEQ_CST) == TXNTAB_MAGIC ? t
                                                                       : NULL;
}

uint32_t
bfdb_txntab_slots(bfdb_txntab *t)
{
    return t->nslots;
}

struct bfdb_txn_slot *
bfdb_txntab_slot(bfdb_txntab *t, uint32_t i)
{
    return i < t->nslots ? &t->slots[i] : NULL;
}

uint64_t
bfdb_txn_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int
cas_state(struct bfdb_txn_slot *s, uint32_t from, uint32_t to)
{
    return __atomic_compare_exchange_n(&s->state, &from, to, 0,
                                       __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

static void
fill(bfdb_txntab *t, struct bfdb_txn_slot *s, pid_t owner, int read_only,
     uint32_t timeout_ms)
{
    uuid_t u;

    uuid_generate_random(u);
    memcpy(s->id, u, 16);
    s->num = __atomic_fetch_add(&t->next_num, 1, __ATOMIC_SEQ_CST);
    s->owner_pid = (int32_t)owner;
    __atomic_store_n(&s->busy_pid, 0, __ATOMIC_SEQ_CST);
    s->deadline_ms = bfdb_txn_now_ms() + timeout_ms;
    s->ended_ms = 0;
    s->read_only = read_only ? 1 : 0;
    __atomic_store_n(&s->blob_ops, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&s->kv_ops, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&s->cleanup, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&s->committed, 0, __ATOMIC_SEQ_CST);
    s->outcome = BFDB_TXN_OUT_NONE;
}

struct bfdb_txn_slot *
bfdb_txntab_begin(bfdb_txntab *t, pid_t owner, int read_only,
                  uint32_t timeout_ms)
{
    /* a FREE slot; claimed through a private state so that nobody sees
     * it ACTIVE before its fields are written */
    for (uint32_t i = 0; i < t->nslots; i++) {
        struct bfdb_txn_slot *s = &t->slots[i];
        if (cas_state(s, BFDB_TXN_FREE, BFDB_TXN_COMMITTING)) {
            fill(t, s, owner, read_only, timeout_ms);
            __atomic_store_n(&s->state, BFDB_TXN_ACTIVE, __ATOMIC_SEQ_CST);
            return s;
        }
    }
    /* none free: reuse the ENDED slot that ended first */
    for (int tries = 0; tries < 8; tries++) {
        struct bfdb_txn_slot *old = NULL;
        for (uint32_t i = 0; i < t->nslots; i++) {
            struct bfdb_txn_slot *s = &t->slots[i];
            if (__atomic_load_n(&s->state, __ATOMIC_SEQ_CST) ==
                    BFDB_TXN_ENDED &&
                (old == NULL || s->ended_ms < old->ended_ms))
                old = s;
        }
        if (old == NULL)
            return NULL;
        if (cas_state(old, BFDB_TXN_ENDED, BFDB_TXN_COMMITTING)) {
            fill(t, old, owner, read_only, timeout_ms);
            __atomic_store_n(&old->state, BFDB_TXN_ACTIVE, __ATOMIC_SEQ_CST);
            return old;
        }
    }
    return NULL;
}

struct bfdb_txn_slot *
bfdb_txntab_find(bfdb_txntab *t, const uint8_t id[16])
{
    for (uint32_t i = 0; i < t->nslots; i++) {
        struct bfdb_txn_slot *s = &t->slots[i];
        if (__atomic_load_n(&s->state, __ATOMIC_SEQ_CST) != BFDB_TXN_FREE &&
            memcmp(s->id, id, 16) == 0)
            return s;
    }
    return NULL;
}

int
bfdb_txntab_enter(struct bfdb_txn_slot *s, pid_t pid, int wait_ms)
{
    uint64_t until = bfdb_txn_now_ms() + (uint64_t)(wait_ms > 0 ? wait_ms : 0);

    for (;;) {
        int32_t zero = 0;
        if (__atomic_compare_exchange_n(&s->busy_pid, &zero, (int32_t)pid, 0,
                                        __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
            return 0;
        if (zero == (int32_t)pid)
            return 0; /* already ours */
        if (bfdb_txn_now_ms() >= until)
            return -1;
        /* another worker runs an op of this transaction: operations are
         * short, so a short sleep, bounded by wait_ms */
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

void
bfdb_txntab_leave(struct bfdb_txn_slot *s, pid_t pid)
{
    int32_t me = (int32_t)pid;
    __atomic_compare_exchange_n(&s->busy_pid, &me, 0, 0, __ATOMIC_SEQ_CST,
                                __ATOMIC_SEQ_CST);
}

void
bfdb_txntab_end(struct bfdb_txn_slot *s, int outcome)
{
    s->outcome = (uint32_t)outcome;
    s->ended_ms = bfdb_txn_now_ms();
    __atomic_store_n(&s->state, BFDB_TXN_ENDED, __ATOMIC_SEQ_CST);
}

int
bfdb_txntab_committed(bfdb_txntab *t, uint64_t num)
{
    for (uint32_t i = 0; i < t->nslots; i++) {
        struct bfdb_txn_slot *s = &t->slots[i];
        if (s->num == num &&
            __atomic_load_n(&s->state, __ATOMIC_SEQ_CST) != BFDB_TXN_FREE)
            return __atomic_load_n(&s->committed, __ATOMIC_SEQ_CST) != 0;
    }
    return 0;
}

int
bfdb_txn_id_parse(const void *text, size_t len, uint8_t id[16])
{
    char buf[37];
    uuid_t u;

    if (len != 36)
        return -1;
    memcpy(buf, text, 36);
    buf[36] = '\0';
    if (uuid_parse(buf, u) != 0)
        return -1;
    memcpy(id, u, 16);
    return 0;
}

void
bfdb_txn_id_format(const uint8_t id[16], char out[37])
{
    uuid_unparse_lower(id, out);
}

const char *
bfdb_txn_outcome_text(int outcome)
{
    switch (outcome) {
    case BFDB_TXN_OUT_COMMITTED: return "already committed";
    case BFDB_TXN_OUT_ROLLED_BACK: return "already rolled back";
    case BFDB_TXN_OUT_EXPIRED: return "expired (rolled back after its "
                                      "timeout)";
    case BFDB_TXN_OUT_WORKER_DIED: return "rolled back (the worker running "
                                          "it died)";
    default: return "ended";
    }
}

int
bfdb_txntab_expire(bfdb_txntab *t, uint64_t now_ms, uint64_t *nums, int max)
{
    int n = 0;

    for (uint32_t i = 0; i < t->nslots; i++) {
        struct bfdb_txn_slot *s = &t->slots[i];
        if (__atomic_load_n(&s->state, __ATOMIC_SEQ_CST) != BFDB_TXN_ACTIVE ||
            s->deadline_ms > now_ms ||
            __atomic_load_n(&s->busy_pid, __ATOMIC_SEQ_CST) != 0)
            continue;
        s->outcome = BFDB_TXN_OUT_EXPIRED;
        if (cas_state(s, BFDB_TXN_ACTIVE, BFDB_TXN_ABORTED) && n < max)
            nums[n++] = s->num;
    }
    return n;
}

int
bfdb_txntab_worker_died(bfdb_txntab *t, pid_t pid, uint64_t *nums, int max)
{
    int n = 0;

    for (uint32_t i = 0; i < t->nslots; i++) {
        struct bfdb_txn_slot *s = &t->slots[i];
        uint32_t st = __atomic_load_n(&s->state, __ATOMIC_SEQ_CST);
        int32_t busy = __atomic_load_n(&s->busy_pid, __ATOMIC_SEQ_CST);
        if (st == BFDB_TXN_ACTIVE && (s->owner_pid == pid || busy == pid)) {
            s->outcome = BFDB_TXN_OUT_WORKER_DIED;
            if (cas_state(s, BFDB_TXN_ACTIVE, BFDB_TXN_ABORTED) && n < max)
                nums[n++] = s->num;
            __atomic_compare_exchange_n(&s->busy_pid, &busy, 0, 0,
                                        __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
        } else if (st == BFDB_TXN_COMMITTING && busy == pid) {
            if (cas_state(s, BFDB_TXN_COMMITTING, BFDB_TXN_RECOVER))
                __atomic_compare_exchange_n(&s->busy_pid, &busy, 0, 0,
                                            __ATOMIC_SEQ_CST,
                                            __ATOMIC_SEQ_CST);
        }
    }
    return n;
}
