/* connect_listen.c -- `sockit connect -l ENDPOINT`: listen, take a client,
 * then behave as connect does with that connection. The listener is a
 * single-worker server (so that TLS, UNIX socket files, fd: and sd: are
 * handled as serve handles them: a socket file made here is removed at
 * exit, one that was there is never taken over) that serves one
 * connection at a time; its handler is connect's own stream pump, run on
 * the worker. Without -k, as nc -l, the server stops listening once the
 * first client is open (sk_server_stop_listening()): the kernel refuses
 * further clients; one accepted before that (during the first one's TLS
 * handshake or PROXY header) is closed at once (max_conns 1). The server
 * stops once the first is done. With -k further clients wait in the
 * backlog (max_active 1) and are served in turn, until SIGINT or SIGTERM
 * (which the server handles: the client being served is closed once its
 * output is sent) or a broken stdout.
 *
 * A datagram endpoint waits for the first datagram, connects the socket
 * (a duplicate of the server's) to its sender, prints it as a reply, stops
 * the server and goes on, on the main thread, as connect's datagram mode
 * does; further datagrams from that sender that were read with the first
 * are printed too, those of others dropped. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "connect.h"

/* One run of -l. The worker writes status, peer and dgram_fd (and the
 * pump's fields) while the server runs; the main thread reads them once
 * sk_server_run() has returned. */
struct listen_session {
    struct connect_pump pump;
    struct sk_handler handler; /* the pump's, and on_datagram */
    struct sk_server *srv;
    const struct connect_opts *o;
    struct sk_endpoint bound; /* the canonical endpoint, once bound */
    struct sk_addr peer;      /* datagrams: the first sender */
    int dgram_fd;             /* datagrams: connected to peer, or -1 */
    int status;               /* an exit status decided on the worker */
};

/* The server's data is the pump (its connections' too), whose ended_data
 * is the session. */
static struct listen_session *session_of(void *server_data)
{
    return ((struct connect_pump *)server_data)->ended_data;
}

static void on_ready(void *data)
{
    struct listen_session *s = session_of(data);

    cli_print_listening(s->srv);
}

/* Why a client's connection failed, unless said already. */
static void report_client(struct listen_session *s, struct sk_conn *c)
{
    const struct sk_endpoint *peer = sk_conn_peer(c);
    char text[SK_ENDPOINT_STRLEN];

    if (s->pump.status >= 0)
        return;
    if (peer == NULL || sk_endpoint_format(peer, text, sizeof(text)) < 0)
        snprintf(text, sizeof(text), "?");
    cli_error("connection from %s: %s", text, sk_strerror(s->pump.status));
    s->pump.status = 1; /* said */
}

/* A client is done (on the worker, in its on_close): without -k, or when
 * stdout failed, so is the session. */
static void client_ended(struct connect_pump *p, struct sk_conn *c)
{
    struct listen_session *s = p->ended_data;

    report_client(s, c);
    if (!s->o->keep || p->out_err < 0)
        sk_server_stop(s->srv);
}

/* On the worker, as a client's connection opens: without -k, it is the
 * only one, and the listener stops listening. */
static int on_client_open(struct sk_conn *c)
{
    struct listen_session *s = session_of(sk_server_data(sk_conn_server(c)));

    if (!s->o->keep)
        sk_server_stop_listening(s->srv);
    return connect_pump_handler.on_open(c);
}

static bool same_addr(const struct sk_addr *a, const struct sk_addr *b)
{
    return a->len == b->len && memcmp(&a->u, &b->u, a->len) == 0;
}

/* -v: who sent the first datagram. */
static void announce_sender(const struct listen_session *s)
{
    char text[SK_ENDPOINT_STRLEN];
    struct sk_endpoint ep;

    if (!cli_verbose)
        return;
    if (sk_endpoint_from_addr(&ep, s->bound.scheme, &s->peer) < 0 ||
        sk_endpoint_format(&ep, text, sizeof(text)) < 0)
        snprintf(text, sizeof(text), "?");
    fprintf(stderr, "sockit: datagram from %s\n", text);
}

/* The first datagram's sender becomes the peer of a duplicate of the
 * receiving socket. Returns 0, or -1 after printing why not. */
static int adopt_sender(struct listen_session *s, struct sk_dgram *d)
{
    const struct sk_addr *peer = sk_dgram_peer(d);
    int fd;

    if (peer->len <= sizeof(sa_family_t)) {
        cli_error("connect -l: the first datagram's sender has no address "
                  "to answer");
        return -1;
    }
    fd = fcntl(sk_dgram_fd(d), F_DUPFD_CLOEXEC, 0);
    if (fd < 0 || connect(fd, &peer->u.sa, peer->len) < 0) {
        cli_error("connect -l: %s", sk_strerror(-errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    s->peer = *peer;
    s->dgram_fd = fd;
    announce_sender(s);
    return 0;
}

/* On the worker: the first datagram (and any read with it from the same
 * sender) is printed; the server stops after the first. */
static void on_datagram(struct sk_dgram *d, const char *data, size_t len)
{
    struct listen_session *s = session_of(sk_server_data(sk_dgram_server(d)));
    int err;

    if (s->status != EXIT_OK)
        return;
    if (s->dgram_fd < 0) {
        sk_server_stop(s->srv);
        if (adopt_sender(s, d) < 0) {
            s->status = EXIT_RUNTIME;
            return;
        }
    } else if (!same_addr(&s->peer, sk_dgram_peer(d))) {
        return;
    }
    if ((err = connect_print_reply(data, len, s->o->hex)) < 0)
        s->status = connect_stdout_failed(err);
}

static void on_interrupt(int signo)
{
    (void)signo;
    connect_interrupted = 1;
}

/* The datagram session, on the main thread: SIGINT and SIGTERM (blocked
 * for the server until now, and still, but while connect_dgram() waits)
 * end it as a clean end. */
static int run_dgram(struct listen_session *s)
{
    struct sigaction sa = {.sa_handler = on_interrupt};

    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    return connect_dgram(&s->bound, s->dgram_fd, s->o);
}

/* The exit status of a stream session, once the server has stopped. */
static int stream_status(const struct listen_session *s)
{
    if (s->pump.out_err < 0)
        return connect_stdout_failed(s->pump.out_err);
    if (s->o->keep)
        return EXIT_OK; /* ended by a signal; each client's end was said */
    return s->pump.status == 0 ? EXIT_OK : EXIT_RUNTIME;
}

/* Makes the server and binds ep (of either kind: an fd: or sd: socket is
 * known once adopted). Returns 0, or the exit status after printing why
 * not. */
static int open_server(struct listen_session *s, const struct sk_endpoint *ep,
                       const struct sk_listen_options *lo)
{
    struct sk_server_config cfg = {
        .handler = &s->handler,
        .data = &s->pump,
        .threads = 1,
        /* -k: the next client waits; -l: one is served, and listening
         * stops; one that came before it did is closed at once. */
        .max_active = s->o->keep ? 1 : 0,
        .max_conns = s->o->keep ? 0 : 1,
        .handle_signals = true,
        .ready = on_ready,
    };
    int err;

    if ((err = sk_server_new(&s->srv, &cfg)) < 0) {
        cli_error("connect -l: %s", sk_strerror(err));
        return EXIT_RUNTIME;
    }
    sk_server_set_single_worker(s->srv);
    if (cli_bind_all(s->srv, ep, lo, 1) < 0)
        return EXIT_RUNTIME;
    sk_server_listener_endpoint(s->srv, 0, &s->bound);
    return EXIT_OK;
}

int connect_listen(const struct sk_endpoint *ep,
                   const struct sk_listen_options *lo,
                   const struct connect_opts *o)
{
    struct listen_session s = {.o = o, .dgram_fd = -1, .bound = *ep};
    bool stream;
    int status, err;

    connect_pump_init(&s.pump, &s.bound, o);
    s.pump.accepted = true;
    s.pump.ended = client_ended;
    s.pump.ended_data = &s;
    s.handler = connect_pump_handler;
    s.handler.on_open = on_client_open;
    s.handler.on_datagram = on_datagram;
    status = open_server(&s, ep, lo);
    stream = sk_endpoint_is_stream(&s.bound);
    if (status == EXIT_OK) {
        err = sk_server_run(s.srv);
        if (err < 0) {
            cli_error("connect -l: %s", sk_strerror(err));
            status = EXIT_RUNTIME;
        } else if (stream) {
            status = stream_status(&s);
        } else {
            status = s.status;
            if (status == EXIT_OK && s.dgram_fd >= 0)
                status = run_dgram(&s);
        }
    }
    if (s.dgram_fd >= 0)
        close(s.dgram_fd);
    sk_server_free(s.srv);
    connect_pump_release(&s.pump);
    return status;
}
