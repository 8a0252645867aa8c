/* conn.c -- stream connections: read into the worker's buffer, queue
 * output and flush it once per loop iteration, pause reading while the
 * output is over its limit, close gracefully or at once, expire idle ones. */
#include <errno.h>
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

static void list_unlink(struct sk_conn *c)
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

static void list_append(struct sk_conn *c)
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

/* Marks c active now, moving it to the young end of the list. */
static void touch(struct sk_conn *c)
{
    c->last_active = sk_loop_now(c->w->loop);
    if (c->w->newest != c) {
        list_unlink(c);
        list_append(c);
    }
}

/* ------------------------------------------------------ pending list */

static struct sk_conn *conn_of_pending(struct sk_link *node)
{
    return (struct sk_conn *)((char *)node - offsetof(struct sk_conn, pending));
}

static void queue(struct sk_conn *c)
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
    if (c->ssl != NULL && status == 0 && !(c->flags & CONN_SHUT_DONE))
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
    list_unlink(c);
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

static void watch(struct sk_conn *c)
{
    unsigned ev = 0;
    int err;

    if (c->flags & (CONN_CLOSED | CONN_DETACHED))
        return;
    if (c->flags & CONN_STARTING) {
        ev = c->start_wants;
    } else {
        if (reading(c) || (c->flags & CONN_WR_WANTS_R))
            ev |= SK_READ;
        if (c->out.len > 0 || (c->flags & CONN_RD_WANTS_W) ||
            (c->flags & (CONN_SHUT_WR | CONN_SHUT_DONE)) == CONN_SHUT_WR)
            ev |= SK_WRITE;
    }
    err = sk_io_set(&c->io, ev);
    if (err < 0)
        finish(c, err);
}

void sk__conn_watch(struct sk_conn *c)
{
    watch(c);
}

void sk_conn_close(struct sk_conn *c)
{
    if (c->flags & CONN_CLOSING)
        return;
    c->flags |= CONN_CLOSING;
    if (c->out.len == 0 || (c->flags & CONN_DETACHED))
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
static int shut_write(struct sk_conn *c)
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
    if (shut_write(c) < 0) {
        finish(c, -EPIPE);
        return;
    }
    watch(c);
}

bool sk_conn_is_closing(const struct sk_conn *c)
{
    return (c->flags & CONN_CLOSING) != 0;
}

/* ------------------------------------------------------------ output */

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
    int err;

    if (c->flags & (CONN_CLOSING | CONN_DETACHED | CONN_SHUT_WR))
        return -EPIPE;
    if (len > hard_cap(c) - c->out.len)
        return -ENOBUFS;
    err = sk_buf_append(&c->out, data, len);
    if (err < 0)
        return err;
    queue(c);
    if (c->out.len >= c->output_max && !(c->flags & CONN_PAUSED)) {
        c->flags |= CONN_PAUSED;
        watch(c);
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

/* Sends what is queued. Returns 0 (all sent or the kernel is full) or a
 * negative errno after which c is closed. */
static int flush(struct sk_conn *c)
{
    ssize_t n;

    if (c->flags & CONN_STARTING)
        return 0;
    while (c->out.len > 0) {
        if (c->ssl != NULL)
            n = sk__tls_conn_write(c, sk_buf_head(&c->out), c->out.len);
        else if ((n = send(c->io.fd, sk_buf_head(&c->out), c->out.len,
                           MSG_NOSIGNAL | MSG_DONTWAIT)) < 0)
            n = errno == EINTR ? -EAGAIN : -errno;
        if (n == -EAGAIN)
            break;
        if (n < 0)
            return (int)n;
        sk_buf_consume(&c->out, (size_t)n);
        touch(c);
    }
    return shut_write(c);
}

/* Flushes c and updates what it waits for. When the queue empties, the
 * handler hears of it and may queue more (sent on the next round). */
static void flush_and_watch(struct sk_conn *c)
{
    bool had_output = c->out.len > 0;
    int err = flush(c);

    if (err < 0) {
        sk_buf_consume(&c->out, c->out.len);
        finish(c, err);
        return;
    }
    if ((c->flags & CONN_PAUSED) && c->out.len <= c->output_max / 2)
        c->flags &= ~CONN_PAUSED;
    /* A queue that grew past the limit (a peer that stopped reading) gives
     * its memory back when it empties; one within the limit keeps it, so
     * steady traffic allocates nothing. */
    if (c->out.len == 0 && c->out.cap > c->output_max)
        sk_buf_release(&c->out);
    if (c->out.len == 0 && (c->flags & CONN_CLOSING)) {
        finish(c, 0);
        return;
    }
    watch(c);
    if (had_output && c->out.len == 0 && handler_of(c)->on_drain != NULL)
        handler_of(c)->on_drain(c);
}

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
        flush_and_watch(c);
    }
}

void sk__conn_watch_pending(struct sk_worker *w)
{
    struct sk_link *node = w->pending.next;

    while (node != &w->pending) {
        struct sk_link *next = node->next;
        watch(conn_of_pending(node)); /* may close it: next is kept */
        node = next;
    }
}

/* ------------------------------------------------------------- input */

static void on_peer_eof(struct sk_conn *c)
{
    const struct sk_handler *h = handler_of(c);

    c->flags |= CONN_EOF;
    watch(c);
    if (h->on_eof != NULL)
        h->on_eof(c);
    else
        sk_conn_close(c);
}

/* Reads what the socket (or TLS) has, up to one chunk: a count, 0 at the
 * end of the stream, -EAGAIN, or a negative errno. */
static ssize_t receive(struct sk_conn *c, char *buf)
{
    ssize_t n;

    if (c->ssl != NULL)
        return sk__tls_conn_read(c, buf, SK_READ_CHUNK);
    n = recv(c->io.fd, buf, SK_READ_CHUNK, 0);
    return n >= 0 ? n : errno == EINTR ? -EAGAIN : -errno;
}

static void read_input(struct sk_conn *c)
{
    const struct sk_handler *h = handler_of(c);
    char *buf = c->w->rbuf;
    ssize_t n = receive(c, buf);

    if (n > 0) {
        touch(c);
        if (h->on_read != NULL)
            h->on_read(c, buf, (size_t)n);
        /* The reply goes out now, in one write, while the loop reads the
         * other connections: the peer need not wait for the whole batch. */
        if (c->out.len > 0 && !(c->flags & CONN_CLOSED))
            flush_and_watch(c);
        if ((c->flags & (CONN_PEER_DONE | CONN_CLOSED | CONN_EOF)) ==
            CONN_PEER_DONE)
            on_peer_eof(c);
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

static void on_io(struct sk_io *io, unsigned events)
{
    struct sk_conn *c = io->data;
    unsigned wanted = io->events;

    if (c->flags & CONN_STARTING) {
        if (!(events & wanted))
            check_error(c);
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
    if ((events & SK_WRITE) && (c->flags & CONN_RD_WANTS_W) &&
        !(c->flags & CONN_CLOSED))
        read_input(c);
    if (c->flags & CONN_CLOSED)
        return;
    if ((events & SK_WRITE) && (wanted & SK_WRITE)) {
        flush_and_watch(c);
        return;
    }
    if (!(events & wanted))
        check_error(c);
}

/* ------------------------------------------------------ life and death */

/* For -v: "open PEER" and "close PEER: reason". */
void sk__conn_log(const struct sk_conn *c, const char *what, int status)
{
    struct sk_server *srv = c->w->srv;
    char peer[SK_ENDPOINT_STRLEN] = "?";

    if (srv == NULL || srv->cfg.log == NULL)
        return;
    if (sk_conn_peer(c) != NULL)
        sk_endpoint_format(sk_conn_peer(c), peer, sizeof(peer));
    if (peer[strlen(peer) - 1] == ':')
        strcat(peer, "(unnamed)");
    if (c->error != NULL)
        sk__server_log(srv, "%s %s: %s", what, peer, c->error);
    else if (status < 0)
        sk__server_log(srv, "%s %s: %s", what, peer, sk_strerror(status));
    else
        sk__server_log(srv, "%s %s", what, peer);
}

void sk__conn_set_error(struct sk_conn *c, const char *msg)
{
    if (c->error == NULL)
        c->error = strdup(msg);
}

static void conn_free(struct sk_conn *c)
{
    sk_buf_release(&c->out);
    free(c->names);
    free(c->error);
    free(c);
}

void sk__conn_opened(struct sk_conn *c)
{
    const struct sk_handler *h = handler_of(c);

    c->flags &= ~(CONN_STARTING | CONN_UNOPENED);
    if (c->ob != NULL)
        sk__outbound_opened(c);
    sk__conn_log(c, "open", 0);
    if (h->on_open != NULL && h->on_open(c) != 0) {
        sk_conn_abort(c);
        return;
    }
    if (c->flags & CONN_CLOSED)
        return;
    if (c->flags & CONN_SHUT_WR)
        shut_write(c);
    if (c->out.len > 0)
        queue(c);
    watch(c);
}

static void read_cred(struct sk_conn *c, int fd)
{
    struct ucred uc;
    socklen_t len = sizeof(uc);

    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) == 0) {
        c->cred = (struct sk_peer_cred){uc.pid, uc.uid, uc.gid};
        c->has_cred = true;
    }
}

/* A connection of w on fd, counted, on the activity list, not started. */
struct sk_conn *sk__conn_new(struct sk_worker *w, int fd,
                             const struct sk_handler *h, size_t output_max)
{
    struct sk_conn *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    c->w = w;
    c->h = h;
    c->output_max = output_max > 0 ? output_max : SK_OUTPUT_MAX;
    c->io.data = c;
    c->io.fd = fd;
    c->flags = CONN_UNOPENED;
    sk__link_init(&c->pending);
    sk__link_init(&c->starting);
    w->nconns++;
    c->last_active = sk_loop_now(w->loop);
    list_append(c);
    return c;
}

int sk__conn_start_io(struct sk_conn *c, int fd)
{
    c->io.data = c;
    return sk_io_start(c->w->loop, &c->io, fd, 0, false, on_io);
}

/* Takes c back before it ever started: the caller closes fd. */
static void conn_unmake(struct sk_conn *c)
{
    sk_io_stop(&c->io);
    sk__tls_conn_free(c);
    list_unlink(c);
    c->w->nconns--;
    conn_free(c);
}

int sk__conn_accept(struct sk_worker *w, struct sk_listener *l, int fd,
                    const struct sk_addr *peer)
{
    const struct sk_server_config *cfg = &w->srv->cfg;
    struct sk_conn *c = sk__conn_new(w, fd, cfg->handler, cfg->output_max);
    int err;

    if (c == NULL)
        return -ENOMEM;
    c->l = l;
    c->scheme = l->ep.scheme;
    c->peer_addr = *peer;
    if (l->family == AF_UNIX)
        read_cred(c, fd);
    err = l->tls != NULL ? sk__tls_conn_start(c, l->tls) : 0;
    if (err == 0)
        err = sk__conn_start_io(c, fd);
    if (err < 0) {
        conn_unmake(c);
        return err;
    }
    if (c->ssl != NULL)
        sk__tls_conn_step(c);
    else
        sk__conn_opened(c);
    return 0;
}

void sk__conn_free_closed(struct sk_worker *w)
{
    while (w->closed != NULL) {
        struct sk_conn *c = w->closed;
        const struct sk_handler *h = handler_of(c);
        w->closed = c->next_closed;
        /* An accepted connection that never opened (a failed handshake)
         * is the library's alone; an outbound one always hears why. */
        if (c->flags & CONN_QUIET) {
            /* nobody to tell */
        } else if (!(c->flags & CONN_UNOPENED) || (c->flags & CONN_OUTBOUND)) {
            if (!(c->flags & CONN_UNOPENED))
                sk__conn_log(c, "close", c->status);
            if (h->on_close != NULL)
                h->on_close(c, c->status);
        } else if (c->status != 0) {
            sk__conn_log(c, "tls handshake", c->status);
        }
        w->nconns--;
        if (!(c->flags & CONN_OUTBOUND) && w->srv != NULL)
            atomic_fetch_sub(&w->srv->nconns, 1);
        conn_free(c);
        if (w->srv != NULL)
            sk__worker_conn_freed(w);
    }
}

void sk__conn_expire_idle(struct sk_worker *w)
{
    uint64_t now = sk_loop_now(w->loop);
    uint64_t idle = w->srv->cfg.idle_timeout_ms;
    struct sk_conn *c = w->oldest;

    /* Oldest first; a detached connection's activity is not ours to see,
     * an outbound one has its own timeout. */
    while (c != NULL) {
        struct sk_conn *next = c->next;
        if (!(c->flags & (CONN_DETACHED | CONN_OUTBOUND))) {
            if (now - c->last_active < idle)
                break;
            sk_buf_consume(&c->out, c->out.len);
            finish(c, -ETIMEDOUT);
        }
        c = next;
    }
}

/* Before the loop waits: send what callbacks queued, free what they
 * closed (on_close may queue output for others, on_drain more for
 * itself): a few rounds, then what is left waits for writability. */
void sk__conn_flush_all(struct sk_worker *w)
{
    for (int round = 0;; round++) {
        if (round < SK_FLUSH_ROUNDS)
            sk__conn_flush_pending(w);
        sk__conn_free_closed(w);
        if (w->closed == NULL &&
            (sk__link_empty(&w->pending) || round >= SK_FLUSH_ROUNDS - 1))
            break;
    }
    sk__conn_watch_pending(w);
    /* A watch that failed closed its connection: its on_close now, not
     * whenever the loop wakes next. */
    sk__conn_free_closed(w);
}

/* The home of the outbound connections of a loop that is no worker's. */
struct sk_worker *sk__conn_home_new(struct sk_loop *loop)
{
    struct sk_worker *w = calloc(1, sizeof(*w));

    if (w == NULL || (w->rbuf = malloc(SK_READ_CHUNK)) == NULL) {
        free(w);
        return NULL;
    }
    w->loop = loop;
    sk__link_init(&w->pending);
    sk__link_init(&w->starting);
    return w;
}

void sk__conn_home_free(struct sk_worker *w)
{
    if (w == NULL)
        return;
    sk__conn_abort_all(w);
    sk__conn_free_closed(w);
    free(w->rbuf);
    free(w);
}

void sk__conn_drain_all(struct sk_worker *w)
{
    struct sk_conn *c = w->oldest;

    while (c != NULL) {
        struct sk_conn *next = c->next;
        if (!(c->flags & CONN_DETACHED))
            sk_conn_close(c);
        c = next;
    }
}

void sk__conn_abort_all(struct sk_worker *w)
{
    while (w->oldest != NULL) {
        struct sk_conn *c = w->oldest;
        sk_buf_consume(&c->out, c->out.len);
        finish(c, -ECANCELED);
    }
}

/* ----------------------------------------------------------- accessors */

int sk_conn_detach(struct sk_conn *c)
{
    if (c->flags & (CONN_CLOSED | CONN_DETACHED))
        return -EINVAL;
    sk_io_stop(&c->io);
    unqueue(c);
    c->flags |= CONN_DETACHED;
    sk_buf_release(&c->out);
    return c->io.fd;
}

void sk_conn_set_data(struct sk_conn *c, void *data)
{
    c->data = data;
}

void *sk_conn_data(const struct sk_conn *c)
{
    return c->data;
}

struct sk_server *sk_conn_server(const struct sk_conn *c)
{
    return c->flags & CONN_OUTBOUND ? NULL : c->w->srv;
}

const char *sk_conn_error(const struct sk_conn *c)
{
    return c->error != NULL ? c->error : "";
}

struct sk_loop *sk_conn_loop(const struct sk_conn *c)
{
    return c->w->loop;
}

/* Fills c->names the first time a service asks for them. */
static const struct sk_endpoint *names(const struct sk_conn *c)
{
    struct sk_conn *m = (struct sk_conn *)c;
    struct sk_addr local;
    int fd = c->l != NULL ? c->l->fds[0] : -1;

    if (m->names != NULL)
        return m->names;
    m->names = calloc(2, sizeof(*m->names));
    if (m->names == NULL)
        return NULL;
    sk_endpoint_from_addr(&m->names[0], c->scheme, &c->peer_addr);
    if (!(c->flags & CONN_DETACHED) && !(c->flags & CONN_CLOSED))
        fd = c->io.fd;
    if (fd >= 0 && sk__sock_local(fd, &local) == 0)
        sk_endpoint_from_addr(&m->names[1], c->scheme, &local);
    else if (c->l != NULL)
        m->names[1] = c->l->ep;
    else
        m->names[1].scheme = c->scheme;
    return m->names;
}

const struct sk_endpoint *sk_conn_peer(const struct sk_conn *c)
{
    const struct sk_endpoint *n = names(c);
    return n != NULL ? &n[0] : NULL;
}

int sk_conn_peer_cred(const struct sk_conn *c, struct sk_peer_cred *cred)
{
    if (!c->has_cred)
        return c->scheme == SK_UNIX ? -ENODATA : -EAFNOSUPPORT;
    *cred = c->cred;
    return 0;
}

const struct sk_endpoint *sk_conn_local(const struct sk_conn *c)
{
    const struct sk_endpoint *n = names(c);
    return n != NULL ? &n[1] : NULL;
}
