/*
 * config.c - parse buffdb.conf (see config.h)
 */
#include "config.h"

#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/config.h"
#include "common/log.h"
#include "common/util.h"
#include "store/store.h"

void
bfdb_config_defaults(struct bfdb_config *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->listen, sizeof(c->listen), "%s", BFDB_DEFAULT_LISTEN);
    c->workers = 0;
    snprintf(c->kv_store, sizeof(c->kv_store), "%s", BFDB_DEFAULT_KV_STORE);
    snprintf(c->blob_store, sizeof(c->blob_store), "%s",
             BFDB_DEFAULT_BLOB_STORE);
    c->sync = BFDB_SYNC_NORMAL;
    c->max_message_size = BFDB_DEFAULT_MAX_MESSAGE;
    c->grace_ms = BFDB_DEFAULT_GRACE_MS;
    c->busy_timeout_ms = BFDB_DEFAULT_BUSY_TIMEOUT_MS;
    c->log_level = BFDB_LOG_INFO;
    c->cache_size = BFDB_DEFAULT_CACHE_SIZE;
    c->lock_table_size = BFDB_DEFAULT_LOCK_SLOTS;
    c->lock_wait_ms = BFDB_DEFAULT_LOCK_WAIT_MS;
    c->txn_timeout_ms = BFDB_DEFAULT_TXN_TIMEOUT_MS;
    c->push_resume_ttl_ms = 24L * 3600 * 1000;
}

int
bfdb_parse_size(const char *s, uint64_t *out)
{
    char num[32];
    size_t n = strlen(s);
    uint64_t mul = 1, v;

    if (n == 0 || n >= sizeof(num))
        return -1;
    memcpy(num, s, n + 1);
    switch (num[n - 1]) {
    case 'k': case 'K': mul = 1ull << 10; break;
    case 'm': case 'M': mul = 1ull << 20; break;
    case 'g': case 'G': mul = 1ull << 30; break;
    default: break;
    }
    if (mul != 1)
        num[n - 1] = '\0';
    if (bfdb_parse_u64(num, &v) != 0 || v > UINT64_MAX / mul)
        return -1;
    *out = v * mul;
    return 0;
}

int
bfdb_parse_duration_ms(const char *s, long *out)
{
    char num[32];
    size_t n = strlen(s);
    long mul = 1000;
    uint64_t v;

    if (n == 0 || n >= sizeof(num))
        return -1;
    memcpy(num, s, n + 1);
    if (n > 2 && strcmp(num + n - 2, "ms") == 0) {
        mul = 1;
        num[n - 2] = '\0';
    } else if (num[n - 1] == 's') {
        num[n - 1] = '\0';
    } else if (num[n - 1] == 'm') {
        mul = 60000;
        num[n - 1] = '\0';
    }
    if (bfdb_parse_u64(num, &v) != 0 || v > (uint64_t)(INT32_MAX / mul))
        return -1;
    *out = (long)v * mul;
    return 0;
}

static int
set_path(char *dst, size_t cap, const char *v, char *err, size_t errlen)
{
    if (*v == '\0') {
        snprintf(err, errlen, "a path is required");
        return -1;
    }
    if (strlen(v) >= cap) {
        snprintf(err, errlen, "path is too long");
        return -1;
    }
    memcpy(dst, v, strlen(v) + 1);
    return 0;
}

int
bfdb_config_set(struct bfdb_config *c, const char *name, const char *v,
                char *err, size_t errlen)
{
    long l;
    uint64_t u;

    if (strcmp(name, "listen") == 0) {
        const char *colon = strrchr(v, ':');
        if (colon == NULL || colon == v || colon[1] == '\0') {
            snprintf(err, errlen, "'%s' is not HOST:PORT (e.g. [::1]:9313)",
                     v);
            return -1;
        }
        if (bfdb_parse_int(colon + 1, 1, 65535, &l) != 0) {
            snprintf(err, errlen, "'%s': the port must be 1 to 65535 (port "
                     "0 is not supported: every worker must listen on the "
                     "same port)", v);
            return -1;
        }
        if (strlen(v) >= sizeof(c->listen)) {
            snprintf(err, errlen, "address is too long");
            return -1;
        }
        memcpy(c->listen, v, strlen(v) + 1);
        return 0;
    }
    if (strcmp(name, "workers") == 0) {
        if (bfdb_parse_int(v, 0, BFDB_MAX_WORKERS, &l) != 0) {
            snprintf(err, errlen, "'%s' is not a number from 0 (one per CPU) "
                     "to %d", v, BFDB_MAX_WORKERS);
            return -1;
        }
        c->workers = (int)l;
        return 0;
    }
    if (strcmp(name, "kv_store") == 0)
        return set_path(c->kv_store, sizeof(c->kv_store), v, err, errlen);
    if (strcmp(name, "blob_store") == 0)
        return set_path(c->blob_store, sizeof(c->blob_store), v, err, errlen);
    if (strcmp(name, "synchronous") == 0) {
        if (strcasecmp(v, "normal") == 0)
            c->sync = BFDB_SYNC_NORMAL;
        else if (strcasecmp(v, "full") == 0)
            c->sync = BFDB_SYNC_FULL;
        else {
            snprintf(err, errlen, "'%s' is not normal or full", v);
            return -1;
        }
        return 0;
    }
    if (strcmp(name, "max_message_size") == 0) {
        if (bfdb_parse_size(v, &u) != 0 || u < 1024 ||
            u > BFDB_MAX_MESSAGE_LIMIT) {
            snprintf(err, errlen, "'%s' is not a size from 1K to 2147483647 "
                     "bytes (suffixes K, M, G)", v);
            return -1;
        }
        c->max_message_size = u;
        return 0;
    }
    if (strcmp(name, "shutdown_grace") == 0 ||
        strcmp(name, "busy_timeout") == 0) {
        if (bfdb_parse_duration_ms(v, &l) != 0) {
            snprintf(err, errlen, "'%s' is not a duration (e.g. 10s, 500ms, "
                     "2m; a bare number is seconds)", v);
            return -1;
        }
        if (name[0] == 's')
            c->grace_ms = (int)l;
        else
            c->busy_timeout_ms = l > 0 ? (int)l : 1;
        return 0;
    }
    if (strcmp(name, "shm_dir") == 0)
        return set_path(c->shm_dir, sizeof(c->shm_dir), v, err, errlen);
    if (strcmp(name, "cache_size") == 0) {
        if (bfdb_parse_size(v, &u) != 0 || (u != 0 && u < (1u << 20)) ||
            u > (64ull << 30)) {
            snprintf(err, errlen, "'%s' is not 0 (no cache) or a size from "
                     "1M to 64G (suffixes K, M, G)", v);
            return -1;
        }
        c->cache_size = u;
        return 0;
    }
    if (strcmp(name, "lock_table_size") == 0) {
        if (bfdb_parse_int(v, 16, 1 << 24, &l) != 0) {
            snprintf(err, errlen, "'%s' is not a number of slots from 16 to "
                     "16777216", v);
            return -1;
        }
        c->lock_table_size = (uint32_t)l;
        return 0;
    }
    if (strcmp(name, "lock_wait") == 0) {
        if (bfdb_parse_duration_ms(v, &l) != 0) {
            snprintf(err, errlen, "'%s' is not a duration (e.g. 5s, 500ms)",
                     v);
            return -1;
        }
        c->lock_wait_ms = (int)l;
        return 0;
    }
    if (strcmp(name, "transaction_timeout") == 0) {
        if (bfdb_parse_duration_ms(v, &l) != 0 || l < 1 ||
            l > BFDB_MAX_TXN_TIMEOUT_MS) {
            snprintf(err, errlen, "'%s' is not a duration of 1ms to 1440m "
                     "(e.g. 30s, 2m)", v);
            return -1;
        }
        c->txn_timeout_ms = (int)l;
        return 0;
    }
    if (strcmp(name, "push_resume_ttl") == 0) {
        /* up to 30 days */
        if (bfdb_parse_duration_ms(v, &l) != 0 || l < 1000 ||
            l > 30L * 24 * 3600 * 1000) {
            snprintf(err, errlen, "'%s' is not a duration of 1s to 30 days "
                     "(e.g. 24h is written 1440m)", v);
            return -1;
        }
        c->push_resume_ttl_ms = l;
        return 0;
    }
    if (strcmp(name, "log_level") == 0) {
        int lv = bfdb_log_parse_level(v);
        if (lv < 0) {
            snprintf(err, errlen, "'%s' is not error, warn, info or debug", v);
            return -1;
        }
        c->log_level = lv;
        return 0;
    }
    snprintf(err, errlen, "unknown directive");
    return -1;
}

struct load_ctx {
    struct bfdb_config *c;
    FILE *f;
    int lineno;      /* lines read so far */
    int fail_line;   /* line of the first directive refused, or 0 */
    char msg[512];
    char name[64];
};

/* load_reader - fgets that counts lines, so the handler knows its line */
static char *
load_reader(char *str, int num, void *stream)
{
    struct load_ctx *ctx = stream;
    char *r = fgets(str, num, ctx->f);

    if (r != NULL)
        ctx->lineno++;
    return r;
}

static int
load_handler(void *user, const char *section, const char *name,
             const char *value)
{
    struct load_ctx *ctx = user;

    if (ctx->fail_line != 0)
        return 1; /* only the first error is reported */
    snprintf(ctx->name, sizeof(ctx->name), "%s", name);
    if (section[0] != '\0')
        snprintf(ctx->msg, sizeof(ctx->msg), "sections ([%s]) are not used "
                 "in buffdb.conf", section);
    else if (value == NULL)
        snprintf(ctx->msg, sizeof(ctx->msg), "missing '= value'");
    else {
        /* inih only knows ';' comments after a value: drop a trailing
         * " # comment" too, so either style works */
        char v[1024];
        snprintf(v, sizeof(v), "%s", value);
        for (char *p = v; *p; p++) {
            if (*p == '#' && p > v && (p[-1] == ' ' || p[-1] == '\t')) {
                *p = '\0';
                break;
            }
        }
        size_t n = strlen(v);
        while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
            v[--n] = '\0';
        if (bfdb_config_set(ctx->c, name, v, ctx->msg, sizeof(ctx->msg)) == 0)
            return 1;
    }
    ctx->fail_line = ctx->lineno;
    return 0;
}

int
bfdb_config_load(struct bfdb_config *c, const char *path, char *err,
                 size_t errlen)
{
    struct load_ctx ctx;
    FILE *f;

    memset(&ctx, 0, sizeof(ctx));
    ctx.c = c;
    f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "could not open configuration file %s: %s",
                 path, strerror(errno));
        return -1;
    }
    ctx.f = f;
    int line = ini_parse_stream(load_reader, &ctx, load_handler, &ctx);
    fclose(f);
    if (line == 0)
        return 0;
    if (line < 0) {
        snprintf(err, errlen, "could not read configuration file %s", path);
        return -1;
    }
    if (ctx.fail_line != line)
        snprintf(err, errlen, "%s:%d: syntax error (expected 'directive = "
                 "value')", path, line);
    else
        snprintf(err, errlen, "%s:%d: %s: %s", path, line, ctx.name, ctx.msg);
    return -1;
}
