/*
 * helpers.c - test fixtures (see helpers.h)
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

char *
th_tmpdir(void)
{
    static unsigned counter;
    const char *base = getenv("BUFFDB_TMPDIR");
    char path[4096];

    if (base == NULL || *base == '\0')
        base = "/tmp";
    mkdir(base, 0755);
    for (;;) {
        snprintf(path, sizeof(path), "%s/t-%ld-%u", base, (long)getpid(),
                 counter++);
        if (mkdir(path, 0700) == 0)
            return strdup(path);
        if (errno != EEXIST)
            return NULL;
    }
}

static int
rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(p);
    return 0;
}

void
th_rmrf(const char *path)
{
    if (path != NULL)
        nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *
th_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

const char *
th_bin(void)
{
    const char *b = getenv("BUFFDB_BIN");
    return b && *b ? b : "./buffdb";
}

int
th_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return -1;
    if (len && fwrite(data, 1, len, f) != len) {
        fclose(f);
        return -1;
    }
    return fclose(f) == 0 ? 0 : -1;
}

char *
th_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    size_t cap = 4096, n = 0;
    char *buf;

    *len = 0;
    if (f == NULL)
        return NULL;
    buf = malloc(cap + 1);
    for (;;) {
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (n < cap)
            break;
        cap *= 2;
        buf = realloc(buf, cap + 1);
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

int
th_run(struct th_run *r, const char *cwd, const void *in, size_t inlen,
       char *const argv[])
{
    char *dir = th_tmpdir();
    char *fin, *fout, *ferr;
    pid_t pid;
    int st;

    memset(r, 0, sizeof(*r));
    if (dir == NULL)
        return -1;
    fin = th_path(dir, "stdin");
    fout = th_path(dir, "stdout");
    ferr = th_path(dir, "stderr");
    if (th_write_file(fin, in, in ? inlen : 0) != 0)
        return -1;
    fflush(NULL);
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int i = open(fin, O_RDONLY);
        int o = open(fout, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int e = open(ferr, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (i < 0 || o < 0 || e < 0)
            _exit(126);
        dup2(i, 0);
        dup2(o, 1);
        dup2(e, 2);
        if (cwd && chdir(cwd) != 0)
            _exit(126);
        execv(argv[0], argv);
        _exit(127);
    }
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    r->out = th_read_file(fout, &r->outlen);
    r->err = th_read_file(ferr, &r->errlen);
    th_rmrf(dir);
    free(fin);
    free(fout);
    free(ferr);
    free(dir);
    return 0;
}

int
th_buffdb(struct th_run *r, const char *cwd, const void *in, size_t inlen,
          ...)
{
    char *argv[64];
    int n = 0;
    va_list ap;

    argv[n++] = (char *)th_bin();
    va_start(ap, inlen);
    for (char *a; n < 63 && (a = va_arg(ap, char *)) != NULL;)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    return th_run(r, cwd, in, inlen, argv);
}

void
th_run_free(struct th_run *r)
{
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}
