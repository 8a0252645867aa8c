/* endpoint.c -- unit tests of src/endpoint.c and src/error.c: parsing,
 * canonical formatting, round trips, every input cut at every byte
 * (resolve.c has the rest). */
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
static char path107[108];    /* "/ppp...": the longest path */
static char path107_in[128]; /* "unix:" + path107 */
static char path108_in[128]; /* one byte too long */
static char abs107[109];     /* "@aaa..." with a 107-byte name */
static char abs107_in[128];  /* "unix:" + abs107 */
static char abs108_in[128];  /* a 108-byte name: too long */
static char host253[254];    /* the longest DNS name */
static char host253_in[300]; /* "tcp://" + host253 + ":1" */
static char host254_in[300]; /* one byte too long for a name */
static char host300_in[400]; /* longer than struct sk_endpoint.host */

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
    return 0;
}

/* ------------------------------------------------------------- tables */

struct good_case {
    const char *in;
    const char *canon; /* sk_endpoint_format() of the parse */
    enum sk_scheme scheme;
    const char *host;
    uint16_t port;
    const char *path;
};

static const struct good_case good[] = {
    {"tcp://127.0.0.1:80", "tcp://127.0.0.1:80", SK_TCP, "127.0.0.1", 80, ""},
    {"tcp://:0", "tcp://:0", SK_TCP, "", 0, ""},
    {"tcp://[::1]:8080", "tcp://[::1]:8080", SK_TCP, "::1", 8080, ""},
    {"tcp://[::ffff:192.0.2.1]:1", "tcp://[::ffff:192.0.2.1]:1", SK_TCP,
     "::ffff:192.0.2.1", 1, ""},
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
};

struct bad_case {
    const char *in;
    int code;
    const char *why;
};

#define WHY_SCHEME                                                             \
    "unknown scheme (tcp, tcp4, tcp6, tls, tls4, tls6, udp, udp4, udp6, "      \
    "unix, unixgram)"
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
}

/* --------------------------------------------------------- predicates */

static const struct {
    const char *in;
    int socktype;
    int family;
    bool is_unix;
} kinds[] = {
    {"tcp://:1", SOCK_STREAM, AF_UNSPEC, false},
    {"tcp4://:1", SOCK_STREAM, AF_INET, false},
    {"tcp6://:1", SOCK_STREAM, AF_INET6, false},
    {"udp://:1", SOCK_DGRAM, AF_UNSPEC, false},
    {"udp4://:1", SOCK_DGRAM, AF_INET, false},
    {"udp6://:1", SOCK_DGRAM, AF_INET6, false},
    {"unix:/a", SOCK_STREAM, AF_UNIX, true},
    {"unixgram:/a", SOCK_DGRAM, AF_UNIX, true},
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
        assert_int_equal(sk_endpoint_is_stream(&ep),
                         kinds[i].socktype == SOCK_STREAM);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoint_parses_good_inputs_to_fields_and_canon),
        cmocka_unit_test(test_endpoint_good_inputs_round_trip),
        cmocka_unit_test(test_endpoint_rejects_bad_inputs_with_code_and_why),
        cmocka_unit_test(test_endpoint_rejects_port_65536),
        cmocka_unit_test(test_endpoint_parse_accepts_null_why),
        cmocka_unit_test(test_endpoint_every_prefix_fails_or_round_trips),
        cmocka_unit_test(test_endpoint_format_into_small_buffer_is_enospc),
        cmocka_unit_test(test_endpoint_format_rejects_unknown_scheme),
        cmocka_unit_test(test_endpoint_kind_follows_scheme),
    };

    return cmocka_run_group_tests(tests, fill_long_inputs, NULL);
}
