/*
 * test_bench.c - buffdb-bench against a real server: what its figures
 * rest on (every request answered and checked), for the modes the
 * benchmark scripts use, and its refusal of options that cannot go
 * together.  Throughput is never asserted: that is bench/'s business.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../helpers/helpers.h"
#include "../helpers/server.h"

static char *dir;
static struct ts_server *srv;
static struct th_run r;
static char bench[PATH_MAX];

static void
setup(void)
{
    char b[PATH_MAX];

    dir = th_tmpdir();
    cr_assert_not_null(dir, "could not make a temporary directory");
    snprintf(b, sizeof(b), "%s", th_bin());
    snprintf(bench, sizeof(bench), "%s/buffdb-bench", dirname(b));
}

static void
teardown(void)
{
    th_run_free(&r);
    ts_cleanup_all();
    th_rmrf(dir);
    free(dir);
}

TestSuite(bench, .init = setup, .fini = teardown, .timeout = 120.);

/* run_bench - buffdb-bench ARGS... (NULL-terminated), with --addr of the
 * test's server when there is one; into r */
static void
run_bench(const char *first, ...)
{
    char *argv[40];
    int n = 0;
    va_list ap;

    th_run_free(&r);
    argv[n++] = bench;
    va_start(ap, first);
    for (const char *a = first; a != NULL && n < 36;
         a = va_arg(ap, const char *))
        argv[n++] = (char *)a;
    va_end(ap);
    if (srv != NULL) {
        argv[n++] = "--addr";
        argv[n++] = srv->addr;
    }
    argv[n] = NULL;
    cr_assert_eq(th_run(&r, dir, NULL, 0, argv), 0,
                 "could not run %s", bench);
}

static void
expect(int status, const char *what)
{
    cr_assert_eq(r.status, status,
                 "%s: exit %d, expected %d\nstdout:\n%s\nstderr:\n%s", what,
                 r.status, status, r.out, r.err);
}

/* json_u - the whole number after "key": in the report, asserting it is
 * there */
static unsigned long long
json_u(const char *key)
{
    char pat[64];

    snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *p = strstr(r.out, pat);
    cr_assert_not_null(p, "no %s in the report: %s", key, r.out);
    return strtoull(p + strlen(pat), NULL, 10);
}

Test(bench, coalesce_is_refused_without_streams)
{
    run_bench("--coalesce", "kv-get", NULL);
    expect(2, "--coalesce with --pipeline 1");
    cr_expect_not_null(strstr(r.err, "--coalesce is for streams"), "%s",
                       r.err);

    run_bench("--coalesce", "--pipeline", "16", "--target", "etcd", "kv-get",
              NULL);
    expect(2, "--coalesce against etcd");
    cr_expect_not_null(strstr(r.err, "--coalesce is for streams"), "%s",
                       r.err);
}

/*
 * The runs bench/cache_ratio.sh makes, small: a preload, then pipelined
 * Gets with and without --coalesce.  Every request must be answered with
 * a value of the preloaded size (buffdb-bench checks each answer: a
 * wrong one counts as bad, a missing key as a miss).
 */
Test(bench, pipelined_gets_are_all_answered_with_and_without_coalesce)
{
    srv = ts_start(NULL);
    run_bench("--keyspace", "500", "--value-size", "64", "--preload",
              "--requests", "1", "--warmup", "0", "--connections", "2",
              "--json", "kv-get", NULL);
    expect(0, "preload");
    cr_assert_eq(json_u("errors_total"), 0, "%s", r.out);

    for (int co = 0; co < 2; co++) {
        const char *what = co ? "coalesced" : "one write per request";
        if (co)
            run_bench("--keyspace", "500", "--value-size", "64",
                      "--pipeline", "16", "--connections", "2",
                      "--requests", "20000", "--warmup", "0", "--coalesce",
                      "--json", "kv-get", NULL);
        else
            run_bench("--keyspace", "500", "--value-size", "64",
                      "--pipeline", "16", "--connections", "2",
                      "--requests", "20000", "--warmup", "0", "--json",
                      "kv-get", NULL);
        expect(0, what);
        cr_expect_eq(json_u("ops"), 20000, "%s: %s", what, r.out);
        cr_expect_eq(json_u("errors_total"), 0, "%s: %s", what, r.out);
        cr_expect_eq(json_u("bad_responses"), 0, "%s: %s", what, r.out);
        cr_expect_eq(json_u("misses"), 0, "%s: %s", what, r.out);
        cr_expect_eq(json_u("unanswered"), 0, "%s: %s", what, r.out);
        cr_expect_eq(json_u("leaked_calls"), 0, "%s: %s", what, r.out);
        cr_expect_not_null(strstr(r.out, co ? "\"mode\":\"streamed, coalesced\""
                                            : "\"mode\":\"streamed\""),
                           "%s: %s", what, r.out);
    }
    ts_stop_ok(srv);
    srv = NULL;
}

/* Sets coalesced, then read back by a plain pipelined run: what the
 * coalesced writes stored is what the Gets find */
Test(bench, coalesced_sets_are_stored)
{
    srv = ts_start(NULL);
    run_bench("--keyspace", "300", "--value-size", "48", "--pipeline", "16",
              "--requests", "5000", "--warmup", "0", "--coalesce", "--json",
              "kv-set", NULL);
    expect(0, "coalesced Sets");
    cr_assert_eq(json_u("ops"), 5000, "%s", r.out);
    cr_assert_eq(json_u("errors_total"), 0, "%s", r.out);
    cr_assert_eq(json_u("bad_responses"), 0, "%s", r.out);

    /* 5,000 uniform draws over 300 keys leave none unset (the chance
     * that a given key is missed is (299/300)^5000, about 6e-8) */
    run_bench("--keyspace", "300", "--value-size", "48", "--pipeline", "8",
              "--requests", "3000", "--warmup", "0", "--json", "kv-get",
              NULL);
    expect(0, "Gets of what was set");
    cr_expect_eq(json_u("ops"), 3000, "%s", r.out);
    cr_expect_eq(json_u("errors_total"), 0, "%s", r.out);
    cr_expect_eq(json_u("bad_responses"), 0, "%s", r.out);
    ts_stop_ok(srv);
    srv = NULL;
}
