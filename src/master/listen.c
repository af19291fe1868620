/*
 * listen.c - lock and probe the listen address (see listen.h)
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "master/listen.h"

static int
split_addr(const char *addr, char *host, size_t hcap, char *port, size_t pcap)
{
    const char *colon = strrchr(addr, ':');
    size_t hl;

    if (colon == NULL)
        return -1;
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (close == NULL || close + 1 != colon)
            return -1;
        hl = (size_t)(close - addr - 1);
        addr++;
    } else {
        hl = (size_t)(colon - addr);
        if (memchr(addr, ':', hl) != NULL)
            return -1; /* a bare IPv6 address needs brackets */
    }
    if (hl == 0 || hl >= hcap || strlen(colon + 1) >= pcap)
        return -1;
    memcpy(host, addr, hl);
    host[hl] = '\0';
    snprintf(port, pcap, "%s", colon + 1);
    return 0;
}

/* lock_name - take the abstract socket "buffdb-listen:<numeric addr>" */
static int
lock_name(const struct sockaddr *sa, socklen_t salen, int *fd_out, char *err,
          size_t errlen)
{
    char host[NI_MAXHOST], serv[NI_MAXSERV];
    struct sockaddr_un un;
    int fd;

    if (getnameinfo(sa, salen, host, sizeof(host), serv, sizeof(serv),
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        snprintf(err, errlen, "could not name a resolved address");
        return -1;
    }
    memset(&un, 0, sizeof(un));
    un.sun_family = AF_UNIX;
    int n = snprintf(un.sun_path + 1, sizeof(un.sun_path) - 1,
                     "buffdb-listen:[%s]:%s", host, serv);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket(AF_UNIX) failed: %s", strerror(errno));
        return -1;
    }
    if (bind(fd, (struct sockaddr *)&un,
             (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
                         (size_t)n)) != 0) {
        int e = errno;
        close(fd);
        if (e == EADDRINUSE)
            snprintf(err, errlen, "another buffdb server is already running "
                     "on [%s]:%s", host, serv);
        else
            snprintf(err, errlen, "could not lock [%s]:%s: %s", host, serv,
                     strerror(e));
        return -1;
    }
    *fd_out = fd;
    return 0;
}

/* probe - bind without SO_REUSEPORT: fails if anything listens there */
static int
probe(const struct addrinfo *ai, const char *addr, char *err, size_t errlen)
{
    int one = 1;
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                    ai->ai_protocol);

    if (fd < 0) {
        snprintf(err, errlen, "could not create a socket for %s: %s", addr,
                 strerror(errno));
        return -1;
    }
    /* SO_REUSEADDR: a port in TIME_WAIT after a restart is fine */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        int e = errno;
        close(fd);
        if (e == EADDRINUSE)
            snprintf(err, errlen, "address %s is already in use by another "
                     "program", addr);
        else
            snprintf(err, errlen, "could not bind %s: %s", addr, strerror(e));
        return -1;
    }
    close(fd);
    return 0;
}

int
listen_acquire(const char *addr, struct listen_lock *lk, char *err,
               size_t errlen)
{
    struct addrinfo hints, *res = NULL;
    char host[256], port[16];
    int rc;

    lk->n = 0;
    if (split_addr(addr, host, sizeof(host), port, sizeof(port)) != 0) {
        snprintf(err, errlen, "listen address '%s' is not HOST:PORT or "
                 "[IPV6]:PORT", addr);
        return -1;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    if ((rc = getaddrinfo(host, port, &hints, &res)) != 0) {
        snprintf(err, errlen, "could not resolve listen address %s: %s", addr,
                 gai_strerror(rc));
        return -1;
    }
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        if (lk->n == LISTEN_MAX_LOCKS)
            break;
        if (lock_name(ai->ai_addr, ai->ai_addrlen, &lk->fds[lk->n], err,
                      errlen) != 0)
            goto fail;
        lk->n++;
        if (probe(ai, addr, err, errlen) != 0)
            goto fail;
    }
    freeaddrinfo(res);
    if (lk->n == 0) {
        snprintf(err, errlen, "listen address %s resolves to nothing", addr);
        return -1;
    }
    return 0;

fail:
    freeaddrinfo(res);
    listen_release(lk);
    return -1;
}

void
listen_release(struct listen_lock *lk)
{
    for (int i = 0; i < lk->n; i++)
        close(lk->fds[i]);
    lk->n = 0;
}
