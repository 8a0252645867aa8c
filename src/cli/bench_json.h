/* bench_json.h -- a small strict JSON reader (RFC 8259) for the reports
 * that `sockit bench --merge` reads back: the whole text must be one
 * value, nesting at most JSON_DEPTH_MAX deep, no duplicate keys. */
#ifndef SOCKIT_BENCH_JSON_H
#define SOCKIT_BENCH_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JSON_DEPTH_MAX 32
/* Most values in one document (a report has some 8,000 at most), and most
 * members in one object: bounds that keep a crafted file from costing
 * gigabytes or quadratic time. */
#define JSON_VALUES_MAX 200000
#define JSON_MEMBERS_MAX 256

enum json_type {
    JSON_NULL,
    JSON_BOOL,
    JSON_NUMBER,
    JSON_STRING,
    JSON_ARRAY,
    JSON_OBJECT,
};

struct json {
    enum json_type type;
    bool boolean;
    double num;
    bool integer; /* a number without sign, fraction or exponent... */
    uint64_t u;   /* ...and its exact value, when it fits */
    char *str;    /* a string (NUL-terminated; \u0000 is refused) */
    size_t n;     /* items of an array or object */
    struct json *items;
    char **keys; /* an object's keys, beside items */
};

/* Parses text[0..len) into *v (freed with json_free). Returns 0, or -1
 * with a short reason in err. */
int json_parse(const char *text, size_t len, struct json *v, char *err,
               size_t errlen);
void json_free(struct json *v);
/* The value of key in an object, or NULL. */
const struct json *json_get(const struct json *obj, const char *key);

#endif
