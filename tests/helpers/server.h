/*
 * server.h - integration fixture: the real buffdb server ($BUFFDB_BIN)
 *
 * ts_start runs `buffdb run 127.0.0.1:PORT --kv-store ... --blob-store ...
 * --workers N` in a fresh th_tmpdir(), on a free ephemeral port, with
 * stdout and stderr going to DIR/server.log, and waits until the master
 * logs "ready".  The master is started with PR_SET_PDEATHSIG, so it dies
 * with the test process even when Criterion kills a test that timed out;
 * the workers die with the master.
 *
 * Every server started is kept in a registry: ts_cleanup_all (the test
 * suite's .fini) stops whatever a failed assertion left running and
 * removes the directories.  These functions use Criterion's cr_assert and
 * so may only be called from the test's own thread.
 */
#ifndef BFDB_TESTS_SERVER_H
#define BFDB_TESTS_SERVER_H

#include <stddef.h>
#include <sys/types.h>

#define TS_READY_TIMEOUT_MS 20000
#define TS_STOP_TIMEOUT_MS 30000
#define TS_MAX_WORKERS 64

struct ts_opts {
    int workers;             /* 0: 2; -1: no --workers (the file or the
                              * default decides) */
    const char *config;      /* text of a configuration file, written to
                              * DIR/<config_name> and given with -c */
    const char *config_name; /* NULL: "buffdb.conf" */
    const char *addr;        /* NULL: 127.0.0.1 and a free port */
    const char *const *args; /* more arguments, NULL-terminated */
    int no_wait;             /* do not wait for "ready" (expected failures) */
    int no_stores;           /* do not pass --kv-store and --blob-store */
};

struct ts_server {
    char *dir;            /* the server's working directory */
    char *log_path;       /* DIR/server.log: its stdout and stderr */
    char *conf_path;      /* the -c file, or NULL */
    char addr[64];        /* 127.0.0.1:PORT */
    int port;
    int workers;
    pid_t pid;            /* the master */
    int exited;           /* reaped */
    int status;           /* exit code, or 128 + signal */
    pid_t seen[4 * TS_MAX_WORKERS]; /* every worker pid ever seen */
    int nseen;
    struct ts_server *next;
};

/*
 * ts_start - start a server (see above).  Unless o->no_wait, asserts that
 * it logged "ready: N workers listening" within TS_READY_TIMEOUT_MS,
 * retrying a few times with another port if the port was taken.
 * o may be NULL (2 workers, no configuration file).
 */
struct ts_server *ts_start(const struct ts_opts *o);

/*
 * ts_wait_exit - wait up to timeout_ms for the master to exit; returns 1
 * with s->status set if it did, 0 if it still runs.
 */
int ts_wait_exit(struct ts_server *s, int timeout_ms);

/*
 * ts_stop - SIGTERM, wait up to TS_STOP_TIMEOUT_MS, SIGKILL as the last
 * resort, make sure no worker is left; returns the exit status (128 +
 * signal if killed).  Idempotent.
 */
int ts_stop(struct ts_server *s);

/*
 * ts_stop_ok - ts_stop, then assert exit status 0 and a log free of
 * sanitizer reports.  Most tests end with it.
 */
void ts_stop_ok(struct ts_server *s);

/* ts_assert_log_clean - assert the log has no ASan/UBSan/LSan report */
void ts_assert_log_clean(struct ts_server *s);

/* ts_log - the whole log so far, NUL-terminated, malloc'd */
char *ts_log(struct ts_server *s, size_t *len);

/* ts_log_has - 1 if the log contains needle */
int ts_log_has(struct ts_server *s, const char *needle);

/* ts_log_count - occurrences of needle in the log */
int ts_log_count(struct ts_server *s, const char *needle);

/* ts_wait_log - wait up to timeout_ms for the log to hold at least count
 * occurrences of needle; returns 1 if it does */
int ts_wait_log(struct ts_server *s, const char *needle, int count,
                int timeout_ms);

/*
 * ts_worker_pids - the master's live children (from /proc), sorted,
 * at most cap; returns how many.  Also remembers them in s->seen.
 */
int ts_worker_pids(struct ts_server *s, pid_t *out, int cap);

/* ts_listening_pids - the workers that logged "listening", in order of
 * their lines, at most cap; returns how many */
int ts_listening_pids(struct ts_server *s, pid_t *out, int cap);

/* ts_signal - send sig to the master; 0 or -1 */
int ts_signal(struct ts_server *s, int sig);

/* ts_pid_alive - 1 if pid exists and is not a zombie */
int ts_pid_alive(pid_t pid);

/* ts_free - stop if needed, remove the directory, free s */
void ts_free(struct ts_server *s);

/* ts_cleanup_all - ts_free every server still registered */
void ts_cleanup_all(void);

/* ts_path - DIR/name of s, malloc'd */
char *ts_path(struct ts_server *s, const char *name);

/* ts_tail - the last n bytes of the log (static buffer), for messages */
const char *ts_tail(struct ts_server *s, size_t n);

/* ts_free_port - a port that was free on 127.0.0.1 a moment ago */
int ts_free_port(void);

/* ts_port_open - 1 if something accepts TCP connections on port */
int ts_port_open(int port);

/* ts_now_ms - CLOCK_MONOTONIC in milliseconds */
long ts_now_ms(void);

/* ts_sleep_ms - nanosleep */
void ts_sleep_ms(long ms);

#endif /* BFDB_TESTS_SERVER_H */
