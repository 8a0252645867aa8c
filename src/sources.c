/* sources.c -- concurrent connections per source, for max_per_source.
 *
 * Every worker takes a count on accept and puts it back on close, all at
 * once, so the table is split in STRIPES independent hash tables, each
 * behind its own lock and on its own cache lines: two workers contend only
 * when their keys hash to one stripe. Each stripe is an open-addressing
 * table (linear probing, slots inline, no allocation per key) that holds
 * the keys with a count above zero only: an entry goes when its count
 * does, and a stripe shrinks as it empties, so memory follows the sources
 * connected now, not every source ever seen. The hash is SipHash-1-3
 * under a key drawn from getrandom() per table: a client that can choose
 * its addresses (an IPv6 /64 holds many) cannot aim them at one slot. */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/un.h>

#include "hash.h"
#include "sources.h"

/* Independent locks (a power of two); more than workers ever run. */
#define STRIPES 64
/* Slots of a stripe when it first holds a key (a power of two). */
#define STRIPE_MIN 8
/* Largest stripe: far beyond the descriptors a process may hold. */
#define STRIPE_MAX (1u << 30)
#define CACHE_LINE 64

_Static_assert(sizeof(struct sk_source_key) == 18, "key without padding");

/* A slot of a stripe: empty when count is 0. hash is the key's (low
 * bits), kept to skip most comparisons and to move slots without hashing
 * again. */
struct slot {
    struct sk_source_key key;
    uint32_t count;
    uint32_t hash;
};

/* One stripe: a table of cap slots (0 or a power of two), n of them used,
 * at most half, so that every probe meets an empty slot soon. */
struct stripe {
    _Alignas(CACHE_LINE) pthread_mutex_t lock;
    struct slot *slots;
    uint32_t cap, n;
};

struct sk_sources {
    uint64_t key[2];
    struct stripe stripes[STRIPES];
};

/* ---------------------------------------------------------------- keys */

bool sk__source_key(struct sk_source_key *key, const struct sk_addr *peer,
                    const struct sk_peer_cred *cred)
{
    const uint8_t *a6;

    memset(key, 0, sizeof(*key));
    if (peer == NULL)
        return false;
    switch (peer->u.sa.sa_family) {
    case AF_INET:
        key->family = AF_INET;
        memcpy(key->addr, &peer->u.in.sin_addr, 4);
        return true;
    case AF_INET6:
        a6 = peer->u.in6.sin6_addr.s6_addr;
        if (IN6_IS_ADDR_V4MAPPED(&peer->u.in6.sin6_addr)) {
            key->family = AF_INET;
            memcpy(key->addr, a6 + 12, 4);
        } else {
            key->family = AF_INET6;
            memcpy(key->addr, a6, 16);
        }
        return true;
    case AF_UNIX:
        if (cred == NULL)
            return false;
        key->family = AF_UNIX;
        memcpy(key->addr, &cred->uid, sizeof(cred->uid));
        return true;
    default:
        return false;
    }
}

static uint64_t key_hash(const struct sk_sources *t,
                         const struct sk_source_key *key)
{
    return sk__siphash13(t->key, key, sizeof(*key));
}

/* The stripe of a hash: its top bits (the low ones pick the slot). */
static struct stripe *stripe_of(struct sk_sources *t, uint64_t hash)
{
    return &t->stripes[hash >> 58];
}

_Static_assert(STRIPES == 1 << (64 - 58), "stripe_of takes 6 bits");

/* ------------------------------------------------------------- stripes */

/* The slot holding key, or else the empty slot where it would go. The
 * stripe has slots (cap > 0), at least one of them empty. */
static struct slot *probe(const struct stripe *s,
                          const struct sk_source_key *key, uint32_t hash)
{
    uint32_t mask = s->cap - 1;

    for (uint32_t i = hash & mask;; i = (i + 1) & mask) {
        struct slot *sl = &s->slots[i];
        if (sl->count == 0)
            return sl;
        if (sl->hash == hash && memcmp(&sl->key, key, sizeof(*key)) == 0)
            return sl;
    }
}

/* Moves the used slots into a table of cap slots. On failure (no
 * memory) the stripe is unchanged. */
static int resize(struct stripe *s, uint32_t cap)
{
    struct slot *old = s->slots, *slots = calloc(cap, sizeof(*slots));
    uint32_t oldcap = s->cap;

    if (slots == NULL)
        return -ENOMEM;
    s->slots = slots;
    s->cap = cap;
    for (uint32_t i = 0; i < oldcap; i++)
        if (old[i].count > 0)
            *probe(s, &old[i].key, old[i].hash) = old[i];
    free(old);
    return 0;
}

/* Empties slot i, then moves back each slot of the run after it that a
 * probe could no longer reach: one whose home (hash) lies cyclically at
 * or before the hole, so that the run from its home to it has no gap
 * (deletion without tombstones, which would fill the table over time). */
static void erase(struct stripe *s, uint32_t i)
{
    uint32_t mask = s->cap - 1, home;

    for (uint32_t j = (i + 1) & mask; s->slots[j].count > 0;
         j = (j + 1) & mask) {
        home = s->slots[j].hash & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            s->slots[i] = s->slots[j];
            i = j;
        }
    }
    s->slots[i].count = 0;
}

static int stripe_take(struct stripe *s, const struct sk_source_key *key,
                       uint32_t hash, unsigned max)
{
    struct slot *sl = s->cap > 0 ? probe(s, key, hash) : NULL;

    if (sl != NULL && sl->count > 0) {
        if (sl->count >= max)
            return SK_EREFUSED;
        sl->count++;
        return 0;
    }
    if (max == 0)
        return SK_EREFUSED;
    /* A new key: keep the table at most half full. */
    if ((s->n + 1) * 2 > s->cap) {
        if (s->cap >= STRIPE_MAX)
            return -ENOMEM;
        if (resize(s, s->cap > 0 ? s->cap * 2 : STRIPE_MIN) < 0)
            return -ENOMEM;
        sl = probe(s, key, hash);
    }
    *sl = (struct slot){.key = *key, .count = 1, .hash = hash};
    s->n++;
    return 0;
}

static void stripe_put(struct stripe *s, const struct sk_source_key *key,
                       uint32_t hash)
{
    struct slot *sl;

    if (s->cap == 0)
        return;
    sl = probe(s, key, hash);
    if (sl->count == 0 || --sl->count > 0)
        return;
    erase(s, (uint32_t)(sl - s->slots));
    s->n--;
    /* Under an eighth full: halve (a failure keeps the larger table). */
    if (s->cap > STRIPE_MIN && s->n * 8 < s->cap)
        (void)resize(s, s->cap / 2);
}

/* --------------------------------------------------------------- table */

struct sk_sources *sk__sources_new(void)
{
    struct sk_sources *t;
    ssize_t got;

    /* A multiple of CACHE_LINE, as aligned_alloc wants. */
    _Static_assert(sizeof(struct sk_sources) % CACHE_LINE == 0, "size");
    t = aligned_alloc(CACHE_LINE, sizeof(*t));
    if (t == NULL)
        return NULL;
    memset(t, 0, sizeof(*t));
    do
        got = getrandom(t->key, sizeof(t->key), 0);
    while (got < 0 && errno == EINTR);
    if (got != (ssize_t)sizeof(t->key)) {
        free(t);
        return NULL;
    }
    for (size_t i = 0; i < STRIPES; i++)
        pthread_mutex_init(&t->stripes[i].lock, NULL);
    return t;
}

void sk__sources_free(struct sk_sources *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < STRIPES; i++) {
        pthread_mutex_destroy(&t->stripes[i].lock);
        free(t->stripes[i].slots);
    }
    free(t);
}

int sk__sources_take(struct sk_sources *t, const struct sk_source_key *key,
                     unsigned max)
{
    uint64_t hash = key_hash(t, key);
    struct stripe *s = stripe_of(t, hash);
    int ret;

    pthread_mutex_lock(&s->lock);
    ret = stripe_take(s, key, (uint32_t)hash, max);
    pthread_mutex_unlock(&s->lock);
    return ret;
}

void sk__sources_put(struct sk_sources *t, const struct sk_source_key *key)
{
    uint64_t hash = key_hash(t, key);
    struct stripe *s = stripe_of(t, hash);

    pthread_mutex_lock(&s->lock);
    stripe_put(s, key, (uint32_t)hash);
    pthread_mutex_unlock(&s->lock);
}

unsigned sk__sources_count(struct sk_sources *t,
                           const struct sk_source_key *key)
{
    uint64_t hash = key_hash(t, key);
    struct stripe *s = stripe_of(t, hash);
    unsigned count = 0;

    pthread_mutex_lock(&s->lock);
    if (s->cap > 0)
        count = probe(s, key, (uint32_t)hash)->count;
    pthread_mutex_unlock(&s->lock);
    return count;
}

size_t sk__sources_size(struct sk_sources *t)
{
    size_t n = 0;

    for (size_t i = 0; i < STRIPES; i++) {
        pthread_mutex_lock(&t->stripes[i].lock);
        n += t->stripes[i].n;
        pthread_mutex_unlock(&t->stripes[i].lock);
    }
    return n;
}
