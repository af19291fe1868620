/*
 * model.c - the store side of the Model service (see store.h, "models")
 *
 * Two files, so two kinds of transaction:
 *   - a part is written to the blob file (blob row + buffdb_model_part
 *     row, one transaction) before anything in the kv file names it;
 *   - everything that names parts (an unfinished push's rows, a version's
 *     references) and the kv keys upstream clients read change in kv-file
 *     transactions; bfdb_model_commit is a push's commit point.
 * A crash between the two leaves at worst a part nobody names, which the
 * sweep at start (bfdb_model_part_all + bfdb_model_sha_used) frees.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cmp.h"
#include "store/store_int.h"

/* ---- helpers ---------------------------------------------------------------- */

int
bfdb_model_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;

    if (n == 0 || n > BFDB_MODEL_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' ||
              c == '/' || c == '+'))
            return 0;
    }
    return 1;
}

void
bfdb_model_strv_free(char **v, size_t n)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static int
check_kind(bfdb_store *s, int kind)
{
    if (s->kind != kind)
        return store_failf(s, BFDB_EINVAL, "%s is not a %s store", s->path,
                           kind == BFDB_STORE_KV ? "kv" : "blob");
    return store_check_free(s);
}

static int
prep(bfdb_store *s, const char *sql, sqlite3_stmt **st)
{
    int rc = sqlite3_prepare_v2(s->db, sql, -1, st, NULL);
    if (rc != SQLITE_OK)
        return store_fail(s, rc, "could not prepare a model statement");
    return BFDB_OK;
}

/* step_done - step a statement that returns no rows, then finalize it */
static int
step_done(bfdb_store *s, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return store_fail(s, rc, what);
    return BFDB_OK;
}

static char *
col_str(sqlite3_stmt *st, int i)
{
    const unsigned char *p = sqlite3_column_text(st, i);
    return strdup(p ? (const char *)p : "");
}

static void *
col_blob(sqlite3_stmt *st, int i, size_t *len)
{
    const void *p = sqlite3_column_blob(st, i);
    size_t n = (size_t)sqlite3_column_bytes(st, i);
    void *c = malloc(n ? n : 1);
    if (c != NULL && n)
        memcpy(c, p, n);
    *len = n;
    return c;
}

/* grow - make room for one more element in *v (cap doubling) */
static int
grow(void **v, size_t n, size_t *cap, size_t elem)
{
    if (n < *cap)
        return 0;
    size_t nc = *cap ? *cap * 2 : 16;
    void *nv = realloc(*v, nc * elem);
    if (nv == NULL)
        return -1;
    *v = nv;
    *cap = nc;
    return 0;
}

/* collect_parts - rows (file, part, sha256, size) of st into an array */
static int
collect_parts(bfdb_store *s, sqlite3_stmt *st, struct bfdb_model_part **out,
              size_t *n)
{
    struct bfdb_model_part *v = NULL;
    size_t cnt = 0, cap = 0;
    int rc;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (grow((void **)&v, cnt, &cap, sizeof(*v)) != 0) {
            free(v);
            sqlite3_finalize(st);
            return store_failf(s, BFDB_ENOMEM, "out of memory");
        }
        struct bfdb_model_part *p = &v[cnt++];
        p->file = (uint32_t)sqlite3_column_int64(st, 0);
        p->part = (uint32_t)sqlite3_column_int64(st, 1);
        memset(p->sha, 0, sizeof(p->sha));
        if (sqlite3_column_bytes(st, 2) == BFDB_SHA256_LEN)
            memcpy(p->sha, sqlite3_column_blob(st, 2), BFDB_SHA256_LEN);
        p->size = (uint64_t)sqlite3_column_int64(st, 3);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        free(v);
        return store_fail(s, rc, "could not read model parts");
    }
    *out = v;
    *n = cnt;
    return BFDB_OK;
}

/* collect_shas - the first column (32-byte digests) of st's rows */
static int
collect_shas(bfdb_store *s, sqlite3_stmt *st, uint8_t (**out)[BFDB_SHA256_LEN],
             size_t *n)
{
    uint8_t (*v)[BFDB_SHA256_LEN] = NULL;
    size_t cnt = 0, cap = 0;
    int rc;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (sqlite3_column_bytes(st, 0) != BFDB_SHA256_LEN)
            continue;
        if (grow((void **)&v, cnt, &cap, sizeof(*v)) != 0) {
            free(v);
            sqlite3_finalize(st);
            return store_failf(s, BFDB_ENOMEM, "out of memory");
        }
        memcpy(v[cnt++], sqlite3_column_blob(st, 0), BFDB_SHA256_LEN);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        free(v);
        return store_fail(s, rc, "could not read model parts");
    }
    *out = v;
    *n = cnt;
    return BFDB_OK;
}

/* ---- blob side -------------------------------------------------------------- */

int
bfdb_model_part_find(bfdb_store *s, const uint8_t sha[BFDB_SHA256_LEN],
                     uint64_t *blob_id, uint64_t *size)
{
    sqlite3_stmt *st;
    int rc;

    if ((rc = check_kind(s, BFDB_STORE_BLOB)) != BFDB_OK ||
        (rc = prep(s, "SELECT blob_id, size FROM buffdb_model_part"
                      " WHERE sha256 = ?1", &st)) != BFDB_OK)
        return rc;
    sqlite3_bind_blob(st, 1, sha, BFDB_SHA256_LEN, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *blob_id = (uint64_t)sqlite3_column_int64(st, 0);
        *size = (uint64_t)sqlite3_column_int64(st, 1);
        rc = BFDB_OK;
    } else if (rc == SQLITE_DONE) {
        rc = store_failf(s, BFDB_ENOTFOUND, "model part not found");
    } else {
        rc = store_fail(s, rc, "could not look a model part up");
    }
    sqlite3_finalize(st);
    return rc;
}

int
bfdb_model_part_put(bfdb_store *s, const uint8_t sha[BFDB_SHA256_LEN],
                    const void *data, size_t len, const char *meta,
                    size_t mlen, uint64_t *blob_id, int *stored)
{
    sqlite3_stmt *st;
    uint64_t size;
    int rc;

    *stored = 0;
    if ((rc = check_kind(s, BFDB_STORE_BLOB)) != BFDB_OK)
        return rc;
    if (len > BFDB_MODEL_PART_SIZE)
        return store_failf(s, BFDB_EINVAL, "a model part holds at most %u "
                           "bytes", BFDB_MODEL_PART_SIZE);
    if ((rc = store_begin(s, 1)) != BFDB_OK)
        return rc;
    rc = bfdb_model_part_find(s, sha, blob_id, &size);
    if (rc == BFDB_OK) {
        /* reuse it only if its bytes are still the part's: a blob changed
         * behind the service's back is rewritten, not handed out again */
        if ((rc = prep(s, "SELECT data FROM blob WHERE rowid = ?1", &st)) !=
            BFDB_OK)
            goto fail;
        sqlite3_bind_int64(st, 1, (sqlite3_int64)*blob_id);
        uint8_t d[BFDB_SHA256_LEN];
        int ok = 0;
        if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            const void *p = sqlite3_column_blob(st, 0);
            size_t n = (size_t)sqlite3_column_bytes(st, 0);
            bfdb_sha256_digest(p ? p : "", n, d);
            ok = n == len && memcmp(d, sha, BFDB_SHA256_LEN) == 0;
        }
        sqlite3_finalize(st);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
            rc = store_fail(s, rc, "could not read a model part");
            goto fail;
        }
        if (ok)
            return store_commit(s);
        if ((rc = prep(s, "UPDATE blob SET data = ?2 WHERE rowid = ?1",
                       &st)) != BFDB_OK)
            goto fail;
        sqlite3_bind_int64(st, 1, (sqlite3_int64)*blob_id);
        sqlite3_bind_blob64(st, 2, len ? data : "", (sqlite3_uint64)len,
                            SQLITE_STATIC);
        if ((rc = step_done(s, st, "could not repair a model part")) !=
                BFDB_OK ||
            (rc = prep(s, "UPDATE buffdb_model_part SET size = ?2 WHERE"
                          " sha256 = ?1", &st)) != BFDB_OK)
            goto fail;
        sqlite3_bind_blob(st, 1, sha, BFDB_SHA256_LEN, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)len);
        if ((rc = step_done(s, st, "could not repair a model part")) !=
            BFDB_OK)
            goto fail;
        if ((rc = store_commit(s)) != BFDB_OK)
            return rc;
        *stored = 2;
        return BFDB_OK;
    }
    if (rc != BFDB_ENOTFOUND)
        goto fail;
    /* a new blob, at an id never given out before (as bfdb_blob_store) */
    st = store_stmt(s, ST_BLOB_NEXT_ID);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        rc = store_fail(s, rc, "could not choose a blob id");
        sqlite3_reset(st);
        goto fail;
    }
    *blob_id = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    st = store_stmt(s, ST_BLOB_INSERT);
    sqlite3_bind_int64(st, 1, (sqlite3_int64)*blob_id);
    sqlite3_bind_blob64(st, 2, len ? data : "", (sqlite3_uint64)len,
                        SQLITE_STATIC);
    sqlite3_bind_text64(st, 3, meta ? meta : "", (sqlite3_uint64)mlen,
                        SQLITE_STATIC, SQLITE_UTF8);
    if ((rc = store_exec_stmt(s, ST_BLOB_INSERT, "could not store a model "
                              "part")) != BFDB_OK)
        goto fail;
    if ((rc = prep(s, "INSERT INTO buffdb_model_part (sha256, blob_id, size)"
                      " VALUES (?1, ?2, ?3)", &st)) != BFDB_OK)
        goto fail;
    sqlite3_bind_blob(st, 1, sha, BFDB_SHA256_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)*blob_id);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)len);
    if ((rc = step_done(s, st, "could not record a model part")) != BFDB_OK)
        goto fail;
    if ((rc = store_commit(s)) != BFDB_OK)
        return rc;
    *stored = 1;
    return BFDB_OK;
fail:
    store_rollback(s);
    return rc;
}

int
bfdb_model_part_free(bfdb_store *s, const uint8_t sha[BFDB_SHA256_LEN],
                     uint64_t *bytes)
{
    uint64_t id, size;
    sqlite3_stmt *st;
    int rc;

    *bytes = 0;
    if ((rc = check_kind(s, BFDB_STORE_BLOB)) != BFDB_OK)
        return rc;
    if ((rc = store_begin(s, 1)) != BFDB_OK)
        return rc;
    rc = bfdb_model_part_find(s, sha, &id, &size);
    if (rc == BFDB_ENOTFOUND) {
        store_rollback(s);
        return BFDB_OK;
    }
    if (rc != BFDB_OK)
        goto fail;
    /* the blob's delete trigger drops the part row and raises the id floor */
    st = store_stmt(s, ST_BLOB_DELETE);
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    if ((rc = store_exec_stmt(s, ST_BLOB_DELETE, "could not free a model "
                              "part")) != BFDB_OK)
        goto fail;
    if ((rc = prep(s, "DELETE FROM buffdb_model_part WHERE sha256 = ?1",
                   &st)) != BFDB_OK)
        goto fail;
    sqlite3_bind_blob(st, 1, sha, BFDB_SHA256_LEN, SQLITE_STATIC);
    if ((rc = step_done(s, st, "could not free a model part")) != BFDB_OK)
        goto fail;
    if ((rc = store_commit(s)) != BFDB_OK)
        return rc;
    *bytes = size;
    return BFDB_OK;
fail:
    store_rollback(s);
    return rc;
}

int
bfdb_model_part_all(bfdb_store *s, uint8_t (**shas)[BFDB_SHA256_LEN],
                    size_t *n)
{
    sqlite3_stmt *st;
    int rc;

    *shas = NULL;
    *n = 0;
    if ((rc = check_kind(s, BFDB_STORE_BLOB)) != BFDB_OK ||
        (rc = prep(s, "SELECT sha256 FROM buffdb_model_part", &st)) !=
            BFDB_OK)
        return rc;
    return collect_shas(s, st, shas, n);
}

/* ---- kv side: unfinished pushes ----------------------------------------------- */

static void
bind_nv(sqlite3_stmt *st, const char *name, const char *version)
{
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, version, -1, SQLITE_STATIC);
}

/* shas_nv - the digests sql (?1 name, ?2 version) selects */
static int
shas_nv(bfdb_store *s, const char *sql, const char *name,
        const char *version, uint8_t (**shas)[BFDB_SHA256_LEN], size_t *n)
{
    sqlite3_stmt *st;
    int rc = prep(s, sql, &st);

    if (rc != BFDB_OK)
        return rc;
    bind_nv(st, name, version);
    return collect_shas(s, st, shas, n);
}

/* exec_nv - run sql with ?1 name, ?2 version */
static int
exec_nv(bfdb_store *s, const char *sql, const char *name, const char *version,
        const char *what)
{
    sqlite3_stmt *st;
    int rc = prep(s, sql, &st);
    if (rc != BFDB_OK)
        return rc;
    bind_nv(st, name, version);
    return step_done(s, st, what);
}

int
bfdb_model_upload_get(bfdb_store *s, const char *name, const char *version,
                      void **hdr, size_t *hlen,
                      struct bfdb_model_part **parts, size_t *nparts,
                      int64_t *updated)
{
    sqlite3_stmt *st;
    int rc;

    *hdr = NULL;
    *hlen = 0;
    if (parts) {
        *parts = NULL;
        *nparts = 0;
    }
    if ((rc = check_kind(s, BFDB_STORE_KV)) != BFDB_OK)
        return rc;
    if ((rc = store_begin(s, 0)) != BFDB_OK) /* header and parts agree */
        return rc;
    if ((rc = prep(s, "SELECT header, updated FROM buffdb_model_upload"
                      " WHERE name = ?1 AND version = ?2", &st)) != BFDB_OK)
        goto out;
    bind_nv(st, name, version);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        sqlite3_finalize(st);
        rc = store_failf(s, BFDB_ENOTFOUND, "no unfinished push of %s:%s",
                         name, version);
        goto out;
    }
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(st);
        rc = store_fail(s, rc, "could not read an unfinished push");
        goto out;
    }
    *hdr = col_blob(st, 0, hlen);
    if (updated)
        *updated = sqlite3_column_int64(st, 1);
    sqlite3_finalize(st);
    if (*hdr == NULL) {
        rc = store_failf(s, BFDB_ENOMEM, "out of memory");
        goto out;
    }
    rc = BFDB_OK;
    if (parts) {
        if ((rc = prep(s, "SELECT file, part, sha256, size FROM"
                          " buffdb_model_upload_part WHERE name = ?1 AND"
                          " version = ?2 ORDER BY file, part", &st)) ==
            BFDB_OK) {
            bind_nv(st, name, version);
            rc = collect_parts(s, st, parts, nparts);
        }
        if (rc != BFDB_OK) {
            free(*hdr);
            *hdr = NULL;
        }
    }
out:
    store_rollback(s);
    return rc;
}

int
bfdb_model_upload_start(bfdb_store *s, const char *name, const char *version,
                        const void *hdr, size_t hlen)
{
    sqlite3_stmt *st;
    int rc;

    if ((rc = check_kind(s, BFDB_STORE_KV)) != BFDB_OK)
        return rc;
    if ((rc = store_begin(s, 1)) != BFDB_OK)
        return rc;
    if ((rc = exec_nv(s, "DELETE FROM buffdb_model_upload_part WHERE name ="
                         " ?1 AND version = ?2", name, version,
                      "could not replace an unfinished push")) != BFDB_OK)
        goto fail;
    if ((rc = prep(s, "INSERT OR REPLACE INTO buffdb_model_upload (name,"
                      " version, header, created, updated) VALUES (?1, ?2,"
                      " ?3, ?4, ?4)", &st)) != BFDB_OK)
        goto fail;
    bind_nv(st, name, version);
    sqlite3_bind_blob64(st, 3, hlen ? hdr : "", (sqlite3_uint64)hlen,
                        SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)time(NULL));
    if ((rc = step_done(s, st, "could not record a push")) != BFDB_OK)
        goto fail;
    return store_commit(s);
fail:
    store_rollback(s);
    return rc;
}

int
bfdb_model_upload_add(bfdb_store *s, const char *name, const char *version,
                      const struct bfdb_model_part *p)
{
    sqlite3_stmt *st;
    int rc;

    if ((rc = check_kind(s, BFDB_STORE_KV)) != BFDB_OK)
        return rc;
    if ((rc = store_begin(s, 1)) != BFDB_OK)
        return rc;
    if ((rc = prep(s, "INSERT OR REPLACE INTO buffdb_model_upload_part"
                      " (name, version, file, part, sha256, size) VALUES"
                      " (?1, ?2, ?3, ?4, ?5, ?6)", &st)) != BFDB_OK)
        goto fail;
    bind_nv(st, name, version);
    sqlite3_bind_int64(st, 3, p->file);
    sqlite3_bind_int64(st, 4, p->part);
    sqlite3_bind_blob(st, 5, p->sha, BFDB_SHA256_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, (sqlite3_int64)p->size);
    if ((rc = step_done(s, st, "could not record a pushed part")) != BFDB_OK)
        goto fail;
    if ((rc = prep(s, "UPDATE buffdb_model_upload SET updated = ?3 WHERE"
                      " name = ?1 AND version = ?2", &st)) != BFDB_OK)
        goto fail;
    bind_nv(st, name, version);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)time(NULL));
    if ((rc = step_done(s, st, "could not record a pushed part")) != BFDB_OK)
        goto fail;
    return store_commit(s);
fail:
    store_rollback(s);
    return rc;
}

int
bfdb_model_upload_drop(bfdb_store *s, const char *name, const char *version,
                       uint8_t (**shas)[BFDB_SHA256_LEN], size_t *n)
{
    int rc;

    if (shas) {
        *shas = NULL;
        *n = 0;
    }
    if ((rc = check_kind(s, BFDB_STORE_KV)) != BFDB_OK)
        return rc;
    if ((rc = store_begin(s, 1)) != BFDB_OK)
        return rc;
    if (shas) {
        if ((rc = shas_nv(s, "SELECT DISTINCT sha256 FROM"
                             " buffdb_model_upload_part WHERE name = ?1 AND"
                             " version = ?2", name, version, shas, n)) !=
            BFDB_OK)
            goto fail;
    }
    if ((rc = exec_nv(s, "DELETE FROM buffdb_model_upload_part WHERE name ="
                         " ?1 AND version = ?2", name, version,
                      "could not drop a push")) != BFDB_OK ||
        (rc = exec_nv(s, "DELETE FROM buffdb_model_upload WHERE name = ?1"
                         " AND version = ?2", name, version,
                      "could not drop a push")) != BFDB_OK)
        goto fail;
    if ((rc = store_commit(s)) == BFDB_OK)
        return BFDB_OK;
fail:
    store_rollback(s);
    if (shas) {
        free(*shas);
        *shas = NULL;
        *n = 0;
    }
    return rc;
}

int
bfdb_model_upload_expired(bfdb_store *s, int64_t before, char ***nv,
                          size_t *n)
{
    sqlite3_stmt *st;
    char **v = NULL;
    size_t cnt = 0, cap = 0;
    int rc;

    *nv = NULL;
    *n = 0;
    if ((rc = check_kind(s, BFDB_STORE_KV)) != BFDB_OK ||
        (rc = prep(s, "SELECT name, version FROM buffdb_model_upload WHERE"
                      " updated < ?1 ORDER BY updated", &st)) != BFDB_OK)
        return rc;
    sqlite3_bind_int64(st, 1, before);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (grow((void **)&v, cnt + 1, &cap, sizeof(*v)) != 0) {
            rc = SQLITE_NOMEM;
            break;
        }
        v[cnt++] = col_str(st, 0);
        v[cnt++] = col_str(st, 1);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        bfdb_model_strv_free(v, cnt);
        return store_fail(s, rc, "could not list unfinished pushes");
    }
    *nv = v;
    *n = cnt / 2;
    return BFDB_OK;
}

/* ---- kv side: the kv keys upstream clients read ------------------------------- */

static int
kv_put(bfdb_store *s, const char *key, const char *val, size_t vlen)
{
    sqlite3_stmt *st = store_stmt(s, ST_KV_SET);
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text64(st, 2, vlen ? val : "", (sqlite3_uint64)vlen,
                        SQLITE_STATIC, SQLITE_UTF8);
    int rc = store_exec_stmt(s, ST_KV_SET, "could not write a model key");
    return store_index_conflict(s, rc, key, strlen(key), val, vlen);
}

static int
kv_del(bfdb_store *s, const char *key)
{
    sqlite3_stmt *st = store_stmt(s, ST_KV_DELETE);
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    return store_exec_stmt(s, ST_KV_DELETE, "could not delete a model key");
}

/* write_index_key - model:<name>:index = JSON array of the versions, oldest
 * first (deleted when there are none) */
static int
write_index_key(bfdb_store *s, const char *name)
{
    sqlite3_stmt *st;
    char key[BFDB_MODEL_KEY_MAX];
    int rc;

    bfdb_model_key_index(key, sizeof(key), name);
    if ((rc = prep(s, "SELECT json_group_array(version), count(*) FROM"
                      " (SELECT version FROM buffdb_model_version WHERE"
                      " name = ?1 ORDER BY seq)", &st)) != BFDB_OK)
        return rc;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        rc = store_fail(s, rc, "could not list versions");
        sqlite3_finalize(st);
        return rc;
    }
    if (sqlite3_column_int64(st, 1) == 0)
        rc = kv_del(s, key);
    else
        rc = kv_put(s, key, (const char *)sqlite3_column_text(st, 0),
                    (size_t)sqlite3_column_bytes(st, 0));
    sqlite3_finalize(st);
    return rc;
}

/* key_len - what snprintf wrote, or cap - 1 if it cut (cap > 0) */
static size_t
key_len(int n, size_t cap)
{
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

size_t
bfdb_model_key_metadata(char *buf, size_t cap, const char *name,
                        const char *version)
{
    return key_len(snprintf(buf, cap, "model:%s:%s:metadata", name, version),
                   cap);
}

size_t
bfdb_model_key_index(char *buf, size_t cap, const char *name)
{
    return key_len(snprintf(buf, cap, "model:%s:index", name), cap);
}

size_t
bfdb_model_key_alias(char *buf, size_t cap, const char *name,
                     const char *alias)
{
    return key_len(snprintf(buf, cap, "model:%s:alias:%s", name, alias),
                   cap);
}

/* ---- kv side: versions ------------------------------------------------------- */

/* version_is - BFDB_OK if name:version exists (want 1) or does not (want
 * 0); otherwise BFDB_ENOTFOUND / BFDB_EEXIST saying so */
static int
version_is(bfdb_store *s, const char *name, const char *version, int want)
{
    sqlite3_stmt *st;
    int rc = prep(s, "SELECT 1 FROM buffdb_model_version WHERE name = ?1 AND"
                     " version = ?2", &st);

    if (rc != BFDB_OK)
        return rc;
    bind_nv(st, name, version);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return store_fail(s, rc, "could not look the version up");
    if ((rc == SQLITE_ROW) == want)
        return BFDB_OK;
    if (want)
        return store_failf(s, BFDB_ENOTFOUND, "model %s has no version %s",
                           name, version);
    return store_failf(s, BFDB_EEXIST, "model %s version %s already exists",
                       name, version);
}

int
bfdb_model_commit(bfdb_store *s, const char *name, const char *version,
                  const void *info, size_t ilen, const char *json,
                  size_t jlen)
{
    char key[BFDB_MODEL_KEY_MAX];
    sqlite3_stmt *st;
    int rc;

    if ((rc = check_kind(s, BFDB_STORE_KV)) != BFDB_OK)
        return rc;
    if ((rc = store_begin(s, 1)) != BFDB_OK)
        return rc;
    if ((rc = version_is(s, name, version, 0)) != BFDB_OK)
        goto fail;
    if ((rc = prep(s, "INSERT INTO buffdb_model_version (name, version, seq,"
                      " info, created) VALUES (?1, ?2, (SELECT coalesce("
                      "max(seq), 0) + 1 FROM buffdb_model_version), ?3, ?4)",
                   &st)) != BFDB_OK)
        goto fail;
    bind_nv(st, name, version);
    sqlite3_bind_blob64(st, 3, ilen ? info : "", (sqlite3_uint64)ilen,
                        SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)time(NULL));
    if ((rc = step_done(s, st, "could not record the version")) != BFDB_OK)
        goto fail;
    if ((rc = exec_nv(s, "INSERT INTO buffdb_model_ref (name, version, file,"
                         " part, sha256, size) SELECT name, version, file,"
                         " part, sha256, size FROM buffdb_model_upload_part"
                         " WHERE name = ?1 AND version = ?2", name, version,
                      "could not record the version's parts")) != BFDB_OK ||
        (rc = exec_nv(s, "DELETE FROM buffdb_model_upload_part WHERE name ="
                         " ?1 AND version = ?2", name, version,
                      "could not finish the push")) != BFDB_OK ||
        (rc = exec_nv(s, "DELETE FROM buffdb_model_upload WHERE name = ?1"
                         " AND version = ?2", name, version,
                      "could not finish the push")) != BFDB_OK)
        goto fail;
    bfdb_model_key_metadata(key, sizeof(key), name, version);
    if ((rc = kv_put(s, key, json, jlen)) != BFDB_OK ||
        (rc = write_index_key(s, name)) != BFDB_OK)
        goto fail;
    return store_commit(s);
fail:
    store_rollback(s);
    return rc;
}

int
bfdb_model_resolve(bfdb_store *s, const char *name, const char *version,
                   const char *alias, char **resolved)
{
    sqlite3_stmt *st;
    int rc;

    *resolved = NULL;
    if ((rc = check_kind(s, BFDB_STORE_KV)) != BFDB_OK)
        return rc;
    if (version && *version)
        rc = prep(s, "SELECT version FROM buffdb_model_version WHERE name ="
                     " ?1 AND version = ?2", &st);
    else if (alias && *alias)
        rc = prep(s, "SELECT a.version FROM buffdb_model_alias a JOIN"
                     " buffdb_model_version v ON v.name = a.name AND"
                     " v.version = a.version WHERE a.name = ?1 AND"
                     " a.alias = ?2", &st);
    else
        rc = prep(s, "SELECT version FROM buffdb_model_version WHERE name ="
                     " ?1 ORDER BY seq DESC LIMIT 1", &st);
    if (rc != BFDB_OK)
        return rc;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    if ((version && *version) || (alias && *alias))
        sqlite3_bind_text(st, 2, version && *version ? version : alias, -1,
                          SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *resolved = col_str(st, 0);
        rc = *resolved ? BFDB_OK
                       : store_failf(s, BFDB_ENOMEM, "out of memory");
    } else if (rc == SQLITE_DONE) {
        if (version && *version)
            rc = store_failf(s, BFDB_ENOTFOUND, "model %s has no version %s",
                             name, version);
        else if (alias && *alias)
            rc = store_failf(s, BFDB_ENOTFOUND, "model %s has no alias %s",
                             name, alias);
        else
            rc = store_failf(s, BFDB_ENOTFOUND, "no model named %s", name);
    } else {
        rc = store_fail(s, rc, "could not look the model up");
    }
    sqlite3_finalize(st);
    return rc;
}

int
bfdb_model_info(bfdb_store *s, const char *name, const char *version,
                void **info, size_t *ilen)
{
    sqlite3_stmt *st;
    int rc;

    *info = NULL;
    *ilen = 0;
    if ((rc = check_kind(s, BFDB_STORE_KV)) != BFDB_OK ||
        (rc = prep(s, "SELECT info FROM buffdb_model_version WHERE name = ?1"
                      " AND version = ?2", &st)) != BFDB_OK)
        return rc;
    bind_nv(st, name, version);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *info = col_blob(st, 0, ilen);
        rc = *info ? BFDB_OK : store_failf(s, BFDB_ENOMEM, "out of memory");
    } else if (rc == SQLITE_DONE) {
        rc = store_failf(s, BFDB_ENOTFOUND, "model %s has no version %s",
                         name, version);
    } else {
        rc = store_fail(s, rc, "could not read the version");
    }
    sqlite3_finalize(st);
    return rc;
}

int
bfdb_model_parts(bfdb_store *s, const char *name, const char *version,
                 struct bfdb_model_part **parts, size_t *n)
{
    sqlite3_stmt *st;
    int rc;

    *parts = NULL;
    *n = 0;
    if ((rc = check_kind(s, BFDB_STORE_KV)) != BFDB_OK ||
        (rc = prep(s, "SELECT file, part, sha256, size FROM buffdb_model_ref"
                      " WHERE name = ?1 AND version = ?2 ORDER BY file, part",
                   &st)) != BFDB_OK)
        return rc;
    bind_nv(st, name, version);
    return collect_parts(s, st, parts, n);
}

/* collect_strs - columns 0 (and 1 if out2) of st's rows as strings */
static int
collect_strs(bfdb_store *s, sqlite3_stmt *st, char ***out1, char ***out2,
             size_t *n)
{
    char **a = NULL, **b = NULL;
    size_t cnt = 0, cap1 = 0, cap2 = 0;
    int rc;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (grow((void **)&a, cnt, &cap1, sizeof(*a)) != 0 ||
            (out2 && grow((void **)&b, cnt, &cap2, sizeof(*b)) != 0)) {
            rc = SQLITE_NOMEM;
            break;
        }
        a[cnt] = col_str(st, 0);
        if (out2)
            b[cnt] = col_str(st, 1);
        cnt++;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        bfdb_model_strv_free(a, cnt);
        bfdb_model_strv_free(b, out2 ? cnt : 0);
        return store_fail(s, rc, "could not read model names");
    }
    *out1 = a;
    if (out2)
        *out2 = b;
    *n = cnt;
    return BFDB_OK;
}

int
bfdb_model_aliases(bfdb_store *s, const char *name, const char *version,
                   char ***aliases, char ***versions, size_t *n)
{
    sqlite3_stmt *st;
    int rc;

    *aliases = *versions = NULL;
    *n = 0;
    if ((rc = check_kind(s, BFDB_STORE_KV)) != BFDB_OK ||
        (rc = prep(s, "SELECT alias, version FROM buffdb_model_alias WHERE"
                      " name = ?1 AND (?2 IS NULL OR version = ?2) ORDER BY"
                      " alias", &st)) != BFDB_OK)
        return rc;
    bind_nv(st, name, version);
    return collect_strs(s, st, aliases, versions, n);
}

int
bfdb_model_names(bfdb_store *s, char ***names, size_t *n)
{
    sqlite3_stmt *st;
    int rc;

    *names = NULL;
    *n = 0;
    if ((rc = check_kind(s, BFDB_STORE_KV)) != BFDB_OK ||
        (rc = prep(s, "SELECT DISTINCT name FROM buffdb_model_version ORDER"
                      " BY name", &st)) != BFDB_OK)
        return rc;
    return collect_strs(s, st, names, NULL, n);
}

int
bfdb_model_versions(bfdb_store *s, const char *name, char ***versions,
                    void ***infos, size_t **ilens, size_t *n)
{
    sqlite3_stmt *st;
    char **v = NULL;
    void **inf = NULL;
    size_t *lens = NULL, cnt = 0, c1 = 0, c2 = 0, c3 = 0;
    int rc;

    *versions = NULL;
    *infos = NULL;
    *ilens = NULL;
    *n = 0;
    if ((rc = check_kind(s, BFDB_STORE_KV)) != BFDB_OK ||
        (rc = prep(s, "SELECT version, info FROM buffdb_model_version WHERE"
                      " name = ?1 ORDER BY seq", &st)) != BFDB_OK)
        return rc;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (grow((void **)&v, cnt, &c1, sizeof(*v)) != 0 ||
            grow((void **)&inf, cnt, &c2, sizeof(*inf)) != 0 ||
            grow((void **)&lens, cnt, &c3, sizeof(*lens)) != 0) {
            rc = SQLITE_NOMEM;
            break;
        }
        v[cnt] = col_str(st, 0);
        inf[cnt] = col_blob(st, 1, &lens[cnt]);
        cnt++;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        bfdb_model_strv_free(v, cnt);
        bfdb_model_strv_free((char **)inf, cnt);
        free(lens);
        return store_fail(s, rc, "could not list versions");
    }
    *versions = v;
    *infos = inf;
    *ilens = lens;
    *n = cnt;
    return BFDB_OK;
}

int
bfdb_model_delete(bfdb_store *s, const char *name, const char *version,
                  int force, uint8_t (**shas)[BFDB_SHA256_LEN], size_t *n,
                  char ***removed, size_t *nremoved)
{
    char key[BFDB_MODEL_KEY_MAX];
    char **al = NULL, **av = NULL;
    size_t nal = 0;
    int rc;

    *shas = NULL;
    *n = 0;
    *removed = NULL;
    *nremoved = 0;
    if ((rc = check_kind(s, BFDB_STORE_KV)) != BFDB_OK)
        return rc;
    if ((rc = store_begin(s, 1)) != BFDB_OK)
        return rc;
    if ((rc = version_is(s, name, version, 1)) != BFDB_OK)
        goto fail;
    if ((rc = bfdb_model_aliases(s, name, version, &al, &av, &nal)) !=
        BFDB_OK)
        goto fail;
    if (nal > 0 && !force) {
        rc = store_failf(s, BFDB_EPRECOND, "alias %s of model %s names "
                         "version %s: move the alias first, or force",
                         al[0], name, version);
        goto fail;
    }
    for (size_t i = 0; i < nal; i++) {
        bfdb_model_key_alias(key, sizeof(key), name, al[i]);
        if ((rc = kv_del(s, key)) != BFDB_OK)
            goto fail;
    }
    if ((rc = shas_nv(s, "SELECT DISTINCT sha256 FROM buffdb_model_ref WHERE"
                         " name = ?1 AND version = ?2", name, version, shas,
                      n)) != BFDB_OK)
        goto fail;
    if ((rc = exec_nv(s, "DELETE FROM buffdb_model_alias WHERE name = ?1 AND"
                         " version = ?2", name, version,
                      "could not drop aliases")) != BFDB_OK ||
        (rc = exec_nv(s, "DELETE FROM buffdb_model_ref WHERE name = ?1 AND"
                         " version = ?2", name, version,
                      "could not drop the version's parts")) != BFDB_OK ||
        (rc = exec_nv(s, "DELETE FROM buffdb_model_version WHERE name = ?1"
                         " AND version = ?2", name, version,
                      "could not drop the version")) != BFDB_OK)
        goto fail;
    bfdb_model_key_metadata(key, sizeof(key), name, version);
    if ((rc = kv_del(s, key)) != BFDB_OK ||
        (rc = write_index_key(s, name)) != BFDB_OK)
        goto fail;
    if ((rc = store_commit(s)) != BFDB_OK)
        goto fail_committed;
    bfdb_model_strv_free(av, nal);
    *removed = al;
    *nremoved = nal;
    return BFDB_OK;
fail:
    store_rollback(s);
fail_committed:
    bfdb_model_strv_free(al, nal);
    bfdb_model_strv_free(av, nal);
    free(*shas);
    *shas = NULL;
    *n = 0;
    return rc;
}

int
bfdb_model_alias_set(bfdb_store *s, const char *name, const char *alias,
                     const char *version, char **previous)
{
    char key[BFDB_MODEL_KEY_MAX];
    sqlite3_stmt *st;
    int rc;

    *previous = NULL;
    if ((rc = check_kind(s, BFDB_STORE_KV)) != BFDB_OK)
        return rc;
    if ((rc = store_begin(s, 1)) != BFDB_OK)
        return rc;
    if ((rc = prep(s, "SELECT version FROM buffdb_model_alias WHERE name ="
                      " ?1 AND alias = ?2", &st)) != BFDB_OK)
        goto fail;
    bind_nv(st, name, alias);
    rc = sqlite3_step(st);
    *previous = rc == SQLITE_ROW ? col_str(st, 0) : strdup("");
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        rc = store_fail(s, rc, "could not read the alias");
        goto fail;
    }
    if (*previous == NULL) {
        rc = store_failf(s, BFDB_ENOMEM, "out of memory");
        goto fail;
    }
    bfdb_model_key_alias(key, sizeof(key), name, alias);
    if (version == NULL || *version == '\0') {
        if ((rc = exec_nv(s, "DELETE FROM buffdb_model_alias WHERE name = ?1"
                             " AND alias = ?2", name, alias,
                          "could not remove the alias")) != BFDB_OK ||
            (rc = kv_del(s, key)) != BFDB_OK)
            goto fail;
        return store_commit(s);
    }
    if ((rc = version_is(s, name, version, 1)) != BFDB_OK)
        goto fail;
    if ((rc = prep(s, "INSERT INTO buffdb_model_alias (name, alias, version)"
                      " VALUES (?1, ?2, ?3) ON CONFLICT (name, alias) DO"
                      " UPDATE SET version = excluded.version", &st)) !=
        BFDB_OK)
        goto fail;
    bind_nv(st, name, alias);
    sqlite3_bind_text(st, 3, version, -1, SQLITE_STATIC);
    if ((rc = step_done(s, st, "could not set the alias")) != BFDB_OK ||
        (rc = kv_put(s, key, version, strlen(version))) != BFDB_OK)
        goto fail;
    return store_commit(s);
fail:
    store_rollback(s);
    free(*previous);
    *previous = NULL;
    return rc;
}

int
bfdb_model_sha_used(bfdb_store *s, const uint8_t sha[BFDB_SHA256_LEN])
{
    sqlite3_stmt *st;
    int rc;

    if ((rc = check_kind(s, BFDB_STORE_KV)) != BFDB_OK ||
        (rc = prep(s, "SELECT EXISTS (SELECT 1 FROM buffdb_model_ref WHERE"
                      " sha256 = ?1) OR EXISTS (SELECT 1 FROM"
                      " buffdb_model_upload_part WHERE sha256 = ?1)", &st)) !=
            BFDB_OK)
        return rc;
    sqlite3_bind_blob(st, 1, sha, BFDB_SHA256_LEN, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        rc = sqlite3_column_int(st, 0) ? 1 : 0;
    else
        rc = store_fail(s, rc, "could not check a model part");
    sqlite3_finalize(st);
    return rc;
}
