/* loop_uring_send.c -- sends through the ring, for loop_uring.c (which
 * includes this file): a watcher's socket gets at most one send in
 * flight, from a copy of the caller's bytes, issued with the wait that
 * ends the iteration (so the sends of an iteration cost one system call
 * between them) and reported to the watcher's callback as IO_SENT. The
 * send carries MSG_DONTWAIT: a full socket completes it at once with
 * -EAGAIN, never parks it in the kernel, so that no send outlives its
 * iteration by more than one wait.
 *
 * A send's user_data is URING_UD_SEND | seq << 32 | fd, seq the slot's
 * send_seq of it (30 bits, as poll sequence numbers are). A watcher
 * stopped with its send in flight leaves an orphan, its copy freed when
 * its completion comes; one not submitted yet becomes a no-op, so that it
 * never reaches a socket given the same number once the owner has closed
 * it (the owner stops a watcher with output in flight only to drop that
 * output: a clean close waits for the send's end). */

/* A send in flight: its entry and the copy of its bytes, one block. */
struct uring_send {
    struct io_uring_sqe *sqe; /* its entry, until submitted */
    uint64_t gen;             /* submit_gen when it was queued */
    char data[];
};

struct uring_orphan {
    uint64_t ud;
    struct uring_send *send;
};

static uint64_t uring_send_ud(const struct uring_slot *s, int fd)
{
    return URING_UD_SEND | (uint64_t)s->send_seq << 32 | (uint32_t)fd;
}

bool sk__io_can_send(const struct sk_io *io)
{
    return io->loop->uring != NULL && (io->flags & IO_ACTIVE);
}

int sk__io_send(struct sk_io *io, const void *buf, size_t len)
{
    struct uring *u = io->loop->uring;
    struct uring_slot *s;
    struct io_uring_sqe *sqe;
    struct uring_send *send;

    if (!sk__io_can_send(io) || len == 0)
        return -EINVAL;
    s = &u->slots[io->fd];
    if (s->send != NULL)
        return -EBUSY;
    if ((send = malloc(sizeof(*send) + len)) == NULL)
        return -ENOMEM;
    if ((sqe = uring_sqe(u)) == NULL) {
        free(send);
        return -EAGAIN;
    }
    memcpy(send->data, buf, len);
    send->sqe = sqe;
    send->gen = u->submit_gen;
    s->send_seq = (s->send_seq + 1) & URING_SEQ_MASK;
    s->send = send;
    io_uring_prep_send(sqe, io->fd, send->data, len,
                       MSG_NOSIGNAL | MSG_DONTWAIT);
    io_uring_sqe_set_data64(sqe, uring_send_ud(s, io->fd));
    return 0;
}

int sk__io_sent(const struct sk_io *io)
{
    return io->loop->uring->slots[io->fd].send_res;
}

/* The watcher of s stops: its send, if any, is left to end as an orphan
 * (see above). */
static void uring_orphan_send(struct uring *u, struct uring_slot *s, int fd)
{
    struct uring_orphan *more;
    uint64_t ud = uring_send_ud(s, fd);

    if (s->send == NULL)
        return;
    if (s->send->gen == u->submit_gen) { /* still in the submission queue */
        io_uring_prep_nop(s->send->sqe);
        io_uring_sqe_set_data64(s->send->sqe, ud);
    }
    more = realloc(u->orphans, (u->norphans + 1) * sizeof(*more));
    if (more == NULL) {
        /* The copy is lost for good rather than freed under the kernel. */
        s->send = NULL;
        return;
    }
    u->orphans = more;
    u->orphans[u->norphans++] = (struct uring_orphan){ud, s->send};
    s->send = NULL;
}

static void uring_free_orphan(struct uring *u, uint64_t ud)
{
    for (size_t i = 0; i < u->norphans; i++) {
        if (u->orphans[i].ud == ud) {
            free(u->orphans[i].send);
            u->orphans[i] = u->orphans[--u->norphans];
            return;
        }
    }
}

/* The completion of a send: to its watcher as IO_SENT (true), or the end
 * of an orphan. */
static bool uring_take_send(struct sk_loop *loop,
                            const struct io_uring_cqe *cqe)
{
    struct uring *u = loop->uring;
    uint64_t ud = io_uring_cqe_get_data64(cqe);
    size_t fd = (uint32_t)ud;
    struct uring_slot *s = fd < u->nslots ? &u->slots[fd] : NULL;

    if (s == NULL || s->io == NULL || s->send == NULL ||
        uring_send_ud(s, (int)fd) != ud) {
        uring_free_orphan(u, ud);
        return false;
    }
    free(s->send);
    s->send = NULL;
    s->send_res = cqe->res;
    loop->fired[loop->nfired].io = s->io;
    loop->fired[loop->nfired].events = SK_IO_SENT;
    loop->nfired++;
    return true;
}

static void uring_free_orphans(struct uring *u)
{
    for (size_t i = 0; i < u->norphans; i++)
        free(u->orphans[i].send);
    free(u->orphans);
    for (size_t fd = 0; fd < u->nslots; fd++)
        free(u->slots[fd].send);
}
