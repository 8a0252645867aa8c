/* sources.c -- unit tests of src/sources.c: keys (IPv4-mapped addresses
 * count as IPv4, UNIX peers by uid), exact counts against max, entries
 * gone at zero, a random run against a plain model, SipHash-1-3 test
 * vectors, and worker threads taking and putting at once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/un.h>

#include "sources.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------ helpers */

/* An IPv4 or IPv6 peer at port. */
static struct sk_addr ip_peer(const char *text, uint16_t port)
{
    struct sk_addr a;

    memset(&a, 0, sizeof(a));
    if (inet_pton(AF_INET, text, &a.u.in.sin_addr) == 1) {
        a.u.in.sin_family = AF_INET;
        a.u.in.sin_port = htons(port);
        a.len = sizeof(a.u.in);
        return a;
    }
    assert_int_equal(inet_pton(AF_INET6, text, &a.u.in6.sin6_addr), 1);
    a.u.in6.sin6_family = AF_INET6;
    a.u.in6.sin6_port = htons(port);
    a.len = sizeof(a.u.in6);
    return a;
}

static struct sk_addr unix_peer(void)
{
    struct sk_addr a;

    memset(&a, 0, sizeof(a));
    a.u.un.sun_family = AF_UNIX;
    a.len = sizeof(sa_family_t);
    return a;
}

static struct sk_source_key ip_key(const char *text)
{
    struct sk_addr a = ip_peer(text, 1234);
    struct sk_source_key key;

    assert_true(sk__source_key(&key, &a, NULL));
    return key;
}

static bool key_equal(const struct sk_source_key *a,
                      const struct sk_source_key *b)
{
    return memcmp(a, b, sizeof(*a)) == 0;
}

static struct sk_sources *new_table(void)
{
    struct sk_sources *t = sk__sources_new();

    assert_non_null(t);
    assert_int_equal(sk__sources_size(t), 0);
    return t;
}

/* Deterministic pseudo-random numbers (xorshift32). */
static uint32_t next_random(uint32_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

/* A distinct IPv6 key for each i (and IPv4 ones for odd i). */
static struct sk_source_key nth_key(uint32_t i)
{
    struct sk_source_key key;

    memset(&key, 0, sizeof(key));
    key.family = i % 2 ? AF_INET : AF_INET6;
    memcpy(key.addr, &i, sizeof(i));
    return key;
}

/* ---------------------------------------------------------------- keys */

static void test_sources_key_of_ipv4_ignores_the_port(void **state)
{
    struct sk_addr a = ip_peer("192.0.2.7", 1), b = ip_peer("192.0.2.7", 2);
    struct sk_source_key ka, kb;
    static const uint8_t want[16] = {192, 0, 2, 7};

    (void)state;
    assert_true(sk__source_key(&ka, &a, NULL));
    assert_true(sk__source_key(&kb, &b, NULL));
    assert_true(key_equal(&ka, &kb));
    assert_int_equal(ka.family, AF_INET);
    assert_memory_equal(ka.addr, want, 16);
}

static void test_sources_mapped_ipv6_is_the_ipv4_key(void **state)
{
    struct sk_source_key v4 = ip_key("10.1.2.3");
    struct sk_source_key mapped = ip_key("::ffff:10.1.2.3");
    struct sk_source_key compat = ip_key("::10.1.2.3");
    struct sk_source_key other = ip_key("10.1.2.4");
    struct sk_source_key v6 = ip_key("2001:db8::1");
    struct sk_source_key v6b = ip_key("2001:db8::1");

    (void)state;
    assert_true(key_equal(&v4, &mapped));
    assert_int_equal(mapped.family, AF_INET);
    assert_false(key_equal(&v4, &compat)); /* IPv4-compatible: IPv6 */
    assert_int_equal(compat.family, AF_INET6);
    assert_false(key_equal(&v4, &other));
    assert_true(key_equal(&v6, &v6b));
    assert_int_equal(v6.family, AF_INET6);
    assert_false(key_equal(&v4, &v6));
}

static void test_sources_unix_peers_count_by_uid(void **state)
{
    struct sk_addr u = unix_peer();
    const struct sk_peer_cred c1 = {.pid = 10, .uid = 1000, .gid = 1};
    const struct sk_peer_cred c2 = {.pid = 11, .uid = 1000, .gid = 2};
    const struct sk_peer_cred c3 = {.pid = 10, .uid = 1001, .gid = 1};
    struct sk_source_key k1, k2, k3, kip;
    struct sk_addr packet;
    uint32_t uid;

    (void)state;
    assert_true(sk__source_key(&k1, &u, &c1));
    assert_true(sk__source_key(&k2, &u, &c2));
    assert_true(sk__source_key(&k3, &u, &c3));
    assert_true(key_equal(&k1, &k2)); /* pid and gid do not matter */
    assert_false(key_equal(&k1, &k3));
    assert_int_equal(k1.family, AF_UNIX);
    memcpy(&uid, k1.addr, sizeof(uid));
    assert_int_equal(uid, 1000);
    /* A uid is not the IPv4 address of the same four bytes. */
    kip = k1;
    kip.family = AF_INET;
    assert_false(key_equal(&k1, &kip));
    /* Not limited: no credentials, no peer, a family sockit does not
     * count. */
    assert_false(sk__source_key(&k1, &u, NULL));
    assert_false(sk__source_key(&k1, NULL, &c1));
    memset(&packet, 0, sizeof(packet));
    packet.u.sa.sa_family = AF_PACKET;
    packet.len = sizeof(packet.u.ss);
    assert_false(sk__source_key(&k1, &packet, NULL));
}

/* -------------------------------------------------------------- counts */

static void test_sources_take_up_to_max_then_refuse(void **state)
{
    struct sk_sources *t = new_table();
    struct sk_source_key a = ip_key("10.0.0.1"), b = ip_key("10.0.0.2");

    (void)state;
    for (unsigned i = 1; i <= 3; i++) {
        assert_int_equal(sk__sources_take(t, &a, 3), 0);
        assert_int_equal(sk__sources_count(t, &a), i);
    }
    assert_int_equal(sk__sources_take(t, &a, 3), SK_EREFUSED);
    assert_int_equal(sk__sources_count(t, &a), 3);
    /* Another source has its own count. */
    assert_int_equal(sk__sources_take(t, &b, 3), 0);
    assert_int_equal(sk__sources_count(t, &b), 1);
    assert_int_equal(sk__sources_size(t), 2);
    /* A put frees one slot, and one only. */
    sk__sources_put(t, &a);
    assert_int_equal(sk__sources_count(t, &a), 2);
    assert_int_equal(sk__sources_take(t, &a, 3), 0);
    assert_int_equal(sk__sources_take(t, &a, 3), SK_EREFUSED);
    /* A smaller max (a reload) refuses until the count is below it. */
    assert_int_equal(sk__sources_take(t, &a, 2), SK_EREFUSED);
    assert_int_equal(sk__sources_count(t, &a), 3);
    /* At zero the entry goes. */
    for (int i = 0; i < 3; i++)
        sk__sources_put(t, &a);
    assert_int_equal(sk__sources_count(t, &a), 0);
    assert_int_equal(sk__sources_size(t), 1);
    sk__sources_put(t, &b);
    assert_int_equal(sk__sources_size(t), 0);
    sk__sources_free(t);
}

static void test_sources_max_zero_and_one(void **state)
{
    struct sk_sources *t = new_table();
    struct sk_source_key a = ip_key("2001:db8::1");

    (void)state;
    assert_int_equal(sk__sources_take(t, &a, 0), SK_EREFUSED);
    assert_int_equal(sk__sources_size(t), 0);
    assert_int_equal(sk__sources_take(t, &a, 1), 0);
    assert_int_equal(sk__sources_take(t, &a, 1), SK_EREFUSED);
    assert_int_equal(sk__sources_take(t, &a, 0), SK_EREFUSED);
    sk__sources_put(t, &a);
    assert_int_equal(sk__sources_size(t), 0);
    sk__sources_free(t);
}

static void test_sources_mapped_and_plain_share_a_count(void **state)
{
    struct sk_sources *t = new_table();
    struct sk_source_key v4 = ip_key("198.51.100.9");
    struct sk_source_key mapped = ip_key("::ffff:198.51.100.9");

    (void)state;
    assert_int_equal(sk__sources_take(t, &v4, 2), 0);
    assert_int_equal(sk__sources_take(t, &mapped, 2), 0);
    assert_int_equal(sk__sources_take(t, &mapped, 2), SK_EREFUSED);
    assert_int_equal(sk__sources_take(t, &v4, 2), SK_EREFUSED);
    assert_int_equal(sk__sources_count(t, &v4), 2);
    assert_int_equal(sk__sources_size(t), 1);
    sk__sources_put(t, &mapped);
    sk__sources_put(t, &v4);
    assert_int_equal(sk__sources_size(t), 0);
    sk__sources_free(t);
}

static void test_sources_put_of_a_key_not_held_is_ignored(void **state)
{
    struct sk_sources *t = new_table();
    struct sk_source_key a = ip_key("10.0.0.1"), b = ip_key("10.0.0.2");

    (void)state;
    sk__sources_put(t, &a); /* an empty table */
    assert_int_equal(sk__sources_take(t, &a, 5), 0);
    sk__sources_put(t, &b); /* a table without b */
    assert_int_equal(sk__sources_count(t, &a), 1);
    assert_int_equal(sk__sources_size(t), 1);
    sk__sources_put(t, &a);
    sk__sources_put(t, &a); /* once more than taken */
    assert_int_equal(sk__sources_size(t), 0);
    sk__sources_free(t);
    sk__sources_free(NULL);
}

/* Enough sources to grow every stripe many times, then shrink it back. */
static void test_sources_many_sources_come_and_go(void **state)
{
    enum { N = 50000 };
    struct sk_sources *t = new_table();

    (void)state;
    for (uint32_t i = 0; i < N; i++) {
        struct sk_source_key k = nth_key(i);
        assert_int_equal(sk__sources_take(t, &k, 2), 0);
        assert_int_equal(sk__sources_take(t, &k, 2), 0);
    }
    assert_int_equal(sk__sources_size(t), N);
    for (uint32_t i = 0; i < N; i++) {
        struct sk_source_key k = nth_key(i);
        assert_int_equal(sk__sources_count(t, &k), 2);
        assert_int_equal(sk__sources_take(t, &k, 2), SK_EREFUSED);
        sk__sources_put(t, &k);
    }
    /* Leave in every other one, from the front: deletions amid runs. */
    for (uint32_t i = 0; i < N; i += 2) {
        struct sk_source_key k = nth_key(i);
        sk__sources_put(t, &k);
    }
    assert_int_equal(sk__sources_size(t), N / 2);
    for (uint32_t i = 0; i < N; i++) {
        struct sk_source_key k = nth_key(i);
        assert_int_equal(sk__sources_count(t, &k), i % 2);
    }
    for (uint32_t i = 1; i < N; i += 2) {
        struct sk_source_key k = nth_key(i);
        sk__sources_put(t, &k);
    }
    assert_int_equal(sk__sources_size(t), 0);
    sk__sources_free(t);
}

/* Random takes and puts on a few hundred keys against a plain array. */
static void test_sources_random_run_matches_model(void **state)
{
    enum { KEYS = 300, OPS = 300000, MAX = 3 };
    static unsigned model[KEYS];
    struct sk_sources *t = new_table();
    uint32_t seed = 2463534242u;
    size_t live = 0;

    (void)state;
    memset(model, 0, sizeof(model));
    for (int op = 0; op < OPS; op++) {
        uint32_t r = next_random(&seed), i = r % KEYS;
        struct sk_source_key k = nth_key(i);
        if ((r >> 16) % 2 == 0) {
            int want = model[i] < MAX ? 0 : SK_EREFUSED;
            assert_int_equal(sk__sources_take(t, &k, MAX), want);
            live += want == 0 && model[i] == 0;
            model[i] += want == 0;
        } else {
            sk__sources_put(t, &k);
            live -= model[i] == 1;
            model[i] -= model[i] > 0;
        }
        assert_int_equal(sk__sources_count(t, &k), model[i]);
        if (op % 1000 == 0)
            assert_int_equal(sk__sources_size(t), live);
    }
    for (uint32_t i = 0; i < KEYS; i++) {
        struct sk_source_key k = nth_key(i);
        assert_int_equal(sk__sources_count(t, &k), model[i]);
        while (model[i]-- > 0)
            sk__sources_put(t, &k);
    }
    assert_int_equal(sk__sources_size(t), 0);
    sk__sources_free(t);
}

/* ------------------------------------------------------------- SipHash */

/* SipHash-1-3 of the bytes 0, 1, ... len-1 under the key of zeros, as
 * the reference implementation (github.com/veorq/SipHash) gives. */
static void test_sources_siphash13_test_vectors(void **state)
{
    static const struct {
        size_t len;
        uint64_t hash;
    } v[] = {
        {0, 0xd1fba762150c532cull},  {1, 0x68a914128e01e473ull},
        {7, 0x2f098ab0c751325aull},  {8, 0xead411e67ebe2eeaull},
        {15, 0xf30eb725bb91c9eaull}, {16, 0x8972188433a5c5b7ull},
        {18, 0xadc2c0b63044067dull},
    };
    const uint64_t zero[2] = {0, 0};
    uint8_t msg[32];

    (void)state;
    for (size_t i = 0; i < sizeof(msg); i++)
        msg[i] = (uint8_t)i;
    for (size_t i = 0; i < ARRAY_LEN(v); i++)
        assert_int_equal(sk__siphash13(zero, msg, v[i].len), v[i].hash);
}

/* Two tables draw two keys: their hashes of one key differ (the stripe
 * a source lands in cannot be known in advance). Checked through the
 * hash directly, since the table does not show its key. */
static void test_sources_siphash_depends_on_the_key(void **state)
{
    const uint64_t k1[2] = {1, 2}, k2[2] = {1, 3};
    struct sk_source_key k = ip_key("10.0.0.1");

    (void)state;
    assert_int_not_equal(sk__siphash13(k1, &k, sizeof(k)),
                         sk__siphash13(k2, &k, sizeof(k)));
}

/* ------------------------------------------------------------- threads */

enum { THREADS = 4, ROUNDS = 100000, SHARED_KEYS = 4, SHARED_MAX = 2 };

/* What the threads share: the table, and beside it the count each key
 * is held by the threads, kept with atomics (a thread counts a hold
 * after its take succeeded and uncounts it before its put, so this count
 * is never above the table's, which must never pass max). */
struct shared {
    struct sk_sources *t;
    struct sk_source_key keys[SHARED_KEYS][2]; /* plain, mapped */
    atomic_uint held[SHARED_KEYS];
    atomic_uint peak;
    atomic_uint over; /* holds seen past max */
    atomic_ulong taken, refused, failed;
};

struct runner {
    pthread_t thread;
    struct shared *sh;
    uint32_t seed;
};

/* The shared keys, each as given (IPv4 ones also as IPv4-mapped IPv6,
 * which must make no difference), made before the threads start. */
static void make_shared_keys(struct shared *sh)
{
    static const char *const plain[SHARED_KEYS] = {"10.0.0.1", "10.0.0.2",
                                                   "2001:db8::1", "10.0.0.3"};
    static const char *const as_v6[SHARED_KEYS] = {
        "::ffff:10.0.0.1", "::ffff:10.0.0.2", "2001:db8::1", "::ffff:10.0.0.3"};

    for (int i = 0; i < SHARED_KEYS; i++) {
        sh->keys[i][0] = ip_key(plain[i]);
        sh->keys[i][1] = ip_key(as_v6[i]);
        assert_true(key_equal(&sh->keys[i][0], &sh->keys[i][1]));
    }
}

static void note_hold(struct shared *sh, uint32_t i)
{
    unsigned now = atomic_fetch_add(&sh->held[i], 1) + 1;
    unsigned peak = atomic_load(&sh->peak);

    if (now > SHARED_MAX)
        atomic_fetch_add(&sh->over, 1);
    while (now > peak && !atomic_compare_exchange_weak(&sh->peak, &peak, now))
        ;
}

/* Each round: take three sources (a repeat may be refused), then put
 * back what was taken. */
static void *run_takes(void *arg)
{
    struct runner *r = arg;
    struct shared *sh = r->sh;
    const struct sk_source_key *keys[3];
    uint32_t idx[3];
    bool got[3];

    for (int round = 0; round < ROUNDS; round++) {
        uint32_t x = next_random(&r->seed);
        for (int j = 0; j < 3; j++, x >>= 3) {
            idx[j] = x % SHARED_KEYS;
            keys[j] = &sh->keys[idx[j]][(x >> 2) & 1];
            int err = sk__sources_take(sh->t, keys[j], SHARED_MAX);
            got[j] = err == 0;
            if (got[j])
                note_hold(sh, idx[j]);
            atomic_fetch_add(err == 0             ? &sh->taken
                             : err == SK_EREFUSED ? &sh->refused
                                                  : &sh->failed,
                             1);
        }
        for (int j = 0; j < 3; j++) {
            if (!got[j])
                continue;
            atomic_fetch_sub(&sh->held[idx[j]], 1);
            sk__sources_put(sh->t, keys[j]);
        }
    }
    return NULL;
}

static void test_sources_threads_never_pass_max(void **state)
{
    static struct shared sh;
    struct runner r[THREADS];

    (void)state;
    memset(&sh, 0, sizeof(sh));
    sh.t = new_table();
    make_shared_keys(&sh);
    for (int i = 0; i < THREADS; i++) {
        r[i] = (struct runner){.sh = &sh, .seed = 0x9e3779b9u * (i + 1)};
        assert_int_equal(pthread_create(&r[i].thread, NULL, run_takes, &r[i]),
                         0);
    }
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(r[i].thread, NULL), 0);
    assert_int_equal(atomic_load(&sh.over), 0);
    assert_true(atomic_load(&sh.peak) <= SHARED_MAX);
    assert_int_equal(atomic_load(&sh.failed), 0);
    assert_int_equal(atomic_load(&sh.taken) + atomic_load(&sh.refused),
                     (unsigned long)THREADS * ROUNDS * 3);
    /* A round that draws one key thrice is refused its third take. */
    assert_true(atomic_load(&sh.refused) > 0);
    for (uint32_t i = 0; i < SHARED_KEYS; i++)
        assert_int_equal(sk__sources_count(sh.t, &sh.keys[i][0]), 0);
    assert_int_equal(sk__sources_size(sh.t), 0);
    sk__sources_free(sh.t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sources_key_of_ipv4_ignores_the_port),
        cmocka_unit_test(test_sources_mapped_ipv6_is_the_ipv4_key),
        cmocka_unit_test(test_sources_unix_peers_count_by_uid),
        cmocka_unit_test(test_sources_take_up_to_max_then_refuse),
        cmocka_unit_test(test_sources_max_zero_and_one),
        cmocka_unit_test(test_sources_mapped_and_plain_share_a_count),
        cmocka_unit_test(test_sources_put_of_a_key_not_held_is_ignored),
        cmocka_unit_test(test_sources_many_sources_come_and_go),
        cmocka_unit_test(test_sources_random_run_matches_model),
        cmocka_unit_test(test_sources_siphash13_test_vectors),
        cmocka_unit_test(test_sources_siphash_depends_on_the_key),
        cmocka_unit_test(test_sources_threads_never_pass_max),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
