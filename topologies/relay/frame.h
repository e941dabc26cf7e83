/* A frame as the wire sees it. A GSO super-frame (up to 64 KiB handed over with a virtio-net
 * header, the way a TSO-capable port passes TCP) stands for several wire frames of the link's
 * MTU: its headers repeated in front of each `mss`-byte slice of its payload. The link model
 * loses, queues and serialises each of those wire frames; the relay sends a run of surviving
 * ones (a "unit") as one GSO frame again, its headers rewritten for that run, or the original
 * frame untouched when the whole of it survives. */
#ifndef WANMIG_FRAME_H
#define WANMIG_FRAME_H

#include <linux/virtio_net.h>
#include <stdint.h>

enum frame_kind {
    FRAME_PLAIN,      /* one wire frame */
    FRAME_TCP4,       /* TCP over IPv4, GSO: can be cut into runs of segments */
    FRAME_TCP6,       /* TCP over IPv6 (no extension headers), GSO: likewise */
    FRAME_GSO_OTHER,  /* another GSO kind (UDP, tunnels): counted per segment, never cut */
};

struct wire {
    enum frame_kind kind;
    int nseg;         /* wire frames it stands for */
    int hdr_len;      /* Ethernet + IP + TCP headers, repeated in every wire frame */
    int l3_off;       /* the IP header's offset */
    int l4_off;       /* the TCP header's offset */
    int mss;          /* payload bytes per wire frame (the GSO size) */
    int payload;      /* payload bytes in all */
};

/* Classify a received frame of `len` bytes with virtio-net header `vh`. */
void frame_parse(const uint8_t *f, int len, const struct virtio_net_hdr *vh, struct wire *w);

/* The length of wire frame k (0 <= k < nseg), as tc counts it (Ethernet header included). */
int wire_len(const struct wire *w, int len, int k);

/* A run of wire frames [first, first + count) of a cut-able frame, to be sent as one frame:
 * writes its virtio-net header into `vh_out` and its headers (w->hdr_len bytes) into
 * `hdr_out`; its payload is `*pay_len` bytes at `f + *pay_off`. Checksums: the IPv4 header's
 * in full, TCP's left to the receiver (NEEDS_CSUM with the pseudo-header sum), as the kernel's
 * own segmentation does for a device that offloads checksums. */
void frame_unit(const uint8_t *f, int len, const struct virtio_net_hdr *vh,
                const struct wire *w, int first, int count, struct virtio_net_hdr *vh_out,
                uint8_t *hdr_out, int *pay_off, int *pay_len);

/* The Internet checksum of `n` bytes starting from `sum` (not complemented, not folded). */
uint32_t csum_add(uint32_t sum, const uint8_t *p, int n);
uint16_t csum_fold(uint32_t sum);

#endif
