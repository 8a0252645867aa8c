/* histogram.c -- log-linear latency histogram (see histogram.h). */
#include <string.h>

#include "histogram.h"

void histogram_init(struct histogram *h)
{
    memset(h, 0, sizeof(*h));
}

unsigned histogram_slot(uint64_t v)
{
    unsigned shift;

    if (v < (1u << HIST_SUB_BITS))
        return (unsigned)v;
    /* Keep the top HIST_SUB_BITS bits: v >> shift is in [HALF, 2*HALF). */
    shift = (unsigned)(63 - __builtin_clzll(v)) - (HIST_SUB_BITS - 1);
    return shift * HIST_HALF + (unsigned)(v >> shift);
}

/* The highest value that lands in slot. */
uint64_t histogram_slot_top(unsigned slot)
{
    unsigned shift;
    uint64_t sub;

    if (slot < (1u << HIST_SUB_BITS))
        return slot;
    shift = slot / HIST_HALF - 1;
    sub = slot - (uint64_t)shift * HIST_HALF;
    return ((sub + 1) << shift) - 1;
}

void histogram_record(struct histogram *h, uint64_t value)
{
    h->counts[histogram_slot(value)]++;
    h->total++;
    if (value > h->max)
        h->max = value;
}

void histogram_merge(struct histogram *to, const struct histogram *from)
{
    for (unsigned i = 0; i < HIST_SLOTS; i++)
        to->counts[i] += from->counts[i];
    to->total += from->total;
    if (from->max > to->max)
        to->max = from->max;
}

uint64_t histogram_quantile(const struct histogram *h, double q)
{
    uint64_t rank, seen = 0;

    if (h->total == 0)
        return 0;
    rank = (uint64_t)(q * (double)h->total + 0.999999);
    if (rank == 0)
        rank = 1;
    for (unsigned i = 0; i < HIST_SLOTS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t top = histogram_slot_top(i);
            return top < h->max ? top : h->max;
        }
    }
    return h->max;
}

void histogram_add(struct histogram *h, unsigned slot, uint64_t count)
{
    h->counts[slot] += count;
    h->total += count;
}
