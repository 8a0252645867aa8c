/* server_proxy.c -- unit tests of the PROXY protocol on a server's
 * listeners (src/conn_proxy.c, conn_life.c): the header's addresses name
 * the peer everywhere (sk_conn_peer(), sk_conn_local(), sk_conn_addrs(),
 * sk_conn_peer_cred()), however the header comes: whole, a byte at a
 * time, with the first data in one write, or cut before its last byte,
 * which comes with the first data. Every test runs with
 * threads = 1 and threads = 2. Bad, missing and late headers, and TLS:
 * server_proxy_fail.c; outbound headers: server_proxy_send.c; access
 * rules and limits with proxy=: server_access.c. */
#include "admission_fixture.h"

/* The canonical name of a (TCP or, if unix, UNIX). */
static void addr_text(const struct sk_addr *a, bool unix, char *out,
                      size_t size)
{
    struct sk_endpoint ep;

    assert_int_equal(sk_endpoint_from_addr(&ep, unix ? SK_UNIX : SK_TCP, a), 0);
    format_endpoint(&ep, out, size);
}

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
    TAIL_DATA, /* the header but its last byte (on UNIX, taken by the
                  server), then that byte and the data in one write */
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
    static char both[SK_PROXY_V2_MAX + FIRST_LEN];
    char echo[FIRST_LEN], text[SK_ENDPOINT_STRLEN];
    bool unix_names = strncmp(c->peer, "unix:", 5) == 0;
    int opens = snapshot(f).opens + 1;
    int fd = connect_listener(f, 0);
    struct admit_seen a;
    struct seen s;

    assert_true(c->len + FIRST_LEN <= sizeof(both));
    if (how == ONE_WRITE || how == TAIL_DATA) {
        size_t part = how == TAIL_DATA ? c->len - 1 : 0;
        send_all(fd, c->bytes, part);
        if (unix && part > 0)
            wait_taken(fd);
        memcpy(both, (const char *)c->bytes + part, c->len - part);
        memcpy(both + c->len - part, first_data, FIRST_LEN);
        send_all(fd, both, c->len - part + FIRST_LEN);
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

/* Serves on fmt and takes each of n cases in each of the four ways. */
static void expect_headers_taken(struct fixture *f, const char *fmt,
                                 const struct header_case *cases, size_t n)
{
    bool unix = strncmp(fmt, "unix:", 5) == 0;

    serve_proxy(f, defaults, fmt);
    for (size_t i = 0; i < n; i++)
        for (enum how how = WHOLE; how <= TAIL_DATA; how++)
            expect_header_taken(f, unix, &cases[i], how);
    expect_statuses_zero(f, (int)(4 * n));
    expect_stats(f, 4 * n, 0, 0, 0, 0, 0, 0);
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
    static const unsigned char tlvs[] = {0x01, 0x00, 0x02, 'h', '2', 0x04,
                                         0x00, 0x03, 0,    0,   0};
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

/* The longest v2 header taken, 4096 bytes (a NOOP TLV filling it), and
 * UNIX addresses on a TCP listener. */
static void test_proxy_v2_longest_header_and_unix_names_on_tcp(void **state)
{
    static unsigned char body[SK_PROXY_V2_MAX - 16], big[SK_PROXY_V2_MAX];
    size_t tlv = sizeof(body) - 12 - 3;
    unsigned char hu[256];
    struct header_case cases[] = {
        {big, 0, PEER4, LOCAL4},
        {hu, v2_unix(hu, "/run/client.sock", "@app"), "unix:/run/client.sock",
         "unix:@app"},
    };

    v2_inet(big, "203.0.113.7", "198.51.100.9", 4242, 443);
    memcpy(body, big + 16, 12);
    body[12] = 0x04; /* PP2_TYPE_NOOP */
    body[13] = (unsigned char)(tlv >> 8);
    body[14] = (unsigned char)tlv;
    cases[0].len = v2_header(big, 0x21, 0x11, body, sizeof(body));
    assert_int_equal(cases[0].len, SK_PROXY_V2_MAX);
    expect_headers_taken(*state, "tcp://127.0.0.1:0,proxy=v2", cases, 2);
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
    send_all(fd, h,
             v2_inet6(h, "2001:db8::1", "2001:db8::2", 80, 443, NULL, 0));
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
    char want[64], listen_text[64], longest[SK_PROXY_V1_MAX];
    const struct {
        const void *bytes;
        size_t len;
    } cases[] = {
        {local, v2_local(local)},
        {unspec, v2_header(unspec, 0x21, 0x00, NULL, 0)},
        {local_inet, v2_inet(local_inet, "203.0.113.7", "198.51.100.9", 1, 2)},
        {unknown, strlen(unknown)},
        {unknown_more, strlen(unknown_more)},
        {longest, SK_PROXY_V1_MAX},
    };
    struct admit_seen a;
    struct seen s;

    local_inet[12] = 0x20; /* LOCAL, with INET addresses to ignore */
    /* The longest v1 header, 107 bytes: UNKNOWN and 91 bytes to ignore. */
    memset(longest, 'x', sizeof(longest));
    memcpy(longest, "PROXY UNKNOWN ", 14);
    memcpy(longest + SK_PROXY_V1_MAX - 2, "\r\n", 2);
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
    expect_statuses_zero(f, 6);
    expect_stats(f, 6, 0, 0, 0, 0, 0, 0);
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

/* UNIX addresses in a header name a client of the proxy, whose
 * credentials the socket's (the proxy's) are not: none are reported. */
static void test_proxy_unix_header_reports_no_credentials(void **state)
{
    struct fixture *f = *state;
    unsigned char h[256];
    int fd;

    serve_proxy(f, defaults, "unix:%s,proxy=v2");
    fd = connect_listener(f, 0);
    send_all(fd, h, v2_unix(h, "/run/client.sock", "/run/app.sock"));
    expect_echo(fd, "unix");
    assert_string_equal(snapshot(f).peer, "unix:/run/client.sock");
    assert_int_equal(admit_snapshot(f).cred_ret, -ENODATA);
    finish_client(fd);
    expect_statuses_zero(f, 1);
    stop_and_free(f);
}

/* Each test twice: with one worker and with two. */
#define BOTH(f)                                                                \
    WITH_SETUP_THREADS(f, 1, admit_setup, admit_teardown),                     \
        WITH_SETUP_THREADS(f, 2, admit_setup, admit_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_proxy_v1_tcp_listener_names_header_addresses),
        BOTH(test_proxy_v2_tcp_listener_names_header_addresses),
        BOTH(test_proxy_v2_longest_header_and_unix_names_on_tcp),
        BOTH(test_proxy_v1_unix_listener_names_header_addresses),
        BOTH(test_proxy_v2_unix_listener_names_header_addresses),
        BOTH(test_proxy_any_listener_takes_both_versions),
        BOTH(test_proxy_header_addresses_are_exact_sockaddrs),
        BOTH(test_proxy_local_and_unknown_keep_socket_addresses),
        BOTH(test_proxy_peer_cred_follows_the_header),
        BOTH(test_proxy_unix_header_reports_no_credentials),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
