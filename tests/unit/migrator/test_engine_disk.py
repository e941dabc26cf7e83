"""migrator.core.engine with a VM that has a disk (``migrator.core.disk``): the disk's sectors
share the index space after the memory pages, go first in each round, are counted apart, and a
mirrored (write-blocking) disk is sent in round 0 only."""

from __future__ import annotations

import numpy as np
import pytest

from migrator.core.disk import DiskLayout
from migrator.core.policy import MigrationPolicy
from migrator.memory.pages import PAGE_SIZE
from migrator.memory.workload import MIB, WorkloadParams
from tests.unit.migrator.test_engine import NPAGES, FakeClock, FakeSender, FakeVM, engine

MEM = NPAGES // 2            # the first half memory, the second half disk sectors


class DiskVM(FakeVM):
    """FakeVM whose upper half is a disk; with ``mirror`` its disk writes are 'mirrored':
    they mark the dirty log but must never be re-sent, and ``start_mirror`` must come before
    tracking starts."""

    def __init__(self, clock: FakeClock, params: WorkloadParams, mirror: bool) -> None:
        super().__init__(clock, params)
        self.mem_pages = MEM
        self.disk_mirrored = mirror
        self.mirror_dest: np.ndarray | None = None

    def start_mirror(self) -> None:
        assert not self.events, "start_mirror after the guest was paused"
        self.events.append("mirror")

    def tick(self, dt: float) -> None:
        before = self.memory.copy() if self.disk_mirrored else None
        super().tick(dt)
        if before is not None and self.mirror_dest is not None:
            changed = np.flatnonzero((before != self.memory).any(axis=1))
            disk = changed[changed >= MEM]
            self.mirror_dest[disk] = self.memory[disk]     # written at both before it completes


def run(mirror: bool, rate_mibps: float = 2.0):
    clock = FakeClock()
    vm = DiskVM(clock, WorkloadParams(dirty_rate_mibps=rate_mibps, working_set_frac=0.3),
                mirror)
    sender = FakeSender(clock, vm, 4 * MIB, 0.05)
    vm.mirror_dest = sender.dest
    res = engine(clock, vm, sender, MigrationPolicy(codec="none")).run()
    return vm, sender, res


def test_layout_refuses_a_mirror_without_a_disk():
    class Plain:
        npages, mem_pages, disk_mirrored = 10, 10, True

        def start_mirror(self) -> None: ...
    with pytest.raises(ValueError, match="mirrored"):
        DiskLayout.of(Plain())


def test_layout_parts_put_the_disk_first_and_skip_empty_parts():
    lay = DiskLayout(mem_pages=4, npages=8)
    parts = list(lay.parts(np.array([1, 5, 6]), np.array([0, 7])))
    assert [(list(i), list(z), d) for i, z, d in parts] == [([5, 6], [7], True),
                                                            ([1], [0], False)]
    assert [d for _, _, d in lay.parts(np.array([1]), np.array([], np.int64))] == [False]


def test_background_disk_sent_first_counted_apart_and_resent_when_written():
    vm, sender, res = run(mirror=False)
    assert res.outcome == "completed" and np.array_equal(sender.dest, vm.memory)
    first = sender.sent_by_round[0]
    assert first[0].min() >= MEM and first[-1].max() < MEM, "round 0: disk, then memory"
    disk_rows = sum(r.disk_pages for r in res.rounds)
    assert res.disk_sectors_sent == disk_rows > 0
    assert res.disk_sectors_resent == sum(r.disk_pages for r in res.rounds if r.round > 0) > 0
    assert 0 < res.disk_bytes_on_wire < res.bytes_on_wire
    assert res.disk_bytes_raw == res.disk_sectors_sent * PAGE_SIZE
    assert res.vm_memory_bytes == MEM * PAGE_SIZE
    assert res.disk_bulk_s is not None and 0 < res.disk_bulk_s < res.rounds[0].duration_s


def test_mirrored_disk_goes_in_round_zero_only_and_arrives_whole():
    vm, sender, res = run(mirror=True)
    assert vm.events[0] == "mirror"
    assert res.outcome == "completed" and np.array_equal(sender.dest, vm.memory), \
        "round 0 plus the mirror must leave the destination's disk equal to the source's"
    later = [np.concatenate(parts) for rnd, parts in sender.sent_by_round.items() if rnd > 0]
    assert later and all((p < MEM).all() for p in later), "a mirrored sector was re-sent"
    assert res.disk_sectors_resent == 0 and res.disk_sectors_sent > 0
