/* relay_flow.c -- the datagram side of `sockit relay`: each client address
 * of LISTEN gets a flow, a socket of its own connected to a TARGET (the
 * next one by --balance), whose replies go back to that client. A TARGET
 * that refuses is down for new flows (relay_targets.c).
 *
 * A worker's flows live in a table bounded by the descriptor budget and
 * found through a keyed hash (SipHash-1-3, random key), so that senders
 * cannot choose addresses that share a bucket. Flows are kept in
 * least-recently-used order: a full table gives up its oldest flow (one
 * TARGET never answered first), a source address at its share gives up
 * its own oldest, and expiry walks from the old end of each list. A flow
 * TARGET never answered lives a short time; an answered one lives until
 * the idle timeout. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/un.h>
#include <unistd.h>

#include "../hash.h"
#include "relay.h"

/* Flows per worker, whatever the descriptor limit. */
#define FLOW_LIMIT 16384
/* One source address holds at most this fraction of a worker's flows. */
#define FLOW_SOURCE_SHARE 8
/* The life of a flow TARGET has not answered (or the idle timeout). */
#define FLOW_UNANSWERED_MS 5000
/* Replies read per readiness of a flow. */
#define FLOW_BATCH 32
/* -v summaries of evictions and dropped replies: at most one a period. */
#define LOG_PERIOD_MS 1000
/* Bytes naming a sender: family, then address and port, or a UNIX path. */
#define KEY_MAX (sizeof(sa_family_t) + sizeof(struct sockaddr_storage))

/* ------------------------------------------------------- LRU lists */

struct lru_node {
    struct lru_node *newer, *older;
};

struct lru {
    struct lru_node *newest, *oldest;
};

static void lru_push(struct lru *l, struct lru_node *n)
{
    n->newer = NULL;
    n->older = l->newest;
    if (l->newest != NULL)
        l->newest->newer = n;
    else
        l->oldest = n;
    l->newest = n;
}

static void lru_unlink(struct lru *l, struct lru_node *n)
{
    if (n->newer != NULL)
        n->newer->older = n->older;
    else
        l->newest = n->older;
    if (n->older != NULL)
        n->older->newer = n->newer;
    else
        l->oldest = n->newer;
}

/* ------------------------------------------------------------ table */

/* The flows of one source address (an IPv4 address, an IPv6 /64, or a
 * UNIX path), oldest last. */
struct source {
    struct source *next; /* in its bucket */
    struct lru flows;
    size_t count;
    size_t keylen;
    unsigned char key[KEY_MAX];
};

struct flow {
    struct sk_io io; /* the socket connected to TARGET */
    struct sk_addr client;
    int listen_fd;
    bool answered; /* TARGET sent something back */
    bool refused;  /* TARGET refused: the next datagram makes a new flow */
    uint64_t last_active;
    struct sk_hold hold;
    struct flow *next;     /* in its bucket */
    struct lru_node all;   /* in the table's answered or unanswered list */
    struct lru_node mine;  /* in its source's list */
    struct source *source; /* NULL while the flow is being made */
    struct flow_table *table;
    size_t listener; /* the index of the listener it came to */
    size_t target;   /* the index of its TARGET */
};

#define FLOW_OF(node, field)                                                   \
    ((struct flow *)((char *)(node)-offsetof(struct flow, field)))

/* What -v reports once a period. */
struct flow_stats {
    unsigned long full, source; /* flows evicted to make room */
    unsigned long oversized;    /* replies dropped */
    size_t largest;
    size_t target; /* of the last one dropped */
    uint64_t last_log;
};

/* A worker's flows, found by client address. */
struct flow_table {
    struct flow **buckets;
    struct source **sources;
    size_t mask; /* buckets - 1; as many buckets for sources */
    size_t count;
    struct lru unanswered, answered;
    struct sk_timer sweep;
    struct flow_stats stats;
    struct relay *relay;
};

static __thread struct flow_table *flows;

static size_t put(unsigned char *out, size_t n, const void *p, size_t len)
{
    memcpy(out + n, p, len);
    return n + len;
}

/* The bytes naming a sender, the port included when with_port. */
static size_t addr_key(const struct sk_addr *a, bool with_port,
                       unsigned char *out)
{
    sa_family_t family = a->u.sa.sa_family;
    size_t n = put(out, 0, &family, sizeof(family)), path;

    if (family == AF_INET) {
        n = put(out, n, &a->u.in.sin_addr, sizeof(a->u.in.sin_addr));
        if (with_port)
            n = put(out, n, &a->u.in.sin_port, sizeof(a->u.in.sin_port));
    } else if (family == AF_INET6) {
        /* One source is a /64, as one host commonly holds all of it; an
         * IPv4 client of a dual-stack socket is its whole address. */
        bool whole = with_port || IN6_IS_ADDR_V4MAPPED(&a->u.in6.sin6_addr);
        n = put(out, n, &a->u.in6.sin6_addr,
                whole ? sizeof(a->u.in6.sin6_addr) : 8);
        n = put(out, n, &a->u.in6.sin6_scope_id,
                sizeof(a->u.in6.sin6_scope_id));
        if (with_port)
            n = put(out, n, &a->u.in6.sin6_port, sizeof(a->u.in6.sin6_port));
    } else {
        /* A UNIX sender: the path is the source (an abstract name from its
         * leading NUL). */
        path = a->len > n ? a->len - n : 0;
        if (path > sizeof(a->u.un.sun_path))
            path = sizeof(a->u.un.sun_path);
        n = put(out, n, a->u.un.sun_path, path);
    }
    return n;
}

static size_t key_slot(const struct flow_table *t, const unsigned char *key,
                       size_t len)
{
    return (size_t)sk__siphash13(t->relay->seed, key, len) & t->mask;
}

static struct flow **flow_slot(struct flow_table *t, const struct sk_addr *a)
{
    unsigned char key[KEY_MAX];
    size_t len = addr_key(a, true, key);

    return &t->buckets[key_slot(t, key, len)];
}

static bool same_sender(const struct sk_addr *a, const struct sk_addr *b)
{
    unsigned char ka[KEY_MAX], kb[KEY_MAX];
    size_t la = addr_key(a, true, ka), lb = addr_key(b, true, kb);

    return la == lb && memcmp(ka, kb, la) == 0;
}

static struct flow *flow_find(struct flow_table *t, const struct sk_addr *a)
{
    struct flow *f = *flow_slot(t, a);

    while (f != NULL && !same_sender(&f->client, a))
        f = f->next;
    return f;
}

/* The source of address a; made when create (NULL if out of memory). */
static struct source *source_get(struct flow_table *t, const struct sk_addr *a,
                                 bool create)
{
    unsigned char key[KEY_MAX];
    size_t len = addr_key(a, false, key);
    struct source **slot = &t->sources[key_slot(t, key, len)], *s;

    for (s = *slot; s != NULL; s = s->next)
        if (s->keylen == len && memcmp(s->key, key, len) == 0)
            return s;
    if (!create || (s = calloc(1, sizeof(*s))) == NULL)
        return NULL;
    memcpy(s->key, key, len);
    s->keylen = len;
    s->next = *slot;
    *slot = s;
    return s;
}

static void source_forget(struct flow_table *t, struct source *s)
{
    struct source **p = &t->sources[key_slot(t, s->key, s->keylen)];

    while (*p != s)
        p = &(*p)->next;
    *p = s->next;
    free(s);
}

static struct lru *flow_list(struct flow *f)
{
    return f->answered ? &f->table->answered : &f->table->unanswered;
}

/* Marks f as its source's most recently used flow. */
static void source_touch(struct flow *f)
{
    lru_unlink(&f->source->flows, &f->mine);
    lru_push(&f->source->flows, &f->mine);
}

/* Marks f as the most recently used flow of its lists. A flow TARGET never
 * answered keeps its place (and its age) whatever its client sends, so
 * that its short life counts from its creation. */
static void flow_touch(struct flow *f, uint64_t now)
{
    source_touch(f);
    if (!f->answered)
        return;
    f->last_active = now;
    lru_unlink(flow_list(f), &f->all);
    lru_push(flow_list(f), &f->all);
}

static void flow_free(struct flow *f)
{
    struct flow_table *t = f->table;
    struct flow **p = flow_slot(t, &f->client);

    while (*p != f)
        p = &(*p)->next;
    *p = f->next;
    lru_unlink(flow_list(f), &f->all);
    lru_unlink(&f->source->flows, &f->mine);
    if (--f->source->count == 0)
        source_forget(t, f->source);
    sk_io_stop(&f->io);
    close(f->io.fd);
    sk_hold_release(&f->hold);
    free(f);
    t->count--;
}

/* --------------------------------------------------------- the log */

/* Flows evicted and replies dropped, as warnings: at most one line of
 * each per LOG_PERIOD_MS and worker (then forced, at the end). */
static void stats_log(struct flow_table *t, uint64_t now, bool force)
{
    struct flow_stats *s = &t->stats;
    const struct relay *r = t->relay;
    struct sk_log_record rec = {.event = "flows", .warning = true};

    if (s->full + s->source + s->oversized == 0)
        return;
    if (!force && now - s->last_log < LOG_PERIOD_MS)
        return;
    if (s->full + s->source > 0)
        cli_log_event(&rec,
                      "relay: evicted %lu datagram flow%s (%lu at the limit "
                      "of %zu per worker, %lu at the limit of %zu per "
                      "source address)",
                      s->full + s->source, s->full + s->source == 1 ? "" : "s",
                      s->full, r->flow_max, s->source, r->flow_source_max);
    if (s->oversized > 0) {
        cli_log_event(&rec,
                      "relay: dropped %lu repl%s from %s longer than %d "
                      "bytes (the largest: %zu bytes)",
                      s->oversized, s->oversized == 1 ? "y" : "ies",
                      r->targets[s->target].name, SK_DGRAM_MAX, s->largest);
    }
    *s = (struct flow_stats){.last_log = now};
}

static void flow_evict(struct flow *f, unsigned long *counter)
{
    struct flow_table *t = f->table;

    (*counter)++;
    relay_count_drop(f->listener, counter == &t->stats.source
                                      ? RELAY_DROP_SOURCE_LIMIT
                                      : RELAY_DROP_TABLE_FULL);
    flow_free(f);
    stats_log(t, sk_loop_now(t->sweep.loop), false);
}

/* ----------------------------------------------------- table life */

/* A worker without flows keeps no table and no sweep timer. */
static void table_drop_if_empty(struct flow_table *t)
{
    if (t->count > 0)
        return;
    stats_log(t, sk_loop_now(t->sweep.loop), true);
    sk_timer_stop(&t->sweep);
    free(t->buckets);
    free(t->sources);
    free(t);
    flows = NULL;
}

static void expire(struct lru *l, uint64_t now, uint64_t life)
{
    while (l->oldest != NULL &&
           now - FLOW_OF(l->oldest, all)->last_active >= life)
        flow_free(FLOW_OF(l->oldest, all));
}

static void on_sweep(struct sk_timer *timer)
{
    struct flow_table *t = timer->data;
    const struct relay *r = t->relay;
    uint64_t now = sk_loop_now(timer->loop);

    expire(&t->unanswered, now, r->unanswered_ms);
    if (r->idle_ms > 0)
        expire(&t->answered, now, r->idle_ms);
    stats_log(t, now, false);
    table_drop_if_empty(t);
}

static struct flow_table *table_new(struct sk_loop *loop, struct relay *r)
{
    struct flow_table *t = calloc(1, sizeof(*t));
    uint64_t tick = r->unanswered_ms / 4;
    size_t n = 1;

    while (n < r->flow_max)
        n *= 2;
    if (t == NULL || (t->buckets = calloc(n, sizeof(*t->buckets))) == NULL ||
        (t->sources = calloc(n, sizeof(*t->sources))) == NULL)
        goto fail;
    t->mask = n - 1;
    t->relay = r;
    sk_timer_init(&t->sweep, on_sweep);
    t->sweep.data = t;
    tick = tick < 10 ? 10 : tick > 1000 ? 1000 : tick;
    if (sk_timer_start(loop, &t->sweep, tick, tick) < 0)
        goto fail;
    return t;
fail:
    if (t != NULL) {
        free(t->buckets);
        free(t->sources);
    }
    free(t);
    return NULL;
}

static void on_flow_cancel(struct sk_hold *hold)
{
    struct flow *f = hold->data;
    struct flow_table *t = f->table;

    flow_free(f);
    table_drop_if_empty(t);
}

/* ------------------------------------------------------------ flows */

/* Replies from TARGET go back to the client through the listening socket.
 * A refusal from TARGET (no one there) is dropped like a lost datagram; a
 * reply longer than the relay carries is dropped whole, never cut. */
static void on_reply(struct sk_io *io, unsigned events)
{
    static __thread char buf[SK_DGRAM_MAX];
    struct flow *f = io->data;
    struct flow_table *t = f->table;
    ssize_t n;

    for (int i = 0; i < FLOW_BATCH; i++) {
        n = recv(io->fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_TRUNC);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n < 0) {
            /* an ICMP error, now consumed: no one there, for new flows */
            if (errno == ECONNREFUSED) {
                relay_target_failed(t->relay, f->target, -ECONNREFUSED, NULL);
                f->refused = true;
            }
            continue;
        }
        if ((size_t)n > sizeof(buf)) {
            relay_count_drop(f->listener, RELAY_DROP_OVERSIZED);
            t->stats.oversized++;
            t->stats.target = f->target;
            if ((size_t)n > t->stats.largest)
                t->stats.largest = (size_t)n;
            stats_log(t, sk_loop_now(io->loop), false);
            continue;
        }
        relay_target_worked(t->relay, f->target);
        if (!f->answered) {
            lru_unlink(&t->unanswered, &f->all);
            f->answered = true;
            lru_push(&t->answered, &f->all);
        }
        flow_touch(f, sk_loop_now(io->loop));
        if (sendto(f->listen_fd, buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL,
                   &f->client.u.sa, f->client.len) >= 0)
            relay_count(f->target, RELAY_BYTES_RECEIVED, (uint64_t)n);
    }
}

/* The flow to give up for a new one: the oldest of those TARGET never
 * answered, else the oldest of all. */
static struct flow *table_oldest(struct flow_table *t)
{
    struct lru *l =
        t->unanswered.oldest != NULL ? &t->unanswered : &t->answered;

    return l->oldest != NULL ? FLOW_OF(l->oldest, all) : NULL;
}

/* Evicts a flow when the sender's source or the table is at its limit. */
static void make_room(struct flow_table *t, const struct sk_addr *peer)
{
    struct source *s = source_get(t, peer, false);

    if (s != NULL && s->count >= t->relay->flow_source_max)
        flow_evict(FLOW_OF(s->flows.oldest, mine), &t->stats.source);
    else if (t->count >= t->relay->flow_max)
        flow_evict(table_oldest(t), &t->stats.full);
}

/* A socket connected to target i, or a negative errno. Out of
 * descriptors, the oldest flow gives up its own. */
static int connect_one(struct flow_table *t, size_t i)
{
    struct sk_addr addrs[SK_CONNECT_ADDRS];
    int fd = relay_addrs_now(t->relay, i, addrs);

    for (int tries = 0; fd >= 0 && tries < 2; tries++) {
        /* A datagram socket connects at once. */
        fd = sk_connect_addrs(addrs, (size_t)fd, SOCK_DGRAM, 0, 0);
        if ((fd != -EMFILE && fd != -ENFILE) || t->count == 0)
            return fd;
        flow_evict(table_oldest(t), &t->stats.full);
    }
    return fd;
}

/* A socket connected to the first target of a new plan that takes one
 * (*target its index), or a negative errno. */
static int target_socket(struct flow_table *t, size_t *target)
{
    struct relay_plan plan;
    int fd = -ECONNREFUSED, i;

    relay_plan_make(t->relay, &plan);
    while ((i = relay_plan_next(&plan)) >= 0) {
        if ((fd = connect_one(t, (size_t)i)) >= 0) {
            *target = (size_t)i;
            return fd;
        }
        if (fd == -EMFILE || fd == -ENFILE)
            return fd; /* not the target's doing */
        relay_target_failed(t->relay, (size_t)i, fd, NULL);
    }
    return fd;
}

/* A new flow for the sender of d, or NULL (the datagram is dropped). */
static struct flow *flow_new(struct sk_dgram *d, struct flow_table *t)
{
    const struct sk_addr *peer = sk_dgram_peer(d);
    struct flow *f;
    size_t target = 0;
    int fd;

    if (peer->len <= sizeof(sa_family_t))
        return NULL; /* an unnamed sender cannot be answered */
    make_room(t, peer);
    if ((fd = target_socket(t, &target)) < 0)
        return NULL;
    f = calloc(1, sizeof(*f));
    if (f == NULL || (f->source = source_get(t, peer, true)) == NULL ||
        sk_io_start(sk_dgram_loop(d), &f->io, fd, SK_READ, false, on_reply) <
            0) {
        if (f != NULL && f->source != NULL && f->source->count == 0)
            source_forget(t, f->source);
        free(f);
        close(fd);
        return NULL;
    }
    f->io.data = f;
    f->client = *peer;
    f->last_active = sk_loop_now(sk_dgram_loop(d));
    f->listen_fd = sk_dgram_fd(d);
    f->listener = relay_listener_index(sk_dgram_local(d));
    f->target = target;
    relay_count(target, RELAY_CONNECTS, 1);
    f->table = t;
    f->hold.data = f;
    sk_dgram_hold(d, &f->hold, on_flow_cancel);
    f->next = *flow_slot(t, peer);
    *flow_slot(t, peer) = f;
    lru_push(&t->unanswered, &f->all);
    lru_push(&f->source->flows, &f->mine);
    f->source->count++;
    t->count++;
    return f;
}

/* Sends to TARGET; false when the flow's socket has no TARGET any more
 * (a datagram lost to a full queue is lost, as the network may lose it). */
static bool flow_send(struct flow *f, const char *data, size_t len)
{
    int err;

    if (send(f->io.fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0) {
        relay_count(f->target, RELAY_BYTES_SENT, len);
        return true;
    }
    err = errno;
    if (err != ECONNREFUSED && err != ECONNRESET && err != ENOTCONN)
        return true;
    relay_target_failed(f->table->relay, f->target, -err, NULL);
    return false;
}

void relay_flow_datagram(struct sk_dgram *d, const char *data, size_t len)
{
    struct relay *r = sk_server_data(sk_dgram_server(d));
    struct flow *f;

    if (flows == NULL && (flows = table_new(sk_dgram_loop(d), r)) == NULL)
        return;
    f = flow_find(flows, sk_dgram_peer(d));
    if (f != NULL && f->refused) {
        flow_free(f); /* its successor goes to a target up, if any */
        f = NULL;
    }
    if (f == NULL && (f = flow_new(d, flows)) == NULL) {
        table_drop_if_empty(flows);
        return;
    }
    flow_touch(f, sk_loop_now(sk_dgram_loop(d)));
    if (!flow_send(f, data, len)) {
        /* TARGET went away (a unixgram server restarted, say): the flow's
         * socket is connected to nothing now. A new one (to the next
         * target up), once. */
        flow_free(f);
        if ((f = flow_new(d, flows)) != NULL && !flow_send(f, data, len))
            flow_free(f);
        table_drop_if_empty(flows);
    }
}

/* ------------------------------------------------------------ setup */

int relay_flow_setup(struct relay *r, unsigned workers, unsigned long budget)
{
    size_t max = budget / (workers > 0 ? workers : 1);

    max = max > FLOW_LIMIT ? FLOW_LIMIT : max < 1 ? 1 : max;
    r->flow_max = max;
    r->flow_source_max =
        max / FLOW_SOURCE_SHARE > 0 ? max / FLOW_SOURCE_SHARE : 1;
    r->unanswered_ms = r->idle_ms > 0 && r->idle_ms < FLOW_UNANSWERED_MS
                           ? r->idle_ms
                           : FLOW_UNANSWERED_MS;
    if (getrandom(r->seed, sizeof(r->seed), 0) != sizeof(r->seed)) {
        cli_error("relay: getrandom: %s", strerror(errno));
        return -1;
    }
    if (cli_verbose)
        fprintf(stderr,
                "sockit: relay: at most %zu datagram flows per worker, %zu "
                "per source address\n",
                r->flow_max, r->flow_source_max);
    return 0;
}
