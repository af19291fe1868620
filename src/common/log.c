/*
 * log.c - stderr logging with role and pid on every line
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"

int bfdb_log_level = BFDB_LOG_INFO;
static char log_role[32] = "buffdb";

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void
bfdb_log_init(const char *role)
{
    snprintf(log_role, sizeof(log_role), "%s", role);
}

int
bfdb_log_parse_level(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

static void
log_vwrite(int level, const char *fmt, va_list ap)
{
    char line[2048];
    int n;

    if (level < 0 || level > 3)
        level = BFDB_LOG_ERROR;
    n = snprintf(line, sizeof(line), "buffdb[%ld] %s %s: ", (long)getpid(),
                 log_role, level_names[level]);
    if (n < 0 || (size_t)n >= sizeof(line))
        return;
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    if (m < 0)
        return;
    n += m;
    if ((size_t)n > sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    /* one write keeps concurrent processes' lines apart */
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}

void
bfdb_log_write(int level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vwrite(level, fmt, ap);
    va_end(ap);
}

void
fatalx(int status, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vwrite(BFDB_LOG_ERROR, fmt, ap);
    va_end(ap);
    exit(status);
}
