/*
 * test_cache.c - the shared region (src/shm/shm.c) and the LMDB key cache
 * (src/shm/cache.c): lookups and fills, the coherence protocol step by
 * step (a write or raw SQL racing a fill, two writers on one stripe), a
 * writer killed mid-write and reaped by the master, the bounded size and
 * CLOCK eviction, processes writing and reading at once, attach, and the
 * LMDB reader check
 *
 * Criterion forks every test and may run them in parallel: each test makes
 * its own directory (th_tmpdir) and region, in which the test process acts
 * as the master, and removes both in .fini.  LMDB's rule (lmdb.h,
 * "Caveats"): an environment is used only in the process that opened it,
 * never across fork(), and one process must not open the same environment
 * twice.  So children open their own cache after fork, and the test
 * process opens its own only after it has forked every child that opens
 * one (bfdb_cache_reader_check opens the environment too: it is called
 * only while the test process has no cache open).  Children never assert:
 * they report through their exit status or shared memory, and every wait
 * for them is bounded.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <lmdb.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shm/cache.h"
#include "shm/locktab.h"
#include "shm/shm.h"
#include "../helpers/helpers.h"

TestSuite(cache, .timeout = 60.);

#define LOCK_SLOTS 256
#define MIB ((uint64_t)1 << 20)
#define CACHE_MIN MIB /* the smallest cache_size the configuration allows */

/* ---- fixtures ---------------------------------------------------------- */

static struct {
    char *dir;
    bfdb_shm shm;    /* the region; this process is its master */
    bfdb_cache *c;   /* this process's cache handle */
    void *scratch;   /* MAP_SHARED memory shared with the children */
    size_t scratch_size;
    char err[512];
} g;

/* setup_region - a new directory and region with the given cache size;
 * this process takes worker record 0 */
static void
setup_region(uint64_t cache_size)
{
    g.dir = th_tmpdir();
    cr_assert_not_null(g.dir, "th_tmpdir: %s", strerror(errno));
    cr_assert_eq(bfdb_shm_create(&g.shm, g.dir, LOCK_SLOTS, cache_size,
                                 g.err, sizeof(g.err)),
                 0, "%s", g.err);
    cr_assert_not_null(bfdb_shm_claim(&g.shm, 0, 0));
}

/* open_cache - this process's cache handle (only after the last fork of
 * a child that opens one) */
static void
open_cache(void)
{
    cr_assert_eq(bfdb_cache_open(&g.c, &g.shm, g.err, sizeof(g.err)), 0,
                 "%s", g.err);
    cr_assert_not_null(g.c);
}

static void
close_cache(void)
{
    bfdb_cache_close(g.c);
    g.c = NULL;
}

/* scratch - n zeroed bytes of anonymous shared memory for the children */
static void *
scratch(size_t n)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                   -1, 0);

    cr_assert_neq(p, MAP_FAILED, "mmap: %s", strerror(errno));
    g.scratch = p;
    g.scratch_size = n;
    return p;
}

static void
teardown(void)
{
    close_cache();
    if (g.shm.base != NULL)
        bfdb_shm_detach(&g.shm);
    if (g.scratch != NULL)
        munmap(g.scratch, g.scratch_size);
    g.scratch = NULL;
    if (g.dir != NULL)
        th_rmrf(g.dir);
    free(g.dir);
    g.dir = NULL;
}

/* ---- helpers ----------------------------------------------------------- */

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
        alarm(40);
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

/* child_signal / child_wait - the child's side of the pipes; any failure
 * ends the child with status 99 */
static void
child_signal(int fd)
{
    if (write(fd, "x", 1) != 1)
        _exit(99);
}

static void
child_wait(int fd)
{
    char c;

    if (read(fd, &c, 1) != 1)
        _exit(99);
}

/* result - the lookup result for key, nothing kept */
static int
result(const void *key, size_t klen)
{
    const void *v = NULL;
    size_t vl = 0;
    int r = bfdb_cache_lookup(g.c, key, klen, &v, &vl);

    bfdb_cache_lookup_done(g.c);
    return r;
}

#define RESULT(s) result((s), strlen(s))

/* hit_with - 1 if key hits with exactly the bytes val[0..vlen) */
static int
hit_with(const void *key, size_t klen, const void *val, size_t vlen)
{
    const void *v = NULL;
    size_t vl = 0;
    int r = bfdb_cache_lookup(g.c, key, klen, &v, &vl);
    int ok = r == BFDB_CACHE_HIT && vl == vlen &&
             (vlen == 0 || memcmp(v, val, vlen) == 0);

    bfdb_cache_lookup_done(g.c);
    return ok;
}

#define HIT_WITH(s, v) hit_with((s), strlen(s), (v), strlen(v))

/* fill_fresh - what a reader does after a miss: snapshot, read the source
 * of truth (here: val), fill */
static void
fill_fresh(const void *key, size_t klen, const void *val, size_t vlen)
{
    struct bfdb_cache_snap s;

    bfdb_cache_snapshot(g.c, key, klen, &s);
    bfdb_cache_fill(g.c, key, klen, &s, val, vlen);
}

#define FILL_FRESH(s, v) fill_fresh((s), strlen(s), (v), strlen(v))

/* write_key - a whole kv write: begin, (commit), end with val */
static void
write_key(const char *key, const char *val)
{
    struct bfdb_cache_write w;

    cr_assert_eq(bfdb_cache_write_begin(g.c, key, strlen(key), &w), 0);
    bfdb_cache_write_end(g.c, key, strlen(key), &w, 1, val,
                         val ? strlen(val) : 0);
}

/* key_on_stripe - a key other than key: on key's stripe if same, else on
 * another stripe */
static void
key_on_stripe(const char *key, int same, char *out, size_t cap)
{
    uint32_t s = bfdb_shm_stripe(key, strlen(key));

    for (int i = 0; i < 10000000; i++) {
        snprintf(out, cap, "neighbour-%d", i);
        if ((bfdb_shm_stripe(out, strlen(out)) == s) == (same != 0) &&
            strcmp(out, key) != 0)
            return;
    }
    cr_assert_fail("no key found for the stripe of %s", key);
}

/* lmdb_max_key - LMDB's maximum key size (a build constant of liblmdb) */
static size_t
lmdb_max_key(void)
{
    MDB_env *env;
    int n;

    cr_assert_eq(mdb_env_create(&env), 0);
    n = mdb_env_get_maxkeysize(env);
    mdb_env_close(env);
    cr_assert_gt(n, 0);
    return (size_t)n;
}

/* ---- lookups and fills ------------------------------------------------- */

Test(cache, miss_then_fill_then_hit_returns_the_exact_bytes, .fini = teardown)
{
    static const char key[] = "k\0with\0nuls";
    static const char val[] = "\0a\0\0b\xff\0";
    unsigned char all[256];
    struct bfdb_cache_snap s;

    setup_region(CACHE_MIN);
    open_cache();
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;

    cr_expect_eq(result(key, sizeof(key)), BFDB_CACHE_MISS);
    bfdb_cache_snapshot(g.c, key, sizeof(key), &s);
    cr_expect(s.ok, "nothing is writing: the snapshot is good");
    cr_expect_eq(s.stripe, bfdb_shm_stripe(key, sizeof(key)));
    bfdb_cache_fill(g.c, key, sizeof(key), &s, val, sizeof(val));
    cr_expect(hit_with(key, sizeof(key), val, sizeof(val)),
              "the value comes back byte for byte, NULs included");
    cr_expect_eq(result(key, 1), BFDB_CACHE_MISS,
                 "a prefix of the key is another key");

    fill_fresh("bytes", 5, all, sizeof(all));
    cr_expect(hit_with("bytes", 5, all, sizeof(all)));
    fill_fresh("empty", 5, "", 0);
    cr_expect(hit_with("empty", 5, "", 0), "an empty value is a hit");

    /* the counters of this process's record */
    cr_expect_eq(g.shm.self->c.cache_misses, 2);
    cr_expect_eq(g.shm.self->c.cache_fills, 3);
    cr_expect_eq(g.shm.self->c.cache_hits, 3);
    cr_expect_eq(g.shm.self->c.cache_fill_skips, 0);
}

Test(cache, fill_of_no_such_key_gives_absent, .fini = teardown)
{
    const void *v = NULL;
    size_t vl = 0;

    setup_region(CACHE_MIN);
    open_cache();
    fill_fresh("gone", 4, NULL, 0);
    cr_expect_eq(bfdb_cache_lookup(g.c, "gone", 4, &v, &vl),
                 BFDB_CACHE_ABSENT);
    bfdb_cache_lookup_done(g.c);
    cr_expect_eq(g.shm.self->c.cache_hits, 1, "absent counts as a hit");

    /* a value replaces "absent", and a delete (write_end NULL) makes it
     * absent again */
    FILL_FRESH("gone", "back");
    cr_expect(HIT_WITH("gone", "back"));
    write_key("gone", NULL);
    cr_expect_eq(RESULT("gone"), BFDB_CACHE_ABSENT);
}

Test(cache, empty_and_overlong_keys_are_never_cached, .fini = teardown)
{
    size_t max = lmdb_max_key();
    char *key = malloc(4 * max);
    struct bfdb_cache_snap s;
    struct bfdb_cache_write w;
    struct bfdb_cache_stats st;
    size_t lens[] = { 0, max + 1, 4 * max };

    cr_assert_not_null(key);
    memset(key, 'k', 4 * max);
    setup_region(CACHE_MIN);
    open_cache();

    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        size_t n = lens[i];

        bfdb_cache_snapshot(g.c, key, n, &s);
        bfdb_cache_fill(g.c, key, n, &s, "v", 1);
        cr_expect_eq(result(key, n), BFDB_CACHE_MISS, "key of %zu bytes", n);
        fill_fresh(key, n, NULL, 0);
        cr_expect_eq(result(key, n), BFDB_CACHE_MISS, "key of %zu bytes", n);
        /* a write of such a key goes ahead; there is nothing to drop */
        cr_expect_eq(bfdb_cache_write_begin(g.c, key, n, &w), 0);
        cr_expect_eq(g.shm.self->writing, 0, "no stripe is marked");
        bfdb_cache_write_end(g.c, key, n, &w, 1, "v", 1);
        cr_expect_eq(result(key, n), BFDB_CACHE_MISS, "key of %zu bytes", n);
    }
    cr_assert_eq(bfdb_cache_stats(g.c, &st), 0);
    cr_expect_eq(st.entries, 0);
    cr_expect_eq(st.bytes, 0);

    /* the longest key LMDB takes is cached */
    fill_fresh(key, max, "v", 1);
    cr_expect(hit_with(key, max, "v", 1), "key of %zu bytes", max);
    free(key);
}

Test(cache, cache_size_0_opens_no_cache_and_everything_is_a_miss,
     .fini = teardown)
{
    struct bfdb_cache_snap s;
    struct bfdb_cache_write w;
    struct bfdb_cache_stats st;
    const void *v = NULL;
    size_t vl = 0;

    setup_region(0);
    cr_expect_eq(bfdb_cache_open(&g.c, &g.shm, g.err, sizeof(g.err)), 0);
    cr_assert_null(g.c);
    cr_expect_eq(bfdb_cache_lookup(NULL, "k", 1, &v, &vl), BFDB_CACHE_MISS);
    bfdb_cache_lookup_done(NULL);
    bfdb_cache_snapshot(NULL, "k", 1, &s);
    cr_expect_not(s.ok);
    bfdb_cache_fill(NULL, "k", 1, &s, "v", 1);
    cr_expect_eq(bfdb_cache_write_begin(NULL, "k", 1, &w), 0);
    bfdb_cache_write_end(NULL, "k", 1, &w, 1, "v", 1);
    cr_expect_eq(bfdb_cache_stats(NULL, &st), 0);
    cr_expect_eq(st.capacity, 0);
    /* raw SQL still moves the versions: only shm is needed */
    uint64_t gen = g.shm.hdr->cache_gen;
    bfdb_cache_global_begin(&g.shm);
    bfdb_cache_global_end(&g.shm);
    cr_expect_eq(g.shm.hdr->cache_gen, gen + 1);
    cr_expect_eq(g.shm.hdr->global_ver, 2);
}

Test(cache, stats_count_entries_and_bytes, .fini = teardown)
{
    struct bfdb_cache_stats st;
    struct bfdb_cache_write w;

    setup_region(CACHE_MIN);
    open_cache();
    cr_assert_eq(bfdb_cache_stats(g.c, &st), 0);
    cr_expect_eq(st.capacity, CACHE_MIN);
    cr_expect_eq(st.entries, 0);
    cr_expect_eq(st.bytes, 0);

    FILL_FRESH("a", "1");
    FILL_FRESH("b", "22");
    fill_fresh("c", 1, NULL, 0);
    cr_assert_eq(bfdb_cache_stats(g.c, &st), 0);
    cr_expect_eq(st.entries, 3);
    cr_expect_gt(st.bytes, 3);
    uint64_t three = st.bytes;

    FILL_FRESH("a", "1"); /* a replacement, not a new entry */
    cr_assert_eq(bfdb_cache_stats(g.c, &st), 0);
    cr_expect_eq(st.entries, 3);
    cr_expect_eq(st.bytes, three);

    cr_assert_eq(bfdb_cache_write_begin(g.c, "b", 1, &w), 0);
    cr_assert_eq(bfdb_cache_stats(g.c, &st), 0);
    cr_expect_eq(st.entries, 2, "write_begin dropped the entry");
    cr_expect_lt(st.bytes, three);
    bfdb_cache_write_end(g.c, "b", 1, &w, 0, NULL, 0);
    cr_expect_eq(RESULT("b"), BFDB_CACHE_MISS);
}

/* ---- the coherence protocol, step by step ------------------------------ */

Test(cache, fill_is_refused_after_a_write_on_the_stripe_began,
     .fini = teardown)
{
    struct bfdb_cache_snap s;
    char same[64], other[64];

    setup_region(CACHE_MIN);
    open_cache();
    key_on_stripe("k", 1, same, sizeof(same));
    key_on_stripe("k", 0, other, sizeof(other));

    /* 1. reader: miss, snapshot, reads "old" from the source of truth
     * 2. writer: begin, commit "new", end (puts "new")
     * 3. reader: fills "old" -> refused; "new" stays */
    bfdb_cache_snapshot(g.c, "k", 1, &s);
    cr_assert(s.ok);
    write_key("k", "new");
    cr_expect(HIT_WITH("k", "new"));
    bfdb_cache_fill(g.c, "k", 1, &s, "old", 3);
    cr_expect(HIT_WITH("k", "new"), "the older value must not replace it");
    cr_expect_eq(g.shm.self->c.cache_fill_skips, 1);

    /* the same, with a write that failed (committed 0): nothing was put,
     * and the fill is still refused */
    bfdb_cache_snapshot(g.c, "k", 1, &s);
    struct bfdb_cache_write w;
    cr_assert_eq(bfdb_cache_write_begin(g.c, "k", 1, &w), 0);
    bfdb_cache_write_end(g.c, "k", 1, &w, 0, NULL, 0);
    cr_expect_eq(RESULT("k"), BFDB_CACHE_MISS);
    bfdb_cache_fill(g.c, "k", 1, &s, "old", 3);
    cr_expect_eq(RESULT("k"), BFDB_CACHE_MISS);

    /* a write of another key on the same stripe refuses it too (the
     * versions are per stripe), one on another stripe does not */
    bfdb_cache_snapshot(g.c, "k", 1, &s);
    write_key(same, "x");
    bfdb_cache_fill(g.c, "k", 1, &s, "old", 3);
    cr_expect_eq(RESULT("k"), BFDB_CACHE_MISS, "%s shares the stripe", same);

    bfdb_cache_snapshot(g.c, "k", 1, &s);
    write_key(other, "x");
    bfdb_cache_fill(g.c, "k", 1, &s, "cur", 3);
    cr_expect(HIT_WITH("k", "cur"), "%s is on another stripe", other);
}

Test(cache, fill_is_refused_while_a_write_is_in_progress, .fini = teardown)
{
    struct bfdb_cache_snap before, during;
    struct bfdb_cache_write w;
    uint32_t stripe = bfdb_shm_stripe("k", 1);

    setup_region(CACHE_MIN);
    open_cache();
    FILL_FRESH("k", "old");
    cr_assert(HIT_WITH("k", "old"));

    bfdb_cache_snapshot(g.c, "k", 1, &before);
    cr_assert(before.ok);
    uint64_t sver = g.shm.stripes[stripe];

    /* the writer has begun: its record is marked, the stripe version
     * moved and the entry is gone before it commits */
    cr_assert_eq(bfdb_cache_write_begin(g.c, "k", 1, &w), 0);
    cr_expect_eq(g.shm.self->writing, stripe + 1);
    cr_expect_eq(g.shm.stripes[stripe], sver + 1);
    cr_expect_eq(RESULT("k"), BFDB_CACHE_MISS);

    /* a reader now: its snapshot is no good, and neither is the older one */
    bfdb_cache_snapshot(g.c, "k", 1, &during);
    cr_expect_not(during.ok, "a write is running on the stripe");
    bfdb_cache_fill(g.c, "k", 1, &during, "old", 3);
    cr_expect_eq(RESULT("k"), BFDB_CACHE_MISS);
    bfdb_cache_fill(g.c, "k", 1, &before, "old", 3);
    cr_expect_eq(RESULT("k"), BFDB_CACHE_MISS);

    /* the writer commits "new" and ends: its value is put */
    bfdb_cache_write_end(g.c, "k", 1, &w, 1, "new", 3);
    cr_expect_eq(g.shm.self->writing, 0);
    cr_expect_eq(g.shm.stripes[stripe], sver + 2);
    cr_expect(HIT_WITH("k", "new"));

    /* the late fills of "old" still lose */
    bfdb_cache_fill(g.c, "k", 1, &before, "old", 3);
    bfdb_cache_fill(g.c, "k", 1, &during, "old", 3);
    cr_expect(HIT_WITH("k", "new"));
    cr_expect_eq(g.shm.self->c.cache_fill_skips, 4);
}

Test(cache, fill_is_allowed_again_after_the_writer_ends, .fini = teardown)
{
    struct bfdb_cache_snap s;
    struct bfdb_cache_write w;

    setup_region(CACHE_MIN);
    open_cache();
    cr_assert_eq(bfdb_cache_write_begin(g.c, "k", 1, &w), 0);
    bfdb_cache_write_end(g.c, "k", 1, &w, 0, NULL, 0); /* the commit failed */
    cr_expect_eq(RESULT("k"), BFDB_CACHE_MISS);

    bfdb_cache_snapshot(g.c, "k", 1, &s);
    cr_expect(s.ok);
    bfdb_cache_fill(g.c, "k", 1, &s, "v", 1);
    cr_expect(HIT_WITH("k", "v"));
}

Test(cache, write_end_puts_the_new_value, .fini = teardown)
{
    setup_region(CACHE_MIN);
    open_cache();
    FILL_FRESH("k", "old");
    write_key("k", "new");
    cr_expect(HIT_WITH("k", "new"));
    write_key("fresh", "first"); /* never cached before */
    cr_expect(HIT_WITH("fresh", "first"));
    cr_expect_eq(g.shm.self->c.cache_fills, 3);
    cr_expect_eq(g.shm.self->writing, 0);
}

Test(cache, raw_sql_write_makes_every_entry_a_miss_and_refuses_fills,
     .fini = teardown)
{
    char key[32];
    struct bfdb_cache_snap before, during;
    struct bfdb_cache_write w;

    setup_region(CACHE_MIN);
    open_cache();
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof(key), "key-%d", i);
        FILL_FRESH(key, "v");
        cr_assert(HIT_WITH(key, "v"));
    }
    fill_fresh("gone", 4, NULL, 0);
    bfdb_cache_snapshot(g.c, "k", 1, &before);
    cr_assert(before.ok);
    uint64_t gen = g.shm.hdr->cache_gen, gver = g.shm.hdr->global_ver;

    bfdb_cache_global_begin(&g.shm);
    cr_expect_eq(g.shm.hdr->cache_gen, gen + 1);
    cr_expect_eq(g.shm.hdr->global_ver, gver + 1);
    cr_expect_eq(g.shm.self->global, 1);
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof(key), "key-%d", i);
        cr_expect_eq(RESULT(key), BFDB_CACHE_MISS, "%s", key);
    }
    cr_expect_eq(RESULT("gone"), BFDB_CACHE_MISS, "absent entries too");

    /* while it runs: no snapshot is good, no fill and no write_end puts */
    bfdb_cache_snapshot(g.c, "k", 1, &during);
    cr_expect_not(during.ok);
    bfdb_cache_fill(g.c, "k", 1, &during, "old", 3);
    cr_expect_eq(RESULT("k"), BFDB_CACHE_MISS);
    bfdb_cache_fill(g.c, "k", 1, &before, "old", 3);
    cr_expect_eq(RESULT("k"), BFDB_CACHE_MISS);
    cr_assert_eq(bfdb_cache_write_begin(g.c, "w", 1, &w), 0);
    bfdb_cache_write_end(g.c, "w", 1, &w, 1, "x", 1);
    cr_expect_eq(RESULT("w"), BFDB_CACHE_MISS);

    bfdb_cache_global_end(&g.shm);
    cr_expect_eq(g.shm.self->global, 0);
    cr_expect_eq(g.shm.hdr->global_ver, gver + 2);

    /* snapshots from before or during it stay refused */
    bfdb_cache_fill(g.c, "k", 1, &before, "old", 3);
    bfdb_cache_fill(g.c, "k", 1, &during, "old", 3);
    cr_expect_eq(RESULT("k"), BFDB_CACHE_MISS);
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof(key), "key-%d", i);
        cr_expect_eq(RESULT(key), BFDB_CACHE_MISS, "%s", key);
    }

    /* a fresh snapshot fills again */
    FILL_FRESH("k", "now");
    cr_expect(HIT_WITH("k", "now"));
    write_key("w", "y");
    cr_expect(HIT_WITH("w", "y"));
}

/*
 * A transaction's commit: the raw-write mark and version, but only the
 * entries of its keys go; every other entry stays a hit.  While it runs
 * no fill and no write_end puts; snapshots from before it stay refused.
 */
Test(cache, commit_drops_only_its_keys_and_refuses_fills_meanwhile,
     .fini = teardown)
{
    char key[32];
    struct bfdb_cache_snap before, during;
    struct bfdb_cache_write w;

    setup_region(CACHE_MIN);
    open_cache();
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof(key), "key-%d", i);
        FILL_FRESH(key, "v");
    }
    fill_fresh("gone", 4, NULL, 0);
    cr_assert_eq(RESULT("gone"), BFDB_CACHE_ABSENT);
    bfdb_cache_snapshot(g.c, "key-3", 5, &before);
    cr_assert(before.ok);
    uint64_t gen = g.shm.hdr->cache_gen, gver = g.shm.hdr->global_ver;
    struct bfdb_cache_stats st0;
    cr_assert_eq(bfdb_cache_stats(g.c, &st0), 0);

    const char *const keys[] = {"key-3", "key-5", "gone", "never-cached"};
    const size_t lens[] = {5, 5, 4, 12};
    cr_expect_eq(bfdb_cache_keys_begin(g.c, &g.shm, keys, lens, 4), 3);
    cr_expect_eq(g.shm.hdr->cache_gen, gen, "the generation stays");
    cr_expect_eq(g.shm.hdr->global_ver, gver + 1);
    cr_expect_eq(g.shm.self->global, 1);
    cr_expect_eq(RESULT("key-3"), BFDB_CACHE_MISS);
    cr_expect_eq(RESULT("key-5"), BFDB_CACHE_MISS);
    cr_expect_eq(RESULT("gone"), BFDB_CACHE_MISS);
    for (int i = 0; i < 10; i++) {
        if (i == 3 || i == 5)
            continue;
        snprintf(key, sizeof(key), "key-%d", i);
        cr_expect(HIT_WITH(key, "v"), "%s stays cached", key);
    }
    struct bfdb_cache_stats st1;
    cr_assert_eq(bfdb_cache_stats(g.c, &st1), 0);
    cr_expect_eq(st1.entries, st0.entries - 3);
    cr_expect_lt(st1.bytes, st0.bytes);

    /* while it runs: no snapshot is good, no fill and no write_end puts */
    bfdb_cache_snapshot(g.c, "key-3", 5, &during);
    cr_expect_not(during.ok);
    bfdb_cache_fill(g.c, "key-3", 5, &during, "old", 3);
    bfdb_cache_fill(g.c, "key-3", 5, &before, "old", 3);
    cr_expect_eq(RESULT("key-3"), BFDB_CACHE_MISS);
    cr_assert_eq(bfdb_cache_write_begin(g.c, "w", 1, &w), 0);
    bfdb_cache_write_end(g.c, "w", 1, &w, 1, "x", 1);
    cr_expect_eq(RESULT("w"), BFDB_CACHE_MISS);

    bfdb_cache_global_end(&g.shm);
    cr_expect_eq(g.shm.self->global, 0);
    cr_expect_eq(g.shm.hdr->global_ver, gver + 2);
    /* snapshots from before or during it stay refused; fresh ones fill */
    bfdb_cache_fill(g.c, "key-3", 5, &before, "old", 3);
    bfdb_cache_fill(g.c, "key-3", 5, &during, "old", 3);
    cr_expect_eq(RESULT("key-3"), BFDB_CACHE_MISS);
    FILL_FRESH("key-3", "new");
    cr_expect(HIT_WITH("key-3", "new"));
    cr_expect(HIT_WITH("key-0", "v"));

    /* no keys: the mark and versions alone */
    cr_expect_eq(bfdb_cache_keys_begin(g.c, &g.shm, NULL, NULL, 0), 0);
    cr_expect_eq(g.shm.self->global, 1);
    bfdb_cache_global_end(&g.shm);
    cr_expect(HIT_WITH("key-0", "v"));
}

/* no cache handle: with the cache off the mark and version alone; with
 * a cache this process cannot reach, every entry goes (generation) */
Test(cache, commit_without_a_cache_handle, .fini = teardown)
{
    const char *const k[] = {"k"};
    const size_t kl[] = {1};

    setup_region(0);
    uint64_t gver = g.shm.hdr->global_ver, gen = g.shm.hdr->cache_gen;
    cr_expect_eq(bfdb_cache_keys_begin(NULL, &g.shm, k, kl, 1), 0);
    cr_expect_eq(g.shm.self->global, 1);
    cr_expect_eq(g.shm.hdr->global_ver, gver + 1);
    cr_expect_eq(g.shm.hdr->cache_gen, gen, "cache off: nothing to drop");
    bfdb_cache_global_end(&g.shm);
    cr_expect_eq(g.shm.self->global, 0);
    teardown();

    setup_region(CACHE_MIN);
    gen = g.shm.hdr->cache_gen;
    cr_expect_eq(bfdb_cache_keys_begin(NULL, &g.shm, k, kl, 1), -1);
    cr_expect_eq(g.shm.hdr->cache_gen, gen + 1, "a cache out of reach: "
                 "every entry goes");
    bfdb_cache_global_end(&g.shm);
}

Test(cache, of_two_writers_on_a_stripe_the_first_to_end_does_not_put,
     .fini = teardown)
{
    struct bfdb_shm_record *a, *b;
    struct bfdb_cache_write wa, wb;
    char same[64];

    /* two writers in one process: records 0 and 1, switching shm.self (the
     * cache finds a process's record through it) */
    setup_region(CACHE_MIN);
    a = g.shm.self;
    b = bfdb_shm_claim(&g.shm, 1, 1);
    cr_assert_not_null(b);
    open_cache();
    g.shm.self = a;
    FILL_FRESH("k", "v0");

    /* A begins, B begins, A ends with "a": B is still writing, so A must
     * not put "a" (B's value will be newer) */
    g.shm.self = a;
    cr_assert_eq(bfdb_cache_write_begin(g.c, "k", 1, &wa), 0);
    g.shm.self = b;
    cr_assert_eq(bfdb_cache_write_begin(g.c, "k", 1, &wb), 0);
    g.shm.self = a;
    bfdb_cache_write_end(g.c, "k", 1, &wa, 1, "a", 1);
    cr_expect_eq(RESULT("k"), BFDB_CACHE_MISS, "A put its value under B");
    g.shm.self = b;
    bfdb_cache_write_end(g.c, "k", 1, &wb, 1, "b", 1);
    cr_expect(!HIT_WITH("k", "a") && !HIT_WITH("k", "v0"),
              "an older value is cached after both writes");
    cr_expect_eq(a->writing, 0);
    cr_expect_eq(b->writing, 0);

    /* A begins, B begins, B ends first: A's mark stops B, and B's bumps
     * stop A */
    g.shm.self = a;
    cr_assert_eq(bfdb_cache_write_begin(g.c, "k", 1, &wa), 0);
    g.shm.self = b;
    cr_assert_eq(bfdb_cache_write_begin(g.c, "k", 1, &wb), 0);
    bfdb_cache_write_end(g.c, "k", 1, &wb, 1, "b2", 2);
    cr_expect_eq(RESULT("k"), BFDB_CACHE_MISS, "B put its value under A");
    g.shm.self = a;
    bfdb_cache_write_end(g.c, "k", 1, &wa, 1, "a2", 2);
    cr_expect_eq(RESULT("k"), BFDB_CACHE_MISS,
                 "A's value may be older than B's");

    /* different keys on one stripe are treated alike */
    key_on_stripe("k", 1, same, sizeof(same));
    g.shm.self = a;
    cr_assert_eq(bfdb_cache_write_begin(g.c, "k", 1, &wa), 0);
    g.shm.self = b;
    cr_assert_eq(bfdb_cache_write_begin(g.c, same, strlen(same), &wb), 0);
    g.shm.self = a;
    bfdb_cache_write_end(g.c, "k", 1, &wa, 1, "a3", 2);
    cr_expect_eq(RESULT("k"), BFDB_CACHE_MISS);
    g.shm.self = b;
    bfdb_cache_write_end(g.c, same, strlen(same), &wb, 1, "b3", 2);

    /* alone again, a write puts */
    g.shm.self = a;
    write_key("k", "a4");
    cr_expect(HIT_WITH("k", "a4"));
}

/* ---- a writer killed mid-write ----------------------------------------- */

#define CRASH_TXN 9

/* crash_child - worker record 1: caches key, takes its lock (txn 0) and a
 * transaction's lock, then on the parent's word begins a write of key and
 * stops there, as if killed between the SQLite commit and write_end */
static void
crash_child(const char *key, int rfd, int wfd)
{
    bfdb_cache *c = NULL;
    struct bfdb_cache_snap s;
    struct bfdb_cache_write w;
    const void *v;
    size_t vl, klen = strlen(key);
    char err[256];

    if (bfdb_shm_claim(&g.shm, 1, 1) == NULL)
        _exit(10);
    if (bfdb_cache_open(&c, &g.shm, err, sizeof(err)) != 0 || c == NULL)
        _exit(11);
    /* a miss, a fill, a hit: counters the master must retire */
    if (bfdb_cache_lookup(c, key, klen, &v, &vl) != BFDB_CACHE_MISS)
        _exit(12);
    bfdb_cache_lookup_done(c);
    bfdb_cache_snapshot(c, key, klen, &s);
    bfdb_cache_fill(c, key, klen, &s, "v0", 2);
    if (bfdb_cache_lookup(c, key, klen, &v, &vl) != BFDB_CACHE_HIT)
        _exit(13);
    bfdb_cache_lookup_done(c);
    if (bfdb_locktab_acquire(g.shm.locktab, key, klen, getpid(), 0, 0, NULL,
                             NULL) != 0 ||
        bfdb_locktab_acquire(g.shm.locktab, "txn-lock", 8, getpid(),
                             CRASH_TXN, 0, NULL, NULL) != 0)
        _exit(14);
    child_signal(wfd);
    child_wait(rfd);
    if (bfdb_cache_write_begin(c, key, klen, &w) != 0)
        _exit(15);
    /* (the SQLite commit of the new value would be here) */
    child_signal(wfd);
    for (;;)
        pause();
}

Test(cache, killed_writer_is_reaped_and_its_stripe_repaired,
     .fini = teardown)
{
    const char *key = "victim";
    uint32_t stripe = bfdb_shm_stripe(key, strlen(key));
    struct bfdb_cache_snap before, during, dead_unreaped, after;
    struct bfdb_shm_record *rec;
    struct bfdb_counters dead_c, zero;
    int up[2], down[2];
    pid_t child, p;
    uint64_t x;

    setup_region(CACHE_MIN);
    cr_assert_eq(pipe(up), 0);
    cr_assert_eq(pipe(down), 0);
    child = fork_child();
    if (child == 0) {
        close(up[0]);
        close(down[1]);
        crash_child(key, down[0], up[1]);
    }
    close(up[1]);
    close(down[0]);
    rec = &g.shm.records[1];

    /* step 1: the child has cached the key and holds its lock */
    read_byte(up[0], 10000);
    open_cache(); /* after the fork: LMDB environments do not cross it */
    cr_expect(HIT_WITH(key, "v0"));
    bfdb_cache_snapshot(g.c, key, strlen(key), &before);
    cr_assert(before.ok);

    /* step 2: the child begins its write and stops */
    cr_assert_eq(write(down[1], "x", 1), 1);
    read_byte(up[0], 10000);
    cr_expect_eq(rec->pid, child);
    cr_expect_eq(rec->writing, stripe + 1, "the record names the stripe");
    cr_expect_eq(RESULT(key), BFDB_CACHE_MISS, "the entry was dropped");
    bfdb_cache_snapshot(g.c, key, strlen(key), &during);
    cr_expect_not(during.ok);
    memcpy(&dead_c, &rec->c, sizeof(dead_c));
    cr_expect_eq(dead_c.cache_misses, 1);
    cr_expect_eq(dead_c.cache_fills, 1);
    cr_expect_eq(dead_c.cache_hits, 1);

    /* step 3: it dies; until the master reaps it, its mark holds */
    kill(child, SIGKILL);
    cr_expect_eq(wait_child(child, 10000), 128 + SIGKILL);
    close(up[0]);
    close(down[1]);
    bfdb_cache_snapshot(g.c, key, strlen(key), &dead_unreaped);
    cr_expect_not(dead_unreaped.ok);
    uint64_t sver = g.shm.stripes[stripe];

    /* step 4: the master reaps it */
    bfdb_shm_reap(&g.shm, child);
    cr_expect_eq(rec->pid, 0, "the record is free");
    cr_expect_eq(rec->writing, 0);
    cr_expect_eq(g.shm.stripes[stripe], sver + 1, "the stripe version moved");
    cr_expect_eq(memcmp(&g.shm.hdr->retired, &dead_c, sizeof(dead_c)), 0,
                 "its counters went to the retired totals");
    memset(&zero, 0, sizeof(zero));
    cr_expect_eq(memcmp(&rec->c, &zero, sizeof(zero)), 0);
    cr_expect_eq(bfdb_locktab_holder(g.shm.locktab, key, strlen(key), &p,
                                     &x),
                 0, "its operation lock was released");
    cr_expect_eq(bfdb_locktab_holder(g.shm.locktab, "txn-lock", 8, &p, &x), 1,
                 "a transaction's lock outlives the process");
    cr_expect_eq(p, child);
    cr_expect_eq(x, CRASH_TXN);
    cr_expect_eq(bfdb_locktab_release_txn(g.shm.locktab, CRASH_TXN), 1);
    cr_expect_eq(bfdb_locktab_acquire(g.shm.locktab, key, strlen(key),
                                      getpid(), 0, 0, NULL, NULL),
                 0);

    /* no snapshot taken before the reap may fill the old value */
    bfdb_cache_fill(g.c, key, strlen(key), &before, "v0", 2);
    cr_expect_eq(RESULT(key), BFDB_CACHE_MISS, "snapshot before the write");
    bfdb_cache_fill(g.c, key, strlen(key), &during, "v0", 2);
    cr_expect_eq(RESULT(key), BFDB_CACHE_MISS, "snapshot during the write");
    bfdb_cache_fill(g.c, key, strlen(key), &dead_unreaped, "v0", 2);
    cr_expect_eq(RESULT(key), BFDB_CACHE_MISS, "snapshot after the death");

    /* the stripe works again: fills and writes */
    bfdb_cache_snapshot(g.c, key, strlen(key), &after);
    cr_expect(after.ok);
    bfdb_cache_fill(g.c, key, strlen(key), &after, "v1", 2);
    cr_expect(HIT_WITH(key, "v1"));
    write_key(key, "v2");
    cr_expect(HIT_WITH(key, "v2"));
    cr_expect_eq(bfdb_locktab_release(g.shm.locktab, key, strlen(key),
                                      getpid(), 0),
                 0);
}

Test(cache, killed_raw_sql_writer_is_reaped, .fini = teardown)
{
    struct bfdb_cache_snap s;
    int up[2];
    pid_t child;

    setup_region(CACHE_MIN);
    cr_assert_eq(pipe(up), 0);
    child = fork_child();
    if (child == 0) {
        close(up[0]);
        if (bfdb_shm_claim(&g.shm, -1, -1) == NULL) /* a CLI record */
            _exit(10);
        bfdb_cache_global_begin(&g.shm);
        child_signal(up[1]);
        for (;;)
            pause();
    }
    close(up[1]);
    read_byte(up[0], 10000);
    close(up[0]);
    open_cache();
    uint64_t gver = g.shm.hdr->global_ver;
    bfdb_cache_snapshot(g.c, "k", 1, &s);
    cr_expect_not(s.ok, "a raw SQL write is running");
    kill(child, SIGKILL);
    cr_expect_eq(wait_child(child, 10000), 128 + SIGKILL);

    bfdb_shm_reap(&g.shm, child);
    cr_expect_eq(g.shm.hdr->global_ver, gver + 1);
    for (int i = BFDB_SHM_WORKER_RECORDS; i < BFDB_SHM_RECORDS; i++)
        cr_expect_neq(g.shm.records[i].pid, child, "record %d", i);
    bfdb_cache_fill(g.c, "k", 1, &s, "old", 3);
    cr_expect_eq(RESULT("k"), BFDB_CACHE_MISS);
    FILL_FRESH("k", "new");
    cr_expect(HIT_WITH("k", "new"));
}

/* ---- size and eviction ------------------------------------------------- */

#define VAL_SIZE 1024

static void
make_key(char *out, size_t cap, int i)
{
    snprintf(out, cap, "key-%05d", i);
}

/* make_val - VAL_SIZE bytes that differ per i */
static void
make_val(unsigned char *out, int i)
{
    memset(out, (unsigned char)(i * 7), VAL_SIZE);
    memcpy(out, &i, sizeof(i));
}

/* val_hit - 1 if key i hits with its value */
static int
val_hit(int i)
{
    char key[32];
    unsigned char val[VAL_SIZE];

    make_key(key, sizeof(key), i);
    make_val(val, i);
    return hit_with(key, strlen(key), val, VAL_SIZE);
}

static void
val_fill(int i)
{
    char key[32];
    unsigned char val[VAL_SIZE];

    make_key(key, sizeof(key), i);
    make_val(val, i);
    fill_fresh(key, strlen(key), val, VAL_SIZE);
}

Test(cache, cache_stays_within_its_size_and_evicts_the_oldest,
     .fini = teardown)
{
    enum { N = 5000 };
    struct bfdb_cache_stats st;
    int hits = 0, last_miss = -1;

    setup_region(CACHE_MIN);
    open_cache();
    for (int i = 0; i < N; i++)
        val_fill(i); /* about 5 MiB in all */
    cr_assert_eq(bfdb_cache_stats(g.c, &st), 0);
    cr_expect_eq(st.capacity, CACHE_MIN);
    cr_expect_leq(st.bytes, st.capacity);
    cr_expect_gt(st.entries, 0);
    cr_expect_leq(st.entries * VAL_SIZE, st.capacity);
    cr_expect_geq(st.bytes, st.capacity / 2, "the cache is mostly used");
    cr_expect_gt(g.shm.self->c.cache_evictions, 0);
    cr_expect_eq(g.shm.self->c.cache_fills, N);
    cr_expect_eq(g.shm.self->c.cache_flushes, 0);

    /* nothing was read, so what is left is the newest entries, in one
     * run, and every entry counted can be found */
    for (int i = 0; i < N; i++) {
        if (val_hit(i))
            hits++;
        else
            last_miss = i;
    }
    cr_expect_eq((uint64_t)hits, st.entries);
    cr_expect_eq(last_miss, N - 1 - hits, "the survivors are the newest");
    cr_expect(val_hit(N - 1));
    cr_expect(!val_hit(0));
}

Test(cache, entries_read_since_queued_survive_eviction, .fini = teardown)
{
    /*
     * 5000 fills of 1 KiB in a 1 MiB cache (about 900 entries fit).  Of the
     * first 1000 keys, every tenth is hot: all hot keys are read after
     * every tenth fill, so each has its reference bit set whenever
     * eviction reaches it (a full pass takes about 900 fills).  The other
     * 900 are never read.  One process, fixed keys: deterministic.
     */
    enum { N = 5000, FIRST = 1000, EVERY = 10, AFTER = 3000 };
    int hot = 0, hot_hits = 0, cold_hits = 0, left = 0;

    setup_region(CACHE_MIN);
    open_cache();
    for (int i = 0; i < N; i++) {
        val_fill(i);
        if (i % EVERY == EVERY - 1)
            for (int j = 0; j < FIRST && j <= i; j += EVERY)
                (void)val_hit(j);
    }
    for (int j = 0; j < FIRST; j++) {
        if (j % EVERY == 0) {
            hot++;
            hot_hits += val_hit(j);
        } else {
            cold_hits += val_hit(j);
        }
    }
    cr_assert_eq(hot, 100);
    cr_expect_geq(hot_hits, 90, "only %d of 100 hot keys survived", hot_hits);
    cr_expect_leq(cold_hits, 10, "%d of 900 never-read keys survived",
                  cold_hits);
    cr_expect_gt(g.shm.self->c.cache_evictions, 0);

    /* once nobody reads them, the hot keys go too: after 3000 more fills
     * nothing of the first 5000 is left */
    for (int i = N; i < N + AFTER; i++)
        val_fill(i);
    for (int j = 0; j < N; j++)
        left += val_hit(j);
    cr_expect_eq(left, 0, "%d old entries were never evicted", left);
    cr_expect(val_hit(N + AFTER - 1));

    struct bfdb_cache_stats st;
    cr_assert_eq(bfdb_cache_stats(g.c, &st), 0);
    cr_expect_leq(st.bytes, st.capacity);
    int all = 0;
    for (int j = N; j < N + AFTER; j++)
        all += val_hit(j);
    cr_expect_eq((uint64_t)all, st.entries,
                 "every counted entry is a hit and nothing else");
}

Test(cache, values_over_the_max_value_are_not_cached, .fini = teardown)
{
    /* max value: cache_size / 64, at most 1 MiB */
    size_t max = (size_t)(CACHE_MIN / 64);
    unsigned char *v = malloc(MIB + 1);
    struct bfdb_cache_write w;

    cr_assert_not_null(v);
    memset(v, 'v', MIB + 1);
    setup_region(CACHE_MIN);
    open_cache();
    fill_fresh("max", 3, v, max);
    cr_expect(hit_with("max", 3, v, max));
    fill_fresh("over", 4, v, max + 1);
    cr_expect_eq(result("over", 4), BFDB_CACHE_MISS);
    /* a write of a value too big leaves no entry (not even the old one) */
    cr_assert_eq(bfdb_cache_write_begin(g.c, "max", 3, &w), 0);
    bfdb_cache_write_end(g.c, "max", 3, &w, 1, v, max + 1);
    cr_expect_eq(result("max", 3), BFDB_CACHE_MISS);
    write_key("max", "small");
    cr_expect(HIT_WITH("max", "small"));
    close_cache();
    bfdb_shm_detach(&g.shm);
    th_rmrf(g.dir);
    free(g.dir);
    g.dir = NULL;

    /* a cache of 128 MiB: cap / 64 is 2 MiB, the limit 1 MiB */
    setup_region(128 * MIB);
    open_cache();
    fill_fresh("max", 3, v, MIB);
    cr_expect(hit_with("max", 3, v, MIB));
    fill_fresh("over", 4, v, MIB + 1);
    cr_expect_eq(result("over", 4), BFDB_CACHE_MISS);
    free(v);
}

/* ---- processes at once ------------------------------------------------- */

#define NKEYS 16
#define COH_ITER 3000      /* each writer's writes; the reader's least reads */
#define COH_MAX_READS 1000000
#define COH_MS 20000

/* what the children share beside the region: the source of truth (a
 * stand-in for SQLite, written under the key's lock), the last
 * acknowledged write of each key, and the reader's findings */
struct coh {
    uint64_t truth[NKEYS]; /* 0: no such key */
    uint64_t ack[NKEYS];
    uint64_t violations;
    uint64_t bad_key, bad_got, bad_ack;
    uint64_t reads, hits, writes[2];
    int ready;        /* children set up */
    int go;           /* the parent's start signal */
    int writers_done;
};

/* coh_start - claim record index, open the cache, wait for the others so
 * that they all run at once; returns the cache */
static bfdb_cache *
coh_start(struct coh *sh, int index)
{
    bfdb_cache *c = NULL;
    char err[256];
    int64_t end = now_ms() + 10000;

    if (bfdb_shm_claim(&g.shm, index, index) == NULL)
        _exit(10);
    if (bfdb_cache_open(&c, &g.shm, err, sizeof(err)) != 0 || c == NULL)
        _exit(11);
    __atomic_fetch_add(&sh->ready, 1, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(&sh->go, __ATOMIC_SEQ_CST)) {
        if (now_ms() > end)
            _exit(19);
        sched_yield();
    }
    return c;
}

static void
coh_key(char *out, size_t cap, unsigned k)
{
    snprintf(out, cap, "coh-key-%02u", k);
}

static uint32_t
xorshift(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* coh_writer - lock the key, write_begin, commit truth = truth + 1 (or
 * fail the commit now and then), write_end, acknowledge, unlock */
static void
coh_writer(struct coh *sh, int id)
{
    bfdb_cache *c = coh_start(sh, 1 + id);
    char key[32];
    uint32_t seed = 0x9e3779b9u * (uint32_t)(id + 1);
    int64_t end = now_ms() + COH_MS;

    for (int i = 0; i < COH_ITER && now_ms() < end; i++) {
        unsigned k = xorshift(&seed) % NKEYS;
        struct bfdb_cache_write w;
        int committed = i % 17 != 5;
        uint64_t v;

        coh_key(key, sizeof(key), k);
        if (bfdb_locktab_acquire(g.shm.locktab, key, strlen(key), getpid(),
                                 0, 10000, NULL, NULL) != 0)
            _exit(12);
        if (bfdb_cache_write_begin(c, key, strlen(key), &w) != 0)
            _exit(13);
        v = __atomic_load_n(&sh->truth[k], __ATOMIC_SEQ_CST) + 1;
        if (committed)
            __atomic_store_n(&sh->truth[k], v, __ATOMIC_SEQ_CST);
        if (i % 8 == 0)
            sched_yield(); /* widen the window between commit and end */
        bfdb_cache_write_end(c, key, strlen(key), &w, committed, &v,
                             sizeof(v));
        if (committed)
            __atomic_store_n(&sh->ack[k], v, __ATOMIC_SEQ_CST);
        if (bfdb_locktab_release(g.shm.locktab, key, strlen(key), getpid(),
                                 0) != 0)
            _exit(14);
        __atomic_fetch_add(&sh->writes[id], 1, __ATOMIC_RELAXED);
    }
    __atomic_fetch_add(&sh->writers_done, 1, __ATOMIC_SEQ_CST);
    bfdb_cache_close(c);
    _exit(0);
}

/* coh_reader - read ack, then get the key through the cache (on a miss:
 * snapshot, read truth, fill); what it got must not be older than ack.
 * Reads at least COH_ITER times, and on while the writers run. */
static void
coh_reader(struct coh *sh)
{
    bfdb_cache *c = coh_start(sh, 3);
    char key[32];
    uint32_t seed = 12345;
    int64_t end = now_ms() + COH_MS;

    for (int i = 0;
         (i < COH_ITER ||
          __atomic_load_n(&sh->writers_done, __ATOMIC_SEQ_CST) < 2) &&
         i < COH_MAX_READS && now_ms() < end;
         i++) {
        unsigned k = xorshift(&seed) % NKEYS;
        uint64_t a = __atomic_load_n(&sh->ack[k], __ATOMIC_SEQ_CST);
        uint64_t got = 0;
        const void *v = NULL;
        size_t vl = 0;
        int r;

        coh_key(key, sizeof(key), k);
        r = bfdb_cache_lookup(c, key, strlen(key), &v, &vl);
        if (r == BFDB_CACHE_HIT) {
            if (vl != sizeof(got))
                _exit(12);
            memcpy(&got, v, sizeof(got));
        }
        bfdb_cache_lookup_done(c);
        if (r == BFDB_CACHE_MISS) {
            struct bfdb_cache_snap s;

            bfdb_cache_snapshot(c, key, strlen(key), &s);
            got = __atomic_load_n(&sh->truth[k], __ATOMIC_SEQ_CST);
            sched_yield(); /* let a write slip in before the fill */
            bfdb_cache_fill(c, key, strlen(key), &s, got ? &got : NULL,
                            sizeof(got));
        } else {
            sh->hits++;
        }
        if (got < a) {
            if (sh->violations++ == 0) {
                sh->bad_key = k;
                sh->bad_got = got;
                sh->bad_ack = a;
            }
        }
        sh->reads++;
    }
    bfdb_cache_close(c);
    _exit(sh->violations == 0 ? 0 : 1);
}

Test(cache, processes_never_read_older_than_the_last_acknowledged_write,
     .fini = teardown)
{
    struct coh *sh;
    pid_t kids[3];
    struct bfdb_counters *ret;

    /*
     * Children 0 and 1 write (coh_writer), child 2 reads (coh_reader), all
     * at once on 16 keys, each with its own record and cache handle.  Per
     * key, the reader:
     *   r1  reads ack[k], the newest write a client was told about
     *   r2  gets k: a hit, or snapshot + read truth + (yield) + fill
     *   r3  checks that it got at least ack[k]
     * A fill that wins over a write, or an entry a write left behind,
     * shows up at r3 on a later read of the key.
     */

    setup_region(CACHE_MIN);
    sh = scratch(sizeof(*sh));
    for (int i = 0; i < 3; i++) {
        kids[i] = fork_child();
        if (kids[i] == 0) {
            if (i < 2)
                coh_writer(sh, i);
            coh_reader(sh);
        }
    }
    int64_t end = now_ms() + 10000;
    while (__atomic_load_n(&sh->ready, __ATOMIC_SEQ_CST) < 3 &&
           now_ms() < end)
        sleep_ms(1);
    __atomic_store_n(&sh->go, 1, __ATOMIC_SEQ_CST); /* a late child exits 19 */
    for (int i = 0; i < 3; i++) {
        cr_expect_eq(wait_child(kids[i], COH_MS + 15000), 0, "child %d", i);
        bfdb_shm_reap(&g.shm, kids[i]);
    }
    cr_expect_eq(sh->violations, 0,
                 "%" PRIu64 " stale reads; first: key %" PRIu64 " got %" PRIu64
                 " after write %" PRIu64 " was acknowledged",
                 sh->violations, sh->bad_key, sh->bad_got, sh->bad_ack);
    cr_expect_gt(sh->reads, 0);
    cr_expect_gt(sh->writes[0], 0);
    cr_expect_gt(sh->writes[1], 0);
    cr_expect_gt(sh->hits, 0, "the reader never hit: the test proves little");

    /* the dead children's counters are retired; the reader's hits are
     * the only hits */
    ret = &g.shm.hdr->retired;
    cr_expect_eq(ret->cache_hits, sh->hits);
    cr_expect_gt(ret->cache_fills, 0);
    for (int i = 1; i <= 3; i++)
        cr_expect_eq(g.shm.records[i].pid, 0);
    cr_expect_eq(bfdb_locktab_holder(g.shm.locktab, "coh-key-00", 10, NULL,
                                     NULL),
                 0);

    /* all quiet now: whatever is cached is the truth */
    open_cache(); /* every child is gone */
    for (unsigned k = 0; k < NKEYS; k++) {
        char key[32];
        const void *v = NULL;
        size_t vl = 0;
        uint64_t got = 0;
        int r;

        coh_key(key, sizeof(key), k);
        r = bfdb_cache_lookup(g.c, key, strlen(key), &v, &vl);
        if (r == BFDB_CACHE_HIT && vl == sizeof(got))
            memcpy(&got, v, sizeof(got));
        bfdb_cache_lookup_done(g.c);
        if (r == BFDB_CACHE_HIT)
            cr_expect_eq(got, sh->truth[k], "key %u", k);
        else if (r == BFDB_CACHE_ABSENT)
            cr_expect_eq(sh->truth[k], 0, "key %u", k);
    }
}

/* ---- the region --------------------------------------------------------- */

Test(cache, attach_maps_the_region_of_the_creator, .fini = teardown)
{
    bfdb_shm a;
    struct bfdb_shm_record *r;
    pid_t p;

    setup_region(CACHE_MIN);
    cr_assert_eq(bfdb_shm_attach(&a, g.dir, g.err, sizeof(g.err)), 0, "%s",
                 g.err);
    cr_expect_eq(memcmp(a.hdr->magic, BFDB_SHM_MAGIC, 8), 0);
    cr_expect_eq(a.hdr->version, BFDB_SHM_VERSION);
    cr_expect_eq(a.size, g.shm.size);
    cr_expect_eq(a.hdr->total_size, g.shm.hdr->total_size);
    cr_expect_eq(a.hdr->master_pid, getpid());
    cr_expect_eq(a.hdr->started, g.shm.hdr->started);
    cr_expect_eq(a.hdr->cache_size, CACHE_MIN);
    cr_expect_eq(a.hdr->lock_slots, LOCK_SLOTS);
    cr_expect_eq(a.hdr->nstripes, BFDB_SHM_STRIPES);
    cr_expect_eq(a.hdr->nrecords, BFDB_SHM_RECORDS);
    cr_expect_null(a.self);
    cr_expect_str_eq(a.dir, g.dir);
    cr_assert_not_null(a.locktab);

    /* one memory seen through two mappings */
    g.shm.stripes[7] = 42;
    cr_expect_eq(a.stripes[7], 42);
    cr_expect_eq(bfdb_locktab_acquire(a.locktab, "n", 1, getpid(), 0, 0, NULL,
                                      NULL),
                 0);
    cr_expect_eq(bfdb_locktab_holder(g.shm.locktab, "n", 1, &p, NULL), 1);
    cr_expect_eq(p, getpid());
    r = bfdb_shm_claim(&a, -1, -1); /* a CLI record */
    cr_assert_not_null(r);
    size_t idx = (size_t)(r - a.records);
    cr_expect_geq(idx, BFDB_SHM_WORKER_RECORDS);
    cr_expect_eq(g.shm.records[idx].pid, getpid());
    cr_expect_eq(g.shm.records[idx].slot, -1);
    bfdb_shm_detach(&a);
    cr_expect_null(a.base);
    cr_expect_eq(g.shm.records[idx].pid, 0, "detach frees the record");
}

Test(cache, attach_without_a_region_fails_with_a_message, .fini = teardown)
{
    bfdb_shm a;
    char *path;

    g.dir = th_tmpdir();
    cr_assert_not_null(g.dir);
    g.err[0] = '\0';
    cr_expect_eq(bfdb_shm_attach(&a, g.dir, g.err, sizeof(g.err)), -1);
    cr_expect_null(a.base);
    cr_expect_neq(strstr(g.err, g.dir), NULL, "message: %s", g.err);

    /* a file that is not a region */
    path = th_path(g.dir, "shared");
    cr_assert_eq(th_write_file(path, "not a region at all", 19), 0);
    free(path);
    g.err[0] = '\0';
    cr_expect_eq(bfdb_shm_attach(&a, g.dir, g.err, sizeof(g.err)), -1);
    cr_expect_null(a.base);
    cr_expect_neq(strstr(g.err, "not a buffdb shared region"), NULL,
                  "message: %s", g.err);
}

Test(cache, server_alive_until_running_is_cleared, .fini = teardown)
{
    bfdb_shm a;
    pid_t child;

    setup_region(0);
    cr_expect_eq(bfdb_shm_server_alive(&g.shm), 1);
    cr_assert_eq(bfdb_shm_attach(&a, g.dir, g.err, sizeof(g.err)), 0, "%s",
                 g.err);
    cr_expect_eq(bfdb_shm_server_alive(&a), 1);
    g.shm.hdr->running = 0;
    cr_expect_eq(bfdb_shm_server_alive(&g.shm), 0);
    cr_expect_eq(bfdb_shm_server_alive(&a), 0);
    g.shm.hdr->running = 1;
    cr_expect_eq(bfdb_shm_server_alive(&a), 1);

    /* a master that died without clearing it */
    child = fork_child();
    if (child == 0)
        _exit(0);
    cr_expect_eq(wait_child(child, 10000), 0);
    g.shm.hdr->master_pid = child;
    cr_expect_eq(bfdb_shm_server_alive(&a), 0);
    bfdb_shm_detach(&a);
}

/* ---- the LMDB reader table ---------------------------------------------- */

Test(cache, reader_check_on_a_fresh_cache_returns_a_count, .fini = teardown)
{
    setup_region(CACHE_MIN);
    cr_expect_geq(bfdb_cache_reader_check(g.dir), 0);
    open_cache();
    FILL_FRESH("k", "v");
    cr_expect(HIT_WITH("k", "v"));
    close_cache(); /* reader_check must not share the process with one */
    cr_expect_geq(bfdb_cache_reader_check(g.dir), 0);
}

/* reader_child - open the cache (a reader slot), report, wait to die */
static void
reader_child(int index, int wfd)
{
    bfdb_cache *c = NULL;
    char err[256];
    const void *v;
    size_t vl;

    if (bfdb_shm_claim(&g.shm, index, index) == NULL)
        _exit(10);
    if (bfdb_cache_open(&c, &g.shm, err, sizeof(err)) != 0 || c == NULL)
        _exit(11);
    (void)bfdb_cache_lookup(c, "k", 1, &v, &vl);
    bfdb_cache_lookup_done(c);
    child_signal(wfd);
    for (;;)
        pause();
}

Test(cache, reader_check_clears_the_slot_of_a_killed_reader,
     .fini = teardown)
{
    pid_t live, dead;
    int up[2];

    /*
     * The live child keeps the environment open: with nobody else in it,
     * the check would get the lock file to itself and start the reader
     * table afresh instead of looking for dead slots.
     */
    setup_region(CACHE_MIN);
    cr_assert_eq(pipe(up), 0);
    live = fork_child();
    if (live == 0)
        reader_child(1, up[1]);
    read_byte(up[0], 10000);
    dead = fork_child();
    if (dead == 0)
        reader_child(2, up[1]);
    read_byte(up[0], 10000);
    close(up[0]);
    close(up[1]);
    kill(dead, SIGKILL);
    cr_expect_eq(wait_child(dead, 10000), 128 + SIGKILL);
    bfdb_shm_reap(&g.shm, dead);

    cr_expect_eq(bfdb_cache_reader_check(g.dir), 1);
    cr_expect_eq(bfdb_cache_reader_check(g.dir), 0, "nothing left to clear");
    kill(live, SIGKILL);
    cr_expect_eq(wait_child(live, 10000), 128 + SIGKILL);
    bfdb_shm_reap(&g.shm, live);
}
