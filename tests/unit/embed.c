/* embed.c -- unit tests of a server living inside another program:
 * sk_server_start() without giving it the calling thread, stop and join
 * later; the thread_start/thread_end hooks on each worker; sk_conn_fd(). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <sockit.h>

#define ALARM_S 30
#define THREADS 2

struct embed {
    pthread_t caller;
    atomic_int starts[THREADS], ends[THREADS];
    atomic_int on_caller; /* hooks or callbacks run on the caller's thread */
    atomic_int ready;
    atomic_int fd_ok;     /* on_open saw a socket it could set options on */
    atomic_int fd_closed; /* sk_conn_fd() in on_close */
};

static void on_thread_start(void *data, unsigned worker)
{
    struct embed *e = data;

    assert_true(worker < THREADS);
    atomic_fetch_add(&e->starts[worker], 1);
    atomic_fetch_add(&e->on_caller, pthread_equal(pthread_self(), e->caller));
}

static void on_thread_end(void *data, unsigned worker)
{
    struct embed *e = data;

    assert_true(worker < THREADS);
    atomic_fetch_add(&e->ends[worker], 1);
}

static void on_ready(void *data)
{
    struct embed *e = data;

    atomic_store(&e->ready, pthread_equal(pthread_self(), e->caller) ? 1 : -1);
}

static int on_open(struct sk_conn *c)
{
    struct embed *e = sk_server_data(sk_conn_server(c));
    int fd = sk_conn_fd(c), one = 1, type = 0;
    socklen_t len = sizeof(type);

    if (fd >= 0 &&
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == 0 &&
        getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 &&
        type == SOCK_STREAM)
        atomic_fetch_add(&e->fd_ok, 1);
    atomic_fetch_add(&e->on_caller, pthread_equal(pthread_self(), e->caller));
    return 0;
}

static void on_read(struct sk_conn *c, const char *data, size_t len)
{
    sk_conn_write(c, data, len);
}

static void on_close(struct sk_conn *c, int status)
{
    struct embed *e = sk_server_data(sk_conn_server(c));

    if (sk_conn_fd(c) == -1)
        atomic_fetch_add(&e->fd_closed, 1);
}

static const struct sk_handler handler = {
    .on_open = on_open, .on_read = on_read, .on_close = on_close};

static struct sk_server *new_server(struct embed *e)
{
    struct sk_server_config cfg = {
        .handler = &handler,
        .data = e,
        .threads = THREADS,
        .ready = on_ready,
        .thread_start = on_thread_start,
        .thread_end = on_thread_end,
    };
    struct sk_server *srv;
    struct sk_endpoint ep;

    e->caller = pthread_self();
    assert_int_equal(sk_server_new(&srv, &cfg), 0);
    assert_int_equal(sk_endpoint_parse(&ep, "tcp://127.0.0.1:0", NULL), 0);
    assert_int_equal(sk_server_listen(srv, &ep, NULL), 0);
    return srv;
}

/* A client's round trip through the running server. */
static void echo_once(struct sk_server *srv)
{
    struct timeval tv = {.tv_sec = 5};
    struct sk_endpoint ep;
    char buf[8];
    int fd;

    assert_int_equal(sk_server_listener_endpoint(srv, 0, &ep), 0);
    fd = sk_connect(&ep, 5000);
    assert_true(fd >= 0);
    assert_int_equal(sk_send_all(fd, "ping", 4, 5000), 0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)),
                     0);
    assert_int_equal(sk_recv_timeout(fd, buf, sizeof(buf), 5000), 4);
    assert_memory_equal(buf, "ping", 4);
    close(fd);
}

static void test_start_serves_without_the_calling_thread(void **state)
{
    struct embed e = {0};
    struct sk_server *srv;

    alarm(ALARM_S);
    srv = new_server(&e);
    assert_int_equal(sk_server_join(srv), -EINVAL); /* not started */
    assert_int_equal(sk_server_start(srv), 0);
    assert_int_equal(atomic_load(&e.ready), 1); /* before start returned */
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(atomic_load(&e.starts[i]), 1);
    echo_once(srv); /* served while this thread does something else */
    assert_int_equal(sk_server_start(srv), -EBUSY);
    {
        struct sk_endpoint ep, failed;
        assert_int_equal(sk_endpoint_parse(&ep, "tcp://127.0.0.1:0", NULL), 0);
        assert_int_equal(sk_server_listen(srv, &ep, &failed), -EBUSY);
        assert_int_equal(sk_server_listener_count(srv), 1);
    }
    sk_server_stop(srv);
    assert_int_equal(sk_server_join(srv), 0);
    assert_int_equal(sk_server_join(srv), -EINVAL); /* joined already */
    assert_int_equal(sk_server_run(srv), -EALREADY);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(atomic_load(&e.ends[i]), 1);
    assert_int_equal(atomic_load(&e.on_caller), 0);
    assert_int_equal(atomic_load(&e.fd_ok), 1);
    assert_int_equal(atomic_load(&e.fd_closed), 1);
    sk_server_free(srv);
}

static void *stop_soon(void *arg)
{
    struct sk_server *srv = arg;

    echo_once(srv);
    sk_server_stop(srv);
    return NULL;
}

/* The hooks run the same way under sk_server_run(). */
static void test_run_calls_the_thread_hooks(void **state)
{
    struct embed e = {0};
    struct sk_server *srv;
    pthread_t t;

    alarm(ALARM_S);
    srv = new_server(&e);
    /* The listener is bound: a client may connect before the run. */
    assert_int_equal(pthread_create(&t, NULL, stop_soon, srv), 0);
    assert_int_equal(sk_server_run(srv), 0);
    pthread_join(t, NULL);
    assert_int_equal(sk_server_join(srv), -EINVAL); /* run, not started */
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(atomic_load(&e.starts[i]), 1);
        assert_int_equal(atomic_load(&e.ends[i]), 1);
    }
    assert_int_equal(atomic_load(&e.on_caller), 0);
    sk_server_free(srv);
}

static void test_start_without_listeners_is_refused(void **state)
{
    struct sk_server_config cfg = {.handler = &handler};
    struct sk_server *srv;

    assert_int_equal(sk_server_new(&srv, &cfg), 0);
    assert_int_equal(sk_server_start(srv), -EDESTADDRREQ);
    assert_int_equal(sk_server_join(srv), -EINVAL);
    sk_server_free(srv);
}

/* A library user with a log hook only still hears the warnings. */
static atomic_int limit_lines;

static void log_only(void *data, const char *msg)
{
    if (strstr(msg, "connection limit reached (1), closing") != NULL)
        atomic_fetch_add(&limit_lines, 1);
}

static void test_warnings_go_to_log_without_warn(void **state)
{
    static const struct sk_handler quiet = {.on_read = on_read};
    struct sk_server_config cfg = {
        .handler = &quiet, .threads = 1, .max_conns = 1, .log = log_only};
    struct sk_server *srv;
    struct sk_endpoint ep;
    char buf[4];
    int held, refused;

    alarm(ALARM_S);
    assert_int_equal(sk_server_new(&srv, &cfg), 0);
    assert_int_equal(sk_endpoint_parse(&ep, "tcp://127.0.0.1:0", NULL), 0);
    assert_int_equal(sk_server_listen(srv, &ep, NULL), 0);
    assert_int_equal(sk_server_start(srv), 0);
    assert_int_equal(sk_server_listener_endpoint(srv, 0, &ep), 0);
    held = sk_connect(&ep, 5000);
    assert_true(held >= 0);
    assert_int_equal(sk_send_all(held, "a", 1, 5000), 0);
    assert_int_equal(sk_recv_timeout(held, buf, 1, 5000), 1); /* admitted */
    refused = sk_connect(&ep, 5000);
    assert_true(refused >= 0);
    assert_int_equal(sk_recv_timeout(refused, buf, 1, 5000), 0); /* closed */
    sk_server_stop(srv);
    assert_int_equal(sk_server_join(srv), 0);
    assert_int_equal(atomic_load(&limit_lines), 1);
    close(held);
    close(refused);
    sk_server_free(srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_start_serves_without_the_calling_thread),
        cmocka_unit_test(test_run_calls_the_thread_hooks),
        cmocka_unit_test(test_start_without_listeners_is_refused),
        cmocka_unit_test(test_warnings_go_to_log_without_warn),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
