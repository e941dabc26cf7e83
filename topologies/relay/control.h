/* Runtime changes of a running delay line: the protocol of topologies/linkcontrol.py (one flat
 * JSON object per datagram, every key optional: "cut" true/false, "loss_pct" and "delay_ms" a
 * number or null for "as configured"), applied whole or not at all, answered with the state
 * the relay now runs with. */
#ifndef WANMIG_CONTROL_H
#define WANMIG_CONTROL_H

#include <stddef.h>

#include "model.h"

#define CONTROL_MAX_MESSAGE 4096
#define CONTROL_MAX_DELAY_MS 10000.0

struct control {
    int cut;                       /* every arriving frame dropped, both directions */
    struct model *models[2];
    double base_delay_s[2];        /* as configured: restored by a null */
    double base_loss[2];
};

void control_init(struct control *c, struct model *ab, struct model *ba);

/* Apply one message; writes the JSON answer (NUL-terminated) into `answer`. Returns 0 when
 * applied, -1 when refused (nothing changed). */
int control_handle(struct control *c, const char *msg, size_t len, char *answer,
                   size_t answer_size);

/* The state as JSON members: "cut": ..., "delay_ms": ..., "loss_pct": ... */
int control_state(const struct control *c, char *out, size_t size);

#endif
