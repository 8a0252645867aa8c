/* conn_connect.c -- outbound connections: connect on the loop, then the
 * TLS handshake if any, then a connection like an accepted one, with a
 * deadline for getting there and an idle timeout after. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"

struct sk_outbound {
    struct sk_connector cn;
    struct sk_timer timer; /* the deadline, then idle ticks */
    struct sk_tls *tls;
    unsigned idle_ms;
    char *preamble; /* sent once connected, before TLS */
    size_t preamble_len;
    enum sk_proxy proxy; /* the endpoint's, without a preamble */
};

static void on_timer(struct sk_timer *t)
{
    struct sk_conn *c = t->data;
    uint64_t now = sk_loop_now(c->w->loop);

    if (c->flags & CONN_STARTING) {
        if (c->ssl != NULL)
            sk__conn_set_error(c, "handshake timed out");
        sk__conn_finish(c, -ETIMEDOUT);
    } else if (c->ob->idle_ms > 0 && now - c->last_active >= c->ob->idle_ms) {
        sk_buf_consume(&c->out, c->out.len);
        sk__conn_finish(c, -ETIMEDOUT);
    }
}

/* Ticks often enough that a connection lives at most 25% past its idle
 * timeout. */
static void start_idle(struct sk_conn *c)
{
    uint64_t p = c->ob->idle_ms / 4;

    sk_timer_stop(&c->ob->timer);
    if (c->ob->idle_ms > 0)
        sk_timer_start(c->w->loop, &c->ob->timer, p < 10 ? 10 : p,
                       p < 10 ? 10 : p);
}

/* The preamble, or the endpoint's own PROXY header, on a socket just
 * connected, whose send buffer is empty. */
static int send_preamble(struct sk_outbound *ob, int fd)
{
    if (ob->preamble_len == 0)
        return ob->proxy != SK_PROXY_NONE ? sk_proxy_send(fd, ob->proxy) : 0;
    return sk_send_all(fd, ob->preamble, ob->preamble_len, SK_PROXY_SEND_MS);
}

static void on_connected(struct sk_connector *cn, int fd)
{
    struct sk_conn *c = cn->data;
    int err;

    if (fd < 0) {
        sk__conn_finish(c, fd);
        return;
    }
    c->io.fd = fd;
    c->peer_addr.len = sizeof(c->peer_addr.u);
    if (getpeername(fd, &c->peer_addr.u.sa, &c->peer_addr.len) < 0)
        c->peer_addr.len = 0;
    sk__sock_set_nodelay(fd, c->peer_addr.u.sa.sa_family);
    err = send_preamble(c->ob, fd);
    if (err == 0 && c->ob->tls != NULL)
        err = sk__tls_conn_start(c, c->ob->tls);
    if (err == 0)
        err = sk__conn_start_io(c, fd);
    if (err < 0) {
        sk__conn_finish(c, err);
        return;
    }
    /* Opened (or the handshake begun) at the next writable event, never
     * inside sk_conn_connect(). */
    c->start_wants = SK_WRITE;
    sk__conn_watch(c);
}

static int keep_preamble(struct sk_outbound *ob, const void *p, size_t len)
{
    if ((ob->preamble = malloc(len)) == NULL)
        return -ENOMEM;
    memcpy(ob->preamble, p, len);
    ob->preamble_len = len;
    return 0;
}

int sk_conn_connect(struct sk_loop *loop, const struct sk_endpoint *ep,
                    const struct sk_conn_options *opts, struct sk_conn **cp)
{
    struct sk_addr addrs[SK_CONNECT_ADDRS];
    struct sk_worker *w;
    struct sk_conn *c;
    int n, err;

    if (!sk_endpoint_is_stream(ep) || opts == NULL || opts->handler == NULL ||
        opts->preamble_len > SK_PROXY_V2_MAX)
        return -EINVAL;
    if (ep->tls != (opts->tls != NULL) ||
        (opts->tls != NULL && sk__tls_listening(opts->tls)))
        return -EINVAL;
    if ((n = sk_endpoint_resolve(ep, false, addrs, SK_CONNECT_ADDRS)) < 0)
        return n;
    if ((w = sk__loop_home(loop)) == NULL)
        return -ENOMEM;
    if (w->draining)
        return -ECANCELED; /* its server is stopping */
    c = sk__conn_new(w, -1, opts->handler, opts->output_max);
    if (c == NULL)
        return -ENOMEM;
    c->flags |= CONN_OUTBOUND | CONN_STARTING;
    if (opts->keep_reading)
        c->flags |= CONN_NO_PAUSE;
    if ((c->ob = calloc(1, sizeof(*c->ob))) == NULL) {
        c->flags |= CONN_QUIET;
        sk__conn_finish(c, -ENOMEM);
        return -ENOMEM;
    }
    c->scheme = ep->scheme;
    if (sk_endpoint_socktype(ep) == SOCK_SEQPACKET)
        c->flags |= CONN_MESSAGES;
    c->data = opts->data;
    c->ob->tls = opts->tls != NULL ? sk__tls_ref(opts->tls) : NULL;
    c->ob->idle_ms = opts->idle_ms;
    c->ob->proxy = (enum sk_proxy)ep->proxy;
    /* Both timers stopped (as sk__outbound_free() expects) before any
     * failure. */
    sk_timer_init(&c->ob->timer, on_timer);
    sk_timer_init(&c->ob->cn.timer, NULL);
    c->ob->timer.data = c;
    if (opts->preamble_len > 0 &&
        (err = keep_preamble(c->ob, opts->preamble, opts->preamble_len)) < 0) {
        c->flags |= CONN_QUIET;
        sk__conn_finish(c, err);
        return err;
    }
    c->ob->cn.data = c;
    if (opts->timeout_ms > 0)
        sk_timer_start(loop, &c->ob->timer, opts->timeout_ms, 0);
    err = sk_connector_start_from(
        loop, &c->ob->cn, addrs, (size_t)n, sk_endpoint_socktype(ep),
        sk_endpoint_protocol(ep), opts->source, opts->timeout_ms, on_connected);
    if (err < 0) {
        c->flags |= CONN_QUIET; /* the caller hears it from here */
        sk__conn_finish(c, err);
        return err;
    }
    *cp = c;
    return 0;
}

/* On open: the deadline is over, idle ticks begin. */
void sk__outbound_opened(struct sk_conn *c)
{
    start_idle(c);
}

void sk__outbound_free(struct sk_conn *c)
{
    struct sk_outbound *ob = c->ob;

    sk_connector_cancel(&ob->cn);
    sk_timer_stop(&ob->timer);
    sk_tls_free(ob->tls);
    free(ob->preamble);
    free(ob);
    c->ob = NULL;
}
