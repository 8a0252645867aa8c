/* bench_source.c -- `sockit bench --sources N`: connections spread over N
 * source addresses of 127.0.0.0/8 (127.0.0.1 to 127.0.0.N), so that the
 * ephemeral ports of one source address (with the 4-tuples in TIME_WAIT
 * of earlier runs) do not bound the connections to one loopback target;
 * and the check that -c fits the descriptor limit. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

/* Descriptors a run holds besides its connections: the standard ones,
 * and per generator thread its loop, timers and eventfd. */
#define FD_RESERVE 16
#define FD_PER_THREAD 4

int bench_source_check(struct bench *b)
{
    const struct bench_opts *o = &b->opts;

    if (o->sources <= 1)
        return 0;
    if (o->ep.tls || o->churn || b->dgram ||
        sk_endpoint_socktype(&o->ep) != SOCK_STREAM ||
        sk_endpoint_is_unix(&o->ep) || sk_endpoint_protocol(&o->ep) != 0) {
        cli_error("bench: --sources needs a plain tcp endpoint (no tls, no "
                  "--connect)");
        return -1;
    }
    for (size_t i = 0; i < b->naddrs; i++) {
        const struct sk_addr *a = &b->addrs[i];
        if (a->u.sa.sa_family == AF_INET &&
            (ntohl(a->u.in.sin_addr.s_addr) >> 24) == 127) {
            b->source_target = *a;
            return 0;
        }
    }
    cli_error("bench: --sources needs a target in 127.0.0.0/8");
    return -1;
}

int bench_fd_check(const struct bench *b)
{
    unsigned long need, limit;
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 0;
    limit = rl.rlim_cur > 1ul << 30 ? 1ul << 30 : (unsigned long)rl.rlim_cur;
    need = b->opts.conns + FD_RESERVE + FD_PER_THREAD * b->opts.threads;
    if (need <= limit)
        return 0;
    cli_error("bench: -c %u: the descriptor limit (%lu) allows at most %lu "
              "connections",
              b->opts.conns, limit,
              limit > need - b->opts.conns ? limit - (need - b->opts.conns)
                                           : 0);
    return -1;
}

/* Waits for the connect of fd to finish; returns 0 or a negative errno. */
static int wait_connected(int fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    socklen_t len = sizeof(int);
    int n, err = 0;

    do
        n = poll(&p, 1, timeout_ms);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    if (n == 0)
        return -ETIMEDOUT;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return -errno;
    return -err;
}

int bench_source_connect(const struct bench *b, uint64_t index, int timeout_ms)
{
    struct sockaddr_in src = {.sin_family = AF_INET};
    int fd, one = 1, err;

    /* 127.0.0.1 + index % N: the port is picked at connect(), for the
     * 4-tuple, not at bind(), so each source has its own ports. */
    src.sin_addr.s_addr =
        htonl(0x7f000001u + (uint32_t)(index % b->opts.sources));
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one)) <
            0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
        bind(fd, (const struct sockaddr *)&src, sizeof(src)) < 0)
        goto fail;
    if (connect(fd, &b->source_target.u.sa, b->source_target.len) < 0 &&
        errno != EINPROGRESS)
        goto fail;
    if ((err = wait_connected(fd, timeout_ms)) < 0) {
        close(fd);
        return err;
    }
    return fd;
fail:
    err = -errno;
    close(fd);
    return err;
}
