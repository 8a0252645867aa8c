/* relay_tls.c -- relayed stream connections with TLS on either side: the
 * client's connection (TLS terminated by the library when LISTEN has tls)
 * is joined to an outbound connection to a TARGET (TLS originated when
 * it has tls), the TARGETs tried in their order until one connects.
 * Bytes pass through user space, as TLS needs; a relay with TLS on
 * neither side splices (relay.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay.h"

/* The client's connection, while its target connection is not joined. */
struct tls_leg {
    struct relay *r;
    struct sk_conn *client, *target;
    struct relay_lookup *lookup; /* while TARGET's name is looked up */
    struct relay_plan plan;
    size_t t;                               /* the target tried now */
    struct sk_addr addrs[SK_CONNECT_ADDRS]; /* its name's answer */
    size_t naddrs, next_addr;               /* 0: not looked up */
    int last_err;
    char why[256]; /* the last failure, when more than an errno */
    bool joined;
};

/* The data of a target connection: which target, and the client's leg
 * (NULL once the client is gone). Freed as the target connection ends. */
struct tls_out {
    struct tls_leg *leg;
    size_t t;
};

static int try_next(struct tls_leg *leg);
static int connect_addrs(struct tls_leg *leg);

static int target_open(struct sk_conn *t)
{
    struct tls_out *out = sk_conn_data(t);
    struct tls_leg *leg = out->leg;

    if (leg == NULL || sk_conn_join(leg->client, t) < 0)
        return -1;
    relay_count(leg->t, RELAY_CONNECTS, 1);
    relay_target_worked(leg->r, leg->t);
    leg->joined = true;
    return 0;
}

static void target_close(struct sk_conn *t, int status)
{
    struct tls_out *out = sk_conn_data(t);
    struct tls_leg *leg = out->leg;
    uint64_t in, sent;

    sk_conn_bytes(t, &in, &sent);
    relay_count(out->t, RELAY_BYTES_SENT, sent);
    relay_count(out->t, RELAY_BYTES_RECEIVED, in);
    free(out);
    if (leg == NULL)
        return;
    leg->target = NULL;
    if (leg->joined)
        return;
    snprintf(leg->why, sizeof(leg->why), "%s", sk_conn_error(t));
    leg->last_err = status;
    if (leg->next_addr < leg->naddrs && connect_addrs(leg) == 0)
        return; /* the name's next address */
    relay_target_failed(leg->r, leg->t, status,
                        leg->why[0] != '\0' ? leg->why : NULL);
    if (try_next(leg) < 0)
        sk_conn_close(leg->client);
}

static const struct sk_handler target_handler = {
    .on_open = target_open,
    .on_close = target_close,
};

/* Connects to the current target at addr (NULL: as its endpoint says, a
 * numeric host or a path). Returns 0 or a negative code. */
static int connect_target(struct tls_leg *leg, const struct sk_addr *addr)
{
    const struct relay_target *target = &leg->r->targets[leg->t];
    struct tls_out *out = malloc(sizeof(*out));
    struct sk_conn_options o = {.handler = &target_handler,
                                .data = out,
                                .tls = target->tls,
                                .timeout_ms = leg->r->connect_timeout_ms,
                                .idle_ms = leg->r->idle_ms};
    struct sk_endpoint ep = target->ep;
    char header[SK_PROXY_HEADER_MAX];
    int n = relay_proxy_header(ep.proxy, leg->client, header, sizeof(header));

    if (out == NULL || n < 0) {
        free(out);
        return out == NULL ? -ENOMEM : n;
    }
    *out = (struct tls_out){.leg = leg, .t = leg->t};
    /* The name stays in the TLS context (SNI, verification); the address
     * is one looked up here, so that connecting does not block. */
    if (addr != NULL && sk_endpoint_from_addr(&ep, ep.scheme, addr) == 0) {
        ep.tls = target->ep.tls;
        ep.proxy = target->ep.proxy;
    }
    o.preamble = header;
    o.preamble_len = (size_t)n;
    if ((n = sk_conn_connect(sk_conn_loop(leg->client), &ep, &o,
                             &leg->target)) < 0) {
        leg->target = NULL;
        free(out);
    }
    return n;
}

/* Connects to the next address of the current target's answer, then the
 * next, until one starts. Returns 0 or the last negative code. */
static int connect_addrs(struct tls_leg *leg)
{
    int n = -EHOSTUNREACH;

    while (leg->next_addr < leg->naddrs)
        if ((n = connect_target(leg, &leg->addrs[leg->next_addr++])) == 0)
            return 0;
    return n;
}

static void on_resolved(void *owner, int n, const struct sk_addr *addrs)
{
    struct tls_leg *leg = owner;

    leg->lookup = NULL;
    if (n > 0) {
        memcpy(leg->addrs, addrs, (size_t)n * sizeof(*addrs));
        leg->naddrs = (size_t)n;
        leg->next_addr = 0;
        if ((n = connect_addrs(leg)) == 0)
            return;
    }
    leg->last_err = n;
    leg->why[0] = '\0';
    relay_target_failed(leg->r, leg->t, n, NULL);
    if (try_next(leg) < 0)
        sk_conn_close(leg->client);
}

/* Starts on the next target of the plan. Returns 0, or -1 once every
 * target has failed (warned: the client is to be closed). */
static int try_next(struct tls_leg *leg)
{
    int t, n;

    while ((t = relay_plan_next(&leg->plan)) >= 0) {
        leg->t = (size_t)t;
        leg->naddrs = leg->next_addr = 0;
        if (!leg->r->targets[t].dns)
            n = connect_target(leg, NULL);
        else if ((n = relay_addrs(leg->r, leg->t, sk_conn_loop(leg->client),
                                  leg->addrs, on_resolved, leg, &leg->lookup)) >
                 0) {
            leg->naddrs = (size_t)n;
            n = connect_addrs(leg);
        }
        if (n == 0)
            return 0;
        leg->last_err = n;
        leg->why[0] = '\0';
        relay_target_failed(leg->r, leg->t, n, NULL);
    }
    relay_warn_target(leg->r, leg->t, leg->last_err,
                      leg->why[0] != '\0' ? leg->why : NULL);
    return -1;
}

int relay_tls_open(struct sk_conn *c, struct relay *r)
{
    struct tls_leg *leg = calloc(1, sizeof(*leg));

    if (leg == NULL)
        return -1;
    leg->client = c;
    leg->r = r;
    sk_conn_set_data(c, leg);
    /* What the client sends waits in the kernel until TARGET is there. */
    sk_conn_hold_input(c, true);
    relay_plan_make(r, &leg->plan);
    return try_next(leg);
}

void relay_tls_close(struct sk_conn *c)
{
    struct tls_leg *leg = sk_conn_data(c);

    if (leg == NULL)
        return;
    if (leg->lookup != NULL)
        relay_lookup_cancel(leg->lookup);
    if (leg->target != NULL) {
        ((struct tls_out *)sk_conn_data(leg->target))->leg = NULL;
        /* Joined, it is closed already once its output is sent. */
        if (!leg->joined)
            sk_conn_abort(leg->target);
    }
    free(leg);
}
