/*
 * test_model_cli.c - `buffdb model` (src/cli/cli_model.c) run as the real
 * binary ($BUFFDB_BIN) against a real server started by
 * tests/helpers/server.c, plus unit tests of the progress bar's
 * formatting (src/cli/cli_progress.c, linked in).
 *
 * Every test has its own directory (the CLI's working directory, where
 * its files are made and pulled); tests that need a server start their
 * own (2 workers, 127.0.0.1, a free port) and stop it at the end
 * (ts_stop_ok: clean exit, a log free of sanitizer reports).  The
 * resume tests slow the CLI down with its fault-injection point
 * (BUFFDB_INJECT=cli_model_push_chunk:MS sleeps after each 1 MiB chunk)
 * so that a push is reliably caught half way; every wait is a bounded
 * loop, and every process started is reaped.
 *
 * Not covered here: the progress bar on a real terminal (only its text),
 * a server that never answers (an unused port refuses at once).
 */
#include "config.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../helpers/helpers.h"
#include "../helpers/server.h"
#include "cli/cli_progress.h"

#define MiB (1024u * 1024u)
#define POLL_TRIES 200   /* x POLL_MS: how long to wait for a push */
#define POLL_MS 50
#define RETRY_TRIES 50   /* x 200 ms: a killed push still seen as running */
/* a push of 16 MiB slowed to 250 ms a 1 MiB chunk (4 s): the server holds
 * 4 MiB (two parts) after about 2 s, which leaves the test about 2 s to
 * see it and stop the push before it would have finished, even under
 * the sanitizers on a loaded machine (60 ms a chunk once let the push
 * finish first) */
#define SLOW_PUSH "cli_model_push_chunk:250"

static char *dir;               /* this test's directory, the CLI's cwd */
static struct ts_server *srv;   /* its server, if any */
static struct th_run r;         /* the last run */

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
    ts_cleanup_all();
    th_rmrf(dir);
    free(dir);
}

TestSuite(model_cli, .init = setup, .fini = teardown, .timeout = 180.);

/* ---- running the CLI ------------------------------------------------------ */

/*
 * model - run `buffdb model ARGS...` (NULL-terminated) in dir, with
 * --addr of the test's server appended when there is one; into r
 */
static void
model(const char *first, ...)
{
    char *argv[64];
    int n = 0;
    va_list ap;

    th_run_free(&r);
    argv[n++] = (char *)th_bin();
    argv[n++] = "model";
    va_start(ap, first);
    for (const char *a = first; a != NULL && n < 60;
         a = va_arg(ap, const char *))
        argv[n++] = (char *)a;
    va_end(ap);
    if (srv != NULL) {
        argv[n++] = "--addr";
        argv[n++] = srv->addr;
    }
    argv[n] = NULL;
    cr_assert_eq(th_run(&r, dir, NULL, 0, argv), 0, "could not run buffdb");
}

/* expect - the exit status, with everything printed if it is not */
static void
expect(int status, const char *what)
{
    cr_assert_eq(r.status, status,
                 "%s: exit %d, expected %d\nstdout:\n%s\nstderr:\n%s", what,
                 r.status, status, r.out, r.err);
}

static void
expect_err_has(const char *needle, const char *what)
{
    cr_assert_not_null(strstr(r.err, needle),
                       "%s: stderr lacks \"%s\":\n%s", what, needle, r.err);
}

static void
expect_out_has(const char *needle, const char *what)
{
    cr_assert_not_null(strstr(r.out, needle),
                       "%s: stdout lacks \"%s\":\n%s", what, needle, r.out);
}

/* usage - a usage error: exit 2, the message, the hint, nothing on stdout */
static void
usage(const char *msg)
{
    expect(2, msg);
    expect_err_has(msg, msg);
    expect_err_has("Try 'buffdb --help' for more information.", msg);
    cr_assert_eq(r.outlen, 0, "usage error wrote to stdout: %s", r.out);
}

/*
 * spawn - start `buffdb model ARGS... --addr ...` in the background with
 * BUFFDB_INJECT=inject, its output in dir/spawn.out and dir/spawn.err
 */
static pid_t
spawn(const char *inject, const char *const *args)
{
    char *out = th_path(dir, "spawn.out"), *err = th_path(dir, "spawn.err");
    char *argv[64];
    int n = 0;

    argv[n++] = (char *)th_bin();
    argv[n++] = "model";
    for (; *args != NULL && n < 60; args++)
        argv[n++] = (char *)*args;
    argv[n++] = "--addr";
    argv[n++] = srv->addr;
    argv[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int i = open("/dev/null", O_RDONLY);
        if (o < 0 || e < 0 || i < 0 || chdir(dir) != 0)
            _exit(126);
        dup2(i, 0);
        dup2(o, 1);
        dup2(e, 2);
        setenv("BUFFDB_INJECT", inject, 1);
        execv(argv[0], argv);
        _exit(127);
    }
    free(out);
    free(err);
    return pid;
}

/* reap - wait (bounded) for pid; its exit status or 128 + signal */
static int
reap(pid_t pid)
{
    int st;

    for (int i = 0; i < 600; i++) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        ts_sleep_ms(50);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    cr_assert_fail("the CLI did not exit within 30 s");
    return -1;
}

/* ---- files ------------------------------------------------------------------ */

/* in - a path in the test's directory, malloc'd */
static char *
in(const char *name)
{
    return th_path(dir, name);
}

/* make_file - dir/name holding n pseudo-random bytes from seed */
static char *
make_file(const char *name, size_t n, uint64_t seed)
{
    char *p = in(name);
    uint8_t *b = malloc(n ? n : 1);
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;

    cr_assert_not_null(b);
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b[i] = (uint8_t)(x >> 24);
    }
    cr_assert_eq(th_write_file(p, b, n), 0, "could not write %s", p);
    free(b);
    return p;
}

/* same_file - assert that two files hold the same bytes */
static void
same_file(const char *a, const char *b)
{
    size_t la, lb;
    char *da = th_read_file(a, &la), *db = th_read_file(b, &lb);

    cr_assert_not_null(da, "could not read %s", a);
    cr_assert_not_null(db, "could not read %s", b);
    cr_assert_eq(la, lb, "%s has %zu bytes, %s %zu", a, la, b, lb);
    cr_assert_eq(memcmp(da, db, la), 0, "%s and %s differ", a, b);
    free(da);
    free(db);
}

static int
exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* line_value - the value after "key:" on a line of text (spaces
 * skipped), copied into buf; NULL if there is no such line */
static const char *
line_value(const char *text, const char *key, char *buf, size_t n)
{
    size_t kl = strlen(key);

    for (const char *l = text; l != NULL && *l != '\0';) {
        if (strncmp(l, key, kl) == 0 && l[kl] == ':') {
            const char *v = l + kl + 1;
            while (*v == ' ')
                v++;
            size_t k = strcspn(v, "\n");
            if (k >= n)
                k = n - 1;
            memcpy(buf, v, k);
            buf[k] = '\0';
            return buf;
        }
        l = strchr(l, '\n');
        if (l != NULL)
            l++;
    }
    return NULL;
}

/* tokens_of_line - the whitespace-separated words of line number ln
 * (0-based) of text, into w (at most 8); returns how many */
static int
tokens_of_line(const char *text, int ln, char w[8][256])
{
    const char *l = text;
    int n = 0;

    for (int i = 0; i < ln && l; i++)
        l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL;
    if (l == NULL)
        return 0;
    while (*l && *l != '\n' && n < 8) {
        while (*l == ' ')
            l++;
        if (*l == '\n' || *l == '\0')
            break;
        size_t k = strcspn(l, " \n");
        snprintf(w[n++], 256, "%.*s", (int)k, l);
        l += k;
    }
    return n;
}

/* held_bytes - what `model status NAME VERSION` says is held; -1 if none */
static long long
held_bytes(const char *name, const char *version)
{
    unsigned long long held, total;

    model("status", name, version, NULL);
    if (r.status != 0)
        return -1;
    cr_assert_eq(sscanf(strstr(r.out, ": ") + 2, "%llu of %llu bytes held",
                        &held, &total),
                 2, "status output: %s", r.out);
    return (long long)held;
}

/* wait_held - until the server holds at least min bytes of the push */
static void
wait_held(const char *name, const char *version, long long min)
{
    long long h = -1;

    for (int i = 0; i < POLL_TRIES; i++) {
        h = held_bytes(name, version);
        if (h >= min)
            return;
        ts_sleep_ms(POLL_MS);
    }
    cr_assert_fail("the server held %lld bytes of %s %s after %d ms", h,
                   name, version, POLL_TRIES * POLL_MS);
}

/* push_retrying - push again while the server still sees the killed push
 * as running (ABORTED), a bounded number of times */
static void
push_retrying(const char *name, const char *version, const char *file)
{
    for (int i = 0; i < RETRY_TRIES; i++) {
        model("push", name, version, file, NULL);
        if (r.status != 1 || strstr(r.err, "ABORTED") == NULL)
            return;
        ts_sleep_ms(200);
    }
}

/* ---- the progress bar (unit) ------------------------------------------------ */

Test(model_cli, sizes_and_durations_format)
{
    char b[64];

    cli_format_size(b, sizeof(b), 0);
    cr_expect_str_eq(b, "0 B");
    cli_format_size(b, sizeof(b), 1023);
    cr_expect_str_eq(b, "1023 B");
    cli_format_size(b, sizeof(b), 1536);
    cr_expect_str_eq(b, "1.50 KiB");
    cli_format_size(b, sizeof(b), 12u * MiB);
    cr_expect_str_eq(b, "12.0 MiB");
    cli_format_size(b, sizeof(b), 512ull << 30);
    cr_expect_str_eq(b, "512 GiB");
    cli_format_duration(b, sizeof(b), 7.2);
    cr_expect_str_eq(b, "0:00:07");
    cli_format_duration(b, sizeof(b), 3723);
    cr_expect_str_eq(b, "1:02:03");
    cli_format_duration(b, sizeof(b), 1e9);
    cr_expect_str_eq(b, "99:59:59+");
}

Test(model_cli, progress_line_shows_percent_sizes_rate_and_eta)
{
    char b[512];

    /* 12 of 25 MiB, 10 of them moved in 2 s: 5 MiB/s, 13 MiB left */
    size_t n = cli_progress_format(b, sizeof(b), 80, "acme/tiny v1",
                                   12u * MiB, 25u * MiB, 10u * MiB, 2.0);
    cr_assert_eq(n, strlen(b));
    cr_assert_leq(n, 79, "too wide: [%s]", b);
    cr_expect(strncmp(b, "acme/tiny v1 [", 14) == 0, "[%s]", b);
    cr_expect_not_null(strstr(b, "] "), "[%s]", b);
    cr_expect_not_null(strstr(b, " 48%"), "[%s]", b);
    cr_expect_not_null(strstr(b, "12.0/25.0 MiB"), "[%s]", b);
    cr_expect_not_null(strstr(b, "5.00 MiB/s"), "[%s]", b);
    cr_expect_not_null(strstr(b, "ETA 0:00:03"), "[%s]", b);

    /* nothing moved yet: no rate, no ETA */
    cli_progress_format(b, sizeof(b), 80, "x", 0, 100, 0, 0.0);
    cr_expect_not_null(strstr(b, "  0%"), "[%s]", b);
    cr_expect_not_null(strstr(b, "ETA --:--:--"), "[%s]", b);

    /* finished: the time it took instead of an ETA */
    cli_progress_format(b, sizeof(b), 80, "x", 100, 100, 100, 61.0);
    cr_expect_not_null(strstr(b, "100%"), "[%s]", b);
    cr_expect_not_null(strstr(b, "in 0:01:01"), "[%s]", b);

    /* narrow: the label goes first, then the bar; never wider */
    n = cli_progress_format(b, sizeof(b), 60, "a-rather-long-model-name v1",
                            1, 2, 1, 1.0);
    cr_expect_leq(n, 59, "[%s]", b);
    cr_expect_null(strstr(b, "a-rather-long"), "[%s]", b);
    n = cli_progress_format(b, sizeof(b), 20, "x", 1, 2, 1, 1.0);
    cr_expect_leq(n, 19, "[%s]", b);
    cr_expect_null(strchr(b, '['), "[%s]", b);
}

/* ---- without a server -------------------------------------------------------- */

Test(model_cli, usage_errors_exit_2_before_connecting)
{
    char *f = make_file("f.bin", 10, 1);

    model(NULL);
    usage("buffdb: model: missing command");
    model("frob", NULL);
    usage("buffdb: model: unknown command 'frob'");
    model("push", "m", "v1", NULL);
    usage("buffdb: model push: expected NAME VERSION FILE...");
    model("pull", NULL);
    usage("buffdb: model pull: expected NAME[:VERSION|@ALIAS]");
    model("rm", "m", NULL);
    usage("buffdb: model rm: expected NAME VERSION");
    model("push", "bad:name", "v1", f, NULL);
    usage("buffdb: model push: invalid model name 'bad:name'");
    model("push", "m", "v 1", f, NULL);
    usage("buffdb: model push: invalid version 'v 1'");
    model("info", "m@", NULL);
    usage("buffdb: model info: invalid alias ''");
    model("push", "m", "v1", f, "--input-shape", "1,x", NULL);
    usage("buffdb: model push: --input-shape wants integers");
    model("push", "m", "v1", f, "--param", "novalue", NULL);
    usage("buffdb: model push: --param wants KEY=VALUE, not 'novalue'");
    model("ls", "--json", NULL);
    usage("buffdb: model ls: option '--json' does not apply");
    model("ls", "--timeout", "0", NULL);
    usage("buffdb: model: --timeout wants seconds");
    model("ls", "--bogus", NULL);
    usage("buffdb: model: unknown option '--bogus'");
    model("ls", "--addr", NULL);
    usage("buffdb: model: option '--addr' needs a value");
    model("push", "m", "v1", f, f, NULL);
    usage("buffdb: model push: two files are named 'f.bin'");
    free(f);
}

Test(model_cli, help_exits_0)
{
    model("--help", NULL);
    expect(0, "model --help");
    expect_out_has("usage: buffdb model", "model --help");
    expect_out_has("import-hf DIR", "model --help");
}

Test(model_cli, unreachable_server_exits_1)
{
    char addr[64];

    snprintf(addr, sizeof(addr), "127.0.0.1:%d", ts_free_port());
    model("ls", "--addr", addr, "--timeout", "5", NULL);
    expect(1, "ls on a closed port");
    cr_expect(strncmp(r.err, "buffdb: cannot reach a server at ", 33) == 0,
              "stderr: %s", r.err);
    expect_err_has(addr, "ls on a closed port");
    cr_expect_eq(r.outlen, 0);
}

Test(model_cli, missing_file_is_an_error_not_usage)
{
    model("push", "m", "v1", "no-such-file", "--addr", "127.0.0.1:1", NULL);
    expect(1, "push of a missing file");
    expect_err_has("buffdb: could not stat no-such-file", "missing file");
}

/* ---- Hugging Face cache trees ------------------------------------------------ */

#define REV "0123456789abcdef0123456789abcdef01234567"

/* safetensors - a valid one-tensor safetensors file's bytes into b */
static size_t
safetensors(uint8_t *b, size_t cap)
{
    static const char hdr[] =
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}";
    uint64_t hl = sizeof(hdr) - 1;
    size_t n = 8 + hl + 16;

    cr_assert_leq(n, cap);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(hl >> (8 * i));
    memcpy(b + 8, hdr, hl);
    for (int i = 0; i < 16; i++)
        b[8 + hl + (size_t)i] = (uint8_t)i;
    return n;
}

static void
mkdir_p(const char *rel)
{
    char *p = in(rel);
    char cmd[PATH_MAX + 32];

    snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", p);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    free(p);
}

static void
write_rel(const char *rel, const void *data, size_t n)
{
    char *p = in(rel);
    cr_assert_eq(th_write_file(p, data, n), 0, "could not write %s", p);
    free(p);
}

static void
link_rel(const char *target, const char *rel)
{
    char *p = in(rel);
    cr_assert_eq(symlink(target, p), 0, "symlink %s: %s", p, strerror(errno));
    free(p);
}

/*
 * hf_tree - hub/models--acme--tiny: refs/main -> REV, snapshots/REV/
 * {config.json, model.safetensors, sub/vocab.txt} linked into blobs/, and
 * an older snapshot "old" that refs/main does not name
 */
static void
hf_tree(void)
{
    uint8_t st[256];
    size_t n = safetensors(st, sizeof(st));

    mkdir_p("hub/models--acme--tiny/blobs");
    mkdir_p("hub/models--acme--tiny/refs");
    mkdir_p("hub/models--acme--tiny/snapshots/" REV "/sub");
    mkdir_p("hub/models--acme--tiny/snapshots/old");
    write_rel("hub/models--acme--tiny/refs/main", REV, strlen(REV));
    write_rel("hub/models--acme--tiny/blobs/b1", "{\"hidden\": 4}\n", 14);
    write_rel("hub/models--acme--tiny/blobs/b2", st, n);
    write_rel("hub/models--acme--tiny/blobs/b3", "a\nb\n", 4);
    link_rel("../../blobs/b1",
             "hub/models--acme--tiny/snapshots/" REV "/config.json");
    link_rel("../../blobs/b2",
             "hub/models--acme--tiny/snapshots/" REV "/model.safetensors");
    link_rel("../../../blobs/b3",
             "hub/models--acme--tiny/snapshots/" REV "/sub/vocab.txt");
    link_rel("../../blobs/b1", "hub/models--acme--tiny/snapshots/old/c.json");
}

Test(model_cli, import_hf_dry_run_finds_the_snapshot_refs_main_names)
{
    hf_tree();
    model("import-hf", "hub/models--acme--tiny", "--dry-run", NULL);
    expect(0, "import-hf --dry-run");
    cr_expect_str_eq(r.out,
                     "acme/tiny " REV ": 3 files, 99 B (snapshot " REV ")\n"
                     "  14  config.json\n"
                     "  81  model.safetensors\n"
                     "  4  sub/vocab.txt\n");

    /* the hub directory: every model in it, here one */
    model("import-hf", "hub", "--dry-run", NULL);
    expect(0, "import-hf hub --dry-run");
    expect_out_has("acme/tiny " REV ": 3 files", "hub dir");

    /* and --name/--version for it */
    model("import-hf", "hub", "--dry-run", "--name", "mine", "--version",
          "v1", NULL);
    expect(0, "import-hf --name --version");
    expect_out_has("mine v1: 3 files", "--name --version");
}

Test(model_cli, import_hf_without_refs_main_takes_every_snapshot)
{
    hf_tree();
    char *refs = in("hub/models--acme--tiny/refs/main");
    cr_assert_eq(unlink(refs), 0);
    free(refs);
    mkdir_p("hub/models--gpt2/snapshots/r1");
    mkdir_p("hub/models--gpt2/blobs");
    write_rel("hub/models--gpt2/blobs/x", "x", 1);
    link_rel("../../blobs/x", "hub/models--gpt2/snapshots/r1/f.txt");

    model("import-hf", "hub", "--dry-run", NULL);
    expect(0, "import-hf, no refs/main");
    cr_expect_str_eq(r.out,
                     "acme/tiny " REV ": 3 files, 99 B (snapshot " REV ")\n"
                     "  14  config.json\n"
                     "  81  model.safetensors\n"
                     "  4  sub/vocab.txt\n"
                     "acme/tiny old: 1 file, 14 B (snapshot old)\n"
                     "  14  c.json\n"
                     "gpt2 r1: 1 file, 1 B (snapshot r1)\n"
                     "  1  f.txt\n");

    /* --version names one version: ambiguous with two snapshots */
    model("import-hf", "hub/models--acme--tiny", "--version", "v1",
          "--dry-run", NULL);
    usage("buffdb: model import-hf: --version names one version");
    /* --name applies to one model */
    model("import-hf", "hub", "--name", "x", "--dry-run", NULL);
    usage("buffdb: model import-hf: --name and --version apply to one "
          "model");
}

Test(model_cli, import_hf_rejects_broken_and_foreign_trees)
{
    hf_tree();
    link_rel("../../blobs/gone",
             "hub/models--acme--tiny/snapshots/" REV "/missing.bin");
    model("import-hf", "hub", "--dry-run", NULL);
    expect(1, "dangling symlink");
    expect_err_has("missing.bin: its blob is missing", "dangling symlink");

    mkdir_p("plain/sub");
    model("import-hf", "plain", "--dry-run", NULL);
    expect(1, "not a cache");
    expect_err_has("not a Hugging Face cache", "not a cache");

    mkdir_p("weird/snapshots/r1");
    model("import-hf", "weird", "--dry-run", NULL);
    usage("buffdb: model import-hf: cannot tell the model's name");
}

/* ---- against a server ---------------------------------------------------------- */

Test(model_cli, push_then_pull_is_byte_identical)
{
    srv = ts_start(NULL);
    char *big = make_file("weights.bin", 9 * MiB + 12345, 7);
    char *small = make_file("config.json", 300, 8);

    model("push", "acme/tiny", "v1", big, small, "--framework", "pytorch",
          "--description", "a test", "--param", "lr=0.1", "--param",
          "lr=0.2", "--input-shape", "1,3,224,224", "--output-shape",
          "1,-1", NULL);
    expect(0, "push");
    expect_out_has("pushed acme/tiny v1: 2 files, 9.01 MiB (9449829 bytes)",
                   "push");
    expect_out_has("  9449529  weights.bin\n", "push");
    expect_out_has("  300  config.json\n", "push");
    cr_expect_eq(r.errlen, 0, "push wrote to stderr (not a TTY): %s", r.err);

    model("pull", "acme/tiny", "-o", "out", NULL);
    expect(0, "pull");
    expect_out_has("pulled acme/tiny v1: 2 files, 9.01 MiB into out",
                   "pull");
    char *pb = in("out/weights.bin"), *ps = in("out/config.json");
    same_file(big, pb);
    same_file(small, ps);
    char *part = in("out/weights.bin.part");
    cr_expect(!exists(part), "a .part file was left");

    /* a second pull finds everything in place */
    model("pull", "acme/tiny:v1", "-o", "out", NULL);
    expect(0, "pull again");
    expect_out_has("acme/tiny v1: up to date in out (2 files)", "pull again");

    model("info", "acme/tiny:v1", NULL);
    expect(0, "info");
    char v[256];
    cr_expect_str_eq(line_value(r.out, "name", v, sizeof(v)), "acme/tiny");
    cr_expect_str_eq(line_value(r.out, "version", v, sizeof(v)), "v1");
    cr_expect_str_eq(line_value(r.out, "framework", v, sizeof(v)),
                     "pytorch");
    cr_expect_str_eq(line_value(r.out, "description", v, sizeof(v)),
                     "a test");
    cr_expect_str_eq(line_value(r.out, "input shape", v, sizeof(v)),
                     "[1, 3, 224, 224]");
    cr_expect_str_eq(line_value(r.out, "output shape", v, sizeof(v)),
                     "[1, -1]");
    expect_out_has("  lr = 0.2\n", "info parameters");

    model("verify", "acme/tiny", NULL);
    expect(0, "verify");
    expect_out_has("ok      weights.bin\n", "verify");
    expect_out_has("acme/tiny: ok, 9.01 MiB checked", "verify");

    /* the same version again: refused, nothing changed */
    model("push", "acme/tiny", "v1", big, NULL);
    expect(1, "push of an existing version");
    expect_err_has("buffdb: Push: ALREADY_EXISTS", "existing version");

    free(big);
    free(small);
    free(pb);
    free(ps);
    free(part);
    ts_stop_ok(srv);
}

Test(model_cli, info_json_is_upstream_model_info)
{
    srv = ts_start(NULL);
    char *f = make_file("m.bin", 5 * MiB, 3);

    model("push", "j", "1.0", f, "--framework", "onnx", "--param", "k=v",
          "--input-shape", "1,2", NULL);
    expect(0, "push");
    model("info", "j", "--json", NULL);
    expect(0, "info --json");
    json_error_t je;
    json_t *o = json_loads(r.out, 0, &je);
    cr_assert_not_null(o, "not JSON (%s): %s", je.text, r.out);
    static const char *const keys[] = {
        "name", "version", "framework", "description", "input_shape",
        "output_shape", "parameters", "created_at", "size_bytes",
        "blob_ids"};
    size_t k = 0;
    const char *key;
    json_t *val;
    json_object_foreach(o, key, val)
    {
        cr_assert_lt(k, 10, "extra key %s", key);
        cr_expect_str_eq(key, keys[k], "key %zu", k);
        k++;
    }
    cr_expect_eq(k, 10);
    cr_expect_str_eq(json_string_value(json_object_get(o, "name")), "j");
    cr_expect_str_eq(json_string_value(json_object_get(o, "version")), "1.0");
    cr_expect_str_eq(json_string_value(json_object_get(o, "framework")),
                     "onnx");
    cr_expect_str_eq(json_string_value(json_object_get(o, "description")),
                     "");
    cr_expect_eq(json_integer_value(json_object_get(o, "size_bytes")),
                 5 * MiB);
    cr_expect_eq(json_array_size(json_object_get(o, "input_shape")), 2);
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_object_get(o, "parameters"), "k")),
                     "v");
    /* 5 MiB in parts of at most 4 MiB */
    cr_expect_eq(json_array_size(json_object_get(o, "blob_ids")), 2);
    json_decref(o);
    free(f);
    ts_stop_ok(srv);
}

Test(model_cli, tag_pull_by_alias_ls_and_untag)
{
    srv = ts_start(NULL);
    char *a = make_file("a.bin", 1000, 11), *b = make_file("b.bin", 2000, 12);
    char w[8][256];

    mkdir_p("v1");
    mkdir_p("v2");
    char *a1 = in("v1/w.bin"), *b2 = in("v2/w.bin");
    cr_assert_eq(rename(a, a1), 0);
    cr_assert_eq(rename(b, b2), 0);
    model("push", "m", "v1", a1, NULL);
    expect(0, "push v1");
    model("push", "m", "v2", b2, "--framework", "tf", NULL);
    expect(0, "push v2");

    model("tag", "m", "v1", "prod", NULL);
    expect(0, "tag");
    cr_expect_str_eq(r.out, "m@prod -> v1\n");
    model("pull", "m@prod", "-o", "p", NULL);
    expect(0, "pull @prod");
    char *pw = in("p/w.bin");
    same_file(a1, pw);

    /* moving the alias says where it was */
    model("tag", "m", "v2", "prod", NULL);
    expect(0, "retag");
    cr_expect_str_eq(r.out, "m@prod -> v2 (was v1)\n");
    model("pull", "m@prod", "-o", "p2", NULL);
    expect(0, "pull @prod again");
    char *pw2 = in("p2/w.bin");
    same_file(b2, pw2);

    model("ls", "--bytes", NULL);
    expect(0, "ls");
    cr_assert_eq(tokens_of_line(r.out, 0, w), 5, "ls: %s", r.out);
    cr_expect_str_eq(w[0], "NAME");
    cr_expect_str_eq(w[4], "ALIASES");
    cr_assert_eq(tokens_of_line(r.out, 1, w), 5, "ls: %s", r.out);
    cr_expect_str_eq(w[0], "m");
    cr_expect_str_eq(w[1], "2");
    cr_expect_str_eq(w[2], "v2");
    cr_expect_str_eq(w[3], "3000");
    cr_expect_str_eq(w[4], "prod=v2");
    cr_expect_eq(tokens_of_line(r.out, 2, w), 0, "ls: %s", r.out);

    model("ls", "m", "--bytes", NULL);
    expect(0, "ls m");
    cr_assert_eq(tokens_of_line(r.out, 1, w), 5, "ls m: %s", r.out);
    cr_expect_str_eq(w[0], "v1");
    cr_expect_str_eq(w[2], "1000");
    cr_expect_str_eq(w[3], "-");
    cr_expect_str_eq(w[4], "-");
    cr_assert_eq(tokens_of_line(r.out, 2, w), 5, "ls m: %s", r.out);
    cr_expect_str_eq(w[0], "v2");
    cr_expect_str_eq(w[3], "tf");
    cr_expect_str_eq(w[4], "prod");

    model("untag", "m", "prod", NULL);
    expect(0, "untag");
    cr_expect_str_eq(r.out, "removed m@prod (was v2)\n");
    model("pull", "m@prod", "-o", "p3", NULL);
    expect(1, "pull of a removed alias");
    expect_err_has("buffdb: GetInfo: NOT_FOUND", "removed alias");

    /* tag NAME '' ALIAS removes too */
    model("tag", "m", "v1", "x", NULL);
    expect(0, "tag x");
    model("tag", "m", "", "x", NULL);
    expect(0, "tag ''");
    cr_expect_str_eq(r.out, "removed m@x (was v1)\n");

    free(a);
    free(b);
    free(a1);
    free(b2);
    free(pw);
    free(pw2);
    ts_stop_ok(srv);
}

Test(model_cli, rm_frees_the_version_and_info_then_fails)
{
    srv = ts_start(NULL);
    char *f = make_file("w.bin", 6 * MiB, 21);

    model("push", "m", "v1", f, NULL);
    expect(0, "push");
    model("tag", "m", "v1", "prod", NULL);
    expect(0, "tag");
    model("rm", "m", "v1", NULL);
    expect(1, "rm of a tagged version");
    expect_err_has("buffdb: DeleteVersion: FAILED_PRECONDITION", "rm tagged");
    model("rm", "m", "v1", "--force", NULL);
    expect(0, "rm --force");
    cr_expect_str_eq(r.out, "deleted m v1: freed 2 parts, 6.00 MiB "
                            "(6291456 bytes)\nremoved alias: prod\n");
    model("info", "m:v1", NULL);
    expect(1, "info after rm");
    cr_expect(strncmp(r.err, "buffdb: GetInfo: NOT_FOUND", 26) == 0,
              "stderr: %s", r.err);
    cr_expect_eq(r.outlen, 0);
    model("verify", "m:v1", NULL);
    expect(1, "verify after rm");
    free(f);
    ts_stop_ok(srv);
}

Test(model_cli, import_hf_pushes_and_skips_what_is_present)
{
    srv = ts_start(NULL);
    hf_tree();

    model("import-hf", "hub", NULL);
    expect(0, "import-hf");
    expect_out_has("pushed acme/tiny " REV ": 3 files, 99 B (99 bytes)",
                   "import-hf");
    model("import-hf", "hub", NULL);
    expect(0, "import-hf again");
    cr_expect_str_eq(r.out, "acme/tiny " REV ": already present\n");

    model("info", "acme/tiny", "--tensors", NULL);
    expect(0, "info");
    char v[256];
    cr_expect_str_eq(line_value(r.out, "version", v, sizeof(v)), REV);
    expect_out_has("  hf_revision = " REV "\n", "info parameters");
    expect_out_has("  source = huggingface\n", "info parameters");
    expect_out_has("  w  F32  [2, 2]  model.safetensors\n", "info tensors");

    model("pull", "acme/tiny", "-o", "out", NULL);
    expect(0, "pull");
    static const char *const files[] = {"config.json", "model.safetensors",
                                        "sub/vocab.txt"};
    for (int i = 0; i < 3; i++) {
        char rel[PATH_MAX];
        snprintf(rel, sizeof(rel), "hub/models--acme--tiny/snapshots/" REV
                 "/%s", files[i]);
        char *src = in(rel), *dst;
        snprintf(rel, sizeof(rel), "out/%s", files[i]);
        dst = in(rel);
        same_file(src, dst);
        free(src);
        free(dst);
    }
    ts_stop_ok(srv);
}

Test(model_cli, killed_push_resumes_and_pulls_identical)
{
    srv = ts_start(NULL);
    char *f = make_file("big.bin", 24 * MiB + 777, 31);
    const char *args[] = {"push", "big", "v1", f, NULL};

    /* 1 MiB chunks, 60 ms apart: about 1.5 s in all */
    pid_t pid = spawn(SLOW_PUSH, args);
    wait_held("big", "v1", 4 * MiB);
    cr_assert_eq(kill(pid, SIGKILL), 0);
    cr_assert_eq(reap(pid), 128 + SIGKILL);

    push_retrying("big", "v1", f);
    expect(0, "the push run again");
    unsigned long long held = 0, total = 0;
    const char *res = strstr(r.err, "resuming: ");
    cr_assert_not_null(res, "no resume: %s", r.err);
    cr_assert_eq(sscanf(res, "resuming: %llu of %llu bytes already on the "
                             "server",
                        &held, &total),
                 2, "%s", r.err);
    cr_expect_geq(held, 4 * MiB);
    cr_expect_lt(held, total);
    cr_expect_eq(total, 24 * MiB + 777);

    model("status", "big", "v1", NULL);
    expect(1, "status after the push finished");
    expect_err_has("PushStatus: NOT_FOUND", "status after");

    model("pull", "big:v1", "-o", "out", NULL);
    expect(0, "pull");
    char *o = in("out/big.bin");
    same_file(f, o);
    free(o);
    free(f);
    ts_stop_ok(srv);
}

Test(model_cli, interrupted_push_says_so_and_resumes)
{
    srv = ts_start(NULL);
    char *f = make_file("big.bin", 16 * MiB, 41);
    char *small = make_file("small.txt", 10, 42);
    const char *args[] = {"push", "i", "v1", f, small, NULL};

    pid_t pid = spawn(SLOW_PUSH, args);
    wait_held("i", "v1", 4 * MiB);
    cr_assert_eq(kill(pid, SIGINT), 0);
    cr_assert_eq(reap(pid), 1, "exit status after SIGINT");
    char *ep = in("spawn.err");
    size_t n;
    char *err = th_read_file(ep, &n);
    cr_assert_not_null(err);
    cr_expect_not_null(strstr(err, "buffdb: push interrupted: run the same "
                                   "command again to resume"),
                       "stderr: %s", err);
    free(err);
    free(ep);

    model("status", "i", "v1", NULL);
    expect(0, "status");
    expect_out_has("small.txt", "status lists the files");

    push_retrying("i", "v1", f);
    /* other files than the unfinished push: replaced, not resumed */
    expect(0, "push with other files");
    expect_err_has("has other files: it will be replaced", "other files");
    model("rm", "i", "v1", NULL);
    expect(0, "rm");

    /* interrupt again, then resume with the same files */
    pid = spawn(SLOW_PUSH, args);
    wait_held("i", "v1", 4 * MiB);
    cr_assert_eq(kill(pid, SIGINT), 0);
    cr_assert_eq(reap(pid), 1);
    for (int i = 0; i < RETRY_TRIES; i++) {
        model("push", "i", "v1", f, small, NULL);
        if (r.status != 1 || strstr(r.err, "ABORTED") == NULL)
            break;
        ts_sleep_ms(200);
    }
    expect(0, "resumed push");
    expect_err_has("resuming: ", "resumed push");
    model("pull", "i:v1", "-o", "out", NULL);
    expect(0, "pull");
    char *o = in("out/big.bin"), *os = in("out/small.txt");
    same_file(f, o);
    same_file(small, os);
    free(o);
    free(os);
    free(f);
    free(small);
    ts_stop_ok(srv);
}

Test(model_cli, pull_resumes_from_a_part_file_and_drops_a_bad_one)
{
    srv = ts_start(NULL);
    char *f = make_file("w.bin", 7 * MiB + 5, 51);
    size_t n;
    char *data = th_read_file(f, &n);

    model("push", "p", "v1", f, NULL);
    expect(0, "push");
    mkdir_p("out");
    write_rel("out/w.bin.part", data, 3 * MiB);
    model("pull", "p", "-o", "out", NULL);
    expect(0, "pull from a .part");
    expect_err_has("resuming: 3145728 of 7340037 bytes already in out",
                   "pull resume");
    char *o = in("out/w.bin"), *part = in("out/w.bin.part");
    same_file(f, o);
    cr_expect(!exists(part));

    /* a .part with wrong bytes: removed, the pull fails, then succeeds */
    cr_assert_eq(unlink(o), 0);
    data[10] ^= 1;
    write_rel("out/w.bin.part", data, 2 * MiB);
    model("pull", "p", "-o", "out", NULL);
    expect(1, "pull from a bad .part");
    expect_err_has("SHA-256", "bad .part");
    cr_expect(!exists(part), "the bad .part was kept");
    cr_expect(!exists(o), "a bad file was renamed into place");
    model("pull", "p", "-o", "out", NULL);
    expect(0, "pull after a bad .part");
    same_file(f, o);

    free(data);
    free(f);
    free(o);
    free(part);
    ts_stop_ok(srv);
}

Test(model_cli, address_from_the_configuration_file)
{
    srv = ts_start(NULL);
    char conf[128];
    snprintf(conf, sizeof(conf), "listen = %s\n", srv->addr);
    write_rel("c.conf", conf, strlen(conf));
    char *cp = in("c.conf");
    struct ts_server *s = srv;

    srv = NULL; /* no --addr: the file says where */
    model("ls", "-c", cp, NULL);
    expect(0, "ls -c FILE");
    expect_out_has("NAME", "ls -c FILE");
    /* a wildcard listen address is reached on the loopback */
    snprintf(conf, sizeof(conf), "listen = 0.0.0.0:%d\n", s->port);
    write_rel("w.conf", conf, strlen(conf));
    model("ls", "--config=w.conf", NULL);
    expect(0, "ls with listen = 0.0.0.0:PORT");
    model("ls", "-c", "no-such.conf", NULL);
    expect(1, "ls -c missing");
    expect_err_has("no-such.conf", "ls -c missing");
    srv = s;
    free(cp);
    ts_stop_ok(srv);
}
