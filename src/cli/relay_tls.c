/* relay_tls.c -- relayed stream connections with TLS on either side: the
 * client's connection (TLS terminated by the library when LISTEN has tls)
 * is joined to an outbound connection to TARGET (TLS originated when
 * TARGET has tls). Bytes pass through user space, as TLS needs; a relay
 * with TLS on neither side splices (relay.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "relay.h"

/* The client's connection, while its target connection is not joined. */
struct tls_leg {
    struct relay *r;
    struct sk_conn *client, *target;
    bool joined;
};

static void log_failure(const struct tls_leg *leg, struct sk_conn *t, int err)
{
    relay_warn_target(leg->r, err,
                      sk_conn_error(t)[0] != '\0' ? sk_conn_error(t) : NULL);
}

static int target_open(struct sk_conn *t)
{
    struct tls_leg *leg = sk_conn_data(t);

    if (leg == NULL || sk_conn_join(leg->client, t) < 0)
        return -1;
    relay_count(0, RELAY_CONNECTS, 1);
    leg->joined = true;
    return 0;
}

static void target_close(struct sk_conn *t, int status)
{
    struct tls_leg *leg = sk_conn_data(t);
    uint64_t in, out;

    sk_conn_bytes(t, &in, &out);
    relay_count(0, RELAY_BYTES_SENT, out);
    relay_count(0, RELAY_BYTES_RECEIVED, in);
    if (leg == NULL)
        return;
    if (!leg->joined) {
        relay_count(0, RELAY_CONNECT_FAILURES, 1);
        log_failure(leg, t, status);
        sk_conn_close(leg->client);
    }
    leg->target = NULL;
}

static const struct sk_handler target_handler = {
    .on_open = target_open,
    .on_close = target_close,
};

int relay_tls_open(struct sk_conn *c, struct relay *r)
{
    struct tls_leg *leg = calloc(1, sizeof(*leg));
    struct sk_conn_options o = {.handler = &target_handler,
                                .data = leg,
                                .tls = r->target_tls,
                                .timeout_ms = r->connect_timeout_ms,
                                .idle_ms = r->idle_ms};

    char header[SK_PROXY_HEADER_MAX];
    int n;

    if (leg == NULL)
        return -1;
    if ((n = relay_proxy_header(r, c, header, sizeof(header))) < 0) {
        free(leg);
        return -1;
    }
    o.preamble = header;
    o.preamble_len = (size_t)n;
    leg->client = c;
    leg->r = r;
    sk_conn_set_data(c, leg);
    /* What the client sends waits in the kernel until TARGET is there. */
    sk_conn_hold_input(c, true);
    if (sk_conn_connect(sk_conn_loop(c), &r->target, &o, &leg->target) < 0)
        return -1;
    return 0;
}

void relay_tls_close(struct sk_conn *c)
{
    struct tls_leg *leg = sk_conn_data(c);

    if (leg == NULL)
        return;
    if (leg->target != NULL) {
        sk_conn_set_data(leg->target, NULL);
        /* Joined, it is closed already once its output is sent. */
        if (!leg->joined)
            sk_conn_abort(leg->target);
    }
    free(leg);
}
