/* worker.c -- one worker thread: its loop, its acceptors and datagram
 * sockets, the work done before each wait (flush output, free closed
 * connections), the graceful stop; and sk_server_run(), which starts the
 * workers and waits for them. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "sources.h"

/* Rounds of flushing before each wait; see before_wait(). */

/* ----------------------------------------------------------- accepting */

static void on_acceptable(struct sk_io *io, unsigned events);

/* Stops accepting for retry_ms. Without a timer to resume it (no memory),
 * a pause at max_active waits for a close on this worker, and a pause for
 * descriptors does not happen: spinning beats never accepting. */
static void pause_accepting(struct sk_worker *w, uint64_t retry_ms)
{
    struct sk_log_record r = {.event = "error"};

    if (sk_timer_start(w->loop, &w->retry_timer, retry_ms, 0) < 0) {
        if (sk__server_warn_due(w->srv, SK_WARN_ERROR, &r))
            sk__server_emit(w->srv, &r, "accept: cannot pause: %s",
                            sk_strerror(-ENOMEM));
        if (!w->accept_full)
            return;
    }
    for (size_t i = 0; i < w->nacceptors; i++) {
        sk_io_stop(&w->acceptors[i].io);
        w->acceptors[i].paused = true;
    }
}

/* Watches the listener; a socket shared by the workers wakes one of them
 * per connection (EPOLLEXCLUSIVE), not all. */
static int acceptor_start(struct sk_acceptor *a, int fd)
{
    bool shared = a->l->nfds == 1 && a->w->srv->nworkers > 1;

    a->io.data = a;
    return sk_io_start(a->w->loop, &a->io, fd, SK_READ, shared, on_acceptable);
}

static void resume_accepting(struct sk_worker *w)
{
    sk_timer_stop(&w->retry_timer);
    w->accept_full = false;
    for (size_t i = 0; i < w->nacceptors; i++) {
        struct sk_acceptor *a = &w->acceptors[i];
        if (a->paused && acceptor_start(a, a->io.fd) == 0)
            a->paused = false;
    }
}

/* True when max_active connections are open: further clients wait in the
 * kernel's backlog until one closes. */
static bool at_active_limit(struct sk_server *srv)
{
    unsigned max = srv->cfg.max_active;

    return max > 0 && atomic_load(&srv->nconns) >= max;
}

/* Connections may close on any worker: a worker paused at max_active
 * looks again this often, and at once when one of its own closes. */
#define ACTIVE_RETRY_MS 20

static void on_retry(struct sk_timer *t)
{
    struct sk_worker *w = t->data;

    if (w->draining || w->unlistened)
        return;
    if (w->accept_full && at_active_limit(w->srv)) {
        pause_accepting(w, ACTIVE_RETRY_MS);
        return;
    }
    resume_accepting(w);
}

void sk__worker_conn_freed(struct sk_worker *w)
{
    if (w->accept_full && !w->draining && !at_active_limit(w->srv))
        resume_accepting(w);
}

/* Counts the connection about to be accepted, before the accept, so that
 * workers accepting at once never pass max_active together: the count
 * with it, or 0 at max_active. Without max_active, UINT_MAX: counted
 * after the accept (a reservation whose accept finds nothing would take
 * another worker's client past max_conns). */
static unsigned reserve(struct sk_server *srv)
{
    unsigned max = srv->cfg.max_active, n = atomic_load(&srv->nconns);

    if (max == 0)
        return UINT_MAX;
    do {
        if (max > 0 && n >= max)
            return 0;
    } while (!atomic_compare_exchange_weak(&srv->nconns, &n, n + 1));
    return n + 1;
}

/* Serves the connection counted as the count-th, or closes it at once
 * past max_conns. */
static void take(struct sk_acceptor *a, int fd, const struct sk_addr *peer,
                 unsigned count)
{
    struct sk_server *srv = a->w->srv;

    /* Listening stopped (by a connection just taken, or on another thread
     * while this one was accepted): closed, as the backlog is. */
    if (atomic_load(&srv->unlisten)) {
        atomic_fetch_sub(&srv->nconns, 1);
        close(fd);
        return;
    }
    if (srv->cfg.max_conns > 0 && count > srv->cfg.max_conns) {
        atomic_fetch_sub(&srv->nconns, 1);
        sk__count(a->w, a->l, SK_STAT_REFUSED_LIMIT);
        sk__warn_limit(a, peer);
        close(fd);
        return;
    }
    sk__sock_set_nodelay(fd, a->l->family);
    if (sk__conn_accept(a->w, a->l, fd, peer) < 0) {
        atomic_fetch_sub(&srv->nconns, 1);
        close(fd);
    }
}

static void on_acceptable(struct sk_io *io, unsigned events)
{
    struct sk_acceptor *a = io->data;
    struct sk_addr peer;
    int fd;

    (void)events;
    for (int i = 0; i < SK_ACCEPT_BATCH; i++) {
        unsigned count = reserve(a->w->srv);
        if (count == 0) {
            a->w->accept_full = true;
            sk__count(a->w, a->l, SK_STAT_ACCEPT_PAUSES);
            pause_accepting(a->w, ACTIVE_RETRY_MS);
            return;
        }
        peer.len = sizeof(peer.u);
        fd = accept4(io->fd, &peer.u.sa, &peer.len,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            a->w->accept_short = false;
            if (count == UINT_MAX) /* not reserved: counted now */
                count = atomic_fetch_add(&a->w->srv->nconns, 1) + 1;
            take(a, fd, &peer, count);
            continue;
        }
        if (count != UINT_MAX) /* nothing was accepted */
            atomic_fetch_sub(&a->w->srv->nconns, 1);
        if (errno == EAGAIN || errno == EINTR)
            return;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
            errno == ENOMEM) {
            /* The connection stays queued; retrying now would spin. The
             * retries of one shortage are one pause. */
            if (!a->w->accept_short) {
                sk__count(a->w, a->l, SK_STAT_FD_LIMIT);
                sk__count(a->w, a->l, SK_STAT_ACCEPT_PAUSES);
                a->w->accept_short = true;
            }
            sk__warn_accept(a, -errno);
            pause_accepting(a->w, SK_ACCEPT_RETRY_MS);
            return;
        }
        /* A connection that died in the queue: go on with the next. */
    }
}

/* ------------------------------------------------------------ the loop */

/* Connections the kernel completed but nobody accepted would be reset when
 * the listener closes: accept them and close them cleanly instead. */
static void close_backlog(struct sk_acceptor *a)
{
    int fd;

    for (int i = 0; i < SK_BACKLOG_SWEEP; i++) {
        fd = accept4(a->io.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            break;
        close(fd);
    }
}

/* The listener leaves LISTEN: a new client is refused at once instead of
 * waiting in a backlog nobody accepts from. A TCP socket would reset its
 * queue: it is closed first; a UNIX one shut down still gives its queue
 * to accept, and no client can slip in after. An inherited socket is its
 * parent's too (systemd keeps it): its clients wait, it stays listening. */
static void leave_listen(struct sk_acceptor *a)
{
    bool unix_socket = a->l->family == AF_UNIX;

    if (a->l->inherited)
        return;
    if (!unix_socket)
        close_backlog(a);
    shutdown(a->io.fd, SHUT_RDWR);
    if (unix_socket)
        close_backlog(a);
}

static void begin_drain(struct sk_worker *w)
{
    w->draining = true;
    sk_timer_stop(&w->retry_timer);
    for (size_t i = 0; i < w->nacceptors; i++) {
        sk_io_stop(&w->acceptors[i].io);
        leave_listen(&w->acceptors[i]);
    }
    for (size_t i = 0; i < w->ndsocks; i++)
        sk_io_stop(&w->dsocks[i].io);
    sk__conn_drain_all(w);
}

/* sk_server_stop_listening(): this worker stops watching its listeners;
 * its own sockets leave LISTEN at once, a shared one once the last worker
 * stopped watching it (the counter orders the removals before it), so
 * that no loop wakes for a socket shut down under it. */
static void stop_listening(struct sk_worker *w)
{
    struct sk_server *srv = w->srv;
    bool last;

    w->unlistened = true;
    w->accept_full = false;
    sk_timer_stop(&w->retry_timer);
    for (size_t i = 0; i < w->nacceptors; i++)
        sk_io_stop(&w->acceptors[i].io);
    last = atomic_fetch_add(&srv->nunlistened, 1) + 1 == srv->nworkers;
    for (size_t i = 0; i < w->nacceptors; i++) {
        struct sk_acceptor *a = &w->acceptors[i];
        if (last || a->l->nfds > 1) /* its own socket, or the last */
            leave_listen(a);
    }
}

/* Runs before each wait: apply a stop request, send queued output, free
 * closed connections (whose on_close may queue output for others). */
static void before_wait(void *arg)
{
    struct sk_worker *w = arg;
    int level = atomic_load(&w->srv->stop_level);

    if (level >= 1 && !w->draining)
        begin_drain(w);
    else if (!w->draining && !w->unlistened && atomic_load(&w->srv->unlisten))
        stop_listening(w);
    if (level >= 2) {
        sk__conn_abort_all(w);
        sk__hold_cancel_all(w);
    }
    sk__conn_flush_all(w);
    if (w->draining && w->nconns == 0 && w->holds == NULL)
        sk_loop_stop(w->loop);
}

static void on_worker_wake(void *arg)
{
    (void)arg; /* before_wait() reads the stop level */
}

static void on_idle_tick(struct sk_timer *t)
{
    sk__conn_expire_idle(t->data);
}

static void on_start_tick(struct sk_timer *t)
{
    sk__conn_expire_starting(t->data);
}

/* Ticks often enough that a connection lives at most 25% past its idle
 * timeout, and at least once a second. */
static uint64_t idle_period(unsigned idle_ms)
{
    uint64_t p = idle_ms / 4;

    return p < 10 ? 10 : p > 1000 ? 1000 : p;
}

static int add_listener(struct sk_worker *w, size_t index,
                        struct sk_listener *l)
{
    bool shared = l->nfds == 1 && w->srv->nworkers > 1;
    int fd = l->nfds > 1 ? l->fds[index] : l->fds[0];

    if (l->socktype == SOCK_DGRAM) {
        /* One reader for a shared datagram socket (UNIX): several would
         * answer one client's datagrams out of order. */
        if (shared && index > 0)
            return 0;
        struct sk_dsock *s = &w->dsocks[w->ndsocks++];
        s->w = w;
        s->l = l;
        return sk__dgram_start(w, s, fd);
    }
    struct sk_acceptor *a = &w->acceptors[w->nacceptors++];
    a->w = w;
    a->l = l;
    return acceptor_start(a, fd);
}

/* Whether connections may wait for a TLS handshake or a PROXY header. */
static bool server_has_starts(const struct sk_server *srv)
{
    for (size_t i = 0; i < srv->nlisteners; i++)
        if (srv->listeners[i].tls != NULL ||
            srv->listeners[i].ep.proxy != SK_PROXY_NONE)
            return true;
    return false;
}

/* The worker's loop on the configured backend; the first worker that
 * could not have io_uring says so (under -v), once: the workers before it
 * (made one after another, on this thread) had it, or there are none. */
static int worker_loop_new(struct sk_server *srv, struct sk_worker *w,
                           size_t index)
{
    int why, err = sk_loop_new_backend(&w->loop, srv->cfg.backend, &why);

    if (err == 0 && why < 0 &&
        (index == 0 ||
         sk_loop_backend(srv->workers[index - 1].loop) == SK_BACKEND_IO_URING))
        sk__server_log(srv, "io_uring not available (%s): using epoll",
                       sk_strerror(why));
    return err;
}

static int worker_init(struct sk_server *srv, struct sk_worker *w, size_t index)
{
    int err;

    w->srv = srv;
    w->counters = atomic_load_explicit(&srv->counters, memory_order_relaxed) +
                  index * srv->nlisteners;
    sk__link_init(&w->pending);
    sk__link_init(&w->starting);
    if ((err = worker_loop_new(srv, w, index)) < 0)
        return err;
    sk__loop_set_home(w->loop, w);
    sk_loop_set_prepare(w->loop, before_wait, w);
    sk_loop_set_wake(w->loop, on_worker_wake, w);
    sk_timer_init(&w->idle_timer, on_idle_tick);
    sk_timer_init(&w->retry_timer, on_retry);
    sk_timer_init(&w->start_timer, on_start_tick);
    w->start_timer.data = w;
    w->idle_timer.data = w;
    w->retry_timer.data = w;
    w->rbuf = malloc(SK_READ_CHUNK);
    w->acceptors = calloc(srv->nlisteners, sizeof(*w->acceptors));
    w->dsocks = calloc(srv->nlisteners, sizeof(*w->dsocks));
    if (w->rbuf == NULL || w->acceptors == NULL || w->dsocks == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < srv->nlisteners; i++)
        if ((err = add_listener(w, index, &srv->listeners[i])) < 0)
            return err;
    if (server_has_starts(srv)) {
        unsigned hs = srv->cfg.handshake_timeout_ms;
        uint64_t p = idle_period(hs > 0 ? hs : SK_START_TIMEOUT_MS);
        if ((err = sk_timer_start(w->loop, &w->start_timer, p, p)) < 0)
            return err;
    }
    if (srv->cfg.idle_timeout_ms > 0) {
        uint64_t p = idle_period(srv->cfg.idle_timeout_ms);
        return sk_timer_start(w->loop, &w->idle_timer, p, p);
    }
    return 0;
}

static void worker_release(struct sk_worker *w)
{
    if (w->loop != NULL) {
        sk__conn_abort_all(w);
        sk__hold_cancel_all(w);
        sk__conn_free_closed(w);
        for (size_t i = 0; i < w->nacceptors; i++)
            sk_io_stop(&w->acceptors[i].io);
        for (size_t i = 0; i < w->ndsocks; i++)
            sk_io_stop(&w->dsocks[i].io);
        sk_timer_stop(&w->idle_timer);
        sk_timer_stop(&w->retry_timer);
        sk_timer_stop(&w->start_timer);
        sk_loop_free(w->loop);
    }
    sk__dgram_free_batch(w);
    free(w->rbuf);
    free(w->acceptors);
    free(w->dsocks);
    *w = (struct sk_worker){0};
}

static void *worker_main(void *arg)
{
    struct sk_worker *w = arg;
    const struct sk_server_config *cfg = &w->srv->cfg;
    unsigned index = (unsigned)(w - w->srv->workers);
    int err;

    if (cfg->thread_start != NULL)
        cfg->thread_start(cfg->data, index);
    pthread_mutex_lock(&w->srv->start_lock);
    w->srv->nrunning++;
    pthread_cond_signal(&w->srv->start_cond);
    pthread_mutex_unlock(&w->srv->start_lock);
    if ((err = sk_loop_run(w->loop)) < 0) {
        struct sk_log_record r = {.event = "error", .reason = sk_strerror(err)};
        if (sk__server_warn_due(w->srv, SK_WARN_ERROR, &r))
            sk__server_emit(w->srv, &r, "worker loop: %s", r.reason);
    }
    /* What the deadline cut short is closed here, on the worker's thread. */
    sk__conn_abort_all(w);
    sk__hold_cancel_all(w);
    sk__conn_free_closed(w);
    if (cfg->thread_end != NULL)
        cfg->thread_end(cfg->data, index);
    atomic_fetch_add(&w->srv->nfinished, 1);
    sk_loop_wake(w->srv->control);
    return NULL;
}

/* The per-source table lives while the workers run; the counters (made
 * as the run begins, stats.c) until the server is freed. */
static int shared_state_new(struct sk_server *srv)
{
    if (srv->cfg.max_per_source > 0 &&
        (srv->sources = sk__sources_new()) == NULL)
        return -ENOMEM;
    return 0;
}

static void shared_state_free(struct sk_server *srv)
{
    sk__sources_free(srv->sources);
    srv->sources = NULL;
}

static void stop_workers(struct sk_server *srv, unsigned started)
{
    atomic_store(&srv->stop_level, 2);
    for (unsigned i = 0; i < started; i++)
        sk_loop_wake(srv->workers[i].loop);
    for (unsigned i = 0; i < started; i++)
        pthread_join(srv->workers[i].thread, NULL);
    for (unsigned i = 0; i < srv->nworkers; i++)
        worker_release(&srv->workers[i]);
    free(srv->workers);
    srv->workers = NULL;
    shared_state_free(srv);
}

/* Starts every worker; on failure stops those that started. */
static int run_begin(struct sk_server *srv)
{
    unsigned started = 0;
    int err = 0, state = 0;

    if (srv->nlisteners == 0)
        return -EDESTADDRREQ;
    if (!atomic_compare_exchange_strong(&srv->run_state, &state, 1))
        return state == 1 ? -EBUSY : -EALREADY;
    srv->workers = calloc(srv->nworkers, sizeof(*srv->workers));
    if (srv->workers == NULL || sk__server_counters_new(srv) < 0 ||
        shared_state_new(srv) < 0) {
        free(srv->workers);
        srv->workers = NULL;
        shared_state_free(srv);
        atomic_store(&srv->run_state, 2);
        return -ENOMEM;
    }
    for (unsigned i = 0; i < srv->nworkers && err == 0; i++)
        err = worker_init(srv, &srv->workers[i], i);
    while (err == 0 && started < srv->nworkers) {
        err = -pthread_create(&srv->workers[started].thread, NULL, worker_main,
                              &srv->workers[started]);
        if (err == 0)
            started++;
    }
    srv->nstarted = started;
    if (err < 0) {
        stop_workers(srv, started);
        atomic_store(&srv->run_state, 2);
        return err;
    }
    /* Ready means every worker runs, its thread_start hook done. */
    pthread_mutex_lock(&srv->start_lock);
    while (srv->nrunning < started)
        pthread_cond_wait(&srv->start_cond, &srv->start_lock);
    pthread_mutex_unlock(&srv->start_lock);
    /* A stop that came before the run is seen on the first wake-up, once
     * the control loop's clock is fresh. */
    sk_loop_wake(srv->control);
    return 0;
}

static void announce_ready(struct sk_server *srv)
{
    if (srv->cfg.ready != NULL)
        srv->cfg.ready(srv->cfg.data);
    sk__notify(srv, "READY=1");
}

/* The control loop until the stop, then the workers' end. */
static int run_control(struct sk_server *srv)
{
    int err = sk_loop_run(srv->control);

    stop_workers(srv, srv->nstarted);
    atomic_store(&srv->run_state, 2);
    return err;
}

int sk_server_run(struct sk_server *srv)
{
    int err = run_begin(srv);

    if (err < 0)
        return err;
    announce_ready(srv);
    return run_control(srv);
}

static void *control_main(void *arg)
{
    struct sk_server *srv = arg;

    srv->result = run_control(srv);
    return NULL;
}

int sk_server_start(struct sk_server *srv)
{
    int err = run_begin(srv);

    if (err < 0)
        return err;
    if ((err = -pthread_create(&srv->control_thread, NULL, control_main, srv)) <
        0) {
        stop_workers(srv, srv->nstarted); /* at once: nothing to join */
        atomic_store(&srv->run_state, 2);
        return err;
    }
    atomic_store(&srv->joinable, true);
    announce_ready(srv);
    return 0;
}

int sk_server_join(struct sk_server *srv)
{
    bool joinable = true;

    if (!atomic_compare_exchange_strong(&srv->joinable, &joinable, false))
        return -EINVAL;
    pthread_join(srv->control_thread, NULL);
    return srv->result;
}
