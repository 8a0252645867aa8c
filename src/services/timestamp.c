/* timestamp.c -- the default service: each line comes back as
 * "[DATE] LINE\n", each datagram as "[DATE] PAYLOAD". */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "services.h"

static int reply_line(void *ctx, const char *line, size_t len)
{
    struct sk_conn *c = ctx;
    const char *now = clock_ctime_now();

    if (sk_conn_write(c, "[", 1) < 0 || sk_conn_write(c, now, CTIME_LEN) < 0 ||
        sk_conn_write(c, "] ", 2) < 0 || sk_conn_write(c, line, len) < 0 ||
        sk_conn_write(c, "\n", 1) < 0)
        return -ENOMEM;
    return 0;
}

static int timestamp_open(struct sk_conn *c)
{
    struct sk_lines *lines = malloc(sizeof(*lines));

    if (lines == NULL)
        return -1;
    sk_lines_init(lines, service_opts_of(sk_conn_server(c))->max_line);
    sk_conn_set_data(c, lines);
    return 0;
}

static void timestamp_read(struct sk_conn *c, const char *data, size_t len)
{
    if (sk_lines_feed(sk_conn_data(c), data, len, reply_line, c) != 0)
        sk_conn_close(c); /* a line over --max-line, or no memory */
}

static void timestamp_eof(struct sk_conn *c)
{
    sk_lines_finish(sk_conn_data(c), reply_line, c);
    sk_conn_close(c);
}

static void timestamp_close(struct sk_conn *c, int status)
{
    struct sk_lines *lines = sk_conn_data(c);

    if (lines != NULL)
        sk_lines_release(lines);
    free(lines);
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
    .on_close = timestamp_close,
    .on_datagram = timestamp_datagram,
};

const struct service service_timestamp = {
    .name = "timestamp",
    .summary = "answer each line or datagram with \"[DATE] \" before it "
               "(default)",
    .handler = &handler,
};
