/* notify.c -- systemd's notification protocol without libsystemd: a
 * datagram of "KEY=VALUE" lines to the AF_UNIX socket NOTIFY_SOCKET names
 * (a path, or an abstract name written with a leading @). */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* NOTIFY_SOCKET as an address; 0 when unset, else a negative errno for
 * one that cannot be used. */
static int notify_address(struct sk_addr *a)
{
    const char *name = getenv("NOTIFY_SOCKET");
    size_t len;

    if (name == NULL || name[0] == '\0')
        return 0;
    if (name[0] != '/' && name[0] != '@')
        return -EAFNOSUPPORT; /* vsock: addresses are not for us */
    len = strlen(name);
    if (len >= sizeof(a->u.un.sun_path))
        return -ENAMETOOLONG;
    memset(a, 0, sizeof(*a));
    a->u.un.sun_family = AF_UNIX;
    memcpy(a->u.un.sun_path, name, len);
    if (name[0] == '@')
        a->u.un.sun_path[0] = '\0';
    a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    return 1;
}

static int send_state(const struct sk_addr *a, const char *state)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0), err = 0;

    if (fd < 0)
        return -errno;
    if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, &a->u.sa, a->len) < 0)
        err = -errno;
    close(fd);
    return err < 0 ? err : 1;
}

int sk_notify(const char *state)
{
    struct sk_addr a;
    int err = notify_address(&a);

    return err <= 0 ? err : send_state(&a, state);
}

int sk__notify_setup(struct sk_server *srv)
{
    int err;

    if (!srv->cfg.notify)
        return 0;
    err = notify_address(&srv->notify_addr);
    srv->notify_set = err > 0;
    return err < 0 ? err : 0;
}

void sk__notify(const struct sk_server *srv, const char *state)
{
    if (srv->notify_set)
        send_state(&srv->notify_addr, state); /* systemd gone: no matter */
}

void sk__notify_reloading(const struct sk_server *srv)
{
    struct timespec ts;
    char state[64];

    if (!srv->notify_set)
        return;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    snprintf(state, sizeof(state), "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)ts.tv_sec * 1000000ULL +
                 (unsigned long long)ts.tv_nsec / 1000);
    sk__notify(srv, state);
}
