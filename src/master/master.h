/*
 * master.h - `buffdb run`: the master process
 */
#ifndef BFDB_MASTER_MASTER_H
#define BFDB_MASTER_MASTER_H

/*
 * master_run - parse `run`'s arguments (argv[0] is "run"), prepare the
 * stores and the address, fork the workers and supervise them until
 * SIGTERM/SIGINT.  Returns the process exit status: 0 after a clean stop,
 * 1 on a runtime failure, 2 for a bad command line or configuration.
 */
int master_run(int argc, char **argv);

#endif /* BFDB_MASTER_MASTER_H */
