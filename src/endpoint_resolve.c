/* endpoint_resolve.c -- endpoints and socket addresses: resolving an
 * endpoint (getaddrinfo() for host names; a UNIX path needs none) and
 * naming an address numerically (sk_endpoint_from_addr()). */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netdb.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* Longest UNIX path or abstract name: sun_path less the NUL or the
 * abstract name's leading zero byte. */
#define UNIX_NAME_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)

static int unix_addr(const struct sk_endpoint *ep, struct sk_addr *addr)
{
    size_t len = sk__endpoint_path_length(ep);
    struct sockaddr_un *un = &addr->u.un;

    *addr = (struct sk_addr){0};
    un->sun_family = AF_UNIX;
    if (ep->path[0] == '@') {
        /* Abstract: a zero byte, then the name, with no terminator. */
        memcpy(un->sun_path + 1, ep->path + 1, len - 1);
        addr->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    } else {
        if (len > UNIX_NAME_MAX)
            return -ENAMETOOLONG;
        memcpy(un->sun_path, ep->path, len + 1);
        addr->len =
            (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
    }
    return 1;
}

static int eai_to_error(int eai)
{
    switch (eai) {
    case EAI_NONAME:
    case EAI_NODATA:
        return SK_EAI_NONAME;
    case EAI_AGAIN:
        return SK_EAI_AGAIN;
    case EAI_FAIL:
        return SK_EAI_FAIL;
    case EAI_FAMILY:
    case EAI_ADDRFAMILY:
        return SK_EAI_FAMILY;
    case EAI_MEMORY:
        return -ENOMEM;
    case EAI_SYSTEM:
        return -errno;
    default:
        return SK_EAI_OTHER;
    }
}

/* The wildcard address for "tcp://:PORT": [::] (made dual-stack by the
 * socket layer, which falls back to 0.0.0.0), or the scheme's family. */
static int any_addr(int family, uint16_t port, struct sk_addr *addr)
{
    *addr = (struct sk_addr){0};
    if (family == AF_INET) {
        addr->u.in.sin_family = AF_INET;
        addr->u.in.sin_port = htons(port);
        addr->u.in.sin_addr.s_addr = htonl(INADDR_ANY);
        addr->len = sizeof(addr->u.in);
    } else {
        addr->u.in6.sin6_family = AF_INET6;
        addr->u.in6.sin6_port = htons(port);
        addr->u.in6.sin6_addr = in6addr_any;
        addr->len = sizeof(addr->u.in6);
    }
    return 1;
}

static int inet_resolve(const struct sk_endpoint *ep, bool passive,
                        struct sk_addr *addrs, size_t max)
{
    struct addrinfo hints = {0}, *res, *ai;
    char port[8];
    size_t n = 0;
    int eai;

    if (ep->host[0] == '\0') {
        if (!passive)
            return -EDESTADDRREQ;
        return any_addr(sk_endpoint_family(ep), ep->port, addrs);
    }
    hints.ai_family = sk_endpoint_family(ep);
    hints.ai_socktype = sk_endpoint_socktype(ep);
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
    snprintf(port, sizeof(port), "%u", (unsigned)ep->port);
    eai = getaddrinfo(ep->host, port, &hints, &res);
    if (eai != 0)
        return eai_to_error(eai);
    for (ai = res; ai != NULL && n < max; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof(addrs[n].u))
            continue;
        addrs[n] = (struct sk_addr){.len = ai->ai_addrlen};
        memcpy(&addrs[n].u, ai->ai_addr, ai->ai_addrlen);
        n++;
    }
    freeaddrinfo(res);
    return n > 0 ? (int)n : SK_EAI_NONAME;
}

int sk_endpoint_resolve(const struct sk_endpoint *ep, bool passive,
                        struct sk_addr *addrs, size_t max)
{
    /* fd: and sd: name sockets that exist already: sk_server_listen()
     * adopts them, nothing resolves them. */
    if (max == 0 || sk__endpoint_inherited(ep))
        return -EINVAL;
    if (sk_endpoint_is_unix(ep))
        return unix_addr(ep, addrs);
    return inet_resolve(ep, passive, addrs, max);
}

static void unix_from_addr(struct sk_endpoint *ep, const struct sk_addr *addr)
{
    size_t off = offsetof(struct sockaddr_un, sun_path);
    size_t n = addr->len > off ? addr->len - off : 0;
    const char *p = addr->u.un.sun_path;

    if (n > UNIX_NAME_MAX + 1)
        n = UNIX_NAME_MAX + 1;
    if (n == 0) {
        ep->path[0] = '\0';
    } else if (p[0] == '\0') {
        /* Every byte of the name counts, NUL bytes too: "\0a\0b" must not
         * pass for the name "a". */
        ep->path[0] = '@';
        memcpy(ep->path + 1, p + 1, n - 1);
        ep->path[n] = '\0';
        if (memchr(p + 1, '\0', n - 1) != NULL)
            ep->path_len = (uint8_t)n;
    } else {
        /* A file whose name starts with '@' is not an abstract name. */
        bool at = p[0] == '@';
        n = strnlen(p, n);
        if (at && n + 2 <= UNIX_NAME_MAX)
            memcpy(ep->path, "./", 2);
        else
            at = false;
        memcpy(ep->path + (at ? 2 : 0), p, n);
        ep->path[n + (at ? 2 : 0)] = '\0';
    }
}

/* The numeric text of a6, with its zone ("fe80::1%eth0", or the index
 * when the interface has no name any more) when it has one. */
static void inet6_text(const struct sockaddr_in6 *a6, char *out, size_t size)
{
    char name[IF_NAMESIZE];
    size_t n;

    inet_ntop(AF_INET6, &a6->sin6_addr, out, (socklen_t)size);
    if (a6->sin6_scope_id == 0)
        return;
    n = strlen(out);
    if (if_indextoname(a6->sin6_scope_id, name) != NULL)
        snprintf(out + n, size - n, "%%%s", name);
    else
        snprintf(out + n, size - n, "%%%u", (unsigned)a6->sin6_scope_id);
}

/* The scheme that names addr: scheme itself, or the one of both families
 * where scheme is of the other one (an address a PROXY header gave, of
 * either family, on a tcp6:// or tcp4:// listener), as the parser refuses
 * tcp6://1.2.3.4:80 and tcp4://[::1]:80. */
static enum sk_scheme scheme_of_family(enum sk_scheme scheme,
                                       const struct sk_addr *addr)
{
    const struct in6_addr *a6 = &addr->u.in6.sin6_addr;
    bool v4 = addr->u.sa.sa_family == AF_INET ||
              (addr->u.sa.sa_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(a6));
    bool v6 = addr->u.sa.sa_family == AF_INET6 && !v4;

    switch (scheme) {
    case SK_TCP4:
    case SK_TCP6:
        return (scheme == SK_TCP4 ? v6 : v4) ? SK_TCP : scheme;
    case SK_UDP4:
    case SK_UDP6:
        return (scheme == SK_UDP4 ? v6 : v4) ? SK_UDP : scheme;
    case SK_MPTCP4:
    case SK_MPTCP6:
        return (scheme == SK_MPTCP4 ? v6 : v4) ? SK_MPTCP : scheme;
    default:
        return scheme;
    }
}

int sk_endpoint_from_addr(struct sk_endpoint *ep, enum sk_scheme scheme,
                          const struct sk_addr *addr)
{
    struct sk_endpoint tmp = {.scheme = scheme_of_family(scheme, addr)};
    const struct in6_addr *a6 = &addr->u.in6.sin6_addr;

    if (sk__endpoint_inherited(&tmp))
        return -EINVAL;

    switch (addr->u.sa.sa_family) {
    case AF_UNIX:
        unix_from_addr(&tmp, addr);
        break;
    case AF_INET:
        inet_ntop(AF_INET, &addr->u.in.sin_addr, tmp.host, sizeof(tmp.host));
        tmp.port = ntohs(addr->u.in.sin_port);
        break;
    case AF_INET6:
        /* A dual-stack socket sees IPv4 peers as ::ffff:a.b.c.d (the
         * scheme is not a 6-only one then: see above). */
        if (IN6_IS_ADDR_V4MAPPED(a6))
            inet_ntop(AF_INET, &a6->s6_addr[12], tmp.host, sizeof(tmp.host));
        else
            inet6_text(&addr->u.in6, tmp.host, sizeof(tmp.host));
        tmp.port = ntohs(addr->u.in6.sin6_port);
        break;
    default:
        return -EAFNOSUPPORT;
    }
    *ep = tmp;
    return 0;
}
