/* sock.c -- listening sockets of every kind (TCP, MPTCP, UDP; UNIX
 * stream, datagram and seqpacket): create, set options, bind, listen
 * (socket files are unix_file.c's). Every descriptor is non-blocking and
 * close-on-exec. */
#include <errno.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* Pending connections the kernel may queue; it clamps to somaxconn. */
#define LISTEN_BACKLOG 4096

static int set_int_opt(int fd, int level, int name, int value)
{
    if (setsockopt(fd, level, name, &value, sizeof(value)) < 0)
        return -errno;
    return 0;
}

/* Options before bind: the wildcard [::] of "tcp://:PORT" also takes IPv4
 * (dual_stack); reuseport joins a group of sockets sharing the port. */
static int set_bind_options(int fd, const struct sk_addr *addr, int socktype,
                            bool dual_stack, bool reuseport)
{
    int family = addr->u.sa.sa_family;
    int err = 0;

    if (family == AF_UNIX)
        return 0;
    /* For UDP, SO_REUSEADDR would let two servers share a port. */
    if (socktype == SOCK_STREAM)
        err = set_int_opt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    if (err == 0 && reuseport)
        err = set_int_opt(fd, SOL_SOCKET, SO_REUSEPORT, 1);
    if (err == 0 && family == AF_INET6)
        err = set_int_opt(fd, IPPROTO_IPV6, IPV6_V6ONLY, !dual_stack);
    return err;
}

int sk__sock_open(int family, int socktype, int protocol)
{
    int fd = socket(family, socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);

    if (fd >= 0)
        return fd;
    /* What a kernel without MPTCP says: built without it, or it is
     * turned off in this network namespace (net.mptcp.enabled = 0). */
    if (protocol == IPPROTO_MPTCP &&
        (errno == EPROTONOSUPPORT || errno == EINVAL || errno == ENOPROTOOPT))
        return SK_ENOMPTCP;
    return -errno;
}

int sk__sock_bind(const struct sk_addr *addr, int socktype, int protocol,
                  bool dual_stack, bool reuseport)
{
    int fd, err;

    fd = sk__sock_open(addr->u.sa.sa_family, socktype, protocol);
    if (fd < 0)
        return fd;
    err = set_bind_options(fd, addr, socktype, dual_stack, reuseport);
    if (err < 0)
        goto out_close;
    if (bind(fd, &addr->u.sa, addr->len) < 0) {
        err = -errno;
        goto out_close;
    }
    return fd;

out_close:
    close(fd);
    return err;
}

int sk__sock_listen(int fd, int socktype)
{
    bool connections = socktype == SOCK_STREAM || socktype == SOCK_SEQPACKET;

    if (connections && listen(fd, LISTEN_BACKLOG) < 0)
        return -errno;
    return 0;
}

int sk__sock_local(int fd, struct sk_addr *addr)
{
    addr->len = sizeof(addr->u);
    if (getsockname(fd, &addr->u.sa, &addr->len) < 0)
        return -errno;
    return 0;
}

int sk__sock_set_port(struct sk_addr *addr, uint16_t port)
{
    if (addr->u.sa.sa_family == AF_INET)
        addr->u.in.sin_port = htons(port);
    else if (addr->u.sa.sa_family == AF_INET6)
        addr->u.in6.sin6_port = htons(port);
    else
        return -EAFNOSUPPORT;
    return 0;
}

uint16_t sk__sock_port(const struct sk_addr *addr)
{
    if (addr->u.sa.sa_family == AF_INET)
        return ntohs(addr->u.in.sin_port);
    if (addr->u.sa.sa_family == AF_INET6)
        return ntohs(addr->u.in6.sin6_port);
    return 0;
}

int sk__sock_probe(const struct sk_addr *addr, int socktype, int protocol,
                   bool dual_stack)
{
    struct sk_addr local;
    int fd, err;

    fd = sk__sock_bind(addr, socktype, protocol, dual_stack, false);
    if (fd < 0)
        return fd;
    err = sk__sock_local(fd, &local);
    close(fd);
    return err < 0 ? err : sk__sock_port(&local);
}

void sk__sock_set_nodelay(int fd, int family)
{
    if (family == AF_INET || family == AF_INET6)
        set_int_opt(fd, IPPROTO_TCP, TCP_NODELAY, 1);
}
