/* relay.c -- `sockit relay LISTEN TARGET`: each connection accepted on
 * LISTEN is joined to a new connection to TARGET (sk_pair: splice both
 * ways); each datagram client of LISTEN gets a flow of its own to TARGET,
 * dropped after an idle timeout. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define CONNECT_TIMEOUT_DEFAULT_MS 10000
#define FLOW_IDLE_DEFAULT_MS 60000
/* Hash buckets of a worker's datagram flows. */
#define FLOW_BUCKETS 1024
/* Flows per worker: each holds a descriptor. */
#define FLOW_MAX 16384
/* Replies read per readiness of a flow. */
#define FLOW_BATCH 32

struct relay {
    struct sk_endpoint listen, target;
    struct sk_addr addrs[SK_CONNECT_ADDRS];
    size_t naddrs;
    unsigned connect_timeout_ms;
    unsigned idle_ms; /* per connection or flow; 0: none */
};

/* ------------------------------------------------------------ streams */

struct relay_conn {
    struct sk_conn *c;
    int client_fd; /* until the pair owns it */
    bool connecting;
    struct sk_connector cn;
    struct sk_pair *pair;
};

static void log_target(struct relay_conn *rc, int err)
{
    struct relay *r = sk_server_data(sk_conn_server(rc->c));
    char text[SK_ENDPOINT_STRLEN];

    if (!cli_verbose)
        return;
    sk_endpoint_format(&r->target, text, sizeof(text));
    fprintf(stderr, "sockit: connect %s: %s\n", text, sk_strerror(err));
}

static void on_pair_done(struct sk_pair *pair, int status, void *data)
{
    struct relay_conn *rc = data;

    rc->pair = NULL;
    sk_conn_close(rc->c);
}

static void on_target(struct sk_connector *cn, int fd)
{
    struct relay_conn *rc = cn->data;
    struct relay *r = sk_server_data(sk_conn_server(rc->c));
    int err;

    rc->connecting = false;
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
}

static int stream_open(struct sk_conn *c)
{
    struct relay *r = sk_server_data(sk_conn_server(c));
    struct relay_conn *rc = calloc(1, sizeof(*rc));

    if (rc == NULL)
        return -1;
    rc->c = c;
    rc->client_fd = -1;
    sk_conn_set_data(c, rc);
    rc->client_fd = sk_conn_detach(c);
    if (rc->client_fd < 0)
        return -1;
    rc->cn.data = rc;
    rc->connecting = true;
    if (sk_connector_start(sk_conn_loop(c), &rc->cn, r->addrs, r->naddrs,
                           SOCK_STREAM, r->connect_timeout_ms, on_target) < 0) {
        rc->connecting = false;
        return -1;
    }
    return 0;
}

/* Closes a client socket without a reset: the kernel resets a connection
 * closed with unread input, so the input is read away first. */
static void close_gently(int fd)
{
    char scratch[4096];

    shutdown(fd, SHUT_WR);
    while (recv(fd, scratch, sizeof(scratch), MSG_DONTWAIT) > 0)
        ;
    close(fd);
}

static void stream_close(struct sk_conn *c, int status)
{
    struct relay_conn *rc = sk_conn_data(c);

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

/* ---------------------------------------------------------- datagrams */

struct flow {
    struct sk_io io; /* the socket connected to TARGET */
    struct sk_addr client;
    int listen_fd;
    uint64_t last_active;
    struct sk_hold hold;
    struct flow *next;
    struct flow_table *table;
};

/* A worker's flows, found by client address. */
struct flow_table {
    struct flow *buckets[FLOW_BUCKETS];
    size_t count;
    struct sk_timer sweep;
    const struct relay *relay;
};

static __thread struct flow_table *flows;

static size_t addr_hash(const struct sk_addr *a)
{
    const unsigned char *p = (const unsigned char *)&a->u;
    size_t h = 2166136261u;

    for (socklen_t i = 0; i < a->len; i++)
        h = (h ^ p[i]) * 16777619u;
    return h % FLOW_BUCKETS;
}

static bool addr_equal(const struct sk_addr *a, const struct sk_addr *b)
{
    return a->len == b->len && memcmp(&a->u, &b->u, a->len) == 0;
}

static void flow_free(struct flow *f)
{
    struct flow_table *t = f->table;
    struct flow **p = &t->buckets[addr_hash(&f->client)];

    while (*p != f)
        p = &(*p)->next;
    *p = f->next;
    sk_io_stop(&f->io);
    close(f->io.fd);
    sk_hold_release(&f->hold);
    free(f);
    t->count--;
}

/* A worker without flows keeps no table and no sweep timer. */
static void table_drop_if_empty(struct flow_table *t)
{
    if (t->count > 0)
        return;
    sk_timer_stop(&t->sweep);
    free(t);
    flows = NULL;
}

static void on_sweep(struct sk_timer *timer)
{
    struct flow_table *t = timer->data;
    uint64_t now = sk_loop_now(timer->loop);
    size_t count = t->count;

    for (size_t i = 0; i < FLOW_BUCKETS && count > 0; i++) {
        struct flow *f = t->buckets[i];
        while (f != NULL) {
            struct flow *next = f->next;
            count--;
            if (now - f->last_active >= t->relay->idle_ms)
                flow_free(f);
            f = next;
        }
    }
    table_drop_if_empty(t);
}

static void on_flow_cancel(struct sk_hold *hold)
{
    struct flow *f = hold->data;
    struct flow_table *t = f->table;

    flow_free(f);
    table_drop_if_empty(t);
}

/* Replies from TARGET go back to the client through the listening socket.
 * A refusal from TARGET (no one there) is dropped like a lost datagram. */
static void on_reply(struct sk_io *io, unsigned events)
{
    static __thread char buf[SK_DGRAM_MAX];
    struct flow *f = io->data;
    ssize_t n;

    for (int i = 0; i < FLOW_BATCH; i++) {
        n = recv(io->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n < 0)
            continue; /* an ICMP error, now consumed */
        f->last_active = sk_loop_now(io->loop);
        sendto(f->listen_fd, buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL,
               &f->client.u.sa, f->client.len);
    }
}

static struct flow_table *table_get(struct sk_loop *loop, const struct relay *r)
{
    uint64_t tick = r->idle_ms / 4;

    if (flows != NULL)
        return flows;
    flows = calloc(1, sizeof(*flows));
    if (flows == NULL)
        return NULL;
    flows->relay = r;
    sk_timer_init(&flows->sweep, on_sweep);
    flows->sweep.data = flows;
    tick = tick < 10 ? 10 : tick > 1000 ? 1000 : tick;
    sk_timer_start(loop, &flows->sweep, tick, tick);
    return flows;
}

static void on_flow_socket(struct sk_connector *cn, int fd)
{
    *(int *)cn->data = fd;
}

/* A new flow for the sender of d, or NULL (the datagram is dropped). */
static struct flow *flow_new(struct sk_dgram *d, struct flow_table *t)
{
    const struct relay *r = t->relay;
    struct sk_connector cn = {.data = NULL};
    struct flow *f;
    int fd = -ECONNREFUSED;

    if (t->count >= FLOW_MAX || sk_dgram_peer(d)->len <= sizeof(sa_family_t))
        return NULL;
    /* Datagram sockets connect at once: the callback runs right away. */
    cn.data = &fd;
    if (sk_connector_start(sk_dgram_loop(d), &cn, r->addrs, r->naddrs,
                           SOCK_DGRAM, 0, on_flow_socket) < 0 ||
        fd < 0)
        return NULL;
    f = calloc(1, sizeof(*f));
    if (f == NULL || sk_io_start(sk_dgram_loop(d), &f->io, fd, SK_READ, false,
                                 on_reply) < 0) {
        free(f);
        close(fd);
        return NULL;
    }
    f->io.data = f;
    f->client = *sk_dgram_peer(d);
    f->listen_fd = sk_dgram_fd(d);
    f->table = t;
    f->hold.data = f;
    sk_dgram_hold(d, &f->hold, on_flow_cancel);
    f->next = t->buckets[addr_hash(&f->client)];
    t->buckets[addr_hash(&f->client)] = f;
    t->count++;
    return f;
}

static void relay_datagram(struct sk_dgram *d, const char *data, size_t len)
{
    const struct relay *r = sk_server_data(sk_dgram_server(d));
    struct flow_table *t = table_get(sk_dgram_loop(d), r);
    struct flow *f;

    if (t == NULL)
        return;
    f = t->buckets[addr_hash(sk_dgram_peer(d))];
    while (f != NULL && !addr_equal(&f->client, sk_dgram_peer(d)))
        f = f->next;
    if (f == NULL && (f = flow_new(d, t)) == NULL) {
        table_drop_if_empty(t);
        return;
    }
    f->last_active = sk_loop_now(sk_dgram_loop(d));
    send(f->io.fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
}

static const struct sk_handler relay_handler = {
    .on_open = stream_open,
    .on_close = stream_close,
    .on_datagram = relay_datagram,
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
            "--idle-timeout also ends datagram flows (default 60 s for "
            "them).\n\n"
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

static int check_pair(const struct relay *r, const char *target_text)
{
    if (sk_endpoint_is_stream(&r->listen) !=
        sk_endpoint_is_stream(&r->target)) {
        cli_error("relay: LISTEN and TARGET must both be stream or both "
                  "datagram endpoints");
        return -1;
    }
    if (!sk_endpoint_is_unix(&r->target) && r->target.host[0] == '\0') {
        cli_error("%s: a connecting side needs a host", target_text);
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
    if (cli_parse_endpoint(argv[optind], &r->listen) < 0 ||
        cli_parse_endpoint(argv[optind + 1], &r->target) < 0)
        return -1;
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

static int run(struct relay *r, struct sk_server_config *cfg)
{
    /* The server's own idle expiry does not see relayed traffic: the
     * pairs and flows keep time themselves. */
    r->idle_ms = cfg->idle_timeout_ms;
    if (r->idle_ms == 0 && !sk_endpoint_is_stream(&r->listen))
        r->idle_ms = FLOW_IDLE_DEFAULT_MS;
    cfg->idle_timeout_ms = 0;
    cfg->handler = &relay_handler;
    cfg->data = r;
    return cli_run_server("relay", cfg, &r->listen, 1, false);
}

int cmd_relay(int argc, char **argv)
{
    struct relay r = {.connect_timeout_ms = CONNECT_TIMEOUT_DEFAULT_MS};
    struct sk_server_config cfg = {0};
    int ret = parse_args(&r, &cfg, argc, argv);

    if (ret != 0) {
        if (ret > 0)
            usage(stdout);
        return ret > 0 ? EXIT_OK : EXIT_USAGE;
    }
    if (resolve_target(&r) < 0)
        return EXIT_RUNTIME;
    return run(&r, &cfg);
}
