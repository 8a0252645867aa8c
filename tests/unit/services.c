/* services.c -- unit tests of the pure parts of the services: the RFC 864
 * chargen pattern, the RFC 868 clock and the ctime clock, and the service
 * table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>
#include <time.h>

#include "services/services.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------ chargen */

/* The first line as RFC 864 prints it. */
static const char first_line[] =
    "!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefgh"
    "\r\n";

#define RING 95 /* the printable characters 0x20..0x7E */
#define REF_CYCLES 4
static char ref[REF_CYCLES * 95 * 74];

/* The reference stream, built from the RFC's rule alone: line i is the 72
 * characters from ring index (1 + i) mod 95, then CRLF. */
static int build_reference(void **state)
{
    char ring[RING];
    size_t lines = sizeof(ref) / 74;

    (void)state;
    for (int c = 0x20; c <= 0x7e; c++)
        ring[c - 0x20] = (char)c;
    for (size_t i = 0; i < lines; i++) {
        char *p = ref + i * 74;
        for (size_t col = 0; col < 72; col++)
            p[col] = ring[(1 + i + col) % RING];
        p[72] = '\r';
        p[73] = '\n';
    }
    return 0;
}

static void test_chargen_constants_match_rfc_864(void **state)
{
    (void)state;
    assert_int_equal(CHARGEN_LINE, 74);
    assert_int_equal(CHARGEN_CYCLE, 95 * 74);
    assert_int_equal(sizeof(first_line) - 1, 74);
}

static void test_chargen_first_line_is_the_rfc_864_line(void **state)
{
    char out[74];

    (void)state;
    assert_memory_equal(ref, first_line, 74);
    chargen_fill(out, sizeof(out), 0);
    assert_memory_equal(out, first_line, 74);
}

static char line_start(size_t line)
{
    char c;

    chargen_fill(&c, 1, line * CHARGEN_LINE);
    return c;
}

static void test_chargen_lines_shift_by_one_and_wrap(void **state)
{
    (void)state;
    assert_int_equal(line_start(0), '!');
    assert_int_equal(line_start(1), '"');
    assert_int_equal(line_start(93), '~');
    assert_int_equal(line_start(94), ' ');
    assert_int_equal(line_start(95), '!');
}

static void test_chargen_every_line_ends_with_crlf(void **state)
{
    (void)state;
    for (size_t line = 0; line < 2 * 95; line++) {
        char end[2];
        chargen_fill(end, 2, line * CHARGEN_LINE + 72);
        assert_memory_equal(end, "\r\n", 2);
    }
}

static void test_chargen_repeats_with_period_95_lines(void **state)
{
    char a[300], b[300];

    (void)state;
    for (size_t pos = 0; pos < CHARGEN_CYCLE; pos += 41) {
        chargen_fill(a, sizeof(a), pos);
        chargen_fill(b, sizeof(b), pos + CHARGEN_CYCLE);
        assert_memory_equal(a, b, sizeof(a));
        chargen_fill(b, sizeof(b), pos + 7 * (size_t)CHARGEN_CYCLE);
        assert_memory_equal(a, b, sizeof(a));
    }
}

/* Fills len bytes at pos and compares with the reference slice. */
static void expect_slice(size_t pos, size_t len)
{
    static char out[sizeof(ref)];
    size_t start = pos % CHARGEN_CYCLE;

    assert_true(start + len <= sizeof(ref));
    memset(out, 0, len);
    chargen_fill(out, len, pos);
    if (memcmp(out, ref + start, len) != 0)
        fail_msg("chargen_fill(len %zu, pos %zu) differs from the reference",
                 len, pos);
}

static void test_chargen_fill_at_any_offset_slices_the_stream(void **state)
{
    static const size_t lens[] = {0,
                                  1,
                                  73,
                                  74,
                                  75,
                                  4096,
                                  CHARGEN_CYCLE - 1,
                                  CHARGEN_CYCLE,
                                  CHARGEN_CYCLE + 1,
                                  2 * CHARGEN_CYCLE + 10};

    (void)state;
    for (size_t pos = 0; pos < CHARGEN_CYCLE + 200; pos += 13)
        for (size_t i = 0; i < ARRAY_LEN(lens); i++)
            expect_slice(pos, lens[i]);
    expect_slice(SIZE_MAX, 1000);
    expect_slice(SIZE_MAX - 12345, 3 * CHARGEN_CYCLE);
}

static void test_chargen_consecutive_fills_join_seamlessly(void **state)
{
    char joined[3 * CHARGEN_CYCLE];
    size_t pos = 0;

    (void)state;
    for (size_t n = 1; pos < sizeof(joined); n = n * 3 + 1) {
        size_t len = n < sizeof(joined) - pos ? n : sizeof(joined) - pos;
        chargen_fill(joined + pos, len, pos);
        pos += len;
    }
    assert_memory_equal(joined, ref, sizeof(joined));
}

/* -------------------------------------------------------------- clock */

static void test_clock_rfc868_of_unix_epoch_is_2208988800(void **state)
{
    (void)state;
    assert_int_equal(clock_rfc868(0), 2208988800u);
}

static void test_clock_rfc868_adds_the_1900_offset(void **state)
{
    (void)state;
    assert_int_equal(clock_rfc868(1700000000), 3908988800u);
    assert_int_equal(clock_rfc868(1), 2208988801u);
    assert_int_equal(clock_rfc868(-2208988800LL), 0);
}

static void test_clock_rfc868_wraps_modulo_2_pow_32(void **state)
{
    (void)state;
    assert_int_equal(clock_rfc868(2085978495), 4294967295u);
    assert_int_equal(clock_rfc868(2085978496), 0);
    assert_int_equal(clock_rfc868(2085978497), 1);
    assert_int_equal(clock_rfc868(2085978496LL + 4294967296LL + 5), 5);
}

static void test_clock_rfc868_bytes_are_big_endian(void **state)
{
    unsigned char out[4];

    (void)state;
    clock_rfc868_bytes(0, out);
    assert_memory_equal(out, "\x83\xaa\x7e\x80", 4);
    clock_rfc868_bytes(1700000000, out);
    assert_memory_equal(out, "\xe8\xfe\x6f\x80", 4); /* 3908988800 */
    clock_rfc868_bytes(2085978496, out);
    assert_memory_equal(out, "\0\0\0\0", 4);
    clock_rfc868_bytes(2085978496 + 0x01020304, out);
    assert_memory_equal(out, "\x01\x02\x03\x04", 4);
}

/* Reads clock_ctime_now() between two time() calls that agree, so the
 * expected text is known; a second boundary in between means try again. */
static void test_clock_ctime_now_matches_ctime_without_newline(void **state)
{
    (void)state;
    for (int attempt = 0; attempt < 5; attempt++) {
        char want[32];
        time_t before = time(NULL);
        const char *got = clock_ctime_now();
        time_t after = time(NULL);

        assert_non_null(got);
        assert_int_equal(strlen(got), CTIME_LEN);
        if (before != after)
            continue;
        assert_non_null(ctime_r(&before, want));
        assert_int_equal(strlen(want), CTIME_LEN + 1);
        assert_int_equal(want[CTIME_LEN], '\n');
        want[CTIME_LEN] = '\0';
        assert_string_equal(got, want);
        return;
    }
    fail_msg("the second changed during every attempt");
}

/* ----------------------------------------------------------- services */

static void test_service_find_finds_echo(void **state)
{
    const struct service *svc = service_find("echo");

    (void)state;
    assert_non_null(svc);
    assert_ptr_equal(svc, &service_echo);
    assert_string_equal(svc->name, "echo");
}

static void test_service_find_of_unknown_name_is_null(void **state)
{
    (void)state;
    assert_null(service_find("nope"));
    assert_null(service_find(""));
    assert_null(service_find("ECHO"));
    assert_null(service_find("exec")); /* not nameable with -s */
}

static void test_service_find_finds_every_listed_service(void **state)
{
    size_t n = 0;

    (void)state;
    for (size_t i = 0; services[i] != NULL; i++, n++) {
        assert_ptr_equal(service_find(services[i]->name), services[i]);
        assert_non_null(services[i]->summary);
        assert_non_null(services[i]->handler);
    }
    assert_int_equal(n, 7);
}

static void test_service_kinds_follow_handlers(void **state)
{
    (void)state;
    assert_false(service_has_dgram(&service_chat));
    assert_true(service_has_stream(&service_chat));
    assert_true(service_has_dgram(&service_echo));
    assert_true(service_has_dgram(&service_chargen));
    assert_true(service_has_stream(&service_chargen));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chargen_constants_match_rfc_864),
        cmocka_unit_test(test_chargen_first_line_is_the_rfc_864_line),
        cmocka_unit_test(test_chargen_lines_shift_by_one_and_wrap),
        cmocka_unit_test(test_chargen_every_line_ends_with_crlf),
        cmocka_unit_test(test_chargen_repeats_with_period_95_lines),
        cmocka_unit_test(test_chargen_fill_at_any_offset_slices_the_stream),
        cmocka_unit_test(test_chargen_consecutive_fills_join_seamlessly),
        cmocka_unit_test(test_clock_rfc868_of_unix_epoch_is_2208988800),
        cmocka_unit_test(test_clock_rfc868_adds_the_1900_offset),
        cmocka_unit_test(test_clock_rfc868_wraps_modulo_2_pow_32),
        cmocka_unit_test(test_clock_rfc868_bytes_are_big_endian),
        cmocka_unit_test(test_clock_ctime_now_matches_ctime_without_newline),
        cmocka_unit_test(test_service_find_finds_echo),
        cmocka_unit_test(test_service_find_of_unknown_name_is_null),
        cmocka_unit_test(test_service_find_finds_every_listed_service),
        cmocka_unit_test(test_service_kinds_follow_handlers),
    };

    return cmocka_run_group_tests(tests, build_reference, NULL);
}
