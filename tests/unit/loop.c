/* loop.c -- unit tests of src/loop.c: timers, fd watchers, the cross-thread
 * wake-up and signals. Every run of the loop is bounded by a safety timer
 * that stops it and fails the test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sockit.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define SAFETY_MS 2000
#define MAX_RECORDS 128

struct fixture {
    struct sk_loop *loop;
    struct sk_timer safety;
    bool timed_out;
    int records[MAX_RECORDS]; /* what callbacks saw, in order */
    int nrecords;
};

static void on_safety(struct sk_timer *t)
{
    struct fixture *f = t->data;

    f->timed_out = true;
    sk_loop_stop(f->loop);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    if (f == NULL || sk_loop_new(&f->loop) != 0) {
        free(f);
        return -1;
    }
    sk_timer_init(&f->safety, on_safety);
    f->safety.data = f;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    sk_timer_stop(&f->safety);
    sk_loop_free(f->loop);
    free(f);
    return 0;
}

/* Runs the loop until a callback stops it; fails after SAFETY_MS. */
static void run_bounded(struct fixture *f)
{
    assert_int_equal(sk_timer_start(f->loop, &f->safety, SAFETY_MS, 0), 0);
    assert_int_equal(sk_loop_run(f->loop), 0);
    sk_timer_stop(&f->safety);
    if (f->timed_out)
        fail_msg("the loop did not stop within %d ms", SAFETY_MS);
}

static void record(struct fixture *f, int value)
{
    assert_true(f->nrecords < MAX_RECORDS);
    f->records[f->nrecords++] = value;
}

static void expect_records(const struct fixture *f, const int *want, int n)
{
    assert_int_equal(f->nrecords, n);
    for (int i = 0; i < n; i++)
        if (f->records[i] != want[i])
            fail_msg("record %d is %d, want %d", i, f->records[i], want[i]);
}

/* ------------------------------------------------------------- timers */

/* A timer that records its tag and may stop the loop or another timer. */
struct tagged {
    struct sk_timer timer;
    struct fixture *f;
    int tag;
    bool stops_loop;
    struct tagged *victim; /* stopped when this one fires */
};

static void on_tagged(struct sk_timer *t)
{
    struct tagged *x = t->data;

    record(x->f, x->tag);
    if (x->victim != NULL)
        sk_timer_stop(&x->victim->timer);
    if (x->stops_loop)
        sk_loop_stop(x->f->loop);
}

static void tagged_start(struct fixture *f, struct tagged *x, int tag,
                         uint64_t ms)
{
    x->f = f;
    x->tag = tag;
    sk_timer_init(&x->timer, on_tagged);
    x->timer.data = x;
    assert_int_equal(sk_timer_start(f->loop, &x->timer, ms, 0), 0);
}

static void test_timers_fire_in_order_of_due_time(void **state)
{
    struct fixture *f = *state;
    struct tagged t[3] = {{.stops_loop = true}};
    static const int want[] = {10, 20, 30};

    tagged_start(f, &t[0], 30, 30);
    tagged_start(f, &t[1], 10, 10);
    tagged_start(f, &t[2], 20, 20);
    run_bounded(f);
    expect_records(f, want, 3);
}

static void test_timer_never_fires_before_its_due_time(void **state)
{
    struct fixture *f = *state;
    struct tagged t = {.stops_loop = true};
    uint64_t start = sk_loop_now(f->loop);

    tagged_start(f, &t, 1, 25);
    run_bounded(f);
    assert_int_equal(f->nrecords, 1);
    assert_true(sk_loop_now(f->loop) >= start + 25);
}

static void test_stopped_timer_never_fires(void **state)
{
    struct fixture *f = *state;
    struct tagged stopped = {0}, end = {.stops_loop = true};
    static const int want[] = {2};

    tagged_start(f, &stopped, 1, 5);
    tagged_start(f, &end, 2, 40);
    sk_timer_stop(&stopped.timer);
    sk_timer_stop(&stopped.timer); /* twice is harmless */
    run_bounded(f);
    expect_records(f, want, 1);
}

/* Two timers due in the same iteration each stop the other: whichever
 * runs first, the other must not. */
static void
test_timer_stopped_by_earlier_callback_of_same_iteration(void **state)
{
    struct fixture *f = *state;
    struct tagged a = {0}, b = {0}, end = {.stops_loop = true};

    a.victim = &b;
    b.victim = &a;
    tagged_start(f, &a, 1, 10);
    tagged_start(f, &b, 2, 10);
    tagged_start(f, &end, 3, 50);
    run_bounded(f);
    assert_int_equal(f->nrecords, 2);
    assert_true(f->records[0] == 1 || f->records[0] == 2);
    assert_int_equal(f->records[1], 3);
}

static void test_restarting_a_timer_moves_its_due_time(void **state)
{
    struct fixture *f = *state;
    struct tagged moved = {0}, mid = {0}, end = {.stops_loop = true};
    static const int want[] = {30, 50, 70};

    tagged_start(f, &moved, 50, 10);
    tagged_start(f, &mid, 30, 30);
    tagged_start(f, &end, 70, 70);
    assert_int_equal(sk_timer_start(f->loop, &moved.timer, 50, 0), 0);
    run_bounded(f);
    expect_records(f, want, 3);
}

/* Many timers, some stopped from the middle of the heap: the rest fire in
 * order of due time, and the stopped ones never. */
static void test_many_timers_fire_sorted_and_stopped_ones_never(void **state)
{
    struct fixture *f = *state;
    struct tagged t[60], end = {.stops_loop = true};
    int fired = 0;

    memset(t, 0, sizeof(t));
    for (int i = 0; i < (int)ARRAY_LEN(t); i++)
        tagged_start(f, &t[i], 1 + (i * 37) % 41,
                     (uint64_t)(1 + (i * 37) % 41));
    for (int i = 0; i < (int)ARRAY_LEN(t); i += 3)
        sk_timer_stop(&t[i].timer);
    tagged_start(f, &end, 1000, 80);
    run_bounded(f);
    for (int i = 0; i < (int)ARRAY_LEN(t); i++)
        fired += i % 3 != 0;
    assert_int_equal(f->nrecords, fired + 1);
    for (int i = 1; i < f->nrecords; i++)
        if (f->records[i] < f->records[i - 1])
            fail_msg("due %d fired after due %d", f->records[i],
                     f->records[i - 1]);
    assert_int_equal(f->records[f->nrecords - 1], 1000);
}

/* A repeating timer that stops itself after `limit` runs and then starts a
 * one-shot `end` timer that stops the loop. */
struct repeater {
    struct sk_timer timer;
    struct tagged end;
    struct fixture *f;
    int runs, limit;
};

static void on_repeat(struct sk_timer *t)
{
    struct repeater *r = t->data;

    record(r->f, ++r->runs);
    if (r->runs == r->limit) {
        sk_timer_stop(t);
        r->end.stops_loop = true;
        tagged_start(r->f, &r->end, 0, 40);
    }
}

static void test_repeating_timer_fires_until_it_stops_itself(void **state)
{
    struct fixture *f = *state;
    struct repeater r = {.f = f, .limit = 4};
    static const int want[] = {1, 2, 3, 4, 0};

    sk_timer_init(&r.timer, on_repeat);
    r.timer.data = &r;
    assert_int_equal(sk_timer_start(f->loop, &r.timer, 5, 5), 0);
    run_bounded(f);
    expect_records(f, want, 5);
}

/* A delay near UINT64_MAX saturates instead of wrapping around. */
static void test_timer_of_huge_delay_does_not_fire_at_once(void **state)
{
    struct fixture *f = *state;
    struct tagged never = {0}, end = {.stops_loop = true};
    static const int want[] = {2};

    tagged_start(f, &never, 1, UINT64_MAX);
    tagged_start(f, &end, 2, 30);
    run_bounded(f);
    sk_timer_stop(&never.timer);
    expect_records(f, want, 1);
}

/* ----------------------------------------------------------- watchers */

struct watched {
    struct sk_io io;
    struct fixture *f;
    int fds[2]; /* io watches fds[0]; the test writes to fds[1] */
    int calls;
    unsigned events;
    char got[64];
    size_t ngot;
    struct watched *victim; /* stopped and closed on the first call */
};

static void watched_open(struct watched *w, struct fixture *f)
{
    w->f = f;
    assert_int_equal(
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, w->fds), 0);
    w->io.data = w;
}

static void watched_close(struct watched *w)
{
    sk_io_stop(&w->io);
    for (int i = 0; i < 2; i++)
        if (w->fds[i] >= 0)
            close(w->fds[i]);
    w->fds[0] = w->fds[1] = -1;
}

static void on_watched(struct sk_io *io, unsigned events)
{
    struct watched *w = io->data;
    ssize_t n;

    w->calls++;
    w->events = events;
    record(w->f, w->fds[0]);
    n = read(io->fd, w->got + w->ngot, sizeof(w->got) - w->ngot);
    if (n > 0)
        w->ngot += (size_t)n;
    if (w->victim != NULL && sk_io_is_active(&w->victim->io))
        watched_close(w->victim);
    sk_loop_stop(w->f->loop);
}

static void test_io_readable_callback_gets_the_bytes(void **state)
{
    struct fixture *f = *state;
    struct watched w = {0};

    watched_open(&w, f);
    assert_int_equal(write(w.fds[1], "ping", 4), 4);
    assert_int_equal(
        sk_io_start(f->loop, &w.io, w.fds[0], SK_READ, false, on_watched), 0);
    assert_true(sk_io_is_active(&w.io));
    run_bounded(f);
    assert_int_equal(w.calls, 1);
    assert_int_equal(w.events, SK_READ);
    assert_int_equal(w.ngot, 4);
    assert_memory_equal(w.got, "ping", 4);
    watched_close(&w);
    assert_false(sk_io_is_active(&w.io));
}

static void test_io_writable_socket_reports_write(void **state)
{
    struct fixture *f = *state;
    struct watched w = {0};

    watched_open(&w, f);
    assert_int_equal(
        sk_io_start(f->loop, &w.io, w.fds[1], SK_WRITE, false, on_watched), 0);
    run_bounded(f);
    assert_int_equal(w.calls, 1);
    assert_int_equal(w.events, SK_WRITE);
    watched_close(&w);
}

static void test_io_hangup_is_reported_as_read_and_write(void **state)
{
    struct fixture *f = *state;
    struct watched w = {0};

    watched_open(&w, f);
    close(w.fds[1]);
    w.fds[1] = -1;
    assert_int_equal(
        sk_io_start(f->loop, &w.io, w.fds[0], SK_READ, false, on_watched), 0);
    run_bounded(f);
    assert_int_equal(w.calls, 1);
    assert_int_equal(w.events, SK_READ | SK_WRITE);
    watched_close(&w);
}

static void test_io_set_to_zero_silences_the_watcher(void **state)
{
    struct fixture *f = *state;
    struct watched w = {0};
    struct tagged end = {.stops_loop = true};

    watched_open(&w, f);
    assert_int_equal(write(w.fds[1], "x", 1), 1);
    assert_int_equal(
        sk_io_start(f->loop, &w.io, w.fds[0], SK_READ, false, on_watched), 0);
    assert_int_equal(sk_io_set(&w.io, 0), 0);
    assert_true(sk_io_is_active(&w.io));
    tagged_start(f, &end, -1, 30);
    run_bounded(f);
    assert_int_equal(w.calls, 0);
    /* Asking again brings the pending byte. */
    assert_int_equal(sk_io_set(&w.io, SK_READ), 0);
    run_bounded(f);
    assert_int_equal(w.calls, 1);
    assert_memory_equal(w.got, "x", 1);
    watched_close(&w);
}

/* Two watchers readable in the same iteration; whichever runs first stops
 * and closes the other, whose fetched event must then be dropped. */
static void
test_io_stop_in_callback_drops_pending_event_of_same_iteration(void **state)
{
    struct fixture *f = *state;
    struct watched a = {0}, b = {0};

    watched_open(&a, f);
    watched_open(&b, f);
    a.victim = &b;
    b.victim = &a;
    assert_int_equal(write(a.fds[1], "a", 1), 1);
    assert_int_equal(write(b.fds[1], "b", 1), 1);
    assert_int_equal(
        sk_io_start(f->loop, &a.io, a.fds[0], SK_READ, false, on_watched), 0);
    assert_int_equal(
        sk_io_start(f->loop, &b.io, b.fds[0], SK_READ, false, on_watched), 0);
    run_bounded(f);
    assert_int_equal(a.calls + b.calls, 1);
    watched_close(&a);
    watched_close(&b);
}

static void test_io_stop_is_safe_on_a_stopped_watcher(void **state)
{
    struct fixture *f = *state;
    struct watched w = {0};

    watched_open(&w, f);
    assert_int_equal(
        sk_io_start(f->loop, &w.io, w.fds[0], SK_READ, false, on_watched), 0);
    sk_io_stop(&w.io);
    sk_io_stop(&w.io);
    assert_false(sk_io_is_active(&w.io));
    assert_int_equal(sk_io_set(&w.io, SK_READ), -EINVAL);
    watched_close(&w);
}

static void test_io_exclusive_watcher_cannot_be_changed(void **state)
{
    struct fixture *f = *state;
    struct watched w = {0};

    watched_open(&w, f);
    assert_int_equal(
        sk_io_start(f->loop, &w.io, w.fds[0], SK_READ, true, on_watched), 0);
    assert_int_equal(sk_io_set(&w.io, SK_READ | SK_WRITE), -EINVAL);
    assert_true(sk_io_is_active(&w.io));
    watched_close(&w);
}

static void test_io_start_on_bad_fd_is_ebadf(void **state)
{
    struct fixture *f = *state;
    struct sk_io io = {0};

    assert_int_equal(sk_io_start(f->loop, &io, -1, SK_READ, false, on_watched),
                     -EBADF);
    assert_false(sk_io_is_active(&io));
}

/* --------------------------------------------------------- prepare, wake */

static void on_prepare_stop(void *arg)
{
    struct fixture *f = arg;

    record(f, 1);
    sk_loop_stop(f->loop);
}

static void test_stop_in_prepare_hook_returns_before_waiting(void **state)
{
    struct fixture *f = *state;
    static const int want[] = {1};

    sk_loop_set_prepare(f->loop, on_prepare_stop, f);
    run_bounded(f);
    expect_records(f, want, 1);
}

struct waker {
    struct fixture *f;
    pthread_t loop_thread;
    bool on_loop_thread;
    int calls;
};

static void on_wake(void *arg)
{
    struct waker *w = arg;

    w->calls++;
    w->on_loop_thread = pthread_equal(pthread_self(), w->loop_thread) != 0;
    sk_loop_stop(w->f->loop);
}

static void *wake_from_thread(void *arg)
{
    sk_loop_wake(arg);
    return NULL;
}

static void
test_wake_from_another_thread_runs_callback_on_loop_thread(void **state)
{
    struct fixture *f = *state;
    struct waker w = {.f = f, .loop_thread = pthread_self()};
    pthread_t thread;

    sk_loop_set_wake(f->loop, on_wake, &w);
    assert_int_equal(pthread_create(&thread, NULL, wake_from_thread, f->loop),
                     0);
    run_bounded(f);
    assert_int_equal(pthread_join(thread, NULL), 0);
    assert_int_equal(w.calls, 1);
    assert_true(w.on_loop_thread);
}

/* ------------------------------------------------------------- signals */

struct sig_rec {
    struct sk_signal sig;
    struct fixture *f;
};

static void on_sig(struct sk_signal *sig)
{
    struct sig_rec *r = sig->data;

    record(r->f, sig->signo);
    sk_loop_stop(r->f->loop);
}

static void sig_start(struct fixture *f, struct sig_rec *r, int signo)
{
    r->f = f;
    r->sig.data = r;
    assert_int_equal(sk_signal_start(f->loop, &r->sig, signo, on_sig), 0);
}

static void test_signal_raised_is_delivered_through_the_loop(void **state)
{
    struct fixture *f = *state;
    struct sig_rec r;
    static const int want[] = {SIGUSR1};

    sig_start(f, &r, SIGUSR1);
    assert_int_equal(raise(SIGUSR1), 0);
    run_bounded(f);
    expect_records(f, want, 1);
    sk_signal_stop(&r.sig);
}

static void test_signals_route_to_their_own_callbacks(void **state)
{
    struct fixture *f = *state;
    struct sig_rec r1, r2;
    static const int want[] = {SIGUSR2, SIGUSR1};

    sig_start(f, &r1, SIGUSR1);
    sig_start(f, &r2, SIGUSR2);
    assert_int_equal(kill(getpid(), SIGUSR2), 0);
    run_bounded(f);
    assert_int_equal(kill(getpid(), SIGUSR1), 0);
    run_bounded(f);
    expect_records(f, want, 2);
    sk_signal_stop(&r1.sig);
    sk_signal_stop(&r2.sig);
}

static void test_stopped_signal_is_not_delivered(void **state)
{
    struct fixture *f = *state;
    struct sig_rec r;
    struct tagged end = {.stops_loop = true};
    static const int want[] = {-1};

    sig_start(f, &r, SIGUSR1);
    sk_signal_stop(&r.sig);
    assert_int_equal(raise(SIGUSR1), 0);
    tagged_start(f, &end, -1, 40);
    run_bounded(f);
    expect_records(f, want, 1);
}

#define LOOP_TEST(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        LOOP_TEST(test_timers_fire_in_order_of_due_time),
        LOOP_TEST(test_timer_never_fires_before_its_due_time),
        LOOP_TEST(test_stopped_timer_never_fires),
        LOOP_TEST(test_timer_stopped_by_earlier_callback_of_same_iteration),
        LOOP_TEST(test_restarting_a_timer_moves_its_due_time),
        LOOP_TEST(test_many_timers_fire_sorted_and_stopped_ones_never),
        LOOP_TEST(test_repeating_timer_fires_until_it_stops_itself),
        LOOP_TEST(test_timer_of_huge_delay_does_not_fire_at_once),
        LOOP_TEST(test_io_readable_callback_gets_the_bytes),
        LOOP_TEST(test_io_writable_socket_reports_write),
        LOOP_TEST(test_io_hangup_is_reported_as_read_and_write),
        LOOP_TEST(test_io_set_to_zero_silences_the_watcher),
        LOOP_TEST(
            test_io_stop_in_callback_drops_pending_event_of_same_iteration),
        LOOP_TEST(test_io_stop_is_safe_on_a_stopped_watcher),
        LOOP_TEST(test_io_exclusive_watcher_cannot_be_changed),
        LOOP_TEST(test_io_start_on_bad_fd_is_ebadf),
        LOOP_TEST(test_stop_in_prepare_hook_returns_before_waiting),
        LOOP_TEST(test_wake_from_another_thread_runs_callback_on_loop_thread),
        LOOP_TEST(test_signal_raised_is_delivered_through_the_loop),
        LOOP_TEST(test_signals_route_to_their_own_callbacks),
        LOOP_TEST(test_stopped_signal_is_not_delivered),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
