/* dgram_batch.c -- unit tests of a batch of datagrams (src/dgram.c): the
 * replies of a batch may point at what it received (no copy) or be copied,
 * and either way each goes out whole, to its sender, in the order queued,
 * also when the batch of replies fills and leaves early. */
#include "server_fixture.h"

#include <sys/socket.h>

#define BURST 64

/* Each datagram: first a 40 ms pause (while the others pile up in the
 * socket, so that the next receive takes a full batch), then two
 * replies: the bytes received as they are, then a copy made here with its
 * bytes reversed. */
static void on_datagram_twice(struct sk_dgram *d, const char *data, size_t len)
{
    struct fixture *f = sk_server_data(sk_dgram_server(d));
    char reversed[256];
    int err = 0;

    if (len > 0 && data[0] == 'h') {
        struct timespec pause = {.tv_nsec = 40 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    for (size_t i = 0; i < len && i < sizeof(reversed); i++)
        reversed[i] = data[len - 1 - i];
    err |= sk_dgram_reply(d, data, len);
    err |= sk_dgram_reply(d, reversed, len);
    pthread_mutex_lock(&f->lock);
    f->seen.datagrams++;
    f->seen.write_errors += err != 0;
    announce(f);
}

static const struct sk_handler twice_handler = {
    .on_datagram = on_datagram_twice,
};

static size_t message(int i, char *out)
{
    return (size_t)snprintf(out, 200, "%c%03d:%.*s", i == 0 ? 'h' : 'm', i,
                            i * 2,
                            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNO"
                            "PQRSTUVWXYZ0123456789abcdefghijklmnopqrst"
                            "uvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01234567");
}

static void test_burst_replies_are_whole_and_in_order(void **state)
{
    struct fixture *f = *state;
    struct sk_endpoint ep;
    char want[200], got[256], rev[200];
    int fd;

    serve(f, &twice_handler, defaults, "udp://127.0.0.1:0");
    ep = listener(f, 0);
    fd = client_connect(&ep);
    for (int i = 0; i < BURST; i++) {
        size_t n = message(i, want);
        assert_int_equal(send(fd, want, n, 0), (ssize_t)n);
    }
    for (int i = 0; i < BURST; i++) {
        size_t n = message(i, want);
        for (size_t k = 0; k < n; k++)
            rev[k] = want[n - 1 - k];
        assert_int_equal(recv(fd, got, sizeof(got), 0), (ssize_t)n);
        assert_memory_equal(got, want, n);
        assert_int_equal(recv(fd, got, sizeof(got), 0), (ssize_t)n);
        assert_memory_equal(got, rev, n);
    }
    wait_for(f, &f->seen.datagrams, BURST, "datagrams");
    assert_int_equal(snapshot(f).write_errors, 0);
    close(fd);
    stop_and_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        WITH_THREADS(test_burst_replies_are_whole_and_in_order, 1),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
