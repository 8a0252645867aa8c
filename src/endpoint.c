/* endpoint.c -- parse and format endpoint strings such as
 * "tcp://[::1]:80", "unix:@name", "fd:3" or "sd:web", and tell their
 * kind. No I/O and no allocation (endpoint_resolve.c resolves them). */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* Longest UNIX path or abstract name: sun_path less the NUL or the
 * abstract name's leading zero byte. */
#define UNIX_NAME_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)
/* Longest DNS name. */
#define HOST_NAME_LEN 253
/* Longest name systemd gives a socket (FileDescriptorName=). */
#define SD_NAME_MAX 255

static const struct scheme_info {
    const char *name;
    enum sk_scheme scheme;
    int socktype;
    int family;
} schemes[] = {
    {"tcp", SK_TCP, SOCK_STREAM, AF_UNSPEC},
    {"tcp4", SK_TCP4, SOCK_STREAM, AF_INET},
    {"tcp6", SK_TCP6, SOCK_STREAM, AF_INET6},
    {"udp", SK_UDP, SOCK_DGRAM, AF_UNSPEC},
    {"udp4", SK_UDP4, SOCK_DGRAM, AF_INET},
    {"udp6", SK_UDP6, SOCK_DGRAM, AF_INET6},
    {"unix", SK_UNIX, SOCK_STREAM, AF_UNIX},
    {"unixgram", SK_UNIXGRAM, SOCK_DGRAM, AF_UNIX},
    {"unixpacket", SK_UNIXPACKET, SOCK_SEQPACKET, AF_UNIX},
    {"mptcp", SK_MPTCP, SOCK_STREAM, AF_UNSPEC},
    {"mptcp4", SK_MPTCP4, SOCK_STREAM, AF_INET},
    {"mptcp6", SK_MPTCP6, SOCK_STREAM, AF_INET6},
    /* Of a kind known once adopted: 0 makes any socket() call fail. */
    {"fd", SK_FD, 0, AF_UNSPEC},
    {"sd", SK_SD, 0, AF_UNSPEC},
};

static const struct scheme_info *scheme_find(enum sk_scheme scheme)
{
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
        if (schemes[i].scheme == scheme)
            return &schemes[i];
    return NULL;
}

/* Matches the scheme at the start of text; sets *rest past "scheme:". */
static const struct scheme_info *scheme_parse(const char *text,
                                              const char **rest)
{
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        size_t n = strlen(schemes[i].name);
        if (strncmp(text, schemes[i].name, n) == 0 && text[n] == ':') {
            *rest = text + n + 1;
            return &schemes[i];
        }
    }
    return NULL;
}

int sk_endpoint_socktype(const struct sk_endpoint *ep)
{
    const struct scheme_info *s = scheme_find(ep->scheme);
    return s ? s->socktype : -EINVAL;
}

int sk_endpoint_family(const struct sk_endpoint *ep)
{
    const struct scheme_info *s = scheme_find(ep->scheme);
    return s ? s->family : -EINVAL;
}

int sk_endpoint_protocol(const struct sk_endpoint *ep)
{
    bool mptcp = ep->scheme >= SK_MPTCP && ep->scheme <= SK_MPTCP6;

    return mptcp ? IPPROTO_MPTCP : 0;
}

bool sk_endpoint_is_unix(const struct sk_endpoint *ep)
{
    return sk_endpoint_family(ep) == AF_UNIX;
}

/* Connection-oriented: unixpacket too, and fd:/sd: until the socket
 * itself says (sk_server_listen() checks it again). */
bool sk_endpoint_is_stream(const struct sk_endpoint *ep)
{
    int socktype = sk_endpoint_socktype(ep);

    return socktype == SOCK_STREAM || socktype == SOCK_SEQPACKET ||
           ep->scheme == SK_FD || ep->scheme == SK_SD;
}

bool sk__endpoint_inherited(const struct sk_endpoint *ep)
{
    return ep->scheme == SK_FD || ep->scheme == SK_SD;
}

static int fail(const char **why, const char *msg, int err)
{
    if (why != NULL)
        *why = msg;
    return err;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes the escape at p ("\\", "\,", "\xNN"): the byte, or -1. Sets
 * *used to the characters it took. */
int sk__endpoint_unescape(const char *p, size_t *used)
{
    int hi, lo;

    *used = 2;
    if (p[1] == '\\' || p[1] == ',')
        return (unsigned char)p[1];
    if (p[1] != 'x' || (hi = hex_digit(p[2])) < 0 || (lo = hex_digit(p[3])) < 0)
        return -1;
    *used = 4;
    return hi * 16 + lo;
}

#define WHY_BAD_ESCAPE "bad escape in path (write \\\\ \\, or \\xNN)"

/* Copies a UNIX path, decoding escapes; returns its length, -1 when it
 * does not fit in out[size] (with the NUL), -2 for a bad escape. A NUL
 * byte may only be part of an abstract name. */
static ssize_t copy_path(char *out, size_t size, const char *in,
                         const char **why)
{
    size_t n = 0, used;
    int byte;

    for (const char *p = in; *p != '\0'; p += used) {
        used = 1;
        byte = (unsigned char)*p;
        if (*p == '\\' && (byte = sk__endpoint_unescape(p, &used)) < 0) {
            *why = WHY_BAD_ESCAPE;
            return -2;
        }
        if (byte == 0 && (n == 0 || out[0] != '@')) {
            *why = "a NUL byte in a path (only an abstract name may hold one)";
            return -2;
        }
        if (n + 1 >= size)
            return -1;
        out[n++] = (char)byte;
    }
    out[n] = '\0';
    return (ssize_t)n;
}

static int parse_unix(struct sk_endpoint *ep, const char *rest,
                      const char **why)
{
    char path[SK_PATH_MAX + 1]; /* one more, to tell "too long" apart */
    const char *bad = NULL;
    ssize_t len;

    if (strncmp(rest, "//", 2) == 0)
        rest += 2;
    len = copy_path(path, sizeof(path), rest, &bad);
    if (len == -2)
        return fail(why, bad, -EINVAL);
    if (len == 0)
        return fail(why, "empty path", -EINVAL);
    if (len == 1 && path[0] == '@')
        return fail(why, "empty abstract name", -EINVAL);
    if (len < 0 || (size_t)len - (path[0] == '@') > UNIX_NAME_MAX)
        return fail(why, "path too long for a UNIX socket (max 107 bytes)",
                    -ENAMETOOLONG);
    memcpy(ep->path, path, (size_t)len + 1);
    ep->path_len = memchr(path, '\0', (size_t)len) != NULL ? (uint8_t)len : 0;
    return 0;
}

size_t sk__endpoint_path_length(const struct sk_endpoint *ep)
{
    return ep->path_len > 0 ? ep->path_len : strnlen(ep->path, SK_PATH_MAX);
}

static int parse_port(const char *text, uint16_t *port, const char **why)
{
    unsigned long v = 0;
    size_t n = 0;

    if (*text == '\0')
        return fail(why, "missing port", -EINVAL);
    for (; text[n] != '\0'; n++)
        if (text[n] < '0' || text[n] > '9')
            return fail(why, "port is not a number", -EINVAL);
    for (n = 0; text[n] != '\0'; n++) {
        v = v * 10 + (unsigned long)(text[n] - '0');
        if (v > 65535)
            return fail(why, "port out of range 0..65535", -ERANGE);
    }
    *port = (uint16_t)v;
    return 0;
}

static bool is_ipv6_literal(const char *host)
{
    char addr[INET6_ADDRSTRLEN];
    struct in6_addr in6;
    const char *zone = strchr(host, '%');
    size_t n = zone ? (size_t)(zone - host) : strlen(host);

    if (n >= sizeof(addr) || (zone != NULL && zone[1] == '\0'))
        return false;
    memcpy(addr, host, n);
    addr[n] = '\0';
    if (zone != NULL && strspn(zone + 1, "abcdefghijklmnopqrstuvwxyz"
                                         "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                         "0123456789_.-") != strlen(zone + 1))
        return false;
    return inet_pton(AF_INET6, addr, &in6) == 1;
}

/* An IPv4-mapped IPv6 literal ("::ffff:127.0.0.1") names an IPv4 address:
 * host becomes its IPv4 form, bound and connected as IPv4, since a socket
 * of IPv6 alone can do neither with it. Returns 1 when host was one, 0
 * when not, or a negative code (an IPv6-only scheme) with *why set. */
static int unmap_ipv4(char *host, int family, const char **why)
{
    struct in6_addr in6;

    if (strchr(host, '%') != NULL || inet_pton(AF_INET6, host, &in6) != 1 ||
        !IN6_IS_ADDR_V4MAPPED(&in6))
        return 0;
    if (family == AF_INET6)
        return fail(why,
                    "IPv4-mapped address with an IPv6-only scheme (it is "
                    "IPv4: drop the 6 from the scheme)",
                    -EINVAL);
    memset(host, 0, SK_HOST_MAX); /* endpoints compare whole */
    inet_ntop(AF_INET, &in6.s6_addr[12], host, INET_ADDRSTRLEN);
    return 1;
}

/* Checks an unbracketed host: an IPv4 literal or a DNS name. */
static int check_host(const char *host, int family, const char **why)
{
    struct in_addr in;

    if (*host == '\0')
        return 0;
    if (inet_pton(AF_INET, host, &in) == 1) {
        if (family == AF_INET6)
            return fail(why, "IPv4 address with an IPv6-only scheme", -EINVAL);
        return 0;
    }
    if (strspn(host, "0123456789.") == strlen(host))
        return fail(why, "bad IPv4 address", -EINVAL);
    if (strlen(host) > HOST_NAME_LEN)
        return fail(why, "host name too long", -ENAMETOOLONG);
    if (strspn(host, "abcdefghijklmnopqrstuvwxyz"
                     "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") != strlen(host))
        return fail(why, "bad character in host", -EINVAL);
    return 0;
}

/* Splits "host:port" or "[v6]:port" into ep->host and ep->port. */
static int parse_inet(struct sk_endpoint *ep, const char *rest, int family,
                      const char **why)
{
    const char *colon, *host = rest;
    size_t hlen;
    int err;

    if (strncmp(rest, "//", 2) != 0)
        return fail(why, "expected // after the scheme", -EINVAL);
    host = rest + 2;
    if (*host == '[') {
        const char *close = strchr(host, ']');
        if (close == NULL)
            return fail(why, "missing ] after IPv6 address", -EINVAL);
        hlen = (size_t)(close - host - 1);
        if (hlen == 0 || hlen >= sizeof(ep->host))
            return fail(why, "bad IPv6 address", -EINVAL);
        memcpy(ep->host, host + 1, hlen);
        ep->host[hlen] = '\0';
        if (!is_ipv6_literal(ep->host))
            return fail(why, "bad IPv6 address", -EINVAL);
        if ((err = unmap_ipv4(ep->host, family, why)) < 0)
            return err;
        if (family == AF_INET && err == 0)
            return fail(why, "IPv6 address with an IPv4-only scheme", -EINVAL);
        if (close[1] != ':')
            return fail(why, "missing port", -EINVAL);
        return parse_port(close + 2, &ep->port, why);
    }
    colon = strrchr(host, ':');
    if (colon == NULL)
        return fail(why, "missing port", -EINVAL);
    hlen = (size_t)(colon - host);
    if (memchr(host, ':', hlen) != NULL)
        return fail(why, "IPv6 address needs [brackets]", -EINVAL);
    if (hlen >= sizeof(ep->host))
        return fail(why, "host name too long", -ENAMETOOLONG);
    memcpy(ep->host, host, hlen);
    ep->host[hlen] = '\0';
    err = check_host(ep->host, family, why);
    if (err < 0)
        return err;
    return parse_port(colon + 1, &ep->port, why);
}

/* "fd:N": the len characters at text, N in 0..INT_MAX, decimal digits
 * only (no sign, no space). */
static int parse_fd(struct sk_endpoint *ep, const char *text, size_t len,
                    const char **why)
{
    long v = 0;

    if (len == 0)
        return fail(why, "missing descriptor number", -EINVAL);
    for (size_t i = 0; i < len; i++)
        if (text[i] < '0' || text[i] > '9')
            return fail(why, "descriptor is not a number", -EINVAL);
    for (size_t i = 0; i < len; i++) {
        v = v * 10 + (text[i] - '0');
        if (v > INT_MAX)
            return fail(why, "descriptor out of range 0..2147483647", -ERANGE);
    }
    ep->fd = (int)v;
    return 0;
}

/* "sd:NAME": what systemd allows in FileDescriptorName= (its
 * fdname_is_valid()): at most 255 bytes of printable ASCII, space
 * included, but ':', which separates the names in LISTEN_FDNAMES. "\,"
 * and "\\" stand for a comma and a backslash, as in a path. "sd:" alone:
 * every socket passed. */
static int parse_sd(struct sk_endpoint *ep, const char *rest, const char **why)
{
    char name[SD_NAME_MAX + 1];
    size_t n = 0, used;
    int byte;

    for (const char *p = rest; *p != '\0'; p += used) {
        used = 1;
        byte = (unsigned char)*p;
        if (*p == '\\' && (byte = sk__endpoint_unescape(p, &used)) < 0)
            return fail(why, "bad escape in socket name (write \\\\ or \\,)",
                        -EINVAL);
        if (byte < 0x20 || byte >= 0x7f || byte == ':')
            return fail(why,
                        "bad character in socket name (printable ASCII "
                        "but ':')",
                        -EINVAL);
        if (n >= SD_NAME_MAX)
            return fail(why, "socket name too long (max 255 bytes)",
                        -ENAMETOOLONG);
        name[n++] = (char)byte;
    }
    memcpy(ep->host, name, n);
    ep->host[n] = '\0';
    return 0;
}

/* Where the options begin: the first comma, not counting an escaped one
 * (in a UNIX path or a systemd name). */
static size_t base_length(const char *rest, bool escapes)
{
    size_t n = 0;

    while (rest[n] != '\0' && rest[n] != ',') {
        if (escapes && rest[n] == '\\' && rest[n + 1] != '\0')
            n++;
        n++;
    }
    return n;
}

/* "tls://H:P" is "tcp://H:P,tls". */
static const struct scheme_info *tls_scheme(const char *text, const char **rest)
{
    static const char *const names[] = {"tls://", "tls4://", "tls6://"};

    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(names[i]) - 2;
        if (strncmp(text, names[i], n + 2) == 0) {
            *rest = text + n;
            return &schemes[i];
        }
    }
    return NULL;
}

#define WHY_SCHEME                                                             \
    "unknown scheme (tcp, tcp4, tcp6, tls, tls4, tls6, udp, udp4, udp6, "      \
    "unix, unixgram, unixpacket, mptcp, mptcp4, mptcp6, fd, sd)"

/* What a base too long to hold is too long for. */
static const char *too_long(const struct scheme_info *s)
{
    if (s->family == AF_UNIX)
        return "path too long for a UNIX socket (max 107 bytes)";
    if (s->scheme == SK_SD)
        return "socket name too long (max 255 bytes)";
    return "host name too long";
}

static int parse_base(struct sk_endpoint *ep, const char *text,
                      const char **rest, const char **why)
{
    char base[SK_ENDPOINT_STRLEN + 8];
    const struct scheme_info *s;
    const char *after;
    size_t n;
    int err;

    s = tls_scheme(text, &after);
    ep->tls = s != NULL;
    if (s == NULL)
        s = scheme_parse(text, &after);
    if (s == NULL)
        return fail(why, WHY_SCHEME, -EINVAL);
    ep->scheme = s->scheme;
    n = base_length(after, s->family == AF_UNIX || s->scheme == SK_SD);
    if (s->scheme == SK_FD) {
        *rest = after + n;
        return parse_fd(ep, after, n, why);
    }
    if (n >= sizeof(base))
        return fail(why, too_long(s), -ENAMETOOLONG);
    memcpy(base, after, n);
    base[n] = '\0';
    *rest = after + n;
    if (s->family == AF_UNIX)
        err = parse_unix(ep, base, why);
    else if (s->scheme == SK_SD)
        err = parse_sd(ep, base, why);
    else
        err = parse_inet(ep, base, s->family, why);
    return err;
}

int sk_endpoint_parse_options(struct sk_endpoint *ep,
                              struct sk_endpoint_options *opts,
                              const char *text, const char **why)
{
    struct sk_endpoint tmp = {0};
    struct sk_endpoint_options o = {0};
    const char *rest;
    int err;

    err = parse_base(&tmp, text, &rest, why);
    if (err < 0)
        return err;
    if (tmp.tls)
        o.given |= SK_OPT_TLS;
    err = sk__endpoint_parse_options(&tmp, &o, rest, why);
    if (err < 0)
        return err;
    if (opts == NULL && (o.given & ~(SK_OPT_TLS | SK_OPT_PROXY)))
        return fail(why,
                    "endpoint options other than tls and proxy= need "
                    "sk_endpoint_parse_options()",
                    -EINVAL);
    *ep = tmp;
    if (opts != NULL)
        *opts = o;
    return 0;
}

int sk_endpoint_parse(struct sk_endpoint *ep, const char *text,
                      const char **why)
{
    return sk_endpoint_parse_options(ep, NULL, text, why);
}

/* Writes path with its non-printable bytes as \xNN and a backslash or
 * comma escaped, so that a peer's chosen name cannot pass for anything
 * else in a log line or a chat room. Returns the length. */
static size_t escape_path(char *out, const char *path, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *end = (const unsigned char *)path + len;
    char *o = out;

    for (const unsigned char *p = (const unsigned char *)path; p < end; p++) {
        if (*p < 0x20 || *p >= 0x7f) {
            *o++ = '\\';
            *o++ = 'x';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        } else {
            if (*p == '\\' || *p == ',')
                *o++ = '\\';
            *o++ = (char)*p;
        }
    }
    *o = '\0';
    return (size_t)(o - out);
}

/* Writes the endpoint without its options, as snprintf() does. */
static int format_base(const struct sk_endpoint *ep,
                       const struct scheme_info *s, const char *name, char *out,
                       size_t size)
{
    /* Room for a path with every byte as \xNN, or for a systemd name with
     * every byte escaped (as \, or \\). */
    char text[4 * SK_PATH_MAX + 2 * SK_HOST_MAX];
    size_t len;

    if (s->family == AF_UNIX) {
        if ((len = sk__endpoint_path_length(ep)) >= SK_PATH_MAX)
            return -EINVAL;
        escape_path(text, ep->path, len);
        /* A path starting with "//" needs the long form to survive parse. */
        return snprintf(out, size, "%s:%s%s", name,
                        strncmp(text, "//", 2) == 0 ? "//" : "", text);
    }
    if (s->scheme == SK_FD)
        return ep->fd < 0 ? -EINVAL : snprintf(out, size, "fd:%d", ep->fd);
    if (s->scheme == SK_SD) {
        /* Only what parse_sd() takes: then every byte is printable and
         * at most a comma or backslash is escaped. */
        len = strnlen(ep->host, SK_HOST_MAX - 1);
        for (size_t i = 0; i < len; i++)
            if (ep->host[i] < 0x20 || ep->host[i] >= 0x7f || ep->host[i] == ':')
                return -EINVAL;
        escape_path(text, ep->host, len);
        return snprintf(out, size, "sd:%s", text);
    }
    if (strchr(ep->host, ':') != NULL)
        return snprintf(out, size, "%s://[%s]:%u", name, ep->host,
                        (unsigned)ep->port);
    return snprintf(out, size, "%s://%s:%u", name, ep->host,
                    (unsigned)ep->port);
}

int sk_endpoint_format(const struct sk_endpoint *ep, char *out, size_t size)
{
    static const char *const tls_names[] = {"tls", "tls4", "tls6"};
    const struct scheme_info *s = scheme_find(ep->scheme);
    const char *name;
    int n, m;

    if (s == NULL)
        return -EINVAL;
    name = s->name;
    if (ep->tls && ep->scheme >= SK_TCP && ep->scheme <= SK_TCP6)
        name = tls_names[ep->scheme - SK_TCP];
    n = format_base(ep, s, name, out, size);
    if (n == -EINVAL)
        return n;
    if (n < 0 || (size_t)n >= size)
        return -ENOSPC;
    m = sk__endpoint_format_options(ep, name != s->name, out + n,
                                    size - (size_t)n);
    if (m < 0 || (size_t)m >= size - (size_t)n)
        return -ENOSPC;
    return n + m;
}
