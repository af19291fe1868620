/*
 * handlers.c - helpers shared by the handlers
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cmp.h"
#include "common/util.h"
#include "google/protobuf/wrappers.pb-c.h"
#include "worker/handlers.h"
#include "worker/worker.h"

const char *
h_printable(const ProtobufCBinaryData *b, char *buf, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    for (size_t i = 0; i < b->len; i++) {
        unsigned char ch = b->data[i];
        if (o + 8 >= cap) {
            buf[o++] = '.';
            buf[o++] = '.';
            buf[o++] = '.';
            break;
        }
        if (ch >= 0x20 && ch < 0x7f && ch != '\\') {
            buf[o++] = (char)ch;
        } else {
            buf[o++] = '\\';
            buf[o++] = 'x';
            buf[o++] = hex[ch >> 4];
            buf[o++] = hex[ch & 15];
        }
    }
    buf[o] = '\0';
    return buf;
}

int
h_check_utf8(struct call *c, const ProtobufCBinaryData *b, const char *field)
{
    if (bfdb_utf8_valid(b->data, b->len))
        return 1;
    call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "%s is not valid UTF-8", field);
    return 0;
}

void
h_store_fail(struct call *c, int err, const char *msg)
{
    call_fail(c, call_store_status(err), "%s", msg);
}

void
h_cmp_reply(struct call *c, int value)
{
    Google__Protobuf__BoolValue resp = GOOGLE__PROTOBUF__BOOL_VALUE__INIT;

    resp.value = value;
    call_reply(c, &resp.base);
    call_finish(c);
}

void
h_cmp_end(struct call *c)
{
    h_cmp_reply(c, c->state == NULL || bfdb_cmp_result(c->state));
}

void
h_cmp_cleanup(struct call *c)
{
    if (c->state) {
        bfdb_cmp_free(c->state);
        free(c->state);
        c->state = NULL;
    }
}

/* key_name - the lock name of a kv key: "k" then the key, so kv keys and
 * other lock names (blobs, "b"...) never collide */
char *
h_key_name(const ProtobufCBinaryData *key, char *small, size_t cap,
           size_t *len)
{
    char *n = key->len + 1 <= cap ? small : xmalloc(key->len + 1);

    n[0] = 'k';
    if (key->len)
        memcpy(n + 1, key->data, key->len);
    *len = key->len + 1;
    return n;
}

int
h_lock(struct call *c, struct bfdb_txn_slot *t, const void *name,
       size_t len, const char *what)
{
    struct worker *w = c->w;
    pid_t holder = 0;
    uint64_t htxn = 0;

    int rc = bfdb_locktab_acquire(w->shm->locktab, name, len, w->pid,
                                  t ? t->num : 0, w->cfg->lock_wait_ms,
                                  &holder, &htxn);
    if (rc == BFDB_EBUSY) {
        call_fail(c, GRPC_STATUS_ABORTED,
                  "%s is locked by another writer (process %ld%s) beyond "
                  "lock_wait", what, (long)holder,
                  htxn ? ", in a transaction" : "");
        return -1;
    }
    if (rc != BFDB_OK) {
        call_fail(c, GRPC_STATUS_UNAVAILABLE,
                  "the lock table is full (lock_table_size): try again");
        return -1;
    }
    return 0;
}

void
h_unlock(struct call *c, const void *name, size_t len)
{
    bfdb_locktab_release(c->w->shm->locktab, name, len, c->w->pid, 0);
}

void
h_blob_name(uint64_t id, char out[9])
{
    out[0] = 'b';
    memcpy(out + 1, &id, 8);
}

/* ---- pooled connections ------------------------------------------------ */

bfdb_store *
h_conn_take(struct call *c, int target)
{
    const struct bfdb_config *cfg = c->w->cfg;
    struct worker *w = c->w;
    struct bfdb_store_opts o = {0};
    bfdb_store *conn = NULL;
    char err[1024];

    if (w->qpool_n[target] > 0) {
        conn = w->qpool[target][--w->qpool_n[target]];
    } else {
        o.sync = cfg->sync;
        o.busy_timeout_ms = cfg->busy_timeout_ms;
        o.no_create = 1;
        o.skip_schema = 1;
        int rc = bfdb_store_open(&conn,
                                 target ? BFDB_STORE_BLOB : BFDB_STORE_KV,
                                 target ? cfg->blob_store : cfg->kv_store, &o,
                                 err, sizeof(err));
        if (rc != BFDB_OK) {
            call_fail(c, call_store_status(rc), "%s", err);
            return NULL;
        }
    }
    bfdb_store_set_interrupt(conn, call_expired, c);
    return conn;
}

void
h_conn_give(struct worker *w, int target, bfdb_store *conn)
{
    if (conn == NULL)
        return;
    /* keep a few connections for the next calls: opening one costs more
     * than a short query */
    bfdb_store_set_interrupt(conn, NULL, NULL);
    if (w->qpool_n[target] < 4)
        w->qpool[target][w->qpool_n[target]++] = conn;
    else
        bfdb_store_close(conn);
}
