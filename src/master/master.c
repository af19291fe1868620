/*
 * master.c - the master process of `buffdb run`
 *
 * The master reads the configuration, creates and migrates the store
 * files, locks the listen address, forks the workers and supervises them.
 * It never serves a call and never calls a grpc_* function: gRPC core is
 * not fork-safe, so only workers initialise it, after fork.
 *
 * One thread, one loop: poll(2) on a signalfd (SIGCHLD, SIGTERM, SIGINT,
 * SIGHUP are blocked and read from it) and on the status pipe, where each
 * worker writes a worker_msg when it listens.  Timers (respawn back-off,
 * the stop deadline) are the poll timeout.
 *
 *   worker exits 2 ("misconfigured")  not restarted; the master exits 1
 *                                     when no worker is left
 *   worker dies otherwise            restarted after a back-off that
 *                                     doubles (100 ms .. 10 s) while
 *                                     workers die young
 *   SIGTERM / SIGINT                 workers get SIGTERM, finish their
 *                                     calls within shutdown_grace; the
 *                                     master exits 0 when all are gone
 *                                     (SIGKILL at grace + 5 s)
 *   SIGHUP                           re-read the file; replace workers one
 *                                     at a time, each old one stopped only
 *                                     once its replacement listens
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/config.h"
#include "common/log.h"
#include "common/util.h"
#include "master/listen.h"
#include "master/master.h"
#include "shm/cache.h"
#include "shm/shm.h"
#include "store/store.h"
#include "worker/worker.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 10000
#define YOUNG_MS 10000      /* a worker dying sooner than this backs off */
#define KILL_SLACK_MS 5000  /* after the grace period, SIGKILL */
#define MAX_PROCS (2 * BFDB_MAX_WORKERS)

struct proc {
    pid_t pid;
    int slot;
    int gen;
    int ready;
    int retiring;   /* replaced or stopped on purpose */
    long started;   /* ms, monotonic */
};

struct slotinfo {
    pid_t pid;        /* the slot's current worker, 0 if none */
    long respawn_at;  /* ms; 0 if no respawn is due */
    int backoff_ms;
    int dead;         /* exited "misconfigured": left empty */
};

/* a directive given on the command line, re-applied on every reload */
struct override {
    const char *name;
    const char *value;
};

static struct {
    struct bfdb_config cfg;
    const char *conf_path;
    struct override ov[16];
    int nov;

    struct listen_lock lock;
    bfdb_shm shm;
    char shm_dir[PATH_MAX];
    int sigfd;
    int status_rd, status_wr;
    struct proc procs[MAX_PROCS];
    struct slotinfo slots[BFDB_MAX_WORKERS];
    int nslots;
    int gen;

    int notified_ready;
    int stopping;
    long stop_deadline;
    int killed;

    /* reload: replacing slot `reload_slot` of `reload_total`; 0 total = no
     * reload running */
    int reload_total;
    int reload_slot;
    pid_t reload_pid;   /* the new worker being waited for */
    struct bfdb_config reload_old;
} m;

static long
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- configuration ------------------------------------------------------ */

static const char run_usage[] =
    "usage: buffdb run [ADDR] [--addr ADDR] [--kv-store PATH] "
    "[--blob-store PATH]\n"
    "                  [-c|--config FILE] [--workers N]\n";

static int
add_override(const char *name, const char *value)
{
    if (m.nov == (int)(sizeof(m.ov) / sizeof(m.ov[0])))
        return cli_usage_error("run: too many options");
    m.ov[m.nov].name = name;
    m.ov[m.nov].value = value;
    m.nov++;
    return 0;
}

static int
parse_args(int argc, char **argv)
{
    static const struct {
        const char *opt;
        const char *directive;
    } opts[] = {
        {"--addr", "listen"},         {"--kv-store", "kv_store"},
        {"--blob-store", "blob_store"}, {"--workers", "workers"},
        {"--log-level", "log_level"}, {"--synchronous", "synchronous"},
        {"-c", NULL},                 {"--config", NULL},
    };
    int positional = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(run_usage, stdout);
            exit(0);
        }
        if (a[0] != '-') {
            if (positional++)
                return cli_usage_error("run: unexpected argument '%s'", a);
            if (add_override("listen", a) != 0)
                return CLI_USAGE;
            continue;
        }
        size_t k, nopts = sizeof(opts) / sizeof(opts[0]);
        const char *val = NULL;
        for (k = 0; k < nopts; k++) {
            size_t ol = strlen(opts[k].opt);
            if (strcmp(a, opts[k].opt) == 0) {
                if (i + 1 >= argc)
                    return cli_usage_error("run: option '%s' needs a value",
                                           a);
                val = argv[++i];
                break;
            }
            if (strncmp(a, opts[k].opt, ol) == 0 && a[ol] == '=') {
                val = a + ol + 1;
                break;
            }
        }
        if (k == nopts)
            return cli_usage_error("run: unknown option '%s'", a);
        if (opts[k].directive == NULL)
            m.conf_path = val;
        else if (add_override(opts[k].directive, val) != 0)
            return CLI_USAGE;
    }
    return 0;
}

/* build_config - defaults, then the file, then the command line */
static int
build_config(struct bfdb_config *c, char *err, size_t errlen)
{
    char why[512];

    bfdb_config_defaults(c);
    if (m.conf_path && bfdb_config_load(c, m.conf_path, err, errlen) != 0)
        return -1;
    for (int i = 0; i < m.nov; i++) {
        if (bfdb_config_set(c, m.ov[i].name, m.ov[i].value, why,
                            sizeof(why)) != 0) {
            snprintf(err, errlen, "command line: %s: %s", m.ov[i].name, why);
            return -1;
        }
    }
    if (c->workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        c->workers = n < 1 ? 1 : n > BFDB_MAX_WORKERS ? BFDB_MAX_WORKERS
                                                       : (int)n;
    }
    return bfdb_store_paths_distinct(c->kv_store, c->blob_store, err, errlen)
               == BFDB_OK ? 0 : -1;
}

/* prepare_stores - create and migrate both files, then close them: the
 * workers open their own handles after fork */
static int
prepare_stores(const struct bfdb_config *c, char *err, size_t errlen)
{
    struct bfdb_store_opts o = {0};
    bfdb_store *s;

    o.sync = c->sync;
    o.busy_timeout_ms = c->busy_timeout_ms;
    if (bfdb_store_open(&s, BFDB_STORE_KV, c->kv_store, &o, err, errlen) != 0)
        return -1;
    bfdb_store_close(s);
    if (bfdb_store_open(&s, BFDB_STORE_BLOB, c->blob_store, &o, err,
                        errlen) != 0)
        return -1;
    bfdb_store_close(s);
    return 0;
}

/* sweep_model_parts - free model parts nothing names: a push that died
 * between storing a part and recording it leaves one (no worker runs yet,
 * so nothing can be about to name it) */
static int
sweep_model_parts(bfdb_store *kv, bfdb_store *blob)
{
    uint8_t (*shas)[BFDB_SHA256_LEN] = NULL;
    size_t n = 0, freed = 0;
    int rc = bfdb_model_part_all(blob, &shas, &n);

    for (size_t i = 0; rc == BFDB_OK && i < n; i++) {
        uint64_t bytes;
        int used = bfdb_model_sha_used(kv, shas[i]);
        if (used < 0) {
            rc = used;
            break;
        }
        if (!used && (rc = bfdb_model_part_free(blob, shas[i], &bytes)) ==
                         BFDB_OK)
            freed++;
    }
    free(shas);
    if (freed > 0)
        log_info("freed %zu model parts no version or unfinished push "
                 "names", freed);
    return rc;
}

/* recover_transactions - at start, before any worker: finish the commits
 * a crash interrupted after their commit point, undo the others, drop
 * every staged write (no transaction outlives its server) */
static int
recover_transactions(const struct bfdb_config *c, char *err, size_t errlen)
{
    struct bfdb_store_opts o = {0};
    bfdb_store *kv, *blob;

    o.sync = c->sync;
    o.busy_timeout_ms = c->busy_timeout_ms;
    if (bfdb_store_open(&kv, BFDB_STORE_KV, c->kv_store, &o, err, errlen))
        return -1;
    if (bfdb_store_open(&blob, BFDB_STORE_BLOB, c->blob_store, &o, err,
                        errlen)) {
        bfdb_store_close(kv);
        return -1;
    }
    int rc = bfdb_txn_recover(kv, blob, 0, 1, NULL);
    if (rc != BFDB_OK)
        snprintf(err, errlen, "could not recover transactions: %s",
                 bfdb_store_errmsg(kv));
    /* the indexes are kept by triggers inside each write's own SQLite
     * transaction, so a crash cannot tear them; after an unclean stop
     * they are checked against a full scan all the same, and rebuilt if
     * anything (a writer without the triggers, a damaged file) differs */
    int unclean = 0, checked = 0, rebuilt = 0;
    if (rc == BFDB_OK &&
        (rc = bfdb_store_mark_running(kv, 1, &unclean)) != BFDB_OK)
        snprintf(err, errlen, "could not mark the kv store in use: %s",
                 bfdb_store_errmsg(kv));
    if (rc == BFDB_OK && unclean) {
        rc = bfdb_index_recover(kv, &checked, &rebuilt);
        if (rc != BFDB_OK)
            snprintf(err, errlen, "could not check the indexes: %s",
                     bfdb_store_errmsg(kv));
        else if (checked > 0)
            log_warn("unclean stop before: %d index(es) checked against "
                       "the kv table, %d rebuilt", checked, rebuilt);
    }
    if (rc == BFDB_OK && (rc = sweep_model_parts(kv, blob)) != BFDB_OK)
        snprintf(err, errlen, "could not sweep model parts: %s",
                 bfdb_store_errmsg(blob));
    bfdb_store_close(blob);
    bfdb_store_close(kv);
    return rc == BFDB_OK ? 0 : -1;
}

/* mark_stopped - record the clean stop (see recover_transactions) */
static void
mark_stopped(const struct bfdb_config *c)
{
    struct bfdb_store_opts o = {0};
    bfdb_store *kv;
    char err[512];

    o.sync = c->sync;
    o.busy_timeout_ms = c->busy_timeout_ms;
    o.skip_schema = 1;
    if (bfdb_store_open(&kv, BFDB_STORE_KV, c->kv_store, &o, err,
                        sizeof(err)) != BFDB_OK) {
        log_warn("could not record the clean stop: %s", err);
        return;
    }
    if (bfdb_store_mark_running(kv, 0, NULL) != BFDB_OK)
        log_warn("could not record the clean stop: %s",
                 bfdb_store_errmsg(kv));
    bfdb_store_close(kv);
}

/* ---- workers ------------------------------------------------------------ */

static struct proc *
proc_by_pid(pid_t pid)
{
    for (int i = 0; i < MAX_PROCS; i++)
        if (m.procs[i].pid == pid)
            return &m.procs[i];
    return NULL;
}

static int
live_procs(void)
{
    int n = 0;
    for (int i = 0; i < MAX_PROCS; i++)
        n += m.procs[i].pid != 0;
    return n;
}

static pid_t
spawn(int slot)
{
    struct proc *p = proc_by_pid(0);
    pid_t pid;

    if (p == NULL) {
        log_error("no room to track another worker");
        return -1;
    }
    pid = fork();
    if (pid < 0) {
        log_error("fork() failed: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        /* the worker blocks what it waits for; SIGCHLD is the master's */
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGHUP);
        sigprocmask(SIG_SETMASK, &set, NULL);
        int fds[2 + LISTEN_MAX_LOCKS];
        int n = 0;
        fds[n++] = m.sigfd;
        fds[n++] = m.status_rd;
        for (int i = 0; i < m.lock.n; i++)
            fds[n++] = m.lock.fds[i];
        worker_main(&m.cfg, slot, m.gen, m.status_wr, fds, n, &m.shm,
                    (int)(p - m.procs));
    }
    p->pid = pid;
    p->slot = slot;
    p->gen = m.gen;
    p->ready = 0;
    p->retiring = 0;
    p->started = now_ms();
    log_debug("started worker %d (pid %ld)", slot, (long)pid);
    return pid;
}

static void
notify_ready(void)
{
    if (m.notified_ready || m.stopping || m.reload_total)
        return;
    for (int s = 0; s < m.nslots; s++) {
        if (m.slots[s].dead)
            continue;
        struct proc *p = m.slots[s].pid ? proc_by_pid(m.slots[s].pid) : NULL;
        if (p == NULL || !p->ready)
            return;
    }
    m.notified_ready = 1;
    log_info("ready: %d workers listening on %s", m.nslots, m.cfg.listen);
    sd_notifyf(0, "READY=1\nSTATUS=serving on %s with %d workers",
               m.cfg.listen, m.nslots);
}

static void begin_stop(void);
static void reload_next(void);

static void
reload_abort(const char *why)
{
    log_error("reload aborted: %s; keeping the previous configuration for "
              "the workers not yet replaced", why);
    m.cfg = m.reload_old;
    m.reload_total = 0;
    m.reload_pid = 0;
    m.notified_ready = 0;
    sd_notify(0, "READY=1");
    m.notified_ready = 1;
}

static void
reap(void)
{
    int st;
    pid_t pid;

    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        struct proc *p = proc_by_pid(pid);
        if (p == NULL)
            continue;
        int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        int sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
        int slot = p->slot;
        int retiring = p->retiring;
        long lived = now_ms() - p->started;
        int was_ready = p->ready;
        memset(p, 0, sizeof(*p));

        /* undo what it had in progress in shared memory, free its locks
         * and its LMDB reader slot */
        bfdb_shm_reap(&m.shm, pid);
        if (m.cfg.cache_size > 0 && (sig || code != 0))
            bfdb_cache_reader_check(m.shm_dir);
        /* a crash rolls back the transactions it began or was running (a
         * worker settles their staged writes) and its commit in flight is
         * recovered; a clean exit (reload, stop) leaves them to others:
         * their state is all in shared memory and the files */
        uint64_t nums[64];
        int nt = sig || code != 0
                     ? bfdb_txntab_worker_died(m.shm.txntab, pid, nums, 64)
                     : 0;
        for (int k = 0; k < nt; k++)
            bfdb_locktab_release_txn_nb(m.shm.locktab, nums[k]);
        if (nt > 0)
            log_info("rolled back %d transaction%s of worker %d", nt,
                     nt == 1 ? "" : "s", slot);

        if (sig)
            log_warn("worker %d (pid %ld) killed by signal %d", slot,
                     (long)pid, sig);
        else if (code != 0 || !retiring)
            log_info("worker %d (pid %ld) exited with status %d", slot,
                     (long)pid, code);
        if (m.stopping || retiring)
            continue;

        if (pid == m.reload_pid) {
            reload_abort(code == BFDB_EXIT_MISCONFIGURED
                             ? "the new configuration does not work"
                             : "a new worker died before listening");
            continue;
        }
        if (slot >= m.nslots || m.slots[slot].pid != pid)
            continue;
        m.slots[slot].pid = 0;
        if (code == BFDB_EXIT_MISCONFIGURED) {
            log_error("worker %d cannot work with this configuration; not "
                      "restarting it", slot);
            m.slots[slot].dead = 1;
            int alive = 0;
            for (int s = 0; s < m.nslots; s++)
                alive += !m.slots[s].dead;
            if (alive == 0) {
                log_error("no worker can run; stopping");
                begin_stop();
                m.killed = 1; /* exit status 1 */
            }
            continue;
        }
        struct slotinfo *si = &m.slots[slot];
        if (lived < YOUNG_MS || !was_ready)
            si->backoff_ms = si->backoff_ms ? si->backoff_ms * 2
                                            : BACKOFF_MIN_MS;
        else
            si->backoff_ms = BACKOFF_MIN_MS;
        if (si->backoff_ms > BACKOFF_MAX_MS)
            si->backoff_ms = BACKOFF_MAX_MS;
        si->respawn_at = now_ms() + si->backoff_ms;
        log_info("restarting worker %d in %d ms", slot, si->backoff_ms);
    }
}

static void
on_status(void)
{
    struct worker_msg msg;

    for (;;) {
        ssize_t n = read(m.status_rd, &msg, sizeof(msg));
        if (n != (ssize_t)sizeof(msg))
            break;
        struct proc *p = proc_by_pid(msg.pid);
        if (p == NULL || msg.type != WMSG_READY)
            continue;
        p->ready = 1;
        if (m.slots[p->slot].pid == p->pid)
            m.slots[p->slot].backoff_ms = 0;
        if (msg.pid == m.reload_pid) {
            /* the replacement listens: retire the worker it replaces */
            pid_t old = m.slots[p->slot].pid;
            struct proc *op = old ? proc_by_pid(old) : NULL;
            if (op != NULL) {
                op->retiring = 1;
                kill(old, SIGTERM);
            }
            m.slots[p->slot].pid = p->pid;
            m.slots[p->slot].dead = 0;
            m.reload_pid = 0;
            m.reload_slot++;
            reload_next();
        }
    }
    notify_ready();
}

/* ---- stop and reload ---------------------------------------------------- */

static void
begin_stop(void)
{
    if (m.stopping)
        return;
    m.stopping = 1;
    m.stop_deadline = now_ms() + m.cfg.grace_ms + KILL_SLACK_MS;
    sd_notify(0, "STOPPING=1");
    log_info("stopping %d workers", live_procs());
    for (int i = 0; i < MAX_PROCS; i++)
        if (m.procs[i].pid)
            kill(m.procs[i].pid, SIGTERM);
}

static void
reload_next(void)
{
    while (m.reload_slot < m.reload_total) {
        int s = m.reload_slot;
        if (s >= m.cfg.workers) {
            /* the new configuration has fewer workers */
            if (m.slots[s].pid) {
                struct proc *p = proc_by_pid(m.slots[s].pid);
                if (p)
                    p->retiring = 1;
                kill(m.slots[s].pid, SIGTERM);
            }
            memset(&m.slots[s], 0, sizeof(m.slots[s]));
            m.reload_slot++;
            continue;
        }
        pid_t pid = spawn(s);
        if (pid < 0) {
            reload_abort("could not start a worker");
            return;
        }
        m.reload_pid = pid;
        return; /* on_status continues when it listens */
    }
    m.nslots = m.cfg.workers;
    m.reload_total = 0;
    log_info("reload complete: %d workers", m.nslots);
    m.notified_ready = 0;
    notify_ready();
}

static void
begin_reload(void)
{
    struct bfdb_config c;
    struct listen_lock lk = {0};
    char err[1024];

    if (m.stopping)
        return;
    if (m.reload_total) {
        log_warn("SIGHUP ignored: a reload is already running");
        return;
    }
    sd_notify(0, "RELOADING=1");
    log_info("reloading %s", m.conf_path ? m.conf_path
                                         : "(no configuration file)");
    if (build_config(&c, err, sizeof(err)) != 0 ||
        prepare_stores(&c, err, sizeof(err)) != 0) {
        log_error("reload failed: %s; keeping the running configuration",
                  err);
        sd_notify(0, "READY=1");
        return;
    }
    if (strcmp(c.kv_store, m.cfg.kv_store) != 0 ||
        strcmp(c.shm_dir, m.cfg.shm_dir) != 0 ||
        strcmp(c.blob_store, m.cfg.blob_store) != 0 ||
        c.cache_size != m.cfg.cache_size ||
        c.lock_table_size != m.cfg.lock_table_size) {
        log_error("reload failed: kv_store, blob_store, shm_dir, cache_size "
                  "and lock_table_size take effect only at start; keeping "
                  "the running configuration");
        sd_notify(0, "READY=1");
        return;
    }
    if (strcmp(c.listen, m.cfg.listen) != 0) {
        if (listen_acquire(c.listen, &lk, err, sizeof(err)) != 0) {
            log_error("reload failed: %s; keeping the running configuration",
                      err);
            sd_notify(0, "READY=1");
            return;
        }
        listen_release(&m.lock);
        m.lock = lk;
    }
    bfdb_log_level = c.log_level;
    __atomic_store_n(&m.shm.hdr->lock_wait_ms, (uint32_t)c.lock_wait_ms,
                     __ATOMIC_SEQ_CST);
    m.reload_old = m.cfg;
    m.cfg = c;
    m.gen++;
    m.reload_total = m.nslots > c.workers ? m.nslots : c.workers;
    m.reload_slot = 0;
    reload_next();
}

/* ---- the loop ----------------------------------------------------------- */

static int
loop(void)
{
    for (;;) {
        long now = now_ms();
        long timeout = -1;

        if (!m.stopping) {
            for (int s = 0; s < m.nslots; s++) {
                struct slotinfo *si = &m.slots[s];
                if (si->respawn_at == 0)
                    continue;
                if (si->respawn_at <= now) {
                    si->respawn_at = 0;
                    si->pid = spawn(s);
                    if (si->pid < 0) {
                        si->pid = 0;
                        si->respawn_at = now + BACKOFF_MAX_MS;
                    }
                    continue;
                }
                long left = si->respawn_at - now;
                if (timeout < 0 || left < timeout)
                    timeout = left;
            }
        } else {
            if (live_procs() == 0)
                break;
            if (now >= m.stop_deadline && !m.killed) {
                log_warn("workers still running after the grace period: "
                         "killing them");
                for (int i = 0; i < MAX_PROCS; i++)
                    if (m.procs[i].pid)
                        kill(m.procs[i].pid, SIGKILL);
                m.killed = 1;
            }
            timeout = m.killed ? 1000 : m.stop_deadline - now;
        }

        /* once a second: repair after CLI processes that died mid-write,
         * expire transactions that outlived their timeout */
        if (!m.stopping) {
            bfdb_shm_reap_dead_cli(&m.shm);
            uint64_t nums[64];
            int nt = bfdb_txntab_expire(m.shm.txntab, bfdb_txn_now_ms(),
                                        nums, 64);
            for (int k = 0; k < nt; k++)
                bfdb_locktab_release_txn_nb(m.shm.locktab, nums[k]);
            if (nt > 0)
                log_info("%d transaction%s expired", nt, nt == 1 ? "" : "s");
            if (timeout < 0 || timeout > 1000)
                timeout = 1000;
        }

        struct pollfd pf[2] = {{m.sigfd, POLLIN, 0}, {m.status_rd, POLLIN, 0}};
        int n = poll(pf, 2, (int)(timeout < 0 ? -1 : timeout));
        if (n < 0 && errno != EINTR) {
            log_error("poll() failed: %s", strerror(errno));
            return 1;
        }
        if (pf[1].revents & POLLIN)
            on_status();
        if (pf[0].revents & POLLIN) {
            struct signalfd_siginfo si;
            while (read(m.sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                switch (si.ssi_signo) {
                case SIGCHLD: reap(); break;
                case SIGTERM:
                case SIGINT: begin_stop(); break;
                case SIGHUP: begin_reload(); break;
                }
            }
        }
    }
    log_info("stopped");
    return m.killed ? 1 : 0;
}

int
master_run(int argc, char **argv)
{
    char err[1024];
    sigset_t set;
    int fds[2];

    bfdb_log_init("master");
    if (parse_args(argc, argv) != 0)
        return CLI_USAGE;
    if (build_config(&m.cfg, err, sizeof(err)) != 0) {
        log_error("%s", err);
        return CLI_USAGE;
    }
    bfdb_log_level = m.cfg.log_level;
    if (prepare_stores(&m.cfg, err, sizeof(err)) != 0) {
        log_error("%s", err);
        return CLI_USAGE;
    }
    if (listen_acquire(m.cfg.listen, &m.lock, err, sizeof(err)) != 0) {
        log_error("%s", err);
        return CLI_USAGE;
    }
    bfdb_shm_dir(m.shm_dir, sizeof(m.shm_dir), m.cfg.shm_dir,
                 m.cfg.kv_store);
    /* exclusive: a CLI write in flight finishes before the new region and
     * the empty cache appear, and later ones see the server running */
    int lockfd = bfdb_shm_lock(m.shm_dir, 1, err, sizeof(err));
    if (lockfd < 0 && mkdir(m.shm_dir, 0700) == 0)
        lockfd = bfdb_shm_lock(m.shm_dir, 1, err, sizeof(err));
    if (lockfd < 0 ||
        bfdb_shm_create(&m.shm, m.shm_dir, m.cfg.lock_table_size,
                        m.cfg.cache_size, err, sizeof(err)) != 0) {
        log_error("%s", err);
        bfdb_shm_unlock(lockfd);
        return CLI_USAGE;
    }
    bfdb_shm_unlock(lockfd);
    __atomic_store_n(&m.shm.hdr->lock_wait_ms, (uint32_t)m.cfg.lock_wait_ms,
                     __ATOMIC_SEQ_CST);
    /* the CLI knows only the kv store: tell it where the state is */
    if (bfdb_shm_set_redirect(m.cfg.kv_store, m.shm_dir, err,
                              sizeof(err)) != 0) {
        log_error("%s", err);
        return CLI_USAGE;
    }
    /* after the address lock: a second server must not touch the files */
    if (recover_transactions(&m.cfg, err, sizeof(err)) != 0) {
        log_error("%s", err);
        return 1;
    }

    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) {
        log_error("sigprocmask() failed: %s", strerror(errno));
        return 1;
    }
    m.sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (m.sigfd < 0) {
        log_error("signalfd() failed: %s", strerror(errno));
        return 1;
    }
    if (pipe2(fds, O_CLOEXEC) != 0) {
        log_error("pipe2() failed: %s", strerror(errno));
        return 1;
    }
    m.status_rd = fds[0];
    m.status_wr = fds[1];
    fcntl(m.status_rd, F_SETFL, O_NONBLOCK);
    signal(SIGPIPE, SIG_IGN);

    m.nslots = m.cfg.workers;
    log_info("starting %d workers on %s (kv store %s, blob store %s)",
             m.nslots, m.cfg.listen, m.cfg.kv_store, m.cfg.blob_store);
    for (int s = 0; s < m.nslots; s++) {
        m.slots[s].pid = spawn(s);
        if (m.slots[s].pid < 0) {
            m.slots[s].pid = 0;
            m.slots[s].respawn_at = now_ms() + BACKOFF_MIN_MS;
        }
    }
    int rc = loop();
    mark_stopped(&m.cfg);
    int fd = bfdb_shm_lock(m.shm_dir, 1, err, sizeof(err));
    __atomic_store_n(&m.shm.hdr->running, 0, __ATOMIC_SEQ_CST);
    bfdb_shm_unlock(fd);
    bfdb_shm_detach(&m.shm);
    listen_release(&m.lock);
    return rc;
}
