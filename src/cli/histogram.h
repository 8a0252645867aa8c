/* histogram.h -- a high-dynamic-range histogram of latencies: buckets grow
 * by powers of two, each split in 64 linear steps, so every value is kept
 * within 1.6% from 1 ns to hours, in a fixed 30 KiB, with O(1) recording. */
#ifndef SOCKIT_HISTOGRAM_H
#define SOCKIT_HISTOGRAM_H

#include <stdint.h>

#define HIST_SUB_BITS 7
#define HIST_HALF (1u << (HIST_SUB_BITS - 1))
#define HIST_SLOTS ((64 - HIST_SUB_BITS + 2) * HIST_HALF)

struct histogram {
    uint64_t counts[HIST_SLOTS];
    uint64_t total;
    uint64_t max;
};

void histogram_init(struct histogram *h);
void histogram_record(struct histogram *h, uint64_t value);
/* Adds every count of from into to. */
void histogram_merge(struct histogram *to, const struct histogram *from);
/* The value at or below which the fraction q (0..1) of values lie: the
 * highest value of its bucket, so a percentile never under-reports. */
uint64_t histogram_quantile(const struct histogram *h, double q);
/* The slot a value lands in, and the highest value of a slot. */
unsigned histogram_slot(uint64_t value);
uint64_t histogram_slot_top(unsigned slot);
/* Adds count values of slot (slot < HIST_SLOTS) to the counts and the
 * total; max is the caller's to set. */
void histogram_add(struct histogram *h, unsigned slot, uint64_t count);

#endif
