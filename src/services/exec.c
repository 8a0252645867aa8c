/* exec.c -- inetd-style service: `/bin/sh -c CMD` per connection, with the
 * connection as its stdin and stdout, or per datagram (exec_dgram.c), with
 * the payload on its stdin and its stdout as the reply. SOCKIT_PEER,
 * SOCKIT_LOCAL and the other variables of struct child_env (exec.h) name
 * the two ends.
 *
 * A stream child holds the socket itself, so the library sees none of its
 * traffic; sockit keeps a copy of the descriptor to watch it: on TCP the
 * kernel's TCP_INFO (the last data received and the last data sent), on a
 * UNIX stream an edge-triggered epoll set holding the socket, made ready
 * each time the client sends and each time it takes some of the child's
 * output, and looked at on each tick of the idle check (so activity counts
 * from the tick that sees it). A child idle past --idle-timeout, or
 * running past --exec-timeout, is killed with its process group and the
 * connection shut down. The connection stays counted (--max-children is
 * the server's max_active) until the child is reaped, and drained.
 *
 * A command that exits without reading all its input must not have the
 * kernel reset the connection (it does when a socket is closed with
 * unread input), which would lose the reply it gave: sockit shuts down
 * its side for writing, so the client sees the reply then EOF, and reads
 * away what the client still sends until the client closes, DRAIN_BYTES
 * or DRAIN_MS at most, on the loop, before it closes the socket. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "exec.h"

/* The most that is read away after a command exits, and for how long. */
#define DRAIN_BYTES (8u << 20)
#define DRAIN_MS 3000

struct stream_job {
    struct child child;
    struct sk_conn *c;
    int fd;   /* sockit's copy of the socket, or -1 */
    bool tcp; /* else UNIX: activity is the epoll set */
    int epfd; /* UNIX: the epoll set holding fd, or -1 */
    struct sk_timer idle_tick, deadline;
    uint64_t last_active;  /* loop time of the last traffic seen */
    struct sk_io drain_io; /* after the exit: input read away */
    struct sk_timer drain_timer;
    size_t drained;
};

static const char *cmd_of(struct sk_server *srv)
{
    return service_opts_of(srv)->exec_cmd;
}

static void log_kill(struct stream_job *job, const char *why, unsigned ms)
{
    struct exec_state *st = exec_state_of(sk_conn_server(job->c));
    char msg[96];

    if (st->log == NULL)
        return;
    snprintf(msg, sizeof(msg), "exec: command %d killed: %s %g s",
             (int)job->child.pid, why, ms / 1000.0);
    st->log(NULL, msg);
}

/* Stops watching the socket; it stays open. */
static void stop_watching(struct stream_job *job)
{
    sk_timer_stop(&job->idle_tick);
    sk_timer_stop(&job->deadline);
    if (job->epfd >= 0)
        close(job->epfd);
    job->epfd = -1;
}

static void close_socket(struct stream_job *job)
{
    stop_watching(job);
    if (sk_io_is_active(&job->drain_io))
        sk_io_stop(&job->drain_io);
    sk_timer_stop(&job->drain_timer);
    if (job->fd >= 0)
        close(job->fd);
    job->fd = -1;
}

/* Ends the command: its group is killed, the client's connection shut down
 * even where a process outside the group still holds it. The connection is
 * closed once the child is reaped. */
static void stream_kill(struct stream_job *job)
{
    stop_watching(job);
    shutdown(job->fd, SHUT_RDWR);
    child_kill(&job->child);
}

static void drain_done(struct stream_job *job)
{
    close_socket(job);
    sk_conn_close(job->c);
}

/* Reads what the client sent; true once nothing more is to be read:
 * EOF, an error, or DRAIN_BYTES read. */
static bool drain_some(struct stream_job *job)
{
    char scratch[16384];

    for (int i = 0; i < 64; i++) {
        ssize_t n = recv(job->fd, scratch, sizeof(scratch), MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return false;
        if (n <= 0)
            return true;
        job->drained += (size_t)n;
        if (job->drained >= DRAIN_BYTES)
            return true;
    }
    return false;
}

static void on_drain(struct sk_io *io, unsigned events)
{
    struct stream_job *job = io->data;

    if (drain_some(job))
        drain_done(job);
}

static void on_drain_timer(struct sk_timer *t)
{
    drain_done(t->data);
}

/* The command exited by itself: its output is sent on, then EOF, and the
 * client's input read away (see the top of this file). A killed one's
 * connection was shut down already. */
static void stream_reaped(struct child *ch)
{
    struct stream_job *job = ch->data;
    struct sk_loop *loop = sk_conn_loop(job->c);

    stop_watching(job);
    /* What the command left running in its group was killed as it was
     * reaped (exec_child.c): the socket is sockit's alone now. */
    if (job->child.killed || job->fd < 0) {
        drain_done(job);
        return;
    }
    shutdown(job->fd, SHUT_WR);
    if (drain_some(job)) {
        drain_done(job);
        return;
    }
    job->drain_io.data = job;
    if (sk_io_start(loop, &job->drain_io, job->fd, SK_READ, false, on_drain) <
            0 ||
        sk_timer_start(loop, &job->drain_timer, DRAIN_MS, 0) < 0)
        drain_done(job);
}

/* ------------------------------------------------------ idle, timeout */

/* TCP: the kernel knows when data last came in and went out. */
static void tcp_activity(struct stream_job *job, uint64_t now)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    uint64_t ago;

    if (getsockopt(job->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
        return;
    ago = ti.tcpi_last_data_recv < ti.tcpi_last_data_sent
              ? ti.tcpi_last_data_recv
              : ti.tcpi_last_data_sent;
    if (ago <= now && now - ago > job->last_active)
        job->last_active = now - ago;
}

/* UNIX: a wake-up of the socket since the last look left the epoll set
 * ready (edge-triggered: looking makes it unready again). */
static void unix_activity(struct stream_job *job, uint64_t now)
{
    struct epoll_event ev;

    if (epoll_wait(job->epfd, &ev, 1, 0) > 0)
        job->last_active = now;
}

static void on_idle_tick(struct sk_timer *t)
{
    struct stream_job *job = t->data;
    struct sk_loop *loop = sk_conn_loop(job->c);
    unsigned idle = exec_state_of(sk_conn_server(job->c))->idle_ms;
    uint64_t now = sk_loop_now(loop);

    if (job->tcp)
        tcp_activity(job, now);
    else
        unix_activity(job, now);
    if (now - job->last_active < idle)
        return;
    log_kill(job, "idle for", idle);
    stream_kill(job);
}

static void on_deadline(struct sk_timer *t)
{
    struct stream_job *job = t->data;

    log_kill(job, "--exec-timeout",
             exec_state_of(sk_conn_server(job->c))->stream_timeout_ms);
    stream_kill(job);
}

static int watch_unix(struct stream_job *job)
{
    struct epoll_event ev = {
        .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
    };

    job->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (job->epfd < 0)
        return -errno;
    if (epoll_ctl(job->epfd, EPOLL_CTL_ADD, job->fd, &ev) < 0)
        return -errno;
    /* The readiness the socket has now is not traffic. */
    epoll_wait(job->epfd, &ev, 1, 0);
    return 0;
}

/* Ticks often enough that a child lives at most 25% past its idle
 * timeout, and at least once a second. */
static uint64_t tick_period(unsigned idle_ms)
{
    uint64_t p = idle_ms / 4;

    return p < 10 ? 10 : p > 1000 ? 1000 : p;
}

static int watch_limits(struct stream_job *job, struct sk_loop *loop)
{
    struct exec_state *st = exec_state_of(sk_conn_server(job->c));
    int domain = 0, err = 0;
    socklen_t len = sizeof(domain);

    job->last_active = sk_loop_now(loop);
    getsockopt(job->fd, SOL_SOCKET, SO_DOMAIN, &domain, &len);
    job->tcp = domain != AF_UNIX;
    if (st->stream_timeout_ms > 0)
        err = sk_timer_start(loop, &job->deadline, st->stream_timeout_ms, 0);
    if (st->idle_ms == 0 || err < 0)
        return err;
    if (!job->tcp && (err = watch_unix(job)) < 0)
        return err;
    return sk_timer_start(loop, &job->idle_tick, tick_period(st->idle_ms),
                          tick_period(st->idle_ms));
}

/* ---------------------------------------------------------- streams */

static int stream_spawn(struct sk_conn *c, struct stream_job *job)
{
    const struct sk_endpoint *peer = sk_conn_peer(c);
    struct sk_peer_cred cred;
    struct child_env env;
    int err;

    child_env_ends(&env, peer, sk_conn_local(c));
    /* Credentials are those of a UNIX peer, not of one a PROXY header
     * names by its IP address. */
    if (peer != NULL && sk_endpoint_is_unix(peer) && peer->host[0] == '\0' &&
        sk_conn_peer_cred(c, &cred) == 0)
        child_env_cred(&env, &cred);
    job->fd = sk_conn_detach(c);
    if (job->fd < 0)
        return job->fd;
    /* The child gets a blocking socket, as any inetd child expects. */
    fcntl(job->fd, F_SETFL, fcntl(job->fd, F_GETFL) & ~O_NONBLOCK);
    job->child.data = job;
    err = child_spawn(&job->child, sk_conn_loop(c), cmd_of(sk_conn_server(c)),
                      job->fd, job->fd, &env, stream_reaped);
    if (err < 0)
        return err;
    /* Limits that cannot be watched end the command at once. */
    if (watch_limits(job, sk_conn_loop(c)) < 0)
        stream_kill(job);
    return 0;
}

static int stream_open(struct sk_conn *c)
{
    struct stream_job *job = calloc(1, sizeof(*job));

    if (job == NULL)
        return -1;
    job->c = c;
    job->fd = job->epfd = -1;
    /* Ready to be stopped by stream_close() whatever fails first. */
    sk_timer_init(&job->idle_tick, on_idle_tick);
    sk_timer_init(&job->deadline, on_deadline);
    sk_timer_init(&job->drain_timer, on_drain_timer);
    job->idle_tick.data = job->deadline.data = job->drain_timer.data = job;
    sk_conn_set_data(c, job);
    return stream_spawn(c, job) < 0 ? -1 : 0;
}

/* After stream_reaped(), or when the connection ends otherwise (the
 * worker's loop ending; over TLS, the client gone or failed): a child
 * still running is killed and waited for here. */
static void stream_close(struct sk_conn *c, int status)
{
    struct stream_job *job = sk_conn_data(c);

    if (job == NULL)
        return;
    if (child_running(&job->child))
        child_end_now(&job->child);
    close_socket(job);
    free(job);
}

/* Fails only where pidfd_open(2) does not work (seccomp, old kernels,
 * valgrind): children could neither be watched nor reaped in time. */
static int exec_setup(struct service_opts *opts)
{
    if (opts->state == NULL)
        return -EINVAL;
    return child_probe();
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
    .setup = exec_setup,
};
