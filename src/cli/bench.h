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
/* TLS: handshakes one generator thread has in flight at most; the other
 * clients wait their turn, in order, before they connect, so that the
 * connect timeout runs from each one's own start. */
#define BENCH_TLS_HANDSHAKES 128
/* A datagram request without a reply after this long is lost. */
#define BENCH_DGRAM_LOSS_MS 1000
/* After the duration (or --rate's schedule), replies in flight (requests
 * late) are awaited this long. */
#define BENCH_FINISH_GRACE_MS 2000

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
    bool resume;      /* --resume: TLS sessions resumed */
    bool keep_going;  /* --keep-going: churn on past failed requests */
    bool merge;       /* --merge: the arguments are reports to combine */
    bool load_opt;    /* an option that only a run takes was given */
    double rate;      /* --rate: requests per second in all; 0: closed loop */
    unsigned sources; /* --sources: 127.0.0.1 to 127.0.0.N; 1: the kernel's */
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
    uint64_t scheduled; /* --rate: the requests of the schedule, in all */
    bool interrupted;   /* SIGINT or SIGTERM ended the run (supervisor) */
    struct sk_addr source_target; /* --sources: the 127.0.0.0/8 address */
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
    struct sk_conn *conn;     /* TLS: the library's connection */
    struct client *wait_next; /* TLS: the next waiting to connect */
    uint64_t conn_first;      /* TLS: the first request sent on it */
    bool connecting, finished;
    /* --rate: this connection's place in the schedule (its index over all
     * threads), its share of the requests and how many are due by now. */
    uint64_t index, share, due;
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
    atomic_uint_fast64_t done, errors, bytes, bytes_up, resumed;
    /* --rate: the thread's schedule (see bench_rate.c). */
    int rate_fd; /* a timerfd at the next due request, or -1 */
    struct sk_io rate_io;
    uint64_t rate_start, rate_last_send; /* ns */
    uint64_t rate_first;                 /* index of its first client */
    uint64_t rate_k, rate_local;         /* the next due slot */
    /* TLS: connections in their handshake, and the clients waiting to
     * connect (a queue, first to last). */
    unsigned handshakes;
    struct client *wait_first, *wait_last;
};

/* What a run measured, or several runs merged (bench_report.c). */
struct result {
    uint64_t requests, errors, bytes_up, bytes_down, resumed, unsent;
    double seconds;
    /* Rates: of the run, or the sums of the merged results' rates. */
    double rps, mbps_up, mbps_down;
    double rate_asked, rate_achieved; /* --rate; rate_asked 0: closed loop */
    unsigned merged;                  /* results merged, 0 for a run */
    struct histogram hist;
    int first_error;
    char error_text[SK_TLS_ERRLEN];
};

/* bench.c */
uint64_t bench_now_ns(void);
void bench_fail(struct client *cl, int err);
bool bench_may_issue(const struct gen *g);
/* Whether cl has requests left to send (closed loop: the thread has). */
bool bench_client_more(const struct client *cl);
/* --rate: sends what is due on cl, as far as the pipeline lets it. */
void bench_client_kick(struct client *cl);
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

/* bench_tls.c: connects cl over TLS and runs its requests there: now, or
 * once fewer than BENCH_TLS_HANDSHAKES of its thread are in flight and the
 * clients queued before it have started. Returns 0. */
int bench_tls_open(struct client *cl);
/* Sends what cl may send now on its TLS connection, or closes it. */
void bench_tls_next(struct client *cl);

/* bench_rate.c: the open loop. The schedule gives request j (over all
 * connections) the time start + j / rate, to connection j % conns. */
int bench_rate_parse(const char *text, double *rate);
/* Sets b->scheduled from -n, or from -d and the rate. */
void bench_rate_plan(struct bench *b);
/* cl's share of the schedule, from its index over all threads. */
void bench_rate_assign(const struct bench *b, struct client *cl,
                       uint64_t index);
/* The scheduled send time (ns) of cl's k-th request. */
uint64_t bench_rate_time(const struct client *cl, uint64_t k);
/* Starts the thread's schedule now (generator thread). */
int bench_rate_start(struct gen *g);
void bench_rate_release(struct gen *g);
/* The rate achieved by the threads, after their join. */
double bench_rate_achieved(const struct bench *b, const struct gen *gens,
                           unsigned n, uint64_t *sent);

/* bench_source.c */
#define BENCH_SOURCES_MAX 254
/* With --sources N > 1: checks that the endpoint is plain tcp and picks
 * its first address in 127.0.0.0/8 (after the resolve); 0 or -1. */
int bench_source_check(struct bench *b);
/* Whether -c fits the descriptor limit (main() raised the soft one to the
 * hard one); 0, or -1 after one line saying how many would. */
int bench_fd_check(const struct bench *b);
/* Connects client number index from 127.0.0.(1 + index % N), bound with
 * IP_BIND_ADDRESS_NO_PORT; blocks up to timeout_ms. Returns a non-blocking
 * descriptor or a negative errno. */
int bench_source_connect(const struct bench *b, uint64_t index, int timeout_ms);

/* bench_report.c */
/* Sums the threads' counts into r, after their join; r->seconds is set.
 * With --rate, a request of the schedule never sent is an error. */
void bench_collect(const struct bench *b, struct gen *gens, unsigned n,
                   struct result *r);
void bench_report(const struct result *r, bool json, const struct bench *b);
void bench_report_error(const struct bench *b, const struct result *r);

/* bench_merge.c: `sockit bench --merge FILE...`; returns the exit code. */
int bench_merge(int nfiles, char **files, bool json);

#endif
