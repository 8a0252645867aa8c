/* uring_send.c -- unit tests of the sends through an io_uring loop's ring
 * (src/loop_uring_send.c): the bytes arrive exact and in order and the
 * watcher hears SK_IO_SENT with the count; a full socket ends the send at
 * once with -EAGAIN (no send parked in the kernel, no busy loop); one send
 * in flight per watcher; and a watcher stopped with its send not yet
 * submitted drops it, so that a socket given the same descriptor number
 * once the first is closed never receives it. Skipped where the kernel
 * refuses io_uring. */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "internal.h"
#include "uring_fixture.h"

struct watched {
    struct sk_io io;
    int sent[8]; /* the results heard, in order */
    int nsent;
    int other; /* events other than SK_IO_SENT */
};

static void on_event(struct sk_io *io, unsigned events)
{
    struct watched *w = io->data;

    if (events & SK_IO_SENT) {
        if (w->nsent < 8)
            w->sent[w->nsent] = sk__io_sent(io);
        w->nsent++;
    }
    if (events & ~SK_IO_SENT)
        w->other++;
}

static void watch(struct sk_loop *loop, struct watched *w, int fd)
{
    memset(w, 0, sizeof(*w));
    w->io.data = w;
    assert_int_equal(sk_io_start(loop, &w->io, fd, 0, false, on_event), 0);
}

/* Two sends one after the other: exact bytes, in order, each heard. */
static void test_sends_arrive_exact_and_are_heard(void **state)
{
    struct sk_loop *loop = *state;
    struct watched w;
    char buf[32];
    int fds[2];

    pair(fds);
    watch(loop, &w, fds[0]);
    assert_true(sk__io_can_send(&w.io));
    assert_int_equal(sk__io_send(&w.io, "hello, ", 7), 0);
    assert_int_equal(sk__io_send(&w.io, "again", 5), -EBUSY);
    run_for(loop, 20);
    assert_int_equal(w.nsent, 1);
    assert_int_equal(w.sent[0], 7);
    assert_int_equal(sk__io_send(&w.io, "world", 5), 0);
    run_for(loop, 20);
    assert_int_equal(w.nsent, 2);
    assert_int_equal(w.sent[1], 5);
    assert_int_equal(recv(fds[1], buf, sizeof(buf), 0), 12);
    assert_memory_equal(buf, "hello, world", 12);
    assert_int_equal(w.other, 0);
    sk_io_stop(&w.io);
    close(fds[0]);
    close(fds[1]);
}

/* A full socket: the send ends at once with -EAGAIN. */
static void test_send_to_a_full_socket_ends_with_eagain(void **state)
{
    struct sk_loop *loop = *state;
    struct watched w;
    char chunk[4096] = {0};
    int fds[2];

    pair(fds);
    while (send(fds[0], chunk, sizeof(chunk), 0) > 0)
        ;
    watch(loop, &w, fds[0]);
    assert_int_equal(sk__io_send(&w.io, "x", 1), 0);
    run_for(loop, 20);
    assert_int_equal(w.nsent, 1);
    assert_int_equal(w.sent[0], -EAGAIN);
    assert_int_equal(w.other, 0);
    sk_io_stop(&w.io);
    close(fds[0]);
    close(fds[1]);
}

/* Stopped before the loop ran: the send is dropped, and the socket that
 * gets the closed one's number hears nothing of it. */
static void test_stopped_watchers_send_reaches_no_other_socket(void **state)
{
    struct sk_loop *loop = *state;
    struct watched w, next;
    char buf[32];
    int fds[2], again[2];

    for (int i = 0; i < 20; i++) {
        pair(fds);
        watch(loop, &w, fds[0]);
        assert_int_equal(sk__io_send(&w.io, "secret", 6), 0);
        sk_io_stop(&w.io);
        close(fds[0]);
        pair(again);
        assert_int_equal(again[0], fds[0]); /* the number is given again */
        watch(loop, &next, again[0]);
        run_for(loop, 20);
        assert_int_equal(recv(again[1], buf, sizeof(buf), 0), -1);
        assert_int_equal(errno, EAGAIN);
        assert_int_equal(recv(fds[1], buf, sizeof(buf), 0), 0); /* dropped */
        assert_int_equal(w.nsent + next.nsent, 0);
        sk_io_stop(&next.io);
        close(again[0]);
        close(again[1]);
        close(fds[1]);
    }
}

/* Stopped once the send went: it ends by itself, its bytes delivered,
 * heard by nobody; the loop frees its copy. */
static void test_stopped_watchers_send_in_flight_ends_unheard(void **state)
{
    struct sk_loop *loop = *state;
    struct watched w;
    char buf[32];
    int fds[2];

    pair(fds);
    watch(loop, &w, fds[0]);
    assert_int_equal(sk__io_send(&w.io, "gone", 4), 0);
    run_for(loop, 20); /* sent and heard */
    assert_int_equal(w.nsent, 1);
    assert_int_equal(sk__io_send(&w.io, "late", 4), 0);
    sk_io_stop(&w.io);
    run_for(loop, 20);
    assert_int_equal(w.nsent, 1);
    assert_int_equal(recv(fds[1], buf, sizeof(buf), 0), 4);
    assert_memory_equal(buf, "gone", 4);
    close(fds[0]);
    close(fds[1]);
}

/* On epoll there is no ring to send through. */
static void test_epoll_cannot_send(void **state)
{
    struct sk_loop *loop;
    struct watched w;
    int fds[2], why;

    (void)state;
    assert_int_equal(sk_loop_new_backend(&loop, SK_BACKEND_EPOLL, &why), 0);
    pair(fds);
    watch(loop, &w, fds[0]);
    assert_false(sk__io_can_send(&w.io));
    assert_int_equal(sk__io_send(&w.io, "x", 1), -EINVAL);
    sk_io_stop(&w.io);
    close(fds[0]);
    close(fds[1]);
    sk_loop_free(loop);
}

#define URING(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        URING(test_sends_arrive_exact_and_are_heard),
        URING(test_send_to_a_full_socket_ends_with_eagain),
        URING(test_stopped_watchers_send_reaches_no_other_socket),
        URING(test_stopped_watchers_send_in_flight_ends_unheard),
        cmocka_unit_test(test_epoll_cannot_send),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
