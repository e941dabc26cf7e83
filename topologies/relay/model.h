/* One direction of an emulated WAN link: the delay line's pure decision, the same as the
 * reference model topologies/linkmodel.py (which documents it) step for step, draw for draw:
 * random loss, a FIFO bottleneck at the rate with a tail-dropping queue, then the delay with
 * jitter, never reordering. Times are seconds on whatever clock the arrivals use. */
#ifndef WANMIG_MODEL_H
#define WANMIG_MODEL_H

#include "rng.h"

#define MODEL_LOST (-1.0)         /* dropped by the configured random loss */
#define MODEL_QUEUE_FULL (-2.0)   /* tail-dropped: the bottleneck queue was full */

struct model {
    double delay_s;
    double jitter_s;
    double loss;
    double rate;          /* bytes per second; 0: unshaped */
    double queue_bytes;
    double link_free;     /* when the bottleneck finishes the last accepted frame */
    double last;          /* release time of the last frame (FIFO) */
    struct rng rng;
};

/* 0, or -1 for parameters the reference model refuses. */
int model_init(struct model *m, double delay_s, double jitter_s, double loss, double rate_bps,
               double queue_bytes, uint64_t seed);

/* When a wire frame of `length` bytes that arrived at `arrival` leaves the link, or
 * MODEL_LOST / MODEL_QUEUE_FULL. */
double model_release(struct model *m, double arrival, int length);

#endif
