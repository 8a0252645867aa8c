/* conn_proxy.c -- the first steps of an accepted connection: who may
 * connect (access rules, the per-source limit), and, on a listener with
 * proxy=, the PROXY protocol header read before anything else (before the
 * TLS handshake too), whose addresses then name the peer everywhere. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"

/* "refused PEER: reason", for a connection refused before it opened:
 * with -v, or as a warning of kind (one a second) when warn_kind is not
 * SK_WARN_COUNT. */
static void log_refusal(struct sk_worker *w, const struct sk_listener *l,
                        const struct sk_addr *peer, enum sk_scheme scheme,
                        enum sk_warn kind, const char *why)
{
    char text[SK_ENDPOINT_STRLEN], local[SK_ENDPOINT_STRLEN];
    struct sk_log_record r = {
        .event = "refused", .peer = text, .local = local, .reason = why};
    struct sk_endpoint ep;

    if (kind == SK_WARN_COUNT ? !sk__server_logs(w->srv, false)
                              : !sk__server_warn_due(w->srv, kind, &r))
        return;
    if (kind == SK_WARN_SOURCE)
        r.event = "limit";
    sk__endpoint_text(sk_endpoint_from_addr(&ep, scheme, peer) == 0 ? &ep
                                                                    : NULL,
                      text, sizeof(text));
    sk__endpoint_text(&l->ep, local, sizeof(local));
    sk__server_emit(w->srv, &r, "refused %s: %s", text, why);
}

int sk__conn_admit(struct sk_worker *w, const struct sk_listener *l,
                   const struct sk_addr *peer, enum sk_scheme scheme,
                   const struct sk_peer_cred *cred, struct sk_source_key *key,
                   bool *keyed)
{
    const struct sk_server_config *cfg = &w->srv->cfg;
    int err;

    *keyed = false;
    if (cfg->access != NULL && !sk_access_permits(cfg->access, peer, cred)) {
        sk__count(w, l, SK_STAT_REFUSED_ACCESS);
        log_refusal(w, l, peer, scheme, SK_WARN_COUNT, "access rules");
        return SK_EREFUSED;
    }
    if (cfg->max_per_source == 0 || w->srv->sources == NULL ||
        !sk__source_key(key, peer, cred))
        return 0;
    if ((err = sk__sources_take(w->srv->sources, key, cfg->max_per_source)) ==
        -ENOMEM) {
        log_refusal(w, l, peer, scheme, SK_WARN_ERROR, sk_strerror(err));
        return err;
    }
    if (err < 0) {
        sk__count(w, l, SK_STAT_REFUSED_SOURCE);
        log_refusal(w, l, peer, scheme, SK_WARN_SOURCE,
                    "too many connections from this source");
        return SK_EREFUSED;
    }
    *keyed = true;
    return 0;
}

void sk__conn_unadmit(struct sk_conn *c)
{
    if (!c->keyed)
        return;
    sk__sources_put(c->w->srv->sources, &c->source);
    c->keyed = false;
}

/* ------------------------------------------------------ PROXY header */

int sk__proxy_conn_start(struct sk_conn *c)
{
    struct sk_worker *w = c->w;
    unsigned ms = w->srv->cfg.handshake_timeout_ms;

    c->flags |= CONN_STARTING | CONN_PROXY;
    c->start_wants = SK_READ;
    c->start_due = sk_loop_now(w->loop) + (ms > 0 ? ms : SK_START_TIMEOUT_MS);
    sk__link_append(&w->starting, &c->starting);
    return 0;
}

static enum sk_scheme scheme_of(const struct sk_proxy_header *h)
{
    bool dgram = h->socktype == SOCK_DGRAM;

    if (h->src.u.sa.sa_family == AF_UNIX)
        return dgram ? SK_UNIXGRAM : SK_UNIX;
    return dgram ? SK_UDP : SK_TCP;
}

/* The header's addresses are the connection's from now on; a LOCAL one
 * (a proxy's health check) keeps the socket's. Returns 0 or -ENOMEM. */
static int take_addresses(struct sk_conn *c, const struct sk_proxy_header *h)
{
    if (h->local)
        return 0;
    if ((c->local_addr = malloc(sizeof(*c->local_addr))) == NULL)
        return -ENOMEM;
    *c->local_addr = h->dst;
    c->peer_addr = h->src;
    c->scheme = scheme_of(h);
    /* The credentials were the proxy's, not its client's: nothing
     * vouches for a proxied UNIX client. */
    c->has_cred = false;
    free(c->names);
    c->names = NULL;
    return 0;
}

static void proxy_failed(struct sk_conn *c, const char *why, int status)
{
    if (why != NULL)
        sk__conn_set_error(c, why);
    sk__conn_finish(c, status);
}

/* What follows the header: the TLS handshake, within what is left of the
 * same deadline (c stays on the worker's starting list), or on_open. */
static void proxy_done(struct sk_conn *c)
{
    int err;

    c->flags &= ~CONN_PROXY;
    if (sk__conn_admit(c->w, c->l, &c->peer_addr, c->scheme,
                       c->has_cred ? &c->cred : NULL, &c->source,
                       &c->keyed) < 0) {
        c->flags |= CONN_QUIET;
        sk__conn_finish(c, SK_EREFUSED);
        return;
    }
    sk__count(c->w, c->l, SK_STAT_ACCEPTED);
    c->counted = true;
    if (c->l->tls == NULL) {
        c->flags &= ~CONN_STARTING;
        sk__link_remove(&c->starting);
        sk__conn_opened(c);
        return;
    }
    if ((err = sk__tls_conn_start(c, c->l->tls)) < 0) {
        sk__conn_finish(c, err);
        return;
    }
    sk__tls_conn_step(c);
}

/* Takes n bytes the socket holds (peeked before) into c's partial header:
 * all of them belong to the header, which goes on past them. */
static int keep_part(struct sk_conn *c, char *at, size_t n)
{
    if (recv(c->io.fd, at, n, 0) != (ssize_t)n)
        return SK_EPROXY;
    if (c->proxy_part == NULL &&
        (c->proxy_part = calloc(1, sizeof(*c->proxy_part))) == NULL)
        return -ENOMEM;
    return sk_buf_append(c->proxy_part, at, n);
}

/* Readable while the header is awaited: peek at what came after the part
 * kept so far. Once the whole header is there, take exactly its bytes,
 * leaving the client's first data in the socket for whoever reads next
 * (TLS, or on_read). Short of it, take what came (all header), so that
 * the socket is readable again only when more comes. */
void sk__proxy_conn_step(struct sk_conn *c)
{
    struct sk_proxy_header h;
    const char *why = "bad PROXY header";
    size_t have = c->proxy_part != NULL ? c->proxy_part->len : 0;
    char *buf = c->w->rbuf;
    ssize_t n;
    int len;

    if (have > 0)
        memcpy(buf, sk_buf_head(c->proxy_part), have);
    n = recv(c->io.fd, buf + have, SK_PROXY_V2_MAX - have, MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        proxy_failed(c, n == 0 ? "closed before its PROXY header" : NULL,
                     n == 0 ? SK_EPROXY : -errno);
        return;
    }
    len = sk_proxy_parse(buf, have + (size_t)n, (enum sk_proxy)c->l->ep.proxy,
                         &h, &why);
    if (len == 0 && (len = keep_part(c, buf + have, (size_t)n)) == 0)
        return; /* more to come */
    if (len < 0) {
        proxy_failed(c, why, SK_EPROXY);
        return;
    }
    if (recv(c->io.fd, buf, (size_t)len - have, 0) != (ssize_t)(len - have)) {
        proxy_failed(c, "PROXY header lost", SK_EPROXY);
        return;
    }
    sk__conn_drop_proxy_part(c);
    if (take_addresses(c, &h) < 0) {
        proxy_failed(c, NULL, -ENOMEM);
        return;
    }
    proxy_done(c);
}

/* ------------------------------------------------------------ sending */

int sk_proxy_send(int fd, enum sk_proxy version)
{
    struct sk_addr self = {.len = sizeof(self.u)},
                   peer = {.len = sizeof(peer.u)};
    char header[SK_PROXY_HEADER_MAX];
    int len = -EINVAL;

    if (getsockname(fd, &self.u.sa, &self.len) == 0 &&
        getpeername(fd, &peer.u.sa, &peer.len) == 0)
        len = sk_proxy_format(version, SOCK_STREAM, &self, &peer, header,
                              sizeof(header));
    if (len == -EINVAL) /* addresses no header can carry: LOCAL */
        len = sk_proxy_format(version, SOCK_STREAM, NULL, NULL, header,
                              sizeof(header));
    if (len < 0)
        return len;
    return sk_send_all(fd, header, (size_t)len, SK_PROXY_SEND_MS);
}

/* ---------------------------------------------------------- deadlines */

void sk__conn_expire_starting(struct sk_worker *w)
{
    uint64_t now = sk_loop_now(w->loop);

    while (!sk__link_empty(&w->starting)) {
        struct sk_conn *c =
            (struct sk_conn *)((char *)w->starting.next -
                               offsetof(struct sk_conn, starting));
        if (c->start_due > now)
            break;
        sk__conn_set_error(c, c->flags & CONN_PROXY ? "no PROXY header in time"
                                                    : "handshake timed out");
        sk__conn_finish(c, -ETIMEDOUT); /* takes it off the list */
    }
}
