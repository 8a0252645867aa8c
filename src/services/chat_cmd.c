/* chat_cmd.c -- what a chat line asks for: text, or a /word command and
 * its argument. Pure functions, no I/O, so that they can be fuzzed. */
#include <string.h>

#include "services.h"

static const struct {
    const char *word;
    enum chat_cmd cmd;
} commands[] = {
    {"nick", CHAT_NICK},
    {"who", CHAT_WHO},
    {"me", CHAT_ME},
    {"quit", CHAT_QUIT},
};

enum chat_cmd chat_parse(const char *line, size_t len, struct chat_arg *arg)
{
    const char *space;
    size_t wlen;

    if (len == 0 || line[0] != '/') {
        *arg = (struct chat_arg){line, len};
        return CHAT_TEXT;
    }
    space = memchr(line, ' ', len);
    wlen = (space != NULL ? (size_t)(space - line) : len) - 1;
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strlen(commands[i].word) == wlen &&
            memcmp(commands[i].word, line + 1, wlen) == 0) {
            if (space == NULL)
                *arg = (struct chat_arg){line + len, 0};
            else
                *arg = (struct chat_arg){space + 1,
                                         len - (size_t)(space + 1 - line)};
            return commands[i].cmd;
        }
    }
    *arg = (struct chat_arg){line, wlen + 1}; /* the /word itself */
    return CHAT_UNKNOWN;
}

bool chat_valid_nick(const char *name, size_t len)
{
    if (len == 0 || len > CHAT_NICK_MAX)
        return false;
    /* The names members get on joining: taking one would let a nick pass
     * for the next client with that address. */
    if (len >= 5 && memcmp(name, "unix#", 5) == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)name[i] <= ' ' || name[i] == 0x7f || name[i] == ':')
            return false;
    return true;
}

size_t chat_escape(char *out, size_t size, const char *in, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;

    if (size == 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char b = (unsigned char)in[i];
        bool plain = b >= ' ' && b != 0x7f && b != '\\';

        if (n + (plain ? 1 : 4) >= size)
            break;
        if (plain) {
            out[n++] = (char)b;
            continue;
        }
        out[n++] = '\\';
        out[n++] = 'x';
        out[n++] = hex[b >> 4];
        out[n++] = hex[b & 15];
    }
    out[n] = '\0';
    return n;
}
