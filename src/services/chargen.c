/* chargen.c -- RFC 864: 72-character lines over the 95 printable ASCII
 * characters, each line starting one character further, until the client
 * goes; a datagram gets one line. */
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "services.h"

/* Output kept queued per connection: the kernel gets a full buffer at
 * every writable event without holding much in user space. */
#define CHARGEN_QUEUE (64 * 1024)

static char cycle[CHARGEN_CYCLE];
static pthread_once_t cycle_once = PTHREAD_ONCE_INIT;

/* The 95 lines after which the pattern repeats; line 0 starts with '!'. */
static void build_cycle(void)
{
    for (size_t line = 0; line < 95; line++) {
        char *p = cycle + line * CHARGEN_LINE;
        for (size_t col = 0; col < 72; col++)
            p[col] = (char)(' ' + (line + 1 + col) % 95);
        p[72] = '\r';
        p[73] = '\n';
    }
}

void chargen_fill(char *out, size_t len, size_t pos)
{
    pthread_once(&cycle_once, build_cycle);
    pos %= CHARGEN_CYCLE;
    while (len > 0) {
        size_t n = CHARGEN_CYCLE - pos < len ? CHARGEN_CYCLE - pos : len;
        memcpy(out, cycle + pos, n);
        out += n;
        len -= n;
        pos = 0;
    }
}

/* Keeps CHARGEN_QUEUE bytes queued; the position in the cycle is kept in
 * the connection's data pointer. */
static void refill(struct sk_conn *c)
{
    size_t pos = (size_t)(uintptr_t)sk_conn_data(c);
    char chunk[4096];

    while (sk_conn_pending(c) < CHARGEN_QUEUE) {
        chargen_fill(chunk, sizeof(chunk), pos);
        if (sk_conn_write(c, chunk, sizeof(chunk)) < 0) {
            sk_conn_abort(c);
            return;
        }
        pos = (pos + sizeof(chunk)) % CHARGEN_CYCLE;
    }
    sk_conn_set_data(c, (void *)(uintptr_t)pos);
}

static int chargen_open(struct sk_conn *c)
{
    refill(c);
    return 0;
}

static void chargen_eof(struct sk_conn *c)
{
    /* A half-close does not stop the stream: only the client going does. */
}

static void chargen_datagram(struct sk_dgram *d, const char *data, size_t len)
{
    static __thread size_t line;
    char reply[CHARGEN_LINE];

    chargen_fill(reply, sizeof(reply), line * CHARGEN_LINE);
    line = (line + 1) % 95;
    sk_dgram_reply(d, reply, sizeof(reply));
}

static const struct sk_handler handler = {
    .on_open = chargen_open,
    .on_eof = chargen_eof,
    .on_drain = refill,
    .on_datagram = chargen_datagram,
};

const struct service service_chargen = {
    .name = "chargen",
    .summary = "an endless stream of character lines (RFC 864)",
    .handler = &handler,
};
