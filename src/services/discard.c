/* discard.c -- RFC 863: read everything, answer nothing. */
#include "services.h"

static int discard_open(struct sk_conn *c)
{
    return 0; /* without on_read, the server drops what it reads */
}

static void discard_datagram(struct sk_dgram *d, const char *data, size_t len)
{
}

static const struct sk_handler handler = {
    .on_open = discard_open,
    .on_datagram = discard_datagram,
};

const struct service service_discard = {
    .name = "discard",
    .summary = "read and drop everything (RFC 863)",
    .handler = &handler,
};
