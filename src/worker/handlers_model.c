/*
 * handlers_model.c - the buffdb.model.Model service (proto/model.proto)
 *
 * Push receives a header and then chunks; it cuts each file into parts of
 * BFDB_MODEL_PART_SIZE bytes, hashes each part and the whole file as the
 * bytes arrive, and stores each part (once per distinct digest) as soon as
 * it is complete, recording it under the unfinished push.  When the client
 * half-closes with every byte in and every digest right, one kv
 * transaction makes the version appear (bfdb_model_commit).  A push that
 * ends early keeps what it stored, for a later Push of the same files to
 * resume; the worker tidies pushes left alone past push_resume_ttl.
 *
 * Locks (the lock table, this worker as owner, released with the call):
 *   "P" name NUL version  one push of a version at a time (try-lock:
 *                         a second push is ABORTED at once)
 *   "M"                   part writes and garbage checks: a part is never
 *                         freed between another push finding it and that
 *                         push recording that it uses it
 * Writes to kv keys (the metadata, index and alias keys) go through the
 * cache's commit protocol: a push's commit and an alias change drop the
 * entries of the keys they write (bfdb_cache_keys_begin); a delete,
 * which also removes the aliases of the version (known only inside its
 * SQLite transaction), invalidates the whole cache (global_begin).  All
 * end with bfdb_cache_global_end.
 *
 * Pull streams from a pooled blob connection: one part (at most 4 MiB) is
 * read and checked against its digest, then sent in chunks.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "common/cmp.h"
#include "common/log.h"
#include "common/util.h"
#include "common/weights.h"
#include "model.pb-c.h"
#include "worker/handlers.h"
#include "worker/worker.h"

#define MODEL_MAX_FILES 10000
#define MODEL_FILE_MAX (1ull << 40)   /* 1 TiB: a file */
#define MODEL_TOTAL_MAX (16ull << 40) /* 16 TiB: a version */
#define MODEL_PATH_MAX 1024
#define PULL_CHUNK_DEFAULT (1u << 20)
#define PULL_CHUNK_MAX ((4u << 20) - (64u << 10))

typedef Buffdb__Model__ModelInfo ModelInfo;
typedef Buffdb__Model__FileInfo FileInfo;

/* ---- small helpers ----------------------------------------------------------- */

/* bstr - a NUL-terminated copy of a bytes field (string in the proto) */
static char *
bstr(const ProtobufCBinaryData *b)
{
    char *s = malloc(b->len + 1);
    if (s == NULL)
        return NULL;
    if (b->len)
        memcpy(s, b->data, b->len);
    s[b->len] = '\0';
    return s;
}

static ProtobufCBinaryData
bin(const char *s)
{
    ProtobufCBinaryData b = {s ? strlen(s) : 0, (uint8_t *)s};
    return b;
}

static void
hex32(const uint8_t d[32], char out[65])
{
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hx[d[i] >> 4];
        out[2 * i + 1] = hx[d[i] & 15];
    }
    out[64] = '\0';
}

/* unhex32 - 64 hex digits (either case) to 32 bytes; -1 if not */
static int
unhex32(const ProtobufCBinaryData *b, uint8_t out[32])
{
    if (b->len != 64)
        return -1;
    for (int i = 0; i < 64; i++) {
        int c = b->data[i], v;
        if (c >= '0' && c <= '9')
            v = c - '0';
        else if (c >= 'a' && c <= 'f')
            v = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v = c - 'A' + 10;
        else
            return -1;
        if (i % 2 == 0)
            out[i / 2] = (uint8_t)(v << 4);
        else
            out[i / 2] |= (uint8_t)v;
    }
    return 0;
}

/* name_field - a name/version/alias field checked; NULL after failing */
static char *
name_field(struct call *c, const ProtobufCBinaryData *b, const char *what,
           int optional)
{
    if (optional && b->len == 0)
        return strdup("");
    char *s = bstr(b);
    if (s == NULL) {
        call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return NULL;
    }
    if (!bfdb_model_name_ok(s) || strlen(s) != b->len) {
        char buf[160];
        call_fail(c, GRPC_STATUS_INVALID_ARGUMENT,
                  "%s \"%s\" is not valid: 1 to %d characters of A-Z a-z 0-9 "
                  ". _ - / +",
                  what, h_printable(b, buf, sizeof(buf)),
                  BFDB_MODEL_NAME_MAX);
        free(s);
        return NULL;
    }
    return s;
}

/* path_ok - relative, '/'-separated, no empty, "." or ".." component */
static int
path_ok(const ProtobufCBinaryData *b)
{
    if (b->len == 0 || b->len > MODEL_PATH_MAX || b->data[0] == '/' ||
        memchr(b->data, '\0', b->len) != NULL ||
        !bfdb_utf8_valid(b->data, b->len))
        return 0;
    size_t start = 0;
    for (size_t i = 0; i <= b->len; i++) {
        if (i < b->len && b->data[i] != '/')
            continue;
        size_t n = i - start;
        const char *comp = (const char *)b->data + start;
        if (n == 0 || (n == 1 && comp[0] == '.') ||
            (n == 2 && comp[0] == '.' && comp[1] == '.'))
            return 0;
        start = i + 1;
    }
    return 1;
}

/* free_unused - free each part no version or unfinished push uses, under
 * the "M" lock; counts what went */
static void
free_unused(struct worker *w, uint8_t (*shas)[BFDB_SHA256_LEN], size_t n,
            uint64_t *parts, uint64_t *bytes)
{
    if (parts)
        *parts = 0;
    if (bytes)
        *bytes = 0;
    if (n == 0)
        return;
    if (bfdb_locktab_acquire(w->shm->locktab, "M", 1, w->pid, 0,
                             w->cfg->lock_wait_ms, NULL, NULL) != BFDB_OK) {
        log_warn("model parts not freed now (lock busy): the next start "
                 "frees them");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t b;
        int used = bfdb_model_sha_used(w->kv, shas[i]);
        if (used != 0) {
            if (used < 0)
                log_warn("could not check a model part: %s",
                         bfdb_store_errmsg(w->kv));
            continue;
        }
        if (bfdb_model_part_free(w->blob, shas[i], &b) != BFDB_OK) {
            log_warn("could not free a model part: %s",
                     bfdb_store_errmsg(w->blob));
            continue;
        }
        if (b && parts)
            (*parts)++;
        if (bytes)
            *bytes += b;
    }
    bfdb_locktab_release(w->shm->locktab, "M", 1, w->pid, 0);
}

/* part_get - the bytes of the blob holding a part (malloc'd) and whether
 * they are the part's (size and SHA-256, *digest theirs); BFDB_ENOTFOUND
 * if the blob is gone, another store error with nothing read */
static int
part_get(bfdb_store *blob, uint64_t blob_id, const uint8_t sha[32],
         uint64_t size, void **data, size_t *len, uint8_t digest[32],
         int *match)
{
    size_t mlen;
    char *meta = NULL;
    int rc = bfdb_blob_get(blob, blob_id, BFDB_MODEL_PART_SIZE, data, len,
                           &meta, &mlen);

    free(meta);
    if (rc != BFDB_OK)
        return rc;
    bfdb_sha256_digest(*data, *len, digest);
    *match = *len == size && memcmp(digest, sha, 32) == 0;
    return BFDB_OK;
}

/* read_part - the data of a part, checked against its digest; on failure
 * the call is failed and NULL returned */
static uint8_t *
read_part(struct call *c, bfdb_store *blob, uint64_t blob_id,
          const uint8_t sha[32], uint64_t size, const char *where,
          int *gone)
{
    void *data;
    size_t len;
    uint8_t d[32];
    int match;

    if (gone)
        *gone = 0;
    int rc = part_get(blob, blob_id, sha, size, &data, &len, d, &match);
    if (rc == BFDB_ENOTFOUND) {
        if (gone) { /* the caller says why */
            *gone = 1;
            return NULL;
        }
        call_fail(c, GRPC_STATUS_DATA_LOSS, "%s: its blob %" PRIu64
                  " is gone", where, blob_id);
        return NULL;
    }
    if (rc != BFDB_OK) {
        h_store_fail(c, rc, bfdb_store_errmsg(blob));
        return NULL;
    }
    if (!match) {
        char want[65], got[65];
        hex32(sha, want);
        hex32(d, got);
        call_fail(c, GRPC_STATUS_DATA_LOSS, "%s (blob %" PRIu64 ") is not "
                  "what was pushed: %zu bytes with sha256 %s, expected %"
                  PRIu64 " bytes with %s", where, blob_id, len, got, size,
                  want);
        free(data);
        return NULL;
    }
    return data;
}

/* ---- Push --------------------------------------------------------------------- */

struct push_state {
    Buffdb__Model__ModelInfo *hdr; /* the client's header (unpacked) */
    uint8_t *hdr_packed;
    size_t hdr_len;
    char *name, *version;
    char *lockname;                /* the push lock, while held */
    size_t locklen;
    uint32_t nfiles;
    uint32_t cur;                  /* the file being received */
    uint64_t *got;                 /* per file: bytes accounted for */
    uint64_t **blob_ids;           /* per file: parts' blob ids */
    uint32_t *nparts;              /* per file: parts stored */
    uint32_t *idcap;               /* per file: room in blob_ids[f] */
    uint8_t (*digest)[32];         /* per file, once complete */
    bfdb_sha256 *fh;               /* the current file's running hash */
    bfdb_sha256 *ph;               /* the current part's, alongside */
    uint8_t *buf;                  /* the current part */
    size_t buflen;
    uint64_t total, held_at_start;
    uint32_t gpart;                /* parts so far, all files: metadata */
    int failed;
};

/*
 * push_lock_take - the lock "P" name NUL version, without waiting: one
 * push (or abort, or expiry) of a version at a time.  BFDB_EBUSY if held,
 * here or on another worker; on BFDB_OK *lock (malloc'd) and *len name it
 * for push_lock_drop.
 */
static int push_active(const char *name, const char *version);

static int
push_lock_take(struct worker *w, const char *name, const char *version,
               char **lock, size_t *len)
{
    size_t nl = strlen(name), vl = strlen(version);
    char *ln = malloc(2 + nl + vl);
    int rc;

    *lock = NULL;
    if (ln == NULL)
        return BFDB_ENOMEM;
    ln[0] = 'P';
    memcpy(ln + 1, name, nl);
    ln[1 + nl] = '\0';
    memcpy(ln + 2 + nl, version, vl);
    rc = push_active(name, version)
             ? BFDB_EBUSY
             : bfdb_locktab_acquire(w->shm->locktab, ln, 2 + nl + vl, w->pid,
                                    0, 0, NULL, NULL);
    if (rc != BFDB_OK) {
        free(ln);
        return rc;
    }
    *lock = ln;
    *len = 2 + nl + vl;
    return BFDB_OK;
}

static void
push_lock_drop(struct worker *w, char *lock, size_t len)
{
    bfdb_locktab_release(w->shm->locktab, lock, len, w->pid, 0);
    free(lock);
}

/* The lock table's owner is the worker, and a worker's locks are
 * re-entrant: two pushes (or a push and an abort) of one version on the
 * same worker are told apart here.  One thread: no locking. */
static struct push_state *active[64];

static int
push_active(const char *name, const char *version)
{
    for (size_t i = 0; i < sizeof(active) / sizeof(active[0]); i++)
        if (active[i] && strcmp(active[i]->name, name) == 0 &&
            strcmp(active[i]->version, version) == 0)
            return 1;
    return 0;
}

static void
push_forget(struct push_state *p)
{
    for (size_t i = 0; i < sizeof(active) / sizeof(active[0]); i++)
        if (active[i] == p)
            active[i] = NULL;
}

static int
push_remember(struct push_state *p)
{
    for (size_t i = 0; i < sizeof(active) / sizeof(active[0]); i++)
        if (active[i] == NULL) {
            active[i] = p;
            return 0;
        }
    return -1;
}

static void
push_free(struct push_state *p)
{
    push_forget(p);
    if (p->hdr)
        buffdb__model__model_info__free_unpacked(p->hdr, NULL);
    free(p->hdr_packed);
    free(p->name);
    free(p->version);
    free(p->lockname);
    free(p->got);
    if (p->blob_ids)
        for (uint32_t i = 0; i < p->nfiles; i++)
            free(p->blob_ids[i]);
    free(p->blob_ids);
    free(p->nparts);
    free(p->idcap);
    free(p->digest);
    if (p->fh)
        bfdb_sha256_free(p->fh);
    if (p->ph)
        bfdb_sha256_free(p->ph);
    free(p->buf);
    free(p);
}

static uint64_t
fsize(const struct push_state *p, uint32_t f)
{
    return p->hdr->files[f]->size;
}

/* add_blob_id - record the blob of file f's next part (the array grows
 * as parts arrive: a header's sizes are only claims); 0 or -1 */
static int
add_blob_id(struct push_state *p, uint32_t f, uint64_t id)
{
    if (p->nparts[f] == p->idcap[f]) {
        uint32_t nc = p->idcap[f] ? p->idcap[f] * 2 : 16;
        uint64_t *nv = realloc(p->blob_ids[f], nc * sizeof(*nv));
        if (nv == NULL)
            return -1;
        p->blob_ids[f] = nv;
        p->idcap[f] = nc;
    }
    p->blob_ids[f][p->nparts[f]++] = id;
    return 0;
}

/* push_abandon - a push that cannot finish (digest mismatch): forget it
 * and free the parts only it used */
static void
push_abandon(struct call *c, struct push_state *p)
{
    uint8_t (*shas)[BFDB_SHA256_LEN] = NULL;
    size_t n = 0;

    p->failed = 1;
    if (bfdb_model_upload_drop(c->w->kv, p->name, p->version, &shas, &n) !=
        BFDB_OK) {
        log_warn("could not drop push %s:%s: %s", p->name, p->version,
                 bfdb_store_errmsg(c->w->kv));
        return;
    }
    free_unused(c->w, shas, n, NULL, NULL);
    free(shas);
}

/* store_part - the part in p->buf is complete: store it (or find it),
 * record it under the push; 0, or -1 after failing the call */
static int
store_part(struct call *c, struct push_state *p)
{
    struct worker *w = c->w;
    struct bfdb_model_part mp;
    uint64_t id;
    int stored, rc;
    char meta[3 * BFDB_MODEL_NAME_MAX + 96];

    mp.file = p->cur;
    mp.part = p->nparts[p->cur];
    mp.size = p->buflen;
    /* hashed as the chunks came, while their bytes were in the cache */
    bfdb_sha256_final(p->ph, mp.sha);
    bfdb_sha256_free(p->ph);
    p->ph = NULL;
    json_t *m = json_pack("{s:s, s:I, s:s, s:s}", "model", p->name, "part",
                          (json_int_t)p->gpart, "type", "weights", "version",
                          p->version);
    char *ms = m ? json_dumps(m, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(m);
    snprintf(meta, sizeof(meta), "%s", ms ? ms : "");
    free(ms);

    if (h_lock(c, NULL, "M", 1, "the model parts") != 0)
        return -1;
    rc = bfdb_model_part_put(w->blob, mp.sha, p->buf, p->buflen, meta,
                             strlen(meta), &id, &stored);
    if (rc != BFDB_OK) {
        h_unlock(c, "M", 1);
        h_store_fail(c, rc, bfdb_store_errmsg(w->blob));
        return -1;
    }
    rc = bfdb_model_upload_add(w->kv, p->name, p->version, &mp);
    h_unlock(c, "M", 1);
    if (rc != BFDB_OK) {
        /* a part just stored and named by nobody: the next start frees it */
        h_store_fail(c, rc, bfdb_store_errmsg(w->kv));
        return -1;
    }
    if (add_blob_id(p, p->cur, id) != 0) {
        call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return -1;
    }
    p->gpart++;
    p->buflen = 0;
    return 0;
}

/* file_done - the current file is complete: check its digest and move on;
 * 0, or -1 after failing the call */
static int
file_done(struct call *c, struct push_state *p)
{
    FileInfo *f = p->hdr->files[p->cur];
    uint8_t want[32];

    bfdb_sha256_final(p->fh, p->digest[p->cur]);
    bfdb_sha256_free(p->fh);
    p->fh = NULL;
    if (f->sha256.len > 0 && unhex32(&f->sha256, want) == 0 &&
        memcmp(want, p->digest[p->cur], 32) != 0) {
        char got[65], buf[160];
        hex32(p->digest[p->cur], got);
        push_abandon(c, p);
        call_fail(c, GRPC_STATUS_INVALID_ARGUMENT,
                  "file %s: sha256 mismatch: the header says %.*s, the data "
                  "is %s; push of %s:%s abandoned",
                  h_printable(&f->path, buf, sizeof(buf)), (int)f->sha256.len,
                  (const char *)f->sha256.data, got, p->name, p->version);
        return -1;
    }
    p->cur++;
    return 0;
}

/* next_file - start hashing file p->cur (skipping and finishing empty
 * files); 0 or -1 after failing the call */
static int
next_file(struct call *c, struct push_state *p)
{
    while (p->cur < p->nfiles) {
        if (p->fh == NULL && (p->fh = bfdb_sha256_new()) == NULL) {
            call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
            return -1;
        }
        if (p->got[p->cur] < fsize(p, p->cur))
            return 0;
        if (file_done(c, p) != 0)
            return -1;
    }
    return 0;
}

/* push_resume_prefix - re-read what an unfinished push of the same files
 * stored, so hashing continues where it stopped; returns how far each
 * file is held (contiguous parts from the start) */
static int
push_resume_prefix(struct call *c, struct push_state *p,
                   const struct bfdb_model_part *parts, size_t nparts)
{
    struct worker *w = c->w;
    size_t i = 0;

    for (uint32_t f = 0; f < p->nfiles; f++) {
        uint64_t size = fsize(p, f), want_part = 0;
        bfdb_sha256 *h = bfdb_sha256_new();
        if (h == NULL) {
            call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
            return -1;
        }
        int contiguous = 1;
        for (; i < nparts && parts[i].file == f; i++) {
            const struct bfdb_model_part *mp = &parts[i];
            uint64_t expect = size - want_part * BFDB_MODEL_PART_SIZE;
            if (expect > BFDB_MODEL_PART_SIZE)
                expect = BFDB_MODEL_PART_SIZE;
            uint64_t id, psize;
            if (!contiguous || mp->part != want_part || mp->size != expect ||
                bfdb_model_part_find(w->blob, mp->sha, &id, &psize) !=
                    BFDB_OK) {
                contiguous = 0;
                continue;
            }
            char where[64];
            snprintf(where, sizeof(where), "held part %" PRIu64, want_part);
            uint8_t *data = read_part(c, w->blob, id, mp->sha, mp->size,
                                      where, NULL);
            if (data == NULL) {
                bfdb_sha256_free(h);
                return -1;
            }
            bfdb_sha256_update(h, data, mp->size);
            free(data);
            if (add_blob_id(p, f, id) != 0) {
                bfdb_sha256_free(h);
                call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                return -1;
            }
            p->got[f] += mp->size;
            p->gpart++;
            want_part++;
        }
        p->held_at_start += p->got[f];
        if (p->got[f] == size && p->cur == f) {
            /* whole: finish it now */
            p->fh = h;
            if (file_done(c, p) != 0)
                return -1;
        } else if (p->cur == f) {
            p->fh = h;
        } else {
            bfdb_sha256_free(h); /* an earlier file is incomplete */
        }
        if (p->got[f] < size && p->cur == f) {
            /* later files are received afresh: they cannot be hashed
             * before this one is complete */
            for (; i < nparts; i++)
                ;
            break;
        }
    }
    return 0;
}

/* same_files - whether an unfinished push's header names the same files */
static int
same_files(const ModelInfo *a, const ModelInfo *b)
{
    if (a->n_files != b->n_files)
        return 0;
    for (size_t i = 0; i < a->n_files; i++) {
        const FileInfo *x = a->files[i], *y = b->files[i];
        if (x->size != y->size || x->path.len != y->path.len ||
            memcmp(x->path.data, y->path.data, x->path.len) != 0)
            return 0;
        if (x->sha256.len && y->sha256.len &&
            (x->sha256.len != y->sha256.len ||
             strncasecmp((const char *)x->sha256.data,
                         (const char *)y->sha256.data, x->sha256.len) != 0))
            return 0;
    }
    return 1;
}

static int
push_header(struct call *c, struct push_state *p, Buffdb__Model__PushHeader *h)
{
    struct worker *w = c->w;
    ModelInfo *in = h ? h->info : NULL;
    char buf[160];

    if (in == NULL) {
        call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "the header has no info");
        return -1;
    }
    if ((p->name = name_field(c, &in->name, "name", 0)) == NULL ||
        (p->version = name_field(c, &in->version, "version", 0)) == NULL)
        return -1;
    if (!h_check_utf8(c, &in->framework, "framework") ||
        !h_check_utf8(c, &in->description, "description"))
        return -1;
    if (in->n_files == 0 || in->n_files > MODEL_MAX_FILES) {
        call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "a model has 1 to %d "
                  "files; the header lists %zu", MODEL_MAX_FILES,
                  in->n_files);
        return -1;
    }
    for (size_t i = 0; i < in->n_files; i++) {
        FileInfo *f = in->files[i];
        uint8_t d[32];
        if (!path_ok(&f->path)) {
            call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "file %zu: bad path "
                      "\"%s\": relative, '/'-separated, no empty, . or .. "
                      "component", i, h_printable(&f->path, buf, sizeof(buf)));
            return -1;
        }
        if (f->sha256.len && unhex32(&f->sha256, d) != 0) {
            call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "file %s: sha256 must "
                      "be 64 hex digits", h_printable(&f->path, buf,
                                                      sizeof(buf)));
            return -1;
        }
        for (size_t j = 0; j < i; j++)
            if (in->files[j]->path.len == f->path.len &&
                memcmp(in->files[j]->path.data, f->path.data,
                       f->path.len) == 0) {
                call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "file %s is listed "
                          "twice", h_printable(&f->path, buf, sizeof(buf)));
                return -1;
            }
        if (f->size > MODEL_FILE_MAX) {
            call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "file %s: %" PRIu64
                      " bytes is more than a file may hold (1 TiB)",
                      h_printable(&f->path, buf, sizeof(buf)), f->size);
            return -1;
        }
        p->total += f->size;
        if (p->total > MODEL_TOTAL_MAX) {
            call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "the files add up to "
                      "more than a version may hold (16 TiB)");
            return -1;
        }
    }
    char *have = NULL;
    int rc = bfdb_model_resolve(w->kv, p->name, p->version, NULL, &have);
    free(have);
    if (rc == BFDB_OK) {
        call_fail(c, GRPC_STATUS_ALREADY_EXISTS, "model %s version %s "
                  "already exists", p->name, p->version);
        return -1;
    }
    if (rc != BFDB_ENOTFOUND) {
        h_store_fail(c, rc, bfdb_store_errmsg(w->kv));
        return -1;
    }
    /* one push of a version at a time */
    rc = push_lock_take(w, p->name, p->version, &p->lockname, &p->locklen);
    if (rc == BFDB_ENOMEM) {
        call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return -1;
    }
    if (rc == BFDB_EBUSY) {
        call_fail(c, GRPC_STATUS_ABORTED, "another push of %s:%s is in "
                  "progress", p->name, p->version);
        return -1;
    }
    if (rc != BFDB_OK) {
        call_fail(c, GRPC_STATUS_UNAVAILABLE, "the lock table is full");
        return -1;
    }
    if (push_remember(p) != 0) {
        push_lock_drop(w, p->lockname, p->locklen);
        p->lockname = NULL;
        call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "too many pushes on "
                  "this worker at once");
        return -1;
    }
    /* a push of the version may have committed between the check above
     * and the lock */
    rc = bfdb_model_resolve(w->kv, p->name, p->version, NULL, &have);
    free(have);
    have = NULL;
    if (rc == BFDB_OK) {
        call_fail(c, GRPC_STATUS_ALREADY_EXISTS, "model %s version %s "
                  "already exists", p->name, p->version);
        return -1;
    }

    /* the header as the server keeps it */
    p->hdr_len = protobuf_c_message_get_packed_size(&in->base);
    p->hdr_packed = malloc(p->hdr_len ? p->hdr_len : 1);
    if (p->hdr_packed == NULL) {
        call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return -1;
    }
    protobuf_c_message_pack(&in->base, p->hdr_packed);
    p->hdr = buffdb__model__model_info__unpack(NULL, p->hdr_len,
                                               p->hdr_packed);
    p->nfiles = (uint32_t)in->n_files;
    p->got = calloc(p->nfiles, sizeof(*p->got));
    p->blob_ids = calloc(p->nfiles, sizeof(*p->blob_ids));
    p->nparts = calloc(p->nfiles, sizeof(*p->nparts));
    p->idcap = calloc(p->nfiles, sizeof(*p->idcap));
    p->digest = calloc(p->nfiles, sizeof(*p->digest));
    p->buf = malloc(BFDB_MODEL_PART_SIZE);
    if (p->hdr == NULL || p->got == NULL || p->blob_ids == NULL ||
        p->nparts == NULL || p->idcap == NULL || p->digest == NULL ||
        p->buf == NULL) {
        call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return -1;
    }

    /* an unfinished push of the same files resumes; another is replaced */
    void *old = NULL;
    size_t oldlen = 0, nparts = 0;
    struct bfdb_model_part *parts = NULL;
    rc = bfdb_model_upload_get(w->kv, p->name, p->version, &old, &oldlen,
                               &parts, &nparts, NULL);
    if (rc != BFDB_OK && rc != BFDB_ENOTFOUND) {
        h_store_fail(c, rc, bfdb_store_errmsg(w->kv));
        return -1;
    }
    ModelInfo *prev = old ? buffdb__model__model_info__unpack(NULL, oldlen,
                                                                old)
                          : NULL;
    int resume = prev != NULL && same_files(prev, p->hdr);
    if (prev)
        buffdb__model__model_info__free_unpacked(prev, NULL);
    free(old);
    if (rc == BFDB_OK && !resume) {
        uint8_t (*shas)[BFDB_SHA256_LEN] = NULL;
        size_t n = 0;
        if (bfdb_model_upload_drop(w->kv, p->name, p->version, &shas, &n) ==
            BFDB_OK) {
            free_unused(w, shas, n, NULL, NULL);
            free(shas);
        }
        log_info("push of %s:%s with other files replaces an unfinished one",
                 p->name, p->version);
    }
    if (resume) {
        /* the header stays the first one's (same files) */
        rc = push_resume_prefix(c, p, parts, nparts) == 0 ? BFDB_OK : -1;
        free(parts);
        if (rc != BFDB_OK)
            return -1;
        if (p->held_at_start > 0)
            log_info("push of %s:%s resumes: %" PRIu64 " of %" PRIu64
                     " bytes held", p->name, p->version, p->held_at_start,
                     p->total);
    } else {
        free(parts);
        rc = bfdb_model_upload_start(w->kv, p->name, p->version,
                                     p->hdr_packed, p->hdr_len);
        if (rc != BFDB_OK) {
            h_store_fail(c, rc, bfdb_store_errmsg(w->kv));
            return -1;
        }
    }
    return next_file(c, p);
}

static int
push_chunk(struct call *c, struct push_state *p, Buffdb__Model__Chunk *ch)
{
    char buf[160];

    if (ch->file >= p->nfiles) {
        call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "chunk for file %u: the "
                  "header lists %u files", ch->file, p->nfiles);
        return -1;
    }
    uint64_t size = fsize(p, ch->file);
    if (ch->offset > size || ch->data.len > size - ch->offset) {
        call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "chunk at %" PRIu64 "+%zu "
                  "goes past the end of file %s (%" PRIu64 " bytes)",
                  ch->offset, ch->data.len,
                  h_printable(&p->hdr->files[ch->file]->path, buf,
                              sizeof(buf)), size);
        return -1;
    }
    if (ch->file < p->cur) /* a file already complete: a resend */
        return 0;
    if (ch->file > p->cur) {
        call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "chunk for file %u while "
                  "file %u (%s) has %" PRIu64 " of %" PRIu64 " bytes: send "
                  "files in order", ch->file, p->cur,
                  h_printable(&p->hdr->files[p->cur]->path, buf, sizeof(buf)),
                  p->got[p->cur] + p->buflen, fsize(p, p->cur));
        return -1;
    }
    uint64_t next = p->got[p->cur] + p->buflen;
    if (ch->offset > next) {
        call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "chunk at offset %" PRIu64
                  " of file %s leaves a gap: the next byte expected is %"
                  PRIu64, ch->offset,
                  h_printable(&p->hdr->files[p->cur]->path, buf, sizeof(buf)),
                  next);
        return -1;
    }
    size_t skip = (size_t)(next - ch->offset);
    if (skip >= ch->data.len && ch->data.len > 0)
        return 0; /* all of it held already */
    const uint8_t *d = ch->data.data + skip;
    size_t n = ch->data.len - skip;
    while (n > 0) {
        size_t room = BFDB_MODEL_PART_SIZE - p->buflen;
        size_t take = n < room ? n : room;
        if (p->ph == NULL && (p->ph = bfdb_sha256_new()) == NULL) {
            call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
            return -1;
        }
        memcpy(p->buf + p->buflen, d, take);
        bfdb_sha256_update(p->fh, d, take);
        bfdb_sha256_update(p->ph, d, take);
        p->buflen += take;
        d += take;
        n -= take;
        if (p->buflen == BFDB_MODEL_PART_SIZE ||
            p->got[p->cur] + p->buflen == size) {
            uint64_t len = p->buflen;
            if (store_part(c, p) != 0)
                return -1;
            p->got[p->cur] += len;
        }
    }
    if (p->got[p->cur] == size) {
        if (file_done(c, p) != 0)
            return -1;
        return next_file(c, p);
    }
    return 0;
}

/* varint - read a protobuf varint at *pp (before end); -1 if malformed */
static int
varint(const uint8_t **pp, const uint8_t *end, uint64_t *v)
{
    const uint8_t *p = *pp;
    uint64_t x = 0;

    for (int shift = 0; shift < 64 && p < end; shift += 7) {
        uint8_t b = *p++;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            *pp = p;
            return 0;
        }
    }
    return -1;
}

/*
 * chunk_view - a PushRequest that holds a chunk, read without copying its
 * data (protobuf-c would copy every megabyte once more): ch->data points
 * into the request.  -1 for anything else (a header, unusual encodings),
 * which then goes through protobuf-c.
 */
static int
chunk_view(const uint8_t *d, size_t n, Buffdb__Model__Chunk *ch)
{
    const uint8_t *p = d, *end = d + n;
    uint64_t tag, len, v;

    buffdb__model__chunk__init(ch);
    if (varint(&p, end, &tag) != 0 || tag != ((2 << 3) | 2) ||
        varint(&p, end, &len) != 0 || len != (uint64_t)(end - p))
        return -1;
    while (p < end) {
        if (varint(&p, end, &tag) != 0)
            return -1;
        switch (tag) {
        case (1 << 3) | 0:
            if (varint(&p, end, &v) != 0 || v > UINT32_MAX)
                return -1;
            ch->file = (uint32_t)v;
            break;
        case (2 << 3) | 0:
            if (varint(&p, end, &v) != 0)
                return -1;
            ch->offset = v;
            break;
        case (3 << 3) | 2:
            if (varint(&p, end, &len) != 0 || len > (uint64_t)(end - p))
                return -1;
            ch->data.data = (uint8_t *)p;
            ch->data.len = (size_t)len;
            p += len;
            break;
        default:
            return -1;
        }
    }
    return 0;
}

static void
push_request(struct call *c, const uint8_t *data, size_t len)
{
    struct push_state *p = c->state;
    Buffdb__Model__Chunk view;

    if (p != NULL && chunk_view(data, len, &view) == 0) {
        (void)push_chunk(c, p, &view);
        return;
    }
    Buffdb__Model__PushRequest *req =
        buffdb__model__push_request__unpack(NULL, len, data);

    if (req == NULL) {
        call_fail(c, GRPC_STATUS_INVALID_ARGUMENT,
                  "malformed PushRequest message");
        return;
    }
    if (p == NULL) {
        if (req->msg_case != BUFFDB__MODEL__PUSH_REQUEST__MSG_HEADER) {
            call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "the first message of "
                      "a push must be its header");
        } else if ((p = c->state = calloc(1, sizeof(*p))) == NULL) {
            call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        } else {
            (void)push_header(c, p, req->header);
        }
    } else if (req->msg_case != BUFFDB__MODEL__PUSH_REQUEST__MSG_CHUNK) {
        call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "a push has one header, "
                  "then chunks");
    } else {
        (void)push_chunk(c, p, req->chunk);
    }
    buffdb__model__push_request__free_unpacked(req, NULL);
}

/* ---- reading a pushed file back (weights metadata) ---------------------- */

struct file_reader {
    struct call *c;
    bfdb_store *blob;
    const uint64_t *ids;
    uint32_t nparts;
    uint64_t size;
    uint32_t cached;     /* part index in buf + 1; 0: none */
    uint8_t *buf;
    size_t buflen;
};

static int
file_read(void *arg, uint64_t off, void *out, size_t n, size_t *got)
{
    struct file_reader *r = arg;

    *got = 0;
    if (off >= r->size)
        return BFDB_OK;
    uint32_t part = (uint32_t)(off / BFDB_MODEL_PART_SIZE);
    if (part >= r->nparts)
        return BFDB_OK;
    if (r->cached != part + 1) {
        void *data;
        size_t len, mlen;
        char *meta = NULL;
        int rc = bfdb_blob_get(r->blob, r->ids[part], BFDB_MODEL_PART_SIZE,
                               &data, &len, &meta, &mlen);
        free(meta);
        if (rc != BFDB_OK)
            return rc;
        free(r->buf);
        r->buf = data;
        r->buflen = len;
        r->cached = part + 1;
    }
    size_t in = (size_t)(off - (uint64_t)part * BFDB_MODEL_PART_SIZE);
    if (in >= r->buflen)
        return BFDB_OK;
    size_t take = r->buflen - in < n ? r->buflen - in : n;
    memcpy(out, r->buf + in, take);
    *got = take;
    return BFDB_OK;
}

/* ---- building the stored info -------------------------------------------------- */

/* A ModelInfo assembled from the header and what the server computed;
 * every pointer in it is owned by the builder below. */
struct info_build {
    ModelInfo mi;
    FileInfo *files;
    FileInfo **fptr;
    char (*hexes)[65];
    uint64_t *all_ids;
    Buffdb__Model__ModelInfo__ParametersEntry *params;
    Buffdb__Model__ModelInfo__ParametersEntry **pptr;
    char **pstr;           /* strings the parameters own */
    size_t npstr;
    Buffdb__Model__TensorInfo *tens;
    Buffdb__Model__TensorInfo **tptr;
    ProtobufCBinaryData *dtypes;
    struct bfdb_weights_meta *wm;
    char created[32];
    char **formats;
};

static void
info_build_free(struct info_build *b, uint32_t nfiles)
{
    free(b->files);
    free(b->fptr);
    free(b->hexes);
    free(b->all_ids);
    free(b->params);
    free(b->pptr);
    for (size_t i = 0; i < b->npstr; i++)
        free(b->pstr[i]);
    free(b->pstr);
    free(b->tens);
    free(b->tptr);
    free(b->dtypes);
    if (b->wm) {
        for (uint32_t i = 0; i < nfiles; i++)
            bfdb_weights_meta_free(&b->wm[i]);
        free(b->wm);
    }
    free(b->formats);
}

static int
has_param(const ModelInfo *in, const char *key)
{
    for (size_t i = 0; i < in->n_parameters; i++)
        if (strcmp(in->parameters[i]->key, key) == 0)
            return 1;
    return 0;
}

/* info_build - the stored ModelInfo of a complete push; -1 after failing
 * the call */
static int
info_build(struct call *c, struct push_state *p, struct info_build *b)
{
    ModelInfo *in = p->hdr;
    uint32_t nf = p->nfiles;
    size_t nids = 0;

    memset(b, 0, sizeof(*b));
    b->mi = *in; /* scalars and the client's fields, shallow */
    b->files = calloc(nf, sizeof(*b->files));
    b->fptr = calloc(nf, sizeof(*b->fptr));
    b->hexes = calloc(nf, sizeof(*b->hexes));
    b->wm = calloc(nf, sizeof(*b->wm));
    b->formats = calloc(nf, sizeof(*b->formats));
    for (uint32_t f = 0; f < nf; f++)
        nids += p->nparts[f];
    b->all_ids = calloc(nids ? nids : 1, sizeof(uint64_t));
    if (!b->files || !b->fptr || !b->hexes || !b->wm || !b->formats ||
        !b->all_ids)
        goto oom;
    size_t k = 0;
    uint64_t params = 0;
    size_t ntensors = 0;
    for (uint32_t f = 0; f < nf; f++) {
        FileInfo *fi = &b->files[f];
        buffdb__model__file_info__init(fi);
        fi->path = in->files[f]->path;
        fi->size = in->files[f]->size;
        hex32(p->digest[f], b->hexes[f]);
        fi->sha256 = bin(b->hexes[f]);
        fi->n_blob_ids = p->nparts[f];
        fi->blob_ids = p->blob_ids[f];
        if (p->nparts[f] > 0)
            memcpy(b->all_ids + k, p->blob_ids[f],
                   p->nparts[f] * sizeof(uint64_t));
        k += p->nparts[f];
        b->fptr[f] = fi;
        b->formats[f] = "";
        /* metadata from the weights themselves (best effort) */
        struct file_reader r = {c, c->w->blob, p->blob_ids[f], p->nparts[f],
                                fi->size, 0, NULL, 0};
        uint8_t head[16];
        size_t got = 0;
        if (fi->size >= 16 && file_read(&r, 0, head, sizeof(head), &got) ==
                                  BFDB_OK &&
            got == sizeof(head) &&
            bfdb_weights_sniff(head, got, fi->size) != BFDB_WF_NONE) {
            char err[256];
            if (bfdb_weights_parse(file_read, &r, fi->size, &b->wm[f], err,
                                   sizeof(err)) == BFDB_OK) {
                b->formats[f] = b->wm[f].format == BFDB_WF_GGUF
                                    ? "gguf" : "safetensors";
                params += b->wm[f].parameter_count;
                ntensors += b->wm[f].ntensors;
            } else {
                log_info("push of %s:%s: %s looks like weights but its "
                         "header does not parse: %s", p->name, p->version,
                         b->hexes[f], err);
                memset(&b->wm[f], 0, sizeof(b->wm[f]));
            }
        }
        free(r.buf);
        fi->format = bin(b->formats[f]);
    }
    b->mi.n_files = nf;
    b->mi.files = b->fptr;
    b->mi.n_blob_ids = nids;
    b->mi.blob_ids = b->all_ids;
    b->mi.size_bytes = p->total;
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(b->created, sizeof(b->created), "%Y-%m-%dT%H:%M:%SZ", &tm);
    b->mi.created_at = bin(b->created);
    b->mi.n_aliases = 0;
    b->mi.aliases = NULL;

    /* tensors, unless the client gave its own */
    if (in->n_tensors == 0 && ntensors > 0) {
        b->tens = calloc(ntensors, sizeof(*b->tens));
        b->tptr = calloc(ntensors, sizeof(*b->tptr));
        if (!b->tens || !b->tptr)
            goto oom;
        size_t t = 0;
        for (uint32_t f = 0; f < nf; f++)
            for (size_t i = 0; i < b->wm[f].ntensors; i++, t++) {
                struct bfdb_tensor *src = &b->wm[f].tensors[i];
                buffdb__model__tensor_info__init(&b->tens[t]);
                b->tens[t].name = bin(src->name);
                b->tens[t].dtype = bin(src->dtype);
                b->tens[t].n_shape = src->ndim;
                b->tens[t].shape = src->shape;
                b->tens[t].file = in->files[f]->path;
                b->tptr[t] = &b->tens[t];
            }
        b->mi.n_tensors = ntensors;
        b->mi.tensors = b->tptr;
        b->mi.tensor_count = ntensors;
        b->mi.parameter_count = params;
        size_t nd = 0;
        for (uint32_t f = 0; f < nf; f++)
            nd += b->wm[f].ndtypes;
        b->dtypes = calloc(nd ? nd : 1, sizeof(*b->dtypes));
        if (!b->dtypes)
            goto oom;
        size_t ud = 0;
        for (uint32_t f = 0; f < nf; f++)
            for (size_t i = 0; i < b->wm[f].ndtypes; i++) {
                const char *d = b->wm[f].dtypes[i];
                size_t j;
                for (j = 0; j < ud; j++)
                    if (b->dtypes[j].len == strlen(d) &&
                        memcmp(b->dtypes[j].data, d, b->dtypes[j].len) == 0)
                        break;
                if (j == ud)
                    b->dtypes[ud++] = bin(d);
            }
        b->mi.n_dtypes = ud;
        b->mi.dtypes = b->dtypes;
    } else if (in->n_tensors > 0 && in->tensor_count == 0) {
        b->mi.tensor_count = in->n_tensors;
    }

    /* parameters: the client's, plus the summary keys it did not set */
    const char *keys[3] = {"tensor_count", "parameter_count", "dtypes"};
    size_t np = in->n_parameters + 3;
    b->params = calloc(np, sizeof(*b->params));
    b->pptr = calloc(np, sizeof(*b->pptr));
    b->pstr = calloc(3, sizeof(*b->pstr));
    if (!b->params || !b->pptr || !b->pstr)
        goto oom;
    size_t n = 0;
    for (size_t i = 0; i < in->n_parameters; i++)
        b->pptr[n++] = in->parameters[i];
    if (b->mi.tensor_count > 0) {
        char num[32];
        for (int i = 0; i < 3; i++) {
            if (has_param(in, keys[i]) ||
                (i == 1 && b->mi.parameter_count == 0) ||
                (i == 2 && b->mi.n_dtypes == 0))
                continue;
            char *v = NULL;
            if (i == 0) {
                snprintf(num, sizeof(num), "%" PRIu64, b->mi.tensor_count);
                v = strdup(num);
            } else if (i == 1) {
                snprintf(num, sizeof(num), "%" PRIu64, b->mi.parameter_count);
                v = strdup(num);
            } else {
                size_t tl = 1;
                for (size_t j = 0; j < b->mi.n_dtypes; j++)
                    tl += b->mi.dtypes[j].len + 1;
                if ((v = malloc(tl)) != NULL) {
                    v[0] = '\0';
                    for (size_t j = 0; j < b->mi.n_dtypes; j++) {
                        if (j)
                            strcat(v, ",");
                        strncat(v, (const char *)b->mi.dtypes[j].data,
                                b->mi.dtypes[j].len);
                    }
                }
            }
            if (v == NULL)
                goto oom;
            b->pstr[b->npstr++] = v;
            Buffdb__Model__ModelInfo__ParametersEntry *e = &b->params[n];
            buffdb__model__model_info__parameters_entry__init(e);
            e->key = (char *)keys[i];
            e->value = v;
            b->pptr[n++] = e;
        }
    }
    b->mi.n_parameters = n;
    b->mi.parameters = b->pptr;
    return 0;
oom:
    call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    return -1;
}

/* upstream_json - upstream's ModelInfo JSON for the metadata key */
static char *
upstream_json(const ModelInfo *mi)
{
    json_t *o = json_object(), *a;
    char *name = bstr(&mi->name), *ver = bstr(&mi->version),
         *fw = bstr(&mi->framework), *desc = bstr(&mi->description),
         *created = bstr(&mi->created_at);
    char *out = NULL;

    if (!o || !name || !ver || !fw || !desc || !created)
        goto out;
    json_object_set_new(o, "name", json_string(name));
    json_object_set_new(o, "version", json_string(ver));
    json_object_set_new(o, "framework", json_string(fw));
    json_object_set_new(o, "description", json_string(desc));
    a = json_array();
    for (size_t i = 0; i < mi->n_input_shape; i++)
        json_array_append_new(a, json_integer(mi->input_shape[i]));
    json_object_set_new(o, "input_shape", a);
    a = json_array();
    for (size_t i = 0; i < mi->n_output_shape; i++)
        json_array_append_new(a, json_integer(mi->output_shape[i]));
    json_object_set_new(o, "output_shape", a);
    json_t *params = json_object();
    for (size_t i = 0; i < mi->n_parameters; i++)
        json_object_set_new(params, mi->parameters[i]->key,
                            json_string(mi->parameters[i]->value));
    json_object_set_new(o, "parameters", params);
    json_object_set_new(o, "created_at", json_string(created));
    json_object_set_new(o, "size_bytes", json_integer((json_int_t)
                                                      mi->size_bytes));
    a = json_array();
    for (size_t i = 0; i < mi->n_blob_ids; i++)
        json_array_append_new(a, json_integer((json_int_t)mi->blob_ids[i]));
    json_object_set_new(o, "blob_ids", a);
    out = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
out:
    json_decref(o);
    free(name);
    free(ver);
    free(fw);
    free(desc);
    free(created);
    return out;
}

static void
push_end(struct call *c)
{
    struct push_state *p = c->state;
    struct worker *w = c->w;
    struct info_build b;

    if (p == NULL) {
        call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "a push needs a header");
        return;
    }
    if (next_file(c, p) != 0)
        return;
    if (p->cur < p->nfiles) {
        uint64_t held = 0;
        for (uint32_t f = 0; f < p->nfiles; f++)
            held += p->got[f];
        call_fail(c, GRPC_STATUS_FAILED_PRECONDITION, "push of %s:%s is "
                  "incomplete: the server holds %" PRIu64 " of %" PRIu64
                  " bytes; push the same files again to resume", p->name,
                  p->version, held, p->total);
        return;
    }
    if (info_build(c, p, &b) != 0) {
        info_build_free(&b, p->nfiles);
        return;
    }
    size_t len = protobuf_c_message_get_packed_size(&b.mi.base);
    uint8_t *packed = malloc(len ? len : 1);
    char *json = upstream_json(&b.mi);
    if (packed == NULL || json == NULL) {
        call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    protobuf_c_message_pack(&b.mi.base, packed);
    /* the commit writes two kv keys: their cache entries go */
    char mk[BFDB_MODEL_KEY_MAX], ik[BFDB_MODEL_KEY_MAX];
    const char *keys[2] = {mk, ik};
    size_t lens[2] = {
        bfdb_model_key_metadata(mk, sizeof(mk), p->name, p->version),
        bfdb_model_key_index(ik, sizeof(ik), p->name)};
    bfdb_cache_keys_begin(w->cache, w->shm, keys, lens, 2);
    int rc = bfdb_model_commit(w->kv, p->name, p->version, packed, len, json,
                               strlen(json));
    bfdb_cache_global_end(w->shm);
    if (rc != BFDB_OK) {
        h_store_fail(c, rc, bfdb_store_errmsg(w->kv));
        if (rc == BFDB_EEXIST) /* nothing left to resume */
            push_abandon(c, p);
        goto out;
    }
    log_info("model %s:%s pushed: %u files, %" PRIu64 " bytes, %zu parts",
             p->name, p->version, p->nfiles, p->total, b.mi.n_blob_ids);
    call_reply(c, &b.mi.base);
out:
    free(packed);
    free(json);
    info_build_free(&b, p->nfiles);
}

static void
push_cleanup(struct call *c)
{
    struct push_state *p = c->state;

    if (p == NULL)
        return;
    if (p->lockname != NULL) {
        push_lock_drop(c->w, p->lockname, p->locklen);
        p->lockname = NULL;
    }
    push_free(p);
    c->state = NULL;
}

/* ---- lookups shared by the read RPCs ----------------------------------------- */

/* load_info - the stored info of name (version / alias / latest), with its
 * aliases filled; NULL after failing the call.  *resolved the version. */
static ModelInfo *
load_info(struct call *c, bfdb_store *kv, const ProtobufCBinaryData *bname,
          const ProtobufCBinaryData *bver, const ProtobufCBinaryData *balias,
          char **name_out, char **ver_out)
{
    char *name = NULL, *ver = NULL, *alias = NULL, *resolved = NULL;
    void *info = NULL;
    size_t ilen;
    ModelInfo *mi = NULL;
    char **al = NULL, **av = NULL;
    size_t nal = 0;

    if ((name = name_field(c, bname, "name", 0)) == NULL ||
        (ver = name_field(c, bver, "version", 1)) == NULL ||
        (alias = name_field(c, balias, "alias", 1)) == NULL)
        goto out;
    int rc = bfdb_model_resolve(kv, name, ver, alias, &resolved);
    if (rc == BFDB_OK)
        rc = bfdb_model_info(kv, name, resolved, &info, &ilen);
    if (rc == BFDB_OK)
        rc = bfdb_model_aliases(kv, name, resolved, &al, &av, &nal);
    if (rc != BFDB_OK) {
        h_store_fail(c, rc, bfdb_store_errmsg(kv));
        goto out;
    }
    mi = buffdb__model__model_info__unpack(NULL, ilen, info);
    if (mi == NULL) {
        call_fail(c, GRPC_STATUS_DATA_LOSS, "the stored info of %s:%s does "
                  "not decode", name, resolved);
        goto out;
    }
    /* aliases: owned by the message from here (freed with it) */
    mi->aliases = calloc(nal ? nal : 1, sizeof(*mi->aliases));
    if (mi->aliases == NULL) {
        buffdb__model__model_info__free_unpacked(mi, NULL);
        mi = NULL;
        call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < nal; i++) {
        mi->aliases[i] = bin(al[i]);
        al[i] = NULL;
    }
    mi->n_aliases = nal;
    if (name_out) {
        *name_out = name;
        name = NULL;
    }
    if (ver_out) {
        *ver_out = resolved;
        resolved = NULL;
    }
out:
    bfdb_model_strv_free(al, nal);
    bfdb_model_strv_free(av, nal);
    free(info);
    free(name);
    free(ver);
    free(alias);
    free(resolved);
    return mi;
}

/* ---- Pull ---------------------------------------------------------------------- */

struct pull_state {
    bfdb_store *blob;
    ModelInfo *mi;
    char *name, *version;
    struct bfdb_model_part *parts;
    size_t nparts;
    size_t pi;               /* next part to load */
    uint32_t chunk;
    uint8_t *buf;            /* the part being sent */
    size_t buflen, bufpos;
    uint32_t buffile;
    uint64_t bufoff;         /* file offset of buf[0] */
    uint64_t start_file, start_off;
    int info_sent;
};

static void
pull_request(struct call *c, const uint8_t *data, size_t len)
{
    Buffdb__Model__PullRequest *req =
        buffdb__model__pull_request__unpack(NULL, len, data);
    struct pull_state *s;

    if (req == NULL) {
        call_fail(c, GRPC_STATUS_INVALID_ARGUMENT,
                  "malformed PullRequest message");
        return;
    }
    if (c->state != NULL) {
        call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "one PullRequest per call");
        goto out;
    }
    if ((s = c->state = calloc(1, sizeof(*s))) == NULL) {
        call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    s->mi = load_info(c, c->w->kv, &req->name, &req->version, &req->alias,
                      &s->name, &s->version);
    if (s->mi == NULL)
        goto out;
    int rc = bfdb_model_parts(c->w->kv, s->name, s->version, &s->parts,
                              &s->nparts);
    if (rc != BFDB_OK) {
        h_store_fail(c, rc, bfdb_store_errmsg(c->w->kv));
        goto out;
    }
    s->chunk = req->chunk_size ? req->chunk_size : PULL_CHUNK_DEFAULT;
    uint64_t lim = c->w->cfg->max_message_size > 1024
                       ? c->w->cfg->max_message_size - 1024 : 1024;
    if (s->chunk > PULL_CHUNK_MAX || s->chunk > lim) {
        call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "chunk_size %u is above "
                  "the limit %" PRIu64, s->chunk,
                  lim < PULL_CHUNK_MAX ? lim : PULL_CHUNK_MAX);
        goto out;
    }
    if (req->file > s->mi->n_files ||
        (req->file < s->mi->n_files &&
         req->offset > s->mi->files[req->file]->size) ||
        (req->file == s->mi->n_files && req->offset > 0)) {
        call_fail(c, GRPC_STATUS_OUT_OF_RANGE, "resume point file %u offset "
                  "%" PRIu64 " is past the model's end", req->file,
                  req->offset);
        goto out;
    }
    s->start_file = req->file;
    s->start_off = req->offset;
    /* the first part holding the resume point */
    while (s->pi < s->nparts &&
           (s->parts[s->pi].file < req->file ||
            (s->parts[s->pi].file == req->file &&
             ((uint64_t)s->parts[s->pi].part + 1) * BFDB_MODEL_PART_SIZE <=
                 req->offset)))
        s->pi++;
    if ((s->blob = h_conn_take(c, 1)) == NULL)
        goto out;
    c->generating = 1;
out:
    buffdb__model__pull_request__free_unpacked(req, NULL);
}

/* blob_id_of - the blob id of part p from the stored info */
static int
blob_id_of(const ModelInfo *mi, const struct bfdb_model_part *p,
           uint64_t *id)
{
    if (p->file >= mi->n_files || p->part >= mi->files[p->file]->n_blob_ids)
        return -1;
    *id = mi->files[p->file]->blob_ids[p->part];
    return 0;
}

static int
pull_pump(struct call *c)
{
    struct pull_state *s = c->state;
    char buf[160], where[300];

    if (!s->info_sent) {
        Buffdb__Model__PullResponse r = BUFFDB__MODEL__PULL_RESPONSE__INIT;
        r.msg_case = BUFFDB__MODEL__PULL_RESPONSE__MSG_INFO;
        r.info = s->mi;
        call_reply(c, &r.base);
        s->info_sent = 1;
        return 1;
    }
    if (s->bufpos >= s->buflen) {
        free(s->buf);
        s->buf = NULL;
        s->buflen = s->bufpos = 0;
        if (s->pi >= s->nparts)
            return 0; /* done */
        struct bfdb_model_part *p = &s->parts[s->pi++];
        uint64_t id;
        snprintf(where, sizeof(where), "part %u of file %s", p->part,
                 h_printable(&s->mi->files[p->file]->path, buf, sizeof(buf)));
        if (blob_id_of(s->mi, p, &id) != 0) {
            call_fail(c, GRPC_STATUS_DATA_LOSS, "%s: no blob id recorded",
                      where);
            return 0;
        }
        int gone;
        if ((s->buf = read_part(c, s->blob, id, p->sha, p->size, where,
                                &gone)) == NULL) {
            /* a version deleted under the pull says so */
            char *v = NULL;
            if (gone && bfdb_model_resolve(c->w->kv, s->name, s->version,
                                           NULL, &v) == BFDB_ENOTFOUND)
                call_fail(c, GRPC_STATUS_NOT_FOUND, "model %s version %s was "
                          "deleted during the pull", s->name, s->version);
            else if (gone)
                call_fail(c, GRPC_STATUS_DATA_LOSS, "%s: its blob %" PRIu64
                          " is gone", where, id);
            free(v);
            return 0;
        }
        s->buflen = (size_t)p->size;
        s->buffile = p->file;
        s->bufoff = (uint64_t)p->part * BFDB_MODEL_PART_SIZE;
        if (p->file == s->start_file && s->bufoff < s->start_off)
            s->bufpos = (size_t)(s->start_off - s->bufoff);
        if (s->bufpos >= s->buflen)
            return 1;
    }
    size_t n = s->buflen - s->bufpos;
    if (n > s->chunk)
        n = s->chunk;
    Buffdb__Model__Chunk ch = BUFFDB__MODEL__CHUNK__INIT;
    ch.file = s->buffile;
    ch.offset = s->bufoff + s->bufpos;
    ch.data.data = s->buf + s->bufpos;
    ch.data.len = n;
    Buffdb__Model__PullResponse r = BUFFDB__MODEL__PULL_RESPONSE__INIT;
    r.msg_case = BUFFDB__MODEL__PULL_RESPONSE__MSG_CHUNK;
    r.chunk = &ch;
    call_reply(c, &r.base);
    s->bufpos += n;
    return 1;
}

static void
pull_cleanup(struct call *c)
{
    struct pull_state *s = c->state;

    if (s == NULL)
        return;
    if (s->mi)
        buffdb__model__model_info__free_unpacked(s->mi, NULL);
    h_conn_give(c->w, 1, s->blob);
    free(s->name);
    free(s->version);
    free(s->parts);
    free(s->buf);
    free(s);
    c->state = NULL;
}

/* ---- the unary RPCs ------------------------------------------------------------ */

#define UNPACK_OR_FAIL(var, type, fn, what)                                    \
    type *var = fn(NULL, len, data);                                           \
    if (var == NULL) {                                                         \
        call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "malformed " what          \
                  " message");                                                 \
        return;                                                                \
    }

static void
get_info_request(struct call *c, const uint8_t *data, size_t len)
{
    UNPACK_OR_FAIL(req, Buffdb__Model__GetInfoRequest,
                   buffdb__model__get_info_request__unpack, "GetInfoRequest");
    ModelInfo *mi = load_info(c, c->w->kv, &req->name, &req->version,
                              &req->alias, NULL, NULL);
    if (mi) {
        call_reply(c, &mi->base);
        buffdb__model__model_info__free_unpacked(mi, NULL);
    }
    buffdb__model__get_info_request__free_unpacked(req, NULL);
}

static void
push_status_request(struct call *c, const uint8_t *data, size_t len)
{
    UNPACK_OR_FAIL(req, Buffdb__Model__PushStatusRequest,
                   buffdb__model__push_status_request__unpack,
                   "PushStatusRequest");
    char *name = NULL, *ver = NULL;
    void *hdr = NULL;
    size_t hlen, nparts = 0;
    struct bfdb_model_part *parts = NULL;
    ModelInfo *mi = NULL;
    Buffdb__Model__FileProgress *fp = NULL, **fpp = NULL;

    if ((name = name_field(c, &req->name, "name", 0)) == NULL ||
        (ver = name_field(c, &req->version, "version", 0)) == NULL)
        goto out;
    int rc = bfdb_model_upload_get(c->w->kv, name, ver, &hdr, &hlen, &parts,
                                   &nparts, NULL);
    if (rc != BFDB_OK) {
        h_store_fail(c, rc, bfdb_store_errmsg(c->w->kv));
        goto out;
    }
    if ((mi = buffdb__model__model_info__unpack(NULL, hlen, hdr)) == NULL) {
        call_fail(c, GRPC_STATUS_DATA_LOSS, "the unfinished push's header "
                  "does not decode");
        goto out;
    }
    fp = calloc(mi->n_files ? mi->n_files : 1, sizeof(*fp));
    fpp = calloc(mi->n_files ? mi->n_files : 1, sizeof(*fpp));
    if (fp == NULL || fpp == NULL) {
        call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    Buffdb__Model__PushStatusResponse resp =
        BUFFDB__MODEL__PUSH_STATUS_RESPONSE__INIT;
    size_t i = 0;
    for (size_t f = 0; f < mi->n_files; f++) {
        buffdb__model__file_progress__init(&fp[f]);
        fp[f].path = mi->files[f]->path;
        fp[f].size = mi->files[f]->size;
        /* held: parts from the start, each full but the file's last */
        uint32_t want = 0;
        for (; i < nparts && parts[i].file < f; i++)
            ;
        for (; i < nparts && parts[i].file == f; i++) {
            if (parts[i].part != want)
                continue;
            fp[f].held += parts[i].size;
            want++;
        }
        resp.held_bytes += fp[f].held;
        resp.total_bytes += fp[f].size;
        fpp[f] = &fp[f];
    }
    resp.info = mi;
    resp.n_files = mi->n_files;
    resp.files = fpp;
    call_reply(c, &resp.base);
out:
    free(fp);
    free(fpp);
    if (mi)
        buffdb__model__model_info__free_unpacked(mi, NULL);
    free(hdr);
    free(parts);
    free(name);
    free(ver);
    buffdb__model__push_status_request__free_unpacked(req, NULL);
}

/* drop_upload - AbortPush and the housekeeping of stale pushes; the push
 * lock is tried, so a running push is never pulled from under itself */
static int
drop_upload(struct worker *w, const char *name, const char *ver,
            uint64_t *freed, char *err, size_t errlen)
{
    char *ln;
    size_t lnlen;
    uint8_t (*shas)[BFDB_SHA256_LEN] = NULL;
    size_t n = 0;
    int rc;

    *freed = 0;
    rc = push_lock_take(w, name, ver, &ln, &lnlen);
    if (rc == BFDB_ENOMEM) {
        snprintf(err, errlen, "out of memory");
        return rc;
    }
    if (rc != BFDB_OK) {
        snprintf(err, errlen, "a push of %s:%s is running", name, ver);
        return BFDB_EBUSY;
    }
    rc = bfdb_model_upload_drop(w->kv, name, ver, &shas, &n);
    if (rc == BFDB_OK) {
        free_unused(w, shas, n, freed, NULL);
        free(shas);
    } else {
        snprintf(err, errlen, "%s", bfdb_store_errmsg(w->kv));
    }
    push_lock_drop(w, ln, lnlen);
    return rc;
}

static void
abort_push_request(struct call *c, const uint8_t *data, size_t len)
{
    UNPACK_OR_FAIL(req, Buffdb__Model__AbortPushRequest,
                   buffdb__model__abort_push_request__unpack,
                   "AbortPushRequest");
    char *name = NULL, *ver = NULL, err[512];
    void *hdr = NULL;
    size_t hlen;
    uint64_t freed;

    if ((name = name_field(c, &req->name, "name", 0)) == NULL ||
        (ver = name_field(c, &req->version, "version", 0)) == NULL)
        goto out;
    int rc = bfdb_model_upload_get(c->w->kv, name, ver, &hdr, &hlen, NULL,
                                   NULL, NULL);
    free(hdr);
    if (rc != BFDB_OK) {
        h_store_fail(c, rc, bfdb_store_errmsg(c->w->kv));
        goto out;
    }
    rc = drop_upload(c->w, name, ver, &freed, err, sizeof(err));
    if (rc == BFDB_EBUSY) {
        call_fail(c, GRPC_STATUS_ABORTED, "%s", err);
    } else if (rc != BFDB_OK) {
        call_fail(c, call_store_status(rc), "%s", err);
    } else {
        Buffdb__Model__AbortPushResponse resp =
            BUFFDB__MODEL__ABORT_PUSH_RESPONSE__INIT;
        resp.parts_freed = freed;
        call_reply(c, &resp.base);
    }
out:
    free(name);
    free(ver);
    buffdb__model__abort_push_request__free_unpacked(req, NULL);
}

static void
list_models_request(struct call *c, const uint8_t *data, size_t len)
{
    UNPACK_OR_FAIL(req, Buffdb__Model__ListModelsRequest,
                   buffdb__model__list_models_request__unpack,
                   "ListModelsRequest");
    buffdb__model__list_models_request__free_unpacked(req, NULL);
    struct worker *w = c->w;
    char **names = NULL;
    size_t n = 0;
    int rc = bfdb_model_names(w->kv, &names, &n);
    if (rc != BFDB_OK) {
        h_store_fail(c, rc, bfdb_store_errmsg(w->kv));
        return;
    }
    Buffdb__Model__ModelSummary *ms = calloc(n ? n : 1, sizeof(*ms));
    Buffdb__Model__ModelSummary **mp = calloc(n ? n : 1, sizeof(*mp));
    /* per model: versions, infos, aliases, kept until the reply is packed */
    struct keep {
        char **v, **al, **av;
        void **inf;
        size_t *il, nv, nal;
        Buffdb__Model__ModelSummary__AliasesEntry *ae, **aep;
    } *k = calloc(n ? n : 1, sizeof(*k));
    if (ms == NULL || mp == NULL || k == NULL) {
        call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        buffdb__model__model_summary__init(&ms[i]);
        mp[i] = &ms[i];
        ms[i].name = bin(names[i]);
        if ((rc = bfdb_model_versions(w->kv, names[i], &k[i].v, &k[i].inf,
                                      &k[i].il, &k[i].nv)) != BFDB_OK ||
            (rc = bfdb_model_aliases(w->kv, names[i], NULL, &k[i].al,
                                     &k[i].av, &k[i].nal)) != BFDB_OK) {
            h_store_fail(c, rc, bfdb_store_errmsg(w->kv));
            goto out;
        }
        ms[i].versions = (uint32_t)k[i].nv;
        if (k[i].nv > 0)
            ms[i].latest = bin(k[i].v[k[i].nv - 1]);
        for (size_t j = 0; j < k[i].nv; j++) {
            ModelInfo *mi = buffdb__model__model_info__unpack(
                NULL, k[i].il[j], k[i].inf[j]);
            if (mi) {
                ms[i].size_bytes += mi->size_bytes;
                buffdb__model__model_info__free_unpacked(mi, NULL);
            }
        }
        k[i].ae = calloc(k[i].nal ? k[i].nal : 1, sizeof(*k[i].ae));
        k[i].aep = calloc(k[i].nal ? k[i].nal : 1, sizeof(*k[i].aep));
        if (k[i].ae == NULL || k[i].aep == NULL) {
            call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
            goto out;
        }
        for (size_t j = 0; j < k[i].nal; j++) {
            buffdb__model__model_summary__aliases_entry__init(&k[i].ae[j]);
            k[i].ae[j].key = k[i].al[j];
            k[i].ae[j].value = k[i].av[j];
            k[i].aep[j] = &k[i].ae[j];
        }
        ms[i].n_aliases = k[i].nal;
        ms[i].aliases = k[i].aep;
    }
    Buffdb__Model__ListModelsResponse resp =
        BUFFDB__MODEL__LIST_MODELS_RESPONSE__INIT;
    resp.n_models = n;
    resp.models = mp;
    call_reply(c, &resp.base);
out:
    if (k)
        for (size_t i = 0; i < n; i++) {
            bfdb_model_strv_free(k[i].v, k[i].nv);
            bfdb_model_strv_free((char **)k[i].inf, k[i].nv);
            free(k[i].il);
            bfdb_model_strv_free(k[i].al, k[i].nal);
            bfdb_model_strv_free(k[i].av, k[i].nal);
            free(k[i].ae);
            free(k[i].aep);
        }
    free(k);
    free(ms);
    free(mp);
    bfdb_model_strv_free(names, n);
}

static void
list_versions_request(struct call *c, const uint8_t *data, size_t len)
{
    UNPACK_OR_FAIL(req, Buffdb__Model__ListVersionsRequest,
                   buffdb__model__list_versions_request__unpack,
                   "ListVersionsRequest");
    struct worker *w = c->w;
    char *name = NULL, **v = NULL, **al = NULL, **av = NULL;
    void **inf = NULL;
    size_t *il = NULL, nv = 0, nal = 0;
    ModelInfo **mis = NULL;
    Buffdb__Model__VersionSummary *vs = NULL, **vp = NULL;
    ProtobufCBinaryData *abuf = NULL;

    if ((name = name_field(c, &req->name, "name", 0)) == NULL)
        goto out;
    int rc = bfdb_model_versions(w->kv, name, &v, &inf, &il, &nv);
    if (rc == BFDB_OK)
        rc = bfdb_model_aliases(w->kv, name, NULL, &al, &av, &nal);
    if (rc != BFDB_OK) {
        h_store_fail(c, rc, bfdb_store_errmsg(w->kv));
        goto out;
    }
    if (nv == 0) {
        call_fail(c, GRPC_STATUS_NOT_FOUND, "no model named %s", name);
        goto out;
    }
    vs = calloc(nv, sizeof(*vs));
    vp = calloc(nv, sizeof(*vp));
    mis = calloc(nv, sizeof(*mis));
    abuf = calloc(nal ? nal : 1, sizeof(*abuf));
    if (vs == NULL || vp == NULL || mis == NULL || abuf == NULL) {
        call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    size_t used = 0;
    for (size_t i = 0; i < nv; i++) {
        buffdb__model__version_summary__init(&vs[i]);
        vp[i] = &vs[i];
        vs[i].version = bin(v[i]);
        mis[i] = buffdb__model__model_info__unpack(NULL, il[i], inf[i]);
        if (mis[i]) {
            vs[i].created_at = mis[i]->created_at;
            vs[i].size_bytes = mis[i]->size_bytes;
            vs[i].framework = mis[i]->framework;
        }
        vs[i].aliases = abuf + used;
        for (size_t j = 0; j < nal; j++)
            if (strcmp(av[j], v[i]) == 0)
                abuf[used + vs[i].n_aliases++] = bin(al[j]);
        used += vs[i].n_aliases;
    }
    Buffdb__Model__ListVersionsResponse resp =
        BUFFDB__MODEL__LIST_VERSIONS_RESPONSE__INIT;
    resp.n_versions = nv;
    resp.versions = vp;
    call_reply(c, &resp.base);
out:
    if (mis)
        for (size_t i = 0; i < nv; i++)
            if (mis[i])
                buffdb__model__model_info__free_unpacked(mis[i], NULL);
    free(mis);
    free(vs);
    free(vp);
    free(abuf);
    bfdb_model_strv_free(v, nv);
    bfdb_model_strv_free((char **)inf, nv);
    free(il);
    bfdb_model_strv_free(al, nal);
    bfdb_model_strv_free(av, nal);
    free(name);
    buffdb__model__list_versions_request__free_unpacked(req, NULL);
}

static void
delete_request(struct call *c, const uint8_t *data, size_t len)
{
    UNPACK_OR_FAIL(req, Buffdb__Model__DeleteVersionRequest,
                   buffdb__model__delete_version_request__unpack,
                   "DeleteVersionRequest");
    struct worker *w = c->w;
    char *name = NULL, *ver = NULL, **removed = NULL;
    uint8_t (*shas)[BFDB_SHA256_LEN] = NULL;
    size_t n = 0, nrem = 0;
    ProtobufCBinaryData *rb = NULL;

    if ((name = name_field(c, &req->name, "name", 0)) == NULL ||
        (ver = name_field(c, &req->version, "version", 0)) == NULL)
        goto out;
    bfdb_cache_global_begin(w->shm);
    int rc = bfdb_model_delete(w->kv, name, ver, req->force, &shas, &n,
                               &removed, &nrem);
    bfdb_cache_global_end(w->shm);
    if (rc != BFDB_OK) {
        h_store_fail(c, rc, bfdb_store_errmsg(w->kv));
        goto out;
    }
    Buffdb__Model__DeleteVersionResponse resp =
        BUFFDB__MODEL__DELETE_VERSION_RESPONSE__INIT;
    free_unused(w, shas, n, &resp.parts_freed, &resp.bytes_freed);
    rb = calloc(nrem ? nrem : 1, sizeof(*rb));
    if (rb == NULL) {
        call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < nrem; i++)
        rb[i] = bin(removed[i]);
    resp.n_aliases_removed = nrem;
    resp.aliases_removed = rb;
    log_info("model %s:%s deleted: %" PRIu64 " parts (%" PRIu64 " bytes) "
             "freed", name, ver, resp.parts_freed, resp.bytes_freed);
    call_reply(c, &resp.base);
out:
    free(rb);
    free(shas);
    bfdb_model_strv_free(removed, nrem);
    free(name);
    free(ver);
    buffdb__model__delete_version_request__free_unpacked(req, NULL);
}

static void
set_alias_request(struct call *c, const uint8_t *data, size_t len)
{
    UNPACK_OR_FAIL(req, Buffdb__Model__SetAliasRequest,
                   buffdb__model__set_alias_request__unpack,
                   "SetAliasRequest");
    struct worker *w = c->w;
    char *name = NULL, *alias = NULL, *ver = NULL, *prev = NULL;

    if ((name = name_field(c, &req->name, "name", 0)) == NULL ||
        (alias = name_field(c, &req->alias, "alias", 0)) == NULL ||
        (ver = name_field(c, &req->version, "version", 1)) == NULL)
        goto out;
    /* it writes one kv key, the alias's: its cache entry goes */
    char ak[BFDB_MODEL_KEY_MAX];
    const char *keys[1] = {ak};
    size_t lens[1] = {bfdb_model_key_alias(ak, sizeof(ak), name, alias)};
    bfdb_cache_keys_begin(w->cache, w->shm, keys, lens, 1);
    int rc = bfdb_model_alias_set(w->kv, name, alias, ver, &prev);
    bfdb_cache_global_end(w->shm);
    if (rc != BFDB_OK) {
        h_store_fail(c, rc, bfdb_store_errmsg(w->kv));
        goto out;
    }
    Buffdb__Model__SetAliasResponse resp =
        BUFFDB__MODEL__SET_ALIAS_RESPONSE__INIT;
    resp.previous = bin(prev);
    call_reply(c, &resp.base);
out:
    free(prev);
    free(name);
    free(alias);
    free(ver);
    buffdb__model__set_alias_request__free_unpacked(req, NULL);
}

static void
verify_request(struct call *c, const uint8_t *data, size_t len)
{
    UNPACK_OR_FAIL(req, Buffdb__Model__VerifyRequest,
                   buffdb__model__verify_request__unpack, "VerifyRequest");
    struct worker *w = c->w;
    char *name = NULL, *ver = NULL;
    struct bfdb_model_part *parts = NULL;
    size_t nparts = 0;
    Buffdb__Model__FileCheck *fc = NULL, **fcp = NULL;
    char **errs = NULL;
    ModelInfo *mi = load_info(c, w->kv, &req->name, &req->version,
                              &req->alias, &name, &ver);

    if (mi == NULL)
        goto out;
    int rc = bfdb_model_parts(w->kv, name, ver, &parts, &nparts);
    if (rc != BFDB_OK) {
        h_store_fail(c, rc, bfdb_store_errmsg(w->kv));
        goto out;
    }
    size_t nf = mi->n_files;
    fc = calloc(nf ? nf : 1, sizeof(*fc));
    fcp = calloc(nf ? nf : 1, sizeof(*fcp));
    errs = calloc(nf ? nf : 1, sizeof(*errs));
    if (fc == NULL || fcp == NULL || errs == NULL) {
        call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    Buffdb__Model__VerifyResponse resp = BUFFDB__MODEL__VERIFY_RESPONSE__INIT;
    resp.ok = 1;
    size_t i = 0;
    for (size_t f = 0; f < nf; f++) {
        char msg[512] = "";
        bfdb_sha256 *h = bfdb_sha256_new();
        uint64_t seen = 0;
        buffdb__model__file_check__init(&fc[f]);
        fcp[f] = &fc[f];
        fc[f].path = mi->files[f]->path;
        for (; i < nparts && parts[i].file < f; i++)
            ;
        for (; i < nparts && parts[i].file == f; i++) {
            uint64_t id;
            void *d;
            size_t dl;
            uint8_t dg[32];
            int match;
            if (msg[0] != '\0')
                continue;
            /* the blob the version names (as Pull reads it) */
            if (blob_id_of(mi, &parts[i], &id) != 0) {
                snprintf(msg, sizeof(msg), "part %u has no blob id",
                         parts[i].part);
                continue;
            }
            rc = part_get(w->blob, id, parts[i].sha, parts[i].size, &d, &dl,
                          dg, &match);
            if (rc == BFDB_ENOTFOUND) {
                snprintf(msg, sizeof(msg), "part %u is missing (blob %" PRIu64
                         " is gone)", parts[i].part, id);
                continue;
            }
            if (rc != BFDB_OK) {
                snprintf(msg, sizeof(msg), "part %u: %s", parts[i].part,
                         bfdb_store_errmsg(w->blob));
                continue;
            }
            if (!match)
                snprintf(msg, sizeof(msg), "part %u (blob %" PRIu64 ") does "
                         "not match its digest", parts[i].part, id);
            if (h)
                bfdb_sha256_update(h, d, dl);
            seen += dl;
            resp.bytes_checked += dl;
            free(d);
        }
        uint8_t fd[32], want[32];
        if (h) {
            bfdb_sha256_final(h, fd);
            bfdb_sha256_free(h);
        }
        if (msg[0] == '\0' && seen != mi->files[f]->size)
            snprintf(msg, sizeof(msg), "%" PRIu64 " bytes found, %" PRIu64
                     " expected", seen, mi->files[f]->size);
        if (msg[0] == '\0' &&
            (unhex32(&mi->files[f]->sha256, want) != 0 ||
             memcmp(want, fd, 32) != 0))
            snprintf(msg, sizeof(msg), "the file's sha256 does not match");
        fc[f].ok = msg[0] == '\0';
        if (!fc[f].ok) {
            resp.ok = 0;
            errs[f] = strdup(msg);
            fc[f].error = bin(errs[f]);
        }
    }
    resp.n_files = nf;
    resp.files = fcp;
    call_reply(c, &resp.base);
out:
    if (errs && mi)
        for (size_t f = 0; f < mi->n_files; f++)
            free(errs[f]);
    free(errs);
    free(fc);
    free(fcp);
    free(parts);
    if (mi)
        buffdb__model__model_info__free_unpacked(mi, NULL);
    free(name);
    free(ver);
    buffdb__model__verify_request__free_unpacked(req, NULL);
}

/* ---- housekeeping ---------------------------------------------------------------- */

void
h_model_housekeeping(struct worker *w)
{
    static long last_ms;
    struct timespec ts;
    char **nv = NULL, err[512];
    size_t n = 0;

    /* one worker, about once a minute */
    if (w->slot != 0)
        return;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long now = ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
    if (last_ms != 0 && now - last_ms < 60000)
        return;
    last_ms = now;
    int64_t before = (int64_t)time(NULL) - w->cfg->push_resume_ttl_ms / 1000;
    if (bfdb_model_upload_expired(w->kv, before, &nv, &n) != BFDB_OK) {
        log_warn("could not list unfinished pushes: %s",
                 bfdb_store_errmsg(w->kv));
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t freed;
        if (drop_upload(w, nv[2 * i], nv[2 * i + 1], &freed, err,
                        sizeof(err)) == BFDB_OK)
            log_info("unfinished push of %s:%s expired: %" PRIu64 " parts "
                     "freed", nv[2 * i], nv[2 * i + 1], freed);
    }
    bfdb_model_strv_free(nv, 2 * n);
}

const struct bfdb_method bfdb_method_model_push = {
    "/buffdb.model.Model/Push", CALL_CLIENT_STREAM, push_request, push_end,
    NULL, push_cleanup};
const struct bfdb_method bfdb_method_model_push_status = {
    "/buffdb.model.Model/PushStatus", CALL_BIDI, push_status_request, NULL,
    NULL, NULL};
const struct bfdb_method bfdb_method_model_abort_push = {
    "/buffdb.model.Model/AbortPush", CALL_BIDI, abort_push_request, NULL,
    NULL, NULL};
const struct bfdb_method bfdb_method_model_pull = {
    "/buffdb.model.Model/Pull", CALL_BIDI, pull_request, NULL, pull_pump,
    pull_cleanup};
const struct bfdb_method bfdb_method_model_list_models = {
    "/buffdb.model.Model/ListModels", CALL_BIDI, list_models_request, NULL,
    NULL, NULL};
const struct bfdb_method bfdb_method_model_list_versions = {
    "/buffdb.model.Model/ListVersions", CALL_BIDI, list_versions_request,
    NULL, NULL, NULL};
const struct bfdb_method bfdb_method_model_get_info = {
    "/buffdb.model.Model/GetInfo", CALL_BIDI, get_info_request, NULL, NULL,
    NULL};
const struct bfdb_method bfdb_method_model_delete = {
    "/buffdb.model.Model/DeleteVersion", CALL_BIDI, delete_request, NULL,
    NULL, NULL};
const struct bfdb_method bfdb_method_model_set_alias = {
    "/buffdb.model.Model/SetAlias", CALL_BIDI, set_alias_request, NULL, NULL,
    NULL};
const struct bfdb_method bfdb_method_model_verify = {
    "/buffdb.model.Model/Verify", CALL_BIDI, verify_request, NULL, NULL,
    NULL};
