/* unix_file.c -- UNIX socket files in directories others may write to.
 *
 * A path that exists is replaced only when it is a socket that refuses
 * connections (stale), and only that very file: it is first moved into a
 * private directory made beside it (mode 0700), looked at there, and put
 * back if it is another file or if its server turns out to be between its
 * bind and its listen. Every step inside the private directory goes
 * through a descriptor of it, so that renaming it away and putting a link
 * in its place redirects nothing.
 *
 * A socket given a mode is bound with mode 0600 (no one else can use it
 * yet) and given its mode through a descriptor of the file itself, never
 * by a path a link could be swapped into. Before a socket counts as bound,
 * it checks that the file at its path is its own (SIOCUNIXFILE, or on
 * older kernels the credentials of the listener reached through the
 * file): a server that lost the path to another one while it was starting
 * says "address in use" rather than serve a file no one can reach, and
 * never removes the other's at exit. Removal at exit takes the same care
 * as the replacement of a stale file.
 *
 * The descriptors are reached through /proc/self/fd, which must be
 * mounted for --unix-mode and for the replacement of stale files. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* Binds tried before giving up on a path that keeps changing. */
#define BIND_TRIES 4
/* How long a server may take from its bind to its listen: a socket that
 * refused a connection is asked again after this long before it is
 * taken for stale. */
#define LISTEN_GRACE_MS 50
/* The mode a socket to be given another is bound with: its owner's. */
#define MODE_UNTIL_SET 0600

struct private_dir {
    char dir[PATH_MAX];
    char spare[64]; /* "/proc/self/fd/N/old": the file moved in */
    int dir_fd;
};

/* Makes "DIR/.sockit-XXXXXX" beside path, and keeps a descriptor of it. */
static int private_open(struct private_dir *p, const char *path)
{
    const char *slash = strrchr(path, '/');
    int dlen = slash == NULL ? 1 : slash == path ? 1 : (int)(slash - path);
    const char *dname = slash == NULL ? "." : path;
    int err;

    snprintf(p->dir, sizeof(p->dir), "%.*s/.sockit-XXXXXX", dlen, dname);
    if (mkdtemp(p->dir) == NULL)
        return -errno;
    p->dir_fd = open(p->dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (p->dir_fd < 0) {
        err = -errno;
        rmdir(p->dir);
        return err;
    }
    snprintf(p->spare, sizeof(p->spare), "/proc/self/fd/%d/old", p->dir_fd);
    return 0;
}

/* Removes the directory (by name: if someone moved it away, what has its
 * name now is not removed unless it is an empty directory). A file that
 * could not be put back (its path was taken again) stays in it rather
 * than be lost. */
static void private_close(struct private_dir *p)
{
    close(p->dir_fd);
    rmdir(p->dir);
}

static bool same_socket_file(const struct stat *st, dev_t dev, ino_t ino)
{
    return S_ISSOCK(st->st_mode) && st->st_dev == dev && st->st_ino == ino;
}

/* Whether the socket at path has a server: only a refused connection
 * means none. A connection made, one that would block (a full backlog), a
 * socket of another type, and a socket we may not use (EACCES, EPERM) are
 * all someone's. Returns 1, 0, or -ENOENT when the file went away. */
static int is_live(const char *path, int socktype)
{
    struct sk_addr addr = {.len = sizeof(struct sockaddr_un)};
    int fd, live;

    addr.u.un.sun_family = AF_UNIX;
    snprintf(addr.u.un.sun_path, sizeof(addr.u.un.sun_path), "%s", path);
    fd = socket(AF_UNIX, socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, &addr.u.sa, addr.len) == 0)
        live = 1;
    else
        live = errno == ECONNREFUSED ? 0 : errno == ENOENT ? -ENOENT : 1;
    close(fd);
    return live;
}

/* The file moved into p is still the socket identified by dev and ino and,
 * when socktype is not 0, still refuses connections after the grace a
 * server gets between its bind and its listen. */
static bool spare_is_stale(struct private_dir *p, dev_t dev, ino_t ino,
                           int socktype)
{
    struct timespec grace = {0, LISTEN_GRACE_MS * 1000000L};
    struct stat st;

    if (fstatat(p->dir_fd, "old", &st, AT_SYMLINK_NOFOLLOW) < 0 ||
        !same_socket_file(&st, dev, ino))
        return false;
    if (socktype == 0)
        return true;
    nanosleep(&grace, NULL);
    return is_live(p->spare, socktype) == 0 &&
           fstatat(p->dir_fd, "old", &st, AT_SYMLINK_NOFOLLOW) == 0 &&
           same_socket_file(&st, dev, ino);
}

/* Removes the file at path if it is still the one identified by dev and
 * ino (and, for socktype not 0, stale); otherwise leaves what is there.
 * Returns 0 once removed, -ESTALE when the file is another or lives, or a
 * negative errno. */
static int remove_same(struct private_dir *p, const char *path, dev_t dev,
                       ino_t ino, int socktype)
{
    if (renameat(AT_FDCWD, path, p->dir_fd, "old") < 0)
        return -errno;
    if (spare_is_stale(p, dev, ino, socktype))
        return unlinkat(p->dir_fd, "old", 0) < 0 ? -errno : 0;
    /* Not ours to remove: back where it was, unless the path was taken
     * again meanwhile (see private_close()). */
    renameat2(p->dir_fd, "old", AT_FDCWD, path, RENAME_NOREPLACE);
    return -ESTALE;
}

/* path exists: removes it if it is a stale socket. Returns 0 to try the
 * bind again, or a negative code to give up with. */
static int clear_stale(const char *path, int socktype)
{
    struct private_dir p;
    struct stat st;
    int live, err;

    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(st.st_mode))
        return SK_ENOTSOCKFILE;
    live = is_live(path, socktype);
    if (live != 0)
        return live == -ENOENT ? 0 : live < 0 ? live : -EADDRINUSE;
    if ((err = private_open(&p, path)) < 0)
        return err;
    err = remove_same(&p, path, st.st_dev, st.st_ino, socktype);
    private_close(&p);
    return err == -ESTALE ? -EADDRINUSE : err == -ENOENT ? 0 : err;
}

/* Binds fd at path, removing a stale socket file found there. */
static int bind_path(int fd, const char *path, int socktype)
{
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    int err;

    memcpy(un.sun_path, path, strlen(path) + 1);
    for (int i = 0; i < BIND_TRIES; i++) {
        if (bind(fd, (struct sockaddr *)&un, sizeof(un)) == 0)
            return 0;
        if (errno != EADDRINUSE)
            return -errno;
        if ((err = clear_stale(path, socktype)) < 0)
            return err;
    }
    return -EADDRINUSE;
}

/* Connects to the file open at file_fd and checks, by the credentials of
 * the listener reached, that it is this process's: then it is listen_fd
 * (one file, one socket). The connection made is taken off the backlog
 * again; a client that got in first, before the server even said it was
 * listening, is closed with it. */
static int is_own_listener(int listen_fd, int socktype, int file_fd)
{
    struct sk_addr addr = {.len = sizeof(struct sockaddr_un)};
    struct ucred cred;
    socklen_t len = sizeof(cred);
    int fd, own = 0;

    addr.u.un.sun_family = AF_UNIX;
    snprintf(addr.u.un.sun_path, sizeof(addr.u.un.sun_path), "/proc/self/fd/%d",
             file_fd);
    fd = socket(AF_UNIX, socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, &addr.u.sa, addr.len) == 0 &&
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 &&
        cred.pid == getpid())
        own = 1;
    for (int i = 0; own && i < SK_ACCEPT_BATCH; i++) {
        int peer = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC), mine;
        if (peer < 0)
            break;
        len = sizeof(cred);
        mine = getsockopt(peer, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 &&
               cred.pid == getpid();
        close(peer);
        if (mine)
            break;
    }
    close(fd);
    return own;
}

/* The ioctl that opens the file a UNIX socket is bound to (Linux 6.9),
 * from <linux/un.h> where the headers are new enough. */
#ifndef SIOCUNIXFILE
#define SIOCUNIXFILE (0x89E0 + 0)
#endif

/* Whether the file open at file_fd is the one listen_fd is bound to: the
 * file at the path could be another server's, put there while this one
 * was starting. */
static int is_own_file(int listen_fd, int socktype, int file_fd,
                       const struct stat *st)
{
    struct stat own;
    int fd = ioctl(listen_fd, SIOCUNIXFILE, 0), ret;

    if (fd >= 0) {
        ret = fstat(fd, &own) == 0 && own.st_dev == st->st_dev &&
              own.st_ino == st->st_ino;
        close(fd);
        return ret;
    }
    /* An older kernel: the listener reached through the file must be this
     * process's. A datagram socket has no window between its bind and the
     * moment it answers, in which another server could take its path; a
     * stream or seqpacket one has, until its listen(). */
    if (socktype == SOCK_DGRAM)
        return 1;
    return is_own_listener(listen_fd, socktype, file_fd);
}

/* The file just bound, reached without following a link: a socket of
 * ours, the one fd is bound to, with the mode it was bound with. Gives it its
 * mode through a descriptor and returns its identity. */
static int claim(int fd, const char *path, int socktype,
                 const struct sk_unix_mode *mode, struct stat *st)
{
    struct timespec pause = {0, LISTEN_GRACE_MS * 1000000L};
    char self[64];
    int file, err = 0;

    /* A server starting at the same path may hold the file in its private
     * directory while it checks whether it is stale: it puts it back
     * within the grace, as this socket listens already. */
    for (int i = 0; (file = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC)) < 0 &&
                    errno == ENOENT && i < 4;
         i++)
        nanosleep(&pause, NULL);
    if (file < 0)
        return -errno;
    if (fstat(file, st) < 0)
        err = -errno;
    else if (!S_ISSOCK(st->st_mode) || st->st_uid != geteuid() ||
             (mode->set && (st->st_mode & 07777) != MODE_UNTIL_SET))
        err = -EADDRINUSE; /* another file took the path meanwhile */
    else if (is_own_file(fd, socktype, file, st) != 1)
        err = -EADDRINUSE;
    snprintf(self, sizeof(self), "/proc/self/fd/%d", file);
    if (err == 0 && mode->set && chmod(self, mode->mode) < 0)
        err = -errno;
    close(file);
    return err;
}

int sk__unix_listen_file(const char *path, int socktype,
                         const struct sk_unix_mode *mode, dev_t *dev,
                         ino_t *ino)
{
    struct stat st = {0};
    int fd, err;

    fd = socket(AF_UNIX, socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* The file takes the socket's mode: its owner's until it has its own. */
    if (mode->set && fchmod(fd, MODE_UNTIL_SET) < 0) {
        err = -errno;
        goto out_close;
    }
    if ((err = bind_path(fd, path, socktype)) < 0 ||
        (err = sk__sock_listen(fd, socktype)) < 0)
        goto out_close;
    if ((err = claim(fd, path, socktype, mode, &st)) < 0)
        goto out_close; /* the file at path, if any, is not ours */
    *dev = st.st_dev;
    *ino = st.st_ino;
    return fd;

out_close:
    close(fd);
    return err;
}

void sk__unix_remove_file(const char *path, dev_t dev, ino_t ino)
{
    struct private_dir p;
    struct stat st;

    /* Nothing of ours there: not even a private directory to make. */
    if (lstat(path, &st) < 0 || !same_socket_file(&st, dev, ino))
        return;
    /* Without room for a private directory, the file is removed as it
     * was found: the same check, with a window between it and the unlink. */
    if (private_open(&p, path) < 0) {
        unlink(path);
        return;
    }
    remove_same(&p, path, dev, ino, 0);
    private_close(&p);
}
