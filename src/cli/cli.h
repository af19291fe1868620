/*
 * cli.h - the buffdb command line: `buffdb kv|blob|query|model|run ...`
 *
 * The store commands work on the store files directly (they open them
 * with src/store/, as any other process does).  Exit codes, for every
 * command:
 *   0  success (a comparison that holds)
 *   1  a comparison that does not hold, or an error (message on stderr)
 *   2  a usage error
 */
#ifndef BFDB_CLI_CLI_H
#define BFDB_CLI_CLI_H

#include "shm/cache.h"
#include "shm/shm.h"
#include "store/store.h"

#define CLI_OK 0
#define CLI_FALSE 1
#define CLI_ERROR 1
#define CLI_USAGE 2

#define CLI_DEFAULT_KV_STORE "kv_store.db"
#define CLI_DEFAULT_BLOB_STORE "blob_store.db"

int cli_kv(int argc, char **argv);
int cli_stats(int argc, char **argv);
int cli_blob(int argc, char **argv);
int cli_query(int argc, char **argv);
int cli_index(int argc, char **argv);

/* cli_model - `buffdb model ...`: a gRPC client of a running server
 * (cli_model.c); runs grpc_init()/grpc_shutdown() around the command */
int cli_model(int argc, char **argv);

/* cli_usage_error - print "buffdb: <msg>" and a hint to stderr; CLI_USAGE */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* cli_error - print "buffdb: <msg>" to stderr; returns CLI_ERROR */
int cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* cli_store_opt - parse a leading [-s PATH | --store PATH | --store=PATH]
 * from argv at *i; returns 1 if it consumed one, 0 if not, -1 on error */
int cli_store_opt(int argc, char **argv, int *i, const char **path);

/* cli_open - open a store for a command, or print why not */
bfdb_store *cli_open(int kind, const char *path);

/* cli_write_out - write to stdout or report the error; 0 or -1 */
int cli_write_out(const void *p, size_t n);

/* Coordination with a server running on the kv store (cli_coord.c). */
struct cli_coord {
    int lockfd;
    bfdb_shm shm;
    bfdb_cache *cache;
    int attached; /* a server runs: follow its protocol */
};

/* cli_coord_begin - find out whether a server runs on kv_path (its shared
 * directory is dir, or <kv_path>.buffdb when dir is NULL) and join it;
 * returns CLI_OK or CLI_ERROR (message printed) */
int cli_coord_begin(struct cli_coord *cc, const char *kv_path,
                    const char *dir);
void cli_coord_end(struct cli_coord *cc);

/* cli_coord_write - set (val != NULL) or delete key as a worker would */
int cli_coord_write(struct cli_coord *cc, bfdb_store *s, const char *key,
                    const char *val);

#endif /* BFDB_CLI_CLI_H */
