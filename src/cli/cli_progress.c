/*
 * cli_progress.c - the transfer progress bar (cli_progress.h)
 *
 * Used by the CLI's push and pull, from the main thread.  The line is
 * written with a single write(2) so that it never interleaves with itself.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli_progress.h"

#define REDRAW_S 0.1
#define DEFAULT_WIDTH 80
#define MIN_BAR 10
#define TAIL_RESERVE 56 /* columns kept for "100%  sizes  rate  ETA" */

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void
cli_format_size(char *buf, size_t n, uint64_t bytes)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB",
                                        "EiB"};
    double v = (double)bytes;
    int u = -1;

    if (bytes < 1024) {
        snprintf(buf, n, "%llu B", (unsigned long long)bytes);
        return;
    }
    while (v >= 1024.0 && u < 5) {
        v /= 1024.0;
        u++;
    }
    /* three significant digits: 1.50 KiB, 12.0 MiB, 512 GiB */
    if (v < 10.0)
        snprintf(buf, n, "%.2f %s", v, units[u]);
    else if (v < 100.0)
        snprintf(buf, n, "%.1f %s", v, units[u]);
    else
        snprintf(buf, n, "%.0f %s", v, units[u]);
}

void
cli_format_duration(char *buf, size_t n, double seconds)
{
    if (!(seconds >= 0.0)) /* NaN too */
        seconds = 0.0;
    if (seconds >= 100.0 * 3600.0) {
        snprintf(buf, n, "99:59:59+");
        return;
    }
    unsigned long s = (unsigned long)(seconds + 0.5);
    snprintf(buf, n, "%lu:%02lu:%02lu", s / 3600, s / 60 % 60, s % 60);
}

/* size_pair - "12.0/25.0 MiB" when both fit one unit, else both in full */
static void
size_pair(char *buf, size_t n, uint64_t done, uint64_t total)
{
    char a[32], b[32];
    const char *ua, *ub;

    cli_format_size(a, sizeof(a), done);
    cli_format_size(b, sizeof(b), total);
    ua = strchr(a, ' ');
    ub = strchr(b, ' ');
    if (ua && ub && strcmp(ua, ub) == 0)
        snprintf(buf, n, "%.*s/%s", (int)(ua - a), a, b);
    else
        snprintf(buf, n, "%s/%s", a, b);
}

size_t
cli_progress_format(char *buf, size_t n, int width, const char *label,
                    uint64_t done, uint64_t total, uint64_t moved,
                    double elapsed)
{
    char sizes[80], rate[48], eta[32], tail[200];
    int pct = total ? (int)((double)(done > total ? total : done) * 100.0 /
                            (double)total)
                    : 100;
    double r = elapsed > 0.0 ? (double)moved / elapsed : 0.0;

    if (n == 0)
        return 0;
    size_pair(sizes, sizeof(sizes), done, total);
    if (r >= 1.0) {
        char rs[32];
        cli_format_size(rs, sizeof(rs), (uint64_t)r);
        snprintf(rate, sizeof(rate), "%s/s", rs);
    } else {
        snprintf(rate, sizeof(rate), "-- B/s");
    }
    if (done >= total) {
        cli_format_duration(eta, sizeof(eta), elapsed);
        snprintf(tail, sizeof(tail), "%3d%%  %s  %s  in %s", pct, sizes, rate,
                 eta);
    } else if (r >= 1.0) {
        cli_format_duration(eta, sizeof(eta), (double)(total - done) / r);
        snprintf(tail, sizeof(tail), "%3d%%  %s  %s  ETA %s", pct, sizes,
                 rate, eta);
    } else {
        snprintf(tail, sizeof(tail), "%3d%%  %s  %s  ETA --:--:--", pct,
                 sizes, rate);
    }

    /* label [bar]  tail: the bar gets what is left, at least MIN_BAR;
     * if even that does not fit, the label goes, then the bar */
    int tl = (int)strlen(tail);
    int ll = (int)strlen(label);
    /* the bar keeps its length while the tail's changes a little */
    if (tl < TAIL_RESERVE && width - TAIL_RESERVE - ll - 5 >= MIN_BAR)
        tl = TAIL_RESERVE;
    int bar = width - tl - ll - 5; /* "L [" "] " and a spare column */
    int show_label = 1;
    if (bar < MIN_BAR) {
        show_label = 0;
        bar = width - tl - 4;
    }
    if (width <= 0 || bar < MIN_BAR)
        bar = 0;
    if (bar > 50)
        bar = 50;

    char line[512];
    int k = 0;
    if (show_label && bar > 0)
        k += snprintf(line + k, sizeof(line) - (size_t)k, "%s ", label);
    if (bar > 0) {
        int fill = total ? (int)((double)(done > total ? total : done) *
                                 bar / (double)total)
                         : bar;
        line[k++] = '[';
        for (int i = 0; i < bar && k < (int)sizeof(line) - 2; i++)
            line[k++] = i < fill ? '#' : '.';
        line[k++] = ']';
        line[k++] = ' ';
    }
    snprintf(line + k, sizeof(line) - (size_t)k, "%s", tail);
    if (width > 0 && (int)strlen(line) > width - 1)
        line[width > 1 ? width - 1 : 0] = '\0';
    snprintf(buf, n, "%s", line);
    return strlen(buf);
}

static int
term_width(void)
{
    struct winsize ws;

    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    return DEFAULT_WIDTH;
}

/* draw - the line, padded over whatever the previous one left */
static void
draw(struct cli_progress *p, double now)
{
    char text[512], out[600];
    int w = term_width();
    size_t len = cli_progress_format(text, sizeof(text), w, p->label, p->done,
                                     p->total, p->done - p->base,
                                     now - p->t0);
    int pad = w - 1 - (int)len;

    if (pad < 0)
        pad = 0;
    int k = snprintf(out, sizeof(out), "\r%s%*s", text, pad, "");
    if (k > (int)sizeof(out) - 1)
        k = (int)sizeof(out) - 1;
    if (write(STDERR_FILENO, out, (size_t)k) < 0) {
        p->enabled = 0; /* nowhere to draw: stop trying */
        return;
    }
    p->drawn = 1;
    p->last_draw = now;
}

void
cli_progress_start(struct cli_progress *p, const char *label, uint64_t total,
                   uint64_t done)
{
    memset(p, 0, sizeof(*p));
    p->enabled = isatty(STDERR_FILENO);
    snprintf(p->label, sizeof(p->label), "%s", label);
    p->total = total;
    p->base = done;
    p->done = done;
    p->t0 = now_s();
    if (p->enabled)
        draw(p, p->t0);
}

void
cli_progress_update(struct cli_progress *p, uint64_t done)
{
    p->done = done;
    if (!p->enabled)
        return;
    double now = now_s();
    if (now - p->last_draw >= REDRAW_S)
        draw(p, now);
}

void
cli_progress_end(struct cli_progress *p, int ok)
{
    if (!p->enabled)
        return;
    if (ok) {
        draw(p, now_s());
        if (write(STDERR_FILENO, "\n", 1) < 0)
            return;
    } else if (p->drawn) {
        char out[600];
        int w = term_width();
        if (w > (int)sizeof(out) - 3)
            w = (int)sizeof(out) - 3;
        int k = snprintf(out, sizeof(out), "\r%*s\r", w - 1, "");
        if (write(STDERR_FILENO, out, (size_t)k) < 0)
            return;
    }
    p->enabled = 0;
}
