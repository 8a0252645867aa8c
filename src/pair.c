/* pair.c -- two stream sockets joined: each direction moves bytes through
 * a pipe with splice(2) (read/write with a buffer where splice does not
 * apply), passes a half-close on, and stops reading while the other side
 * is not taking what was read.
 *
 * A SEQPACKET socket (unixpacket:) keeps message boundaries, which splice
 * and a buffer filled by several reads would not: a direction with one at
 * either end moves one message at a time, read whole into an empty buffer
 * (one longer than SK_MESSAGE_MAX ends the pair, as it closes a
 * connection) and written whole before the next is read. From a byte
 * stream, each read (at most SK_MESSAGE_MAX bytes) is one message; to
 * one, a message is just its bytes. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* Bytes in flight per direction: the pipe's size, or the buffer's. */
#define PUMP_CAP (256 * 1024)
/* Messages moved per readable event, when the destination takes each at
 * once, before the loop sees to other sockets. */
#define MESSAGE_BATCH 64

struct pump {
    int from, to; /* indexes of the sockets in pair->io */
    int pipe[2];  /* -1 without splice */
    char *buf;    /* the read/write buffer without splice */
    size_t off, queued;
    bool full; /* the pipe refused more (it holds pages, not bytes) */
    bool eof, shut;
    bool messages;      /* a SEQPACKET end: one message in the buffer */
    bool from_messages; /* the source is one: read with MSG_TRUNC */
    uint64_t bytes;
};

struct sk_pair {
    struct sk_loop *loop;
    struct sk_io io[2];
    struct pump dir[2]; /* dir[0]: a to b, dir[1]: b to a */
    struct sk_timer idle;
    uint64_t idle_ms, last_active;
    sk_pair_fn done;
    void *data;
    bool finished;
};

static void pump_close_pipe(struct pump *p)
{
    if (p->pipe[0] >= 0) {
        close(p->pipe[0]);
        close(p->pipe[1]);
        p->pipe[0] = p->pipe[1] = -1;
    }
}

static bool keeps_messages(int fd)
{
    int type = 0;
    socklen_t len = sizeof(type);

    return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 &&
           type == SOCK_SEQPACKET;
}

static int pump_init(struct pump *p, int from, int to, const int fds[2])
{
    *p = (struct pump){.from = from, .to = to, .pipe = {-1, -1}};
    p->from_messages = keeps_messages(fds[from]);
    p->messages = p->from_messages || keeps_messages(fds[to]);
    if (p->messages)
        return (p->buf = malloc(SK_MESSAGE_MAX)) != NULL ? 0 : -ENOMEM;
    if (pipe2(p->pipe, O_NONBLOCK | O_CLOEXEC) < 0)
        return -errno;
    /* A larger pipe moves more per call; the default still works. */
    fcntl(p->pipe[1], F_SETPIPE_SZ, PUMP_CAP);
    return 0;
}

/* Falls back to read/write for this direction (splice said EINVAL). */
static int pump_use_buffer(struct pump *p)
{
    pump_close_pipe(p);
    p->buf = malloc(PUMP_CAP);
    return p->buf != NULL ? 0 : -ENOMEM;
}

static void finish(struct sk_pair *pair, int status)
{
    if (pair->finished)
        return;
    pair->finished = true;
    sk_timer_stop(&pair->idle);
    for (int i = 0; i < 2; i++) {
        sk_io_stop(&pair->io[i]);
        close(pair->io[i].fd);
        pump_close_pipe(&pair->dir[i]);
        free(pair->dir[i].buf);
    }
    pair->done(pair, status, pair->data);
    free(pair);
}

/* One message into the empty buffer: from a SEQPACKET source whole, its
 * real length told by MSG_TRUNC (one too long fails with EMSGSIZE); from
 * a byte stream as much as one message holds. Returns as recv(). */
static ssize_t read_message(struct pump *p, int fd)
{
    ssize_t n;

    if (p->queued > 0) {
        errno = EAGAIN;
        return -1;
    }
    n = recv(fd, p->buf, SK_MESSAGE_MAX, p->from_messages ? MSG_TRUNC : 0);
    if (n > SK_MESSAGE_MAX) {
        errno = EMSGSIZE;
        return -1;
    }
    return n;
}

/* Reads from the source into the pipe or buffer. Returns 0 or -errno. */
static int pump_in(struct sk_pair *pair, struct pump *p)
{
    int fd = pair->io[p->from].fd;
    ssize_t n;

    if (p->messages) {
        n = read_message(p, fd);
    } else if (p->pipe[0] >= 0) {
        if (p->queued >= PUMP_CAP)
            return 0;
        n = splice(fd, NULL, p->pipe[1], NULL, PUMP_CAP - p->queued,
                   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n < 0 && errno == EINVAL && p->queued == 0 && p->bytes == 0) {
            if (pump_use_buffer(p) < 0)
                return -ENOMEM;
            return pump_in(pair, p);
        }
        /* With bytes in the pipe, EAGAIN (TCP) or 0 (UNIX sockets) may
         * mean that the pipe is full, not that the socket is empty or at
         * its end: only an empty pipe makes 0 the end of the stream. */
        if (p->queued > 0 && (n == 0 || (n < 0 && errno == EAGAIN))) {
            p->full = true;
            return 0;
        }
    } else {
        size_t end = p->off + p->queued;
        n = end < PUMP_CAP ? read(fd, p->buf + end, PUMP_CAP - end) : 0;
        if (end >= PUMP_CAP)
            return 0;
    }
    if (n > 0) {
        p->queued += (size_t)n;
        pair->last_active = sk_loop_now(pair->loop);
    } else if (n == 0) {
        p->eof = true;
    } else if (errno != EAGAIN && errno != EINTR) {
        return -errno;
    }
    return 0;
}

/* Writes what is queued to the destination (a message to a SEQPACKET
 * socket goes whole or not at all); passes on the half-close. */
static int pump_out(struct sk_pair *pair, struct pump *p)
{
    int fd = pair->io[p->to].fd;
    ssize_t n = 0;

    if (p->queued > 0 && p->pipe[0] >= 0)
        n = splice(p->pipe[0], NULL, fd, NULL, p->queued,
                   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    else if (p->queued > 0)
        n = send(fd, p->buf + p->off, p->queued, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : -errno;
    p->queued -= (size_t)n;
    p->bytes += (uint64_t)n;
    p->off = p->queued > 0 ? p->off + (size_t)n : 0;
    if (n > 0) {
        p->full = false;
        pair->last_active = sk_loop_now(pair->loop);
    }
    if (p->eof && p->queued == 0 && !p->shut) {
        p->shut = true;
        if (shutdown(fd, SHUT_WR) < 0 && errno != ENOTCONN)
            return -errno;
    }
    return 0;
}

static unsigned wanted(const struct sk_pair *pair, int side)
{
    const struct pump *in = &pair->dir[side], *out = &pair->dir[1 - side];
    unsigned ev = 0;

    if (!in->eof && !in->full && in->queued < PUMP_CAP &&
        (in->pipe[0] >= 0 || in->off == 0) &&
        (!in->messages || in->queued == 0))
        ev |= SK_READ;
    if (out->queued > 0)
        ev |= SK_WRITE;
    return ev;
}

static int rewatch(struct sk_pair *pair)
{
    int err = 0;

    for (int i = 0; i < 2 && err == 0; i++)
        err = sk_io_set(&pair->io[i], wanted(pair, i));
    return err;
}

/* Moves what the source has to the destination: all it can at once, or
 * message by message while the destination takes each at once. */
static int pump_through(struct sk_pair *pair, struct pump *p)
{
    int err = 0;

    for (int i = 0; i < MESSAGE_BATCH && err == 0; i++) {
        uint64_t before = p->bytes;
        err = pump_in(pair, p);
        if (err == 0)
            err = pump_out(pair, p); /* often the other side takes it now */
        if (!p->messages || p->queued > 0 || p->eof || p->bytes == before)
            break;
    }
    return err;
}

static void on_event(struct sk_io *io, unsigned events)
{
    struct sk_pair *pair = io->data;
    int side = io == &pair->io[0] ? 0 : 1;
    struct pump *in = &pair->dir[side], *out = &pair->dir[1 - side];
    int err = 0;

    if (events & SK_READ)
        err = pump_through(pair, in);
    if (err == 0 && (events & SK_WRITE))
        err = pump_out(pair, out);
    if (err == 0 && in->shut && out->shut)
        err = 1;
    if (err == 0)
        err = rewatch(pair);
    if (err != 0)
        finish(pair, err > 0 ? 0 : err);
}

static void on_idle_tick(struct sk_timer *t)
{
    struct sk_pair *pair = t->data;

    if (sk_loop_now(pair->loop) - pair->last_active >= pair->idle_ms)
        finish(pair, -ETIMEDOUT);
}

static int pair_watch(struct sk_pair *pair, int a, int b)
{
    int err;

    pair->io[0].data = pair->io[1].data = pair;
    err = sk_io_start(pair->loop, &pair->io[0], a, SK_READ, false, on_event);
    if (err < 0)
        return err;
    err = sk_io_start(pair->loop, &pair->io[1], b, SK_READ, false, on_event);
    if (err < 0)
        sk_io_stop(&pair->io[0]);
    return err;
}

int sk_pair_start(struct sk_loop *loop, int a, int b, unsigned idle_ms,
                  sk_pair_fn done, void *data, struct sk_pair **pairp)
{
    struct sk_pair *pair = calloc(1, sizeof(*pair));
    const int fds[2] = {a, b};
    int err = -ENOMEM;

    if (pair == NULL)
        goto out_close;
    pair->loop = loop;
    pair->done = done;
    pair->data = data;
    pair->idle_ms = idle_ms;
    pair->last_active = sk_loop_now(loop);
    sk_timer_init(&pair->idle, on_idle_tick);
    pair->idle.data = pair;
    /* No pipe yet on either side: a failure below closes only what was
     * made (a zeroed pipe would close descriptor 0). */
    for (int i = 0; i < 2; i++)
        pair->dir[i].pipe[0] = pair->dir[i].pipe[1] = -1;
    if ((err = pump_init(&pair->dir[0], 0, 1, fds)) < 0 ||
        (err = pump_init(&pair->dir[1], 1, 0, fds)) < 0)
        goto out_free;
    if (idle_ms > 0) {
        uint64_t tick = idle_ms / 4 < 10 ? 10 : idle_ms / 4;
        tick = tick > 1000 ? 1000 : tick;
        if ((err = sk_timer_start(loop, &pair->idle, tick, tick)) < 0)
            goto out_free;
    }
    if ((err = pair_watch(pair, a, b)) < 0) {
        sk_timer_stop(&pair->idle);
        goto out_free;
    }
    *pairp = pair;
    return 0;

out_free:
    for (int i = 0; i < 2; i++) {
        pump_close_pipe(&pair->dir[i]);
        free(pair->dir[i].buf);
    }
    free(pair);
out_close:
    close(a);
    close(b);
    return err;
}

void sk_pair_abort(struct sk_pair *pair)
{
    finish(pair, -ECANCELED);
}

uint64_t sk_pair_bytes(const struct sk_pair *pair, int direction)
{
    return pair->dir[direction ? 1 : 0].bytes;
}

bool sk_pair_uses_splice(const struct sk_pair *pair)
{
    return pair->dir[0].pipe[0] >= 0 || pair->dir[1].pipe[0] >= 0;
}
