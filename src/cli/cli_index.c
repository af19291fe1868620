/*
 * cli_index.c - `buffdb index [-s PATH] create | drop | list | lookup |
 *               range | check | rebuild ...`: the kv store's secondary
 *               indexes (src/store/index.c) from the command line
 *
 * Grammar (buffdb(1), "Indexes"):
 *   create NAME --type hash|btree [--unique] [--prefix P]
 *               [--json-path PATH] [--value-type string|integer|float]
 *   drop NAME
 *   list
 *   lookup NAME VALUE [--limit N]
 *   range NAME [--from X] [--to Y] [--limit N]
 *   check NAME
 *   rebuild [NAME]
 * After the command, arguments starting with "--" are options (in any
 * order, before or after the operands; "--opt value" or "--opt=value")
 * and the rest are operands; a "--" ends the options, so that a value
 * such as "--x" can be looked up.  A single dash is not special: "-5" is
 * an operand (a negative number for an integer index).
 *
 * Output, on standard output:
 *   create   "created index NAME: N keys indexed"
 *   drop     nothing
 *   list     one line per index, by name, tab-separated: name, type
 *            (hash|btree), "unique" or "-", value type, key prefix, JSON
 *            path (the last two empty when the index covers every key, or
 *            the whole value)
 *   lookup   KEY<TAB>VALUE per matching key, in key order
 *   range    the same, in value order (then key order)
 *   check    "index NAME: M missing, E extra"; exit 1 unless both are 0
 *   rebuild  "rebuilt index NAME: N entries written" (no NAME: "rebuilt
 *            all indexes: N entries written")
 * Keys, values, prefixes and paths are written as they are, as `buffdb
 * query` writes text.
 *
 * Every parsing error is found before the store is opened, so a usage
 * error (exit 2) creates no file.
 */
#include "config.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

/* one option a subcommand accepts, and what the command line gave it */
struct ixopt {
    const char *name; /* "--type" */
    int has_arg;      /* 0: a flag */
    const char *val;  /* the value (flags: "") or NULL if not given */
};

#define IX_MAX_OPTS 5

/* one subcommand: its operands and options */
struct ixcmd {
    const char *name;
    int min_ops, max_ops;
    const char *operands; /* for the usage message */
    struct ixopt opts[IX_MAX_OPTS];
};

/* indexes into ixcmd.opts, per command */
enum { O_TYPE, O_UNIQUE, O_PREFIX, O_JSON_PATH, O_VALUE_TYPE };
enum { O_LIMIT };
enum { O_RANGE_FROM, O_RANGE_TO, O_RANGE_LIMIT };

static const struct ixcmd ix_cmds[] = {
    {"create", 1, 1, "NAME", {{"--type", 1, NULL}, {"--unique", 0, NULL},
                              {"--prefix", 1, NULL}, {"--json-path", 1, NULL},
                              {"--value-type", 1, NULL}}},
    {"drop", 1, 1, "NAME", {{NULL, 0, NULL}}},
    {"list", 0, 0, "no arguments", {{NULL, 0, NULL}}},
    {"lookup", 2, 2, "NAME VALUE", {{"--limit", 1, NULL}}},
    {"range", 1, 1, "NAME",
     {{"--from", 1, NULL}, {"--to", 1, NULL}, {"--limit", 1, NULL}}},
    {"check", 1, 1, "NAME", {{NULL, 0, NULL}}},
    {"rebuild", 0, 1, "at most one NAME", {{NULL, 0, NULL}}},
};

#define IX_NCMDS (sizeof(ix_cmds) / sizeof(ix_cmds[0]))

/*
 * parse_args - sort argv[i..argc) into c's options and up to argc - i
 * operands (ops, *nops); returns CLI_OK or a usage error (printed).
 */
static int
parse_args(struct ixcmd *c, int argc, char **argv, int i, char **ops,
           int *nops)
{
    int end_of_opts = 0;

    *nops = 0;
    while (i < argc) {
        const char *a = argv[i++];

        if (end_of_opts || strncmp(a, "--", 2) != 0) {
            ops[(*nops)++] = (char *)a;
            continue;
        }
        if (a[2] == '\0') {
            end_of_opts = 1;
            continue;
        }
        const char *eq = strchr(a, '=');
        size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
        struct ixopt *o = NULL;
        for (int k = 0; k < IX_MAX_OPTS && c->opts[k].name; k++)
            if (strlen(c->opts[k].name) == nlen &&
                strncmp(c->opts[k].name, a, nlen) == 0)
                o = &c->opts[k];
        if (o == NULL)
            return cli_usage_error("index %s: unknown option '%.*s'", c->name,
                                   (int)nlen, a);
        if (o->val != NULL)
            return cli_usage_error("index %s: option '%s' given twice",
                                   c->name, o->name);
        if (!o->has_arg) {
            if (eq)
                return cli_usage_error("index %s: option '%s' takes no "
                                       "value", c->name, o->name);
            o->val = "";
        } else if (eq) {
            o->val = eq + 1;
        } else if (i < argc) {
            o->val = argv[i++];
        } else {
            return cli_usage_error("index %s: option '%s' needs a value",
                                   c->name, o->name);
        }
    }
    if (*nops < c->min_ops || *nops > c->max_ops)
        return cli_usage_error("index %s: expected %s", c->name, c->operands);
    return CLI_OK;
}

/* parse_limit - --limit N: a decimal from 0 (no limit) to UINT32_MAX */
static int
parse_limit(const char *cmd, const char *s, uint32_t *out)
{
    uint64_t n = 0;

    *out = 0;
    if (s == NULL)
        return CLI_OK;
    if (*s == '\0')
        goto bad;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            goto bad;
        n = n * 10 + (uint64_t)(*p - '0');
        if (n > UINT32_MAX)
            goto bad;
    }
    *out = (uint32_t)n;
    return CLI_OK;
bad:
    return cli_usage_error("index %s: bad --limit '%s' (a number from 0, no "
                           "limit, to %" PRIu32 ")", cmd, s, UINT32_MAX);
}

/* ---- the commands ------------------------------------------------------ */

static const char *const type_names[] = {[BFDB_INDEX_HASH] = "hash",
                                         [BFDB_INDEX_BTREE] = "btree"};
static const char *const vtype_names[] = {[BFDB_IV_STRING] = "string",
                                          [BFDB_IV_INTEGER] = "integer",
                                          [BFDB_IV_FLOAT] = "float"};

/* name_of - the name of code in names[0..n), or "?" for one we do not know
 * (a file written by a newer buffdb) */
static const char *
name_of(const char *const *names, size_t n, int code)
{
    return code >= 0 && (size_t)code < n ? names[code] : "?";
}

/* lookup_name - the code of s in names[0..n), or -1 */
static int
lookup_name(const char *const *names, size_t n, const char *s)
{
    for (size_t k = 0; k < n; k++)
        if (strcmp(names[k], s) == 0)
            return (int)k;
    return -1;
}

/* parse_spec - create's options into spec (strings point into argv) */
static int
parse_spec(const struct ixcmd *c, char *name, struct bfdb_index_spec *sp)
{
    const struct ixopt *o = c->opts;

    memset(sp, 0, sizeof(*sp));
    sp->name = name;
    if (o[O_TYPE].val == NULL)
        return cli_usage_error("index create: missing --type (hash or btree)");
    sp->type = lookup_name(type_names, 2, o[O_TYPE].val);
    if (sp->type < 0)
        return cli_usage_error("index create: unknown --type '%s' (hash or "
                               "btree)", o[O_TYPE].val);
    sp->unique = o[O_UNIQUE].val != NULL;
    if (o[O_PREFIX].val != NULL) {
        sp->key_prefix = (char *)o[O_PREFIX].val;
        sp->prefix_len = strlen(o[O_PREFIX].val);
    }
    sp->json_path = (char *)o[O_JSON_PATH].val;
    sp->value_type = BFDB_IV_STRING;
    if (o[O_VALUE_TYPE].val != NULL) {
        sp->value_type = lookup_name(vtype_names, 3, o[O_VALUE_TYPE].val);
        if (sp->value_type < 0)
            return cli_usage_error("index create: unknown --value-type '%s' "
                                   "(string, integer or float)",
                                   o[O_VALUE_TYPE].val);
    }
    return CLI_OK;
}

static int
ix_create(bfdb_store *s, const struct bfdb_index_spec *sp)
{
    uint64_t n;

    if (bfdb_index_create(s, sp, &n) != BFDB_OK)
        return cli_error("%s", bfdb_store_errmsg(s));
    printf("created index %s: %" PRIu64 " keys indexed\n", sp->name, n);
    return CLI_OK;
}

static int
ix_list(bfdb_store *s)
{
    struct bfdb_index_spec *v;
    size_t n;

    if (bfdb_index_list(s, &v, &n) != BFDB_OK)
        return cli_error("%s", bfdb_store_errmsg(s));
    for (size_t k = 0; k < n; k++) {
        printf("%s\t%s\t%s\t%s\t", v[k].name,
               name_of(type_names, 2, v[k].type), v[k].unique ? "unique" : "-",
               name_of(vtype_names, 3, v[k].value_type));
        if (v[k].prefix_len)
            fwrite(v[k].key_prefix, 1, v[k].prefix_len, stdout);
        printf("\t%s\n", v[k].json_path ? v[k].json_path : "");
    }
    bfdb_index_list_free(v, n);
    return CLI_OK;
}

/* ix_print - write an iterator's entries as KEY<TAB>VALUE lines; closes it */
static int
ix_print(bfdb_store *s, bfdb_index_iter *it)
{
    const char *k, *v;
    size_t klen, vlen;
    int r, ret = CLI_OK;

    while ((r = bfdb_index_next(it, &k, &klen, &v, &vlen)) == 1) {
        fwrite(k, 1, klen, stdout);
        putchar('\t');
        fwrite(v, 1, vlen, stdout);
        if (putchar('\n') == EOF) {
            ret = cli_error("could not write to standard output");
            break;
        }
    }
    if (r < 0)
        ret = cli_error("%s", bfdb_store_errmsg(s));
    bfdb_index_iter_close(it);
    return ret;
}

/* ix_check - print the counts; *differs 1 if the index is not true */
static int
ix_check(bfdb_store *s, const char *name, int *differs)
{
    uint64_t missing, extra;

    if (bfdb_index_check(s, name, &missing, &extra) != BFDB_OK)
        return cli_error("%s", bfdb_store_errmsg(s));
    printf("index %s: %" PRIu64 " missing, %" PRIu64 " extra\n", name,
           missing, extra);
    *differs = missing != 0 || extra != 0;
    return CLI_OK;
}

static int
ix_rebuild(bfdb_store *s, const char *name)
{
    uint64_t n;

    if (bfdb_index_rebuild(s, name, &n) != BFDB_OK)
        return cli_error("%s", bfdb_store_errmsg(s));
    if (name)
        printf("rebuilt index %s: %" PRIu64 " entries written\n", name, n);
    else
        printf("rebuilt all indexes: %" PRIu64 " entries written\n", n);
    return CLI_OK;
}

int
cli_index(int argc, char **argv)
{
    const char *path = CLI_DEFAULT_KV_STORE;
    int i = 1, r;

    while (i < argc && (r = cli_store_opt(argc, argv, &i, &path)) != 0)
        if (r < 0)
            return CLI_USAGE;
    if (i >= argc)
        return cli_usage_error("index: missing command (create, drop, list, "
                               "lookup, range, check, rebuild)");
    const char *cmd = argv[i++];
    struct ixcmd c;
    size_t ci;
    for (ci = 0; ci < IX_NCMDS; ci++)
        if (strcmp(cmd, ix_cmds[ci].name) == 0)
            break;
    if (ci == IX_NCMDS)
        return cli_usage_error("index: unknown command '%s'", cmd);
    c = ix_cmds[ci]; /* a copy, to record the options given */

    char **ops = malloc((size_t)(argc - i + 1) * sizeof(*ops));
    if (ops == NULL)
        return cli_error("out of memory");
    int nops, ret = parse_args(&c, argc, argv, i, ops, &nops);
    struct bfdb_index_spec spec;
    uint32_t limit = 0;
    if (ret == CLI_OK && strcmp(cmd, "create") == 0)
        ret = parse_spec(&c, ops[0], &spec);
    else if (ret == CLI_OK && strcmp(cmd, "lookup") == 0)
        ret = parse_limit(cmd, c.opts[O_LIMIT].val, &limit);
    else if (ret == CLI_OK && strcmp(cmd, "range") == 0)
        ret = parse_limit(cmd, c.opts[O_RANGE_LIMIT].val, &limit);
    if (ret != CLI_OK) {
        free(ops);
        return ret;
    }

    bfdb_store *s = cli_open(BFDB_STORE_KV, path);
    if (s == NULL) {
        free(ops);
        return CLI_ERROR;
    }
    /*
     * No cache coordination (cli_coord_*) here, unlike kv set/delete:
     * create, drop and rebuild write only buffdb_index, the buffdb_ix_N
     * tables and their triggers, never a kv row, so a running server's
     * key cache (which holds kv values) stays true; the reads take no
     * locks.  A server picks up the new schema by itself (SQLite
     * re-prepares its statements), and from then on its writes keep the
     * index through the triggers.
     */
    bfdb_index_iter *it = NULL;
    int differs = 0;
    if (strcmp(cmd, "create") == 0) {
        ret = ix_create(s, &spec);
    } else if (strcmp(cmd, "drop") == 0) {
        if (bfdb_index_drop(s, ops[0]) != BFDB_OK)
            ret = cli_error("%s", bfdb_store_errmsg(s));
    } else if (strcmp(cmd, "list") == 0) {
        ret = ix_list(s);
    } else if (strcmp(cmd, "lookup") == 0) {
        if (bfdb_index_lookup(s, ops[0], ops[1], strlen(ops[1]), limit,
                              &it) != BFDB_OK)
            ret = cli_error("%s", bfdb_store_errmsg(s));
        else
            ret = ix_print(s, it);
    } else if (strcmp(cmd, "range") == 0) {
        const char *lo = c.opts[O_RANGE_FROM].val;
        const char *hi = c.opts[O_RANGE_TO].val;
        if (bfdb_index_range(s, ops[0], lo, lo ? strlen(lo) : 0, hi,
                             hi ? strlen(hi) : 0, limit, &it) != BFDB_OK)
            ret = cli_error("%s", bfdb_store_errmsg(s));
        else
            ret = ix_print(s, it);
    } else if (strcmp(cmd, "check") == 0) {
        ret = ix_check(s, ops[0], &differs);
    } else {
        ret = ix_rebuild(s, nops ? ops[0] : NULL);
    }
    bfdb_store_close(s);
    free(ops);
    if ((fflush(stdout) != 0 || ferror(stdout)) && ret == CLI_OK)
        ret = cli_error("could not write to standard output");
    /* a check that finds differences is a comparison that does not hold:
     * exit 1 with nothing on stderr, the counts on stdout say why */
    if (ret == CLI_OK && differs)
        ret = CLI_FALSE;
    return ret;
}
