/* metrics_http.c -- the request heads of the --metrics responder, parsed
 * strictly (RFC 9112): a request line of three parts separated by single
 * spaces, header fields of a token, a colon and a value of visible bytes,
 * lines ending in CRLF or LF (a CR anywhere else is an error), no obsolete
 * line folding, Host once in HTTP/1.1, no body. Over the caller's bytes,
 * as picohttpparser does: nothing is allocated or kept between calls. */
#include <stdint.h>
#include <string.h>

#include "metrics_http.h"

struct line {
    const char *p;
    size_t len; /* without the CR LF */
};

/* What the header fields said, checked once the head is complete. */
struct fields {
    int hosts;
    bool close, keep_alive, has_length;
};

static int fail(struct http_request *req, int status)
{
    req->status = status;
    req->keep_alive = false;
    return -1;
}

/* The line starting at *off, below limit: 1 (and *off past its LF), 0
 * when its LF has not come, -1 for a CR other than the one before it. */
static int next_line(const char *buf, size_t limit, size_t *off, struct line *l)
{
    const char *start = buf + *off;
    const char *lf = memchr(start, '\n', limit - *off);
    size_t n;

    if (lf == NULL)
        return 0;
    n = (size_t)(lf - start);
    if (n > 0 && start[n - 1] == '\r')
        n--;
    if (memchr(start, '\r', n) != NULL)
        return -1;
    l->p = start;
    l->len = n;
    *off += (size_t)(lf - start) + 1;
    return 1;
}

static bool is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
        (c >= 'A' && c <= 'Z'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static size_t token_len(const char *p, size_t len)
{
    size_t i = 0;

    while (i < len && is_tchar((unsigned char)p[i]))
        i++;
    return i;
}

/* p[0..len) is word, ASCII letters in any case (word in lower case). */
static bool same_ci(const char *p, size_t len, const char *word)
{
    if (len != strlen(word))
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char a = (unsigned char)p[i];
        if (a >= 'A' && a <= 'Z')
            a = (unsigned char)(a - 'A' + 'a');
        if (a != (unsigned char)word[i])
            return false;
    }
    return true;
}

/* ---------------------------------------------------- request line */

static enum http_method method_of(const char *p, size_t n)
{
    /* Methods are case-sensitive. */
    if (n == 3 && memcmp(p, "GET", 3) == 0)
        return HTTP_GET;
    if (n == 4 && memcmp(p, "HEAD", 4) == 0)
        return HTTP_HEAD;
    return HTTP_OTHER;
}

/* The path of an origin-form target ("/p?q") or an absolute-form one
 * ("http://host/p?q", "http://host?q": "/"): false for any other form. */
static bool target_path(const char *p, size_t n, const char **path,
                        size_t *plen)
{
    size_t at = 0, end;

    if (n >= 7 && same_ci(p, 7, "http://"))
        at = 7;
    else if (n >= 8 && same_ci(p, 8, "https://"))
        at = 8;
    else if (n == 0 || p[0] != '/')
        return false;
    if (at > 0) {
        size_t host = at;
        while (at < n && p[at] != '/' && p[at] != '?')
            at++;
        if (at == host)
            return false; /* no authority */
    }
    end = at;
    while (end < n && p[end] != '?')
        end++;
    *path = end > at ? p + at : "/";
    *plen = end > at ? end - at : 1;
    return true;
}

/* "HTTP/1.1", "HTTP/1.0": 0; another major version: 505; else 400. */
static int version_of(const char *p, size_t n, struct http_request *req)
{
    if (n != 8 || memcmp(p, "HTTP/", 5) != 0 || p[6] != '.' || p[5] < '0' ||
        p[5] > '9' || p[7] < '0' || p[7] > '9')
        return 400;
    if (p[5] != '1')
        return 505;
    req->http10 = p[7] == '0';
    return 0;
}

/* METHOD SP TARGET SP VERSION: returns 0 or the status to answer. */
static int request_line(const struct line *l, struct http_request *req)
{
    const char *sp1 = memchr(l->p, ' ', l->len), *sp2, *path;
    size_t mlen, tlen, plen;
    int err;

    if (sp1 == NULL)
        return 400;
    mlen = (size_t)(sp1 - l->p);
    if (mlen == 0 || token_len(l->p, mlen) != mlen)
        return 400;
    sp2 = memchr(sp1 + 1, ' ', l->len - mlen - 1);
    if (sp2 == NULL)
        return 400;
    tlen = (size_t)(sp2 - sp1 - 1);
    for (size_t i = 0; i < tlen; i++)
        if ((unsigned char)sp1[1 + i] <= 0x20 ||
            (unsigned char)sp1[1 + i] >= 0x7f)
            return 400;
    if (tlen == 0)
        return 400;
    if ((err = version_of(sp2 + 1, l->len - mlen - tlen - 2, req)) != 0)
        return err;
    req->method = method_of(l->p, mlen);
    if (!target_path(sp1 + 1, tlen, &path, &plen))
        return req->method == HTTP_OTHER ? 0 : 400; /* answered 405 */
    req->metrics = plen == 8 && memcmp(path, "/metrics", 8) == 0;
    return 0;
}

/* ---------------------------------------------------- header fields */

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Connection: a list of options, of which close and keep-alive count. */
static void connection_options(const char *p, size_t n, struct fields *f)
{
    size_t i = 0;

    while (i < n) {
        size_t start, end;
        while (i < n && (is_ows(p[i]) || p[i] == ','))
            i++;
        start = i;
        while (i < n && p[i] != ',')
            i++;
        end = i;
        while (end > start && is_ows(p[end - 1]))
            end--;
        if (same_ci(p + start, end - start, "close"))
            f->close = true;
        else if (same_ci(p + start, end - start, "keep-alive"))
            f->keep_alive = true;
    }
}

/* Content-Length: digits; 0 is no body, anything else one refused. */
static int content_length(const char *p, size_t n, struct fields *f)
{
    if (f->has_length || n == 0)
        return 400;
    f->has_length = true;
    for (size_t i = 0; i < n; i++)
        if (p[i] < '0' || p[i] > '9')
            return 400;
    for (size_t i = 0; i < n; i++)
        if (p[i] != '0')
            return 413;
    return 0;
}

/* NAME ":" OWS VALUE OWS: returns 0 or the status to answer. */
static int header(const struct line *l, struct fields *f)
{
    size_t n = token_len(l->p, l->len), vlen;
    const char *v;

    if (n == 0 || n == l->len || l->p[n] != ':')
        return 400; /* obsolete folding, a space before the colon, ... */
    v = l->p + n + 1;
    vlen = l->len - n - 1;
    while (vlen > 0 && is_ows(v[0]))
        v++, vlen--;
    while (vlen > 0 && is_ows(v[vlen - 1]))
        vlen--;
    for (size_t i = 0; i < vlen; i++)
        if (((unsigned char)v[i] < 0x20 && v[i] != '\t') ||
            (unsigned char)v[i] == 0x7f)
            return 400;
    if (same_ci(l->p, n, "host"))
        f->hosts++;
    else if (same_ci(l->p, n, "connection"))
        connection_options(v, vlen, f);
    else if (same_ci(l->p, n, "content-length"))
        return content_length(v, vlen, f);
    else if (same_ci(l->p, n, "transfer-encoding"))
        return 501;
    return 0;
}

/* ------------------------------------------------------------- head */

/* A line that did not end (r 0) or ended wrong (r -1). */
static int incomplete(struct http_request *req, int r, size_t len)
{
    if (r < 0)
        return fail(req, 400);
    return len >= HTTP_HEAD_MAX ? fail(req, 431) : 0;
}

int http_parse_head(const char *buf, size_t len, struct http_request *req)
{
    size_t limit = len < HTTP_HEAD_MAX ? len : HTTP_HEAD_MAX, off = 0;
    struct fields f = {0};
    struct line l;
    int r;

    *req = (struct http_request){0};
    do {
        if ((r = next_line(buf, limit, &off, &l)) <= 0)
            return incomplete(req, r, len);
    } while (l.len == 0);
    if ((r = request_line(&l, req)) != 0)
        return fail(req, r);
    for (;;) {
        if ((r = next_line(buf, limit, &off, &l)) <= 0)
            return incomplete(req, r, len);
        if (l.len == 0)
            break;
        if ((r = header(&l, &f)) != 0)
            return fail(req, r);
    }
    if (f.hosts > 1 || (!req->http10 && f.hosts != 1))
        return fail(req, 400);
    req->keep_alive = req->http10 ? f.keep_alive && !f.close : !f.close;
    return (int)off;
}
