/* metrics_http.h -- the HTTP/1.1 request heads the --metrics responder
 * reads (metrics_http.c): a strict parser over the caller's buffer, no
 * allocation, restartable with more bytes; the peer's bytes are never
 * trusted. */
#ifndef SOCKIT_METRICS_HTTP_H
#define SOCKIT_METRICS_HTTP_H

#include <stdbool.h>
#include <stddef.h>

/* The longest request head (request line, headers, empty line). */
#define HTTP_HEAD_MAX 8192

enum http_method {
    HTTP_GET = 1,
    HTTP_HEAD,
    HTTP_OTHER, /* any other token: answered 405 */
};

struct http_request {
    enum http_method method;
    bool metrics;    /* the path is /metrics (a query string ignored) */
    bool keep_alive; /* the connection stays open after the answer */
    bool http10;     /* HTTP/1.0: keep-alive is said in the answer */
    int status;      /* with -1: the error to answer (400, 413, 431, 501,
                        505), then close */
};

/* Parses the request head at the start of buf[0..len): returns its length
 * (> 0, through the empty line that ends it), 0 when it is a valid
 * beginning and more bytes are needed, or -1 with req->status set. Empty
 * lines before the request line are skipped (and counted in the length).
 * Reads nothing past len nor past HTTP_HEAD_MAX bytes; a head longer than
 * that is 431. A body is refused (Content-Length other than 0: 413;
 * Transfer-Encoding: 501). */
int http_parse_head(const char *buf, size_t len, struct http_request *req);

#endif
