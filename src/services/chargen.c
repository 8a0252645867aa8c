/* chargen.c -- RFC 864: 72-character lines over the 95 printable ASCII
 * characters, each line starting one character further, until the client
 * goes; a datagram gets one line, and so does each message of a message
 * connection (unixpacket:), its lines going on round the ring. */
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

/* Sends a message connection its next line as one message; the line's
 * number in the cycle is kept in the data pointer. */
static void next_line(struct sk_conn *c)
{
    size_t line = (size_t)(uintptr_t)sk_conn_data(c);
    char reply[CHARGEN_LINE];

    chargen_fill(reply, sizeof(reply), line * CHARGEN_LINE);
    if (sk_conn_write(c, reply, sizeof(reply)) < 0) {
        sk_conn_abort(c);
        return;
    }
    sk_conn_set_data(c, (void *)(uintptr_t)((line + 1) % 95));
}

/* A stream is sent the endless stream, topped up as it drains; a message
 * connection is sent a line per message, and nothing before its first. */
static int chargen_open(struct sk_conn *c)
{
    if (!sk_conn_keeps_messages(c))
        refill(c);
    return 0;
}

/* A stream's input is dropped. A message asks for one line: the
 * connection stops reading while its limit is queued, so a client that
 * sends without reading is never sent more than that. */
static void chargen_read(struct sk_conn *c, const char *data, size_t len)
{
    if (sk_conn_keeps_messages(c))
        next_line(c);
}

static void chargen_drain(struct sk_conn *c)
{
    if (!sk_conn_keeps_messages(c))
        refill(c);
}

/* A half-close does not stop a stream: only the client going does. A
 * message connection that sends no more asks for no more. */
static void chargen_eof(struct sk_conn *c)
{
    if (sk_conn_keeps_messages(c))
        sk_conn_close(c);
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
    .on_read = chargen_read,
    .on_eof = chargen_eof,
    .on_drain = chargen_drain,
    .on_datagram = chargen_datagram,
};

const struct service service_chargen = {
    .name = "chargen",
    .summary = "an endless stream of character lines (RFC 864)",
    .handler = &handler,
};
