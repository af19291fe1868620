/*
 * shm.c - create, attach and repair the shared region (see shm.h)
 *
 * The master writes a fresh region at every start: a temporary file,
 * formatted, then renamed over <dir>/shared, so a CLI that maps the old
 * one mid-start sees either whole.  Workers inherit the mapping across
 * fork.  Fields marked atomic in shm.h are only touched with __atomic
 * builtins (sequentially consistent: the coherence argument in
 * docs/ARCHITECTURE.md relies on that order).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/log.h"
#include "shm/shm.h"

#define ALIGN64(x) (((x) + 63) & ~(uint64_t)63)

void
bfdb_shm_dir(char *out, size_t cap, const char *shm_dir, const char *kv_store)
{
    if (shm_dir != NULL && *shm_dir != '\0')
        snprintf(out, cap, "%s", shm_dir);
    else
        snprintf(out, cap, "%s.buffdb", kv_store);
}

void
bfdb_shm_find_dir(char *out, size_t cap, const char *kv_store)
{
    char path[PATH_MAX], buf[PATH_MAX];

    snprintf(out, cap, "%s.buffdb", kv_store);
    snprintf(path, sizeof(path), "%s.buffdb/redirect", kv_store);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return;
    buf[n] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    if (buf[0] != '\0')
        snprintf(out, cap, "%s", buf);
}

int
bfdb_shm_set_redirect(const char *kv_store, const char *dir, char *err,
                      size_t errlen)
{
    char def[PATH_MAX], path[PATH_MAX + 16], tmp[PATH_MAX + 48];

    snprintf(def, sizeof(def), "%s.buffdb", kv_store);
    snprintf(path, sizeof(path), "%s/redirect", def);
    if (strcmp(def, dir) == 0) {
        if (unlink(path) != 0 && errno != ENOENT) {
            snprintf(err, errlen, "could not remove %s: %s", path,
                     strerror(errno));
            return -1;
        }
        return 0;
    }
    if (mkdir(def, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "could not create %s: %s", def, strerror(errno));
        return -1;
    }
    /* an absolute path: the CLI may run from another directory */
    char abs[PATH_MAX];
    if (realpath(dir, abs) == NULL)
        snprintf(abs, sizeof(abs), "%s", dir);
    snprintf(tmp, sizeof(tmp), "%s.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || dprintf(fd, "%s\n", abs) < 0 || close(fd) != 0 ||
        rename(tmp, path) != 0) {
        snprintf(err, errlen, "could not write %s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

static void
layout(struct bfdb_shm_hdr *h, uint32_t lock_slots)
{
    uint64_t off = ALIGN64(sizeof(*h));

    h->nstripes = BFDB_SHM_STRIPES;
    h->nrecords = BFDB_SHM_RECORDS;
    h->lock_slots = lock_slots;
    h->off_stripes = off;
    off = ALIGN64(off + (uint64_t)h->nstripes * sizeof(uint64_t));
    h->off_records = off;
    off = ALIGN64(off + (uint64_t)h->nrecords * sizeof(struct bfdb_shm_record));
    h->off_refbits = off;
    off = ALIGN64(off + BFDB_SHM_REFBITS / 8);
    h->off_locktab = off;
    off = ALIGN64(off + bfdb_locktab_shm_size(lock_slots));
    h->txn_slots = BFDB_SHM_TXN_SLOTS;
    h->off_txntab = off;
    off = ALIGN64(off + bfdb_txntab_shm_size(h->txn_slots));
    h->total_size = off;
}

static void
bind_parts(bfdb_shm *shm)
{
    char *b = shm->base;

    shm->hdr = shm->base;
    shm->stripes = (uint64_t *)(b + shm->hdr->off_stripes);
    shm->records = (struct bfdb_shm_record *)(b + shm->hdr->off_records);
    shm->refbits = (uint64_t *)(b + shm->hdr->off_refbits);
    shm->locktab = bfdb_locktab_at(b + shm->hdr->off_locktab);
    shm->txntab = bfdb_txntab_at(b + shm->hdr->off_txntab);
}

/* rm_cache - remove the LMDB files of an earlier server */
static int
rm_cache(const char *dir, char *err, size_t errlen)
{
    static const char *const files[] = {"data.mdb", "lock.mdb"};
    char p[PATH_MAX];

    for (size_t i = 0; i < 2; i++) {
        snprintf(p, sizeof(p), "%s/cache/%s", dir, files[i]);
        if (unlink(p) != 0 && errno != ENOENT) {
            snprintf(err, errlen, "could not remove the old cache %s: %s", p,
                     strerror(errno));
            return -1;
        }
    }
    snprintf(p, sizeof(p), "%s/cache", dir);
    if (mkdir(p, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "could not create %s: %s", p, strerror(errno));
        return -1;
    }
    return 0;
}

int
bfdb_shm_create(bfdb_shm *shm, const char *dir, uint32_t lock_slots,
                uint64_t cache_size, char *err, size_t errlen)
{
    struct bfdb_shm_hdr h;
    char tmp[PATH_MAX], path[PATH_MAX];
    int fd;

    memset(shm, 0, sizeof(*shm));
    snprintf(shm->dir, sizeof(shm->dir), "%s", dir);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "could not create the shared directory %s: %s",
                 dir, strerror(errno));
        return -1;
    }
    if (rm_cache(dir, err, errlen) != 0)
        return -1;

    memset(&h, 0, sizeof(h));
    layout(&h, lock_slots);
    snprintf(tmp, sizeof(tmp), "%s/shared.%ld", dir, (long)getpid());
    snprintf(path, sizeof(path), "%s/shared", dir);
    fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "could not create %s: %s", tmp, strerror(errno));
        return -1;
    }
    /* posix_fallocate, not ftruncate: a full disk fails here, not with
     * SIGBUS on first touch */
    int rc = posix_fallocate(fd, 0, (off_t)h.total_size);
    if (rc != 0) {
        snprintf(err, errlen, "could not size %s: %s", tmp, strerror(rc));
        goto fail;
    }
    shm->base = mmap(NULL, h.total_size, PROT_READ | PROT_WRITE, MAP_SHARED,
                     fd, 0);
    if (shm->base == MAP_FAILED) {
        shm->base = NULL;
        snprintf(err, errlen, "could not map %s: %s", tmp, strerror(errno));
        goto fail;
    }
    shm->size = h.total_size;
    memset(shm->base, 0, shm->size);
    memcpy(shm->base, &h, sizeof(h));
    bind_parts(shm);
    shm->locktab = bfdb_locktab_shm_init((char *)shm->base + h.off_locktab,
                                         lock_slots);
    if (shm->locktab == NULL) {
        snprintf(err, errlen, "could not set up the lock table");
        goto fail;
    }
    /* transaction numbers differ across restarts: staged rows left by a
     * crash can never be taken for a new transaction's */
    shm->txntab = bfdb_txntab_shm_init((char *)shm->base + h.off_txntab,
                                       h.txn_slots,
                                       ((uint64_t)time(NULL) << 20) | 1);
    shm->hdr->version = BFDB_SHM_VERSION;
    shm->hdr->hdr_size = sizeof(h);
    shm->hdr->master_pid = (int32_t)getpid();
    shm->hdr->started = (uint64_t)time(NULL);
    shm->hdr->cache_size = cache_size;
    shm->hdr->cache_gen = 1;
    shm->hdr->running = 1;
    memcpy(shm->hdr->magic, BFDB_SHM_MAGIC, 8); /* last: the region is whole */
    if (rename(tmp, path) != 0) {
        snprintf(err, errlen, "could not rename %s to %s: %s", tmp, path,
                 strerror(errno));
        goto fail;
    }
    close(fd);
    return 0;

fail:
    if (shm->base)
        munmap(shm->base, shm->size);
    shm->base = NULL;
    close(fd);
    unlink(tmp);
    return -1;
}

int
bfdb_shm_attach(bfdb_shm *shm, const char *dir, char *err, size_t errlen)
{
    char path[PATH_MAX];
    struct bfdb_shm_hdr h;
    struct stat sb;
    int fd;

    memset(shm, 0, sizeof(*shm));
    snprintf(shm->dir, sizeof(shm->dir), "%s", dir);
    snprintf(path, sizeof(path), "%s/shared", dir);
    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "no buffdb server state at %s: %s", path,
                 strerror(errno));
        return -1;
    }
    if (fstat(fd, &sb) != 0 || (size_t)sb.st_size < sizeof(h) ||
        pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h) ||
        memcmp(h.magic, BFDB_SHM_MAGIC, 8) != 0 ||
        h.version != BFDB_SHM_VERSION || h.hdr_size != sizeof(h) ||
        h.total_size != (uint64_t)sb.st_size) {
        close(fd);
        snprintf(err, errlen, "%s is not a buffdb shared region of version "
                 "%d", path, BFDB_SHM_VERSION);
        return -1;
    }
    shm->base = mmap(NULL, h.total_size, PROT_READ | PROT_WRITE, MAP_SHARED,
                     fd, 0);
    close(fd);
    if (shm->base == MAP_FAILED) {
        shm->base = NULL;
        snprintf(err, errlen, "could not map %s: %s", path, strerror(errno));
        return -1;
    }
    shm->size = h.total_size;
    bind_parts(shm);
    return 0;
}

void
bfdb_shm_detach(bfdb_shm *shm)
{
    if (shm->base == NULL)
        return;
    if (shm->self != NULL) {
        __atomic_store_n(&shm->self->pid, 0, __ATOMIC_SEQ_CST);
        shm->self = NULL;
    }
    munmap(shm->base, shm->size);
    shm->base = NULL;
}

int
bfdb_shm_server_alive(const bfdb_shm *shm)
{
    pid_t pid = shm->hdr->master_pid;

    return __atomic_load_n(&shm->hdr->running, __ATOMIC_SEQ_CST) &&
           pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

struct bfdb_shm_record *
bfdb_shm_claim(bfdb_shm *shm, int index, int slot)
{
    struct bfdb_shm_record *r = NULL;
    int32_t me = (int32_t)getpid();

    if (index >= 0 && index < BFDB_SHM_WORKER_RECORDS) {
        r = &shm->records[index];
        uint32_t hwm = __atomic_load_n(&shm->hdr->records_hwm,
                                       __ATOMIC_SEQ_CST);
        while (hwm < (uint32_t)index + 1 &&
               !__atomic_compare_exchange_n(&shm->hdr->records_hwm, &hwm,
                                            (uint32_t)index + 1, 0,
                                            __ATOMIC_SEQ_CST,
                                            __ATOMIC_SEQ_CST))
            ;
        memset(&r->c, 0, sizeof(r->c));
        __atomic_store_n(&r->writing, 0, __ATOMIC_SEQ_CST);
        __atomic_store_n(&r->global, 0, __ATOMIC_SEQ_CST);
        __atomic_store_n(&r->pid, me, __ATOMIC_SEQ_CST);
    } else {
        for (int i = BFDB_SHM_WORKER_RECORDS; i < BFDB_SHM_RECORDS; i++) {
            int32_t zero = 0;
            if (__atomic_compare_exchange_n(&shm->records[i].pid, &zero, me,
                                            0, __ATOMIC_SEQ_CST,
                                            __ATOMIC_SEQ_CST)) {
                r = &shm->records[i];
                memset(&r->c, 0, sizeof(r->c));
                __atomic_store_n(&r->writing, 0, __ATOMIC_SEQ_CST);
                __atomic_store_n(&r->global, 0, __ATOMIC_SEQ_CST);
                break;
            }
        }
        if (r == NULL)
            return NULL;
    }
    r->slot = slot;
    r->started = (uint64_t)time(NULL);
    shm->self = r;
    return r;
}

void
bfdb_counters_add(struct bfdb_counters *to, const struct bfdb_counters *from)
{
    const uint64_t *f = (const uint64_t *)from;
    uint64_t *t = (uint64_t *)to;

    for (size_t i = 0; i < sizeof(*from) / sizeof(uint64_t); i++)
        __atomic_fetch_add(&t[i], __atomic_load_n(&f[i], __ATOMIC_RELAXED),
                           __ATOMIC_RELAXED);
}

static void
reap_record(bfdb_shm *shm, struct bfdb_shm_record *r, pid_t pid)
{
    uint32_t w = __atomic_load_n(&r->writing, __ATOMIC_SEQ_CST);

    if (w != 0) {
        /* it may have committed: readers holding an older snapshot of this
         * stripe must not fill (the entry itself was deleted before the
         * commit, so nothing stale is left to hit) */
        __atomic_fetch_add(&shm->stripes[(w - 1) % shm->hdr->nstripes], 1,
                           __ATOMIC_SEQ_CST);
        __atomic_store_n(&r->writing, 0, __ATOMIC_SEQ_CST);
        log_info("process %ld died during a kv write: stripe %u repaired",
                 (long)pid, w - 1);
    }
    if (__atomic_load_n(&r->global, __ATOMIC_SEQ_CST)) {
        __atomic_fetch_add(&shm->hdr->global_ver, 1, __ATOMIC_SEQ_CST);
        __atomic_store_n(&r->global, 0, __ATOMIC_SEQ_CST);
        log_info("process %ld died during a raw SQL write or a commit: "
                 "repaired",
                 (long)pid);
    }
    int n = bfdb_locktab_release_pid(shm->locktab, pid);
    if (n > 0)
        log_info("released %d lock%s held by process %ld", n,
                 n == 1 ? "" : "s", (long)pid);
    bfdb_counters_add(&shm->hdr->retired, &r->c);
    memset(&r->c, 0, sizeof(r->c));
    __atomic_store_n(&r->pid, 0, __ATOMIC_SEQ_CST);
}

void
bfdb_shm_reap(bfdb_shm *shm, pid_t pid)
{
    if (shm->base == NULL)
        return;
    for (int i = 0; i < BFDB_SHM_RECORDS; i++)
        if (__atomic_load_n(&shm->records[i].pid, __ATOMIC_SEQ_CST) == pid)
            reap_record(shm, &shm->records[i], pid);
}

void
bfdb_shm_reap_dead_cli(bfdb_shm *shm)
{
    if (shm->base == NULL)
        return;
    for (int i = BFDB_SHM_WORKER_RECORDS; i < BFDB_SHM_RECORDS; i++) {
        pid_t pid = __atomic_load_n(&shm->records[i].pid, __ATOMIC_SEQ_CST);
        if (pid > 0 && kill(pid, 0) != 0 && errno == ESRCH)
            reap_record(shm, &shm->records[i], pid);
    }
}

uint32_t
bfdb_shm_stripe(const void *key, size_t len)
{
    return (uint32_t)(XXH3_64bits(key, len) & (BFDB_SHM_STRIPES - 1));
}

int
bfdb_shm_lock(const char *dir, int exclusive, char *err, size_t errlen)
{
    char path[PATH_MAX];

    snprintf(path, sizeof(path), "%s/lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "could not open %s: %s", path, strerror(errno));
        return -1;
    }
    while (flock(fd, exclusive ? LOCK_EX : LOCK_SH) != 0) {
        if (errno == EINTR)
            continue;
        snprintf(err, errlen, "could not lock %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

void
bfdb_shm_unlock(int fd)
{
    if (fd >= 0)
        close(fd);
}
