/* proxy.c -- HAProxy's PROXY protocol, versions 1 (text) and 2 (binary):
 * parse the header a proxy sends first on a connection, and format one.
 * No I/O, no allocation, no state: the parser reads the caller's bytes
 * from the start on every call and refuses at the first byte that cannot
 * belong to a valid header, so a peer that sends none is closed at once
 * and one that sends a partial header is told apart from a bad one. */
#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "internal.h"

#define V1_SIG "PROXY "
#define V1_SIG_LEN 6
/* The binary signature: not text, and holds a NUL byte. */
static const unsigned char v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                         0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
/* Signature, version and command, family and transport, length. */
#define V2_FIXED 16
/* A TLV's type and 16-bit length, before its value. */
#define V2_TLV_HEAD 3
/* The nibbles of the 13th and 14th bytes. */
enum { V2_CMD_LOCAL, V2_CMD_PROXY };
enum { V2_FAM_UNSPEC, V2_FAM_INET, V2_FAM_INET6, V2_FAM_UNIX };
enum { V2_TRANS_UNSPEC, V2_TRANS_STREAM, V2_TRANS_DGRAM };
#define UNIX_PATH_LEN sizeof(((struct sockaddr_un *)0)->sun_path)
/* Bytes of both addresses (and ports) of each v2 family, by its nibble. */
static const size_t v2_addr_len[] = {0, 12, 36, 2 * UNIX_PATH_LEN};

/* Longest address text inet_pton() takes: IPv6 ending in dotted IPv4,
 * "0000:0000:0000:0000:0000:0000:255.255.255.255". */
#define V1_ADDR_MAX 45
/* Suffixes of which one turns any beginning of an IPv4 or IPv6 address
 * into a whole one ("1.2." + "0.0", "1:2:" + ":", "::ffff:1" + ".0.0.0"):
 * a field cut short is a valid beginning iff one of them completes it
 * (the tests check it on every prefix of every valid header). */
static const char *const completions[] = {
    "", "0", ":", "::", ".0", ".0.0", ".0.0.0", "0.0", "0.0.0", "0.0.0.0",
};
#define COMPLETION_MAX 7

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

/* What a step of the v1 parser found: its part whole, a valid beginning
 * that the bytes so far end in, or an error (*why set by fail()). */
enum { STEP_FAIL = SK_EPROXY, STEP_MORE = 0, STEP_OK = 1 };

static int fail(const char **why, const char *msg)
{
    if (why != NULL)
        *why = msg;
    return SK_EPROXY;
}

/* Whether the n bytes at p may begin a header of signature want. */
static bool begins(const void *p, size_t n, const void *want, size_t want_len)
{
    return memcmp(p, want, n < want_len ? n : want_len) == 0;
}

static unsigned get16(const unsigned char *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

static void put16(unsigned char *p, size_t v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

/* --------------------------------------------------------- version 1 */

/* The line of a v1 header seen so far: p[0..end), stopping before any CR
 * or LF. done: a CR ends it, so no field may go on past end. */
struct line {
    const char *p;
    size_t end;
    size_t at; /* the cursor */
    bool done;
};

/* A field of the line: n bytes at p; whole when the space after it (or,
 * for the last field, the end of the line) has been seen. */
struct field {
    const char *p;
    size_t n;
    bool whole;
};

/* Takes the next field and the single space after it: the last field
 * runs to the end of the line, spaces included (they make it bad). */
static struct field next_field(struct line *l, bool last)
{
    const char *s = l->p + l->at;
    size_t have = l->end - l->at;
    const char *sp = last ? NULL : memchr(s, ' ', have);
    struct field f = {s, sp != NULL ? (size_t)(sp - s) : have, false};

    f.whole = sp != NULL || (last && l->done);
    l->at += f.n + (sp != NULL);
    return f;
}

/* What a field cut short by the end of the bytes so far means: a valid
 * beginning, unless a CR already ended the line before its space. */
static int cut_field(const struct line *l, const char **why)
{
    return l->done ? fail(why, WHY_V1_FIELDS) : STEP_MORE;
}

/* The protocol: "TCP4" or "TCP6" and a space, or "UNKNOWN" and then
 * anything up to the CRLF (the spec has the receiver ignore it), which
 * must start with a space if anything does. *family: AF_UNSPEC for
 * UNKNOWN. */
static int v1_proto(struct line *l, int *family, const char **why)
{
    static const struct {
        const char *word;
        int family;
    } protos[] = {
        {"TCP4", AF_INET},
        {"TCP6", AF_INET6},
        {"UNKNOWN", AF_UNSPEC},
    };
    struct field f = next_field(l, false);

    for (size_t i = 0; i < sizeof(protos) / sizeof(protos[0]); i++) {
        size_t n = strlen(protos[i].word);
        if (f.n > n || memcmp(f.p, protos[i].word, f.n) != 0)
            continue;
        if (f.n < n && (f.whole || l->done))
            continue;
        *family = protos[i].family;
        if (f.n < n)
            return STEP_MORE;
        if (f.whole || (l->done && *family == AF_UNSPEC))
            return STEP_OK;
        return cut_field(l, why);
    }
    return fail(why, WHY_V1_PROTO);
}

/* Whether text[0..n) is an address of family, by inet_pton() and nothing
 * looser (no leading zeros, no IPv4 in TCP6 but as inet_pton() takes it),
 * stored in out; or, when not whole, the beginning of one. */
static bool v1_addr_ok(const char *text, size_t n, int family, bool whole,
                       void *out)
{
    char s[V1_ADDR_MAX + COMPLETION_MAX + 1];
    unsigned char scratch[sizeof(struct in6_addr)];

    /* inet_pton() would stop at a NUL and take what is before it. */
    if (n > V1_ADDR_MAX || memchr(text, '\0', n) != NULL)
        return false;
    memcpy(s, text, n);
    for (size_t i = 0; i < sizeof(completions) / sizeof(completions[0]); i++) {
        if (whole && i > 0)
            break;
        strcpy(s + n, completions[i]);
        if (inet_pton(family, s, whole ? out : scratch) == 1)
            return true;
    }
    return false;
}

/* Whether text[0..n) is a port, 0..65535 in decimal without a leading
 * zero (the spec forbids them, against octal readings), or the beginning
 * of one when not whole. */
static bool v1_port_ok(const char *text, size_t n, bool whole, uint16_t *port)
{
    unsigned long v = 0;

    if (n == 0)
        return !whole;
    if (text[0] == '0' && n > 1)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (text[i] < '0' || text[i] > '9')
            return false;
        v = v * 10 + (unsigned long)(text[i] - '0');
        if (v > 65535)
            return false;
    }
    *port = (uint16_t)v;
    return true;
}

static int v1_addr(struct line *l, int family, struct sk_addr *a,
                   const char *bad, const char **why)
{
    struct field f = next_field(l, false);
    void *out = family == AF_INET ? (void *)&a->u.in.sin_addr
                                  : (void *)&a->u.in6.sin6_addr;

    if (!v1_addr_ok(f.p, f.n, family, f.whole, out))
        return fail(why, bad);
    if (!f.whole)
        return cut_field(l, why);
    a->u.sa.sa_family = (sa_family_t)family;
    a->len = family == AF_INET ? sizeof(a->u.in) : sizeof(a->u.in6);
    return STEP_OK;
}

static int v1_port(struct line *l, bool last, struct sk_addr *a,
                   const char *bad, const char **why)
{
    struct field f = next_field(l, last);
    uint16_t port = 0;

    if (!v1_port_ok(f.p, f.n, f.whole, &port))
        return fail(why, bad);
    if (!f.whole)
        return last ? STEP_MORE : cut_field(l, why);
    if (a->u.sa.sa_family == AF_INET)
        a->u.in.sin_port = htons(port);
    else
        a->u.in6.sin6_port = htons(port);
    return STEP_OK;
}

/* Checks the line so far, field by field, filling h as it goes. */
static int v1_line(struct line *l, struct sk_proxy_header *h, const char **why)
{
    int family = AF_UNSPEC, r;

    l->at = V1_SIG_LEN; /* the signature was matched by the caller */
    if (l->end < V1_SIG_LEN)
        return STEP_MORE;
    r = v1_proto(l, &family, why);
    if (r != STEP_OK || family == AF_UNSPEC) {
        h->local = true;
        return r;
    }
    if ((r = v1_addr(l, family, &h->src, WHY_V1_SRC, why)) != STEP_OK ||
        (r = v1_addr(l, family, &h->dst, WHY_V1_DST, why)) != STEP_OK ||
        (r = v1_port(l, false, &h->src, WHY_V1_SPORT, why)) != STEP_OK)
        return r;
    return v1_port(l, true, &h->dst, WHY_V1_DPORT, why);
}

/* A v1 header: the line up to its CRLF, looked for in the first 107
 * bytes only, so a peer cannot make the caller buffer an endless line.
 * The line's fields are checked before its end, as they come first. */
static int v1_parse(const char *buf, size_t len, struct sk_proxy_header *h,
                    const char **why)
{
    size_t n = len < SK_PROXY_V1_MAX ? len : SK_PROXY_V1_MAX, eol = 0;
    struct line l;

    while (eol < n && buf[eol] != '\r' && buf[eol] != '\n')
        eol++;
    l = (struct line){buf, eol, 0, eol < n && buf[eol] == '\r'};
    h->version = 1;
    h->socktype = SOCK_STREAM;
    if (v1_line(&l, h, why) == STEP_FAIL)
        return SK_EPROXY;
    if (eol < n && buf[eol] == '\n')
        return fail(why, WHY_V1_LF);
    if (eol + 1 < n && buf[eol + 1] != '\n')
        return fail(why, WHY_V1_CR);
    if (eol + 1 < n)
        return (int)(eol + 2);
    /* No CRLF yet: more bytes may bring it, unless it cannot come within
     * the 107 bytes (a CR at the last of them included). */
    return n == SK_PROXY_V1_MAX ? fail(why, WHY_V1_LONG) : 0;
}

/* --------------------------------------------------------- version 2 */

/* A v2 UNIX address, 108 bytes of sun_path padded with NUL bytes, as a
 * sockaddr_un whose len says where the name ends:
 * - a pathname (first byte not NUL) ends at its first NUL, which len
 *   counts as getsockname() does (a 108-byte pathname has none); the bytes
 *   after it are padding (ignored);
 * - a leading NUL makes an abstract name, which runs to the last byte
 *   that is not NUL: trailing NUL bytes are taken as padding, so a name
 *   that ends in NUL bytes of its own loses them (the field cannot tell);
 * - 108 NUL bytes are an unnamed socket: len is sizeof(sa_family_t). */
static void v2_unix(const unsigned char *p, struct sk_addr *a)
{
    size_t n = UNIX_PATH_LEN;

    if (p[0] != 0) {
        n = strnlen((const char *)p, UNIX_PATH_LEN);
        n += n < UNIX_PATH_LEN;
    } else {
        while (n > 0 && p[n - 1] == 0)
            n--;
    }
    a->u.un.sun_family = AF_UNIX;
    memcpy(a->u.un.sun_path, p, n);
    a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
}

/* The addresses of a v2 PROXY header of family fam at p: source and
 * destination address, then their ports, which stay in network order as
 * in a sockaddr; or two UNIX addresses. */
static void v2_addrs(const unsigned char *p, unsigned fam,
                     struct sk_proxy_header *h)
{
    struct sk_addr *s = &h->src, *d = &h->dst;

    if (fam == V2_FAM_INET) {
        s->u.in.sin_family = d->u.in.sin_family = AF_INET;
        memcpy(&s->u.in.sin_addr, p, 4);
        memcpy(&d->u.in.sin_addr, p + 4, 4);
        memcpy(&s->u.in.sin_port, p + 8, 2);
        memcpy(&d->u.in.sin_port, p + 10, 2);
        s->len = d->len = sizeof(struct sockaddr_in);
    } else if (fam == V2_FAM_INET6) {
        s->u.in6.sin6_family = d->u.in6.sin6_family = AF_INET6;
        memcpy(&s->u.in6.sin6_addr, p, 16);
        memcpy(&d->u.in6.sin6_addr, p + 16, 16);
        memcpy(&s->u.in6.sin6_port, p + 32, 2);
        memcpy(&d->u.in6.sin6_port, p + 34, 2);
        s->len = d->len = sizeof(struct sockaddr_in6);
    } else {
        v2_unix(p, s);
        v2_unix(p + UNIX_PATH_LEN, d);
    }
}

/* Walks the TLVs at b[off..total) as far as the len bytes there go: they
 * must tile the rest of the header exactly. A TLV that would cross its
 * end is refused as soon as its position, or its length, is known. */
static int v2_tlvs(const unsigned char *b, size_t len, size_t off, size_t total,
                   const char **why)
{
    while (off < total) {
        if (total - off < V2_TLV_HEAD)
            return fail(why, WHY_V2_TLV_HEAD);
        if (len < off + V2_TLV_HEAD)
            return 0;
        off += V2_TLV_HEAD + get16(b + off + 1);
        if (off > total)
            return fail(why, WHY_V2_TLV_VALUE);
    }
    return 0;
}

/* A v2 header, its 12-byte signature already matched as far as len goes.
 * Each byte is checked as it comes: the length from the length field
 * alone, before the bytes it announces arrive.
 *
 * A LOCAL header is local whatever its family; a PROXY one is too with
 * family or transport UNSPEC, whose addresses the spec has the receiver
 * ignore. Either way the length must hold the family's addresses, and the
 * TLVs walked after them. socktype: SOCK_DGRAM for transport DGRAM, else
 * SOCK_STREAM (the header came on a stream). */
static int v2_parse(const unsigned char *b, size_t len,
                    struct sk_proxy_header *h, const char **why)
{
    unsigned cmd, fam, trans;
    const char *bad;
    size_t total;

    if (len <= sizeof(v2_sig))
        return 0;
    if (b[12] >> 4 != 2)
        return fail(why, WHY_V2_VERSION);
    cmd = b[12] & 0xfu;
    if (cmd != V2_CMD_LOCAL && cmd != V2_CMD_PROXY)
        return fail(why, WHY_V2_CMD);
    if (len < 14)
        return 0;
    fam = b[13] >> 4;
    trans = b[13] & 0xfu;
    if (fam > V2_FAM_UNIX)
        return fail(why, WHY_V2_FAM);
    if (trans > V2_TRANS_DGRAM)
        return fail(why, WHY_V2_TRANS);
    if (len < V2_FIXED)
        return 0;
    total = V2_FIXED + get16(b + 14);
    if (total > SK_PROXY_V2_MAX)
        return fail(why, WHY_V2_LONG);
    if (total - V2_FIXED < v2_addr_len[fam])
        return fail(why, WHY_V2_SHORT);
    if (v2_tlvs(b, len, V2_FIXED + v2_addr_len[fam], total, why) < 0)
        return SK_EPROXY;
    if (len < total)
        return 0;
    if ((bad = sk__proxy_v2_check_tlvs(b, V2_FIXED + v2_addr_len[fam],
                                       total)) != NULL)
        return fail(why, bad);
    h->version = 2;
    h->socktype = trans == V2_TRANS_DGRAM ? SOCK_DGRAM : SOCK_STREAM;
    h->local =
        cmd == V2_CMD_LOCAL || fam == V2_FAM_UNSPEC || trans == V2_TRANS_UNSPEC;
    if (!h->local)
        v2_addrs(b + V2_FIXED, fam, h);
    return (int)total;
}

/* ----------------------------------------------------------- parsing */

/* The version is known from the first byte ('P' or CR), so a header of
 * a version not expected is refused there. hdr is written only when a
 * header is returned, and may be NULL; a local header's addresses are
 * left zeroed (len 0), as is what follows len in a UNIX address. */
int sk_proxy_parse(const void *buf, size_t len, enum sk_proxy expect,
                   struct sk_proxy_header *hdr, const char **why)
{
    struct sk_proxy_header h = {0};
    int ret;

    if (expect != SK_PROXY_V1 && expect != SK_PROXY_V2 &&
        expect != SK_PROXY_ANY)
        return fail(why, WHY_EXPECT);
    if (len == 0)
        return 0;
    if (begins(buf, len, V1_SIG, V1_SIG_LEN)) {
        if (expect == SK_PROXY_V2)
            return fail(why, WHY_V1_ONLY_V2);
        ret = v1_parse(buf, len, &h, why);
    } else if (begins(buf, len, v2_sig, sizeof(v2_sig))) {
        if (expect == SK_PROXY_V1)
            return fail(why, WHY_V2_ONLY_V1);
        ret = v2_parse(buf, len, &h, why);
    } else {
        return fail(why, WHY_NOT_PROXY);
    }
    if (ret > 0 && hdr != NULL)
        *hdr = h;
    return ret;
}

/* -------------------------------------------------------- formatting */

static bool addr_ok(const struct sk_addr *a)
{
    switch (a->u.sa.sa_family) {
    case AF_INET:
        return a->len >= sizeof(struct sockaddr_in);
    case AF_INET6:
        return a->len >= sizeof(struct sockaddr_in6);
    case AF_UNIX:
        return a->len >= offsetof(struct sockaddr_un, sun_path) &&
               a->len <= sizeof(struct sockaddr_un);
    }
    return false;
}

/* The family src and dst share, AF_UNSPEC for no addresses (src NULL),
 * or -EINVAL. */
static int addrs_family(const struct sk_addr *src, const struct sk_addr *dst)
{
    if (src == NULL)
        return AF_UNSPEC;
    if (dst == NULL || !addr_ok(src) || !addr_ok(dst) ||
        src->u.sa.sa_family != dst->u.sa.sa_family)
        return -EINVAL;
    return src->u.sa.sa_family;
}

/* An IP address as inet_ntop() writes it, and its port. */
static void ip_text(const struct sk_addr *a, char *text, unsigned *port)
{
    if (a->u.sa.sa_family == AF_INET) {
        inet_ntop(AF_INET, &a->u.in.sin_addr, text, INET6_ADDRSTRLEN);
        *port = ntohs(a->u.in.sin_port);
    } else {
        inet_ntop(AF_INET6, &a->u.in6.sin6_addr, text, INET6_ADDRSTRLEN);
        *port = ntohs(a->u.in6.sin6_port);
    }
}

/* "PROXY TCP4 ...": each family as given, so an IPv4-mapped IPv6 address
 * goes as TCP6 "::ffff:a.b.c.d" (what is sent is what the caller has; a
 * scope id has no place in it). */
static int format_v1(int family, const struct sk_addr *src,
                     const struct sk_addr *dst, char *out, size_t size)
{
    char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN];
    unsigned sp, dp;

    if (family == AF_UNSPEC || family == AF_UNIX)
        return snprintf(out, size, "PROXY UNKNOWN\r\n");
    ip_text(src, s, &sp);
    ip_text(dst, d, &dp);
    return snprintf(out, size, "PROXY %s %s %s %u %u\r\n",
                    family == AF_INET ? "TCP4" : "TCP6", s, d, sp, dp);
}

/* A UNIX address as v2's 108 bytes: sun_path up to len, NUL-padded. */
static void put_unix(unsigned char *p, const struct sk_addr *a)
{
    size_t n = a->len - offsetof(struct sockaddr_un, sun_path);

    memset(p, 0, UNIX_PATH_LEN);
    memcpy(p, a->u.un.sun_path, n);
}

/* The addresses of a v2 PROXY header, as v2_addrs() reads them; returns
 * their length. */
static size_t put_addrs(unsigned char *p, int family, const struct sk_addr *s,
                        const struct sk_addr *d)
{
    if (family == AF_INET) {
        memcpy(p, &s->u.in.sin_addr, 4);
        memcpy(p + 4, &d->u.in.sin_addr, 4);
        memcpy(p + 8, &s->u.in.sin_port, 2);
        memcpy(p + 10, &d->u.in.sin_port, 2);
        return v2_addr_len[V2_FAM_INET];
    }
    if (family == AF_INET6) {
        memcpy(p, &s->u.in6.sin6_addr, 16);
        memcpy(p + 16, &d->u.in6.sin6_addr, 16);
        memcpy(p + 32, &s->u.in6.sin6_port, 2);
        memcpy(p + 34, &d->u.in6.sin6_port, 2);
        return v2_addr_len[V2_FAM_INET6];
    }
    put_unix(p, s);
    put_unix(p + UNIX_PATH_LEN, d);
    return v2_addr_len[V2_FAM_UNIX];
}

/* A v2 header without TLVs: PROXY with the addresses, LOCAL (family and
 * transport UNSPEC, no addresses) without. */
static int format_v2(int family, int socktype, const struct sk_addr *src,
                     const struct sk_addr *dst, unsigned char *out)
{
    unsigned fam, trans;
    size_t n;

    memcpy(out, v2_sig, sizeof(v2_sig));
    if (family == AF_UNSPEC) {
        out[12] = 0x20 | V2_CMD_LOCAL;
        out[13] = V2_FAM_UNSPEC << 4 | V2_TRANS_UNSPEC;
        put16(out + 14, 0);
        return V2_FIXED;
    }
    if (socktype != SOCK_STREAM && socktype != SOCK_DGRAM)
        return -EINVAL;
    fam = family == AF_INET    ? V2_FAM_INET
          : family == AF_INET6 ? V2_FAM_INET6
                               : V2_FAM_UNIX;
    trans = socktype == SOCK_STREAM ? V2_TRANS_STREAM : V2_TRANS_DGRAM;
    out[12] = 0x20 | V2_CMD_PROXY;
    out[13] = (unsigned char)(fam << 4 | trans);
    n = put_addrs(out + V2_FIXED, family, src, dst);
    put16(out + 14, n);
    return (int)(V2_FIXED + n);
}

/* Formats into a local buffer first: on -ENOSPC out is untouched. No NUL
 * is written after the header, which is bytes for the wire. */
int sk_proxy_format(enum sk_proxy version, int socktype,
                    const struct sk_addr *src, const struct sk_addr *dst,
                    void *out, size_t size)
{
    unsigned char tmp[SK_PROXY_HEADER_MAX];
    int family = addrs_family(src, dst), n;

    if (family < 0)
        return family;
    if (version == SK_PROXY_V1)
        n = format_v1(family, src, dst, (char *)tmp, sizeof(tmp));
    else if (version == SK_PROXY_V2)
        n = format_v2(family, socktype, src, dst, tmp);
    else
        return -EINVAL;
    if (n < 0)
        return n;
    if ((size_t)n > size)
        return -ENOSPC;
    memcpy(out, tmp, (size_t)n);
    return n;
}
