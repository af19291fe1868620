/*
 * bench_hist.h - a log-linear latency histogram (HDR style)
 *
 * Values (nanoseconds) below 2^HIST_SUB_BITS are counted exactly; above,
 * each power-of-two range is split into 2^(HIST_SUB_BITS-1) equal
 * buckets, so a bucket is at most 1/128 of its values wide: a percentile
 * read back is within 0.8% of a recorded value (better than two
 * significant digits).  The whole 64-bit range fits in HIST_BUCKETS
 * counters (58 KiB); recording is a few shifts and an increment.  min,
 * max and the sum are kept exactly.  Not thread-safe: one histogram per
 * thread, merged at the end.
 */
#ifndef BFDB_BENCH_HIST_H
#define BFDB_BENCH_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 8
#define HIST_HALF (1u << (HIST_SUB_BITS - 1))
/* exact part + one half-range per exponent 1..(64 - HIST_SUB_BITS) */
#define HIST_BUCKETS ((1u << HIST_SUB_BITS) + (64 - HIST_SUB_BITS) * HIST_HALF)

struct bench_hist {
    uint64_t count;
    uint64_t min, max;
    long double sum;
    uint64_t b[HIST_BUCKETS];
};

/* bench_hist_init - empty h */
void bench_hist_init(struct bench_hist *h);

/* bench_hist_add - count one value v */
void bench_hist_add(struct bench_hist *h, uint64_t v);

/* bench_hist_merge - add every count of src into dst */
void bench_hist_merge(struct bench_hist *dst, const struct bench_hist *src);

/* bench_hist_percentile - the value at or below which a fraction p
 * (0..1) of the counts lie (the middle of its bucket, clamped to
 * [min, max]); 0 for an empty histogram */
uint64_t bench_hist_percentile(const struct bench_hist *h, double p);

/* bench_hist_mean - the exact mean, 0 for an empty histogram */
double bench_hist_mean(const struct bench_hist *h);

#endif /* BFDB_BENCH_HIST_H */
