/* cli.h -- what the subcommands of the sockit command share: the table of
 * commands, messages and exit codes, option value parsers. */
#ifndef SOCKIT_CLI_H
#define SOCKIT_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <sockit.h>

/* Exit codes of the contract. */
#define EXIT_OK 0
#define EXIT_RUNTIME 1
#define EXIT_USAGE 2

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
};

int cmd_serve(int argc, char **argv);
int cmd_connect(int argc, char **argv);
int cmd_relay(int argc, char **argv);
int cmd_bench(int argc, char **argv);

/* Prints "sockit: MESSAGE" on stderr as one line. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints "sockit: VERB ENDPOINT: REASON" for a library error code, with a
 * hint where one helps (privileged ports). */
void cli_error_ep(const char *verb, const struct sk_endpoint *ep, int err);
/* Prints an informational line on stderr unless quiet. */
void cli_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
extern bool cli_quiet;
extern bool cli_verbose;

/* Option values. Each returns 0, or prints a usage error and returns -1. */
int cli_parse_uint(const char *opt, const char *text, unsigned long min,
                   unsigned long max, unsigned long *out);
/* Seconds with fractions ("0.5"), as milliseconds. */
int cli_parse_seconds(const char *opt, const char *text, unsigned *ms);
int cli_parse_mode(const char *opt, const char *text, unsigned *mode);
/* Parses an endpoint with its options for one side and makes its TLS
 * context (*tls NULL without tls). Returns 0, -1 after a usage error, -2
 * when a TLS file cannot be used (each printed as one line). */
int cli_parse_endpoint_tls(const char *text, bool listening,
                           struct sk_endpoint *ep, struct sk_tls **tls);
/* As cli_parse_endpoint_tls() for a listening endpoint, with its mode= as
 * well: lo->tls is its context (NULL without tls), to free. */
int cli_parse_listen(const char *text, struct sk_endpoint *ep,
                     struct sk_listen_options *lo);
/* Reports an unknown option ('?') or a missing value (':') as getopt_long
 * returned it, with opterr off and ':' leading the short options. */
void cli_bad_option(const char *cmd, char **argv, int code);

/* ------------------------------------------ options of every server */

enum {
    OPT_THREADS = 256,
    OPT_MAX_CONNS,
    OPT_IDLE,
    OPT_UNIX_MODE,
    OPT_DRAIN,
    OPT_HANDSHAKE,
    OPT_ALLOW,
    OPT_DENY,
    OPT_MAX_PER_SOURCE,
    OPT_USER,
    OPT_LOG_JSON,
    OPT_METRICS,
    OPT_BACKEND,
    OPT_COMMAND_FIRST, /* a command's own long options start here */
};

/* The struct option entries of the options above, -q, -v and --help. */
#define CLI_SERVER_OPTIONS                                                     \
    {"threads", required_argument, NULL, OPT_THREADS},                         \
        {"max-conns", required_argument, NULL, OPT_MAX_CONNS},                 \
        {"idle-timeout", required_argument, NULL, OPT_IDLE},                   \
        {"unix-mode", required_argument, NULL, OPT_UNIX_MODE},                 \
        {"drain-timeout", required_argument, NULL, OPT_DRAIN},                 \
        {"handshake-timeout", required_argument, NULL, OPT_HANDSHAKE},         \
        {"allow", required_argument, NULL, OPT_ALLOW},                         \
        {"deny", required_argument, NULL, OPT_DENY},                           \
        {"max-per-source", required_argument, NULL, OPT_MAX_PER_SOURCE},       \
        {"user", required_argument, NULL, OPT_USER},                           \
        {"metrics", required_argument, NULL, OPT_METRICS},                     \
        {"backend", required_argument, NULL, OPT_BACKEND},                     \
        {"log-json", no_argument, NULL, OPT_LOG_JSON},                         \
        {"quiet", no_argument, NULL, 'q'},                                     \
        {"verbose", no_argument, NULL, 'v'},                                   \
    {                                                                          \
        "help", no_argument, NULL, 'h'                                         \
    }

/* Safe defaults of serve and relay, applied by cli_run_server() unless the
 * option was given (0 given means none). */
#define CLI_MAX_CONNS_DEFAULT 10000
#define CLI_STREAM_IDLE_DEFAULT_MS 300000
extern bool cli_max_conns_given;
extern bool cli_idle_given;

/* Help lines for CLI_SERVER_OPTIONS. */
extern const char cli_server_options_help[];

/* Applies one of CLI_SERVER_OPTIONS. Returns 0, 1 for --help, -1 after a
 * usage error (printed), or -2 when c is not one of them. */
int cli_server_option(struct sk_server_config *cfg, int c, const char *arg);
/* Creates a server from cfg (signals handled, -v logging), binds every
 * endpoint or none, prints the "listening on" lines, serves until a
 * signal. Returns the exit status; errors are printed as "sockit: CMD:". */
int cli_run_server(const char *cmd, struct sk_server_config *cfg,
                   const struct sk_endpoint *eps,
                   const struct sk_listen_options *lo, size_t n,
                   bool single_worker);
/* Binds every endpoint, or none: the first failure is printed. lo: NULL,
 * or each endpoint's options (cli_parse_listen()). */
int cli_bind_all(struct sk_server *srv, const struct sk_endpoint *eps,
                 const struct sk_listen_options *lo, size_t n);
/* Prints "listening on ENDPOINT" for each bound socket, unless quiet. */
void cli_print_listening(const struct sk_server *srv);
/* privs.c: --user USER[:GROUP], looked up (names or numbers; the group
 * defaults to the user's own), then taken with every supplementary group
 * dropped. Each returns 0, or -1 after printing why. */
struct cli_user {
    const char *spec;
    uid_t uid;
    gid_t gid;
};
int cli_user_lookup(const char *spec, struct cli_user *u);
int cli_user_become(const struct cli_user *u);

/* log.c: the log of serve and relay on stderr, "TIMESTAMP sockit: LINE"
 * or (cli_log_json, --log-json) one JSON object per line; thread-safe.
 * cli_log_record: the struct sk_server_config record hook.
 * cli_log_line: a line of the command's own (event "log").
 * cli_log_event: r with its line from fmt.
 * cli_warn_due: whether a warning limited by rl (one a second) is to be
 * logged now; r made one if so. */
extern bool cli_log_json;
void cli_log_record(void *data, const struct sk_log_record *r);
void cli_log_line(void *data, const char *msg);
void cli_log_event(const struct sk_log_record *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
bool cli_warn_due(struct sk_ratelimit *rl, struct sk_log_record *r);
/* Milliseconds on the monotonic clock. */
uint64_t cli_now_ms(void);

/* ------------------------------------ --metrics (metrics.c, metrics_text.c)
 *
 * An HTTP responder on its own thread (a second, single-worker server)
 * answering GET /metrics in the Prometheus text format 0.0.4: the
 * counters of every listener of the server, and the families commands
 * add (relay's). */

/* The body of one scrape. */
struct cli_metrics;
/* "# HELP NAME HELP" and "# TYPE NAME TYPE" (counter, gauge): once per
 * family, before its samples. */
void cli_metrics_family(struct cli_metrics *m, const char *name,
                        const char *type, const char *help);
/* One sample, NAME{L1="V1",...} VALUE: labels holds nlabels pairs of a
 * name and a value (escaped here). */
void cli_metrics_sample(struct cli_metrics *m, const char *name,
                        const char *const *labels, size_t nlabels,
                        uint64_t value);
/* The label of listener i of the server (its canonical endpoint), valid
 * from the bound hook below until the server is freed; NULL past them. */
const char *cli_metrics_listener(size_t i);
size_t cli_metrics_listener_count(void);

/* Families of a command's own. Each hook may be NULL. */
struct cli_metrics_source {
    /* Once the listeners are bound, before the server runs: the moment to
     * make per-worker state. Returns 0, or -1 after printing why. */
    int (*bound)(void *data, const struct sk_server *srv);
    /* At each scrape, on the responder's thread: reads only what the
     * workers publish atomically; cost per worker, never per client. */
    void (*scrape)(void *data, struct cli_metrics *m);
    /* Once the server has stopped, before it is freed. */
    void (*end)(void *data);
};
#define CLI_METRICS_SOURCES 4
/* Before cli_run_server(); returns 0, or -1 when the table is full. */
int cli_metrics_add(const struct cli_metrics_source *src, void *data);
/* Appends the families of the server's listeners (metrics_text.c). */
void cli_metrics_listeners(struct cli_metrics *m, const struct sk_server *srv);

/* What cli_run_server() does with --metrics (each a no-op without it). */
/* --metrics ENDPOINT, kept until cli_metrics_prepare(). */
void cli_metrics_option(const char *text);
/* Parses the endpoint (a stream one, its TLS files read): returns
 * EXIT_OK, or the exit status after printing why. */
int cli_metrics_prepare(void);
/* Makes and binds the responder for srv's bound listeners, then calls
 * every source's bound hook. Returns 0, or -1 after printing why. */
int cli_metrics_bind(const struct sk_server *srv);
/* As sk_server_set_owner() for the responder's socket file. */
int cli_metrics_set_owner(uid_t uid, gid_t gid);
/* Starts the responder's thread. Returns 0, or -1 after printing why. */
int cli_metrics_start(void);
/* "metrics on ENDPOINT", unless quiet. */
void cli_metrics_print(void);
/* Stops and joins the responder, calls the sources' end hooks, frees. */
void cli_metrics_end(void);

#endif
