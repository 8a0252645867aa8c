/* server.c -- unit tests of the server framework (src/server.c, worker.c,
 * conn.c, dgram.c, sock.c), on the in-process server of server_fixture.h.
 * Every test runs with threads = 1 and threads = 2. */
#include "server_fixture.h"

/* -------------------------------------------------------------- tests */

static void test_server_echoes_over_tcp(void **state)
{
    struct fixture *f = *state;
    struct sk_endpoint ep;
    int fds[4];

    serve(f, &echo_handler, defaults, "tcp://127.0.0.1:0");
    assert_int_equal(sk_server_listener_count(f->srv), 1);
    ep = listener(f, 0);
    assert_int_equal(ep.scheme, SK_TCP);
    assert_string_equal(ep.host, "127.0.0.1");
    assert_true(ep.port != 0);
    for (int i = 0; i < 4; i++)
        fds[i] = client_connect(&ep);
    for (int i = 0; i < 4; i++)
        expect_echo(fds[i], i % 2 ? "hello\r\n" : "\xff\x01 binary");
    for (int i = 0; i < 4; i++)
        expect_echo(fds[i], "second message");
    for (int i = 0; i < 4; i++)
        finish_client(fds[i]);
    expect_statuses_zero(f, 4);
    assert_int_equal(snapshot(f).opens, 4);
    stop_and_free(f);
}

static void test_server_wildcard_listener_accepts_ipv4_clients(void **state)
{
    struct fixture *f = *state;
    struct sk_endpoint ep;
    struct seen s;
    char want[64];
    int fd;

    serve(f, &echo_handler, defaults, "tcp://:0");
    ep = listener(f, 0);
    assert_true(strcmp(ep.host, "::") == 0 || strcmp(ep.host, "0.0.0.0") == 0);
    snprintf(ep.host, sizeof(ep.host), "127.0.0.1");
    fd = client_connect(&ep);
    expect_echo(fd, "via IPv4");
    s = snapshot(f);
    /* A dual-stack socket's IPv4 peer is shown as IPv4, not ::ffff:. */
    assert_int_equal(strncmp(s.peer, "tcp://127.0.0.1:", 16), 0);
    snprintf(want, sizeof(want), "tcp://127.0.0.1:%u", (unsigned)ep.port);
    assert_string_equal(s.local, want);
    finish_client(fd);
    stop_and_free(f);
}

static void test_server_conn_peer_and_local_name_both_ends(void **state)
{
    struct fixture *f = *state;
    struct sockaddr_in me;
    socklen_t len = sizeof(me);
    char want[SK_ENDPOINT_STRLEN];
    struct sk_endpoint ep;
    struct seen s;
    int fd;

    serve(f, &echo_handler, defaults, "tcp://127.0.0.1:0");
    ep = listener(f, 0);
    fd = client_connect(&ep);
    expect_echo(fd, "x");
    s = snapshot(f);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&me, &len), 0);
    snprintf(want, sizeof(want), "tcp://127.0.0.1:%u",
             (unsigned)ntohs(me.sin_port));
    assert_string_equal(s.peer, want);
    format_endpoint(&ep, want, sizeof(want));
    assert_string_equal(s.local, want);
    finish_client(fd);
    stop_and_free(f);
}

static void test_server_echoes_over_unix_and_removes_socket_file(void **state)
{
    struct fixture *f = *state;
    struct sk_endpoint ep;
    char text[256];
    struct seen s;
    struct stat st;
    int fd;

    snprintf(text, sizeof(text), "unix:%s", f->path);
    serve(f, &echo_handler, defaults, text);
    ep = listener(f, 0);
    expect_endpoint_text(&ep, text);
    assert_int_equal(stat(f->path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    fd = client_connect(&ep);
    expect_echo(fd, "over unix");
    s = snapshot(f);
    assert_string_equal(s.peer, "unix:"); /* an unnamed client */
    assert_string_equal(s.local, text);
    finish_client(fd);
    expect_statuses_zero(f, 1);
    stop_and_free(f);
    assert_int_equal(stat(f->path, &st), -1);
    assert_int_equal(errno, ENOENT);
}

static void test_server_echoes_over_abstract_unix(void **state)
{
    struct fixture *f = *state;
    struct sk_endpoint ep;
    char text[128];
    int fd;

    snprintf(text, sizeof(text), "unix:@sockit-unit-%d-%u", (int)getpid(),
             f->threads);
    serve(f, &echo_handler, defaults, text);
    ep = listener(f, 0);
    expect_endpoint_text(&ep, text);
    fd = client_connect(&ep);
    expect_echo(fd, "abstract");
    finish_client(fd);
    stop_and_free(f);
}

static void test_server_echoes_over_udp(void **state)
{
    struct fixture *f = *state;
    struct sk_endpoint ep;
    int fd;

    serve(f, &echo_handler, defaults, "udp://127.0.0.1:0");
    ep = listener(f, 0);
    assert_int_equal(ep.scheme, SK_UDP);
    assert_true(ep.port != 0);
    fd = client_connect(&ep);
    expect_datagram_echo(fd, "ping");
    expect_datagram_echo(fd, "a second datagram");
    close(fd);
    assert_int_equal(snapshot(f).datagrams, 2);
    stop_and_free(f);
}

/* A unixgram client must bind a name to get replies; the server's reply
 * to an unnamed one fails with -EDESTADDRREQ. */
static void test_server_echoes_over_unixgram_to_named_clients(void **state)
{
    struct fixture *f = *state;
    struct sk_endpoint me, server;
    struct sk_addr addr;
    char text[256];
    int named, unnamed;

    snprintf(text, sizeof(text), "unixgram:%s", f->path);
    serve(f, &echo_handler, defaults, text);
    server = listener(f, 0);
    snprintf(text, sizeof(text), "unixgram:%s/client.sock", f->dir);
    assert_int_equal(sk_endpoint_parse(&me, text, NULL), 0);
    addr = address_of(&me);
    named = client_socket(AF_UNIX, SOCK_DGRAM);
    assert_int_equal(bind(named, &addr.u.sa, addr.len), 0);
    addr = address_of(&server);
    assert_int_equal(connect(named, &addr.u.sa, addr.len), 0);
    expect_datagram_echo(named, "named");
    unnamed = client_connect(&server);
    assert_int_equal(send(unnamed, "anon", 4, 0), 4);
    wait_for(f, &f->seen.unnamed, 1, "datagrams from unnamed senders");
    assert_int_equal(snapshot(f).unnamed_reply, -EDESTADDRREQ);
    close(named);
    close(unnamed);
    stop_and_free(f);
}

/* Binds a plain socket on 127.0.0.1 port 0 (listening if a stream) and
 * returns it; *port gets the port. */
static int hold_port(int socktype, uint16_t *port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, socktype | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    if (socktype == SOCK_STREAM)
        assert_int_equal(listen(fd, 1), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    *port = ntohs(sin.sin_port);
    return fd;
}

static void expect_port_in_use(struct fixture *f, const char *scheme,
                               int socktype)
{
    struct sk_endpoint failed;
    char text[64], named[64];
    uint16_t port;
    int holder = hold_port(socktype, &port);

    snprintf(text, sizeof(text), "%s://127.0.0.1:%u", scheme, (unsigned)port);
    assert_int_equal(server_listen(f, text, &failed), -EADDRINUSE);
    expect_endpoint_text(&failed, text);
    /* failed names the address, not the name given. */
    snprintf(named, sizeof(named), "%s4://localhost:%u", scheme,
             (unsigned)port);
    assert_int_equal(server_listen(f, named, &failed), -EADDRINUSE);
    snprintf(text, sizeof(text), "%s4://127.0.0.1:%u", scheme, (unsigned)port);
    expect_endpoint_text(&failed, text);
    assert_int_equal(sk_server_listener_count(f->srv), 0);
    close(holder);
}

static void test_server_listen_on_port_in_use_is_eaddrinuse(void **state)
{
    struct fixture *f = *state;

    server_new(f, &echo_handler, defaults);
    expect_port_in_use(f, "tcp", SOCK_STREAM);
    expect_port_in_use(f, "udp", SOCK_DGRAM);
}

static void test_server_listen_on_regular_file_is_enotsockfile(void **state)
{
    struct fixture *f = *state;
    struct sk_endpoint failed;
    struct stat before, after;
    char text[256], buf[16];
    int fd;

    fd = open(f->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "keep me", 7), 7);
    close(fd);
    assert_int_equal(stat(f->path, &before), 0);
    server_new(f, &echo_handler, defaults);
    snprintf(text, sizeof(text), "unix:%s", f->path);
    assert_int_equal(server_listen(f, text, &failed), SK_ENOTSOCKFILE);
    expect_endpoint_text(&failed, text);
    assert_int_equal(stat(f->path, &after), 0);
    assert_true(S_ISREG(after.st_mode));
    assert_int_equal(after.st_ino, before.st_ino);
    fd = open(f->path, O_RDONLY | O_CLOEXEC);
    assert_int_equal(read(fd, buf, sizeof(buf)), 7);
    assert_memory_equal(buf, "keep me", 7);
    close(fd);
}

/* Binds a UNIX stream socket on path; listening if live. */
static int bind_unix(const char *path, bool live)
{
    struct sk_endpoint ep;
    struct sk_addr addr;
    char text[256];
    int fd = client_socket(AF_UNIX, SOCK_STREAM);

    snprintf(text, sizeof(text), "unix:%s", path);
    assert_int_equal(sk_endpoint_parse(&ep, text, NULL), 0);
    addr = address_of(&ep);
    assert_int_equal(bind(fd, &addr.u.sa, addr.len), 0);
    if (live)
        assert_int_equal(listen(fd, 4), 0);
    return fd;
}

static void test_server_listen_replaces_stale_socket_file(void **state)
{
    struct fixture *f = *state;
    char text[256];
    struct stat st;
    int fd;

    close(bind_unix(f->path, false));
    assert_int_equal(stat(f->path, &st), 0);
    snprintf(text, sizeof(text), "unix:%s", f->path);
    serve(f, &echo_handler, defaults, text);
    fd = connect_listener(f, 0);
    expect_echo(fd, "replaced");
    finish_client(fd);
    stop_and_free(f);
    assert_int_equal(stat(f->path, &st), -1);
}

static void test_server_listen_on_live_socket_file_is_eaddrinuse(void **state)
{
    struct fixture *f = *state;
    struct sk_endpoint failed, ep;
    struct stat before, after;
    char text[256];
    int holder, fd;

    holder = bind_unix(f->path, true);
    assert_int_equal(stat(f->path, &before), 0);
    server_new(f, &echo_handler, defaults);
    snprintf(text, sizeof(text), "unix:%s", f->path);
    assert_int_equal(server_listen(f, text, &failed), -EADDRINUSE);
    expect_endpoint_text(&failed, text);
    assert_int_equal(stat(f->path, &after), 0);
    assert_int_equal(after.st_ino, before.st_ino);
    /* The holder still gets its connections. */
    assert_int_equal(sk_endpoint_parse(&ep, text, NULL), 0);
    fd = client_connect(&ep);
    close(fd);
    close(holder);
}

static void
test_server_listen_on_abstract_name_in_use_is_eaddrinuse(void **state)
{
    struct fixture *f = *state;
    struct sk_endpoint failed, ep;
    struct sk_addr addr;
    char text[128];
    int holder;

    snprintf(text, sizeof(text), "unix:@sockit-unit-held-%d-%u", (int)getpid(),
             f->threads);
    assert_int_equal(sk_endpoint_parse(&ep, text, NULL), 0);
    addr = address_of(&ep);
    holder = client_socket(AF_UNIX, SOCK_STREAM);
    assert_int_equal(bind(holder, &addr.u.sa, addr.len), 0);
    server_new(f, &echo_handler, defaults);
    assert_int_equal(server_listen(f, text, &failed), -EADDRINUSE);
    expect_endpoint_text(&failed, text);
    close(holder);
}

static void test_server_unix_mode_sets_socket_file_mode(void **state)
{
    struct fixture *f = *state;
    struct sk_server_config cfg = {.unix_mode = 0640, .unix_mode_set = true};
    char text[256];
    struct stat st;

    snprintf(text, sizeof(text), "unix:%s", f->path);
    serve(f, &echo_handler, cfg, text);
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);
    stop_and_free(f);
}

static void test_server_max_conns_1_closes_second_connection(void **state)
{
    struct fixture *f = *state;
    struct sk_server_config cfg = {.max_conns = 1};
    int first, second, third;

    serve(f, &echo_handler, cfg, "tcp://127.0.0.1:0");
    first = connect_listener(f, 0);
    expect_echo(first, "first");
    second = connect_listener(f, 0);
    expect_eof(second);
    close(second);
    expect_echo(first, "first still served");
    finish_client(first);
    expect_statuses_zero(f, 1);
    assert_int_equal(snapshot(f).opens, 1);
    /* One worker uncounts the first before it accepts again. With two, the
     * other worker may accept between on_close and the uncounting. */
    if (f->threads == 1) {
        third = connect_listener(f, 0);
        expect_echo(third, "third");
        finish_client(third);
    }
    stop_and_free(f);
}

static void test_server_on_open_failure_closes_connection(void **state)
{
    struct fixture *f = *state;
    int fd;

    f->open_result = -1;
    serve(f, &echo_handler, defaults, "tcp://127.0.0.1:0");
    fd = connect_listener(f, 0);
    expect_eof(fd);
    close(fd);
    assert_int_equal(wait_closed(f, 1), -ECONNABORTED);
    stop_and_free(f);
}

/* Reads FLOOD_TOTAL - skip bytes and requires the flood pattern. */
static void expect_flood(int fd, size_t skip)
{
    static char buf[FLOOD_TOTAL];
    size_t len = FLOOD_TOTAL - skip;

    recv_exact(fd, buf, len);
    for (size_t i = 0; i < len; i++)
        if (buf[i] != flood_byte(skip + i))
            fail_msg("flood byte %zu is %d, want %d", skip + i, buf[i],
                     flood_byte(skip + i));
}

/* Writes past output_max succeed and queue; reading from the client stops
 * until the queue drains to half the limit. */
static void
test_server_output_backpressure_queues_and_pauses_reading(void **state)
{
    struct fixture *f = *state;
    struct sk_server_config cfg = {.output_max = SMALL_OUTPUT_MAX};
    struct seen s;
    int fd;

    serve(f, &flood_handler, cfg, "tcp://127.0.0.1:0");
    fd = connect_slow_reader(f);
    send_all(fd, "abc", 3);
    wait_for(f, &f->seen.opens, 1, "opens");
    s = snapshot(f);
    assert_int_equal(s.write_errors, 0);
    assert_int_equal(s.output_max, SMALL_OUTPUT_MAX);
    assert_int_equal(s.max_pending, FLOOD_TOTAL);
    expect_flood(fd, 0);
    wait_for(f, &f->seen.reads, 1, "reads");
    s = snapshot(f);
    if (s.pending_at_read > SMALL_OUTPUT_MAX / 2)
        fail_msg("on_read ran with %zu bytes queued, over half of %d",
                 s.pending_at_read, SMALL_OUTPUT_MAX);
    finish_client(fd);
    stop_and_free(f);
}

/* A stop lets queued output reach the client before closing. */
static void test_server_stop_drains_queued_output(void **state)
{
    struct fixture *f = *state;
    char first;
    int fd;

    serve(f, &flood_handler, defaults, "tcp://127.0.0.1:0");
    fd = connect_slow_reader(f);
    recv_exact(fd, &first, 1);
    assert_int_equal(first, flood_byte(0));
    sk_server_stop(f->srv);
    expect_flood(fd, 1);
    expect_eof(fd);
    close(fd);
    stop_and_free(f);
    assert_int_equal(snapshot(f).closes, 1);
    assert_int_equal(snapshot(f).statuses[0], 0);
}

/* Reads until the server closes; returns the byte count. */
static size_t recv_until_eof(int fd, char *buf, size_t size)
{
    size_t len = 0;
    ssize_t n = 0;

    while (len < size && (n = recv(fd, buf + len, size - len, 0)) > 0)
        len += (size_t)n;
    if (n < 0)
        fail_msg("recv: %s", strerror(errno));
    return len;
}

static void test_server_conn_write_in_on_close_is_epipe(void **state)
{
    struct fixture *f = *state;
    char buf[64];
    int fd;

    serve(f, &closing_handler, defaults, "tcp://127.0.0.1:0");
    fd = connect_listener(f, 0);
    send_all(fd, "x", 1);
    recv_until_eof(fd, buf, sizeof(buf));
    close(fd);
    wait_for(f, &f->seen.closes, 1, "closed connections");
    assert_int_equal(snapshot(f).close_write, -EPIPE);
    stop_and_free(f);
}

/* sk_conn_write() after sk_conn_close() is refused: the peer gets what was
 * queued before the close, then the end of the stream. */
static void test_server_conn_write_after_close_is_epipe(void **state)
{
    struct fixture *f = *state;
    char buf[64];
    size_t len;
    int fd;

    serve(f, &closing_handler, defaults, "tcp://127.0.0.1:0");
    fd = connect_listener(f, 0);
    send_all(fd, "x", 1);
    len = recv_until_eof(fd, buf, sizeof(buf));
    close(fd);
    wait_for(f, &f->seen.closes, 1, "closed connections");
    assert_int_equal(snapshot(f).late_write, -EPIPE);
    assert_int_equal(len, 1);
    assert_memory_equal(buf, "x", 1);
    stop_and_free(f);
}

static void test_server_idle_timeout_closes_silent_connection(void **state)
{
    struct fixture *f = *state;
    struct sk_server_config cfg = {.idle_timeout_ms = 50};
    int fd;

    serve(f, &echo_handler, cfg, "tcp://127.0.0.1:0");
    fd = connect_listener(f, 0);
    expect_eof(fd);
    close(fd);
    assert_int_equal(wait_closed(f, 1), -ETIMEDOUT);
    stop_and_free(f);
}

static void test_server_stop_before_run_makes_run_return(void **state)
{
    struct fixture *f = *state;

    server_new(f, &echo_handler, defaults);
    assert_int_equal(server_listen(f, "tcp://127.0.0.1:0", NULL), 0);
    sk_server_stop(f->srv);
    server_start(f);
    stop_and_free(f);
}

static void test_server_api_misuse_is_refused(void **state)
{
    struct fixture *f = *state;
    struct sk_server_config cfg = {.threads = f->threads};
    struct sk_server *srv = NULL;
    struct sk_endpoint ep;

    assert_int_equal(sk_server_new(&srv, &cfg), -EINVAL);
    assert_null(srv);
    sk_server_free(NULL);
    server_new(f, &stream_only_handler, defaults);
    assert_int_equal(sk_server_run(f->srv), -EDESTADDRREQ);
    assert_int_equal(server_listen(f, "udp://127.0.0.1:0", NULL),
                     -EPROTONOSUPPORT);
    assert_int_equal(sk_server_listener_count(f->srv), 0);
    assert_int_equal(sk_server_listener_endpoint(f->srv, 0, &ep), -EINVAL);
}

/* Each test twice: with one worker and with two. */
#define BOTH(f) WITH_THREADS(f, 1), WITH_THREADS(f, 2)

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_server_echoes_over_tcp),
        BOTH(test_server_wildcard_listener_accepts_ipv4_clients),
        BOTH(test_server_conn_peer_and_local_name_both_ends),
        BOTH(test_server_echoes_over_unix_and_removes_socket_file),
        BOTH(test_server_echoes_over_abstract_unix),
        BOTH(test_server_echoes_over_udp),
        BOTH(test_server_echoes_over_unixgram_to_named_clients),
        BOTH(test_server_listen_on_port_in_use_is_eaddrinuse),
        BOTH(test_server_listen_on_regular_file_is_enotsockfile),
        BOTH(test_server_listen_replaces_stale_socket_file),
        BOTH(test_server_listen_on_live_socket_file_is_eaddrinuse),
        BOTH(test_server_listen_on_abstract_name_in_use_is_eaddrinuse),
        BOTH(test_server_unix_mode_sets_socket_file_mode),
        BOTH(test_server_max_conns_1_closes_second_connection),
        BOTH(test_server_on_open_failure_closes_connection),
        BOTH(test_server_output_backpressure_queues_and_pauses_reading),
        BOTH(test_server_stop_drains_queued_output),
        BOTH(test_server_idle_timeout_closes_silent_connection),
        BOTH(test_server_conn_write_in_on_close_is_epipe),
        BOTH(test_server_conn_write_after_close_is_epipe),
        BOTH(test_server_stop_before_run_makes_run_return),
        BOTH(test_server_api_misuse_is_refused),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
