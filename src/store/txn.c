/*
 * txn.c - transactions in the store files: staging, the three-step
 * commit and recovery (see store.h, "transactions")
 *
 * Staged rows are keyed by (txn, seq); seq is the row count of the
 * transaction so far, so replaying in seq order replays the client's
 * order.  Statements here are prepared per call: transactions are far
 * rarer than plain reads and writes, and this keeps the hot statements
 * of store.c small.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

/* ---- small helpers -------------------------------------------------------- */

static int
prep(bfdb_store *s, const char *sql, sqlite3_stmt **st)
{
    int rc = sqlite3_prepare_v2(s->db, sql, -1, st, NULL);
    if (rc != SQLITE_OK)
        return store_fail(s, rc, "could not prepare a transaction statement");
    return BFDB_OK;
}

/* run - prepare, bind txn as ?1 and id as ?2 (if non-zero), step to done */
static int
run(bfdb_store *s, const char *sql, uint64_t txn, uint64_t id,
    const char *what)
{
    sqlite3_stmt *st;
    int rc = prep(s, sql, &st);
    if (rc != BFDB_OK)
        return rc;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)txn);
    if (id)
        sqlite3_bind_int64(st, 2, (sqlite3_int64)id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        ;
    rc = rc == SQLITE_DONE ? BFDB_OK : store_fail(s, rc, what);
    sqlite3_finalize(st);
    return rc;
}

/* exists - 1 if the query (?1 = txn) returns a row, 0 if not, < 0 error */
static int
exists(bfdb_store *s, const char *sql, uint64_t txn)
{
    sqlite3_stmt *st;
    int rc = prep(s, sql, &st);
    if (rc != BFDB_OK)
        return rc;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)txn);
    rc = sqlite3_step(st);
    int r = rc == SQLITE_ROW ? 1
            : rc == SQLITE_DONE ? 0
                                : store_fail(s, rc, "could not read a "
                                                    "transaction marker");
    sqlite3_finalize(st);
    return r;
}

static int
next_seq(bfdb_store *s, const char *table, uint64_t txn, int64_t *seq)
{
    char sql[128];
    sqlite3_stmt *st;

    snprintf(sql, sizeof(sql),
             "SELECT coalesce(max(seq), 0) + 1 FROM %s WHERE txn = ?1", table);
    int rc = prep(s, sql, &st);
    if (rc != BFDB_OK)
        return rc;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)txn);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *seq = sqlite3_column_int64(st, 0);
        rc = BFDB_OK;
    } else {
        rc = store_fail(s, rc, "could not number a staged write");
    }
    sqlite3_finalize(st);
    return rc;
}

static int
bind_text(sqlite3_stmt *st, int i, const char *p, size_t len)
{
    if (p == NULL)
        return sqlite3_bind_null(st, i);
    return sqlite3_bind_text64(st, i, len ? p : "", (sqlite3_uint64)len,
                               SQLITE_STATIC, SQLITE_UTF8);
}

/* ---- kv ------------------------------------------------------------------- */

int
bfdb_txn_kv_stage(bfdb_store *kv, uint64_t txn, const char *key, size_t klen,
                  const char *val, size_t vlen)
{
    sqlite3_stmt *st;
    int64_t seq;
    int rc;

    if ((rc = store_check_free(kv)) != BFDB_OK)
        return rc;
    if ((rc = store_begin(kv, 1)) != BFDB_OK)
        return rc;
    if ((rc = next_seq(kv, "buffdb_txn_kv", txn, &seq)) != BFDB_OK)
        goto fail;
    if ((rc = prep(kv, "INSERT INTO buffdb_txn_kv (txn, seq, op, key, value)"
                       " VALUES (?1, ?2, ?3, ?4, ?5)", &st)) != BFDB_OK)
        goto fail;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)txn);
    sqlite3_bind_int64(st, 2, seq);
    sqlite3_bind_int(st, 3, val ? BFDB_TXN_SET : BFDB_TXN_DELETE);
    bind_text(st, 4, key, klen);
    bind_text(st, 5, val, vlen);
    rc = sqlite3_step(st);
    rc = rc == SQLITE_DONE ? BFDB_OK
                           : store_fail(kv, rc, "could not stage a write");
    sqlite3_finalize(st);
    if (rc != BFDB_OK)
        goto fail;
    return store_commit(kv);
fail:
    store_rollback(kv);
    return rc;
}

int
bfdb_txn_kv_read(bfdb_store *kv, uint64_t txn, const char *key, size_t klen,
                 int *staged, char **val, size_t *vlen)
{
    sqlite3_stmt *st;
    int rc;

    *staged = 0;
    *val = NULL;
    *vlen = 0;
    if ((rc = prep(kv, "SELECT op, value FROM buffdb_txn_kv WHERE txn = ?1"
                       " AND key = ?2 ORDER BY seq DESC LIMIT 1", &st)) != 0)
        return rc;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)txn);
    bind_text(st, 2, key, klen);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        rc = BFDB_OK;
    } else if (rc != SQLITE_ROW) {
        rc = store_fail(kv, rc, "could not read a staged write");
    } else {
        *staged = 1;
        if (sqlite3_column_int(st, 0) == BFDB_TXN_DELETE) {
            rc = store_failf(kv, BFDB_ENOTFOUND, "key not found");
        } else {
            size_t n = (size_t)sqlite3_column_bytes(st, 1);
            const unsigned char *t = sqlite3_column_text(st, 1);
            *val = malloc(n + 1);
            if (*val == NULL) {
                rc = store_failf(kv, BFDB_ENOMEM, "out of memory");
            } else {
                if (n)
                    memcpy(*val, t, n);
                (*val)[n] = '\0';
                *vlen = n;
                rc = BFDB_OK;
            }
        }
    }
    sqlite3_finalize(st);
    return rc;
}

int
bfdb_txn_kv_keys(bfdb_store *kv, uint64_t txn, char ***keys, size_t **lens,
                 size_t *n)
{
    sqlite3_stmt *st;
    size_t cap = 0;
    int rc;

    *keys = NULL;
    *lens = NULL;
    *n = 0;
    if ((rc = prep(kv, "SELECT DISTINCT key FROM buffdb_txn_kv WHERE txn = ?1",
                   &st)) != 0)
        return rc;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)txn);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        size_t len = (size_t)sqlite3_column_bytes(st, 0);
        if (t == NULL && len > 0)
            goto nomem;
        if (*n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            char **nk = realloc(*keys, ncap * sizeof(**keys));
            if (nk == NULL)
                goto nomem;
            *keys = nk;
            size_t *nl = realloc(*lens, ncap * sizeof(**lens));
            if (nl == NULL)
                goto nomem;
            *lens = nl;
            cap = ncap;
        }
        char *k = malloc(len + 1);
        if (k == NULL)
            goto nomem;
        if (len)
            memcpy(k, t, len);
        k[len] = '\0';
        (*keys)[*n] = k;
        (*lens)[*n] = len;
        (*n)++;
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_DONE)
        return BFDB_OK;
    rc = store_fail(kv, rc, "could not list the staged keys");
    goto fail;
nomem:
    sqlite3_finalize(st);
    rc = store_failf(kv, BFDB_ENOMEM, "out of memory");
fail:
    bfdb_txn_kv_keys_free(*keys, *lens, *n);
    *keys = NULL;
    *lens = NULL;
    *n = 0;
    return rc;
}

void
bfdb_txn_kv_keys_free(char **keys, size_t *lens, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(keys[i]);
    free(keys);
    free(lens);
}

int
bfdb_txn_kv_commit(bfdb_store *kv, uint64_t txn, int blob_prepared)
{
    int rc;

    if ((rc = store_check_free(kv)) != BFDB_OK)
        return rc;
    if ((rc = store_begin(kv, 1)) != BFDB_OK)
        return rc;
    /* the last staged write of each key wins.  Every key it writes goes
     * first, then the sets go in: so a unique index sees the end state
     * (two keys swapping values do not collide half-way) */
    rc = run(kv,
             "DELETE FROM kv WHERE key IN (SELECT key FROM buffdb_txn_kv"
             " WHERE txn = ?1)",
             txn, 0, "could not apply staged deletes");
    if (rc == BFDB_OK)
        rc = run(kv,
                 "INSERT INTO kv (key, value) SELECT t.key, t.value"
                 " FROM buffdb_txn_kv t WHERE t.txn = ?1 AND t.op = 1"
                 " AND t.seq = (SELECT max(seq) FROM buffdb_txn_kv u"
                 " WHERE u.txn = ?1 AND u.key = t.key) AND true"
                 " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                 txn, 0, "could not apply staged sets");
    if (rc != BFDB_OK)
        rc = store_index_conflict(kv, rc, NULL, 0, NULL, 0);
    if (rc == BFDB_OK && blob_prepared)
        rc = run(kv, "INSERT OR IGNORE INTO buffdb_txn_done (txn) VALUES (?1)",
                 txn, 0, "could not mark the commit");
    if (rc == BFDB_OK)
        rc = run(kv, "DELETE FROM buffdb_txn_kv WHERE txn = ?1", txn, 0,
                 "could not drop staged writes");
    if (rc != BFDB_OK) {
        store_rollback(kv);
        return rc;
    }
    return store_commit(kv);
}

/* ---- blob ----------------------------------------------------------------- */

int
bfdb_txn_blob_reserve(bfdb_store *blob, uint64_t *id)
{
    int rc;

    if ((rc = store_check_free(blob)) != BFDB_OK)
        return rc;
    sqlite3_stmt *st = store_stmt(blob, ST_BLOB_RESERVE);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *id = (uint64_t)sqlite3_column_int64(st, 0);
        rc = sqlite3_step(st);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return store_fail(blob, rc, "could not reserve a blob id");
    return BFDB_OK;
}

int
bfdb_txn_blob_stage(bfdb_store *blob, uint64_t txn, int op, uint64_t id,
                    int has_data, const void *data, size_t len,
                    int update_meta, const char *meta, size_t mlen)
{
    sqlite3_stmt *st;
    int64_t seq;
    int rc;

    if ((rc = store_check_free(blob)) != BFDB_OK)
        return rc;
    if ((rc = store_begin(blob, 1)) != BFDB_OK)
        return rc;
    if ((rc = next_seq(blob, "buffdb_txn_blob", txn, &seq)) != BFDB_OK)
        goto fail;
    if ((rc = prep(blob, "INSERT INTO buffdb_txn_blob (txn, seq, op, id,"
                         " has_data, data, update_meta, metadata)"
                         " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)", &st)))
        goto fail;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)txn);
    sqlite3_bind_int64(st, 2, seq);
    sqlite3_bind_int(st, 3, op);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)id);
    sqlite3_bind_int(st, 5, has_data ? 1 : 0);
    if (has_data)
        sqlite3_bind_blob64(st, 6, len ? data : "", (sqlite3_uint64)len,
                            SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 6);
    sqlite3_bind_int(st, 7, update_meta ? 1 : 0);
    bind_text(st, 8, meta, mlen);
    rc = sqlite3_step(st);
    rc = rc == SQLITE_DONE ? BFDB_OK
                           : store_fail(blob, rc, "could not stage a write");
    sqlite3_finalize(st);
    if (rc != BFDB_OK)
        goto fail;
    return store_commit(blob);
fail:
    store_rollback(blob);
    return rc;
}

int
bfdb_txn_blob_read(bfdb_store *blob, uint64_t txn, uint64_t id,
                   size_t max_len, void **data, size_t *len, char **meta,
                   size_t *mlen)
{
    sqlite3_stmt *st;
    int rc, exists_now;

    rc = bfdb_blob_get(blob, id, max_len, data, len, meta, mlen);
    if (rc != BFDB_OK && rc != BFDB_ENOTFOUND)
        return rc;
    exists_now = rc == BFDB_OK;
    if ((rc = prep(blob, "SELECT op, has_data, data, update_meta, metadata"
                         " FROM buffdb_txn_blob WHERE txn = ?1 AND id = ?2"
                         " ORDER BY seq", &st)) != BFDB_OK)
        goto fail;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)txn);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int op = sqlite3_column_int(st, 0);
        int has_data = sqlite3_column_int(st, 1) || op == BFDB_TXN_STORE;
        int upd = sqlite3_column_int(st, 3) || op == BFDB_TXN_STORE;
        if (op == BFDB_TXN_DELETE) {
            exists_now = 0;
            continue;
        }
        if (op == BFDB_TXN_UPDATE && !exists_now)
            continue; /* an update of a missing blob changes nothing */
        exists_now = 1;
        if (has_data) {
            size_t n = (size_t)sqlite3_column_bytes(st, 2);
            if (n > max_len) {
                rc = store_failf(blob, BFDB_ETOOBIG, "blob %" PRIu64 " is %zu"
                                 " bytes, more than the %zu allowed", id, n,
                                 max_len);
                sqlite3_finalize(st);
                goto fail;
            }
            free(*data);
            *data = malloc(n + 1);
            if (*data == NULL) {
                sqlite3_finalize(st);
                rc = store_failf(blob, BFDB_ENOMEM, "out of memory");
                goto fail;
            }
            if (n)
                memcpy(*data, sqlite3_column_blob(st, 2), n);
            *len = n;
        }
        if (upd) {
            free(*meta);
            *meta = NULL;
            *mlen = 0;
            if (sqlite3_column_type(st, 4) != SQLITE_NULL) {
                size_t n = (size_t)sqlite3_column_bytes(st, 4);
                *meta = malloc(n + 1);
                if (*meta == NULL) {
                    sqlite3_finalize(st);
                    rc = store_failf(blob, BFDB_ENOMEM, "out of memory");
                    goto fail;
                }
                if (n)
                    memcpy(*meta, sqlite3_column_text(st, 4), n);
                (*meta)[n] = '\0';
                *mlen = n;
            }
        }
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        rc = store_fail(blob, rc, "could not read staged writes");
        goto fail;
    }
    if (!exists_now) {
        rc = store_failf(blob, BFDB_ENOTFOUND, "blob %" PRIu64 " not found",
                         id);
        goto fail;
    }
    return BFDB_OK;
fail:
    free(*data);
    *data = NULL;
    if (meta) {
        free(*meta);
        *meta = NULL;
    }
    return rc;
}

static int
set_restoring(bfdb_store *blob, int on)
{
    return run(blob, on ? "UPDATE buffdb_meta SET value = 1 WHERE name ="
                          " 'restoring'"
                        : "UPDATE buffdb_meta SET value = 0 WHERE name ="
                          " 'restoring'",
               0, 0, "could not switch id checks");
}

int
bfdb_txn_blob_prepare(bfdb_store *blob, uint64_t txn)
{
    sqlite3_stmt *st = NULL;
    int rc;

    if ((rc = store_check_free(blob)) != BFDB_OK)
        return rc;
    if ((rc = store_begin(blob, 1)) != BFDB_OK)
        return rc;
    /* blobs stored in parts (over blob_inline_max) cannot be restored
     * from an undo image */
    rc = exists(blob, "SELECT 1 FROM buffdb_txn_blob t JOIN buffdb_blob_part p"
                      " ON p.blob_id = t.id WHERE t.txn = ?1 LIMIT 1", txn);
    if (rc == 1)
        rc = store_failf(blob, BFDB_EINVAL, "a blob stored in parts (larger "
                         "than %u bytes) cannot be changed in a transaction",
                         blob->blob_inline_max);
    if (rc != BFDB_OK)
        goto fail;
    if ((rc = set_restoring(blob, 1)) != BFDB_OK)
        goto fail;
    /* before-images first, one per blob, of the blobs as they are now */
    rc = run(blob,
             "INSERT OR IGNORE INTO buffdb_txn_undo (txn, id, existed, data,"
             " metadata) SELECT ?1, t.id, b.rowid IS NOT NULL, b.data,"
             " b.metadata FROM (SELECT DISTINCT id FROM buffdb_txn_blob"
             " WHERE txn = ?1) t LEFT JOIN blob b ON b.rowid = t.id",
             txn, 0, "could not keep before-images");
    if (rc != BFDB_OK)
        goto fail;
    if ((rc = prep(blob, "SELECT seq, op, id, has_data, update_meta"
                         " FROM buffdb_txn_blob WHERE txn = ?1 ORDER BY seq",
                   &st)) != BFDB_OK)
        goto fail;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)txn);
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t seq = sqlite3_column_int64(st, 0);
        int op = sqlite3_column_int(st, 1);
        int64_t id = sqlite3_column_int64(st, 2);
        int has_data = sqlite3_column_int(st, 3);
        int upd = sqlite3_column_int(st, 4);
        const char *sql;
        if (op == BFDB_TXN_STORE)
            sql = "INSERT INTO blob (rowid, data, metadata) SELECT ?2, data,"
                  " metadata FROM buffdb_txn_blob WHERE txn = ?1 AND seq = ?3";
        else if (op == BFDB_TXN_DELETE)
            sql = "DELETE FROM blob WHERE rowid = ?2 AND ?3 IS NOT NULL";
        else if (has_data && upd)
            sql = "UPDATE blob SET (data, metadata) = (SELECT data, metadata"
                  " FROM buffdb_txn_blob WHERE txn = ?1 AND seq = ?3)"
                  " WHERE rowid = ?2";
        else if (has_data)
            sql = "UPDATE blob SET data = (SELECT data FROM buffdb_txn_blob"
                  " WHERE txn = ?1 AND seq = ?3) WHERE rowid = ?2";
        else if (upd)
            sql = "UPDATE blob SET metadata = (SELECT metadata FROM"
                  " buffdb_txn_blob WHERE txn = ?1 AND seq = ?3)"
                  " WHERE rowid = ?2";
        else
            continue;
        sqlite3_stmt *ap;
        if ((rc = prep(blob, sql, &ap)) != BFDB_OK)
            break;
        sqlite3_bind_int64(ap, 1, (sqlite3_int64)txn);
        sqlite3_bind_int64(ap, 2, id);
        sqlite3_bind_int64(ap, 3, seq);
        int arc = sqlite3_step(ap);
        sqlite3_finalize(ap);
        if (arc != SQLITE_DONE) {
            rc = store_fail(blob, arc, "could not apply a staged blob write");
            break;
        }
    }
    if (rc == BFDB_OK && step != SQLITE_DONE)
        rc = store_fail(blob, step, "could not read staged blob writes");
    sqlite3_finalize(st);
    if (rc == BFDB_OK)
        rc = run(blob, "INSERT OR IGNORE INTO buffdb_txn_prepared (txn)"
                       " VALUES (?1)", txn, 0, "could not mark the prepare");
    if (rc == BFDB_OK)
        rc = run(blob, "DELETE FROM buffdb_txn_blob WHERE txn = ?1", txn, 0,
                 "could not drop staged blob writes");
    if (rc == BFDB_OK)
        rc = set_restoring(blob, 0);
    if (rc != BFDB_OK)
        goto fail;
    return store_commit(blob);
fail:
    store_rollback(blob);
    return rc;
}

int
bfdb_txn_blob_finish(bfdb_store *blob, bfdb_store *kv, uint64_t txn)
{
    int rc;

    if ((rc = store_begin(blob, 1)) != BFDB_OK)
        return rc;
    rc = run(blob, "DELETE FROM buffdb_txn_undo WHERE txn = ?1", txn, 0,
             "could not drop before-images");
    if (rc == BFDB_OK)
        rc = run(blob, "DELETE FROM buffdb_txn_prepared WHERE txn = ?1", txn,
                 0, "could not drop the prepare mark");
    if (rc != BFDB_OK) {
        store_rollback(blob);
        return rc;
    }
    if ((rc = store_commit(blob)) != BFDB_OK)
        return rc;
    /* only now: a crash before this leaves "prepared and done", which
     * recovery finishes the same way */
    return run(kv, "DELETE FROM buffdb_txn_done WHERE txn = ?1", txn, 0,
               "could not drop the commit mark");
}

/* undo - put every blob the prepared transaction touched back as it was */
static int
undo(bfdb_store *blob, uint64_t txn)
{
    int rc;

    if ((rc = store_begin(blob, 1)) != BFDB_OK)
        return rc;
    rc = set_restoring(blob, 1);
    if (rc == BFDB_OK)
        rc = run(blob, "DELETE FROM blob WHERE rowid IN (SELECT id FROM"
                       " buffdb_txn_undo WHERE txn = ?1)", txn, 0,
                 "could not remove a transaction's blobs");
    if (rc == BFDB_OK)
        rc = run(blob, "INSERT INTO blob (rowid, data, metadata) SELECT id,"
                       " data, metadata FROM buffdb_txn_undo WHERE txn = ?1"
                       " AND existed", txn, 0, "could not restore blobs");
    if (rc == BFDB_OK)
        rc = run(blob, "DELETE FROM buffdb_txn_undo WHERE txn = ?1", txn, 0,
                 "could not drop before-images");
    if (rc == BFDB_OK)
        rc = run(blob, "DELETE FROM buffdb_txn_prepared WHERE txn = ?1", txn,
                 0, "could not drop the prepare mark");
    if (rc == BFDB_OK)
        rc = set_restoring(blob, 0);
    if (rc != BFDB_OK) {
        store_rollback(blob);
        return rc;
    }
    return store_commit(blob);
}

int
bfdb_txn_discard(bfdb_store *s, uint64_t txn)
{
    return run(s, s->kind == BFDB_STORE_KV
                      ? "DELETE FROM buffdb_txn_kv WHERE txn = ?1"
                      : "DELETE FROM buffdb_txn_blob WHERE txn = ?1",
               txn, 0, "could not discard staged writes");
}

static int
recover_one(bfdb_store *kv, bfdb_store *blob, uint64_t txn, int had_blob,
            int *committed)
{
    int rc;
    int prepared = exists(blob, "SELECT 1 FROM buffdb_txn_prepared"
                                " WHERE txn = ?1", txn);
    int done = exists(kv, "SELECT 1 FROM buffdb_txn_done WHERE txn = ?1",
                      txn);
    int kv_staged = exists(kv, "SELECT 1 FROM buffdb_txn_kv WHERE txn = ?1",
                           txn);
    if (prepared < 0 || done < 0 || kv_staged < 0)
        return prepared < 0 ? prepared : done < 0 ? done : kv_staged;
    /* with blobs, the done mark (written with the kv step) decides; with
     * kv alone the kv step is one SQLite transaction that also drops the
     * staged rows, so "none left" means it committed */
    int did = had_blob ? done : !kv_staged;
    if (prepared)
        rc = done ? bfdb_txn_blob_finish(blob, kv, txn) : undo(blob, txn);
    else
        rc = BFDB_OK;
    if (committed)
        *committed = did;
    if (rc == BFDB_OK)
        rc = bfdb_txn_discard(blob, txn);
    if (rc == BFDB_OK)
        rc = bfdb_txn_discard(kv, txn);
    if (rc == BFDB_OK)
        rc = run(kv, "DELETE FROM buffdb_txn_done WHERE txn = ?1", txn, 0,
                 "could not drop the commit mark");
    return rc;
}

int
bfdb_txn_recover(bfdb_store *kv, bfdb_store *blob, uint64_t txn,
                 int had_blob, int *committed)
{
    sqlite3_stmt *st;
    int rc;

    if (committed)
        *committed = 0;
    if (txn != 0)
        return recover_one(kv, blob, txn, had_blob, committed);
    /* every prepared transaction, then whatever staging is left */
    for (;;) {
        if ((rc = prep(blob, "SELECT txn FROM buffdb_txn_prepared LIMIT 1",
                       &st)) != BFDB_OK)
            return rc;
        rc = sqlite3_step(st);
        uint64_t t = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(st, 0)
                                      : 0;
        sqlite3_finalize(st);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            return store_fail(blob, rc, "could not list prepared "
                                        "transactions");
        if (t == 0)
            break;
        if ((rc = recover_one(kv, blob, t, 1, NULL)) != BFDB_OK)
            return rc;
    }
    rc = run(blob, "DELETE FROM buffdb_txn_blob", 0, 0,
             "could not discard staged blob writes");
    if (rc == BFDB_OK)
        rc = run(blob, "DELETE FROM buffdb_txn_undo", 0, 0,
                 "could not drop before-images");
    if (rc == BFDB_OK)
        rc = run(kv, "DELETE FROM buffdb_txn_kv", 0, 0,
                 "could not discard staged writes");
    if (rc == BFDB_OK)
        rc = run(kv, "DELETE FROM buffdb_txn_done", 0, 0,
                 "could not drop commit marks");
    return rc;
}
