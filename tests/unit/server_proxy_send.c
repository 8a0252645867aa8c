/* server_proxy_send.c -- unit tests of the PROXY headers sockit sends
 * (src/conn_connect.c, conn_proxy.c): an outbound connection's preamble,
 * the header an endpoint with proxy= sends without one, and
 * sk_proxy_send(). The peer is a plain socket of the test, accepted and
 * read on the client loop (tls_fixture.h), so that every byte it gets is
 * seen, in order, up to the end of the stream. Each test runs once
 * (the server of the last one with one worker). */
#include "tls_fixture.h"

#include "admission_fixture.h"

/* The test's end: a listening socket, then the connection it accepted. */
struct peer {
    struct sk_io lio, io;
    int lfd, fd;
    char buf[2048];
    size_t len;
    bool eof;
};
static struct peer peer;

static void peer_read(struct sk_io *io, unsigned events)
{
    ssize_t n = recv(peer.fd, peer.buf + peer.len, sizeof(peer.buf) - peer.len,
                     MSG_DONTWAIT);

    (void)events;
    if (n > 0) {
        peer.len += (size_t)n;
    } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        peer.eof = true;
        sk_io_stop(io);
    }
    sk_loop_stop(cloop);
}

static void peer_accept(struct sk_io *io, unsigned events)
{
    int fd = accept4(peer.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

    (void)events;
    if (fd < 0)
        return;
    sk_io_stop(io);
    peer.fd = fd;
    if (sk_io_start(cloop, &peer.io, fd, SK_READ, false, peer_read) != 0)
        peer.eof = true;
}

/* A listening TCP socket of family on its loopback address, watched on
 * the client loop; returns its port. */
static uint16_t peer_listen(int family)
{
    struct sk_addr a = {.len = sizeof(a.u)};
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    memset(&a.u, 0, sizeof(a.u));
    a.u.sa.sa_family = (sa_family_t)family;
    if (family == AF_INET)
        a.u.in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else
        a.u.in6.sin6_addr = in6addr_loopback;
    a.len = family == AF_INET ? sizeof(a.u.in) : sizeof(a.u.in6);
    assert_int_equal(bind(fd, &a.u.sa, a.len), 0);
    assert_int_equal(listen(fd, 8), 0);
    peer.lfd = fd;
    assert_int_equal(
        sk_io_start(cloop, &peer.lio, fd, SK_READ, false, peer_accept), 0);
    return local_port(fd);
}

/* The port of the client's end, as the peer sees it. */
static uint16_t peer_client_port(void)
{
    struct sk_addr a = {.len = sizeof(a.u)};

    assert_int_equal(getpeername(peer.fd, &a.u.sa, &a.len), 0);
    return ntohs(a.u.sa.sa_family == AF_INET6 ? a.u.in6.sin6_port
                                              : a.u.in.sin_port);
}

static bool peer_has(size_t want)
{
    return peer.len >= want || peer.eof;
}

/* Runs the client loop until the peer has want bytes (SIZE_MAX: the end
 * of the stream), or fails after CLIENT_WAIT_MS. */
static void run_until_peer_has(size_t want)
{
    ctimed_out = false;
    sk_timer_start(cloop, &cdeadline, CLIENT_WAIT_MS, 0);
    while (!peer_has(want) && !ctimed_out)
        assert_int_equal(sk_loop_run(cloop), 0);
    sk_timer_stop(&cdeadline);
    if (!peer_has(want))
        fail_msg("peer: %zu bytes after %d ms, want %zu", peer.len,
                 CLIENT_WAIT_MS, want);
}

static int peer_setup(void **state)
{
    memset(&peer, 0, sizeof(peer));
    peer.lfd = peer.fd = -1;
    return tls_setup(state);
}

static int peer_teardown(void **state)
{
    sk_io_stop(&peer.lio);
    sk_io_stop(&peer.io);
    if (peer.lfd >= 0)
        close(peer.lfd);
    if (peer.fd >= 0)
        close(peer.fd);
    return tls_teardown(state);
}

static const char from_open[] = "written in on_open";
#define FROM_OPEN_LEN (sizeof(from_open) - 1)

/* Connects client 0 to text with preamble (NULL: none); it writes
 * from_open once open. The preamble is overwritten as soon as
 * sk_conn_connect() returns: it need not outlive the call. */
static void connect_with_preamble(const char *text, void *pre, size_t len)
{
    struct client *cl = client_at(0, from_open, FROM_OPEN_LEN);
    struct sk_conn_options o = {.handler = &client_handler,
                                .data = cl,
                                .preamble = pre,
                                .preamble_len = len};
    struct sk_endpoint ep;

    parse_text(text, &ep, NULL);
    assert_int_equal(sk_conn_connect(cloop, &ep, &o, &cl->c), 0);
    if (pre != NULL)
        memset(pre, 'X', len);
}

/* Requires the peer to read want, then from_open, then the end of the
 * stream once the client closes. */
static void expect_peer_reads(const void *want, size_t len)
{
    run_until_peer_has(len + FROM_OPEN_LEN);
    assert_int_equal(clients[0].opens, 1);
    sk_conn_close(clients[0].c);
    run_until_peer_has(SIZE_MAX);
    client_wait_closed(&clients[0]);
    assert_int_equal(clients[0].status, 0);
    assert_int_equal(peer.len, len + FROM_OPEN_LEN);
    assert_memory_equal(peer.buf, want, len);
    assert_memory_equal(peer.buf + len, from_open, FROM_OPEN_LEN);
}

static struct sk_addr ip_addr(const char *text, uint16_t port)
{
    struct sk_addr a;

    memset(&a, 0, sizeof(a));
    if (inet_pton(AF_INET, text, &a.u.in.sin_addr) == 1) {
        a.u.in.sin_family = AF_INET;
        a.u.in.sin_port = htons(port);
        a.len = sizeof(a.u.in);
    } else {
        assert_int_equal(inet_pton(AF_INET6, text, &a.u.in6.sin6_addr), 1);
        a.u.in6.sin6_family = AF_INET6;
        a.u.in6.sin6_port = htons(port);
        a.len = sizeof(a.u.in6);
    }
    return a;
}

/* ----------------------------------------------------------- preamble */

/* The preamble is the first bytes on the wire, before what on_open
 * wrote; whatever the endpoint's proxy= says. */
static void test_connect_sends_preamble_first(void **state)
{
    struct sk_addr src = ip_addr("203.0.113.7", 4242);
    struct sk_addr dst = ip_addr("198.51.100.9", 443);
    char hdr[SK_PROXY_HEADER_MAX], copy[SK_PROXY_HEADER_MAX], text[64];
    int len;

    (void)state;
    len =
        sk_proxy_format(SK_PROXY_V2, SOCK_STREAM, &src, &dst, hdr, sizeof(hdr));
    assert_int_equal(len, 28);
    memcpy(copy, hdr, (size_t)len);
    snprintf(text, sizeof(text), "tcp://127.0.0.1:%u,proxy=v1",
             (unsigned)peer_listen(AF_INET));
    connect_with_preamble(text, hdr, (size_t)len);
    expect_peer_reads(copy, (size_t)len);
}

static void test_connect_sends_v1_preamble_first(void **state)
{
    struct sk_addr src = ip_addr("2001:db8::1", 80);
    struct sk_addr dst = ip_addr("2001:db8::2", 443);
    static const char want[] = "PROXY TCP6 2001:db8::1 2001:db8::2 80 443\r\n";
    char hdr[SK_PROXY_HEADER_MAX], text[64];
    int len;

    (void)state;
    len =
        sk_proxy_format(SK_PROXY_V1, SOCK_STREAM, &src, &dst, hdr, sizeof(hdr));
    assert_int_equal(len, (int)strlen(want));
    snprintf(text, sizeof(text), "tcp://127.0.0.1:%u",
             (unsigned)peer_listen(AF_INET));
    connect_with_preamble(text, hdr, (size_t)len);
    expect_peer_reads(want, strlen(want));
}

static void test_connect_refuses_preamble_past_v2_max(void **state)
{
    static char big[SK_PROXY_V2_MAX + 1];
    struct sk_conn_options o = {.handler = &client_handler,
                                .data = &clients[0],
                                .preamble = big,
                                .preamble_len = sizeof(big)};
    struct sk_conn *c = NULL;
    struct sk_endpoint ep;

    (void)state;
    parse_text("tcp://127.0.0.1:1", &ep, NULL);
    assert_int_equal(sk_conn_connect(cloop, &ep, &o, &c), -EINVAL);
    assert_null(c);
}

/* ------------------------------------------- endpoint proxy=, no preamble */

/* proxy=v1 sends the socket's own addresses: its local one as the
 * source, the peer as the destination. */
static void test_connect_proxy_v1_sends_own_addresses(void **state)
{
    char text[64], want[128];
    uint16_t port;

    (void)state;
    port = peer_listen(AF_INET);
    snprintf(text, sizeof(text), "tcp://127.0.0.1:%u,proxy=v1", (unsigned)port);
    connect_with_preamble(text, NULL, 0);
    run_until_peer_has(1);
    snprintf(want, sizeof(want), "PROXY TCP4 127.0.0.1 127.0.0.1 %u %u\r\n",
             (unsigned)peer_client_port(), (unsigned)port);
    expect_peer_reads(want, strlen(want));
}

static void test_connect_proxy_v1_over_ipv6(void **state)
{
    char text[64], want[128];
    uint16_t port;

    (void)state;
    port = peer_listen(AF_INET6);
    snprintf(text, sizeof(text), "tcp://[::1]:%u,proxy=v1", (unsigned)port);
    connect_with_preamble(text, NULL, 0);
    run_until_peer_has(1);
    snprintf(want, sizeof(want), "PROXY TCP6 ::1 ::1 %u %u\r\n",
             (unsigned)peer_client_port(), (unsigned)port);
    expect_peer_reads(want, strlen(want));
}

/* Requires buf[0..len) to start with a v2 header from 127.0.0.1:sport to
 * 127.0.0.1:dport; returns its length. */
static int expect_v2_own(const void *buf, size_t len, uint16_t sport,
                         uint16_t dport)
{
    struct sk_proxy_header h;
    const char *why = NULL;
    int n = sk_proxy_parse(buf, len, SK_PROXY_V2, &h, &why);

    if (n <= 0)
        fail_msg("no v2 header: %d (%s)", n, why ? why : "more needed");
    assert_int_equal(n, 28);
    assert_int_equal(h.version, 2);
    assert_false(h.local);
    assert_int_equal(h.socktype, SOCK_STREAM);
    expect_ip(&h.src, "127.0.0.1", sport);
    expect_ip(&h.dst, "127.0.0.1", dport);
    return n;
}

static void test_connect_proxy_v2_sends_own_addresses(void **state)
{
    char text[64];
    uint16_t port;
    int n;

    (void)state;
    port = peer_listen(AF_INET);
    snprintf(text, sizeof(text), "tcp://127.0.0.1:%u,proxy=v2", (unsigned)port);
    connect_with_preamble(text, NULL, 0);
    run_until_peer_has(28 + FROM_OPEN_LEN);
    n = expect_v2_own(peer.buf, peer.len, peer_client_port(), port);
    expect_peer_reads(peer.buf, (size_t)n); /* then from_open, then EOF */
}

/* ------------------------------------------------------ sk_proxy_send() */

/* A blocking client connected to the peer's listener, and the peer's
 * end of it (accepted here, not on the loop). */
static int connected_pair(int family, int *accepted, uint16_t *port)
{
    struct sk_endpoint ep;
    char text[64];
    int fd;

    *port = peer_listen(family);
    sk_io_stop(&peer.lio);
    snprintf(text, sizeof(text),
             family == AF_INET ? "tcp://127.0.0.1:%u" : "tcp://[::1]:%u",
             (unsigned)*port);
    parse_text(text, &ep, NULL);
    fd = client_connect(&ep);
    *accepted = accept4(peer.lfd, NULL, NULL, SOCK_CLOEXEC);
    assert_true(*accepted >= 0);
    return fd;
}

static void test_proxy_send_v1_and_v2_on_a_connected_socket(void **state)
{
    char want[128], buf[128];
    uint16_t port;
    int fd, acc;

    (void)state;
    fd = connected_pair(AF_INET, &acc, &port);
    assert_int_equal(sk_proxy_send(fd, SK_PROXY_V1), 0);
    snprintf(want, sizeof(want), "PROXY TCP4 127.0.0.1 127.0.0.1 %u %u\r\n",
             (unsigned)local_port(fd), (unsigned)port);
    recv_exact(acc, buf, strlen(want));
    assert_memory_equal(buf, want, strlen(want));
    assert_int_equal(sk_proxy_send(fd, SK_PROXY_V2), 0);
    recv_exact(acc, buf, 28);
    expect_v2_own(buf, 28, local_port(fd), port);
    /* Nothing more was sent. */
    close(fd);
    expect_eof(acc);
    close(acc);
}

static void test_proxy_send_over_ipv6(void **state)
{
    struct sk_proxy_header h;
    char want[128], buf[128];
    uint16_t port;
    int fd, acc;

    (void)state;
    fd = connected_pair(AF_INET6, &acc, &port);
    assert_int_equal(sk_proxy_send(fd, SK_PROXY_V1), 0);
    snprintf(want, sizeof(want), "PROXY TCP6 ::1 ::1 %u %u\r\n",
             (unsigned)local_port(fd), (unsigned)port);
    recv_exact(acc, buf, strlen(want));
    assert_memory_equal(buf, want, strlen(want));
    assert_int_equal(sk_proxy_send(fd, SK_PROXY_V2), 0);
    recv_exact(acc, buf, 52);
    assert_int_equal(sk_proxy_parse(buf, 52, SK_PROXY_V2, &h, NULL), 52);
    expect_ip(&h.src, "::1", local_port(fd));
    expect_ip(&h.dst, "::1", port);
    close(fd);
    expect_eof(acc);
    close(acc);
}

/* A UNIX socket's addresses: v1 can carry none (UNKNOWN). */
static void test_proxy_send_on_unix_socket(void **state)
{
    static const char want[] = "PROXY UNKNOWN\r\n";
    char buf[32];
    int sv[2];

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(sk_proxy_send(sv[0], SK_PROXY_V1), 0);
    assert_int_equal(recv(sv[1], buf, sizeof(buf), MSG_DONTWAIT),
                     (ssize_t)strlen(want));
    assert_memory_equal(buf, want, strlen(want));
    assert_int_equal(sk_proxy_send(sv[0], SK_PROXY_ANY), -EINVAL);
    close(sv[0]);
    close(sv[1]);
}

/* --------------------------------------------- into a proxy= server */

/* What a proxy= server makes of sockit's own header: the client's real
 * addresses. */
static void test_connect_proxy_v2_into_proxy_server(void **state)
{
    struct fixture *f = *state;
    struct client *cl = client_at(0, "through", 7);
    struct sk_conn_options o = {.handler = &client_handler, .data = cl};
    struct sk_server_config cfg = {.log = log_wake};
    char text[64], want[64];
    struct sk_endpoint ep;

    serve(f, &admit_handler, cfg, "tcp://127.0.0.1:0,proxy=v2");
    snprintf(text, sizeof(text), "tcp://127.0.0.1:%u,proxy=v2",
             (unsigned)port_of(f));
    parse_text(text, &ep, NULL);
    assert_int_equal(sk_conn_connect(cloop, &ep, &o, &cl->c), 0);
    client_run_until(cl, got_all, "echo");
    assert_int_equal(cl->got.len, 7);
    snprintf(want, sizeof(want), "tcp://127.0.0.1:%u", (unsigned)port_of(f));
    assert_string_equal(snapshot(f).local, want);
    format_endpoint(sk_conn_local(cl->c), want, sizeof(want));
    assert_string_equal(snapshot(f).peer, want);
    sk_conn_close(cl->c);
    client_wait_closed(cl);
    assert_int_equal(wait_closed(f, 1), 0);
    expect_stats(f, 1, 0, 0, 0, 0, 0, 0);
    stop_and_free(f);
}

#define TEST(f)                                                                \
    {                                                                          \
#f, f, peer_setup, peer_teardown, &threads_1                           \
    }

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_connect_sends_preamble_first),
        TEST(test_connect_sends_v1_preamble_first),
        TEST(test_connect_refuses_preamble_past_v2_max),
        TEST(test_connect_proxy_v1_sends_own_addresses),
        TEST(test_connect_proxy_v1_over_ipv6),
        TEST(test_connect_proxy_v2_sends_own_addresses),
        TEST(test_proxy_send_v1_and_v2_on_a_connected_socket),
        TEST(test_proxy_send_over_ipv6),
        TEST(test_proxy_send_on_unix_socket),
        TEST(test_connect_proxy_v2_into_proxy_server),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
