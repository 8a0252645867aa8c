/* conn_join.c -- two connections joined: what one reads the other writes,
 * with backpressure (the reader is held while the writer's output is over
 * its limit), a half-close passed on, and a close of one closing the
 * other once its output is sent. A TLS connection detached by a service
 * is joined to one end of a socket pair whose other end the service gets:
 * plaintext for the service, TLS for the peer. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"

int sk_conn_join(struct sk_conn *a, struct sk_conn *b)
{
    const unsigned busy = CONN_CLOSING | CONN_DETACHED | CONN_STARTING;

    if (a == b || a->w != b->w || a->joined != NULL || b->joined != NULL ||
        (a->flags & busy) || (b->flags & busy))
        return -EINVAL;
    a->joined = b;
    b->joined = a;
    /* Each direction has its own limit: a reader is held while the other
     * side's queue is full, never for its own queue. */
    a->flags = (a->flags | CONN_NO_PAUSE) & ~CONN_PAUSED;
    b->flags = (b->flags | CONN_NO_PAUSE) & ~CONN_PAUSED;
    sk_conn_hold_input(a, false);
    sk_conn_hold_input(b, false);
    return 0;
}

void sk__join_read(struct sk_conn *c, const char *data, size_t len)
{
    struct sk_conn *o = c->joined;

    if (sk__conn_write(o, data, len) < 0) {
        sk_conn_abort(c);
        return;
    }
    if (sk_conn_pending(o) >= sk_conn_output_max(o))
        sk_conn_hold_input(c, true);
}

void sk__join_drain(struct sk_conn *c)
{
    sk_conn_hold_input(c->joined, false);
}

/* A side that asked to be closed, or whose both directions are over, is
 * closed once its output is sent; when the other side failed (or its TLS
 * ended without close_notify), without a close_notify of its own, so
 * that an error is never passed on as an authenticated end. */
static void close_when_done(struct sk_conn *c, bool clean)
{
    c->flags &= ~CONN_BRIDGED; /* sk_conn_close() closes it now */
    if (!clean)
        c->flags |= CONN_NO_NOTIFY;
    sk_conn_close(c);
}

void sk__join_eof(struct sk_conn *c)
{
    struct sk_conn *o = c->joined;

    if (o->flags & CONN_CLOSE_ASKED) {
        close_when_done(o, true); /* the service's end is over */
        return;
    }
    if (c->flags & CONN_TRUNCATED) {
        close_when_done(o, false);
        return;
    }
    sk_conn_shutdown(o);
    if (o->flags & CONN_EOF) {
        close_when_done(c, true);
        close_when_done(o, !(o->flags & CONN_TRUNCATED));
    }
}

void sk__join_broken(struct sk_conn *c)
{
    struct sk_conn *o = c->joined;

    c->joined = NULL;
    o->joined = NULL;
    close_when_done(o, c->status == 0);
}

/* ------------------------------------------------------------- bridge */

static const struct sk_handler bridge_handler = {0};

int sk__conn_bridge(struct sk_conn *c)
{
    struct sk_conn *p;
    int sv[2];

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -errno;
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    p = sk__conn_new(c->w, sv[1], &bridge_handler, c->output_max);
    if (p != NULL) {
        p->flags |= CONN_OUTBOUND | CONN_QUIET | CONN_BRIDGE_END;
        p->scheme = SK_UNIX;
    }
    if (p == NULL || sk__conn_start_io(p, sv[1]) < 0) {
        if (p != NULL)
            sk__conn_finish(p, -ENOMEM); /* closes sv[1] */
        else
            close(sv[1]);
        close(sv[0]);
        return -ENOMEM;
    }
    sk__tls_conn_keep_retry(c); /* the rest is dropped, as at any detach */
    sk__conn_opened(p);
    if (sk_conn_join(c, p) < 0) {
        sk__conn_finish(p, -EINVAL);
        close(sv[0]);
        return -EINVAL;
    }
    c->flags |= CONN_BRIDGED;
    if (c->flags & CONN_EOF) /* the client has ended already */
        sk__join_eof(c);
    return sv[0];
}
