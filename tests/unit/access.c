/* access.c -- unit tests of src/access.c: every rule form, every malformed
 * one with its exact why, and tables of peers against rule sets (deny
 * wins, allow lists, IPv4-mapped peers and rules, /0 /32 /128, uid:/gid:
 * with and without credentials, UNIX peers against IP-only lists). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include <sockit.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
/* The last rule of a NULL-terminated list. */
#define END NULL

/* ------------------------------------------------------------ helpers */

/* A peer: an IPv4 or IPv6 address ("unix" for a named UNIX socket,
 * "unnamed" for an unnamed one, "none" for a family no rule speaks of). */
static struct sk_addr make_peer(const char *text)
{
    struct sk_addr a;

    memset(&a, 0, sizeof(a));
    if (strcmp(text, "unix") == 0) {
        a.u.un.sun_family = AF_UNIX;
        strcpy(a.u.un.sun_path, "/run/x.sock");
        a.len = sizeof(a.u.un);
    } else if (strcmp(text, "unnamed") == 0) {
        a.u.un.sun_family = AF_UNIX;
        a.len = sizeof(sa_family_t);
    } else if (strcmp(text, "none") == 0) {
        a.u.sa.sa_family = AF_PACKET;
        a.len = sizeof(a.u.ss);
    } else if (inet_pton(AF_INET, text, &a.u.in.sin_addr) == 1) {
        a.u.in.sin_family = AF_INET;
        a.u.in.sin_port = htons(4242);
        a.len = sizeof(a.u.in);
    } else {
        assert_int_equal(inet_pton(AF_INET6, text, &a.u.in6.sin6_addr), 1);
        a.u.in6.sin6_family = AF_INET6;
        a.u.in6.sin6_port = htons(4242);
        a.len = sizeof(a.u.in6);
    }
    return a;
}

/* Rules, each "+RULE" (allow) or "-RULE" (deny), up to END. */
static struct sk_access *make_access(const char *const *rules)
{
    struct sk_access *a;
    const char *why = NULL;

    assert_int_equal(sk_access_new(&a), 0);
    for (size_t i = 0; rules[i] != END; i++) {
        int err = sk_access_add(a, rules[i][0] == '+', rules[i] + 1, &why);
        if (err != 0)
            fail_msg("rule %s: %s", rules[i], why);
    }
    return a;
}

static bool permits_ip(const struct sk_access *a, const char *peer)
{
    struct sk_addr addr = make_peer(peer);
    return sk_access_permits(a, &addr, NULL);
}

/* A peer and whether it is served. */
struct verdict {
    const char *peer;
    bool served;
};

static void expect_verdicts(const char *const *rules, const struct verdict *v,
                            size_t n)
{
    struct sk_access *a = make_access(rules);

    for (size_t i = 0; i < n; i++)
        if (permits_ip(a, v[i].peer) != v[i].served)
            fail_msg("rules starting %s: peer %s should be %s", rules[0],
                     v[i].peer, v[i].served ? "served" : "refused");
    sk_access_free(a);
}

/* -------------------------------------------------------------- parsing */

static void test_access_accepts_every_rule_form(void **state)
{
    static const char *const good[] = {
        "10.0.0.0/8",
        "127.0.0.1",
        "127.0.0.1/32",
        "0.0.0.0/0",
        "192.168.1.128/25",
        "10.0.0.0/7",
        "::1",
        "::1/128",
        "::/0",
        "2001:db8::/32",
        "fe80::/10",
        "::ffff:10.0.0.0/104",
        "::ffff:10.0.0.1",
        "::ffff:0:0/96",
        "::fffe:0:0/95",
        "uid:0",
        "uid:1000",
        "uid:4294967294",
        "gid:0",
        "gid:4294967294",
    };
    struct sk_access *a;
    const char *why;

    (void)state;
    assert_int_equal(sk_access_new(&a), 0);
    for (size_t i = 0; i < ARRAY_LEN(good); i++) {
        why = NULL;
        if (sk_access_add(a, i % 2 == 0, good[i], &why) != 0)
            fail_msg("%s refused: %s", good[i], why);
        assert_null(why);
    }
    sk_access_free(a);
}

static void test_access_rejects_malformed_rules_with_exact_why(void **state)
{
    static const struct {
        const char *rule, *why;
    } bad[] = {
        {"", "empty rule"},
        {"10.0.0.0/", "no prefix length after '/'"},
        {"/8", "no address before '/'"},
        {"/", "no address before '/'"},
        {"10.0.0.0/33", "prefix length out of range 0..32"},
        {"10.0.0.0/99999999999999999999999",
         "prefix length out of range 0..32"},
        {"10.0.0.0/8/8", "more than one '/'"},
        {"10.0.0.0//8", "more than one '/'"},
        {"10.0.0.0/-1", "prefix length is not a decimal number"},
        {"10.0.0.0/+8", "prefix length is not a decimal number"},
        {"10.0.0.0/ 8", "prefix length is not a decimal number"},
        {"10.0.0.0/8 ", "prefix length is not a decimal number"},
        {"10.0.0.0/0x8", "prefix length is not a decimal number"},
        {"10.0.0.0/08", "prefix length with a leading zero"},
        {"::1/129", "prefix length out of range 0..128"},
        {"::/00", "prefix length with a leading zero"},
        {"::1/", "no prefix length after '/'"},
        {"1.2.3", "not an IP address, CIDR block, uid:N or gid:N"},
        {"1.2.3/24", "not an IP address before '/'"},
        {"10/8", "not an IP address before '/'"},
        {"256.0.0.0", "not an IP address, CIDR block, uid:N or gid:N"},
        {" 10.0.0.1", "not an IP address, CIDR block, uid:N or gid:N"},
        {"10.0.0.1 ", "not an IP address, CIDR block, uid:N or gid:N"},
        {"010.0.0.1", "not an IP address, CIDR block, uid:N or gid:N"},
        {"[::1]", "not an IP address, CIDR block, uid:N or gid:N"},
        {"fe80::1%lo", "not an IP address, CIDR block, uid:N or gid:N"},
        {"localhost", "not an IP address, CIDR block, uid:N or gid:N"},
        {"user:1000", "not an IP address, CIDR block, uid:N or gid:N"},
        {"UID:1000", "not an IP address, CIDR block, uid:N or gid:N"},
        {"ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255x",
         "not an IP address, CIDR block, uid:N or gid:N"},
        {"10.0.0.1/8", "host bits set past the prefix length"},
        {"11.0.0.0/7", "host bits set past the prefix length"},
        {"::ffff:0:0/95", "host bits set past the prefix length"},
        {"192.168.1.1/31", "host bits set past the prefix length"},
        {"::1/127", "host bits set past the prefix length"},
        {"2001:db8::1/64", "host bits set past the prefix length"},
        {"::ffff:10.0.0.1/104", "host bits set past the prefix length"},
        {"1.0.0.0/0", "host bits set past the prefix length"},
        {"uid:", "no number after uid:"},
        {"uid:-1", "uid is not a decimal number"},
        {"uid:+1", "uid is not a decimal number"},
        {"uid:x", "uid is not a decimal number"},
        {"uid: 1", "uid is not a decimal number"},
        {"uid:1 ", "uid is not a decimal number"},
        {"uid:01", "uid with a leading zero"},
        {"uid:4294967295", "uid out of range 0..4294967294"},
        {"uid:18446744073709551616", "uid out of range 0..4294967294"},
        {"gid:", "no number after gid:"},
        {"gid:-1", "gid is not a decimal number"},
        {"gid:x", "gid is not a decimal number"},
        {"gid:00", "gid with a leading zero"},
        {"gid:4294967295", "gid out of range 0..4294967294"},
        {"gid:4294967296", "gid out of range 0..4294967294"},
    };
    struct sk_access *a;
    const char *why;

    (void)state;
    assert_int_equal(sk_access_new(&a), 0);
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        why = NULL;
        if (sk_access_add(a, true, bad[i].rule, &why) != -EINVAL)
            fail_msg("\"%s\" accepted", bad[i].rule);
        if (why == NULL || strcmp(why, bad[i].why) != 0)
            fail_msg("\"%s\": why \"%s\", not \"%s\"", bad[i].rule,
                     why ? why : "(null)", bad[i].why);
        assert_int_equal(sk_access_add(a, false, bad[i].rule, NULL), -EINVAL);
    }
    /* Nothing refused was kept: everyone is still served. */
    assert_true(permits_ip(a, "10.0.0.1"));
    assert_true(permits_ip(a, "::1"));
    sk_access_free(a);
}

static void test_access_rejects_null_rule_and_list(void **state)
{
    struct sk_access *a;
    const char *why = NULL;

    (void)state;
    assert_int_equal(sk_access_new(&a), 0);
    assert_int_equal(sk_access_add(a, true, NULL, &why), -EINVAL);
    assert_string_equal(why, "empty rule");
    assert_int_equal(sk_access_add(NULL, true, "10.0.0.0/8", &why), -EINVAL);
    assert_string_equal(why, "no access list");
    sk_access_free(a);
    sk_access_free(NULL);
}

/* Enough rules to grow every array several times. */
static void test_access_holds_many_rules(void **state)
{
    struct sk_access *a;
    char rule[64];

    (void)state;
    assert_int_equal(sk_access_new(&a), 0);
    for (unsigned i = 0; i < 1000; i++) {
        snprintf(rule, sizeof(rule), "10.%u.%u.0/24", i / 256, i % 256);
        assert_int_equal(sk_access_add(a, true, rule, NULL), 0);
        snprintf(rule, sizeof(rule), "2001:db8:%x::/48", i);
        assert_int_equal(sk_access_add(a, true, rule, NULL), 0);
        snprintf(rule, sizeof(rule), "uid:%u", 5000 + i);
        assert_int_equal(sk_access_add(a, true, rule, NULL), 0);
    }
    assert_true(permits_ip(a, "10.0.0.1"));
    assert_true(permits_ip(a, "10.3.231.255"));    /* rule 999 */
    assert_false(permits_ip(a, "10.3.232.1"));     /* rule 1000: none */
    assert_true(permits_ip(a, "2001:db8:3e7::1")); /* 0x3e7 = 999 */
    assert_false(permits_ip(a, "2001:db8:3e8::1"));
    sk_access_free(a);
}

/* ------------------------------------------------------------- matching */

static void test_access_empty_list_serves_everyone(void **state)
{
    static const char *const rules[] = {END};
    static const struct verdict v[] = {
        {"10.0.0.1", true}, {"::1", true},     {"::ffff:1.2.3.4", true},
        {"unix", true},     {"unnamed", true}, {"none", true},
    };

    (void)state;
    expect_verdicts(rules, v, ARRAY_LEN(v));
    assert_true(sk_access_permits(NULL, NULL, NULL));
}

static void test_access_deny_wins_over_allow(void **state)
{
    static const char *const rules[] = {
        "+10.0.0.0/8", "-10.1.0.0/16", "+10.1.2.3", "-::1", "+::/0", END,
    };
    static const struct verdict v[] = {
        {"10.0.0.1", true},
        {"10.255.255.255", true},
        {"10.1.0.0", false},
        {"10.1.2.3", false},
        {"10.2.0.0", true},
        {"11.0.0.1", false},
        {"::1", false},
        {"::2", true},
        {"2001:db8::1", true},
        {"::ffff:10.1.2.3", false},
        {"::ffff:10.0.0.1", true},
    };

    (void)state;
    expect_verdicts(rules, v, ARRAY_LEN(v));
}

static void test_access_deny_only_serves_the_rest(void **state)
{
    static const char *const rules[] = {"-192.168.0.0/16", "-fe80::/10", END};
    static const struct verdict v[] = {
        {"192.168.0.1", false}, {"192.169.0.1", true},
        {"10.0.0.1", true},     {"fe80::1", false},
        {"febf::1", false},     {"fec0::1", true},
        {"unix", true},         {"::ffff:192.168.3.4", false},
        {"none", true},
    };

    (void)state;
    expect_verdicts(rules, v, ARRAY_LEN(v));
}

static void test_access_allow_only_serves_matching_peers(void **state)
{
    static const char *const rules[] = {"+127.0.0.1", "+2001:db8::/32", END};
    static const struct verdict v[] = {
        {"127.0.0.1", true},        {"127.0.0.2", false},
        {"2001:db8::", true},       {"2001:db8:ffff::1", true},
        {"2001:db9::1", false},     {"::1", false},
        {"::ffff:127.0.0.1", true}, {"::ffff:127.0.0.2", false},
    };

    (void)state;
    expect_verdicts(rules, v, ARRAY_LEN(v));
}

/* An IPv4 client is the same whether it came as IPv4 or IPv4-mapped. */
static void test_access_mapped_peers_and_rules_are_ipv4(void **state)
{
    static const char *const v4_rule[] = {"+10.0.0.0/8", END};
    static const char *const mapped_rule[] = {"+::ffff:10.0.0.0/104", END};
    static const char *const mapped_all[] = {"+::ffff:0:0/96", END};
    static const struct verdict v[] = {
        {"10.9.8.7", true},           {"::ffff:10.9.8.7", true},
        {"11.0.0.0", false},          {"::ffff:11.0.0.0", false},
        {"::10.9.8.7", false},        /* IPv4-compatible: IPv6, not mapped */
        {"64:ff9b::10.9.8.7", false}, /* NAT64: IPv6 too */
    };
    static const struct verdict all[] = {
        {"1.2.3.4", true},
        {"::ffff:1.2.3.4", true},
        {"::1", false},
    };

    (void)state;
    expect_verdicts(v4_rule, v, ARRAY_LEN(v));
    expect_verdicts(mapped_rule, v, ARRAY_LEN(v));
    expect_verdicts(mapped_all, all, ARRAY_LEN(all));
}

/* ::/0 is every IPv6 client, not IPv4 ones seen through a dual-stack
 * socket; 0.0.0.0/0 is every IPv4 client however it came. */
static void test_access_slash_zero_blocks_keep_their_family(void **state)
{
    static const char *const all6[] = {"+::/0", END};
    static const char *const all4[] = {"+0.0.0.0/0", END};
    static const char *const deny6[] = {"-::/0", END};
    static const char *const below96[] = {"+::fffe:0:0/95", END};
    static const struct verdict v6[] = {
        {"::", true},
        {"::1", true},
        {"ffff::1", true},
        {"1.2.3.4", false},
        {"::ffff:1.2.3.4", false},
        {"0.0.0.0", false},
    };
    static const struct verdict v4[] = {
        {"0.0.0.0", true},
        {"255.255.255.255", true},
        {"::ffff:1.2.3.4", true},
        {"::1", false},
        {"::", false},
    };
    static const struct verdict d6[] = {
        {"::1", false},
        {"1.2.3.4", true},
        {"::ffff:1.2.3.4", true},
    };
    static const struct verdict b96[] = {
        {"::fffe:1.2.3.4", true}, /* native IPv6 in the block */
        {"::ffff:1.2.3.4", false},
        {"1.2.3.4", false},
    };

    (void)state;
    expect_verdicts(all6, v6, ARRAY_LEN(v6));
    expect_verdicts(all4, v4, ARRAY_LEN(v4));
    expect_verdicts(deny6, d6, ARRAY_LEN(d6));
    expect_verdicts(below96, b96, ARRAY_LEN(b96));
}

static void test_access_host_rules_match_one_address(void **state)
{
    static const char *const rules[] = {
        "+192.0.2.1/32",
        "+198.51.100.7",
        "+2001:db8::1/128",
        "+2001:db8::2",
        END,
    };
    static const struct verdict v[] = {
        {"192.0.2.1", true},      {"192.0.2.0", false},
        {"192.0.2.2", false},     {"198.51.100.7", true},
        {"198.51.100.6", false},  {"2001:db8::1", true},
        {"2001:db8::2", true},    {"2001:db8::3", false},
        {"2001:db8::1:1", false}, {"2001:db9::1", false},
    };

    (void)state;
    expect_verdicts(rules, v, ARRAY_LEN(v));
}

/* Prefixes off the byte boundaries, in both halves of an IPv6 address. */
static void test_access_odd_prefixes_cut_at_the_bit(void **state)
{
    static const char *const rules[] = {
        "+192.168.1.128/25",
        "+172.16.0.0/12",
        "+2001:db8:0:0:8000::/65",
        "+2001:db8:8000::/33",
        END,
    };
    static const struct verdict v[] = {
        {"192.168.1.128", true},        {"192.168.1.255", true},
        {"192.168.1.127", false},       {"172.31.255.255", true},
        {"172.32.0.0", false},          {"172.15.255.255", false},
        {"2001:db8::8000:0:0:1", true}, {"2001:db8::7fff:0:0:1", false},
        {"2001:db8:ffff::1", true},     {"2001:db8:7fff::1", false},
    };

    (void)state;
    expect_verdicts(rules, v, ARRAY_LEN(v));
}

/* ---------------------------------------------------- UNIX peers, creds */

static bool permits_unix(const struct sk_access *a, const char *peer,
                         const struct sk_peer_cred *cred)
{
    struct sk_addr addr = make_peer(peer);
    return sk_access_permits(a, &addr, cred);
}

static void test_access_uid_gid_match_credentials_only(void **state)
{
    static const char *const rules[] = {"+uid:1000", "+gid:50", "-uid:0", END};
    struct sk_access *a = make_access(rules);
    const struct sk_peer_cred alice = {.pid = 1, .uid = 1000, .gid = 1000};
    const struct sk_peer_cred staff = {.pid = 2, .uid = 1001, .gid = 50};
    const struct sk_peer_cred bob = {.pid = 3, .uid = 1002, .gid = 1002};
    const struct sk_peer_cred root = {.pid = 4, .uid = 0, .gid = 50};

    (void)state;
    assert_true(permits_unix(a, "unix", &alice));
    assert_true(permits_unix(a, "unnamed", &alice));
    assert_true(permits_unix(a, "unix", &staff));
    assert_false(permits_unix(a, "unix", &bob));
    assert_false(permits_unix(a, "unix", &root)); /* deny wins over gid */
    /* No credentials (a UNIX datagram): no uid:/gid: rule can vouch. */
    assert_false(permits_unix(a, "unix", NULL));
    assert_false(permits_unix(a, "unnamed", NULL));
    /* An allow list names who is served: IP peers match no uid:/gid:
     * rule, and a UNIX peer's credentials say nothing of an IP peer. */
    assert_false(permits_unix(a, "10.0.0.1", NULL));
    assert_false(permits_unix(a, "::1", &alice)); /* cred ignored for IP */
    sk_access_free(a);
}

static void test_access_uid_deny_without_cred_serves(void **state)
{
    static const char *const rules[] = {"-uid:0", "-gid:0", END};
    struct sk_access *a = make_access(rules);
    const struct sk_peer_cred root = {.uid = 0, .gid = 0};
    const struct sk_peer_cred wheel = {.uid = 5, .gid = 0};
    const struct sk_peer_cred user = {.uid = 1000, .gid = 1000};

    (void)state;
    assert_false(permits_unix(a, "unix", &root));
    assert_false(permits_unix(a, "unix", &wheel));
    assert_true(permits_unix(a, "unix", &user));
    assert_true(permits_unix(a, "unix", NULL));
    assert_true(permits_unix(a, "127.0.0.1", NULL));
    sk_access_free(a);
}

/* The largest id a rule may name matches; (uid_t)-1 matches nothing. */
static void test_access_largest_ids(void **state)
{
    static const char *const rules[] = {"+uid:4294967294", END};
    struct sk_access *a = make_access(rules);
    const struct sk_peer_cred top = {.uid = 4294967294u, .gid = 0};
    const struct sk_peer_cred none = {.uid = 4294967295u, .gid = 0};

    (void)state;
    assert_true(permits_unix(a, "unix", &top));
    assert_false(permits_unix(a, "unix", &none));
    sk_access_free(a);
}

/* An IP-only allow list refuses UNIX peers too (fail closed): CIDR rules
 * never match a UNIX peer; uid:/gid: rules let them in. */
static void test_access_ip_allow_list_refuses_unix_peers(void **state)
{
    static const char *const rules[] = {"+10.0.0.0/8", "-0.0.0.0/0", END};
    static const char *const allow_only[] = {"+0.0.0.0/0", "+::/0", END};
    static const char *const both[] = {"+10.0.0.0/8", "+uid:1000", END};
    const struct sk_peer_cred alice = {.uid = 1000, .gid = 1000};
    const struct sk_peer_cred bob = {.uid = 1001, .gid = 1001};
    struct sk_access *a;

    (void)state;
    a = make_access(rules); /* deny 0/0 wins over the allow */
    assert_false(permits_ip(a, "10.0.0.1"));
    assert_false(permits_unix(a, "unix", &alice));
    assert_false(permits_unix(a, "unnamed", NULL));
    sk_access_free(a);

    a = make_access(allow_only);
    assert_false(permits_unix(a, "unix", &bob));
    assert_false(permits_unix(a, "unix", NULL));
    sk_access_free(a);

    a = make_access(both); /* both kinds restricted */
    assert_true(permits_ip(a, "10.1.1.1"));
    assert_false(permits_ip(a, "11.1.1.1"));
    assert_true(permits_unix(a, "unix", &alice));
    assert_false(permits_unix(a, "unix", &bob));
    assert_false(permits_unix(a, "unix", NULL));
    sk_access_free(a);
}

/* A peer no rule can speak of is served only without any allow rule. */
static void test_access_unknown_peer_needs_no_allow_rule(void **state)
{
    static const char *const deny[] = {"-10.0.0.0/8", "-uid:0", END};
    static const char *const allow4[] = {"+10.0.0.0/8", END};
    static const char *const allow_uid[] = {"+uid:0", END};
    struct sk_access *a;
    struct sk_addr short_v4 = make_peer("10.0.0.1");

    (void)state;
    a = make_access(deny);
    assert_true(permits_ip(a, "none"));
    assert_true(sk_access_permits(a, NULL, NULL));
    sk_access_free(a);
    a = make_access(allow4);
    assert_false(permits_ip(a, "none"));
    assert_false(sk_access_permits(a, NULL, NULL));
    short_v4.len = 4; /* truncated: not an address to trust */
    assert_false(sk_access_permits(a, &short_v4, NULL));
    sk_access_free(a);
    a = make_access(allow_uid);
    assert_false(permits_ip(a, "none"));
    sk_access_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_access_accepts_every_rule_form),
        cmocka_unit_test(test_access_rejects_malformed_rules_with_exact_why),
        cmocka_unit_test(test_access_rejects_null_rule_and_list),
        cmocka_unit_test(test_access_holds_many_rules),
        cmocka_unit_test(test_access_empty_list_serves_everyone),
        cmocka_unit_test(test_access_deny_wins_over_allow),
        cmocka_unit_test(test_access_deny_only_serves_the_rest),
        cmocka_unit_test(test_access_allow_only_serves_matching_peers),
        cmocka_unit_test(test_access_mapped_peers_and_rules_are_ipv4),
        cmocka_unit_test(test_access_slash_zero_blocks_keep_their_family),
        cmocka_unit_test(test_access_host_rules_match_one_address),
        cmocka_unit_test(test_access_odd_prefixes_cut_at_the_bit),
        cmocka_unit_test(test_access_uid_gid_match_credentials_only),
        cmocka_unit_test(test_access_uid_deny_without_cred_serves),
        cmocka_unit_test(test_access_largest_ids),
        cmocka_unit_test(test_access_ip_allow_list_refuses_unix_peers),
        cmocka_unit_test(test_access_unknown_peer_needs_no_allow_rule),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
