/*
 * server.c - the integration fixture that runs the real server (see
 * server.h)
 *
 * The test process has gRPC's threads running when it starts a server, so
 * the child between fork and exec only makes async-signal-safe calls:
 * everything it needs (argv, paths) is built before the fork.
 */
#include "config.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "server.h"

#define START_ATTEMPTS 5
#define WORKER_EXIT_TIMEOUT_MS 15000

static struct ts_server *servers; /* the registry */

static const char *const sanitizer_marks[] = {
    "ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer",
    "ERROR: UndefinedBehaviorSanitizer",
};

long
ts_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
ts_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

char *
ts_path(struct ts_server *s, const char *name)
{
    return th_path(s->dir, name);
}

/* ---- ports --------------------------------------------------------------- */

int
ts_free_port(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int port = -1;

    if (fd < 0)
        return -1;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

int
ts_port_open(int port)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int ok;

    if (fd < 0)
        return 0;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

/* ---- the log ------------------------------------------------------------- */

char *
ts_log(struct ts_server *s, size_t *len)
{
    size_t n;
    char *b = th_read_file(s->log_path, &n);

    if (b == NULL) {
        b = strdup("");
        n = 0;
    }
    if (len)
        *len = n;
    return b;
}

int
ts_log_count(struct ts_server *s, const char *needle)
{
    char *log = ts_log(s, NULL);
    int n = 0;

    for (const char *p = log; (p = strstr(p, needle)) != NULL; p++)
        n++;
    free(log);
    return n;
}

int
ts_log_has(struct ts_server *s, const char *needle)
{
    return ts_log_count(s, needle) > 0;
}

int
ts_wait_log(struct ts_server *s, const char *needle, int count,
            int timeout_ms)
{
    long until = ts_now_ms() + timeout_ms;

    for (;;) {
        if (ts_log_count(s, needle) >= count)
            return 1;
        if (ts_now_ms() >= until)
            return 0;
        ts_sleep_ms(20);
    }
}

const char *
ts_tail(struct ts_server *s, size_t n)
{
    static char buf[8192];
    size_t len;
    char *log = ts_log(s, &len);
    const char *from;

    if (n >= sizeof(buf))
        n = sizeof(buf) - 1;
    from = len > n ? log + len - n : log;
    snprintf(buf, sizeof(buf), "%s", from);
    free(log);
    return buf;
}

/* sanitizer_line - the first line of a sanitizer report in the log,
 * copied into buf, or NULL */
static const char *
sanitizer_line(struct ts_server *s, char *buf, size_t cap)
{
    char *log = ts_log(s, NULL);
    const char *hit = NULL;

    for (size_t i = 0; i < sizeof(sanitizer_marks) / sizeof(*sanitizer_marks);
         i++) {
        const char *p = strstr(log, sanitizer_marks[i]);
        if (p != NULL && (hit == NULL || p < hit))
            hit = p;
    }
    if (hit != NULL) {
        while (hit > log && hit[-1] != '\n')
            hit--;
        size_t n = strcspn(hit, "\n");
        if (n >= cap)
            n = cap - 1;
        memcpy(buf, hit, n);
        buf[n] = '\0';
    }
    free(log);
    return hit ? buf : NULL;
}

void
ts_assert_log_clean(struct ts_server *s)
{
    char line[512];
    const char *hit = sanitizer_line(s, line, sizeof(line));

    cr_assert_null(hit, "the server's log (%s) has a sanitizer report: %s\n"
                   "--- log tail ---\n%s", s->log_path, hit,
                   ts_tail(s, 6000));
}

/* ---- processes ----------------------------------------------------------- */

/* read_stat - ppid and state of pid from /proc; 0 or -1 */
static int
read_stat(pid_t pid, pid_t *ppid, char *state)
{
    char path[64], buf[1024];
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* "pid (comm) state ppid ...": comm may hold anything, even ')' */
    char *p = strrchr(buf, ')');
    if (p == NULL)
        return -1;
    long pp;
    char st;
    if (sscanf(p + 1, " %c %ld", &st, &pp) != 2)
        return -1;
    *ppid = (pid_t)pp;
    *state = st;
    return 0;
}

int
ts_pid_alive(pid_t pid)
{
    pid_t pp;
    char st;

    if (pid <= 0 || read_stat(pid, &pp, &st) != 0)
        return 0;
    return st != 'Z' && st != 'X';
}

/* is_ours - pid runs this server (its command line names our address):
 * guards against a recycled pid before it is signalled */
static int
is_ours(struct ts_server *s, pid_t pid)
{
    char path[64];
    size_t n;
    char *cmd;
    int ours = 0;

    snprintf(path, sizeof(path), "/proc/%ld/cmdline", (long)pid);
    cmd = th_read_file(path, &n);
    if (cmd == NULL)
        return 0;
    for (size_t i = 0; i + 1 < n; i++)
        if (cmd[i] == '\0')
            cmd[i] = ' ';
    ours = strstr(cmd, s->addr) != NULL && strstr(cmd, " run ") != NULL;
    free(cmd);
    return ours;
}

static int
cmp_pid(const void *a, const void *b)
{
    pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;
    return (x > y) - (x < y);
}

static void
remember(struct ts_server *s, pid_t pid)
{
    for (int i = 0; i < s->nseen; i++)
        if (s->seen[i] == pid)
            return;
    if (s->nseen < (int)(sizeof(s->seen) / sizeof(s->seen[0])))
        s->seen[s->nseen++] = pid;
}

int
ts_worker_pids(struct ts_server *s, pid_t *out, int cap)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    int n = 0;

    if (d == NULL || s->exited)
        goto out;
    while ((e = readdir(d)) != NULL && n < cap) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        pid_t pid = (pid_t)strtol(e->d_name, NULL, 10), pp;
        char st;
        if (read_stat(pid, &pp, &st) == 0 && pp == s->pid && st != 'Z' &&
            st != 'X') {
            out[n++] = pid;
            remember(s, pid);
        }
    }
    qsort(out, (size_t)n, sizeof(*out), cmp_pid);
out:
    if (d)
        closedir(d);
    return n;
}

int
ts_listening_pids(struct ts_server *s, pid_t *out, int cap)
{
    char *log = ts_log(s, NULL);
    int n = 0;

    for (char *line = log; line && *line && n < cap;) {
        char *nl = strchr(line, '\n');
        long pid;
        int slot, used = 0;
        if (nl)
            *nl = '\0';
        if (sscanf(line, "buffdb[%ld] worker %d info: listening on %n", &pid,
                   &slot, &used) == 2 && used > 0)
            out[n++] = (pid_t)pid;
        line = nl ? nl + 1 : NULL;
    }
    free(log);
    return n;
}

int
ts_signal(struct ts_server *s, int sig)
{
    if (s->exited || s->pid <= 0)
        return -1;
    return kill(s->pid, sig);
}

int
ts_wait_exit(struct ts_server *s, int timeout_ms)
{
    long until = ts_now_ms() + timeout_ms;
    int st;

    if (s->exited)
        return 1;
    for (;;) {
        pid_t r = waitpid(s->pid, &st, WNOHANG);
        if (r == s->pid) {
            s->exited = 1;
            s->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            return 1;
        }
        if (r < 0 && errno != EINTR) {
            s->exited = 1; /* not ours any more: nothing to wait for */
            s->status = -1;
            return 1;
        }
        if (ts_now_ms() >= until)
            return 0;
        ts_sleep_ms(10);
    }
}

/* reap_workers - after the master is gone, make sure its workers are too */
static void
reap_workers(struct ts_server *s)
{
    long until = ts_now_ms() + WORKER_EXIT_TIMEOUT_MS;

    for (int i = 0; i < s->nseen; i++) {
        pid_t w = s->seen[i];
        while (ts_pid_alive(w) && is_ours(s, w) && ts_now_ms() < until)
            ts_sleep_ms(10);
        if (ts_pid_alive(w) && is_ours(s, w)) {
            fprintf(stderr, "server fixture: worker %ld outlived its master; "
                    "killing it\n", (long)w);
            kill(w, SIGKILL);
        }
    }
}

int
ts_stop(struct ts_server *s)
{
    pid_t tmp[TS_MAX_WORKERS];

    if (s->pid <= 0)
        return s->status;
    if (!s->exited) {
        ts_worker_pids(s, tmp, TS_MAX_WORKERS);
        kill(s->pid, SIGTERM);
        if (!ts_wait_exit(s, TS_STOP_TIMEOUT_MS)) {
            fprintf(stderr, "server fixture: master %ld ignored SIGTERM for "
                    "%d ms; killing it\n", (long)s->pid, TS_STOP_TIMEOUT_MS);
            ts_worker_pids(s, tmp, TS_MAX_WORKERS);
            kill(s->pid, SIGKILL);
            ts_wait_exit(s, TS_STOP_TIMEOUT_MS);
        }
    }
    reap_workers(s);
    return s->status;
}

void
ts_stop_ok(struct ts_server *s)
{
    int st = ts_stop(s);

    ts_assert_log_clean(s);
    cr_assert_eq(st, 0, "the server exited with status %d, not 0\n"
                 "--- log tail ---\n%s", st, ts_tail(s, 4000));
}

/* spawn - fork and exec argv in s->dir with the log as stdout/stderr */
static pid_t
spawn(struct ts_server *s, char *const argv[])
{
    pid_t parent = getpid();
    int fd = open(s->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

    if (fd < 0)
        return -1;
    close(fd);
    fflush(NULL);
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    /* the child: async-signal-safe calls only */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
        _exit(125);
    int in = open("/dev/null", O_RDONLY);
    int log = open(s->log_path, O_WRONLY | O_APPEND);
    if (in < 0 || log < 0 || chdir(s->dir) != 0)
        _exit(126);
    dup2(in, 0);
    dup2(log, 1);
    dup2(log, 2);
    if (in > 2)
        close(in);
    if (log > 2)
        close(log);
    /* the test process blocks nothing that the server relies on, but be
     * sure: start the server with an empty signal mask */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execv(argv[0], argv);
    _exit(127);
}

static void
registry_add(struct ts_server *s)
{
    s->next = servers;
    servers = s;
}

static void
registry_remove(struct ts_server *s)
{
    for (struct ts_server **pp = &servers; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            return;
        }
    }
}

struct ts_server *
ts_start(const struct ts_opts *o)
{
    static const struct ts_opts none;
    struct ts_server *s = calloc(1, sizeof(*s));
    char workers[16];
    char *argv[64];
    char *kv, *blob;

    if (o == NULL)
        o = &none;
    cr_assert_not_null(s);
    s->dir = th_tmpdir();
    cr_assert_not_null(s->dir, "could not make a temporary directory");
    registry_add(s);
    s->log_path = ts_path(s, "server.log");
    s->workers = o->workers > 0 ? o->workers : 2;
    snprintf(workers, sizeof(workers), "%d", s->workers);
    kv = ts_path(s, "kv_store.db");
    blob = ts_path(s, "blob_store.db");
    if (o->config != NULL) {
        s->conf_path = ts_path(s, o->config_name ? o->config_name
                                                 : "buffdb.conf");
        cr_assert_eq(th_write_file(s->conf_path, o->config,
                                   strlen(o->config)), 0,
                     "could not write %s", s->conf_path);
    }

    for (int attempt = 1;; attempt++) {
        int n = 0;
        if (o->addr != NULL) {
            snprintf(s->addr, sizeof(s->addr), "%s", o->addr);
            const char *colon = strrchr(o->addr, ':');
            s->port = colon ? atoi(colon + 1) : 0;
        } else {
            s->port = ts_free_port();
            cr_assert_gt(s->port, 0, "could not find a free port");
            snprintf(s->addr, sizeof(s->addr), "127.0.0.1:%d", s->port);
        }
        argv[n++] = (char *)th_bin();
        argv[n++] = (char *)"run";
        argv[n++] = s->addr;
        if (!o->no_stores) {
            argv[n++] = (char *)"--kv-store";
            argv[n++] = kv;
            argv[n++] = (char *)"--blob-store";
            argv[n++] = blob;
        }
        if (o->workers >= 0) {
            argv[n++] = (char *)"--workers";
            argv[n++] = workers;
        }
        if (s->conf_path != NULL) {
            argv[n++] = (char *)"-c";
            argv[n++] = s->conf_path;
        }
        for (int i = 0; o->args && o->args[i] && n < 63; i++)
            argv[n++] = (char *)o->args[i];
        argv[n] = NULL;

        s->exited = 0;
        s->status = 0;
        s->pid = spawn(s, argv);
        cr_assert_gt(s->pid, 0, "could not start %s: %s", argv[0],
                     strerror(errno));
        if (o->no_wait)
            break;

        long until = ts_now_ms() + TS_READY_TIMEOUT_MS;
        int ready = 0;
        while (!ready && ts_now_ms() < until) {
            ready = ts_log_has(s, "ready: ");
            if (!ready && ts_wait_exit(s, 20))
                break;
        }
        if (ready)
            break;
        if (!s->exited) {
            ts_stop(s);
            cr_assert_fail("the server did not log \"ready\" within %d ms\n"
                           "--- log (%s) ---\n%s", TS_READY_TIMEOUT_MS,
                           s->log_path, ts_tail(s, 6000));
        }
        int clash = ts_log_has(s, "already in use") ||
                    ts_log_has(s, "already running") ||
                    ts_log_has(s, "could not listen on");
        if (!clash || o->addr != NULL || attempt == START_ATTEMPTS)
            cr_assert_fail("the server exited with status %d before it was "
                           "ready\n--- log (%s) ---\n%s", s->status,
                           s->log_path, ts_tail(s, 6000));
        /* the port was taken between our probe and the server's: again */
    }
    free(kv);
    free(blob);
    if (!o->no_wait) {
        pid_t tmp[TS_MAX_WORKERS];
        ts_worker_pids(s, tmp, TS_MAX_WORKERS);
    }
    return s;
}

void
ts_free(struct ts_server *s)
{
    const char *keep = getenv("BUFFDB_KEEP_TMP");

    if (s == NULL)
        return;
    ts_stop(s);
    registry_remove(s);
    if (keep == NULL || *keep == '\0')
        th_rmrf(s->dir);
    free(s->dir);
    free(s->log_path);
    free(s->conf_path);
    free(s);
}

void
ts_cleanup_all(void)
{
    while (servers != NULL)
        ts_free(servers);
}
