/* connector.c -- unit tests of sk_connector on a loop: its callback never
 * runs inside sk_connector_start(), whatever the kind of endpoint, and a
 * stop asked for before sk_loop_run() is kept (a client of a missing UNIX
 * socket used to hang there). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <sockit.h>

#define ALARM_S 30

struct run {
    struct sk_loop *loop;
    struct sk_connector cn;
    bool in_start; /* sk_connector_start() has not returned yet */
    int calls, early_calls, result;
};

static void on_connect(struct sk_connector *cn, int fd)
{
    struct run *r = cn->data;

    r->calls++;
    r->early_calls += r->in_start;
    r->result = fd;
    if (fd >= 0)
        close(fd);
    sk_loop_stop(r->loop);
}

static void unix_addr(struct sk_addr *a, const char *path)
{
    struct sockaddr_un *sun = &a->u.un;

    memset(a, 0, sizeof(*a));
    sun->sun_family = AF_UNIX;
    snprintf(sun->sun_path, sizeof(sun->sun_path), "%s", path);
    a->len = sizeof(*sun);
}

static int start(struct run *r, const char *path)
{
    struct sk_addr a;
    int err;

    unix_addr(&a, path);
    r->cn.data = r;
    r->in_start = true;
    err = sk_connector_start(r->loop, &r->cn, &a, 1, SOCK_STREAM, 5000,
                             on_connect);
    r->in_start = false;
    return err;
}

static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;

    assert_non_null(d);
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n;
}

static void test_missing_unix_socket_reports_after_start(void **state)
{
    struct run r = {0};

    alarm(ALARM_S);
    assert_int_equal(sk_loop_new(&r.loop), 0);
    assert_int_equal(start(&r, "/nonexistent-sockit-dir/none.sock"), 0);
    assert_int_equal(r.calls, 0);
    /* The callback stops the loop: the run returns instead of hanging. */
    assert_int_equal(sk_loop_run(r.loop), 0);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.early_calls, 0);
    assert_int_equal(r.result, -ENOENT);
    sk_loop_free(r.loop);
}

#define PATH_LEN 64

/* A listening UNIX stream socket at path, dir/s, in a new dir (a template). */
static int listener(char *dir, char path[PATH_LEN])
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int lfd;

    assert_non_null(mkdtemp(dir));
    snprintf(path, PATH_LEN, "%s/s", dir);
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
    assert_true((lfd = socket(AF_UNIX, SOCK_STREAM, 0)) >= 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    assert_int_equal(listen(lfd, 4), 0);
    return lfd;
}

static void listener_close(int lfd, const char *dir, const char *path)
{
    close(lfd);
    unlink(path);
    rmdir(dir);
}

static void test_listening_unix_socket_connects_after_start(void **state)
{
    char dir[] = "/tmp/sockit-connector-XXXXXX", path[PATH_LEN];
    struct run r = {0};
    int lfd;

    alarm(ALARM_S);
    lfd = listener(dir, path);
    assert_int_equal(sk_loop_new(&r.loop), 0);
    assert_int_equal(start(&r, path), 0);
    assert_int_equal(r.calls, 0);
    assert_int_equal(sk_loop_run(r.loop), 0);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.early_calls, 0);
    assert_true(r.result >= 0);
    sk_loop_free(r.loop);
    listener_close(lfd, dir, path);
}

static void never(struct sk_timer *t)
{
    fail_msg("the loop ran although it was stopped before the run");
}

static void stop_it(struct sk_timer *t)
{
    sk_loop_stop(t->loop);
}

/* Cancelled between the start and its callback, a connection already
 * made is closed, not leaked, and the callback never runs. */
static void test_cancel_before_the_callback_closes_the_socket(void **state)
{
    char dir[] = "/tmp/sockit-connector-XXXXXX", path[PATH_LEN];
    struct run r = {0};
    struct sk_timer stop;
    int lfd, before;

    alarm(ALARM_S);
    lfd = listener(dir, path);
    assert_int_equal(sk_loop_new(&r.loop), 0);
    before = open_fds();
    assert_int_equal(start(&r, path), 0);
    assert_int_equal(open_fds(), before + 1);
    sk_connector_cancel(&r.cn);
    assert_int_equal(open_fds(), before);
    /* Past the moment the result was due: the loop runs, cb does not. */
    sk_timer_init(&stop, stop_it);
    assert_int_equal(sk_timer_start(r.loop, &stop, 50, 0), 0);
    assert_int_equal(sk_loop_run(r.loop), 0);
    assert_int_equal(r.calls, 0);
    sk_loop_free(r.loop);
    listener_close(lfd, dir, path);
}

/* A stop before the run is kept once; the run after that runs again. */
static void test_stop_before_run_is_kept_once(void **state)
{
    struct sk_loop *loop;
    struct sk_timer t;

    alarm(ALARM_S);
    assert_int_equal(sk_loop_new(&loop), 0);
    sk_timer_init(&t, never);
    assert_int_equal(sk_timer_start(loop, &t, 0, 0), 0);
    sk_loop_stop(loop);
    assert_int_equal(sk_loop_run(loop), 0);
    t.cb = stop_it;
    assert_int_equal(sk_loop_run(loop), 0); /* returns through stop_it */
    sk_timer_stop(&t);
    sk_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_missing_unix_socket_reports_after_start),
        cmocka_unit_test(test_listening_unix_socket_connects_after_start),
        cmocka_unit_test(test_cancel_before_the_callback_closes_the_socket),
        cmocka_unit_test(test_stop_before_run_is_kept_once),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
