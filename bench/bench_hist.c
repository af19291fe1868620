/*
 * bench_hist.c - the log-linear latency histogram (see bench_hist.h)
 *
 * Bucket index of v:
 *   v < 2^S                   index v                      (exact)
 *   v >= 2^S, top bit m       e = m - (S - 1), index
 *                             2^S + (e - 1) * 2^(S-1) + ((v >> e) - 2^(S-1))
 * (v >> e) keeps the S top bits of v, in [2^(S-1), 2^S); the bucket
 * covers [(v >> e) << e, ((v >> e) + 1) << e).
 */
#include "config.h"

#include <string.h>

#include "bench_hist.h"

static unsigned
hist_index(uint64_t v)
{
    if (v < (1u << HIST_SUB_BITS))
        return (unsigned)v;
    unsigned m = 63u - (unsigned)__builtin_clzll(v);
    unsigned e = m - (HIST_SUB_BITS - 1);
    return (1u << HIST_SUB_BITS) + (e - 1) * HIST_HALF +
           (unsigned)((v >> e) - HIST_HALF);
}

/* hist_low - the smallest value of bucket i; *width its width */
static uint64_t
hist_low(unsigned i, uint64_t *width)
{
    if (i < (1u << HIST_SUB_BITS)) {
        *width = 1;
        return i;
    }
    unsigned r = i - (1u << HIST_SUB_BITS);
    unsigned e = r / HIST_HALF + 1;
    uint64_t top = HIST_HALF + r % HIST_HALF;
    *width = (uint64_t)1 << e;
    return top << e;
}

void
bench_hist_init(struct bench_hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

void
bench_hist_add(struct bench_hist *h, uint64_t v)
{
    h->b[hist_index(v)]++;
    h->count++;
    h->sum += (long double)v;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

void
bench_hist_merge(struct bench_hist *dst, const struct bench_hist *src)
{
    if (src->count == 0)
        return;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        dst->b[i] += src->b[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t
bench_hist_percentile(const struct bench_hist *h, double p)
{
    if (h->count == 0)
        return 0;
    if (p <= 0)
        return h->min;
    if (p >= 1)
        return h->max;
    /* the rank of the wanted value, 1-based: ceil(p * count) */
    uint64_t rank = (uint64_t)(p * (double)h->count);
    if ((double)rank < p * (double)h->count)
        rank++;
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            uint64_t w, lo = hist_low(i, &w);
            uint64_t v = lo + w / 2;
            if (v < h->min)
                v = h->min;
            if (v > h->max)
                v = h->max;
            return v;
        }
    }
    return h->max;
}

double
bench_hist_mean(const struct bench_hist *h)
{
    return h->count ? (double)(h->sum / (long double)h->count) : 0.0;
}
