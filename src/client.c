/* client.c -- outbound connections: blocking helpers in the spirit of
 * Python's socket.create_connection(), and a non-blocking connector that
 * runs on a loop. */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left until deadline (at least 1), for wait_for(); -1
 * without a deadline. */
static int left_ms(int64_t deadline)
{
    int64_t left;

    if (deadline < 0)
        return -1;
    left = deadline - now_ms();
    /* At least 1: a wait of 0 would be one without a limit. */
    return left < 1 ? 1 : left > INT32_MAX ? INT32_MAX : (int)left;
}

/* Waits for events on fd; timeout_ms 0 (or negative) waits without a limit,
 * as everywhere in the API. */
static int wait_for(int fd, short events, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = events};
    int n;

    if (timeout_ms <= 0)
        timeout_ms = -1;
    do
        n = poll(&p, 1, timeout_ms);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    return n == 0 ? -ETIMEDOUT : 0;
}

static int socket_error(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);

    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return -errno;
    return -err;
}

/* A new socket for addr (protocol: 0, or IPPROTO_MPTCP), bound to source
 * when not NULL (of addr's family, else -EAFNOSUPPORT); UNIX datagram
 * sockets without one get an autobind address. */
static int open_socket(const struct sk_addr *addr, int socktype, int protocol,
                       const struct sk_addr *source)
{
    static const sa_family_t unix_family = AF_UNIX;
    int family = addr->u.sa.sa_family, fd, err;
    bool autobind = family == AF_UNIX && socktype == SOCK_DGRAM;

    if (source != NULL && source->u.sa.sa_family != family)
        return -EAFNOSUPPORT;
    fd = sk__sock_open(family, socktype, protocol);
    if (fd < 0)
        return fd;
    if ((source != NULL && bind(fd, &source->u.sa, source->len) < 0) ||
        (source == NULL && autobind &&
         bind(fd, (const struct sockaddr *)&unix_family, sizeof(unix_family)) <
             0)) {
        err = -errno;
        close(fd);
        return err;
    }
    if (socktype == SOCK_STREAM)
        sk__sock_set_nodelay(fd, family);
    return fd;
}

/* Starts connecting; returns the fd (connected or in progress, see
 * *pending) or a negative errno. */
static int start_connect(const struct sk_addr *addr, int socktype, int protocol,
                         const struct sk_addr *source, bool *pending)
{
    int fd = open_socket(addr, socktype, protocol, source), err;

    if (fd < 0)
        return fd;
    *pending = false;
    if (connect(fd, &addr->u.sa, addr->len) == 0)
        return fd;
    if (errno == EINPROGRESS) {
        *pending = true;
        return fd;
    }
    /* A UNIX listener with a full backlog says EAGAIN: "try later". */
    err = errno == EAGAIN ? -ECONNREFUSED : -errno;
    close(fd);
    return err;
}

static int connect_one(const struct sk_addr *addr, int socktype, int protocol,
                       const struct sk_addr *source, int64_t deadline)
{
    bool pending;
    int fd, err;

    fd = start_connect(addr, socktype, protocol, source, &pending);
    if (fd < 0 || !pending)
        return fd;
    err = wait_for(fd, POLLOUT, left_ms(deadline));
    if (err == 0)
        err = socket_error(fd);
    if (err == 0)
        return fd;
    close(fd);
    return err;
}

/* The first of n addresses that accepts, from source (may be NULL). */
static int connect_addrs(const struct sk_addr *addrs, size_t n, int socktype,
                         int protocol, const struct sk_addr *source,
                         int timeout_ms)
{
    int64_t deadline = timeout_ms <= 0 ? -1 : now_ms() + timeout_ms;
    int fd = -EINVAL, err = -EINVAL;

    for (size_t i = 0; i < n; i++) {
        fd = connect_one(&addrs[i], socktype, protocol, source, deadline);
        /* Without MPTCP, the next address will not have it either. */
        if (fd >= 0 || fd == -ETIMEDOUT || fd == SK_ENOMPTCP)
            return fd;
        /* An address of another family says less than a real failure. */
        if (fd != -EAFNOSUPPORT || err == -EINVAL)
            err = fd;
    }
    return err;
}

int sk_connect_addrs(const struct sk_addr *addrs, size_t n, int socktype,
                     int protocol, int timeout_ms)
{
    return connect_addrs(addrs, n, socktype, protocol, NULL, timeout_ms);
}

int sk_connect_from(const struct sk_endpoint *ep, const struct sk_addr *source,
                    int timeout_ms)
{
    struct sk_addr addrs[SK_CONNECT_ADDRS];
    int n = sk_endpoint_resolve(ep, false, addrs, SK_CONNECT_ADDRS);

    if (n < 0)
        return n;
    return connect_addrs(addrs, (size_t)n, sk_endpoint_socktype(ep),
                         sk_endpoint_protocol(ep), source, timeout_ms);
}

int sk_connect(const struct sk_endpoint *ep, int timeout_ms)
{
    return sk_connect_from(ep, NULL, timeout_ms);
}

int sk_send_all(int fd, const void *data, size_t len, int timeout_ms)
{
    const char *p = data;
    ssize_t n;
    int err;

    while (len > 0) {
        n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n >= 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (errno != EAGAIN && errno != EINTR)
            return -errno;
        if ((err = wait_for(fd, POLLOUT, timeout_ms)) < 0)
            return err;
    }
    return 0;
}

ssize_t sk_recv_timeout(int fd, void *buf, size_t len, int timeout_ms)
{
    ssize_t n;
    int err;

    for (;;) {
        n = recv(fd, buf, len, MSG_DONTWAIT);
        if (n >= 0)
            return n;
        if (errno != EAGAIN && errno != EINTR)
            return -errno;
        if ((err = wait_for(fd, POLLIN, timeout_ms)) < 0)
            return err;
    }
}

/* -------------------------------------------------------- on a loop */

static void on_result(struct sk_timer *t)
{
    struct sk_connector *cn = t->data;

    cn->has_result = false;
    cn->cb(cn, cn->result);
}

/* Inside sk_connector_start() (a UNIX socket, a datagram one: the outcome
 * is known at once), the result waits for the loop's next timers: cb never
 * runs before the start returns, whatever the kind of endpoint. */
static void connector_done(struct sk_connector *cn, int fd)
{
    if (cn->starting) {
        cn->has_result = true;
        cn->result = fd;
        cn->timer.cb = on_result; /* a restart of a running timer: no
                                     allocation, cannot fail */
        sk_timer_start(cn->timer.loop, &cn->timer, 0, 0);
        return;
    }
    sk_timer_stop(&cn->timer);
    cn->cb(cn, fd);
}

static void try_next(struct sk_connector *cn);

static void on_connected(struct sk_io *io, unsigned events)
{
    struct sk_connector *cn = io->data;
    int fd = io->fd, err = socket_error(fd);

    sk_io_stop(io);
    if (err == 0) {
        connector_done(cn, fd);
        return;
    }
    close(fd);
    cn->last_err = err;
    try_next(cn);
}

static void try_next(struct sk_connector *cn)
{
    bool pending;
    int fd, err;

    while (cn->next < cn->naddrs) {
        fd = start_connect(&cn->addrs[cn->next++], cn->socktype, cn->protocol,
                           cn->has_source ? &cn->source : NULL, &pending);
        if (fd >= 0 && !pending) {
            connector_done(cn, fd);
            return;
        }
        if (fd >= 0) {
            err = sk_io_start(cn->timer.loop, &cn->io, fd, SK_WRITE, false,
                              on_connected);
            if (err == 0)
                return;
            close(fd);
            fd = err;
        }
        /* An address of another family says less than a real failure. */
        if (fd != -EAFNOSUPPORT || !cn->has_source || cn->next == 1)
            cn->last_err = fd;
    }
    connector_done(cn, cn->last_err);
}

static void on_timeout(struct sk_timer *t)
{
    struct sk_connector *cn = t->data;

    if (sk_io_is_active(&cn->io)) {
        sk_io_stop(&cn->io);
        close(cn->io.fd);
    }
    cn->cb(cn, -ETIMEDOUT);
}

int sk_connector_start(struct sk_loop *loop, struct sk_connector *cn,
                       const struct sk_addr *addrs, size_t n, int socktype,
                       unsigned timeout_ms, sk_connect_fn cb)
{
    return sk_connector_start_proto(loop, cn, addrs, n, socktype, 0, timeout_ms,
                                    cb);
}

int sk_connector_start_proto(struct sk_loop *loop, struct sk_connector *cn,
                             const struct sk_addr *addrs, size_t n,
                             int socktype, int protocol, unsigned timeout_ms,
                             sk_connect_fn cb)
{
    return sk_connector_start_from(loop, cn, addrs, n, socktype, protocol, NULL,
                                   timeout_ms, cb);
}

int sk_connector_start_from(struct sk_loop *loop, struct sk_connector *cn,
                            const struct sk_addr *addrs, size_t n, int socktype,
                            int protocol, const struct sk_addr *source,
                            unsigned timeout_ms, sk_connect_fn cb)
{
    int err;

    if (n == 0)
        return -EINVAL;
    if (n > SK_CONNECT_ADDRS)
        n = SK_CONNECT_ADDRS;
    memcpy(cn->addrs, addrs, n * sizeof(*addrs));
    cn->naddrs = n;
    cn->next = 0;
    cn->socktype = socktype;
    cn->protocol = protocol;
    cn->last_err = -ECONNREFUSED;
    cn->has_source = source != NULL;
    if (source != NULL)
        cn->source = *source;
    cn->cb = cb;
    cn->has_result = false;
    cn->io = (struct sk_io){.data = cn};
    sk_timer_init(&cn->timer, on_timeout);
    cn->timer.data = cn;
    /* The timer also carries the loop for try_next(). */
    err = sk_timer_start(loop, &cn->timer,
                         timeout_ms > 0 ? timeout_ms : UINT32_MAX, 0);
    if (err < 0)
        return err;
    cn->starting = true;
    try_next(cn);
    cn->starting = false;
    return 0;
}

void sk_connector_cancel(struct sk_connector *cn)
{
    sk_timer_stop(&cn->timer);
    if (cn->has_result && cn->result >= 0)
        close(cn->result);
    cn->has_result = false;
    if (sk_io_is_active(&cn->io)) {
        sk_io_stop(&cn->io);
        close(cn->io.fd);
    }
}
