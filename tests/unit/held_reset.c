/* held_reset.c -- a connection that has read and then holds its input
 * (sk_conn_hold_input()) or is paused hears of its peer's reset at once,
 * on each backend: on_close with -ECONNRESET, not a connection kept open
 * until it reads again. On io_uring it reads through the ring, and a
 * watcher in receive mode that asks for nothing still hears of the error.
 * A UNIX peer that closes while the connection holds its input is no error:
 * what it sent is read once the connection reads again. */
#include "server_fixture.h"

#include <sys/socket.h>

/* What the server's connection read; under f->lock. */
static char got[16];
static size_t got_len;

/* Held this long after the first read (the UNIX test), 0: for good. */
static uint64_t release_ms;
static struct sk_timer release;

static void on_release(struct sk_timer *t)
{
    sk_conn_hold_input(t->data, false);
}

static void on_read_hold(struct sk_conn *c, const char *data, size_t len)
{
    struct fixture *f = fixture_of_conn(c);

    pthread_mutex_lock(&f->lock);
    if (f->seen.reads++ == 0) {
        sk_conn_hold_input(c, true);
        if (release_ms > 0) {
            release.data = c;
            assert_int_equal(
                sk_timer_start(sk_conn_loop(c), &release, release_ms, 0), 0);
        }
    }
    if (got_len + len <= sizeof(got)) {
        memcpy(got + got_len, data, len);
        got_len += len;
    }
    announce(f);
}

static void on_close_hold(struct sk_conn *c, int status)
{
    sk_timer_stop(&release);
    on_close_record(c, status);
}

static const struct sk_handler hold_handler = {
    .on_open = on_open_record,
    .on_read = on_read_hold,
    .on_close = on_close_hold,
};

static void serve_holding(struct fixture *f, const char *text, uint64_t ms)
{
    struct sk_server_config cfg = {0};

    release_ms = ms;
    sk_timer_init(&release, on_release);
    got_len = 0;
    serve(f, &hold_handler, cfg, text);
}

/* Closes fd with a reset (SO_LINGER of 0). */
static void reset(int fd)
{
    struct linger l = {.l_onoff = 1, .l_linger = 0};

    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l)), 0);
    close(fd);
}

static void test_held_connection_hears_the_reset(void **state)
{
    struct fixture *f = *state;
    int fd;

    serve_holding(f, "tcp://127.0.0.1:0", 0);
    fd = connect_listener(f, 0);
    assert_int_equal(send(fd, "x", 1, 0), 1);
    wait_for(f, &f->seen.reads, 1, "reads");
    reset(fd);
    wait_for(f, &f->seen.closes, 1, "closes after the reset");
    assert_int_equal(snapshot(f).statuses[0], -ECONNRESET);
    stop_and_free(f);
}

/* Held, the UNIX peer gone after sending more (its socket hangs up at
 * once): no close for that; once the connection reads again, the rest
 * comes, then the end, and the close is clean. */
static void test_held_unix_peer_gone_is_read_later(void **state)
{
    struct fixture *f = *state;
    char text[160];
    int fd;

    snprintf(text, sizeof(text), "unix:%s", f->path);
    serve_holding(f, text, 300);
    fd = connect_listener(f, 0);
    assert_int_equal(send(fd, "ab", 2, 0), 2);
    wait_for(f, &f->seen.reads, 1, "reads");
    assert_int_equal(send(fd, "cd", 2, 0), 2);
    close(fd);
    wait_for(f, &f->seen.closes, 1, "closes after the rest");
    pthread_mutex_lock(&f->lock);
    assert_int_equal(got_len, 4);
    assert_memory_equal(got, "abcd", 4);
    pthread_mutex_unlock(&f->lock);
    assert_int_equal(snapshot(f).statuses[0], 0);
    stop_and_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        WITH_THREADS(test_held_connection_hears_the_reset, 1),
        WITH_THREADS(test_held_unix_peer_gone_is_read_later, 1),
    };

    return RUN_ON_EACH_BACKEND(tests);
}
