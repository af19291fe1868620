/*
 * cache.c - the LMDB key cache and its coherence protocol (see cache.h)
 *
 * LMDB layout, in <shm_dir>/cache (MDB_NOSYNC: the cache need not survive
 * a crash, the master drops it at start anyway):
 *   db "e"  key -> struct entry_hdr + value bytes
 *   db "o"  8-byte big-endian insertion sequence -> key (eviction order)
 *   db "m"  "meta" -> struct cache_meta (bytes in use, last sequence)
 * Every change happens in an LMDB write transaction, which LMDB serializes
 * across processes with a robust mutex; the coherence checks of fill and
 * write_end run inside that transaction (the argument depends on it).
 */
#include "config.h"

#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/log.h"
#include "common/util.h"
#include "shm/cache.h"

#define ENTRY_ABSENT 1u
#define SECOND_CHANCES 8
#define ENTRY_OVERHEAD 64 /* bookkeeping counted per entry */

struct entry_hdr {
    uint64_t gen;
    uint64_t seq;
    uint32_t flags;
    uint32_t pad;
};

struct cache_meta {
    uint64_t bytes;
    uint64_t seq;
    uint64_t entries;
};

struct bfdb_cache {
    MDB_env *env;
    MDB_dbi e, o, m;
    MDB_txn *rtxn;       /* the read transaction, reset between lookups */
    int rtxn_live;
    bfdb_shm *shm;
    uint64_t cap;
    size_t max_value;
    size_t max_key;
};

static const char meta_key[] = "meta";

static int
cacheable(const bfdb_cache *c, size_t klen)
{
    return c != NULL && klen > 0 && klen <= c->max_key;
}

static size_t
entry_cost(size_t klen, size_t vlen)
{
    return 2 * klen + vlen + sizeof(struct entry_hdr) + ENTRY_OVERHEAD;
}

static uint64_t
load64(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}

/* ---- coherence state in the shared region ------------------------------- */

/* writer_on - 1 if a process other than skip is writing stripe h */
static int
writer_on(bfdb_shm *shm, uint32_t h, const struct bfdb_shm_record *skip)
{
    uint32_t hwm = __atomic_load_n(&shm->hdr->records_hwm, __ATOMIC_SEQ_CST);

    for (uint32_t i = 0; i < BFDB_SHM_RECORDS; i++) {
        if (i == hwm && i < BFDB_SHM_WORKER_RECORDS)
            i = BFDB_SHM_WORKER_RECORDS; /* skip the unused worker records */
        struct bfdb_shm_record *r = &shm->records[i];
        if (r == skip || __atomic_load_n(&r->pid, __ATOMIC_SEQ_CST) == 0)
            continue;
        if (__atomic_load_n(&r->writing, __ATOMIC_SEQ_CST) == h + 1)
            return 1;
    }
    return 0;
}

/* global_on - 1 if a raw SQL write on the kv store is running */
static int
global_on(bfdb_shm *shm)
{
    uint32_t hwm = __atomic_load_n(&shm->hdr->records_hwm, __ATOMIC_SEQ_CST);

    for (uint32_t i = 0; i < BFDB_SHM_RECORDS; i++) {
        if (i == hwm && i < BFDB_SHM_WORKER_RECORDS)
            i = BFDB_SHM_WORKER_RECORDS;
        struct bfdb_shm_record *r = &shm->records[i];
        if (__atomic_load_n(&r->pid, __ATOMIC_SEQ_CST) != 0 &&
            __atomic_load_n(&r->global, __ATOMIC_SEQ_CST))
            return 1;
    }
    return 0;
}

void
bfdb_cache_global_begin(bfdb_shm *shm)
{
    if (shm == NULL || shm->base == NULL || shm->self == NULL)
        return;
    __atomic_store_n(&shm->self->global, 1, __ATOMIC_SEQ_CST);
    __atomic_fetch_add(&shm->hdr->global_ver, 1, __ATOMIC_SEQ_CST);
    /* every entry put before this point is now a miss */
    __atomic_fetch_add(&shm->hdr->cache_gen, 1, __ATOMIC_SEQ_CST);
}

void
bfdb_cache_global_end(bfdb_shm *shm)
{
    if (shm == NULL || shm->base == NULL || shm->self == NULL)
        return;
    __atomic_fetch_add(&shm->hdr->global_ver, 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&shm->self->global, 0, __ATOMIC_SEQ_CST);
}

/* ---- LMDB ------------------------------------------------------------------ */

static int
env_open(MDB_env **out, const char *dir, uint64_t cap, char *err,
         size_t errlen)
{
    char path[PATH_MAX];
    MDB_env *env;
    int rc;

    snprintf(path, sizeof(path), "%s/cache", dir);
    if ((rc = mdb_env_create(&env)) != 0)
        goto fail0;
    mdb_env_set_maxdbs(env, 4);
    mdb_env_set_maxreaders(env, 1024);
    /* headroom: LMDB copies pages on write and keeps freed ones a while */
    if (cap && (rc = mdb_env_set_mapsize(env, (size_t)(cap * 2 + (64u << 20)))))
        goto fail;
    rc = mdb_env_open(env, path,
                      MDB_NOSYNC | MDB_NOMETASYNC | MDB_NOTLS | MDB_NORDAHEAD,
                      0600);
    if (rc != 0)
        goto fail;
    *out = env;
    return 0;
fail:
    mdb_env_close(env);
fail0:
    snprintf(err, errlen, "could not open the cache in %s: %s", path,
             mdb_strerror(rc));
    return -1;
}

int
bfdb_cache_open(bfdb_cache **out, bfdb_shm *shm, char *err, size_t errlen)
{
    bfdb_cache *c;
    MDB_txn *txn;
    int rc;

    *out = NULL;
    if (shm == NULL || shm->base == NULL || shm->hdr->cache_size == 0)
        return 0;
    c = xcalloc(1, sizeof(*c));
    c->shm = shm;
    c->cap = shm->hdr->cache_size;
    c->max_value = c->cap / 64 < (1u << 20) ? (size_t)(c->cap / 64)
                                             : (size_t)(1u << 20);
    if (env_open(&c->env, shm->dir, c->cap, err, errlen) != 0) {
        free(c);
        return -1;
    }
    c->max_key = (size_t)mdb_env_get_maxkeysize(c->env);
    if ((rc = mdb_txn_begin(c->env, NULL, 0, &txn)) != 0)
        goto fail;
    if ((rc = mdb_dbi_open(txn, "e", MDB_CREATE, &c->e)) != 0 ||
        (rc = mdb_dbi_open(txn, "o", MDB_CREATE, &c->o)) != 0 ||
        (rc = mdb_dbi_open(txn, "m", MDB_CREATE, &c->m)) != 0) {
        mdb_txn_abort(txn);
        goto fail;
    }
    if ((rc = mdb_txn_commit(txn)) != 0)
        goto fail;
    if ((rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, &c->rtxn)) != 0)
        goto fail;
    mdb_txn_reset(c->rtxn);
    *out = c;
    return 0;
fail:
    snprintf(err, errlen, "could not prepare the cache: %s",
             mdb_strerror(rc));
    mdb_env_close(c->env);
    free(c);
    return -1;
}

void
bfdb_cache_close(bfdb_cache *c)
{
    if (c == NULL)
        return;
    if (c->rtxn)
        mdb_txn_abort(c->rtxn);
    mdb_env_close(c->env);
    free(c);
}

static void
refbit_set(bfdb_cache *c, const void *key, size_t klen)
{
    uint64_t h = XXH3_64bits(key, klen) % BFDB_SHM_REFBITS;
    __atomic_fetch_or(&c->shm->refbits[h / 64], 1ull << (h % 64),
                      __ATOMIC_RELAXED);
}

/* refbit_take - read and clear the reference bit */
static int
refbit_take(bfdb_cache *c, const void *key, size_t klen)
{
    uint64_t h = XXH3_64bits(key, klen) % BFDB_SHM_REFBITS;
    uint64_t bit = 1ull << (h % 64);
    return (__atomic_fetch_and(&c->shm->refbits[h / 64], ~bit,
                               __ATOMIC_RELAXED) & bit) != 0;
}

int
bfdb_cache_lookup(bfdb_cache *c, const void *key, size_t klen,
                  const void **val, size_t *vlen)
{
    MDB_val k, v;
    struct entry_hdr h;

    if (!cacheable(c, klen))
        return BFDB_CACHE_MISS;
    if (mdb_txn_renew(c->rtxn) != 0)
        return BFDB_CACHE_MISS;
    c->rtxn_live = 1;
    k.mv_data = (void *)key;
    k.mv_size = klen;
    if (mdb_get(c->rtxn, c->e, &k, &v) != 0 || v.mv_size < sizeof(h)) {
        BFDB_COUNT(c->shm->self, cache_misses);
        return BFDB_CACHE_MISS;
    }
    memcpy(&h, v.mv_data, sizeof(h));
    if (h.gen != load64(&c->shm->hdr->cache_gen)) {
        BFDB_COUNT(c->shm->self, cache_misses);
        return BFDB_CACHE_MISS;
    }
    refbit_set(c, key, klen);
    BFDB_COUNT(c->shm->self, cache_hits);
    if (h.flags & ENTRY_ABSENT)
        return BFDB_CACHE_ABSENT;
    *val = (const char *)v.mv_data + sizeof(h);
    *vlen = v.mv_size - sizeof(h);
    return BFDB_CACHE_HIT;
}

void
bfdb_cache_lookup_done(bfdb_cache *c)
{
    if (c != NULL && c->rtxn_live) {
        mdb_txn_reset(c->rtxn);
        c->rtxn_live = 0;
    }
}

/* ---- changes (inside a write transaction) -------------------------------- */

static void
meta_get(bfdb_cache *c, MDB_txn *txn, struct cache_meta *m)
{
    MDB_val k = {sizeof(meta_key), (void *)meta_key}, v;

    memset(m, 0, sizeof(*m));
    if (mdb_get(txn, c->m, &k, &v) == 0 && v.mv_size == sizeof(*m))
        memcpy(m, v.mv_data, sizeof(*m));
}

static int
meta_put(bfdb_cache *c, MDB_txn *txn, const struct cache_meta *m)
{
    MDB_val k = {sizeof(meta_key), (void *)meta_key};
    MDB_val v = {sizeof(*m), (void *)m};
    return mdb_put(txn, c->m, &k, &v, 0);
}

static void
seq_key(uint64_t seq, unsigned char out[8])
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (unsigned char)(seq & 0xff);
        seq >>= 8;
    }
}

/* entry_remove - delete key's entry and its order record, if any */
static int
entry_remove(bfdb_cache *c, MDB_txn *txn, MDB_val *k, struct cache_meta *m)
{
    MDB_val v;
    struct entry_hdr h;
    unsigned char sk[8];

    int rc = mdb_get(txn, c->e, k, &v);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    memcpy(&h, v.mv_data, sizeof(h));
    size_t cost = entry_cost(k->mv_size, v.mv_size - sizeof(h));
    seq_key(h.seq, sk);
    MDB_val o = {8, sk};
    if ((rc = mdb_del(txn, c->o, &o, NULL)) != 0 && rc != MDB_NOTFOUND)
        return rc;
    if ((rc = mdb_del(txn, c->e, k, NULL)) != 0)
        return rc;
    m->bytes = m->bytes > cost ? m->bytes - cost : 0;
    if (m->entries)
        m->entries--;
    return 0;
}

/* evict_one - drop the oldest entry not read since it was last passed
 * over (CLOCK); returns 0, MDB_NOTFOUND if the cache is empty */
static int
evict_one(bfdb_cache *c, MDB_txn *txn, struct cache_meta *m)
{
    for (int chance = 0;; chance++) {
        MDB_cursor *cur;
        MDB_val sk, key;
        int rc = mdb_cursor_open(txn, c->o, &cur);
        if (rc != 0)
            return rc;
        rc = mdb_cursor_get(cur, &sk, &key, MDB_FIRST);
        mdb_cursor_close(cur);
        if (rc != 0)
            return rc;
        /* copy both: the pages move as we write (a delete changes a page
         * already dirty in this transaction in place, so sk would then name
         * the next order record, and deleting it would orphan its entry) */
        unsigned char kbuf[512], sbuf[8];
        size_t klen = key.mv_size < sizeof(kbuf) ? key.mv_size : sizeof(kbuf);
        memcpy(kbuf, key.mv_data, klen);
        MDB_val k = {klen, kbuf};
        sk.mv_size = sk.mv_size < sizeof(sbuf) ? sk.mv_size : sizeof(sbuf);
        memcpy(sbuf, sk.mv_data, sk.mv_size);
        sk.mv_data = sbuf;

        if (chance < SECOND_CHANCES && refbit_take(c, kbuf, klen)) {
            /* read since it was queued: move it to the back */
            MDB_val v;
            if ((rc = mdb_get(txn, c->e, &k, &v)) != 0) {
                mdb_del(txn, c->o, &sk, NULL); /* orphan order record */
                continue;
            }
            size_t vlen = v.mv_size;
            unsigned char *copy = malloc(vlen);
            if (copy == NULL)
                return ENOMEM;
            memcpy(copy, v.mv_data, vlen);
            struct entry_hdr h;
            memcpy(&h, copy, sizeof(h));
            if ((rc = mdb_del(txn, c->o, &sk, NULL)) != 0) {
                free(copy);
                return rc;
            }
            h.seq = ++m->seq;
            memcpy(copy, &h, sizeof(h));
            MDB_val nv = {vlen, copy};
            unsigned char nsk[8];
            seq_key(h.seq, nsk);
            MDB_val no = {8, nsk};
            rc = mdb_put(txn, c->e, &k, &nv, 0);
            if (rc == 0)
                rc = mdb_put(txn, c->o, &no, &k, 0);
            free(copy);
            if (rc != 0)
                return rc;
            continue;
        }
        rc = entry_remove(c, txn, &k, m);
        if (rc == 0)
            mdb_del(txn, c->o, &sk, NULL); /* if the entry was gone */
        BFDB_COUNT(c->shm->self, cache_evictions);
        return rc == MDB_NOTFOUND ? 0 : rc;
    }
}

/* entry_put - replace key's entry, evicting to stay within the capacity */
static int
entry_put(bfdb_cache *c, MDB_txn *txn, MDB_val *k, uint64_t gen,
          const void *val, size_t vlen, int absent)
{
    struct cache_meta m;
    struct entry_hdr h;
    unsigned char sk[8];
    int rc;

    meta_get(c, txn, &m);
    if ((rc = entry_remove(c, txn, k, &m)) != 0)
        return rc;
    size_t cost = entry_cost(k->mv_size, vlen);
    while (m.bytes + cost > c->cap) {
        rc = evict_one(c, txn, &m);
        if (rc == MDB_NOTFOUND)
            break;
        if (rc != 0)
            return rc;
    }
    if (m.bytes + cost > c->cap)
        return meta_put(c, txn, &m); /* does not fit at all */
    memset(&h, 0, sizeof(h));
    h.gen = gen;
    h.seq = ++m.seq;
    h.flags = absent ? ENTRY_ABSENT : 0;
    MDB_val v = {sizeof(h) + vlen, NULL};
    if ((rc = mdb_put(txn, c->e, k, &v, MDB_RESERVE)) != 0)
        return rc;
    memcpy(v.mv_data, &h, sizeof(h));
    if (vlen)
        memcpy((char *)v.mv_data + sizeof(h), val, vlen);
    seq_key(h.seq, sk);
    MDB_val o = {8, sk};
    if ((rc = mdb_put(txn, c->o, &o, k, 0)) != 0)
        return rc;
    m.bytes += cost;
    m.entries++;
    return meta_put(c, txn, &m);
}

/* flush - drop everything (after the map filled up despite eviction) */
static void
flush(bfdb_cache *c)
{
    MDB_txn *txn;

    if (mdb_txn_begin(c->env, NULL, 0, &txn) != 0)
        return;
    if (mdb_drop(txn, c->e, 0) != 0 || mdb_drop(txn, c->o, 0) != 0 ||
        mdb_drop(txn, c->m, 0) != 0) {
        mdb_txn_abort(txn);
        return;
    }
    if (mdb_txn_commit(txn) == 0) {
        BFDB_COUNT(c->shm->self, cache_flushes);
        log_warn("the cache filled its map: dropped every entry");
    }
}

/* ---- the protocol --------------------------------------------------------- */

void
bfdb_cache_snapshot(bfdb_cache *c, const void *key, size_t klen,
                    struct bfdb_cache_snap *s)
{
    memset(s, 0, sizeof(*s));
    if (!cacheable(c, klen))
        return;
    bfdb_shm *shm = c->shm;
    s->stripe = bfdb_shm_stripe(key, klen);
    /* versions first, then the marks: see "Cache coherence" */
    s->gver = load64(&shm->hdr->global_ver);
    s->sver = load64(&shm->stripes[s->stripe]);
    s->gen = load64(&shm->hdr->cache_gen);
    s->ok = !writer_on(shm, s->stripe, NULL) && !global_on(shm);
}

/* still_quiet - inside a write transaction: nothing wrote the stripe (nor
 * raw SQL the store) since the versions were read, and nothing is writing
 * now but skip */
static int
still_quiet(bfdb_cache *c, uint32_t stripe, uint64_t sver, uint64_t gver,
            uint64_t gen, const struct bfdb_shm_record *skip)
{
    bfdb_shm *shm = c->shm;

    return load64(&shm->stripes[stripe]) == sver &&
           load64(&shm->hdr->global_ver) == gver &&
           load64(&shm->hdr->cache_gen) == gen &&
           !writer_on(shm, stripe, skip) && !global_on(shm);
}

/* put_checked - put key if still_quiet(), in one write transaction */
static void
put_checked(bfdb_cache *c, const void *key, size_t klen, uint32_t stripe,
            uint64_t sver, uint64_t gver, uint64_t gen,
            const struct bfdb_shm_record *skip, const void *val, size_t vlen)
{
    MDB_txn *txn;
    MDB_val k = {klen, (void *)key};

    if (mdb_txn_begin(c->env, NULL, 0, &txn) != 0)
        return;
    if (!still_quiet(c, stripe, sver, gver, gen, skip)) {
        mdb_txn_abort(txn);
        BFDB_COUNT(c->shm->self, cache_fill_skips);
        return;
    }
    int rc = entry_put(c, txn, &k, gen, val, val ? vlen : 0, val == NULL);
    if (rc == 0)
        rc = mdb_txn_commit(txn);
    else
        mdb_txn_abort(txn);
    if (rc == MDB_MAP_FULL)
        flush(c);
    else if (rc == 0)
        BFDB_COUNT(c->shm->self, cache_fills);
}

void
bfdb_cache_fill(bfdb_cache *c, const void *key, size_t klen,
                const struct bfdb_cache_snap *s, const void *val, size_t vlen)
{
    if (!cacheable(c, klen))
        return;
    if (!s->ok) {
        BFDB_COUNT(c->shm->self, cache_fill_skips);
        return;
    }
    if (val != NULL && vlen > c->max_value)
        return;
    put_checked(c, key, klen, s->stripe, s->sver, s->gver, s->gen, NULL, val,
                vlen);
}

int
bfdb_cache_write_begin(bfdb_cache *c, const void *key, size_t klen,
                       struct bfdb_cache_write *w)
{
    bfdb_shm *shm;
    MDB_txn *txn;
    int rc;

    memset(w, 0, sizeof(*w));
    if (!cacheable(c, klen))
        return 0;
    shm = c->shm;
    if (shm->self == NULL)
        return -1;
    w->stripe = bfdb_shm_stripe(key, klen);
    /* the mark first, then the version: a reader that read the version
     * before our bump sees the mark or a changed version */
    __atomic_store_n(&shm->self->writing, w->stripe + 1, __ATOMIC_SEQ_CST);
    w->sver = __atomic_add_fetch(&shm->stripes[w->stripe], 1,
                                 __ATOMIC_SEQ_CST);
    w->gver = load64(&shm->hdr->global_ver);
    w->gen = load64(&shm->hdr->cache_gen);
    w->begun = 1;

    /* drop the entry before the commit: if we die after committing, no
     * stale entry is left behind */
    MDB_val k = {klen, (void *)key};
    struct cache_meta m;
    if ((rc = mdb_txn_begin(c->env, NULL, 0, &txn)) == 0) {
        meta_get(c, txn, &m);
        rc = entry_remove(c, txn, &k, &m);
        if (rc == 0)
            rc = meta_put(c, txn, &m);
        if (rc == 0)
            rc = mdb_txn_commit(txn);
        else
            mdb_txn_abort(txn);
    }
    if (rc != 0) {
        log_error("could not drop a cache entry: %s", mdb_strerror(rc));
        bfdb_cache_write_end(c, key, klen, w, 0, NULL, 0);
        return -1;
    }
    return 0;
}

void
bfdb_cache_write_end(bfdb_cache *c, const void *key, size_t klen,
                     struct bfdb_cache_write *w, int committed,
                     const void *val, size_t vlen)
{
    if (!w->begun)
        return;
    bfdb_shm *shm = c->shm;
    if (committed && (val == NULL || vlen <= c->max_value))
        put_checked(c, key, klen, w->stripe, w->sver, w->gver, w->gen,
                    shm->self, val, vlen);
    __atomic_fetch_add(&shm->stripes[w->stripe], 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&shm->self->writing, 0, __ATOMIC_SEQ_CST);
    w->begun = 0;
}

int
bfdb_cache_keys_begin(bfdb_cache *c, bfdb_shm *shm, const char *const *keys,
                      const size_t *lens, size_t n)
{
    MDB_txn *txn;
    struct cache_meta m;
    int rc, dropped = 0;

    if (shm == NULL || shm->base == NULL || shm->self == NULL)
        return 0;
    /* the mark, then the version, as bfdb_cache_global_begin: no fill
     * from a snapshot older than this survives, and none starts while
     * the mark is up */
    __atomic_store_n(&shm->self->global, 1, __ATOMIC_SEQ_CST);
    __atomic_fetch_add(&shm->hdr->global_ver, 1, __ATOMIC_SEQ_CST);
    if (c == NULL) {
        /* no cache here: fine if the server runs none; otherwise its
         * entries cannot be reached, so all of them go */
        if (load64(&shm->hdr->cache_size) != 0) {
            __atomic_fetch_add(&shm->hdr->cache_gen, 1, __ATOMIC_SEQ_CST);
            return -1;
        }
        return 0;
    }
    /* then the entries the commit changes go, before it commits */
    if ((rc = mdb_txn_begin(c->env, NULL, 0, &txn)) == 0) {
        meta_get(c, txn, &m);
        for (size_t i = 0; i < n && rc == 0; i++) {
            if (!cacheable(c, lens[i]))
                continue;
            MDB_val k = {lens[i], (void *)keys[i]};
            uint64_t before = m.entries;
            rc = entry_remove(c, txn, &k, &m);
            dropped += m.entries < before;
        }
        if (rc == 0)
            rc = meta_put(c, txn, &m);
        if (rc == 0)
            rc = mdb_txn_commit(txn);
        else
            mdb_txn_abort(txn);
    }
    if (rc != 0) {
        log_warn("could not drop the cache entries of a commit (%s): "
                 "invalidating the whole cache", mdb_strerror(rc));
        __atomic_fetch_add(&shm->hdr->cache_gen, 1, __ATOMIC_SEQ_CST);
        return -1;
    }
    return dropped;
}

int
bfdb_cache_stats(bfdb_cache *c, struct bfdb_cache_stats *st)
{
    MDB_txn *txn;
    struct cache_meta m;

    memset(st, 0, sizeof(*st));
    if (c == NULL)
        return 0;
    st->capacity = c->cap;
    if (mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn) != 0)
        return -1;
    meta_get(c, txn, &m);
    mdb_txn_abort(txn);
    st->entries = m.entries;
    st->bytes = m.bytes;
    return 0;
}

int
bfdb_cache_reader_check(const char *shm_dir)
{
    MDB_env *env;
    char err[256];
    int dead = 0;

    if (env_open(&env, shm_dir, 0, err, sizeof(err)) != 0)
        return -1;
    if (mdb_reader_check(env, &dead) != 0)
        dead = -1;
    mdb_env_close(env);
    return dead;
}
