/* access.c -- --allow and --deny: who a server serves.
 *
 * Rules are parsed once, before the server starts, into flat arrays by
 * kind (IPv4 blocks, IPv6 blocks, uids, gids) and by verdict; after that
 * they are only read, by every worker at once, without locks. A check
 * scans the few arrays of the peer's kind: no allocation, no parsing, a
 * mask and a compare per rule.
 *
 * Each rule speaks of one kind of peer: CIDR blocks of IP peers, uid: and
 * gid: of UNIX peers. An allow list names who is served, and nobody else
 * is, of whatever kind (fail closed): "--allow 10.0.0.0/8" on a server
 * that also listens on a UNIX socket refuses that socket's clients unless
 * a uid: or gid: rule lets them in.
 *
 * An IPv4 client is the same whatever socket it came through: an
 * IPv4-mapped IPv6 peer (::ffff:a.b.c.d, what a dual-stack [::] listener
 * sees of an IPv4 client) is checked as the IPv4 address, and an
 * IPv4-mapped rule (::ffff:10.0.0.0/104) is stored as the IPv4 block it
 * names (10.0.0.0/8). Other IPv6 rules, ::/0 included, match IPv6
 * clients only.
 *
 * A block whose address has bits set past the prefix ("10.0.0.1/8") is
 * refused rather than masked, as Python's ipaddress (strict) does: it is
 * either a typo of a host (/32) or of the network, and an access list is
 * no place to guess which. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Largest uid or gid a rule may name: (uid_t)-1 means "no id". */
#define ID_MAX 4294967294u

#define WHY_NOT_A_RULE "not an IP address, CIDR block, uid:N or gid:N"

/* An IPv4 block: the addresses a with (a & mask) == net. Both words hold
 * the bytes in network order as they lie in memory, as the peer's address
 * is read: no byte swapping on the way. */
struct cidr4 {
    uint32_t net, mask;
};

/* An IPv6 block, likewise as two words. */
struct cidr6 {
    uint64_t net[2], mask[2];
};

/* A growable array of n elements (of a size its user knows). */
struct vec {
    void *v;
    size_t n, cap;
};

/* The rules of one verdict, by kind. */
struct rules {
    struct vec v4;  /* struct cidr4 */
    struct vec v6;  /* struct cidr6, not IPv4-mapped */
    struct vec uid; /* uint32_t */
    struct vec gid; /* uint32_t */
};

struct sk_access {
    struct rules allow, deny;
};

/* What a rule can say of a peer: CIDR rules speak of IP peers, uid: and
 * gid: rules of UNIX ones. */
enum peer_kind { PEER_OTHER, PEER_IP, PEER_UNIX };

/* A peer as the rules see it. */
struct peer {
    enum peer_kind kind;
    int family; /* for PEER_IP: AF_INET (mapped ones too) or AF_INET6 */
    uint32_t v4;
    uint64_t v6[2];
    const struct sk_peer_cred *cred; /* for PEER_UNIX; may be NULL */
};

static int fail(const char **why, const char *msg)
{
    if (why != NULL)
        *why = msg;
    return -EINVAL;
}

/* ------------------------------------------------------------ building */

/* Room for one element more of size bytes at the end of vec: its address,
 * or NULL without memory. The caller fills it and counts it. */
static void *vec_push(struct vec *vec, size_t size)
{
    size_t cap = vec->cap > 0 ? vec->cap * 2 : 4;
    void *v;

    if (vec->n == vec->cap) {
        if (cap > SIZE_MAX / size)
            return NULL;
        v = realloc(vec->v, cap * size);
        if (v == NULL)
            return NULL;
        vec->v = v;
        vec->cap = cap;
    }
    return (char *)vec->v + vec->n * size;
}

/* The outcome of reading a decimal number. */
enum decimal { DEC_OK, DEC_EMPTY, DEC_NOT_DIGITS, DEC_LEADING_ZERO, DEC_RANGE };

/* Reads s, all of it, as a decimal number 0..max: digits only (no sign,
 * no space, no leading zero, which might be taken for octal). */
static enum decimal parse_decimal(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    size_t i;

    if (*s == '\0')
        return DEC_EMPTY;
    for (i = 0; s[i] != '\0'; i++)
        if (s[i] < '0' || s[i] > '9')
            return DEC_NOT_DIGITS;
    if (s[0] == '0' && i > 1)
        return DEC_LEADING_ZERO;
    for (i = 0; s[i] != '\0'; i++) {
        v = v * 10 + (uint64_t)(s[i] - '0');
        if (v > max)
            return DEC_RANGE;
    }
    *out = v;
    return DEC_OK;
}

/* The why of each failed decimal, for uid:, gid: and prefix lengths. */
struct decimal_why {
    const char *text[DEC_RANGE + 1];
};

static const struct decimal_why uid_why = {{
    [DEC_EMPTY] = "no number after uid:",
    [DEC_NOT_DIGITS] = "uid is not a decimal number",
    [DEC_LEADING_ZERO] = "uid with a leading zero",
    [DEC_RANGE] = "uid out of range 0..4294967294",
}};

static const struct decimal_why gid_why = {{
    [DEC_EMPTY] = "no number after gid:",
    [DEC_NOT_DIGITS] = "gid is not a decimal number",
    [DEC_LEADING_ZERO] = "gid with a leading zero",
    [DEC_RANGE] = "gid out of range 0..4294967294",
}};

static const struct decimal_why prefix4_why = {{
    [DEC_EMPTY] = "no prefix length after '/'",
    [DEC_NOT_DIGITS] = "prefix length is not a decimal number",
    [DEC_LEADING_ZERO] = "prefix length with a leading zero",
    [DEC_RANGE] = "prefix length out of range 0..32",
}};

static const struct decimal_why prefix6_why = {{
    [DEC_EMPTY] = "no prefix length after '/'",
    [DEC_NOT_DIGITS] = "prefix length is not a decimal number",
    [DEC_LEADING_ZERO] = "prefix length with a leading zero",
    [DEC_RANGE] = "prefix length out of range 0..128",
}};

/* "uid:N" or "gid:N", text being N. */
static int add_id(struct vec *ids, const char *text,
                  const struct decimal_why *w, const char **why)
{
    uint64_t id;
    enum decimal d = parse_decimal(text, ID_MAX, &id);
    uint32_t *slot;

    if (d != DEC_OK)
        return fail(why, w->text[d]);
    slot = vec_push(ids, sizeof(*slot));
    if (slot == NULL)
        return -ENOMEM;
    *slot = (uint32_t)id;
    ids->n++;
    return 0;
}

/* Fills the first n bytes of mask with prefix one bits, then zeros. */
static void make_mask(uint8_t *mask, size_t n, unsigned prefix)
{
    for (size_t i = 0; i < n; i++) {
        unsigned bits = prefix > 8 ? 8 : prefix;
        mask[i] = (uint8_t)(0xff00u >> bits);
        prefix -= bits;
    }
}

/* Whether addr has a bit set that mask clears. */
static bool host_bits(const uint8_t *addr, const uint8_t *mask, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (addr[i] & ~mask[i])
            return true;
    return false;
}

/* Stores a checked block of n bytes (4 or 16): as words, see struct
 * cidr4. */
static int push_block(struct rules *r, const uint8_t *addr, const uint8_t *mask,
                      size_t n)
{
    struct cidr4 *c4;
    struct cidr6 *c6;

    if (n == 4) {
        if ((c4 = vec_push(&r->v4, sizeof(*c4))) == NULL)
            return -ENOMEM;
        memcpy(&c4->net, addr, 4);
        memcpy(&c4->mask, mask, 4);
        r->v4.n++;
        return 0;
    }
    if ((c6 = vec_push(&r->v6, sizeof(*c6))) == NULL)
        return -ENOMEM;
    memcpy(c6->net, addr, 16);
    memcpy(c6->mask, mask, 16);
    r->v6.n++;
    return 0;
}

/* Whether the 16 bytes at a are an IPv4-mapped IPv6 address. */
static bool is_v4_mapped(const uint8_t *a)
{
    static const uint8_t mapped[12] = {[10] = 0xff, [11] = 0xff};

    return memcmp(a, mapped, sizeof(mapped)) == 0;
}

/* An address of n bytes (4 or 16) with its prefix length: the host bits
 * checked, an IPv4-mapped block of /96 or longer made the IPv4 block. */
static int add_block(struct rules *r, const uint8_t *addr, size_t n,
                     unsigned prefix, const char **why)
{
    uint8_t mask[16];

    make_mask(mask, n, prefix);
    if (host_bits(addr, mask, n))
        return fail(why, "host bits set past the prefix length");
    if (n == 16 && prefix >= 96 && is_v4_mapped(addr)) {
        make_mask(mask, 4, prefix - 96);
        return push_block(r, addr + 12, mask, 4);
    }
    return push_block(r, addr, mask, n);
}

/* Reads the len bytes at text as an IPv4 or IPv6 address, strictly as
 * inet_pton does (no zone, no brackets, no shorthand such as "10"), into
 * addr: returns its length, 4 or 16, or 0 for anything else. */
static size_t read_address(const char *text, size_t len, uint8_t *addr)
{
    char host[INET6_ADDRSTRLEN];

    if (len >= sizeof(host))
        return 0;
    memcpy(host, text, len);
    host[len] = '\0';
    if (inet_pton(AF_INET, host, addr) == 1)
        return 4;
    if (inet_pton(AF_INET6, host, addr) == 1)
        return 16;
    return 0;
}

/* "ADDR" or "ADDR/PREFIX", IPv4 or IPv6; the prefix decimal, at most the
 * address's bits. */
static int add_cidr(struct rules *r, const char *rule, const char **why)
{
    const char *slash = strchr(rule, '/');
    size_t len = slash != NULL ? (size_t)(slash - rule) : strlen(rule);
    uint8_t addr[16];
    uint64_t prefix;
    size_t n;
    enum decimal d;

    if (slash != NULL && strchr(slash + 1, '/') != NULL)
        return fail(why, "more than one '/'");
    if (slash != NULL && len == 0)
        return fail(why, "no address before '/'");
    if ((n = read_address(rule, len, addr)) == 0)
        return fail(why, slash != NULL ? "not an IP address before '/'"
                                       : WHY_NOT_A_RULE);
    prefix = n * 8;
    if (slash != NULL &&
        (d = parse_decimal(slash + 1, n * 8, &prefix)) != DEC_OK)
        return fail(why, (n == 4 ? &prefix4_why : &prefix6_why)->text[d]);
    return add_block(r, addr, n, (unsigned)prefix, why);
}

int sk_access_new(struct sk_access **ap)
{
    *ap = calloc(1, sizeof(**ap));
    return *ap != NULL ? 0 : -ENOMEM;
}

int sk_access_add(struct sk_access *a, bool allow, const char *rule,
                  const char **why)
{
    struct rules *r;

    if (a == NULL)
        return fail(why, "no access list");
    if (rule == NULL || *rule == '\0')
        return fail(why, "empty rule");
    r = allow ? &a->allow : &a->deny;
    if (strncmp(rule, "uid:", 4) == 0)
        return add_id(&r->uid, rule + 4, &uid_why, why);
    if (strncmp(rule, "gid:", 4) == 0)
        return add_id(&r->gid, rule + 4, &gid_why, why);
    return add_cidr(r, rule, why);
}

static void rules_free(struct rules *r)
{
    free(r->v4.v);
    free(r->v6.v);
    free(r->uid.v);
    free(r->gid.v);
}

void sk_access_free(struct sk_access *a)
{
    if (a == NULL)
        return;
    rules_free(&a->allow);
    rules_free(&a->deny);
    free(a);
}

/* ------------------------------------------------------------ matching */

/* Reads peer (its address and cred) the way the rules compare it. A
 * truncated address (len too short for its family) is PEER_OTHER. */
static void peer_read(struct peer *p, const struct sk_addr *peer,
                      const struct sk_peer_cred *cred)
{
    const struct in6_addr *a6;

    *p = (struct peer){.kind = PEER_OTHER};
    if (peer == NULL || peer->len < sizeof(sa_family_t))
        return;
    switch (peer->u.sa.sa_family) {
    case AF_INET:
        if (peer->len < sizeof(struct sockaddr_in))
            return;
        *p = (struct peer){.kind = PEER_IP, .family = AF_INET};
        memcpy(&p->v4, &peer->u.in.sin_addr, 4);
        return;
    case AF_INET6:
        if (peer->len < sizeof(struct sockaddr_in6))
            return;
        a6 = &peer->u.in6.sin6_addr;
        *p = (struct peer){.kind = PEER_IP, .family = AF_INET6};
        if (IN6_IS_ADDR_V4MAPPED(a6)) {
            p->family = AF_INET;
            memcpy(&p->v4, a6->s6_addr + 12, 4);
        } else {
            memcpy(p->v6, a6->s6_addr, 16);
        }
        return;
    case AF_UNIX:
        *p = (struct peer){.kind = PEER_UNIX, .cred = cred};
        return;
    default:
        return;
    }
}

static bool match_v4(const struct vec *vec, uint32_t a)
{
    const struct cidr4 *c = vec->v;

    for (size_t i = 0; i < vec->n; i++)
        if ((a & c[i].mask) == c[i].net)
            return true;
    return false;
}

static bool match_v6(const struct vec *vec, const uint64_t a[2])
{
    const struct cidr6 *c = vec->v;

    for (size_t i = 0; i < vec->n; i++)
        if ((a[0] & c[i].mask[0]) == c[i].net[0] &&
            (a[1] & c[i].mask[1]) == c[i].net[1])
            return true;
    return false;
}

static bool match_id(const struct vec *vec, uint32_t id)
{
    const uint32_t *ids = vec->v;

    for (size_t i = 0; i < vec->n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

/* Whether one of the rules r matches p. */
static bool rules_match(const struct rules *r, const struct peer *p)
{
    switch (p->kind) {
    case PEER_IP:
        return p->family == AF_INET ? match_v4(&r->v4, p->v4)
                                    : match_v6(&r->v6, p->v6);
    case PEER_UNIX:
        return p->cred != NULL && (match_id(&r->uid, p->cred->uid) ||
                                   match_id(&r->gid, p->cred->gid));
    default:
        return false;
    }
}

static bool rules_empty(const struct rules *r)
{
    return r->v4.n == 0 && r->v6.n == 0 && r->uid.n == 0 && r->gid.n == 0;
}

bool sk_access_permits(const struct sk_access *a, const struct sk_addr *peer,
                       const struct sk_peer_cred *cred)
{
    struct peer p;

    if (a == NULL)
        return true;
    peer_read(&p, peer, cred);
    if (rules_match(&a->deny, &p))
        return false;
    /* An allow list is a list of who is served: anyone else is not, of
     * whatever kind (fail closed). */
    return rules_empty(&a->allow) || rules_match(&a->allow, &p);
}
