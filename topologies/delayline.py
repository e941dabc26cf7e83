"""The userspace delay line: a WAN relay for kernels without ``sch_netem``.

Runs inside the WAN node's namespace, between two interfaces ``a`` and ``b`` (each a veth to a
site's border switch). Every frame (IP, ARP, RARP alike) read on one side is sent out of the
other side when topologies/linkmodel.py says: after the bottleneck queue at the configured rate,
then the delay (with jitter), never before the frame ahead of it, unless it is lost or
tail-dropped.

Efficiency: no receive system call and no copy until a frame leaves. Frames arrive in a
memory-mapped RX ring (``TPACKET_V2``) and stay in their slot until due, then leave with one
``send()`` straight from the slot. Bounded: the RX ring's size is the relay's queue limit; a full
ring (kernel-counted), a frame longer than a slot, a full send buffer, or a frame the output
qdisc refuses is a counted drop, never a crash.

Protocol with the parent (``ground.protocol``): READY with the parameters it runs with, once the
rings are bound; the
counters as JSON in ``--stats`` (rewritten every second and on exit). SIGTERM or SIGINT end it.
With ``--control PATH`` it takes runtime changes on a Unix datagram socket there (an outage, a
loss burst, an RTT step: ``topologies.linkcontrol``), checked between batches of frames.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import json
import logging
import math
import os
import random
import select
import signal
import socket
import sys
import time
from array import array
from dataclasses import asdict, dataclass

from ground.protocol import Kind, say
from topologies.linkcontrol import MAX_MESSAGE, LinkControl
from topologies.linkmodel import LOST, LinkModel
from topologies.packetring import (
    HEADER,
    TP_STATUS_KERNEL,
    TP_STATUS_USER,
    U32,
    RingGeometry,
    RxRing,
    geometry,
    tx_socket,
)

log = logging.getLogger("wanmig.delayline")

PR_SET_TIMERSLACK = 29
DEFAULT_SNDBUF = 16 << 20
CONTROL_EVERY_S = 0.01    # a busy relay reads its control socket this often


@dataclass
class DirectionStats:
    rx_frames: int = 0
    rx_bytes: int = 0
    tx_frames: int = 0
    tx_bytes: int = 0
    drop_loss: int = 0        # the configured random loss
    drop_queue: int = 0       # tail drop at the bottleneck queue (queue_pkts full)
    drop_ring: int = 0        # RX ring full: the relay's own bound (kernel-counted)
    drop_oversize: int = 0    # frame longer than the slot (offloads left on?)
    drop_tx: int = 0          # send buffer full (sized so that this does not happen)
    drop_qdisc: int = 0       # refused by the output qdisc (the HTB queue is full)
    drop_fault: int = 0       # arrived while the link was cut (an injected outage)
    max_queued_frames: int = 0
    late_max_us: float = 0.0  # worst release after its due time
    late_sum_us: float = 0.0  # for the mean lateness

    def to_json(self) -> dict:
        d = asdict(self)
        d["late_mean_us"] = self.late_sum_us / self.tx_frames if self.tx_frames else 0.0
        return d


class Relay:
    """Two interfaces, an RX ring and a TX ring on each, one loop.

    Direction ``i`` reads the RX ring of side ``i`` and sends on the socket of side ``1 - i``.
    A frame stays in its RX slot until it is due (slots are returned in order, so the kernel
    always writes the next free one), then is sent from there. Arrival times are
    the kernel's receive timestamps, so time spent waiting for this process to run does not add
    to the delay.
    """

    def __init__(self, if_a: str, if_b: str, sched_ab: LinkModel, sched_ba: LinkModel,
                 rx: RingGeometry, sndbuf: int) -> None:
        self.names = (if_a, if_b)
        self.rx = (RxRing(if_a, rx), RxRing(if_b, rx))
        self.tx = (tx_socket(if_a, sndbuf), tx_socket(if_b, sndbuf))
        self.scheds = (sched_ab, sched_ba)
        self.stats = (DirectionStats(), DirectionStats())
        # Per direction: due time of every RX slot (-1.0: to be dropped), the next slot to read
        # (head) and the oldest slot still held (tail).
        self.due = (array("d", bytes(8 * rx.frames)), array("d", bytes(8 * rx.frames)))
        self.head = [0, 0]
        self.tail = [0, 0]
        self.running = True
        self.control = LinkControl(self.scheds)
        self.control_sock: socket.socket | None = None

    def _drain(self, i: int, clock_offset: float) -> None:
        """Read every new frame in RX ring ``i``: decide its fate and due time, keep it held."""
        ring, sched, st, due = self.rx[i], self.scheds[i], self.stats[i], self.due[i]
        mm, fsize, nframes = ring.mm, ring.g.frame_size, ring.g.frames
        unpack = HEADER.unpack_from
        h = self.head[i]
        held = (h - self.tail[i]) % nframes
        cut = self.control.cut
        while held < nframes - 1:
            status, length, snaplen, _mac, _net, sec, nsec = unpack(mm, h * fsize)
            if not status & TP_STATUS_USER:
                break
            st.rx_frames += 1
            st.rx_bytes += length
            if snaplen < length:
                st.drop_oversize += 1
                due[h] = -1.0
            elif cut:
                st.drop_fault += 1
                due[h] = -1.0
            else:
                d = due[h] = sched.release(sec + nsec * 1e-9 - clock_offset, length)
                if d < 0:
                    if d == LOST:
                        st.drop_loss += 1
                    else:
                        st.drop_queue += 1
            h = h + 1 if h + 1 < nframes else 0
            held += 1
        self.head[i] = h
        if held > st.max_queued_frames:
            st.max_queued_frames = held

    def _release(self, i: int, now: float) -> None:
        """Send every due frame of direction ``i`` out of the other side, one ``send()`` each.

        A plain send is a true tail drop when the output qdisc is full (ENOBUFS, the frame is
        freed). A TX ring would be one system call fewer per frame, but there the kernel keeps a
        refused frame and retries it on every later send: a queue behind the configured queue,
        and a busy loop (measured: five refusals per frame sent at 100 Mbit/s)."""
        rx, out, st, due = self.rx[i], self.tx[1 - i], self.stats[i], self.due[i]
        rmm, rview, rsize, rn = rx.mm, rx.view, rx.g.frame_size, rx.g.frames
        send, unpack, pack = out.send, HEADER.unpack_from, U32.pack_into
        t, h = self.tail[i], self.head[i]
        while t != h:
            d = due[t]
            if d > now:
                break
            base = t * rsize
            if d >= 0:
                length, mac = unpack(rmm, base)[1:4:2]
                try:
                    send(rview[base + mac:base + mac + length])
                    st.tx_frames += 1
                    st.tx_bytes += length
                    late = (now - d) * 1e6
                    st.late_sum_us += late
                    if late > st.late_max_us:
                        st.late_max_us = late
                except BlockingIOError:          # send buffer full (sized not to happen)
                    st.drop_tx += 1
                except OSError as exc:
                    if exc.errno != errno.ENOBUFS:
                        raise
                    st.drop_qdisc += 1           # the HTB queue is full: tail drop
            pack(rmm, base, TP_STATUS_KERNEL)     # give the RX slot back
            t = t + 1 if t + 1 < rn else 0
        self.tail[i] = t

    def _next_due(self) -> float:
        nxt = math.inf
        for i in (0, 1):
            if self.tail[i] != self.head[i]:
                nxt = min(nxt, self.due[i][self.tail[i]])
        return nxt

    def open_control(self, path: str) -> None:
        """The runtime control socket (``topologies.linkcontrol``) at ``path``."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        sock.bind(path)
        sock.setblocking(False)
        self.control_sock = sock

    def _read_control(self) -> None:
        """Apply every control message waiting; answer each sender that has an address."""
        sock = self.control_sock
        assert sock is not None
        while True:
            try:
                data, sender = sock.recvfrom(MAX_MESSAGE + 1)
            except (BlockingIOError, InterruptedError):
                return
            answer = self.control.handle(data)
            log.info("control %s -> %s", data[:200], answer)
            if sender:
                with contextlib.suppress(OSError):
                    sock.sendto(json.dumps(answer).encode(), sender)

    def run(self, stats_path: str | None) -> None:
        ep = select.epoll()
        for ring in self.rx:
            # Edge-triggered: held slots keep a packet socket "readable", so level-triggered
            # polling would never sleep; each new frame still wakes us.
            ep.register(ring.sock.fileno(), select.EPOLLIN | select.EPOLLET)
        ctl_fd = None
        if self.control_sock is not None:
            ctl_fd = self.control_sock.fileno()
            ep.register(ctl_fd, select.EPOLLIN | select.EPOLLET)
        last_stats = last_control = time.monotonic()
        try:
            while self.running:
                now = time.monotonic()
                wait = self._next_due() - now
                events: list = []
                if wait > 0.001:
                    # epoll rounds its timeout up to whole ms: wake up to 1 ms early, then sleep.
                    events = ep.poll(min(wait - 0.001, 0.5))
                elif wait > 0:
                    events = ep.poll(0)
                    if not events:
                        time.sleep(wait)
                if ctl_fd is not None and (any(fd == ctl_fd for fd, _ in events)
                                           or time.monotonic() - last_control
                                           >= CONTROL_EVERY_S):
                    self._read_control()
                    last_control = time.monotonic()
                offset = time.time() - time.monotonic()
                self._drain(0, offset)
                self._drain(1, offset)
                now = time.monotonic()
                self._release(0, now)
                self._release(1, now)
                if now - last_stats >= 1.0:
                    self._collect_drops()
                    if stats_path:
                        self.write_stats(stats_path)
                    last_stats = now
        finally:
            ep.close()
            self._collect_drops()
            if stats_path:
                self.write_stats(stats_path)
            for ring in self.rx:
                ring.close()
            for sock in self.tx:
                sock.close()
            if self.control_sock is not None:
                path = self.control_sock.getsockname()
                self.control_sock.close()
                with contextlib.suppress(OSError):
                    os.unlink(path)

    def _collect_drops(self) -> None:
        for i in (0, 1):
            self.stats[i].drop_ring += self.rx[i].drops()

    def write_stats(self, path: str) -> None:
        data = {"a_to_b": self.stats[0].to_json(), "b_to_a": self.stats[1].to_json(),
                "if_a": self.names[0], "if_b": self.names[1], "pid": os.getpid(),
                "control": self.control.state()}
        tmp = f"{path}.tmp"
        with open(tmp, "w") as fh:
            json.dump(data, fh)
        os.replace(tmp, path)


def _low_timer_slack() -> None:
    """Ask for 1 us timer slack (default 50 us) so sleeps end when asked."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, 1000, 0, 0, 0)
    except (OSError, AttributeError):
        log.debug("prctl(PR_SET_TIMERSLACK) not available")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m topologies.delayline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--if-a", required=True)
    p.add_argument("--if-b", required=True)
    p.add_argument("--delay-ms", type=float, required=True, help="one-way delay, each direction")
    p.add_argument("--jitter-ms", type=float, default=0.0, help="one-way normal jitter (sd)")
    p.add_argument("--loss-pct", type=float, default=0.0, help="one-way random loss")
    p.add_argument("--rate-mbps", type=float, help="bottleneck rate (default: unshaped)")
    p.add_argument("--queue-pkts", type=int, default=1000,
                   help="bottleneck queue, in full-size frames")
    p.add_argument("--mtu", type=int, default=1500)
    p.add_argument("--ring-frames", type=int, default=16384,
                   help="RX ring slots per direction: the most frames held in the delay")
    p.add_argument("--sndbuf", type=int, default=DEFAULT_SNDBUF, help="send buffer, bytes")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--stats", help="JSON counters file")
    p.add_argument("--control", help="Unix datagram socket for runtime changes "
                                     "(topologies.linkcontrol)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="delayline: %(message)s")
    _low_timer_slack()
    rng_ab, rng_ba = random.Random(args.seed), random.Random(args.seed + 1)
    delay, jitter, loss = args.delay_ms / 1e3, args.jitter_ms / 1e3, args.loss_pct / 100.0
    rate = args.rate_mbps * 1e6 if args.rate_mbps else None
    queue = args.queue_pkts * (args.mtu + 14)

    def model(rng: random.Random) -> LinkModel:
        return LinkModel(delay, jitter, loss, rng, rate_bps=rate, queue_bytes=queue)

    relay = Relay(args.if_a, args.if_b, model(rng_ab), model(rng_ba),
                  rx=geometry(args.mtu, args.ring_frames), sndbuf=args.sndbuf)

    def stop(_sig: int, _frame: object) -> None:
        relay.running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.control:
        relay.open_control(args.control)
    say(Kind.READY, pid=os.getpid(), delay_ms=args.delay_ms, jitter_ms=args.jitter_ms,
        loss_pct=args.loss_pct, rate_mbps=args.rate_mbps, queue_pkts=args.queue_pkts)
    relay.run(args.stats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
