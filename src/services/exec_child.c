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

/* The environment with SOCKIT_PEER and SOCKIT_LOCAL set; one allocation. */
static char **child_env(const char *peer, const char *local)
{
    size_t n = 0, size;
    char **env, *p;

    while (environ[n] != NULL)
        n++;
    size = (n + 3) * sizeof(char *) + strlen(peer) + strlen(local) + 32;
    env = malloc(size);
    if (env == NULL)
        return NULL;
    p = (char *)(env + n + 3);
    n = 0;
    for (char **e = environ; *e != NULL; e++)
        if (strncmp(*e, "SOCKIT_PEER=", 12) != 0 &&
            strncmp(*e, "SOCKIT_LOCAL=", 13) != 0)
            env[n++] = *e;
    env[n++] = p;
    p += sprintf(p, "SOCKIT_PEER=%s", peer) + 1;
    env[n++] = p;
    sprintf(p, "SOCKIT_LOCAL=%s", local);
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

static int spawn(const char *cmd, int in_fd, int out_fd, const char *peer,
                 const char *local, pid_t *pid)
{
    char *argv[] = {"sh", "-c", (char *)cmd, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    char **env = child_env(peer, local);
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
                int in_fd, int out_fd, const char *peer, const char *local,
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
    err = spawn(cmd, in_fd, out_fd, peer, local, &ch->pid);
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
