"""migrator.memory.workload.DirtyPlan's dirty-rate limit: ``min(rate * (1 - throttle), cap)``
while writing, a burst's peak capped too, the count exact as the cap changes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ground.config import ConfigError
from migrator.memory.pages import PAGE_SIZE
from migrator.memory.workload import MIB, DirtyPlan, WorkloadParams

PAGES_PER_MIB = MIB // PAGE_SIZE          # 256


def plan(rate_mibps: float = 8.0, **kw) -> DirtyPlan:
    params = {k: kw.pop(k) for k in ("burst_period_s", "burst_duty") if k in kw}
    return DirtyPlan(WorkloadParams(dirty_rate_mibps=rate_mibps, **params), npages=10_000,
                     seed=1, **kw)


def writes(p: DirtyPlan, seconds: float, step: float = 0.01) -> int:
    return sum(len(p.pages_for(step)) for _ in range(round(seconds / step)))


def test_no_limit_by_default_and_none_or_zero_lift_it():
    p = plan()
    assert p.dirty_limit_Bps is None and p.mean_rate_Bps() == 8 * MIB
    p.dirty_limit_Bps = 2 * MIB
    assert p.dirty_limit_Bps == 2 * MIB
    p.dirty_limit_Bps = 0
    assert p.dirty_limit_Bps is None and p.mean_rate_Bps() == 8 * MIB
    p.dirty_limit_Bps = 2 * MIB
    p.dirty_limit_Bps = None
    assert p.dirty_limit_Bps is None


def test_cap_below_the_rate_sets_the_count():
    p = plan(8.0, dirty_limit_Bps=2 * MIB)
    assert p.mean_rate_Bps() == p.peak_rate_Bps() == 2 * MIB
    assert abs(writes(p, 3.0) - 3 * 2 * PAGES_PER_MIB) <= 1


def test_cap_above_the_rate_changes_nothing():
    capped = plan(8.0, dirty_limit_Bps=100 * MIB)
    free = plan(8.0)
    a, b = capped.pages_for(1.0), free.pages_for(1.0)
    assert np.array_equal(a, b), "a cap above the rate must not change the write sequence"


@pytest.mark.parametrize(("throttle", "cap_mibps", "want_mibps"), [
    (0.5, 2.0, 2.0),     # throttled to 4, capped to 2: the cap wins
    (0.75, 4.0, 2.0),    # throttled to 2, cap 4 above it: the throttle wins
    (0.5, 4.0, 4.0),     # both at 4
])
def test_throttle_and_cap_both_apply_the_lower_wins(throttle, cap_mibps, want_mibps):
    p = plan(8.0, throttle=throttle, dirty_limit_Bps=cap_mibps * MIB)
    assert p.mean_rate_Bps() == pytest.approx(want_mibps * MIB)
    assert abs(writes(p, 2.0) - 2 * want_mibps * PAGES_PER_MIB) <= 1


def test_bursty_peak_is_capped_and_the_mean_follows():
    # 2 MiB/s mean at 25 % duty: 8 MiB/s in a burst.  Capped at 4 MiB/s: 4 in a burst, 1 mean.
    p = plan(2.0, burst_period_s=4.0, burst_duty=0.25, dirty_limit_Bps=4 * MIB)
    assert p.peak_rate_Bps() == 4 * MIB and p.mean_rate_Bps() == 1 * MIB
    on = len(p.pages_for(1.0))
    off = len(p.pages_for(3.0))
    assert abs(on - 4 * PAGES_PER_MIB) <= 1 and off == 0
    assert abs(on + off + writes(p, 36.0, step=0.1) - 40 * PAGES_PER_MIB) <= 1
    # A cap above the peak leaves the burst alone.
    loose = plan(2.0, burst_period_s=4.0, burst_duty=0.25, dirty_limit_Bps=20 * MIB)
    assert loose.peak_rate_Bps() == 8 * MIB and loose.mean_rate_Bps() == 2 * MIB


def test_count_stays_exact_while_the_cap_changes():
    p = plan(8.0)
    total = 0
    expected = 0.0
    for i, cap_mibps in enumerate([None, 1.0, 3.0, None, 0.5, 2.0] * 5):
        p.dirty_limit_Bps = None if cap_mibps is None else cap_mibps * MIB
        step = 0.0137 * (1 + i % 3)
        total += len(p.pages_for(step))
        expected += (8.0 if cap_mibps is None else cap_mibps) * PAGES_PER_MIB * step
    assert abs(total - expected) <= 1, (total, expected)


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, True, "10MB", [1]])
def test_bad_caps_are_config_errors_naming_the_key(bad):
    p = plan()
    with pytest.raises(ConfigError) as info:
        p.dirty_limit_Bps = bad
    assert info.value.path == "workload.dirty_limit_Bps"
    assert p.dirty_limit_Bps is None, "a refused cap must leave the plan as it was"
    with pytest.raises(ConfigError):
        plan(dirty_limit_Bps=bad)
