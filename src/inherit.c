/* inherit.c -- sockets that exist before the server: "fd:N" (a descriptor
 * inherited from the parent, as inetd's "wait" services get one) and
 * "sd:" (systemd's socket activation, read here without libsystemd).
 *
 * systemd's protocol (sd_listen_fds(3)): LISTEN_PID is the process the
 * sockets are for, LISTEN_FDS how many there are, from descriptor 3 on,
 * and LISTEN_FDNAMES their names (FileDescriptorName=), separated by ':';
 * without it every name is "unknown". The variables are read once per
 * process and removed from the environment, so that the children a server
 * starts (--exec) never take the sockets for theirs. The descriptors
 * passed stay open for the life of the process: each server adopts
 * duplicates of them (and closes those), so that several endpoints and
 * several servers may name one socket without closing it twice. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

/* The first descriptor systemd passes (SD_LISTEN_FDS_START). */
#define SD_FIRST_FD 3
/* More sockets than this is taken for a garbled LISTEN_FDS. */
#define SD_FDS_MAX 65536

static struct {
    pthread_once_t once;
    atomic_bool ready; /* read: the fields below are final */
    int err;           /* why there are none: SK_ENOSDSOCKETS, -EBADF... */
    char why[128];     /* the detail of err */
    int nfds;
    char *names;       /* LISTEN_FDNAMES, a NUL for each ':' */
    const char **name; /* nfds names, into names or "unknown" */
} sd = {.once = PTHREAD_ONCE_INIT};

/* --------------------------------------------------- systemd's sockets */

/* Keeps why err: the detail sk_endpoint_strerror() gives. */
__attribute__((format(printf, 2, 3))) static int sd_fail(int err,
                                                         const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(sd.why, sizeof(sd.why), fmt, ap);
    va_end(ap);
    return err;
}

/* A decimal number 1..max, or -1. */
static long parse_count(const char *s, long max)
{
    long v = 0;

    if (*s == '\0' || strspn(s, "0123456789") != strlen(s))
        return -1;
    for (; *s != '\0'; s++)
        if ((v = v * 10 + (*s - '0')) > max)
            return -1;
    return v;
}

/* Splits a copy of LISTEN_FDNAMES into one name per socket. */
static int sd_names(const char *names)
{
    size_t count = 1;
    char *p;

    sd.name = calloc((size_t)sd.nfds, sizeof(*sd.name));
    if (sd.name == NULL)
        return -ENOMEM;
    if (names == NULL) {
        for (int i = 0; i < sd.nfds; i++)
            sd.name[i] = "unknown";
        return 0;
    }
    for (const char *q = names; *q != '\0'; q++)
        count += *q == ':';
    if (count != (size_t)sd.nfds)
        return sd_fail(SK_ENOSDSOCKETS,
                       "LISTEN_FDNAMES has %zu names for %d sockets", count,
                       sd.nfds);
    if ((sd.names = strdup(names)) == NULL)
        return -ENOMEM;
    p = sd.names;
    for (int i = 0; i < sd.nfds; i++) {
        sd.name[i] = p;
        p += strcspn(p, ":");
        *p++ = '\0';
    }
    return 0;
}

/* Makes every descriptor passed close-on-exec (the children a server
 * starts must not inherit them); one that is not open is refused. */
static int sd_cloexec(void)
{
    for (int i = SD_FIRST_FD; i < SD_FIRST_FD + sd.nfds; i++) {
        int flags = fcntl(i, F_GETFD);
        if (flags < 0 || fcntl(i, F_SETFD, flags | FD_CLOEXEC) < 0) {
            return sd_fail(-EBADF,
                           "descriptor %d passed by systemd is not open", i);
        }
    }
    return 0;
}

/* Reads the variables (copies: they are removed after). */
static int sd_read(const char *fds, const char *pid, const char *names)
{
    long n, p;

    if (fds == NULL)
        return sd_fail(SK_ENOSDSOCKETS, "LISTEN_FDS unset");
    if (pid == NULL)
        return sd_fail(SK_ENOSDSOCKETS, "LISTEN_PID unset");
    if ((p = parse_count(pid, INT_MAX)) < 0)
        return sd_fail(SK_ENOSDSOCKETS, "LISTEN_PID \"%.16s\" is not a pid",
                       pid);
    if (p != getpid())
        return sd_fail(SK_ENOSDSOCKETS, "LISTEN_PID %ld is not this process",
                       p);
    if (strcmp(fds, "0") == 0)
        return sd_fail(SK_ENOSDSOCKETS, "LISTEN_FDS=0");
    if ((n = parse_count(fds, SD_FDS_MAX)) < 0)
        return sd_fail(SK_ENOSDSOCKETS, "LISTEN_FDS \"%.16s\" is not a count",
                       fds);
    sd.nfds = (int)n;
    return sd_names(names);
}

static void sd_init(void)
{
    int err = sd_read(getenv("LISTEN_FDS"), getenv("LISTEN_PID"),
                      getenv("LISTEN_FDNAMES"));

    if (err == 0)
        err = sd_cloexec();
    if (err < 0) {
        free(sd.names);
        free(sd.name);
        sd.names = NULL;
        sd.name = NULL;
        sd.nfds = 0;
        if (err == -ENOMEM)
            sd_fail(err, "out of memory");
    }
    sd.err = err;
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    unsetenv("LISTEN_PIDFDID"); /* systemd 254 and later */
    atomic_store(&sd.ready, true);
}

int sk__sd_count(void)
{
    pthread_once(&sd.once, sd_init);
    return sd.err < 0 ? sd.err : sd.nfds;
}

int sk__sd_fd(size_t i, const char **name)
{
    *name = sd.name[i];
    return SD_FIRST_FD + (int)i;
}

/* Reads systemd's variables first if nobody did: an fd:N that is one of
 * its sockets must be duplicated, not taken, whichever comes first. */
bool sk__sd_holds(int fd)
{
    return sk__sd_count() > 0 && fd >= SD_FIRST_FD &&
           fd < SD_FIRST_FD + sd.nfds;
}

/* ------------------------------------------------- what a socket is */

static int get_int(int fd, int name, int *value)
{
    socklen_t len = sizeof(*value);

    return getsockopt(fd, SOL_SOCKET, name, value, &len) < 0 ? -errno : 0;
}

/* The scheme of a socket of this family, type and protocol, or why
 * sockit does not serve it (SCTP, UDP-Lite, raw, netlink...). */
static int scheme_of(int family, int socktype, int protocol)
{
    if (family == AF_UNIX) {
        if (socktype == SOCK_STREAM)
            return SK_UNIX;
        if (socktype == SOCK_DGRAM)
            return SK_UNIXGRAM;
        return socktype == SOCK_SEQPACKET ? SK_UNIXPACKET : -ESOCKTNOSUPPORT;
    }
    if (family != AF_INET && family != AF_INET6)
        return -EAFNOSUPPORT;
    if (socktype == SOCK_STREAM && protocol == IPPROTO_TCP)
        return SK_TCP;
    if (socktype == SOCK_STREAM && protocol == IPPROTO_MPTCP)
        return SK_MPTCP;
    if (socktype == SOCK_DGRAM && protocol == IPPROTO_UDP)
        return SK_UDP;
    if (socktype == SOCK_STREAM || socktype == SOCK_DGRAM)
        return -EPROTONOSUPPORT;
    return -ESOCKTNOSUPPORT;
}

/* A socket that can serve: a stream one listens; a datagram one is bound
 * (an address of its own) and not connected (else it hears one peer). */
static int check_serving(int fd, int socktype, const struct sk_addr *local)
{
    struct sk_addr peer = {.len = sizeof(peer.u)};
    int listening = 0, err;

    if (socktype != SOCK_DGRAM) {
        err = get_int(fd, SO_ACCEPTCONN, &listening);
        return err < 0 ? err : listening ? 0 : SK_ENOTLISTENING;
    }
    if (local->u.sa.sa_family == AF_UNIX
            ? local->len <= offsetof(struct sockaddr_un, sun_path)
            : sk__sock_port(local) == 0)
        return SK_ENOTLISTENING;
    if (getpeername(fd, &peer.u.sa, &peer.len) == 0)
        return SK_ENOTLISTENING;
    return errno == ENOTCONN ? 0 : -errno;
}

int sk__inherit_check(int fd, struct sk_listener *l)
{
    int family, socktype, protocol, scheme, err;
    struct sk_addr local;
    struct stat st;

    if (fd < 0 || fstat(fd, &st) < 0)
        return -EBADF;
    if (!S_ISSOCK(st.st_mode))
        return -ENOTSOCK;
    if ((err = get_int(fd, SO_DOMAIN, &family)) < 0 ||
        (err = get_int(fd, SO_TYPE, &socktype)) < 0 ||
        (err = get_int(fd, SO_PROTOCOL, &protocol)) < 0)
        return err;
    if ((scheme = scheme_of(family, socktype, protocol)) < 0)
        return scheme;
    if ((err = sk__sock_local(fd, &local)) < 0 ||
        (err = check_serving(fd, socktype, &local)) < 0)
        return err;
    if ((err = sk_endpoint_from_addr(&l->ep, scheme, &local)) < 0)
        return err;
    l->socktype = socktype;
    l->family = family;
    return 0;
}

int sk__inherit_take(int fd, bool dup)
{
    int own = dup ? fcntl(fd, F_DUPFD_CLOEXEC, SD_FIRST_FD) : fd, flags, err;

    if (own < 0)
        return -errno;
    /* O_NONBLOCK is the open file's: a duplicate shares it. */
    if ((flags = fcntl(own, F_GETFL)) < 0 ||
        fcntl(own, F_SETFL, flags | O_NONBLOCK) < 0 ||
        fcntl(own, F_SETFD, FD_CLOEXEC) < 0) {
        err = -errno;
        if (dup)
            close(own);
        return err;
    }
    return own;
}

/* ---------------------------------------------------- error details */

/* The names systemd passed, ", " between, cut to fit out[size]. */
static void list_names(char *out, size_t size)
{
    size_t n = 0;

    out[0] = '\0';
    for (int i = 0; i < sd.nfds && n + 1 < size; i++)
        n += (size_t)snprintf(out + n, size - n, "%s%s", i ? ", " : "",
                              sd.name[i]);
}

static void sd_detail(const struct sk_endpoint *ep, int err, char *out,
                      size_t size)
{
    char names[256];

    if (err == SK_ENOSDNAME && atomic_load(&sd.ready)) {
        list_names(names, sizeof(names));
        snprintf(out, size, "no socket named %s passed by systemd (names: %s)",
                 ep->host, names);
    } else if ((err == SK_ENOSDSOCKETS || err == -EBADF) &&
               atomic_load(&sd.ready) && sd.err == err) {
        snprintf(out, size, "%s (%s)", sk_strerror(err), sd.why);
    } else if (err == SK_ENOTLISTENING) {
        snprintf(out, size,
                 "a socket passed by systemd is not listening (Accept=yes "
                 "is not supported: use Accept=no)");
    } else if (err == -ENOTSOCK) {
        snprintf(out, size,
                 "not a socket (systemd passed something else: a FIFO, a "
                 "special file?)");
    }
}

static void fd_detail(const struct sk_endpoint *ep, int err, char *out,
                      size_t size)
{
    if (err == -EBADF)
        snprintf(out, size, "bad file descriptor (fd:%d is not open)", ep->fd);
    else if (err == -ENOTSOCK)
        snprintf(out, size, "not a socket (fd:%d)", ep->fd);
    else if (err == SK_ENOTLISTENING)
        snprintf(out, size,
                 "socket is not listening (fd:%d must be bound, and "
                 "listening if a stream)",
                 ep->fd);
}

const char *sk_endpoint_strerror(const struct sk_endpoint *ep, int err,
                                 char *out, size_t size)
{
    if (size == 0)
        return sk_strerror(err);
    out[0] = '\0';
    if (ep->scheme == SK_SD)
        sd_detail(ep, err, out, size);
    else if (ep->scheme == SK_FD)
        fd_detail(ep, err, out, size);
    if (out[0] == '\0' && err == -EPROTOTYPE && sk__endpoint_inherited(ep))
        snprintf(out, size,
                 "wrong type of socket (tls and proxy= need a stream socket)");
    if (out[0] == '\0')
        snprintf(out, size, "%s", sk_strerror(err));
    return out;
}
