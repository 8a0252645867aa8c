/* conn_tls.c -- TLS under a connection: the handshake on the loop, reads
 * and writes through OpenSSL that wait for whichever direction it needs,
 * close_notify as the half-close (conn_proxy.c expires slow handshakes). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "conn.h"
#include "tls.h"

/* Space that always holds a whole record. */
#define RECORD_MAX SSL3_RT_MAX_PLAIN_LENGTH

static void fail(struct sk_conn *c, int ret, int status)
{
    char msg[SK_TLS_ERRLEN];

    sk__tls_describe(c->ssl, ret, msg, sizeof(msg));
    sk__conn_set_error(c, msg);
    sk__conn_finish(c, status);
}

int sk__tls_conn_start(struct sk_conn *c, struct sk_tls *tls)
{
    struct sk_worker *w = c->w;

    c->ssl = sk__tls_new_ssl(tls, c->io.fd);
    if (c->ssl == NULL)
        return -ENOMEM;
    c->flags |= CONN_STARTING;
    c->start_wants = SK_READ;
    /* After a PROXY header, the deadline it had holds for both. */
    if (c->l != NULL && w->srv != NULL && sk__link_empty(&c->starting)) {
        unsigned ms = w->srv->cfg.handshake_timeout_ms;
        c->start_due =
            sk_loop_now(w->loop) + (ms > 0 ? ms : SK_START_TIMEOUT_MS);
        sk__link_append(&w->starting, &c->starting);
    }
    return 0;
}

void sk__tls_conn_step(struct sk_conn *c)
{
    int r, kind;

    ERR_clear_error();
    errno = 0;
    r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        sk__link_remove(&c->starting);
        /* The client's first request may have come with its Finished. */
        if (SSL_has_pending(c->ssl))
            c->flags |= CONN_TLS_MORE;
        sk__conn_opened(c);
        return;
    }
    kind = SSL_get_error(c->ssl, r);
    if (kind == SSL_ERROR_WANT_READ || kind == SSL_ERROR_WANT_WRITE) {
        c->start_wants = kind == SSL_ERROR_WANT_READ ? SK_READ : SK_WRITE;
        sk__conn_watch(c);
        return;
    }
    fail(c, r, -EPROTO);
}

/* The errno of a failed call, or the protocol error with its words. */
static ssize_t io_error(struct sk_conn *c, int kind)
{
    int err = errno;

    if (kind == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
        ERR_clear_error();
        return err != 0 ? -err : -ECONNRESET;
    }
    fail(c, 0, -EPROTO);
    return -EPROTO;
}

/* The end of the stream: a close_notify, or a FIN without one, which ends
 * it too (what came before was authenticated) but may have cut it short:
 * said by sk_conn_error(), and not passed on as a close_notify. */
static void note_end(struct sk_conn *c)
{
    /* OpenSSL, told to take a bare FIN for an end, says "shutdown
     * received" either way: the socket BIO knows whether it saw the FIN. */
    if (!BIO_test_flags(SSL_get_rbio(c->ssl), BIO_FLAGS_IN_EOF))
        return;
    c->flags |= CONN_TRUNCATED;
    sk__conn_set_error(c, "closed without close_notify");
}

ssize_t sk__tls_conn_read(struct sk_conn *c, char *buf, size_t len)
{
    size_t total = 0, n;
    int kind;

    c->flags &= ~(CONN_RD_WANTS_W | CONN_TLS_MORE);
    while (len - total >= RECORD_MAX) {
        ERR_clear_error();
        errno = 0;
        if (SSL_read_ex(c->ssl, buf + total, len - total, &n) == 1) {
            total += n;
            /* OpenSSL read ahead: what it holds is read now, what it
             * does not is in the kernel, which says so. */
            if (!SSL_has_pending(c->ssl))
                break;
            continue;
        }
        kind = SSL_get_error(c->ssl, 0);
        if (kind == SSL_ERROR_ZERO_RETURN)
            note_end(c);
        if (kind == SSL_ERROR_WANT_WRITE)
            c->flags |= CONN_RD_WANTS_W;
        else if (kind == SSL_ERROR_ZERO_RETURN && total > 0)
            c->flags |= CONN_PEER_DONE;
        else if (kind == SSL_ERROR_ZERO_RETURN)
            return 0;
        else if (kind != SSL_ERROR_WANT_READ)
            return total > 0 ? (ssize_t)total : io_error(c, kind);
        break;
    }
    if (len - total < RECORD_MAX && SSL_has_pending(c->ssl))
        c->flags |= CONN_TLS_MORE; /* read again before the loop waits */
    return total > 0 ? (ssize_t)total : -EAGAIN;
}

ssize_t sk__tls_conn_write(struct sk_conn *c, const char *buf, size_t len)
{
    size_t n;
    int kind;

    c->flags &= ~CONN_WR_WANTS_R;
    ERR_clear_error();
    errno = 0;
    if (SSL_write_ex(c->ssl, buf, len, &n) == 1) {
        c->tls_retry = 0;
        return (ssize_t)n;
    }
    kind = SSL_get_error(c->ssl, 0);
    /* One record of these bytes may be on its way: OpenSSL must be given
     * them again. */
    c->tls_retry = len < RECORD_MAX ? len : RECORD_MAX;
    if (kind == SSL_ERROR_WANT_WRITE)
        return -EAGAIN;
    if (kind == SSL_ERROR_WANT_READ) {
        c->flags |= CONN_WR_WANTS_R;
        return -EAGAIN;
    }
    if (kind == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
        ERR_clear_error();
        return errno != 0 ? -errno : -EPIPE;
    }
    return io_error(c, kind);
}

int sk__tls_conn_shutdown(struct sk_conn *c)
{
    int r, kind;

    ERR_clear_error();
    r = SSL_shutdown(c->ssl);
    if (r >= 0)
        return 0;
    kind = SSL_get_error(c->ssl, r);
    ERR_clear_error();
    return kind == SSL_ERROR_WANT_WRITE || kind == SSL_ERROR_WANT_READ ? -EAGAIN
                                                                       : -EPIPE;
}

void sk__tls_conn_keep_retry(struct sk_conn *c)
{
    if (c->out.len > c->tls_retry)
        c->out.len = c->tls_retry;
}

void sk__tls_conn_free(struct sk_conn *c)
{
    if (c->ssl == NULL)
        return;
    SSL_free(c->ssl);
    c->ssl = NULL;
}

/* ----------------------------------------------------------- accessors */

static bool established(const struct sk_conn *c)
{
    return c->ssl != NULL && !(c->flags & CONN_STARTING);
}

const char *sk_conn_tls_version(const struct sk_conn *c)
{
    return established(c) ? SSL_get_version(c->ssl) : NULL;
}

const char *sk_conn_tls_cipher(const struct sk_conn *c)
{
    return established(c) ? SSL_get_cipher_name(c->ssl) : NULL;
}

const char *sk_conn_tls_alpn(const struct sk_conn *c)
{
    static __thread char name[256];
    const unsigned char *p;
    unsigned len;

    if (!established(c))
        return NULL;
    SSL_get0_alpn_selected(c->ssl, &p, &len);
    if (p == NULL)
        len = 0;
    else
        memcpy(name, p, len);
    name[len] = '\0';
    return name;
}

bool sk_conn_tls_resumed(const struct sk_conn *c)
{
    return established(c) && SSL_session_reused(c->ssl) == 1;
}
