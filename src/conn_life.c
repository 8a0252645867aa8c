/* conn_life.c -- the life of a connection: made (accepted, or outbound
 * through conn_connect.c), opened, logged, closed and freed after the
 * loop iteration, expired when idle or drained at a stop; its accessors. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"

void sk__conn_set_error(struct sk_conn *c, const char *msg)
{
    if (c->error == NULL)
        c->error = strdup(msg);
}

void sk__conn_drop_proxy_part(struct sk_conn *c)
{
    if (c->proxy_part == NULL)
        return;
    sk_buf_release(c->proxy_part);
    free(c->proxy_part);
    c->proxy_part = NULL;
}

static void conn_free(struct sk_conn *c)
{
    if (c->counted)
        sk__count(c->w, c->l, SK_STAT_CLOSED);
    sk_buf_release(&c->out);
    sk__conn_drop_proxy_part(c);
    free(c->local_addr);
    free(c->names);
    free(c->error);
    free(c);
}

void sk__conn_opened(struct sk_conn *c)
{
    const struct sk_handler *h = c->h;

    c->flags &= ~(CONN_STARTING | CONN_UNOPENED);
    if (c->ob != NULL)
        sk__outbound_opened(c);
    if (!(c->flags & CONN_QUIET))
        sk__conn_log(c, "open", 0);
    if (h->on_open != NULL && h->on_open(c) != 0) {
        sk_conn_abort(c);
        return;
    }
    if (c->flags & CONN_CLOSED)
        return;
    /* Closed or half-closed before it opened: the flush says so, after
     * what was written meanwhile. */
    if ((c->flags & CONN_CLOSING) && c->ssl != NULL &&
        !(c->flags & CONN_NO_NOTIFY))
        c->flags |= CONN_SHUT_WR;
    if (c->out.len > 0 || (c->flags & (CONN_SHUT_WR | CONN_CLOSING)))
        sk__conn_queue(c);
    sk__conn_watch(c);
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
    c->born_ms = sk_loop_now(w->loop);
    sk__link_init(&c->pending);
    sk__link_init(&c->starting);
    w->nconns++;
    c->last_active = sk_loop_now(w->loop);
    sk__conn_list_append(c);
    return c;
}

/* Takes c back before it ever started: the caller closes fd. */
static void conn_unmake(struct sk_conn *c)
{
    if (c->flags & CONN_STARTING)
        sk__link_remove(&c->starting);
    sk_io_stop(&c->io);
    sk__tls_conn_free(c);
    sk__conn_unadmit(c);
    sk__conn_list_unlink(c);
    c->w->nconns--;
    conn_free(c);
}

/* The peer's credentials, for a UNIX peer (SO_PEERCRED). */
static bool read_cred(int fd, struct sk_peer_cred *cred)
{
    struct ucred uc;
    socklen_t len = sizeof(uc);

    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) < 0)
        return false;
    *cred = (struct sk_peer_cred){uc.pid, uc.uid, uc.gid};
    return true;
}

/* The first step of c: its PROXY header, its TLS handshake, or on_open. */
static int conn_begin(struct sk_conn *c, int fd)
{
    struct sk_listener *l = c->l;
    int err = 0;

    if (l->ep.proxy != SK_PROXY_NONE)
        err = sk__proxy_conn_start(c);
    else if (l->tls != NULL)
        err = sk__tls_conn_start(c, l->tls);
    if (err == 0)
        err = sk__conn_start_io(c, fd);
    if (err < 0)
        return err;
    if (c->flags & CONN_PROXY)
        sk__conn_watch(c);
    else if (c->ssl != NULL)
        sk__tls_conn_step(c);
    else
        sk__conn_opened(c);
    return 0;
}

/* A connection accepted on l. Without proxy=, the peer is admitted (or
 * refused: the caller closes fd) before anything is made for it. */
int sk__conn_accept(struct sk_worker *w, struct sk_listener *l, int fd,
                    const struct sk_addr *peer)
{
    const struct sk_server_config *cfg = &w->srv->cfg;
    struct sk_source_key key = {0};
    struct sk_peer_cred cred = {0};
    bool has_cred = l->family == AF_UNIX && read_cred(fd, &cred);
    bool keyed = false;
    struct sk_conn *c;
    int err;

    if (l->ep.proxy == SK_PROXY_NONE &&
        (err = sk__conn_admit(w, l, peer, l->ep.scheme, has_cred ? &cred : NULL,
                              &key, &keyed)) < 0)
        return err;
    c = sk__conn_new(w, fd, cfg->handler, cfg->output_max);
    if (c == NULL) {
        if (keyed)
            sk__sources_put(w->srv->sources, &key);
        return -ENOMEM;
    }
    c->l = l;
    c->scheme = l->ep.scheme;
    if (l->socktype == SOCK_SEQPACKET)
        c->flags |= CONN_MESSAGES;
    c->peer_addr = *peer;
    c->cred = cred;
    c->has_cred = has_cred;
    c->source = key;
    c->keyed = keyed;
    /* Counted once admitted: with proxy=, after its header. */
    if (l->ep.proxy == SK_PROXY_NONE) {
        sk__count(w, l, SK_STAT_ACCEPTED);
        c->counted = true;
    }
    if ((err = conn_begin(c, fd)) < 0) {
        conn_unmake(c);
        return err;
    }
    return 0;
}

void sk__conn_free_closed(struct sk_worker *w)
{
    while (w->closed != NULL) {
        struct sk_conn *c = w->closed;
        const struct sk_handler *h = c->h;
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
            bool proxy = c->flags & CONN_PROXY;
            sk__count(w, c->l,
                      proxy ? SK_STAT_PROXY_FAILED : SK_STAT_TLS_FAILED);
            sk__conn_log(c, proxy ? "proxy header" : "tls handshake",
                         c->status);
        }
        sk__conn_unadmit(c);
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
        if (!(c->flags & (CONN_DETACHED | CONN_OUTBOUND | CONN_BRIDGED))) {
            if (now - c->last_active < idle)
                break;
            sk_buf_consume(&c->out, c->out.len);
            sk__count(w, c->l, SK_STAT_IDLE_TIMEOUTS);
            sk__conn_finish(c, -ETIMEDOUT);
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
        if (!(c->flags & (CONN_DETACHED | CONN_BRIDGED | CONN_BRIDGE_END)))
            sk_conn_close(c);
        c = next;
    }
}

void sk__conn_abort_all(struct sk_worker *w)
{
    while (w->oldest != NULL) {
        struct sk_conn *c = w->oldest;
        sk_buf_consume(&c->out, c->out.len);
        sk__conn_finish(c, -ECANCELED);
    }
}

/* ----------------------------------------------------------- accessors */

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

void sk_conn_bytes(const struct sk_conn *c, uint64_t *in, uint64_t *out)
{
    if (in != NULL)
        *in = c->bytes_in;
    if (out != NULL)
        *out = c->bytes_out;
}

void sk_conn_add_bytes(struct sk_conn *c, uint64_t in, uint64_t out)
{
    c->bytes_in += in;
    c->bytes_out += out;
}

int sk_conn_fd(const struct sk_conn *c)
{
    if (c->flags & (CONN_CLOSED | CONN_DETACHED | CONN_BRIDGED))
        return -1;
    return c->io.fd;
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
    if (c->local_addr != NULL)
        sk_endpoint_from_addr(&m->names[1], c->scheme, c->local_addr);
    else if (fd >= 0 && sk__sock_local(fd, &local) == 0)
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
        return c->scheme == SK_UNIX || c->scheme == SK_UNIXPACKET
                   ? -ENODATA
                   : -EAFNOSUPPORT;
    *cred = c->cred;
    return 0;
}

const struct sk_endpoint *sk_conn_local(const struct sk_conn *c)
{
    const struct sk_endpoint *n = names(c);
    return n != NULL ? &n[1] : NULL;
}

int sk_conn_addrs(const struct sk_conn *c, struct sk_addr *peer,
                  struct sk_addr *local)
{
    bool open = !(c->flags & (CONN_DETACHED | CONN_CLOSED)) && c->io.fd >= 0;

    if (peer != NULL)
        *peer = c->peer_addr;
    if (local == NULL)
        return 0;
    if (c->local_addr != NULL) {
        *local = *c->local_addr;
        return 0;
    }
    if (open && sk__sock_local(c->io.fd, local) == 0)
        return 0;
    if (c->l != NULL && c->l->fds != NULL &&
        sk__sock_local(c->l->fds[0], local) == 0)
        return 0;
    return -ENOTCONN;
}
