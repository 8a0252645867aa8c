/* lines.c -- unit tests of the pause of sk_lines (src/buf.c): a callback
 * that pauses at every line in turn, resumes one line at a time, feeds
 * while paused, limits across a pause, and finish while paused. The
 * splitting itself is tested in buf.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include <sockit.h>

/* What the callback saw: each line followed by '\n'. It pauses on the
 * lines numbered pause_at (1-based) or, with pause_every, on every line. */
struct seen {
    char text[4096];
    size_t len;
    int count;
    int pause_at;
    bool pause_every;
    const char *from, *to; /* where lines must come from, when set */
};

static int record_line(void *ctx, const char *line, size_t len)
{
    struct seen *s = ctx;

    assert_true(s->len + len + 1 <= sizeof(s->text));
    assert_null(memchr(line, '\n', len));
    if (s->from != NULL) {
        assert_true(line >= s->from);
        assert_true(line + len <= s->to);
    }
    memcpy(s->text + s->len, line, len);
    s->len += len;
    s->text[s->len++] = '\n';
    s->count++;
    if (s->pause_every || s->count == s->pause_at)
        return SK_LINES_PAUSE;
    return 0;
}

static void expect_seen(const struct seen *s, const char *text, int count)
{
    assert_int_equal(s->count, count);
    assert_int_equal(s->len, strlen(text));
    assert_memory_equal(s->text, text, s->len);
}

/* The lines of the stream with their LF, then an unterminated tail. */
#define STREAM_LINES "hello\r\nworld\n\n  spaced  \n\r\nx\n"
#define STREAM_NLINES 6
#define STREAM_TAIL "last tail"
static const char stream[] = STREAM_LINES STREAM_TAIL;

/* Resumes until the splitter is no longer paused; returns the resumes. */
static int resume_all(struct sk_lines *l, struct seen *s)
{
    int ret, n = 0;

    while (sk_lines_paused(l)) {
        ret = sk_lines_resume(l, record_line, s);
        assert_true(ret == 0 || ret == SK_LINES_PAUSE);
        assert_int_equal(ret == SK_LINES_PAUSE, sk_lines_paused(l));
        n++;
    }
    return n;
}

/* Every cut of the stream in two feeds, with a pause on every line in
 * turn: the lines come out once each, in order, whatever the pause. */
static void test_pause_at_every_line_and_every_cut(void **state)
{
    size_t len = strlen(stream);

    (void)state;
    for (int at = 1; at <= STREAM_NLINES + 1; at++) {
        for (size_t cut = 0; cut <= len; cut++) {
            struct sk_lines l;
            struct seen s = {.pause_at = at};
            int ret;

            sk_lines_init(&l, 100);
            ret = sk_lines_feed(&l, stream, cut, record_line, &s);
            if (ret == SK_LINES_PAUSE)
                resume_all(&l, &s);
            else
                assert_int_equal(ret, 0);
            ret = sk_lines_feed(&l, stream + cut, len - cut, record_line, &s);
            if (ret == SK_LINES_PAUSE)
                resume_all(&l, &s);
            else
                assert_int_equal(ret, 0);
            expect_seen(&s, STREAM_LINES, STREAM_NLINES);
            assert_false(sk_lines_paused(&l));
            ret = sk_lines_finish(&l, record_line, &s);
            assert_int_equal(ret, at == STREAM_NLINES + 1 ? SK_LINES_PAUSE : 0);
            expect_seen(&s, STREAM_LINES STREAM_TAIL "\n", STREAM_NLINES + 1);
            sk_lines_release(&l);
        }
    }
}

static void test_pause_returns_at_once_and_keeps_the_rest(void **state)
{
    struct sk_lines l;
    struct seen s = {.pause_at = 2};

    (void)state;
    sk_lines_init(&l, 100);
    assert_false(sk_lines_paused(&l));
    assert_int_equal(sk_lines_feed(&l, "a\nb\nc\nd", 7, record_line, &s),
                     SK_LINES_PAUSE);
    expect_seen(&s, "a\nb\n", 2);
    assert_true(sk_lines_paused(&l));
    assert_int_equal(sk_lines_resume(&l, record_line, &s), 0);
    expect_seen(&s, "a\nb\nc\n", 3);
    assert_false(sk_lines_paused(&l));
    /* Not paused: a resume does nothing. */
    assert_int_equal(sk_lines_resume(&l, record_line, &s), 0);
    assert_int_equal(sk_lines_feed(&l, "\n", 1, record_line, &s), 0);
    expect_seen(&s, "a\nb\nc\nd\n", 4);
    sk_lines_release(&l);
}

/* A pause on every line: each resume passes exactly one more. */
static void test_resume_in_pieces_one_line_each(void **state)
{
    struct sk_lines l;
    struct seen s = {.pause_every = true};
    int resumes;

    (void)state;
    sk_lines_init(&l, 100);
    assert_int_equal(sk_lines_feed(&l, stream, strlen(stream), record_line, &s),
                     SK_LINES_PAUSE);
    assert_int_equal(s.count, 1);
    for (int i = 2; i <= STREAM_NLINES; i++) {
        assert_int_equal(sk_lines_resume(&l, record_line, &s), SK_LINES_PAUSE);
        assert_int_equal(s.count, i);
    }
    /* The pause came on the last line: nothing is kept but the tail. */
    assert_true(sk_lines_paused(&l));
    resumes = resume_all(&l, &s);
    assert_int_equal(resumes, 1);
    expect_seen(&s, STREAM_LINES, STREAM_NLINES);
    assert_int_equal(sk_lines_finish(&l, record_line, &s), SK_LINES_PAUSE);
    assert_int_equal(sk_lines_finish(&l, record_line, &s), 0);
    expect_seen(&s, STREAM_LINES STREAM_TAIL "\n", STREAM_NLINES + 1);
    sk_lines_release(&l);
}

/* A pause on the last byte keeps nothing, and is a pause all the same. */
static void test_pause_on_the_last_line_keeps_nothing(void **state)
{
    struct sk_lines l;
    struct seen s = {.pause_at = 1};

    (void)state;
    sk_lines_init(&l, 100);
    assert_int_equal(sk_lines_feed(&l, "one\n", 4, record_line, &s),
                     SK_LINES_PAUSE);
    assert_true(sk_lines_paused(&l));
    assert_int_equal(l.partial.len, 0);
    assert_int_equal(sk_lines_resume(&l, record_line, &s), 0);
    assert_false(sk_lines_paused(&l));
    expect_seen(&s, "one\n", 1);
    sk_lines_release(&l);
}

/* While paused, a feed only keeps; the resume passes both feeds' lines. */
static void test_feed_while_paused_keeps_in_order(void **state)
{
    struct sk_lines l;
    struct seen s = {.pause_at = 1};

    (void)state;
    sk_lines_init(&l, 100);
    assert_int_equal(sk_lines_feed(&l, "a\nb", 3, record_line, &s),
                     SK_LINES_PAUSE);
    assert_int_equal(sk_lines_feed(&l, "c\nd\n", 4, record_line, &s),
                     SK_LINES_PAUSE);
    assert_int_equal(sk_lines_feed(&l, "", 0, record_line, &s), SK_LINES_PAUSE);
    assert_int_equal(sk_lines_feed(&l, "e", 1, record_line, &s),
                     SK_LINES_PAUSE);
    expect_seen(&s, "a\n", 1);
    assert_int_equal(sk_lines_resume(&l, record_line, &s), 0);
    expect_seen(&s, "a\nbc\nd\n", 3);
    assert_int_equal(sk_lines_feed(&l, "f\n", 2, record_line, &s), 0);
    expect_seen(&s, "a\nbc\nd\nef\n", 4);
    sk_lines_release(&l);
}

/* Lines come straight from the caller's data, before a pause and once
 * every kept byte is passed; only kept bytes come from the struct. */
static void test_no_copy_outside_a_pause(void **state)
{
    static const char a[] = "one\ntwo\nthree\n";
    static const char b[] = "four\nfive\n";
    struct sk_lines l;
    struct seen s = {.pause_at = 2, .from = a, .to = a + sizeof(a)};

    (void)state;
    sk_lines_init(&l, 100);
    assert_int_equal(sk_lines_feed(&l, a, strlen(a), record_line, &s),
                     SK_LINES_PAUSE);
    s.from = l.partial.data;
    s.to = l.partial.data + l.partial.cap;
    assert_int_equal(sk_lines_resume(&l, record_line, &s), 0);
    s.from = b;
    s.to = b + sizeof(b);
    assert_int_equal(sk_lines_feed(&l, b, strlen(b), record_line, &s), 0);
    expect_seen(&s, "one\ntwo\nthree\nfour\nfive\n", 5);
    sk_lines_release(&l);
}

/* max 5: a long line among the kept bytes is found at the resume, after
 * the lines before it, as a feed would find it. */
static void test_limit_in_kept_bytes_is_emsgsize_at_resume(void **state)
{
    struct sk_lines l;
    struct seen s = {.pause_at = 1};

    (void)state;
    sk_lines_init(&l, 5);
    assert_int_equal(
        sk_lines_feed(&l, "a\nbb\n123456\nc\n", 15, record_line, &s),
        SK_LINES_PAUSE);
    assert_int_equal(sk_lines_resume(&l, record_line, &s), -EMSGSIZE);
    expect_seen(&s, "a\nbb\n", 2);
    sk_lines_release(&l);
}

static void test_limit_on_kept_tail_is_emsgsize_at_resume(void **state)
{
    struct sk_lines l;
    struct seen s = {.pause_at = 1};

    (void)state;
    sk_lines_init(&l, 5);
    assert_int_equal(sk_lines_feed(&l, "a\n1234", 6, record_line, &s),
                     SK_LINES_PAUSE);
    assert_int_equal(sk_lines_feed(&l, "5", 1, record_line, &s),
                     SK_LINES_PAUSE);
    assert_int_equal(sk_lines_resume(&l, record_line, &s), 0);
    /* 12345 is a partial line of exactly max: held; one more is too long. */
    assert_int_equal(sk_lines_feed(&l, "6", 1, record_line, &s), -EMSGSIZE);
    expect_seen(&s, "a\n", 1);
    sk_lines_release(&l);
}

static void test_limit_counts_a_partial_kept_over_a_pause(void **state)
{
    struct sk_lines l;
    struct seen s = {.pause_at = 1};

    (void)state;
    sk_lines_init(&l, 5);
    assert_int_equal(sk_lines_feed(&l, "a\n123", 5, record_line, &s),
                     SK_LINES_PAUSE);
    assert_int_equal(sk_lines_feed(&l, "456", 3, record_line, &s),
                     SK_LINES_PAUSE);
    assert_int_equal(sk_lines_resume(&l, record_line, &s), -EMSGSIZE);
    sk_lines_release(&l);
    sk_lines_init(&l, 5);
    s = (struct seen){.pause_at = 1};
    assert_int_equal(sk_lines_feed(&l, "a\n123", 5, record_line, &s),
                     SK_LINES_PAUSE);
    assert_int_equal(sk_lines_resume(&l, record_line, &s), 0);
    assert_int_equal(sk_lines_feed(&l, "45\n", 3, record_line, &s), 0);
    assert_int_equal(sk_lines_feed(&l, "123", 3, record_line, &s), 0);
    assert_int_equal(sk_lines_feed(&l, "456\n", 4, record_line, &s), -EMSGSIZE);
    expect_seen(&s, "a\n12345\n", 2);
    sk_lines_release(&l);
}

/* A pause when a held partial line is completed keeps what follows. */
static void test_pause_on_a_completed_partial_line(void **state)
{
    struct sk_lines l;
    struct seen s = {.pause_at = 1};

    (void)state;
    sk_lines_init(&l, 100);
    assert_int_equal(sk_lines_feed(&l, "ab", 2, record_line, &s), 0);
    assert_int_equal(sk_lines_feed(&l, "c\nd\ne", 5, record_line, &s),
                     SK_LINES_PAUSE);
    expect_seen(&s, "abc\n", 1);
    assert_int_equal(sk_lines_resume(&l, record_line, &s), 0);
    expect_seen(&s, "abc\nd\n", 2);
    assert_int_equal(sk_lines_finish(&l, record_line, &s), 0);
    expect_seen(&s, "abc\nd\ne\n", 3);
    sk_lines_release(&l);
}

/* Finish while paused passes the kept lines, then the tail; a pause among
 * them is returned and a second finish goes on. */
static void test_finish_while_paused(void **state)
{
    struct sk_lines l;
    struct seen s = {.pause_at = 1};

    (void)state;
    sk_lines_init(&l, 100);
    assert_int_equal(sk_lines_feed(&l, "a\nb\nc", 5, record_line, &s),
                     SK_LINES_PAUSE);
    assert_int_equal(sk_lines_finish(&l, record_line, &s), 0);
    expect_seen(&s, "a\nb\nc\n", 3);
    assert_false(sk_lines_paused(&l));
    assert_int_equal(sk_lines_finish(&l, record_line, &s), 0);
    assert_int_equal(s.count, 3);
    sk_lines_release(&l);

    sk_lines_init(&l, 100);
    s = (struct seen){.pause_at = 1};
    assert_int_equal(sk_lines_feed(&l, "a\nb\nc\nd", 7, record_line, &s),
                     SK_LINES_PAUSE);
    s.pause_at = 2;
    assert_int_equal(sk_lines_finish(&l, record_line, &s), SK_LINES_PAUSE);
    expect_seen(&s, "a\nb\n", 2);
    assert_int_equal(sk_lines_finish(&l, record_line, &s), 0);
    expect_seen(&s, "a\nb\nc\nd\n", 4);
    sk_lines_release(&l);
}

/* Another non-zero value of the callback stops a resume as it stops a
 * feed, and the splitter is not left paused. */
static int stop_on_b(void *ctx, const char *line, size_t len)
{
    record_line(ctx, line, len);
    return len == 1 && line[0] == 'b' ? -42 : 0;
}

static void test_other_callback_value_stops_a_resume(void **state)
{
    struct sk_lines l;
    struct seen s = {.pause_at = 1};

    (void)state;
    sk_lines_init(&l, 100);
    assert_int_equal(sk_lines_feed(&l, "a\nb\nc\n", 6, record_line, &s),
                     SK_LINES_PAUSE);
    assert_int_equal(sk_lines_resume(&l, stop_on_b, &s), -42);
    expect_seen(&s, "a\nb\n", 2);
    assert_false(sk_lines_paused(&l));
    sk_lines_release(&l);
}

/* keep: nothing is split, not even a line the kept bytes complete; the
 * partial line held before comes first at the resume. */
static void test_keep_splits_nothing_until_the_resume(void **state)
{
    struct sk_lines lines;
    struct seen s = {0};

    sk_lines_init(&lines, 64);
    assert_int_equal(sk_lines_feed(&lines, "par", 3, record_line, &s), 0);
    assert_int_equal(sk_lines_keep(&lines, "tial\nnext\nta", 12), 0);
    assert_true(sk_lines_paused(&lines));
    assert_int_equal(s.count, 0);
    assert_int_equal(sk_lines_feed(&lines, "il\n", 3, record_line, &s),
                     SK_LINES_PAUSE);
    assert_int_equal(s.count, 0);
    assert_int_equal(sk_lines_resume(&lines, record_line, &s), 0);
    assert_false(sk_lines_paused(&lines));
    expect_seen(&s, "partial\nnext\ntail\n", 3);
    sk_lines_release(&lines);
}

/* A line the kept bytes make too long is refused at the resume. */
static void test_keep_is_held_to_the_limit_at_the_resume(void **state)
{
    struct sk_lines lines;
    struct seen s = {0};

    sk_lines_init(&lines, 4);
    assert_int_equal(sk_lines_keep(&lines, "ok\ntoo long\n", 12), 0);
    assert_int_equal(sk_lines_resume(&lines, record_line, &s), -EMSGSIZE);
    expect_seen(&s, "ok\n", 1);
    sk_lines_release(&lines);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pause_at_every_line_and_every_cut),
        cmocka_unit_test(test_pause_returns_at_once_and_keeps_the_rest),
        cmocka_unit_test(test_resume_in_pieces_one_line_each),
        cmocka_unit_test(test_pause_on_the_last_line_keeps_nothing),
        cmocka_unit_test(test_feed_while_paused_keeps_in_order),
        cmocka_unit_test(test_no_copy_outside_a_pause),
        cmocka_unit_test(test_limit_in_kept_bytes_is_emsgsize_at_resume),
        cmocka_unit_test(test_limit_on_kept_tail_is_emsgsize_at_resume),
        cmocka_unit_test(test_limit_counts_a_partial_kept_over_a_pause),
        cmocka_unit_test(test_pause_on_a_completed_partial_line),
        cmocka_unit_test(test_finish_while_paused),
        cmocka_unit_test(test_other_callback_value_stops_a_resume),
        cmocka_unit_test(test_keep_splits_nothing_until_the_resume),
        cmocka_unit_test(test_keep_is_held_to_the_limit_at_the_resume),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
