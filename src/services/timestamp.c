/* timestamp.c -- the default service: each line comes back as
 * "[DATE] LINE\n", each datagram and each message of a message connection
 * (unixpacket:) as "[DATE] PAYLOAD". */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "services.h"

/* "[DATE] ": what comes before every reply. */
#define HEAD_LEN (CTIME_LEN + 3)
/* The longest reply sent whole: a datagram or a message. */
#define WHOLE_MAX                                                              \
    (SK_DGRAM_MAX > SK_MESSAGE_MAX ? SK_DGRAM_MAX : SK_MESSAGE_MAX)

/* A connection's line splitter, whether the peer has sent its EOF, and
 * how its input is answered, chosen at open: line by line (a stream) or
 * message by message. */
struct stamp {
    struct sk_lines lines;
    bool eof;
    void (*read)(struct sk_conn *c, struct stamp *s, const char *data,
                 size_t len);
};

/* "[DATE] PAYLOAD" in the thread's buffer, for a reply sent whole; NULL
 * when it would be longer than max. */
static const char *stamp_whole(const char *data, size_t len, size_t max)
{
    static __thread char reply[WHOLE_MAX];

    if (max > sizeof(reply) || len > max - HEAD_LEN)
        return NULL;
    reply[0] = '[';
    memcpy(reply + 1, clock_ctime_now(), CTIME_LEN);
    memcpy(reply + 1 + CTIME_LEN, "] ", 2);
    memcpy(reply + HEAD_LEN, data, len);
    return reply;
}

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

static void read_lines(struct sk_conn *c, struct stamp *s, const char *data,
                       size_t len)
{
    int ret = sk_lines_feed(&s->lines, data, len, reply_line, c);

    if (ret == SK_LINES_PAUSE)
        sk_conn_hold_input(c, true); /* until on_drain */
    else if (ret != 0)
        sk_conn_close(c); /* a line over --max-line, or no memory */
}

/* One message, answered by one message: the payload whole, LFs and all,
 * no LF added (as a datagram). A message too long to be answered within
 * SK_MESSAGE_MAX closes the connection, after the replies before it, as a
 * line over --max-line does: the client is not left waiting. Each reply
 * is one write per read, so the connection's own pause (reading stops
 * while the limit is queued) bounds what a client that does not read
 * costs. */
static void read_message(struct sk_conn *c, struct stamp *s, const char *data,
                         size_t len)
{
    const char *reply = stamp_whole(data, len, SK_MESSAGE_MAX);

    if (reply == NULL || sk_conn_write(c, reply, HEAD_LEN + len) < 0)
        sk_conn_close(c);
}

static int timestamp_open(struct sk_conn *c)
{
    struct stamp *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return -1;
    sk_lines_init(&s->lines, service_opts_of(sk_conn_server(c))->max_line);
    s->read = sk_conn_keeps_messages(c) ? read_message : read_lines;
    sk_conn_set_data(c, s);
    return 0;
}

/* Passes on the lines kept at a pause (and, after the EOF, the last
 * piece); reading goes on once every kept byte is answered. A message
 * connection keeps nothing: at its EOF it closes. */
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

    s->read(c, s, data, len);
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

/* A datagram too long to be answered whole is dropped. */
static void timestamp_datagram(struct sk_dgram *d, const char *data, size_t len)
{
    const char *reply = stamp_whole(data, len, SK_DGRAM_MAX);

    if (reply != NULL)
        sk_dgram_reply(d, reply, HEAD_LEN + len);
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
    .summary = "answer each line or message with \"[DATE] \" before it "
               "(default)",
    .handler = &handler,
};
