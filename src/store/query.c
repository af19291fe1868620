/*
 * query.c - raw SQL on either store (the Query service, `buffdb query`)
 *
 * A raw statement is prepared under an authorizer (raw_authorize) that
 * keeps clients from breaking the store: the connection's settings and
 * transaction state belong to buffdb, and so do its own tables.  The
 * authorizer stays installed for the statement's life, since some
 * statements (VACUUM) authorize at run time too.
 */
#include "config.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "store/store_int.h"

struct bfdb_query {
    bfdb_store *s;
    sqlite3_stmt *st;
};

/* pragmas that only read, allowed with no argument or a table name */
static const char *const pragma_read[] = {
    "table_info", "table_xinfo", "table_list", "index_list", "index_info",
    "index_xinfo", "foreign_key_list", "foreign_key_check", "integrity_check",
    "quick_check", "compile_options", "collation_list", "function_list",
    "database_list", "data_version", NULL};
/* pragmas that read a setting when given no argument and change it with one */
static const char *const pragma_setting[] = {
    "page_size", "page_count", "freelist_count", "user_version",
    "schema_version", "application_id", "journal_mode", "synchronous",
    "encoding", "auto_vacuum", "cache_size", "busy_timeout", NULL};

static int
in_list(const char *const *list, const char *name)
{
    for (; *list; list++)
        if (strcasecmp(*list, name) == 0)
            return 1;
    return 0;
}

/* buffdb's own tables; SQLite guards its sqlite_ tables itself */
static int
protected_table(const char *t)
{
    return t != NULL && strncasecmp(t, "buffdb_", 7) == 0;
}

static int
core_table(const char *t)
{
    return t != NULL && (strcasecmp(t, "kv") == 0 ||
                         strcasecmp(t, "blob") == 0 || protected_table(t));
}

static int
raw_authorize(void *arg, int action, const char *a1, const char *a2,
              const char *db, const char *trigger)
{
    bfdb_store *s = arg;

    (void)db;
    switch (action) {
    case SQLITE_ATTACH:
    case SQLITE_DETACH:
        store_failf(s, BFDB_EPERM, "ATTACH, DETACH and VACUUM are not "
                    "allowed in raw SQL");
        return SQLITE_DENY;
    case SQLITE_TRANSACTION:
    case SQLITE_SAVEPOINT:
        store_failf(s, BFDB_EPERM, "transaction control is not allowed in "
                    "raw SQL (each statement is its own transaction)");
        return SQLITE_DENY;
    case SQLITE_PRAGMA:
        if (in_list(pragma_read, a1) || (in_list(pragma_setting, a1) && !a2))
            return SQLITE_OK;
        store_failf(s, BFDB_EPERM, "PRAGMA %s is not allowed in raw SQL", a1);
        return SQLITE_DENY;
    case SQLITE_INSERT:
    case SQLITE_UPDATE:
    case SQLITE_DELETE:
        /* buffdb's own triggers maintain its tables: let them */
        if (trigger == NULL && protected_table(a1)) {
            store_failf(s, BFDB_EPERM, "table %s belongs to buffdb and is "
                        "read-only in raw SQL", a1);
            return SQLITE_DENY;
        }
        if (trigger == NULL && s->raw_dml == 0 &&
            strncasecmp(a1, "sqlite_", 7) != 0)
            s->raw_dml = 1;
        return SQLITE_OK;
    case SQLITE_DROP_TABLE:
    case SQLITE_DROP_TEMP_TABLE:
    case SQLITE_ALTER_TABLE:
        /* ALTER TABLE passes the table in a2, DROP TABLE in a1 */
        if (core_table(action == SQLITE_ALTER_TABLE ? a2 : a1)) {
            store_failf(s, BFDB_EPERM, "table %s cannot be dropped or "
                        "altered", action == SQLITE_ALTER_TABLE ? a2 : a1);
            return SQLITE_DENY;
        }
        /* DROP TABLE also authorizes a DELETE of the table, but it is no
         * DML: sqlite3_changes() would still hold an earlier count */
        if (action != SQLITE_ALTER_TABLE)
            s->raw_dml = -1;
        return SQLITE_OK;
    case SQLITE_DROP_TRIGGER:
    case SQLITE_DROP_INDEX:
        if (a1 && strncasecmp(a1, "buffdb_", 7) == 0) {
            store_failf(s, BFDB_EPERM, "%s belongs to buffdb", a1);
            return SQLITE_DENY;
        }
        return SQLITE_OK;
    case SQLITE_CREATE_TRIGGER:
    case SQLITE_CREATE_TEMP_TRIGGER:
        /* a trigger would run inside buffdb's own writes */
        store_failf(s, BFDB_EPERM, "CREATE TRIGGER is not allowed in raw SQL");
        return SQLITE_DENY;
    case SQLITE_FUNCTION:
        if (a2 && strcasecmp(a2, "load_extension") == 0) {
            store_failf(s, BFDB_EPERM, "load_extension is not allowed");
            return SQLITE_DENY;
        }
        return SQLITE_OK;
    default:
        return SQLITE_OK;
    }
}

/* only_space_or_comments - 1 if the text holds no further statement */
static int
only_space_or_comments(const char *p, const char *end)
{
    while (p < end) {
        if (isspace((unsigned char)*p) || *p == ';') {
            p++;
        } else if (p + 1 < end && p[0] == '-' && p[1] == '-') {
            while (p < end && *p != '\n')
                p++;
        } else if (p + 1 < end && p[0] == '/' && p[1] == '*') {
            const char *e = p + 2;
            while (e + 1 < end && !(e[0] == '*' && e[1] == '/'))
                e++;
            if (e + 1 >= end)
                return 1; /* an unterminated comment runs to the end */
            p = e + 2;
        } else {
            return 0;
        }
    }
    return 1;
}

static int
raw_prepare(bfdb_store *s, const char *sql, size_t len, sqlite3_stmt **out)
{
    const char *tail = NULL;
    int rc;

    *out = NULL;
    if ((rc = store_check_free(s)) != BFDB_OK)
        return rc;
    if (len > (size_t)INT32_MAX)
        return store_failf(s, BFDB_ETOOBIG, "SQL text too long");
    s->errmsg[0] = '\0';
    s->raw_dml = 0;
    sqlite3_set_authorizer(s->db, raw_authorize, s);
    rc = sqlite3_prepare_v2(s->db, sql, (int)len, out, &tail);
    if (rc != SQLITE_OK) {
        sqlite3_set_authorizer(s->db, NULL, NULL);
        /* raw_authorize said why (a denied function fails with
         * SQLITE_ERROR, not SQLITE_AUTH) */
        if (s->errmsg[0] != '\0')
            return BFDB_EPERM;
        if ((rc & 0xff) == SQLITE_AUTH)
            return store_fail(s, rc, "statement not allowed");
        return store_failf(s, BFDB_ESQL, "%s", sqlite3_errmsg(s->db));
    }
    if (*out == NULL) {
        sqlite3_set_authorizer(s->db, NULL, NULL);
        return store_failf(s, BFDB_EINVAL, "empty SQL statement");
    }
    if (tail != NULL && !only_space_or_comments(tail, sql + len)) {
        sqlite3_finalize(*out);
        *out = NULL;
        sqlite3_set_authorizer(s->db, NULL, NULL);
        return store_failf(s, BFDB_EINVAL,
                           "SQL text holds more than one statement; send one "
                           "statement per request");
    }
    return BFDB_OK;
}

static int
raw_step_error(bfdb_store *s, sqlite3_stmt *st, int rc)
{
    (void)st;
    if ((rc & 0xff) == SQLITE_INTERRUPT)
        return store_failf(s, BFDB_EINTERRUPTED, "statement interrupted");
    if ((rc & 0xff) == SQLITE_AUTH && s->errmsg[0] != '\0')
        return BFDB_EPERM;
    int code = store_error(rc);
    if (code == BFDB_EINTERNAL)
        code = BFDB_ESQL;
    code = store_failf(s, code, "%s", sqlite3_errmsg(s->db));
    /* a unique index refusing the write: ALREADY_EXISTS, not bad SQL */
    return store_index_conflict(s, code, NULL, 0, NULL, 0);
}

int
bfdb_query_open(bfdb_store *s, const char *sql, size_t len, bfdb_query **q)
{
    sqlite3_stmt *st;
    int rc;

    *q = NULL;
    if ((rc = raw_prepare(s, sql, len, &st)) != BFDB_OK)
        return rc;
    bfdb_query *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        sqlite3_finalize(st);
        sqlite3_set_authorizer(s->db, NULL, NULL);
        return store_failf(s, BFDB_ENOMEM, "out of memory");
    }
    r->s = s;
    r->st = st;
    s->busy = 1;
    *q = r;
    return BFDB_OK;
}

int
bfdb_query_next(bfdb_query *q)
{
    int rc = sqlite3_step(q->st);

    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return raw_step_error(q->s, q->st, rc);
}

int
bfdb_query_columns(bfdb_query *q)
{
    return sqlite3_column_count(q->st);
}

int
bfdb_query_type(bfdb_query *q, int col)
{
    switch (sqlite3_column_type(q->st, col)) {
    case SQLITE_INTEGER: return BFDB_COL_INTEGER;
    case SQLITE_FLOAT: return BFDB_COL_REAL;
    case SQLITE_TEXT: return BFDB_COL_TEXT;
    case SQLITE_BLOB: return BFDB_COL_BLOB;
    default: return BFDB_COL_NULL;
    }
}

int64_t
bfdb_query_int(bfdb_query *q, int col)
{
    return sqlite3_column_int64(q->st, col);
}

double
bfdb_query_real(bfdb_query *q, int col)
{
    return sqlite3_column_double(q->st, col);
}

const void *
bfdb_query_bytes(bfdb_query *q, int col, size_t *len)
{
    const void *p;

    if (sqlite3_column_type(q->st, col) == SQLITE_BLOB)
        p = sqlite3_column_blob(q->st, col);
    else
        p = sqlite3_column_text(q->st, col);
    *len = (size_t)sqlite3_column_bytes(q->st, col);
    return p ? p : "";
}

void
bfdb_query_close(bfdb_query *q)
{
    if (q == NULL)
        return;
    sqlite3_finalize(q->st);
    sqlite3_set_authorizer(q->s->db, NULL, NULL);
    q->s->busy = 0;
    free(q);
}

int
bfdb_query_readonly(bfdb_query *q)
{
    return sqlite3_stmt_readonly(q->st) != 0;
}

int
bfdb_query_execute(bfdb_store *s, const char *sql, size_t len,
                   uint64_t *changes)
{
    return bfdb_query_execute_hooked(s, sql, len, changes, NULL, NULL, NULL);
}

int
bfdb_query_execute_hooked(bfdb_store *s, const char *sql, size_t len,
                          uint64_t *changes, void (*before)(void *),
                          void (*after)(void *), void *arg)
{
    sqlite3_stmt *st;
    int rc, hooked = 0;

    *changes = 0;
    if ((rc = raw_prepare(s, sql, len, &st)) != BFDB_OK)
        return rc;
    if (sqlite3_column_count(st) > 0) {
        rc = store_failf(s, BFDB_EINVAL, "statement returns rows; use Query "
                         "(buffdb query) for it, not Execute");
        goto out;
    }
    if (before != NULL && !sqlite3_stmt_readonly(st)) {
        before(arg);
        hooked = 1;
    }
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        /* sqlite3_changes() keeps the count of the last INSERT, UPDATE or
         * DELETE: for any other statement the answer is 0 */
        *changes = s->raw_dml > 0 ? (uint64_t)sqlite3_changes64(s->db) : 0;
        rc = BFDB_OK;
    } else {
        rc = raw_step_error(s, st, rc);
    }
out:
    sqlite3_finalize(st);
    sqlite3_set_authorizer(s->db, NULL, NULL);
    if (hooked && after != NULL)
        after(arg); /* autocommit: the statement has committed or failed */
    return rc;
}
