/* endpoint_options.c -- the options after an endpoint, ",tls,cert=FILE":
 * each checked for its value here, and for whether it applies to the
 * kind of endpoint and to the side (listening, connecting). */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

enum value_kind { FLAG, TEXT, HOST, VERIFY, ALPN, PROXY, MODE };

static const struct option_info {
    const char *name;
    unsigned bit;
    enum value_kind kind;
    size_t off; /* of the value in struct sk_endpoint_options */
    size_t size;
} options[] = {
#define TEXT_FIELD(f)                                                          \
    offsetof(struct sk_endpoint_options, f),                                   \
        sizeof(((struct sk_endpoint_options *)0)->f)
    {"tls", SK_OPT_TLS, FLAG, 0, 0},
    {"cert", SK_OPT_CERT, TEXT, TEXT_FIELD(cert)},
    {"key", SK_OPT_KEY, TEXT, TEXT_FIELD(key)},
    {"ca", SK_OPT_CA, TEXT, TEXT_FIELD(ca)},
    {"verify", SK_OPT_VERIFY, VERIFY, 0, 0},
    {"sni", SK_OPT_SNI, HOST, TEXT_FIELD(sni)},
    {"alpn", SK_OPT_ALPN, ALPN, TEXT_FIELD(alpn)},
    {"proxy", SK_OPT_PROXY, PROXY, 0, 0},
    {"mode", SK_OPT_MODE, MODE, 0, 0},
#undef TEXT_FIELD
};

#define NOPTIONS (sizeof(options) / sizeof(options[0]))

/* Messages that name an option live here until the thread's next call. */
static __thread char why_buf[192];

/* Sets *why to fmt with the option's name (at most 32 bytes, anything not
 * printable shown as '?'), returns -EINVAL. */
static int say(const char **why, const char *fmt, const char *name, size_t len)
{
    char shown[33];
    size_t n = len < 32 ? len : 32;

    for (size_t i = 0; i < n; i++)
        shown[i] = name[i] > 0x20 && name[i] < 0x7f ? name[i] : '?';
    shown[n] = '\0';
    snprintf(why_buf, sizeof(why_buf), fmt, shown);
    if (why != NULL)
        *why = why_buf;
    return -EINVAL;
}

static int fail_static(const char **why, const char *msg)
{
    if (why != NULL)
        *why = msg;
    return -EINVAL;
}

static const struct option_info *option_find(const char *name, size_t len)
{
    for (size_t i = 0; i < NOPTIONS; i++)
        if (strlen(options[i].name) == len &&
            memcmp(options[i].name, name, len) == 0)
            return &options[i];
    return NULL;
}

/* Decodes one value (up to an unescaped comma) into out[size]. Returns
 * the characters of text it took, -1 if too long, -2 for a bad escape. */
static ssize_t copy_value(char *out, size_t size, const char *text)
{
    size_t n = 0, used;
    const char *p;
    int byte;

    for (p = text; *p != '\0' && *p != ','; p += used) {
        used = 1;
        byte = (unsigned char)*p;
        if (*p == '\\' && ((byte = sk__endpoint_unescape(p, &used)) <= 0))
            return -2;
        if (n + 1 >= size)
            return -1;
        out[n++] = (char)byte;
    }
    out[n] = '\0';
    return p - text;
}

static bool valid_host(const char *s)
{
    size_t n = strlen(s);

    return n > 0 && n <= 253 &&
           strspn(s, "abcdefghijklmnopqrstuvwxyz"
                     "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") == n;
}

/* "h2:http/1.1": protocols of 1..255 printable bytes, ':' between. */
static bool valid_alpn(const char *s)
{
    size_t len = 0;

    for (const char *p = s;; p++) {
        if (*p == ':' || *p == '\0') {
            if (len == 0 || len > 255)
                return false;
            if (*p == '\0')
                return true;
            len = 0;
        } else if (*p <= 0x20 || *p >= 0x7f) {
            return false;
        } else {
            len++;
        }
    }
}

static int parse_mode(const char *s, unsigned *mode)
{
    unsigned v = 0;

    if (*s == '\0' || strlen(s) > 4 || strspn(s, "01234567") != strlen(s))
        return -1;
    for (; *s != '\0'; s++)
        v = v * 8 + (unsigned)(*s - '0');
    if (v > 0777)
        return -1;
    *mode = v;
    return 0;
}

/* Checks and stores one value; value is "" for an option without '='. */
static int set_value(const struct option_info *o, struct sk_endpoint *ep,
                     struct sk_endpoint_options *opts, const char *value,
                     bool has_value, const char **why)
{
    static const char *const proxies[] = {"v1", "v2", "any"};

    if (o->kind == FLAG)
        return has_value ? say(why, "endpoint option \"%s\" takes no value",
                               o->name, strlen(o->name))
                         : (ep->tls = true, 0);
    if (!has_value || *value == '\0')
        return say(why, "endpoint option \"%s\" needs a value", o->name,
                   strlen(o->name));
    switch (o->kind) {
    case VERIFY:
        if (strcmp(value, "none") != 0)
            return say(why, "endpoint option \"%s\" must be verify=none",
                       o->name, strlen(o->name));
        return 0;
    case PROXY:
        for (size_t i = 0; i < 3; i++)
            if (strcmp(value, proxies[i]) == 0)
                return ep->proxy = (uint8_t)(SK_PROXY_V1 + i), 0;
        return say(why, "endpoint option \"%s\" must be v1, v2 or any", o->name,
                   strlen(o->name));
    case MODE:
        if (parse_mode(value, &opts->mode) < 0)
            return say(why,
                       "endpoint option \"%s\" must be an octal mode "
                       "such as 660",
                       o->name, strlen(o->name));
        return 0;
    case HOST:
        if (!valid_host(value))
            return say(why, "endpoint option \"%s\" must be a host name",
                       o->name, strlen(o->name));
        break;
    case ALPN:
        if (!valid_alpn(value))
            return say(why,
                       "endpoint option \"%s\" must be protocols "
                       "separated by ':'",
                       o->name, strlen(o->name));
        break;
    default:
        break;
    }
    strcpy((char *)opts + o->off, value);
    return 0;
}

/* Parses one "NAME[=VALUE]" at text; returns the characters it took. */
static ssize_t parse_one(const char *text, struct sk_endpoint *ep,
                         struct sk_endpoint_options *opts, const char **why)
{
    char value[SK_OPTION_MAX + 1];
    size_t nlen = strcspn(text, "=,");
    const struct option_info *o = option_find(text, nlen);
    bool has_value = text[nlen] == '=';
    ssize_t used = 0;
    int err;

    if (nlen == 0)
        return say(why, "empty endpoint option%s", "", 0);
    if (o == NULL)
        return say(why, "unknown endpoint option \"%s\"", text, nlen);
    if (opts->given & o->bit)
        return say(why, "endpoint option \"%s\" given twice", o->name, nlen);
    if (has_value) {
        size_t size = o->size > 0 ? o->size : sizeof(value);
        used = copy_value(value, size, text + nlen + 1);
        if (used == -1)
            return say(why, "endpoint option \"%s\" is too long", o->name,
                       nlen);
        if (used == -2)
            return say(why,
                       "bad escape in endpoint option \"%s\" "
                       "(write \\\\ \\, or \\xNN)",
                       o->name, nlen);
        used++; /* the '=' */
    } else {
        value[0] = '\0';
    }
    err = set_value(o, ep, opts, value, has_value, why);
    if (err < 0)
        return err;
    opts->given |= o->bit;
    return (ssize_t)nlen + used;
}

int sk__endpoint_parse_options(struct sk_endpoint *ep,
                               struct sk_endpoint_options *opts,
                               const char *text, const char **why)
{
    const char *p = text;
    ssize_t n;

    while (*p == ',') {
        p++;
        n = parse_one(p, ep, opts, why);
        if (n < 0)
            return (int)n;
        p += n;
    }
    return 0;
}

/* The options that change the protocol: ",tls" (unless the scheme says
 * it) and ",proxy=VERSION". */
int sk__endpoint_format_options(const struct sk_endpoint *ep, bool tls_shown,
                                char *out, size_t size)
{
    static const char *const proxies[] = {"", ",proxy=v1", ",proxy=v2",
                                          ",proxy=any"};

    return snprintf(out, size, "%s%s", ep->tls && !tls_shown ? ",tls" : "",
                    ep->proxy <= SK_PROXY_ANY ? proxies[ep->proxy] : "");
}

/* --------------------------------------------------------- applying */

static int check_tls(const struct sk_endpoint_options *opts, bool listening,
                     const char **why)
{
    const char *name = opts->given & SK_OPT_VERIFY ? "verify" : "sni";

    if (listening && (opts->given & (SK_OPT_VERIFY | SK_OPT_SNI)))
        return say(why,
                   "endpoint option \"%s\" applies to connecting "
                   "endpoints only",
                   name, strlen(name));
    if ((opts->given & SK_OPT_KEY) && !(opts->given & SK_OPT_CERT))
        return say(why, "endpoint option \"%s\" needs cert=FILE", "key", 3);
    if (listening && !(opts->given & SK_OPT_CERT))
        return say(why, "%s needs cert=FILE when listening", "tls", 3);
    return 0;
}

/* What applies to the kinds of v0.2: fd: and sd: only listen, and their
 * socket files are not sockit's; unixpacket speaks messages, which TLS
 * and the PROXY protocol (byte streams) cannot carry. */
static int check_kind(const struct sk_endpoint *ep,
                      const struct sk_endpoint_options *opts, bool listening,
                      const char **why)
{
    if (ep->scheme == SK_FD && !listening)
        return fail_static(why, "fd:N can only listen (it names an inherited "
                                "socket)");
    if (ep->scheme == SK_SD && !listening)
        return fail_static(why, "sd: can only listen (it names sockets "
                                "passed by systemd)");
    if ((opts->given & SK_OPT_MODE) && sk__endpoint_inherited(ep))
        return say(why,
                   "endpoint option \"%s\" does not apply to inherited "
                   "sockets (their files are not sockit's)",
                   "mode", 4);
    if (ep->scheme == SK_UNIXPACKET && (ep->tls || ep->proxy))
        return say(why,
                   "endpoint option \"%s\" does not apply to unixpacket "
                   "endpoints (they keep message boundaries)",
                   ep->tls ? "tls" : "proxy", ep->tls ? 3 : 5);
    return 0;
}

int sk_endpoint_check_options(const struct sk_endpoint *ep,
                              const struct sk_endpoint_options *opts,
                              bool listening, const char **why)
{
    static const struct sk_endpoint_options none;
    const unsigned tls_only = SK_OPT_CERT | SK_OPT_KEY | SK_OPT_CA |
                              SK_OPT_VERIFY | SK_OPT_SNI | SK_OPT_ALPN;
    bool stream = sk_endpoint_is_stream(ep);
    int err;

    if (opts == NULL)
        opts = &none;
    if ((err = check_kind(ep, opts, listening, why)) < 0)
        return err;
    if (ep->tls && !stream)
        return say(why,
                   "endpoint option \"%s\" applies to stream endpoints "
                   "only",
                   "tls", 3);
    if (ep->proxy != SK_PROXY_NONE && !stream)
        return say(why,
                   "endpoint option \"%s\" applies to stream endpoints "
                   "only",
                   "proxy", 5);
    if (ep->proxy == SK_PROXY_ANY && !listening)
        return say(why,
                   "endpoint option \"%s\" must be v1 or v2 when "
                   "connecting",
                   "proxy", 5);
    if ((opts->given & SK_OPT_MODE) && !sk_endpoint_is_unix(ep))
        return say(why,
                   "endpoint option \"%s\" applies to UNIX endpoints "
                   "only",
                   "mode", 4);
    if ((opts->given & SK_OPT_MODE) && ep->path[0] == '@')
        return say(why,
                   "endpoint option \"%s\" does not apply to an "
                   "abstract name (it has no file)",
                   "mode", 4);
    if ((opts->given & SK_OPT_MODE) && !listening)
        return say(why,
                   "endpoint option \"%s\" applies to listening "
                   "endpoints only",
                   "mode", 4);
    for (size_t i = 0; i < NOPTIONS; i++)
        if ((opts->given & options[i].bit & tls_only) && !ep->tls)
            return say(why, "endpoint option \"%s\" needs tls", options[i].name,
                       strlen(options[i].name));
    return ep->tls ? check_tls(opts, listening, why) : 0;
}
