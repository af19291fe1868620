/*
 * cli_stats.c - `buffdb stats [-s KV_STORE] [--shm-dir DIR]`
 *
 * Reads the shared region of the server running on a kv store and prints
 * its counters: per worker process (and CLI writer) the cache hits,
 * misses, fills, fills skipped because a write raced them, evictions and
 * calls and errors per method; the totals include processes that have
 * exited.  Read-only: it takes no lock and changes nothing.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "shm/cache.h"
#include "worker/worker.h"

static uint64_t
sum(const uint64_t *v)
{
    uint64_t n = 0;
    for (int i = 0; i < BFDB_SHM_METHODS; i++)
        n += v[i];
    return n;
}

static void
row(const char *who, long pid, const struct bfdb_counters *c)
{
    printf("%-8s %8ld %10" PRIu64 " %10" PRIu64 " %9" PRIu64 " %8" PRIu64
           " %9" PRIu64 " %10" PRIu64 " %8" PRIu64 "\n",
           who, pid, c->cache_hits, c->cache_misses, c->cache_fills,
           c->cache_fill_skips, c->cache_evictions, sum(c->calls),
           sum(c->errors));
}

static void
show_lock(void *arg, const char *name, size_t len, pid_t pid, uint64_t txn)
{
    (void)arg;
    printf("  %.*s%s  pid %ld%s\n", (int)(len < BFDB_LOCKTAB_NAME_SHOWN
                                               ? len
                                               : BFDB_LOCKTAB_NAME_SHOWN),
           name, len > BFDB_LOCKTAB_NAME_SHOWN ? "..." : "", (long)pid,
           txn ? " (transaction)" : "");
}

int
cli_stats(int argc, char **argv)
{
    const char *kv = CLI_DEFAULT_KV_STORE, *dir = NULL;
    char path[PATH_MAX], err[1024];
    int i = 1, r, show_locks = 0;
    bfdb_shm shm;

    while (i < argc) {
        if ((r = cli_store_opt(argc, argv, &i, &kv)) < 0)
            return CLI_USAGE;
        if (r)
            continue;
        if (strcmp(argv[i], "--shm-dir") == 0 && i + 1 < argc) {
            dir = argv[i + 1];
            i += 2;
        } else if (strcmp(argv[i], "--locks") == 0) {
            show_locks = 1;
            i++;
        } else {
            return cli_usage_error("stats: unknown argument '%s'", argv[i]);
        }
    }
    if (dir != NULL)
        snprintf(path, sizeof(path), "%s", dir);
    else
        bfdb_shm_find_dir(path, sizeof(path), kv);
    if (bfdb_shm_attach(&shm, path, err, sizeof(err)) != 0)
        return cli_error("%s (is a server running on %s?)", err, kv);

    struct bfdb_shm_hdr *h = shm.hdr;
    int alive = bfdb_shm_server_alive(&shm);
    printf("server: %s (master pid %ld, started %" PRIu64 "s ago)\n",
           alive ? "running" : "not running", (long)h->master_pid,
           (uint64_t)time(NULL) - h->started);

    if (h->cache_size == 0) {
        printf("cache: off\n");
    } else {
        bfdb_cache *c = NULL;
        struct bfdb_cache_stats cs;
        if (bfdb_cache_open(&c, &shm, err, sizeof(err)) == 0 && c != NULL &&
            bfdb_cache_stats(c, &cs) == 0)
            printf("cache: %" PRIu64 " entries, %" PRIu64 " of %" PRIu64
                   " bytes\n", cs.entries, cs.bytes, cs.capacity);
        else
            printf("cache: unreadable (%s)\n", err);
        bfdb_cache_close(c);
    }
    struct bfdb_locktab_stats ls;
    bfdb_locktab_stats(shm.locktab, &ls);
    printf("locks: %u held of %u slots; %" PRIu64 " acquired, %" PRIu64
           " waited, %" PRIu64 " timed out\n", ls.held, ls.slots, ls.acquired,
           ls.waits, ls.timeouts);
    if (show_locks)
        bfdb_locktab_foreach(shm.locktab, show_lock, NULL);

    printf("\n%-8s %8s %10s %10s %9s %8s %9s %10s %8s\n", "process", "pid",
           "hits", "misses", "fills", "skipped", "evictions", "calls",
           "errors");
    struct bfdb_counters total, retired;
    memset(&total, 0, sizeof(total));
    memset(&retired, 0, sizeof(retired));
    bfdb_counters_add(&retired, &h->retired);
    for (int k = 0; k < BFDB_SHM_RECORDS; k++) {
        struct bfdb_shm_record *rec = &shm.records[k];
        pid_t pid = __atomic_load_n(&rec->pid, __ATOMIC_RELAXED);
        if (pid == 0)
            continue;
        struct bfdb_counters c;
        memset(&c, 0, sizeof(c));
        bfdb_counters_add(&c, &rec->c);
        char who[24];
        if (rec->slot >= 0)
            snprintf(who, sizeof(who), "worker%d", rec->slot);
        else
            snprintf(who, sizeof(who), "cli");
        row(who, (long)pid, &c);
        bfdb_counters_add(&total, &c);
    }
    row("exited", 0, &retired);
    bfdb_counters_add(&total, &retired);
    row("total", 0, &total);

    printf("\n%-32s %10s %8s\n", "method", "calls", "errors");
    for (int k = 0; k < worker_nmethods && k < BFDB_SHM_METHODS; k++)
        printf("%-32s %10" PRIu64 " %8" PRIu64 "\n", worker_methods[k]->path,
               total.calls[k], total.errors[k]);
    bfdb_shm_detach(&shm);
    return CLI_OK;
}
