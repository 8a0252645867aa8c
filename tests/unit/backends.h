/* backends.h -- a group of unit tests run on each loop backend: epoll, then
 * io_uring (which makes epoll loops again where the kernel refuses it).
 * test_backend says which one runs now (SK_BACKEND_DEFAULT outside such a
 * run). Included after cmocka.h and sockit.h; every function is static. */
#ifndef SOCKIT_TESTS_BACKENDS_H
#define SOCKIT_TESTS_BACKENDS_H

static enum sk_backend test_backend = SK_BACKEND_DEFAULT;

/* The number of tests that failed, over both runs. */
__attribute__((unused)) static int
run_on_each_backend(const struct CMUnitTest *tests, size_t n)
{
    int failed;

    test_backend = SK_BACKEND_EPOLL;
    failed = _cmocka_run_group_tests("epoll", tests, n, NULL, NULL);
    test_backend = SK_BACKEND_IO_URING;
    failed += _cmocka_run_group_tests("io_uring", tests, n, NULL, NULL);
    test_backend = SK_BACKEND_DEFAULT;
    return failed;
}

#define RUN_ON_EACH_BACKEND(tests)                                             \
    run_on_each_backend(tests, sizeof(tests) / sizeof((tests)[0]))

#endif
