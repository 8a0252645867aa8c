/* tls.c -- unit tests of TLS contexts and handshakes (src/tls.c,
 * conn_tls.c): sk_tls_new() and sk_tls_reload() errors, which listen calls
 * take which contexts, what a handshake reports, reloading, and clients
 * that never finish a handshake (verification, ALPN and resumption:
 * tls_verify.c). Servers run in their thread (server_fixture.h), clients
 * on a loop of the test's thread (tls_fixture.h). */
#include "tls_fixture.h"

#include <signal.h>

/* ------------------------------------------------------- contexts */

static void expect_tls_error(const char *fmt, bool listening, const char *want)
{
    char text[TEXT_MAX], err[SK_TLS_ERRLEN], expected[TEXT_MAX];

    expand(text, sizeof(text), "%s", fmt);
    expand(expected, sizeof(expected), "%s", want);
    memset(err, 'x', sizeof(err));
    if (try_tls(text, listening, err, sizeof(err)) >= 0)
        fail_msg("sk_tls_new(%s) succeeded, want \"%s\"", text, expected);
    assert_string_equal(err, expected);
}

/* As expect_tls_error(), for an error that ends with OpenSSL's words. */
static void expect_tls_error_prefix(const char *fmt, bool listening,
                                    const char *want)
{
    char text[TEXT_MAX], err[SK_TLS_ERRLEN], expected[TEXT_MAX];

    expand(text, sizeof(text), "%s", fmt);
    expand(expected, sizeof(expected), "%s", want);
    if (try_tls(text, listening, err, sizeof(err)) >= 0)
        fail_msg("sk_tls_new(%s) succeeded, want \"%s...\"", text, expected);
    if (strncmp(err, expected, strlen(expected)) != 0 ||
        err[strlen(err) - 1] != ')')
        fail_msg("err \"%s\", want \"%s...)\"", err, expected);
}

static void test_tls_new_missing_files_name_the_file(void **state)
{
    expect_tls_error("tls://:0,cert=$/missing.pem", true,
                     "cert $/missing.pem: no such file or directory");
    expect_tls_error("tls://:0,cert=$/server.pem,key=$/missing.key", true,
                     "key $/missing.key: no such file or directory");
    expect_tls_error("tls://:0,cert=$/server.pem,key=$/server.key,"
                     "ca=$/missing.pem",
                     true, "ca $/missing.pem: no such file or directory");
    expect_tls_error("tls://localhost:1,ca=$/missing.pem", false,
                     "ca $/missing.pem: no such file or directory");
    expect_tls_error("tls://localhost:1,cert=$/missing.pem,key=$/client.key",
                     false, "cert $/missing.pem: no such file or directory");
}

static void test_tls_new_key_mismatch_says_so(void **state)
{
    expect_tls_error("tls://:0,cert=$/server.pem,key=$/other.key", true,
                     "key $/other.key does not match the certificate");
    expect_tls_error("tls://:0,cert=$/server.pem,key=$/client.key", true,
                     "key $/client.key does not match the certificate");
    expect_tls_error("tls://localhost:1,cert=$/client.pem,key=$/server.key",
                     false, "key $/server.key does not match the certificate");
}

static void test_tls_new_not_pem_files_are_refused(void **state)
{
    expect_tls_error_prefix("tls://:0,cert=$/notpem.txt,key=$/server.key", true,
                            "cert $/notpem.txt: no PEM certificate (");
    expect_tls_error("tls://:0,cert=$/server.pem,key=$/notpem.txt", true,
                     "key $/notpem.txt: no PEM private key");
    expect_tls_error_prefix("tls://localhost:1,ca=$/notpem.txt", false,
                            "ca $/notpem.txt: no PEM certificate (");
    /* A directory can be opened, not read as PEM. */
    expect_tls_error_prefix("tls://:0,cert=$,key=$/server.key", true,
                            "cert $: no PEM certificate (");
}

/* key= defaults to the cert file: one with both works, one without a key
 * names it as the key. */
static void test_tls_new_key_defaults_to_cert_file(void **state)
{
    char text[TEXT_MAX], err[SK_TLS_ERRLEN];

    expand(text, sizeof(text), "tls://:0,cert=$/combined.pem");
    assert_int_equal(try_tls(text, true, err, sizeof(err)), 0);
    assert_string_equal(err, "");
    expect_tls_error("tls://:0,cert=$/server.pem", true,
                     "key $/server.pem: no PEM private key");
}

static void test_tls_new_good_contexts_leave_err_empty(void **state)
{
    char text[TEXT_MAX], err[SK_TLS_ERRLEN];

    strcpy(err, "stale");
    expand(text, sizeof(text),
           "tls://:0,cert=$/server.pem,key=$/server.key,ca=$/ca.pem,"
           "alpn=h2:http/1.1");
    assert_int_equal(try_tls(text, true, err, sizeof(err)), 0);
    assert_string_equal(err, "");
    expand(text, sizeof(text), "tls://localhost:1,ca=$/ca.pem,sni=x,alpn=h2");
    assert_int_equal(try_tls(text, false, err, sizeof(err)), 0);
    assert_int_equal(try_tls("tls://localhost:1,verify=none", false, err, 0),
                     0);
    sk_tls_free(NULL);
}

/* The error is one line "if errlen > 0": with no room (err NULL) a failure
 * is still only a code. Run in a child, as it may crash. */
static void test_tls_new_failure_without_err_buffer(void **state)
{
    char text[TEXT_MAX];
    int status;
    pid_t pid;

    expand(text, sizeof(text), "tls://:0,cert=$/missing.pem");
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* Not cmocka's handlers: they would run the other tests here. */
        const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
        for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
            signal(sigs[i], SIG_DFL);
        alarm(10);
        _exit(try_tls(text, true, NULL, 0) < 0 ? 0 : 3);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("sk_tls_new(missing cert, err NULL, errlen 0): %s %d",
                 WIFSIGNALED(status) ? "killed by signal" : "exit status",
                 WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
}

/* ------------------------------------------------- listen and connect */

static void test_listen_refuses_mismatched_tls(void **state)
{
    struct fixture *f = *state;
    struct sk_tls *server =
        make_tls("tls://127.0.0.1:0,cert=$/server.pem,key=$/server.key", true);
    struct sk_tls *client = make_tls("tls://127.0.0.1:1,ca=$/ca.pem", false);
    struct sk_endpoint tls_ep, plain_ep;

    server_new(f, &tls_echo_handler, defaults);
    parse_text("tls://127.0.0.1:0", &tls_ep, NULL);
    parse_text("tcp://127.0.0.1:0", &plain_ep, NULL);
    assert_int_equal(sk_server_listen(f->srv, &tls_ep, NULL), -EINVAL);
    assert_int_equal(sk_server_listen_tls(f->srv, &tls_ep, client, NULL),
                     -EINVAL);
    assert_int_equal(sk_server_listen_tls(f->srv, &tls_ep, NULL, NULL),
                     -EINVAL);
    assert_int_equal(sk_server_listen_tls(f->srv, &plain_ep, server, NULL),
                     -EINVAL);
    assert_int_equal(sk_server_listener_count(f->srv), 0);
    assert_int_equal(sk_server_listen_tls(f->srv, &tls_ep, server, NULL), 0);
    assert_int_equal(sk_server_listener_count(f->srv), 1);
    assert_true(listener(f, 0).tls);
}

/* ------------------------------------------------------ handshakes */

static void test_tls_handshake_reports_version_and_cipher(void **state)
{
    struct fixture *f = *state;
    struct client *cl = &clients[0];

    serve_tls(f, &tls_echo_handler, defaults, "tls://127.0.0.1:0," SERVER_CERT);
    expect_tls_echo(cl, make_tls("tls://127.0.0.1:1,ca=$/ca.pem", false),
                    "hello", port_of(f), "");
    assert_int_equal(cl->opens, 1);
    assert_string_equal(cl->version, "TLSv1.3");
    assert_string_not_equal(cl->cipher, "(null)");
    assert_true(strncmp(cl->cipher, "TLS_", 4) == 0);
    assert_false(cl->resumed);
    wait_closed(f, 1);
    assert_string_equal(tseen.version, "TLSv1.3");
    stop_and_free(f);
    assert_int_equal(snapshot(f).opens, 1);
}

/* ------------------------------------------------------------ reload */

static void put_live(struct fixture *f, const char *cert, const char *key)
{
    char from[256], to[256];

    snprintf(from, sizeof(from), "%s/%s", cert_dir, cert);
    snprintf(to, sizeof(to), "%s/live.pem", f->dir);
    copy_file(from, to);
    snprintf(from, sizeof(from), "%s/%s", cert_dir, key);
    snprintf(to, sizeof(to), "%s/live.key", f->dir);
    copy_file(from, to);
}

/* A reload that fails; err (SK_TLS_ERRLEN) gets why. */
static void expect_reload_error(struct sk_tls *tls, char *err, const char *want)
{
    if (sk_tls_reload(tls, err, SK_TLS_ERRLEN) >= 0)
        fail_msg("reload succeeded, want \"%s\"", want);
    if (strncmp(err, want, strlen(want)) != 0)
        fail_msg("reload: \"%s\", want \"%s...\"", err, want);
}

/* The client verifies localhost: the CA signed both server certificates,
 * only the first is for localhost. Sessions are resumed, so a resumption
 * across the reload would skip the new certificate. */
static void test_tls_reload_swaps_certificate_for_new_connections(void **state)
{
    struct fixture *f = *state;
    struct client *cl = &clients[0], *old = &clients[1];
    const char *opts = ",ca=$/ca.pem,sni=localhost";
    char text[TEXT_MAX], err[SK_TLS_ERRLEN], want[TEXT_MAX];
    struct sk_tls *server, *client;
    bool mismatch_ok;

    put_live(f, "server.pem", "server.key");
    snprintf(text, sizeof(text),
             "tls://127.0.0.1:0,cert=%s/live.pem,key=%s/live.key", f->dir,
             f->dir);
    server = serve_tls(f, &tls_echo_handler, defaults, text);
    snprintf(text, sizeof(text), "tls://127.0.0.1:%u%s", port_of(f), opts);
    client = make_tls(text, false);
    expect_tls_echo(cl, client, "before", port_of(f), opts);
    /* One stays open across the reloads. */
    client_at(1, "old", 3);
    old->keep_on_eof = true;
    assert_int_equal(client_start(old, client, 0, "%s", text), 0);
    client_run_until(old, got_all, "echo on the old connection");

    put_live(f, "second.pem", "second.key");
    assert_int_equal(sk_tls_reload(server, err, sizeof(err)), 0);
    expect_tls_failure(cl, client, port_of(f), opts,
                       "certificate verify failed (hostname mismatch)");

    put_live(f, "server.pem", "server.key");
    assert_int_equal(sk_tls_reload(server, err, sizeof(err)), 0);
    expect_tls_echo(cl, client, "back", port_of(f), opts);

    /* Failed reloads keep the certificate that works. */
    put_live(f, "notpem.txt", "server.key");
    snprintf(want, sizeof(want), "cert %s/live.pem: no PEM certificate (",
             f->dir);
    expect_reload_error(server, err, want);
    expect_tls_echo(cl, client, "kept", port_of(f), opts);
    put_live(f, "second.pem", "server.key");
    snprintf(text, sizeof(text), "%s/live.key", f->dir);
    unlink(text);
    snprintf(want, sizeof(want), "key %s/live.key: no such file or directory",
             f->dir);
    expect_reload_error(server, err, want);
    expect_tls_echo(cl, client, "kept", port_of(f), opts);
    put_live(f, "second.pem", "server.key");
    expect_reload_error(server, err, "");
    expect_tls_echo(cl, client, "kept", port_of(f), opts);
    snprintf(want, sizeof(want),
             "key %s/live.key does not match the certificate", f->dir);
    mismatch_ok = strcmp(err, want) == 0;

    /* The connection made before all this still works. */
    assert_int_equal(old->closes, 0);
    old->data = "old still";
    old->sent = 0;
    old->len = 9;
    sk_buf_consume(&old->got, old->got.len);
    client_pump(old);
    client_run_until(old, got_all, "echo on the old connection");
    assert_memory_equal(sk_buf_head(&old->got), "old still", 9);
    stop_and_free(f);
    if (!mismatch_ok)
        fail_msg("reload with a key that does not match: \"%s\", want "
                 "\"%s\"",
                 err, want);
}

/* A connecting context reads ca= again: a server the new CA did not sign
 * is refused, a session kept from before notwithstanding. */
static void test_tls_reload_of_client_context_rereads_ca(void **state)
{
    struct fixture *f = *state;
    struct client *cl = &clients[0];
    char text[512], from[256], to[256], err[SK_TLS_ERRLEN];
    struct sk_tls *client;

    serve_tls(f, &tls_echo_handler, defaults, "tls://127.0.0.1:0," SERVER_CERT);
    snprintf(from, sizeof(from), "%s/ca.pem", cert_dir);
    snprintf(to, sizeof(to), "%s/ca.pem", f->dir);
    copy_file(from, to);
    snprintf(text, sizeof(text), ",ca=%s", to);
    {
        char ep[TEXT_MAX];
        snprintf(ep, sizeof(ep), "tls://127.0.0.1:%u%s", port_of(f), text);
        client = make_tls(ep, false);
    }
    expect_tls_echo(cl, client, "one", port_of(f), text);
    expect_tls_echo(cl, client, "two", port_of(f), text);
    assert_true(cl->resumed);
    snprintf(from, sizeof(from), "%s/self.pem", cert_dir);
    copy_file(from, to);
    assert_int_equal(sk_tls_reload(client, err, sizeof(err)), 0);
    expect_tls_failure(cl, client, port_of(f), text,
                       "certificate verify failed (unable to get local "
                       "issuer certificate)");
    stop_and_free(f);
}

/* With handle_signals, SIGHUP reloads; a reload that fails goes to the
 * warn hook and keeps the old certificate. */
static int warns;
static char warning[512];

static void warn_capture(void *data, const char *msg)
{
    struct fixture *f = data;

    pthread_mutex_lock(&f->lock);
    warns++;
    snprintf(warning, sizeof(warning), "%s", msg);
    announce(f);
}

static void test_tls_sighup_reloads_and_warns(void **state)
{
    struct fixture *f = *state;
    struct sk_server_config cfg = {.handle_signals = true,
                                   .warn = warn_capture};
    struct client *cl = &clients[0];
    const char *opts = ",ca=$/ca.pem,sni=localhost";
    char text[TEXT_MAX], want[TEXT_MAX];
    struct sk_tls *client;
    uint64_t start;

    warns = 0;
    put_live(f, "server.pem", "server.key");
    snprintf(text, sizeof(text),
             "tls://127.0.0.1:0,cert=%s/live.pem,key=%s/live.key", f->dir,
             f->dir);
    serve_tls(f, &tls_echo_handler, cfg, text);
    snprintf(text, sizeof(text), "tls://127.0.0.1:%u%s", port_of(f), opts);
    client = make_tls(text, false);
    sk_tls_set_resume(client, false);
    expect_tls_echo(cl, client, "before", port_of(f), opts);

    put_live(f, "notpem.txt", "server.key");
    assert_int_equal(kill(getpid(), SIGHUP), 0);
    wait_for(f, &warns, 1, "warnings");
    snprintf(want, sizeof(want),
             "tls://127.0.0.1:%u: reload failed, old certificate kept: "
             "cert %s/live.pem: no PEM certificate (",
             port_of(f), f->dir);
    pthread_mutex_lock(&f->lock);
    snprintf(text, sizeof(text), "%s", warning);
    pthread_mutex_unlock(&f->lock);
    if (strncmp(text, want, strlen(want)) != 0)
        fail_msg("warned \"%s\", want \"%s...\"", text, want);
    expect_tls_echo(cl, client, "kept", port_of(f), opts);

    /* A good reload says nothing: new clients see the new certificate. */
    put_live(f, "second.pem", "second.key");
    assert_int_equal(kill(getpid(), SIGHUP), 0);
    start = now_ms();
    for (;;) {
        client_at(0, "ping", 4);
        assert_int_equal(client_start(cl, client, 0, "tls://127.0.0.1:%u%s",
                                      port_of(f), opts),
                         0);
        client_run_until(cl, got_all, "echo or close");
        if (cl->closes > 0)
            break;
        sk_conn_close(cl->c);
        client_wait_closed(cl);
        if (now_ms() - start > WAIT_S * 1000)
            fail_msg("still the old certificate %d s after SIGHUP", WAIT_S);
        usleep(20 * 1000);
    }
    assert_string_equal(cl->error,
                        "certificate verify failed (hostname mismatch)");
    stop_and_free(f);
    assert_int_equal(warns, 1);
}

/* ------------------------------------------------ clients that stall */

static void expect_closed_within(int fd, uint64_t min_ms, uint64_t max_ms)
{
    uint64_t start = now_ms(), took;
    char buf[512];
    ssize_t n;

    while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
        ;
    took = now_ms() - start;
    if (n < 0 && errno != ECONNRESET)
        fail_msg("recv: %s after %llu ms, want the end of the stream",
                 strerror(errno), (unsigned long long)took);
    if (took < min_ms || took > max_ms)
        fail_msg("closed after %llu ms, want %llu..%llu",
                 (unsigned long long)took, (unsigned long long)min_ms,
                 (unsigned long long)max_ms);
}

static void test_tls_handshake_timeout_closes_silent_client(void **state)
{
    struct fixture *f = *state;
    struct sk_server_config cfg = {.handshake_timeout_ms = 300};
    int silent, partial;

    serve_tls(f, &tls_echo_handler, cfg, "tls://127.0.0.1:0," SERVER_CERT);
    silent = connect_listener(f, 0);
    partial = connect_listener(f, 0);
    /* Half a record header: progress is no excuse. */
    send_all(partial, "\x16\x03\x01", 3);
    expect_closed_within(silent, 200, 2000);
    expect_closed_within(partial, 0, 2000);
    close(silent);
    close(partial);
    stop_and_free(f);
    assert_int_equal(snapshot(f).opens, 0);
    assert_int_equal(snapshot(f).closes, 0);
    assert_true(log_has(f, ": handshake timed out"));
}

static void test_tls_plaintext_client_is_closed_unheard(void **state)
{
    struct fixture *f = *state;
    int fd;

    serve_tls(f, &tls_echo_handler, defaults, "tls://127.0.0.1:0," SERVER_CERT);
    fd = connect_listener(f, 0);
    send_all(fd, "hello\n", 6);
    expect_closed_within(fd, 0, 2000);
    close(fd);
    stop_and_free(f);
    assert_int_equal(snapshot(f).opens, 0);
    assert_int_equal(snapshot(f).closes, 0);
    assert_true(log_has(f, "tls handshake tcp://127.0.0.1:"));
}

/* clang-format off */
#define ONE(f) {#f, f, tls_setup, tls_teardown, &threads_1}
#define BOTH(f) ONE(f), {#f " threads=2", f, tls_setup, tls_teardown, \
                         &threads_2}
/* clang-format on */

int main(void)
{
    const struct CMUnitTest tests[] = {
        ONE(test_tls_new_missing_files_name_the_file),
        ONE(test_tls_new_key_mismatch_says_so),
        ONE(test_tls_new_not_pem_files_are_refused),
        ONE(test_tls_new_key_defaults_to_cert_file),
        ONE(test_tls_new_good_contexts_leave_err_empty),
        ONE(test_tls_new_failure_without_err_buffer),
        ONE(test_listen_refuses_mismatched_tls),
        BOTH(test_tls_handshake_reports_version_and_cipher),
        ONE(test_tls_reload_swaps_certificate_for_new_connections),
        ONE(test_tls_reload_of_client_context_rereads_ca),
        ONE(test_tls_sighup_reloads_and_warns),
        BOTH(test_tls_handshake_timeout_closes_silent_client),
        ONE(test_tls_plaintext_client_is_closed_unheard),
    };

    if (getenv("SOCKIT_TEST_FILTER") != NULL) /* to run a few by name */
        cmocka_set_test_filter(getenv("SOCKIT_TEST_FILTER"));
    return cmocka_run_group_tests(tests, make_certs, remove_certs);
}
