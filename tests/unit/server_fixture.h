/* server_fixture.h -- the in-process server of the unit tests of the
 * server framework: a test handler records what it saw, sk_server_run()
 * runs in a thread, and the test talks to it with plain blocking sockets.
 * Included by the test files that need it; every function is static.
 *
 * Bounds: client sockets time out after CLIENT_TIMEOUT_S, waits for the
 * handler's callbacks after WAIT_S, and an alarm() kills the whole run if a
 * test hangs anyway (a join that never returns). */
#ifndef SOCKIT_TEST_SERVER_FIXTURE_H
#define SOCKIT_TEST_SERVER_FIXTURE_H

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

#include "backends.h"

/* Not every test file uses every helper. */
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-variable"

#define CLIENT_TIMEOUT_S 5
#define WAIT_S 5
#define ALARM_S 30
#define MAX_CLOSES 16

/* Below the length a write goes straight to the socket at: it all queues. */
#define FLOOD_CHUNK (4 * 1024)
/* As much as a connection may queue with SMALL_OUTPUT_MAX: the limit plus
 * one read (see sk_conn_write()). */
#define FLOOD_TOTAL (128 * 1024)
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

/* The test f on a server of n (1 or 2) worker threads, named for both,
 * made by the fixture's setup and teardown or by others (set, tear). */
/* clang-format off */
#define WITH_SETUP_THREADS(f, n, set, tear) \
    {#f " threads=" #n, f, set, tear, &threads_##n}
/* clang-format on */
#define WITH_THREADS(f, n) WITH_SETUP_THREADS(f, n, setup, teardown)

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

/* The backend of the servers made where the config leaves it unset: that
 * of run_on_each_backend() (backends.h) while it runs, else io_uring when
 * SOCKIT_BACKEND says so (make unit-uring). */
static enum sk_backend fixture_backend_now(void)
{
    const char *env = getenv("SOCKIT_BACKEND");

    if (test_backend != SK_BACKEND_DEFAULT)
        return test_backend;
    return env != NULL && strcmp(env, "io_uring") == 0 ? SK_BACKEND_IO_URING
                                                       : SK_BACKEND_DEFAULT;
}

static void server_new(struct fixture *f, const struct sk_handler *h,
                       struct sk_server_config cfg)
{
    if (cfg.backend == SK_BACKEND_DEFAULT)
        cfg.backend = fixture_backend_now();
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

#endif
