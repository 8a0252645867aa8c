/* serve.c -- `sockit serve`: bind every endpoint, print the "listening
 * on" lines, serve a built-in service or a command until SIGINT/SIGTERM. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../services/services.h"
#include "cli.h"

#define DEFAULT_PORT_TEXT "21567"
#define MAX_LINE_DEFAULT 65536
#define EXEC_TIMEOUT_DEFAULT_MS 5000

struct serve_args {
    const struct service *svc;
    struct service_opts opts;
    struct sk_server_config cfg;
    struct sk_endpoint *eps;
    size_t neps;
};

static void usage(FILE *out)
{
    fprintf(out,
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
            "      --exec-timeout S   kill a datagram's command after S "
            "seconds (default 5)\n"
            "      --threads N        worker threads (default: online CPUs)\n"
            "      --max-conns N      connections at once; more are closed "
            "at once\n"
            "      --idle-timeout S   close connections idle for S seconds\n"
            "      --max-line BYTES   longest line (default 65536); longer "
            "closes\n"
            "      --unix-mode MODE   octal mode of created UNIX socket "
            "files\n"
            "      --drain-timeout S  on SIGINT/SIGTERM, finish replies "
            "within S (default 2)\n"
            "  -q, --quiet            no 'listening on' lines\n"
            "  -v, --verbose          log connections and server events\n"
            "  -h, --help             this help\n\n"
            "Exit status: 0 after a signal, 1 when an endpoint cannot be "
            "bound, 2 on a usage error.\n");
}

enum {
    OPT_EXEC = 256,
    OPT_EXEC_TIMEOUT,
    OPT_THREADS,
    OPT_MAX_CONNS,
    OPT_IDLE,
    OPT_MAX_LINE,
    OPT_UNIX_MODE,
    OPT_DRAIN,
};

static const struct option options[] = {
    {"service", required_argument, NULL, 's'},
    {"exec", required_argument, NULL, OPT_EXEC},
    {"exec-timeout", required_argument, NULL, OPT_EXEC_TIMEOUT},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"max-conns", required_argument, NULL, OPT_MAX_CONNS},
    {"idle-timeout", required_argument, NULL, OPT_IDLE},
    {"max-line", required_argument, NULL, OPT_MAX_LINE},
    {"unix-mode", required_argument, NULL, OPT_UNIX_MODE},
    {"drain-timeout", required_argument, NULL, OPT_DRAIN},
    {"quiet", no_argument, NULL, 'q'},
    {"verbose", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, 'h'},
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

    switch (c) {
    case 's':
        return parse_service(a, optarg);
    case OPT_EXEC:
        return parse_exec(a, optarg);
    case OPT_EXEC_TIMEOUT:
        return cli_parse_seconds("--exec-timeout", optarg,
                                 &a->opts.exec_timeout_ms);
    case OPT_THREADS:
        if (cli_parse_uint("--threads", optarg, 1, 1024, &v) < 0)
            return -1;
        a->cfg.threads = (unsigned)v;
        return 0;
    case OPT_MAX_CONNS:
        if (cli_parse_uint("--max-conns", optarg, 1, 100000000, &v) < 0)
            return -1;
        a->cfg.max_conns = (unsigned)v;
        return 0;
    case OPT_IDLE:
        return cli_parse_seconds("--idle-timeout", optarg,
                                 &a->cfg.idle_timeout_ms);
    case OPT_MAX_LINE:
        if (cli_parse_uint("--max-line", optarg, 1, 1UL << 30, &v) < 0)
            return -1;
        a->opts.max_line = v;
        return 0;
    case OPT_UNIX_MODE:
        a->cfg.unix_mode_set = true;
        return cli_parse_mode("--unix-mode", optarg, &a->cfg.unix_mode);
    case OPT_DRAIN:
        if (cli_parse_seconds("--drain-timeout", optarg, &a->cfg.drain_ms) < 0)
            return -1;
        if (a->cfg.drain_ms == 0)
            a->cfg.drain_ms = 1; /* 0 would mean the default */
        return 0;
    case 'q':
        cli_quiet = true;
        return 0;
    case 'v':
        cli_verbose = true;
        return 0;
    case 'h':
        return 1;
    default:
        cli_bad_option("serve", argv, c);
        return -1;
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
    if (a->eps == NULL) {
        cli_error("serve: out of memory");
        return -1;
    }
    for (int i = optind; i < argc; i++)
        if (cli_parse_endpoint(argv[i], &a->eps[a->neps++]) < 0)
            return -1;
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
    return parse_endpoints(a, argc, argv);
}

static void log_line(void *data, const char *msg)
{
    fprintf(stderr, "sockit: %s\n", msg);
}

/* Binds every endpoint, or none: the first failure is reported. */
static int bind_all(struct sk_server *srv, const struct serve_args *a)
{
    struct sk_endpoint failed;
    int err;

    for (size_t i = 0; i < a->neps; i++) {
        err = sk_server_listen(srv, &a->eps[i], &failed);
        if (err < 0) {
            cli_error_ep(err <= SK_EAI_NONAME && err >= SK_EAI_OTHER
                             ? "resolve"
                             : "bind",
                         &failed, err);
            return -1;
        }
    }
    return 0;
}

static void print_listening(const struct sk_server *srv)
{
    char text[SK_ENDPOINT_STRLEN];
    struct sk_endpoint ep;

    for (size_t i = 0; i < sk_server_listener_count(srv); i++) {
        sk_server_listener_endpoint(srv, i, &ep);
        sk_endpoint_format(&ep, text, sizeof(text));
        cli_note("listening on %s", text);
    }
}

static int serve(struct serve_args *a)
{
    struct sk_server *srv;
    int err, status = EXIT_RUNTIME;

    a->cfg.handler = a->svc->handler;
    a->cfg.data = &a->opts;
    a->cfg.handle_signals = true;
    a->cfg.log = cli_verbose ? log_line : NULL;
    if (a->svc->setup != NULL && (err = a->svc->setup(&a->opts)) < 0) {
        cli_error("serve: %s", sk_strerror(err));
        return EXIT_RUNTIME;
    }
    err = sk_server_new(&srv, &a->cfg);
    if (err < 0) {
        cli_error("serve: %s", sk_strerror(err));
        goto out_teardown;
    }
    if (a->svc->single_worker)
        sk_server_set_single_worker(srv);
    if (bind_all(srv, a) == 0) {
        print_listening(srv);
        fflush(stderr);
        err = sk_server_run(srv);
        if (err < 0)
            cli_error("serve: %s", sk_strerror(err));
        else
            status = EXIT_OK;
    }
    sk_server_free(srv);
out_teardown:
    if (a->svc->teardown != NULL)
        a->svc->teardown(&a->opts);
    return status;
}

int cmd_serve(int argc, char **argv)
{
    struct serve_args a = {
        .opts = {.max_line = MAX_LINE_DEFAULT,
                 .exec_timeout_ms = EXEC_TIMEOUT_DEFAULT_MS},
    };
    int ret, status;

    ret = parse_args(&a, argc, argv);
    if (ret != 0) {
        if (ret > 0)
            usage(stdout);
        free(a.eps);
        return ret > 0 ? EXIT_OK : EXIT_USAGE;
    }
    status = serve(&a);
    free(a.eps);
    return status;
}
