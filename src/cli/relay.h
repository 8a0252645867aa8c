/* relay.h -- what the two halves of `sockit relay` share: the relay's
 * settings (relay.c) and the datagram flows (relay_flow.c). */
#ifndef SOCKIT_RELAY_H
#define SOCKIT_RELAY_H

#include <stdint.h>

#include "cli.h"

/* Descriptors kept out of the relay's budget: standard streams and
 * listening sockets, and per worker its loop's descriptors and its own
 * listening sockets. */
#define RELAY_FD_RESERVE 64
#define RELAY_FD_PER_WORKER 4

struct relay {
    struct sk_endpoint listen, target;
    struct sk_listen_options listen_lo; /* LISTEN's tls (or NULL), mode= */
    struct sk_tls *target_tls;          /* with tls; else NULL */
    struct sk_addr addrs[SK_CONNECT_ADDRS];
    size_t naddrs;
    unsigned connect_timeout_ms;
    unsigned idle_ms;       /* stream pairs and answered flows; 0: none */
    unsigned unanswered_ms; /* flows TARGET never answered */
    size_t flow_max;        /* flows per worker */
    size_t flow_source_max; /* flows per worker from one source address */
    uint64_t seed[2];       /* key of the flow tables' hash */
    struct sk_ratelimit target_warn; /* TARGET failing: one line a second */
};

/* TARGET could not be reached for a client (err, or why when not NULL):
 * a warning, at most one a second, -v or not. */
void relay_warn_target(struct relay *r, int err, const char *why);

/* Sets the flow limits of r for this many workers sharing budget
 * descriptors, and draws the hash key. Returns 0, or -1 after an error
 * (printed). */
int relay_flow_setup(struct relay *r, unsigned workers, unsigned long budget);
/* on_datagram of the relay: passes the datagram on through its sender's
 * flow, made (or found) on the calling worker. */
void relay_flow_datagram(struct sk_dgram *d, const char *data, size_t len);

/* The PROXY header TARGET is sent first for client c (TARGET with proxy=):
 * the client's addresses as the relay saw them, or as LISTEN's own PROXY
 * header said. Returns its length, 0 without proxy= on TARGET, or a
 * negative code. */
int relay_proxy_header(const struct relay *r, const struct sk_conn *c,
                       char *out, size_t size);

/* relay_stats.c: the relay's own counters for --metrics, per worker.
 * Per target: */
enum relay_stat {
    RELAY_CONNECTS,
    RELAY_CONNECT_FAILURES,
    RELAY_BYTES_SENT,     /* to the target */
    RELAY_BYTES_RECEIVED, /* from it */
    RELAY_STAT_COUNT
};
/* Per listener, why a datagram flow (or a reply) was dropped: */
enum relay_drop {
    RELAY_DROP_TABLE_FULL,
    RELAY_DROP_SOURCE_LIMIT,
    RELAY_DROP_OVERSIZED,
    RELAY_DROP_COUNT
};
/* Registers the relay's families for a server of this many workers and
 * sets cfg's thread hooks. Returns 0 or -1. */
int relay_stats_setup(struct relay *r, struct sk_server_config *cfg,
                      unsigned workers);
/* Count on the calling worker; nothing without --metrics. */
void relay_count(size_t target, enum relay_stat stat, uint64_t n);
void relay_count_drop(size_t listener, enum relay_drop why);
/* The index of the listener whose canonical endpoint is local (a
 * datagram's sk_dgram_local()). */
size_t relay_listener_index(const struct sk_endpoint *local);
/* A spliced pair's bytes, counted once a second on its worker while it
 * lives, and the rest when it ends (before its sockets go). */
struct relay_tally {
    struct relay_tally *prev, *next;
    struct sk_pair *pair; /* NULL: not counted */
    uint64_t counted[2];  /* of sk_pair_bytes(), each direction */
};
void relay_tally_start(struct relay_tally *t, struct sk_loop *loop,
                       struct sk_pair *pair);
void relay_tally_end(struct relay_tally *t);

/* relay_tls.c: a client connection of a relay with TLS on either side,
 * joined to its own connection to TARGET; and its end. */
int relay_tls_open(struct sk_conn *c, struct relay *r);
void relay_tls_close(struct sk_conn *c);

#endif
