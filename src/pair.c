/* pair.c -- two stream sockets joined: each direction reads into its
 * loop's buffer and writes that out at once (a copy, cheaper than splice
 * for small transfers); a read that fills the buffer means a large
 * transfer, and that direction's next reads go through a pipe with
 * splice(2). A pipe is lent by the loop's pool while bytes are in it and
 * given back once they are all written (so an idle pair holds none); a
 * splice read shorter than the buffer turns the direction back to copying.
 * A half-close is passed on, and a direction stops reading while the
 * other side is not taking what was read.
 *
 * Memory of a pair's own: bytes that the destination did not take at once
 * are kept in a buffer of the pair (at most COPY_BUF per direction,
 * allocated then, freed once written), and the direction reads no more
 * until they are written. Bytes queued in a pipe are read after by that
 * pipe alone, so a switch between copy and splice never reorders them.
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

/* Bytes in flight per spliced direction: the pipe's size. */
#define PUMP_CAP (256 * 1024)
/* The loop's read buffer: a read that fills it turns splice on. */
#define COPY_BUF (16 * 1024)
/* Messages moved per readable event, when the destination takes each at
 * once, before the loop sees to other sockets. */
#define MESSAGE_BATCH 64

/* The pipes and the read buffer that the pairs of one loop share: made
 * with the loop's first pair, freed with its last. The list and the pair
 * count are under pools_lock; the rest is used by the loop's thread. */
struct pipe_pool {
    struct pipe_pool *next;
    const struct sk_loop *loop;
    unsigned pairs; /* pairs on the loop */
    unsigned lent;  /* pipes that pairs hold now */
    unsigned nidle;
    int idle[SK_PAIR_PIPES][2];
    char buf[COPY_BUF];
};

static pthread_mutex_t pools_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pipe_pool *pools;

struct pump {
    int from, to;       /* indexes of the sockets in pair->io */
    int pipe[2];        /* lent by the pool while bytes are in it, else -1 */
    char *buf;          /* bytes of the pair's own (or the message), or NULL */
    size_t off, queued; /* in the pipe when there is one, else in buf */
    bool splice;        /* the last read was large: splice the next */
    bool no_splice;     /* splice said EINVAL: copy only */
    bool full;          /* the pipe refused more (it holds pages, not bytes) */
    bool eof, shut;
    bool messages;      /* a SEQPACKET end: one message in the buffer */
    bool from_messages; /* the source is one: read with MSG_TRUNC */
    uint64_t bytes;
};

struct sk_pair {
    struct sk_loop *loop;
    struct pipe_pool *pool;
    struct sk_io io[2];
    struct pump dir[2]; /* dir[0]: a to b, dir[1]: b to a */
    struct sk_timer idle;
    uint64_t idle_ms, last_active;
    sk_pair_fn done;
    void *data;
    bool parked[2]; /* not watched: see park() */
    bool finished;
};

/* ------------------------------------------------------------ the pool */

/* The pool of loop, made if it has none; counts one more pair on it.
 * Returns NULL without memory. */
static struct pipe_pool *pool_join(const struct sk_loop *loop)
{
    struct pipe_pool *pool;

    pthread_mutex_lock(&pools_lock);
    for (pool = pools; pool != NULL && pool->loop != loop; pool = pool->next)
        ;
    if (pool == NULL && (pool = calloc(1, sizeof(*pool))) != NULL) {
        pool->loop = loop;
        pool->next = pools;
        pools = pool;
    }
    if (pool != NULL)
        pool->pairs++;
    pthread_mutex_unlock(&pools_lock);
    return pool;
}

/* One pair fewer on the pool; the last one closes its pipes and frees it
 * (every pipe lent has been given back by then). */
static void pool_leave(struct pipe_pool *pool)
{
    struct pipe_pool **p;
    bool last;

    pthread_mutex_lock(&pools_lock);
    last = --pool->pairs == 0;
    if (last) {
        for (p = &pools; *p != pool; p = &(*p)->next)
            ;
        *p = pool->next;
    }
    pthread_mutex_unlock(&pools_lock);
    if (!last)
        return;
    for (unsigned i = 0; i < pool->nidle; i++) {
        close(pool->idle[i][0]);
        close(pool->idle[i][1]);
    }
    free(pool);
}

/* Lends an empty pipe: an idle one, or a new one while the pool holds
 * fewer than SK_PAIR_PIPES. Returns false when there is none to lend
 * (the caller copies instead). Loop thread. */
static bool pool_take(struct pipe_pool *pool, int fds[2])
{
    if (pool->nidle > 0) {
        pool->nidle--;
        fds[0] = pool->idle[pool->nidle][0];
        fds[1] = pool->idle[pool->nidle][1];
    } else if (pool->lent >= SK_PAIR_PIPES ||
               pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) {
        return false;
    } else {
        /* A larger pipe moves more per call; the default still works. */
        fcntl(fds[1], F_SETPIPE_SZ, PUMP_CAP);
    }
    pool->lent++;
    return true;
}

/* Takes back a pipe; an empty one is kept for the next, one that may
 * hold bytes (a pair that ended with some) is closed. Loop thread. */
static void pool_give(struct pipe_pool *pool, int fds[2], bool empty)
{
    if (fds[0] < 0)
        return;
    pool->lent--;
    if (empty && pool->nidle < SK_PAIR_PIPES) {
        pool->idle[pool->nidle][0] = fds[0];
        pool->idle[pool->nidle][1] = fds[1];
        pool->nidle++;
    } else {
        close(fds[0]);
        close(fds[1]);
    }
    fds[0] = fds[1] = -1;
}

/* ------------------------------------------------------------ the pair */

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
    return 0;
}

static void finish(struct sk_pair *pair, int status)
{
    if (pair->finished)
        return;
    pair->finished = true;
    sk_timer_stop(&pair->idle);
    for (int i = 0; i < 2; i++) {
        struct pump *p = &pair->dir[i];
        sk_io_stop(&pair->io[i]);
        close(pair->io[i].fd);
        pool_give(pair->pool, p->pipe, p->queued == 0);
        free(p->buf);
    }
    pool_leave(pair->pool);
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

/* Splices what the source has into the pipe. Returns as splice(); 0 with
 * errno EAGAIN when the pipe is full. */
static ssize_t splice_in(struct pump *p, int fd)
{
    ssize_t n;

    if (p->queued >= PUMP_CAP) {
        errno = EAGAIN;
        return -1;
    }
    n = splice(fd, NULL, p->pipe[1], NULL, PUMP_CAP - p->queued,
               SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    /* With bytes in the pipe, EAGAIN (TCP) or 0 (UNIX sockets) may mean
     * that the pipe is full, not that the socket is empty or at its end:
     * only an empty pipe makes 0 the end of the stream. */
    if (p->queued > 0 && (n == 0 || (n < 0 && errno == EAGAIN))) {
        p->full = true;
        errno = EAGAIN;
        return -1;
    }
    if (n >= 0)
        p->splice = n >= COPY_BUF; /* a short read: copy the next */
    else if (errno == EAGAIN)
        p->splice = false; /* idle: the next read decides afresh */
    return n;
}

/* Keeps what the destination did not take of the loop's buffer. */
static int keep_rest(struct pump *p, const char *rest, size_t len)
{
    if (p->buf == NULL && (p->buf = malloc(COPY_BUF)) == NULL)
        return -ENOMEM;
    memcpy(p->buf, rest, len);
    p->off = 0;
    p->queued = len;
    return 0;
}

/* Reads into the loop's buffer and writes that on at once, keeping what
 * the destination does not take. Returns the bytes read, or -1 with errno
 * (a write error returns -1 with that errno too). */
static ssize_t copy_through(struct sk_pair *pair, struct pump *p, int fd)
{
    char *buf = pair->pool->buf;
    ssize_t n = read(fd, buf, COPY_BUF), sent;
    int err;

    if (n <= 0)
        return n;
    p->splice = n == COPY_BUF && !p->no_splice; /* a large transfer */
    sent =
        send(pair->io[p->to].fd, buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (sent < 0 && errno != EAGAIN && errno != EINTR)
        return -1;
    sent = sent < 0 ? 0 : sent;
    p->bytes += (uint64_t)sent;
    if (sent < n && (err = keep_rest(p, buf + sent, (size_t)(n - sent))) < 0) {
        errno = -err;
        return -1;
    }
    return n;
}

/* Reads from the source: into the pipe that holds bytes already, or that
 * the pool lends when the last read was large, else through the loop's
 * buffer (a copy). Returns 0 or -errno. */
static int pump_in(struct sk_pair *pair, struct pump *p)
{
    int fd = pair->io[p->from].fd;
    ssize_t n;

    if (p->messages) {
        if ((n = read_message(p, fd)) > 0)
            p->queued = (size_t)n;
    } else if (p->pipe[0] < 0 && p->queued > 0) {
        return 0; /* bytes of its own wait for the destination */
    } else if (p->pipe[0] >= 0 ||
               (p->splice && pool_take(pair->pool, p->pipe))) {
        n = splice_in(p, fd);
        if (n < 0 && errno == EINVAL && p->queued == 0) {
            pool_give(pair->pool, p->pipe, true);
            p->no_splice = true;
            p->splice = false;
            n = copy_through(pair, p, fd);
        } else if (n > 0) {
            p->queued += (size_t)n;
        }
    } else {
        n = copy_through(pair, p, fd);
    }
    if (n > 0)
        pair->last_active = sk_loop_now(pair->loop);
    else if (n == 0)
        p->eof = true;
    else if (errno != EAGAIN && errno != EINTR)
        return -errno;
    if (p->pipe[0] >= 0 && p->queued == 0)
        pool_give(pair->pool, p->pipe, true); /* nothing came after all */
    return 0;
}

/* Writes the direction's queued bytes (a message to a SEQPACKET socket
 * goes whole or not at all); gives the pipe back once it is empty;
 * passes on the half-close. Returns 0 or -errno. */
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
    if (p->queued == 0 && p->pipe[0] >= 0)
        pool_give(pair->pool, p->pipe, true);
    if (p->queued == 0 && !p->messages && p->buf != NULL) {
        free(p->buf); /* written: the pair keeps no bytes of its own */
        p->buf = NULL;
    }
    if (p->eof && p->queued == 0 && !p->shut) {
        p->shut = true;
        if (shutdown(fd, SHUT_WR) < 0 && errno != ENOTCONN)
            return -errno;
    }
    return 0;
}

static void on_event(struct sk_io *io, unsigned events);

static unsigned wanted(const struct sk_pair *pair, int side)
{
    const struct pump *in = &pair->dir[side], *out = &pair->dir[1 - side];
    unsigned ev = 0;

    if (!in->eof && !in->full &&
        (in->pipe[0] >= 0 ? in->queued < PUMP_CAP : in->queued == 0))
        ev |= SK_READ;
    if (out->queued > 0)
        ev |= SK_WRITE;
    return ev;
}

/* Watches each socket for what its directions can do now; a parked one
 * (below) is watched again once there is something. */
static int rewatch(struct sk_pair *pair)
{
    int err = 0;

    for (int i = 0; i < 2 && err == 0; i++) {
        unsigned ev = wanted(pair, i);
        if (!pair->parked[i])
            err = sk_io_set(&pair->io[i], ev);
        else if (ev != 0 &&
                 (err = sk_io_start(pair->loop, &pair->io[i], pair->io[i].fd,
                                    ev, false, on_event)) == 0)
            pair->parked[i] = false;
    }
    return err;
}

/* An event on a socket that neither direction can serve now (its reading
 * paused, nothing to write to it): a hang-up or an error, which the poller
 * reports whatever is asked. An error ends the pair; a hang-up stops
 * watching the socket until its directions can act again (else the loop
 * would spin). Returns 0 or -errno. */
static int park(struct sk_pair *pair, int side)
{
    int soerr = 0;
    socklen_t len = sizeof(soerr);

    if (getsockopt(pair->io[side].fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
        return -errno;
    if (soerr != 0)
        return -soerr;
    sk_io_stop(&pair->io[side]);
    pair->parked[side] = true;
    return 0;
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
    unsigned want = wanted(pair, side);
    int err = 0;

    /* What was not asked for (an error shows in what was) is not done: a
     * read after the end of the stream would find it again. */
    if (want == 0) {
        err = park(pair, side);
        events = 0;
    }
    events &= want;
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

    if (pair == NULL || (pair->pool = pool_join(loop)) == NULL)
        goto out_free;
    pair->loop = loop;
    pair->done = done;
    pair->data = data;
    pair->idle_ms = idle_ms;
    pair->last_active = sk_loop_now(loop);
    sk_timer_init(&pair->idle, on_idle_tick);
    pair->idle.data = pair;
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
    if (pair != NULL) {
        free(pair->dir[0].buf);
        free(pair->dir[1].buf);
        if (pair->pool != NULL)
            pool_leave(pair->pool);
    }
    free(pair);
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
