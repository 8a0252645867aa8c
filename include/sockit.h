/* sockit.h -- the whole public API of libsockit: byte buffers, line framing,
 * endpoints, the event loop and the server framework.
 *
 * Conventions: functions that act return an int, >= 0 on success and a
 * negative errno (or one of the SK_EAI_* codes below) on failure; predicates
 * return bool. Nothing here prints or exits. Names are sk_<module>_<verb>.
 * A limit or a timeout of 0 means none, everywhere (a negative int timeout
 * too); a zero field of a config struct means its default.
 *
 * Threads: a loop, and everything started on it (watchers, timers,
 * connectors, pairs), belongs to the thread that runs it; only
 * sk_loop_wake(), sk_loop_post(), sk_server_stop() and
 * sk_server_stop_listening() may be called from other threads. A server's
 * connections and datagrams belong to the worker that received them: sk_conn_*
 * and sk_dgram_* are called from that worker's callbacks (the handler's, or
 * those of watchers and timers started on sk_conn_loop() / sk_dgram_loop()),
 * never from elsewhere; to hand work to a worker, sk_loop_post() to its loop.
 *
 * Peer bytes and peer names are the peer's choice: formatted names escape
 * what is not printable (see sk_endpoint_format()), nothing else is
 * trusted. SECURITY.md says what sockit trusts.
 */
#ifndef SOCKIT_H
#define SOCKIT_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The version this header is of; sk_version() is the one of the library
 * actually loaded. Before 1.0, each minor version has an ABI of its own:
 * its symbols carry the version node SOCKIT_0.MINOR, and a program built
 * against another minor version fails to load instead of misreading a
 * struct; from 1.0 on, the same MAJOR will mean the same ABI. */
#define SK_VERSION_MAJOR 0
#define SK_VERSION_MINOR 2
#define SK_VERSION_PATCH 0
#define SK_VERSION "0.2.0"
/* "MAJOR.MINOR.PATCH" of the library; a static string. */
const char *sk_version(void);

/* ---------------------------------------------------------------- errors */

/* Name resolution failures, translated once from getaddrinfo(). */
#define SK_EAI_NONAME (-3001) /* name or service not known */
#define SK_EAI_AGAIN (-3002)  /* temporary failure in name resolution */
#define SK_EAI_FAIL (-3003)   /* non-recoverable failure in name resolution */
#define SK_EAI_FAMILY (-3004) /* no address of the requested family */
#define SK_EAI_OTHER (-3005)  /* any other resolver failure */
/* A path exists and is not a socket: sockit never replaces it. */
#define SK_ENOTSOCKFILE (-3010)
/* fd:N names a socket that is not listening (connected, or never bound). */
#define SK_ENOTLISTENING (-3011)
/* sd: found no socket passed by systemd (none, or LISTEN_PID not ours). */
#define SK_ENOSDSOCKETS (-3012)
/* sd:NAME: systemd passed sockets, none of them named NAME. */
#define SK_ENOSDNAME (-3013)
/* mptcp://: the kernel has no multipath TCP. */
#define SK_ENOMPTCP (-3014)
/* PROXY protocol: a header that is malformed, too long or of the wrong
 * version; the connection is closed. */
#define SK_EPROXY (-3015)
/* A peer refused by --allow/--deny or past --max-per-source. */
#define SK_EREFUSED (-3016)

/* Returns a lower-case description of any error code returned by libsockit,
 * e.g. "address in use" for -EADDRINUSE. Never NULL. */
const char *sk_strerror(int err);

/* ---------------------------------------------------------------- buffers */

/* A growable byte buffer. The bytes are data[off .. off+len); the caller
 * owns the struct, the buffer owns data. Consuming from the front is O(1). */
struct sk_buf {
    char *data;
    size_t off;
    size_t len;
    size_t cap;
};

void sk_buf_init(struct sk_buf *buf);
/* Frees data and leaves buf empty; NULL-safe. */
void sk_buf_release(struct sk_buf *buf);
/* Makes room for n more bytes at the end. Returns 0 or -ENOMEM. */
int sk_buf_reserve(struct sk_buf *buf, size_t n);
/* Copies n bytes to the end. Returns 0 or -ENOMEM. */
int sk_buf_append(struct sk_buf *buf, const void *p, size_t n);
/* Drops n (<= len) bytes from the front. */
void sk_buf_consume(struct sk_buf *buf, size_t n);
/* The first byte held, and the end where sk_buf_reserve() made room. */
static inline char *sk_buf_head(const struct sk_buf *buf)
{
    return buf->data + buf->off;
}
static inline char *sk_buf_tail(const struct sk_buf *buf)
{
    return buf->data + buf->off + buf->len;
}

/* ---------------------------------------------------------- line framing */

/* Splits a byte stream into LF-terminated lines with a length limit.
 * A line is passed to the callback without its LF (a CR stays). Only the
 * unterminated tail is copied between calls; complete lines are passed
 * straight from the caller's data, except after a pause (below). */
struct sk_lines {
    struct sk_buf partial; /* the partial line; at a pause, the kept bytes */
    size_t max;            /* longest line accepted, LF excluded */
    bool paused;
};

/* Called once per line; a non-zero return stops the feed and is returned. */
typedef int (*sk_line_fn)(void *ctx, const char *line, size_t len);

/* A line callback returns SK_LINES_PAUSE to stop the feed after the line it
 * was given, e.g. because the connection's output passed its limit: the
 * bytes not yet split are kept in the struct (a copy, at most one feed's
 * worth plus the partial line) and sk_lines_resume() passes them on later,
 * typically from on_drain. While paused, sk_lines_feed() only keeps (and
 * returns SK_LINES_PAUSE): hold the input meanwhile, as nothing bounds what
 * is kept then. Line limits are checked as the kept bytes are split. */
#define SK_LINES_PAUSE 1

void sk_lines_init(struct sk_lines *lines, size_t max);
void sk_lines_release(struct sk_lines *lines);
/* Feeds len bytes. Returns 0, SK_LINES_PAUSE (the rest kept), the
 * callback's other non-zero value, -EMSGSIZE if a line grows longer than
 * max, or -ENOMEM. */
int sk_lines_feed(struct sk_lines *lines, const char *data, size_t len,
                  sk_line_fn fn, void *ctx);
/* Passes on the bytes kept at a pause, as sk_lines_feed() would. Returns as
 * sk_lines_feed(); 0 also when nothing was kept. */
int sk_lines_resume(struct sk_lines *lines, sk_line_fn fn, void *ctx);
/* Keeps len bytes without splitting them, as a pause would, and pauses the
 * feed: for a caller that must not act on any line now (a chat room still
 * full). Returns 0 or -ENOMEM. */
int sk_lines_keep(struct sk_lines *lines, const char *data, size_t len);
/* True between a pause and the resume that passed every kept byte on. */
bool sk_lines_paused(const struct sk_lines *lines);
/* Passes a last unterminated piece, if any, as a line (at end of input).
 * Kept bytes of a pause are passed first; SK_LINES_PAUSE may be returned
 * again, and then sk_lines_finish() is called again after the resume. */
int sk_lines_finish(struct sk_lines *lines, sk_line_fn fn, void *ctx);

/* ------------------------------------------------------------- endpoints */

enum sk_scheme {
    SK_TCP = 1,
    SK_TCP4,
    SK_TCP6,
    SK_UDP,
    SK_UDP4,
    SK_UDP6,
    SK_UNIX,
    SK_UNIXGRAM,
    SK_UNIXPACKET, /* AF_UNIX SOCK_SEQPACKET: connections that keep
                      message boundaries; a path or @name as unix: */
    SK_MPTCP,      /* TCP with IPPROTO_MPTCP; hosts as tcp:// */
    SK_MPTCP4,
    SK_MPTCP6,
    /* Sockets that exist already, listening only: sk_server_listen()
     * adopts them and reads their kind from the socket itself. */
    SK_FD, /* "fd:N": the socket at descriptor N (0..INT_MAX) in fd */
    SK_SD, /* "sd:" every socket systemd passed (LISTEN_FDS), "sd:NAME"
              those named NAME (FileDescriptorName=): in host, at most
              255 bytes of printable ASCII without ':' */
};

/* Longest host: a DNS name is at most 253 characters. */
#define SK_HOST_MAX 256
/* A UNIX path or "@name" fits sun_path (108 bytes with the NUL or the
 * abstract name's leading zero byte), plus the '@' and a NUL. */
#define SK_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) + 1)
/* Longest canonical endpoint string, with its NUL (every path byte may
 * be escaped as \xNN). */
#define SK_ENDPOINT_STRLEN (32 + SK_HOST_MAX + 4 * SK_PATH_MAX)

/* The PROXY protocol header a stream endpoint expects (listening) or
 * sends (connecting): HAProxy's version 1 (text), 2 (binary), or either. */
enum sk_proxy {
    SK_PROXY_NONE = 0,
    SK_PROXY_V1,
    SK_PROXY_V2,
    SK_PROXY_ANY,
};

/* A parsed endpoint: plain data, owned by the caller. It keeps the options
 * that change the protocol spoken (tls, proxy=); the others are in a
 * struct sk_endpoint_options (below). */
struct sk_endpoint {
    enum sk_scheme scheme;
    char host[SK_HOST_MAX]; /* name or numeric; IPv6 without brackets;
                               "" means any address (listening only) */
    uint16_t port;
    char path[SK_PATH_MAX]; /* UNIX: a path, or "@name" for abstract */
    uint8_t path_len;       /* bytes of path when an abstract name holds
                               NUL bytes; 0: path is a C string */
    bool tls;               /* ",tls" or the tls:// schemes */
    uint8_t proxy;          /* enum sk_proxy */
    int fd;                 /* SK_FD: the descriptor */
};

/* The options of an endpoint string ("ENDPOINT,NAME=VALUE,..."): which were
 * given (SK_OPT_* bits) and their values, as C strings. tls and proxy= are
 * kept in the struct sk_endpoint itself, and flagged here too. */
#define SK_OPT_TLS 0x001u
#define SK_OPT_CERT 0x002u
#define SK_OPT_KEY 0x004u
#define SK_OPT_CA 0x008u
#define SK_OPT_VERIFY 0x010u /* verify=none */
#define SK_OPT_SNI 0x020u
#define SK_OPT_ALPN 0x040u
#define SK_OPT_PROXY 0x080u
#define SK_OPT_MODE 0x100u
/* Longest option value, file names included, without its NUL. */
#define SK_OPTION_MAX 1023

struct sk_endpoint_options {
    unsigned given;
    char cert[SK_OPTION_MAX + 1]; /* PEM chain */
    char key[SK_OPTION_MAX + 1];  /* PEM key; "": in the cert file */
    char ca[SK_OPTION_MAX + 1];   /* PEM CA bundle */
    char sni[SK_HOST_MAX];        /* server name (connecting) */
    char alpn[256];               /* "h2:http/1.1" */
    unsigned mode;                /* UNIX socket file mode, octal */
};

/* A socket address of any family sockit speaks. */
struct sk_addr {
    socklen_t len;
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
        struct sockaddr_un un;
        struct sockaddr_storage ss;
    } u;
};

/* Parses "tcp://host:port", "udp6://[::1]:53", "unix:/path", "unix:@name",
 * "unixpacket:/path", "mptcp://host:port", "fd:3", "sd:", "sd:web"...
 * In a UNIX path (and a systemd name), "\\\\", "\\," and "\\xNN" stand for a
 * backslash, a comma and any byte (NUL, "\\x00", in an abstract name only). No
 * DNS, no allocation. Returns 0, or -EINVAL / -ERANGE / -ENAMETOOLONG with *why
 * (if not NULL) set to a static phrase naming the wrong part, e.g. "port out of
 * range 0..65535". *ep is untouched on failure.
 */
int sk_endpoint_parse(struct sk_endpoint *ep, const char *text,
                      const char **why);
/* Parses an endpoint and its options: "tcp://:8443,tls,cert=a.pem",
 * "tls://host:443,sni=name,alpn=h2:http/1.1", "unix:/run/a\\,b.sock,tls".
 * tls://, tls4:// and tls6:// are tcp with tls. In a value, "\\," and
 * "\\\\" stand for a comma and a backslash. Checks each option's value,
 * not whether it applies (see sk_endpoint_check_options()). Errors as
 * sk_endpoint_parse(); *why may also point to a per-thread buffer that
 * names the option ("unknown endpoint option \"crt\""), valid until the
 * thread's next call. opts may be NULL: then only tls and proxy= are
 * accepted. *ep and *opts are untouched on failure. */
int sk_endpoint_parse_options(struct sk_endpoint *ep,
                              struct sk_endpoint_options *opts,
                              const char *text, const char **why);
/* Checks that every option given applies to this kind of endpoint and to
 * this side (listening or connecting), and that what TLS needs is there
 * (cert= to listen). Returns 0 or -EINVAL with *why as above. */
int sk_endpoint_check_options(const struct sk_endpoint *ep,
                              const struct sk_endpoint_options *opts,
                              bool listening, const char **why);
/* Writes the canonical form into out: a UNIX path with its non-printable
 * bytes (and those of 0x7f and above) as \xNN and a backslash or comma
 * escaped, so that a peer's name is always one printable word. Returns its
 * length, -ENOSPC, or -EINVAL. SK_ENDPOINT_STRLEN always suffices. The
 * options kept are tls (tls:// for TCP, ",tls" otherwise) and proxy=.
 * fd: and sd: as given ("fd:3", "sd:", "sd:web"); once adopted, a server's
 * listeners show what the socket is (sk_server_listener_endpoint()). */
int sk_endpoint_format(const struct sk_endpoint *ep, char *out, size_t size);
/* SOCK_STREAM, SOCK_DGRAM or SOCK_SEQPACKET (unixpacket); 0 for fd: and
 * sd:, whose type is known once adopted (0 makes socket() fail rather
 * than guess). */
int sk_endpoint_socktype(const struct sk_endpoint *ep);
/* AF_UNIX, AF_INET, AF_INET6, or AF_UNSPEC for "tcp://", "udp://",
 * "mptcp://", fd: and sd:. */
int sk_endpoint_family(const struct sk_endpoint *ep);
/* The protocol for socket(): IPPROTO_MPTCP for mptcp, else 0. */
int sk_endpoint_protocol(const struct sk_endpoint *ep);
/* unix:, unixgram:, unixpacket: (fd: and sd: are not, until adopted). */
bool sk_endpoint_is_unix(const struct sk_endpoint *ep);
/* Connection-oriented: TCP, MPTCP, unix: and unixpacket: (which keeps
 * message boundaries, unlike a byte stream); fd: and sd: too, taken for
 * streams until adopted, when sk_server_listen() checks the socket. */
bool sk_endpoint_is_stream(const struct sk_endpoint *ep);
/* Resolves ep into at most max addresses. passive: for listening (an empty
 * host means every interface). Returns the count (>= 1) or a negative code;
 * -EINVAL for fd: and sd:, which are adopted, never resolved. */
int sk_endpoint_resolve(const struct sk_endpoint *ep, bool passive,
                        struct sk_addr *addrs, size_t max);
/* Fills ep from a socket address, numerically, keeping the given scheme
 * (any but SK_FD and SK_SD: -EINVAL) unless it is of the other family (an
 * IPv4 address, or an IPv4-mapped one, with tcp6, udp6 or mptcp6; an IPv6
 * address with tcp4, udp4 or mptcp4), where ep takes the scheme of both
 * (tcp, udp, mptcp), so that its text parses. Returns 0 or -EAFNOSUPPORT.
 * An unnamed UNIX address gives path "". */
int sk_endpoint_from_addr(struct sk_endpoint *ep, enum sk_scheme scheme,
                          const struct sk_addr *addr);
/* sk_strerror(err) with what only ep and this process know, for an error
 * of sk_server_listen() (or any other: then it is sk_strerror(err)): for
 * sd: why systemd's sockets are not there ("no sockets passed by systemd
 * (LISTEN_PID 123 is not this process)"), for sd:NAME the name and the
 * names passed, for fd:N the descriptor ("not a socket (fd:3)"). Writes
 * one line (NUL-terminated, cut to size) into out and returns out;
 * sk_strerror(err) when size is 0. Thread-safe. */
const char *sk_endpoint_strerror(const struct sk_endpoint *ep, int err,
                                 char *out, size_t size);

/* ------------------------------------------------------------------ TLS */

/* A TLS context (OpenSSL 3, TLS 1.2 and 1.3): the certificates, keys and
 * settings of one endpoint, shared by all its connections and by every
 * thread. Reference-counted: a connection keeps the context it started
 * with, across reloads and after sk_tls_free(). */
struct sk_tls;

/* Room for a one-line TLS error. */
#define SK_TLS_ERRLEN 256

/* Makes a context from an endpoint's options and reads every file now.
 * listening: cert= (and key=, default the cert file) is the server's
 * certificate; ca= makes clients present one signed by it (mutual TLS);
 * alpn= lists the protocols accepted. Connecting: the server is verified
 * (chain and name) against ca= or the system store unless verify=none,
 * under the name sni= or else the endpoint's host (an IP literal is
 * verified as an address and sent as no SNI); cert=/key= are a client
 * certificate; alpn= is offered; sessions are resumed (see below).
 * Returns 0 or a negative code with one line in err (if errlen > 0), e.g.
 * "a.pem: no such file or directory" or "key does not match the
 * certificate". */
int sk_tls_new(struct sk_tls **tlsp, const struct sk_endpoint *ep,
               const struct sk_endpoint_options *opts, bool listening,
               char *err, size_t errlen);
/* Reads the files again; connections from now on use the new ones. On
 * failure the old ones stay, and err says why. Any thread. */
int sk_tls_reload(struct sk_tls *tls, char *err, size_t errlen);
/* Connecting side: offer the last session for resumption (default on).
 * Off, every connection makes a full handshake. */
void sk_tls_set_resume(struct sk_tls *tls, bool resume);
/* Drops the caller's reference. NULL-safe. */
void sk_tls_free(struct sk_tls *tls);

/* ------------------------------------------------------- PROXY protocol */

/* HAProxy's PROXY protocol (version 1, text, and 2, binary): a header a
 * proxy sends first on a connection, carrying the client's addresses. */

/* Longest version 1 header, "PROXY ... \r\n" included. */
#define SK_PROXY_V1_MAX 107
/* Longest version 2 header accepted (16 bytes and the length field's
 * addresses and TLVs); a longer one is refused as oversized. */
#define SK_PROXY_V2_MAX 4096
/* Room enough for any header sockit formats (v2 with UNIX addresses). */
#define SK_PROXY_HEADER_MAX 240

struct sk_proxy_header {
    unsigned version; /* 1 or 2 */
    /* No addresses to believe: v1 "PROXY UNKNOWN", v2 LOCAL, or v2 PROXY
     * of family or transport UNSPEC. The connection keeps its own. */
    bool local;
    int socktype;            /* SOCK_STREAM or SOCK_DGRAM (v2 only) */
    struct sk_addr src, dst; /* AF_INET, AF_INET6 or AF_UNIX; unless local */
};

/* Parses the header at the start of buf[0..len), of the version(s) expect
 * allows (SK_PROXY_V1, SK_PROXY_V2 or SK_PROXY_ANY). Reads nothing past
 * the header, allocates nothing, keeps no state: call it again with more
 * bytes. Returns the header's length (> 0; the bytes after it are the
 * client's), 0 if len bytes are a valid beginning of a header and more are
 * needed, or SK_EPROXY (*why, if not NULL, set to a static phrase such as
 * "v1 header longer than 107 bytes") for anything else: a malformed or
 * oversized header, one of a version not expected, or a v2 header whose
 * CRC32C TLV (PP2_TYPE_CRC32C) is wrong. Other TLVs are skipped. */
int sk_proxy_parse(const void *buf, size_t len, enum sk_proxy expect,
                   struct sk_proxy_header *hdr, const char **why);
/* Writes a header of version (SK_PROXY_V1 or SK_PROXY_V2) carrying src and
 * dst, which must be of one family; NULL (or a family v1 cannot carry:
 * UNIX) makes v1 "PROXY UNKNOWN" and v2 LOCAL. socktype is v2's transport
 * byte. Returns the length written or -ENOSPC (SK_PROXY_HEADER_MAX always
 * suffices), -EINVAL. */
int sk_proxy_format(enum sk_proxy version, int socktype,
                    const struct sk_addr *src, const struct sk_addr *dst,
                    void *out, size_t size);

/* A header is at most a few hundred bytes: a socket just connected takes
 * it at once; SK_PROXY_SEND_MS bounds the wait of one that does not. */
#define SK_PROXY_SEND_MS 100
/* Sends, on a connected stream socket, a header carrying its own addresses
 * (its local address as the source, its peer as the destination): what a
 * client of a proxy= listener sends first (sk_send_all(), within
 * SK_PROXY_SEND_MS). Returns 0 or a negative errno. */
int sk_proxy_send(int fd, enum sk_proxy version);

/* -------------------------------------------------------- access control */

/* Rules on who a server serves: --allow and --deny. Built before the
 * server starts, then read by every worker at once (read-only). */
struct sk_access;

/* The credentials of a UNIX stream peer (SO_PEERCRED, taken when the
 * connection was accepted): what the kernel vouches for, unlike names. */
struct sk_peer_cred {
    pid_t pid;
    uid_t uid;
    gid_t gid;
};

/* An empty list: everyone is served. Returns 0 or -ENOMEM. */
int sk_access_new(struct sk_access **ap);
/* Adds a rule: an address or CIDR block ("10.0.0.0/8", "::1/128",
 * "127.0.0.1", "::ffff:10.0.0.0/104"), or "uid:N" / "gid:N" matching the
 * credentials of UNIX peers. allow: served; else refused. Returns 0,
 * -ENOMEM, or -EINVAL with *why (if not NULL) a static phrase ("prefix
 * length out of range 0..32"). A block with bits set past its prefix
 * ("10.0.0.1/8") is refused, not masked. An IPv4 client is the same
 * whatever socket it came through: an IPv4-mapped IPv6 peer matches
 * IPv4 rules, an IPv4 peer IPv4-mapped rules; other IPv6 rules (::/0
 * too) match IPv6 peers that are not IPv4-mapped only. gid:N matches the
 * peer's primary group (SO_PEERCRED's). */
int sk_access_add(struct sk_access *a, bool allow, const char *rule,
                  const char **why);
/* Whether a peer is served: a deny rule that matches refuses it; then, if
 * there is any allow rule, only a peer one of them matches is served,
 * whatever its kind: "--allow 10.0.0.0/8" alone refuses the clients of a
 * UNIX socket too (add "uid:N" or "gid:N" rules for them). CIDR rules
 * match IP peers, uid:/gid: rules UNIX peers with credentials. cred: a
 * UNIX peer's credentials, or NULL (uid:/gid: rules never match then).
 * An unnamed UNIX address matches no CIDR. a NULL: everyone is served. */
bool sk_access_permits(const struct sk_access *a, const struct sk_addr *peer,
                       const struct sk_peer_cred *cred);
/* NULL-safe. */
void sk_access_free(struct sk_access *a);

/* ------------------------------------------------------------ event loop */

struct sk_loop;
struct sk_io;
struct sk_timer;

#define SK_READ 1u
#define SK_WRITE 2u

/* Readiness callback: events holds SK_READ and/or SK_WRITE (errors and
 * hang-ups are reported as both, so the next read or write tells why). */
typedef void (*sk_io_fn)(struct sk_io *io, unsigned events);
typedef void (*sk_timer_fn)(struct sk_timer *timer);

/* A watcher on one descriptor, embedded in the object that owns the fd.
 * Fields are private; data is the caller's. */
struct sk_io {
    struct sk_loop *loop;
    int fd;
    unsigned events;
    unsigned flags;
    sk_io_fn cb;
    void *data;
};

/* A one-shot or repeating timer, embedded in its owner. Private fields. */
struct sk_timer {
    struct sk_loop *loop;
    uint64_t due;
    uint64_t repeat;
    size_t slot; /* index in the loop's heap, or SIZE_MAX when stopped */
    sk_timer_fn cb;
    void *data;
};

/* Creates a loop on epoll. */
int sk_loop_new(struct sk_loop **loopp);
/* The system's poller under a loop. */
enum sk_backend {
    SK_BACKEND_DEFAULT, /* epoll */
    SK_BACKEND_EPOLL,
    /* readiness through io_uring poll requests; a plain stream
     * connection's input and short replies through the ring */
    SK_BACKEND_IO_URING,
};
/* As sk_loop_new(), on backend. Where io_uring cannot be set up (no such
 * system call, disabled by kernel.io_uring_disabled, an old kernel), the
 * loop is made on epoll: then *why (unless why is NULL) is the negative
 * errno of io_uring's setup, else 0. Watchers behave the same on both:
 * level-triggered, callbacks on the loop's thread. An io_uring loop takes
 * as its only submitter the first thread that runs it (or submits). */
int sk_loop_new_backend(struct sk_loop **loopp, enum sk_backend backend,
                        int *why);
/* The backend the loop runs on: SK_BACKEND_EPOLL or SK_BACKEND_IO_URING. */
enum sk_backend sk_loop_backend(const struct sk_loop *loop);
/* Frees the loop; watchers and timers must be stopped first. NULL-safe. */
void sk_loop_free(struct sk_loop *loop);
/* Runs until sk_loop_stop(). Returns 0 or a negative errno from the poll. */
int sk_loop_run(struct sk_loop *loop);
/* Makes sk_loop_run() return after the current iteration; called while no
 * run is going on (by a callback that ran before it), makes the next run
 * return at once. Loop thread only; from another thread use sk_loop_wake()
 * in a wake-up callback. */
void sk_loop_stop(struct sk_loop *loop);
/* Milliseconds on the monotonic clock, read once per iteration. */
uint64_t sk_loop_now(const struct sk_loop *loop);
/* Called on the loop's thread just before each wait for events: the place to
 * flush work gathered during the iteration. One hook per loop. */
void sk_loop_set_prepare(struct sk_loop *loop, void (*fn)(void *), void *arg);
/* Calls fn(arg) on the loop's thread soon; safe from any thread and from
 * signal handlers. One wake-up callback per loop, set before sk_loop_run(). */
void sk_loop_set_wake(struct sk_loop *loop, void (*fn)(void *), void *arg);
void sk_loop_wake(struct sk_loop *loop);
/* Hands fn(arg) to the loop's thread: calls run there in the order posted,
 * within the next iteration. Safe from any thread (not from a signal
 * handler: it takes a lock and allocates). Returns 0 or -ENOMEM. Calls
 * still queued when the loop stops for good are dropped without running,
 * arg with them: whoever posts owns arg until fn runs. The way to give
 * work to a server's worker: its loop (sk_conn_loop(), sk_dgram_loop())
 * lives while sk_server_run() runs, not after; and a connection the
 * caller knew may have closed by the time fn runs, so fn looks it up in
 * state the worker keeps (cleared in on_close) rather than trust a
 * pointer taken earlier. */
int sk_loop_post(struct sk_loop *loop, void (*fn)(void *), void *arg);

/* Starts watching fd for events (SK_READ | SK_WRITE). exclusive: wake only
 * one of the loops sharing this fd (EPOLLEXCLUSIVE); such a watcher can only
 * be stopped, not changed. Returns 0 or a negative errno. */
int sk_io_start(struct sk_loop *loop, struct sk_io *io, int fd, unsigned events,
                bool exclusive, sk_io_fn cb);
/* Changes the events watched; 0 keeps the fd registered but silent. */
int sk_io_set(struct sk_io *io, unsigned events);
/* Stops watching; the fd stays open. Safe on a stopped watcher. */
void sk_io_stop(struct sk_io *io);
bool sk_io_is_active(const struct sk_io *io);

void sk_timer_init(struct sk_timer *timer, sk_timer_fn cb);
/* Fires after ms, then every repeat ms (0: once). Restarts a running timer.
 * Returns 0 or -ENOMEM. */
int sk_timer_start(struct sk_loop *loop, struct sk_timer *timer, uint64_t ms,
                   uint64_t repeat);
void sk_timer_stop(struct sk_timer *timer);

/* A signal delivered through the loop (signalfd): the callback runs on the
 * loop's thread like any other event. Private fields. */
struct sk_signal {
    struct sk_loop *loop;
    int signo;
    void (*cb)(struct sk_signal *sig);
    void *data;
    struct sk_signal *next;
};

/* Routes signo to cb. The signal is blocked in the calling thread; block it
 * in every other thread too (threads inherit the mask of their creator, so
 * start signals before threads). Returns 0 or a negative errno. */
int sk_signal_start(struct sk_loop *loop, struct sk_signal *sig, int signo,
                    void (*cb)(struct sk_signal *sig));
/* Stops routing; the signal stays blocked. */
void sk_signal_stop(struct sk_signal *sig);

/* --------------------------------------------------------------- clients */

/* Connects to ep, trying each address it resolves to within timeout_ms in
 * all (0: no limit), with a socket of ep's kind (mptcp: IPPROTO_MPTCP, or
 * SK_ENOMPTCP where the kernel has none; unixpacket: SOCK_SEQPACKET). A
 * datagram socket is connected too, so that replies from others are dropped and
 * refusals are reported; a UNIX datagram socket first gets an address of its
 * own (Linux autobind) so that replies can reach it. Returns a non-blocking,
 * close-on-exec descriptor, or -ECONNREFUSED, -ETIMEDOUT, -ENETUNREACH,
 * -ENOENT, SK_EAI_NONAME... Blocks; see sk_connector_start() for the loop. */
int sk_connect(const struct sk_endpoint *ep, int timeout_ms);
/* As sk_connect(), to addresses resolved already (with sockets of socktype
 * and protocol, as sk_endpoint_socktype() and sk_endpoint_protocol() give
 * them): the first of n that accepts. A datagram socket never waits. */
int sk_connect_addrs(const struct sk_addr *addrs, size_t n, int socktype,
                     int protocol, int timeout_ms);
/* As sk_connect(), from source (an address of the same family as the
 * addresses tried, bound before connecting: an IP address with port 0 for
 * any, a UNIX path, which is then made and left for the caller to remove,
 * or an abstract name; NULL: none, as sk_connect()). Addresses of ep of
 * another family are skipped (-EAFNOSUPPORT when none is left); a failed
 * bind is its errno (-EADDRINUSE, -EADDRNOTAVAIL...). */
int sk_connect_from(const struct sk_endpoint *ep, const struct sk_addr *source,
                    int timeout_ms);
/* Sends all len bytes, waiting at most timeout_ms for room each time the
 * socket is full (0: no limit). Returns 0 or a negative errno. */
int sk_send_all(int fd, const void *data, size_t len, int timeout_ms);
/* Receives up to len bytes, waiting at most timeout_ms (0: no limit).
 * Returns the count, 0 at the end of the stream, -ETIMEDOUT or another
 * negative errno. */
ssize_t sk_recv_timeout(int fd, void *buf, size_t len, int timeout_ms);

/* Addresses tried per connection. */
#define SK_CONNECT_ADDRS 8

struct sk_connector;
/* fd: the connected, non-blocking descriptor (now the callee's), or a
 * negative code for the last address tried. */
typedef void (*sk_connect_fn)(struct sk_connector *cn, int fd);

/* An outbound connection in progress on a loop; fields are private. */
struct sk_connector {
    struct sk_io io;
    struct sk_timer timer;
    struct sk_addr addrs[SK_CONNECT_ADDRS];
    size_t naddrs, next;
    int socktype;
    int protocol;
    int last_err;
    int result; /* known inside the start, given to cb just after */
    bool has_result;
    bool starting;
    sk_connect_fn cb;
    void *data;
    struct sk_addr source; /* with has_source: bound before connecting */
    bool has_source;
};

/* Starts connecting to the first of n addresses (then the next on failure)
 * with a socket of socktype, for at most timeout_ms in all (0: no limit).
 * cb runs exactly once, on the loop's thread, unless cancelled, and never
 * before this returns (when the outcome is known at once, as for UNIX
 * sockets and datagrams, in the loop's next iteration). Returns 0, or a
 * negative code (and cb never runs). */
int sk_connector_start(struct sk_loop *loop, struct sk_connector *cn,
                       const struct sk_addr *addrs, size_t n, int socktype,
                       unsigned timeout_ms, sk_connect_fn cb);
/* As sk_connector_start(), with sockets of protocol (0, or IPPROTO_MPTCP:
 * then cb gets SK_ENOMPTCP where the kernel has none). For an endpoint:
 * sk_endpoint_socktype(ep), sk_endpoint_protocol(ep). */
int sk_connector_start_proto(struct sk_loop *loop, struct sk_connector *cn,
                             const struct sk_addr *addrs, size_t n,
                             int socktype, int protocol, unsigned timeout_ms,
                             sk_connect_fn cb);
/* As sk_connector_start_proto(), each socket bound to source first (see
 * sk_connect_from(); NULL: none), addresses of another family skipped. */
int sk_connector_start_from(struct sk_loop *loop, struct sk_connector *cn,
                            const struct sk_addr *addrs, size_t n, int socktype,
                            int protocol, const struct sk_addr *source,
                            unsigned timeout_ms, sk_connect_fn cb);
/* Abandons a connection in progress; cb will not run. */
void sk_connector_cancel(struct sk_connector *cn);

/* ------------------------------------------------------------ stream pair */

struct sk_pair;
/* The pair is over: status 0 when both directions ended with a close, else
 * the first error. Both sockets are closed; the pair is freed after. */
typedef void (*sk_pair_fn)(struct sk_pair *pair, int status, void *data);

/* Pipes that the pairs of one loop have at most: lent to a direction
 * while a large transfer has bytes in one, kept idle for the next, closed
 * when the loop's last pair ends (none left to lend: the direction copies).
 * A loop's pairs use at most 2 * SK_PAIR_PIPES descriptors beyond their
 * sockets. */
#define SK_PAIR_PIPES 16

/* Joins two connected stream sockets, taking both: bytes flow both ways
 * (each read through the loop's buffer, a copy; after a read that filled
 * it, through a pipe lent by the loop, with splice(2), until a read is
 * short; a pair holds no pipe while idle, and at most 16 KiB of its own
 * per direction while the other side is not taking them; read/write
 * alone where splice does not apply), a half-close on one side is passed
 * on to the other, an error on either closes both. A SOCK_SEQPACKET
 * end keeps message boundaries: that direction moves one message at a time,
 * without splice, and a message over SK_MESSAGE_MAX ends the pair
 * (-EMSGSIZE). idle_ms: close both after that long without traffic (0:
 * never). Returns 0 or a negative errno (then both sockets are closed and
 * done never runs). Called on the loop's thread, or before the loop runs. */
int sk_pair_start(struct sk_loop *loop, int a, int b, unsigned idle_ms,
                  sk_pair_fn done, void *data, struct sk_pair **pairp);
/* Closes both sockets now; done runs with -ECANCELED. */
void sk_pair_abort(struct sk_pair *pair);
/* Bytes moved so far, from a to b and from b to a; whether a direction
 * holds a pipe now. */
uint64_t sk_pair_bytes(const struct sk_pair *pair, int direction);
bool sk_pair_uses_splice(const struct sk_pair *pair);

/* ---------------------------------------------------------------- server */

struct sk_server;
struct sk_conn;
struct sk_dgram;

/* What a server does with its clients. Stream callbacks get a connection;
 * on_datagram gets one message and its sender. Any callback may be NULL:
 * without on_read input is dropped, without on_eof a half-close from the
 * peer closes the connection once the replies are sent, without
 * on_datagram datagram endpoints are refused by sk_server_listen().
 *
 * Callbacks run on the worker thread that owns the connection, one at a
 * time per worker, and may write to, close or abort any connection of the
 * same worker (a service with shared state runs on a single worker, see
 * sk_server_set_single_worker()): a connection closed or aborted in a
 * callback is never touched by the library again except for its on_close,
 * which runs after the callback returns, and its struct is freed when
 * on_close returns. Pointers a callback gets (data, sk_conn_peer(),
 * sk_dgram_peer()) live as documented at each; copy what must outlive
 * them. */
struct sk_handler {
    /* A new connection. Non-zero closes it (on_close is still called). */
    int (*on_open)(struct sk_conn *c);
    /* Bytes from the peer, valid during the call only. */
    void (*on_read)(struct sk_conn *c, const char *data, size_t len);
    /* The peer will send nothing more. */
    void (*on_eof)(struct sk_conn *c);
    /* The queued output has all reached the kernel (the queue went from
     * non-empty to empty): the moment to queue more of a long stream. */
    void (*on_drain)(struct sk_conn *c);
    /* Last call for c: status 0 for a clean close, else a negative errno.
     * Writes to c fail (-EPIPE); writes to others are sent. */
    void (*on_close)(struct sk_conn *c, int status);
    /* One datagram, data and d valid during the call only; reply with
     * sk_dgram_reply(). */
    void (*on_datagram)(struct sk_dgram *d, const char *data, size_t len);
};

/* One event of a server's log, for the record hook: the whole line and
 * its parts, for a log of another format (JSON). Strings are valid during
 * the call only; peer names come escaped (sk_endpoint_format()). */
struct sk_log_record {
    const char *event;  /* "open", "close", "refused", "limit", "accept",
                           "reload", "error" */
    const char *line;   /* the event as one line, as log and warn get it */
    const char *peer;   /* the client's endpoint, or NULL */
    const char *local;  /* the listener's endpoint, or NULL */
    const char *reason; /* why it closed, was refused or failed, or NULL */
    double duration_s;  /* "close": how long the connection lived */
    uint64_t bytes_in, bytes_out; /* "close": sk_conn_bytes() */
    unsigned suppressed; /* a warning: how many of its kind were left out
                            since the one before (one a second per kind) */
    bool warning;        /* it drops service: to be seen without -v */
};

/* At most one event a period, from any number of threads: a limiter for
 * what could flood a log. Zero-initialized; the fields are private. */
struct sk_ratelimit {
    uint64_t next_ms;
    unsigned skipped;
};
/* Whether an event at now_ms (any monotonic clock) passes: the first one
 * does, then one per period_ms. *skipped (may be NULL) gets, for one that
 * passes, how many were held back since the last that passed. */
bool sk_ratelimit_pass(struct sk_ratelimit *rl, uint64_t now_ms,
                       unsigned period_ms, unsigned *skipped);

/* Server settings; zero means the default for every field. */
struct sk_server_config {
    const struct sk_handler *handler;
    void *data;               /* the caller's, see sk_server_data() */
    unsigned threads;         /* workers; default: online CPUs */
    unsigned max_conns;       /* more are accepted and closed at once;
                                 default: unlimited */
    unsigned max_active;      /* past this many connections at once,
                                 accepting pauses and further clients wait
                                 in the kernel's backlog; default: none */
    unsigned idle_timeout_ms; /* default: none */
    size_t output_max;        /* queued output per connection before
                                 reading pauses; default SK_OUTPUT_MAX */
    unsigned drain_ms;        /* graceful stop deadline; default 2000 */
    unsigned unix_mode;       /* mode of created socket files, with
                                 unix_mode_set (set through /proc/self/fd,
                                 which must be mounted); default: by
                                 umask */
    bool unix_mode_set;
    /* SIGINT/SIGTERM stop the server (a first one drains, a second one
     * stops at once) and SIGHUP reloads its TLS contexts, never stopping
     * it: they are blocked in the thread that calls sk_server_new() (and
     * in the threads it starts), and unblocked again by sk_server_free()
     * on that thread, the pending ones dropped. */
    bool handle_signals;
    unsigned handshake_timeout_ms; /* TLS: a client that has not finished
                                      its handshake (or, with proxy=, sent
                                      its PROXY header) by then is closed;
                                      default 10000 */
    /* Who is served (NULL: everyone), checked when a connection is
     * accepted, before any byte is read (with proxy=, once the header
     * gave the client's address), and for every datagram. The server
     * reads it while it runs; the caller frees it after sk_server_free(). */
    const struct sk_access *access;
    /* At most this many connections at once from one source address (a
     * UNIX peer: one uid); further ones are closed at once. 0: no limit. */
    unsigned max_per_source;
    /* Optional log hook for events a user may want to see (-v). It runs on
     * every worker thread and on the control thread, possibly at once: it
     * must be thread-safe. msg (one line, no newline, peer names escaped)
     * is valid during the call only. */
    void (*log)(void *data, const char *msg);
    /* Optional hook, as log, for what an operator must see even without
     * -v, the events that drop service: a connection limit reached,
     * descriptors exhausted, a TLS reload that failed (the old
     * certificates stay). Each kind at most once a second (reloads
     * excepted: each listener's failure is told); the line says how many
     * were left out. Without warn, they go to log. */
    void (*warn)(void *data, const char *msg);
    /* Optional, in place of log and warn: each event as a record. Warnings
     * always; the other events (log's) with record_all. As log, it runs
     * on any thread and must be thread-safe. */
    void (*record)(void *data, const struct sk_log_record *r);
    bool record_all;
    /* Optional: called once by sk_server_run(), on its thread, when every
     * worker is running and accepting: the moment to say the server is
     * ready (the command prints its "listening on" lines then). */
    void (*ready)(void *data);
    /* Optional: called on each worker thread (worker 0 to threads-1) as
     * it starts, before it serves anyone, and as it ends, after its last
     * on_close: the place for per-thread state. Not called on the thread
     * of sk_server_run() or the control thread of sk_server_start(). */
    void (*thread_start)(void *data, unsigned worker);
    void (*thread_end)(void *data, unsigned worker);
    /* systemd's Type=notify: when NOTIFY_SOCKET is set (read by
     * sk_server_new()), READY=1 once every worker accepts, RELOADING=1
     * and READY=1 around a SIGHUP reload, STOPPING=1 as a stop begins.
     * A NOTIFY_SOCKET that is no UNIX address fails sk_server_new(). */
    bool notify;
    /* The poller of each worker's loop (see sk_loop_new_backend()): where
     * io_uring cannot be set up, the workers run on epoll and log says so
     * once. Default: epoll. */
    enum sk_backend backend;
};

/* Sends state ("READY=1", "STATUS=...": newline-separated KEY=VALUE) to
 * the socket NOTIFY_SOCKET names, as systemd's sd_notify() does. Returns
 * 1 when sent, 0 without NOTIFY_SOCKET, or a negative errno. */
int sk_notify(const char *state);

/* Output queued per connection before the server stops reading from it. */
#define SK_OUTPUT_MAX (256 * 1024)
/* Largest datagram payload sockit receives. */
#define SK_DGRAM_MAX 65536
/* Largest message of a message connection (unixpacket:), either way. */
#define SK_MESSAGE_MAX 65536

int sk_server_new(struct sk_server **srvp, const struct sk_server_config *cfg);
/* Binds every address of ep (one socket per worker for TCP, MPTCP and
 * UDP, with SO_REUSEPORT; one shared socket for UNIX). Nothing is served
 * until sk_server_run(); once a run (or sk_server_start()) began, it is
 * -EBUSY. Returns 0 or a negative code; then the sockets and
 * socket files made for ep are gone again and, if failed is not NULL, it
 * holds the canonical endpoint of the address that could not be bound
 * (fd: and sd: as given).
 *
 * fd:N and sd: adopt sockets that exist already: one listener each (sd:,
 * every socket systemd passed, in order; sd:NAME, those named NAME), whose
 * endpoint is what the socket is (tcp://127.0.0.1:8080, unixgram:/run/x).
 * Each must be a TCP, MPTCP, UDP or UNIX socket, bound, listening if not
 * a datagram one, not connected: else -EBADF (N not open), -ENOTSOCK,
 * -EAFNOSUPPORT, -ESOCKTNOSUPPORT, -EPROTONOSUPPORT, SK_ENOTLISTENING;
 * tls or proxy= on a socket that turns out not to be a stream one is
 * -EPROTOTYPE; SK_ENOSDSOCKETS, SK_ENOSDNAME (see sk_endpoint_strerror()
 * for the details). One socket is shared by every worker (each wakes
 * alone, EPOLLEXCLUSIVE; a datagram socket is read by one). It is made
 * non-blocking and close-on-exec, and its socket file is never removed.
 * fd:N hands descriptor N to the server, which closes it when freed (on
 * failure N is left alone); a second endpoint of the server for the same
 * descriptor gets a duplicate, so nothing is closed twice: give one N to
 * one server only. sd: reads systemd's variables once per process
 * (LISTEN_PID must be this process), sets close-on-exec on every socket
 * passed and removes LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES and
 * LISTEN_PIDFDID from the environment (setenv() is not thread-safe: do it
 * before starting threads that read the environment); the descriptors
 * passed stay open for the life of the process, each server working on
 * (and closing) duplicates, so that sd: may be given to several servers. */
int sk_server_listen(struct sk_server *srv, const struct sk_endpoint *ep,
                     struct sk_endpoint *failed);
/* As sk_server_listen(), for an endpoint with tls: the server takes a
 * reference to tls (made listening with sk_tls_new()). Each connection
 * makes its handshake on the worker, and on_open runs once it is done (a
 * client that fails it, or takes longer than handshake_timeout_ms, is
 * closed and the handler never hears of it). With handle_signals, SIGHUP
 * reloads every context of the server. sk_server_listen() refuses an
 * endpoint with tls (-EINVAL). */
int sk_server_listen_tls(struct sk_server *srv, const struct sk_endpoint *ep,
                         struct sk_tls *tls, struct sk_endpoint *failed);
/* What an endpoint's own options give sk_server_listen_with(). */
struct sk_listen_options {
    struct sk_tls *tls; /* for an endpoint with tls (made listening) */
    unsigned unix_mode; /* with unix_mode_set: the socket file's mode */
    bool unix_mode_set; /* (mode=), over the server's unix_mode */
};
/* sk_server_listen() and sk_server_listen_tls() with every option: o may
 * be NULL. -EINVAL for tls without a listening context or the reverse, or
 * a mode for an endpoint with no socket file (not UNIX, or abstract). */
int sk_server_listen_with(struct sk_server *srv, const struct sk_endpoint *ep,
                          const struct sk_listen_options *o,
                          struct sk_endpoint *failed);
/* Gives the UNIX socket files the server created to uid and gid, so that
 * after a switch to that user (setuid) the server may still remove them
 * at exit (a sticky directory, such as /tmp, lets only a file's owner).
 * Returns 0 or a negative errno. */
int sk_server_set_owner(struct sk_server *srv, uid_t uid, gid_t gid);
/* Bound sockets so far, in the order bound, and each one's canonical
 * endpoint (real address and port). */
size_t sk_server_listener_count(const struct sk_server *srv);
int sk_server_listener_endpoint(const struct sk_server *srv, size_t i,
                                struct sk_endpoint *ep);
/* Serves until stopped, then drains; once per server. Returns 0, a negative
 * errno, -EBUSY while another call runs, -EALREADY after one returned. */
int sk_server_run(struct sk_server *srv);
/* As sk_server_run(), without taking the calling thread: the server's own
 * control thread serves (and handles signals, with handle_signals), and
 * this returns once every worker accepts (after the ready hook ran, on
 * this thread). Stop it with sk_server_stop(), then sk_server_join(),
 * which waits for the drain to end and returns what sk_server_run()
 * would have; join before sk_server_free(). Returns 0 or the codes of
 * sk_server_run() (then there is nothing to join). */
int sk_server_start(struct sk_server *srv);
/* Waits for a server started by sk_server_start() to end. Once, from one
 * thread (not a worker). Returns its result, or -EINVAL if it was not
 * started or was joined already. */
int sk_server_join(struct sk_server *srv);
/* Begins a graceful stop: stop accepting, finish replies for up to
 * drain_ms, close. Safe from any thread and from signal handlers. */
void sk_server_stop(struct sk_server *srv);
/* Stops listening while the server goes on: from any thread (a worker's
 * callback included; not from a signal handler) while the server runs.
 * No client is served but those accepted before the call: each worker
 * stops watching its listeners before its loop next waits, a client it
 * accepts meanwhile or finds queued is closed at once (one that sent
 * bytes sees a reset), and the stream sockets leave LISTEN, so that the
 * kernel refuses new clients (ECONNREFUSED, on TCP and UNIX alike).
 * Connections already accepted go on, and the server runs until
 * sk_server_stop() or a signal, which drains them as ever. Datagram
 * sockets are still read; a socket of fd: or sd: is no longer watched
 * but stays listening (it is also its parent's): its clients wait in its
 * queue. The UNIX socket files the server made stay until
 * sk_server_free() removes them. Returns 0 (again on later calls), or
 * -EINVAL when the server is not running (before sk_server_run() or
 * sk_server_start(), or once it has ended). */
int sk_server_stop_listening(struct sk_server *srv);
/* Closes listeners, removes the UNIX socket files it created. NULL-safe. */
void sk_server_free(struct sk_server *srv);
void *sk_server_data(const struct sk_server *srv);
/* Serve with a single worker whatever threads says (shared state). Returns
 * 0, or -EBUSY once sk_server_listen() has bound anything. */
int sk_server_set_single_worker(struct sk_server *srv);

/* What a server did so far. Each worker counts its own, per listener,
 * without locks and in cache lines no other worker writes. Any thread may
 * read them at any time, while the server runs, before and after (zeros
 * until sk_server_run() or sk_server_start() begins), until
 * sk_server_free(): each counter is exact and never goes down, but the
 * counters are not a snapshot of one instant (closed is read before
 * accepted, so that accepted - closed is never below what was active).
 * The cost of a read is per worker and listener, never per connection.
 * Fields up to dgrams_refused were there first; new ones come last. */
struct sk_server_stats {
    uint64_t accepted;       /* stream connections admitted: past the
                                access rules, the limits and (proxy=)
                                the PROXY header */
    uint64_t refused_access; /* connections closed by --allow/--deny */
    uint64_t refused_source; /* closed past max_per_source */
    uint64_t refused_limit;  /* closed past max_conns */
    uint64_t proxy_failed;   /* bad, missing or late PROXY headers */
    uint64_t tls_failed;     /* failed or timed-out TLS handshakes */
    uint64_t dgrams_refused; /* datagrams dropped by --allow/--deny */
    uint64_t closed;         /* accepted connections since closed: the
                                active ones are accepted - closed */
    uint64_t fd_limit;       /* times accepting ran out of descriptors
                                or memory (EMFILE, ENFILE, ENOBUFS,
                                ENOMEM), once until an accept succeeds
                                again; the clients wait */
    uint64_t accept_pauses;  /* times accepting paused: fd_limit, or
                                max_active connections open */
    uint64_t bytes_in;       /* stream bytes read from clients (inside
                                TLS; not what a detached connection's
                                owner moves) */
    uint64_t bytes_out;      /* stream bytes the kernel took for them */
    uint64_t dgrams_in;      /* datagrams passed to on_datagram */
    uint64_t dgrams_out;     /* replies the kernel took */
    uint64_t dgrams_dropped; /* datagrams refused by --allow/--deny (also
                                in dgrams_refused) or too large to take
                                whole, replies the kernel refused */
    uint64_t idle_timeouts;  /* connections closed for idleness */
};
/* The sum over every listener. */
void sk_server_get_stats(const struct sk_server *srv,
                         struct sk_server_stats *stats);
/* The counters of the i-th listener (as sk_server_listener_endpoint()).
 * Returns 0 or -EINVAL for an index past the listeners. Listeners are
 * added (sk_server_listen()) before the run, on one thread: read from
 * another thread once the run has begun. */
int sk_server_get_listener_stats(const struct sk_server *srv, size_t i,
                                 struct sk_server_stats *stats);

/* An outbound connection: connecting, then (with tls) the handshake, then
 * the same buffered, event-driven connection as an accepted one, served
 * by handler on loop's thread. on_datagram is unused. */
struct sk_conn_options {
    const struct sk_handler *handler;
    void *data;          /* sk_conn_data() */
    struct sk_tls *tls;  /* a connecting context, for an endpoint with tls */
    unsigned timeout_ms; /* to connect and finish the handshake; 0: none */
    unsigned idle_ms;    /* closed after that long without traffic */
    size_t output_max;   /* default SK_OUTPUT_MAX */
    /* Reading goes on while output_max is queued (the caller bounds what
     * it writes, e.g. by sk_conn_pending()): a client whose peer, an echo
     * say, stops reading while its own replies are not read would
     * otherwise wait for it forever. */
    bool keep_reading;
    /* Bytes sent on the socket as soon as it is connected, before TLS and
     * before on_open: a PROXY header (sk_proxy_format()). At most
     * SK_PROXY_V2_MAX; the struct's pointer need only live during
     * sk_conn_connect(). Without one, an endpoint with proxy= is sent a
     * header of the socket's own addresses (sk_proxy_send()). */
    const void *preamble;
    size_t preamble_len;
    /* The address the socket is bound to before connecting (see
     * sk_connect_from()), copied: it need only live during
     * sk_conn_connect(). NULL: none. */
    const struct sk_addr *source;
};

/* Starts connecting to ep (resolved now: a host name blocks for DNS).
 * on_open runs once the connection is ready; if it never gets there,
 * on_close runs with the reason (-ECONNREFUSED, -ETIMEDOUT, a TLS failure:
 * see sk_conn_error()) and on_open never does. on_close runs exactly once,
 * on the loop's thread, never before this returns. An outbound connection
 * made on a server's worker loop (from one of its callbacks) is closed
 * with the others when the server stops; sk_conn_server() gives NULL.
 * Returns 0 (and *cp, valid until on_close returns) or a negative code. */
int sk_conn_connect(struct sk_loop *loop, const struct sk_endpoint *ep,
                    const struct sk_conn_options *opts, struct sk_conn **cp);

/* Queues a copy of len bytes for the peer; they are sent when the current
 * loop iteration ends. Reading pauses while output_max is queued; past a
 * hard cap (output_max plus the larger of output_max and one 64 KiB read)
 * nothing more is queued (a single write larger than the cap never
 * succeeds). Returns 0, -EPIPE once closing, -ENOBUFS past the cap, or
 * -ENOMEM. */
int sk_conn_write(struct sk_conn *c, const void *data, size_t len);
/* Bytes queued and not yet taken by the kernel (on a message connection,
 * 4 more per message). */
size_t sk_conn_pending(const struct sk_conn *c);
/* A connection that keeps message boundaries (unixpacket:, SOCK_SEQPACKET):
 * each on_read is one message from the peer, each sk_conn_write() one
 * message to it (at most SK_MESSAGE_MAX bytes, else -EMSGSIZE). A longer
 * message from the peer closes the connection (-EMSGSIZE); an empty one
 * reads as the end of the stream. */
bool sk_conn_keeps_messages(const struct sk_conn *c);
/* The per-connection output limit (the server's output_max). */
size_t sk_conn_output_max(const struct sk_conn *c);
/* Graceful close: stop reading, send what is queued, then close. */
void sk_conn_close(struct sk_conn *c);
/* Immediate close: queued output is dropped. */
void sk_conn_abort(struct sk_conn *c);
/* Half-close: once the queued output is sent, tell the peer nothing more
 * comes (TCP FIN, or the TLS close_notify); reading goes on. Writes after
 * it fail with -EPIPE. */
void sk_conn_shutdown(struct sk_conn *c);
/* One line on why c failed, when the reason is more than an errno (a TLS
 * handshake: "certificate verify failed (self-signed certificate)"), or on
 * how a TLS stream ended when on_eof came from a bare FIN instead of a
 * close_notify ("closed without close_notify": what came was
 * authenticated, but may have been cut short); "" otherwise. Valid until
 * on_close returns. */
const char *sk_conn_error(const struct sk_conn *c);
/* TLS in use: the protocol ("TLSv1.3") and cipher, the ALPN protocol
 * chosen ("" if none), whether the session was resumed. NULL and false
 * on a plaintext connection or before the handshake ends. */
const char *sk_conn_tls_version(const struct sk_conn *c);
const char *sk_conn_tls_cipher(const struct sk_conn *c);
const char *sk_conn_tls_alpn(const struct sk_conn *c);
bool sk_conn_tls_resumed(const struct sk_conn *c);
bool sk_conn_is_closing(const struct sk_conn *c);
/* Stops (hold true) or resumes reading from the peer, e.g. while others
 * catch up with what it sent. Output is not affected. */
void sk_conn_hold_input(struct sk_conn *c, bool hold);
/* Stops watching the socket for good and hands its descriptor to the
 * caller, who then owns (and closes) it; queued output is dropped (and on
 * an io_uring loop the input its ring has received that on_read has not
 * been given: detach in on_open, before the first read, to hand over
 * every byte). Over
 * TLS the descriptor is one end of a socket pair that the library keeps
 * relaying through TLS (plaintext in and out), until the caller closes
 * it and the connection is closed. The
 * connection stays counted, and alive for its accessors, until closed with
 * sk_conn_close() or sk_conn_abort(); idle expiry does not see it. */
int sk_conn_detach(struct sk_conn *c);
/* Joins two open connections of one loop: from now on what either reads
 * is written to the other (the reader held while the other's output is
 * over its limit), an end of stream from one shuts down the other's
 * sending, and when one closes the other is closed once its output is
 * sent. Their handlers hear no more on_read, on_eof or on_drain; on_close
 * still runs for each. Each reads whatever its own queue holds, held only
 * by the other's. The way to relay TLS and plaintext to each other.
 * Returns 0 or -EINVAL (closing, detached, starting, already joined, or
 * of different loops). */
int sk_conn_join(struct sk_conn *a, struct sk_conn *b);
void sk_conn_set_data(struct sk_conn *c, void *data);
void *sk_conn_data(const struct sk_conn *c);
struct sk_server *sk_conn_server(const struct sk_conn *c);
struct sk_loop *sk_conn_loop(const struct sk_conn *c);
/* The connection's socket, for socket options (setsockopt, getsockopt,
 * TCP_INFO): it stays the library's, to be neither closed nor read from
 * or written to; -1 once closed or detached (and, for an outbound one,
 * while it connects). */
int sk_conn_fd(const struct sk_conn *c);
/* Bytes so far read from the peer and sent to it (taken by the kernel),
 * of the stream itself (inside TLS; what a detached connection's new
 * owner moves is not counted); either pointer may be NULL. */
void sk_conn_bytes(const struct sk_conn *c, uint64_t *in, uint64_t *out);
/* For a detached connection (sk_conn_detach()), whose new owner moves its
 * bytes: adds them to what sk_conn_bytes() gives and its close is logged
 * with. */
void sk_conn_add_bytes(struct sk_conn *c, uint64_t in, uint64_t out);
/* Canonical endpoints of the peer and of the local side, made on first use
 * and valid until on_close returns; NULL without memory. An unnamed UNIX
 * peer gives an empty path. */
const struct sk_endpoint *sk_conn_peer(const struct sk_conn *c);
const struct sk_endpoint *sk_conn_local(const struct sk_conn *c);
/* The peer's and the local address (either may be NULL): with proxy=,
 * those the PROXY header gave, unless it said LOCAL or UNKNOWN. Returns 0,
 * or -ENOTCONN once the socket is gone and nothing was kept. */
int sk_conn_addrs(const struct sk_conn *c, struct sk_addr *peer,
                  struct sk_addr *local);

/* The peer's credentials, struct sk_peer_cred above. */
/* Returns 0, -EAFNOSUPPORT for a network peer, -ENODATA if unknown. */
int sk_conn_peer_cred(const struct sk_conn *c, struct sk_peer_cred *cred);

/* Queues a reply datagram to the sender of d; sent with the batch.
 * Returns 0, -EDESTADDRREQ for an unnamed sender, or -EMSGSIZE. */
int sk_dgram_reply(struct sk_dgram *d, const void *data, size_t len);
/* The sender, valid during on_datagram only. An unnamed UNIX sender has
 * family AF_UNIX and len sizeof(sa_family_t). */
const struct sk_addr *sk_dgram_peer(const struct sk_dgram *d);
struct sk_server *sk_dgram_server(const struct sk_dgram *d);
struct sk_loop *sk_dgram_loop(const struct sk_dgram *d);
/* The receiving socket's descriptor and endpoint, for replies sent later
 * with sendto() (the socket is non-blocking). */
int sk_dgram_fd(const struct sk_dgram *d);
const struct sk_endpoint *sk_dgram_local(const struct sk_dgram *d);

/* Work that outlives a callback (a child process, a timer) registers a
 * hold: during a graceful stop the worker keeps running until every hold is
 * released or, at the drain deadline, cancelled. cancel must release the
 * hold (and whatever it watches). The struct is the caller's; fields are
 * private. */
struct sk_hold {
    void (*cancel)(struct sk_hold *hold);
    void *data;
    struct sk_hold *prev, *next;
    void *owner;
};

void sk_dgram_hold(struct sk_dgram *d, struct sk_hold *hold,
                   void (*cancel)(struct sk_hold *hold));
void sk_hold_release(struct sk_hold *hold);

#ifdef __cplusplus
}
#endif

#endif
