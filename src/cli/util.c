/* util.c -- messages, exit codes and option parsing for the subcommands. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

bool cli_quiet;
bool cli_verbose;
bool cli_max_conns_given;
bool cli_idle_given;

void cli_error(const char *fmt, ...)
{
    char line[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "sockit: %s\n", line);
}

void cli_note(const char *fmt, ...)
{
    char line[1024];
    va_list ap;

    if (cli_quiet)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line);
}

void cli_error_ep(const char *verb, const struct sk_endpoint *ep, int err)
{
    char text[SK_ENDPOINT_STRLEN], why[256];
    char hint[SK_ENDPOINT_STRLEN + 64] = "";

    sk_endpoint_format(ep, text, sizeof(text));
    if ((err == -EACCES || err == -EPERM) && !sk_endpoint_is_unix(ep) &&
        ep->port > 0 && ep->port < 1024)
        snprintf(hint, sizeof(hint), " (ports below 1024 need privileges)");
    /* "unix://tmp/x" is the relative path tmp/x, which may surprise. */
    if (err == -ENOENT && sk_endpoint_is_unix(ep) && ep->path[0] != '/' &&
        ep->path[0] != '@' && strncmp(ep->path, "./", 2) != 0 &&
        strncmp(ep->path, "../", 3) != 0) {
        int scheme = (int)strcspn(text, ":") + 1;
        snprintf(hint, sizeof(hint),
                 " (a path relative to the working directory; an absolute "
                 "one begins with /, as in %.*s/%s)",
                 scheme, text, text + scheme);
    }
    cli_error("%s %s: %s%s", verb, text,
              sk_endpoint_strerror(ep, err, why, sizeof(why)), hint);
}

int cli_parse_uint(const char *opt, const char *text, unsigned long min,
                   unsigned long max, unsigned long *out)
{
    unsigned long v;
    char *end;

    errno = 0;
    v = strtoul(text, &end, 10);
    if (text[0] < '0' || text[0] > '9' || *end != '\0' || errno != 0 ||
        v < min || v > max) {
        cli_error("%s: expected a whole number %lu..%lu, got '%s'", opt, min,
                  max, text);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_parse_seconds(const char *opt, const char *text, unsigned *ms)
{
    double v;
    char *end;

    errno = 0;
    v = strtod(text, &end);
    if (end == text || *end != '\0' || errno != 0 || !isfinite(v) || v < 0 ||
        v > 1e6) {
        cli_error("%s: expected seconds 0..1000000, got '%s'", opt, text);
        return -1;
    }
    *ms = (unsigned)(v * 1000 + 0.5);
    return 0;
}

int cli_parse_mode(const char *opt, const char *text, unsigned *mode)
{
    unsigned long v;
    char *end;

    errno = 0;
    v = strtoul(text, &end, 8);
    if (text[0] < '0' || text[0] > '7' || *end != '\0' || errno != 0 ||
        v > 07777) {
        cli_error("%s: expected an octal mode such as 660, got '%s'", opt,
                  text);
        return -1;
    }
    *mode = (unsigned)v;
    return 0;
}

/* Parses text for one side: its TLS context made, its mode= in *mode
 * (mode NULL: refused). */
static int parse_endpoint(const char *text, bool listening,
                          struct sk_endpoint *ep, struct sk_tls **tls,
                          struct sk_listen_options *lo)
{
    static struct sk_endpoint_options opts; /* large; one parse at a time */
    char err[SK_TLS_ERRLEN];
    const char *why = NULL;

    *tls = NULL;
    if (sk_endpoint_parse_options(ep, &opts, text, &why) < 0 ||
        sk_endpoint_check_options(ep, &opts, listening, &why) < 0) {
        cli_error("%s: %s", text, why);
        return -1;
    }
    if (lo != NULL && (opts.given & SK_OPT_MODE)) {
        lo->unix_mode = opts.mode;
        lo->unix_mode_set = true;
    }
    if (ep->tls &&
        sk_tls_new(tls, ep, &opts, listening, err, sizeof(err)) < 0) {
        cli_error("%s: %s", text, err);
        return -2;
    }
    return 0;
}

int cli_parse_endpoint_tls(const char *text, bool listening,
                           struct sk_endpoint *ep, struct sk_tls **tls)
{
    return parse_endpoint(text, listening, ep, tls, NULL);
}

int cli_parse_listen(const char *text, struct sk_endpoint *ep,
                     struct sk_listen_options *lo)
{
    *lo = (struct sk_listen_options){0};
    return parse_endpoint(text, true, ep, &lo->tls, lo);
}

void cli_bad_option(const char *cmd, char **argv, int code)
{
    const char *arg = argv[optind - 1];

    if (code == ':')
        cli_error("%s: option '%s' needs a value (try 'sockit %s --help')", cmd,
                  arg, cmd);
    else if (optopt != 0 && optopt != '?')
        cli_error("%s: unknown option '-%c' (try 'sockit %s --help')", cmd,
                  optopt, cmd);
    else
        cli_error("%s: unknown option '%s' (try 'sockit %s --help')", cmd, arg,
                  cmd);
}

const char cli_server_options_help[] =
    "      --threads N        worker threads (default: online CPUs)\n"
    "      --max-conns N      connections at once (default 10000, 0: no "
    "limit);\n"
    "                         more are accepted and closed at once\n"
    "      --idle-timeout S   close stream connections idle for S seconds\n"
    "                         (default 300, 0: never)\n"
    "      --unix-mode MODE   octal mode of created UNIX socket files\n"
    "                         (default: as bind(2) makes them, 0777 less the "
    "umask)\n"
    "      --drain-timeout S  on SIGINT/SIGTERM, finish within S (default 2)\n"
    "      --handshake-timeout S  close clients that have not sent their\n"
    "                         PROXY header and finished the TLS handshake\n"
    "                         in S seconds (default 10)\n"
    "      --allow CIDR       serve only peers in CIDR (10.0.0.0/8, ::1, "
    "uid:N,\n"
    "                         gid:N for UNIX peers); repeatable (default: all "
    "peers)\n"
    "      --deny CIDR        refuse peers in CIDR (wins over --allow); "
    "repeatable\n"
    "                         (default: none)\n"
    "      --max-per-source N connections at once from one address (UNIX: one "
    "uid);\n"
    "                         more are closed at once (default 0: no limit)\n"
    "      --user USER[:GROUP] once bound and every file read, run as USER\n"
    "                         (default: none, the user that started sockit)\n"
    "      --metrics ENDPOINT answer GET /metrics (Prometheus text format) on "
    "a\n"
    "                         stream ENDPOINT: the counters of each listener\n"
    "                         (default: none)\n"
    "      --backend NAME     poller of the workers: epoll or io_uring\n"
    "                         (default: $SOCKIT_BACKEND or epoll; io_uring\n"
    "                         falls back to epoll where it is refused)\n"
    "  -q, --quiet            no 'listening on' (nor 'metrics on') lines\n"
    "                         (default: off)\n"
    "  -v, --verbose          log each connection as it opens and closes "
    "(default:\n"
    "                         off; events that drop service are logged "
    "anyway)\n"
    "      --log-json         each log line as one JSON object (default: "
    "text)\n"
    "  -h, --help             this help\n";

static struct sk_access *access_rules;
static volatile sig_atomic_t exit_status; /* of a run that has ended */

/* SIGINT or SIGTERM once the server is done (cli_run_server()). */
static void exit_now(int sig)
{
    (void)sig;
    _exit(exit_status);
}
static const char *user_spec;
static bool backend_given;

/* The backend NAME: what is "--backend " or "SOCKIT_BACKEND=", for the
 * message. */
static int parse_backend(const char *what, const char *arg,
                         enum sk_backend *backend)
{
    if (strcmp(arg, "epoll") == 0)
        *backend = SK_BACKEND_EPOLL;
    else if (strcmp(arg, "io_uring") == 0)
        *backend = SK_BACKEND_IO_URING;
    else {
        cli_error("%s%s: not a backend (epoll, io_uring)", what, arg);
        return -1;
    }
    return 0;
}

/* --allow and --deny: rules of one sk_access, made on first use. */
static int add_rule(struct sk_server_config *cfg, bool allow, const char *arg)
{
    const char *why = NULL;
    int err;

    if (access_rules == NULL && (err = sk_access_new(&access_rules)) < 0) {
        cli_error("%s", sk_strerror(err));
        return -1;
    }
    if ((err = sk_access_add(access_rules, allow, arg, &why)) < 0) {
        cli_error("%s %s: %s", allow ? "--allow" : "--deny", arg,
                  why != NULL ? why : sk_strerror(err));
        return -1;
    }
    cfg->access = access_rules;
    return 0;
}

int cli_server_option(struct sk_server_config *cfg, int c, const char *arg)
{
    unsigned long v;

    switch (c) {
    case OPT_ALLOW:
    case OPT_DENY:
        return add_rule(cfg, c == OPT_ALLOW, arg);
    case OPT_MAX_PER_SOURCE:
        if (cli_parse_uint("--max-per-source", arg, 0, 100000000, &v) < 0)
            return -1;
        cfg->max_per_source = (unsigned)v;
        return 0;
    case OPT_USER:
        user_spec = arg;
        return 0;
    case OPT_METRICS:
        cli_metrics_option(arg);
        return 0;
    case OPT_BACKEND:
        backend_given = true;
        return parse_backend("--backend ", arg, &cfg->backend);
    case OPT_THREADS:
        if (cli_parse_uint("--threads", arg, 1, 1024, &v) < 0)
            return -1;
        cfg->threads = (unsigned)v;
        return 0;
    case OPT_MAX_CONNS:
        if (cli_parse_uint("--max-conns", arg, 0, 100000000, &v) < 0)
            return -1;
        cfg->max_conns = (unsigned)v;
        cli_max_conns_given = true;
        return 0;
    case OPT_IDLE:
        cli_idle_given = true;
        return cli_parse_seconds("--idle-timeout", arg, &cfg->idle_timeout_ms);
    case OPT_UNIX_MODE:
        cfg->unix_mode_set = true;
        return cli_parse_mode("--unix-mode", arg, &cfg->unix_mode);
    case OPT_HANDSHAKE:
        if (cli_parse_seconds("--handshake-timeout", arg,
                              &cfg->handshake_timeout_ms) < 0)
            return -1;
        if (cfg->handshake_timeout_ms == 0)
            cfg->handshake_timeout_ms = UINT32_MAX; /* 0: the default */
        return 0;
    case OPT_DRAIN:
        if (cli_parse_seconds("--drain-timeout", arg, &cfg->drain_ms) < 0)
            return -1;
        if (cfg->drain_ms == 0)
            cfg->drain_ms = 1; /* 0 would mean the default */
        return 0;
    case 'q':
        cli_quiet = true;
        return 0;
    case 'v':
        cli_verbose = true;
        return 0;
    case OPT_LOG_JSON:
        cli_log_json = true;
        return 0;
    case 'h':
        return 1;
    default:
        return -2;
    }
}

int cli_bind_all(struct sk_server *srv, const struct sk_endpoint *eps,
                 const struct sk_listen_options *lo, size_t n)
{
    struct sk_endpoint failed;
    int err;

    for (size_t i = 0; i < n; i++) {
        err = sk_server_listen_with(srv, &eps[i], lo != NULL ? &lo[i] : NULL,
                                    &failed);
        if (err < 0) {
            bool resolve = err <= SK_EAI_NONAME && err >= SK_EAI_OTHER;
            cli_error_ep(resolve ? "resolve" : "bind", &failed, err);
            return -1;
        }
    }
    return 0;
}

/* --unix-mode names a file's mode: an abstract name has no file. */
static int check_unix_mode(const struct sk_server_config *cfg,
                           const struct sk_endpoint *eps, size_t n)
{
    char text[SK_ENDPOINT_STRLEN];

    for (size_t i = 0; cfg->unix_mode_set && i < n; i++) {
        if (sk_endpoint_is_unix(&eps[i]) && eps[i].path[0] == '@') {
            sk_endpoint_format(&eps[i], text, sizeof(text));
            cli_error("%s: --unix-mode does not apply to an abstract name",
                      text);
            return -1;
        }
    }
    return 0;
}

/* --user: the socket files made are the user's, then the process is. */
static int become(struct sk_server *srv, const struct cli_user *user)
{
    int err = sk_server_set_owner(srv, user->uid, user->gid);

    if (err == 0)
        err = cli_metrics_set_owner(user->uid, user->gid);
    if (err < 0) {
        cli_error("--user %s: socket files: %s", user->spec, sk_strerror(err));
        return -1;
    }
    return cli_user_become(user);
}

/* The server of cli_run_server(), for its ready hook. */
static struct sk_server *running;

static void on_ready(void *data)
{
    (void)data;
    cli_print_listening(running);
    cli_metrics_print();
}

/* SOCKIT_BACKEND, the default of --backend, read and then removed (the
 * server's own setting: --exec children do not see it), before any
 * thread starts. */
static int backend_from_environment(struct sk_server_config *cfg)
{
    const char *name = getenv("SOCKIT_BACKEND");
    int err = 0;

    if (name == NULL)
        return 0;
    if (!backend_given && *name != '\0')
        err = parse_backend("SOCKIT_BACKEND=", name, &cfg->backend);
    unsetenv("SOCKIT_BACKEND");
    return err;
}

int cli_run_server(const char *cmd, struct sk_server_config *cfg,
                   const struct sk_endpoint *eps,
                   const struct sk_listen_options *lo, size_t n,
                   bool single_worker)
{
    struct cli_user user;
    struct sk_server *srv;
    int err, status = EXIT_RUNTIME;

    if (check_unix_mode(cfg, eps, n) < 0)
        return EXIT_USAGE;
    if (backend_from_environment(cfg) < 0)
        return EXIT_USAGE;
    if ((err = cli_metrics_prepare()) != EXIT_OK)
        return err;
    cfg->handle_signals = true;
    cfg->record = cli_log_record;
    cfg->record_all = cli_verbose;
    cfg->notify = true;
    cfg->ready = on_ready;
    if (!cli_max_conns_given && cfg->max_conns == 0)
        cfg->max_conns = CLI_MAX_CONNS_DEFAULT;
    if (!cli_idle_given && cfg->idle_timeout_ms == 0)
        cfg->idle_timeout_ms = CLI_STREAM_IDLE_DEFAULT_MS;
    if (user_spec != NULL && cli_user_lookup(user_spec, &user) < 0)
        return EXIT_RUNTIME;
    if ((err = sk_server_new(&srv, cfg)) < 0) {
        if (getenv("NOTIFY_SOCKET") != NULL &&
            (err == -EAFNOSUPPORT || err == -ENAMETOOLONG))
            cli_error("NOTIFY_SOCKET=%s: %s", getenv("NOTIFY_SOCKET"),
                      sk_strerror(err));
        else
            cli_error("%s: %s", cmd, sk_strerror(err));
        return EXIT_RUNTIME;
    }
    /* Read: --exec children must not tell systemd anything. */
    unsetenv("NOTIFY_SOCKET");
    if (single_worker)
        sk_server_set_single_worker(srv);
    /* --metrics binds before --user, and serves once it took effect. */
    if (cli_bind_all(srv, eps, lo, n) == 0 && cli_metrics_bind(srv) == 0 &&
        (user_spec == NULL || become(srv, &user) == 0) &&
        cli_metrics_start() == 0) {
        running = srv;
        err = sk_server_run(srv);
        running = NULL;
        if (err < 0)
            cli_error("%s: %s", cmd, sk_strerror(err));
        else
            status = EXIT_OK;
    }
    cli_metrics_end();
    /* The server gives SIGINT and SIGTERM back as it goes: one more of
     * them now ends at once the exit already on its way, with its status,
     * rather than by the signal's default action (or not at all, while
     * the command cleans up). */
    if (cfg->handle_signals) {
        exit_status = status;
        signal(SIGINT, exit_now);
        signal(SIGTERM, exit_now);
    }
    sk_server_free(srv);
    sk_access_free(access_rules);
    access_rules = NULL;
    cfg->access = NULL;
    return status;
}

uint64_t cli_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void cli_print_listening(const struct sk_server *srv)
{
    char text[SK_ENDPOINT_STRLEN];
    struct sk_endpoint ep;

    for (size_t i = 0; i < sk_server_listener_count(srv); i++) {
        sk_server_listener_endpoint(srv, i, &ep);
        sk_endpoint_format(&ep, text, sizeof(text));
        cli_note("listening on %s", text);
    }
    fflush(stderr);
}
