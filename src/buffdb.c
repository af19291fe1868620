/*
 * buffdb.c - main(): dispatch to the server (`run`), a store command or
 *            a client command (`model`)
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "common/config.h"
#include "common/log.h"
#include "master/master.h"

static const char usage_text[] =
    "usage: buffdb run [ADDR] [--addr ADDR] [--kv-store PATH]\n"
    "                  [--blob-store PATH] [-c FILE] [--workers N]\n"
    "       buffdb kv [-s PATH] get KEY... | set KEY VALUE | delete KEY |\n"
    "                 eq KEY... | not-eq KEY...\n"
    "       buffdb blob [-s PATH] get ID [data|metadata|all] |\n"
    "                 store FILE|- [METADATA] | update ID data FILE |\n"
    "                 update ID metadata [METADATA] |\n"
    "                 update ID all FILE [METADATA] | delete ID |\n"
    "                 eq-data ID... | not-eq-data ID...\n"
    "       buffdb query [--target kv|blob] [-s PATH] SQL\n"
    "       buffdb index [-s PATH] create NAME --type hash|btree [--unique]\n"
    "                 [--prefix P] [--json-path PATH]\n"
    "                 [--value-type string|integer|float] |\n"
    "                 drop NAME | list | lookup NAME VALUE [--limit N] |\n"
    "                 range NAME [--from X] [--to Y] [--limit N] |\n"
    "                 check NAME | rebuild [NAME]\n"
    "       buffdb stats [-s KV_STORE] [--shm-dir DIR] [--locks]\n"
    "       buffdb model [--addr ADDR] [-c FILE] [--timeout SEC]\n"
    "                 push NAME VERSION FILE... [--framework F]\n"
    "                 [--description D] [--param K=V]...\n"
    "                 [--input-shape DIMS] [--output-shape DIMS] |\n"
    "                 pull NAME[:VERSION|@ALIAS] [-o DIR] |\n"
    "                 ls [NAME] [--bytes] |\n"
    "                 info NAME[:VERSION|@ALIAS] [--json] [--tensors] |\n"
    "                 rm NAME VERSION [--force] | tag NAME VERSION ALIAS |\n"
    "                 untag NAME ALIAS | verify NAME[:VERSION|@ALIAS] |\n"
    "                 status NAME VERSION | abort NAME VERSION |\n"
    "                 import-hf DIR [--name N] [--version V] [--dry-run]\n"
    "       buffdb --help | --version\n"
    "\n"
    "Store commands work on the files directly; the kv store defaults to\n"
    "./" CLI_DEFAULT_KV_STORE " and the blob store to ./"
    CLI_DEFAULT_BLOB_STORE ".\n"
    "`model` is a client of a running server at ADDR (default: the\n"
    "`listen` of -c FILE or " SYSCONFDIR "/buffdb.conf, else "
    BFDB_DEFAULT_LISTEN ").\n"
    "Exit status: 0 success, 1 error or a comparison that is false,\n"
    "2 usage error.  See buffdb(1).\n";

int
main(int argc, char **argv)
{
    bfdb_log_init("cli");
    if (argc < 2)
        return cli_usage_error("missing command");
    const char *cmd = argv[1];

    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 ||
        strcmp(cmd, "help") == 0) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
        printf("buffdb %s\n", PACKAGE_VERSION);
        return 0;
    }
    if (strcmp(cmd, "kv") == 0)
        return cli_kv(argc - 1, argv + 1);
    if (strcmp(cmd, "blob") == 0)
        return cli_blob(argc - 1, argv + 1);
    if (strcmp(cmd, "query") == 0)
        return cli_query(argc - 1, argv + 1);
    if (strcmp(cmd, "index") == 0)
        return cli_index(argc - 1, argv + 1);
    if (strcmp(cmd, "model") == 0)
        return cli_model(argc - 1, argv + 1);
    if (strcmp(cmd, "stats") == 0)
        return cli_stats(argc - 1, argv + 1);
    if (strcmp(cmd, "run") == 0)
        return master_run(argc - 1, argv + 1);
    return cli_usage_error("unknown command '%s'", cmd);
}
