/*
 * blob.c - the blob store: ids, the update matrix, streamed reads/writes
 *
 * A blob's data lives in blob.data when it is at most blob_inline_max
 * bytes (every blob a gRPC message can carry, and every upstream blob);
 * a larger one has blob.data NULL and its bytes in buffdb_blob_part rows
 * of blob_part_size bytes, in seq order.  Either way it is written and
 * read with SQLite's incremental blob I/O, a chunk at a time, so a 1 GiB
 * blob never sits in memory.  A new blob's id is one past the larger of
 * the highest id present and the id floor (see store.c), chosen and
 * inserted under the write lock (BEGIN IMMEDIATE).
 */
#include "config.h"

#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

enum reader_mode { R_INLINE, R_PARTS, R_MEM };

struct part {
    sqlite3_int64 rowid;
    uint64_t len;
};

struct bfdb_blob_reader {
    bfdb_store *s;
    int mode;
    sqlite3_blob *h;       /* the open value: blob.data or the current part */
    uint64_t size, pos;
    struct part *parts;    /* R_PARTS */
    size_t nparts, cur;
    uint64_t part_pos;
    unsigned char *mem;    /* R_MEM: a non-blob value read as bytes */
};

struct bfdb_blob_writer {
    bfdb_store *s;
    uint64_t id;
    sqlite3_blob *h;
    uint64_t size, pos;
    struct part *parts;    /* empty when the data is inline */
    size_t nparts, cur;
    uint64_t part_pos;
};

static int
blob_check(bfdb_store *s)
{
    if (s->kind != BFDB_STORE_BLOB)
        return store_failf(s, BFDB_EINVAL, "%s is not a blob store", s->path);
    return store_check_free(s);
}

static int
blob_check_id(bfdb_store *s, uint64_t id)
{
    if (id > BFDB_BLOB_ID_MAX)
        return store_failf(s, BFDB_EINVAL,
                           "blob id %" PRIu64 " is out of range (ids run "
                           "from 1 to %" PRIu64 ")", id, BFDB_BLOB_ID_MAX);
    return BFDB_OK;
}

static int
bind_meta(sqlite3_stmt *st, int i, const char *meta, size_t mlen)
{
    if (meta == NULL)
        return sqlite3_bind_null(st, i);
    return sqlite3_bind_text64(st, i, mlen ? meta : "", (sqlite3_uint64)mlen,
                               SQLITE_STATIC, SQLITE_UTF8);
}

static int
copy_meta(bfdb_store *s, sqlite3_stmt *st, int col, char **meta, size_t *mlen)
{
    *meta = NULL;
    *mlen = 0;
    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        return BFDB_OK;
    const unsigned char *t = sqlite3_column_text(st, col);
    size_t n = (size_t)sqlite3_column_bytes(st, col);
    char *c = malloc(n + 1);
    if (c == NULL)
        return store_failf(s, BFDB_ENOMEM, "out of memory for metadata");
    if (n)
        memcpy(c, t, n);
    c[n] = '\0';
    *meta = c;
    *mlen = n;
    return BFDB_OK;
}

/* ---- reader ------------------------------------------------------------ */

static int
load_parts(bfdb_store *s, uint64_t id, struct part **out, size_t *n,
           uint64_t *total)
{
    sqlite3_stmt *st = store_stmt(s, ST_PART_LIST);
    struct part *p = NULL;
    size_t cnt = 0, cap = 0;
    int rc;

    *total = 0;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            struct part *np = realloc(p, cap * sizeof(*p));
            if (np == NULL) {
                free(p);
                sqlite3_reset(st);
                return store_failf(s, BFDB_ENOMEM, "out of memory");
            }
            p = np;
        }
        p[cnt].rowid = sqlite3_column_int64(st, 0);
        p[cnt].len = (uint64_t)sqlite3_column_int64(st, 1);
        *total += p[cnt].len;
        cnt++;
    }
    if (rc != SQLITE_DONE) {
        rc = store_fail(s, rc, "could not list blob parts");
        sqlite3_reset(st);
        free(p);
        return rc;
    }
    sqlite3_reset(st);
    *out = p;
    *n = cnt;
    return BFDB_OK;
}

static int
read_as_bytes(bfdb_store *s, uint64_t id, unsigned char **mem, uint64_t *size)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(s->db,
                                "SELECT CAST(data AS BLOB) FROM blob"
                                " WHERE rowid = ?1", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return store_fail(s, rc, "could not read blob");
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        rc = store_fail(s, rc, "could not read blob");
        sqlite3_finalize(st);
        return rc;
    }
    size_t n = (size_t)sqlite3_column_bytes(st, 0);
    *mem = malloc(n + 1);
    if (*mem == NULL) {
        sqlite3_finalize(st);
        return store_failf(s, BFDB_ENOMEM, "out of memory");
    }
    if (n)
        memcpy(*mem, sqlite3_column_blob(st, 0), n);
    *size = n;
    sqlite3_finalize(st);
    return BFDB_OK;
}

int
bfdb_blob_reader_open(bfdb_store *s, uint64_t id, bfdb_blob_reader **out,
                      uint64_t *size, char **meta, size_t *mlen)
{
    bfdb_blob_reader *r;
    int rc;

    *out = NULL;
    if (meta) {
        *meta = NULL;
        *mlen = 0;
    }
    if ((rc = blob_check(s)) != BFDB_OK || (rc = blob_check_id(s, id)) != 0)
        return rc;
    if ((rc = store_begin(s, 0)) != BFDB_OK)
        return rc;

    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        store_rollback(s);
        return store_failf(s, BFDB_ENOMEM, "out of memory");
    }
    r->s = s;

    /* a transaction between its blob step and its commit point has put
     * its blobs in place but kept their before-images: until it commits,
     * everyone else still reads those (so nobody reads a blob that a
     * crash would take back, and after the commit point no kv value of
     * it names a blob that reads as missing) */
    sqlite3_stmt *st = store_stmt(s, ST_BLOB_UNDO);
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && s->txn_committed != NULL &&
        s->txn_committed(s->txn_arg, (uint64_t)sqlite3_column_int64(st, 5)))
        rc = SQLITE_DONE; /* past its commit point: the blob is current */
    if (rc == SQLITE_ROW) {
        int existed = sqlite3_column_int(st, 0);
        sqlite3_int64 urow = sqlite3_column_int64(st, 1);
        const char *utype = (const char *)sqlite3_column_text(st, 2);
        int is_blob = utype != NULL && strcmp(utype, "blob") == 0;
        if (!existed) {
            rc = store_failf(s, BFDB_ENOTFOUND, "blob %" PRIu64 " not found",
                             id);
            goto fail;
        }
        if (meta && (rc = copy_meta(s, st, 4, meta, mlen)) != BFDB_OK)
            goto fail;
        r->mode = R_INLINE;
        r->size = is_blob ? (uint64_t)sqlite3_column_int64(st, 3) : 0;
        sqlite3_reset(st);
        if (r->size > 0 &&
            (rc = sqlite3_blob_open(s->db, "main", "buffdb_txn_undo", "data",
                                    urow, 0, &r->h)) != SQLITE_OK) {
            rc = store_fail(s, rc, "could not open a before-image");
            goto fail;
        }
        s->busy = 1;
        *size = r->size;
        *out = r;
        return BFDB_OK;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        rc = store_fail(s, rc, "could not read blob");
        goto fail;
    }

    st = store_stmt(s, ST_BLOB_INFO);
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        rc = store_failf(s, BFDB_ENOTFOUND, "blob %" PRIu64 " not found", id);
        goto fail;
    }
    if (rc != SQLITE_ROW) {
        rc = store_fail(s, rc, "could not read blob");
        goto fail;
    }
    const char *type = (const char *)sqlite3_column_text(st, 0);
    int has_parts = sqlite3_column_int(st, 3);
    if (meta && (rc = copy_meta(s, st, 2, meta, mlen)) != BFDB_OK)
        goto fail;
    if (type && strcmp(type, "blob") == 0) {
        r->mode = R_INLINE;
        r->size = (uint64_t)sqlite3_column_int64(st, 1);
    } else if (type && strcmp(type, "null") == 0) {
        r->mode = R_PARTS;
    } else {
        r->mode = R_MEM;
    }
    sqlite3_reset(st);

    if (r->mode == R_INLINE && r->size > 0) {
        rc = sqlite3_blob_open(s->db, "main", "blob", "data",
                               (sqlite3_int64)id, 0, &r->h);
        if (rc != SQLITE_OK) {
            rc = store_fail(s, rc, "could not open blob data");
            goto fail;
        }
    } else if (r->mode == R_PARTS && has_parts) {
        rc = load_parts(s, id, &r->parts, &r->nparts, &r->size);
        if (rc != BFDB_OK)
            goto fail;
    } else if (r->mode == R_MEM) {
        if ((rc = read_as_bytes(s, id, &r->mem, &r->size)) != BFDB_OK)
            goto fail;
    }
    s->busy = 1;
    *size = r->size;
    *out = r;
    return BFDB_OK;

fail:
    sqlite3_reset(st);
    if (meta) {
        free(*meta);
        *meta = NULL;
    }
    free(r->parts);
    free(r->mem);
    free(r);
    store_rollback(s);
    return rc;
}

int
bfdb_blob_reader_read(bfdb_blob_reader *r, void *buf, size_t n, size_t *got)
{
    bfdb_store *s = r->s;
    int rc;

    *got = 0;
    if (n > INT_MAX)
        n = INT_MAX;
    if (r->pos >= r->size || n == 0)
        return BFDB_OK;
    if (n > r->size - r->pos)
        n = (size_t)(r->size - r->pos);

    switch (r->mode) {
    case R_MEM:
        memcpy(buf, r->mem + r->pos, n);
        break;
    case R_INLINE:
        rc = sqlite3_blob_read(r->h, buf, (int)n, (int)r->pos);
        if (rc != SQLITE_OK)
            return store_fail(s, rc, "could not read blob data");
        break;
    case R_PARTS:
        while (r->cur < r->nparts && r->part_pos >= r->parts[r->cur].len) {
            if (r->h) {
                sqlite3_blob_close(r->h);
                r->h = NULL;
            }
            r->cur++;
            r->part_pos = 0;
        }
        if (r->cur >= r->nparts)
            return store_failf(s, BFDB_ECORRUPT, "blob parts end early");
        if (r->h == NULL) {
            rc = sqlite3_blob_open(s->db, "main", "buffdb_blob_part", "data",
                                   r->parts[r->cur].rowid, 0, &r->h);
            if (rc != SQLITE_OK)
                return store_fail(s, rc, "could not open blob part");
        }
        if (n > r->parts[r->cur].len - r->part_pos)
            n = (size_t)(r->parts[r->cur].len - r->part_pos);
        rc = sqlite3_blob_read(r->h, buf, (int)n, (int)r->part_pos);
        if (rc != SQLITE_OK)
            return store_fail(s, rc, "could not read blob part");
        r->part_pos += n;
        break;
    }
    r->pos += n;
    *got = n;
    return BFDB_OK;
}

void
bfdb_blob_reader_close(bfdb_blob_reader *r)
{
    if (r == NULL)
        return;
    if (r->h)
        sqlite3_blob_close(r->h);
    r->s->busy = 0;
    store_rollback(r->s); /* a read transaction: nothing to keep */
    free(r->parts);
    free(r->mem);
    free(r);
}

/* ---- writer ------------------------------------------------------------ */

static int
writer_add_parts(bfdb_blob_writer *w)
{
    bfdb_store *s = w->s;
    uint64_t psize = s->blob_part_size;
    size_t n = (size_t)((w->size + psize - 1) / psize);

    w->parts = calloc(n ? n : 1, sizeof(*w->parts));
    if (w->parts == NULL)
        return store_failf(s, BFDB_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        uint64_t len = w->size - i * psize < psize ? w->size - i * psize
                                                   : psize;
        sqlite3_stmt *st = store_stmt(s, ST_PART_INSERT);
        sqlite3_bind_int64(st, 1, (sqlite3_int64)w->id);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)i);
        sqlite3_bind_zeroblob64(st, 3, len);
        int rc = store_exec_stmt(s, ST_PART_INSERT,
                                 "could not allocate a blob part");
        if (rc != BFDB_OK)
            return rc;
        w->parts[i].rowid = sqlite3_last_insert_rowid(s->db);
        w->parts[i].len = len;
    }
    w->nparts = n;
    return BFDB_OK;
}

int
bfdb_blob_writer_open(bfdb_store *s, uint64_t id, uint64_t size,
                      int set_meta, const char *meta, size_t mlen,
                      bfdb_blob_writer **out, uint64_t *id_out)
{
    bfdb_blob_writer *w;
    sqlite3_stmt *st;
    int rc, inline_data;

    *out = NULL;
    if ((rc = blob_check(s)) != BFDB_OK || (rc = blob_check_id(s, id)) != 0)
        return rc;
    if (size > (uint64_t)INT64_MAX)
        return store_failf(s, BFDB_ETOOBIG, "blob too large");
    if ((rc = store_begin(s, 1)) != BFDB_OK)
        return rc;
    w = calloc(1, sizeof(*w));
    if (w == NULL) {
        store_rollback(s);
        return store_failf(s, BFDB_ENOMEM, "out of memory");
    }
    w->s = s;
    w->size = size;
    inline_data = size <= s->blob_inline_max;

    if (id == 0) {
        st = store_stmt(s, ST_BLOB_NEXT_ID);
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW) {
            rc = store_fail(s, rc, "could not choose a blob id");
            sqlite3_reset(st);
            goto fail;
        }
        w->id = (uint64_t)sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        st = store_stmt(s, ST_BLOB_INSERT);
        sqlite3_bind_int64(st, 1, (sqlite3_int64)w->id);
        if (inline_data)
            sqlite3_bind_zeroblob64(st, 2, size);
        if (set_meta)
            bind_meta(st, 3, meta, mlen);
        rc = store_exec_stmt(s, ST_BLOB_INSERT, "could not store blob");
        if (rc != BFDB_OK)
            goto fail;
    } else {
        w->id = id;
        st = store_stmt(s, ST_BLOB_EXISTS);
        sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc == SQLITE_DONE) {
            rc = store_failf(s, BFDB_ENOTFOUND, "blob %" PRIu64 " not found",
                             id);
            goto fail;
        }
        if (rc != SQLITE_ROW) {
            rc = store_fail(s, rc, "could not find blob");
            goto fail;
        }
        st = store_stmt(s, ST_PART_CLEAR);
        sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
        if ((rc = store_exec_stmt(s, ST_PART_CLEAR,
                                  "could not clear blob parts")) != BFDB_OK)
            goto fail;
        int which = set_meta ? ST_BLOB_SET_BOTH : ST_BLOB_SET_DATA;
        st = store_stmt(s, which);
        sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
        if (inline_data)
            sqlite3_bind_zeroblob64(st, 2, size);
        if (set_meta)
            bind_meta(st, 3, meta, mlen);
        if ((rc = store_exec_stmt(s, which, "could not update blob")) !=
            BFDB_OK)
            goto fail;
    }

    if (!inline_data) {
        if ((rc = writer_add_parts(w)) != BFDB_OK)
            goto fail;
    } else if (size > 0) {
        rc = sqlite3_blob_open(s->db, "main", "blob", "data",
                               (sqlite3_int64)w->id, 1, &w->h);
        if (rc != SQLITE_OK) {
            rc = store_fail(s, rc, "could not open blob for writing");
            goto fail;
        }
    }
    s->busy = 1;
    if (id_out)
        *id_out = w->id;
    *out = w;
    return BFDB_OK;

fail:
    store_rollback(s);
    free(w->parts);
    free(w);
    return rc;
}

int
bfdb_blob_writer_write(bfdb_blob_writer *w, const void *buf, size_t n)
{
    bfdb_store *s = w->s;
    const unsigned char *p = buf;
    int rc;

    if (n > w->size - w->pos)
        return store_failf(s, BFDB_EINVAL,
                           "blob write past its declared size of %" PRIu64
                           " bytes", w->size);
    while (n > 0) {
        size_t chunk = n > INT_MAX ? INT_MAX : n;
        if (w->nparts == 0) {
            rc = sqlite3_blob_write(w->h, p, (int)chunk, (int)w->pos);
            if (rc != SQLITE_OK)
                return store_fail(s, rc, "could not write blob data");
        } else {
            if (w->part_pos >= w->parts[w->cur].len) {
                sqlite3_blob_close(w->h);
                w->h = NULL;
                w->cur++;
                w->part_pos = 0;
            }
            if (w->h == NULL) {
                rc = sqlite3_blob_open(s->db, "main", "buffdb_blob_part",
                                       "data", w->parts[w->cur].rowid, 1,
                                       &w->h);
                if (rc != SQLITE_OK)
                    return store_fail(s, rc, "could not open blob part");
            }
            if (chunk > w->parts[w->cur].len - w->part_pos)
                chunk = (size_t)(w->parts[w->cur].len - w->part_pos);
            rc = sqlite3_blob_write(w->h, p, (int)chunk, (int)w->part_pos);
            if (rc != SQLITE_OK)
                return store_fail(s, rc, "could not write blob part");
            w->part_pos += chunk;
        }
        w->pos += chunk;
        p += chunk;
        n -= chunk;
    }
    return BFDB_OK;
}

static void
writer_free(bfdb_blob_writer *w)
{
    w->s->busy = 0;
    free(w->parts);
    free(w);
}

int
bfdb_blob_writer_commit(bfdb_blob_writer *w)
{
    bfdb_store *s = w->s;
    int rc = BFDB_OK;

    if (w->pos != w->size) {
        rc = store_failf(s, BFDB_EINVAL,
                         "blob ended after %" PRIu64 " of %" PRIu64 " bytes",
                         w->pos, w->size);
        bfdb_blob_writer_abort(w);
        return rc;
    }
    if (w->h != NULL) {
        int brc = sqlite3_blob_close(w->h);
        w->h = NULL;
        if (brc != SQLITE_OK) {
            rc = store_fail(s, brc, "could not finish writing blob");
            store_rollback(s);
            writer_free(w);
            return rc;
        }
    }
    rc = store_commit(s);
    writer_free(w);
    return rc;
}

void
bfdb_blob_writer_abort(bfdb_blob_writer *w)
{
    if (w == NULL)
        return;
    if (w->h != NULL)
        sqlite3_blob_close(w->h);
    store_rollback(w->s);
    writer_free(w);
}

/* ---- whole-blob calls -------------------------------------------------- */

int
bfdb_blob_get(bfdb_store *s, uint64_t id, size_t max_len, void **data,
              size_t *len, char **meta, size_t *mlen)
{
    bfdb_blob_reader *r;
    uint64_t size;
    int rc;

    *data = NULL;
    *len = 0;
    rc = bfdb_blob_reader_open(s, id, &r, &size, meta, mlen);
    if (rc != BFDB_OK)
        return rc;
    if (size > max_len) {
        bfdb_blob_reader_close(r);
        if (meta) {
            free(*meta);
            *meta = NULL;
        }
        return store_failf(s, BFDB_ETOOBIG,
                           "blob %" PRIu64 " is %" PRIu64 " bytes, more than "
                           "the %zu allowed", id, size, max_len);
    }
    unsigned char *buf = malloc((size_t)size + 1);
    if (buf == NULL) {
        rc = store_failf(s, BFDB_ENOMEM, "out of memory for a %" PRIu64
                         "-byte blob", size);
        goto fail;
    }
    size_t done = 0, got;
    while (done < size) {
        rc = bfdb_blob_reader_read(r, buf + done, (size_t)size - done, &got);
        if (rc != BFDB_OK)
            goto fail;
        if (got == 0) {
            rc = store_failf(s, BFDB_ECORRUPT, "blob %" PRIu64 " is short",
                             id);
            goto fail;
        }
        done += got;
    }
    buf[size] = 0;
    bfdb_blob_reader_close(r);
    *data = buf;
    *len = (size_t)size;
    return BFDB_OK;

fail:
    free(buf);
    bfdb_blob_reader_close(r);
    if (meta) {
        free(*meta);
        *meta = NULL;
    }
    return rc;
}

int
bfdb_blob_store(bfdb_store *s, const void *data, size_t len, const char *meta,
                size_t mlen, uint64_t *id)
{
    bfdb_blob_writer *w;
    int rc = bfdb_blob_writer_open(s, 0, len, 1, meta, mlen, &w, id);

    if (rc != BFDB_OK)
        return rc;
    if ((rc = bfdb_blob_writer_write(w, data, len)) != BFDB_OK) {
        bfdb_blob_writer_abort(w);
        return rc;
    }
    return bfdb_blob_writer_commit(w);
}

int
bfdb_blob_update(bfdb_store *s, uint64_t id, int has_data, const void *data,
                 size_t len, int update_meta, const char *meta, size_t mlen,
                 int *updated)
{
    sqlite3_stmt *st;
    int rc;

    if (updated)
        *updated = 0;
    if ((rc = blob_check(s)) != BFDB_OK || (rc = blob_check_id(s, id)) != 0)
        return rc;
    if (id == 0) /* no blob has id 0; the writer would store a new blob */
        return BFDB_OK;
    if (has_data) {
        bfdb_blob_writer *w;
        rc = bfdb_blob_writer_open(s, id, len, update_meta, meta, mlen, &w,
                                   NULL);
        if (rc == BFDB_ENOTFOUND)
            return BFDB_OK;
        if (rc != BFDB_OK)
            return rc;
        if ((rc = bfdb_blob_writer_write(w, data, len)) != BFDB_OK) {
            bfdb_blob_writer_abort(w);
            return rc;
        }
        if ((rc = bfdb_blob_writer_commit(w)) == BFDB_OK && updated)
            *updated = 1;
        return rc;
    }
    if (update_meta) {
        st = store_stmt(s, ST_BLOB_SET_META);
        sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
        bind_meta(st, 2, meta, mlen);
        rc = store_exec_stmt(s, ST_BLOB_SET_META,
                             "could not update blob metadata");
        if (rc == BFDB_OK && updated)
            *updated = sqlite3_changes(s->db) > 0;
        return rc;
    }
    /* neither: nothing changes; say whether the blob exists */
    st = store_stmt(s, ST_BLOB_EXISTS);
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return store_fail(s, rc, "could not find blob");
    if (updated)
        *updated = rc == SQLITE_ROW;
    return BFDB_OK;
}

int
bfdb_blob_delete(bfdb_store *s, uint64_t id, int *deleted)
{
    int rc;

    if (deleted)
        *deleted = 0;
    if ((rc = blob_check(s)) != BFDB_OK || (rc = blob_check_id(s, id)) != 0)
        return rc;
    sqlite3_stmt *st = store_stmt(s, ST_BLOB_DELETE);
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    if ((rc = store_exec_stmt(s, ST_BLOB_DELETE, "could not delete blob")) !=
        BFDB_OK)
        return rc;
    if (deleted)
        *deleted = sqlite3_changes(s->db) > 0;
    return BFDB_OK;
}

int
bfdb_blob_digest(bfdb_store *s, uint64_t id, uint8_t digest[BFDB_DIGEST_LEN])
{
    enum { CHUNK = 1 << 20 };
    bfdb_blob_reader *r;
    uint64_t size;
    size_t got;
    int rc;

    if ((rc = bfdb_blob_reader_open(s, id, &r, &size, NULL, NULL)) != 0)
        return rc;
    unsigned char *buf = malloc(CHUNK);
    if (buf == NULL) {
        bfdb_blob_reader_close(r);
        return store_failf(s, BFDB_ENOMEM, "out of memory");
    }
    bfdb_sha256 *h = bfdb_sha256_new();
    for (;;) {
        if ((rc = bfdb_blob_reader_read(r, buf, CHUNK, &got)) != BFDB_OK)
            break;
        if (got == 0)
            break;
        bfdb_sha256_update(h, buf, got);
    }
    if (rc == BFDB_OK)
        bfdb_sha256_final(h, digest);
    bfdb_sha256_free(h);
    free(buf);
    bfdb_blob_reader_close(r);
    return rc;
}
