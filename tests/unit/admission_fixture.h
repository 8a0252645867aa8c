/* admission_fixture.h -- what the tests of a server's first steps share
 * (PROXY headers, access rules, per-source and connection limits, the
 * counters), on top of server_fixture.h: a handler that records the
 * addresses and credentials a connection reports and the bytes it reads,
 * a log hook that wakes the test, waits for sk_server_get_stats() counters
 * and PROXY headers written by hand (not by sk_proxy_format(), so that a
 * fault in it cannot hide one in the parser). Included by server_proxy.c,
 * server_access.c and server_proxy_send.c; all static. */
#ifndef SOCKIT_TEST_ADMISSION_FIXTURE_H
#define SOCKIT_TEST_ADMISSION_FIXTURE_H

#include "server_fixture.h"

#include <linux/sockios.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>

#define READ_MAX 512

/* What the admission handler saw, under f->lock (the fixture's struct seen
 * holds the counts and the names). */
struct admit_seen {
    struct sk_addr peer, local; /* sk_conn_addrs() at on_open */
    int addrs_ret;
    int cred_ret; /* sk_conn_peer_cred() at on_open */
    struct sk_peer_cred cred;
    bool tls; /* sk_conn_tls_version() was not NULL at on_open */
    char data[READ_MAX];
    size_t data_len; /* bytes read since the last open */
    int logs;
};
static struct admit_seen aseen;
/* Rules of the test's server, freed at teardown (after the server). */
static struct sk_access *acl;

static int on_open_admit(struct sk_conn *c)
{
    struct fixture *f = fixture_of_conn(c);
    struct sk_addr peer, local;
    struct sk_peer_cred cred = {0};
    int addrs = sk_conn_addrs(c, &peer, &local);
    int cr = sk_conn_peer_cred(c, &cred);

    pthread_mutex_lock(&f->lock);
    aseen.peer = peer;
    aseen.local = local;
    aseen.addrs_ret = addrs;
    aseen.cred_ret = cr;
    aseen.cred = cred;
    aseen.tls = sk_conn_tls_version(c) != NULL;
    aseen.data_len = 0;
    pthread_mutex_unlock(&f->lock);
    return on_open_record(c);
}

/* Keeps what it reads (of the last connection opened), then echoes it. */
static void on_read_admit(struct sk_conn *c, const char *data, size_t len)
{
    struct fixture *f = fixture_of_conn(c);
    size_t n = len;

    pthread_mutex_lock(&f->lock);
    if (n > READ_MAX - aseen.data_len)
        n = READ_MAX - aseen.data_len;
    memcpy(aseen.data + aseen.data_len, data, n);
    aseen.data_len += n;
    f->seen.reads++;
    announce(f);
    on_read_echo(c, data, len);
}

static const struct sk_handler admit_handler = {
    .on_open = on_open_admit,
    .on_read = on_read_admit,
    .on_close = on_close_record,
    .on_datagram = on_datagram_echo,
};

/* The server's log: every line wakes the tests' waits (the counters of a
 * refusal are counted just before it is logged). */
static void log_wake(void *data, const char *msg)
{
    struct fixture *f = data;

    (void)msg;
    pthread_mutex_lock(&f->lock);
    aseen.logs++;
    announce(f);
}

static int admit_setup(void **state)
{
    memset(&aseen, 0, sizeof(aseen));
    acl = NULL;
    return setup(state);
}

static int admit_teardown(void **state)
{
    int err = teardown(state);

    sk_access_free(acl);
    acl = NULL;
    return err;
}

/* A fresh rule list in acl, from "+RULE" (allow) and "-RULE" (deny). */
static const struct sk_access *rules(const char *first, ...)
{
    const char *why = NULL;
    va_list ap;

    sk_access_free(acl);
    assert_int_equal(sk_access_new(&acl), 0);
    va_start(ap, first);
    for (const char *r = first; r != NULL; r = va_arg(ap, const char *))
        if (sk_access_add(acl, r[0] == '+', r + 1, &why) != 0)
            fail_msg("rule %s: %s", r, why);
    va_end(ap);
    return acl;
}

/* ----------------------------------------------------------- counters */

static struct sk_server_stats stats_of(struct fixture *f)
{
    struct sk_server_stats s;

    sk_server_get_stats(f->srv, &s);
    return s;
}

static uint64_t stat_at(struct fixture *f, size_t off)
{
    struct sk_server_stats s = stats_of(f);
    uint64_t v;

    memcpy(&v, (const char *)&s + off, sizeof(v));
    return v;
}

/* Waits until the counter at off reaches n: woken by the handler and the
 * log, and looking again every 10 ms (datagrams are refused unlogged). */
static void wait_stat_at(struct fixture *f, size_t off, uint64_t n,
                         const char *what)
{
    struct timespec deadline, tick;
    uint64_t got;

    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += WAIT_S;
    pthread_mutex_lock(&f->lock);
    for (;;) {
        got = stat_at(f, off);
        clock_gettime(CLOCK_REALTIME, &tick);
        if (got >= n || tick.tv_sec > deadline.tv_sec ||
            (tick.tv_sec == deadline.tv_sec &&
             tick.tv_nsec >= deadline.tv_nsec))
            break;
        tick.tv_nsec += 10 * 1000 * 1000;
        if (tick.tv_nsec >= 1000000000) {
            tick.tv_sec++;
            tick.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&f->cond, &f->lock, &tick);
    }
    pthread_mutex_unlock(&f->lock);
    if (got < n)
        fail_msg("%s: %llu after %d s, want %llu", what,
                 (unsigned long long)got, WAIT_S, (unsigned long long)n);
}

#define WAIT_STAT(f, field, n)                                                 \
    wait_stat_at(f, offsetof(struct sk_server_stats, field), n, #field)

/* Every counter at once, in order: accepted, refused_access,
 * refused_source, refused_limit, proxy_failed, tls_failed,
 * dgrams_refused. */
#define expect_stats(...) expect_stats_at(__FILE__, __LINE__, __VA_ARGS__)

static void expect_stats_at(const char *file, int line, struct fixture *f,
                            uint64_t accepted, uint64_t access, uint64_t source,
                            uint64_t limit, uint64_t proxy, uint64_t tls,
                            uint64_t dgrams)
{
    struct sk_server_stats s = stats_of(f);
    struct sk_server_stats want = {.accepted = accepted,
                                   .refused_access = access,
                                   .refused_source = source,
                                   .refused_limit = limit,
                                   .proxy_failed = proxy,
                                   .tls_failed = tls,
                                   .dgrams_refused = dgrams};

    /* The counters of admission: those before closed. */
    if (memcmp(&s, &want, offsetof(struct sk_server_stats, closed)) != 0)
        fail_msg(
            "%s:%d: stats: accepted %llu refused_access %llu refused_source "
            "%llu refused_limit %llu proxy_failed %llu tls_failed %llu "
            "dgrams_refused %llu; want %llu %llu %llu %llu %llu %llu "
            "%llu",
            file, line, (unsigned long long)s.accepted,
            (unsigned long long)s.refused_access,
            (unsigned long long)s.refused_source,
            (unsigned long long)s.refused_limit,
            (unsigned long long)s.proxy_failed,
            (unsigned long long)s.tls_failed,
            (unsigned long long)s.dgrams_refused, (unsigned long long)accepted,
            (unsigned long long)access, (unsigned long long)source,
            (unsigned long long)limit, (unsigned long long)proxy,
            (unsigned long long)tls, (unsigned long long)dgrams);
}

/* -------------------------------------------------------------- client */

/* The server closed fd (a client that what says) without sending a
 * byte: end of stream or reset. Then fd is closed. */
static void close_refused_as(int fd, const char *what)
{
    char c;
    ssize_t n = recv(fd, &c, 1, 0);

    if (n < 0 && (errno == ECONNRESET || errno == EPIPE))
        n = 0;
    if (n != 0)
        fail_msg("%s: want the connection closed, recv gave %zd (%s)", what, n,
                 n < 0 ? strerror(errno) : "data");
    close(fd);
}

static void close_refused(int fd)
{
    close_refused_as(fd, "refused client");
}

/* A connection to listener i that the server opened (on_open seen). */
static int connect_opened(struct fixture *f, size_t i, int opens)
{
    int fd = connect_listener(f, i);

    wait_for(f, &f->seen.opens, opens, "opens");
    return fd;
}

/* Waits until the peer of a UNIX stream socket took every byte sent
 * (SIOCOUTQ counts what its receive queue still holds). */
static void wait_taken(int fd)
{
    struct timespec pause = {0, 1000 * 1000};
    int queued = -1;

    for (int i = 0; i < WAIT_S * 1000; i++) {
        assert_int_equal(ioctl(fd, SIOCOUTQ, &queued), 0);
        if (queued == 0)
            return;
        nanosleep(&pause, NULL);
    }
    fail_msg("the server left %d bytes unread for %d s", queued, WAIT_S);
}

/* Sends len bytes one at a time, each in its own segment; on a UNIX
 * socket, each taken by the server before the next is sent. */
static void send_bytewise(int fd, const void *data, size_t len, bool unix)
{
    int one = 1;

    if (!unix)
        assert_int_equal(
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)), 0);
    for (size_t i = 0; i < len; i++) {
        send_all(fd, (const char *)data + i, 1);
        if (unix)
            wait_taken(fd);
    }
}

/* ------------------------------------------------------ PROXY headers */

static const unsigned char v2_signature[12] = {
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

/* A v2 header: command byte cmd (0x20 LOCAL, 0x21 PROXY), family and
 * transport byte ft, then len bytes of addresses (and TLVs). */
static size_t v2_header(unsigned char *out, unsigned cmd, unsigned ft,
                        const void *body, size_t len)
{
    memcpy(out, v2_signature, sizeof(v2_signature));
    out[12] = (unsigned char)cmd;
    out[13] = (unsigned char)ft;
    out[14] = (unsigned char)(len >> 8);
    out[15] = (unsigned char)len;
    if (len > 0)
        memcpy(out + 16, body, len);
    return 16 + len;
}

/* v2 PROXY TCP over IPv4: src:sport to dst:dport. */
static size_t v2_inet(unsigned char *out, const char *src, const char *dst,
                      uint16_t sport, uint16_t dport)
{
    unsigned char b[12];

    assert_int_equal(inet_pton(AF_INET, src, b), 1);
    assert_int_equal(inet_pton(AF_INET, dst, b + 4), 1);
    b[8] = (unsigned char)(sport >> 8), b[9] = (unsigned char)sport;
    b[10] = (unsigned char)(dport >> 8), b[11] = (unsigned char)dport;
    return v2_header(out, 0x21, 0x11, b, sizeof(b));
}

/* v2 PROXY TCP over IPv6, with tlv_len bytes of TLVs after the
 * addresses. */
static size_t v2_inet6(unsigned char *out, const char *src, const char *dst,
                       uint16_t sport, uint16_t dport, const void *tlvs,
                       size_t tlv_len)
{
    unsigned char b[36 + 64];

    assert_true(tlv_len <= 64);
    assert_int_equal(inet_pton(AF_INET6, src, b), 1);
    assert_int_equal(inet_pton(AF_INET6, dst, b + 16), 1);
    b[32] = (unsigned char)(sport >> 8), b[33] = (unsigned char)sport;
    b[34] = (unsigned char)(dport >> 8), b[35] = (unsigned char)dport;
    if (tlv_len > 0)
        memcpy(b + 36, tlvs, tlv_len);
    return v2_header(out, 0x21, 0x21, b, 36 + tlv_len);
}

/* v2 PROXY UNIX stream: two 108-byte sun_path fields; a name starting
 * with '@' is abstract (a NUL byte, then the rest). */
static size_t v2_unix(unsigned char *out, const char *src, const char *dst)
{
    unsigned char b[216] = {0};
    const char *names[2] = {src, dst};

    for (int i = 0; i < 2; i++) {
        size_t n = strlen(names[i]);
        assert_true(n < 108);
        memcpy(b + 108 * i, names[i], n);
        if (names[i][0] == '@')
            b[108 * i] = 0;
    }
    return v2_header(out, 0x21, 0x31, b, sizeof(b));
}

/* v2 LOCAL (a proxy's health check): no addresses. */
static size_t v2_local(unsigned char *out)
{
    return v2_header(out, 0x20, 0x00, NULL, 0);
}

/* Requires addr to be the IPv4 or IPv6 address text, port port. */
static void expect_ip(const struct sk_addr *a, const char *text, uint16_t port)
{
    char got[INET6_ADDRSTRLEN] = "?";

    if (a->u.sa.sa_family == AF_INET) {
        assert_int_equal(a->len, sizeof(struct sockaddr_in));
        inet_ntop(AF_INET, &a->u.in.sin_addr, got, sizeof(got));
        assert_int_equal(ntohs(a->u.in.sin_port), port);
    } else if (a->u.sa.sa_family == AF_INET6) {
        assert_int_equal(a->len, sizeof(struct sockaddr_in6));
        inet_ntop(AF_INET6, &a->u.in6.sin6_addr, got, sizeof(got));
        assert_int_equal(ntohs(a->u.in6.sin6_port), port);
    } else {
        fail_msg("family %d, want %s", a->u.sa.sa_family, text);
    }
    assert_string_equal(got, text);
}

/* The local port of fd. */
static uint16_t local_port(int fd)
{
    struct sk_addr a = {.len = sizeof(a.u)};

    assert_int_equal(getsockname(fd, &a.u.sa, &a.len), 0);
    return ntohs(a.u.sa.sa_family == AF_INET6 ? a.u.in6.sin6_port
                                              : a.u.in.sin_port);
}

/* ------------------------------------------------- a proxy= server */

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

/* Header texts and bytes. */
static const char v1_tcp4[] =
    "PROXY TCP4 203.0.113.7 198.51.100.9 4242 443\r\n";
static const char v1_tcp6[] = "PROXY TCP6 2001:db8::1 2001:db8::2 80 443\r\n";
#define PEER4 "tcp://203.0.113.7:4242"
#define LOCAL4 "tcp://198.51.100.9:443"
#define PEER6 "tcp://[2001:db8::1]:80"
#define LOCAL6 "tcp://[2001:db8::2]:443"

#endif
