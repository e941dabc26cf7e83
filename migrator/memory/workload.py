"""Guest dirtying workloads: named presets and the pure planner of which pages get written.

The dirty rate is the quantity that decides whether pre-copy converges (it must stay well below
the link goodput), and its *skew* decides how much of it is re-dirtying the same hot pages (which
the working-set cap of the analytic model and XBZRLE both exploit).  ``DirtyPlan`` is pure and
seeded: the engine tests and the real guest agent replay exactly the same write sequence.

``dirty_rate_mibps`` is the rate of page *writes* (4 KiB each).  With a skewed distribution many
writes hit pages already dirty in the current round, so the rate of *distinct* dirty pages is
lower; that is realistic and is what makes hot working sets cheap to re-send.

What one write looks like is the workload's too (``migrator.memory.writes``): ``write_bytes``
(None: 64-512 bytes, the default small stores; 1-4096: exactly that many, 4096 a whole page) and
``content`` (``text``, compressible, or ``random``, which no codec shrinks).  They change what the
codecs gain on a re-sent page, not how many pages are written.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from ground.config import ConfigError, Section
from migrator.memory.pages import PAGE_SIZE
from migrator.memory.writes import CONTENTS

MIB = 1024 * 1024
SKEWS = ("uniform", "zipf")


@dataclass(frozen=True)
class WorkloadParams:
    """How fast, where and how a guest writes its memory; validated (and its numbers normalised:
    floats, ``write_bytes`` an int) on construction."""

    dirty_rate_mibps: float
    working_set_frac: float = 1.0
    skew: str = "uniform"
    zipf_s: float = 1.0
    burst_period_s: float = 0.0
    burst_duty: float = 1.0
    write_bytes: int | None = None
    content: str = "text"

    def __post_init__(self) -> None:
        for name, value in _check(dataclasses.asdict(self), "workload").items():
            object.__setattr__(self, name, value)


def _check(data: Any, path: str) -> dict:
    """Every field validated with Section, so errors name ``workload.<field>``."""
    s = Section(data, path, [f.name for f in dataclasses.fields(WorkloadParams)])
    out = {
        "dirty_rate_mibps": s.number("dirty_rate_mibps", minimum=0.0),
        "working_set_frac": s.number("working_set_frac", 1.0, above=0.0, maximum=1.0),
        "skew": s.string("skew", "uniform", SKEWS),
        "zipf_s": s.number("zipf_s", 1.0, above=0.0, maximum=10.0),
        "burst_period_s": s.number("burst_period_s", 0.0, minimum=0.0),
        "burst_duty": s.number("burst_duty", 1.0, above=0.0, maximum=1.0),
        "write_bytes": s.number("write_bytes", minimum=1, maximum=PAGE_SIZE, integer=True,
                                optional=True),
        "content": s.string("content", "text", CONTENTS),
    }
    return out


PRESETS: dict[str, WorkloadParams] = {
    # An idle guest: timers, log lines, the odd daemon wake-up.  0.1 MiB/s over a small 5 % set
    # converges on any link; it measures the fixed costs (round trips, verify) of a migration.
    "idle": WorkloadParams(dirty_rate_mibps=0.1, working_set_frac=0.05, skew="uniform"),
    # A web/application server: 20 MiB/s of writes (request buffers, session heap) concentrated
    # by Zipf(s=1) on a 25 % working set.  Below a 250 Mbit/s WAN (~30 MiB/s) but not by much:
    # converges in a handful of rounds, the downtime is set by the hot set.
    "web": WorkloadParams(dirty_rate_mibps=20.0, working_set_frac=0.25, skew="zipf", zipf_s=1.0),
    # An OLTP database: 60 MiB/s mean on a 10 % hot set (buffer pool pages, Zipf s=1.2), bursty
    # with a 10 s period at 50 % duty (checkpoints and commit storms), i.e. 120 MiB/s in a burst.
    # Converges only if the stop decision lands in a quiet phase or the hot set fits the
    # downtime; the classic case for auto-converge on a WAN.
    "database": WorkloadParams(dirty_rate_mibps=60.0, working_set_frac=0.10, skew="zipf",
                               zipf_s=1.2, burst_period_s=10.0, burst_duty=0.5),
    # Memory-intensive HPC/analytics: 300 MiB/s spread uniformly over 80 % of memory, far above
    # WAN goodput.  Never converges without throttling; exercises auto-converge, the budget and
    # the force/abort choice.
    "memory-intensive": WorkloadParams(dirty_rate_mibps=300.0, working_set_frac=0.80,
                                       skew="uniform"),
    # Encrypting or compressing buffers (TLS termination, an encrypted file system's page cache,
    # a backup stream): whole 4 KiB pages of random bytes, uniform over a 50 % working set, at
    # 40 MiB/s.  The rate is just above a 250 Mbit/s WAN's ~30 MiB/s, where a text guest at the
    # same rate would still converge once zstd/lz4 shrink its pages and XBZRLE its small writes;
    # here neither helps (nothing compresses, every byte of a re-sent page changed), so only
    # slowing the guest (auto-converge, a dirty-rate limit) or a bigger link makes it converge.
    "crypto": WorkloadParams(dirty_rate_mibps=40.0, working_set_frac=0.50, skew="uniform",
                             write_bytes=PAGE_SIZE, content="random"),
}


def preset(name: str) -> WorkloadParams:
    """The named preset; ConfigError (path ``workload``) for an unknown name."""
    if name not in PRESETS:
        raise ConfigError("workload", name, f"one of {', '.join(PRESETS)}")
    return PRESETS[name]


def parse_workload(data: Any, path: str = "workload") -> WorkloadParams:
    """A preset name, or a mapping of fields optionally starting from ``preset: <name>``."""
    if isinstance(data, str):
        if data not in PRESETS:
            raise ConfigError(path, data, f"one of {', '.join(PRESETS)} or a mapping")
        return PRESETS[data]
    fields = [f.name for f in dataclasses.fields(WorkloadParams)]
    s = Section(data, path, ["preset", *fields])
    base: dict = {}
    if s.has("preset"):
        base = dataclasses.asdict(PRESETS[s.string("preset", choices=PRESETS)])
    merged = {**base, **{k: v for k, v in s.data.items() if k != "preset"}}
    return WorkloadParams(**_check(merged, path))


class DirtyPlan:
    """Which pages the guest writes in the next ``dt`` seconds; pure, seeded, stateful in time.

    * count: ``rate * dt / PAGE_SIZE`` writes, with the fractional remainder carried over so the
      long-run mean is exact; ``rate`` is multiplied by ``1 - throttle`` (auto-converge slows
      the vCPUs, hence the writes, proportionally);
    * bursty (``burst_period_s > 0``): the rate is a square wave, ``rate / duty`` during the first
      ``duty`` of each period and 0 otherwise, so the mean is unchanged;
    * dirty-rate limit (``dirty_limit_Bps``, bytes/s, None = none; QEMU's dirty-limit): a cap on
      the *instantaneous* write rate, applied after the throttle and to the burst's peak, since
      a real limiter holds the vCPU back whenever it writes too fast, not on average.  So
      ``peak = min(rate * (1 - throttle) / duty, limit)`` while writing (``duty`` = 1 when not
      bursty) and the long-run mean is ``duty * peak``: a bursty guest capped at its peak
      writes less than the cap on average;
    * where: a fixed random subset of ``working_set_frac * npages`` pages; uniform over it, or
      Zipf (probability of rank k proportional to ``k ** -s``) over a fixed random permutation
      of it so hot pages are scattered through memory as in a real heap.

    Throttle and limit may change between calls; the carry keeps the count exact across them.
    """

    def __init__(self, params: WorkloadParams, npages: int, seed: int = 0,
                 throttle: float = 0.0, dirty_limit_Bps: float | None = None) -> None:  # noqa: N803
        if npages < 1:
            raise ConfigError("workload.npages", npages, "at least 1 page")
        self.params = params
        self.npages = npages
        self.throttle = throttle
        self.dirty_limit_Bps = dirty_limit_Bps
        self.t = 0.0
        self._carry = 0.0
        self._rng = np.random.default_rng(seed)
        size = max(1, int(round(params.working_set_frac * npages)))
        self.working_set = self._rng.permutation(npages)[:size]
        self._cdf: np.ndarray | None = None
        if params.skew == "zipf":
            weights = np.arange(1, size + 1, dtype=np.float64) ** -params.zipf_s
            self._cdf = np.cumsum(weights) / weights.sum()

    @property
    def throttle(self) -> float:
        return self._throttle

    @throttle.setter
    def throttle(self, frac: float) -> None:
        if not 0.0 <= frac <= 1.0:
            raise ConfigError("workload.throttle", frac, "a fraction between 0 and 1")
        self._throttle = float(frac)

    @property
    def dirty_limit_Bps(self) -> float | None:  # noqa: N802 - unit suffix
        """The cap on the write rate in bytes/s, or None when there is none."""
        return self._limit

    @dirty_limit_Bps.setter
    def dirty_limit_Bps(self, value: float | None) -> None:  # noqa: N802 - unit suffix
        """None or 0 lifts the cap; anything else must be a finite positive number."""
        if value is None or (not isinstance(value, bool) and value == 0):
            self._limit = None
            return
        if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                or not math.isfinite(value) or value < 0:
            raise ConfigError("workload.dirty_limit_Bps", value,
                              "bytes per second, a finite number above 0 (None or 0: no limit)")
        self._limit = float(value)

    def _bursty(self) -> bool:
        return self.params.burst_period_s > 0

    def peak_rate_Bps(self) -> float:  # noqa: N802 - unit suffix
        """Write rate in bytes/s while writing (a burst's on-phase), after throttle and limit."""
        rate = self.params.dirty_rate_mibps * MIB * (1.0 - self.throttle)
        if self._bursty():
            rate /= self.params.burst_duty
        return rate if self._limit is None else min(rate, self._limit)

    def mean_rate_Bps(self) -> float:  # noqa: N802 - unit suffix
        """Long-run write rate in bytes/s after throttle and limit."""
        return self.peak_rate_Bps() * (self.params.burst_duty if self._bursty() else 1.0)

    def _on_time(self, t0: float, t1: float) -> float:
        """Seconds of [t0, t1) spent in the 'on' phase of the burst square wave."""
        period = self.params.burst_period_s
        if period <= 0:
            return t1 - t0

        def cumulative(t: float) -> float:
            full, rest = divmod(t, period)
            return full * period * self.params.burst_duty + min(rest,
                                                                period * self.params.burst_duty)
        return cumulative(t1) - cumulative(t0)

    def pages_for(self, dt_s: float) -> np.ndarray:
        """Page indices written in the next ``dt_s`` seconds (repeats possible), int64."""
        if dt_s < 0:
            raise ValueError(f"dt_s must be >= 0, got {dt_s}")
        on = self._on_time(self.t, self.t + dt_s)
        self.t += dt_s
        expected = self.peak_rate_Bps() * on / PAGE_SIZE + self._carry
        n = int(expected)
        self._carry = expected - n
        if n == 0:
            return np.empty(0, dtype=np.int64)
        if self._cdf is None:
            ranks = self._rng.integers(0, len(self.working_set), size=n)
        else:
            ranks = np.searchsorted(self._cdf, self._rng.random(n), side="right")
            ranks = np.minimum(ranks, len(self.working_set) - 1)
        return self.working_set[ranks].astype(np.int64)
