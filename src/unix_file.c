/* unix_file.c -- UNIX socket files in directories others may write to.
 *
 * A path that exists is replaced only when it is a socket that refuses
 * connections (stale), and only that very file: it is first moved into a
 * private directory made beside it (mode 0700), looked at there, and put
 * back if it is another file or if its server turns out to be between its
 * bind and its listen. A socket given a mode is bound with mode 0 (no one
 * but root can use it yet) and then given its mode through a descriptor of
 * the file itself, never by a path a link could be swapped into. Removal at
 * exit takes the same care as the replacement of a stale file. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

struct private_dir {
    char dir[PATH_MAX];
    char spare[sizeof(((struct sockaddr_un *)0)->sun_path)];
    int dir_fd;
};

/* Makes "DIR/.sockit-XXXXXX" beside path. The name of a file moved there
 * must fit sun_path, to be connected to: when the long form does not,
 * /proc/self/fd/N/old reaches the same directory through a descriptor. */
static int private_open(struct private_dir *p, const char *path)
{
    const char *slash = strrchr(path, '/');
    int dlen = slash == NULL ? 1 : slash == path ? 1 : (int)(slash - path);
    const char *dname = slash == NULL ? "." : path;

    snprintf(p->dir, sizeof(p->dir), "%.*s/.sockit-XXXXXX", dlen, dname);
    if (mkdtemp(p->dir) == NULL)
        return -errno;
    p->dir_fd = open(p->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (p->dir_fd < 0) {
        int err = -errno;
        rmdir(p->dir);
        return err;
    }
    if ((size_t)snprintf(p->spare, sizeof(p->spare), "%s/old", p->dir) >=
        sizeof(p->spare))
        snprintf(p->spare, sizeof(p->spare), "/proc/self/fd/%d/old", p->dir_fd);
    return 0;
}

/* Removes the directory. A file that could not be put back (its path was
 * taken again) stays in it rather than be lost. */
static void private_close(struct private_dir *p)
{
    close(p->dir_fd);
    rmdir(p->dir);
}

static int is_live(const char *path, int socktype);

/* Removes the file at path if it is still the one identified by dev and
 * ino and, when socktype is not 0, still refuses connections after the
 * grace a server gets between its bind and its listen. Otherwise leaves
 * what is there. Returns 0 once removed, -ESTALE when the file is another
 * or lives, or a negative errno. */
static int remove_same(struct private_dir *p, const char *path, dev_t dev,
                       ino_t ino, int socktype)
{
    struct timespec grace = {0, LISTEN_GRACE_MS * 1000000L};
    struct stat st;

    if (rename(path, p->spare) < 0)
        return -errno;
    if (lstat(p->spare, &st) == 0 && st.st_dev == dev && st.st_ino == ino &&
        (socktype == 0 ||
         (nanosleep(&grace, NULL) == 0 && is_live(p->spare, socktype) == 0)))
        return unlink(p->spare) < 0 ? -errno : 0;
    /* Not ours to remove: back where it was, unless the path was taken
     * again meanwhile (see private_close()). */
    renameat2(AT_FDCWD, p->spare, AT_FDCWD, path, RENAME_NOREPLACE);
    return -ESTALE;
}

/* Whether the socket file at path has a server: only a refused connection
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

/* The file just bound, reached without following a link: it must be a
 * socket of ours, and with mode 0 when it was bound so. Gives it mode
 * (through the descriptor, not the path) and returns its identity. */
static int claim(const char *path, const struct sk_unix_mode *mode,
                 struct stat *st)
{
    char self[64];
    int fd, err = 0;

    fd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (fstat(fd, st) < 0)
        err = -errno;
    else if (!S_ISSOCK(st->st_mode) || st->st_uid != geteuid() ||
             (mode->set && (st->st_mode & 07777) != 0))
        err = -ESTALE; /* another file took the path meanwhile */
    snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
    if (err == 0 && mode->set && chmod(self, mode->mode) < 0)
        err = -errno;
    close(fd);
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
    /* Unreachable until it has its mode: the file takes the socket's. */
    if (mode->set && fchmod(fd, 0) < 0) {
        err = -errno;
        goto out_close;
    }
    if ((err = bind_path(fd, path, socktype)) < 0)
        goto out_close;
    if ((err = claim(path, mode, &st)) < 0 ||
        (err = sk__sock_listen(fd, socktype)) < 0) {
        /* Bound but not usable: leave no file behind, if it is ours. */
        if (err != -ESTALE && st.st_ino != 0)
            sk__unix_remove_file(path, st.st_dev, st.st_ino);
        goto out_close;
    }
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
    if (lstat(path, &st) < 0 || st.st_dev != dev || st.st_ino != ino)
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
