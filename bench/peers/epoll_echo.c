/* epoll_echo.c -- the syscall floor: a minimal single-threaded,
 * level-triggered epoll echo loop. Streams: one read and one write per
 * readiness; datagrams: recvmmsg/sendmmsg in batches of 32.
 *   epoll_echo tcp PORT | unix PATH | udp PORT */
#include "common.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>

#define BATCH 32
#define MAXMSG 65536

struct conn {
    int fd;
    char *pending; /* bytes the kernel did not take */
    size_t len;
};

static char buf[1 << 16];

static void serve_dgram(int fd)
{
    static char bufs[BATCH][MAXMSG];
    static struct mmsghdr msgs[BATCH];
    static struct iovec iov[BATCH];
    static struct sockaddr_storage from[BATCH];
    int ep = epoll_create1(0), n;
    struct epoll_event ev = {.events = EPOLLIN}, out;

    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    for (;;) {
        if (epoll_wait(ep, &out, 1, -1) < 1)
            continue;
        for (int i = 0; i < BATCH; i++) {
            iov[i] = (struct iovec){bufs[i], MAXMSG};
            msgs[i].msg_hdr = (struct msghdr){.msg_name = &from[i],
                                              .msg_namelen = sizeof(from[i]),
                                              .msg_iov = &iov[i],
                                              .msg_iovlen = 1};
        }
        n = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0)
            continue;
        for (int i = 0; i < n; i++)
            iov[i].iov_len = msgs[i].msg_len;
        sendmmsg(fd, msgs, (unsigned)n, MSG_DONTWAIT);
    }
}

static void drop(int ep, struct conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->pending);
    free(c);
}

static void on_readable(int ep, struct conn *c)
{
    ssize_t n = read(c->fd, buf, sizeof(buf)), w;

    if (n <= 0) {
        if (n == 0 || errno != EAGAIN)
            drop(ep, c);
        return;
    }
    w = write(c->fd, buf, (size_t)n);
    if (w < 0)
        w = 0;
    if (w < n) { /* rare: keep the rest, stop reading until it is sent */
        c->len = (size_t)(n - w);
        c->pending = malloc(c->len);
        memcpy(c->pending, buf + w, c->len);
        struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    }
}

static void on_writable(int ep, struct conn *c)
{
    ssize_t w = write(c->fd, c->pending, c->len);

    if (w < 0 && errno != EAGAIN) {
        drop(ep, c);
        return;
    }
    if (w > 0) {
        memmove(c->pending, c->pending + w, c->len - (size_t)w);
        c->len -= (size_t)w;
    }
    if (c->len == 0) {
        free(c->pending);
        c->pending = NULL;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    }
}

int main(int argc, char **argv)
{
    struct epoll_event evs[256], ev = {.events = EPOLLIN};
    int dgram, lfd, ep, one = 1;

    if (argc != 3 || (lfd = peer_listen(argv[1], argv[2], &dgram)) < 0)
        return 1;
    if (dgram)
        serve_dgram(lfd);
    ep = epoll_create1(0);
    ev.data.ptr = NULL;
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c == NULL) {
                int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
                if (fd < 0)
                    continue;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                c = calloc(1, sizeof(*c));
                c->fd = fd;
                struct epoll_event cev = {.events = EPOLLIN, .data.ptr = c};
                epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
            } else if (evs[i].events & EPOLLOUT) {
                on_writable(ep, c);
            } else {
                on_readable(ep, c);
            }
        }
    }
}
