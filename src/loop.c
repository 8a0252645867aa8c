/* loop.c -- the event loop: fd watchers, timers on a binary heap, signals
 * through signalfd, and a cross-thread wake-up through an eventfd. The
 * system's poller is a struct backend, chosen when the loop is made:
 * loop_epoll.c or loop_uring.c, both included here. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* Events taken from the poller per wait; more simply wait for the next. */
#define LOOP_FIRED_MAX 256

/* The watcher flags. */
#define IO_ACTIVE 1u
#define IO_EXCLUSIVE 2u
/* The callback reads until the descriptor would block (the loop's own
 * eventfd and signalfd): a backend may report it edge-triggered. */
#define IO_DRAINS 4u

/* A call handed to the loop by sk_loop_post(). */
struct post {
    void (*fn)(void *);
    void *arg;
    struct post *next;
};

struct backend;

struct sk_loop {
    const struct backend *backend;
    int backend_fd;      /* loop_epoll.c */
    struct uring *uring; /* loop_uring.c */
    bool stopped;
    uint64_t now;
    struct {
        struct sk_io *io;
        unsigned events;
    } fired[LOOP_FIRED_MAX];
    int nfired;
    struct sk_timer **heap;
    size_t nheap, heap_cap;
    void (*prepare)(void *);
    void *prepare_arg;
    struct sk_io wake_io;
    void (*wake)(void *);
    void *wake_arg;
    struct sk_io signal_io;
    struct sk_signal *signals;
    sigset_t signal_mask;
    pthread_mutex_t post_lock;
    struct post *posts, **posts_tail; /* FIFO, under post_lock */
    struct sk_worker *home;           /* where its connections live */
    bool home_owned;                  /* made here for outbound connections */
};

/* A poller. wait takes up to timeout ms (-1: no limit), fills
 * loop->fired and returns the count or a negative errno (EINTR: zero);
 * every watcher started is reported level-triggered, except that one
 * flagged IO_DRAINS may be reported only when it becomes ready. */
struct backend {
    enum sk_backend id;
    int (*init)(struct sk_loop *loop);
    void (*free)(struct sk_loop *loop);
    int (*add)(struct sk_loop *loop, struct sk_io *io, bool exclusive);
    int (*modify)(struct sk_loop *loop, struct sk_io *io);
    void (*remove)(struct sk_loop *loop, struct sk_io *io);
    int (*wait)(struct sk_loop *loop, int timeout);
};

#include "loop_epoll.c"
#include "loop_uring.c"

uint64_t sk__clock_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Takes the posted calls, in order; NULL when there are none. */
static struct post *take_posts(struct sk_loop *loop)
{
    struct post *p;

    pthread_mutex_lock(&loop->post_lock);
    p = loop->posts;
    loop->posts = NULL;
    loop->posts_tail = &loop->posts;
    pthread_mutex_unlock(&loop->post_lock);
    return p;
}

int sk_loop_post(struct sk_loop *loop, void (*fn)(void *), void *arg)
{
    struct post *p = malloc(sizeof(*p));

    if (p == NULL)
        return -ENOMEM;
    *p = (struct post){fn, arg, NULL};
    pthread_mutex_lock(&loop->post_lock);
    *loop->posts_tail = p;
    loop->posts_tail = &p->next;
    pthread_mutex_unlock(&loop->post_lock);
    sk_loop_wake(loop);
    return 0;
}

static void on_wake(struct sk_io *io, unsigned events)
{
    struct sk_loop *loop = io->data;
    uint64_t count;

    (void)events;
    if (read(io->fd, &count, sizeof(count)) < 0)
        return;
    for (struct post *p = take_posts(loop), *next; p != NULL; p = next) {
        next = p->next;
        p->fn(p->arg);
        free(p);
    }
    if (loop->wake != NULL)
        loop->wake(loop->wake_arg);
}

static int io_start(struct sk_loop *loop, struct sk_io *io, int fd,
                    unsigned events, unsigned flags, sk_io_fn cb);

/* Sets up the poller backend asks for; io_uring's failure is kept in
 * *why and the loop is made on epoll instead. */
static int backend_setup(struct sk_loop *loop, enum sk_backend backend,
                         int *why)
{
    int err;

    if (backend == SK_BACKEND_IO_URING) {
        loop->backend = &uring_backend;
        if ((err = loop->backend->init(loop)) == 0)
            return 0;
        *why = err;
    }
    loop->backend = &epoll_backend;
    return loop->backend->init(loop);
}

int sk_loop_new_backend(struct sk_loop **loopp, enum sk_backend backend,
                        int *why)
{
    struct sk_loop *loop;
    int err, fd, failed = 0;

    if (why != NULL)
        *why = 0;
    loop = calloc(1, sizeof(*loop));
    if (loop == NULL)
        return -ENOMEM;
    loop->backend_fd = -1;
    loop->signal_io.fd = -1;
    sigemptyset(&loop->signal_mask);
    pthread_mutex_init(&loop->post_lock, NULL);
    loop->posts_tail = &loop->posts;
    err = backend_setup(loop, backend, &failed);
    if (err < 0)
        goto out_free;
    fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) {
        err = -errno;
        goto out_backend;
    }
    loop->wake_io.data = loop;
    err = io_start(loop, &loop->wake_io, fd, SK_READ, IO_DRAINS, on_wake);
    if (err < 0) {
        close(fd);
        goto out_backend;
    }
    loop->now = sk__clock_ms();
    if (why != NULL)
        *why = failed;
    *loopp = loop;
    return 0;

out_backend:
    loop->backend->free(loop);
out_free:
    pthread_mutex_destroy(&loop->post_lock);
    free(loop);
    return err;
}

int sk_loop_new(struct sk_loop **loopp)
{
    return sk_loop_new_backend(loopp, SK_BACKEND_EPOLL, NULL);
}

enum sk_backend sk_loop_backend(const struct sk_loop *loop)
{
    return loop->backend->id;
}

static void signals_release(struct sk_loop *loop);

void sk_loop_free(struct sk_loop *loop)
{
    if (loop == NULL)
        return;
    if (loop->home_owned)
        sk__conn_home_free(loop->home);
    sk_io_stop(&loop->wake_io);
    close(loop->wake_io.fd);
    if (loop->signal_io.fd >= 0)
        signals_release(loop);
    loop->backend->free(loop);
    for (struct post *p = take_posts(loop), *next; p != NULL; p = next) {
        next = p->next;
        free(p); /* never run: the loop is gone */
    }
    pthread_mutex_destroy(&loop->post_lock);
    free(loop->heap);
    free(loop);
}

uint64_t sk_loop_now(const struct sk_loop *loop)
{
    return loop->now;
}

void sk_loop_stop(struct sk_loop *loop)
{
    loop->stopped = true;
}

struct sk_worker *sk__loop_home(struct sk_loop *loop)
{
    if (loop->home == NULL && (loop->home = sk__conn_home_new(loop)) != NULL)
        loop->home_owned = true;
    return loop->home;
}

void sk__loop_set_home(struct sk_loop *loop, struct sk_worker *w)
{
    loop->home = w;
    loop->home_owned = false;
}

void sk_loop_set_prepare(struct sk_loop *loop, void (*fn)(void *), void *arg)
{
    loop->prepare = fn;
    loop->prepare_arg = arg;
}

void sk_loop_set_wake(struct sk_loop *loop, void (*fn)(void *), void *arg)
{
    loop->wake = fn;
    loop->wake_arg = arg;
}

void sk_loop_wake(struct sk_loop *loop)
{
    uint64_t one = 1;
    int saved = errno;

    /* A full counter already means "woken"; nothing to do on failure. */
    if (write(loop->wake_io.fd, &one, sizeof(one)) < 0)
        errno = saved;
}

/* ------------------------------------------------------------- watchers */

static int io_start(struct sk_loop *loop, struct sk_io *io, int fd,
                    unsigned events, unsigned flags, sk_io_fn cb)
{
    int err;

    io->loop = loop;
    io->fd = fd;
    io->events = events;
    io->cb = cb;
    io->flags = flags;
    err = loop->backend->add(loop, io, (flags & IO_EXCLUSIVE) != 0);
    if (err < 0)
        return err;
    io->flags |= IO_ACTIVE;
    return 0;
}

int sk_io_start(struct sk_loop *loop, struct sk_io *io, int fd, unsigned events,
                bool exclusive, sk_io_fn cb)
{
    return io_start(loop, io, fd, events, exclusive ? IO_EXCLUSIVE : 0, cb);
}

int sk_io_set(struct sk_io *io, unsigned events)
{
    if (!(io->flags & IO_ACTIVE) || (io->flags & IO_EXCLUSIVE))
        return -EINVAL;
    if (io->events == events)
        return 0;
    io->events = events;
    return io->loop->backend->modify(io->loop, io);
}

void sk_io_stop(struct sk_io *io)
{
    struct sk_loop *loop = io->loop;

    if (!(io->flags & IO_ACTIVE))
        return;
    loop->backend->remove(loop, io);
    io->flags &= ~IO_ACTIVE;
    /* Events already fetched for this watcher must not reach it: its owner
     * may free it as soon as this returns. */
    for (int i = 0; i < loop->nfired; i++)
        if (loop->fired[i].io == io)
            loop->fired[i].io = NULL;
}

bool sk_io_is_active(const struct sk_io *io)
{
    return (io->flags & IO_ACTIVE) != 0;
}

/* --------------------------------------------------------------- timers */

static bool timer_before(const struct sk_timer *a, const struct sk_timer *b)
{
    return a->due < b->due;
}

static void heap_place(struct sk_loop *loop, size_t i, struct sk_timer *t)
{
    loop->heap[i] = t;
    t->slot = i;
}

static void heap_up(struct sk_loop *loop, size_t i)
{
    struct sk_timer *t = loop->heap[i];

    while (i > 0 && timer_before(t, loop->heap[(i - 1) / 2])) {
        heap_place(loop, i, loop->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    heap_place(loop, i, t);
}

static void heap_down(struct sk_loop *loop, size_t i)
{
    struct sk_timer *t = loop->heap[i];

    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= loop->nheap)
            break;
        if (c + 1 < loop->nheap &&
            timer_before(loop->heap[c + 1], loop->heap[c]))
            c++;
        if (!timer_before(loop->heap[c], t))
            break;
        heap_place(loop, i, loop->heap[c]);
        i = c;
    }
    heap_place(loop, i, t);
}

void sk_timer_init(struct sk_timer *timer, sk_timer_fn cb)
{
    *timer = (struct sk_timer){.slot = SIZE_MAX, .cb = cb};
}

void sk_timer_stop(struct sk_timer *timer)
{
    struct sk_loop *loop = timer->loop;
    size_t i = timer->slot;
    struct sk_timer *last;

    if (i == SIZE_MAX)
        return;
    timer->slot = SIZE_MAX;
    last = loop->heap[--loop->nheap];
    if (last == timer)
        return;
    heap_place(loop, i, last);
    heap_up(loop, i);
    heap_down(loop, last->slot);
}

int sk_timer_start(struct sk_loop *loop, struct sk_timer *timer, uint64_t ms,
                   uint64_t repeat)
{
    sk_timer_stop(timer);
    if (loop->nheap == loop->heap_cap) {
        size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 16;
        struct sk_timer **heap = realloc(loop->heap, cap * sizeof(*heap));
        if (heap == NULL)
            return -ENOMEM;
        loop->heap = heap;
        loop->heap_cap = cap;
    }
    timer->loop = loop;
    timer->due = ms > UINT64_MAX - loop->now ? UINT64_MAX : loop->now + ms;
    timer->repeat = repeat;
    heap_place(loop, loop->nheap++, timer);
    heap_up(loop, timer->slot);
    return 0;
}

static int next_timeout(const struct sk_loop *loop)
{
    uint64_t due;

    if (loop->nheap == 0)
        return -1;
    due = loop->heap[0]->due;
    if (due <= loop->now)
        return 0;
    return due - loop->now > INT32_MAX ? INT32_MAX : (int)(due - loop->now);
}

static void run_timers(struct sk_loop *loop)
{
    while (loop->nheap > 0 && loop->heap[0]->due <= loop->now) {
        struct sk_timer *t = loop->heap[0];

        sk_timer_stop(t);
        if (t->repeat > 0)
            sk_timer_start(loop, t, t->repeat, t->repeat);
        t->cb(t);
    }
}

/* -------------------------------------------------------------- signals */

static void on_signalfd(struct sk_io *io, unsigned events)
{
    struct sk_loop *loop = io->data;
    struct signalfd_siginfo si;

    (void)events;
    while (read(io->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        for (struct sk_signal *s = loop->signals; s != NULL; s = s->next) {
            if (s->signo == (int)si.ssi_signo) {
                s->cb(s);
                break;
            }
        }
    }
}

/* Per thread: how many loops route each signal, and those the first of
 * them found unblocked (to unblock again when the last one goes). */
static __thread unsigned signal_users[NSIG];
static __thread sigset_t signal_found_unblocked;

static void signal_use(int signo)
{
    sigset_t now;

    if (signal_users[signo]++ == 0 &&
        pthread_sigmask(SIG_BLOCK, NULL, &now) == 0 &&
        sigismember(&now, signo) == 0)
        sigaddset(&signal_found_unblocked, signo);
}

/* Leaves the thread as it was found once no loop routes a signal: the
 * pending ones dropped, then unblocked if they were. */
static void signals_release(struct sk_loop *loop)
{
    struct signalfd_siginfo si;
    sigset_t last, unblock;

    sigemptyset(&last);
    sigemptyset(&unblock);
    for (int signo = 1; signo < NSIG; signo++) {
        if (sigismember(&loop->signal_mask, signo) != 1 ||
            --signal_users[signo] > 0)
            continue;
        sigaddset(&last, signo);
        if (sigismember(&signal_found_unblocked, signo) == 1) {
            sigaddset(&unblock, signo);
            sigdelset(&signal_found_unblocked, signo);
        }
    }
    sk_io_stop(&loop->signal_io);
    close(loop->signal_io.fd);
    loop->signal_io.fd = signalfd(-1, &last, SFD_NONBLOCK | SFD_CLOEXEC);
    while (loop->signal_io.fd >= 0 &&
           read(loop->signal_io.fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
        ;
    if (loop->signal_io.fd >= 0)
        close(loop->signal_io.fd);
    loop->signal_io.fd = -1;
    pthread_sigmask(SIG_UNBLOCK, &unblock, NULL);
}

static int update_signalfd(struct sk_loop *loop)
{
    int fd;

    if (pthread_sigmask(SIG_BLOCK, &loop->signal_mask, NULL) != 0)
        return -EINVAL;
    fd = signalfd(loop->signal_io.fd, &loop->signal_mask,
                  SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (loop->signal_io.fd < 0) {
        loop->signal_io.data = loop;
        if (io_start(loop, &loop->signal_io, fd, SK_READ, IO_DRAINS,
                     on_signalfd) < 0) {
            close(fd);
            return -errno;
        }
    }
    return 0;
}

int sk_signal_start(struct sk_loop *loop, struct sk_signal *sig, int signo,
                    void (*cb)(struct sk_signal *sig))
{
    int err;

    if (signo <= 0 || signo >= NSIG)
        return -EINVAL;
    sig->loop = loop;
    sig->signo = signo;
    sig->cb = cb;
    bool fresh = sigismember(&loop->signal_mask, signo) != 1;

    if (fresh)
        signal_use(signo);
    sigaddset(&loop->signal_mask, signo);
    err = update_signalfd(loop);
    if (err < 0) {
        if (fresh) {
            sigdelset(&loop->signal_mask, signo);
            signal_users[signo]--;
        }
        return err;
    }
    sig->next = loop->signals;
    loop->signals = sig;
    return 0;
}

void sk_signal_stop(struct sk_signal *sig)
{
    struct sk_signal **p;

    for (p = &sig->loop->signals; *p != NULL; p = &(*p)->next) {
        if (*p == sig) {
            *p = sig->next;
            break;
        }
    }
}

/* ------------------------------------------------------------------ run */

static void dispatch(struct sk_loop *loop)
{
    for (int i = 0; i < loop->nfired; i++) {
        struct sk_io *io = loop->fired[i].io;
        if (io != NULL)
            io->cb(io, loop->fired[i].events);
    }
    loop->nfired = 0;
}

int sk_loop_run(struct sk_loop *loop)
{
    int n;

    loop->now = sk__clock_ms();
    while (!loop->stopped) {
        if (loop->home_owned)
            sk__conn_flush_all(loop->home);
        if (loop->prepare != NULL)
            loop->prepare(loop->prepare_arg);
        if (loop->stopped)
            break;
        n = loop->backend->wait(loop, next_timeout(loop));
        if (n < 0)
            return n;
        loop->nfired = n;
        loop->now = sk__clock_ms();
        dispatch(loop);
        run_timers(loop);
    }
    loop->stopped = false; /* the next run is a new one */
    return 0;
}
