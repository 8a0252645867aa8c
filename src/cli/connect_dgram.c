/* connect_dgram.c -- the datagram side of `sockit connect`: each line of
 * stdin, with its LF (as nc sends it; without it under --strip-lf, with a
 * CR before it under -C), is one datagram, and each reply is printed with
 * a LF after it unless it ends in one; -x dumps each datagram, sent and
 * received. Also the helpers both sides share: the CRLF conversion, the
 * printing of a reply and the report of a failed stdout. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "connect.h"

volatile sig_atomic_t connect_interrupted;

size_t connect_crlf(const char *in, size_t len, char *out, bool *prev_cr)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        if (in[i] == '\n' && !*prev_cr)
            out[n++] = '\r';
        out[n++] = in[i];
        *prev_cr = in[i] == '\r';
    }
    return n;
}

int connect_stdout_failed(int err)
{
    if (err == -EPIPE)
        return EXIT_OK; /* the reader is gone (`| head`): nothing to say */
    cli_error("stdout: %s", sk_strerror(err));
    return EXIT_RUNTIME;
}

static int fail(const struct sk_endpoint *ep, int err)
{
    cli_error_ep("connect", ep, err);
    return EXIT_RUNTIME;
}

int connect_put_out(const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(1, data, len);
        if (n < 0 && errno == EAGAIN) {
            struct pollfd p = {.fd = 1, .events = POLLOUT};
            poll(&p, 1, -1);
            continue;
        }
        if (n < 0 && errno != EINTR)
            return -errno;
        if (n > 0) {
            data += n;
            len -= (size_t)n;
        }
    }
    return 0;
}

int connect_print_reply(const char *data, size_t len, bool hex)
{
    int err;

    if (hex)
        connect_hex('<', data, len);
    err = connect_put_out(data, len);
    if (err == 0 && (len == 0 || data[len - 1] != '\n'))
        err = connect_put_out("\n", 1);
    return err;
}

/* Prints one reply, with a LF unless it ends in one. Returns 0, 1 when
 * there was none after all, or -errno of the socket; a failed stdout is
 * left in *out_err. */
static int print_reply(int sock, const struct sk_addr *peer, int *out_err,
                       bool hex)
{
    static char buf[SK_DGRAM_MAX];
    struct sk_addr from = {.len = sizeof(from.u)};
    ssize_t n =
        recvfrom(sock, buf, SK_DGRAM_MAX, MSG_DONTWAIT, &from.u.sa, &from.len);

    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? 1 : -errno;
    /* A socket connected after datagrams of others were queued (-l on
     * UDP) still holds them: they are not the peer's replies. */
    if (peer != NULL &&
        (from.len != peer->len || memcmp(&from.u, &peer->u, from.len) != 0))
        return 1;
    *out_err = connect_print_reply(buf, (size_t)n, hex);
    return 0;
}

/* The peer's address, when it is an IP one (to tell its replies from
 * datagrams that came before the socket was connected); else NULL. */
static const struct sk_addr *ip_peer(int sock, struct sk_addr *peer)
{
    peer->len = sizeof(peer->u);
    if (getpeername(sock, &peer->u.sa, &peer->len) < 0 ||
        (peer->u.sa.sa_family != AF_INET && peer->u.sa.sa_family != AF_INET6))
        return NULL;
    return peer;
}

/* One datagram for the line of len bytes at line (its LF, if any, at
 * line[len - 1]). */
static int send_line(int sock, const char *line, size_t len,
                     const struct connect_opts *o)
{
    static char buf[SK_DGRAM_MAX + 2];
    bool lf = len > 0 && line[len - 1] == '\n';

    if (lf && o->strip_lf) {
        len--;
    } else if (lf && o->crlf && (len < 2 || line[len - 2] != '\r')) {
        memcpy(buf, line, len - 1);
        memcpy(buf + len - 1, "\r\n", 2);
        line = buf;
        len++;
    }
    if (o->hex)
        connect_hex('>', line, len);
    if (send(sock, line, len, MSG_NOSIGNAL) < 0)
        return -errno;
    return 0;
}

/* Sends every complete line held in buf; returns bytes consumed or -errno.
 * at_eof: the rest, if any, is a last line too (sent as it is). */
static ssize_t send_lines(int sock, const char *buf, size_t len, bool at_eof,
                          const struct connect_opts *o)
{
    size_t used = 0;

    while (used < len) {
        const char *lf = memchr(buf + used, '\n', len - used);
        size_t n = lf != NULL ? (size_t)(lf - buf - used) + 1 : len - used;
        if (lf == NULL && !at_eof)
            break;
        int err = send_line(sock, buf + used, n, o);
        if (err < 0)
            return err;
        used += n;
    }
    return (ssize_t)used;
}

/* Milliseconds to wait in poll: until the final wait after stdin's end
 * (deadline), or the idle limit (-i), whichever comes first; -1 for none;
 * 0 when one has passed. */
static int wait_for(int64_t deadline, int64_t idle_at)
{
    int64_t now = (int64_t)cli_now_ms(), until = deadline;

    if (idle_at >= 0 && (until < 0 || idle_at < until))
        until = idle_at;
    if (until < 0)
        return -1;
    return until <= now ? 0 : (int)(until - now);
}

int connect_dgram(const struct sk_endpoint *ep, int sock,
                  const struct connect_opts *o)
{
    static char line[SK_DGRAM_MAX + 1];
    struct sk_addr peer_room;
    const struct sk_addr *peer = ip_peer(sock, &peer_room);
    size_t len = 0;
    int64_t deadline = -1, idle_at = -1;
    int err = 0, out_err = 0;
    sigset_t waiting; /* SIGINT and SIGTERM arrive only while waiting */

    pthread_sigmask(SIG_SETMASK, NULL, &waiting);
    sigdelset(&waiting, SIGINT);
    sigdelset(&waiting, SIGTERM);
    if (o->idle_ms > 0)
        idle_at = (int64_t)cli_now_ms() + o->idle_ms;
    while (err == 0) {
        struct pollfd p[2] = {{.fd = deadline < 0 ? 0 : -1, .events = POLLIN},
                              {.fd = sock, .events = POLLIN}};
        int wait = wait_for(deadline, idle_at);
        struct timespec ts = {.tv_sec = wait / 1000,
                              .tv_nsec = (long)(wait % 1000) * 1000000};
        if (wait == 0)
            return EXIT_OK;
        if (ppoll(p, 2, wait < 0 ? NULL : &ts, &waiting) < 0) {
            if (errno == EINTR && connect_interrupted)
                return EXIT_OK;
            err = errno == EINTR ? 0 : -errno;
            continue;
        }
        if (p[1].revents) {
            err = print_reply(sock, peer, &out_err, o->hex);
            if (out_err < 0)
                return connect_stdout_failed(out_err);
            if (err == 0 && idle_at >= 0)
                idle_at = (int64_t)cli_now_ms() + o->idle_ms;
            if (err > 0)
                err = 0;
        }
        if (err != 0 || !p[0].revents)
            continue;
        ssize_t n = read(0, line + len, sizeof(line) - 1 - len);
        if (n < 0) {
            err = errno == EINTR || errno == EAGAIN ? 0 : -errno;
            continue;
        }
        if (n > 0 && idle_at >= 0)
            idle_at = (int64_t)cli_now_ms() + o->idle_ms;
        len += (size_t)n;
        ssize_t used = send_lines(sock, line, len, n == 0, o);
        if (used < 0) {
            err = (int)used;
            continue;
        }
        memmove(line, line + used, len - (size_t)used);
        len -= (size_t)used;
        if (len == sizeof(line) - 1)
            err = -EMSGSIZE;
        if (n == 0)
            deadline = (int64_t)cli_now_ms() + o->timeout_ms;
    }
    return fail(ep, err);
}
