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
}

void sk_lines_release(struct sk_lines *lines)
{
    sk_buf_release(&lines->partial);
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
        if (ret != 0)
            return ret;
        data += eol + 1;
        len -= eol + 1;
    }
    if (lines->partial.len + len > lines->max)
        return -EMSGSIZE;
    return sk_buf_append(&lines->partial, data, len);
}

int sk_lines_finish(struct sk_lines *lines, sk_line_fn fn, void *ctx)
{
    struct sk_buf *p = &lines->partial;
    int ret;

    if (p->len == 0)
        return 0;
    ret = fn(ctx, sk_buf_head(p), p->len);
    sk_buf_consume(p, p->len);
    return ret;
}
