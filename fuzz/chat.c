/* chat.c -- libFuzzer target for the chat command parser (chat_cmd.c):
 * every line is text or one command, its argument lies inside the line
 * where the grammar puts it, names are valid exactly when printable and
 * short, and an escaped echo holds no control byte and unescapes to the
 * bytes it shows. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../src/services/services.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int ok)
{
    if (!ok)
        __builtin_trap();
}

static const char *const words[] = {[CHAT_NICK] = "nick",
                                    [CHAT_WHO] = "who",
                                    [CHAT_ME] = "me",
                                    [CHAT_QUIT] = "quit"};

static void check_parse(const char *line, size_t len)
{
    const char *space = memchr(line, ' ', len);
    size_t wend = space != NULL ? (size_t)(space - line) : len;
    struct chat_arg arg;
    enum chat_cmd cmd = chat_parse(line, len, &arg);

    require(arg.text >= line && arg.len <= len);
    require((size_t)(arg.text - line) <= len - arg.len);
    if (len == 0 || line[0] != '/') {
        require(cmd == CHAT_TEXT && arg.text == line && arg.len == len);
        return;
    }
    require(cmd != CHAT_TEXT);
    if (cmd == CHAT_UNKNOWN) {
        require(arg.text == line && arg.len == wend);
        for (size_t i = CHAT_NICK; i <= CHAT_QUIT; i++)
            require(strlen(words[i]) != wend - 1 ||
                    memcmp(words[i], line + 1, wend - 1) != 0);
        return;
    }
    require(cmd >= CHAT_NICK && cmd <= CHAT_QUIT);
    require(strlen(words[cmd]) == wend - 1);
    require(memcmp(words[cmd], line + 1, wend - 1) == 0);
    if (space == NULL)
        require(arg.len == 0);
    else
        require(arg.text == space + 1 && arg.len == len - wend - 1);
}

static void check_nick(const char *name, size_t len)
{
    bool valid = len > 0 && len <= CHAT_NICK_MAX &&
                 !(len >= 5 && memcmp(name, "unix#", 5) == 0);

    for (size_t i = 0; i < len && valid; i++)
        valid =
            (unsigned char)name[i] > ' ' && name[i] != 0x7f && name[i] != ':';
    require(chat_valid_nick(name, len) == valid);
}

static int hex_value(char c)
{
    return c >= 'a' ? c - 'a' + 10 : c - '0';
}

/* Escapes in into a buffer of size bytes and undoes it: a prefix of in. */
static void check_escape(const char *in, size_t len, size_t size)
{
    char out[4 * 256 + 1];
    size_t n = chat_escape(out, size, in, len), at = 0;

    require(n < size && out[n] == '\0' && strlen(out) == n);
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)out[i];

        require(b >= ' ' && b != 0x7f);
        if (b == '\\') {
            require(i + 3 < n && out[i + 1] == 'x');
            b = (unsigned char)(hex_value(out[i + 2]) << 4 |
                                hex_value(out[i + 3]));
            i += 3;
        }
        require(at < len && (unsigned char)in[at] == b);
        at++;
    }
    if (size > 4 * len)
        require(at == len); /* room for all: nothing cut */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *line = (const char *)data;

    if (size > 256)
        return 0;
    check_parse(line, size);
    check_nick(line, size);
    check_escape(line, size, 4 * 256 + 1);
    if (size > 0)
        check_escape(line + 1, size - 1, 1 + data[0] % 64);
    return 0;
}
