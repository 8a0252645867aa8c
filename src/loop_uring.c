/* loop_uring.c -- the io_uring backend of loop.c, which includes this file
 * (and includes loop_uring_send.c and loop_uring_recv.c, the sends and the
 * receive mode through the ring). The only files that call io_uring_*.
 *
 * Readiness comes from poll requests. Each watcher has at most one in
 * flight, keyed by a slot table indexed by descriptor (a loop watches a
 * descriptor once, as epoll does): user_data is the descriptor and the
 * slot's sequence number of that poll, so a completion still queued for
 * a watcher stopped (or re-armed) since never matches and is dropped; no
 * user_data points at memory.
 *
 * Watchers are level-triggered, as on epoll: a one-shot poll, armed again
 * after it fired (a poll checks readiness as it is armed, so what the
 * callback left unread fires again). A multishot poll reports only the
 * wake-ups that match it (each one with the readiness of that moment),
 * and is used where level would spin or could not be had:
 * - IO_DRAINS watchers (the loop's eventfd and signalfd);
 * - a watcher that asks for nothing: epoll still reports it an error or a
 *   hang-up, and so does this poll (the kernel adds POLLERR, POLLHUP and
 *   POLLRDHUP to every poll), once per wake-up;
 * - a watcher that does not read, once its one-shot poll has come back
 *   with nothing it asked for: the kernel's POLLRDHUP (the peer's end of
 *   stream) is level and would fire the one-shot poll again at once,
 *   forever, while the watcher waits to write to a peer that does not
 *   read. The multishot poll waits for the next wake-up instead (the
 *   socket's room to write comes with one).
 * A multishot poll that reports readiness is withdrawn and a one-shot
 * armed in its place, so level holds from there; one is re-armed when a
 * completion lacks IORING_CQE_F_MORE. The re-arms, mask changes (remove
 * and add) and removals of an iteration go to the kernel with the one
 * io_uring_submit_and_wait_timeout() that waits. An exclusive watcher's
 * poll carries EPOLLEXCLUSIVE: a listener shared by the workers wakes one
 * of them per connection. */
#include <liburing.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#define URING_SQ_ENTRIES 256
/* Completions the ring holds; more wait in the kernel (IORING_FEAT_NODROP)
 * and are flushed into it as it drains. */
#define URING_CQ_ENTRIES 4096
#define URING_UNSENT_MAX 64

/* The user_data of removals, whose completions say nothing. */
#define UD_IGNORE UINT64_MAX
/* That of a send (loop_uring_send.c) and of a receive (loop_uring_recv.c);
 * sequence numbers have 30 bits. */
#define URING_UD_SEND (1ull << 63)
#define URING_UD_RECV (1ull << 62)
#define URING_SEQ_MASK 0x3fffffffu

/* loop_uring_recv.c: the provided-buffer ring. */
#define RX_BUFS 64 /* a power of two: 2 MiB a loop */
/* 32 KiB: a 64 KiB request in two chunks read in place costs 12 % less CPU
 * than in four of 16 KiB gathered into one read buffer. */
#define RX_BUF_SIZE (32 * 1024)
#define RX_GROUP 0

struct uring_orphan;
struct uring_rx;
struct uring_send;

struct uring_slot {
    struct sk_io *io;        /* the watcher of this descriptor, NULL for none */
    uint64_t armed;          /* user_data of its poll in flight, 0 for none */
    struct uring_send *send; /* loop_uring_send.c: in flight, or NULL */
    struct uring_rx *rx;     /* loop_uring_recv.c: receive mode, or NULL */
    unsigned mask;           /* the events that poll waits for */
    uint32_t seq;            /* of the last poll armed */
    int next;          /* the next descriptor on the dirty list, -1 for none */
    uint32_t send_seq; /* of the last send queued */
    int send_res;      /* of the last send completed */
    bool multi;        /* that poll is multishot */
    bool waits;        /* nothing asked for came: arm multishot (above) */
    bool dirty;        /* on the list to arm before the next wait */
};

struct uring {
    struct io_uring ring;
    bool disabled; /* made with R_DISABLED: enabled by the first submit */
    /* Indexed by descriptor: made on the thread that makes the loop and
     * grown on the loop's (never below 64 slots, 2 KiB, so that glibc
     * keeps none of it in a thread's cache for small blocks, which
     * would hand the first thread's arena to the loop thread's buffers). */
    struct uring_slot *slots;
    size_t nslots;
    int dirty; /* first descriptor whose poll to arm, -1 for none */
    /* Removals no submission entry could be had for (the kernel refused
     * a submit): sent before the next polls are armed, so that no poll is
     * left holding a closed socket's file. */
    uint64_t unsent[URING_UNSENT_MAX];
    unsigned nunsent;
    /* Counts the submissions that left the submission queue empty: an
     * entry queued at a count that has not moved since is unsubmitted. */
    uint64_t submit_gen;
    struct uring_orphan *orphans; /* sends of stopped watchers */
    size_t norphans;
    /* loop_uring_recv.c */
    struct io_uring_buf_ring *rx_br; /* NULL until the first receive mode */
    char *rx_mem;                    /* its RX_BUFS buffers */
    bool rx_off;                     /* the kernel refused the ring */
    bool rx_oneshot;                 /* nor limits a multishot receive */
    unsigned rx_free;                /* buffers in the ring */
    uint16_t back[RX_BUFS];          /* taken, to give back at the wait */
    unsigned nback;
    uint32_t rx_gen;
    uint64_t reaps;
    int *ready; /* descriptors with chunks left to take */
    size_t nready, ready_cap;
    int *starved; /* descriptors waiting for buffers */
    size_t nstarved, starved_cap;
    char **taken; /* copies taken, to free at the wait */
    size_t ntaken, taken_cap;
};

/* Makes the ring: single issuer with deferred task running where the
 * kernel has them (the issuer is the thread that enables the ring, so
 * that a loop may be made on one thread and run on another). */
static int uring_setup(struct uring *u)
{
    struct io_uring_params p = {0};
    int err;

    p.cq_entries = URING_CQ_ENTRIES;
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL |
              IORING_SETUP_R_DISABLED | IORING_SETUP_SINGLE_ISSUER |
              IORING_SETUP_DEFER_TASKRUN;
    err = io_uring_queue_init_params(URING_SQ_ENTRIES, &u->ring, &p);
    if (err == -EINVAL) {
        p = (struct io_uring_params){.cq_entries = URING_CQ_ENTRIES,
                                     .flags = IORING_SETUP_CQSIZE};
        err = io_uring_queue_init_params(URING_SQ_ENTRIES, &u->ring, &p);
    }
    if (err < 0)
        return err;
    u->disabled = (p.flags & IORING_SETUP_R_DISABLED) != 0;
    if (!(p.features & IORING_FEAT_NODROP) ||
        !(p.features & IORING_FEAT_EXT_ARG)) {
        io_uring_queue_exit(&u->ring);
        return -EOPNOTSUPP; /* before Linux 5.11 */
    }
    return 0;
}

static int uring_init(struct sk_loop *loop)
{
    struct uring *u = calloc(1, sizeof(*u));
    int err;

    if (u == NULL)
        return -ENOMEM;
    if ((err = uring_setup(u)) < 0) {
        free(u);
        return err;
    }
    u->dirty = -1;
    loop->uring = u;
    return 0;
}

static void uring_free_orphans(struct uring *u);
static void rx_free_all(struct uring *u);

static void uring_free(struct sk_loop *loop)
{
    struct uring *u = loop->uring;

    if (u == NULL)
        return;
    io_uring_queue_exit(&u->ring);
    uring_free_orphans(u);
    rx_free_all(u);
    free(u->slots);
    free(u);
    loop->uring = NULL;
}

/* The first submission makes the calling thread the ring's issuer. */
static int uring_enable(struct uring *u)
{
    int err;

    if (!u->disabled)
        return 0;
    /* Debian's liburing 2.3 declares io_uring_enable_rings() but does not
     * export it. */
    err = (int)syscall(__NR_io_uring_register, u->ring.ring_fd,
                       IORING_REGISTER_ENABLE_RINGS, NULL, 0);
    if (err < 0)
        return -errno;
    u->disabled = false;
    return 0;
}

/* After a submission: counts it if nothing is left queued. */
static void uring_submitted(struct uring *u)
{
    if (io_uring_sq_ready(&u->ring) == 0)
        u->submit_gen++;
}

/* A free submission entry, submitting what is queued if there is none;
 * NULL when even that fails. */
static struct io_uring_sqe *uring_sqe(struct uring *u)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);

    if (sqe == NULL && uring_enable(u) == 0) {
        int err = io_uring_submit(&u->ring);

        uring_submitted(u);
        if (err >= 0)
            sqe = io_uring_get_sqe(&u->ring);
    }
    return sqe;
}

#include "loop_uring_send.c"

/* The slot of fd, the table grown to hold it. */
static struct uring_slot *uring_slot(struct uring *u, int fd)
{
    size_t n = u->nslots ? u->nslots : 64;
    struct uring_slot *slots;

    if ((size_t)fd < u->nslots)
        return &u->slots[fd];
    /* Doubling to 1024 slots, then by an eighth in steps of 1024: room
     * for fds to come costs at most an eighth of a slot per descriptor. */
    while (n <= (size_t)fd)
        n = n < 1024 ? n * 2 : (n + n / 8 + 1023) / 1024 * 1024;
    if ((slots = realloc(u->slots, n * sizeof(*slots))) == NULL)
        return NULL;
    memset(slots + u->nslots, 0, (n - u->nslots) * sizeof(*slots));
    u->slots = slots;
    u->nslots = n;
    return &u->slots[fd];
}

static void uring_mark(struct uring *u, int fd)
{
    struct uring_slot *s = &u->slots[fd];

    if (!s->dirty) {
        s->dirty = true;
        s->next = u->dirty;
        u->dirty = fd;
    }
}

/* Queues the removal of the poll of user_data ud; false when no entry
 * could be had. An asynchronous cancel, not IORING_OP_POLL_REMOVE: a
 * poll whose wake-up is still to be run (which, with deferred task
 * running, is until the next wait) refuses a POLL_REMOVE with -EALREADY,
 * and a multishot one would then stay armed, holding the socket's file
 * past its close; a cancel marks the poll and ends it when that wake-up
 * runs. */
static bool uring_remove_poll(struct uring *u, uint64_t ud)
{
    struct io_uring_sqe *sqe = uring_sqe(u);

    if (sqe == NULL)
        return false;
    io_uring_prep_cancel64(sqe, ud, 0);
    io_uring_sqe_set_data64(sqe, UD_IGNORE);
    return true;
}

/* Withdraws the slot's poll; a completion it may still post is stale. */
static void uring_cancel(struct uring *u, struct uring_slot *s)
{
    if (s->armed == 0)
        return;
    if (!uring_remove_poll(u, s->armed) && u->nunsent < URING_UNSENT_MAX)
        u->unsent[u->nunsent++] = s->armed;
    s->armed = 0;
}

/* Sends the removals that waited for an entry. Returns 0 or -EBUSY. */
static int uring_send_unsent(struct uring *u)
{
    while (u->nunsent > 0) {
        if (!uring_remove_poll(u, u->unsent[u->nunsent - 1]))
            return -EBUSY;
        u->nunsent--;
    }
    return 0;
}

/* As epoll_ctl() refuses them: no descriptor, or a regular file or a
 * directory, which are always ready. */
static int uring_check_fd(int fd)
{
    struct stat st;

    if (fstat(fd, &st) < 0)
        return -errno;
    if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))
        return -EPERM;
    return 0;
}

/* The events the poll of s waits for: a watcher in receive mode reads
 * through its receive (loop_uring_recv.c). */
static unsigned uring_poll_events(const struct uring_slot *s)
{
    return s->rx != NULL ? s->io->events & ~SK_READ : s->io->events;
}

#include "loop_uring_recv.c"

static int uring_add(struct sk_loop *loop, struct sk_io *io, bool exclusive)
{
    struct uring *u = loop->uring;
    struct uring_slot *s;
    int err;

    (void)exclusive; /* in io->flags */
    if (io->fd < 0)
        return -EBADF;
    if ((err = uring_check_fd(io->fd)) < 0)
        return err;
    if ((s = uring_slot(u, io->fd)) == NULL)
        return -ENOMEM;
    if (s->io != NULL)
        return -EEXIST;
    s->io = io; /* nothing armed: the removal before withdrew it */
    uring_mark(u, io->fd);
    return 0;
}

static int uring_modify(struct sk_loop *loop, struct sk_io *io)
{
    struct uring *u = loop->uring;
    struct uring_slot *s = &u->slots[io->fd];

    if (s->armed != 0 && s->mask != uring_poll_events(s))
        uring_cancel(u, s);
    if (s->mask != uring_poll_events(s))
        s->waits = false;
    uring_mark(u, io->fd);
    return 0;
}

static void uring_remove(struct sk_loop *loop, struct sk_io *io)
{
    struct uring *u = loop->uring;
    struct uring_slot *s = &u->slots[io->fd];

    uring_cancel(u, s);
    uring_orphan_send(u, s, io->fd);
    rx_end(u, s);
    s->io = NULL;
    s->waits = false;
}

static unsigned uring_poll_mask(const struct uring_slot *s)
{
    unsigned events = uring_poll_events(s);

    return (events & SK_READ ? POLLIN : 0) | (events & SK_WRITE ? POLLOUT : 0) |
           (s->io->flags & IO_EXCLUSIVE ? EPOLLEXCLUSIVE : 0);
}

/* Whether the poll of s is to be multishot (above). */
static bool uring_multishot(const struct uring_slot *s)
{
    return (s->io->flags & IO_DRAINS) || uring_poll_events(s) == 0 || s->waits;
}

/* Whether s needs a poll: a watcher in receive mode hears of its input,
 * its end and its errors from its receive while it reads, and needs one
 * to write, or, while it does not read, to hear of an error or a hang-up
 * (a poll for no events), as epoll tells them whatever was asked. */
static bool uring_wants_poll(const struct uring_slot *s)
{
    return s->rx == NULL || uring_poll_events(s) != 0 ||
           !(s->io->events & SK_READ);
}

/* Whether the poll of s tells of a hang-up once, not as level would: that
 * of a watcher in receive mode that reads nothing (it cannot be unwatched
 * until it reads, as a connection parks, without dropping its chunks). */
static bool uring_edge(const struct uring_slot *s)
{
    return s->rx != NULL && uring_poll_events(s) == 0;
}

/* Queues a poll for every marked watcher that has none in flight.
 * Returns 0 or -EBUSY when no entry could be had (those left stay
 * marked, for the next wait). */
static int uring_arm(struct uring *u)
{
    if (uring_send_unsent(u) < 0)
        return -EBUSY;
    while (u->dirty >= 0) {
        struct uring_slot *s = &u->slots[u->dirty];
        struct io_uring_sqe *sqe;

        if (s->io != NULL && s->armed == 0 && uring_wants_poll(s)) {
            if ((sqe = uring_sqe(u)) == NULL)
                return -EBUSY;
            if ((s->multi = uring_multishot(s)))
                io_uring_prep_poll_multishot(sqe, s->io->fd,
                                             uring_poll_mask(s));
            else
                io_uring_prep_poll_add(sqe, s->io->fd, uring_poll_mask(s));
            if ((s->seq = (s->seq + 1) & URING_SEQ_MASK) == 0)
                s->seq = 1;
            s->armed = (uint64_t)s->seq << 32 | (uint32_t)s->io->fd;
            s->mask = uring_poll_events(s);
            io_uring_sqe_set_data64(sqe, s->armed);
        }
        if (s->io != NULL && s->rx != NULL && !rx_arm(u, s, u->dirty))
            return -EBUSY;
        s->dirty = false;
        u->dirty = s->next;
    }
    return 0;
}

/* The events a poll's result res gives a watcher that asked for wanted:
 * an error or a hang-up is both (as epoll reports them, whatever was
 * asked), anything else only what was asked for (the end of the peer's
 * stream, POLLRDHUP, is no readiness to write). */
static unsigned uring_events(int res, unsigned wanted)
{
    unsigned events = 0;

    if (res < 0 || (res & (POLLERR | POLLHUP)))
        return SK_READ | SK_WRITE;
    if (res & (POLLIN | POLLRDHUP))
        events |= SK_READ;
    if (res & POLLOUT)
        events |= SK_WRITE;
    return events & wanted;
}

/* Takes one completion: its watcher's events into loop->fired (true), or
 * nothing for a stale or cancelled one. */
static bool uring_take(struct sk_loop *loop, const struct io_uring_cqe *cqe)
{
    struct uring *u = loop->uring;
    uint64_t ud = io_uring_cqe_get_data64(cqe);
    size_t fd = (uint32_t)ud;
    struct uring_slot *s;
    unsigned events;

    if (ud == UD_IGNORE)
        return false;
    if (ud & URING_UD_SEND)
        return uring_take_send(loop, cqe);
    if (ud & URING_UD_RECV)
        return uring_take_recv(loop, cqe);
    if (fd >= u->nslots)
        return false;
    s = &u->slots[fd];
    if (s->armed != ud || s->io == NULL)
        return false;
    if (!(cqe->flags & IORING_CQE_F_MORE)) {
        s->armed = 0;
        uring_mark(u, (int)fd);
    }
    if (cqe->res == -ECANCELED)
        return false;
    if ((events = uring_events(cqe->res, s->mask)) == 0) {
        if (!s->multi && cqe->res > 0)
            s->waits = true; /* only what it did not ask for: see above */
        return false;
    }
    if (s->multi && !(s->io->flags & IO_DRAINS) && !uring_edge(s)) {
        uring_cancel(u, s); /* level again, from a one-shot poll */
        s->waits = false;
        uring_mark(u, (int)fd);
    }
    loop->fired[loop->nfired].io = s->io;
    loop->fired[loop->nfired].events = events;
    loop->nfired++;
    return true;
}

/* Reaps up to LOOP_FIRED_MAX completions; the rest wait in the ring for
 * the next call, and those the kernel kept aside when the ring was full
 * are flushed into it. */
static void uring_reap(struct sk_loop *loop)
{
    struct uring *u = loop->uring;
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;

    u->reaps++;
    io_uring_for_each_cqe(&u->ring, head, cqe)
    {
        if (loop->nfired == LOOP_FIRED_MAX)
            break;
        seen++;
        uring_take(loop, cqe);
    }
    io_uring_cq_advance(&u->ring, seen);
    if (IO_URING_READ_ONCE(*u->ring.sq.kflags) & IORING_SQ_CQ_OVERFLOW)
        io_uring_get_events(&u->ring);
}

static int uring_wait(struct sk_loop *loop, int timeout)
{
    struct uring *u = loop->uring;
    struct __kernel_timespec ts = {timeout / 1000, timeout % 1000 * 1000000L};
    struct io_uring_cqe *cqe;
    int err;

    loop->nfired = 0;
    if ((err = uring_enable(u)) < 0)
        return err;
    if (u->rx_br != NULL)
        rx_give_back(u);
    err = uring_arm(u);
    if (err < 0 && io_uring_sq_ready(&u->ring) == 0)
        return err;
    if (u->nready > 0) /* chunks are left to take: no waiting */
        ts = (struct __kernel_timespec){0, 0}, timeout = 0;
    err = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1,
                                           timeout < 0 ? NULL : &ts, NULL);
    uring_submitted(u);
    if (err < 0 && err != -ETIME && err != -EINTR && err != -EBUSY)
        return err;
    uring_reap(loop);
    rx_fire_ready(loop);
    return loop->nfired;
}

static const struct backend uring_backend = {
    .id = SK_BACKEND_IO_URING,
    .init = uring_init,
    .free = uring_free,
    .add = uring_add,
    .modify = uring_modify,
    .remove = uring_remove,
    .wait = uring_wait,
};
