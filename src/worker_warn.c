/* worker_warn.c -- the warnings of a worker's acceptors, each kind rate
 * limited on its own (sk__server_warn_due()). */
#include "internal.h"

/* Past max_conns: a warning, at most one a second. */
void sk__warn_limit(struct sk_acceptor *a, const struct sk_addr *peer)
{
    struct sk_server *srv = a->w->srv;
    char local[SK_ENDPOINT_STRLEN], client[SK_ENDPOINT_STRLEN];
    struct sk_log_record r = {.event = "limit",
                              .peer = client,
                              .local = local,
                              .reason = "connection limit reached"};
    struct sk_endpoint ep;

    if (!sk__server_warn_due(srv, SK_WARN_LIMIT, &r))
        return;
    sk__endpoint_text(&a->l->ep, local, sizeof(local));
    sk__endpoint_text(
        sk_endpoint_from_addr(&ep, a->l->ep.scheme, peer) == 0 ? &ep : NULL,
        client, sizeof(client));
    sk__server_emit(srv, &r, "%s: connection limit reached (%u), closing %s",
                    local, srv->cfg.max_conns, client);
}

/* Descriptors or memory exhausted: a warning, at most one a second. */
void sk__warn_accept(struct sk_acceptor *a, int err)
{
    char local[SK_ENDPOINT_STRLEN];
    struct sk_log_record r = {
        .event = "accept", .local = local, .reason = sk_strerror(err)};

    if (!sk__server_warn_due(a->w->srv, SK_WARN_ACCEPT, &r))
        return;
    sk__endpoint_text(&a->l->ep, local, sizeof(local));
    sk__server_emit(a->w->srv, &r, "%s: accept: %s; pausing %d ms", local,
                    r.reason, SK_ACCEPT_RETRY_MS);
}
