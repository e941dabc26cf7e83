/* The delay line's loop (relay.h): frames read in batches (recvmmsg) with the kernel's receive
 * timestamps and their virtio-net headers, each planned by the link model when it is read
 * (plan.h), held in the direction's store, and sent in batches (sendmmsg) when due, out of the
 * other interface. Idle, the loop sleeps until the next unit is due or a frame arrives, so a
 * lone frame leaves on time to the microsecond. Busy (a frame read or sent), it wakes once
 * every `burst_us` instead, reads what arrived (their arrival times are the kernel's, so
 * reading later changes no decision) and sends what fell due: a frame leaves at most
 * `burst_us` after the model's time, never before, and a link of any rate costs at most one
 * wake-up per `burst_us`, as a NIC's interrupt moderation batches. The runner keeps
 * `burst_us` at most half the one-way delay, so no frame is read after it is due. */
#define _GNU_SOURCE
#include "relay.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <linux/if_link.h>
#include <linux/if_packet.h>
#include <math.h>
#include <stdint.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "model.h"
#include "plan.h"
#include "store.h"

#define BATCH 64
#define MAX_FRAME (65536 + 512)
#define MAX_SEGS 1024           /* wire frames of one super-frame, at most (64 KiB / 64 B) */
#define STATS_EVERY_S 1.0
#define IDLE_WAIT_S 0.5
#define OVERSLEEP_MAX_S 0.0002   /* at most this much of a wake-up is waited out awake */
#define OVERSLEEP_GAIN 0.05
#define PRECISE_SPAN_S 0.0002    /* bursts shorter than this tick on time */
#define CONTROL_EVERY_S 0.01    /* a relay that never sleeps reads its control socket this often */

struct dstats {
    long rx_frames, rx_bytes, rx_superframes;
    long tx_frames, tx_bytes, tx_sends;
    long drop_loss, drop_queue, drop_ring, drop_oversize, drop_tx, drop_qdisc, drop_fault;
    long drop_uncut, drop_veth;
    long max_queued_frames;
    long ts_fallback;           /* frames without a usable kernel timestamp (read time used) */
    double late_max_us, late_sum_us;
    unsigned long veth_dropped0;
    int veth_known;
};

struct dir {
    int rx_fd, tx_fd;
    const char *out_if;
    struct model model;
    struct store store;
    struct dstats st;
};

static volatile sig_atomic_t running = 1;

static void on_signal(int sig)
{
    (void)sig;
    running = 0;
}

static double mono(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int64_t ns_of(clockid_t clock)
{
    struct timespec t;
    clock_gettime(clock, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* The kernel stamps arrivals on the wall clock, the relay schedules on the monotonic one:
 * their offset, in whole nanoseconds, kept fixed (every arrival converted alike, so the model
 * sees their differences exactly) unless the wall clock was stepped by more than 1 ms. */
static int64_t clock_offset_ns(int64_t current)
{
    int64_t best = 0, spread = INT64_MAX;
    for (int i = 0; i < 5; i++) {
        int64_t m0 = ns_of(CLOCK_MONOTONIC), w = ns_of(CLOCK_REALTIME);
        int64_t m1 = ns_of(CLOCK_MONOTONIC);
        if (m1 - m0 < spread) {
            spread = m1 - m0;
            best = w - (m0 + (m1 - m0) / 2);
        }
    }
    return current && llabs(best - current) < 1000000 ? current : best;
}

static int packet_socket(const char *ifname, int proto, int rx)
{
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    if (setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) < 0)
        goto fail;
    if (rx) {
        if (setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one) < 0
                || setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one) < 0)
            goto fail;
    }
    struct sockaddr_ll sll = {0};
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons((uint16_t)proto);
    sll.sll_ifindex = (int)if_nametoindex(ifname);
    if (sll.sll_ifindex == 0 || bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0)
        goto fail;
    return fd;
fail:
    close(fd);
    return -1;
}

static void set_buf(int fd, int force_opt, int opt, int bytes)
{
    if (setsockopt(fd, SOL_SOCKET, force_opt, &bytes, sizeof bytes) < 0)
        setsockopt(fd, SOL_SOCKET, opt, &bytes, sizeof bytes);
}

/* The output interface's own drops (a veth whose peer's backlog was full). */
static int veth_tx_dropped(const char *ifname, unsigned long *out)
{
    struct ifaddrs *ifs, *i;
    if (getifaddrs(&ifs) < 0)
        return -1;
    int found = -1;
    for (i = ifs; i; i = i->ifa_next) {
        if (i->ifa_addr && i->ifa_addr->sa_family == AF_PACKET && i->ifa_data
                && strcmp(i->ifa_name, ifname) == 0) {
            *out = ((struct rtnl_link_stats *)i->ifa_data)->tx_dropped;
            found = 0;
            break;
        }
    }
    freeifaddrs(ifs);
    return found;
}

static void collect_drops(struct dir *d)
{
    struct tpacket_stats ps;
    socklen_t n = sizeof ps;
    if (getsockopt(d->rx_fd, SOL_PACKET, PACKET_STATISTICS, &ps, &n) == 0)
        d->st.drop_ring += ps.tp_drops;       /* the receive buffer was full */
    unsigned long v;
    if (veth_tx_dropped(d->out_if, &v) == 0) {
        if (!d->st.veth_known) {
            d->st.veth_dropped0 = v;
            d->st.veth_known = 1;
        }
        d->st.drop_veth = (long)(v - d->st.veth_dropped0);
    }
}

static void write_dir(FILE *f, const struct dstats *s)
{
    fprintf(f, "{\"rx_frames\": %ld, \"rx_bytes\": %ld, \"rx_superframes\": %ld, "
               "\"tx_frames\": %ld, \"tx_bytes\": %ld, \"tx_sends\": %ld, "
               "\"drop_loss\": %ld, \"drop_queue\": %ld, \"drop_ring\": %ld, "
               "\"drop_oversize\": %ld, \"drop_tx\": %ld, \"drop_qdisc\": %ld, "
               "\"drop_fault\": %ld, \"drop_uncut\": %ld, \"drop_veth\": %ld, "
               "\"max_queued_frames\": %ld, \"late_max_us\": %.3f, \"late_sum_us\": %.3f, "
               "\"late_mean_us\": %.3f, \"ts_fallback\": %ld}",
            s->rx_frames, s->rx_bytes, s->rx_superframes, s->tx_frames, s->tx_bytes,
            s->tx_sends, s->drop_loss, s->drop_queue, s->drop_ring, s->drop_oversize,
            s->drop_tx, s->drop_qdisc, s->drop_fault, s->drop_uncut, s->drop_veth,
            s->max_queued_frames, s->late_max_us, s->late_sum_us,
            s->tx_sends ? s->late_sum_us / (double)s->tx_sends : 0.0, s->ts_fallback);
}

static void write_stats(const char *path, const struct relay_config *cfg, struct dir *d,
                        const struct control *ctl)
{
    if (!path)
        return;
    char tmp[4096], state[256];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    control_state(ctl, state, sizeof state);
    fprintf(f, "{\"a_to_b\": ");
    write_dir(f, &d[0].st);
    fprintf(f, ", \"b_to_a\": ");
    write_dir(f, &d[1].st);
    fprintf(f, ", \"if_a\": \"%s\", \"if_b\": \"%s\", \"pid\": %d, \"burst_us\": %.3f, "
               "\"control\": {%s}}\n", cfg->if_a, cfg->if_b, (int)getpid(), cfg->burst_us,
            state);
    if (fclose(f) == 0)
        rename(tmp, path);
}

/* Receive scratch, one batch per call. */
static struct virtio_net_hdr rx_vh[BATCH];
static uint8_t *rx_buf[BATCH];
static char rx_cmsg[BATCH][CMSG_SPACE(sizeof(struct timespec))];
static struct iovec rx_iov[BATCH][2];
static struct mmsghdr rx_msgs[BATCH];

static struct unit_plan plan_buf[MAX_SEGS];

static void take_frame(struct dir *d, int i, int cut, int64_t offset_ns, double span_s,
                       int max_frame)
{
    struct dstats *st = &d->st;
    struct msghdr *mh = &rx_msgs[i].msg_hdr;
    int got = (int)rx_msgs[i].msg_len - (int)sizeof(struct virtio_net_hdr);
    double arrival = -1.0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(c), sizeof ts);
            arrival = (double)((int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec - offset_ns)
                      * 1e-9;
        }
    }
    double now = mono();
    if (!(arrival <= now + 0.001 && arrival >= now - 1.0)) {
        arrival = now;
        st->ts_fallback++;
    }
    if (got <= 0)
        return;
    struct wire w;
    frame_parse(rx_buf[i], got, &rx_vh[i], &w);
    st->rx_frames += w.nseg;
    st->rx_bytes += got + (long)(w.nseg - 1) * w.hdr_len;
    if (w.nseg > 1)
        st->rx_superframes++;
    if ((mh->msg_flags & MSG_TRUNC) || w.nseg > MAX_SEGS
            || (w.nseg == 1 && got > max_frame)
            || (w.nseg > 1 && w.hdr_len + w.mss > max_frame)) {
        st->drop_oversize += w.nseg;
        return;
    }
    struct plan_counts pc = {0};
    int n = plan_frame(&d->model, arrival, &w, got, cut, span_s, plan_buf, &pc, NULL);
    st->drop_loss += pc.lost;
    st->drop_queue += pc.queue;
    st->drop_fault += pc.fault;
    st->drop_uncut += pc.uncut;
    if (n == 0)
        return;
    uint8_t *dst;
    long slot = store_reserve(&d->store, got, n, &dst);
    if (slot < 0 || d->store.held_wire + w.nseg > (long)d->store.ucap) {
        int survivors = 0;
        for (int u = 0; u < n; u++)
            survivors += plan_buf[u].count;
        st->drop_ring += survivors;
        return;
    }
    memcpy(dst, rx_buf[i], (size_t)got);
    struct held h = {.len = got, .units_left = n, .vh = rx_vh[i], .w = w};
    store_commit(&d->store, slot, &h);
    for (int u = 0; u < n; u++) {
        int bytes = 0;
        for (int k = plan_buf[u].first; k < plan_buf[u].first + plan_buf[u].count; k++)
            bytes += wire_len(&w, got, k);
        struct unit un = {.frame = (uint32_t)slot, .first = (uint16_t)plan_buf[u].first,
                          .count = (uint16_t)plan_buf[u].count, .wire_bytes = bytes,
                          .due = plan_buf[u].due};
        store_push_unit(&d->store, &un);
    }
    if (d->store.held_wire > st->max_queued_frames)
        st->max_queued_frames = d->store.held_wire;
}

/* Reads whatever waits on direction d's input; returns frames read. */
static int drain(struct dir *d, int cut, int64_t offset_ns, double span_s, int max_frame)
{
    int total = 0;
    for (;;) {
        for (int i = 0; i < BATCH; i++) {
            rx_iov[i][0].iov_base = &rx_vh[i];
            rx_iov[i][0].iov_len = sizeof rx_vh[i];
            rx_iov[i][1].iov_base = rx_buf[i];
            rx_iov[i][1].iov_len = MAX_FRAME;
            struct msghdr *mh = &rx_msgs[i].msg_hdr;
            memset(mh, 0, sizeof *mh);
            mh->msg_iov = rx_iov[i];
            mh->msg_iovlen = 2;
            mh->msg_control = rx_cmsg[i];
            mh->msg_controllen = sizeof rx_cmsg[i];
        }
        int n = recvmmsg(d->rx_fd, rx_msgs, BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0) {
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                fprintf(stderr, "delayline: recvmmsg: %s\n", strerror(errno));
            return total;
        }
        for (int i = 0; i < n; i++)
            take_frame(d, i, cut, offset_ns, span_s, max_frame);
        total += n;
        if (n < BATCH)
            return total;
    }
}

/* Send scratch. */
static struct virtio_net_hdr tx_vh[BATCH];
static uint8_t tx_hdr[BATCH][256];
static struct iovec tx_iov[BATCH][3];
static struct mmsghdr tx_msgs[BATCH];

static void count_sent(struct dstats *st, const struct unit *u, double now)
{
    st->tx_frames += u->count;
    st->tx_bytes += u->wire_bytes;
    st->tx_sends++;
    double late = (now - u->due) * 1e6;
    st->late_sum_us += late;
    if (late > st->late_max_us)
        st->late_max_us = late;
}

static void count_refused(struct dstats *st, const struct unit *u, int err)
{
    static int reported[256];
    if (err == ENOBUFS)
        st->drop_qdisc += u->count;
    else if (err == EMSGSIZE)
        st->drop_oversize += u->count;
    else
        st->drop_tx += u->count;
    if (err != EAGAIN && err != ENOBUFS && err < 256 && !reported[err]++)
        fprintf(stderr, "delayline: send refused: %s (counted as drops)\n", strerror(err));
}

/* Sends every due unit of direction d; returns units sent or dropped. */
static int release(struct dir *d, double now)
{
    struct store *s = &d->store;
    int done = 0;
    while (!store_empty(s) && store_next(s)->due <= now) {
        int n = 0;
        uint32_t at = s->utail;
        while (n < BATCH && at != s->uhead) {
            struct unit *u = &s->units[at % s->ucap];
            if (u->due > now)
                break;
            struct held *f = store_frame(s, u->frame);
            uint8_t *bytes = store_bytes(s, f);
            struct msghdr *mh = &tx_msgs[n].msg_hdr;
            memset(mh, 0, sizeof *mh);
            mh->msg_iov = tx_iov[n];
            if (u->first == 0 && u->count == f->w.nseg) {
                tx_iov[n][0] = (struct iovec){&f->vh, sizeof f->vh};
                tx_iov[n][1] = (struct iovec){bytes, (size_t)f->len};
                mh->msg_iovlen = 2;
            } else {
                int pay_off, pay_len;
                frame_unit(bytes, f->len, &f->vh, &f->w, u->first, u->count, &tx_vh[n],
                           tx_hdr[n], &pay_off, &pay_len);
                tx_iov[n][0] = (struct iovec){&tx_vh[n], sizeof tx_vh[n]};
                tx_iov[n][1] = (struct iovec){tx_hdr[n], (size_t)f->w.hdr_len};
                tx_iov[n][2] = (struct iovec){bytes + pay_off, (size_t)pay_len};
                mh->msg_iovlen = 3;
            }
            n++;
            at++;
        }
        int j = 0;
        while (j < n) {
            int r = sendmmsg(d->tx_fd, tx_msgs + j, (unsigned)(n - j), MSG_DONTWAIT);
            if (r < 0) {
                if (errno == EINTR)
                    continue;
                count_refused(&d->st, store_next(s), errno);
                store_pop_unit(s);
                j++;
                continue;
            }
            for (int k = 0; k < r; k++) {
                count_sent(&d->st, store_next(s), now);
                store_pop_unit(s);
            }
            j += r;
        }
        done += n;
    }
    return done;
}

static int open_control(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof a.sun_path) {
        close(fd);
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(a.sun_path, path);
    unlink(path);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void read_control(int fd, struct control *ctl)
{
    char msg[CONTROL_MAX_MESSAGE + 2], answer[512];
    for (;;) {
        struct sockaddr_un from;
        socklen_t flen = sizeof from;
        ssize_t n = recvfrom(fd, msg, sizeof msg - 1, 0, (struct sockaddr *)&from, &flen);
        if (n < 0)
            return;
        msg[n] = 0;
        control_handle(ctl, msg, (size_t)n, answer, sizeof answer);
        fprintf(stderr, "delayline: control %.200s -> %s\n", msg, answer);
        if (flen > sizeof(sa_family_t))
            sendto(fd, answer, strlen(answer), 0, (struct sockaddr *)&from, flen);
    }
}

static double timeout_until(double when, double now)
{
    double t = when - now;
    return t < 0 ? 0 : t;
}

/* A WAN link's timing is the relay's wake-ups: it runs before the testbed's other processes
 * when it may (real-time, at a low priority; it sleeps between bursts, and the kernel keeps
 * a share of every second for the rest). Returns the policy it runs with. */
static const char *realtime(void)
{
    struct sched_param sp = {.sched_priority = 10};
    return sched_setscheduler(0, SCHED_FIFO, &sp) == 0 ? "fifo" : "other";
}

int relay_run(const struct relay_config *cfg)
{
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);      /* 1 us: sleeps end when asked */
    const char *sched = realtime();
    struct dir d[2];
    memset(d, 0, sizeof d);
    const char *ifs[2] = {cfg->if_a, cfg->if_b};
    double queue = (double)cfg->queue_pkts * (cfg->mtu + 14);
    double rate = cfg->rate_mbps > 0 ? cfg->rate_mbps * 1e6 : 0.0;
    int max_frame = cfg->mtu + 18;                  /* Ethernet header and a VLAN tag */
    for (int i = 0; i < BATCH; i++) {
        rx_buf[i] = malloc(MAX_FRAME);
        if (!rx_buf[i])
            return 1;
    }
    for (int i = 0; i < 2; i++) {
        if (model_init(&d[i].model, cfg->delay_ms / 1e3, cfg->jitter_ms / 1e3,
                       cfg->loss_pct / 100.0, rate, queue, cfg->seed + (uint64_t)i) < 0) {
            fprintf(stderr, "delayline: bad link model\n");
            return 2;
        }
        d[i].rx_fd = packet_socket(ifs[i], ETH_P_ALL, 1);
        d[i].tx_fd = packet_socket(ifs[1 - i], 0, 0);
        if (d[i].rx_fd < 0 || d[i].tx_fd < 0) {
            fprintf(stderr, "delayline: packet sockets on %s/%s: %s\n", ifs[i], ifs[1 - i],
                    strerror(errno));
            return 1;
        }
        set_buf(d[i].rx_fd, SO_RCVBUFFORCE, SO_RCVBUF, cfg->rcvbuf);
        set_buf(d[i].tx_fd, SO_SNDBUFFORCE, SO_SNDBUF, cfg->sndbuf);
        d[i].out_if = ifs[1 - i];
        if (store_init(&d[i].store, cfg->store_bytes, (uint32_t)cfg->ring_frames,
                       (uint32_t)cfg->ring_frames) < 0) {
            fprintf(stderr, "delayline: no memory for a store of %llu bytes\n",
                    (unsigned long long)cfg->store_bytes);
            return 1;
        }
        collect_drops(&d[i]);
        d[i].st.drop_ring = 0;
    }
    struct control ctl;
    control_init(&ctl, &d[0].model, &d[1].model);
    int ctl_fd = -1;
    if (cfg->control_path && (ctl_fd = open_control(cfg->control_path)) < 0) {
        fprintf(stderr, "delayline: control socket %s: %s\n", cfg->control_path,
                strerror(errno));
        return 1;
    }
    sigset_t block, empty;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigemptyset(&empty);
    sigprocmask(SIG_BLOCK, &block, NULL);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    printf("READY {\"pid\": %d, \"delay_ms\": %.17g, \"jitter_ms\": %.17g, \"loss_pct\": %.17g, "
           "\"rate_mbps\": ", (int)getpid(), cfg->delay_ms, cfg->jitter_ms, cfg->loss_pct);
    if (cfg->rate_mbps > 0)
        printf("%.17g", cfg->rate_mbps);
    else
        printf("null");
    printf(", \"queue_pkts\": %d, \"mtu\": %d, \"burst_us\": %.17g, \"vnet_hdr\": true, "
           "\"sched\": \"%s\"}\n", cfg->queue_pkts, cfg->mtu, cfg->burst_us, sched);
    fflush(stdout);

    double span = cfg->burst_us * 1e-6;
    double last_stats = mono(), last_control = last_stats, last_busy = -INFINITY;
    int64_t offset_ns = clock_offset_ns(0);
    double oversleep_s = 0.0;        /* how late timers wake this process, smoothed */
    while (running) {
        double now = mono();
        int got = 0;
        for (int i = 0; i < 2; i++)
            got += drain(&d[i], ctl.cut, offset_ns, span, max_frame);
        now = mono();
        int sent = 0;
        for (int i = 0; i < 2; i++)
            sent += release(&d[i], now);
        if (now - last_stats >= STATS_EVERY_S) {
            offset_ns = clock_offset_ns(offset_ns);
            for (int i = 0; i < 2; i++)
                collect_drops(&d[i]);
            write_stats(cfg->stats_path, cfg, d, &ctl);
            last_stats = now;
        }
        /* Busy (frames in or out): tick every `span` without listening; idle: sleep until
         * the next frame is due or one arrives, so a lone frame leaves exactly on time. */
        if (got || sent)
            last_busy = now;
        int listen = now - last_busy >= span;
        double wake = listen ? now + IDLE_WAIT_S : last_busy + span;
        for (int i = 0; listen && i < 2; i++)
            if (!store_empty(&d[i].store))
                wake = fmin(wake, store_next(&d[i].store)->due);
        wake = fmin(wake, last_stats + STATS_EVERY_S);
        struct pollfd pf[3];
        int np = 0;
        if (ctl_fd >= 0)
            pf[np++] = (struct pollfd){ctl_fd, POLLIN, 0};
        if (listen) {
            pf[np++] = (struct pollfd){d[0].rx_fd, POLLIN, 0};
            pf[np++] = (struct pollfd){d[1].rx_fd, POLLIN, 0};
        }
        /* A timer wakes the relay late (tens of microseconds in a VM): idle, or ticking in
         * bursts short against that, it asks for a wake-up earlier by most of what the last
         * ones overslept and waits out the rest, so a frame leaves close to its time and never
         * before it. A long burst's tick is late by design and is not waited for awake. */
        int precise = listen || span < PRECISE_SPAN_S;
        double asked = precise ? wake - 0.8 * oversleep_s : wake;
        double t = timeout_until(asked, mono());
        if (t > 0) {
            struct timespec ts = {(time_t)t, (long)((t - floor(t)) * 1e9)};
            int r = ppoll(pf, (nfds_t)np, &ts, &empty);
            double woke = mono();
            if (r == 0) {
                double over = fmin(fmax(woke - asked, 0.0), OVERSLEEP_MAX_S);
                oversleep_s += OVERSLEEP_GAIN * (over - oversleep_s);
                while (precise && woke < wake && wake - woke < OVERSLEEP_MAX_S)
                    woke = mono();
            }
            if (r > 0 && ctl_fd >= 0 && (pf[0].revents & POLLIN))
                read_control(ctl_fd, &ctl);
        } else if (ctl_fd >= 0 && now - last_control >= CONTROL_EVERY_S) {
            struct pollfd c = {ctl_fd, POLLIN, 0};
            if (poll(&c, 1, 0) > 0)
                read_control(ctl_fd, &ctl);
            last_control = now;
        }
    }
    for (int i = 0; i < 2; i++)
        collect_drops(&d[i]);
    write_stats(cfg->stats_path, cfg, d, &ctl);
    if (ctl_fd >= 0) {
        close(ctl_fd);
        unlink(cfg->control_path);
    }
    for (int i = 0; i < 2; i++) {
        close(d[i].rx_fd);
        close(d[i].tx_fd);
        store_free(&d[i].store);
    }
    return 0;
}
