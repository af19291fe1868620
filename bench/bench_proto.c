/*
 * bench_proto.c - requests and responses of buffdb-bench, per target
 *
 * buffdb: Kv.Get/Set/Delete, Blob.Store/Get and Query.Query with the
 * protobuf-c code of proto/ (libbuffdb_proto.a).  etcd: KV.Range and
 * KV.Put with bench/etcd_kv.proto.  null: /bench.Null/Echo, whose
 * messages are raw bytes (the echo server never decodes them).
 *
 * Query.Query answers a statement with one QueryResult per row and no end
 * marker, so on a stream carrying several statements a client can tell
 * the answers apart only if each yields exactly one row.  A streamed
 * query therefore asks SELECT (SELECT value FROM kv WHERE key = '...'),
 * one row whose value is NULL when the key is missing; a query in a call
 * of its own (--pipeline 1) asks SELECT value FROM kv WHERE key = '...'
 * and reads zero or one row.
 *
 * Every kv write (Kv.Set in or out of a transaction, etcd Put) stores a
 * value of its own: the run's value with its first 16 bytes (fewer if
 * it is shorter) replaced by a per-thread sequence number in hex.  SQLite
 * does not rewrite a row whose new record is byte for byte the old one,
 * so Sets of the value a key already holds would cost buffdb no page
 * write at all, while etcd and Redis write every time.
 *
 * The txn workload's requests carry a transaction id, which only the
 * engine knows (per slot): they go through bench_encode_txn and
 * bench_check_txn.  The transaction_id of SetRequest is proto3 optional,
 * a oneof _transaction_id in protobuf-c (see docs/ARCHITECTURE.md).
 *
 * Responses are decoded (a real client pays that too) and judged: BR_OK,
 * BR_MISS (no such key: an empty etcd Range, a NULL query row) or BR_BAD
 * (undecodable, or the wrong length when ctx->check_len).
 */
#include "config.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "blob.pb-c.h"
#include "etcd_kv.pb-c.h"
#include "kv.pb-c.h"
#include "query.pb-c.h"

static const char *const buffdb_methods[BO_N] = {
    [BO_GET] = "/buffdb.kv.Kv/Get",
    [BO_SET] = "/buffdb.kv.Kv/Set",
    [BO_DELETE] = "/buffdb.kv.Kv/Delete",
    [BO_BLOB_STORE] = "/buffdb.blob.Blob/Store",
    [BO_BLOB_GET] = "/buffdb.blob.Blob/Get",
    [BO_QUERY] = "/buffdb.query.Query/Query",
    [BO_TXN_BEGIN] = "/buffdb.kv.Kv/BeginTransaction",
    [BO_TXN_SET] = "/buffdb.kv.Kv/Set",
    [BO_TXN_COMMIT] = "/buffdb.kv.Kv/CommitTransaction",
    [BO_TXN_ROLLBACK] = "/buffdb.kv.Kv/RollbackTransaction",
};

static const char *const etcd_methods[BO_N] = {
    [BO_GET] = "/etcdserverpb.KV/Range",
    [BO_SET] = "/etcdserverpb.KV/Put",
};

static const char *const null_methods[BO_N] = {
    [BO_ECHO] = "/bench.Null/Echo",
};

static const char *const op_names[BO_N] = {
    [BO_GET] = "get", [BO_SET] = "set", [BO_DELETE] = "delete",
    [BO_BLOB_STORE] = "blob-store", [BO_BLOB_GET] = "blob-get",
    [BO_QUERY] = "query", [BO_ECHO] = "echo",
    [BO_TXN_BEGIN] = "txn-begin", [BO_TXN_SET] = "txn-set",
    [BO_TXN_COMMIT] = "txn-commit", [BO_TXN_ROLLBACK] = "txn-rollback",
};

static const char *const status_names[BENCH_NCODES] = {
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
    "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
};

const char *
bench_method(int target, int op)
{
    if (op < 0 || op >= BO_N)
        return NULL;
    switch (target) {
    case BT_BUFFDB: return buffdb_methods[op];
    case BT_ETCD: return etcd_methods[op];
    case BT_NULL: return null_methods[op];
    default: return NULL;
    }
}

const char *
bench_op_name(int op)
{
    return op >= 0 && op < BO_N ? op_names[op] : "?";
}

const char *
bench_status_name(int code)
{
    return code >= 0 && code < BENCH_NCODES ? status_names[code] : "UNKNOWN";
}

size_t
bench_key_format(uint64_t k, char *buf)
{
    int n = snprintf(buf, 32, "key%010llu", (unsigned long long)k);
    return n > 0 ? (size_t)n : 0;
}

/* pack - m into a fresh byte buffer */
static grpc_byte_buffer *
pack(const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    grpc_slice s = grpc_slice_malloc(n);
    protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

/* a value being built for one write; small values stay on the stack */
struct wvalue {
    uint8_t small[512];
    uint8_t *heap;
};

/*
 * write_value - the bytes of the next write's value in w (see the file
 * comment); release with wvalue_done.  Falls back to the run's value,
 * unstamped, if memory runs out.
 */
static ProtobufCBinaryData
write_value(const struct bench_ctx *ctx, struct wvalue *w)
{
    static _Thread_local uint64_t seq, mix;
    static const char hex[] = "0123456789abcdef";
    size_t n = ctx->o->value_size;
    uint8_t *p = w->small;

    w->heap = NULL;
    if (n > sizeof(w->small)) {
        if ((w->heap = malloc(n)) == NULL)
            return (ProtobufCBinaryData){n, (uint8_t *)ctx->value};
        p = w->heap;
    }
    if (mix == 0) {
        /* distinct per thread and per process: the address of this
         * thread's counter and the clock at its first write */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        mix = ((uint64_t)(uintptr_t)&seq ^ (uint64_t)ts.tv_nsec ^
               ((uint64_t)ts.tv_sec << 32)) *
                  0x9e3779b97f4a7c15ULL |
              1;
    }
    uint64_t x = (++seq) * 0xbf58476d1ce4e5b9ULL ^ mix;
    memcpy(p, ctx->value, n);
    for (size_t i = 0; i < n && i < 16; i++)
        p[i] = (uint8_t)hex[(x >> (4 * i)) & 0xf];
    return (ProtobufCBinaryData){n, p};
}

static void
wvalue_done(struct wvalue *w)
{
    free(w->heap);
}

static grpc_byte_buffer *
encode_buffdb(const struct bench_ctx *ctx, int op, uint64_t key, int streamed)
{
    char kb[32];
    ProtobufCBinaryData k = {bench_key_format(key, kb), (uint8_t *)kb};
    ProtobufCBinaryData v = {ctx->o->value_size, (uint8_t *)ctx->value};

    switch (op) {
    case BO_GET: {
        Buffdb__Kv__GetRequest r = BUFFDB__KV__GET_REQUEST__INIT;
        r.key = k;
        return pack(&r.base);
    }
    case BO_SET: {
        struct wvalue w;
        Buffdb__Kv__SetRequest r = BUFFDB__KV__SET_REQUEST__INIT;
        r.key = k;
        r.value = write_value(ctx, &w);
        grpc_byte_buffer *bb = pack(&r.base);
        wvalue_done(&w);
        return bb;
    }
    case BO_DELETE: {
        Buffdb__Kv__DeleteRequest r = BUFFDB__KV__DELETE_REQUEST__INIT;
        r.key = k;
        return pack(&r.base);
    }
    case BO_BLOB_STORE: {
        Buffdb__Blob__StoreRequest r = BUFFDB__BLOB__STORE_REQUEST__INIT;
        r.bytes = v;
        return pack(&r.base);
    }
    case BO_BLOB_GET: {
        Buffdb__Blob__GetRequest r = BUFFDB__BLOB__GET_REQUEST__INIT;
        r.id = ctx->blob_ids && ctx->blob_ids[key] ? ctx->blob_ids[key]
                                                     : key + 1;
        return pack(&r.base);
    }
    case BO_QUERY: {
        char sql[128];
        int n = snprintf(sql, sizeof(sql),
                         streamed ? "SELECT (SELECT value FROM kv WHERE key = "
                                    "'%s')"
                                  : "SELECT value FROM kv WHERE key = '%s'",
                         kb);
        Buffdb__Query__RawQuery r = BUFFDB__QUERY__RAW_QUERY__INIT;
        r.query.data = (uint8_t *)sql;
        r.query.len = n > 0 ? (size_t)n : 0;
        r.target = BUFFDB__QUERY__TARGET_STORE__KV;
        return pack(&r.base);
    }
    default:
        return NULL;
    }
}

static grpc_byte_buffer *
encode_etcd(const struct bench_ctx *ctx, int op, uint64_t key)
{
    char kb[32];
    ProtobufCBinaryData k = {bench_key_format(key, kb), (uint8_t *)kb};

    if (op == BO_GET) {
        Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
        r.key = k;
        r.serializable = ctx->o->etcd_serializable ? 1 : 0;
        return pack(&r.base);
    }
    if (op == BO_SET) {
        struct wvalue w;
        Etcdserverpb__PutRequest r = ETCDSERVERPB__PUT_REQUEST__INIT;
        r.key = k;
        r.value = write_value(ctx, &w);
        grpc_byte_buffer *bb = pack(&r.base);
        wvalue_done(&w);
        return bb;
    }
    return NULL;
}

grpc_byte_buffer *
bench_encode(const struct bench_ctx *ctx, int op, uint64_t key, int streamed)
{
    switch (ctx->o->target) {
    case BT_BUFFDB:
        return encode_buffdb(ctx, op, key, streamed);
    case BT_ETCD:
        return encode_etcd(ctx, op, key);
    case BT_NULL: {
        grpc_slice s = grpc_slice_from_copied_buffer(
            (const char *)ctx->value, ctx->o->value_size);
        grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
        grpc_slice_unref(s);
        return bb;
    }
    default:
        return NULL;
    }
}

grpc_byte_buffer *
bench_encode_txn(const struct bench_ctx *ctx, int op, uint64_t key,
                 const char *id, size_t idlen)
{
    ProtobufCBinaryData tid = {idlen, (uint8_t *)id};

    switch (op) {
    case BO_TXN_BEGIN: {
        /* no read_only, no timeout_ms: the server's transaction_timeout */
        Buffdb__Kv__BeginTransactionRequest r =
            BUFFDB__KV__BEGIN_TRANSACTION_REQUEST__INIT;
        return pack(&r.base);
    }
    case BO_TXN_SET: {
        char kb[32];
        struct wvalue w;
        Buffdb__Kv__SetRequest r = BUFFDB__KV__SET_REQUEST__INIT;
        r.key.len = bench_key_format(key, kb);
        r.key.data = (uint8_t *)kb;
        r.value = write_value(ctx, &w);
        r._transaction_id_case =
            BUFFDB__KV__SET_REQUEST___TRANSACTION_ID_TRANSACTION_ID;
        r.transaction_id = tid;
        grpc_byte_buffer *bb = pack(&r.base);
        wvalue_done(&w);
        return bb;
    }
    case BO_TXN_COMMIT: {
        Buffdb__Kv__CommitTransactionRequest r =
            BUFFDB__KV__COMMIT_TRANSACTION_REQUEST__INIT;
        r.transaction_id = tid;
        return pack(&r.base);
    }
    case BO_TXN_ROLLBACK: {
        Buffdb__Kv__RollbackTransactionRequest r =
            BUFFDB__KV__ROLLBACK_TRANSACTION_REQUEST__INIT;
        r.transaction_id = tid;
        return pack(&r.base);
    }
    default:
        return NULL;
    }
}

/* len_ok - a value of n bytes is what was expected */
static int
len_ok(const struct bench_ctx *ctx, size_t n)
{
    return !ctx->check_len || n == ctx->o->value_size;
}

#define NULL_VALUE_URL "type.googleapis.com/google.protobuf.Value"

static int
check_buffdb(const struct bench_ctx *ctx, int op, const uint8_t *p, size_t n,
             uint64_t *id)
{
    int r = BR_BAD;

    switch (op) {
    case BO_GET: {
        Buffdb__Kv__GetResponse *m =
            buffdb__kv__get_response__unpack(NULL, n, p);
        if (m) {
            r = len_ok(ctx, m->value.len) ? BR_OK : BR_BAD;
            buffdb__kv__get_response__free_unpacked(m, NULL);
        }
        break;
    }
    case BO_SET: {
        Buffdb__Kv__SetResponse *m =
            buffdb__kv__set_response__unpack(NULL, n, p);
        if (m) {
            r = m->key.len > 0 ? BR_OK : BR_BAD;
            buffdb__kv__set_response__free_unpacked(m, NULL);
        }
        break;
    }
    case BO_DELETE: {
        Buffdb__Kv__DeleteResponse *m =
            buffdb__kv__delete_response__unpack(NULL, n, p);
        if (m) {
            r = m->key.len > 0 ? BR_OK : BR_BAD;
            buffdb__kv__delete_response__free_unpacked(m, NULL);
        }
        break;
    }
    case BO_BLOB_STORE: {
        Buffdb__Blob__StoreResponse *m =
            buffdb__blob__store_response__unpack(NULL, n, p);
        if (m) {
            r = m->id > 0 ? BR_OK : BR_BAD;
            *id = m->id;
            buffdb__blob__store_response__free_unpacked(m, NULL);
        }
        break;
    }
    case BO_BLOB_GET: {
        Buffdb__Blob__GetResponse *m =
            buffdb__blob__get_response__unpack(NULL, n, p);
        if (m) {
            r = len_ok(ctx, m->bytes.len) ? BR_OK : BR_BAD;
            buffdb__blob__get_response__free_unpacked(m, NULL);
        }
        break;
    }
    case BO_QUERY: {
        Buffdb__Query__QueryResult *m =
            buffdb__query__query_result__unpack(NULL, n, p);
        if (m) {
            if (m->n_fields != 1)
                r = BR_BAD;
            else if (m->fields[0]->type_url.len == strlen(NULL_VALUE_URL) &&
                     memcmp(m->fields[0]->type_url.data, NULL_VALUE_URL,
                            strlen(NULL_VALUE_URL)) == 0)
                r = BR_MISS;
            else
                r = BR_OK;
            buffdb__query__query_result__free_unpacked(m, NULL);
        }
        break;
    }
    default:
        break;
    }
    return r;
}

static int
check_etcd(const struct bench_ctx *ctx, int op, const uint8_t *p, size_t n)
{
    int r = BR_BAD;

    if (op == BO_GET) {
        Etcdserverpb__RangeResponse *m =
            etcdserverpb__range_response__unpack(NULL, n, p);
        if (m) {
            if (m->n_kvs == 0)
                r = BR_MISS;
            else
                r = len_ok(ctx, m->kvs[0]->value.len) ? BR_OK : BR_BAD;
            etcdserverpb__range_response__free_unpacked(m, NULL);
        }
    } else if (op == BO_SET) {
        Etcdserverpb__PutResponse *m =
            etcdserverpb__put_response__unpack(NULL, n, p);
        if (m) {
            r = BR_OK;
            etcdserverpb__put_response__free_unpacked(m, NULL);
        }
    }
    return r;
}

/* readall - the bytes of bb in one slice (unref it); 0 if unreadable */
static int
readall(grpc_byte_buffer *bb, grpc_slice *s)
{
    grpc_byte_buffer_reader rd;

    if (!grpc_byte_buffer_reader_init(&rd, bb))
        return 0;
    *s = grpc_byte_buffer_reader_readall(&rd);
    grpc_byte_buffer_reader_destroy(&rd);
    return 1;
}

int
bench_check_txn(const struct bench_ctx *ctx, int op, grpc_byte_buffer *bb,
                char *id, size_t *idlen, char *err, size_t errcap)
{
    grpc_slice s;
    int r = BR_BAD;

    (void)ctx;
    if (errcap)
        err[0] = '\0';
    if (!readall(bb, &s))
        return BR_BAD;
    const uint8_t *p = GRPC_SLICE_START_PTR(s);
    size_t n = GRPC_SLICE_LENGTH(s);
    switch (op) {
    case BO_TXN_BEGIN: {
        Buffdb__Kv__BeginTransactionResponse *m =
            buffdb__kv__begin_transaction_response__unpack(NULL, n, p);
        if (m) {
            size_t l = m->transaction_id.len;
            if (l > 0 && l <= BENCH_TXN_ID_MAX) {
                memcpy(id, m->transaction_id.data, l);
                *idlen = l;
                r = BR_OK;
            }
            buffdb__kv__begin_transaction_response__free_unpacked(m, NULL);
        }
        break;
    }
    case BO_TXN_SET: {
        Buffdb__Kv__SetResponse *m =
            buffdb__kv__set_response__unpack(NULL, n, p);
        if (m) {
            r = m->key.len > 0 ? BR_OK : BR_BAD;
            buffdb__kv__set_response__free_unpacked(m, NULL);
        }
        break;
    }
    case BO_TXN_COMMIT: {
        Buffdb__Kv__CommitTransactionResponse *m =
            buffdb__kv__commit_transaction_response__unpack(NULL, n, p);
        if (m) {
            r = m->success ? BR_OK : BR_BAD;
            if (!m->success && errcap) {
                int has = m->_error_message_case ==
                              BUFFDB__KV__COMMIT_TRANSACTION_RESPONSE___ERROR_MESSAGE_ERROR_MESSAGE &&
                          m->error_message.data != NULL;
                snprintf(err, errcap, "%.*s",
                         has ? (int)m->error_message.len : 0,
                         has ? (const char *)m->error_message.data : "");
            }
            buffdb__kv__commit_transaction_response__free_unpacked(m, NULL);
        }
        break;
    }
    case BO_TXN_ROLLBACK: {
        Buffdb__Kv__RollbackTransactionResponse *m =
            buffdb__kv__rollback_transaction_response__unpack(NULL, n, p);
        if (m) {
            r = BR_OK;
            buffdb__kv__rollback_transaction_response__free_unpacked(m,
                                                                     NULL);
        }
        break;
    }
    default:
        break;
    }
    grpc_slice_unref(s);
    return r;
}

int
bench_check(const struct bench_ctx *ctx, int op, grpc_byte_buffer *bb,
            uint64_t *id)
{
    grpc_byte_buffer_reader rd;
    grpc_slice s;
    int r;

    if (ctx->o->target == BT_NULL) /* the echo: only its length matters */
        return grpc_byte_buffer_length(bb) == ctx->o->value_size ? BR_OK
                                                                 : BR_BAD;
    if (!grpc_byte_buffer_reader_init(&rd, bb))
        return BR_BAD;
    s = grpc_byte_buffer_reader_readall(&rd);
    grpc_byte_buffer_reader_destroy(&rd);
    const uint8_t *p = GRPC_SLICE_START_PTR(s);
    size_t n = GRPC_SLICE_LENGTH(s);
    switch (ctx->o->target) {
    case BT_BUFFDB:
        r = check_buffdb(ctx, op, p, n, id);
        break;
    case BT_ETCD:
        r = check_etcd(ctx, op, p, n);
        break;
    default:
        r = BR_BAD;
        break;
    }
    grpc_slice_unref(s);
    return r;
}
