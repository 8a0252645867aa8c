/* uring_echo.c -- the io_uring floor: a single-threaded echo server on
 * liburing. One ring (SINGLE_ISSUER|DEFER_TASKRUN where the kernel has
 * them), every SQE of an iteration submitted by the one
 * io_uring_submit_and_wait(). Streams: multishot accept, multishot recv
 * into a provided-buffer ring, one send in flight per connection (the
 * buffers received meanwhile queue in order; short sends resume).
 * Datagrams: multishot recvmsg into the same buffer ring, one sendmsg per
 * datagram straight from its buffer (one larger than a buffer is dropped).
 * A socket whose recv ends for want of buffers (-ENOBUFS) is re-armed once
 * buffers come back.
 *   uring_echo tcp PORT | unix PATH | udp PORT */
#include "common.h"

#include <errno.h>
#include <liburing.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>

#ifndef NBUFS
#define NBUFS 256 /* a power of two */
#endif
#ifndef BUF_SIZE
#define BUF_SIZE 65536 /* a bulk request in one recv */
#endif
#define SQ_ENTRIES 512
#define CQ_ENTRIES 16384
#define BGID 0

enum tag { T_IGNORE, T_ACCEPT, T_RECV, T_SEND, T_DGRAM_SEND };
#define TAG_BITS 3
#define TAG_MASK ((1u << TAG_BITS) - 1)

struct conn {
    int fd;
    int recv_armed, send_busy, eof, dead, starved, cancelled;
    int head, tail; /* queue of buffer ids to send, -1 when empty */
};

/* One per buffer id: where the unsent bytes are and the next in queue;
 * for datagrams the message its sendmsg uses. */
struct slot {
    unsigned off, len;
    int next;
    struct msghdr msg;
    struct iovec iov;
};

static struct io_uring ring;
static struct io_uring_buf_ring *br;
static unsigned char *bufs;
static struct slot slots[NBUFS];
static int held, returned; /* buffers out of the ring; returns not yet
                              published */
static struct conn *starved[4096];
static int nstarved;
static struct msghdr dgram_msg = {.msg_namelen =
                                      sizeof(struct sockaddr_storage)};

static struct io_uring_sqe *sqe_get(void)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);

    while (sqe == NULL) { /* SQ full: hand it to the kernel, go on */
        io_uring_submit(&ring);
        sqe = io_uring_get_sqe(&ring);
    }
    return sqe;
}

static void sqe_tag(struct io_uring_sqe *sqe, void *p, unsigned tag)
{
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)p | tag);
}

static unsigned char *buf_addr(int bid)
{
    return bufs + (size_t)bid * BUF_SIZE;
}

static void buf_return(int bid)
{
    io_uring_buf_ring_add(br, buf_addr(bid), BUF_SIZE, (unsigned short)bid,
                          io_uring_buf_ring_mask(NBUFS), returned);
    returned++;
    held--;
}

static void bufs_publish(void)
{
    if (returned) {
        io_uring_buf_ring_advance(br, returned);
        returned = 0;
    }
}

static int setup_ring(void)
{
    unsigned base = IORING_SETUP_CQSIZE;
    unsigned extra[] = {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
                        IORING_SETUP_SINGLE_ISSUER, 0};

    for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]); i++) {
        struct io_uring_params p = {.flags = base | extra[i],
                                    .cq_entries = CQ_ENTRIES};
        if (io_uring_queue_init_params(SQ_ENTRIES, &ring, &p) == 0)
            return 0;
    }
    return -1;
}

/* The provided-buffer ring, registered by hand: page-aligned ring memory
 * of NBUFS entries, then every buffer handed to the kernel. */
static int setup_buffers(void)
{
    struct io_uring_buf_reg reg = {.ring_entries = NBUFS, .bgid = BGID};
    void *mem;

    if (posix_memalign(&mem, 4096, NBUFS * sizeof(struct io_uring_buf)))
        return -1;
    if (posix_memalign((void **)&bufs, 4096, (size_t)NBUFS * BUF_SIZE))
        return -1;
    br = mem;
    reg.ring_addr = (uint64_t)(uintptr_t)mem;
    if (io_uring_register_buf_ring(&ring, &reg, 0) < 0)
        return -1;
    io_uring_buf_ring_init(br);
    held = NBUFS;
    for (int bid = 0; bid < NBUFS; bid++)
        buf_return(bid);
    bufs_publish();
    return 0;
}

static void arm_accept(int lfd)
{
    struct io_uring_sqe *sqe = sqe_get();

    io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, SOCK_CLOEXEC);
    sqe_tag(sqe, NULL, T_ACCEPT);
}

static void arm_recv(struct conn *c, int dgram)
{
    struct io_uring_sqe *sqe = sqe_get();

    if (dgram)
        io_uring_prep_recvmsg_multishot(sqe, c->fd, &dgram_msg, 0);
    else
        io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    sqe_tag(sqe, c, T_RECV);
    c->recv_armed = 1;
}

static void starve(struct conn *c)
{
    if (nstarved < (int)(sizeof(starved) / sizeof(starved[0]))) {
        starved[nstarved++] = c;
        c->starved = 1;
    } else { /* no room to wait: try again at once */
        arm_recv(c, 0);
    }
}

static void unstarve(struct conn *c)
{
    for (int i = 0; i < nstarved; i++)
        if (starved[i] == c) {
            starved[i] = starved[--nstarved];
            break;
        }
    c->starved = 0;
}

/* Buffers are back: every socket that ran dry receives again. */
static void rearm_starved(int dgram)
{
    while (nstarved > 0 && held < NBUFS) {
        struct conn *c = starved[--nstarved];
        c->starved = 0;
        arm_recv(c, dgram);
    }
}

static void enqueue(struct conn *c, int bid, unsigned len)
{
    slots[bid] = (struct slot){.off = 0, .len = len, .next = -1};
    if (c->tail < 0)
        c->head = bid;
    else
        slots[c->tail].next = bid;
    c->tail = bid;
}

static void kick_send(struct conn *c)
{
    struct io_uring_sqe *sqe;
    struct slot *s;

    if (c->send_busy || c->head < 0 || c->dead)
        return;
    s = &slots[c->head];
    sqe = sqe_get();
    io_uring_prep_send(sqe, c->fd, buf_addr(c->head) + s->off, s->len,
                       MSG_NOSIGNAL);
    sqe_tag(sqe, c, T_SEND);
    c->send_busy = 1;
}

static void drop_queue(struct conn *c)
{
    while (c->head >= 0) {
        int next = slots[c->head].next;
        buf_return(c->head);
        c->head = next;
    }
    c->tail = -1;
}

static void mark_done(struct conn *c, int dead)
{
    if (dead)
        c->dead = 1;
    else
        c->eof = 1;
}

/* A connection that is done goes once nothing of it is in flight. */
static void maybe_close(struct conn *c)
{
    struct io_uring_sqe *sqe;

    if (!c->dead && !(c->eof && c->head < 0))
        return;
    if (c->recv_armed && !c->cancelled) {
        sqe = sqe_get();
        io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)c | T_RECV, 0);
        sqe_tag(sqe, NULL, T_IGNORE);
        c->cancelled = 1;
    }
    if (c->send_busy || c->recv_armed)
        return;
    if (c->starved)
        unstarve(c);
    drop_queue(c);
    sqe = sqe_get();
    io_uring_prep_close(sqe, c->fd);
    sqe_tag(sqe, NULL, T_IGNORE);
    free(c);
}

static void on_recv(struct conn *c, struct io_uring_cqe *cqe)
{
    if (!(cqe->flags & IORING_CQE_F_MORE))
        c->recv_armed = 0;
    if (cqe->res > 0) {
        int bid = (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        held++;
        if (c->dead) { /* being closed: the bytes go nowhere */
            buf_return(bid);
            maybe_close(c);
            return;
        }
        enqueue(c, bid, (unsigned)cqe->res);
        kick_send(c);
        if (!c->recv_armed && !c->eof)
            arm_recv(c, 0);
        return;
    }
    if (cqe->res == -ENOBUFS && !c->dead && !c->eof)
        starve(c);
    else if (cqe->res == 0)
        mark_done(c, 0);
    else if (cqe->res != -ENOBUFS)
        mark_done(c, 1);
    maybe_close(c);
}

static void on_send(struct conn *c, int res)
{
    struct slot *s = &slots[c->head];

    c->send_busy = 0;
    if (res <= 0) {
        mark_done(c, 1);
        drop_queue(c);
        maybe_close(c);
        return;
    }
    s->off += (unsigned)res;
    s->len -= (unsigned)res;
    if (s->len == 0) {
        int done = c->head;
        c->head = s->next;
        if (c->head < 0)
            c->tail = -1;
        buf_return(done);
    }
    kick_send(c);
    maybe_close(c);
}

static void on_accept(int lfd, struct io_uring_cqe *cqe)
{
    struct conn *c;

    if (!(cqe->flags & IORING_CQE_F_MORE))
        arm_accept(lfd);
    if (cqe->res < 0)
        return;
    c = calloc(1, sizeof(*c));
    c->fd = cqe->res;
    c->head = c->tail = -1;
    arm_recv(c, 0);
}

/* A datagram: echoed from its buffer to where it came from, unless it
 * did not fit (then dropped). */
static void on_dgram(struct conn *c, struct io_uring_cqe *cqe)
{
    struct io_uring_recvmsg_out *o;
    struct io_uring_sqe *sqe;
    struct slot *s;
    int bid;

    if (!(cqe->flags & IORING_CQE_F_MORE))
        c->recv_armed = 0;
    if (cqe->res < 0) {
        if (cqe->res == -ENOBUFS)
            starve(c);
        else if (!c->recv_armed)
            arm_recv(c, 1);
        return;
    }
    if (!c->recv_armed)
        arm_recv(c, 1);
    held++;
    bid = (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
    o = io_uring_recvmsg_validate(buf_addr(bid), cqe->res, &dgram_msg);
    if (o == NULL || (o->flags & MSG_TRUNC)) {
        buf_return(bid);
        return;
    }
    s = &slots[bid];
    s->iov.iov_base = io_uring_recvmsg_payload(o, &dgram_msg);
    s->iov.iov_len = io_uring_recvmsg_payload_length(o, cqe->res, &dgram_msg);
    s->msg = (struct msghdr){.msg_name = io_uring_recvmsg_name(o),
                             .msg_namelen = o->namelen,
                             .msg_iov = &s->iov,
                             .msg_iovlen = 1};
    sqe = sqe_get();
    io_uring_prep_sendmsg(sqe, c->fd, &s->msg, 0);
    io_uring_sqe_set_data64(sqe, ((uint64_t)bid << TAG_BITS) | T_DGRAM_SEND);
}

static void on_cqe(int lfd, int dgram, struct io_uring_cqe *cqe)
{
    uint64_t ud = cqe->user_data;
    struct conn *c = (struct conn *)(uintptr_t)(ud & ~(uint64_t)TAG_MASK);

    switch (ud & TAG_MASK) {
    case T_ACCEPT:
        on_accept(lfd, cqe);
        break;
    case T_RECV:
        if (dgram)
            on_dgram(c, cqe);
        else
            on_recv(c, cqe);
        break;
    case T_SEND:
        on_send(c, cqe->res);
        break;
    case T_DGRAM_SEND:
        buf_return((int)(ud >> TAG_BITS));
        break;
    default:
        break;
    }
}

static void run(int lfd, int dgram)
{
    struct io_uring_cqe *cqe;
    unsigned head, n;

    for (;;) {
        bufs_publish();
        io_uring_submit_and_wait(&ring, 1);
        n = 0;
        io_uring_for_each_cqe(&ring, head, cqe)
        {
            on_cqe(lfd, dgram, cqe);
            n++;
        }
        io_uring_cq_advance(&ring, n);
        bufs_publish();
        rearm_starved(dgram);
    }
}

int main(int argc, char **argv)
{
    static struct conn dsock;
    int dgram, lfd, one = 1;

    if (argc != 3 || (lfd = peer_listen(argv[1], argv[2], &dgram)) < 0)
        return 1;
    signal(SIGPIPE, SIG_IGN);
    /* Accepted TCP sockets inherit TCP_NODELAY from the listener. */
    if (strcmp(argv[1], "tcp") == 0)
        setsockopt(lfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (setup_ring() < 0 || setup_buffers() < 0) {
        fprintf(stderr, "uring_echo: io_uring setup failed\n");
        return 1;
    }
    if (dgram) {
        dsock = (struct conn){.fd = lfd, .head = -1, .tail = -1};
        arm_recv(&dsock, 1);
    } else {
        arm_accept(lfd);
    }
    run(lfd, dgram);
}
