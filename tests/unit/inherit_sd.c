/* inherit_sd.c -- unit tests of sd:, systemd's socket activation read
 * without libsystemd (src/inherit.c): what a server adopts, and each
 * refusal with its detail. systemd's variables are read once per process,
 * so each case runs in a forked child of its own, which owns its
 * descriptors from 3 on and sets the variables as systemd would. */
#include "server_fixture.h"

#include <sys/wait.h>

#include "internal.h" /* a listener's descriptors, to tell duplicates */

/* In a child: a failed check says where on stderr and fails the child. */
#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond);         \
            return 1;                                                          \
        }                                                                      \
    } while (0)
#define CHECK_TEXT(got, want)                                                  \
    do {                                                                       \
        const char *got_ = (got), *want_ = (want);                             \
        if (strcmp(got_, want_) != 0) {                                        \
            fprintf(stderr, "%s:%d: \"%s\", want \"%s\"\n", __FILE__,          \
                    __LINE__, got_, want_);                                    \
            return 1;                                                          \
        }                                                                      \
    } while (0)

/* Runs fn in a child and requires it to pass. */
static void in_child(int (*fn)(void), const char *what)
{
    int status;
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(ALARM_S);
        _exit(fn());
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("%s: child status %#x (its stderr says why)", what, status);
}

/* ------------------------------------------------ systemd's side */

/* A socket on 127.0.0.1:0 (listening for a stream) put at descriptor at,
 * without FD_CLOEXEC, as systemd passes it. */
static int pass_socket(int socktype, int at)
{
    struct sockaddr_in in = {.sin_family = AF_INET};
    int fd = socket(AF_INET, socktype | SOCK_CLOEXEC, 0), high;

    in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&in, sizeof(in)) != 0 ||
        (socktype == SOCK_STREAM && listen(fd, 16) != 0))
        return -1;
    /* Through a high number, in case fd is at already. */
    high = fcntl(fd, F_DUPFD, 900);
    close(fd);
    if (high < 0 || dup2(high, at) != at)
        return -1;
    close(high);
    return at;
}

/* LISTEN_PID (pid 0: this process), LISTEN_FDS and LISTEN_FDNAMES
 * (NULL: unset). */
static void set_vars(pid_t pid, const char *fds, const char *names)
{
    char text[24];

    snprintf(text, sizeof(text), "%ld", (long)(pid ? pid : getpid()));
    setenv("LISTEN_PID", text, 1);
    setenv("LISTEN_FDS", fds, 1);
    if (names != NULL)
        setenv("LISTEN_FDNAMES", names, 1);
    else
        unsetenv("LISTEN_FDNAMES");
    setenv("LISTEN_PIDFDID", "12345", 1);
}

static bool vars_gone(void)
{
    return !getenv("LISTEN_PID") && !getenv("LISTEN_FDS") &&
           !getenv("LISTEN_FDNAMES") && !getenv("LISTEN_PIDFDID");
}

static bool is_open_fd(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

static bool cloexec(int fd)
{
    int flags = fcntl(fd, F_GETFD);

    return flags >= 0 && (flags & FD_CLOEXEC);
}

/* ------------------------------------------------------ the server */

/* A server of f with the fixture's echo handler, threads workers. */
static int new_server(struct fixture *f, unsigned threads)
{
    struct sk_server_config cfg = {
        .handler = &echo_handler, .data = f, .threads = threads};

    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->cond, NULL);
    return sk_server_new(&f->srv, &cfg);
}

/* sk_server_listen() of text; failed in *failed if not NULL. */
static int listen_text(struct fixture *f, const char *text,
                       struct sk_endpoint *failed)
{
    struct sk_endpoint ep;

    if (sk_endpoint_parse(&ep, text, NULL) != 0)
        return -1000;
    return sk_server_listen(f->srv, &ep, failed);
}

static const char *listener_text(struct fixture *f, size_t i, char *out,
                                 size_t size)
{
    struct sk_endpoint ep;

    if (sk_server_listener_endpoint(f->srv, i, &ep) != 0 ||
        sk_endpoint_format(&ep, out, size) < 0)
        return "(none)";
    return out;
}

/* What fd is, as sockit names it. */
static const char *own_text(int fd, enum sk_scheme scheme, char *out,
                            size_t size)
{
    struct sk_addr addr = {.len = sizeof(addr.u)};
    struct sk_endpoint ep;

    if (getsockname(fd, &addr.u.sa, &addr.len) != 0 ||
        sk_endpoint_from_addr(&ep, scheme, &addr) != 0 ||
        sk_endpoint_format(&ep, out, size) < 0)
        return "(none)";
    return out;
}

/* Sends msg to listener i (stream or datagram) and requires it back. */
static int echo_through(struct fixture *f, size_t i, const char *msg)
{
    struct sk_endpoint ep;
    char buf[64];
    size_t len = strlen(msg);
    int fd, ok;

    if (sk_server_listener_endpoint(f->srv, i, &ep) != 0 ||
        (fd = sk_connect(&ep, WAIT_S * 1000)) < 0)
        return 0;
    ok = sk_send_all(fd, msg, len, WAIT_S * 1000) == 0 &&
         sk_recv_timeout(fd, buf, sizeof(buf), WAIT_S * 1000) == (ssize_t)len &&
         memcmp(buf, msg, len) == 0;
    close(fd);
    return ok;
}

/* ----------------------------------------------------------- adopting */

/* sd: adopts every socket passed, in order, as duplicates (systemd's
 * descriptors stay the process's, close-on-exec); sd:NAME those named
 * NAME; fd:N of one of them is a duplicate too. The variables are gone. */
static int adopts_every_socket_passed(void)
{
    char a[SK_ENDPOINT_STRLEN], b[SK_ENDPOINT_STRLEN], why[256];
    struct fixture f = {0};
    struct sk_endpoint failed;

    CHECK(pass_socket(SOCK_STREAM, 3) == 3 && pass_socket(SOCK_DGRAM, 4) == 4);
    set_vars(0, "2", "web:dns");
    CHECK(!cloexec(3) && !cloexec(4));
    CHECK(new_server(&f, 2) == 0);
    CHECK(listen_text(&f, "sd:", NULL) == 0);
    CHECK(vars_gone());
    CHECK(cloexec(3) && cloexec(4));
    CHECK(sk_server_listener_count(f.srv) == 2);
    CHECK_TEXT(listener_text(&f, 0, a, sizeof(a)),
               own_text(3, SK_TCP, b, sizeof(b)));
    CHECK_TEXT(listener_text(&f, 1, a, sizeof(a)),
               own_text(4, SK_UDP, b, sizeof(b)));
    CHECK(listen_text(&f, "sd:web", NULL) == 0);
    CHECK(listen_text(&f, "fd:3", NULL) == 0);
    CHECK(sk_server_listener_count(f.srv) == 4);
    for (size_t i = 0; i < 4; i++)
        CHECK(f.srv->listeners[i].fds[0] > 4);
    CHECK_TEXT(listener_text(&f, 3, a, sizeof(a)),
               own_text(3, SK_TCP, b, sizeof(b)));
    CHECK(pthread_create(&f.thread, NULL, run_server, &f) == 0);
    CHECK(echo_through(&f, 0, "through sd:"));
    CHECK(echo_through(&f, 1, "a datagram through sd:"));
    CHECK(echo_through(&f, 2, "through sd:web"));
    sk_server_stop(f.srv);
    pthread_join(f.thread, NULL);
    CHECK(f.run_ret == 0);
    sk_server_free(f.srv);
    CHECK(is_open_fd(3) && is_open_fd(4));
    /* Again, in another server: the sockets are still there to adopt. */
    CHECK(new_server(&f, 1) == 0);
    CHECK(listen_text(&f, "sd:dns", NULL) == 0);
    CHECK(sk_server_listener_count(f.srv) == 1);
    CHECK_TEXT(listener_text(&f, 0, a, sizeof(a)),
               own_text(4, SK_UDP, b, sizeof(b)));
    CHECK(listen_text(&f, "sd:nope", &failed) == SK_ENOSDNAME);
    CHECK(sk_server_listener_count(f.srv) == 1);
    CHECK(sk_endpoint_format(&failed, a, sizeof(a)) > 0);
    CHECK_TEXT(a, "sd:nope");
    CHECK_TEXT(sk_endpoint_strerror(&failed, SK_ENOSDNAME, why, sizeof(why)),
               "no socket named nope passed by systemd (names: web, dns)");
    sk_server_free(f.srv);
    return 0;
}

static void test_sd_adopts_every_socket_passed(void **state)
{
    (void)state;
    in_child(adopts_every_socket_passed, "sd: adopts");
}

/* Without LISTEN_FDNAMES every socket is "unknown", as systemd says. */
static int names_unknown_without_fdnames(void)
{
    struct fixture f = {0};
    struct sk_endpoint failed;
    char why[256];

    CHECK(pass_socket(SOCK_STREAM, 3) == 3);
    set_vars(0, "1", NULL);
    CHECK(new_server(&f, 1) == 0);
    CHECK(listen_text(&f, "sd:web", &failed) == SK_ENOSDNAME);
    CHECK(vars_gone());
    CHECK_TEXT(sk_endpoint_strerror(&failed, SK_ENOSDNAME, why, sizeof(why)),
               "no socket named web passed by systemd (names: unknown)");
    CHECK(listen_text(&f, "sd:unknown", NULL) == 0);
    CHECK(sk_server_listener_count(f.srv) == 1);
    sk_server_free(f.srv);
    return 0;
}

static void test_sd_names_unknown_without_fdnames(void **state)
{
    (void)state;
    in_child(names_unknown_without_fdnames, "sd: without LISTEN_FDNAMES");
}

/* ------------------------------------------------------------ refusals */

/* What the variables may say that gives no socket, and each detail. */
static const struct {
    const char *pid; /* NULL: this process; "+1": another one */
    const char *fds, *names;
    int code;
    const char *detail; /* "%d": the wrong pid */
} refusals[] = {
    {"", NULL, NULL, SK_ENOSDSOCKETS,
     "no sockets passed by systemd (LISTEN_FDS unset)"},
    {"", "1", NULL, SK_ENOSDSOCKETS,
     "no sockets passed by systemd (LISTEN_PID unset)"},
    {"+1", "1", "web", SK_ENOSDSOCKETS,
     "no sockets passed by systemd (LISTEN_PID %d is not this process)"},
    {"12x", "1", "web", SK_ENOSDSOCKETS,
     "no sockets passed by systemd (LISTEN_PID \"12x\" is not a pid)"},
    {NULL, "0", "", SK_ENOSDSOCKETS,
     "no sockets passed by systemd (LISTEN_FDS=0)"},
    {NULL, "-1", "", SK_ENOSDSOCKETS,
     "no sockets passed by systemd (LISTEN_FDS \"-1\" is not a count)"},
    {NULL, "2", "web", SK_ENOSDSOCKETS,
     "no sockets passed by systemd (LISTEN_FDNAMES has 1 names for 2 "
     "sockets)"},
};

static size_t refusal;

static void set_refusal(void)
{
    const char *pid = refusals[refusal].pid;
    char text[24];

    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    if (pid != NULL && strcmp(pid, "+1") == 0)
        snprintf(text, sizeof(text), "%ld", (long)getpid() + 1);
    else if (pid != NULL)
        snprintf(text, sizeof(text), "%s", pid);
    else
        snprintf(text, sizeof(text), "%ld", (long)getpid());
    if (text[0] != '\0')
        setenv("LISTEN_PID", text, 1);
    if (refusals[refusal].fds != NULL)
        setenv("LISTEN_FDS", refusals[refusal].fds, 1);
    if (refusals[refusal].names != NULL)
        setenv("LISTEN_FDNAMES", refusals[refusal].names, 1);
}

/* Sockets at 3 and 4; the variables of one refusal. Every
 * sd: endpoint is refused alike, again and again (the answer is kept);
 * the variables are gone; sockets not this process's are left alone. */
static int refused(void)
{
    char want[256], why[256], text[SK_ENDPOINT_STRLEN];
    struct fixture f = {0};
    struct sk_endpoint failed;

    CHECK(pass_socket(SOCK_STREAM, 3) == 3 && pass_socket(SOCK_DGRAM, 4) == 4);
    set_refusal();
    CHECK(new_server(&f, 1) == 0);
    snprintf(want, sizeof(want), refusals[refusal].detail, (int)getpid() + 1);
    for (int i = 0; i < 2; i++) {
        CHECK(listen_text(&f, i ? "sd:web" : "sd:", &failed) ==
              refusals[refusal].code);
        CHECK(sk_endpoint_format(&failed, text, sizeof(text)) > 0);
        CHECK_TEXT(text, i ? "sd:web" : "sd:");
        CHECK_TEXT(sk_endpoint_strerror(&failed, refusals[refusal].code, why,
                                        sizeof(why)),
                   want);
    }
    CHECK(sk_server_listener_count(f.srv) == 0);
    CHECK(vars_gone());
    if (refusals[refusal].code == SK_ENOSDSOCKETS)
        CHECK(!cloexec(3) && !cloexec(4));
    sk_server_free(f.srv);
    return 0;
}

static void test_sd_refusals(void **state)
{
    (void)state;
    for (refusal = 0; refusal < sizeof(refusals) / sizeof(refusals[0]);
         refusal++)
        in_child(refused, refusals[refusal].detail);
}

/* LISTEN_FDS counts a descriptor that is not open: refused, naming it.
 * The server's own descriptors come after 3 and 4; the first free one
 * after them is the one not open. */
static int descriptor_not_open(void)
{
    char fds[16], want[128], why[256];
    struct fixture f = {0};
    struct sk_endpoint failed;
    int free_fd = 5;

    CHECK(pass_socket(SOCK_STREAM, 3) == 3 && pass_socket(SOCK_DGRAM, 4) == 4);
    CHECK(new_server(&f, 1) == 0);
    while (is_open_fd(free_fd))
        free_fd++;
    snprintf(fds, sizeof(fds), "%d", free_fd - 2);
    set_vars(0, fds, NULL);
    CHECK(listen_text(&f, "sd:", &failed) == -EBADF);
    snprintf(want, sizeof(want),
             "bad file descriptor (descriptor %d passed by systemd is not "
             "open)",
             free_fd);
    CHECK_TEXT(sk_endpoint_strerror(&failed, -EBADF, why, sizeof(why)), want);
    CHECK(listen_text(&f, "sd:x", NULL) == -EBADF);
    CHECK(vars_gone());
    sk_server_free(f.srv);
    return 0;
}

static void test_sd_descriptor_not_open_is_refused(void **state)
{
    (void)state;
    in_child(descriptor_not_open, "LISTEN_FDS past the open descriptors");
}

/* Accept=yes passes a connection, not a listener: refused, saying so. */
static int connection_passed(void)
{
    struct sockaddr_in in = {.sin_family = AF_INET};
    socklen_t len = sizeof(in);
    struct fixture f = {0};
    struct sk_endpoint failed;
    char why[256];
    int l, c;

    CHECK(pass_socket(SOCK_STREAM, 3) == 3);
    CHECK(getsockname(3, (struct sockaddr *)&in, &len) == 0);
    c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(connect(c, (struct sockaddr *)&in, len) == 0);
    l = accept(3, NULL, NULL);
    CHECK(l >= 0 && dup2(l, 3) == 3);
    set_vars(0, "1", "conn");
    CHECK(new_server(&f, 1) == 0);
    CHECK(listen_text(&f, "sd:", &failed) == SK_ENOTLISTENING);
    CHECK_TEXT(
        sk_endpoint_strerror(&failed, SK_ENOTLISTENING, why, sizeof(why)),
        "a socket passed by systemd is not listening (Accept=yes is "
        "not supported: use Accept=no)");
    sk_server_free(f.srv);
    return 0;
}

static void test_sd_connection_passed_is_refused(void **state)
{
    (void)state;
    in_child(connection_passed, "Accept=yes");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sd_adopts_every_socket_passed),
        cmocka_unit_test(test_sd_names_unknown_without_fdnames),
        cmocka_unit_test(test_sd_refusals),
        cmocka_unit_test(test_sd_descriptor_not_open_is_refused),
        cmocka_unit_test(test_sd_connection_passed_is_refused),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
