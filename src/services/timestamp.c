/* timestamp.c -- the default service: each line comes back as
 * "[DATE] LINE\n", each datagram as "[DATE] PAYLOAD". */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "services.h"

/* A connection's line splitter, and whether the peer has sent its EOF. */
struct stamp {
    struct sk_lines lines;
    bool eof;
};

/* Answers one line; pauses the splitter once the queued output reaches
 * its limit, so a client that does not read costs at most the limit and
 * one read of kept input. */
static int reply_line(void *ctx, const char *line, size_t len)
{
    struct sk_conn *c = ctx;
    const char *now = clock_ctime_now();
    int err;

    if ((err = sk_conn_write(c, "[", 1)) < 0 ||
        (err = sk_conn_write(c, now, CTIME_LEN)) < 0 ||
        (err = sk_conn_write(c, "] ", 2)) < 0 ||
        (err = sk_conn_write(c, line, len)) < 0 ||
        (err = sk_conn_write(c, "\n", 1)) < 0)
        return err;
    return sk_conn_pending(c) >= sk_conn_output_max(c) ? SK_LINES_PAUSE : 0;
}

static int timestamp_open(struct sk_conn *c)
{
    struct stamp *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return -1;
    sk_lines_init(&s->lines, service_opts_of(sk_conn_server(c))->max_line);
    sk_conn_set_data(c, s);
    return 0;
}

/* Passes on the lines kept at a pause (and, after the EOF, the last
 * piece); reading goes on once every kept byte is answered. */
static void go_on(struct sk_conn *c, struct stamp *s)
{
    int ret = s->eof ? sk_lines_finish(&s->lines, reply_line, c)
                     : sk_lines_resume(&s->lines, reply_line, c);

    if (ret == SK_LINES_PAUSE)
        return;
    if (ret != 0 || s->eof)
        sk_conn_close(c);
    else
        sk_conn_hold_input(c, false);
}

static void timestamp_read(struct sk_conn *c, const char *data, size_t len)
{
    struct stamp *s = sk_conn_data(c);
    int ret = sk_lines_feed(&s->lines, data, len, reply_line, c);

    if (ret == SK_LINES_PAUSE)
        sk_conn_hold_input(c, true); /* until on_drain */
    else if (ret != 0)
        sk_conn_close(c); /* a line over --max-line, or no memory */
}

static void timestamp_drain(struct sk_conn *c)
{
    struct stamp *s = sk_conn_data(c);

    if (sk_lines_paused(&s->lines))
        go_on(c, s);
}

/* An EOF while paused is finished by on_drain, after the kept lines. */
static void timestamp_eof(struct sk_conn *c)
{
    struct stamp *s = sk_conn_data(c);

    s->eof = true;
    if (!sk_lines_paused(&s->lines))
        go_on(c, s);
}

static void timestamp_close(struct sk_conn *c, int status)
{
    struct stamp *s = sk_conn_data(c);

    if (s != NULL)
        sk_lines_release(&s->lines);
    free(s);
}

static void timestamp_datagram(struct sk_dgram *d, const char *data, size_t len)
{
    static __thread char reply[SK_DGRAM_MAX];
    size_t head = CTIME_LEN + 3;

    if (len > sizeof(reply) - head)
        return;
    reply[0] = '[';
    memcpy(reply + 1, clock_ctime_now(), CTIME_LEN);
    memcpy(reply + 1 + CTIME_LEN, "] ", 2);
    memcpy(reply + head, data, len);
    sk_dgram_reply(d, reply, head + len);
}

static const struct sk_handler handler = {
    .on_open = timestamp_open,
    .on_read = timestamp_read,
    .on_eof = timestamp_eof,
    .on_drain = timestamp_drain,
    .on_close = timestamp_close,
    .on_datagram = timestamp_datagram,
};

const struct service service_timestamp = {
    .name = "timestamp",
    .summary = "answer each line or datagram with \"[DATE] \" before it "
               "(default)",
    .handler = &handler,
};
