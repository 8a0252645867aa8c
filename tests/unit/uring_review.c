/* uring_review.c -- a unit test of receive mode (src/loop_uring_recv.c):
 * a watcher that stops asking for SK_READ with chunks still queued gives
 * their ring buffers back, so that one that took the whole ring does not
 * starve every other receive on the loop while it does not read. Skipped
 * where the kernel refuses io_uring or buffer rings. */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "internal.h"
#include "uring_fixture.h"

struct reader {
    struct sk_io io;
    char *got;
    size_t len, cap;
    int eofs, errors;
    bool take; /* takes its chunks when called */
};

static void on_read(struct sk_io *io, unsigned events)
{
    struct reader *r = io->data;
    const char *data;
    ssize_t n;

    if (!(events & SK_READ) || !r->take)
        return;
    while ((n = sk__io_recv(io, &data)) != -EAGAIN) {
        if (n == 0)
            r->eofs++;
        else if (n < 0)
            r->errors++;
        else if (r->len + (size_t)n <= r->cap) {
            memcpy(r->got + r->len, data, (size_t)n);
            r->len += (size_t)n;
        }
        if (n <= 0)
            break;
    }
}

static void reader_start(struct sk_loop *loop, struct reader *r, int fd,
                         size_t cap)
{
    memset(r, 0, sizeof(*r));
    r->got = malloc(cap);
    r->cap = cap;
    r->take = true;
    r->io.data = r;
    assert_non_null(r->got);
    assert_int_equal(sk_io_start(loop, &r->io, fd, SK_READ, false, on_read), 0);
    if (!sk__io_recv_start(&r->io)) {
        sk_io_stop(&r->io);
        free(r->got);
        skip(); /* no buffer ring here */
    }
}

static void reader_end(struct reader *r)
{
    sk_io_stop(&r->io);
    close(r->io.fd);
    free(r->got);
}

/* 128 buffers of 16 KiB (loop_uring.c): what fills the ring, and more. */
#define RING_BYTES (128 * 16 * 1024)
#define HOG_BYTES (RING_BYTES + 256 * 1024)

/* A watcher takes every buffer of the ring (it reads slower than its
 * input comes), then stops asking for SK_READ (a connection paused or
 * held): another socket's input must still come, as on epoll. */
static void test_paused_watcher_does_not_starve_others(void **state)
{
    struct sk_loop *loop = *state;
    struct reader hog, other;
    int a[2], b[2];
    char *data = calloc(1, HOG_BYTES);
    size_t off = 0;

    assert_non_null(data);
    pair(a);
    pair(b);
    reader_start(loop, &hog, a[0], HOG_BYTES);
    hog.take = false;
    reader_start(loop, &other, b[0], 64);
    for (int i = 0; i < 3000 && off < HOG_BYTES; i++) {
        ssize_t n = send(a[1], data + off, HOG_BYTES - off, 0);
        if (n > 0)
            off += (size_t)n;
        run_for(loop, 1);
    }
    assert_true(off > RING_BYTES); /* the ring took all it could */
    assert_int_equal(sk_io_set(&hog.io, 0), 0);
    run_for(loop, 5);
    assert_int_equal(send(b[1], "hi", 2, 0), 2);
    for (int k = 0; k < 100 && other.len < 2; k++)
        run_for(loop, 2);
    assert_int_equal(other.len, 2);
    assert_memory_equal(other.got, "hi", 2);
    reader_end(&other);
    reader_end(&hog);
    close(a[1]);
    close(b[1]);
    free(data);
}

#define URING(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        URING(test_paused_watcher_does_not_starve_others),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
