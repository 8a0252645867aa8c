/* tls.c -- TLS contexts: the certificates, keys and settings of one
 * endpoint in an OpenSSL SSL_CTX, made from its options, reloaded on
 * demand, shared by every connection and thread; and OpenSSL's errors
 * turned into one readable line. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "internal.h"
#include "tls.h"

struct sk_tls {
    atomic_int refs;
    pthread_mutex_t lock;
    SSL_CTX *ctx; /* the current one, under lock */
    bool listening;
    bool resume;
    char host[SK_HOST_MAX]; /* connecting: the name verified */
    bool host_is_ip;
    SSL_SESSION *session;    /* connecting: the last one, under lock */
    unsigned char alpn[256]; /* wire form: length-prefixed names */
    size_t alpn_len;
    struct sk_endpoint_options opts;
};

static int ctx_index = -1;
static pthread_once_t index_once = PTHREAD_ONCE_INIT;

static void make_index(void)
{
    ctx_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* -------------------------------------------------------- the socket */

/* OpenSSL's own socket BIO writes with write(2), and a peer gone raises
 * SIGPIPE in whatever process links libsockit: this one sends with
 * MSG_NOSIGNAL, as the rest of the library does. */
static BIO_METHOD *socket_method;
static pthread_once_t socket_once = PTHREAD_ONCE_INIT;

static int bio_fd(BIO *b)
{
    return (int)(intptr_t)BIO_get_data(b);
}

static int bio_write(BIO *b, const char *data, int len)
{
    ssize_t n = send(bio_fd(b), data, (size_t)len, MSG_NOSIGNAL);

    BIO_clear_retry_flags(b);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        BIO_set_retry_write(b);
    return (int)n;
}

static int bio_read(BIO *b, char *data, int len)
{
    ssize_t n = recv(bio_fd(b), data, (size_t)len, 0);

    BIO_clear_retry_flags(b);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        BIO_set_retry_read(b);
    else if (n == 0)
        BIO_set_flags(b, BIO_FLAGS_IN_EOF); /* a FIN, for BIO_CTRL_EOF */
    return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_EOF:
        return BIO_test_flags(b, BIO_FLAGS_IN_EOF) != 0;
    case BIO_C_GET_FD:
        if (ptr != NULL)
            *(int *)ptr = bio_fd(b);
        return bio_fd(b);
    default:
        return 0;
    }
}

static void make_socket_method(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK |
                                     BIO_TYPE_DESCRIPTOR,
                                 "sockit socket");

    if (m != NULL && BIO_meth_set_write(m, bio_write) == 1 &&
        BIO_meth_set_read(m, bio_read) == 1 &&
        BIO_meth_set_ctrl(m, bio_ctrl) == 1)
        socket_method = m;
}

/* A BIO on fd that leaves it open when freed; NULL without memory. */
static BIO *socket_bio(int fd)
{
    BIO *b;

    pthread_once(&socket_once, make_socket_method);
    if (socket_method == NULL || (b = BIO_new(socket_method)) == NULL)
        return NULL;
    BIO_set_data(b, (void *)(intptr_t)fd);
    BIO_set_init(b, 1);
    return b;
}

/* ------------------------------------------------------------- errors */

/* Writes one line into err[len], if there is room for any. */
static void __attribute__((format(printf, 3, 4)))
put(char *err, size_t len, const char *fmt, ...)
{
    va_list ap;

    if (len == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
}

/* The reason of the first error queued, in words; clears the queue. */
static const char *queue_reason(void)
{
    unsigned long e = ERR_get_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;

    ERR_clear_error();
    return r != NULL ? r : "unknown error";
}

void sk__tls_describe(SSL *ssl, int ret, char *out, size_t len)
{
    int kind = SSL_get_error(ssl, ret);
    unsigned long e = ERR_peek_error();
    long vr = SSL_get_verify_result(ssl);

    if (ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED && vr != X509_V_OK)
        put(out, len, "certificate verify failed (%s)",
            X509_verify_cert_error_string(vr));
    else if (kind == SSL_ERROR_SYSCALL && e == 0)
        put(out, len, "%s",
            errno != 0 ? sk_strerror(-errno)
                       : "connection closed during the handshake");
    else if (kind == SSL_ERROR_ZERO_RETURN)
        put(out, len, "%s", "connection closed during the handshake");
    else
        put(out, len, "%s", queue_reason());
    ERR_clear_error();
}

/* ------------------------------------------------------------ loading */

/* Says why a file cannot be read, before OpenSSL says it less clearly. */
static int check_file(const char *what, const char *path, char *err, size_t len)
{
    int e;

    if (access(path, R_OK) == 0)
        return 0;
    e = errno;
    if (len > 0)
        snprintf(err, len, "%s %s: %s", what, path, sk_strerror(-e));
    return -e;
}

static int load_pair(SSL_CTX *ctx, const struct sk_endpoint_options *o,
                     char *err, size_t len)
{
    const char *key = o->key[0] != '\0' ? o->key : o->cert;

    int rc;

    if ((rc = check_file("cert", o->cert, err, len)) < 0 ||
        (rc = check_file("key", key, err, len)) < 0)
        return rc;
    if (SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1) {
        put(err, len, "cert %s: no PEM certificate (%s)", o->cert,
            queue_reason());
        return -EINVAL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        /* OpenSSL 3 checks the pair as it loads the key. */
        bool mismatch =
            ERR_GET_REASON(ERR_peek_error()) == X509_R_KEY_VALUES_MISMATCH;
        ERR_clear_error();
        put(err, len,
            mismatch ? "key %s does not match the certificate"
                     : "key %s: no PEM private key",
            key);
        return -EINVAL;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        put(err, len, "key %s does not match the certificate", key);
        return -EINVAL;
    }
    return 0;
}

static int load_ca(SSL_CTX *ctx, const char *ca, bool listening, char *err,
                   size_t len)
{
    int rc = check_file("ca", ca, err, len);

    if (rc < 0)
        return rc;
    if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
        put(err, len, "ca %s: no PEM certificate (%s)", ca, queue_reason());
        return -EINVAL;
    }
    if (listening) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca);
        if (names != NULL)
            SSL_CTX_set_client_CA_list(ctx, names);
        ERR_clear_error();
    }
    return 0;
}

/* Server side of ALPN: of the protocols the client offers, the first in
 * this endpoint's list; none in common fails the handshake (RFC 7301). */
static int select_alpn(SSL *ssl, const unsigned char **out,
                       unsigned char *outlen, const unsigned char *in,
                       unsigned inlen, void *arg)
{
    struct sk_tls *tls = arg;
    unsigned char *sel;

    (void)ssl;
    if (SSL_select_next_proto(&sel, outlen, tls->alpn, (unsigned)tls->alpn_len,
                              in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* Connecting side: a session ticket arrived; keep it for the next one. */
static int new_session(SSL *ssl, SSL_SESSION *sess)
{
    struct sk_tls *tls = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_index);

    bool keep;

    if (tls == NULL)
        return 0;
    pthread_mutex_lock(&tls->lock);
    /* A session verified under a context a reload replaced is not kept. */
    keep = tls->resume && SSL_get_SSL_CTX(ssl) == tls->ctx;
    if (keep) {
        if (tls->session != NULL)
            SSL_SESSION_free(tls->session);
        tls->session = sess;
    }
    pthread_mutex_unlock(&tls->lock);
    return keep; /* 1: the reference is ours */
}

static void set_modes(SSL_CTX *ctx)
{
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS |
                              SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* A peer that closes without close_notify ends the stream as one that
     * sends it does; what came before it was authenticated. */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* TLS 1.2 renegotiation lets a client ask for handshake after
     * handshake on one connection, past the handshake timeout. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    /* One read takes a whole record, header and body, or several: the
     * connection layer asks OpenSSL before it waits on the socket. */
    SSL_CTX_set_read_ahead(ctx, 1);
}

static SSL_CTX *make_ctx(struct sk_tls *tls, char *err, size_t len, int *rcp)
{
    const struct sk_endpoint_options *o = &tls->opts;
    SSL_CTX *ctx =
        SSL_CTX_new(tls->listening ? TLS_server_method() : TLS_client_method());
    int rc = 0;

    if (ctx == NULL) {
        put(err, len, "tls: %s", queue_reason());
        *rcp = -ENOMEM;
        return NULL;
    }
    set_modes(ctx);
    SSL_CTX_set_ex_data(ctx, ctx_index, tls);
    if ((o->given & SK_OPT_CERT) && (rc = load_pair(ctx, o, err, len)) < 0)
        goto fail;
    if ((o->given & SK_OPT_CA) &&
        (rc = load_ca(ctx, o->ca, tls->listening, err, len)) < 0)
        goto fail;
    if (tls->listening) {
        static const unsigned char sid[] = "sockit";
        SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1);
        SSL_CTX_set_num_tickets(ctx, 1);
        if (o->given & SK_OPT_CA)
            SSL_CTX_set_verify(
                ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        if (tls->alpn_len > 0)
            SSL_CTX_set_alpn_select_cb(ctx, select_alpn, tls);
        return ctx;
    }
    if (!(o->given & SK_OPT_VERIFY)) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        if (!(o->given & SK_OPT_CA))
            SSL_CTX_set_default_verify_paths(ctx);
    }
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
                                            SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, new_session);
    if (tls->alpn_len > 0)
        SSL_CTX_set_alpn_protos(ctx, tls->alpn, (unsigned)tls->alpn_len);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    ERR_clear_error();
    *rcp = rc;
    return NULL;
}

/* "h2:http/1.1" to the wire form. */
static void alpn_wire(struct sk_tls *tls, const char *list)
{
    size_t n = 0;

    while (*list != '\0' && n < sizeof(tls->alpn)) {
        size_t len = strcspn(list, ":");
        if (n + 1 + len > sizeof(tls->alpn))
            break;
        tls->alpn[n++] = (unsigned char)len;
        memcpy(tls->alpn + n, list, len);
        n += len;
        list += len + (list[len] == ':');
    }
    tls->alpn_len = n;
}

int sk_tls_new(struct sk_tls **tlsp, const struct sk_endpoint *ep,
               const struct sk_endpoint_options *opts, bool listening,
               char *err, size_t errlen)
{
    struct sk_tls *tls = calloc(1, sizeof(*tls));
    struct in6_addr ip;
    int rc = -EINVAL;

    if (errlen > 0)
        err[0] = '\0';
    if (tls == NULL)
        return -ENOMEM;
    pthread_once(&index_once, make_index);
    atomic_init(&tls->refs, 1);
    pthread_mutex_init(&tls->lock, NULL);
    tls->listening = listening;
    tls->resume = true;
    if (opts != NULL)
        tls->opts = *opts;
    snprintf(tls->host, sizeof(tls->host), "%s",
             (tls->opts.given & SK_OPT_SNI) ? tls->opts.sni : ep->host);
    tls->host_is_ip = inet_pton(AF_INET, tls->host, &ip) == 1 ||
                      inet_pton(AF_INET6, tls->host, &ip) == 1;
    if (tls->opts.given & SK_OPT_ALPN)
        alpn_wire(tls, tls->opts.alpn);
    tls->ctx = make_ctx(tls, err, errlen, &rc);
    if (tls->ctx == NULL) {
        pthread_mutex_destroy(&tls->lock);
        free(tls);
        return rc;
    }
    *tlsp = tls;
    return 0;
}

int sk_tls_reload(struct sk_tls *tls, char *err, size_t errlen)
{
    SSL_CTX *ctx, *old;
    int rc = 0;

    if (errlen > 0)
        err[0] = '\0';
    if ((ctx = make_ctx(tls, err, errlen, &rc)) == NULL)
        return rc;
    pthread_mutex_lock(&tls->lock);
    old = tls->ctx;
    tls->ctx = ctx;
    /* A session of the old context skips the checks the new one makes. */
    if (tls->session != NULL)
        SSL_SESSION_free(tls->session);
    tls->session = NULL;
    pthread_mutex_unlock(&tls->lock);
    SSL_CTX_free(old); /* connections that use it keep it alive */
    return 0;
}

void sk_tls_set_resume(struct sk_tls *tls, bool resume)
{
    pthread_mutex_lock(&tls->lock);
    tls->resume = resume;
    if (!resume && tls->session != NULL) {
        SSL_SESSION_free(tls->session);
        tls->session = NULL;
    }
    pthread_mutex_unlock(&tls->lock);
}

struct sk_tls *sk__tls_ref(struct sk_tls *tls)
{
    atomic_fetch_add(&tls->refs, 1);
    return tls;
}

void sk_tls_free(struct sk_tls *tls)
{
    if (tls == NULL || atomic_fetch_sub(&tls->refs, 1) != 1)
        return;
    SSL_CTX_free(tls->ctx);
    if (tls->session != NULL)
        SSL_SESSION_free(tls->session);
    pthread_mutex_destroy(&tls->lock);
    free(tls);
}

bool sk__tls_listening(const struct sk_tls *tls)
{
    return tls->listening;
}

/* Connecting side: the name to verify and send, a session to resume. */
static int client_setup(struct sk_tls *tls, SSL *ssl)
{
    if (tls->host[0] != '\0' && !(tls->opts.given & SK_OPT_VERIFY)) {
        X509_VERIFY_PARAM *p = SSL_get0_param(ssl);
        if (tls->host_is_ip ? X509_VERIFY_PARAM_set1_ip_asc(p, tls->host) != 1
                            : SSL_set1_host(ssl, tls->host) != 1)
            return -EINVAL;
    }
    if (tls->host[0] != '\0' && !tls->host_is_ip &&
        SSL_set_tlsext_host_name(ssl, tls->host) != 1)
        return -EINVAL;
    pthread_mutex_lock(&tls->lock);
    if (tls->resume && tls->session != NULL)
        SSL_set_session(ssl, tls->session);
    pthread_mutex_unlock(&tls->lock);
    return 0;
}

SSL *sk__tls_new_ssl(struct sk_tls *tls, int fd)
{
    SSL_CTX *ctx;
    SSL *ssl;
    BIO *bio;

    pthread_mutex_lock(&tls->lock);
    ctx = tls->ctx;
    SSL_CTX_up_ref(ctx);
    pthread_mutex_unlock(&tls->lock);
    ssl = SSL_new(ctx);
    SSL_CTX_free(ctx); /* the SSL holds its own reference */
    bio = ssl != NULL ? socket_bio(fd) : NULL;
    if (bio != NULL)
        SSL_set_bio(ssl, bio, bio); /* the SSL owns it now */
    if (bio == NULL || (!tls->listening && client_setup(tls, ssl) < 0)) {
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    if (tls->listening)
        SSL_set_accept_state(ssl);
    else
        SSL_set_connect_state(ssl);
    return ssl;
}
