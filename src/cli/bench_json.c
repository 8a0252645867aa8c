/* bench_json.c -- a strict JSON reader (see bench_json.h): a recursive
 * descent over a bounded buffer, building a tree the caller frees. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_json.h"

struct parser {
    const char *p, *end;
    unsigned depth;
    size_t values;
    char *err;
    size_t errlen;
};

static int fail(struct parser *ps, const char *what)
{
    if (ps->err[0] == '\0')
        snprintf(ps->err, ps->errlen, "%s", what);
    return -1;
}

static void skip_space(struct parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' ||
                               *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static int parse_value(struct parser *ps, struct json *v);

static int literal(struct parser *ps, const char *word)
{
    size_t n = strlen(word);

    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
        return fail(ps, "not JSON");
    ps->p += n;
    return 0;
}

static bool is_digit(const struct parser *ps)
{
    return ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9';
}

/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static int parse_number(struct parser *ps, struct json *v)
{
    const char *start = ps->p;
    bool plain = true;
    char buf[64];

    if (ps->p < ps->end && *ps->p == '-') {
        ps->p++;
        plain = false;
    }
    if (!is_digit(ps))
        return fail(ps, "a malformed number");
    if (*ps->p++ != '0')
        while (is_digit(ps))
            ps->p++;
    if (ps->p < ps->end && *ps->p == '.') {
        ps->p++;
        plain = false;
        if (!is_digit(ps))
            return fail(ps, "a malformed number");
        while (is_digit(ps))
            ps->p++;
    }
    if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
        ps->p++;
        plain = false;
        if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-'))
            ps->p++;
        if (!is_digit(ps))
            return fail(ps, "a malformed number");
        while (is_digit(ps))
            ps->p++;
    }
    if ((size_t)(ps->p - start) >= sizeof(buf))
        return fail(ps, "a number too long");
    memcpy(buf, start, (size_t)(ps->p - start));
    buf[ps->p - start] = '\0';
    v->type = JSON_NUMBER;
    v->num = strtod(buf, NULL);
    if (!isfinite(v->num))
        return fail(ps, "a number out of range");
    errno = 0;
    v->u = plain ? strtoull(buf, NULL, 10) : 0;
    v->integer = plain && errno == 0;
    return 0;
}

static int hex4(struct parser *ps, unsigned *cp)
{
    *cp = 0;
    for (int i = 0; i < 4; i++, ps->p++) {
        char c = ps->p < ps->end ? *ps->p : '\0';
        unsigned d = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
                     : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                     : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10)
                                            : 16;
        if (d == 16)
            return fail(ps, "a malformed \\u escape");
        *cp = *cp * 16 + d;
    }
    return 0;
}

/* One escape after the backslash, into out (at most 1 byte: the reports
 * hold ASCII; any other code point is kept as '?'). */
static int escape(struct parser *ps, char *out)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    const char *at;
    unsigned cp;

    if (ps->p >= ps->end)
        return fail(ps, "an unterminated string");
    if (*ps->p != 'u') {
        at = memchr(from, *ps->p, sizeof(from) - 1);
        if (at == NULL)
            return fail(ps, "a malformed escape");
        *out = to[at - from];
        ps->p++;
        return 0;
    }
    ps->p++;
    if (hex4(ps, &cp) < 0)
        return -1;
    if (cp == 0)
        return fail(ps, "a NUL in a string");
    *out = cp < 0x80 ? (char)cp : '?';
    return 0;
}

static int parse_string(struct parser *ps, char **out)
{
    const char *start = ++ps->p; /* past the quote */
    char *s, *w;

    while (ps->p < ps->end && *ps->p != '"')
        ps->p += *ps->p == '\\' && ps->p + 1 < ps->end ? 2 : 1;
    if (ps->p >= ps->end)
        return fail(ps, "an unterminated string");
    s = w = malloc((size_t)(ps->p - start) + 1);
    if (s == NULL)
        return fail(ps, "out of memory");
    for (ps->p = start; *ps->p != '"'; w++) {
        unsigned char c = (unsigned char)*ps->p;
        if (c < 0x20) {
            free(s);
            return fail(ps, "a control character in a string");
        }
        ps->p++;
        if (c != '\\')
            *w = (char)c;
        else if (escape(ps, w) < 0) {
            free(s);
            return -1;
        }
    }
    ps->p++;
    *w = '\0';
    *out = s;
    return 0;
}

/* Makes room for one more item (and key) in an array or object. */
static int grow(struct parser *ps, struct json *v, size_t *cap)
{
    struct json *items;
    char **keys;

    if (v->n < *cap)
        return 0;
    *cap = *cap == 0 ? 8 : *cap * 2;
    items = realloc(v->items, *cap * sizeof(*items));
    if (items == NULL)
        return fail(ps, "out of memory");
    v->items = items;
    if (v->type == JSON_OBJECT) {
        keys = realloc(v->keys, *cap * sizeof(*keys));
        if (keys == NULL)
            return fail(ps, "out of memory");
        v->keys = keys;
    }
    return 0;
}

/* One member "key": value of an object, its key already parsed. */
static int parse_member(struct parser *ps, struct json *v, char *key)
{
    if (v->n >= JSON_MEMBERS_MAX) {
        free(key);
        return fail(ps, "too many members in an object");
    }
    if (json_get(v, key) != NULL) {
        free(key);
        return fail(ps, "a duplicate key");
    }
    v->keys[v->n] = key;
    memset(&v->items[v->n], 0, sizeof(v->items[0]));
    v->n++; /* freed with v from here on, whole or not */
    skip_space(ps);
    if (ps->p >= ps->end || *ps->p++ != ':')
        return fail(ps, "not JSON");
    return parse_value(ps, &v->items[v->n - 1]);
}

/* An array or an object, its opening bracket at ps->p. */
static int parse_container(struct parser *ps, struct json *v)
{
    char close = *ps->p == '[' ? ']' : '}';
    size_t cap = 0;
    char *key;

    v->type = close == ']' ? JSON_ARRAY : JSON_OBJECT;
    if (++ps->depth > JSON_DEPTH_MAX)
        return fail(ps, "nested too deep");
    ps->p++;
    skip_space(ps);
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        ps->depth--;
        return 0;
    }
    for (;;) {
        if (grow(ps, v, &cap) < 0)
            return -1;
        skip_space(ps);
        if (close == '}' && (ps->p >= ps->end || *ps->p != '"'))
            return fail(ps, "not JSON");
        if (close == '}' &&
            (parse_string(ps, &key) < 0 || parse_member(ps, v, key) < 0))
            return -1;
        if (close == ']') {
            memset(&v->items[v->n], 0, sizeof(v->items[0]));
            if (parse_value(ps, &v->items[v->n++]) < 0)
                return -1;
        }
        skip_space(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == close) {
            ps->p++;
            ps->depth--;
            return 0;
        }
        return fail(ps, "not JSON");
    }
}

static int parse_value(struct parser *ps, struct json *v)
{
    if (++ps->values > JSON_VALUES_MAX)
        return fail(ps, "too many values");
    skip_space(ps);
    if (ps->p >= ps->end)
        return fail(ps, "not JSON (it ends early)");
    switch (*ps->p) {
    case '{':
    case '[':
        return parse_container(ps, v);
    case '"':
        v->type = JSON_STRING;
        return parse_string(ps, &v->str);
    case 't':
        v->type = JSON_BOOL;
        v->boolean = true;
        return literal(ps, "true");
    case 'f':
        v->type = JSON_BOOL;
        return literal(ps, "false");
    case 'n':
        return literal(ps, "null");
    default:
        if (*ps->p != '-' && !is_digit(ps))
            return fail(ps, "not JSON");
        return parse_number(ps, v);
    }
}

int json_parse(const char *text, size_t len, struct json *v, char *err,
               size_t errlen)
{
    struct parser ps = {
        .p = text, .end = text + len, .err = err, .errlen = errlen};

    err[0] = '\0';
    memset(v, 0, sizeof(*v));
    if (parse_value(&ps, v) < 0) {
        json_free(v);
        return -1;
    }
    skip_space(&ps);
    if (ps.p != ps.end) {
        json_free(v);
        return fail(&ps, "not JSON (more after the value)");
    }
    return 0;
}

void json_free(struct json *v)
{
    for (size_t i = 0; i < v->n; i++) {
        json_free(&v->items[i]);
        if (v->keys != NULL)
            free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->str);
    memset(v, 0, sizeof(*v));
}

const struct json *json_get(const struct json *obj, const char *key)
{
    if (obj == NULL || obj->type != JSON_OBJECT)
        return NULL;
    for (size_t i = 0; i < obj->n; i++)
        if (strcmp(obj->keys[i], key) == 0)
            return &obj->items[i];
    return NULL;
}
