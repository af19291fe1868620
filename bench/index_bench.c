/*
 * index_bench.c - secondary indexes against full scans, and what an index
 * costs a Set (store layer only: no server, no network)
 *
 * usage: bench/index_bench [-n N[,N...]] [--quick] [--dir DIR] [--json]
 *                          [--seed S]
 *
 * For each size N (default 100,000 and 1,000,000; --quick: 10,000):
 *
 *   1. Load N keys "model:<i>" with JSON values
 *      {"name":"m<i>","framework":"fw<i%50>","params":<i*7 % N>,
 *       "pad":"<100 bytes>"} through a plain sqlite3 connection in one
 *      transaction (the file is created first by bfdb_store_open, so the
 *      schema is buffdb's own).  i*7 % N is a permutation of 0..N-1 when
 *      7 does not divide N, so every params value is held exactly once.
 *      The file is then copied three times: copy v will carry the indexes
 *      of Set variant v (below), so the variants start from the same bytes
 *      and never wait for an index build or drop between them.
 *   2. Open the four copies with bfdb_store_open (synchronous NORMAL) and
 *      time bfdb_index_create: a HASH STRING index on $.name ("name"), a
 *      BTREE INTEGER index on $.params ("params"), a UNIQUE HASH STRING
 *      index on $.name ("name_unique").
 *   3. Lookup, on the copy with name and params: random existing names
 *      through bfdb_index_lookup + next until done; the same rows from the
 *      index table with one statement prepared once (what the API adds per
 *      call is the difference); and the full scan SQLite runs without an
 *      index (json_extract over every row, prepared once).  Every result
 *      is checked: one row, the right key.
 *   4. Range: 100 consecutive params values, bfdb_index_range against the
 *      same two; every result is checked: 100 rows, in range, in order.
 *   5. Set: bfdb_kv_set (each Set its own autocommit transaction) on
 *      random existing keys with new JSON values (new params and pad; the
 *      name stays, so the unique index holds) on copy 0 (no index), 1
 *      (name), 2 (name, params), 3 (name, params, name_unique).  The four
 *      run in interleaved slices of 1,000 Sets, each round starting with
 *      the next variant, and every variant draws the same keys and values,
 *      so a burst of load from elsewhere on the machine falls on all of
 *      them alike.  Wall time and this process's CPU time are both
 *      reported.  Afterwards bfdb_index_check compares copy 3's indexes
 *      with full scans.
 *
 * Bounds: lookups and ranges stop at 20,000 operations or 5 s; full scans
 * at 5 runs or 10 s (at least one run); Sets at 20 slices per variant
 * (20,000 Sets, after 500 unmeasured ones) or, after a round, once 20 s
 * (5 s per variant) have passed.  The load, the copies, the builds and
 * the check are bounded by N.  SIGINT/SIGTERM stop at the next check and
 * still clean up.
 *
 * Files: a mkdtemp directory under /tmp, removed at the end; with --dir,
 * the files index_bench_<N>_<v>.db{,-wal,-shm,-journal} in DIR, removed
 * at the end (DIR itself is left).  The 1,000,000-key run needs about
 * 1.5 GB there.
 *
 * Output: a plain-text report on stdout (progress on stderr); --json
 * prints one JSON object instead.  Exit status 0; 1 on a failure or a
 * wrong result; 2 for a usage error.  Wall times are CLOCK_MONOTONIC.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"

#define MAX_SIZES 8
#define RANGE_WIDTH 100           /* params values per range */
#define OPS_MAX 20000             /* lookups or ranges per method */
#define OPS_SECONDS 5.0
#define OPS_WARMUP 200
#define SCAN_RUNS_MAX 5
#define SCAN_SECONDS 10.0
#define SLICE 1000                /* Sets per slice */
#define SLICES_MAX 20             /* per variant: 20,000 Sets */
#define SETS_SECONDS 5.0          /* per variant */
#define SETS_WARMUP 500
#define PAD_LEN 100
#define N_VARIANTS 4

/* ---- options, state ---------------------------------------------------- */

static struct {
    long sizes[MAX_SIZES];
    int nsizes;
    const char *dir;           /* --dir, or NULL: mkdtemp */
    int json;
    uint64_t seed;
} opt = {.seed = 42};

static char scratch[4096];     /* the directory in use */
static int scratch_made;       /* 1: mkdtemp made it, remove it */
static volatile sig_atomic_t stopping;
static uint64_t read_rng;      /* lookups and ranges */

/* latency summary of one method (microseconds) */
struct lat {
    long n;
    double med, p99, min, max;
};

enum { IX_HASH = 0, IX_BTREE = 1, IX_UNIQUE = 2, N_IX = 3 };

static const struct {
    const char *name;
    int type, unique, vtype;
    const char *path;
    const char *label;
} ixs[N_IX] = {
    [IX_HASH] = {"name", BFDB_INDEX_HASH, 0, BFDB_IV_STRING, "$.name",
                 "HASH STRING $.name"},
    [IX_BTREE] = {"params", BFDB_INDEX_BTREE, 0, BFDB_IV_INTEGER, "$.params",
                  "BTREE INTEGER $.params"},
    [IX_UNIQUE] = {"name_unique", BFDB_INDEX_HASH, 1, BFDB_IV_STRING,
                   "$.name", "HASH STRING UNIQUE $.name"},
};

/* Set variant v carries the first v indexes of ixs[] */
static const char *const variant_names[N_VARIANTS] = {
    "no index", "+ hash $.name", "+ btree $.params",
    "+ unique hash $.name"};

/* one Set variant: its store, its random stream, what it measured */
struct setvar {
    bfdb_store *s;
    uint64_t rng, gen;
    long sets;
    double wall, cpu;          /* seconds, measured slices only */
    double rate[SLICES_MAX];   /* sets/s of each slice */
    int slices;
};

struct result {
    long n;
    double load_s, copy_s;
    double db_mb, ix_mb;       /* the file before indexes; name + params */
    double build_s[N_IX][N_VARIANTS]; /* by index, by copy (0: not built) */
    uint64_t built[N_IX];      /* entries, the last build of each */
    struct lat lk_api, lk_raw, lk_scan;
    struct lat rg_api, rg_raw, rg_scan;
    char plan_lookup[256], plan_range[256];
    double set_rate[N_VARIANTS], set_med[N_VARIANTS];
    double set_min[N_VARIANTS], set_max[N_VARIANTS];
    double set_wall_us[N_VARIANTS], set_cpu_us[N_VARIANTS];
    long set_n[N_VARIANTS];
    int set_slices;
    uint64_t check_missing, check_extra;
    long wrong;                /* results that failed their check */
};

static struct result results[MAX_SIZES];

/* ---- small helpers ----------------------------------------------------- */

static double
clock_s(clockid_t id)
{
    struct timespec ts;

    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double
now_s(void)
{
    return clock_s(CLOCK_MONOTONIC);
}

/* xorshift64*: reproducible for one --seed */
static uint64_t
rng_next(uint64_t *st)
{
    uint64_t x = *st;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *st = x;
    return x * UINT64_C(2685821657736338717);
}

static long
rng_below(uint64_t *st, long n)
{
    return (long)(rng_next(st) % (uint64_t)n);
}

static void progress(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static void
progress(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fflush(stderr);
}

static void
on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* pct - nearest-rank percentile p (0..1] of sorted v[0..n) */
static double
pct(const double *v, long n, double p)
{
    long r = (long)((double)n * p + 0.999999);

    if (r < 1)
        r = 1;
    if (r > n)
        r = n;
    return v[r - 1];
}

/* summarize - sort v[0..n) (microseconds) into l */
static void
summarize(double *v, long n, struct lat *l)
{
    memset(l, 0, sizeof(*l));
    if (n <= 0)
        return;
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    l->n = n;
    l->min = v[0];
    l->max = v[n - 1];
    l->med = pct(v, n, 0.5);
    l->p99 = pct(v, n, 0.99);
}

/* db_path - the store file of size n, copy v */
static void
db_path(char *buf, size_t cap, long n, int v)
{
    snprintf(buf, cap, "%s/index_bench_%ld_%d.db", scratch, n, v);
}

static void
remove_files(long n)
{
    static const char *const sfx[] = {"", "-wal", "-shm", "-journal"};
    char base[4160], p[4200];

    for (int v = 0; v < N_VARIANTS; v++) {
        db_path(base, sizeof(base), n, v);
        for (size_t i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++) {
            snprintf(p, sizeof(p), "%s%s", base, sfx[i]);
            if (unlink(p) != 0 && errno != ENOENT)
                progress("index_bench: unlink %s: %s\n", p, strerror(errno));
        }
    }
}

/* cleanup - remove every file this run made, and a mkdtemp directory */
static void
cleanup(void)
{
    if (scratch[0] == '\0')
        return;
    for (int i = 0; i < opt.nsizes; i++)
        remove_files(opt.sizes[i]);
    if (scratch_made && rmdir(scratch) != 0)
        progress("index_bench: rmdir %s: %s (left in place)\n", scratch,
                 strerror(errno));
}

/* make_value - the value of key i (gen 0: as loaded; else a Set's) */
static int
make_value(char *buf, size_t cap, long i, long params, uint64_t gen)
{
    char pad[PAD_LEN + 1];

    /* 84 filler bytes and a 16-hex-digit stamp: 100 bytes */
    memset(pad, 'a' + (int)(i % 26), PAD_LEN - 16);
    snprintf(pad + PAD_LEN - 16, 17, "%016" PRIx64, gen);
    return snprintf(buf, cap,
                    "{\"name\":\"m%ld\",\"framework\":\"fw%ld\","
                    "\"params\":%ld,\"pad\":\"%s\"}",
                    i, (long)((i + (long)gen) % 50), params, pad);
}

static int
make_key(char *buf, size_t cap, long i)
{
    return snprintf(buf, cap, "model:%ld", i);
}

/* params_of - the "params" field of one of our values; -1 if absent */
static long
params_of(const char *v, size_t len)
{
    const char *p = memmem(v, len, "\"params\":", 9);

    return p ? strtol(p + 9, NULL, 10) : -1;
}

static int
sql_fail(sqlite3 *db, const char *what)
{
    fprintf(stderr, "index_bench: %s: %s\n", what, sqlite3_errmsg(db));
    return -1;
}

static int
store_failed(bfdb_store *s, int rc, const char *what)
{
    fprintf(stderr, "index_bench: %s: %s (%s)\n", what,
            s ? bfdb_store_errmsg(s) : "", bfdb_strerror(rc));
    return -1;
}

/* sql_int - the first column of the first row of sql, or -1 */
static long long
sql_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    long long v = -1;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static double
db_megabytes(sqlite3 *db)
{
    long long pc = sql_int(db, "PRAGMA page_count");
    long long ps = sql_int(db, "PRAGMA page_size");

    return pc < 0 || ps < 0 ? 0.0 : (double)pc * (double)ps / 1e6;
}

/* plan_of - EXPLAIN QUERY PLAN of sql, its details joined by "; " */
static void
plan_of(sqlite3 *db, const char *sql, char *out, size_t cap)
{
    sqlite3_stmt *st;
    char *q = sqlite3_mprintf("EXPLAIN QUERY PLAN %s", sql);
    size_t o = 0;

    out[0] = '\0';
    if (q == NULL || sqlite3_prepare_v2(db, q, -1, &st, NULL) != SQLITE_OK) {
        sqlite3_free(q);
        snprintf(out, cap, "(unknown)");
        return;
    }
    sqlite3_free(q);
    while (sqlite3_step(st) == SQLITE_ROW && o + 4 < cap) {
        const char *d = (const char *)sqlite3_column_text(st, 3);
        int w = snprintf(out + o, cap - o, "%s%s", o ? "; " : "",
                         d ? d : "?");
        if (w < 0)
            break;
        o += (size_t)w;
        if (o >= cap)
            o = cap - 1;
    }
    sqlite3_finalize(st);
}

/* copy_file - dst (created or truncated) := src */
static int
copy_file(const char *src, const char *dst)
{
    static char buf[1 << 20];
    int in = open(src, O_RDONLY);
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int rc = -1;

    if (in < 0 || out < 0) {
        fprintf(stderr, "index_bench: open %s: %s\n", in < 0 ? src : dst,
                strerror(errno));
        goto out;
    }
    for (;;) {
        ssize_t n = read(in, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fprintf(stderr, "index_bench: read %s: %s\n", src,
                    strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        for (ssize_t o = 0; o < n;) {
            ssize_t w = write(out, buf + o, (size_t)(n - o));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                fprintf(stderr, "index_bench: write %s: %s\n", dst,
                        strerror(errno));
                goto out;
            }
            o += w;
        }
    }
    rc = 0;
out:
    if (in >= 0)
        close(in);
    if (out >= 0 && close(out) != 0 && rc == 0) {
        fprintf(stderr, "index_bench: close %s: %s\n", dst, strerror(errno));
        rc = -1;
    }
    return rc;
}

/* ---- load -------------------------------------------------------------- */

static int
load(const char *path, long n, struct result *r)
{
    char err[512], key[64], val[512];
    bfdb_store *s = NULL;
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int rc;

    /* the schema is buffdb's: let the store create the file */
    if ((rc = bfdb_store_open(&s, BFDB_STORE_KV, path, NULL, err,
                              sizeof(err))) != BFDB_OK) {
        fprintf(stderr, "index_bench: open %s: %s\n", path, err);
        return -1;
    }
    bfdb_store_close(s);

    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) !=
        SQLITE_OK) {
        sql_fail(db, "sqlite3_open_v2");
        sqlite3_close(db);
        return -1;
    }
    /* a scratch file written once: no WAL, no fsync, a big cache.  Its
     * single file is what gets copied; bfdb_store_open puts WAL back. */
    if (sqlite3_exec(db, "PRAGMA journal_mode=DELETE; PRAGMA synchronous=OFF;"
                     " PRAGMA cache_size=-262144", NULL, NULL, NULL) !=
        SQLITE_OK)
        goto fail;
    if (sqlite3_prepare_v2(db, "INSERT INTO kv (key, value) VALUES (?1, ?2)",
                           -1, &st, NULL) != SQLITE_OK)
        goto fail;
    double t0 = now_s();
    if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    for (long i = 0; i < n; i++) {
        int kl = make_key(key, sizeof(key), i);
        int vl = make_value(val, sizeof(val), i, (long)((i * 7) % n), 0);
        sqlite3_bind_text(st, 1, key, kl, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, val, vl, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            goto fail;
        sqlite3_reset(st);
        if ((i & 4095) == 0 && stopping)
            goto fail;
    }
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    r->load_s = now_s() - t0;
    r->db_mb = db_megabytes(db);
    sqlite3_finalize(st);
    if (sqlite3_close(db) != SQLITE_OK) {
        fprintf(stderr, "index_bench: closing %s failed\n", path);
        return -1;
    }
    return 0;
fail:
    if (!stopping)
        sql_fail(db, "load");
    sqlite3_finalize(st);
    sqlite3_close(db);
    return -1;
}

/* ---- indexes ----------------------------------------------------------- */

static int
index_create(bfdb_store *s, int which, int copy, struct result *r)
{
    struct bfdb_index_spec sp = {
        .name = (char *)ixs[which].name,
        .type = ixs[which].type,
        .unique = ixs[which].unique,
        .json_path = (char *)ixs[which].path,
        .value_type = ixs[which].vtype,
    };
    uint64_t n = 0;
    int rc;

    progress("  CreateIndex %s on copy %d...\n", ixs[which].label, copy);
    double t0 = now_s();
    if ((rc = bfdb_index_create(s, &sp, &n)) != BFDB_OK)
        return store_failed(s, rc, "bfdb_index_create");
    r->build_s[which][copy] = now_s() - t0;
    r->built[which] = n;
    if (n != (uint64_t)r->n) {
        fprintf(stderr, "index_bench: index %s holds %" PRIu64 " entries, "
                "not %ld\n", ixs[which].name, n, r->n);
        r->wrong++;
    }
    return 0;
}

/* ---- lookups and ranges ------------------------------------------------ */

/*
 * One measured operation: arg is the random name number (lookup) or the
 * lower params bound (range).  Returns 0 when the result checked out, 1
 * when it did not, -1 on an error.
 */
struct opctx {
    bfdb_store *s;
    sqlite3_stmt *st;   /* SQL methods: the statement, prepared once */
};
typedef int (*op_fn)(struct opctx *, long);

static int
check_lookup_row(long arg, const char *k, size_t klen)
{
    char want[64];
    int wl = make_key(want, sizeof(want), arg);

    return k != NULL && (size_t)wl == klen && memcmp(want, k, klen) == 0;
}

static int
op_lookup_api(struct opctx *c, long arg)
{
    char name[32];
    int nl = snprintf(name, sizeof(name), "m%ld", arg);
    bfdb_index_iter *it;
    const char *k, *v;
    size_t kl, vl;
    int rc, rows = 0, ok = 1;

    rc = bfdb_index_lookup(c->s, "name", name, (size_t)nl, 0, &it);
    if (rc != BFDB_OK)
        return store_failed(c->s, rc, "bfdb_index_lookup");
    while ((rc = bfdb_index_next(it, &k, &kl, &v, &vl)) == 1) {
        rows++;
        ok = ok && check_lookup_row(arg, k, kl);
    }
    bfdb_index_iter_close(it);
    if (rc < 0)
        return store_failed(c->s, rc, "bfdb_index_next");
    return ok && rows == 1 ? 0 : 1;
}

/* the SQL lookups: ?1 the name; rows (key, value) */
static int
op_lookup_sql(struct opctx *c, long arg)
{
    char name[32];
    int nl = snprintf(name, sizeof(name), "m%ld", arg);
    int rc, rows = 0, ok = 1;

    sqlite3_bind_text(c->st, 1, name, nl, SQLITE_STATIC);
    while ((rc = sqlite3_step(c->st)) == SQLITE_ROW) {
        rows++;
        ok = ok && check_lookup_row(
                       arg, (const char *)sqlite3_column_text(c->st, 0),
                       (size_t)sqlite3_column_bytes(c->st, 0));
    }
    sqlite3_reset(c->st);
    if (rc != SQLITE_DONE)
        return sql_fail(sqlite3_db_handle(c->st), "lookup");
    return ok && rows == 1 ? 0 : 1;
}

/* check_range_row - params in [lo, lo + width) and not below the last */
static int
check_range_row(long lo, const char *v, size_t vl, long *last)
{
    long p = v ? params_of(v, vl) : -1;
    int ok = p >= lo && p < lo + RANGE_WIDTH && p >= *last;

    *last = p;
    return ok;
}

static int
op_range_api(struct opctx *c, long lo)
{
    char lb[32], ub[32];
    int ll = snprintf(lb, sizeof(lb), "%ld", lo);
    int ul = snprintf(ub, sizeof(ub), "%ld", lo + RANGE_WIDTH - 1);
    bfdb_index_iter *it;
    const char *k, *v;
    size_t kl, vl;
    long last = -1;
    int rc, rows = 0, ok = 1;

    rc = bfdb_index_range(c->s, "params", lb, (size_t)ll, ub, (size_t)ul, 0,
                          &it);
    if (rc != BFDB_OK)
        return store_failed(c->s, rc, "bfdb_index_range");
    while ((rc = bfdb_index_next(it, &k, &kl, &v, &vl)) == 1) {
        rows++;
        ok = ok && check_range_row(lo, v, vl, &last);
    }
    bfdb_index_iter_close(it);
    if (rc < 0)
        return store_failed(c->s, rc, "bfdb_index_next");
    return ok && rows == RANGE_WIDTH ? 0 : 1;
}

/* the SQL ranges: ?1 lower, ?2 upper; rows (key, value) */
static int
op_range_sql(struct opctx *c, long lo)
{
    long last = -1;
    int rc, rows = 0, ok = 1;

    sqlite3_bind_int64(c->st, 1, lo);
    sqlite3_bind_int64(c->st, 2, lo + RANGE_WIDTH - 1);
    while ((rc = sqlite3_step(c->st)) == SQLITE_ROW) {
        rows++;
        ok = ok && check_range_row(
                       lo, (const char *)sqlite3_column_text(c->st, 1),
                       (size_t)sqlite3_column_bytes(c->st, 1), &last);
    }
    sqlite3_reset(c->st);
    if (rc != SQLITE_DONE)
        return sql_fail(sqlite3_db_handle(c->st), "range");
    return ok && rows == RANGE_WIDTH ? 0 : 1;
}

/*
 * measure - run fn on random arguments in [0, span) until max_ops have
 * run or max_s has passed (at least one); latencies into l (may be NULL:
 * a warm-up).  -1 on an error or a signal.
 */
static int
measure(op_fn fn, struct opctx *c, long span, long max_ops, double max_s,
        struct lat *l, long *wrong)
{
    double *v = malloc((size_t)max_ops * sizeof(*v));
    double start = now_s();
    long n = 0;

    if (v == NULL) {
        fprintf(stderr, "index_bench: out of memory\n");
        return -1;
    }
    while (n < max_ops && !stopping) {
        long arg = rng_below(&read_rng, span);
        double t0 = now_s();
        int rc = fn(c, arg);
        double t1 = now_s();
        if (rc < 0) {
            free(v);
            return -1;
        }
        if (rc > 0 && (*wrong)++ < 5)
            fprintf(stderr, "index_bench: wrong result for argument %ld\n",
                    arg);
        v[n++] = (t1 - t0) * 1e6;
        if (t1 - start >= max_s)
            break;
    }
    if (l)
        summarize(v, n, l);
    free(v);
    return stopping ? -1 : 0;
}

static int
prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st)
{
    if (sqlite3_prepare_v2(db, sql, -1, st, NULL) != SQLITE_OK)
        return sql_fail(db, "prepare");
    return 0;
}

static const char scan_lookup_sql[] =
    "SELECT key, value FROM kv WHERE json_extract(value,'$.name') = ?1"
    " ORDER BY key";
static const char scan_range_sql[] =
    "SELECT key, value FROM kv WHERE json_extract(value,'$.params')"
    " BETWEEN ?1 AND ?2 ORDER BY json_extract(value,'$.params'), key";

/* measure_sql - prepare sql on db, then measure fn with it */
static int
measure_sql(sqlite3 *db, const char *sql, op_fn fn, long span, long max_ops,
            double max_s, struct lat *l, long *wrong)
{
    struct opctx c = {0};
    int rc;

    if (prepare(db, sql, &c.st) < 0)
        return -1;
    rc = measure(fn, &c, span, max_ops, max_s, l, wrong);
    sqlite3_finalize(c.st);
    return rc;
}

/* reads - lookups and ranges on s (the file at path: name and params) */
static int
reads(bfdb_store *s, const char *path, struct result *r)
{
    sqlite3 *db = NULL;
    struct opctx c = {.s = s};
    char sql[256];
    long long ixn, ixp;
    long span = r->n - RANGE_WIDTH + 1;
    int rc = -1;

    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) !=
        SQLITE_OK) {
        sql_fail(db, "sqlite3_open_v2");
        sqlite3_close(db);
        return -1;
    }
    sqlite3_busy_timeout(db, 10000);
    r->ix_mb = db_megabytes(db) - r->db_mb;
    ixn = sql_int(db, "SELECT id FROM buffdb_index WHERE name = 'name'");
    ixp = sql_int(db, "SELECT id FROM buffdb_index WHERE name = 'params'");
    if (ixn < 0 || ixp < 0) {
        sql_fail(db, "reading the index ids");
        goto out;
    }
    plan_of(db, scan_lookup_sql, r->plan_lookup, sizeof(r->plan_lookup));
    plan_of(db, scan_range_sql, r->plan_range, sizeof(r->plan_range));

    progress("  lookups...\n");
    if (measure(op_lookup_api, &c, r->n, OPS_WARMUP, OPS_SECONDS, NULL,
                &r->wrong) < 0 ||
        measure(op_lookup_api, &c, r->n, OPS_MAX, OPS_SECONDS, &r->lk_api,
                &r->wrong) < 0)
        goto out;
    /* the statement iter_open builds, over the same tables */
    snprintf(sql, sizeof(sql),
             "SELECT x.k, kv.value FROM buffdb_ix_%lld x JOIN kv ON"
             " kv.key = x.k WHERE x.v = CAST(?1 AS BLOB) ORDER BY x.v, x.k",
             ixn);
    if (measure_sql(db, sql, op_lookup_sql, r->n, OPS_MAX, OPS_SECONDS,
                    &r->lk_raw, &r->wrong) < 0)
        goto out;
    progress("  lookups by full scan...\n");
    if (measure_sql(db, scan_lookup_sql, op_lookup_sql, r->n, SCAN_RUNS_MAX,
                    SCAN_SECONDS, &r->lk_scan, &r->wrong) < 0)
        goto out;

    progress("  ranges...\n");
    if (measure(op_range_api, &c, span, OPS_WARMUP, OPS_SECONDS, NULL,
                &r->wrong) < 0 ||
        measure(op_range_api, &c, span, OPS_MAX, OPS_SECONDS, &r->rg_api,
                &r->wrong) < 0)
        goto out;
    snprintf(sql, sizeof(sql),
             "SELECT x.k, kv.value FROM buffdb_ix_%lld x JOIN kv ON"
             " kv.key = x.k WHERE x.v >= ?1 AND x.v <= ?2 ORDER BY x.v, x.k",
             ixp);
    if (measure_sql(db, sql, op_range_sql, span, OPS_MAX, OPS_SECONDS,
                    &r->rg_raw, &r->wrong) < 0)
        goto out;
    progress("  ranges by full scan...\n");
    if (measure_sql(db, scan_range_sql, op_range_sql, span, SCAN_RUNS_MAX,
                    SCAN_SECONDS, &r->rg_scan, &r->wrong) < 0)
        goto out;
    rc = 0;
out:
    sqlite3_close(db);
    return rc;
}

/* ---- Sets -------------------------------------------------------------- */

/* set_some - count Sets of random keys on variant v; time them if t */
static int
set_some(struct setvar *v, long n, long count, double *wall, double *cpu)
{
    char key[64], val[512];
    double w0 = now_s(), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);

    for (long j = 0; j < count; j++) {
        long i = rng_below(&v->rng, n);
        long params = rng_below(&v->rng, n);
        int kl = make_key(key, sizeof(key), i);
        int vl = make_value(val, sizeof(val), i, params, ++v->gen);
        int rc = bfdb_kv_set(v->s, key, (size_t)kl, val, (size_t)vl);
        if (rc != BFDB_OK)
            return store_failed(v->s, rc, "bfdb_kv_set");
        if ((j & 255) == 0 && stopping)
            return -1;
    }
    if (wall)
        *wall = now_s() - w0;
    if (cpu)
        *cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    return 0;
}

static int
sets(struct setvar *var, struct result *r)
{
    uint64_t seed = opt.seed * 7919 + (uint64_t)r->n;

    for (int v = 0; v < N_VARIANTS; v++) {
        var[v].rng = seed ? seed : 1;     /* the same Sets on every copy */
        var[v].gen = 0;
        if (set_some(&var[v], r->n, SETS_WARMUP, NULL, NULL) < 0)
            return -1;
    }
    progress("  Sets, %d variants interleaved...\n", N_VARIANTS);
    double start = now_s();
    int slice;
    for (slice = 0; slice < SLICES_MAX; slice++) {
        for (int k = 0; k < N_VARIANTS; k++) {
            struct setvar *v = &var[(slice + k) % N_VARIANTS];
            double w, c;
            if (set_some(v, r->n, SLICE, &w, &c) < 0)
                return -1;
            v->wall += w;
            v->cpu += c;
            v->sets += SLICE;
            v->rate[v->slices++] = SLICE / w;
        }
        if (now_s() - start >= N_VARIANTS * SETS_SECONDS) {
            slice++;
            break;
        }
    }
    r->set_slices = slice;
    for (int v = 0; v < N_VARIANTS; v++) {
        double sorted[SLICES_MAX];
        memcpy(sorted, var[v].rate, sizeof(double) * (size_t)var[v].slices);
        qsort(sorted, (size_t)var[v].slices, sizeof(double), cmp_double);
        r->set_n[v] = var[v].sets;
        r->set_rate[v] = (double)var[v].sets / var[v].wall;
        r->set_med[v] = pct(sorted, var[v].slices, 0.5);
        r->set_min[v] = sorted[0];
        r->set_max[v] = sorted[var[v].slices - 1];
        r->set_wall_us[v] = var[v].wall / (double)var[v].sets * 1e6;
        r->set_cpu_us[v] = var[v].cpu / (double)var[v].sets * 1e6;
    }

    progress("  checking copy 3's indexes against full scans...\n");
    for (int w = 0; w < N_IX; w++) {
        uint64_t missing = 0, extra = 0;
        int rc = bfdb_index_check(var[3].s, ixs[w].name, &missing, &extra);
        if (rc != BFDB_OK)
            return store_failed(var[3].s, rc, "bfdb_index_check");
        r->check_missing += missing;
        r->check_extra += extra;
        if (missing || extra) {
            fprintf(stderr, "index_bench: index %s: %" PRIu64 " missing, %"
                    PRIu64 " extra\n", ixs[w].name, missing, extra);
            r->wrong++;
        }
    }
    return 0;
}

/* ---- one size ---------------------------------------------------------- */

static int
run_size(long n, struct result *r)
{
    char path[N_VARIANTS][4160], err[512];
    struct setvar var[N_VARIANTS];
    struct bfdb_store_opts o = {.sync = BFDB_SYNC_NORMAL};
    int rc = -1;

    memset(r, 0, sizeof(*r));
    memset(var, 0, sizeof(var));
    r->n = n;
    for (int v = 0; v < N_VARIANTS; v++)
        db_path(path[v], sizeof(path[v]), n, v);
    remove_files(n);
    progress("%ld keys: loading...\n", n);
    if (load(path[0], n, r) < 0)
        goto out;
    progress("  loaded in %.2f s; copying...\n", r->load_s);
    double t0 = now_s();
    for (int v = 1; v < N_VARIANTS; v++)
        if (copy_file(path[0], path[v]) < 0)
            goto out;
    r->copy_s = now_s() - t0;
    for (int v = 0; v < N_VARIANTS; v++) {
        int e = bfdb_store_open(&var[v].s, BFDB_STORE_KV, path[v], &o, err,
                                sizeof(err));
        if (e != BFDB_OK) {
            fprintf(stderr, "index_bench: open %s: %s\n", path[v], err);
            goto out;
        }
    }
    /* copy v gets the first v indexes; copy 2 first: it serves the reads */
    static const int order[][2] = {{2, IX_HASH}, {2, IX_BTREE}, {1, IX_HASH},
                                   {3, IX_HASH}, {3, IX_BTREE},
                                   {3, IX_UNIQUE}};
    for (size_t k = 0; k < sizeof(order) / sizeof(order[0]); k++)
        if (index_create(var[order[k][0]].s, order[k][1], order[k][0], r) <
            0)
            goto out;
    if (reads(var[2].s, path[2], r) < 0 || sets(var, r) < 0)
        goto out;
    rc = 0;
out:
    for (int v = 0; v < N_VARIANTS; v++)
        bfdb_store_close(var[v].s);
    remove_files(n);
    return rc;
}

/* ---- report ------------------------------------------------------------ */

static void
read_first_line(const char *file, const char *prefix, char *out, size_t cap)
{
    FILE *f = fopen(file, "r");
    char line[512];

    snprintf(out, cap, "unknown");
    if (f == NULL)
        return;
    while (fgets(line, sizeof(line), f)) {
        if (prefix == NULL || strncmp(line, prefix, strlen(prefix)) == 0) {
            const char *p = line;
            if (prefix && (p = strchr(line, ':')) != NULL)
                p++;
            else
                p = line;
            while (*p == ' ' || *p == '\t')
                p++;
            size_t len = strcspn(p, "\n");
            if (len >= cap)
                len = cap - 1;
            memcpy(out, p, len);
            out[len] = '\0';
            break;
        }
    }
    fclose(f);
}

/* fmt_us - a latency in us, ms or s */
static const char *
fmt_us(double us, char *buf, size_t cap)
{
    if (us < 1000)
        snprintf(buf, cap, "%.1f us", us);
    else if (us < 1e6)
        snprintf(buf, cap, "%.1f ms", us / 1e3);
    else
        snprintf(buf, cap, "%.2f s", us / 1e6);
    return buf;
}

static void
print_lat_row(const char *label, const struct lat *l)
{
    char a[32], b[32], c[32], d[32];

    printf("  %-34s %6ld %10s %10s %10s %10s\n", label, l->n,
           fmt_us(l->med, a, sizeof(a)), fmt_us(l->p99, b, sizeof(b)),
           fmt_us(l->min, c, sizeof(c)), fmt_us(l->max, d, sizeof(d)));
}

static void
print_builds(const struct result *r, int w)
{
    int first = 1;

    printf("  %-26s", ixs[w].label);
    for (int v = 0; v < N_VARIANTS; v++)
        if (r->build_s[w][v] > 0) {
            printf("%s%.2f s", first ? " " : ", ", r->build_s[w][v]);
            first = 0;
        }
    printf("  (%" PRIu64 " entries)\n", r->built[w]);
}

static void
print_text(const char *cpu, const char *kernel, const char *load0,
           const char *load1)
{
    printf("index_bench: buffdb %s, secondary indexes in the store layer\n",
           PACKAGE_VERSION);
    printf("machine: nproc %ld, %s, %s\n", sysconf(_SC_NPROCESSORS_ONLN),
           cpu, kernel);
    printf("SQLite %s; load average at start %s; at end %s\n",
           sqlite3_libversion(), load0, load1);
    printf("scratch: %s (%s); seed %" PRIu64 "\n", scratch,
           scratch_made ? "mkdtemp, removed" : "--dir; files removed",
           opt.seed);
    for (int i = 0; i < opt.nsizes; i++) {
        const struct result *r = &results[i];
        printf("\n== %ld keys ==\n", r->n);
        printf("load (raw SQLite, one transaction): %.2f s (%.0f rows/s);"
               " file %.1f MB; 3 copies %.2f s\n", r->load_s,
               (double)r->n / r->load_s, r->db_mb, r->copy_s);
        printf("CreateIndex, each build on its own copy:\n");
        for (int w = 0; w < N_IX; w++)
            print_builds(r, w);
        printf("  the name and params index tables add %.1f MB\n", r->ix_mb);

        printf("\nLookup name = \"m<random>\", 1 row  runs     median"
               "        p99        min        max\n");
        print_lat_row("bfdb_index_lookup + next", &r->lk_api);
        print_lat_row("index table, SQL prepared once", &r->lk_raw);
        print_lat_row("full scan, SQL prepared once", &r->lk_scan);
        printf("  scan / index (medians): %.0fx; scan / index table SQL:"
               " %.0fx\n", r->lk_scan.med / r->lk_api.med,
               r->lk_scan.med / r->lk_raw.med);
        printf("  scan plan: %s\n", r->plan_lookup);

        printf("\nRange of %d params, %d rows     runs     median"
               "        p99        min        max\n", RANGE_WIDTH,
               RANGE_WIDTH);
        print_lat_row("bfdb_index_range + next", &r->rg_api);
        print_lat_row("index table, SQL prepared once", &r->rg_raw);
        print_lat_row("full scan, SQL prepared once", &r->rg_scan);
        printf("  scan / index (medians): %.0fx; scan / index table SQL:"
               " %.0fx\n", r->rg_scan.med / r->rg_api.med,
               r->rg_scan.med / r->rg_raw.med);
        printf("  scan plan: %s\n", r->plan_range);

        printf("\nSet: bfdb_kv_set, autocommit, synchronous NORMAL; %d"
               " interleaved rounds of %d Sets per variant\n",
               r->set_slices, SLICE);
        printf("  %-22s %8s %8s %17s %8s %8s %8s %8s\n", "indexes", "sets/s",
               "median", "slices min..max", "wall us", "CPU us", "vs none",
               "vs prev");
        for (int v = 0; v < N_VARIANTS; v++) {
            char mm[32];
            snprintf(mm, sizeof(mm), "%.0f..%.0f", r->set_min[v],
                     r->set_max[v]);
            printf("  %-22s %8.0f %8.0f %17s %8.1f %8.1f %7.2fx %7.2fx\n",
                   variant_names[v], r->set_rate[v], r->set_med[v], mm,
                   r->set_wall_us[v], r->set_cpu_us[v],
                   r->set_rate[v] / r->set_rate[0],
                   r->set_rate[v] / r->set_rate[v ? v - 1 : 0]);
        }
        printf("  each index adds per Set (wall / CPU):");
        for (int v = 1; v < N_VARIANTS; v++)
            printf("%s %s %+.1f / %+.1f us", v > 1 ? "," : "",
                   variant_names[v] + 2,
                   r->set_wall_us[v] - r->set_wall_us[v - 1],
                   r->set_cpu_us[v] - r->set_cpu_us[v - 1]);
        printf("\n");
        printf("check of copy 3 after the Sets (3 indexes): %" PRIu64
               " missing, %" PRIu64 " extra; wrong results: %ld\n",
               r->check_missing, r->check_extra, r->wrong);
    }

    printf("\n== summary (latency medians; Sets/s over all slices) ==\n");
    printf("%9s %9s %9s %7s %9s %9s %7s %7s %7s %7s %7s\n", "keys", "lookup",
           "scan", "ratio", "range", "scan", "ratio", "set 0", "1 ix",
           "2 ix", "3 ix");
    for (int i = 0; i < opt.nsizes; i++) {
        const struct result *r = &results[i];
        char a[32], b[32], c[32], d[32];
        printf("%9ld %9s %9s %6.0fx %9s %9s %6.0fx %7.0f %7.0f %7.0f %7.0f\n",
               r->n, fmt_us(r->lk_api.med, a, sizeof(a)),
               fmt_us(r->lk_scan.med, b, sizeof(b)),
               r->lk_scan.med / r->lk_api.med,
               fmt_us(r->rg_api.med, c, sizeof(c)),
               fmt_us(r->rg_scan.med, d, sizeof(d)),
               r->rg_scan.med / r->rg_api.med, r->set_rate[0],
               r->set_rate[1], r->set_rate[2], r->set_rate[3]);
    }
}

static void
json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

static void
json_lat(const char *name, const struct lat *l)
{
    printf("\"%s\":{\"n\":%ld,\"median_us\":%.3f,\"p99_us\":%.3f,"
           "\"min_us\":%.3f,\"max_us\":%.3f},", name, l->n, l->med, l->p99,
           l->min, l->max);
}

static void
print_json(const char *cpu, const char *kernel, const char *load0,
           const char *load1)
{
    printf("{\"buffdb\":\"%s\",\"sqlite\":\"%s\",\"nproc\":%ld,\"cpu\":",
           PACKAGE_VERSION, sqlite3_libversion(),
           sysconf(_SC_NPROCESSORS_ONLN));
    json_str(cpu);
    printf(",\"kernel\":");
    json_str(kernel);
    printf(",\"loadavg_start\":");
    json_str(load0);
    printf(",\"loadavg_end\":");
    json_str(load1);
    printf(",\"seed\":%" PRIu64 ",\"sizes\":[", opt.seed);
    for (int i = 0; i < opt.nsizes; i++) {
        const struct result *r = &results[i];
        printf("%s{\"keys\":%ld,\"load_s\":%.3f,\"db_mb\":%.2f,"
               "\"index_mb\":%.2f,\"create_s\":{", i ? "," : "", r->n,
               r->load_s, r->db_mb, r->ix_mb);
        for (int w = 0; w < N_IX; w++) {
            int first = 1;
            printf("%s\"%s\":[", w ? "," : "", ixs[w].name);
            for (int v = 0; v < N_VARIANTS; v++)
                if (r->build_s[w][v] > 0) {
                    printf("%s%.3f", first ? "" : ",", r->build_s[w][v]);
                    first = 0;
                }
            printf("]");
        }
        printf("},\"lookup\":{");
        json_lat("index", &r->lk_api);
        json_lat("index_sql", &r->lk_raw);
        json_lat("scan", &r->lk_scan);
        printf("\"plan\":");
        json_str(r->plan_lookup);
        printf("},\"range\":{");
        json_lat("index", &r->rg_api);
        json_lat("index_sql", &r->rg_raw);
        json_lat("scan", &r->rg_scan);
        printf("\"plan\":");
        json_str(r->plan_range);
        printf("},\"set\":[");
        for (int v = 0; v < N_VARIANTS; v++)
            printf("%s{\"indexes\":%d,\"sets\":%ld,\"per_s\":%.1f,"
                   "\"slice_median_per_s\":%.1f,\"slice_min_per_s\":%.1f,"
                   "\"slice_max_per_s\":%.1f,\"wall_us\":%.2f,"
                   "\"cpu_us\":%.2f}", v ? "," : "", v, r->set_n[v],
                   r->set_rate[v], r->set_med[v], r->set_min[v],
                   r->set_max[v], r->set_wall_us[v], r->set_cpu_us[v]);
        printf("],\"check\":{\"missing\":%" PRIu64 ",\"extra\":%" PRIu64 "},"
               "\"wrong\":%ld}", r->check_missing, r->check_extra, r->wrong);
    }
    printf("]}\n");
}

/* ---- main -------------------------------------------------------------- */

static void
usage(FILE *f)
{
    fprintf(f,
"usage: index_bench [-n N[,N...]] [--quick] [--dir DIR] [--json] [--seed S]\n"
"  -n N[,N...]   key counts (default 100000,1000000; 1000 to 100000000,\n"
"                not divisible by 7)\n"
"  --quick       10000 keys only\n"
"  --dir DIR     scratch directory (default: a mkdtemp under /tmp)\n"
"  --json        one JSON object on stdout instead of the text report\n"
"  --seed S      random seed (default 42)\n");
}

static int
add_sizes(const char *arg)
{
    const char *p = arg;

    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < 1000 || v > 100000000 || v % 7 == 0 ||
            (*end != ',' && *end != '\0') || opt.nsizes == MAX_SIZES)
            return -1;
        opt.sizes[opt.nsizes++] = v;
        p = *end == ',' ? end + 1 : end;
    }
    return 0;
}

int
main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"quick", no_argument, NULL, 'q'},
        {"dir", required_argument, NULL, 'd'},
        {"json", no_argument, NULL, 'j'},
        {"seed", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int quick = 0, c, failed = 0, done = 0;

    while ((c = getopt_long(argc, argv, "n:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'n':
            if (add_sizes(optarg) < 0) {
                fprintf(stderr, "index_bench: bad -n %s\n", optarg);
                usage(stderr);
                return 2;
            }
            break;
        case 'q':
            quick = 1;
            break;
        case 'd':
            opt.dir = optarg;
            break;
        case 'j':
            opt.json = 1;
            break;
        case 's':
            opt.seed = strtoull(optarg, NULL, 10);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    if (quick) {
        opt.nsizes = 1;
        opt.sizes[0] = 10000;
    } else if (opt.nsizes == 0) {
        opt.nsizes = 2;
        opt.sizes[0] = 100000;
        opt.sizes[1] = 1000000;
    }
    read_rng = opt.seed ? opt.seed : 1;

    if (opt.dir) {
        struct stat sb;
        if (stat(opt.dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
            fprintf(stderr, "index_bench: --dir %s: not a directory\n",
                    opt.dir);
            return 2;
        }
        snprintf(scratch, sizeof(scratch), "%s", opt.dir);
    } else {
        snprintf(scratch, sizeof(scratch), "/tmp/index_bench.XXXXXX");
        if (mkdtemp(scratch) == NULL) {
            fprintf(stderr, "index_bench: mkdtemp: %s\n", strerror(errno));
            return 1;
        }
        scratch_made = 1;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    char cpu[256], kernel[256], load0[128], load1[128];
    struct utsname u;
    read_first_line("/proc/cpuinfo", "model name", cpu, sizeof(cpu));
    read_first_line("/proc/loadavg", NULL, load0, sizeof(load0));
    if (uname(&u) == 0)
        snprintf(kernel, sizeof(kernel), "%s %s %s", u.sysname, u.release,
                 u.machine);
    else
        snprintf(kernel, sizeof(kernel), "unknown");

    for (int i = 0; i < opt.nsizes && !stopping; i++) {
        if (run_size(opt.sizes[i], &results[i]) < 0) {
            failed = 1;
            break;
        }
        if (results[i].wrong)
            failed = 1;
        done++;
    }
    read_first_line("/proc/loadavg", NULL, load1, sizeof(load1));
    cleanup();
    if (stopping) {
        fprintf(stderr, "index_bench: interrupted\n");
        return 1;
    }
    opt.nsizes = done;
    if (done) {
        if (opt.json)
            print_json(cpu, kernel, load0, load1);
        else
            print_text(cpu, kernel, load0, load1);
    }
    return failed ? 1 : 0;
}
