/*
 * buffdb_bench.c - buffdb-bench: a gRPC load generator for buffdb, etcd
 * and an echo server (see buffdb-bench(1))
 *
 * This file reads the command line, builds what the engine shares (the
 * value, the zipf table, the blob id table), runs the preload and the
 * measured phase (bench_run.c) and prints the report, as text or as one
 * JSON object.  Exit status: 0 when some request was answered correctly
 * and every call finished; 1 otherwise (nothing answered, a failed
 * preload, calls that never finished); 2 for a usage error.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <grpc/grpc.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "bench_hist.h"
#include "bench_run.h"

static const char *const workload_names[BW_N] = {
    [BW_KV_GET] = "kv-get",       [BW_KV_SET] = "kv-set",
    [BW_KV_MIXED] = "kv-mixed",   [BW_KV_DELETE] = "kv-delete",
    [BW_BLOB_STORE] = "blob-store", [BW_BLOB_GET] = "blob-get",
    [BW_QUERY] = "query",         [BW_NULL] = "null",
    [BW_TXN] = "txn",
};

static const char *const target_names[] = {
    [BT_BUFFDB] = "buffdb", [BT_ETCD] = "etcd", [BT_NULL] = "null"};

static void
usage(FILE *f)
{
    fprintf(f,
"usage: buffdb-bench [options] WORKLOAD\n"
"workloads: kv-get kv-set kv-mixed kv-delete blob-store blob-get query null\n"
"           txn\n"
"  --addr HOST:PORT         server (default 127.0.0.1:9313)\n"
"  --target buffdb|etcd|null  what serves ADDR (default buffdb; null for\n"
"                           the null workload)\n"
"  --connections N          TCP connections (default 1)\n"
"  --streams S              request slots per connection (default 1)\n"
"  --pipeline P             requests in flight per slot; 1 = a call per\n"
"                           request, more = one stream per slot (default 1)\n"
"  --duration SECONDS       measured time (default 10, at most 3600)\n"
"  --requests N             stop after N measured requests instead\n"
"  --warmup SECONDS         unmeasured time first (default 1)\n"
"  --value-size BYTES       value or blob size (default 100)\n"
"  --keyspace N             keys key0000000000.. (default 10000)\n"
"  --key-distribution uniform|zipf  (zipf: s = 0.99; default uniform)\n"
"  --read-ratio R           kv-mixed: fraction of gets (default 0.9)\n"
"  --txn-sets N             txn: Sets per transaction (default 4)\n"
"  --preload                set every key (store a blob per key) first\n"
"  --seed N                 random seed (default 1)\n"
"  --threads T              client threads (default 1, 2 with 2+\n"
"                           connections)\n"
"  --etcd-serializable      etcd Range reads are serializable\n"
"  --coalesce               streams: write the requests waiting to go out\n"
"                           together, as redis-benchmark -P does\n"
"  --json                   print one JSON object\n"
"  --help, --version\n");
}

static void
die_usage(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "buffdb-bench: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(buffdb-bench --help for the options)\n");
    exit(2);
}

static uint64_t
parse_u64(const char *opt, const char *s, uint64_t min, uint64_t max)
{
    char *end;

    errno = 0;
    if (s[0] < '0' || s[0] > '9')
        die_usage("%s: '%s' is not a number", opt, s);
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        die_usage("%s: '%s' is not a whole number from %llu to %llu", opt, s,
                  (unsigned long long)min, (unsigned long long)max);
    return v;
}

static double
parse_double(const char *opt, const char *s, double min, double max)
{
    char *end;

    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= min && v <= max))
        die_usage("%s: '%s' is not a number from %g to %g", opt, s, min, max);
    return v;
}

static int
lookup(const char *opt, const char *s, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (names[i] && strcmp(s, names[i]) == 0)
            return i;
    die_usage("%s: unknown value '%s'", opt, s);
    return -1;
}

enum {
    O_ADDR = 256, O_TARGET, O_CONNS, O_STREAMS, O_PIPELINE, O_DURATION,
    O_REQUESTS, O_WARMUP, O_VSIZE, O_KEYSPACE, O_DIST, O_RATIO, O_PRELOAD,
    O_SEED, O_THREADS, O_SERIAL, O_COALESCE, O_JSON, O_VERSION, O_WORKLOAD, O_TXN_SETS
};

static void
parse_args(int argc, char **argv, struct bench_opts *o)
{
    static const struct option lo[] = {
        {"addr", required_argument, NULL, O_ADDR},
        {"target", required_argument, NULL, O_TARGET},
        {"connections", required_argument, NULL, O_CONNS},
        {"streams", required_argument, NULL, O_STREAMS},
        {"pipeline", required_argument, NULL, O_PIPELINE},
        {"duration", required_argument, NULL, O_DURATION},
        {"requests", required_argument, NULL, O_REQUESTS},
        {"warmup", required_argument, NULL, O_WARMUP},
        {"value-size", required_argument, NULL, O_VSIZE},
        {"keyspace", required_argument, NULL, O_KEYSPACE},
        {"key-distribution", required_argument, NULL, O_DIST},
        {"read-ratio", required_argument, NULL, O_RATIO},
        {"preload", no_argument, NULL, O_PRELOAD},
        {"seed", required_argument, NULL, O_SEED},
        {"threads", required_argument, NULL, O_THREADS},
        {"etcd-serializable", no_argument, NULL, O_SERIAL},
        {"coalesce", no_argument, NULL, O_COALESCE},
        {"json", no_argument, NULL, O_JSON},
        {"workload", required_argument, NULL, O_WORKLOAD},
        {"txn-sets", required_argument, NULL, O_TXN_SETS},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, O_VERSION},
        {NULL, 0, NULL, 0},
    };
    static const char *const dists[] = {"uniform", "zipf"};
    int c, target = -1, threads = 0;

    memset(o, 0, sizeof(*o));
    o->addr = "127.0.0.1:9313";
    o->workload = -1;
    o->connections = o->streams = o->pipeline = 1;
    o->duration = 10;
    o->warmup = 1;
    o->value_size = 100;
    o->keyspace = 10000;
    o->read_ratio = 0.9;
    o->seed = 1;
    o->txn_sets = 4;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case O_ADDR: o->addr = optarg; break;
        case O_TARGET: target = lookup("--target", optarg, target_names, 3); break;
        case O_CONNS:
            o->connections = (int)parse_u64("--connections", optarg, 1,
                                            BENCH_MAX_CONNECTIONS);
            break;
        case O_STREAMS:
            o->streams = (int)parse_u64("--streams", optarg, 1,
                                        BENCH_MAX_STREAMS);
            break;
        case O_PIPELINE:
            o->pipeline = (int)parse_u64("--pipeline", optarg, 1,
                                         BENCH_MAX_PIPELINE);
            break;
        case O_DURATION:
            o->duration = parse_double("--duration", optarg, 0.1,
                                       BENCH_MAX_DURATION);
            o->duration_set = 1;
            break;
        case O_REQUESTS:
            o->requests = parse_u64("--requests", optarg, 1, 1000000000000ULL);
            break;
        case O_WARMUP:
            o->warmup = parse_double("--warmup", optarg, 0, BENCH_MAX_WARMUP);
            break;
        case O_VSIZE:
            o->value_size = (size_t)parse_u64("--value-size", optarg, 0,
                                              BENCH_MAX_VALUE_SIZE);
            break;
        case O_KEYSPACE:
            o->keyspace = parse_u64("--keyspace", optarg, 1,
                                    BENCH_MAX_KEYSPACE);
            break;
        case O_DIST:
            o->zipf = lookup("--key-distribution", optarg, dists, 2);
            break;
        case O_RATIO:
            o->read_ratio = parse_double("--read-ratio", optarg, 0, 1);
            break;
        case O_PRELOAD: o->preload = 1; break;
        case O_SEED:
            o->seed = parse_u64("--seed", optarg, 0, UINT64_MAX);
            break;
        case O_THREADS:
            threads = (int)parse_u64("--threads", optarg, 1,
                                     BENCH_MAX_THREADS);
            break;
        case O_SERIAL: o->etcd_serializable = 1; break;
        case O_COALESCE: o->coalesce = 1; break;
        case O_JSON: o->json = 1; break;
        case O_WORKLOAD:
            o->workload = lookup("--workload", optarg, workload_names, BW_N);
            break;
        case O_TXN_SETS:
            o->txn_sets = (int)parse_u64("--txn-sets", optarg, 0,
                                         BENCH_MAX_TXN_SETS);
            break;
        case 'h': usage(stdout); exit(0);
        case O_VERSION: printf("buffdb-bench %s\n", PACKAGE_VERSION); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (optind < argc) {
        if (o->workload >= 0)
            die_usage("the workload is given twice");
        o->workload = lookup("workload", argv[optind++], workload_names, BW_N);
    }
    if (optind < argc)
        die_usage("unexpected argument '%s'", argv[optind]);
    if (o->workload < 0)
        die_usage("no workload given");

    if (target < 0)
        target = o->workload == BW_NULL ? BT_NULL : BT_BUFFDB;
    o->target = target;
    if ((o->target == BT_NULL) != (o->workload == BW_NULL))
        die_usage("the null workload goes with --target null, and only it");
    if (o->target == BT_ETCD && o->workload != BW_KV_GET &&
        o->workload != BW_KV_SET && o->workload != BW_KV_MIXED)
        die_usage("--target etcd runs kv-get, kv-set and kv-mixed only");
    /* a transaction is a chain of calls on its slot, each waiting for
     * the previous answer: more in flight means more slots */
    if (o->workload == BW_TXN && o->pipeline != 1)
        die_usage("txn sends one call at a time per slot: use --streams "
                  "or --connections, not --pipeline, for more "
                  "transactions in flight");
    if (o->coalesce && (o->pipeline < 2 || o->target == BT_ETCD))
        die_usage("--coalesce is for streams: it needs --pipeline 2 or more "
                  "and a buffdb or null target");
    if ((uint64_t)o->connections * (uint64_t)o->streams > BENCH_MAX_SLOTS)
        die_usage("--connections x --streams is above %d", BENCH_MAX_SLOTS);
    if (threads == 0)
        threads = o->connections > 1 ? 2 : 1;
    if (threads > o->connections)
        die_usage("--threads %d is more than --connections %d: each thread "
                  "needs a connection of its own", threads, o->connections);
    o->threads = threads;
    if (o->zipf && o->keyspace < 2)
        die_usage("--key-distribution zipf needs a keyspace of 2 or more");
}

/* ---- shared data ---------------------------------------------------------- */

static uint8_t *
make_value(size_t n, uint64_t seed)
{
    uint8_t *v = malloc(n ? n : 1);
    uint64_t x = seed * 6364136223846793005ULL + 1442695040888963407ULL;

    if (v == NULL)
        return NULL;
    /* printable ASCII: valid UTF-8 for buffdb's string fields */
    for (size_t i = 0; i < n; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        v[i] = (uint8_t)('a' + (x >> 33) % 26);
    }
    return v;
}

/* make_zipf - the cumulative distribution of ranks 0..n-1 with
 * P(rank r) proportional to 1 / (r + 1)^0.99 */
static double *
make_zipf(uint64_t n)
{
    double *cdf = malloc(n * sizeof(*cdf));
    double sum = 0;

    if (cdf == NULL)
        return NULL;
    for (uint64_t i = 0; i < n; i++) {
        sum += 1.0 / pow((double)(i + 1), 0.99);
        cdf[i] = sum;
    }
    for (uint64_t i = 0; i < n; i++)
        cdf[i] /= sum;
    cdf[n - 1] = 1.0;
    return cdf;
}

/* ---- the report ----------------------------------------------------------- */

static void
json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20 || *p >= 0x7f)
            fprintf(f, "\\u%04x", *p); /* bytes, not characters: safe */
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

struct summary {
    double elapsed_s, ops_s, cpu_s, cpu_us_op;
    uint64_t ops, errors;
    double p[5]; /* p50 p90 p99 p99.9 max, microseconds */
    double mean_us, min_us;
};

static void
summarize(const struct bench_stats *st, uint64_t t_measure, struct summary *s)
{
    static const double ps[4] = {0.50, 0.90, 0.99, 0.999};

    memset(s, 0, sizeof(*s));
    s->ops = st->ok + st->misses;
    s->elapsed_s =
        st->last_ns > t_measure ? (double)(st->last_ns - t_measure) / 1e9 : 0;
    s->ops_s = s->elapsed_s > 0 ? (double)s->ops / s->elapsed_s : 0;
    for (int i = 0; i < 4; i++)
        s->p[i] = (double)bench_hist_percentile(&st->hist, ps[i]) / 1e3;
    s->p[4] = st->hist.count ? (double)st->hist.max / 1e3 : 0;
    s->mean_us = bench_hist_mean(&st->hist) / 1e3;
    s->min_us = st->hist.count ? (double)st->hist.min / 1e3 : 0;
    for (int c = 1; c < BENCH_NCODES; c++)
        s->errors += st->errors[c];
    s->cpu_s = (double)(st->cpu_user_ns + st->cpu_sys_ns) / 1e9;
    s->cpu_us_op = s->ops ? s->cpu_s * 1e6 / (double)s->ops : 0;
}

static const char *
mode_name(const struct bench_opts *o)
{
    if (o->target == BT_ETCD || o->pipeline < 2)
        return "unary";
    return o->coalesce ? "streamed, coalesced" : "streamed";
}

static void
print_json(const struct bench_opts *o, const struct bench_stats *st,
           const struct summary *s, double preload_s, int preloaded)
{
    FILE *f = stdout;

    fprintf(f, "{\"workload\":\"%s\",\"target\":\"%s\",\"addr\":",
            workload_names[o->workload], target_names[o->target]);
    json_str(f, o->addr);
    fprintf(f,
            ",\"connections\":%d,\"streams\":%d,\"pipeline\":%d,"
            "\"mode\":\"%s\",\"threads\":%d,\"keyspace\":%llu,"
            "\"key_distribution\":\"%s\",\"value_size\":%zu,",
            o->connections, o->streams, o->pipeline, mode_name(o), o->threads,
            (unsigned long long)o->keyspace, o->zipf ? "zipf" : "uniform",
            o->value_size);
    if (o->workload == BW_KV_MIXED)
        fprintf(f, "\"read_ratio\":%.4g,", o->read_ratio);
    if (o->workload == BW_TXN)
        fprintf(f, "\"txn_sets\":%d,", o->txn_sets);
    fprintf(f, "\"seed\":%llu,\"warmup_s\":%.3f,", (unsigned long long)o->seed,
            o->warmup);
    if (o->requests)
        fprintf(f, "\"requests\":%llu,", (unsigned long long)o->requests);
    else
        fprintf(f, "\"duration_s\":%.3f,", o->duration);
    if (preloaded)
        fprintf(f, "\"preload_s\":%.3f,", preload_s);
    fprintf(f,
            "\"issued\":%llu,\"ops\":%llu,\"misses\":%llu,"
            "\"elapsed_s\":%.6f,\"ops_per_sec\":%.1f,",
            (unsigned long long)st->issued, (unsigned long long)s->ops,
            (unsigned long long)st->misses, s->elapsed_s, s->ops_s);
    fprintf(f,
            "\"latency_us\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,"
            "\"p99_9\":%.3f,\"max\":%.3f,\"min\":%.3f,\"mean\":%.3f,"
            "\"count\":%llu},",
            s->p[0], s->p[1], s->p[2], s->p[3], s->p[4], s->min_us, s->mean_us,
            (unsigned long long)st->hist.count);
    fprintf(f, "\"errors\":{");
    int first = 1;
    for (int c = 1; c < BENCH_NCODES; c++) {
        if (st->errors[c] == 0)
            continue;
        fprintf(f, "%s\"%s\":%llu", first ? "" : ",", bench_status_name(c),
                (unsigned long long)st->errors[c]);
        first = 0;
    }
    fprintf(f, "},\"errors_total\":%llu,\"unanswered\":%llu,"
               "\"bad_responses\":%llu,\"warmup_errors\":%llu,",
            (unsigned long long)s->errors, (unsigned long long)st->unanswered,
            (unsigned long long)st->bad,
            (unsigned long long)st->warmup_errors);
    if (st->first_error[0]) {
        fprintf(f, "\"first_error\":");
        json_str(f, st->first_error);
        fputc(',', f);
    }
    fprintf(f,
            "\"cpu\":{\"user_s\":%.3f,\"sys_s\":%.3f,\"total_s\":%.3f,"
            "\"us_per_op\":%.3f},\"gave_up\":%s,\"leaked_calls\":%llu}\n",
            (double)st->cpu_user_ns / 1e9, (double)st->cpu_sys_ns / 1e9,
            s->cpu_s, s->cpu_us_op, st->gave_up ? "true" : "false",
            (unsigned long long)st->leaked);
}

static void
print_text(const struct bench_opts *o, const struct bench_stats *st,
           const struct summary *s, double preload_s, int preloaded)
{
    FILE *f = stdout;

    fprintf(f, "buffdb-bench %s against %s at %s\n",
            workload_names[o->workload], target_names[o->target], o->addr);
    fprintf(f, "  %d connection%s x %d stream%s, pipeline %d (%s), %d "
               "thread%s\n",
            o->connections, o->connections == 1 ? "" : "s", o->streams,
            o->streams == 1 ? "" : "s", o->pipeline, mode_name(o), o->threads,
            o->threads == 1 ? "" : "s");
    fprintf(f, "  %llu keys %s, values %zu bytes", 
            (unsigned long long)o->keyspace, o->zipf ? "zipf 0.99" : "uniform",
            o->value_size);
    if (o->workload == BW_KV_MIXED)
        fprintf(f, ", read ratio %.3g", o->read_ratio);
    if (o->workload == BW_TXN)
        fprintf(f, ", %d Sets per transaction", o->txn_sets);
    fprintf(f, ", warmup %.1f s, ", o->warmup);
    if (o->requests)
        fprintf(f, "%llu requests", (unsigned long long)o->requests);
    else
        fprintf(f, "%.1f s", o->duration);
    fprintf(f, ", seed %llu\n", (unsigned long long)o->seed);
    if (preloaded)
        fprintf(f, "  preload    %llu keys in %.2f s\n",
                (unsigned long long)o->keyspace, preload_s);
    if (o->workload == BW_TXN)
        fprintf(f, "  throughput %.1f committed transactions/s (%llu "
                   "committed in %.3f s",
                s->ops_s, (unsigned long long)s->ops, s->elapsed_s);
    else
        fprintf(f, "  throughput %.1f ops/s (%llu answered in %.3f s",
                s->ops_s, (unsigned long long)s->ops, s->elapsed_s);
    if (st->misses)
        fprintf(f, ", %llu of them misses", (unsigned long long)st->misses);
    fprintf(f, ")\n");
    fprintf(f, "  latency us p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  "
               "max %.1f  (mean %.1f)\n",
            s->p[0], s->p[1], s->p[2], s->p[3], s->p[4], s->mean_us);
    fprintf(f, "  errors     ");
    if (s->errors == 0 && st->unanswered == 0 && st->bad == 0) {
        fprintf(f, "none\n");
    } else {
        for (int c = 1; c < BENCH_NCODES; c++)
            if (st->errors[c])
                fprintf(f, "%s %llu  ", bench_status_name(c),
                        (unsigned long long)st->errors[c]);
        if (st->unanswered)
            fprintf(f, "unanswered %llu  ", (unsigned long long)st->unanswered);
        if (st->bad)
            fprintf(f, "bad responses %llu", (unsigned long long)st->bad);
        fprintf(f, "\n");
    }
    if (st->warmup_errors)
        fprintf(f, "  warmup     %llu errors (not counted above)\n",
                (unsigned long long)st->warmup_errors);
    if (st->first_error[0])
        fprintf(f, "  first      %s\n", st->first_error);
    fprintf(f, "  client CPU %.2f s user + %.2f s sys = %.1f us/op\n",
            (double)st->cpu_user_ns / 1e9, (double)st->cpu_sys_ns / 1e9,
            s->cpu_us_op);
    if (st->gave_up)
        fprintf(f, "  stopped early: the server kept answering UNAVAILABLE\n");
    if (st->leaked)
        fprintf(f, "  %llu calls never finished\n",
                (unsigned long long)st->leaked);
}

/* ---- main ----------------------------------------------------------------- */

/* preload_op - what the preload sends for the workload, or -1 for none */
static int
preload_op(const struct bench_opts *o)
{
    switch (o->workload) {
    case BW_KV_GET:
    case BW_KV_SET:
    case BW_KV_MIXED:
    case BW_KV_DELETE:
    case BW_QUERY:
        return BO_SET;
    case BW_BLOB_GET:
        return BO_BLOB_STORE;
    default:
        return -1;
    }
}

int
main(int argc, char **argv)
{
    struct bench_opts o;
    struct bench_ctx ctx;
    struct bench_stats st;
    struct summary sum;
    double preload_s = 0;
    int preloaded = 0, rc = 1;
    uint8_t *value;

    parse_args(argc, argv, &o);
    memset(&ctx, 0, sizeof(ctx));
    ctx.o = &o;
    value = make_value(o.value_size, o.seed);
    if (value == NULL) {
        fprintf(stderr, "buffdb-bench: out of memory for the value\n");
        return 1;
    }
    ctx.value = value;
    if (o.zipf && (ctx.zipf_cdf = make_zipf(o.keyspace)) == NULL) {
        fprintf(stderr, "buffdb-bench: out of memory for the zipf table\n");
        free(value);
        return 1;
    }
    int pop = o.preload ? preload_op(&o) : -1;
    if (o.preload && pop < 0)
        fprintf(stderr, "buffdb-bench: --preload does nothing for %s\n",
                workload_names[o.workload]);
    if (pop == BO_BLOB_STORE) {
        ctx.blob_ids = calloc(o.keyspace, sizeof(*ctx.blob_ids));
        if (ctx.blob_ids == NULL) {
            fprintf(stderr, "buffdb-bench: out of memory for blob ids\n");
            free(value);
            free((void *)ctx.zipf_cdf);
            return 1;
        }
    }
    int progress = isatty(STDERR_FILENO);

    grpc_init();
    struct bench_engine *e = bench_engine_new(&ctx);
    if (e == NULL)
        goto out;
    if (pop >= 0) {
        struct bench_phase ph = {0};
        uint64_t t0 = bench_now_ns();
        ph.preload = 1;
        ph.op_preload = pop;
        ph.t_measure = t0;
        ph.t_end = t0 + (uint64_t)(BENCH_PRELOAD_CAP * 1e9);
        ph.pipeline = BENCH_PRELOAD_PIPELINE;
        ph.progress = progress;
        bench_engine_run(e, &ph, &st);
        preload_s = (double)(bench_now_ns() - t0) / 1e9;
        summarize(&st, t0, &sum);
        if (sum.errors || st.bad || st.unanswered || st.leaked ||
            st.ok + st.misses < o.keyspace) {
            fprintf(stderr,
                    "buffdb-bench: the preload failed: %llu of %llu keys "
                    "set, %llu failed%s%s\n",
                    (unsigned long long)st.ok, (unsigned long long)o.keyspace,
                    (unsigned long long)(sum.errors + st.bad + st.unanswered),
                    st.first_error[0] ? ", first: " : "", st.first_error);
            if (bench_engine_free(e) != 0)
                goto leaked;
            goto out;
        }
        preloaded = 1;
        ctx.check_len = 1;
    }

    struct bench_phase ph = {0};
    uint64_t t0 = bench_now_ns();
    ph.t_measure = t0 + (uint64_t)(o.warmup * 1e9);
    double span = o.requests ? (o.duration_set ? o.duration : BENCH_REQUESTS_CAP)
                             : o.duration;
    ph.t_end = ph.t_measure + (uint64_t)(span * 1e9);
    ph.requests = o.requests;
    ph.pipeline = o.pipeline;
    ph.progress = progress;
    bench_engine_run(e, &ph, &st);
    summarize(&st, ph.t_measure, &sum);
    if (o.json)
        print_json(&o, &st, &sum, preload_s, preloaded);
    else
        print_text(&o, &st, &sum, preload_s, preloaded);
    fflush(stdout);
    rc = sum.ops > 0 && st.leaked == 0 ? 0 : 1;
    if (bench_engine_free(e) != 0)
        goto leaked;
out:
    grpc_shutdown_blocking();
    free(ctx.blob_ids);
    free((void *)ctx.zipf_cdf);
    free(value);
    return rc;
leaked:
    /* calls still hold gRPC's resources: shutting gRPC down would wait
     * for them for ever */
    fprintf(stderr, "buffdb-bench: some calls never finished\n");
    fflush(NULL);
    _exit(1);
}
