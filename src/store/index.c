/*
 * index.c - secondary indexes on the kv store
 *
 * An index is a definition row in buffdb_index, an entry table
 * buffdb_ix_<id> (v, k) with primary key (v, k) and a second index on k,
 * and three triggers on the kv table (after insert, update, delete) that
 * keep the entries equal to what a full scan would compute.  Because the
 * triggers run inside the statement that changes the kv row, an index can
 * never disagree with the data it indexes, whoever writes: a worker, a
 * transaction's commit, raw SQL, the CLI, another program on the file.
 * The triggers use only SQLite's built-in functions (json_valid,
 * json_extract, json_type), so any SQLite with JSON support can write the
 * file.
 *
 * The indexed value of a row is computed by one SQL expression per value
 * type (norm_sql); Lookup and Range run the same expression over the
 * client's value, so "does this parse as an integer" has one answer.
 * A unique index is checked by the insert/update trigger (RAISE(ABORT),
 * which no conflict clause of the outer statement can turn into REPLACE
 * or IGNORE) and backed by a UNIQUE index on v.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/store_int.h"

struct bfdb_index_iter {
    bfdb_store *s;
    sqlite3_stmt *st;
};

/* what an index's definition row says, for the code below */
struct ixdef {
    int64_t id;
    int type;
    int unique;
    int vtype;
    char *path;        /* "" for the whole value */
    char *prefix;
    size_t plen;
};

static const char *const vtype_names[] = {"string", "integer", "float"};

/* the RAISE text of a unique index; index_conflict() looks for it */
#define UNIQUE_MSG_HEAD "unique index \""

/* ---- helpers -------------------------------------------------------------- */

static int
kv_only(bfdb_store *s)
{
    if (s->kind != BFDB_STORE_KV)
        return store_failf(s, BFDB_EINVAL, "%s is not a kv store", s->path);
    return store_check_free(s);
}

/* exec_sql - run SQL text (one or more statements) on s */
static int
exec_sql(bfdb_store *s, const char *sql, const char *what)
{
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return store_fail(s, rc, what);
    return BFDB_OK;
}

static void
ixdef_clear(struct ixdef *d)
{
    free(d->path);
    free(d->prefix);
    memset(d, 0, sizeof(*d));
}

/* dup_col - a malloc'd NUL-terminated copy of a column's bytes */
static char *
dup_col(sqlite3_stmt *st, int col, size_t *len)
{
    const void *p = sqlite3_column_blob(st, col);
    size_t n = (size_t)sqlite3_column_bytes(st, col);
    char *c = malloc(n + 1);
    if (c == NULL)
        return NULL;
    if (n)
        memcpy(c, p, n);
    c[n] = '\0';
    if (len)
        *len = n;
    return c;
}

/* load_def - the definition of name; BFDB_ENOTFOUND */
static int
load_def(bfdb_store *s, const char *name, struct ixdef *d)
{
    sqlite3_stmt *st;
    int rc;

    memset(d, 0, sizeof(*d));
    if ((rc = store_cached(s, "SELECT id, type, uniq, value_type, json_path,"
                              " key_prefix FROM buffdb_index WHERE name = ?1",
                           &st)) != BFDB_OK)
        return rc;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(st);
        return store_failf(s, BFDB_ENOTFOUND, "no index named \"%s\"", name);
    }
    if (rc != SQLITE_ROW) {
        rc = store_fail(s, rc, "could not read the index definitions");
        sqlite3_reset(st);
        return rc;
    }
    d->id = sqlite3_column_int64(st, 0);
    d->type = sqlite3_column_int(st, 1);
    d->unique = sqlite3_column_int(st, 2);
    d->vtype = sqlite3_column_int(st, 3);
    d->path = dup_col(st, 4, NULL);
    d->prefix = dup_col(st, 5, &d->plen);
    sqlite3_reset(st);
    if (d->path == NULL || d->prefix == NULL) {
        ixdef_clear(d);
        return store_failf(s, BFDB_ENOMEM, "out of memory");
    }
    if (d->vtype < 0 || d->vtype > BFDB_IV_FLOAT) {
        ixdef_clear(d);
        return store_failf(s, BFDB_ECORRUPT, "index \"%s\" has an unknown "
                           "value type", name);
    }
    return BFDB_OK;
}

/*
 * norm_sql - the SQL expression for the indexed value of the text `v`
 * (an SQL expression: "NEW.value", "?1") under value type vtype and JSON
 * path (NULL or "": v itself).  NULL: not indexed.  sqlite3_free() it.
 */
static char *
norm_sql(int vtype, const char *path, const char *v)
{
    static const char *const body[] = {
        [BFDB_IV_STRING] =
            "CASE t WHEN 'text' THEN CAST(j AS BLOB)"
            " WHEN 'integer' THEN CAST(CAST(j AS TEXT) AS BLOB) END",
        [BFDB_IV_INTEGER] =
            "CASE WHEN t = 'integer' AND typeof(j) = 'integer' THEN j"
            " WHEN t = 'text' AND instr(CAST(j AS BLOB), X'00') = 0"
            " AND json_valid(j) AND json_type(j) = 'integer'"
            " AND typeof(json_extract(j, '$')) = 'integer'"
            " THEN json_extract(j, '$') END",
        [BFDB_IV_FLOAT] =
            "CASE WHEN t IN ('integer', 'real') THEN j"
            " WHEN t = 'text' AND instr(CAST(j AS BLOB), X'00') = 0"
            " AND json_valid(j) AND json_type(j) IN ('integer', 'real')"
            " THEN json_extract(j, '$') END",
    };

    if (path == NULL || *path == '\0')
        return sqlite3_mprintf("(SELECT %s FROM (SELECT %s AS j,"
                               " 'text' AS t))", body[vtype], v);
    return sqlite3_mprintf(
        "(SELECT %s FROM (SELECT CASE WHEN json_valid(%s) THEN"
        " json_extract(%s, %Q) END AS j, CASE WHEN json_valid(%s) THEN"
        " json_type(%s, %Q) END AS t))",
        body[vtype], v, v, path, v, v, path);
}

/* prefix_sql - the condition "key k starts with the prefix" */
static char *
prefix_sql(const char *prefix, size_t plen, const char *k)
{
    if (plen == 0) /* raw SQL can store a NULL key: never indexed */
        return sqlite3_mprintf("(%s IS NOT NULL)", k);
    char *hex = malloc(plen * 2 + 1);
    if (hex == NULL)
        return NULL;
    for (size_t i = 0; i < plen; i++)
        snprintf(hex + i * 2, 3, "%02x", (unsigned char)prefix[i]);
    /* (sqlite3_mprintf knows no %zu) */
    char *r = sqlite3_mprintf("(substr(CAST(%s AS BLOB), 1, %lld) = X'%s')",
                              k, (long long)plen, hex);
    free(hex);
    return r;
}

/*
 * norm_value - evaluate the indexed value of text (the whole-value form:
 * a Lookup value or Range bound is the field's value, not a document);
 * *out NULL if it does not parse as vtype.  sqlite3_value_free() it.
 */
static int
norm_value(bfdb_store *s, int vtype, const char *text, size_t len,
           sqlite3_value **out)
{
    sqlite3_stmt *st;
    char *e = norm_sql(vtype, NULL, "?1");
    char *sql = e ? sqlite3_mprintf("SELECT %s", e) : NULL;
    int rc;

    *out = NULL;
    sqlite3_free(e);
    if (sql == NULL)
        return store_failf(s, BFDB_ENOMEM, "out of memory");
    rc = store_cached(s, sql, &st);
    sqlite3_free(sql);
    if (rc != BFDB_OK)
        return rc;
    sqlite3_bind_text64(st, 1, len ? text : "", (sqlite3_uint64)len,
                        SQLITE_STATIC, SQLITE_UTF8);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        if (sqlite3_column_type(st, 0) != SQLITE_NULL)
            *out = sqlite3_value_dup(sqlite3_column_value(st, 0));
        rc = BFDB_OK;
    } else {
        rc = store_fail(s, rc, "could not convert a value");
    }
    sqlite3_reset(st);
    return rc;
}

/* printable - a bounded, escaped rendering of bytes for messages */
static const char *
printable(const char *p, size_t n, char *buf, size_t cap)
{
    size_t o = 0;

    for (size_t i = 0; i < n && o + 8 < cap; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch == '"' || ch == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)ch;
        } else if (ch < 0x20 || ch == 0x7f) {
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", ch);
        } else {
            buf[o++] = (char)ch;
        }
        if (i + 1 < n && o + 8 >= cap) {
            memcpy(buf + o, "...", 3);
            o += 3;
        }
    }
    buf[o] = '\0';
    return buf;
}

/* valid_name - index names: 1..BFDB_INDEX_NAME_MAX of [A-Za-z0-9_.:-] */
static int
valid_name(const char *name)
{
    size_t n = name ? strlen(name) : 0;

    if (n == 0 || n > BFDB_INDEX_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '.' || c == ':' ||
              c == '-'))
            return 0;
    }
    return 1;
}

/*
 * path_syntax_ok - the whole path is well formed.  SQLite parses a path
 * only as far as the document it walks goes, so json_extract('{}', p)
 * alone would let "$.a[" through, to fail every later write of a value
 * that has an "a".  The grammar is SQLite's: $ then steps .label (up to
 * the next . or [), ."quoted label", [N], [#] or [#-N].
 */
static int
path_syntax_ok(const char *p)
{
    if (*p++ != '$')
        return 0;
    while (*p) {
        if (*p == '.') {
            p++;
            if (*p == '"') {
                const char *q = strchr(p + 1, '"');
                if (q == NULL || q == p + 1)
                    return 0;
                p = q + 1;
            } else {
                size_t n = strcspn(p, ".[");
                if (n == 0)
                    return 0;
                p += n;
            }
        } else if (*p == '[') {
            p++;
            if (*p == '#') {
                p++;
                if (*p == '-') {
                    p++;
                    if (*p < '0' || *p > '9')
                        return 0;
                    while (*p >= '0' && *p <= '9')
                        p++;
                }
            } else {
                if (*p < '0' || *p > '9')
                    return 0;
                while (*p >= '0' && *p <= '9')
                    p++;
            }
            if (*p++ != ']')
                return 0;
        } else {
            return 0;
        }
    }
    return 1;
}

static int
check_spec(bfdb_store *s, const struct bfdb_index_spec *sp)
{
    if (!valid_name(sp->name))
        return store_failf(s, BFDB_EINVAL, "bad index name: 1 to %d "
                           "characters of A-Z a-z 0-9 _ . : -",
                           BFDB_INDEX_NAME_MAX);
    if (sp->type != BFDB_INDEX_HASH && sp->type != BFDB_INDEX_BTREE)
        return store_failf(s, BFDB_EINVAL, "unknown index type %d (HASH = 0, "
                           "BTREE = 1)", sp->type);
    if (sp->value_type < BFDB_IV_STRING || sp->value_type > BFDB_IV_FLOAT)
        return store_failf(s, BFDB_EINVAL, "unknown value type %d (STRING = "
                           "0, INTEGER = 1, FLOAT = 2)", sp->value_type);
    if (sp->prefix_len > BFDB_INDEX_PREFIX_MAX)
        return store_failf(s, BFDB_EINVAL, "key prefix longer than %d bytes",
                           BFDB_INDEX_PREFIX_MAX);
    if (sp->json_path == NULL || sp->json_path[0] == '\0')
        return BFDB_OK;
    if (strlen(sp->json_path) > BFDB_INDEX_PATH_MAX)
        return store_failf(s, BFDB_EINVAL, "JSON path longer than %d bytes",
                           BFDB_INDEX_PATH_MAX);
    if (!path_syntax_ok(sp->json_path))
        return store_failf(s, BFDB_EINVAL, "bad JSON path \"%s\": $ then "
                           ".label, .\"label\", [N], [#] or [#-N] steps "
                           "(e.g. $.framework, $.a.b)", sp->json_path);
    /* SQLite's own path parser decides: the triggers use the same one */
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(s->db, "SELECT json_extract('{}', ?1)", -1,
                                &st, NULL);
    if (rc != SQLITE_OK)
        return store_fail(s, rc, "could not check the JSON path");
    sqlite3_bind_text(st, 1, sp->json_path, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        rc = store_failf(s, BFDB_EINVAL, "bad JSON path \"%s\": %s",
                         sp->json_path, sqlite3_errmsg(s->db));
        sqlite3_finalize(st);
        return rc;
    }
    sqlite3_finalize(st);
    return BFDB_OK;
}

/* fill_sql - INSERT every row's entry into buffdb_ix_<id> */
static char *
fill_sql(const struct ixdef *d)
{
    char *n = norm_sql(d->vtype, d->path, "value");
    char *p = prefix_sql(d->prefix, d->plen, "key");
    char *sql = NULL;

    if (n && p)
        sql = sqlite3_mprintf("INSERT INTO buffdb_ix_%" PRId64 " (v, k)"
                              " SELECT n, key FROM (SELECT key, %s AS n"
                              " FROM kv WHERE %s) WHERE n IS NOT NULL",
                              d->id, n, p);
    sqlite3_free(n);
    sqlite3_free(p);
    return sql;
}

/* trigger_sql - the three triggers of index d (name for messages) */
static char *
trigger_sql(const struct ixdef *d, const char *name)
{
    char *nn = norm_sql(d->vtype, d->path, "NEW.value");
    char *pn = prefix_sql(d->prefix, d->plen, "NEW.key");
    char *po = prefix_sql(d->prefix, d->plen, "OLD.key");
    char *check = NULL, *add = NULL, *sql = NULL;
    int64_t id = d->id;

    if (nn == NULL || pn == NULL || po == NULL)
        goto out;
    /* a key taking a value another key holds: abort the statement */
    check = d->unique
                ? sqlite3_mprintf(
                      "SELECT RAISE(ABORT, '" UNIQUE_MSG_HEAD "%s\" already "
                      "holds this value for another key') FROM (SELECT %s"
                      " AS n) WHERE n IS NOT NULL AND %s AND EXISTS (SELECT"
                      " 1 FROM buffdb_ix_%" PRId64 " WHERE v = n AND"
                      " k != NEW.key);",
                      name, nn, pn, id)
                : sqlite3_mprintf("%s", "");
    add = sqlite3_mprintf("INSERT INTO buffdb_ix_%" PRId64 " (v, k) SELECT"
                          " n, NEW.key FROM (SELECT %s AS n) WHERE n IS NOT"
                          " NULL AND %s;",
                          id, nn, pn);
    if (check == NULL || add == NULL)
        goto out;
    /* insert also clears the key's entry: INSERT OR REPLACE deletes the
     * old row without running delete triggers (recursive_triggers off);
     * so does an update moving a row onto a key (UPDATE OR REPLACE).  An
     * update that changes neither key nor value (a Set of the same value)
     * leaves the entries alone */
    sql = sqlite3_mprintf(
        "CREATE TRIGGER buffdb_ix_%" PRId64 "_ins AFTER INSERT ON kv"
        " WHEN %s BEGIN"
        " DELETE FROM buffdb_ix_%" PRId64 " WHERE k = NEW.key; %s %s END;"
        "CREATE TRIGGER buffdb_ix_%" PRId64 "_upd AFTER UPDATE ON kv"
        " WHEN (%s OR %s) AND (OLD.key IS NOT NEW.key OR"
        " OLD.value IS NOT NEW.value) BEGIN"
        " DELETE FROM buffdb_ix_%" PRId64 " WHERE k = OLD.key;"
        " DELETE FROM buffdb_ix_%" PRId64 " WHERE k = NEW.key AND"
        " NEW.key IS NOT OLD.key; %s %s END;"
        "CREATE TRIGGER buffdb_ix_%" PRId64 "_del AFTER DELETE ON kv"
        " WHEN %s BEGIN"
        " DELETE FROM buffdb_ix_%" PRId64 " WHERE k = OLD.key; END;",
        id, pn, id, check, add, id, po, pn, id, id, check, add, id, po, id);
out:
    sqlite3_free(nn);
    sqlite3_free(pn);
    sqlite3_free(po);
    sqlite3_free(check);
    sqlite3_free(add);
    return sql;
}

/* ---- create, drop, list ---------------------------------------------------- */

int
bfdb_index_create(bfdb_store *s, const struct bfdb_index_spec *sp,
                  uint64_t *indexed)
{
    struct ixdef d = {0};
    sqlite3_stmt *st = NULL;
    char *sql = NULL;
    int rc;

    if (indexed)
        *indexed = 0;
    if ((rc = kv_only(s)) != BFDB_OK || (rc = check_spec(s, sp)) != BFDB_OK)
        return rc;
    if ((rc = store_begin(s, 1)) != BFDB_OK)
        return rc;
    rc = sqlite3_prepare_v2(s->db,
                            "SELECT (SELECT count(*) FROM buffdb_index"
                            " WHERE name = ?1),"
                            " coalesce((SELECT max(id) FROM buffdb_index), 0)"
                            " + 1",
                            -1, &st, NULL);
    if (rc != SQLITE_OK) {
        rc = store_fail(s, rc, "could not read the index definitions");
        goto fail;
    }
    sqlite3_bind_text(st, 1, sp->name, -1, SQLITE_STATIC);
    if ((rc = sqlite3_step(st)) != SQLITE_ROW) {
        rc = store_fail(s, rc, "could not read the index definitions");
        goto fail;
    }
    if (sqlite3_column_int(st, 0) > 0) {
        rc = store_failf(s, BFDB_EEXIST, "an index named \"%s\" already "
                         "exists", sp->name);
        goto fail;
    }
    d.id = sqlite3_column_int64(st, 1);
    sqlite3_finalize(st);
    st = NULL;
    d.type = sp->type;
    d.unique = sp->unique != 0;
    d.vtype = sp->value_type;
    d.path = strdup(sp->json_path ? sp->json_path : "");
    d.plen = sp->prefix_len;
    d.prefix = malloc(d.plen + 1);
    if (d.path == NULL || d.prefix == NULL) {
        rc = store_failf(s, BFDB_ENOMEM, "out of memory");
        goto fail;
    }
    if (d.plen)
        memcpy(d.prefix, sp->key_prefix, d.plen);
    d.prefix[d.plen] = '\0';

    rc = sqlite3_prepare_v2(s->db,
                            "INSERT INTO buffdb_index (id, name, type, uniq,"
                            " key_prefix, json_path, value_type, created)"
                            " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                            -1, &st, NULL);
    if (rc != SQLITE_OK) {
        rc = store_fail(s, rc, "could not record the index");
        goto fail;
    }
    sqlite3_bind_int64(st, 1, d.id);
    sqlite3_bind_text(st, 2, sp->name, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, d.type);
    sqlite3_bind_int(st, 4, d.unique);
    sqlite3_bind_blob64(st, 5, d.prefix, (sqlite3_uint64)d.plen,
                        SQLITE_STATIC);
    sqlite3_bind_text(st, 6, d.path, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 7, d.vtype);
    sqlite3_bind_int64(st, 8, (sqlite3_int64)time(NULL));
    if ((rc = sqlite3_step(st)) != SQLITE_DONE) {
        rc = store_fail(s, rc, "could not record the index");
        goto fail;
    }
    sqlite3_finalize(st);
    st = NULL;

    sql = sqlite3_mprintf("CREATE TABLE buffdb_ix_%" PRId64 " (v NOT NULL,"
                          " k TEXT NOT NULL, PRIMARY KEY (v, k)) WITHOUT"
                          " ROWID; CREATE INDEX buffdb_ix_%" PRId64 "_k ON"
                          " buffdb_ix_%" PRId64 " (k);",
                          d.id, d.id, d.id);
    if (sql == NULL || (rc = exec_sql(s, sql, "could not create the index "
                                      "table")) != BFDB_OK) {
        if (sql == NULL)
            rc = store_failf(s, BFDB_ENOMEM, "out of memory");
        goto fail;
    }
    sqlite3_free(sql);
    if ((sql = fill_sql(&d)) == NULL) {
        rc = store_failf(s, BFDB_ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = exec_sql(s, sql, "could not fill the index")) != BFDB_OK)
        goto fail;
    uint64_t n = (uint64_t)sqlite3_changes64(s->db);
    sqlite3_free(sql);
    sql = NULL;

    if (d.unique) {
        /* name a value two keys share, if there is one */
        sql = sqlite3_mprintf("SELECT CAST(v AS TEXT), min(k), max(k) FROM"
                              " buffdb_ix_%" PRId64 " GROUP BY v HAVING"
                              " count(*) > 1 LIMIT 1",
                              d.id);
        if (sql == NULL ||
            sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
            rc = store_fail(s, SQLITE_NOMEM, "could not check uniqueness");
            goto fail;
        }
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            char b1[160], b2[160], b3[160];
            rc = store_failf(
                s, BFDB_EPRECOND,
                "existing data breaks unique: keys \"%s\" and \"%s\" both "
                "have the value \"%s\"",
                printable(sqlite3_column_blob(st, 1),
                          (size_t)sqlite3_column_bytes(st, 1), b1, sizeof(b1)),
                printable(sqlite3_column_blob(st, 2),
                          (size_t)sqlite3_column_bytes(st, 2), b2, sizeof(b2)),
                printable(sqlite3_column_blob(st, 0),
                          (size_t)sqlite3_column_bytes(st, 0), b3,
                          sizeof(b3)));
            goto fail;
        }
        if (rc != SQLITE_DONE) {
            rc = store_fail(s, rc, "could not check uniqueness");
            goto fail;
        }
        sqlite3_finalize(st);
        st = NULL;
        sqlite3_free(sql);
        sql = sqlite3_mprintf("CREATE UNIQUE INDEX buffdb_ix_%" PRId64
                              "_u ON buffdb_ix_%" PRId64 " (v)",
                              d.id, d.id);
        if (sql == NULL || (rc = exec_sql(s, sql, "could not create the "
                                          "unique index")) != BFDB_OK) {
            if (sql == NULL)
                rc = store_failf(s, BFDB_ENOMEM, "out of memory");
            goto fail;
        }
        sqlite3_free(sql);
        sql = NULL;
    }
    if ((sql = trigger_sql(&d, sp->name)) == NULL) {
        rc = store_failf(s, BFDB_ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = exec_sql(s, sql, "could not create the index triggers")) !=
        BFDB_OK)
        goto fail;
    sqlite3_free(sql);
    sql = NULL;
    ixdef_clear(&d);
    if ((rc = store_commit(s)) != BFDB_OK)
        return rc;
    if (indexed)
        *indexed = n;
    return BFDB_OK;

fail:
    if (st)
        sqlite3_finalize(st);
    sqlite3_free(sql);
    ixdef_clear(&d);
    store_rollback(s);
    return rc;
}

int
bfdb_index_drop(bfdb_store *s, const char *name)
{
    struct ixdef d;
    int rc;

    if ((rc = kv_only(s)) != BFDB_OK)
        return rc;
    if ((rc = store_begin(s, 1)) != BFDB_OK)
        return rc;
    if ((rc = load_def(s, name, &d)) != BFDB_OK) {
        store_rollback(s);
        return rc;
    }
    char *sql = sqlite3_mprintf(
        "DROP TRIGGER IF EXISTS buffdb_ix_%" PRId64 "_ins;"
        "DROP TRIGGER IF EXISTS buffdb_ix_%" PRId64 "_upd;"
        "DROP TRIGGER IF EXISTS buffdb_ix_%" PRId64 "_del;"
        "DROP TABLE IF EXISTS buffdb_ix_%" PRId64 ";"
        "DELETE FROM buffdb_index WHERE id = %" PRId64 ";",
        d.id, d.id, d.id, d.id, d.id);
    ixdef_clear(&d);
    if (sql == NULL) {
        store_rollback(s);
        return store_failf(s, BFDB_ENOMEM, "out of memory");
    }
    rc = exec_sql(s, sql, "could not drop the index");
    sqlite3_free(sql);
    if (rc != BFDB_OK) {
        store_rollback(s);
        return rc;
    }
    return store_commit(s);
}

void
bfdb_index_spec_clear(struct bfdb_index_spec *sp)
{
    free(sp->name);
    free(sp->key_prefix);
    free(sp->json_path);
    memset(sp, 0, sizeof(*sp));
}

void
bfdb_index_list_free(struct bfdb_index_spec *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        bfdb_index_spec_clear(&v[i]);
    free(v);
}

/* list_where - the definitions matching name (NULL: all), by name */
static int
list_where(bfdb_store *s, const char *name, struct bfdb_index_spec **out,
           size_t *n)
{
    sqlite3_stmt *st;
    struct bfdb_index_spec *v = NULL;
    size_t cnt = 0, cap = 0;
    int rc;

    *out = NULL;
    *n = 0;
    rc = sqlite3_prepare_v2(s->db,
                            "SELECT name, type, uniq, key_prefix, json_path,"
                            " value_type FROM buffdb_index WHERE ?1 IS NULL"
                            " OR name = ?1 ORDER BY name",
                            -1, &st, NULL);
    if (rc != SQLITE_OK)
        return store_fail(s, rc, "could not read the index definitions");
    if (name)
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (cnt == cap) {
            size_t nc = cap ? cap * 2 : 8;
            struct bfdb_index_spec *nv = realloc(v, nc * sizeof(*nv));
            if (nv == NULL) {
                rc = SQLITE_NOMEM;
                break;
            }
            v = nv;
            cap = nc;
        }
        struct bfdb_index_spec *sp = &v[cnt];
        memset(sp, 0, sizeof(*sp));
        sp->name = dup_col(st, 0, NULL);
        sp->type = sqlite3_column_int(st, 1);
        sp->unique = sqlite3_column_int(st, 2);
        sp->key_prefix = dup_col(st, 3, &sp->prefix_len);
        sp->json_path = dup_col(st, 4, NULL);
        sp->value_type = sqlite3_column_int(st, 5);
        cnt++;
        if (sp->name == NULL || sp->key_prefix == NULL ||
            sp->json_path == NULL) {
            rc = SQLITE_NOMEM;
            break;
        }
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        bfdb_index_list_free(v, cnt);
        if (rc == SQLITE_NOMEM)
            return store_failf(s, BFDB_ENOMEM, "out of memory");
        return store_fail(s, rc, "could not read the index definitions");
    }
    *out = v;
    *n = cnt;
    return BFDB_OK;
}

int
bfdb_index_list(bfdb_store *s, struct bfdb_index_spec **specs, size_t *n)
{
    int rc;

    *specs = NULL;
    *n = 0;
    if ((rc = kv_only(s)) != BFDB_OK)
        return rc;
    return list_where(s, NULL, specs, n);
}

int
bfdb_index_get(bfdb_store *s, const char *name, struct bfdb_index_spec *sp)
{
    struct bfdb_index_spec *v;
    size_t n;
    int rc;

    memset(sp, 0, sizeof(*sp));
    if ((rc = kv_only(s)) != BFDB_OK)
        return rc;
    if ((rc = list_where(s, name, &v, &n)) != BFDB_OK)
        return rc;
    if (n == 0) {
        free(v);
        return store_failf(s, BFDB_ENOTFOUND, "no index named \"%s\"", name);
    }
    *sp = v[0];
    free(v);
    return BFDB_OK;
}

/* ---- lookups --------------------------------------------------------------- */

/* bound - the index-typed value of a Lookup value or Range bound */
static int
bound(bfdb_store *s, const struct ixdef *d, const char *name,
      const char *what, const char *p, size_t n, sqlite3_value **out)
{
    int rc = norm_value(s, d->vtype, p, n, out);
    char b[160];

    if (rc == BFDB_OK && *out == NULL)
        rc = store_failf(s, BFDB_EINVAL, "%s \"%s\" is not %s for index "
                         "\"%s\" (value type %s)", what,
                         printable(p, n, b, sizeof(b)),
                         d->vtype == BFDB_IV_INTEGER ? "a 64-bit integer"
                                                     : "a number",
                         name, vtype_names[d->vtype]);
    return rc;
}

static int
iter_open(bfdb_store *s, const char *name, int range, const char *lo,
          size_t llen, const char *hi, size_t hlen, uint32_t limit,
          bfdb_index_iter **it)
{
    struct ixdef d;
    sqlite3_value *vlo = NULL, *vhi = NULL;
    sqlite3_stmt *st = NULL;
    char *sql = NULL;
    int rc;

    *it = NULL;
    if ((rc = kv_only(s)) != BFDB_OK)
        return rc;
    if ((rc = load_def(s, name, &d)) != BFDB_OK)
        return rc;
    if (range && d.type != BFDB_INDEX_BTREE) {
        rc = store_failf(s, BFDB_EPRECOND, "index \"%s\" is a hash index: "
                         "Range needs a btree index", name);
        goto out;
    }
    if (lo && (rc = bound(s, &d, name, range ? "lower bound" : "value", lo,
                          llen, &vlo)) != BFDB_OK)
        goto out;
    if (hi && (rc = bound(s, &d, name, "upper bound", hi, hlen, &vhi)) !=
              BFDB_OK)
        goto out;
    sql = sqlite3_mprintf(
        "SELECT x.k, kv.value FROM buffdb_ix_%" PRId64 " x JOIN kv ON"
        " kv.key = x.k WHERE %s AND %s ORDER BY x.v, x.k%s",
        d.id, vlo ? (range ? "x.v >= ?1" : "x.v = ?1") : "1",
        vhi ? "x.v <= ?2" : "1", limit ? " LIMIT ?3" : "");
    if (sql == NULL) {
        rc = store_failf(s, BFDB_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = store_cached(s, sql, &st)) != BFDB_OK)
        goto out;
    if (vlo)
        sqlite3_bind_value(st, 1, vlo);
    if (vhi)
        sqlite3_bind_value(st, 2, vhi);
    if (limit)
        sqlite3_bind_int64(st, 3, (sqlite3_int64)limit);
    *it = calloc(1, sizeof(**it));
    if (*it == NULL) {
        rc = store_failf(s, BFDB_ENOMEM, "out of memory");
        goto out;
    }
    (*it)->s = s;
    (*it)->st = st;
    st = NULL;
    s->busy = 1;
    rc = BFDB_OK;
out:
    if (st) /* the store keeps it (store_cached) */
        sqlite3_reset(st);
    sqlite3_free(sql);
    sqlite3_value_free(vlo);
    sqlite3_value_free(vhi);
    ixdef_clear(&d);
    return rc;
}

int
bfdb_index_lookup(bfdb_store *s, const char *name, const char *value,
                  size_t vlen, uint32_t limit, bfdb_index_iter **it)
{
    return iter_open(s, name, 0, value ? value : "", vlen, NULL, 0, limit,
                     it);
}

int
bfdb_index_range(bfdb_store *s, const char *name, const char *lower,
                 size_t llen, const char *upper, size_t ulen, uint32_t limit,
                 bfdb_index_iter **it)
{
    return iter_open(s, name, 1, lower, llen, upper, ulen, limit, it);
}

int
bfdb_index_next(bfdb_index_iter *it, const char **key, size_t *klen,
                const char **val, size_t *vlen)
{
    int rc = sqlite3_step(it->st);

    if (rc == SQLITE_DONE)
        return 0;
    if (rc != SQLITE_ROW)
        return store_fail(it->s, rc, "could not read the index");
    *key = (const char *)sqlite3_column_text(it->st, 0);
    *klen = (size_t)sqlite3_column_bytes(it->st, 0);
    *val = (const char *)sqlite3_column_text(it->st, 1);
    *vlen = (size_t)sqlite3_column_bytes(it->st, 1);
    if (*key == NULL)
        *key = "";
    if (*val == NULL)
        *val = "";
    return 1;
}

void
bfdb_index_iter_close(bfdb_index_iter *it)
{
    if (it == NULL)
        return;
    sqlite3_reset(it->st); /* the store keeps it (store_cached) */
    sqlite3_clear_bindings(it->st);
    it->s->busy = 0;
    free(it);
}

/* ---- check and rebuild ----------------------------------------------------- */

static int
count_sql(bfdb_store *s, const char *sql, uint64_t *n)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);

    if (rc != SQLITE_OK)
        return store_fail(s, rc, "could not check the index");
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *n = (uint64_t)sqlite3_column_int64(st, 0);
    else
        rc = store_fail(s, rc, "could not check the index");
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? BFDB_OK : rc;
}

static int
check_def(bfdb_store *s, const struct ixdef *d, uint64_t *missing,
          uint64_t *extra)
{
    char *n = norm_sql(d->vtype, d->path, "value");
    char *p = prefix_sql(d->prefix, d->plen, "key");
    char *scan = NULL, *q1 = NULL, *q2 = NULL;
    int rc = BFDB_ENOMEM;

    if (n && p)
        scan = sqlite3_mprintf("SELECT n, key FROM (SELECT key, %s AS n FROM"
                               " kv WHERE %s) WHERE n IS NOT NULL", n, p);
    if (scan) {
        q1 = sqlite3_mprintf("SELECT count(*) FROM (%s EXCEPT SELECT v, k"
                             " FROM buffdb_ix_%" PRId64 ")", scan, d->id);
        q2 = sqlite3_mprintf("SELECT count(*) FROM (SELECT v, k FROM"
                             " buffdb_ix_%" PRId64 " EXCEPT %s)", d->id, scan);
    }
    if (q1 && q2) {
        rc = count_sql(s, q1, missing);
        if (rc == BFDB_OK)
            rc = count_sql(s, q2, extra);
    } else {
        store_failf(s, BFDB_ENOMEM, "out of memory");
    }
    sqlite3_free(n);
    sqlite3_free(p);
    sqlite3_free(scan);
    sqlite3_free(q1);
    sqlite3_free(q2);
    return rc;
}

int
bfdb_index_check(bfdb_store *s, const char *name, uint64_t *missing,
                 uint64_t *extra)
{
    struct ixdef d;
    int rc;

    *missing = *extra = 0;
    if ((rc = kv_only(s)) != BFDB_OK)
        return rc;
    if ((rc = store_begin(s, 0)) != BFDB_OK) /* one snapshot for both */
        return rc;
    if ((rc = load_def(s, name, &d)) == BFDB_OK) {
        rc = check_def(s, &d, missing, extra);
        ixdef_clear(&d);
    }
    store_rollback(s);
    return rc;
}

/* put_triggers - (re)create d's triggers: a rebuild also repairs an
 * index whose triggers another program dropped */
static int
put_triggers(bfdb_store *s, const struct ixdef *d, const char *name)
{
    char *drop = sqlite3_mprintf("DROP TRIGGER IF EXISTS buffdb_ix_%" PRId64
                                 "_ins; DROP TRIGGER IF EXISTS buffdb_ix_%"
                                 PRId64 "_upd; DROP TRIGGER IF EXISTS"
                                 " buffdb_ix_%" PRId64 "_del;",
                                 d->id, d->id, d->id);
    char *make = trigger_sql(d, name);
    int rc;

    if (drop == NULL || make == NULL)
        rc = store_failf(s, BFDB_ENOMEM, "out of memory");
    else if ((rc = exec_sql(s, drop, "could not drop the index triggers")) ==
             BFDB_OK)
        rc = exec_sql(s, make, "could not create the index triggers");
    sqlite3_free(drop);
    sqlite3_free(make);
    return rc;
}

static int
rebuild_def(bfdb_store *s, const struct ixdef *d, const char *name,
            uint64_t *entries)
{
    char *del = sqlite3_mprintf("DELETE FROM buffdb_ix_%" PRId64, d->id);
    char *fill = fill_sql(d);
    int rc;

    if (del == NULL || fill == NULL) {
        rc = store_failf(s, BFDB_ENOMEM, "out of memory");
    } else if ((rc = exec_sql(s, del, "could not empty the index")) ==
               BFDB_OK &&
               (rc = put_triggers(s, d, name)) == BFDB_OK) {
        rc = exec_sql(s, fill, "could not fill the index");
        if (rc == BFDB_ECONSTRAINT)
            rc = store_failf(s, BFDB_EPRECOND, "index \"%s\" is unique but "
                             "the data holds a value twice: %s", name,
                             sqlite3_errmsg(s->db));
        else if (rc == BFDB_OK)
            *entries += (uint64_t)sqlite3_changes64(s->db);
    }
    sqlite3_free(del);
    sqlite3_free(fill);
    return rc;
}

int
bfdb_index_rebuild(bfdb_store *s, const char *name, uint64_t *entries)
{
    struct bfdb_index_spec *v;
    size_t n;
    uint64_t total = 0;
    int rc;

    if (entries)
        *entries = 0;
    if ((rc = kv_only(s)) != BFDB_OK)
        return rc;
    if ((rc = store_begin(s, 1)) != BFDB_OK)
        return rc;
    if ((rc = list_where(s, name, &v, &n)) != BFDB_OK)
        goto fail;
    if (name && n == 0) {
        free(v);
        rc = store_failf(s, BFDB_ENOTFOUND, "no index named \"%s\"", name);
        goto fail;
    }
    for (size_t i = 0; i < n && rc == BFDB_OK; i++) {
        struct ixdef d;
        if ((rc = load_def(s, v[i].name, &d)) == BFDB_OK) {
            rc = rebuild_def(s, &d, v[i].name, &total);
            ixdef_clear(&d);
        }
    }
    bfdb_index_list_free(v, n);
    if (rc != BFDB_OK)
        goto fail;
    if ((rc = store_commit(s)) != BFDB_OK)
        return rc;
    if (entries)
        *entries = total;
    return BFDB_OK;
fail:
    store_rollback(s);
    return rc;
}

/* triggers_present - 1 if the index's three triggers exist, 0 if not */
static int
triggers_present(bfdb_store *s, const char *name)
{
    struct ixdef d;
    uint64_t n = 0;
    int rc = load_def(s, name, &d);

    if (rc != BFDB_OK)
        return rc;
    char *q = sqlite3_mprintf("SELECT count(*) FROM sqlite_master WHERE"
                              " type = 'trigger' AND name IN ('buffdb_ix_%"
                              PRId64 "_ins', 'buffdb_ix_%" PRId64 "_upd',"
                              " 'buffdb_ix_%" PRId64 "_del')",
                              d.id, d.id, d.id);
    ixdef_clear(&d);
    if (q == NULL)
        return store_failf(s, BFDB_ENOMEM, "out of memory");
    rc = count_sql(s, q, &n);
    sqlite3_free(q);
    return rc != BFDB_OK ? rc : n == 3;
}

int
bfdb_index_recover(bfdb_store *s, int *checked, int *rebuilt)
{
    struct bfdb_index_spec *v;
    size_t n;
    int rc;

    if (checked)
        *checked = 0;
    if (rebuilt)
        *rebuilt = 0;
    if ((rc = bfdb_index_list(s, &v, &n)) != BFDB_OK)
        return rc;
    for (size_t i = 0; i < n && rc == BFDB_OK; i++) {
        uint64_t missing, extra;
        rc = bfdb_index_check(s, v[i].name, &missing, &extra);
        if (rc != BFDB_OK)
            break;
        if (checked)
            (*checked)++;
        int trig = triggers_present(s, v[i].name);
        if (trig < 0) {
            rc = trig;
            break;
        }
        if (missing || extra || !trig) {
            rc = bfdb_index_rebuild(s, v[i].name, NULL);
            if (rc == BFDB_OK && rebuilt)
                (*rebuilt)++;
        }
    }
    bfdb_index_list_free(v, n);
    return rc;
}

/* ---- conflicts --------------------------------------------------------------- */

/*
 * store_index_conflict - after a kv write failed with rc: if a unique
 * index refused it, say which, with the value and (when key is known) the
 * key already holding it, and return BFDB_EEXIST; otherwise return rc.
 */
int
store_index_conflict(bfdb_store *s, int rc, const char *key, size_t klen,
                     const char *val, size_t vlen)
{
    char name[BFDB_INDEX_NAME_MAX + 1];
    const char *p;
    struct ixdef d;

    if (rc != BFDB_ECONSTRAINT ||
        (p = strstr(s->errmsg, UNIQUE_MSG_HEAD)) == NULL)
        return rc;
    p += sizeof(UNIQUE_MSG_HEAD) - 1;
    size_t n = strcspn(p, "\"");
    if (n == 0 || n > BFDB_INDEX_NAME_MAX)
        return rc;
    memcpy(name, p, n);
    name[n] = '\0';
    if (key == NULL || load_def(s, name, &d) != BFDB_OK)
        return store_failf(s, BFDB_EEXIST, "unique index \"%s\": a value "
                           "written here is already held by another key",
                           name);

    /* the value the write would have indexed, and who holds it */
    char *nv = norm_sql(d.vtype, d.path, "?2");
    char *sql = nv ? sqlite3_mprintf("SELECT CAST(n AS TEXT), (SELECT k FROM"
                                     " buffdb_ix_%" PRId64 " WHERE v = n AND"
                                     " k != ?1 LIMIT 1) FROM (SELECT %s AS"
                                     " n)", d.id, nv)
                   : NULL;
    sqlite3_stmt *st = NULL;
    char bv[160], bk[160], bo[160];
    int found = 0;

    if (sql && sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text64(st, 1, klen ? key : "", (sqlite3_uint64)klen,
                            SQLITE_STATIC, SQLITE_UTF8);
        sqlite3_bind_text64(st, 2, vlen ? val : "", (sqlite3_uint64)vlen,
                            SQLITE_STATIC, SQLITE_UTF8);
        if (sqlite3_step(st) == SQLITE_ROW &&
            sqlite3_column_type(st, 1) != SQLITE_NULL) {
            printable(sqlite3_column_blob(st, 0),
                      (size_t)sqlite3_column_bytes(st, 0), bv, sizeof(bv));
            printable(sqlite3_column_blob(st, 1),
                      (size_t)sqlite3_column_bytes(st, 1), bo, sizeof(bo));
            found = 1;
        }
    }
    if (st)
        sqlite3_finalize(st);
    sqlite3_free(sql);
    sqlite3_free(nv);
    ixdef_clear(&d);
    printable(key, klen, bk, sizeof(bk));
    if (found)
        return store_failf(s, BFDB_EEXIST, "unique index \"%s\": value \"%s\" "
                           "is already held by key \"%s\"; key \"%s\" not "
                           "written", name, bv, bo, bk);
    return store_failf(s, BFDB_EEXIST, "unique index \"%s\": the value of "
                       "key \"%s\" is already held by another key", name, bk);
}

/* ---- server running mark ---------------------------------------------------- */

int
bfdb_store_mark_running(bfdb_store *s, int running, int *was_unclean)
{
    sqlite3_stmt *st;
    int rc;

    if (was_unclean)
        *was_unclean = 0;
    if ((rc = kv_only(s)) != BFDB_OK)
        return rc;
    if ((rc = store_begin(s, 1)) != BFDB_OK)
        return rc;
    rc = sqlite3_prepare_v2(s->db,
                            "SELECT value FROM buffdb_meta WHERE name ="
                            " 'server_running'",
                            -1, &st, NULL);
    if (rc != SQLITE_OK) {
        rc = store_fail(s, rc, "could not read the running mark");
        store_rollback(s);
        return rc;
    }
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) != 0 &&
        was_unclean)
        *was_unclean = 1;
    sqlite3_finalize(st);
    char sql[160];
    snprintf(sql, sizeof(sql),
             "INSERT INTO buffdb_meta (name, value) VALUES ('server_running',"
             " %d) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
             running ? 1 : 0);
    if ((rc = exec_sql(s, sql, "could not write the running mark")) !=
        BFDB_OK) {
        store_rollback(s);
        return rc;
    }
    return store_commit(s);
}
