/* conn.c -- stream connections: read into the worker's buffer, queue
 * output and flush it once per loop iteration, pause reading while the
 * output is over its limit, close gracefully or at once, expire idle ones. */
#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"

static const struct sk_handler *handler_of(const struct sk_conn *c)
{
    return c->h;
}

/* ------------------------------------------------------ activity list */

void sk__conn_list_unlink(struct sk_conn *c)
{
    struct sk_worker *w = c->w;

    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        w->oldest = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    else
        w->newest = c->prev;
    c->prev = c->next = NULL;
}

void sk__conn_list_append(struct sk_conn *c)
{
    struct sk_worker *w = c->w;

    c->prev = w->newest;
    c->next = NULL;
    if (w->newest != NULL)
        w->newest->next = c;
    else
        w->oldest = c;
    w->newest = c;
}

void sk__conn_touch(struct sk_conn *c)
{
    c->last_active = sk_loop_now(c->w->loop);
    if (c->w->newest != c) {
        sk__conn_list_unlink(c);
        sk__conn_list_append(c);
    }
}

/* ------------------------------------------------------ pending list */

static struct sk_conn *conn_of_pending(struct sk_link *node)
{
    return (struct sk_conn *)((char *)node - offsetof(struct sk_conn, pending));
}

void sk__conn_queue(struct sk_conn *c)
{
    if (c->flags & CONN_QUEUED)
        return;
    c->flags |= CONN_QUEUED;
    sk__link_append(&c->w->pending, &c->pending);
}

/* Takes c off whichever pending list holds it: the worker's, or the batch
 * a flush is walking. */
static void unqueue(struct sk_conn *c)
{
    if (!(c->flags & CONN_QUEUED))
        return;
    c->flags &= ~CONN_QUEUED;
    sk__link_remove(&c->pending);
}

/* ---------------------------------------------------------- closing */

/* Closes the socket now; the struct is freed, and on_close called, when
 * the current loop iteration ends. A closed connection is on the closed
 * list and on no pending list: the two exclude each other. A clean close
 * of a TLS connection says so with close_notify first. */
static void finish(struct sk_conn *c, int status)
{
    if (c->flags & CONN_CLOSED)
        return;
    unqueue(c);
    c->flags |= CONN_CLOSED | CONN_CLOSING;
    if (c->status == 0)
        c->status = status;
    if (c->ssl != NULL && status == 0 &&
        !(c->flags & (CONN_SHUT_DONE | CONN_NO_NOTIFY)))
        sk__tls_conn_shutdown(c);
    sk__tls_conn_free(c);
    if (c->ob != NULL)
        sk__outbound_free(c);
    if (!(c->flags & CONN_DETACHED) && c->io.fd >= 0) {
        sk_io_stop(&c->io);
        close(c->io.fd);
    }
    if (c->flags & CONN_STARTING)
        sk__link_remove(&c->starting);
    if (c->joined != NULL)
        sk__join_broken(c);
    sk__conn_list_unlink(c);
    c->next_closed = c->w->closed;
    c->w->closed = c;
}

void sk__conn_finish(struct sk_conn *c, int status)
{
    finish(c, status);
}

void sk_conn_abort(struct sk_conn *c)
{
    sk_buf_consume(&c->out, c->out.len);
    finish(c, -ECONNABORTED);
}

static bool reading(const struct sk_conn *c)
{
    return !(c->flags & (CONN_CLOSING | CONN_PAUSED | CONN_EOF | CONN_HELD));
}

/* A connection that hung up while it was not reading is unwatched (a
 * hang-up is reported whatever is asked for) until it reads or sends
 * again: what the peer sent before it went is read then, not dropped. */
static int unpark(struct sk_conn *c, unsigned ev)
{
    c->flags &= ~(CONN_PARKED | CONN_RING_RX);
    return sk_io_start(c->w->loop, &c->io, c->io.fd, ev, false, c->io.cb);
}

static void watch(struct sk_conn *c)
{
    unsigned ev = 0;
    int err;

    if (c->flags & (CONN_CLOSED | CONN_DETACHED))
        return;
    if (!(c->flags & CONN_PARKED) && !sk_io_is_active(&c->io))
        return; /* still connecting: the connector watches */
    if (c->flags & CONN_STARTING) {
        ev = c->start_wants;
    } else {
        if (reading(c) || (c->flags & CONN_WR_WANTS_R))
            ev |= SK_READ;
        /* CONN_WROTE: output went straight out since the last flush, whose
         * on_drain is due even when the flush rounds are over. */
        /* CONN_SENDING: the ring's send tells when it ends. */
        if (!(c->flags & CONN_SENDING) &&
            (c->out.len > 0 || ((c->flags & CONN_RD_WANTS_W) && reading(c)) ||
             (c->flags & (CONN_SHUT_WR | CONN_SHUT_DONE)) == CONN_SHUT_WR ||
             (c->flags & CONN_WROTE)))
            ev |= SK_WRITE;
    }
    /* Parked, it waits until it reads again or has something to send (the
     * send then tells whether the peer is gone). */
    if ((c->flags & CONN_PARKED) && !reading(c) && !(ev & SK_WRITE))
        return;
    err = c->flags & CONN_PARKED ? unpark(c, ev) : sk_io_set(&c->io, ev);
    if (err < 0) {
        finish(c, err);
        return;
    }
    /* A plain byte stream reads through an io_uring loop's ring. */
    if ((ev & SK_READ) && c->ssl == NULL &&
        !(c->flags &
          (CONN_RING_RX | CONN_NO_RING | CONN_MESSAGES | CONN_STARTING)))
        c->flags |= sk__io_recv_start(&c->io) ? CONN_RING_RX : CONN_NO_RING;
    /* Whole records OpenSSL read ahead are read before the loop waits. */
    if ((ev & SK_READ) && reading(c) && (c->flags & CONN_TLS_MORE))
        sk__conn_queue(c);
}

void sk__conn_watch(struct sk_conn *c)
{
    watch(c);
}

/* Nothing is left to send before the socket closes: over TLS, the
 * close_notify is out (or could not be sent). */
static bool closed_cleanly(const struct sk_conn *c)
{
    return c->ssl == NULL ||
           (c->flags & (CONN_SHUT_DONE | CONN_STARTING | CONN_NO_NOTIFY));
}

void sk_conn_close(struct sk_conn *c)
{
    if (c->flags & CONN_CLOSING)
        return;
    /* A bridged connection closes once its service's end has ended and
     * everything it sent is passed on. */
    if ((c->flags & CONN_BRIDGED) && c->joined != NULL &&
        !(c->joined->flags & CONN_EOF)) {
        c->flags |= CONN_CLOSE_ASKED;
        return;
    }
    c->flags |= CONN_CLOSING;
    if (c->ssl != NULL && !(c->flags & (CONN_STARTING | CONN_NO_NOTIFY))) {
        /* close_notify after the output, when the socket takes it. */
        c->flags |= CONN_SHUT_WR;
        if (sk__conn_shut_write(c) < 0)
            c->flags |= CONN_SHUT_DONE;
    }
    if ((c->out.len == 0 && closed_cleanly(c)) || (c->flags & CONN_DETACHED))
        finish(c, 0);
    else
        watch(c);
}

void sk_conn_hold_input(struct sk_conn *c, bool hold)
{
    if (hold == ((c->flags & CONN_HELD) != 0))
        return;
    c->flags ^= CONN_HELD;
    watch(c);
}

/* Sends the FIN or close_notify once the output is out. */
int sk__conn_shut_write(struct sk_conn *c)
{
    int err = 0;

    if ((c->flags & (CONN_SHUT_WR | CONN_SHUT_DONE)) != CONN_SHUT_WR ||
        c->out.len > 0)
        return 0;
    if (c->ssl != NULL)
        err = sk__tls_conn_shutdown(c);
    else if (shutdown(c->io.fd, SHUT_WR) < 0)
        err = -errno;
    if (err == -EAGAIN)
        return 0;
    c->flags |= CONN_SHUT_DONE;
    return err == -ENOTCONN ? 0 : err;
}

void sk_conn_shutdown(struct sk_conn *c)
{
    if (c->flags & (CONN_CLOSING | CONN_DETACHED | CONN_SHUT_WR))
        return;
    c->flags |= CONN_SHUT_WR;
    if (c->flags & CONN_STARTING)
        return;
    if (sk__conn_shut_write(c) < 0) {
        finish(c, -EPIPE);
        return;
    }
    watch(c);
}

bool sk_conn_is_closing(const struct sk_conn *c)
{
    return (c->flags & CONN_CLOSING) != 0;
}

/* Flushes c and updates what it waits for. When the queue empties, the
 * handler hears of it and may queue more (sent on the next round). */
static void flush_and_watch(struct sk_conn *c)
{
    bool had_output = c->out.len > 0 || (c->flags & CONN_WROTE);
    int err = sk__conn_flush(c);

    c->flags &= ~CONN_WROTE;

    if (err < 0) {
        sk_buf_consume(&c->out, c->out.len);
        finish(c, err);
        return;
    }
    if ((c->flags & CONN_PAUSED) && c->out.len <= c->output_max / 2)
        c->flags &= ~CONN_PAUSED;
    /* A queue that grew past the limit (a peer that stopped reading) gives
     * its memory back when it empties; one within the limit keeps it, so
     * steady traffic allocates nothing. Over TLS, where OpenSSL allocates
     * and frees a record buffer per write anyway, an idle connection keeps
     * no queue. */
    if (c->out.len == 0 && (c->out.cap > c->output_max || c->ssl != NULL))
        sk_buf_release(&c->out);
    if (c->out.len == 0 && (c->flags & CONN_CLOSING) && closed_cleanly(c)) {
        finish(c, 0);
        return;
    }
    watch(c);
    if (!had_output || c->out.len > 0)
        return;
    if (c->joined != NULL)
        sk__join_drain(c);
    else if (handler_of(c)->on_drain != NULL)
        handler_of(c)->on_drain(c);
}

static void read_input(struct sk_conn *c);

/* Flushes the connections queued so far. Callbacks may queue, close or
 * abort any connection meanwhile: one queued anew waits for the next
 * round, one closed leaves the batch at once. */
void sk__conn_flush_pending(struct sk_worker *w)
{
    struct sk_link batch;

    sk__link_init(&batch);
    sk__link_splice(&batch, &w->pending);
    while (!sk__link_empty(&batch)) {
        struct sk_conn *c = conn_of_pending(batch.next);
        unqueue(c);
        if ((c->flags & CONN_TLS_MORE) && reading(c)) {
            read_input(c); /* clears CONN_TLS_MORE, or sets it again */
            if (c->flags & CONN_CLOSED)
                continue;
        }
        flush_and_watch(c);
    }
}

void sk__conn_watch_pending(struct sk_worker *w)
{
    struct sk_link *node = w->pending.next;

    bool more = false;

    while (node != &w->pending) {
        struct sk_link *next = node->next;
        struct sk_conn *c = conn_of_pending(node);
        watch(c); /* may close it: next is kept */
        more =
            more || (c->flags & (CONN_TLS_MORE | CONN_CLOSED)) == CONN_TLS_MORE;
        node = next;
    }
    /* TLS input that rounds of flushing left: no waiting on it. */
    if (more)
        sk_loop_wake(w->loop);
}

/* ------------------------------------------------------------- input */

static void on_peer_eof(struct sk_conn *c)
{
    const struct sk_handler *h = handler_of(c);

    c->flags |= CONN_EOF;
    watch(c);
    if (c->joined != NULL)
        sk__join_eof(c);
    else if (h->on_eof != NULL)
        h->on_eof(c);
    else
        sk_conn_close(c);
}

/* The ring's input comes in chunks of up to 32 KiB: one alone is read
 * where it lies, several are gathered into buf, up to SK_READ_CHUNK (what
 * one recv(2) would read). */
static ssize_t receive_from_ring(struct sk_conn *c, char *buf,
                                 const char **data)
{
    ssize_t n = sk__io_recv(&c->io, data), next;
    size_t len;

    if (n <= 0 || (next = sk__io_recv_peek(&c->io)) <= 0 ||
        (size_t)(n + next) > SK_READ_CHUNK)
        return n;
    memcpy(buf, *data, (size_t)n);
    len = (size_t)n;
    while ((next = sk__io_recv_peek(&c->io)) > 0 &&
           len + (size_t)next <= SK_READ_CHUNK) {
        const char *more;
        sk__io_recv(&c->io, &more);
        memcpy(buf + len, more, (size_t)next);
        len += (size_t)next;
    }
    *data = buf;
    return (ssize_t)len;
}

/* Reads what the socket (or TLS, or the ring) has, up to one chunk, into
 * buf or (the ring's) at *data: a count, 0 at the end of the stream,
 * -EAGAIN, or a negative errno. */
static ssize_t receive(struct sk_conn *c, char *buf, const char **data)
{
    ssize_t n;

    *data = buf;
    if (c->flags & CONN_RING_RX)
        return receive_from_ring(c, buf, data);
    if (c->ssl != NULL)
        return sk__tls_conn_read(c, buf, SK_READ_CHUNK);
    if (c->flags & CONN_MESSAGES) {
        /* A message longer than the buffer would be cut: refused whole. */
        n = recv(c->io.fd, buf, SK_READ_CHUNK, MSG_TRUNC);
        if (n > SK_MESSAGE_MAX)
            return -EMSGSIZE;
    } else {
        n = recv(c->io.fd, buf, SK_READ_CHUNK, 0);
    }
    return n >= 0 ? n : errno == EINTR ? -EAGAIN : -errno;
}

static void read_input(struct sk_conn *c)
{
    const struct sk_handler *h = handler_of(c);
    const char *buf;
    ssize_t n = receive(c, c->w->rbuf, &buf);

    if (n > 0) {
        sk__conn_touch(c);
        c->bytes_in += (size_t)n;
        sk__count_add(c->w, c->l, SK_STAT_BYTES_IN, (uint64_t)n);
        if (c->joined != NULL)
            sk__join_read(c, buf, (size_t)n);
        else if (h->on_read != NULL)
            h->on_read(c, buf, (size_t)n);
        /* The reply goes out now, in one write, while the loop reads the
         * other connections: the peer need not wait for the whole batch. */
        if (c->out.len > 0 && !(c->flags & CONN_CLOSED)) {
            flush_and_watch(c);
            /* All of it went (or is in the ring, whose end flushes c
             * again) and nothing is due: the pending list's pass would
             * only watch c again. */
            if ((c->out.len == 0 || (c->flags & CONN_SENDING)) &&
                !(c->flags & (CONN_CLOSED | CONN_WROTE | CONN_TLS_MORE)))
                unqueue(c);
        }
        if ((c->flags & (CONN_PEER_DONE | CONN_CLOSED | CONN_EOF)) ==
            CONN_PEER_DONE)
            on_peer_eof(c);
        if ((c->flags & (CONN_TLS_MORE | CONN_CLOSED)) == CONN_TLS_MORE)
            sk__conn_queue(c);
    } else if (n == 0) {
        on_peer_eof(c);
    } else if (n != -EAGAIN) {
        sk_buf_consume(&c->out, c->out.len);
        finish(c, (int)n);
    } else {
        watch(c); /* TLS may wait for writability */
    }
}

/* The socket reported an event nobody asked for: an error or a hang-up. */
static void check_error(struct sk_conn *c)
{
    int err = 0;
    socklen_t len = sizeof(err);

    if (getsockopt(c->io.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    sk_buf_consume(&c->out, c->out.len);
    finish(c, err ? -err : -ECONNRESET);
}

/* Events nobody asked for: an error or a hang-up, or readiness fetched
 * before a callback of the same batch stopped c's reading (held, paused),
 * which only has to wait. */
static void check_hangup(struct sk_conn *c)
{
    struct pollfd p = {.fd = c->io.fd, .events = 0};

    if ((c->flags & CONN_SENDING) ||
        ((c->flags & CONN_RING_RX) && (c->io.events & SK_READ)))
        return; /* the send's end, or the receive, tells of an error */
    if (poll(&p, 1, 0) <= 0 || !(p.revents & (POLLERR | POLLHUP | POLLNVAL)))
        return;
    if ((c->flags & CONN_RING_RX) && !(p.revents & (POLLERR | POLLNVAL)))
        return; /* the end comes through the receive, after what is queued
                   there: parked, that would be lost */
    if ((p.revents & POLLHUP) && !(p.revents & POLLERR) &&
        (c->flags & (CONN_HELD | CONN_PAUSED | CONN_EOF)) &&
        !(c->flags & (CONN_CLOSING | CONN_STARTING))) {
        /* What is left is read once it reads again; after the end of the
         * input (a UNIX peer gone hangs up at once), only a send fails. */
        sk_io_stop(&c->io);
        c->flags |= CONN_PARKED;
        return;
    }
    check_error(c);
}

static void on_io(struct sk_io *io, unsigned events)
{
    struct sk_conn *c = io->data;
    unsigned wanted = io->events;

    if (events & SK_IO_SENT) {
        int err = sk__conn_sent(c);

        if (err < 0) {
            sk_buf_consume(&c->out, c->out.len);
            finish(c, err);
        } else if (err > 0) {
            watch(c); /* full: SK_WRITE, not a send again at once */
        } else {
            flush_and_watch(c);
        }
        return;
    }
    if (c->flags & CONN_STARTING) {
        if (!(events & wanted))
            check_hangup(c);
        else if (c->flags & CONN_PROXY)
            sk__proxy_conn_step(c);
        else if (c->ssl != NULL)
            sk__tls_conn_step(c);
        else
            sk__conn_opened(c);
        return;
    }
    if ((events & SK_READ) && (c->flags & CONN_WR_WANTS_R))
        flush_and_watch(c);
    if ((events & SK_READ) && reading(c) && !(c->flags & CONN_CLOSED))
        read_input(c);
    if ((events & SK_WRITE) && (c->flags & CONN_RD_WANTS_W) && reading(c) &&
        !(c->flags & CONN_CLOSED))
        read_input(c);
    if (c->flags & CONN_CLOSED)
        return;
    if ((events & SK_WRITE) && (wanted & SK_WRITE)) {
        flush_and_watch(c);
        return;
    }
    if (!(events & wanted))
        check_hangup(c);
}

int sk__conn_start_io(struct sk_conn *c, int fd)
{
    c->io.data = c;
    return sk_io_start(c->w->loop, &c->io, fd, 0, false, on_io);
}

int sk_conn_detach(struct sk_conn *c)
{
    if (c->flags & (CONN_CLOSED | CONN_DETACHED | CONN_BRIDGED) ||
        c->joined != NULL)
        return -EINVAL;
    if (c->ssl != NULL)
        return sk__conn_bridge(c);
    sk_io_stop(&c->io);
    unqueue(c);
    c->flags |= CONN_DETACHED;
    sk_buf_release(&c->out);
    return c->io.fd;
}
