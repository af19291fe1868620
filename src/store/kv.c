/*
 * kv.c - the kv store: get, set, delete and the digest behind Eq/NotEq
 *
 * Each call is one SQLite statement in autocommit mode, so each write is
 * its own durable transaction when it returns (group commit across
 * requests is the caller's business: see store_begin()).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

/* bind_bytes_text - bind a byte string as TEXT with its exact length, so
 * embedded NULs survive; SQLITE_STATIC: the caller keeps it alive */
static int
bind_bytes_text(sqlite3_stmt *st, int i, const char *p, size_t len)
{
    return sqlite3_bind_text64(st, i, len ? p : "", (sqlite3_uint64)len,
                               SQLITE_STATIC, SQLITE_UTF8);
}

static int
kv_check(bfdb_store *s)
{
    if (s->kind != BFDB_STORE_KV)
        return store_failf(s, BFDB_EINVAL, "%s is not a kv store", s->path);
    return store_check_free(s);
}

int
bfdb_kv_get(bfdb_store *s, const char *key, size_t klen, char **val,
            size_t *vlen)
{
    int rc;

    *val = NULL;
    *vlen = 0;
    if ((rc = kv_check(s)) != BFDB_OK)
        return rc;
    sqlite3_stmt *st = store_stmt(s, ST_KV_GET);
    if ((rc = bind_bytes_text(st, 1, key, klen)) != SQLITE_OK)
        return store_fail(s, rc, "could not bind key");
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(st);
        return store_failf(s, BFDB_ENOTFOUND, "key not found");
    }
    if (rc != SQLITE_ROW) {
        rc = store_fail(s, rc, "could not read key");
        sqlite3_reset(st);
        return rc;
    }
    const unsigned char *v = sqlite3_column_text(st, 0);
    size_t n = (size_t)sqlite3_column_bytes(st, 0);
    char *copy = malloc(n + 1);
    if (copy == NULL) {
        sqlite3_reset(st);
        return store_failf(s, BFDB_ENOMEM, "out of memory for a %zu-byte "
                           "value", n);
    }
    if (n)
        memcpy(copy, v, n);
    copy[n] = '\0';
    sqlite3_reset(st);
    *val = copy;
    *vlen = n;
    return BFDB_OK;
}

int
bfdb_kv_set(bfdb_store *s, const char *key, size_t klen, const char *val,
            size_t vlen)
{
    int rc;

    if ((rc = kv_check(s)) != BFDB_OK)
        return rc;
    sqlite3_stmt *st = store_stmt(s, ST_KV_SET);
    if ((rc = bind_bytes_text(st, 1, key, klen)) != SQLITE_OK ||
        (rc = bind_bytes_text(st, 2, val, vlen)) != SQLITE_OK)
        return store_fail(s, rc, "could not bind key and value");
    rc = store_exec_stmt(s, ST_KV_SET, "could not set key");
    return store_index_conflict(s, rc, key, klen, val, vlen);
}

int
bfdb_kv_delete(bfdb_store *s, const char *key, size_t klen, int *deleted)
{
    int rc;

    if (deleted)
        *deleted = 0;
    if ((rc = kv_check(s)) != BFDB_OK)
        return rc;
    sqlite3_stmt *st = store_stmt(s, ST_KV_DELETE);
    if ((rc = bind_bytes_text(st, 1, key, klen)) != SQLITE_OK)
        return store_fail(s, rc, "could not bind key");
    if ((rc = store_exec_stmt(s, ST_KV_DELETE, "could not delete key")) !=
        BFDB_OK)
        return rc;
    if (deleted)
        *deleted = sqlite3_changes(s->db) > 0;
    return BFDB_OK;
}

int
bfdb_kv_digest(bfdb_store *s, const char *key, size_t klen,
               uint8_t digest[BFDB_DIGEST_LEN])
{
    char *v;
    size_t n;
    int rc = bfdb_kv_get(s, key, klen, &v, &n);

    if (rc != BFDB_OK)
        return rc;
    bfdb_sha256_digest(v, n, digest);
    free(v);
    return BFDB_OK;
}
