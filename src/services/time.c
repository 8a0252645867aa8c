/* time.c -- RFC 868: four bytes, the seconds since 1900 UTC, then close. */
#include "services.h"

static int time_open(struct sk_conn *c)
{
    unsigned char now[4];

    clock_rfc868_bytes(time(NULL), now);
    if (sk_conn_write(c, now, sizeof(now)) < 0)
        return -1;
    sk_conn_close(c);
    return 0;
}

static void time_datagram(struct sk_dgram *d, const char *data, size_t len)
{
    unsigned char now[4];

    clock_rfc868_bytes(time(NULL), now);
    sk_dgram_reply(d, now, sizeof(now));
}

static const struct sk_handler handler = {
    .on_open = time_open,
    .on_datagram = time_datagram,
};

const struct service service_time = {
    .name = "time",
    .summary = "seconds since 1900 as 4 bytes, then close (RFC 868)",
    .handler = &handler,
};
