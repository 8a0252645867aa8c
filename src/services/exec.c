/* exec.c -- inetd-style service: `/bin/sh -c CMD` per connection, with the
 * connection as its stdin and stdout, or per datagram (exec_dgram.c), with
 * the payload on its stdin and its stdout as the reply. SOCKIT_PEER and
 * SOCKIT_LOCAL name the two ends.
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
 * the server's max_active) until the child is reaped. */
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

struct stream_job {
    struct child child;
    struct sk_conn *c;
    int fd;   /* sockit's copy of the socket, or -1 */
    bool tcp; /* else UNIX: activity is the epoll set */
    int epfd; /* UNIX: the epoll set holding fd, or -1 */
    struct sk_timer idle_tick, deadline;
    uint64_t last_active; /* loop time of the last traffic seen */
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

static void stream_reaped(struct child *ch)
{
    struct stream_job *job = ch->data;

    close_socket(job);
    sk_conn_close(job->c);
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
    char peer[SK_ENDPOINT_STRLEN] = "", local[SK_ENDPOINT_STRLEN] = "";
    int err;

    if (sk_conn_peer(c) != NULL) {
        sk_endpoint_format(sk_conn_peer(c), peer, sizeof(peer));
        sk_endpoint_format(sk_conn_local(c), local, sizeof(local));
    }
    job->fd = sk_conn_detach(c);
    if (job->fd < 0)
        return job->fd;
    /* The child gets a blocking socket, as any inetd child expects. */
    fcntl(job->fd, F_SETFL, fcntl(job->fd, F_GETFL) & ~O_NONBLOCK);
    job->child.data = job;
    err = child_spawn(&job->child, sk_conn_loop(c), cmd_of(sk_conn_server(c)),
                      job->fd, job->fd, peer, local, stream_reaped);
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
    job->idle_tick.data = job->deadline.data = job;
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
