/* messages.c -- unit tests of message boundaries (unixpacket:, AF_UNIX
 * SOCK_SEQPACKET) where sockit moves messages itself: sk_pair (pair.c),
 * which the relay joins connections with, and the services' message mode
 * on the in-process server of server_fixture.h. */
#include "server_fixture.h"

#include <sys/socket.h>

#include "services/services.h"

#define STAMP_HEAD (CTIME_LEN + 3) /* "[DATE] " */

/* ------------------------------------------------------------- sk_pair */

/* Two socket pairs joined by sk_pair on a loop of its own thread; the
 * test talks on the outer ends, blocking with a timeout. */
struct pair_run {
    struct sk_loop *loop;
    struct sk_pair *pair;
    pthread_t thread;
    int outer[2]; /* [0]: behind the pair's a, [1]: behind its b */
    int status;   /* given to done, read after the join */
    bool done;
};

static void on_pair_done(struct sk_pair *pair, int status, void *data)
{
    struct pair_run *r = data;

    r->status = status;
    r->done = true;
    sk_loop_stop(r->loop);
}

static void *run_loop(void *arg)
{
    struct pair_run *r = arg;

    sk_loop_run(r->loop);
    return NULL;
}

/* An outer end: blocking again, with timeouts both ways. */
static int outer_end(int fd)
{
    struct timeval tv = {.tv_sec = CLIENT_TIMEOUT_S};

    assert_int_equal(fcntl(fd, F_SETFL, 0), 0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)),
                     0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)),
                     0);
    return fd;
}

/* Joins a socket of type_a to one of type_b; the loop runs once it is. */
static void pair_start(struct pair_run *r, int type_a, int type_b)
{
    int a[2], b[2];

    alarm(ALARM_S);
    assert_int_equal(socketpair(AF_UNIX, type_a | SOCK_NONBLOCK, 0, a), 0);
    assert_int_equal(socketpair(AF_UNIX, type_b | SOCK_NONBLOCK, 0, b), 0);
    r->outer[0] = outer_end(a[0]);
    r->outer[1] = outer_end(b[1]);
    assert_int_equal(sk_loop_new(&r->loop), 0);
    assert_int_equal(
        sk_pair_start(r->loop, a[1], b[0], 0, on_pair_done, r, &r->pair), 0);
    assert_false(sk_pair_uses_splice(r->pair));
    assert_int_equal(pthread_create(&r->thread, NULL, run_loop, r), 0);
}

/* Waits for the pair to end by itself; returns done's status. */
static int pair_join(struct pair_run *r)
{
    pthread_join(r->thread, NULL);
    assert_true(r->done);
    sk_loop_free(r->loop);
    close(r->outer[0]);
    close(r->outer[1]);
    alarm(0);
    return r->status;
}

/* Message i of a test: its size and bytes. */
static const size_t sizes[] = {1, 1000, SK_MESSAGE_MAX, 7, SK_MESSAGE_MAX - 1};
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

static void fill_message(char *buf, size_t i)
{
    for (size_t k = 0; k < sizes[i]; k++)
        buf[k] = (char)(i * 31 + k % 253);
}

static void send_message(int fd, const char *buf, size_t len)
{
    assert_int_equal(send(fd, buf, len, MSG_NOSIGNAL), (ssize_t)len);
}

/* The next message on fd must be exactly want[0..len). */
static void expect_message(int fd, const char *want, size_t len)
{
    static char got[2 * SK_MESSAGE_MAX];
    ssize_t n = recv(fd, got, sizeof(got), 0);

    if (n < 0)
        fail_msg("no message of %zu bytes: %s", len, strerror(errno));
    assert_int_equal(n, (ssize_t)len);
    assert_memory_equal(got, want, len);
}

/* Every message sent before any is read, from one outer end to the
 * other: each comes out whole and alone. */
static void expect_messages_pass(struct pair_run *r, int from)
{
    static char buf[SK_MESSAGE_MAX];

    for (size_t i = 0; i < NSIZES; i++) {
        fill_message(buf, i);
        send_message(r->outer[from], buf, sizes[i]);
    }
    for (size_t i = 0; i < NSIZES; i++) {
        fill_message(buf, i);
        expect_message(r->outer[1 - from], buf, sizes[i]);
    }
}

static void test_pair_keeps_seqpacket_messages_both_ways(void **state)
{
    struct pair_run r = {0};

    pair_start(&r, SOCK_SEQPACKET, SOCK_SEQPACKET);
    expect_messages_pass(&r, 0);
    expect_messages_pass(&r, 1);
    /* Half-closes are passed on; both make the end. */
    assert_int_equal(shutdown(r.outer[0], SHUT_WR), 0);
    expect_eof(r.outer[1]);
    expect_messages_pass(&r, 1);
    assert_int_equal(shutdown(r.outer[1], SHUT_WR), 0);
    expect_eof(r.outer[0]);
    assert_int_equal(pair_join(&r), 0);
}

static void test_pair_ends_on_a_message_over_the_limit(void **state)
{
    static char big[SK_MESSAGE_MAX + 1];
    struct pair_run r = {0};

    pair_start(&r, SOCK_SEQPACKET, SOCK_SEQPACKET);
    send_message(r.outer[0], "before", 6);
    send_message(r.outer[0], big, sizeof(big));
    expect_message(r.outer[1], "before", 6);
    expect_eof(r.outer[1]);
    assert_int_equal(pair_join(&r), -EMSGSIZE);
}

/* To a byte stream a message is its bytes; from one, each read is a
 * message of at most SK_MESSAGE_MAX bytes, the bytes in order. */
static void test_pair_between_seqpacket_and_stream(void **state)
{
    static char stream[2 * SK_MESSAGE_MAX + 100], got[2 * SK_MESSAGE_MAX];
    struct pair_run r = {0};
    size_t at = 0;
    char joined[4];

    pair_start(&r, SOCK_SEQPACKET, SOCK_STREAM);
    send_message(r.outer[0], "ab", 2);
    send_message(r.outer[0], "cd", 2);
    recv_exact(r.outer[1], joined, sizeof(joined));
    assert_memory_equal(joined, "abcd", 4);
    for (size_t i = 0; i < sizeof(stream); i++)
        stream[i] = (char)(i % 251);
    send_all(r.outer[1], stream, sizeof(stream));
    while (at < sizeof(stream)) {
        ssize_t n = recv(r.outer[0], got, sizeof(got), 0);
        assert_true(n > 0 && n <= SK_MESSAGE_MAX);
        assert_true(at + (size_t)n <= sizeof(stream));
        assert_memory_equal(got, stream + at, (size_t)n);
        at += (size_t)n;
    }
    assert_int_equal(shutdown(r.outer[1], SHUT_WR), 0);
    expect_eof(r.outer[0]);
    assert_int_equal(shutdown(r.outer[0], SHUT_WR), 0);
    expect_eof(r.outer[1]);
    assert_int_equal(pair_join(&r), 0);
}

/* ------------------------------------------------------------ the cap */

static size_t flood_pending;
static int flood_writes;

/* Writes 1-byte messages until one is refused, or far past any cap. */
static int flood_open(struct sk_conn *c)
{
    struct fixture *f = sk_server_data(sk_conn_server(c));

    pthread_mutex_lock(&f->lock);
    for (flood_writes = 0; flood_writes < 1000000; flood_writes++)
        if (sk_conn_write(c, "x", 1) < 0)
            break;
    flood_pending = sk_conn_pending(c);
    f->seen.opens++;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
    return 0;
}

/* The length queued with each message counts against the output cap: a
 * queue that passed the cap by those 4 bytes took every later write. */
static void test_message_queue_keeps_its_cap(void **state)
{
    static const struct sk_handler flood = {.on_open = flood_open};
    struct fixture *f = *state;
    struct sk_server_config cfg = {.handler = &flood, .data = f};
    size_t cap = 2 * SK_OUTPUT_MAX; /* the limit plus the larger of it
                                       and one 64 KiB read */
    char text[160];
    int fd;

    assert_int_equal(sk_server_new(&f->srv, &cfg), 0);
    snprintf(text, sizeof(text), "unixpacket:%s", f->path);
    assert_int_equal(server_listen(f, text, NULL), 0);
    server_start(f);
    fd = connect_listener(f, 0);
    wait_for(f, &f->seen.opens, 1, "opens");
    pthread_mutex_lock(&f->lock);
    assert_true(flood_writes < 1000000);
    assert_true(flood_pending <= cap);
    assert_int_equal(flood_pending, (size_t)flood_writes * 5);
    pthread_mutex_unlock(&f->lock);
    close(fd);
    stop_and_free(f);
}

/* ------------------------------------------------------------ services */

/* Serves svc on a unixpacket: endpoint in the fixture's directory. */
static void serve_service(struct fixture *f, struct service_opts *opts,
                          const struct service *svc)
{
    struct sk_server_config cfg = {
        .handler = svc->handler, .data = opts, .threads = f->threads};
    char text[160];

    opts->max_line = 65536;
    if (svc->setup != NULL)
        assert_int_equal(svc->setup(opts), 0);
    assert_int_equal(sk_server_new(&f->srv, &cfg), 0);
    if (svc->single_worker)
        assert_int_equal(sk_server_set_single_worker(f->srv), 0);
    snprintf(text, sizeof(text), "unixpacket:%s", f->path);
    assert_int_equal(server_listen(f, text, NULL), 0);
    server_start(f);
}

static void unserve(struct fixture *f, struct service_opts *opts,
                    const struct service *svc)
{
    stop_and_free(f);
    if (svc->teardown != NULL)
        svc->teardown(opts);
}

/* The next message on fd, which must be "[DATE] " and body. */
static void expect_stamped(int fd, const char *body, size_t len)
{
    char got[256];
    ssize_t n = recv(fd, got, sizeof(got), 0);

    assert_true(len + STAMP_HEAD < sizeof(got));
    assert_int_equal(n, (ssize_t)(STAMP_HEAD + len));
    assert_int_equal(got[0], '[');
    assert_memory_equal(got + 1 + CTIME_LEN, "] ", 2);
    assert_memory_equal(got + STAMP_HEAD, body, len);
}

static void test_timestamp_answers_each_message_whole(void **state)
{
    struct fixture *f = *state;
    struct service_opts opts = {0};
    int fd;

    serve_service(f, &opts, &service_timestamp);
    fd = connect_listener(f, 0);
    send_message(fd, "a\nb", 3);
    send_message(fd, "c", 1);
    send_message(fd, "\r\n", 2);
    expect_stamped(fd, "a\nb", 3);
    expect_stamped(fd, "c", 1);
    expect_stamped(fd, "\r\n", 2);
    finish_client(fd);
    unserve(f, &opts, &service_timestamp);
}

static void test_echo_sends_each_message_back_whole(void **state)
{
    static char buf[SK_MESSAGE_MAX];
    struct fixture *f = *state;
    struct service_opts opts = {0};
    int fd;

    serve_service(f, &opts, &service_echo);
    fd = connect_listener(f, 0);
    for (size_t i = 0; i < NSIZES; i++) {
        fill_message(buf, i);
        send_message(fd, buf, sizes[i]);
    }
    for (size_t i = 0; i < NSIZES; i++) {
        fill_message(buf, i);
        expect_message(fd, buf, sizes[i]);
    }
    finish_client(fd);
    unserve(f, &opts, &service_echo);
}

static void test_chargen_sends_a_line_per_message(void **state)
{
    struct fixture *f = *state;
    struct service_opts opts = {0};
    char line[CHARGEN_LINE];
    int fd;

    serve_service(f, &opts, &service_chargen);
    fd = connect_listener(f, 0);
    for (size_t i = 0; i < 200; i++)
        send_message(fd, "?", 1);
    for (size_t i = 0; i < 200; i++) {
        chargen_fill(line, sizeof(line), i * CHARGEN_LINE);
        expect_message(fd, line, sizeof(line));
    }
    finish_client(fd);
    unserve(f, &opts, &service_chargen);
}

static void test_chat_message_is_lines_each_sent_alone(void **state)
{
    struct fixture *f = *state;
    struct service_opts opts = {0};
    int a, b;

    serve_service(f, &opts, &service_chat);
    a = connect_listener(f, 0);
    b = connect_listener(f, 0);
    expect_message(a, "* unix#2 joined", 15);
    send_message(b, "x\ny\r\n", 5);
    expect_message(a, "[unix#2] x", 10);
    expect_message(a, "[unix#2] y", 10);
    send_message(b, "z", 1);
    expect_message(a, "[unix#2] z", 10);
    close(b);
    expect_message(a, "* unix#2 left", 13);
    finish_client(a);
    unserve(f, &opts, &service_chat);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pair_keeps_seqpacket_messages_both_ways),
        cmocka_unit_test(test_pair_ends_on_a_message_over_the_limit),
        cmocka_unit_test(test_pair_between_seqpacket_and_stream),
        WITH_THREADS(test_message_queue_keeps_its_cap, 1),
        WITH_THREADS(test_timestamp_answers_each_message_whole, 1),
        WITH_THREADS(test_echo_sends_each_message_back_whole, 1),
        WITH_THREADS(test_chargen_sends_a_line_per_message, 1),
        WITH_THREADS(test_chat_message_is_lines_each_sent_alone, 1),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
