/* internal.h -- declarations shared by the files of src/; never installed.
 * Struct definitions of the opaque public types live here. */
#ifndef SOCKIT_INTERNAL_H
#define SOCKIT_INTERNAL_H

#define _GNU_SOURCE 1
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "sockit.h"

/* Bytes read from a stream socket per read call. */
#define SK_READ_CHUNK (64 * 1024)
/* Datagrams received or sent per recvmmsg/sendmmsg call. */
#define SK_DGRAM_BATCH 32
/* Connections accepted per readiness event, so one busy listener cannot
 * starve the connections of its worker. */
#define SK_ACCEPT_BATCH 64
/* Queued connections closed cleanly per listener when a drain begins. */
#define SK_BACKLOG_SWEEP 4096
/* Default time for a TLS handshake and a PROXY header, together. */
#define SK_START_TIMEOUT_MS 10000
/* Pause after accept fails for lack of descriptors or memory. */
#define SK_ACCEPT_RETRY_MS 100

/* An intrusive doubly linked list: a list is a sentinel node, so a member
 * can leave it without knowing which list holds it. */
struct sk_link {
    struct sk_link *prev, *next;
};

static inline void sk__link_init(struct sk_link *list)
{
    list->prev = list->next = list;
}

static inline bool sk__link_empty(const struct sk_link *list)
{
    return list->next == list;
}

static inline void sk__link_append(struct sk_link *list, struct sk_link *node)
{
    node->prev = list->prev;
    node->next = list;
    list->prev->next = node;
    list->prev = node;
}

static inline void sk__link_remove(struct sk_link *node)
{
    node->prev->next = node->next;
    node->next->prev = node->prev;
    node->prev = node->next = node;
}

/* Moves every node of from to the end of to; from is left empty. */
static inline void sk__link_splice(struct sk_link *to, struct sk_link *from)
{
    if (sk__link_empty(from))
        return;
    from->next->prev = to->prev;
    from->prev->next = to;
    to->prev->next = from->next;
    to->prev = from->prev;
    sk__link_init(from);
}

/* endpoint.c, endpoint_options.c */
int sk__endpoint_unescape(const char *p, size_t *used);
/* The bytes of a UNIX endpoint's path (an abstract name may hold NULs). */
size_t sk__endpoint_path_length(const struct sk_endpoint *ep);
/* fd: or sd:, a socket to adopt rather than make. */
bool sk__endpoint_inherited(const struct sk_endpoint *ep);
int sk__endpoint_parse_options(struct sk_endpoint *ep,
                               struct sk_endpoint_options *opts,
                               const char *text, const char **why);
int sk__endpoint_format_options(const struct sk_endpoint *ep, bool tls_shown,
                                char *out, size_t size);

/* sock.c */
/* A non-blocking, close-on-exec socket; SK_ENOMPTCP where protocol is
 * IPPROTO_MPTCP and the kernel has none (or net.mptcp.enabled is 0). */
int sk__sock_open(int family, int socktype, int protocol);
int sk__sock_bind(const struct sk_addr *addr, int socktype, int protocol,
                  bool dual_stack, bool reuseport);
/* listen() on a connection-oriented socket (stream, seqpacket). */
int sk__sock_listen(int fd, int socktype);
int sk__sock_local(int fd, struct sk_addr *addr);
int sk__sock_set_port(struct sk_addr *addr, uint16_t port);
uint16_t sk__sock_port(const struct sk_addr *addr);
int sk__sock_probe(const struct sk_addr *addr, int socktype, int protocol,
                   bool dual_stack);

/* unix_file.c: socket files at a path. */
struct sk_unix_mode {
    bool set;
    unsigned mode;
};
/* A socket bound, given its mode and listening at path, which it takes
 * only if free or a stale socket file. Returns the fd (and the file's
 * identity) or -EADDRINUSE, SK_ENOTSOCKFILE, a negative errno. */
int sk__unix_listen_file(const char *path, int socktype,
                         const struct sk_unix_mode *mode, dev_t *dev,
                         ino_t *ino);
/* Removes path if it is still the file identified by dev and ino. */
void sk__unix_remove_file(const char *path, dev_t dev, ino_t ino);
/* TCP_NODELAY on a connected TCP socket (no-op for other families). */
void sk__sock_set_nodelay(int fd, int family);

/* A bound endpoint: one socket per worker (SO_REUSEPORT) or one shared. */
struct sk_listener {
    struct sk_endpoint ep; /* canonical, with the real port */
    int socktype;
    int family;
    int *fds;
    size_t nfds;
    struct sk_tls *tls; /* a reference, for an endpoint with tls */
    char *created_path; /* the UNIX socket file this server made */
    dev_t created_dev;  /* and its identity, so that a file put there */
    ino_t created_ino;  /* by someone else later is left alone */
    /* Adopted from fd: or sd: (fds[0], shared by the workers): another's
     * socket too (systemd keeps its copy), so never shut down, and its
     * file never removed. */
    bool inherited;
    int inherited_fd; /* with inherited: the descriptor as given */
};

/* inherit.c: sockets of fd:N and sd: (see sk_server_listen()). */
/* Fills l->ep (canonical, from getsockname()), socktype and family from
 * what the socket at fd is, changing nothing. Returns 0, -EBADF,
 * -ENOTSOCK, -EAFNOSUPPORT, -ESOCKTNOSUPPORT, -EPROTONOSUPPORT or
 * SK_ENOTLISTENING. */
int sk__inherit_check(int fd, struct sk_listener *l);
/* The descriptor to keep for fd: fd itself, or with dup a duplicate;
 * made non-blocking and close-on-exec. Returns it or a negative errno. */
int sk__inherit_take(int fd, bool dup);
/* How many sockets systemd passed (> 0), read once per process; or
 * SK_ENOSDSOCKETS, -EBADF, -ENOMEM. Thread-safe. */
int sk__sd_count(void);
/* The i-th (below the count) descriptor passed, and its name. */
int sk__sd_fd(size_t i, const char **name);
/* Whether fd is one systemd passed (its variables read if not yet). */
bool sk__sd_holds(int fd);

/* A stream listener's watcher in one worker. */
struct sk_acceptor {
    struct sk_io io;
    struct sk_worker *w;
    struct sk_listener *l;
    bool paused;
};

/* A datagram socket's watcher in one worker. */
struct sk_dsock {
    struct sk_io io;
    struct sk_worker *w;
    struct sk_listener *l;
};

struct sk_dgram {
    struct sk_dsock *s;
    const struct sk_addr *peer;
};

struct sk_dgram_batch;
struct sk_sources;

/* What a server counts (struct sk_server_stats), per worker and listener:
 * each counter has one writer, its worker; a worker's blocks (one per
 * listener, 64-byte aligned) fill cache lines no other worker writes. */
enum sk_stat {
    SK_STAT_ACCEPTED,
    SK_STAT_REFUSED_ACCESS,
    SK_STAT_REFUSED_SOURCE,
    SK_STAT_REFUSED_LIMIT,
    SK_STAT_PROXY_FAILED,
    SK_STAT_TLS_FAILED,
    SK_STAT_DGRAMS_REFUSED,
    SK_STAT_CLOSED,
    SK_STAT_FD_LIMIT,
    SK_STAT_ACCEPT_PAUSES,
    SK_STAT_BYTES_IN,
    SK_STAT_BYTES_OUT,
    SK_STAT_DGRAMS_IN,
    SK_STAT_DGRAMS_OUT,
    SK_STAT_DGRAMS_DROPPED,
    SK_STAT_IDLE_TIMEOUTS,
    SK_STAT_COUNT
};

struct sk_counters {
    _Alignas(64) atomic_uint_fast64_t v[SK_STAT_COUNT];
};

struct sk_worker {
    struct sk_server *srv;
    struct sk_loop *loop;
    pthread_t thread;
    struct sk_acceptor *acceptors;
    size_t nacceptors;
    struct sk_dsock *dsocks;
    size_t ndsocks;
    struct sk_conn *oldest, *newest; /* by last activity, for idle */
    struct sk_link pending;          /* connections with output to flush */
    struct sk_link starting;         /* TLS handshakes, oldest first */
    struct sk_timer start_timer;
    struct sk_conn *closed; /* to free after this iteration */
    size_t nconns;
    struct sk_hold *holds;
    char *rbuf;
    struct sk_dgram_batch *batch;
    struct sk_counters *counters; /* one per listener; NULL for a home */
    struct sk_timer idle_timer;
    struct sk_timer retry_timer;
    bool accept_full;  /* accepting paused at max_active */
    bool accept_short; /* accept ran out of descriptors, none since */
    bool draining;
    bool finished;
    bool unlistened; /* sk_server_stop_listening() applied here */
};

/* Kinds of warnings, each rate limited on its own. */
enum sk_warn {
    SK_WARN_LIMIT,  /* max_conns reached */
    SK_WARN_SOURCE, /* max_per_source reached */
    SK_WARN_ACCEPT, /* accept failed: descriptors or memory exhausted */
    SK_WARN_ERROR,  /* a worker's loop failed */
    SK_WARN_COUNT
};

struct sk_server {
    struct sk_server_config cfg;
    struct sk_listener *listeners;
    size_t nlisteners;
    unsigned nworkers;
    struct sk_worker *workers;
    struct sk_loop *control;
    struct sk_timer drain_timer;
    struct sk_signal sigint, sigterm, sighup;
    atomic_uint nconns;
    atomic_int stop_level; /* 0 running, 1 draining, 2 aborting */
    atomic_uint nfinished;
    pthread_mutex_t start_lock; /* nrunning: workers past their */
    pthread_cond_t start_cond;  /* thread_start hook */
    unsigned nrunning;
    atomic_int run_state; /* 0 before sk_server_run, 1 running, 2 done */
    int handled_level;
    unsigned nstarted;        /* worker threads running */
    pthread_t control_thread; /* sk_server_start() */
    atomic_bool joinable;     /* started and not joined yet */
    int result;               /* of the control thread's run */
    struct sk_ratelimit warn_limits[SK_WARN_COUNT];
    struct sk_addr notify_addr; /* NOTIFY_SOCKET, with cfg.notify */
    bool notify_set;
    /* nworkers blocks of nlisteners counters, made when the run begins
     * and published (release) for readers on any thread; NULL before. */
    _Atomic(struct sk_counters *) counters;
    struct sk_sources *sources; /* with max_per_source, while running */
    /* sk_server_stop_listening(): asked (any thread), the workers woken
     * for it (control thread), and how many workers stopped watching
     * their listeners (the last one shuts down the shared sockets). */
    atomic_bool unlisten;
    bool unlisten_woken;
    atomic_uint nunlistened;
};

/* worker_warn.c: an acceptor's client closed past max_conns, and an
 * accept that failed for want of descriptors or memory (err). */
void sk__warn_limit(struct sk_acceptor *a, const struct sk_addr *peer);
void sk__warn_accept(struct sk_acceptor *a, int err);

/* conn.c */
/* Rounds of flushing before a loop waits. */
#define SK_FLUSH_ROUNDS 4
void sk__conn_flush_all(struct sk_worker *w);
struct sk_worker *sk__conn_home_new(struct sk_loop *loop);
void sk__conn_home_free(struct sk_worker *w);
int sk__conn_accept(struct sk_worker *w, struct sk_listener *l, int fd,
                    const struct sk_addr *peer);
void sk__conn_flush_pending(struct sk_worker *w);
void sk__conn_watch_pending(struct sk_worker *w);
void sk__conn_free_closed(struct sk_worker *w);
void sk__conn_expire_idle(struct sk_worker *w);
void sk__conn_drain_all(struct sk_worker *w);
void sk__conn_abort_all(struct sk_worker *w);

/* loop_uring_send.c: a send through an io_uring loop's ring, at most one
 * in flight per watcher, from a copy of buf made now; it goes with the
 * wait that ends the iteration, and its end reaches the watcher's
 * callback as the event SK_IO_SENT, its result (bytes sent, or -errno:
 * -EAGAIN when the socket was full) from sk__io_sent(). Stopping the
 * watcher first drops a send not yet submitted. Loop thread only.
 * can_send: the loop is an io_uring one and io is started. sk__io_send()
 * returns 0, -EBUSY (one in flight), -EAGAIN (no entry free: send it
 * otherwise) or -ENOMEM. */
#define SK_IO_SENT 256u
bool sk__io_can_send(const struct sk_io *io);
int sk__io_send(struct sk_io *io, const void *buf, size_t len);
int sk__io_sent(const struct sk_io *io);

/* loop_uring_recv.c: receive mode for a stream socket's watcher on an
 * io_uring loop: while it asks for SK_READ, its input comes through a
 * receive into the loop's buffer ring, and SK_READ means that
 * sk__io_recv() has a chunk: its length (*data valid until the loop next
 * waits), 0 for the end of the stream, a negative errno, or -EAGAIN for
 * none (as recv(2) would say); chunks left fire SK_READ again. No recv(2)
 * may be made on the socket meanwhile. The mode lasts until the watcher
 * stops (which drops the chunks not taken). Loop thread only. start:
 * false where it cannot be had (epoll, a kernel without buffer rings). */
bool sk__io_recv_start(struct sk_io *io);
bool sk__io_recv_on(const struct sk_io *io);
ssize_t sk__io_recv(struct sk_io *io, const char **data);
/* What the next sk__io_recv() would return, the chunk left there. */
ssize_t sk__io_recv_peek(const struct sk_io *io);
/* One-shot receives from now on, as on a kernel that cannot limit a
 * multishot one (for the tests of that path). */
void sk__io_recv_oneshot(struct sk_loop *loop);

/* loop.c: milliseconds on the monotonic clock, read now. */
uint64_t sk__clock_ms(void);
/* loop.c: the worker whose conns live on loop; for a loop that is no
 * worker's, one made on first use and flushed before each wait. */
struct sk_worker *sk__loop_home(struct sk_loop *loop);
void sk__loop_set_home(struct sk_loop *loop, struct sk_worker *w);

/* proxy_tlv.c: checks the TLVs of the whole v2 header b[0..total), the
 * first at off (they tile the header, as proxy.c checked). Returns NULL,
 * or why the header is refused (a static phrase). Any thread. */
const char *sk__proxy_v2_check_tlvs(const unsigned char *b, size_t off,
                                    size_t total);

/* conn_proxy.c: handshakes and PROXY headers past their deadline. */
void sk__conn_expire_starting(struct sk_worker *w);
/* Counts n events of listener l on w (nothing for a loop's home or for an
 * outbound connection, l NULL). One writer per counter: a load and a
 * store, no locked add; the store releases, so that a reader that sees a
 * close sees the accept before it. */
static inline void sk__count_add(struct sk_worker *w,
                                 const struct sk_listener *l, enum sk_stat stat,
                                 uint64_t n)
{
    atomic_uint_fast64_t *v;

    if (w->counters == NULL || l == NULL)
        return;
    v = &w->counters[l - w->srv->listeners].v[stat];
    atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + n,
                          memory_order_release);
}

static inline void sk__count(struct sk_worker *w, const struct sk_listener *l,
                             enum sk_stat stat)
{
    sk__count_add(w, l, stat, 1);
}
/* tls.c: a reference more; whether made for listening. */
struct sk_tls *sk__tls_ref(struct sk_tls *tls);
bool sk__tls_listening(const struct sk_tls *tls);

/* worker.c: a connection of w was freed (accepting may resume). */
void sk__worker_conn_freed(struct sk_worker *w);
/* worker.c: the counters of every worker and listener, zeroed, made
 * once; freed with free() by sk_server_free(). */
int sk__server_counters_new(struct sk_server *srv);

/* dgram.c */
int sk__dgram_start(struct sk_worker *w, struct sk_dsock *s, int fd);
void sk__dgram_free_batch(struct sk_worker *w);
void sk__hold_cancel_all(struct sk_worker *w);

/* server.c */
void sk__server_control_wake(void *srv);

/* log.c: a server's events. sk__server_log: a line for -v (event
 * "error"); sk__server_emit: r with its line made from fmt, for the hooks
 * r->warning asks for (nothing when nobody listens, which
 * sk__server_logs() tells beforehand); sk__server_warn_due: whether a
 * warning of kind is to be emitted now (one a second per kind), r made
 * one if so. */
#define SK_LOG_LINE_MAX (2 * SK_ENDPOINT_STRLEN + 256) /* names whole */
bool sk__server_logs(const struct sk_server *srv, bool warning);
void sk__server_log(const struct sk_server *srv, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void sk__server_emit(const struct sk_server *srv, struct sk_log_record *r,
                     const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
bool sk__server_warn_due(struct sk_server *srv, enum sk_warn kind,
                         struct sk_log_record *r);
/* notify.c: with cfg.notify, NOTIFY_SOCKET read (once, by sk_server_new:
 * 0, or a negative errno for an address that cannot be used), then the
 * states sent to it (nothing without one). */
int sk__notify_setup(struct sk_server *srv);
void sk__notify(const struct sk_server *srv, const char *state);
void sk__notify_reloading(const struct sk_server *srv);

/* An endpoint as a log names it ("?" for none, an unnamed UNIX peer as
 * "unix:(unnamed)"). */
void sk__endpoint_text(const struct sk_endpoint *ep, char *out, size_t size);

#endif
