#include "trace.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"
#include "model.h"
#include "plan.h"

#define MAX_TRACE_SEGS 1024

static int unhex(const char *s, uint8_t *out, int max)
{
    int n = 0;
    while (s[0] && s[1] && s[0] != '\n' && n < max) {
        char b[3] = {s[0], s[1], 0};
        char *end;
        out[n++] = (uint8_t)strtoul(b, &end, 16);
        if (*end)
            return -1;
        s += 2;
    }
    return n;
}

static void hex(const uint8_t *p, int n)
{
    for (int i = 0; i < n; i++)
        printf("%02x", p[i]);
}

/* X <first> <count> <gso_type> <gso_size> <frame hex>: how frame_parse reads the frame and
 * what frame_unit makes of wire frames [first, first + count):
 * Y <kind> <nseg> <hdr_len> <flags> <gso_type> <gso_size> <vh hdr_len> <csum_start>
 *   <csum_offset> <unit hex> */
static int unit_line(const char *line)
{
    static uint8_t frame[70000], unit[70000];
    int first, count, gso_type, gso_size, off = 0;
    if (sscanf(line, "X %d %d %d %d %n", &first, &count, &gso_type, &gso_size, &off) != 4
            || off == 0)
        return -1;
    int len = unhex(line + off, frame, sizeof frame);
    if (len <= 0)
        return -1;
    struct virtio_net_hdr vh = {.gso_type = (uint8_t)gso_type, .gso_size = (uint16_t)gso_size,
                                .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM};
    struct wire w;
    frame_parse(frame, len, &vh, &w);
    if (first < 0 || count < 1 || first + count > w.nseg
            || (w.kind != FRAME_TCP4 && w.kind != FRAME_TCP6)) {
        printf("Y %d %d %d -\n", (int)w.kind, w.nseg, w.hdr_len);
        return 0;
    }
    struct virtio_net_hdr out;
    int pay_off, pay_len;
    frame_unit(frame, len, &vh, &w, first, count, &out, unit, &pay_off, &pay_len);
    memcpy(unit + w.hdr_len, frame + pay_off, (size_t)pay_len);
    printf("Y %d %d %d %d %d %d %d %d %d ", (int)w.kind, w.nseg, w.hdr_len, out.flags,
           out.gso_type, out.gso_size, out.hdr_len, out.csum_start, out.csum_offset);
    hex(unit, w.hdr_len + pay_len);
    printf("\n");
    return 0;
}

int trace_run(const struct relay_config *cfg)
{
    struct model ab, ba;
    double queue = (double)cfg->queue_pkts * (cfg->mtu + 14);
    double rate = cfg->rate_mbps > 0 ? cfg->rate_mbps * 1e6 : 0.0;
    if (model_init(&ab, cfg->delay_ms / 1e3, cfg->jitter_ms / 1e3, cfg->loss_pct / 100.0, rate,
                   queue, cfg->seed) < 0
            || model_init(&ba, cfg->delay_ms / 1e3, cfg->jitter_ms / 1e3,
                          cfg->loss_pct / 100.0, rate, queue, cfg->seed + 1) < 0) {
        fprintf(stderr, "delayline: bad link model\n");
        return 2;
    }
    struct control ctl;
    control_init(&ctl, &ab, &ba);
    static char line[160000];
    static struct unit_plan units[MAX_TRACE_SEGS];
    static double due[MAX_TRACE_SEGS];
    char answer[512];
    while (fgets(line, sizeof line, stdin)) {
        if (line[0] == 'X' && line[1] == ' ') {
            if (unit_line(line) < 0) {
                fprintf(stderr, "delayline: bad unit line\n");
                return 2;
            }
            continue;
        }
        if (line[0] == 'C' && line[1] == ' ') {
            size_t n = strcspn(line + 2, "\n");
            control_handle(&ctl, line + 2, n, answer, sizeof answer);
            printf("A %s\n", answer);
            continue;
        }
        double t;
        int len, hdr_len, mss;
        if (sscanf(line, "F %lf %d %d %d", &t, &len, &hdr_len, &mss) != 4 || len <= 0
                || hdr_len < 0 || mss < 0 || (mss > 0 && hdr_len >= len)) {
            fprintf(stderr, "delayline: bad trace line: %s", line);
            return 2;
        }
        struct wire w = {.kind = FRAME_PLAIN, .nseg = 1};
        if (mss > 0) {
            w.kind = FRAME_TCP4;
            w.hdr_len = hdr_len;
            w.mss = mss;
            w.payload = len - hdr_len;
            w.nseg = (w.payload + mss - 1) / mss;
            if (w.nseg > MAX_TRACE_SEGS) {
                fprintf(stderr, "delayline: a frame of %d wire frames\n", w.nseg);
                return 2;
            }
        }
        struct plan_counts pc = {0};
        int n = plan_frame(&ab, t, &w, len, ctl.cut, cfg->burst_us * 1e-6, units, &pc, due);
        for (int k = 0; k < w.nseg; k++) {
            if (due[k] == MODEL_LOST)
                printf("S %d LOST\n", k);
            else if (due[k] == MODEL_QUEUE_FULL)
                printf("S %d QUEUE\n", k);
            else if (due[k] == MODEL_CUT)
                printf("S %d CUT\n", k);
            else
                printf("S %d %.17g\n", k, due[k]);
        }
        for (int u = 0; u < n; u++)
            printf("U %d %d %.17g\n", units[u].first, units[u].count, units[u].due);
    }
    return 0;
}
