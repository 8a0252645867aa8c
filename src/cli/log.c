/* log.c -- the log of serve and relay on stderr: each event of the library
 * (a struct sk_log_record) or of the command itself as one line,
 * "TIMESTAMP sockit: LINE", or with --log-json as one JSON object. Each
 * line is one write(2), so that the lines of several workers never mix. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define LOG_BUF 16384 /* a line of two whole names, JSON-escaped */
#define WARN_PERIOD_MS 1000

bool cli_log_json;

/* A line being built; what does not fit is cut, never overrun. */
struct out {
    char buf[LOG_BUF];
    size_t len;
};

static void put(struct out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void put(struct out *o, const char *fmt, ...)
{
    size_t room = sizeof(o->buf) - 1 - o->len; /* one byte kept for \n */
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(o->buf + o->len, room + 1, fmt, ap);
    va_end(ap);
    if (n > 0)
        o->len += (size_t)n < room ? (size_t)n : room;
}

/* A JSON string: quote, backslash and every byte outside printable ASCII
 * escaped (peer names are the peer's choice). */
static void put_json_string(struct out *o, const char *s)
{
    put(o, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\')
            put(o, "\\%c", *p);
        else if (*p < 0x20 || *p >= 0x7f)
            put(o, "\\u%04x", *p);
        else
            put(o, "%c", *p);
    }
    put(o, "\"");
}

static void put_json_field(struct out *o, const char *key, const char *value)
{
    if (value == NULL)
        return;
    put(o, ",\"%s\":", key);
    put_json_string(o, value);
}

/* 2026-12-01T23:59:59.123Z */
static void timestamp(char *out, size_t size)
{
    struct timespec ts;
    struct tm tm;
    char day[32];

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, size, "%s.%03ldZ", day, ts.tv_nsec / 1000000);
}

static void write_line(struct out *o)
{
    size_t done = 0;
    ssize_t n;

    o->buf[o->len++] = '\n';
    while (done < o->len) {
        n = write(STDERR_FILENO, o->buf + done, o->len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return; /* stderr gone: nothing else to tell it with */
        done += (size_t)n;
    }
}

static void put_json(struct out *o, const char *ts,
                     const struct sk_log_record *r)
{
    put(o, "{\"ts\":\"%s\"", ts);
    put_json_field(o, "event", r->event);
    put_json_field(o, "peer", r->peer);
    put_json_field(o, "local", r->local);
    if (r->event != NULL && strcmp(r->event, "close") == 0)
        put(o,
            ",\"duration_s\":%.3f,\"bytes_in\":%" PRIu64
            ",\"bytes_out\":%" PRIu64,
            r->duration_s, r->bytes_in, r->bytes_out);
    put_json_field(o, "reason", r->reason);
    put_json_field(o, "message", r->line);
    if (r->warning)
        put(o, ",\"warning\":true");
    if (r->suppressed > 0)
        put(o, ",\"suppressed\":%u", r->suppressed);
    put(o, "}");
}

void cli_log_record(void *data, const struct sk_log_record *r)
{
    struct out o = {.len = 0};
    char ts[48];

    (void)data;
    timestamp(ts, sizeof(ts));
    if (cli_log_json) {
        put_json(&o, ts, r);
    } else {
        put(&o, "%s sockit: %s", ts, r->line);
        if (r->suppressed > 0)
            put(&o, " (and %u more like it)", r->suppressed);
    }
    write_line(&o);
}

void cli_log_line(void *data, const char *msg)
{
    struct sk_log_record r = {.event = "log", .line = msg};

    cli_log_record(data, &r);
}

void cli_log_event(const struct sk_log_record *r, const char *fmt, ...)
{
    struct sk_log_record copy = *r;
    char line[2 * SK_ENDPOINT_STRLEN + 256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    copy.line = line;
    cli_log_record(NULL, &copy);
}

bool cli_warn_due(struct sk_ratelimit *rl, struct sk_log_record *r)
{
    if (!sk_ratelimit_pass(rl, cli_now_ms(), WARN_PERIOD_MS, &r->suppressed))
        return false;
    r->warning = true;
    return true;
}
