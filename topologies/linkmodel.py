"""What one direction of an emulated WAN link does to a frame: the delay line's pure decision.

The model is a FIFO bottleneck followed by a propagation delay, as on a real path:

1. random loss (independent, probability ``loss``);
2. a queue drained at ``rate`` bytes per second (the frame's own Ethernet length, as tc counts
   it): a frame that finds more than ``queue_bytes`` waiting is tail-dropped; otherwise it leaves
   the bottleneck once the frames ahead of it and its own bytes are serialised;
3. a propagation delay with optional normal jitter, never below zero, and never overtaking the
   frame ahead (a WAN path does not reorder).

A GSO super-frame (headers of ``hdr_len`` bytes and a payload cut into ``mss``-byte slices, as a
TSO-capable fabric hands TCP over) is the wire frames it stands for (``wire_frames``): each is
lost, queued and serialised on its own, in order.

The delay line (``topologies/relay/``, compiled) makes these decisions in C; this is its
reference, and a test puts the same frame traces through both.

Doing the rate here, rather than with tc htb on the relay's output, is a measured choice: on this
project's machine HTB's timers, run in the relay's own send() calls, cost two thirds of a core at
380 Mbit/s and the relay fell 8 ms behind; the same relay with the rate done here carries 500
Mbit/s (see the delay-line figures in `make bench`).
"""

from __future__ import annotations

import math
import random

LOST = -1.0        # dropped by the configured random loss
QUEUE_FULL = -2.0  # tail-dropped: the bottleneck queue was full


class LinkModel:
    """Release times for one direction of a link; the clock is whatever ``arrival`` uses."""

    def __init__(self, delay_s: float, jitter_s: float = 0.0, loss: float = 0.0,
                 rng: random.Random | None = None, rate_bps: float | None = None,
                 queue_bytes: float = math.inf) -> None:
        if not (delay_s >= 0 and jitter_s >= 0 and 0 <= loss < 1):  # NaN fails too
            raise ValueError(f"bad link model: delay {delay_s}, jitter {jitter_s}, loss {loss}")
        if rate_bps is not None and not rate_bps > 0:
            raise ValueError(f"bad link model: rate {rate_bps} bit/s")
        if not queue_bytes > 0:
            raise ValueError(f"bad link model: queue {queue_bytes} bytes")
        self.delay_s = delay_s
        self.jitter_s = jitter_s
        self.loss = loss
        self.rng = rng or random.Random(1)
        self.rate = rate_bps / 8.0 if rate_bps else 0.0     # bytes per second
        self.queue_bytes = queue_bytes
        self.link_free = -math.inf    # when the bottleneck finishes the last accepted frame
        self.last = -math.inf         # release time of the last frame (FIFO)

    def backlog_bytes(self, now: float) -> float:
        """Bytes still waiting at the bottleneck at ``now``."""
        if not self.rate or self.link_free <= now:
            return 0.0
        return (self.link_free - now) * self.rate

    def release(self, arrival: float, length: int) -> float:
        """When a ``length``-byte frame that arrived at ``arrival`` leaves the link;
        LOST or QUEUE_FULL if it never does."""
        if self.loss and self.rng.random() < self.loss:
            return LOST
        sent = arrival
        if self.rate:
            start = arrival
            if self.link_free > arrival:
                if (self.link_free - arrival) * self.rate > self.queue_bytes:
                    return QUEUE_FULL
                start = self.link_free
            sent = self.link_free = start + length / self.rate
        due = sent + self.delay_s
        if self.jitter_s:
            due = max(sent, due + self.rng.gauss(0.0, self.jitter_s))
        if due < self.last:
            due = self.last
        self.last = due
        return due


def wire_frames(length: int, hdr_len: int = 0, mss: int = 0) -> list[int]:
    """The wire frames' lengths a frame of ``length`` bytes stands for: itself (``mss`` 0), or
    ``hdr_len`` bytes of headers before each ``mss``-byte slice of the rest."""
    if mss <= 0:
        return [length]
    payload = length - hdr_len
    return [hdr_len + min(mss, payload - k) for k in range(0, max(payload, 1), mss)]
