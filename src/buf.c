/* buf.c -- growable byte buffer and LF line framing. No I/O. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Smallest allocation: most lines and most replies fit. */
#define BUF_MIN 256

void sk_buf_init(struct sk_buf *buf)
{
    *buf = (struct sk_buf){0};
}

void sk_buf_release(struct sk_buf *buf)
{
    if (buf == NULL)
        return;
    free(buf->data);
    sk_buf_init(buf);
}

int sk_buf_reserve(struct sk_buf *buf, size_t n)
{
    size_t need, cap;
    char *p;

    if (buf->cap - buf->off - buf->len >= n)
        return 0;
    if (n > SIZE_MAX / 2 - buf->len)
        return -ENOMEM;
    need = buf->len + n;
    if (buf->off > 0 && buf->cap >= need) {
        memmove(buf->data, buf->data + buf->off, buf->len);
        buf->off = 0;
        return 0;
    }
    cap = buf->cap > BUF_MIN ? buf->cap : BUF_MIN;
    while (cap < need)
        cap *= 2;
    if (buf->off > 0) {
        memmove(buf->data, buf->data + buf->off, buf->len);
        buf->off = 0;
    }
    p = realloc(buf->data, cap);
    if (p == NULL)
        return -ENOMEM;
    buf->data = p;
    buf->cap = cap;
    return 0;
}

int sk_buf_append(struct sk_buf *buf, const void *p, size_t n)
{
    int err;

    if (n == 0)
        return 0;
    err = sk_buf_reserve(buf, n);
    if (err < 0)
        return err;
    memcpy(sk_buf_tail(buf), p, n);
    buf->len += n;
    return 0;
}

void sk_buf_consume(struct sk_buf *buf, size_t n)
{
    if (n >= buf->len) {
        buf->off = 0;
        buf->len = 0;
        return;
    }
    buf->off += n;
    buf->len -= n;
}

void sk_lines_init(struct sk_lines *lines, size_t max)
{
    sk_buf_init(&lines->partial);
    lines->max = max;
    lines->paused = false;
}

void sk_lines_release(struct sk_lines *lines)
{
    sk_buf_release(&lines->partial);
    lines->paused = false;
}

bool sk_lines_paused(const struct sk_lines *lines)
{
    return lines->paused;
}

/* Keeps the n bytes at data, not yet split, until sk_lines_resume(), after
 * the partial line held (if any). */
static int keep(struct sk_lines *lines, const char *data, size_t n)
{
    lines->paused = true;
    return sk_buf_append(&lines->partial, data, n);
}

int sk_lines_keep(struct sk_lines *lines, const char *data, size_t len)
{
    /* Any partial line held is the start of what is kept: resume splits
     * from the first byte held. */
    return keep(lines, data, len);
}

/* Completes the held partial line with the bytes before the LF at eol. */
static int finish_partial(struct sk_lines *lines, const char *data, size_t eol,
                          sk_line_fn fn, void *ctx)
{
    struct sk_buf *p = &lines->partial;
    int ret;

    if (p->len + eol > lines->max)
        return -EMSGSIZE;
    ret = sk_buf_append(p, data, eol);
    if (ret < 0)
        return ret;
    ret = fn(ctx, sk_buf_head(p), p->len);
    sk_buf_consume(p, p->len);
    return ret;
}

int sk_lines_feed(struct sk_lines *lines, const char *data, size_t len,
                  sk_line_fn fn, void *ctx)
{
    const char *lf;
    size_t eol;
    int ret;

    if (lines->paused) {
        ret = sk_buf_append(&lines->partial, data, len);
        return ret < 0 ? ret : SK_LINES_PAUSE;
    }
    while (len > 0) {
        lf = memchr(data, '\n', len);
        if (lf == NULL)
            break;
        eol = (size_t)(lf - data);
        if (lines->partial.len > 0)
            ret = finish_partial(lines, data, eol, fn, ctx);
        else if (eol > lines->max)
            ret = -EMSGSIZE;
        else
            ret = fn(ctx, data, eol);
        data += eol + 1;
        len -= eol + 1;
        if (ret == SK_LINES_PAUSE) {
            int err = keep(lines, data, len);
            return err < 0 ? err : ret;
        }
        if (ret != 0)
            return ret;
    }
    if (lines->partial.len + len > lines->max)
        return -EMSGSIZE;
    return sk_buf_append(&lines->partial, data, len);
}

/* Splits the kept bytes in place: each complete line is passed from the
 * buffer and consumed once the callback returns. What is left without a
 * LF is the partial line again. */
int sk_lines_resume(struct sk_lines *lines, sk_line_fn fn, void *ctx)
{
    struct sk_buf *p = &lines->partial;
    const char *lf;
    size_t eol;
    int ret;

    if (!lines->paused)
        return 0;
    lines->paused = false;
    while (p->len > 0 && (lf = memchr(sk_buf_head(p), '\n', p->len)) != NULL) {
        eol = (size_t)(lf - sk_buf_head(p));
        if (eol > lines->max)
            return -EMSGSIZE;
        ret = fn(ctx, sk_buf_head(p), eol);
        sk_buf_consume(p, eol + 1);
        if (ret == SK_LINES_PAUSE)
            lines->paused = true;
        if (ret != 0)
            return ret;
    }
    if (p->len > lines->max)
        return -EMSGSIZE;
    /* What a pause kept is passed on: its memory goes back. */
    if (p->len == 0)
        sk_buf_release(p);
    return 0;
}

int sk_lines_finish(struct sk_lines *lines, sk_line_fn fn, void *ctx)
{
    struct sk_buf *p = &lines->partial;
    int ret;

    ret = sk_lines_resume(lines, fn, ctx);
    if (ret != 0 || p->len == 0)
        return ret;
    ret = fn(ctx, sk_buf_head(p), p->len);
    sk_buf_consume(p, p->len);
    if (ret == SK_LINES_PAUSE)
        lines->paused = true;
    return ret;
}
