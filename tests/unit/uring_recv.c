/* uring_recv.c -- unit tests of receive mode on an io_uring loop
 * (src/loop_uring_recv.c): the chunks come exact, in order, then the end
 * of the stream; input that comes while the watcher asks for nothing is
 * kept and comes, in order, once it reads again; a watcher stopped with
 * chunks left gives their buffers back (the ring never runs dry for
 * good); more sockets ready at once than the ring has buffers all get
 * their bytes; and a socket given the number of a stopped watcher's hears
 * nothing of the old one's input. Skipped where the kernel refuses
 * io_uring or buffer rings. */
#include <errno.h>
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

#define BIG (1 << 20)

struct reader {
    struct sk_io io;
    char *got;
    size_t len, cap;
    int eofs, errors, calls;
    bool take; /* takes its chunks when called */
};

static void on_read(struct sk_io *io, unsigned events)
{
    struct reader *r = io->data;
    const char *data;
    ssize_t n;

    r->calls++;
    if (!(events & SK_READ) || !r->take)
        return;
    while ((n = sk__io_recv(io, &data)) != -EAGAIN) {
        if (n == 0) {
            r->eofs++;
        } else if (n < 0) {
            r->errors++;
        } else {
            assert_true(r->len + (size_t)n <= r->cap);
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
    assert_true(sk__io_recv_on(&r->io));
}

static void reader_end(struct reader *r)
{
    sk_io_stop(&r->io);
    close(r->io.fd);
    free(r->got);
}

static char *pattern(size_t len, unsigned seed)
{
    char *p = malloc(len);

    assert_non_null(p);
    for (size_t i = 0; i < len; i++)
        p[i] = (char)(seed + i * 7 + i / 251);
    return p;
}

/* Writes all of data to fd while the loop runs. */
static void feed(struct sk_loop *loop, int fd, const char *data, size_t len)
{
    size_t off = 0;

    for (int i = 0; off < len && i < 100000; i++) {
        ssize_t n = send(fd, data + off, len - off, 0);
        if (n > 0)
            off += (size_t)n;
        run_for(loop, 1);
    }
    assert_int_equal(off, len);
}

/* 1 MiB through the ring, then the end of the stream. */
static void test_bytes_come_exact_then_the_end(void **state)
{
    struct sk_loop *loop = *state;
    struct reader r;
    char *data = pattern(BIG, 3);
    int fds[2];

    pair(fds);
    reader_start(loop, &r, fds[0], BIG);
    feed(loop, fds[1], data, BIG);
    shutdown(fds[1], SHUT_WR);
    for (int i = 0; i < 200 && r.eofs == 0; i++)
        run_for(loop, 5);
    assert_int_equal(r.len, BIG);
    assert_memory_equal(r.got, data, BIG);
    assert_int_equal(r.eofs, 1);
    assert_int_equal(r.errors, 0);
    reader_end(&r);
    close(fds[1]);
    free(data);
}

/* The watcher stops asking for input (a paused reader) while bytes keep
 * coming: nothing is lost or reordered once it reads again. */
static void test_input_while_not_reading_is_kept_in_order(void **state)
{
    struct sk_loop *loop = *state;
    struct reader r;
    char *data = pattern(256 * 1024, 9);
    int fds[2];
    size_t off = 0;

    pair(fds);
    reader_start(loop, &r, fds[0], 256 * 1024);
    for (int round = 0; off < 256 * 1024; round++) {
        ssize_t n = send(fds[1], data + off, 4096, 0);
        if (n > 0)
            off += (size_t)n;
        /* Reading on and off, every other round. */
        assert_int_equal(sk_io_set(&r.io, round % 2 ? SK_READ : 0), 0);
        run_for(loop, 1);
    }
    assert_int_equal(sk_io_set(&r.io, SK_READ), 0);
    for (int i = 0; i < 200 && r.len < off; i++)
        run_for(loop, 5);
    assert_int_equal(r.len, 256 * 1024);
    assert_memory_equal(r.got, data, 256 * 1024);
    reader_end(&r);
    close(fds[1]);
    free(data);
}

/* Watchers stopped with chunks not taken, many times over the ring's
 * size: their buffers go back, and a reader after them still reads. */
static void test_stopped_watchers_give_their_buffers_back(void **state)
{
    struct sk_loop *loop = *state;
    struct reader r;
    char chunk[1000];
    int fds[2];

    memset(chunk, 'z', sizeof(chunk));
    for (int i = 0; i < 3 * 128; i++) {
        pair(fds);
        reader_start(loop, &r, fds[0], 4096);
        r.take = false;
        assert_int_equal(send(fds[1], chunk, sizeof(chunk), 0), 1000);
        run_for(loop, 2);
        assert_true(r.calls > 0);
        reader_end(&r);
        close(fds[1]);
    }
    pair(fds);
    reader_start(loop, &r, fds[0], 4096);
    assert_int_equal(send(fds[1], chunk, sizeof(chunk), 0), 1000);
    for (int i = 0; i < 100 && r.len < 1000; i++)
        run_for(loop, 5);
    assert_int_equal(r.len, 1000);
    reader_end(&r);
    close(fds[1]);
}

/* More sockets with input at once than the ring has buffers (128): the
 * receives the ring could not serve wait for buffers, and every socket's
 * bytes come exact. */
#define CROWD 300

static void test_more_ready_sockets_than_buffers(void **state)
{
    struct sk_loop *loop = *state;
    struct reader *r = calloc(CROWD, sizeof(*r));
    int peer[CROWD];
    char *data = pattern(20000, 5);
    bool all;

    assert_non_null(r);
    for (int i = 0; i < CROWD; i++) {
        int fds[2];
        pair(fds);
        reader_start(loop, &r[i], fds[0], 20000);
        peer[i] = fds[1];
    }
    run_for(loop, 5);
    for (int i = 0; i < CROWD; i++)
        assert_int_equal(send(peer[i], data, 20000, 0), 20000);
    for (int k = 0; k < 400; k++) {
        run_for(loop, 5);
        all = true;
        for (int i = 0; i < CROWD; i++)
            all = all && r[i].len == 20000;
        if (all)
            break;
    }
    for (int i = 0; i < CROWD; i++) {
        assert_int_equal(r[i].len, 20000);
        assert_memory_equal(r[i].got, data, 20000);
        reader_end(&r[i]);
        close(peer[i]);
    }
    free(r);
    free(data);
}

/* A watcher stopped with input in flight; its descriptor number given to
 * a new socket: the new watcher hears only its own bytes. */
static void test_new_socket_on_the_old_number_hears_only_its_own(void **state)
{
    struct sk_loop *loop = *state;
    struct reader r, next;
    int fds[2], again[2];

    for (int i = 0; i < 20; i++) {
        pair(fds);
        reader_start(loop, &r, fds[0], 4096);
        r.take = false;
        assert_int_equal(send(fds[1], "old", 3, 0), 3);
        run_for(loop, 2);
        assert_int_equal(send(fds[1], "older", 5, 0), 5);
        reader_end(&r);
        close(fds[1]);
        pair(again);
        assert_int_equal(again[0], fds[0]);
        reader_start(loop, &next, again[0], 4096);
        assert_int_equal(send(again[1], "new", 3, 0), 3);
        for (int k = 0; k < 100 && next.len < 3; k++)
            run_for(loop, 2);
        run_for(loop, 5);
        assert_int_equal(next.len, 3);
        assert_memory_equal(next.got, "new", 3);
        reader_end(&next);
        close(again[1]);
    }
}

#define URING(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        URING(test_bytes_come_exact_then_the_end),
        URING(test_input_while_not_reading_is_kept_in_order),
        URING(test_stopped_watchers_give_their_buffers_back),
        URING(test_more_ready_sockets_than_buffers),
        URING(test_new_socket_on_the_old_number_hears_only_its_own),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
