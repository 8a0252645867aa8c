/* uring_fixture.h -- what the unit tests of the io_uring backend's own
 * paths (uring_send.c, uring_recv.c) share: a loop on io_uring per test
 * (the test skipped where the kernel refuses io_uring), run for a while,
 * and a pair of UNIX stream sockets. Included by those files after
 * cmocka.h; every function is static. */
#ifndef SOCKIT_TESTS_URING_FIXTURE_H
#define SOCKIT_TESTS_URING_FIXTURE_H

#include <sys/socket.h>

static void on_stop(struct sk_timer *t)
{
    sk_loop_stop(t->data);
}

static void run_for(struct sk_loop *loop, uint64_t ms)
{
    struct sk_timer t;

    sk_timer_init(&t, on_stop);
    t.data = loop;
    assert_int_equal(sk_timer_start(loop, &t, ms, 0), 0);
    assert_int_equal(sk_loop_run(loop), 0);
    sk_timer_stop(&t);
}

static int setup(void **state)
{
    struct sk_loop *loop;
    int why;

    if (sk_loop_new_backend(&loop, SK_BACKEND_IO_URING, &why) < 0)
        return -1;
    if (sk_loop_backend(loop) != SK_BACKEND_IO_URING) {
        sk_loop_free(loop);
        skip();
    }
    *state = loop;
    return 0;
}

static int teardown(void **state)
{
    sk_loop_free(*state);
    return 0;
}

static void pair(int fds[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds),
                     0);
}

#endif
