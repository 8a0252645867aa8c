/* tls_hostile.c -- regression tests of bugs a security review found in
 * the TLS and connection layer at a12c100 (fixed in 358f1f3): an outbound
 * handshake whose server flight comes in small pieces, a detach while
 * OpenSSL holds a write to retry, a write and a close before an outbound
 * connection opens, a handler reconnecting in on_close while its server
 * stops, a failed epoll_ctl(ADD) of an accepted TLS connection. Servers
 * run in their thread, sockit clients on the test's (tls_fixture.h). */
#include "tls_fixture.h"

#include <poll.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/un.h>

#include <linux/sockios.h>

#include <openssl/ssl.h>

/* ------------------------------------------------ epoll_ctl failure */

/* The test binary's epoll_ctl, which the library's calls resolve to: it
 * fails (ENOSPC) the first ADD of a socket accepted on port fail_port. */
static atomic_int fail_port, failed_adds;

static bool accepted_on(int fd, int port)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    int listening = 1;

    if (getsockname(fd, (struct sockaddr *)&sin, &len) != 0 ||
        sin.sin_family != AF_INET || ntohs(sin.sin_port) != port)
        return false;
    len = sizeof(listening);
    return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 &&
           !listening;
}

int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    int port = atomic_load(&fail_port);

    if (op == EPOLL_CTL_ADD && port != 0 && accepted_on(fd, port) &&
        atomic_compare_exchange_strong(&fail_port, &port, 0)) {
        atomic_fetch_add(&failed_adds, 1);
        errno = ENOSPC;
        return -1;
    }
    return (int)syscall(SYS_epoll_ctl, epfd, op, fd, ev);
}

/* The accepted connection the poller could not take is closed and
 * forgotten. It was freed while still on the worker's list of handshakes:
 * the next TLS client wrote into freed memory (which ASan reports) and,
 * where it got the same memory, was left on that list once open, to be
 * "timed out" after the handshake timeout. */
static void test_tls_accept_whose_watch_fails_is_dropped(void **state)
{
    struct fixture *f = *state;
    /* On epoll, whose epoll_ctl() is the one above. */
    struct sk_server_config cfg = {.handshake_timeout_ms = 200,
                                   .backend = SK_BACKEND_EPOLL};
    struct client *cl = client_at(0, "one\ntwo\n", 4);
    ssize_t n;
    char c;
    int raw;

    atomic_store(&failed_adds, 0);
    serve_tls(f, &tls_echo_handler, cfg, "tls://127.0.0.1:0," SERVER_CERT);
    atomic_store(&fail_port, port_of(f));
    raw = connect_listener(f, 0);
    n = recv(raw, &c, 1, 0);
    if (n != 0 && !(n < 0 && errno == ECONNRESET))
        fail_msg("the connection whose watch failed: recv gave %zd (%s), "
                 "want its end",
                 n, n < 0 ? strerror(errno) : "data");
    close(raw);
    assert_int_equal(atomic_load(&failed_adds), 1);
    assert_int_equal(
        client_start(cl, make_tls("tls://127.0.0.1:1,ca=$/ca.pem", false), 0,
                     "tls://127.0.0.1:%u", port_of(f)),
        0);
    client_run_until(cl, got_all, "echo");
    ctimed_out = false; /* open, it outlives 3 handshake timeouts */
    sk_timer_start(cloop, &cdeadline, 3 * 200, 0);
    while (!ctimed_out && cl->closes == 0)
        assert_int_equal(sk_loop_run(cloop), 0);
    sk_timer_stop(&cdeadline);
    if (cl->closes > 0)
        fail_msg("closed after its handshake: %d (%s)", cl->status, cl->error);
    cl->len = 8;
    client_pump(cl); /* "two\n" */
    client_run_until(cl, got_all, "second echo");
    assert_int_equal(cl->got.len, 8);
    assert_memory_equal(sk_buf_head(&cl->got), "one\ntwo\n", 8);
    sk_conn_close(cl->c);
    client_wait_closed(cl);
    assert_int_equal(cl->status, 0);
    for (int i = 1; i < 3; i++)
        expect_tls_echo(&clients[i],
                        make_tls("tls://127.0.0.1:1,ca=$/ca.pem", false),
                        "after the failed watch\n", port_of(f), "");
    assert_int_equal(wait_closed(f, 3), 0);
    stop_and_free(f);
    assert_int_equal(snapshot(f).opens, 3);
    assert_int_equal(snapshot(f).closes, 3);
}

/* ------------------------------------------- OpenSSL peers, UNIX */

static struct sockaddr_un unix_address(const char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};

    assert_true(strlen(path) < sizeof(sun.sun_path));
    memcpy(sun.sun_path, path, strlen(path) + 1);
    return sun;
}

/* A UNIX stream socket connected to path, its reads bounded. */
static int unix_client(const char *path)
{
    struct sockaddr_un sun = unix_address(path);
    int fd = client_socket(AF_UNIX, SOCK_STREAM);

    if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0)
        fail_msg("connect %s: %s", path, strerror(errno));
    return fd;
}

/* An OpenSSL client that verifies the server's chain against the CA. */
static SSL_CTX *verifying_client_ctx(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    char ca[128];

    assert_non_null(ctx);
    snprintf(ca, sizeof(ca), "%s/ca.pem", cert_dir);
    assert_int_equal(SSL_CTX_load_verify_locations(ctx, ca, NULL), 1);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    return ctx;
}

/* Waits (at most 2 s) until the peer of the UNIX stream socket fd has
 * read all that was sent (SIOCOUTQ: bytes it has not read). */
static void wait_read_by_peer(int fd)
{
    uint64_t end = now_ms() + 2000;
    int n;

    while (ioctl(fd, SIOCOUTQ, &n) == 0 && n > 0 && now_ms() < end)
        poll(NULL, 0, 1);
}

/* ------------------------------------- a server flight in pieces */

/* A TLS 1.2 server (OpenSSL on memory BIOs) that sends each flight in
 * PIECE-byte pieces, each once the client has read the one before: the
 * client sees partial records all through its handshake. After the first
 * piece it waits PAUSE_MS (a client holding part of a record must wait,
 * not spin). It echoes want bytes, then sends close_notify and waits for
 * the client's end. */
#define PIECE 200
#define PAUSE_MS 500

struct paced {
    int lfd;
    size_t want;
    char got[64];
    size_t got_len;
    int pieces;
    const char *error; /* NULL: the peer saw nothing wrong */
    pthread_t thread;
    bool running;
};
static struct paced paced;

static int send_paced(int fd, BIO *wb)
{
    char buf[16384];
    int n;

    while ((n = BIO_read(wb, buf, sizeof(buf))) > 0) {
        for (int off = 0; off < n; off += PIECE) {
            int len = n - off < PIECE ? n - off : PIECE;
            if (send(fd, buf + off, (size_t)len, MSG_NOSIGNAL) != len)
                return -1;
            paced.pieces++;
            wait_read_by_peer(fd);
            if (paced.pieces == 1)
                poll(NULL, 0, PAUSE_MS);
        }
    }
    return 0;
}

static int feed(int fd, BIO *rb)
{
    char buf[16384];
    ssize_t n = recv(fd, buf, sizeof(buf), 0);

    if (n <= 0)
        return -1;
    return BIO_write(rb, buf, (int)n) == n ? 0 : -1;
}

static void *paced_server(void *arg)
{
    struct paced *p = arg;
    struct timeval tv = {.tv_sec = CLIENT_TIMEOUT_S};
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    char cert[128], key[128];
    SSL *s = NULL;
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    int fd = accept(p->lfd, NULL, NULL), r;

    snprintf(cert, sizeof(cert), "%s/server.pem", cert_dir);
    snprintf(key, sizeof(key), "%s/server.key", cert_dir);
    p->error = "setup";
    if (fd < 0 || ctx == NULL || rb == NULL || wb == NULL ||
        SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        !SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION) ||
        (s = SSL_new(ctx)) == NULL)
        goto out;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    SSL_set_bio(s, rb, wb);
    rb = wb = NULL;
    SSL_set_accept_state(s);
    p->error = "handshake";
    while ((r = SSL_do_handshake(s)) != 1) {
        if (SSL_get_error(s, r) != SSL_ERROR_WANT_READ ||
            send_paced(fd, SSL_get_wbio(s)) < 0 || feed(fd, SSL_get_rbio(s)))
            goto out;
    }
    if (send_paced(fd, SSL_get_wbio(s)) < 0)
        goto out;
    p->error = "reading the request";
    while (p->got_len < p->want) {
        size_t n;
        if (SSL_read_ex(s, p->got + p->got_len, sizeof(p->got) - p->got_len,
                        &n) == 1)
            p->got_len += n;
        else if (SSL_get_error(s, 0) != SSL_ERROR_WANT_READ ||
                 feed(fd, SSL_get_rbio(s)) < 0)
            goto out;
    }
    p->error = "echo";
    if (SSL_write(s, p->got, (int)p->got_len) != (int)p->got_len ||
        SSL_shutdown(s) < 0 || send_paced(fd, SSL_get_wbio(s)) < 0)
        goto out;
    p->error = NULL;
    while (feed(fd, SSL_get_rbio(s)) == 0) /* until the client's end */
        ;
out:
    BIO_free(rb);
    BIO_free(wb);
    SSL_free(s);
    SSL_CTX_free(ctx);
    if (fd >= 0)
        close(fd);
    return NULL;
}

static uint64_t thread_cpu_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int listen_unix(const char *path)
{
    struct sockaddr_un sun = unix_address(path);
    struct timeval tv = {.tv_sec = CLIENT_TIMEOUT_S};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    assert_int_equal(listen(fd, 4), 0);
    /* accept() gives up too, should no client come. */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

/* Before the fix, a partial record OpenSSL had read ahead made the client
 * read again and again (100% CPU), and a handshake finished inside one of
 * those reads left it "starting": on_open never ran. */
static void test_tls_outbound_handshake_in_small_pieces_opens(void **state)
{
    struct fixture *f = *state;
    const char *msg = "paced ping\n";
    struct client *cl = client_at(0, msg, strlen(msg));
    char text[TEXT_MAX];
    uint64_t cpu;

    memset(&paced, 0, sizeof(paced));
    paced.want = strlen(msg);
    paced.lfd = listen_unix(f->path);
    assert_int_equal(pthread_create(&paced.thread, NULL, paced_server, &paced),
                     0);
    paced.running = true;
    snprintf(text, sizeof(text), "unix:%s,tls,ca=$/ca.pem,sni=localhost",
             f->path);
    assert_int_equal(client_start(cl, make_tls(text, false), 0, "%s", text), 0);
    cpu = thread_cpu_ms();
    client_run_until(cl, got_all, "echo");
    cpu = thread_cpu_ms() - cpu;
    if (cl->opens != 1)
        fail_msg("on_open ran %d times (closed %d: %d %s)", cl->opens,
                 cl->closes, cl->status, cl->error);
    assert_string_equal(cl->version, "TLSv1.2");
    assert_int_equal(cl->got.len, strlen(msg));
    assert_memory_equal(sk_buf_head(&cl->got), msg, strlen(msg));
    client_wait_closed(cl); /* the peer's close_notify: on_eof closes */
    assert_int_equal(cl->status, 0);
    assert_int_equal(cl->eofs, 1);
    pthread_join(paced.thread, NULL);
    paced.running = false;
    if (paced.error != NULL)
        fail_msg("the paced server failed in: %s", paced.error);
    assert_memory_equal(paced.got, msg, strlen(msg));
    assert_true(paced.pieces > 4); /* the flights were cut indeed */
    /* The client's loop runs on this thread: a handshake, not a spin. */
    if (cpu > PAUSE_MS / 3)
        fail_msg("the client used %llu ms of CPU over a handshake with a "
                 "%d ms pause",
                 (unsigned long long)cpu, PAUSE_MS);
}

/* ---------------------------------------- detach, write pending */

/* The server queues 60 x 64 KiB of 'A' the client does not read yet; on
 * the client's first byte it detaches (OpenSSL holds a record it must be
 * given again) and writes B_TOTAL 'B' to its end, then closes. */
#define A_CHUNK 65536
#define A_CHUNKS 60
#define B_TOTAL 100000

static int on_open_flood_a(struct sk_conn *c)
{
    static char a[A_CHUNK];

    memset(a, 'A', sizeof(a));
    for (int i = 0; i < A_CHUNKS; i++)
        assert_int_equal(sk_conn_write(c, a, sizeof(a)), 0);
    return on_open_record(c);
}

static void on_read_detach_write_b(struct sk_conn *c, const char *data,
                                   size_t len)
{
    static char b[B_TOTAL];
    size_t off = 0;
    int fd = sk_conn_detach(c);

    memset(b, 'B', sizeof(b));
    if (fd < 0) {
        sk_conn_abort(c);
        return;
    }
    while (off < sizeof(b)) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        ssize_t n = write(fd, b + off, sizeof(b) - off);
        if (n <= 0 && !(n < 0 && errno == EAGAIN && poll(&p, 1, 5000) == 1))
            break;
        off += n > 0 ? (size_t)n : 0;
    }
    close(fd);
    sk_conn_close(c);
}

static const struct sk_handler detach_handler = {
    .on_open = on_open_flood_a,
    .on_read = on_read_detach_write_b,
    .on_close = on_close_record,
};

static void test_tls_detach_with_a_write_pending_loses_nothing(void **state)
{
    struct fixture *f = *state;
    struct sk_server_config cfg = {.output_max = 8 * MIB};
    char text[TEXT_MAX], buf[65536];
    size_t as = 1, bs = 0, a_after_b = 0, others = 0, n;
    SSL_CTX *ctx;
    SSL *ssl;
    int fd, r;

    snprintf(text, sizeof(text), "unix:%s,tls," SERVER_CERT, f->path);
    serve_tls(f, &detach_handler, cfg, text);
    ctx = verifying_client_ctx();
    ssl = SSL_new(ctx);
    fd = unix_client(f->path);
    SSL_set_fd(ssl, fd);
    assert_int_equal(SSL_connect(ssl), 1);
    /* The first 'A' came: the server's queue has met a full socket. */
    assert_int_equal(SSL_read_ex(ssl, buf, 1, &n), 1);
    assert_int_equal(buf[0], 'A');
    assert_int_equal(SSL_write_ex(ssl, "x", 1, &n), 1);
    while ((r = SSL_read_ex(ssl, buf, sizeof(buf), &n)) == 1) {
        for (size_t i = 0; i < n; i++) {
            a_after_b += buf[i] == 'A' && bs > 0;
            as += buf[i] == 'A' && bs == 0;
            bs += buf[i] == 'B';
            others += buf[i] != 'A' && buf[i] != 'B';
        }
    }
    assert_int_equal(SSL_get_error(ssl, r), SSL_ERROR_ZERO_RETURN);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    if (bs != B_TOTAL || a_after_b != 0 || others != 0)
        fail_msg("%zu 'B' of %d, %zu 'A' after the first 'B', %zu others "
                 "(%zu 'A' before)",
                 bs, B_TOTAL, a_after_b, others, as);
    assert_int_equal(wait_closed(f, 1), 0);
    stop_and_free(f);
}

/* --------------------------------------------- closed before open */

/* What the server heard: the bytes and the end of the stream. */
static char heard[64];
static size_t heard_len;
static int heard_eofs;

static void on_read_hear(struct sk_conn *c, const char *data, size_t len)
{
    struct fixture *f = fixture_of_conn(c);

    pthread_mutex_lock(&f->lock);
    if (heard_len + len <= sizeof(heard)) {
        memcpy(heard + heard_len, data, len);
        heard_len += len;
    }
    announce(f);
}

static void on_eof_hear(struct sk_conn *c)
{
    struct fixture *f = fixture_of_conn(c);

    pthread_mutex_lock(&f->lock);
    heard_eofs++;
    announce(f);
    sk_conn_close(c);
}

static const struct sk_handler hear_handler = {
    .on_open = on_open_record,
    .on_read = on_read_hear,
    .on_eof = on_eof_hear,
    .on_close = on_close_record,
};

/* Written to, then closed, before it opened: the TLS client was stuck
 * (never sent, never closed). */
static void test_tls_write_then_close_before_open(void **state)
{
    struct fixture *f = *state;
    struct client *cl = client_at(0, NULL, 0);

    heard_len = 0;
    heard_eofs = 0;
    serve_tls(f, &hear_handler, defaults, "tls://127.0.0.1:0," SERVER_CERT);
    assert_int_equal(
        client_start(cl, make_tls("tls://127.0.0.1:1,ca=$/ca.pem", false), 0,
                     "tls://127.0.0.1:%u", port_of(f)),
        0);
    assert_int_equal(sk_conn_write(cl->c, "hello\n", 6), 0);
    sk_conn_close(cl->c);
    assert_int_equal(sk_conn_write(cl->c, "late", 4), -EPIPE);
    client_wait_closed(cl);
    assert_int_equal(cl->status, 0);
    assert_int_equal(cl->closes, 1);
    assert_int_equal(wait_closed(f, 1), 0); /* after its close_notify */
    stop_and_free(f);
    assert_int_equal(heard_len, 6);
    assert_memory_equal(heard, "hello\n", 6);
    assert_int_equal(heard_eofs, 1);
}

/* ------------------------------------------ reconnect in on_close */

/* Each client's on_open connects out to a port nobody listens on; the
 * outbound's on_close connects again, for ever. A stop used to wait for
 * them for ever: each one closed made another. */
static struct sk_endpoint nowhere;
static int redials; /* under the fixture's lock */
static atomic_int last_redial;
static atomic_bool give_up;

static void dial_nowhere(struct sk_loop *loop);

static void on_close_redial(struct sk_conn *c, int status)
{
    struct fixture *f = sk_conn_data(c);

    pthread_mutex_lock(&f->lock);
    redials++;
    announce(f);
    if (!atomic_load(&give_up))
        dial_nowhere(sk_conn_loop(c));
}

static const struct sk_handler redial_handler = {.on_close = on_close_redial};
static struct fixture *redial_fixture;

static void dial_nowhere(struct sk_loop *loop)
{
    struct sk_conn_options o = {.handler = &redial_handler,
                                .data = redial_fixture};
    struct sk_conn *c;

    atomic_store(&last_redial, sk_conn_connect(loop, &nowhere, &o, &c));
}

static int on_open_dial(struct sk_conn *c)
{
    dial_nowhere(sk_conn_loop(c));
    return on_open_record(c);
}

static const struct sk_handler dialing_handler = {
    .on_open = on_open_dial,
    .on_close = on_close_record,
};

static void test_reconnect_in_on_close_lets_the_server_stop(void **state)
{
    struct fixture *f = *state;
    struct sk_server_config cfg = {.drain_ms = 500};
    struct timespec deadline;
    char text[64];
    uint64_t start;
    int raw, rc;

    snprintf(text, sizeof(text), "tcp://127.0.0.1:%u", closed_port());
    parse_text(text, &nowhere, NULL);
    redial_fixture = f;
    redials = 0;
    atomic_store(&give_up, false);
    serve(f, &dialing_handler, cfg, "tcp://127.0.0.1:0");
    raw = connect_listener(f, 0);
    wait_for(f, &f->seen.opens, 1, "opens");
    wait_for(f, &redials, 20, "outbound closes");
    start = now_ms();
    sk_server_stop(f->srv);
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 3;
    rc = pthread_timedjoin_np(f->thread, NULL, &deadline);
    if (rc != 0) {
        atomic_store(&give_up, true); /* lets it stop, to be joined */
        pthread_join(f->thread, NULL);
    }
    f->running = false;
    close(raw);
    if (rc != 0)
        fail_msg("sk_server_run() had not returned 3 s after "
                 "sk_server_stop() (%d outbound closes)",
                 redials);
    assert_int_equal(f->run_ret, 0);
    assert_true(now_ms() - start < 1500);
    /* The last one, from a stopping worker, was refused. */
    assert_int_equal(atomic_load(&last_redial), -ECANCELED);
    assert_int_equal(snapshot(f).closes, 1);
}

/* The paced peer of a test that failed before it could join it. */
static int hostile_teardown(void **state)
{
    tls_teardown(state); /* the client goes: the peer reads its end */
    if (paced.running)
        pthread_join(paced.thread, NULL);
    if (paced.lfd > 0)
        close(paced.lfd);
    memset(&paced, 0, sizeof(paced));
    atomic_store(&fail_port, 0);
    return 0;
}

/* clang-format off */
#define ONE(f) {#f, f, tls_setup, hostile_teardown, &threads_1}
/* clang-format on */

int main(void)
{
    const struct CMUnitTest tests[] = {
        ONE(test_tls_outbound_handshake_in_small_pieces_opens),
        ONE(test_tls_detach_with_a_write_pending_loses_nothing),
        ONE(test_tls_write_then_close_before_open),
        ONE(test_reconnect_in_on_close_lets_the_server_stop),
        /* Last: before the fix it crashed the process (a worker thread). */
        ONE(test_tls_accept_whose_watch_fails_is_dropped),
    };

    if (getenv("SOCKIT_TEST_FILTER") != NULL) /* to run a few by name */
        cmocka_set_test_filter(getenv("SOCKIT_TEST_FILTER"));
    return cmocka_run_group_tests(tests, make_certs, remove_certs);
}
