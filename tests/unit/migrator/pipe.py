"""A long fat pipe on a fake clock, for driving the engine as over a real WAN.

What it models: one bottleneck of ``bw`` wire bytes/s, a round-trip time, and a flight window
of ``window`` bytes over all streams. A send is cut into slices; a slice leaves when the window
has room (the clock runs, and the guest with it, while the sender waits for an
acknowledgment), is serialised at the bottleneck after the slices before it, and is
acknowledged one RTT after it left. The transfer rate the engine reads comes from the
transport's own ``RateEstimator``, fed every ``SAMPLE_S`` with the bytes acknowledged and
whether the sender was waiting for room. Pages are really encoded, decoded and applied to a
destination image, so "completed" is checked against the bytes.
"""

from __future__ import annotations

import heapq

import numpy as np

from migrator.codecs.registry import get_codec
from migrator.core.interfaces import FinishReport, SendReport
from migrator.memory.pages import PAGE_SIZE
from migrator.transport.rate import RateEstimator

SLICE = 64 * 1024
SAMPLE_S = 0.01


class Destination:
    """What a fake link delivers into: every page really encoded with the round's codec,
    decoded and applied to ``image``; zero pages cleared. ``carry`` returns the encoded size."""

    def __init__(self, like: np.ndarray) -> None:
        self.image = np.zeros_like(like)
        self.enc: dict = {}
        self.dec: dict = {}

    def carry(self, codec_name: str, indices: np.ndarray, data: bytes,
              zero: np.ndarray) -> int:
        if codec_name not in self.enc:
            self.enc[codec_name] = get_codec(codec_name, role="encode")
            self.dec[codec_name] = get_codec(codec_name, role="decode")
        blob = self.enc[codec_name].encode(data, indices) if len(indices) else b""
        if len(indices):
            out = self.dec[codec_name].decode(blob, len(indices), indices)
            self.image[indices] = np.frombuffer(out, np.uint8).reshape(-1, PAGE_SIZE)
        self.image[zero] = 0
        return len(blob)


class PipeSender:
    def __init__(self, clock, vm, bw_Bps: float, rtt: float, window: float) -> None:  # noqa: N803
        self.clock, self.vm, self.bw, self.rtt, self.window = clock, vm, bw_Bps, rtt, window
        self.to = Destination(vm.memory)
        self.dest = self.to.image
        self.acks: list[tuple[float, int]] = []       # (ack time, bytes), a heap
        self.acked = 0
        self.link_free = 0.0
        self.waiting = False
        self.rate = RateEstimator()
        self.next_sample = 0.0
        self.samples: list[tuple[float, int, int]] = []   # (t, acked, in flight)
        clock.listeners.append(self._tick)

    # --- the clock ---------------------------------------------------------------------------

    def _tick(self, _dt: float) -> None:
        """Whenever the clock moves (the engine's sleeps too): acknowledge and sample."""
        now = self.clock.now()
        while self.acks and self.acks[0][0] <= now:
            self.acked += heapq.heappop(self.acks)[1]
        if now >= self.next_sample:
            self.rate.add(now, self.acked, self.waiting)
            self.samples.append((now, self.acked, self.backlog_bytes()))
            self.next_sample = now + SAMPLE_S

    def _run_until(self, t: float) -> None:
        while self.clock.now() < t:
            self.clock.advance(min(t - self.clock.now(), SAMPLE_S))

    def backlog_bytes(self) -> int:
        return sum(n for _, n in self.acks)

    def _put(self, nbytes: int) -> None:
        while self.backlog_bytes() + nbytes > self.window and self.acks:
            self.waiting = True
            self._run_until(self.acks[0][0])
        self.waiting = False
        now = self.clock.now()
        self.link_free = max(now, self.link_free) + nbytes / self.bw
        heapq.heappush(self.acks, (self.link_free + self.rtt, nbytes))

    # --- Sender --------------------------------------------------------------------------------

    def send_pages(self, round_no, indices, data, codec_name, zero_indices=None):
        t0 = self.clock.now()
        zero = np.asarray(zero_indices if zero_indices is not None else [], np.int64)
        wire = self.to.carry(codec_name, indices, data, zero) + 8 * len(zero)
        for start in range(0, wire, SLICE):
            self._put(min(SLICE, wire - start))
        return SendReport(bytes_raw=len(data), bytes_on_wire=wire,
                          seconds=self.clock.now() - t0)

    def measured_goodput_Bps(self) -> float:  # noqa: N802
        return self.rate.rate_Bps() or 0.0

    def rtt_s(self) -> float:
        return self.rtt

    def wait_backlog(self, max_bytes: int, timeout_s: float) -> float:
        t0 = self.clock.now()
        while self.backlog_bytes() > max_bytes and self.acks:
            self._run_until(self.acks[0][0])
        return self.clock.now() - t0

    def drain(self, timeout_s: float) -> float:
        return self.wait_backlog(0, timeout_s)

    def finish(self, state: bytes) -> FinishReport:
        """STATE and DIGEST go behind the last slice; the ACK comes back one RTT after it
        left (the destination's check takes no time here)."""
        last = max(self.link_free, self.clock.now()) + self.rtt
        self._run_until(last)
        same = bool(np.array_equal(self.dest, self.vm.memory))
        return FinishReport(ok=same, digest_ok=same, verify_s=0.0,
                            error=None if same else "memory digest mismatch")
