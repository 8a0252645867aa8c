/* stats.c -- what a server counts: one block of counters per worker and
 * listener (struct sk_counters), written by its worker alone, read from
 * any thread by sk_server_get_stats() and sk_server_get_listener_stats(),
 * which sum the workers' blocks. The cost of a read is per worker and
 * listener, never per connection. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Made once, when the first run begins: the listeners are fixed then.
 * Readers on other threads see NULL (zeros) or the whole zeroed array. */
int sk__server_counters_new(struct sk_server *srv)
{
    size_t n = (size_t)srv->nworkers * srv->nlisteners;
    struct sk_counters *c;

    if (atomic_load_explicit(&srv->counters, memory_order_relaxed) != NULL)
        return 0;
    c = aligned_alloc(_Alignof(struct sk_counters), n * sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    memset(c, 0, n * sizeof(*c));
    atomic_store_explicit(&srv->counters, c, memory_order_release);
    return 0;
}

/* Adds listener i's counters, summed over the workers, into v. A close is
 * read before the accepts, so that accepted - closed is never negative
 * (each store releases; these loads acquire). */
static void add_listener(const struct sk_server *srv,
                         const struct sk_counters *all, size_t i,
                         uint64_t v[SK_STAT_COUNT])
{
    static const enum sk_stat first = SK_STAT_CLOSED;

    for (unsigned w = 0; w < srv->nworkers; w++) {
        const struct sk_counters *c = &all[(size_t)w * srv->nlisteners + i];
        v[first] += atomic_load_explicit(&c->v[first], memory_order_acquire);
        for (int k = 0; k < SK_STAT_COUNT; k++)
            if (k != first)
                v[k] += atomic_load_explicit(&c->v[k], memory_order_acquire);
    }
}

static void fill(struct sk_server_stats *stats, const uint64_t v[SK_STAT_COUNT])
{
    *stats = (struct sk_server_stats){
        .accepted = v[SK_STAT_ACCEPTED],
        .refused_access = v[SK_STAT_REFUSED_ACCESS],
        .refused_source = v[SK_STAT_REFUSED_SOURCE],
        .refused_limit = v[SK_STAT_REFUSED_LIMIT],
        .proxy_failed = v[SK_STAT_PROXY_FAILED],
        .tls_failed = v[SK_STAT_TLS_FAILED],
        .dgrams_refused = v[SK_STAT_DGRAMS_REFUSED],
        .closed = v[SK_STAT_CLOSED],
        .fd_limit = v[SK_STAT_FD_LIMIT],
        .accept_pauses = v[SK_STAT_ACCEPT_PAUSES],
        .bytes_in = v[SK_STAT_BYTES_IN],
        .bytes_out = v[SK_STAT_BYTES_OUT],
        .dgrams_in = v[SK_STAT_DGRAMS_IN],
        .dgrams_out = v[SK_STAT_DGRAMS_OUT],
        .dgrams_dropped = v[SK_STAT_DGRAMS_DROPPED],
        .idle_timeouts = v[SK_STAT_IDLE_TIMEOUTS],
    };
}

int sk_server_get_listener_stats(const struct sk_server *srv, size_t i,
                                 struct sk_server_stats *stats)
{
    const struct sk_counters *all =
        atomic_load_explicit(&srv->counters, memory_order_acquire);
    uint64_t v[SK_STAT_COUNT] = {0};

    if (i >= srv->nlisteners)
        return -EINVAL;
    if (all != NULL)
        add_listener(srv, all, i, v);
    fill(stats, v);
    return 0;
}

void sk_server_get_stats(const struct sk_server *srv,
                         struct sk_server_stats *stats)
{
    const struct sk_counters *all =
        atomic_load_explicit(&srv->counters, memory_order_acquire);
    uint64_t v[SK_STAT_COUNT] = {0};

    for (size_t i = 0; all != NULL && i < srv->nlisteners; i++)
        add_listener(srv, all, i, v);
    fill(stats, v);
}
