/* connect.h -- the parts of `sockit connect`. */
#ifndef SOCKIT_CLI_CONNECT_H
#define SOCKIT_CLI_CONNECT_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include <sockit.h>

/* What the options of `sockit connect` ask of a session. */
struct connect_opts {
    unsigned timeout_ms; /* -w: connect timeout (streams), final wait for
                            replies (datagrams) */
    unsigned idle_ms;    /* -i: end after this long with nothing moving */
    bool crlf;           /* -C: each LF sent is sent as CRLF */
    bool strip_lf;       /* --strip-lf: datagrams sent without their LF */
    bool hex;            /* -x: dump both directions on stderr */
    bool keep;           /* -k: with -l, one client after another */
    const struct sk_addr *source; /* -s: bound before connecting, or NULL */
};

/* The state of a stream session (connect_stream.c): stdin's, which lasts
 * from one client to the next under -k, and the current connection's.
 * Fields are connect_stream.c's but ended, ended_data, status and out_err,
 * which whoever runs the session reads. */
struct connect_pump {
    struct sk_loop *loop; /* the connection's */
    struct sk_conn *c;
    const struct sk_endpoint *ep;
    const struct connect_opts *o;
    struct sk_timer idle; /* -i */
    size_t idle_pending;  /* output queued at the last -i expiry */
    struct sk_io in;
    struct sk_lines lines; /* stdin's, on a message connection */
    /* How stdin is sent and what comes back is printed, chosen at open:
     * as bytes, or by line and by message. send returns 0, SK_LINES_PAUSE
     * (the rest kept until the queue drains) or a negative errno. */
    int (*send)(struct connect_pump *p, const char *data, size_t len);
    int (*print)(const char *data, size_t len);
    /* When set, called at the end of each connection's on_close (the
     * connection's peer still readable) in place of stopping the loop. */
    void (*ended)(struct connect_pump *p, struct sk_conn *c);
    void *ended_data;
    bool accepted;   /* the connections are a listener's (-l) */
    bool in_watched; /* stdin is pollable (not a regular file) */
    bool in_eof, in_tty, peer_eof;
    bool prev_cr; /* -C: the last byte sent was a CR */
    bool idled;   /* -i expired: a clean end */
    int out_err;  /* a failed write to stdout */
    int status;   /* the last connection's: 0, 1 (said), or -errno */
};

/* Makes p ready for sessions on ep with the options o (both must outlive
 * it); connect_pump_release() frees what it holds. */
void connect_pump_init(struct connect_pump *p, const struct sk_endpoint *ep,
                       const struct connect_opts *o);
void connect_pump_release(struct connect_pump *p);
/* The handler of a session's connection, its data the pump: an outbound
 * one, or each one a listener accepts (-l; on_datagram unused). */
extern const struct sk_handler connect_pump_handler;

/* Pumps stdin and stdout through a stream connection to ep until both
 * ends are done. Returns 0, 1 when the failure was already printed, or a
 * negative code to print. */
int connect_stream(const struct sk_endpoint *ep, struct sk_tls *tls,
                   const struct connect_opts *o);

/* -l: listens on ep (lo: its options, as cli_parse_listen() gave them),
 * prints the "listening on" line, takes one client (-k: one after
 * another, until SIGINT or SIGTERM) and serves it as connect does
 * (connect_listen.c). Returns the exit status, every failure printed. */
int connect_listen(const struct sk_endpoint *ep,
                   const struct sk_listen_options *lo,
                   const struct connect_opts *o);

/* Sends stdin's lines as datagrams on the connected socket sock and prints
 * the replies (connect_dgram.c). Returns the exit status, the failure
 * printed. */
int connect_dgram(const struct sk_endpoint *ep, int sock,
                  const struct connect_opts *o);

/* Set by a signal handler: connect_dgram() then ends, as a clean end. */
extern volatile sig_atomic_t connect_interrupted;

/* Prints one datagram or message received, with a LF after it unless it
 * ends in one (and, with hex, its dump). Returns 0 or a negative errno of
 * stdout. */
int connect_print_reply(const char *data, size_t len, bool hex);

/* -x (connect_hex.c): dumps len bytes of data moved in direction dir ('>'
 * sent, '<' received) on stderr, starting a fresh line; the offsets go on
 * from one call to the next, per direction, until connect_hex_reset(). */
void connect_hex(char dir, const void *data, size_t len);
void connect_hex_reset(void);

/* -C on a byte stream: copies len bytes of in to out (room for 2 * len)
 * with a CR put before each LF that has none; *prev_cr says whether the
 * byte before in was a CR and is updated. Returns the length of out. */
size_t connect_crlf(const char *in, size_t len, char *out, bool *prev_cr);

/* Writes all of data to stdout, waiting when it is full. Returns 0 or a
 * negative errno. */
int connect_put_out(const char *data, size_t len);

/* Reports a failed write to stdout: quietly for a closed pipe (returns
 * EXIT_OK), else `sockit: stdout: REASON` (returns EXIT_RUNTIME). */
int connect_stdout_failed(int err);

#endif
