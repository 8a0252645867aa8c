/* endpoint_check.c -- unit tests of sk_endpoint_check_options()
 * (src/endpoint_options.c): whether each option applies to each kind of
 * endpoint, listening and connecting, and what it says when it does not.
 * Kinds of v0.2 included: mptcp as tcp, unixpacket as unix without tls
 * and proxy= (message sockets), fd: and sd: as streams that only listen. */
#include "endpoint_helpers.h"

#define OK NULL /* check_options() accepts */

/* Kinds: t tcp, T tls (tcp with tls), m mptcp, M mptcp with tls, u udp,
 * x unix, X unix with tls, g unixgram, p unixpacket, f fd: and sd:, F fd:
 * and sd: with tls. U, G and P (udp, unixgram and unixpacket with tls) are
 * always refused first, whatever follows. */
static const char kind_names[] = "tTmMuxXgpfFUGP";
static const char *const bases[][7] = {
    {"tcp://127.0.0.1:8080", "tcp4://0.0.0.0:1", "tcp6://[::1]:1", "tcp://:0"},
    {"tls://127.0.0.1:8443", "tls4://:1", "tls6://[::]:1", "tcp://host:1,tls",
     "tcp4://:1,tls", "tcp6://[::1]:1,tls"},
    {"mptcp://127.0.0.1:8080", "mptcp4://0.0.0.0:1", "mptcp6://[::1]:1",
     "mptcp://:0"},
    {"mptcp://host:1,tls", "mptcp4://:1,tls", "mptcp6://[::1]:1,tls"},
    {"udp://:53", "udp4://127.0.0.1:53", "udp6://[::1]:53"},
    {"unix:/run/a.sock", "unix:rel.sock", "unix:@name", "unix:/a\\,b"},
    {"unix:/run/a.sock,tls", "unix:@name,tls"},
    {"unixgram:/run/g.sock", "unixgram:@g"},
    {"unixpacket:/run/p.sock", "unixpacket:rel", "unixpacket:@p"},
    {"fd:3", "fd:0", "sd:", "sd:web", "sd:a\\,b"},
    {"fd:3,tls", "sd:,tls", "sd:web,tls"},
    {"udp://:53,tls", "udp4://:53,tls", "udp6://[::1]:53,tls"},
    {"unixgram:/g.sock,tls", "unixgram:@g,tls"},
    {"unixpacket:/p.sock,tls", "unixpacket:@p,tls"},
};

#define A_STREAM(n) "endpoint option \"" n "\" applies to stream endpoints only"
#define A_PACKET(n)                                                            \
    "endpoint option \"" n "\" does not apply to unixpacket endpoints (they "  \
    "keep message boundaries)"
#define A_TLS(n) "endpoint option \"" n "\" needs tls"
#define A_CONN(n)                                                              \
    "endpoint option \"" n "\" applies to connecting endpoints only"
#define A_LISTEN(n)                                                            \
    "endpoint option \"" n "\" applies to listening endpoints only"
#define A_UNIX(n) "endpoint option \"" n "\" applies to UNIX endpoints only"
#define A_CERT "tls needs cert=FILE when listening"
#define A_KEY "endpoint option \"key\" needs cert=FILE"
#define A_ANY "endpoint option \"proxy\" must be v1 or v2 when connecting"
#define A_INH_MODE                                                             \
    "endpoint option \"mode\" does not apply to inherited sockets (their "     \
    "files are not sockit's)"
/* fd: and sd: connecting: each says it only listens (see only_listens()). */
#define A_ONLY_LISTENS "(fd: or sd: can only listen)"
#define A_FD_LISTENS "fd:N can only listen (it names an inherited socket)"
#define A_SD_LISTENS "sd: can only listen (it names sockets passed by systemd)"
#define ALL_LISTEN ",cert=c.pem,key=k.pem,ca=ca.pem,alpn=h2,proxy=v2"
#define ALL_CONNECT ",ca=ca.pem,sni=example.org,verify=none,alpn=h2,proxy=v1"
#define NO_PROXY "ug", A_STREAM("proxy"), A_STREAM("proxy")
#define NO_PACKET_PROXY "p", A_PACKET("proxy"), A_PACKET("proxy")

/* What check_options() says, listening and connecting, of an option
 * string after every base of some kinds; the rows of an option string
 * name each kind but U, G and P once. */
static const struct {
    const char *opts, *kinds, *listen, *connect;
} apply[] = {
    {"", "tmuxgp", OK, OK},
    {"", "TMX", A_CERT, OK},
    {"", "f", OK, A_ONLY_LISTENS},
    {"", "F", A_CERT, A_ONLY_LISTENS},
    {",cert=c.pem", "tmuxgp", A_TLS("cert"), A_TLS("cert")},
    {",cert=c.pem", "TMX", OK, OK},
    {",cert=c.pem", "f", A_TLS("cert"), A_ONLY_LISTENS},
    {",cert=c.pem", "F", OK, A_ONLY_LISTENS},
    {",key=k.pem", "tmuxgp", A_TLS("key"), A_TLS("key")},
    {",key=k.pem", "TMX", A_KEY, A_KEY},
    {",key=k.pem", "f", A_TLS("key"), A_ONLY_LISTENS},
    {",key=k.pem", "F", A_KEY, A_ONLY_LISTENS},
    {",ca=ca.pem", "tmuxgp", A_TLS("ca"), A_TLS("ca")},
    {",ca=ca.pem", "TMX", A_CERT, OK},
    {",ca=ca.pem", "f", A_TLS("ca"), A_ONLY_LISTENS},
    {",ca=ca.pem", "F", A_CERT, A_ONLY_LISTENS},
    {",verify=none", "tmuxgp", A_TLS("verify"), A_TLS("verify")},
    {",verify=none", "TMX", A_CONN("verify"), OK},
    {",verify=none", "f", A_TLS("verify"), A_ONLY_LISTENS},
    {",verify=none", "F", A_CONN("verify"), A_ONLY_LISTENS},
    {",sni=example.org", "tmuxgp", A_TLS("sni"), A_TLS("sni")},
    {",sni=example.org", "TMX", A_CONN("sni"), OK},
    {",sni=example.org", "f", A_TLS("sni"), A_ONLY_LISTENS},
    {",sni=example.org", "F", A_CONN("sni"), A_ONLY_LISTENS},
    {",sni=example.org,verify=none", "tmuxgp", A_TLS("verify"),
     A_TLS("verify")},
    {",sni=example.org,verify=none", "TMX", A_CONN("verify"), OK},
    {",sni=example.org,verify=none", "f", A_TLS("verify"), A_ONLY_LISTENS},
    {",sni=example.org,verify=none", "F", A_CONN("verify"), A_ONLY_LISTENS},
    {",alpn=h2:http/1.1", "tmuxgp", A_TLS("alpn"), A_TLS("alpn")},
    {",alpn=h2:http/1.1", "TMX", A_CERT, OK},
    {",alpn=h2:http/1.1", "f", A_TLS("alpn"), A_ONLY_LISTENS},
    {",alpn=h2:http/1.1", "F", A_CERT, A_ONLY_LISTENS},
    {",proxy=v1", "tmx", OK, OK}, /* v2 is the same */
    {",proxy=v1", NO_PROXY},
    {",proxy=v1", NO_PACKET_PROXY},
    {",proxy=v1", "TMX", A_CERT, OK},
    {",proxy=v1", "f", OK, A_ONLY_LISTENS},
    {",proxy=v1", "F", A_CERT, A_ONLY_LISTENS},
    {",proxy=any", "tmx", OK, A_ANY},
    {",proxy=any", NO_PROXY},
    {",proxy=any", NO_PACKET_PROXY},
    {",proxy=any", "TMX", A_CERT, A_ANY},
    {",proxy=any", "f", OK, A_ONLY_LISTENS},
    {",proxy=any", "F", A_CERT, A_ONLY_LISTENS},
    {",cert=c.pem,proxy=any", "tmx", A_TLS("cert"), A_ANY},
    {",cert=c.pem,proxy=any", NO_PROXY},
    {",cert=c.pem,proxy=any", NO_PACKET_PROXY},
    {",cert=c.pem,proxy=any", "TMX", OK, A_ANY},
    {",cert=c.pem,proxy=any", "f", A_TLS("cert"), A_ONLY_LISTENS},
    {",cert=c.pem,proxy=any", "F", OK, A_ONLY_LISTENS},
    {",mode=660", "tTmMu", A_UNIX("mode"), A_UNIX("mode")},
    {",mode=660", "xgp", OK, A_LISTEN("mode")},
    {",mode=660", "X", A_CERT, A_LISTEN("mode")},
    {",mode=660", "fF", A_INH_MODE, A_ONLY_LISTENS},
    {",cert=c.pem,mode=600", "tTmMu", A_UNIX("mode"), A_UNIX("mode")},
    {",cert=c.pem,mode=600", "xgp", A_TLS("cert"), A_LISTEN("mode")},
    {",cert=c.pem,mode=600", "X", OK, A_LISTEN("mode")},
    {",cert=c.pem,mode=600", "fF", A_INH_MODE, A_ONLY_LISTENS},
    {ALL_LISTEN, "tmx", A_TLS("cert"), A_TLS("cert")},
    {ALL_LISTEN, NO_PROXY},
    {ALL_LISTEN, NO_PACKET_PROXY},
    {ALL_LISTEN, "TMX", OK, OK},
    {ALL_LISTEN, "f", A_TLS("cert"), A_ONLY_LISTENS},
    {ALL_LISTEN, "F", OK, A_ONLY_LISTENS},
    {ALL_CONNECT, "tmx", A_TLS("ca"), A_TLS("ca")},
    {ALL_CONNECT, NO_PROXY},
    {ALL_CONNECT, NO_PACKET_PROXY},
    {ALL_CONNECT, "TMX", A_CONN("verify"), OK},
    {ALL_CONNECT, "f", A_TLS("ca"), A_ONLY_LISTENS},
    {ALL_CONNECT, "F", A_CONN("verify"), A_ONLY_LISTENS},
};

/* What a connecting fd: or sd: says, whatever its options. */
static const char *only_listens(const struct sk_endpoint *ep, const char *want)
{
    if (want == NULL || strcmp(want, A_ONLY_LISTENS) != 0)
        return want;
    return ep->scheme == SK_FD ? A_FD_LISTENS : A_SD_LISTENS;
}

static void expect_applies(const char *text, const struct sk_endpoint *ep,
                           const struct sk_endpoint_options *o, bool listening,
                           const char *want)
{
    const char *why = NULL;
    char in[400];

    want = only_listens(ep, want);
    snprintf(in, sizeof(in), "%s (%s%s)", text,
             listening ? "listening" : "connecting", o ? "" : ", opts NULL");
    expect_code(in, sk_endpoint_check_options(ep, o, listening, &why),
                want ? -EINVAL : 0);
    expect_why(in, why, want);
    expect_code(in, sk_endpoint_check_options(ep, o, listening, NULL),
                want ? -EINVAL : 0);
}

/* Every base of kinds with opts after it, on both sides; where only tls
 * and proxy= are given, opts NULL must say the same. */
static void check_kinds(const char *opts, const char *kinds, const char *listen,
                        const char *connect)
{
    for (const char *k = kinds; *k != '\0'; k++) {
        const char *const *b = bases[strchr(kind_names, *k) - kind_names];

        for (size_t i = 0; i < 7 && b[i] != NULL; i++) {
            struct sk_endpoint ep;
            struct sk_endpoint_options o;
            const char *why;
            char text[200];

            /* mode= on an abstract name: see the test below. */
            if (strchr(b[i], '@') && strstr(opts, "mode="))
                continue;
            snprintf(text, sizeof(text), "%s%s", b[i], opts);
            expect_code(text, parse(&ep, &o, text, &why), 0);
            expect_applies(text, &ep, &o, true, listen);
            expect_applies(text, &ep, &o, false, connect);
            if (o.given & ~(SK_OPT_TLS | SK_OPT_PROXY))
                continue;
            expect_applies(text, &ep, NULL, true, listen);
            expect_applies(text, &ep, NULL, false, connect);
        }
    }
}

static void test_options_apply_to_every_kind_and_side(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(apply); i++) {
        char seen[32] = "";

        check_kinds(apply[i].opts, apply[i].kinds, apply[i].listen,
                    apply[i].connect);
        if (i > 0 && strcmp(apply[i - 1].opts, apply[i].opts) == 0)
            continue;
        /* The first row of an option string: its rows cover each kind
         * once, and tls on a datagram or unixpacket kind is refused. */
        for (size_t j = i; j < ARRAY_LEN(apply); j++)
            if (strcmp(apply[j].opts, apply[i].opts) == 0)
                strcat(seen, apply[j].kinds);
        for (const char *k = kind_names; *k != 'U'; k++)
            if (!strchr(seen, *k) || strchr(seen, *k) != strrchr(seen, *k))
                fail_msg("\"%s\": kind %c not once in \"%s\"", apply[i].opts,
                         *k, seen);
        assert_int_equal(strlen(seen), 11);
        check_kinds(apply[i].opts, "UG", A_STREAM("tls"), A_STREAM("tls"));
        check_kinds(apply[i].opts, "P", A_PACKET("tls"), A_PACKET("tls"));
    }
}

/* mode= is the mode of the socket file (as --unix-mode, which the command
 * refuses for an abstract name): an abstract name has no file. */
static void test_options_mode_refused_on_abstract_name(void **state)
{
    static const char *const ins[] = {
        "unix:@name,mode=660", "unixgram:@g,mode=600", "unixpacket:@p,mode=600",
        "unix:@name,tls,cert=c.pem,mode=660"};

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(ins); i++) {
        struct sk_endpoint ep;
        struct sk_endpoint_options o;
        const char *why;

        assert_int_equal(parse(&ep, &o, ins[i], &why), 0);
        expect_code(ins[i], sk_endpoint_check_options(&ep, &o, true, &why),
                    -EINVAL);
        if (why == NULL || !strstr(why, "\"mode\"") || !strstr(why, "abstract"))
            fail_msg("\"%s\": why \"%s\"", ins[i], why ? why : "(null)");
    }
}

/* A connecting fd: or sd: is refused before anything else is looked at,
 * naming it; the same endpoint listening is only checked for its
 * options. */
static void test_options_inherited_only_listen(void **state)
{
    static const struct {
        const char *in, *connect, *listen;
    } cases[] = {
        {"fd:3,cert=a.pem", A_FD_LISTENS, A_TLS("cert")},
        {"fd:3,tls,proxy=any,mode=600", A_FD_LISTENS, A_INH_MODE},
        {"fd:3,tls,cert=a.pem,proxy=v1", A_FD_LISTENS, OK},
        {"sd:web,verify=none", A_SD_LISTENS, A_TLS("verify")},
        {"sd:,tls,cert=a.pem,ca=b.pem,alpn=h2", A_SD_LISTENS, OK},
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct sk_endpoint ep;
        struct sk_endpoint_options o;
        const char *why;

        expect_code(cases[i].in, parse(&ep, &o, cases[i].in, &why), 0);
        expect_applies(cases[i].in, &ep, &o, false, cases[i].connect);
        expect_applies(cases[i].in, &ep, &o, true, cases[i].listen);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_options_apply_to_every_kind_and_side),
        cmocka_unit_test(test_options_mode_refused_on_abstract_name),
        cmocka_unit_test(test_options_inherited_only_listen),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
