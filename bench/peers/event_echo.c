/* event_echo.c -- an echo server on libevent: bufferevents moving the
 * input buffer to the output (its documented idiom), or with --tuned a
 * plain event per socket reading into one reused buffer and writing back.
 *   event_echo [--tuned] tcp PORT | unix PATH | udp PORT */
#include "common.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/tcp.h>

static struct event_base *base;
static char buf[65536];

static void on_bev_read(struct bufferevent *bev, void *arg)
{
    evbuffer_add_buffer(bufferevent_get_output(bev),
                        bufferevent_get_input(bev));
}

static void on_bev_event(struct bufferevent *bev, short what, void *arg)
{
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        bufferevent_free(bev);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd,
                      struct sockaddr *sa, int len, void *arg)
{
    struct bufferevent *bev;
    int one = 1;

    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(bev, on_bev_read, NULL, on_bev_event, NULL);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

/* --tuned: read into the shared buffer, write back; a rest the kernel
 * does not take (rare) is written blocking, to stay short. */
static void on_tuned_read(evutil_socket_t fd, short what, void *arg)
{
    struct event *ev = *(struct event **)arg;
    ssize_t n = read(fd, buf, sizeof(buf)), off = 0, w;

    if (n <= 0) {
        if (n == 0 || errno != EAGAIN) {
            event_free(ev);
            free(arg);
            close(fd);
        }
        return;
    }
    while (off < n) {
        w = write(fd, buf + off, (size_t)(n - off));
        if (w > 0)
            off += w;
        else if (errno != EAGAIN)
            break;
    }
}

static void on_tuned_accept(evutil_socket_t lfd, short what, void *arg)
{
    int one = 1, fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
    struct event **slot;

    if (fd < 0)
        return;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    slot = malloc(sizeof(*slot));
    *slot = event_new(base, fd, EV_READ | EV_PERSIST, on_tuned_read, slot);
    event_add(*slot, NULL);
}

static void on_datagram(evutil_socket_t fd, short what, void *arg)
{
    struct sockaddr_storage from;
    socklen_t len = sizeof(from);
    ssize_t n =
        recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &len);

    if (n >= 0)
        sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&from, len);
}

int main(int argc, char **argv)
{
    int tuned = 0, dgram, fd;

    if (argc > 1 && strcmp(argv[1], "--tuned") == 0) {
        tuned = 1;
        argv++;
        argc--;
    }
    if (argc != 3 || (fd = peer_listen(argv[1], argv[2], &dgram)) < 0)
        return 1;
    base = event_base_new();
    if (dgram)
        event_add(event_new(base, fd, EV_READ | EV_PERSIST, on_datagram, NULL),
                  NULL);
    else if (tuned)
        event_add(
            event_new(base, fd, EV_READ | EV_PERSIST, on_tuned_accept, NULL),
            NULL);
    else
        evconnlistener_new(base, on_accept, NULL, LEV_OPT_CLOSE_ON_FREE, -1,
                           fd);
    return event_base_dispatch(base);
}
