/* server_stop_listening.c -- sk_server_stop_listening() on a server of two
 * workers, on each backend: new clients are refused by the kernel
 * (ECONNREFUSED, TCP and UNIX), queued ones closed cleanly, accepted ones
 * still served byte for byte, and sk_server_stop() still ends the run. */
#include "server_fixture.h"

#include <sys/socket.h>

/* What sk_server_stop_listening() returned in a handler; under f->lock. */
static int stop_ret;

/* Polls of the listener until it refuses, this far apart. */
#define POLL_US 1000

static void serve_on(struct fixture *f, const struct sk_handler *h,
                     struct sk_server_config cfg, const char *text)
{
    cfg.backend = test_backend;
    serve(f, h, cfg, text);
}

/* A UNIX endpoint at the fixture's path, or TCP on a free port. */
static void endpoint_text(const struct fixture *f, bool unix_socket, char *out,
                          size_t size)
{
    if (unix_socket)
        snprintf(out, size, "unix:%s", f->path);
    else
        snprintf(out, size, "tcp://127.0.0.1:0");
}

/* connect() to ep: 0 with *fd connected, or the errno it failed with. */
static int try_connect(const struct sk_endpoint *ep, int *fd)
{
    struct sk_addr addr = address_of(ep);
    int err = 0;

    *fd = client_socket(addr.u.sa.sa_family, SOCK_STREAM);
    if (connect(*fd, &addr.u.sa, addr.len) != 0) {
        err = errno;
        close(*fd);
        *fd = -1;
    }
    return err;
}

/* A client the server never served: its byte is not echoed, and the
 * connection ends (cleanly, or reset by a TCP listener leaving LISTEN). */
static void expect_unserved(int fd)
{
    char c;
    ssize_t n;

    send(fd, "x", 1, MSG_NOSIGNAL);
    n = recv(fd, &c, 1, 0);
    if (n != 0 && !(n < 0 && errno == ECONNRESET))
        fail_msg("an unserved client got %zd (%s)", n,
                 n < 0 ? strerror(errno) : "a byte");
    close(fd);
}

/* Connects until the kernel refuses (within WAIT_S: the workers apply the
 * call before their loops next wait), then requires it to refuse again.
 * Meanwhile a client is closed unserved, or reset as it connects (its
 * handshake ended on a TCP socket leaving LISTEN). */
static void wait_refused(struct fixture *f)
{
    struct sk_endpoint ep = listener(f, 0);
    time_t deadline = time(NULL) + WAIT_S;
    int fd, err;

    while ((err = try_connect(&ep, &fd)) == 0 || err == ECONNRESET) {
        if (fd >= 0)
            expect_unserved(fd);
        if (time(NULL) > deadline)
            fail_msg("still connectable %d s after the call", WAIT_S);
        usleep(POLL_US);
    }
    assert_string_equal(strerror(err), strerror(ECONNREFUSED));
    for (int i = 0; i < 8; i++)
        assert_int_equal(try_connect(&ep, &fd), ECONNREFUSED);
}

/* The call from another thread; the client accepted before it goes on. */
static void check_refused_after_the_call(void **state, bool unix_socket)
{
    struct fixture *f = *state;
    char text[160];
    struct stat st;
    int before;

    endpoint_text(f, unix_socket, text, sizeof(text));
    serve_on(f, &echo_handler, defaults, text);
    before = connect_listener(f, 0);
    expect_echo(before, "accepted before");
    assert_int_equal(sk_server_stop_listening(f->srv), 0);
    assert_int_equal(sk_server_stop_listening(f->srv), 0); /* again */
    wait_refused(f);
    expect_echo(before, "still served \x01\xff after");
    assert_int_equal(snapshot(f).opens, 1);
    if (unix_socket) /* the file stays until sk_server_free() */
        assert_int_equal(lstat(f->path, &st), 0);
    finish_client(before);
    expect_statuses_zero(f, 1);
    stop_and_free(f); /* sk_server_stop() still ends the run */
    if (unix_socket)
        assert_int_equal(lstat(f->path, &st), -1);
}

static void test_tcp_refused_after_the_call(void **state)
{
    check_refused_after_the_call(state, false);
}

static void test_unix_refused_after_the_call(void **state)
{
    check_refused_after_the_call(state, true);
}

/* As connect -l calls it: from the first client's on_open, on a worker. */
static int on_open_stop_listening(struct sk_conn *c)
{
    struct fixture *f = fixture_of_conn(c);
    int ret = sk_server_stop_listening(sk_conn_server(c));

    pthread_mutex_lock(&f->lock);
    stop_ret = ret;
    pthread_mutex_unlock(&f->lock);
    return on_open_record(c);
}

static const struct sk_handler stop_on_open_handler = {
    .on_open = on_open_stop_listening,
    .on_read = on_read_echo,
    .on_close = on_close_record,
};

static void check_called_from_on_open(void **state, bool unix_socket)
{
    struct fixture *f = *state;
    char text[160];
    int first;

    endpoint_text(f, unix_socket, text, sizeof(text));
    stop_ret = 1;
    serve_on(f, &stop_on_open_handler, defaults, text);
    first = connect_listener(f, 0);
    expect_echo(first, "first");
    pthread_mutex_lock(&f->lock);
    assert_int_equal(stop_ret, 0);
    pthread_mutex_unlock(&f->lock);
    wait_refused(f);
    expect_echo(first, "first, still");
    assert_int_equal(snapshot(f).opens, 1);
    finish_client(first);
    expect_statuses_zero(f, 1);
    stop_and_free(f);
}

static void test_tcp_called_from_on_open(void **state)
{
    check_called_from_on_open(state, false);
}

static void test_unix_called_from_on_open(void **state)
{
    check_called_from_on_open(state, true);
}

/* A client waiting in the backlog (max_active reached) when the call comes
 * is closed cleanly, never served; the active one goes on. */
static void check_queued_client_closed(void **state, bool unix_socket)
{
    struct fixture *f = *state;
    struct sk_server_config cfg = {.max_active = 1};
    char text[160], c;
    int active, queued;

    endpoint_text(f, unix_socket, text, sizeof(text));
    serve_on(f, &echo_handler, cfg, text);
    active = connect_listener(f, 0);
    expect_echo(active, "active");
    /* In the kernel's queue; silent (closing what holds unread bytes
     * would reset it). */
    queued = connect_listener(f, 0);
    assert_int_equal(sk_server_stop_listening(f->srv), 0);
    assert_int_equal(recv(queued, &c, 1, 0), 0); /* closed, not reset */
    close(queued);
    wait_refused(f);
    expect_echo(active, "active, still");
    assert_int_equal(snapshot(f).opens, 1);
    finish_client(active);
    expect_statuses_zero(f, 1);
    stop_and_free(f);
}

static void test_tcp_queued_client_closed_cleanly(void **state)
{
    check_queued_client_closed(state, false);
}

static void test_unix_queued_client_closed_cleanly(void **state)
{
    check_queued_client_closed(state, true);
}

/* Only while the server runs. */
static void test_einval_before_and_after_the_run(void **state)
{
    struct fixture *f = *state;
    struct sk_server_config cfg = {.backend = test_backend};
    int fd;

    server_new(f, &echo_handler, cfg);
    assert_int_equal(server_listen(f, "tcp://127.0.0.1:0", NULL), 0);
    assert_int_equal(sk_server_stop_listening(f->srv), -EINVAL);
    server_start(f);
    fd = connect_listener(f, 0); /* served: the run has begun */
    expect_echo(fd, "running");
    assert_int_equal(sk_server_stop_listening(f->srv), 0);
    close(fd);
    server_join(f);
    assert_int_equal(f->run_ret, 0);
    assert_int_equal(sk_server_stop_listening(f->srv), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        WITH_THREADS(test_tcp_refused_after_the_call, 2),
        WITH_THREADS(test_unix_refused_after_the_call, 2),
        WITH_THREADS(test_tcp_called_from_on_open, 2),
        WITH_THREADS(test_unix_called_from_on_open, 2),
        WITH_THREADS(test_tcp_queued_client_closed_cleanly, 2),
        WITH_THREADS(test_unix_queued_client_closed_cleanly, 2),
        WITH_THREADS(test_einval_before_and_after_the_run, 2),
    };

    return RUN_ON_EACH_BACKEND(tests);
}
