/* loop_uring_recv.c -- input through the ring, for loop_uring.c (which
 * includes this file). A watcher put in receive mode (sk__io_recv_start())
 * reads through a receive into the loop's provided-buffer ring while it
 * asks for SK_READ, instead of a poll and a recv(2) per read: its
 * completions queue chunks (bytes, the end of the stream, or an error) on
 * the watcher, which hears SK_READ and takes them one by one with
 * sk__io_recv(), in order; a chunk left fires SK_READ again, as level
 * would. Its poll, if any, is for the other events only.
 *
 * A receive is multishot and ends after RX_ARM_BYTES (the kernel's limit
 * on a multishot receive's total, sqe->optlen), or, where the kernel has
 * no such limit (it refuses the field with -EINVAL), one-shot; it is
 * armed again once the watcher has taken every chunk. So a watcher holds
 * less than 64 KiB of input the kernel took for it, as a read(2) of 64 KiB
 * would, and the rest waits in the socket: a peer that sends while
 * its connection does not read costs its socket buffer, not the loop's
 * memory (without the limit, one wait takes whatever the socket holds).
 *
 * The ring holds RX_BUFS buffers of RX_BUF_SIZE, registered by hand
 * (liburing 2.3 has no io_uring_setup_buf_ring()); a buffer taken goes
 * back when the loop next waits. When the ring is dry (-ENOBUFS ends the
 * receive) the watcher waits for buffers to come back. When the watcher
 * stops asking for SK_READ its receive is cancelled; its chunks, and
 * those still coming, are copied out of the ring to wait for it there.
 * A receive's user_data is URING_UD_RECV | gen << 32 | fd, gen a new one
 * per receive armed: the completions of a receive cancelled or ended
 * still bring their bytes, in order, and the end of one never ends the
 * next; those of a watcher stopped since (gen older than its first
 * receive's) give their buffer back and nothing else. */

/* The most a receive takes: it ends at the first completion that reaches
 * it, so that it takes less than RX_ARM_BYTES + RX_BUF_SIZE = 64 KiB, most
 * often one full buffer. */
#define RX_ARM_BYTES RX_BUF_SIZE

struct rx_chunk {
    char *copy; /* out of the ring, or NULL: ring buffer bid */
    int res;    /* bytes, 0 for the end of the stream, or -errno */
    uint16_t bid;
};

struct uring_rx {
    uint64_t armed; /* user_data of the receive in flight, 0 for none */
    uint32_t first; /* gen of the mode's first receive */
    uint32_t gen;   /* of its last one */
    bool done;      /* the end or an error came: no receive again */
    bool ready;     /* on the loop's list of chunks left to take */
    bool starved;   /* waits for buffers to come back */
    uint64_t fired_at;
    struct rx_chunk *q; /* a FIFO: len chunks from head */
    unsigned head, len, cap;
};

static uint64_t rx_ud(const struct uring_rx *rx, int fd)
{
    return URING_UD_RECV | (uint64_t)rx->gen << 32 | (uint32_t)fd;
}

static uint32_t rx_next_gen(struct uring *u)
{
    return u->rx_gen = (u->rx_gen + 1) & URING_SEQ_MASK;
}

/* Whether gen is that of a receive of rx (armed since its mode began). */
static bool rx_owns(const struct uring_rx *rx, uint32_t gen)
{
    return ((gen - rx->first) & URING_SEQ_MASK) <=
           ((rx->gen - rx->first) & URING_SEQ_MASK);
}

static char *rx_buf(const struct uring *u, uint16_t bid)
{
    return u->rx_mem + (size_t)bid * RX_BUF_SIZE;
}

/* Registers the buffer ring, once; false where the kernel cannot. */
static bool rx_setup(struct uring *u)
{
    struct io_uring_buf_reg reg = {0};
    void *ring;

    if (u->rx_br != NULL || u->rx_off)
        return !u->rx_off;
    u->rx_off = true;
    if (posix_memalign(&ring, 4096, RX_BUFS * sizeof(struct io_uring_buf)))
        return false;
    if ((u->rx_mem = malloc((size_t)RX_BUFS * RX_BUF_SIZE)) == NULL) {
        free(ring);
        return false;
    }
    reg.ring_addr = (uint64_t)(uintptr_t)ring;
    reg.ring_entries = RX_BUFS;
    reg.bgid = RX_GROUP;
    if (io_uring_register_buf_ring(&u->ring, &reg, 0) < 0) {
        free(ring);
        free(u->rx_mem);
        u->rx_mem = NULL;
        return false;
    }
    u->rx_br = ring;
    io_uring_buf_ring_init(u->rx_br);
    for (unsigned i = 0; i < RX_BUFS; i++)
        io_uring_buf_ring_add(u->rx_br, rx_buf(u, (uint16_t)i), RX_BUF_SIZE,
                              (uint16_t)i, io_uring_buf_ring_mask(RX_BUFS),
                              (int)i);
    io_uring_buf_ring_advance(u->rx_br, RX_BUFS);
    u->rx_free = RX_BUFS;
    u->rx_off = false;
    return true;
}

/* Pushes fd on a list of descriptors (grown as needed). */
static void fd_list_push(int **list, size_t *n, size_t *cap, int fd)
{
    if (*n == *cap) {
        size_t more = *cap ? *cap * 2 : 64;
        int *grown = realloc(*list, more * sizeof(**list));
        if (grown == NULL)
            return; /* taken again once some other is */
        *list = grown;
        *cap = more;
    }
    (*list)[(*n)++] = fd;
}

/* A copy taken: freed when the loop next waits (leaked without memory to
 * note it, rather than freed under its reader). */
static void rx_taken(struct uring *u, char *copy)
{
    if (u->ntaken == u->taken_cap) {
        size_t more = u->taken_cap ? u->taken_cap * 2 : 16;
        char **grown = realloc(u->taken, more * sizeof(*grown));
        if (grown == NULL)
            return;
        u->taken = grown;
        u->taken_cap = more;
    }
    u->taken[u->ntaken++] = copy;
}

static void rx_give_back_bid(struct uring *u, uint16_t bid)
{
    if (u->nback < RX_BUFS)
        u->back[u->nback++] = bid;
}

/* At each wait: the buffers taken go back to the ring, the copies taken
 * are freed, and the watchers that waited for buffers are armed again. */
static void rx_give_back(struct uring *u)
{
    int mask = io_uring_buf_ring_mask(RX_BUFS);

    for (unsigned i = 0; i < u->nback; i++)
        io_uring_buf_ring_add(u->rx_br, rx_buf(u, u->back[i]), RX_BUF_SIZE,
                              u->back[i], mask, (int)i);
    if (u->nback > 0)
        io_uring_buf_ring_advance(u->rx_br, (int)u->nback);
    u->rx_free += u->nback;
    u->nback = 0;
    for (size_t i = 0; i < u->ntaken; i++)
        free(u->taken[i]);
    u->ntaken = 0;
    for (size_t i = 0; u->rx_free > 0 && i < u->nstarved; i++) {
        int fd = u->starved[i];
        if ((size_t)fd < u->nslots && u->slots[fd].rx != NULL) {
            u->slots[fd].rx->starved = false;
            uring_mark(u, fd);
        }
    }
    if (u->rx_free > 0)
        u->nstarved = 0;
}

static bool rx_push(struct uring_rx *rx, struct rx_chunk c)
{
    if (rx->len == rx->cap) {
        unsigned cap = rx->cap ? rx->cap * 2 : 4;
        struct rx_chunk *q = malloc(cap * sizeof(*q));
        if (q == NULL)
            return false;
        for (unsigned i = 0; i < rx->len; i++)
            q[i] = rx->q[(rx->head + i) % rx->cap];
        free(rx->q);
        rx->q = q;
        rx->cap = cap;
        rx->head = 0;
    }
    rx->q[(rx->head + rx->len++) % rx->cap] = c;
    return true;
}

/* A chunk out of the ring: copied, its buffer given back. */
static bool rx_copy_out(struct uring *u, struct rx_chunk *c)
{
    if (c->copy != NULL || c->res <= 0)
        return true;
    if ((c->copy = malloc((size_t)c->res)) == NULL)
        return false;
    memcpy(c->copy, rx_buf(u, c->bid), (size_t)c->res);
    rx_give_back_bid(u, c->bid);
    return true;
}

bool sk__io_recv_start(struct sk_io *io)
{
    struct uring *u = io->loop->uring;
    struct uring_slot *s;

    if (u == NULL || !(io->flags & IO_ACTIVE) || !rx_setup(u))
        return false;
    s = &u->slots[io->fd];
    if (s->rx != NULL)
        return true;
    if ((s->rx = calloc(1, sizeof(*s->rx))) == NULL)
        return false;
    s->rx->first = s->rx->gen = rx_next_gen(u);
    if (s->armed != 0 && s->mask != uring_poll_events(s))
        uring_cancel(u, s); /* its poll is for the other events now */
    uring_mark(u, io->fd);
    return true;
}

void sk__io_recv_oneshot(struct sk_loop *loop)
{
    if (loop->uring != NULL)
        loop->uring->rx_oneshot = true;
}

bool sk__io_recv_on(const struct sk_io *io)
{
    struct uring *u = io->loop->uring;

    return u != NULL && (io->flags & IO_ACTIVE) && u->slots[io->fd].rx != NULL;
}

ssize_t sk__io_recv_peek(const struct sk_io *io)
{
    const struct uring_rx *rx = io->loop->uring->slots[io->fd].rx;

    return rx != NULL && rx->len > 0 ? rx->q[rx->head].res : -EAGAIN;
}

ssize_t sk__io_recv(struct sk_io *io, const char **data)
{
    struct uring *u = io->loop->uring;
    struct uring_rx *rx = u->slots[io->fd].rx;
    struct rx_chunk c;

    if (rx == NULL || rx->len == 0)
        return -EAGAIN;
    c = rx->q[rx->head];
    rx->head = (rx->head + 1) % rx->cap;
    rx->len--;
    if (c.copy != NULL) {
        *data = c.copy;
        rx_taken(u, c.copy);
    } else if (c.res > 0) {
        *data = rx_buf(u, c.bid);
        rx_give_back_bid(u, c.bid);
    }
    if (rx->len > 0 && !rx->ready) {
        rx->ready = true;
        fd_list_push(&u->ready, &u->nready, &u->ready_cap, io->fd);
    }
    if (rx->len == 0 && rx->armed == 0)
        uring_mark(u, io->fd); /* taken all: its next receive */
    return c.res;
}

/* Arms, cancels or leaves the receive of s (fd) for what its watcher asks
 * now. Returns false when no entry could be had. */
static bool rx_arm(struct uring *u, struct uring_slot *s, int fd)
{
    struct uring_rx *rx = s->rx;
    bool wants = (s->io->events & SK_READ) != 0;
    struct io_uring_sqe *sqe;

    if (!wants && rx->armed != 0) {
        if (!uring_remove_poll(u, rx->armed))
            return false;
        rx->armed = 0;
    }
    /* Not reading: its chunks leave the ring, for the others' input. */
    for (unsigned i = 0; !wants && i < rx->len; i++)
        rx_copy_out(u, &rx->q[(rx->head + i) % rx->cap]);
    if (wants && rx->len > 0 && !rx->ready) {
        rx->ready = true;
        fd_list_push(&u->ready, &u->nready, &u->ready_cap, fd);
    }
    if (!wants || rx->armed != 0 || rx->done || rx->len > 0)
        return true;
    if (u->rx_free == 0) {
        if (!rx->starved) {
            rx->starved = true;
            fd_list_push(&u->starved, &u->nstarved, &u->starved_cap, fd);
        }
        return true;
    }
    if ((sqe = uring_sqe(u)) == NULL)
        return false;
    if (u->rx_oneshot) {
        io_uring_prep_recv(sqe, fd, NULL, 0, 0);
    } else {
        io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
        sqe->file_index = RX_ARM_BYTES; /* optlen in newer headers */
    }
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = RX_GROUP;
    rx->gen = rx_next_gen(u);
    rx->armed = rx_ud(rx, fd);
    io_uring_sqe_set_data64(sqe, rx->armed);
    return true;
}

/* The watcher of s stops: its receive is cancelled, its chunks dropped. */
static void rx_end(struct uring *u, struct uring_slot *s)
{
    struct uring_rx *rx = s->rx;

    if (rx == NULL)
        return;
    if (rx->armed != 0 && !uring_remove_poll(u, rx->armed) &&
        u->nunsent < URING_UNSENT_MAX)
        u->unsent[u->nunsent++] = rx->armed;
    for (unsigned i = 0; i < rx->len; i++) {
        struct rx_chunk *c = &rx->q[(rx->head + i) % rx->cap];
        if (c->copy != NULL)
            free(c->copy);
        else if (c->res > 0)
            rx_give_back_bid(u, c->bid);
    }
    free(rx->q);
    free(rx);
    s->rx = NULL;
}

static void rx_fire(struct sk_loop *loop, struct uring_slot *s)
{
    struct uring *u = loop->uring;

    if (s->rx->fired_at == u->reaps || loop->nfired == LOOP_FIRED_MAX ||
        !(s->io->events & SK_READ))
        return;
    s->rx->fired_at = u->reaps;
    loop->fired[loop->nfired].io = s->io;
    loop->fired[loop->nfired].events = SK_READ;
    loop->nfired++;
}

/* A completion of a receive: its chunk to the watcher's queue. */
static bool uring_take_recv(struct sk_loop *loop,
                            const struct io_uring_cqe *cqe)
{
    struct uring *u = loop->uring;
    uint64_t ud = io_uring_cqe_get_data64(cqe);
    size_t fd = (uint32_t)ud;
    uint32_t gen = (uint32_t)(ud >> 32) & URING_SEQ_MASK;
    struct uring_slot *s = fd < u->nslots ? &u->slots[fd] : NULL;
    struct rx_chunk c = {.res = cqe->res};
    struct uring_rx *rx;

    if (cqe->flags & IORING_CQE_F_BUFFER) {
        c.bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        u->rx_free--;
    }
    if (s == NULL || s->io == NULL || (rx = s->rx) == NULL ||
        !rx_owns(rx, gen)) {
        if (cqe->flags & IORING_CQE_F_BUFFER)
            rx_give_back_bid(u, c.bid);
        return false;
    }
    if (!(cqe->flags & IORING_CQE_F_MORE) && rx->armed == ud) {
        rx->armed = 0;
        uring_mark(u, (int)fd);
        if (c.res == -EINVAL && !u->rx_oneshot) {
            u->rx_oneshot = true; /* no limit here: one-shot receives */
            return false;
        }
    }
    if (c.res == -ECANCELED || c.res == -ENOBUFS)
        return false;
    if (c.res <= 0)
        rx->done = true; /* the end, or an error: the last chunk */
    if ((!(s->io->events & SK_READ) && !rx_copy_out(u, &c)) ||
        !rx_push(rx, c)) {
        /* No memory: the input is cut, told as an error. */
        if (c.res > 0 && c.copy == NULL)
            rx_give_back_bid(u, c.bid);
        rx->done = true;
        rx->len = 0;
        rx_push(rx, (struct rx_chunk){.res = -ENOMEM});
    }
    rx_fire(loop, s);
    return true;
}

/* After a reap: the watchers with chunks left to take hear SK_READ. */
static void rx_fire_ready(struct sk_loop *loop)
{
    struct uring *u = loop->uring;
    size_t kept = 0;

    for (size_t i = 0; i < u->nready; i++) {
        int fd = u->ready[i];
        struct uring_slot *s = &u->slots[fd];

        if (s->io == NULL || s->rx == NULL)
            continue;
        if (s->rx->len == 0) {
            s->rx->ready = false;
            continue;
        }
        if (loop->nfired == LOOP_FIRED_MAX) {
            u->ready[kept++] = fd;
            continue;
        }
        s->rx->ready = false;
        rx_fire(loop, s);
    }
    u->nready = kept;
}

/* At the loop's end, the ring gone: the memory of every receive. */
static void rx_free_all(struct uring *u)
{
    for (size_t fd = 0; fd < u->nslots; fd++) {
        struct uring_rx *rx = u->slots[fd].rx;

        for (unsigned i = 0; rx != NULL && i < rx->len; i++)
            free(rx->q[(rx->head + i) % rx->cap].copy);
        if (rx != NULL)
            free(rx->q);
        free(rx);
    }
    for (size_t i = 0; i < u->ntaken; i++)
        free(u->taken[i]);
    free(u->taken);
    free(u->ready);
    free(u->starved);
    free(u->rx_br);
    free(u->rx_mem);
}
