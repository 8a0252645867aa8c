/* log.c -- a server's log: each event made a record (its line and its
 * parts) for the record hook, or its line for log or warn; warnings that
 * could flood the log held to one a second per kind (sk_ratelimit). */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "conn.h"

#define WARN_PERIOD_MS 1000

bool sk_ratelimit_pass(struct sk_ratelimit *rl, uint64_t now_ms,
                       unsigned period_ms, unsigned *skipped)
{
    uint64_t next = __atomic_load_n(&rl->next_ms, __ATOMIC_RELAXED);
    unsigned n;

    do {
        if (now_ms < next) {
            __atomic_fetch_add(&rl->skipped, 1, __ATOMIC_RELAXED);
            return false;
        }
    } while (!__atomic_compare_exchange_n(&rl->next_ms, &next,
                                          now_ms + period_ms, false,
                                          __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    n = __atomic_exchange_n(&rl->skipped, 0, __ATOMIC_RELAXED);
    if (skipped != NULL)
        *skipped = n;
    return true;
}

bool sk__server_logs(const struct sk_server *srv, bool warning)
{
    const struct sk_server_config *cfg = &srv->cfg;

    if (cfg->record != NULL)
        return warning || cfg->record_all;
    return cfg->log != NULL || (warning && cfg->warn != NULL);
}

static void emit(const struct sk_server *srv, const struct sk_log_record *r)
{
    const struct sk_server_config *cfg = &srv->cfg;
    char line[SK_LOG_LINE_MAX + 64];

    if (cfg->record != NULL) {
        if (r->warning || cfg->record_all)
            cfg->record(cfg->data, r);
    } else if (!r->warning) {
        if (cfg->log != NULL)
            cfg->log(cfg->data, r->line);
    } else {
        /* Without warn, a warning goes to log. */
        void (*hook)(void *, const char *) =
            cfg->warn != NULL ? cfg->warn : cfg->log;
        if (r->suppressed == 0) {
            hook(cfg->data, r->line);
            return;
        }
        snprintf(line, sizeof(line), "%s (and %u more like it)", r->line,
                 r->suppressed);
        hook(cfg->data, line);
    }
}

static void vemit(const struct sk_server *srv, struct sk_log_record *r,
                  const char *fmt, va_list ap)
{
    char line[SK_LOG_LINE_MAX];

    vsnprintf(line, sizeof(line), fmt, ap);
    r->line = line;
    emit(srv, r);
    r->line = NULL;
}

void sk__server_emit(const struct sk_server *srv, struct sk_log_record *r,
                     const char *fmt, ...)
{
    va_list ap;

    if (!sk__server_logs(srv, r->warning))
        return;
    va_start(ap, fmt);
    vemit(srv, r, fmt, ap);
    va_end(ap);
}

void sk__server_log(const struct sk_server *srv, const char *fmt, ...)
{
    struct sk_log_record r = {.event = "error"};
    va_list ap;

    if (!sk__server_logs(srv, false))
        return;
    va_start(ap, fmt);
    vemit(srv, &r, fmt, ap);
    va_end(ap);
}

bool sk__server_warn_due(struct sk_server *srv, enum sk_warn kind,
                         struct sk_log_record *r)
{
    if (!sk__server_logs(srv, true) ||
        !sk_ratelimit_pass(&srv->warn_limits[kind], sk__clock_ms(),
                           WARN_PERIOD_MS, &r->suppressed))
        return false;
    r->warning = true;
    return true;
}

void sk__endpoint_text(const struct sk_endpoint *ep, char *out, size_t size)
{
    if (ep == NULL || sk_endpoint_format(ep, out, size) < 0)
        snprintf(out, size, "?");
    else if (out[0] != '\0' && out[strlen(out) - 1] == ':')
        snprintf(out + strlen(out), size - strlen(out), "(unnamed)");
}

/* Why c closed, in words: a clean close says who ended it. */
static const char *close_reason(const struct sk_conn *c, int status)
{
    if (c->error != NULL)
        return c->error;
    switch (status) {
    case 0:
        if (c->flags & CONN_DETACHED)
            return "ended"; /* its new owner knows how */
        return (c->flags & CONN_EOF) ? "peer closed" : "closed by the service";
    case -ETIMEDOUT:
        return "idle timeout";
    case -ECANCELED:
        return "server stopped";
    case -ECONNABORTED:
        return "aborted by the service";
    default:
        return sk_strerror(status);
    }
}

/* -v: "open PEER on LOCAL", "close PEER on LOCAL after 0.250 s, 5 bytes
 * in, 5 bytes out: peer closed", "tls handshake PEER: reason". */
void sk__conn_log(const struct sk_conn *c, const char *what, int status)
{
    struct sk_server *srv = c->w->srv;
    char peer[SK_ENDPOINT_STRLEN], local[SK_ENDPOINT_STRLEN];
    struct sk_log_record r = {.event = what, .peer = peer, .local = local};

    if (srv == NULL || !sk__server_logs(srv, false))
        return;
    sk__endpoint_text(sk_conn_peer(c), peer, sizeof(peer));
    sk__endpoint_text(c->l != NULL ? &c->l->ep : sk_conn_local(c), local,
                      sizeof(local));
    if (strcmp(what, "open") == 0) {
        sk__server_emit(srv, &r, "open %s on %s", peer, local);
    } else if (strcmp(what, "close") == 0) {
        r.reason = close_reason(c, status);
        r.duration_s = (double)(sk_loop_now(c->w->loop) - c->born_ms) / 1000;
        r.bytes_in = c->bytes_in;
        r.bytes_out = c->bytes_out;
        sk__server_emit(srv, &r,
                        "close %s on %s after %.3f s, %" PRIu64
                        " bytes in, %" PRIu64 " bytes out: %s",
                        peer, local, r.duration_s, r.bytes_in, r.bytes_out,
                        r.reason);
    } else {
        r.event = "refused";
        r.reason = close_reason(c, status);
        sk__server_emit(srv, &r, "%s %s: %s", what, peer, r.reason);
    }
}
