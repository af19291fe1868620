/*
 * cmp.h - the comparison behind Kv.Eq/NotEq and Blob.EqData/NotEqData
 *
 * Values arrive one at a time (a client stream); each is reduced to its
 * SHA-256 digest as it is read, so a 1 GiB blob is compared without being
 * held in memory.  EQ is true when every value equals the first; NOT_EQ is
 * true when no two values are equal.  An empty list is true for both.
 * Once the answer is false it cannot change (bfdb_cmp_decided()), and the
 * caller may stop reading.  Digest equality stands for value equality:
 * a SHA-256 collision is not a practical concern.
 */
#ifndef BFDB_COMMON_CMP_H
#define BFDB_COMMON_CMP_H

#include <stddef.h>
#include <stdint.h>

#define BFDB_DIGEST_LEN 32

enum bfdb_cmp_mode { BFDB_CMP_EQ, BFDB_CMP_NOT_EQ };

struct bfdb_cmp {
    int mode;
    int decided;          /* the result is false and final */
    size_t n;             /* values added so far */
    uint8_t first[BFDB_DIGEST_LEN];
    uint8_t (*set)[BFDB_DIGEST_LEN]; /* NOT_EQ: open-addressing hash set */
    size_t cap;
};

void bfdb_cmp_init(struct bfdb_cmp *c, int mode);
void bfdb_cmp_free(struct bfdb_cmp *c);

/* bfdb_cmp_add - add one value's digest; returns 1 if the result is now
 * decided (false), else 0. */
int bfdb_cmp_add(struct bfdb_cmp *c, const uint8_t digest[BFDB_DIGEST_LEN]);

/* bfdb_cmp_result - 1 (true) or 0 (false) for the values added so far */
int bfdb_cmp_result(const struct bfdb_cmp *c);

/* Incremental SHA-256 over a value read in pieces. */
typedef struct bfdb_sha256 bfdb_sha256;
bfdb_sha256 *bfdb_sha256_new(void);
void bfdb_sha256_update(bfdb_sha256 *h, const void *data, size_t len);
void bfdb_sha256_final(bfdb_sha256 *h, uint8_t out[BFDB_DIGEST_LEN]);
void bfdb_sha256_free(bfdb_sha256 *h);
void bfdb_sha256_digest(const void *data, size_t len, uint8_t out[BFDB_DIGEST_LEN]);

#endif /* BFDB_COMMON_CMP_H */
