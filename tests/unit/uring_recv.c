/* uring_recv.c -- unit tests of receive mode on an io_uring loop
 * (src/loop_uring_recv.c): the chunks come exact, in order, then the end
 * of the stream, through multishot receives and through the one-shot ones
 * of kernels that cannot limit them; a wait takes less than 64 KiB for a
 * watcher, however much its socket holds; input that comes while the
 * watcher asks for nothing is kept and comes, in order, once it reads
 * again; a watcher stopped with chunks left gives their buffers back (the
 * ring never runs dry for good), and so does one that stops reading (it
 * starves no other); one that asks for nothing hears of a hang-up, once;
 * more sockets ready at once than the ring has buffers all get their
 * bytes; a socket given the number of a stopped watcher's hears nothing of
 * the old one's input; and a receive cancelled then armed again is never
 * armed twice. Skipped where the kernel refuses io_uring or buffer rings. */
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

#define BIG (1 << 20)

struct reader {
    struct sk_io io;
    char *got;
    size_t len, cap;
    int eofs, errors, calls;
    size_t most; /* the most bytes taken in one call */
    bool take;   /* takes its chunks when called */
};

static void on_read(struct sk_io *io, unsigned events)
{
    struct reader *r = io->data;
    const char *data;
    size_t before = r->len;
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
    if (r->len - before > r->most)
        r->most = r->len - before;
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

/* The same through one-shot receives. */
static void test_bytes_come_exact_through_one_shot_receives(void **state)
{
    sk__io_recv_oneshot(*state);
    test_bytes_come_exact_then_the_end(state);
}

/* A socket that holds far more than 64 KiB: no call hears of more than
 * that at once, as a read(2) of 64 KiB would take at most 64 KiB, so that
 * a connection that stops reading holds little of the peer's input. */
#define HELD (64 * 1024)

static void test_a_wait_takes_less_than_64_kib(void **state)
{
    struct sk_loop *loop = *state;
    struct reader r;
    char *data = pattern(BIG, 11);
    int fds[2], size = 4 << 20;
    size_t off = 0;
    ssize_t n;

    pair(fds);
    setsockopt(fds[1], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
    while (off < BIG && (n = send(fds[1], data + off, BIG - off, 0)) > 0)
        off += (size_t)n;
    assert_true(off > 3 * HELD); /* the socket holds much more */
    reader_start(loop, &r, fds[0], BIG);
    feed(loop, fds[1], data + off, BIG - off);
    for (int i = 0; i < 200 && r.len < BIG; i++)
        run_for(loop, 5);
    assert_int_equal(r.len, BIG);
    assert_memory_equal(r.got, data, BIG);
    assert_true(r.most > 0);
    assert_true(r.most < HELD);
    reader_end(&r);
    close(fds[1]);
    free(data);
}

static void test_a_one_shot_wait_takes_less_than_64_kib(void **state)
{
    sk__io_recv_oneshot(*state);
    test_a_wait_takes_less_than_64_kib(state);
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

/* More sockets with input at once than the ring has buffers (64): the
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

/* A watcher that asks for nothing hears of its peer's hang-up, once (as
 * epoll tells it whatever is asked; a poll for no events, not level), and
 * what came before it is still there once it reads again. */
static void test_a_watcher_asking_nothing_hears_the_hang_up(void **state)
{
    struct sk_loop *loop = *state;
    struct reader r;
    int fds[2];

    pair(fds);
    reader_start(loop, &r, fds[0], 64);
    assert_int_equal(send(fds[1], "ab", 2, 0), 2);
    for (int i = 0; i < 100 && r.len < 2; i++)
        run_for(loop, 2);
    r.take = false;
    assert_int_equal(send(fds[1], "cd", 2, 0), 2);
    assert_int_equal(sk_io_set(&r.io, 0), 0);
    run_for(loop, 5);
    r.calls = 0;
    close(fds[1]);
    run_for(loop, 50);
    assert_int_equal(r.calls, 1);
    r.take = true;
    assert_int_equal(sk_io_set(&r.io, SK_READ), 0);
    for (int i = 0; i < 100 && r.eofs == 0; i++)
        run_for(loop, 2);
    assert_int_equal(r.len, 4);
    assert_memory_equal(r.got, "abcd", 4);
    assert_int_equal(r.eofs, 1);
    reader_end(&r);
}

/* Watchers that take every buffer they can, then stop asking for SK_READ
 * (connections paused or held): their chunks leave the ring, and another
 * socket's input still comes, as on epoll. */
#define HOGS 100

static void test_paused_watchers_do_not_starve_others(void **state)
{
    struct sk_loop *loop = *state;
    struct reader *hog = calloc(HOGS, sizeof(*hog)), other;
    int peer[HOGS], b[2];
    char *data = pattern(64 * 1024, 1);

    assert_non_null(hog);
    for (int i = 0; i < HOGS; i++) {
        int fds[2];
        pair(fds);
        reader_start(loop, &hog[i], fds[0], 64 * 1024);
        hog[i].take = false;
        peer[i] = fds[1];
        assert_int_equal(send(peer[i], data, 64 * 1024, 0), 64 * 1024);
    }
    pair(b);
    reader_start(loop, &other, b[0], 64);
    run_for(loop, 20); /* HOGS x 32 KiB: more than the ring's 2 MiB */
    for (int i = 0; i < HOGS; i++)
        assert_int_equal(sk_io_set(&hog[i].io, 0), 0);
    run_for(loop, 5);
    assert_int_equal(send(b[1], "hi", 2, 0), 2);
    for (int k = 0; k < 100 && other.len < 2; k++)
        run_for(loop, 2);
    assert_int_equal(other.len, 2);
    assert_memory_equal(other.got, "hi", 2);
    reader_end(&other);
    close(b[1]);
    for (int i = 0; i < HOGS; i++) {
        reader_end(&hog[i]);
        close(peer[i]);
    }
    free(hog);
    free(data);
}

/* A watcher stops reading and reads again, over and over, while enough
 * other completions come that a cancelled receive's last one is reaped
 * only after its watcher asked to read again (the loop takes 256 a
 * wait). No receive may be left armed beside the next: once the watcher
 * stops and its socket is closed, the peer hears the hang-up (a receive
 * still armed would hold the socket open). */
#define BUSY 300
#define TOGGLES 40

struct busy {
    struct sk_io io;
    struct reader *target;
    unsigned *calls;
};

static void on_busy(struct sk_io *io, unsigned events)
{
    struct busy *b = io->data;
    unsigned n = (*b->calls)++;

    if (n % 256 == 0 && n / 256 < TOGGLES)
        assert_int_equal(sk_io_set(&b->target->io, n / 256 % 2 ? SK_READ : 0),
                         0);
}

static void test_a_receive_cancelled_then_armed_is_armed_once(void **state)
{
    struct sk_loop *loop = *state;
    struct busy *busy = calloc(BUSY, sizeof(*busy));
    int peer[BUSY], a[2];
    unsigned calls = 0;
    struct reader r;
    struct pollfd p;

    assert_non_null(busy);
    pair(a);
    reader_start(loop, &r, a[0], 64);
    for (int i = 0; i < BUSY; i++) {
        int fds[2];
        pair(fds);
        assert_int_equal(send(fds[1], "b", 1, 0), 1);
        busy[i].io.data = &busy[i];
        busy[i].target = &r;
        busy[i].calls = &calls;
        assert_int_equal(
            sk_io_start(loop, &busy[i].io, fds[0], SK_READ, false, on_busy), 0);
        peer[i] = fds[1];
    }
    for (int k = 0; k < 2000 && calls < (TOGGLES + 1) * 256; k++)
        run_for(loop, 1);
    assert_true(calls >= (TOGGLES + 1) * 256);
    for (int i = 0; i < BUSY; i++) {
        sk_io_stop(&busy[i].io);
        close(busy[i].io.fd);
        close(peer[i]);
    }
    assert_int_equal(send(a[1], "ok", 2, 0), 2); /* it reads again */
    for (int k = 0; k < 100 && r.len < 2; k++)
        run_for(loop, 2);
    assert_int_equal(r.len, 2);
    reader_end(&r);
    p = (struct pollfd){.fd = a[1], .events = POLLIN};
    for (int k = 0; k < 50 && !(p.revents & POLLHUP); k++) {
        run_for(loop, 2);
        assert_true(poll(&p, 1, 0) >= 0);
    }
    assert_true(p.revents & POLLHUP);
    close(a[1]);
    free(busy);
}

#define URING(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        URING(test_bytes_come_exact_then_the_end),
        URING(test_bytes_come_exact_through_one_shot_receives),
        URING(test_a_wait_takes_less_than_64_kib),
        URING(test_a_one_shot_wait_takes_less_than_64_kib),
        URING(test_input_while_not_reading_is_kept_in_order),
        URING(test_stopped_watchers_give_their_buffers_back),
        URING(test_a_watcher_asking_nothing_hears_the_hang_up),
        URING(test_paused_watchers_do_not_starve_others),
        URING(test_more_ready_sockets_than_buffers),
        URING(test_new_socket_on_the_old_number_hears_only_its_own),
        URING(test_a_receive_cancelled_then_armed_is_armed_once),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
