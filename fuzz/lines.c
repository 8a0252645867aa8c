/* lines.c -- libFuzzer target for line framing: sk_lines fed the input in
 * random pieces, with a random limit and a callback that pauses at random,
 * resumed at random (or fed more while paused), must pass exactly the
 * input's lines, in order, none lost or repeated, and fail with -EMSGSIZE
 * exactly where the first line longer than the limit is.
 *
 * Input: 2 bytes of limit, 1 byte of seed, then the stream. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <sockit.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int ok)
{
    if (!ok)
        __builtin_trap();
}

/* The model and the run: the stream, the next line expected to come out,
 * and the random numbers driving cuts and pauses. */
struct run {
    const char *text;
    size_t len;
    size_t next;    /* offset of the next line expected */
    size_t lines;   /* lines passed so far */
    size_t good;    /* lines before the first one longer than max */
    bool overlong;  /* such a line (or tail) exists */
    uint32_t state; /* random numbers */
};

static uint32_t next_random(struct run *r)
{
    r->state = r->state * 1664525u + 1013904223u;
    return r->state >> 16;
}

/* Counts the lines the splitter should pass: every complete line and a
 * non-empty tail, up to the first longer than max. */
static void model(struct run *r, size_t max)
{
    size_t at = 0;

    while (at < r->len) {
        const char *lf = memchr(r->text + at, '\n', r->len - at);
        size_t end = lf != NULL ? (size_t)(lf - r->text) : r->len;

        if (end - at > max) {
            r->overlong = true;
            return;
        }
        r->good++;
        at = end + 1;
    }
}

/* The callback: the line must be the next one of the stream. */
static int check_line(void *ctx, const char *line, size_t len)
{
    struct run *r = ctx;
    const char *lf;

    require(r->lines < r->good);
    require(r->next + len <= r->len);
    require(memcmp(line, r->text + r->next, len) == 0);
    lf = memchr(r->text + r->next, '\n', r->len - r->next);
    require(lf != NULL ? (size_t)(lf - r->text) == r->next + len
                       : r->next + len == r->len);
    r->next += len + 1;
    r->lines++;
    return next_random(r) % 4 == 0 ? SK_LINES_PAUSE : 0;
}

/* While paused: resume, or feed the next piece first. */
static int unpause(struct sk_lines *l, struct run *r, size_t *pos)
{
    int ret = SK_LINES_PAUSE;

    while (ret == SK_LINES_PAUSE) {
        require(sk_lines_paused(l));
        if (*pos < r->len && next_random(r) % 3 == 0) {
            size_t n = 1 + next_random(r) % 16;

            n = n < r->len - *pos ? n : r->len - *pos;
            require(sk_lines_feed(l, r->text + *pos, n, check_line, r) ==
                    SK_LINES_PAUSE);
            *pos += n;
            continue;
        }
        ret = sk_lines_resume(l, check_line, r);
    }
    return ret;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct run r = {0};
    struct sk_lines l;
    size_t max, pos = 0;
    int ret = 0;

    if (size < 3)
        return 0;
    max = (size_t)data[0] | (size_t)(data[1] & 3) << 8;
    r.state = data[2];
    r.text = (const char *)data + 3;
    r.len = size - 3;
    model(&r, max);
    sk_lines_init(&l, max);
    while (pos < r.len && ret == 0) {
        size_t n = 1 + next_random(&r) % (next_random(&r) % 2 ? 8 : 300);

        n = n < r.len - pos ? n : r.len - pos;
        ret = sk_lines_feed(&l, r.text + pos, n, check_line, &r);
        pos += n;
        if (ret == SK_LINES_PAUSE)
            ret = unpause(&l, &r, &pos);
    }
    while (ret == 0 && pos == r.len) {
        ret = sk_lines_finish(&l, check_line, &r);
        if (ret != SK_LINES_PAUSE)
            break;
        ret = 0; /* finish again after a pause, as a service would */
    }
    if (r.overlong) {
        require(ret == -EMSGSIZE);
        require(r.lines == r.good);
    } else {
        require(ret == 0);
        require(r.lines == r.good);
        require(r.next >= r.len);
        require(!sk_lines_paused(&l));
    }
    sk_lines_release(&l);
    return 0;
}
