/* pair_copy.c -- sk_pair moving bytes, on each backend: small reads copied
 * through the loop's buffer, large ones spliced through a pipe lent by the
 * loop's pool. Exact bytes both ways, small, large and mixed; half-closes; a
 * peer that stops reading; a reset; no pipe held by an idle pair; the pool
 * bounded. The pairs run on a loop of its own thread; the test talks on
 * the outer ends, non-blocking, with poll(2) and a timeout. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sockit.h>

#include "backends.h"

#define WAIT_MS 5000 /* poll without progress this long: the test fails */
#define ALARM_S 60
#define NPAIRS_MAX (SK_PAIR_PIPES + 8)
#define MIB (1024 * 1024)

/* One pair: outer[0] is behind its a, outer[1] behind its b. sent/got:
 * bytes of each direction so far (0: outer[0] to outer[1]). */
struct joined {
    struct sk_pair *pair;
    int outer[2];
    int inner[2]; /* the pair's a and b, until it has started */
    int start_err;
    uint64_t sent[2], got[2];
    uint64_t bytes[2]; /* sk_pair_bytes() as the pair ended */
    atomic_int status;
    atomic_bool done;
};

struct run {
    struct sk_loop *loop;
    pthread_t thread;
    atomic_bool started;
    struct joined j[NPAIRS_MAX];
    int n;
};

static void on_done(struct sk_pair *pair, int status, void *data)
{
    struct joined *j = data;

    j->bytes[0] = sk_pair_bytes(pair, 0);
    j->bytes[1] = sk_pair_bytes(pair, 1);
    atomic_store(&j->status, status);
    atomic_store(&j->done, true);
}

static void *run_loop(void *arg)
{
    sk_loop_run(((struct run *)arg)->loop);
    return NULL;
}

/* Byte k of direction d: a pattern that a lost, doubled or reordered
 * byte breaks. */
static unsigned char pattern(int d, uint64_t k)
{
    return (unsigned char)(k * 131 + (k >> 11) * 7 + (uint64_t)d * 101);
}

/* Descriptors of this process now. */
static int count_fds(void)
{
    DIR *dir = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;

    assert_non_null(dir);
    while ((e = readdir(dir)) != NULL)
        n += e->d_name[0] != '.';
    closedir(dir);
    return n - 1; /* the directory's own */
}

static void nonblocking(int fd)
{
    assert_int_equal(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
}

/* Joins two UNIX socket pairs (or, with tcp_a, a TCP connection over
 * loopback on the a side) by a pair on r's loop. */
static void join(struct run *r, bool tcp_a)
{
    struct joined *j = &r->j[r->n++];
    int a[2], b[2];

    if (tcp_a) {
        struct sockaddr_in sin = {.sin_family = AF_INET,
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(sin);
        int l = socket(AF_INET, SOCK_STREAM, 0);
        assert_int_equal(bind(l, (struct sockaddr *)&sin, len), 0);
        assert_int_equal(listen(l, 1), 0);
        assert_int_equal(getsockname(l, (struct sockaddr *)&sin, &len), 0);
        a[0] = socket(AF_INET, SOCK_STREAM, 0);
        assert_int_equal(connect(a[0], (struct sockaddr *)&sin, len), 0);
        a[1] = accept(l, NULL, NULL);
        assert_true(a[1] >= 0);
        close(l);
    } else {
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, a), 0);
    }
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, b), 0);
    nonblocking(a[1]);
    nonblocking(b[0]);
    nonblocking(a[0]);
    nonblocking(b[1]);
    j->outer[0] = a[0];
    j->outer[1] = b[1];
    j->inner[0] = a[1];
    j->inner[1] = b[0];
}

/* Starts the pairs of r, on the loop's thread (an io_uring loop has one
 * submitter); the test thread checks how each start went. */
static void start_pairs(void *arg)
{
    struct run *r = arg;

    for (int i = 0; i < r->n; i++) {
        struct joined *j = &r->j[i];
        j->start_err = sk_pair_start(r->loop, j->inner[0], j->inner[1], 0,
                                     on_done, j, &j->pair);
    }
    atomic_store(&r->started, true);
}

/* n pairs on a new loop, which runs on its own thread from then on. */
static void run_start(struct run *r, int n, bool tcp_a)
{
    alarm(ALARM_S);
    memset(r, 0, sizeof(*r));
    assert_int_equal(sk_loop_new_backend(&r->loop, test_backend, NULL), 0);
    for (int i = 0; i < n; i++)
        join(r, tcp_a);
    assert_int_equal(pthread_create(&r->thread, NULL, run_loop, r), 0);
    assert_int_equal(sk_loop_post(r->loop, start_pairs, r), 0);
    for (int i = 0; i < WAIT_MS && !atomic_load(&r->started); i++)
        usleep(1000);
    assert_true(atomic_load(&r->started));
    for (int i = 0; i < n; i++)
        assert_int_equal(r->j[i].start_err, 0);
}

static void abort_pair(void *arg)
{
    sk_pair_abort(arg);
}

static void stop_loop(void *arg)
{
    sk_loop_stop(arg);
}

/* Aborts the pairs still going (on the loop's thread), stops the loop and
 * closes the outer ends. */
static void run_end(struct run *r)
{
    for (int i = 0; i < r->n; i++)
        if (!atomic_load(&r->j[i].done))
            assert_int_equal(sk_loop_post(r->loop, abort_pair, r->j[i].pair),
                             0);
    assert_int_equal(sk_loop_post(r->loop, stop_loop, r->loop), 0);
    pthread_join(r->thread, NULL);
    sk_loop_free(r->loop);
    for (int i = 0; i < r->n; i++) {
        close(r->j[i].outer[0]);
        close(r->j[i].outer[1]);
    }
    alarm(0);
}

/* Sends what is left of want[d] bytes of direction d; returns whether
 * there is more to send. */
static bool send_some(struct joined *j, int d, uint64_t want)
{
    static unsigned char buf[256 * 1024];
    uint64_t left = want - j->sent[d];
    size_t len = left < sizeof(buf) ? (size_t)left : sizeof(buf);
    ssize_t n;

    for (size_t k = 0; k < len; k++)
        buf[k] = pattern(d, j->sent[d] + k);
    n = send(j->outer[d], buf, len, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN)
        fail_msg("send: %s", strerror(errno));
    j->sent[d] += n > 0 ? (uint64_t)n : 0;
    return j->sent[d] < want;
}

/* Reads what has come of direction d, checking every byte; returns the
 * count read, 0 at the end of the stream, -1 when nothing is there. */
static ssize_t recv_some(struct joined *j, int d)
{
    static unsigned char buf[256 * 1024];
    ssize_t n = recv(j->outer[1 - d], buf, sizeof(buf), 0);

    if (n < 0 && errno != EAGAIN)
        fail_msg("recv: %s", strerror(errno));
    for (ssize_t k = 0; k < n; k++)
        if (buf[k] != pattern(d, j->got[d] + (uint64_t)k))
            fail_msg("direction %d: byte %llu differs", d,
                     (unsigned long long)(j->got[d] + (uint64_t)k));
    j->got[d] += n > 0 ? (uint64_t)n : 0;
    return n;
}

/* Moves len[0] more bytes from outer[0] to outer[1] and len[1] more the
 * other way, at the same time; each arrives exactly. */
static void move(struct joined *j, uint64_t len0, uint64_t len1)
{
    uint64_t want[2] = {j->sent[0] + len0, j->sent[1] + len1};

    while (j->got[0] < want[0] || j->got[1] < want[1]) {
        struct pollfd p[2];
        for (int s = 0; s < 2; s++) {
            p[s].fd = j->outer[s];
            p[s].events = (j->sent[s] < want[s] ? POLLOUT : 0) |
                          (j->got[1 - s] < want[1 - s] ? POLLIN : 0);
        }
        if (poll(p, 2, WAIT_MS) <= 0)
            fail_msg("no progress: %llu/%llu and %llu/%llu bytes",
                     (unsigned long long)j->got[0], (unsigned long long)want[0],
                     (unsigned long long)j->got[1],
                     (unsigned long long)want[1]);
        for (int d = 0; d < 2; d++) {
            if (j->sent[d] < want[d])
                send_some(j, d, want[d]);
            if (j->got[d] < want[d] && recv_some(j, d) == 0)
                fail_msg("direction %d ended early", d);
        }
    }
}

/* Waits for direction d's end of stream at outer[1 - d]. */
static void expect_eof(struct joined *j, int d)
{
    struct pollfd p = {.fd = j->outer[1 - d], .events = POLLIN};

    assert_int_equal(poll(&p, 1, WAIT_MS), 1);
    assert_int_equal(recv_some(j, d), 0);
}

/* Waits until the pair has ended; returns done's status. */
static int wait_done(struct joined *j)
{
    for (int i = 0; i < WAIT_MS && !atomic_load(&j->done); i++)
        usleep(1000);
    assert_true(atomic_load(&j->done));
    return atomic_load(&j->status);
}

/* Both outer ends shut down in turn: each half-close is passed on, the
 * other direction still flows after it, and the pair ends with 0. */
static void close_both_ways(struct joined *j)
{
    assert_int_equal(shutdown(j->outer[0], SHUT_WR), 0);
    expect_eof(j, 0);
    move(j, 0, 1000);
    assert_int_equal(shutdown(j->outer[1], SHUT_WR), 0);
    expect_eof(j, 1);
    assert_int_equal(wait_done(j), 0);
    assert_int_equal(j->bytes[0], j->got[0]);
    assert_int_equal(j->bytes[1], j->got[1]);
}

/* ------------------------------------------------------------- tests */

/* Small messages back and forth, as requests and replies. */
static void test_small_messages_exact_both_ways(void **state)
{
    static const uint64_t sizes[] = {1, 64, 7, 1000, 64, 4095, 2};
    struct run r;

    (void)state;
    run_start(&r, 1, false);
    for (int round = 0; round < 50; round++)
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            move(&r.j[0], sizes[i], 0);
            move(&r.j[0], 0, sizes[i]);
        }
    close_both_ways(&r.j[0]);
    run_end(&r);
}

/* 8 MiB each way at once: spliced, every byte in order. */
static void test_large_transfer_exact_both_ways(void **state)
{
    struct run r;

    (void)state;
    run_start(&r, 1, false);
    move(&r.j[0], 8 * MIB, 8 * MIB);
    close_both_ways(&r.j[0]);
    run_end(&r);
}

/* Small and large in turn, each way and both at once: each switch
 * between copy and splice keeps every byte and their order. */
static void test_mix_switches_copy_and_splice(void **state)
{
    static const uint64_t sizes[] = {64,     3 * MIB, 1,     16384,   16383,
                                     600000, 10,      16385, 2 * MIB, 5};
    const size_t n = sizeof(sizes) / sizeof(sizes[0]);
    struct run r;

    (void)state;
    run_start(&r, 1, true);
    for (int round = 0; round < 3; round++)
        for (size_t i = 0; i < n; i++) {
            move(&r.j[0], sizes[i], 0);
            move(&r.j[0], 0, sizes[(i + 3) % n]);
            move(&r.j[0], sizes[i], sizes[(i + 5) % n]);
        }
    close_both_ways(&r.j[0]);
    run_end(&r);
}

/* b shuts down first, a goes on sending after: the mirror of the
 * half-close close_both_ways() checks. */
static void test_half_close_from_b(void **state)
{
    struct run r;
    struct joined *j = &r.j[0];

    (void)state;
    run_start(&r, 1, false);
    move(j, 100, 2 * MIB);
    assert_int_equal(shutdown(j->outer[1], SHUT_WR), 0);
    expect_eof(j, 1);
    move(j, 3 * MIB, 0);
    move(j, 64, 0);
    assert_int_equal(shutdown(j->outer[0], SHUT_WR), 0);
    expect_eof(j, 0);
    assert_int_equal(wait_done(j), 0);
    run_end(&r);
}

/* Sends direction 0 until the pair stops taking more (nobody reads b):
 * returns what was taken. */
static uint64_t send_until_stalled(struct joined *j, uint64_t limit)
{
    struct pollfd p = {.fd = j->outer[0], .events = POLLOUT};

    while (send_some(j, 0, limit) && poll(&p, 1, 200) == 1)
        ;
    return j->sent[0];
}

static double cpu_seconds(void)
{
    struct rusage u;

    getrusage(RUSAGE_SELF, &u);
    return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

/* Nobody reads b: a's reading pauses (what is taken is bounded, and the
 * loop does not spin meanwhile); once b reads, everything comes, exact. */
static void test_peer_not_reading_pauses_the_other_side(void **state)
{
    struct run r;
    struct joined *j = &r.j[0];
    double cpu;

    (void)state;
    run_start(&r, 1, false);
    move(j, 64, 64); /* copying first */
    uint64_t taken = send_until_stalled(j, 64 * MIB) - j->got[0];
    assert_true(taken < 16 * MIB);
    cpu = cpu_seconds();
    usleep(300 * 1000);
    assert_true(cpu_seconds() - cpu < 0.1); /* no busy loop */
    move(j, 64 * MIB - j->sent[0], 0);      /* the rest, all of it read */
    move(j, 1, 1);
    close_both_ways(j);
    run_end(&r);
}

/* Reads direction 0 at outer[1] until its end of stream. */
static void drain_to_eof(struct joined *j)
{
    for (int i = 0; i < 100000 && recv_some(j, 0) != 0; i++) {
        struct pollfd p = {.fd = j->outer[1], .events = POLLIN};
        assert_int_equal(poll(&p, 1, WAIT_MS), 1);
    }
}

/* b has shut down and a's reading is paused (nobody reads b) when a's
 * peer closes: a hang-up that the poller reports whatever is asked. The
 * loop does not spin on it, and once b reads, all of a's bytes come,
 * then the end, and the pair ends with 0. */
static void test_hangup_while_paused_does_not_spin(void **state)
{
    struct run r;
    struct joined *j = &r.j[0];
    double cpu;

    (void)state;
    run_start(&r, 1, false);
    move(j, 64, 64);
    assert_int_equal(shutdown(j->outer[1], SHUT_WR), 0);
    expect_eof(j, 1);
    send_until_stalled(j, 64 * MIB);
    close(j->outer[0]);
    j->outer[0] = -1;
    cpu = cpu_seconds();
    usleep(300 * 1000);
    assert_true(cpu_seconds() - cpu < 0.1);
    drain_to_eof(j);
    assert_int_equal(j->got[0], j->sent[0]);
    assert_int_equal(wait_done(j), 0);
    run_end(&r);
}

/* a resets its TCP connection in the middle of a large transfer: the
 * pair ends with -ECONNRESET, and what b got is an exact prefix. */
static void test_reset_mid_transfer_ends_with_econnreset(void **state)
{
    struct linger now = {.l_onoff = 1, .l_linger = 0};
    struct run r;
    struct joined *j = &r.j[0];

    (void)state;
    run_start(&r, 1, true);
    move(j, 1 * MIB, 64);
    send_until_stalled(j, 8 * MIB);
    assert_int_equal(
        setsockopt(j->outer[0], SOL_SOCKET, SO_LINGER, &now, sizeof(now)), 0);
    close(j->outer[0]);
    j->outer[0] = -1;
    drain_to_eof(j);
    assert_int_equal(wait_done(j), -ECONNRESET);
    assert_true(j->got[0] >= 1 * MIB);
    run_end(&r);
}

/* Pairs that have moved small messages, and one that has moved a large
 * transfer, hold no pipe once idle; once all have ended, the loop holds
 * none either. */
static void test_idle_pairs_hold_no_pipe(void **state)
{
    struct run r;
    int before, sockets = 4 * 8;

    (void)state;
    memset(&r, 0, sizeof(r));
    assert_int_equal(sk_loop_new_backend(&r.loop, test_backend, NULL), 0);
    before = count_fds();
    sk_loop_free(r.loop);
    run_start(&r, 8, false);
    for (int i = 0; i < r.n; i++)
        move(&r.j[i], 64, 64);
    assert_int_equal(count_fds(), before + sockets);
    move(&r.j[0], 4 * MIB, 4 * MIB);
    /* The pool may keep the pipes given back: at most SK_PAIR_PIPES. */
    assert_true(count_fds() <= before + sockets + 2 * SK_PAIR_PIPES);
    for (int i = 0; i < r.n; i++)
        close_both_ways(&r.j[i]);
    for (int i = 0; i < r.n; i++) {
        close(r.j[i].outer[0]);
        close(r.j[i].outer[1]);
        r.j[i].outer[0] = r.j[i].outer[1] = -1;
    }
    assert_int_equal(count_fds(), before);
    run_end(&r);
}

/* More pairs splicing at once than the pool has pipes, none read: the
 * pipes held stay within SK_PAIR_PIPES, the pairs beyond copy, and once
 * read every pair's bytes come exact. */
static void test_pool_bounded(void **state)
{
    struct run r;
    int before, sockets = 4 * NPAIRS_MAX, held;

    (void)state;
    memset(&r, 0, sizeof(r));
    assert_int_equal(sk_loop_new_backend(&r.loop, test_backend, NULL), 0);
    before = count_fds();
    sk_loop_free(r.loop);
    run_start(&r, NPAIRS_MAX, false);
    for (int i = 0; i < r.n; i++)
        send_until_stalled(&r.j[i], 4 * MIB);
    held = count_fds() - before - sockets;
    assert_true(held > 0); /* some pairs splice */
    assert_true(held <= 2 * SK_PAIR_PIPES);
    for (int i = 0; i < r.n; i++) {
        move(&r.j[i], 4 * MIB - r.j[i].sent[0], 0);
        close_both_ways(&r.j[i]);
    }
    run_end(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_messages_exact_both_ways),
        cmocka_unit_test(test_large_transfer_exact_both_ways),
        cmocka_unit_test(test_mix_switches_copy_and_splice),
        cmocka_unit_test(test_half_close_from_b),
        cmocka_unit_test(test_peer_not_reading_pauses_the_other_side),
        cmocka_unit_test(test_hangup_while_paused_does_not_spin),
        cmocka_unit_test(test_reset_mid_transfer_ends_with_econnreset),
        cmocka_unit_test(test_idle_pairs_hold_no_pipe),
        cmocka_unit_test(test_pool_bounded),
    };

    return RUN_ON_EACH_BACKEND(tests);
}
