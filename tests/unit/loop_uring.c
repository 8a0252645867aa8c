/* loop_uring.c -- the tests of tests/unit/loop.c again, on the io_uring
 * backend (every sk_loop_new() of that file made with
 * SK_BACKEND_IO_URING), then what is the backends' own: the fall-back to
 * epoll where the kernel refuses io_uring (a seccomp filter in a child
 * process), one exclusive watcher woken per event, completions left for
 * watchers stopped and freed, and more ready watchers than the
 * completion ring holds. Where this kernel refuses io_uring, only the
 * epoll half runs. */
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <sockit.h>

static int uring_loop_new(struct sk_loop **loopp);
int loop_tests_main(void);

#define sk_loop_new uring_loop_new
#define main loop_tests_main
#include "loop.c"
#undef main
#undef sk_loop_new

static int uring_loop_new(struct sk_loop **loopp)
{
    int why, err = sk_loop_new_backend(loopp, SK_BACKEND_IO_URING, &why);

    if (err == 0 && sk_loop_backend(*loopp) != SK_BACKEND_IO_URING) {
        sk_loop_free(*loopp);
        return why < 0 ? why : -EINVAL;
    }
    return err;
}

/* The backend of the tests below: state points at it. */
static enum sk_backend backends[] = {SK_BACKEND_EPOLL, SK_BACKEND_IO_URING};

static struct sk_loop *loop_on(void **state)
{
    struct sk_loop *loop;
    int why;

    assert_int_equal(
        sk_loop_new_backend(&loop, *(enum sk_backend *)*state, &why), 0);
    assert_int_equal(why, 0);
    assert_int_equal(sk_loop_backend(loop), *(enum sk_backend *)*state);
    return loop;
}

static void on_stop_timer(struct sk_timer *t)
{
    sk_loop_stop(t->data);
}

/* Runs loop for ms milliseconds. */
static void run_for(struct sk_loop *loop, uint64_t ms)
{
    struct sk_timer t;

    sk_timer_init(&t, on_stop_timer);
    t.data = loop;
    assert_int_equal(sk_timer_start(loop, &t, ms, 0), 0);
    assert_int_equal(sk_loop_run(loop), 0);
    sk_timer_stop(&t);
}

/* -------------------------------------------------------- fall-back */

/* In this (child) process, io_uring_setup() fails with err from now on,
 * as a kernel without io_uring (ENOSYS) or with io_uring_disabled
 * (EPERM) makes it. Returns false where no filter can be made. */
static bool refuse_io_uring(int err)
{
#if defined(__x86_64__)
    const unsigned arch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
    const unsigned arch = AUDIT_ARCH_AARCH64;
#else
    const unsigned arch = 0;
#endif
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, arch, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K,
                 SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {ARRAY_LEN(code), code};

    return arch != 0 && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
           prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
}

/* The child's verdict: 0 when the loop fell back to epoll with why -err
 * and runs; 77 when no filter could be made; else what went wrong. */
static int fallback_child(int err)
{
    struct sk_loop *loop;
    int why = 0;

    if (!refuse_io_uring(err))
        return 77;
    if (sk_loop_new_backend(&loop, SK_BACKEND_IO_URING, &why) != 0)
        return 1;
    if (sk_loop_backend(loop) != SK_BACKEND_EPOLL || why != -err)
        return 2;
    run_for(loop, 5);
    sk_loop_free(loop);
    return 0;
}

static void expect_fallback(int err)
{
    int status;
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0)
        _exit(fallback_child(err));
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == 77)
        skip();
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_refused_io_uring_falls_back_to_epoll(void **state)
{
    (void)state;
    expect_fallback(ENOSYS);
    expect_fallback(EPERM);
}

static void test_epoll_asked_for_is_epoll(void **state)
{
    struct sk_loop *loop;
    int why = 1;

    (void)state;
    assert_int_equal(sk_loop_new_backend(&loop, SK_BACKEND_DEFAULT, &why), 0);
    assert_int_equal(why, 0);
    assert_int_equal(sk_loop_backend(loop), SK_BACKEND_EPOLL);
    sk_loop_free(loop);
}

/* -------------------------------------------------------- exclusive */

struct counted {
    struct sk_io io;
    int calls;
};

static void on_counted(struct sk_io *io, unsigned events)
{
    struct counted *c = io->data;

    (void)events;
    c->calls++;
    sk_loop_stop(io->loop);
}

static int tcp_listener(struct sockaddr_in *addr)
{
    socklen_t len = sizeof(*addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

    *addr = (struct sockaddr_in){.sin_family = AF_INET,
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)addr, sizeof(*addr)), 0);
    assert_int_equal(listen(fd, 16), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)addr, &len), 0);
    return fd;
}

struct sleeper {
    struct sk_loop *loop;
    pthread_t thread;
    atomic_int tid;
};

static void *run_sleeper(void *arg)
{
    struct sleeper *s = arg;

    atomic_store(&s->tid, (int)syscall(SYS_gettid));
    assert_int_equal(sk_loop_run(s->loop), 0); /* until stop_posted() */
    return NULL;
}

/* Posted from the test's thread: ends a sleeper's run. */
static void stop_posted(void *arg)
{
    sk_loop_stop(arg);
}

/* Whether the thread tid is in the system call that waits for events. */
static bool waiting_in_poller(int tid)
{
    char path[64];
    long nr = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", tid);
    if ((f = fopen(path, "r")) == NULL)
        return false;
    if (fscanf(f, "%ld", &nr) != 1)
        nr = -1;
    fclose(f);
    return nr == SYS_epoll_pwait || nr == SYS_io_uring_enter
#ifdef SYS_epoll_wait
           || nr == SYS_epoll_wait
#endif
#ifdef SYS_epoll_pwait2
           || nr == SYS_epoll_pwait2
#endif
        ;
}

/* Blocks until both threads sleep in their loops' waits (5 s at most). */
static void until_both_wait(struct sleeper *s)
{
    for (int i = 0; i < 5000; i++) {
        int a = atomic_load(&s[0].tid), b = atomic_load(&s[1].tid);
        if (a != 0 && b != 0 && waiting_in_poller(a) && waiting_in_poller(b))
            return;
        usleep(1000);
    }
    fail_msg("the loops' threads never waited");
}

/* Two loops, each on its thread and asleep, watch one listener; one
 * connection comes, never accepted. Exclusive watchers: one loop hears of
 * it. Plain ones: both. */
static int woken_loops(void **state, bool exclusive)
{
    struct sleeper s[2] = {{.loop = loop_on(state)}, {.loop = loop_on(state)}};
    struct counted c[2];
    struct sockaddr_in addr;
    int lfd = tcp_listener(&addr), cfd;

    memset(c, 0, sizeof(c));
    for (int i = 0; i < 2; i++) {
        c[i].io.data = &c[i];
        assert_int_equal(sk_io_start(s[i].loop, &c[i].io, lfd, SK_READ,
                                     exclusive, on_counted),
                         0);
        assert_int_equal(pthread_create(&s[i].thread, NULL, run_sleeper, &s[i]),
                         0);
    }
    until_both_wait(s);
    cfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(cfd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    /* The loops that are woken are woken at once: 300 ms is ample to see
     * whether a second one is; then both are stopped (that wakes both). */
    usleep(300 * 1000);
    for (int i = 0; i < 2; i++)
        assert_int_equal(sk_loop_post(s[i].loop, stop_posted, s[i].loop), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_join(s[i].thread, NULL), 0);
        sk_io_stop(&c[i].io);
        sk_loop_free(s[i].loop);
        assert_true(c[i].calls <= 1);
    }
    close(cfd);
    close(lfd);
    return c[0].calls + c[1].calls;
}

static void test_exclusive_listener_wakes_one_loop(void **state)
{
    assert_int_equal(woken_loops(state, true), 1);
    assert_int_equal(woken_loops(state, false), 2);
}

/* ------------------------------------------- stale events, many ready */

#define MANY 300

struct many {
    struct sk_io io;
    struct many **all; /* the first one called frees every other */
    int *calls;
    int fds[2];
};

/* A watcher of a new socket pair's first end, readable if asked. */
static struct many *many_open(struct sk_loop *loop, struct many **all,
                              int *calls, sk_io_fn cb, bool readable)
{
    struct many *m = calloc(1, sizeof(*m));

    assert_non_null(m);
    assert_int_equal(
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, m->fds), 0);
    m->all = all;
    m->calls = calls;
    m->io.data = m;
    if (readable)
        assert_int_equal(write(m->fds[1], "x", 1), 1);
    assert_int_equal(sk_io_start(loop, &m->io, m->fds[0], SK_READ, false, cb),
                     0);
    return m;
}

static void many_close(struct many *m)
{
    sk_io_stop(&m->io);
    close(m->fds[0]);
    close(m->fds[1]);
    memset(m, 0xa5, sizeof(*m));
    free(m);
}

/* The first watcher called stops and frees all the others, every one of
 * them readable in this same iteration, and reopens their descriptors
 * for new watchers that have nothing to read. */
static void on_first_of_many(struct sk_io *io, unsigned events)
{
    struct many *self = io->data;
    struct many **all = self->all;
    int *calls = self->calls;

    (void)events;
    ++*calls;
    for (int i = 0; i < MANY; i++) {
        if (all[i] == self || all[i] == NULL)
            continue;
        many_close(all[i]);
        all[i] = NULL;
    }
    sk_loop_stop(io->loop);
}

static void on_never(struct sk_io *io, unsigned events)
{
    struct many *m = io->data;

    (void)events;
    ++*m->calls;
}

static void test_events_of_freed_watchers_never_arrive(void **state)
{
    struct sk_loop *loop = loop_on(state);
    struct many *all[MANY], *fresh[MANY];
    int calls = 0, late = 0, n = 0;

    for (int i = 0; i < MANY; i++)
        all[i] = many_open(loop, all, &calls, on_first_of_many, true);
    run_for(loop, 1000);
    assert_int_equal(calls, 1);
    /* Watchers on the same descriptors, nothing to read: what was left of
     * the old ones' events must reach neither them nor these. */
    for (int i = 0; i < MANY - 1; i++)
        fresh[n++] = many_open(loop, NULL, &late, on_never, false);
    run_for(loop, 30);
    assert_int_equal(late, 0);
    for (int i = 0; i < n; i++)
        many_close(fresh[i]);
    for (int i = 0; i < MANY; i++)
        if (all[i] != NULL)
            many_close(all[i]);
    sk_loop_free(loop);
}

/* Watchers ready at once: more than a wait takes (256) and than the
 * completion ring holds (4096); each called exactly once. */
#define CROWD 4400

struct crowd {
    struct sk_io io;
    int calls;
};

static int crowd_done;

static void on_crowd(struct sk_io *io, unsigned events)
{
    struct crowd *c = io->data;

    (void)events;
    if (c->calls++ == 0 && ++crowd_done == CROWD)
        sk_loop_stop(io->loop);
    sk_io_set(io, 0);
}

static void test_more_ready_watchers_than_the_ring_holds(void **state)
{
    struct sk_loop *loop = loop_on(state);
    struct crowd *c = calloc(CROWD, sizeof(*c));
    int fds[2];
    struct rlimit rl;

    assert_non_null(c);
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < CROWD + 64) {
        rl.rlim_cur = rl.rlim_max;
        if (rl.rlim_max < CROWD + 64 || setrlimit(RLIMIT_NOFILE, &rl) < 0) {
            free(c);
            sk_loop_free(loop);
            skip();
        }
    }
    crowd_done = 0;
    for (int i = 0; i < CROWD; i += 2) {
        assert_int_equal(
            socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
        for (int j = 0; j < 2; j++) {
            c[i + j].io.data = &c[i + j];
            assert_int_equal(sk_io_start(loop, &c[i + j].io, fds[j], SK_WRITE,
                                         false, on_crowd),
                             0);
        }
    }
    run_for(loop, 5000);
    assert_int_equal(crowd_done, CROWD);
    run_for(loop, 10);
    for (int i = 0; i < CROWD; i++) {
        assert_int_equal(c[i].calls, 1);
        sk_io_stop(&c[i].io);
        close(c[i].io.fd);
    }
    free(c);
    sk_loop_free(loop);
}

/* Reads fd until its end of stream: true, or false after 2 s without. */
static bool read_to_eof(int fd)
{
    char buf[65536];
    ssize_t n;

    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};

        if (poll(&p, 1, 2000) != 1)
            return false;
        if ((n = recv(fd, buf, sizeof(buf), 0)) == 0)
            return true;
        if (n < 0 && errno != EAGAIN)
            return false;
    }
}

/* A watcher stopped, its socket closed, while a wake-up of its poll is
 * still to be delivered (between two waits): the poll ends and lets the
 * socket go, so that the peer sees the close. A watcher that asks for
 * nothing (woken by the peer's shutdown) and one that waits to write to
 * a peer that has shut down (woken by room to write) are the ones whose
 * polls outlive a wake-up. */
static void test_stopped_watcher_lets_its_socket_go(void **state)
{
    struct sk_loop *loop = loop_on(state);
    int calls = 0;
    struct many m = {.calls = &calls};
    char buf[4096];

    for (int i = 0; i < 40; i++) {
        bool writer = i % 2 == 1;
        int fds[2];

        assert_int_equal(
            socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
        m.io.data = &m;
        assert_int_equal(sk_io_start(loop, &m.io, fds[0], 0, false, on_never),
                         0);
        if (writer) {
            while (send(fds[0], buf, sizeof(buf), 0) > 0)
                ;
            assert_int_equal(shutdown(fds[1], SHUT_WR), 0);
            assert_int_equal(sk_io_set(&m.io, SK_WRITE), 0);
        }
        run_for(loop, 5);
        if (writer) /* room to write: a wake-up */
            for (int k = 0; k < 8; k++)
                assert_true(recv(fds[1], buf, sizeof(buf), 0) > 0);
        else
            assert_int_equal(shutdown(fds[1], SHUT_WR), 0);
        sk_io_stop(&m.io);
        close(fds[0]);
        run_for(loop, 5);
        assert_true(read_to_eof(fds[1]));
        close(fds[1]);
    }
    assert_int_equal(calls, 0);
    sk_loop_free(loop);
}

#define ON(f, b) cmocka_unit_test_prestate(f, &backends[b])

int main(void)
{
    const struct CMUnitTest own[] = {
        cmocka_unit_test(test_refused_io_uring_falls_back_to_epoll),
        cmocka_unit_test(test_epoll_asked_for_is_epoll),
        ON(test_exclusive_listener_wakes_one_loop, 0),
        ON(test_exclusive_listener_wakes_one_loop, 1),
        ON(test_events_of_freed_watchers_never_arrive, 0),
        ON(test_events_of_freed_watchers_never_arrive, 1),
        ON(test_more_ready_watchers_than_the_ring_holds, 0),
        ON(test_more_ready_watchers_than_the_ring_holds, 1),
        ON(test_stopped_watcher_lets_its_socket_go, 0),
        ON(test_stopped_watcher_lets_its_socket_go, 1),
    };
    const struct CMUnitTest epoll_only[] = {
        cmocka_unit_test(test_refused_io_uring_falls_back_to_epoll),
        cmocka_unit_test(test_epoll_asked_for_is_epoll),
        ON(test_exclusive_listener_wakes_one_loop, 0),
        ON(test_events_of_freed_watchers_never_arrive, 0),
        ON(test_more_ready_watchers_than_the_ring_holds, 0),
        ON(test_stopped_watcher_lets_its_socket_go, 0),
    };
    struct sk_loop *probe;
    int failed;

    if (uring_loop_new(&probe) < 0) {
        print_message("io_uring not available here: its half skipped\n");
        return cmocka_run_group_tests(epoll_only, NULL, NULL);
    }
    sk_loop_free(probe);
    failed = loop_tests_main();
    return cmocka_run_group_tests(own, NULL, NULL) + failed;
}
