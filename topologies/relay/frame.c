#include "frame.h"

#include <string.h>

#include <linux/if_ether.h>
#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17
#define TCP_FIN 0x01
#define TCP_PSH 0x08
#define TCP_CWR 0x80

static unsigned be16(const uint8_t *p) { return (unsigned)p[0] << 8 | p[1]; }

static void put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, v >> 16);
    put16(p + 2, v & 0xffff);
}

uint32_t csum_add(uint32_t sum, const uint8_t *p, int n)
{
    uint64_t s = sum;
    for (; n > 1; p += 2, n -= 2)
        s += be16(p);
    if (n)
        s += (uint32_t)p[0] << 8;
    while (s >> 32)
        s = (s & 0xffffffffU) + (s >> 32);
    return (uint32_t)s;
}

uint16_t csum_fold(uint32_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)sum;
}

static void count_segments(struct wire *w, int len)
{
    w->payload = len - w->hdr_len;
    w->nseg = w->mss > 0 ? (w->payload + w->mss - 1) / w->mss : 1;
    if (w->nseg < 1)
        w->nseg = 1;
}

void frame_parse(const uint8_t *f, int len, const struct virtio_net_hdr *vh, struct wire *w)
{
    memset(w, 0, sizeof *w);
    w->kind = FRAME_PLAIN;
    w->nseg = 1;
    unsigned gso = vh->gso_type & ~VIRTIO_NET_HDR_GSO_ECN;
    if (gso == VIRTIO_NET_HDR_GSO_NONE || vh->gso_size == 0)
        return;
    /* A GSO frame: where its headers cannot be read, the header's own hdr_len counts. */
    w->kind = FRAME_GSO_OTHER;
    w->mss = vh->gso_size;
    w->hdr_len = vh->hdr_len < len ? vh->hdr_len : 0;
    int off = ETH_HLEN;
    unsigned proto = len >= off ? be16(f + 12) : 0;
    while ((proto == ETH_P_8021Q || proto == ETH_P_8021AD) && len >= off + 4) {
        proto = be16(f + off + 2);
        off += 4;
    }
    int l4 = 0, l4proto = -1;
    if (proto == ETH_P_IP && len >= off + 20 && (f[off] >> 4) == 4) {
        l4 = off + (f[off] & 0x0f) * 4;
        l4proto = f[off + 9];
    } else if (proto == ETH_P_IPV6 && len >= off + 40 && (f[off] >> 4) == 6) {
        l4 = off + 40;
        l4proto = f[off + 6];
    }
    if (l4proto == IPPROTO_TCP_ && len >= l4 + 20 && len >= l4 + (f[l4 + 12] >> 4) * 4) {
        w->hdr_len = l4 + (f[l4 + 12] >> 4) * 4;
        if ((gso == VIRTIO_NET_HDR_GSO_TCPV4 && proto == ETH_P_IP)
                || (gso == VIRTIO_NET_HDR_GSO_TCPV6 && proto == ETH_P_IPV6)) {
            w->kind = proto == ETH_P_IP ? FRAME_TCP4 : FRAME_TCP6;
            w->l3_off = off;
            w->l4_off = l4;
        }
    } else if (l4proto == IPPROTO_UDP_ && len >= l4 + 8) {
        w->hdr_len = l4 + 8;
    }
    count_segments(w, len);
}

int wire_len(const struct wire *w, int len, int k)
{
    if (w->nseg == 1)
        return len;
    int rest = w->payload - k * w->mss;
    return w->hdr_len + (rest < w->mss ? rest : w->mss);
}

void frame_unit(const uint8_t *f, int len, const struct virtio_net_hdr *vh,
                const struct wire *w, int first, int count, struct virtio_net_hdr *vh_out,
                uint8_t *hdr_out, int *pay_off, int *pay_len)
{
    (void)len;
    int start = first * w->mss;
    int plen = w->payload - start;
    if (plen > count * w->mss)
        plen = count * w->mss;
    int last = first + count == w->nseg;
    memcpy(hdr_out, f, (size_t)w->hdr_len);
    uint8_t *ip = hdr_out + w->l3_off, *tcp = hdr_out + w->l4_off;
    int l4len = w->hdr_len - w->l4_off + plen;
    uint32_t pseudo;
    if (w->kind == FRAME_TCP4) {
        put16(ip + 2, (unsigned)(w->hdr_len - w->l3_off + plen));
        put16(ip + 4, (be16(ip + 4) + (unsigned)first) & 0xffff);   /* IDs count up */
        put16(ip + 10, 0);
        put16(ip + 10, (unsigned)~csum_fold(csum_add(0, ip, w->l4_off - w->l3_off)) & 0xffff);
        pseudo = csum_add(0, ip + 12, 8) + IPPROTO_TCP_ + (uint32_t)l4len;
    } else {
        put16(ip + 4, (unsigned)(w->hdr_len - w->l3_off - 40 + plen));
        pseudo = csum_add(0, ip + 8, 32) + IPPROTO_TCP_ + (uint32_t)l4len;
    }
    put32(tcp + 4, be32(tcp + 4) + (uint32_t)start);
    if (!last)
        tcp[13] &= (uint8_t)~(TCP_FIN | TCP_PSH);
    if (first > 0)
        tcp[13] &= (uint8_t)~TCP_CWR;
    put16(tcp + 16, csum_fold(pseudo));
    memset(vh_out, 0, sizeof *vh_out);
    vh_out->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    vh_out->csum_start = (uint16_t)w->l4_off;
    vh_out->csum_offset = 16;
    if (plen > w->mss) {
        vh_out->gso_type = vh->gso_type;
        vh_out->gso_size = (uint16_t)w->mss;
        vh_out->hdr_len = (uint16_t)w->hdr_len;
    }
    *pay_off = w->hdr_len + start;
    *pay_len = plen;
}
