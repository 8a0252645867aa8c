/* daytime.c -- RFC 867: the date and time as one line, then close. */
#include <string.h>

#include "services.h"

static int daytime_open(struct sk_conn *c)
{
    const char *now = clock_ctime_now();

    if (sk_conn_write(c, now, strlen(now)) < 0 ||
        sk_conn_write(c, "\r\n", 2) < 0)
        return -1;
    sk_conn_close(c);
    return 0;
}

static void daytime_datagram(struct sk_dgram *d, const char *data, size_t len)
{
    char line[CTIME_LEN + 3];
    size_t n = strlen(clock_ctime_now());

    memcpy(line, clock_ctime_now(), n);
    memcpy(line + n, "\r\n", 2);
    sk_dgram_reply(d, line, n + 2);
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
