/*
 * store_int.h - what the files of src/store/ share; not for other code
 */
#ifndef BFDB_STORE_STORE_INT_H
#define BFDB_STORE_STORE_INT_H

#include <sqlite3.h>

#include "store/store.h"

/* Prepared statements, prepared once at open and reused. */
enum store_stmt {
    ST_KV_GET,
    ST_KV_SET,
    ST_KV_DELETE,
    ST_BLOB_INFO,
    ST_BLOB_UNDO,
    ST_BLOB_NEXT_ID,
    ST_BLOB_RESERVE,
    ST_BLOB_INSERT,
    ST_BLOB_SET_DATA,
    ST_BLOB_SET_META,
    ST_BLOB_SET_BOTH,
    ST_BLOB_DELETE,
    ST_BLOB_EXISTS,
    ST_PART_LIST,
    ST_PART_INSERT,
    ST_PART_CLEAR,
    ST_BEGIN_IMMEDIATE,
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST__COUNT
};

struct bfdb_store {
    sqlite3 *db;
    int kind;
    char *path;
    uint32_t blob_inline_max;
    uint32_t blob_part_size;
    sqlite3_stmt *st[ST__COUNT];
    int (*interrupt_fn)(void *);
    void *interrupt_arg;
    int busy;               /* a reader, writer or query is open on s */
    int busy_ms;            /* the busy timeout */
    int raw_dml;            /* the raw statement being prepared writes rows */
    int (*txn_committed)(void *, uint64_t); /* see set_txn_oracle */
    struct {                /* statements built at run time (store_cached) */
        char *sql;
        sqlite3_stmt *st;
        unsigned long used;
    } cache[16];
    unsigned long cache_tick;
    void *txn_arg;
    char errmsg[1024];
};

/* store_error - map a SQLite result code to a BFDB_E* code */
int store_error(int sqlite_rc);

/* store_fail - record "<what>: <sqlite message>" and return the code */
int store_fail(bfdb_store *s, int sqlite_rc, const char *what);

/* store_failf - record a formatted message and return code */
int store_failf(bfdb_store *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* store_stmt - the reset, unbound statement i */
sqlite3_stmt *store_stmt(bfdb_store *s, int i);

/*
 * store_cached - a prepared statement for sql, kept by s for the next call
 * with the same text (the least recently used of 16 goes): the caller
 * binds, steps and sqlite3_reset()s it, and never finalizes it.  SQLite
 * prepares it again by itself after a schema change.
 */
int store_cached(bfdb_store *s, const char *sql, sqlite3_stmt **st);

/* store_exec_stmt - step statement i once (no rows expected) and reset */
int store_exec_stmt(bfdb_store *s, int i, const char *what);

int store_begin(bfdb_store *s, int immediate);
int store_commit(bfdb_store *s);
void store_rollback(bfdb_store *s);

/* store_index_conflict - after kv write failed with rc: BFDB_EEXIST with
 * a message naming the unique index (and, key known, the value and the
 * key holding it) if one refused it; else rc unchanged (index.c) */
int store_index_conflict(bfdb_store *s, int rc, const char *key, size_t klen,
                         const char *val, size_t vlen);

/* store_check_free - BFDB_EINTERNAL if a reader/writer/query is open */
int store_check_free(bfdb_store *s);

#endif /* BFDB_STORE_STORE_INT_H */
