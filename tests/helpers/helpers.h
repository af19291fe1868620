/*
 * helpers.h - shared test fixtures: temporary directories, running the
 * built buffdb binary and capturing what it prints.
 *
 * Criterion forks every test and may run them in parallel, so every test
 * makes its own directory (th_tmpdir) and removes it at the end.
 */
#ifndef BFDB_TESTS_HELPERS_H
#define BFDB_TESTS_HELPERS_H

#include <stddef.h>

/* th_tmpdir - a new empty directory under $BUFFDB_TMPDIR (or /tmp) */
char *th_tmpdir(void);

/* th_rmrf - remove a directory tree */
void th_rmrf(const char *path);

/* th_path - dir "/" name, malloc'd */
char *th_path(const char *dir, const char *name);

/* th_bin - path of the buffdb binary under test ($BUFFDB_BIN) */
const char *th_bin(void);

struct th_run {
    int status; /* exit code, or 128 + signal number */
    char *out;  /* stdout, NUL-terminated past outlen */
    size_t outlen;
    char *err;  /* stderr */
    size_t errlen;
};

/*
 * th_run - run argv (argv[0] a path) with stdin from in/inlen (NULL: empty)
 * in directory cwd (NULL: the current one) and collect its output.
 * Returns 0, or -1 if it could not be run.
 */
int th_run(struct th_run *r, const char *cwd, const void *in, size_t inlen,
           char *const argv[]);

/* th_buffdb - th_run of the buffdb binary with the arguments after it,
 * NULL-terminated */
int th_buffdb(struct th_run *r, const char *cwd, const void *in, size_t inlen,
              ...);

void th_run_free(struct th_run *r);

/* th_write_file / th_read_file - whole files; read returns malloc'd data */
int th_write_file(const char *path, const void *data, size_t len);
char *th_read_file(const char *path, size_t *len);

#endif /* BFDB_TESTS_HELPERS_H */
