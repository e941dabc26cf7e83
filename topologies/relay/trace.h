/* The delay line's decisions without any I/O, for comparing them with the reference model
 * (topologies/linkmodel.py): frames and control messages read from stdin, one per line, the
 * fate of each written to stdout. */
#ifndef WANMIG_TRACE_H
#define WANMIG_TRACE_H

#include "relay.h"

/* Lines in:   F <arrival_s> <length> <hdr_len> <mss>    (mss 0: a plain frame)
 *             C <json control message>
 *             X <first> <count> <gso_type> <gso_size> <frame hex>   (see trace.c: a unit cut)
 * Lines out:  S <k> <due_s | LOST | QUEUE | CUT>          every wire frame k of the frame
 *             U <first> <count> <due_s>                   every unit sent
 *             A <json answer>
 *             Y ...                                       the unit cut (trace.c)
 * Direction a->b's model (seed `seed`), its parameters from the configuration. */
int trace_run(const struct relay_config *cfg);

#endif
