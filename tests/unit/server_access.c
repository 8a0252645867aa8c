/* server_access.c -- unit tests of who a server serves (src/conn_proxy.c,
 * conn_life.c, dgram.c, worker.c): access rules on TCP and UNIX clients
 * and on datagrams, with proxy= on the header's address; max_per_source,
 * across workers and per header source; max_conns; and the counters of
 * each refusal (sk_server_get_stats()). Every test runs with threads = 1
 * and threads = 2. */
#include "admission_fixture.h"

/* Serves the admission handler, logging to log_wake, on each listener
 * text given ("%s" standing for the fixture's socket path). */
static void serve_on(struct fixture *f, struct sk_server_config cfg,
                     const char *first, ...)
{
    char text[256];
    va_list ap;

    cfg.log = log_wake;
    server_new(f, &admit_handler, cfg);
    va_start(ap, first);
    for (const char *t = first; t != NULL; t = va_arg(ap, const char *)) {
        snprintf(text, sizeof(text), t, f->path);
        assert_int_equal(server_listen(f, text, NULL), 0);
    }
    va_end(ap);
    server_start(f);
}

/* Stops the server and forgets what the handler saw, for the next. */
static void next_server(struct fixture *f)
{
    stop_and_free(f);
    memset(&f->seen, 0, sizeof(f->seen));
    memset(&aseen, 0, sizeof(aseen));
}

/* A client of listener i served: opened as the opens-th, echoed. */
static int served(struct fixture *f, size_t i, int opens)
{
    int fd = connect_listener(f, i);

    expect_echo(fd, "served");
    assert_int_equal(snapshot(f).opens, opens);
    return fd;
}

/* ------------------------------------------------------------- rules */

/* A client of 127.0.0.1 denied is closed at once, unopened, counted;
 * one of ::1 is served. Refusals are not counted as accepted. */
static void test_access_deny_closes_client_before_open(void **state)
{
    struct fixture *f = *state;
    struct sk_server_config cfg = {.access = rules("-127.0.0.1", NULL)};
    int fd;

    serve_on(f, cfg, "tcp://127.0.0.1:0", "tcp://[::1]:0", NULL);
    for (int i = 0; i < 3; i++) {
        close_refused(connect_listener(f, 0));
        WAIT_STAT(f, refused_access, (uint64_t)i + 1);
    }
    fd = served(f, 1, 1);
    assert_int_equal(strncmp(snapshot(f).peer, "tcp://[::1]:", 12), 0);
    close_refused(connect_listener(f, 0));
    expect_echo(fd, "served still");
    finish_client(fd);
    expect_statuses_zero(f, 1);
    assert_int_equal(snapshot(f).opens, 1);
    expect_stats(f, 1, 4, 0, 0, 0, 0, 0);
    stop_and_free(f);
}

/* Whether a client of 127.0.0.1 and one of ::1 are served, by rules. */
struct ip_case {
    const char *rules[3];
    bool v4, v6;
};

static void test_access_allow_and_deny_lists_on_tcp(void **state)
{
    struct fixture *f = *state;
    static const struct ip_case cases[] = {
        {{"-127.0.0.1"}, false, true},
        {{"+::1"}, false, true},
        {{"+127.0.0.0/8"}, true, false},
        {{"+127.0.0.0/8", "-127.0.0.1/32"}, false, false},
        {{"+127.0.0.0/8", "+::1/128"}, true, true},
        {{"-::/0"}, true, false}, /* IPv6 rules leave IPv4 clients */
        {{"+::ffff:127.0.0.0/104"}, true, false},
        {{"-10.0.0.0/8", "-::2"}, true, true},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct ip_case *c = &cases[i];
        struct sk_server_config cfg = {
            .access = rules(c->rules[0], c->rules[1], c->rules[2], NULL)};
        int opens = 0, refused = 0;
        print_message("rules %s %s\n", c->rules[0],
                      c->rules[1] ? c->rules[1] : "");
        serve_on(f, cfg, "tcp://127.0.0.1:0", "tcp://[::1]:0", NULL);
        for (size_t l = 0; l < 2; l++) {
            if (l == 0 ? c->v4 : c->v6) {
                finish_client(served(f, l, ++opens));
            } else {
                close_refused(connect_listener(f, l));
                WAIT_STAT(f, refused_access, (uint64_t)++refused);
            }
        }
        expect_statuses_zero(f, opens);
        expect_stats(f, (uint64_t)opens, (uint64_t)refused, 0, 0, 0, 0, 0);
        next_server(f);
    }
}

/* uid: and gid: rules name UNIX clients by their credentials; an allow
 * list of IP blocks alone refuses them (sk_access_permits()). */
static void test_access_uid_and_gid_rules_on_unix(void **state)
{
    struct fixture *f = *state;
    char deny_uid[32], allow_uid[32], allow_other[32], allow_gid[32];
    char deny_gid[32];
    const struct {
        const char *rules[2];
        bool served;
    } cases[] = {
        {{deny_uid}, false},    {{allow_uid}, true},
        {{allow_other}, false}, {{allow_gid}, true},
        {{deny_gid}, false},    {{"+127.0.0.1"}, false},
        {{"-127.0.0.1"}, true}, {{allow_other, allow_gid}, true},
    };

    snprintf(deny_uid, sizeof(deny_uid), "-uid:%u", (unsigned)getuid());
    snprintf(allow_uid, sizeof(allow_uid), "+uid:%u", (unsigned)getuid());
    snprintf(allow_other, sizeof(allow_other), "+uid:%u",
             (unsigned)getuid() + 4242);
    snprintf(allow_gid, sizeof(allow_gid), "+gid:%u", (unsigned)getgid());
    snprintf(deny_gid, sizeof(deny_gid), "-gid:%u", (unsigned)getgid());
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *const *r = cases[i].rules;
        struct sk_server_config cfg = {.access = rules(r[0], r[1], NULL)};
        print_message("rules %s %s\n", r[0], r[1] ? r[1] : "");
        serve_on(f, cfg, "unix:%s", NULL);
        if (cases[i].served) {
            finish_client(served(f, 0, 1));
            expect_statuses_zero(f, 1);
            expect_stats(f, 1, 0, 0, 0, 0, 0, 0);
        } else {
            close_refused(connect_listener(f, 0));
            WAIT_STAT(f, refused_access, 1);
            expect_stats(f, 0, 1, 0, 0, 0, 0, 0);
            assert_int_equal(snapshot(f).opens, 0);
        }
        next_server(f);
    }
}

/* Datagrams of a denied sender never reach on_datagram and are counted
 * one by one; an allowed sender is answered. */
static void test_access_denied_datagrams_are_counted_not_delivered(void **state)
{
    struct fixture *f = *state;
    struct sk_server_config cfg = {.access = rules("-127.0.0.1", NULL)};
    struct sk_endpoint v4, v6;
    char buf[16];
    int denied, allowed;

    serve_on(f, cfg, "udp://127.0.0.1:0", "udp://[::1]:0", NULL);
    v4 = listener(f, 0);
    v6 = listener(f, 1);
    denied = client_connect(&v4);
    allowed = client_connect(&v6);
    for (int i = 0; i < 7; i++)
        assert_int_equal(send(denied, "nope", 4, 0), 4);
    WAIT_STAT(f, dgrams_refused, 7);
    expect_datagram_echo(allowed, "yes");
    expect_datagram_echo(allowed, "yes again");
    assert_int_equal(recv(denied, buf, sizeof(buf), MSG_DONTWAIT), -1);
    assert_int_equal(errno, EAGAIN);
    assert_int_equal(snapshot(f).datagrams, 2);
    expect_stats(f, 0, 0, 0, 0, 0, 0, 7);
    close(denied);
    close(allowed);
    stop_and_free(f);
}

/* ------------------------------------------------------------ proxy= */

/* A v1 header from src, port port (a static buffer). */
static const char *v1_from(const char *src, unsigned port)
{
    static char text[SK_PROXY_V1_MAX + 1];

    snprintf(text, sizeof(text), "PROXY TCP4 %s 10.0.0.1 %u 443\r\n", src,
             port);
    return text;
}

/* A connection to listener 0 that sends header first. */
static int connect_with(struct fixture *f, const char *header)
{
    int fd = connect_listener(f, 0);

    send_all(fd, header, strlen(header));
    return fd;
}

/* With proxy=, the rules apply to the address the header gives (the
 * socket's own for UNKNOWN), once it came. */
static void test_access_rules_apply_to_the_proxy_header(void **state)
{
    struct fixture *f = *state;
    static const char denied[] = "PROXY TCP4 203.0.113.7 10.0.0.1 4242 443\r\n";
    static const char allowed[] = "PROXY TCP4 198.51.100.1 10.0.0.1 1 443\r\n";
    static const char unknown[] = "PROXY UNKNOWN\r\n";
    struct sk_server_config cfg = {.access = rules("-203.0.113.0/24", NULL)};
    int fd;

    serve_on(f, cfg, "tcp://127.0.0.1:0,proxy=v1", NULL);
    fd = connect_listener(f, 0);
    send_all(fd, denied, strlen(denied));
    close_refused(fd);
    WAIT_STAT(f, refused_access, 1);
    assert_int_equal(snapshot(f).opens, 0);
    fd = connect_listener(f, 0);
    send_all(fd, allowed, strlen(allowed));
    expect_echo(fd, "served");
    assert_string_equal(snapshot(f).peer, "tcp://198.51.100.1:1");
    finish_client(fd);
    expect_statuses_zero(f, 1);
    assert_int_equal(stats_of(f).refused_access, 1);
    next_server(f);
    /* The proxy's own address is not what is checked, unless UNKNOWN. */
    cfg.access = rules("-127.0.0.1", NULL);
    serve_on(f, cfg, "tcp://127.0.0.1:0,proxy=v1", NULL);
    fd = connect_listener(f, 0);
    send_all(fd, allowed, strlen(allowed));
    expect_echo(fd, "through a denied proxy");
    finish_client(fd);
    fd = connect_listener(f, 0);
    send_all(fd, unknown, strlen(unknown));
    close_refused(fd);
    WAIT_STAT(f, refused_access, 1);
    expect_statuses_zero(f, 1);
    assert_int_equal(snapshot(f).opens, 1);
    stop_and_free(f);
}

/* On a UNIX listener, uid: rules see the credentials only when the
 * header keeps the socket's peer (LOCAL). */
static void test_access_uid_rules_with_proxy_header(void **state)
{
    struct fixture *f = *state;
    char allow[32];
    struct sk_server_config cfg;
    unsigned char h[64];
    int fd;

    snprintf(allow, sizeof(allow), "+uid:%u", (unsigned)getuid());
    cfg = (struct sk_server_config){.access = rules(allow, NULL)};
    serve_on(f, cfg, "unix:%s,proxy=v2", NULL);
    fd = connect_listener(f, 0);
    send_all(fd, h, v2_local(h));
    expect_echo(fd, "local");
    finish_client(fd);
    fd = connect_listener(f, 0);
    send_all(fd, h, v2_inet(h, "203.0.113.7", "198.51.100.9", 4242, 443));
    close_refused(fd);
    WAIT_STAT(f, refused_access, 1);
    expect_statuses_zero(f, 1);
    assert_int_equal(snapshot(f).opens, 1);
    stop_and_free(f);
}

/* Behind a v2 header of UNIX addresses, the socket's credentials are the
 * proxy's: uid: rules must not take them for the client's. */
static void test_access_uid_rules_ignore_proxy_credentials(void **state)
{
    struct fixture *f = *state;
    char allow[32];
    struct sk_server_config cfg;
    unsigned char h[256];
    int fd;

    snprintf(allow, sizeof(allow), "+uid:%u", (unsigned)getuid());
    cfg = (struct sk_server_config){.access = rules(allow, NULL)};
    serve_on(f, cfg, "unix:%s,proxy=v2", NULL);
    fd = connect_listener(f, 0);
    send_all(fd, h, v2_unix(h, "/run/client.sock", "/run/app.sock"));
    send_all(fd, "?", 1); /* echoed if served */
    close_refused(fd);
    WAIT_STAT(f, refused_access, 1);
    assert_int_equal(snapshot(f).opens, 0);
    stop_and_free(f);
}

/* A client refused after its header counts as a plain listener's does:
 * as refused_access, not as accepted. */
static void test_access_refused_after_header_is_not_accepted(void **state)
{
    struct fixture *f = *state;
    static const char denied[] = "PROXY TCP4 203.0.113.7 10.0.0.1 4242 443\r\n";
    struct sk_server_config cfg = {.access = rules("-203.0.113.0/24", NULL),
                                   .max_per_source = 1};
    int fd, kept;

    serve_on(f, cfg, "tcp://127.0.0.1:0,proxy=v1", NULL);
    fd = connect_listener(f, 0);
    send_all(fd, denied, strlen(denied));
    close_refused(fd);
    WAIT_STAT(f, refused_access, 1);
    kept = connect_with(f, v1_from("198.51.100.1", 1));
    expect_echo(kept, "one");
    close_refused(connect_with(f, v1_from("198.51.100.1", 2)));
    WAIT_STAT(f, refused_source, 1);
    expect_stats(f, 1, 1, 1, 0, 0, 0, 0);
    finish_client(kept);
    stop_and_free(f);
}

/* -------------------------------------------------------------- limits */

/* max_per_source = 2: the third connection from 127.0.0.1 is closed at
 * once, whichever worker takes it; once one closes, a new one is served
 * (with one worker: with two, the other may take the new one between the
 * on_close and the release of the slot, which come in that order). */
static void test_max_per_source_2_refuses_the_third(void **state)
{
    struct fixture *f = *state;
    struct sk_server_config cfg = {.max_per_source = 2};
    int a, b, c;

    serve_on(f, cfg, "tcp://127.0.0.1:0", NULL);
    a = served(f, 0, 1);
    b = served(f, 0, 2);
    for (int i = 0; i < 4; i++) {
        close_refused(connect_listener(f, 0));
        WAIT_STAT(f, refused_source, (uint64_t)i + 1);
    }
    expect_echo(a, "a still");
    expect_echo(b, "b still");
    finish_client(a);
    wait_for(f, &f->seen.closes, 1, "closes");
    if (f->threads == 1) {
        c = served(f, 0, 3);
        close_refused(connect_listener(f, 0));
        WAIT_STAT(f, refused_source, 5);
        finish_client(c);
    }
    finish_client(b);
    expect_statuses_zero(f, f->threads == 1 ? 3 : 2);
    if (f->threads == 1)
        expect_stats(f, 3, 0, 5, 0, 0, 0, 0);
    else
        expect_stats(f, 2, 0, 4, 0, 0, 0, 0);
    stop_and_free(f);
}

/* A UNIX client's source is its uid. */
static void test_max_per_source_counts_unix_peers_by_uid(void **state)
{
    struct fixture *f = *state;
    struct sk_server_config cfg = {.max_per_source = 2};
    int a, b;

    serve_on(f, cfg, "unix:%s", NULL);
    a = served(f, 0, 1);
    b = served(f, 0, 2);
    close_refused(connect_listener(f, 0));
    WAIT_STAT(f, refused_source, 1);
    finish_client(a);
    finish_client(b);
    expect_statuses_zero(f, 2);
    expect_stats(f, 2, 0, 1, 0, 0, 0, 0);
    stop_and_free(f);
}

/* With proxy=, each header source has its own count (LOCAL: the
 * socket's). */
static void test_max_per_source_counts_proxy_header_sources(void **state)
{
    struct fixture *f = *state;
    static const char *const sources[] = {"203.0.113.7", "198.51.100.1"};
    struct sk_server_config cfg = {.max_per_source = 2};
    int fds[6], n = 0;

    serve_on(f, cfg, "tcp://127.0.0.1:0,proxy=any", NULL);
    for (int s = 0; s < 2; s++) {
        for (unsigned port = 1; port <= 2; port++) {
            fds[n] = connect_with(f, v1_from(sources[s], port));
            expect_echo(fds[n++], "served");
        }
        close_refused(connect_with(f, v1_from(sources[s], 3)));
        WAIT_STAT(f, refused_source, (uint64_t)s + 1);
    }
    for (int i = 0; i < 2; i++) {
        fds[n] = connect_with(f, "PROXY UNKNOWN\r\n");
        expect_echo(fds[n++], "served");
    }
    close_refused(connect_with(f, "PROXY UNKNOWN\r\n"));
    WAIT_STAT(f, refused_source, 3);
    assert_int_equal(snapshot(f).opens, 6);
    for (int i = 0; i < n; i++)
        finish_client(fds[i]);
    expect_statuses_zero(f, n);
    assert_int_equal(stats_of(f).refused_source, 3);
    stop_and_free(f);
}

/* Past max_conns, connections are closed at once and counted. */
static void test_max_conns_refusals_are_counted(void **state)
{
    struct fixture *f = *state;
    struct sk_server_config cfg = {.max_conns = 2};
    int a, b;

    serve_on(f, cfg, "tcp://127.0.0.1:0", NULL);
    a = served(f, 0, 1);
    b = served(f, 0, 2);
    for (int i = 0; i < 3; i++) {
        close_refused(connect_listener(f, 0));
        WAIT_STAT(f, refused_limit, (uint64_t)i + 1);
    }
    expect_echo(a, "a still");
    finish_client(a);
    finish_client(b);
    expect_statuses_zero(f, 2);
    assert_int_equal(snapshot(f).opens, 2);
    expect_stats(f, 2, 0, 0, 3, 0, 0, 0);
    stop_and_free(f);
}

/* Each test twice: with one worker and with two. */
#define BOTH(f)                                                                \
    WITH_SETUP_THREADS(f, 1, admit_setup, admit_teardown),                     \
        WITH_SETUP_THREADS(f, 2, admit_setup, admit_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_access_deny_closes_client_before_open),
        BOTH(test_access_allow_and_deny_lists_on_tcp),
        BOTH(test_access_uid_and_gid_rules_on_unix),
        BOTH(test_access_denied_datagrams_are_counted_not_delivered),
        BOTH(test_access_rules_apply_to_the_proxy_header),
        BOTH(test_access_uid_rules_with_proxy_header),
        BOTH(test_access_uid_rules_ignore_proxy_credentials),
        BOTH(test_access_refused_after_header_is_not_accepted),
        BOTH(test_max_per_source_2_refuses_the_third),
        BOTH(test_max_per_source_counts_unix_peers_by_uid),
        BOTH(test_max_per_source_counts_proxy_header_sources),
        BOTH(test_max_conns_refusals_are_counted),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
