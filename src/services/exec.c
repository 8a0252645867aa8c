/* exec.c -- inetd-style service: `/bin/sh -c CMD` per connection, with the
 * connection as its stdin and stdout, or per datagram, with the payload on
 * its stdin and its stdout as the reply. SOCKIT_PEER and SOCKIT_LOCAL name
 * the two ends. Children are watched through pidfds and always reaped. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "services.h"

/* Datagram children running at once per worker; more datagrams are
 * dropped, as a busy network would drop them. */
#define EXEC_DGRAM_MAX 64

extern char **environ;

struct child {
    pid_t pid;            /* 0 once reaped */
    pid_t group;          /* its process group: the command's pipeline */
    struct sk_io exit_io; /* the pidfd: readable once the child exits */
};

struct stream_job {
    struct child child;
    struct sk_conn *c;
};

struct dgram_job {
    struct child child;
    struct sk_io out_io; /* the child's stdout */
    struct sk_timer timer;
    struct sk_hold hold;
    struct sk_addr peer;
    int sock_fd;
    bool exited, out_done;
    size_t len;
    char reply[SK_DGRAM_MAX];
};

static __thread unsigned dgram_jobs;

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

/* Starts the command with in_fd as stdin and out_fd as stdout, every
 * signal at its default and none blocked. Returns 0 or a negative errno. */
static int spawn(const char *cmd, int in_fd, int out_fd, const char *peer,
                 const char *local, pid_t *pid)
{
    char *argv[] = {"sh", "-c", (char *)cmd, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, all;
    char **env = child_env(peer, local);
    int err;

    if (env == NULL)
        return -ENOMEM;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in_fd, 0);
    posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
    posix_spawnattr_init(&attr);
    /* A group of its own, so that a timeout ends the whole pipeline. */
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK |
                                        POSIX_SPAWN_SETSIGDEF |
                                        POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    err = posix_spawn(pid, "/bin/sh", &fa, &attr, argv, env);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    free(env);
    return -err;
}

static int child_watch(struct child *ch, struct sk_loop *loop, sk_io_fn cb,
                       void *data)
{
    int fd = (int)syscall(SYS_pidfd_open, ch->pid, 0);

    if (fd < 0)
        return -errno;
    ch->exit_io.data = data;
    if (sk_io_start(loop, &ch->exit_io, fd, SK_READ, false, cb) < 0) {
        close(fd);
        return -EINVAL;
    }
    return 0;
}

/* Reaps the child. force: first kill its whole process group, which may
 * outlive the shell (`cmd &`, a pipeline still draining). */
static void child_end(struct child *ch, bool force)
{
    if (sk_io_is_active(&ch->exit_io)) {
        sk_io_stop(&ch->exit_io);
        close(ch->exit_io.fd);
    }
    if (force && ch->group > 0)
        kill(-ch->group, SIGKILL);
    ch->group = force ? 0 : ch->group;
    if (ch->pid <= 0)
        return;
    if (waitpid(ch->pid, NULL, WNOHANG) == 0) {
        kill(ch->pid, SIGKILL);
        waitpid(ch->pid, NULL, 0);
    }
    ch->pid = 0;
}

static const char *cmd_of(struct sk_server *srv)
{
    return service_opts_of(srv)->exec_cmd;
}

/* ---------------------------------------------------------- streams */

static void stream_exited(struct sk_io *io, unsigned events)
{
    struct stream_job *job = io->data;

    child_end(&job->child, false);
    sk_conn_close(job->c);
}

static int stream_spawn(struct sk_conn *c, struct stream_job *job)
{
    char peer[SK_ENDPOINT_STRLEN] = "", local[SK_ENDPOINT_STRLEN] = "";
    int fd, err;

    if (sk_conn_peer(c) != NULL) {
        sk_endpoint_format(sk_conn_peer(c), peer, sizeof(peer));
        sk_endpoint_format(sk_conn_local(c), local, sizeof(local));
    }
    fd = sk_conn_detach(c);
    if (fd < 0)
        return fd;
    /* The child gets a blocking socket, as any inetd child expects. */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    err =
        spawn(cmd_of(sk_conn_server(c)), fd, fd, peer, local, &job->child.pid);
    job->child.group = job->child.pid;
    close(fd);
    if (err < 0)
        return err;
    return child_watch(&job->child, sk_conn_loop(c), stream_exited, job);
}

static int stream_open(struct sk_conn *c)
{
    struct stream_job *job = calloc(1, sizeof(*job));

    if (job == NULL)
        return -1;
    job->c = c;
    sk_conn_set_data(c, job);
    return stream_spawn(c, job) < 0 ? -1 : 0;
}

static void stream_close(struct sk_conn *c, int status)
{
    struct stream_job *job = sk_conn_data(c);

    if (job == NULL)
        return;
    child_end(&job->child, status != 0);
    free(job);
}

/* -------------------------------------------------------- datagrams */

static void dgram_free(struct dgram_job *job)
{
    child_end(&job->child, !(job->exited && job->out_done));
    if (sk_io_is_active(&job->out_io)) {
        sk_io_stop(&job->out_io);
        close(job->out_io.fd);
    }
    sk_timer_stop(&job->timer);
    sk_hold_release(&job->hold);
    dgram_jobs--;
    free(job);
}

static void dgram_maybe_reply(struct dgram_job *job)
{
    if (!job->exited || !job->out_done)
        return;
    if (job->len > 0)
        sendto(job->sock_fd, job->reply, job->len, MSG_DONTWAIT | MSG_NOSIGNAL,
               &job->peer.u.sa, job->peer.len);
    dgram_free(job);
}

static void dgram_output(struct sk_io *io, unsigned events)
{
    struct dgram_job *job = io->data;
    char scratch[4096];
    ssize_t n;

    /* Output beyond the largest datagram is read and dropped. */
    if (job->len < sizeof(job->reply))
        n = read(io->fd, job->reply + job->len, sizeof(job->reply) - job->len);
    else
        n = read(io->fd, scratch, sizeof(scratch));
    if (n > 0 && job->len < sizeof(job->reply))
        job->len += (size_t)n;
    if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR)))
        return;
    sk_io_stop(io);
    close(io->fd);
    job->out_done = true;
    dgram_maybe_reply(job);
}

static void dgram_exited(struct sk_io *io, unsigned events)
{
    struct dgram_job *job = io->data;

    child_end(&job->child, false);
    job->exited = true;
    dgram_maybe_reply(job);
}

static void dgram_timeout(struct sk_timer *t)
{
    dgram_free(t->data);
}

static void dgram_cancel(struct sk_hold *hold)
{
    dgram_free(hold->data);
}

/* Feeds the payload (at most a pipe's 64 KiB) and starts the child. */
static int dgram_spawn(struct sk_dgram *d, struct dgram_job *job,
                       const char *data, size_t len)
{
    char peer[SK_ENDPOINT_STRLEN] = "", local[SK_ENDPOINT_STRLEN];
    struct sk_endpoint ep;
    int in[2], out[2], err;

    if (pipe2(in, O_CLOEXEC) < 0)
        return -errno;
    if (pipe2(out, O_CLOEXEC) < 0) {
        err = -errno;
        close(in[0]);
        close(in[1]);
        return err;
    }
    fcntl(in[1], F_SETFL, O_NONBLOCK);
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    if (len > 0 && write(in[1], data, len) < 0)
        len = 0;
    close(in[1]);
    if (sk_endpoint_from_addr(&ep, sk_dgram_local(d)->scheme, &job->peer) == 0)
        sk_endpoint_format(&ep, peer, sizeof(peer));
    sk_endpoint_format(sk_dgram_local(d), local, sizeof(local));
    err = spawn(cmd_of(sk_dgram_server(d)), in[0], out[1], peer, local,
                &job->child.pid);
    job->child.group = job->child.pid;
    close(in[0]);
    close(out[1]);
    if (err == 0) {
        job->out_io.data = job;
        err = sk_io_start(sk_dgram_loop(d), &job->out_io, out[0], SK_READ,
                          false, dgram_output);
    }
    if (err < 0)
        close(out[0]);
    return err;
}

static void exec_datagram(struct sk_dgram *d, const char *data, size_t len)
{
    struct service_opts *opts = service_opts_of(sk_dgram_server(d));
    struct dgram_job *job;

    if (dgram_jobs >= EXEC_DGRAM_MAX)
        return;
    job = calloc(1, sizeof(*job));
    if (job == NULL)
        return;
    dgram_jobs++;
    job->peer = *sk_dgram_peer(d);
    job->sock_fd = sk_dgram_fd(d);
    job->hold.data = job;
    sk_dgram_hold(d, &job->hold, dgram_cancel);
    sk_timer_init(&job->timer, dgram_timeout);
    job->timer.data = job;
    if (dgram_spawn(d, job, data, len) < 0 ||
        child_watch(&job->child, sk_dgram_loop(d), dgram_exited, job) < 0 ||
        sk_timer_start(sk_dgram_loop(d), &job->timer, opts->exec_timeout_ms,
                       0) < 0)
        dgram_free(job);
}

static const struct sk_handler handler = {
    .on_open = stream_open,
    .on_close = stream_close,
    .on_datagram = exec_datagram,
};

const struct service service_exec = {
    .name = "exec",
    .summary = "run a shell command per connection or datagram (--exec)",
    .handler = &handler,
};
