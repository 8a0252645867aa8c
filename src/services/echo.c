/* echo.c -- RFC 862: every byte and every datagram sent back. The shortest
 * service there is, and a template for new ones. */
#include "services.h"

static void echo_read(struct sk_conn *c, const char *data, size_t len)
{
    if (sk_conn_write(c, data, len) < 0)
        sk_conn_abort(c);
}

static void echo_datagram(struct sk_dgram *d, const char *data, size_t len)
{
    sk_dgram_reply(d, data, len);
}

static const struct sk_handler handler = {
    .on_read = echo_read,
    .on_datagram = echo_datagram,
};

const struct service service_echo = {
    .name = "echo",
    .summary = "send back every byte and every datagram (RFC 862)",
    .handler = &handler,
};
