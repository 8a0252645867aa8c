/* write_through.c -- unit tests of a stream connection's long writes
 * (src/conn_write.c): with nothing queued, a write of 16 KiB or more goes
 * to the socket at once, from the caller's bytes; what the kernel does not
 * take, and anything written behind queued bytes, is queued in order; and
 * the handler hears on_drain after output that went straight out, as after
 * a queue that emptied (a short one, which an io_uring loop sends through
 * its ring, too). Each runs on epoll and on io_uring. */
#include "server_fixture.h"

#include <sys/socket.h>

#define LONG (64 * 1024)
#define SHORT 100

/* What the handler wrote, in order, and what it saw. */
enum plan {
    LONG_ONLY,
    SHORT_THEN_LONG,
    LONG_THEN_SHORT,
    LONG_UNREAD,
    STREAM,
    SHORT_ONLY
};

/* STREAM: on_drain writes the next long piece, STREAM_PIECES in all. */
#define STREAM_PIECES 64

static enum plan plan;
static size_t pending_after;
static int drains, pieces;
static char long_bytes[LONG];

static void fill(void)
{
    for (size_t i = 0; i < LONG; i++)
        long_bytes[i] = (char)('a' + i % 26);
}

static int on_open_plan(struct sk_conn *c)
{
    struct fixture *f = fixture_of_conn(c);
    int big = 4 << 20, small = 4096;
    int fd = sk_conn_fd(c);
    int err = 0;

    if (plan == LONG_UNREAD)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    else
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    if (plan == SHORT_THEN_LONG || plan == SHORT_ONLY)
        err |= sk_conn_write(c, "s", 1);
    if (plan != SHORT_ONLY)
        err |= sk_conn_write(c, long_bytes, LONG);
    pieces = 1;
    pthread_mutex_lock(&f->lock);
    pending_after = sk_conn_pending(c);
    pthread_mutex_unlock(&f->lock);
    if (plan == LONG_THEN_SHORT)
        err |= sk_conn_write(c, "s", 1);
    pthread_mutex_lock(&f->lock);
    f->seen.opens++;
    f->seen.write_errors = err != 0;
    announce(f);
    return 0;
}

static void on_drain_count(struct sk_conn *c)
{
    struct fixture *f = fixture_of_conn(c);

    if (plan == STREAM && pieces < STREAM_PIECES) {
        if (sk_conn_write(c, long_bytes, LONG) == 0)
            pieces++;
        return;
    }
    pthread_mutex_lock(&f->lock);
    drains++;
    f->seen.reads++; /* announces the drain to wait_for() */
    announce(f);
}

static const struct sk_handler plan_handler = {
    .on_open = on_open_plan,
    .on_drain = on_drain_count,
    .on_close = on_close_record,
};

/* Serves under plan p and returns a client of it, after on_open. */
static int start(struct fixture *f, enum plan p)
{
    int fd;

    plan = p;
    drains = 0;
    fill();
    serve(f, &plan_handler, defaults, "tcp://127.0.0.1:0");
    if (p == LONG_UNREAD) {
        fd = connect_slow_reader(f);
    } else {
        struct sk_endpoint ep = listener(f, 0);
        fd = client_connect_rcvbuf(&ep, 8 << 20);
    }
    wait_for(f, &f->seen.opens, 1, "opens");
    assert_int_equal(snapshot(f).write_errors, 0);
    return fd;
}

static void expect_bytes(int fd, const char *want, size_t len)
{
    char *got = malloc(len);

    assert_non_null(got);
    recv_exact(fd, got, len);
    assert_memory_equal(got, want, len);
    free(got);
}

static void test_long_write_goes_out_at_once(void **state)
{
    struct fixture *f = *state;
    int fd = start(f, LONG_ONLY);

    assert_int_equal(pending_after, 0); /* nothing copied into the queue */
    expect_bytes(fd, long_bytes, LONG);
    wait_for(f, &f->seen.reads, 1, "on_drain after the long write");
    pthread_mutex_lock(&f->lock);
    assert_int_equal(drains, 1);
    pthread_mutex_unlock(&f->lock);
    finish_client(fd);
    stop_and_free(f);
}

static void test_long_write_behind_queued_bytes_keeps_its_place(void **state)
{
    struct fixture *f = *state;
    int fd = start(f, SHORT_THEN_LONG);

    assert_int_equal(pending_after, 1 + LONG); /* all of it queued */
    expect_bytes(fd, "s", 1);
    expect_bytes(fd, long_bytes, LONG);
    finish_client(fd);
    stop_and_free(f);
}

static void test_short_write_after_a_long_one_follows_it(void **state)
{
    struct fixture *f = *state;
    int fd = start(f, LONG_THEN_SHORT);

    assert_int_equal(pending_after, 0);
    expect_bytes(fd, long_bytes, LONG);
    expect_bytes(fd, "s", 1);
    finish_client(fd);
    stop_and_free(f);
}

static void test_what_the_kernel_refuses_is_queued(void **state)
{
    struct fixture *f = *state;
    int fd = start(f, LONG_UNREAD);

    /* A small send buffer and a client that has not read: some went, the
     * rest waits in the queue, and all of it arrives, in order. */
    assert_true(pending_after > 0);
    assert_true(pending_after < LONG);
    expect_bytes(fd, long_bytes, LONG);
    wait_for(f, &f->seen.reads, 1, "on_drain once the queue emptied");
    finish_client(fd);
    stop_and_free(f);
}

/* A long stream that on_drain feeds piece by piece, each written straight
 * out: on_drain must come after each, also once the flush rounds of an
 * iteration are over (the socket is then watched for writability). */
static void test_stream_fed_by_on_drain_never_stalls(void **state)
{
    struct fixture *f = *state;
    int fd = start(f, STREAM);

    for (int i = 0; i < STREAM_PIECES; i++)
        expect_bytes(fd, long_bytes, LONG);
    wait_for(f, &f->seen.reads, 1, "on_drain after the last piece");
    finish_client(fd);
    stop_and_free(f);
}

/* A short write, queued (and on io_uring sent through the ring): on_drain
 * once it has gone. */
static void test_short_write_is_followed_by_on_drain(void **state)
{
    struct fixture *f = *state;
    int fd = start(f, SHORT_ONLY);

    assert_int_equal(pending_after, 1);
    expect_bytes(fd, "s", 1);
    wait_for(f, &f->seen.reads, 1, "on_drain after the short write");
    pthread_mutex_lock(&f->lock);
    assert_int_equal(drains, 1);
    pthread_mutex_unlock(&f->lock);
    finish_client(fd);
    stop_and_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        WITH_THREADS(test_long_write_goes_out_at_once, 1),
        WITH_THREADS(test_long_write_behind_queued_bytes_keeps_its_place, 1),
        WITH_THREADS(test_short_write_after_a_long_one_follows_it, 1),
        WITH_THREADS(test_what_the_kernel_refuses_is_queued, 1),
        WITH_THREADS(test_stream_fed_by_on_drain_never_stalls, 1),
        WITH_THREADS(test_short_write_is_followed_by_on_drain, 1),
    };

    return RUN_ON_EACH_BACKEND(tests);
}
