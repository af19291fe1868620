/*
 * compare_util.c - small measurements for bench/compare that a shell
 * cannot make well
 *
 * usage: compare_util port
 *            print a TCP port on 127.0.0.1 that is free at the moment
 *        compare_util startup PORT KEY CMD [ARG...]
 *            spawn CMD (a `buffdb run` on 127.0.0.1:PORT), then time how
 *            long until a Kv.Get of KEY answers OK; print
 *            "listen_ms get_ms": milliseconds from the spawn to the
 *            first accepted TCP connection and to the first good Get.
 *            The server is then stopped (SIGTERM, SIGKILL after 10 s).
 *        compare_util memcpy BYTES
 *            print the best of three memcpy()s of BYTES between two
 *            buffers already faulted in: "seconds MB/s"
 *
 * Not part of buffdb; the script compiles it with cc and pkg-config's
 * flags for grpc.  Each wait is bounded: startup gives up after 10 s.
 *
 * startup: gRPC is initialised, and one fail-fast Get sent to the port
 * (refused: nothing listens yet), before the spawn, so the client's own
 * first-use costs are not counted; the server is spawned with posix_spawn (no fork handlers
 * run in the child, which gRPC would not survive).  The port is polled
 * with a plain non-blocking connect() every 0.5 ms; once one succeeds a
 * channel is created and a unary Kv.Get sent (fail-fast), retried every
 * millisecond until it answers OK.  The Get request is encoded by hand:
 * field 1 (key), wire type 2.
 */
#include <errno.h>
#include <fcntl.h>
#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define STARTUP_LIMIT_MS 10000
#define STOP_LIMIT_MS 10000

static double
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void
sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};

    nanosleep(&ts, NULL);
}

static int
cmd_port(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0) {
        perror("compare_util: socket");
        return 1;
    }
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        perror("compare_util: bind");
        close(fd);
        return 1;
    }
    printf("%u\n", (unsigned)ntohs(a.sin_port));
    close(fd);
    return 0;
}

/* tcp_accepts - whether a connection to 127.0.0.1:port completes within
 * 100 ms */
static int
tcp_accepts(int port)
{
    struct sockaddr_in a;
    struct pollfd p;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), err = 0;
    socklen_t len = sizeof(err);

    if (fd < 0)
        return 0;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
        close(fd);
        return 1;
    }
    if (errno != EINPROGRESS) {
        close(fd);
        return 0;
    }
    p.fd = fd;
    p.events = POLLOUT;
    if (poll(&p, 1, 100) != 1 ||
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
        close(fd);
        return 0;
    }
    close(fd);
    return 1;
}

/* get_ok - one unary Kv.Get of key on ch; 1 if it answered OK */
static int
get_ok(grpc_channel *ch, grpc_completion_queue *cq, const char *key)
{
    uint8_t req[300];
    size_t klen = strlen(key);
    grpc_op ops[6];
    grpc_metadata_array md, trailing;
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details;
    grpc_byte_buffer *send_buf, *recv_buf = NULL;
    int ok = 0;

    if (klen > 127)
        return 0;
    req[0] = 0x0a;
    req[1] = (uint8_t)klen;
    memcpy(req + 2, key, klen);
    grpc_slice s = grpc_slice_from_copied_buffer((const char *)req, klen + 2);
    send_buf = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    grpc_metadata_array_init(&md);
    grpc_metadata_array_init(&trailing);
    gpr_timespec dl = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                   gpr_time_from_millis(2000, GPR_TIMESPAN));
    grpc_slice method = grpc_slice_from_static_string("/buffdb.kv.Kv/Get");
    grpc_call *call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS,
                                               cq, method, NULL, dl, NULL);
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send_buf;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &recv_buf;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &trailing;
    ops[5].data.recv_status_on_client.status = &status;
    ops[5].data.recv_status_on_client.status_details = &details;
    if (grpc_call_start_batch(call, ops, 6, (void *)1, NULL) == GRPC_CALL_OK) {
        grpc_event ev = grpc_completion_queue_next(
            cq, gpr_time_add(dl, gpr_time_from_millis(1000, GPR_TIMESPAN)),
            NULL);
        if (ev.type == GRPC_OP_COMPLETE) {
            ok = ev.success && status == GRPC_STATUS_OK && recv_buf != NULL;
            grpc_slice_unref(details);
        } else {
            /* bounded: the deadline has passed, cancel and drain */
            grpc_call_cancel(call, NULL);
            grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC),
                                       NULL);
            grpc_slice_unref(details);
        }
    }
    grpc_call_unref(call);
    grpc_slice_unref(method);
    grpc_byte_buffer_destroy(send_buf);
    if (recv_buf)
        grpc_byte_buffer_destroy(recv_buf);
    grpc_metadata_array_destroy(&md);
    grpc_metadata_array_destroy(&trailing);
    return ok;
}

/* stop - SIGTERM pid, wait up to STOP_LIMIT_MS, then SIGKILL and reap */
static void
stop(pid_t pid)
{
    int st;
    double t0 = now_ms();

    kill(pid, SIGTERM);
    while (now_ms() - t0 < STOP_LIMIT_MS) {
        if (waitpid(pid, &st, WNOHANG) == pid)
            return;
        sleep_us(5000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
}

static volatile sig_atomic_t interrupted;

static void
on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static int
cmd_startup(int port, const char *key, char **argv)
{
    char addr[64];
    pid_t pid;
    double t0, t_listen = -1, t_get = -1;
    int rc = 1;
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    grpc_init();
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);

    /* pay gRPC's first-use costs (resolver, channel stack, first call)
     * before the clock starts: a fail-fast Get to the port, where nothing
     * listens yet, is refused at once */
    {
        grpc_channel_credentials *cr = grpc_insecure_credentials_create();
        grpc_channel *ch = grpc_channel_create(addr, cr, NULL);
        grpc_channel_credentials_release(cr);
        (void)get_ok(ch, cq, key);
        grpc_channel_destroy(ch);
    }
    t0 = now_ms();
    if (posix_spawn(&pid, argv[0], NULL, NULL, argv, environ) != 0) {
        perror("compare_util: posix_spawn");
        goto out;
    }
    while (!interrupted && now_ms() - t0 < STARTUP_LIMIT_MS) {
        if (tcp_accepts(port)) {
            t_listen = now_ms() - t0;
            break;
        }
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            fprintf(stderr, "compare_util: the server exited at once\n");
            pid = 0;
            goto out_cq;
        }
        sleep_us(500);
    }
    if (t_listen >= 0) {
        grpc_arg args[2];
        memset(args, 0, sizeof(args));
        args[0].type = GRPC_ARG_INTEGER;
        args[0].key = (char *)GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS;
        args[0].value.integer = 1;
        args[1].type = GRPC_ARG_INTEGER;
        args[1].key = (char *)GRPC_ARG_MIN_RECONNECT_BACKOFF_MS;
        args[1].value.integer = 1;
        grpc_channel_args cargs = {2, args};
        while (!interrupted && now_ms() - t0 < STARTUP_LIMIT_MS) {
            grpc_channel_credentials *cr = grpc_insecure_credentials_create();
            grpc_channel *ch = grpc_channel_create(addr, cr, &cargs);
            grpc_channel_credentials_release(cr);
            int ok = get_ok(ch, cq, key);
            grpc_channel_destroy(ch);
            if (ok) {
                t_get = now_ms() - t0;
                break;
            }
            sleep_us(1000);
        }
    }
    if (t_get >= 0) {
        printf("%.1f %.1f\n", t_listen, t_get);
        rc = 0;
    } else {
        fprintf(stderr, "compare_util: no good Get within %d ms\n",
                STARTUP_LIMIT_MS);
    }
out_cq:
    if (pid > 0)
        stop(pid);
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC),
                                      NULL)
               .type != GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
out:
    grpc_shutdown();
    return rc;
}

static int
cmd_memcpy(const char *arg)
{
    char *end;
    unsigned long long n = strtoull(arg, &end, 10);
    double best = -1;

    if (*end != '\0' || n == 0) {
        fprintf(stderr, "compare_util: memcpy: bad size '%s'\n", arg);
        return 2;
    }
    char *a = malloc(n), *b = malloc(n);
    if (a == NULL || b == NULL) {
        fprintf(stderr, "compare_util: memcpy: out of memory\n");
        return 1;
    }
    /* fault both in, so page faults are not timed */
    memset(a, 'x', n);
    memset(b, 0, n);
    for (int i = 0; i < 3; i++) {
        double t0 = now_ms();
        memcpy(i % 2 ? a : b, i % 2 ? b : a, n);
        double t = (now_ms() - t0) / 1e3;
        if (best < 0 || t < best)
            best = t;
    }
    /* use the data, or the copies could be optimised out */
    if (a[n / 2] != 'x' || b[n / 3] != 'x')
        return 1;
    printf("%.4f %.1f\n", best, (double)n / 1e6 / best);
    free(a);
    free(b);
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "port") == 0)
        return cmd_port();
    if (argc >= 5 && strcmp(argv[1], "startup") == 0)
        return cmd_startup(atoi(argv[2]), argv[3], argv + 4);
    if (argc == 3 && strcmp(argv[1], "memcpy") == 0)
        return cmd_memcpy(argv[2]);
    fprintf(stderr, "usage: compare_util port | startup PORT KEY CMD [ARG...] "
                    "| memcpy BYTES\n");
    return 2;
}
