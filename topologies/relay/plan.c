#include "plan.h"

int plan_frame(struct model *m, double arrival, const struct wire *w, int len, int cut,
               double span_s, struct unit_plan *out, struct plan_counts *counts,
               double *seg_due)
{
    int n = 0, survivors = 0, prev = -2;
    double unit_first_due = 0.0;    /* release of the current unit's first wire frame */
    for (int k = 0; k < w->nseg; k++) {
        double d;
        if (cut) {
            d = MODEL_CUT;
            counts->fault++;
        } else {
            d = model_release(m, arrival, wire_len(w, len, k));
            if (d == MODEL_LOST)
                counts->lost++;
            else if (d == MODEL_QUEUE_FULL)
                counts->queue++;
        }
        if (seg_due)
            seg_due[k] = d;
        if (d < 0)
            continue;
        survivors++;
        if (n > 0 && prev == k - 1 && d - unit_first_due <= span_s) {
            out[n - 1].count++;
            out[n - 1].due = d;
        } else {
            out[n].first = k;
            out[n].count = 1;
            out[n].due = d;
            unit_first_due = d;
            n++;
        }
        prev = k;
    }
    int cuttable = w->kind == FRAME_PLAIN || w->kind == FRAME_TCP4 || w->kind == FRAME_TCP6;
    if (!cuttable && survivors > 0 && survivors < w->nseg) {
        counts->uncut += survivors;
        return 0;
    }
    if (!cuttable && n > 1) {       /* whole: one unit, released with its last wire frame */
        out[0].count = w->nseg;
        out[0].due = out[n - 1].due;
        n = 1;
    }
    return n;
}
