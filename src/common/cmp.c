/*
 * cmp.c - streaming equality over digests (see cmp.h)
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "common/cmp.h"
#include "common/util.h"

void
bfdb_cmp_init(struct bfdb_cmp *c, int mode)
{
    memset(c, 0, sizeof(*c));
    c->mode = mode;
}

void
bfdb_cmp_free(struct bfdb_cmp *c)
{
    free(c->set);
    c->set = NULL;
    c->cap = 0;
}

static int
digest_is_zero(const uint8_t d[BFDB_DIGEST_LEN])
{
    for (int i = 0; i < BFDB_DIGEST_LEN; i++)
        if (d[i])
            return 0;
    return 1;
}

static size_t
digest_slot(const uint8_t d[BFDB_DIGEST_LEN], size_t cap)
{
    uint64_t h;
    memcpy(&h, d, sizeof(h));
    return (size_t)(h & (cap - 1));
}

/* set_insert - returns 1 if d was already present.  The all-zero digest
 * marks an empty slot; a real all-zero SHA-256 is not going to occur, and
 * if it did it would only be compared as "absent". */
static int
set_insert(struct bfdb_cmp *c, const uint8_t d[BFDB_DIGEST_LEN])
{
    if ((c->n + 1) * 2 > c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 64;
        uint8_t(*nset)[BFDB_DIGEST_LEN] = xcalloc(ncap, BFDB_DIGEST_LEN);
        for (size_t i = 0; i < c->cap; i++) {
            if (digest_is_zero(c->set[i]))
                continue;
            size_t s = digest_slot(c->set[i], ncap);
            while (!digest_is_zero(nset[s]))
                s = (s + 1) & (ncap - 1);
            memcpy(nset[s], c->set[i], BFDB_DIGEST_LEN);
        }
        free(c->set);
        c->set = nset;
        c->cap = ncap;
    }
    size_t s = digest_slot(d, c->cap);
    while (!digest_is_zero(c->set[s])) {
        if (memcmp(c->set[s], d, BFDB_DIGEST_LEN) == 0)
            return 1;
        s = (s + 1) & (c->cap - 1);
    }
    memcpy(c->set[s], d, BFDB_DIGEST_LEN);
    return 0;
}

int
bfdb_cmp_add(struct bfdb_cmp *c, const uint8_t digest[BFDB_DIGEST_LEN])
{
    if (c->decided)
        return 1;
    if (c->mode == BFDB_CMP_EQ) {
        if (c->n == 0)
            memcpy(c->first, digest, BFDB_DIGEST_LEN);
        else if (memcmp(c->first, digest, BFDB_DIGEST_LEN) != 0)
            c->decided = 1;
    } else if (set_insert(c, digest)) {
        c->decided = 1;
    }
    c->n++;
    return c->decided;
}

int
bfdb_cmp_result(const struct bfdb_cmp *c)
{
    return !c->decided;
}

struct bfdb_sha256 {
    EVP_MD_CTX *ctx;
};

bfdb_sha256 *
bfdb_sha256_new(void)
{
    bfdb_sha256 *h = xmalloc(sizeof(*h));
    h->ctx = EVP_MD_CTX_new();
    if (h->ctx == NULL || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1)
        abort();
    return h;
}

void
bfdb_sha256_update(bfdb_sha256 *h, const void *data, size_t len)
{
    if (len > 0 && EVP_DigestUpdate(h->ctx, data, len) != 1)
        abort();
}

void
bfdb_sha256_final(bfdb_sha256 *h, uint8_t out[BFDB_DIGEST_LEN])
{
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(h->ctx, out, &n) != 1 || n != BFDB_DIGEST_LEN)
        abort();
}

void
bfdb_sha256_free(bfdb_sha256 *h)
{
    if (h == NULL)
        return;
    EVP_MD_CTX_free(h->ctx);
    free(h);
}

void
bfdb_sha256_digest(const void *data, size_t len, uint8_t out[BFDB_DIGEST_LEN])
{
    bfdb_sha256 *h = bfdb_sha256_new();
    bfdb_sha256_update(h, data, len);
    bfdb_sha256_final(h, out);
    bfdb_sha256_free(h);
}
