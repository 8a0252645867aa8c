/* server_proxy_fail.c -- unit tests of the PROXY protocol on a server's
 * listeners when the header is not what it should be (src/conn_proxy.c,
 * conn_life.c): a bad, missing, wrong-version or late header closes the
 * connection unopened, counted once in proxy_failed, while other clients
 * are served; over TLS the header comes before the handshake. Every test
 * runs with threads = 1 and threads = 2. */
#include "tls_fixture.h"

#include "admission_fixture.h"

static int proxy_setup(void **state)
{
    memset(&aseen, 0, sizeof(aseen));
    acl = NULL;
    return tls_setup(state);
}

static int proxy_teardown(void **state)
{
    return tls_teardown(state);
}

/* ----------------------------------------------------------- failures */

/* What a bad client does: sends bytes (len may be 0), then half-closes
 * if eof. */
struct bad_case {
    const char *what;
    const void *bytes;
    size_t len;
    bool eof;
};

/* A client with a good header (v1, or v2 if v2), echoed: served. */
static int good_client(struct fixture *f, bool v2, int opens)
{
    unsigned char h[64];
    int fd = connect_listener(f, 0);

    if (v2)
        send_all(fd, h, v2_inet(h, "203.0.113.7", "198.51.100.9", 4242, 443));
    else
        send_all(fd, v1_tcp4, strlen(v1_tcp4));
    wait_for(f, &f->seen.opens, opens, "opens");
    expect_echo(fd, "good");
    return fd;
}

/* Serves on text; a good client is served before, during and after the
 * n bad ones, each closed unopened and counted once. */
static void expect_bad_headers_closed(struct fixture *f, const char *text,
                                      bool v2, const struct bad_case *cases,
                                      size_t n)
{
    int good, after;

    serve_proxy(f, defaults, text);
    good = good_client(f, v2, 1);
    for (size_t i = 0; i < n; i++) {
        int fd = connect_listener(f, 0);
        if (cases[i].len > 0)
            send_all(fd, cases[i].bytes, cases[i].len);
        if (cases[i].eof)
            assert_int_equal(shutdown(fd, SHUT_WR), 0);
        close_refused_as(fd, cases[i].what);
        WAIT_STAT(f, proxy_failed, i + 1);
        assert_int_equal(stats_of(f).proxy_failed, i + 1);
        expect_echo(good, "still good");
    }
    after = good_client(f, v2, 2);
    finish_client(after);
    finish_client(good);
    expect_statuses_zero(f, 2);
    assert_int_equal(snapshot(f).opens, 2);
    expect_stats(f, 2, 0, 0, 0, n, 0, 0); /* bad headers: not admitted */
    stop_and_free(f);
}

static const char plain_request[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

static void test_proxy_bad_headers_on_v2_listener_are_closed(void **state)
{
    unsigned char bad_version[64], bad_family[64], bad_transport[64];
    unsigned char short_len[64], half[64], four[4] = {1, 2, 3, 4};
    unsigned char too_long[64];
    const struct bad_case cases[] = {
        {"plain data", plain_request, strlen(plain_request), false},
        {"a v1 header", v1_tcp4, strlen(v1_tcp4), false},
        {"the first byte of a v1 header", "P", 1, false},
        {"v2 version 1", bad_version, 28, false},
        {"v2 family 4", bad_family, 28, false},
        {"v2 transport 3", bad_transport, 28, false},
        {"v2 length short of its addresses", short_len,
         v2_header(short_len, 0x21, 0x11, four, sizeof(four)), false},
        {"v2 length past 4096 bytes", too_long, 28, false},
        {"nothing, then EOF", NULL, 0, true},
        {"half a header, then EOF", half, 14, true},
    };

    v2_inet(bad_version, "203.0.113.7", "198.51.100.9", 1, 2);
    bad_version[12] = 0x11;
    v2_inet(bad_family, "203.0.113.7", "198.51.100.9", 1, 2);
    bad_family[13] = 0x41;
    v2_inet(bad_transport, "203.0.113.7", "198.51.100.9", 1, 2);
    bad_transport[13] = 0x13;
    v2_inet(half, "203.0.113.7", "198.51.100.9", 1, 2);
    v2_inet(too_long, "203.0.113.7", "198.51.100.9", 1, 2);
    too_long[14] = 0x0f; /* 16 + 0x0ff1: 4097 bytes */
    too_long[15] = 0xf1;
    expect_bad_headers_closed(*state, "tcp://127.0.0.1:0,proxy=v2", true, cases,
                              sizeof(cases) / sizeof(cases[0]));
}

static void test_proxy_bad_headers_on_v1_listener_are_closed(void **state)
{
    static const char lf_only[] = "PROXY TCP4 203.0.113.7 198.51.100.9 1 2\n";
    static const char tcp5[] = "PROXY TCP5 203.0.113.7 198.51.100.9 1 2\r\n";
    static const char bad_src[] = "PROXY TCP4 203.0.113.256 1.2.3.4 1 2\r\n";
    static const char bad_port[] = "PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n";
    static const char mixed[] = "PROXY TCP4 2001:db8::1 1.2.3.4 1 2\r\n";
    static const char lower[] = "proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n";
    char too_long[160], just_over[SK_PROXY_V1_MAX + 1];
    unsigned char v2[64];
    const struct bad_case cases[] = {
        {"v1 ending in LF alone", lf_only, strlen(lf_only), false},
        {"v1 protocol TCP5", tcp5, strlen(tcp5), false},
        {"v1 bad source address", bad_src, strlen(bad_src), false},
        {"v1 port 65536", bad_port, strlen(bad_port), false},
        {"v1 TCP4 with an IPv6 address", mixed, strlen(mixed), false},
        {"v1 signature in lower case", lower, strlen(lower), false},
        {"v1 with no CRLF in 107 bytes", too_long, sizeof(too_long), false},
        {"v1 of 108 bytes, CRLF included", just_over, sizeof(just_over), false},
        {"a v2 header", v2, v2_inet(v2, "203.0.113.7", "198.51.100.9", 1, 2),
         false},
        {"plain data", plain_request, strlen(plain_request), false},
        {"half a header, then EOF", v1_tcp4, 20, true},
    };

    memset(too_long, '1', sizeof(too_long));
    memcpy(too_long, "PROXY UNKNOWN ", 14);
    memset(just_over, 'x', sizeof(just_over));
    memcpy(just_over, "PROXY UNKNOWN ", 14);
    memcpy(just_over + sizeof(just_over) - 2, "\r\n", 2);
    expect_bad_headers_closed(*state, "tcp://127.0.0.1:0,proxy=v1", false,
                              cases, sizeof(cases) / sizeof(cases[0]));
}

/* Half a header, or none, is closed past handshake_timeout_ms (and not
 * before); a connection opened meanwhile stays. */
static void test_proxy_late_header_is_closed_at_the_deadline(void **state)
{
    struct fixture *f = *state;
    struct sk_server_config cfg = {.handshake_timeout_ms = 300};
    int good, half, silent, after;
    uint64_t t0, waited;

    serve_proxy(f, cfg, "tcp://127.0.0.1:0,proxy=v1");
    good = good_client(f, false, 1);
    t0 = now_ms();
    half = connect_listener(f, 0);
    silent = connect_listener(f, 0);
    send_all(half, v1_tcp4, 20);
    close_refused(half);
    close_refused(silent);
    waited = now_ms() - t0;
    if (waited < 295)
        fail_msg("closed after %llu ms, before the 300 ms deadline",
                 (unsigned long long)waited);
    WAIT_STAT(f, proxy_failed, 2);
    expect_echo(good, "still open past the deadline");
    after = good_client(f, false, 2);
    finish_client(after);
    finish_client(good);
    expect_statuses_zero(f, 2);
    assert_int_equal(snapshot(f).opens, 2);
    expect_stats(f, 2, 0, 0, 0, 2, 0, 0);
    stop_and_free(f);
}

/* A stop does not wait for a header that may never come: the client is
 * closed and sk_server_run() returns well before drain_ms. */
static void test_proxy_stop_closes_connection_awaiting_header(void **state)
{
    struct fixture *f = *state;
    struct sk_server_config cfg = {.drain_ms = 4000};
    uint64_t t0, took;
    int fd;

    /* UNIX: the server taking the piece shows it awaits the rest. */
    serve_proxy(f, cfg, "unix:%s,proxy=v1");
    fd = connect_listener(f, 0);
    send_all(fd, v1_tcp4, 20);
    wait_taken(fd);
    t0 = now_ms();
    server_join(f);
    took = now_ms() - t0;
    assert_int_equal(f->run_ret, 0);
    close_refused(fd);
    if (took >= 2000)
        fail_msg("the stop took %llu ms, waiting for the header",
                 (unsigned long long)took);
    assert_int_equal(snapshot(f).opens, 0);
}

/* ---------------------------------------------------------------- TLS */

/* Reads (and drops) what the server sends until it closes. */
static void read_until_closed(int fd)
{
    char buf[4096];
    ssize_t n;

    for (int i = 0; i < 1000; i++) {
        n = recv(fd, buf, sizeof(buf), 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return;
        if (n < 0)
            fail_msg("recv: %s", strerror(errno));
    }
    fail_msg("the server goes on sending");
}

/* Connects cl over TLS to port, the endpoint with opts (",proxy=v2" or
 * ""), sending the preamble pre (NULL: none) first. */
static int connect_preamble(struct client *cl, struct sk_tls *tls,
                            uint16_t port, const char *opts, const void *pre,
                            size_t len)
{
    struct sk_conn_options o = {.handler = &client_handler,
                                .data = cl,
                                .tls = tls,
                                .preamble = pre,
                                .preamble_len = len};
    char text[64];
    struct sk_endpoint ep;

    snprintf(text, sizeof(text), "tls://127.0.0.1:%u%s", (unsigned)port, opts);
    parse_text(text, &ep, NULL);
    return sk_conn_connect(cloop, &ep, &o, &cl->c);
}

static struct sk_tls *serve_tls_proxy(struct fixture *f)
{
    struct sk_server_config cfg = {.log = log_wake};

    return serve_tls(f, &admit_handler, cfg,
                     "tls://127.0.0.1:0,proxy=v2," SERVER_CERT);
}

/* The header and the handshake share one deadline: a header sent late
 * leaves the handshake only what is left of it, not a deadline anew. */
static void test_proxy_header_and_handshake_share_the_deadline(void **state)
{
    struct fixture *f = *state;
    struct sk_server_config cfg = {.log = log_wake,
                                   .handshake_timeout_ms = 1000};
    struct timespec late = {0, 700 * 1000 * 1000};
    uint64_t t0, took;
    int fd;

    serve_tls(f, &admit_handler, cfg,
              "tls://127.0.0.1:0,proxy=v1," SERVER_CERT);
    t0 = now_ms();
    fd = connect_listener(f, 0);
    nanosleep(&late, NULL);
    send_all(fd, v1_tcp4, strlen(v1_tcp4)); /* and then no ClientHello */
    close_refused(fd);
    took = now_ms() - t0;
    /* The deadline is 1000 ms, checked every 250 ms: closed by about
     * 1250 ms, where a deadline anew would have waited to 1700. */
    if (took < 995 || took >= 1500)
        fail_msg("closed after %llu ms, the deadline being 1000 ms",
                 (unsigned long long)took);
    WAIT_STAT(f, tls_failed, 1);
    stop_and_free(f);
}

/* The header first, then the handshake: on_open names the header's peer
 * over TLS. */
static void test_proxy_header_then_tls_handshake(void **state)
{
    struct fixture *f = *state;
    static const char msg[] = "over TLS, after a header";
    struct client *cl = client_at(0, msg, strlen(msg));
    struct sk_tls *tls = make_tls("tls://127.0.0.1:1,ca=$/ca.pem", false);
    unsigned char h[64];
    size_t len = v2_inet(h, "203.0.113.7", "198.51.100.9", 4242, 443);
    char text[SK_ENDPOINT_STRLEN];

    serve_tls_proxy(f);
    assert_int_equal(connect_preamble(cl, tls, port_of(f), "", h, len), 0);
    client_run_until(cl, got_all, "echo");
    if (cl->closes > 0)
        fail_msg("closed with %d (%s) before the echo", cl->status, cl->error);
    assert_string_equal(cl->version, "TLSv1.3");
    assert_int_equal(cl->got.len, strlen(msg));
    assert_memory_equal(sk_buf_head(&cl->got), msg, strlen(msg));
    assert_string_equal(snapshot(f).peer, PEER4);
    assert_string_equal(snapshot(f).local, LOCAL4);
    assert_true(admit_snapshot(f).tls);
    assert_int_equal(admit_snapshot(f).data_len, strlen(msg));
    sk_conn_close(cl->c);
    client_wait_closed(cl);
    assert_int_equal(wait_closed(f, 1), 0);
    /* Without a preamble, proxy=v2 sends the socket's own addresses. */
    cl = client_at(1, msg, strlen(msg));
    assert_int_equal(
        connect_preamble(cl, tls, port_of(f), ",proxy=v2", NULL, 0), 0);
    client_run_until(cl, got_all, "echo");
    assert_int_equal(cl->got.len, strlen(msg));
    format_endpoint(sk_conn_local(cl->c), text, sizeof(text));
    assert_string_equal(snapshot(f).peer, text);
    sk_conn_close(cl->c);
    client_wait_closed(cl);
    assert_int_equal(wait_closed(f, 2), 0);
    expect_stats(f, 2, 0, 0, 0, 0, 0, 0);
    stop_and_free(f);
}

/* A good header, then no TLS: a failed handshake (tls_failed), the
 * header having been good. */
static void test_proxy_good_header_then_bad_tls_is_a_tls_failure(void **state)
{
    struct fixture *f = *state;
    unsigned char h[64];
    int fd;

    serve_tls_proxy(f);
    fd = connect_listener(f, 0);
    send_all(fd, h, v2_inet(h, "203.0.113.7", "198.51.100.9", 4242, 443));
    send_all(fd, plain_request, strlen(plain_request));
    read_until_closed(fd); /* an alert may come first */
    close(fd);
    WAIT_STAT(f, tls_failed, 1);
    assert_int_equal(snapshot(f).opens, 0);
    expect_stats(f, 1, 0, 0, 0, 0, 1, 0);
    stop_and_free(f);
}

/* No header (a ClientHello first, or a plain request): closed before any
 * handshake, counted as a PROXY failure, not a TLS one. */
static void test_proxy_bad_header_on_tls_closes_unshaken(void **state)
{
    struct fixture *f = *state;
    struct client *cl = client_at(0, "x", 1);
    struct sk_tls *tls = make_tls("tls://127.0.0.1:1,ca=$/ca.pem", false);
    unsigned char h[64];
    size_t len = v2_inet(h, "203.0.113.7", "198.51.100.9", 4242, 443);
    int fd;

    serve_tls_proxy(f);
    fd = connect_listener(f, 0);
    send_all(fd, plain_request, strlen(plain_request));
    close_refused(fd); /* not a byte: no ServerHello, no alert */
    WAIT_STAT(f, proxy_failed, 1);
    assert_int_equal(connect_preamble(cl, tls, port_of(f), "", NULL, 0), 0);
    client_wait_closed(cl);
    assert_int_equal(cl->opens, 0);
    assert_true(cl->status < 0);
    WAIT_STAT(f, proxy_failed, 2);
    cl = client_at(1, "after", 5);
    assert_int_equal(connect_preamble(cl, tls, port_of(f), "", h, len), 0);
    client_run_until(cl, got_all, "echo");
    assert_int_equal(cl->got.len, 5);
    sk_conn_close(cl->c);
    client_wait_closed(cl);
    assert_int_equal(wait_closed(f, 1), 0);
    assert_int_equal(snapshot(f).opens, 1);
    expect_stats(f, 1, 0, 0, 0, 2, 0, 0);
    stop_and_free(f);
}

/* Each test twice: with one worker and with two. */
#define BOTH(f)                                                                \
    WITH_SETUP_THREADS(f, 1, proxy_setup, proxy_teardown),                     \
        WITH_SETUP_THREADS(f, 2, proxy_setup, proxy_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_proxy_bad_headers_on_v2_listener_are_closed),
        BOTH(test_proxy_bad_headers_on_v1_listener_are_closed),
        BOTH(test_proxy_late_header_is_closed_at_the_deadline),
        BOTH(test_proxy_stop_closes_connection_awaiting_header),
        BOTH(test_proxy_header_then_tls_handshake),
        BOTH(test_proxy_header_and_handshake_share_the_deadline),
        BOTH(test_proxy_good_header_then_bad_tls_is_a_tls_failure),
        BOTH(test_proxy_bad_header_on_tls_closes_unshaken),
    };

    return cmocka_run_group_tests(tests, make_certs, remove_certs);
}
