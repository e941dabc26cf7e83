"""Per-round codec choice from the measured link and the measured CPU.

Why adaptive: on a 150 ms, 250 Mbit/s WAN the link is the bottleneck and strong zstd multiplies
the effective bandwidth; on a 10 Gbit/s LAN the same zstd would make the CPU the bottleneck and
slow the migration down.  The right codec is the one that delivers the most *guest* bytes per
second::

    delivered(c) = min(encode_speed(c) * cores, link_goodput * ratio(c))

``encode_speed`` is raw input bytes/s on one core (measured at start by
``codecs.speed.measure_codec_speeds``); ``ratio`` is raw/compressed, seeded by that measurement
and then tracked with an EWMA of what was actually sent, because the guest's pages are not the
benchmark sample.  Ties (within ``tie_tolerance``) go to the higher ratio: fewer bytes on a
shared WAN for the same speed.

XBZRLE is deliberately not chosen adaptively: its ratio depends on the cache history (round 0
gains nothing, later rounds a lot), which a one-shot benchmark cannot capture; pick it by policy.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass
class CodecEstimate:
    encode_Bps: float  # noqa: N815 - unit suffix
    ratio: float


class CodecChooser:
    """Pure decision object: no clock, no I/O; the engine feeds it measurements."""

    def __init__(self, measured: Mapping[str, tuple[float, float]], cores: int = 1,
                 alpha: float = 0.3, tie_tolerance: float = 0.02) -> None:
        if not measured:
            raise ValueError("CodecChooser needs at least one measured codec")
        if cores < 1:
            raise ValueError(f"cores must be >= 1, got {cores}")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self.cores = cores
        self.alpha = alpha
        self.tie_tolerance = tie_tolerance
        self.estimates = {name: CodecEstimate(float(speed), float(ratio))
                          for name, (speed, ratio) in measured.items()}
        for name, est in self.estimates.items():
            if est.encode_Bps <= 0 or est.ratio <= 0:
                raise ValueError(f"{name}: speed and ratio must be positive, got {est}")

    def delivered_Bps(self, name: str, goodput_Bps: float) -> float:  # noqa: N802,N803
        """Raw guest bytes per second codec ``name`` would deliver over this link."""
        est = self.estimates[name]
        return min(est.encode_Bps * self.cores, goodput_Bps * est.ratio)

    def choose(self, goodput_Bps: float) -> str:  # noqa: N803
        """The codec delivering the most guest bytes/s; ties go to the higher ratio."""
        scores = {name: self.delivered_Bps(name, goodput_Bps) for name in self.estimates}
        best = max(scores.values())
        near = [n for n, s in scores.items() if s >= best * (1.0 - self.tie_tolerance)]
        choice = max(near, key=lambda n: (self.estimates[n].ratio, n))
        log.debug("codec %s at goodput %.0f B/s: %s", choice, goodput_Bps,
                  {n: round(s) for n, s in scores.items()})
        return choice

    def observe(self, name: str, bytes_raw: int, bytes_on_wire: int) -> None:
        """Fold one actual send into the codec's ratio (EWMA)."""
        if name not in self.estimates or bytes_raw <= 0 or bytes_on_wire <= 0:
            return
        est = self.estimates[name]
        est.ratio = (1.0 - self.alpha) * est.ratio + self.alpha * (bytes_raw / bytes_on_wire)

    def observe_speed(self, name: str, encode_Bps: float) -> None:  # noqa: N803
        """Fold a measured one-core encode speed into the estimate (EWMA)."""
        if name in self.estimates and encode_Bps > 0:
            est = self.estimates[name]
            est.encode_Bps = (1.0 - self.alpha) * est.encode_Bps + self.alpha * encode_Bps
