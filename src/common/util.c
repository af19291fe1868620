/*
 * util.c - allocation, parsing and I/O helpers
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"

static void
oom(size_t n)
{
    char msg[96];
    int len = snprintf(msg, sizeof(msg), "buffdb: out of memory (%zu bytes)\n", n);
    if (len > 0) {
        ssize_t w = write(STDERR_FILENO, msg, (size_t)len);
        (void)w;
    }
    abort();
}

void *
xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        oom(n);
    return p;
}

void *
xcalloc(size_t nmemb, size_t size)
{
    void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);
    if (p == NULL)
        oom(nmemb * size);
    return p;
}

void *
xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        oom(n);
    return q;
}

char *
xstrdup(const char *s)
{
    char *p = strdup(s);
    if (p == NULL)
        oom(strlen(s) + 1);
    return p;
}

int
bfdb_parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;

    if (s == NULL || *s == '\0')
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int
bfdb_parse_int(const char *s, long min, long max, long *out)
{
    int neg = 0;
    uint64_t v;

    if (s != NULL && *s == '-' && min < 0) {
        neg = 1;
        s++;
    }
    if (bfdb_parse_u64(s, &v) != 0 || v > (uint64_t)LONG_MAX)
        return -1;
    long r = neg ? -(long)v : (long)v;
    if (r < min || r > max)
        return -1;
    *out = r;
    return 0;
}

ssize_t
bfdb_read_full(int fd, void *buf, size_t n)
{
    size_t done = 0;

    while (done < n) {
        ssize_t r = read(fd, (char *)buf + done, n - done);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0)
            break;
        done += (size_t)r;
    }
    return (ssize_t)done;
}

int
bfdb_write_full(int fd, const void *buf, size_t n)
{
    size_t done = 0;

    while (done < n) {
        ssize_t w = write(fd, (const char *)buf + done, n - done);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        done += (size_t)w;
    }
    return 0;
}

int
bfdb_utf8_valid(const void *p, size_t n)
{
    const unsigned char *s = p, *end = s + n;

    while (s < end) {
        unsigned c = *s;
        if (c < 0x80) {
            s++;
            continue;
        }
        size_t len;
        unsigned min, cp;
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2; min = 0x80; cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3; min = 0x800; cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4; min = 0x10000; cp = c & 0x07;
        } else {
            return 0;
        }
        if ((size_t)(end - s) < len)
            return 0;
        for (size_t i = 1; i < len; i++) {
            if ((s[i] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        s += len;
    }
    return 1;
}

void
bfdb_inject(const char *point)
{
    static const char *spec;
    static int read_env;
    size_t n = strlen(point);

    if (!read_env) {
        spec = getenv("BUFFDB_INJECT");
        read_env = 1;
    }
    if (spec == NULL)
        return;
    for (const char *p = spec; (p = strstr(p, point)) != NULL; p += n) {
        if ((p != spec && p[-1] != ',') || p[n] != ':')
            continue;
        long ms = strtol(p + n + 1, NULL, 10);
        /* $BUFFDB_INJECT_ONCE: fire only in the first process to create
         * that file (a replacement worker must not stall again) */
        const char *once = getenv("BUFFDB_INJECT_ONCE");
        if (once != NULL && *once != '\0') {
            int fd = open(once, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
            if (fd < 0)
                return;
            close(fd);
        }
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
        return;
    }
}

uint64_t
bfdb_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
