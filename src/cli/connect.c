/* connect.c -- `sockit connect ENDPOINT`: a netcat-like client. Streams
 * copy stdin to the socket and the socket to stdout; datagram endpoints
 * send one datagram per line and print each reply on a line
 * (connect_dgram.c); message connections (unixpacket:) send a message per
 * line, print each one back on a line, and end as streams do
 * (connect_stream.c). -z only checks that a stream endpoint accepts; -l
 * listens and takes a client instead (connect_listen.c); -s binds the
 * socket to a source address first. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "connect.h"

#define CONNECT_TIMEOUT_DEFAULT_MS 10000
#define DGRAM_WAIT_DEFAULT_MS 1000

enum { OPT_STRIP_LF = 256 };

struct connect_args {
    struct sk_endpoint ep;
    struct sk_tls *tls;
    struct sk_listen_options lo; /* -l: the endpoint's options */
    struct connect_opts o;
    bool wait_set;
    bool zero;               /* -z */
    bool listen;             /* -l */
    const char *source_text; /* -s */
    struct sk_endpoint source_ep;
    struct sk_addr source;
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
            "  -l, --listen      listen on ENDPOINT instead (port 0: any; "
            "prints 'listening on\n                    ENDPOINT' on stderr "
            "unless -q), take one client, then as\n                    "
            "above; a datagram endpoint answers the sender of the first\n"
            "                    datagram (default: off)\n"
            "  -k, --keep-open   with -l: take clients one after another "
            "(the next waits\n                    in the backlog) until "
            "SIGINT or SIGTERM; once stdin has\n                    ended, "
            "each new client has its sending side shut at once;\n"
            "                    streams only (default: off)\n"
            "  -s, --source A    bind to A before connecting: an address "
            "(127.0.0.2, ::1,\n                    HOST:PORT, [V6]:PORT; "
            "port 0 if none) or, for UNIX endpoints,\n                    a "
            "path or @name, made and removed again (unixgram: where\n"
            "                    replies come back) (default: any)\n"
            "  -x, --hex         dump both directions on stderr as they move, "
            "one line per\n                    16 bytes: '>' sent or '<' "
            "received, the offset in that\n                    direction "
            "(8 hex digits), the bytes in hex, then as ASCII\n"
            "                    ('.' if not printable); each write, read, "
            "datagram or\n                    message starts a line, e.g.\n"
            "                    > 00000000  68 69 0a"
            "                                          "
            "hi.\n                    (default: off)\n"
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
    {"listen", no_argument, NULL, 'l'},
    {"keep-open", no_argument, NULL, 'k'},
    {"source", required_argument, NULL, 's'},
    {"hex", no_argument, NULL, 'x'},
    {"quiet", no_argument, NULL, 'q'},
    {"verbose", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* The options that exclude each other. Returns 0, or -1 after saying
 * why. */
static int check_combination(const struct connect_args *a)
{
    const char *bad = NULL;

    if (a->o.keep && !a->listen)
        bad = "-k needs -l";
    else if (a->listen && a->zero)
        bad = "-l and -z exclude each other";
    else if (a->listen && a->source_text != NULL)
        bad = "-l and -s exclude each other (-l binds ENDPOINT itself)";
    if (bad == NULL)
        return 0;
    cli_error("connect: %s", bad);
    return -1;
}

/* -s for ep's kind: a host literal, HOST:PORT or [V6]:PORT (port 0 when
 * none) for an IP endpoint, a path or @name for a UNIX one, into
 * a->source_ep (with ep's scheme). Returns 0, or -1 after a usage
 * error. */
static int parse_source(struct connect_args *a)
{
    char text[SK_HOST_MAX + SK_PATH_MAX + 16];
    const char *t = a->source_text, *why = "not an address";
    const char *colon = strchr(t, ':');
    size_t len = strlen(t);

    if (sk_endpoint_is_unix(&a->ep))
        snprintf(text, sizeof(text), "unix:%s", t);
    else if (t[0] == '[' && t[len - 1] == ']')
        snprintf(text, sizeof(text), "tcp://%s:0", t);
    else if (t[0] != '[' && colon != NULL && strchr(colon + 1, ':') != NULL)
        snprintf(text, sizeof(text), "tcp://[%s]:0", t);
    else if (colon == NULL)
        snprintf(text, sizeof(text), "tcp://%s:0", t);
    else
        snprintf(text, sizeof(text), "tcp://%s", t);
    if (len == 0 || len > SK_HOST_MAX + SK_PATH_MAX ||
        sk_endpoint_parse(&a->source_ep, text, &why) < 0) {
        cli_error("connect: -s %s: %s", t, len == 0 ? "empty" : why);
        return -1;
    }
    a->source_ep.scheme = a->ep.scheme;
    return 0;
}

/* Returns 0, 1 for --help, -1 on a usage error. */
static int parse_args(struct connect_args *a, int argc, char **argv)
{
    int c;

    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":w:zCi:lks:xqvh", options, NULL)) !=
           -1) {
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
        case 'l':
            a->listen = true;
            break;
        case 'k':
            a->o.keep = true;
            break;
        case 's':
            a->source_text = optarg;
            break;
        case 'x':
            a->o.hex = true;
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
    if (check_combination(a) < 0)
        return -1;
    if (a->listen)
        return cli_parse_listen(argv[optind], &a->ep, &a->lo);
    int ret = cli_parse_endpoint_tls(argv[optind], false, &a->ep, &a->tls);
    if (ret == 0 && a->source_text != NULL)
        ret = parse_source(a);
    return ret;
}

static int fail(const struct connect_args *a, int err)
{
    cli_error_ep("connect", &a->ep, err);
    return EXIT_RUNTIME;
}

/* A UNIX source with a path: the socket file its bind makes. */
static const char *source_path(const struct connect_args *a)
{
    const struct sockaddr_un *un = &a->source.u.un;

    if (a->o.source == NULL || un->sun_family != AF_UNIX ||
        un->sun_path[0] == '\0')
        return NULL;
    return un->sun_path;
}

/* Binds a socket of socktype to addr and closes it again (a socket file
 * made removed): whether the source can be bound. Returns 0 or -errno. */
static int probe_bind(const struct connect_args *a, int socktype)
{
    int fd = socket(a->source.u.sa.sa_family, socktype | SOCK_CLOEXEC, 0);
    int err = 0;

    if (fd < 0)
        return -errno;
    if (bind(fd, &a->source.u.sa, a->source.len) < 0)
        err = -errno;
    close(fd);
    if (err == 0 && source_path(a) != NULL)
        unlink(source_path(a));
    return err;
}

/* -s: the first source address of a family that ep resolves to, checked
 * by binding it once. Returns 0, or the exit status after saying why. */
static int resolve_source(struct connect_args *a)
{
    struct sk_addr src[SK_CONNECT_ADDRS], dst[SK_CONNECT_ADDRS];
    char text[SK_ENDPOINT_STRLEN], target[SK_ENDPOINT_STRLEN];
    int ns, nd, err;

    ns = sk_endpoint_resolve(&a->source_ep, true, src, SK_CONNECT_ADDRS);
    if (ns < 0) {
        cli_error_ep("bind", &a->source_ep, ns);
        return EXIT_RUNTIME;
    }
    if ((nd = sk_endpoint_resolve(&a->ep, false, dst, SK_CONNECT_ADDRS)) < 0)
        return fail(a, nd);
    for (int i = 0; i < nd && a->o.source == NULL; i++)
        for (int j = 0; j < ns && a->o.source == NULL; j++)
            if (src[j].u.sa.sa_family == dst[i].u.sa.sa_family) {
                a->source = src[j];
                a->o.source = &a->source;
            }
    sk_endpoint_format(&a->source_ep, text, sizeof(text));
    if (a->o.source == NULL) {
        sk_endpoint_format(&a->ep, target, sizeof(target));
        cli_error("bind %s: not of the address family of %s", text, target);
        return EXIT_RUNTIME;
    }
    if ((err = probe_bind(a, sk_endpoint_socktype(&a->ep))) < 0) {
        a->o.source = NULL; /* nothing of ours to remove */
        cli_error_ep("bind", &a->source_ep, err);
        return EXIT_RUNTIME;
    }
    return EXIT_OK;
}

/* The socket file of a UNIX source, which the session's bind made. */
static void remove_source(const struct connect_args *a)
{
    const char *path = source_path(a);
    struct stat st;

    if (path != NULL && lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path);
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
    int sock = sk_connect_from(&a->ep, a->o.source, (int)a->o.timeout_ms);

    if (sock < 0)
        return fail(a, sock);
    announce(a);
    close(sock);
    return EXIT_OK;
}

/* The session once the options are checked: a check (-z), a stream or a
 * datagram one. */
static int session(struct connect_args *a)
{
    bool stream = sk_endpoint_is_stream(&a->ep);
    int ret, sock;

    if (a->zero)
        return check_accepts(a);
    if (stream) {
        ret = connect_stream(&a->ep, a->tls, &a->o);
        return ret == 0 ? EXIT_OK : ret > 0 ? EXIT_RUNTIME : fail(a, ret);
    }
    sock = sk_connect_from(&a->ep, a->o.source, -1);
    if (sock < 0)
        return fail(a, sock);
    announce(a);
    ret = connect_dgram(&a->ep, sock, &a->o);
    close(sock);
    return ret;
}

static int run(struct connect_args *a)
{
    char text[SK_ENDPOINT_STRLEN];
    bool stream = sk_endpoint_is_stream(&a->ep);
    int ret;

    sk_endpoint_format(&a->ep, text, sizeof(text));
    if (a->listen && a->o.keep && !stream) {
        cli_error("connect: -k takes stream endpoints only, not %s", text);
        return EXIT_USAGE;
    }
    if (!a->wait_set)
        a->o.timeout_ms =
            stream ? CONNECT_TIMEOUT_DEFAULT_MS : DGRAM_WAIT_DEFAULT_MS;
    if (a->listen)
        return connect_listen(&a->ep, &a->lo, &a->o);
    if (!sk_endpoint_is_unix(&a->ep) && a->ep.host[0] == '\0') {
        cli_error("%s: a connecting side needs a host", text);
        return EXIT_USAGE;
    }
    if (a->zero && !stream) {
        cli_error("connect: -z checks stream endpoints only, not %s", text);
        return EXIT_USAGE;
    }
    if (a->source_text != NULL && (ret = resolve_source(a)) != EXIT_OK)
        return ret;
    ret = session(a);
    remove_source(a);
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
        sk_tls_free(a.lo.tls);
        return ret > 0 ? EXIT_OK : ret == -2 ? EXIT_RUNTIME : EXIT_USAGE;
    }
    ret = run(&a);
    sk_tls_free(a.tls);
    sk_tls_free(a.lo.tls);
    return ret;
}
