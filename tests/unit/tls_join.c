/* tls_join.c -- unit tests of two connections joined and of a TLS
 * connection detached to a plaintext descriptor (src/conn.c, conn_tls.c,
 * conn_connect.c, conn_join.c). Servers run in their thread
 * (server_fixture.h), clients on a loop of the test's thread
 * (tls_fixture.h). */
#include "tls_fixture.h"

/* ------------------------------------------------------------ join */

/* Server A (plaintext) relays each client to server B (TLS): its on_open
 * holds the client's input, connects out on its own loop, and joins the
 * two in the outbound's on_open. What the handlers saw, under A's lock. */
struct relay {
    struct fixture *f;
    struct sk_endpoint target;
    struct sk_tls *tls;
    bool joined;
    int connect_rc, join_starting, join_self, join_ok, join_again;
    bool starting_version_null;
    char in_version[32], out_version[32];
    int out_opens, out_closes, out_status;
};
static struct relay relay;

static void relay_outbound_close(struct sk_conn *out, int status)
{
    struct sk_conn *in = sk_conn_data(out);

    pthread_mutex_lock(&relay.f->lock);
    relay.out_closes++;
    relay.out_status = status;
    if (in != NULL) {
        sk_conn_set_data(in, NULL);
        if (!relay.joined)
            sk_conn_abort(in);
    }
    announce(relay.f);
}

static int relay_outbound_open(struct sk_conn *out)
{
    struct sk_conn *in = sk_conn_data(out);
    const char *v = sk_conn_tls_version(out);
    int rc;

    if (in == NULL)
        return -1;
    rc = sk_conn_join(in, out);
    pthread_mutex_lock(&relay.f->lock);
    relay.out_opens++;
    copy_or_null(relay.out_version, sizeof(relay.out_version), v);
    relay.join_ok = rc;
    relay.joined = rc == 0;
    relay.join_again = sk_conn_join(out, in);
    announce(relay.f);
    return rc;
}

static const struct sk_handler relay_outbound_handler = {
    .on_open = relay_outbound_open,
    .on_close = relay_outbound_close,
};

static int relay_open(struct sk_conn *in)
{
    struct sk_conn_options o = {.handler = &relay_outbound_handler,
                                .data = in,
                                .tls = relay.tls,
                                .timeout_ms = CLIENT_WAIT_MS};
    struct sk_conn *out = NULL;
    int rc;

    sk_conn_hold_input(in, true);
    rc = sk_conn_connect(sk_conn_loop(in), &relay.target, &o, &out);
    pthread_mutex_lock(&relay.f->lock);
    relay.connect_rc = rc;
    if (rc == 0) {
        relay.join_starting = sk_conn_join(in, out);
        relay.join_self = sk_conn_join(in, in);
        relay.starting_version_null = sk_conn_tls_version(out) == NULL;
        sk_conn_set_data(in, out);
    }
    copy_or_null(relay.in_version, sizeof(relay.in_version),
                 sk_conn_tls_version(in));
    pthread_mutex_unlock(&relay.f->lock);
    return rc < 0 ? rc : on_open_record(in);
}

static void relay_close(struct sk_conn *in, int status)
{
    struct sk_conn *out = sk_conn_data(in);

    if (out != NULL) {
        sk_conn_set_data(out, NULL);
        if (!relay.joined)
            sk_conn_abort(out);
    }
    on_close_record(in, status);
}

static const struct sk_handler relay_handler = {
    .on_open = relay_open,
    .on_read = on_read_echo, /* never: joined */
    .on_close = relay_close,
};

static struct fixture *far; /* server B */

/* Starts B with handler h and A relaying to it. */
static void serve_relay(struct fixture *f, const struct sk_handler *h)
{
    void *st = &threads_1;
    char text[TEXT_MAX];

    assert_int_equal(setup(&st), 0);
    far = st;
    serve_tls(far, h, defaults, "tls://127.0.0.1:0," SERVER_CERT);
    snprintf(text, sizeof(text), "tls://127.0.0.1:%u,ca=$/ca.pem",
             port_of(far));
    relay.f = f;
    relay.tls = make_tls(text, false);
    relay.target = listener(far, 0);
    serve(f, &relay_handler, defaults, "tcp://127.0.0.1:0");
}

struct sender {
    int fd;
    const char *data;
    size_t len;
};

static void *send_then_shut(void *arg)
{
    struct sender *s = arg;
    size_t off = 0;

    while (off < s->len) {
        ssize_t n = send(s->fd, s->data + off, s->len - off, MSG_NOSIGNAL);
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    shutdown(s->fd, SHUT_WR);
    return NULL;
}

/* Reads until the end of the stream; returns the count. */
static size_t recv_to_eof(int fd, char *buf, size_t size)
{
    size_t len = 0;
    ssize_t n = 0;

    while (len < size && (n = recv(fd, buf + len, size - len, 0)) > 0)
        len += (size_t)n;
    if (n < 0)
        fail_msg("recv after %zu bytes: %s", len, strerror(errno));
    if (len == size && recv(fd, buf, 1, 0) != 0)
        fail_msg("more than %zu bytes", size);
    return len;
}

static void test_join_relays_plaintext_to_tls(void **state)
{
    struct fixture *f = *state;
    char *data = pattern(MIB, 2), *got = malloc(MIB + 1);
    struct sender s = {.data = data, .len = MIB};
    pthread_t thread;
    size_t len;

    assert_non_null(got);
    serve_relay(f, &tls_echo_handler);
    s.fd = connect_listener(f, 0);
    assert_int_equal(pthread_create(&thread, NULL, send_then_shut, &s), 0);
    len = recv_to_eof(s.fd, got, MIB + 1);
    pthread_join(thread, NULL);
    close(s.fd);
    assert_int_equal(len, MIB);
    assert_memory_equal(got, data, MIB);
    assert_int_equal(wait_closed(f, 1), 0);
    assert_int_equal(wait_closed(far, 1), 0);
    wait_for(f, &relay.out_closes, 1, "outbound closes");
    assert_int_equal(relay.out_status, 0);
    assert_int_equal(relay.connect_rc, 0);
    assert_int_equal(relay.join_starting, -EINVAL);
    assert_int_equal(relay.join_self, -EINVAL);
    assert_true(relay.starting_version_null);
    assert_int_equal(relay.join_ok, 0);
    assert_int_equal(relay.join_again, -EINVAL);
    assert_string_equal(relay.in_version, "(null)");
    assert_string_equal(relay.out_version, "TLSv1.3");
    assert_int_equal(relay.out_opens, 1);
    stop_and_free(f);
    stop_and_free(far);
    free(data);
    free(got);
}

/* B speaks first and shuts down its sending (close_notify): the client
 * gets the words then its end of stream, and may still send; B hears it,
 * then the client's end. */
static char far_got[256];
static int far_len, far_eofs;

static int far_open(struct sk_conn *c)
{
    sk_conn_write(c, "server first\n", 13);
    sk_conn_shutdown(c);
    return on_open_record(c);
}

static void far_read(struct sk_conn *c, const char *data, size_t len)
{
    struct fixture *f = fixture_of_conn(c);

    pthread_mutex_lock(&f->lock);
    if ((size_t)far_len + len < sizeof(far_got)) {
        memcpy(far_got + far_len, data, len);
        far_len += (int)len;
    }
    announce(f);
}

static void far_eof(struct sk_conn *c)
{
    struct fixture *f = fixture_of_conn(c);

    pthread_mutex_lock(&f->lock);
    far_eofs++;
    announce(f);
    sk_conn_close(c);
}

static const struct sk_handler far_handler = {
    .on_open = far_open,
    .on_read = far_read,
    .on_eof = far_eof,
    .on_close = on_close_record,
};

static void test_join_passes_half_close_from_far_end(void **state)
{
    struct fixture *f = *state;
    char buf[64];
    int fd;

    far_len = far_eofs = 0;
    serve_relay(f, &far_handler);
    fd = connect_listener(f, 0);
    recv_exact(fd, buf, 13);
    assert_memory_equal(buf, "server first\n", 13);
    expect_eof(fd);
    send_all(fd, "late words\n", 11);
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    wait_for(far, &far_eofs, 1, "ends of stream at B");
    assert_int_equal(far_len, 11);
    assert_memory_equal(far_got, "late words\n", 11);
    assert_int_equal(wait_closed(f, 1), 0);
    assert_int_equal(wait_closed(far, 1), 0);
    close(fd);
    stop_and_free(f);
    stop_and_free(far);
}

/* A stop of A closes the client and the outbound connection to B. */
static void test_join_server_stop_closes_both(void **state)
{
    struct fixture *f = *state;
    int fd;

    serve_relay(f, &tls_echo_handler);
    fd = connect_listener(f, 0);
    expect_echo(fd, "through");
    sk_server_stop(f->srv);
    expect_eof(fd);
    close(fd);
    assert_int_equal(wait_closed(far, 1), 0);
    wait_for(f, &relay.out_closes, 1, "outbound closes");
    assert_int_equal(relay.out_status, 0);
    stop_and_free(f);
    assert_int_equal(snapshot(f).statuses[0], 0);
    stop_and_free(far);
}

/* ---------------------------------------------------------- detach */

/* A handler that detaches each TLS connection in on_open and serves the
 * descriptor from a thread with blocking reads and writes: it reads the
 * request ("ping\n", or all until the end of stream), writes the reply,
 * closes the descriptor, then has the worker close the connection (found
 * through detached, which on_close clears). */
enum detach_mode {
    DETACH_PLAIN,
    DETACH_HALF_CLOSE,
    DETACH_WRITE,
    DETACH_QUEUED
};

struct service {
    enum detach_mode mode;
    struct fixture *f;
    struct sk_loop *loop;
    int fd, detach_again, write_after;
    bool started;
    pthread_t thread;
    char got[64];
    size_t got_len;
    char *reply;
    size_t reply_len;
};
static struct service svc;
static struct sk_conn *detached; /* worker thread only */

#define REPLY_LEN (200 * 1024)

static void close_detached(void *arg)
{
    (void)arg;
    if (detached != NULL)
        sk_conn_close(detached);
}

static void *service_main(void *arg)
{
    struct timeval tv = {.tv_sec = CLIENT_TIMEOUT_S};
    size_t off = 0;
    ssize_t n;

    (void)arg;
    setsockopt(svc.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(svc.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    while (svc.got_len < sizeof(svc.got) &&
           (svc.mode == DETACH_HALF_CLOSE || svc.got_len < 5) &&
           (n = read(svc.fd, svc.got + svc.got_len,
                     sizeof(svc.got) - svc.got_len)) > 0)
        svc.got_len += (size_t)n;
    while (off < svc.reply_len &&
           (n = write(svc.fd, svc.reply + off, svc.reply_len - off)) > 0)
        off += (size_t)n;
    close(svc.fd);
    sk_loop_post(svc.loop, close_detached, NULL);
    return NULL;
}

static int detach_open(struct sk_conn *c)
{
    int fd;

    if (svc.mode == DETACH_QUEUED)
        assert_int_equal(sk_conn_write(c, "queued before detach\n", 21), 0);
    fd = sk_conn_detach(c);
    svc.fd = fd;
    svc.detach_again = sk_conn_detach(c);
    if (svc.mode == DETACH_WRITE)
        svc.write_after = sk_conn_write(c, "X", 1);
    if (fd < 0)
        return fd;
    detached = c;
    svc.loop = sk_conn_loop(c);
    svc.started = pthread_create(&svc.thread, NULL, service_main, NULL) == 0;
    return on_open_record(c);
}

static void detach_close(struct sk_conn *c, int status)
{
    if (c == detached)
        detached = NULL;
    on_close_record(c, status);
}

static const struct sk_handler detach_handler = {
    .on_open = detach_open,
    .on_close = detach_close,
};

/* Serves one TLS client in mode; the client sends "ping\n" (then shuts
 * down if half_close) and must get exactly the service's reply. */
static void run_detached(struct fixture *f, enum detach_mode mode)
{
    struct client *cl = client_at(0, "ping\n", 5);

    svc = (struct service){.mode = mode, .f = f, .fd = -1};
    svc.reply = pattern(REPLY_LEN, 3);
    svc.reply_len = REPLY_LEN;
    memcpy(svc.reply, "pong:", 5);
    serve_tls(f, &detach_handler, defaults, "tls://127.0.0.1:0," SERVER_CERT);
    cl->shutdown_after = mode == DETACH_HALF_CLOSE;
    assert_int_equal(
        client_start(cl, make_tls("tls://127.0.0.1:1,ca=$/ca.pem", false), 0,
                     "tls://127.0.0.1:%u", port_of(f)),
        0);
    client_wait_closed(cl);
    wait_for(f, &f->seen.opens, 1, "opens");
    if (svc.started)
        pthread_join(svc.thread, NULL);
    svc.started = false;
    assert_true(svc.fd >= 0);
    assert_int_equal(svc.detach_again, -EINVAL);
    assert_int_equal(svc.got_len, 5);
    assert_memory_equal(svc.got, "ping\n", 5);
    assert_int_equal(cl->status, 0);
    assert_int_equal(cl->eofs, 1);
    if (cl->got.len != REPLY_LEN ||
        memcmp(sk_buf_head(&cl->got), svc.reply, REPLY_LEN) != 0)
        fail_msg("client got %zu bytes starting \"%.21s\", want the %d of "
                 "the service starting \"pong:\"",
                 cl->got.len, cl->got.len ? sk_buf_head(&cl->got) : "",
                 REPLY_LEN);
    assert_int_equal(wait_closed(f, 1), 0);
    stop_and_free(f);
}

static void test_tls_detach_gives_service_plaintext(void **state)
{
    run_detached(*state, DETACH_PLAIN);
}

/* The client's close_notify reaches the service as its end of stream. */
static void test_tls_detach_passes_client_half_close(void **state)
{
    run_detached(*state, DETACH_HALF_CLOSE);
}

/* After the detach the descriptor is the service's: writes through the
 * connection are refused (-EPIPE), as for a plaintext one. */
static void test_tls_detach_refuses_writes(void **state)
{
    struct fixture *f = *state;

    run_detached(f, DETACH_WRITE);
    assert_int_equal(svc.write_after, -EPIPE);
}

/* "queued output is dropped": what on_open queued before the detach is
 * not sent ahead of the service's bytes. */
static void test_tls_detach_drops_queued_output(void **state)
{
    run_detached(*state, DETACH_QUEUED);
}

static int join_setup(void **state)
{
    memset(&relay, 0, sizeof(relay));
    memset(&svc, 0, sizeof(svc));
    detached = NULL;
    far = NULL;
    return tls_setup(state);
}

/* The service's thread first: it posts to a worker of the server. */
static int join_teardown(void **state)
{
    void *st = far;

    if (svc.started)
        pthread_join(svc.thread, NULL);
    free(svc.reply);
    tls_teardown(state);
    if (st != NULL)
        teardown(&st);
    return 0;
}

/* clang-format off */
#define ONE(f) {#f, f, join_setup, join_teardown, &threads_1}
#define BOTH(f) ONE(f), {#f " threads=2", f, join_setup, join_teardown, \
                         &threads_2}
/* clang-format on */

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_join_relays_plaintext_to_tls),
        ONE(test_join_server_stop_closes_both),
        ONE(test_join_passes_half_close_from_far_end),
        ONE(test_tls_detach_gives_service_plaintext),
        ONE(test_tls_detach_passes_client_half_close),
        ONE(test_tls_detach_refuses_writes),
        ONE(test_tls_detach_drops_queued_output),
    };

    if (getenv("SOCKIT_TEST_FILTER") != NULL) /* to run a few by name */
        cmocka_set_test_filter(getenv("SOCKIT_TEST_FILTER"));
    return cmocka_run_group_tests(tests, make_certs, remove_certs);
}
