/* cli.h -- what the subcommands of the sockit command share: the table of
 * commands, messages and exit codes, option value parsers. */
#ifndef SOCKIT_CLI_H
#define SOCKIT_CLI_H

#include <stdbool.h>
#include <stddef.h>

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
/* Parses an endpoint, printing "sockit: TEXT: WHY" on failure. */
int cli_parse_endpoint(const char *text, struct sk_endpoint *ep);
/* Reports an unknown option ('?') or a missing value (':') as getopt_long
 * returned it, with opterr off and ':' leading the short options. */
void cli_bad_option(const char *cmd, char **argv, int code);

#endif
