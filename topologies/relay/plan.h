/* What becomes of one received frame: each of its wire frames is put through the link model
 * (or dropped while the link is cut), and the survivors are grouped into units, each sent as
 * one frame when its last wire frame is due. A unit is a run of consecutive surviving wire
 * frames whose releases lie within `span_s` of its first: no byte leaves later than the model
 * says by more than that, and a busy link costs one send per span, not one per wire frame. A
 * frame whose headers cannot be cut (another GSO kind) goes whole or not at all. */
#ifndef WANMIG_PLAN_H
#define WANMIG_PLAN_H

#include "frame.h"
#include "model.h"

struct unit_plan {
    int first, count;
    double due;
};

struct plan_counts {
    int lost;        /* wire frames lost by the configured random loss */
    int queue;       /* tail-dropped at the bottleneck queue */
    int fault;       /* arrived while the link was cut */
    int uncut;       /* survivors of a frame that could not be cut, dropped with it */
};

/* Plans frame `w` (of `len` bytes) arriving at `arrival`; returns the number of units written
 * to `out` (room for w->nseg). `seg_due`, when not NULL, receives every wire frame's release
 * time or MODEL_LOST / MODEL_QUEUE_FULL (and MODEL_CUT while cut). */
#define MODEL_CUT (-3.0)
int plan_frame(struct model *m, double arrival, const struct wire *w, int len, int cut,
               double span_s, struct unit_plan *out, struct plan_counts *counts,
               double *seg_due);

#endif
