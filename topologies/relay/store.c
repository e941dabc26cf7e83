#include "store.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

int store_init(struct store *s, uint64_t data_bytes, uint32_t frames, uint32_t units)
{
    memset(s, 0, sizeof *s);
    /* Reserved, not touched: pages are only used as frames fill them. */
    s->data = mmap(NULL, data_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS
                   | MAP_NORESERVE, -1, 0);
    if (s->data == MAP_FAILED) {
        s->data = NULL;
        return -1;
    }
    s->data_size = data_bytes;
    s->frames = calloc(frames, sizeof *s->frames);
    s->units = calloc(units, sizeof *s->units);
    if (!s->frames || !s->units)
        return -1;
    s->fcap = frames;
    s->ucap = units;
    return 0;
}

void store_free(struct store *s)
{
    if (s->data)
        munmap(s->data, s->data_size);
    free(s->frames);
    free(s->units);
    memset(s, 0, sizeof *s);
}

long store_reserve(struct store *s, int len, int nunits, uint8_t **dst)
{
    if (s->fhead - s->ftail >= s->fcap || s->uhead - s->utail + (uint32_t)nunits > s->ucap)
        return -1;
    uint64_t at = s->data_head % s->data_size;
    uint64_t skip = at + (uint64_t)len > s->data_size ? s->data_size - at : 0;
    uint64_t need = skip + (uint64_t)len;
    if (s->data_head - s->data_tail + need > s->data_size)
        return -1;
    s->res_alloc = (uint32_t)need;
    s->res_off = s->data_head + skip;
    *dst = s->data + s->res_off % s->data_size;
    return (long)(s->fhead % s->fcap);
}

void store_commit(struct store *s, long slot, const struct held *h)
{
    struct held *f = &s->frames[slot];
    *f = *h;
    f->off = s->res_off;
    f->alloc = s->res_alloc;
    s->data_head += s->res_alloc;
    s->fhead++;
}

void store_push_unit(struct store *s, const struct unit *u)
{
    s->units[s->uhead % s->ucap] = *u;
    s->uhead++;
    s->held_wire += u->count;
}

void store_pop_unit(struct store *s)
{
    struct unit *u = store_next(s);
    struct held *f = &s->frames[u->frame];
    s->held_wire -= u->count;
    s->utail++;
    if (--f->units_left == 0) {
        /* Units leave in order, so this frame is the oldest one held. */
        s->data_tail += f->alloc;
        s->ftail++;
    }
}
