/* loop_epoll.c -- the epoll backend of loop.c, which includes this file.
 * The only file that calls epoll_*; level-triggered. The default. */
#include <sys/epoll.h>

static int epoll_init(struct sk_loop *loop)
{
    loop->backend_fd = epoll_create1(EPOLL_CLOEXEC);
    return loop->backend_fd < 0 ? -errno : 0;
}

static void epoll_free(struct sk_loop *loop)
{
    if (loop->backend_fd >= 0)
        close(loop->backend_fd);
}

static uint32_t epoll_mask(unsigned events)
{
    return (events & SK_READ ? EPOLLIN : 0) |
           (events & SK_WRITE ? EPOLLOUT : 0);
}

static int epoll_add(struct sk_loop *loop, struct sk_io *io, bool exclusive)
{
    struct epoll_event ev = {
        .events = epoll_mask(io->events) | (exclusive ? EPOLLEXCLUSIVE : 0),
        .data.ptr = io,
    };

    if (epoll_ctl(loop->backend_fd, EPOLL_CTL_ADD, io->fd, &ev) < 0)
        return -errno;
    return 0;
}

static int epoll_modify(struct sk_loop *loop, struct sk_io *io)
{
    struct epoll_event ev = {.events = epoll_mask(io->events), .data.ptr = io};

    if (epoll_ctl(loop->backend_fd, EPOLL_CTL_MOD, io->fd, &ev) < 0)
        return -errno;
    return 0;
}

static void epoll_remove(struct sk_loop *loop, struct sk_io *io)
{
    epoll_ctl(loop->backend_fd, EPOLL_CTL_DEL, io->fd, NULL);
}

/* Waits up to timeout ms (-1: no limit) and fills loop->fired. Returns the
 * count or a negative errno; EINTR counts as zero events. */
static int epoll_wait_fired(struct sk_loop *loop, int timeout)
{
    struct epoll_event evs[LOOP_FIRED_MAX];
    int n;

    n = epoll_wait(loop->backend_fd, evs, LOOP_FIRED_MAX, timeout);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    for (int i = 0; i < n; i++) {
        uint32_t e = evs[i].events;
        unsigned events = 0;

        /* An error or hang-up is reported as readable and writable, so
         * that the owner's next read or write returns the reason. */
        if (e & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP))
            events |= SK_READ;
        if (e & (EPOLLOUT | EPOLLERR | EPOLLHUP))
            events |= SK_WRITE;
        loop->fired[i].io = evs[i].data.ptr;
        loop->fired[i].events = events;
    }
    return n;
}

static const struct backend epoll_backend = {
    .id = SK_BACKEND_EPOLL,
    .init = epoll_init,
    .free = epoll_free,
    .add = epoll_add,
    .modify = epoll_modify,
    .remove = epoll_remove,
    .wait = epoll_wait_fired,
};
