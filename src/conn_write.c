/* conn_write.c -- the output of a stream connection: queued by
 * sk_conn_write() behind its limits, and flushed once per loop iteration
 * (after the callback that queued it, or on writability). */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include "conn.h"

/* Writes this long, with nothing queued, go straight out (write_through);
 * shorter ones are queued, to leave in one send with what the same
 * callback writes next. */
#define WRITE_THROUGH_MIN (16 * 1024)
/* The longest queue sent through an io_uring loop's ring (ring_send()). */
#define RING_SEND_MAX (16 * 1024)

/* The most output a connection may queue: the limit, plus the larger of
 * the limit and one read, so that a service answering one read at a time
 * never meets it. */

static size_t hard_cap(const struct sk_conn *c)
{
    size_t max = c->output_max;

    return max + (max > SK_READ_CHUNK ? max : SK_READ_CHUNK);
}

int sk_conn_write(struct sk_conn *c, const void *data, size_t len)
{
    if (c->flags & CONN_BRIDGED)
        return -EPIPE; /* the service writes to its end of the pair */
    return sk__conn_write(c, data, len);
}

/* A message connection queues each write behind its length, so that the
 * flush sends it as one message. */
static int append_message(struct sk_conn *c, const void *data, size_t len)
{
    uint32_t n = (uint32_t)len;
    int err;

    if (len > SK_MESSAGE_MAX)
        return -EMSGSIZE;
    if ((err = sk_buf_reserve(&c->out, sizeof(n) + len)) < 0)
        return err;
    sk_buf_append(&c->out, &n, sizeof(n));
    return sk_buf_append(&c->out, data, len);
}

static void count_sent(struct sk_conn *c, size_t n)
{
    c->bytes_out += n;
    sk__count_add(c->w, c->l, SK_STAT_BYTES_OUT, (uint64_t)n);
    sk__conn_touch(c);
}

/* A long write with nothing queued before it goes to the socket at once,
 * from the caller's bytes: what the kernel takes is never copied into the
 * queue (bulk echo sends from the worker's read buffer). Returns how much
 * went; 0 when it cannot go now, the rest to be queued (a failed send
 * fails again at the flush, which closes c outside the caller's
 * callback). */
static size_t write_through(struct sk_conn *c, const void *data, size_t len)
{
    ssize_t n;

    if (len < WRITE_THROUGH_MIN || c->out.len > 0 || c->ssl != NULL ||
        (c->flags & (CONN_MESSAGES | CONN_STARTING)))
        return 0;
    n = send(c->io.fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n <= 0)
        return 0;
    count_sent(c, (size_t)n);
    c->flags |= CONN_WROTE; /* the flush that follows tells on_drain */
    return (size_t)n;
}

int sk__conn_write(struct sk_conn *c, const void *data, size_t len)
{
    /* A message is queued behind its 4-byte length. */
    size_t need = len + (c->flags & CONN_MESSAGES ? sizeof(uint32_t) : 0);
    size_t done;
    int err = 0;

    if (c->flags & (CONN_CLOSING | CONN_DETACHED | CONN_SHUT_WR))
        return -EPIPE;
    if (c->out.len >= hard_cap(c) || need > hard_cap(c) - c->out.len)
        return -ENOBUFS;
    done = write_through(c, data, len);
    if (c->flags & CONN_MESSAGES)
        err = append_message(c, data, len);
    else if (done < len)
        err = sk_buf_append(&c->out, (const char *)data + done, len - done);
    if (err < 0 && done > 0)
        sk__conn_finish(c, err); /* part went: no retry could mend it */
    if (err < 0)
        return err;
    sk__conn_queue(c);
    if (c->out.len >= c->output_max &&
        !(c->flags & (CONN_PAUSED | CONN_NO_PAUSE))) {
        c->flags |= CONN_PAUSED;
        sk__conn_watch(c);
    }
    return 0;
}

size_t sk_conn_pending(const struct sk_conn *c)
{
    return c->out.len;
}

size_t sk_conn_output_max(const struct sk_conn *c)
{
    return c->output_max;
}

bool sk_conn_keeps_messages(const struct sk_conn *c)
{
    return (c->flags & CONN_MESSAGES) != 0;
}

/* Sends the first queued message whole: its length, or -EAGAIN. */
static ssize_t send_message(struct sk_conn *c)
{
    uint32_t len;
    ssize_t n;

    memcpy(&len, sk_buf_head(&c->out), sizeof(len));
    n = send(c->io.fd, sk_buf_head(&c->out) + sizeof(len), len,
             MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0)
        return errno == EINTR ? -EAGAIN : -errno;
    return n == (ssize_t)len ? (ssize_t)(sizeof(len) + len) : -EMSGSIZE;
}

/* On an io_uring loop, a plain byte stream's queue of at most RING_SEND_MAX
 * bytes goes as a send through the ring, sent with the wait that ends the
 * iteration, its bytes kept at the head of the queue until it ends (see
 * sk__conn_sent()); a longer one costs a copy more than it saves, and
 * goes by send(2). True when it went. */
static bool ring_send(struct sk_conn *c)
{
    if (c->out.len > RING_SEND_MAX || c->ssl != NULL ||
        (c->flags & CONN_MESSAGES) || !sk__io_can_send(&c->io) ||
        sk__io_send(&c->io, sk_buf_head(&c->out), c->out.len) < 0)
        return false;
    c->flags |= CONN_SENDING;
    return true;
}

int sk__conn_sent(struct sk_conn *c)
{
    int res = sk__io_sent(&c->io);

    c->flags &= ~CONN_SENDING;
    if (res == -EAGAIN || res == -EINTR || res == 0)
        return 1; /* the socket is full: watch() asks for room */
    if (res < 0)
        return res;
    sk_buf_consume(&c->out, (size_t)res);
    count_sent(c, (size_t)res);
    c->flags |= CONN_WROTE; /* the flush that follows tells on_drain */
    return 0;
}

/* Sends what is queued. Returns 0 (all sent, in flight or the kernel is
 * full) or a negative errno after which c is closed. */
int sk__conn_flush(struct sk_conn *c)
{
    ssize_t n;

    if (c->flags & (CONN_STARTING | CONN_SENDING))
        return 0;
    while (c->out.len > 0) {
        if (ring_send(c))
            return 0;
        if (c->flags & CONN_MESSAGES)
            n = send_message(c);
        else if (c->ssl != NULL)
            n = sk__tls_conn_write(c, sk_buf_head(&c->out), c->out.len);
        else if ((n = send(c->io.fd, sk_buf_head(&c->out), c->out.len,
                           MSG_NOSIGNAL | MSG_DONTWAIT)) < 0)
            n = errno == EINTR ? -EAGAIN : -errno;
        if (n == -EAGAIN)
            break;
        if (n < 0)
            return (int)n;
        sk_buf_consume(&c->out, (size_t)n);
        n -= (c->flags & CONN_MESSAGES) ? (ssize_t)sizeof(uint32_t) : 0;
        count_sent(c, (size_t)n);
    }
    return sk__conn_shut_write(c);
}
