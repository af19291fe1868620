/*
 * store.h - the SQLite WAL store: the kv store and the blob store
 *
 * src/store/ is the only code that talks to SQLite.  A bfdb_store is one
 * SQLite connection to one store file; it belongs to one thread of one
 * process and is opened after fork (never inherited across fork).  Many
 * processes may open the same file at once: WAL mode lets readers run
 * beside the one writer, and a busy timeout makes writers queue.
 *
 * Every function returns 0 or a negative BFDB_E* code (common/error.h);
 * after an error bfdb_store_errmsg() says what failed, SQLite's own text
 * included.  Strings (keys, values, metadata) are byte strings with an
 * explicit length: embedded NUL bytes survive.  Output buffers are
 * malloc(3)ed, NUL-terminated one byte past their length, and owned by the
 * caller.
 *
 * On-disk formats are described in docs/ARCHITECTURE.md ("Store files").
 */
#ifndef BFDB_STORE_STORE_H
#define BFDB_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "common/cmp.h"
#include "common/error.h"

typedef struct bfdb_store bfdb_store;

enum bfdb_store_kind { BFDB_STORE_KV = 0, BFDB_STORE_BLOB = 1 };
enum bfdb_sync_mode { BFDB_SYNC_NORMAL = 0, BFDB_SYNC_FULL = 1 };

#define BFDB_BLOB_ID_MAX ((uint64_t)INT64_MAX)
#define BFDB_DEFAULT_BUSY_TIMEOUT_MS 10000
#define BFDB_DEFAULT_BLOB_INLINE_MAX (64u << 20)
#define BFDB_DEFAULT_BLOB_PART_SIZE (16u << 20)

struct bfdb_store_opts {
    int sync;              /* BFDB_SYNC_NORMAL (default) or BFDB_SYNC_FULL */
    int busy_timeout_ms;   /* 0: BFDB_DEFAULT_BUSY_TIMEOUT_MS */
    int no_create;         /* 1: fail if the file does not exist */
    int skip_schema;       /* 1: the tables exist (the master made them) */
    uint32_t blob_inline_max; /* blobs above this go to parts; 0: default */
    uint32_t blob_part_size;  /* size of one part; 0: default */
};

/*
 * bfdb_store_open - open the store file at path as a kv or blob store,
 * creating it and its tables if needed (unless opts->no_create) and
 * checking that an existing file is a store of that kind.  opts may be
 * NULL for the defaults.  On failure *out is NULL and err holds the reason.
 */
int bfdb_store_open(bfdb_store **out, int kind, const char *path,
                    const struct bfdb_store_opts *opts, char *err,
                    size_t errlen);

/* bfdb_store_close - finalize statements and close; NULL is a no-op */
void bfdb_store_close(bfdb_store *s);

/* bfdb_store_errmsg - what the last failing call on s failed at */
const char *bfdb_store_errmsg(const bfdb_store *s);

int bfdb_store_kind(const bfdb_store *s);
const char *bfdb_store_path(const bfdb_store *s);

/*
 * bfdb_store_paths_distinct - 0 if the kv and blob paths name different
 * files (different strings and, for files that exist, different inodes);
 * BFDB_EINVAL with a message otherwise.
 */
int bfdb_store_paths_distinct(const char *kv_path, const char *blob_path,
                              char *err, size_t errlen);

/*
 * bfdb_store_set_interrupt - while fn is set, long statements poll
 * fn(arg) and stop with BFDB_EINTERRUPTED when it returns nonzero (a
 * cancelled call or a passed deadline).  fn NULL removes it.
 */
void bfdb_store_set_interrupt(bfdb_store *s, int (*fn)(void *), void *arg);

/*
 * bfdb_store_set_txn_oracle - how a blob read decides whether a
 * transaction whose before-images are still in the blob store is past its
 * commit point (its kv step committed): fn(arg, txn) returns 1 if so.
 * Without one (the CLI), before-images are served until they are gone.
 */
void bfdb_store_set_txn_oracle(bfdb_store *s, int (*fn)(void *, uint64_t),
                               void *arg);

/* ---- kv store ---------------------------------------------------------- */

/* bfdb_kv_get - the value of key; BFDB_ENOTFOUND if there is none */
int bfdb_kv_get(bfdb_store *s, const char *key, size_t klen, char **val,
                size_t *vlen);

/* bfdb_kv_set - insert or replace */
int bfdb_kv_set(bfdb_store *s, const char *key, size_t klen, const char *val,
                size_t vlen);

/* bfdb_kv_delete - remove key; a missing key is not an error.  *deleted
 * (may be NULL) tells whether a row went. */
int bfdb_kv_delete(bfdb_store *s, const char *key, size_t klen, int *deleted);

/* bfdb_kv_digest - SHA-256 of key's value, for Eq/NotEq; BFDB_ENOTFOUND */
int bfdb_kv_digest(bfdb_store *s, const char *key, size_t klen,
                   uint8_t digest[BFDB_DIGEST_LEN]);

/* ---- blob store -------------------------------------------------------- */
/*
 * Ids run from 1 and are never reused, not even the highest after it is
 * deleted.  An id above BFDB_BLOB_ID_MAX is BFDB_EINVAL.  Metadata is a
 * string or absent: meta == NULL means absent (SQL NULL), a non-NULL
 * pointer with mlen 0 is the empty string.
 */

/* bfdb_blob_get - data and metadata in memory.  BFDB_ENOTFOUND for a
 * missing id; BFDB_ETOOBIG if the data is longer than max_len. */
int bfdb_blob_get(bfdb_store *s, uint64_t id, size_t max_len, void **data,
                  size_t *len, char **meta, size_t *mlen);

/* bfdb_blob_store - store a new blob; *id receives its id */
int bfdb_blob_store(bfdb_store *s, const void *data, size_t len,
                    const char *meta, size_t mlen, uint64_t *id);

/*
 * bfdb_blob_update - upstream's update matrix:
 *   data absent,  update_meta 0: nothing changes
 *   data present, update_meta 1: data and metadata replaced (meta NULL: NULL)
 *   data absent,  update_meta 1: only metadata replaced
 *   data present, update_meta 0: only data replaced
 * has_data says whether data is present.  A missing id is not an error:
 * *updated (may be NULL) is 0 then.
 */
int bfdb_blob_update(bfdb_store *s, uint64_t id, int has_data,
                     const void *data, size_t len, int update_meta,
                     const char *meta, size_t mlen, int *updated);

/* bfdb_blob_delete - delete id; a missing id is not an error */
int bfdb_blob_delete(bfdb_store *s, uint64_t id, int *deleted);

/* bfdb_blob_digest - SHA-256 of id's data, streamed; BFDB_ENOTFOUND */
int bfdb_blob_digest(bfdb_store *s, uint64_t id,
                     uint8_t digest[BFDB_DIGEST_LEN]);

/*
 * Streaming access for blobs too large to hold in memory.  A reader holds
 * a read transaction on s until closed: it sees one consistent version
 * and s must not be used for anything else meanwhile.  A writer holds the
 * store's write lock (other writers wait) until committed or aborted; the
 * total size is fixed when it is opened and exactly that many bytes must
 * be written before commit.
 */
typedef struct bfdb_blob_reader bfdb_blob_reader;
typedef struct bfdb_blob_writer bfdb_blob_writer;

int bfdb_blob_reader_open(bfdb_store *s, uint64_t id, bfdb_blob_reader **r,
                          uint64_t *size, char **meta, size_t *mlen);
/* read up to n bytes at the current position; *got 0 means the end */
int bfdb_blob_reader_read(bfdb_blob_reader *r, void *buf, size_t n,
                          size_t *got);
void bfdb_blob_reader_close(bfdb_blob_reader *r);

/*
 * bfdb_blob_writer_open - id 0 stores a new blob (its id in *id_out);
 * otherwise replaces id's data (BFDB_ENOTFOUND if it does not exist).
 * set_meta 0 leaves the metadata as it is (new blob: NULL).
 */
int bfdb_blob_writer_open(bfdb_store *s, uint64_t id, uint64_t size,
                          int set_meta, const char *meta, size_t mlen,
                          bfdb_blob_writer **w, uint64_t *id_out);
int bfdb_blob_writer_write(bfdb_blob_writer *w, const void *buf, size_t n);
/* commit makes the blob durable and frees w, whatever it returns */
int bfdb_blob_writer_commit(bfdb_blob_writer *w);
void bfdb_blob_writer_abort(bfdb_blob_writer *w);

/* ---- raw SQL ----------------------------------------------------------- */
/*
 * Raw SQL runs under an authorizer: no ATTACH/DETACH/VACUUM, no
 * transaction control (BEGIN, COMMIT, SAVEPOINT...), no pragma that
 * changes settings, no writes to buffdb's own tables, no dropping or
 * altering kv/blob.  Text holding more than one statement is BFDB_EINVAL;
 * SQL errors are BFDB_ESQL with SQLite's message.
 */
typedef struct bfdb_query bfdb_query;

enum bfdb_col_type {
    BFDB_COL_INTEGER = 1,
    BFDB_COL_REAL = 2,
    BFDB_COL_TEXT = 3,
    BFDB_COL_BLOB = 4,
    BFDB_COL_NULL = 5
};

int bfdb_query_open(bfdb_store *s, const char *sql, size_t len,
                    bfdb_query **q);
/* bfdb_query_next - 1: a row is ready; 0: done; < 0: error */
int bfdb_query_next(bfdb_query *q);
int bfdb_query_columns(bfdb_query *q);
/* bfdb_query_readonly - 1 if the statement cannot change the store */
int bfdb_query_readonly(bfdb_query *q);
int bfdb_query_type(bfdb_query *q, int col);
int64_t bfdb_query_int(bfdb_query *q, int col);
double bfdb_query_real(bfdb_query *q, int col);
/* text or blob bytes of a column, valid until the next call on q */
const void *bfdb_query_bytes(bfdb_query *q, int col, size_t *len);
void bfdb_query_close(bfdb_query *q);

/*
 * bfdb_query_execute - run one statement that returns no rows; *changes
 * receives the rows it inserted, updated or deleted.  A statement that
 * returns rows is BFDB_EINVAL.
 */
int bfdb_query_execute(bfdb_store *s, const char *sql, size_t len,
                       uint64_t *changes);

/*
 * bfdb_query_execute_hooked - bfdb_query_execute, calling before(arg) just
 * before a statement that can write runs and after(arg) once it has
 * committed or failed (the cache's raw-write protocol).  A statement that
 * fails to prepare calls neither.
 */
int bfdb_query_execute_hooked(bfdb_store *s, const char *sql, size_t len,
                              uint64_t *changes, void (*before)(void *),
                              void (*after)(void *), void *arg);

/* ---- transactions (txn.c) -------------------------------------------- */
/*
 * A transaction's writes are staged in its store files (buffdb_txn_kv,
 * buffdb_txn_blob), invisible to everyone else, and applied at commit:
 *   1. bfdb_txn_blob_prepare (blob store, one SQLite transaction): apply
 *      the staged blob writes, keeping before-images in buffdb_txn_undo and
 *      a buffdb_txn_prepared row;
 *   2. bfdb_txn_kv_commit (kv store, one SQLite transaction): apply the
 *      staged kv writes and, if step 1 ran, a buffdb_txn_done marker.
 *      This is the commit point;
 *   3. bfdb_txn_blob_finish: drop the undo images and the markers.
 * bfdb_txn_recover decides from the files alone: prepared and done means
 * committed (finish it); prepared without done is undone from the images.
 * So blobs are in place before any kv value that names them, and a crash
 * at any point leaves all of a transaction or none of it.  `txn` is the
 * transaction's number (unique across restarts).
 */
enum bfdb_txn_op { BFDB_TXN_SET = 1, BFDB_TXN_DELETE = 2, BFDB_TXN_STORE = 3,
                   BFDB_TXN_UPDATE = 4 };

/* stage a kv set (val != NULL) or delete */
int bfdb_txn_kv_stage(bfdb_store *kv, uint64_t txn, const char *key,
                      size_t klen, const char *val, size_t vlen);

/*
 * bfdb_txn_kv_read - key as the transaction sees it: its own last staged
 * write if any (*staged 1; BFDB_ENOTFOUND for a staged delete), else
 * *staged 0 and nothing read (the caller reads committed data).
 */
int bfdb_txn_kv_read(bfdb_store *kv, uint64_t txn, const char *key,
                     size_t klen, int *staged, char **val, size_t *vlen);

/* bfdb_txn_blob_reserve - an id for a blob a transaction will store: never
 * given to anyone else, even if the transaction rolls back */
int bfdb_txn_blob_reserve(bfdb_store *blob, uint64_t *id);

/* stage a blob op: BFDB_TXN_STORE (data, meta), BFDB_TXN_UPDATE (the
 * update matrix), BFDB_TXN_DELETE.  meta NULL: absent. */
int bfdb_txn_blob_stage(bfdb_store *blob, uint64_t txn, int op, uint64_t id,
                        int has_data, const void *data, size_t len,
                        int update_meta, const char *meta, size_t mlen);

/* bfdb_txn_blob_read - blob id as the transaction sees it (committed data
 * with its staged ops replayed); BFDB_ENOTFOUND, BFDB_ETOOBIG as
 * bfdb_blob_get */
int bfdb_txn_blob_read(bfdb_store *blob, uint64_t txn, uint64_t id,
                       size_t max_len, void **data, size_t *len, char **meta,
                       size_t *mlen);

/* bfdb_txn_discard - drop the transaction's staged writes from s */
int bfdb_txn_discard(bfdb_store *s, uint64_t txn);

/*
 * bfdb_txn_kv_keys - the distinct keys the transaction staged writes of
 * (what its commit will change), malloc'd: keys[i] NUL-terminated, of
 * lens[i] bytes.  Free with bfdb_txn_kv_keys_free.
 */
int bfdb_txn_kv_keys(bfdb_store *kv, uint64_t txn, char ***keys,
                     size_t **lens, size_t *n);
void bfdb_txn_kv_keys_free(char **keys, size_t *lens, size_t n);

int bfdb_txn_blob_prepare(bfdb_store *blob, uint64_t txn);
int bfdb_txn_kv_commit(bfdb_store *kv, uint64_t txn, int blob_prepared);
int bfdb_txn_blob_finish(bfdb_store *blob, bfdb_store *kv, uint64_t txn);

/*
 * bfdb_txn_recover - settle transaction txn (0: every one) from the files:
 * finish a prepared-and-done commit, undo a prepared one without its done
 * marker, discard staged writes.  had_blob says whether txn staged blob
 * writes; *committed (may be NULL) says how it ended.  For start-up (txn
 * 0) and for a commit whose worker died.
 */
int bfdb_txn_recover(bfdb_store *kv, bfdb_store *blob, uint64_t txn,
                     int had_blob, int *committed);

/* ---- secondary indexes (index.c) -------------------------------------- */
/*
 * An index maps a value derived from each kv row (the whole value, or one
 * JSON field of it) to the keys holding it.  Definitions live in the kv
 * file (buffdb_index); the entries of index number N live in the kv file
 * too (table buffdb_ix_N), kept by SQLite triggers on the kv table, so
 * every write (kv_set, kv_delete, a transaction's commit, raw SQL, the
 * CLI, another program) changes the indexes in the same SQLite
 * transaction as the row.  A write that would give a unique index's value
 * to a second key fails as a whole with BFDB_EEXIST; the message names
 * the index, and for bfdb_kv_set also the value and the key holding it
 * (a raw statement or a commit writes many rows: it names the index).
 * Rows with a NULL key (raw SQL can make one) are never indexed.
 *
 * Values and their order, by value type:
 *   STRING   bytes, compared bytewise.  With a JSON path: JSON strings
 *            (their text) and JSON integers (their decimal text).
 *   INTEGER  64-bit integers: a JSON integer, or text that is one (the
 *            whole value "42", a JSON string "42").  Anything else, and
 *            integers beyond 64 bits, is not indexed.
 *   FLOAT    numbers (integers and reals compare numerically): a JSON
 *            number, or text that is one.
 * A JSON-path index skips values that are not JSON or lack the field.
 * HASH and BTREE indexes are stored alike (SQLite B-trees); a HASH index
 * refuses Range (BFDB_EPRECOND), so it may change representation later.
 */
enum bfdb_index_type { BFDB_INDEX_HASH = 0, BFDB_INDEX_BTREE = 1 };
enum bfdb_index_vtype { BFDB_IV_STRING = 0, BFDB_IV_INTEGER = 1,
                        BFDB_IV_FLOAT = 2 };

#define BFDB_INDEX_NAME_MAX 128   /* bytes; [A-Za-z0-9_.:-] */
#define BFDB_INDEX_PREFIX_MAX 1024
#define BFDB_INDEX_PATH_MAX 256

struct bfdb_index_spec {
    char *name;           /* NUL-terminated */
    int type;             /* enum bfdb_index_type */
    int unique;
    char *key_prefix;     /* prefix_len bytes (NUL-terminated past them) */
    size_t prefix_len;    /* 0: every key */
    char *json_path;      /* NULL or "": the whole value */
    int value_type;       /* enum bfdb_index_vtype */
};

/*
 * bfdb_index_create - define an index and fill it from the existing rows
 * (one write transaction); *indexed (may be NULL) receives the number of
 * keys it holds.  BFDB_EINVAL for a bad spec (name, type, path),
 * BFDB_EEXIST if the name is taken, BFDB_EPRECOND if existing rows
 * already break unique (nothing is created then).
 */
int bfdb_index_create(bfdb_store *kv, const struct bfdb_index_spec *spec,
                      uint64_t *indexed);

/* bfdb_index_drop - remove the index, its entries and triggers;
 * BFDB_ENOTFOUND if there is none */
int bfdb_index_drop(bfdb_store *kv, const char *name);

/* bfdb_index_get - the definition of name; BFDB_ENOTFOUND.  Free the
 * strings with bfdb_index_spec_clear. */
int bfdb_index_get(bfdb_store *kv, const char *name,
                   struct bfdb_index_spec *spec);
void bfdb_index_spec_clear(struct bfdb_index_spec *spec);

/* bfdb_index_list - every definition, by name; free with
 * bfdb_index_list_free */
int bfdb_index_list(bfdb_store *kv, struct bfdb_index_spec **specs,
                    size_t *n);
void bfdb_index_list_free(struct bfdb_index_spec *specs, size_t n);

/*
 * Lookups.  An iterator holds a read transaction on kv until closed (kv
 * must not be used for anything else meanwhile, as with a blob reader).
 * bfdb_index_lookup: keys whose value equals value, in key order.
 * bfdb_index_range: keys whose value lies in [lower, upper] (NULL: that
 * side open), in value order then key order; BTREE only (BFDB_EPRECOND on
 * a HASH index).  Both: BFDB_ENOTFOUND for an unknown index, BFDB_EINVAL
 * for a value or bound that is not of the index's value type.  limit 0:
 * no limit.
 */
typedef struct bfdb_index_iter bfdb_index_iter;

int bfdb_index_lookup(bfdb_store *kv, const char *name, const char *value,
                      size_t vlen, uint32_t limit, bfdb_index_iter **it);
int bfdb_index_range(bfdb_store *kv, const char *name, const char *lower,
                     size_t llen, const char *upper, size_t ulen,
                     uint32_t limit, bfdb_index_iter **it);
/* bfdb_index_next - 1: *key and *val point at the next entry (the key's
 * current value), valid until the next call; 0: done; < 0: error */
int bfdb_index_next(bfdb_index_iter *it, const char **key, size_t *klen,
                    const char **val, size_t *vlen);
void bfdb_index_iter_close(bfdb_index_iter *it);

/*
 * bfdb_index_check - compare index name's entries with a full scan of the
 * kv table: *missing entries the scan finds and the index lacks, *extra
 * the other way round.  bfdb_index_rebuild - refill name (NULL: every
 * index) from a full scan in one transaction, re-creating its triggers;
 * *entries (may be NULL) the number of entries written.
 */
int bfdb_index_check(bfdb_store *kv, const char *name, uint64_t *missing,
                     uint64_t *extra);
int bfdb_index_rebuild(bfdb_store *kv, const char *name, uint64_t *entries);

/*
 * bfdb_index_recover - for start-up after an unclean stop: check every
 * index and rebuild the ones that differ from a full scan; *checked and
 * *rebuilt (may be NULL) count them.
 */
int bfdb_index_recover(bfdb_store *kv, int *checked, int *rebuilt);

/*
 * bfdb_store_mark_running - record in the kv file that a server runs on
 * it (running 1, at start) or stopped cleanly (running 0); with running
 * 1, *was_unclean (may be NULL) says whether the previous server never
 * recorded its clean stop.
 */
int bfdb_store_mark_running(bfdb_store *kv, int running, int *was_unclean);

/* ---- models (model.c) ------------------------------------------------- */
/*
 * The bookkeeping behind the Model service (proto/model.proto).  Parts
 * (at most BFDB_MODEL_PART_SIZE bytes of one file) are blobs in the blob
 * store, one per distinct SHA-256, listed in buffdb_model_part (blob
 * file).  Everything else is in the kv file: versions (buffdb_model_version,
 * with the service's packed ModelInfo), which parts each version uses
 * (buffdb_model_ref), aliases, and unfinished pushes
 * (buffdb_model_upload, buffdb_model_upload_part).  The kv keys upstream
 * clients read (model:<name>:<version>:metadata, model:<name>:index,
 * model:<name>:alias:<alias>) are written in the same kv transactions, so
 * they never disagree with the tables.  A part is garbage once no
 * version and no unfinished push refers to it; the caller frees garbage
 * (bfdb_model_part_free) under one lock that part writers also take.
 */
/* 4 MiB less 64 KiB: a part with its metadata and framing fits in a
 * Blob.Get answer under gRPC's default 4 MiB receive limit */
#define BFDB_MODEL_PART_SIZE ((4u << 20) - (64u << 10))
#define BFDB_MODEL_NAME_MAX 200
#define BFDB_SHA256_LEN 32
/* room for any of the kv keys below, with its NUL */
#define BFDB_MODEL_KEY_MAX (2 * BFDB_MODEL_NAME_MAX + 32)

/* the kv keys upstream clients read: model:<name>:<version>:metadata,
 * model:<name>:index, model:<name>:alias:<alias>; each returns its length */
size_t bfdb_model_key_metadata(char *buf, size_t cap, const char *name,
                               const char *version);
size_t bfdb_model_key_index(char *buf, size_t cap, const char *name);
size_t bfdb_model_key_alias(char *buf, size_t cap, const char *name,
                            const char *alias);

struct bfdb_model_part {
    uint32_t file;
    uint32_t part;
    uint8_t sha[BFDB_SHA256_LEN];
    uint64_t size;
};

/* bfdb_model_name_ok - names, versions and aliases: 1..200 bytes of
 * A-Z a-z 0-9 . _ - / + */
int bfdb_model_name_ok(const char *s);

/* blob side --------------------------------------------------------------- */

/* bfdb_model_part_put - the blob holding the part with this digest: an
 * existing one whose bytes still hash to it (*stored 0), an existing one
 * whose bytes did not and were rewritten from data (*stored 2: every
 * version using it is repaired), or a new one made from data with
 * metadata meta (*stored 1); one transaction */
int bfdb_model_part_put(bfdb_store *blob, const uint8_t sha[BFDB_SHA256_LEN],
                        const void *data, size_t len, const char *meta,
                        size_t mlen, uint64_t *blob_id, int *stored);
/* bfdb_model_part_find - the blob id and size of a part; BFDB_ENOTFOUND */
int bfdb_model_part_find(bfdb_store *blob, const uint8_t sha[BFDB_SHA256_LEN],
                         uint64_t *blob_id, uint64_t *size);
/* bfdb_model_part_free - delete the part's blob and row (*bytes: its
 * size, 0 if there was none) */
int bfdb_model_part_free(bfdb_store *blob, const uint8_t sha[BFDB_SHA256_LEN],
                         uint64_t *bytes);
/* bfdb_model_part_all - the digests of every part (for a full sweep) */
int bfdb_model_part_all(bfdb_store *blob, uint8_t (**shas)[BFDB_SHA256_LEN],
                        size_t *n);

/* kv side: unfinished pushes ----------------------------------------------- */

/* bfdb_model_upload_get - the header of the unfinished push of
 * name:version (malloc'd), its parts (file, part order; may be NULL) and
 * when it last changed; BFDB_ENOTFOUND */
int bfdb_model_upload_get(bfdb_store *kv, const char *name,
                          const char *version, void **hdr, size_t *hlen,
                          struct bfdb_model_part **parts, size_t *nparts,
                          int64_t *updated);
/* bfdb_model_upload_start - record a new unfinished push (replacing any
 * old one of name:version, whose part rows go) */
int bfdb_model_upload_start(bfdb_store *kv, const char *name,
                            const char *version, const void *hdr,
                            size_t hlen);
/* bfdb_model_upload_add - one more part of it */
int bfdb_model_upload_add(bfdb_store *kv, const char *name,
                          const char *version,
                          const struct bfdb_model_part *p);
/* bfdb_model_upload_drop - forget it; *shas (may be NULL) receives the
 * digests it used, for the caller's garbage check */
int bfdb_model_upload_drop(bfdb_store *kv, const char *name,
                           const char *version,
                           uint8_t (**shas)[BFDB_SHA256_LEN], size_t *n);
/* bfdb_model_upload_expired - name and version (2 strings each, malloc'd,
 * in one array) of pushes unchanged since before `before` (unix s) */
int bfdb_model_upload_expired(bfdb_store *kv, int64_t before, char ***nv,
                              size_t *n);

/* kv side: versions --------------------------------------------------------- */

/*
 * bfdb_model_commit - the commit point of a push, one kv transaction:
 * the version row (info: the packed ModelInfo), its part references
 * (taken from the unfinished push, which goes), the metadata key (json)
 * and the index key.  BFDB_EEXIST if the version exists.
 */
int bfdb_model_commit(bfdb_store *kv, const char *name, const char *version,
                      const void *info, size_t ilen, const char *json,
                      size_t jlen);
/* bfdb_model_resolve - the version name:version, name@alias (alias set)
 * or, both NULL/empty, the newest; *version malloc'd; BFDB_ENOTFOUND */
int bfdb_model_resolve(bfdb_store *kv, const char *name, const char *version,
                       const char *alias, char **resolved);
/* bfdb_model_info - a version's packed ModelInfo; BFDB_ENOTFOUND */
int bfdb_model_info(bfdb_store *kv, const char *name, const char *version,
                    void **info, size_t *ilen);
/* bfdb_model_parts - a version's parts in file, part order */
int bfdb_model_parts(bfdb_store *kv, const char *name, const char *version,
                     struct bfdb_model_part **parts, size_t *n);
/* bfdb_model_aliases - the aliases of name (alias[i] names version[i]),
 * by alias; version NULL: all, else only those naming it */
int bfdb_model_aliases(bfdb_store *kv, const char *name, const char *version,
                       char ***aliases, char ***versions, size_t *n);
/* bfdb_model_names - every model name with versions, by name */
int bfdb_model_names(bfdb_store *kv, char ***names, size_t *n);
/* bfdb_model_versions - name's versions, oldest first (packed infos) */
int bfdb_model_versions(bfdb_store *kv, const char *name, char ***versions,
                        void ***infos, size_t **ilens, size_t *n);
/* bfdb_model_delete - drop a version, its references, its metadata key,
 * and (force) the aliases naming it (else BFDB_EPRECOND naming one);
 * rewrites the index key.  *shas: the digests it used (garbage check). */
int bfdb_model_delete(bfdb_store *kv, const char *name, const char *version,
                      int force, uint8_t (**shas)[BFDB_SHA256_LEN],
                      size_t *n, char ***removed, size_t *nremoved);
/* bfdb_model_alias_set - point alias at version (NULL/"" removes it);
 * *previous (malloc'd, "" if none); BFDB_ENOTFOUND if version is not one */
int bfdb_model_alias_set(bfdb_store *kv, const char *name, const char *alias,
                         const char *version, char **previous);
/* bfdb_model_sha_used - 1 if a version or an unfinished push uses the
 * part, 0 if not, < 0 on error */
int bfdb_model_sha_used(bfdb_store *kv, const uint8_t sha[BFDB_SHA256_LEN]);

/* bfdb_model_strv_free - free an array of n malloc'd strings */
void bfdb_model_strv_free(char **v, size_t n);

#endif /* BFDB_STORE_STORE_H */
