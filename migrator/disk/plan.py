"""Which disk blocks the guest writes and reads in the next ``dt``: pure and seeded.

Two ``migrator.memory.workload.DirtyPlan`` composed, one for writes and one for reads, each
counting *blocks* (its rate given in pages of 4 KiB per block of ``block_bytes``, so one planned
"page" is one block I/O):

* count: ``rate * dt / block_bytes`` I/Os with the fractional remainder carried over (the
  long-run mean is exact), multiplied by ``1 - throttle``;
* where: one fixed random subset of ``working_set_frac`` of the blocks, shared by reads and
  writes (the data a guest reads is the data it writes: a database's hot tables), uniform or
  Zipf over a fixed permutation of it; the two plans draw from different seeds so reads do not
  shadow writes.
"""

from __future__ import annotations

import numpy as np

from migrator.disk.params import DiskParams
from migrator.memory.pages import PAGE_SIZE
from migrator.memory.workload import MIB, DirtyPlan, WorkloadParams

_READ_SEED_OFFSET = 0x9E37                  # the reads' draws are not the writes'


def _plan(params: DiskParams, rate_mibps: float, seed: int) -> DirtyPlan:
    # DirtyPlan counts 4 KiB pages: a rate scaled by PAGE_SIZE / block_bytes counts blocks.
    work = WorkloadParams(dirty_rate_mibps=rate_mibps * PAGE_SIZE / params.block_bytes,
                          working_set_frac=params.working_set_frac, skew=params.skew,
                          zipf_s=params.zipf_s)
    return DirtyPlan(work, params.blocks, seed=seed)


class DiskPlan:
    """The guest's disk I/O, tick by tick: ``next(dt) -> (blocks written, blocks read)``."""

    def __init__(self, params: DiskParams, seed: int = 0, throttle: float = 0.0) -> None:
        self.params = params
        self._writes = _plan(params, params.write_rate_mibps, seed)
        self._reads = _plan(params, params.read_rate_mibps, seed + _READ_SEED_OFFSET)
        self._reads.working_set = self._writes.working_set
        self.throttle = throttle

    @property
    def working_set(self) -> np.ndarray:
        """The blocks the guest touches (int64), hottest first under Zipf."""
        return self._writes.working_set

    @property
    def throttle(self) -> float:
        return self._writes.throttle

    @throttle.setter
    def throttle(self, frac: float) -> None:
        """0 to 1; ConfigError (``workload.throttle``) otherwise."""
        self._writes.throttle = frac
        self._reads.throttle = frac

    def write_blocks_per_s(self) -> float:
        """Block writes per second after the throttle."""
        return self._writes.mean_rate_Bps() / PAGE_SIZE

    def read_blocks_per_s(self) -> float:
        """Block reads per second after the throttle."""
        return self._reads.mean_rate_Bps() / PAGE_SIZE

    def write_rate_mibps(self) -> float:
        return self.write_blocks_per_s() * self.params.block_bytes / MIB

    def read_rate_mibps(self) -> float:
        return self.read_blocks_per_s() * self.params.block_bytes / MIB

    def next(self, dt_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Block indices (int64, repeats possible) written and read in the next ``dt_s``."""
        return self._writes.pages_for(dt_s), self._reads.pages_for(dt_s)
