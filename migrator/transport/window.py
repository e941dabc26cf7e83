"""The flight window: how many bytes the data streams together may have written and not yet had
acknowledged, and how each stream is paced. One class, its mode decided once.

Why a window over all streams: loss-based TCP left to its own window fills the bottleneck's
queue and then loses a burst; at 150 ms every loss episode is a third of a second with nothing
acknowledged, and each stream added would add a window. So the streams together keep
``window_bdps`` bandwidth-delay products in flight: enough to fill the pipe, at most a fraction
of an RTT of queue at the bottleneck. Each writer asks before each slice (``admit``); the count
of streams grows, the sum does not.

Modes, from the link as the transport was told it (``bw_Bps`` and ``rtt_s``, the preflight's
measurement in a run):

* ``fixed``: the rate was measured. The window is fixed; each stream's send buffer holds its
  share of it (``send_buffer_bytes``) and each stream is paced at its share of the link with
  headroom (``stream_pacing_Bps``);
* ``growing``: the rate is a guess (``grow``). The window starts from the guess and follows what
  the streams' RTT says, once per round trip (``step``, ``flowctl.next_window``); buffers are
  left to the kernel's plan and streams are not paced, since a guess must not cap either;
* ``off``: no RTT known (or ``bound`` false): no window, buffers and pacing left to the kernel.

From the end of pre-copy on (``final_pacing_Bps``) every stream is paced at its share of the
measured rate whatever the mode (unless ``bound`` is false): what follows is small and must not
lose a packet to a full queue while the guest is paused.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from migrator.transport.flowctl import flight_room, next_window

log = logging.getLogger(__name__)

MIN_WINDOW = 256 * 1024         # per stream: the floor at a near-zero RTT (the BDP is KiB there)
WINDOW_CEILING = 256 << 20      # a growing window stops here (2 Gbit/s at 1 s RTT)
FINAL_PACING = 1.05             # streams together at this times the measured rate, at the end


class FlightWindow:
    def __init__(self, *, bw_Bps: float, rtt_s: float, streams: int,  # noqa: N803
                 total_unacked: Callable[[], int], window_bdps: float = 1.5,
                 bound: bool = True, grow: bool = False, notsent_lowat: int = 128 * 1024,
                 pacing_headroom: float = 2.0, max_age_s: float = 0.002,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``bw_Bps`` and ``rtt_s``: the link (a rate cap already applied); ``streams``: data
        streams at the start; ``total_unacked``: the streams' unacknowledged bytes summed, read
        from the kernel (at most every ``max_age_s``)."""
        self.bw_Bps, self.rtt_s, self.streams = bw_Bps, rtt_s, streams  # noqa: N815
        self.bound = bound
        self.bdp = bw_Bps * rtt_s
        self.mode = "off" if not bound or self.bdp <= 0 else "growing" if grow else "fixed"
        self.window_bdps, self.notsent_lowat = window_bdps, notsent_lowat
        self.pacing_headroom = pacing_headroom
        self.floor = float(MIN_WINDOW * streams)
        self.size: float | None = None if self.mode == "off" \
            else max(window_bdps * self.bdp, self.floor)
        self.largest: int | None = None          # the largest size, once a growing one grew
        self._total_unacked, self._max_age, self._clock = total_unacked, max_age_s, clock
        self._lock = threading.Lock()
        self._total = 0
        self._read_t = float("-inf")
        self.held_back = False       # a writer was refused since the last step
        self._step_t = float("-inf")
        self._base_rtt = float("inf")

    # --- what the sockets are given -------------------------------------------------------------

    def send_buffer_bytes(self) -> int | None:
        """SO_SNDBUF per data stream in the fixed mode: the streams together hold the window
        (the buffer holds the unsent bytes, up to TCP_NOTSENT_LOWAT, and those in flight);
        None: the kernel's plan (``flowctl.buffer_plan``)."""
        if self.mode != "fixed":
            return None
        share = self.window_bdps * self.bdp / self.streams
        return max(MIN_WINDOW, int(share) + self.notsent_lowat)

    def stream_pacing_Bps(self) -> int | None:  # noqa: N802
        """SO_MAX_PACING_RATE per data stream in the fixed mode: its share of the link with
        headroom. Without pacing a stream that was idle (between the drain and the final copy)
        sends its whole window at once; the userspace switch's socket overflows and the final
        copy waits for retransmission timeouts (seconds at 150 ms) while the guest is paused."""
        if self.mode != "fixed":
            return None
        return int(self.pacing_headroom * self.bw_Bps / self.streams)

    def final_pacing_Bps(self, measured_Bps: float, streams: int) -> int | None:  # noqa: N802,N803
        """Per stream from the end of pre-copy on: a share of the measured rate (else of the
        link as told); None when pacing is off or nothing is known."""
        if not self.bound:
            return None
        rate = measured_Bps or (self.bw_Bps if self.rtt_s else 0.0)
        return int(FINAL_PACING * rate / streams) if rate > 0 else None

    # --- writers -----------------------------------------------------------------------------

    def admit(self, own_unacked: int, nbytes: int) -> bool:
        """May a writer whose stream has ``own_unacked`` bytes out send ``nbytes`` more? What
        is admitted is counted until the kernel is read again, so writers admitted together do
        not overshoot (``flowctl.flight_room``)."""
        if self.size is None:
            return True
        with self._lock:
            now = self._clock()
            if now - self._read_t > self._max_age:
                self._total = self._total_unacked()
                self._read_t = now
            if not flight_room(self._total, own_unacked, nbytes, self.size):
                self.held_back = True
                return False
            self._total += nbytes
            return True

    # --- growing -----------------------------------------------------------------------------

    def step(self, rtts_s: list[float], min_interval_s: float = 0.0) -> None:
        """Once per round trip in the growing mode: the window follows the streams' smoothed
        RTTs (``rtts_s``) against the smallest seen (``flowctl.next_window``)."""
        rtts = [r for r in rtts_s if r > 0]
        if self.mode != "growing" or self.size is None or not rtts:
            return
        srtt = sum(rtts) / len(rtts)
        self._base_rtt = min(self._base_rtt, min(rtts))
        now = self._clock()
        if now - self._step_t < max(srtt, min_interval_s):
            return
        self._step_t = now
        new = next_window(self.size, self.held_back, srtt, self._base_rtt, self.floor,
                          max(WINDOW_CEILING, self.floor))
        self.held_back = False
        if new != self.size:
            log.debug("flight window %.0f -> %.0f B (RTT %.1f ms, base %.1f ms)", self.size,
                      new, srtt * 1e3, self._base_rtt * 1e3)
            self.size = new
            self.largest = max(self.largest or 0, int(new))
