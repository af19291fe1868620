/*
 * test_cli.c - the buffdb command line (src/buffdb.c, src/cli/), run as
 * the real binary ($BUFFDB_BIN) through tests/helpers.
 *
 * Every test runs buffdb in its own temporary directory, so the default
 * store files (kv_store.db, blob_store.db) land there; the suite's .fini
 * removes the directory.  Each check states the exit status, all of
 * stdout and all of stderr: 0 success, 1 error or false comparison (an
 * error always says why on stderr, a false comparison says nothing), 2
 * usage error (message and a --help hint, store files left alone).
 */
#include "config.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../helpers/helpers.h"

static char *dir;       /* this test's directory and buffdb's cwd */
static struct th_run r; /* the last run */
static char ebuf[8192]; /* the expected stderr built by E() or U() */

static void
setup(void)
{
    dir = th_tmpdir();
    cr_assert_not_null(dir, "could not make a temporary directory");
}

static void
teardown(void)
{
    th_run_free(&r);
    th_rmrf(dir);
    free(dir);
}

TestSuite(cli, .init = setup, .fini = teardown, .timeout = 60.);

/* E - the stderr of an error: "buffdb: <msg>\n" */
__attribute__((format(printf, 1, 2))) static const char *
E(const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(ebuf, sizeof(ebuf), "buffdb: ");
    va_start(ap, fmt);
    n += vsnprintf(ebuf + n, sizeof(ebuf) - (size_t)n, fmt, ap);
    va_end(ap);
    snprintf(ebuf + n, sizeof(ebuf) - (size_t)n, "\n");
    return ebuf;
}

/* U - the stderr of a usage error: the message and the --help hint */
__attribute__((format(printf, 1, 2))) static const char *
U(const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(ebuf, sizeof(ebuf), "buffdb: ");
    va_start(ap, fmt);
    n += vsnprintf(ebuf + n, sizeof(ebuf) - (size_t)n, fmt, ap);
    va_end(ap);
    snprintf(ebuf + n, sizeof(ebuf) - (size_t)n,
             "\nTry 'buffdb --help' for more information.\n");
    return ebuf;
}

/* in(name) - a path in the test's directory, malloc'd */
static char *
in(const char *name)
{
    return th_path(dir, name);
}

static int
exists(const char *name)
{
    char *p = name[0] == '/' ? strdup(name) : in(name);
    int e = access(p, F_OK) == 0;
    free(p);
    return e;
}

/* random_bytes - n bytes from a fixed-seed xorshift, with NUL bytes at
 * both ends and a run of them in the middle */
static char *
random_bytes(size_t n, uint64_t seed)
{
    char *p = malloc(n ? n : 1);
    uint64_t x = seed | 1;

    cr_assert_not_null(p);
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (char)(x >> 24);
    }
    if (n > 0) {
        p[0] = '\0';
        p[n - 1] = '\0';
        memset(p + n / 2, 0, n / 2 < 1000 ? n / 2 : 1000);
    }
    return p;
}

/* write_in - write a file in the test's directory; returns its path */
static char *
write_in(const char *name, const void *data, size_t len)
{
    char *p = in(name);
    cr_assert_eq(th_write_file(p, data, len), 0, "could not write %s", p);
    return p;
}

/* RUN_IN - run buffdb in dir with stdin bytes and the arguments given */
#define RUN_IN(data, len, ...)                                                 \
    do {                                                                       \
        th_run_free(&r);                                                       \
        cr_assert_eq(                                                          \
            th_buffdb(&r, dir, (data), (len), __VA_ARGS__, (char *)NULL), 0,   \
            "could not run %s", th_bin());                                     \
    } while (0)
#define RUN(...) RUN_IN(NULL, 0, __VA_ARGS__)

/* EXPECT_OUT - exit status xst, stdout exactly xout/xlen, stderr empty */
#define EXPECT_OUT(xst, xout, xlen)                                            \
    do {                                                                       \
        cr_assert_eq(r.status, (xst),                                          \
                     "exit status %d, expected %d; stderr: %s", r.status,      \
                     (xst), r.err);                                            \
        cr_assert_eq(r.errlen, 0, "unexpected stderr: %s", r.err);             \
        cr_assert_eq(r.outlen, (size_t)(xlen),                                 \
                     "stdout has %zu bytes, expected %zu", r.outlen,           \
                     (size_t)(xlen));                                          \
        cr_assert(memcmp(r.out, (xout), (xlen)) == 0,                          \
                  "stdout differs from what was expected");                    \
    } while (0)
#define EXPECT_STR(xst, xs) EXPECT_OUT(xst, xs, strlen(xs))
#define EXPECT_OK() EXPECT_OUT(0, "", 0)
/* a comparison that does not hold: 1 and silence */
#define EXPECT_FALSE() EXPECT_OUT(1, "", 0)

/* EXPECT_ERR - exit status xst, stdout empty, stderr exactly xerr */
#define EXPECT_ERR(xst, xerr)                                                  \
    do {                                                                       \
        cr_assert_eq(r.status, (xst),                                          \
                     "exit status %d, expected %d; stderr: %s", r.status,      \
                     (xst), r.err);                                            \
        cr_assert_eq(r.outlen, 0, "unexpected stdout: %s", r.out);             \
        cr_assert_str_eq(r.err, (xerr));                                       \
    } while (0)

/* EXPECT_ERR_HAS - exit 1, stdout empty, one "buffdb: " line holding xpart */
#define EXPECT_ERR_HAS(xpart)                                                  \
    do {                                                                       \
        cr_assert_eq(r.status, 1, "exit status %d, expected 1; stderr: %s",    \
                     r.status, r.err);                                         \
        cr_assert_eq(r.outlen, 0, "unexpected stdout: %s", r.out);             \
        cr_assert(strncmp(r.err, "buffdb: ", 8) == 0, "stderr: %s", r.err);    \
        cr_assert(strstr(r.err, (xpart)) != NULL, "stderr lacks \"%s\": %s",   \
                  (xpart), r.err);                                             \
        cr_assert(r.errlen > 0 && r.err[r.errlen - 1] == '\n' &&               \
                      memchr(r.err, '\n', r.errlen - 1) == NULL,               \
                  "stderr is not one line: %s", r.err);                        \
    } while (0)

/* EXPECT_NO_STORES - a usage error touched no store file */
#define EXPECT_NO_STORES()                                                     \
    do {                                                                       \
        cr_assert(!exists("kv_store.db"), "kv_store.db was created");          \
        cr_assert(!exists("blob_store.db"), "blob_store.db was created");      \
    } while (0)

/* ---- help, version and usage errors ---------------------------------- */

Test(cli, help_describes_every_command)
{
    RUN("--help");
    cr_assert_eq(r.status, 0);
    cr_assert_eq(r.errlen, 0, "stderr: %s", r.err);
    cr_assert(strncmp(r.out, "usage: buffdb ", 14) == 0, "stdout: %s", r.out);
    cr_assert_not_null(strstr(r.out, "buffdb kv [-s PATH] get KEY..."));
    cr_assert_not_null(strstr(r.out, "buffdb blob [-s PATH] get ID"));
    cr_assert_not_null(strstr(r.out, "buffdb query [--target kv|blob]"));
    cr_assert_not_null(strstr(r.out, "buffdb run"));
    cr_assert_not_null(strstr(r.out, "2 usage error"));
    cr_assert_eq(r.out[r.outlen - 1], '\n');
    EXPECT_NO_STORES();
}

Test(cli, help_aliases_print_the_same_text)
{
    RUN("--help");
    char *help = strdup(r.out);
    RUN("-h");
    EXPECT_STR(0, help);
    RUN("help");
    EXPECT_STR(0, help);
    free(help);
}

Test(cli, version_prints_name_and_version)
{
    cr_assert_str_eq(PACKAGE_VERSION, "0.1.0");
    RUN("--version");
    EXPECT_STR(0, "buffdb 0.1.0\n");
    RUN("-V");
    EXPECT_STR(0, "buffdb 0.1.0\n");
}

Test(cli, no_arguments_is_a_usage_error)
{
    th_run_free(&r);
    cr_assert_eq(th_buffdb(&r, dir, NULL, 0, (char *)NULL), 0);
    EXPECT_ERR(2, U("missing command"));
}

Test(cli, unknown_command_is_a_usage_error)
{
    RUN("frob");
    EXPECT_ERR(2, U("unknown command 'frob'"));
    RUN("--frob");
    EXPECT_ERR(2, U("unknown command '--frob'"));
    EXPECT_NO_STORES();
}

Test(cli, kv_without_a_command_is_a_usage_error)
{
    RUN("kv");
    EXPECT_ERR(2, U("kv: missing command (get, set, delete, eq, not-eq)"));
    RUN("kv", "-s", "x.db");
    EXPECT_ERR(2, U("kv: missing command (get, set, delete, eq, not-eq)"));
    EXPECT_NO_STORES();
    cr_assert(!exists("x.db"));
}

Test(cli, kv_unknown_command_is_a_usage_error)
{
    RUN("kv", "frob");
    EXPECT_ERR(2, U("kv: unknown command 'frob'"));
    EXPECT_NO_STORES();
}

Test(cli, kv_wrong_argument_counts_are_usage_errors)
{
    RUN("kv", "get");
    EXPECT_ERR(2, U("kv get: missing KEY"));
    RUN("kv", "set", "k");
    EXPECT_ERR(2, U("kv set: expected KEY VALUE"));
    RUN("kv", "set", "k", "v", "w");
    EXPECT_ERR(2, U("kv set: expected KEY VALUE"));
    RUN("kv", "delete");
    EXPECT_ERR(2, U("kv delete: expected one KEY"));
    RUN("kv", "delete", "a", "b");
    EXPECT_ERR(2, U("kv delete: expected one KEY"));
    RUN("kv", "-s");
    EXPECT_ERR(2, U("option '-s' needs a path"));
    RUN("kv", "--store");
    EXPECT_ERR(2, U("option '--store' needs a path"));
    EXPECT_NO_STORES();
}

Test(cli, blob_get_of_a_non_numeric_id_is_a_usage_error)
{
    RUN("blob", "get", "notanumber");
    EXPECT_ERR(2, U("invalid blob id 'notanumber' (expected a decimal "
                    "number)"));
    RUN("blob", "get", "-1");
    EXPECT_ERR(2, U("invalid blob id '-1' (expected a decimal number)"));
    RUN("blob", "get", "");
    EXPECT_ERR(2, U("invalid blob id '' (expected a decimal number)"));
    EXPECT_NO_STORES();
}

Test(cli, blob_get_of_an_unknown_mode_is_a_usage_error)
{
    RUN("blob", "get", "1", "sideways");
    EXPECT_ERR(2, U("blob get: unknown mode 'sideways' (data, metadata or "
                    "all)"));
    EXPECT_NO_STORES();
}

Test(cli, blob_wrong_arguments_are_usage_errors)
{
    RUN("blob");
    EXPECT_ERR(2, U("blob: missing command (get, store, update, delete, "
                    "eq-data, not-eq-data)"));
    RUN("blob", "frob");
    EXPECT_ERR(2, U("blob: unknown command 'frob'"));
    RUN("blob", "get");
    EXPECT_ERR(2, U("blob get: expected ID [data|metadata|all]"));
    RUN("blob", "get", "1", "data", "x");
    EXPECT_ERR(2, U("blob get: expected ID [data|metadata|all]"));
    RUN("blob", "store");
    EXPECT_ERR(2, U("blob store: expected FILE|- [METADATA]"));
    RUN("blob", "store", "f", "m", "x");
    EXPECT_ERR(2, U("blob store: expected FILE|- [METADATA]"));
    RUN("blob", "delete");
    EXPECT_ERR(2, U("blob delete: expected one ID"));
    RUN("blob", "delete", "x");
    EXPECT_ERR(2, U("invalid blob id 'x' (expected a decimal number)"));
    EXPECT_NO_STORES();
}

Test(cli, blob_update_usage_errors_leave_the_store_alone)
{
    RUN("blob", "update", "1");
    EXPECT_ERR(2, U("blob update: expected ID data|metadata|all"));
    RUN("blob", "update", "x", "data", "f");
    EXPECT_ERR(2, U("invalid blob id 'x' (expected a decimal number)"));
    RUN("blob", "update", "1", "sideways", "f");
    EXPECT_ERR(2, U("blob update: unknown mode 'sideways' (data, metadata "
                    "or all)"));
    RUN("blob", "update", "1", "data");
    EXPECT_ERR(2, U("blob update ID data: expected FILE"));
    RUN("blob", "update", "1", "data", "f", "m");
    EXPECT_ERR(2, U("blob update ID data: expected FILE"));
    RUN("blob", "update", "1", "all");
    EXPECT_ERR(2, U("blob update ID all: expected FILE [METADATA]"));
    RUN("blob", "update", "1", "all", "f", "m", "x");
    EXPECT_ERR(2, U("blob update ID all: expected FILE [METADATA]"));
    RUN("blob", "update", "1", "metadata", "m", "x");
    EXPECT_ERR(2, U("blob update ID metadata: expected at most one "
                    "METADATA"));
    EXPECT_NO_STORES();
}

Test(cli, blob_compare_usage_errors_leave_the_store_alone)
{
    RUN("blob", "eq-data", "1", "two");
    EXPECT_ERR(2, U("invalid blob id 'two' (expected a decimal number)"));
    RUN("blob", "not-eq-data", "x");
    EXPECT_ERR(2, U("invalid blob id 'x' (expected a decimal number)"));
    /* usage is checked first, so an unopenable store still gives 2 */
    RUN("blob", "-s", "/nonexistent/dir/b.db", "eq-data", "x");
    EXPECT_ERR(2, U("invalid blob id 'x' (expected a decimal number)"));
    EXPECT_NO_STORES();
}

Test(cli, query_with_two_sql_arguments_is_a_usage_error)
{
    RUN("query", "SELECT 1", "SELECT 2");
    EXPECT_ERR(2, U("query: expected one SQL statement"));
    RUN("query");
    EXPECT_ERR(2, U("query: expected one SQL statement"));
    RUN("query", "--target");
    EXPECT_ERR(2, U("option '--target' needs kv or blob"));
    EXPECT_NO_STORES();
}

Test(cli, query_unknown_target_is_a_usage_error)
{
    RUN("query", "--target", "nonsense", "SELECT 1");
    EXPECT_ERR(2, U("unknown target 'nonsense' (kv or blob)"));
    RUN("query", "--target=", "SELECT 1");
    EXPECT_ERR(2, U("unknown target '' (kv or blob)"));
    EXPECT_NO_STORES();
}

/* ---- kv ---------------------------------------------------------------- */

Test(cli, kv_set_then_get_prints_the_value_without_a_newline)
{
    RUN("kv", "set", "greeting", "hello world");
    EXPECT_OK();
    cr_assert(exists("kv_store.db"), "the default store is ./kv_store.db");
    cr_assert(!exists("blob_store.db"));
    RUN("kv", "get", "greeting");
    EXPECT_STR(0, "hello world");
}

Test(cli, kv_set_replaces_a_value)
{
    RUN("kv", "set", "k", "old");
    EXPECT_OK();
    RUN("kv", "set", "k", "new");
    EXPECT_OK();
    RUN("kv", "get", "k");
    EXPECT_STR(0, "new");
}

Test(cli, kv_values_keep_newlines_tabs_and_utf8)
{
    const char *v = "line 1\nline 2\t\xc3\xa9\n\n";
    RUN("kv", "set", "k", (char *)v);
    EXPECT_OK();
    RUN("kv", "get", "k");
    EXPECT_STR(0, v);
}

Test(cli, kv_empty_value_and_empty_key_work)
{
    RUN("kv", "set", "k", "");
    EXPECT_OK();
    RUN("kv", "get", "k");
    EXPECT_OK();
    RUN("kv", "set", "", "v");
    EXPECT_OK();
    RUN("kv", "get", "");
    EXPECT_STR(0, "v");
}

Test(cli, kv_get_of_two_keys_puts_a_nul_between_the_values)
{
    RUN("kv", "set", "k1", "v1");
    EXPECT_OK();
    RUN("kv", "set", "k2", "v2");
    EXPECT_OK();
    RUN("kv", "get", "k1", "k2");
    EXPECT_OUT(0, "v1\0v2", 5);
    RUN("kv", "get", "k2", "k1", "k2");
    EXPECT_OUT(0, "v2\0v1\0v2", 8);
}

Test(cli, kv_get_of_a_missing_key_fails_and_names_it)
{
    RUN("kv", "get", "nokey");
    EXPECT_ERR(1, E("key not found: nokey"));
}

Test(cli, kv_delete_then_get_fails)
{
    RUN("kv", "set", "k", "v");
    EXPECT_OK();
    RUN("kv", "delete", "k");
    EXPECT_OK();
    RUN("kv", "get", "k");
    EXPECT_ERR(1, E("key not found: k"));
}

Test(cli, kv_delete_of_a_missing_key_succeeds)
{
    RUN("kv", "delete", "never-set");
    EXPECT_OK();
    RUN("kv", "set", "k", "v");
    RUN("kv", "delete", "k");
    EXPECT_OK();
    RUN("kv", "delete", "k");
    EXPECT_OK();
}

Test(cli, kv_eq_holds_for_equal_values)
{
    RUN("kv", "set", "a", "same");
    RUN("kv", "set", "b", "same");
    RUN("kv", "set", "c", "same");
    RUN("kv", "eq", "a", "b", "c");
    EXPECT_OK();
    RUN("kv", "eq", "a");
    EXPECT_OK();
}

Test(cli, kv_eq_is_false_for_different_values)
{
    RUN("kv", "set", "a", "one");
    RUN("kv", "set", "b", "two");
    RUN("kv", "eq", "a", "b");
    EXPECT_FALSE();
    /* values that differ only in a trailing byte */
    RUN("kv", "set", "c", "one ");
    RUN("kv", "eq", "a", "c");
    EXPECT_FALSE();
}

Test(cli, kv_eq_with_a_missing_key_fails_not_found)
{
    RUN("kv", "set", "a", "v");
    RUN("kv", "eq", "a", "missing");
    EXPECT_ERR(1, E("key not found: missing"));
    RUN("kv", "eq", "missing", "a");
    EXPECT_ERR(1, E("key not found: missing"));
    RUN("kv", "not-eq", "a", "missing");
    EXPECT_ERR(1, E("key not found: missing"));
}

Test(cli, kv_not_eq_holds_for_distinct_values)
{
    RUN("kv", "set", "a", "1");
    RUN("kv", "set", "b", "2");
    RUN("kv", "set", "c", "3");
    RUN("kv", "not-eq", "a", "b", "c");
    EXPECT_OK();
}

Test(cli, kv_not_eq_is_false_with_a_repeat)
{
    RUN("kv", "set", "a", "1");
    RUN("kv", "set", "b", "2");
    RUN("kv", "set", "c", "1");
    RUN("kv", "not-eq", "a", "b", "c");
    EXPECT_FALSE();
    RUN("kv", "not-eq", "b", "b");
    EXPECT_FALSE();
}

Test(cli, kv_short_store_option_puts_the_store_there)
{
    char *sub = in("sub");
    cr_assert_eq(mkdir(sub, 0700), 0);
    char *store = th_path(sub, "my.db");
    RUN("kv", "-s", store, "set", "k", "v");
    EXPECT_OK();
    cr_assert(exists(store), "%s was not created", store);
    cr_assert(!exists("kv_store.db"));
    RUN("kv", "-s", store, "get", "k");
    EXPECT_STR(0, "v");
    /* the default store does not have it */
    RUN("kv", "get", "k");
    EXPECT_ERR(1, E("key not found: k"));
    free(store);
    free(sub);
}

Test(cli, kv_long_store_options_put_the_store_there)
{
    RUN("kv", "--store=eq.db", "set", "k", "v1");
    EXPECT_OK();
    cr_assert(exists("eq.db"));
    RUN("kv", "--store", "sp.db", "set", "k", "v2");
    EXPECT_OK();
    cr_assert(exists("sp.db"));
    cr_assert(!exists("kv_store.db"));
    RUN("kv", "--store=eq.db", "get", "k");
    EXPECT_STR(0, "v1");
    RUN("kv", "-s", "sp.db", "get", "k");
    EXPECT_STR(0, "v2");
    /* the last option wins */
    RUN("kv", "-s", "eq.db", "--store=sp.db", "get", "k");
    EXPECT_STR(0, "v2");
}

Test(cli, kv_empty_store_path_is_an_error)
{
    RUN("kv", "--store=", "get", "k");
    EXPECT_ERR(1, E("kv store path is empty"));
}

Test(cli, kv_key_starting_with_a_dash_works_after_double_dash)
{
    RUN("kv", "set", "--", "-k", "v");
    EXPECT_OK();
    RUN("kv", "get", "--", "-k");
    EXPECT_STR(0, "v");
    RUN("kv", "set", "--", "--", "dd");
    EXPECT_OK();
    RUN("kv", "get", "--", "--");
    EXPECT_STR(0, "dd");
    RUN("kv", "delete", "--", "-k");
    EXPECT_OK();
    RUN("kv", "get", "--", "-k");
    EXPECT_ERR(1, E("key not found: -k"));
}

/* ---- blob -------------------------------------------------------------- */

Test(cli, blob_store_prints_each_new_id)
{
    char *f = write_in("f", "abc", 3);
    RUN("blob", "store", f);
    EXPECT_STR(0, "1\n");
    cr_assert(exists("blob_store.db"), "the default store is ./blob_store.db");
    cr_assert(!exists("kv_store.db"));
    RUN("blob", "store", f);
    EXPECT_STR(0, "2\n");
    RUN("blob", "get", "2");
    EXPECT_STR(0, "abc");
    free(f);
}

Test(cli, blob_get_returns_the_file_byte_for_byte)
{
    const size_t n = 3u << 20;
    char *data = random_bytes(n, 0x9e3779b97f4a7c15u);
    char *f = write_in("in.bin", data, n);
    RUN("blob", "store", f);
    EXPECT_STR(0, "1\n");
    RUN("blob", "get", "1");
    EXPECT_OUT(0, data, n);
    RUN("blob", "get", "1", "data");
    EXPECT_OUT(0, data, n);
    free(f);
    free(data);
}

Test(cli, blob_above_the_inline_limit_round_trips_through_parts)
{
    /* 64 MiB is stored inline; this one spans six 16 MiB parts */
    const size_t n = (80u << 20) + 12345;
    char *data = random_bytes(n, 42);
    char *f = write_in("big.bin", data, n);
    RUN("blob", "store", f, "big");
    EXPECT_STR(0, "1\n");
    RUN("blob", "get", "1");
    EXPECT_OUT(0, data, n);
    RUN("blob", "eq-data", "1", "1");
    EXPECT_OK();
    free(f);
    free(data);
}

Test(cli, blob_empty_file_round_trips)
{
    char *f = write_in("empty", "", 0);
    RUN("blob", "store", f);
    EXPECT_STR(0, "1\n");
    RUN("blob", "get", "1");
    EXPECT_OK();
    RUN("blob", "get", "1", "all");
    EXPECT_OUT(0, "\0", 1);
    free(f);
}

Test(cli, blob_store_reads_standard_input_for_dash)
{
    static const char data[] = "from\0stdin\n";
    RUN_IN(data, sizeof(data) - 1, "blob", "store", "-", "m");
    EXPECT_STR(0, "1\n");
    RUN("blob", "get", "1", "all");
    EXPECT_OUT(0, "m\0from\0stdin\n", 13);
}

Test(cli, blob_store_spools_a_pipe_on_standard_input)
{
    /* a pipe has no size, so buffdb spools it to a temporary file */
    char *argv[] = {"/bin/sh", "-c",
                    "printf 'a\\000b\\n' | \"$0\" blob store - piped",
                    (char *)th_bin(), NULL};
    th_run_free(&r);
    cr_assert_eq(th_run(&r, dir, NULL, 0, argv), 0);
    EXPECT_STR(0, "1\n");
    RUN("blob", "get", "1", "all");
    EXPECT_OUT(0, "piped\0a\0b\n", 10);
}

Test(cli, blob_store_of_a_partly_read_stdin_stores_the_rest)
{
    /* the shell reads the first line of the file it was given, then buffdb
     * inherits the descriptor at that offset */
    static const char data[] = "first line\nthe rest\0!";
    char *argv[] = {"/bin/sh", "-c", "read -r x; exec \"$0\" blob store -",
                    (char *)th_bin(), NULL};
    th_run_free(&r);
    cr_assert_eq(th_run(&r, dir, data, sizeof(data) - 1, argv), 0);
    EXPECT_STR(0, "1\n");
    RUN("blob", "get", "1");
    EXPECT_OUT(0, "the rest\0!", 10);
}

Test(cli, blob_get_metadata_prints_it_exactly)
{
    char *f = write_in("f", "data", 4);
    RUN("blob", "store", f, "name=x.txt\ttype: text/plain\n");
    EXPECT_STR(0, "1\n");
    RUN("blob", "get", "1", "metadata");
    EXPECT_STR(0, "name=x.txt\ttype: text/plain\n");
    free(f);
}

Test(cli, blob_get_all_prints_metadata_nul_data)
{
    char *f = write_in("f", "d\0ta", 4);
    RUN("blob", "store", f, "meta");
    EXPECT_STR(0, "1\n");
    RUN("blob", "get", "1", "all");
    EXPECT_OUT(0, "meta\0d\0ta", 9);
    free(f);
}

Test(cli, blob_without_metadata_prints_none)
{
    char *f = write_in("f", "data", 4);
    RUN("blob", "store", f);
    EXPECT_STR(0, "1\n");
    RUN("blob", "get", "1", "metadata");
    EXPECT_OK();
    RUN("blob", "get", "1", "all");
    EXPECT_OUT(0, "\0data", 5);
    RUN("query", "--target", "blob", "SELECT metadata IS NULL FROM blob");
    EXPECT_STR(0, "1\n");
    free(f);
}

Test(cli, blob_update_data_replaces_data_and_keeps_metadata)
{
    char *f = write_in("f", "old data", 8);
    char *g = write_in("g", "new", 3);
    RUN("blob", "store", f, "keep me");
    EXPECT_STR(0, "1\n");
    RUN("blob", "update", "1", "data", g);
    EXPECT_OK();
    RUN("blob", "get", "1", "all");
    EXPECT_OUT(0, "keep me\0new", 11);
    free(f);
    free(g);
}

Test(cli, blob_update_data_reads_standard_input_for_dash)
{
    char *f = write_in("f", "old", 3);
    RUN("blob", "store", f, "m");
    RUN_IN("fresh", 5, "blob", "update", "1", "data", "-");
    EXPECT_OK();
    RUN("blob", "get", "1", "all");
    EXPECT_OUT(0, "m\0fresh", 7);
    free(f);
}

Test(cli, blob_update_metadata_replaces_only_metadata)
{
    char *f = write_in("f", "data", 4);
    RUN("blob", "store", f, "old");
    RUN("blob", "update", "1", "metadata", "new meta");
    EXPECT_OK();
    RUN("blob", "get", "1", "all");
    EXPECT_OUT(0, "new meta\0data", 13);
    /* and metadata can be given where there was none */
    RUN("blob", "store", f);
    EXPECT_STR(0, "2\n");
    RUN("blob", "update", "2", "metadata", "added");
    EXPECT_OK();
    RUN("blob", "get", "2", "metadata");
    EXPECT_STR(0, "added");
    free(f);
}

Test(cli, blob_update_metadata_without_a_value_makes_it_absent)
{
    char *f = write_in("f", "data", 4);
    RUN("blob", "store", f, "old");
    RUN("blob", "update", "1", "metadata");
    EXPECT_OK();
    RUN("blob", "get", "1", "metadata");
    EXPECT_OK();
    RUN("blob", "get", "1");
    EXPECT_STR(0, "data");
    /* absent (NULL), not the empty string */
    RUN("query", "--target", "blob", "SELECT metadata IS NULL FROM blob");
    EXPECT_STR(0, "1\n");
    /* while an empty METADATA is the empty string */
    RUN("blob", "update", "1", "metadata", "");
    EXPECT_OK();
    RUN("query", "--target", "blob",
        "SELECT metadata IS NULL, length(metadata) FROM blob");
    EXPECT_STR(0, "0\t0\n");
    free(f);
}

Test(cli, blob_update_all_replaces_data_and_metadata)
{
    char *f = write_in("f", "old", 3);
    char *g = write_in("g", "newer", 5);
    RUN("blob", "store", f, "old meta");
    RUN("blob", "update", "1", "all", g, "new meta");
    EXPECT_OK();
    RUN("blob", "get", "1", "all");
    EXPECT_OUT(0, "new meta\0newer", 14);
    /* all without METADATA leaves none */
    RUN("blob", "update", "1", "all", f);
    EXPECT_OK();
    RUN("blob", "get", "1", "all");
    EXPECT_OUT(0, "\0old", 4);
    RUN("query", "--target", "blob", "SELECT metadata IS NULL FROM blob");
    EXPECT_STR(0, "1\n");
    free(f);
    free(g);
}

Test(cli, blob_update_of_a_missing_id_fails)
{
    char *f = write_in("f", "x", 1);
    RUN("blob", "update", "9", "data", f);
    EXPECT_ERR(1, E("blob 9 not found; nothing updated"));
    RUN("blob", "update", "9", "metadata", "m");
    EXPECT_ERR(1, E("blob 9 not found; nothing updated"));
    RUN("blob", "update", "9", "metadata");
    EXPECT_ERR(1, E("blob 9 not found; nothing updated"));
    RUN("blob", "update", "9", "all", f, "m");
    EXPECT_ERR(1, E("blob 9 not found; nothing updated"));
    /* and nothing was stored by the attempts */
    RUN("query", "--target", "blob", "SELECT count(*) FROM blob");
    EXPECT_STR(0, "0\n");
    free(f);
}

Test(cli, blob_update_from_a_missing_file_fails)
{
    char *f = write_in("f", "x", 1);
    char *nofile = in("nofile");
    RUN("blob", "store", f, "m");
    RUN("blob", "update", "1", "data", nofile);
    EXPECT_ERR(1, E("could not open %s: %s", nofile, strerror(ENOENT)));
    RUN("blob", "get", "1", "all");
    EXPECT_OUT(0, "m\0x", 3);
    free(f);
    free(nofile);
}

Test(cli, blob_delete_then_get_fails_not_found)
{
    char *f = write_in("f", "x", 1);
    RUN("blob", "store", f);
    RUN("blob", "delete", "1");
    EXPECT_OK();
    RUN("blob", "get", "1");
    EXPECT_ERR(1, E("blob 1 not found"));
    RUN("blob", "get", "1", "metadata");
    EXPECT_ERR(1, E("blob 1 not found"));
    free(f);
}

Test(cli, blob_delete_of_a_missing_id_succeeds)
{
    RUN("blob", "delete", "1");
    EXPECT_OK();
    char *f = write_in("f", "x", 1);
    RUN("blob", "store", f);
    RUN("blob", "delete", "1");
    EXPECT_OK();
    RUN("blob", "delete", "1");
    EXPECT_OK();
    free(f);
}

Test(cli, blob_ids_are_never_reused)
{
    char *f = write_in("f", "x", 1);
    RUN("blob", "store", f);
    EXPECT_STR(0, "1\n");
    RUN("blob", "store", f);
    EXPECT_STR(0, "2\n");
    RUN("blob", "store", f);
    EXPECT_STR(0, "3\n");
    RUN("blob", "delete", "3");
    EXPECT_OK();
    RUN("blob", "store", f);
    EXPECT_STR(0, "4\n");
    /* not even when the store is emptied */
    RUN("blob", "delete", "1");
    RUN("blob", "delete", "2");
    RUN("blob", "delete", "4");
    RUN("blob", "store", f);
    EXPECT_STR(0, "5\n");
    free(f);
}

Test(cli, blob_eq_data_compares_data_only)
{
    char *a = write_in("a", "same", 4);
    char *b = write_in("b", "diff", 4);
    RUN("blob", "store", a, "meta 1");
    RUN("blob", "store", a, "meta 2");
    RUN("blob", "store", b);
    RUN("blob", "eq-data", "1", "2");
    EXPECT_OK();
    RUN("blob", "eq-data", "1", "2", "3");
    EXPECT_FALSE();
    RUN("blob", "eq-data", "3");
    EXPECT_OK();
    free(a);
    free(b);
}

Test(cli, blob_not_eq_data_is_false_with_a_repeat)
{
    char *a = write_in("a", "one", 3);
    char *b = write_in("b", "two", 3);
    RUN("blob", "store", a);
    RUN("blob", "store", b);
    RUN("blob", "store", a);
    RUN("blob", "not-eq-data", "1", "2");
    EXPECT_OK();
    RUN("blob", "not-eq-data", "1", "2", "3");
    EXPECT_FALSE();
    RUN("blob", "not-eq-data", "2", "2");
    EXPECT_FALSE();
    free(a);
    free(b);
}

Test(cli, blob_compare_with_a_missing_id_fails_not_found)
{
    char *a = write_in("a", "one", 3);
    RUN("blob", "store", a);
    RUN("blob", "eq-data", "1", "7");
    EXPECT_ERR(1, E("blob 7 not found"));
    RUN("blob", "not-eq-data", "7", "1");
    EXPECT_ERR(1, E("blob 7 not found"));
    free(a);
}

Test(cli, blob_id_above_int64_max_is_out_of_range)
{
    RUN("blob", "get", "18446744073709551615");
    EXPECT_ERR(1, E("blob id 18446744073709551615 is out of range (ids run "
                    "from 1 to 9223372036854775807)"));
    RUN("blob", "get", "9223372036854775808");
    EXPECT_ERR(1, E("blob id 9223372036854775808 is out of range (ids run "
                    "from 1 to 9223372036854775807)"));
    RUN("blob", "get", "9223372036854775807");
    EXPECT_ERR(1, E("blob 9223372036854775807 not found"));
}

Test(cli, blob_id_above_uint64_max_is_a_usage_error)
{
    RUN("blob", "get", "99999999999999999999");
    EXPECT_ERR(2, U("invalid blob id '99999999999999999999' (expected a "
                    "decimal number)"));
    RUN("blob", "get", "18446744073709551616");
    EXPECT_ERR(2, U("invalid blob id '18446744073709551616' (expected a "
                    "decimal number)"));
    EXPECT_NO_STORES();
}

Test(cli, blob_store_of_a_missing_file_fails_naming_it)
{
    char *nofile = in("does-not-exist");
    RUN("blob", "store", nofile);
    EXPECT_ERR(1, E("could not open %s: %s", nofile, strerror(ENOENT)));
    RUN("query", "--target", "blob", "SELECT count(*) FROM blob");
    EXPECT_STR(0, "0\n");
    free(nofile);
}

Test(cli, blob_store_of_a_directory_fails)
{
    char *sub = in("sub");
    cr_assert_eq(mkdir(sub, 0700), 0);
    RUN("blob", "store", sub);
    EXPECT_ERR(1, E("%s is a directory", sub));
    free(sub);
}

Test(cli, blob_store_options_put_the_store_there)
{
    char *f = write_in("f", "x", 1);
    RUN("blob", "-s", "b1.db", "store", f);
    EXPECT_STR(0, "1\n");
    RUN("blob", "--store=b2.db", "store", f);
    EXPECT_STR(0, "1\n");
    cr_assert(exists("b1.db"));
    cr_assert(exists("b2.db"));
    cr_assert(!exists("blob_store.db"));
    RUN("blob", "--store", "b1.db", "store", f);
    EXPECT_STR(0, "2\n");
    RUN("blob", "get", "1");
    EXPECT_ERR(1, E("blob 1 not found"));
    free(f);
}

/* ---- query ------------------------------------------------------------- */

Test(cli, query_prints_every_column_type)
{
    RUN("query", "SELECT 1, 'a', 2.5, x'00ff', NULL");
    EXPECT_STR(0, "1\ta\t2.5\tX'00ff'\tNULL\n");
}

Test(cli, query_prints_reals_with_17_significant_digits)
{
    RUN("query", "SELECT 0.1, -0.25, 1e300, -9223372036854775808, x''");
    EXPECT_STR(0, "0.10000000000000001\t-0.25\t1.0000000000000001e+300\t"
                  "-9223372036854775808\tX''\n");
}

Test(cli, query_prints_one_line_per_row)
{
    RUN("query", "SELECT value FROM (SELECT 1 AS value UNION ALL SELECT 2 "
                 "UNION ALL SELECT 3) ORDER BY value DESC");
    EXPECT_STR(0, "3\n2\n1\n");
    RUN("query", "SELECT 1 WHERE 0");
    EXPECT_OK();
}

Test(cli, query_sees_kv_rows_after_sets)
{
    RUN("kv", "set", "b", "2");
    RUN("kv", "set", "a", "1");
    RUN("kv", "set", "c", "three");
    RUN("query", "SELECT key, value FROM kv ORDER BY key");
    EXPECT_STR(0, "a\t1\nb\t2\nc\tthree\n");
    cr_assert(!exists("blob_store.db"));
}

Test(cli, query_can_write_the_kv_table)
{
    RUN("query", "INSERT INTO kv VALUES ('q', 'from sql')");
    EXPECT_OK();
    RUN("kv", "get", "q");
    EXPECT_STR(0, "from sql");
}

Test(cli, query_of_the_blob_target_uses_the_given_store)
{
    char *f = write_in("f", "x", 1);
    char *store = in("blobs.db");
    RUN("blob", "-s", store, "store", f);
    RUN("blob", "-s", store, "store", f);
    RUN("query", "--target", "blob", "-s", store, "SELECT count(*) FROM blob");
    EXPECT_STR(0, "2\n");
    RUN("query", "--target=blob", "--store", store,
        "SELECT rowid, data, metadata FROM blob ORDER BY rowid");
    EXPECT_STR(0, "1\tX'78'\tNULL\n2\tX'78'\tNULL\n");
    RUN("query", "-s", store, "-t", "blob", "SELECT max(rowid) FROM blob");
    EXPECT_STR(0, "2\n");
    cr_assert(!exists("blob_store.db"));
    cr_assert(!exists("kv_store.db"));
    /* without -s the target's default store is used */
    RUN("query", "--target", "blob", "SELECT count(*) FROM blob");
    EXPECT_STR(0, "0\n");
    cr_assert(exists("blob_store.db"));
    free(f);
    free(store);
}

Test(cli, query_syntax_error_prints_sqlites_message)
{
    RUN("query", "SELEC 1");
    EXPECT_ERR(1, E("near \"SELEC\": syntax error"));
    RUN("query", "SELECT nosuchcolumn FROM kv");
    EXPECT_ERR(1, E("no such column: nosuchcolumn"));
}

Test(cli, query_refuses_transaction_control)
{
    RUN("query", "BEGIN");
    EXPECT_ERR(1, E("transaction control is not allowed in raw SQL (each "
                    "statement is its own transaction)"));
    RUN("query", "COMMIT");
    EXPECT_ERR(1, E("transaction control is not allowed in raw SQL (each "
                    "statement is its own transaction)"));
}

Test(cli, query_refuses_two_statements)
{
    RUN("query", "SELECT 1; SELECT 2");
    EXPECT_ERR(1, E("SQL text holds more than one statement; send one "
                    "statement per request"));
    /* a trailing semicolon or comment is not a second statement */
    RUN("query", "SELECT 1; -- done");
    EXPECT_STR(0, "1\n");
}

Test(cli, query_refuses_writes_to_buffdb_tables)
{
    RUN("query", "DELETE FROM buffdb_meta");
    EXPECT_ERR(1, E("table buffdb_meta belongs to buffdb and is read-only "
                    "in raw SQL"));
    RUN("query", "SELECT value FROM buffdb_meta WHERE name = 'kind'");
    EXPECT_STR(0, "kv\n");
}

/* ---- stores that cannot be used ------------------------------------------ */

Test(cli, kv_store_that_is_a_directory_fails)
{
    char *sub = in("sub");
    cr_assert_eq(mkdir(sub, 0700), 0);
    RUN("kv", "-s", sub, "get", "x");
    EXPECT_ERR(1, E("kv store %s is a directory", sub));
    RUN("blob", "-s", sub, "get", "1");
    EXPECT_ERR(1, E("blob store %s is a directory", sub));
    RUN("query", "-s", sub, "SELECT 1");
    EXPECT_ERR(1, E("kv store %s is a directory", sub));
    free(sub);
}

Test(cli, kv_store_passed_as_a_blob_store_fails)
{
    RUN("kv", "set", "k", "v");
    RUN("blob", "-s", "kv_store.db", "get", "1");
    EXPECT_ERR(1, E("kv_store.db is a kv store, not a blob store"));
    RUN("query", "--target", "blob", "-s", "kv_store.db", "SELECT 1");
    EXPECT_ERR(1, E("kv_store.db is a kv store, not a blob store"));
    /* and the kv store is unharmed */
    RUN("kv", "get", "k");
    EXPECT_STR(0, "v");
}

Test(cli, blob_store_passed_as_a_kv_store_fails)
{
    char *f = write_in("f", "x", 1);
    RUN("blob", "store", f);
    RUN("kv", "-s", "blob_store.db", "get", "k");
    EXPECT_ERR(1, E("blob_store.db is a blob store, not a kv store"));
    free(f);
}

Test(cli, garbage_file_is_not_a_sqlite_database)
{
    static const char junk[] = "this is not a database, just some text that "
                               "is long enough to hold a header\n";
    char *f = write_in("junk.db", junk, sizeof(junk) - 1);
    char part[4096];
    snprintf(part, sizeof(part), "buffdb: %s is not a SQLite database (", f);
    RUN("kv", "-s", f, "get", "x");
    EXPECT_ERR_HAS(part);
    RUN("blob", "-s", f, "get", "1");
    EXPECT_ERR_HAS(part);
    /* the file is left as it was */
    size_t len;
    char *back = th_read_file(f, &len);
    cr_assert_eq(len, sizeof(junk) - 1);
    cr_assert(memcmp(back, junk, len) == 0, "the garbage file was changed");
    free(back);
    free(f);
}

/* ---- secondary indexes --------------------------------------------------- */

/* damage - run sql on the kv store file directly, as another program with
 * no authorizer might, to make index name disagree with the data; each
 * "@" in sql stands for the index's entry table (buffdb_ix_<id>) */
static void
damage(const char *name, const char *sql)
{
    char *p = in("kv_store.db");
    sqlite3 *db;
    sqlite3_stmt *st;
    char table[64], text[1024], *msg = NULL;
    size_t o = 0;

    cr_assert_eq(sqlite3_open(p, &db), SQLITE_OK, "could not open %s", p);
    cr_assert_eq(sqlite3_prepare_v2(db, "SELECT id FROM buffdb_index WHERE "
                                        "name = ?1", -1, &st, NULL),
                 SQLITE_OK);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW, "no index %s", name);
    snprintf(table, sizeof(table), "buffdb_ix_%lld",
             (long long)sqlite3_column_int64(st, 0));
    sqlite3_finalize(st);
    for (const char *c = sql; *c; c++) {
        const char *add = *c == '@' ? table : (char[2]){*c, '\0'};
        size_t n = strlen(add);
        cr_assert_lt(o + n, sizeof(text));
        memcpy(text + o, add, n);
        o += n;
    }
    text[o] = '\0';
    int rc = sqlite3_exec(db, text, NULL, NULL, &msg);
    cr_assert_eq(rc, SQLITE_OK, "%s: %s", text, msg ? msg : "?");
    sqlite3_close(db);
    free(p);
}

Test(cli, index_create_list_lookup_range_drop_round_trip)
{
    RUN("kv", "set", "color:sky", "blue");
    RUN("kv", "set", "color:grass", "green");
    RUN("kv", "set", "color:sea", "blue");
    RUN("kv", "set", "mood:monday", "blue"); /* outside the prefix */
    RUN("index", "create", "colors", "--type", "btree", "--prefix", "color:");
    EXPECT_STR(0, "created index colors: 3 keys indexed\n");
    RUN("index", "create", "all", "--type=hash", "--unique", "--value-type",
        "string", "--json-path", "$.x");
    EXPECT_STR(0, "created index all: 0 keys indexed\n");
    RUN("index", "list");
    EXPECT_STR(0, "all\thash\tunique\tstring\t\t$.x\n"
                  "colors\tbtree\t-\tstring\tcolor:\t\n");

    /* lookup: key order, each key with its current value */
    RUN("index", "lookup", "colors", "blue");
    EXPECT_STR(0, "color:sea\tblue\ncolor:sky\tblue\n");
    RUN("index", "lookup", "colors", "blue", "--limit", "1");
    EXPECT_STR(0, "color:sea\tblue\n");
    RUN("index", "lookup", "colors", "red");
    EXPECT_OK();
    /* range: value order, then key order; bounds are inclusive */
    RUN("index", "range", "colors");
    EXPECT_STR(0, "color:sea\tblue\ncolor:sky\tblue\ncolor:grass\tgreen\n");
    RUN("index", "range", "colors", "--from", "c", "--to=green");
    EXPECT_STR(0, "color:grass\tgreen\n");
    RUN("index", "range", "colors", "--to", "blue", "--limit=5");
    EXPECT_STR(0, "color:sea\tblue\ncolor:sky\tblue\n");
    RUN("index", "range", "colors", "--limit", "2", "--from", "a");
    EXPECT_STR(0, "color:sea\tblue\ncolor:sky\tblue\n");

    /* writes after create are indexed: set, replace, delete */
    RUN("kv", "set", "color:sky", "grey");
    RUN("kv", "set", "color:rose", "red");
    RUN("kv", "delete", "color:sea");
    RUN("index", "range", "colors");
    EXPECT_STR(0, "color:grass\tgreen\ncolor:sky\tgrey\ncolor:rose\tred\n");
    RUN("index", "lookup", "colors", "blue");
    EXPECT_OK();

    RUN("index", "drop", "colors");
    EXPECT_OK();
    RUN("index", "list");
    EXPECT_STR(0, "all\thash\tunique\tstring\t\t$.x\n");
    RUN("index", "lookup", "colors", "red");
    EXPECT_ERR(1, E("no index named \"colors\""));
    RUN("index", "drop", "all");
    EXPECT_OK();
    RUN("index", "list");
    EXPECT_OK();
    /* the data is untouched */
    RUN("kv", "get", "color:rose");
    EXPECT_STR(0, "red");
}

Test(cli, index_ml_example_finds_exactly_the_pytorch_models)
{
    static const char *const models[][4] = {
        {"resnet", "1", "pytorch", "image-classification"},
        {"resnet", "2", "pytorch", "image-classification"},
        {"bert", "1", "tensorflow", "fill-mask"},
        {"llama", "3", "pytorch", "text-generation"},
        {"whisper", "1", "jax", "speech-recognition"},
    };
    char key[256], val[512];

    for (size_t i = 0; i < sizeof(models) / sizeof(models[0]); i++) {
        snprintf(key, sizeof(key), "model:%s:%s:metadata", models[i][0],
                 models[i][1]);
        snprintf(val, sizeof(val),
                 "{\"name\":\"%s\",\"version\":\"%s\",\"framework\":\"%s\","
                 "\"task\":\"%s\",\"blob_id\":%zu,\"tags\":[\"prod\"]}",
                 models[i][0], models[i][1], models[i][2], models[i][3],
                 i + 1);
        RUN("kv", "set", key, val);
        EXPECT_OK();
        snprintf(key, sizeof(key), "model:%s:%s:weights", models[i][0],
                 models[i][1]);
        snprintf(val, sizeof(val), "%zu", i + 1);
        RUN("kv", "set", key, val); /* not JSON with the field: skipped */
        EXPECT_OK();
    }
    /* pytorch, but outside the prefix */
    RUN("kv", "set", "dataset:imagenet", "{\"framework\":\"pytorch\"}");
    RUN("kv", "set", "model:broken:1:metadata", "{\"framework\": ");

    RUN("index", "create", "by_framework", "--type", "hash", "--prefix",
        "model:", "--json-path", "$.framework");
    EXPECT_STR(0, "created index by_framework: 5 keys indexed\n");
    RUN("index", "lookup", "by_framework", "pytorch");
    EXPECT_STR(0,
               "model:llama:3:metadata\t{\"name\":\"llama\",\"version\":\"3\","
               "\"framework\":\"pytorch\",\"task\":\"text-generation\","
               "\"blob_id\":4,\"tags\":[\"prod\"]}\n"
               "model:resnet:1:metadata\t{\"name\":\"resnet\",\"version\":"
               "\"1\",\"framework\":\"pytorch\",\"task\":"
               "\"image-classification\",\"blob_id\":1,\"tags\":[\"prod\"]}\n"
               "model:resnet:2:metadata\t{\"name\":\"resnet\",\"version\":"
               "\"2\",\"framework\":\"pytorch\",\"task\":"
               "\"image-classification\",\"blob_id\":2,\"tags\":[\"prod\"]}\n");
    RUN("index", "lookup", "by_framework", "tensorflow", "--limit", "0");
    EXPECT_STR(0, "model:bert:1:metadata\t{\"name\":\"bert\",\"version\":"
                  "\"1\",\"framework\":\"tensorflow\",\"task\":\"fill-mask\","
                  "\"blob_id\":3,\"tags\":[\"prod\"]}\n");
    RUN("index", "lookup", "by_framework", "onnx");
    EXPECT_OK();
    /* a hash index has no order to walk */
    RUN("index", "range", "by_framework", "--from", "a");
    EXPECT_ERR(1, E("index \"by_framework\" is a hash index: Range needs a "
                    "btree index"));

    /* a model moving to another framework moves in the index */
    RUN("kv", "set", "model:llama:3:metadata",
        "{\"name\":\"llama\",\"version\":\"3\",\"framework\":\"jax\"}");
    RUN("kv", "delete", "model:resnet:1:metadata");
    RUN("index", "lookup", "by_framework", "pytorch");
    EXPECT_STR(0, "model:resnet:2:metadata\t{\"name\":\"resnet\",\"version\":"
                  "\"2\",\"framework\":\"pytorch\",\"task\":"
                  "\"image-classification\",\"blob_id\":2,\"tags\":"
                  "[\"prod\"]}\n");
    RUN("index", "lookup", "by_framework", "jax");
    cr_assert_eq(r.status, 0);
    cr_assert_str_eq(r.out,
                     "model:llama:3:metadata\t{\"name\":\"llama\",\"version\":"
                     "\"3\",\"framework\":\"jax\"}\n"
                     "model:whisper:1:metadata\t{\"name\":\"whisper\","
                     "\"version\":\"1\",\"framework\":\"jax\",\"task\":"
                     "\"speech-recognition\",\"blob_id\":5,\"tags\":"
                     "[\"prod\"]}\n");
    RUN("index", "check", "by_framework");
    EXPECT_STR(0, "index by_framework: 0 missing, 0 extra\n");
}

Test(cli, index_unique_refuses_kv_set_naming_the_index_and_keeps_old_value)
{
    RUN("kv", "set", "user:1", "{\"email\":\"ada@example.org\"}");
    RUN("kv", "set", "user:2", "{\"email\":\"bob@example.org\"}");
    RUN("index", "create", "email", "--unique", "--json-path", "$.email",
        "--type", "hash", "--prefix", "user:");
    EXPECT_STR(0, "created index email: 2 keys indexed\n");

    RUN("kv", "set", "user:2", "{\"email\":\"ada@example.org\"}");
    EXPECT_ERR(1, E("unique index \"email\": value \"ada@example.org\" is "
                    "already held by key \"user:1\"; key \"user:2\" not "
                    "written"));
    RUN("kv", "get", "user:2");
    EXPECT_STR(0, "{\"email\":\"bob@example.org\"}");
    /* a new key is refused as a whole too */
    RUN("kv", "set", "user:3", "{\"email\":\"ada@example.org\"}");
    EXPECT_ERR(1, E("unique index \"email\": value \"ada@example.org\" is "
                    "already held by key \"user:1\"; key \"user:3\" not "
                    "written"));
    RUN("kv", "get", "user:3");
    EXPECT_ERR(1, E("key not found: user:3"));
    /* a key may keep its own value; keys outside the prefix are free */
    RUN("kv", "set", "user:1", "{\"email\":\"ada@example.org\",\"n\":1}");
    EXPECT_OK();
    RUN("kv", "set", "admin:1", "{\"email\":\"ada@example.org\"}");
    EXPECT_OK();
    /* once the holder lets go, the value is free */
    RUN("kv", "delete", "user:1");
    RUN("kv", "set", "user:2", "{\"email\":\"ada@example.org\"}");
    EXPECT_OK();
    RUN("index", "lookup", "email", "ada@example.org");
    EXPECT_STR(0, "user:2\t{\"email\":\"ada@example.org\"}\n");
    /* raw SQL is held to the index as well */
    RUN("query", "INSERT INTO kv VALUES ('user:9', "
                 "'{\"email\":\"ada@example.org\"}')");
    cr_assert_eq(r.status, 1, "stderr: %s", r.err);
    cr_assert_not_null(strstr(r.err, "unique index \"email\""), "%s", r.err);
    RUN("kv", "get", "user:9");
    EXPECT_ERR(1, E("key not found: user:9"));
}

Test(cli, index_unique_create_over_duplicate_data_fails_and_creates_nothing)
{
    RUN("kv", "set", "a", "same");
    RUN("kv", "set", "b", "same");
    RUN("kv", "set", "c", "other");
    RUN("index", "create", "u", "--type", "btree", "--unique");
    EXPECT_ERR(1, E("existing data breaks unique: keys \"a\" and \"b\" both "
                    "have the value \"same\""));
    RUN("index", "list");
    EXPECT_OK();
    /* and the data can still be written as before */
    RUN("kv", "set", "d", "same");
    EXPECT_OK();
    /* a name can be used only once */
    RUN("index", "create", "u", "--type", "btree");
    EXPECT_STR(0, "created index u: 4 keys indexed\n");
    RUN("index", "create", "u", "--type", "hash");
    EXPECT_ERR(1, E("an index named \"u\" already exists"));
    RUN("index", "list");
    EXPECT_STR(0, "u\tbtree\t-\tstring\t\t\n");
}

Test(cli, index_usage_errors_exit_2_and_touch_no_store)
{
    RUN("index");
    EXPECT_ERR(2, U("index: missing command (create, drop, list, lookup, "
                    "range, check, rebuild)"));
    RUN("index", "-s", "x.db");
    EXPECT_ERR(2, U("index: missing command (create, drop, list, lookup, "
                    "range, check, rebuild)"));
    RUN("index", "frob");
    EXPECT_ERR(2, U("index: unknown command 'frob'"));
    RUN("index", "create", "i");
    EXPECT_ERR(2, U("index create: missing --type (hash or btree)"));
    RUN("index", "create", "i", "--type", "bitmap");
    EXPECT_ERR(2, U("index create: unknown --type 'bitmap' (hash or btree)"));
    RUN("index", "create", "i", "--type", "hash", "--value-type", "date");
    EXPECT_ERR(2, U("index create: unknown --value-type 'date' (string, "
                    "integer or float)"));
    RUN("index", "create", "i", "--type");
    EXPECT_ERR(2, U("index create: option '--type' needs a value"));
    RUN("index", "create", "i", "--type", "hash", "--unique=yes");
    EXPECT_ERR(2, U("index create: option '--unique' takes no value"));
    RUN("index", "create", "i", "--type", "hash", "--type", "btree");
    EXPECT_ERR(2, U("index create: option '--type' given twice"));
    RUN("index", "create", "i", "--type", "hash", "--limit", "3");
    EXPECT_ERR(2, U("index create: unknown option '--limit'"));
    RUN("index", "create", "--type", "hash");
    EXPECT_ERR(2, U("index create: expected NAME"));
    RUN("index", "create", "i", "j", "--type", "hash");
    EXPECT_ERR(2, U("index create: expected NAME"));
    RUN("index", "drop");
    EXPECT_ERR(2, U("index drop: expected NAME"));
    RUN("index", "list", "i");
    EXPECT_ERR(2, U("index list: expected no arguments"));
    RUN("index", "lookup", "i");
    EXPECT_ERR(2, U("index lookup: expected NAME VALUE"));
    RUN("index", "lookup", "i", "v", "--limit", "ten");
    EXPECT_ERR(2, U("index lookup: bad --limit 'ten' (a number from 0, no "
                    "limit, to 4294967295)"));
    RUN("index", "lookup", "i", "v", "--limit=-1");
    EXPECT_ERR(2, U("index lookup: bad --limit '-1' (a number from 0, no "
                    "limit, to 4294967295)"));
    RUN("index", "range", "i", "--limit", "4294967296");
    EXPECT_ERR(2, U("index range: bad --limit '4294967296' (a number from 0, "
                    "no limit, to 4294967295)"));
    RUN("index", "range", "i", "--limit=");
    EXPECT_ERR(2, U("index range: bad --limit '' (a number from 0, no "
                    "limit, to 4294967295)"));
    RUN("index", "range", "i", "--from");
    EXPECT_ERR(2, U("index range: option '--from' needs a value"));
    RUN("index", "range", "i", "--frm", "a");
    EXPECT_ERR(2, U("index range: unknown option '--frm'"));
    RUN("index", "check");
    EXPECT_ERR(2, U("index check: expected NAME"));
    RUN("index", "check", "i", "--verbose");
    EXPECT_ERR(2, U("index check: unknown option '--verbose'"));
    RUN("index", "rebuild", "i", "j");
    EXPECT_ERR(2, U("index rebuild: expected at most one NAME"));
    EXPECT_NO_STORES();
    cr_assert(!exists("x.db"));
}

Test(cli, index_unknown_index_exits_1_naming_it)
{
    RUN("kv", "set", "k", "v");
    RUN("index", "lookup", "nope", "v");
    EXPECT_ERR(1, E("no index named \"nope\""));
    RUN("index", "range", "nope");
    EXPECT_ERR(1, E("no index named \"nope\""));
    RUN("index", "drop", "nope");
    EXPECT_ERR(1, E("no index named \"nope\""));
    RUN("index", "check", "nope");
    EXPECT_ERR(1, E("no index named \"nope\""));
    RUN("index", "rebuild", "nope");
    EXPECT_ERR(1, E("no index named \"nope\""));
    /* bad specs are the store's to refuse */
    RUN("index", "create", "bad name", "--type", "hash");
    EXPECT_ERR(1, E("bad index name: 1 to 128 characters of A-Z a-z 0-9 _ . "
                    ": -"));
    RUN("index", "create", "j", "--type", "hash", "--json-path", "framework");
    EXPECT_ERR(1, E("bad JSON path \"framework\": $ then .label, .\"label\", "
                    "[N], [#] or [#-N] steps (e.g. $.framework, $.a.b)"));
    /* SQLite alone would stop reading at the first missing label */
    RUN("index", "create", "j", "--type", "hash", "--json-path", "$.a.");
    EXPECT_ERR(1, E("bad JSON path \"$.a.\": $ then .label, .\"label\", "
                    "[N], [#] or [#-N] steps (e.g. $.framework, $.a.b)"));
    RUN("index", "list");
    EXPECT_OK();
}

Test(cli, index_integer_range_orders_numerically)
{
    static const char *const kv[][2] = {
        {"n:a", "9"},   {"n:b", "10"},  {"n:c", "100"}, {"n:d", "-5"},
        {"n:e", "x"},   {"n:f", "2.5"}, {"n:g", "10"},  {"other", "1"},
    };
    for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++) {
        RUN("kv", "set", kv[i][0], kv[i][1]);
        EXPECT_OK();
    }
    RUN("index", "create", "num", "--prefix", "n:", "--value-type", "integer",
        "--type", "btree");
    EXPECT_STR(0, "created index num: 5 keys indexed\n");
    RUN("index", "range", "num");
    EXPECT_STR(0, "n:d\t-5\nn:a\t9\nn:b\t10\nn:g\t10\nn:c\t100\n");
    /* a negative bound, and a negative lookup value after -- */
    RUN("index", "range", "num", "--from", "-5", "--to", "10");
    EXPECT_STR(0, "n:d\t-5\nn:a\t9\nn:b\t10\nn:g\t10\n");
    RUN("index", "range", "num", "--from=10");
    EXPECT_STR(0, "n:b\t10\nn:g\t10\nn:c\t100\n");
    RUN("index", "lookup", "num", "-5");
    EXPECT_STR(0, "n:d\t-5\n");
    RUN("index", "lookup", "num", "--", "10");
    EXPECT_STR(0, "n:b\t10\nn:g\t10\n");
    RUN("index", "lookup", "num", "2.5");
    EXPECT_ERR(1, E("value \"2.5\" is not a 64-bit integer for index \"num\" "
                    "(value type integer)"));
    RUN("index", "range", "num", "--to", "ten");
    EXPECT_ERR(1, E("upper bound \"ten\" is not a 64-bit integer for index "
                    "\"num\" (value type integer)"));

    /* the same values as strings sort bytewise; as floats, numerically */
    RUN("index", "create", "str", "--type", "btree", "--prefix", "n:");
    EXPECT_STR(0, "created index str: 7 keys indexed\n");
    RUN("index", "range", "str", "--limit", "4");
    EXPECT_STR(0, "n:d\t-5\nn:b\t10\nn:g\t10\nn:c\t100\n");
    RUN("index", "create", "flt", "--type", "btree", "--prefix", "n:",
        "--value-type", "float");
    EXPECT_STR(0, "created index flt: 6 keys indexed\n");
    RUN("index", "range", "flt", "--from", "2", "--to", "9.5");
    EXPECT_STR(0, "n:f\t2.5\nn:a\t9\n");
    RUN("index", "list");
    EXPECT_STR(0, "flt\tbtree\t-\tfloat\tn:\t\n"
                  "num\tbtree\t-\tinteger\tn:\t\n"
                  "str\tbtree\t-\tstring\tn:\t\n");
}

Test(cli, index_check_finds_damage_and_rebuild_repairs_it)
{
    RUN("kv", "set", "n:1", "1");
    RUN("kv", "set", "n:2", "2");
    RUN("kv", "set", "n:3", "3");
    RUN("index", "create", "num", "--type", "btree", "--value-type",
        "integer");
    EXPECT_STR(0, "created index num: 3 keys indexed\n");
    RUN("index", "create", "all", "--type", "hash");
    EXPECT_STR(0, "created index all: 3 keys indexed\n");
    RUN("index", "check", "num");
    EXPECT_STR(0, "index num: 0 missing, 0 extra\n");

    /* another program drops one entry and adds a stray one */
    damage("num", "DELETE FROM @ WHERE k = 'n:2';"
                  "INSERT INTO @ (v, k) VALUES (7, 'ghost');");
    RUN("index", "check", "num");
    EXPECT_STR(1, "index num: 1 missing, 1 extra\n");
    RUN("index", "range", "num");
    EXPECT_STR(0, "n:1\t1\nn:3\t3\n"); /* the stray key has no kv row */
    RUN("index", "check", "all");
    EXPECT_STR(0, "index all: 0 missing, 0 extra\n");

    RUN("index", "rebuild", "num");
    EXPECT_STR(0, "rebuilt index num: 3 entries written\n");
    RUN("index", "check", "num");
    EXPECT_STR(0, "index num: 0 missing, 0 extra\n");
    RUN("index", "range", "num");
    EXPECT_STR(0, "n:1\t1\nn:2\t2\nn:3\t3\n");

    /* rebuild without a name refills every index */
    damage("all", "DELETE FROM @");
    RUN("index", "check", "all");
    EXPECT_STR(1, "index all: 3 missing, 0 extra\n");
    RUN("index", "rebuild");
    EXPECT_STR(0, "rebuilt all indexes: 6 entries written\n");
    RUN("index", "check", "all");
    EXPECT_STR(0, "index all: 0 missing, 0 extra\n");
    RUN("index", "lookup", "all", "2");
    EXPECT_STR(0, "n:2\t2\n");
}

Test(cli, index_store_option_names_the_kv_store)
{
    char *store = in("models.db");
    RUN("kv", "-s", store, "set", "k", "v");
    RUN("index", "-s", store, "create", "i", "--type", "hash");
    EXPECT_STR(0, "created index i: 1 keys indexed\n");
    RUN("index", "--store", store, "lookup", "i", "v");
    EXPECT_STR(0, "k\tv\n");
    RUN("index", "--store=models.db", "list");
    EXPECT_STR(0, "i\thash\t-\tstring\t\t\n");
    cr_assert(!exists("kv_store.db"), "kv_store.db was created");
    /* the default store has no such index */
    RUN("index", "lookup", "i", "v");
    EXPECT_ERR(1, E("no index named \"i\""));
    /* a blob store is refused */
    char *f = write_in("f", "x", 1);
    RUN("blob", "store", f);
    RUN("index", "-s", "blob_store.db", "list");
    EXPECT_ERR(1, E("blob_store.db is a blob store, not a kv store"));
    free(f);
    free(store);
}

Test(cli, help_describes_the_index_command)
{
    RUN("--help");
    cr_assert_eq(r.status, 0);
    cr_assert_not_null(strstr(r.out, "buffdb index [-s PATH] create NAME "
                                     "--type hash|btree [--unique]"));
    cr_assert_not_null(strstr(r.out, "lookup NAME VALUE [--limit N]"));
}
