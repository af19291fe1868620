/*
 * test_model_big.c - a 1 GiB model of random bytes pushed and pulled
 * through a real server with the CLI (`buffdb model push|pull`), checked
 * byte for byte by digest, then verified, deleted and its parts freed.
 *
 * The bytes come from a seeded xorshift generator (fast, and random as far
 * as deduplication can tell: no two 4 MiB parts are alike).  The file is
 * written once and read back by digest, never held in memory.  Figures
 * (throughput, peak RSS) are bench/model_bench.sh's business: this test
 * checks correctness only.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../helpers/helpers.h"
#include "../helpers/server.h"
#include "common/cmp.h"

#define BIG (1ull << 30)
#define BUF (1u << 20)

static void
teardown(void)
{
    ts_cleanup_all();
}

TestSuite(model_big, .fini = teardown, .timeout = 900.);

/* write_random - BIG bytes of a seeded generator to path; *digest theirs */
static void
write_random(const char *path, uint64_t seed, uint8_t digest[32])
{
    uint64_t *buf = malloc(BUF);
    bfdb_sha256 *h = bfdb_sha256_new();
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    cr_assert(buf && h && fd >= 0, "cannot write %s", path);
    uint64_t x = seed | 1;
    for (uint64_t done = 0; done < BIG; done += BUF) {
        for (size_t i = 0; i < BUF / 8; i++) {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            buf[i] = x * 0x2545F4914F6CDD1DULL;
        }
        bfdb_sha256_update(h, buf, BUF);
        cr_assert_eq(write(fd, buf, BUF), (ssize_t)BUF, "short write");
    }
    cr_assert_eq(close(fd), 0);
    bfdb_sha256_final(h, digest);
    bfdb_sha256_free(h);
    free(buf);
}

/* file_digest - SHA-256 of a file read a megabyte at a time */
static uint64_t
file_digest(const char *path, uint8_t digest[32])
{
    char *buf = malloc(BUF);
    bfdb_sha256 *h = bfdb_sha256_new();
    int fd = open(path, O_RDONLY);
    uint64_t total = 0;
    ssize_t n;

    cr_assert(buf && h && fd >= 0, "cannot read %s", path);
    while ((n = read(fd, buf, BUF)) > 0) {
        bfdb_sha256_update(h, buf, (size_t)n);
        total += (uint64_t)n;
    }
    cr_assert_geq(n, 0, "read error on %s", path);
    close(fd);
    bfdb_sha256_final(h, digest);
    bfdb_sha256_free(h);
    free(buf);
    return total;
}

static void
expect_ok(struct th_run *r, const char *what)
{
    cr_assert_eq(r->status, 0, "%s exited %d: %s", what, r->status,
                 r->err ? r->err : "");
}

Test(model_big, one_gib_of_random_bytes_pushes_and_pulls_back_identical)
{
    struct ts_server *s = ts_start(NULL);
    struct th_run r;
    uint8_t want[32], got[32];
    char *src = th_path(s->dir, "weights.bin");
    char *out = th_path(s->dir, "out");

    write_random(src, 0x5eedULL, want);

    cr_assert_eq(th_buffdb(&r, s->dir, NULL, 0, "model", "push", "big", "1",
                           src, "--framework", "pytorch", "--addr", s->addr,
                           NULL), 0);
    expect_ok(&r, "model push");
    th_run_free(&r);
    unlink(src); /* the pull must come from the server */

    cr_assert_eq(mkdir(out, 0700), 0);
    cr_assert_eq(th_buffdb(&r, s->dir, NULL, 0, "model", "pull", "big:1",
                           "-o", out, "--addr", s->addr, NULL), 0);
    expect_ok(&r, "model pull");
    th_run_free(&r);
    char *pulled = th_path(out, "weights.bin");
    cr_assert_eq(file_digest(pulled, got), BIG, "pulled size differs");
    cr_assert_eq(memcmp(want, got, 32), 0, "pulled bytes differ");
    unlink(pulled);
    free(pulled);

    /* the server's own check of every part and the file digest */
    cr_assert_eq(th_buffdb(&r, s->dir, NULL, 0, "model", "verify", "big:1",
                           "--addr", s->addr, NULL), 0);
    expect_ok(&r, "model verify");
    th_run_free(&r);

    /* deleting the only version frees every part: no blob is left */
    cr_assert_eq(th_buffdb(&r, s->dir, NULL, 0, "model", "rm", "big", "1",
                           "--addr", s->addr, NULL), 0);
    expect_ok(&r, "model rm");
    th_run_free(&r);
    char *blob = th_path(s->dir, "blob_store.db");
    cr_assert_eq(th_buffdb(&r, s->dir, NULL, 0, "query", "--target", "blob",
                           "-s", blob, "SELECT count(*) FROM blob", NULL), 0);
    expect_ok(&r, "query");
    cr_assert_eq(atoi(r.out), 0, "blobs left after rm: %s", r.out);
    th_run_free(&r);
    free(blob);

    free(src);
    free(out);
    ts_stop_ok(s);
}
