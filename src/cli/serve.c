/* serve.c -- `sockit serve`: bind every endpoint, print the "listening
 * on" lines, serve a built-in service or a command until SIGINT/SIGTERM. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../services/exec.h"
#include "../services/services.h"
#include "cli.h"

#define DEFAULT_PORT_TEXT "21567"
#define MAX_LINE_DEFAULT 65536
#define EXEC_DGRAM_TIMEOUT_DEFAULT_MS 5000
#define MAX_CHILDREN_DEFAULT 64

struct serve_args {
    const struct service *svc;
    struct service_opts opts;
    struct exec_state exec;
    unsigned exec_timeout_ms; /* --exec-timeout, when given */
    bool exec_timeout_given, max_children_given;
    struct sk_server_config cfg;
    struct sk_endpoint *eps;
    struct sk_listen_options *lo; /* each endpoint's (tls, mode=) */
    size_t neps;
};

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: sockit serve [-s SERVICE | --exec CMD] [OPTIONS] "
        "[ENDPOINT...]\n\n"
        "Serves on every ENDPOINT (default: tcp://127.0.0.1:" DEFAULT_PORT_TEXT
        " and udp://127.0.0.1:" DEFAULT_PORT_TEXT ")\n"
        "and prints 'listening on ENDPOINT' on stderr for each bound "
        "socket.\n\nservices:\n");
    for (size_t i = 0; services[i] != NULL; i++)
        fprintf(out, "  %-10s %s\n", services[i]->name, services[i]->summary);
    fprintf(out,
            "\noptions:\n"
            "  -s, --service NAME     the service to run (default timestamp)\n"
            "      --exec CMD         run '/bin/sh -c CMD' per connection or "
            "datagram\n"
            "                         (default: none, the service of -s runs)\n"
            "      --exec-timeout S   kill a command (its process group) "
            "after S seconds;\n"
            "                         default 5 on datagrams, none on "
            "streams; 0: none\n"
            "      --max-children N   commands at once (default 64, 0: no "
            "limit): further\n"
            "                         connections wait in the backlog, "
            "datagrams are dropped\n"
            "      --max-line BYTES   longest line (default 65536); longer "
            "closes\n"
            "%s\n"
            "With --exec, --idle-timeout watches the command's connection: "
            "on TCP the\n"
            "kernel's last data in or out (TCP_INFO), on UNIX streams each "
            "send of the\n"
            "client and each read of the command's output. An idle command, "
            "or one past\n"
            "--exec-timeout, is killed with its process group and the "
            "connection closed.\n\n"
            "A command of --exec gets SOCKIT_PROTO (tcp, udp, mptcp, unix, "
            "unixgram,\n"
            "unixpacket), SOCKIT_PEER and SOCKIT_LOCAL (endpoints), "
            "SOCKIT_PEER_ADDR,\n"
            "SOCKIT_LOCAL_ADDR (address or UNIX path), SOCKIT_PEER_PORT, "
            "SOCKIT_LOCAL_PORT\n"
            "(IP), and for UNIX stream peers SOCKIT_PEER_UID, "
            "SOCKIT_PEER_GID and\n"
            "SOCKIT_PEER_PID; with proxy= the peer is the one the header "
            "names.\n\n",
            cli_server_options_help);
    fprintf(out, "Exit status: 0 after a signal, 1 when an endpoint cannot be "
                 "bound, 2 on a usage error.\n");
}

enum {
    OPT_EXEC = OPT_COMMAND_FIRST,
    OPT_EXEC_TIMEOUT,
    OPT_MAX_CHILDREN,
    OPT_MAX_LINE,
};

static const struct option options[] = {
    {"service", required_argument, NULL, 's'},
    {"exec", required_argument, NULL, OPT_EXEC},
    {"exec-timeout", required_argument, NULL, OPT_EXEC_TIMEOUT},
    {"max-children", required_argument, NULL, OPT_MAX_CHILDREN},
    {"max-line", required_argument, NULL, OPT_MAX_LINE},
    CLI_SERVER_OPTIONS,
    {NULL, 0, NULL, 0},
};

static int parse_service(struct serve_args *a, const char *name)
{
    if (a->svc != NULL) {
        cli_error("serve: give one of -s and --exec, once");
        return -1;
    }
    a->svc = service_find(name);
    if (a->svc == NULL) {
        cli_error("serve: unknown service '%s' (try 'sockit serve --help')",
                  name);
        return -1;
    }
    return 0;
}

static int parse_exec(struct serve_args *a, const char *cmd)
{
    if (a->svc != NULL) {
        cli_error("serve: give one of -s and --exec, once");
        return -1;
    }
    a->svc = &service_exec;
    a->opts.exec_cmd = cmd;
    return 0;
}

/* Applies one option; returns 0, 1 for --help, or -1 on a usage error. */
static int apply_option(struct serve_args *a, int c, char **argv)
{
    unsigned long v;
    int ret;

    switch (c) {
    case 's':
        return parse_service(a, optarg);
    case OPT_EXEC:
        return parse_exec(a, optarg);
    case OPT_EXEC_TIMEOUT:
        a->exec_timeout_given = true;
        return cli_parse_seconds("--exec-timeout", optarg, &a->exec_timeout_ms);
    case OPT_MAX_CHILDREN:
        if (cli_parse_uint("--max-children", optarg, 0, 1000000, &v) < 0)
            return -1;
        a->exec.max_children = (unsigned)v;
        a->max_children_given = true;
        return 0;
    case OPT_MAX_LINE:
        if (cli_parse_uint("--max-line", optarg, 1, 1UL << 30, &v) < 0)
            return -1;
        a->opts.max_line = v;
        return 0;
    default:
        ret = cli_server_option(&a->cfg, c, optarg);
        if (ret == -2)
            cli_bad_option("serve", argv, c);
        return ret == -2 ? -1 : ret;
    }
}

/* Checks that the service has a mode for every endpoint's socket type. */
static int check_endpoints(const struct serve_args *a)
{
    char text[SK_ENDPOINT_STRLEN];

    for (size_t i = 0; i < a->neps; i++) {
        bool stream = sk_endpoint_is_stream(&a->eps[i]);
        if (stream ? service_has_stream(a->svc) : service_has_dgram(a->svc))
            continue;
        sk_endpoint_format(&a->eps[i], text, sizeof(text));
        cli_error("serve %s: service %s is not offered on %s endpoints", text,
                  a->svc->name, stream ? "stream" : "datagram");
        return -1;
    }
    return 0;
}

static int parse_endpoints(struct serve_args *a, int argc, char **argv)
{
    static const char *defaults[] = {"tcp://127.0.0.1:" DEFAULT_PORT_TEXT,
                                     "udp://127.0.0.1:" DEFAULT_PORT_TEXT};
    size_t n = (size_t)(argc - optind);

    a->eps = calloc(n > 0 ? n : 2, sizeof(*a->eps));
    a->lo = calloc(n > 0 ? n : 2, sizeof(*a->lo));
    if (a->eps == NULL || a->lo == NULL) {
        cli_error("serve: out of memory");
        return -1;
    }
    for (int i = optind; i < argc; i++) {
        int err = cli_parse_listen(argv[i], &a->eps[a->neps], &a->lo[a->neps]);
        a->neps++;
        if (err < 0)
            return err == -2 ? -3 : -1;
    }
    if (n > 0)
        return check_endpoints(a);
    /* No endpoint: the default port, on each socket type served. */
    for (size_t i = 0; i < 2; i++) {
        sk_endpoint_parse(&a->eps[a->neps], defaults[i], NULL);
        if (i == 0 ? service_has_stream(a->svc) : service_has_dgram(a->svc))
            a->neps++;
    }
    return 0;
}

static int parse_args(struct serve_args *a, int argc, char **argv)
{
    int c, ret;

    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":s:qvh", options, NULL)) != -1) {
        ret = apply_option(a, c, argv);
        if (ret != 0)
            return ret;
    }
    if (a->svc == NULL)
        a->svc = &service_timestamp;
    if (a->svc != &service_exec &&
        (a->exec_timeout_given || a->max_children_given)) {
        cli_error("serve: --%s needs --exec",
                  a->exec_timeout_given ? "exec-timeout" : "max-children");
        return -1;
    }
    return parse_endpoints(a, argc, argv);
}

/* The limits of --exec: on streams --max-children is the connections
 * served at once, the others wait in the backlog; --idle-timeout (with
 * the default of every server) is watched by the service, which alone
 * sees the traffic of a connection handed to a command. */
static void exec_limits(struct serve_args *a)
{
    struct exec_state *st = &a->exec;

    if (!a->max_children_given)
        st->max_children = MAX_CHILDREN_DEFAULT;
    a->cfg.max_active = st->max_children;
    st->stream_timeout_ms = a->exec_timeout_given ? a->exec_timeout_ms : 0;
    a->opts.exec_timeout_ms = a->exec_timeout_given
                                  ? a->exec_timeout_ms
                                  : EXEC_DGRAM_TIMEOUT_DEFAULT_MS;
    if (!cli_idle_given && a->cfg.idle_timeout_ms == 0)
        a->cfg.idle_timeout_ms = CLI_STREAM_IDLE_DEFAULT_MS;
    st->idle_ms = a->cfg.idle_timeout_ms;
    st->log = cli_verbose ? cli_log_line : NULL;
    a->opts.state = st;
}

static int serve(struct serve_args *a)
{
    int err, status;

    a->cfg.handler = a->svc->handler;
    a->cfg.data = &a->opts;
    if (a->svc == &service_exec)
        exec_limits(a);
    if (a->svc->setup != NULL && (err = a->svc->setup(&a->opts)) < 0) {
        /* The exec service fails only without pidfd_open(2). */
        cli_error("serve: %s%s",
                  a->svc == &service_exec ? "--exec needs pidfd_open(2): " : "",
                  sk_strerror(err));
        return EXIT_RUNTIME;
    }
    status = cli_run_server("serve", &a->cfg, a->eps, a->lo, a->neps,
                            a->svc->single_worker);
    if (a->svc->teardown != NULL)
        a->svc->teardown(&a->opts);
    return status;
}

int cmd_serve(int argc, char **argv)
{
    struct serve_args a = {
        .opts = {.max_line = MAX_LINE_DEFAULT},
    };
    int ret, status;

    ret = parse_args(&a, argc, argv);
    if (ret != 0) {
        if (ret > 0)
            usage(stdout);
        status = ret > 0 ? EXIT_OK : ret == -3 ? EXIT_RUNTIME : EXIT_USAGE;
    } else {
        status = serve(&a);
    }
    for (size_t i = 0; a.lo != NULL && i < a.neps; i++)
        sk_tls_free(a.lo[i].tls);
    free(a.lo);
    free(a.eps);
    return status;
}
