/*
 * cli_query.c - `buffdb query [--target kv|blob] [-s PATH] SQL`
 *
 * Prints one line per row, columns separated by a tab: integers in
 * decimal, reals with 17 significant digits, text as it is, blobs as
 * X'hex' and NULL as NULL.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static int
print_row(bfdb_query *q)
{
    static const char hex[] = "0123456789abcdef";
    int ncol = bfdb_query_columns(q);

    for (int c = 0; c < ncol; c++) {
        size_t len;
        const unsigned char *p;

        if (c > 0)
            putchar('\t');
        switch (bfdb_query_type(q, c)) {
        case BFDB_COL_INTEGER:
            printf("%" PRId64, bfdb_query_int(q, c));
            break;
        case BFDB_COL_REAL:
            printf("%.17g", bfdb_query_real(q, c));
            break;
        case BFDB_COL_TEXT:
            p = bfdb_query_bytes(q, c, &len);
            fwrite(p, 1, len, stdout);
            break;
        case BFDB_COL_BLOB:
            p = bfdb_query_bytes(q, c, &len);
            fputs("X'", stdout);
            for (size_t i = 0; i < len; i++) {
                putchar(hex[p[i] >> 4]);
                putchar(hex[p[i] & 15]);
            }
            putchar('\'');
            break;
        default:
            fputs("NULL", stdout);
            break;
        }
    }
    putchar('\n');
    return ferror(stdout) ? -1 : 0;
}

int
cli_query(int argc, char **argv)
{
    const char *path = NULL;
    int kind = BFDB_STORE_KV, i = 1, r;

    while (i < argc) {
        if (strcmp(argv[i], "--target") == 0 || strcmp(argv[i], "-t") == 0 ||
            strncmp(argv[i], "--target=", 9) == 0) {
            const char *t;
            if (argv[i][1] == '-' && argv[i][8] == '=') {
                t = argv[i] + 9;
                i += 1;
            } else {
                if (i + 1 >= argc)
                    return cli_usage_error("option '%s' needs kv or blob",
                                           argv[i]);
                t = argv[i + 1];
                i += 2;
            }
            if (strcmp(t, "kv") == 0)
                kind = BFDB_STORE_KV;
            else if (strcmp(t, "blob") == 0)
                kind = BFDB_STORE_BLOB;
            else
                return cli_usage_error("unknown target '%s' (kv or blob)", t);
            continue;
        }
        if ((r = cli_store_opt(argc, argv, &i, &path)) < 0)
            return CLI_USAGE;
        if (r == 0)
            break;
    }
    if (i < argc && strcmp(argv[i], "--") == 0)
        i++;
    if (argc - i != 1)
        return cli_usage_error("query: expected one SQL statement");
    const char *sql = argv[i];
    if (path == NULL)
        path = kind == BFDB_STORE_KV ? CLI_DEFAULT_KV_STORE
                                     : CLI_DEFAULT_BLOB_STORE;

    bfdb_store *s = cli_open(kind, path);
    if (s == NULL)
        return CLI_ERROR;
    bfdb_query *q;
    int ret = CLI_OK;
    if (bfdb_query_open(s, sql, strlen(sql), &q) != BFDB_OK) {
        ret = cli_error("%s", bfdb_store_errmsg(s));
        bfdb_store_close(s);
        return ret;
    }
    /* a statement that writes the kv store invalidates a running server's
     * cache for its whole run, as the workers' raw SQL does */
    struct cli_coord cc;
    memset(&cc, 0, sizeof(cc));
    cc.lockfd = -1;
    if (kind == BFDB_STORE_KV && !bfdb_query_readonly(q)) {
        if (cli_coord_begin(&cc, path, NULL) != CLI_OK) {
            bfdb_query_close(q);
            bfdb_store_close(s);
            return CLI_ERROR;
        }
        if (cc.attached)
            bfdb_cache_global_begin(&cc.shm);
    }
    while ((r = bfdb_query_next(q)) == 1) {
        if (print_row(q) != 0) {
            ret = cli_error("could not write to standard output");
            break;
        }
    }
    if (r < 0)
        ret = cli_error("%s", bfdb_store_errmsg(s));
    bfdb_query_close(q);
    if (cc.attached)
        bfdb_cache_global_end(&cc.shm);
    cli_coord_end(&cc);
    bfdb_store_close(s);
    if (fflush(stdout) != 0 && ret == CLI_OK)
        ret = cli_error("could not write to standard output");
    return ret;
}
