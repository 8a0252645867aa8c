/* connect_stream.c -- the stream side of `sockit connect`: stdin to the
 * connection and the connection to stdout, on a loop with an outbound
 * connection (TLS or not); at the end of stdin the sending side is shut
 * down (FIN or close_notify) and reading goes on until the peer closes. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "connect.h"

#define CHUNK (64 * 1024)

struct pump {
    struct sk_loop *loop;
    struct sk_conn *c;
    const struct sk_endpoint *ep;
    struct sk_io in;
    bool in_watched; /* stdin is pollable (not a regular file) */
    bool in_eof, in_tty, peer_eof;
    int status;
};

/* Writes everything to stdout, waiting when it is full. */
static int write_out(const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(1, data, len);
        if (n < 0 && errno == EAGAIN) {
            struct pollfd p = {.fd = 1, .events = POLLOUT};
            poll(&p, 1, -1);
            continue;
        }
        if (n < 0 && errno != EINTR)
            return -errno;
        if (n > 0) {
            data += n;
            len -= (size_t)n;
        }
    }
    return 0;
}

static void maybe_done(struct pump *p)
{
    if (p->peer_eof && (p->in_eof || p->in_tty))
        sk_conn_close(p->c);
}

static void stdin_ended(struct pump *p)
{
    p->in_eof = true;
    if (p->in_watched)
        sk_io_stop(&p->in);
    sk_conn_shutdown(p->c);
    maybe_done(p);
}

/* Reads stdin while the connection takes more. Returns after one read for
 * a pollable stdin, and reads on until the queue is full for a file. */
static void read_stdin(struct pump *p)
{
    static char buf[CHUNK];

    while (!p->in_eof && sk_conn_pending(p->c) < sk_conn_output_max(p->c)) {
        ssize_t n = read(0, buf, sizeof(buf));
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0) {
            stdin_ended(p);
            return;
        }
        if (sk_conn_write(p->c, buf, (size_t)n) < 0) {
            sk_conn_abort(p->c);
            return;
        }
        if (p->in_watched)
            break;
    }
    if (p->in_watched && !p->in_eof)
        sk_io_set(&p->in, sk_conn_pending(p->c) < sk_conn_output_max(p->c)
                              ? SK_READ
                              : 0);
}

static void on_stdin(struct sk_io *io, unsigned events)
{
    (void)events;
    read_stdin(io->data);
}

static void announce(const struct pump *p)
{
    char text[SK_ENDPOINT_STRLEN];

    if (!cli_verbose)
        return;
    sk_endpoint_format(p->ep, text, sizeof(text));
    if (sk_conn_tls_version(p->c) != NULL)
        fprintf(stderr, "sockit: connected to %s (%s, %s%s)\n", text,
                sk_conn_tls_version(p->c), sk_conn_tls_cipher(p->c),
                sk_conn_tls_resumed(p->c) ? ", resumed" : "");
    else
        fprintf(stderr, "sockit: connected to %s\n", text);
}

static int on_open(struct sk_conn *c)
{
    struct pump *p = sk_conn_data(c);

    announce(p);
    p->in_tty = isatty(0);
    p->in.data = p;
    p->in_watched =
        sk_io_start(p->loop, &p->in, 0, SK_READ, false, on_stdin) == 0;
    if (!p->in_watched)
        read_stdin(p); /* a regular file: read on as the queue drains */
    return 0;
}

static void on_read(struct sk_conn *c, const char *data, size_t len)
{
    struct pump *p = sk_conn_data(c);
    int err = write_out(data, len);

    if (err < 0) {
        p->status = err;
        sk_conn_abort(c);
    }
}

static void on_eof(struct sk_conn *c)
{
    struct pump *p = sk_conn_data(c);
    char text[SK_ENDPOINT_STRLEN];

    /* A TLS server that closed without close_notify may have been cut. */
    if (sk_conn_error(c)[0] != '\0' && !cli_quiet) {
        sk_endpoint_format(p->ep, text, sizeof(text));
        cli_error("connect %s: %s (the data may be cut short)", text,
                  sk_conn_error(c));
    }

    p->peer_eof = true;
    maybe_done(p);
}

static void on_drain(struct sk_conn *c)
{
    read_stdin(sk_conn_data(c));
}

static void on_close(struct sk_conn *c, int status)
{
    struct pump *p = sk_conn_data(c);

    if (p->status == 0)
        p->status = status;
    if (p->status < 0 && sk_conn_error(c)[0] != '\0') {
        char text[SK_ENDPOINT_STRLEN];
        sk_endpoint_format(p->ep, text, sizeof(text));
        cli_error("connect %s: %s", text, sk_conn_error(c));
        p->status = 1; /* said */
    }
    if (p->in_watched)
        sk_io_stop(&p->in);
    sk_loop_stop(p->loop);
}

static const struct sk_handler handler = {
    .on_open = on_open,
    .on_read = on_read,
    .on_eof = on_eof,
    .on_drain = on_drain,
    .on_close = on_close,
};

int connect_stream(const struct sk_endpoint *ep, struct sk_tls *tls,
                   unsigned timeout_ms)
{
    struct pump p = {.ep = ep};
    struct sk_conn_options o = {
        .handler = &handler,
        .data = &p,
        .tls = tls,
        .timeout_ms = timeout_ms,
        .keep_reading = true}; /* stdin waits for room, never the socket */
    int err;

    if ((err = sk_loop_new(&p.loop)) < 0)
        return err;
    err = sk_conn_connect(p.loop, ep, &o, &p.c);
    if (err == 0)
        err = sk_loop_run(p.loop);
    sk_loop_free(p.loop);
    if (err < 0)
        return err;
    return p.status == -EPIPE ? -ECONNRESET : p.status;
}
