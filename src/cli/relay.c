/* relay.c -- `sockit relay LISTEN TARGET`: each connection accepted on
 * LISTEN is joined to a new connection to TARGET (sk_pair: splice both
 * ways); each datagram client of LISTEN gets a flow of its own to TARGET
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
 * TARGET's sockets, and a pipe each way. */
#define STREAM_FDS 6
/* Reads of a client's unread input before its socket is closed. */
#define GENTLE_READS 4

/* ------------------------------------------------------------ streams */

struct relay_conn {
    struct sk_conn *c;
    int client_fd; /* until the pair owns it */
    bool connecting;
    struct sk_connector cn;
    struct sk_pair *pair;
    int header_len; /* of the PROXY header TARGET is sent first */
    char header[SK_PROXY_HEADER_MAX];
    struct relay_tally tally; /* its bytes, for --metrics */
};

int relay_proxy_header(const struct relay *r, const struct sk_conn *c,
                       char *out, size_t size)
{
    enum sk_proxy v = (enum sk_proxy)r->target.proxy;
    struct sk_addr peer, local;
    int n = -EINVAL;

    if (v == SK_PROXY_NONE)
        return 0;
    if (sk_conn_addrs(c, &peer, &local) == 0)
        n = sk_proxy_format(v, SOCK_STREAM, &peer, &local, out, size);
    /* Addresses a header cannot carry (an unnamed client): LOCAL. */
    if (n == -EINVAL)
        n = sk_proxy_format(v, SOCK_STREAM, NULL, NULL, out, size);
    return n;
}

void relay_warn_target(struct relay *r, int err, const char *why)
{
    char text[SK_ENDPOINT_STRLEN];
    struct sk_log_record rec = {.event = "target",
                                .peer = text,
                                .reason = why != NULL ? why : sk_strerror(err)};

    if (!cli_warn_due(&r->target_warn, &rec))
        return;
    sk_endpoint_format(&r->target, text, sizeof(text));
    cli_log_event(&rec, "connect %s: %s", text, rec.reason);
}

static void log_target(struct relay_conn *rc, int err)
{
    relay_warn_target(sk_server_data(sk_conn_server(rc->c)), err, NULL);
}

static void on_pair_done(struct sk_pair *pair, int status, void *data)
{
    struct relay_conn *rc = data;

    relay_tally_end(&rc->tally);
    sk_conn_add_bytes(rc->c, sk_pair_bytes(pair, 0), sk_pair_bytes(pair, 1));
    rc->pair = NULL;
    sk_conn_close(rc->c);
}

static void on_target(struct sk_connector *cn, int fd)
{
    struct relay_conn *rc = cn->data;
    struct relay *r = sk_server_data(sk_conn_server(rc->c));
    int err;

    rc->connecting = false;
    if (fd >= 0 && rc->header_len > 0 &&
        (err = sk_send_all(fd, rc->header, (size_t)rc->header_len,
                           SK_PROXY_SEND_MS)) < 0) {
        close(fd);
        fd = err;
    }
    relay_count(0, fd < 0 ? RELAY_CONNECT_FAILURES : RELAY_CONNECTS, 1);
    if (fd < 0) {
        log_target(rc, fd);
        sk_conn_close(rc->c); /* the client's socket closes with it */
        return;
    }
    err = sk_pair_start(sk_conn_loop(rc->c), rc->client_fd, fd, r->idle_ms,
                        on_pair_done, rc, &rc->pair);
    rc->client_fd = -1; /* the pair has it, or closed it */
    if (err < 0)
        sk_conn_close(rc->c);
    else
        relay_tally_start(&rc->tally, sk_conn_loop(rc->c), rc->pair);
}

static int stream_open(struct sk_conn *c)
{
    struct relay *r = sk_server_data(sk_conn_server(c));
    struct relay_conn *rc;

    if (r->listen_lo.tls != NULL || r->target_tls != NULL)
        return relay_tls_open(c, r);
    if ((rc = calloc(1, sizeof(*rc))) == NULL)
        return -1;
    rc->c = c;
    rc->client_fd = -1;
    sk_conn_set_data(c, rc);
    rc->header_len = relay_proxy_header(r, c, rc->header, sizeof(rc->header));
    if (rc->header_len < 0)
        return -1;
    rc->client_fd = sk_conn_detach(c);
    if (rc->client_fd < 0)
        return -1;
    rc->cn.data = rc;
    rc->connecting = true;
    if (sk_connector_start_proto(sk_conn_loop(c), &rc->cn, r->addrs, r->naddrs,
                                 sk_endpoint_socktype(&r->target),
                                 sk_endpoint_protocol(&r->target),
                                 r->connect_timeout_ms, on_target) < 0) {
        rc->connecting = false;
        return -1;
    }
    return 0;
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

    if (r->listen_lo.tls != NULL || r->target_tls != NULL) {
        relay_tls_close(c);
        return;
    }
    if (rc == NULL)
        return;
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
            "usage: sockit relay [OPTIONS] LISTEN TARGET\n\n"
            "Joins every connection accepted on LISTEN to a new connection "
            "to TARGET, both\nways, passing half-closes on (splice(2) moves "
            "the bytes). A datagram LISTEN\ngives each client address a flow "
            "of its own to TARGET. Kinds may differ within\na type "
            "(tcp<->unix, udp<->unixgram); stream<->datagram is an error.\n\n"
            "options:\n"
            "      --connect-timeout S  give up on TARGET after S seconds "
            "(default 10)\n"
            "%s\n"
            "Defaults and limits:\n"
            "  --idle-timeout   stream connections: 300 s; datagram flows: "
            "60 s (0: none)\n"
            "  --max-conns      10000, or budget / 6 when lower, as each "
            "relayed connection\n"
            "                   holds 6 descriptors; the budget is the "
            "descriptor limit\n"
            "                   (raised to the hard limit at start) less 64, "
            "and 4 per\n"
            "                   worker\n"
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
            "Exit status: 0 after a signal, 1 when LISTEN cannot be bound or "
            "TARGET\nresolved, 2 on a usage error.\n",
            cli_server_options_help);
}

enum { OPT_CONNECT_TIMEOUT = OPT_COMMAND_FIRST };

static const struct option options[] = {
    {"connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT},
    CLI_SERVER_OPTIONS,
    {NULL, 0, NULL, 0},
};

/* LISTEN and TARGET name the same socket as written (a name that only
 * resolves to it is not seen). */
static bool same_place(const struct sk_endpoint *a, const struct sk_endpoint *b)
{
    if (sk_endpoint_is_unix(a) || sk_endpoint_is_unix(b))
        return sk_endpoint_is_unix(a) && sk_endpoint_is_unix(b) &&
               a->path_len == b->path_len &&
               (a->path_len > 0 ? memcmp(a->path, b->path, a->path_len) == 0
                                : strcmp(a->path, b->path) == 0);
    return a->port == b->port && strcmp(a->host, b->host) == 0 &&
           sk_endpoint_socktype(a) == sk_endpoint_socktype(b);
}

static int check_pair(const struct relay *r, const char *target_text)
{
    if (sk_endpoint_is_stream(&r->listen) !=
        sk_endpoint_is_stream(&r->target)) {
        cli_error("relay: LISTEN and TARGET must both be stream or both "
                  "datagram endpoints");
        return -1;
    }
    /* Messages and a byte stream do not map onto each other. The kind of
     * an inherited LISTEN is not known here: a mismatch then fails each
     * connection (TARGET refuses the wrong type of socket). */
    if (r->listen.scheme != SK_FD && r->listen.scheme != SK_SD &&
        (r->listen.scheme == SK_UNIXPACKET) !=
            (r->target.scheme == SK_UNIXPACKET)) {
        cli_error("relay: unixpacket relays only to unixpacket (messages "
                  "are not a byte stream)");
        return -1;
    }
    if (!sk_endpoint_is_unix(&r->target) && r->target.host[0] == '\0') {
        cli_error("%s: a connecting side needs a host", target_text);
        return -1;
    }
    if (!sk_endpoint_is_unix(&r->target) && r->target.port == 0) {
        cli_error("%s: port 0 is no target", target_text);
        return -1;
    }
    if (same_place(&r->listen, &r->target)) {
        cli_error("%s: the relay would connect to itself", target_text);
        return -1;
    }
    return 0;
}

/* Returns 0, 1 for --help, -1 on a usage error. */
static int parse_args(struct relay *r, struct sk_server_config *cfg, int argc,
                      char **argv)
{
    int c, ret;

    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":qvh", options, NULL)) != -1) {
        if (c == OPT_CONNECT_TIMEOUT)
            ret = cli_parse_seconds("--connect-timeout", optarg,
                                    &r->connect_timeout_ms);
        else if ((ret = cli_server_option(cfg, c, optarg)) == -2)
            cli_bad_option("relay", argv, c);
        if (ret != 0)
            return ret == -2 ? -1 : ret;
    }
    if (argc - optind != 2) {
        cli_error("relay: expected LISTEN and TARGET (try 'sockit relay "
                  "--help')");
        return -1;
    }
    if ((ret = cli_parse_listen(argv[optind], &r->listen, &r->listen_lo)) < 0 ||
        (ret = cli_parse_endpoint_tls(argv[optind + 1], false, &r->target,
                                      &r->target_tls)) < 0)
        return ret;
    return check_pair(r, argv[optind + 1]);
}

static int resolve_target(struct relay *r)
{
    int n = sk_endpoint_resolve(&r->target, false, r->addrs, SK_CONNECT_ADDRS);

    if (n < 0) {
        cli_error_ep("resolve", &r->target, n);
        return -1;
    }
    r->naddrs = (size_t)n;
    return 0;
}

/* The descriptors the relay may fill: the soft limit (main() raised it to
 * the hard one), less a reserve. */
static unsigned long fd_budget(unsigned workers)
{
    unsigned long reserve = RELAY_FD_RESERVE + RELAY_FD_PER_WORKER * workers;
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
    unsigned long budget = fd_budget(workers), conns = budget / STREAM_FDS;

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
    else if (resolve_target(&r) < 0)
        status = EXIT_RUNTIME;
    else
        status = run(&r, &cfg);
    sk_tls_free(r.listen_lo.tls);
    sk_tls_free(r.target_tls);
    return status;
}
