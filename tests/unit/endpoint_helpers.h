/* endpoint_helpers.h -- what the unit tests of endpoint options share:
 * checks of a code and of the reason (*why) given with it, and a parse
 * into zeroed structs. Included by endpoint_options.c and
 * endpoint_check.c; every function is static. */
#ifndef SOCKIT_TEST_ENDPOINT_HELPERS_H
#define SOCKIT_TEST_ENDPOINT_HELPERS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <sockit.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static void expect_why(const char *in, const char *why, const char *want)
{
    if (want == NULL && why != NULL)
        fail_msg("\"%.80s\": why \"%s\", want none", in, why);
    if (want != NULL && (why == NULL || strcmp(why, want) != 0))
        fail_msg("\"%.80s\": why \"%s\", want \"%s\"", in, why ? why : "(null)",
                 want);
}

static void expect_code(const char *in, int got, int want)
{
    if (got != want)
        fail_msg("\"%.80s\": returned %d (%s), want %d (%s)", in, got,
                 sk_strerror(got), want, sk_strerror(want));
}

/* Parses text into zeroed structs (so that whole structs compare). */
static int parse(struct sk_endpoint *ep, struct sk_endpoint_options *opts,
                 const char *text, const char **why)
{
    memset(ep, 0, sizeof(*ep));
    if (opts != NULL)
        memset(opts, 0, sizeof(*opts));
    *why = NULL;
    return sk_endpoint_parse_options(ep, opts, text, why);
}

#endif
