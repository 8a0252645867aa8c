/* connect.h -- the parts of `sockit connect`. */
#ifndef SOCKIT_CLI_CONNECT_H
#define SOCKIT_CLI_CONNECT_H

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
};

/* Pumps stdin and stdout through a stream connection to ep until both
 * ends are done. Returns 0, 1 when the failure was already printed, or a
 * negative code to print. */
int connect_stream(const struct sk_endpoint *ep, struct sk_tls *tls,
                   const struct connect_opts *o);

/* Sends stdin's lines as datagrams on the connected socket sock and prints
 * the replies (connect_dgram.c). Returns the exit status, the failure
 * printed. */
int connect_dgram(const struct sk_endpoint *ep, int sock,
                  const struct connect_opts *o);

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
