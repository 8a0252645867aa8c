/* common.h -- listening sockets for the benchmark peers: "tcp PORT",
 * "unix PATH" or "udp PORT" on the command line, 127.0.0.1 only. */
#ifndef PEERS_COMMON_H
#define PEERS_COMMON_H

#define _GNU_SOURCE 1
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* Returns a bound (and for streams listening) non-blocking socket. */
static inline int peer_listen(const char *kind, const char *where,
                              int *is_dgram)
{
    int dgram = strcmp(kind, "udp") == 0, one = 1, fd;

    *is_dgram = dgram;
    if (strcmp(kind, "unix") == 0) {
        struct sockaddr_un un = {.sun_family = AF_UNIX};
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        snprintf(un.sun_path, sizeof(un.sun_path), "%s", where);
        unlink(where);
        if (bind(fd, (struct sockaddr *)&un, sizeof(un)) < 0)
            return -1;
    } else {
        struct sockaddr_in in = {.sin_family = AF_INET,
                                 .sin_port = htons((unsigned short)atoi(where)),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        fd = socket(AF_INET,
                    (dgram ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK |
                        SOCK_CLOEXEC,
                    0);
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *)&in, sizeof(in)) < 0)
            return -1;
    }
    if (!dgram && listen(fd, 4096) < 0)
        return -1;
    return fd;
}

#endif
