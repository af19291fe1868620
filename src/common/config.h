/*
 * config.h - buffdb.conf: the server's settings
 *
 * The file is INI-style `directive = value` lines (parsed with Debian's
 * libinih); `#` and `;` start comments; no sections.  Precedence: the
 * command line, then the file, then the built-in defaults below.  Read by
 * the master only, at start and on SIGHUP; workers get a copy by fork.
 * Documented for operators in man/buffdb.conf.5 and conf/buffdb.conf.
 */
#ifndef BFDB_COMMON_CONFIG_H
#define BFDB_COMMON_CONFIG_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#define BFDB_DEFAULT_LISTEN "[::1]:9313"
#define BFDB_DEFAULT_KV_STORE "kv_store.db"
#define BFDB_DEFAULT_BLOB_STORE "blob_store.db"
#define BFDB_DEFAULT_MAX_MESSAGE (64u << 20)
#define BFDB_MAX_MESSAGE_LIMIT ((uint64_t)INT32_MAX) /* gRPC takes an int */
#define BFDB_DEFAULT_GRACE_MS 10000
#define BFDB_MAX_WORKERS 256
#define BFDB_DEFAULT_CACHE_SIZE (64u << 20)
#define BFDB_DEFAULT_LOCK_SLOTS 4096
#define BFDB_DEFAULT_LOCK_WAIT_MS 5000
#define BFDB_DEFAULT_TXN_TIMEOUT_MS 30000
#define BFDB_MAX_TXN_TIMEOUT_MS (24 * 3600 * 1000)

struct bfdb_config {
    char listen[256];          /* host:port, [v6]:port */
    int workers;               /* 0: one per online CPU */
    char kv_store[PATH_MAX];
    char blob_store[PATH_MAX];
    int sync;                  /* BFDB_SYNC_NORMAL or BFDB_SYNC_FULL */
    uint64_t max_message_size; /* bytes, each direction */
    int grace_ms;              /* SIGTERM: time for calls in flight */
    int busy_timeout_ms;       /* SQLite busy timeout */
    int log_level;             /* BFDB_LOG_* */
    char shm_dir[PATH_MAX];    /* "": <kv_store>.buffdb */
    uint64_t cache_size;       /* bytes of kv entries cached; 0: no cache */
    uint32_t lock_table_size;  /* slots in the lock table */
    int lock_wait_ms;          /* how long a write waits for a key lock */
    int txn_timeout_ms;        /* a transaction's life unless it asks */
    long push_resume_ttl_ms;   /* an unfinished model push is kept this
                                * long after its last part, to resume */
};

/* bfdb_config_defaults - fill c with the built-in defaults */
void bfdb_config_defaults(struct bfdb_config *c);

/*
 * bfdb_config_load - read path into c (over what c already holds).  On an
 * error returns -1 and err says "FILE:LINE: directive: what is wrong" (or
 * why the file could not be read).
 */
int bfdb_config_load(struct bfdb_config *c, const char *path, char *err,
                     size_t errlen);

/*
 * bfdb_config_set - set one directive from a string, as the file would;
 * returns 0, or -1 with err saying what is wrong with the value.  Used for
 * the file and for command-line options alike.
 */
int bfdb_config_set(struct bfdb_config *c, const char *name,
                    const char *value, char *err, size_t errlen);

/* bfdb_parse_size - "64M", "1048576", "2G", "512K" to bytes; -1 if bad */
int bfdb_parse_size(const char *s, uint64_t *out);

/* bfdb_parse_duration_ms - "10s", "500ms", "2m", "10" (seconds) */
int bfdb_parse_duration_ms(const char *s, long *out);

#endif /* BFDB_COMMON_CONFIG_H */
