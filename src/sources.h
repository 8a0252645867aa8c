/* sources.h -- concurrent connections per source, for max_per_source;
 * internal, never installed. One table per server, shared by every worker
 * thread: each call locks only the stripe its key hashes to. */
#ifndef SOCKIT_SOURCES_H
#define SOCKIT_SOURCES_H

#include <stddef.h>
#include <stdint.h>

#include "hash.h"
#include "internal.h"

/* Who a connection comes from, in a fixed size that compares with memcmp:
 * family AF_INET (4 bytes of addr: the IPv4 address, IPv4-mapped IPv6 ones
 * included), AF_INET6 (16 bytes) or AF_UNIX (the peer's uid in the first
 * 4 bytes); the bytes not used are zero. */
struct sk_source_key {
    sa_family_t family;
    uint8_t addr[16];
};

struct sk_sources;

/* An empty table, with a fresh random hash key. NULL without memory (or
 * without the kernel's random bytes). */
struct sk_sources *sk__sources_new(void);
/* NULL-safe; no thread may be using the table any more. */
void sk__sources_free(struct sk_sources *t);

/* Fills *key with the source of peer: an IPv4 or IPv6 address (without
 * the port; an IPv4-mapped IPv6 one as the IPv4 address, so that a client
 * counts once whether it came through a dual-stack listener or not), or
 * for a UNIX peer the uid in cred. Returns false for a peer that is not
 * limited: a UNIX peer without credentials, another family, peer NULL. */
bool sk__source_key(struct sk_source_key *key, const struct sk_addr *peer,
                    const struct sk_peer_cred *cred);

/* Counts one connection more from key if it holds fewer than max (so max
 * 0 refuses all: callers skip the table when there is no limit). Returns
 * 0, SK_EREFUSED (the count unchanged), or -ENOMEM. Thread-safe. */
int sk__sources_take(struct sk_sources *t, const struct sk_source_key *key,
                     unsigned max);
/* Counts one connection less from key, which a successful take gave; the
 * entry goes at zero. A key not held is ignored. Thread-safe. */
void sk__sources_put(struct sk_sources *t, const struct sk_source_key *key);

/* For tests and metrics: the count held for key (0 when absent), and the
 * number of keys held at all. Thread-safe (sk__sources_size locks each
 * stripe in turn: not a snapshot while others take and put). */
unsigned sk__sources_count(struct sk_sources *t,
                           const struct sk_source_key *key);
size_t sk__sources_size(struct sk_sources *t);

#endif
