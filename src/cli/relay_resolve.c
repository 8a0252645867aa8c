/* relay_resolve.c -- host names of the relay's TARGETs, looked up again for
 * each new connection (or once per --resolve-every), on threads of the
 * resolver's own so that a worker's loop never waits for DNS: the client
 * waits, and the answer is posted to its worker's loop (sk_loop_post()).
 *
 * Ownership: a lookup is made by a worker and freed by that worker when
 * its answer arrives, whether or not its owner still wants it (a cancelled
 * one has owner NULL); every lookup is also on the resolver's list, so
 * that those whose answer was never delivered (the workers stopped) are
 * freed at the end. Posting happens under the resolver's lock, and not at
 * all once a worker has begun to end: the loops live until every worker
 * has ended. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "relay.h"

struct relay_lookup {
    struct relay_lookup *next_job;    /* in the queue */
    struct relay_lookup *prev, *next; /* in the list of every lookup */
    struct relay *r;
    size_t target;
    struct sk_loop *loop; /* NULL: a refresh for datagram flows */
    relay_lookup_fn fn;
    void *owner; /* NULL once cancelled; the loop's thread only */
    int n;
    struct sk_addr addrs[SK_CONNECT_ADDRS];
};

struct relay_resolver {
    pthread_mutex_t lock;
    pthread_cond_t work;
    struct relay_lookup *head, *tail; /* the queue */
    struct relay_lookup all;          /* sentinel of the list */
    bool quit, stopping;
    /* The loops of the workers that have ended (the lock held). */
    struct sk_loop **ended;
    size_t nended;
    unsigned nthreads;
    pthread_t threads[];
};

/* The loop this worker thread asks lookups for, NULL for none yet. */
static __thread struct sk_loop *thread_loop;

/* Whether t's latest answer is young enough to use (the lock held). */
static bool fresh(const struct relay *r, const struct relay_target *t)
{
    return !t->dns || (r->resolve_every_ms > 0 &&
                       cli_now_ms() - t->resolved_at < r->resolve_every_ms);
}

static int copy_latest(struct relay *r, size_t i, struct sk_addr *addrs)
{
    const struct relay_target *t = &r->targets[i];

    memcpy(addrs, t->addrs, t->naddrs * sizeof(*addrs));
    return (int)t->naddrs;
}

static void unlink_lookup(struct relay_lookup *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
}

/* Queues a lookup (the resolver's lock held). */
static void enqueue(struct relay_resolver *rv, struct relay_lookup *l)
{
    l->prev = &rv->all;
    l->next = rv->all.next;
    rv->all.next->prev = l;
    rv->all.next = l;
    l->next_job = NULL;
    if (rv->tail != NULL)
        rv->tail->next_job = l;
    else
        rv->head = l;
    rv->tail = l;
    pthread_cond_signal(&rv->work);
}

static struct relay_lookup *lookup_new(struct relay *r, size_t t,
                                       struct sk_loop *loop)
{
    struct relay_lookup *l = calloc(1, sizeof(*l));

    if (l != NULL) {
        l->r = r;
        l->target = t;
        l->loop = loop;
    }
    return l;
}

int relay_addrs(struct relay *r, size_t t, struct sk_loop *loop,
                struct sk_addr *addrs, relay_lookup_fn fn, void *owner,
                struct relay_lookup **lp)
{
    struct relay_resolver *rv = r->resolver;
    struct relay_lookup *l;
    int n = 0;

    pthread_mutex_lock(&r->lock);
    if (fresh(r, &r->targets[t]) || rv == NULL)
        n = copy_latest(r, t, addrs);
    pthread_mutex_unlock(&r->lock);
    if (n > 0)
        return n;
    if ((l = lookup_new(r, t, loop)) == NULL)
        return -ENOMEM;
    thread_loop = loop; /* the caller's: its worker's */
    l->fn = fn;
    l->owner = owner;
    *lp = l;
    pthread_mutex_lock(&rv->lock);
    enqueue(rv, l);
    pthread_mutex_unlock(&rv->lock);
    return 0;
}

int relay_addrs_now(struct relay *r, size_t t, struct sk_addr *addrs)
{
    struct relay_target *target = &r->targets[t];
    struct relay_lookup *l = NULL;
    int n;

    pthread_mutex_lock(&r->lock);
    n = copy_latest(r, t, addrs);
    if (r->resolver != NULL && !fresh(r, target) && !target->refreshing) {
        target->refreshing = true;
        l = lookup_new(r, t, NULL);
        target->refreshing = l != NULL;
    }
    pthread_mutex_unlock(&r->lock);
    if (l != NULL) {
        pthread_mutex_lock(&r->resolver->lock);
        enqueue(r->resolver, l);
        pthread_mutex_unlock(&r->resolver->lock);
    }
    return n > 0 ? n : -EHOSTUNREACH;
}

void relay_lookup_cancel(struct relay_lookup *l)
{
    l->owner = NULL;
}

/* ------------------------------------------------------------ threads */

/* On the worker's loop: the answer to its owner, if still wanted. */
static void deliver(void *arg)
{
    struct relay_lookup *l = arg;
    struct relay_resolver *rv = l->r->resolver;

    pthread_mutex_lock(&rv->lock);
    unlink_lookup(l);
    pthread_mutex_unlock(&rv->lock);
    if (l->owner != NULL)
        l->fn(l->owner, l->n, l->addrs);
    free(l);
}

/* Keeps a good answer as the target's latest. */
static void remember(struct relay_lookup *l)
{
    struct relay *r = l->r;
    struct relay_target *t = &r->targets[l->target];

    pthread_mutex_lock(&r->lock);
    if (l->n > 0) {
        memcpy(t->addrs, l->addrs, (size_t)l->n * sizeof(*l->addrs));
        t->naddrs = (size_t)l->n;
        t->resolved_at = cli_now_ms();
    }
    if (l->loop == NULL)
        t->refreshing = false;
    pthread_mutex_unlock(&r->lock);
}

static bool loop_ended(const struct relay_resolver *rv,
                       const struct sk_loop *loop)
{
    for (size_t i = 0; i < rv->nended; i++)
        if (rv->ended[i] == loop)
            return true;
    return false;
}

/* The answer of a lookup done: handed to its loop, or (a refresh, or its
 * worker ended) dropped here. The resolver's lock held. */
static void hand_over(struct relay_resolver *rv, struct relay_lookup *l)
{
    if (l->loop != NULL && !rv->stopping && !loop_ended(rv, l->loop) &&
        sk_loop_post(l->loop, deliver, l) == 0)
        return;
    if (l->loop == NULL) {
        unlink_lookup(l);
        free(l);
    }
    /* Else it waits on the list for relay_resolver_end(). */
}

static void *resolver_main(void *arg)
{
    struct relay_resolver *rv = arg;
    struct relay_lookup *l;

    pthread_mutex_lock(&rv->lock);
    for (;;) {
        while (rv->head == NULL && !rv->quit)
            pthread_cond_wait(&rv->work, &rv->lock);
        if (rv->quit)
            break;
        l = rv->head;
        rv->head = l->next_job;
        if (rv->head == NULL)
            rv->tail = NULL;
        pthread_mutex_unlock(&rv->lock);
        l->n = sk_endpoint_resolve(&l->r->targets[l->target].ep, false,
                                   l->addrs, SK_CONNECT_ADDRS);
        remember(l);
        pthread_mutex_lock(&rv->lock);
        hand_over(rv, l);
    }
    pthread_mutex_unlock(&rv->lock);
    return NULL;
}

int relay_resolver_start(struct relay *r, unsigned threads)
{
    struct relay_resolver *rv =
        calloc(1, sizeof(*rv) + threads * sizeof(rv->threads[0]));
    sigset_t all, old;
    int err = 0;

    if (rv == NULL) {
        cli_error("relay: out of memory");
        return -1;
    }
    pthread_mutex_init(&rv->lock, NULL);
    pthread_cond_init(&rv->work, NULL);
    rv->all.prev = rv->all.next = &rv->all;
    r->resolver = rv;
    /* Signals go to the loop that handles them, never to these threads. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    while (rv->nthreads < threads &&
           (err = pthread_create(&rv->threads[rv->nthreads], NULL,
                                 resolver_main, rv)) == 0)
        rv->nthreads++;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rv->nthreads == 0) {
        cli_error("relay: resolver thread: %s", strerror(err));
        return -1;
    }
    return 0;
}

void relay_resolver_thread_ended(struct relay *r)
{
    struct relay_resolver *rv = r->resolver;
    struct sk_loop **more;

    if (rv == NULL || thread_loop == NULL)
        return; /* this worker never asked */
    pthread_mutex_lock(&rv->lock);
    more = realloc(rv->ended, (rv->nended + 1) * sizeof(*more));
    if (more != NULL) {
        rv->ended = more;
        rv->ended[rv->nended++] = thread_loop;
    } else {
        rv->stopping = true; /* no answer to any loop rather than a lost one */
    }
    pthread_mutex_unlock(&rv->lock);
    thread_loop = NULL;
}

void relay_resolver_end(struct relay *r)
{
    struct relay_resolver *rv = r->resolver;

    if (rv == NULL)
        return;
    pthread_mutex_lock(&rv->lock);
    rv->quit = rv->stopping = true;
    pthread_cond_broadcast(&rv->work);
    pthread_mutex_unlock(&rv->lock);
    for (unsigned i = 0; i < rv->nthreads; i++)
        pthread_join(rv->threads[i], NULL);
    while (rv->all.next != &rv->all) {
        struct relay_lookup *l = rv->all.next;
        unlink_lookup(l);
        free(l);
    }
    pthread_cond_destroy(&rv->work);
    pthread_mutex_destroy(&rv->lock);
    free(rv->ended);
    free(rv);
    r->resolver = NULL;
}
