/*
 * handlers_blob.c - the buffdb.blob.Blob service
 *
 * Ids travel as uint64; anything above INT64_MAX is INVALID_ARGUMENT (the
 * store's rowids are signed).  A Get whose blob is larger than the message
 * limit fails RESOURCE_EXHAUSTED before anything is read into memory.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "blob.pb-c.h"
#include "common/cmp.h"
#include "worker/handlers.h"
#include "worker/worker.h"

#define BAD_MESSAGE(c, type)                                                   \
    call_fail((c), GRPC_STATUS_INVALID_ARGUMENT, "malformed " type " message")

static int
check_id(struct call *c, uint64_t id)
{
    if (id <= BFDB_BLOB_ID_MAX)
        return 1;
    call_fail(c, GRPC_STATUS_INVALID_ARGUMENT,
              "blob id %" PRIu64 " is out of range (ids run from 1 to %" PRIu64
              ")", id, BFDB_BLOB_ID_MAX);
    return 0;
}

/* blob_lock - the lock of blob id for a write outside a transaction, so it
 * waits for (and never slips past) a transaction that wrote the blob */
static int
blob_lock(struct call *c, uint64_t id)
{
    char name[9], what[64];

    h_blob_name(id, name);
    snprintf(what, sizeof(what), "blob %" PRIu64, id);
    return h_lock(c, NULL, name, sizeof(name), what);
}

static void
blob_unlock(struct call *c, uint64_t id)
{
    char name[9];

    h_blob_name(id, name);
    h_unlock(c, name, sizeof(name));
}

/* blob_txn_write - stage op on blob id in the transaction the request
 * names, under the transaction's lock of the blob; 0 or -1 (call failed).
 * For a store, *id receives the id reserved for it. */
static int
blob_txn_write(struct call *c, const ProtobufCBinaryData *txn_id, int op,
               uint64_t *id, int has_data, const ProtobufCBinaryData *data,
               int upd_meta, const char *meta, size_t mlen)
{
    struct worker *w = c->w;
    char name[9], what[64];
    int rc = -1;

    struct bfdb_txn_slot *t = h_txn_enter(c, txn_id, 1);
    if (t == NULL)
        return -1;
    if (op == BFDB_TXN_STORE) {
        int src = bfdb_txn_blob_reserve(w->blob, id);
        if (src != BFDB_OK) {
            h_store_fail(c, src, bfdb_store_errmsg(w->blob));
            goto out;
        }
    }
    h_blob_name(*id, name);
    snprintf(what, sizeof(what), "blob %" PRIu64, *id);
    if (h_lock(c, t, name, sizeof(name), what) != 0)
        goto out;
    int src = bfdb_txn_blob_stage(w->blob, t->num, op, *id, has_data,
                                  has_data ? data->data : NULL,
                                  has_data ? data->len : 0, upd_meta, meta,
                                  mlen);
    if (src != BFDB_OK)
        h_store_fail(c, src, bfdb_store_errmsg(w->blob));
    else
        __atomic_fetch_add(&t->blob_ops, 1, __ATOMIC_SEQ_CST);
    if (h_txn_recheck(c, t, src == BFDB_OK) == 0 && src == BFDB_OK)
        rc = 0;
out:
    h_txn_leave(c, t);
    return rc;
}

static void
blob_get(struct call *c, const uint8_t *data, size_t len)
{
    Buffdb__Blob__GetRequest *req =
        buffdb__blob__get_request__unpack(NULL, len, data);
    bfdb_store *s = c->w->blob;
    void *bytes;
    size_t blen, mlen;
    char *meta;

    if (req == NULL) {
        BAD_MESSAGE(c, "GetRequest");
        return;
    }
    if (check_id(c, req->id)) {
        /* leave room for the framing around the data */
        uint64_t max = c->w->cfg->max_message_size;
        size_t limit = max > 64 ? (size_t)(max - 64) : 0;
        int rc;
        if (req->_transaction_id_case != 0) {
            struct bfdb_txn_slot *t =
                h_txn_enter(c, &req->transaction_id, 0);
            if (t == NULL)
                goto out;
            rc = bfdb_txn_blob_read(s, t->num, req->id, limit, &bytes, &blen,
                                    &meta, &mlen);
            h_txn_leave(c, t);
        } else {
            rc = bfdb_blob_get(s, req->id, limit, &bytes, &blen, &meta,
                               &mlen);
        }
        if (rc == BFDB_ENOTFOUND) {
            call_fail(c, GRPC_STATUS_NOT_FOUND, "blob %" PRIu64 " not found",
                      req->id);
        } else if (rc == BFDB_ETOOBIG) {
            call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
                      "%s; raise max_message_size or read it with `buffdb "
                      "blob get`", bfdb_store_errmsg(s));
        } else if (rc != BFDB_OK) {
            h_store_fail(c, rc, bfdb_store_errmsg(s));
        } else {
            Buffdb__Blob__GetResponse resp = BUFFDB__BLOB__GET_RESPONSE__INIT;
            resp.bytes.data = bytes;
            resp.bytes.len = blen;
            if (meta != NULL) {
                resp._metadata_case =
                    BUFFDB__BLOB__GET_RESPONSE___METADATA_METADATA;
                resp.metadata.data = (uint8_t *)meta;
                resp.metadata.len = mlen;
            }
            call_reply(c, &resp.base);
            free(bytes);
            free(meta);
        }
    }
out:
    buffdb__blob__get_request__free_unpacked(req, NULL);
}

static void
blob_store(struct call *c, const uint8_t *data, size_t len)
{
    Buffdb__Blob__StoreRequest *req =
        buffdb__blob__store_request__unpack(NULL, len, data);
    bfdb_store *s = c->w->blob;
    int has_meta;
    uint64_t id;

    if (req == NULL) {
        BAD_MESSAGE(c, "StoreRequest");
        return;
    }
    has_meta = req->_metadata_case != 0;
    if (!has_meta || h_check_utf8(c, &req->metadata, "metadata")) {
        const char *meta =
            has_meta ? (req->metadata.len ? (const char *)req->metadata.data
                                          : "")
                     : NULL;
        size_t mlen = has_meta ? req->metadata.len : 0;
        int rc = BFDB_OK;
        if (req->_transaction_id_case != 0) {
            if (blob_txn_write(c, &req->transaction_id, BFDB_TXN_STORE, &id, 1,
                               &req->bytes, 1, meta, mlen) != 0)
                rc = -1;
        } else {
            rc = bfdb_blob_store(s, req->bytes.data, req->bytes.len, meta,
                                 mlen, &id);
            if (rc != BFDB_OK)
                h_store_fail(c, rc, bfdb_store_errmsg(s));
        }
        if (rc == BFDB_OK) {
            Buffdb__Blob__StoreResponse resp =
                BUFFDB__BLOB__STORE_RESPONSE__INIT;
            resp.id = id;
            call_reply(c, &resp.base);
        }
    }
    buffdb__blob__store_request__free_unpacked(req, NULL);
}

static void
blob_update(struct call *c, const uint8_t *data, size_t len)
{
    Buffdb__Blob__UpdateRequest *req =
        buffdb__blob__update_request__unpack(NULL, len, data);
    bfdb_store *s = c->w->blob;

    if (req == NULL) {
        BAD_MESSAGE(c, "UpdateRequest");
        return;
    }
    int has_data = req->_bytes_case != 0;
    int has_meta = req->_metadata_case != 0;
    int upd_meta = req->should_update_metadata != 0;
    if (check_id(c, req->id) &&
        (!has_meta || !upd_meta ||
         h_check_utf8(c, &req->metadata, "metadata"))) {
        const char *meta = NULL;
        size_t mlen = 0;
        uint64_t id = req->id;
        int rc = BFDB_OK;
        if (upd_meta && has_meta) {
            meta = req->metadata.len ? (const char *)req->metadata.data : "";
            mlen = req->metadata.len;
        }
        if (req->_transaction_id_case != 0) {
            if (blob_txn_write(c, &req->transaction_id, BFDB_TXN_UPDATE, &id,
                               has_data, &req->bytes, upd_meta, meta,
                               mlen) != 0)
                rc = -1;
        } else if (blob_lock(c, id) != 0) {
            rc = -1;
        } else {
            rc = bfdb_blob_update(s, id, has_data,
                                  has_data ? req->bytes.data : NULL,
                                  has_data ? req->bytes.len : 0, upd_meta,
                                  meta, mlen, NULL);
            blob_unlock(c, id);
            if (rc != BFDB_OK)
                h_store_fail(c, rc, bfdb_store_errmsg(s));
        }
        if (rc == BFDB_OK) {
            Buffdb__Blob__UpdateResponse resp =
                BUFFDB__BLOB__UPDATE_RESPONSE__INIT;
            resp.id = req->id;
            call_reply(c, &resp.base);
        }
    }
    buffdb__blob__update_request__free_unpacked(req, NULL);
}

static void
blob_delete(struct call *c, const uint8_t *data, size_t len)
{
    Buffdb__Blob__DeleteRequest *req =
        buffdb__blob__delete_request__unpack(NULL, len, data);
    bfdb_store *s = c->w->blob;

    if (req == NULL) {
        BAD_MESSAGE(c, "DeleteRequest");
        return;
    }
    if (check_id(c, req->id)) {
        uint64_t id = req->id;
        int rc = BFDB_OK;
        if (req->_transaction_id_case != 0) {
            if (blob_txn_write(c, &req->transaction_id, BFDB_TXN_DELETE, &id,
                               0, NULL, 0, NULL, 0) != 0)
                rc = -1;
        } else if (blob_lock(c, id) != 0) {
            rc = -1;
        } else {
            rc = bfdb_blob_delete(s, id, NULL);
            blob_unlock(c, id);
            if (rc != BFDB_OK)
                h_store_fail(c, rc, bfdb_store_errmsg(s));
        }
        if (rc == BFDB_OK) {
            Buffdb__Blob__DeleteResponse resp =
                BUFFDB__BLOB__DELETE_RESPONSE__INIT;
            resp.id = req->id;
            call_reply(c, &resp.base);
        }
    }
    buffdb__blob__delete_request__free_unpacked(req, NULL);
}

static void
blob_cmp_request(struct call *c, const uint8_t *data, size_t len, int mode)
{
    /* EqDataRequest and NotEqDataRequest have the same shape: id = 1 */
    Buffdb__Blob__EqDataRequest *req =
        buffdb__blob__eq_data_request__unpack(NULL, len, data);
    uint8_t d[BFDB_DIGEST_LEN];

    if (req == NULL) {
        BAD_MESSAGE(c, "EqDataRequest");
        return;
    }
    if (c->state == NULL) {
        c->state = calloc(1, sizeof(struct bfdb_cmp));
        if (c->state == NULL) {
            call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
            goto out;
        }
        bfdb_cmp_init(c->state, mode);
    }
    if (!check_id(c, req->id))
        goto out;
    int rc = bfdb_blob_digest(c->w->blob, req->id, d);
    if (rc == BFDB_ENOTFOUND)
        call_fail(c, GRPC_STATUS_NOT_FOUND, "blob %" PRIu64 " not found",
                  req->id);
    else if (rc != BFDB_OK)
        h_store_fail(c, rc, bfdb_store_errmsg(c->w->blob));
    else if (bfdb_cmp_add(c->state, d))
        h_cmp_reply(c, 0);
out:
    buffdb__blob__eq_data_request__free_unpacked(req, NULL);
}

static void
blob_eq_data(struct call *c, const uint8_t *data, size_t len)
{
    blob_cmp_request(c, data, len, BFDB_CMP_EQ);
}

static void
blob_not_eq_data(struct call *c, const uint8_t *data, size_t len)
{
    blob_cmp_request(c, data, len, BFDB_CMP_NOT_EQ);
}

const struct bfdb_method bfdb_method_blob_get = {
    "/buffdb.blob.Blob/Get", CALL_BIDI, blob_get, NULL, NULL, NULL};
const struct bfdb_method bfdb_method_blob_store = {
    "/buffdb.blob.Blob/Store", CALL_BIDI, blob_store, NULL, NULL, NULL};
const struct bfdb_method bfdb_method_blob_update = {
    "/buffdb.blob.Blob/Update", CALL_BIDI, blob_update, NULL, NULL, NULL};
const struct bfdb_method bfdb_method_blob_delete = {
    "/buffdb.blob.Blob/Delete", CALL_BIDI, blob_delete, NULL, NULL, NULL};
const struct bfdb_method bfdb_method_blob_eq_data = {
    "/buffdb.blob.Blob/EqData", CALL_CLIENT_STREAM, blob_eq_data, h_cmp_end,
    NULL, h_cmp_cleanup};
const struct bfdb_method bfdb_method_blob_not_eq_data = {
    "/buffdb.blob.Blob/NotEqData", CALL_CLIENT_STREAM, blob_not_eq_data,
    h_cmp_end, NULL, h_cmp_cleanup};
