/* connect_stream.c -- the stream side of `sockit connect`: stdin to the
 * connection and the connection to stdout, on a loop with an outbound
 * connection (TLS or not); at the end of stdin the sending side is shut
 * down (FIN or close_notify) and reading goes on until the peer closes.
 * A message connection (unixpacket:) is sent each line of stdin, without
 * its LF, as one message, and each message it sends is printed with a LF
 * after it unless it ends in one, as datagrams are; an empty line sends
 * nothing, as an empty message would read as the end of the stream.
 * -C puts a CR before each LF of a byte stream that has none; -i ends the
 * session, as a clean end, once nothing has moved either way that long. A
 * failed stdout is its own error, never the connection's: a closed pipe
 * (`| head`) ends quietly. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cli.h"
#include "connect.h"

#define CHUNK (64 * 1024)

/* How stdin is sent and what comes back is printed, chosen at open: as
 * bytes, or by line and by message. send returns 0, SK_LINES_PAUSE (the
 * rest kept until the queue drains) or a negative errno. */
struct pump {
    struct sk_loop *loop;
    struct sk_conn *c;
    const struct sk_endpoint *ep;
    const struct connect_opts *o;
    struct sk_timer idle; /* -i */
    size_t idle_pending;  /* output queued at the last -i expiry */
    struct sk_io in;
    struct sk_lines lines; /* stdin's, on a message connection */
    int (*send)(struct pump *p, const char *data, size_t len);
    int (*print)(const char *data, size_t len);
    bool in_watched; /* stdin is pollable (not a regular file) */
    bool in_eof, in_tty, peer_eof;
    bool prev_cr; /* -C: the last byte sent was a CR */
    bool idled;   /* -i expired: a clean end */
    int out_err;  /* a failed write to stdout */
    int status;
};

/* A message, with a LF after it unless it ends in one. */
static int print_message(const char *data, size_t len)
{
    int err = connect_put_out(data, len);

    if (err == 0 && (len == 0 || data[len - 1] != '\n'))
        err = connect_put_out("\n", 1);
    return err;
}

static int send_bytes(struct pump *p, const char *data, size_t len)
{
    static char crlf[2 * CHUNK];

    if (!p->o->crlf)
        return sk_conn_write(p->c, data, len);
    return sk_conn_write(p->c, crlf,
                         connect_crlf(data, len, crlf, &p->prev_cr));
}

/* Something moved: the idle time starts again. */
static void moved(struct pump *p)
{
    if (p->o->idle_ms > 0)
        sk_timer_start(p->loop, &p->idle, p->o->idle_ms, 0);
}

/* Output still queued, here or in the kernel (TIOCOUTQ), that went down
 * since the last look is moving too (stdin waits for it): only a queue
 * that stood still is idle. */
static void on_idle(struct sk_timer *t)
{
    struct pump *p = t->data;
    size_t pending = sk_conn_pending(p->c);
    int fd = sk_conn_fd(p->c), unsent = 0;

    if (fd >= 0 && ioctl(fd, TIOCOUTQ, &unsent) == 0 && unsent > 0)
        pending += (size_t)unsent;

    if (pending > 0 && pending != p->idle_pending) {
        p->idle_pending = pending;
        moved(p);
        return;
    }
    p->idled = true;
    sk_conn_abort(p->c);
}

/* One line of stdin as one message; a full queue pauses the splitter. */
static int send_line(void *ctx, const char *line, size_t len)
{
    struct pump *p = ctx;
    int err = len > 0 ? sk_conn_write(p->c, line, len) : 0;

    if (err < 0)
        return err;
    return sk_conn_pending(p->c) >= sk_conn_output_max(p->c) ? SK_LINES_PAUSE
                                                             : 0;
}

/* A line longer than SK_MESSAGE_MAX fails with -EMSGSIZE. */
static int send_lines(struct pump *p, const char *data, size_t len)
{
    return sk_lines_feed(&p->lines, data, len, send_line, p);
}

/* Ends the connection for err, which connect reports. */
static void give_up(struct pump *p, int err)
{
    if (p->status == 0)
        p->status = err;
    sk_conn_abort(p->c);
}

static void maybe_done(struct pump *p)
{
    if (p->peer_eof && (p->in_eof || p->in_tty))
        sk_conn_close(p->c);
}

/* The queue takes more, and no lines wait in the splitter. */
static bool has_room(const struct pump *p)
{
    return sk_conn_pending(p->c) < sk_conn_output_max(p->c) &&
           !sk_lines_paused(&p->lines);
}

static void read_stdin(struct pump *p);

/* Reads stdin again: a file now, a pollable stdin once it is readable (a
 * blocking read would hold the replies until the next line is typed). */
static void want_stdin(struct pump *p)
{
    if (p->in_watched)
        sk_io_set(&p->in, has_room(p) ? SK_READ : 0);
    else
        read_stdin(p);
}

/* Passes on the lines a pause kept (at the end of stdin the last one,
 * unterminated, too; a stream keeps none), then reads stdin again or, at
 * its end, shuts the sending side down. */
static void go_on(struct pump *p)
{
    int ret = p->in_eof ? sk_lines_finish(&p->lines, send_line, p)
                        : sk_lines_resume(&p->lines, send_line, p);

    if (ret == SK_LINES_PAUSE)
        return;
    if (ret < 0) {
        give_up(p, ret);
    } else if (!p->in_eof) {
        want_stdin(p);
    } else {
        sk_conn_shutdown(p->c);
        maybe_done(p);
    }
}

static void stdin_ended(struct pump *p)
{
    p->in_eof = true;
    if (p->in_watched)
        sk_io_stop(&p->in);
    go_on(p);
}

/* Reads stdin while the connection takes more. Returns after one read for
 * a pollable stdin, and reads on until the queue is full for a file. */
static void read_stdin(struct pump *p)
{
    static char buf[CHUNK];
    int ret;

    while (!p->in_eof && has_room(p)) {
        ssize_t n = read(0, buf, sizeof(buf));
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0) {
            stdin_ended(p);
            return;
        }
        moved(p);
        if ((ret = p->send(p, buf, (size_t)n)) < 0) {
            give_up(p, ret);
            return;
        }
        if (p->in_watched)
            break;
    }
    if (p->in_watched && !p->in_eof)
        want_stdin(p);
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
    p->send = sk_conn_keeps_messages(c) ? send_lines : send_bytes;
    p->print = sk_conn_keeps_messages(c) ? print_message : connect_put_out;
    p->in_tty = isatty(0);
    p->in.data = p;
    p->in_watched =
        sk_io_start(p->loop, &p->in, 0, SK_READ, false, on_stdin) == 0;
    moved(p);
    if (!p->in_watched)
        read_stdin(p); /* a regular file: read on as the queue drains */
    return 0;
}

static void on_read(struct sk_conn *c, const char *data, size_t len)
{
    struct pump *p = sk_conn_data(c);
    int err = p->print(data, len);

    if (err < 0) {
        p->out_err = err;
        sk_conn_abort(c);
        return;
    }
    moved(p);
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
    struct pump *p = sk_conn_data(c);

    moved(p);
    if (!p->in_eof || sk_lines_paused(&p->lines))
        go_on(p);
}

static void on_close(struct sk_conn *c, int status)
{
    struct pump *p = sk_conn_data(c);

    sk_timer_stop(&p->idle);
    if (p->out_err < 0 || p->idled) {
        p->status = 0; /* ended here, not by the connection */
    } else if (p->status == 0) {
        p->status = status;
    }
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
                   const struct connect_opts *co)
{
    struct pump p = {.ep = ep, .o = co};
    struct sk_conn_options o = {
        .handler = &handler,
        .data = &p,
        .tls = tls,
        .timeout_ms = co->timeout_ms,
        .keep_reading = true}; /* stdin waits for room, never the socket */
    int err;

    if ((err = sk_loop_new(&p.loop)) < 0)
        return err;
    sk_lines_init(&p.lines, SK_MESSAGE_MAX);
    sk_timer_init(&p.idle, on_idle);
    p.idle.data = &p;
    err = sk_conn_connect(p.loop, ep, &o, &p.c);
    if (err == 0)
        err = sk_loop_run(p.loop);
    sk_timer_stop(&p.idle);
    sk_loop_free(p.loop);
    sk_lines_release(&p.lines);
    if (err < 0)
        return err;
    if (p.out_err < 0)
        return connect_stdout_failed(p.out_err);
    return p.status == -EPIPE ? -ECONNRESET : p.status;
}
