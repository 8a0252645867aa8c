/* metrics.c -- --metrics ENDPOINT of serve and relay: a second server in
 * the process, one worker on a thread of its own (sk_server_start()),
 * bound before --user drops privileges, deaf to the signals the main
 * server takes, answering HTTP/1.1: GET (or HEAD) /metrics with the
 * counters of the main server's listeners and the families commands
 * registered, 404 for another path, 405 for another method, 400 for what
 * is not HTTP. Requests are answered in order, keep-alive as HTTP/1.1
 * says. A scrape costs per worker and listener, never per client. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "metrics.h"
#include "metrics_http.h"

/* The responder's limits. */
#define METRICS_MAX_CONNS 64
#define METRICS_PER_SOURCE 8 /* so that one host cannot take every slot */
#define METRICS_IDLE_MS 30000
#define METRICS_DRAIN_MS 1000
/* The largest answer queued; the next request waits while a connection
 * has more than PIPELINE_PENDING queued. */
#define METRICS_OUTPUT_MAX (8u << 20)
#define PIPELINE_PENDING (64 * 1024)
/* A request head begun must be whole within this: 408 and closed. */
#define HEAD_TIMEOUT_MS 10000

static struct {
    const char *text; /* --metrics, until prepared */
    bool enabled;
    struct sk_endpoint ep;
    struct sk_listen_options lo;
    struct sk_server *srv;        /* the responder */
    const struct sk_server *main; /* whose counters it shows */
    bool started;
    char **labels; /* of main's listeners */
    size_t nlabels;
    struct cli_metrics body; /* reused: the responder has one worker */
    struct {
        const struct cli_metrics_source *src;
        void *data;
    } sources[CLI_METRICS_SOURCES];
    size_t nsources;
} metrics;

void cli_metrics_option(const char *text)
{
    metrics.text = text;
}

int cli_metrics_add(const struct cli_metrics_source *src, void *data)
{
    if (metrics.nsources == CLI_METRICS_SOURCES)
        return -1;
    metrics.sources[metrics.nsources].src = src;
    metrics.sources[metrics.nsources].data = data;
    metrics.nsources++;
    return 0;
}

const char *cli_metrics_listener(size_t i)
{
    return i < metrics.nlabels ? metrics.labels[i] : NULL;
}

size_t cli_metrics_listener_count(void)
{
    return metrics.nlabels;
}

/* --------------------------------------------------------- answers */

static const char *reason_of(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 413:
        return "Content Too Large";
    case 431:
        return "Request Header Fields Too Large";
    case 501:
        return "Not Implemented";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Internal Server Error";
    }
}

/* The Date header's value (IMF-fixdate), whatever the locale. */
static void http_date(char *out, size_t size)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed",
                                    "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr",
                                       "May", "Jun", "Jul", "Aug",
                                       "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    struct tm tm;

    if (gmtime_r(&now, &tm) == NULL) {
        snprintf(out, size, "Thu, 01 Jan 1970 00:00:00 GMT");
        return;
    }
    snprintf(out, size, "%s, %02d %s %04d %02d:%02d:%02d GMT",
             days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
             tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* Queues the status line, the headers and (but to HEAD) the body.
 * Returns 0 or a negative code (then the connection is closed). */
static int respond(struct sk_conn *c, const struct http_request *req,
                   int status, const char *type, const char *body, size_t len)
{
    char head[512], date[64];
    const char *conn = !req->keep_alive ? "Connection: close\r\n"
                       : req->http10    ? "Connection: keep-alive\r\n"
                                        : "";
    int n, err;

    /* Past what a connection may queue, the body would be cut short
     * after a head that promised it whole. */
    if (len > METRICS_OUTPUT_MAX) {
        status = 500;
        type = "text/plain; charset=utf-8";
        body = "metrics too large to send\n";
        len = strlen(body);
    }
    http_date(date, sizeof(date));
    n = snprintf(head, sizeof(head),
                 "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: %s\r\n"
                 "Content-Length: %zu\r\n%s%s\r\n",
                 status, reason_of(status), date, type, len,
                 status == 405 ? "Allow: GET, HEAD\r\n" : "", conn);
    if ((err = sk_conn_write(c, head, (size_t)n)) < 0)
        return err;
    if (req->method == HTTP_HEAD || len == 0)
        return 0;
    return sk_conn_write(c, body, len);
}

static int respond_text(struct sk_conn *c, const struct http_request *req,
                        int status, const char *text)
{
    return respond(c, req, status, "text/plain; charset=utf-8", text,
                   strlen(text));
}

static const char *error_text(int status)
{
    switch (status) {
    case 404:
        return "not found: the metrics are at /metrics\n";
    case 405:
        return "method not allowed: GET or HEAD\n";
    case 408:
        return "request head not finished in time\n";
    case 413:
        return "no request body is accepted\n";
    case 431:
        return "request head longer than 8192 bytes\n";
    case 501:
        return "no transfer coding is accepted\n";
    case 505:
        return "HTTP/1.1 or HTTP/1.0 only\n";
    default:
        return "malformed request\n";
    }
}

/* The body of a scrape: the build, the listeners, the sources. */
static void scrape(struct cli_metrics *m)
{
    const char *labels[] = {"version", sk_version()};

    m->buf.len = 0;
    m->buf.off = 0;
    m->failed = false;
    cli_metrics_family(m, "sockit_build_info", "gauge",
                       "The version of libsockit serving, as a label.");
    cli_metrics_sample(m, "sockit_build_info", labels, 1, 1);
    cli_metrics_listeners(m, metrics.main);
    for (size_t i = 0; i < metrics.nsources; i++)
        if (metrics.sources[i].src->scrape != NULL)
            metrics.sources[i].src->scrape(metrics.sources[i].data, m);
}

static int answer(struct sk_conn *c, const struct http_request *req)
{
    struct cli_metrics *m = &metrics.body;

    if (req->status != 0)
        return respond_text(c, req, req->status, error_text(req->status));
    if (req->method == HTTP_OTHER)
        return respond_text(c, req, 405, error_text(405));
    if (!req->metrics)
        return respond_text(c, req, 404, error_text(404));
    scrape(m);
    if (m->failed)
        return respond_text(c, req, 500, "out of memory\n");
    return respond(c, req, 200, "text/plain; version=0.0.4",
                   sk_buf_head(&m->buf), m->buf.len);
}

/* ------------------------------------------------------ connections */

struct http_conn {
    struct sk_buf in;      /* what came and is not answered yet */
    struct sk_timer timer; /* HEAD_TIMEOUT_MS for a head begun */
    bool timing;           /* the timer runs */
    bool eof;              /* the client sends nothing more */
    bool done;             /* the last answer is queued: closing */
};

/* A client that sends nothing, or trickles a head out a byte at a time,
 * holds one of the responder's few connections: it has HEAD_TIMEOUT_MS
 * from its accept (then from the first byte after an answer), however
 * often it sends. */
static void head_timer(struct sk_conn *c, struct http_conn *hc, bool on)
{
    if (on && !hc->timing) {
        hc->timing = sk_timer_start(sk_conn_loop(c), &hc->timer,
                                    HEAD_TIMEOUT_MS, 0) == 0;
    } else if (!on && hc->timing) {
        sk_timer_stop(&hc->timer);
        hc->timing = false;
    }
}

static void finish(struct sk_conn *c, struct http_conn *hc)
{
    head_timer(c, hc, false);
    hc->done = true;
    sk_conn_close(c);
}

static void on_head_timeout(struct sk_timer *t)
{
    struct sk_conn *c = t->data;
    struct http_conn *hc = sk_conn_data(c);
    struct http_request req = {.status = 408};

    hc->timing = false;
    respond_text(c, &req, 408, error_text(408));
    finish(c, hc);
}

/* Answers every whole request received, in order, while the answers
 * queued stay short; the rest waits for on_drain, the client held. */
static void serve_requests(struct sk_conn *c, struct http_conn *hc)
{
    struct http_request req;
    int n;

    while (!hc->done) {
        if (sk_conn_pending(c) >= PIPELINE_PENDING) {
            head_timer(c, hc, false); /* the client waits for us */
            sk_conn_hold_input(c, true);
            return;
        }
        n = http_parse_head(sk_buf_head(&hc->in), hc->in.len, &req);
        if (n == 0)
            break;
        if (answer(c, &req) < 0 || n < 0 || !req.keep_alive) {
            finish(c, hc);
            return;
        }
        sk_buf_consume(&hc->in, (size_t)n);
        head_timer(c, hc, false);
    }
    if (hc->done)
        return;
    sk_conn_hold_input(c, false);
    if (hc->eof)
        finish(c, hc); /* a request cut short is dropped */
    else
        head_timer(c, hc, hc->in.len > 0);
}

static int on_open(struct sk_conn *c)
{
    struct http_conn *hc = calloc(1, sizeof(*hc));

    if (hc == NULL)
        return -1;
    sk_buf_init(&hc->in);
    sk_timer_init(&hc->timer, on_head_timeout);
    hc->timer.data = c;
    sk_conn_set_data(c, hc);
    head_timer(c, hc, true);
    return 0;
}

static void on_read(struct sk_conn *c, const char *data, size_t len)
{
    struct http_conn *hc = sk_conn_data(c);

    if (hc->done)
        return;
    if (sk_buf_append(&hc->in, data, len) < 0) {
        sk_conn_abort(c);
        return;
    }
    serve_requests(c, hc);
}

static void on_eof(struct sk_conn *c)
{
    struct http_conn *hc = sk_conn_data(c);

    hc->eof = true;
    serve_requests(c, hc);
}

static void on_drain(struct sk_conn *c)
{
    serve_requests(c, sk_conn_data(c));
}

static void on_close(struct sk_conn *c, int status)
{
    struct http_conn *hc = sk_conn_data(c);

    if (hc == NULL)
        return;
    head_timer(c, hc, false);
    sk_buf_release(&hc->in);
    free(hc);
}

static const struct sk_handler http_handler = {
    .on_open = on_open,
    .on_read = on_read,
    .on_eof = on_eof,
    .on_drain = on_drain,
    .on_close = on_close,
};

/* ------------------------------------------------------------ life */

int cli_metrics_prepare(void)
{
    char text[SK_ENDPOINT_STRLEN];
    int err;

    if (metrics.text == NULL)
        return EXIT_OK;
    if ((err = cli_parse_listen(metrics.text, &metrics.ep, &metrics.lo)) < 0)
        return err == -2 ? EXIT_RUNTIME : EXIT_USAGE;
    if (!sk_endpoint_is_stream(&metrics.ep) ||
        metrics.ep.scheme == SK_UNIXPACKET) {
        sk_endpoint_format(&metrics.ep, text, sizeof(text));
        cli_error("--metrics %s: an HTTP responder needs a stream endpoint",
                  text);
        return EXIT_USAGE;
    }
    metrics.enabled = true;
    return EXIT_OK;
}

/* The labels of main's listeners: their canonical endpoints. */
static int make_labels(const struct sk_server *srv)
{
    size_t n = sk_server_listener_count(srv);
    char text[SK_ENDPOINT_STRLEN];
    struct sk_endpoint ep;

    metrics.labels = calloc(n > 0 ? n : 1, sizeof(*metrics.labels));
    metrics.body.stats = calloc(n > 0 ? n : 1, sizeof(*metrics.body.stats));
    if (metrics.labels == NULL || metrics.body.stats == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        sk_server_listener_endpoint(srv, i, &ep);
        sk_endpoint_format(&ep, text, sizeof(text));
        if ((metrics.labels[i] = strdup(text)) == NULL)
            return -ENOMEM;
        metrics.nlabels++;
    }
    return 0;
}

static int responder_new(void)
{
    struct sk_server_config cfg = {
        .handler = &http_handler,
        .threads = 1,
        .max_conns = METRICS_MAX_CONNS,
        .max_per_source = METRICS_PER_SOURCE,
        .idle_timeout_ms = METRICS_IDLE_MS,
        .output_max = METRICS_OUTPUT_MAX,
        .drain_ms = METRICS_DRAIN_MS,
        .warn = cli_log_line,
    };
    struct sk_endpoint failed = metrics.ep;
    int err;

    if ((err = sk_server_new(&metrics.srv, &cfg)) < 0) {
        cli_error("--metrics: %s", sk_strerror(err));
        return -1;
    }
    if ((err = sk_server_listen_with(metrics.srv, &metrics.ep, &metrics.lo,
                                     &failed)) < 0) {
        bool resolve = err <= SK_EAI_NONAME && err >= SK_EAI_OTHER;
        cli_error_ep(resolve ? "--metrics: resolve" : "--metrics: bind",
                     &failed, err);
        return -1;
    }
    return 0;
}

int cli_metrics_bind(const struct sk_server *srv)
{
    int err;

    if (!metrics.enabled)
        return 0;
    metrics.main = srv;
    if ((err = make_labels(srv)) < 0) {
        cli_error("--metrics: %s", sk_strerror(err));
        return -1;
    }
    if (responder_new() < 0)
        return -1;
    for (size_t i = 0; i < metrics.nsources; i++)
        if (metrics.sources[i].src->bound != NULL &&
            metrics.sources[i].src->bound(metrics.sources[i].data, srv) < 0)
            return -1;
    return 0;
}

int cli_metrics_set_owner(uid_t uid, gid_t gid)
{
    return metrics.srv != NULL ? sk_server_set_owner(metrics.srv, uid, gid) : 0;
}

int cli_metrics_start(void)
{
    int err;

    if (metrics.srv == NULL)
        return 0;
    if ((err = sk_server_start(metrics.srv)) < 0) {
        cli_error("--metrics: %s", sk_strerror(err));
        return -1;
    }
    metrics.started = true;
    return 0;
}

void cli_metrics_print(void)
{
    char text[SK_ENDPOINT_STRLEN];
    struct sk_endpoint ep;

    if (!metrics.started ||
        sk_server_listener_endpoint(metrics.srv, 0, &ep) < 0)
        return;
    sk_endpoint_format(&ep, text, sizeof(text));
    cli_note("metrics on %s", text);
    fflush(stderr);
}

void cli_metrics_end(void)
{
    if (metrics.started) {
        sk_server_stop(metrics.srv);
        sk_server_join(metrics.srv);
        metrics.started = false;
    }
    for (size_t i = 0; metrics.enabled && i < metrics.nsources; i++)
        if (metrics.sources[i].src->end != NULL)
            metrics.sources[i].src->end(metrics.sources[i].data);
    sk_server_free(metrics.srv);
    metrics.srv = NULL;
    sk_tls_free(metrics.lo.tls);
    metrics.lo.tls = NULL;
    for (size_t i = 0; i < metrics.nlabels; i++)
        free(metrics.labels[i]);
    free(metrics.labels);
    free(metrics.body.stats);
    sk_buf_release(&metrics.body.buf);
    metrics.labels = NULL;
    metrics.body.stats = NULL;
    metrics.nlabels = 0;
    metrics.enabled = false;
}
