/* hardening.c -- unit tests of what a hostile peer or a careless caller
 * could break in the server framework: callbacks that close other
 * connections while output is pending, the hard output cap, max_active,
 * listeners during a drain, and the lifecycle of a server. Run under
 * AddressSanitizer by `make check`, where a use-after-free aborts. */
#include "server_fixture.h"

#include <poll.h>
#include <signal.h>
#include <stdatomic.h>

/* ------------------------------------------- callbacks closing others */

/* The connections a test handler knows of, on a single worker. */
#define KNOWN_MAX 4

struct known {
    struct sk_conn *conns[KNOWN_MAX];
    int n;
};

static struct known known;

static void known_add(struct sk_conn *c)
{
    if (known.n < KNOWN_MAX)
        known.conns[known.n++] = c;
}

static void known_remove(struct sk_conn *c)
{
    for (int i = 0; i < known.n; i++) {
        if (known.conns[i] == c) {
            known.conns[i] = known.conns[--known.n];
            return;
        }
    }
}

static int on_open_known(struct sk_conn *c)
{
    known_add(c);
    return on_open_record(c);
}

/* Writes to every other connection, then aborts it: chat's "* X left"
 * followed by its drop of a member over its limit. */
static void write_and_abort_others(struct sk_conn *self)
{
    for (int i = 0; i < known.n; i++) {
        struct sk_conn *o = known.conns[i];
        if (o == self || sk_conn_is_closing(o))
            continue;
        sk_conn_write(o, "bye\n", 4);
        sk_conn_abort(o);
    }
}

static void on_close_abort_others(struct sk_conn *c, int status)
{
    known_remove(c);
    write_and_abort_others(c);
    on_close_record(c, status);
}

static const struct sk_handler close_aborts_handler = {
    .on_open = on_open_known,
    .on_close = on_close_abort_others,
};

/* Requires the peer of fd to have closed without sending anything. */
static void expect_closed_silently(int fd)
{
    char c;
    ssize_t n = recv(fd, &c, 1, 0);

    if (n > 0)
        fail_msg("want the connection closed, got data");
    if (n < 0 && errno != ECONNRESET)
        fail_msg("want the connection closed: %s", strerror(errno));
}

static void test_on_close_writing_to_and_aborting_another_is_safe(void **state)
{
    struct fixture *f = *state;
    int d, a, e;

    known.n = 0;
    serve(f, &close_aborts_handler, defaults, "tcp://127.0.0.1:0");
    d = connect_listener(f, 0);
    wait_for(f, &f->seen.opens, 1, "first open");
    a = connect_listener(f, 0);
    wait_for(f, &f->seen.opens, 2, "second open");
    close(a); /* its on_close writes to d and aborts it */
    wait_for(f, &f->seen.closes, 2, "both closed");
    expect_closed_silently(d);
    close(d);
    /* The server is still whole: a new client is served. */
    e = connect_listener(f, 0);
    wait_for(f, &f->seen.opens, 3, "third open");
    close(e);
    wait_for(f, &f->seen.closes, 3, "third closed");
    stop_and_free(f);
}

/* Every connection is greeted from on_open, so its output drains during
 * the flush before the loop waits; the drain of the second one writes to
 * the first and aborts it, which must leave no trace in that flush. */
static int on_open_greet(struct sk_conn *c)
{
    sk_conn_write(c, "hi", 2);
    return on_open_known(c);
}

static void on_drain_abort_others(struct sk_conn *c)
{
    write_and_abort_others(c);
}

static void on_close_known(struct sk_conn *c, int status)
{
    known_remove(c);
    on_close_record(c, status);
}

static const struct sk_handler drain_aborts_handler = {
    .on_open = on_open_greet,
    .on_read = on_read_echo,
    .on_drain = on_drain_abort_others,
    .on_close = on_close_known,
};

static void test_on_drain_writing_to_and_aborting_another_is_safe(void **state)
{
    struct fixture *f = *state;
    char hi[2];
    int a, d;

    known.n = 0;
    serve(f, &drain_aborts_handler, defaults, "tcp://127.0.0.1:0");
    d = connect_listener(f, 0);
    recv_exact(d, hi, sizeof(hi));
    a = connect_listener(f, 0);
    recv_exact(a, hi, sizeof(hi)); /* a drained: d written to, aborted */
    assert_memory_equal(hi, "hi", 2);
    wait_for(f, &f->seen.closes, 1, "d closed");
    expect_closed_silently(d);
    expect_echo(a, "still here");
    close(a);
    close(d);
    wait_for(f, &f->seen.closes, 2, "a closed");
    stop_and_free(f);
}

/* --------------------------------------------------------- output cap */

#define CAP_CHUNK 4096

static int on_open_fill_to_cap(struct sk_conn *c)
{
    struct fixture *f = fixture_of_conn(c);
    static char chunk[CAP_CHUNK];
    int ret;

    while ((ret = sk_conn_write(c, chunk, sizeof(chunk))) == 0)
        ;
    pthread_mutex_lock(&f->lock);
    f->seen.write_errors = ret;
    f->seen.max_pending = sk_conn_pending(c);
    f->seen.opens++;
    announce(f);
    return -1; /* done: close it */
}

static const struct sk_handler fill_handler = {
    .on_open = on_open_fill_to_cap,
    .on_close = on_close_record,
};

static void expect_cap(struct fixture *f, size_t output_max, size_t cap)
{
    struct sk_server_config cfg = {.output_max = output_max};
    struct seen s;
    int fd;

    serve(f, &fill_handler, cfg, "tcp://127.0.0.1:0");
    fd = connect_listener(f, 0);
    wait_for(f, &f->seen.opens, 1, "open");
    s = snapshot(f);
    assert_int_equal(s.write_errors, -ENOBUFS);
    assert_int_equal(s.max_pending, cap);
    close(fd);
    stop_and_free(f);
}

static void test_conn_write_past_hard_cap_is_enobufs(void **state)
{
    /* The limit plus the larger of the limit and one 64 KiB read. */
    expect_cap(*state, 256 * 1024, 512 * 1024);
}

static void test_conn_write_hard_cap_leaves_room_for_one_read(void **state)
{
    expect_cap(*state, 16 * 1024, 16 * 1024 + 64 * 1024);
}

/* --------------------------------------------------------- max_active */

static void test_max_active_makes_further_clients_wait(void **state)
{
    struct fixture *f = *state;
    struct sk_server_config cfg = {.max_active = 1};
    int a, b;

    serve(f, &echo_handler, cfg, "tcp://127.0.0.1:0");
    a = connect_listener(f, 0);
    expect_echo(a, "first");
    b = connect_listener(f, 0); /* completes in the kernel's backlog */
    send_all(b, "second", 6);
    /* Not accepted while a is open: no answer within a bounded wait. */
    assert_true(poll(&(struct pollfd){.fd = b, .events = POLLIN}, 1, 300) == 0);
    assert_int_equal(snapshot(f).opens, 1);
    close(a);
    char buf[6];
    recv_exact(b, buf, sizeof(buf));
    assert_memory_equal(buf, "second", 6);
    close(b);
    wait_for(f, &f->seen.closes, 2, "both closed");
    stop_and_free(f);
}

/* Workers accepting at once must not pass max_active together: the count
 * is taken before the accept, not after. */
static atomic_int open_now, open_peak;

static int on_open_count(struct sk_conn *c)
{
    int n = atomic_fetch_add(&open_now, 1) + 1, peak = atomic_load(&open_peak);

    while (n > peak && !atomic_compare_exchange_weak(&open_peak, &peak, n))
        ;
    return 0;
}

static void on_close_count(struct sk_conn *c, int status)
{
    atomic_fetch_sub(&open_now, 1);
}

static const struct sk_handler count_handler = {
    .on_open = on_open_count,
    .on_read = on_read_echo,
    .on_close = on_close_count,
};

#define STORM_THREADS 6
#define STORM_CONNECTS 60

static void *connect_storm(void *arg)
{
    struct sk_endpoint *ep = arg;

    for (int i = 0; i < STORM_CONNECTS; i++) {
        int fd = client_connect(ep);
        shutdown(fd, SHUT_WR);
        char c;
        (void)!recv(fd, &c, 1, 0); /* until the server closes it */
        close(fd);
    }
    return NULL;
}

static void test_max_active_holds_across_workers(void **state)
{
    struct fixture *f = *state;
    struct sk_server_config cfg = {.max_active = 2};
    pthread_t t[STORM_THREADS];
    struct sk_endpoint ep;

    atomic_store(&open_now, 0);
    atomic_store(&open_peak, 0);
    f->threads = 4;
    serve(f, &count_handler, cfg, "tcp://127.0.0.1:0");
    ep = listener(f, 0);
    for (int i = 0; i < STORM_THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, connect_storm, &ep), 0);
    for (int i = 0; i < STORM_THREADS; i++)
        pthread_join(t[i], NULL);
    assert_true(atomic_load(&open_peak) >= 1);
    assert_true(atomic_load(&open_peak) <= 2);
    stop_and_free(f);
}

/* ------------------------------------------------------------ draining */

static void *stop_in_thread(void *arg)
{
    sk_server_stop(arg);
    return NULL;
}

/* Connects to ep; returns 0 or the errno of the refusal. */
static int try_connect(const struct sk_endpoint *ep)
{
    struct sk_addr addr = address_of(ep);
    int fd = client_socket(addr.u.sa.sa_family, SOCK_STREAM), err = 0;

    if (connect(fd, &addr.u.sa, addr.len) != 0)
        err = errno;
    close(fd);
    return err;
}

/* During a drain that a non-reading client keeps going, new clients are
 * refused instead of left hanging in a backlog nobody accepts from. */
static void expect_refused_while_draining(struct fixture *f, const char *ep)
{
    struct sk_server_config cfg = {.drain_ms = 3000};
    struct sk_endpoint l;
    pthread_t t;
    int slow, err = 0;

    serve(f, &flood_handler, cfg, ep);
    l = listener(f, 0);
    slow = connect_slow_reader(f);
    wait_for(f, &f->seen.opens, 1, "open");
    assert_int_equal(pthread_create(&t, NULL, stop_in_thread, f->srv), 0);
    pthread_join(t, NULL);
    /* Until every worker has begun its drain, a client may still be taken
     * (and closed) or caught in the switch (reset); then all are refused. */
    for (int i = 0; i < 200 && err != ECONNREFUSED; i++) {
        err = try_connect(&l);
        if (err != ECONNREFUSED)
            usleep(10 * 1000);
    }
    assert_int_equal(err, ECONNREFUSED);
    close(slow);
    stop_and_free(f);
}

static void test_drain_refuses_new_tcp_clients(void **state)
{
    expect_refused_while_draining(*state, "tcp://127.0.0.1:0");
}

static void test_drain_refuses_new_unix_clients(void **state)
{
    struct fixture *f = *state;
    char text[160];

    snprintf(text, sizeof(text), "unix:%s", f->path);
    expect_refused_while_draining(f, text);
}

/* ----------------------------------------------------------- lifecycle */

static void test_second_run_is_refused_not_hung(void **state)
{
    struct fixture *f = *state;

    serve(f, &echo_handler, defaults, "tcp://127.0.0.1:0");
    server_join(f);
    assert_int_equal(f->run_ret, 0);
    assert_int_equal(sk_server_run(f->srv), -EALREADY);
}

static void test_single_worker_after_listen_is_refused(void **state)
{
    struct fixture *f = *state;

    server_new(f, &echo_handler, defaults);
    assert_int_equal(sk_server_set_single_worker(f->srv), 0);
    assert_int_equal(server_listen(f, "tcp://127.0.0.1:0", NULL), 0);
    assert_int_equal(sk_server_set_single_worker(f->srv), -EBUSY);
}

static bool signal_blocked(int signo)
{
    sigset_t now;

    pthread_sigmask(SIG_BLOCK, NULL, &now);
    return sigismember(&now, signo) == 1;
}

static void test_free_unblocks_the_signals_it_handled(void **state)
{
    struct fixture *f = *state;
    struct sk_server_config cfg = {.handle_signals = true};

    assert_false(signal_blocked(SIGINT));
    server_new(f, &echo_handler, cfg);
    assert_true(signal_blocked(SIGINT));
    assert_true(signal_blocked(SIGTERM));
    sk_server_free(f->srv);
    f->srv = NULL;
    assert_false(signal_blocked(SIGINT));
    assert_false(signal_blocked(SIGTERM));
}

/* Two servers routing the same signals on one thread: freeing one leaves
 * them blocked for the other; freeing both restores the thread. */
static void test_free_keeps_signals_another_server_routes(void **state)
{
    struct sk_server_config cfg = {.handler = &echo_handler,
                                   .handle_signals = true};
    struct sk_server *a, *b;

    assert_false(signal_blocked(SIGINT));
    assert_int_equal(sk_server_new(&a, &cfg), 0);
    assert_int_equal(sk_server_new(&b, &cfg), 0);
    sk_server_free(a);
    assert_true(signal_blocked(SIGINT));
    assert_true(signal_blocked(SIGTERM));
    sk_server_free(b);
    assert_false(signal_blocked(SIGINT));
    assert_false(signal_blocked(SIGTERM));
}

/* clang-format off */
#define ONE(f) {#f, f, setup, teardown, &threads_1}
#define BOTH(f) ONE(f), {#f " threads=2", f, setup, teardown, &threads_2}
/* clang-format on */

/* ------------------------------------------------ stale readiness */

/* Readiness of B fetched in the same batch as A's, where A's callback
 * holds B's input: B's event is stale, not an error, and B lives. */
static struct stale {
    struct sk_conn *conns[2];
    int nconns;
    struct sk_loop *loop;
    atomic_int release; /* the test lets the worker wait again */
} stale;

static int on_open_stale(struct sk_conn *c)
{
    stale.conns[stale.nconns++] = c;
    stale.loop = sk_conn_loop(c);
    return on_open_record(c);
}

static void on_read_stale(struct sk_conn *c, const char *data, size_t len)
{
    struct sk_conn *other = stale.conns[c == stale.conns[0]];

    if (len == 1 && data[0] == 'H') /* hold the other */
        sk_conn_hold_input(other, true);
    else if (len == 1 && data[0] == 'R') /* release it */
        sk_conn_hold_input(other, false);
    else
        on_read_echo(c, data, len);
}

static const struct sk_handler stale_handler = {
    .on_open = on_open_stale,
    .on_read = on_read_stale,
    .on_close = on_close_record,
};

/* Keeps the worker out of its wait until the test has written. */
static void block_worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 5000 && !atomic_load(&stale.release); i++)
        usleep(1000);
}

static void test_stale_event_of_a_held_connection_is_no_error(void **state)
{
    struct fixture *f = *state;
    char buf[2];
    int a, b;

    stale = (struct stale){0};
    serve(f, &stale_handler, (struct sk_server_config){0}, "tcp://127.0.0.1:0");
    a = connect_listener(f, 0);
    wait_for(f, &f->seen.opens, 1, "open A");
    b = connect_listener(f, 0);
    wait_for(f, &f->seen.opens, 2, "open B");
    /* A, then B, become readable while the worker is kept busy: one batch,
     * A's event first. */
    assert_int_equal(sk_loop_post(stale.loop, block_worker, NULL), 0);
    usleep(50000);
    send_all(a, "H", 1);
    send_all(b, "b", 1);
    usleep(50000);
    atomic_store(&stale.release, 1);
    usleep(100000);
    assert_int_equal(snapshot(f).closes, 0); /* B was not taken for dead */
    send_all(a, "R", 1);
    recv_exact(b, buf, 1);
    assert_memory_equal(buf, "b", 1);
    close(a);
    close(b);
    wait_for(f, &f->seen.closes, 2, "closes");
    stop_and_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        /* A handler may touch other connections on its own worker only. */
        ONE(test_on_close_writing_to_and_aborting_another_is_safe),
        ONE(test_stale_event_of_a_held_connection_is_no_error),
        ONE(test_on_drain_writing_to_and_aborting_another_is_safe),
        BOTH(test_conn_write_past_hard_cap_is_enobufs),
        BOTH(test_conn_write_hard_cap_leaves_room_for_one_read),
        BOTH(test_max_active_makes_further_clients_wait),
        ONE(test_max_active_holds_across_workers),
        BOTH(test_drain_refuses_new_tcp_clients),
        BOTH(test_drain_refuses_new_unix_clients),
        BOTH(test_second_run_is_refused_not_hung),
        ONE(test_single_worker_after_listen_is_refused),
        ONE(test_free_unblocks_the_signals_it_handled),
        ONE(test_free_keeps_signals_another_server_routes),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
