/* server.c -- a server: bind its endpoints (or adopt the sockets of fd:
 * and sd:, inherit.c), run one loop per worker thread plus a control loop
 * for signals and the drain deadline, accept connections and hand them to
 * conn.c, datagram sockets to dgram.c. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "tls.h"

/* Addresses one endpoint name may resolve to. */
#define RESOLVE_MAX 16
#define DRAIN_DEFAULT_MS 2000

/* ------------------------------------------------------- control loop */

static void wake_workers(struct sk_server *srv)
{
    for (unsigned i = 0; i < srv->nworkers; i++)
        if (srv->workers[i].loop != NULL)
            sk_loop_wake(srv->workers[i].loop);
}

static void on_drain_deadline(struct sk_timer *t)
{
    struct sk_server *srv = t->data;

    atomic_store(&srv->stop_level, 2);
    sk_loop_wake(srv->control);
}

void sk__server_control_wake(void *arg)
{
    struct sk_server *srv = arg;
    int level = atomic_load(&srv->stop_level);

    if (level > srv->handled_level) {
        if (srv->handled_level == 0)
            sk__notify(srv, "STOPPING=1");
        srv->handled_level = level;
        /* Without a deadline timer (no memory), stop at once rather than
         * risk a drain that never ends. */
        if (level == 1 && sk_timer_start(srv->control, &srv->drain_timer,
                                         srv->cfg.drain_ms, 0) < 0)
            atomic_store(&srv->stop_level, srv->handled_level = 2);
        if (srv->handled_level == 2)
            sk_timer_stop(&srv->drain_timer);
        wake_workers(srv);
    }
    if (atomic_load(&srv->unlisten) && !srv->unlisten_woken &&
        srv->workers != NULL) {
        srv->unlisten_woken = true;
        wake_workers(srv); /* before_wait() (worker.c) does the rest */
    }
    if (srv->workers != NULL && atomic_load(&srv->nfinished) == srv->nworkers)
        sk_loop_stop(srv->control);
}

/* A first SIGINT/SIGTERM drains; a second one stops at once. */
static void on_signal(struct sk_signal *sig)
{
    struct sk_server *srv = sig->data;
    int level = 0;

    if (!atomic_compare_exchange_strong(&srv->stop_level, &level, 1))
        atomic_store(&srv->stop_level, 2);
    sk__server_control_wake(srv);
}

void sk_server_stop(struct sk_server *srv)
{
    int level = 0;

    atomic_compare_exchange_strong(&srv->stop_level, &level, 1);
    sk_loop_wake(srv->control);
}

/* The control loop wakes the workers: it lives as long as the server,
 * their loops only while it runs. */
int sk_server_stop_listening(struct sk_server *srv)
{
    if (atomic_load(&srv->run_state) != 1)
        return -EINVAL;
    atomic_store(&srv->unlisten, true);
    sk_loop_wake(srv->control);
    return 0;
}

static void warn_reload(struct sk_server *srv, const struct sk_listener *l,
                        const char *err)
{
    char local[SK_ENDPOINT_STRLEN];
    struct sk_log_record r = {
        .event = "reload", .local = local, .reason = err, .warning = true};

    if (!sk__server_logs(srv, true))
        return; /* rare, and each listener's: never rate limited */
    sk__endpoint_text(&l->ep, local, sizeof(local));
    sk__server_emit(srv, &r, "%s: reload failed, old certificate kept: %s",
                    local, err);
}

/* SIGHUP: every TLS context reads its files again; one that fails keeps
 * the old ones and says so. */
static void on_hangup(struct sk_signal *sig)
{
    struct sk_server *srv = sig->data;
    char err[SK_TLS_ERRLEN];

    sk__notify_reloading(srv);
    for (size_t i = 0; i < srv->nlisteners; i++) {
        struct sk_tls *tls = srv->listeners[i].tls;
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = srv->listeners[j].tls == tls;
        if (tls == NULL || seen || sk_tls_reload(tls, err, sizeof(err)) == 0)
            continue;
        warn_reload(srv, &srv->listeners[i], err);
    }
    sk__notify(srv, "READY=1");
}

static int start_signals(struct sk_server *srv)
{
    int err;

    srv->sigint.data = srv;
    srv->sigterm.data = srv;
    srv->sighup.data = srv;
    err = sk_signal_start(srv->control, &srv->sigint, SIGINT, on_signal);
    if (err == 0)
        err = sk_signal_start(srv->control, &srv->sigterm, SIGTERM, on_signal);
    if (err == 0)
        err = sk_signal_start(srv->control, &srv->sighup, SIGHUP, on_hangup);
    return err;
}

int sk_server_new(struct sk_server **srvp, const struct sk_server_config *cfg)
{
    struct sk_server *srv;
    long cpus;
    int err;

    if (cfg->handler == NULL)
        return -EINVAL;
    srv = calloc(1, sizeof(*srv));
    if (srv == NULL)
        return -ENOMEM;
    srv->cfg = *cfg;
    cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (srv->cfg.threads == 0)
        srv->cfg.threads = cpus > 0 ? (unsigned)cpus : 1;
    if (srv->cfg.output_max == 0)
        srv->cfg.output_max = SK_OUTPUT_MAX;
    if (srv->cfg.drain_ms == 0)
        srv->cfg.drain_ms = DRAIN_DEFAULT_MS;
    srv->nworkers = srv->cfg.threads;
    pthread_mutex_init(&srv->start_lock, NULL);
    pthread_cond_init(&srv->start_cond, NULL);
    err = sk_loop_new(&srv->control);
    if (err < 0)
        goto out_free;
    sk_loop_set_wake(srv->control, sk__server_control_wake, srv);
    sk_timer_init(&srv->drain_timer, on_drain_deadline);
    srv->drain_timer.data = srv;
    if ((err = sk__notify_setup(srv)) < 0)
        goto out_loop;
    if (srv->cfg.handle_signals && (err = start_signals(srv)) < 0)
        goto out_loop;
    *srvp = srv;
    return 0;

out_loop:
    sk_loop_free(srv->control);
out_free:
    pthread_cond_destroy(&srv->start_cond);
    pthread_mutex_destroy(&srv->start_lock);
    free(srv);
    return err;
}

int sk_server_set_single_worker(struct sk_server *srv)
{
    /* Listeners already bound have a socket per worker to be read. */
    if (srv->nlisteners > 0)
        return -EBUSY;
    srv->nworkers = 1;
    return 0;
}

void *sk_server_data(const struct sk_server *srv)
{
    return srv->cfg.data;
}

/* ------------------------------------------------------------ binding */

static void listener_release(struct sk_listener *l)
{
    for (size_t i = 0; i < l->nfds; i++)
        close(l->fds[i]);
    free(l->fds);
    sk_tls_free(l->tls);
    if (l->created_path != NULL)
        sk__unix_remove_file(l->created_path, l->created_dev, l->created_ino);
    free(l->created_path);
    *l = (struct sk_listener){0};
}

static int unix_listen(struct sk_server *srv, struct sk_listener *l,
                       const struct sk_addr *addr,
                       const struct sk_listen_options *o)
{
    const char *path = addr->u.un.sun_path;
    struct sk_unix_mode mode = {srv->cfg.unix_mode_set, srv->cfg.unix_mode};
    int fd;

    if (o->unix_mode_set) /* the endpoint's own mode= */
        mode = (struct sk_unix_mode){true, o->unix_mode};

    if (path[0] == '\0') {
        /* An abstract name has no file, hence no mode to give it. */
        if (mode.set)
            return -EINVAL;
        fd = sk__sock_bind(addr, l->socktype, 0, false, false);
        if (fd < 0)
            return fd;
        l->fds[l->nfds++] = fd;
        return sk__sock_listen(fd, l->socktype);
    }
    l->created_path = strdup(path);
    if (l->created_path == NULL)
        return -ENOMEM;
    fd = sk__unix_listen_file(path, l->socktype, &mode, &l->created_dev,
                              &l->created_ino);
    if (fd < 0) {
        free(l->created_path);
        l->created_path = NULL;
        return fd;
    }
    l->fds[l->nfds++] = fd;
    return 0;
}

/* Binds one socket per worker on addr, joined by SO_REUSEPORT. A first
 * bind without the option finds a port held by anyone else, which the
 * group would otherwise silently share. protocol: 0 or IPPROTO_MPTCP. */
static int inet_listen(struct sk_server *srv, struct sk_listener *l,
                       struct sk_addr *addr, int protocol, bool dual)
{
    bool group = srv->nworkers > 1;
    int port, fd, err;

    if (group) {
        port = sk__sock_probe(addr, l->socktype, protocol, dual);
        if (port < 0)
            return port;
        sk__sock_set_port(addr, (uint16_t)port);
    }
    for (unsigned i = 0; i < (group ? srv->nworkers : 1); i++) {
        fd = sk__sock_bind(addr, l->socktype, protocol, dual, group);
        if (fd < 0)
            return fd;
        l->fds[l->nfds++] = fd;
        err = sk__sock_listen(fd, l->socktype);
        if (err < 0)
            return err;
    }
    return 0;
}

static bool is_wildcard_any(const struct sk_endpoint *ep,
                            const struct sk_addr *addr)
{
    return (ep->scheme == SK_TCP || ep->scheme == SK_UDP ||
            ep->scheme == SK_MPTCP) &&
           ep->host[0] == '\0' && addr->u.sa.sa_family == AF_INET6;
}

/* Falls back from [::] to 0.0.0.0 where the system has no IPv6. */
static void use_ipv4_any(struct sk_addr *addr)
{
    uint16_t port = sk__sock_port(addr);

    *addr = (struct sk_addr){.len = sizeof(struct sockaddr_in)};
    addr->u.in.sin_family = AF_INET;
    addr->u.in.sin_port = htons(port);
    addr->u.in.sin_addr.s_addr = htonl(INADDR_ANY);
}

static int listen_addr(struct sk_server *srv, struct sk_listener *l,
                       const struct sk_endpoint *ep, struct sk_addr *addr,
                       const struct sk_listen_options *o)
{
    struct sk_addr local;
    bool dual = is_wildcard_any(ep, addr);
    int protocol = sk_endpoint_protocol(ep), err;

    l->socktype = sk_endpoint_socktype(ep);
    l->family = addr->u.sa.sa_family;
    l->fds = calloc(srv->nworkers, sizeof(int));
    if (l->fds == NULL)
        return -ENOMEM;
    if (sk_endpoint_is_unix(ep)) {
        l->ep = *ep;
        return unix_listen(srv, l, addr, o);
    }
    err = inet_listen(srv, l, addr, protocol, dual);
    if (err == -EAFNOSUPPORT && dual && l->nfds == 0) {
        use_ipv4_any(addr);
        l->family = AF_INET;
        err = inet_listen(srv, l, addr, protocol, false);
    }
    if (err < 0)
        return err;
    err = sk__sock_local(l->fds[0], &local);
    if (err == 0)
        err = sk_endpoint_from_addr(&l->ep, ep->scheme, &local);
    l->ep.tls = ep->tls;
    l->ep.proxy = ep->proxy;
    return err;
}

static int grow_listeners(struct sk_server *srv, size_t more)
{
    struct sk_listener *p;

    p = realloc(srv->listeners,
                (srv->nlisteners + more) * sizeof(*srv->listeners));
    if (p == NULL)
        return -ENOMEM;
    srv->listeners = p;
    return 0;
}

static void rollback(struct sk_server *srv, size_t first)
{
    while (srv->nlisteners > first)
        listener_release(&srv->listeners[--srv->nlisteners]);
}

/* ------------------------------------------------------------ adopting */

/* Whether fd is already a listener's of srv (bound here, or adopted). */
static bool server_holds(const struct sk_server *srv, int fd)
{
    for (size_t i = 0; i < srv->nlisteners; i++) {
        const struct sk_listener *l = &srv->listeners[i];
        if (l->inherited && l->inherited_fd == fd)
            return true;
        for (size_t j = 0; j < l->nfds; j++)
            if (l->fds[j] == fd)
                return true;
    }
    return false;
}

/* Adopts the socket at fd (a duplicate of it, with dup) as the next
 * listener, in the room made for it. On failure fd is as it was. */
static int adopt(struct sk_server *srv, const struct sk_endpoint *ep, int fd,
                 bool dup, struct sk_tls *tls)
{
    struct sk_listener *l = &srv->listeners[srv->nlisteners];
    int own, err;

    *l = (struct sk_listener){0};
    if ((err = sk__inherit_check(fd, l)) < 0)
        return err;
    /* TLS and the PROXY protocol need a byte stream. */
    if ((ep->tls || ep->proxy != SK_PROXY_NONE) && l->socktype != SOCK_STREAM)
        return -EPROTOTYPE;
    if (l->socktype == SOCK_DGRAM && srv->cfg.handler->on_datagram == NULL)
        return -EPROTONOSUPPORT;
    if ((l->fds = malloc(sizeof(*l->fds))) == NULL)
        return -ENOMEM;
    if ((own = sk__inherit_take(fd, dup)) < 0) {
        free(l->fds);
        return own;
    }
    l->fds[l->nfds++] = own;
    l->inherited = true;
    l->inherited_fd = fd;
    l->ep.tls = ep->tls;
    l->ep.proxy = ep->proxy;
    l->tls = tls != NULL ? sk__tls_ref(tls) : NULL;
    srv->nlisteners++;
    return 0;
}

static bool sd_match(const struct sk_endpoint *ep, size_t i)
{
    const char *name;

    sk__sd_fd(i, &name);
    return ep->host[0] == '\0' || strcmp(name, ep->host) == 0;
}

/* sd: every socket systemd passed, in order; sd:NAME those named NAME.
 * The passed descriptors stay the process's: each is adopted as a
 * duplicate. */
static int adopt_systemd(struct sk_server *srv, const struct sk_endpoint *ep,
                         struct sk_tls *tls)
{
    int count = sk__sd_count(), err;
    size_t matches = 0;
    const char *name;

    if (count < 0)
        return count;
    for (size_t i = 0; i < (size_t)count; i++)
        matches += sd_match(ep, i);
    if (matches == 0)
        return SK_ENOSDNAME;
    if ((err = grow_listeners(srv, matches)) < 0)
        return err;
    for (size_t i = 0; i < (size_t)count; i++)
        if (sd_match(ep, i) &&
            (err = adopt(srv, ep, sk__sd_fd(i, &name), true, tls)) < 0)
            return err;
    return 0;
}

/* fd:N takes N itself, unless something holds it already: a listener of
 * this server, or systemd's sockets kept for sd:. */
static int adopt_endpoint(struct sk_server *srv, const struct sk_endpoint *ep,
                          struct sk_tls *tls)
{
    size_t first = srv->nlisteners;
    bool dup;
    int err;

    if (ep->scheme == SK_SD) {
        err = adopt_systemd(srv, ep, tls);
    } else if ((err = grow_listeners(srv, 1)) == 0) {
        dup = server_holds(srv, ep->fd) || sk__sd_holds(ep->fd);
        err = adopt(srv, ep, ep->fd, dup, tls);
    }
    if (err < 0)
        rollback(srv, first);
    return err;
}

static int listen_endpoint(struct sk_server *srv, const struct sk_endpoint *ep,
                           const struct sk_listen_options *o,
                           struct sk_endpoint *failed);

int sk_server_listen(struct sk_server *srv, const struct sk_endpoint *ep,
                     struct sk_endpoint *failed)
{
    return sk_server_listen_with(srv, ep, NULL, failed);
}

int sk_server_listen_tls(struct sk_server *srv, const struct sk_endpoint *ep,
                         struct sk_tls *tls, struct sk_endpoint *failed)
{
    struct sk_listen_options o = {.tls = tls};

    if (tls == NULL)
        return -EINVAL;
    return sk_server_listen_with(srv, ep, &o, failed);
}

int sk_server_listen_with(struct sk_server *srv, const struct sk_endpoint *ep,
                          const struct sk_listen_options *o,
                          struct sk_endpoint *failed)
{
    static const struct sk_listen_options none;

    if (failed != NULL)
        *failed = *ep; /* refined to the address that failed, if one did */
    if (atomic_load(&srv->run_state) != 0)
        return -EBUSY; /* the workers and counters are made for a run */
    if (o == NULL)
        o = &none;
    if (ep->tls != (o->tls != NULL))
        return -EINVAL;
    if (o->tls != NULL &&
        (!sk__tls_listening(o->tls) || !sk_endpoint_is_stream(ep)))
        return -EINVAL;
    if (o->unix_mode_set && (!sk_endpoint_is_unix(ep) || ep->path[0] == '@'))
        return -EINVAL;
    return listen_endpoint(srv, ep, o, failed);
}

static int listen_endpoint(struct sk_server *srv, const struct sk_endpoint *ep,
                           const struct sk_listen_options *o,
                           struct sk_endpoint *failed)
{
    struct sk_tls *tls = o->tls;

    struct sk_addr addrs[RESOLVE_MAX];
    size_t first = srv->nlisteners;
    uint16_t port = ep->port;
    int n, err;

    if (sk_endpoint_socktype(ep) == SOCK_DGRAM &&
        srv->cfg.handler->on_datagram == NULL)
        return -EPROTONOSUPPORT;
    if (failed != NULL)
        *failed = *ep;
    if (sk__endpoint_inherited(ep))
        return adopt_endpoint(srv, ep, tls);
    n = sk_endpoint_resolve(ep, true, addrs, RESOLVE_MAX);
    if (n < 0)
        return n;
    if ((err = grow_listeners(srv, (size_t)n)) < 0)
        return err;
    for (int i = 0; i < n; i++) {
        struct sk_listener *l = &srv->listeners[srv->nlisteners++];

        *l = (struct sk_listener){0};
        /* Every address of one name shares the port the first one got. */
        if (!sk_endpoint_is_unix(ep))
            sk__sock_set_port(&addrs[i], port);
        err = listen_addr(srv, l, ep, &addrs[i], o);
        if (err < 0) {
            if (failed != NULL)
                sk_endpoint_from_addr(failed, ep->scheme, &addrs[i]);
            rollback(srv, first);
            return err;
        }
        port = l->ep.port;
        l->tls = tls != NULL ? sk__tls_ref(tls) : NULL;
    }
    return 0;
}

int sk_server_set_owner(struct sk_server *srv, uid_t uid, gid_t gid)
{
    struct stat st;

    for (size_t i = 0; i < srv->nlisteners; i++) {
        const struct sk_listener *l = &srv->listeners[i];
        /* Only the file this server made, if it is still that file. */
        if (l->created_path == NULL || lstat(l->created_path, &st) < 0 ||
            st.st_dev != l->created_dev || st.st_ino != l->created_ino)
            continue;
        if (fchownat(AT_FDCWD, l->created_path, uid, gid, AT_SYMLINK_NOFOLLOW) <
            0)
            return -errno;
    }
    return 0;
}

size_t sk_server_listener_count(const struct sk_server *srv)
{
    return srv->nlisteners;
}

int sk_server_listener_endpoint(const struct sk_server *srv, size_t i,
                                struct sk_endpoint *ep)
{
    if (i >= srv->nlisteners)
        return -EINVAL;
    *ep = srv->listeners[i].ep;
    return 0;
}

void sk_server_free(struct sk_server *srv)
{
    if (srv == NULL)
        return;
    for (size_t i = 0; i < srv->nlisteners; i++)
        listener_release(&srv->listeners[i]);
    free(srv->listeners);
    sk_loop_free(srv->control);
    free(atomic_load(&srv->counters));
    pthread_cond_destroy(&srv->start_cond);
    pthread_mutex_destroy(&srv->start_lock);
    free(srv);
}
