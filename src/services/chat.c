/* chat.c -- one room per server: each line a client sends reaches every
 * other client as "[NAME] TEXT\n". The room is shared state, so the
 * service runs on a single worker.
 *
 * Flow control: a member whose queue passes half its output limit is
 * congested; senders are held (not read from) until it drains, so a reader
 * slower than a flood is not dropped. A congested member that does not
 * drain within CHAT_STALL_MS is not reading and is dropped, as is one whose
 * queue would pass the limit: a client that does not read never holds the
 * others for long. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "services.h"

/* Longest name a client may take with /nick. */
#define NICK_MAX 64
/* How long a congested member may take to drain its queue. */
#define CHAT_STALL_MS 1000

struct member {
    struct sk_conn *c;
    struct room *room;
    struct member *prev, *next;
    struct sk_lines lines;
    struct sk_timer stall;
    bool congested; /* queue over half the limit */
    bool held;      /* input held until the room drains */
    char name[SK_ENDPOINT_STRLEN];
};

struct room {
    struct member *members;
    unsigned long unnamed; /* numbers the unnamed UNIX peers */
    unsigned congested;    /* members congested now */
};

static void release_senders(struct room *room)
{
    for (struct member *m = room->members; m != NULL; m = m->next) {
        if (m->held) {
            m->held = false;
            sk_conn_hold_input(m->c, false);
        }
    }
}

static void congest(struct member *m)
{
    m->congested = true;
    m->room->congested++;
    sk_timer_start(sk_conn_loop(m->c), &m->stall, CHAT_STALL_MS, 0);
}

static void uncongest(struct member *m)
{
    if (!m->congested)
        return;
    m->congested = false;
    sk_timer_stop(&m->stall);
    if (--m->room->congested == 0)
        release_senders(m->room);
}

static void on_stall(struct sk_timer *t)
{
    struct member *m = t->data;

    sk_conn_abort(m->c); /* not reading: drop it */
}

static void send_to(struct member *m, const char *a, size_t alen, const char *b,
                    size_t blen, const char *c, size_t clen)
{
    if (sk_conn_is_closing(m->c))
        return;
    if (sk_conn_pending(m->c) + alen + blen + clen > sk_conn_output_max(m->c)) {
        sk_conn_abort(m->c); /* a slow reader: drop it */
        return;
    }
    if (sk_conn_write(m->c, a, alen) < 0 || sk_conn_write(m->c, b, blen) < 0 ||
        sk_conn_write(m->c, c, clen) < 0) {
        sk_conn_abort(m->c);
        return;
    }
    if (!m->congested && sk_conn_pending(m->c) > sk_conn_output_max(m->c) / 2)
        congest(m);
}

/* Sends a + b + c to everyone in the room but from. */
static void broadcast(struct room *room, const struct member *from,
                      const char *a, const char *b, size_t blen, const char *c)
{
    for (struct member *m = room->members; m != NULL; m = m->next)
        if (m != from)
            send_to(m, a, strlen(a), b, blen, c, strlen(c));
}

static void announce(struct member *who, const char *what)
{
    broadcast(who->room, who, "* ", who->name, strlen(who->name), what);
}

static bool valid_nick(const char *name, size_t len)
{
    if (len == 0 || len > NICK_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)name[i] <= ' ' || name[i] == 0x7f)
            return false;
    return true;
}

static void rename_member(struct member *m, const char *name, size_t len)
{
    char note[2 * sizeof(m->name) + 16];
    int n;

    if (!valid_nick(name, len)) {
        sk_conn_write(m->c, "* bad name\n", 11);
        return;
    }
    n = snprintf(note, sizeof(note), "* %s is now %.*s\n", m->name, (int)len,
                 name);
    memcpy(m->name, name, len);
    m->name[len] = '\0';
    broadcast(m->room, m, "", note, (size_t)n, "");
}

static int on_line(void *ctx, const char *line, size_t len)
{
    struct member *m = ctx;
    char head[sizeof(m->name) + 3];

    if (len > 0 && line[len - 1] == '\r')
        len--;
    if (len >= 6 && memcmp(line, "/nick ", 6) == 0) {
        rename_member(m, line + 6, len - 6);
        return 0;
    }
    snprintf(head, sizeof(head), "[%s] ", m->name);
    broadcast(m->room, m, head, line, len, "\n");
    return 0;
}

static void name_member(struct member *m)
{
    const struct sk_endpoint *peer = sk_conn_peer(m->c);

    if (peer == NULL || (sk_endpoint_is_unix(peer) && peer->path[0] == '\0'))
        snprintf(m->name, sizeof(m->name), "unix#%lu", ++m->room->unnamed);
    else
        sk_endpoint_format(peer, m->name, sizeof(m->name));
}

static int chat_open(struct sk_conn *c)
{
    struct service_opts *opts = service_opts_of(sk_conn_server(c));
    struct member *m = calloc(1, sizeof(*m));

    if (m == NULL)
        return -1;
    m->c = c;
    m->room = opts->state;
    sk_lines_init(&m->lines, opts->max_line);
    sk_timer_init(&m->stall, on_stall);
    m->stall.data = m;
    name_member(m);
    sk_conn_set_data(c, m);
    announce(m, " joined\n");
    m->next = m->room->members;
    if (m->next != NULL)
        m->next->prev = m;
    m->room->members = m;
    return 0;
}

static void chat_read(struct sk_conn *c, const char *data, size_t len)
{
    struct member *m = sk_conn_data(c);

    if (sk_lines_feed(&m->lines, data, len, on_line, m) != 0) {
        sk_conn_close(c);
        return;
    }
    if (m->room->congested > 0 && !m->held) {
        m->held = true;
        sk_conn_hold_input(c, true);
    }
}

static void chat_drain(struct sk_conn *c)
{
    uncongest(sk_conn_data(c));
}

static void chat_eof(struct sk_conn *c)
{
    struct member *m = sk_conn_data(c);

    sk_lines_finish(&m->lines, on_line, m);
    sk_conn_close(c);
}

static void chat_close(struct sk_conn *c, int status)
{
    struct member *m = sk_conn_data(c);

    if (m == NULL)
        return;
    if (m->prev != NULL)
        m->prev->next = m->next;
    else
        m->room->members = m->next;
    if (m->next != NULL)
        m->next->prev = m->prev;
    m->held = false;
    uncongest(m);
    announce(m, " left\n");
    sk_lines_release(&m->lines);
    free(m);
}

static int chat_setup(struct service_opts *opts)
{
    opts->state = calloc(1, sizeof(struct room));
    return opts->state != NULL ? 0 : -ENOMEM;
}

static void chat_teardown(struct service_opts *opts)
{
    free(opts->state);
    opts->state = NULL;
}

static const struct sk_handler handler = {
    .on_open = chat_open,
    .on_read = chat_read,
    .on_eof = chat_eof,
    .on_drain = chat_drain,
    .on_close = chat_close,
};

const struct service service_chat = {
    .name = "chat",
    .summary = "one room: each line goes to every other client (stream only)",
    .handler = &handler,
    .single_worker = true,
    .setup = chat_setup,
    .teardown = chat_teardown,
};
