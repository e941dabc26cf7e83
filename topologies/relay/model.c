#include "model.h"

#include <math.h>

int model_init(struct model *m, double delay_s, double jitter_s, double loss, double rate_bps,
               double queue_bytes, uint64_t seed)
{
    if (!(delay_s >= 0 && jitter_s >= 0 && loss >= 0 && loss < 1))
        return -1;
    if (rate_bps < 0 || !(queue_bytes > 0))
        return -1;
    m->delay_s = delay_s;
    m->jitter_s = jitter_s;
    m->loss = loss;
    m->rate = rate_bps > 0 ? rate_bps / 8.0 : 0.0;
    m->queue_bytes = queue_bytes;
    m->link_free = -INFINITY;
    m->last = -INFINITY;
    rng_seed(&m->rng, seed);
    return 0;
}

double model_release(struct model *m, double arrival, int length)
{
    if (m->loss != 0.0 && rng_random(&m->rng) < m->loss)
        return MODEL_LOST;
    double sent = arrival;
    if (m->rate != 0.0) {
        double start = arrival;
        if (m->link_free > arrival) {
            if ((m->link_free - arrival) * m->rate > m->queue_bytes)
                return MODEL_QUEUE_FULL;
            start = m->link_free;
        }
        sent = m->link_free = start + length / m->rate;
    }
    double due = sent + m->delay_s;
    if (m->jitter_s != 0.0) {
        double j = due + rng_gauss(&m->rng, 0.0, m->jitter_s);
        due = sent > j ? sent : j;
    }
    if (due < m->last)
        due = m->last;
    m->last = due;
    return due;
}
