"""migrator.disk.plan: the guest's disk I/O counts, places and throttle."""

from __future__ import annotations

import numpy as np
import pytest

from ground.config import ConfigError
from migrator.disk.params import parse_disk
from migrator.disk.plan import DiskPlan


def params(**work):
    return parse_disk({"size": "64MiB", "block_bytes": 65536, "workload": work}, "vm.disk")


def test_rates_are_exact_in_the_long_run_with_fractional_ticks():
    p = params(write_rate_mibps=3, read_rate_mibps=0.5)
    plan = DiskPlan(p, seed=1)
    writes = reads = 0
    for _ in range(10_000):                      # 10 s in 1 ms ticks: 0.048 writes per tick
        w, r = plan.next(0.001)
        writes += len(w)
        reads += len(r)
    assert writes in (479, 480), writes          # 3 MiB/s / 64 KiB = 48 blocks/s
    assert reads in (79, 80), reads
    assert plan.write_blocks_per_s() == pytest.approx(48.0)
    assert plan.write_rate_mibps() == pytest.approx(3.0)


def test_working_set_shared_by_reads_and_writes_and_fixed_by_the_seed():
    p = params(write_rate_mibps=64, read_rate_mibps=64, working_set_frac=0.25, skew="uniform")
    plan = DiskPlan(p, seed=7)
    assert len(plan.working_set) == 256
    w, r = plan.next(1.0)
    ws = set(plan.working_set.tolist())
    assert set(w.tolist()) <= ws and set(r.tolist()) <= ws
    assert not np.array_equal(w, r), "reads replay the writes"
    assert np.array_equal(DiskPlan(p, seed=7).working_set, plan.working_set)
    assert not np.array_equal(DiskPlan(p, seed=8).working_set, plan.working_set)


def test_zipf_concentrates_on_the_hottest_blocks():
    p = params(write_rate_mibps=640, read_rate_mibps=0, working_set_frac=1.0, skew="zipf")
    plan = DiskPlan(p, seed=3)
    w, _ = plan.next(1.0)                        # 10240 writes over 1024 blocks
    hottest = np.bincount(w, minlength=1024).max()
    assert hottest > 10 * len(w) / 1024, f"hottest block {hottest} of {len(w)} writes"


def test_throttle_slows_both_and_is_checked():
    plan = DiskPlan(params(write_rate_mibps=8, read_rate_mibps=8), seed=0, throttle=0.75)
    w, r = plan.next(1.0)
    assert (len(w), len(r)) == (32, 32)          # a quarter of 128 blocks/s
    plan.throttle = 1.0
    assert [len(x) for x in plan.next(1.0)] == [0, 0]
    with pytest.raises(ConfigError):
        plan.throttle = 1.5
