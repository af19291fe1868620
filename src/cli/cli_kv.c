/*
 * cli_kv.c - `buffdb kv [-s PATH] get KEY... | set KEY VALUE | delete KEY |
 *            eq KEY... | not-eq KEY...`
 *
 * get writes the values with a NUL byte between them and nothing after
 * the last (upstream's format), so one value comes out byte for byte.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static int
kv_get(bfdb_store *s, int n, char **keys)
{
    for (int i = 0; i < n; i++) {
        char *v;
        size_t len;
        int rc = bfdb_kv_get(s, keys[i], strlen(keys[i]), &v, &len);
        if (rc == BFDB_ENOTFOUND)
            return cli_error("key not found: %s", keys[i]);
        if (rc != BFDB_OK)
            return cli_error("%s", bfdb_store_errmsg(s));
        int w = (i > 0 ? cli_write_out("", 1) : 0);
        if (w == 0)
            w = cli_write_out(v, len);
        free(v);
        if (w != 0)
            return CLI_ERROR;
    }
    return CLI_OK;
}

static int
kv_compare(bfdb_store *s, int mode, int n, char **keys)
{
    struct bfdb_cmp c;
    uint8_t d[BFDB_DIGEST_LEN];
    int ret = CLI_OK;

    bfdb_cmp_init(&c, mode);
    for (int i = 0; i < n; i++) {
        int rc = bfdb_kv_digest(s, keys[i], strlen(keys[i]), d);
        if (rc == BFDB_ENOTFOUND) {
            ret = cli_error("key not found: %s", keys[i]);
            break;
        }
        if (rc != BFDB_OK) {
            ret = cli_error("%s", bfdb_store_errmsg(s));
            break;
        }
        if (bfdb_cmp_add(&c, d))
            break;
    }
    if (ret == CLI_OK && !bfdb_cmp_result(&c))
        ret = CLI_FALSE;
    bfdb_cmp_free(&c);
    return ret;
}

int
cli_kv(int argc, char **argv)
{
    const char *path = CLI_DEFAULT_KV_STORE;
    int i = 1, r;

    while (i < argc && (r = cli_store_opt(argc, argv, &i, &path)) != 0)
        if (r < 0)
            return CLI_USAGE;
    if (i >= argc)
        return cli_usage_error("kv: missing command (get, set, delete, eq, "
                               "not-eq)");
    const char *cmd = argv[i++];
    if (i < argc && strcmp(argv[i], "--") == 0)
        i++;
    int nargs = argc - i;
    char **args = argv + i;

    if (strcmp(cmd, "get") == 0 || strcmp(cmd, "eq") == 0 ||
        strcmp(cmd, "not-eq") == 0) {
        if (nargs < 1 && strcmp(cmd, "get") == 0)
            return cli_usage_error("kv get: missing KEY");
    } else if (strcmp(cmd, "set") == 0) {
        if (nargs != 2)
            return cli_usage_error("kv set: expected KEY VALUE");
    } else if (strcmp(cmd, "delete") == 0) {
        if (nargs != 1)
            return cli_usage_error("kv delete: expected one KEY");
    } else {
        return cli_usage_error("kv: unknown command '%s'", cmd);
    }

    bfdb_store *s = cli_open(BFDB_STORE_KV, path);
    if (s == NULL)
        return CLI_ERROR;
    int ret = CLI_OK;
    if (strcmp(cmd, "get") == 0) {
        ret = kv_get(s, nargs, args);
    } else if (strcmp(cmd, "set") == 0 || strcmp(cmd, "delete") == 0) {
        /* a server may cache this key: write the way its workers do */
        struct cli_coord cc;
        ret = cli_coord_begin(&cc, path, NULL);
        if (ret == CLI_OK) {
            ret = cli_coord_write(&cc, s, args[0],
                                  strcmp(cmd, "set") == 0 ? args[1] : NULL);
            cli_coord_end(&cc);
        }
    } else {
        ret = kv_compare(s, strcmp(cmd, "eq") == 0 ? BFDB_CMP_EQ
                                                   : BFDB_CMP_NOT_EQ,
                         nargs, args);
    }
    bfdb_store_close(s);
    return ret;
}
