"""When and how hard to slow a guest that dirties its memory faster than the link carries it.

Why from the ratio, as QEMU does (``migration_trigger_throttle``, ``mig_throttle_guest_down``):
pre-copy converges only while the guest dirties less than the link transfers, and the margin
decides how fast. So after every dirty sync the period's *dirty rate* (distinct bytes dirtied
per second) is compared with its *transfer rate* (raw guest bytes per second the stream carries:
the estimated wire rate times the compression ratio). When the dirty rate exceeds
``throttle_trigger`` (QEMU's ``throttle-trigger-threshold``, 50 %) of the transfer rate at two
consecutive syncs, the guest is slowed, by one of two policies:

* ``auto-converge``: the vCPUs lose a fraction of their time. The step is sized from the ratio:
  the throttle at which the dirty rate would fall to the trigger, ``1 - (1 - now) * trigger /
  ratio`` (QEMU's ``cpu-throttle-tailslow`` ideal), but at least ``throttle_initial`` the first
  time and ``now + throttle_step`` after that, so a step always counts, and at most
  ``throttle_max``;
* ``dirty-limit``: the guest's write rate is capped (QEMU's ``dirty-limit``): at
  ``dirty_limit_mibps`` when the policy gives one (and there it stays), else at the trigger
  times the transfer rate, scaled down by ``trigger / ratio`` each time it triggers again.

Pure: the engine feeds it each period's figures and applies what it answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from migrator.core.policy import MigrationPolicy

MIB = 1024 * 1024
HIGH_SYNCS = 2          # consecutive syncs over the trigger before acting (QEMU's)
MIN_LIMIT_Bps = 64 * 1024


@dataclass(frozen=True)
class ThrottleChange:
    throttle: float                 # vCPU time removed, 0..throttle_max
    dirty_limit_Bps: float | None   # noqa: N815 - write-rate cap, None = none
    ratio: float                    # dirty rate over transfer rate that triggered it


class ThrottleController:
    """The state of one migration's throttling; ``observe`` after every dirty sync."""

    def __init__(self, policy: MigrationPolicy) -> None:
        self.policy = policy
        self.throttle = 0.0
        self.dirty_limit_Bps: float | None = None  # noqa: N815
        self.high = 0
        self.changes: list[ThrottleChange] = []

    @property
    def active(self) -> bool:
        return self.throttle > 0 or self.dirty_limit_Bps is not None

    def observe(self, dirty_Bps: float, transfer_Bps: float) -> ThrottleChange | None:  # noqa: N803
        """One sync period's distinct dirty rate and raw transfer rate; a change to apply now,
        or None."""
        p = self.policy
        if p.throttle == "none" or transfer_Bps <= 0:
            return None
        ratio = dirty_Bps / transfer_Bps
        if ratio <= p.throttle_trigger:
            self.high = 0
            return None
        self.high += 1
        if self.high < HIGH_SYNCS:
            return None
        self.high = 0
        if p.throttle == "auto-converge":
            change = self._slow_cpus(ratio)
        else:
            change = self._cap_writes(ratio, transfer_Bps)
        if change is not None:
            self.changes.append(change)
        return change

    def _slow_cpus(self, ratio: float) -> ThrottleChange | None:
        p = self.policy
        ideal = 1.0 - (1.0 - self.throttle) * p.throttle_trigger / ratio
        least = p.throttle_initial if self.throttle == 0 else self.throttle + p.throttle_step
        new = round(min(max(ideal, least), p.throttle_max), 4)
        if new <= self.throttle:
            return None
        self.throttle = new
        return ThrottleChange(new, None, ratio)

    def _cap_writes(self, ratio: float, transfer_Bps: float) -> ThrottleChange | None:  # noqa: N803
        p = self.policy
        if self.dirty_limit_Bps is not None and p.dirty_limit_mibps is not None:
            return None
        if self.dirty_limit_Bps is None:
            cap = p.dirty_limit_mibps * MIB if p.dirty_limit_mibps is not None \
                else p.throttle_trigger * transfer_Bps
        else:
            cap = self.dirty_limit_Bps * p.throttle_trigger / ratio
        cap = max(MIN_LIMIT_Bps, cap)
        if self.dirty_limit_Bps is not None and cap >= self.dirty_limit_Bps:
            return None
        self.dirty_limit_Bps = cap
        return ThrottleChange(0.0, cap, ratio)

    def lift(self, vm: Any) -> None:
        """Throttle and write cap off, on the guest too (the migration is over)."""
        if self.throttle > 0:
            vm.set_throttle(0.0)
            self.throttle = 0.0
        if self.dirty_limit_Bps is not None:
            vm.set_dirty_limit(None)
            self.dirty_limit_Bps = None
