/*
 * store.c - opening store files, their schema, errors and transactions
 *
 * Used by every process that touches a store: the master (to create and
 * migrate the files before forking), each worker (after fork), the CLI.
 * One bfdb_store per SQLite connection; no locking of its own: SQLite's
 * file locks (WAL mode) order the processes, the busy timeout makes a
 * writer wait for another instead of failing at once.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/util.h"
#include "store/store_int.h"

/* ---- schema ------------------------------------------------------------ */

/*
 * The kv table and the blob table are upstream BuffDB's, unchanged, so a
 * file either program created works with both.  buffdb adds:
 *   buffdb_meta        name/value pairs: the store kind, schema version and
 *                      (blob) the id floor: no id at or below it is given
 *                      out again, which is how ids are never reused
 *   buffdb_blob_part   the data of blobs too large for one SQLite value
 *                      (SQLite caps a value near 1e9 bytes), in parts
 *   triggers           keep the floor and the parts right whatever deletes
 *                      or inserts rows, raw SQL included
 */
static const char schema_kv[] =
    "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT);"
    "CREATE TABLE IF NOT EXISTS buffdb_meta (name TEXT PRIMARY KEY, value);"
    "INSERT OR IGNORE INTO buffdb_meta VALUES ('kind', 'kv');"
    "INSERT OR IGNORE INTO buffdb_meta VALUES ('schema_version', 1);"
    /* transactions: staged writes, and the commit marker of a transaction
     * that also wrote blobs (see txn.c) */
    "CREATE TABLE IF NOT EXISTS buffdb_txn_kv ("
    "  txn INTEGER NOT NULL, seq INTEGER NOT NULL, op INTEGER NOT NULL,"
    "  key TEXT NOT NULL, value TEXT, PRIMARY KEY (txn, seq));"
    "CREATE INDEX IF NOT EXISTS buffdb_txn_kv_key"
    "  ON buffdb_txn_kv (txn, key, seq);"
    "CREATE TABLE IF NOT EXISTS buffdb_txn_done (txn INTEGER PRIMARY KEY);"
    /* secondary index definitions; entries and triggers: index.c */
    "CREATE TABLE IF NOT EXISTS buffdb_index ("
    "  id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
    "  type INTEGER NOT NULL, uniq INTEGER NOT NULL,"
    "  key_prefix BLOB NOT NULL, json_path TEXT NOT NULL,"
    "  value_type INTEGER NOT NULL, created INTEGER NOT NULL);"
    /* models: see model.c */
    "CREATE TABLE IF NOT EXISTS buffdb_model_version ("
    "  name TEXT NOT NULL, version TEXT NOT NULL, seq INTEGER NOT NULL,"
    "  info BLOB NOT NULL, created INTEGER NOT NULL,"
    "  PRIMARY KEY (name, version));"
    "CREATE TABLE IF NOT EXISTS buffdb_model_ref ("
    "  name TEXT NOT NULL, version TEXT NOT NULL, file INTEGER NOT NULL,"
    "  part INTEGER NOT NULL, sha256 BLOB NOT NULL, size INTEGER NOT NULL,"
    "  PRIMARY KEY (name, version, file, part));"
    "CREATE INDEX IF NOT EXISTS buffdb_model_ref_sha"
    "  ON buffdb_model_ref (sha256);"
    "CREATE TABLE IF NOT EXISTS buffdb_model_alias ("
    "  name TEXT NOT NULL, alias TEXT NOT NULL, version TEXT NOT NULL,"
    "  PRIMARY KEY (name, alias));"
    "CREATE TABLE IF NOT EXISTS buffdb_model_upload ("
    "  name TEXT NOT NULL, version TEXT NOT NULL, header BLOB NOT NULL,"
    "  created INTEGER NOT NULL, updated INTEGER NOT NULL,"
    "  PRIMARY KEY (name, version));"
    "CREATE TABLE IF NOT EXISTS buffdb_model_upload_part ("
    "  name TEXT NOT NULL, version TEXT NOT NULL, file INTEGER NOT NULL,"
    "  part INTEGER NOT NULL, sha256 BLOB NOT NULL, size INTEGER NOT NULL,"
    "  PRIMARY KEY (name, version, file, part));"
    "CREATE INDEX IF NOT EXISTS buffdb_model_upload_part_sha"
    "  ON buffdb_model_upload_part (sha256);";

static const char schema_blob[] =
    "CREATE TABLE IF NOT EXISTS blob (data BLOB, metadata TEXT);"
    "CREATE TABLE IF NOT EXISTS buffdb_meta (name TEXT PRIMARY KEY, value);"
    "INSERT OR IGNORE INTO buffdb_meta VALUES ('kind', 'blob');"
    "INSERT OR IGNORE INTO buffdb_meta VALUES ('schema_version', 1);"
    "INSERT OR IGNORE INTO buffdb_meta VALUES ('blob_id_floor', 0);"
    /* ids handed to transactions before their blobs exist */
    "INSERT OR IGNORE INTO buffdb_meta VALUES ('blob_id_reserved', 0);"
    /* 1 only inside buffdb's own transaction that puts rows back at their
     * ids (a commit, an undo); never seen by other connections */
    "INSERT OR IGNORE INTO buffdb_meta VALUES ('restoring', 0);"
    "CREATE TABLE IF NOT EXISTS buffdb_txn_blob ("
    "  txn INTEGER NOT NULL, seq INTEGER NOT NULL, op INTEGER NOT NULL,"
    "  id INTEGER NOT NULL, has_data INTEGER NOT NULL, data BLOB,"
    "  update_meta INTEGER NOT NULL, metadata TEXT, PRIMARY KEY (txn, seq));"
    "CREATE INDEX IF NOT EXISTS buffdb_txn_blob_id"
    "  ON buffdb_txn_blob (txn, id, seq);"
    "CREATE TABLE IF NOT EXISTS buffdb_txn_undo ("
    "  txn INTEGER NOT NULL, id INTEGER NOT NULL, existed INTEGER NOT NULL,"
    "  data BLOB, metadata TEXT, PRIMARY KEY (txn, id));"
    "CREATE INDEX IF NOT EXISTS buffdb_txn_undo_id ON buffdb_txn_undo (id);"
    "CREATE TABLE IF NOT EXISTS buffdb_txn_prepared (txn INTEGER PRIMARY KEY);"
    "CREATE TABLE IF NOT EXISTS buffdb_blob_part ("
    "  blob_id INTEGER NOT NULL, seq INTEGER NOT NULL, data BLOB NOT NULL,"
    "  PRIMARY KEY (blob_id, seq));"
    /* a deleted id raises the floor and takes its parts with it */
    "CREATE TRIGGER IF NOT EXISTS buffdb_blob_deleted AFTER DELETE ON blob "
    "BEGIN"
    "  UPDATE buffdb_meta SET value = max(value, OLD.rowid)"
    "   WHERE name = 'blob_id_floor';"
    "  DELETE FROM buffdb_blob_part WHERE blob_id = OLD.rowid;"
    "END;"
    /* a row renumbered by raw SQL keeps its parts; its old id is spent */
    "CREATE TRIGGER IF NOT EXISTS buffdb_blob_renumbered AFTER UPDATE ON blob "
    "WHEN OLD.rowid != NEW.rowid BEGIN"
    "  UPDATE buffdb_meta SET value = max(value, OLD.rowid)"
    "   WHERE name = 'blob_id_floor';"
    "  UPDATE buffdb_blob_part SET blob_id = NEW.rowid"
    "   WHERE blob_id = OLD.rowid;"
    "END;"
    /* raw SQL inserting at a spent id (SQLite picks max(rowid)+1, which is
     * spent if the highest blob was deleted): move the row past the floor.
     * (Version 1 of this trigger did not know 'restoring'.) */
    "DROP TRIGGER IF EXISTS buffdb_blob_inserted;"
    "CREATE TRIGGER IF NOT EXISTS buffdb_blob_inserted_v2 AFTER INSERT ON "
    "blob WHEN NEW.rowid <= (SELECT value FROM buffdb_meta"
    "                        WHERE name = 'blob_id_floor')"
    " AND coalesce((SELECT value FROM buffdb_meta"
    "               WHERE name = 'restoring'), 0) = 0 BEGIN"
    "  UPDATE blob SET rowid = (SELECT max((SELECT max(rowid) FROM blob),"
    "      (SELECT value FROM buffdb_meta WHERE name = 'blob_id_floor')) + 1)"
    "   WHERE rowid = NEW.rowid;"
    "END;"
    /* model parts: one blob per distinct SHA-256 (model.c); a part whose
     * blob is deleted (Blob.Delete, raw SQL) stops being offered */
    "CREATE TABLE IF NOT EXISTS buffdb_model_part ("
    "  sha256 BLOB PRIMARY KEY, blob_id INTEGER NOT NULL UNIQUE,"
    "  size INTEGER NOT NULL);"
    "CREATE TRIGGER IF NOT EXISTS buffdb_model_part_gone AFTER DELETE ON blob "
    "BEGIN"
    "  DELETE FROM buffdb_model_part WHERE blob_id = OLD.rowid;"
    "END;"
    "CREATE TRIGGER IF NOT EXISTS buffdb_model_part_moved AFTER UPDATE ON blob"
    " WHEN OLD.rowid != NEW.rowid BEGIN"
    "  UPDATE buffdb_model_part SET blob_id = NEW.rowid"
    "   WHERE blob_id = OLD.rowid;"
    "END;";

static const struct {
    int kind; /* -1: both */
    const char *sql;
} stmt_sql[ST__COUNT] = {
    [ST_KV_GET] = {BFDB_STORE_KV, "SELECT value FROM kv WHERE key = ?1"},
    [ST_KV_SET] = {BFDB_STORE_KV,
                   "INSERT INTO kv (key, value) VALUES (?1, ?2) "
                   "ON CONFLICT (key) DO UPDATE SET value = excluded.value"},
    [ST_KV_DELETE] = {BFDB_STORE_KV, "DELETE FROM kv WHERE key = ?1"},
    [ST_BLOB_INFO] = {BFDB_STORE_BLOB,
                      "SELECT typeof(data), length(data), metadata,"
                      " EXISTS (SELECT 1 FROM buffdb_blob_part"
                      "         WHERE blob_id = ?1)"
                      " FROM blob WHERE rowid = ?1"},
    [ST_BLOB_UNDO] = {BFDB_STORE_BLOB,
                      "SELECT existed, rowid, typeof(data), length(data),"
                      " metadata, txn FROM buffdb_txn_undo WHERE id = ?1"
                      " LIMIT 1"},
    [ST_BLOB_NEXT_ID] = {BFDB_STORE_BLOB,
                         "SELECT max(coalesce((SELECT max(rowid) FROM blob),"
                         " 0), coalesce((SELECT value FROM buffdb_meta"
                         " WHERE name = 'blob_id_floor'), 0),"
                         " coalesce((SELECT value FROM buffdb_meta"
                         " WHERE name = 'blob_id_reserved'), 0)) + 1"},
    [ST_BLOB_RESERVE] = {BFDB_STORE_BLOB,
                         "UPDATE buffdb_meta SET value = (SELECT max("
                         "coalesce((SELECT max(rowid) FROM blob), 0),"
                         " coalesce((SELECT value FROM buffdb_meta"
                         " WHERE name = 'blob_id_floor'), 0), value) + 1)"
                         " WHERE name = 'blob_id_reserved' RETURNING value"},
    [ST_BLOB_INSERT] = {BFDB_STORE_BLOB,
                        "INSERT INTO blob (rowid, data, metadata)"
                        " VALUES (?1, ?2, ?3)"},
    [ST_BLOB_SET_DATA] = {BFDB_STORE_BLOB,
                          "UPDATE blob SET data = ?2 WHERE rowid = ?1"},
    [ST_BLOB_SET_META] = {BFDB_STORE_BLOB,
                          "UPDATE blob SET metadata = ?2 WHERE rowid = ?1"},
    [ST_BLOB_SET_BOTH] = {BFDB_STORE_BLOB, "UPDATE blob SET data = ?2,"
                                           " metadata = ?3 WHERE rowid = ?1"},
    [ST_BLOB_DELETE] = {BFDB_STORE_BLOB, "DELETE FROM blob WHERE rowid = ?1"},
    [ST_BLOB_EXISTS] = {BFDB_STORE_BLOB,
                        "SELECT 1 FROM blob WHERE rowid = ?1"},
    [ST_PART_LIST] = {BFDB_STORE_BLOB,
                      "SELECT rowid, length(data) FROM buffdb_blob_part"
                      " WHERE blob_id = ?1 ORDER BY seq"},
    [ST_PART_INSERT] = {BFDB_STORE_BLOB,
                        "INSERT INTO buffdb_blob_part (blob_id, seq, data)"
                        " VALUES (?1, ?2, ?3)"},
    [ST_PART_CLEAR] = {BFDB_STORE_BLOB,
                       "DELETE FROM buffdb_blob_part WHERE blob_id = ?1"},
    [ST_BEGIN_IMMEDIATE] = {-1, "BEGIN IMMEDIATE"},
    [ST_BEGIN] = {-1, "BEGIN"},
    [ST_COMMIT] = {-1, "COMMIT"},
    [ST_ROLLBACK] = {-1, "ROLLBACK"},
};

static const char *const kind_names[] = {"kv", "blob"};

/* ---- errors ------------------------------------------------------------ */

int
store_error(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
        return BFDB_OK;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return BFDB_EBUSY;
    case SQLITE_NOMEM:
        return BFDB_ENOMEM;
    case SQLITE_IOERR:
        return BFDB_EIO;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return BFDB_ECORRUPT;
    case SQLITE_FULL:
        return BFDB_EFULL;
    case SQLITE_CANTOPEN:
        return BFDB_ECANTOPEN;
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
        return BFDB_EPERM;
    case SQLITE_CONSTRAINT:
        return BFDB_ECONSTRAINT;
    case SQLITE_TOOBIG:
        return BFDB_ETOOBIG;
    case SQLITE_INTERRUPT:
        return BFDB_EINTERRUPTED;
    case SQLITE_ERROR:
    case SQLITE_RANGE:
    case SQLITE_MISMATCH:
        return BFDB_ESQL;
    default:
        return BFDB_EINTERNAL;
    }
}

int
store_failf(bfdb_store *s, int code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(s->errmsg, sizeof(s->errmsg), fmt, ap);
    va_end(ap);
    return code;
}

int
store_fail(bfdb_store *s, int rc, const char *what)
{
    int code = store_error(rc);
    int sys = sqlite3_system_errno(s->db);

    if (code == BFDB_OK)
        code = BFDB_EINTERNAL;
    if ((code == BFDB_EIO || code == BFDB_ECANTOPEN || code == BFDB_EFULL) &&
        sys != 0)
        return store_failf(s, code, "%s: %s (%s)", what, sqlite3_errmsg(s->db),
                           strerror(sys));
    return store_failf(s, code, "%s: %s", what, sqlite3_errmsg(s->db));
}

void
bfdb_store_set_txn_oracle(bfdb_store *s, int (*fn)(void *, uint64_t),
                          void *arg)
{
    s->txn_committed = fn;
    s->txn_arg = arg;
}

const char *
bfdb_store_errmsg(const bfdb_store *s)
{
    return s->errmsg;
}

int
bfdb_store_kind(const bfdb_store *s)
{
    return s->kind;
}

const char *
bfdb_store_path(const bfdb_store *s)
{
    return s->path;
}

/* ---- statements and transactions --------------------------------------- */

sqlite3_stmt *
store_stmt(bfdb_store *s, int i)
{
    sqlite3_stmt *st = s->st[i];
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return st;
}

int
store_cached(bfdb_store *s, const char *sql, sqlite3_stmt **out)
{
    size_t n = sizeof(s->cache) / sizeof(s->cache[0]), victim = 0;

    for (size_t i = 0; i < n; i++) {
        if (s->cache[i].sql != NULL && strcmp(s->cache[i].sql, sql) == 0) {
            s->cache[i].used = ++s->cache_tick;
            sqlite3_reset(s->cache[i].st);
            sqlite3_clear_bindings(s->cache[i].st);
            *out = s->cache[i].st;
            return BFDB_OK;
        }
        if (s->cache[i].used < s->cache[victim].used)
            victim = i;
    }
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return store_fail(s, rc, "could not prepare a statement");
    char *copy = strdup(sql);
    if (copy == NULL) {
        sqlite3_finalize(st);
        return store_failf(s, BFDB_ENOMEM, "out of memory");
    }
    sqlite3_finalize(s->cache[victim].st);
    free(s->cache[victim].sql);
    s->cache[victim].sql = copy;
    s->cache[victim].st = st;
    s->cache[victim].used = ++s->cache_tick;
    *out = st;
    return BFDB_OK;
}

int
store_exec_stmt(bfdb_store *s, int i, const char *what)
{
    sqlite3_stmt *st = s->st[i];
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return store_fail(s, rc, what);
    return BFDB_OK;
}

int
store_begin(bfdb_store *s, int immediate)
{
    store_stmt(s, immediate ? ST_BEGIN_IMMEDIATE : ST_BEGIN);
    return store_exec_stmt(s, immediate ? ST_BEGIN_IMMEDIATE : ST_BEGIN,
                           "could not begin a transaction");
}

int
store_commit(bfdb_store *s)
{
    store_stmt(s, ST_COMMIT);
    int rc = store_exec_stmt(s, ST_COMMIT, "could not commit");
    if (rc != BFDB_OK)
        store_rollback(s);
    return rc;
}

void
store_rollback(bfdb_store *s)
{
    if (sqlite3_get_autocommit(s->db))
        return; /* SQLite already rolled back (e.g. after SQLITE_FULL) */
    char keep[sizeof(s->errmsg)];
    memcpy(keep, s->errmsg, sizeof(keep));
    store_stmt(s, ST_ROLLBACK);
    (void)store_exec_stmt(s, ST_ROLLBACK, "could not roll back");
    memcpy(s->errmsg, keep, sizeof(keep));
}

int
store_check_free(bfdb_store *s)
{
    if (s->busy)
        return store_failf(s, BFDB_EINTERNAL,
                           "store %s is in use by an open reader, writer or "
                           "query", s->path);
    return BFDB_OK;
}

static int
progress_cb(void *arg)
{
    bfdb_store *s = arg;
    return s->interrupt_fn != NULL && s->interrupt_fn(s->interrupt_arg);
}

void
bfdb_store_set_interrupt(bfdb_store *s, int (*fn)(void *), void *arg)
{
    s->interrupt_fn = fn;
    s->interrupt_arg = arg;
    sqlite3_progress_handler(s->db, fn ? 1000 : 0, fn ? progress_cb : NULL,
                             fn ? s : NULL);
}

/* ---- open and close ---------------------------------------------------- */

/*
 * busy_retry - whether to try a statement again after SQLITE_BUSY while
 * opening.  Several processes creating the same file at once meet in
 * SQLite's rollback-journal locks before WAL mode is on, where SQLite
 * may return BUSY at once instead of calling the busy handler (to avoid
 * a deadlock); waiting a moment and retrying is the way out.  Bounded by
 * the busy timeout.
 */
static int
busy_retry(int rc, int *waited_ms, int limit_ms)
{
    if ((rc & 0xff) != SQLITE_BUSY || *waited_ms >= limit_ms)
        return 0;
    struct timespec ts = {0, 5 * 1000000L};
    nanosleep(&ts, NULL);
    *waited_ms += 5;
    return 1;
}

static int
table_exists(sqlite3 *db, const char *name)
{
    sqlite3_stmt *st;
    int found = 0;

    if (sqlite3_prepare_v2(db,
                           "SELECT 1 FROM sqlite_master WHERE type = 'table'"
                           " AND name = ?1",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        found = 1;
    else if (rc != SQLITE_DONE)
        found = -1;
    sqlite3_finalize(st);
    return found;
}

/* has_columns - 1 if table has both columns, 0 if not, -1 on error */
static int
has_columns(sqlite3 *db, const char *table, const char *c1, const char *c2)
{
    sqlite3_stmt *st;
    int seen = 0, rc;
    char sql[128];

    snprintf(sql, sizeof(sql), "PRAGMA table_info(%s)", table);
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 1);
        if (name && strcmp(name, c1) == 0)
            seen |= 1;
        if (name && strcmp(name, c2) == 0)
            seen |= 2;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return -1;
    return seen == 3;
}

/* meta_kind - the kind recorded in buffdb_meta, or -1 if none */
static int
meta_kind(sqlite3 *db)
{
    sqlite3_stmt *st;
    int kind = -1;

    if (table_exists(db, "buffdb_meta") != 1)
        return -1;
    if (sqlite3_prepare_v2(db,
                           "SELECT value FROM buffdb_meta WHERE name = 'kind'",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(st) == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        if (v && strcmp(v, "kv") == 0)
            kind = BFDB_STORE_KV;
        else if (v && strcmp(v, "blob") == 0)
            kind = BFDB_STORE_BLOB;
    }
    sqlite3_finalize(st);
    return kind;
}

/*
 * store_prepare_schema - check that the file is (or can become) a store of
 * s->kind, then create what is missing, all in one write transaction so
 * that processes opening the file at once do not race.
 */
static int
store_prepare_schema(bfdb_store *s)
{
    const char *kname = kind_names[s->kind];
    const char *other = kind_names[!s->kind];
    const char *table = s->kind == BFDB_STORE_KV ? "kv" : "blob";
    char *emsg = NULL;
    int rc;

    int waited = 0;
    while ((rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL)) !=
               SQLITE_OK &&
           busy_retry(rc, &waited, s->busy_ms))
        ;
    if (rc != SQLITE_OK)
        return store_fail(s, rc, "could not lock the store");

    int recorded = meta_kind(s->db);
    if (recorded >= 0 && recorded != s->kind) {
        rc = store_failf(s, BFDB_EINVAL, "%s is a %s store, not a %s store",
                         s->path, other, kname);
        goto fail;
    }
    if (recorded < 0 && table_exists(s->db, other) == 1 &&
        table_exists(s->db, table) != 1) {
        rc = store_failf(s, BFDB_EINVAL,
                         "%s holds a %s table: it is a %s store, not a %s "
                         "store", s->path, other, other, kname);
        goto fail;
    }
    if (table_exists(s->db, table) == 1) {
        int ok = s->kind == BFDB_STORE_KV
                     ? has_columns(s->db, "kv", "key", "value")
                     : has_columns(s->db, "blob", "data", "metadata");
        if (ok != 1) {
            rc = store_failf(s, BFDB_ECORRUPT,
                             "%s: table %s lacks the columns of a buffdb %s "
                             "store", s->path, table, kname);
            goto fail;
        }
    }

    rc = sqlite3_exec(s->db,
                      s->kind == BFDB_STORE_KV ? schema_kv : schema_blob, NULL,
                      NULL, &emsg);
    if (rc != SQLITE_OK) {
        rc = store_failf(s, store_error(rc), "could not create the tables of "
                         "%s: %s", s->path, emsg ? emsg : "unknown error");
        sqlite3_free(emsg);
        goto fail;
    }
    rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        rc = store_fail(s, rc, "could not commit the schema");
        goto fail;
    }
    return BFDB_OK;

fail:
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static int
store_set_pragmas(bfdb_store *s, const struct bfdb_store_opts *o)
{
    sqlite3_stmt *st = NULL;
    int rc;

    sqlite3_busy_timeout(s->db, o->busy_timeout_ms > 0
                                    ? o->busy_timeout_ms
                                    : BFDB_DEFAULT_BUSY_TIMEOUT_MS);

    /* a new blob store gets 64 KiB pages: a 4 MiB value is 64 pages to
     * write (and checkpoint) instead of 1024, about 4x the throughput for
     * model parts and large blobs.  Only an empty file takes it; an
     * existing store keeps its page size (WAL mode cannot change it). */
    if (s->kind == BFDB_STORE_BLOB)
        (void)sqlite3_exec(s->db, "PRAGMA page_size=65536", NULL, NULL, NULL);

    /* journal_mode=WAL is persistent in the file; it needs the first read
     * of the header, so it is also where "not a database" shows up */
    int waited = 0;
    s->busy_ms = o->busy_timeout_ms > 0 ? o->busy_timeout_ms
                                        : BFDB_DEFAULT_BUSY_TIMEOUT_MS;
    for (;;) {
        rc = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode=WAL", -1, &st,
                                NULL);
        if (rc == SQLITE_OK) {
            rc = sqlite3_step(st);
            if (rc == SQLITE_ROW)
                break;
            sqlite3_finalize(st);
            st = NULL;
        }
        if (!busy_retry(rc, &waited, s->busy_ms))
            break;
    }
    if (st == NULL)
        return store_fail(s, rc, "could not set WAL mode");
    if (rc != SQLITE_ROW) {
        rc = store_fail(s, rc, "could not set WAL mode");
        sqlite3_finalize(st);
        return rc;
    }
    const char *mode = (const char *)sqlite3_column_text(st, 0);
    int wal = mode != NULL && strcmp(mode, "wal") == 0;
    sqlite3_finalize(st);
    if (!wal)
        return store_failf(s, BFDB_EIO,
                           "could not set WAL mode on %s (journal mode is %s)",
                           s->path, mode ? mode : "unknown");

    rc = sqlite3_exec(s->db,
                      o->sync == BFDB_SYNC_FULL ? "PRAGMA synchronous=FULL"
                                                : "PRAGMA synchronous=NORMAL",
                      NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return store_fail(s, rc, "could not set the synchronous mode");
    /* a WAL that grew under steady writes (checkpoints cannot reset it
     * while readers hold old snapshots) is cut back to this size once a
     * checkpoint completes */
    rc = sqlite3_exec(s->db, "PRAGMA journal_size_limit=67108864", NULL, NULL,
                      NULL);
    if (rc != SQLITE_OK)
        return store_fail(s, rc, "could not set journal_size_limit");
    /* the default recursive_triggers of Debian's build is not wanted */
    rc = sqlite3_exec(s->db, "PRAGMA recursive_triggers=OFF", NULL, NULL,
                      NULL);
    if (rc != SQLITE_OK)
        return store_fail(s, rc, "could not set recursive_triggers");
    return BFDB_OK;
}

int
bfdb_store_open(bfdb_store **out, int kind, const char *path,
                const struct bfdb_store_opts *opts, char *err, size_t errlen)
{
    static const struct bfdb_store_opts defaults;
    const struct bfdb_store_opts *o = opts ? opts : &defaults;
    struct stat sb;
    bfdb_store *s;
    int rc, flags;

    *out = NULL;
    if (kind != BFDB_STORE_KV && kind != BFDB_STORE_BLOB) {
        snprintf(err, errlen, "unknown store kind %d", kind);
        return BFDB_EINVAL;
    }
    if (path == NULL || *path == '\0') {
        snprintf(err, errlen, "%s store path is empty", kind_names[kind]);
        return BFDB_EINVAL;
    }
    if (stat(path, &sb) == 0) {
        if (S_ISDIR(sb.st_mode)) {
            snprintf(err, errlen, "%s store %s is a directory",
                     kind_names[kind], path);
            return BFDB_ECANTOPEN;
        }
    } else if (errno != ENOENT || o->no_create) {
        snprintf(err, errlen, "%s store %s: %s", kind_names[kind], path,
                 strerror(errno));
        return BFDB_ECANTOPEN;
    }

    s = xcalloc(1, sizeof(*s));
    s->kind = kind;
    s->path = xstrdup(path);
    s->blob_inline_max =
        o->blob_inline_max ? o->blob_inline_max : BFDB_DEFAULT_BLOB_INLINE_MAX;
    s->blob_part_size =
        o->blob_part_size ? o->blob_part_size : BFDB_DEFAULT_BLOB_PART_SIZE;

    flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
    if (!o->no_create)
        flags |= SQLITE_OPEN_CREATE;
    rc = sqlite3_open_v2(path, &s->db, flags, NULL);
    if (rc != SQLITE_OK) {
        if (s->db == NULL) {
            snprintf(err, errlen, "could not open %s store %s: out of memory",
                     kind_names[kind], path);
            rc = BFDB_ENOMEM;
            goto fail;
        }
        char what[512];
        snprintf(what, sizeof(what), "could not open %s store %s",
                 kind_names[kind], path);
        rc = store_fail(s, rc, what);
        goto fail_msg;
    }
    sqlite3_extended_result_codes(s->db, 1);
    if (sqlite3_db_readonly(s->db, "main") == 1) {
        rc = store_failf(s, BFDB_EPERM, "%s store %s is not writable",
                         kind_names[kind], path);
        goto fail_msg;
    }

    if ((rc = store_set_pragmas(s, o)) != BFDB_OK) {
        if (rc == BFDB_ECORRUPT)
            store_failf(s, rc, "%s is not a SQLite database (%s)", path,
                        sqlite3_errmsg(s->db));
        goto fail_msg;
    }
    if (!o->skip_schema && (rc = store_prepare_schema(s)) != BFDB_OK)
        goto fail_msg;

    for (int i = 0; i < ST__COUNT; i++) {
        if (stmt_sql[i].kind != -1 && stmt_sql[i].kind != kind)
            continue;
        int src = sqlite3_prepare_v3(s->db, stmt_sql[i].sql, -1,
                                     SQLITE_PREPARE_PERSISTENT, &s->st[i],
                                     NULL);
        if (src != SQLITE_OK) {
            rc = store_fail(s, src, "could not prepare a statement");
            goto fail_msg;
        }
    }
    *out = s;
    return BFDB_OK;

fail_msg:
    snprintf(err, errlen, "%s", s->errmsg);
fail:
    bfdb_store_close(s);
    return rc;
}

void
bfdb_store_close(bfdb_store *s)
{
    if (s == NULL)
        return;
    for (int i = 0; i < ST__COUNT; i++)
        sqlite3_finalize(s->st[i]);
    for (size_t i = 0; i < sizeof(s->cache) / sizeof(s->cache[0]); i++) {
        sqlite3_finalize(s->cache[i].st);
        free(s->cache[i].sql);
    }
    if (s->db != NULL && sqlite3_close(s->db) != SQLITE_OK)
        sqlite3_close_v2(s->db); /* a statement leaked: close when done */
    free(s->path);
    free(s);
}

int
bfdb_store_paths_distinct(const char *kv_path, const char *blob_path,
                          char *err, size_t errlen)
{
    struct stat a, b;

    if (strcmp(kv_path, blob_path) == 0) {
        snprintf(err, errlen, "kv store and blob store are the same file: %s",
                 kv_path);
        return BFDB_EINVAL;
    }
    if (stat(kv_path, &a) == 0 && stat(blob_path, &b) == 0 &&
        a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
        snprintf(err, errlen,
                 "kv store %s and blob store %s are the same file", kv_path,
                 blob_path);
        return BFDB_EINVAL;
    }
    return BFDB_OK;
}
