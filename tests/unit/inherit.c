/* inherit.c -- unit tests of the sockets a server adopts (src/inherit.c,
 * server.c): fd:N with every kind of socket and every socket it refuses
 * (inherit_sd.c has sd:); and the kinds made by sock.c and client.c:
 * mptcp (for real, and refused in a network namespace without it) and
 * unixpacket. Every test runs with threads = 1 and threads = 2. */
#include "server_fixture.h"

#include <sched.h>
#include <sys/wait.h>

#include "internal.h" /* a listener's descriptors, to tell duplicates */

/* ------------------------------------------------------------ helpers */

/* A socket bound to 127.0.0.1:0 (AF_INET) or to path (AF_UNIX; NULL:
 * unbound), listening if listens; or -errno if socket() fails. */
static int make_socket(int family, int socktype, int protocol, const char *path,
                       bool listens)
{
    int fd = socket(family, socktype | SOCK_CLOEXEC, protocol);
    struct sk_addr addr = {0};

    if (fd < 0)
        return -errno;
    if (family == AF_INET) {
        addr.len = sizeof(addr.u.in);
        addr.u.in.sin_family = AF_INET;
        addr.u.in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else if (path != NULL) {
        addr.len = sizeof(addr.u.un);
        addr.u.un.sun_family = AF_UNIX;
        snprintf(addr.u.un.sun_path, sizeof(addr.u.un.sun_path), "%s", path);
    }
    if (addr.len > 0 && bind(fd, &addr.u.sa, addr.len) != 0)
        fail_msg("bind: %s", strerror(errno));
    if (listens && listen(fd, 16) != 0)
        fail_msg("listen: %s", strerror(errno));
    return fd;
}

static int tcp_listener(void)
{
    return make_socket(AF_INET, SOCK_STREAM, 0, NULL, true);
}

/* The canonical endpoint of fd's own address, with scheme. */
static void own_endpoint(int fd, enum sk_scheme scheme, char *out, size_t size)
{
    struct sk_addr addr = {.len = sizeof(addr.u)};
    struct sk_endpoint ep;

    assert_int_equal(getsockname(fd, &addr.u.sa, &addr.len), 0);
    assert_int_equal(sk_endpoint_from_addr(&ep, scheme, &addr), 0);
    format_endpoint(&ep, out, size);
}

static struct sk_endpoint parse_text(const char *fmt, int arg)
{
    struct sk_endpoint ep;
    char text[64];

    snprintf(text, sizeof(text), fmt, arg);
    if (sk_endpoint_parse(&ep, text, NULL) != 0)
        fail_msg("%s does not parse", text);
    return ep;
}

static bool is_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

static bool flags_set(int fd)
{
    return (fcntl(fd, F_GETFL) & O_NONBLOCK) &&
           (fcntl(fd, F_GETFD) & FD_CLOEXEC);
}

/* Adopts fd:fd in f's server (made with h if none yet) and requires its
 * endpoint to be want. */
static void adopt(struct fixture *f, const struct sk_handler *h, int fd,
                  const char *want)
{
    struct sk_endpoint ep = parse_text("fd:%d", fd), failed;
    size_t n;
    int err;

    if (f->srv == NULL)
        server_new(f, h, defaults);
    n = sk_server_listener_count(f->srv);
    if ((err = sk_server_listen(f->srv, &ep, &failed)) != 0)
        fail_msg("fd:%d: %s", fd, sk_strerror(err));
    assert_int_equal(sk_server_listener_count(f->srv), n + 1);
    ep = listener(f, n);
    expect_endpoint_text(&ep, want);
}

/* ------------------------------------------------------------- fd:N */

/* A listening TCP socket made here serves through fd:N: every worker
 * watches the one socket; it is made non-blocking and close-on-exec, and
 * closed with the server. */
static void test_fd_adopts_a_listening_tcp_socket(void **state)
{
    struct fixture *f = *state;
    int fd = tcp_listener(), clients[4];
    char want[64];

    fcntl(fd, F_SETFD, 0);
    own_endpoint(fd, SK_TCP, want, sizeof(want));
    adopt(f, &echo_handler, fd, want);
    assert_true(flags_set(fd));
    server_start(f);
    for (int i = 0; i < 4; i++)
        clients[i] = connect_listener(f, 0);
    for (int i = 0; i < 4; i++)
        expect_echo(clients[i], i % 2 ? "through fd" : "\x01\xff bytes");
    assert_string_equal(snapshot(f).local, want);
    for (int i = 0; i < 4; i++)
        finish_client(clients[i]);
    expect_statuses_zero(f, 4);
    stop_and_free(f);
    assert_false(is_open(fd));
}

/* A bound UDP socket and UNIX sockets of each type: the endpoint says
 * what each is, and socket files sockit did not make stay. */
static void test_fd_adopts_every_kind(void **state)
{
    struct fixture *f = *state;
    char paths[3][160], want[512];
    static const int types[] = {SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET};
    static const char *const schemes[] = {"unix", "unixgram", "unixpacket"};
    int udp = make_socket(AF_INET, SOCK_DGRAM, 0, NULL, false), fds[3], c;
    struct sk_endpoint ep;
    struct stat st;

    own_endpoint(udp, SK_UDP, want, sizeof(want));
    adopt(f, &echo_handler, udp, want);
    for (int i = 0; i < 3; i++) {
        snprintf(paths[i], sizeof(paths[i]), "%s/%s.sock", f->dir, schemes[i]);
        fds[i] =
            make_socket(AF_UNIX, types[i], 0, paths[i], types[i] != SOCK_DGRAM);
        snprintf(want, sizeof(want), "%s:%s", schemes[i], paths[i]);
        adopt(f, &echo_handler, fds[i], want);
    }
    server_start(f);
    ep = listener(f, 0);
    c = client_connect(&ep);
    expect_datagram_echo(c, "udp through fd");
    close(c);
    c = connect_listener(f, 1);
    expect_echo(c, "unix through fd");
    finish_client(c);
    stop_and_free(f);
    assert_false(is_open(udp));
    for (int i = 0; i < 3; i++) {
        assert_false(is_open(fds[i]));
        assert_int_equal(lstat(paths[i], &st), 0);
    }
}

/* A socket that cannot serve is refused with code and, by
 * sk_endpoint_strerror(), detail (with fd in it); failed names fd:N; the
 * descriptor is left as it was (open, its flags unchanged). */
static void expect_refused(struct fixture *f, int fd, int code,
                           const char *detail)
{
    struct sk_endpoint ep = parse_text("fd:%d", fd), failed;
    char text[SK_ENDPOINT_STRLEN], why[256], want[256];
    int flags = fcntl(fd, F_GETFL), err;

    if (f->srv == NULL)
        server_new(f, &stream_only_handler, defaults);
    if ((err = sk_server_listen(f->srv, &ep, &failed)) != code)
        fail_msg("fd:%d: %d (%s), want %d (%s)", fd, err, sk_strerror(err),
                 code, sk_strerror(code));
    assert_int_equal(sk_server_listener_count(f->srv), 0);
    format_endpoint(&failed, text, sizeof(text));
    snprintf(want, sizeof(want), "fd:%d", fd);
    assert_string_equal(text, want);
    snprintf(want, sizeof(want), detail, fd);
    assert_string_equal(sk_endpoint_strerror(&ep, code, why, sizeof(why)),
                        want);
    assert_int_equal(fcntl(fd, F_GETFL), flags);
}

#define NOT_LISTENING                                                          \
    "socket is not listening (fd:%d must be bound, and listening if a "        \
    "stream)"

static void test_fd_refuses_what_cannot_serve(void **state)
{
    struct fixture *f = *state;
    int l = tcp_listener(), conn, peer, pair[2], fd;
    struct sk_addr addr = {.len = sizeof(addr.u)};
    struct sk_endpoint ep;
    char path[160], why[128];

    /* A descriptor nothing opens: the server's own are made by now. */
    server_new(f, &stream_only_handler, defaults);
    fd = dup2(l, 1000);
    close(fd);
    ep = parse_text("fd:%d", fd);
    assert_int_equal(sk_server_listen(f->srv, &ep, NULL), -EBADF);
    snprintf(path, sizeof(path), "bad file descriptor (fd:%d is not open)", fd);
    assert_string_equal(sk_endpoint_strerror(&ep, -EBADF, why, sizeof(why)),
                        path);
    snprintf(path, sizeof(path), "%s/regular", f->dir);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    expect_refused(f, fd, -ENOTSOCK, "not a socket (fd:%d)");
    /* Both ends of a connection, and a socket pair. */
    assert_int_equal(getsockname(l, &addr.u.sa, &addr.len), 0);
    conn = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(conn, &addr.u.sa, addr.len), 0);
    peer = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    expect_refused(f, conn, SK_ENOTLISTENING, NOT_LISTENING);
    expect_refused(f, peer, SK_ENOTLISTENING, NOT_LISTENING);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
    expect_refused(f, pair[0], SK_ENOTLISTENING, NOT_LISTENING);
    /* Bound but never listening; unbound, of each type. */
    fd = make_socket(AF_INET, SOCK_STREAM, 0, NULL, false);
    expect_refused(f, fd, SK_ENOTLISTENING, NOT_LISTENING);
    fd = make_socket(AF_UNIX, SOCK_SEQPACKET, 0, NULL, false);
    expect_refused(f, fd, SK_ENOTLISTENING, NOT_LISTENING);
    fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    expect_refused(f, fd, SK_ENOTLISTENING, NOT_LISTENING);
    /* A connected datagram socket hears one peer only. */
    fd = make_socket(AF_INET, SOCK_DGRAM, 0, NULL, false);
    assert_int_equal(connect(fd, &addr.u.sa, addr.len), 0);
    expect_refused(f, fd, SK_ENOTLISTENING, NOT_LISTENING);
    /* Sockets sockit does not speak. */
    fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd >= 0)
        expect_refused(f, fd, -EAFNOSUPPORT, "address family not supported");
    fd = make_socket(AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE, NULL, false);
    if (fd >= 0)
        expect_refused(f, fd, -EPROTONOSUPPORT, "protocol not supported");
    /* A datagram socket for a handler without on_datagram. */
    fd = make_socket(AF_INET, SOCK_DGRAM, 0, NULL, false);
    expect_refused(f, fd, -EPROTONOSUPPORT, "protocol not supported");
}

/* tls and proxy= are for streams: an adopted socket that turns out to be
 * a datagram or unixpacket one is refused when listening. */
static void test_fd_proxy_on_a_message_socket_is_refused(void **state)
{
    struct fixture *f = *state;
    char path[160], why[128];
    int fds[2];

    snprintf(path, sizeof(path), "%s/p.sock", f->dir);
    fds[0] = make_socket(AF_INET, SOCK_DGRAM, 0, NULL, false);
    fds[1] = make_socket(AF_UNIX, SOCK_SEQPACKET, 0, path, true);
    server_new(f, &echo_handler, defaults);
    for (int i = 0; i < 2; i++) {
        struct sk_endpoint ep = parse_text("fd:%d,proxy=v1", fds[i]);

        assert_int_equal(sk_server_listen(f->srv, &ep, NULL), -EPROTOTYPE);
        assert_string_equal(
            sk_endpoint_strerror(&ep, -EPROTOTYPE, why, sizeof(why)),
            "wrong type of socket (tls and proxy= need a stream socket)");
        assert_false(fcntl(fds[i], F_GETFL) & O_NONBLOCK);
    }
    assert_int_equal(sk_server_listener_count(f->srv), 0);
}

/* One socket named twice (fd:N twice, or fd:N of a socket the server
 * bound itself) is served by both listeners, each closing a descriptor of
 * its own: nothing is closed twice. */
static void test_fd_twice_gets_a_duplicate(void **state)
{
    struct fixture *f = *state;
    int fd = tcp_listener(), own, c;
    char want[64];

    own_endpoint(fd, SK_TCP, want, sizeof(want));
    adopt(f, &echo_handler, fd, want);
    adopt(f, &echo_handler, fd, want);
    assert_int_equal(f->srv->listeners[0].fds[0], fd);
    assert_true(f->srv->listeners[1].fds[0] != fd);
    own = f->srv->listeners[1].fds[0];
    assert_int_equal(server_listen(f, "tcp://127.0.0.1:0", NULL), 0);
    own_endpoint(f->srv->listeners[2].fds[0], SK_TCP, want, sizeof(want));
    adopt(f, &echo_handler, f->srv->listeners[2].fds[0], want);
    assert_true(f->srv->listeners[3].fds[0] != f->srv->listeners[2].fds[0]);
    server_start(f);
    for (size_t i = 0; i < 4; i++) {
        c = connect_listener(f, i);
        expect_echo(c, "one socket, two names");
        finish_client(c);
    }
    stop_and_free(f);
    assert_false(is_open(fd));
    assert_false(is_open(own));
}

/* ------------------------------------------------------------- mptcp */

static bool have_mptcp(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_MPTCP);

    if (fd < 0)
        return false;
    close(fd);
    return true;
}

static int protocol_of(int fd)
{
    int protocol = -1;
    socklen_t len = sizeof(protocol);

    assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &len),
                     0);
    return protocol;
}

/* mptcp:// listens and connects with IPPROTO_MPTCP (one socket per worker
 * as tcp); an adopted MPTCP socket is named mptcp://. */
static void test_mptcp_listens_connects_and_is_adopted(void **state)
{
    struct fixture *f = *state;
    struct sk_endpoint ep;
    char want[64];
    int c, fd;

    if (!have_mptcp())
        skip(); /* test_mptcp_unavailable covers the other case */
    serve(f, &echo_handler, defaults, "mptcp://127.0.0.1:0");
    ep = listener(f, 0);
    assert_int_equal(ep.scheme, SK_MPTCP);
    assert_true(ep.port != 0);
    for (size_t i = 0; i < f->srv->listeners[0].nfds; i++)
        assert_int_equal(protocol_of(f->srv->listeners[0].fds[i]),
                         IPPROTO_MPTCP);
    c = sk_connect(&ep, CLIENT_TIMEOUT_S * 1000);
    assert_true(c >= 0);
    assert_int_equal(protocol_of(c), IPPROTO_MPTCP);
    fcntl(c, F_SETFL, 0);
    expect_echo(c, "multipath");
    assert_int_equal(strncmp(snapshot(f).peer, "mptcp://127.0.0.1:", 18), 0);
    finish_client(c);
    stop_and_free(f);
    fd = make_socket(AF_INET, SOCK_STREAM, IPPROTO_MPTCP, NULL, true);
    own_endpoint(fd, SK_MPTCP, want, sizeof(want));
    adopt(f, &echo_handler, fd, want);
}

/* Runs fn in a child; its exit status: 0 passed, 77 skipped. */
static void in_child(int (*fn)(void), const char *what)
{
    int status;
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(ALARM_S);
        _exit(fn());
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
        skip();
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("%s: child status %#x (its stderr says why)", what, status);
}

#define CHILD_CHECK(cond)                                                      \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond);         \
            return 1;                                                          \
        }                                                                      \
    } while (0)

/* In a network namespace of its own with net.mptcp.enabled = 0, as a
 * kernel without MPTCP: listening and connecting say SK_ENOMPTCP. */
static int mptcp_off_child(void)
{
    struct sk_server_config cfg = {.handler = &echo_handler, .threads = 1};
    struct sk_server *srv;
    struct sk_endpoint ep, failed;
    int fd;

    if (unshare(CLONE_NEWNET) != 0)
        return 77; /* not root: no namespace to turn MPTCP off in */
    fd = open("/proc/sys/net/mptcp/enabled", O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return 77; /* a kernel without MPTCP at all: as the host */
    CHILD_CHECK(write(fd, "0\n", 2) == 2);
    close(fd);
    CHILD_CHECK(sk_endpoint_parse(&ep, "mptcp://127.0.0.1:0", NULL) == 0);
    CHILD_CHECK(sk_server_new(&srv, &cfg) == 0);
    CHILD_CHECK(sk_server_listen(srv, &ep, &failed) == SK_ENOMPTCP);
    CHILD_CHECK(sk_server_listener_count(srv) == 0);
    sk_server_free(srv);
    CHILD_CHECK(
        strcmp(sk_strerror(SK_ENOMPTCP), "multipath TCP not available") == 0);
    CHILD_CHECK(sk_endpoint_parse(&ep, "mptcp://127.0.0.1:9", NULL) == 0);
    CHILD_CHECK(sk_connect(&ep, 1000) == SK_ENOMPTCP);
    return 0;
}

static void test_mptcp_unavailable(void **state)
{
    (void)state;
    in_child(mptcp_off_child, "mptcp off");
}

/* -------------------------------------------------------- unixpacket */

/* unixpacket: binds (replacing a stale file, refusing a live one),
 * accepts as a stream listener, and sk_connect() connects to it. */
static void test_unixpacket_listens_and_connects(void **state)
{
    struct fixture *f = *state;
    char live[160], text[200];
    struct sk_endpoint ep;
    int stale, busy, c, type = 0;
    socklen_t len = sizeof(type);

    stale = make_socket(AF_UNIX, SOCK_SEQPACKET, 0, f->path, true);
    close(stale); /* its file stays: stale */
    snprintf(live, sizeof(live), "%s/live.sock", f->dir);
    busy = make_socket(AF_UNIX, SOCK_SEQPACKET, 0, live, true);
    server_new(f, &echo_handler, defaults);
    snprintf(text, sizeof(text), "unixpacket:%s", live);
    assert_int_equal(server_listen(f, text, NULL), -EADDRINUSE);
    snprintf(text, sizeof(text), "unixpacket:%s", f->path);
    assert_int_equal(server_listen(f, text, NULL), 0);
    ep = listener(f, 0);
    expect_endpoint_text(&ep, text);
    server_start(f);
    c = sk_connect(&ep, CLIENT_TIMEOUT_S * 1000);
    assert_true(c >= 0);
    assert_int_equal(getsockopt(c, SOL_SOCKET, SO_TYPE, &type, &len), 0);
    assert_int_equal(type, SOCK_SEQPACKET);
    fcntl(c, F_SETFL, 0);
    expect_echo(c, "one message");
    wait_for(f, &f->seen.opens, 1, "unixpacket connections");
    assert_string_equal(snapshot(f).local, text);
    close(c);
    close(busy);
    stop_and_free(f);
}

/* Each test twice: with one worker and with two. */
#define BOTH(f) WITH_THREADS(f, 1), WITH_THREADS(f, 2)

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_fd_adopts_a_listening_tcp_socket),
        BOTH(test_fd_adopts_every_kind),
        BOTH(test_fd_refuses_what_cannot_serve),
        BOTH(test_fd_proxy_on_a_message_socket_is_refused),
        BOTH(test_fd_twice_gets_a_duplicate),
        BOTH(test_mptcp_listens_connects_and_is_adopted),
        BOTH(test_mptcp_unavailable),
        BOTH(test_unixpacket_listens_and_connects),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
