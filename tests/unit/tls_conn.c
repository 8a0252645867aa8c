/* tls_conn.c -- unit tests of connections over TLS and of outbound ones
 * (src/conn.c, conn_tls.c, conn_connect.c): bulk echo, close_notify as a
 * half-close, connect failures, OpenSSL peers (TLS 1.2, key updates, a
 * FIN without close_notify) and a stop (joined and detached connections:
 * tls_join.c). Servers run in their thread (server_fixture.h), clients on
 * a loop of the test's thread (tls_fixture.h). */
#include "tls_fixture.h"

#include <openssl/ssl.h>

/* ------------------------------------------------------------ echo */

static void test_tls_echoes_one_mib_exactly(void **state)
{
    struct fixture *f = *state;
    char *data = pattern(MIB, 1);
    struct client *cl = client_at(0, data, MIB);
    struct sk_tls *client;

    serve_tls(f, &tls_echo_handler, defaults, "tls://127.0.0.1:0," SERVER_CERT);
    cl->shutdown_after = true;
    client = make_tls("tls://127.0.0.1:1,ca=$/ca.pem,sni=localhost", false);
    assert_int_equal(
        client_start(cl, client, 0, "tls://127.0.0.1:%u", port_of(f)), 0);
    /* The connection keeps its own reference. */
    sk_tls_free(client);
    owned[--nowned] = NULL;
    client_wait_closed(cl);
    assert_int_equal(cl->status, 0);
    assert_int_equal(cl->opens, 1);
    assert_int_equal(cl->eofs, 1);
    assert_string_equal(cl->version, "TLSv1.3");
    assert_true(cl->drains > 0); /* sent in chunks as the output drained */
    assert_int_equal(cl->write_after_shutdown, -EPIPE);
    assert_int_equal(cl->got.len, MIB);
    for (size_t i = 0; i < MIB; i++)
        if (sk_buf_head(&cl->got)[i] != data[i])
            fail_msg("byte %zu differs", i);
    assert_int_equal(wait_closed(f, 1), 0);
    stop_and_free(f);
    assert_int_equal(snapshot(f).opens, 1);
    free(data);
}

/* close_notify from the client is the server's on_eof; what the server
 * sends after it still arrives, then the client's on_eof. */
static void test_tls_shutdown_is_a_half_close(void **state)
{
    struct fixture *f = *state;
    struct client *cl = client_at(0, "request\n", 8);
    const char *want = "request\nbye\n";

    serve_tls(f, &tls_bye_handler, defaults, "tls://127.0.0.1:0," SERVER_CERT);
    cl->shutdown_after = true;
    assert_int_equal(
        client_start(cl, make_tls("tls://127.0.0.1:1,ca=$/ca.pem", false), 0,
                     "tls://127.0.0.1:%u", port_of(f)),
        0);
    client_wait_closed(cl);
    assert_int_equal(cl->status, 0);
    assert_int_equal(cl->eofs, 1);
    assert_int_equal(cl->got.len, strlen(want));
    assert_memory_equal(sk_buf_head(&cl->got), want, strlen(want));
    assert_int_equal(wait_closed(f, 1), 0);
    assert_int_equal(tseen.eofs, 1);
    stop_and_free(f);
}

/* Written and shut down before it is connected (the connection is
 * returned for that): sent once it is, TLS or not. */
static void test_conn_write_and_shutdown_before_open(void **state)
{
    struct fixture *f = *state;
    struct client *cl = client_at(0, NULL, 0);
    const char *want = "earlybye\n";
    struct sk_tls *tls;
    char why[256];
    int n = 0;

    for (int i = 0; i < 2; i++) {
        if (i == 0)
            tls = make_tls("tls://127.0.0.1:1,ca=$/ca.pem", false);
        else
            tls = NULL;
        if (i == 0)
            serve_tls(f, &tls_bye_handler, defaults,
                      "tls://127.0.0.1:0," SERVER_CERT);
        else
            serve(f, &tls_bye_handler, defaults, "tcp://127.0.0.1:0");
        client_at(0, NULL, 0);
        assert_int_equal(client_start(cl, tls, 0, "%s://127.0.0.1:%u",
                                      tls ? "tls" : "tcp", port_of(f)),
                         0);
        assert_null(sk_conn_tls_version(cl->c));
        assert_int_equal(sk_conn_write(cl->c, "early", 5), 0);
        sk_conn_shutdown(cl->c);
        assert_int_equal(sk_conn_write(cl->c, "late", 4), -EPIPE);
        client_wait_closed(cl);
        stop_and_free(f);
        if (cl->status != 0 || cl->opens != 1) {
            n += snprintf(why + n, sizeof(why) - (size_t)n,
                          " %s: on_close(%d) after %d opens;",
                          tls ? "tls" : "tcp", cl->status, cl->opens);
            continue;
        }
        assert_int_equal(cl->got.len, strlen(want));
        assert_memory_equal(sk_buf_head(&cl->got), want, strlen(want));
    }
    if (n > 0)
        fail_msg("want on_close(0) after the echo and bye:%s", why);
}

static void test_tls_over_unix_socket(void **state)
{
    struct fixture *f = *state;
    struct client *cl = client_at(0, "over unix", 9);
    char text[TEXT_MAX];

    snprintf(text, sizeof(text), "unix:%s,tls," SERVER_CERT, f->path);
    serve_tls(f, &tls_echo_handler, defaults, text);
    snprintf(text, sizeof(text), "unix:%s,tls,ca=$/ca.pem,sni=localhost",
             f->path);
    assert_int_equal(client_start(cl, make_tls(text, false), 0, "%s", text), 0);
    client_run_until(cl, got_all, "echo");
    assert_int_equal(cl->got.len, 9);
    assert_memory_equal(sk_buf_head(&cl->got), "over unix", 9);
    assert_string_equal(cl->version, "TLSv1.3");
    sk_conn_close(cl->c);
    client_wait_closed(cl);
    assert_int_equal(cl->status, 0);
    snprintf(text, sizeof(text), "unix:%s,tls,ca=$/ca.pem,sni=wrong.example",
             f->path);
    client_at(0, "x", 1);
    assert_int_equal(client_start(cl, make_tls(text, false), 0, "%s", text), 0);
    client_wait_closed(cl);
    assert_int_equal(cl->opens, 0);
    assert_string_equal(cl->error,
                        "certificate verify failed (hostname mismatch)");
    stop_and_free(f);
}

/* --------------------------------------------------------- connect */

static void test_conn_connect_refuses_mismatched_tls(void **state)
{
    struct sk_tls *client = make_tls("tls://127.0.0.1:1,ca=$/ca.pem", false);
    struct client *cl = client_at(0, NULL, 0);

    assert_int_equal(client_start(cl, NULL, 0, "tls://127.0.0.1:1"), -EINVAL);
    assert_int_equal(client_start(cl, client, 0, "tcp://127.0.0.1:1"), -EINVAL);
    assert_int_equal(cl->closes, 0);
}

/* A listening context is no connecting one, as sk_server_listen_tls()
 * refuses the converse. */
static void test_conn_connect_refuses_listening_context(void **state)
{
    struct fixture *f = *state;
    struct sk_tls *server = serve_tls(f, &tls_echo_handler, defaults,
                                      "tls://127.0.0.1:0," SERVER_CERT);
    struct client *cl = client_at(0, "ping", 4);
    int rc = client_start(cl, server, 300, "tls://127.0.0.1:%u", port_of(f));

    if (rc == 0) {
        client_wait_closed(cl);
        fail_msg("sk_conn_connect() with a listening context returned 0, "
                 "want -EINVAL (then on_close(%d) \"%s\", %d opens)",
                 cl->status, cl->error, cl->opens);
    }
    assert_int_equal(rc, -EINVAL);
}

/* Connects cl to text and requires on_close(status), after
 * sk_conn_connect() returned, without on_open. */
static void expect_connect_failure(struct client *cl, struct sk_tls *tls,
                                   const char *text, int status)
{
    client_at((int)(cl - clients), "ping", 4);
    assert_int_equal(client_start(cl, tls, 0, "%s", text), 0);
    assert_int_equal(cl->closes, 0);
    client_wait_closed(cl);
    assert_false(cl->closed_in_connect);
    assert_int_equal(cl->opens, 0);
    if (cl->status != status)
        fail_msg("%s: on_close(%d), want %d", text, cl->status, status);
    assert_int_equal(cl->closes, 1);
}

/* A socket file nobody listens on. */
static int bind_unix_stale(const char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    assert_true(strlen(path) < sizeof(sun.sun_path));
    memcpy(sun.sun_path, path, strlen(path) + 1);
    assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    return fd;
}

static void test_conn_connect_failures_close_after_return(void **state)
{
    struct fixture *f = *state;
    struct client *cl = &clients[0];
    struct sk_tls *client = make_tls("tls://127.0.0.1:1,ca=$/ca.pem", false);
    char text[TEXT_MAX];
    uint16_t port = closed_port();

    snprintf(text, sizeof(text), "tcp://127.0.0.1:%u", port);
    expect_connect_failure(cl, NULL, text, -ECONNREFUSED);
    snprintf(text, sizeof(text), "tls://127.0.0.1:%u", port);
    expect_connect_failure(cl, client, text, -ECONNREFUSED);
    assert_string_equal(cl->error, "");
    /* UNIX sockets fail at once, still reported from the loop. */
    snprintf(text, sizeof(text), "unix:%s/none.sock", f->dir);
    expect_connect_failure(cl, NULL, text, -ENOENT);
    snprintf(text, sizeof(text), "unix:%s/none.sock,tls", f->dir);
    expect_connect_failure(cl, client, text, -ENOENT);
    close(bind_unix_stale(f->path));
    snprintf(text, sizeof(text), "unix:%s", f->path);
    expect_connect_failure(cl, NULL, text, -ECONNREFUSED);
}

/* The client's own deadline covers the handshake: a listener that never
 * answers makes it fail with -ETIMEDOUT and says why. */
static void test_tls_client_handshake_timeout(void **state)
{
    struct client *cl = client_at(0, "ping", 4);
    struct sk_tls *client = make_tls("tls://127.0.0.1:1,ca=$/ca.pem", false);
    uint64_t start = now_ms(), took;
    uint16_t port;
    int mute = hold_port_listening(&port);

    assert_int_equal(client_start(cl, client, 300, "tls://127.0.0.1:%u", port),
                     0);
    client_wait_closed(cl);
    took = now_ms() - start;
    close(mute);
    assert_int_equal(cl->status, -ETIMEDOUT);
    assert_string_equal(cl->error, "handshake timed out");
    assert_int_equal(cl->opens, 0);
    assert_true(took >= 250 && took < 2000);
}

/* A plaintext echo server sends the ClientHello back. */
static void test_tls_client_to_plaintext_server_fails(void **state)
{
    struct fixture *f = *state;
    struct client *cl = client_at(0, "ping", 4);

    serve(f, &echo_handler, defaults, "tcp://127.0.0.1:0");
    assert_int_equal(
        client_start(cl, make_tls("tls://127.0.0.1:1,ca=$/ca.pem", false), 0,
                     "tls://127.0.0.1:%u", port_of(f)),
        0);
    client_wait_closed(cl);
    assert_true(cl->status < 0);
    assert_int_equal(cl->opens, 0);
    assert_string_not_equal(cl->error, "");
    stop_and_free(f);
}

/* Closed while connecting: on_close(0) once, on_open never. */
static void test_conn_close_before_open(void **state)
{
    struct fixture *f = *state;
    struct client *cl = client_at(0, "ping", 4);

    serve_tls(f, &tls_echo_handler, defaults, "tls://127.0.0.1:0," SERVER_CERT);
    assert_int_equal(
        client_start(cl, make_tls("tls://127.0.0.1:1,ca=$/ca.pem", false), 0,
                     "tls://127.0.0.1:%u", port_of(f)),
        0);
    sk_conn_close(cl->c);
    assert_int_equal(cl->closes, 0);
    client_wait_closed(cl);
    assert_int_equal(cl->status, 0);
    assert_int_equal(cl->opens, 0);
    assert_int_equal(cl->closes, 1);
    stop_and_free(f);
}

/* ------------------------------------------------- OpenSSL peers */

/* A blocking OpenSSL client, for what sk_conn_connect() does not do:
 * TLS 1.2 and older, key updates, a TCP FIN without close_notify. */
static SSL_CTX *pctx;
static SSL *pssl;
static int pfd = -1;

static void peer_free(void)
{
    SSL_free(pssl);
    pssl = NULL;
    SSL_CTX_free(pctx);
    pctx = NULL;
    if (pfd >= 0)
        close(pfd);
    pfd = -1;
}

/* Connects to f's listener with TLS up to max_version (0: any); returns
 * SSL_connect()'s result. session: one to offer. */
static int peer_open(struct fixture *f, int max_version, SSL_SESSION *session)
{
    char ca[256];

    peer_free();
    snprintf(ca, sizeof(ca), "%s/ca.pem", cert_dir);
    pctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(pctx);
    assert_int_equal(SSL_CTX_load_verify_locations(pctx, ca, NULL), 1);
    SSL_CTX_set_verify(pctx, SSL_VERIFY_PEER, NULL);
    if (max_version != 0) {
        SSL_CTX_set_min_proto_version(pctx, TLS1_VERSION);
        SSL_CTX_set_max_proto_version(pctx, max_version);
        SSL_CTX_set_security_level(pctx, 0);
    }
    pssl = SSL_new(pctx);
    assert_non_null(pssl);
    pfd = connect_listener(f, 0);
    SSL_set_fd(pssl, pfd);
    if (session != NULL)
        SSL_set_session(pssl, session);
    return SSL_connect(pssl);
}

static void peer_write(const void *data, size_t len)
{
    size_t n;

    if (SSL_write_ex(pssl, data, len, &n) != 1 || n != len)
        fail_msg("SSL_write of %zu bytes failed", len);
}

/* Reads len bytes exactly. */
static void peer_read(void *buf, size_t len)
{
    size_t off = 0, n;

    while (off < len) {
        if (SSL_read_ex(pssl, (char *)buf + off, len - off, &n) != 1)
            fail_msg("SSL_read with %zu of %zu bytes: error %d", off, len,
                     SSL_get_error(pssl, 0));
        off += n;
    }
}

/* Reads until the end of the stream, which must be close_notify; returns
 * the count. */
static size_t peer_read_to_close_notify(char *buf, size_t size)
{
    size_t len = 0, n;
    int r;

    while ((r = SSL_read_ex(pssl, buf + len, size - len, &n)) == 1)
        len += n;
    if (SSL_get_error(pssl, r) != SSL_ERROR_ZERO_RETURN)
        fail_msg("stream ended with error %d, want close_notify",
                 SSL_get_error(pssl, r));
    return len;
}

/* A TCP FIN without close_notify ends the stream as close_notify would:
 * on_eof, and the reply still goes out. */
static void test_tls_fin_without_close_notify_is_eof(void **state)
{
    struct fixture *f = *state;
    char buf[64];
    size_t len;

    serve_tls(f, &tls_bye_handler, defaults, "tls://127.0.0.1:0," SERVER_CERT);
    assert_int_equal(peer_open(f, 0, NULL), 1);
    peer_write("abc", 3);
    assert_int_equal(shutdown(pfd, SHUT_WR), 0);
    len = peer_read_to_close_notify(buf, sizeof(buf));
    assert_int_equal(len, 7);
    assert_memory_equal(buf, "abcbye\n", 7);
    assert_int_equal(wait_closed(f, 1), 0);
    assert_int_equal(tseen.eofs, 1);
    stop_and_free(f);
}

/* A peer that closes its socket while the server still has TLS to send
 * (the reply, then close_notify): the writes fail, the process gets no
 * SIGPIPE (the plaintext path sends with MSG_NOSIGNAL; a library must
 * not kill a process that did not ignore SIGPIPE). */
static void test_tls_vanished_peer_raises_no_sigpipe(void **state)
{
    struct fixture *f = *state;
    sig_atomic_t before = sigpipes;
    char c;

    serve_tls(f, &tls_bye_handler, defaults, "tls://127.0.0.1:0," SERVER_CERT);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(peer_open(f, 0, NULL), 1);
        peer_write("x", 1);
        peer_read(&c, 1); /* the session ticket is read too */
        close(pfd);       /* a FIN: nothing is left unread */
        pfd = -1;
        wait_closed(f, i + 1);
    }
    peer_free();
    stop_and_free(f);
    if (sigpipes != before)
        fail_msg("%d SIGPIPEs in 4 connections", (int)(sigpipes - before));
}

/* TLS 1.3 key updates, requested or not, in the middle of a stream. */
static void test_tls_key_updates_mid_stream(void **state)
{
    struct fixture *f = *state;
    char *data = pattern(8 * 20000, 4), buf[20000];

    serve_tls(f, &tls_echo_handler, defaults, "tls://127.0.0.1:0," SERVER_CERT);
    assert_int_equal(peer_open(f, 0, NULL), 1);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(SSL_key_update(pssl, i % 2
                                                  ? SSL_KEY_UPDATE_NOT_REQUESTED
                                                  : SSL_KEY_UPDATE_REQUESTED),
                         1);
        peer_write(data + i * 20000, 20000);
        peer_read(buf, sizeof(buf));
        if (memcmp(buf, data + i * 20000, sizeof(buf)) != 0)
            fail_msg("echo %d differs", i);
    }
    assert_int_equal(SSL_shutdown(pssl), 0);
    assert_int_equal(peer_read_to_close_notify(buf, sizeof(buf)), 0);
    assert_int_equal(wait_closed(f, 1), 0);
    stop_and_free(f);
    free(data);
}

/* TLS 1.2 is served, and resumed; older versions are refused. */
static void test_tls12_is_served_and_resumed_older_refused(void **state)
{
    struct fixture *f = *state;
    SSL_SESSION *session;
    char buf[16];

    serve_tls(f, &tls_echo_handler, defaults, "tls://127.0.0.1:0," SERVER_CERT);
    for (int i = 0; i < 2; i++) {
        session = i == 0 ? NULL : SSL_get1_session(pssl);
        if (peer_open(f, TLS1_2_VERSION, session) != 1)
            fail_msg("TLS 1.2 handshake failed: %d", SSL_get_error(pssl, 0));
        SSL_SESSION_free(session);
        assert_int_equal(SSL_version(pssl), TLS1_2_VERSION);
        assert_int_equal(SSL_session_reused(pssl), i);
        peer_write("tls 1.2", 7);
        peer_read(buf, 7);
        assert_memory_equal(buf, "tls 1.2", 7);
        wait_for(f, &f->seen.opens, i + 1, "opens");
        assert_string_equal(tseen.version, "TLSv1.2");
        assert_int_equal(tseen.resumed[i], i);
        /* A session ended without close_notify is not resumable. */
        SSL_shutdown(pssl);
    }
    if (peer_open(f, TLS1_1_VERSION, NULL) == 1)
        fail_msg("a TLS 1.1 client was served (%s)", SSL_get_version(pssl));
    peer_free();
    stop_and_free(f);
    assert_int_equal(snapshot(f).opens, 2);
}

/* ------------------------------------------------------------ stop */

/* A stop closes open TLS connections with close_notify, and one still in
 * its handshake at once, not after the handshake timeout. */
static void test_tls_server_stop_sends_close_notify(void **state)
{
    struct fixture *f = *state;
    struct client *cl = client_at(0, "x", 1);
    uint64_t start;
    int raw;

    serve_tls(f, &tls_echo_handler, defaults, "tls://127.0.0.1:0," SERVER_CERT);
    assert_int_equal(
        client_start(cl, make_tls("tls://127.0.0.1:1,ca=$/ca.pem", false), 0,
                     "tls://127.0.0.1:%u", port_of(f)),
        0);
    client_run_until(cl, got_all, "echo");
    raw = connect_listener(f, 0);
    start = now_ms();
    sk_server_stop(f->srv);
    client_wait_closed(cl);
    assert_int_equal(cl->eofs, 1);
    assert_int_equal(cl->status, 0);
    assert_string_equal(cl->error, "");
    expect_eof(raw);
    close(raw);
    stop_and_free(f);
    if (now_ms() - start > 1500)
        fail_msg("stop took %llu ms", (unsigned long long)(now_ms() - start));
    assert_int_equal(snapshot(f).statuses[0], 0);
}

/* The OpenSSL peer a test left open, then the client loop and server. */
static int conn_teardown(void **state)
{
    peer_free();
    tls_teardown(state);
    return 0;
}

/* clang-format off */
#define ONE(f) {#f, f, tls_setup, conn_teardown, &threads_1}
#define BOTH(f) ONE(f), {#f " threads=2", f, tls_setup, conn_teardown, \
                         &threads_2}
/* clang-format on */

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_tls_echoes_one_mib_exactly),
        ONE(test_tls_shutdown_is_a_half_close),
        ONE(test_conn_write_and_shutdown_before_open),
        ONE(test_tls_over_unix_socket),
        ONE(test_conn_connect_refuses_mismatched_tls),
        ONE(test_conn_connect_refuses_listening_context),
        ONE(test_conn_connect_failures_close_after_return),
        ONE(test_tls_client_handshake_timeout),
        ONE(test_tls_client_to_plaintext_server_fails),
        ONE(test_conn_close_before_open),
        ONE(test_tls_fin_without_close_notify_is_eof),
        ONE(test_tls_vanished_peer_raises_no_sigpipe),
        ONE(test_tls_key_updates_mid_stream),
        ONE(test_tls12_is_served_and_resumed_older_refused),
        BOTH(test_tls_server_stop_sends_close_notify),
    };

    if (getenv("SOCKIT_TEST_FILTER") != NULL) /* to run a few by name */
        cmocka_set_test_filter(getenv("SOCKIT_TEST_FILTER"));
    return cmocka_run_group_tests(tests, make_certs, remove_certs);
}
