/* relay_stats.c -- what --metrics shows of a relay beside the listeners'
 * counters: connections to each target made and failed, the bytes moved
 * to and from it (those the listener counters do not see: spliced pairs,
 * flows, TLS legs), and the datagram flows dropped per listener. Each
 * worker counts in a block of its own (64-byte aligned, found through a
 * thread-local pointer set by the thread_start hook), without locks;
 * a scrape sums the blocks. A worker's spliced pairs are tallied once a
 * second, and as each ends. Without --metrics nothing is made and
 * counting does nothing. Each target has its own series, and a gauge of
 * whether it is up. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "relay.h"

#define LINE 64
#define PER_LINE (LINE / sizeof(atomic_uint_fast64_t))

static struct {
    struct relay *r;
    unsigned workers;
    size_t ntargets, nlisteners;
    size_t stride; /* counters per worker: whole cache lines */
    atomic_uint_fast64_t *blocks;
    struct sk_endpoint *listeners; /* to find a datagram's listener */
    char **targets;                /* labels */
} rs;

static __thread atomic_uint_fast64_t *mine;

/* How often a worker adds what its pairs moved meanwhile. */
#define TALLY_MS 1000

/* The pairs of a worker, while it has any. */
static __thread struct {
    struct relay_tally list; /* sentinel */
    struct sk_timer timer;
    bool ready;
} tallies;

static size_t target_at(size_t target, enum relay_stat stat)
{
    return target * RELAY_STAT_COUNT + stat;
}

static size_t drop_at(size_t listener, enum relay_drop why)
{
    return rs.ntargets * RELAY_STAT_COUNT + listener * RELAY_DROP_COUNT + why;
}

/* One writer per counter: a load and a store. */
static void add(size_t at, uint64_t n)
{
    atomic_uint_fast64_t *v = &mine[at];

    atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

void relay_count(size_t target, enum relay_stat stat, uint64_t n)
{
    if (mine != NULL && target < rs.ntargets)
        add(target_at(target, stat), n);
}

/* The listener a datagram came to: its canonical endpoint's index. */
static size_t listener_of(const struct sk_endpoint *local)
{
    for (size_t i = 0; rs.nlisteners > 1 && i < rs.nlisteners; i++) {
        const struct sk_endpoint *l = &rs.listeners[i];
        if (l->scheme == local->scheme && l->port == local->port &&
            strcmp(l->host, local->host) == 0 &&
            l->path_len == local->path_len &&
            memcmp(l->path, local->path, sizeof(l->path)) == 0)
            return i;
    }
    return 0;
}

size_t relay_listener_index(const struct sk_endpoint *local)
{
    return mine != NULL ? listener_of(local) : 0;
}

void relay_count_drop(size_t listener, enum relay_drop why)
{
    if (mine != NULL && listener < rs.nlisteners)
        add(drop_at(listener, why), 1);
}

/* -------------------------------------------------- spliced pairs */

/* Adds what t's pair moved since the last time. */
static void tally(struct relay_tally *t)
{
    for (int d = 0; d < 2; d++) {
        uint64_t now = sk_pair_bytes(t->pair, d);
        relay_count(t->target, d == 0 ? RELAY_BYTES_SENT : RELAY_BYTES_RECEIVED,
                    now - t->counted[d]);
        t->counted[d] = now;
    }
}

static void on_tally(struct sk_timer *timer)
{
    for (struct relay_tally *t = tallies.list.next; t != &tallies.list;
         t = t->next)
        tally(t);
}

void relay_tally_start(struct relay_tally *t, size_t target,
                       struct sk_loop *loop, struct sk_pair *pair)
{
    *t = (struct relay_tally){.pair = mine != NULL ? pair : NULL,
                              .target = target};
    if (t->pair == NULL)
        return;
    if (!tallies.ready) {
        tallies.list.prev = tallies.list.next = &tallies.list;
        sk_timer_init(&tallies.timer, on_tally);
        tallies.ready = true;
    }
    /* Without a timer, what a pair moved is added as it ends. */
    if (tallies.list.next == &tallies.list)
        sk_timer_start(loop, &tallies.timer, TALLY_MS, TALLY_MS);
    t->prev = tallies.list.prev;
    t->next = &tallies.list;
    t->prev->next = t;
    tallies.list.prev = t;
}

void relay_tally_end(struct relay_tally *t)
{
    if (t->pair == NULL)
        return;
    tally(t);
    t->prev->next = t->next;
    t->next->prev = t->prev;
    t->pair = NULL;
    if (tallies.list.next == &tallies.list)
        sk_timer_stop(&tallies.timer);
}

static void on_thread_start(void *data, unsigned worker)
{
    mine = rs.blocks != NULL && worker < rs.workers
               ? rs.blocks + (size_t)worker * rs.stride
               : NULL;
}

/* Also tells the resolver that this worker is ending. */
static void on_thread_end(void *data, unsigned worker)
{
    mine = NULL;
    relay_resolver_thread_ended(data);
}

/* ------------------------------------------------------- --metrics */

static int bound(void *data, const struct sk_server *srv)
{
    size_t n;

    rs.nlisteners = sk_server_listener_count(srv);
    rs.stride = drop_at(rs.nlisteners, 0);
    rs.stride = (rs.stride + PER_LINE - 1) / PER_LINE * PER_LINE;
    n = rs.stride * rs.workers * sizeof(*rs.blocks);
    rs.listeners = calloc(rs.nlisteners + 1, sizeof(*rs.listeners));
    rs.targets = calloc(rs.ntargets, sizeof(*rs.targets));
    rs.blocks = aligned_alloc(LINE, n);
    if (rs.listeners == NULL || rs.targets == NULL || rs.blocks == NULL) {
        cli_error("relay: --metrics: out of memory");
        return -1;
    }
    memset(rs.blocks, 0, n);
    for (size_t i = 0; i < rs.nlisteners; i++)
        sk_server_listener_endpoint(srv, i, &rs.listeners[i]);
    for (size_t t = 0; t < rs.ntargets; t++) {
        if ((rs.targets[t] = strdup(rs.r->targets[t].name)) == NULL) {
            cli_error("relay: --metrics: out of memory");
            return -1;
        }
    }
    return 0;
}

static uint64_t sum(size_t at)
{
    uint64_t v = 0;

    for (unsigned w = 0; w < rs.workers; w++)
        v += atomic_load_explicit(&rs.blocks[(size_t)w * rs.stride + at],
                                  memory_order_relaxed);
    return v;
}

static const struct {
    const char *name, *help;
} target_families[RELAY_STAT_COUNT] = {
    [RELAY_CONNECTS] = {"sockit_relay_target_connects_total",
                        "Connections made to the target (datagram flows: "
                        "sockets connected to it)."},
    [RELAY_CONNECT_FAILURES] = {"sockit_relay_target_connect_failures_total",
                                "Connections to the target that failed: "
                                "refused, timed out, unreachable, TLS "
                                "handshake (datagrams: refusals it sent "
                                "back)."},
    [RELAY_BYTES_SENT] = {"sockit_relay_target_bytes_sent_total",
                          "Bytes relayed to the target (spliced ones "
                          "counted once a second, those of a TLS relay as "
                          "each connection ends)."},
    [RELAY_BYTES_RECEIVED] = {"sockit_relay_target_bytes_received_total",
                              "Bytes relayed from the target (as sent)."},
};

static const char *const drop_reasons[RELAY_DROP_COUNT] = {
    [RELAY_DROP_TABLE_FULL] = "table_full",
    [RELAY_DROP_SOURCE_LIMIT] = "source_limit",
    [RELAY_DROP_OVERSIZED] = "oversized_reply",
};

static void scrape(void *data, struct cli_metrics *m)
{
    static const char drops[] = "sockit_relay_flows_dropped_total";
    static const char up[] = "sockit_relay_target_up";

    if (rs.blocks == NULL)
        return;
    for (int k = 0; k < RELAY_STAT_COUNT; k++) {
        cli_metrics_family(m, target_families[k].name, "counter",
                           target_families[k].help);
        for (size_t t = 0; t < rs.ntargets; t++) {
            const char *labels[] = {"target", rs.targets[t]};
            cli_metrics_sample(m, target_families[k].name, labels, 1,
                               sum(target_at(t, (enum relay_stat)k)));
        }
    }
    cli_metrics_family(m, up, "gauge",
                       "Whether the target is up (1) or down after a failed "
                       "connect, until a retry works (0).");
    for (size_t t = 0; t < rs.ntargets; t++) {
        const char *labels[] = {"target", rs.targets[t]};
        cli_metrics_sample(m, up, labels, 1,
                           !atomic_load(&rs.r->targets[t].down));
    }
    cli_metrics_family(m, drops, "counter",
                       "Datagram flows evicted to make room (table_full: "
                       "the worker's limit, source_limit: the share of one "
                       "source) and replies dropped for being too large "
                       "(oversized_reply).");
    for (size_t i = 0; i < rs.nlisteners; i++)
        for (int k = 0; k < RELAY_DROP_COUNT; k++) {
            const char *labels[] = {"listener", cli_metrics_listener(i),
                                    "reason", drop_reasons[k]};
            cli_metrics_sample(m, drops, labels, 2,
                               sum(drop_at(i, (enum relay_drop)k)));
        }
}

static void end(void *data)
{
    for (size_t t = 0; rs.targets != NULL && t < rs.ntargets; t++)
        free(rs.targets[t]);
    free(rs.targets);
    free(rs.listeners);
    free(rs.blocks);
    rs.targets = NULL;
    rs.listeners = NULL;
    rs.blocks = NULL;
}

static const struct cli_metrics_source relay_source = {
    .bound = bound,
    .scrape = scrape,
    .end = end,
};

int relay_stats_setup(struct relay *r, struct sk_server_config *cfg,
                      unsigned workers)
{
    rs.r = r;
    rs.workers = workers;
    rs.ntargets = r->ntargets;
    cfg->thread_start = on_thread_start;
    cfg->thread_end = on_thread_end;
    return cli_metrics_add(&relay_source, r);
}
