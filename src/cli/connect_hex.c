/* connect_hex.c -- `sockit connect -x`: a hex dump on stderr of the bytes
 * sent and received, as they move. Each call dumps one chunk (a write to
 * the socket, a read from it, a datagram, a message) starting a fresh line,
 * one line per 16 bytes, in the layout of `hexdump -C` without its bars:
 *
 *   > 00000000  68 65 6c 6c 6f 0a                                 hello.
 *
 * the direction ('>' sent, '<' received), the offset of the line's first
 * byte within that direction (8 hex digits), the bytes (an extra space
 * after the eighth), then each byte as ASCII, '.' for any not printable.
 * The offsets are the session's (connect_hex_reset() starts them again).
 * One thread at a time: the one that runs the session. */
#include <stdio.h>

#include "connect.h"

#define HEX_PER_LINE 16

/* Bytes dumped so far, sent and received. */
static unsigned long long offsets[2];

void connect_hex_reset(void)
{
    offsets[0] = offsets[1] = 0;
}

/* One line of at most HEX_PER_LINE bytes at offset. */
static void hex_line(char dir, unsigned long long offset,
                     const unsigned char *p, size_t n)
{
    char line[128];
    size_t len = (size_t)snprintf(line, sizeof(line), "%c %08llx  ", dir,
                                  offset & 0xffffffffull);

    for (size_t i = 0; i < HEX_PER_LINE; i++) {
        if (i < n)
            len +=
                (size_t)snprintf(line + len, sizeof(line) - len, "%02x ", p[i]);
        else
            len += (size_t)snprintf(line + len, sizeof(line) - len, "   ");
        if (i == HEX_PER_LINE / 2 - 1)
            line[len++] = ' ';
    }
    line[len++] = ' ';
    for (size_t i = 0; i < n; i++)
        line[len++] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '.';
    line[len++] = '\n';
    fwrite(line, 1, len, stderr);
}

void connect_hex(char dir, const void *data, size_t len)
{
    const unsigned char *p = data;
    unsigned long long *offset = &offsets[dir == '<'];

    while (len > 0) {
        size_t n = len < HEX_PER_LINE ? len : HEX_PER_LINE;
        hex_line(dir, *offset, p, n);
        *offset += n;
        p += n;
        len -= n;
    }
    fflush(stderr);
}
