/* metrics_request.c -- libFuzzer target for the request heads of the
 * --metrics responder (src/cli/metrics_http.c, compiled in here, as the
 * fuzz targets link the library and the services only). The return is
 * -1 with an error status, 0 short of HTTP_HEAD_MAX bytes, or a head
 * length within the input (and the first HTTP_HEAD_MAX bytes) ending in
 * its empty line; the input's prefixes agree with it (0 before the end of
 * the head, the same head from there on); each parse reads a heap copy of
 * exactly its length, so that ASan sees a read past it; a head parses the
 * same from exactly its bytes. Build and run with `make fuzz`. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../src/cli/metrics_http.c"

/* Longer inputs are cut: nothing is read past HTTP_HEAD_MAX. */
#define INPUT_MAX (HTTP_HEAD_MAX + 64)
/* Inputs up to this long have every prefix checked; longer ones a
 * sample. */
#define ALL_PREFIXES 256

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int ok)
{
    if (!ok)
        __builtin_trap();
}

static int parse_copy(const uint8_t *data, size_t len, struct http_request *req)
{
    char *copy = malloc(len > 0 ? len : 1);
    int n;

    require(copy != NULL);
    memcpy(copy, data, len);
    n = http_parse_head(copy, len, req);
    free(copy);
    return n;
}

static int same_request(const struct http_request *a,
                        const struct http_request *b)
{
    return a->method == b->method && a->metrics == b->metrics &&
           a->keep_alive == b->keep_alive && a->http10 == b->http10 &&
           a->status == b->status;
}

static void check_result(const uint8_t *data, size_t size, int n,
                         const struct http_request *req)
{
    if (n < 0) {
        require(n == -1 && !req->keep_alive);
        require(req->status == 400 || req->status == 413 ||
                req->status == 431 || req->status == 501 || req->status == 505);
        return;
    }
    require(req->status == 0);
    if (n == 0) {
        require(size < HTTP_HEAD_MAX);
        return;
    }
    require((size_t)n <= size && n <= HTTP_HEAD_MAX);
    require(data[n - 1] == '\n');
    require(req->method >= HTTP_GET && req->method <= HTTP_OTHER);
    require(!req->metrics || req->method != 0);
}

/* A prefix that ends before the head does is a valid beginning (0); one
 * that holds it gives the same head. */
static void check_prefix(const uint8_t *data, size_t len, int n,
                         const struct http_request *full)
{
    struct http_request req;
    int m = parse_copy(data, len, &req);

    if (n > 0 && len < (size_t)n)
        require(m == 0);
    else if (n > 0)
        require(m == n && same_request(&req, full));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct http_request req, again;
    size_t step;
    int n;

    if (size > INPUT_MAX)
        size = INPUT_MAX;
    n = parse_copy(data, size, &req);
    check_result(data, size, n, &req);
    step = size <= ALL_PREFIXES ? 1 : size / ALL_PREFIXES;
    for (size_t len = 0; len < size; len += step)
        check_prefix(data, len, n, &req);
    if (n > 0) {
        require(parse_copy(data, (size_t)n, &again) == n);
        require(same_request(&req, &again));
    }
    return 0;
}
