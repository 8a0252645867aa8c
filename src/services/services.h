/* services.h -- the built-in services of `sockit serve`. Each service is
 * one file written against <sockit.h> alone, so each is also an example
 * of the library: a name, a summary and a struct sk_handler. */
#ifndef SOCKIT_SERVICES_H
#define SOCKIT_SERVICES_H

#include <stdint.h>
#include <time.h>

#include <sockit.h>

/* What the command line tells the services; sk_server_data() of every
 * server that runs a service points at one. */
struct service_opts {
    size_t max_line;          /* longest line of line-based services */
    const char *exec_cmd;     /* --exec: the shell command */
    unsigned exec_timeout_ms; /* --exec on datagrams: kill after this */
    void *state;              /* the running service's own */
};

struct service {
    const char *name;
    const char *summary;
    const struct sk_handler *handler;
    bool single_worker; /* shared state: one loop serves every client */
    int (*setup)(struct service_opts *opts);
    void (*teardown)(struct service_opts *opts);
};

extern const struct service service_timestamp;
extern const struct service service_echo;
extern const struct service service_discard;
extern const struct service service_daytime;
extern const struct service service_time;
extern const struct service service_chargen;
extern const struct service service_chat;
extern const struct service service_exec;

/* The services `-s NAME` can name, NULL-terminated; exec is not one. */
extern const struct service *const services[];
const struct service *service_find(const char *name);
bool service_has_stream(const struct service *svc);
bool service_has_dgram(const struct service *svc);

static inline struct service_opts *service_opts_of(struct sk_server *srv)
{
    return sk_server_data(srv);
}

/* clock.c: the dates the services send. */
#define CTIME_LEN 24 /* "Tue Nov 24 06:43:31 2026" */
/* The local time now in ctime form without newline, in out[CTIME_LEN+1].
 * Formatted once a second per thread. */
const char *clock_ctime_now(void);
/* Seconds since 1900-01-01 UTC, modulo 2^32, as RFC 868 sends them. */
uint32_t clock_rfc868(time_t unix_seconds);
/* The 4 bytes of RFC 868 for unix_seconds, big-endian. */
void clock_rfc868_bytes(time_t unix_seconds, unsigned char out[4]);

/* chargen.c: the RFC 864 pattern as an endless stream. */
#define CHARGEN_LINE 74 /* 72 characters and CRLF */
#define CHARGEN_CYCLE (95 * CHARGEN_LINE)
/* Copies len bytes of the stream from offset pos (mod the cycle). */
void chargen_fill(char *out, size_t len, size_t pos);

/* chat_cmd.c: what a chat line asks for (the CR already dropped). */
#define CHAT_NICK_MAX 64 /* longest name /nick takes */
enum chat_cmd {
    CHAT_TEXT,    /* arg: the whole line */
    CHAT_NICK,    /* /nick NAME; arg: NAME, maybe empty */
    CHAT_WHO,     /* /who; arg: the rest, ignored */
    CHAT_ME,      /* /me ACTION; arg: ACTION */
    CHAT_QUIT,    /* /quit; arg: the rest, ignored */
    CHAT_UNKNOWN, /* any other /word; arg: "/word" */
};
struct chat_arg {
    const char *text; /* inside the line */
    size_t len;
};
enum chat_cmd chat_parse(const char *line, size_t len, struct chat_arg *arg);
/* 1..CHAT_NICK_MAX bytes, none a control, space, DEL or ':', and not
 * "unix#...": never a name a member gets on joining (an endpoint). */
bool chat_valid_nick(const char *name, size_t len);
/* Copies in to out (NUL-terminated, cut to fit size) with control bytes,
 * DEL and backslash written as \xNN. Returns the length written. */
size_t chat_escape(char *out, size_t size, const char *in, size_t len);

#endif
