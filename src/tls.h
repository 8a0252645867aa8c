/* tls.h -- what the connection layer needs of tls.c; never installed. */
#ifndef SOCKIT_TLS_H
#define SOCKIT_TLS_H

#include <openssl/ssl.h>

#include "sockit.h"

/* A new SSL on fd from tls's current context, set for its side (name,
 * session); NULL without memory. */
SSL *sk__tls_new_ssl(struct sk_tls *tls, int fd);
/* One line on why an SSL call that returned ret failed; clears the
 * thread's error queue. */
void sk__tls_describe(SSL *ssl, int ret, char *out, size_t len);

#endif
