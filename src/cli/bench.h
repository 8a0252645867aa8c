/* bench.h -- the parts of `sockit bench` shared by bench.c (the clients)
 * and bench_cmd.c (options, threads, the report). */
#ifndef SOCKIT_BENCH_H
#define SOCKIT_BENCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <sockit.h>

#include "histogram.h"

#define BENCH_PIPELINE_MAX 1024
#define BENCH_CONNECT_TIMEOUT_MS 5000
/* A datagram request without a reply after this long is lost. */
#define BENCH_DGRAM_LOSS_MS 1000

struct bench_opts {
    struct sk_endpoint ep;
    unsigned conns;
    unsigned duration_ms;
    uint64_t count; /* 0: run for duration_ms */
    size_t size;
    unsigned pipeline;
    unsigned threads;
    bool json;
    bool churn;
    bool resume;     /* --resume: TLS sessions resumed */
    bool keep_going; /* --keep-going: churn on past failed requests */
};

struct bench {
    struct bench_opts opts;
    bool dgram;
    struct sk_addr addrs[SK_CONNECT_ADDRS];
    size_t naddrs;
    char *tmpl;            /* the request template, opts.size bytes */
    atomic_bool stop;      /* issue no more requests */
    atomic_bool abort;     /* stop waiting for replies */
    struct sk_tls *tls;    /* for an endpoint with tls */
    atomic_bool tls_noted; /* tls_version and tls_cipher written */
    char tls_version[32], tls_cipher[64];
};

struct gen;

/* One connection or datagram socket. */
struct client {
    struct sk_io io;
    struct gen *g;
    int fd;
    char *out; /* pipeline requests, built from the template */
    size_t out_off, out_len;
    char *rx; /* a reply cut by a read */
    size_t rx_len;
    uint64_t *stamps; /* send time of each request in flight */
    uint64_t sent, received, last_reply;
    unsigned inflight;
    struct sk_connector cn;
    struct sk_conn *conn; /* TLS: the library's connection */
    uint64_t conn_first;  /* TLS: the first request sent on it */
    bool connecting, finished;
};

/* One generator thread and its share of the clients. While it runs, the
 * supervising thread reads only the atomics (`ended` and the counters);
 * the rest is the generator's own, read by the supervisor after the join. */
struct gen {
    struct bench *b;
    pthread_t thread;
    struct sk_loop *loop;
    struct client *clients;
    unsigned nclients, active;
    uint64_t quota, issued;
    char *rbuf;
    size_t rbuf_size;
    struct sk_timer tick;
    struct histogram hist;
    int first_error;
    char error_text[SK_TLS_ERRLEN]; /* TLS: words for first_error */
    atomic_bool ended;              /* released after end_ns is set */
    uint64_t end_ns;                /* when its last client ended */
    atomic_uint_fast64_t done, errors, bytes, resumed;
};

/* bench.c */
uint64_t bench_now_ns(void);
void bench_fail(struct client *cl, int err);
bool bench_may_issue(const struct gen *g);
/* Stamps the requests up to the pipeline depth into cl->out and counts
 * them in flight; returns their bytes. */
size_t bench_fill(struct client *cl);
/* Checks stream bytes against the requests in flight. */
int bench_client_consume(struct client *cl, const char *p, size_t len);
int bench_client_start(struct client *cl, int fd);
/* Closes the client and counts it out; the loop stops with the last. */
void bench_client_end(struct client *cl);
void bench_churn_connect(struct client *cl);
int bench_dgram_read(struct client *cl);
void bench_dgram_expire(struct client *cl, uint64_t now);

/* bench_tls.c: connects cl over TLS and runs its requests there. */
int bench_tls_open(struct client *cl);

#endif
