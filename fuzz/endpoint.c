/* endpoint.c -- libFuzzer target for the endpoint parser: whatever parses
 * must format to a canonical text that parses back to the same endpoint
 * and formats to the same text again. Build and run with `make fuzz`. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <sockit.h>

/* Inputs longer than this are skipped: every part has a small limit. */
#define INPUT_MAX 1024

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int ok)
{
    if (!ok)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char text[INPUT_MAX + 1];
    char canon[SK_ENDPOINT_STRLEN], again[SK_ENDPOINT_STRLEN];
    struct sk_endpoint first, second;
    const char *why = NULL;
    int n, m;

    if (size > INPUT_MAX || memchr(data, '\0', size) != NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    memset(&first, 0, sizeof(first));
    memset(&second, 0, sizeof(second));
    if (sk_endpoint_parse(&first, text, &why) != 0) {
        require(why != NULL);
        return 0;
    }
    n = sk_endpoint_format(&first, canon, sizeof(canon));
    require(n > 0 && (size_t)n == strlen(canon));
    require(sk_endpoint_parse(&second, canon, &why) == 0);
    require(memcmp(&first, &second, sizeof(first)) == 0);
    m = sk_endpoint_format(&second, again, sizeof(again));
    require(m == n && strcmp(canon, again) == 0);
    return 0;
}
