"""The classic geometric pre-copy model (Clark et al., NSDI'05; Akoush et al., MASCOTS'10).

Why an analytic model next to the real engine: it tells what a migration *should* cost on a given
link before running it, so a measured run far off the prediction points at a bug or an unmodelled
effect (TCP slow start on a 150 ms RTT, CPU-bound compression, ...), and it gives the lower bound
against which the engine's overhead is reported.

Model (all byte counts raw guest bytes unless said otherwise; ``ratio`` turns raw into wire
bytes, ``bandwidth`` is wire goodput; the sending of rounds is pipelined, so a round costs its
transfer time and no round trip):

* round 0 sends all non-zero pages: ``V0 = memory * nonzero``, taking ``t0 = V0 / (ratio * bw)``;
* while round i-1 was sent, the guest dirtied ``Vi = min(dirty_rate * t_{i-1}, working_set)``
  (a skewed workload re-dirties the same working set, hence the cap);
* after each round, if sending the dirty remainder would fit the target,
  ``Vi / (ratio * bw) + rtt <= downtime_target``, stop and copy: the guest is paused and the
  remainder sent; otherwise round i+1 sends it.  After ``max_rounds`` live rounds the model
  stops and copies anyway and reports ``converges = False``;
* downtime = final remainder / (ratio * bw) + rtt + verify_s (the ACK's round trip and the
  destination's integrity check).

``rounds`` counts the live rounds, round 0 included; the stop-and-copy is not a round.

A VM with a disk (``migrator.core.disk``): round 0 also sends the disk's allocated bytes
(``disk_bytes``), and each round the disk's writes meanwhile, ``min(disk_dirty_rate * t,
disk_working_set)``, with the memory's; with ``disk_mirrored`` (write-blocking) the disk is sent
once, and every guest write (``disk_write_Bps``, uncompressed) takes its share of the bandwidth
from then on. ``lower_bound_time_s``: everything sent once at the full rate, plus one RTT.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ground.config import ConfigError, Section


@dataclass(frozen=True)
class ModelInputs:
    """One migration scenario; validated on construction (ConfigError names ``model.<key>``)."""

    memory_bytes: float
    bandwidth_Bps: float  # noqa: N815 - unit suffix
    nonzero_frac: float = 1.0
    dirty_rate_Bps: float = 0.0  # noqa: N815
    working_set_bytes: float | None = None
    rtt_s: float = 0.0
    compression_ratio: float = 1.0
    downtime_target_s: float = 0.3
    max_rounds: int = 30
    verify_s: float = 0.0
    disk_bytes: float = 0.0
    disk_dirty_rate_Bps: float = 0.0  # noqa: N815
    disk_working_set_bytes: float | None = None
    disk_mirrored: bool = False
    disk_write_Bps: float = 0.0  # noqa: N815

    def __post_init__(self) -> None:
        s = Section(dataclasses.asdict(self), "model",
                    [f.name for f in dataclasses.fields(self)])
        s.number("memory_bytes", above=0.0)
        s.number("bandwidth_Bps", above=0.0)
        s.number("nonzero_frac", minimum=0.0, maximum=1.0)
        s.number("dirty_rate_Bps", minimum=0.0)
        s.number("working_set_bytes", minimum=0.0, optional=True)
        s.number("rtt_s", minimum=0.0)
        s.number("compression_ratio", above=0.0)
        s.number("downtime_target_s", above=0.0)
        s.number("max_rounds", minimum=1, integer=True)
        s.number("verify_s", minimum=0.0)
        s.number("disk_bytes", minimum=0.0)
        s.number("disk_dirty_rate_Bps", minimum=0.0)
        s.number("disk_working_set_bytes", minimum=0.0, optional=True)
        s.number("disk_write_Bps", minimum=0.0)
        if self.disk_mirrored and self.disk_write_Bps >= self.bandwidth_Bps:
            raise ConfigError("model.disk_write_Bps", self.disk_write_Bps,
                              f"below the bandwidth ({self.bandwidth_Bps:g} B/s): a mirrored "
                              "disk's writes must leave room for the migration")


@dataclass(frozen=True)
class ModelResult:
    rounds: int
    total_time_s: float
    bytes_on_wire: float
    downtime_s: float
    converges: bool
    lower_bound_time_s: float
    round_bytes: tuple[float, ...]        # raw bytes of each live round, then the final copy


def predict(inp: ModelInputs) -> ModelResult:
    """Run the model of the module docstring."""
    bandwidth = inp.bandwidth_Bps - (inp.disk_write_Bps if inp.disk_mirrored else 0.0)
    rate = inp.compression_ratio * bandwidth                   # raw bytes per second
    cap = inp.memory_bytes if inp.working_set_bytes is None else inp.working_set_bytes
    disk_cap = inp.disk_bytes if inp.disk_working_set_bytes is None \
        else inp.disk_working_set_bytes
    disk_rate = 0.0 if inp.disk_mirrored else inp.disk_dirty_rate_Bps
    to_send = first = inp.memory_bytes * inp.nonzero_frac + inp.disk_bytes
    sent: list[float] = []
    elapsed = 0.0
    converges = False
    while True:
        t = to_send / rate
        sent.append(to_send)
        elapsed += t
        to_send = min(inp.dirty_rate_Bps * t, cap) + min(disk_rate * t, disk_cap)
        if to_send / rate + inp.rtt_s <= inp.downtime_target_s:
            converges = True
            break
        if len(sent) >= inp.max_rounds:
            break
    downtime = to_send / rate + inp.rtt_s + inp.verify_s
    sent.append(to_send)
    total_raw = sum(sent)
    return ModelResult(
        rounds=len(sent) - 1,
        total_time_s=elapsed + downtime,
        bytes_on_wire=total_raw / inp.compression_ratio
        + (inp.disk_write_Bps * elapsed if inp.disk_mirrored else 0.0),
        downtime_s=downtime,
        converges=converges,
        lower_bound_time_s=first / rate + inp.rtt_s,
        round_bytes=tuple(sent),
    )
