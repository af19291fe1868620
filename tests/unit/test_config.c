/*
 * test_config.c - buffdb.conf parsing (common/config.c)
 */
#include "config.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"
#include "common/log.h"
#include "helpers/helpers.h"
#include "store/store.h"

static char *dir;

static void
setup(void)
{
    dir = th_tmpdir();
    cr_assert_not_null(dir);
}

static void
teardown(void)
{
    th_rmrf(dir);
    free(dir);
}

TestSuite(config, .init = setup, .fini = teardown, .timeout = 10.);

/* load - write text to a file and load it over the defaults */
static int
load(const char *text, struct bfdb_config *c, char *err, size_t errlen)
{
    char *p = th_path(dir, "buffdb.conf");
    cr_assert_eq(th_write_file(p, text, strlen(text)), 0);
    bfdb_config_defaults(c);
    int rc = bfdb_config_load(c, p, err, errlen);
    free(p);
    return rc;
}

Test(config, defaults_are_documented_values)
{
    struct bfdb_config c;
    bfdb_config_defaults(&c);
    cr_assert_str_eq(c.listen, "[::1]:9313");
    cr_assert_eq(c.workers, 0);
    cr_assert_str_eq(c.kv_store, "kv_store.db");
    cr_assert_str_eq(c.blob_store, "blob_store.db");
    cr_assert_eq(c.sync, BFDB_SYNC_NORMAL);
    cr_assert_eq(c.max_message_size, 64u << 20);
    cr_assert_eq(c.grace_ms, 10000);
    cr_assert_eq(c.log_level, BFDB_LOG_INFO);
    cr_assert_eq(c.push_resume_ttl_ms, 24L * 3600 * 1000);
}

Test(config, every_directive_is_read)
{
    struct bfdb_config c;
    char err[512] = "";
    int rc = load("# a comment\n"
                  "; another\n"
                  "listen = 127.0.0.1:7000\n"
                  "workers = 3\n"
                  "kv_store = /var/lib/x/kv.db\n"
                  "blob_store = /var/lib/x/blob.db\n"
                  "synchronous = full\n"
                  "max_message_size = 8M\n"
                  "shutdown_grace = 1500ms\n"
                  "busy_timeout = 2s\n"
                  "log_level = debug\n"
                  "push_resume_ttl = 90m\n",
                  &c, err, sizeof(err));
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_str_eq(c.listen, "127.0.0.1:7000");
    cr_assert_eq(c.workers, 3);
    cr_assert_str_eq(c.kv_store, "/var/lib/x/kv.db");
    cr_assert_str_eq(c.blob_store, "/var/lib/x/blob.db");
    cr_assert_eq(c.sync, BFDB_SYNC_FULL);
    cr_assert_eq(c.max_message_size, 8u << 20);
    cr_assert_eq(c.grace_ms, 1500);
    cr_assert_eq(c.busy_timeout_ms, 2000);
    cr_assert_eq(c.log_level, BFDB_LOG_DEBUG);
    cr_assert_eq(c.push_resume_ttl_ms, 90L * 60 * 1000);
}

Test(config, trailing_hash_comment_is_dropped)
{
    struct bfdb_config c;
    char err[512] = "";
    cr_assert_eq(load("workers = 4   # four\nlisten = [::1]:80 ; semi\n", &c,
                      err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(c.workers, 4);
    cr_assert_str_eq(c.listen, "[::1]:80");
}

Test(config, unknown_directive_names_file_line_and_directive)
{
    struct bfdb_config c;
    char err[512] = "";
    cr_assert_eq(load("workers = 2\n\nfrobnicate = yes\n", &c, err,
                      sizeof(err)), -1);
    cr_assert(strstr(err, "buffdb.conf:3:") != NULL, "%s", err);
    cr_assert(strstr(err, "frobnicate") != NULL, "%s", err);
    cr_assert(strstr(err, "unknown directive") != NULL, "%s", err);
}

Test(config, first_error_is_the_one_reported)
{
    struct bfdb_config c;
    char err[512] = "";
    cr_assert_eq(load("workers = many\nlisten = nope\n", &c, err,
                      sizeof(err)), -1);
    cr_assert(strstr(err, ":1: workers:") != NULL, "%s", err);
}

Test(config, syntax_error_is_reported_with_its_line)
{
    struct bfdb_config c;
    char err[512] = "";
    cr_assert_eq(load("workers = 1\nthis line has no equals sign\n"
                      "listen = bad\n", &c, err, sizeof(err)), -1);
    cr_assert(strstr(err, ":2: syntax error") != NULL, "%s", err);
}

Test(config, bad_values_are_refused)
{
    struct bfdb_config c;
    char err[512];
    static const char *const bad[][2] = {
        {"listen", "noport"},       {"listen", "[::1]:0"},
        {"listen", "h:70000"},      {"workers", "-1"},
        {"workers", "257"},         {"synchronous", "extra"},
        {"max_message_size", "3G"}, {"max_message_size", "12Q"},
        {"shutdown_grace", "soon"}, {"log_level", "loud"},
        {"kv_store", ""},           {"push_resume_ttl", "500ms"},
        {"push_resume_ttl", "43201m"},
    };
    bfdb_config_defaults(&c);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        cr_assert_eq(bfdb_config_set(&c, bad[i][0], bad[i][1], err,
                                     sizeof(err)), -1,
                     "%s = %s accepted", bad[i][0], bad[i][1]);
        cr_assert_neq(err[0], '\0', "no message for %s", bad[i][0]);
    }
}

Test(config, missing_file_is_an_error_naming_it)
{
    struct bfdb_config c;
    char err[512] = "";
    bfdb_config_defaults(&c);
    cr_assert_eq(bfdb_config_load(&c, "/nonexistent/buffdb.conf", err,
                                  sizeof(err)), -1);
    cr_assert(strstr(err, "/nonexistent/buffdb.conf") != NULL, "%s", err);
}

Test(config, sizes_and_durations_parse_with_units)
{
    uint64_t u;
    long l;
    cr_assert_eq(bfdb_parse_size("512K", &u), 0);
    cr_assert_eq(u, 512u << 10);
    cr_assert_eq(bfdb_parse_size("1g", &u), 0);
    cr_assert_eq(u, 1u << 30);
    cr_assert_eq(bfdb_parse_size("", &u), -1);
    cr_assert_eq(bfdb_parse_duration_ms("2m", &l), 0);
    cr_assert_eq(l, 120000);
    cr_assert_eq(bfdb_parse_duration_ms("7", &l), 0);
    cr_assert_eq(l, 7000);
    cr_assert_eq(bfdb_parse_duration_ms("5x", &l), -1);
}

Test(config, shipped_sample_loads_to_the_defaults)
{
    struct bfdb_config c, d;
    char err[512] = "";
    char *p = th_path(getenv("BUFFDB_SRCDIR") ? getenv("BUFFDB_SRCDIR")
                                                : "..",
                      "conf/buffdb.conf");
    bfdb_config_defaults(&c);
    bfdb_config_defaults(&d);
    cr_assert_eq(bfdb_config_load(&c, p, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(memcmp(&c, &d, sizeof(c)), 0,
                 "conf/buffdb.conf differs from the built-in defaults");
    free(p);
}
