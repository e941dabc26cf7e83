"""Pure decisions of the migration transport: rate cap, goodput, stream count, socket buffers.

Why separate from the sockets: each of these is a small control law that is easy to get subtly
wrong (a token bucket that bursts a whole frame, a goodput that counts idle time, a stream
adapter that oscillates), and each is testable exactly with a fake clock and made-up samples.
``migrator.transport.sender`` only feeds them measurements and obeys their answers.

* ``TokenBucket``: the ``max_bandwidth_mbps`` cap.  Tokens are wire bytes; a send debits its
  size and waits until the balance is back to zero, so the long-run rate is exact and the
  largest burst is the bucket depth (the caller sends big frames in slices).
* ``GoodputMeter``: wire bytes ACKNOWLEDGED by the peer's TCP (``tcpi_bytes_acked``) per second
  of *busy* time over a sliding window.  Busy = some bytes were handed to the transport and not
  yet acknowledged at the start of the interval, so the gaps between rounds (nothing to send) do
  not dilute the link's measured capacity.
* ``StreamAdapter``: like multifd channels, but adapted: start with the policy's count, add one
  stream at a time while each addition raises goodput by at least ``min_gain``; the first
  addition that does not freezes the count (a long fat pipe rewards parallel streams, a
  loopback or a CPU-bound sender does not).
* ``flight_room``: the bytes all data streams together may have written and not yet had
  acknowledged (``window_bdps`` bandwidth-delay products), exact in bytes where a send buffer's
  size is not (the kernel doubles it and counts its own overhead in it), and shared, so a
  stream just added (in slow start) takes nothing from the others.
* ``next_window``: that window's growth, when the link's rate is not measured but guessed.
* ``buffer_plan``: socket buffers for a bandwidth-delay product (see its docstring).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


class TokenBucket:
    """Rate cap in bytes/s with a bounded burst; pure (the caller passes ``now``)."""

    def __init__(self, rate_Bps: float, burst_bytes: float, now: float) -> None:  # noqa: N803
        if not rate_Bps > 0:
            raise ValueError(f"rate must be > 0 bytes/s, got {rate_Bps}")
        if not burst_bytes > 0:
            raise ValueError(f"burst must be > 0 bytes, got {burst_bytes}")
        self.rate = float(rate_Bps)
        self.burst = float(burst_bytes)
        self._tokens = self.burst
        self._t = now

    def _refill(self, now: float) -> None:
        if now > self._t:
            self._tokens = min(self.burst, self._tokens + (now - self._t) * self.rate)
            self._t = now

    def reserve(self, nbytes: int, now: float) -> float:
        """Debit ``nbytes``; the seconds the caller must wait before sending them (>= 0)."""
        self._refill(now)
        self._tokens -= nbytes
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    @property
    def tokens(self) -> float:
        return self._tokens


def flight_room(total_unacked: int, own_unacked: int, nbytes: int, window: float) -> bool:
    """May a stream with ``own_unacked`` bytes written and not yet acknowledged write ``nbytes``
    more, when all streams together have ``total_unacked`` under ``window``? Always when the
    stream has nothing outstanding, so no stream is starved and a slice larger than the window
    still goes."""
    return own_unacked <= 0 or total_unacked + nbytes <= window


def next_window(window: float, held_back: bool, srtt_s: float, base_rtt_s: float,
                floor: float, ceiling: float) -> float:
    """The flight window one round trip later, when the link's rate is a guess (no measured
    bandwidth): a quarter larger while it held writers back and the RTT shows no queue (at
    most a quarter above the base RTT); a sixth smaller once the RTT shows a queue of half the
    base RTT or more; else unchanged. Bounded by ``floor`` and ``ceiling``."""
    if base_rtt_s <= 0 or srtt_s <= 0:
        return window
    if srtt_s > 1.5 * base_rtt_s:
        return max(floor, window * 5 / 6)
    if held_back and srtt_s <= 1.25 * base_rtt_s:
        return min(ceiling, window * 1.25)
    return window


@dataclass(frozen=True)
class _Sample:
    t: float
    acked: int         # cumulative wire bytes acknowledged by the peer
    handed: int        # cumulative wire bytes handed to the transport (queued or sent)


class GoodputMeter:
    """Acknowledged wire bytes per busy second over the last ``window_s`` seconds."""

    def __init__(self, window_s: float = 2.0) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.window_s = window_s
        self._samples: deque[_Sample] = deque()

    def add(self, t: float, acked: int, handed: int) -> None:
        """A cumulative sample; samples must come in time order (older ones are ignored)."""
        if self._samples and t <= self._samples[-1].t:
            return
        self._samples.append(_Sample(t, acked, handed))
        while len(self._samples) > 2 and self._samples[1].t < t - self.window_s:
            self._samples.popleft()

    def reset(self) -> None:
        """Forget the window (after the stream count changed, say)."""
        self._samples.clear()

    def busy_s(self) -> float:
        return sum(b.t - a.t for a, b in self._pairs())

    def rate_Bps(self) -> float:  # noqa: N802 - unit suffix
        """Goodput in bytes/s; 0.0 until some busy interval was seen."""
        busy = acked = 0.0
        for a, b in self._pairs():
            busy += b.t - a.t
            acked += b.acked - a.acked
        return acked / busy if busy > 0 else 0.0

    def _pairs(self) -> list[tuple[_Sample, _Sample]]:
        s = list(self._samples)
        return [(a, b) for a, b in zip(s, s[1:], strict=False)
                if a.handed > a.acked or b.acked > a.acked]


class StreamAdapter:
    """How many data streams to use; decisions only (see the module docstring)."""

    def __init__(self, initial: int, maximum: int, min_gain: float = 0.10) -> None:
        if initial < 1 or maximum < initial:
            raise ValueError(f"need 1 <= initial ({initial}) <= maximum ({maximum})")
        if not min_gain >= 0:
            raise ValueError(f"min_gain must be >= 0, got {min_gain}")
        self.current = initial
        self.maximum = maximum
        self.min_gain = min_gain
        self.frozen = initial >= maximum
        self.history: dict[int, float] = {}    # stream count => goodput measured with it (B/s)

    def observe(self, streams: int, goodput_Bps: float) -> int:  # noqa: N803
        """Goodput measured with ``streams`` streams; returns the stream count to use next."""
        if streams != self.current or goodput_Bps <= 0:
            return self.current
        self.history[streams] = goodput_Bps
        if self.frozen:
            return self.current
        before = self.history.get(streams - 1)
        if before is not None and goodput_Bps < before * (1.0 + self.min_gain):
            self.frozen = True          # the last stream did not pay: stop growing
            return self.current
        if self.current < self.maximum:
            self.current += 1
        else:
            self.frozen = True
        return self.current


@dataclass(frozen=True)
class BufferPlan:
    setsockopt_bytes: int | None    # value to pass to SO_SNDBUF/SO_RCVBUF, None = leave alone
    reason: str


def buffer_plan(bdp_bytes: float, streams: int, autotune_max: int | None,
                core_max: int | None, headroom: float = 2.0) -> BufferPlan:
    """Per-socket buffer for ``streams`` streams sharing a bandwidth-delay product.

    Each stream needs ``headroom * bdp / streams`` bytes of buffer to keep its share of the pipe
    full.  Linux autotunes TCP buffers up to ``tcp_wmem[2]``/``tcp_rmem[2]`` (``autotune_max``)
    and setting SO_SNDBUF/SO_RCVBUF switches autotuning off for that socket, so the option is
    set only when autotuning cannot reach the need; the kernel then caps the value at
    ``net.core.wmem_max``/``rmem_max`` (``core_max``) and doubles it for its bookkeeping.  The
    caller reads back and records what was granted.
    """
    need = int(headroom * max(bdp_bytes, 0.0) / max(streams, 1))
    if autotune_max is not None and need <= autotune_max:
        return BufferPlan(None, f"autotuned (need {need} B <= autotune max {autotune_max} B)")
    value = need if core_max is None else min(need, core_max)
    capped = "" if value == need else f", capped by net.core.*mem_max={core_max}"
    return BufferPlan(value, f"set to {value} B for a need of {need} B{capped}")
