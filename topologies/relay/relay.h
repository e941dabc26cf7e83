/* The delay line's I/O: two interfaces of the WAN node, one direction each way. */
#ifndef WANMIG_RELAY_H
#define WANMIG_RELAY_H

#include <stdint.h>

struct relay_config {
    const char *if_a, *if_b;
    double delay_ms, jitter_ms, loss_pct;
    double rate_mbps;          /* 0: unshaped */
    int queue_pkts, mtu;
    long ring_frames;          /* wire frames held per direction, at most */
    uint64_t store_bytes;      /* bytes held per direction, at most */
    int sndbuf, rcvbuf;
    uint64_t seed;
    double burst_us;           /* a unit's span (plan.h) */
    const char *stats_path, *control_path;
};

int relay_run(const struct relay_config *cfg);

#endif
