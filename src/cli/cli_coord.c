/*
 * cli_coord.c - CLI writes to a kv store that a server is running on
 *
 * `buffdb kv set|delete` and `buffdb query` on the kv store write the
 * SQLite file directly.  If a server runs on it, its workers cache kv
 * entries, so the CLI must follow the same protocol they do: hold the
 * shared flock on <shm_dir>/lock (the master takes it exclusively while
 * it starts), take a record in the shared region, the key's lock and the
 * cache's writer protocol.  With no server running there is nothing to
 * coordinate with: the next server starts with an empty cache.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/config.h"
#include "shm/cache.h"

int
cli_coord_begin(struct cli_coord *cc, const char *kv_path, const char *dir)
{
    char path[PATH_MAX], err[1024];
    struct stat sb;

    memset(cc, 0, sizeof(*cc));
    cc->lockfd = -1;
    if (dir != NULL)
        snprintf(path, sizeof(path), "%s", dir);
    else
        bfdb_shm_find_dir(path, sizeof(path), kv_path);
    if (stat(path, &sb) != 0 && errno == ENOENT)
        return 0; /* no server ever ran on this store */
    cc->lockfd = bfdb_shm_lock(path, 0, err, sizeof(err));
    if (cc->lockfd < 0)
        return cli_error("cannot coordinate with a server on %s: %s",
                         kv_path, err);
    if (bfdb_shm_attach(&cc->shm, path, err, sizeof(err)) != 0)
        return 0; /* no region: no server */
    if (!bfdb_shm_server_alive(&cc->shm)) {
        bfdb_shm_detach(&cc->shm);
        return 0;
    }
    if (bfdb_shm_claim(&cc->shm, -1, -1) == NULL) {
        bfdb_shm_detach(&cc->shm);
        cli_coord_end(cc);
        return cli_error("too many buffdb commands are writing at once; "
                         "try again");
    }
    if (bfdb_cache_open(&cc->cache, &cc->shm, err, sizeof(err)) != 0) {
        cli_coord_end(cc);
        return cli_error("%s", err);
    }
    cc->attached = 1;
    return 0;
}

void
cli_coord_end(struct cli_coord *cc)
{
    bfdb_cache_close(cc->cache);
    cc->cache = NULL;
    if (cc->shm.base != NULL)
        bfdb_shm_detach(&cc->shm);
    bfdb_shm_unlock(cc->lockfd);
    cc->lockfd = -1;
    cc->attached = 0;
}

int
cli_coord_write(struct cli_coord *cc, bfdb_store *s, const char *key,
                const char *val)
{
    struct bfdb_cache_write w;
    size_t klen = strlen(key);
    char name[1024];
    pid_t holder = 0;
    uint64_t htxn = 0;
    int locked = 0, rc;

    if (cc->attached && klen + 1 <= sizeof(name)) {
        name[0] = 'k'; /* the workers' lock name for a kv key */
        memcpy(name + 1, key, klen);
        uint32_t wait = __atomic_load_n(&cc->shm.hdr->lock_wait_ms,
                                        __ATOMIC_SEQ_CST);
        rc = bfdb_locktab_acquire(cc->shm.locktab, name, klen + 1, getpid(),
                                  0, wait ? (int)wait
                                          : BFDB_DEFAULT_LOCK_WAIT_MS,
                                  &holder, &htxn);
        if (rc != BFDB_OK)
            return cli_error("key %s is locked by process %ld; try again",
                             key, (long)holder);
        locked = 1;
    }
    if (cc->attached && bfdb_cache_write_begin(cc->cache, key, klen, &w)) {
        if (locked)
            bfdb_locktab_release(cc->shm.locktab, name, klen + 1, getpid(),
                                 0);
        return cli_error("could not drop the server's cached entry for %s",
                         key);
    }
    if (val != NULL)
        rc = bfdb_kv_set(s, key, klen, val, strlen(val));
    else
        rc = bfdb_kv_delete(s, key, klen, NULL);
    if (cc->attached)
        bfdb_cache_write_end(cc->cache, key, klen, &w, rc == BFDB_OK, val,
                             val ? strlen(val) : 0);
    if (locked)
        bfdb_locktab_release(cc->shm.locktab, name, klen + 1, getpid(), 0);
    if (rc != BFDB_OK)
        return cli_error("%s", bfdb_store_errmsg(s));
    return CLI_OK;
}
