/* connect.h -- the parts of `sockit connect`. */
#ifndef SOCKIT_CLI_CONNECT_H
#define SOCKIT_CLI_CONNECT_H

#include <sockit.h>

/* Pumps stdin and stdout through a stream connection to ep until both
 * ends are done. Returns 0, 1 when the failure was already printed, or a
 * negative code to print. */
int connect_stream(const struct sk_endpoint *ep, struct sk_tls *tls,
                   unsigned timeout_ms);

#endif
