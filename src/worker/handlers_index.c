/*
 * handlers_index.c - the buffdb.index.Index service (proto/index.proto)
 *
 * Definitions and entries live in the kv store file (src/store/index.c):
 * CreateIndex, DropIndex and ListIndexes run on the worker's connection;
 * Lookup and Range stream their entries from a pooled connection of the
 * call's own (as Query does), one IndexEntry per pump, so a long result
 * neither sits in memory nor holds the worker's connection.  No handler
 * here changes a kv row, so none takes part in the cache protocol.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "index.pb-c.h"
#include "worker/handlers.h"
#include "worker/worker.h"

struct index_state {
    bfdb_store *conn;
    bfdb_index_iter *it;
};

/* c_string - a NUL-terminated copy of a string field; NULL after failing
 * the call (not UTF-8, an embedded NUL, out of memory) */
static char *
c_string(struct call *c, const ProtobufCBinaryData *b, const char *field)
{
    if (!h_check_utf8(c, b, field))
        return NULL;
    if (b->len && memchr(b->data, '\0', b->len) != NULL) {
        call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "%s holds a NUL byte",
                  field);
        return NULL;
    }
    char *s = malloc(b->len + 1);
    if (s == NULL) {
        call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return NULL;
    }
    if (b->len)
        memcpy(s, b->data, b->len);
    s[b->len] = '\0';
    return s;
}

/* ---- CreateIndex, DropIndex, ListIndexes ------------------------------- */

static void
create_request(struct call *c, const uint8_t *data, size_t len)
{
    Buffdb__Index__CreateIndexRequest *req =
        buffdb__index__create_index_request__unpack(NULL, len, data);
    struct bfdb_index_spec sp = {0};
    uint64_t n;

    if (req == NULL) {
        call_fail(c, GRPC_STATUS_INVALID_ARGUMENT,
                  "malformed CreateIndexRequest message");
        return;
    }
    Buffdb__Index__IndexSpec *in = req->spec;
    if (in == NULL) {
        call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "spec is missing");
        goto out;
    }
    if ((sp.name = c_string(c, &in->name, "spec.name")) == NULL ||
        (sp.json_path = c_string(c, &in->json_path, "spec.json_path")) ==
            NULL ||
        !h_check_utf8(c, &in->key_prefix, "spec.key_prefix"))
        goto out;
    sp.type = (int)in->type;
    sp.unique = in->unique != 0;
    sp.key_prefix = (char *)in->key_prefix.data;
    sp.prefix_len = in->key_prefix.len;
    sp.value_type = (int)in->value_type;
    int rc = bfdb_index_create(c->w->kv, &sp, &n);
    if (rc != BFDB_OK) {
        h_store_fail(c, rc, bfdb_store_errmsg(c->w->kv));
    } else {
        Buffdb__Index__CreateIndexResponse resp =
            BUFFDB__INDEX__CREATE_INDEX_RESPONSE__INIT;
        resp.indexed_keys = n;
        call_reply(c, &resp.base);
    }
out:
    free(sp.name);
    free(sp.json_path);
    buffdb__index__create_index_request__free_unpacked(req, NULL);
}

static void
drop_request(struct call *c, const uint8_t *data, size_t len)
{
    Buffdb__Index__DropIndexRequest *req =
        buffdb__index__drop_index_request__unpack(NULL, len, data);
    char *name;

    if (req == NULL) {
        call_fail(c, GRPC_STATUS_INVALID_ARGUMENT,
                  "malformed DropIndexRequest message");
        return;
    }
    if ((name = c_string(c, &req->name, "name")) != NULL) {
        int rc = bfdb_index_drop(c->w->kv, name);
        if (rc != BFDB_OK) {
            h_store_fail(c, rc, bfdb_store_errmsg(c->w->kv));
        } else {
            Buffdb__Index__DropIndexResponse resp =
                BUFFDB__INDEX__DROP_INDEX_RESPONSE__INIT;
            call_reply(c, &resp.base);
        }
        free(name);
    }
    buffdb__index__drop_index_request__free_unpacked(req, NULL);
}

static void
list_request(struct call *c, const uint8_t *data, size_t len)
{
    Buffdb__Index__ListIndexesRequest *req =
        buffdb__index__list_indexes_request__unpack(NULL, len, data);
    struct bfdb_index_spec *v;
    size_t n;

    if (req == NULL) {
        call_fail(c, GRPC_STATUS_INVALID_ARGUMENT,
                  "malformed ListIndexesRequest message");
        return;
    }
    buffdb__index__list_indexes_request__free_unpacked(req, NULL);
    int rc = bfdb_index_list(c->w->kv, &v, &n);
    if (rc != BFDB_OK) {
        h_store_fail(c, rc, bfdb_store_errmsg(c->w->kv));
        return;
    }
    Buffdb__Index__IndexSpec *specs = calloc(n ? n : 1, sizeof(*specs));
    Buffdb__Index__IndexSpec **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
    if (specs == NULL || ptrs == NULL) {
        call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        buffdb__index__index_spec__init(&specs[i]);
        specs[i].name.data = (uint8_t *)v[i].name;
        specs[i].name.len = strlen(v[i].name);
        specs[i].type = (Buffdb__Index__IndexType)v[i].type;
        specs[i].unique = v[i].unique != 0;
        specs[i].key_prefix.data = (uint8_t *)v[i].key_prefix;
        specs[i].key_prefix.len = v[i].prefix_len;
        specs[i].json_path.data = (uint8_t *)v[i].json_path;
        specs[i].json_path.len = strlen(v[i].json_path);
        specs[i].value_type = (Buffdb__Index__ValueType)v[i].value_type;
        ptrs[i] = &specs[i];
    }
    Buffdb__Index__ListIndexesResponse resp =
        BUFFDB__INDEX__LIST_INDEXES_RESPONSE__INIT;
    resp.n_indexes = n;
    resp.indexes = ptrs;
    call_reply(c, &resp.base);
out:
    free(ptrs);
    free(specs);
    bfdb_index_list_free(v, n);
}

/* ---- Lookup, Range ------------------------------------------------------- */

static struct index_state *
stream_state(struct call *c)
{
    struct index_state *st = c->state;

    if (st == NULL && (st = c->state = calloc(1, sizeof(*st))) == NULL) {
        call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return NULL;
    }
    if (st->it != NULL) { /* a second request on the stream: start over */
        bfdb_index_iter_close(st->it);
        st->it = NULL;
    }
    if (st->conn == NULL)
        st->conn = h_conn_take(c, 0);
    return st->conn ? st : NULL;
}

/* stream_start - the iterator opened (rc) or why not */
static void
stream_start(struct call *c, struct index_state *st, int rc)
{
    if (rc != BFDB_OK)
        h_store_fail(c, rc, bfdb_store_errmsg(st->conn));
    else
        c->generating = 1;
}

static void
lookup_request(struct call *c, const uint8_t *data, size_t len)
{
    Buffdb__Index__LookupRequest *req =
        buffdb__index__lookup_request__unpack(NULL, len, data);
    struct index_state *st;
    char *name = NULL;

    if (req == NULL) {
        call_fail(c, GRPC_STATUS_INVALID_ARGUMENT,
                  "malformed LookupRequest message");
        return;
    }
    if ((name = c_string(c, &req->name, "name")) != NULL &&
        h_check_utf8(c, &req->value, "value") &&
        (st = stream_state(c)) != NULL)
        stream_start(c, st,
                     bfdb_index_lookup(st->conn, name,
                                       (const char *)req->value.data,
                                       req->value.len, req->limit, &st->it));
    free(name);
    buffdb__index__lookup_request__free_unpacked(req, NULL);
}

static void
range_request(struct call *c, const uint8_t *data, size_t len)
{
    Buffdb__Index__RangeRequest *req =
        buffdb__index__range_request__unpack(NULL, len, data);
    struct index_state *st;
    char *name = NULL;

    if (req == NULL) {
        call_fail(c, GRPC_STATUS_INVALID_ARGUMENT,
                  "malformed RangeRequest message");
        return;
    }
    int has_lo = req->_lower_case == BUFFDB__INDEX__RANGE_REQUEST___LOWER_LOWER;
    int has_hi = req->_upper_case == BUFFDB__INDEX__RANGE_REQUEST___UPPER_UPPER;
    if ((name = c_string(c, &req->name, "name")) != NULL &&
        (!has_lo || h_check_utf8(c, &req->lower, "lower")) &&
        (!has_hi || h_check_utf8(c, &req->upper, "upper")) &&
        (st = stream_state(c)) != NULL)
        stream_start(
            c, st,
            bfdb_index_range(st->conn, name,
                             has_lo ? (const char *)req->lower.data : NULL,
                             has_lo ? req->lower.len : 0,
                             has_hi ? (const char *)req->upper.data : NULL,
                             has_hi ? req->upper.len : 0, req->limit,
                             &st->it));
    free(name);
    buffdb__index__range_request__free_unpacked(req, NULL);
}

static int
stream_pump(struct call *c)
{
    struct index_state *st = c->state;
    const char *k, *v;
    size_t kl, vl;

    int r = bfdb_index_next(st->it, &k, &kl, &v, &vl);
    if (r <= 0) {
        if (r < 0)
            h_store_fail(c, r, bfdb_store_errmsg(st->conn));
        bfdb_index_iter_close(st->it);
        st->it = NULL;
        return 0;
    }
    Buffdb__Index__IndexEntry e = BUFFDB__INDEX__INDEX_ENTRY__INIT;
    e.key.data = (uint8_t *)k;
    e.key.len = kl;
    e.value.data = (uint8_t *)v;
    e.value.len = vl;
    call_reply(c, &e.base);
    return 1;
}

static void
stream_cleanup(struct call *c)
{
    struct index_state *st = c->state;

    if (st == NULL)
        return;
    bfdb_index_iter_close(st->it);
    h_conn_give(c->w, 0, st->conn);
    free(st);
    c->state = NULL;
}

const struct bfdb_method bfdb_method_index_create = {
    "/buffdb.index.Index/CreateIndex", CALL_BIDI, create_request, NULL, NULL,
    NULL};
const struct bfdb_method bfdb_method_index_drop = {
    "/buffdb.index.Index/DropIndex", CALL_BIDI, drop_request, NULL, NULL,
    NULL};
const struct bfdb_method bfdb_method_index_list = {
    "/buffdb.index.Index/ListIndexes", CALL_BIDI, list_request, NULL, NULL,
    NULL};
const struct bfdb_method bfdb_method_index_lookup = {
    "/buffdb.index.Index/Lookup", CALL_BIDI, lookup_request, NULL,
    stream_pump, stream_cleanup};
const struct bfdb_method bfdb_method_index_range = {
    "/buffdb.index.Index/Range", CALL_BIDI, range_request, NULL, stream_pump,
    stream_cleanup};
