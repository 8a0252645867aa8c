/* pair.c -- sk_pair_start() when it cannot start: both sockets closed,
 * nothing else. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sockit.h>

static void never_done(struct sk_pair *pair, int status, void *data)
{
    (void)pair;
    (void)status;
    (void)data;
    fail_msg("done ran for a pair that never started");
}

static bool is_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

/* No descriptor left for the first pipe: the pair fails with EMFILE,
 * closes its two sockets, and closes no descriptor it never made (a
 * zeroed pipe of the second direction was descriptor 0). */
static void test_pair_without_descriptors_closes_only_its_sockets(void **state)
{
    struct rlimit saved, tight;
    struct sk_loop *loop;
    struct sk_pair *pair = NULL;
    int a[2], b[2], guard;

    (void)state;
    assert_int_equal(sk_loop_new(&loop), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, a), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, b), 0);
    /* Descriptor 0 is open whatever the test was given as stdin. */
    if (!is_open(0))
        assert_int_equal(dup2(a[1], 0), 0);
    guard = dup(0);
    assert_true(guard >= 0);
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
    tight = saved;
    tight.rlim_cur = (rlim_t)guard + 1; /* nothing above guard */
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &tight), 0);
    int err = sk_pair_start(loop, a[0], b[0], 0, never_done, NULL, &pair);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
    assert_int_equal(err, -EMFILE);
    assert_false(is_open(a[0]));
    assert_false(is_open(b[0]));
    assert_true(is_open(0));
    assert_true(is_open(guard));
    close(guard);
    close(a[1]);
    close(b[1]);
    sk_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pair_without_descriptors_closes_only_its_sockets),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
