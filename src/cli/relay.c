/* relay.c -- `sockit relay LISTEN TARGET...`: each connection accepted on
 * LISTEN is joined to a new connection to a TARGET (sk_pair: both ways,
 * large transfers spliced), the TARGETs tried in the order relay_targets.c
 * gives; each datagram client of LISTEN gets a flow of its own to a TARGET
 * (relay_flow.c). The defaults keep the relay inside its descriptor
 * limit. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "relay.h"

#define CONNECT_TIMEOUT_DEFAULT_MS 10000
#define FLOW_IDLE_DEFAULT_MS 60000
/* Descriptors a relayed stream connection holds: the client's and
 * TARGET's sockets (the pipes of a large transfer are lent by its worker's
 * pool, at most 2 * SK_PAIR_PIPES descriptors a worker). */
#define STREAM_FDS 2
/* Reads of a client's unread input before its socket is closed. */
#define GENTLE_READS 4

/* ------------------------------------------------------------ streams */

struct relay_conn {
    struct sk_conn *c;
    struct relay *r;
    int client_fd; /* until the pair owns it */
    bool connecting;
    struct sk_connector cn;
    struct relay_lookup *lookup; /* while TARGET's name is looked up */
    struct relay_plan plan;
    size_t target; /* the one tried now */
    int last_err;
    struct sk_pair *pair;
    /* The PROXY headers of either version, for targets with proxy=. */
    int header_len[SK_PROXY_ANY];
    char header[SK_PROXY_ANY][SK_PROXY_HEADER_MAX];
    struct relay_tally tally; /* its bytes, for --metrics */
};

int relay_proxy_header(int v, const struct sk_conn *c, char *out, size_t size)
{
    struct sk_addr peer, local;
    int n = -EINVAL;

    if (v == SK_PROXY_NONE)
        return 0;
    if (sk_conn_addrs(c, &peer, &local) == 0)
        n = sk_proxy_format((enum sk_proxy)v, SOCK_STREAM, &peer, &local, out,
                            size);
    /* Addresses a header cannot carry (an unnamed client): LOCAL. */
    if (n == -EINVAL)
        n = sk_proxy_format((enum sk_proxy)v, SOCK_STREAM, NULL, NULL, out,
                            size);
    return n;
}

void relay_warn_target(struct relay *r, size_t t, int err, const char *why)
{
    const char *name = r->targets[t].name;
    struct sk_log_record rec = {.event = "target",
                                .peer = name,
                                .reason = why != NULL ? why : sk_strerror(err)};

    if (!cli_warn_due(&r->target_warn, &rec))
        return;
    cli_log_event(&rec, "connect %s: %s", name, rec.reason);
}

static void on_pair_done(struct sk_pair *pair, int status, void *data)
{
    struct relay_conn *rc = data;

    relay_tally_end(&rc->tally);
    sk_conn_add_bytes(rc->c, sk_pair_bytes(pair, 0), sk_pair_bytes(pair, 1));
    rc->pair = NULL;
    sk_conn_close(rc->c);
}

static int try_next(struct relay_conn *rc);

/* TARGET's socket, connected (or why not): joined to the client's, or the
 * next target tried. */
static void on_target(struct sk_connector *cn, int fd)
{
    struct relay_conn *rc = cn->data;
    int v = rc->r->targets[rc->target].ep.proxy, err;

    rc->connecting = false;
    if (fd >= 0 && v != SK_PROXY_NONE &&
        (err = sk_send_all(fd, rc->header[v - 1], (size_t)rc->header_len[v - 1],
                           SK_PROXY_SEND_MS)) < 0) {
        close(fd);
        fd = err;
    }
    if (fd < 0) {
        relay_target_failed(rc->r, rc->target, fd, NULL);
        rc->last_err = fd;
        if (try_next(rc) < 0)
            sk_conn_close(rc->c); /* the client's socket closes with it */
        return;
    }
    relay_count(rc->target, RELAY_CONNECTS, 1);
    relay_target_worked(rc->r, rc->target);
    err = sk_pair_start(sk_conn_loop(rc->c), rc->client_fd, fd, rc->r->idle_ms,
                        on_pair_done, rc, &rc->pair);
    rc->client_fd = -1; /* the pair has it, or closed it */
    if (err < 0)
        sk_conn_close(rc->c);
    else
        relay_tally_start(&rc->tally, rc->target, sk_conn_loop(rc->c),
                          rc->pair);
}

static int start_connect(struct relay_conn *rc, const struct sk_addr *addrs,
                         size_t n)
{
    const struct sk_endpoint *ep = &rc->r->targets[rc->target].ep;

    rc->cn.data = rc;
    rc->connecting = true;
    if (sk_connector_start_proto(sk_conn_loop(rc->c), &rc->cn, addrs, n,
                                 sk_endpoint_socktype(ep),
                                 sk_endpoint_protocol(ep),
                                 rc->r->connect_timeout_ms, on_target) < 0) {
        rc->connecting = false;
        return -1;
    }
    return 0;
}

static void on_resolved(void *owner, int n, const struct sk_addr *addrs)
{
    struct relay_conn *rc = owner;

    rc->lookup = NULL;
    if (n > 0 && start_connect(rc, addrs, (size_t)n) == 0)
        return;
    rc->last_err = n < 0 ? n : -ENOMEM;
    relay_target_failed(rc->r, rc->target, rc->last_err, NULL);
    if (try_next(rc) < 0)
        sk_conn_close(rc->c);
}

/* Starts on the next target of the client's plan (looking its name up
 * first when needed). Returns 0, or -1 once every target has failed
 * (warned: the client is to be closed). */
static int try_next(struct relay_conn *rc)
{
    struct sk_addr addrs[SK_CONNECT_ADDRS];
    int t, n;

    while ((t = relay_plan_next(&rc->plan)) >= 0) {
        rc->target = (size_t)t;
        n = relay_addrs(rc->r, rc->target, sk_conn_loop(rc->c), addrs,
                        on_resolved, rc, &rc->lookup);
        if (n == 0 || (n > 0 && start_connect(rc, addrs, (size_t)n) == 0))
            return 0;
        rc->last_err = n < 0 ? n : -ENOMEM;
        relay_target_failed(rc->r, rc->target, rc->last_err, NULL);
    }
    relay_warn_target(rc->r, rc->target, rc->last_err, NULL);
    return -1;
}

/* The headers of the versions the targets ask for, made while the
 * client's socket is the connection's. */
static int make_headers(struct relay_conn *rc)
{
    for (size_t i = 0; i < rc->r->ntargets; i++) {
        int v = rc->r->targets[i].ep.proxy;
        if (v == SK_PROXY_NONE || rc->header_len[v - 1] > 0)
            continue;
        rc->header_len[v - 1] = relay_proxy_header(v, rc->c, rc->header[v - 1],
                                                   sizeof(rc->header[v - 1]));
        if (rc->header_len[v - 1] < 0)
            return -1;
    }
    return 0;
}

static int stream_open(struct sk_conn *c)
{
    struct relay *r = sk_server_data(sk_conn_server(c));
    struct relay_conn *rc;

    if (r->listen_lo.tls != NULL || r->target_tls_any)
        return relay_tls_open(c, r);
    if ((rc = calloc(1, sizeof(*rc))) == NULL)
        return -1;
    rc->c = c;
    rc->r = r;
    rc->client_fd = -1;
    sk_conn_set_data(c, rc);
    if (make_headers(rc) < 0)
        return -1;
    rc->client_fd = sk_conn_detach(c);
    if (rc->client_fd < 0)
        return -1;
    relay_plan_make(r, &rc->plan);
    return try_next(rc);
}

/* Closes a client socket without a reset: the kernel resets a connection
 * closed with unread input, so the input is read away first, a few reads
 * at most (a client that keeps sending gets its reset). */
static void close_gently(int fd)
{
    char scratch[16384];

    shutdown(fd, SHUT_WR);
    for (int i = 0; i < GENTLE_READS; i++)
        if (recv(fd, scratch, sizeof(scratch), MSG_DONTWAIT) <= 0)
            break;
    close(fd);
}

static void stream_close(struct sk_conn *c, int status)
{
    struct relay *r = sk_server_data(sk_conn_server(c));
    struct relay_conn *rc = sk_conn_data(c);

    if (r->listen_lo.tls != NULL || r->target_tls_any) {
        relay_tls_close(c);
        return;
    }
    if (rc == NULL)
        return;
    if (rc->lookup != NULL)
        relay_lookup_cancel(rc->lookup);
    if (rc->connecting)
        sk_connector_cancel(&rc->cn);
    if (rc->pair != NULL)
        sk_pair_abort(rc->pair);
    if (rc->client_fd >= 0)
        close_gently(rc->client_fd);
    free(rc);
}

static const struct sk_handler relay_handler = {
    .on_open = stream_open,
    .on_close = stream_close,
    .on_datagram = relay_flow_datagram,
};

/* ---------------------------------------------------------- command */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sockit relay [OPTIONS] LISTEN TARGET...\n\n"
            "Joins every connection accepted on LISTEN to a new connection "
            "to a TARGET, both\nways, passing half-closes on (small reads "
            "copied, large transfers spliced).\nA datagram LISTEN gives each "
            "client address a flow of its own to a TARGET.\nKinds may differ "
            "within a type (tcp<->unix, udp<->unixgram); stream<->datagram\n"
            "is an error.\n\n"
            "With several TARGETs, each connection (or new flow) goes to the "
            "next one in\nturn, or with --balance first to the first one "
            "that is up. A TARGET that\nrefuses, fails or times out is down: "
            "the client is tried on the next one, and\nthe down TARGET is "
            "tried again after a back-off of 1 s, doubled by each failed\n"
            "retry up to 30 s; one that connects is up again. Each change is "
            "logged. When\nevery TARGET is down they are all tried anyway; "
            "a client no TARGET takes is\nclosed. Host names are looked up "
            "again for each new connection (datagram flows:\nthe latest "
            "answer, renewed in the background).\n\n"
            "options:\n"
            "      --connect-timeout S  give up on a TARGET after S seconds "
            "(default 10)\n"
            "      --balance POLICY   roundrobin (default) or first (failover "
            "order)\n"
            "      --resolve-every S  reuse a TARGET name's addresses for S "
            "seconds\n"
            "                         (default 0: look it up for each new "
            "connection)\n"
            "%s\n"
            "Defaults and limits:\n"
            "  --idle-timeout   stream connections: 300 s; datagram flows: "
            "60 s (0: none)\n"
            "  --max-conns      10000, or budget / 2 when lower, as each "
            "relayed connection\n"
            "                   holds 2 descriptors; the budget is the "
            "descriptor limit\n"
            "                   (raised to the hard limit at start) less 64, "
            "and 4 per\n"
            "                   worker (36 for streams: each lends at most 16 "
            "pipes to\n"
            "                   large transfers)\n"
            "  datagram flows   each holds a descriptor: at most budget / "
            "workers, and\n"
            "                   16384, per worker; one source (an IPv4 "
            "address, an IPv6\n"
            "                   /64, a UNIX path) holds at most 1/8 of them. A "
            "new client\n"
            "                   makes room by ending the least recently used "
            "flow (first\n"
            "                   those TARGET never answered), or its source's "
            "own when\n"
            "                   that is at its share. A flow TARGET never "
            "answered ends\n"
            "                   after 5 s (or the idle timeout if shorter). "
            "Replies over\n"
            "                   65536 bytes are dropped whole (-v says so).\n\n"
            "Exit status: 0 after a signal, 1 when LISTEN cannot be bound or a "
            "TARGET\nresolved at start, 2 on a usage error.\n",
            cli_server_options_help);
}

enum {
    OPT_CONNECT_TIMEOUT = OPT_COMMAND_FIRST,
    OPT_BALANCE,
    OPT_RESOLVE_EVERY,
};

static const struct option options[] = {
    {"connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT},
    {"balance", required_argument, NULL, OPT_BALANCE},
    {"resolve-every", required_argument, NULL, OPT_RESOLVE_EVERY},
    CLI_SERVER_OPTIONS,
    {NULL, 0, NULL, 0},
};

/* --balance NAME; 0 or -1 after a usage error. */
static int parse_balance(const char *text, enum relay_balance *out)
{
    if (strcmp(text, "roundrobin") == 0)
        *out = RELAY_ROUNDROBIN;
    else if (strcmp(text, "first") == 0)
        *out = RELAY_FIRST;
    else {
        cli_error("relay: --balance: unknown policy '%s' (roundrobin or first)",
                  text);
        return -1;
    }
    return 0;
}

static int relay_option(struct relay *r, struct sk_server_config *cfg, int c,
                        const char *arg)
{
    if (c == OPT_CONNECT_TIMEOUT)
        return cli_parse_seconds("--connect-timeout", arg,
                                 &r->connect_timeout_ms);
    if (c == OPT_BALANCE)
        return parse_balance(arg, &r->balance);
    if (c == OPT_RESOLVE_EVERY)
        return cli_parse_seconds("--resolve-every", arg, &r->resolve_every_ms);
    return cli_server_option(cfg, c, arg);
}

/* Returns 0, 1 for --help, -1 on a usage error, -2 for a TLS file. */
static int parse_args(struct relay *r, struct sk_server_config *cfg, int argc,
                      char **argv)
{
    int c, ret;

    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":qvh", options, NULL)) != -1) {
        if ((ret = relay_option(r, cfg, c, optarg)) == -2)
            cli_bad_option("relay", argv, c);
        if (ret != 0)
            return ret == -2 ? -1 : ret;
    }
    if (argc - optind < 2) {
        cli_error("relay: expected LISTEN and TARGET... (try 'sockit relay "
                  "--help')");
        return -1;
    }
    if ((ret = cli_parse_listen(argv[optind], &r->listen, &r->listen_lo)) < 0)
        return ret;
    for (int i = optind + 1; i < argc; i++) {
        if ((ret = relay_target_parse(r, argv[i])) < 0)
            return ret;
        r->target_tls_any =
            r->target_tls_any || r->targets[r->ntargets - 1].tls;
    }
    return 0;
}

/* The descriptors the relay may fill: the soft limit (main() raised it to
 * the hard one), less a reserve. */
static unsigned long fd_budget(unsigned workers, bool stream)
{
    unsigned long per_worker =
        RELAY_FD_PER_WORKER + (stream ? 2 * SK_PAIR_PIPES : 0);
    unsigned long reserve = RELAY_FD_RESERVE + per_worker * workers;
    unsigned long limit;
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 0;
    limit = rl.rlim_cur > 1ul << 30 ? 1ul << 30 : (unsigned long)rl.rlim_cur;
    return limit > reserve ? limit - reserve : 0;
}

static unsigned worker_count(const struct sk_server_config *cfg)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);

    if (cfg->threads > 0)
        return cfg->threads;
    return cpus > 0 ? (unsigned)cpus : 1;
}

/* The relay's defaults where options were not given; returns 0 or -1. */
static int set_defaults(struct relay *r, struct sk_server_config *cfg)
{
    bool stream = sk_endpoint_is_stream(&r->listen);
    unsigned workers = worker_count(cfg);
    unsigned long budget = fd_budget(workers, stream);
    unsigned long conns = budget / STREAM_FDS;

    if (cli_idle_given)
        r->idle_ms = cfg->idle_timeout_ms;
    else
        r->idle_ms = stream ? CLI_STREAM_IDLE_DEFAULT_MS : FLOW_IDLE_DEFAULT_MS;
    if (!cli_max_conns_given) {
        if (conns > CLI_MAX_CONNS_DEFAULT)
            conns = CLI_MAX_CONNS_DEFAULT;
        cfg->max_conns = conns > 0 ? (unsigned)conns : 1;
    }
    if (stream)
        return 0;
    return relay_flow_setup(r, workers, budget);
}

static int run(struct relay *r, struct sk_server_config *cfg)
{
    if (set_defaults(r, cfg) < 0)
        return EXIT_RUNTIME;
    /* The server's own idle expiry does not see relayed traffic: the
     * pairs and flows keep time themselves, and the server keeps none. */
    cfg->idle_timeout_ms = 0;
    cli_idle_given = true;
    cfg->handler = &relay_handler;
    cfg->data = r;
    /* The workers the relay's counters are made for, exactly. */
    cfg->threads = worker_count(cfg);
    if (relay_stats_setup(r, cfg, cfg->threads) < 0)
        return EXIT_RUNTIME;
    return cli_run_server("relay", cfg, &r->listen, &r->listen_lo, 1, false);
}

int cmd_relay(int argc, char **argv)
{
    struct relay r = {.connect_timeout_ms = CONNECT_TIMEOUT_DEFAULT_MS};
    struct sk_server_config cfg = {0};
    int ret = parse_args(&r, &cfg, argc, argv), status;

    if (ret > 0)
        usage(stdout);
    if (ret != 0)
        status = ret > 0 ? EXIT_OK : ret == -2 ? EXIT_RUNTIME : EXIT_USAGE;
    else if (relay_targets_start(&r) < 0)
        status = EXIT_RUNTIME;
    else
        status = run(&r, &cfg);
    relay_targets_end(&r);
    sk_tls_free(r.listen_lo.tls);
    return status;
}
