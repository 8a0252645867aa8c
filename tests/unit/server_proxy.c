/* server_proxy.c -- unit tests of the PROXY protocol on a server's
 * listeners (src/conn_proxy.c, conn_life.c): the header's addresses name
 * the peer everywhere, however the header comes, and a connection whose
 * header is bad, missing, of the other version or late is closed unopened
 * and counted (proxy_failed); over TLS the header comes first. Every test
 * runs with threads = 1 and threads = 2. Outbound headers:
 * server_proxy_send.c; access rules and limits with proxy=:
 * server_access.c. */
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

/* Serves the admission handler on fmt, "%s" standing for the fixture's
 * socket path. */
static void serve_proxy(struct fixture *f, struct sk_server_config cfg,
                        const char *fmt)
{
    char text[256];

    snprintf(text, sizeof(text), fmt, f->path);
    cfg.log = log_wake;
    serve(f, &admit_handler, cfg, text);
}

static struct admit_seen admit_snapshot(struct fixture *f)
{
    struct admit_seen a;

    pthread_mutex_lock(&f->lock);
    a = aseen;
    pthread_mutex_unlock(&f->lock);
    return a;
}

/* The canonical name of a (TCP or, if unix, UNIX). */
static void addr_text(const struct sk_addr *a, bool unix, char *out,
                      size_t size)
{
    struct sk_endpoint ep;

    assert_int_equal(sk_endpoint_from_addr(&ep, unix ? SK_UNIX : SK_TCP, a),
                     0);
    format_endpoint(&ep, out, size);
}

/* Header texts and bytes. */
static const char v1_tcp4[] = "PROXY TCP4 203.0.113.7 198.51.100.9 4242 443\r\n";
static const char v1_tcp6[] = "PROXY TCP6 2001:db8::1 2001:db8::2 80 443\r\n";
#define PEER4 "tcp://203.0.113.7:4242"
#define LOCAL4 "tcp://198.51.100.9:443"
#define PEER6 "tcp://[2001:db8::1]:80"
#define LOCAL6 "tcp://[2001:db8::2]:443"

/* The client's first bytes: they look like headers, of both versions,
 * and hold a NUL byte, so that any byte of them taken as the header's
 * (or any byte of the header left) shows. */
static const char first_data[] = "\r\n\r\n\0\r\nQUIT\nPROXY TCP4 1.2.3.4 "
                                 "5.6.7.8 1 2\r\nend";
#define FIRST_LEN (sizeof(first_data) - 1)

enum how {
    WHOLE,     /* the header in one write, the data once opened */
    BYTEWISE,  /* the header a byte at a time, the data once opened */
    ONE_WRITE, /* the header and the data in one write */
};

/* A header to send and what the server must make of it. */
struct header_case {
    const void *bytes;
    size_t len;
    const char *peer, *local;
};

/* Sends c on a new connection as how says, then the first data; requires
 * on_open to name the peer and the local side as c says (sk_conn_peer(),
 * sk_conn_local() and sk_conn_addrs() alike) and on_read to get exactly
 * the data. */
static void expect_header_taken(struct fixture *f, bool unix,
                                const struct header_case *c, enum how how)
{
    char both[600], echo[FIRST_LEN], text[SK_ENDPOINT_STRLEN];
    bool unix_names = strncmp(c->peer, "unix:", 5) == 0;
    int opens = snapshot(f).opens + 1;
    int fd = connect_listener(f, 0);
    struct admit_seen a;
    struct seen s;

    assert_true(c->len + FIRST_LEN <= sizeof(both));
    if (how == ONE_WRITE) {
        memcpy(both, c->bytes, c->len);
        memcpy(both + c->len, first_data, FIRST_LEN);
        send_all(fd, both, c->len + FIRST_LEN);
    } else {
        if (how == BYTEWISE)
            send_bytewise(fd, c->bytes, c->len, unix);
        else
            send_all(fd, c->bytes, c->len);
        wait_for(f, &f->seen.opens, opens, "opens");
        send_all(fd, first_data, FIRST_LEN);
    }
    recv_exact(fd, echo, FIRST_LEN);
    assert_memory_equal(echo, first_data, FIRST_LEN);
    s = snapshot(f);
    a = admit_snapshot(f);
    assert_int_equal(s.opens, opens);
    assert_string_equal(s.peer, c->peer);
    assert_string_equal(s.local, c->local);
    assert_int_equal(a.addrs_ret, 0);
    addr_text(&a.peer, unix_names, text, sizeof(text));
    assert_string_equal(text, c->peer);
    addr_text(&a.local, unix_names, text, sizeof(text));
    assert_string_equal(text, c->local);
    assert_int_equal(a.data_len, FIRST_LEN);
    assert_memory_equal(a.data, first_data, FIRST_LEN);
    finish_client(fd);
    wait_for(f, &f->seen.closes, opens, "closes");
}

/* Serves on fmt and takes each of n cases in each of the three ways. */
static void expect_headers_taken(struct fixture *f, const char *fmt,
                                 const struct header_case *cases, size_t n)
{
    bool unix = strncmp(fmt, "unix:", 5) == 0;

    serve_proxy(f, defaults, fmt);
    for (size_t i = 0; i < n; i++)
        for (enum how how = WHOLE; how <= ONE_WRITE; how++)
            expect_header_taken(f, unix, &cases[i], how);
    expect_statuses_zero(f, (int)(3 * n));
    expect_stats(f, 3 * n, 0, 0, 0, 0, 0, 0);
    stop_and_free(f);
}

static void test_proxy_v1_tcp_listener_names_header_addresses(void **state)
{
    const struct header_case cases[] = {
        {v1_tcp4, strlen(v1_tcp4), PEER4, LOCAL4},
        {v1_tcp6, strlen(v1_tcp6), PEER6, LOCAL6},
    };

    expect_headers_taken(*state, "tcp://127.0.0.1:0,proxy=v1", cases, 2);
}

static void test_proxy_v2_tcp_listener_names_header_addresses(void **state)
{
    /* An ALPN TLV and a NOOP one after the addresses, in the length. */
    static const unsigned char tlvs[] = {0x01, 0x00, 0x02, 'h', '2',
                                         0x04, 0x00, 0x03, 0,   0,   0};
    unsigned char h4[64], h6[128], h6t[128];
    const struct header_case cases[] = {
        {h4, v2_inet(h4, "203.0.113.7", "198.51.100.9", 4242, 443), PEER4,
         LOCAL4},
        {h6, v2_inet6(h6, "2001:db8::1", "2001:db8::2", 80, 443, NULL, 0),
         PEER6, LOCAL6},
        {h6t,
         v2_inet6(h6t, "2001:db8::1", "2001:db8::2", 80, 443, tlvs,
                  sizeof(tlvs)),
         PEER6, LOCAL6},
    };

    expect_headers_taken(*state, "tcp://127.0.0.1:0,proxy=v2", cases, 3);
}

static void test_proxy_v1_unix_listener_names_header_addresses(void **state)
{
    const struct header_case cases[] = {
        {v1_tcp4, strlen(v1_tcp4), PEER4, LOCAL4},
    };

    expect_headers_taken(*state, "unix:%s,proxy=v1", cases, 1);
}

/* UNIX addresses in a header give unix: names, abstract ones too. */
static void test_proxy_v2_unix_listener_names_header_addresses(void **state)
{
    unsigned char h6[128], hu[256], ha[256];
    const struct header_case cases[] = {
        {h6, v2_inet6(h6, "2001:db8::1", "2001:db8::2", 80, 443, NULL, 0),
         PEER6, LOCAL6},
        {hu, v2_unix(hu, "/run/client.sock", "/run/app.sock"),
         "unix:/run/client.sock", "unix:/run/app.sock"},
        {ha, v2_unix(ha, "@proxied-client", "/run/app.sock"),
         "unix:@proxied-client", "unix:/run/app.sock"},
    };

    expect_headers_taken(*state, "unix:%s,proxy=v2", cases, 3);
}

static void test_proxy_any_listener_takes_both_versions(void **state)
{
    unsigned char h6[128];
    const struct header_case cases[] = {
        {v1_tcp4, strlen(v1_tcp4), PEER4, LOCAL4},
        {h6, v2_inet6(h6, "2001:db8::1", "2001:db8::2", 80, 443, NULL, 0),
         PEER6, LOCAL6},
    };

    expect_headers_taken(*state, "tcp://127.0.0.1:0,proxy=any", cases, 2);
}

/* sk_conn_addrs() gives the header's sockaddrs field by field. */
static void test_proxy_header_addresses_are_exact_sockaddrs(void **state)
{
    struct fixture *f = *state;
    unsigned char h[128];
    struct admit_seen a;
    int fd;

    serve_proxy(f, defaults, "tcp://127.0.0.1:0,proxy=any");
    fd = connect_listener(f, 0);
    send_all(fd, v1_tcp4, strlen(v1_tcp4));
    expect_echo(fd, "four");
    a = admit_snapshot(f);
    expect_ip(&a.peer, "203.0.113.7", 4242);
    expect_ip(&a.local, "198.51.100.9", 443);
    assert_int_equal(a.cred_ret, -EAFNOSUPPORT);
    finish_client(fd);
    fd = connect_listener(f, 0);
    send_all(fd, h, v2_inet6(h, "2001:db8::1", "2001:db8::2", 80, 443, NULL, 0));
    expect_echo(fd, "six");
    a = admit_snapshot(f);
    expect_ip(&a.peer, "2001:db8::1", 80);
    expect_ip(&a.local, "2001:db8::2", 443);
    finish_client(fd);
    expect_statuses_zero(f, 2);
    stop_and_free(f);
}

/* LOCAL (and PROXY of family UNSPEC, and LOCAL whatever addresses follow
 * it) and v1 UNKNOWN leave the connection its own addresses. */
static void test_proxy_local_and_unknown_keep_socket_addresses(void **state)
{
    struct fixture *f = *state;
    static const char unknown[] = "PROXY UNKNOWN\r\n";
    static const char unknown_more[] = "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n";
    unsigned char local[16], unspec[16], local_inet[64];
    char want[64], listen_text[64];
    const struct {
        const void *bytes;
        size_t len;
    } cases[] = {
        {local, v2_local(local)},
        {unspec, v2_header(unspec, 0x21, 0x00, NULL, 0)},
        {local_inet, v2_inet(local_inet, "203.0.113.7", "198.51.100.9", 1, 2)},
        {unknown, strlen(unknown)},
        {unknown_more, strlen(unknown_more)},
    };
    struct admit_seen a;
    struct seen s;

    local_inet[12] = 0x20; /* LOCAL, with INET addresses to ignore */
    serve_proxy(f, defaults, "tcp://127.0.0.1:0,proxy=any");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int fd = connect_listener(f, 0);
        struct sk_endpoint ep = listener(f, 0);
        ep.proxy = SK_PROXY_NONE;
        format_endpoint(&ep, listen_text, sizeof(listen_text));
        send_all(fd, cases[i].bytes, cases[i].len);
        expect_echo(fd, "mine");
        s = snapshot(f);
        a = admit_snapshot(f);
        snprintf(want, sizeof(want), "tcp://127.0.0.1:%u",
                 (unsigned)local_port(fd));
        assert_int_equal(s.opens, (int)i + 1);
        assert_string_equal(s.peer, want);
        assert_string_equal(s.local, listen_text);
        expect_ip(&a.peer, "127.0.0.1", local_port(fd));
        expect_ip(&a.local, "127.0.0.1", ep.port);
        assert_int_equal(a.data_len, 4);
        finish_client(fd);
    }
    expect_statuses_zero(f, 5);
    expect_stats(f, 5, 0, 0, 0, 0, 0, 0);
    stop_and_free(f);
}

/* On a UNIX listener, a header with IP addresses leaves no credentials
 * (the socket's were the proxy's); LOCAL keeps the real ones. */
static void test_proxy_peer_cred_follows_the_header(void **state)
{
    struct fixture *f = *state;
    unsigned char h[64];
    struct admit_seen a;
    int fd;

    serve_proxy(f, defaults, "unix:%s,proxy=v2");
    fd = connect_listener(f, 0);
    send_all(fd, h, v2_inet(h, "203.0.113.7", "198.51.100.9", 4242, 443));
    expect_echo(fd, "ip");
    a = admit_snapshot(f);
    assert_int_equal(a.cred_ret, -EAFNOSUPPORT);
    assert_string_equal(snapshot(f).peer, PEER4);
    finish_client(fd);
    fd = connect_listener(f, 0);
    send_all(fd, h, v2_local(h));
    expect_echo(fd, "local");
    a = admit_snapshot(f);
    assert_int_equal(a.cred_ret, 0);
    assert_int_equal(a.cred.pid, getpid());
    assert_int_equal(a.cred.uid, getuid());
    assert_int_equal(a.cred.gid, getgid());
    assert_string_equal(snapshot(f).peer, "unix:");
    finish_client(fd);
    expect_statuses_zero(f, 2);
    stop_and_free(f);
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
        print_message("bad client: %s\n", cases[i].what);
        close_refused(fd);
        WAIT_STAT(f, proxy_failed, i + 1);
        assert_int_equal(stats_of(f).proxy_failed, i + 1);
        expect_echo(good, "still good");
    }
    after = good_client(f, v2, 2);
    finish_client(after);
    finish_client(good);
    expect_statuses_zero(f, 2);
    assert_int_equal(snapshot(f).opens, 2);
    expect_stats(f, 2 + n, 0, 0, 0, n, 0, 0);
    stop_and_free(f);
}

static const char plain_request[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

static void test_proxy_bad_headers_on_v2_listener_are_closed(void **state)
{
    unsigned char bad_version[64], bad_family[64], bad_transport[64];
    unsigned char short_len[64], half[64], four[4] = {1, 2, 3, 4};
    const struct bad_case cases[] = {
        {"plain data", plain_request, strlen(plain_request), false},
        {"a v1 header", v1_tcp4, strlen(v1_tcp4), false},
        {"the first byte of a v1 header", "P", 1, false},
        {"v2 version 1", bad_version, 28, false},
        {"v2 family 4", bad_family, 28, false},
        {"v2 transport 3", bad_transport, 28, false},
        {"v2 length short of its addresses", short_len,
         v2_header(short_len, 0x21, 0x11, four, sizeof(four)), false},
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
    expect_bad_headers_closed(*state, "tcp://127.0.0.1:0,proxy=v2", true,
                              cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_proxy_bad_headers_on_v1_listener_are_closed(void **state)
{
    static const char lf_only[] = "PROXY TCP4 203.0.113.7 198.51.100.9 1 2\n";
    static const char tcp5[] = "PROXY TCP5 203.0.113.7 198.51.100.9 1 2\r\n";
    static const char bad_src[] = "PROXY TCP4 203.0.113.256 1.2.3.4 1 2\r\n";
    static const char bad_port[] = "PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n";
    static const char mixed[] = "PROXY TCP4 2001:db8::1 1.2.3.4 1 2\r\n";
    static const char lower[] = "proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n";
    char too_long[160];
    unsigned char v2[64];
    const struct bad_case cases[] = {
        {"v1 ending in LF alone", lf_only, strlen(lf_only), false},
        {"v1 protocol TCP5", tcp5, strlen(tcp5), false},
        {"v1 bad source address", bad_src, strlen(bad_src), false},
        {"v1 port 65536", bad_port, strlen(bad_port), false},
        {"v1 TCP4 with an IPv6 address", mixed, strlen(mixed), false},
        {"v1 signature in lower case", lower, strlen(lower), false},
        {"v1 with no CRLF in 107 bytes", too_long, sizeof(too_long), false},
        {"a v2 header", v2,
         v2_inet(v2, "203.0.113.7", "198.51.100.9", 1, 2), false},
        {"plain data", plain_request, strlen(plain_request), false},
        {"half a header, then EOF", v1_tcp4, 20, true},
    };

    memset(too_long, '1', sizeof(too_long));
    memcpy(too_long, "PROXY UNKNOWN ", 14);
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
    expect_stats(f, 4, 0, 0, 0, 2, 0, 0);
    stop_and_free(f);
}

/* ---------------------------------------------------------------- TLS */

static int connect_preamble(struct client *cl, struct sk_tls *tls,
                            uint16_t port, const void *pre, size_t len)
{
    struct sk_conn_options o = {.handler = &client_handler,
                                .data = cl,
                                .tls = tls,
                                .preamble = pre,
                                .preamble_len = len};
    char text[64];
    struct sk_endpoint ep;

    snprintf(text, sizeof(text), "tls://127.0.0.1:%u", (unsigned)port);
    parse_text(text, &ep, NULL);
    return sk_conn_connect(cloop, &ep, &o, &cl->c);
}

static struct sk_tls *serve_tls_proxy(struct fixture *f)
{
    struct sk_server_config cfg = {.log = log_wake};

    return serve_tls(f, &admit_handler, cfg,
                     "tls://127.0.0.1:0,proxy=v2," SERVER_CERT);
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

    serve_tls_proxy(f);
    assert_int_equal(connect_preamble(cl, tls, port_of(f), h, len), 0);
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
    expect_stats(f, 1, 0, 0, 0, 0, 0, 0);
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
    assert_int_equal(connect_preamble(cl, tls, port_of(f), NULL, 0), 0);
    client_wait_closed(cl);
    assert_int_equal(cl->opens, 0);
    assert_true(cl->status < 0);
    WAIT_STAT(f, proxy_failed, 2);
    cl = client_at(1, "after", 5);
    assert_int_equal(connect_preamble(cl, tls, port_of(f), h, len), 0);
    client_run_until(cl, got_all, "echo");
    assert_int_equal(cl->got.len, 5);
    sk_conn_close(cl->c);
    client_wait_closed(cl);
    assert_int_equal(wait_closed(f, 1), 0);
    assert_int_equal(snapshot(f).opens, 1);
    expect_stats(f, 3, 0, 0, 0, 2, 0, 0);
    stop_and_free(f);
}

/* Each test twice: with one worker and with two. */
/* clang-format off */
#define WITH_THREADS(f, n) \
    {#f " threads=" #n, f, proxy_setup, proxy_teardown, &threads_##n}
/* clang-format on */
#define BOTH(f) WITH_THREADS(f, 1), WITH_THREADS(f, 2)

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_proxy_v1_tcp_listener_names_header_addresses),
        BOTH(test_proxy_v2_tcp_listener_names_header_addresses),
        BOTH(test_proxy_v1_unix_listener_names_header_addresses),
        BOTH(test_proxy_v2_unix_listener_names_header_addresses),
        BOTH(test_proxy_any_listener_takes_both_versions),
        BOTH(test_proxy_header_addresses_are_exact_sockaddrs),
        BOTH(test_proxy_local_and_unknown_keep_socket_addresses),
        BOTH(test_proxy_peer_cred_follows_the_header),
        BOTH(test_proxy_bad_headers_on_v2_listener_are_closed),
        BOTH(test_proxy_bad_headers_on_v1_listener_are_closed),
        BOTH(test_proxy_late_header_is_closed_at_the_deadline),
        BOTH(test_proxy_header_then_tls_handshake),
        BOTH(test_proxy_bad_header_on_tls_closes_unshaken),
    };

    return cmocka_run_group_tests(tests, make_certs, remove_certs);
}
