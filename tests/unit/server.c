/* server.c -- unit tests of the server framework (src/server.c, worker.c,
 * conn.c, dgram.c, sock.c): an in-process server with a test handler runs
 * sk_server_run() in a thread while the test talks to it with plain
 * blocking sockets. Every test runs with threads = 1 and threads = 2.
 *
 * Bounds: client sockets time out after CLIENT_TIMEOUT_S, waits for the
 * handler's callbacks after WAIT_S, and an alarm() kills the whole run if a
 * test hangs anyway (a join that never returns). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <sockit.h>

#define CLIENT_TIMEOUT_S 5
#define WAIT_S 5
#define ALARM_S 30
#define MAX_CLOSES 16

#define FLOOD_CHUNK (64 * 1024)
#define FLOOD_TOTAL (4 * 1024 * 1024)
#define SMALL_OUTPUT_MAX (64 * 1024)

/* What the handler saw; guarded by lock, announced on cond. */
struct seen {
    int opens, closes, reads, datagrams, unnamed;
    int statuses[MAX_CLOSES]; /* of on_close, in order */
    int unnamed_reply;        /* sk_dgram_reply() to an unnamed sender */
    int write_errors;         /* sk_conn_write() calls that failed */
    size_t max_pending;       /* largest sk_conn_pending() after a write */
    size_t output_max;        /* sk_conn_output_max() */
    size_t pending_at_read;   /* sk_conn_pending() when on_read ran */
    int late_write;           /* sk_conn_write() after sk_conn_close() */
    int close_write;          /* sk_conn_write() in on_close */
    char peer[SK_ENDPOINT_STRLEN], local[SK_ENDPOINT_STRLEN];
};

struct fixture {
    unsigned threads;
    char dir[64];
    char path[128]; /* dir + "/s.sock" */
    struct sk_server *srv;
    pthread_t thread;
    bool running;
    int run_ret;
    int open_result; /* what on_open returns */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct seen seen;
};

static unsigned threads_1 = 1, threads_2 = 2;

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    if (f == NULL)
        return -1;
    f->threads = *(unsigned *)*state;
    snprintf(f->dir, sizeof(f->dir), "/tmp/sockit-unit-XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof(f->path), "%s/s.sock", f->dir);
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->cond, NULL);
    *state = f;
    alarm(ALARM_S);
    return 0;
}

static void remove_dir(const char *dir)
{
    char path[512];
    struct dirent *e;
    DIR *d = opendir(dir);

    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static void server_join(struct fixture *f);

static int teardown(void **state)
{
    struct fixture *f = *state;

    if (f->running)
        server_join(f);
    sk_server_free(f->srv);
    remove_dir(f->dir);
    pthread_cond_destroy(&f->cond);
    pthread_mutex_destroy(&f->lock);
    free(f);
    alarm(0);
    return 0;
}

/* ------------------------------------------------------------ handler */

static struct fixture *fixture_of_conn(const struct sk_conn *c)
{
    return sk_server_data(sk_conn_server(c));
}

static void announce(struct fixture *f)
{
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
}

static int on_open_record(struct sk_conn *c)
{
    struct fixture *f = fixture_of_conn(c);
    const struct sk_endpoint *peer = sk_conn_peer(c);
    const struct sk_endpoint *local = sk_conn_local(c);

    pthread_mutex_lock(&f->lock);
    f->seen.opens++;
    if (peer == NULL ||
        sk_endpoint_format(peer, f->seen.peer, sizeof(f->seen.peer)) < 0)
        strcpy(f->seen.peer, "(none)");
    if (local == NULL ||
        sk_endpoint_format(local, f->seen.local, sizeof(f->seen.local)) < 0)
        strcpy(f->seen.local, "(none)");
    announce(f);
    return f->open_result;
}

static void on_read_echo(struct sk_conn *c, const char *data, size_t len)
{
    if (sk_conn_write(c, data, len) < 0)
        sk_conn_abort(c);
}

static void on_close_record(struct sk_conn *c, int status)
{
    struct fixture *f = fixture_of_conn(c);

    pthread_mutex_lock(&f->lock);
    if (f->seen.closes < MAX_CLOSES)
        f->seen.statuses[f->seen.closes] = status;
    f->seen.closes++;
    announce(f);
}

static void on_datagram_echo(struct sk_dgram *d, const char *data, size_t len)
{
    struct fixture *f = sk_server_data(sk_dgram_server(d));
    int ret = sk_dgram_reply(d, data, len);

    pthread_mutex_lock(&f->lock);
    f->seen.datagrams++;
    if (sk_dgram_peer(d)->len <= sizeof(sa_family_t)) {
        f->seen.unnamed++;
        f->seen.unnamed_reply = ret;
    }
    announce(f);
}

static const struct sk_handler echo_handler = {
    .on_open = on_open_record,
    .on_read = on_read_echo,
    .on_close = on_close_record,
    .on_datagram = on_datagram_echo,
};

static const struct sk_handler stream_only_handler = {
    .on_read = on_read_echo,
};

/* Byte i of the flood. */
static char flood_byte(size_t i)
{
    return (char)(i % 251);
}

/* Queues FLOOD_TOTAL bytes at once, recording what the writes return and
 * how the queue grows. */
static int on_open_flood(struct sk_conn *c)
{
    struct fixture *f = fixture_of_conn(c);
    static char chunk[FLOOD_CHUNK];
    size_t max_pending = 0;
    int errors = 0;

    for (size_t off = 0; off < FLOOD_TOTAL; off += FLOOD_CHUNK) {
        for (size_t i = 0; i < FLOOD_CHUNK; i++)
            chunk[i] = flood_byte(off + i);
        if (sk_conn_write(c, chunk, FLOOD_CHUNK) != 0)
            errors++;
        if (sk_conn_pending(c) > max_pending)
            max_pending = sk_conn_pending(c);
    }
    pthread_mutex_lock(&f->lock);
    f->seen.opens++;
    f->seen.write_errors = errors;
    f->seen.max_pending = max_pending;
    f->seen.output_max = sk_conn_output_max(c);
    announce(f);
    return 0;
}

static void on_read_record_pending(struct sk_conn *c, const char *data,
                                   size_t len)
{
    struct fixture *f = fixture_of_conn(c);

    pthread_mutex_lock(&f->lock);
    if (f->seen.reads++ == 0)
        f->seen.pending_at_read = sk_conn_pending(c);
    announce(f);
}

static const struct sk_handler flood_handler = {
    .on_open = on_open_flood,
    .on_read = on_read_record_pending,
    .on_close = on_close_record,
};

/* Echoes the first read, closes, and tries to write more: after the close
 * and again in on_close. */
static void on_read_close_then_write(struct sk_conn *c, const char *data,
                                     size_t len)
{
    struct fixture *f = fixture_of_conn(c);
    int ret;

    sk_conn_write(c, data, len);
    sk_conn_close(c);
    ret = sk_conn_write(c, "late", 4);
    pthread_mutex_lock(&f->lock);
    f->seen.late_write = ret;
    announce(f);
}

static void on_close_then_write(struct sk_conn *c, int status)
{
    struct fixture *f = fixture_of_conn(c);
    int ret = sk_conn_write(c, "gone", 4);

    pthread_mutex_lock(&f->lock);
    f->seen.close_write = ret;
    f->seen.closes++;
    announce(f);
}

static const struct sk_handler closing_handler = {
    .on_read = on_read_close_then_write,
    .on_close = on_close_then_write,
};

/* Waits until *counter (a field of f->seen) reaches n. */
static void wait_for(struct fixture *f, const int *counter, int n,
                     const char *what)
{
    struct timespec deadline;
    int got;

    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += WAIT_S;
    pthread_mutex_lock(&f->lock);
    while (*counter < n &&
           pthread_cond_timedwait(&f->cond, &f->lock, &deadline) == 0)
        ;
    got = *counter;
    pthread_mutex_unlock(&f->lock);
    if (got < n)
        fail_msg("%s: %d after %d s, want %d", what, got, WAIT_S, n);
}

/* A copy of what the handler has seen so far. */
static struct seen snapshot(struct fixture *f)
{
    struct seen s;

    pthread_mutex_lock(&f->lock);
    s = f->seen;
    pthread_mutex_unlock(&f->lock);
    return s;
}

/* ------------------------------------------------------------- server */

static void *run_server(void *arg)
{
    struct fixture *f = arg;

    f->run_ret = sk_server_run(f->srv);
    return NULL;
}

static void server_new(struct fixture *f, const struct sk_handler *h,
                       struct sk_server_config cfg)
{
    cfg.handler = h;
    cfg.data = f;
    cfg.threads = f->threads;
    assert_int_equal(sk_server_new(&f->srv, &cfg), 0);
}

/* sk_server_listen() on text; returns its code, fills failed. */
static int server_listen(struct fixture *f, const char *text,
                         struct sk_endpoint *failed)
{
    struct sk_endpoint ep;
    const char *why = NULL;

    if (sk_endpoint_parse(&ep, text, &why) != 0)
        fail_msg("%s: %s", text, why);
    return sk_server_listen(f->srv, &ep, failed);
}

static void server_start(struct fixture *f)
{
    assert_int_equal(pthread_create(&f->thread, NULL, run_server, f), 0);
    f->running = true;
}

/* Stops the server and waits for sk_server_run() to return. */
static void server_join(struct fixture *f)
{
    sk_server_stop(f->srv);
    pthread_join(f->thread, NULL);
    f->running = false;
}

/* Starts a server with handler h listening on text. */
static void serve(struct fixture *f, const struct sk_handler *h,
                  struct sk_server_config cfg, const char *text)
{
    server_new(f, h, cfg);
    assert_int_equal(server_listen(f, text, NULL), 0);
    server_start(f);
}

static void stop_and_free(struct fixture *f)
{
    server_join(f);
    assert_int_equal(f->run_ret, 0);
    sk_server_free(f->srv);
    f->srv = NULL;
}

static struct sk_endpoint listener(const struct fixture *f, size_t i)
{
    struct sk_endpoint ep;

    assert_int_equal(sk_server_listener_endpoint(f->srv, i, &ep), 0);
    return ep;
}

static void format_endpoint(const struct sk_endpoint *ep, char *out,
                            size_t size)
{
    assert_true(sk_endpoint_format(ep, out, size) > 0);
}

static void expect_endpoint_text(const struct sk_endpoint *ep, const char *want)
{
    char text[SK_ENDPOINT_STRLEN];

    format_endpoint(ep, text, sizeof(text));
    assert_string_equal(text, want);
}

/* ------------------------------------------------------------- client */

static int client_socket(int family, int socktype)
{
    struct timeval tv = {.tv_sec = CLIENT_TIMEOUT_S};
    int fd = socket(family, socktype | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)),
                     0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)),
                     0);
    return fd;
}

static struct sk_addr address_of(const struct sk_endpoint *ep)
{
    struct sk_addr addr;

    assert_int_equal(sk_endpoint_resolve(ep, false, &addr, 1), 1);
    return addr;
}

/* A socket connected to ep (for datagrams: with ep as default peer);
 * rcvbuf > 0 sets a small receive buffer first. */
static int client_connect_rcvbuf(const struct sk_endpoint *ep, int rcvbuf)
{
    struct sk_addr addr = address_of(ep);
    int fd = client_socket(addr.u.sa.sa_family, sk_endpoint_socktype(ep));

    if (rcvbuf > 0)
        assert_int_equal(
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
    if (connect(fd, &addr.u.sa, addr.len) != 0)
        fail_msg("connect: %s", strerror(errno));
    return fd;
}

static int client_connect(const struct sk_endpoint *ep)
{
    return client_connect_rcvbuf(ep, 0);
}

static int connect_listener(const struct fixture *f, size_t i)
{
    struct sk_endpoint ep = listener(f, i);
    return client_connect(&ep);
}

/* A client whose small receive window keeps most of a large reply queued
 * in the server rather than in the kernel. */
static int connect_slow_reader(const struct fixture *f)
{
    struct sk_endpoint ep = listener(f, 0);
    return client_connect_rcvbuf(&ep, 4096);
}

static void send_all(int fd, const void *data, size_t len)
{
    const char *p = data;

    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0)
            fail_msg("send: %s", n < 0 ? strerror(errno) : "0");
        p += n;
        len -= (size_t)n;
    }
}

static void recv_exact(int fd, void *buf, size_t len)
{
    char *p = buf;

    while (len > 0) {
        ssize_t n = recv(fd, p, len, 0);
        if (n <= 0)
            fail_msg("recv with %zu bytes to go: %s", len,
                     n < 0 ? strerror(errno) : "end of stream");
        p += n;
        len -= (size_t)n;
    }
}

static void expect_eof(int fd)
{
    char c;
    ssize_t n = recv(fd, &c, 1, 0);

    if (n != 0)
        fail_msg("want end of stream, recv gave %zd (%s)", n,
                 n < 0 ? strerror(errno) : "data");
}

/* Sends msg and requires exactly msg back (a datagram or stream bytes). */
static void expect_echo(int fd, const char *msg)
{
    char buf[256];
    size_t len = strlen(msg);

    assert_true(len < sizeof(buf));
    send_all(fd, msg, len);
    recv_exact(fd, buf, len);
    assert_memory_equal(buf, msg, len);
}

static void expect_datagram_echo(int fd, const char *msg)
{
    char buf[256];
    size_t len = strlen(msg);
    ssize_t n;

    assert_int_equal(send(fd, msg, len, MSG_NOSIGNAL), (ssize_t)len);
    n = recv(fd, buf, sizeof(buf), 0);
    if (n < 0)
        fail_msg("no reply to \"%s\": %s", msg, strerror(errno));
    assert_int_equal(n, (ssize_t)len);
    assert_memory_equal(buf, msg, len);
}

/* Half-closes fd, requires the server to close too, then closes fd. */
static void finish_client(int fd)
{
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    expect_eof(fd);
    close(fd);
}

/* Waits for n closes and returns the first status. */
static int wait_closed(struct fixture *f, int n)
{
    wait_for(f, &f->seen.closes, n, "closed connections");
    return snapshot(f).statuses[0];
}

static void expect_statuses_zero(struct fixture *f, int n)
{
    struct seen s;

    wait_for(f, &f->seen.closes, n, "closed connections");
    s = snapshot(f);
    for (int i = 0; i < n; i++)
        assert_int_equal(s.statuses[i], 0);
}

static const struct sk_server_config defaults = {0};

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
/* clang-format off */
#define WITH_THREADS(f, n) \
    {#f " threads=" #n, f, setup, teardown, &threads_##n}
/* clang-format on */
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
