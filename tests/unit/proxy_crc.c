/* proxy_crc.c -- unit tests of src/proxy_tlv.c: a PROXY v2 header that
 * carries PP2_TYPE_CRC32C is believed only when the checksum is right.
 * The expected checksums are computed here bit by bit, an implementation
 * apart from the library's table, itself checked against the standard
 * check value of CRC-32C. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include <sockit.h>

#define WHY_CRC "v2 CRC32C checksum mismatch"
#define WHY_CRC_LEN "v2 CRC32C TLV not 4 bytes long"

/* IPv4, STREAM: 16 fixed bytes, 12 of addresses. */
#define ADDRS_END 28

static uint32_t crc32c_bitwise(const unsigned char *b, size_t n)
{
    uint32_t c = 0xffffffffu;

    for (size_t i = 0; i < n; i++) {
        c ^= b[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1u)));
    }
    return ~c;
}

static void put16(unsigned char *p, size_t v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

/* A v2 PROXY header 192.0.2.1:1234 -> 192.0.2.2:80 with a NOOP TLV of
 * noop bytes, then a CRC32C TLV of crc_len bytes (its value the right
 * checksum when crc_len is 4). Returns its length. */
static size_t header(unsigned char *b, size_t noop, size_t crc_len)
{
    static const unsigned char sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                          0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
    size_t n = ADDRS_END, crc_at;

    memcpy(b, sig, sizeof(sig));
    b[12] = 0x21;
    b[13] = 0x11;
    inet_pton(AF_INET, "192.0.2.1", b + 16);
    inet_pton(AF_INET, "192.0.2.2", b + 20);
    put16(b + 24, 1234);
    put16(b + 26, 80);
    b[n] = 0x04; /* PP2_TYPE_NOOP */
    put16(b + n + 1, noop);
    memset(b + n + 3, 'n', noop);
    n += 3 + noop;
    b[n] = 0x03; /* PP2_TYPE_CRC32C */
    put16(b + n + 1, crc_len);
    crc_at = n + 3;
    memset(b + crc_at, 0, crc_len);
    n = crc_at + crc_len;
    put16(b + 14, n - 16);
    if (crc_len == 4) {
        uint32_t crc = crc32c_bitwise(b, n);
        b[crc_at] = (unsigned char)(crc >> 24);
        b[crc_at + 1] = (unsigned char)(crc >> 16);
        b[crc_at + 2] = (unsigned char)(crc >> 8);
        b[crc_at + 3] = (unsigned char)crc;
    }
    return n;
}

/* Parses a heap copy of exactly n bytes (so that ASan sees any read past
 * them). */
static int parse(const unsigned char *b, size_t n, struct sk_proxy_header *h,
                 const char **why)
{
    unsigned char *copy = malloc(n);
    int r;

    assert_non_null(copy);
    memcpy(copy, b, n);
    r = sk_proxy_parse(copy, n, SK_PROXY_V2, h, why);
    free(copy);
    return r;
}

static void test_bitwise_crc32c_gives_the_check_value(void **state)
{
    (void)state;
    assert_int_equal(crc32c_bitwise((const unsigned char *)"123456789", 9),
                     0xe3069283u);
}

static void test_right_checksum_is_accepted(void **state)
{
    unsigned char b[600];
    struct sk_proxy_header h;

    (void)state;
    for (size_t noop = 0; noop <= 500; noop += 100) {
        size_t n = header(b, noop, 4);
        const char *why = NULL;
        assert_int_equal(parse(b, n, &h, &why), (int)n);
        assert_null(why);
        assert_false(h.local);
        assert_int_equal(ntohs(h.src.u.in.sin_port), 1234);
    }
}

static void test_every_changed_byte_is_refused(void **state)
{
    unsigned char b[64];
    struct sk_proxy_header h;
    size_t n = header(b, 3, 4);

    (void)state;
    /* Past the fixed part (whose changes fail for other reasons or change
     * the length), any bit flipped in addresses, TLVs or the checksum is
     * a mismatch. */
    for (size_t i = 16; i < n; i++) {
        if (i - ADDRS_END < 3 || i - (ADDRS_END + 6) < 3)
            continue; /* the TLVs' types and lengths (NOOP, then CRC32C) */
        for (int bit = 0; bit < 8; bit++) {
            const char *why = NULL;
            b[i] ^= (unsigned char)(1u << bit);
            assert_int_equal(parse(b, n, &h, &why), SK_EPROXY);
            assert_string_equal(why, WHY_CRC);
            b[i] ^= (unsigned char)(1u << bit);
        }
    }
    assert_int_equal(parse(b, n, &h, NULL), (int)n);
}

static void test_checksum_tlv_of_another_length_is_refused(void **state)
{
    unsigned char b[64];
    struct sk_proxy_header h;

    (void)state;
    for (size_t len = 0; len <= 8; len++) {
        const char *why = NULL;
        size_t n = header(b, 0, len);
        if (len == 4)
            continue;
        assert_int_equal(parse(b, n, &h, &why), SK_EPROXY);
        assert_string_equal(why, WHY_CRC_LEN);
    }
}

static void test_incomplete_header_still_asks_for_more(void **state)
{
    unsigned char b[64];
    struct sk_proxy_header h;
    size_t n = header(b, 2, 4);

    (void)state;
    b[n - 1] ^= 1; /* wrong, but only known once the header is whole */
    for (size_t k = 0; k < n; k++)
        assert_int_equal(parse(b, k, &h, NULL), 0);
    assert_int_equal(parse(b, n, &h, NULL), SK_EPROXY);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bitwise_crc32c_gives_the_check_value),
        cmocka_unit_test(test_right_checksum_is_accepted),
        cmocka_unit_test(test_every_changed_byte_is_refused),
        cmocka_unit_test(test_checksum_tlv_of_another_length_is_refused),
        cmocka_unit_test(test_incomplete_header_still_asks_for_more),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
