/*
 * test_index.c - secondary indexes on the kv store (src/store/index.c):
 * create, bad specs, key prefixes, JSON paths, value types and their
 * order, Lookup and Range, maintenance by every write path (kv_set,
 * kv_delete, raw SQL, a transaction's commit, another SQLite program),
 * unique indexes (also across two racing processes), drop, persistence,
 * check/rebuild/recover, the running mark and a 100,000-key index.
 *
 * Criterion forks every test and may run them in parallel: each test gets
 * its own directory from th_tmpdir() in the suite's .init and removes it in
 * .fini.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/error.h"
#include "store/store.h"
#include "../helpers/helpers.h"

/* ---- fixtures ---------------------------------------------------------- */

static char *g_dir;

static void
setup(void)
{
    g_dir = th_tmpdir();
    cr_assert_not_null(g_dir, "th_tmpdir: %s", strerror(errno));
}

static void
teardown(void)
{
    if (g_dir != NULL) {
        chmod(g_dir, 0700);
        th_rmrf(g_dir);
    }
    free(g_dir);
    g_dir = NULL;
}

TestSuite(create, .init = setup, .fini = teardown, .timeout = 30.);
TestSuite(values, .init = setup, .fini = teardown, .timeout = 30.);
TestSuite(lookup, .init = setup, .fini = teardown, .timeout = 30.);
TestSuite(maintain, .init = setup, .fini = teardown, .timeout = 30.);
TestSuite(unique, .init = setup, .fini = teardown, .timeout = 60.);
TestSuite(manage, .init = setup, .fini = teardown, .timeout = 30.);
TestSuite(scale, .init = setup, .fini = teardown, .timeout = 120.);

/* ---- helpers ----------------------------------------------------------- */

#define CHECK_OK(s, expr)                                                    \
    do {                                                                     \
        int rc_ = (expr);                                                    \
        cr_assert_eq(rc_, BFDB_OK, "%s: %s (%d)", #expr,                     \
                     bfdb_store_errmsg(s), rc_);                             \
    } while (0)

#define CHECK_RC(s, want, expr)                                              \
    do {                                                                     \
        int rc_ = (expr);                                                    \
        cr_assert_eq(rc_, (want), "%s: got %d, expected %d (%s)", #expr,     \
                     rc_, (want), bfdb_store_errmsg(s));                     \
    } while (0)

static char *
kv_path(void)
{
    return th_path(g_dir, "kv.db");
}

static bfdb_store *
open_kv(void)
{
    char err[512] = "";
    bfdb_store *s = NULL;
    char *p = kv_path();
    int rc = bfdb_store_open(&s, BFDB_STORE_KV, p, NULL, err, sizeof(err));

    cr_assert_eq(rc, BFDB_OK, "open %s: %s (%d)", p, err, rc);
    cr_assert_not_null(s);
    free(p);
    return s;
}

#define KV_SET(s, k, v) CHECK_OK(s, bfdb_kv_set(s, k, strlen(k), v, strlen(v)))

static void
kv_expect(bfdb_store *s, const char *key, const char *val)
{
    char *v = NULL;
    size_t n = 0;

    CHECK_OK(s, bfdb_kv_get(s, key, strlen(key), &v, &n));
    cr_assert_eq(n, strlen(val), "key %s: value \"%s\", expected \"%s\"",
                 key, v, val);
    cr_assert_eq(memcmp(v, val, n), 0, "key %s: value \"%s\", expected "
                 "\"%s\"", key, v, val);
    free(v);
}

static void
kv_expect_missing(bfdb_store *s, const char *key)
{
    char *v = NULL;
    size_t n = 0;
    int rc = bfdb_kv_get(s, key, strlen(key), &v, &n);

    cr_assert_eq(rc, BFDB_ENOTFOUND, "key %s should be missing: %d (%s)",
                 key, rc, bfdb_store_errmsg(s));
    free(v);
}

/* exec - raw SQL through buffdb's query layer; returns the rc */
static int
exec(bfdb_store *s, const char *sql)
{
    uint64_t changes = 0;
    return bfdb_query_execute(s, sql, strlen(sql), &changes);
}

#define EXEC(s, sql) CHECK_OK(s, exec(s, sql))

/* sql_int - the first column of the first row of a raw SELECT */
static int64_t
sql_int(bfdb_store *s, const char *sql)
{
    bfdb_query *q = NULL;
    int64_t v;

    CHECK_OK(s, bfdb_query_open(s, sql, strlen(sql), &q));
    int rc = bfdb_query_next(q);
    cr_assert_eq(rc, 1, "%s: no row (%d: %s)", sql, rc, bfdb_store_errmsg(s));
    v = bfdb_query_int(q, 0);
    bfdb_query_close(q);
    return v;
}

static struct bfdb_index_spec
mkspec(const char *name, int type, int unique, const char *prefix,
       const char *path, int vtype)
{
    struct bfdb_index_spec sp;

    memset(&sp, 0, sizeof(sp));
    sp.name = (char *)name;
    sp.type = type;
    sp.unique = unique;
    sp.key_prefix = (char *)(prefix ? prefix : "");
    sp.prefix_len = prefix ? strlen(prefix) : 0;
    sp.json_path = (char *)path;
    sp.value_type = vtype;
    return sp;
}

/* create - define an index, assert success and the count indexed */
static void
create(bfdb_store *s, const char *name, int type, int unique,
       const char *prefix, const char *path, int vtype, uint64_t expect)
{
    struct bfdb_index_spec sp = mkspec(name, type, unique, prefix, path,
                                       vtype);
    uint64_t n = 12345;

    CHECK_OK(s, bfdb_index_create(s, &sp, &n));
    cr_assert_eq(n, expect, "index %s: %" PRIu64 " keys indexed, expected "
                 "%" PRIu64, name, n, expect);
}

static int
create_rc(bfdb_store *s, const char *name, int type, int unique,
          const char *prefix, const char *path, int vtype)
{
    struct bfdb_index_spec sp = mkspec(name, type, unique, prefix, path,
                                       vtype);
    return bfdb_index_create(s, &sp, NULL);
}

/*
 * drain - read an iterator to its end and render it: "k1 k2 k3", or with
 * values "k1=v1 k2=v2"; bytes below 0x20 appear as \xNN.  Closes it.
 */
static char *
drain(bfdb_store *s, bfdb_index_iter *it, int with_values)
{
    size_t cap = 4096, len = 0;
    char *out = malloc(cap);
    const char *k, *v;
    size_t kl, vl;
    int rc;

    cr_assert_not_null(out);
    out[0] = '\0';
    while ((rc = bfdb_index_next(it, &k, &kl, &v, &vl)) == 1) {
        size_t need = len + (kl + vl) * 4 + 4;
        if (need >= cap) {
            while (need >= cap)
                cap *= 2;
            out = realloc(out, cap);
            cr_assert_not_null(out);
        }
        if (len)
            out[len++] = ' ';
        for (size_t i = 0; i < kl; i++) {
            unsigned char c = (unsigned char)k[i];
            if (c < 0x20)
                len += (size_t)sprintf(out + len, "\\x%02x", c);
            else
                out[len++] = (char)c;
        }
        if (with_values) {
            out[len++] = '=';
            for (size_t i = 0; i < vl; i++) {
                unsigned char c = (unsigned char)v[i];
                if (c < 0x20)
                    len += (size_t)sprintf(out + len, "\\x%02x", c);
                else
                    out[len++] = (char)c;
            }
        }
        out[len] = '\0';
    }
    cr_assert_eq(rc, 0, "bfdb_index_next: %d (%s)", rc, bfdb_store_errmsg(s));
    bfdb_index_iter_close(it);
    return out;
}

/* lookup_n - the keys (and values) Lookup returns for value/vlen */
static char *
lookup_n(bfdb_store *s, const char *name, const char *value, size_t vlen,
         uint32_t limit, int with_values)
{
    bfdb_index_iter *it = NULL;

    CHECK_OK(s, bfdb_index_lookup(s, name, value, vlen, limit, &it));
    cr_assert_not_null(it);
    return drain(s, it, with_values);
}

static char *
range(bfdb_store *s, const char *name, const char *lo, const char *hi,
      uint32_t limit, int with_values)
{
    bfdb_index_iter *it = NULL;

    CHECK_OK(s, bfdb_index_range(s, name, lo, lo ? strlen(lo) : 0, hi,
                                 hi ? strlen(hi) : 0, limit, &it));
    cr_assert_not_null(it);
    return drain(s, it, with_values);
}

/* EXPECT_LOOKUP(s, index, value, "k1 k2") - keys only, no limit */
#define EXPECT_LOOKUP(s, ix, value, want)                                    \
    do {                                                                     \
        char *got_ = lookup_n(s, ix, value, strlen(value), 0, 0);            \
        cr_assert_str_eq(got_, want, "lookup %s = \"%s\": got \"%s\", "      \
                         "expected \"%s\"", ix, value, got_, want);          \
        free(got_);                                                          \
    } while (0)

#define EXPECT_LOOKUP_KV(s, ix, value, want)                                 \
    do {                                                                     \
        char *got_ = lookup_n(s, ix, value, strlen(value), 0, 1);            \
        cr_assert_str_eq(got_, want, "lookup %s = \"%s\": got \"%s\", "      \
                         "expected \"%s\"", ix, value, got_, want);          \
        free(got_);                                                          \
    } while (0)

#define EXPECT_RANGE(s, ix, lo, hi, limit, with_values, want)                \
    do {                                                                     \
        char *got_ = range(s, ix, lo, hi, limit, with_values);               \
        cr_assert_str_eq(got_, want, "range %s [%s, %s] limit %u: got "      \
                         "\"%s\", expected \"%s\"", ix,                      \
                         (lo) ? (lo) : "-", (hi) ? (hi) : "-",               \
                         (unsigned)(limit), got_, want);                     \
        free(got_);                                                          \
    } while (0)

static void
expect_healthy(bfdb_store *s, const char *name)
{
    uint64_t missing = 99, extra = 99;

    CHECK_OK(s, bfdb_index_check(s, name, &missing, &extra));
    cr_assert_eq(missing, 0, "index %s: %" PRIu64 " entries missing", name,
                 missing);
    cr_assert_eq(extra, 0, "index %s: %" PRIu64 " extra entries", name,
                 extra);
}

/* ---- direct SQLite connection ("another program on the file") ---------- */

static sqlite3 *
raw_open(void)
{
    char *p = kv_path();
    sqlite3 *db = NULL;
    int rc = sqlite3_open(p, &db);

    cr_assert_eq(rc, SQLITE_OK, "sqlite3_open %s: %s", p,
                 db ? sqlite3_errmsg(db) : "?");
    sqlite3_busy_timeout(db, 10000);
    free(p);
    return db;
}

static void
raw_exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);

    cr_assert_eq(rc, SQLITE_OK, "%s: %s", sql, err ? err : "?");
    sqlite3_free(err);
}

/* ---- create, list, get ------------------------------------------------- */

Test(create, on_existing_data_counts_looks_up_and_lists)
{
    bfdb_store *s = open_kv();
    struct bfdb_index_spec *v = NULL, sp;
    size_t n = 99;

    KV_SET(s, "d", "red");
    KV_SET(s, "b", "blue");
    KV_SET(s, "a", "red");
    KV_SET(s, "c", "green");
    KV_SET(s, "e", "red");
    KV_SET(s, "user:1", "{\"x\":\"red\"}");
    KV_SET(s, "user:2", "{\"x\":\"blue\"}");

    create(s, "color", BFDB_INDEX_HASH, 0, NULL, NULL, BFDB_IV_STRING, 7);
    EXPECT_LOOKUP_KV(s, "color", "red", "a=red d=red e=red");
    EXPECT_LOOKUP_KV(s, "color", "green", "c=green");
    EXPECT_LOOKUP(s, "color", "purple", "");
    /* the whole value is indexed, not a field of it */
    EXPECT_LOOKUP(s, "color", "{\"x\":\"red\"}", "user:1");

    create(s, "by-x.user:1", BFDB_INDEX_BTREE, 1, "user:", "$.x",
           BFDB_IV_STRING, 2);
    EXPECT_LOOKUP_KV(s, "by-x.user:1", "blue", "user:2={\"x\":\"blue\"}");

    CHECK_OK(s, bfdb_index_list(s, &v, &n));
    cr_assert_eq(n, 2);
    /* by name: "by-x.user:1" < "color" */
    cr_assert_str_eq(v[0].name, "by-x.user:1");
    cr_assert_eq(v[0].type, BFDB_INDEX_BTREE);
    cr_assert_eq(v[0].unique, 1);
    cr_assert_eq(v[0].prefix_len, 5);
    cr_assert_eq(memcmp(v[0].key_prefix, "user:", 5), 0);
    cr_assert_str_eq(v[0].json_path, "$.x");
    cr_assert_eq(v[0].value_type, BFDB_IV_STRING);
    cr_assert_str_eq(v[1].name, "color");
    cr_assert_eq(v[1].type, BFDB_INDEX_HASH);
    cr_assert_eq(v[1].unique, 0);
    cr_assert_eq(v[1].prefix_len, 0);
    cr_assert(v[1].json_path == NULL || v[1].json_path[0] == '\0',
              "whole-value index lists json_path \"%s\"", v[1].json_path);
    cr_assert_eq(v[1].value_type, BFDB_IV_STRING);
    bfdb_index_list_free(v, n);

    CHECK_OK(s, bfdb_index_get(s, "by-x.user:1", &sp));
    cr_assert_str_eq(sp.name, "by-x.user:1");
    cr_assert_eq(sp.type, BFDB_INDEX_BTREE);
    cr_assert_eq(sp.unique, 1);
    cr_assert_eq(sp.prefix_len, 5);
    cr_assert_eq(memcmp(sp.key_prefix, "user:", 5), 0);
    cr_assert_str_eq(sp.json_path, "$.x");
    cr_assert_eq(sp.value_type, BFDB_IV_STRING);
    bfdb_index_spec_clear(&sp);

    CHECK_RC(s, BFDB_ENOTFOUND, bfdb_index_get(s, "nope", &sp));
    CHECK_RC(s, BFDB_ENOTFOUND, bfdb_index_get(s, "colo", &sp));
    bfdb_store_close(s);
}

Test(create, on_an_empty_store_indexes_nothing_then_follows_writes)
{
    bfdb_store *s = open_kv();
    struct bfdb_index_spec *v = (void *)1;
    size_t n = 99;

    CHECK_OK(s, bfdb_index_list(s, &v, &n));
    cr_assert_eq(n, 0);
    bfdb_index_list_free(v, n);

    create(s, "ix", BFDB_INDEX_BTREE, 0, NULL, NULL, BFDB_IV_STRING, 0);
    EXPECT_LOOKUP(s, "ix", "x", "");
    KV_SET(s, "k", "x");
    EXPECT_LOOKUP(s, "ix", "x", "k");
    bfdb_store_close(s);
}

Test(create, bad_specs_are_einval_and_a_taken_name_eexist)
{
    bfdb_store *s = open_kv();
    char longname[BFDB_INDEX_NAME_MAX + 2];
    char longpath[BFDB_INDEX_PATH_MAX + 2];
    char longprefix[BFDB_INDEX_PREFIX_MAX + 2];
    struct bfdb_index_spec *v = NULL;
    size_t n = 0;

    KV_SET(s, "k", "{\"framework\":\"gin\"}");

    CHECK_RC(s, BFDB_EINVAL, create_rc(s, "", BFDB_INDEX_HASH, 0, NULL, NULL,
                                       BFDB_IV_STRING));
    CHECK_RC(s, BFDB_EINVAL, create_rc(s, "a b", BFDB_INDEX_HASH, 0, NULL,
                                       NULL, BFDB_IV_STRING));
    CHECK_RC(s, BFDB_EINVAL, create_rc(s, "a'b", BFDB_INDEX_HASH, 0, NULL,
                                       NULL, BFDB_IV_STRING));
    CHECK_RC(s, BFDB_EINVAL, create_rc(s, "a/b", BFDB_INDEX_HASH, 0, NULL,
                                       NULL, BFDB_IV_STRING));
    memset(longname, 'n', BFDB_INDEX_NAME_MAX + 1);
    longname[BFDB_INDEX_NAME_MAX + 1] = '\0'; /* 129 characters */
    CHECK_RC(s, BFDB_EINVAL, create_rc(s, longname, BFDB_INDEX_HASH, 0, NULL,
                                       NULL, BFDB_IV_STRING));
    CHECK_RC(s, BFDB_EINVAL, create_rc(s, "t", 7, 0, NULL, NULL,
                                       BFDB_IV_STRING));
    CHECK_RC(s, BFDB_EINVAL, create_rc(s, "t", -1, 0, NULL, NULL,
                                       BFDB_IV_STRING));
    CHECK_RC(s, BFDB_EINVAL, create_rc(s, "t", BFDB_INDEX_BTREE, 0, NULL,
                                       NULL, 9));
    CHECK_RC(s, BFDB_EINVAL, create_rc(s, "t", BFDB_INDEX_BTREE, 0, NULL,
                                       NULL, -1));
    CHECK_RC(s, BFDB_EINVAL, create_rc(s, "t", BFDB_INDEX_BTREE, 0, NULL,
                                       "framework", BFDB_IV_STRING));
    CHECK_RC(s, BFDB_EINVAL, create_rc(s, "t", BFDB_INDEX_BTREE, 0, NULL,
                                       "$.", BFDB_IV_STRING));
    memset(longpath, 'p', sizeof(longpath));
    longpath[0] = '$';
    longpath[1] = '.';
    longpath[BFDB_INDEX_PATH_MAX + 1] = '\0'; /* 257 bytes */
    CHECK_RC(s, BFDB_EINVAL, create_rc(s, "t", BFDB_INDEX_BTREE, 0, NULL,
                                       longpath, BFDB_IV_STRING));
    memset(longprefix, 'k', sizeof(longprefix));
    longprefix[BFDB_INDEX_PREFIX_MAX + 1] = '\0'; /* 1025 bytes */
    CHECK_RC(s, BFDB_EINVAL, create_rc(s, "t", BFDB_INDEX_BTREE, 0,
                                       longprefix, NULL, BFDB_IV_STRING));

    /* nothing of the refused ones was left behind */
    CHECK_OK(s, bfdb_index_list(s, &v, &n));
    cr_assert_eq(n, 0, "%zu indexes after bad specs", n);
    bfdb_index_list_free(v, n);
    cr_assert_eq(sql_int(s, "SELECT count(*) FROM sqlite_master WHERE name"
                            " LIKE 'buffdb_ix_%'"), 0);

    /* the limits themselves are fine: 128 characters, every allowed one */
    longname[BFDB_INDEX_NAME_MAX] = '\0';
    create(s, longname, BFDB_INDEX_HASH, 0, NULL, NULL, BFDB_IV_STRING, 1);
    create(s, "aZ09_.:-", BFDB_INDEX_BTREE, 0, NULL, "$.framework",
           BFDB_IV_STRING, 1);
    EXPECT_LOOKUP(s, "aZ09_.:-", "gin", "k");

    CHECK_RC(s, BFDB_EEXIST, create_rc(s, "aZ09_.:-", BFDB_INDEX_HASH, 1,
                                       NULL, NULL, BFDB_IV_INTEGER));
    /* the refused duplicate did not replace the first definition */
    struct bfdb_index_spec sp;
    CHECK_OK(s, bfdb_index_get(s, "aZ09_.:-", &sp));
    cr_assert_eq(sp.type, BFDB_INDEX_BTREE);
    cr_assert_eq(sp.unique, 0);
    cr_assert_str_eq(sp.json_path, "$.framework");
    bfdb_index_spec_clear(&sp);
    CHECK_OK(s, bfdb_index_list(s, &v, &n));
    cr_assert_eq(n, 2);
    bfdb_index_list_free(v, n);
    bfdb_store_close(s);
}

/*
 * A path that only goes wrong after a label '{}' lacks ("$.a[") must be
 * refused too: accepted, it makes every later write of a document with
 * that label fail with SQLite's "JSON path error".
 */
Test(create, malformed_json_path_past_a_missing_label_is_einval)
{
    bfdb_store *s = open_kv();
    struct bfdb_index_spec *v = NULL;
    size_t n = 0;

    CHECK_RC(s, BFDB_EINVAL, create_rc(s, "t", BFDB_INDEX_BTREE, 0, NULL,
                                       "$.a[", BFDB_IV_STRING));
    CHECK_RC(s, BFDB_EINVAL, create_rc(s, "u", BFDB_INDEX_BTREE, 0, NULL,
                                       "$.a.", BFDB_IV_STRING));
    CHECK_RC(s, BFDB_EINVAL, create_rc(s, "w", BFDB_INDEX_BTREE, 0, NULL,
                                       "$.a[x]", BFDB_IV_STRING));
    CHECK_RC(s, BFDB_EINVAL, create_rc(s, "x", BFDB_INDEX_BTREE, 0, NULL,
                                       "$.x[#-", BFDB_IV_STRING));
    CHECK_OK(s, bfdb_index_list(s, &v, &n));
    bfdb_index_list_free(v, n);
    /* whatever create said, documents with the label must stay writable */
    KV_SET(s, "k", "{\"a\":{\"b\":[1]}}");
    cr_assert_eq(n, 0, "%zu indexes were created from malformed paths", n);
    /* "$.a.b]" is well formed for SQLite: the label is "b]" */
    create(s, "y", BFDB_INDEX_HASH, 0, NULL, "$.a.b]", BFDB_IV_STRING, 0);
    KV_SET(s, "k2", "{\"a\":{\"b]\":\"v\"}}");
    EXPECT_LOOKUP(s, "y", "v", "k2");
    bfdb_store_close(s);
}

/* ---- key prefixes ------------------------------------------------------ */

Test(create, key_prefix_limits_the_keys_and_follows_renames)
{
    bfdb_store *s = open_kv();

    KV_SET(s, "user:1", "x");
    KV_SET(s, "user:2", "x");
    KV_SET(s, "order:1", "x");
    KV_SET(s, "user", "x");   /* shorter than the prefix */
    KV_SET(s, "User:3", "x"); /* bytewise: case matters */
    KV_SET(s, "a_", "x");
    KV_SET(s, "ab", "x");

    create(s, "users", BFDB_INDEX_HASH, 0, "user:", NULL, BFDB_IV_STRING, 2);
    EXPECT_LOOKUP(s, "users", "x", "user:1 user:2");
    /* "_" is no wildcard */
    create(s, "under", BFDB_INDEX_HASH, 0, "a_", NULL, BFDB_IV_STRING, 1);
    EXPECT_LOOKUP(s, "under", "x", "a_");

    /* raw SQL renames: out of the prefix, into it, within it */
    EXEC(s, "UPDATE kv SET key = 'order:9' WHERE key = 'user:1'");
    EXPECT_LOOKUP(s, "users", "x", "user:2");
    EXEC(s, "UPDATE kv SET key = 'user:7' WHERE key = 'order:1'");
    EXPECT_LOOKUP(s, "users", "x", "user:2 user:7");
    EXEC(s, "UPDATE kv SET key = 'user:0' WHERE key = 'user:2'");
    EXPECT_LOOKUP(s, "users", "x", "user:0 user:7");
    /* rename and new value at once */
    EXEC(s, "UPDATE kv SET key = 'user:5', value = 'y' WHERE key = 'order:9'");
    EXPECT_LOOKUP(s, "users", "x", "user:0 user:7");
    EXPECT_LOOKUP(s, "users", "y", "user:5");
    /* writes outside the prefix do not touch the index */
    KV_SET(s, "other", "y");
    EXPECT_LOOKUP(s, "users", "y", "user:5");
    expect_healthy(s, "users");
    expect_healthy(s, "under");
    bfdb_store_close(s);
}

/* ---- JSON paths -------------------------------------------------------- */

Test(values, json_path_indexes_the_field_and_skips_the_rest)
{
    bfdb_store *s = open_kv();

    KV_SET(s, "k1", "{\"framework\":\"gin\",\"lang\":\"go\"}");
    KV_SET(s, "k2", "{\"lang\":\"rust\",\"framework\":\"axum\"}");
    KV_SET(s, "k3", "{\"framework\":\"gin\"}");
    KV_SET(s, "k4", "not json");
    KV_SET(s, "k5", "{\"other\":\"gin\"}");
    KV_SET(s, "k6", "{\"framework\":{\"name\":\"gin\"}}");
    KV_SET(s, "k7", "{\"framework\":[\"gin\"]}");
    KV_SET(s, "k8", "{\"framework\":42}");
    KV_SET(s, "k9", "\"gin\"");
    KV_SET(s, "k10", "{\"framework\":null}");
    KV_SET(s, "k11", "{\"framework\":true}");

    /* gin, axum, gin and 42 (a JSON integer: its decimal text) */
    create(s, "fw", BFDB_INDEX_BTREE, 0, NULL, "$.framework", BFDB_IV_STRING,
           4);
    EXPECT_LOOKUP_KV(s, "fw", "gin",
                     "k1={\"framework\":\"gin\",\"lang\":\"go\"} "
                     "k3={\"framework\":\"gin\"}");
    EXPECT_LOOKUP(s, "fw", "axum", "k2");
    EXPECT_LOOKUP(s, "fw", "42", "k8");
    EXPECT_LOOKUP(s, "fw", "{\"name\":\"gin\"}", "");
    EXPECT_LOOKUP(s, "fw", "[\"gin\"]", "");
    EXPECT_LOOKUP(s, "fw", "null", "");
    EXPECT_LOOKUP(s, "fw", "true", "");
    EXPECT_LOOKUP(s, "fw", "not json", "");

    /* nested paths */
    KV_SET(s, "n1", "{\"a\":{\"b\":\"x\"}}");
    KV_SET(s, "n2", "{\"a\":\"b\"}");
    KV_SET(s, "n3", "{\"a\":{\"b\":{\"c\":\"x\"}}}");
    KV_SET(s, "n4", "{\"a\":{\"c\":\"x\"}}");
    KV_SET(s, "n5", "{\"b\":\"x\"}");
    KV_SET(s, "n6", "{\"a\":{\"b\":\"x\",\"z\":1}}");
    create(s, "ab", BFDB_INDEX_HASH, 0, NULL, "$.a.b", BFDB_IV_STRING, 2);
    EXPECT_LOOKUP(s, "ab", "x", "n1 n6");

    /* writes follow the same rules: into, out of, between values */
    KV_SET(s, "k4", "{\"framework\":\"gin\"}");
    KV_SET(s, "k1", "{\"lang\":\"go\"}");
    KV_SET(s, "k3", "{\"framework\":{\"gin\":1}}");
    KV_SET(s, "k2", "{\"framework\":\"gin\"}");
    EXPECT_LOOKUP(s, "fw", "gin", "k2 k4");
    EXPECT_LOOKUP(s, "fw", "axum", "");
    KV_SET(s, "n2", "{\"a\":{\"b\":\"x\"}}");
    KV_SET(s, "n6", "{\"a\":{\"b\":\"x\"");      /* truncated JSON */
    EXPECT_LOOKUP(s, "ab", "x", "n1 n2");
    expect_healthy(s, "fw");
    expect_healthy(s, "ab");
    bfdb_store_close(s);
}

Test(values, escaped_json_strings_are_indexed_by_their_text)
{
    bfdb_store *s = open_kv();

    KV_SET(s, "q", "{\"f\":\"a\\\"b\"}");       /* a"b */
    KV_SET(s, "u", "{\"f\":\"caf\\u00e9\"}");   /* café */
    create(s, "f", BFDB_INDEX_HASH, 0, NULL, "$.f", BFDB_IV_STRING, 2);
    EXPECT_LOOKUP(s, "f", "a\"b", "q");
    EXPECT_LOOKUP(s, "f", "caf\xc3\xa9", "u");
    bfdb_store_close(s);
}

/* ---- value types ------------------------------------------------------- */

Test(values, integer_orders_numerically_and_skips_non_integers)
{
    bfdb_store *s = open_kv();
    bfdb_index_iter *it = (void *)1;

    KV_SET(s, "a", "100");
    KV_SET(s, "b", "9");
    KV_SET(s, "c", "-5");
    KV_SET(s, "d", "10");
    KV_SET(s, "e", "abc");
    KV_SET(s, "f", "1.5");
    KV_SET(s, "g", "99999999999999999999");
    KV_SET(s, "h", "");
    KV_SET(s, "i", "\"7\"");
    KV_SET(s, "j", "1e3");
    KV_SET(s, "k", "0x10");

    create(s, "n", BFDB_INDEX_BTREE, 0, NULL, NULL, BFDB_IV_INTEGER, 4);
    EXPECT_RANGE(s, "n", NULL, NULL, 0, 1, "c=-5 b=9 d=10 a=100");
    EXPECT_LOOKUP(s, "n", "10", "d");
    EXPECT_LOOKUP(s, "n", "-5", "c");
    EXPECT_LOOKUP(s, "n", "7", "");

    /* not integers: refused as a Lookup value and as Range bounds */
    CHECK_RC(s, BFDB_EINVAL, bfdb_index_lookup(s, "n", "abc", 3, 0, &it));
    cr_assert_null(it);
    CHECK_RC(s, BFDB_EINVAL, bfdb_index_lookup(s, "n", "1.5", 3, 0, &it));
    CHECK_RC(s, BFDB_EINVAL, bfdb_index_lookup(s, "n", "", 0, 0, &it));
    CHECK_RC(s, BFDB_EINVAL,
             bfdb_index_lookup(s, "n", "99999999999999999999", 20, 0, &it));
    CHECK_RC(s, BFDB_EINVAL, bfdb_index_range(s, "n", "x", 1, "5", 1, 0, &it));
    CHECK_RC(s, BFDB_EINVAL, bfdb_index_range(s, "n", "1", 1, "2.5", 3, 0,
                                              &it));
    CHECK_RC(s, BFDB_EINVAL, bfdb_index_range(s, "n", NULL, 0, "y", 1, 0,
                                              &it));
    /* the store is usable after the refusals (no iterator left open) */
    KV_SET(s, "b", "11");
    EXPECT_RANGE(s, "n", "10", "11", 0, 0, "d b");
    expect_healthy(s, "n");
    bfdb_store_close(s);
}

Test(values, integer_limits_are_64_bit)
{
    bfdb_store *s = open_kv();

    KV_SET(s, "max", "9223372036854775807");
    KV_SET(s, "min", "-9223372036854775808");
    KV_SET(s, "over", "9223372036854775808");
    KV_SET(s, "under", "-9223372036854775809");
    KV_SET(s, "zero", "0");

    create(s, "n", BFDB_INDEX_BTREE, 0, NULL, NULL, BFDB_IV_INTEGER, 3);
    EXPECT_RANGE(s, "n", NULL, NULL, 0, 0, "min zero max");
    EXPECT_LOOKUP(s, "n", "9223372036854775807", "max");
    EXPECT_LOOKUP(s, "n", "-9223372036854775808", "min");
    bfdb_store_close(s);
}

Test(values, integer_json_field_takes_numbers_and_numeric_strings)
{
    bfdb_store *s = open_kv();

    KV_SET(s, "a", "{\"n\":42}");
    KV_SET(s, "b", "{\"n\":\"42\"}");
    KV_SET(s, "c", "{\"n\":42.5}");
    KV_SET(s, "d", "{\"n\":\"forty\"}");
    KV_SET(s, "e", "{\"n\":-3}");
    KV_SET(s, "f", "42");

    create(s, "n", BFDB_INDEX_BTREE, 0, NULL, "$.n", BFDB_IV_INTEGER, 3);
    EXPECT_LOOKUP(s, "n", "42", "a b");
    EXPECT_RANGE(s, "n", NULL, NULL, 0, 0, "e a b");
    bfdb_store_close(s);
}

Test(values, float_accepts_numbers_and_orders_numerically)
{
    bfdb_store *s = open_kv();
    bfdb_index_iter *it = NULL;

    KV_SET(s, "a", "1.5");
    KV_SET(s, "b", "-2");
    KV_SET(s, "c", "1e3");
    KV_SET(s, "d", "abc");
    KV_SET(s, "e", "0.25");
    KV_SET(s, "f", "10");
    KV_SET(s, "g", "{\"x\":1}");

    create(s, "f", BFDB_INDEX_BTREE, 0, NULL, NULL, BFDB_IV_FLOAT, 5);
    EXPECT_RANGE(s, "f", NULL, NULL, 0, 1, "b=-2 e=0.25 a=1.5 f=10 c=1e3");
    /* integers and reals compare numerically */
    EXPECT_LOOKUP(s, "f", "1000", "c");
    EXPECT_LOOKUP(s, "f", "10.0", "f");
    EXPECT_LOOKUP(s, "f", "1.50", "a");
    EXPECT_RANGE(s, "f", "0", "1.5", 0, 0, "e a");
    EXPECT_RANGE(s, "f", "-2.0", "0.25", 0, 0, "b e");
    CHECK_RC(s, BFDB_EINVAL, bfdb_index_lookup(s, "f", "abc", 3, 0, &it));
    CHECK_RC(s, BFDB_EINVAL, bfdb_index_range(s, "f", "1", 1, "z", 1, 0, &it));
    bfdb_store_close(s);
}

Test(values, string_orders_bytewise)
{
    bfdb_store *s = open_kv();

    KV_SET(s, "k1", "b");
    KV_SET(s, "k2", "a");
    KV_SET(s, "k3", "B");
    KV_SET(s, "k4", "ab");
    KV_SET(s, "k5", "10");
    KV_SET(s, "k6", "9");
    KV_SET(s, "k7", "\xc3\xa9"); /* é: above every ASCII byte */

    create(s, "s", BFDB_INDEX_BTREE, 0, NULL, NULL, BFDB_IV_STRING, 7);
    EXPECT_RANGE(s, "s", NULL, NULL, 0, 1,
                 "k5=10 k6=9 k3=B k2=a k4=ab k1=b k7=\xc3\xa9");
    EXPECT_RANGE(s, "s", "B", "ab", 0, 0, "k3 k2 k4");
    EXPECT_RANGE(s, "s", "a", NULL, 0, 0, "k2 k4 k1 k7");
    bfdb_store_close(s);
}

Test(values, empty_values_and_nul_bytes_survive)
{
    bfdb_store *s = open_kv();
    const char key[] = "k\0z";
    const char val[] = "v\0w";

    CHECK_OK(s, bfdb_kv_set(s, key, 3, val, 3));
    CHECK_OK(s, bfdb_kv_set(s, "e", 1, "", 0));
    KV_SET(s, "v", "v");

    create(s, "s", BFDB_INDEX_HASH, 0, NULL, NULL, BFDB_IV_STRING, 3);
    char *got = lookup_n(s, "s", val, 3, 0, 1);
    cr_assert_str_eq(got, "k\\x00z=v\\x00w", "lookup of \"v\\0w\": %s", got);
    free(got);
    got = lookup_n(s, "s", "v", 1, 0, 0);
    cr_assert_str_eq(got, "v", "lookup of \"v\": %s", got);
    free(got);
    got = lookup_n(s, "s", "", 0, 0, 1);
    cr_assert_str_eq(got, "e=", "lookup of \"\": %s", got);
    free(got);
    bfdb_store_close(s);
}

/* ---- lookup and range -------------------------------------------------- */

static void
fill_numbers(bfdb_store *s, int n)
{
    char k[16], v[16];

    for (int i = 0; i < n; i++) {
        snprintf(k, sizeof(k), "k%02d", i);
        snprintf(v, sizeof(v), "%d", i);
        KV_SET(s, k, v);
    }
}

Test(lookup, range_bounds_are_inclusive_and_may_be_open)
{
    bfdb_store *s = open_kv();

    fill_numbers(s, 20);
    create(s, "n", BFDB_INDEX_BTREE, 0, NULL, NULL, BFDB_IV_INTEGER, 20);
    EXPECT_RANGE(s, "n", "5", "8", 0, 1, "k05=5 k06=6 k07=7 k08=8");
    EXPECT_RANGE(s, "n", "7", "7", 0, 0, "k07");
    EXPECT_RANGE(s, "n", "8", "5", 0, 0, "");
    EXPECT_RANGE(s, "n", NULL, "2", 0, 0, "k00 k01 k02");
    EXPECT_RANGE(s, "n", "17", NULL, 0, 0, "k17 k18 k19");
    EXPECT_RANGE(s, "n", "-100", "-1", 0, 0, "");
    EXPECT_RANGE(s, "n", "19", "1000", 0, 0, "k19");
    /* limits */
    EXPECT_RANGE(s, "n", NULL, NULL, 3, 0, "k00 k01 k02");
    EXPECT_RANGE(s, "n", "10", NULL, 2, 0, "k10 k11");
    EXPECT_RANGE(s, "n", "10", "12", 50, 0, "k10 k11 k12");
    EXPECT_RANGE(s, "n", "10", "12", 1, 0, "k10");
    /* equal values: then by key */
    KV_SET(s, "a", "7");
    KV_SET(s, "z", "7");
    EXPECT_RANGE(s, "n", "6", "8", 0, 0, "k06 a k07 z k08");
    EXPECT_RANGE(s, "n", "7", "8", 2, 0, "a k07");
    bfdb_store_close(s);
}

Test(lookup, lookup_limit_and_key_order)
{
    bfdb_store *s = open_kv();

    KV_SET(s, "m", "x");
    KV_SET(s, "c", "x");
    KV_SET(s, "q", "x");
    KV_SET(s, "a", "x");
    KV_SET(s, "b", "y");
    create(s, "h", BFDB_INDEX_HASH, 0, NULL, NULL, BFDB_IV_STRING, 5);
    EXPECT_LOOKUP(s, "h", "x", "a c m q");
    char *got = lookup_n(s, "h", "x", 1, 2, 0);
    cr_assert_str_eq(got, "a c", "limit 2: %s", got);
    free(got);
    got = lookup_n(s, "h", "x", 1, 1, 0);
    cr_assert_str_eq(got, "a", "limit 1: %s", got);
    free(got);
    got = lookup_n(s, "h", "x", 1, 4, 0);
    cr_assert_str_eq(got, "a c m q", "limit 4: %s", got);
    free(got);
    bfdb_store_close(s);
}

Test(lookup, hash_refuses_range_and_unknown_index_is_enotfound)
{
    bfdb_store *s = open_kv();
    bfdb_index_iter *it = (void *)1;

    KV_SET(s, "a", "1");
    create(s, "h", BFDB_INDEX_HASH, 0, NULL, NULL, BFDB_IV_INTEGER, 1);
    CHECK_RC(s, BFDB_EPRECOND, bfdb_index_range(s, "h", "0", 1, "5", 1, 0,
                                                &it));
    cr_assert_null(it);
    CHECK_RC(s, BFDB_EPRECOND, bfdb_index_range(s, "h", NULL, 0, NULL, 0, 0,
                                                &it));
    EXPECT_LOOKUP(s, "h", "1", "a");
    CHECK_RC(s, BFDB_ENOTFOUND, bfdb_index_lookup(s, "nope", "1", 1, 0,
                                                  &it));
    cr_assert_null(it);
    CHECK_RC(s, BFDB_ENOTFOUND, bfdb_index_range(s, "nope", "0", 1, "5", 1,
                                                 0, &it));
    CHECK_RC(s, BFDB_ENOTFOUND, bfdb_index_range(s, "nope", NULL, 0, NULL,
                                                 0, 0, &it));
    /* the store is still usable */
    KV_SET(s, "b", "1");
    EXPECT_LOOKUP(s, "h", "1", "a b");
    bfdb_store_close(s);
}

/* ---- maintenance by every write path ----------------------------------- */

Test(maintain, kv_set_and_delete_move_entries)
{
    bfdb_store *s = open_kv();
    int deleted = 0;

    KV_SET(s, "a", "red");
    KV_SET(s, "b", "red");
    create(s, "c", BFDB_INDEX_BTREE, 0, NULL, NULL, BFDB_IV_STRING, 2);
    KV_SET(s, "a", "blue");
    EXPECT_LOOKUP(s, "c", "red", "b");
    EXPECT_LOOKUP_KV(s, "c", "blue", "a=blue");
    KV_SET(s, "a", "blue"); /* same value again */
    EXPECT_LOOKUP(s, "c", "blue", "a");
    KV_SET(s, "n", "red");
    EXPECT_LOOKUP(s, "c", "red", "b n");
    CHECK_OK(s, bfdb_kv_delete(s, "b", 1, &deleted));
    cr_assert_eq(deleted, 1);
    EXPECT_LOOKUP(s, "c", "red", "n");
    CHECK_OK(s, bfdb_kv_delete(s, "zz", 2, &deleted)); /* missing: no-op */
    cr_assert_eq(deleted, 0);
    EXPECT_RANGE(s, "c", NULL, NULL, 0, 1, "a=blue n=red");
    expect_healthy(s, "c");
    bfdb_store_close(s);
}

Test(maintain, raw_sql_writes_keep_the_index_true)
{
    bfdb_store *s = open_kv();

    KV_SET(s, "a", "red");
    create(s, "c", BFDB_INDEX_BTREE, 0, NULL, NULL, BFDB_IV_STRING, 1);
    create(s, "j", BFDB_INDEX_HASH, 0, NULL, "$.c", BFDB_IV_STRING, 0);

    EXEC(s, "INSERT INTO kv (key, value) VALUES ('x', 'red'), ('y', 'red')");
    EXPECT_LOOKUP(s, "c", "red", "a x y");
    EXEC(s, "UPDATE kv SET value = 'green' WHERE key = 'x'");
    EXPECT_LOOKUP(s, "c", "red", "a y");
    EXPECT_LOOKUP(s, "c", "green", "x");
    EXEC(s, "DELETE FROM kv WHERE key = 'y'");
    EXPECT_LOOKUP(s, "c", "red", "a");
    /* REPLACE deletes the old row without delete triggers */
    EXEC(s, "INSERT OR REPLACE INTO kv (key, value) VALUES ('a', 'purple')");
    EXPECT_LOOKUP(s, "c", "red", "");
    EXPECT_LOOKUP(s, "c", "purple", "a");
    EXEC(s, "REPLACE INTO kv (key, value) VALUES ('x', '{\"c\":\"red\"}')");
    EXPECT_LOOKUP(s, "c", "green", "");
    EXPECT_LOOKUP(s, "j", "red", "x");
    /* upsert */
    EXEC(s, "INSERT INTO kv (key, value) VALUES ('x', 'teal') ON CONFLICT"
            " (key) DO UPDATE SET value = excluded.value");
    EXPECT_LOOKUP(s, "j", "red", "");
    EXPECT_LOOKUP(s, "c", "teal", "x");
    /* one statement changing many rows */
    EXEC(s, "UPDATE kv SET value = 'all'");
    EXPECT_LOOKUP(s, "c", "all", "a x");
    /* a key renamed onto an existing one, which it replaces */
    EXEC(s, "INSERT INTO kv (key, value) VALUES ('b', 'bee')");
    EXEC(s, "UPDATE OR REPLACE kv SET key = 'b' WHERE key = 'a'");
    EXPECT_LOOKUP(s, "c", "bee", "");
    EXPECT_LOOKUP(s, "c", "all", "b x");
    EXEC(s, "DELETE FROM kv");
    EXPECT_RANGE(s, "c", NULL, NULL, 0, 0, "");
    expect_healthy(s, "c");
    expect_healthy(s, "j");
    bfdb_store_close(s);
}

Test(maintain, transaction_commit_keeps_the_index_true)
{
    bfdb_store *s = open_kv();

    KV_SET(s, "a", "red");
    KV_SET(s, "b", "blue");
    KV_SET(s, "c", "red");
    create(s, "c", BFDB_INDEX_BTREE, 0, NULL, NULL, BFDB_IV_STRING, 3);

    CHECK_OK(s, bfdb_txn_kv_stage(s, 1, "b", 1, "red", 3));
    CHECK_OK(s, bfdb_txn_kv_stage(s, 1, "c", 1, NULL, 0));
    CHECK_OK(s, bfdb_txn_kv_stage(s, 1, "n", 1, "blue", 4));
    CHECK_OK(s, bfdb_txn_kv_stage(s, 1, "a", 1, "green", 5));
    CHECK_OK(s, bfdb_txn_kv_stage(s, 1, "a", 1, "yellow", 6)); /* last wins */
    /* staged writes are not visible yet */
    EXPECT_LOOKUP(s, "c", "red", "a c");
    CHECK_OK(s, bfdb_txn_kv_commit(s, 1, 0));
    EXPECT_LOOKUP(s, "c", "red", "b");
    EXPECT_LOOKUP(s, "c", "blue", "n");
    EXPECT_LOOKUP(s, "c", "green", "");
    EXPECT_LOOKUP(s, "c", "yellow", "a");
    kv_expect_missing(s, "c");
    expect_healthy(s, "c");
    bfdb_store_close(s);
}

Test(maintain, another_sqlite_program_keeps_the_index_true)
{
    bfdb_store *s = open_kv();

    KV_SET(s, "a", "{\"t\":5}");
    create(s, "t", BFDB_INDEX_BTREE, 0, NULL, "$.t", BFDB_IV_INTEGER, 1);
    sqlite3 *db = raw_open();
    raw_exec(db, "INSERT INTO kv VALUES ('b', '{\"t\":3}')");
    raw_exec(db, "UPDATE kv SET value = '{\"t\":9}' WHERE key = 'a'");
    raw_exec(db, "INSERT INTO kv VALUES ('c', '{\"t\":4}')");
    raw_exec(db, "DELETE FROM kv WHERE key = 'c'");
    sqlite3_close(db);
    EXPECT_RANGE(s, "t", NULL, NULL, 0, 0, "b a");
    expect_healthy(s, "t");
    bfdb_store_close(s);
}

/* ---- unique ------------------------------------------------------------ */

Test(unique, second_key_with_a_taken_value_is_eexist)
{
    bfdb_store *s = open_kv();
    const char *msg;

    KV_SET(s, "u1", "a@x");
    KV_SET(s, "u2", "b@x");
    create(s, "email", BFDB_INDEX_HASH, 1, NULL, NULL, BFDB_IV_STRING, 2);

    /* an existing key */
    CHECK_RC(s, BFDB_EEXIST, bfdb_kv_set(s, "u2", 2, "a@x", 3));
    msg = bfdb_store_errmsg(s);
    cr_assert_not_null(strstr(msg, "email"), "message: %s", msg);
    cr_assert_not_null(strstr(msg, "a@x"), "message: %s", msg);
    cr_assert_not_null(strstr(msg, "u1"), "message: %s", msg);
    kv_expect(s, "u2", "b@x");
    /* a new key */
    CHECK_RC(s, BFDB_EEXIST, bfdb_kv_set(s, "u3", 2, "b@x", 3));
    msg = bfdb_store_errmsg(s);
    cr_assert_not_null(strstr(msg, "email"), "message: %s", msg);
    cr_assert_not_null(strstr(msg, "b@x"), "message: %s", msg);
    cr_assert_not_null(strstr(msg, "u2"), "message: %s", msg);
    kv_expect_missing(s, "u3");

    /* the holder may write its own value again, and move away from it */
    KV_SET(s, "u1", "a@x");
    EXPECT_LOOKUP(s, "email", "a@x", "u1");
    KV_SET(s, "u1", "c@x");
    KV_SET(s, "u2", "a@x"); /* now free */
    EXPECT_LOOKUP(s, "email", "a@x", "u2");
    EXPECT_LOOKUP(s, "email", "c@x", "u1");
    /* a deleted holder frees its value */
    CHECK_OK(s, bfdb_kv_delete(s, "u1", 2, NULL));
    KV_SET(s, "u3", "c@x");
    EXPECT_LOOKUP(s, "email", "c@x", "u3");
    expect_healthy(s, "email");
    bfdb_store_close(s);
}

Test(unique, json_field_conflict_names_the_value)
{
    bfdb_store *s = open_kv();
    const char *msg;

    KV_SET(s, "p1", "{\"email\":\"a@x\",\"n\":1}");
    KV_SET(s, "p2", "{\"email\":\"b@x\"}");
    KV_SET(s, "p3", "{\"n\":3}");
    KV_SET(s, "p4", "{\"n\":4}"); /* no field: not indexed, no conflict */
    create(s, "mail", BFDB_INDEX_BTREE, 1, "p", "$.email", BFDB_IV_STRING,
           2);
    CHECK_RC(s, BFDB_EEXIST,
             bfdb_kv_set(s, "p3", 2, "{\"email\":\"a@x\",\"n\":9}", 22));
    msg = bfdb_store_errmsg(s);
    cr_assert_not_null(strstr(msg, "mail"), "message: %s", msg);
    cr_assert_not_null(strstr(msg, "a@x"), "message: %s", msg);
    cr_assert_not_null(strstr(msg, "p1"), "message: %s", msg);
    kv_expect(s, "p3", "{\"n\":3}");
    /* outside the key prefix the value is free */
    KV_SET(s, "q1", "{\"email\":\"a@x\"}");
    /* the holder changing another field keeps its value */
    KV_SET(s, "p1", "{\"email\":\"a@x\",\"n\":2}");
    EXPECT_LOOKUP(s, "mail", "a@x", "p1");
    expect_healthy(s, "mail");
    bfdb_store_close(s);
}

Test(unique, raw_sql_conflict_clauses_cannot_bypass_it)
{
    bfdb_store *s = open_kv();
    int rc;

    KV_SET(s, "u1", "a@x");
    KV_SET(s, "u2", "b@x");
    create(s, "email", BFDB_INDEX_HASH, 1, NULL, NULL, BFDB_IV_STRING, 2);

    rc = exec(s, "INSERT OR REPLACE INTO kv (key, value) VALUES ('u2', 'a@x')");
    cr_assert_eq(rc, BFDB_EEXIST, "INSERT OR REPLACE: %d (%s)", rc,
                 bfdb_store_errmsg(s));
    cr_assert_not_null(strstr(bfdb_store_errmsg(s), "email"), "message: %s",
                       bfdb_store_errmsg(s));
    rc = exec(s, "INSERT OR IGNORE INTO kv (key, value) VALUES ('u9', 'a@x')");
    cr_assert_eq(rc, BFDB_EEXIST, "INSERT OR IGNORE: %d (%s)", rc,
                 bfdb_store_errmsg(s));
    rc = exec(s, "REPLACE INTO kv (key, value) VALUES ('u9', 'b@x')");
    cr_assert_eq(rc, BFDB_EEXIST, "REPLACE: %d (%s)", rc,
                 bfdb_store_errmsg(s));
    rc = exec(s, "UPDATE OR IGNORE kv SET value = 'a@x' WHERE key = 'u2'");
    cr_assert_eq(rc, BFDB_EEXIST, "UPDATE OR IGNORE: %d (%s)", rc,
                 bfdb_store_errmsg(s));
    /* a statement that fails part-way changes nothing at all */
    rc = exec(s, "INSERT INTO kv (key, value) VALUES ('u5', 'e@x'),"
                 " ('u6', 'a@x')");
    cr_assert_eq(rc, BFDB_EEXIST, "multi-row INSERT: %d (%s)", rc,
                 bfdb_store_errmsg(s));

    kv_expect(s, "u1", "a@x");
    kv_expect(s, "u2", "b@x");
    kv_expect_missing(s, "u9");
    kv_expect_missing(s, "u5");
    kv_expect_missing(s, "u6");
    EXPECT_LOOKUP(s, "email", "a@x", "u1");
    EXPECT_LOOKUP(s, "email", "b@x", "u2");
    EXPECT_LOOKUP(s, "email", "e@x", "");
    cr_assert_eq(sql_int(s, "SELECT count(*) FROM kv"), 2);
    expect_healthy(s, "email");
    bfdb_store_close(s);
}

Test(unique, create_on_duplicate_data_is_eprecond_and_leaves_nothing)
{
    bfdb_store *s = open_kv();
    struct bfdb_index_spec *v = NULL, sp;
    size_t n = 99;

    KV_SET(s, "a", "1");
    KV_SET(s, "b", "2");
    KV_SET(s, "c", "1");
    CHECK_RC(s, BFDB_EPRECOND, create_rc(s, "u", BFDB_INDEX_HASH, 1, NULL,
                                         NULL, BFDB_IV_STRING));
    const char *msg = bfdb_store_errmsg(s);
    cr_assert_not_null(strstr(msg, "\"a\""), "message: %s", msg);
    cr_assert_not_null(strstr(msg, "\"c\""), "message: %s", msg);
    /* numerically equal: 1 and 1.0 in a FLOAT index */
    KV_SET(s, "c", "1.0");
    CHECK_RC(s, BFDB_EPRECOND, create_rc(s, "u", BFDB_INDEX_BTREE, 1, NULL,
                                         NULL, BFDB_IV_FLOAT));

    CHECK_OK(s, bfdb_index_list(s, &v, &n));
    cr_assert_eq(n, 0, "%zu indexes left behind", n);
    bfdb_index_list_free(v, n);
    CHECK_RC(s, BFDB_ENOTFOUND, bfdb_index_get(s, "u", &sp));
    cr_assert_eq(sql_int(s, "SELECT count(*) FROM sqlite_master WHERE name"
                            " LIKE 'buffdb_ix_%'"), 0);
    /* writes, duplicates included, still work */
    KV_SET(s, "d", "2");
    EXEC(s, "INSERT INTO kv VALUES ('e', '2')");
    cr_assert_eq(sql_int(s, "SELECT count(*) FROM kv WHERE value = '2'"), 3);
    /* the same spec succeeds once the data allows it */
    EXEC(s, "DELETE FROM kv WHERE key IN ('c', 'd', 'e')");
    create(s, "u", BFDB_INDEX_BTREE, 1, NULL, NULL, BFDB_IV_STRING, 2);
    bfdb_store_close(s);
}

Test(unique, transaction_swapping_values_commits)
{
    bfdb_store *s = open_kv();

    KV_SET(s, "u1", "a@x");
    KV_SET(s, "u2", "b@x");
    KV_SET(s, "u3", "c@x");
    create(s, "email", BFDB_INDEX_HASH, 1, NULL, NULL, BFDB_IV_STRING, 3);

    CHECK_OK(s, bfdb_txn_kv_stage(s, 7, "u1", 2, "b@x", 3));
    CHECK_OK(s, bfdb_txn_kv_stage(s, 7, "u2", 2, "a@x", 3));
    CHECK_OK(s, bfdb_txn_kv_commit(s, 7, 0));
    kv_expect(s, "u1", "b@x");
    kv_expect(s, "u2", "a@x");
    EXPECT_LOOKUP(s, "email", "a@x", "u2");
    EXPECT_LOOKUP(s, "email", "b@x", "u1");

    /* a value moving from a deleted key to a new one */
    CHECK_OK(s, bfdb_txn_kv_stage(s, 8, "u3", 2, NULL, 0));
    CHECK_OK(s, bfdb_txn_kv_stage(s, 8, "u4", 2, "c@x", 3));
    CHECK_OK(s, bfdb_txn_kv_commit(s, 8, 0));
    kv_expect_missing(s, "u3");
    EXPECT_LOOKUP(s, "email", "c@x", "u4");
    expect_healthy(s, "email");
    bfdb_store_close(s);
}

Test(unique, transaction_that_would_duplicate_applies_nothing)
{
    bfdb_store *s = open_kv();

    KV_SET(s, "u1", "a@x");
    KV_SET(s, "u2", "b@x");
    create(s, "email", BFDB_INDEX_HASH, 1, NULL, NULL, BFDB_IV_STRING, 2);

    CHECK_OK(s, bfdb_txn_kv_stage(s, 3, "u2", 2, "z@x", 3));
    CHECK_OK(s, bfdb_txn_kv_stage(s, 3, "n1", 2, "n@x", 3));
    CHECK_OK(s, bfdb_txn_kv_stage(s, 3, "u3", 2, "a@x", 3)); /* u1's */
    CHECK_RC(s, BFDB_EEXIST, bfdb_txn_kv_commit(s, 3, 0));
    cr_assert_not_null(strstr(bfdb_store_errmsg(s), "email"), "message: %s",
                       bfdb_store_errmsg(s));
    kv_expect(s, "u1", "a@x");
    kv_expect(s, "u2", "b@x");
    kv_expect_missing(s, "n1");
    kv_expect_missing(s, "u3");
    EXPECT_LOOKUP(s, "email", "a@x", "u1");
    EXPECT_LOOKUP(s, "email", "b@x", "u2");
    EXPECT_LOOKUP(s, "email", "z@x", "");
    EXPECT_LOOKUP(s, "email", "n@x", "");
    cr_assert_eq(sql_int(s, "SELECT count(*) FROM kv"), 2);
    expect_healthy(s, "email");
    /* two staged keys taking one value in the same transaction */
    CHECK_OK(s, bfdb_txn_kv_stage(s, 4, "x1", 2, "q@x", 3));
    CHECK_OK(s, bfdb_txn_kv_stage(s, 4, "x2", 2, "q@x", 3));
    CHECK_RC(s, BFDB_EEXIST, bfdb_txn_kv_commit(s, 4, 0));
    kv_expect_missing(s, "x1");
    kv_expect_missing(s, "x2");
    /* the store still takes writes */
    KV_SET(s, "x1", "q@x");
    EXPECT_LOOKUP(s, "email", "q@x", "x1");
    bfdb_store_close(s);
}

/*
 * Two processes race, round by round: in round r both set their own key
 * ("p" and "c") to the value "v<r>" at once.  Exactly one may win.  The
 * parent releases each round by writing to a pipe and then writes at once
 * itself; the child reports its result on a second pipe.
 */
#define RACE_ROUNDS 200

static int
race_child(const char *path, int go_fd, int res_fd)
{
    char err[256];
    bfdb_store *s = NULL;
    char val[32];

    if (bfdb_store_open(&s, BFDB_STORE_KV, path, NULL, err, sizeof(err)) !=
        BFDB_OK)
        return 3;
    for (int r = 0; r < RACE_ROUNDS; r++) {
        int round;
        if (read(go_fd, &round, sizeof(round)) != (ssize_t)sizeof(round) ||
            round != r)
            return 4;
        snprintf(val, sizeof(val), "v%d", r);
        int rc = bfdb_kv_set(s, "c", 1, val, strlen(val));
        if (write(res_fd, &rc, sizeof(rc)) != (ssize_t)sizeof(rc))
            return 5;
    }
    bfdb_store_close(s);
    return 0;
}

Test(unique, two_processes_racing_for_a_value_one_wins_each_round)
{
    char *path = kv_path();
    int go[2], res[2], st;
    int wins_p = 0, wins_c = 0;
    char val[32], last_p[32] = "", last_c[32] = "";

    {
        bfdb_store *s = open_kv();
        create(s, "uq", BFDB_INDEX_HASH, 1, NULL, NULL, BFDB_IV_STRING, 0);
        bfdb_store_close(s);
    }
    cr_assert_eq(pipe(go), 0);
    cr_assert_eq(pipe(res), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        close(go[1]);
        close(res[0]);
        _exit(race_child(path, go[0], res[1]));
    }
    close(go[0]);
    close(res[1]);

    bfdb_store *s = open_kv();
    for (int r = 0; r < RACE_ROUNDS; r++) {
        int crc = 0;
        snprintf(val, sizeof(val), "v%d", r);
        cr_assert_eq(write(go[1], &r, sizeof(r)), (ssize_t)sizeof(r));
        int prc = bfdb_kv_set(s, "p", 1, val, strlen(val));
        const char *pmsg = prc ? bfdb_store_errmsg(s) : "";
        cr_assert_eq(read(res[0], &crc, sizeof(crc)), (ssize_t)sizeof(crc),
                     "child stopped in round %d", r);
        cr_assert((prc == BFDB_OK && crc == BFDB_EEXIST) ||
                      (prc == BFDB_EEXIST && crc == BFDB_OK),
                  "round %d: parent %d (%s), child %d: exactly one must win",
                  r, prc, pmsg, crc);
        if (prc == BFDB_OK) {
            wins_p++;
            strcpy(last_p, val);
        } else {
            wins_c++;
            strcpy(last_c, val);
        }
        /* the winner, and only it, holds the value */
        char want[48];
        snprintf(want, sizeof(want), "%s=%s", prc == BFDB_OK ? "p" : "c",
                 val);
        EXPECT_LOOKUP_KV(s, "uq", val, want);
    }
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "child failed (status %d)", st);
    cr_assert_eq(wins_p + wins_c, RACE_ROUNDS);
    /* (not cr_log_info: Criterion 2.4 leaks 48 bytes per call, which
     * LeakSanitizer reports) */
    fprintf(stderr, "race: parent won %d rounds, child %d\n", wins_p, wins_c);
    if (last_p[0])
        kv_expect(s, "p", last_p);
    else
        kv_expect_missing(s, "p");
    if (last_c[0])
        kv_expect(s, "c", last_c);
    else
        kv_expect_missing(s, "c");
    cr_assert_eq(sql_int(s, "SELECT count(*) FROM kv"),
                 (wins_p > 0) + (wins_c > 0));
    cr_assert_eq(sql_int(s, "SELECT count(*) FROM buffdb_ix_1"),
                 (wins_p > 0) + (wins_c > 0));
    expect_healthy(s, "uq");
    bfdb_store_close(s);
    close(go[1]);
    close(res[0]);
    free(path);
}

/* ---- drop, persistence ------------------------------------------------- */

Test(manage, drop_removes_entries_and_triggers)
{
    bfdb_store *s = open_kv();
    bfdb_index_iter *it = (void *)1;
    struct bfdb_index_spec *v = NULL;
    size_t n = 99;

    KV_SET(s, "a", "1");
    KV_SET(s, "b", "1");
    create(s, "gone", BFDB_INDEX_BTREE, 1, "a", NULL, BFDB_IV_INTEGER, 1);
    create(s, "kept", BFDB_INDEX_HASH, 0, NULL, NULL, BFDB_IV_STRING, 2);
    cr_assert_gt(sql_int(s, "SELECT count(*) FROM sqlite_master WHERE name"
                            " LIKE 'buffdb_ix_1%'"), 0);

    CHECK_OK(s, bfdb_index_drop(s, "gone"));
    CHECK_OK(s, bfdb_index_list(s, &v, &n));
    cr_assert_eq(n, 1);
    cr_assert_str_eq(v[0].name, "kept");
    bfdb_index_list_free(v, n);
    cr_assert_eq(sql_int(s, "SELECT count(*) FROM sqlite_master WHERE name"
                            " LIKE 'buffdb_ix_1%'"), 0);
    CHECK_RC(s, BFDB_ENOTFOUND, bfdb_index_lookup(s, "gone", "1", 1, 0, &it));
    CHECK_RC(s, BFDB_ENOTFOUND, bfdb_index_drop(s, "gone"));
    CHECK_RC(s, BFDB_ENOTFOUND, bfdb_index_drop(s, "never"));

    /* writes that the unique index refused now go through, by every path */
    KV_SET(s, "a2", "1");
    EXEC(s, "INSERT INTO kv VALUES ('a3', '1')");
    CHECK_OK(s, bfdb_txn_kv_stage(s, 1, "a4", 2, "1", 1));
    CHECK_OK(s, bfdb_txn_kv_commit(s, 1, 0));
    /* the other index is still maintained */
    EXPECT_LOOKUP(s, "kept", "1", "a a2 a3 a4 b");

    CHECK_OK(s, bfdb_index_drop(s, "kept"));
    cr_assert_eq(sql_int(s, "SELECT count(*) FROM sqlite_master WHERE name"
                            " LIKE 'buffdb_ix_%'"), 0);
    KV_SET(s, "c", "1");
    CHECK_OK(s, bfdb_kv_delete(s, "a", 1, NULL));
    EXEC(s, "UPDATE kv SET value = '2'");
    cr_assert_eq(sql_int(s, "SELECT count(*) FROM kv"), 5);

    /* a name can be used again, and the new index starts fresh */
    create(s, "gone", BFDB_INDEX_HASH, 0, NULL, NULL, BFDB_IV_STRING, 5);
    EXPECT_LOOKUP(s, "gone", "2", "a2 a3 a4 b c");
    EXPECT_LOOKUP(s, "gone", "1", "");
    expect_healthy(s, "gone");
    bfdb_store_close(s);
}

Test(manage, definitions_and_entries_survive_reopen)
{
    bfdb_store *s = open_kv();
    struct bfdb_index_spec sp;

    KV_SET(s, "user:1", "{\"age\":30}");
    KV_SET(s, "user:2", "{\"age\":25}");
    KV_SET(s, "other", "{\"age\":30}");
    create(s, "age", BFDB_INDEX_BTREE, 1, "user:", "$.age", BFDB_IV_INTEGER,
           2);
    bfdb_store_close(s);

    s = open_kv();
    CHECK_OK(s, bfdb_index_get(s, "age", &sp));
    cr_assert_eq(sp.type, BFDB_INDEX_BTREE);
    cr_assert_eq(sp.unique, 1);
    cr_assert_eq(sp.prefix_len, 5);
    cr_assert_eq(memcmp(sp.key_prefix, "user:", 5), 0);
    cr_assert_str_eq(sp.json_path, "$.age");
    cr_assert_eq(sp.value_type, BFDB_IV_INTEGER);
    bfdb_index_spec_clear(&sp);
    EXPECT_LOOKUP(s, "age", "30", "user:1");
    EXPECT_RANGE(s, "age", NULL, NULL, 0, 0, "user:2 user:1");
    /* the triggers came back with the file */
    KV_SET(s, "user:3", "{\"age\":40}");
    CHECK_RC(s, BFDB_EEXIST, bfdb_kv_set(s, "user:4", 6, "{\"age\":25}", 10));
    EXPECT_RANGE(s, "age", "26", NULL, 0, 0, "user:1 user:3");
    expect_healthy(s, "age");
    bfdb_store_close(s);
}

/* ---- check, rebuild, recover ------------------------------------------- */

Test(manage, check_finds_damage_and_rebuild_repairs_it)
{
    bfdb_store *s = open_kv();
    uint64_t missing = 99, extra = 99, entries = 0;

    KV_SET(s, "a", "red");
    KV_SET(s, "b", "red");
    KV_SET(s, "c", "blue");
    create(s, "c", BFDB_INDEX_BTREE, 0, NULL, NULL, BFDB_IV_STRING, 3);
    create(s, "n", BFDB_INDEX_HASH, 0, NULL, "$.n", BFDB_IV_INTEGER, 0);
    expect_healthy(s, "c");
    expect_healthy(s, "n");
    CHECK_RC(s, BFDB_ENOTFOUND, bfdb_index_check(s, "nope", &missing,
                                                 &extra));

    /* another program deletes one entry and adds a bogus one */
    sqlite3 *db = raw_open();
    raw_exec(db, "DELETE FROM buffdb_ix_1 WHERE k = 'a'");
    raw_exec(db, "INSERT INTO buffdb_ix_1 (v, k) VALUES"
                 " (CAST('green' AS BLOB), 'zz')");
    sqlite3_close(db);
    CHECK_OK(s, bfdb_index_check(s, "c", &missing, &extra));
    cr_assert_eq(missing, 1, "missing %" PRIu64, missing);
    cr_assert_eq(extra, 1, "extra %" PRIu64, extra);
    EXPECT_LOOKUP(s, "c", "red", "b"); /* the damage is visible */
    expect_healthy(s, "n");

    CHECK_OK(s, bfdb_index_rebuild(s, "c", &entries));
    cr_assert_eq(entries, 3, "rebuild wrote %" PRIu64, entries);
    expect_healthy(s, "c");
    EXPECT_LOOKUP(s, "c", "red", "a b");
    EXPECT_LOOKUP(s, "c", "green", "");

    /* every index at once */
    CHECK_OK(s, bfdb_index_rebuild(s, NULL, &entries));
    cr_assert_eq(entries, 3);
    CHECK_RC(s, BFDB_ENOTFOUND, bfdb_index_rebuild(s, "nope", &entries));
    bfdb_store_close(s);
}

Test(manage, check_sees_writes_made_without_triggers)
{
    bfdb_store *s = open_kv();
    uint64_t missing = 99, extra = 99;

    KV_SET(s, "a", "red");
    create(s, "c", BFDB_INDEX_HASH, 0, NULL, NULL, BFDB_IV_STRING, 1);
    /* a program that dropped the triggers writes behind the index */
    sqlite3 *db = raw_open();
    raw_exec(db, "DROP TRIGGER buffdb_ix_1_ins");
    raw_exec(db, "DROP TRIGGER buffdb_ix_1_upd");
    raw_exec(db, "INSERT INTO kv VALUES ('b', 'red')");
    raw_exec(db, "UPDATE kv SET value = 'blue' WHERE key = 'a'");
    sqlite3_close(db);
    CHECK_OK(s, bfdb_index_check(s, "c", &missing, &extra));
    cr_assert_eq(missing, 2, "missing %" PRIu64, missing); /* b, a=blue */
    cr_assert_eq(extra, 1, "extra %" PRIu64, extra);       /* a=red */
    CHECK_OK(s, bfdb_index_rebuild(s, "c", NULL));
    expect_healthy(s, "c");
    EXPECT_LOOKUP(s, "c", "red", "b");
    EXPECT_LOOKUP(s, "c", "blue", "a");
    bfdb_store_close(s);
}

Test(manage, rebuild_and_recover_put_dropped_triggers_back)
{
    bfdb_store *s = open_kv();
    int checked = -1, rebuilt = -1;

    KV_SET(s, "a", "red");
    create(s, "c", BFDB_INDEX_HASH, 0, NULL, NULL, BFDB_IV_STRING, 1);
    sqlite3 *db = raw_open();
    raw_exec(db, "DROP TRIGGER buffdb_ix_1_ins");
    sqlite3_close(db);
    /* the entries still match the data: only the triggers tell */
    CHECK_OK(s, bfdb_index_recover(s, &checked, &rebuilt));
    cr_assert_eq(checked, 1);
    cr_assert_eq(rebuilt, 1, "an index without its triggers was kept");
    KV_SET(s, "b", "red");
    EXPECT_LOOKUP(s, "c", "red", "a b");
    expect_healthy(s, "c");
    bfdb_store_close(s);
}

Test(manage, null_keys_and_nul_bytes_in_numbers_are_not_indexed)
{
    bfdb_store *s = open_kv();
    bfdb_index_iter *it = NULL;

    EXEC(s, "INSERT INTO kv VALUES (NULL, '5')");
    KV_SET(s, "k", "4");
    create(s, "n", BFDB_INDEX_BTREE, 0, NULL, NULL, BFDB_IV_INTEGER, 1);
    EXEC(s, "INSERT INTO kv VALUES (NULL, '6')"); /* still writable */
    cr_assert_eq(bfdb_index_lookup(s, "n", "4\0002", 3, 0, &it), BFDB_EINVAL,
                 "a NUL byte cut the value short: %s", bfdb_store_errmsg(s));
    cr_assert_null(it);
    CHECK_OK(s, bfdb_kv_set(s, "j", 1, "7\0009", 3));
    EXPECT_LOOKUP(s, "n", "4", "k");
    expect_healthy(s, "n");
    bfdb_store_close(s);
}

Test(manage, recover_rebuilds_only_damaged_indexes)
{
    bfdb_store *s = open_kv();
    int checked = -1, rebuilt = -1;

    KV_SET(s, "a", "1");
    KV_SET(s, "b", "2");
    create(s, "i1", BFDB_INDEX_BTREE, 0, NULL, NULL, BFDB_IV_INTEGER, 2);
    create(s, "i2", BFDB_INDEX_HASH, 0, NULL, NULL, BFDB_IV_STRING, 2);
    create(s, "i3", BFDB_INDEX_BTREE, 1, NULL, NULL, BFDB_IV_FLOAT, 2);

    CHECK_OK(s, bfdb_index_recover(s, &checked, &rebuilt));
    cr_assert_eq(checked, 3);
    cr_assert_eq(rebuilt, 0);

    sqlite3 *db = raw_open();
    raw_exec(db, "DELETE FROM buffdb_ix_1");
    raw_exec(db, "DELETE FROM buffdb_ix_3 WHERE k = 'b'");
    sqlite3_close(db);
    CHECK_OK(s, bfdb_index_recover(s, &checked, &rebuilt));
    cr_assert_eq(checked, 3);
    cr_assert_eq(rebuilt, 2);
    expect_healthy(s, "i1");
    expect_healthy(s, "i2");
    expect_healthy(s, "i3");
    EXPECT_RANGE(s, "i1", NULL, NULL, 0, 0, "a b");
    EXPECT_LOOKUP(s, "i3", "2", "b");

    CHECK_OK(s, bfdb_index_recover(s, NULL, NULL));
    bfdb_store_close(s);
}

/* ---- the running mark -------------------------------------------------- */

Test(manage, mark_running_tells_an_unclean_stop)
{
    bfdb_store *s = open_kv();
    int unclean = -1;

    CHECK_OK(s, bfdb_store_mark_running(s, 1, &unclean));
    cr_assert_eq(unclean, 0, "first start is clean");
    CHECK_OK(s, bfdb_store_mark_running(s, 1, &unclean));
    cr_assert_eq(unclean, 1, "start without a stop in between");
    CHECK_OK(s, bfdb_store_mark_running(s, 0, NULL));
    CHECK_OK(s, bfdb_store_mark_running(s, 1, &unclean));
    cr_assert_eq(unclean, 0, "start after a clean stop");
    /* the mark lives in the file */
    bfdb_store_close(s);
    s = open_kv();
    CHECK_OK(s, bfdb_store_mark_running(s, 1, &unclean));
    cr_assert_eq(unclean, 1, "reopened while marked running");
    CHECK_OK(s, bfdb_store_mark_running(s, 0, &unclean));
    bfdb_store_close(s);
    s = open_kv();
    CHECK_OK(s, bfdb_store_mark_running(s, 1, &unclean));
    cr_assert_eq(unclean, 0, "reopened after a clean stop");
    CHECK_OK(s, bfdb_store_mark_running(s, 1, NULL));
    bfdb_store_close(s);
}

/* ---- scale ------------------------------------------------------------- */

#define SCALE_KEYS 100000

Test(scale, hundred_thousand_keys)
{
    char k[32], v[64];
    uint64_t n = 0;

    /* the store's schema first, then the rows in one transaction */
    bfdb_store_close(open_kv());
    sqlite3 *db = raw_open();
    sqlite3_stmt *st = NULL;
    raw_exec(db, "BEGIN");
    cr_assert_eq(sqlite3_prepare_v2(db, "INSERT INTO kv (key, value)"
                                        " VALUES (?1, ?2)", -1, &st, NULL),
                 SQLITE_OK, "%s", sqlite3_errmsg(db));
    for (int i = 0; i < SCALE_KEYS; i++) {
        /* values in the opposite order to the keys */
        snprintf(k, sizeof(k), "key%06d", i);
        snprintf(v, sizeof(v), "{\"n\":%d,\"s\":\"x%d\"}", SCALE_KEYS - 1 - i,
                 i);
        sqlite3_bind_text(st, 1, k, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, v, -1, SQLITE_TRANSIENT);
        cr_assert_eq(sqlite3_step(st), SQLITE_DONE, "%s", sqlite3_errmsg(db));
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    raw_exec(db, "COMMIT");
    sqlite3_close(db);

    bfdb_store *s = open_kv();
    struct bfdb_index_spec sp = mkspec("n", BFDB_INDEX_BTREE, 1, NULL, "$.n",
                                       BFDB_IV_INTEGER);
    CHECK_OK(s, bfdb_index_create(s, &sp, &n));
    cr_assert_eq(n, SCALE_KEYS, "indexed %" PRIu64, n);
    create(s, "s", BFDB_INDEX_HASH, 0, "key01", "$.s", BFDB_IV_STRING, 10000);

    EXPECT_LOOKUP(s, "n", "54321", "key045678");
    EXPECT_LOOKUP(s, "s", "x12345", "key012345");
    EXPECT_LOOKUP(s, "s", "x22345", "");

    /* 1000 values in a range: 20000..20999, keys 079999 down to 079000 */
    bfdb_index_iter *it = NULL;
    const char *key, *val;
    size_t kl, vl;
    int rc, got = 0;
    CHECK_OK(s, bfdb_index_range(s, "n", "20000", 5, "20999", 5, 0, &it));
    while ((rc = bfdb_index_next(it, &key, &kl, &val, &vl)) == 1) {
        snprintf(k, sizeof(k), "key%06d", SCALE_KEYS - 1 - (20000 + got));
        snprintf(v, sizeof(v), "{\"n\":%d,", 20000 + got);
        cr_assert_eq(kl, strlen(k));
        cr_assert_eq(memcmp(key, k, kl), 0, "entry %d: key %.*s, expected "
                     "%s", got, (int)kl, key, k);
        cr_assert_eq(strncmp(val, v, strlen(v)), 0, "entry %d: value %s",
                     got, val);
        got++;
    }
    cr_assert_eq(rc, 0, "%s", bfdb_store_errmsg(s));
    bfdb_index_iter_close(it);
    cr_assert_eq(got, 1000);

    /* a limit on a big open range */
    CHECK_OK(s, bfdb_index_range(s, "n", "99990", 5, NULL, 0, 0, &it));
    char *all = drain(s, it, 0);
    cr_assert_str_eq(all, "key000009 key000008 key000007 key000006 key000005"
                          " key000004 key000003 key000002 key000001"
                          " key000000");
    free(all);
    char *lim = range(s, "n", NULL, NULL, 3, 0);
    cr_assert_str_eq(lim, "key099999 key099998 key099997");
    free(lim);

    /* writes still keep it true, and unique still holds */
    KV_SET(s, "key045678", "{\"n\":-1}");
    EXPECT_LOOKUP(s, "n", "54321", "");
    EXPECT_LOOKUP(s, "n", "-1", "key045678");
    CHECK_RC(s, BFDB_EEXIST, bfdb_kv_set(s, "new", 3, "{\"n\":7}", 7));
    expect_healthy(s, "n");
    expect_healthy(s, "s");
    bfdb_store_close(s);
}
