/* proxy.c -- libFuzzer target for the PROXY protocol parser. For each
 * version expected: the return is SK_EPROXY with a reason, 0, or a header
 * length within the input; the input's prefixes agree with it (0 before
 * the header's end, the same header from there on, refused once refused),
 * each parsed from a heap copy of exactly its length so that ASan sees a
 * read past it; a header parses the same from exactly its bytes; and an
 * accepted header formatted again by sk_proxy_format() parses back to the
 * same addresses (when not local), with -ENOSPC one byte short. Build and
 * run with `make fuzz`. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sockit.h>

/* Longer inputs are skipped: no header reaches past SK_PROXY_V2_MAX. */
#define INPUT_MAX (SK_PROXY_V2_MAX + 64)
/* Inputs up to this long have every prefix checked; longer ones a
 * sample of them. */
#define ALL_PREFIXES 256

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int ok)
{
    if (!ok)
        __builtin_trap();
}

static int same_addr(const struct sk_addr *a, const struct sk_addr *b)
{
    return a->len == b->len && memcmp(&a->u, &b->u, sizeof(a->u)) == 0;
}

static int same_header(const struct sk_proxy_header *a,
                       const struct sk_proxy_header *b)
{
    return a->version == b->version && a->local == b->local &&
           a->socktype == b->socktype && same_addr(&a->src, &b->src) &&
           same_addr(&a->dst, &b->dst);
}

/* Parses a heap copy of the first len bytes. */
static int parse_copy(const uint8_t *data, size_t len, enum sk_proxy expect,
                      struct sk_proxy_header *h, const char **why)
{
    uint8_t *copy = malloc(len > 0 ? len : 1);
    int ret;

    require(copy != NULL);
    memcpy(copy, data, len);
    ret = sk_proxy_parse(copy, len, expect, h, why);
    free(copy);
    return ret;
}

static int prefix_checked(size_t k, size_t size, int ret)
{
    return size <= ALL_PREFIXES || k < 32 || k % 97 == 0 ||
           (ret > 0 && (k + 1 == (size_t)ret || k == (size_t)ret));
}

/* Every prefix (or a sample) agrees with the whole input's result. */
static void check_prefixes(const uint8_t *data, size_t size,
                           enum sk_proxy expect, int ret,
                           const struct sk_proxy_header *h)
{
    int refused = 0;

    for (size_t k = 0; k < size; k++) {
        struct sk_proxy_header again;
        int r;

        if (!prefix_checked(k, size, ret))
            continue;
        r = parse_copy(data, k, expect, &again, NULL);
        if (ret >= 0)
            require(r == (ret > 0 && k >= (size_t)ret ? ret : 0));
        if (r > 0)
            require(same_header(&again, h));
        require(!refused || r == SK_EPROXY);
        refused = r == SK_EPROXY;
    }
}

/* The header formatted again parses to the same addresses. */
static void check_format(const struct sk_proxy_header *h)
{
    enum sk_proxy v = h->version == 1 ? SK_PROXY_V1 : SK_PROXY_V2;
    uint8_t out[SK_PROXY_HEADER_MAX];
    struct sk_proxy_header again;
    int n;

    n = sk_proxy_format(v, h->socktype, h->local ? NULL : &h->src,
                        h->local ? NULL : &h->dst, out, sizeof(out));
    require(n > 0 && n <= SK_PROXY_HEADER_MAX);
    require(sk_proxy_format(v, h->socktype, h->local ? NULL : &h->src,
                            h->local ? NULL : &h->dst, out,
                            (size_t)n - 1) == -ENOSPC);
    require(parse_copy(out, (size_t)n, v, &again, NULL) == n);
    require(again.version == h->version && again.local == h->local);
    if (!h->local)
        require(same_header(&again, h));
}

static void check(const uint8_t *data, size_t size, enum sk_proxy expect)
{
    struct sk_proxy_header h, again;
    const char *why = NULL;
    int ret = sk_proxy_parse(data, size, expect, &h, &why);

    require(ret == SK_EPROXY || (ret >= 0 && (size_t)ret <= size));
    if (ret == SK_EPROXY)
        require(why != NULL && *why != '\0');
    if (ret == 0)
        require(size < (data[0] == 'P' ? SK_PROXY_V1_MAX : SK_PROXY_V2_MAX));
    require(sk_proxy_parse(data, size, expect, NULL, NULL) == ret);
    check_prefixes(data, size, expect, ret, &h);
    if (ret <= 0)
        return;
    require(h.version == (expect == SK_PROXY_V1   ? 1u
                          : expect == SK_PROXY_V2 ? 2u
                                                  : h.version));
    require(h.version == 1 || h.version == 2);
    require(h.socktype == SOCK_STREAM || h.socktype == SOCK_DGRAM);
    require(!h.local || (h.src.len == 0 && h.dst.len == 0));
    require(parse_copy(data, (size_t)ret, expect, &again, NULL) == ret);
    require(same_header(&h, &again));
    check_format(&h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > INPUT_MAX)
        return 0;
    check(data, size, SK_PROXY_ANY);
    check(data, size, SK_PROXY_V1);
    check(data, size, SK_PROXY_V2);
    return 0;
}
