/* main.c -- the sockit command: the table of subcommands. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "cli.h"

static int cmd_help(int argc, char **argv);

static const struct command commands[] = {
    {"serve", cmd_serve, "serve a built-in service or a command on endpoints"},
    {"connect", cmd_connect,
     "talk to an endpoint (or listen: -l), stdin to it and it to stdout"},
    {"relay", cmd_relay,
     "forward every client of one endpoint to one of several others"},
    {"bench", cmd_bench, "load an echo service and verify every reply"},
    {"help", cmd_help, "this usage, or what 'COMMAND --help' prints"},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const struct command *find_command(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(name, commands[i].name) == 0)
            return &commands[i];
    return NULL;
}

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
                 "       sockit help [COMMAND]\n"
                 "       sockit --help | --version\n\ncommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out,
            "\nendpoints:\n"
            "  tcp://HOST:PORT  tcp4://...  tcp6://...  (IPv6 as [::1])\n"
            "  udp://HOST:PORT  udp4://...  udp6://...\n"
            "  unix:PATH  unix:@ABSTRACT  unixgram:PATH  unixgram:@ABSTRACT\n"
            "  unixpacket:PATH  unixpacket:@ABSTRACT\n"
            "  mptcp://HOST:PORT  tls://HOST:PORT  fd:N  sd:  sd:NAME\n"
            "  options follow a comma: tcp://:8443,tls,cert=FILE (see "
            "sockit(1))\n"
            "  A PATH not beginning with / is relative to the working "
            "directory, also after\n  //: unix://tmp/x is tmp/x, "
            "unix:///tmp/x is /tmp/x.\n"
            "\n'sockit help COMMAND' (or 'sockit COMMAND --help') describes "
            "a command.\n");
}

/* `sockit help [COMMAND]`: the usage on stdout, or exactly what
 * `sockit COMMAND --help` prints, as that command prints it. `help help`
 * and `help --help` are the usage too: it is where help is described. */
static int cmd_help(int argc, char **argv)
{
    static char help_flag[] = "--help";
    const char *name = argc > 1 ? argv[1] : "help";
    const struct command *cmd;

    if (argc > 2) {
        cli_error("help: expected at most one COMMAND (try 'sockit --help')");
        return EXIT_USAGE;
    }
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0)
        name = "help";
    if (name[0] == '-') {
        cli_error("help: unknown option '%s' (try 'sockit --help')", name);
        return EXIT_USAGE;
    }
    cmd = find_command(name);
    if (cmd == NULL) {
        cli_error("help: unknown command '%s' (try 'sockit --help')", name);
        return EXIT_USAGE;
    }
    if (cmd->run == cmd_help) {
        usage(stdout);
        return EXIT_OK;
    }
    /* The command parses "--help" as its own first option and prints. */
    char *sub[] = {argv[1], help_flag, NULL};
    return cmd->run(2, sub);
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
    const struct command *cmd = find_command(argv[1]);
    if (cmd != NULL)
        return cmd->run(argc - 1, argv + 1);
    if (argv[1][0] == '-')
        cli_error("unknown option '%s' (try 'sockit --help')", argv[1]);
    else
        cli_error("unknown command '%s' (try 'sockit --help')", argv[1]);
    return EXIT_USAGE;
}
