/* pair.c -- sk_pair with no descriptor to spare: it starts and copies
 * (pair_copy.c tests the moving of bytes itself). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sockit.h>

static bool is_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

static void on_done(struct sk_pair *pair, int status, void *data)
{
    (void)pair;
    atomic_store((atomic_int *)data, status);
}

static void *run_loop(void *arg)
{
    sk_loop_run(arg);
    return NULL;
}

static void stop_loop(void *arg)
{
    sk_loop_stop(arg);
}

/* Moves len bytes (byte k is k % 251) from fd to peer, both non-blocking,
 * reading and checking them as they come; fails after 5 s stuck. */
static void move_checked(int fd, int peer, size_t len)
{
    static char buf[64 * 1024];
    size_t sent = 0, got = 0;

    while (got < len) {
        struct pollfd p[2] = {{.fd = fd, .events = sent < len ? POLLOUT : 0},
                              {.fd = peer, .events = POLLIN}};
        assert_true(poll(p, 2, 5000) > 0);
        size_t n = len - sent < sizeof(buf) ? len - sent : sizeof(buf);
        for (size_t k = 0; k < n; k++)
            buf[k] = (char)((sent + k) % 251);
        ssize_t w = n > 0 ? send(fd, buf, n, MSG_DONTWAIT) : 0;
        sent += w > 0 ? (size_t)w : 0;
        ssize_t r = recv(peer, buf, sizeof(buf), MSG_DONTWAIT);
        assert_true(r != 0);
        for (ssize_t k = 0; k < r; k++)
            assert_int_equal((unsigned char)buf[k], (got + (size_t)k) % 251);
        got += r > 0 ? (size_t)r : 0;
    }
}

/* No descriptor left beyond the pair's two sockets: it still starts (a
 * pipe is made only for a large transfer, and lent by the loop), moves a
 * small and a large transfer by copying, and ends with 0; descriptor 0,
 * which a zeroed pipe would have been, stays open. */
static void test_pair_without_descriptors_copies(void **state)
{
    struct rlimit saved, tight;
    struct sk_loop *loop;
    struct sk_pair *pair = NULL;
    atomic_int status = 1;
    pthread_t thread;
    int a[2], b[2], guard;

    (void)state;
    alarm(30);
    assert_int_equal(sk_loop_new(&loop), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, a), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, b), 0);
    /* Descriptor 0 is open whatever the test was given as stdin. */
    if (!is_open(0))
        assert_int_equal(dup2(a[1], 0), 0);
    guard = dup(0);
    assert_true(guard >= 0);
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
    tight = saved;
    tight.rlim_cur = (rlim_t)guard + 1; /* nothing above guard */
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &tight), 0);
    assert_int_equal(
        sk_pair_start(loop, a[0], b[0], 0, on_done, &status, &pair), 0);
    assert_int_equal(pthread_create(&thread, NULL, run_loop, loop), 0);
    move_checked(a[1], b[1], 100);
    move_checked(b[1], a[1], 3 * 1024 * 1024);
    assert_int_equal(shutdown(a[1], SHUT_WR), 0);
    assert_int_equal(shutdown(b[1], SHUT_WR), 0);
    for (int i = 0; i < 5000 && atomic_load(&status) == 1; i++)
        usleep(1000);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
    assert_int_equal(atomic_load(&status), 0);
    assert_int_equal(sk_loop_post(loop, stop_loop, loop), 0);
    pthread_join(thread, NULL);
    assert_false(is_open(a[0]));
    assert_false(is_open(b[0]));
    assert_true(is_open(0));
    assert_true(is_open(guard));
    close(guard);
    close(a[1]);
    close(b[1]);
    sk_loop_free(loop);
    alarm(0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pair_without_descriptors_copies),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
