/* bench.c -- `sockit bench ENDPOINT`: a closed-loop load generator for echo
 * services on every endpoint kind. Each connection (or datagram socket)
 * keeps --pipeline requests in flight and verifies every reply byte for
 * byte; latencies go to a high-dynamic-range histogram per thread. On a
 * message connection (unixpacket:) each request is one message and each
 * reply must be one message, whole, as on datagrams, but nothing is lost:
 * a wrong or missing reply ends the connection, as on a stream. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"

uint64_t bench_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------ messages */

/* Request k of a client: the template with k in its first 8 bytes. */
static void stamp_seq(char *msg, size_t size, uint64_t k)
{
    if (size >= 8)
        memcpy(msg, &k, 8);
}

static bool reply_ok(const struct gen *g, const char *reply, uint64_t k)
{
    size_t size = g->b->opts.size, head = size >= 8 ? 8 : 0;

    if (head > 0 && memcmp(reply, &k, 8) != 0)
        return false;
    return memcmp(reply + head, g->b->tmpl + head, size - head) == 0;
}

void bench_fail(struct client *cl, int err)
{
    struct gen *g = cl->g;

    if (g->first_error == 0)
        g->first_error = err;
    atomic_fetch_add_explicit(&g->errors, 1, memory_order_relaxed);
}

/* --------------------------------------------------------- the client */

bool bench_may_issue(const struct gen *g)
{
    return !atomic_load_explicit(&g->b->stop, memory_order_relaxed) &&
           g->issued < g->quota;
}

bool bench_client_more(const struct client *cl)
{
    return bench_may_issue(cl->g) &&
           (cl->g->b->opts.rate == 0 || cl->sent < cl->share);
}

void bench_client_end(struct client *cl)
{
    if (cl->conn != NULL)
        sk_conn_close(cl->conn); /* its on_close sees finished */
    if (cl->fd >= 0) {
        sk_io_stop(&cl->io);
        close(cl->fd);
        cl->fd = -1;
    }
    if (!cl->finished) {
        cl->finished = true;
        if (--cl->g->active == 0)
            sk_loop_stop(cl->g->loop);
    }
}

static void client_watch(struct client *cl)
{
    unsigned ev = SK_READ | (cl->out_len > 0 ? SK_WRITE : 0);

    if (sk_io_set(&cl->io, ev) < 0)
        bench_client_end(cl);
}

/* unixpacket: requests and replies go message by message. */
static bool by_message(const struct bench *b)
{
    return sk_endpoint_socktype(&b->opts.ep) == SOCK_SEQPACKET;
}

/* Writes what is queued; returns 0 or a negative errno. */
static int dgram_flush(struct client *cl);

static int client_flush(struct client *cl)
{
    ssize_t n;

    if (cl->g->b->dgram || by_message(cl->g->b))
        return dgram_flush(cl);
    while (cl->out_len > 0) {
        n = send(cl->fd, cl->out + cl->out_off, cl->out_len,
                 MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : -errno;
        atomic_fetch_add_explicit(&cl->g->bytes_up, (uint64_t)n,
                                  memory_order_relaxed);
        cl->out_off += (size_t)n;
        cl->out_len -= (size_t)n;
    }
    cl->out_off = 0;
    return 0;
}

/* Queues requests up to the pipeline depth, then flushes them together
 * (stream: one send; datagrams: one sendmmsg). With --rate, only those
 * due, each stamped with its scheduled time, late or not. */
size_t bench_fill(struct client *cl)
{
    struct gen *g = cl->g;
    size_t size = g->b->opts.size;
    unsigned depth = g->b->opts.pipeline, n = 0;
    bool rate = g->b->opts.rate > 0;
    uint64_t t = bench_now_ns();

    if (cl->inflight == 0)
        cl->last_reply = t; /* a datagram's loss counts from here */
    while (cl->inflight < depth && bench_may_issue(g) &&
           (!rate || cl->sent < cl->due)) {
        char *msg = cl->out + (size_t)n * size;
        stamp_seq(msg, size, cl->sent);
        if (rate)
            cl->stamps[cl->sent % depth] = bench_rate_time(cl, cl->sent);
        else if (!g->b->opts.churn) /* churn counts from the connect */
            cl->stamps[cl->sent % depth] = t;
        cl->sent++;
        cl->inflight++;
        g->issued++;
        n++;
    }
    if (rate && n > 0)
        g->rate_last_send = t;
    return (size_t)n * size;
}

static int client_issue(struct client *cl)
{
    if (cl->out_len == 0)
        cl->out_len = bench_fill(cl);
    return cl->out_len > 0 ? client_flush(cl) : 0;
}

/* One complete reply: verify it, record its latency. Returns false when
 * it is not the reply to the request it answers. */
static bool client_reply(struct client *cl, const char *reply)
{
    struct gen *g = cl->g;
    uint64_t t = bench_now_ns();

    if (!reply_ok(g, reply, cl->received))
        return false;
    histogram_record(
        &g->hist, (t - cl->stamps[cl->received % g->b->opts.pipeline]) / 1000);
    cl->received++;
    cl->inflight--;
    cl->last_reply = t;
    atomic_fetch_add_explicit(&g->done, 1, memory_order_relaxed);
    return true;
}

/* Splits stream bytes into replies; a reply cut by the read is kept. A
 * wrong reply is -EBADMSG: the stream cannot be trusted after it. */
int bench_client_consume(struct client *cl, const char *p, size_t len)
{
    size_t size = cl->g->b->opts.size;

    while (len > 0) {
        if (cl->rx_len == 0 && len >= size) {
            if (!client_reply(cl, p))
                return -EBADMSG;
            p += size;
            len -= size;
            continue;
        }
        size_t n = size - cl->rx_len < len ? size - cl->rx_len : len;
        memcpy(cl->rx + cl->rx_len, p, n);
        cl->rx_len += n;
        p += n;
        len -= n;
        if (cl->rx_len == size) {
            cl->rx_len = 0;
            if (!client_reply(cl, cl->rx))
                return -EBADMSG;
        }
    }
    return 0;
}

static int stream_read(struct client *cl)
{
    struct gen *g = cl->g;
    ssize_t n = recv(cl->fd, g->rbuf, g->rbuf_size, MSG_DONTWAIT);

    if (n > 0) {
        atomic_fetch_add_explicit(&g->bytes, (uint64_t)n, memory_order_relaxed);
        if ((uint64_t)n > (uint64_t)cl->inflight * g->b->opts.size)
            return -EBADMSG; /* more than was asked */
        return bench_client_consume(cl, g->rbuf, (size_t)n);
    }
    if (n == 0)
        return cl->inflight > 0 ? -ECONNRESET : -EPIPE;
    return errno == EAGAIN || errno == EINTR ? 0 : -errno;
}

/* Reads the replies waiting, each one message: a message not the size of
 * a request, or not the reply to the request it answers, is -EBADMSG. */
static int message_read(struct client *cl)
{
    struct gen *g = cl->g;
    ssize_t n;

    for (unsigned i = 0; i < g->b->opts.pipeline; i++) {
        n = recv(cl->fd, g->rbuf, g->rbuf_size, MSG_DONTWAIT | MSG_TRUNC);
        if (n < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : -errno;
        if (n == 0)
            return cl->inflight > 0 ? -ECONNRESET : -EPIPE;
        atomic_fetch_add_explicit(&g->bytes, (uint64_t)n, memory_order_relaxed);
        if ((size_t)n != g->b->opts.size || cl->inflight == 0 ||
            !client_reply(cl, g->rbuf))
            return -EBADMSG;
    }
    return 0;
}

static int client_read(struct client *cl)
{
    if (cl->g->b->dgram)
        return bench_dgram_read(cl);
    return by_message(cl->g->b) ? message_read(cl) : stream_read(cl);
}

/* After replies: churn clients reconnect, others issue more or end. With
 * --rate, requests due are sent even while others are in flight. */
static void client_next(struct client *cl)
{
    int err;

    if (cl->g->b->opts.rate > 0 && cl->inflight > 0 && cl->out_len == 0 &&
        (err = client_issue(cl)) < 0) {
        bench_fail(cl, err);
        bench_client_end(cl);
        return;
    }
    if (cl->inflight > 0 || cl->out_len > 0) {
        client_watch(cl);
        return;
    }
    if (!bench_client_more(cl)) {
        bench_client_end(cl);
        return;
    }
    if (cl->g->b->opts.churn) {
        sk_io_stop(&cl->io);
        close(cl->fd);
        cl->fd = -1;
        bench_churn_connect(cl);
        return;
    }
    err = client_issue(cl);
    if (err < 0) {
        bench_fail(cl, err);
        bench_client_end(cl);
        return;
    }
    client_watch(cl);
}

/* --keep-going: a churned request that failed is counted, and the next
 * one made on a new connection. */
static bool churn_on(struct client *cl, int err)
{
    if (!cl->g->b->opts.keep_going)
        return false;
    bench_fail(cl, err);
    cl->inflight = 0;
    cl->out_off = cl->out_len = cl->rx_len = 0;
    client_next(cl);
    return true;
}

static void on_client_io(struct sk_io *io, unsigned events)
{
    struct client *cl = io->data;
    int err = 0;

    if (events & SK_READ)
        err = client_read(cl);
    if (err == 0 && (events & SK_WRITE))
        err = client_flush(cl);
    if (err < 0 && churn_on(cl, err))
        return;
    if (err < 0) {
        if (err != -EPIPE)
            bench_fail(cl, err);
        bench_client_end(cl);
        return;
    }
    client_next(cl);
}

void bench_client_kick(struct client *cl)
{
    if (cl->finished || cl->connecting)
        return;
    if (cl->g->b->tls != NULL) {
        bench_tls_next(cl);
        return;
    }
    if (cl->fd >= 0 && cl->out_len == 0)
        client_next(cl);
}

int bench_client_start(struct client *cl, int fd)
{
    int err;

    cl->fd = fd;
    cl->io.data = cl;
    cl->last_reply = bench_now_ns();
    if (cl->g->b->opts.ep.proxy != SK_PROXY_NONE &&
        (err = sk_proxy_send(fd, (enum sk_proxy)cl->g->b->opts.ep.proxy)) < 0) {
        close(fd);
        cl->fd = -1;
        return err;
    }
    err = sk_io_start(cl->g->loop, &cl->io, fd, SK_READ, false, on_client_io);
    if (err < 0) {
        close(fd);
        cl->fd = -1;
        return err;
    }
    err = client_issue(cl);
    if (err < 0)
        return err;
    client_next(cl); /* with no request of its share left, it ends now */
    return 0;
}

static void on_churn_connected(struct sk_connector *cn, int fd)
{
    struct client *cl = cn->data;
    int err;

    cl->connecting = false;
    err = fd < 0 ? fd : bench_client_start(cl, fd);
    if (err < 0 && cl->g->b->opts.keep_going && cl->fd < 0 &&
        bench_may_issue(cl->g)) {
        bench_fail(cl, err);
        bench_churn_connect(cl);
        return;
    }
    if (err < 0) {
        bench_fail(cl, err);
        bench_client_end(cl);
    }
}

void bench_churn_connect(struct client *cl)
{
    const struct bench *b = cl->g->b;

    cl->connecting = true;
    cl->cn.data = cl;
    /* The latency of a churned request counts from the connect. */
    cl->stamps[cl->sent % b->opts.pipeline] = bench_now_ns();
    if (sk_connector_start_proto(cl->g->loop, &cl->cn, b->addrs, b->naddrs,
                                 sk_endpoint_socktype(&b->opts.ep),
                                 sk_endpoint_protocol(&b->opts.ep),
                                 BENCH_CONNECT_TIMEOUT_MS,
                                 on_churn_connected) < 0) {
        cl->connecting = false;
        bench_fail(cl, -ENOMEM);
        bench_client_end(cl);
    }
}

/* ---------------------------------------------------------- datagrams */

/* Sends the queued datagrams, or messages (out_off and out_len count whole
 * requests). A full queue at the receiver (EAGAIN) keeps the rest for
 * writability. */
static int dgram_flush(struct client *cl)
{
    struct mmsghdr msgs[BENCH_PIPELINE_MAX];
    struct iovec iov[BENCH_PIPELINE_MAX];
    size_t size = cl->g->b->opts.size;
    unsigned first = (unsigned)(cl->out_off / size);
    unsigned n = (unsigned)(cl->out_len / size), sent = 0;
    int r;

    for (unsigned i = 0; i < n; i++) {
        iov[i] = (struct iovec){cl->out + (size_t)(first + i) * size, size};
        msgs[i] =
            (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[i], .msg_iovlen = 1}};
    }
    while (sent < n) {
        r = sendmmsg(cl->fd, msgs + sent, n - sent, MSG_DONTWAIT);
        if (r < 0 && errno != EAGAIN && errno != EINTR)
            return -errno;
        if (r < 0)
            break;
        sent += (unsigned)r;
        atomic_fetch_add_explicit(&cl->g->bytes_up, (uint64_t)r * size,
                                  memory_order_relaxed);
    }
    cl->out_off = sent < n ? (size_t)(first + sent) * size : 0;
    cl->out_len = (size_t)(n - sent) * size;
    return 0;
}

int bench_dgram_read(struct client *cl)
{
    struct gen *g = cl->g;
    size_t size = g->b->opts.size;
    ssize_t n;

    for (unsigned i = 0; i < g->b->opts.pipeline; i++) {
        n = recv(cl->fd, g->rbuf, g->rbuf_size, MSG_DONTWAIT);
        if (n < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : -errno;
        atomic_fetch_add_explicit(&g->bytes, (uint64_t)n, memory_order_relaxed);
        if ((size_t)n != size || cl->inflight == 0 ||
            !client_reply(cl, g->rbuf))
            bench_fail(cl, -EBADMSG); /* a datagram stands alone: go on */
    }
    return 0;
}

/* A datagram socket with requests and no reply for a while lost them. */
void bench_dgram_expire(struct client *cl, uint64_t now)
{
    if (cl->finished || cl->inflight == 0 || cl->out_len > 0 ||
        now - cl->last_reply < BENCH_DGRAM_LOSS_MS * 1000000ull)
        return;
    while (cl->inflight > 0) {
        bench_fail(cl, -ETIMEDOUT);
        cl->inflight--;
        cl->received++;
    }
    cl->last_reply = now;
    client_next(cl);
}
