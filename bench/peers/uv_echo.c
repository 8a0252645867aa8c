/* uv_echo.c -- an echo server on libuv, as its documentation shows one
 * (a buffer allocated per read, a write request allocated per write), or
 * with --tuned: one buffer per connection reused, uv_try_write first.
 *   uv_echo [--tuned] tcp PORT | unix PATH | udp PORT */
#include "common.h"

#include <uv.h>

static uv_loop_t *loop;
static int tuned;

struct conn {
    uv_stream_t *stream; /* the uv_tcp_t or uv_pipe_t below */
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    char buf[65536]; /* --tuned: the read buffer, reused */
};

struct write_req {
    uv_write_t req;
    uv_buf_t buf;
};

static void on_close(uv_handle_t *h)
{
    free(h->data);
}

static void alloc_idiomatic(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    buf->base = malloc(size);
    buf->len = size;
}

static void alloc_tuned(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    struct conn *c = h->data;

    *buf = uv_buf_init(c->buf, sizeof(c->buf));
}

static void on_written(uv_write_t *req, int status)
{
    struct write_req *w = (struct write_req *)req;

    free(w->buf.base);
    free(w);
}

/* Queues a copy of data (or, idiomatic, the read buffer itself). */
static void write_owned(uv_stream_t *s, char *base, size_t len)
{
    struct write_req *w = malloc(sizeof(*w));

    w->buf = uv_buf_init(base, (unsigned)len);
    uv_write(&w->req, s, &w->buf, 1, on_written);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    if (n < 0) {
        if (!tuned)
            free(buf->base);
        uv_close((uv_handle_t *)s, on_close);
        return;
    }
    if (!tuned) {
        if (n > 0)
            write_owned(s, buf->base, (size_t)n);
        else
            free(buf->base);
        return;
    }
    uv_buf_t b = uv_buf_init(buf->base, (unsigned)n);
    int w = n > 0 ? uv_try_write(s, &b, 1) : 0;
    if (w < 0)
        w = 0;
    if (w < n) {
        char *rest = malloc((size_t)(n - w));
        memcpy(rest, buf->base + w, (size_t)(n - w));
        write_owned(s, rest, (size_t)(n - w));
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    struct conn *c = calloc(1, sizeof(*c));

    if (server->type == UV_TCP) {
        uv_tcp_init(loop, &c->h.tcp);
        uv_tcp_nodelay(&c->h.tcp, 1);
    } else {
        uv_pipe_init(loop, &c->h.pipe, 0);
    }
    c->stream = (uv_stream_t *)&c->h;
    c->stream->data = c;
    if (uv_accept(server, c->stream) == 0)
        uv_read_start(c->stream, tuned ? alloc_tuned : alloc_idiomatic,
                      on_read);
    else
        uv_close((uv_handle_t *)c->stream, on_close);
}

/* ------------------------------------------------------------- UDP */

static char udp_buf[65536];

static void udp_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    if (tuned)
        *buf = uv_buf_init(udp_buf, sizeof(udp_buf));
    else
        alloc_idiomatic(h, 65536, buf);
}

struct send_req {
    uv_udp_send_t req;
    uv_buf_t buf;
};

static void on_sent(uv_udp_send_t *req, int status)
{
    struct send_req *s = (struct send_req *)req;

    free(s->buf.base);
    free(s);
}

static void on_datagram(uv_udp_t *h, ssize_t n, const uv_buf_t *buf,
                        const struct sockaddr *from, unsigned flags)
{
    if (n < 0 || from == NULL) {
        if (!tuned)
            free(buf->base);
        return;
    }
    if (tuned) {
        uv_buf_t b = uv_buf_init(buf->base, (unsigned)n);
        uv_udp_try_send(h, &b, 1, from);
        return;
    }
    struct send_req *s = malloc(sizeof(*s));
    s->buf = uv_buf_init(buf->base, (unsigned)n);
    uv_udp_send(&s->req, h, &s->buf, 1, from, on_sent);
}

int main(int argc, char **argv)
{
    static uv_tcp_t tcp;
    static uv_pipe_t pipe_server;
    static uv_udp_t udp;
    struct sockaddr_in in;

    if (argc > 1 && strcmp(argv[1], "--tuned") == 0) {
        tuned = 1;
        argv++;
        argc--;
    }
    if (argc != 3)
        return 2;
    loop = uv_default_loop();
    if (strcmp(argv[1], "udp") == 0) {
        uv_ip4_addr("127.0.0.1", atoi(argv[2]), &in);
        uv_udp_init(loop, &udp);
        if (uv_udp_bind(&udp, (struct sockaddr *)&in, 0) != 0)
            return 1;
        uv_udp_recv_start(&udp, udp_alloc, on_datagram);
    } else if (strcmp(argv[1], "unix") == 0) {
        unlink(argv[2]);
        uv_pipe_init(loop, &pipe_server, 0);
        if (uv_pipe_bind(&pipe_server, argv[2]) != 0 ||
            uv_listen((uv_stream_t *)&pipe_server, 4096, on_connection) != 0)
            return 1;
    } else {
        uv_ip4_addr("127.0.0.1", atoi(argv[2]), &in);
        uv_tcp_init(loop, &tcp);
        if (uv_tcp_bind(&tcp, (struct sockaddr *)&in, 0) != 0 ||
            uv_listen((uv_stream_t *)&tcp, 4096, on_connection) != 0)
            return 1;
    }
    return uv_run(loop, UV_RUN_DEFAULT);
}
