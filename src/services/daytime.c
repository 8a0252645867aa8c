/* daytime.c -- RFC 867: the date and time as one line, then close. */
#include <string.h>

#include "services.h"

/* The line, CRLF included: one write, so that a message connection
 * (unixpacket) gets it as one message. */
static size_t daytime_line(char out[CTIME_LEN + 3])
{
    size_t n = strlen(clock_ctime_now());

    memcpy(out, clock_ctime_now(), n);
    memcpy(out + n, "\r\n", 2);
    return n + 2;
}

static int daytime_open(struct sk_conn *c)
{
    char line[CTIME_LEN + 3];

    if (sk_conn_write(c, line, daytime_line(line)) < 0)
        return -1;
    sk_conn_close(c);
    return 0;
}

static void daytime_datagram(struct sk_dgram *d, const char *data, size_t len)
{
    char line[CTIME_LEN + 3];

    sk_dgram_reply(d, line, daytime_line(line));
}

static const struct sk_handler handler = {
    .on_open = daytime_open,
    .on_datagram = daytime_datagram,
};

const struct service service_daytime = {
    .name = "daytime",
    .summary = "the local date and time as one line, then close (RFC 867)",
    .handler = &handler,
};
