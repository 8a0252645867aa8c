/* chat.c -- one room per server: each line a client sends reaches every
 * other client as "[NAME] TEXT\n". The room is shared state, so the
 * service runs on a single worker.
 *
 * Flow control, line by line: a member whose queue passes half its output
 * limit is congested. After each line, a sender finding any member
 * congested is paused (its unread input kept by its line splitter) and
 * held (not read from) until the room drains; a read that arrives while
 * the room is congested is kept whole, not a line of it sent. Held senders
 * go on in the order they were paused, from a timer, never from inside
 * another member's callback. So a member's queue stays under half its
 * limit plus one line, however many send at once, and a reader slower than
 * a flood is not dropped. Notices (joins, leaves, renames), which anyone
 * can cause, are skipped for a member they would take past its limit. A
 * congested member that does not drain within CHAT_STALL_MS is not reading
 * and is dropped, as is one whose queue a line would take past the limit:
 * a client that does not read never holds the others for long.
 *
 * On a message connection (unixpacket:) each message is whole lines: its
 * LF-separated pieces are lines, one at its end without a LF too, so a
 * message never runs into the next and a LF inside one cannot pass a
 * forged "[NAME] " line to the stream members. Each line and notice a
 * member of that kind is sent is one message, without its LF. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "services.h"

/* How long a congested member may take to drain its queue. */
#define CHAT_STALL_MS 1000
/* The most of a refused name or command echoed back (before escaping). */
#define ECHO_MAX 64

struct member;

/* Queues for m the line a + b + e, which ends in its LF. */
typedef int (*put_fn)(struct member *m, const char *a, size_t alen,
                      const char *b, size_t blen, const char *e, size_t elen);
/* Takes what m sent; returns as sk_lines_feed(). */
typedef int (*take_fn)(struct member *m, const char *data, size_t len);

struct member {
    struct sk_conn *c;
    put_fn put;   /* chosen at open: by bytes or by message */
    take_fn take; /* likewise */
    struct room *room;
    struct member *prev, *next;           /* the room's members */
    struct member *held_prev, *held_next; /* the room's held senders */
    struct sk_lines lines;
    struct sk_timer stall;
    bool congested; /* queue over half the limit */
    bool held;      /* paused and held until the room drains */
    bool eof;       /* the peer sent its EOF */
    char name[SK_ENDPOINT_STRLEN];
};

struct room {
    struct member *members;
    struct member *held_head, *held_tail; /* oldest pause first */
    struct sk_timer wake;                 /* lets held senders go on */
    unsigned long unnamed;                /* numbers the unnamed UNIX peers */
    unsigned congested;                   /* members congested now */
    char message[SK_MESSAGE_MAX];         /* put_message()'s, one at a time */
};

static int on_line(void *ctx, const char *line, size_t len);

/* ------------------------------------------------------- flow control */

/* Pauses m's input until the room drains; it goes on after those paused
 * before it. */
static void hold(struct member *m)
{
    struct room *room = m->room;

    if (m->held)
        return;
    m->held = true;
    sk_conn_hold_input(m->c, true);
    m->held_next = NULL;
    m->held_prev = room->held_tail;
    if (room->held_tail != NULL)
        room->held_tail->held_next = m;
    else
        room->held_head = m;
    room->held_tail = m;
}

static void unlink_held(struct member *m)
{
    struct room *room = m->room;

    if (!m->held)
        return;
    m->held = false;
    if (m->held_prev != NULL)
        m->held_prev->held_next = m->held_next;
    else
        room->held_head = m->held_next;
    if (m->held_next != NULL)
        m->held_next->held_prev = m->held_prev;
    else
        room->held_tail = m->held_prev;
    m->held_prev = m->held_next = NULL;
}

/* Passes on m's kept lines (after its EOF, the last piece too); reading
 * from it goes on once they are all passed and the room is clear. */
static void go_on(struct member *m)
{
    int ret = m->eof ? sk_lines_finish(&m->lines, on_line, m)
                     : sk_lines_resume(&m->lines, on_line, m);

    if (ret == SK_LINES_PAUSE)
        hold(m);
    else if (ret != 0 || m->eof)
        sk_conn_close(m->c);
    else
        sk_conn_hold_input(m->c, false);
}

/* The room drained: held senders go on, oldest first, until one of them
 * congests it again. */
static void on_wake(struct sk_timer *t)
{
    struct room *room = t->data;

    while (room->congested == 0 && room->held_head != NULL) {
        struct member *m = room->held_head;
        unlink_held(m);
        if (!sk_conn_is_closing(m->c))
            go_on(m);
    }
}

static void congest(struct member *m)
{
    m->congested = true;
    m->room->congested++;
    if (sk_timer_start(sk_conn_loop(m->c), &m->stall, CHAT_STALL_MS, 0) < 0)
        sk_conn_abort(m->c); /* no timer: a stall could hold the room */
}

static void uncongest(struct member *m)
{
    struct room *room = m->room;

    if (!m->congested)
        return;
    m->congested = false;
    sk_timer_stop(&m->stall);
    if (--room->congested == 0 && room->held_head != NULL &&
        sk_timer_start(sk_conn_loop(m->c), &room->wake, 0, 0) < 0)
        on_wake(&room->wake); /* no timer: go on now rather than never */
}

static void on_stall(struct sk_timer *t)
{
    struct member *m = t->data;

    sk_conn_abort(m->c); /* not reading: drop it */
}

/* ------------------------------------------------------------ sending */

/* What send_to() does with what would take a member past its limit. */
enum overflow {
    DROP_MEMBER, /* a line: the member is not reading, drop it */
    SKIP,        /* a notice: the member misses it */
};

static int put_bytes(struct member *m, const char *a, size_t alen,
                     const char *b, size_t blen, const char *e, size_t elen)
{
    int err;

    if ((err = sk_conn_write(m->c, a, alen)) < 0 ||
        (err = sk_conn_write(m->c, b, blen)) < 0)
        return err;
    return sk_conn_write(m->c, e, elen);
}

/* Appends what of n bytes fits the room's message buffer after used. */
static size_t add_piece(struct room *room, size_t used, const char *p, size_t n)
{
    size_t room_left = sizeof(room->message) - used;

    n = n < room_left ? n : room_left;
    memcpy(room->message + used, p, n);
    return used + n;
}

/* The line as one message without its LF, cut to SK_MESSAGE_MAX: a long
 * name before a line of --max-line may not fit. */
static int put_message(struct member *m, const char *a, size_t alen,
                       const char *b, size_t blen, const char *e, size_t elen)
{
    struct room *room = m->room;
    size_t n = add_piece(room, 0, a, alen);

    n = add_piece(room, n, b, blen);
    n = add_piece(room, n, e, elen);
    if (n > 0 && room->message[n - 1] == '\n')
        n--;
    return sk_conn_write(m->c, room->message, n);
}

/* Queues a + b + c for m. Returns whether it was queued. */
static bool send_to(struct member *m, enum overflow of, const char *a,
                    size_t alen, const char *b, size_t blen, const char *c,
                    size_t clen)
{
    if (sk_conn_is_closing(m->c))
        return false;
    if (sk_conn_pending(m->c) + alen + blen + clen > sk_conn_output_max(m->c)) {
        if (of == DROP_MEMBER)
            sk_conn_abort(m->c); /* a slow reader: drop it */
        return false;
    }
    if (m->put(m, a, alen, b, blen, c, clen) < 0) {
        sk_conn_abort(m->c);
        return false;
    }
    if (!m->congested && sk_conn_pending(m->c) > sk_conn_output_max(m->c) / 2)
        congest(m);
    return true;
}

static void reply(struct member *m, const char *text)
{
    send_to(m, SKIP, text, strlen(text), "", 0, "", 0);
}

/* Sends a + b + c to everyone in the room but from. */
static void broadcast(struct room *room, const struct member *from,
                      enum overflow of, const char *a, const char *b,
                      size_t blen, const char *c)
{
    for (struct member *m = room->members; m != NULL; m = m->next)
        if (m != from)
            send_to(m, of, a, strlen(a), b, blen, c, strlen(c));
}

static void announce(struct member *who, const char *what)
{
    broadcast(who->room, who, SKIP, "* ", who->name, strlen(who->name), what);
}

/* ----------------------------------------------------------- commands */

static bool name_taken(const struct member *m, const char *name, size_t len)
{
    for (const struct member *o = m->room->members; o != NULL; o = o->next)
        if (o != m && strlen(o->name) == len && memcmp(o->name, name, len) == 0)
            return true;
    return false;
}

/* "* nick NAME: WHY" to m alone; an invalid NAME is escaped and cut. */
static void refuse_nick(struct member *m, const char *name, size_t len,
                        const char *why)
{
    char shown[4 * ECHO_MAX + 1], note[sizeof(shown) + 32];

    chat_escape(shown, sizeof(shown), name, len < ECHO_MAX ? len : ECHO_MAX);
    snprintf(note, sizeof(note), "* nick %s: %s\n", shown, why);
    reply(m, note);
}

static void rename_member(struct member *m, const char *name, size_t len)
{
    char note[2 * sizeof(m->name) + 16];
    int n;

    if (!chat_valid_nick(name, len)) {
        refuse_nick(m, name, len, "invalid");
        return;
    }
    if (name_taken(m, name, len)) {
        refuse_nick(m, name, len, "taken");
        return;
    }
    n = snprintf(note, sizeof(note), "* %s is now %.*s\n", m->name, (int)len,
                 name);
    memcpy(m->name, name, len);
    m->name[len] = '\0';
    broadcast(m->room, m, SKIP, "", note, (size_t)n, "");
}

/* The list stops where it would take m past its limit. */
static void who(struct member *m)
{
    for (struct member *o = m->room->members; o != NULL; o = o->next)
        if (!send_to(m, SKIP, "* ", 2, o->name, strlen(o->name), "\n", 1))
            break;
}

static void unknown(struct member *m, const char *word, size_t len)
{
    char shown[4 * ECHO_MAX + 1], note[sizeof(shown) + 32];

    chat_escape(shown, sizeof(shown), word, len < ECHO_MAX ? len : ECHO_MAX);
    snprintf(note, sizeof(note), "* unknown command %s\n", shown);
    reply(m, note);
}

/* One line from m. Returns SK_LINES_PAUSE when the room is congested
 * after it, so that m sends no more until the room drains. */
static int on_line(void *ctx, const char *line, size_t len)
{
    struct member *m = ctx;
    char head[sizeof(m->name) + 3];
    struct chat_arg arg;

    if (len > 0 && line[len - 1] == '\r')
        len--;
    switch (chat_parse(line, len, &arg)) {
    case CHAT_TEXT:
        snprintf(head, sizeof(head), "[%s] ", m->name);
        broadcast(m->room, m, DROP_MEMBER, head, line, len, "\n");
        break;
    case CHAT_NICK:
        rename_member(m, arg.text, arg.len);
        break;
    case CHAT_WHO:
        who(m);
        break;
    case CHAT_ME:
        snprintf(head, sizeof(head), "* %s ", m->name);
        broadcast(m->room, m, DROP_MEMBER, head, arg.text, arg.len, "\n");
        break;
    case CHAT_QUIT:
        return -ECONNRESET; /* stops the feed; the caller closes */
    case CHAT_UNKNOWN:
        unknown(m, arg.text, arg.len);
        break;
    }
    return m->room->congested > 0 ? SK_LINES_PAUSE : 0;
}

/* ------------------------------------------------------------ members */

static void name_member(struct member *m)
{
    const struct sk_endpoint *peer = sk_conn_peer(m->c);

    if (peer == NULL || (sk_endpoint_is_unix(peer) && peer->path[0] == '\0') ||
        sk_endpoint_format(peer, m->name, sizeof(m->name)) < 0)
        snprintf(m->name, sizeof(m->name), "unix#%lu", ++m->room->unnamed);
}

/* Feeds a read to m's splitter, or keeps it whole while the room is
 * congested: read in the same round as a line that filled the room, not
 * a line of it goes out before the room drains. */
static int take_bytes(struct member *m, const char *data, size_t len)
{
    if (m->room->congested > 0)
        return sk_lines_keep(&m->lines, data, len) < 0 ? -ENOMEM
                                                       : SK_LINES_PAUSE;
    return sk_lines_feed(&m->lines, data, len, on_line, m);
}

/* A message is whole lines: a last piece without its LF ends with it
 * (after a pause, its LF is kept with it). */
static int take_message(struct member *m, const char *data, size_t len)
{
    int ret = take_bytes(m, data, len);

    if ((ret == 0 || ret == SK_LINES_PAUSE) && len > 0 && data[len - 1] != '\n')
        ret = take_bytes(m, "\n", 1);
    return ret;
}

static int chat_open(struct sk_conn *c)
{
    struct service_opts *opts = service_opts_of(sk_conn_server(c));
    struct member *m = calloc(1, sizeof(*m));

    if (m == NULL)
        return -1;
    m->c = c;
    m->room = opts->state;
    m->put = sk_conn_keeps_messages(c) ? put_message : put_bytes;
    m->take = sk_conn_keeps_messages(c) ? take_message : take_bytes;
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
    int ret = m->take(m, data, len);

    if (ret == SK_LINES_PAUSE)
        hold(m);
    else if (ret != 0)
        sk_conn_close(c); /* a line over --max-line, /quit, no memory */
}

static void chat_drain(struct sk_conn *c)
{
    uncongest(sk_conn_data(c));
}

/* An EOF while held is finished when the member goes on. */
static void chat_eof(struct sk_conn *c)
{
    struct member *m = sk_conn_data(c);

    m->eof = true;
    if (!m->held)
        go_on(m);
}

static void chat_close(struct sk_conn *c, int status)
{
    struct member *m = sk_conn_data(c);
    struct room *room;

    if (m == NULL)
        return;
    room = m->room;
    if (m->prev != NULL)
        m->prev->next = m->next;
    else
        room->members = m->next;
    if (m->next != NULL)
        m->next->prev = m->prev;
    unlink_held(m);
    uncongest(m);
    announce(m, " left\n");
    if (room->members == NULL)
        sk_timer_stop(&room->wake);
    sk_lines_release(&m->lines);
    free(m);
}

static int chat_setup(struct service_opts *opts)
{
    struct room *room = calloc(1, sizeof(*room));

    if (room == NULL)
        return -ENOMEM;
    sk_timer_init(&room->wake, on_wake);
    room->wake.data = room;
    opts->state = room;
    return 0;
}

static void chat_teardown(struct service_opts *opts)
{
    struct room *room = opts->state;

    if (room != NULL)
        sk_timer_stop(&room->wake);
    free(room);
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
