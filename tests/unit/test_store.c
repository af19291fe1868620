/*
 * test_store.c - the SQLite WAL store (src/store/): kv, blob, blob parts,
 * raw SQL, upstream file compatibility, bad input, several handles
 *
 * Criterion forks every test and may run them in parallel: each test gets
 * its own directory from th_tmpdir() in the suite's .init and removes it in
 * .fini.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cmp.h"
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

TestSuite(kv, .init = setup, .fini = teardown, .timeout = 30.);
TestSuite(blob, .init = setup, .fini = teardown, .timeout = 30.);
TestSuite(parts, .init = setup, .fini = teardown, .timeout = 30.);
TestSuite(query, .init = setup, .fini = teardown, .timeout = 30.);
TestSuite(compat, .init = setup, .fini = teardown, .timeout = 30.);
TestSuite(open, .init = setup, .fini = teardown, .timeout = 30.);
TestSuite(handles, .init = setup, .fini = teardown, .timeout = 30.);
TestSuite(interrupt, .init = setup, .fini = teardown, .timeout = 30.);

/* ---- helpers ----------------------------------------------------------- */

#define CHECK_OK(s, expr)                                                    \
    do {                                                                     \
        int rc_ = (expr);                                                    \
        cr_assert_eq(rc_, BFDB_OK, "%s: %s (%d)", #expr,                     \
                     bfdb_store_errmsg(s), rc_);                             \
    } while (0)

static bfdb_store *
open_path(int kind, const char *path, const struct bfdb_store_opts *o)
{
    char err[512] = "";
    bfdb_store *s = NULL;
    int rc = bfdb_store_open(&s, kind, path, o, err, sizeof(err));

    cr_assert_eq(rc, BFDB_OK, "open %s: %s (%d)", path, err, rc);
    cr_assert_not_null(s);
    return s;
}

static bfdb_store *
open_named(int kind, const char *name, const struct bfdb_store_opts *o)
{
    char *p = th_path(g_dir, name);
    bfdb_store *s = open_path(kind, p, o);
    free(p);
    return s;
}

static bfdb_store *
open_kv(void)
{
    return open_named(BFDB_STORE_KV, "kv.db", NULL);
}

static bfdb_store *
open_blob(void)
{
    return open_named(BFDB_STORE_BLOB, "blob.db", NULL);
}

/* small parts: blobs above 1000 bytes are split into 300-byte parts */
static bfdb_store *
open_parted(void)
{
    struct bfdb_store_opts o = {0};
    o.blob_inline_max = 1000;
    o.blob_part_size = 300;
    return open_named(BFDB_STORE_BLOB, "blob.db", &o);
}

static void
fill_random(unsigned char *p, size_t n, uint32_t seed)
{
    uint32_t x = seed ? seed : 0x9e3779b9u;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (unsigned char)(x >> 24);
    }
}

/* odd chunk sizes that straddle the 300-byte parts in every way */
static const size_t odd_chunks[] = {1, 7, 299, 301, 13, 600, 3, 1021, 89};
#define N_ODD (sizeof(odd_chunks) / sizeof(odd_chunks[0]))

static void
kv_expect(bfdb_store *s, const char *key, size_t klen, const char *val,
          size_t vlen)
{
    char *v = NULL;
    size_t n = 0;

    CHECK_OK(s, bfdb_kv_get(s, key, klen, &v, &n));
    cr_assert_not_null(v);
    cr_assert_eq(n, vlen, "value length %zu, expected %zu", n, vlen);
    if (vlen)
        cr_assert_eq(memcmp(v, val, vlen), 0, "value bytes differ");
    cr_assert_eq(v[vlen], '\0', "value is NUL-terminated past its length");
    free(v);
}

static void
kv_expect_missing(bfdb_store *s, const char *key, size_t klen)
{
    char *v = (char *)1;
    size_t n = 99;
    int rc = bfdb_kv_get(s, key, klen, &v, &n);

    cr_assert_eq(rc, BFDB_ENOTFOUND, "get: %d (%s)", rc,
                 bfdb_store_errmsg(s));
    cr_assert_null(v);
    cr_assert_eq(n, 0);
}

#define KV_SET(s, k, v) CHECK_OK(s, bfdb_kv_set(s, k, strlen(k), v, strlen(v)))

/* blob_expect - id holds data/len; meta NULL means metadata absent */
static void
blob_expect(bfdb_store *s, uint64_t id, const void *data, size_t len,
            const char *meta, size_t mlen)
{
    void *d = NULL;
    char *m = NULL;
    size_t n = 0, ml = 0;
    int rc = bfdb_blob_get(s, id, SIZE_MAX, &d, &n, &m, &ml);

    cr_assert_eq(rc, BFDB_OK, "get blob %" PRIu64 ": %s (%d)", id,
                 bfdb_store_errmsg(s), rc);
    cr_assert_not_null(d);
    cr_assert_eq(n, len, "blob %" PRIu64 " is %zu bytes, expected %zu", id, n,
                 len);
    if (len)
        cr_assert_eq(memcmp(d, data, len), 0, "blob %" PRIu64 " bytes differ",
                     id);
    cr_assert_eq(((unsigned char *)d)[len], 0);
    if (meta == NULL) {
        cr_assert_null(m, "blob %" PRIu64 ": metadata should be absent", id);
        cr_assert_eq(ml, 0);
    } else {
        cr_assert_not_null(m, "blob %" PRIu64 ": metadata went missing", id);
        cr_assert_eq(ml, mlen, "metadata length %zu, expected %zu", ml, mlen);
        if (mlen)
            cr_assert_eq(memcmp(m, meta, mlen), 0, "metadata bytes differ");
        cr_assert_eq(m[mlen], '\0');
    }
    free(d);
    free(m);
}

static void
blob_expect_missing(bfdb_store *s, uint64_t id)
{
    void *d = (void *)1;
    char *m = (char *)1;
    size_t n = 1, ml = 1;
    int rc = bfdb_blob_get(s, id, SIZE_MAX, &d, &n, &m, &ml);

    cr_assert_eq(rc, BFDB_ENOTFOUND, "get blob %" PRIu64 ": %d (%s)", id, rc,
                 bfdb_store_errmsg(s));
    cr_assert_null(d);
    cr_assert_null(m);
}

static uint64_t
blob_put(bfdb_store *s, const void *data, size_t len, const char *meta,
         size_t mlen)
{
    uint64_t id = 0;
    CHECK_OK(s, bfdb_blob_store(s, data, len, meta, mlen, &id));
    cr_assert_gt(id, 0);
    return id;
}

static size_t
len_or_0(const char *p)
{
    return p ? strlen(p) : 0;
}

#define BLOB_PUT(s, str, meta)                                               \
    blob_put(s, str, strlen(str), meta, len_or_0(meta))

/* sql_int - the single integer the query returns */
static int64_t
sql_int(bfdb_store *s, const char *sql)
{
    bfdb_query *q = NULL;
    int64_t v;

    CHECK_OK(s, bfdb_query_open(s, sql, strlen(sql), &q));
    int rc = bfdb_query_next(q);
    cr_assert_eq(rc, 1, "%s: no row (%d, %s)", sql, rc, bfdb_store_errmsg(s));
    cr_assert_eq(bfdb_query_type(q, 0), BFDB_COL_INTEGER,
                 "%s: column type %d", sql, bfdb_query_type(q, 0));
    v = bfdb_query_int(q, 0);
    cr_assert_eq(bfdb_query_next(q), 0, "%s: more than one row", sql);
    bfdb_query_close(q);
    return v;
}

static uint64_t
sql_exec(bfdb_store *s, const char *sql)
{
    uint64_t changes = 12345;
    int rc = bfdb_query_execute(s, sql, strlen(sql), &changes);
    cr_assert_eq(rc, BFDB_OK, "%s: %s (%d)", sql, bfdb_store_errmsg(s), rc);
    return changes;
}

static int64_t
part_count(bfdb_store *s)
{
    return sql_int(s, "SELECT count(*) FROM buffdb_blob_part");
}

static int64_t
blob_rows(bfdb_store *s)
{
    return sql_int(s, "SELECT count(*) FROM blob");
}

/* write_chunks - len bytes of data through an open writer, odd chunks */
static void
write_chunks(bfdb_store *s, bfdb_blob_writer *w, const unsigned char *data,
             size_t len)
{
    size_t off = 0;
    for (size_t i = 0; off < len; i++) {
        size_t n = odd_chunks[i % N_ODD];
        if (n > len - off)
            n = len - off;
        CHECK_OK(s, bfdb_blob_writer_write(w, data + off, n));
        off += n;
    }
}

/* read_chunks - the whole blob through a reader in odd chunks; checks the
 * size, the bytes, the metadata and that the end reads as 0 */
static void
read_chunks_expect(bfdb_store *s, uint64_t id, const unsigned char *data,
                   size_t len, const char *meta)
{
    bfdb_blob_reader *r = NULL;
    uint64_t size = 0;
    char *m = NULL;
    size_t ml = 0, off = 0, got;
    unsigned char *buf = malloc(len + 2048);

    CHECK_OK(s, bfdb_blob_reader_open(s, id, &r, &size, &m, &ml));
    cr_assert_eq(size, len, "reader size %" PRIu64 ", expected %zu", size,
                 len);
    if (meta == NULL) {
        cr_assert_null(m);
    } else {
        cr_assert_not_null(m);
        cr_assert_eq(ml, strlen(meta));
        cr_assert_str_eq(m, meta);
    }
    for (size_t i = 0;; i++) {
        size_t n = odd_chunks[i % N_ODD];
        CHECK_OK(s, bfdb_blob_reader_read(r, buf + off, n, &got));
        cr_assert_leq(got, n);
        if (got == 0)
            break;
        off += got;
        cr_assert_leq(off, len, "reader returned more than the blob holds");
    }
    cr_assert_eq(off, len, "read %zu of %zu bytes", off, len);
    if (len)
        cr_assert_eq(memcmp(buf, data, len), 0, "streamed bytes differ");
    CHECK_OK(s, bfdb_blob_reader_read(r, buf, 10, &got));
    cr_assert_eq(got, 0, "reads past the end keep returning 0");
    bfdb_blob_reader_close(r);
    free(buf);
    free(m);
}

static int
errmsg_has(const char *msg, const char *needle)
{
    return msg != NULL && strstr(msg, needle) != NULL;
}

/* ---- kv ---------------------------------------------------------------- */

Test(kv, get_of_missing_key_is_notfound)
{
    bfdb_store *s = open_kv();
    kv_expect_missing(s, "nope", 4);
    cr_assert_str_neq(bfdb_store_errmsg(s), "");
    bfdb_store_close(s);
}

Test(kv, set_then_get_round_trips)
{
    bfdb_store *s = open_kv();
    KV_SET(s, "k", "v1");
    kv_expect(s, "k", 1, "v1", 2);
    cr_assert_eq(bfdb_store_kind(s), BFDB_STORE_KV);
    bfdb_store_close(s);
}

/* has_key - 1 if keys[0..n) holds k */
static int
has_key(char **keys, size_t *lens, size_t n, const char *k)
{
    for (size_t i = 0; i < n; i++)
        if (lens[i] == strlen(k) && memcmp(keys[i], k, lens[i]) == 0)
            return 1;
    return 0;
}

/* what a transaction's commit will change: each key it staged, once,
 * sets and deletes alike, none of another transaction's */
Test(kv, txn_kv_keys_lists_the_distinct_staged_keys)
{
    bfdb_store *s = open_kv();
    char **keys;
    size_t *lens, n;

    CHECK_OK(s, bfdb_txn_kv_keys(s, 7, &keys, &lens, &n));
    cr_expect_eq(n, 0);
    bfdb_txn_kv_keys_free(keys, lens, n);

    CHECK_OK(s, bfdb_txn_kv_stage(s, 7, "a", 1, "1", 1));
    CHECK_OK(s, bfdb_txn_kv_stage(s, 7, "b", 1, "2", 1));
    CHECK_OK(s, bfdb_txn_kv_stage(s, 7, "a", 1, NULL, 0));
    CHECK_OK(s, bfdb_txn_kv_stage(s, 7, "long key", 8, "3", 1));
    CHECK_OK(s, bfdb_txn_kv_stage(s, 8, "other", 5, "4", 1));
    CHECK_OK(s, bfdb_txn_kv_stage(s, 7, "n\0ul", 4, "5", 1));
    CHECK_OK(s, bfdb_txn_kv_keys(s, 7, &keys, &lens, &n));
    cr_expect_eq(n, 4);
    cr_expect(has_key(keys, lens, n, "a"));
    cr_expect(has_key(keys, lens, n, "b"));
    cr_expect(has_key(keys, lens, n, "long key"));
    cr_expect_not(has_key(keys, lens, n, "other"));
    int nul = 0; /* a NUL byte inside: all 4 bytes, not "n" */
    for (size_t i = 0; i < n; i++)
        nul |= lens[i] == 4 && memcmp(keys[i], "n\0ul", 4) == 0;
    cr_expect(nul, "the key with a NUL byte is listed whole");
    cr_expect_not(has_key(keys, lens, n, "n"));
    for (size_t i = 0; i < n; i++)
        cr_expect_eq(keys[i][lens[i]], '\0', "NUL-terminated");
    bfdb_txn_kv_keys_free(keys, lens, n);

    CHECK_OK(s, bfdb_txn_kv_commit(s, 7, 0));
    CHECK_OK(s, bfdb_txn_kv_keys(s, 7, &keys, &lens, &n));
    cr_expect_eq(n, 0, "nothing staged after the commit");
    bfdb_txn_kv_keys_free(keys, lens, n);
    kv_expect(s, "b", 1, "2", 1);
    kv_expect_missing(s, "a", 1);
    bfdb_store_close(s);
}

Test(kv, second_set_replaces_the_value)
{
    bfdb_store *s = open_kv();
    KV_SET(s, "k", "first value");
    KV_SET(s, "k", "2nd");
    kv_expect(s, "k", 1, "2nd", 3);
    cr_assert_eq(sql_int(s, "SELECT count(*) FROM kv"), 1,
                 "upsert must not add a second row");
    bfdb_store_close(s);
}

Test(kv, delete_of_missing_key_is_ok_with_deleted_0)
{
    bfdb_store *s = open_kv();
    int deleted = 7;
    KV_SET(s, "other", "x");
    CHECK_OK(s, bfdb_kv_delete(s, "nope", 4, &deleted));
    cr_assert_eq(deleted, 0);
    CHECK_OK(s, bfdb_kv_delete(s, "nope", 4, NULL));
    kv_expect(s, "other", 5, "x", 1);
    bfdb_store_close(s);
}

Test(kv, delete_of_present_key_reports_1_then_get_is_notfound)
{
    bfdb_store *s = open_kv();
    int deleted = 0;
    KV_SET(s, "k", "v");
    KV_SET(s, "keep", "v");
    CHECK_OK(s, bfdb_kv_delete(s, "k", 1, &deleted));
    cr_assert_eq(deleted, 1);
    kv_expect_missing(s, "k", 1);
    kv_expect(s, "keep", 4, "v", 1);
    CHECK_OK(s, bfdb_kv_delete(s, "k", 1, &deleted));
    cr_assert_eq(deleted, 0, "a second delete finds nothing");
    bfdb_store_close(s);
}

Test(kv, keys_with_embedded_nul_are_distinct)
{
    bfdb_store *s = open_kv();
    CHECK_OK(s, bfdb_kv_set(s, "a\0b", 3, "AB", 2));
    CHECK_OK(s, bfdb_kv_set(s, "a\0c", 3, "AC", 2));
    kv_expect(s, "a\0b", 3, "AB", 2);
    kv_expect(s, "a\0c", 3, "AC", 2);
    kv_expect_missing(s, "a", 1);
    kv_expect_missing(s, "a\0", 2);
    cr_assert_eq(sql_int(s, "SELECT count(*) FROM kv"), 2);
    int deleted = 0;
    CHECK_OK(s, bfdb_kv_delete(s, "a\0b", 3, &deleted));
    cr_assert_eq(deleted, 1);
    kv_expect_missing(s, "a\0b", 3);
    kv_expect(s, "a\0c", 3, "AC", 2);
    bfdb_store_close(s);
}

Test(kv, values_with_nul_and_utf8_round_trip_byte_for_byte)
{
    static const char nul_val[] = "x\0y\0\0z";
    static const char emoji_key[] = "\xf0\x9f\x94\x91 key";          /* 🔑 */
    /* 😀✓ 日本 café */
    static const char emoji_val[] = "\xf0\x9f\x98\x80\xe2\x9c\x93 "
                                    "\xe6\x97\xa5\xe6\x9c\xac "
                                    "caf\xc3\xa9";
    bfdb_store *s = open_kv();

    CHECK_OK(s, bfdb_kv_set(s, "nul", 3, nul_val, sizeof(nul_val) - 1));
    CHECK_OK(s, bfdb_kv_set(s, emoji_key, strlen(emoji_key), emoji_val,
                            strlen(emoji_val)));
    kv_expect(s, "nul", 3, nul_val, sizeof(nul_val) - 1);
    kv_expect(s, emoji_key, strlen(emoji_key), emoji_val, strlen(emoji_val));
    bfdb_store_close(s);
}

Test(kv, non_utf8_bytes_round_trip)
{
    static const char key[] = "\xff\xfe\x80";
    static const char val[] = "\xc3\x28\xa0\xa1\xed\xa0\x80\xff";
    bfdb_store *s = open_kv();

    CHECK_OK(s, bfdb_kv_set(s, key, 3, val, sizeof(val) - 1));
    kv_expect(s, key, 3, val, sizeof(val) - 1);
    bfdb_store_close(s);
}

Test(kv, one_mib_value_round_trips)
{
    size_t n = 1u << 20;
    unsigned char *v = malloc(n);
    bfdb_store *s = open_kv();

    fill_random(v, n, 42);
    v[0] = 0;
    v[n / 2] = 0;
    CHECK_OK(s, bfdb_kv_set(s, "big", 3, (char *)v, n));
    kv_expect(s, "big", 3, (char *)v, n);
    free(v);
    bfdb_store_close(s);
}

Test(kv, empty_key_and_empty_value_work)
{
    bfdb_store *s = open_kv();
    CHECK_OK(s, bfdb_kv_set(s, "", 0, "for empty key", 13));
    CHECK_OK(s, bfdb_kv_set(s, "empty-val", 9, "", 0));
    kv_expect(s, "", 0, "for empty key", 13);
    kv_expect(s, "empty-val", 9, "", 0);
    cr_assert_eq(sql_int(s, "SELECT count(*) FROM kv WHERE value = ''"), 1,
                 "an empty value is stored as '' (not NULL)");
    int deleted = 0;
    CHECK_OK(s, bfdb_kv_delete(s, "", 0, &deleted));
    cr_assert_eq(deleted, 1);
    kv_expect_missing(s, "", 0);
    bfdb_store_close(s);
}

Test(kv, values_survive_close_and_reopen)
{
    bfdb_store *s = open_kv();
    KV_SET(s, "durable", "yes");
    bfdb_store_close(s);
    s = open_kv();
    kv_expect(s, "durable", 7, "yes", 3);
    bfdb_store_close(s);
}

Test(kv, digest_is_sha256_of_the_value_and_missing_key_is_notfound)
{
    uint8_t d[BFDB_DIGEST_LEN], want[BFDB_DIGEST_LEN];
    bfdb_store *s = open_kv();

    CHECK_OK(s, bfdb_kv_set(s, "k", 1, "a\0b", 3));
    CHECK_OK(s, bfdb_kv_digest(s, "k", 1, d));
    bfdb_sha256_digest("a\0b", 3, want);
    cr_assert_arr_eq(d, want, BFDB_DIGEST_LEN);
    cr_assert_eq(bfdb_kv_digest(s, "missing", 7, d), BFDB_ENOTFOUND);
    bfdb_store_close(s);
}

Test(kv, digest_eq_is_true_for_equal_values_false_for_different)
{
    uint8_t d[BFDB_DIGEST_LEN];
    struct bfdb_cmp c;
    bfdb_store *s = open_kv();

    KV_SET(s, "a", "same");
    KV_SET(s, "b", "same");
    KV_SET(s, "c", "same");
    KV_SET(s, "d", "different");

    bfdb_cmp_init(&c, BFDB_CMP_EQ);
    for (const char *k = "abc"; *k; k++) {
        CHECK_OK(s, bfdb_kv_digest(s, k, 1, d));
        cr_assert_eq(bfdb_cmp_add(&c, d), 0);
    }
    cr_assert_eq(bfdb_cmp_result(&c), 1, "a, b, c hold equal values");
    CHECK_OK(s, bfdb_kv_digest(s, "d", 1, d));
    cr_assert_eq(bfdb_cmp_add(&c, d), 1);
    cr_assert_eq(bfdb_cmp_result(&c), 0, "d differs");
    bfdb_cmp_free(&c);
    bfdb_store_close(s);
}

Test(kv, digest_not_eq_is_true_only_when_no_two_values_are_equal)
{
    uint8_t d[BFDB_DIGEST_LEN];
    struct bfdb_cmp c;
    bfdb_store *s = open_kv();

    KV_SET(s, "a", "1");
    KV_SET(s, "b", "2");
    KV_SET(s, "c", "3");
    KV_SET(s, "d", "2");

    bfdb_cmp_init(&c, BFDB_CMP_NOT_EQ);
    for (const char *k = "abc"; *k; k++) {
        CHECK_OK(s, bfdb_kv_digest(s, k, 1, d));
        cr_assert_eq(bfdb_cmp_add(&c, d), 0);
    }
    cr_assert_eq(bfdb_cmp_result(&c), 1, "1, 2, 3 are all different");
    CHECK_OK(s, bfdb_kv_digest(s, "d", 1, d));
    cr_assert_eq(bfdb_cmp_add(&c, d), 1, "d repeats b");
    cr_assert_eq(bfdb_cmp_result(&c), 0);
    bfdb_cmp_free(&c);
    bfdb_store_close(s);
}

Test(kv, kv_calls_on_a_blob_store_are_einval)
{
    bfdb_store *s = open_blob();
    char *v = NULL;
    size_t n = 0;
    int deleted = 0;
    uint8_t d[BFDB_DIGEST_LEN];

    cr_assert_eq(bfdb_kv_get(s, "k", 1, &v, &n), BFDB_EINVAL);
    cr_assert(errmsg_has(bfdb_store_errmsg(s), "not a kv store"), "%s",
              bfdb_store_errmsg(s));
    cr_assert_eq(bfdb_kv_set(s, "k", 1, "v", 1), BFDB_EINVAL);
    cr_assert_eq(bfdb_kv_delete(s, "k", 1, &deleted), BFDB_EINVAL);
    cr_assert_eq(bfdb_kv_digest(s, "k", 1, d), BFDB_EINVAL);
    cr_assert_eq(sql_int(s, "SELECT count(*) FROM sqlite_master WHERE "
                            "name = 'kv'"), 0, "no kv table appeared");
    bfdb_store_close(s);
}

Test(kv, blob_calls_on_a_kv_store_are_einval)
{
    bfdb_store *s = open_kv();
    uint64_t id = 0;
    void *d = NULL;
    size_t n = 0;
    int x = 0;
    bfdb_blob_writer *w = NULL;

    cr_assert_eq(bfdb_blob_store(s, "x", 1, NULL, 0, &id), BFDB_EINVAL);
    cr_assert(errmsg_has(bfdb_store_errmsg(s), "not a blob store"), "%s",
              bfdb_store_errmsg(s));
    cr_assert_eq(bfdb_blob_get(s, 1, 10, &d, &n, NULL, NULL), BFDB_EINVAL);
    cr_assert_eq(bfdb_blob_delete(s, 1, &x), BFDB_EINVAL);
    cr_assert_eq(bfdb_blob_update(s, 1, 1, "x", 1, 0, NULL, 0, &x),
                 BFDB_EINVAL);
    cr_assert_eq(bfdb_blob_writer_open(s, 0, 1, 0, NULL, 0, &w, &id),
                 BFDB_EINVAL);
    cr_assert_null(w);
    KV_SET(s, "still", "works");
    kv_expect(s, "still", 5, "works", 5);
    bfdb_store_close(s);
}

/* ---- blob: ids --------------------------------------------------------- */

Test(blob, ids_start_at_1_and_increase)
{
    bfdb_store *s = open_blob();
    cr_assert_eq(BLOB_PUT(s, "one", NULL), 1);
    cr_assert_eq(BLOB_PUT(s, "two", NULL), 2);
    cr_assert_eq(BLOB_PUT(s, "three", NULL), 3);
    blob_expect(s, 1, "one", 3, NULL, 0);
    blob_expect(s, 2, "two", 3, NULL, 0);
    blob_expect(s, 3, "three", 5, NULL, 0);
    cr_assert_eq(bfdb_store_kind(s), BFDB_STORE_BLOB);
    bfdb_store_close(s);
}

Test(blob, ids_never_reused_after_highest_deleted)
{
    bfdb_store *s = open_blob();
    int deleted = 0;

    cr_assert_eq(BLOB_PUT(s, "a", NULL), 1);
    cr_assert_eq(BLOB_PUT(s, "b", NULL), 2);
    cr_assert_eq(BLOB_PUT(s, "c", NULL), 3);
    CHECK_OK(s, bfdb_blob_delete(s, 3, &deleted));
    cr_assert_eq(deleted, 1);
    cr_assert_eq(BLOB_PUT(s, "d", NULL), 4, "id 3 must not come back");
    CHECK_OK(s, bfdb_blob_delete(s, 4, NULL));
    CHECK_OK(s, bfdb_blob_delete(s, 2, NULL));
    CHECK_OK(s, bfdb_blob_delete(s, 1, NULL));
    cr_assert_eq(blob_rows(s), 0);
    cr_assert_eq(BLOB_PUT(s, "e", NULL), 5, "an emptied store keeps counting");
    blob_expect_missing(s, 3);
    blob_expect_missing(s, 4);
    bfdb_store_close(s);
}

Test(blob, ids_never_reused_across_reopen)
{
    bfdb_store *s = open_blob();
    cr_assert_eq(BLOB_PUT(s, "a", NULL), 1);
    cr_assert_eq(BLOB_PUT(s, "b", NULL), 2);
    CHECK_OK(s, bfdb_blob_delete(s, 2, NULL));
    bfdb_store_close(s);

    s = open_blob();
    cr_assert_eq(BLOB_PUT(s, "c", NULL), 3, "the spent id 2 survives reopen");
    CHECK_OK(s, bfdb_blob_delete(s, 3, NULL));
    CHECK_OK(s, bfdb_blob_delete(s, 1, NULL));
    bfdb_store_close(s);

    s = open_blob();
    cr_assert_eq(BLOB_PUT(s, "d", NULL), 4);
    blob_expect(s, 4, "d", 1, NULL, 0);
    bfdb_store_close(s);
}

Test(blob, raw_insert_after_highest_deleted_does_not_reuse_id)
{
    bfdb_store *s = open_blob();
    uint64_t ch;

    BLOB_PUT(s, "a", NULL);
    BLOB_PUT(s, "b", NULL);
    BLOB_PUT(s, "c", NULL);
    CHECK_OK(s, bfdb_blob_delete(s, 3, NULL));
    ch = sql_exec(s, "INSERT INTO blob(data) VALUES (x'00')");
    cr_assert_eq(ch, 1);
    cr_assert_eq(sql_int(s, "SELECT max(rowid) FROM blob"), 4,
                 "raw INSERT got a spent id");
    cr_assert_eq(sql_int(s, "SELECT count(*) FROM blob WHERE rowid = 3"), 0);
    blob_expect(s, 4, "\0", 1, NULL, 0);
    blob_expect_missing(s, 3);
    cr_assert_eq(BLOB_PUT(s, "d", NULL), 5);
    bfdb_store_close(s);
}

Test(blob, raw_insert_at_an_explicit_spent_id_is_moved_past_it)
{
    bfdb_store *s = open_blob();

    BLOB_PUT(s, "a", NULL);
    BLOB_PUT(s, "b", NULL);
    CHECK_OK(s, bfdb_blob_delete(s, 1, NULL));
    sql_exec(s, "INSERT INTO blob(rowid, data) VALUES (1, x'01')");
    cr_assert_eq(sql_int(s, "SELECT count(*) FROM blob WHERE rowid = 1"), 0,
                 "id 1 was deleted and must stay unused");
    cr_assert_eq(sql_int(s, "SELECT max(rowid) FROM blob"), 3);
    blob_expect(s, 3, "\x01", 1, NULL, 0);
    cr_assert_eq(BLOB_PUT(s, "c", NULL), 4);
    bfdb_store_close(s);
}

Test(blob, raw_delete_of_all_rows_still_spends_their_ids)
{
    bfdb_store *s = open_blob();

    BLOB_PUT(s, "a", NULL);
    BLOB_PUT(s, "b", NULL);
    BLOB_PUT(s, "c", NULL);
    cr_assert_eq(sql_exec(s, "DELETE FROM blob"), 3);
    cr_assert_eq(blob_rows(s), 0);
    cr_assert_eq(BLOB_PUT(s, "d", NULL), 4);
    bfdb_store_close(s);
}

/* ---- blob: metadata ---------------------------------------------------- */

Test(blob, absent_metadata_stays_null)
{
    bfdb_store *s = open_blob();
    uint64_t id = BLOB_PUT(s, "data", NULL);
    blob_expect(s, id, "data", 4, NULL, 0);
    cr_assert_eq(sql_int(s, "SELECT metadata IS NULL FROM blob"), 1);
    bfdb_store_close(s);
}

Test(blob, empty_metadata_stays_empty_not_null)
{
    bfdb_store *s = open_blob();
    uint64_t id = BLOB_PUT(s, "data", "");
    blob_expect(s, id, "data", 4, "", 0);
    cr_assert_eq(sql_int(s, "SELECT metadata = '' FROM blob"), 1);
    bfdb_store_close(s);
}

Test(blob, metadata_with_embedded_nul_and_utf8_survives)
{
    static const char meta[] = "{\"k\":\"\xf0\x9f\x98\x80\"}\0tail";
    bfdb_store *s = open_blob();
    uint64_t id = blob_put(s, "d", 1, meta, sizeof(meta) - 1);
    blob_expect(s, id, "d", 1, meta, sizeof(meta) - 1);
    bfdb_store_close(s);
}

/* ---- blob: the update matrix ------------------------------------------- */

Test(blob, update_without_data_or_meta_changes_nothing)
{
    bfdb_store *s = open_blob();
    uint64_t id = BLOB_PUT(s, "orig", "m");
    int updated = 0;

    CHECK_OK(s, bfdb_blob_update(s, id, 0, "zzz", 3, 0, "x", 1, &updated));
    cr_assert_eq(updated, 1, "the blob exists");
    blob_expect(s, id, "orig", 4, "m", 1);
    bfdb_store_close(s);
}

Test(blob, update_with_data_and_meta_replaces_both)
{
    bfdb_store *s = open_blob();
    uint64_t id = BLOB_PUT(s, "orig", "m");
    int updated = 0;

    CHECK_OK(s, bfdb_blob_update(s, id, 1, "new data", 8, 1, "new meta", 8,
                                 &updated));
    cr_assert_eq(updated, 1);
    blob_expect(s, id, "new data", 8, "new meta", 8);

    updated = 0;
    CHECK_OK(s, bfdb_blob_update(s, id, 1, "v3", 2, 1, NULL, 0, &updated));
    cr_assert_eq(updated, 1);
    blob_expect(s, id, "v3", 2, NULL, 0);
    bfdb_store_close(s);
}

Test(blob, update_with_meta_only_keeps_data)
{
    bfdb_store *s = open_blob();
    uint64_t id = BLOB_PUT(s, "orig", "m");
    int updated = 0;

    CHECK_OK(s, bfdb_blob_update(s, id, 0, NULL, 0, 1, "meta2", 5, &updated));
    cr_assert_eq(updated, 1);
    blob_expect(s, id, "orig", 4, "meta2", 5);

    CHECK_OK(s, bfdb_blob_update(s, id, 0, NULL, 0, 1, NULL, 0, &updated));
    cr_assert_eq(updated, 1);
    blob_expect(s, id, "orig", 4, NULL, 0);

    CHECK_OK(s, bfdb_blob_update(s, id, 0, NULL, 0, 1, "", 0, &updated));
    blob_expect(s, id, "orig", 4, "", 0);
    bfdb_store_close(s);
}

Test(blob, update_with_data_only_keeps_meta)
{
    bfdb_store *s = open_blob();
    uint64_t id = BLOB_PUT(s, "orig", "m");
    uint64_t other = BLOB_PUT(s, "other", NULL);
    int updated = 0;

    CHECK_OK(s, bfdb_blob_update(s, id, 1, "longer data", 11, 0, "ignored",
                                 7, &updated));
    cr_assert_eq(updated, 1);
    blob_expect(s, id, "longer data", 11, "m", 1);

    CHECK_OK(s, bfdb_blob_update(s, other, 1, "", 0, 0, NULL, 0, &updated));
    cr_assert_eq(updated, 1);
    blob_expect(s, other, "", 0, NULL, 0);
    bfdb_store_close(s);
}

Test(blob, update_and_delete_of_missing_id_are_ok_with_0)
{
    bfdb_store *s = open_blob();
    uint64_t id = BLOB_PUT(s, "keep", "m");
    int x;

    for (int has_data = 0; has_data <= 1; has_data++)
        for (int um = 0; um <= 1; um++) {
            x = 7;
            CHECK_OK(s, bfdb_blob_update(s, 99, has_data, "d", 1, um, "m", 1,
                                         &x));
            cr_assert_eq(x, 0, "has_data %d update_meta %d", has_data, um);
            CHECK_OK(s, bfdb_blob_update(s, 99, has_data, "d", 1, um, "m", 1,
                                         NULL));
        }
    x = 7;
    CHECK_OK(s, bfdb_blob_delete(s, 99, &x));
    cr_assert_eq(x, 0);
    CHECK_OK(s, bfdb_blob_delete(s, 99, NULL));
    cr_assert_eq(blob_rows(s), 1, "nothing created for a missing id");
    blob_expect(s, id, "keep", 4, "m", 1);
    blob_expect_missing(s, 99);
    bfdb_store_close(s);
}

Test(blob, id_above_int64_max_is_einval_everywhere)
{
    static const uint64_t bad[] = {UINT64_MAX, 9223372036854775808u};
    bfdb_store *s = open_blob();
    uint64_t id = BLOB_PUT(s, "x", NULL);

    for (size_t i = 0; i < 2; i++) {
        uint64_t b = bad[i];
        void *d = NULL;
        char *m = NULL;
        size_t n, ml;
        int x = 7;
        uint8_t dg[BFDB_DIGEST_LEN];
        bfdb_blob_writer *w = NULL;
        bfdb_blob_reader *r = NULL;
        uint64_t size, out = 0;

        cr_assert_eq(bfdb_blob_get(s, b, SIZE_MAX, &d, &n, &m, &ml),
                     BFDB_EINVAL, "get %" PRIu64, b);
        cr_assert_null(d);
        cr_assert(errmsg_has(bfdb_store_errmsg(s), "out of range"), "%s",
                  bfdb_store_errmsg(s));
        cr_assert_eq(bfdb_blob_update(s, b, 1, "y", 1, 1, "m", 1, &x),
                     BFDB_EINVAL);
        cr_assert_eq(x, 0);
        cr_assert_eq(bfdb_blob_update(s, b, 0, NULL, 0, 1, "m", 1, &x),
                     BFDB_EINVAL);
        cr_assert_eq(bfdb_blob_update(s, b, 0, NULL, 0, 0, NULL, 0, &x),
                     BFDB_EINVAL);
        x = 7;
        cr_assert_eq(bfdb_blob_delete(s, b, &x), BFDB_EINVAL);
        cr_assert_eq(x, 0);
        cr_assert_eq(bfdb_blob_writer_open(s, b, 1, 0, NULL, 0, &w, &out),
                     BFDB_EINVAL);
        cr_assert_null(w);
        cr_assert_eq(bfdb_blob_reader_open(s, b, &r, &size, NULL, NULL),
                     BFDB_EINVAL);
        cr_assert_null(r);
        cr_assert_eq(bfdb_blob_digest(s, b, dg), BFDB_EINVAL);
    }
    cr_assert_eq(blob_rows(s), 1);
    blob_expect(s, id, "x", 1, NULL, 0);
    bfdb_store_close(s);
}

Test(blob, id_int64_max_is_valid_but_missing)
{
    bfdb_store *s = open_blob();
    void *d;
    size_t n;
    int x = 7;

    cr_assert_eq(bfdb_blob_get(s, BFDB_BLOB_ID_MAX, 1, &d, &n, NULL, NULL),
                 BFDB_ENOTFOUND);
    CHECK_OK(s, bfdb_blob_delete(s, BFDB_BLOB_ID_MAX, &x));
    cr_assert_eq(x, 0);
    bfdb_store_close(s);
}

Test(blob, id_0_is_never_a_blob)
{
    bfdb_store *s = open_blob();
    uint64_t id = BLOB_PUT(s, "x", "m");
    int x;

    blob_expect_missing(s, 0);
    x = 7;
    CHECK_OK(s, bfdb_blob_delete(s, 0, &x));
    cr_assert_eq(x, 0);
    for (int um = 0; um <= 1; um++) {
        x = 7;
        CHECK_OK(s, bfdb_blob_update(s, 0, 1, "new", 3, um, "m2", 2, &x));
        cr_assert_eq(x, 0, "update of id 0 (update_meta %d) updated nothing",
                     um);
        x = 7;
        CHECK_OK(s, bfdb_blob_update(s, 0, 0, NULL, 0, um, "m2", 2, &x));
        cr_assert_eq(x, 0);
    }
    cr_assert_eq(blob_rows(s), 1, "update of id 0 must not create a blob");
    blob_expect(s, id, "x", 1, "m", 1);
    bfdb_store_close(s);
}

/* ---- blob: get, digest, empty ------------------------------------------ */

Test(blob, get_with_max_len_below_the_size_is_etoobig)
{
    bfdb_store *s = open_blob();
    uint64_t id = BLOB_PUT(s, "0123456789", "m");
    void *d = (void *)1;
    char *m = (char *)1;
    size_t n = 5, ml = 5;

    cr_assert_eq(bfdb_blob_get(s, id, 9, &d, &n, &m, &ml), BFDB_ETOOBIG);
    cr_assert_null(d);
    cr_assert_null(m);
    cr_assert_eq(n, 0);
    cr_assert(errmsg_has(bfdb_store_errmsg(s), "10 bytes"), "%s",
              bfdb_store_errmsg(s));
    CHECK_OK(s, bfdb_blob_get(s, id, 10, &d, &n, &m, &ml));
    cr_assert_eq(n, 10);
    cr_assert_eq(memcmp(d, "0123456789", 10), 0);
    free(d);
    free(m);
    cr_assert_eq(bfdb_blob_get(s, id, 0, &d, &n, NULL, NULL), BFDB_ETOOBIG);
    bfdb_store_close(s);
}

Test(blob, digest_is_equal_for_equal_data_and_differs_otherwise)
{
    uint8_t a[BFDB_DIGEST_LEN], b[BFDB_DIGEST_LEN], c[BFDB_DIGEST_LEN];
    uint8_t want[BFDB_DIGEST_LEN];
    bfdb_store *s = open_blob();
    uint64_t i1 = blob_put(s, "same\0bytes", 10, "meta one", 8);
    uint64_t i2 = blob_put(s, "same\0bytes", 10, NULL, 0);
    uint64_t i3 = blob_put(s, "same\0bytez", 10, "meta one", 8);

    CHECK_OK(s, bfdb_blob_digest(s, i1, a));
    CHECK_OK(s, bfdb_blob_digest(s, i2, b));
    CHECK_OK(s, bfdb_blob_digest(s, i3, c));
    bfdb_sha256_digest("same\0bytes", 10, want);
    cr_assert_arr_eq(a, want, BFDB_DIGEST_LEN);
    cr_assert_arr_eq(a, b, BFDB_DIGEST_LEN, "metadata is not part of data");
    cr_assert_arr_neq(a, c, BFDB_DIGEST_LEN);
    cr_assert_eq(bfdb_blob_digest(s, 77, a), BFDB_ENOTFOUND);
    bfdb_store_close(s);
}

Test(blob, empty_blob_round_trips)
{
    uint8_t d[BFDB_DIGEST_LEN], want[BFDB_DIGEST_LEN];
    bfdb_store *s = open_blob();
    uint64_t id = blob_put(s, NULL, 0, "empty", 5);

    blob_expect(s, id, "", 0, "empty", 5);
    read_chunks_expect(s, id, (const unsigned char *)"", 0, "empty");
    CHECK_OK(s, bfdb_blob_digest(s, id, d));
    bfdb_sha256_digest("", 0, want);
    cr_assert_arr_eq(d, want, BFDB_DIGEST_LEN);
    cr_assert_eq(sql_int(s, "SELECT length(data) FROM blob"), 0);
    bfdb_store_close(s);
}

Test(blob, blobs_survive_close_and_reopen)
{
    bfdb_store *s = open_blob();
    uint64_t id = BLOB_PUT(s, "durable", "meta");
    bfdb_store_close(s);
    s = open_blob();
    blob_expect(s, id, "durable", 7, "meta", 4);
    bfdb_store_close(s);
}

/* ---- blob: streaming --------------------------------------------------- */

Test(blob, reader_streams_inline_data_in_chunks)
{
    size_t n = 5000;
    unsigned char *data = malloc(n);
    bfdb_store *s = open_blob();

    fill_random(data, n, 7);
    uint64_t id = blob_put(s, data, n, "meta", 4);
    cr_assert_eq(sql_int(s, "SELECT length(data) FROM blob"), 5000,
                 "default options keep 5000 bytes inline");
    read_chunks_expect(s, id, data, n, "meta");
    free(data);
    bfdb_store_close(s);
}

Test(blob, reader_of_missing_id_is_notfound_and_leaves_store_usable)
{
    bfdb_store *s = open_blob();
    bfdb_blob_reader *r = (bfdb_blob_reader *)1;
    uint64_t size;
    char *m = (char *)1;
    size_t ml;

    cr_assert_eq(bfdb_blob_reader_open(s, 5, &r, &size, &m, &ml),
                 BFDB_ENOTFOUND);
    cr_assert_null(r);
    cr_assert_null(m);
    uint64_t id = BLOB_PUT(s, "ok", NULL);
    blob_expect(s, id, "ok", 2, NULL, 0);
    bfdb_store_close(s);
}

Test(blob, writer_stores_a_new_blob_with_metadata)
{
    bfdb_store *s = open_blob();
    bfdb_blob_writer *w = NULL;
    uint64_t id = 0;

    CHECK_OK(s, bfdb_blob_writer_open(s, 0, 6, 1, "m", 1, &w, &id));
    cr_assert_eq(id, 1);
    CHECK_OK(s, bfdb_blob_writer_write(w, "abc", 3));
    CHECK_OK(s, bfdb_blob_writer_write(w, "def", 3));
    CHECK_OK(s, bfdb_blob_writer_commit(w));
    blob_expect(s, id, "abcdef", 6, "m", 1);

    CHECK_OK(s, bfdb_blob_writer_open(s, 0, 2, 0, "ignored", 7, &w, &id));
    cr_assert_eq(id, 2);
    CHECK_OK(s, bfdb_blob_writer_write(w, "xy", 2));
    CHECK_OK(s, bfdb_blob_writer_commit(w));
    blob_expect(s, id, "xy", 2, NULL, 0);
    bfdb_store_close(s);
}

Test(blob, writer_replaces_data_of_an_existing_id)
{
    bfdb_store *s = open_blob();
    uint64_t id = BLOB_PUT(s, "old", "m");
    bfdb_blob_writer *w = NULL;
    uint64_t out = 0;

    CHECK_OK(s, bfdb_blob_writer_open(s, id, 4, 0, NULL, 0, &w, &out));
    cr_assert_eq(out, id);
    CHECK_OK(s, bfdb_blob_writer_write(w, "new!", 4));
    CHECK_OK(s, bfdb_blob_writer_commit(w));
    blob_expect(s, id, "new!", 4, "m", 1);

    CHECK_OK(s, bfdb_blob_writer_open(s, id, 1, 1, NULL, 0, &w, NULL));
    CHECK_OK(s, bfdb_blob_writer_write(w, "z", 1));
    CHECK_OK(s, bfdb_blob_writer_commit(w));
    blob_expect(s, id, "z", 1, NULL, 0);
    cr_assert_eq(blob_rows(s), 1);

    cr_assert_eq(bfdb_blob_writer_open(s, 42, 1, 0, NULL, 0, &w, NULL),
                 BFDB_ENOTFOUND);
    cr_assert_null(w);
    bfdb_store_close(s);
}

Test(blob, writer_rejects_writing_past_the_declared_size)
{
    bfdb_store *s = open_blob();
    bfdb_blob_writer *w = NULL;
    uint64_t id;

    CHECK_OK(s, bfdb_blob_writer_open(s, 0, 10, 0, NULL, 0, &w, &id));
    cr_assert_eq(bfdb_blob_writer_write(w, "0123456789A", 11), BFDB_EINVAL);
    CHECK_OK(s, bfdb_blob_writer_write(w, "012345", 6));
    cr_assert_eq(bfdb_blob_writer_write(w, "67890", 5), BFDB_EINVAL);
    cr_assert(errmsg_has(bfdb_store_errmsg(s), "declared size"), "%s",
              bfdb_store_errmsg(s));
    bfdb_blob_writer_abort(w);
    cr_assert_eq(blob_rows(s), 0);
    blob_expect_missing(s, id);
    bfdb_store_close(s);
}

Test(blob, writer_committed_short_is_einval_and_stores_nothing)
{
    bfdb_store *s = open_blob();
    uint64_t keep = BLOB_PUT(s, "keep", NULL);
    bfdb_blob_writer *w = NULL;
    uint64_t id = 0;

    CHECK_OK(s, bfdb_blob_writer_open(s, 0, 10, 1, "m", 1, &w, &id));
    CHECK_OK(s, bfdb_blob_writer_write(w, "short", 5));
    cr_assert_eq(bfdb_blob_writer_commit(w), BFDB_EINVAL);
    cr_assert(errmsg_has(bfdb_store_errmsg(s), "5 of 10"), "%s",
              bfdb_store_errmsg(s));
    cr_assert_eq(blob_rows(s), 1, "no new row after a short commit");
    blob_expect_missing(s, id);

    /* a short replace of an existing blob leaves the old data */
    CHECK_OK(s, bfdb_blob_writer_open(s, keep, 8, 1, "new", 3, &w, NULL));
    CHECK_OK(s, bfdb_blob_writer_write(w, "abc", 3));
    cr_assert_eq(bfdb_blob_writer_commit(w), BFDB_EINVAL);
    blob_expect(s, keep, "keep", 4, NULL, 0);
    bfdb_store_close(s);
}

Test(blob, writer_abort_stores_nothing)
{
    bfdb_store *s = open_blob();
    uint64_t keep = BLOB_PUT(s, "keep", "m");
    bfdb_blob_writer *w = NULL;
    uint64_t id = 0;

    CHECK_OK(s, bfdb_blob_writer_open(s, 0, 3, 1, "m", 1, &w, &id));
    CHECK_OK(s, bfdb_blob_writer_write(w, "abc", 3));
    bfdb_blob_writer_abort(w);
    cr_assert_eq(blob_rows(s), 1);
    blob_expect_missing(s, id);

    CHECK_OK(s, bfdb_blob_writer_open(s, keep, 3, 1, NULL, 0, &w, NULL));
    CHECK_OK(s, bfdb_blob_writer_write(w, "xyz", 3));
    bfdb_blob_writer_abort(w);
    blob_expect(s, keep, "keep", 4, "m", 1);
    bfdb_blob_writer_abort(NULL);
    bfdb_store_close(s);
}

Test(blob, store_in_use_by_a_reader_is_einternal_until_closed)
{
    bfdb_store *s = open_blob();
    uint64_t id = BLOB_PUT(s, "data", NULL);
    bfdb_blob_reader *r = NULL;
    bfdb_blob_writer *w = NULL;
    bfdb_query *q = NULL;
    uint64_t size, nid;
    void *d;
    size_t n;
    uint8_t dg[BFDB_DIGEST_LEN];
    int x;
    uint64_t ch;

    CHECK_OK(s, bfdb_blob_reader_open(s, id, &r, &size, NULL, NULL));
    cr_assert_eq(bfdb_blob_get(s, id, 100, &d, &n, NULL, NULL),
                 BFDB_EINTERNAL);
    cr_assert(errmsg_has(bfdb_store_errmsg(s), "in use"), "%s",
              bfdb_store_errmsg(s));
    cr_assert_eq(bfdb_blob_store(s, "x", 1, NULL, 0, &nid), BFDB_EINTERNAL);
    cr_assert_eq(bfdb_blob_update(s, id, 1, "x", 1, 0, NULL, 0, &x),
                 BFDB_EINTERNAL);
    cr_assert_eq(bfdb_blob_delete(s, id, &x), BFDB_EINTERNAL);
    cr_assert_eq(bfdb_blob_digest(s, id, dg), BFDB_EINTERNAL);
    cr_assert_eq(bfdb_blob_writer_open(s, 0, 1, 0, NULL, 0, &w, &nid),
                 BFDB_EINTERNAL);
    cr_assert_eq(bfdb_query_open(s, "SELECT 1", 8, &q), BFDB_EINTERNAL);
    cr_assert_eq(bfdb_query_execute(s, "DELETE FROM blob", 16, &ch),
                 BFDB_EINTERNAL);
    /* the reader itself still works */
    char buf[8];
    size_t got;
    CHECK_OK(s, bfdb_blob_reader_read(r, buf, sizeof(buf), &got));
    cr_assert_eq(got, 4);
    cr_assert_eq(memcmp(buf, "data", 4), 0);
    bfdb_blob_reader_close(r);

    cr_assert_eq(BLOB_PUT(s, "x", NULL), id + 1);
    blob_expect(s, id, "data", 4, NULL, 0);
    cr_assert_eq(blob_rows(s), 2);
    bfdb_store_close(s);
}

Test(blob, store_in_use_by_a_writer_is_einternal_until_committed)
{
    bfdb_store *s = open_blob();
    bfdb_blob_writer *w = NULL;
    uint64_t id, nid;
    void *d;
    size_t n;

    CHECK_OK(s, bfdb_blob_writer_open(s, 0, 2, 0, NULL, 0, &w, &id));
    cr_assert_eq(bfdb_blob_get(s, id, 100, &d, &n, NULL, NULL),
                 BFDB_EINTERNAL);
    cr_assert_eq(bfdb_blob_store(s, "x", 1, NULL, 0, &nid), BFDB_EINTERNAL);
    CHECK_OK(s, bfdb_blob_writer_write(w, "ok", 2));
    CHECK_OK(s, bfdb_blob_writer_commit(w));
    blob_expect(s, id, "ok", 2, NULL, 0);
    bfdb_store_close(s);
}

/* ---- blob parts -------------------------------------------------------- */

Test(parts, large_blob_round_trips_through_parts)
{
    size_t n = 10000;
    unsigned char *data = malloc(n);
    uint8_t dg[BFDB_DIGEST_LEN], want[BFDB_DIGEST_LEN];
    bfdb_store *s = open_parted();
    bfdb_blob_writer *w = NULL;
    uint64_t id = 0;

    fill_random(data, n, 1234);
    CHECK_OK(s, bfdb_blob_writer_open(s, 0, n, 1, "big", 3, &w, &id));
    write_chunks(s, w, data, n);
    CHECK_OK(s, bfdb_blob_writer_commit(w));

    cr_assert_eq(part_count(s), 34, "10000 bytes in 300-byte parts");
    cr_assert_eq(sql_int(s, "SELECT sum(length(data)) FROM buffdb_blob_part"),
                 10000);
    cr_assert_eq(sql_int(s, "SELECT max(length(data)) FROM buffdb_blob_part"),
                 300);
    cr_assert_eq(sql_int(s, "SELECT data IS NULL FROM blob"), 1,
                 "a parted blob keeps no inline data");

    read_chunks_expect(s, id, data, n, "big");
    blob_expect(s, id, data, n, "big", 3);
    CHECK_OK(s, bfdb_blob_digest(s, id, dg));
    bfdb_sha256_digest(data, n, want);
    cr_assert_arr_eq(dg, want, BFDB_DIGEST_LEN);
    free(data);
    bfdb_store_close(s);
}

Test(parts, blob_store_call_uses_parts_and_survives_reopen)
{
    size_t n = 2501;
    unsigned char *data = malloc(n);
    bfdb_store *s = open_parted();

    fill_random(data, n, 99);
    uint64_t id = blob_put(s, data, n, NULL, 0);
    cr_assert_eq(part_count(s), 9);
    bfdb_store_close(s);
    s = open_parted();
    blob_expect(s, id, data, n, NULL, 0);
    free(data);
    bfdb_store_close(s);
}

Test(parts, inline_max_is_the_boundary)
{
    unsigned char data[1001];
    bfdb_store *s = open_parted();

    fill_random(data, sizeof(data), 5);
    uint64_t a = blob_put(s, data, 1000, NULL, 0);
    cr_assert_eq(part_count(s), 0, "1000 bytes stay inline");
    uint64_t b = blob_put(s, data, 1001, NULL, 0);
    cr_assert_eq(part_count(s), 4, "1001 bytes go to parts");
    blob_expect(s, a, data, 1000, NULL, 0);
    blob_expect(s, b, data, 1001, NULL, 0);
    bfdb_store_close(s);
}

Test(parts, update_to_small_inline_data_removes_the_parts)
{
    size_t n = 10000;
    unsigned char *data = malloc(n);
    bfdb_store *s = open_parted();
    int updated = 0;

    fill_random(data, n, 3);
    uint64_t id = blob_put(s, data, n, "m", 1);
    cr_assert_gt(part_count(s), 0);
    CHECK_OK(s, bfdb_blob_update(s, id, 1, "small", 5, 0, NULL, 0, &updated));
    cr_assert_eq(updated, 1);
    cr_assert_eq(part_count(s), 0, "the old parts must go");
    blob_expect(s, id, "small", 5, "m", 1);
    read_chunks_expect(s, id, (const unsigned char *)"small", 5, "m");
    free(data);
    bfdb_store_close(s);
}

Test(parts, update_of_inline_data_to_large_uses_parts)
{
    size_t n = 3000;
    unsigned char *data = malloc(n);
    bfdb_store *s = open_parted();
    int updated = 0;

    fill_random(data, n, 11);
    uint64_t id = BLOB_PUT(s, "tiny", "m");
    CHECK_OK(s, bfdb_blob_update(s, id, 1, data, n, 1, "m2", 2, &updated));
    cr_assert_eq(updated, 1);
    cr_assert_eq(part_count(s), 10);
    blob_expect(s, id, data, n, "m2", 2);

    /* and a parted blob replaced by another parted one keeps only the new */
    fill_random(data, n, 12);
    CHECK_OK(s, bfdb_blob_update(s, id, 1, data, 1500, 0, NULL, 0, &updated));
    cr_assert_eq(part_count(s), 5);
    blob_expect(s, id, data, 1500, "m2", 2);
    free(data);
    bfdb_store_close(s);
}

Test(parts, update_of_metadata_only_keeps_the_parts)
{
    size_t n = 4000;
    unsigned char *data = malloc(n);
    bfdb_store *s = open_parted();
    int updated = 0;

    fill_random(data, n, 8);
    uint64_t id = blob_put(s, data, n, NULL, 0);
    int64_t parts = part_count(s);
    CHECK_OK(s, bfdb_blob_update(s, id, 0, NULL, 0, 1, "meta", 4, &updated));
    cr_assert_eq(updated, 1);
    cr_assert_eq(part_count(s), parts);
    blob_expect(s, id, data, n, "meta", 4);
    free(data);
    bfdb_store_close(s);
}

Test(parts, delete_of_a_parted_blob_removes_its_parts)
{
    size_t n = 10000;
    unsigned char *data = malloc(n);
    bfdb_store *s = open_parted();
    int deleted = 0;

    fill_random(data, n, 4);
    uint64_t a = blob_put(s, data, n, NULL, 0);
    uint64_t b = blob_put(s, data, 1200, NULL, 0);
    cr_assert_eq(part_count(s), 34 + 4);
    CHECK_OK(s, bfdb_blob_delete(s, a, &deleted));
    cr_assert_eq(deleted, 1);
    cr_assert_eq(part_count(s), 4, "only b's parts remain");
    blob_expect_missing(s, a);
    blob_expect(s, b, data, 1200, NULL, 0);
    cr_assert_eq(sql_exec(s, "DELETE FROM blob"), 1);
    cr_assert_eq(part_count(s), 0, "raw DELETE takes the parts too");
    free(data);
    bfdb_store_close(s);
}

Test(parts, aborted_and_short_parted_writers_leave_no_parts)
{
    size_t n = 5000;
    unsigned char *data = malloc(n);
    bfdb_store *s = open_parted();
    bfdb_blob_writer *w = NULL;
    uint64_t id;

    fill_random(data, n, 21);
    CHECK_OK(s, bfdb_blob_writer_open(s, 0, n, 0, NULL, 0, &w, &id));
    write_chunks(s, w, data, 2000);
    bfdb_blob_writer_abort(w);
    cr_assert_eq(part_count(s), 0);
    cr_assert_eq(blob_rows(s), 0);

    CHECK_OK(s, bfdb_blob_writer_open(s, 0, n, 0, NULL, 0, &w, &id));
    write_chunks(s, w, data, n - 1);
    cr_assert_eq(bfdb_blob_writer_write(w, data, 2), BFDB_EINVAL);
    cr_assert_eq(bfdb_blob_writer_commit(w), BFDB_EINVAL);
    cr_assert_eq(part_count(s), 0);
    cr_assert_eq(blob_rows(s), 0);
    free(data);
    bfdb_store_close(s);
}

/* ---- raw SQL ----------------------------------------------------------- */

Test(query, query_returns_typed_columns)
{
    static const char sql[] =
        "SELECT 42, -9223372036854775808, 2.5, 'h\xc3\xa9llo',"
        " x'00ff10', NULL, CAST(x'610062' AS TEXT), x''";
    bfdb_store *s = open_kv();
    bfdb_query *q = NULL;
    const unsigned char *p;
    size_t n;

    CHECK_OK(s, bfdb_query_open(s, sql, strlen(sql), &q));
    cr_assert_eq(bfdb_query_next(q), 1);
    cr_assert_eq(bfdb_query_columns(q), 8);

    cr_assert_eq(bfdb_query_type(q, 0), BFDB_COL_INTEGER);
    cr_assert_eq(bfdb_query_int(q, 0), 42);
    cr_assert_eq(bfdb_query_type(q, 1), BFDB_COL_INTEGER);
    cr_assert_eq(bfdb_query_int(q, 1), INT64_MIN);
    cr_assert_eq(bfdb_query_type(q, 2), BFDB_COL_REAL);
    cr_assert_float_eq(bfdb_query_real(q, 2), 2.5, 1e-12);

    cr_assert_eq(bfdb_query_type(q, 3), BFDB_COL_TEXT);
    p = bfdb_query_bytes(q, 3, &n);
    cr_assert_eq(n, 6);
    cr_assert_eq(memcmp(p, "h\xc3\xa9llo", 6), 0);

    cr_assert_eq(bfdb_query_type(q, 4), BFDB_COL_BLOB);
    p = bfdb_query_bytes(q, 4, &n);
    cr_assert_eq(n, 3);
    cr_assert_eq(memcmp(p, "\x00\xff\x10", 3), 0);

    cr_assert_eq(bfdb_query_type(q, 5), BFDB_COL_NULL);
    p = bfdb_query_bytes(q, 5, &n);
    cr_assert_not_null(p);
    cr_assert_eq(n, 0);

    cr_assert_eq(bfdb_query_type(q, 6), BFDB_COL_TEXT);
    p = bfdb_query_bytes(q, 6, &n);
    cr_assert_eq(n, 3, "text with an embedded NUL keeps its length");
    cr_assert_eq(memcmp(p, "a\0b", 3), 0);

    cr_assert_eq(bfdb_query_type(q, 7), BFDB_COL_BLOB);
    p = bfdb_query_bytes(q, 7, &n);
    cr_assert_not_null(p);
    cr_assert_eq(n, 0);

    cr_assert_eq(bfdb_query_next(q), 0);
    bfdb_query_close(q);
    bfdb_store_close(s);
}

Test(query, query_reads_rows_written_through_the_api)
{
    bfdb_store *s = open_kv();
    bfdb_query *q = NULL;
    static const char sql[] = "SELECT key, value FROM kv ORDER BY key";
    const char *p;
    size_t n;

    CHECK_OK(s, bfdb_kv_set(s, "a", 1, "x\0y", 3));
    KV_SET(s, "b", "2");
    CHECK_OK(s, bfdb_query_open(s, sql, strlen(sql), &q));
    cr_assert_eq(bfdb_query_columns(q), 2);
    cr_assert_eq(bfdb_query_next(q), 1);
    p = bfdb_query_bytes(q, 0, &n);
    cr_assert_eq(n, 1);
    cr_assert_eq(*p, 'a');
    cr_assert_eq(bfdb_query_type(q, 1), BFDB_COL_TEXT);
    p = bfdb_query_bytes(q, 1, &n);
    cr_assert_eq(n, 3);
    cr_assert_eq(memcmp(p, "x\0y", 3), 0);
    cr_assert_eq(bfdb_query_next(q), 1);
    p = bfdb_query_bytes(q, 1, &n);
    cr_assert_eq(n, 1);
    cr_assert_eq(*p, '2');
    cr_assert_eq(bfdb_query_next(q), 0);
    bfdb_query_close(q);
    bfdb_store_close(s);
}

Test(query, execute_returns_the_rows_changed)
{
    bfdb_store *s = open_kv();

    cr_assert_eq(sql_exec(s, "CREATE TABLE t (a INTEGER, b TEXT)"), 0);
    cr_assert_eq(sql_exec(s, "INSERT INTO t VALUES (1, 'x'), (2, 'y'), "
                             "(3, 'z')"), 3);
    cr_assert_eq(sql_exec(s, "UPDATE t SET b = 'w' WHERE a >= 2"), 2);
    cr_assert_eq(sql_exec(s, "UPDATE t SET b = 'w' WHERE a > 100"), 0);
    cr_assert_eq(sql_exec(s, "DELETE FROM t WHERE a = 1"), 1);
    cr_assert_eq(sql_exec(s, "CREATE INDEX t_a ON t (a)"), 0,
                 "DDL after a DELETE reports 0, not the DELETE's count");
    cr_assert_eq(sql_int(s, "SELECT count(*) FROM t WHERE b = 'w'"), 2);
    cr_assert_eq(sql_exec(s, "INSERT INTO kv VALUES ('raw', 'sql')"), 1);
    kv_expect(s, "raw", 3, "sql", 3);
    cr_assert_eq(sql_exec(s, "DROP TABLE t"), 0);
    bfdb_store_close(s);
}

Test(query, execute_of_a_statement_returning_rows_is_einval)
{
    bfdb_store *s = open_kv();
    uint64_t ch = 7;

    KV_SET(s, "k", "v");
    cr_assert_eq(bfdb_query_execute(s, "SELECT 1", 8, &ch), BFDB_EINVAL);
    cr_assert_eq(ch, 0);
    cr_assert_eq(bfdb_query_execute(s, "DELETE FROM kv RETURNING key", 28,
                                    &ch), BFDB_EINVAL);
    kv_expect(s, "k", 1, "v", 1);
    bfdb_store_close(s);
}

Test(query, more_than_one_statement_is_einval)
{
    bfdb_store *s = open_kv();
    bfdb_query *q = (bfdb_query *)1;
    uint64_t ch;
    static const char two[] = "SELECT 1; SELECT 2";
    static const char two_w[] = "INSERT INTO kv VALUES ('a', 'b'); "
                                "DELETE FROM kv";

    cr_assert_eq(bfdb_query_open(s, two, strlen(two), &q), BFDB_EINVAL);
    cr_assert_null(q);
    cr_assert(errmsg_has(bfdb_store_errmsg(s), "more than one statement"),
              "%s", bfdb_store_errmsg(s));
    cr_assert_eq(bfdb_query_execute(s, two_w, strlen(two_w), &ch),
                 BFDB_EINVAL);
    cr_assert_eq(sql_int(s, "SELECT count(*) FROM kv"), 0,
                 "no part of a refused text ran");
    bfdb_store_close(s);
}

Test(query, trailing_semicolons_space_and_comments_are_fine)
{
    static const char *const ok[] = {
        "SELECT 1;  -- comment", "SELECT 1", "SELECT 1;", "SELECT 1 ;;\n",
        "SELECT 1; /* block */ ", "SELECT 1 -- no newline"};
    bfdb_store *s = open_kv();

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        cr_assert_eq(sql_int(s, ok[i]), 1, "%s", ok[i]);
    cr_assert_eq(sql_exec(s, "INSERT INTO kv VALUES ('k', 'v'); -- done\n"),
                 1);
    bfdb_store_close(s);
}

Test(query, empty_sql_is_einval)
{
    bfdb_store *s = open_kv();
    bfdb_query *q = (bfdb_query *)1;
    uint64_t ch;

    cr_assert_eq(bfdb_query_open(s, "", 0, &q), BFDB_EINVAL);
    cr_assert_null(q);
    cr_assert_eq(bfdb_query_execute(s, "", 0, &ch), BFDB_EINVAL);
    cr_assert_eq(bfdb_query_execute(s, "  -- only a comment", 19, &ch),
                 BFDB_EINVAL);
    cr_assert_eq(sql_int(s, "SELECT 5"), 5);
    bfdb_store_close(s);
}

Test(query, syntax_error_is_esql_with_sqlites_message)
{
    bfdb_store *s = open_kv();
    bfdb_query *q = NULL;
    uint64_t ch;

    cr_assert_eq(bfdb_query_open(s, "SELEC 1", 7, &q), BFDB_ESQL);
    cr_assert(errmsg_has(bfdb_store_errmsg(s), "syntax error"), "%s",
              bfdb_store_errmsg(s));
    cr_assert(errmsg_has(bfdb_store_errmsg(s), "SELEC"), "%s",
              bfdb_store_errmsg(s));
    cr_assert_eq(bfdb_query_execute(s, "SELECT * FROM no_such_table", 27,
                                    &ch), BFDB_ESQL);
    cr_assert(errmsg_has(bfdb_store_errmsg(s), "no such table"), "%s",
              bfdb_store_errmsg(s));
    cr_assert_eq(sql_int(s, "SELECT 2"), 2);
    bfdb_store_close(s);
}

Test(query, constraint_error_is_reported_and_changes_nothing)
{
    bfdb_store *s = open_kv();
    uint64_t ch = 7;
    static const char sql[] = "INSERT INTO kv VALUES ('k', 'again')";

    KV_SET(s, "k", "v");
    int rc = bfdb_query_execute(s, sql, strlen(sql), &ch);
    cr_assert_eq(rc, BFDB_ECONSTRAINT, "%d: %s", rc, bfdb_store_errmsg(s));
    cr_assert(errmsg_has(bfdb_store_errmsg(s), "UNIQUE"), "%s",
              bfdb_store_errmsg(s));
    kv_expect(s, "k", 1, "v", 1);
    bfdb_store_close(s);
}

/* refused - sql is EPERM through both execute and query, and s still works */
static void
expect_refused(bfdb_store *s, const char *sql)
{
    uint64_t ch = 7;
    bfdb_query *q = (bfdb_query *)1;
    int rc = bfdb_query_execute(s, sql, strlen(sql), &ch);

    cr_assert_eq(rc, BFDB_EPERM, "execute \"%s\": %d (%s)", sql, rc,
                 bfdb_store_errmsg(s));
    cr_assert_str_neq(bfdb_store_errmsg(s), "", "%s: no message", sql);
    cr_assert_eq(ch, 0);
    rc = bfdb_query_open(s, sql, strlen(sql), &q);
    if (rc == BFDB_OK) {
        /* refused when it runs, if not when prepared */
        rc = bfdb_query_next(q);
        bfdb_query_close(q);
    } else {
        cr_assert_null(q);
    }
    cr_assert_eq(rc, BFDB_EPERM, "query \"%s\": %d (%s)", sql, rc,
                 bfdb_store_errmsg(s));
    cr_assert_eq(sql_int(s, "SELECT 1"), 1, "store works after \"%s\"", sql);
}

static void
expect_store_intact(bfdb_store *s)
{
    bfdb_query *q = NULL;
    const char *p;
    size_t n;
    static const char jm[] = "PRAGMA journal_mode";

    CHECK_OK(s, bfdb_query_open(s, jm, strlen(jm), &q));
    cr_assert_eq(bfdb_query_next(q), 1);
    p = bfdb_query_bytes(q, 0, &n);
    cr_assert_eq(n, 3);
    cr_assert_eq(memcmp(p, "wal", 3), 0, "journal mode still WAL");
    bfdb_query_close(q);
    cr_assert_eq(sql_int(s, "SELECT count(*) FROM buffdb_meta WHERE "
                            "name = 'kind'"), 1, "buffdb_meta intact");
}

Test(query, statements_that_break_a_kv_store_are_eperm)
{
    static const char *const bad[] = {
        "BEGIN",
        "BEGIN IMMEDIATE",
        "COMMIT",
        "SAVEPOINT sp",
        "RELEASE sp",
        "ATTACH DATABASE ':memory:' AS other",
        "DETACH other",
        "PRAGMA journal_mode=DELETE",
        "PRAGMA journal_mode = OFF",
        "PRAGMA synchronous=OFF",
        "PRAGMA writable_schema=ON",
        "PRAGMA foreign_keys=ON",
        "DELETE FROM buffdb_meta",
        "UPDATE buffdb_meta SET value = 'blob' WHERE name = 'kind'",
        "INSERT INTO buffdb_meta VALUES ('x', 1)",
        "DROP TABLE kv",
        "DROP TABLE buffdb_meta",
        "ALTER TABLE kv RENAME TO kv2",
        "ALTER TABLE kv ADD COLUMN extra",
        "CREATE TRIGGER t AFTER INSERT ON kv BEGIN SELECT 1; END",
        "CREATE TEMP TRIGGER t AFTER INSERT ON kv BEGIN SELECT 1; END",
        "SELECT load_extension('libnothing')",
    };
    bfdb_store *s = open_kv();

    KV_SET(s, "k", "v");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_refused(s, bad[i]);
    expect_store_intact(s);
    kv_expect(s, "k", 1, "v", 1);
    KV_SET(s, "k2", "v2");
    kv_expect(s, "k2", 2, "v2", 2);
    cr_assert_eq(sql_int(s, "SELECT count(*) FROM sqlite_master "
                            "WHERE type = 'trigger'"), 0);
    bfdb_store_close(s);

    /* and nothing refused reached the file */
    s = open_kv();
    kv_expect(s, "k", 1, "v", 1);
    expect_store_intact(s);
    bfdb_store_close(s);
}

Test(query, statements_that_break_a_blob_store_are_eperm)
{
    static const char *const bad[] = {
        "DROP TABLE blob",
        "ALTER TABLE blob RENAME TO b2",
        "DROP TABLE buffdb_blob_part",
        "DELETE FROM buffdb_blob_part",
        "INSERT INTO buffdb_blob_part VALUES (1, 0, x'00')",
        "UPDATE buffdb_meta SET value = 0 WHERE name = 'blob_id_floor'",
        "DROP TRIGGER buffdb_blob_deleted",
        "DROP TRIGGER buffdb_blob_inserted_v2",
        "CREATE TRIGGER t AFTER DELETE ON blob BEGIN SELECT 1; END",
        "VACUUM",
    };
    bfdb_store *s = open_blob();

    BLOB_PUT(s, "a", NULL);
    BLOB_PUT(s, "b", NULL);
    CHECK_OK(s, bfdb_blob_delete(s, 2, NULL));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_refused(s, bad[i]);
    expect_store_intact(s);
    /* buffdb_blob_deleted, _renumbered, _inserted_v2; model parts' two */
    cr_assert_eq(sql_int(s, "SELECT count(*) FROM sqlite_master "
                            "WHERE type = 'trigger'"), 5);
    cr_assert_eq(BLOB_PUT(s, "c", NULL), 3, "the id floor is intact");
    bfdb_store_close(s);
}

Test(query, read_only_pragmas_are_allowed)
{
    static const char ti[] = "PRAGMA table_info(kv)";
    bfdb_store *s = open_kv();
    bfdb_query *q = NULL;
    int rows = 0, seen = 0;

    CHECK_OK(s, bfdb_query_open(s, ti, strlen(ti), &q));
    int rc;
    while ((rc = bfdb_query_next(q)) == 1) {
        size_t n;
        const char *name = bfdb_query_bytes(q, 1, &n);
        if (n == 3 && memcmp(name, "key", 3) == 0)
            seen |= 1;
        if (n == 5 && memcmp(name, "value", 5) == 0)
            seen |= 2;
        rows++;
    }
    cr_assert_eq(rc, 0);
    bfdb_query_close(q);
    cr_assert_eq(rows, 2);
    cr_assert_eq(seen, 3);
    cr_assert_gt(sql_int(s, "PRAGMA page_size"), 0);
    cr_assert_eq(sql_int(s, "PRAGMA user_version"), 0);
    bfdb_store_close(s);
}

Test(query, store_in_use_by_a_query_is_einternal_until_closed)
{
    bfdb_store *s = open_kv();
    bfdb_query *q = NULL;
    char *v;
    size_t n;

    KV_SET(s, "k", "v");
    CHECK_OK(s, bfdb_query_open(s, "SELECT * FROM kv", 16, &q));
    cr_assert_eq(bfdb_query_next(q), 1);
    cr_assert_eq(bfdb_kv_get(s, "k", 1, &v, &n), BFDB_EINTERNAL);
    cr_assert_eq(bfdb_kv_set(s, "k", 1, "w", 1), BFDB_EINTERNAL);
    bfdb_query_close(q);
    KV_SET(s, "k", "w");
    kv_expect(s, "k", 1, "w", 1);
    bfdb_store_close(s);
}

/* ---- upstream BuffDB 0.5 files ------------------------------------------ */

static void
upstream_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    char *emsg = NULL;
    int rc = sqlite3_open(path, &db);

    cr_assert_eq(rc, SQLITE_OK, "sqlite3_open %s", path);
    rc = sqlite3_exec(db, sql, NULL, NULL, &emsg);
    cr_assert_eq(rc, SQLITE_OK, "%s: %s", sql, emsg ? emsg : "?");
    sqlite3_free(emsg);
    cr_assert_eq(sqlite3_close(db), SQLITE_OK);
}

Test(compat, upstream_kv_file_opens_with_values_intact)
{
    char *p = th_path(g_dir, "upstream-kv.db");
    upstream_exec(p,
                  "CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT);"
                  "INSERT INTO kv VALUES ('alpha', '1');"
                  "INSERT INTO kv VALUES ('greeting', 'hello world');"
                  "INSERT INTO kv VALUES ('\xc3\xbcn\xc3\xaf', "
                  "'\xf0\x9f\x98\x80 emoji');"
                  "INSERT INTO kv VALUES ('empty', '');");

    bfdb_store *s = open_path(BFDB_STORE_KV, p, NULL);
    kv_expect(s, "alpha", 5, "1", 1);
    kv_expect(s, "greeting", 8, "hello world", 11);
    kv_expect(s, "\xc3\xbcn\xc3\xaf", 5, "\xf0\x9f\x98\x80 emoji", 10);
    kv_expect(s, "empty", 5, "", 0);
    KV_SET(s, "alpha", "2");
    KV_SET(s, "new", "row");
    kv_expect(s, "alpha", 5, "2", 1);
    cr_assert_eq(sql_int(s, "SELECT count(*) FROM kv"), 5);
    bfdb_store_close(s);

    /* upstream can still read what buffdb wrote */
    sqlite3 *db;
    sqlite3_stmt *st;
    cr_assert_eq(sqlite3_open(p, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(db, "SELECT value FROM kv WHERE key = "
                                        "'new'", -1, &st, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_assert_str_eq((const char *)sqlite3_column_text(st, 0), "row");
    sqlite3_finalize(st);
    sqlite3_close(db);
    free(p);
}

Test(compat, upstream_blob_file_opens_with_blobs_intact)
{
    char *p = th_path(g_dir, "upstream-blob.db");
    upstream_exec(p,
                  "CREATE TABLE blob(data BLOB, metadata TEXT);"
                  "INSERT INTO blob VALUES (x'000102ff', 'first');"
                  "INSERT INTO blob VALUES (x'cafebabe', NULL);"
                  "INSERT INTO blob VALUES (x'', '');"
                  "INSERT INTO blob VALUES (zeroblob(70000), "
                  "'{\"big\":true}');"
                  "INSERT INTO blob VALUES (x'ee', 'gone');"
                  "DELETE FROM blob WHERE rowid = 5;"
                  "INSERT INTO blob VALUES (x'11', 'later');"
                  "DELETE FROM blob WHERE rowid = 3;");
    /* rows now: 1, 2, 4, 5 ('later' reused 5 upstream), 3 deleted */

    bfdb_store *s = open_path(BFDB_STORE_BLOB, p, NULL);
    unsigned char *zero = calloc(1, 70000);
    blob_expect(s, 1, "\x00\x01\x02\xff", 4, "first", 5);
    blob_expect(s, 2, "\xca\xfe\xba\xbe", 4, NULL, 0);
    blob_expect_missing(s, 3);
    blob_expect(s, 4, zero, 70000, "{\"big\":true}", 12);
    blob_expect(s, 5, "\x11", 1, "later", 5);
    read_chunks_expect(s, 4, zero, 70000, "{\"big\":true}");

    uint64_t id = BLOB_PUT(s, "new", "m");
    cr_assert_eq(id, 6, "new ids continue above the existing max");
    int x = 0;
    CHECK_OK(s, bfdb_blob_update(s, 2, 1, "upd", 3, 1, "now", 3, &x));
    cr_assert_eq(x, 1);
    blob_expect(s, 2, "upd", 3, "now", 3);
    CHECK_OK(s, bfdb_blob_delete(s, 6, &x));
    cr_assert_eq(x, 1);
    bfdb_store_close(s);

    s = open_path(BFDB_STORE_BLOB, p, NULL);
    cr_assert_eq(BLOB_PUT(s, "after", NULL), 7);
    blob_expect(s, 1, "\x00\x01\x02\xff", 4, "first", 5);
    bfdb_store_close(s);
    free(zero);

    sqlite3 *db;
    sqlite3_stmt *st;
    cr_assert_eq(sqlite3_open(p, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(db, "SELECT data, metadata FROM blob "
                                        "WHERE rowid = 2", -1, &st, NULL),
                 SQLITE_OK);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_assert_eq(sqlite3_column_bytes(st, 0), 3);
    cr_assert_eq(memcmp(sqlite3_column_blob(st, 0), "upd", 3), 0);
    cr_assert_str_eq((const char *)sqlite3_column_text(st, 1), "now");
    sqlite3_finalize(st);
    sqlite3_close(db);
    free(p);
}

Test(compat, upstream_text_valued_blob_reads_as_its_bytes)
{
    char *p = th_path(g_dir, "upstream-blob.db");
    upstream_exec(p, "CREATE TABLE blob(data BLOB, metadata TEXT);"
                     "INSERT INTO blob VALUES ('as text', 'm');"
                     "INSERT INTO blob VALUES (12345, NULL);");
    bfdb_store *s = open_path(BFDB_STORE_BLOB, p, NULL);
    blob_expect(s, 1, "as text", 7, "m", 1);
    blob_expect(s, 2, "12345", 5, NULL, 0);
    read_chunks_expect(s, 1, (const unsigned char *)"as text", 7, "m");
    bfdb_store_close(s);
    free(p);
}

/* ---- opening: bad input ------------------------------------------------ */

static int
open_fails(int kind, const char *path, const struct bfdb_store_opts *o,
           char *err, size_t errlen)
{
    bfdb_store *s = (bfdb_store *)1;
    err[0] = '\0';
    int rc = bfdb_store_open(&s, kind, path, o, err, errlen);
    cr_assert_neq(rc, BFDB_OK, "open %s should fail", path);
    cr_assert_lt(rc, 0);
    cr_assert_null(s, "*out is NULL on failure");
    cr_assert_str_neq(err, "", "a failure says why");
    return rc;
}

Test(open, a_directory_is_ecantopen)
{
    char err[512];
    int rc = open_fails(BFDB_STORE_KV, g_dir, NULL, err, sizeof(err));
    cr_assert_eq(rc, BFDB_ECANTOPEN, "%d: %s", rc, err);
    cr_assert(errmsg_has(err, "directory"), "%s", err);
    rc = open_fails(BFDB_STORE_BLOB, g_dir, NULL, err, sizeof(err));
    cr_assert_eq(rc, BFDB_ECANTOPEN);
}

Test(open, a_path_in_a_missing_directory_fails)
{
    char err[512];
    char *p = th_path(g_dir, "no/such/dir/kv.db");
    int rc = open_fails(BFDB_STORE_KV, p, NULL, err, sizeof(err));
    cr_assert_eq(rc, BFDB_ECANTOPEN, "%d: %s", rc, err);
    cr_assert(errmsg_has(err, p), "%s", err);
    free(p);
}

Test(open, empty_path_and_unknown_kind_are_einval)
{
    char err[512];
    char *p = th_path(g_dir, "x.db");
    cr_assert_eq(open_fails(BFDB_STORE_KV, "", NULL, err, sizeof(err)),
                 BFDB_EINVAL);
    cr_assert_eq(open_fails(7, p, NULL, err, sizeof(err)), BFDB_EINVAL);
    cr_assert_eq(access(p, F_OK), -1, "nothing created");
    free(p);
}

Test(open, no_create_on_a_missing_file_fails_and_creates_nothing)
{
    char err[512];
    struct bfdb_store_opts o = {0};
    char *p = th_path(g_dir, "missing.db");

    o.no_create = 1;
    int rc = open_fails(BFDB_STORE_KV, p, &o, err, sizeof(err));
    cr_assert_eq(rc, BFDB_ECANTOPEN, "%d: %s", rc, err);
    cr_assert_eq(access(p, F_OK), -1, "no_create created the file");

    /* and no_create on an existing store opens it */
    bfdb_store *s = open_path(BFDB_STORE_KV, p, NULL);
    KV_SET(s, "k", "v");
    bfdb_store_close(s);
    s = open_path(BFDB_STORE_KV, p, &o);
    kv_expect(s, "k", 1, "v", 1);
    bfdb_store_close(s);
    free(p);
}

Test(open, a_file_that_is_not_sqlite_is_ecorrupt)
{
    static const char *const junk[] = {
        "hello, this is not a database\n",
        NULL, /* 8 KiB of text */
    };
    char err[512];
    char *p = th_path(g_dir, "junk.db");
    char big[8192];

    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = "not sqlite\n"[i % 11];
    for (size_t i = 0; i < 2; i++) {
        const char *j = junk[i] ? junk[i] : big;
        size_t n = junk[i] ? strlen(junk[i]) : sizeof(big);
        cr_assert_eq(th_write_file(p, j, n), 0);
        for (int kind = 0; kind <= 1; kind++) {
            int rc = open_fails(kind, p, NULL, err, sizeof(err));
            cr_assert_eq(rc, BFDB_ECORRUPT, "%d: %s", rc, err);
            cr_assert(errmsg_has(err, "not a SQLite database"), "%s", err);
            cr_assert(errmsg_has(err, p), "%s", err);
        }
        size_t len;
        char *back = th_read_file(p, &len);
        cr_assert_eq(len, n, "the file was left as it was");
        cr_assert_eq(memcmp(back, j, n), 0);
        free(back);
    }
    free(p);
}

Test(open, a_kv_file_is_not_a_blob_store_and_vice_versa)
{
    char err[512];
    char *kvp = th_path(g_dir, "kv.db");
    char *blp = th_path(g_dir, "blob.db");
    bfdb_store *s;

    s = open_path(BFDB_STORE_KV, kvp, NULL);
    KV_SET(s, "k", "v");
    bfdb_store_close(s);
    s = open_path(BFDB_STORE_BLOB, blp, NULL);
    BLOB_PUT(s, "b", NULL);
    bfdb_store_close(s);

    int rc = open_fails(BFDB_STORE_BLOB, kvp, NULL, err, sizeof(err));
    cr_assert_eq(rc, BFDB_EINVAL, "%d: %s", rc, err);
    cr_assert(errmsg_has(err, "kv store"), "%s", err);
    cr_assert(errmsg_has(err, "not a blob store"), "%s", err);
    rc = open_fails(BFDB_STORE_KV, blp, NULL, err, sizeof(err));
    cr_assert_eq(rc, BFDB_EINVAL, "%d: %s", rc, err);
    cr_assert(errmsg_has(err, "blob store"), "%s", err);
    cr_assert(errmsg_has(err, "not a kv store"), "%s", err);

    /* the refused open added nothing: each still opens as its own kind */
    s = open_path(BFDB_STORE_KV, kvp, NULL);
    kv_expect(s, "k", 1, "v", 1);
    cr_assert_eq(sql_int(s, "SELECT count(*) FROM sqlite_master WHERE "
                            "name LIKE '%blob%'"), 0);
    bfdb_store_close(s);
    s = open_path(BFDB_STORE_BLOB, blp, NULL);
    blob_expect(s, 1, "b", 1, NULL, 0);
    cr_assert_eq(sql_int(s, "SELECT count(*) FROM sqlite_master WHERE "
                            "name = 'kv'"), 0);
    bfdb_store_close(s);
    free(kvp);
    free(blp);
}

Test(open, an_upstream_kv_file_is_not_a_blob_store)
{
    char err[512];
    char *p = th_path(g_dir, "upstream-kv.db");
    upstream_exec(p, "CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT);"
                     "INSERT INTO kv VALUES ('a', 'b');");
    int rc = open_fails(BFDB_STORE_BLOB, p, NULL, err, sizeof(err));
    cr_assert_eq(rc, BFDB_EINVAL, "%d: %s", rc, err);
    cr_assert(errmsg_has(err, "kv"), "%s", err);
    bfdb_store *s = open_path(BFDB_STORE_KV, p, NULL);
    kv_expect(s, "a", 1, "b", 1);
    bfdb_store_close(s);
    free(p);
}

Test(open, a_kv_table_without_its_columns_is_ecorrupt)
{
    char err[512];
    char *p = th_path(g_dir, "odd.db");
    upstream_exec(p, "CREATE TABLE kv (k TEXT, v TEXT);");
    int rc = open_fails(BFDB_STORE_KV, p, NULL, err, sizeof(err));
    cr_assert_eq(rc, BFDB_ECORRUPT, "%d: %s", rc, err);
    free(p);
}

Test(open, the_store_file_is_in_wal_mode)
{
    bfdb_store *s = open_kv();
    char *p = th_path(g_dir, "kv.db");
    cr_assert_str_eq(bfdb_store_path(s), p);
    expect_store_intact(s);
    bfdb_store_close(s);
    bfdb_store_close(NULL);
    free(p);
}

/* as_nobody - drop to an unprivileged effective uid, so that file
 * permissions apply even when the tests run as root; 0 if it worked */
static int
as_nobody(void)
{
    if (geteuid() != 0)
        return 0;
    if (setegid(65534) != 0 || seteuid(65534) != 0)
        return -1;
    return 0;
}

static void
back_to_root(uid_t uid, gid_t gid)
{
    if (uid == 0) {
        cr_assert_eq(seteuid(0), 0);
        cr_assert_eq(setegid(gid), 0);
    }
}

/* skip_test - clean up first: a skipped test does not reach .fini */
#define skip_test(...)                                                       \
    do {                                                                     \
        teardown();                                                          \
        cr_skip_test(__VA_ARGS__);                                           \
    } while (0)

/* public_dir - a 0755 directory under /tmp: the unprivileged user the
 * permission tests switch to must reach it, whatever the build directory's
 * parents allow (a CI checkout may sit in a 0700 directory) */
static char *
public_dir(void)
{
    char *d = strdup("/tmp/bfdb-perm-XXXXXX");
    cr_assert_not_null(mkdtemp(d), "mkdtemp: %s", strerror(errno));
    cr_assert_eq(chmod(d, 0755), 0);
    return d;
}

Test(open, a_file_in_an_unwritable_directory_cannot_be_created)
{
    char err[512];
    uid_t uid = geteuid();
    gid_t gid = getegid();
    char *pub = public_dir();
    char *d = th_path(pub, "ro");
    char *p = th_path(d, "kv.db");

    cr_assert_eq(mkdir(d, 0555), 0);
    if (as_nobody() != 0) {
        back_to_root(uid, gid);
        th_rmrf(pub);
        skip_test("running as root and cannot drop privileges: root "
                  "writes anywhere");
    }
    if (faccessat(AT_FDCWD, d, W_OK, AT_EACCESS) == 0) {
        back_to_root(uid, gid);
        th_rmrf(pub);
        skip_test("this process can write a 0555 directory (root with "
                  "capabilities?): untestable here");
    }
    int rc = open_fails(BFDB_STORE_KV, p, NULL, err, sizeof(err));
    back_to_root(uid, gid);
    cr_assert_eq(rc, BFDB_ECANTOPEN, "%d: %s", rc, err);
    cr_assert(errmsg_has(err, p), "%s", err);
    cr_assert_eq(access(p, F_OK), -1);
    chmod(d, 0755);
    th_rmrf(pub);
    free(pub);
    free(p);
    free(d);
}

Test(open, a_read_only_file_is_eperm)
{
    char err[512];
    uid_t uid = geteuid();
    gid_t gid = getegid();
    char *pub = public_dir();
    char *p = th_path(pub, "ro.db");

    bfdb_store *s = open_path(BFDB_STORE_KV, p, NULL);
    KV_SET(s, "k", "v");
    bfdb_store_close(s);
    cr_assert_eq(chmod(p, 0444), 0);
    if (as_nobody() != 0) {
        back_to_root(uid, gid);
        th_rmrf(pub);
        skip_test("running as root and cannot drop privileges: root "
                  "writes a 0444 file");
    }
    int fd = open(p, O_RDWR);
    if (fd >= 0) {
        close(fd);
        back_to_root(uid, gid);
        th_rmrf(pub);
        skip_test("this process can write a 0444 file: untestable here");
    }
    int rc = open_fails(BFDB_STORE_KV, p, NULL, err, sizeof(err));
    back_to_root(uid, gid);
    cr_assert_eq(rc, BFDB_EPERM, "%d: %s", rc, err);
    cr_assert(errmsg_has(err, "not writable"), "%s", err);
    th_rmrf(pub);
    free(pub);
    free(p);
}

Test(open, a_read_only_file_root_can_write_opens_for_root)
{
    /* root ignores the mode bits: the store follows what the OS grants */
    char *p = th_path(g_dir, "ro.db");
    bfdb_store *s = open_path(BFDB_STORE_KV, p, NULL);
    bfdb_store_close(s);
    cr_assert_eq(chmod(p, 0444), 0);
    int fd = open(p, O_RDWR);
    if (fd < 0)
        skip_test("not root: covered by a_read_only_file_is_eperm");
    close(fd);
    s = open_path(BFDB_STORE_KV, p, NULL);
    KV_SET(s, "k", "v");
    kv_expect(s, "k", 1, "v", 1);
    bfdb_store_close(s);
    free(p);
}

Test(open, paths_distinct_catches_the_same_file)
{
    char err[512];
    char *a = th_path(g_dir, "a.db");
    char *b = th_path(g_dir, "b.db");
    char *hl = th_path(g_dir, "hardlink.db");
    char *sl = th_path(g_dir, "symlink.db");
    char *missing1 = th_path(g_dir, "m1.db");
    char *missing2 = th_path(g_dir, "m2.db");

    err[0] = '\0';
    cr_assert_eq(bfdb_store_paths_distinct(a, a, err, sizeof(err)),
                 BFDB_EINVAL, "same string");
    cr_assert(errmsg_has(err, "same file"), "%s", err);
    cr_assert_eq(bfdb_store_paths_distinct(missing1, missing1, err,
                                           sizeof(err)), BFDB_EINVAL);

    cr_assert_eq(th_write_file(a, "x", 1), 0);
    cr_assert_eq(th_write_file(b, "y", 1), 0);
    cr_assert_eq(link(a, hl), 0, "link: %s", strerror(errno));
    cr_assert_eq(symlink(a, sl), 0, "symlink: %s", strerror(errno));

    err[0] = '\0';
    cr_assert_eq(bfdb_store_paths_distinct(a, hl, err, sizeof(err)),
                 BFDB_EINVAL, "a hard link is the same inode");
    cr_assert(errmsg_has(err, "same file"), "%s", err);
    cr_assert_eq(bfdb_store_paths_distinct(sl, a, err, sizeof(err)),
                 BFDB_EINVAL, "a symlink names the same file");
    cr_assert_eq(bfdb_store_paths_distinct(a, b, err, sizeof(err)), 0);
    cr_assert_eq(bfdb_store_paths_distinct(a, missing1, err, sizeof(err)),
                 0);
    cr_assert_eq(bfdb_store_paths_distinct(missing1, missing2, err,
                                           sizeof(err)), 0);
    free(a);
    free(b);
    free(hl);
    free(sl);
    free(missing1);
    free(missing2);
}

/* ---- several handles and processes ------------------------------------- */

Test(handles, two_handles_see_each_others_writes)
{
    bfdb_store *a = open_kv();
    bfdb_store *b = open_kv();
    int deleted = 0;

    KV_SET(a, "from-a", "1");
    kv_expect(b, "from-a", 6, "1", 1);
    KV_SET(b, "from-b", "2");
    kv_expect(a, "from-b", 6, "2", 1);
    KV_SET(b, "from-a", "changed");
    kv_expect(a, "from-a", 6, "changed", 7);
    CHECK_OK(a, bfdb_kv_delete(a, "from-b", 6, &deleted));
    cr_assert_eq(deleted, 1);
    kv_expect_missing(b, "from-b", 6);
    bfdb_store_close(a);
    bfdb_store_close(b);
}

Test(handles, two_blob_handles_share_ids_and_the_floor)
{
    bfdb_store *a = open_blob();
    bfdb_store *b = open_blob();

    cr_assert_eq(BLOB_PUT(a, "a1", NULL), 1);
    cr_assert_eq(BLOB_PUT(b, "b2", NULL), 2);
    blob_expect(a, 2, "b2", 2, NULL, 0);
    CHECK_OK(a, bfdb_blob_delete(a, 2, NULL));
    cr_assert_eq(BLOB_PUT(b, "b3", NULL), 3, "b sees a's delete of id 2");
    blob_expect_missing(b, 2);
    bfdb_store_close(a);
    bfdb_store_close(b);
}

Test(handles, a_reader_keeps_its_snapshot_while_another_handle_writes)
{
    bfdb_store *a = open_blob();
    bfdb_store *b = open_blob();
    uint64_t id = BLOB_PUT(a, "old data", "old");
    bfdb_blob_reader *r = NULL;
    uint64_t size;
    char buf[16];
    size_t got;
    int updated = 0;

    CHECK_OK(a, bfdb_blob_reader_open(a, id, &r, &size, NULL, NULL));
    cr_assert_eq(size, 8);
    CHECK_OK(a, bfdb_blob_reader_read(r, buf, 3, &got));
    cr_assert_eq(got, 3);
    CHECK_OK(b, bfdb_blob_update(b, id, 1, "NEW DATA", 8, 1, "new", 3,
                                 &updated));
    cr_assert_eq(updated, 1);
    CHECK_OK(a, bfdb_blob_reader_read(r, buf + 3, 5, &got));
    cr_assert_eq(got, 5);
    cr_assert_eq(memcmp(buf, "old data", 8), 0, "reader saw another version");
    bfdb_blob_reader_close(r);
    blob_expect(a, id, "NEW DATA", 8, "new", 3);
    bfdb_store_close(a);
    bfdb_store_close(b);
}

static double
now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return tv.tv_sec * 1000.0 + tv.tv_usec / 1000.0;
}

Test(handles, a_second_writer_waits_then_gets_ebusy)
{
    struct bfdb_store_opts o = {0};
    bfdb_store *a, *b;
    bfdb_blob_writer *w = NULL;
    uint64_t id, id2 = 0;

    o.busy_timeout_ms = 200;
    a = open_named(BFDB_STORE_BLOB, "blob.db", &o);
    b = open_named(BFDB_STORE_BLOB, "blob.db", &o);
    CHECK_OK(a, bfdb_blob_writer_open(a, 0, 2, 0, NULL, 0, &w, &id));
    double t0 = now_ms();
    int rc = bfdb_blob_store(b, "b", 1, NULL, 0, &id2);
    double waited = now_ms() - t0;
    cr_assert_eq(rc, BFDB_EBUSY, "%d: %s", rc, bfdb_store_errmsg(b));
    cr_assert_geq(waited, 150.0, "gave up after %.0f ms, not the timeout",
                  waited);
    CHECK_OK(a, bfdb_blob_writer_write(w, "aa", 2));
    CHECK_OK(a, bfdb_blob_writer_commit(w));
    CHECK_OK(b, bfdb_blob_store(b, "b", 1, NULL, 0, &id2));
    cr_assert_eq(id2, id + 1);
    blob_expect(b, id, "aa", 2, NULL, 0);
    bfdb_store_close(a);
    bfdb_store_close(b);
}

/* child_write_keys - run in a forked child: its own handle, 200 keys */
static int
child_write_keys(const char *path, const char *prefix, int n)
{
    char err[512], key[64], val[64];
    bfdb_store *s = NULL;

    if (bfdb_store_open(&s, BFDB_STORE_KV, path, NULL, err, sizeof(err)) != 0)
        return 2;
    for (int i = 0; i < n; i++) {
        int kl = snprintf(key, sizeof(key), "%s-%03d", prefix, i);
        int vl = snprintf(val, sizeof(val), "value of %s %d", prefix, i);
        if (bfdb_kv_set(s, key, (size_t)kl, val, (size_t)vl) != 0) {
            fprintf(stderr, "%s: %s\n", key, bfdb_store_errmsg(s));
            bfdb_store_close(s);
            return 3;
        }
    }
    bfdb_store_close(s);
    return 0;
}

static void
expect_keys(bfdb_store *s, const char *prefix, int n)
{
    char key[64], val[64];
    for (int i = 0; i < n; i++) {
        int kl = snprintf(key, sizeof(key), "%s-%03d", prefix, i);
        int vl = snprintf(val, sizeof(val), "value of %s %d", prefix, i);
        kv_expect(s, key, (size_t)kl, val, (size_t)vl);
    }
}

Test(handles, forked_writers_see_each_others_keys)
{
    char *p = th_path(g_dir, "kv.db");
    int st;

    bfdb_store_close(open_path(BFDB_STORE_KV, p, NULL)); /* create it */
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
    if (pid == 0)
        _exit(child_write_keys(p, "child", 200));

    bfdb_store *s = open_path(BFDB_STORE_KV, p, NULL);
    int prc = child_write_keys(p, "parent", 200);
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "child failed (status %d)", st);
    cr_assert_eq(prc, 0, "parent writes failed");
    /* s was opened before either wrote: it sees both processes' commits */
    expect_keys(s, "child", 200);
    expect_keys(s, "parent", 200);
    cr_assert_eq(sql_int(s, "SELECT count(*) FROM kv"), 400);
    bfdb_store_close(s);
    free(p);
}

Test(handles, processes_creating_the_same_store_at_once_agree)
{
    char *p = th_path(g_dir, "kv.db");
    pid_t pids[4];
    char prefix[4][16];
    int st;

    fflush(NULL);
    for (int i = 0; i < 4; i++) {
        snprintf(prefix[i], sizeof(prefix[i]), "proc%d", i);
        pids[i] = fork();
        cr_assert_geq(pids[i], 0);
        if (pids[i] == 0)
            _exit(child_write_keys(p, prefix[i], 50));
    }
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(waitpid(pids[i], &st, 0), pids[i]);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
                  "process %d failed (status %d)", i, st);
    }
    bfdb_store *s = open_path(BFDB_STORE_KV, p, NULL);
    for (int i = 0; i < 4; i++)
        expect_keys(s, prefix[i], 50);
    cr_assert_eq(sql_int(s, "SELECT count(*) FROM buffdb_meta "
                            "WHERE name = 'kind'"), 1);
    bfdb_store_close(s);
    free(p);
}

/* ---- interrupt --------------------------------------------------------- */

struct calls {
    int n, limit;
};

static int
stop_after(void *arg)
{
    struct calls *c = arg;
    return ++c->n >= c->limit;
}

static const char runaway[] =
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
    "SELECT count(*) FROM c";

Test(interrupt, a_runaway_query_stops_with_einterrupted)
{
    bfdb_store *s = open_kv();
    struct calls c = {0, 5};
    bfdb_query *q = NULL;

    bfdb_store_set_interrupt(s, stop_after, &c);
    CHECK_OK(s, bfdb_query_open(s, runaway, strlen(runaway), &q));
    int rc = bfdb_query_next(q);
    cr_assert_eq(rc, BFDB_EINTERRUPTED, "%d: %s", rc, bfdb_store_errmsg(s));
    cr_assert_eq(c.n, 5, "the callback was polled until it said stop");
    cr_assert(errmsg_has(bfdb_store_errmsg(s), "interrupt"), "%s",
              bfdb_store_errmsg(s));
    bfdb_query_close(q);

    /* the store works afterwards, with and without the callback */
    c.n = 0;
    c.limit = 1000000;
    KV_SET(s, "k", "v");
    kv_expect(s, "k", 1, "v", 1);
    bfdb_store_set_interrupt(s, NULL, NULL);
    cr_assert_eq(sql_int(s, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL "
                            "SELECT x + 1 FROM c WHERE x < 100000) "
                            "SELECT count(*) FROM c"), 100000);
    bfdb_store_close(s);
}

Test(interrupt, execute_is_interrupted_too)
{
    static const char sql[] =
        "INSERT INTO kv SELECT x, x FROM (WITH RECURSIVE c(x) AS (SELECT 1 "
        "UNION ALL SELECT x + 1 FROM c) SELECT x FROM c)";
    bfdb_store *s = open_kv();
    struct calls c = {0, 3};
    uint64_t ch = 7;

    bfdb_store_set_interrupt(s, stop_after, &c);
    int rc = bfdb_query_execute(s, sql, strlen(sql), &ch);
    cr_assert_eq(rc, BFDB_EINTERRUPTED, "%d: %s", rc, bfdb_store_errmsg(s));
    cr_assert_eq(ch, 0);
    bfdb_store_set_interrupt(s, NULL, NULL);
    cr_assert_eq(sql_int(s, "SELECT count(*) FROM kv"), 0,
                 "the interrupted statement was rolled back");
    bfdb_store_close(s);
}

Test(interrupt, a_callback_that_never_fires_changes_nothing)
{
    bfdb_store *s = open_kv();
    struct calls c = {0, 1 << 30};

    bfdb_store_set_interrupt(s, stop_after, &c);
    cr_assert_eq(sql_int(s, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL "
                            "SELECT x + 1 FROM c WHERE x < 100000) "
                            "SELECT count(*) FROM c"), 100000);
    cr_assert_gt(c.n, 0, "the callback was polled");
    bfdb_store_close(s);
}
