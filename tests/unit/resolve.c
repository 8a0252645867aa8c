/* resolve.c -- unit tests of src/endpoint.c and src/error.c past parsing:
 * resolution of numeric endpoints, endpoints from socket addresses, and
 * the names of error codes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>

#include <sockit.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define WHY_PATH_LONG "path too long for a UNIX socket (max 107 bytes)"

/* Parses text into a zeroed *ep (so that whole structs compare). */
static int parse_zeroed(struct sk_endpoint *ep, const char *text,
                        const char **why)
{
    memset(ep, 0, sizeof(*ep));
    return sk_endpoint_parse(ep, text, why);
}

/* "unix:@aaa...": the longest abstract name, 107 bytes. */
static char abs107[109];
static char abs107_in[128];

static int fill_long_inputs(void **state)
{
    (void)state;
    abs107[0] = '@';
    memset(abs107 + 1, 'a', 107);
    abs107[108] = '\0';
    snprintf(abs107_in, sizeof(abs107_in), "unix:%s", abs107);
    return 0;
}

/* ------------------------------------------------------------ resolve */

static int resolve_text(const char *text, bool passive, struct sk_addr *addrs,
                        size_t max)
{
    struct sk_endpoint ep;

    assert_int_equal(parse_zeroed(&ep, text, NULL), 0);
    return sk_endpoint_resolve(&ep, passive, addrs, max);
}

static void test_endpoint_resolves_ipv4_literal(void **state)
{
    struct sk_addr addrs[4];

    (void)state;
    assert_int_equal(resolve_text("tcp://127.0.0.1:80", false, addrs, 4), 1);
    assert_int_equal(addrs[0].u.sa.sa_family, AF_INET);
    assert_int_equal(addrs[0].len, sizeof(struct sockaddr_in));
    assert_int_equal(ntohs(addrs[0].u.in.sin_port), 80);
    assert_int_equal(ntohl(addrs[0].u.in.sin_addr.s_addr), INADDR_LOOPBACK);
}

static void test_endpoint_resolves_ipv6_literal(void **state)
{
    struct sk_addr addrs[4];

    (void)state;
    assert_int_equal(resolve_text("udp6://[::1]:53", false, addrs, 4), 1);
    assert_int_equal(addrs[0].u.sa.sa_family, AF_INET6);
    assert_int_equal(ntohs(addrs[0].u.in6.sin6_port), 53);
    assert_true(IN6_IS_ADDR_LOOPBACK(&addrs[0].u.in6.sin6_addr));
}

static void
test_endpoint_resolves_empty_host_passive_to_in6addr_any(void **state)
{
    struct sk_addr addrs[4];

    (void)state;
    assert_int_equal(resolve_text("tcp://:0", true, addrs, 4), 1);
    assert_int_equal(addrs[0].u.sa.sa_family, AF_INET6);
    assert_int_equal(addrs[0].len, sizeof(struct sockaddr_in6));
    assert_int_equal(addrs[0].u.in6.sin6_port, 0);
    assert_true(IN6_IS_ADDR_UNSPECIFIED(&addrs[0].u.in6.sin6_addr));
}

static void test_endpoint_resolves_tcp4_empty_host_to_inaddr_any(void **state)
{
    struct sk_addr addrs[4];

    (void)state;
    assert_int_equal(resolve_text("tcp4://:5", true, addrs, 4), 1);
    assert_int_equal(addrs[0].u.sa.sa_family, AF_INET);
    assert_int_equal(addrs[0].len, sizeof(struct sockaddr_in));
    assert_int_equal(ntohs(addrs[0].u.in.sin_port), 5);
    assert_int_equal(addrs[0].u.in.sin_addr.s_addr, htonl(INADDR_ANY));
}

static void
test_endpoint_resolve_empty_host_active_is_edestaddrreq(void **state)
{
    struct sk_addr addrs[4];

    (void)state;
    assert_int_equal(resolve_text("tcp://:5", false, addrs, 4), -EDESTADDRREQ);
}

static void test_endpoint_resolve_with_max_zero_is_einval(void **state)
{
    struct sk_addr addr;

    (void)state;
    assert_int_equal(resolve_text("tcp://127.0.0.1:5", false, &addr, 0),
                     -EINVAL);
}

static void test_endpoint_resolves_unix_path(void **state)
{
    struct sk_addr addr;

    (void)state;
    assert_int_equal(resolve_text("unix:/a", true, &addr, 1), 1);
    assert_int_equal(addr.u.un.sun_family, AF_UNIX);
    assert_string_equal(addr.u.un.sun_path, "/a");
    assert_int_equal(addr.len, offsetof(struct sockaddr_un, sun_path) + 3);
}

static void test_endpoint_resolves_unix_abstract(void **state)
{
    struct sk_addr addr;

    (void)state;
    assert_int_equal(resolve_text("unix:@ab", true, &addr, 1), 1);
    assert_int_equal(addr.u.un.sun_family, AF_UNIX);
    assert_memory_equal(addr.u.un.sun_path, "\0ab", 3);
    assert_int_equal(addr.len, offsetof(struct sockaddr_un, sun_path) + 3);
}

static void test_endpoint_resolves_longest_abstract_name(void **state)
{
    struct sk_addr addr;

    (void)state;
    assert_int_equal(resolve_text(abs107_in, true, &addr, 1), 1);
    assert_int_equal(addr.len, sizeof(struct sockaddr_un));
    assert_int_equal(addr.u.un.sun_path[0], 0);
    assert_memory_equal(addr.u.un.sun_path + 1, abs107 + 1, 107);
}

/* Numeric endpoints resolve to an address that names them again. */
static void test_endpoint_resolve_then_from_addr_gives_it_back(void **state)
{
    static const char *const texts[] = {
        "tcp4://127.0.0.1:80",    "tcp://127.0.0.1:1", "tcp6://[::1]:8080",
        "udp6://[2001:db8::1]:9", "unix:/a",           "unix:@ab",
        "unixgram:rel",
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(texts); i++) {
        struct sk_endpoint ep, back;
        struct sk_addr addr;

        assert_int_equal(parse_zeroed(&ep, texts[i], NULL), 0);
        assert_int_equal(sk_endpoint_resolve(&ep, false, &addr, 1), 1);
        memset(&back, 0x5a, sizeof(back));
        assert_int_equal(sk_endpoint_from_addr(&back, ep.scheme, &addr), 0);
        if (memcmp(&ep, &back, sizeof(ep)) != 0)
            fail_msg("%s: from_addr gives host \"%s\" port %u path \"%s\"",
                     texts[i], back.host, back.port, back.path);
    }
}

/* ---------------------------------------------------------- from_addr */

static struct sk_addr inet4_addr(const char *ip, uint16_t port)
{
    struct sk_addr a = {.len = sizeof(struct sockaddr_in)};

    a.u.in.sin_family = AF_INET;
    a.u.in.sin_port = htons(port);
    assert_int_equal(inet_pton(AF_INET, ip, &a.u.in.sin_addr), 1);
    return a;
}

static struct sk_addr inet6_addr(const char *ip, uint16_t port)
{
    struct sk_addr a = {.len = sizeof(struct sockaddr_in6)};

    a.u.in6.sin6_family = AF_INET6;
    a.u.in6.sin6_port = htons(port);
    assert_int_equal(inet_pton(AF_INET6, ip, &a.u.in6.sin6_addr), 1);
    return a;
}

/* A UNIX address whose sun_path holds the n bytes of name. */
static struct sk_addr unix_addr(const char *name, size_t n)
{
    struct sk_addr a = {
        .len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)};

    a.u.un.sun_family = AF_UNIX;
    memcpy(a.u.un.sun_path, name, n);
    return a;
}

static void expect_from_addr(enum sk_scheme scheme, const struct sk_addr *addr,
                             const char *canon)
{
    struct sk_endpoint ep;
    char text[SK_ENDPOINT_STRLEN];

    memset(&ep, 0x5a, sizeof(ep));
    assert_int_equal(sk_endpoint_from_addr(&ep, scheme, addr), 0);
    assert_true(sk_endpoint_format(&ep, text, sizeof(text)) > 0);
    assert_string_equal(text, canon);
}

static void test_endpoint_from_ipv4_addr(void **state)
{
    struct sk_addr a = inet4_addr("192.0.2.7", 8080);

    (void)state;
    expect_from_addr(SK_TCP4, &a, "tcp4://192.0.2.7:8080");
    expect_from_addr(SK_UDP, &a, "udp://192.0.2.7:8080");
}

static void test_endpoint_from_ipv6_addr(void **state)
{
    struct sk_addr a = inet6_addr("2001:db8::1", 443);

    (void)state;
    expect_from_addr(SK_TCP6, &a, "tcp6://[2001:db8::1]:443");
    expect_from_addr(SK_TCP, &a, "tcp://[2001:db8::1]:443");
}

static void test_endpoint_from_v4_mapped_addr_is_named_as_ipv4(void **state)
{
    struct sk_addr a = inet6_addr("::ffff:127.0.0.1", 9);

    (void)state;
    expect_from_addr(SK_TCP, &a, "tcp://127.0.0.1:9");
    expect_from_addr(SK_UDP, &a, "udp://127.0.0.1:9");
    /* Named with the scheme of both families (tcp6:// would not parse). */
    expect_from_addr(SK_TCP6, &a, "tcp://127.0.0.1:9");
    expect_from_addr(SK_UDP6, &a, "udp://127.0.0.1:9");
}

/* A link-local address keeps its zone, by name or, for an interface that
 * is gone, by number. */
static void test_endpoint_from_ipv6_addr_keeps_its_zone(void **state)
{
    struct sk_addr a = inet6_addr("fe80::1", 80);

    (void)state;
    a.u.in6.sin6_scope_id = if_nametoindex("lo");
    assert_int_not_equal(a.u.in6.sin6_scope_id, 0);
    expect_from_addr(SK_TCP, &a, "tcp://[fe80::1%lo]:80");
    a.u.in6.sin6_scope_id = 999999;
    expect_from_addr(SK_UDP6, &a, "udp6://[fe80::1%999999]:80");
}

/* "[::ffff:a.b.c.d]" is an IPv4 address: parsed, bound and named as one. */
static void test_v4_mapped_literal_is_ipv4(void **state)
{
    struct sk_endpoint ep;
    struct sk_addr addrs[2];
    const char *why = NULL;

    (void)state;
    assert_int_equal(parse_zeroed(&ep, "tcp://[::ffff:127.0.0.1]:80", NULL), 0);
    assert_string_equal(ep.host, "127.0.0.1");
    assert_int_equal(sk_endpoint_resolve(&ep, true, addrs, 2), 1);
    assert_int_equal(addrs[0].u.sa.sa_family, AF_INET);
    assert_int_equal(parse_zeroed(&ep, "udp4://[::FFFF:7f00:2]:9", NULL), 0);
    assert_string_equal(ep.host, "127.0.0.2");
    assert_int_equal(parse_zeroed(&ep, "tcp6://[::ffff:127.0.0.1]:80", &why),
                     -EINVAL);
    assert_string_equal(why, "IPv4-mapped address with an IPv6-only scheme "
                             "(it is IPv4: drop the 6 from the scheme)");
    /* Not mapped: stays IPv6. */
    assert_int_equal(parse_zeroed(&ep, "tcp://[::fffe:127.0.0.1]:80", NULL), 0);
    assert_string_equal(ep.host, "::fffe:127.0.0.1");
}

static void test_endpoint_from_unix_path_addr(void **state)
{
    struct sk_addr with_nul = unix_addr("/tmp/s", 7);
    struct sk_addr without_nul = unix_addr("/tmp/s", 6);

    (void)state;
    expect_from_addr(SK_UNIX, &with_nul, "unix:/tmp/s");
    expect_from_addr(SK_UNIXGRAM, &without_nul, "unixgram:/tmp/s");
}

static void test_endpoint_from_abstract_addr(void **state)
{
    struct sk_addr a = unix_addr("\0ab", 3);

    (void)state;
    expect_from_addr(SK_UNIX, &a, "unix:@ab");
}

static void test_endpoint_from_unnamed_unix_addr_has_empty_path(void **state)
{
    struct sk_addr a = unix_addr("", 0);
    struct sk_endpoint ep;

    (void)state;
    assert_int_equal(a.len, sizeof(sa_family_t));
    memset(&ep, 0x5a, sizeof(ep));
    assert_int_equal(sk_endpoint_from_addr(&ep, SK_UNIXGRAM, &a), 0);
    assert_int_equal(ep.scheme, SK_UNIXGRAM);
    assert_string_equal(ep.path, "");
    assert_string_equal(ep.host, "");
    assert_int_equal(ep.port, 0);
}

static void test_endpoint_from_other_family_is_eafnosupport(void **state)
{
    struct sk_addr a = {.len = sizeof(sa_family_t)};
    struct sk_endpoint ep, sentinel;

    (void)state;
    a.u.sa.sa_family = AF_APPLETALK;
    memset(&sentinel, 0xa5, sizeof(sentinel));
    ep = sentinel;
    assert_int_equal(sk_endpoint_from_addr(&ep, SK_TCP, &a), -EAFNOSUPPORT);
    assert_memory_equal(&ep, &sentinel, sizeof(ep));
}

/* ------------------------------------------------------------- errors */

static void test_strerror_names_known_codes(void **state)
{
    (void)state;
    assert_string_equal(sk_strerror(-EADDRINUSE), "address in use");
    assert_string_equal(sk_strerror(SK_EAI_NONAME), "name not resolved");
    assert_string_equal(sk_strerror(SK_ENOTSOCKFILE),
                        "file exists and is not a socket");
    assert_string_equal(sk_strerror(-ENAMETOOLONG), WHY_PATH_LONG);
}

static void test_strerror_of_unknown_codes_is_not_null(void **state)
{
    static const int codes[] = {0,       1,         12345,     -3000, -3999,
                                -100000, INT32_MIN, INT32_MAX, -EDOM};

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(codes); i++) {
        const char *text = sk_strerror(codes[i]);
        assert_non_null(text);
        assert_true(text[0] != '\0');
    }
    assert_string_equal(sk_strerror(-100000), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoint_resolves_ipv4_literal),
        cmocka_unit_test(test_endpoint_resolves_ipv6_literal),
        cmocka_unit_test(
            test_endpoint_resolves_empty_host_passive_to_in6addr_any),
        cmocka_unit_test(test_endpoint_resolves_tcp4_empty_host_to_inaddr_any),
        cmocka_unit_test(
            test_endpoint_resolve_empty_host_active_is_edestaddrreq),
        cmocka_unit_test(test_endpoint_resolve_with_max_zero_is_einval),
        cmocka_unit_test(test_endpoint_resolves_unix_path),
        cmocka_unit_test(test_endpoint_resolves_unix_abstract),
        cmocka_unit_test(test_endpoint_resolves_longest_abstract_name),
        cmocka_unit_test(test_endpoint_resolve_then_from_addr_gives_it_back),
        cmocka_unit_test(test_endpoint_from_ipv4_addr),
        cmocka_unit_test(test_endpoint_from_ipv6_addr),
        cmocka_unit_test(test_endpoint_from_v4_mapped_addr_is_named_as_ipv4),
        cmocka_unit_test(test_endpoint_from_ipv6_addr_keeps_its_zone),
        cmocka_unit_test(test_v4_mapped_literal_is_ipv4),
        cmocka_unit_test(test_endpoint_from_unix_path_addr),
        cmocka_unit_test(test_endpoint_from_abstract_addr),
        cmocka_unit_test(test_endpoint_from_unnamed_unix_addr_has_empty_path),
        cmocka_unit_test(test_endpoint_from_other_family_is_eafnosupport),
        cmocka_unit_test(test_strerror_names_known_codes),
        cmocka_unit_test(test_strerror_of_unknown_codes_is_not_null),
    };

    return cmocka_run_group_tests(tests, fill_long_inputs, NULL);
}
