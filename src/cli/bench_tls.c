/* bench_tls.c -- bench clients over TLS: each an outbound connection of
 * the library (handshake, records, close_notify there), driven by the
 * same requests and checks as the plaintext clients. With --connect each
 * request is a new connection, so a new handshake (resumed with
 * --resume). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "cli.h"

/* The first handshake says which protocol and cipher the run measures. */
static void note_session(struct client *cl, struct sk_conn *c)
{
    struct bench *b = cl->g->b;
    bool no = false;

    if (sk_conn_tls_resumed(c))
        atomic_fetch_add_explicit(&cl->g->resumed, 1, memory_order_relaxed);
    if (!atomic_compare_exchange_strong(&b->tls_noted, &no, true))
        return;
    snprintf(b->tls_version, sizeof(b->tls_version), "%s",
             sk_conn_tls_version(c));
    snprintf(b->tls_cipher, sizeof(b->tls_cipher), "%s", sk_conn_tls_cipher(c));
}

static void handshake_over(struct client *cl);

static int on_open(struct sk_conn *c)
{
    struct client *cl = sk_conn_data(c);

    note_session(cl, c);
    handshake_over(cl);
    cl->conn_first = cl->sent;
    cl->last_reply = bench_now_ns();
    bench_tls_next(cl);
    return 0;
}

static void on_read(struct sk_conn *c, const char *data, size_t len)
{
    struct client *cl = sk_conn_data(c);
    struct gen *g = cl->g;
    int err = -EBADMSG;

    if (cl->finished)
        return;
    atomic_fetch_add_explicit(&g->bytes, (uint64_t)len, memory_order_relaxed);
    if ((uint64_t)len <= (uint64_t)cl->inflight * g->b->opts.size)
        err = bench_client_consume(cl, data, len);
    if (err < 0) {
        bench_fail(cl, err);
        sk_conn_abort(c);
        return;
    }
    bench_tls_next(cl);
}

static void on_eof(struct sk_conn *c)
{
    struct client *cl = sk_conn_data(c);

    if (cl->inflight > 0)
        bench_fail(cl, -ECONNRESET);
    sk_conn_close(c);
}

static void on_close(struct sk_conn *c, int status)
{
    struct client *cl = sk_conn_data(c);
    struct gen *g = cl->g;

    cl->conn = NULL;
    if (cl->connecting)
        handshake_over(cl); /* failed, or ended before it finished */
    if (cl->finished)
        return;
    if (status < 0 && status != -ECANCELED) {
        if (g->first_error == 0 && sk_conn_error(c)[0] != '\0')
            snprintf(g->error_text, sizeof(g->error_text), "%s",
                     sk_conn_error(c));
        bench_fail(cl, status);
        bench_client_end(cl);
        return;
    }
    if (g->b->opts.churn && bench_may_issue(g) && cl->inflight == 0)
        bench_tls_open(cl);
    else
        bench_client_end(cl);
}

static const struct sk_handler handler = {
    .on_open = on_open,
    .on_read = on_read,
    .on_eof = on_eof,
    .on_close = on_close,
};

/* After replies: issue more, or close (churn: to connect again). With
 * --rate, what is due goes out even while other requests are in flight. */
void bench_tls_next(struct client *cl)
{
    bool rate = cl->g->b->opts.rate > 0;
    size_t n;

    if (cl->conn == NULL || cl->connecting || (cl->inflight > 0 && !rate))
        return;
    if (!bench_client_more(cl) ||
        (cl->g->b->opts.churn && cl->sent > cl->conn_first)) {
        if (cl->inflight == 0)
            sk_conn_close(cl->conn);
        return;
    }
    n = bench_fill(cl);
    if (n > 0 && sk_conn_write(cl->conn, cl->out, n) < 0) {
        bench_fail(cl, -ENOBUFS);
        sk_conn_abort(cl->conn);
        return;
    }
    atomic_fetch_add_explicit(&cl->g->bytes_up, n, memory_order_relaxed);
}

/* Connects cl now; one more handshake in flight. */
static void tls_start(struct client *cl)
{
    const struct bench *b = cl->g->b;
    size_t burst = b->opts.size * b->opts.pipeline; /* one write at most */
    struct sk_conn_options o = {.handler = &handler,
                                .data = cl,
                                .tls = b->tls,
                                .timeout_ms = BENCH_CONNECT_TIMEOUT_MS,
                                .keep_reading = true,
                                .output_max =
                                    burst > SK_OUTPUT_MAX ? burst : 0};
    int err;

    /* The latency of a churned request counts from the connect. */
    if (b->opts.churn)
        cl->stamps[cl->sent % b->opts.pipeline] = bench_now_ns();
    err = sk_conn_connect(cl->g->loop, &b->opts.ep, &o, &cl->conn);
    if (err < 0) {
        cl->conn = NULL;
        bench_fail(cl, err);
        bench_client_end(cl);
        return;
    }
    cl->connecting = true;
    cl->g->handshakes++;
}

/* Starts the clients waiting, in order, while there is room. One ended
 * meanwhile is dropped; once the run stops, the rest end unopened. */
static void admit(struct gen *g)
{
    while (g->handshakes < BENCH_TLS_HANDSHAKES && g->wait_first != NULL) {
        struct client *cl = g->wait_first;
        g->wait_first = cl->wait_next;
        if (g->wait_first == NULL)
            g->wait_last = NULL;
        cl->wait_next = NULL;
        if (cl->finished)
            continue;
        if (atomic_load_explicit(&g->b->stop, memory_order_relaxed))
            bench_client_end(cl);
        else
            tls_start(cl);
    }
}

/* cl's handshake is over, done or failed: the next waiting may start. */
static void handshake_over(struct client *cl)
{
    cl->connecting = false;
    cl->g->handshakes--;
    admit(cl->g);
}

int bench_tls_open(struct client *cl)
{
    struct gen *g = cl->g;

    cl->wait_next = NULL;
    if (g->wait_last != NULL)
        g->wait_last->wait_next = cl;
    else
        g->wait_first = cl;
    g->wait_last = cl;
    admit(g);
    return 0;
}
