/* hangup.c -- unit tests of a UNIX peer that closes for good: its socket
 * reports a hang-up at once, whatever is watched, and that is not an
 * error while the connection has nothing to send. An outbound connection
 * (sk_conn_connect()) to a listener the test owns: the test accepts,
 * sends, closes, then runs the loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <sockit.h>

#define ALARM_S 30
#define GUARD_MS 5000 /* the loop gives up after this long */
#define LATER_MS 20   /* what the client does after the peer is gone */

enum later { LATER_CLOSE, LATER_WRITE_CLOSE };

struct run {
    struct sk_loop *loop;
    struct sk_conn *c;
    struct sk_timer later, guard;
    enum later what;
    bool hold;    /* hold the input from on_open on */
    char got[16]; /* what was read */
    size_t got_len;
    int eofs, closes;
    int status; /* of on_close */
    bool timed_out;
};

static void do_later(struct sk_timer *t)
{
    struct run *r = t->data;

    if (r->what == LATER_WRITE_CLOSE)
        assert_int_equal(sk_conn_write(r->c, "x", 1), 0);
    sk_conn_close(r->c);
}

static void on_guard(struct sk_timer *t)
{
    struct run *r = t->data;

    r->timed_out = true;
    sk_loop_stop(r->loop);
}

static int on_open(struct sk_conn *c)
{
    struct run *r = sk_conn_data(c);

    if (r->hold) {
        sk_conn_hold_input(c, true);
        assert_int_equal(sk_timer_start(r->loop, &r->later, LATER_MS, 0), 0);
    }
    return 0;
}

static void on_read(struct sk_conn *c, const char *data, size_t len)
{
    struct run *r = sk_conn_data(c);

    assert_true(r->got_len + len <= sizeof(r->got));
    memcpy(r->got + r->got_len, data, len);
    r->got_len += len;
}

static void on_eof(struct sk_conn *c)
{
    struct run *r = sk_conn_data(c);

    r->eofs++;
    assert_int_equal(sk_timer_start(r->loop, &r->later, LATER_MS, 0), 0);
}

static void on_close(struct sk_conn *c, int status)
{
    struct run *r = sk_conn_data(c);

    r->closes++;
    r->status = status;
    sk_timer_stop(&r->later);
    sk_loop_stop(r->loop);
}

static const struct sk_handler handler = {
    .on_open = on_open,
    .on_read = on_read,
    .on_eof = on_eof,
    .on_close = on_close,
};

/* Connects r's client to a fresh listener of type, then plays the peer:
 * accepts, sends "hi", closes. The loop runs after that. */
static void run_against_gone_peer(struct run *r, int type)
{
    char dir[] = "/tmp/sockit-hangup-XXXXXX";
    char text[sizeof(struct sockaddr_un) + 16];
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    struct sk_endpoint ep;
    struct sk_conn_options o = {.handler = &handler, .data = r};
    int lfd, fd;

    alarm(ALARM_S);
    assert_non_null(mkdtemp(dir));
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/s", dir);
    lfd = socket(AF_UNIX, type, 0);
    assert_true(lfd >= 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    assert_int_equal(listen(lfd, 4), 0);
    snprintf(text, sizeof(text), "%s:%s",
             type == SOCK_SEQPACKET ? "unixpacket" : "unix", sun.sun_path);
    assert_int_equal(sk_endpoint_parse(&ep, text, 0), 0);

    assert_int_equal(sk_loop_new(&r->loop), 0);
    sk_timer_init(&r->later, do_later);
    r->later.data = r;
    sk_timer_init(&r->guard, on_guard);
    r->guard.data = r;
    assert_int_equal(sk_timer_start(r->loop, &r->guard, GUARD_MS, 0), 0);
    assert_int_equal(sk_conn_connect(r->loop, &ep, &o, &r->c), 0);
    fd = accept(lfd, NULL, NULL);
    assert_true(fd >= 0);
    assert_int_equal(send(fd, "hi", 2, 0), 2);
    close(fd);
    close(lfd);

    assert_int_equal(sk_loop_run(r->loop), 0);
    sk_timer_stop(&r->guard);
    sk_timer_stop(&r->later);
    sk_loop_free(r->loop);
    unlink(sun.sun_path);
    rmdir(dir);
    assert_false(r->timed_out);
    assert_int_equal(r->closes, 1);
}

/* The input ended and the peer is gone; closing later is a clean close. */
static void check_close_after_eof_is_clean(int type)
{
    struct run r = {.what = LATER_CLOSE};

    run_against_gone_peer(&r, type);
    assert_int_equal(r.eofs, 1);
    assert_int_equal(r.got_len, 2);
    assert_memory_equal(r.got, "hi", 2);
    assert_int_equal(r.status, 0);
}

static void test_stream_close_after_eof_is_clean(void **state)
{
    check_close_after_eof_is_clean(SOCK_STREAM);
}

static void test_seqpacket_close_after_eof_is_clean(void **state)
{
    check_close_after_eof_is_clean(SOCK_SEQPACKET);
}

/* A send to the gone peer ends the connection with the send's error. */
static void check_write_after_eof_fails(int type)
{
    struct run r = {.what = LATER_WRITE_CLOSE};

    run_against_gone_peer(&r, type);
    assert_int_equal(r.eofs, 1);
    assert_int_equal(r.status, -EPIPE);
}

static void test_stream_write_after_eof_fails(void **state)
{
    check_write_after_eof_fails(SOCK_STREAM);
}

static void test_seqpacket_write_after_eof_fails(void **state)
{
    check_write_after_eof_fails(SOCK_SEQPACKET);
}

/* Held while the peer went: unwatched, yet a write and a close still end
 * the connection rather than leave it waiting for a read that never
 * comes. */
static void check_held_write_ends(int type)
{
    struct run r = {.what = LATER_WRITE_CLOSE, .hold = true};

    run_against_gone_peer(&r, type);
    assert_int_equal(r.eofs, 0);
    assert_int_equal(r.got_len, 0);
    assert_int_equal(r.status, -EPIPE);
}

static void test_stream_held_write_ends(void **state)
{
    check_held_write_ends(SOCK_STREAM);
}

static void test_seqpacket_held_write_ends(void **state)
{
    check_held_write_ends(SOCK_SEQPACKET);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_close_after_eof_is_clean),
        cmocka_unit_test(test_seqpacket_close_after_eof_is_clean),
        cmocka_unit_test(test_stream_write_after_eof_fails),
        cmocka_unit_test(test_seqpacket_write_after_eof_fails),
        cmocka_unit_test(test_stream_held_write_ends),
        cmocka_unit_test(test_seqpacket_held_write_ends),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
