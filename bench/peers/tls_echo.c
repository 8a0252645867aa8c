/* tls_echo.c -- the TLS floor: a minimal single-threaded, non-blocking,
 * level-triggered epoll echo server on OpenSSL 3, written the way an expert
 * would: one SSL_CTX (TLS 1.2 and 1.3, session cache and tickets on, so
 * resumption works, one ticket per TLS 1.3 handshake), the handshake driven
 * by the loop, SSL_read until WANT_READ or until OpenSSL holds nothing more
 * (up to 64 KiB), what was read written back at once, what the socket did
 * not take kept per connection (and no more read until it is gone),
 * WANT_READ and WANT_WRITE handled on both the read and the write side,
 * close_notify answered with close_notify. read_ahead lets one recv take a
 * whole record (header and body), and RELEASE_BUFFERS gives an idle
 * connection's buffers back.
 *   tls_echo tcp PORT | unix PATH  CERT [KEY]
 * Prints "listening on tls://127.0.0.1:PORT" (or unix:PATH,tls) once
 * bound. */
#include "common.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/epoll.h>

struct conn {
    int fd;
    SSL *ssl;
    unsigned events;  /* the epoll interest set now */
    char *out;        /* plaintext that SSL_write has not taken yet */
    size_t len, cap;  /* its length and its allocation */
    int handshake_ok; /* the handshake is done */
};

#define RECORD 16384         /* a record's plaintext at most */
static char buf[4 * RECORD]; /* what one wake-up echoes */
static int ep;

static void drop(struct conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    SSL_free(c->ssl);
    close(c->fd);
    free(c->out);
    free(c);
    ERR_clear_error(); /* the error queue is per thread: leave it empty */
}

/* Keeps len bytes that the socket did not take, for a later SSL_write of
 * exactly these bytes (ACCEPT_MOVING_WRITE_BUFFER lets them move). */
static int keep(struct conn *c, const char *p, size_t len)
{
    if (c->len + len > c->cap) {
        size_t cap = c->len + len;
        char *q = realloc(c->out, cap);
        if (q == NULL)
            return -1;
        c->out = q;
        c->cap = cap;
    }
    memmove(c->out + c->len, p, len);
    c->len += len;
    return 0;
}

/* Writes p..p+len; returns the bytes taken, -1 on a fatal error, and sets
 * *wants to SSL_ERROR_WANT_READ or _WRITE when it stopped short. */
static long write_some(struct conn *c, const char *p, size_t len, int *wants)
{
    size_t done = 0;

    *wants = 0;
    while (done < len) {
        int n = SSL_write(c->ssl, p + done, (int)(len - done));
        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
            return -1;
        *wants = e;
        break;
    }
    return (long)done;
}

static void set_events(struct conn *c, unsigned events)
{
    if (events != c->events) {
        struct epoll_event ev = {.events = events, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->events = events;
    }
}

static unsigned interest(int wants)
{
    return wants == SSL_ERROR_WANT_WRITE ? EPOLLOUT : EPOLLIN;
}

/* Whatever woke the connection, retry what was blocked, then read. */
static void service(struct conn *c)
{
    int wants = 0;

    if (!c->handshake_ok) {
        int r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                drop(c);
                return;
            }
            set_events(c, interest(e));
            return;
        }
        c->handshake_ok = 1;
    }
    if (c->len > 0) { /* pending output first, whichever way it waits */
        long n = write_some(c, c->out, c->len, &wants);
        if (n < 0) {
            drop(c);
            return;
        }
        memmove(c->out, c->out + n, c->len - (size_t)n);
        c->len -= (size_t)n;
        if (c->len > 0) {
            set_events(c, interest(wants));
            return;
        }
        free(c->out); /* drained: an idle connection keeps no buffer */
        c->out = NULL;
        c->cap = 0;
    }
    for (;;) {
        size_t got = 0;
        int e = 0;
        /* What OpenSSL holds, record by record, then echoed at once. */
        while (sizeof(buf) - got >= RECORD) {
            int n = SSL_read(c->ssl, buf + got, (int)(sizeof(buf) - got));
            if (n <= 0) {
                e = SSL_get_error(c->ssl, n);
                break;
            }
            got += (size_t)n;
            if (!SSL_has_pending(c->ssl))
                break; /* the rest, if any, is in the kernel: epoll says */
        }
        if (got > 0) {
            long w = write_some(c, buf, got, &wants);
            if (w < 0 ||
                ((size_t)w < got && keep(c, buf + w, got - (size_t)w) < 0)) {
                drop(c);
                return;
            }
            if (c->len > 0) { /* the peer is not reading: wait for it */
                set_events(c, interest(wants));
                return;
            }
        }
        if (e == 0 && SSL_has_pending(c->ssl))
            continue; /* buf was full: epoll would not wake us for these */
        if (e == 0 || e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            set_events(c, interest(e));
            return;
        }
        if (e == SSL_ERROR_ZERO_RETURN) /* close_notify: answer it */
            SSL_shutdown(c->ssl);
        drop(c);
        return;
    }
}

static SSL_CTX *make_ctx(const char *cert, const char *key)
{
    static const unsigned char sid_ctx[] = "tls_echo";
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    if (ctx == NULL || !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
        SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1)
        return NULL;
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS |
                              SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    /* Resumption: TLS 1.2 session IDs in the server cache and tickets
     * (TLS 1.2 and 1.3; stateless, OpenSSL's default keys). */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
    SSL_CTX_set_num_tickets(ctx, 1); /* TLS 1.3: one resumes, two cost more */
    return ctx;
}

static void on_accept(int lfd, SSL_CTX *ctx)
{
    int one = 1;

    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return; /* EAGAIN, or out of descriptors: try on the next wake */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct conn *c = calloc(1, sizeof(*c));
        if (c == NULL || (c->ssl = SSL_new(ctx)) == NULL ||
            !SSL_set_fd(c->ssl, fd)) {
            if (c != NULL)
                SSL_free(c->ssl);
            free(c);
            close(fd);
            ERR_clear_error();
            continue;
        }
        SSL_set_accept_state(c->ssl);
        c->fd = fd;
        c->events = EPOLLIN;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
}

int main(int argc, char **argv)
{
    struct epoll_event evs[256], ev = {.events = EPOLLIN, .data.ptr = NULL};
    int dgram, lfd;
    SSL_CTX *ctx;

    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: tls_echo tcp PORT | unix PATH  CERT [KEY]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN); /* a peer gone while we write: EPIPE */
    ctx = make_ctx(argv[3], argc == 5 ? argv[4] : argv[3]);
    if (ctx == NULL) {
        ERR_print_errors_fp(stderr);
        return 1;
    }
    lfd = peer_listen(argv[1], argv[2], &dgram);
    if (lfd < 0 || dgram) {
        perror("tls_echo: listen");
        return 1;
    }
    if (strcmp(argv[1], "unix") == 0)
        printf("listening on unix:%s,tls\n", argv[2]);
    else
        printf("listening on tls://127.0.0.1:%s\n", argv[2]);
    fflush(stdout);
    ep = epoll_create1(EPOLL_CLOEXEC);
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL)
                on_accept(lfd, ctx);
            else
                service(evs[i].data.ptr);
        }
    }
}
