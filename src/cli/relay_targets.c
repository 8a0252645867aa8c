/* relay_targets.c -- the TARGETs of `sockit relay`: their table, the order
 * in which a client tries them (--balance), and their state. A target
 * whose connect fails is down until its back-off has passed (1 s, doubled
 * by each failed retry, at most 30 s); one that works is up. The state is
 * shared by every worker under the relay's lock, held only to read or
 * change it; each change is logged once, by the worker that made it. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay.h"

#define BACKOFF_FIRST_MS 1000
#define BACKOFF_MAX_MS 30000
/* Threads looking names up for the workers. */
#define RESOLVER_THREADS 4

/* LISTEN and TARGET name the same socket as written (a name that only
 * resolves to it is not seen). */
static bool same_place(const struct sk_endpoint *a, const struct sk_endpoint *b)
{
    if (sk_endpoint_is_unix(a) || sk_endpoint_is_unix(b))
        return sk_endpoint_is_unix(a) && sk_endpoint_is_unix(b) &&
               a->path_len == b->path_len &&
               (a->path_len > 0 ? memcmp(a->path, b->path, a->path_len) == 0
                                : strcmp(a->path, b->path) == 0);
    return a->port == b->port && strcmp(a->host, b->host) == 0 &&
           sk_endpoint_socktype(a) == sk_endpoint_socktype(b);
}

static int check_target(const struct relay *r, const struct sk_endpoint *t,
                        const char *text)
{
    if (sk_endpoint_is_stream(&r->listen) != sk_endpoint_is_stream(t)) {
        cli_error("relay: %s: LISTEN and TARGET must both be stream or both "
                  "datagram endpoints",
                  text);
        return -1;
    }
    /* Messages and a byte stream do not map onto each other. The kind of
     * an inherited LISTEN is not known here: a mismatch then fails each
     * connection (TARGET refuses the wrong type of socket). */
    if (r->listen.scheme != SK_FD && r->listen.scheme != SK_SD &&
        (r->listen.scheme == SK_UNIXPACKET) != (t->scheme == SK_UNIXPACKET)) {
        cli_error("relay: unixpacket relays only to unixpacket (messages "
                  "are not a byte stream)");
        return -1;
    }
    if (!sk_endpoint_is_unix(t) && t->host[0] == '\0') {
        cli_error("%s: a connecting side needs a host", text);
        return -1;
    }
    if (!sk_endpoint_is_unix(t) && t->port == 0) {
        cli_error("%s: port 0 is no target", text);
        return -1;
    }
    if (same_place(&r->listen, t)) {
        cli_error("%s: the relay would connect to itself", text);
        return -1;
    }
    return 0;
}

/* A host that getaddrinfo() reads without asking anyone: an IPv4 or IPv6
 * literal, the latter with or without a zone. */
static bool numeric_host(const char *host)
{
    char plain[SK_HOST_MAX];
    unsigned char ip[16];
    size_t n = strcspn(host, "%");

    if (n >= sizeof(plain))
        return false;
    memcpy(plain, host, n);
    plain[n] = '\0';
    return inet_pton(AF_INET, plain, ip) == 1 ||
           inet_pton(AF_INET6, plain, ip) == 1;
}

int relay_target_parse(struct relay *r, const char *text)
{
    struct relay_target *t;
    int ret;

    if (r->ntargets == RELAY_TARGETS_MAX) {
        cli_error("relay: at most %d TARGETs", RELAY_TARGETS_MAX);
        return -1;
    }
    if (r->targets == NULL &&
        (r->targets = calloc(RELAY_TARGETS_MAX, sizeof(*r->targets))) == NULL) {
        cli_error("relay: out of memory");
        return -2;
    }
    t = &r->targets[r->ntargets];
    if ((ret = cli_parse_endpoint_tls(text, false, &t->ep, &t->tls)) < 0)
        return ret;
    r->ntargets++; /* its TLS context is freed with the others */
    if (check_target(r, &t->ep, text) < 0)
        return -1;
    sk_endpoint_format(&t->ep, t->name, sizeof(t->name));
    t->dns = !sk_endpoint_is_unix(&t->ep) && !numeric_host(t->ep.host);
    atomic_init(&t->down, false);
    return 0;
}

static void log_state(const struct relay_target *t, bool down, int err,
                      const char *why, unsigned backoff_ms);

/* A name that does not resolve at start is down, looked up again by the
 * connections that come (one line says so); all of them unresolved, or
 * the only TARGET, stop the relay. */
int relay_targets_start(struct relay *r)
{
    size_t unresolved = 0;
    bool names = false;
    int n;

    pthread_mutex_init(&r->lock, NULL);
    for (size_t i = 0; i < r->ntargets; i++) {
        struct relay_target *t = &r->targets[i];
        n = sk_endpoint_resolve(&t->ep, false, t->addrs, SK_CONNECT_ADDRS);
        names = names || t->dns;
        if (n >= 0) {
            t->naddrs = (size_t)n;
            t->resolved_at = cli_now_ms();
            continue;
        }
        if (!t->dns || ++unresolved == r->ntargets) {
            cli_error_ep("resolve", &t->ep, n);
            return -1;
        }
        t->naddrs = 0;
        t->backoff_ms = BACKOFF_FIRST_MS;
        t->retry_at = cli_now_ms() + t->backoff_ms;
        atomic_store(&t->down, true);
        log_state(t, true, n, NULL, t->backoff_ms);
    }
    if (names && relay_resolver_start(r, RESOLVER_THREADS) < 0)
        return -1;
    return 0;
}

void relay_targets_end(struct relay *r)
{
    if (r->ntargets > 0)
        relay_resolver_end(r);
    for (size_t i = 0; i < r->ntargets; i++)
        sk_tls_free(r->targets[i].tls);
    free(r->targets);
    r->targets = NULL;
    r->ntargets = 0;
}

/* ------------------------------------------------------------ choice */

void relay_plan_make(struct relay *r, struct relay_plan *p)
{
    size_t n = r->ntargets, first = 0, later = 0;
    unsigned char rest[RELAY_TARGETS_MAX];
    uint64_t now = cli_now_ms();

    if (r->balance == RELAY_ROUNDROBIN && n > 1)
        first = atomic_fetch_add(&r->turn, 1) % n;
    p->n = 0;
    p->next = 0;
    pthread_mutex_lock(&r->lock);
    for (size_t k = 0; k < n; k++) {
        size_t i = (first + k) % n;
        struct relay_target *t = &r->targets[i];
        /* Down and not yet due: only when nothing else works. */
        if (atomic_load(&t->down) && now < t->retry_at) {
            rest[later++] = (unsigned char)i;
            continue;
        }
        /* Due: this client makes the retry, first of all (else a client
         * of round-robin that another TARGET serves would skip it); the
         * others keep the target last until it has worked or failed (a
         * target that swallows its SYNs would cost each of them the
         * connect timeout). */
        if (atomic_load(&t->down)) {
            t->probing = true;
            t->retry_at = now + t->backoff_ms;
            memmove(p->order + 1, p->order, p->n);
            p->order[0] = (unsigned char)i;
            p->n++;
            continue;
        }
        p->order[p->n++] = (unsigned char)i;
    }
    pthread_mutex_unlock(&r->lock);
    memcpy(p->order + p->n, rest, later);
    p->n += later;
}

int relay_plan_next(struct relay_plan *p)
{
    return p->next < p->n ? p->order[p->next++] : -1;
}

/* ------------------------------------------------------------- state */

static void log_state(const struct relay_target *t, bool down, int err,
                      const char *why, unsigned backoff_ms)
{
    struct sk_log_record rec = {.event = down ? "target_down" : "target_up",
                                .peer = t->name,
                                .warning = down};
    char retry[32];

    if (!down) {
        cli_log_event(&rec, "target %s up", t->name);
        return;
    }
    rec.reason = why != NULL ? why : sk_strerror(err);
    if (backoff_ms % 1000 == 0)
        snprintf(retry, sizeof(retry), "%u s", backoff_ms / 1000);
    else
        snprintf(retry, sizeof(retry), "%.1f s", backoff_ms / 1000.0);
    cli_log_event(&rec, "target %s down: %s (retry in %s)", t->name, rec.reason,
                  retry);
}

void relay_target_failed(struct relay *r, size_t i, int err, const char *why)
{
    struct relay_target *t = &r->targets[i];
    uint64_t now = cli_now_ms();
    bool changed = false;
    unsigned backoff;

    relay_count(i, RELAY_CONNECT_FAILURES, 1);
    pthread_mutex_lock(&r->lock);
    if (!atomic_load(&t->down)) {
        t->backoff_ms = BACKOFF_FIRST_MS;
        t->retry_at = now + t->backoff_ms;
        atomic_store(&t->down, true);
        changed = true;
    } else if (t->probing) {
        /* A retry failed (others, begun before, do not count twice). */
        t->probing = false;
        t->backoff_ms = t->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS
                                                           : t->backoff_ms * 2;
        t->retry_at = now + t->backoff_ms;
    }
    backoff = t->backoff_ms;
    pthread_mutex_unlock(&r->lock);
    if (changed)
        log_state(t, true, err, why, backoff);
}

void relay_target_worked(struct relay *r, size_t i)
{
    struct relay_target *t = &r->targets[i];
    bool changed = false;

    if (!atomic_load(&t->down))
        return;
    pthread_mutex_lock(&r->lock);
    if (atomic_load(&t->down)) {
        atomic_store(&t->down, false);
        t->backoff_ms = 0;
        t->probing = false;
        changed = true;
    }
    pthread_mutex_unlock(&r->lock);
    if (changed)
        log_state(t, false, 0, NULL, 0);
}
