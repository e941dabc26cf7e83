"""The userspace delay line: a WAN relay for kernels without ``sch_netem``.

Runs inside the relay node's namespace, between two interfaces ``a`` and ``b`` (each a veth to a
site's border switch). Every frame (IP, ARP, RARP alike) read on one side is sent out of the
other side at ``arrival + delay (+ normal jitter)``, never before the frame ahead of it (a WAN does
not reorder), unless it is lost (independent random loss). Bandwidth is not done here: the kernel
shapes with HTB on the switch side, before the delay.

Efficiency: frames are received straight into a preallocated byte ring per direction
(``recv_into``), their release time, offset and length in preallocated arrays, so the steady state
allocates almost nothing per frame; sockets are drained in batches after each wake-up. Bounded:
a full ring, a frame that does not fit, or a full transmit queue is a counted drop, never a crash.

Protocol with the parent: one line ``READY {json}`` on stdout once both sockets are bound; the
counters as JSON in ``--stats`` (rewritten every second and on exit). SIGTERM or SIGINT end it.
"""

from __future__ import annotations

import argparse
import ctypes
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
from dataclasses import asdict, dataclass, field

log = logging.getLogger("wanmig.delayline")

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23
MSG_TRUNC = socket.MSG_TRUNC
PR_SET_TIMERSLACK = 29
BATCH = 256              # frames drained from one socket per wake-up before looking at the clock
SOCKET_BUFFER = 16 << 20


@dataclass
class DirectionStats:
    rx_frames: int = 0
    rx_bytes: int = 0
    tx_frames: int = 0
    tx_bytes: int = 0
    drop_loss: int = 0        # the configured random loss
    drop_queue: int = 0       # ring full: the relay's own bound
    drop_oversize: int = 0    # frame longer than the slot (offloads left on?)
    drop_tx: int = 0          # transmit queue full (EAGAIN/ENOBUFS)
    max_queued_frames: int = 0
    late_max_us: float = 0.0  # worst release after its due time
    late_sum_us: float = 0.0  # for the mean lateness

    def to_json(self) -> dict:
        d = asdict(self)
        d["late_mean_us"] = self.late_sum_us / self.tx_frames if self.tx_frames else 0.0
        return d


class Schedule:
    """Release times for one direction: the pure decision, unit-tested with a seeded RNG."""

    def __init__(self, delay_s: float, jitter_s: float, loss: float, rng: random.Random) -> None:
        if not (delay_s >= 0 and jitter_s >= 0 and 0 <= loss < 1):  # NaN fails too
            raise ValueError(f"bad schedule: delay {delay_s}, jitter {jitter_s}, loss {loss}")
        self.delay_s = delay_s
        self.jitter_s = jitter_s
        self.loss = loss
        self.rng = rng
        self.last = -math.inf

    def release(self, arrival: float) -> float:
        """Release time of a frame that arrived at ``arrival``; -1.0 if it is lost."""
        if self.loss and self.rng.random() < self.loss:
            return -1.0
        due = arrival + self.delay_s
        if self.jitter_s:
            due = max(arrival, due + self.rng.gauss(0.0, self.jitter_s))
        if due < self.last:          # FIFO: never overtake the frame ahead
            due = self.last
        self.last = due
        return due


@dataclass
class Ring:
    """Frames waiting in one direction: bytes in a ring buffer, metadata in parallel arrays."""

    capacity: int           # bytes
    slot: int               # the largest frame accepted
    max_frames: int
    buf: bytearray = field(init=False)
    view: memoryview = field(init=False)
    due: array = field(init=False)
    off: array = field(init=False)
    length: array = field(init=False)
    head: int = 0           # index of the oldest frame
    count: int = 0
    wpos: int = 0           # next byte offset to write

    def __post_init__(self) -> None:
        if self.capacity < 2 * self.slot:
            raise ValueError(f"ring of {self.capacity} bytes cannot hold two "
                             f"{self.slot}-byte frames")
        self.buf = bytearray(self.capacity)
        self.view = memoryview(self.buf)
        self.due = array("d", bytes(8 * self.max_frames))
        self.off = array("q", bytes(8 * self.max_frames))
        self.length = array("q", bytes(8 * self.max_frames))

    def reserve(self) -> int:
        """Offset where the next frame (up to ``slot`` bytes) can be received, or -1 if full."""
        if self.count == 0:
            self.wpos = 0
            return 0
        if self.count >= self.max_frames:
            return -1
        rpos = self.off[self.head]
        if self.wpos >= rpos:
            if self.capacity - self.wpos >= self.slot:
                return self.wpos
            if rpos > self.slot:     # wrap to the start
                return 0
            return -1
        return self.wpos if rpos - self.wpos > self.slot else -1

    def push(self, offset: int, length: int, due: float) -> None:
        tail = (self.head + self.count) % self.max_frames
        self.off[tail] = offset
        self.length[tail] = length
        self.due[tail] = due
        self.count += 1
        self.wpos = offset + length

    def pop(self) -> None:
        self.head = (self.head + 1) % self.max_frames
        self.count -= 1


def open_socket(ifname: str, sndbuf: int = SOCKET_BUFFER) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    # Frames waiting in the qdisc after us are charged to our send buffer: it must be larger
    # than that queue (see shaping.relay_sndbuf_bytes). *BUFFORCE ignores rmem_max (root only).
    for opt, force, size in ((socket.SO_RCVBUF, 33, SOCKET_BUFFER),
                             (socket.SO_SNDBUF, 32, sndbuf)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, size)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, opt, size)
    sock.bind((ifname, ETH_P_ALL))
    sock.setblocking(False)
    # Drop whatever arrived between socket() and bind() from any interface.
    try:
        while True:
            sock.recv(65536)
    except BlockingIOError:
        pass
    return sock


def _low_timer_slack() -> None:
    """Ask for 1 us timer slack (default 50 us) so sleeps end when asked."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, 1000, 0, 0, 0)
    except (OSError, AttributeError):
        log.debug("prctl(PR_SET_TIMERSLACK) not available")


class Relay:
    """Two sockets, two rings, one loop."""

    def __init__(self, if_a: str, if_b: str, sched_ab: Schedule, sched_ba: Schedule,
                 slot: int, ring_bytes: int, sndbuf: int = SOCKET_BUFFER) -> None:
        self.socks = (open_socket(if_a, sndbuf), open_socket(if_b, sndbuf))
        self.names = (if_a, if_b)
        self.scheds = (sched_ab, sched_ba)
        max_frames = max(1024, ring_bytes // 64)
        self.rings = (Ring(ring_bytes, slot, max_frames), Ring(ring_bytes, slot, max_frames))
        self.stats = (DirectionStats(), DirectionStats())
        self.scratch = bytearray(65536)
        self.running = True

    def _drain(self, i: int) -> None:
        """Read up to BATCH frames from side ``i`` into ring ``i`` (direction i -> other)."""
        sock, ring, sched, st = self.socks[i], self.rings[i], self.scheds[i], self.stats[i]
        slot = ring.slot
        view = ring.view
        for _ in range(BATCH):
            off = ring.reserve()
            try:
                if off < 0:
                    n = sock.recv_into(self.scratch, 0, MSG_TRUNC)
                    st.rx_frames += 1
                    st.rx_bytes += n
                    st.drop_queue += 1
                    continue
                n = sock.recv_into(view[off:off + slot], slot, MSG_TRUNC)
            except BlockingIOError:
                return
            now = time.monotonic()
            st.rx_frames += 1
            st.rx_bytes += n
            if n > slot:
                st.drop_oversize += 1
                continue
            due = sched.release(now)
            if due < 0:
                st.drop_loss += 1
                continue
            ring.push(off, n, due)
            if ring.count > st.max_queued_frames:
                st.max_queued_frames = ring.count

    def _release(self, i: int, now: float) -> None:
        """Send every due frame of ring ``i`` out of the other side."""
        ring, st = self.rings[i], self.stats[i]
        out = self.socks[1 - i]
        view, due, off, length = ring.view, ring.due, ring.off, ring.length
        while ring.count:
            h = ring.head
            t = due[h]
            if t > now:
                return
            o, n = off[h], length[h]
            try:
                out.send(view[o:o + n])
                st.tx_frames += 1
                st.tx_bytes += n
                late = (now - t) * 1e6
                st.late_sum_us += late
                if late > st.late_max_us:
                    st.late_max_us = late
            except (BlockingIOError, OSError):
                st.drop_tx += 1
            ring.pop()

    def _next_due(self) -> float:
        nxt = math.inf
        for ring in self.rings:
            if ring.count:
                nxt = min(nxt, ring.due[ring.head])
        return nxt

    def run(self, stats_path: str | None) -> None:
        ep = select.epoll()
        fds = {s.fileno(): i for i, s in enumerate(self.socks)}
        for fd in fds:
            ep.register(fd, select.EPOLLIN)
        last_stats = time.monotonic()
        try:
            while self.running:
                now = time.monotonic()
                wait = self._next_due() - now
                if wait > 0.001:
                    # epoll rounds its timeout up to whole ms: wake up to 1 ms early, then sleep.
                    events = ep.poll(min(wait - 0.001, 0.5))
                elif wait > 0:
                    events = ep.poll(0)
                    if not events:
                        time.sleep(wait)
                else:
                    events = ep.poll(0)
                for fd, _ in events:
                    self._drain(fds[fd])
                now = time.monotonic()
                self._release(0, now)
                self._release(1, now)
                if stats_path and now - last_stats >= 1.0:
                    self.write_stats(stats_path)
                    last_stats = now
        finally:
            ep.close()
            if stats_path:
                self.write_stats(stats_path)

    def write_stats(self, path: str) -> None:
        data = {"a_to_b": self.stats[0].to_json(), "b_to_a": self.stats[1].to_json(),
                "if_a": self.names[0], "if_b": self.names[1], "pid": os.getpid()}
        tmp = f"{path}.tmp"
        with open(tmp, "w") as fh:
            json.dump(data, fh)
        os.replace(tmp, path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m topologies.delayline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--if-a", required=True)
    p.add_argument("--if-b", required=True)
    p.add_argument("--delay-ms", type=float, required=True, help="one-way delay, each direction")
    p.add_argument("--jitter-ms", type=float, default=0.0, help="one-way normal jitter (sd)")
    p.add_argument("--loss-pct", type=float, default=0.0, help="one-way random loss")
    p.add_argument("--mtu", type=int, default=1500)
    p.add_argument("--ring-mb", type=float, default=64.0, help="bytes queued per direction")
    p.add_argument("--sndbuf", type=int, default=SOCKET_BUFFER, help="send buffer, bytes")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--stats", help="JSON counters file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="delayline: %(message)s")
    _low_timer_slack()
    rng_ab, rng_ba = random.Random(args.seed), random.Random(args.seed + 1)
    delay, jitter, loss = args.delay_ms / 1e3, args.jitter_ms / 1e3, args.loss_pct / 100.0
    relay = Relay(args.if_a, args.if_b, Schedule(delay, jitter, loss, rng_ab),
                  Schedule(delay, jitter, loss, rng_ba), slot=args.mtu + 64,
                  ring_bytes=int(args.ring_mb * (1 << 20)), sndbuf=args.sndbuf)

    def stop(_sig: int, _frame: object) -> None:
        relay.running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("READY " + json.dumps({"pid": os.getpid(), "delay_ms": args.delay_ms,
                                 "jitter_ms": args.jitter_ms, "loss_pct": args.loss_pct}),
          flush=True)
    relay.run(args.stats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
