/* hash.h -- the keyed hash of the library's and the command's tables;
 * never installed. */
#ifndef SOCKIT_HASH_H
#define SOCKIT_HASH_H

#include <stddef.h>
#include <stdint.h>

/* SipHash-1-3 of data[0..len) under the 128-bit key (k[0], k[1]): the
 * first and last 8 key bytes read little-endian. */
uint64_t sk__siphash13(const uint64_t k[2], const void *data, size_t len);

#endif
