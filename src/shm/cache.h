/*
 * cache.h - the kv key cache: LMDB in front of the SQLite kv store
 *
 * One LMDB environment in <shm_dir>/cache, opened by each worker after
 * fork (and by the CLI), holding recent kv entries (a value, or "no such
 * key").  Reads take no lock and make no system call on a hit.  It is
 * never the only copy of anything: every write goes to SQLite first in
 * the order below, and the master drops the cache at start.
 *
 * Coherence (why it is right: docs/ARCHITECTURE.md, "Cache coherence"):
 *   reader:  lookup; on a miss take a snapshot (stripe version, global
 *            version), read SQLite, then fill only if no write on that
 *            stripe started or is running since the snapshot, checked
 *            inside the LMDB write transaction that puts the entry.
 *   writer:  mark its record writing the stripe, bump the stripe version,
 *            delete the entry (LMDB commit), commit to SQLite, then put the
 *            new value only if it is still the stripe's only writer, bump
 *            the version, clear the mark.
 *   raw SQL: the same with the global version; begin also moves the cache
 *            generation, which makes every entry a miss.
 *   a commit whose keys are known (a transaction's, a model push's, an
 *            alias change): the raw-write mark and version, but it drops
 *            only the entries of the keys it writes.
 * The cache is bounded (cache_size): entries are evicted CLOCK-style
 * (insertion order with a second chance for entries read since).
 */
#ifndef BFDB_SHM_CACHE_H
#define BFDB_SHM_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "shm/shm.h"

typedef struct bfdb_cache bfdb_cache;

enum bfdb_cache_result { BFDB_CACHE_MISS = 0, BFDB_CACHE_HIT = 1,
                         BFDB_CACHE_ABSENT = 2 };

/* bfdb_cache_open - open the cache of shm (after fork); NULL *out and
 * 0 when the region says the cache is off.  -1 with err on failure. */
int bfdb_cache_open(bfdb_cache **out, bfdb_shm *shm, char *err,
                    size_t errlen);
void bfdb_cache_close(bfdb_cache *c);

/*
 * bfdb_cache_lookup - BFDB_CACHE_HIT with *val and *vlen pointing into the
 * map (valid until bfdb_cache_lookup_done), BFDB_CACHE_ABSENT if the key
 * is known not to exist, BFDB_CACHE_MISS otherwise.  Always pair with
 * bfdb_cache_lookup_done.
 */
int bfdb_cache_lookup(bfdb_cache *c, const void *key, size_t klen,
                      const void **val, size_t *vlen);
void bfdb_cache_lookup_done(bfdb_cache *c);

struct bfdb_cache_snap {
    uint32_t stripe;
    uint64_t sver;
    uint64_t gver;
    uint64_t gen;
    int ok;         /* no write was running when it was taken */
};

/* bfdb_cache_snapshot - before reading SQLite after a miss */
void bfdb_cache_snapshot(bfdb_cache *c, const void *key, size_t klen,
                         struct bfdb_cache_snap *s);

/* bfdb_cache_fill - after reading SQLite: val NULL means "no such key".
 * Puts the entry only if the snapshot still holds. */
void bfdb_cache_fill(bfdb_cache *c, const void *key, size_t klen,
                     const struct bfdb_cache_snap *s, const void *val,
                     size_t vlen);

struct bfdb_cache_write {
    uint32_t stripe;
    uint64_t sver;   /* the stripe version after our own bump */
    uint64_t gver;
    uint64_t gen;
    int begun;
};

/*
 * bfdb_cache_write_begin - before committing a write of key to SQLite.
 * Returns 0, or -1 if the cache could not drop the entry (then the
 * write must not go ahead: the old value could stay cached).
 */
int bfdb_cache_write_begin(bfdb_cache *c, const void *key, size_t klen,
                           struct bfdb_cache_write *w);

/* bfdb_cache_write_end - after the SQLite commit (or its failure,
 * committed 0): put val (NULL: deleted) if no other write interfered */
void bfdb_cache_write_end(bfdb_cache *c, const void *key, size_t klen,
                          struct bfdb_cache_write *w, int committed,
                          const void *val, size_t vlen);

/* bfdb_cache_global_begin / _end - around a raw SQL statement that may
 * write the kv store.  These work on the region alone, so c may be NULL
 * when only shm is at hand (the CLI without a cache). */
void bfdb_cache_global_begin(bfdb_shm *shm);
void bfdb_cache_global_end(bfdb_shm *shm);

/*
 * bfdb_cache_keys_begin - around a commit that writes exactly the keys
 * keys[0..n) (of lens[0..n) bytes) and no other kv key (a transaction's, a model push's, an
 * alias change): the raw-write mark and global version
 * bump of bfdb_cache_global_begin, but instead of moving the generation
 * (every entry a miss) only those keys' entries are dropped, in one LMDB
 * write transaction, before the commit.  If they cannot be dropped the
 * generation moves after all.  c may be NULL (no cache in this process;
 * if the region says the server has one, the generation moves).  End with
 * bfdb_cache_global_end.  Returns the entries dropped, or -1 if the
 * whole cache was invalidated instead.
 */
int bfdb_cache_keys_begin(bfdb_cache *c, bfdb_shm *shm,
                          const char *const *keys, const size_t *lens,
                          size_t n);

struct bfdb_cache_stats {
    uint64_t entries;
    uint64_t bytes;
    uint64_t capacity;
};
int bfdb_cache_stats(bfdb_cache *c, struct bfdb_cache_stats *st);

/* bfdb_cache_reader_check - master, after reaping a worker: clear the LMDB
 * reader slots of dead processes (opens and closes the environment, so
 * call it only between forks).  Returns the slots cleared, or -1. */
int bfdb_cache_reader_check(const char *shm_dir);

#endif /* BFDB_SHM_CACHE_H */
