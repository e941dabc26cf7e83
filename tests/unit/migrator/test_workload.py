"""migrator.memory.workload: presets, validation, the dirty-page planner's rate, skew and bursts
(its dirty-rate limit: test_dirty_limit)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ground.config import ConfigError
from migrator.memory.pages import PAGE_SIZE
from migrator.memory.workload import MIB, PRESETS, DirtyPlan, WorkloadParams, parse_workload, preset


def test_presets_exist_with_documented_numbers():
    assert set(PRESETS) == {"idle", "web", "database", "memory-intensive", "crypto"}
    assert preset("idle").dirty_rate_mibps == 0.1
    assert preset("web").skew == "zipf" and preset("web").working_set_frac == 0.25
    db = preset("database")
    assert db.working_set_frac == 0.10 and db.burst_period_s > 0 and db.burst_duty < 1
    mem = preset("memory-intensive")
    assert mem.dirty_rate_mibps == 300.0 and mem.skew == "uniform"
    crypto = preset("crypto")
    assert (crypto.dirty_rate_mibps, crypto.working_set_frac, crypto.skew) == (40.0, 0.5, "uniform")
    assert crypto.write_bytes == PAGE_SIZE and crypto.content == "random"
    for name in ("idle", "web", "database", "memory-intensive"):
        assert (preset(name).write_bytes, preset(name).content) == (None, "text"), name


def test_unknown_preset_is_config_error():
    with pytest.raises(ConfigError) as info:
        preset("bitcoin")
    assert info.value.path == "workload" and "database" in info.value.expected


@pytest.mark.parametrize(("field", "value"), [
    ("dirty_rate_mibps", -1.0), ("working_set_frac", 0.0), ("working_set_frac", 1.5),
    ("skew", "pareto"), ("zipf_s", 0.0), ("burst_period_s", -1.0), ("burst_duty", 0.0),
    ("write_bytes", 0), ("write_bytes", PAGE_SIZE + 1), ("write_bytes", 100.5),
    ("write_bytes", "4KiB"), ("write_bytes", True), ("content", "binary"), ("content", 1),
])
def test_bad_params_name_the_field(field, value):
    kwargs = {"dirty_rate_mibps": 1.0, field: value}
    with pytest.raises(ConfigError) as info:
        WorkloadParams(**kwargs)
    assert info.value.path == f"workload.{field}"


def test_parse_workload_preset_with_override():
    w = parse_workload({"preset": "web", "dirty_rate_mibps": 5})
    assert w.dirty_rate_mibps == 5.0 and w.skew == "zipf"
    assert parse_workload("idle") == preset("idle")
    with pytest.raises(ConfigError) as info:
        parse_workload({"preset": "web", "rate": 5}, path="runs[0].workload")
    assert info.value.path == "runs[0].workload.rate"


def test_write_shape_keys_parse_and_round_trip():
    w = parse_workload({"preset": "crypto", "dirty_rate_mibps": 10}, path="vm.workload")
    assert (w.dirty_rate_mibps, w.write_bytes, w.content) == (10.0, PAGE_SIZE, "random")
    text = parse_workload({"preset": "web", "write_bytes": 1024.0})
    assert text.write_bytes == 1024 and isinstance(text.write_bytes, int)
    assert text.content == "text"
    assert WorkloadParams(dirty_rate_mibps=1, write_bytes=2048.0).write_bytes == 2048
    for params in (w, text, preset("web")):
        assert parse_workload(dataclasses.asdict(params)) == params
    with pytest.raises(ConfigError) as info:
        parse_workload({"preset": "web", "write_bytes": 8192}, path="vm.workload")
    assert info.value.path == "vm.workload.write_bytes" and "at most 4096" in info.value.expected
    with pytest.raises(ConfigError) as info:
        parse_workload({"content": "encrypted", "dirty_rate_mibps": 1}, path="vm.workload")
    assert info.value.path == "vm.workload.content" and "random" in info.value.expected


def test_steady_rate_count_exact_over_time():
    params = WorkloadParams(dirty_rate_mibps=1.0)
    plan = DirtyPlan(params, npages=10_000, seed=1)
    # 1 MiB/s = 256 pages/s; over 100 steps of 0.013 s the carry keeps the total exact (+-1).
    total = sum(len(plan.pages_for(0.013)) for _ in range(100))
    assert abs(total - 256 * 1.3) <= 1
    assert len(plan.pages_for(1.0)) in (255, 256, 257)


def test_throttle_scales_rate():
    plan = DirtyPlan(WorkloadParams(dirty_rate_mibps=4.0), npages=10_000, seed=1,
                     throttle=0.75)
    assert plan.mean_rate_Bps() == pytest.approx(1.0 * MIB)
    assert abs(len(plan.pages_for(2.0)) - 512) <= 1
    with pytest.raises(ConfigError):
        plan.throttle = 1.5


def test_pages_within_working_set():
    plan = DirtyPlan(WorkloadParams(dirty_rate_mibps=40.0, working_set_frac=0.1),
                     npages=5000, seed=2)
    pages = plan.pages_for(1.0)
    assert len(plan.working_set) == 500
    assert np.isin(pages, plan.working_set).all()
    assert pages.min() >= 0 and pages.max() < 5000


def test_zipf_concentrates_on_hot_pages():
    n = 20_000
    uni = DirtyPlan(WorkloadParams(dirty_rate_mibps=n * PAGE_SIZE / MIB), 10_000, seed=3)
    zipf = DirtyPlan(WorkloadParams(dirty_rate_mibps=n * PAGE_SIZE / MIB, skew="zipf",
                                    zipf_s=1.2), 10_000, seed=3)
    # 20000 uniform writes over 10000 pages touch ~1-e^-2 = 86 % distinct pages; Zipf(1.2)
    # concentrates writes so far fewer distinct pages are touched (bound: half of uniform).
    n_uni = len(np.unique(uni.pages_for(1.0)))
    n_zipf = len(np.unique(zipf.pages_for(1.0)))
    assert abs(n_uni / 10_000 - 0.865) < 0.02
    assert n_zipf < 0.5 * n_uni


def test_bursty_square_wave_same_mean():
    params = WorkloadParams(dirty_rate_mibps=1.0, burst_period_s=10.0, burst_duty=0.5)
    plan = DirtyPlan(params, npages=10_000, seed=4)
    on = len(plan.pages_for(5.0))    # first half of the period: twice the mean rate
    off = len(plan.pages_for(5.0))   # second half: nothing
    assert abs(on - 2 * 256 * 5) <= 1 and off == 0
    total = on + off + sum(len(plan.pages_for(1.0)) for _ in range(90))
    assert abs(total - 256 * 100) <= 1


def test_plan_deterministic_in_seed():
    p = WorkloadParams(dirty_rate_mibps=2.0, skew="zipf")
    a = DirtyPlan(p, 1000, seed=9).pages_for(1.0)
    b = DirtyPlan(p, 1000, seed=9).pages_for(1.0)
    assert np.array_equal(a, b)
