/* bench_report.c -- the report of `sockit bench` and of `--merge`: text
 * for a person, or one JSON object whose `histogram` keeps every count,
 * so that reports of several generators merge without loss. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "cli.h"

/* Sums the threads' counts into r, after their join; r->seconds is set.
 * With --rate, a request of the schedule never sent is an error. */
void bench_collect(const struct bench *b, struct gen *gens, unsigned n,
                   struct result *r)
{
    uint64_t sent;

    histogram_init(&r->hist);
    for (unsigned i = 0; i < n; i++) {
        r->requests += atomic_load(&gens[i].done);
        r->errors += atomic_load(&gens[i].errors);
        r->bytes_down += atomic_load(&gens[i].bytes);
        r->bytes_up += atomic_load(&gens[i].bytes_up);
        r->resumed += atomic_load(&gens[i].resumed);
        histogram_merge(&r->hist, &gens[i].hist);
        if (r->first_error == 0) {
            r->first_error = gens[i].first_error;
            memcpy(r->error_text, gens[i].error_text, sizeof(r->error_text));
        }
    }
    if (r->seconds > 0) {
        r->rps = (double)r->requests / r->seconds;
        r->mbps_up = (double)r->bytes_up / r->seconds / 1e6;
        r->mbps_down = (double)r->bytes_down / r->seconds / 1e6;
    }
    if (b->opts.rate > 0) {
        r->rate_asked = b->opts.rate;
        r->rate_achieved = bench_rate_achieved(b, gens, n, &sent);
        /* Cut short by a signal, the rest of the schedule is no error. */
        if (!b->interrupted && sent < b->scheduled)
            r->unsent = b->scheduled - sent;
        r->errors += r->unsent;
    }
}

/* ", \"tls_version\": ..." for JSON, or a line of text. */
static void report_tls(const struct bench *b, const struct result *r, bool json)
{
    if (b == NULL || b->tls == NULL || !atomic_load(&b->tls_noted))
        return;
    if (json)
        printf(", \"tls_version\": \"%s\", \"tls_cipher\": \"%s\", "
               "\"tls_resumed\": %llu",
               b->tls_version, b->tls_cipher, (unsigned long long)r->resumed);
    else
        printf("tls         %s %s, %llu resumed\n", b->tls_version,
               b->tls_cipher, (unsigned long long)r->resumed);
}

/* The histogram's scheme and its non-empty slots, [slot, count] each. */
static void report_histogram(const struct histogram *h)
{
    const char *sep = "";

    printf(", \"histogram\": {\"unit\": \"us\", \"sub_bits\": %d, "
           "\"total\": %llu, \"max\": %llu, \"counts\": [",
           HIST_SUB_BITS, (unsigned long long)h->total,
           (unsigned long long)h->max);
    for (unsigned i = 0; i < HIST_SLOTS; i++) {
        if (h->counts[i] == 0)
            continue;
        printf("%s[%u, %llu]", sep, i, (unsigned long long)h->counts[i]);
        sep = ", ";
    }
    printf("]}");
}

static void report_json(const struct result *r, const struct bench *b)
{
    const struct histogram *h = &r->hist;

    printf("{\"requests\": %llu, \"errors\": %llu, \"duration_s\": %.3f, "
           "\"requests_per_s\": %.1f, \"mb_per_s\": %.3f, \"mb_per_s_up\": "
           "%.3f, \"mb_per_s_down\": %.3f, \"bytes_sent\": %llu, "
           "\"bytes_received\": %llu",
           (unsigned long long)r->requests, (unsigned long long)r->errors,
           r->seconds, r->rps, r->mbps_up + r->mbps_down, r->mbps_up,
           r->mbps_down, (unsigned long long)r->bytes_up,
           (unsigned long long)r->bytes_down);
    if (r->rate_asked > 0)
        printf(", \"rate_asked\": %.1f, \"rate_achieved\": %.1f", r->rate_asked,
               r->rate_achieved);
    if (r->merged > 0)
        printf(", \"merged\": %u", r->merged);
    printf(", \"latency_us\": {\"p50\": %llu, \"p90\": %llu, \"p99\": %llu, "
           "\"p99_9\": %llu, \"max\": %llu}",
           (unsigned long long)histogram_quantile(h, 0.50),
           (unsigned long long)histogram_quantile(h, 0.90),
           (unsigned long long)histogram_quantile(h, 0.99),
           (unsigned long long)histogram_quantile(h, 0.999),
           (unsigned long long)h->max);
    report_tls(b, r, true);
    report_histogram(h);
    printf("}\n");
}

/* Prints the report on stdout; b is NULL for a merge. */
void bench_report(const struct result *r, bool json, const struct bench *b)
{
    const struct histogram *h = &r->hist;

    if (json) {
        report_json(r, b);
        return;
    }
    if (r->merged > 0)
        printf("merged      %u results\n", r->merged);
    printf("requests/s  %.1f\n", r->rps);
    if (r->rate_asked > 0)
        printf("rate        %.1f/s asked, %.1f/s achieved\n", r->rate_asked,
               r->rate_achieved);
    printf("MB/s        up %.3f  down %.3f  both %.3f\n", r->mbps_up,
           r->mbps_down, r->mbps_up + r->mbps_down);
    printf("latency us  p50 %llu  p90 %llu  p99 %llu  p99.9 %llu  max %llu\n",
           (unsigned long long)histogram_quantile(h, 0.50),
           (unsigned long long)histogram_quantile(h, 0.90),
           (unsigned long long)histogram_quantile(h, 0.99),
           (unsigned long long)histogram_quantile(h, 0.999),
           (unsigned long long)h->max);
    printf("requests    %llu in %.3f s, %llu errors\n",
           (unsigned long long)r->requests, r->seconds,
           (unsigned long long)r->errors);
    report_tls(b, r, false);
}

/* One line for the first error, in words a user of bench reads. */
void bench_report_error(const struct bench *b, const struct result *r)
{
    char text[SK_ENDPOINT_STRLEN];

    sk_endpoint_format(&b->opts.ep, text, sizeof(text));
    if (r->first_error == 0 && r->unsent > 0)
        cli_error("bench %s: %llu requests of the schedule were not sent "
                  "by %d s after its end (%llu errors)",
                  text, (unsigned long long)r->unsent,
                  BENCH_FINISH_GRACE_MS / 1000, (unsigned long long)r->errors);
    else if (r->first_error == -EBADMSG || r->first_error == 0)
        cli_error("bench %s: a reply differed from its request (%llu "
                  "errors)",
                  text, (unsigned long long)r->errors);
    else if (r->error_text[0] != '\0')
        cli_error("bench %s: %s", text, r->error_text);
    else if (r->first_error == -ETIMEDOUT)
        cli_error("bench %s: replies lost or late, or connections not "
                  "opened (%llu errors)",
                  text, (unsigned long long)r->errors);
    else
        cli_error_ep("bench", &b->opts.ep, r->first_error);
}
