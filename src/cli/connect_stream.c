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
 * (`| head`) ends quietly. -x dumps what is written to the connection and
 * what it reads. The same pump serves the connections a listener accepts
 * (-l, connect_listen.c): stdin's state goes on from one to the next (-k),
 * so that once stdin has ended each new client has its sending side shut
 * at once. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cli.h"
#include "connect.h"

#define CHUNK (64 * 1024)

/* A message, with a LF after it unless it ends in one. */
static int print_message(const char *data, size_t len)
{
    return connect_print_reply(data, len, false);
}

/* Writes len bytes to the connection, dumped first under -x. */
static int write_out(struct connect_pump *p, const char *data, size_t len)
{
    if (p->o->hex)
        connect_hex('>', data, len);
    return sk_conn_write(p->c, data, len);
}

static int send_bytes(struct connect_pump *p, const char *data, size_t len)
{
    static char crlf[2 * CHUNK];

    if (!p->o->crlf)
        return write_out(p, data, len);
    return write_out(p, crlf, connect_crlf(data, len, crlf, &p->prev_cr));
}

/* Something moved: the idle time starts again. */
static void moved(struct connect_pump *p)
{
    if (p->o->idle_ms > 0)
        sk_timer_start(p->loop, &p->idle, p->o->idle_ms, 0);
}

/* Output still queued, here or in the kernel (TIOCOUTQ), that went down
 * since the last look is moving too (stdin waits for it): only a queue
 * that stood still is idle. */
static void on_idle(struct sk_timer *t)
{
    struct connect_pump *p = t->data;
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
    struct connect_pump *p = ctx;
    int err = len > 0 ? write_out(p, line, len) : 0;

    if (err < 0)
        return err;
    return sk_conn_pending(p->c) >= sk_conn_output_max(p->c) ? SK_LINES_PAUSE
                                                             : 0;
}

/* A line longer than SK_MESSAGE_MAX fails with -EMSGSIZE. */
static int send_lines(struct connect_pump *p, const char *data, size_t len)
{
    return sk_lines_feed(&p->lines, data, len, send_line, p);
}

/* Ends the connection for err, which connect reports. */
static void give_up(struct connect_pump *p, int err)
{
    if (p->status == 0)
        p->status = err;
    sk_conn_abort(p->c);
}

static void maybe_done(struct connect_pump *p)
{
    if (p->peer_eof && (p->in_eof || p->in_tty))
        sk_conn_close(p->c);
}

/* The queue takes more, and no lines wait in the splitter. */
static bool has_room(const struct connect_pump *p)
{
    return sk_conn_pending(p->c) < sk_conn_output_max(p->c) &&
           !sk_lines_paused(&p->lines);
}

static void read_stdin(struct connect_pump *p);

/* Reads stdin again: a file now, a pollable stdin once it is readable (a
 * blocking read would hold the replies until the next line is typed). */
static void want_stdin(struct connect_pump *p)
{
    if (p->in_watched)
        sk_io_set(&p->in, has_room(p) ? SK_READ : 0);
    else
        read_stdin(p);
}

/* Passes on the lines a pause kept (at the end of stdin the last one,
 * unterminated, too; a stream keeps none), then reads stdin again or, at
 * its end, shuts the sending side down. */
static void go_on(struct connect_pump *p)
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

static void stdin_ended(struct connect_pump *p)
{
    p->in_eof = true;
    if (p->in_watched)
        sk_io_stop(&p->in);
    go_on(p);
}

/* Reads stdin while the connection takes more. Returns after one read for
 * a pollable stdin, and reads on until the queue is full for a file. */
static void read_stdin(struct connect_pump *p)
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

static void announce(const struct connect_pump *p)
{
    const struct sk_endpoint *peer;
    char text[SK_ENDPOINT_STRLEN];

    if (!cli_verbose)
        return;
    if (p->accepted) {
        peer = sk_conn_peer(p->c);
        if (peer == NULL || sk_endpoint_format(peer, text, sizeof(text)) < 0)
            snprintf(text, sizeof(text), "?");
        fprintf(stderr, "sockit: connection from %s\n", text);
        return;
    }
    sk_endpoint_format(p->ep, text, sizeof(text));
    if (sk_conn_tls_version(p->c) != NULL)
        fprintf(stderr, "sockit: connected to %s (%s, %s%s)\n", text,
                sk_conn_tls_version(p->c), sk_conn_tls_cipher(p->c),
                sk_conn_tls_resumed(p->c) ? ", resumed" : "");
    else
        fprintf(stderr, "sockit: connected to %s\n", text);
}

/* A new connection: the state of the last one (-k) is left behind,
 * stdin's kept. Once stdin has ended, the sending side is shut at once. */
static int on_open(struct sk_conn *c)
{
    struct connect_pump *p = sk_conn_data(c);

    if (p == NULL) { /* accepted: the pump is the server's data */
        p = sk_server_data(sk_conn_server(c));
        sk_conn_set_data(c, p);
    }
    p->c = c;
    p->loop = sk_conn_loop(c);
    p->peer_eof = p->idled = false;
    p->idle_pending = 0;
    p->status = 0;
    if (p->o->keep)
        connect_hex_reset();
    announce(p);
    p->send = sk_conn_keeps_messages(c) ? send_lines : send_bytes;
    p->print = sk_conn_keeps_messages(c) ? print_message : connect_put_out;
    p->in_tty = isatty(0);
    p->in.data = p;
    p->in_watched = !p->in_eof && sk_io_start(p->loop, &p->in, 0, SK_READ,
                                              false, on_stdin) == 0;
    moved(p);
    if (p->in_eof || sk_lines_paused(&p->lines))
        go_on(p);
    else if (!p->in_watched)
        read_stdin(p); /* a regular file: read on as the queue drains */
    return 0;
}

static void on_read(struct sk_conn *c, const char *data, size_t len)
{
    struct connect_pump *p = sk_conn_data(c);
    int err;

    if (p->o->hex)
        connect_hex('<', data, len);
    err = p->print(data, len);

    if (err < 0) {
        p->out_err = err;
        sk_conn_abort(c);
        return;
    }
    moved(p);
}

static void on_eof(struct sk_conn *c)
{
    struct connect_pump *p = sk_conn_data(c);
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
    struct connect_pump *p = sk_conn_data(c);

    moved(p);
    if (!p->in_eof || sk_lines_paused(&p->lines))
        go_on(p);
}

static void on_close(struct sk_conn *c, int status)
{
    struct connect_pump *p = sk_conn_data(c);

    if (p == NULL)
        return; /* accepted, and never opened */
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
    p->in_watched = false;
    if (p->ended != NULL)
        p->ended(p, c);
    else
        sk_loop_stop(p->loop);
}

const struct sk_handler connect_pump_handler = {
    .on_open = on_open,
    .on_read = on_read,
    .on_eof = on_eof,
    .on_drain = on_drain,
    .on_close = on_close,
};

void connect_pump_init(struct connect_pump *p, const struct sk_endpoint *ep,
                       const struct connect_opts *o)
{
    *p = (struct connect_pump){.ep = ep, .o = o};
    sk_lines_init(&p->lines, SK_MESSAGE_MAX);
    sk_timer_init(&p->idle, on_idle);
    p->idle.data = p;
}

void connect_pump_release(struct connect_pump *p)
{
    sk_timer_stop(&p->idle);
    sk_lines_release(&p->lines);
}

int connect_stream(const struct sk_endpoint *ep, struct sk_tls *tls,
                   const struct connect_opts *co)
{
    struct connect_pump p;
    struct sk_conn_options o = {
        .handler = &connect_pump_handler,
        .data = &p,
        .tls = tls,
        .timeout_ms = co->timeout_ms,
        .keep_reading = true, /* stdin waits for room, never the socket */
        .source = co->source};
    struct sk_loop *loop;
    int err;

    if ((err = sk_loop_new(&loop)) < 0)
        return err;
    connect_pump_init(&p, ep, co);
    p.loop = loop;
    err = sk_conn_connect(loop, ep, &o, &p.c);
    if (err == 0)
        err = sk_loop_run(loop);
    connect_pump_release(&p);
    sk_loop_free(loop);
    if (err < 0)
        return err;
    if (p.out_err < 0)
        return connect_stdout_failed(p.out_err);
    return p.status == -EPIPE ? -ECONNRESET : p.status;
}
