/* connect.c -- `sockit connect ENDPOINT`: a netcat-like client. Streams
 * copy stdin to the socket and the socket to stdout; datagram endpoints
 * send one datagram per line and print each reply on a line; message
 * connections (unixpacket:) send a message per line, print each one back
 * on a line, and end as streams do (connect_stream.c). */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "connect.h"

#define CONNECT_TIMEOUT_DEFAULT_MS 10000
#define DGRAM_WAIT_DEFAULT_MS 1000

struct connect_args {
    struct sk_endpoint ep;
    struct sk_tls *tls;
    unsigned wait_ms;
    bool wait_set;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sockit connect [OPTIONS] ENDPOINT\n\n"
            "Stream endpoints: stdin goes to the socket and the socket to "
            "stdout, byte for byte;\nat the end of stdin the sending side is "
            "shut down and reading goes on until the\npeer closes.\n"
            "Datagram endpoints: each line of stdin (without its LF) is one "
            "datagram; each\nreply is printed on a line; after the end of "
            "stdin, replies are awaited for -w.\n"
            "Message endpoints (unixpacket:): each line of stdin (without "
            "its LF) is one\nmessage of at most 65536 bytes, an empty line "
            "none (an empty message would\nread as the end); each message "
            "back is printed on a line; at the end of stdin\nthe sending "
            "side is shut down and reading goes on until the peer closes.\n\n"
            "options:\n"
            "  -w, --wait S     connect timeout for streams and messages "
            "(default 10), wait\n                   for replies after the "
            "end of stdin for datagrams (default 1);\n                   "
            "fractions allowed\n"
            "  -q, --quiet      no messages but errors\n"
            "  -v, --verbose    say when connected\n"
            "  -h, --help       this help\n\n"
            "Exit status: 0 on a clean end, 1 on a failure to connect, a "
            "reset or an error,\n2 on a usage error.\n");
}

static const struct option options[] = {
    {"wait", required_argument, NULL, 'w'},
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
    while ((c = getopt_long(argc, argv, ":w:qvh", options, NULL)) != -1) {
        switch (c) {
        case 'w':
            if (cli_parse_seconds("-w", optarg, &a->wait_ms) < 0)
                return -1;
            a->wait_set = true;
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

/* ------------------------------------------------------------ streams */

static int fail(const struct connect_args *a, int err)
{
    cli_error_ep("connect", &a->ep, err);
    return EXIT_RUNTIME;
}

/* ---------------------------------------------------------- datagrams */

/* Prints one reply, with a LF unless it ends in one. */
static int print_reply(int sock)
{
    static char buf[SK_DGRAM_MAX];
    ssize_t n = recv(sock, buf, sizeof(buf), MSG_DONTWAIT);

    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : -errno;
    fwrite(buf, 1, (size_t)n, stdout);
    if (n == 0 || buf[n - 1] != '\n')
        fputc('\n', stdout);
    fflush(stdout);
    return 0;
}

/* Sends every complete line held in buf; returns bytes consumed or -errno.
 * at_eof: the rest, if any, is a last line too. */
static ssize_t send_lines(int sock, const char *buf, size_t len, bool at_eof)
{
    size_t used = 0;

    while (used < len) {
        const char *lf = memchr(buf + used, '\n', len - used);
        size_t n = lf != NULL ? (size_t)(lf - buf - used) : len - used;
        if (lf == NULL && !at_eof)
            break;
        if (send(sock, buf + used, n, MSG_NOSIGNAL) < 0)
            return -errno;
        used += n + (lf != NULL);
    }
    return (ssize_t)used;
}

static int pump_dgram(const struct connect_args *a, int sock)
{
    static char line[SK_DGRAM_MAX + 1];
    size_t len = 0;
    int64_t deadline = -1;
    int err = 0;

    while (err == 0) {
        struct pollfd p[2] = {{.fd = deadline < 0 ? 0 : -1, .events = POLLIN},
                              {.fd = sock, .events = POLLIN}};
        int wait = deadline < 0 ? -1 : (int)(deadline - (int64_t)cli_now_ms());
        if (deadline >= 0 && wait <= 0)
            return EXIT_OK;
        if (poll(p, 2, wait) < 0) {
            err = errno == EINTR ? 0 : -errno;
            continue;
        }
        if (p[1].revents)
            err = print_reply(sock);
        if (err != 0 || !p[0].revents)
            continue;
        ssize_t n = read(0, line + len, sizeof(line) - 1 - len);
        if (n < 0) {
            err = errno == EINTR || errno == EAGAIN ? 0 : -errno;
            continue;
        }
        len += (size_t)n;
        ssize_t used = send_lines(sock, line, len, n == 0);
        if (used < 0) {
            err = (int)used;
            continue;
        }
        memmove(line, line + used, len - (size_t)used);
        len -= (size_t)used;
        if (len == sizeof(line) - 1)
            err = -EMSGSIZE;
        if (n == 0)
            deadline = (int64_t)cli_now_ms() + a->wait_ms;
    }
    return fail(a, err);
}

static int run(struct connect_args *a)
{
    char text[SK_ENDPOINT_STRLEN];
    int ret, sock;

    if (!sk_endpoint_is_unix(&a->ep) && a->ep.host[0] == '\0') {
        sk_endpoint_format(&a->ep, text, sizeof(text));
        cli_error("%s: a connecting side needs a host", text);
        return EXIT_USAGE;
    }
    if (!a->wait_set)
        a->wait_ms = sk_endpoint_is_stream(&a->ep) ? CONNECT_TIMEOUT_DEFAULT_MS
                                                   : DGRAM_WAIT_DEFAULT_MS;
    if (sk_endpoint_is_stream(&a->ep)) {
        ret = connect_stream(&a->ep, a->tls, a->wait_ms);
        return ret == 0 ? EXIT_OK : ret > 0 ? EXIT_RUNTIME : fail(a, ret);
    }
    sock = sk_connect(&a->ep, -1);
    if (sock < 0)
        return fail(a, sock);
    if (cli_verbose) {
        sk_endpoint_format(&a->ep, text, sizeof(text));
        fprintf(stderr, "sockit: connected to %s\n", text);
    }
    ret = pump_dgram(a, sock);
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
