/* wanmig-delayline: the userspace WAN delay line, for kernels without sch_netem.
 *
 * Runs in a WAN node's namespace between two interfaces, each a veth to a site's border
 * switch, and forwards every frame (IP, ARP, RARP alike) from one to the other as the link
 * model says (model.h; the reference is topologies/linkmodel.py). GSO super-frames are taken
 * and sent whole (virtio-net headers on both sockets) and modelled as the wire frames they
 * stand for (frame.h, plan.h). Says READY with its parameters on stdout once it serves;
 * writes its counters to --stats every second and on exit; takes runtime changes on
 * --control (control.h). SIGTERM or SIGINT end it. --trace runs the decisions alone
 * (trace.h). --version prints the digest of the sources it was built from. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay.h"
#include "trace.h"

#ifndef SOURCE_DIGEST
#define SOURCE_DIGEST "unknown"
#endif

static int usage(const char *why)
{
    fprintf(stderr, "wanmig-delayline: %s\n"
            "usage: wanmig-delayline --if-a IF --if-b IF --delay-ms MS [--jitter-ms MS]\n"
            "  [--loss-pct P] [--rate-mbps R] [--queue-pkts N] [--mtu N] [--ring-frames N]\n"
            "  [--store-bytes N] [--sndbuf N] [--rcvbuf N] [--seed N] [--burst-us US]\n"
            "  [--stats PATH] [--control PATH] | --trace (same link options) | --version\n",
            why);
    return 2;
}

static int number(const char *s, double *out)
{
    char *end;
    *out = strtod(s, &end);
    return *s && !*end;
}

int main(int argc, char **argv)
{
    struct relay_config cfg = {.queue_pkts = 1000, .mtu = 1500, .ring_frames = 16384,
                               .store_bytes = 64ULL << 20, .sndbuf = 16 << 20,
                               .rcvbuf = 32 << 20, .seed = 1, .burst_us = 250.0};
    int trace = 0, have_delay = 0;
    static const struct option opts[] = {
        {"if-a", 1, 0, 'a'}, {"if-b", 1, 0, 'b'}, {"delay-ms", 1, 0, 'd'},
        {"jitter-ms", 1, 0, 'j'}, {"loss-pct", 1, 0, 'l'}, {"rate-mbps", 1, 0, 'r'},
        {"queue-pkts", 1, 0, 'q'}, {"mtu", 1, 0, 'm'}, {"ring-frames", 1, 0, 'f'},
        {"store-bytes", 1, 0, 'B'}, {"sndbuf", 1, 0, 's'}, {"rcvbuf", 1, 0, 'R'},
        {"seed", 1, 0, 'S'}, {"burst-us", 1, 0, 'u'}, {"stats", 1, 0, 'T'},
        {"control", 1, 0, 'c'}, {"trace", 0, 0, 't'}, {"version", 0, 0, 'V'}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        double v = 0;
        if (optarg && c != 'a' && c != 'b' && c != 'T' && c != 'c' && !number(optarg, &v))
            return usage("a number expected");
        switch (c) {
        case 'a': cfg.if_a = optarg; break;
        case 'b': cfg.if_b = optarg; break;
        case 'd': cfg.delay_ms = v; have_delay = 1; break;
        case 'j': cfg.jitter_ms = v; break;
        case 'l': cfg.loss_pct = v; break;
        case 'r': cfg.rate_mbps = v; if (v <= 0) return usage("--rate-mbps: above 0"); break;
        case 'q': cfg.queue_pkts = (int)v; break;
        case 'm': cfg.mtu = (int)v; break;
        case 'f': cfg.ring_frames = (long)v; break;
        case 'B': cfg.store_bytes = (uint64_t)v; break;
        case 's': cfg.sndbuf = (int)v; break;
        case 'R': cfg.rcvbuf = (int)v; break;
        case 'S': cfg.seed = (uint64_t)v; break;
        case 'u': cfg.burst_us = v; break;
        case 'T': cfg.stats_path = optarg; break;
        case 'c': cfg.control_path = optarg; break;
        case 't': trace = 1; break;
        case 'V': printf("wanmig-delayline %s\n", SOURCE_DIGEST); return 0;
        default: return usage("unknown option");
        }
    }
    if (optind != argc)
        return usage("unexpected argument");
    if (!have_delay)
        return usage("--delay-ms is required");
    if (cfg.queue_pkts < 1 || cfg.mtu < 576 || cfg.mtu > 9000 || cfg.ring_frames < 64
            || cfg.store_bytes < (1 << 20) || cfg.burst_us < 0)
        return usage("a parameter is out of range");
    if (trace)
        return trace_run(&cfg);
    if (!cfg.if_a || !cfg.if_b)
        return usage("--if-a and --if-b are required");
    return relay_run(&cfg);
}
