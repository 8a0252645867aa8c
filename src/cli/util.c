/* util.c -- messages, exit codes and option parsing for the subcommands. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

bool cli_quiet;
bool cli_verbose;

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
    char text[SK_ENDPOINT_STRLEN];
    const char *hint = "";

    sk_endpoint_format(ep, text, sizeof(text));
    if ((err == -EACCES || err == -EPERM) && !sk_endpoint_is_unix(ep) &&
        ep->port > 0 && ep->port < 1024)
        hint = " (ports below 1024 need privileges)";
    cli_error("%s %s: %s%s", verb, text, sk_strerror(err), hint);
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

int cli_parse_endpoint(const char *text, struct sk_endpoint *ep)
{
    const char *why = NULL;

    if (sk_endpoint_parse(ep, text, &why) < 0) {
        cli_error("%s: %s", text, why);
        return -1;
    }
    return 0;
}

void cli_bad_option(const char *cmd, char **argv, int code)
{
    const char *arg = argv[optind - 1];

    if (code == ':')
        cli_error("%s: option '%s' needs a value (try 'sockit %s --help')",
                  cmd, arg, cmd);
    else if (optopt != 0 && optopt != '?')
        cli_error("%s: unknown option '-%c' (try 'sockit %s --help')", cmd,
                  optopt, cmd);
    else
        cli_error("%s: unknown option '%s' (try 'sockit %s --help')", cmd,
                  arg, cmd);
}
