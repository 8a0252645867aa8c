/* conn.h -- a stream connection, shared by the files of the connection
 * layer: conn.c (buffers, reading, writing, closing), conn_tls.c (TLS
 * under it), conn_connect.c (outbound ones); never installed. */
#ifndef SOCKIT_CONN_H
#define SOCKIT_CONN_H

#include "internal.h"
#include "sources.h"

#define CONN_CLOSING 1u   /* no more reading; close once output is sent */
#define CONN_CLOSED 2u    /* socket closed; freed after this iteration */
#define CONN_QUEUED 4u    /* on the worker's pending list */
#define CONN_PAUSED 8u    /* reading paused for backpressure */
#define CONN_EOF 16u      /* the peer sent FIN (or close_notify) */
#define CONN_DETACHED 32u /* the descriptor belongs to the service */
#define CONN_HELD 64u     /* reading paused by the service */
#define CONN_STARTING                                                          \
    128u /* connecting, awaiting a PROXY header, or in the TLS handshake */
#define CONN_UNOPENED 256u      /* on_open not called (yet) */
#define CONN_OUTBOUND 512u      /* made by sk_conn_connect() */
#define CONN_SHUT_WR 1024u      /* half-close asked for */
#define CONN_SHUT_DONE 2048u    /* FIN or close_notify sent */
#define CONN_RD_WANTS_W 4096u   /* TLS: a read waits for writability */
#define CONN_WR_WANTS_R 8192u   /* TLS: a write waits for readability */
#define CONN_PEER_DONE 16384u   /* TLS: close_notify came with the data */
#define CONN_QUIET 32768u       /* closed before the handler knew of it */
#define CONN_BRIDGED 65536u     /* TLS, detached: its service has a plain end */
#define CONN_BRIDGE_END 131072u /* the library's end of that socket pair */
#define CONN_CLOSE_ASKED 262144u /* bridged: closed once all is passed on */
#define CONN_TLS_MORE 524288u    /* TLS: OpenSSL holds input to read */
#define CONN_NO_PAUSE 1048576u   /* reading goes on whatever is queued */
#define CONN_NO_NOTIFY 2097152u  /* closed without close_notify */
#define CONN_PARKED 4194304u     /* hung up while not reading: unwatched */
#define CONN_TRUNCATED 8388608u  /* TLS: ended by a FIN, no close_notify */
#define CONN_PROXY 16777216u     /* awaiting its PROXY header */
#define CONN_MESSAGES 33554432u  /* SOCK_SEQPACKET: each write a message */
#define CONN_WROTE 67108864u     /* written through since the last flush */
#define CONN_SENDING 134217728u  /* the queue's head in a ring send */
#define CONN_RING_RX 268435456u  /* input through the loop's ring */
#define CONN_NO_RING 536870912u  /* no ring to read through */

struct ssl_st;
struct sk_outbound;

struct sk_conn {
    struct sk_io io;
    struct sk_worker *w;
    struct sk_listener *l; /* NULL for an outbound connection */
    const struct sk_handler *h;
    size_t output_max;
    struct sk_buf out;
    unsigned flags;
    unsigned start_wants; /* SK_READ/SK_WRITE while CONN_STARTING */
    int status;
    enum sk_scheme scheme; /* of the names */
    uint64_t last_active;
    struct sk_conn *prev, *next; /* worker's activity list */
    struct sk_link pending;      /* on a pending list while CONN_QUEUED */
    struct sk_link starting;     /* worker's handshake list */
    uint64_t start_due;
    struct sk_conn *next_closed;
    void *data;
    struct ssl_st *ssl; /* NULL: plaintext */
    size_t tls_retry;   /* bytes of a write OpenSSL must be given again */
    char *error;        /* sk_conn_error(), made on failure */
    struct sk_outbound *ob;
    struct sk_conn *joined; /* sk_conn_join() */
    struct sk_addr peer_addr;
    struct sk_endpoint *names; /* [0] peer, [1] local; made on demand */
    /* The local address a PROXY header gave (owned; NULL: the socket's),
     * apart so that the other connections do not carry its room. */
    struct sk_addr *local_addr;
    struct sk_buf *proxy_part; /* a PROXY header come in pieces, or NULL */
    uint64_t born_ms;          /* loop time it was accepted or connected */
    uint64_t bytes_in;         /* read from the peer (after TLS) */
    uint64_t bytes_out;        /* taken by the kernel (before TLS) */
    struct sk_peer_cred cred;  /* UNIX stream peers, read at accept */
    struct sk_source_key source;
    bool has_cred;
    bool keyed;   /* counted in the server's sources */
    bool counted; /* counted accepted: its close is counted too */
};

/* conn.c */
void sk__conn_list_unlink(struct sk_conn *c);
void sk__conn_list_append(struct sk_conn *c);
void sk__conn_queue(struct sk_conn *c);
/* sk_conn_write() for the library's own writes (a bridged connection's). */
int sk__conn_write(struct sk_conn *c, const void *data, size_t len);
int sk__conn_shut_write(struct sk_conn *c);
/* Marks c active now, moving it to the young end of the list. */
void sk__conn_touch(struct sk_conn *c);

/* conn_write.c */
/* Sends what is queued. Returns 0 (all sent, in flight through the ring,
 * or the kernel is full) or a negative errno after which c is to be
 * closed. */
int sk__conn_flush(struct sk_conn *c);
/* The ring send in flight has ended (SK_IO_SENT): its bytes leave the
 * queue. Returns 0, 1 when the socket was full (wait for room, not send
 * again), or the send's error, after which c is to be closed. */
int sk__conn_sent(struct sk_conn *c);
struct sk_conn *sk__conn_new(struct sk_worker *w, int fd,
                             const struct sk_handler *h, size_t output_max);
int sk__conn_start_io(struct sk_conn *c, int fd);
void sk__conn_finish(struct sk_conn *c, int status);
void sk__conn_watch(struct sk_conn *c);
/* The connection is ready: on_open, then reading. */
void sk__conn_opened(struct sk_conn *c);
void sk__conn_set_error(struct sk_conn *c, const char *msg);
void sk__conn_log(const struct sk_conn *c, const char *what, int status);

/* conn_tls.c: the TLS transport. start makes the SSL; step runs the
 * handshake (on_open once done, the connection closed if it fails). Reads and
 * writes return a count, 0 at the end of the stream (read), -EAGAIN (with what
 * it waits for in c->flags), or a negative errno; a failure's words go to
 * c->error. */
int sk__tls_conn_start(struct sk_conn *c, struct sk_tls *tls);
void sk__tls_conn_step(struct sk_conn *c);
ssize_t sk__tls_conn_read(struct sk_conn *c, char *buf, size_t len);
ssize_t sk__tls_conn_write(struct sk_conn *c, const char *buf, size_t len);
/* Sends close_notify: 0, -EAGAIN, or a negative errno. */
int sk__tls_conn_shutdown(struct sk_conn *c);
void sk__tls_conn_free(struct sk_conn *c);
/* Drops the queued output but what OpenSSL must be given again. */
void sk__tls_conn_keep_retry(struct sk_conn *c);

/* conn_proxy.c: admission of a peer (access rules, then the per-source
 * limit: *keyed says a source was counted, to give back with
 * sk__conn_unadmit()), and the PROXY header of a proxy= listener. */
int sk__conn_admit(struct sk_worker *w, const struct sk_listener *l,
                   const struct sk_addr *peer, enum sk_scheme scheme,
                   const struct sk_peer_cred *cred, struct sk_source_key *key,
                   bool *keyed);
void sk__conn_unadmit(struct sk_conn *c);
int sk__proxy_conn_start(struct sk_conn *c);
/* conn_life.c: frees the part of a PROXY header kept so far. */
void sk__conn_drop_proxy_part(struct sk_conn *c);
void sk__proxy_conn_step(struct sk_conn *c);

/* conn_join.c: dispatch of a joined connection's events. */
void sk__join_read(struct sk_conn *c, const char *data, size_t len);
void sk__join_drain(struct sk_conn *c);
void sk__join_eof(struct sk_conn *c);
void sk__join_broken(struct sk_conn *c);
/* Detaches a TLS connection: returns the service's end of a socket pair
 * whose other end is joined to c. */
int sk__conn_bridge(struct sk_conn *c);

/* conn_connect.c */
void sk__outbound_opened(struct sk_conn *c);
void sk__outbound_free(struct sk_conn *c);

#endif
