/* main.c -- the sockit command: the table of subcommands. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "cli.h"

static const struct command commands[] = {
    {"serve", cmd_serve, "serve a built-in service or a command on endpoints"},
    {"connect", cmd_connect, "talk to an endpoint: stdin to it, it to stdout"},
    {"relay", cmd_relay, "forward every client of one endpoint to another"},
    {"bench", cmd_bench, "load an echo service and verify every reply"},
};

/* Servers hold a descriptor per client, bench one per connection: the soft
 * limit goes up to the hard one, which only privilege could raise. */
static void raise_fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void usage(FILE *out)
{
    fprintf(out, "usage: sockit COMMAND [OPTIONS] [ENDPOINT...]\n"
                 "       sockit --help | --version\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out,
            "\nendpoints:\n"
            "  tcp://HOST:PORT  tcp4://...  tcp6://...  (IPv6 as [::1])\n"
            "  udp://HOST:PORT  udp4://...  udp6://...\n"
            "  unix:PATH  unix:@ABSTRACT  unixgram:PATH  unixgram:@ABSTRACT\n"
            "\n'sockit COMMAND --help' describes a command.\n");
}

int main(int argc, char **argv)
{
    /* Writes to a closed peer must fail with EPIPE, not end the process. */
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("sockit %s\n", SK_VERSION);
        return EXIT_OK;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    if (argv[1][0] == '-')
        cli_error("unknown option '%s' (try 'sockit --help')", argv[1]);
    else
        cli_error("unknown command '%s' (try 'sockit --help')", argv[1]);
    return EXIT_USAGE;
}
