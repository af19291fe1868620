/*
 * test_cmp.c - the digest comparison behind Eq/NotEq (common/cmp.c)
 */
#include "config.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "common/cmp.h"

static void
digest_of(const char *s, uint8_t d[BFDB_DIGEST_LEN])
{
    bfdb_sha256_digest(s, strlen(s), d);
}

Test(cmp, empty_list_is_true_for_both)
{
    struct bfdb_cmp c;
    bfdb_cmp_init(&c, BFDB_CMP_EQ);
    cr_assert_eq(bfdb_cmp_result(&c), 1);
    bfdb_cmp_free(&c);
    bfdb_cmp_init(&c, BFDB_CMP_NOT_EQ);
    cr_assert_eq(bfdb_cmp_result(&c), 1);
    bfdb_cmp_free(&c);
}

Test(cmp, eq_decides_false_at_first_difference)
{
    struct bfdb_cmp c;
    uint8_t a[BFDB_DIGEST_LEN], b[BFDB_DIGEST_LEN];
    digest_of("a", a);
    digest_of("b", b);
    bfdb_cmp_init(&c, BFDB_CMP_EQ);
    cr_assert_eq(bfdb_cmp_add(&c, a), 0);
    cr_assert_eq(bfdb_cmp_add(&c, a), 0);
    cr_assert_eq(bfdb_cmp_result(&c), 1);
    cr_assert_eq(bfdb_cmp_add(&c, b), 1);
    cr_assert_eq(bfdb_cmp_result(&c), 0);
    cr_assert_eq(bfdb_cmp_add(&c, a), 1, "a decided result stays decided");
    bfdb_cmp_free(&c);
}

Test(cmp, not_eq_finds_a_repeat_among_many)
{
    struct bfdb_cmp c;
    uint8_t d[BFDB_DIGEST_LEN];
    char buf[32];
    bfdb_cmp_init(&c, BFDB_CMP_NOT_EQ);
    for (int i = 0; i < 5000; i++) {
        snprintf(buf, sizeof(buf), "v%d", i);
        digest_of(buf, d);
        cr_assert_eq(bfdb_cmp_add(&c, d), 0, "distinct value %d", i);
    }
    cr_assert_eq(bfdb_cmp_result(&c), 1);
    digest_of("v1234", d);
    cr_assert_eq(bfdb_cmp_add(&c, d), 1);
    cr_assert_eq(bfdb_cmp_result(&c), 0);
    bfdb_cmp_free(&c);
}

Test(cmp, sha256_matches_known_vector)
{
    uint8_t d[BFDB_DIGEST_LEN];
    static const uint8_t abc[BFDB_DIGEST_LEN] = {
        0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40,
        0xde, 0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17,
        0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
    bfdb_sha256_digest("abc", 3, d);
    cr_assert_arr_eq(d, abc, BFDB_DIGEST_LEN);
}
