/* stats.c -- unit tests of the per-listener counters (src/stats.c and the
 * places that count: worker.c, conn.c, conn_life.c, dgram.c): a server
 * with a TCP and a UDP listener, whose counters are checked exactly, each
 * listener's alone: accepted, closed, active, bytes of an echo both ways,
 * datagrams in and out; a refusal past max_conns; an idle timeout; the
 * sum of sk_server_get_stats(). Every test runs with one worker and with
 * two. */
#include "server_fixture.h"

#define TCP 0
#define UDP 1

static struct sk_server_stats listener_stats(struct fixture *f, size_t i)
{
    struct sk_server_stats s;

    assert_int_equal(sk_server_get_listener_stats(f->srv, i, &s), 0);
    return s;
}

static uint64_t field_at(const struct sk_server_stats *s, size_t off)
{
    uint64_t v;

    memcpy(&v, (const char *)s + off, sizeof(v));
    return v;
}

/* Waits until listener i's counter at off is n (a counter is stored just
 * after the event the client sees: a reply sent, a socket closed). */
static void wait_stat(struct fixture *f, size_t i, size_t off, uint64_t n,
                      const char *what)
{
    uint64_t got = 0;

    for (int tick = 0; tick < WAIT_S * 200; tick++) {
        struct sk_server_stats s = listener_stats(f, i);
        if ((got = field_at(&s, off)) >= n)
            break;
        usleep(5000);
    }
    if (got != n)
        fail_msg("listener %zu %s: %llu, want %llu", i, what,
                 (unsigned long long)got, (unsigned long long)n);
}

#define WAIT_STAT(f, i, field, n)                                              \
    wait_stat(f, i, offsetof(struct sk_server_stats, field), n, #field)

/* The two listeners, TCP first. */
static void serve_two(struct fixture *f, struct sk_server_config cfg)
{
    server_new(f, &echo_handler, cfg);
    assert_int_equal(server_listen(f, "tcp://127.0.0.1:0", NULL), 0);
    assert_int_equal(server_listen(f, "udp://127.0.0.1:0", NULL), 0);
    server_start(f);
}

static void expect_zero(const struct sk_server_stats *s)
{
    static const struct sk_server_stats zero = {0};

    assert_memory_equal(s, &zero, sizeof(zero));
}

/* Before the run: zeros, and -EINVAL past the listeners. */
static void test_stats_zero_before_run_and_bad_index(void **state)
{
    struct fixture *f = *state;
    struct sk_server_stats s;

    server_new(f, &echo_handler, defaults);
    assert_int_equal(sk_server_get_listener_stats(f->srv, 0, &s), -EINVAL);
    assert_int_equal(server_listen(f, "tcp://127.0.0.1:0", NULL), 0);
    s = listener_stats(f, 0);
    expect_zero(&s);
    sk_server_get_stats(f->srv, &s);
    expect_zero(&s);
    assert_int_equal(sk_server_get_listener_stats(f->srv, 1, &s), -EINVAL);
    server_start(f);
    s = listener_stats(f, 0);
    expect_zero(&s);
    stop_and_free(f);
}

/* Three echo clients, then four datagrams: each listener counts its own,
 * exactly; active is accepted - closed throughout. */
static void test_stats_per_listener_exact(void **state)
{
    static const char *const msgs[] = {"one\n", "second line\n",
                                       "and a third, longer one\n"};
    struct fixture *f = *state;
    struct sk_server_stats t, u, sum;
    uint64_t bytes = 0;
    int fds[3];

    serve_two(f, defaults);
    for (int i = 0; i < 3; i++) {
        fds[i] = connect_listener(f, TCP);
        expect_echo(fds[i], msgs[i]);
        expect_echo(fds[i], msgs[i]);
        bytes += 2 * strlen(msgs[i]);
    }
    WAIT_STAT(f, TCP, bytes_out, bytes);
    t = listener_stats(f, TCP);
    assert_int_equal(t.accepted, 3);
    assert_int_equal(t.closed, 0);
    assert_int_equal(t.bytes_in, bytes);
    for (int i = 0; i < 3; i++)
        finish_client(fds[i]);
    WAIT_STAT(f, TCP, closed, 3);

    int d = connect_listener(f, UDP);
    for (int i = 0; i < 4; i++)
        expect_datagram_echo(d, msgs[i % 3]);
    close(d);
    WAIT_STAT(f, UDP, dgrams_out, 4);

    t = listener_stats(f, TCP);
    assert_int_equal(t.accepted, 3);
    assert_int_equal(t.closed, 3);
    assert_int_equal(t.accepted - t.closed, 0);
    assert_int_equal(t.bytes_in, bytes);
    assert_int_equal(t.bytes_out, bytes);
    assert_int_equal(t.dgrams_in + t.dgrams_out + t.dgrams_dropped, 0);
    assert_int_equal(t.refused_limit + t.idle_timeouts + t.accept_pauses, 0);

    u = listener_stats(f, UDP);
    assert_int_equal(u.dgrams_in, 4);
    assert_int_equal(u.dgrams_out, 4);
    assert_int_equal(u.dgrams_dropped, 0);
    assert_int_equal(u.accepted + u.closed + u.bytes_in + u.bytes_out, 0);

    sk_server_get_stats(f->srv, &sum);
    assert_int_equal(sum.accepted, 3);
    assert_int_equal(sum.bytes_in, bytes);
    assert_int_equal(sum.dgrams_in, 4);
    assert_int_equal(sum.dgrams_out, 4);
    stop_and_free(f);
}

/* max_conns 1: the second client is accepted and closed at once, counted
 * as refused, not as accepted; the first is still active. */
static void test_stats_max_conns_refusal(void **state)
{
    struct fixture *f = *state;
    struct sk_server_config cfg = {.max_conns = 1};
    struct sk_server_stats t;
    int a, b;

    serve_two(f, cfg);
    a = connect_listener(f, TCP);
    expect_echo(a, "first\n");
    b = connect_listener(f, TCP);
    expect_eof(b);
    close(b);
    WAIT_STAT(f, TCP, refused_limit, 1);
    t = listener_stats(f, TCP);
    assert_int_equal(t.accepted, 1);
    assert_int_equal(t.closed, 0);
    assert_int_equal(t.bytes_in, 6);
    finish_client(a);
    WAIT_STAT(f, TCP, closed, 1);
    t = listener_stats(f, UDP);
    expect_zero(&t);
    stop_and_free(f);
}

/* An idle client is closed after the timeout: one idle timeout, one
 * close; a busy one before it was not. */
static void test_stats_idle_timeout(void **state)
{
    struct fixture *f = *state;
    struct sk_server_config cfg = {.idle_timeout_ms = 100};
    struct sk_server_stats t;
    int fd;

    serve_two(f, cfg);
    fd = connect_listener(f, TCP);
    expect_echo(fd, "ping\n");
    expect_eof(fd);
    close(fd);
    assert_int_equal(wait_closed(f, 1), -ETIMEDOUT);
    WAIT_STAT(f, TCP, closed, 1);
    t = listener_stats(f, TCP);
    assert_int_equal(t.idle_timeouts, 1);
    assert_int_equal(t.accepted, 1);
    assert_int_equal(t.bytes_in, 5);
    assert_int_equal(t.bytes_out, 5);
    stop_and_free(f);
}

/* A datagram refused by the access rules is dropped and counted both as
 * refused and as dropped, never as received. */
static void test_stats_refused_datagram_is_dropped(void **state)
{
    struct fixture *f = *state;
    struct sk_access *acl;
    struct sk_server_config cfg = {0};
    struct sk_server_stats u;
    int d;

    assert_int_equal(sk_access_new(&acl), 0);
    assert_int_equal(sk_access_add(acl, false, "127.0.0.1", NULL), 0);
    cfg.access = acl;
    serve_two(f, cfg);
    d = connect_listener(f, UDP);
    assert_int_equal(send(d, "x", 1, 0), 1);
    close(d);
    WAIT_STAT(f, UDP, dgrams_dropped, 1);
    u = listener_stats(f, UDP);
    assert_int_equal(u.dgrams_refused, 1);
    assert_int_equal(u.dgrams_in + u.dgrams_out, 0);
    stop_and_free(f);
    sk_access_free(acl);
}

/* Each test twice: with one worker and with two. */
#define BOTH(f) WITH_THREADS(f, 1), WITH_THREADS(f, 2)

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_stats_zero_before_run_and_bad_index),
        BOTH(test_stats_per_listener_exact),
        BOTH(test_stats_max_conns_refusal),
        BOTH(test_stats_idle_timeout),
        BOTH(test_stats_refused_datagram_is_dropped),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
