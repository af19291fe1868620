/*
 * cli_index.c - `buffdb index ...` (being written)
 */
#include "config.h"

#include "cli/cli.h"

int
cli_index(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cli_error("index: not built yet");
}
