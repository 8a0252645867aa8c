/* bench_cmd.c -- `sockit bench`: options, one loop thread per --threads
 * with its share of the connections, progress once a second on a
 * terminal, and the report (text or JSON). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"

#define CONNS_DEFAULT 10
#define DURATION_DEFAULT_MS 5000
#define SIZE_DEFAULT 64
#define SIZE_MAX_STREAM (16 * 1024 * 1024)
#define TICK_MS 50

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sockit bench [OPTIONS] ENDPOINT\n"
            "       sockit bench --merge [--json] FILE...\n\n"
            "Load against an echo service (sockit serve -s echo) on any "
            "endpoint kind. Each\nconnection keeps --pipeline requests in "
            "flight and waits for their replies\n(a closed loop); every reply "
            "is checked byte for byte.\n\n"
            "options:\n"
            "  -c N               connections, or datagram sockets (default "
            "10; at most\n                     what the descriptor limit "
            "holds)\n"
            "  -d SECONDS         run this long (default 5)\n"
            "  -n COUNT           or send this many requests in all (default: "
            "none)\n"
            "      --size BYTES   request size (default 64)\n"
            "      --pipeline N   requests in flight per connection (default "
            "1)\n"
            "      --threads N    generator threads (default 1)\n"
            "      --sources N    tcp to 127.0.0.0/8: connect from 127.0.0.1 "
            "to 127.0.0.N in\n                     turn, N up to 254 (default "
            "1: the kernel's choice)\n"
            "      --connect      churn: connect, one request, close, again\n"
            "                     (over TLS: a full handshake each time; "
            "default: off)\n"
            "      --resume       TLS: resume the session on each new "
            "connection\n"
            "                     (default: off)\n"
            "      --keep-going   with --connect: a failed request (refused, "
            "reset) is\n"
            "                     counted and the next one made (exit 1 "
            "still; default: off)\n"
            "      --rate R       open loop: R requests per second in all, "
            "sent on schedule\n"
            "                     whether or not replies came (not with "
            "--connect; default:\n"
            "                     none, a closed loop)\n"
            "      --json         one JSON object on stdout, with the latency "
            "histogram\n"
            "                     (default: a text report)\n"
            "      --merge        the arguments are --json reports (FILE, - "
            "for stdin) to\n"
            "                     combine into one (default: off)\n"
            "  -h, --help         this help\n\n"
            "Latency (microseconds) runs from the send of a request (the "
            "connect, with\n--connect) to its whole reply. The load is closed-"
            "loop: a slow reply delays\nthe next request of its connection, "
            "so the percentiles describe the requests\nsent, not a fixed "
            "schedule (coordinated omission: under a stall, an open-loop\n"
            "client would have seen more slow requests than are counted "
            "here).\n--rate corrects it: each of the -c connections sends R/c "
            "requests a second on a\nschedule, --pipeline bounding those in "
            "flight; latency runs from each request's\nscheduled time, so a "
            "request sent late because of a stall counts the wait. With\n-d, "
            "the schedule holds R x SECONDS requests; one not sent 2 s after "
            "the end of\nthe schedule is an error.\n\n"
            "--merge sums requests, errors, bytes and rates (duration: the "
            "longest) and\ntakes the percentiles from the merged histogram.\n"
            "MB/s: up is sent, down received, both their sum (mb_per_s in "
            "JSON).\n\n"
            "Exit status: 0 when every reply was right, 1 on any mismatch, "
            "error or refusal,\n2 on a usage error.\n");
}

enum {
    OPT_SIZE = OPT_COMMAND_FIRST,
    OPT_PIPELINE,
    OPT_BENCH_THREADS,
    OPT_JSON,
    OPT_CONNECT,
    OPT_RESUME,
    OPT_KEEP_GOING,
    OPT_RATE,
    OPT_MERGE,
    OPT_SOURCES,
};

static const struct option options[] = {
    {"size", required_argument, NULL, OPT_SIZE},
    {"pipeline", required_argument, NULL, OPT_PIPELINE},
    {"threads", required_argument, NULL, OPT_BENCH_THREADS},
    {"json", no_argument, NULL, OPT_JSON},
    {"connect", no_argument, NULL, OPT_CONNECT},
    {"resume", no_argument, NULL, OPT_RESUME},
    {"keep-going", no_argument, NULL, OPT_KEEP_GOING},
    {"rate", required_argument, NULL, OPT_RATE},
    {"merge", no_argument, NULL, OPT_MERGE},
    {"sources", required_argument, NULL, OPT_SOURCES},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int apply_option(struct bench_opts *o, int c, char **argv)
{
    unsigned long v;
    int err = 0;

    o->load_opt |= c != OPT_JSON && c != OPT_MERGE && c != 'h';
    switch (c) {
    case 'c':
        err = cli_parse_uint("-c", optarg, 1, 100000, &v);
        o->conns = (unsigned)v;
        break;
    case 'd':
        err = cli_parse_seconds("-d", optarg, &o->duration_ms);
        if (err == 0 && o->duration_ms == 0) {
            cli_error("-d: expected seconds > 0, got '%s'", optarg);
            err = -1;
        }
        break;
    case 'n':
        err = cli_parse_uint("-n", optarg, 1, 1UL << 40, &v);
        o->count = v;
        break;
    case OPT_SIZE:
        err = cli_parse_uint("--size", optarg, 1, SIZE_MAX_STREAM, &v);
        o->size = v;
        break;
    case OPT_PIPELINE:
        err = cli_parse_uint("--pipeline", optarg, 1, BENCH_PIPELINE_MAX, &v);
        o->pipeline = (unsigned)v;
        break;
    case OPT_BENCH_THREADS:
        err = cli_parse_uint("--threads", optarg, 1, 256, &v);
        o->threads = (unsigned)v;
        break;
    case OPT_JSON:
        o->json = true;
        break;
    case OPT_CONNECT:
        o->churn = true;
        break;
    case OPT_RESUME:
        o->resume = true;
        break;
    case OPT_KEEP_GOING:
        o->keep_going = true;
        break;
    case OPT_RATE:
        err = bench_rate_parse(optarg, &o->rate);
        break;
    case OPT_MERGE:
        o->merge = true;
        break;
    case OPT_SOURCES:
        err = cli_parse_uint("--sources", optarg, 1, BENCH_SOURCES_MAX, &v);
        o->sources = (unsigned)v;
        break;
    case 'h':
        return 1;
    default:
        cli_bad_option("bench", argv, c);
        return -1;
    }
    return err;
}

static int check_opts(struct bench *b, const char *text)
{
    struct bench_opts *o = &b->opts;

    b->dgram = !sk_endpoint_is_stream(&o->ep);
    if (!sk_endpoint_is_unix(&o->ep) && o->ep.host[0] == '\0') {
        cli_error("%s: a connecting side needs a host", text);
        return -1;
    }
    if (b->dgram && o->size > 65507 && !sk_endpoint_is_unix(&o->ep)) {
        cli_error("bench: --size: a UDP datagram holds at most 65507 bytes");
        return -1;
    }
    if (b->dgram && o->size > SK_DGRAM_MAX) {
        cli_error("bench: --size: echo servers answer datagrams up to %d "
                  "bytes",
                  SK_DGRAM_MAX);
        return -1;
    }
    if (sk_endpoint_socktype(&o->ep) == SOCK_SEQPACKET &&
        o->size > SK_MESSAGE_MAX) {
        cli_error("bench: --size: a unixpacket message holds at most %d "
                  "bytes",
                  SK_MESSAGE_MAX);
        return -1;
    }
    if (o->churn && (b->dgram || o->pipeline > 1)) {
        cli_error("bench: --connect needs a stream endpoint and no "
                  "--pipeline");
        return -1;
    }
    if (o->rate > 0 && o->churn) {
        cli_error("bench: --rate does not go with --connect");
        return -1;
    }
    if (o->keep_going && !o->churn) {
        cli_error("bench: --keep-going needs --connect");
        return -1;
    }
    if (o->resume && !o->ep.tls) {
        cli_error("bench: --resume needs a tls endpoint");
        return -1;
    }
    if (o->threads > o->conns)
        o->threads = o->conns;
    return 0;
}

/* Returns 0, 1 for --help, -1 on a usage error. */
static int parse_args(struct bench *b, int argc, char **argv)
{
    struct bench_opts *o = &b->opts;
    int c, ret;

    *o = (struct bench_opts){.conns = CONNS_DEFAULT,
                             .duration_ms = DURATION_DEFAULT_MS,
                             .size = SIZE_DEFAULT,
                             .pipeline = 1,
                             .threads = 1,
                             .sources = 1};
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":c:d:n:h", options, NULL)) != -1)
        if ((ret = apply_option(o, c, argv)) != 0)
            return ret;
    if (o->merge && o->load_opt) {
        cli_error("bench: --merge takes no option but --json");
        return -1;
    }
    if (o->merge && argc - optind < 1) {
        cli_error("bench: --merge: expected one FILE or more");
        return -1;
    }
    if (o->merge)
        return 0;
    if (argc - optind != 1) {
        cli_error("bench: expected one ENDPOINT (try 'sockit bench --help')");
        return -1;
    }
    if ((ret = cli_parse_endpoint_tls(argv[optind], false, &o->ep, &b->tls)) <
        0)
        return ret;
    if (b->tls != NULL)
        sk_tls_set_resume(b->tls, o->resume);
    return check_opts(b, argv[optind]);
}

/* ------------------------------------------------------------ threads */

static void on_tick(struct sk_timer *t)
{
    struct gen *g = t->data;
    struct timespec ts;
    bool stop = atomic_load(&g->b->stop), abort = atomic_load(&g->b->abort);
    uint64_t now;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    for (unsigned i = 0; i < g->nclients; i++) {
        struct client *cl = &g->clients[i];
        if (cl->finished)
            continue;
        if (g->b->dgram)
            bench_dgram_expire(cl, now);
        if (abort && (cl->inflight > 0 || cl->connecting)) {
            /* Requests never answered; a connection never opened is an
             * error too (a run that opened none is no success). */
            atomic_fetch_add(&g->errors, cl->inflight > 0 ? cl->inflight : 1);
            if (g->first_error == 0)
                g->first_error = -ETIMEDOUT;
        }
        if (abort ||
            (stop && cl->inflight == 0 && cl->out_len == 0 && !cl->connecting))
            bench_client_end(cl);
    }
}

static int client_init(struct gen *g, struct client *cl)
{
    const struct bench_opts *o = &g->b->opts;

    cl->g = g;
    cl->fd = -1;
    cl->index = g->rate_first + (uint64_t)(cl - g->clients);
    cl->out = malloc(o->size * o->pipeline);
    cl->rx = malloc(o->size);
    cl->stamps = calloc(o->pipeline, sizeof(*cl->stamps));
    if (cl->out == NULL || cl->rx == NULL || cl->stamps == NULL)
        return -ENOMEM;
    for (unsigned i = 0; i < o->pipeline; i++)
        memcpy(cl->out + (size_t)i * o->size, g->b->tmpl, o->size);
    return 0;
}

static int client_open(struct client *cl)
{
    const struct bench *b = cl->g->b;
    int fd;

    if (b->tls != NULL)
        return bench_tls_open(cl);
    if (b->opts.churn) {
        bench_churn_connect(cl);
        return 0;
    }
    fd = b->opts.sources > 1
             ? bench_source_connect(b, cl->index, BENCH_CONNECT_TIMEOUT_MS)
             : sk_connect(&b->opts.ep, BENCH_CONNECT_TIMEOUT_MS);
    if (fd < 0)
        return fd;
    return bench_client_start(cl, fd);
}

/* Sets up thread g with nclients clients, the first of them the run's
 * client number first. */
static int gen_init(struct bench *b, struct gen *g, unsigned nclients,
                    uint64_t quota, uint64_t first)
{
    int err;

    g->b = b;
    g->nclients = g->active = nclients;
    g->quota = quota;
    g->rate_fd = -1;
    g->rate_first = first;
    histogram_init(&g->hist);
    g->rbuf_size = b->opts.size > 65536 ? b->opts.size : 65536;
    g->rbuf = malloc(g->rbuf_size);
    g->clients = calloc(nclients, sizeof(*g->clients));
    if (g->rbuf == NULL || g->clients == NULL)
        return -ENOMEM;
    if ((err = sk_loop_new(&g->loop)) < 0)
        return err;
    for (unsigned i = 0; i < nclients; i++)
        if ((err = client_init(g, &g->clients[i])) < 0)
            return err;
    if (b->opts.rate > 0)
        for (unsigned i = 0; i < nclients; i++) {
            bench_rate_assign(b, &g->clients[i], first + i);
            g->quota += g->clients[i].share;
        }
    sk_timer_init(&g->tick, on_tick);
    g->tick.data = g;
    return sk_timer_start(g->loop, &g->tick, TICK_MS, TICK_MS);
}

static void gen_release(struct gen *g)
{
    for (unsigned i = 0; g->clients != NULL && i < g->nclients; i++) {
        struct client *cl = &g->clients[i];
        cl->finished = true;
        if (cl->conn != NULL)
            sk_conn_abort(cl->conn);
        else if (cl->connecting)
            sk_connector_cancel(&cl->cn);
        if (cl->fd >= 0) {
            sk_io_stop(&cl->io);
            close(cl->fd);
        }
        free(cl->out);
        free(cl->rx);
        free(cl->stamps);
    }
    bench_rate_release(g);
    if (g->loop != NULL) {
        sk_timer_stop(&g->tick);
        sk_loop_free(g->loop);
    }
    free(g->clients);
    free(g->rbuf);
}

static void *gen_main(void *arg)
{
    struct gen *g = arg;
    int err;

    for (unsigned i = 0; i < g->nclients; i++) {
        err = client_open(&g->clients[i]);
        if (err < 0) {
            if (g->first_error == 0)
                g->first_error = err;
            atomic_fetch_add(&g->errors, 1);
            g->clients[i].finished = true;
            g->active--;
        }
    }
    if (g->b->opts.rate > 0 && g->active > 0 &&
        (err = bench_rate_start(g)) < 0) {
        g->first_error = err;
        atomic_fetch_add(&g->errors, 1);
        return NULL;
    }
    if (g->active > 0)
        sk_loop_run(g->loop);
    return NULL;
}

/* --------------------------------------------------------------- run */

static uint64_t sum_done(struct gen *gens, unsigned n)
{
    uint64_t total = 0;

    for (unsigned i = 0; i < n; i++)
        total += atomic_load_explicit(&gens[i].done, memory_order_relaxed);
    return total;
}

/* The run is over when every generator thread is: a thread ends with its
 * last client. The count of clients left is the thread's own. */
static bool all_idle(struct gen *gens, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (!atomic_load_explicit(&gens[i].ended, memory_order_acquire))
            return false;
    return true;
}

/* When the sending stops: after -d; with --rate, a grace after the end
 * of the schedule for requests late; 0: when -n requests were sent. */
static uint64_t stop_time(const struct bench *b, uint64_t start)
{
    if (b->opts.rate > 0)
        return start + BENCH_FINISH_GRACE_MS +
               (uint64_t)((double)b->scheduled * 1000.0 / b->opts.rate);
    return b->opts.count == 0 ? start + b->opts.duration_ms : 0;
}

/* Waits for the run to end, a second at a time, printing progress on a
 * terminal. SIGINT ends the run early, like the duration does. */
static void supervise(struct bench *b, struct gen *gens, uint64_t start)
{
    bool tty = isatty(2), stopped = false;
    uint64_t last = 0, stop_at = stop_time(b, start);
    struct timespec wait = {.tv_nsec = TICK_MS * 1000000L};
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    for (uint64_t next = start + 1000; !all_idle(gens, b->opts.threads);) {
        uint64_t now = cli_now_ms();
        bool signalled = sigtimedwait(&set, NULL, &wait) > 0;
        if (!stopped && (signalled || (stop_at > 0 && now >= stop_at))) {
            atomic_store(&b->stop, true);
            stopped = true;
            b->interrupted = signalled;
            stop_at = now;
        }
        if (stopped && now >= stop_at + BENCH_FINISH_GRACE_MS)
            atomic_store(&b->abort, true);
        if (tty && now >= next) {
            uint64_t done = sum_done(gens, b->opts.threads);
            fprintf(stderr, "\r%4llus  %llu requests/s  %llu done   ",
                    (unsigned long long)((now - start) / 1000),
                    (unsigned long long)(done - last),
                    (unsigned long long)done);
            last = done;
            next += 1000;
        }
    }
    if (tty)
        fprintf(stderr, "\r%60s\r", "");
}

static void *gen_thread(void *arg)
{
    struct gen *g = arg;

    gen_main(g);
    g->end_ns = bench_now_ns();
    atomic_store_explicit(&g->ended, true, memory_order_release);
    return NULL;
}

/* The run lasts until its last generator thread is done. */
static uint64_t last_end(const struct gen *gens, unsigned n)
{
    uint64_t end = 0;

    for (unsigned i = 0; i < n; i++)
        if (gens[i].end_ns > end)
            end = gens[i].end_ns;
    return end > 0 ? end : bench_now_ns();
}

static int run(struct bench *b)
{
    unsigned n = b->opts.threads, started = 0;
    struct gen *gens = calloc(n, sizeof(*gens));
    struct result r = {0};
    uint64_t start, start_ns;
    int err = gens == NULL ? -ENOMEM : 0;

    for (unsigned i = 0, first = 0; i < n && err == 0; i++) {
        unsigned nc = b->opts.conns / n + (i < b->opts.conns % n);
        uint64_t quota = b->opts.rate > 0 ? 0 /* the clients' shares */
                         : b->opts.count == 0
                             ? UINT64_MAX
                             : b->opts.count / n + (i < b->opts.count % n);
        err = gen_init(b, &gens[i], nc, quota, first);
        first += nc;
    }
    start = cli_now_ms();
    start_ns = bench_now_ns();
    for (; err == 0 && started < n; started++)
        if ((err = -pthread_create(&gens[started].thread, NULL, gen_thread,
                                   &gens[started])) < 0)
            break;
    if (err == 0)
        supervise(b, gens, start);
    else
        atomic_store(&b->abort, true);
    for (unsigned i = 0; i < started; i++)
        pthread_join(gens[i].thread, NULL);
    r.seconds = (double)(last_end(gens, started) - start_ns) / 1e9;
    bench_collect(b, gens, started, &r);
    for (unsigned i = 0; gens != NULL && i < n; i++)
        gen_release(&gens[i]);
    free(gens);
    if (err < 0) {
        cli_error("bench: %s", sk_strerror(err));
        return EXIT_RUNTIME;
    }
    bench_report(&r, b->opts.json, b);
    if (r.errors > 0)
        bench_report_error(b, &r);
    return r.errors > 0 ? EXIT_RUNTIME : EXIT_OK;
}

int cmd_bench(int argc, char **argv)
{
    struct bench b = {0};
    sigset_t set;
    int ret, n;

    ret = parse_args(&b, argc, argv);
    if (ret != 0) {
        if (ret > 0)
            usage(stdout);
        sk_tls_free(b.tls);
        return ret > 0 ? EXIT_OK : ret == -2 ? EXIT_RUNTIME : EXIT_USAGE;
    }
    if (b.opts.merge)
        return bench_merge(argc - optind, argv + optind, b.opts.json);
    if (b.opts.rate > 0)
        bench_rate_plan(&b);
    n = sk_endpoint_resolve(&b.opts.ep, false, b.addrs, SK_CONNECT_ADDRS);
    if (n < 0) {
        cli_error_ep("resolve", &b.opts.ep, n);
        return EXIT_RUNTIME;
    }
    b.naddrs = (size_t)n;
    if (bench_source_check(&b) < 0 || bench_fd_check(&b) < 0) {
        sk_tls_free(b.tls);
        return EXIT_USAGE;
    }
    b.tmpl = malloc(b.opts.size);
    if (b.tmpl == NULL)
        return EXIT_RUNTIME;
    for (size_t i = 0; i < b.opts.size; i++)
        b.tmpl[i] = (char)('!' + i % 90);
    /* Signals reach the supervisor through sigtimedwait(), not a handler;
     * the generator threads inherit the mask. */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    ret = run(&b);
    free(b.tmpl);
    sk_tls_free(b.tls);
    return ret;
}
