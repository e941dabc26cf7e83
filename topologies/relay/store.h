/* The frames one direction holds while they are inside the link: their bytes in one ring
 * (each frame contiguous; a frame that does not fit before the end starts again at the
 * beginning), and two FIFOs: the frames, and the units to send (plan.h), in release order.
 * Bounded on every side; a frame that does not fit is refused (a counted drop). */
#ifndef WANMIG_STORE_H
#define WANMIG_STORE_H

#include <linux/virtio_net.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"

struct held {
    uint64_t off;         /* where its bytes start, as a running byte count */
    uint32_t alloc;       /* bytes it takes in the ring, the skip before it included */
    int len;
    int units_left;
    struct virtio_net_hdr vh;
    struct wire w;
};

struct unit {
    uint32_t frame;       /* its frame's slot */
    uint16_t first, count;
    int wire_bytes;       /* the wire frames' bytes, as the link counts them */
    double due;
};

struct store {
    uint8_t *data;
    uint64_t data_size, data_head, data_tail;     /* running byte counts */
    struct held *frames;
    uint32_t fcap, fhead, ftail;                  /* running counts; slot = count % fcap */
    struct unit *units;
    uint32_t ucap, uhead, utail;
    long held_wire;                               /* wire frames held */
    uint64_t res_off;                             /* the frame store_reserve made room for */
    uint32_t res_alloc;
};

int store_init(struct store *s, uint64_t data_bytes, uint32_t frames, uint32_t units);
void store_free(struct store *s);

/* Room for a frame of `len` bytes and `nunits` units? Then its slot, with its bytes' place in
 * *dst; else -1. */
long store_reserve(struct store *s, int len, int nunits, uint8_t **dst);

/* Adds the reserved frame and its units (their frame slot set here). */
void store_commit(struct store *s, long slot, const struct held *h);
void store_push_unit(struct store *s, const struct unit *u);

static inline int store_empty(const struct store *s) { return s->uhead == s->utail; }

static inline struct unit *store_next(struct store *s) { return &s->units[s->utail % s->ucap]; }

static inline struct held *store_frame(struct store *s, uint32_t slot)
{
    return &s->frames[slot];
}

static inline uint8_t *store_bytes(struct store *s, const struct held *h)
{
    return s->data + h->off % s->data_size;
}

/* The oldest unit is done (sent or dropped): frees its frame's bytes once its last unit is. */
void store_pop_unit(struct store *s);

#endif
