/* exec.h -- the --exec service in three files: exec.c (streams, the
 * service), exec_dgram.c (datagrams) and exec_child.c (starting, watching,
 * killing and reaping children). serve.c fills struct exec_state. */
#ifndef SOCKIT_EXEC_H
#define SOCKIT_EXEC_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "services.h"

/* The settings of --exec beyond struct service_opts, and what every worker
 * shares; service_opts.state points at one (serve.c owns it). The
 * datagram timeout is service_opts.exec_timeout_ms. 0 means none. */
struct exec_state {
    unsigned stream_timeout_ms; /* --exec-timeout on streams */
    unsigned idle_ms;           /* --idle-timeout, applied to streams */
    unsigned max_children;      /* datagram children at once, all workers */
    void (*log)(void *data, const char *msg); /* -v lines, or NULL */
    atomic_uint dgram_children;               /* running now */
    _Atomic uint64_t dgram_dropped;           /* over max_children */
    _Atomic uint64_t dropped_logged_ms;       /* last such line */
};

static inline struct exec_state *exec_state_of(struct sk_server *srv)
{
    return service_opts_of(srv)->state;
}

/* A child: `/bin/sh -c CMD` in a process group of its own, watched through
 * a pidfd on the loop that started it and reaped there without blocking.
 * Fields are exec_child.c's, but for data. */
struct child {
    pid_t pid;            /* 0 once reaped */
    pid_t group;          /* its process group, which may outlive it */
    bool killed;          /* the group got SIGKILL */
    struct sk_io exit_io; /* the pidfd: readable once it exits */
    struct sk_timer poll; /* without a pidfd: waitpid every few ms */
    void (*reaped)(struct child *ch);
    void *data;
};

/* The variables a child gets about its peer, as "NAME=VALUE" strings one
 * after the other in text: SOCKIT_PROTO (the scheme word: tcp, udp, mptcp,
 * unix, unixgram, unixpacket), SOCKIT_PEER and SOCKIT_LOCAL (canonical
 * endpoints), SOCKIT_PEER_ADDR and SOCKIT_LOCAL_ADDR (an IP address as in
 * the endpoint, without brackets; a UNIX path, escaped as in the endpoint,
 * "" when unnamed), SOCKIT_PEER_PORT and SOCKIT_LOCAL_PORT (IP only), and
 * SOCKIT_PEER_UID, SOCKIT_PEER_GID, SOCKIT_PEER_PID (UNIX stream peers:
 * SO_PEERCRED). Those of sockit's own environment never reach a child. */
struct child_env {
    size_t len;
    char text[4 * SK_ENDPOINT_STRLEN + 512];
};

/* Empties env, then adds the names of the two ends (either may be NULL:
 * then SOCKIT_PEER and SOCKIT_LOCAL are set empty, and nothing else). */
void child_env_ends(struct child_env *env, const struct sk_endpoint *peer,
                    const struct sk_endpoint *local);
void child_env_cred(struct child_env *env, const struct sk_peer_cred *cred);

/* Starts cmd with in_fd as stdin, out_fd as stdout, sockit's stderr, no
 * other descriptor, every signal at its default, the variables of env
 * set. reaped(ch) runs on the loop once it is gone. Returns 0 or a
 * negative errno (nothing started then). */
int child_spawn(struct child *ch, struct sk_loop *loop, const char *cmd,
                int in_fd, int out_fd, const struct child_env *env,
                void (*reaped)(struct child *ch));
bool child_running(const struct child *ch);
/* SIGKILL to its whole process group (the command may be a pipeline, or
 * have put work in the background); reaped() follows from the loop. Also
 * after the reap, for the rest of the group (a datagram command whose
 * background work still holds its stdout). */
void child_kill(struct child *ch);
/* Only when the loop is ending: kill, wait for it (SIGKILL makes that
 * short) and stop watching; reaped() is not called. */
void child_end_now(struct child *ch);
/* 0 when pidfd_open(2) works here, else a negative errno. */
int child_probe(void);

/* exec_dgram.c: the on_datagram handler. */
void exec_datagram(struct sk_dgram *d, const char *data, size_t len);

#endif
