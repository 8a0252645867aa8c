/* exec_child.c -- the children of --exec: started with posix_spawn() and
 * nothing but their stdio, watched through a pidfd on the worker's loop,
 * killed by process group, reaped when the pidfd says they are gone. No
 * wait blocks a worker, except at its end, on children already SIGKILLed. */
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "exec.h"

/* How often a child is polled when no pidfd could be had for it (out of
 * descriptors): rare, and still without blocking. */
#define POLL_MS 10

extern char **environ;

/* The variables sockit sets: any of these names in its own environment is
 * left out of every child's, set or not for this one. */
static const char *const own_vars[] = {
    "SOCKIT_PROTO",      "SOCKIT_PEER",      "SOCKIT_LOCAL",
    "SOCKIT_PEER_ADDR",  "SOCKIT_PEER_PORT", "SOCKIT_LOCAL_ADDR",
    "SOCKIT_LOCAL_PORT", "SOCKIT_PEER_UID",  "SOCKIT_PEER_GID",
    "SOCKIT_PEER_PID",
};

static bool is_own_var(const char *e)
{
    for (size_t i = 0; i < sizeof(own_vars) / sizeof(own_vars[0]); i++) {
        size_t n = strlen(own_vars[i]);
        if (strncmp(e, own_vars[i], n) == 0 && e[n] == '=')
            return true;
    }
    return false;
}

/* Adds NAME=VALUE; what does not fit is left out (text is sized for the
 * longest endpoints, so nothing is). */
static void env_add(struct child_env *env, const char *name, const char *value)
{
    size_t room = sizeof(env->text) - env->len;
    int n = snprintf(env->text + env->len, room, "%s=%s", name, value);

    if (n >= 0 && (size_t)n < room)
        env->len += (size_t)n + 1;
}

static const char *scheme_word(enum sk_scheme s)
{
    switch (s) {
    case SK_TCP:
    case SK_TCP4:
    case SK_TCP6:
        return "tcp";
    case SK_UDP:
    case SK_UDP4:
    case SK_UDP6:
        return "udp";
    case SK_MPTCP:
    case SK_MPTCP4:
    case SK_MPTCP6:
        return "mptcp";
    case SK_UNIX:
        return "unix";
    case SK_UNIXGRAM:
        return "unixgram";
    case SK_UNIXPACKET:
        return "unixpacket";
    default:
        return NULL;
    }
}

/* NAME_ADDR and, on IP, NAME_PORT of one end. A UNIX path is taken from
 * the canonical text (escaped, so one printable word): what follows the
 * scheme's colon, up to the first option's comma. */
static void env_end(struct child_env *env, const char *addr_name,
                    const char *port_name, const struct sk_endpoint *ep,
                    const char *text)
{
    char port[8];
    const char *p;
    char path[4 * SK_PATH_MAX + 1];
    size_t n;

    /* A PROXY header may name an IP peer on a UNIX listener. */
    if (!sk_endpoint_is_unix(ep) || ep->host[0] != '\0') {
        env_add(env, addr_name, ep->host);
        snprintf(port, sizeof(port), "%u", (unsigned)ep->port);
        env_add(env, port_name, port);
        return;
    }
    /* The path as the endpoint's text writes it (escaped): after the
     * scheme, past the "//" of the long form (a path that begins with
     * "//"), up to the first comma that is no escaped one. */
    p = strchr(text, ':');
    p = p != NULL ? p + 1 : text + strlen(text);
    if (p[0] == '/' && p[1] == '/')
        p += 2;
    for (n = 0; p[n] != '\0' && p[n] != ','; n++)
        if (p[n] == '\\' && p[n + 1] != '\0')
            n++;
    if (n >= sizeof(path))
        n = sizeof(path) - 1;
    memcpy(path, p, n);
    path[n] = '\0';
    env_add(env, addr_name, path);
}

void child_env_ends(struct child_env *env, const struct sk_endpoint *peer,
                    const struct sk_endpoint *local)
{
    char p[SK_ENDPOINT_STRLEN] = "", l[SK_ENDPOINT_STRLEN] = "";
    const char *proto = local != NULL ? scheme_word(local->scheme) : NULL;

    env->len = 0;
    if (peer != NULL && sk_endpoint_format(peer, p, sizeof(p)) < 0)
        p[0] = '\0';
    if (local != NULL && sk_endpoint_format(local, l, sizeof(l)) < 0)
        l[0] = '\0';
    env_add(env, "SOCKIT_PEER", p);
    env_add(env, "SOCKIT_LOCAL", l);
    if (peer == NULL || local == NULL || proto == NULL)
        return;
    env_add(env, "SOCKIT_PROTO", proto);
    env_end(env, "SOCKIT_PEER_ADDR", "SOCKIT_PEER_PORT", peer, p);
    env_end(env, "SOCKIT_LOCAL_ADDR", "SOCKIT_LOCAL_PORT", local, l);
}

void child_env_cred(struct child_env *env, const struct sk_peer_cred *cred)
{
    char v[24];

    snprintf(v, sizeof(v), "%lu", (unsigned long)cred->uid);
    env_add(env, "SOCKIT_PEER_UID", v);
    snprintf(v, sizeof(v), "%lu", (unsigned long)cred->gid);
    env_add(env, "SOCKIT_PEER_GID", v);
    snprintf(v, sizeof(v), "%ld", (long)cred->pid);
    env_add(env, "SOCKIT_PEER_PID", v);
}

/* sockit's environment less its own variables, then those of vars; one
 * allocation, pointing into environ and vars. */
static char **child_environ(const struct child_env *vars)
{
    size_t n = 0, k = 0;
    char **env;

    while (environ[n] != NULL)
        n++;
    for (size_t off = 0; off < vars->len; off += strlen(vars->text + off) + 1)
        k++;
    env = malloc((n + k + 1) * sizeof(char *));
    if (env == NULL)
        return NULL;
    n = 0;
    for (char **e = environ; *e != NULL; e++)
        if (!is_own_var(*e))
            env[n++] = *e;
    for (size_t off = 0; off < vars->len; off += strlen(vars->text + off) + 1)
        env[n++] = (char *)vars->text + off;
    env[n] = NULL;
    return env;
}

/* stdin, stdout, and every other descriptor above stderr closed: whatever
 * sockit's own parent leaked into it, and whatever another worker opened
 * meanwhile, stays out of the child. */
static int file_actions(posix_spawn_file_actions_t *fa, int in_fd, int out_fd)
{
    int err;

    posix_spawn_file_actions_init(fa);
    err = posix_spawn_file_actions_adddup2(fa, in_fd, 0);
    if (err == 0)
        err = posix_spawn_file_actions_adddup2(fa, out_fd, 1);
    if (err == 0)
        err = posix_spawn_file_actions_addclosefrom_np(fa, 3);
    if (err != 0)
        posix_spawn_file_actions_destroy(fa);
    return -err;
}

/* A group of its own, so that a kill ends the whole pipeline; every signal
 * at its default (sockit ignores SIGPIPE) and none blocked. */
static void spawn_attrs(posix_spawnattr_t *attr)
{
    sigset_t none, all;

    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_init(attr);
    posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSIGMASK |
                                       POSIX_SPAWN_SETSIGDEF |
                                       POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(attr, 0);
    posix_spawnattr_setsigmask(attr, &none);
    posix_spawnattr_setsigdefault(attr, &all);
}

static int spawn(const char *cmd, int in_fd, int out_fd,
                 const struct child_env *vars, pid_t *pid)
{
    char *argv[] = {"sh", "-c", (char *)cmd, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    char **env = child_environ(vars);
    int err;

    if (env == NULL)
        return -ENOMEM;
    err = file_actions(&fa, in_fd, out_fd);
    if (err < 0) {
        free(env);
        return err;
    }
    spawn_attrs(&attr);
    err = posix_spawn(pid, "/bin/sh", &fa, &attr, argv, env);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    free(env);
    return -err;
}

static void stop_watching(struct child *ch)
{
    if (sk_io_is_active(&ch->exit_io)) {
        sk_io_stop(&ch->exit_io);
        close(ch->exit_io.fd);
    }
    sk_timer_stop(&ch->poll);
}

/* Reaps the child if it is gone; then reaped() may free ch. What it left
 * running in its process group (`cmd &`) is killed first, while the
 * unreaped shell still pins the group's number: it would otherwise hold
 * the client's socket past every limit. */
static void try_reap(struct child *ch)
{
    siginfo_t info = {0};
    pid_t r;

    if (waitid(P_PID, (id_t)ch->pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
        info.si_pid == 0)
        return; /* still running */
    if (ch->group > 0 && info.si_pid == ch->pid)
        kill(-ch->group, SIGKILL);
    r = waitpid(ch->pid, NULL, WNOHANG);
    if (r == 0 || (r < 0 && errno == EINTR))
        return;
    stop_watching(ch);
    ch->pid = 0;
    ch->reaped(ch);
}

static void on_exit_io(struct sk_io *io, unsigned events)
{
    try_reap(io->data);
}

static void on_poll(struct sk_timer *t)
{
    try_reap(t->data);
}

/* Watches the pidfd; without one (out of descriptors) the poll timer,
 * already running, goes on instead. */
static void watch(struct child *ch, struct sk_loop *loop)
{
    int fd = (int)syscall(SYS_pidfd_open, ch->pid, 0);

    if (fd < 0)
        return;
    ch->exit_io.data = ch;
    if (sk_io_start(loop, &ch->exit_io, fd, SK_READ, false, on_exit_io) < 0) {
        close(fd);
        return;
    }
    sk_timer_stop(&ch->poll);
}

int child_spawn(struct child *ch, struct sk_loop *loop, const char *cmd,
                int in_fd, int out_fd, const struct child_env *env,
                void (*reaped)(struct child *ch))
{
    int err;

    ch->pid = ch->group = 0;
    ch->killed = false;
    ch->reaped = reaped;
    sk_timer_init(&ch->poll, on_poll);
    ch->poll.data = ch;
    /* Started first, so that once the child runs, reaping cannot fail. */
    err = sk_timer_start(loop, &ch->poll, POLL_MS, POLL_MS);
    if (err < 0)
        return err;
    err = spawn(cmd, in_fd, out_fd, env, &ch->pid);
    if (err < 0) {
        sk_timer_stop(&ch->poll);
        ch->pid = 0;
        return err;
    }
    ch->group = ch->pid;
    watch(ch, loop);
    return 0;
}

bool child_running(const struct child *ch)
{
    return ch->pid > 0;
}

void child_kill(struct child *ch)
{
    if (ch->killed)
        return;
    /* While a member lives the group's number cannot name another group;
     * before the reap the shell's cannot name another process. The shell
     * is killed on its own too, had it left the group. */
    if (ch->group > 0)
        kill(-ch->group, SIGKILL);
    if (ch->pid > 0)
        kill(ch->pid, SIGKILL);
    ch->killed = true;
}

void child_end_now(struct child *ch)
{
    child_kill(ch);
    if (ch->pid <= 0)
        return;
    while (waitpid(ch->pid, NULL, 0) < 0 && errno == EINTR)
        ;
    stop_watching(ch);
    ch->pid = 0;
}

int child_probe(void)
{
    int fd = (int)syscall(SYS_pidfd_open, getpid(), 0);

    if (fd < 0)
        return -errno;
    close(fd);
    return 0;
}
