/* contract.c -- unit tests of the promises sockit.h makes about names and
 * threads: peer names escaped so that a peer cannot choose what they say,
 * UNIX peer credentials, unnamed datagram senders, and sk_loop_post(). */
#include "server_fixture.h"

#include <sys/socket.h>
#include <sys/un.h>

/* ------------------------------------------------------------- escaping */

static void expect_format(const char *path, const char *want)
{
    struct sk_endpoint ep = {.scheme = SK_UNIX};
    char text[SK_ENDPOINT_STRLEN];

    snprintf(ep.path, sizeof(ep.path), "%s", path);
    assert_true(sk_endpoint_format(&ep, text, sizeof(text)) > 0);
    assert_string_equal(text, want);
}

static void test_format_escapes_what_is_not_printable(void **state)
{
    expect_format("/tmp/a\nb", "unix:/tmp/a\\x0ab");
    expect_format("@x\r\x7f\xff", "unix:@x\\x0d\\x7f\\xff");
    expect_format("/tmp/a,b\\c", "unix:/tmp/a\\,b\\\\c");
    expect_format("/tmp/plain.sock", "unix:/tmp/plain.sock");
}

static void expect_round_trip(const char *text, const char *path)
{
    struct sk_endpoint ep, again;
    char canon[SK_ENDPOINT_STRLEN];
    const char *why = NULL;

    assert_int_equal(sk_endpoint_parse(&ep, text, &why), 0);
    assert_string_equal(ep.path, path);
    assert_true(sk_endpoint_format(&ep, canon, sizeof(canon)) > 0);
    assert_int_equal(sk_endpoint_parse(&again, canon, &why), 0);
    assert_string_equal(again.path, path);
}

static void test_parse_decodes_escapes(void **state)
{
    expect_round_trip("unix:/tmp/a\\x0Ab", "/tmp/a\nb");
    expect_round_trip("unixgram:@n\\,m\\\\", "@n,m\\");
    expect_round_trip("unix:/tmp/\\xc3\\xa9", "/tmp/\xc3\xa9");
}

static void expect_bad(const char *text, int err, const char *want_why)
{
    struct sk_endpoint ep;
    const char *why = NULL;

    assert_int_equal(sk_endpoint_parse(&ep, text, &why), err);
    assert_non_null(why);
    assert_string_equal(why, want_why);
}

static void test_parse_refuses_bad_escapes(void **state)
{
    const char *bad = "bad escape in path (write \\\\ \\, or \\xNN)";
    char longest[160];

    expect_bad("unix:/tmp/a\\q", -EINVAL, bad);
    expect_bad("unix:/tmp/a\\x0", -EINVAL, bad);
    expect_bad("unix:/tmp/a\\", -EINVAL, bad);
    expect_bad("unix:/tmp/a\\x00", -EINVAL,
               "a NUL byte in a path (only an abstract name may hold one)");
    /* The limit is on the bytes the path holds, not its escaped text. */
    snprintf(longest, sizeof(longest), "unix:/%0106d\\x41", 0);
    expect_bad(longest, -ENAMETOOLONG,
               "path too long for a UNIX socket (max 107 bytes)");
    longest[strlen(longest) - 4] = '\0';
    {
        struct sk_endpoint ep;
        assert_int_equal(sk_endpoint_parse(&ep, longest, NULL), 0);
        assert_int_equal(strlen(ep.path), 107);
    }
}

/* An abstract name may hold NUL bytes: all of them count. */
static void test_abstract_name_with_nul_bytes_round_trips(void **state)
{
    struct sk_endpoint ep;
    struct sk_addr addr;
    char text[SK_ENDPOINT_STRLEN];

    assert_int_equal(sk_endpoint_parse(&ep, "unix:@a\\x00b", NULL), 0);
    assert_int_equal(ep.path_len, 4);
    assert_memory_equal(ep.path, "@a\0b", 4);
    assert_true(sk_endpoint_format(&ep, text, sizeof(text)) > 0);
    assert_string_equal(text, "unix:@a\\x00b");
    assert_int_equal(sk_endpoint_resolve(&ep, true, &addr, 1), 1);
    assert_int_equal(addr.len, offsetof(struct sockaddr_un, sun_path) + 4);
    assert_memory_equal(addr.u.un.sun_path, "\0a\0b", 4);
}

/* The canonical name of a UNIX peer bound to the len bytes of name. */
static void expect_peer_name(const char *name, size_t len, const char *want)
{
    struct sk_addr addr = {0};
    struct sk_endpoint ep;
    char text[SK_ENDPOINT_STRLEN];

    addr.u.un.sun_family = AF_UNIX;
    memcpy(addr.u.un.sun_path, name, len);
    addr.len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    assert_int_equal(sk_endpoint_from_addr(&ep, SK_UNIX, &addr), 0);
    assert_true(sk_endpoint_format(&ep, text, sizeof(text)) > 0);
    assert_string_equal(text, want);
}

/* A name the peer bound, holding a LF, comes out as one printable word. */
static void test_name_from_address_is_escaped(void **state)
{
    static const char name[] = "\0evil\n[tcp://1.2.3.4:5] hi";

    expect_peer_name(name, sizeof(name) - 1,
                     "unix:@evil\\x0a[tcp://1.2.3.4:5] hi");
}

/* Past a NUL byte, an abstract name goes on: "\0legit\0evil" is not
 * "@legit". */
static void test_abstract_name_with_nul_cannot_pass_for_another(void **state)
{
    static const char name[] = "\0legit\0evil";

    expect_peer_name(name, sizeof(name) - 1, "unix:@legit\\x00evil");
}

/* A file named "@fake" (relative) is not the abstract name "@fake". */
static void test_file_named_like_an_abstract_name_is_told_apart(void **state)
{
    expect_peer_name("@fake", 6, "unix:./@fake");
}

/* ---------------------------------------------------------- credentials */

static int on_open_cred(struct sk_conn *c)
{
    struct fixture *f = fixture_of_conn(c);
    struct sk_peer_cred cred = {0};
    int ret = sk_conn_peer_cred(c, &cred);

    pthread_mutex_lock(&f->lock);
    f->seen.write_errors = ret;
    f->seen.max_pending = ret == 0 ? (size_t)cred.uid : SIZE_MAX;
    f->seen.output_max = ret == 0 ? (size_t)cred.pid : SIZE_MAX;
    f->seen.opens++;
    announce(f);
    return 0;
}

static const struct sk_handler cred_handler = {
    .on_open = on_open_cred,
    .on_close = on_close_record,
};

static void test_unix_peer_credentials_are_the_kernels(void **state)
{
    struct fixture *f = *state;
    char text[160];
    struct seen s;
    int fd;

    snprintf(text, sizeof(text), "unix:%s", f->path);
    serve(f, &cred_handler, defaults, text);
    fd = connect_listener(f, 0);
    wait_for(f, &f->seen.opens, 1, "open");
    s = snapshot(f);
    assert_int_equal(s.write_errors, 0);
    assert_int_equal(s.max_pending, (size_t)getuid());
    assert_int_equal(s.output_max, (size_t)getpid());
    close(fd);
    stop_and_free(f);
}

static void test_network_peer_has_no_credentials(void **state)
{
    struct fixture *f = *state;
    int fd;

    serve(f, &cred_handler, defaults, "tcp://127.0.0.1:0");
    fd = connect_listener(f, 0);
    wait_for(f, &f->seen.opens, 1, "open");
    assert_int_equal(snapshot(f).write_errors, -EAFNOSUPPORT);
    close(fd);
    stop_and_free(f);
}

/* ------------------------------------------------ unnamed unix senders */

static void on_datagram_peer(struct sk_dgram *d, const char *data, size_t len)
{
    struct fixture *f = sk_server_data(sk_dgram_server(d));
    const struct sk_addr *peer = sk_dgram_peer(d);
    struct sk_endpoint ep;

    pthread_mutex_lock(&f->lock);
    f->seen.datagrams++;
    f->seen.unnamed = peer->u.sa.sa_family == AF_UNIX &&
                      peer->len == sizeof(sa_family_t) &&
                      sk_endpoint_from_addr(&ep, SK_UNIXGRAM, peer) == 0 &&
                      ep.path[0] == '\0';
    f->seen.unnamed_reply = sk_dgram_reply(d, data, len);
    announce(f);
}

static const struct sk_handler peer_handler = {
    .on_datagram = on_datagram_peer,
};

static void test_unnamed_unixgram_sender_is_unix_and_unnamed(void **state)
{
    struct fixture *f = *state;
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    char text[160];
    struct seen s;
    int fd;

    snprintf(text, sizeof(text), "unixgram:%s", f->path);
    serve(f, &peer_handler, defaults, text);
    assert_true(strlen(f->path) < sizeof(un.sun_path));
    memcpy(un.sun_path, f->path, strlen(f->path) + 1);
    fd = client_socket(AF_UNIX, SOCK_DGRAM);
    assert_int_equal(sendto(fd, "x", 1, 0, (struct sockaddr *)&un, sizeof(un)),
                     1);
    wait_for(f, &f->seen.datagrams, 1, "datagram");
    s = snapshot(f);
    assert_int_equal(s.unnamed, 1);
    assert_int_equal(s.unnamed_reply, -EDESTADDRREQ);
    close(fd);
    stop_and_free(f);
}

/* ------------------------------------------------------------ posting */

#define POSTS 1000

struct post_run {
    struct sk_loop *loop;
    pthread_t loop_thread;
    int next;     /* the value the next call must carry */
    int misorder; /* calls out of order */
    int off_loop; /* calls on another thread */
};

static struct post_run run;
static int post_values[POSTS];

static void on_post(void *arg)
{
    int v = *(int *)arg;

    if (!pthread_equal(pthread_self(), run.loop_thread))
        run.off_loop++;
    if (v != run.next)
        run.misorder++;
    run.next = v + 1;
    if (run.next == POSTS)
        sk_loop_stop(run.loop);
}

static void *poster(void *arg)
{
    for (int i = 0; i < POSTS; i++) {
        post_values[i] = i;
        if (sk_loop_post(run.loop, on_post, &post_values[i]) != 0)
            break;
    }
    return NULL;
}

static void test_loop_post_runs_in_order_on_the_loop_thread(void **state)
{
    pthread_t t;

    run = (struct post_run){0};
    assert_int_equal(sk_loop_new(&run.loop), 0);
    run.loop_thread = pthread_self();
    assert_int_equal(pthread_create(&t, NULL, poster, NULL), 0);
    assert_int_equal(sk_loop_run(run.loop), 0);
    pthread_join(t, NULL);
    assert_int_equal(run.next, POSTS);
    assert_int_equal(run.misorder, 0);
    assert_int_equal(run.off_loop, 0);
    /* Posted and never run: freed with the loop (LeakSanitizer checks). */
    assert_int_equal(sk_loop_post(run.loop, on_post, &post_values[0]), 0);
    sk_loop_free(run.loop);
}

/* clang-format off */
#define ONE(f) {#f, f, setup, teardown, &threads_1}
/* clang-format on */

int main(void)
{
    const struct CMUnitTest tests[] = {
        ONE(test_format_escapes_what_is_not_printable),
        ONE(test_parse_decodes_escapes),
        ONE(test_parse_refuses_bad_escapes),
        ONE(test_name_from_address_is_escaped),
        ONE(test_abstract_name_with_nul_bytes_round_trips),
        ONE(test_abstract_name_with_nul_cannot_pass_for_another),
        ONE(test_file_named_like_an_abstract_name_is_told_apart),
        ONE(test_unix_peer_credentials_are_the_kernels),
        ONE(test_network_peer_has_no_credentials),
        ONE(test_unnamed_unixgram_sender_is_unix_and_unnamed),
        ONE(test_loop_post_runs_in_order_on_the_loop_thread),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
