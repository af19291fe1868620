/*
 * listen.h - making sure the listen address is ours alone
 *
 * Workers bind the address with SO_REUSEPORT, so a second buffdb (or any
 * process of the same user) could bind it too and silently take half the
 * connections.  Before forking, the master (1) takes a lock named after
 * each address the listen string resolves to, an abstract AF_UNIX socket
 * that the kernel frees when the last holder exits, so a second buffdb is
 * refused even while the first is still starting; and (2) binds the
 * address once without SO_REUSEPORT, which fails if anything else listens
 * there.  No gRPC call is involved (the master must make none).
 */
#ifndef BFDB_MASTER_LISTEN_H
#define BFDB_MASTER_LISTEN_H

#include <stddef.h>

#define LISTEN_MAX_LOCKS 8

struct listen_lock {
    int fds[LISTEN_MAX_LOCKS];
    int n;
};

/* listen_acquire - resolve addr (HOST:PORT or [V6]:PORT), lock it and
 * check it is free; returns 0, or -1 with err saying why not */
int listen_acquire(const char *addr, struct listen_lock *lk, char *err,
                   size_t errlen);

/* listen_release - drop the locks (lk may be empty) */
void listen_release(struct listen_lock *lk);

#endif /* BFDB_MASTER_LISTEN_H */
