/* bench_merge.c -- `sockit bench --merge FILE...`: reads the --json
 * reports of several runs (several generators, several hosts) and prints
 * one: requests, errors and bytes summed, rates summed (each run's own
 * rate: they ran side by side), the duration the longest, and the
 * percentiles from the merged histogram, never from averaged ones. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "bench_json.h"
#include "cli.h"

#define MERGE_FILE_MAX (64u << 20)

/* Reads the whole file ("-": stdin) into a buffer of the caller's.
 * Returns 0, a negative errno, or -EFBIG. */
static int slurp(const char *path, char **text, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    size_t cap = 0, n;
    char *buf = NULL, *grown;
    int err = 0;

    if (f == NULL)
        return -errno;
    errno = 0;
    *len = 0;
    do {
        if (*len == cap) {
            /* Full at the most a file may hold: more only if not at its
             * end (a file of exactly that size is not too large). */
            if (cap == MERGE_FILE_MAX) {
                if (fgetc(f) != EOF)
                    err = -EFBIG;
                break;
            }
            cap = cap == 0 ? 65536 : cap * 2;
            if ((grown = realloc(buf, cap)) == NULL) {
                err = -ENOMEM;
                break;
            }
            buf = grown;
        }
        n = fread(buf + *len, 1, cap - *len, f);
        *len += n;
    } while (n > 0);
    if (err == 0 && ferror(f))
        err = errno != 0 ? -errno : -EIO;
    if (f != stdin)
        fclose(f);
    if (err < 0)
        free(buf);
    else
        *text = buf;
    return err;
}

/* Takes a non-negative integer key; false if missing or not one. */
static bool get_uint(const struct json *obj, const char *key, uint64_t *out)
{
    const struct json *v = json_get(obj, key);

    if (v == NULL || v->type != JSON_NUMBER || !v->integer)
        return false;
    *out = v->u;
    return true;
}

/* Takes a non-negative number; false if missing or not one. */
static bool get_num(const struct json *obj, const char *key, double *out)
{
    const struct json *v = json_get(obj, key);

    if (v == NULL || v->type != JSON_NUMBER || !(v->num >= 0))
        return false;
    *out = v->num;
    return true;
}

/* One [slot, count] pair of the counts, into h; slots must ascend. */
static const char *take_pair(const struct json *pair, struct histogram *h,
                             long *last)
{
    const struct json *slot, *count;

    if (pair->type != JSON_ARRAY || pair->n != 2)
        return "histogram counts: each must be [slot, count]";
    slot = &pair->items[0];
    count = &pair->items[1];
    if (slot->type != JSON_NUMBER || !slot->integer || slot->u >= HIST_SLOTS ||
        (long)slot->u <= *last)
        return "histogram counts: slots must be ascending and in range";
    if (count->type != JSON_NUMBER || !count->integer || count->u == 0 ||
        count->u > UINT64_MAX - h->total)
        return "histogram counts: a count must be a positive integer";
    histogram_add(h, (unsigned)slot->u, count->u);
    *last = (long)slot->u;
    return NULL;
}

/* The histogram of a report: the same bucket scheme as this sockit's,
 * its counts adding up to its total, its max in its highest slot. */
static const char *take_histogram(const struct json *obj, struct histogram *h)
{
    const struct json *hj = json_get(obj, "histogram"), *unit, *counts;
    uint64_t bits, total, max;
    const char *why;
    long last = -1;

    if (hj == NULL || hj->type != JSON_OBJECT)
        return "no histogram (run sockit bench with --json)";
    unit = json_get(hj, "unit");
    if (unit == NULL || unit->type != JSON_STRING ||
        strcmp(unit->str, "us") != 0 || !get_uint(hj, "sub_bits", &bits) ||
        bits != HIST_SUB_BITS)
        return "a histogram of another bucket scheme (unit us, sub_bits 7 "
               "expected)";
    counts = json_get(hj, "counts");
    if (!get_uint(hj, "total", &total) || !get_uint(hj, "max", &max) ||
        counts == NULL || counts->type != JSON_ARRAY)
        return "histogram: total, max and counts expected";
    histogram_init(h);
    for (size_t i = 0; i < counts->n; i++)
        if ((why = take_pair(&counts->items[i], h, &last)) != NULL)
            return why;
    if (h->total != total)
        return "histogram: the counts do not add up to its total";
    if ((total == 0 && max != 0) ||
        (total > 0 && histogram_slot(max) != (unsigned)last))
        return "histogram: max is not in its highest slot";
    h->max = max;
    return NULL;
}

/* Reads one report into r; returns NULL or why it is not one. */
static const char *take_report(const struct json *obj, struct result *r)
{
    bool asked = json_get(obj, "rate_asked") != NULL;
    const char *why;

    if (obj->type != JSON_OBJECT)
        return "not a sockit bench --json report";
    if (!get_uint(obj, "requests", &r->requests) ||
        !get_uint(obj, "errors", &r->errors) ||
        !get_uint(obj, "bytes_sent", &r->bytes_up) ||
        !get_uint(obj, "bytes_received", &r->bytes_down) ||
        !get_num(obj, "duration_s", &r->seconds) ||
        !get_num(obj, "requests_per_s", &r->rps) ||
        !get_num(obj, "mb_per_s_up", &r->mbps_up) ||
        !get_num(obj, "mb_per_s_down", &r->mbps_down))
        return "not a sockit bench --json report (requests, errors, bytes, "
               "duration and rates expected)";
    if (asked && (!get_num(obj, "rate_asked", &r->rate_asked) ||
                  !get_num(obj, "rate_achieved", &r->rate_achieved) ||
                  r->rate_asked <= 0))
        return "rate_asked and rate_achieved must be numbers";
    if ((why = take_histogram(obj, &r->hist)) != NULL)
        return why;
    if (r->hist.total != r->requests)
        return "histogram: its total is not the requests";
    return NULL;
}

/* Whether a + b overflows. */
static bool overflows(uint64_t a, uint64_t b)
{
    return a + b < a;
}

/* Whether adding r to sum would overflow a count (a crafted file). */
static bool sum_overflows(const struct result *sum, const struct result *r)
{
    if (overflows(sum->requests, r->requests) ||
        overflows(sum->errors, r->errors) ||
        overflows(sum->bytes_up, r->bytes_up) ||
        overflows(sum->bytes_down, r->bytes_down) ||
        overflows(sum->hist.total, r->hist.total))
        return true;
    for (unsigned i = 0; i < HIST_SLOTS; i++)
        if (overflows(sum->hist.counts[i], r->hist.counts[i]))
            return true;
    return false;
}

/* Adds one report into the sum. */
static void add_report(struct result *sum, const struct result *r)
{
    sum->requests += r->requests;
    sum->errors += r->errors;
    sum->bytes_up += r->bytes_up;
    sum->bytes_down += r->bytes_down;
    if (r->seconds > sum->seconds)
        sum->seconds = r->seconds;
    sum->rps += r->rps;
    sum->mbps_up += r->mbps_up;
    sum->mbps_down += r->mbps_down;
    sum->rate_asked += r->rate_asked;
    sum->rate_achieved += r->rate_achieved;
    histogram_merge(&sum->hist, &r->hist);
    sum->merged++;
}

/* Reads and checks one file into r; returns 0, or 1 after one line. */
static int merge_one(const char *path, struct result *r, bool want_rate,
                     bool first)
{
    char err[96], *text = NULL;
    struct json doc;
    const char *why;
    size_t len = 0;
    int e;

    memset(r, 0, sizeof(*r));
    if ((e = slurp(path, &text, &len)) < 0) {
        cli_error("bench --merge: %s: %s", path,
                  e == -EFBIG ? "larger than 64 MiB" : sk_strerror(e));
        return 1;
    }
    e = json_parse(text, len, &doc, err, sizeof(err));
    free(text);
    if (e < 0) {
        cli_error("bench --merge: %s: %s", path, err);
        return 1;
    }
    why = take_report(&doc, r);
    json_free(&doc);
    if (why == NULL && !first && (r->rate_asked > 0) != want_rate)
        why = "an open-loop (--rate) and a closed-loop result do not merge";
    if (why != NULL) {
        cli_error("bench --merge: %s: %s", path, why);
        return 1;
    }
    return 0;
}

int bench_merge(int nfiles, char **files, bool json)
{
    struct result *sum = calloc(1, sizeof(*sum)), *one = malloc(sizeof(*one));
    int ret = EXIT_OK;

    if (sum == NULL || one == NULL) {
        cli_error("bench --merge: %s", sk_strerror(-ENOMEM));
        free(sum);
        free(one);
        return EXIT_RUNTIME;
    }
    histogram_init(&sum->hist);
    for (int i = 0; ret == EXIT_OK && i < nfiles; i++) {
        if (merge_one(files[i], one, sum->rate_asked > 0, i == 0) != 0) {
            ret = EXIT_RUNTIME;
        } else if (sum_overflows(sum, one)) {
            cli_error("bench --merge: %s: its counts overflow the sum",
                      files[i]);
            ret = EXIT_RUNTIME;
        } else {
            add_report(sum, one);
        }
    }
    if (ret == EXIT_OK) {
        bench_report(sum, json, NULL);
        if (sum->errors > 0) {
            cli_error("bench --merge: %llu errors in the results merged",
                      (unsigned long long)sum->errors);
            ret = EXIT_RUNTIME;
        }
    }
    free(sum);
    free(one);
    return ret;
}
