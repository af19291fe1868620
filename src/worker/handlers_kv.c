/*
 * handlers_kv.c - the buffdb.kv.Kv service
 *
 * Get/Set/Delete answer each request in order; Eq/NotEq read keys until
 * the answer is known (false as soon as it is) or the client half-closes.
 * Requests naming a transaction_id run inside it (handlers_txn.c); the
 * transaction RPCs themselves are in handlers_txn.c.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cmp.h"
#include "common/util.h"
#include "kv.pb-c.h"
#include "worker/handlers.h"
#include "worker/worker.h"

#define BAD_MESSAGE(c, type)                                                   \
    call_fail((c), GRPC_STATUS_INVALID_ARGUMENT, "malformed " type " message")

/* kv_lookup - the value of key: from the cache, else from SQLite (filling
 * the cache under the coherence protocol).  Returns BFDB_OK with a
 * malloc'd *val, BFDB_ENOTFOUND, or another store error. */
static int
kv_lookup(struct worker *w, const ProtobufCBinaryData *key, char **val,
          size_t *vlen)
{
    const void *cv;
    size_t cl;
    struct bfdb_cache_snap snap;

    int hit = bfdb_cache_lookup(w->cache, key->data, key->len, &cv, &cl);
    if (hit == BFDB_CACHE_HIT) {
        *val = malloc(cl + 1);
        if (*val != NULL) {
            memcpy(*val, cv, cl);
            (*val)[cl] = '\0';
            *vlen = cl;
        }
        bfdb_cache_lookup_done(w->cache);
        return *val != NULL ? BFDB_OK : BFDB_ENOMEM;
    }
    bfdb_cache_lookup_done(w->cache);
    if (hit == BFDB_CACHE_ABSENT)
        return BFDB_ENOTFOUND;

    bfdb_cache_snapshot(w->cache, key->data, key->len, &snap);
    int rc = bfdb_kv_get(w->kv, (const char *)key->data, key->len, val,
                         vlen);
    if (rc == BFDB_OK)
        bfdb_cache_fill(w->cache, key->data, key->len, &snap, *val, *vlen);
    else if (rc == BFDB_ENOTFOUND)
        bfdb_cache_fill(w->cache, key->data, key->len, &snap, NULL, 0);
    return rc;
}

static void
kv_get(struct call *c, const uint8_t *data, size_t len)
{
    Buffdb__Kv__GetRequest *req =
        buffdb__kv__get_request__unpack(NULL, len, data);
    char kbuf[160];
    char *v;
    size_t vlen;

    if (req == NULL) {
        BAD_MESSAGE(c, "GetRequest");
        return;
    }
    if (h_check_utf8(c, &req->key, "key")) {
        struct bfdb_txn_slot *t = NULL;
        int rc = BFDB_OK, staged = 0;
        if (req->_transaction_id_case != 0) {
            t = h_txn_enter(c, &req->transaction_id, 0);
            if (t == NULL)
                goto out;
            /* its own writes first, then what is committed */
            rc = bfdb_txn_kv_read(c->w->kv, t->num,
                                  (const char *)req->key.data, req->key.len,
                                  &staged, &v, &vlen);
            h_txn_leave(c, t);
        }
        if (!staged)
            rc = kv_lookup(c->w, &req->key, &v, &vlen);
        if (rc == BFDB_ENOTFOUND) {
            call_fail(c, GRPC_STATUS_NOT_FOUND, "key not found: %s",
                      h_printable(&req->key, kbuf, sizeof(kbuf)));
        } else if (rc == BFDB_ENOMEM) {
            call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        } else if (rc != BFDB_OK) {
            h_store_fail(c, rc, bfdb_store_errmsg(c->w->kv));
        } else {
            Buffdb__Kv__GetResponse resp = BUFFDB__KV__GET_RESPONSE__INIT;
            resp.value.data = (uint8_t *)v;
            resp.value.len = vlen;
            call_reply(c, &resp.base);
            free(v);
        }
    }
out:
    buffdb__kv__get_request__free_unpacked(req, NULL);
}

/*
 * kv_write - set (val != NULL) or delete key: take the key's lock (so a
 * write never slips past another's), then the cache's writer protocol
 * around the SQLite commit.  Fails the call and returns -1 on error.
 */
static int
kv_write_txn(struct call *c, const ProtobufCBinaryData *txn_id,
             const ProtobufCBinaryData *key, const ProtobufCBinaryData *val)
{
    struct worker *w = c->w;
    char kbuf[160], what[200];
    int rc = -1;

    struct bfdb_txn_slot *t = h_txn_enter(c, txn_id, 1);
    if (t == NULL)
        return -1;
    size_t nlen;
    char small[256];
    char *name = h_key_name(key, small, sizeof(small), &nlen);
    snprintf(what, sizeof(what), "key %s",
             h_printable(key, kbuf, sizeof(kbuf)));
    if (h_lock(c, t, name, nlen, what) == 0) {
        int src = bfdb_txn_kv_stage(w->kv, t->num, (const char *)key->data,
                                    key->len,
                                    val ? (const char *)val->data : NULL,
                                    val ? val->len : 0);
        if (src != BFDB_OK) {
            h_store_fail(c, src, bfdb_store_errmsg(w->kv));
        } else {
            __atomic_fetch_add(&t->kv_ops, 1, __ATOMIC_SEQ_CST);
            rc = 0;
        }
        if (h_txn_recheck(c, t, rc == 0) != 0)
            rc = -1;
    }
    if (name != small)
        free(name);
    h_txn_leave(c, t);
    return rc;
}

static int
kv_write(struct call *c, const ProtobufCBinaryData *key,
         const ProtobufCBinaryData *val)
{
    struct worker *w = c->w;
    struct bfdb_cache_write cw;
    char kbuf[160], what[200], small[256];
    size_t nlen;
    int rc = -1;

    char *name = h_key_name(key, small, sizeof(small), &nlen);
    snprintf(what, sizeof(what), "key %s",
             h_printable(key, kbuf, sizeof(kbuf)));
    if (h_lock(c, NULL, name, nlen, what) != 0)
        goto out;
    bfdb_inject("kv-write-locked");
    if (bfdb_cache_write_begin(w->cache, key->data, key->len, &cw) != 0) {
        call_fail(c, GRPC_STATUS_UNAVAILABLE, "the key cache is not "
                  "writable: write refused so no stale entry can stay");
        goto unlock;
    }
    int src;
    if (val != NULL)
        src = bfdb_kv_set(w->kv, (const char *)key->data, key->len,
                          (const char *)val->data, val->len);
    else
        src = bfdb_kv_delete(w->kv, (const char *)key->data, key->len, NULL);
    bfdb_cache_write_end(w->cache, key->data, key->len, &cw, src == BFDB_OK,
                         val ? val->data : NULL, val ? val->len : 0);
    if (src != BFDB_OK)
        h_store_fail(c, src, bfdb_store_errmsg(w->kv));
    else
        rc = 0;
unlock:
    h_unlock(c, name, nlen);
out:
    if (name != small)
        free(name);
    return rc;
}

static void
kv_set(struct call *c, const uint8_t *data, size_t len)
{
    Buffdb__Kv__SetRequest *req =
        buffdb__kv__set_request__unpack(NULL, len, data);

    if (req == NULL) {
        BAD_MESSAGE(c, "SetRequest");
        return;
    }
    if (h_check_utf8(c, &req->key, "key") &&
        h_check_utf8(c, &req->value, "value")) {
        int rc = req->_transaction_id_case != 0
                     ? kv_write_txn(c, &req->transaction_id, &req->key,
                                    &req->value)
                     : kv_write(c, &req->key, &req->value);
        if (rc == 0) {
            Buffdb__Kv__SetResponse resp = BUFFDB__KV__SET_RESPONSE__INIT;
            resp.key = req->key;
            call_reply(c, &resp.base);
        }
    }
    buffdb__kv__set_request__free_unpacked(req, NULL);
}

static void
kv_delete(struct call *c, const uint8_t *data, size_t len)
{
    Buffdb__Kv__DeleteRequest *req =
        buffdb__kv__delete_request__unpack(NULL, len, data);

    if (req == NULL) {
        BAD_MESSAGE(c, "DeleteRequest");
        return;
    }
    if (h_check_utf8(c, &req->key, "key")) {
        int rc = req->_transaction_id_case != 0
                     ? kv_write_txn(c, &req->transaction_id, &req->key, NULL)
                     : kv_write(c, &req->key, NULL);
        if (rc == 0) {
            Buffdb__Kv__DeleteResponse resp =
                BUFFDB__KV__DELETE_RESPONSE__INIT;
            resp.key = req->key;
            call_reply(c, &resp.base);
        }
    }
    buffdb__kv__delete_request__free_unpacked(req, NULL);
}

/* ---- Eq / NotEq --------------------------------------------------------- */

static void
kv_cmp_request(struct call *c, const uint8_t *data, size_t len, int mode)
{
    /* EqRequest and NotEqRequest have the same shape: key = 1 */
    Buffdb__Kv__EqRequest *req =
        buffdb__kv__eq_request__unpack(NULL, len, data);
    uint8_t d[BFDB_DIGEST_LEN];
    char kbuf[160];

    if (req == NULL) {
        BAD_MESSAGE(c, "EqRequest");
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
    if (!h_check_utf8(c, &req->key, "key"))
        goto out;
    int rc = bfdb_kv_digest(c->w->kv, (const char *)req->key.data,
                            req->key.len, d);
    if (rc == BFDB_ENOTFOUND) {
        call_fail(c, GRPC_STATUS_NOT_FOUND, "key not found: %s",
                  h_printable(&req->key, kbuf, sizeof(kbuf)));
    } else if (rc != BFDB_OK) {
        h_store_fail(c, rc, bfdb_store_errmsg(c->w->kv));
    } else if (bfdb_cmp_add(c->state, d)) {
        h_cmp_reply(c, 0); /* false is final: answer now */
    }
out:
    buffdb__kv__eq_request__free_unpacked(req, NULL);
}

static void
kv_eq(struct call *c, const uint8_t *data, size_t len)
{
    kv_cmp_request(c, data, len, BFDB_CMP_EQ);
}

static void
kv_not_eq(struct call *c, const uint8_t *data, size_t len)
{
    kv_cmp_request(c, data, len, BFDB_CMP_NOT_EQ);
}

const struct bfdb_method bfdb_method_kv_get = {"/buffdb.kv.Kv/Get", CALL_BIDI,
                                               kv_get, NULL, NULL, NULL};
const struct bfdb_method bfdb_method_kv_set = {"/buffdb.kv.Kv/Set", CALL_BIDI,
                                               kv_set, NULL, NULL, NULL};
const struct bfdb_method bfdb_method_kv_delete = {
    "/buffdb.kv.Kv/Delete", CALL_BIDI, kv_delete, NULL, NULL, NULL};
const struct bfdb_method bfdb_method_kv_eq = {
    "/buffdb.kv.Kv/Eq", CALL_CLIENT_STREAM, kv_eq, h_cmp_end, NULL,
    h_cmp_cleanup};
const struct bfdb_method bfdb_method_kv_not_eq = {
    "/buffdb.kv.Kv/NotEq", CALL_CLIENT_STREAM, kv_not_eq, h_cmp_end, NULL,
    h_cmp_cleanup};
