/* proxy.c -- unit tests of src/proxy.c, the PROXY protocol: every valid
 * form of a v1 and a v2 header with its exact fields, every malformed one
 * with the byte where it first fails and its exact reason, every prefix
 * and every split of the valid ones, the length limits, TLVs, format and
 * parse round trips, and a seeded run of random and mutated headers that
 * checks the parser's invariants. Each input is parsed from a heap copy
 * of exactly its length, so that ASan reports any read past it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include <sockit.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#define WHY_EXPECT "no PROXY protocol version expected"
#define WHY_NOT_PROXY "not a PROXY protocol header"
#define WHY_V1_ONLY_V2 "v1 header, but only v2 is expected"
#define WHY_V2_ONLY_V1 "v2 header, but only v1 is expected"
#define WHY_V1_LONG "v1 header longer than 107 bytes"
#define WHY_V1_PROTO "v1 protocol is not TCP4, TCP6 or UNKNOWN"
#define WHY_V1_FIELDS "v1 header missing fields"
#define WHY_V1_SRC "v1 bad source address"
#define WHY_V1_DST "v1 bad destination address"
#define WHY_V1_SPORT "v1 bad source port"
#define WHY_V1_DPORT "v1 bad destination port"
#define WHY_V1_LF "v1 header ends in LF without CR"
#define WHY_V1_CR "v1 CR not followed by LF"
#define WHY_V2_VERSION "v2 version is not 2"
#define WHY_V2_CMD "v2 command is not LOCAL or PROXY"
#define WHY_V2_FAM "v2 address family is not UNSPEC, INET, INET6 or UNIX"
#define WHY_V2_TRANS "v2 transport is not UNSPEC, STREAM or DGRAM"
#define WHY_V2_LONG "v2 header longer than 4096 bytes"
#define WHY_V2_SHORT "v2 length too short for its addresses"
#define WHY_V2_TLV_HEAD "v2 TLV header cut by the end of the header"
#define WHY_V2_TLV_VALUE "v2 TLV value cut by the end of the header"

#define SIG "\r\n\r\n\0\r\nQUIT\n"
#define SIG_LEN 12
#define UNIX_PATH_LEN sizeof(((struct sockaddr_un *)0)->sun_path)
#define UNIX_OFF offsetof(struct sockaddr_un, sun_path)

/* ------------------------------------------------------------ helpers */

/* Parses a heap copy of exactly len bytes. */
static int parse(const void *data, size_t len, enum sk_proxy expect,
                 struct sk_proxy_header *h, const char **why)
{
    void *copy = malloc(len > 0 ? len : 1);
    int ret;

    assert_non_null(copy);
    if (len > 0)
        memcpy(copy, data, len);
    ret = sk_proxy_parse(copy, len, expect, h, why);
    free(copy);
    return ret;
}

static struct sk_addr in4(const char *ip, uint16_t port)
{
    struct sk_addr a;

    memset(&a, 0, sizeof(a));
    a.len = sizeof(a.u.in);
    a.u.in.sin_family = AF_INET;
    a.u.in.sin_port = htons(port);
    assert_int_equal(inet_pton(AF_INET, ip, &a.u.in.sin_addr), 1);
    return a;
}

static struct sk_addr in6(const char *ip, uint16_t port)
{
    struct sk_addr a;

    memset(&a, 0, sizeof(a));
    a.len = sizeof(a.u.in6);
    a.u.in6.sin6_family = AF_INET6;
    a.u.in6.sin6_port = htons(port);
    assert_int_equal(inet_pton(AF_INET6, ip, &a.u.in6.sin6_addr), 1);
    return a;
}

/* A UNIX address of the n bytes of sun_path at path. */
static struct sk_addr un(const void *path, size_t n)
{
    struct sk_addr a;

    memset(&a, 0, sizeof(a));
    a.len = (socklen_t)(UNIX_OFF + n);
    a.u.un.sun_family = AF_UNIX;
    memcpy(a.u.un.sun_path, path, n);
    return a;
}

static bool same_addr(const struct sk_addr *a, const struct sk_addr *b)
{
    return a->len == b->len && memcmp(&a->u, &b->u, sizeof(a->u)) == 0;
}

static bool same_header(const struct sk_proxy_header *a,
                        const struct sk_proxy_header *b)
{
    return a->version == b->version && a->local == b->local &&
           a->socktype == b->socktype && same_addr(&a->src, &b->src) &&
           same_addr(&a->dst, &b->dst);
}

/* --------------------------------------------------- the valid headers */

/* A valid header and what it must parse to. */
struct sample {
    char name[48];
    unsigned char data[SK_PROXY_V2_MAX];
    size_t len;
    struct sk_proxy_header want;
};

static struct sample samples[40];
static size_t n_samples;

static struct sample *add(const char *name, unsigned version, int socktype,
                          const struct sk_addr *src, const struct sk_addr *dst)
{
    struct sample *s = &samples[n_samples++];

    assert_true(n_samples <= ARRAY_LEN(samples));
    memset(s, 0, sizeof(*s));
    snprintf(s->name, sizeof(s->name), "%s", name);
    s->want.version = version;
    s->want.socktype = socktype;
    s->want.local = src == NULL;
    if (src != NULL) {
        s->want.src = *src;
        s->want.dst = *dst;
    }
    return s;
}

static void add_v1(const char *text, const struct sk_addr *src,
                   const struct sk_addr *dst)
{
    struct sample *s = add(text, 1, SOCK_STREAM, src, dst);

    s->len = strlen(text);
    memcpy(s->data, text, s->len);
}

/* A v2 header: the signature, its 13th and 14th bytes, the length field
 * (of n), then the n bytes of body. */
static size_t v2(unsigned char *out, unsigned ver_cmd, unsigned fam,
                 const void *body, size_t n)
{
    memcpy(out, SIG, SIG_LEN);
    out[12] = (unsigned char)ver_cmd;
    out[13] = (unsigned char)fam;
    out[14] = (unsigned char)(n >> 8);
    out[15] = (unsigned char)n;
    if (n > 0)
        memcpy(out + 16, body, n);
    return 16 + n;
}

static void add_v2(const char *name, unsigned ver_cmd, unsigned fam,
                   const void *body, size_t n, int socktype,
                   const struct sk_addr *src, const struct sk_addr *dst)
{
    struct sample *s = add(name, 2, socktype, src, dst);

    s->len = v2(s->data, ver_cmd, fam, body, n);
}

/* The bodies of the v2 samples: addresses (192.0.2.1:56324 to
 * 192.0.2.11:443, [2001:db8::1]:1 to [2001:db8::2]:65535), and TLVs. */
/* clang-format off */
static const unsigned char body_in4[12] = {
    192, 0, 2, 1,   192, 0, 2, 11,   0xdc, 0x04,   0x01, 0xbb,
};
static const unsigned char body_in6[36] = {
    0x20, 0x01, 0x0d, 0xb8, [15] = 1,
    0x20, 0x01, 0x0d, 0xb8, [31] = 2,
    0x00, 0x01,   0xff, 0xff,
};
static const unsigned char tlvs[] = {
    0x01, 0x00, 0x02, 'h', '2',                 /* ALPN */
    0x04, 0x00, 0x00,                           /* NOOP, empty */
    0x02, 0x00, 0x05, 'a', '.', 'o', 'r', 'g',  /* AUTHORITY */
};
/* clang-format on */

static unsigned char body_buf[SK_PROXY_V2_MAX];

/* Two 108-byte UNIX addresses. */
static const void *unix_body(const void *src, size_t sn, const void *dst,
                             size_t dn)
{
    memset(body_buf, 0, 2 * UNIX_PATH_LEN);
    memcpy(body_buf, src, sn);
    memcpy(body_buf + UNIX_PATH_LEN, dst, dn);
    return body_buf;
}

/* "PROXY UNKNOWN xxx...\r\n" of len bytes. */
static size_t unknown_of(char *buf, size_t len)
{
    memset(buf, 'x', len);
    memcpy(buf, "PROXY UNKNOWN ", 14);
    memcpy(buf + len - 2, "\r\n", 2);
    return len;
}

static char unknown107[108];

static void add_v1_samples(void)
{
    struct sk_addr a, b;

    a = in4("192.168.0.1", 56324), b = in4("192.168.0.11", 443);
    add_v1("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", &a, &b);
    a = in4("0.0.0.0", 0), b = in4("255.255.255.255", 65535);
    add_v1("PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n", &a, &b);
    a = in4("10.0.0.1", 1), b = in4("10.0.0.2", 10);
    add_v1("PROXY TCP4 10.0.0.1 10.0.0.2 1 10\r\n", &a, &b);
    a = in6("::1", 1), b = in6("2001:db8::5", 2);
    add_v1("PROXY TCP6 ::1 2001:db8::5 1 2\r\n", &a, &b);
    a = in6("fe80::a", 10), b = in6("::", 20);
    add_v1("PROXY TCP6 FE80::A ::0 10 20\r\n", &a, &b);
    a = in6("::ffff:192.0.2.1", 80), b = in6("::ffff:192.0.2.2", 8080);
    add_v1("PROXY TCP6 ::ffff:192.0.2.1 ::ffff:192.0.2.2 80 8080\r\n", &a, &b);
    a = in6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
    add_v1("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
           "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
           &a, &a);
    /* 107 bytes: the longest a header may be. */
    a = in6("::ffff:255.255.255.255", 1), b = in6("::ffff:255.255.255.25", 2);
    add_v1("PROXY TCP6 0000:0000:0000:0000:0000:ffff:255.255.255.255 "
           "0000:0000:0000:0000:0000:ffff:255.255.255.25 1 2\r\n",
           &a, &b);
    add_v1("PROXY UNKNOWN\r\n", NULL, NULL);
    add_v1("PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n",
           NULL, NULL);
    add_v1("PROXY UNKNOWN \x01\x7f\xff anything\tat all\r\n", NULL, NULL);
    /* 107 bytes again, of which 91 are ignored. */
    unknown107[unknown_of(unknown107, 107)] = '\0';
    add_v1(unknown107, NULL, NULL);
}

static void add_v2_unix_samples(void)
{
    char path108[UNIX_PATH_LEN];
    struct sk_addr a, b;

    a = un("/run/a.sock", 12), b = un("/run/b.sock", 12);
    add_v2("v2 unix stream", 0x21, 0x31,
           unix_body("/run/a.sock", 11, "/run/b.sock", 11), 216, SOCK_STREAM,
           &a, &b);
    /* Abstract names: trailing NUL padding is not part of the name. */
    a = un("\0name", 5), b = un("\0n\0m", 4);
    add_v2("v2 unix dgram abstract", 0x21, 0x32,
           unix_body("\0name", 5, "\0n\0m", 4), 216, SOCK_DGRAM, &a, &b);
    /* A pathname ends at its first NUL, whatever follows it. */
    a = un("", 0), b = un("/p", 3);
    add_v2("v2 unix unnamed", 0x21, 0x31, unix_body("", 0, "/p\0junk", 7), 216,
           SOCK_STREAM, &a, &b);
    memset(path108, 'p', sizeof(path108));
    path108[0] = '/';
    a = un(path108, sizeof(path108));
    add_v2("v2 unix 108-byte path", 0x21, 0x31,
           unix_body(path108, sizeof(path108), path108, sizeof(path108)), 216,
           SOCK_STREAM, &a, &a);
}

static void add_v2_samples(void)
{
    struct sk_addr a4 = in4("192.0.2.1", 56324), b4 = in4("192.0.2.11", 443);
    struct sk_addr a6 = in6("2001:db8::1", 1), b6 = in6("2001:db8::2", 65535);
    size_t n = SK_PROXY_V2_MAX - 16 - 12 - 3;

    add_v2("v2 tcp4", 0x21, 0x11, body_in4, 12, SOCK_STREAM, &a4, &b4);
    add_v2("v2 udp4", 0x21, 0x12, body_in4, 12, SOCK_DGRAM, &a4, &b4);
    add_v2("v2 tcp6", 0x21, 0x21, body_in6, 36, SOCK_STREAM, &a6, &b6);
    add_v2("v2 udp6", 0x21, 0x22, body_in6, 36, SOCK_DGRAM, &a6, &b6);
    add_v2_unix_samples();
    add_v2("v2 local", 0x20, 0x00, NULL, 0, SOCK_STREAM, NULL, NULL);
    add_v2("v2 local inet", 0x20, 0x11, body_in4, 12, SOCK_STREAM, NULL, NULL);
    add_v2("v2 local udp6", 0x20, 0x22, body_in6, 36, SOCK_DGRAM, NULL, NULL);
    add_v2("v2 local tlvs", 0x20, 0x00, tlvs, sizeof(tlvs), SOCK_STREAM, NULL,
           NULL);
    add_v2("v2 proxy unspec", 0x21, 0x00, NULL, 0, SOCK_STREAM, NULL, NULL);
    add_v2("v2 proxy unspec dgram", 0x21, 0x02, NULL, 0, SOCK_DGRAM, NULL,
           NULL);
    add_v2("v2 proxy inet unspec", 0x21, 0x10, body_in4, 12, SOCK_STREAM, NULL,
           NULL);
    memcpy(body_buf, body_in4, 12);
    memcpy(body_buf + 12, tlvs, sizeof(tlvs));
    add_v2("v2 tcp4 tlvs", 0x21, 0x11, body_buf, 12 + sizeof(tlvs), SOCK_STREAM,
           &a4, &b4);
    /* 4096 bytes, the longest: one NOOP TLV fills the rest. */
    memset(body_buf + 12, 0, n + 3);
    body_buf[12] = 0x04;
    body_buf[13] = (unsigned char)(n >> 8);
    body_buf[14] = (unsigned char)n;
    add_v2("v2 tcp4 4096 bytes", 0x21, 0x11, body_buf, 12 + 3 + n, SOCK_STREAM,
           &a4, &b4);
}

static int setup_samples(void **state)
{
    (void)state;
    n_samples = 0;
    add_v1_samples();
    add_v2_samples();
    return 0;
}

static enum sk_proxy version_of(const struct sample *s)
{
    return s->want.version == 1 ? SK_PROXY_V1 : SK_PROXY_V2;
}

static void expect_sample(const struct sample *s, const unsigned char *data,
                          size_t len, enum sk_proxy expect)
{
    struct sk_proxy_header h;
    const char *why = NULL;
    int ret;

    memset(&h, 0xa5, sizeof(h));
    ret = parse(data, len, expect, &h, &why);
    if (ret != (int)s->len)
        fail_msg("%s (%zu bytes): returned %d, want %zu (%s)", s->name, len,
                 ret, s->len, ret < 0 ? why : "");
    if (!same_header(&h, &s->want))
        fail_msg("%s: parsed to other fields (version %u local %d "
                 "socktype %d src len %u dst len %u)",
                 s->name, h.version, h.local, h.socktype, (unsigned)h.src.len,
                 (unsigned)h.dst.len);
}

/* ----------------------------------------------------------- valid ones */

static void test_proxy_parses_every_valid_form_exactly(void **state)
{
    (void)state;
    for (size_t i = 0; i < n_samples; i++) {
        const struct sample *s = &samples[i];
        const char *why = NULL;
        bool v1 = s->want.version == 1;

        expect_sample(s, s->data, s->len, SK_PROXY_ANY);
        expect_sample(s, s->data, s->len, version_of(s));
        assert_int_equal(
            parse(s->data, s->len, v1 ? SK_PROXY_V2 : SK_PROXY_V1, NULL, &why),
            SK_EPROXY);
        assert_string_equal(why, v1 ? WHY_V1_ONLY_V2 : WHY_V2_ONLY_V1);
    }
}

static void test_proxy_every_proper_prefix_needs_more(void **state)
{
    (void)state;
    for (size_t i = 0; i < n_samples; i++) {
        const struct sample *s = &samples[i];

        for (size_t k = 0; k < s->len; k++) {
            struct sk_proxy_header h, sentinel;
            const char *why = "untouched";
            int ret;

            memset(&sentinel, 0x5a, sizeof(sentinel));
            h = sentinel;
            ret = parse(s->data, k, version_of(s), &h, &why);
            if (ret != 0)
                fail_msg("%s cut at %zu: returned %d (%s)", s->name, k, ret,
                         why);
            assert_memory_equal(&h, &sentinel, sizeof(h));
            assert_string_equal(why, "untouched");
        }
    }
}

static void test_proxy_header_then_data_is_header_length(void **state)
{
    static const struct {
        const char *p;
        size_t n;
    } tails[] = {
        {"GET / HTTP/1.1\r\n\r\n", 18},
        {"\r\n", 2},
        {"\n", 1},
        {"PROXY TCP4 ", 11},
        {SIG, SIG_LEN},
        {"\0\0\0", 3},
        {"\x16\x03\x01\x02\x00", 5},
    };
    unsigned char buf[SK_PROXY_V2_MAX + 64];

    (void)state;
    for (size_t i = 0; i < n_samples; i++) {
        const struct sample *s = &samples[i];

        for (size_t t = 0; t < ARRAY_LEN(tails); t++) {
            memcpy(buf, s->data, s->len);
            memcpy(buf + s->len, tails[t].p, tails[t].n);
            expect_sample(s, buf, s->len + tails[t].n, SK_PROXY_ANY);
        }
    }
}

/* As a connection reads it: the first piece alone needs more, then the
 * whole with the second piece (and the client's first bytes) after it. */
static void test_proxy_every_two_piece_split(void **state)
{
    static const char tail[] = "HELO x\r\n";
    unsigned char buf[SK_PROXY_V2_MAX + sizeof(tail)];

    (void)state;
    for (size_t i = 0; i < n_samples; i++) {
        const struct sample *s = &samples[i];

        memcpy(buf, s->data, s->len);
        memcpy(buf + s->len, tail, sizeof(tail) - 1);
        for (size_t k = 1; k < s->len; k++) {
            assert_int_equal(parse(buf, k, SK_PROXY_ANY, NULL, NULL), 0);
            expect_sample(s, buf, s->len + sizeof(tail) - 1, SK_PROXY_ANY);
        }
    }
}

/* -------------------------------------------------------- invalid v1 */

/* A malformed header: ok is its longest valid beginning, and the first
 * byte of bad makes it fail, with why, as do all that follow. */
struct bad_case {
    const char *ok;
    const char *bad;
    size_t bad_len; /* 0: strlen(bad) */
    enum sk_proxy expect;
    const char *why;
};

#define S4 "PROXY TCP4 1.2.3.4 5.6.7.8 "
#define A45 "0000:0000:0000:0000:0000:0000:255.255.255.255"

static const struct bad_case bad_v1[] = {
    {"", "GET / HTTP/1.1\r\n", 0, SK_PROXY_ANY, WHY_NOT_PROXY},
    {"", "\x16\x03\x01", 0, SK_PROXY_ANY, WHY_NOT_PROXY},
    {"", "proxy ", 0, SK_PROXY_ANY, WHY_NOT_PROXY},
    {"P", "OST / HTTP/1.1\r\n", 0, SK_PROXY_ANY, WHY_NOT_PROXY},
    {"PROXY", "\r\n", 0, SK_PROXY_ANY, WHY_NOT_PROXY},
    {"PROXY", "\tTCP4", 0, SK_PROXY_V1, WHY_NOT_PROXY},
    {"", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", 0, SK_PROXY_V2, WHY_V1_ONLY_V2},
    {"", "P", 0, SK_PROXY_V2, WHY_V1_ONLY_V2},
    {"PROXY TCP", "5 1.2.3.4 5.6.7.8 1 2\r\n", 0, SK_PROXY_ANY, WHY_V1_PROTO},
    {"PROXY ", "tcp4 1.2.3.4 5.6.7.8 1 2\r\n", 0, SK_PROXY_ANY, WHY_V1_PROTO},
    {"PROXY ", " TCP4 1.2.3.4 5.6.7.8 1 2\r\n", 0, SK_PROXY_ANY, WHY_V1_PROTO},
    {"PROXY TCP4", "4 1.2.3.4 5.6.7.8 1 2\r\n", 0, SK_PROXY_ANY, WHY_V1_PROTO},
    {"PROXY TCP", " 1.2.3.4", 0, SK_PROXY_ANY, WHY_V1_PROTO},
    {"PROXY ", "\r\n", 0, SK_PROXY_ANY, WHY_V1_PROTO},
    {"PROXY UNKNOW", "\r\n", 0, SK_PROXY_ANY, WHY_V1_PROTO},
    {"PROXY UNKNOWN", "X\r\n", 0, SK_PROXY_ANY, WHY_V1_PROTO},
    {"PROXY TCP4", "\r\n", 0, SK_PROXY_ANY, WHY_V1_FIELDS},
    {"PROXY TCP4 ", "\r\n", 0, SK_PROXY_ANY, WHY_V1_FIELDS},
    {"PROXY TCP4 1.2.3.4", "\r\n", 0, SK_PROXY_ANY, WHY_V1_FIELDS},
    {"PROXY TCP4 1.2.3.4 5.6.7.8", "\r\n", 0, SK_PROXY_ANY, WHY_V1_FIELDS},
    {S4 "1", "\r\n", 0, SK_PROXY_ANY, WHY_V1_FIELDS},
    {"PROXY TCP4 0", "1.2.3.4 5.6.7.8 1 2\r\n", 0, SK_PROXY_ANY, WHY_V1_SRC},
    {"PROXY TCP4 1.2.3", " 5.6.7.8 1 2\r\n", 0, SK_PROXY_ANY, WHY_V1_SRC},
    {"PROXY TCP4 25", "6.1.1.1 5.6.7.8 1 2\r\n", 0, SK_PROXY_ANY, WHY_V1_SRC},
    {"PROXY TCP4 1.2.3.4", ".5 5.6.7.8 1 2\r\n", 0, SK_PROXY_ANY, WHY_V1_SRC},
    {"PROXY TCP4 1.2.3.", "\r\n", 0, SK_PROXY_ANY, WHY_V1_FIELDS},
    {"PROXY TCP4 ", " 1.2.3.4 5.6.7.8 1 2\r\n", 0, SK_PROXY_ANY, WHY_V1_SRC},
    {"PROXY TCP4 ", "::1 ::1 1 2\r\n", 0, SK_PROXY_ANY, WHY_V1_SRC},
    {"PROXY TCP4 1.2.3.4", "\0 5.6.7.8 1 2\r\n", 15, SK_PROXY_ANY, WHY_V1_SRC},
    {"PROXY TCP6 1", ".2.3.4 ::1 1 2\r\n", 0, SK_PROXY_ANY, WHY_V1_SRC},
    {"PROXY TCP6 :", "1 ::1 1 2\r\n", 0, SK_PROXY_ANY, WHY_V1_SRC},
    {"PROXY TCP6 1:2:3:4:5:6:7:8", ":9 ::1 1 2\r\n", 0, SK_PROXY_ANY,
     WHY_V1_SRC},
    {"PROXY TCP6 1:2:3:4:5:6:7:8", "::1 1 2\r\n", 0, SK_PROXY_ANY, WHY_V1_SRC},
    {"PROXY TCP6 1::2:", ":3 ::1 1 2\r\n", 0, SK_PROXY_ANY, WHY_V1_SRC},
    {"PROXY TCP6 1::", ":2 ::1 1 2\r\n", 0, SK_PROXY_ANY, WHY_V1_SRC},
    {"PROXY TCP6 abcd", "e::1 ::1 1 2\r\n", 0, SK_PROXY_ANY, WHY_V1_SRC},
    {"PROXY TCP6 1:2:3:4:5:6:7:1", ".2.3.4 ::1 1 2\r\n", 0, SK_PROXY_ANY,
     WHY_V1_SRC},
    {"PROXY TCP6 ::1 fe80::1", "%lo 1 2\r\n", 0, SK_PROXY_ANY, WHY_V1_DST},
    {"PROXY TCP6 ::1 1", ".2.3.4 1 2\r\n", 0, SK_PROXY_ANY, WHY_V1_DST},
    {"PROXY TCP4 1.2.3.4 ", " 5.6.7.8 1 2\r\n", 0, SK_PROXY_ANY, WHY_V1_DST},
    {"PROXY TCP4 1.2.3.4 5.6.7.25", "6 1 2\r\n", 0, SK_PROXY_ANY, WHY_V1_DST},
    {S4 "0", "1 2\r\n", 0, SK_PROXY_ANY, WHY_V1_SPORT},
    {S4 "0", "0 2\r\n", 0, SK_PROXY_ANY, WHY_V1_SPORT},
    {S4, "+1 2\r\n", 0, SK_PROXY_ANY, WHY_V1_SPORT},
    {S4, "-1 2\r\n", 0, SK_PROXY_ANY, WHY_V1_SPORT},
    {S4, " 2\r\n", 0, SK_PROXY_ANY, WHY_V1_SPORT},
    {S4 "6553", "6 2\r\n", 0, SK_PROXY_ANY, WHY_V1_SPORT},
    {S4 "1", "a 2\r\n", 0, SK_PROXY_ANY, WHY_V1_SPORT},
    {S4 "1 6553", "6\r\n", 0, SK_PROXY_ANY, WHY_V1_DPORT},
    {S4 "1 9999", "9\r\n", 0, SK_PROXY_ANY, WHY_V1_DPORT},
    {S4 "1 0", "2\r\n", 0, SK_PROXY_ANY, WHY_V1_DPORT},
    {S4 "1 2", " 3\r\n", 0, SK_PROXY_ANY, WHY_V1_DPORT},
    {S4 "1 2", " \r\n", 0, SK_PROXY_ANY, WHY_V1_DPORT},
    {S4 "1 ", "\r\n", 0, SK_PROXY_ANY, WHY_V1_DPORT},
    {S4 "1 ", "-2\r\n", 0, SK_PROXY_ANY, WHY_V1_DPORT},
    {S4 "1 2", "\n", 0, SK_PROXY_ANY, WHY_V1_LF},
    {S4 "1 2\r", "X", 0, SK_PROXY_ANY, WHY_V1_CR},
    {S4 "1 2\r", "\r\n", 0, SK_PROXY_ANY, WHY_V1_CR},
    {"PROXY UNKNOWN", "\n", 0, SK_PROXY_ANY, WHY_V1_LF},
    {"PROXY UNKNOWN a", "\nb\r\n", 0, SK_PROXY_ANY, WHY_V1_LF},
    {"PROXY UNKNOWN a\r", "b\r\n", 0, SK_PROXY_ANY, WHY_V1_CR},
    {"PROXY TCP6 " A45 " " A45 " 1 2", "\r\n", 0, SK_PROXY_ANY, WHY_V1_LONG},
};

/* ok + bad, and the lengths that must still need more and then fail. */
static size_t build_case(const struct bad_case *c, unsigned char *buf,
                         size_t *ok_len)
{
    size_t bad_len = c->bad_len > 0 ? c->bad_len : strlen(c->bad);

    *ok_len = strlen(c->ok);
    memcpy(buf, c->ok, *ok_len);
    memcpy(buf + *ok_len, c->bad, bad_len);
    return *ok_len + bad_len;
}

static void expect_fails_at(const char *name, const unsigned char *buf,
                            size_t len, size_t ok_len, enum sk_proxy expect,
                            const char *want)
{
    struct sk_proxy_header h, sentinel;

    memset(&sentinel, 0x5a, sizeof(sentinel));
    for (size_t k = 0; k <= len; k++) {
        const char *why = NULL;
        int ret;

        h = sentinel;
        ret = parse(buf, k, expect, &h, &why);
        if (memcmp(&h, &sentinel, sizeof(h)) != 0)
            fail_msg("%s: cut at %zu: header written", name, k);
        if (k <= ok_len && ret != 0)
            fail_msg("%s: cut at %zu of %zu returned %d (%s), want 0", name, k,
                     len, ret, why);
        if (k > ok_len && ret != SK_EPROXY)
            fail_msg("%s: cut at %zu of %zu returned %d, want SK_EPROXY", name,
                     k, len, ret);
        if ((k == ok_len + 1 || k == len) && strcmp(why, want) != 0)
            fail_msg("%s: cut at %zu: why \"%s\", want \"%s\"", name, k, why,
                     want);
    }
}

static void test_proxy_v1_malformed_fails_at_first_bad_byte(void **state)
{
    unsigned char buf[256];
    size_t len, ok_len;

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(bad_v1); i++) {
        char name[80];

        len = build_case(&bad_v1[i], buf, &ok_len);
        snprintf(name, sizeof(name), "\"%.60s\"", bad_v1[i].ok);
        expect_fails_at(name, buf, len, ok_len, bad_v1[i].expect,
                        bad_v1[i].why);
    }
}

static void test_proxy_v1_107_bytes_valid_108_not(void **state)
{
    char buf[300];
    const char *why = NULL;

    (void)state;
    assert_int_equal(parse(buf, unknown_of(buf, 107), SK_PROXY_ANY, NULL, NULL),
                     107);
    assert_int_equal(parse(buf, unknown_of(buf, 108), SK_PROXY_V1, NULL, &why),
                     SK_EPROXY);
    assert_string_equal(why, WHY_V1_LONG);
    /* Refused at the 107th byte, which is not the CRLF's first. */
    expect_fails_at("108 bytes", (unsigned char *)buf, 108, 106, SK_PROXY_ANY,
                    WHY_V1_LONG);
    /* An endless line is refused once it passes 107 bytes. */
    memset(buf, 'x', sizeof(buf));
    memcpy(buf, "PROXY UNKNOWN ", 14);
    expect_fails_at("no CRLF", (unsigned char *)buf, sizeof(buf), 106,
                    SK_PROXY_ANY, WHY_V1_LONG);
    buf[106] = '\n';
    expect_fails_at("LF at 107", (unsigned char *)buf, 107, 106, SK_PROXY_ANY,
                    WHY_V1_LF);
}

/* -------------------------------------------------------- invalid v2 */

static unsigned char bad_buf[SK_PROXY_V2_MAX + 64];

/* A v2 header with a length field of n, and body bytes up to have. */
static size_t v2_len(unsigned ver_cmd, unsigned fam, size_t n, const void *body,
                     size_t have)
{
    v2(bad_buf, ver_cmd, fam, body, have);
    bad_buf[14] = (unsigned char)(n >> 8);
    bad_buf[15] = (unsigned char)n;
    return 16 + have;
}

static void v2_fails_at(const char *name, size_t len, size_t ok_len,
                        const char *why)
{
    expect_fails_at(name, bad_buf, len, ok_len, SK_PROXY_V2, why);
    expect_fails_at(name, bad_buf, len, ok_len, SK_PROXY_ANY, why);
}

static void test_proxy_v2_bad_signature_fails_at_that_byte(void **state)
{
    (void)state;
    for (size_t i = 0; i < SIG_LEN; i++) {
        size_t len = v2(bad_buf, 0x21, 0x11, body_in4, 12);

        bad_buf[i] ^= 0x20;
        v2_fails_at("signature", len, i, WHY_NOT_PROXY);
    }
    v2(bad_buf, 0x21, 0x11, body_in4, 12);
    expect_fails_at("v2 for v1", bad_buf, 28, 0, SK_PROXY_V1, WHY_V2_ONLY_V1);
}

static void test_proxy_v2_bad_version_command_family(void **state)
{
    static const struct {
        unsigned char ver_cmd, fam;
        size_t ok_len;
        const char *why;
    } cases[] = {
        {0x11, 0x11, 12, WHY_V2_VERSION}, {0x31, 0x11, 12, WHY_V2_VERSION},
        {0x01, 0x11, 12, WHY_V2_VERSION}, {0xf1, 0x11, 12, WHY_V2_VERSION},
        {0x22, 0x11, 12, WHY_V2_CMD},     {0x2f, 0x11, 12, WHY_V2_CMD},
        {0x21, 0x41, 13, WHY_V2_FAM},     {0x21, 0xf1, 13, WHY_V2_FAM},
        {0x20, 0x40, 13, WHY_V2_FAM},     {0x21, 0x13, 13, WHY_V2_TRANS},
        {0x21, 0x1f, 13, WHY_V2_TRANS},   {0x21, 0x43, 13, WHY_V2_FAM},
        {0x20, 0x03, 13, WHY_V2_TRANS},
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        size_t len = v2(bad_buf, cases[i].ver_cmd, cases[i].fam, body_in4, 12);
        char name[32];

        snprintf(name, sizeof(name), "v2 %02x %02x", cases[i].ver_cmd,
                 cases[i].fam);
        v2_fails_at(name, len, cases[i].ok_len, cases[i].why);
    }
}

/* Too long or too short for its family: told by the length field alone,
 * with 16 bytes. */
static void test_proxy_v2_length_checked_from_its_field(void **state)
{
    const char *why = NULL;
    size_t len;

    (void)state;
    len = v2_len(0x21, 0x11, SK_PROXY_V2_MAX - 16 + 1, body_in4, 12);
    v2_fails_at("4097", len, 15, WHY_V2_LONG);
    assert_int_equal(parse(bad_buf, 16, SK_PROXY_V2, NULL, &why), SK_EPROXY);
    assert_string_equal(why, WHY_V2_LONG);
    len = v2_len(0x20, 0x00, 0xffff, NULL, 0);
    v2_fails_at("65535", len, 15, WHY_V2_LONG);
    /* 4096 in all: more is needed. */
    v2_len(0x21, 0x00, SK_PROXY_V2_MAX - 16, NULL, 0);
    assert_int_equal(parse(bad_buf, 16, SK_PROXY_V2, NULL, NULL), 0);
    len = v2_len(0x21, 0x11, 11, body_in4, 11);
    v2_fails_at("inet 11", len, 15, WHY_V2_SHORT);
    len = v2_len(0x21, 0x22, 35, body_in6, 35);
    v2_fails_at("inet6 35", len, 15, WHY_V2_SHORT);
    len = v2_len(0x21, 0x31, 215, unix_body("/a", 2, "/b", 2), 215);
    v2_fails_at("unix 215", len, 15, WHY_V2_SHORT);
    len = v2_len(0x20, 0x11, 0, NULL, 0);
    v2_fails_at("local inet 0", len, 15, WHY_V2_SHORT);
    len = v2_len(0x21, 0x10, 8, body_in4, 8);
    v2_fails_at("inet unspec 8", len, 15, WHY_V2_SHORT);
}

static void test_proxy_v2_tlv_truncations(void **state)
{
    unsigned char body[64];
    size_t len;

    (void)state;
    memcpy(body, body_in4, 12);
    memcpy(body + 12,
           "\x04\x00\x01"
           "x"
           "\x01\x00\x02"
           "h2",
           9);
    /* Room for no TLV header after the addresses: told at 16 bytes. */
    for (size_t extra = 1; extra < 3; extra++) {
        len = v2_len(0x21, 0x11, 12 + extra, body, 12 + extra);
        v2_fails_at("tlv head", len, 15, WHY_V2_TLV_HEAD);
    }
    /* A value past the end: told once its length field is in. */
    len = v2_len(0x21, 0x11, 12 + 3, body, 12 + 3);
    v2_fails_at("tlv value", len, 30, WHY_V2_TLV_VALUE);
    len = v2_len(0x21, 0x11, 12 + 8, body, 12 + 8);
    v2_fails_at("second tlv value", len, 34, WHY_V2_TLV_VALUE);
    /* After a first TLV, 1 or 2 bytes: no room for a second header. */
    len = v2_len(0x21, 0x11, 12 + 4 + 2, body, 12 + 4 + 2);
    v2_fails_at("second tlv head", len, 30, WHY_V2_TLV_HEAD);
    body[13] = 0xff, body[14] = 0xff;
    len = v2_len(0x21, 0x11, 12 + 9, body, 12 + 9);
    v2_fails_at("tlv 65535", len, 30, WHY_V2_TLV_VALUE);
    len = v2_len(0x20, 0x00, 2, "\x04\x00", 2);
    v2_fails_at("local tlv head", len, 15, WHY_V2_TLV_HEAD);
    len = v2_len(0x21, 0x00, 4, "\x04\x00\x02x", 4);
    v2_fails_at("unspec tlv value", len, 18, WHY_V2_TLV_VALUE);
}

/* ---------------------------------------------------------------- misc */

static void test_proxy_parse_arguments(void **state)
{
    static const char line[] = "PROXY UNKNOWN\r\n";
    const char *why = NULL;

    (void)state;
    assert_int_equal(sk_proxy_parse(line, 0, SK_PROXY_ANY, NULL, &why), 0);
    assert_int_equal(sk_proxy_parse(line, 15, SK_PROXY_V1, NULL, NULL), 15);
    assert_int_equal(sk_proxy_parse("GET", 3, SK_PROXY_ANY, NULL, NULL),
                     SK_EPROXY);
    assert_int_equal(sk_proxy_parse(line, 15, SK_PROXY_NONE, NULL, &why),
                     SK_EPROXY);
    assert_string_equal(why, WHY_EXPECT);
    why = NULL;
    assert_int_equal(sk_proxy_parse(line, 0, (enum sk_proxy)7, NULL, &why),
                     SK_EPROXY);
    assert_string_equal(why, WHY_EXPECT);
}

/* ---------------------------------------------------------- formatting */

struct fmt_case {
    const char *name;
    struct sk_addr src, dst;
    bool none;   /* NULL addresses */
    bool v1_has; /* v1 carries them (not UNKNOWN) */
};

static struct fmt_case fmt[8];

static int setup_format(void **state)
{
    char path108[UNIX_PATH_LEN];

    (void)state;
    memset(path108, 'q', sizeof(path108));
    fmt[0] = (struct fmt_case){"inet", in4("192.0.2.1", 56324),
                               in4("198.51.100.2", 443), false, true};
    fmt[1] = (struct fmt_case){"inet6", in6("2001:db8::1", 1),
                               in6("::1", 65535), false, true};
    fmt[2] = (struct fmt_case){"mapped", in6("::ffff:192.0.2.1", 0),
                               in6("::ffff:192.0.2.2", 2), false, true};
    fmt[3] = (struct fmt_case){"unix", un("/run/s.sock", 12), un("", 0), false,
                               false};
    fmt[4] = (struct fmt_case){"abstract", un("\0a\0b", 4), un("\0x", 2), false,
                               false};
    fmt[5] = (struct fmt_case){"unix 108", un(path108, 108), un("/p", 3), false,
                               false};
    fmt[6] = (struct fmt_case){"local", {0}, {0}, true, false};
    fmt[7] = (struct fmt_case){
        "v6 max", in6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535),
        in6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535), false, true};
    return 0;
}

static int format_case(const struct fmt_case *c, enum sk_proxy v, int socktype,
                       void *out, size_t size)
{
    return sk_proxy_format(v, socktype, c->none ? NULL : &c->src,
                           c->none ? NULL : &c->dst, out, size);
}

static void test_proxy_format_exact_bytes(void **state)
{
    static const unsigned char want_v2_in4[] = {
        0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49,
        0x54, 0x0a, 0x21, 0x11, 0x00, 0x0c, 192,  0,    2,    1,
        198,  51,   100,  2,    0xdc, 0x04, 0x01, 0xbb};
    static const unsigned char want_local[] = {
        0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51,
        0x55, 0x49, 0x54, 0x0a, 0x20, 0x00, 0x00, 0x00};
    static const char *const want_v1[] = {
        "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n",
        "PROXY TCP6 2001:db8::1 ::1 1 65535\r\n",
        "PROXY TCP6 ::ffff:192.0.2.1 ::ffff:192.0.2.2 0 2\r\n",
        "PROXY UNKNOWN\r\n",
        "PROXY UNKNOWN\r\n",
        "PROXY UNKNOWN\r\n",
        "PROXY UNKNOWN\r\n",
        ("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
         "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
    };
    unsigned char out[SK_PROXY_HEADER_MAX];
    int n;

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(fmt); i++) {
        /* v1 takes no notice of socktype. */
        n = format_case(&fmt[i], SK_PROXY_V1, SOCK_SEQPACKET, out, sizeof(out));
        assert_int_equal(n, strlen(want_v1[i]));
        assert_memory_equal(out, want_v1[i], (size_t)n);
    }
    n = format_case(&fmt[0], SK_PROXY_V2, SOCK_STREAM, out, sizeof(out));
    assert_int_equal(n, sizeof(want_v2_in4));
    assert_memory_equal(out, want_v2_in4, sizeof(want_v2_in4));
    n = format_case(&fmt[6], SK_PROXY_V2, SOCK_SEQPACKET, out, sizeof(out));
    assert_int_equal(n, sizeof(want_local));
    assert_memory_equal(out, want_local, sizeof(want_local));
    n = format_case(&fmt[1], SK_PROXY_V2, SOCK_DGRAM, out, sizeof(out));
    assert_int_equal(n, 16 + 36);
    assert_int_equal(out[13], 0x22);
    n = format_case(&fmt[5], SK_PROXY_V2, SOCK_STREAM, out, sizeof(out));
    assert_int_equal(n, 16 + 216);
    assert_int_equal(out[13], 0x31);
    assert_memory_equal(out + 16, fmt[5].src.u.un.sun_path, 108);
    assert_memory_equal(out + 16 + 108, "/p\0\0", 4);
}

static void expect_round_trip(const struct fmt_case *c, enum sk_proxy v,
                              int socktype)
{
    unsigned char out[SK_PROXY_HEADER_MAX];
    struct sk_proxy_header h;
    bool local = c->none || (v == SK_PROXY_V1 && !c->v1_has);
    int n = format_case(c, v, socktype, out, sizeof(out));

    if (n <= 0)
        fail_msg("%s v%d: format returned %d", c->name, v, n);
    assert_int_equal(parse(out, (size_t)n, v, &h, NULL), n);
    assert_int_equal(h.version, v == SK_PROXY_V1 ? 1 : 2);
    assert_int_equal(h.local, local);
    if (v == SK_PROXY_V1 || local)
        assert_int_equal(h.socktype, SOCK_STREAM);
    else
        assert_int_equal(h.socktype, socktype);
    if (!local && (!same_addr(&h.src, &c->src) || !same_addr(&h.dst, &c->dst)))
        fail_msg("%s v%d: other addresses after a round trip", c->name, v);
}

static void test_proxy_format_parse_round_trips(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(fmt); i++) {
        expect_round_trip(&fmt[i], SK_PROXY_V1, SOCK_STREAM);
        expect_round_trip(&fmt[i], SK_PROXY_V2, SOCK_STREAM);
        expect_round_trip(&fmt[i], SK_PROXY_V2, SOCK_DGRAM);
    }
}

static void test_proxy_format_short_buffer_is_enospc(void **state)
{
    static const enum sk_proxy versions[] = {SK_PROXY_V1, SK_PROXY_V2};
    unsigned char out[SK_PROXY_HEADER_MAX + 1], sentinel[sizeof(out)];

    (void)state;
    memset(sentinel, 0xa5, sizeof(sentinel));
    for (size_t i = 0; i < ARRAY_LEN(fmt); i++) {
        for (size_t v = 0; v < ARRAY_LEN(versions); v++) {
            int n = format_case(&fmt[i], versions[v], SOCK_STREAM, out,
                                SK_PROXY_HEADER_MAX);

            assert_true(n > 0 && n <= SK_PROXY_HEADER_MAX);
            for (size_t size = 0; size < (size_t)n; size++) {
                memcpy(out, sentinel, sizeof(out));
                assert_int_equal(
                    format_case(&fmt[i], versions[v], SOCK_STREAM, out, size),
                    -ENOSPC);
                assert_memory_equal(out, sentinel, sizeof(out));
            }
            memcpy(out, sentinel, sizeof(out));
            assert_int_equal(
                format_case(&fmt[i], versions[v], SOCK_STREAM, out, (size_t)n),
                n);
            /* Nothing is written past the header, not even a NUL. */
            assert_int_equal(out[n], 0xa5);
        }
    }
}

static void test_proxy_format_rejects_what_it_cannot_carry(void **state)
{
    struct sk_addr a4 = in4("192.0.2.1", 1), a6 = in6("::1", 2);
    struct sk_addr au = un("/s", 3), bad = a4;
    unsigned char out[SK_PROXY_HEADER_MAX];

    (void)state;
    for (int v = SK_PROXY_V1; v <= SK_PROXY_V2; v++) {
        assert_int_equal(sk_proxy_format(v, SOCK_STREAM, &a4, &a6, out, 240),
                         -EINVAL);
        assert_int_equal(sk_proxy_format(v, SOCK_STREAM, &a6, &au, out, 240),
                         -EINVAL);
        assert_int_equal(sk_proxy_format(v, SOCK_STREAM, &a4, NULL, out, 240),
                         -EINVAL);
        bad.len = 4;
        assert_int_equal(sk_proxy_format(v, SOCK_STREAM, &a4, &bad, out, 240),
                         -EINVAL);
        bad = au;
        bad.len = sizeof(struct sockaddr_un) + 1;
        assert_int_equal(sk_proxy_format(v, SOCK_STREAM, &bad, &au, out, 240),
                         -EINVAL);
        bad = a4;
        bad.u.sa.sa_family = AF_UNSPEC;
        assert_int_equal(sk_proxy_format(v, SOCK_STREAM, &bad, &bad, out, 240),
                         -EINVAL);
        bad = a4;
    }
    assert_int_equal(
        sk_proxy_format(SK_PROXY_V2, SOCK_SEQPACKET, &a4, &a4, out, 240),
        -EINVAL);
    assert_int_equal(sk_proxy_format(SK_PROXY_V2, 0, &au, &au, out, 240),
                     -EINVAL);
    assert_int_equal(
        sk_proxy_format(SK_PROXY_NONE, SOCK_STREAM, NULL, NULL, out, 240),
        -EINVAL);
    assert_int_equal(
        sk_proxy_format(SK_PROXY_ANY, SOCK_STREAM, &a4, &a4, out, 240),
        -EINVAL);
}

/* ------------------------------------------------------ random headers */

static uint64_t rng_state;

static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32) % n;
}

/* Bytes that matter to the parsers. */
static unsigned char interesting(void)
{
    static const char set[] = " \r\n0123456789:.abcdefPROXYTCP46UNKNOW\x21\x11";

    return rnd(4) == 0 ? (unsigned char)rnd(256)
                       : (unsigned char)set[rnd(sizeof(set) - 1)];
}

static size_t mutate(unsigned char *buf, size_t len, size_t cap)
{
    for (unsigned m = 1 + rnd(3); m > 0; m--) {
        size_t at = len > 0 ? rnd((uint32_t)len) : 0;

        switch (rnd(5)) {
        case 0:
            if (len > 0)
                buf[at] = interesting();
            break;
        case 1: /* insert */
            if (len < cap) {
                memmove(buf + at + 1, buf + at, len - at);
                buf[at] = interesting();
                len++;
            }
            break;
        case 2: /* delete */
            if (len > 0) {
                memmove(buf + at, buf + at + 1, len - at - 1);
                len--;
            }
            break;
        case 3: /* truncate */
            len = at;
            break;
        default: /* a v2 length field, or any byte, at random */
            if (len >= 16 && buf[0] == '\r')
                buf[14 + rnd(2)] = (unsigned char)rnd(256);
            else if (len > 0)
                buf[at] = (unsigned char)rnd(256);
        }
    }
    return len;
}

/* One of: random bytes after a signature's beginning, a valid header
 * mutated, or a valid header with random bytes after it. */
static size_t random_input(unsigned char *buf, size_t cap)
{
    const struct sample *s = &samples[rnd((uint32_t)n_samples)];
    size_t len;

    switch (rnd(3)) {
    case 0:
        len = rnd(200);
        for (size_t i = 0; i < len; i++)
            buf[i] = interesting();
        if (rnd(2) == 0)
            memcpy(buf, rnd(2) ? "PROXY " : SIG, len < 6 ? len : 6);
        return len;
    case 1:
        len = s->len < cap - 8 ? s->len : cap - 8;
        memcpy(buf, s->data, len);
        return mutate(buf, len, cap);
    default:
        len = s->len + rnd(16);
        assert_true(len <= cap);
        memcpy(buf, s->data, s->len);
        for (size_t i = s->len; i < len; i++)
            buf[i] = (unsigned char)rnd(256);
        return len;
    }
}

/* What holds for any input: the return is SK_EPROXY with a reason, 0, or
 * a length of at most len; every prefix agrees (0 before a header's end,
 * the same header from there on; once refused, refused); a header parses
 * again from exactly its bytes. */
static void check_invariants(const unsigned char *buf, size_t len,
                             enum sk_proxy expect, unsigned iter)
{
    struct sk_proxy_header h, again;
    const char *why = NULL;
    int ret = parse(buf, len, expect, &h, &why), last = 0;

    if (ret == SK_EPROXY && (why == NULL || *why == '\0'))
        fail_msg("input %u: refused without a reason", iter);
    if (ret != SK_EPROXY && (ret < 0 || (size_t)ret > len))
        fail_msg("input %u: returned %d of %zu bytes", iter, ret, len);
    if (ret == 0 && len >= (buf[0] == 'P' ? SK_PROXY_V1_MAX : SK_PROXY_V2_MAX))
        fail_msg("input %u: needs more after %zu bytes", iter, len);
    for (size_t k = 0; k < len; k++) {
        int r = parse(buf, k, expect, &again, NULL);

        if (ret >= 0 && r != (ret > 0 && k >= (size_t)ret ? ret : 0))
            fail_msg("input %u: %zu bytes give %d, %zu give %d", iter, k, r,
                     len, ret);
        if (last == SK_EPROXY && r != SK_EPROXY)
            fail_msg("input %u: refused, then not with %zu bytes", iter, k);
        if (r == SK_EPROXY)
            last = r;
    }
    if (ret > 0) {
        assert_int_equal(parse(buf, (size_t)ret, expect, &again, NULL), ret);
        assert_true(same_header(&h, &again));
        assert_true(expect != SK_PROXY_V1 || h.version == 1);
        assert_true(expect != SK_PROXY_V2 || h.version == 2);
        assert_true(!h.local || (h.src.len == 0 && h.dst.len == 0));
    }
}

static void test_proxy_random_inputs_keep_invariants(void **state)
{
    static unsigned char buf[SK_PROXY_V2_MAX + 64];
    unsigned counts[3] = {0};

    (void)state;
    rng_state = 0x5eed5eed12345678u;
    for (unsigned i = 0; i < 1000; i++) {
        size_t len = random_input(buf, sizeof(buf));
        int ret = parse(buf, len, SK_PROXY_ANY, NULL, NULL);

        counts[ret < 0 ? 0 : ret == 0 ? 1 : 2]++;
        check_invariants(buf, len, SK_PROXY_ANY, i);
        check_invariants(buf, len, SK_PROXY_V1, i);
        check_invariants(buf, len, SK_PROXY_V2, i);
    }
    /* The run reaches every outcome. */
    assert_true(counts[0] > 100 && counts[1] > 20 && counts[2] > 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_proxy_parses_every_valid_form_exactly),
        cmocka_unit_test(test_proxy_every_proper_prefix_needs_more),
        cmocka_unit_test(test_proxy_header_then_data_is_header_length),
        cmocka_unit_test(test_proxy_every_two_piece_split),
        cmocka_unit_test(test_proxy_v1_malformed_fails_at_first_bad_byte),
        cmocka_unit_test(test_proxy_v1_107_bytes_valid_108_not),
        cmocka_unit_test(test_proxy_v2_bad_signature_fails_at_that_byte),
        cmocka_unit_test(test_proxy_v2_bad_version_command_family),
        cmocka_unit_test(test_proxy_v2_length_checked_from_its_field),
        cmocka_unit_test(test_proxy_v2_tlv_truncations),
        cmocka_unit_test(test_proxy_parse_arguments),
        cmocka_unit_test(test_proxy_random_inputs_keep_invariants),
        cmocka_unit_test_setup(test_proxy_format_exact_bytes, setup_format),
        cmocka_unit_test_setup(test_proxy_format_parse_round_trips,
                               setup_format),
        cmocka_unit_test_setup(test_proxy_format_short_buffer_is_enospc,
                               setup_format),
        cmocka_unit_test(test_proxy_format_rejects_what_it_cannot_carry),
    };

    return cmocka_run_group_tests(tests, setup_samples, NULL);
}
