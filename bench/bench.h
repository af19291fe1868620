/*
 * bench.h - buffdb-bench: the types shared by its modules
 *
 * buffdb-bench is a load generator, not part of the server.  It has four
 * parts:
 *   buffdb_bench.c  command line, key distributions, the run, the report
 *   bench_run.c     the engine: threads, channels, calls (gRPC C core)
 *   bench_proto.c   encoding requests and checking responses per target
 *   bench_hist.c    the latency histogram
 * The engine's threads each own a completion queue and the calls on it;
 * they share only read-only data (options, the value, the key table) and
 * the blob id table the preload fills (each id written by one thread,
 * read after the threads are joined).
 */
#ifndef BFDB_BENCH_BENCH_H
#define BFDB_BENCH_BENCH_H

#include <stddef.h>
#include <stdint.h>

/* bounds on the knobs: each loop of the program is bounded by them */
#define BENCH_MAX_CONNECTIONS 1024
#define BENCH_MAX_STREAMS 1024
#define BENCH_MAX_SLOTS 65536          /* connections x streams */
#define BENCH_MAX_PIPELINE 4096
#define BENCH_MAX_THREADS 64
#define BENCH_MAX_KEYSPACE 10000000ULL
#define BENCH_MAX_VALUE_SIZE (64u << 20)
#define BENCH_MAX_DURATION 3600.0      /* seconds, --duration */
#define BENCH_REQUESTS_CAP 600.0       /* seconds, --requests alone */
#define BENCH_MAX_WARMUP 600.0
#define BENCH_PRELOAD_CAP 600.0        /* seconds for the preload */
#define BENCH_DRAIN_S 10               /* after the run: then cancel */
#define BENCH_GIVEUP_S 5               /* after the cancel: then leak */
#define BENCH_PRELOAD_PIPELINE 32
#define BENCH_MAX_TXN_SETS 1000        /* --txn-sets */
#define BENCH_TXN_ID_MAX 128           /* bytes of a transaction id kept */

enum bench_target { BT_BUFFDB, BT_ETCD, BT_NULL };

enum bench_workload {
    BW_KV_GET,
    BW_KV_SET,
    BW_KV_MIXED,
    BW_KV_DELETE,
    BW_BLOB_STORE,
    BW_BLOB_GET,
    BW_QUERY,
    BW_NULL,
    BW_TXN,
    BW_N
};

/* what one request does; a workload uses one or two of these */
enum bench_op {
    BO_GET,        /* Kv.Get, etcd Range */
    BO_SET,        /* Kv.Set, etcd Put */
    BO_DELETE,     /* Kv.Delete */
    BO_BLOB_STORE, /* Blob.Store */
    BO_BLOB_GET,   /* Blob.Get */
    BO_QUERY,      /* Query.Query */
    BO_ECHO,       /* bench.Null/Echo */
    BO_TXN_BEGIN,  /* Kv.BeginTransaction */
    BO_TXN_SET,    /* Kv.Set with a transaction_id */
    BO_TXN_COMMIT, /* Kv.CommitTransaction */
    BO_TXN_ROLLBACK, /* Kv.RollbackTransaction, after a failed Set */
    BO_N           /* at most 16: struct ent keeps an op in 4 bits */
};

/* the outcome of one response, as bench_check judges it */
enum bench_resp { BR_OK, BR_MISS, BR_BAD };

/* error classes beyond the gRPC status codes 1..16 */
#define BENCH_NCODES 17 /* grpc_status_code 0..16 */

struct bench_opts {
    const char *addr;
    int target;              /* enum bench_target */
    int workload;            /* enum bench_workload */
    int connections, streams, pipeline, threads;
    uint64_t requests;       /* 0: by duration */
    double duration;         /* measured seconds, or the cap with requests */
    int duration_set;
    double warmup;
    size_t value_size;
    uint64_t keyspace;
    int zipf;
    double read_ratio;
    uint64_t seed;
    int preload;
    int json;
    int etcd_serializable;
    int coalesce;            /* streams: batch the writes of requests */
    int txn_sets;            /* txn: Sets per transaction */
};

/*
 * bench_ctx - what encoding and checking need; read-only while threads
 * run, except blob_ids, whose entry i only the request for key i writes
 * (during the preload).
 */
struct bench_ctx {
    const struct bench_opts *o;
    const uint8_t *value;    /* value_size printable bytes */
    int check_len;           /* responses must carry value_size bytes */
    uint64_t *blob_ids;      /* keyspace entries, 0 = unknown; or NULL */
    const double *zipf_cdf;  /* keyspace entries, or NULL for uniform */
};

/* ---- bench_proto.c ---- */

/* bench_method - the method path of op for target, or NULL if the target
 * has no such method */
const char *bench_method(int target, int op);

/* bench_op_name - "get", "set", ... for reports */
const char *bench_op_name(int op);

/*
 * bench_encode - a new byte buffer holding the request of op for key
 * index key (streamed: query requests must yield exactly one row, see
 * bench_proto.c).  The caller destroys it.  Returns NULL only if memory
 * runs out.
 */
struct grpc_byte_buffer *bench_encode(const struct bench_ctx *ctx, int op,
                                      uint64_t key, int streamed);

/*
 * bench_check - judge a response of op; for Blob.Store, *id receives the
 * new blob's id.  Returns enum bench_resp.
 */
int bench_check(const struct bench_ctx *ctx, int op,
                struct grpc_byte_buffer *bb, uint64_t *id);

/*
 * bench_encode_txn - a new byte buffer holding the request of a
 * transaction op (BO_TXN_*) for key index key (BO_TXN_SET) in the
 * transaction id[0..idlen) (all but BO_TXN_BEGIN).  The caller destroys
 * it.  Returns NULL for another op or if memory runs out.
 */
struct grpc_byte_buffer *bench_encode_txn(const struct bench_ctx *ctx, int op,
                                          uint64_t key, const char *id,
                                          size_t idlen);

/*
 * bench_check_txn - judge a response of a transaction op.  For
 * BO_TXN_BEGIN the new transaction's id goes to id (BENCH_TXN_ID_MAX
 * bytes) and its length to *idlen; for BO_TXN_COMMIT, BR_OK means
 * success was true, and otherwise err (errcap bytes, NUL-terminated)
 * receives the server's error_message.  Returns enum bench_resp.
 */
int bench_check_txn(const struct bench_ctx *ctx, int op,
                    struct grpc_byte_buffer *bb, char *id, size_t *idlen,
                    char *err, size_t errcap);

/* bench_key_format - the key string of index k into buf (>= 32 bytes);
 * returns its length */
size_t bench_key_format(uint64_t k, char *buf);

/* bench_status_name - "NOT_FOUND" etc. for a gRPC status code */
const char *bench_status_name(int code);

#endif /* BFDB_BENCH_BENCH_H */
