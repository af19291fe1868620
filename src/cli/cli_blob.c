/*
 * cli_blob.c - `buffdb blob [-s PATH] get ID [data|metadata|all] |
 *   store FILE|- [METADATA] | update ID data FILE |
 *   update ID metadata [METADATA] | update ID all FILE [METADATA] |
 *   delete ID | eq-data ID... | not-eq-data ID...`
 *
 * Data moves through a 1 MiB buffer in both directions, so storing or
 * getting a blob of any size needs little memory.  Data from a pipe
 * (FILE "-" or a FIFO) is first spooled to an unlinked temporary file,
 * since the store must know a blob's size before it writes it.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/util.h"

#define CHUNK (1u << 20)

static int
parse_id(const char *s, uint64_t *id)
{
    if (bfdb_parse_u64(s, id) != 0) {
        cli_usage_error("invalid blob id '%s' (expected a decimal number)", s);
        return -1;
    }
    return 0;
}

/* ---- input files ------------------------------------------------------- */

struct input {
    int fd;
    uint64_t size;
    const char *name;
};

/* spool - copy a pipe into an unlinked temporary file, rewound */
static int
spool(int in, const char *name, int *out, uint64_t *size, char *buf)
{
    const char *dir = getenv("TMPDIR");
    char path[4096];

    snprintf(path, sizeof(path), "%s/buffdb-spool-XXXXXX",
             dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0)
        return cli_error("could not create a temporary file in %s: %s",
                         dir && *dir ? dir : "/tmp", strerror(errno));
    unlink(path);
    *size = 0;
    for (;;) {
        ssize_t n = bfdb_read_full(in, buf, CHUNK);
        if (n < 0) {
            close(fd);
            return cli_error("could not read %s: %s", name, strerror(errno));
        }
        if (n == 0)
            break;
        if (bfdb_write_full(fd, buf, (size_t)n) != 0) {
            int e = errno;
            close(fd);
            return cli_error("could not spool %s to a temporary file: %s",
                             name, strerror(e));
        }
        *size += (uint64_t)n;
    }
    if (lseek(fd, 0, SEEK_SET) < 0) {
        close(fd);
        return cli_error("could not rewind the temporary file: %s",
                         strerror(errno));
    }
    *out = fd;
    return CLI_OK;
}

static int
input_open(struct input *in, const char *path, char *buf)
{
    struct stat sb;
    int fd;

    in->name = strcmp(path, "-") == 0 ? "standard input" : path;
    if (strcmp(path, "-") == 0) {
        fd = STDIN_FILENO;
    } else if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        return cli_error("could not open %s: %s", path, strerror(errno));
    }
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        if (fd != STDIN_FILENO)
            close(fd);
        return cli_error("could not stat %s: %s", in->name, strerror(e));
    }
    if (S_ISDIR(sb.st_mode)) {
        close(fd);
        return cli_error("%s is a directory", path);
    }
    if (S_ISREG(sb.st_mode)) {
        /* standard input may be a file partly read already: take the rest */
        off_t pos = lseek(fd, 0, SEEK_CUR);
        if (pos < 0)
            pos = 0;
        in->fd = fd;
        in->size = pos < sb.st_size ? (uint64_t)(sb.st_size - pos) : 0;
        return CLI_OK;
    }
    int rc = spool(fd, in->name, &in->fd, &in->size, buf);
    if (fd != STDIN_FILENO)
        close(fd);
    return rc;
}

static void
input_close(struct input *in)
{
    if (in->fd != STDIN_FILENO)
        close(in->fd);
}

/* write_from - open a writer and feed it the whole input */
static int
write_from(bfdb_store *s, uint64_t id, struct input *in, int set_meta,
           const char *meta, char *buf, uint64_t *id_out)
{
    bfdb_blob_writer *w;
    uint64_t left = in->size;
    int rc;

    rc = bfdb_blob_writer_open(s, id, in->size, set_meta, meta,
                               meta ? strlen(meta) : 0, &w, id_out);
    if (rc == BFDB_ENOTFOUND)
        return cli_error("blob %" PRIu64 " not found; nothing updated", id);
    if (rc != BFDB_OK)
        return cli_error("%s", bfdb_store_errmsg(s));
    while (left > 0) {
        size_t want = left < CHUNK ? (size_t)left : CHUNK;
        ssize_t n = bfdb_read_full(in->fd, buf, want);
        if (n < 0 || (size_t)n != want) {
            int e = errno;
            bfdb_blob_writer_abort(w);
            if (n < 0)
                return cli_error("could not read %s: %s", in->name,
                                 strerror(e));
            return cli_error("%s changed size while it was read", in->name);
        }
        if (bfdb_blob_writer_write(w, buf, want) != BFDB_OK) {
            rc = cli_error("%s", bfdb_store_errmsg(s));
            bfdb_blob_writer_abort(w);
            return rc;
        }
        left -= want;
    }
    if (bfdb_blob_writer_commit(w) != BFDB_OK)
        return cli_error("%s", bfdb_store_errmsg(s));
    return CLI_OK;
}

/* ---- commands ---------------------------------------------------------- */

static int
blob_get(bfdb_store *s, uint64_t id, const char *mode, char *buf)
{
    bfdb_blob_reader *r;
    uint64_t size;
    char *meta = NULL;
    size_t mlen = 0, got;
    int want_meta = strcmp(mode, "data") != 0;
    int want_data = strcmp(mode, "metadata") != 0;
    int ret = CLI_OK;

    int rc = bfdb_blob_reader_open(s, id, &r, &size, want_meta ? &meta : NULL,
                                   want_meta ? &mlen : NULL);
    if (rc == BFDB_ENOTFOUND)
        return cli_error("blob %" PRIu64 " not found", id);
    if (rc != BFDB_OK)
        return cli_error("%s", bfdb_store_errmsg(s));
    if (want_meta && meta && cli_write_out(meta, mlen) != 0)
        ret = CLI_ERROR;
    if (ret == CLI_OK && want_meta && want_data && cli_write_out("", 1) != 0)
        ret = CLI_ERROR;
    while (ret == CLI_OK && want_data) {
        if (bfdb_blob_reader_read(r, buf, CHUNK, &got) != BFDB_OK) {
            ret = cli_error("%s", bfdb_store_errmsg(s));
            break;
        }
        if (got == 0)
            break;
        if (cli_write_out(buf, got) != 0)
            ret = CLI_ERROR;
    }
    free(meta);
    bfdb_blob_reader_close(r);
    return ret;
}

static int
blob_compare(bfdb_store *s, int mode, int n, char **ids)
{
    struct bfdb_cmp c;
    uint8_t d[BFDB_DIGEST_LEN];
    uint64_t id;
    int ret = CLI_OK;

    bfdb_cmp_init(&c, mode);
    for (int i = 0; i < n; i++) {
        (void)parse_id(ids[i], &id); /* cli_blob checked them all */
        int rc = bfdb_blob_digest(s, id, d);
        if (rc == BFDB_ENOTFOUND) {
            ret = cli_error("blob %" PRIu64 " not found", id);
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

/* update_check - the arguments of `update`, checked before the store is
 * opened; CLI_OK or CLI_USAGE */
static int
update_check(int nargs, char **args, uint64_t *id)
{
    if (nargs < 2)
        return cli_usage_error("blob update: expected ID data|metadata|all");
    if (parse_id(args[0], id) != 0)
        return CLI_USAGE;
    const char *what = args[1];
    if (strcmp(what, "metadata") == 0) {
        if (nargs > 3)
            return cli_usage_error("blob update ID metadata: expected at most "
                                   "one METADATA");
        return CLI_OK;
    }
    int all = strcmp(what, "all") == 0;
    if (!all && strcmp(what, "data") != 0)
        return cli_usage_error("blob update: unknown mode '%s' (data, "
                               "metadata or all)", what);
    if (nargs < 3 || nargs > (all ? 4 : 3))
        return cli_usage_error(all ? "blob update ID all: expected FILE "
                                     "[METADATA]"
                                   : "blob update ID data: expected FILE");
    return CLI_OK;
}

/* blob_update - run `update`, its arguments passed by update_check */
static int
blob_update(bfdb_store *s, uint64_t id, int nargs, char **args, char *buf)
{
    int ret;

    const char *what = args[1];
    if (strcmp(what, "metadata") == 0) {
        const char *meta = nargs == 3 ? args[2] : NULL;
        int updated;
        if (bfdb_blob_update(s, id, 0, NULL, 0, 1, meta,
                             meta ? strlen(meta) : 0, &updated) != BFDB_OK)
            return cli_error("%s", bfdb_store_errmsg(s));
        if (!updated)
            return cli_error("blob %" PRIu64 " not found; nothing updated",
                             id);
        return CLI_OK;
    }
    int all = strcmp(what, "all") == 0;
    struct input in;
    if ((ret = input_open(&in, args[2], buf)) != CLI_OK)
        return ret;
    const char *meta = all && nargs == 4 ? args[3] : NULL;
    ret = write_from(s, id, &in, all, meta, buf, NULL);
    input_close(&in);
    return ret;
}

int
cli_blob(int argc, char **argv)
{
    const char *path = CLI_DEFAULT_BLOB_STORE;
    int i = 1, r;
    uint64_t id;

    while (i < argc && (r = cli_store_opt(argc, argv, &i, &path)) != 0)
        if (r < 0)
            return CLI_USAGE;
    if (i >= argc)
        return cli_usage_error("blob: missing command (get, store, update, "
                               "delete, eq-data, not-eq-data)");
    const char *cmd = argv[i++];
    if (i < argc && strcmp(argv[i], "--") == 0)
        i++;
    int nargs = argc - i;
    char **args = argv + i;

    /* check the arguments before touching the store */
    if (strcmp(cmd, "get") == 0) {
        if (nargs < 1 || nargs > 2)
            return cli_usage_error("blob get: expected ID [data|metadata|all]");
        if (parse_id(args[0], &id) != 0)
            return CLI_USAGE;
        if (nargs == 2 && strcmp(args[1], "data") != 0 &&
            strcmp(args[1], "metadata") != 0 && strcmp(args[1], "all") != 0)
            return cli_usage_error("blob get: unknown mode '%s' (data, "
                                   "metadata or all)", args[1]);
    } else if (strcmp(cmd, "store") == 0) {
        if (nargs < 1 || nargs > 2)
            return cli_usage_error("blob store: expected FILE|- [METADATA]");
    } else if (strcmp(cmd, "delete") == 0) {
        if (nargs != 1)
            return cli_usage_error("blob delete: expected one ID");
        if (parse_id(args[0], &id) != 0)
            return CLI_USAGE;
    } else if (strcmp(cmd, "update") == 0) {
        if ((r = update_check(nargs, args, &id)) != CLI_OK)
            return r;
    } else if (strcmp(cmd, "eq-data") == 0 ||
               strcmp(cmd, "not-eq-data") == 0) {
        for (int k = 0; k < nargs; k++)
            if (parse_id(args[k], &id) != 0)
                return CLI_USAGE;
    } else {
        return cli_usage_error("blob: unknown command '%s'", cmd);
    }

    char *buf = malloc(CHUNK);
    if (buf == NULL)
        return cli_error("out of memory");
    bfdb_store *s = cli_open(BFDB_STORE_BLOB, path);
    if (s == NULL) {
        free(buf);
        return CLI_ERROR;
    }

    int ret = CLI_OK;
    if (strcmp(cmd, "get") == 0) {
        ret = blob_get(s, id, nargs == 2 ? args[1] : "data", buf);
    } else if (strcmp(cmd, "store") == 0) {
        struct input in;
        uint64_t newid = 0;
        if ((ret = input_open(&in, args[0], buf)) == CLI_OK) {
            ret = write_from(s, 0, &in, 1, nargs == 2 ? args[1] : NULL, buf,
                             &newid);
            input_close(&in);
        }
        if (ret == CLI_OK) {
            char line[32];
            int n = snprintf(line, sizeof(line), "%" PRIu64 "\n", newid);
            if (cli_write_out(line, (size_t)n) != 0)
                ret = CLI_ERROR;
        }
    } else if (strcmp(cmd, "update") == 0) {
        ret = blob_update(s, id, nargs, args, buf);
    } else if (strcmp(cmd, "delete") == 0) {
        if (bfdb_blob_delete(s, id, NULL) != BFDB_OK)
            ret = cli_error("%s", bfdb_store_errmsg(s));
    } else {
        ret = blob_compare(s, strcmp(cmd, "eq-data") == 0 ? BFDB_CMP_EQ
                                                          : BFDB_CMP_NOT_EQ,
                           nargs, args);
    }
    bfdb_store_close(s);
    free(buf);
    return ret;
}
