/*
 * handlers_query.c - the buffdb.query.Query service (upstream never
 * serves it)
 *
 * Query answers each RawQuery with one QueryResult per row, one Any per
 * column: Int64Value, DoubleValue, StringValue or BytesValue for the four
 * SQLite types, and google.protobuf.Value{null_value} for NULL.  Rows are
 * produced as the client reads them (the call's pump), from a SQLite
 * connection of the call's own (taken from a small per-worker pool): a
 * statement left open on the worker's shared connection would hold its
 * transaction open and delay other calls' commits.  Execute runs each statement to completion on the
 * worker's connection and answers RowsChanged.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "google/protobuf/any.pb-c.h"
#include "google/protobuf/struct.pb-c.h"
#include "google/protobuf/wrappers.pb-c.h"
#include "query.pb-c.h"
#include "worker/handlers.h"
#include "worker/worker.h"

struct query_state {
    bfdb_store *conn[2]; /* this call's connections, by target */
    bfdb_query *q;
    int target;
    int global;          /* a kv write: the cache's raw-write protocol runs */
};

static const char *const type_urls[] = {
    [BFDB_COL_INTEGER] = "type.googleapis.com/google.protobuf.Int64Value",
    [BFDB_COL_REAL] = "type.googleapis.com/google.protobuf.DoubleValue",
    [BFDB_COL_TEXT] = "type.googleapis.com/google.protobuf.StringValue",
    [BFDB_COL_BLOB] = "type.googleapis.com/google.protobuf.BytesValue",
    [BFDB_COL_NULL] = "type.googleapis.com/google.protobuf.Value",
};

/* raw_status - SQL the client got wrong is INVALID_ARGUMENT */
static grpc_status_code
raw_status(int err)
{
    switch (err) {
    case BFDB_ESQL:
    case BFDB_EINVAL:
    case BFDB_EPERM:
    case BFDB_ECONSTRAINT:
        return GRPC_STATUS_INVALID_ARGUMENT;
    default:
        return call_store_status(err);
    }
}

/* parse_raw - decode a RawQuery and check it; NULL after failing the call */
static Buffdb__Query__RawQuery *
parse_raw(struct call *c, const uint8_t *data, size_t len)
{
    Buffdb__Query__RawQuery *req =
        buffdb__query__raw_query__unpack(NULL, len, data);

    if (req == NULL) {
        call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "malformed RawQuery message");
        return NULL;
    }
    if ((int)req->target != BUFFDB__QUERY__TARGET_STORE__KV &&
        (int)req->target != BUFFDB__QUERY__TARGET_STORE__BLOB) {
        call_fail(c, GRPC_STATUS_INVALID_ARGUMENT,
                  "unknown target store %d (KV = 0, BLOB = 1)",
                  (int)req->target);
    } else if (h_check_utf8(c, &req->query, "query")) {
        return req;
    }
    buffdb__query__raw_query__free_unpacked(req, NULL);
    return NULL;
}

/* ---- Query --------------------------------------------------------------- */

static bfdb_store *
query_conn(struct call *c, struct query_state *st, int target)
{
    if (st->conn[target] == NULL)
        st->conn[target] = h_conn_take(c, target);
    return st->conn[target];
}

static void
query_request(struct call *c, const uint8_t *data, size_t len)
{
    struct query_state *st = c->state;
    Buffdb__Query__RawQuery *req = parse_raw(c, data, len);

    if (req == NULL)
        return;
    if (st == NULL) {
        st = c->state = calloc(1, sizeof(*st));
        if (st == NULL) {
            call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
            goto out;
        }
    }
    bfdb_store *s = query_conn(c, st, (int)req->target);
    if (s == NULL)
        goto out;
    int rc = bfdb_query_open(s, (const char *)req->query.data, req->query.len,
                             &st->q);
    if (rc != BFDB_OK) {
        call_fail(c, raw_status(rc), "%s", bfdb_store_errmsg(s));
        goto out;
    }
    st->target = (int)req->target;
    if (st->target == BUFFDB__QUERY__TARGET_STORE__KV &&
        !bfdb_query_readonly(st->q)) {
        bfdb_cache_global_begin(c->w->shm);
        st->global = 1;
    }
    c->generating = 1;
out:
    buffdb__query__raw_query__free_unpacked(req, NULL);
}

/* pack_column - the Any for one column of the current row; *buf receives
 * the packed wrapper, which the caller frees */
static void
pack_column(bfdb_query *q, int col, Google__Protobuf__Any *any, uint8_t **buf)
{
    int type = bfdb_query_type(q, col);
    ProtobufCMessage *m;
    Google__Protobuf__Int64Value iv = GOOGLE__PROTOBUF__INT64_VALUE__INIT;
    Google__Protobuf__DoubleValue dv = GOOGLE__PROTOBUF__DOUBLE_VALUE__INIT;
    Google__Protobuf__StringValue sv = GOOGLE__PROTOBUF__STRING_VALUE__INIT;
    Google__Protobuf__BytesValue bv = GOOGLE__PROTOBUF__BYTES_VALUE__INIT;
    Google__Protobuf__Value nv = GOOGLE__PROTOBUF__VALUE__INIT;
    size_t n;

    switch (type) {
    case BFDB_COL_INTEGER:
        iv.value = bfdb_query_int(q, col);
        m = &iv.base;
        break;
    case BFDB_COL_REAL:
        dv.value = bfdb_query_real(q, col);
        m = &dv.base;
        break;
    case BFDB_COL_TEXT:
        sv.value.data = (uint8_t *)bfdb_query_bytes(q, col, &n);
        sv.value.len = n;
        m = &sv.base;
        break;
    case BFDB_COL_BLOB:
        bv.value.data = (uint8_t *)bfdb_query_bytes(q, col, &n);
        bv.value.len = n;
        m = &bv.base;
        break;
    default:
        type = BFDB_COL_NULL;
        nv.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE;
        nv.null_value = GOOGLE__PROTOBUF__NULL_VALUE__NULL_VALUE;
        m = &nv.base;
        break;
    }
    size_t size = protobuf_c_message_get_packed_size(m);
    *buf = malloc(size ? size : 1);
    if (*buf == NULL)
        abort(); /* bounded by the row, itself bounded by SQLite */
    protobuf_c_message_pack(m, *buf);
    any->type_url.data = (uint8_t *)type_urls[type];
    any->type_url.len = strlen(type_urls[type]);
    any->value.data = *buf;
    any->value.len = size;
}

static void
query_close(struct call *c, struct query_state *st)
{
    if (st->q) {
        bfdb_query_close(st->q); /* autocommit: this commits a write */
        st->q = NULL;
    }
    if (st->global) {
        bfdb_cache_global_end(c->w->shm);
        st->global = 0;
    }
}

static int
query_pump(struct call *c)
{
    struct query_state *st = c->state;
    int r = bfdb_query_next(st->q);

    if (r == 0) {
        query_close(c, st);
        return 0;
    }
    if (r < 0) {
        call_fail(c, raw_status(r), "%s",
                  bfdb_store_errmsg(st->conn[st->target]));
        query_close(c, st);
        return 0;
    }
    int ncol = bfdb_query_columns(st->q);
    Google__Protobuf__Any *anys = calloc((size_t)ncol + 1, sizeof(*anys));
    Google__Protobuf__Any **ptrs = calloc((size_t)ncol + 1, sizeof(*ptrs));
    uint8_t **bufs = calloc((size_t)ncol + 1, sizeof(*bufs));
    if (anys == NULL || ptrs == NULL || bufs == NULL)
        abort();
    for (int i = 0; i < ncol; i++) {
        google__protobuf__any__init(&anys[i]);
        pack_column(st->q, i, &anys[i], &bufs[i]);
        ptrs[i] = &anys[i];
    }
    Buffdb__Query__QueryResult res = BUFFDB__QUERY__QUERY_RESULT__INIT;
    res.n_fields = (size_t)ncol;
    res.fields = ptrs;
    call_reply(c, &res.base);
    for (int i = 0; i < ncol; i++)
        free(bufs[i]);
    free(bufs);
    free(ptrs);
    free(anys);
    return 1;
}

static void
query_cleanup(struct call *c)
{
    struct query_state *st = c->state;

    if (st == NULL)
        return;
    query_close(c, st);
    for (int t = 0; t < 2; t++)
        h_conn_give(c->w, t, st->conn[t]);
    free(st);
    c->state = NULL;
}

/* ---- Execute ------------------------------------------------------------- */

static void
global_begin(void *shm)
{
    bfdb_cache_global_begin(shm);
}

static void
global_end(void *shm)
{
    bfdb_cache_global_end(shm);
}

static void
execute_request(struct call *c, const uint8_t *data, size_t len)
{
    Buffdb__Query__RawQuery *req = parse_raw(c, data, len);
    uint64_t changes;

    if (req == NULL)
        return;
    bfdb_store *s = req->target ? c->w->blob : c->w->kv;
    int rc = bfdb_query_execute_hooked(
        s, (const char *)req->query.data, req->query.len, &changes,
        req->target ? NULL : global_begin, req->target ? NULL : global_end,
        c->w->shm);
    if (rc != BFDB_OK) {
        call_fail(c, raw_status(rc), "%s", bfdb_store_errmsg(s));
    } else {
        Buffdb__Query__RowsChanged resp = BUFFDB__QUERY__ROWS_CHANGED__INIT;
        resp.rows_changed = changes;
        call_reply(c, &resp.base);
    }
    buffdb__query__raw_query__free_unpacked(req, NULL);
}

const struct bfdb_method bfdb_method_query_query = {
    "/buffdb.query.Query/Query", CALL_BIDI, query_request, NULL, query_pump,
    query_cleanup};
const struct bfdb_method bfdb_method_query_execute = {
    "/buffdb.query.Query/Execute", CALL_BIDI, execute_request, NULL, NULL,
    NULL};
