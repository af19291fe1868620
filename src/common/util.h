/*
 * util.h - small helpers shared by every process: allocation that cannot
 * return NULL, strict number parsing, full reads and writes.
 */
#ifndef BFDB_COMMON_UTIL_H
#define BFDB_COMMON_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* x* - allocate or abort with a message: for small, bounded allocations
 * only.  Sizes a client controls are checked and allocated with malloc. */
void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

/* bfdb_parse_u64 - parse a whole decimal string (no sign, no spaces) into
 * *out; returns 0, or -1 if it is empty, has other characters or
 * overflows 64 bits. */
int bfdb_parse_u64(const char *s, uint64_t *out);

/* bfdb_parse_int - as bfdb_parse_u64 for an int in [min, max]; a leading
 * '-' is accepted when min < 0. */
int bfdb_parse_int(const char *s, long min, long max, long *out);

/* bfdb_read_full / bfdb_write_full - loop over EINTR and short counts.
 * read returns bytes read (< n only at end of file) or -1; write returns
 * 0 or -1 with errno set. */
ssize_t bfdb_read_full(int fd, void *buf, size_t n);
int bfdb_write_full(int fd, const void *buf, size_t n);

/* bfdb_utf8_valid - 1 if p[0..n) is well-formed UTF-8 (no overlongs, no
 * surrogates, nothing above U+10FFFF); NUL bytes are valid */
int bfdb_utf8_valid(const void *p, size_t n);

/*
 * bfdb_inject - a fault-injection point for tests: if $BUFFDB_INJECT names
 * this point ("point:ms[,point:ms...]"), sleep that long here, so a test
 * can kill the process at a known step (holding a lock, between the two
 * stores of a commit).  With $BUFFDB_INJECT_ONCE set to a path, only the
 * first process to create that file stalls.  Costs a string compare per call otherwise; never
 * set in production.
 */
void bfdb_inject(const char *point);

/* bfdb_now_ns - CLOCK_MONOTONIC in nanoseconds */
uint64_t bfdb_now_ns(void);

#endif /* BFDB_COMMON_UTIL_H */
