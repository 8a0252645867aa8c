/* buf.c -- unit tests of src/buf.c: the byte buffer against a plain array
 * model, and the line splitter fed whole, split at every byte, and one byte
 * at a time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include <sockit.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------ sk_buf */

static void expect_contents(const struct sk_buf *b, const void *p, size_t n)
{
    assert_int_equal(b->len, n);
    assert_true(b->off + b->len <= b->cap);
    if (n > 0)
        assert_memory_equal(sk_buf_head(b), p, n);
}

static void test_buf_init_is_empty(void **state)
{
    struct sk_buf b;

    (void)state;
    memset(&b, 0x5a, sizeof(b));
    sk_buf_init(&b);
    assert_null(b.data);
    assert_int_equal(b.off, 0);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
}

static void test_buf_append_then_consume_keeps_exact_bytes(void **state)
{
    struct sk_buf b;

    (void)state;
    sk_buf_init(&b);
    assert_int_equal(sk_buf_append(&b, "hello", 5), 0);
    assert_int_equal(sk_buf_append(&b, " world", 6), 0);
    expect_contents(&b, "hello world", 11);
    sk_buf_consume(&b, 6);
    expect_contents(&b, "world", 5);
    assert_int_equal(sk_buf_append(&b, "!", 1), 0);
    expect_contents(&b, "world!", 6);
    sk_buf_consume(&b, 6);
    expect_contents(&b, "", 0);
    assert_int_equal(b.off, 0);
    sk_buf_release(&b);
}

static void test_buf_append_of_zero_bytes_allocates_nothing(void **state)
{
    struct sk_buf b;

    (void)state;
    sk_buf_init(&b);
    assert_int_equal(sk_buf_append(&b, NULL, 0), 0);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
}

/* Deterministic pseudo-random numbers (a 32-bit LCG). */
static uint32_t next_random(uint32_t *seed)
{
    *seed = *seed * 1664525u + 1013904223u;
    return *seed >> 8;
}

/* Random appends and consumes, checked against a flat array after each. */
static void test_buf_interleaved_appends_and_consumes_match_model(void **state)
{
    static char model[4 << 20];
    size_t head = 0, tail = 0;
    uint32_t seed = 42;
    struct sk_buf b;
    char chunk[3000];

    (void)state;
    sk_buf_init(&b);
    for (int step = 0; step < 2000; step++) {
        size_t n = next_random(&seed) % sizeof(chunk);

        if (next_random(&seed) % 2 == 0) {
            assert_true(tail + n <= sizeof(model));
            for (size_t i = 0; i < n; i++)
                chunk[i] = (char)next_random(&seed);
            assert_int_equal(sk_buf_append(&b, chunk, n), 0);
            memcpy(model + tail, chunk, n);
            tail += n;
        } else {
            n = n > tail - head ? tail - head : n;
            sk_buf_consume(&b, n);
            head += n;
        }
        expect_contents(&b, model + head, tail - head);
    }
    sk_buf_release(&b);
}

static void test_buf_grows_to_hold_large_append(void **state)
{
    static char big[100000];
    struct sk_buf b;

    (void)state;
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (char)(i * 7);
    sk_buf_init(&b);
    assert_int_equal(sk_buf_append(&b, "x", 1), 0);
    assert_int_equal(sk_buf_append(&b, big, sizeof(big)), 0);
    assert_true(b.cap >= sizeof(big) + 1);
    assert_int_equal(b.len, sizeof(big) + 1);
    assert_int_equal(sk_buf_head(&b)[0], 'x');
    assert_memory_equal(sk_buf_head(&b) + 1, big, sizeof(big));
    sk_buf_release(&b);
}

/* Fills b with n bytes 0, 1, 2... and consumes the first k. */
static void fill_and_consume(struct sk_buf *b, size_t n, size_t k)
{
    sk_buf_init(b);
    for (size_t i = 0; i < n; i++) {
        char c = (char)i;
        assert_int_equal(sk_buf_append(b, &c, 1), 0);
    }
    sk_buf_consume(b, k);
    assert_int_equal(b->off, k);
}

static void expect_counting_from(const struct sk_buf *b, size_t first)
{
    for (size_t i = 0; i < b->len; i++)
        assert_int_equal((unsigned char)sk_buf_head(b)[i],
                         (unsigned char)(first + i));
}

static void test_buf_reserve_compacts_in_place_when_room_after_off(void **state)
{
    struct sk_buf b;
    char *data;
    size_t cap;

    (void)state;
    fill_and_consume(&b, 200, 100);
    data = b.data;
    cap = b.cap;
    /* Not enough room at the end, enough once the consumed front goes. */
    assert_true(cap - b.off - b.len < cap - b.len);
    assert_int_equal(sk_buf_reserve(&b, cap - b.len), 0);
    assert_ptr_equal(b.data, data);
    assert_int_equal(b.cap, cap);
    assert_int_equal(b.off, 0);
    assert_int_equal(b.len, 100);
    expect_counting_from(&b, 100);
    sk_buf_release(&b);
}

static void test_buf_reserve_grows_and_compacts_when_off_positive(void **state)
{
    struct sk_buf b;

    (void)state;
    fill_and_consume(&b, 200, 150);
    assert_int_equal(sk_buf_reserve(&b, 5000), 0);
    assert_int_equal(b.off, 0);
    assert_true(b.cap - b.len >= 5000);
    assert_int_equal(b.len, 50);
    expect_counting_from(&b, 150);
    sk_buf_release(&b);
}

static void test_buf_reserve_with_room_changes_nothing(void **state)
{
    struct sk_buf b;
    struct sk_buf before;

    (void)state;
    fill_and_consume(&b, 10, 3);
    before = b;
    assert_int_equal(sk_buf_reserve(&b, b.cap - b.off - b.len), 0);
    assert_memory_equal(&b, &before, sizeof(b));
    sk_buf_release(&b);
}

/* The documented way to receive into a buffer: reserve, write at the tail,
 * then count the bytes. */
static void test_buf_reserve_then_write_at_tail(void **state)
{
    struct sk_buf b;

    (void)state;
    sk_buf_init(&b);
    assert_int_equal(sk_buf_append(&b, "ab", 2), 0);
    assert_int_equal(sk_buf_reserve(&b, 3), 0);
    memcpy(sk_buf_tail(&b), "cde", 3);
    b.len += 3;
    expect_contents(&b, "abcde", 5);
    sk_buf_release(&b);
}

static void test_buf_reserve_of_huge_size_is_enomem(void **state)
{
    struct sk_buf b;

    (void)state;
    fill_and_consume(&b, 10, 0);
    assert_int_equal(sk_buf_reserve(&b, SIZE_MAX), -ENOMEM);
    assert_int_equal(sk_buf_append(&b, "x", SIZE_MAX - 5), -ENOMEM);
    expect_counting_from(&b, 0);
    assert_int_equal(b.len, 10);
    sk_buf_release(&b);
}

static void test_buf_release_is_null_safe_and_repeatable(void **state)
{
    struct sk_buf b;

    (void)state;
    sk_buf_release(NULL);
    fill_and_consume(&b, 10, 2);
    sk_buf_release(&b);
    assert_null(b.data);
    assert_int_equal(b.off + b.len + b.cap, 0);
    sk_buf_release(&b);
    assert_int_equal(sk_buf_append(&b, "ok", 2), 0);
    expect_contents(&b, "ok", 2);
    sk_buf_release(&b);
}

/* ----------------------------------------------------------- sk_lines */

/* What a line callback saw: each line followed by '\n' (lines never hold
 * one), the count, and an optional line on which to return stop_with. */
struct seen {
    char text[4096];
    size_t len;
    int count;
    int stop_at; /* 1-based line number; 0: never */
    int stop_with;
};

static int record_line(void *ctx, const char *line, size_t len)
{
    struct seen *s = ctx;

    assert_true(s->len + len + 1 <= sizeof(s->text));
    assert_null(memchr(line, '\n', len));
    memcpy(s->text + s->len, line, len);
    s->len += len;
    s->text[s->len++] = '\n';
    s->count++;
    return s->count == s->stop_at ? s->stop_with : 0;
}

static void expect_seen(const struct seen *s, const char *text, int count)
{
    assert_int_equal(s->count, count);
    assert_int_equal(s->len, strlen(text));
    assert_memory_equal(s->text, text, s->len);
}

/* Feeds data in pieces cut at the given offsets (ascending, <= len). */
static int feed_cut(struct sk_lines *l, const char *data, size_t len,
                    const size_t *cuts, size_t ncuts, struct seen *s)
{
    size_t from = 0;
    int ret;

    for (size_t i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : len;
        ret = sk_lines_feed(l, data + from, to - from, record_line, s);
        if (ret != 0)
            return ret;
        from = to;
    }
    return 0;
}

/* A stream: its lines with their LF, then an unterminated tail. */
#define STREAM_LINES "hello\r\nworld\n\n  spaced  \n\r\nx\n"
#define STREAM_NLINES 6
#define STREAM_TAIL "last tail"
static const char stream[] = STREAM_LINES STREAM_TAIL;

static void test_lines_are_passed_without_lf_and_keep_cr(void **state)
{
    struct sk_lines l;
    struct seen s = {0};

    (void)state;
    sk_lines_init(&l, 100);
    assert_int_equal(sk_lines_feed(&l, "a\r\nbc\n\n", 7, record_line, &s), 0);
    expect_seen(&s, "a\r\nbc\n\n", 3);
    sk_lines_release(&l);
}

static void test_lines_split_at_every_byte_give_the_same_lines(void **state)
{
    size_t len = strlen(stream);

    (void)state;
    for (size_t cut = 0; cut <= len; cut++) {
        struct sk_lines l;
        struct seen s = {0};

        sk_lines_init(&l, 100);
        assert_int_equal(feed_cut(&l, stream, len, &cut, 1, &s), 0);
        expect_seen(&s, STREAM_LINES, STREAM_NLINES);
        assert_int_equal(sk_lines_finish(&l, record_line, &s), 0);
        expect_seen(&s, STREAM_LINES STREAM_TAIL "\n", STREAM_NLINES + 1);
        sk_lines_release(&l);
    }
}

static void
test_lines_split_at_every_pair_of_bytes_give_the_same_lines(void **state)
{
    size_t len = strlen(stream);

    (void)state;
    for (size_t a = 0; a <= len; a++) {
        for (size_t b = a; b <= len; b++) {
            size_t cuts[2] = {a, b};
            struct sk_lines l;
            struct seen s = {0};

            sk_lines_init(&l, 100);
            assert_int_equal(feed_cut(&l, stream, len, cuts, 2, &s), 0);
            expect_seen(&s, STREAM_LINES, STREAM_NLINES);
            sk_lines_release(&l);
        }
    }
}

static void test_lines_fed_one_byte_at_a_time_give_the_same_lines(void **state)
{
    struct sk_lines l;
    struct seen s = {0};

    (void)state;
    sk_lines_init(&l, 100);
    for (size_t i = 0; stream[i] != '\0'; i++)
        assert_int_equal(sk_lines_feed(&l, stream + i, 1, record_line, &s), 0);
    assert_int_equal(sk_lines_finish(&l, record_line, &s), 0);
    expect_seen(&s, STREAM_LINES STREAM_TAIL "\n", STREAM_NLINES + 1);
    sk_lines_release(&l);
}

static void test_lines_feed_of_zero_bytes_does_nothing(void **state)
{
    struct sk_lines l;
    struct seen s = {0};

    (void)state;
    sk_lines_init(&l, 4);
    assert_int_equal(sk_lines_feed(&l, "", 0, record_line, &s), 0);
    assert_int_equal(sk_lines_finish(&l, record_line, &s), 0);
    assert_int_equal(s.count, 0);
    sk_lines_release(&l);
}

/* Feeds the pieces (NULL-terminated) with max 5; returns the last result. */
static int feed_pieces_max5(const char *const *pieces, struct seen *s)
{
    struct sk_lines l;
    int ret = 0;

    sk_lines_init(&l, 5);
    for (size_t i = 0; pieces[i] != NULL && ret == 0; i++)
        ret = sk_lines_feed(&l, pieces[i], strlen(pieces[i]), record_line, s);
    sk_lines_release(&l);
    return ret;
}

static void test_lines_complete_line_of_exactly_max_is_passed(void **state)
{
    const char *const pieces[] = {"12345\n", NULL};
    struct seen s = {0};

    (void)state;
    assert_int_equal(feed_pieces_max5(pieces, &s), 0);
    expect_seen(&s, "12345\n", 1);
}

static void test_lines_complete_line_of_max_plus_one_is_emsgsize(void **state)
{
    const char *const pieces[] = {"123456\n", NULL};
    struct seen s = {0};

    (void)state;
    assert_int_equal(feed_pieces_max5(pieces, &s), -EMSGSIZE);
    assert_int_equal(s.count, 0);
}

static void test_lines_cr_counts_toward_max(void **state)
{
    const char *const ok[] = {"1234\r\n", NULL};
    const char *const too_long[] = {"12345\r\n", NULL};
    struct seen s = {0};

    (void)state;
    assert_int_equal(feed_pieces_max5(ok, &s), 0);
    expect_seen(&s, "1234\r\n", 1);
    assert_int_equal(feed_pieces_max5(too_long, &s), -EMSGSIZE);
    assert_int_equal(s.count, 1);
}

static void test_lines_partial_line_of_exactly_max_is_held(void **state)
{
    const char *const whole[] = {"12345", "\n", NULL};
    const char *const split[] = {"12", "3", "45", "\n", NULL};
    struct seen s = {0};

    (void)state;
    assert_int_equal(feed_pieces_max5(whole, &s), 0);
    assert_int_equal(feed_pieces_max5(split, &s), 0);
    expect_seen(&s, "12345\n12345\n", 2);
}

static void test_lines_partial_line_of_max_plus_one_is_emsgsize(void **state)
{
    const char *const unterminated[] = {"123456", NULL};
    const char *const grown[] = {"123", "456", NULL};
    const char *const completed[] = {"123", "456\n", NULL};
    struct seen s = {0};

    (void)state;
    assert_int_equal(feed_pieces_max5(unterminated, &s), -EMSGSIZE);
    assert_int_equal(feed_pieces_max5(grown, &s), -EMSGSIZE);
    assert_int_equal(feed_pieces_max5(completed, &s), -EMSGSIZE);
    assert_int_equal(s.count, 0);
}

static void test_lines_long_line_after_good_ones_is_emsgsize(void **state)
{
    const char *const pieces[] = {"ab\ncd\n123456\nef\n", NULL};
    struct seen s = {0};

    (void)state;
    assert_int_equal(feed_pieces_max5(pieces, &s), -EMSGSIZE);
    expect_seen(&s, "ab\ncd\n", 2);
}

static void test_lines_max_zero_accepts_only_empty_lines(void **state)
{
    struct sk_lines l;
    struct seen s = {0};

    (void)state;
    sk_lines_init(&l, 0);
    assert_int_equal(sk_lines_feed(&l, "\n\n", 2, record_line, &s), 0);
    expect_seen(&s, "\n\n", 2);
    assert_int_equal(sk_lines_feed(&l, "a", 1, record_line, &s), -EMSGSIZE);
    sk_lines_release(&l);
}

static void test_lines_callback_return_stops_feed_and_is_returned(void **state)
{
    struct sk_lines l;
    struct seen s = {.stop_at = 2, .stop_with = 7};

    (void)state;
    sk_lines_init(&l, 100);
    assert_int_equal(sk_lines_feed(&l, "a\nb\nc\n", 6, record_line, &s), 7);
    expect_seen(&s, "a\nb\n", 2);
    sk_lines_release(&l);
}

static void
test_lines_callback_return_on_completed_partial_is_returned(void **state)
{
    struct sk_lines l;
    struct seen s = {.stop_at = 1, .stop_with = -42};

    (void)state;
    sk_lines_init(&l, 100);
    assert_int_equal(sk_lines_feed(&l, "ab", 2, record_line, &s), 0);
    assert_int_equal(sk_lines_feed(&l, "c\nd\n", 4, record_line, &s), -42);
    expect_seen(&s, "abc\n", 1);
    sk_lines_release(&l);
}

static void test_lines_finish_passes_tail_once_then_nothing(void **state)
{
    struct sk_lines l;
    struct seen s = {0};

    (void)state;
    sk_lines_init(&l, 100);
    assert_int_equal(sk_lines_feed(&l, "one\ntw", 6, record_line, &s), 0);
    assert_int_equal(sk_lines_feed(&l, "o\r", 2, record_line, &s), 0);
    expect_seen(&s, "one\n", 1);
    assert_int_equal(sk_lines_finish(&l, record_line, &s), 0);
    expect_seen(&s, "one\ntwo\r\n", 2);
    assert_int_equal(sk_lines_finish(&l, record_line, &s), 0);
    expect_seen(&s, "one\ntwo\r\n", 2);
    sk_lines_release(&l);
}

static void test_lines_finish_without_tail_calls_nothing(void **state)
{
    struct sk_lines l;
    struct seen s = {0};

    (void)state;
    sk_lines_init(&l, 100);
    assert_int_equal(sk_lines_finish(&l, record_line, &s), 0);
    assert_int_equal(sk_lines_feed(&l, "x\n", 2, record_line, &s), 0);
    assert_int_equal(sk_lines_finish(&l, record_line, &s), 0);
    expect_seen(&s, "x\n", 1);
    sk_lines_release(&l);
}

static void test_lines_finish_returns_callback_value(void **state)
{
    struct sk_lines l;
    struct seen s = {.stop_at = 1, .stop_with = 3};

    (void)state;
    sk_lines_init(&l, 100);
    assert_int_equal(sk_lines_feed(&l, "tail", 4, record_line, &s), 0);
    assert_int_equal(sk_lines_finish(&l, record_line, &s), 3);
    assert_int_equal(sk_lines_finish(&l, record_line, &s), 0);
    expect_seen(&s, "tail\n", 1);
    sk_lines_release(&l);
}

/* Lines are usable again after a finish: the splitter starts afresh. */
static void test_lines_feed_after_finish_starts_a_new_line(void **state)
{
    struct sk_lines l;
    struct seen s = {0};

    (void)state;
    sk_lines_init(&l, 3);
    assert_int_equal(sk_lines_feed(&l, "abc", 3, record_line, &s), 0);
    assert_int_equal(sk_lines_finish(&l, record_line, &s), 0);
    assert_int_equal(sk_lines_feed(&l, "def\n", 4, record_line, &s), 0);
    expect_seen(&s, "abc\ndef\n", 2);
    sk_lines_release(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_init_is_empty),
        cmocka_unit_test(test_buf_append_then_consume_keeps_exact_bytes),
        cmocka_unit_test(test_buf_append_of_zero_bytes_allocates_nothing),
        cmocka_unit_test(test_buf_interleaved_appends_and_consumes_match_model),
        cmocka_unit_test(test_buf_grows_to_hold_large_append),
        cmocka_unit_test(
            test_buf_reserve_compacts_in_place_when_room_after_off),
        cmocka_unit_test(test_buf_reserve_grows_and_compacts_when_off_positive),
        cmocka_unit_test(test_buf_reserve_with_room_changes_nothing),
        cmocka_unit_test(test_buf_reserve_then_write_at_tail),
        cmocka_unit_test(test_buf_reserve_of_huge_size_is_enomem),
        cmocka_unit_test(test_buf_release_is_null_safe_and_repeatable),
        cmocka_unit_test(test_lines_are_passed_without_lf_and_keep_cr),
        cmocka_unit_test(test_lines_split_at_every_byte_give_the_same_lines),
        cmocka_unit_test(
            test_lines_split_at_every_pair_of_bytes_give_the_same_lines),
        cmocka_unit_test(test_lines_fed_one_byte_at_a_time_give_the_same_lines),
        cmocka_unit_test(test_lines_feed_of_zero_bytes_does_nothing),
        cmocka_unit_test(test_lines_complete_line_of_exactly_max_is_passed),
        cmocka_unit_test(test_lines_complete_line_of_max_plus_one_is_emsgsize),
        cmocka_unit_test(test_lines_cr_counts_toward_max),
        cmocka_unit_test(test_lines_partial_line_of_exactly_max_is_held),
        cmocka_unit_test(test_lines_partial_line_of_max_plus_one_is_emsgsize),
        cmocka_unit_test(test_lines_long_line_after_good_ones_is_emsgsize),
        cmocka_unit_test(test_lines_max_zero_accepts_only_empty_lines),
        cmocka_unit_test(test_lines_callback_return_stops_feed_and_is_returned),
        cmocka_unit_test(
            test_lines_callback_return_on_completed_partial_is_returned),
        cmocka_unit_test(test_lines_finish_passes_tail_once_then_nothing),
        cmocka_unit_test(test_lines_finish_without_tail_calls_nothing),
        cmocka_unit_test(test_lines_finish_returns_callback_value),
        cmocka_unit_test(test_lines_feed_after_finish_starts_a_new_line),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
