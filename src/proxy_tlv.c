/* proxy_tlv.c -- the TLVs of a whole PROXY v2 header that sockit checks:
 * PP2_TYPE_CRC32C, the checksum of the header (CRC32C, Castagnoli, over
 * every byte with the checksum's own four taken as zero). A header whose
 * checksum is wrong, or whose CRC32C TLV is not four bytes long, is
 * refused: a proxy that sends one asks for it to be verified. The other
 * TLVs are skipped (proxy.c has checked that they tile the header). */
#include <stdint.h>

#include "internal.h"

#define V2_FIXED 16
#define TLV_HEAD 3
#define TLV_CRC32C 0x03
#define CRC32C_POLY 0x82f63b78u /* reflected */

static uint32_t crc32c_table[256];
static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;

static void crc32c_fill(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ CRC32C_POLY : c >> 1;
        crc32c_table[i] = c;
    }
}

/* The CRC32C of b[0..n) with the four bytes at b[skip..skip + 4) as zero. */
static uint32_t crc32c_without(const unsigned char *b, size_t n, size_t skip)
{
    uint32_t c = 0xffffffffu;

    pthread_once(&crc32c_once, crc32c_fill);
    for (size_t i = 0; i < n; i++) {
        unsigned char byte = i - skip < 4 ? 0 : b[i];
        c = crc32c_table[(c ^ byte) & 0xffu] ^ (c >> 8);
    }
    return c ^ 0xffffffffu;
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           p[3];
}

const char *sk__proxy_v2_check_tlvs(const unsigned char *b, size_t off,
                                    size_t total)
{
    while (off + TLV_HEAD <= total) {
        size_t len = (size_t)b[off + 1] << 8 | b[off + 2];
        size_t value = off + TLV_HEAD;

        if (b[off] == TLV_CRC32C) {
            if (len != 4)
                return "v2 CRC32C TLV not 4 bytes long";
            if (crc32c_without(b, total, value) != get32(b + value))
                return "v2 CRC32C checksum mismatch";
        }
        off = value + len;
    }
    return NULL;
}
