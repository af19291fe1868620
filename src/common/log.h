/*
 * log.h - logging for every buffdb process
 *
 * Lines go to stderr (systemd's journal picks them up) as
 *   buffdb[PID] ROLE LEVEL: message
 * The role is set once per process (master, worker N, cli).  No locking:
 * each line is one write(2), which the kernel keeps whole for a pipe or a
 * terminal.  Not async-signal-safe: never call from a signal handler.
 */
#ifndef BFDB_COMMON_LOG_H
#define BFDB_COMMON_LOG_H

#include <stdarg.h>

enum bfdb_log_level {
    BFDB_LOG_ERROR = 0,
    BFDB_LOG_WARN = 1,
    BFDB_LOG_INFO = 2,
    BFDB_LOG_DEBUG = 3
};

extern int bfdb_log_level;

/* bfdb_log_init - name this process in every later line ("master",
 * "worker 3", "cli").  The string is copied. */
void bfdb_log_init(const char *role);

/* bfdb_log_parse_level - "error", "warn", "info" or "debug" to a level;
 * returns -1 for anything else. */
int bfdb_log_parse_level(const char *name);

void bfdb_log_write(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The macros skip formatting (and argument evaluation) below the level. */
#define bfdb_log(level, ...)                                                   \
    do {                                                                       \
        if ((level) <= bfdb_log_level)                                         \
            bfdb_log_write((level), __VA_ARGS__);                              \
    } while (0)
#define log_error(...) bfdb_log(BFDB_LOG_ERROR, __VA_ARGS__)
#define log_warn(...) bfdb_log(BFDB_LOG_WARN, __VA_ARGS__)
#define log_info(...) bfdb_log(BFDB_LOG_INFO, __VA_ARGS__)
#define log_debug(...) bfdb_log(BFDB_LOG_DEBUG, __VA_ARGS__)

/* fatalx - log an error and exit with the given status.  Only for start-up
 * and worker initialisation: exit code 2 tells the master not to respawn. */
void fatalx(int status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));

#endif /* BFDB_COMMON_LOG_H */
