/* endpoint.c -- libFuzzer target for the endpoint parser and its options:
 * whatever parses (with sk_endpoint_parse_options()) must format to a
 * canonical text that parses back to the same endpoint and formats to the
 * same text again; a failure leaves *ep and *opts untouched and says why;
 * sk_endpoint_parse() agrees; sk_endpoint_check_options() on either side
 * gives 0 or -EINVAL with a reason, the same for the canonical form as for
 * the endpoint without its other options. Build and run with `make fuzz`. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <sockit.h>

/* Inputs longer than this are skipped: every part has a small limit but
 * the values of options (SK_OPTION_MAX). */
#define INPUT_MAX 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int ok)
{
    if (!ok)
        __builtin_trap();
}

static int same_ep(const struct sk_endpoint *a, const struct sk_endpoint *b)
{
    return a->scheme == b->scheme && strcmp(a->host, b->host) == 0 &&
           a->port == b->port &&
           memcmp(a->path, b->path, sizeof(a->path)) == 0 &&
           a->path_len == b->path_len && a->tls == b->tls &&
           a->proxy == b->proxy;
}

/* check_options() on one side: 0, or -EINVAL with a reason. */
static int check(const struct sk_endpoint *ep,
                 const struct sk_endpoint_options *opts, bool listening)
{
    const char *why = NULL;
    int err = sk_endpoint_check_options(ep, opts, listening, &why);

    require(err == 0 || (err == -EINVAL && why != NULL && *why != '\0'));
    require(sk_endpoint_check_options(ep, opts, listening, NULL) == err);
    return err;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char text[INPUT_MAX + 1];
    char canon[SK_ENDPOINT_STRLEN], again[SK_ENDPOINT_STRLEN];
    struct sk_endpoint first, second, plain, ep0;
    struct sk_endpoint_options opts, opts2, opts0;
    const unsigned kept = SK_OPT_TLS | SK_OPT_PROXY;
    const char *why = NULL, *plain_why = NULL;
    int err, n, m;

    if (size > INPUT_MAX || memchr(data, '\0', size) != NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    memset(&ep0, 0xa5, sizeof(ep0));
    memset(&opts0, 0x5a, sizeof(opts0));
    first = ep0;
    opts = opts0;
    err = sk_endpoint_parse_options(&first, &opts, text, &why);
    plain = ep0;
    if (err != 0) {
        require(err == -EINVAL || err == -ERANGE || err == -ENAMETOOLONG);
        require(why != NULL && *why != '\0');
        require(memcmp(&first, &ep0, sizeof(first)) == 0);
        require(memcmp(&opts, &opts0, sizeof(opts)) == 0);
        require(sk_endpoint_parse(&plain, text, &plain_why) == err);
        require(memcmp(&plain, &ep0, sizeof(plain)) == 0);
        return 0;
    }
    /* The options kept in the endpoint are flagged, and no other. */
    require(first.proxy <= SK_PROXY_ANY);
    require(!!(opts.given & SK_OPT_TLS) == first.tls);
    require(!!(opts.given & SK_OPT_PROXY) == (first.proxy != SK_PROXY_NONE));
    require((opts.given & ~0x1ffu) == 0 && opts.mode <= 0777);
    err = sk_endpoint_parse(&plain, text, &plain_why);
    if (opts.given & ~kept)
        require(err == -EINVAL && plain_why != NULL);
    else
        require(err == 0 && same_ep(&first, &plain));
    check(&first, &opts, true);
    check(&first, &opts, false);

    n = sk_endpoint_format(&first, canon, sizeof(canon));
    require(n > 0 && (size_t)n == strlen(canon));
    require(sk_endpoint_format(&first, again, (size_t)n) == -ENOSPC);
    memset(&second, 0, sizeof(second));
    require(sk_endpoint_parse_options(&second, &opts2, canon, &why) == 0);
    require(same_ep(&first, &second));
    require(opts2.given == (opts.given & kept));
    require(sk_endpoint_parse(&plain, canon, &why) == 0);
    require(same_ep(&first, &plain));
    /* The canonical form keeps tls and proxy= only: it applies where the
     * endpoint without its other options applies. */
    require(check(&second, &opts2, true) == check(&first, NULL, true));
    require(check(&second, &opts2, false) == check(&first, NULL, false));
    m = sk_endpoint_format(&second, again, sizeof(again));
    require(m == n && strcmp(canon, again) == 0);
    return 0;
}
