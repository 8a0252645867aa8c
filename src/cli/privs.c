/* privs.c -- --user USER[:GROUP]: the user and group a server runs as once
 * it has bound its sockets and read its files, so that a service on port
 * 80 or 443 does not run as root. */
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* A whole decimal number, as a uid or gid may be given. */
static bool parse_id(const char *text, unsigned long *id)
{
    char *end;

    if (text[0] < '0' || text[0] > '9')
        return false;
    errno = 0;
    *id = strtoul(text, &end, 10);
    return *end == '\0' && errno == 0 && *id < UINT_MAX;
}

static int lookup_group(const char *spec, const char *name, gid_t *gid)
{
    struct group *gr;
    unsigned long id;

    errno = 0;
    if ((gr = getgrnam(name)) != NULL) {
        *gid = gr->gr_gid;
        return 0;
    }
    if (parse_id(name, &id)) {
        *gid = (gid_t)id;
        return 0;
    }
    cli_error("--user %s: no such group '%s'", spec, name);
    return -1;
}

int cli_user_lookup(const char *spec, struct cli_user *u)
{
    char name[256];
    const char *colon = strchr(spec, ':');
    size_t len = colon != NULL ? (size_t)(colon - spec) : strlen(spec);
    struct passwd *pw;
    unsigned long id;

    u->spec = spec;
    if (len == 0 || len >= sizeof(name)) {
        cli_error("--user %s: expected USER or USER:GROUP", spec);
        return -1;
    }
    memcpy(name, spec, len);
    name[len] = '\0';
    errno = 0;
    if ((pw = getpwnam(name)) != NULL) {
        u->uid = pw->pw_uid;
        u->gid = pw->pw_gid;
    } else if (parse_id(name, &id) && (pw = getpwuid((uid_t)id)) != NULL) {
        u->uid = pw->pw_uid;
        u->gid = pw->pw_gid;
    } else if (parse_id(name, &id) && colon != NULL) {
        u->uid = (uid_t)id; /* a number with no passwd entry: as given */
    } else {
        cli_error("--user %s: no such user '%s'", spec, name);
        return -1;
    }
    if (colon != NULL && lookup_group(spec, colon + 1, &u->gid) < 0)
        return -1;
    return 0;
}

int cli_user_become(const struct cli_user *u)
{
    /* Groups first: once the uid is dropped they can no longer change. */
    if (setgroups(0, NULL) < 0 || setgid(u->gid) < 0 || setuid(u->uid) < 0) {
        cli_error("--user %s: %s", u->spec, sk_strerror(-errno));
        return -1;
    }
    /* A root (or a group) that could come back would make the drop
     * pointless. */
    if (getgid() != u->gid || getegid() != u->gid || getgroups(0, NULL) != 0 ||
        (u->uid != 0 && (setuid(0) == 0 || (u->gid != 0 && setgid(0) == 0))) ||
        getuid() != u->uid || geteuid() != u->uid) {
        cli_error("--user %s: privileges could not be dropped", u->spec);
        return -1;
    }
    return 0;
}
