/* tls_fixture.h -- what the TLS unit tests share, on top of
 * server_fixture.h: certificates made once per run with the openssl
 * command, TLS contexts made from endpoint texts, a TLS server in its
 * thread, and clients made with sk_conn_connect() on a loop of the test's
 * thread, every wait for them bounded by a timer.
 *
 * In endpoint texts given to the helpers, "$" stands for the directory of
 * the certificates. Included by tls.c, tls_verify.c, tls_conn.c and
 * tls_join.c; all static. */
#ifndef SOCKIT_TEST_TLS_FIXTURE_H
#define SOCKIT_TEST_TLS_FIXTURE_H

#include "server_fixture.h"

#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>

#define CLIENT_WAIT_MS 5000
#define MAX_CLIENTS 4
#define MAX_OWNED 16
#define TEXT_MAX 2048
#define MIB (1024 * 1024)

static char cert_dir[64];

/* A server's certificate for localhost and 127.0.0.1, signed by the CA. */
#define SERVER_CERT "cert=$/server.pem,key=$/server.key"

/* EC P-256 throughout: a CA; a server certificate for localhost and
 * 127.0.0.1, and one for example.com only (CN sockit-second), both signed
 * by the CA; a client certificate signed by it; a self-signed one for
 * localhost and 127.0.0.1; a key that matches none; a file that is not
 * PEM; the server's certificate and key in one file. */
static const char cert_script[] =
    "EC='-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes'\n"
    "LEAF='basicConstraints=critical,CA:FALSE\n"
    "keyUsage=critical,digitalSignature'\n"
    "openssl req -x509 $EC -keyout ca.key -out ca.pem -days 2 \\\n"
    "    -subj /CN=sockit-test-ca -addext basicConstraints=critical,CA:TRUE "
    "\\\n"
    "    -addext keyUsage=critical,keyCertSign,cRLSign\n"
    "sign() { # name cn eku san\n"
    "    printf '%s\\nextendedKeyUsage=%s\\n%s\\n' \"$LEAF\" \"$3\" \"$4\" \\\n"
    "        > $1.ext\n"
    "    openssl req -new $EC -keyout $1.key -out $1.csr -subj /CN=$2\n"
    "    openssl x509 -req -in $1.csr -CA ca.pem -CAkey ca.key \\\n"
    "        -CAcreateserial -days 2 -out $1.pem -extfile $1.ext\n"
    "}\n"
    "sign server localhost serverAuth \\\n"
    "    subjectAltName=DNS:localhost,IP:127.0.0.1\n"
    "sign second sockit-second serverAuth subjectAltName=DNS:example.com\n"
    "sign client sockit-client clientAuth ''\n"
    "openssl req -x509 $EC -keyout self.key -out self.pem -days 2 \\\n"
    "    -subj /CN=localhost \\\n"
    "    -addext subjectAltName=DNS:localhost,IP:127.0.0.1\n"
    "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \\\n"
    "    -out other.key\n"
    "echo 'this is not PEM' > notpem.txt\n"
    "cat server.pem server.key > combined.pem\n"
    "openssl verify -CAfile ca.pem server.pem second.pem client.pem\n";

/* SIGPIPEs the process got: counted, not fatal, so that one does not end
 * the run (see test_tls_vanished_peer_raises_no_sigpipe). */
static volatile sig_atomic_t sigpipes;

static void count_sigpipe(int sig)
{
    (void)sig;
    sigpipes++;
}

static int make_certs(void **state)
{
    char cmd[512], path[128];
    FILE *fp;

    (void)state;
    signal(SIGPIPE, count_sigpipe);
    snprintf(cert_dir, sizeof(cert_dir), "/tmp/sockit-tls-XXXXXX");
    if (mkdtemp(cert_dir) == NULL)
        return -1;
    snprintf(path, sizeof(path), "%s/make.sh", cert_dir);
    if ((fp = fopen(path, "w")) == NULL)
        return -1;
    fputs(cert_script, fp);
    fclose(fp);
    snprintf(cmd, sizeof(cmd), "cd %s && sh -e make.sh > make.log 2>&1",
             cert_dir);
    if (system(cmd) != 0) {
        snprintf(cmd, sizeof(cmd), "cat %s/make.log >&2", cert_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "openssl failed\n");
        return -1;
    }
    return 0;
}

static int remove_certs(void **state)
{
    (void)state;
    remove_dir(cert_dir);
    return 0;
}

/* fmt with its arguments, "$" replaced by the certificate directory. */
static void expand(char *out, size_t size, const char *fmt, ...)
{
    char raw[TEXT_MAX];
    size_t n = 0;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    for (const char *p = raw; *p != '\0' && n + 1 < size; p++) {
        if (*p == '$')
            n += (size_t)snprintf(out + n, size - n, "%s", cert_dir);
        else
            out[n++] = *p;
        if (n >= size)
            n = size - 1;
    }
    out[n] = '\0';
}

/* -------------------------------------------------------- contexts */

/* References the test holds, dropped at teardown. */
static struct sk_tls *owned[MAX_OWNED];
static int nowned;

static struct sk_tls *own(struct sk_tls *tls)
{
    assert_true(nowned < MAX_OWNED);
    owned[nowned++] = tls;
    return tls;
}

static void parse_text(const char *text, struct sk_endpoint *ep,
                       struct sk_endpoint_options *opts)
{
    const char *why = NULL;

    if (sk_endpoint_parse_options(ep, opts, text, &why) != 0)
        fail_msg("%s: %s", text, why);
}

/* sk_tls_new() on an (expanded) endpoint text: its code, err filled. */
static int try_tls(const char *text, bool listening, char *err, size_t len)
{
    static struct sk_endpoint_options opts;
    struct sk_endpoint ep;
    struct sk_tls *tls = NULL;
    int rc;

    parse_text(text, &ep, &opts);
    rc = sk_tls_new(&tls, &ep, &opts, listening, err, len);
    if (rc == 0)
        sk_tls_free(tls);
    return rc;
}

/* A context the test owns, made from text with "$" expanded. */
static struct sk_tls *make_tls(const char *fmt, bool listening)
{
    static struct sk_endpoint_options opts;
    char text[TEXT_MAX], err[SK_TLS_ERRLEN];
    struct sk_endpoint ep;
    struct sk_tls *tls = NULL;

    expand(text, sizeof(text), "%s", fmt);
    parse_text(text, &ep, &opts);
    if (sk_tls_new(&tls, &ep, &opts, listening, err, sizeof(err)) != 0)
        fail_msg("sk_tls_new(%s): %s", text, err);
    return own(tls);
}

/* --------------------------------------------------------- server */

/* What the server's TLS handler saw, under f->lock. */
struct tls_seen {
    char version[32], alpn[64];
    bool resumed[MAX_CLOSES];
    int eofs;
    char log[8192];
};
static struct tls_seen tseen;
/* sk_conn_tls_alpn() is asked only where a test wants it: with no
 * protocol chosen it passes NULL to memcpy(), which UBSan stops at. */
static bool record_alpn;

static void log_capture(void *data, const char *msg)
{
    struct fixture *f = data;
    size_t n;

    pthread_mutex_lock(&f->lock);
    n = strlen(tseen.log);
    snprintf(tseen.log + n, sizeof(tseen.log) - n, "%s\n", msg);
    pthread_mutex_unlock(&f->lock);
}

static int on_open_tls_record(struct sk_conn *c)
{
    struct fixture *f = fixture_of_conn(c);
    const char *v = sk_conn_tls_version(c);
    const char *a = record_alpn ? sk_conn_tls_alpn(c) : "(not asked)";
    int n;

    pthread_mutex_lock(&f->lock);
    n = f->seen.opens;
    snprintf(tseen.version, sizeof(tseen.version), "%s", v ? v : "(null)");
    snprintf(tseen.alpn, sizeof(tseen.alpn), "%s", a ? a : "(null)");
    if (n < MAX_CLOSES)
        tseen.resumed[n] = sk_conn_tls_resumed(c);
    pthread_mutex_unlock(&f->lock);
    return on_open_record(c);
}

/* Echoes; at the end of the client's stream, one more line, then closes. */
static void on_eof_reply(struct sk_conn *c)
{
    struct fixture *f = fixture_of_conn(c);

    sk_conn_write(c, "bye\n", 4);
    sk_conn_close(c);
    pthread_mutex_lock(&f->lock);
    tseen.eofs++;
    announce(f);
}

static const struct sk_handler tls_echo_handler = {
    .on_open = on_open_tls_record,
    .on_read = on_read_echo,
    .on_close = on_close_record,
};

static const struct sk_handler tls_bye_handler = {
    .on_open = on_open_tls_record,
    .on_read = on_read_echo,
    .on_eof = on_eof_reply,
    .on_close = on_close_record,
};

/* Starts a server with handler h on the TLS endpoint fmt ("$" expanded),
 * logging to tseen.log. Returns its context, a reference the test owns. */
static struct sk_tls *serve_tls(struct fixture *f, const struct sk_handler *h,
                                struct sk_server_config cfg, const char *fmt)
{
    static struct sk_endpoint_options opts;
    char text[TEXT_MAX];
    struct sk_endpoint ep;
    struct sk_tls *tls = make_tls(fmt, true);

    expand(text, sizeof(text), "%s", fmt);
    parse_text(text, &ep, &opts);
    if (cfg.log == NULL)
        cfg.log = log_capture;
    server_new(f, h, cfg);
    assert_int_equal(sk_server_listen_tls(f->srv, &ep, tls, NULL), 0);
    server_start(f);
    return tls;
}

static uint16_t port_of(const struct fixture *f)
{
    return listener(f, 0).port;
}

static bool log_has(struct fixture *f, const char *what)
{
    bool has;

    pthread_mutex_lock(&f->lock);
    has = strstr(tseen.log, what) != NULL;
    pthread_mutex_unlock(&f->lock);
    return has;
}

/* --------------------------------------------------------- clients */

struct client {
    struct sk_conn *c;
    int opens, closes, eofs, drains, status;
    int write_after_shutdown;
    bool closed_in_connect, resumed;
    char error[SK_TLS_ERRLEN], version[32], cipher[64], alpn[64];
    struct sk_buf got;
    const char *data; /* sent from on_open, in chunks as it drains */
    size_t len, sent;
    bool shutdown_after; /* sk_conn_shutdown() once data is queued */
    bool shut;
    bool keep_on_eof; /* else closed at the server's end of stream */
};

static struct sk_loop *cloop;
static struct sk_timer cdeadline;
static bool ctimed_out, in_connect;
static struct client clients[MAX_CLIENTS];

#define CHUNK (64 * 1024)

static void client_pump(struct client *cl)
{
    while (cl->sent < cl->len &&
           sk_conn_pending(cl->c) < sk_conn_output_max(cl->c)) {
        size_t n = cl->len - cl->sent < CHUNK ? cl->len - cl->sent : CHUNK;
        assert_int_equal(sk_conn_write(cl->c, cl->data + cl->sent, n), 0);
        cl->sent += n;
    }
    if (cl->sent == cl->len && cl->shutdown_after && !cl->shut) {
        cl->shut = true;
        sk_conn_shutdown(cl->c);
        cl->write_after_shutdown = sk_conn_write(cl->c, "x", 1);
    }
}

static void copy_or_null(char *out, size_t size, const char *s)
{
    snprintf(out, size, "%s", s != NULL ? s : "(null)");
}

static int client_open(struct sk_conn *c)
{
    struct client *cl = sk_conn_data(c);

    cl->opens++;
    copy_or_null(cl->version, sizeof(cl->version), sk_conn_tls_version(c));
    copy_or_null(cl->cipher, sizeof(cl->cipher), sk_conn_tls_cipher(c));
    copy_or_null(cl->alpn, sizeof(cl->alpn),
                 record_alpn ? sk_conn_tls_alpn(c) : "(not asked)");
    cl->resumed = sk_conn_tls_resumed(c);
    client_pump(cl);
    sk_loop_stop(cloop);
    return 0;
}

static void client_read(struct sk_conn *c, const char *data, size_t len)
{
    struct client *cl = sk_conn_data(c);

    assert_int_equal(sk_buf_append(&cl->got, data, len), 0);
    sk_loop_stop(cloop);
}

static void client_drain(struct sk_conn *c)
{
    struct client *cl = sk_conn_data(c);

    cl->drains++;
    client_pump(cl);
}

static void client_eof(struct sk_conn *c)
{
    struct client *cl = sk_conn_data(c);

    cl->eofs++;
    if (!cl->keep_on_eof)
        sk_conn_close(c);
    sk_loop_stop(cloop);
}

static void client_close(struct sk_conn *c, int status)
{
    struct client *cl = sk_conn_data(c);

    cl->closes++;
    cl->status = status;
    cl->closed_in_connect = in_connect;
    snprintf(cl->error, sizeof(cl->error), "%s", sk_conn_error(c));
    cl->c = NULL;
    sk_loop_stop(cloop);
}

static const struct sk_handler client_handler = {
    .on_open = client_open,
    .on_read = client_read,
    .on_eof = client_eof,
    .on_drain = client_drain,
    .on_close = client_close,
};

static void on_client_deadline(struct sk_timer *t)
{
    (void)t;
    ctimed_out = true;
    sk_loop_stop(cloop);
}

static int tls_setup(void **state)
{
    int err = setup(state);

    if (err != 0)
        return err;
    memset(&tseen, 0, sizeof(tseen));
    memset(clients, 0, sizeof(clients));
    ctimed_out = false;
    record_alpn = false;
    nowned = 0;
    if (sk_loop_new(&cloop) != 0)
        return -1;
    sk_timer_init(&cdeadline, on_client_deadline);
    return 0;
}

static int tls_teardown(void **state)
{
    sk_timer_stop(&cdeadline);
    sk_loop_free(cloop); /* closes the clients left, on_close and all */
    cloop = NULL;
    for (int i = 0; i < MAX_CLIENTS; i++)
        sk_buf_release(&clients[i].got);
    for (int i = 0; i < nowned; i++)
        sk_tls_free(owned[i]);
    nowned = 0;
    return teardown(state);
}

/* Client i, reset, with data to send. */
static struct client *client_at(int i, const void *data, size_t len)
{
    struct client *cl = &clients[i];

    sk_buf_release(&cl->got);
    memset(cl, 0, sizeof(*cl));
    cl->data = data;
    cl->len = len;
    return cl;
}

/* sk_conn_connect() of cl to the endpoint text fmt ("$" expanded) with
 * tls (NULL for plaintext); returns its code. */
static int client_start(struct client *cl, struct sk_tls *tls,
                        unsigned timeout_ms, const char *fmt, ...)
{
    char raw[TEXT_MAX], text[TEXT_MAX];
    struct sk_conn_options o = {.handler = &client_handler,
                                .data = cl,
                                .tls = tls,
                                .timeout_ms = timeout_ms};
    static struct sk_endpoint_options opts;
    struct sk_endpoint ep;
    va_list ap;
    int rc;

    va_start(ap, fmt);
    vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    expand(text, sizeof(text), "%s", raw);
    parse_text(text, &ep, &opts);
    in_connect = true;
    rc = sk_conn_connect(cloop, &ep, &o, &cl->c);
    in_connect = false;
    return rc;
}

/* Runs the client loop until done(cl) or CLIENT_WAIT_MS have passed. */
static void client_run_until(struct client *cl, bool (*done)(struct client *),
                             const char *what)
{
    ctimed_out = false;
    sk_timer_start(cloop, &cdeadline, CLIENT_WAIT_MS, 0);
    while (!done(cl) && !ctimed_out)
        assert_int_equal(sk_loop_run(cloop), 0);
    sk_timer_stop(&cdeadline);
    if (!done(cl))
        fail_msg("client: no %s after %d ms (opens %d, closes %d, got %zu)",
                 what, CLIENT_WAIT_MS, cl->opens, cl->closes, cl->got.len);
}

static bool is_closed(struct client *cl)
{
    return cl->closes > 0;
}

static bool is_open(struct client *cl)
{
    return cl->opens > 0 || cl->closes > 0;
}

static bool got_all(struct client *cl)
{
    return cl->got.len >= cl->len || cl->closes > 0;
}

static void client_wait_closed(struct client *cl)
{
    client_run_until(cl, is_closed, "on_close");
}

/* Connects, sends msg, requires it echoed, closes: a working handshake. */
static void expect_tls_echo(struct client *cl, struct sk_tls *tls,
                            const char *msg, uint16_t port, const char *opts)
{
    client_at((int)(cl - clients), msg, strlen(msg));
    assert_int_equal(
        client_start(cl, tls, 0, "tls://127.0.0.1:%u%s", port, opts), 0);
    client_run_until(cl, got_all, "echo");
    if (cl->closes > 0)
        fail_msg("closed with %d (%s) before the echo", cl->status, cl->error);
    assert_int_equal(cl->got.len, strlen(msg));
    assert_memory_equal(sk_buf_head(&cl->got), msg, strlen(msg));
    sk_conn_close(cl->c);
    client_wait_closed(cl);
    assert_int_equal(cl->status, 0);
}

/* Connects and requires the handshake to fail with error; on_open never
 * runs. */
static void expect_tls_failure(struct client *cl, struct sk_tls *tls,
                               uint16_t port, const char *opts,
                               const char *error)
{
    client_at((int)(cl - clients), "ping", 4);
    assert_int_equal(
        client_start(cl, tls, 0, "tls://127.0.0.1:%u%s", port, opts), 0);
    client_run_until(cl, is_open, "on_open or on_close");
    if (cl->opens > 0)
        fail_msg("opened (%s, resumed: %s), want \"%s\"", cl->version,
                 cl->resumed ? "yes" : "no", error);
    if (cl->status >= 0)
        fail_msg("want a failed handshake, on_close(%d)", cl->status);
    assert_string_equal(cl->error, error);
}

/* Bytes of a test stream: not periodic in any power of two. */
static char *pattern(size_t len, unsigned seed)
{
    char *p = malloc(len);

    assert_non_null(p);
    for (size_t i = 0; i < len; i++)
        p[i] = (char)((i * 7 + seed + i / 251) % 253);
    return p;
}

static void copy_file(const char *from, const char *to)
{
    char buf[4096];
    int in = open(from, O_RDONLY | O_CLOEXEC), out;
    ssize_t n;

    assert_true(in >= 0);
    out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(out >= 0);
    while ((n = read(in, buf, sizeof(buf))) > 0)
        assert_int_equal(write(out, buf, (size_t)n), n);
    close(in);
    close(out);
}

/* A socket bound to 127.0.0.1 (listening if listening): *port gets its
 * port. One that listens and never accepts completes connects and never
 * answers. */
static int bind_loopback(bool listening, uint16_t *port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    if (listening)
        assert_int_equal(listen(fd, 8), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    *port = ntohs(sin.sin_port);
    return fd;
}

static int hold_port_listening(uint16_t *port)
{
    return bind_loopback(true, port);
}

/* A port of 127.0.0.1 nobody listens on (bound, then closed). */
static uint16_t closed_port(void)
{
    uint16_t port;

    close(bind_loopback(false, &port));
    return port;
}

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

#endif
