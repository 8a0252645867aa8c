/* error.c -- names for the error codes libsockit returns. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static const struct {
    int err;
    const char *text;
} names[] = {
    {-EADDRINUSE, "address in use"},
    {-EADDRNOTAVAIL, "address not available"},
    {-EACCES, "permission denied"},
    {-EPERM, "operation not permitted"},
    {-ENOENT, "no such file or directory"},
    {-ENOTDIR, "not a directory"},
    {-ENAMETOOLONG, "path too long for a UNIX socket (max 107 bytes)"},
    {-ECONNREFUSED, "connection refused"},
    {-ECONNRESET, "connection reset by peer"},
    {-ETIMEDOUT, "timed out"},
    {-ENETUNREACH, "network unreachable"},
    {-EHOSTUNREACH, "host unreachable"},
    {-EAFNOSUPPORT, "address family not supported"},
    {-EMFILE, "too many open files"},
    {-ENFILE, "too many open files in system"},
    {-ENOMEM, "out of memory"},
    {-EINVAL, "invalid argument"},
    {-EPIPE, "broken pipe"},
    {-EMSGSIZE, "message too long"},
    {-EBADMSG, "bad message"},
    {-ECONNABORTED, "connection aborted"},
    {-ECANCELED, "cancelled"},
    {-EDESTADDRREQ, "destination address required"},
    {-EROFS, "read-only file system"},
    {SK_EAI_NONAME, "name not resolved"},
    {SK_EAI_AGAIN, "temporary failure in name resolution"},
    {SK_EAI_FAIL, "name resolution failed"},
    {SK_EAI_FAMILY, "no address of that family"},
    {SK_EAI_OTHER, "name resolution failed"},
    {SK_ENOTSOCKFILE, "file exists and is not a socket"},
    {-EBADF, "bad file descriptor"},
    {-ENOTSOCK, "not a socket"},
    {-EPROTOTYPE, "wrong type of socket"},
    {SK_ENOTLISTENING,
     "socket is not listening (fd:N must be bound, and listening if a "
     "stream)"},
    {SK_ENOSDSOCKETS, "no sockets passed by systemd"},
    {SK_ENOSDNAME, "no socket of that name passed by systemd"},
    {SK_ENOMPTCP, "multipath TCP not available"},
    {SK_EPROXY, "bad PROXY protocol header"},
    {SK_EREFUSED, "refused by access rules"},
};

const char *sk_strerror(int err)
{
    static __thread char lower[64];
    const char *text;

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (names[i].err == err)
            return names[i].text;
    text = err < 0 && err > -4096 ? strerrordesc_np(-err) : NULL;
    if (text == NULL)
        return "unknown error";
    /* Messages read "verb endpoint: reason": a reason in lower case. */
    snprintf(lower, sizeof(lower), "%s", text);
    lower[0] = (char)tolower((unsigned char)lower[0]);
    return lower;
}
