/* connect.c -- `sockit connect ENDPOINT`: a netcat-like client. Streams
 * copy stdin to the socket and the socket to stdout; datagram endpoints
 * send one datagram per line and print each reply on a line
 * (connect_dgram.c); message connections (unixpacket:) send a message per
 * line, print each one back on a line, and end as streams do
 * (connect_stream.c). -z only checks that a stream endpoint accepts. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "connect.h"

#define CONNECT_TIMEOUT_DEFAULT_MS 10000
#define DGRAM_WAIT_DEFAULT_MS 1000

enum { OPT_STRIP_LF = 256 };

struct connect_args {
    struct sk_endpoint ep;
    struct sk_tls *tls;
    struct connect_opts o;
    bool wait_set;
    bool zero; /* -z */
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sockit connect [OPTIONS] ENDPOINT\n\n"
            "Stream endpoints: stdin goes to the socket and the socket to "
            "stdout, byte for byte;\nat the end of stdin the sending side is "
            "shut down and reading goes on until the\npeer closes.\n"
            "Datagram endpoints: each line of stdin, with its LF (as nc "
            "sends it), is one\ndatagram; each reply is printed on a line; "
            "after the end of stdin, replies are\nawaited for -w.\n"
            "Message endpoints (unixpacket:): each line of stdin (without "
            "its LF) is one\nmessage of at most 65536 bytes, an empty line "
            "none (an empty message would\nread as the end); each message "
            "back is printed on a line; at the end of stdin\nthe sending "
            "side is shut down and reading goes on until the peer closes.\n\n"
            "options:\n"
            "  -w, --wait S      connect timeout for streams and messages "
            "(default 10), wait\n                    for replies after the "
            "end of stdin for datagrams (default 1);\n                    "
            "fractions allowed\n"
            "  -z, --zero        only check that a stream endpoint accepts a "
            "connection:\n                    connect, send nothing, close; "
            "exit 0 or 1 (default: off)\n"
            "  -C, --crlf        send each LF of stdin as CRLF (a CRLF stays "
            "as it is);\n                    streams and datagrams "
            "(default: off)\n"
            "  -i, --idle S      end (exit 0) once nothing has moved either "
            "way for S\n                    seconds; fractions allowed "
            "(default: none)\n"
            "      --strip-lf    datagrams: send each line without its LF "
            "(default: with)\n"
            "  -q, --quiet       no messages but errors (default: off)\n"
            "  -v, --verbose     say when connected (default: off)\n"
            "  -h, --help        this help\n\n"
            "A closed stdout (`| head`) ends connect quietly with exit 0; "
            "another stdout\nerror is `sockit: stdout: REASON`, exit 1.\n"
            "Exit status: 0 on a clean end, 1 on a failure to connect, a "
            "reset or an error,\n2 on a usage error.\n");
}

static const struct option options[] = {
    {"wait", required_argument, NULL, 'w'},
    {"zero", no_argument, NULL, 'z'},
    {"crlf", no_argument, NULL, 'C'},
    {"idle", required_argument, NULL, 'i'},
    {"strip-lf", no_argument, NULL, OPT_STRIP_LF},
    {"quiet", no_argument, NULL, 'q'},
    {"verbose", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* Returns 0, 1 for --help, -1 on a usage error. */
static int parse_args(struct connect_args *a, int argc, char **argv)
{
    int c;

    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":w:zCi:qvh", options, NULL)) != -1) {
        switch (c) {
        case 'w':
            if (cli_parse_seconds("-w", optarg, &a->o.timeout_ms) < 0)
                return -1;
            a->wait_set = true;
            break;
        case 'z':
            a->zero = true;
            break;
        case 'C':
            a->o.crlf = true;
            break;
        case 'i':
            if (cli_parse_seconds("-i", optarg, &a->o.idle_ms) < 0)
                return -1;
            break;
        case OPT_STRIP_LF:
            a->o.strip_lf = true;
            break;
        case 'q':
            cli_quiet = true;
            break;
        case 'v':
            cli_verbose = true;
            break;
        case 'h':
            return 1;
        default:
            cli_bad_option("connect", argv, c);
            return -1;
        }
    }
    if (argc - optind != 1) {
        cli_error("connect: expected one ENDPOINT (try 'sockit connect "
                  "--help')");
        return -1;
    }
    return cli_parse_endpoint_tls(argv[optind], false, &a->ep, &a->tls);
}

static int fail(const struct connect_args *a, int err)
{
    cli_error_ep("connect", &a->ep, err);
    return EXIT_RUNTIME;
}

static void announce(const struct connect_args *a)
{
    char text[SK_ENDPOINT_STRLEN];

    if (!cli_verbose)
        return;
    sk_endpoint_format(&a->ep, text, sizeof(text));
    fprintf(stderr, "sockit: connected to %s\n", text);
}

/* -z: the connection is made (within -w) and closed, nothing sent; over
 * TLS only the TCP connection is checked, as nc -z does. */
static int check_accepts(const struct connect_args *a)
{
    int sock = sk_connect(&a->ep, (int)a->o.timeout_ms);

    if (sock < 0)
        return fail(a, sock);
    announce(a);
    close(sock);
    return EXIT_OK;
}

static int run(struct connect_args *a)
{
    char text[SK_ENDPOINT_STRLEN];
    bool stream = sk_endpoint_is_stream(&a->ep);
    int ret, sock;

    sk_endpoint_format(&a->ep, text, sizeof(text));
    if (!sk_endpoint_is_unix(&a->ep) && a->ep.host[0] == '\0') {
        cli_error("%s: a connecting side needs a host", text);
        return EXIT_USAGE;
    }
    if (a->zero && !stream) {
        cli_error("connect: -z checks stream endpoints only, not %s", text);
        return EXIT_USAGE;
    }
    if (!a->wait_set)
        a->o.timeout_ms =
            stream ? CONNECT_TIMEOUT_DEFAULT_MS : DGRAM_WAIT_DEFAULT_MS;
    if (a->zero)
        return check_accepts(a);
    if (stream) {
        ret = connect_stream(&a->ep, a->tls, &a->o);
        return ret == 0 ? EXIT_OK : ret > 0 ? EXIT_RUNTIME : fail(a, ret);
    }
    sock = sk_connect(&a->ep, -1);
    if (sock < 0)
        return fail(a, sock);
    announce(a);
    ret = connect_dgram(&a->ep, sock, &a->o);
    close(sock);
    return ret;
}

int cmd_connect(int argc, char **argv)
{
    struct connect_args a = {0};
    int ret;

    ret = parse_args(&a, argc, argv);
    if (ret != 0) {
        if (ret > 0)
            usage(stdout);
        sk_tls_free(a.tls);
        return ret > 0 ? EXIT_OK : ret == -2 ? EXIT_RUNTIME : EXIT_USAGE;
    }
    ret = run(&a);
    sk_tls_free(a.tls);
    return ret;
}
