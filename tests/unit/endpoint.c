/* endpoint.c -- unit tests of src/endpoint.c and src/error.c: parsing,
 * canonical formatting, round trips, every input cut at every byte, for
 * every kind (tcp, udp, unix, unixgram, unixpacket, mptcp, fd:, sd:);
 * resolve.c has the rest. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <sockit.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Long inputs, filled by fill_long_inputs() before the tests run. */
static char path107[108];       /* "/ppp...": the longest path */
static char path107_in[128];    /* "unix:" + path107 */
static char path108_in[128];    /* one byte too long */
static char abs107[109];        /* "@aaa..." with a 107-byte name */
static char abs107_in[128];     /* "unix:" + abs107 */
static char abs108_in[128];     /* a 108-byte name: too long */
static char host253[254];       /* the longest DNS name */
static char host253_in[300];    /* "tcp://" + host253 + ":1" */
static char host254_in[300];    /* one byte too long for a name */
static char host300_in[400];    /* longer than struct sk_endpoint.host */
static char sd255[256];         /* the longest systemd name */
static char sd255_in[300];      /* "sd:" + sd255 */
static char sd256_in[300];      /* one byte too long */
static char sd255_esc_in[1200]; /* sd255 written as \x41..., too long */
static char pkt108_in[128];     /* "unixpacket:" + a 108-byte path */

static void repeat(char *out, char c, size_t n)
{
    memset(out, c, n);
    out[n] = '\0';
}

static int fill_long_inputs(void **state)
{
    char name[301];

    (void)state;
    path107[0] = '/';
    repeat(path107 + 1, 'p', 106);
    snprintf(path107_in, sizeof(path107_in), "unix:%s", path107);
    snprintf(path108_in, sizeof(path108_in), "unix:%sp", path107);
    abs107[0] = '@';
    repeat(abs107 + 1, 'a', 107);
    snprintf(abs107_in, sizeof(abs107_in), "unix:%s", abs107);
    snprintf(abs108_in, sizeof(abs108_in), "unix:%sa", abs107);
    repeat(host253, 'h', 253);
    snprintf(host253_in, sizeof(host253_in), "tcp://%s:1", host253);
    snprintf(host254_in, sizeof(host254_in), "tcp://%sh:1", host253);
    repeat(name, 'x', 300);
    snprintf(host300_in, sizeof(host300_in), "tcp://%s:1", name);
    repeat(sd255, 'n', 255);
    snprintf(sd255_in, sizeof(sd255_in), "sd:%s", sd255);
    snprintf(sd256_in, sizeof(sd256_in), "sd:%sn", sd255);
    strcpy(sd255_esc_in, "sd:");
    for (int i = 0; i < 255; i++)
        strcat(sd255_esc_in, "\\x41");
    snprintf(pkt108_in, sizeof(pkt108_in), "unixpacket:%sp", path107);
    return 0;
}

/* ------------------------------------------------------------- tables */

struct good_case {
    const char *in;
    const char *canon; /* sk_endpoint_format() of the parse */
    enum sk_scheme scheme;
    const char *host;
    uint16_t port;
    const char *path; /* fd: rows: see fd_values */
};

static const struct good_case good[] = {
    {"tcp://127.0.0.1:80", "tcp://127.0.0.1:80", SK_TCP, "127.0.0.1", 80, ""},
    {"tcp://:0", "tcp://:0", SK_TCP, "", 0, ""},
    {"tcp://[::1]:8080", "tcp://[::1]:8080", SK_TCP, "::1", 8080, ""},
    /* IPv4-mapped: an IPv4 address. */
    {"tcp://[::ffff:192.0.2.1]:1", "tcp://192.0.2.1:1", SK_TCP, "192.0.2.1", 1,
     ""},
    {"tcp://localhost:21567", "tcp://localhost:21567", SK_TCP, "localhost",
     21567, ""},
    {"tcp4://0.0.0.0:1", "tcp4://0.0.0.0:1", SK_TCP4, "0.0.0.0", 1, ""},
    {"tcp6://[::]:65535", "tcp6://[::]:65535", SK_TCP6, "::", 65535, ""},
    {"tcp6://[fe80::1%lo]:22", "tcp6://[fe80::1%lo]:22", SK_TCP6, "fe80::1%lo",
     22, ""},
    {"tcp://:080", "tcp://:80", SK_TCP, "", 80, ""},
    {"tcp://:000080", "tcp://:80", SK_TCP, "", 80, ""},
    {"tcp://:00000", "tcp://:0", SK_TCP, "", 0, ""},
    {"tcp://my-host.example_1.org:443", "tcp://my-host.example_1.org:443",
     SK_TCP, "my-host.example_1.org", 443, ""},
    {"udp://127.0.0.1:53", "udp://127.0.0.1:53", SK_UDP, "127.0.0.1", 53, ""},
    {"udp://:7", "udp://:7", SK_UDP, "", 7, ""},
    {"udp4://192.0.2.9:65535", "udp4://192.0.2.9:65535", SK_UDP4, "192.0.2.9",
     65535, ""},
    {"udp6://[2001:db8::5]:9", "udp6://[2001:db8::5]:9", SK_UDP6, "2001:db8::5",
     9, ""},
    {"unix:/tmp/x.sock", "unix:/tmp/x.sock", SK_UNIX, "", 0, "/tmp/x.sock"},
    {"unix:///run/x.sock", "unix:/run/x.sock", SK_UNIX, "", 0, "/run/x.sock"},
    {"unix://rel", "unix:rel", SK_UNIX, "", 0, "rel"},
    {"unix:rel/a b:c", "unix:rel/a b:c", SK_UNIX, "", 0, "rel/a b:c"},
    {"unix:////x", "unix:////x", SK_UNIX, "", 0, "//x"},
    {"unix:@abstract", "unix:@abstract", SK_UNIX, "", 0, "@abstract"},
    {"unixgram:/p", "unixgram:/p", SK_UNIXGRAM, "", 0, "/p"},
    {"unixgram://@n", "unixgram:@n", SK_UNIXGRAM, "", 0, "@n"},
    {path107_in, path107_in, SK_UNIX, "", 0, path107},
    {abs107_in, abs107_in, SK_UNIX, "", 0, abs107},
    {host253_in, host253_in, SK_TCP, host253, 1, ""},
    /* unixpacket: paths and names as unix: */
    {"unixpacket:/run/p.sock", "unixpacket:/run/p.sock", SK_UNIXPACKET, "", 0,
     "/run/p.sock"},
    {"unixpacket:///run/p", "unixpacket:/run/p", SK_UNIXPACKET, "", 0,
     "/run/p"},
    {"unixpacket:@pkt", "unixpacket:@pkt", SK_UNIXPACKET, "", 0, "@pkt"},
    {"unixpacket://@pkt", "unixpacket:@pkt", SK_UNIXPACKET, "", 0, "@pkt"},
    {"unixpacket:/a\\,b", "unixpacket:/a\\,b", SK_UNIXPACKET, "", 0, "/a,b"},
    /* mptcp: hosts as tcp */
    {"mptcp://127.0.0.1:80", "mptcp://127.0.0.1:80", SK_MPTCP, "127.0.0.1", 80,
     ""},
    {"mptcp://:0", "mptcp://:0", SK_MPTCP, "", 0, ""},
    {"mptcp://[::1]:8080", "mptcp://[::1]:8080", SK_MPTCP, "::1", 8080, ""},
    {"mptcp://host.example:443", "mptcp://host.example:443", SK_MPTCP,
     "host.example", 443, ""},
    {"mptcp4://0.0.0.0:01", "mptcp4://0.0.0.0:1", SK_MPTCP4, "0.0.0.0", 1, ""},
    {"mptcp6://[::]:65535", "mptcp6://[::]:65535", SK_MPTCP6, "::", 65535, ""},
    /* fd:N, N in fd */
    {"fd:3", "fd:3", SK_FD, "", 0, ""},
    {"fd:0", "fd:0", SK_FD, "", 0, ""},
    {"fd:007", "fd:7", SK_FD, "", 0, ""},
    {"fd:2147483647", "fd:2147483647", SK_FD, "", 0, ""},
    /* sd: and sd:NAME, NAME in host */
    {"sd:", "sd:", SK_SD, "", 0, ""},
    {"sd:web", "sd:web", SK_SD, "web", 0, ""},
    {"sd:unknown", "sd:unknown", SK_SD, "unknown", 0, ""},
    {"sd:a b/c@d.e-f_g~!", "sd:a b/c@d.e-f_g~!", SK_SD, "a b/c@d.e-f_g~!", 0,
     ""},
    {"sd:a\\,b\\\\c", "sd:a\\,b\\\\c", SK_SD, "a,b\\c", 0, ""},
    {"sd:\\x41\\x7e", "sd:A~", SK_SD, "A~", 0, ""},
    {sd255_in, sd255_in, SK_SD, sd255, 0, ""},
};

struct bad_case {
    const char *in;
    int code;
    const char *why;
};

#define WHY_SCHEME                                                             \
    "unknown scheme (tcp, tcp4, tcp6, tls, tls4, tls6, udp, udp4, udp6, "      \
    "unix, unixgram, unixpacket, mptcp, mptcp4, mptcp6, fd, sd)"
#define WHY_FD_NAN "descriptor is not a number"
#define WHY_FD_RANGE "descriptor out of range 0..2147483647"
#define WHY_SD_CHAR "bad character in socket name (printable ASCII but ':')"
#define WHY_SD_LONG "socket name too long (max 255 bytes)"
#define WHY_RANGE "port out of range 0..65535"
#define WHY_PORT_NAN "port is not a number"
#define WHY_NO_PORT "missing port"
#define WHY_BAD_V6 "bad IPv6 address"
#define WHY_PATH_LONG "path too long for a UNIX socket (max 107 bytes)"

static const struct bad_case bad[] = {
    {"tcp://:99999", -ERANGE, WHY_RANGE},
    {"tcp://:65536", -ERANGE, WHY_RANGE},
    {"tcp://h:123456", -ERANGE, WHY_RANGE},
    {"tcp://127.0.0.1", -EINVAL, WHY_NO_PORT},
    {"tcp://127.0.0.1:", -EINVAL, WHY_NO_PORT},
    {"tcp://[::1]", -EINVAL, WHY_NO_PORT},
    {"tcp://[::1]:", -EINVAL, WHY_NO_PORT},
    {"tcp://[::1]x:1", -EINVAL, WHY_NO_PORT},
    {"tcp://h:-1", -EINVAL, WHY_PORT_NAN},
    {"tcp://h:1x", -EINVAL, WHY_PORT_NAN},
    {"tcp://h: 1", -EINVAL, WHY_PORT_NAN},
    {"tcp:/x:1", -EINVAL, "expected // after the scheme"},
    {"tcp:x:1", -EINVAL, "expected // after the scheme"},
    {"bogus://x:1", -EINVAL, WHY_SCHEME},
    {"TCP://x:1", -EINVAL, WHY_SCHEME},
    {"tcp", -EINVAL, WHY_SCHEME},
    {"", -EINVAL, WHY_SCHEME},
    {"tcp://::1:80", -EINVAL, "IPv6 address needs [brackets]"},
    {"tcp://[::1:80", -EINVAL, "missing ] after IPv6 address"},
    {"tcp://[]:1", -EINVAL, WHY_BAD_V6},
    {"tcp://[zz]:1", -EINVAL, WHY_BAD_V6},
    {"tcp://[127.0.0.1]:1", -EINVAL, WHY_BAD_V6},
    {"tcp://[fe80::1%]:1", -EINVAL, WHY_BAD_V6},
    {"tcp4://[::1]:1", -EINVAL, "IPv6 address with an IPv4-only scheme"},
    {"tcp6://127.0.0.1:1", -EINVAL, "IPv4 address with an IPv6-only scheme"},
    {"udp6://127.0.0.1:1", -EINVAL, "IPv4 address with an IPv6-only scheme"},
    {"tcp://1.2.3.999:1", -EINVAL, "bad IPv4 address"},
    {"tcp://1.2.3:1", -EINVAL, "bad IPv4 address"},
    {"tcp://a b:1", -EINVAL, "bad character in host"},
    {"tcp://a/b:1", -EINVAL, "bad character in host"},
    {host254_in, -ENAMETOOLONG, "host name too long"},
    {host300_in, -ENAMETOOLONG, "host name too long"},
    {"unix:", -EINVAL, "empty path"},
    {"unix://", -EINVAL, "empty path"},
    {"unix:@", -EINVAL, "empty abstract name"},
    {"unixgram:", -EINVAL, "empty path"},
    {path108_in, -ENAMETOOLONG, WHY_PATH_LONG},
    {abs108_in, -ENAMETOOLONG, WHY_PATH_LONG},
    /* unixpacket */
    {"unixpacket:", -EINVAL, "empty path"},
    {"unixpacket://", -EINVAL, "empty path"},
    {"unixpacket:@", -EINVAL, "empty abstract name"},
    {"unixpacket:/a\\q", -EINVAL,
     "bad escape in path (write \\\\ \\, or \\xNN)"},
    {pkt108_in, -ENAMETOOLONG, WHY_PATH_LONG},
    /* mptcp */
    {"mptcp4://[::1]:1", -EINVAL, "IPv6 address with an IPv4-only scheme"},
    {"mptcp6://127.0.0.1:1", -EINVAL, "IPv4 address with an IPv6-only scheme"},
    {"mptcp://127.0.0.1", -EINVAL, WHY_NO_PORT},
    {"mptcp://h:65536", -ERANGE, WHY_RANGE},
    {"mptcp:x:1", -EINVAL, "expected // after the scheme"},
    {"mptcp://::1:1", -EINVAL, "IPv6 address needs [brackets]"},
    /* fd:N */
    {"fd:", -EINVAL, "missing descriptor number"},
    {"fd:-1", -EINVAL, WHY_FD_NAN},
    {"fd:x", -EINVAL, WHY_FD_NAN},
    {"fd:+3", -EINVAL, WHY_FD_NAN},
    {"fd: 3", -EINVAL, WHY_FD_NAN},
    {"fd:3 ", -EINVAL, WHY_FD_NAN},
    {"fd:3x", -EINVAL, WHY_FD_NAN},
    {"fd:0x3", -EINVAL, WHY_FD_NAN},
    {"fd://3", -EINVAL, WHY_FD_NAN},
    {"fd:3\\,", -EINVAL, WHY_FD_NAN},
    {"fd:2147483648", -ERANGE, WHY_FD_RANGE},
    {"fd:99999999999999999999999", -ERANGE, WHY_FD_RANGE},
    /* sd:NAME */
    {"sd:bad:name", -EINVAL, WHY_SD_CHAR},
    {"sd::", -EINVAL, WHY_SD_CHAR},
    {"sd:a\tb", -EINVAL, WHY_SD_CHAR},
    {"sd:\x7f", -EINVAL, WHY_SD_CHAR},
    {"sd:\xc3\xa9", -EINVAL, WHY_SD_CHAR},
    {"sd:\\x01", -EINVAL, WHY_SD_CHAR},
    {"sd:\\x00", -EINVAL, WHY_SD_CHAR},
    {"sd:\\x3a", -EINVAL, WHY_SD_CHAR},
    {"sd:a\\q", -EINVAL, "bad escape in socket name (write \\\\ or \\,)"},
    {"sd:a\\", -EINVAL, "bad escape in socket name (write \\\\ or \\,)"},
    {sd256_in, -ENAMETOOLONG, WHY_SD_LONG},
    {sd255_esc_in, -ENAMETOOLONG, WHY_SD_LONG},
    /* schemes near the new ones */
    {"fd3", -EINVAL, WHY_SCHEME},
    {"FD:3", -EINVAL, WHY_SCHEME},
    {"sd", -EINVAL, WHY_SCHEME},
    {"unixpkt:/a", -EINVAL, WHY_SCHEME},
    {"mptcp5://:1", -EINVAL, WHY_SCHEME},
};

/* ------------------------------------------------------------ helpers */

/* Parses text into a zeroed *ep (so that whole structs compare). */
static int parse_zeroed(struct sk_endpoint *ep, const char *text,
                        const char **why)
{
    memset(ep, 0, sizeof(*ep));
    return sk_endpoint_parse(ep, text, why);
}

static void expect_code(const char *input, int got, int want)
{
    if (got != want)
        fail_msg("\"%.60s\": returned %d (%s), want %d (%s)", input, got,
                 sk_strerror(got), want, sk_strerror(want));
}

/* Formats ep, parses the text again, and requires the same struct. */
static void expect_round_trip(const char *input, const struct sk_endpoint *ep)
{
    char text[SK_ENDPOINT_STRLEN];
    struct sk_endpoint again;
    const char *why = NULL;
    int n;

    n = sk_endpoint_format(ep, text, sizeof(text));
    if (n < 0)
        fail_msg("\"%.60s\": format returned %d", input, n);
    assert_int_equal((size_t)n, strlen(text));
    if (parse_zeroed(&again, text, &why) != 0)
        fail_msg("\"%.60s\": canonical \"%s\" does not parse: %s", input, text,
                 why);
    if (memcmp(ep, &again, sizeof(again)) != 0)
        fail_msg("\"%.60s\": \"%s\" parses to a different endpoint", input,
                 text);
}

static void expect_fields(const struct good_case *g,
                          const struct sk_endpoint *ep)
{
    assert_int_equal(ep->scheme, g->scheme);
    assert_string_equal(ep->host, g->host);
    assert_int_equal(ep->port, g->port);
    assert_string_equal(ep->path, g->path);
}

static const struct {
    const char *in;
    int fd;
} fd_values[] = {
    {"fd:3", 3},       {"fd:0", 0},
    {"fd:007", 7},     {"fd:2147483647", 2147483647},
    {"fd:12,tls", 12},
};

static void test_endpoint_fd_holds_the_descriptor(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(fd_values); i++) {
        struct sk_endpoint ep;

        assert_int_equal(parse_zeroed(&ep, fd_values[i].in, NULL), 0);
        assert_int_equal(ep.scheme, SK_FD);
        assert_int_equal(ep.fd, fd_values[i].fd);
    }
}

/* -------------------------------------------------------------- parse */

static void test_endpoint_parses_good_inputs_to_fields_and_canon(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(good); i++) {
        struct sk_endpoint ep;
        char text[SK_ENDPOINT_STRLEN];
        const char *why = NULL;

        expect_code(good[i].in, parse_zeroed(&ep, good[i].in, &why), 0);
        expect_fields(&good[i], &ep);
        expect_code(good[i].in, sk_endpoint_format(&ep, text, sizeof(text)),
                    (int)strlen(good[i].canon));
        assert_string_equal(text, good[i].canon);
    }
}

static void test_endpoint_good_inputs_round_trip(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(good); i++) {
        struct sk_endpoint ep;

        expect_code(good[i].in, parse_zeroed(&ep, good[i].in, NULL), 0);
        expect_round_trip(good[i].in, &ep);
    }
}

static void test_endpoint_rejects_bad_inputs_with_code_and_why(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        struct sk_endpoint ep, sentinel;
        const char *why = NULL;

        memset(&sentinel, 0xa5, sizeof(sentinel));
        ep = sentinel;
        expect_code(bad[i].in, sk_endpoint_parse(&ep, bad[i].in, &why),
                    bad[i].code);
        if (why == NULL || strcmp(why, bad[i].why) != 0)
            fail_msg("\"%.60s\": why \"%s\", want \"%s\"", bad[i].in,
                     why ? why : "(null)", bad[i].why);
        if (memcmp(&ep, &sentinel, sizeof(ep)) != 0)
            fail_msg("\"%.60s\": *ep was written on failure", bad[i].in);
    }
}

static void test_endpoint_rejects_port_65536(void **state)
{
    struct sk_endpoint ep;
    const char *why = NULL;

    (void)state;
    assert_int_equal(sk_endpoint_parse(&ep, "tcp://:65536", &why), -ERANGE);
    assert_string_equal(why, "port out of range 0..65535");
}

static void test_endpoint_parse_accepts_null_why(void **state)
{
    struct sk_endpoint ep;

    (void)state;
    assert_int_equal(sk_endpoint_parse(&ep, "tcp://:99999", NULL), -ERANGE);
    assert_int_equal(sk_endpoint_parse(&ep, "nope", NULL), -EINVAL);
}

/* Every good input cut after every byte: no crash, and either a clean
 * failure with a reason or an endpoint that round-trips. */
static void check_prefix(const char *input, size_t len)
{
    char cut[512];
    struct sk_endpoint ep;
    const char *why = NULL;
    int err;

    assert_true(len < sizeof(cut));
    memcpy(cut, input, len);
    cut[len] = '\0';
    err = parse_zeroed(&ep, cut, &why);
    if (err == 0) {
        expect_round_trip(cut, &ep);
        return;
    }
    if (err != -EINVAL && err != -ERANGE && err != -ENAMETOOLONG)
        fail_msg("\"%.60s\": unexpected code %d", cut, err);
    if (why == NULL)
        fail_msg("\"%.60s\": failed without a reason", cut);
}

static void test_endpoint_every_prefix_fails_or_round_trips(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(good); i++)
        for (size_t len = 0; len <= strlen(good[i].in); len++)
            check_prefix(good[i].in, len);
}

/* ------------------------------------------------------------- format */

static void test_endpoint_format_into_small_buffer_is_enospc(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(good); i++) {
        size_t len = strlen(good[i].canon);
        char text[SK_ENDPOINT_STRLEN];
        struct sk_endpoint ep;

        assert_int_equal(parse_zeroed(&ep, good[i].in, NULL), 0);
        for (size_t size = 0; size <= len; size++)
            expect_code(good[i].in, sk_endpoint_format(&ep, text, size),
                        -ENOSPC);
        expect_code(good[i].in, sk_endpoint_format(&ep, text, len + 1),
                    (int)len);
        assert_string_equal(text, good[i].canon);
    }
}

static void test_endpoint_format_rejects_unknown_scheme(void **state)
{
    struct sk_endpoint ep = {0};
    char text[SK_ENDPOINT_STRLEN];

    (void)state;
    assert_int_equal(sk_endpoint_format(&ep, text, sizeof(text)), -EINVAL);
    assert_int_equal(sk_endpoint_socktype(&ep), -EINVAL);
    assert_int_equal(sk_endpoint_family(&ep), -EINVAL);
    /* A hand-made fd: endpoint with a negative descriptor has no text. */
    ep = (struct sk_endpoint){.scheme = SK_FD, .fd = -1};
    assert_int_equal(sk_endpoint_format(&ep, text, sizeof(text)), -EINVAL);
    /* Nor one of sd: with a name systemd would not give. */
    ep = (struct sk_endpoint){.scheme = SK_SD, .host = "a:b"};
    assert_int_equal(sk_endpoint_format(&ep, text, sizeof(text)), -EINVAL);
}

/* --------------------------------------------------------- predicates */

/* is_stream: connection-oriented; fd: and sd: count as streams until
 * adopted (their socktype is 0, unknown). */
static const struct {
    const char *in;
    int socktype;
    int family;
    bool is_unix, is_stream;
    int protocol;
} kinds[] = {
    {"tcp://:1", SOCK_STREAM, AF_UNSPEC, false, true, 0},
    {"tcp4://:1", SOCK_STREAM, AF_INET, false, true, 0},
    {"tcp6://:1", SOCK_STREAM, AF_INET6, false, true, 0},
    {"tls://:1", SOCK_STREAM, AF_UNSPEC, false, true, 0},
    {"udp://:1", SOCK_DGRAM, AF_UNSPEC, false, false, 0},
    {"udp4://:1", SOCK_DGRAM, AF_INET, false, false, 0},
    {"udp6://:1", SOCK_DGRAM, AF_INET6, false, false, 0},
    {"unix:/a", SOCK_STREAM, AF_UNIX, true, true, 0},
    {"unixgram:/a", SOCK_DGRAM, AF_UNIX, true, false, 0},
    {"unixpacket:/a", SOCK_SEQPACKET, AF_UNIX, true, true, 0},
    {"unixpacket:@a", SOCK_SEQPACKET, AF_UNIX, true, true, 0},
    {"mptcp://:1", SOCK_STREAM, AF_UNSPEC, false, true, IPPROTO_MPTCP},
    {"mptcp4://:1", SOCK_STREAM, AF_INET, false, true, IPPROTO_MPTCP},
    {"mptcp6://:1", SOCK_STREAM, AF_INET6, false, true, IPPROTO_MPTCP},
    {"fd:3", 0, AF_UNSPEC, false, true, 0},
    {"sd:", 0, AF_UNSPEC, false, true, 0},
    {"sd:web", 0, AF_UNSPEC, false, true, 0},
};

static void test_endpoint_kind_follows_scheme(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(kinds); i++) {
        struct sk_endpoint ep;

        assert_int_equal(parse_zeroed(&ep, kinds[i].in, NULL), 0);
        assert_int_equal(sk_endpoint_socktype(&ep), kinds[i].socktype);
        assert_int_equal(sk_endpoint_family(&ep), kinds[i].family);
        assert_int_equal(sk_endpoint_is_unix(&ep), kinds[i].is_unix);
        assert_int_equal(sk_endpoint_is_stream(&ep), kinds[i].is_stream);
        assert_int_equal(sk_endpoint_protocol(&ep), kinds[i].protocol);
    }
}

/* fd: and sd: are adopted, never resolved; from_addr() names addresses
 * with the new schemes, and refuses to make an fd: or sd: of one. */
static void test_endpoint_new_kinds_resolve_and_from_addr(void **state)
{
    static const char *const adopted[] = {"fd:3", "sd:", "sd:web"};
    struct sk_endpoint ep, back;
    struct sk_addr addr = {.len = sizeof(struct sockaddr_in6)};
    char text[SK_ENDPOINT_STRLEN];

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(adopted); i++) {
        assert_int_equal(parse_zeroed(&ep, adopted[i], NULL), 0);
        assert_int_equal(sk_endpoint_resolve(&ep, true, &addr, 1), -EINVAL);
        assert_int_equal(sk_endpoint_resolve(&ep, false, &addr, 1), -EINVAL);
    }
    assert_int_equal(parse_zeroed(&ep, "unixpacket:@p\\x00q", NULL), 0);
    assert_int_equal(sk_endpoint_resolve(&ep, true, &addr, 1), 1);
    assert_int_equal(sk_endpoint_from_addr(&back, SK_UNIXPACKET, &addr), 0);
    assert_memory_equal(&back, &ep, sizeof(ep));
    /* A dual-stack socket's IPv4 peer, as for tcp://. */
    addr = (struct sk_addr){.len = sizeof(struct sockaddr_in6)};
    addr.u.in6.sin6_family = AF_INET6;
    addr.u.in6.sin6_port = htons(9);
    inet_pton(AF_INET6, "::ffff:127.0.0.1", &addr.u.in6.sin6_addr);
    assert_int_equal(sk_endpoint_from_addr(&back, SK_MPTCP, &addr), 0);
    assert_true(sk_endpoint_format(&back, text, sizeof(text)) > 0);
    assert_string_equal(text, "mptcp://127.0.0.1:9");
    assert_int_equal(sk_endpoint_from_addr(&back, SK_MPTCP6, &addr), 0);
    assert_true(sk_endpoint_format(&back, text, sizeof(text)) > 0);
    assert_string_equal(text, "mptcp://127.0.0.1:9");
    memset(&back, 0xa5, sizeof(back));
    ep = back;
    assert_int_equal(sk_endpoint_from_addr(&back, SK_FD, &addr), -EINVAL);
    assert_int_equal(sk_endpoint_from_addr(&back, SK_SD, &addr), -EINVAL);
    assert_memory_equal(&back, &ep, sizeof(ep));
}

/* An address of the other family than the scheme's (as a PROXY header
 * gives on a tcp6:// or tcp4:// listener) is named with the scheme of
 * both families, and every text from_addr() makes parses back to it. */
static void test_from_addr_of_either_family_parses_back(void **state)
{
    static const struct {
        enum sk_scheme scheme;
        const char *addr, *text;
    } cases[] = {
        {SK_TCP6, "::ffff:10.0.0.1", "tcp://10.0.0.1:7"},
        {SK_TCP6, "10.0.0.1", "tcp://10.0.0.1:7"},
        {SK_TCP6, "2001:db8::1", "tcp6://[2001:db8::1]:7"},
        {SK_TCP4, "10.0.0.1", "tcp4://10.0.0.1:7"},
        {SK_TCP4, "2001:db8::1", "tcp://[2001:db8::1]:7"},
        {SK_TCP4, "::ffff:10.0.0.1", "tcp4://10.0.0.1:7"},
        {SK_UDP6, "10.0.0.1", "udp://10.0.0.1:7"},
        {SK_UDP4, "::1", "udp://[::1]:7"},
        {SK_MPTCP4, "::1", "mptcp://[::1]:7"},
        {SK_TCP, "::ffff:10.0.0.1", "tcp://10.0.0.1:7"},
    };
    char text[SK_ENDPOINT_STRLEN];
    struct sk_endpoint ep, again;

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct sk_addr addr = {0};

        if (strchr(cases[i].addr, ':') == NULL) {
            addr.len = sizeof(struct sockaddr_in);
            addr.u.in.sin_family = AF_INET;
            addr.u.in.sin_port = htons(7);
            inet_pton(AF_INET, cases[i].addr, &addr.u.in.sin_addr);
        } else {
            addr.len = sizeof(struct sockaddr_in6);
            addr.u.in6.sin6_family = AF_INET6;
            addr.u.in6.sin6_port = htons(7);
            inet_pton(AF_INET6, cases[i].addr, &addr.u.in6.sin6_addr);
        }
        assert_int_equal(sk_endpoint_from_addr(&ep, cases[i].scheme, &addr), 0);
        assert_true(sk_endpoint_format(&ep, text, sizeof(text)) > 0);
        assert_string_equal(text, cases[i].text);
        assert_int_equal(parse_zeroed(&again, text, NULL), 0);
    }
}

/* ------------------------------------------------------------- errors */

static const struct {
    int err;
    const char *text;
} texts[] = {
    {SK_ENOTLISTENING,
     "socket is not listening (fd:N must be bound, and listening if a "
     "stream)"},
    {SK_ENOSDSOCKETS, "no sockets passed by systemd"},
    {SK_ENOSDNAME, "no socket of that name passed by systemd"},
    {SK_ENOMPTCP, "multipath TCP not available"},
    {SK_EPROXY, "bad PROXY protocol header"},
    {SK_EREFUSED, "refused by access rules"},
    {-EBADF, "bad file descriptor"},
    {-ENOTSOCK, "not a socket"},
    {-EPROTOTYPE, "wrong type of socket"},
    {-EADDRINUSE, "address in use"},
};

static void test_endpoint_error_texts(void **state)
{
    struct sk_endpoint ep;
    char out[256];

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(texts); i++) {
        assert_string_equal(sk_strerror(texts[i].err), texts[i].text);
        /* Without a detail to add, sk_endpoint_strerror() says the same. */
        assert_int_equal(parse_zeroed(&ep, "tcp://:1", NULL), 0);
        assert_string_equal(
            sk_endpoint_strerror(&ep, texts[i].err, out, sizeof(out)),
            texts[i].text);
        assert_string_equal(sk_endpoint_strerror(&ep, texts[i].err, out, 0),
                            texts[i].text);
    }
    /* Cut to the buffer, NUL-terminated. */
    assert_string_equal(sk_endpoint_strerror(&ep, SK_ENOMPTCP, out, 10),
                        "multipath");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoint_parses_good_inputs_to_fields_and_canon),
        cmocka_unit_test(test_endpoint_good_inputs_round_trip),
        cmocka_unit_test(test_endpoint_rejects_bad_inputs_with_code_and_why),
        cmocka_unit_test(test_endpoint_rejects_port_65536),
        cmocka_unit_test(test_endpoint_fd_holds_the_descriptor),
        cmocka_unit_test(test_endpoint_parse_accepts_null_why),
        cmocka_unit_test(test_endpoint_every_prefix_fails_or_round_trips),
        cmocka_unit_test(test_endpoint_format_into_small_buffer_is_enospc),
        cmocka_unit_test(test_endpoint_format_rejects_unknown_scheme),
        cmocka_unit_test(test_endpoint_kind_follows_scheme),
        cmocka_unit_test(test_endpoint_new_kinds_resolve_and_from_addr),
        cmocka_unit_test(test_from_addr_of_either_family_parses_back),
        cmocka_unit_test(test_endpoint_error_texts),
    };

    return cmocka_run_group_tests(tests, fill_long_inputs, NULL);
}
