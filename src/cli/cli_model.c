/*
 * cli_model.c - `buffdb model ...`: a gRPC client of a running server's
 *               Model service (proto/model.proto)
 *
 * Grammar (buffdb(1), "MODELS"):
 *   push NAME VERSION FILE... [--framework F] [--description D]
 *        [--param K=V]... [--input-shape DIMS] [--output-shape DIMS]
 *   pull REF [-o DIR]
 *   ls [NAME] [--bytes]
 *   info REF [--json] [--tensors]
 *   rm NAME VERSION [--force]
 *   tag NAME VERSION ALIAS        (VERSION '' removes the alias)
 *   untag NAME ALIAS
 *   verify REF
 *   status NAME VERSION           (what the server holds of a push)
 *   abort NAME VERSION            (abandon an unfinished push)
 *   import-hf DIR [--name N] [--version V] [--dry-run]
 * REF is NAME (the latest version), NAME:VERSION or NAME@ALIAS.  Common
 * options: --addr ADDR, -c/--config FILE, --timeout DURATION.  Options
 * may come anywhere, as "--opt value" or "--opt=value"; "--" ends them.
 *
 * Everything the command line says is checked before gRPC is started, so
 * a usage error (exit 2) never reaches the server.  Exit 1 for any error
 * (a gRPC status is printed as "buffdb: <Method>: <STATUS>: <details>")
 * and for a failed verify.
 *
 * Transfers are resumable from both ends:
 *   - push asks PushStatus first; if the server holds an unfinished push
 *     of the same files (paths and sizes), each file is sent from the
 *     offset the server holds.  Files are sent file by file in 1 MiB
 *     chunks, one SEND_MESSAGE in flight while the next chunk is read.
 *   - pull resolves REF with GetInfo, skips files already in DIR with the
 *     right size and SHA-256, and resumes from DIR/PATH.part; each file
 *     is written to its .part, checked against its SHA-256 and renamed.
 * SIGINT cancels the call in progress; what was moved is kept.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grpc/grpc.h>
#include <inttypes.h>
#include <malloc.h>
#include <jansson.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cli_progress.h"
#include "cli/cli_rpc.h"
#include "common/cmp.h"
#include "common/config.h"
#include "common/util.h"
#include "model.pb-c.h"

#define SVC "/buffdb.model.Model/"
#define M_PUSH SVC "Push"
#define M_PUSH_STATUS SVC "PushStatus"
#define M_ABORT_PUSH SVC "AbortPush"
#define M_PULL SVC "Pull"
#define M_LIST_MODELS SVC "ListModels"
#define M_LIST_VERSIONS SVC "ListVersions"
#define M_GET_INFO SVC "GetInfo"
#define M_DELETE_VERSION SVC "DeleteVersion"
#define M_SET_ALIAS SVC "SetAlias"
#define M_VERIFY SVC "Verify"

#define CHUNK_SIZE (1u << 20)       /* well under the 4 MiB message limit */
#define DEFAULT_TIMEOUT_MS 30000L
#define NAME_MAX_LEN 200
#define HEX_LEN (2 * BFDB_DIGEST_LEN)

static const char model_usage[] =
    "usage: buffdb model [--addr ADDR] [-c FILE] [--timeout SEC] COMMAND\n"
    "  push NAME VERSION FILE... [--framework F] [--description D]\n"
    "       [--param K=V]... [--input-shape DIMS] [--output-shape DIMS]\n"
    "  pull NAME[:VERSION|@ALIAS] [-o DIR]\n"
    "  ls [NAME] [--bytes]\n"
    "  info NAME[:VERSION|@ALIAS] [--json] [--tensors]\n"
    "  rm NAME VERSION [--force]\n"
    "  tag NAME VERSION ALIAS | untag NAME ALIAS\n"
    "  verify NAME[:VERSION|@ALIAS]\n"
    "  status NAME VERSION | abort NAME VERSION\n"
    "  import-hf DIR [--name N] [--version V] [--dry-run]\n"
    "ADDR defaults to the `listen` of the configuration file (-c FILE, or\n"
    SYSCONFDIR "/buffdb.conf if it exists), else " BFDB_DEFAULT_LISTEN ".\n"
    "See buffdb(1), MODELS.\n";

/* ---- options ------------------------------------------------------------- */

enum {
    O_ADDR = 1u << 0,
    O_CONF = 1u << 1,
    O_TIMEOUT = 1u << 2,
    O_FRAMEWORK = 1u << 3,
    O_DESC = 1u << 4,
    O_PARAM = 1u << 5,
    O_INSHAPE = 1u << 6,
    O_OUTSHAPE = 1u << 7,
    O_OUTDIR = 1u << 8,
    O_JSON = 1u << 9,
    O_FORCE = 1u << 10,
    O_BYTES = 1u << 11,
    O_NAME = 1u << 12,
    O_VERSION = 1u << 13,
    O_DRYRUN = 1u << 14,
    O_TENSORS = 1u << 15,
};
#define O_COMMON (O_ADDR | O_CONF | O_TIMEOUT)

static const struct mopt {
    const char *lng;
    const char *shrt;
    int has_arg;
    unsigned id;
} mopts[] = {
    {"--addr", NULL, 1, O_ADDR},
    {"--config", "-c", 1, O_CONF},
    {"--timeout", NULL, 1, O_TIMEOUT},
    {"--framework", NULL, 1, O_FRAMEWORK},
    {"--description", NULL, 1, O_DESC},
    {"--param", NULL, 1, O_PARAM},
    {"--input-shape", NULL, 1, O_INSHAPE},
    {"--output-shape", NULL, 1, O_OUTSHAPE},
    {"--output", "-o", 1, O_OUTDIR},
    {"--json", NULL, 0, O_JSON},
    {"--force", NULL, 0, O_FORCE},
    {"--bytes", NULL, 0, O_BYTES},
    {"--name", NULL, 1, O_NAME},
    {"--version", NULL, 1, O_VERSION},
    {"--dry-run", NULL, 0, O_DRYRUN},
    {"--tensors", NULL, 0, O_TENSORS},
};
#define N_MOPTS (sizeof(mopts) / sizeof(mopts[0]))

struct mctx;
typedef int (*mcmd_fn)(struct mctx *c);

/* one subcommand: operand counts and the options it takes */
struct mcmd {
    const char *name;
    int min, max; /* operands; max -1: any number */
    unsigned opts;
    mcmd_fn fn;
};

/* what the command line said, and the connection */
struct mctx {
    const struct mcmd *cmd;
    char **pos;
    int npos;
    unsigned seen;
    const char *optname[N_MOPTS]; /* as written, for messages */
    const char *val[N_MOPTS];
    char **params; /* "K=V" */
    int nparams;
    long timeout_ms;
    int timeout_set;
    int64_t *in_shape, *out_shape;
    size_t n_in, n_out;
    char addr[256];
    int grpc_up;
    int connected;
    struct cli_rpc rpc;
};

static size_t
opt_index(unsigned id)
{
    for (size_t k = 0; k < N_MOPTS; k++)
        if (mopts[k].id == id)
            return k;
    abort();
}

static const char *
opt(const struct mctx *c, unsigned id)
{
    return c->val[opt_index(id)];
}

static int
flag(const struct mctx *c, unsigned id)
{
    return (c->seen & id) != 0;
}

/* ---- small helpers ------------------------------------------------------- */

static ProtobufCBinaryData
B(const char *s)
{
    ProtobufCBinaryData b = {strlen(s), (uint8_t *)s};
    return b;
}

/* for "%.*s" */
#define BF(b) (int)(b).len, (const char *)(b).data

/* bdup - a binary field as a malloc'd C string */
static char *
bdup(ProtobufCBinaryData b)
{
    char *s = xmalloc(b.len + 1);

    if (b.len)
        memcpy(s, b.data, b.len);
    s[b.len] = '\0';
    return s;
}

static int
beq(ProtobufCBinaryData b, const char *s)
{
    return b.len == strlen(s) && (b.len == 0 || memcmp(b.data, s, b.len) == 0);
}

/* valid_name - 1-200 bytes of A-Z a-z 0-9 . _ - / + (model.proto) */
static int
valid_name(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > NAME_MAX_LEN)
        return 0;
    for (const char *p = s; *p; p++) {
        char ch = *p;
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
              (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' ||
              ch == '-' || ch == '/' || ch == '+'))
            return 0;
    }
    return 1;
}

static int
check_name(const struct mctx *c, const char *what, const char *s)
{
    if (valid_name(s))
        return 0;
    cli_usage_error("model %s: invalid %s '%s' (1 to %d characters of "
                    "A-Z a-z 0-9 . _ - / +)",
                    c->cmd->name, what, s, NAME_MAX_LEN);
    return -1;
}

/* a reference: NAME, NAME:VERSION or NAME@ALIAS */
struct ref {
    char name[NAME_MAX_LEN + 1];
    char version[NAME_MAX_LEN + 1];
    char alias[NAME_MAX_LEN + 1];
};

static int
parse_ref(const struct mctx *c, const char *s, struct ref *r)
{
    size_t k = strcspn(s, ":@");

    memset(r, 0, sizeof(*r));
    if (k > NAME_MAX_LEN || strlen(s + k) > NAME_MAX_LEN + 1) {
        cli_usage_error("model %s: '%s' is too long", c->cmd->name, s);
        return -1;
    }
    memcpy(r->name, s, k);
    if (check_name(c, "model name", r->name) != 0)
        return -1;
    if (s[k] == ':') {
        snprintf(r->version, sizeof(r->version), "%s", s + k + 1);
        return check_name(c, "version", r->version);
    }
    if (s[k] == '@') {
        snprintf(r->alias, sizeof(r->alias), "%s", s + k + 1);
        return check_name(c, "alias", r->alias);
    }
    return 0;
}

/* ref_text - "NAME", "NAME:VERSION" or "NAME@ALIAS" for messages */
static const char *
ref_text(const struct ref *r, char *buf, size_t n)
{
    if (r->version[0])
        snprintf(buf, n, "%s:%s", r->name, r->version);
    else if (r->alias[0])
        snprintf(buf, n, "%s@%s", r->name, r->alias);
    else
        snprintf(buf, n, "%s", r->name);
    return buf;
}

static void
hex(const uint8_t *d, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    out[2 * n] = '\0';
}

/* parse_dims - "1,3,224,224" (dimensions may be -1: dynamic); "" is none */
static int
parse_dims(const char *s, int64_t **out, size_t *n)
{
    size_t cap = 1;

    for (const char *p = s; *p; p++)
        cap += *p == ',';
    *out = xcalloc(cap, sizeof(int64_t));
    *n = 0;
    if (*s == '\0')
        return 0;
    for (const char *p = s;;) {
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno != 0 || v < -1 || (*end != ',' && *end != '\0'))
            return -1;
        (*out)[(*n)++] = v;
        if (*end == '\0')
            return 0;
        p = end + 1;
    }
}

/* parse_timeout - "30", "2.5", "500ms", "10s", "2m"; > 0 */
static int
parse_timeout(const char *s, long *ms)
{
    char *end;

    if (bfdb_parse_duration_ms(s, ms) == 0)
        return *ms > 0 ? 0 : -1;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno != 0 || !(v > 0) || v > 86400.0)
        return -1;
    *ms = (long)(v * 1000.0 + 0.5);
    return *ms > 0 ? 0 : -1;
}

/* print_table - rows of cells, columns padded by two spaces */
static void
print_table(char ***rows, size_t nrows, int ncols)
{
    size_t w[16] = {0};

    for (size_t r = 0; r < nrows; r++)
        for (int k = 0; k < ncols; k++)
            if (strlen(rows[r][k]) > w[k])
                w[k] = strlen(rows[r][k]);
    for (size_t r = 0; r < nrows; r++) {
        for (int k = 0; k < ncols; k++) {
            if (k == ncols - 1)
                printf("%s\n", rows[r][k]);
            else
                printf("%-*s  ", (int)w[k], rows[r][k]);
        }
    }
}

static char *
size_text(uint64_t bytes, int exact)
{
    char b[64];

    if (exact)
        snprintf(b, sizeof(b), "%" PRIu64, bytes);
    else
        cli_format_size(b, sizeof(b), bytes);
    return xstrdup(b);
}

/* ---- files and paths ----------------------------------------------------- */

/* safe_rel_path - a relative '/'-separated path with no empty, "." or
 * ".." component (what the server promises; checked all the same) */
static int
safe_rel_path(const char *p)
{
    if (*p == '\0' || *p == '/')
        return 0;
    for (const char *s = p; *s;) {
        size_t k = strcspn(s, "/");
        if (k == 0 || (k == 1 && s[0] == '.') ||
            (k == 2 && s[0] == '.' && s[1] == '.'))
            return 0;
        s += k;
        if (*s == '/') {
            s++;
            if (*s == '\0')
                return 0;
        }
    }
    return 1;
}

/* mkdirs - create dir and its parents (mode 0777 & ~umask) */
static int
mkdirs(const char *dir)
{
    char p[PATH_MAX];

    if (snprintf(p, sizeof(p), "%s", dir) >= (int)sizeof(p)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char save = *s;
            *s = '\0';
            if (mkdir(p, 0777) != 0 && errno != EEXIST)
                return -1;
            *s = save;
            if (save == '\0')
                break;
        }
    }
    struct stat st;
    if (stat(p, &st) != 0)
        return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

/* sha256_file - hex SHA-256 of the first len bytes of path into out;
 * when h is given, the bytes go into h instead (no result) */
static int
sha256_file(const char *path, uint64_t len, bfdb_sha256 *h, char *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    bfdb_sha256 *own = h ? NULL : bfdb_sha256_new();
    uint8_t *buf = xmalloc(CHUNK_SIZE);
    int rc = -1;

    if (fd < 0)
        goto leave;
    while (len > 0) {
        size_t n = len < CHUNK_SIZE ? (size_t)len : CHUNK_SIZE;
        if (bfdb_read_full(fd, buf, n) != (ssize_t)n)
            goto leave;
        bfdb_sha256_update(h ? h : own, buf, n);
        len -= n;
    }
    rc = 0;
leave:
    if (own) {
        uint8_t d[BFDB_DIGEST_LEN];
        bfdb_sha256_final(own, d);
        bfdb_sha256_free(own);
        if (out)
            hex(d, sizeof(d), out);
    }
    if (fd >= 0)
        close(fd);
    free(buf);
    return rc;
}

/* one file to push: its path in the model, where it is, its size */
struct pfile {
    char *path;
    char *src;
    uint64_t size;
};

static void
pfiles_free(struct pfile *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(f[i].path);
        free(f[i].src);
    }
    free(f);
}

/* ---- the connection ------------------------------------------------------ */

/*
 * resolve_addr - --addr, else the `listen` of -c FILE, else of
 * SYSCONFDIR/buffdb.conf when it exists, else the built-in default.  A
 * wildcard listen address (0.0.0.0, [::]) is reached on the loopback.
 */
static int
resolve_addr(struct mctx *c)
{
    const char *a = opt(c, O_ADDR);
    const char *conf = opt(c, O_CONF);
    static const char sys_conf[] = SYSCONFDIR "/buffdb.conf";
    struct bfdb_config cfg;
    char err[1024];

    if (a != NULL) {
        snprintf(c->addr, sizeof(c->addr), "%s", a);
        return CLI_OK;
    }
    bfdb_config_defaults(&cfg);
    if (conf != NULL) {
        if (bfdb_config_load(&cfg, conf, err, sizeof(err)) != 0)
            return cli_error("%s", err);
    } else if (access(sys_conf, F_OK) == 0) {
        if (bfdb_config_load(&cfg, sys_conf, err, sizeof(err)) != 0) {
            fprintf(stderr, "buffdb: warning: %s; using %s\n", err,
                    BFDB_DEFAULT_LISTEN);
            bfdb_config_defaults(&cfg);
        }
    }
    int n;
    if (strncmp(cfg.listen, "0.0.0.0:", 8) == 0)
        n = snprintf(c->addr, sizeof(c->addr), "127.0.0.1:%s",
                     cfg.listen + 8);
    else if (strncmp(cfg.listen, "[::]:", 5) == 0)
        n = snprintf(c->addr, sizeof(c->addr), "[::1]:%s", cfg.listen + 5);
    else
        n = snprintf(c->addr, sizeof(c->addr), "%s", cfg.listen);
    if (n < 0 || n >= (int)sizeof(c->addr))
        return cli_error("listen address too long: %s", cfg.listen);
    return CLI_OK;
}

static int
connect_server(struct mctx *c)
{
    int rc = resolve_addr(c);

    if (rc != CLI_OK)
        return rc;
    grpc_init();
    c->grpc_up = 1;
    if (cli_rpc_connect(&c->rpc, c->addr, c->timeout_ms) != 0)
        return CLI_ERROR;
    c->connected = 1;
    return CLI_OK;
}

/* unary - one call with the timeout as its deadline */
static int
unary(struct mctx *c, const char *method, const ProtobufCMessage *req,
      const ProtobufCMessageDescriptor *desc, void *resp,
      struct cli_status *st)
{
    return cli_rpc_unary(&c->rpc, method, req, desc,
                         (ProtobufCMessage **)resp, c->timeout_ms, st);
}

static void
free_msg(void *m)
{
    if (m != NULL)
        protobuf_c_message_free_unpacked((ProtobufCMessage *)m, NULL);
}

/* get_info - GetInfo of a reference; prints the error */
static int
get_info(struct mctx *c, const struct ref *r, Buffdb__Model__ModelInfo **out)
{
    Buffdb__Model__GetInfoRequest req = BUFFDB__MODEL__GET_INFO_REQUEST__INIT;
    struct cli_status st;

    req.name = B(r->name);
    req.version = B(r->version);
    req.alias = B(r->alias);
    if (unary(c, M_GET_INFO, &req.base,
              &buffdb__model__model_info__descriptor, out, &st) != 0)
        return cli_rpc_fail(M_GET_INFO, &st);
    return CLI_OK;
}

/* ---- push ---------------------------------------------------------------- */

struct push_job {
    const char *name, *version, *framework, *description;
    char **keys, **vals; /* parameters */
    size_t nparams;
    const int64_t *in_shape, *out_shape;
    size_t n_in, n_out;
    struct pfile *files;
    size_t nfiles;
};

static int
transport_status(grpc_status_code code)
{
    return code == GRPC_STATUS_UNAVAILABLE || code == GRPC_STATUS_CANCELLED ||
           code == GRPC_STATUS_DEADLINE_EXCEEDED ||
           code == GRPC_STATUS_UNKNOWN;
}

/*
 * push_status - held[i] = what the server holds of file i of an unfinished
 * push of the same files (else all 0).  Returns CLI_OK or CLI_ERROR.
 */
static int
push_status(struct mctx *c, const struct push_job *j, uint64_t *held)
{
    Buffdb__Model__PushStatusRequest req =
        BUFFDB__MODEL__PUSH_STATUS_REQUEST__INIT;
    Buffdb__Model__PushStatusResponse *ps = NULL;
    struct cli_status st;
    uint64_t sum = 0, total = 0;

    memset(held, 0, j->nfiles * sizeof(*held));
    req.name = B(j->name);
    req.version = B(j->version);
    if (unary(c, M_PUSH_STATUS, &req.base,
              &buffdb__model__push_status_response__descriptor, &ps,
              &st) != 0) {
        if (st.code == GRPC_STATUS_NOT_FOUND)
            return CLI_OK;
        return cli_rpc_fail(M_PUSH_STATUS, &st);
    }
    int same = ps->n_files == j->nfiles;
    for (size_t i = 0; same && i < j->nfiles; i++)
        same = beq(ps->files[i]->path, j->files[i].path) &&
               ps->files[i]->size == j->files[i].size &&
               ps->files[i]->held <= j->files[i].size;
    if (same) {
        for (size_t i = 0; i < j->nfiles; i++) {
            held[i] = ps->files[i]->held;
            sum += held[i];
            total += j->files[i].size;
        }
        if (sum > 0)
            fprintf(stderr,
                    "resuming: %" PRIu64 " of %" PRIu64
                    " bytes already on the server\n",
                    sum, total);
    } else {
        fprintf(stderr,
                "buffdb: an unfinished push of %s %s has other files: it "
                "will be replaced\n",
                j->name, j->version);
    }
    free_msg(ps);
    return CLI_OK;
}

static void
print_pushed(const Buffdb__Model__ModelInfo *m)
{
    char sz[32];

    cli_format_size(sz, sizeof(sz), m->size_bytes);
    printf("pushed %.*s %.*s: %zu file%s, %s (%" PRIu64 " bytes)\n",
           BF(m->name), BF(m->version), m->n_files,
           m->n_files == 1 ? "" : "s", sz, m->size_bytes);
    for (size_t i = 0; i < m->n_files; i++)
        printf("  %.*s  %" PRIu64 "  %.*s\n", BF(m->files[i]->sha256),
               m->files[i]->size, BF(m->files[i]->path));
}

/*
 * push_model - push one version (resuming an unfinished push of the same
 * files); prints the stored info.  CLI_OK or CLI_ERROR.
 */
static int
push_model(struct mctx *c, const struct push_job *j)
{
    Buffdb__Model__ModelInfo info = BUFFDB__MODEL__MODEL_INFO__INIT;
    Buffdb__Model__PushHeader hdr = BUFFDB__MODEL__PUSH_HEADER__INIT;
    Buffdb__Model__PushRequest req = BUFFDB__MODEL__PUSH_REQUEST__INIT;
    Buffdb__Model__ModelInfo *result = NULL;
    Buffdb__Model__FileInfo *fi = xcalloc(j->nfiles + 1, sizeof(*fi));
    Buffdb__Model__FileInfo **fip = xcalloc(j->nfiles + 1, sizeof(*fip));
    Buffdb__Model__ModelInfo__ParametersEntry *pe =
        xcalloc(j->nparams + 1, sizeof(*pe));
    Buffdb__Model__ModelInfo__ParametersEntry **pep =
        xcalloc(j->nparams + 1, sizeof(*pep));
    uint64_t *held = xcalloc(j->nfiles + 1, sizeof(*held));
    uint8_t *buf = NULL;
    struct cli_stream *s = NULL;
    struct cli_progress pg;
    struct cli_status st;
    char local_err[PATH_MAX + 256] = "";
    uint64_t total = 0, done = 0;
    int rc = CLI_ERROR, cancel = 0, fd = -1;

    info.name = B(j->name);
    info.version = B(j->version);
    info.framework = B(j->framework ? j->framework : "");
    info.description = B(j->description ? j->description : "");
    info.n_input_shape = j->n_in;
    info.input_shape = (int64_t *)j->in_shape;
    info.n_output_shape = j->n_out;
    info.output_shape = (int64_t *)j->out_shape;
    for (size_t i = 0; i < j->nparams; i++) {
        buffdb__model__model_info__parameters_entry__init(&pe[i]);
        pe[i].key = j->keys[i];
        pe[i].value = j->vals[i];
        pep[i] = &pe[i];
    }
    info.n_parameters = j->nparams;
    info.parameters = pep;
    for (size_t i = 0; i < j->nfiles; i++) {
        buffdb__model__file_info__init(&fi[i]);
        fi[i].path = B(j->files[i].path);
        fi[i].size = j->files[i].size;
        fip[i] = &fi[i];
        total += j->files[i].size;
    }
    info.n_files = j->nfiles;
    info.files = fip;

    if (push_status(c, j, held) != CLI_OK)
        goto out;
    for (size_t i = 0; i < j->nfiles; i++)
        done += held[i];

    s = cli_rpc_stream_start(&c->rpc, M_PUSH);
    if (s == NULL)
        goto out;
    hdr.info = &info;
    req.msg_case = BUFFDB__MODEL__PUSH_REQUEST__MSG_HEADER;
    req.header = &hdr;
    char label[NAME_MAX_LEN * 2 + 8];
    snprintf(label, sizeof(label), "%s %s", j->name, j->version);
    cli_progress_start(&pg, label, total, done);
    if (cli_rpc_stream_send(s, &req.base) != 0)
        goto end;

    buf = xmalloc(CHUNK_SIZE);
    for (size_t i = 0; i < j->nfiles; i++) {
        const struct pfile *f = &j->files[i];
        uint64_t off = held[i];
        struct stat sb;

        if (off >= f->size)
            continue;
        fd = open(f->src, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &sb) != 0) {
            snprintf(local_err, sizeof(local_err), "could not open %s: %s",
                     f->src, strerror(errno));
            cancel = 1;
            goto end;
        }
        if ((uint64_t)sb.st_size != f->size) {
            snprintf(local_err, sizeof(local_err),
                     "%s changed size since the push started", f->src);
            cancel = 1;
            goto end;
        }
        if (off > 0 && lseek(fd, (off_t)off, SEEK_SET) < 0) {
            snprintf(local_err, sizeof(local_err), "could not seek in %s: %s",
                     f->src, strerror(errno));
            cancel = 1;
            goto end;
        }
        while (off < f->size) {
            Buffdb__Model__Chunk ch = BUFFDB__MODEL__CHUNK__INIT;
            size_t n = f->size - off < CHUNK_SIZE ? (size_t)(f->size - off)
                                                  : CHUNK_SIZE;
            ssize_t got = bfdb_read_full(fd, buf, n);
            if (got != (ssize_t)n) {
                snprintf(local_err, sizeof(local_err),
                         got < 0 ? "could not read %s: %s"
                                 : "%s became shorter while it was pushed%s",
                         f->src, got < 0 ? strerror(errno) : "");
                cancel = 1;
                goto end;
            }
            ch.file = (uint32_t)i;
            ch.offset = off;
            ch.data.len = n;
            ch.data.data = buf;
            req.msg_case = BUFFDB__MODEL__PUSH_REQUEST__MSG_CHUNK;
            req.chunk = &ch;
            /* one send in flight: wait for the previous one, post this
             * one (packed at once), then read the next chunk meanwhile */
            if (cli_rpc_stream_send_wait(s) != 0 ||
                cli_rpc_stream_send_begin(s, &req.base) != 0)
                goto end;
            off += n;
            done += n;
            cli_progress_update(&pg, done);
            bfdb_inject("cli_model_push_chunk");
            if (cli_rpc_interrupted)
                goto end; /* cli_rpc_stream_end cancels the call */
        }
        close(fd);
        fd = -1;
    }
    if (cli_rpc_stream_close_send(s) != 0)
        goto end;
    if (cli_rpc_stream_recv(s, &buffdb__model__model_info__descriptor,
                            (ProtobufCMessage **)&result) != 1)
        goto end;

end:
    if (fd >= 0)
        close(fd);
    int ended = cli_rpc_stream_end(s, cancel, &st);
    s = NULL;
    cli_progress_end(&pg, ended == 0 && result != NULL && !local_err[0]);
    if (local_err[0]) {
        cli_error("%s", local_err);
        fputs("buffdb: what was sent is kept on the server for a while: "
              "run the same command again to resume\n",
              stderr);
    } else if (st.interrupted) {
        cli_error("push interrupted: run the same command again to resume");
    } else if (ended != 0) {
        cli_rpc_fail(M_PUSH, &st);
        if (transport_status(st.code))
            fputs("buffdb: the push can be resumed: run the same command "
                  "again\n",
                  stderr);
    } else if (result == NULL) {
        cli_error("Push: the server answered no ModelInfo");
    } else {
        print_pushed(result);
        rc = CLI_OK;
    }
out:
    free_msg(result);
    free(buf);
    free(held);
    free(fi);
    free(fip);
    free(pe);
    free(pep);
    return rc;
}

/* collect_params - --param K=V... into keys/vals (the last of a key wins) */
static int
collect_params(struct mctx *c, struct push_job *j)
{
    j->keys = xcalloc((size_t)c->nparams + 1, sizeof(char *));
    j->vals = xcalloc((size_t)c->nparams + 1, sizeof(char *));
    j->nparams = 0;
    for (int i = 0; i < c->nparams; i++) {
        char *eq = strchr(c->params[i], '=');
        if (eq == NULL || eq == c->params[i])
            return cli_usage_error("model %s: --param wants KEY=VALUE, not "
                                   "'%s'",
                                   c->cmd->name, c->params[i]);
        size_t kl = (size_t)(eq - c->params[i]);
        size_t k;
        for (k = 0; k < j->nparams; k++)
            if (strlen(j->keys[k]) == kl &&
                memcmp(j->keys[k], c->params[i], kl) == 0)
                break;
        if (k == j->nparams) {
            j->keys[k] = xmalloc(kl + 1);
            memcpy(j->keys[k], c->params[i], kl);
            j->keys[k][kl] = '\0';
            j->nparams++;
        }
        j->vals[k] = eq + 1;
    }
    return CLI_OK;
}

static void
free_params(struct push_job *j)
{
    for (size_t k = 0; k < j->nparams; k++)
        free(j->keys[k]);
    free(j->keys);
    free(j->vals);
}

static int
cmd_push(struct mctx *c)
{
    struct push_job j;
    int rc;

    memset(&j, 0, sizeof(j));
    j.name = c->pos[0];
    j.version = c->pos[1];
    if (check_name(c, "model name", j.name) != 0 ||
        check_name(c, "version", j.version) != 0)
        return CLI_USAGE;
    j.framework = opt(c, O_FRAMEWORK);
    j.description = opt(c, O_DESC);
    j.in_shape = c->in_shape;
    j.n_in = c->n_in;
    j.out_shape = c->out_shape;
    j.n_out = c->n_out;
    if ((rc = collect_params(c, &j)) != CLI_OK) {
        free_params(&j);
        return rc;
    }
    j.nfiles = (size_t)c->npos - 2;
    j.files = xcalloc(j.nfiles, sizeof(*j.files));
    rc = CLI_OK;
    for (size_t i = 0; i < j.nfiles && rc == CLI_OK; i++) {
        const char *src = c->pos[2 + i];
        struct stat sb;
        const char *slash = strrchr(src, '/');
        const char *base = slash ? slash + 1 : src;

        if (stat(src, &sb) != 0)
            rc = cli_error("could not stat %s: %s", src, strerror(errno));
        else if (!S_ISREG(sb.st_mode))
            rc = cli_error("%s is not a regular file", src);
        else if (*base == '\0' || !safe_rel_path(base))
            rc = cli_usage_error("model push: '%s' does not end in a file "
                                 "name",
                                 src);
        for (size_t k = 0; rc == CLI_OK && k < i; k++)
            if (strcmp(j.files[k].path, base) == 0)
                rc = cli_usage_error("model push: two files are named '%s' "
                                     "(%s and %s)",
                                     base, j.files[k].src, src);
        if (rc != CLI_OK)
            break;
        j.files[i].src = xstrdup(src);
        j.files[i].path = xstrdup(base);
        j.files[i].size = (uint64_t)sb.st_size;
    }
    if (rc == CLI_OK)
        rc = connect_server(c);
    if (rc == CLI_OK)
        rc = push_model(c, &j);
    pfiles_free(j.files, j.nfiles);
    free_params(&j);
    return rc;
}

/* ---- pull ---------------------------------------------------------------- */

/* one file being pulled */
struct pull {
    const char *dir;
    const Buffdb__Model__ModelInfo *info;
    size_t cur;       /* the file being written */
    uint64_t pos;     /* bytes of it written */
    int fd;           /* its .part, or -1 */
    bfdb_sha256 *h;   /* its digest so far (NULL until opened) */
    char final[PATH_MAX];
    char part[PATH_MAX];
    char err[PATH_MAX + 256];
};

static int
pull_paths(struct pull *p, size_t i)
{
    ProtobufCBinaryData path = p->info->files[i]->path;
    char rel[PATH_MAX];

    if (path.len >= sizeof(rel) || memchr(path.data, '\0', path.len)) {
        snprintf(p->err, sizeof(p->err), "the server sent a bad file path");
        return -1;
    }
    memcpy(rel, path.data, path.len);
    rel[path.len] = '\0';
    if (!safe_rel_path(rel)) {
        snprintf(p->err, sizeof(p->err),
                 "the server sent an unsafe file path '%s'", rel);
        return -1;
    }
    if (snprintf(p->final, sizeof(p->final), "%s/%s", p->dir, rel) >=
            (int)sizeof(p->final) ||
        snprintf(p->part, sizeof(p->part), "%s.part", p->final) >=
            (int)sizeof(p->part)) {
        snprintf(p->err, sizeof(p->err), "path too long: %s/%s", p->dir, rel);
        return -1;
    }
    return 0;
}

/* pull_open - open file cur's .part at pos (hashing what it holds) */
static int
pull_open(struct pull *p)
{
    char parent[PATH_MAX];

    if (pull_paths(p, p->cur) != 0)
        return -1;
    snprintf(parent, sizeof(parent), "%s", p->final);
    char *slash = strrchr(parent, '/');
    if (slash != NULL) {
        *slash = '\0';
        if (mkdirs(parent) != 0) {
            snprintf(p->err, sizeof(p->err), "could not create %s: %s",
                     parent, strerror(errno));
            return -1;
        }
    }
    p->h = bfdb_sha256_new();
    if (p->pos > 0 && sha256_file(p->part, p->pos, p->h, NULL) != 0) {
        p->pos = 0; /* unreadable: start the file again */
        bfdb_sha256_free(p->h);
        p->h = bfdb_sha256_new();
    }
    p->fd = open(p->part, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
    if (p->fd < 0 || ftruncate(p->fd, (off_t)p->pos) != 0 ||
        lseek(p->fd, (off_t)p->pos, SEEK_SET) < 0) {
        snprintf(p->err, sizeof(p->err), "could not write %s: %s", p->part,
                 strerror(errno));
        return -1;
    }
    return 0;
}

/* pull_finish - file cur is complete: check its digest, rename it */
static int
pull_finish(struct pull *p)
{
    const Buffdb__Model__FileInfo *f = p->info->files[p->cur];
    uint8_t d[BFDB_DIGEST_LEN];
    char got[HEX_LEN + 1];

    if (p->fd < 0 && pull_open(p) != 0)
        return -1;
    bfdb_sha256_final(p->h, d);
    bfdb_sha256_free(p->h);
    p->h = NULL;
    hex(d, sizeof(d), got);
    /* on disk before it takes its name: a crash never leaves a short
     * file under the final name */
    int synced = fsync(p->fd);
    if (close(p->fd) != 0 || synced != 0) {
        p->fd = -1;
        snprintf(p->err, sizeof(p->err), "could not write %s: %s", p->part,
                 strerror(errno));
        return -1;
    }
    p->fd = -1;
    if (f->sha256.len > 0 && !beq(f->sha256, got)) {
        unlink(p->part);
        snprintf(p->err, sizeof(p->err),
                 "%s: SHA-256 %s, expected %.*s (the partial file was "
                 "removed: run the command again)",
                 p->final, got, BF(f->sha256));
        return -1;
    }
    if (rename(p->part, p->final) != 0) {
        snprintf(p->err, sizeof(p->err), "could not rename %s: %s", p->part,
                 strerror(errno));
        return -1;
    }
    p->cur++;
    p->pos = 0;
    return 0;
}

/* pull_chunk - write one chunk where it belongs */
static int
pull_chunk(struct pull *p, const Buffdb__Model__Chunk *ch)
{
    const Buffdb__Model__ModelInfo *m = p->info;

    if (ch->file >= m->n_files || ch->file < p->cur) {
        snprintf(p->err, sizeof(p->err),
                 "the server sent a chunk of file %u out of order", ch->file);
        return -1;
    }
    /* files before this one must be complete (empty files get no chunk) */
    while (p->cur < ch->file) {
        if (p->pos != m->files[p->cur]->size) {
            snprintf(p->err, sizeof(p->err),
                     "the server skipped bytes of file %zu", p->cur);
            return -1;
        }
        if (pull_finish(p) != 0)
            return -1;
    }
    if (p->fd < 0 && pull_open(p) != 0)
        return -1;
    if (ch->offset > p->pos) {
        snprintf(p->err, sizeof(p->err),
                 "the server skipped bytes of file %zu (offset %" PRIu64
                 ", expected %" PRIu64 ")",
                 p->cur, ch->offset, p->pos);
        return -1;
    }
    uint64_t skip = p->pos - ch->offset; /* bytes already written */
    if (skip >= ch->data.len)
        return 0;
    size_t n = ch->data.len - (size_t)skip;
    if (p->pos + n > m->files[p->cur]->size) {
        snprintf(p->err, sizeof(p->err),
                 "the server sent more bytes than file %zu has", p->cur);
        return -1;
    }
    if (bfdb_write_full(p->fd, ch->data.data + skip, n) != 0) {
        snprintf(p->err, sizeof(p->err), "could not write %s: %s", p->part,
                 strerror(errno));
        return -1;
    }
    bfdb_sha256_update(p->h, ch->data.data + skip, n);
    p->pos += n;
    if (p->pos == m->files[p->cur]->size)
        return pull_finish(p);
    return 0;
}

/*
 * file_done - 1 if file i is already in place (final name, right size and
 * digest); a complete .part that checks out is renamed first.  Otherwise
 * 0 with *resume = the size of a usable .part (0 if none).
 */
static int
file_done(struct pull *p, size_t i, uint64_t *resume)
{
    const Buffdb__Model__FileInfo *f = p->info->files[i];
    char got[HEX_LEN + 1];
    struct stat sb;

    *resume = 0;
    if (pull_paths(p, i) != 0 || f->sha256.len == 0)
        return 0;
    if (stat(p->final, &sb) == 0 && S_ISREG(sb.st_mode) &&
        (uint64_t)sb.st_size == f->size &&
        sha256_file(p->final, f->size, NULL, got) == 0 && beq(f->sha256, got))
        return 1;
    if (stat(p->part, &sb) != 0 || !S_ISREG(sb.st_mode))
        return 0;
    if ((uint64_t)sb.st_size < f->size) {
        *resume = (uint64_t)sb.st_size;
        return 0;
    }
    if ((uint64_t)sb.st_size == f->size &&
        sha256_file(p->part, f->size, NULL, got) == 0 &&
        beq(f->sha256, got) && rename(p->part, p->final) == 0)
        return 1;
    return 0; /* too long or wrong: written again from 0 */
}

static int
cmd_pull(struct mctx *c)
{
    struct ref r;
    const char *dir = opt(c, O_OUTDIR) ? opt(c, O_OUTDIR) : ".";
    Buffdb__Model__ModelInfo *info = NULL, *first = NULL;
    Buffdb__Model__PullRequest req = BUFFDB__MODEL__PULL_REQUEST__INIT;
    Buffdb__Model__PullResponse *resp = NULL;
    struct cli_stream *s = NULL;
    struct cli_progress pg;
    struct cli_status st;
    struct pull p;
    char rt[3 * NAME_MAX_LEN];
    char *name = NULL, *version = NULL;
    uint64_t done = 0, resume = 0;
    size_t start;
    int rc, ok = 0;

    if (*dir == '\0')
        return cli_usage_error("model pull: -o needs a directory");
    if (parse_ref(c, c->pos[0], &r) != 0)
        return CLI_USAGE;
    if ((rc = connect_server(c)) != CLI_OK)
        return rc;
    if ((rc = get_info(c, &r, &info)) != CLI_OK)
        return rc;
    rc = CLI_ERROR;
    name = bdup(info->name);
    version = bdup(info->version);
    if (mkdirs(dir) != 0) {
        cli_error("could not create %s: %s", dir, strerror(errno));
        goto out;
    }
    memset(&p, 0, sizeof(p));
    p.dir = dir;
    p.info = info;
    p.fd = -1;
    for (start = 0; start < info->n_files; start++) {
        if (!file_done(&p, start, &resume))
            break;
        done += info->files[start]->size;
    }
    if (p.err[0]) {
        cli_error("%s", p.err);
        goto out;
    }
    if (start == info->n_files) {
        printf("%s %s: up to date in %s (%zu file%s)\n", name, version, dir,
               info->n_files, info->n_files == 1 ? "" : "s");
        rc = CLI_OK;
        goto out;
    }
    if (done + resume > 0)
        fprintf(stderr,
                "resuming: %" PRIu64 " of %" PRIu64
                " bytes already in %s\n",
                done + resume, info->size_bytes, dir);

    p.cur = start;
    p.pos = resume;
    req.name = info->name;
    req.version = info->version;
    req.file = (uint32_t)start;
    req.offset = resume;
    s = cli_rpc_stream_start(&c->rpc, M_PULL);
    if (s == NULL)
        goto out;
    snprintf(rt, sizeof(rt), "%s %s", name, version);
    cli_progress_start(&pg, rt, info->size_bytes, done + resume);
    if (cli_rpc_stream_send(s, &req.base) != 0 ||
        cli_rpc_stream_close_send(s) != 0)
        goto end;
    for (;;) {
        int got = cli_rpc_stream_recv(
            s, &buffdb__model__pull_response__descriptor,
            (ProtobufCMessage **)&resp);
        if (got < 0)
            goto end;
        if (got == 0)
            break;
        if (resp->msg_case == BUFFDB__MODEL__PULL_RESPONSE__MSG_INFO) {
            Buffdb__Model__ModelInfo *mi = resp->info;
            int same = first == NULL && mi != NULL &&
                       mi->n_files == info->n_files &&
                       beq(mi->version, version);
            for (size_t i = 0; same && i < mi->n_files; i++)
                same = mi->files[i]->size == info->files[i]->size;
            if (!same) {
                snprintf(p.err, sizeof(p.err),
                         "Pull: the server's info does not match GetInfo's");
                goto end;
            }
            first = mi;
            resp->info = NULL;
        } else if (resp->msg_case ==
                       BUFFDB__MODEL__PULL_RESPONSE__MSG_CHUNK &&
                   resp->chunk != NULL) {
            size_t before_file = p.cur;
            if (first == NULL) {
                snprintf(p.err, sizeof(p.err),
                         "Pull: the server sent chunks before the info");
                goto end;
            }
            if (pull_chunk(&p, resp->chunk) != 0)
                goto end;
            /* done: the files before p.cur, whole, plus p.pos */
            for (size_t i = before_file; i < p.cur; i++)
                done += info->files[i]->size;
            cli_progress_update(&pg, done + p.pos);
        }
        free_msg(resp);
        resp = NULL;
    }
    /* the stream is over: whatever is left must be empty files */
    while (p.cur < info->n_files) {
        if (p.pos != info->files[p.cur]->size) {
            snprintf(p.err, sizeof(p.err),
                     "the server ended the stream before the end of file "
                     "%zu",
                     p.cur);
            goto end;
        }
        if (pull_finish(&p) != 0)
            goto end;
    }
    ok = 1;
end:
    free_msg(resp);
    if (p.fd >= 0)
        close(p.fd);
    if (p.h != NULL)
        bfdb_sha256_free(p.h);
    if (s != NULL) {
        int ended = cli_rpc_stream_end(s, !ok, &st);
        cli_progress_end(&pg, ok && ended == 0);
        if (st.interrupted)
            cli_error("pull interrupted: run the same command again to "
                      "resume");
        else if (p.err[0])
            cli_error("%s", p.err);
        else if (ended != 0)
            cli_rpc_fail(M_PULL, &st);
        else if (!ok)
            cli_error("Pull: the stream ended early");
        else {
            char sz[32];
            cli_format_size(sz, sizeof(sz), info->size_bytes);
            printf("pulled %s %s: %zu file%s, %s into %s\n", name, version,
                   info->n_files, info->n_files == 1 ? "" : "s", sz, dir);
            rc = CLI_OK;
        }
    }
out:
    free_msg(first);
    free_msg(info);
    free(name);
    free(version);
    return rc;
}

/* ---- ls, info ------------------------------------------------------------ */

static int
cmd_ls(struct mctx *c)
{
    struct cli_status st;
    int exact = flag(c, O_BYTES), rc;

    if (c->npos == 1 && check_name(c, "model name", c->pos[0]) != 0)
        return CLI_USAGE;
    if ((rc = connect_server(c)) != CLI_OK)
        return rc;
    if (c->npos == 0) {
        Buffdb__Model__ListModelsRequest req =
            BUFFDB__MODEL__LIST_MODELS_REQUEST__INIT;
        Buffdb__Model__ListModelsResponse *resp = NULL;
        if (unary(c, M_LIST_MODELS, &req.base,
                  &buffdb__model__list_models_response__descriptor, &resp,
                  &st) != 0)
            return cli_rpc_fail(M_LIST_MODELS, &st);
        size_t n = resp->n_models + 1;
        char ***rows = xcalloc(n, sizeof(char **));
        static const char *const head[] = {"NAME", "VERSIONS", "LATEST",
                                           "SIZE", "ALIASES"};
        rows[0] = xcalloc(5, sizeof(char *));
        for (int k = 0; k < 5; k++)
            rows[0][k] = xstrdup(head[k]);
        for (size_t i = 0; i < resp->n_models; i++) {
            const Buffdb__Model__ModelSummary *m = resp->models[i];
            char num[32], *al;
            size_t cap = 1, len = 0;
            char **row = rows[i + 1] = xcalloc(5, sizeof(char *));
            row[0] = bdup(m->name);
            snprintf(num, sizeof(num), "%u", m->versions);
            row[1] = xstrdup(num);
            row[2] = bdup(m->latest);
            row[3] = size_text(m->size_bytes, exact);
            for (size_t a = 0; a < m->n_aliases; a++)
                cap += strlen(m->aliases[a]->key) +
                       strlen(m->aliases[a]->value) + 2;
            al = xmalloc(cap + 1);
            al[0] = '\0';
            for (size_t a = 0; a < m->n_aliases; a++)
                len += (size_t)snprintf(al + len, cap + 1 - len, "%s%s=%s",
                                        a ? "," : "", m->aliases[a]->key,
                                        m->aliases[a]->value);
            if (m->n_aliases == 0)
                snprintf(al, cap + 1, "-");
            row[4] = al;
        }
        print_table(rows, n, 5);
        for (size_t i = 0; i < n; i++) {
            for (int k = 0; k < 5; k++)
                free(rows[i][k]);
            free(rows[i]);
        }
        free(rows);
        free_msg(resp);
        return CLI_OK;
    }

    Buffdb__Model__ListVersionsRequest req =
        BUFFDB__MODEL__LIST_VERSIONS_REQUEST__INIT;
    Buffdb__Model__ListVersionsResponse *resp = NULL;
    req.name = B(c->pos[0]);
    if (unary(c, M_LIST_VERSIONS, &req.base,
              &buffdb__model__list_versions_response__descriptor, &resp,
              &st) != 0)
        return cli_rpc_fail(M_LIST_VERSIONS, &st);
    size_t n = resp->n_versions + 1;
    char ***rows = xcalloc(n, sizeof(char **));
    static const char *const head[] = {"VERSION", "CREATED", "SIZE",
                                       "FRAMEWORK", "ALIASES"};
    rows[0] = xcalloc(5, sizeof(char *));
    for (int k = 0; k < 5; k++)
        rows[0][k] = xstrdup(head[k]);
    for (size_t i = 0; i < resp->n_versions; i++) {
        const Buffdb__Model__VersionSummary *v = resp->versions[i];
        char **row = rows[i + 1] = xcalloc(5, sizeof(char *));
        size_t cap = 2, len = 0;
        row[0] = bdup(v->version);
        row[1] = v->created_at.len ? bdup(v->created_at) : xstrdup("-");
        row[2] = size_text(v->size_bytes, exact);
        row[3] = v->framework.len ? bdup(v->framework) : xstrdup("-");
        for (size_t a = 0; a < v->n_aliases; a++)
            cap += v->aliases[a].len + 1;
        row[4] = xmalloc(cap);
        row[4][0] = '\0';
        for (size_t a = 0; a < v->n_aliases; a++)
            len += (size_t)snprintf(row[4] + len, cap - len, "%s%.*s",
                                    a ? "," : "", BF(v->aliases[a]));
        if (v->n_aliases == 0)
            snprintf(row[4], cap, "-");
    }
    print_table(rows, n, 5);
    for (size_t i = 0; i < n; i++) {
        for (int k = 0; k < 5; k++)
            free(rows[i][k]);
        free(rows[i]);
    }
    free(rows);
    free_msg(resp);
    return CLI_OK;
}

static int
cmp_param(const void *a, const void *b)
{
    const Buffdb__Model__ModelInfo__ParametersEntry *const *x = a;
    const Buffdb__Model__ModelInfo__ParametersEntry *const *y = b;
    return strcmp((*x)->key, (*y)->key);
}

static void
print_dims(const char *label, const int64_t *d, size_t n)
{
    printf("%-14s[", label);
    for (size_t i = 0; i < n; i++)
        printf("%s%" PRId64, i ? ", " : "", d[i]);
    printf("]\n");
}

/* print_info - the readable form of a ModelInfo */
static void
print_info(const Buffdb__Model__ModelInfo *m, int tensors)
{
    char sz[32];

    printf("%-14s%.*s\n", "name:", BF(m->name));
    printf("%-14s%.*s\n", "version:", BF(m->version));
    if (m->n_aliases) {
        printf("%-14s", "aliases:");
        for (size_t i = 0; i < m->n_aliases; i++)
            printf("%s%.*s", i ? ", " : "", BF(m->aliases[i]));
        printf("\n");
    }
    if (m->framework.len)
        printf("%-14s%.*s\n", "framework:", BF(m->framework));
    if (m->description.len)
        printf("%-14s%.*s\n", "description:", BF(m->description));
    printf("%-14s%.*s\n", "created:", BF(m->created_at));
    cli_format_size(sz, sizeof(sz), m->size_bytes);
    printf("%-14s%s (%" PRIu64 " bytes)\n", "size:", sz, m->size_bytes);
    if (m->n_input_shape)
        print_dims("input shape:", m->input_shape, m->n_input_shape);
    if (m->n_output_shape)
        print_dims("output shape:", m->output_shape, m->n_output_shape);
    if (m->tensor_count || m->n_tensors) {
        printf("%-14s%" PRIu64, "tensors:",
               m->tensor_count ? m->tensor_count : (uint64_t)m->n_tensors);
        if (m->parameter_count)
            printf(", %" PRIu64 " parameters", m->parameter_count);
        for (size_t i = 0; i < m->n_dtypes; i++)
            printf("%s%.*s", i ? ", " : " (", BF(m->dtypes[i]));
        printf("%s\n", m->n_dtypes ? ")" : "");
    }
    if (m->n_parameters) {
        Buffdb__Model__ModelInfo__ParametersEntry **ps =
            xcalloc(m->n_parameters, sizeof(*ps));
        memcpy(ps, m->parameters, m->n_parameters * sizeof(*ps));
        qsort(ps, m->n_parameters, sizeof(*ps), cmp_param);
        printf("parameters:\n");
        for (size_t i = 0; i < m->n_parameters; i++)
            printf("  %s = %s\n", ps[i]->key, ps[i]->value);
        free(ps);
    }
    printf("files:\n");
    for (size_t i = 0; i < m->n_files; i++) {
        const Buffdb__Model__FileInfo *f = m->files[i];
        printf("  %.*s  %12" PRIu64 "  %.*s", BF(f->sha256), f->size,
               BF(f->path));
        if (f->format.len)
            printf("  (%.*s)", BF(f->format));
        printf("\n");
    }
    if (tensors && m->n_tensors) {
        printf("tensor list:\n");
        for (size_t i = 0; i < m->n_tensors; i++) {
            const Buffdb__Model__TensorInfo *t = m->tensors[i];
            printf("  %.*s  %.*s  [", BF(t->name), BF(t->dtype));
            for (size_t k = 0; k < t->n_shape; k++)
                printf("%s%" PRIu64, k ? ", " : "", t->shape[k]);
            printf("]  %.*s\n", BF(t->file));
        }
    }
}

/* jstr - a binary field as a JSON string (null if it is not UTF-8) */
static json_t *
jstr(ProtobufCBinaryData b)
{
    return b.len ? json_stringn((const char *)b.data, b.len) : json_string("");
}

/* print_json - upstream's ModelInfo JSON (the model:<n>:<v>:metadata
 * value): name, version, framework, description, input_shape,
 * output_shape, parameters, created_at, size_bytes, blob_ids */
static int
print_json(const Buffdb__Model__ModelInfo *m)
{
    json_t *o = json_object(), *a, *p;

    json_object_set_new(o, "name", jstr(m->name));
    json_object_set_new(o, "version", jstr(m->version));
    json_object_set_new(o, "framework", jstr(m->framework));
    json_object_set_new(o, "description", jstr(m->description));
    a = json_array();
    for (size_t i = 0; i < m->n_input_shape; i++)
        json_array_append_new(a, json_integer(m->input_shape[i]));
    json_object_set_new(o, "input_shape", a);
    a = json_array();
    for (size_t i = 0; i < m->n_output_shape; i++)
        json_array_append_new(a, json_integer(m->output_shape[i]));
    json_object_set_new(o, "output_shape", a);
    p = json_object();
    for (size_t i = 0; i < m->n_parameters; i++)
        json_object_set_new(p, m->parameters[i]->key,
                            json_string(m->parameters[i]->value));
    json_object_set_new(o, "parameters", p);
    json_object_set_new(o, "created_at", jstr(m->created_at));
    json_object_set_new(o, "size_bytes",
                        json_integer((json_int_t)m->size_bytes));
    a = json_array();
    for (size_t i = 0; i < m->n_blob_ids; i++)
        json_array_append_new(a, json_integer((json_int_t)m->blob_ids[i]));
    json_object_set_new(o, "blob_ids", a);
    char *text = json_dumps(o, JSON_INDENT(2));
    json_decref(o);
    if (text == NULL)
        return cli_error("could not format the JSON");
    int rc = cli_write_out(text, strlen(text)) == 0 &&
                     cli_write_out("\n", 1) == 0
                 ? CLI_OK
                 : CLI_ERROR;
    free(text);
    return rc;
}

static int
cmd_info(struct mctx *c)
{
    Buffdb__Model__ModelInfo *m = NULL;
    struct ref r;
    int rc;

    if (parse_ref(c, c->pos[0], &r) != 0)
        return CLI_USAGE;
    if ((rc = connect_server(c)) != CLI_OK)
        return rc;
    if ((rc = get_info(c, &r, &m)) != CLI_OK)
        return rc;
    if (flag(c, O_JSON))
        rc = print_json(m);
    else
        print_info(m, flag(c, O_TENSORS));
    free_msg(m);
    return rc;
}

/* ---- rm, tag, verify, status, abort -------------------------------------- */

static int
cmd_rm(struct mctx *c)
{
    Buffdb__Model__DeleteVersionRequest req =
        BUFFDB__MODEL__DELETE_VERSION_REQUEST__INIT;
    Buffdb__Model__DeleteVersionResponse *resp = NULL;
    struct cli_status st;
    char sz[32];
    int rc;

    if (check_name(c, "model name", c->pos[0]) != 0 ||
        check_name(c, "version", c->pos[1]) != 0)
        return CLI_USAGE;
    if ((rc = connect_server(c)) != CLI_OK)
        return rc;
    req.name = B(c->pos[0]);
    req.version = B(c->pos[1]);
    req.force = flag(c, O_FORCE);
    if (unary(c, M_DELETE_VERSION, &req.base,
              &buffdb__model__delete_version_response__descriptor, &resp,
              &st) != 0)
        return cli_rpc_fail(M_DELETE_VERSION, &st);
    cli_format_size(sz, sizeof(sz), resp->bytes_freed);
    printf("deleted %s %s: freed %" PRIu64 " part%s, %s (%" PRIu64
           " bytes)\n",
           c->pos[0], c->pos[1], resp->parts_freed,
           resp->parts_freed == 1 ? "" : "s", sz, resp->bytes_freed);
    if (resp->n_aliases_removed) {
        printf("removed alias%s:", resp->n_aliases_removed == 1 ? "" : "es");
        for (size_t i = 0; i < resp->n_aliases_removed; i++)
            printf(" %.*s", BF(resp->aliases_removed[i]));
        printf("\n");
    }
    free_msg(resp);
    return CLI_OK;
}

/* set_alias - SetAlias; version "" removes */
static int
set_alias(struct mctx *c, const char *name, const char *version,
          const char *alias)
{
    Buffdb__Model__SetAliasRequest req = BUFFDB__MODEL__SET_ALIAS_REQUEST__INIT;
    Buffdb__Model__SetAliasResponse *resp = NULL;
    struct cli_status st;
    int rc;

    if (check_name(c, "model name", name) != 0 ||
        (*version && check_name(c, "version", version) != 0) ||
        check_name(c, "alias", alias) != 0)
        return CLI_USAGE;
    if ((rc = connect_server(c)) != CLI_OK)
        return rc;
    req.name = B(name);
    req.alias = B(alias);
    req.version = B(version);
    if (unary(c, M_SET_ALIAS, &req.base,
              &buffdb__model__set_alias_response__descriptor, &resp,
              &st) != 0)
        return cli_rpc_fail(M_SET_ALIAS, &st);
    if (*version == '\0') {
        if (resp->previous.len)
            printf("removed %s@%s (was %.*s)\n", name, alias,
                   BF(resp->previous));
        else
            printf("%s@%s was not set\n", name, alias);
    } else if (resp->previous.len && !beq(resp->previous, version)) {
        printf("%s@%s -> %s (was %.*s)\n", name, alias, version,
               BF(resp->previous));
    } else {
        printf("%s@%s -> %s\n", name, alias, version);
    }
    free_msg(resp);
    return CLI_OK;
}

static int
cmd_tag(struct mctx *c)
{
    return set_alias(c, c->pos[0], c->pos[1], c->pos[2]);
}

static int
cmd_untag(struct mctx *c)
{
    return set_alias(c, c->pos[0], "", c->pos[1]);
}

static int
cmd_verify(struct mctx *c)
{
    Buffdb__Model__VerifyRequest req = BUFFDB__MODEL__VERIFY_REQUEST__INIT;
    Buffdb__Model__VerifyResponse *resp = NULL;
    struct cli_status st;
    struct ref r;
    char rt[3 * NAME_MAX_LEN], sz[32];
    int rc;

    if (parse_ref(c, c->pos[0], &r) != 0)
        return CLI_USAGE;
    if ((rc = connect_server(c)) != CLI_OK)
        return rc;
    req.name = B(r.name);
    req.version = B(r.version);
    req.alias = B(r.alias);
    /* Verify reads every byte back: no deadline unless --timeout */
    if (cli_rpc_unary(&c->rpc, M_VERIFY, &req.base,
                      &buffdb__model__verify_response__descriptor,
                      (ProtobufCMessage **)&resp,
                      c->timeout_set ? c->timeout_ms : 0, &st) != 0)
        return cli_rpc_fail(M_VERIFY, &st);
    for (size_t i = 0; i < resp->n_files; i++) {
        const Buffdb__Model__FileCheck *f = resp->files[i];
        if (f->ok)
            printf("ok      %.*s\n", BF(f->path));
        else
            printf("FAILED  %.*s: %.*s\n", BF(f->path), BF(f->error));
    }
    cli_format_size(sz, sizeof(sz), resp->bytes_checked);
    printf("%s: %s, %s checked\n", ref_text(&r, rt, sizeof(rt)),
           resp->ok ? "ok" : "FAILED", sz);
    rc = resp->ok ? CLI_OK : CLI_FALSE;
    free_msg(resp);
    return rc;
}

static int
cmd_status(struct mctx *c)
{
    Buffdb__Model__PushStatusRequest req =
        BUFFDB__MODEL__PUSH_STATUS_REQUEST__INIT;
    Buffdb__Model__PushStatusResponse *resp = NULL;
    struct cli_status st;
    int rc;

    if (check_name(c, "model name", c->pos[0]) != 0 ||
        check_name(c, "version", c->pos[1]) != 0)
        return CLI_USAGE;
    if ((rc = connect_server(c)) != CLI_OK)
        return rc;
    req.name = B(c->pos[0]);
    req.version = B(c->pos[1]);
    if (unary(c, M_PUSH_STATUS, &req.base,
              &buffdb__model__push_status_response__descriptor, &resp,
              &st) != 0)
        return cli_rpc_fail(M_PUSH_STATUS, &st);
    printf("unfinished push of %s %s: %" PRIu64 " of %" PRIu64
           " bytes held\n",
           c->pos[0], c->pos[1], resp->held_bytes, resp->total_bytes);
    for (size_t i = 0; i < resp->n_files; i++)
        printf("  %" PRIu64 "/%" PRIu64 "  %.*s\n", resp->files[i]->held,
               resp->files[i]->size, BF(resp->files[i]->path));
    free_msg(resp);
    return CLI_OK;
}

static int
cmd_abort(struct mctx *c)
{
    Buffdb__Model__AbortPushRequest req =
        BUFFDB__MODEL__ABORT_PUSH_REQUEST__INIT;
    Buffdb__Model__AbortPushResponse *resp = NULL;
    struct cli_status st;
    int rc;

    if (check_name(c, "model name", c->pos[0]) != 0 ||
        check_name(c, "version", c->pos[1]) != 0)
        return CLI_USAGE;
    if ((rc = connect_server(c)) != CLI_OK)
        return rc;
    req.name = B(c->pos[0]);
    req.version = B(c->pos[1]);
    if (unary(c, M_ABORT_PUSH, &req.base,
              &buffdb__model__abort_push_response__descriptor, &resp,
              &st) != 0)
        return cli_rpc_fail(M_ABORT_PUSH, &st);
    printf("abandoned the unfinished push of %s %s: freed %" PRIu64
           " part%s\n",
           c->pos[0], c->pos[1], resp->parts_freed,
           resp->parts_freed == 1 ? "" : "s");
    free_msg(resp);
    return CLI_OK;
}

/* ---- import-hf ----------------------------------------------------------- */

/*
 * A Hugging Face hub cache (huggingface_hub's layout):
 *   hub/models--ORG--NAME/refs/main             the commit "main" names
 *   hub/models--ORG--NAME/snapshots/REV/PATH    symlinks into blobs/
 *   hub/models--ORG--NAME/blobs/HASH            the file contents
 * One model directory or the hub directory (or its parent) holding
 * several.  Each snapshot imported is one version: REV, unless --version.
 */
struct hf_snap {
    char *name;
    char *version;
    char *rev;
    char *dir;    /* snapshots/REV */
    struct pfile *files;
    size_t nfiles, cap;
    uint64_t total;
};

struct hf_list {
    struct hf_snap *v;
    size_t n, cap;
};

static int
is_dir(const char *path)
{
    struct stat sb;

    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static char *
join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *p = xmalloc(la + lb + 2);

    memcpy(p, a, la);
    p[la] = '/';
    memcpy(p + la + 1, b, lb + 1);
    if (la == 0)
        memmove(p, p + 1, lb + 1);
    return p;
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* sorted_entries - the names in dir except . and .., sorted; NULL + errno */
static char **
sorted_entries(const char *dir, size_t *n)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char **v = NULL;
    size_t cap = 0;

    *n = 0;
    if (d == NULL)
        return NULL;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (*n + 1 >= cap) {
            cap = cap ? cap * 2 : 16;
            v = xrealloc(v, cap * sizeof(*v));
        }
        v[(*n)++] = xstrdup(e->d_name);
    }
    closedir(d);
    if (v == NULL)
        v = xcalloc(1, sizeof(*v));
    qsort(v, *n, sizeof(*v), cmp_str);
    return v;
}

static void
free_entries(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* hf_walk - add the files under snap->dir/rel (rel "" at the top) */
static int
hf_walk(struct hf_snap *snap, const char *rel)
{
    char *dir = *rel ? join(snap->dir, rel) : xstrdup(snap->dir);
    size_t n;
    char **names = sorted_entries(dir, &n);
    int rc = CLI_OK;

    if (names == NULL) {
        rc = cli_error("could not read %s: %s", dir, strerror(errno));
        free(dir);
        return rc;
    }
    for (size_t i = 0; i < n && rc == CLI_OK; i++) {
        char *full = join(dir, names[i]);
        char *r = *rel ? join(rel, names[i]) : xstrdup(names[i]);
        struct stat lsb, sb;

        if (lstat(full, &lsb) != 0) {
            rc = cli_error("could not stat %s: %s", full, strerror(errno));
        } else if (S_ISDIR(lsb.st_mode)) {
            rc = hf_walk(snap, r);
        } else if (S_ISREG(lsb.st_mode) || S_ISLNK(lsb.st_mode)) {
            if (stat(full, &sb) != 0) {
                rc = cli_error("%s: its blob is missing (%s): an incomplete "
                               "download?",
                               full, strerror(errno));
            } else if (S_ISREG(sb.st_mode)) {
                if (snap->nfiles == snap->cap) {
                    snap->cap = snap->cap ? snap->cap * 2 : 16;
                    snap->files = xrealloc(snap->files,
                                           snap->cap * sizeof(*snap->files));
                }
                struct pfile *f = &snap->files[snap->nfiles++];
                f->path = r;
                f->src = full;
                f->size = (uint64_t)sb.st_size;
                snap->total += f->size;
                r = full = NULL;
            } else {
                fprintf(stderr, "buffdb: warning: skipping %s (not a file)\n",
                        full);
            }
        } else {
            fprintf(stderr, "buffdb: warning: skipping %s (not a file)\n",
                    full);
        }
        free(full);
        free(r);
    }
    free_entries(names, n);
    free(dir);
    return rc;
}

static int
cmp_pfile(const void *a, const void *b)
{
    return strcmp(((const struct pfile *)a)->path,
                  ((const struct pfile *)b)->path);
}

/* hf_add_snapshot - one snapshot of one model directory */
static int
hf_add_snapshot(struct hf_list *l, const char *mdir, const char *name,
                const char *rev, const char *version)
{
    char *snaps = join(mdir, "snapshots");
    struct hf_snap s;
    int rc;

    memset(&s, 0, sizeof(s));
    s.dir = join(snaps, rev);
    free(snaps);
    if (!is_dir(s.dir)) {
        rc = cli_error("%s: no such snapshot directory", s.dir);
        free(s.dir);
        return rc;
    }
    s.name = xstrdup(name);
    s.rev = xstrdup(rev);
    s.version = xstrdup(version ? version : rev);
    rc = hf_walk(&s, "");
    if (rc == CLI_OK && s.nfiles == 0)
        rc = cli_error("%s: the snapshot has no files", s.dir);
    if (rc != CLI_OK) {
        pfiles_free(s.files, s.nfiles);
        free(s.dir);
        free(s.name);
        free(s.rev);
        free(s.version);
        return rc;
    }
    qsort(s.files, s.nfiles, sizeof(*s.files), cmp_pfile);
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 8;
        l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
    }
    l->v[l->n++] = s;
    return CLI_OK;
}

/* hf_name - "models--ORG--NAME" -> "ORG/NAME" ("models--NAME" -> "NAME") */
static char *
hf_name(const char *base)
{
    if (strncmp(base, "models--", 8) != 0 || base[8] == '\0')
        return NULL;
    const char *s = base + 8;
    char *out = xmalloc(strlen(s) + 1), *o = out;
    while (*s) {
        if (s[0] == '-' && s[1] == '-') {
            *o++ = '/';
            s += 2;
        } else {
            *o++ = *s++;
        }
    }
    *o = '\0';
    return out;
}

/* hf_model - the snapshots to import from one models--* directory */
static int
hf_model(struct mctx *c, struct hf_list *l, const char *mdir,
         const char *name_opt, const char *version_opt)
{
    const char *slash = strrchr(mdir, '/');
    char *base = xstrdup(slash && slash[1] ? slash + 1 : mdir);
    char *name = name_opt ? xstrdup(name_opt) : hf_name(base);
    char *refs = join(mdir, "refs/main");
    char rev[256];
    FILE *f;
    int rc = CLI_OK;

    if (name == NULL) {
        rc = cli_usage_error("model import-hf: cannot tell the model's name "
                             "from '%s' (not models--ORG--NAME): give --name",
                             base);
        goto out;
    }
    if (!valid_name(name)) {
        rc = cli_usage_error("model import-hf: '%s' is not a valid model "
                             "name: give --name",
                             name);
        goto out;
    }
    if ((f = fopen(refs, "r")) != NULL) {
        size_t n = fread(rev, 1, sizeof(rev) - 1, f);
        fclose(f);
        rev[n] = '\0';
        while (n > 0 && (rev[n - 1] == '\n' || rev[n - 1] == '\r' ||
                         rev[n - 1] == ' ' || rev[n - 1] == '\t'))
            rev[--n] = '\0';
        if (n == 0 || strchr(rev, '/') != NULL || strcmp(rev, ".") == 0 ||
            strcmp(rev, "..") == 0) {
            rc = cli_error("%s: not a revision", refs);
            goto out;
        }
        if (!version_opt && !valid_name(rev)) {
            rc = cli_usage_error("model import-hf: revision '%s' is not a "
                                 "valid version: give --version",
                                 rev);
            goto out;
        }
        rc = hf_add_snapshot(l, mdir, name, rev, version_opt);
        goto out;
    }
    /* no refs/main: every snapshot */
    char *snaps = join(mdir, "snapshots");
    size_t n;
    char **revs = sorted_entries(snaps, &n);
    if (revs == NULL) {
        rc = cli_error("could not read %s: %s", snaps, strerror(errno));
        free(snaps);
        goto out;
    }
    size_t ndirs = 0;
    for (size_t i = 0; i < n; i++) {
        char *p = join(snaps, revs[i]);
        ndirs += is_dir(p);
        free(p);
    }
    if (ndirs == 0)
        rc = cli_error("%s: no snapshots", snaps);
    else if (version_opt && ndirs > 1)
        rc = cli_usage_error("model import-hf: --version names one version, "
                             "but %s holds %zu snapshots and no refs/main",
                             mdir, ndirs);
    for (size_t i = 0; i < n && rc == CLI_OK; i++) {
        char *p = join(snaps, revs[i]);
        int d = is_dir(p);
        free(p);
        if (!d)
            continue;
        if (!version_opt && !valid_name(revs[i]))
            rc = cli_usage_error("model import-hf: snapshot '%s' is not a "
                                 "valid version: give --version",
                                 revs[i]);
        else
            rc = hf_add_snapshot(l, mdir, name, revs[i], version_opt);
    }
    free_entries(revs, n);
    free(snaps);
out:
    (void)c;
    free(refs);
    free(name);
    free(base);
    return rc;
}

/*
 * hf_discover - the snapshots under dir: a model directory (it has
 * snapshots/), or a hub directory of models--* directories, or the
 * directory holding hub/.
 */
static int
hf_discover(struct mctx *c, const char *dir, struct hf_list *l)
{
    const char *name = opt(c, O_NAME), *version = opt(c, O_VERSION);
    char *p = join(dir, "snapshots");
    int rc;

    if (is_dir(p)) {
        free(p);
        return hf_model(c, l, dir, name, version);
    }
    free(p);
    if (!is_dir(dir))
        return cli_error("%s: not a directory", dir);
    p = join(dir, "hub");
    char *hub = is_dir(p) ? p : xstrdup(dir);
    if (hub != p)
        free(p);
    size_t n, nmodels = 0;
    char **names = sorted_entries(hub, &n);
    if (names == NULL) {
        rc = cli_error("could not read %s: %s", hub, strerror(errno));
        free(hub);
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        char *m = join(hub, names[i]), *s = join(m, "snapshots");
        nmodels += strncmp(names[i], "models--", 8) == 0 && is_dir(s);
        free(m);
        free(s);
    }
    rc = CLI_OK;
    if (nmodels == 0)
        rc = cli_error("%s: not a Hugging Face cache (no snapshots/ and no "
                       "models--ORG--NAME/ inside)",
                       dir);
    else if (nmodels > 1 && (name || version))
        rc = cli_usage_error("model import-hf: --name and --version apply to "
                             "one model, but %s holds %zu",
                             hub, nmodels);
    for (size_t i = 0; i < n && rc == CLI_OK; i++) {
        char *m = join(hub, names[i]), *s = join(m, "snapshots");
        if (strncmp(names[i], "models--", 8) == 0 && is_dir(s))
            rc = hf_model(c, l, m, name, version);
        free(m);
        free(s);
    }
    free_entries(names, n);
    free(hub);
    return rc;
}

static void
hf_free(struct hf_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        pfiles_free(l->v[i].files, l->v[i].nfiles);
        free(l->v[i].name);
        free(l->v[i].version);
        free(l->v[i].rev);
        free(l->v[i].dir);
    }
    free(l->v);
}

static int
cmd_import_hf(struct mctx *c)
{
    struct hf_list l;
    int rc, failed = 0;

    memset(&l, 0, sizeof(l));
    if (opt(c, O_NAME) && check_name(c, "model name", opt(c, O_NAME)) != 0)
        return CLI_USAGE;
    if (opt(c, O_VERSION) && check_name(c, "version", opt(c, O_VERSION)) != 0)
        return CLI_USAGE;
    rc = hf_discover(c, c->pos[0], &l);
    if (rc == CLI_OK && flag(c, O_DRYRUN)) {
        for (size_t i = 0; i < l.n; i++) {
            char sz[32];
            cli_format_size(sz, sizeof(sz), l.v[i].total);
            printf("%s %s: %zu file%s, %s (snapshot %s)\n", l.v[i].name,
                   l.v[i].version, l.v[i].nfiles,
                   l.v[i].nfiles == 1 ? "" : "s", sz, l.v[i].rev);
            for (size_t k = 0; k < l.v[i].nfiles; k++)
                printf("  %" PRIu64 "  %s\n", l.v[i].files[k].size,
                       l.v[i].files[k].path);
        }
    } else if (rc == CLI_OK) {
        rc = connect_server(c);
    }
    for (size_t i = 0; rc == CLI_OK && !flag(c, O_DRYRUN) && i < l.n; i++) {
        struct hf_snap *s = &l.v[i];
        struct ref r;
        Buffdb__Model__ModelInfo *m = NULL;
        Buffdb__Model__GetInfoRequest req =
            BUFFDB__MODEL__GET_INFO_REQUEST__INIT;
        struct cli_status st;

        memset(&r, 0, sizeof(r));
        req.name = B(s->name);
        req.version = B(s->version);
        if (unary(c, M_GET_INFO, &req.base,
                  &buffdb__model__model_info__descriptor, &m, &st) == 0) {
            printf("%s %s: already present\n", s->name, s->version);
            free_msg(m);
            continue;
        }
        if (st.code != GRPC_STATUS_NOT_FOUND) {
            cli_rpc_fail(M_GET_INFO, &st);
            failed = 1;
            if (st.interrupted || transport_status(st.code))
                break;
            continue;
        }
        struct push_job j;
        char *keys[3] = {"source", "hf_repo", "hf_revision"};
        char *vals[3] = {"huggingface", s->name, s->rev};
        memset(&j, 0, sizeof(j));
        j.name = s->name;
        j.version = s->version;
        j.keys = keys;
        j.vals = vals;
        j.nparams = 3;
        j.files = s->files;
        j.nfiles = s->nfiles;
        if (push_model(c, &j) != CLI_OK) {
            failed = 1;
            if (cli_rpc_interrupted)
                break;
        }
    }
    hf_free(&l);
    if (rc == CLI_OK && failed)
        rc = CLI_ERROR;
    return rc;
}

/* ---- dispatch ------------------------------------------------------------ */

static const struct mcmd mcmds[] = {
    {"push", 3, -1,
     O_FRAMEWORK | O_DESC | O_PARAM | O_INSHAPE | O_OUTSHAPE, cmd_push},
    {"pull", 1, 1, O_OUTDIR, cmd_pull},
    {"ls", 0, 1, O_BYTES, cmd_ls},
    {"info", 1, 1, O_JSON | O_TENSORS, cmd_info},
    {"rm", 2, 2, O_FORCE, cmd_rm},
    {"tag", 3, 3, 0, cmd_tag},
    {"untag", 2, 2, 0, cmd_untag},
    {"verify", 1, 1, 0, cmd_verify},
    {"status", 2, 2, 0, cmd_status},
    {"abort", 2, 2, 0, cmd_abort},
    {"import-hf", 1, 1, O_NAME | O_VERSION | O_DRYRUN, cmd_import_hf},
};

static const char *const operands[] = {
    "NAME VERSION FILE...", "NAME[:VERSION|@ALIAS]", "[NAME]",
    "NAME[:VERSION|@ALIAS]", "NAME VERSION", "NAME VERSION ALIAS",
    "NAME ALIAS", "NAME[:VERSION|@ALIAS]", "NAME VERSION", "NAME VERSION",
    "DIR"};

/* parse_args - options anywhere, operands in order (the command first) */
static int
parse_args(struct mctx *c, int argc, char **argv)
{
    int only_operands = 0;

    c->pos = xcalloc((size_t)argc + 1, sizeof(char *));
    c->params = xcalloc((size_t)argc + 1, sizeof(char *));
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (only_operands || a[0] != '-' || a[1] == '\0') {
            c->pos[c->npos++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_operands = 1;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(model_usage, stdout);
            return 1;
        }
        size_t k;
        const char *v = NULL;
        for (k = 0; k < N_MOPTS; k++) {
            size_t ll = strlen(mopts[k].lng);
            if (strcmp(a, mopts[k].lng) == 0 ||
                (mopts[k].shrt && strcmp(a, mopts[k].shrt) == 0))
                break;
            if (strncmp(a, mopts[k].lng, ll) == 0 && a[ll] == '=') {
                v = a + ll + 1;
                break;
            }
        }
        if (k == N_MOPTS)
            return -cli_usage_error("model: unknown option '%s'", a);
        if (mopts[k].has_arg && v == NULL) {
            if (i + 1 >= argc)
                return -cli_usage_error("model: option '%s' needs a value",
                                        a);
            v = argv[++i];
        } else if (!mopts[k].has_arg && v != NULL) {
            return -cli_usage_error("model: option '%s' takes no value",
                                    mopts[k].lng);
        }
        c->seen |= mopts[k].id;
        c->optname[k] = a;
        c->val[k] = v ? v : "";
        if (mopts[k].id == O_PARAM)
            c->params[c->nparams++] = (char *)v;
    }
    return 0;
}

/* check_args - the command, its operand count, its options, their values */
static int
check_args(struct mctx *c)
{
    size_t k;

    if (c->npos == 0)
        return cli_usage_error("model: missing command (push, pull, ls, "
                               "info, rm, tag, untag, verify, status, abort, "
                               "import-hf)");
    for (k = 0; k < sizeof(mcmds) / sizeof(mcmds[0]); k++)
        if (strcmp(c->pos[0], mcmds[k].name) == 0)
            break;
    if (k == sizeof(mcmds) / sizeof(mcmds[0]))
        return cli_usage_error("model: unknown command '%s'", c->pos[0]);
    c->cmd = &mcmds[k];
    c->pos++;
    c->npos--;
    if (c->npos < c->cmd->min || (c->cmd->max >= 0 && c->npos > c->cmd->max))
        return cli_usage_error("model %s: expected %s", c->cmd->name,
                               operands[k]);
    for (size_t o = 0; o < N_MOPTS; o++)
        if ((c->seen & mopts[o].id) &&
            !(mopts[o].id & (c->cmd->opts | O_COMMON)))
            return cli_usage_error("model %s: option '%s' does not apply",
                                   c->cmd->name, mopts[o].lng);
    c->timeout_ms = DEFAULT_TIMEOUT_MS;
    if (opt(c, O_TIMEOUT)) {
        if (parse_timeout(opt(c, O_TIMEOUT), &c->timeout_ms) != 0)
            return cli_usage_error("model: --timeout wants seconds (e.g. 30, "
                                   "2.5, 500ms, 2m), not '%s'",
                                   opt(c, O_TIMEOUT));
        c->timeout_set = 1;
    }
    if (opt(c, O_ADDR) && *opt(c, O_ADDR) == '\0')
        return cli_usage_error("model: --addr needs an address");
    if (opt(c, O_INSHAPE) &&
        parse_dims(opt(c, O_INSHAPE), &c->in_shape, &c->n_in) != 0)
        return cli_usage_error("model %s: --input-shape wants integers "
                               "separated by commas (-1: any), not '%s'",
                               c->cmd->name, opt(c, O_INSHAPE));
    if (opt(c, O_OUTSHAPE) &&
        parse_dims(opt(c, O_OUTSHAPE), &c->out_shape, &c->n_out) != 0)
        return cli_usage_error("model %s: --output-shape wants integers "
                               "separated by commas (-1: any), not '%s'",
                               c->cmd->name, opt(c, O_OUTSHAPE));
    return CLI_OK;
}

int
cli_model(int argc, char **argv)
{
    struct mctx c;
    int rc;

    /* transfers allocate and free a megabyte per message: keep freed
     * memory instead of handing it back to the kernel and faulting it in
     * again for the next message (that cost more CPU than the copies) */
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    memset(&c, 0, sizeof(c));
    rc = parse_args(&c, argc, argv);
    if (rc == 0)
        rc = check_args(&c);
    else
        rc = rc > 0 ? CLI_OK : -rc;
    if (rc == CLI_OK && c.cmd != NULL) {
        cli_rpc_catch_sigint();
        rc = c.cmd->fn(&c);
    }
    if (c.connected)
        cli_rpc_close(&c.rpc);
    if (c.grpc_up && !cli_rpc_abandoned())
        grpc_shutdown_blocking();
    if (c.cmd != NULL) {
        c.pos--;
    }
    free(c.pos);
    free(c.params);
    free(c.in_shape);
    free(c.out_shape);
    fflush(stdout);
    return rc;
}
