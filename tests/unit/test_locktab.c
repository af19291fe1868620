/*
 * test_locktab.c - the shared-memory lock table (src/shm/locktab.c):
 * owners, waiting and timeouts, a full table and tombstones, a dead
 * process's locks (release_pid and its ABA guard), a dead mutex owner,
 * mutual exclusion between processes
 *
 * Criterion forks every test and may run them in parallel: each test maps
 * its own anonymous MAP_SHARED memory (shared with the children it forks,
 * private to the test).  Children never assert: they report through their
 * exit status or the shared memory, and every wait for them is bounded.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"
#include "shm/locktab.h"
#include "../helpers/helpers.h"

TestSuite(locktab, .timeout = 30.);

/* ---- helpers ----------------------------------------------------------- */

/* what children report to the test, beside the table */
struct shared {
    volatile int rc;
    volatile int64_t elapsed_ms;
    volatile long counter;
    volatile int failures;
    volatile int stop;
};

static void *g_mem;
static size_t g_size;

/* new_table - a fresh table of nslots in this test's own shared mapping;
 * *sh (if not NULL) points to zeroed shared scratch beside it */
static bfdb_locktab *
new_table(uint32_t nslots, struct shared **sh)
{
    size_t tsize = bfdb_locktab_shm_size(nslots);
    bfdb_locktab *t;

    cr_assert_gt(tsize, 0);
    tsize = (tsize + 63) / 64 * 64;
    g_size = tsize + sizeof(struct shared);
    g_mem = mmap(NULL, g_size, PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(g_mem, MAP_FAILED, "mmap: %s", strerror(errno));
    t = bfdb_locktab_shm_init(g_mem, nslots);
    cr_assert_not_null(t);
    if (sh != NULL)
        *sh = (struct shared *)((char *)g_mem + tsize);
    return t;
}

static int64_t
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

/* wait_child - reap pid within timeout_ms, else SIGKILL it and fail;
 * returns its exit status (128 + signal if killed by one) */
static int
wait_child(pid_t pid, int timeout_ms)
{
    int64_t end = now_ms() + timeout_ms;
    int status;

    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);

        if (r == pid)
            break;
        cr_assert_eq(r, 0, "waitpid: %s", strerror(errno));
        if (now_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            cr_assert_fail("child %d did not finish within %d ms", (int)pid,
                           timeout_ms);
        }
        sleep_ms(2);
    }
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

/* fork_child - fork; the child gets an alarm so it never outlives a
 * broken test for long */
static pid_t
fork_child(void)
{
    pid_t pid = fork();

    cr_assert_neq(pid, -1, "fork: %s", strerror(errno));
    if (pid == 0)
        alarm(25);
    return pid;
}

/* read_byte - one byte from fd within timeout_ms, or fail */
static void
read_byte(int fd, int timeout_ms)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    char c;

    cr_assert_eq(poll(&p, 1, timeout_ms), 1, "child did not report in time");
    cr_assert_eq(read(fd, &c, 1), 1, "child closed the pipe");
}

/* wait_for_waiter - until some acquisition is waiting (stats.waits > seen) */
static void
wait_for_waiter(bfdb_locktab *t, uint64_t seen)
{
    struct bfdb_locktab_stats st;
    int64_t end = now_ms() + 10000;

    for (;;) {
        bfdb_locktab_stats(t, &st);
        if (st.waits > seen)
            return;
        cr_assert_lt(now_ms(), end, "no waiter showed up");
        sleep_ms(1);
    }
}

#define ACQ(t, name, pid, txn, ms)                                            \
    bfdb_locktab_acquire((t), (name), strlen(name), (pid), (txn), (ms),      \
                         NULL, NULL)
#define REL(t, name, pid, txn)                                                \
    bfdb_locktab_release((t), (name), strlen(name), (pid), (txn))

static int
holder_of(bfdb_locktab *t, const char *name, pid_t *pid, uint64_t *txn)
{
    return bfdb_locktab_holder(t, name, strlen(name), pid, txn);
}

static uint32_t
held_count(bfdb_locktab *t)
{
    struct bfdb_locktab_stats st;

    bfdb_locktab_stats(t, &st);
    return st.held;
}

/* ---- formatting -------------------------------------------------------- */

Test(locktab, size_and_format_reject_bad_input)
{
    char junk[512] __attribute__((aligned(8)));
    bfdb_locktab *t = new_table(16, NULL);
    struct bfdb_locktab_stats st;

    cr_expect_eq(bfdb_locktab_shm_size(0), 0);
    cr_expect_gt(bfdb_locktab_shm_size(2), bfdb_locktab_shm_size(1));
    cr_expect_null(bfdb_locktab_shm_init(junk, 0));
    memset(junk, 0xa5, sizeof(junk));
    cr_expect_null(bfdb_locktab_at(junk), "unformatted memory is no table");
    cr_expect_eq(bfdb_locktab_at(g_mem), t);

    bfdb_locktab_stats(t, &st);
    cr_expect_eq(st.slots, 16);
    cr_expect_eq(st.held, 0);
    cr_expect_eq(st.acquired, 0);
    cr_expect_eq(st.waits, 0);
    cr_expect_eq(st.timeouts, 0);
}

Test(locktab, format_over_dirty_memory_gives_an_empty_table)
{
    bfdb_locktab *t = new_table(8, NULL);

    memset(g_mem, 0x5a, bfdb_locktab_shm_size(8));
    t = bfdb_locktab_shm_init(g_mem, 8);
    cr_assert_not_null(t);
    cr_expect_eq(held_count(t), 0);
    cr_expect_eq(ACQ(t, "a", 100, 0, 0), 0);
    cr_expect_eq(holder_of(t, "b", NULL, NULL), 0);
}

Test(locktab, bad_arguments_are_einval)
{
    bfdb_locktab *t = new_table(8, NULL);

    cr_expect_eq(ACQ(t, "a", 0, 0, 0), BFDB_EINVAL);
    cr_expect_eq(ACQ(t, "a", -1, 0, 0), BFDB_EINVAL);
    cr_expect_eq(ACQ(t, "a", 100, 0, -1), BFDB_EINVAL);
    cr_expect_eq(bfdb_locktab_acquire(t, NULL, 3, 100, 0, 0, NULL, NULL),
                 BFDB_EINVAL);
    cr_expect_eq(bfdb_locktab_release_txn(t, 0), BFDB_EINVAL);
    cr_expect_eq(bfdb_locktab_release_pid(t, 0), BFDB_EINVAL);
    cr_expect_eq(held_count(t), 0);
}

/* ---- owners ------------------------------------------------------------ */

Test(locktab, acquire_then_release_frees_the_name)
{
    bfdb_locktab *t = new_table(16, NULL);
    struct bfdb_locktab_stats st;
    pid_t p = 0;
    uint64_t x = 99;

    cr_expect_eq(holder_of(t, "kv:alpha", NULL, NULL), 0);
    cr_assert_eq(ACQ(t, "kv:alpha", 100, 0, 0), 0);
    cr_expect_eq(holder_of(t, "kv:alpha", &p, &x), 1);
    cr_expect_eq(p, 100);
    cr_expect_eq(x, 0);
    cr_expect_eq(held_count(t), 1);

    cr_assert_eq(REL(t, "kv:alpha", 100, 0), 0);
    cr_expect_eq(holder_of(t, "kv:alpha", NULL, NULL), 0);
    cr_expect_eq(REL(t, "kv:alpha", 100, 0), BFDB_ENOTFOUND,
                 "a second release finds nothing");
    cr_expect_eq(ACQ(t, "kv:alpha", 200, 0, 0), 0, "free for anyone now");

    bfdb_locktab_stats(t, &st);
    cr_expect_eq(st.acquired, 2);
    cr_expect_eq(st.held, 1);
}

Test(locktab, same_owner_reacquires_at_once_and_one_release_frees)
{
    bfdb_locktab *t = new_table(16, NULL);
    struct bfdb_locktab_stats st;

    cr_assert_eq(ACQ(t, "op", 100, 0, 0), 0);
    cr_expect_eq(ACQ(t, "op", 100, 0, 0), 0, "same pid, txn 0");
    cr_assert_eq(ACQ(t, "tx", 100, 7, 0), 0);
    cr_expect_eq(ACQ(t, "tx", 300, 7, 0), 0, "same txn from another pid");
    bfdb_locktab_stats(t, &st);
    cr_expect_eq(st.acquired, 2, "re-takes are not counted");
    cr_expect_eq(st.held, 2);

    cr_expect_eq(REL(t, "op", 100, 0), 0);
    cr_expect_eq(holder_of(t, "op", NULL, NULL), 0, "one release frees it");
    cr_expect_eq(REL(t, "tx", 100, 7), 0);
    cr_expect_eq(holder_of(t, "tx", NULL, NULL), 0);
}

Test(locktab, other_owner_gets_busy_and_the_holder)
{
    bfdb_locktab *t = new_table(16, NULL);
    struct bfdb_locktab_stats st;
    pid_t p = 0;
    uint64_t x = 0;

    cr_assert_eq(ACQ(t, "op", 100, 0, 0), 0);
    cr_expect_eq(bfdb_locktab_acquire(t, "op", 2, 200, 0, 0, &p, &x),
                 BFDB_EBUSY, "another pid");
    cr_expect_eq(p, 100);
    cr_expect_eq(x, 0);
    cr_expect_eq(bfdb_locktab_acquire(t, "op", 2, 100, 5, 0, &p, &x),
                 BFDB_EBUSY, "same pid acting for a txn is another owner");

    cr_assert_eq(ACQ(t, "tx", 100, 42, 0), 0);
    cr_expect_eq(bfdb_locktab_acquire(t, "tx", 2, 100, 0, 0, &p, &x),
                 BFDB_EBUSY, "the taker's pid without the txn");
    cr_expect_eq(p, 100);
    cr_expect_eq(x, 42);
    cr_expect_eq(bfdb_locktab_acquire(t, "tx", 2, 100, 43, 0, NULL, NULL),
                 BFDB_EBUSY, "another txn");

    bfdb_locktab_stats(t, &st);
    cr_expect_eq(st.timeouts, 4);
    cr_expect_eq(st.waits, 0, "timeout 0 never waits");
}

Test(locktab, release_by_non_owner_is_not_found)
{
    bfdb_locktab *t = new_table(16, NULL);

    cr_assert_eq(ACQ(t, "op", 100, 0, 0), 0);
    cr_assert_eq(ACQ(t, "tx", 100, 9, 0), 0);
    cr_expect_eq(REL(t, "op", 200, 0), BFDB_ENOTFOUND, "another pid");
    cr_expect_eq(REL(t, "op", 100, 9), BFDB_ENOTFOUND, "a txn, not the op");
    cr_expect_eq(REL(t, "tx", 100, 0), BFDB_ENOTFOUND, "the pid, not the txn");
    cr_expect_eq(REL(t, "tx", 100, 8), BFDB_ENOTFOUND, "another txn");
    cr_expect_eq(REL(t, "never", 100, 0), BFDB_ENOTFOUND, "never taken");
    cr_expect_eq(held_count(t), 2, "nothing was released");
}

Test(locktab, txn_lock_is_released_by_another_pid_of_the_txn)
{
    bfdb_locktab *t = new_table(16, NULL);

    cr_assert_eq(ACQ(t, "tx", 100, 11, 0), 0);
    cr_expect_eq(REL(t, "tx", 555, 11), 0);
    cr_expect_eq(holder_of(t, "tx", NULL, NULL), 0);
}

Test(locktab, release_txn_frees_all_locks_of_the_txn_only)
{
    bfdb_locktab *t = new_table(32, NULL);
    char name[32];

    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof(name), "t1-%d", i);
        cr_assert_eq(ACQ(t, name, 100 + i, 1, 0), 0);
        snprintf(name, sizeof(name), "t2-%d", i);
        cr_assert_eq(ACQ(t, name, 100 + i, 2, 0), 0);
    }
    cr_assert_eq(ACQ(t, "op", 100, 0, 0), 0);

    cr_expect_eq(bfdb_locktab_release_txn(t, 1), 5);
    cr_expect_eq(bfdb_locktab_release_txn(t, 1), 0, "nothing left");
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof(name), "t1-%d", i);
        cr_expect_eq(holder_of(t, name, NULL, NULL), 0, "%s", name);
        snprintf(name, sizeof(name), "t2-%d", i);
        cr_expect_eq(holder_of(t, name, NULL, NULL), 1, "%s", name);
    }
    cr_expect_eq(holder_of(t, "op", NULL, NULL), 1);
    cr_expect_eq(held_count(t), 6);
}

/* ---- names ------------------------------------------------------------- */

struct seen {
    int n;
    char name[BFDB_LOCKTAB_NAME_SHOWN + 1];
    size_t len;
    pid_t pid;
    uint64_t txn;
};

static void
collect(void *arg, const char *name, size_t len, pid_t pid, uint64_t txn)
{
    struct seen *s = arg;

    if (s->n++ == 0) {
        snprintf(s->name, sizeof(s->name), "%s", name);
        s->len = len;
        s->pid = pid;
        s->txn = txn;
    }
}

Test(locktab, long_names_differ_past_the_shown_prefix)
{
    bfdb_locktab *t = new_table(16, NULL);
    char a[100], b[100];
    struct seen s = { 0 };

    memset(a, 'x', sizeof(a));
    memcpy(b, a, sizeof(b));
    b[99] = 'y';
    cr_assert_eq(bfdb_locktab_acquire(t, a, sizeof(a), 100, 0, 0, NULL, NULL),
                 0);
    cr_expect_eq(bfdb_locktab_acquire(t, b, sizeof(b), 200, 0, 0, NULL, NULL),
                 0, "same first bytes, another lock");
    cr_expect_eq(bfdb_locktab_acquire(t, a, 50, 200, 0, 0, NULL, NULL), 0,
                 "a prefix is another lock");
    cr_expect_eq(held_count(t), 3);

    cr_assert_eq(bfdb_locktab_release(t, b, sizeof(b), 200, 0), 0);
    cr_assert_eq(bfdb_locktab_release(t, a, 50, 200, 0), 0);
    bfdb_locktab_foreach(t, collect, &s);
    cr_expect_eq(s.n, 1);
    cr_expect_eq(s.len, 100);
    cr_expect_eq(strlen(s.name), BFDB_LOCKTAB_NAME_SHOWN);
    cr_expect_eq(memcmp(s.name, a, BFDB_LOCKTAB_NAME_SHOWN), 0);
    cr_expect_eq(s.pid, 100);
    cr_expect_eq(s.txn, 0);
}

Test(locktab, foreach_lists_held_locks_with_short_names_whole)
{
    bfdb_locktab *t = new_table(16, NULL);
    struct seen s = { 0 };

    cr_assert_eq(ACQ(t, "blob:42", 123, 77, 0), 0);
    cr_assert_eq(ACQ(t, "gone", 123, 0, 0), 0);
    cr_assert_eq(REL(t, "gone", 123, 0), 0);
    bfdb_locktab_foreach(t, collect, &s);
    cr_expect_eq(s.n, 1);
    cr_expect_str_eq(s.name, "blob:42");
    cr_expect_eq(s.len, 7);
    cr_expect_eq(s.pid, 123);
    cr_expect_eq(s.txn, 77);
}

Test(locktab, names_with_nul_bytes_and_the_empty_name_work)
{
    bfdb_locktab *t = new_table(16, NULL);
    const char a[] = { 'k', 0, 'x' };
    const char b[] = { 'k', 0, 'y' };

    cr_expect_eq(bfdb_locktab_acquire(t, a, 3, 100, 0, 0, NULL, NULL), 0);
    cr_expect_eq(bfdb_locktab_acquire(t, b, 3, 200, 0, 0, NULL, NULL), 0);
    cr_expect_eq(bfdb_locktab_acquire(t, "", 0, 100, 0, 0, NULL, NULL), 0);
    cr_expect_eq(bfdb_locktab_acquire(t, NULL, 0, 200, 0, 0, NULL, NULL),
                 BFDB_EBUSY, "NULL with length 0 is the empty name");
    cr_expect_eq(held_count(t), 3);
}

/* ---- waiting ----------------------------------------------------------- */

Test(locktab, waiter_in_child_is_woken_by_release)
{
    struct shared *sh;
    bfdb_locktab *t = new_table(16, &sh);
    pid_t child;

    cr_assert_eq(ACQ(t, "kv:k", getpid(), 0, 0), 0);
    child = fork_child();
    if (child == 0) {
        int64_t start = now_ms();
        pid_t p = 0;
        int rc = ACQ(t, "kv:k", getpid(), 0, 10000);

        sh->elapsed_ms = now_ms() - start;
        sh->rc = rc;
        if (rc != 0 || holder_of(t, "kv:k", &p, NULL) != 1 || p != getpid())
            _exit(1);
        _exit(REL(t, "kv:k", getpid(), 0) == 0 ? 0 : 2);
    }
    /* step 1: the child is waiting; step 2: a while later, release */
    wait_for_waiter(t, 0);
    sleep_ms(100);
    cr_assert_eq(REL(t, "kv:k", getpid(), 0), 0);
    cr_assert_eq(wait_child(child, 15000), 0, "child rc %d", sh->rc);
    cr_expect_geq(sh->elapsed_ms, 90, "the child waited for the release");
    cr_expect_lt(sh->elapsed_ms, 5000, "the release woke the child (%" PRId64
                 " ms)", (int64_t)sh->elapsed_ms);
    cr_expect_eq(held_count(t), 0);
}

Test(locktab, timeout_is_honoured)
{
    bfdb_locktab *t = new_table(16, NULL);
    struct bfdb_locktab_stats st;
    int64_t start, took;
    pid_t p = 0;
    uint64_t x = 1;
    int rc;

    cr_assert_eq(ACQ(t, "held", 100, 0, 0), 0);
    start = now_ms();
    rc = bfdb_locktab_acquire(t, "held", 4, 200, 0, 200, &p, &x);
    took = now_ms() - start;
    cr_expect_eq(rc, BFDB_EBUSY);
    cr_expect_eq(p, 100);
    cr_expect_eq(x, 0);
    cr_expect_geq(took, 150, "gave up after %" PRId64 " ms", took);
    cr_expect_lt(took, 5000, "gave up after %" PRId64 " ms", took);
    bfdb_locktab_stats(t, &st);
    cr_expect_eq(st.waits, 1);
    cr_expect_eq(st.timeouts, 1);
}

Test(locktab, unrelated_releases_do_not_end_a_wait_early)
{
    struct shared *sh;
    bfdb_locktab *t = new_table(16, &sh);
    pid_t child;
    int64_t start, took;
    int rc;

    cr_assert_eq(ACQ(t, "held", 100, 0, 0), 0);
    child = fork_child();
    if (child == 0) {
        /* releases of other names wake the waiter, which looks again */
        for (int i = 0; i < 200 && !sh->stop; i++) {
            ACQ(t, "other", getpid(), 0, 1000);
            REL(t, "other", getpid(), 0);
            sleep_ms(1);
        }
        _exit(0);
    }
    start = now_ms();
    rc = ACQ(t, "held", 200, 0, 300);
    took = now_ms() - start;
    sh->stop = 1;
    cr_expect_eq(wait_child(child, 15000), 0);
    cr_expect_eq(rc, BFDB_EBUSY);
    cr_expect_geq(took, 250, "gave up after %" PRId64 " ms", took);
    cr_expect_lt(took, 5000, "gave up after %" PRId64 " ms", took);
}

/* ---- a full table, tombstones ------------------------------------------ */

Test(locktab, full_table_is_efull_until_a_release)
{
    bfdb_locktab *t = new_table(8, NULL);
    char name[32];

    for (int i = 0; i < 8; i++) {
        snprintf(name, sizeof(name), "n%d", i);
        cr_assert_eq(ACQ(t, name, 100, 0, 0), 0, "%s", name);
    }
    cr_expect_eq(ACQ(t, "extra", 100, 0, 0), BFDB_EFULL);
    cr_expect_eq(ACQ(t, "extra", 100, 0, 1000), BFDB_EFULL,
                 "a full table does not wait");
    cr_expect_eq(ACQ(t, "n3", 100, 0, 0), 0, "held names still re-take");
    cr_expect_eq(ACQ(t, "n3", 200, 0, 0), BFDB_EBUSY);

    cr_assert_eq(REL(t, "n5", 100, 0), 0);
    cr_expect_eq(ACQ(t, "extra", 100, 0, 0), 0);
    cr_expect_eq(ACQ(t, "extra2", 100, 0, 0), BFDB_EFULL);
}

Test(locktab, lookups_find_names_past_tombstones)
{
    bfdb_locktab *t = new_table(8, NULL);
    char name[32];
    pid_t p;

    /* a full table: every chain is long, whatever the hashes */
    for (int i = 0; i < 8; i++) {
        snprintf(name, sizeof(name), "n%d", i);
        cr_assert_eq(ACQ(t, name, 100 + i, 0, 0), 0);
    }
    for (int i = 0; i < 8; i += 2) {
        snprintf(name, sizeof(name), "n%d", i);
        cr_assert_eq(REL(t, name, 100 + i, 0), 0);
    }
    for (int i = 1; i < 8; i += 2) {
        snprintf(name, sizeof(name), "n%d", i);
        cr_expect_eq(holder_of(t, name, &p, NULL), 1, "%s", name);
        cr_expect_eq(p, 100 + i);
        cr_expect_eq(ACQ(t, name, 100 + i, 0, 0), 0, "re-take %s", name);
        cr_expect_eq(ACQ(t, name, 1, 0, 0), BFDB_EBUSY, "%s", name);
    }
    cr_expect_eq(held_count(t), 4, "re-takes took no slot");
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof(name), "m%d", i);
        cr_expect_eq(ACQ(t, name, 100, 0, 0), 0, "%s", name);
    }
    cr_expect_eq(ACQ(t, "m4", 100, 0, 0), BFDB_EFULL);
}

Test(locktab, many_cycles_keep_lookups_right_and_the_table_usable)
{
    enum { LIVE = 40, CYCLES = 100000, SLOTS = 64 };
    bfdb_locktab *t = new_table(SLOTS, NULL);
    unsigned live[LIVE];
    char name[32];
    unsigned next = 0;

    for (int i = 0; i < LIVE; i++) {
        live[i] = next++;
        snprintf(name, sizeof(name), "name-%u", live[i]);
        cr_assert_eq(ACQ(t, name, 100, 0, 0), 0);
    }
    for (int c = 0; c < CYCLES; c++) {
        int k = (int)((unsigned)c * 2654435761u % LIVE);
        int rc;

        snprintf(name, sizeof(name), "name-%u", live[k]);
        rc = REL(t, name, 100, 0);
        if (rc != 0)
            cr_assert_fail("cycle %d: release %s: %d", c, name, rc);
        if (c % 997 == 0 && holder_of(t, name, NULL, NULL) != 0)
            cr_assert_fail("cycle %d: %s still held", c, name);
        live[k] = next++;
        snprintf(name, sizeof(name), "name-%u", live[k]);
        rc = ACQ(t, name, 100, 0, 0);
        if (rc != 0)
            cr_assert_fail("cycle %d: acquire %s: %d", c, name, rc);
        if (c % 1009 == 0) {
            for (int i = 0; i < LIVE; i++) {
                snprintf(name, sizeof(name), "name-%u", live[i]);
                if (ACQ(t, name, 200, 0, 0) != BFDB_EBUSY)
                    cr_assert_fail("cycle %d: %s not found", c, name);
            }
        }
    }
    cr_expect_eq(held_count(t), LIVE);
    /* the tombstones left leave room for every free slot */
    for (int i = 0; i < SLOTS - LIVE; i++) {
        snprintf(name, sizeof(name), "fill-%d", i);
        cr_expect_eq(ACQ(t, name, 100, 0, 0), 0, "%s", name);
    }
    cr_expect_eq(ACQ(t, "one-too-many", 100, 0, 0), BFDB_EFULL);
}

/* ---- a dead process's locks -------------------------------------------- */

Test(locktab, release_pid_frees_a_killed_child_locks_but_not_its_txn_locks)
{
    bfdb_locktab *t = new_table(64, NULL);
    char name[32];
    int fds[2];
    pid_t child, p;
    uint64_t x;

    cr_assert_eq(pipe(fds), 0);
    child = fork_child();
    if (child == 0) {
        close(fds[0]);
        for (int i = 0; i < 10; i++) {
            snprintf(name, sizeof(name), "kv:%d", i);
            if (ACQ(t, name, getpid(), 0, 0) != 0)
                _exit(1);
        }
        if (ACQ(t, "txn-lock", getpid(), 77, 0) != 0)
            _exit(1);
        if (write(fds[1], "x", 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    close(fds[1]);
    read_byte(fds[0], 10000);
    close(fds[0]);
    for (int i = 0; i < 10; i++) {
        snprintf(name, sizeof(name), "kv:%d", i);
        cr_assert_eq(holder_of(t, name, &p, &x), 1, "%s", name);
        cr_expect_eq(p, child);
        cr_expect_eq(x, 0);
    }
    kill(child, SIGKILL);
    cr_expect_eq(wait_child(child, 10000), 128 + SIGKILL);

    cr_expect_eq(bfdb_locktab_release_pid(t, child), 10);
    cr_expect_eq(bfdb_locktab_release_pid(t, child), 0, "nothing left");
    for (int i = 0; i < 10; i++) {
        snprintf(name, sizeof(name), "kv:%d", i);
        cr_expect_eq(ACQ(t, name, getpid(), 0, 0), 0, "%s", name);
    }
    cr_expect_eq(holder_of(t, "txn-lock", &p, &x), 1);
    cr_expect_eq(p, child);
    cr_expect_eq(x, 77);
    cr_expect_eq(ACQ(t, "txn-lock", getpid(), 0, 0), BFDB_EBUSY);
    cr_expect_eq(bfdb_locktab_release_txn(t, 77), 1);
    cr_expect_eq(ACQ(t, "txn-lock", getpid(), 0, 0), 0);
}

Test(locktab, release_pid_wakes_a_waiter)
{
    struct shared *sh;
    bfdb_locktab *t = new_table(16, &sh);
    const pid_t dead = 4000000; /* a stand-in owner, never signalled */
    pid_t child;

    cr_assert_eq(ACQ(t, "kv:k", dead, 0, 0), 0);
    child = fork_child();
    if (child == 0) {
        int64_t start = now_ms();
        int rc = ACQ(t, "kv:k", getpid(), 0, 10000);

        sh->elapsed_ms = now_ms() - start;
        _exit(rc == 0 ? 0 : 1);
    }
    wait_for_waiter(t, 0);
    cr_expect_eq(bfdb_locktab_release_pid(t, dead), 1);
    cr_assert_eq(wait_child(child, 15000), 0);
    cr_expect_lt(sh->elapsed_ms, 5000, "woken after %" PRId64 " ms",
                 (int64_t)sh->elapsed_ms);
}

Test(locktab, release_pid_spares_a_new_owner_of_the_slot)
{
    bfdb_locktab *t = new_table(16, NULL);
    pid_t p;

    /*
     * The ABA case in one process: pid 100's lock is released and the same
     * name (so the same home slot) is taken by pid 200 before the master's
     * release_pid(100) looks.  The new owner keeps it.
     */
    cr_assert_eq(ACQ(t, "kv:k", 100, 0, 0), 0);
    cr_assert_eq(REL(t, "kv:k", 100, 0), 0);
    cr_assert_eq(ACQ(t, "kv:k", 200, 0, 0), 0);
    cr_expect_eq(bfdb_locktab_release_pid(t, 100), 0);
    cr_expect_eq(holder_of(t, "kv:k", &p, NULL), 1);
    cr_expect_eq(p, 200);
    cr_expect_eq(REL(t, "kv:k", 200, 0), 0);
}

Test(locktab, release_pid_racing_slot_reuse_never_steals_a_lock)
{
    struct shared *sh;
    bfdb_locktab *t = new_table(4, &sh);
    const pid_t pa = 4000001, pb = 4000002; /* stand-in owners */
    pid_t kids[2];
    int64_t end = now_ms() + 20000;
    int done = 0;
    long calls = 0, released = 0;

    /*
     * Child A takes and drops the name as pa, child B as pb, so the one
     * slot keeps being released and re-taken, while this process calls
     * release_pid(pa) in a loop: its compare-and-swap may see pa's slot
     * re-taken by pb between its read and its swap, and must then fail.
     * B checks it still holds the lock after it took it; A may lose its
     * lock to release_pid, which is what release_pid is for.
     */
    for (int k = 0; k < 2; k++) {
        kids[k] = fork_child();
        if (kids[k] == 0) {
            pid_t me = k == 0 ? pa : pb;

            for (int i = 0; i < 10000; i++) {
                pid_t p = 0;

                if (ACQ(t, "kv:k", me, 0, 10000) != 0)
                    _exit(1);
                /* hold it a moment: release_pid finds pa's lock, and a
                 * theft of pb's shows */
                sched_yield();
                if (k == 1 && (holder_of(t, "kv:k", &p, NULL) != 1 ||
                               p != pb))
                    sh->failures++;
                if (REL(t, "kv:k", me, 0) != 0 && k == 1)
                    sh->failures++;
            }
            _exit(0);
        }
    }
    while (done < 2) {
        calls++;
        released += bfdb_locktab_release_pid(t, pa);
        for (int k = 0; k < 2; k++) {
            int status;

            if (kids[k] > 0 && waitpid(kids[k], &status, WNOHANG) == kids[k]) {
                cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                          "child %d failed", k);
                kids[k] = -1;
                done++;
            }
        }
        if (now_ms() > end) {
            for (int k = 0; k < 2; k++)
                if (kids[k] > 0)
                    wait_child(kids[k], 0);
        }
        if (calls % 64 == 0)
            sched_yield();
    }
    cr_expect_eq(sh->failures, 0, "pb lost its lock %d times", sh->failures);
    cr_expect_gt(released, 0, "release_pid never found pa's lock in %ld calls",
                 calls);
}

/* ---- a dead mutex owner ------------------------------------------------ */

Test(locktab, dead_mutex_owner_does_not_block_the_next_acquire)
{
    bfdb_locktab *t = new_table(16, NULL);
    int fds[2];
    pid_t child, p;
    int64_t start;

    cr_assert_eq(ACQ(t, "before", getpid(), 0, 0), 0);
    cr_assert_eq(pipe(fds), 0);
    child = fork_child();
    if (child == 0) {
        close(fds[0]);
        if (bfdb_locktab_test_lock_mutex(t) != 0)
            _exit(1);
        if (write(fds[1], "x", 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    close(fds[1]);
    read_byte(fds[0], 10000);
    close(fds[0]);
    kill(child, SIGKILL);
    cr_expect_eq(wait_child(child, 10000), 128 + SIGKILL);

    start = now_ms();
    cr_expect_eq(ACQ(t, "after", getpid(), 0, 2000), 0);
    cr_expect_lt(now_ms() - start, 1000, "did not wait for the dead owner");
    cr_expect_eq(holder_of(t, "before", &p, NULL), 1);
    cr_expect_eq(p, getpid());
    cr_expect_eq(REL(t, "before", getpid(), 0), 0);
    cr_expect_eq(REL(t, "after", getpid(), 0), 0);
    cr_expect_eq(held_count(t), 0);
}

/* ---- mutual exclusion -------------------------------------------------- */

Test(locktab, processes_exclude_each_other_on_one_name)
{
    enum { KIDS = 4, ROUNDS = 2000 };
    struct shared *sh;
    bfdb_locktab *t = new_table(16, &sh);
    pid_t kids[KIDS];

    for (int k = 0; k < KIDS; k++) {
        kids[k] = fork_child();
        if (kids[k] == 0) {
            for (int i = 0; i < ROUNDS; i++) {
                long v;

                if (ACQ(t, "counter", getpid(), 0, 10000) != 0)
                    _exit(1);
                v = sh->counter;
                if (i % 16 == 0)
                    sched_yield(); /* widen the window for a lost update */
                sh->counter = v + 1;
                if (REL(t, "counter", getpid(), 0) != 0)
                    _exit(2);
            }
            _exit(0);
        }
    }
    for (int k = 0; k < KIDS; k++)
        cr_expect_eq(wait_child(kids[k], 25000), 0, "child %d", k);
    cr_expect_eq(sh->counter, KIDS * ROUNDS);
    cr_expect_eq(held_count(t), 0);
}
