/* relay.h -- what the two halves of `sockit relay` share: the relay's
 * settings (relay.c) and the datagram flows (relay_flow.c). */
#ifndef SOCKIT_RELAY_H
#define SOCKIT_RELAY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "cli.h"

/* Descriptors kept out of the relay's budget: standard streams and
 * listening sockets, and per worker its loop's descriptors and its own
 * listening sockets. */
#define RELAY_FD_RESERVE 64
#define RELAY_FD_PER_WORKER 4

/* Most TARGETs of one relay. */
#define RELAY_TARGETS_MAX 64

enum relay_balance { RELAY_ROUNDROBIN, RELAY_FIRST };

/* One TARGET: its endpoint, its state (up, or down until retry_at) and
 * its latest addresses. The fields under "lock" are read and written with
 * the relay's lock held, by any worker. */
struct relay_target {
    struct sk_endpoint ep;
    struct sk_tls *tls;            /* with tls; else NULL */
    char name[SK_ENDPOINT_STRLEN]; /* canonical, for the log and labels */
    bool dns;                      /* a host name: resolved per connection */
    atomic_bool down;              /* read without the lock */
    /* lock: */
    unsigned backoff_ms; /* the wait before the next retry; 0 while up */
    uint64_t retry_at;   /* cli_now_ms() when a down target is tried again */
    bool probing;        /* one client was given the retry: the others wait */
    struct sk_addr addrs[SK_CONNECT_ADDRS]; /* the latest answer */
    size_t naddrs;
    uint64_t resolved_at; /* cli_now_ms() of that answer */
    bool refreshing;      /* a lookup for datagram flows is under way */
};

/* The order in which one client tries the targets: each at most once. */
struct relay_plan {
    unsigned char order[RELAY_TARGETS_MAX];
    size_t n, next;
};

struct relay_resolver;

struct relay {
    struct sk_endpoint listen;
    struct sk_listen_options listen_lo; /* LISTEN's tls (or NULL), mode= */
    struct relay_target *targets;
    size_t ntargets;
    bool target_tls_any; /* a TARGET has tls */
    enum relay_balance balance;
    atomic_uint turn;                /* round-robin: the next first choice */
    unsigned resolve_every_ms;       /* 0: each new connection resolves */
    pthread_mutex_t lock;            /* the targets' state; held briefly */
    struct relay_resolver *resolver; /* NULL: no TARGET has a host name */
    unsigned connect_timeout_ms;
    unsigned idle_ms;       /* stream pairs and answered flows; 0: none */
    unsigned unanswered_ms; /* flows TARGET never answered */
    size_t flow_max;        /* flows per worker */
    size_t flow_source_max; /* flows per worker from one source address */
    uint64_t seed[2];       /* key of the flow tables' hash */
    struct sk_ratelimit target_warn; /* no target reached: one line a second */
};

/* relay_targets.c. Parses TARGET text as target i of r (after LISTEN) and
 * checks it against LISTEN. Returns 0, -1 after a usage error, -2 when a
 * TLS file cannot be used (each printed). Main thread, before the run. */
int relay_target_parse(struct relay *r, const char *text);
/* Resolves every TARGET once (a name that does not resolve is an error:
 * printed, -1) and starts the resolver when a TARGET has a host name.
 * Returns 0 or -1. Main thread. */
int relay_targets_start(struct relay *r);
/* Stops the resolver and frees the targets. Main thread, after the run. */
void relay_targets_end(struct relay *r);
/* The order this new client tries the targets in (--balance): those up
 * or due for a retry first, then the others. Any thread. */
void relay_plan_make(struct relay *r, struct relay_plan *p);
/* The next target of the plan, or -1 when every one was tried. */
int relay_plan_next(struct relay_plan *p);
/* Target t failed (err, or why when not NULL) or worked: marks it down
 * (retried after the back-off) or up, and logs a change of state once.
 * Any worker. */
void relay_target_failed(struct relay *r, size_t t, int err, const char *why);
void relay_target_worked(struct relay *r, size_t t);

/* relay_resolve.c: a target's addresses, looked up on the resolver's
 * threads, never on a worker's. */
struct relay_lookup;
/* The answer of a lookup, on the loop's thread: n addresses, or n < 0. */
typedef void (*relay_lookup_fn)(void *owner, int n,
                                const struct sk_addr *addrs);
/* The addresses of target t for a new connection: returns their count
 * (> 0, copied into addrs) when known now (a numeric host, a UNIX path, an
 * answer younger than --resolve-every); 0 when a lookup was started: then
 * fn(owner, ...) runs later on loop's thread unless *lp is cancelled
 * first; or a negative code. Worker thread, loop its own: the loop that
 * relay_resolver_thread_ended() stops answering. */
int relay_addrs(struct relay *r, size_t t, struct sk_loop *loop,
                struct sk_addr *addrs, relay_lookup_fn fn, void *owner,
                struct relay_lookup **lp);
/* As relay_addrs() without waiting (datagram flows): the latest answer,
 * and a lookup in the background when it is stale. */
int relay_addrs_now(struct relay *r, size_t t, struct sk_addr *addrs);
/* fn will not run; the lookup's memory is freed later. Its loop's thread. */
void relay_lookup_cancel(struct relay_lookup *l);
/* The resolver's threads (at most threads of them), and their end. */
int relay_resolver_start(struct relay *r, unsigned threads);
void relay_resolver_end(struct relay *r);
/* The calling worker is ending: answers are no longer handed to its loop
 * (those of the workers still running still are). On that worker's
 * thread. */
void relay_resolver_thread_ended(struct relay *r);

/* No target could be reached for a client, t the last one tried (err, or
 * why when not NULL): a warning, at most one a second, -v or not. */
void relay_warn_target(struct relay *r, size_t t, int err, const char *why);

/* Sets the flow limits of r for this many workers sharing budget
 * descriptors, and draws the hash key. Returns 0, or -1 after an error
 * (printed). */
int relay_flow_setup(struct relay *r, unsigned workers, unsigned long budget);
/* on_datagram of the relay: passes the datagram on through its sender's
 * flow, made (or found) on the calling worker. */
void relay_flow_datagram(struct sk_dgram *d, const char *data, size_t len);

/* The PROXY header of version v (enum sk_proxy) for client c: the
 * client's addresses as the relay saw them, or as LISTEN's own PROXY
 * header said. Returns its length, 0 for SK_PROXY_NONE, or a negative
 * code. */
int relay_proxy_header(int v, const struct sk_conn *c, char *out, size_t size);

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
/* Count on the calling worker; nothing without --metrics. Target state
 * for the up gauge is read from r at each scrape. */
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
    size_t target;
    uint64_t counted[2]; /* of sk_pair_bytes(), each direction */
};
void relay_tally_start(struct relay_tally *t, size_t target,
                       struct sk_loop *loop, struct sk_pair *pair);
void relay_tally_end(struct relay_tally *t);

/* relay_tls.c: a client connection of a relay with TLS on either side,
 * joined to its own connection to TARGET; and its end. */
int relay_tls_open(struct sk_conn *c, struct relay *r);
void relay_tls_close(struct sk_conn *c);

#endif
