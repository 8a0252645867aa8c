/* exec_dgram.c -- --exec on datagram endpoints: CMD per datagram, the
 * payload fed to its stdin through the non-blocking pipe as the child
 * takes it (a pipe may hold as little as a page), its stdout (if not
 * empty) sent back as one datagram once it has exited and closed it.
 * Killed with its process group after --exec-timeout; at most
 * --max-children at once across every worker, further datagrams dropped. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "exec.h"

/* The longest a line saying that datagrams were dropped waits for the next
 * one, however many are dropped meanwhile. */
#define DROP_LOG_MS 1000

struct dgram_job {
    struct child child;
    struct exec_state *st;
    struct sk_io in_io;  /* the child's stdin, while payload is left */
    struct sk_io out_io; /* the child's stdout */
    struct sk_timer timer;
    struct sk_hold hold;
    struct sk_addr peer;
    int sock_fd, in_fd, out_fd; /* in_fd, out_fd: -1 once closed */
    char *rest;                 /* payload the pipe did not take at once */
    size_t rest_len, rest_off;
    size_t len;
    bool overflow; /* more output than a datagram holds */
    char reply[SK_DGRAM_MAX];
};

/* ---------------------------------------------------- the child count */

static bool claim_child(struct exec_state *st)
{
    unsigned n = atomic_load(&st->dgram_children);

    do {
        if (st->max_children > 0 && n >= st->max_children)
            return false;
    } while (!atomic_compare_exchange_weak(&st->dgram_children, &n, n + 1));
    return true;
}

/* Counts a dropped datagram; under -v says so, at most once a second. */
static void note_drop(struct sk_dgram *d, struct exec_state *st)
{
    uint64_t n = atomic_fetch_add(&st->dgram_dropped, 1) + 1;
    uint64_t now = sk_loop_now(sk_dgram_loop(d));
    uint64_t last = atomic_load(&st->dropped_logged_ms);
    char peer[SK_ENDPOINT_STRLEN] = "?", msg[SK_ENDPOINT_STRLEN + 96];
    struct sk_endpoint ep;

    if (st->log == NULL || (last != 0 && now < last + DROP_LOG_MS) ||
        !atomic_compare_exchange_strong(&st->dropped_logged_ms, &last, now))
        return;
    if (sk_endpoint_from_addr(&ep, sk_dgram_local(d)->scheme,
                              sk_dgram_peer(d)) == 0)
        sk_endpoint_format(&ep, peer, sizeof(peer));
    snprintf(msg, sizeof(msg),
             "exec: datagram from %s dropped: --max-children %u reached "
             "(%llu dropped in all)",
             peer, st->max_children, (unsigned long long)n);
    st->log(NULL, msg);
}

/* ------------------------------------------------------------ the end */

static void close_watched(struct sk_io *io, int *fd)
{
    if (sk_io_is_active(io))
        sk_io_stop(io);
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void end_input(struct dgram_job *job)
{
    close_watched(&job->in_io, &job->in_fd);
    free(job->rest);
    job->rest = NULL;
}

/* The child is reaped (or, at the loop's end, waited for). */
static void dgram_free(struct dgram_job *job)
{
    end_input(job);
    close_watched(&job->out_io, &job->out_fd);
    sk_timer_stop(&job->timer);
    sk_hold_release(&job->hold);
    atomic_fetch_sub(&job->st->dgram_children, 1);
    free(job);
}

/* Kills the command; the job is freed once the child is reaped. */
static void dgram_kill(struct dgram_job *job)
{
    end_input(job);
    close_watched(&job->out_io, &job->out_fd);
    sk_timer_stop(&job->timer);
    child_kill(&job->child);
    if (!child_running(&job->child))
        dgram_free(job);
}

/* A reply that does not fit a datagram is not sent cut: said under -v. */
static void note_oversized(struct dgram_job *job)
{
    char msg[128];

    if (job->st->log == NULL)
        return;
    snprintf(msg, sizeof(msg),
             "exec: reply of %s%zu bytes does not fit a datagram, not sent",
             job->overflow ? "more than " : "", job->len);
    job->st->log(NULL, msg);
}

/* Replies once the child has exited and its output is complete. */
static void maybe_reply(struct dgram_job *job)
{
    if (child_running(&job->child) || job->out_fd >= 0)
        return;
    if (job->len > 0 && !job->child.killed) {
        if (job->overflow || (sendto(job->sock_fd, job->reply, job->len,
                                     MSG_DONTWAIT | MSG_NOSIGNAL,
                                     &job->peer.u.sa, job->peer.len) < 0 &&
                              errno == EMSGSIZE))
            note_oversized(job);
    }
    dgram_free(job);
}

static void dgram_reaped(struct child *ch)
{
    struct dgram_job *job = ch->data;

    end_input(job);
    maybe_reply(job);
}

static void on_timeout(struct sk_timer *t)
{
    dgram_kill(t->data);
}

/* The server is ending: nothing is left to wait for. */
static void on_cancel(struct sk_hold *hold)
{
    struct dgram_job *job = hold->data;

    child_end_now(&job->child);
    dgram_free(job);
}

/* ------------------------------------------------------- stdin, stdout */

static void on_output(struct sk_io *io, unsigned events)
{
    struct dgram_job *job = io->data;
    char scratch[4096];
    ssize_t n;

    /* Output beyond the largest datagram is read, and the reply dropped
     * whole: a cut reply would pass for a whole one. */
    if (job->len < sizeof(job->reply))
        n = read(io->fd, job->reply + job->len, sizeof(job->reply) - job->len);
    else
        n = read(io->fd, scratch, sizeof(scratch));
    if (n > 0 && job->len < sizeof(job->reply))
        job->len += (size_t)n;
    else if (n > 0)
        job->overflow = true;
    if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR)))
        return;
    close_watched(io, &job->out_fd);
    maybe_reply(job);
}

/* Writes what the pipe takes of p[*off..len). True when nothing is left to
 * write: all of it written, or the child closed its stdin. */
static bool write_some(int fd, const char *p, size_t len, size_t *off)
{
    while (*off < len) {
        ssize_t n = write(fd, p + *off, len - *off);
        if (n > 0)
            *off += (size_t)n;
        else if (n < 0 && errno == EINTR)
            continue;
        else
            return n < 0 && errno != EAGAIN;
    }
    return true;
}

static void on_input(struct sk_io *io, unsigned events)
{
    struct dgram_job *job = io->data;

    if (write_some(job->in_fd, job->rest, job->rest_len, &job->rest_off))
        end_input(job);
}

/* Feeds the payload: what the pipe takes now, the rest (a copy) as the
 * child reads. Returns 0 or a negative errno. */
static int start_input(struct dgram_job *job, struct sk_loop *loop,
                       const char *data, size_t len)
{
    size_t off = 0;

    if (write_some(job->in_fd, data, len, &off)) {
        end_input(job);
        return 0;
    }
    job->rest = malloc(len - off);
    if (job->rest == NULL)
        return -ENOMEM;
    memcpy(job->rest, data + off, len - off);
    job->rest_len = len - off;
    job->in_io.data = job;
    return sk_io_start(loop, &job->in_io, job->in_fd, SK_WRITE, false,
                       on_input);
}

/* ------------------------------------------------------------ a child */

static int make_pipes(int in[2], int out[2])
{
    int err;

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
    return 0;
}

static int dgram_spawn(struct sk_dgram *d, struct dgram_job *job)
{
    struct child_env env;
    struct sk_endpoint ep;
    bool named;
    int in[2], out[2], err;

    if ((err = make_pipes(in, out)) < 0)
        return err;
    job->in_fd = in[1];
    job->out_fd = out[0];
    named =
        sk_endpoint_from_addr(&ep, sk_dgram_local(d)->scheme, &job->peer) == 0;
    child_env_ends(&env, named ? &ep : NULL, sk_dgram_local(d));
    job->child.data = job;
    err = child_spawn(&job->child, sk_dgram_loop(d),
                      service_opts_of(sk_dgram_server(d))->exec_cmd, in[0],
                      out[1], &env, dgram_reaped);
    close(in[0]);
    close(out[1]);
    return err;
}

/* Reads the output, feeds the input, starts the clock; a failure kills. */
static void dgram_watch(struct sk_dgram *d, struct dgram_job *job,
                        const char *data, size_t len)
{
    struct sk_loop *loop = sk_dgram_loop(d);
    unsigned timeout = service_opts_of(sk_dgram_server(d))->exec_timeout_ms;

    job->out_io.data = job;
    if (sk_io_start(loop, &job->out_io, job->out_fd, SK_READ, false,
                    on_output) < 0 ||
        start_input(job, loop, data, len) < 0 ||
        (timeout > 0 && sk_timer_start(loop, &job->timer, timeout, 0) < 0))
        dgram_kill(job);
}

void exec_datagram(struct sk_dgram *d, const char *data, size_t len)
{
    struct exec_state *st = exec_state_of(sk_dgram_server(d));
    struct dgram_job *job;

    if (!claim_child(st)) {
        note_drop(d, st);
        return;
    }
    job = calloc(1, sizeof(*job));
    if (job == NULL) {
        atomic_fetch_sub(&st->dgram_children, 1);
        return;
    }
    job->st = st;
    job->in_fd = job->out_fd = -1;
    job->peer = *sk_dgram_peer(d);
    job->sock_fd = sk_dgram_fd(d);
    job->hold.data = job;
    sk_timer_init(&job->timer, on_timeout);
    job->timer.data = job;
    sk_dgram_hold(d, &job->hold, on_cancel);
    if (dgram_spawn(d, job) < 0) {
        dgram_free(job);
        return;
    }
    dgram_watch(d, job, data, len);
}
