/* metrics.h -- what metrics.c and metrics_text.c share: the body of a
 * scrape being written. */
#ifndef SOCKIT_CLI_METRICS_H
#define SOCKIT_CLI_METRICS_H

#include "cli.h"

struct cli_metrics {
    struct sk_buf buf;
    bool failed;                   /* out of memory: answered 500 */
    struct sk_server_stats *stats; /* one per listener, read per scrape */
};

#endif
