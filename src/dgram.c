/* dgram.c -- datagram sockets: receive a batch with recvmmsg(), pass each
 * message to the handler, send the replies it queued with one sendmmsg().
 * Also the holds that keep a worker alive for work outliving a callback. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Bytes of reply payload queued per batch before an early flush. */
#define OUT_ARENA (SK_DGRAM_BATCH * SK_DGRAM_MAX)
/* From one receive slot to the next: a datagram's room and 9 cache lines,
 * so that the slots' first bytes fall in 32 different cache sets (64 KiB
 * apart, all of them would compete for one). */
#define IN_STRIDE (SK_DGRAM_MAX + 9 * 64)

struct sk_dgram_batch {
    struct mmsghdr in[SK_DGRAM_BATCH];
    struct iovec in_iov[SK_DGRAM_BATCH];
    struct sk_addr from[SK_DGRAM_BATCH];
    char *in_buf;
    struct mmsghdr out[SK_DGRAM_BATCH];
    struct iovec out_iov[SK_DGRAM_BATCH];
    struct sk_addr to[SK_DGRAM_BATCH];
    char *out_buf;
    size_t out_used;
    unsigned nout;
};

static int batch_new(struct sk_worker *w)
{
    struct sk_dgram_batch *b;

    if (w->batch != NULL)
        return 0;
    b = calloc(1, sizeof(*b));
    if (b == NULL)
        return -ENOMEM;
    /* Pages are only touched as datagrams arrive, so large slots cost
     * address space, not memory. */
    b->in_buf = malloc((size_t)SK_DGRAM_BATCH * IN_STRIDE);
    b->out_buf = malloc(OUT_ARENA);
    if (b->in_buf == NULL || b->out_buf == NULL) {
        free(b->in_buf);
        free(b->out_buf);
        free(b);
        return -ENOMEM;
    }
    w->batch = b;
    return 0;
}

void sk__dgram_free_batch(struct sk_worker *w)
{
    if (w->batch == NULL)
        return;
    free(w->batch->in_buf);
    free(w->batch->out_buf);
    free(w->batch);
    w->batch = NULL;
}

/* Sends every queued reply. A reply the kernel refuses (a peer gone, a
 * full queue) is dropped, as the network may drop any datagram. */
static void flush_replies(struct sk_dsock *s)
{
    struct sk_dgram_batch *b = s->w->batch;
    unsigned sent = 0, taken = 0;
    int n;

    while (sent < b->nout) {
        n = sendmmsg(s->io.fd, b->out + sent, b->nout - sent, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            sent++;
            continue;
        }
        sent += (unsigned)n;
        taken += (unsigned)n;
    }
    sk__count_add(s->w, s->l, SK_STAT_DGRAMS_OUT, taken);
    sk__count_add(s->w, s->l, SK_STAT_DGRAMS_DROPPED, b->nout - taken);
    b->nout = 0;
    b->out_used = 0;
}

/* The replies of a batch leave before its next receive (flush_replies()
 * at the end of on_readable()), so a reply may point at what the batch
 * received. data, when it lies in the receive slots: else NULL. */
static const char *received(const struct sk_dgram_batch *b, const void *data,
                            size_t len)
{
    uintptr_t p = (uintptr_t)data, start = (uintptr_t)b->in_buf;
    size_t room = (size_t)SK_DGRAM_BATCH * IN_STRIDE;

    if (p < start || p - start >= room || len > room - (p - start))
        return NULL;
    return data;
}

/* The address reply i goes to: the sender's own entry in the batch, or a
 * copy of an address from elsewhere. */
static const struct sk_addr *peer_of(struct sk_dgram_batch *b,
                                     const struct sk_dgram *d, unsigned i)
{
    uintptr_t p = (uintptr_t)d->peer, first = (uintptr_t)b->from;

    if (p >= first && p - first < sizeof(b->from))
        return d->peer;
    b->to[i] = *d->peer;
    return &b->to[i];
}

int sk_dgram_reply(struct sk_dgram *d, const void *data, size_t len)
{
    struct sk_dgram_batch *b = d->s->w->batch;
    unsigned i;

    if (len > SK_DGRAM_MAX)
        return -EMSGSIZE;
    if (d->peer->len <= sizeof(sa_family_t))
        return -EDESTADDRREQ;
    if (b->nout == SK_DGRAM_BATCH || b->out_used + len > OUT_ARENA)
        flush_replies(d->s);
    i = b->nout++;
    b->out_iov[i] = (struct iovec){(void *)received(b, data, len), len};
    if (b->out_iov[i].iov_base == NULL) {
        b->out_iov[i].iov_base = b->out_buf + b->out_used;
        memcpy(b->out_buf + b->out_used, data, len);
        b->out_used += len;
    }
    b->out[i] = (struct mmsghdr){
        .msg_hdr = {.msg_name = (void *)&peer_of(b, d, i)->u,
                    .msg_namelen = d->peer->len,
                    .msg_iov = &b->out_iov[i],
                    .msg_iovlen = 1},
    };
    return 0;
}

static void prepare_receive(struct sk_dgram_batch *b)
{
    for (unsigned i = 0; i < SK_DGRAM_BATCH; i++) {
        /* An unnamed sender leaves the address untouched: no family but
         * the one set here may show through. */
        b->from[i].u.sa.sa_family = AF_UNSPEC;
        b->in_iov[i] =
            (struct iovec){b->in_buf + (size_t)i * IN_STRIDE, SK_DGRAM_MAX};
        b->in[i] = (struct mmsghdr){
            .msg_hdr = {.msg_name = &b->from[i].u,
                        .msg_namelen = sizeof(b->from[i].u),
                        .msg_iov = &b->in_iov[i],
                        .msg_iovlen = 1},
        };
    }
}

static void on_readable(struct sk_io *io, unsigned events)
{
    struct sk_dsock *s = io->data;
    struct sk_dgram_batch *b = s->w->batch;
    const struct sk_handler *h = s->w->srv->cfg.handler;
    const struct sk_access *access = s->w->srv->cfg.access;
    int n;

    (void)events;
    prepare_receive(b);
    n = recvmmsg(io->fd, b->in, SK_DGRAM_BATCH, MSG_DONTWAIT, NULL);
    if (n <= 0)
        return; /* EAGAIN, or an ICMP error now consumed */
    for (int i = 0; i < n; i++) {
        struct msghdr *m = &b->in[i].msg_hdr;
        struct sk_dgram d = {.s = s, .peer = &b->from[i]};

        if (m->msg_flags & MSG_TRUNC) {
            /* larger than SK_DGRAM_MAX: dropped whole */
            sk__count(s->w, s->l, SK_STAT_DGRAMS_DROPPED);
            continue;
        }
        b->from[i].len = m->msg_namelen;
        if (m->msg_namelen < sizeof(sa_family_t)) {
            /* An unnamed UNIX sender: as accept() reports one. */
            b->from[i].u.sa.sa_family = (sa_family_t)s->l->family;
            b->from[i].len = sizeof(sa_family_t);
        }
        if (access != NULL && !sk_access_permits(access, &b->from[i], NULL)) {
            sk__count(s->w, s->l, SK_STAT_DGRAMS_REFUSED);
            sk__count(s->w, s->l, SK_STAT_DGRAMS_DROPPED);
            continue;
        }
        sk__count(s->w, s->l, SK_STAT_DGRAMS_IN);
        h->on_datagram(&d, m->msg_iov->iov_base, b->in[i].msg_len);
    }
    if (b->nout > 0)
        flush_replies(s);
}

int sk__dgram_start(struct sk_worker *w, struct sk_dsock *s, int fd)
{
    int err = batch_new(w);

    if (err < 0)
        return err;
    s->io.data = s;
    return sk_io_start(w->loop, &s->io, fd, SK_READ, false, on_readable);
}

const struct sk_addr *sk_dgram_peer(const struct sk_dgram *d)
{
    return d->peer;
}

struct sk_server *sk_dgram_server(const struct sk_dgram *d)
{
    return d->s->w->srv;
}

struct sk_loop *sk_dgram_loop(const struct sk_dgram *d)
{
    return d->s->w->loop;
}

int sk_dgram_fd(const struct sk_dgram *d)
{
    return d->s->io.fd;
}

const struct sk_endpoint *sk_dgram_local(const struct sk_dgram *d)
{
    return &d->s->l->ep;
}

/* ---------------------------------------------------------------- holds */

void sk_dgram_hold(struct sk_dgram *d, struct sk_hold *hold,
                   void (*cancel)(struct sk_hold *hold))
{
    struct sk_worker *w = d->s->w;

    hold->cancel = cancel;
    hold->owner = w;
    hold->prev = NULL;
    hold->next = w->holds;
    if (w->holds != NULL)
        w->holds->prev = hold;
    w->holds = hold;
}

void sk_hold_release(struct sk_hold *hold)
{
    struct sk_worker *w = hold->owner;

    if (w == NULL)
        return;
    if (hold->prev != NULL)
        hold->prev->next = hold->next;
    else
        w->holds = hold->next;
    if (hold->next != NULL)
        hold->next->prev = hold->prev;
    hold->owner = NULL;
}

void sk__hold_cancel_all(struct sk_worker *w)
{
    while (w->holds != NULL) {
        struct sk_hold *h = w->holds;
        h->cancel(h);
        if (w->holds == h)
            sk_hold_release(h);
    }
}
