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

/* A struct sk_server_config log hook printing "sockit: MSG". */
void cli_log_line(void *data, const char *msg);
/* Milliseconds on the monotonic clock. */
uint64_t cli_now_ms(void);

#endif
