/* bench_rate.c -- `sockit bench --rate R`: the open loop. Request j of
 * the run (counted over every connection of every thread) is due at
 * start + j / R and belongs to connection j % conns, so each connection
 * sends at R / conns per second, evenly spaced, the connections' phases
 * staggered by 1 / R. A request is sent when it is due whether or not
 * the earlier replies came; only --pipeline bounds the requests in
 * flight on a connection, and a request held back by it is late: its
 * latency still counts from its scheduled time, so a stall shows in every
 * request it delayed (coordinated omission corrected).
 *
 * Each generator thread walks the slots of its own connections in time
 * order (their indexes are consecutive) with a timerfd armed at the next
 * one, in nanoseconds: the loop's own timers count milliseconds. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"

#define RATE_MAX 10000000.0
/* The thread wakes at most this often (ns), sending all that came due
 * meanwhile: at high rates a wake-up per request would cost the generator
 * more than the requests. The wait counts in their latency. */
#define RATE_WAKE_NS 50000u

/* Parses --rate: a number of requests per second, > 0 and at most
 * RATE_MAX (decimals allowed: 0.5 is one request every 2 s). */
int bench_rate_parse(const char *text, double *rate)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(text, &end);
    if (end == text || *end != '\0' || errno != 0 || !isfinite(v) || v <= 0 ||
        v > RATE_MAX) {
        cli_error("bench: --rate: expected requests per second, more than "
                  "0 and at most %.0f, got '%s'",
                  RATE_MAX, text);
        return -1;
    }
    *rate = v;
    return 0;
}

/* With -n the schedule holds that many requests; with -d, those due
 * within the duration: ceil(R * D). */
void bench_rate_plan(struct bench *b)
{
    const struct bench_opts *o = &b->opts;
    double exact = o->rate * (double)o->duration_ms / 1000.0;
    uint64_t n = (uint64_t)exact; /* rounded up below, unless whole */

    if ((double)n < exact - 1e-9)
        n++;
    b->scheduled = o->count > 0 ? o->count : n < 1 ? 1 : n;
}

void bench_rate_assign(const struct bench *b, struct client *cl, uint64_t index)
{
    uint64_t conns = b->opts.conns;

    cl->index = index;
    cl->share = b->scheduled / conns + (index < b->scheduled % conns);
    cl->due = 0;
}

/* The time (ns) of request j of the whole run, after the thread's start. */
static uint64_t slot_time(const struct gen *g, uint64_t j)
{
    return g->rate_start + (uint64_t)((double)j * 1e9 / g->b->opts.rate);
}

uint64_t bench_rate_time(const struct client *cl, uint64_t k)
{
    return slot_time(cl->g, cl->index + k * cl->g->b->opts.conns);
}

/* The run's index of the thread's next slot. */
static uint64_t next_slot(const struct gen *g)
{
    return g->rate_first + g->rate_local + g->rate_k * g->b->opts.conns;
}

/* Arms the timer at the next slot, or disarms it past the last (either
 * way its expirations are cleared); not before earliest (ns). */
static int arm(struct gen *g, uint64_t earliest)
{
    uint64_t j = next_slot(g), t;
    struct itimerspec its = {0};

    if (j < g->b->scheduled) {
        t = slot_time(g, j);
        if (t < earliest)
            t = earliest;
        its.it_value.tv_sec = (time_t)(t / 1000000000u);
        its.it_value.tv_nsec = (long)(t % 1000000000u);
        if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
            its.it_value.tv_nsec = 1; /* zero would disarm it */
    }
    return timerfd_settime(g->rate_fd, TFD_TIMER_ABSTIME, &its, NULL) < 0
               ? -errno
               : 0;
}

/* The timer: every slot whose time has come makes a request of its
 * client due, and the client sends it if the pipeline lets it. */
static void on_rate_timer(struct sk_io *io, unsigned events)
{
    struct gen *g = io->data;
    uint64_t now = bench_now_ns(), j;

    (void)events;
    while ((j = next_slot(g)) < g->b->scheduled && slot_time(g, j) <= now) {
        struct client *cl = &g->clients[g->rate_local];
        cl->due++;
        if (++g->rate_local == g->nclients) {
            g->rate_local = 0;
            g->rate_k++;
        }
        bench_client_kick(cl);
    }
    if (arm(g, now + RATE_WAKE_NS) < 0) /* re-arming reads the timer */
        sk_io_stop(&g->rate_io);
}

int bench_rate_start(struct gen *g)
{
    int err;

    /* The thread's timers fire on time, not up to 50 us late. */
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
    g->rate_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (g->rate_fd < 0)
        return -errno;
    g->rate_start = g->rate_last_send = bench_now_ns();
    g->rate_io.data = g;
    err = sk_io_start(g->loop, &g->rate_io, g->rate_fd, SK_READ, false,
                      on_rate_timer);
    return err < 0 ? err : arm(g, 0);
}

void bench_rate_release(struct gen *g)
{
    if (g->rate_fd < 0)
        return;
    sk_io_stop(&g->rate_io);
    close(g->rate_fd);
    g->rate_fd = -1;
}

/* Requests sent over the time they took: from the start to the last one
 * sent, plus one interval (so a schedule kept to the nanosecond gives R).
 * A thread that fell behind sent its last request late, or not at all. */
double bench_rate_achieved(const struct bench *b, const struct gen *gens,
                           unsigned n, uint64_t *sent)
{
    uint64_t span = 0;

    *sent = 0;
    for (unsigned i = 0; i < n; i++) {
        for (unsigned c = 0; c < gens[i].nclients; c++)
            *sent += gens[i].clients[c].sent;
        if (gens[i].rate_last_send - gens[i].rate_start > span)
            span = gens[i].rate_last_send - gens[i].rate_start;
    }
    if (*sent == 0)
        return 0;
    return (double)*sent / ((double)span / 1e9 + 1.0 / b->opts.rate);
}
