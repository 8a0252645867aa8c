/* clock.c -- dates for timestamp, daytime and time: the ctime form of the
 * local time, cached per thread for the current second, and RFC 868. */
#include <string.h>

#include "services.h"

/* Seconds from 1900-01-01 to 1970-01-01 (RFC 868). */
#define RFC868_OFFSET 2208988800u

const char *clock_ctime_now(void)
{
    static __thread char text[CTIME_LEN + 1];
    static __thread time_t cached = -1;
    struct timespec ts;
    struct tm tm;

    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    if (ts.tv_sec != cached) {
        localtime_r(&ts.tv_sec, &tm);
        /* ctime's form: the day of the month padded with a space. */
        if (strftime(text, sizeof(text), "%a %b %e %H:%M:%S %Y", &tm) == 0)
            strcpy(text, "Thu Jan  1 00:00:00 1970");
        cached = ts.tv_sec;
    }
    return text;
}

uint32_t clock_rfc868(time_t unix_seconds)
{
    return (uint32_t)((uint64_t)unix_seconds + RFC868_OFFSET);
}

void clock_rfc868_bytes(time_t unix_seconds, unsigned char out[4])
{
    uint32_t v = clock_rfc868(unix_seconds);

    out[0] = (unsigned char)(v >> 24);
    out[1] = (unsigned char)(v >> 16);
    out[2] = (unsigned char)(v >> 8);
    out[3] = (unsigned char)v;
}
