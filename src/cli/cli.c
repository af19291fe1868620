/*
 * cli.c - helpers shared by the buffdb subcommands
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/util.h"

int
cli_usage_error(const char *fmt, ...)
{
    va_list ap;

    fputs("buffdb: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry 'buffdb --help' for more information.\n", stderr);
    return CLI_USAGE;
}

int
cli_error(const char *fmt, ...)
{
    va_list ap;

    fputs("buffdb: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return CLI_ERROR;
}

int
cli_store_opt(int argc, char **argv, int *i, const char **path)
{
    const char *a = argv[*i];

    if (strcmp(a, "-s") == 0 || strcmp(a, "--store") == 0) {
        if (*i + 1 >= argc) {
            cli_usage_error("option '%s' needs a path", a);
            return -1;
        }
        *path = argv[*i + 1];
        *i += 2;
        return 1;
    }
    if (strncmp(a, "--store=", 8) == 0) {
        *path = a + 8;
        *i += 1;
        return 1;
    }
    return 0;
}

bfdb_store *
cli_open(int kind, const char *path)
{
    bfdb_store *s;
    char err[1024];

    if (bfdb_store_open(&s, kind, path, NULL, err, sizeof(err)) != BFDB_OK) {
        cli_error("%s", err);
        return NULL;
    }
    return s;
}

int
cli_write_out(const void *p, size_t n)
{
    if (bfdb_write_full(STDOUT_FILENO, p, n) != 0) {
        cli_error("could not write to standard output: %s", strerror(errno));
        return -1;
    }
    return 0;
}
