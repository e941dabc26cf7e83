"""The transfer rate of the migration stream, estimated continuously over all data streams.

Why not the rate of a round: a round shorter than the round trip never fills the pipe, so its
bytes over its duration says how much the engine had to send, not what the link can carry;
deciding the stop-and-copy from it over-estimates the downtime and the migration never stops
(measured at 100 ms: rounds of 40-60 Mbit/s on a 200 Mbit/s link). QEMU measures the bandwidth
over the continuous stream every 100 ms (``migration_update_counters``); so does this, with one
refinement taken from BBR's delivery-rate sampling: an interval in which the sender had nothing
waiting to be sent was *application-limited* and can only raise the estimate, never lower it,
because the link might have carried more.

Exactly: cumulative samples ``(t, acked bytes, data waiting?)`` come in every few ms; once
``interval_s`` has passed since the interval began, its rate is ``delta acked / delta t``.
An interval is link-limited when data was waiting at (at least ``full_frac`` of) its samples;
its rate enters an EWMA (``alpha``). An application-limited interval enters it only when its
rate is above the estimate (it proves the link carries at least that; a burst of
acknowledgments after an idle spell is smoothed, not believed). Before the first interval the
estimate is None and the caller uses its own guess.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class _Interval:
    t0: float
    acked0: int
    samples: int = 0
    waiting: int = 0


class RateEstimator:
    """Pure: the caller passes the time; see the module docstring for the rule."""

    def __init__(self, interval_s: float = 0.1, alpha: float = 0.25,
                 full_frac: float = 0.8) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        if not 0.0 < full_frac <= 1.0:
            raise ValueError(f"full_frac must be in (0, 1], got {full_frac}")
        self.interval_s, self.alpha, self.full_frac = interval_s, alpha, full_frac
        self._cur: _Interval | None = None
        self._rate: float | None = None
        self.link_limited = 0            # intervals that entered the EWMA
        self.app_limited = 0             # intervals that could only raise it

    def add(self, t: float, acked: int, waiting: bool) -> None:
        """One sample: the time, the bytes acknowledged so far (cumulative, all streams) and
        whether any data was waiting to be sent (queued or unsent in a socket)."""
        cur = self._cur
        if cur is None:
            self._cur = _Interval(t, acked, 1, int(waiting))
            return
        if t <= cur.t0:
            return
        cur.samples += 1
        cur.waiting += int(waiting)
        if t - cur.t0 < self.interval_s:
            return
        rate = max(0, acked - cur.acked0) / (t - cur.t0)
        if cur.waiting >= self.full_frac * cur.samples:
            self.link_limited += 1
            self._rate = rate if self._rate is None else \
                (1 - self.alpha) * self._rate + self.alpha * rate
        else:
            self.app_limited += 1
            if self._rate is None:
                self._rate = rate if rate > 0 else None
            elif rate > self._rate:
                self._rate = (1 - self.alpha) * self._rate + self.alpha * rate
        self._cur = _Interval(t, acked, 1, int(waiting))

    def rate_Bps(self) -> float | None:  # noqa: N802 - unit suffix
        """The estimated transfer rate in bytes/s; None until an interval has ended."""
        return self._rate
