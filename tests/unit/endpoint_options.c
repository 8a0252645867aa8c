/* endpoint_options.c -- unit tests of src/endpoint_options.c: the options
 * after an endpoint (",tls,cert=FILE"), their values and escapes, and the
 * canonical form that keeps tls and proxy= only, for every kind of
 * endpoint (endpoint_check.c: whether each applies to each kind). */
#include "endpoint_helpers.h"

#define E (-EINVAL)

/* Long inputs, filled by fill_long_inputs() before the tests run. */
static char cert1023_in[1100], cert1024_in[1100], mode1024_in[1100];
static char sni253_in[300], sni254_in[300], sni256_in[300];
static char alpn255_in[300], alpn256_in[300], unknown40_in[64];
static char cert1023[1100], sni253[300], alpn255[300]; /* their options */
/* The longest canonical forms: 107 bytes, each as \xNN. */
static char long_abs_in[600], long_path_in[600];

/* Writes pre, n times c, then post, into out. */
static void fill(char *out, const char *pre, char c, size_t n, const char *post)
{
    size_t k = strlen(pre);

    memcpy(out, pre, k);
    memset(out + k, c, n);
    strcpy(out + k + n, post);
}

static int fill_long_inputs(void **state)
{
    char *a = long_abs_in, *p = long_path_in;

    (void)state;
    fill(cert1023_in, "tls://:1,cert=", 'c', 1023, "");
    fill(cert1024_in, "tls://:1,cert=", 'c', 1024, "");
    fill(mode1024_in, "unix:/a,mode=", '0', 1024, "");
    fill(sni253_in, "tls://h:1,sni=", 's', 253, "");
    fill(sni254_in, "tls://h:1,sni=", 's', 254, "");
    fill(sni256_in, "tls://h:1,sni=", 's', 256, "");
    fill(alpn255_in, "tls://h:1,alpn=", 'p', 255, "");
    fill(alpn256_in, "tls://h:1,alpn=", 'p', 256, "");
    fill(unknown40_in, "tcp://:1,", 'z', 40, "=1");
    fill(cert1023, "cert=", 'c', 1023, "");
    fill(sni253, "sni=", 's', 253, "");
    fill(alpn255, "alpn=", 'p', 255, "");
    a += sprintf(a, "unixgram:@");
    p += sprintf(p, "unixgram:");
    for (int i = 0; i < 107; i++) {
        a += sprintf(a, "\\xff");
        p += sprintf(p, "\\x01");
    }
    strcpy(a, ",tls,proxy=any");
    strcpy(p, ",tls,proxy=any");
    return 0;
}

/* ------------------------------------------------------------ helpers */

/* Formats ep, requires want (if not NULL), parses it again with and
 * without options, and requires the same endpoint and the same text. */
static void expect_round_trip(const char *in, const struct sk_endpoint *ep,
                              const char *want)
{
    char text[SK_ENDPOINT_STRLEN], again[SK_ENDPOINT_STRLEN];
    struct sk_endpoint ep2, ep3;
    struct sk_endpoint_options o2;
    const char *why;
    int n;

    n = sk_endpoint_format(ep, text, sizeof(text));
    if (n < 0 || (size_t)n != strlen(text))
        fail_msg("\"%.80s\": format returned %d", in, n);
    if (want != NULL && strcmp(text, want) != 0)
        fail_msg("\"%.80s\": canonical \"%s\", want \"%s\"", in, text, want);
    if (parse(&ep2, &o2, text, &why) != 0 || parse(&ep3, NULL, text, &why))
        fail_msg("\"%.80s\": canonical \"%s\" does not parse: %s", in, text,
                 why);
    if (memcmp(ep, &ep2, sizeof(ep2)) != 0 || memcmp(ep, &ep3, sizeof(ep3)))
        fail_msg("\"%.80s\": \"%s\" parses to another endpoint", in, text);
    if (o2.given !=
        ((ep->tls ? SK_OPT_TLS : 0) | (ep->proxy ? SK_OPT_PROXY : 0)))
        fail_msg("\"%.80s\": \"%s\" gives options %#x", in, text, o2.given);
    assert_int_equal(sk_endpoint_format(&ep2, again, sizeof(again)), n);
    assert_string_equal(again, text);
}

/* The options other than tls and proxy= on one line, "cert=a key=b ..."
 * (\xNN for what is not printable); a field without its SK_OPT_* bit must
 * be empty, and the bits of tls and proxy= must match the endpoint. */
static const char *describe(const struct sk_endpoint *ep,
                            const struct sk_endpoint_options *o)
{
    const char *const values[] = {o->cert, o->key, o->ca, o->sni, o->alpn};
    static const char *const names[] = {"cert", "key", "ca", "sni", "alpn"};
    static const unsigned bits[] = {SK_OPT_CERT, SK_OPT_KEY, SK_OPT_CA,
                                    SK_OPT_SNI, SK_OPT_ALPN};
    static char buf[4096];
    char *p = buf;

    assert_int_equal(!!(o->given & SK_OPT_TLS), ep->tls);
    assert_int_equal(!!(o->given & SK_OPT_PROXY), ep->proxy != 0);
    buf[0] = buf[1] = '\0';
    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        if (!(o->given & bits[i])) {
            assert_string_equal(values[i], "");
            continue;
        }
        p += sprintf(p, " %s=", names[i]);
        for (const char *v = values[i]; *v != '\0'; v++)
            p += sprintf(p, *v > 0x1f && *v < 0x7f ? "%c" : "\\x%02x",
                         (unsigned char)*v);
    }
    if (o->given & SK_OPT_VERIFY)
        p += sprintf(p, " verify=none");
    if (o->given & SK_OPT_MODE)
        sprintf(p, " mode=%04o", o->mode);
    else
        assert_int_equal(o->mode, 0);
    return buf + 1;
}

/* ------------------------------------------------------ good inputs */

/* Each input, its canonical form (NULL: the input itself: it shows every
 * field of the endpoint) and its other options. */
static const struct {
    const char *in, *canon, *opts;
} good[] = {
    {"tls://127.0.0.1:8443", NULL, ""},
    {"tls4://0.0.0.0:443", NULL, ""},
    {"tls6://[::1]:1,proxy=any", NULL, ""},
    {"tcp://127.0.0.1:8080,proxy=v2", NULL, ""},
    {"tcp://127.0.0.1:8080,tls", "tls://127.0.0.1:8080", ""},
    {"tcp6://[::1]:1,proxy=v1,tls", "tls6://[::1]:1,proxy=v1", ""},
    {"tcp4://:7,tls,proxy=v2", "tls4://:7,proxy=v2", ""},
    {"tcp://:8443,tls,cert=a.pem", "tls://:8443", "cert=a.pem"},
    {"tls://example.org:443,sni=www.example.org,alpn=h2:http/1.1,verify=none,"
     "ca=/etc/ssl/ca.pem,cert=c.pem,key=k.pem",
     "tls://example.org:443",
     "cert=c.pem key=k.pem ca=/etc/ssl/ca.pem sni=www.example.org "
     "alpn=h2:http/1.1 verify=none"},
    {"udp://:53,tls", NULL, ""},
    {"udp6://[::1]:53,tls,proxy=v1", NULL, ""},
    {"udp4://:9,proxy=v2", NULL, ""},
    {"unix:/run/a.sock,tls", NULL, ""},
    {"unix:///run/a.sock,tls,cert=c.pem,key=k.pem,ca=ca.pem,alpn=h2,mode=660,"
     "proxy=v2",
     "unix:/run/a.sock,tls,proxy=v2",
     "cert=c.pem key=k.pem ca=ca.pem alpn=h2 mode=0660"},
    {"unix:@name,tls,proxy=v1", NULL, ""},
    {"unixgram:@g,proxy=any", NULL, ""},
    {"unixgram:/g,mode=600", "unixgram:/g", "mode=0600"},
    {"unixgram://@g,tls", "unixgram:@g,tls", ""},
    {"unixgram:////x,tls", NULL, ""},
    {long_abs_in, NULL, ""},
    {long_path_in, NULL, ""},
    /* Escapes in the path, before the options. */
    {"unix:/a\\,b,tls", NULL, ""},
    {"unix:/a\\,tls", NULL, ""}, /* the path "/a,tls" */
    {"unix:/a\\\\,tls", NULL, ""},
    {"unix:/a\\x2cb\\x5c,proxy=v1", "unix:/a\\,b\\\\,proxy=v1", ""},
    {"unix:/\\x01\\xFF,tls", "unix:/\\x01\\xff,tls", ""},
    {"unix:@a\\x00b,tls", NULL, ""},
    /* Escapes in values: \, \\ and \xNN. */
    {"tcp://:1,cert=a\\,b.pem", "tcp://:1", "cert=a,b.pem"},
    {"tls://:1,cert=a\\\\b,key=\\\\", "tls://:1", "cert=a\\b key=\\"},
    {"tls://:1,cert=\\x41\\x2c\\x5C,ca=x\\\\\\,y", "tls://:1",
     "cert=A,\\ ca=x\\,y"},
    {"tls://:1,key=k\\x01\\xff", "tls://:1", "key=k\\x01\\xff"},
    {"tls://:1,sni=a\\x2eb,alpn=h2\\x3ahttp", "tls://:1",
     "sni=a.b alpn=h2:http"},
    {"tls://:1,alpn=a\\,b:c", "tls://:1", "alpn=a,b:c"},
    {"tcp://:1,proxy=v\\x32", "tcp://:1,proxy=v2", ""},
    {"tls://:1,verify=non\\x65", "tls://:1", "verify=none"},
    {"unix:/s,mode=\\x36\\x340", "unix:/s", "mode=0640"},
    /* Values at their limits. */
    {cert1023_in, "tls://:1", cert1023},
    {sni253_in, "tls://h:1", sni253},
    {alpn255_in, "tls://h:1", alpn255},
    {"unix:/s,mode=0", "unix:/s", "mode=0000"},
    {"unix:/s,mode=7", "unix:/s", "mode=0007"},
    {"unix:/s,mode=0777", "unix:/s", "mode=0777"},
    {"tls://:1,sni=127.0.0.1", "tls://:1", "sni=127.0.0.1"},
    /* The kinds of v0.2: tls is ",tls" but on tcp. */
    {"mptcp://127.0.0.1:1,tls", NULL, ""},
    {"mptcp4://:1,tls,proxy=v2", NULL, ""},
    {"mptcp6://[::1]:1,proxy=any,tls", "mptcp6://[::1]:1,tls,proxy=any", ""},
    {"mptcp://:443,tls,cert=c.pem", "mptcp://:443,tls", "cert=c.pem"},
    {"unixpacket:/p,mode=660", "unixpacket:/p", "mode=0660"},
    {"unixpacket:@p,tls", NULL, ""}, /* parses; check_options() refuses */
    {"unixpacket:/a\\,b,proxy=v1", NULL, ""},
    {"fd:3,tls", NULL, ""},
    {"fd:03,tls,cert=c.pem", "fd:3,tls", "cert=c.pem"},
    {"fd:0,proxy=v1", NULL, ""},
    {"fd:7,cert=c.pem", "fd:7", "cert=c.pem"},
    {"sd:,tls,proxy=v2", NULL, ""},
    {"sd:web,tls,cert=c.pem,key=k.pem", "sd:web,tls", "cert=c.pem key=k.pem"},
    {"sd:a\\,b,tls", NULL, ""},       /* the name "a,b" */
    {"sd:a\\\\,proxy=any", NULL, ""}, /* the name "a\\" */
    {"sd:\\x61,mode=600", "sd:a", "mode=0600"},
};

/* Each parses to its options, formats to its canonical form (and to
 * -ENOSPC in any smaller buffer), which parses back to the same. The
 * longest canonical form fits SK_ENDPOINT_STRLEN. */
static void test_options_parse_format_and_round_trip(void **state)
{
    (void)state;
    assert_int_equal(strlen(long_abs_in), 452);
    assert_true(452 < SK_ENDPOINT_STRLEN);
    for (size_t i = 0; i < ARRAY_LEN(good); i++) {
        const char *canon = good[i].canon ? good[i].canon : good[i].in;
        size_t len = strlen(canon);
        char text[SK_ENDPOINT_STRLEN];
        struct sk_endpoint ep;
        struct sk_endpoint_options o;
        const char *why;

        expect_code(good[i].in, parse(&ep, &o, good[i].in, &why), 0);
        expect_why(good[i].in, why, NULL);
        if (strcmp(describe(&ep, &o), good[i].opts) != 0)
            fail_msg("\"%s\": options \"%s\", want \"%s\"", good[i].in,
                     describe(&ep, &o), good[i].opts);
        expect_round_trip(good[i].in, &ep, canon);
        for (size_t size = 0; size <= len; size++)
            expect_code(canon, sk_endpoint_format(&ep, text, size), -ENOSPC);
        expect_code(canon, sk_endpoint_format(&ep, text, len + 1), (int)len);
        assert_string_equal(text, canon);
    }
}

/* ------------------------------------------------------- bad inputs */

#define W_UNKNOWN(n) "unknown endpoint option \"" n "\""
#define W_TWICE(n) "endpoint option \"" n "\" given twice"
#define W_VALUE(n) "endpoint option \"" n "\" needs a value"
#define W_LONG(n) "endpoint option \"" n "\" is too long"
#define W_ESC(n)                                                               \
    "bad escape in endpoint option \"" n "\" (write \\\\ \\, or \\xNN)"
#define W_MUST(n, what) "endpoint option \"" n "\" must be " what
#define W_SCHEME                                                               \
    "unknown scheme (tcp, tcp4, tcp6, tls, tls4, tls6, udp, udp4, udp6, "      \
    "unix, unixgram, unixpacket, mptcp, mptcp4, mptcp6, fd, sd)"

/* Inputs that fail with code and why, with opts and without. */
static const struct {
    int code;
    const char *why;
    const char *in[12];
} bad[] = {
    {E,
     W_UNKNOWN("crt"),
     {"tcp://:8080,crt=a.pem", "tcp://:1,crt=\\q", "tcp://:1,crt=a,cert",
      "tls://:1,crt", "unix:/a\\,b,crt=x"}},
    {E, W_UNKNOWN("TLS"), {"tcp://:1,TLS"}},
    {E, W_UNKNOWN("c\\"), {"tcp://:1,c\\,ert=x"}},
    {E, W_UNKNOWN("?tls"), {"tcp://:1, tls", "tcp://:1,\ntls"}},
    {E, W_UNKNOWN("??"), {"tcp://:1,\xc3\xa9", "tcp://:1,\001\177"}},
    {E, W_UNKNOWN("zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"), {unknown40_in}},
    {E,
     "empty endpoint option",
     {"tcp://:1,", "tcp://:1,,tls", "tls://:1,", "tcp://:1,tls,", "tcp://:1,=x",
      "unix:/a,", "unix:/a\\\\,", "udp://:1,,"}},
    {E,
     W_TWICE("tls"),
     {"tcp://:1,tls,tls", "tls://:1,tls", "tls://:1,tls=1", "unix:/a,tls,tls"}},
    {E, W_TWICE("cert"), {"tls://:1,cert=a,cert=b"}},
    {E, W_TWICE("key"), {"tls://:1,key=a,cert=c,key=a"}},
    {E, W_TWICE("verify"), {"tls://:1,verify=none,verify=none"}},
    {E, W_TWICE("sni"), {"tls://:1,sni=a,sni=b"}},
    {E, W_TWICE("proxy"), {"tcp://:1,proxy=v1,proxy=any"}},
    {E, W_TWICE("mode"), {"unix:/a,mode=600,mode=600"}},
    {E,
     W_VALUE("cert"),
     {"tls://:1,cert", "tls://:1,cert=", "tls://:1,cert=,key=k"}},
    {E, W_VALUE("key"), {"tls://:1,key", "tls://:1,key="}},
    {E, W_VALUE("ca"), {"tls://:1,ca", "tls://:1,ca="}},
    {E, W_VALUE("verify"), {"tls://:1,verify", "tls://:1,verify="}},
    {E, W_VALUE("sni"), {"tls://:1,sni", "tls://:1,sni="}},
    {E, W_VALUE("alpn"), {"tls://:1,alpn", "tls://:1,alpn="}},
    {E, W_VALUE("proxy"), {"tcp://:1,proxy", "tcp://:1,proxy=,tls"}},
    {E, W_VALUE("mode"), {"unix:/a,mode", "unix:/a,mode="}},
    {E,
     "endpoint option \"tls\" takes no value",
     {"tcp://:1,tls=", "tcp://:1,tls=1", "unix:/a,tls=yes"}},
    {E,
     W_MUST("verify", "verify=none"),
     {"tls://:1,verify=yes", "tls://:1,verify=None", "tls://:1,verify=none\\,x",
      "tls://:1,verify=full"}},
    {E,
     W_MUST("proxy", "v1, v2 or any"),
     {"tcp://:1,proxy=v3", "tcp://:1,proxy=V1", "tcp://:1,proxy=anyx",
      "tcp://:1,proxy=v1\\,v2", "tcp://:1,proxy=1", "tcp://:1,proxy=none"}},
    {E,
     W_MUST("mode", "an octal mode such as 660"),
     {"unix:/a,mode=8", "unix:/a,mode=1000", "unix:/a,mode=7777",
      "unix:/a,mode=00660", "unix:/a,mode=-1", "unix:/a,mode=+660",
      "unix:/a,mode=0x1ff", "unix:/a,mode=66a", "unix:/a,mode=\\x20660",
      "unix:/a,mode=0o660"}},
    {E,
     W_MUST("sni", "a host name"),
     {"tls://:1,sni=a b", "tls://:1,sni=a/b", "tls://:1,sni=a:1",
      "tls://:1,sni=\\xff", "tls://:1,sni=[::1]", sni254_in}},
    {E,
     W_MUST("alpn", "protocols separated by ':'"),
     {"tls://:1,alpn=h2:", "tls://:1,alpn=:h2", "tls://:1,alpn=h2::x",
      "tls://:1,alpn=h\\x20", "tls://:1,alpn=h\\x7f", "tls://:1,alpn=\\xc3",
      "tls://:1,alpn=:"}},
    {E, W_LONG("cert"), {cert1024_in}},
    {E, W_LONG("sni"), {sni256_in}},
    {E, W_LONG("alpn"), {alpn256_in}},
    {E, W_LONG("mode"), {mode1024_in}},
    {E,
     W_ESC("cert"),
     {"tls://:1,cert=a\\q", "tls://:1,cert=a\\", "tls://:1,cert=a\\x",
      "tls://:1,cert=a\\x4,tls", "tls://:1,cert=a\\xg1", "tls://:1,cert=\\x00",
      "tls://:1,cert=\\X41"}},
    {E, W_ESC("key"), {"tls://:1,key=a\\x00b"}},
    {E, W_ESC("sni"), {"tls://:1,sni=\\x00"}},
    {E, W_ESC("proxy"), {"tcp://:1,proxy=\\x00", "tcp://:1,proxy=v\\"}},
    {E, W_ESC("mode"), {"unix:/a,mode=\\x00"}},
    {E, W_ESC("tls"), {"tcp://:1,tls=\\q"}},
    /* The endpoint is checked before its options. */
    {E,
     "bad escape in path (write \\\\ \\, or \\xNN)",
     {"unix:/a\\q,tls", "unix:/a\\", "unix:/a\\x0,tls", "unix:/a\\x,crt"}},
    {E,
     "a NUL byte in a path (only an abstract name may hold one)",
     {"unix:/a\\x00,tls", "unix:\\x00@a,tls"}},
    {E, "empty path", {"unix:,tls", "unix://,proxy=v1"}},
    {E, "empty abstract name", {"unix:@,tls"}},
    {-ERANGE,
     "port out of range 0..65535",
     {"tcp://:99999,tls", "tcp://:99999,crt=a", "tls://:65536"}},
    {E, "port is not a number", {"tcp://h:1\\,tls", "tls://h:x,tls"}},
    {E, "missing port", {"tls://", "tls://h,tls", "tls6://[::1],tls"}},
    {E, "IPv6 address with an IPv4-only scheme", {"tls4://[::1]:1"}},
    {E, "IPv4 address with an IPv6-only scheme", {"tls6://127.0.0.1:1"}},
    {E,
     W_SCHEME,
     {"tls:/x:1", "tls:x:1", "tls5://:1", "TLS://:1", "tls", ",tls", "fd,tls",
      "sd,tls"}},
    /* The kinds of v0.2: the endpoint first, then its options. */
    {E, W_UNKNOWN("crt"), {"fd:3,crt=a", "sd:web,crt", "mptcp://:1,crt"}},
    {E, W_UNKNOWN("fd"), {"sd:,fd=3"}},
    {E, W_TWICE("tls"), {"fd:3,tls,tls", "sd:,tls,tls", "mptcp://:1,tls,tls"}},
    {E, "missing descriptor number", {"fd:,tls", "fd:"}},
    {E, "descriptor is not a number", {"fd:3\\,tls", "fd:x,tls", "fd:-1,tls"}},
    {-ERANGE, "descriptor out of range 0..2147483647", {"fd:2147483648,tls"}},
    {E,
     "bad character in socket name (printable ASCII but ':')",
     {"sd:a:b,tls", "sd:\\x3a,proxy=v1"}},
    {E, "bad escape in socket name (write \\\\ or \\,)", {"sd:a\\q,tls"}},
    {E, "empty path", {"unixpacket:,tls", "unixpacket:,mode=600"}},
    {E, "IPv6 address with an IPv4-only scheme", {"mptcp4://[::1]:1,tls"}},
};

/* sk_endpoint_parse() takes tls and proxy= only: these parse with opts. */
static const char *const need_opts[] = {
    "tcp://:8443,tls,cert=a.pem",    "tls://:1,key=k",    "tls://:1,ca=c",
    "tls://:1,verify=none",          "tls://:1,sni=x",    "tls://:1,alpn=h2",
    "unix:/a,tls,proxy=v1,mode=600", "tcp://:1,mode=660", "udp://:1,cert=c",
};

/* Fails with code and want, *ep and *opts untouched; why NULL allowed.
 * Without opts, sk_endpoint_parse() says the same. */
static void expect_bad(const char *in, int code, const char *want,
                       bool with_opts)
{
    struct sk_endpoint ep, ep0;
    struct sk_endpoint_options o, o0, *op = with_opts ? &o : NULL;
    const char *why = NULL;

    memset(&ep0, 0xa5, sizeof(ep0));
    memset(&o0, 0x5a, sizeof(o0));
    ep = ep0;
    o = o0;
    expect_code(in, sk_endpoint_parse_options(&ep, op, in, &why), code);
    expect_why(in, why, want);
    expect_code(in, sk_endpoint_parse_options(&ep, op, in, NULL), code);
    if (!with_opts) {
        why = NULL;
        expect_code(in, sk_endpoint_parse(&ep, in, &why), code);
        expect_why(in, why, want);
    }
    if (memcmp(&ep, &ep0, sizeof(ep)) != 0 || memcmp(&o, &o0, sizeof(o)))
        fail_msg("\"%.80s\": *ep or *opts written on failure", in);
}

static void test_options_bad_inputs_fail_with_why(void **state)
{
    struct sk_endpoint ep;
    struct sk_endpoint_options o;
    const char *why;

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        for (size_t j = 0; j < ARRAY_LEN(bad[i].in) && bad[i].in[j]; j++) {
            expect_bad(bad[i].in[j], bad[i].code, bad[i].why, true);
            expect_bad(bad[i].in[j], bad[i].code, bad[i].why, false);
        }
    }
    for (size_t i = 0; i < ARRAY_LEN(need_opts); i++) {
        expect_code(need_opts[i], parse(&ep, &o, need_opts[i], &why), 0);
        expect_bad(need_opts[i], E,
                   "endpoint options other than tls and proxy= need "
                   "sk_endpoint_parse_options()",
                   false);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_options_parse_format_and_round_trip),
        cmocka_unit_test(test_options_bad_inputs_fail_with_why),
    };

    return cmocka_run_group_tests(tests, fill_long_inputs, NULL);
}
