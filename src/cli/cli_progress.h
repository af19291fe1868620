/*
 * cli_progress.h - a one-line transfer progress bar on standard error
 *
 * Drawn only when standard error is a terminal (isatty), at most ten
 * times a second, as one line rewritten in place with a carriage return:
 *
 *   acme/tiny v1 [####.....]  48%  12.0/25.0 MiB  31.2 MiB/s  ETA 0:00:01
 *
 * The rate counts only the bytes moved since the bar started (bytes that
 * were already there when a transfer resumed do not inflate it); the ETA
 * is what is left at that rate.  Nothing is printed otherwise, so
 * scripts and logs see no control characters.
 */
#ifndef BFDB_CLI_CLI_PROGRESS_H
#define BFDB_CLI_CLI_PROGRESS_H

#include <stddef.h>
#include <stdint.h>

struct cli_progress {
    int enabled;        /* standard error is a terminal */
    char label[64];
    uint64_t total;     /* bytes in all */
    uint64_t base;      /* bytes already done when the bar started */
    uint64_t done;      /* bytes done so far (including base) */
    double t0;          /* seconds, monotonic, at the start */
    double last_draw;   /* seconds, the last time the line was drawn */
    int drawn;          /* a line is on the screen */
};

/* cli_progress_start - begin a bar for total bytes, done of them already
 * there; enabled only if fd 2 is a terminal */
void cli_progress_start(struct cli_progress *p, const char *label,
                        uint64_t total, uint64_t done);

/* cli_progress_update - done bytes so far; redraws if due */
void cli_progress_update(struct cli_progress *p, uint64_t done);

/* cli_progress_end - draw the final state and end the line (ok), or
 * erase the line (!ok, so that an error message starts clean) */
void cli_progress_end(struct cli_progress *p, int ok);

/*
 * cli_progress_format - the bar's text for the numbers given, at most
 * width columns (the bar shrinks first, then the label goes), into buf
 * (NUL-terminated, truncated to n); returns strlen(buf).  elapsed is the
 * seconds since the start and moved the bytes moved in them.  Pure:
 * exposed for the tests.
 */
size_t cli_progress_format(char *buf, size_t n, int width, const char *label,
                           uint64_t done, uint64_t total, uint64_t moved,
                           double elapsed);

/* cli_format_size - "0 B", "512 B", "1.5 KiB", "12.0 MiB", "3.25 GiB" */
void cli_format_size(char *buf, size_t n, uint64_t bytes);

/* cli_format_duration - "0:00:07", "1:02:03", "99:59:59+" (hh:mm:ss) */
void cli_format_duration(char *buf, size_t n, double seconds);

#endif /* BFDB_CLI_CLI_PROGRESS_H */
