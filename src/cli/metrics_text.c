/* metrics_text.c -- the body of a scrape in the Prometheus text format
 * 0.0.4: "# HELP" and "# TYPE" once per family, then its samples,
 * NAME{LABEL="VALUE",...} VALUE, label values escaped (backslash, double
 * quote, newline); and the families of the server's listeners, one
 * sample per listener each, from sk_server_get_listener_stats(). */
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "metrics.h"

static void put(struct cli_metrics *m, const char *p, size_t n)
{
    if (!m->failed && sk_buf_append(&m->buf, p, n) < 0)
        m->failed = true;
}

static void puts_(struct cli_metrics *m, const char *s)
{
    put(m, s, strlen(s));
}

/* HELP text escapes a backslash and a newline; a label value the double
 * quote too. */
static void put_escaped(struct cli_metrics *m, const char *s, bool quote)
{
    const char *run = s;

    for (; *s != '\0'; s++) {
        const char *esc = *s == '\\'           ? "\\\\"
                          : *s == '\n'         ? "\\n"
                          : *s == '"' && quote ? "\\\""
                                               : NULL;
        if (esc == NULL)
            continue;
        put(m, run, (size_t)(s - run));
        puts_(m, esc);
        run = s + 1;
    }
    put(m, run, (size_t)(s - run));
}

void cli_metrics_family(struct cli_metrics *m, const char *name,
                        const char *type, const char *help)
{
    puts_(m, "# HELP ");
    puts_(m, name);
    puts_(m, " ");
    put_escaped(m, help, false);
    puts_(m, "\n# TYPE ");
    puts_(m, name);
    puts_(m, " ");
    puts_(m, type);
    puts_(m, "\n");
}

void cli_metrics_sample(struct cli_metrics *m, const char *name,
                        const char *const *labels, size_t nlabels,
                        uint64_t value)
{
    char num[24];

    puts_(m, name);
    for (size_t i = 0; i < nlabels; i++) {
        puts_(m, i == 0 ? "{" : ",");
        puts_(m, labels[2 * i]);
        puts_(m, "=\"");
        put_escaped(m, labels[2 * i + 1], true);
        puts_(m, "\"");
    }
    snprintf(num, sizeof(num), "%s%" PRIu64 "\n", nlabels > 0 ? "} " : " ",
             value);
    puts_(m, num);
}

/* ------------------------------------------------ the listeners' */

/* A counter of struct sk_server_stats, one sample per listener. */
struct family {
    const char *name, *help;
    size_t off;
};

#define STAT(field) offsetof(struct sk_server_stats, field)

static const struct family counters[] = {
    {"sockit_connections_accepted_total",
     "Stream connections admitted: past the access rules, the limits and "
     "(proxy=) the PROXY header.",
     STAT(accepted)},
    {"sockit_connections_closed_total",
     "Admitted stream connections since closed.", STAT(closed)},
    {"sockit_bytes_received_total",
     "Stream bytes read from clients (inside TLS; not those of a connection "
     "handed over whole, such as --exec's or a splicing relay's).",
     STAT(bytes_in)},
    {"sockit_bytes_sent_total", "Stream bytes sent to clients.",
     STAT(bytes_out)},
    {"sockit_datagrams_received_total",
     "Datagrams received and passed to the service.", STAT(dgrams_in)},
    {"sockit_datagrams_sent_total", "Reply datagrams the kernel took.",
     STAT(dgrams_out)},
    {"sockit_datagrams_dropped_total",
     "Datagrams dropped: refused by the access rules, too large to take "
     "whole, or replies the kernel refused.",
     STAT(dgrams_dropped)},
    {"sockit_idle_timeouts_total", "Stream connections closed for being idle.",
     STAT(idle_timeouts)},
    {"sockit_accept_pauses_total",
     "Times accepting paused: out of descriptors or memory, or at the "
     "active connection limit.",
     STAT(accept_pauses)},
};

/* The reasons of sockit_connections_rejected_total. */
static const struct family reasons[] = {
    {"max_conns", NULL, STAT(refused_limit)},
    {"max_per_source", NULL, STAT(refused_source)},
    {"denied", NULL, STAT(refused_access)},
    {"tls_handshake", NULL, STAT(tls_failed)},
    {"proxy_header", NULL, STAT(proxy_failed)},
    {"fd_limit", NULL, STAT(fd_limit)},
};

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

static uint64_t stat_at(const struct sk_server_stats *s, size_t off)
{
    uint64_t v;

    memcpy(&v, (const char *)s + off, sizeof(v));
    return v;
}

static void listener_sample(struct cli_metrics *m, const char *name, size_t i,
                            const char *reason, uint64_t value)
{
    const char *labels[] = {"listener", cli_metrics_listener(i), "reason",
                            reason};

    cli_metrics_sample(m, name, labels, reason != NULL ? 2 : 1, value);
}

static void active(struct cli_metrics *m, const struct sk_server_stats *st,
                   size_t n)
{
    cli_metrics_family(m, "sockit_connections_active", "gauge",
                       "Stream connections open now (accepted less closed).");
    for (size_t i = 0; i < n; i++)
        listener_sample(
            m, "sockit_connections_active", i, NULL,
            st[i].accepted > st[i].closed ? st[i].accepted - st[i].closed : 0);
}

static void rejected(struct cli_metrics *m, const struct sk_server_stats *st,
                     size_t n)
{
    static const char name[] = "sockit_connections_rejected_total";

    cli_metrics_family(
        m, name, "counter",
        "Stream clients refused, by reason: max_conns and max_per_source "
        "(the limits), denied (the access rules), tls_handshake and "
        "proxy_header (failed or late), fd_limit (times accepting ran out "
        "of descriptors or memory, once until an accept succeeds again; "
        "the clients wait).");
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < COUNT_OF(reasons); k++)
            listener_sample(m, name, i, reasons[k].name,
                            stat_at(&st[i], reasons[k].off));
}

void cli_metrics_listeners(struct cli_metrics *m, const struct sk_server *srv)
{
    size_t n = cli_metrics_listener_count();
    struct sk_server_stats *st = m->stats;

    /* Each listener read once per scrape: per worker and listener. */
    for (size_t i = 0; i < n; i++)
        sk_server_get_listener_stats(srv, i, &st[i]);
    for (size_t f = 0; f < COUNT_OF(counters); f++) {
        cli_metrics_family(m, counters[f].name, "counter", counters[f].help);
        for (size_t i = 0; i < n; i++)
            listener_sample(m, counters[f].name, i, NULL,
                            stat_at(&st[i], counters[f].off));
        if (f == 1) /* beside accepted and closed */
            active(m, st, n);
    }
    rejected(m, st, n);
}
