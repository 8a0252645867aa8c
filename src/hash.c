/* hash.c -- SipHash-1-3, a keyed hash for tables whose keys a peer
 * chooses (source addresses): with a random key, no peer can pick keys
 * that collide. */
#include "hash.h"

static uint64_t rotl(uint64_t x, unsigned b)
{
    return (x << b) | (x >> (64 - b));
}

static void sip_round(uint64_t v[4])
{
    v[0] += v[1];
    v[1] = rotl(v[1], 13) ^ v[0];
    v[0] = rotl(v[0], 32);
    v[2] += v[3];
    v[3] = rotl(v[3], 16) ^ v[2];
    v[0] += v[3];
    v[3] = rotl(v[3], 21) ^ v[0];
    v[2] += v[1];
    v[1] = rotl(v[1], 17) ^ v[2];
    v[2] = rotl(v[2], 32);
}

/* n (< 8) bytes at p as a little-endian word, ORed into w. */
static uint64_t load_le(const uint8_t *p, size_t n, uint64_t w)
{
    for (size_t i = 0; i < n; i++)
        w |= (uint64_t)p[i] << (8 * i);
    return w;
}

/* Absorbs one message word: one compression round (the "1" of 1-3). */
static void sip_absorb(uint64_t v[4], uint64_t m)
{
    v[3] ^= m;
    sip_round(v);
    v[0] ^= m;
}

uint64_t sk__siphash13(const uint64_t k[2], const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t v[4] = {k[0] ^ 0x736f6d6570736575ull, k[1] ^ 0x646f72616e646f6dull,
                     k[0] ^ 0x6c7967656e657261ull,
                     k[1] ^ 0x7465646279746573ull};
    size_t left = len;

    for (; left >= 8; p += 8, left -= 8)
        sip_absorb(v, load_le(p, 8, 0));
    /* The last word: the remaining bytes, the length's low byte on top. */
    sip_absorb(v, load_le(p, left, (uint64_t)len << 56));
    v[2] ^= 0xff;
    for (int i = 0; i < 3; i++) /* the "3": finalization rounds */
        sip_round(v);
    return v[0] ^ v[1] ^ v[2] ^ v[3];
}
