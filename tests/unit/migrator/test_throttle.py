"""migrator.core.throttle: when the guest is slowed and by how much, from the dirty/transfer
ratio (QEMU's trigger and tail-slow ideal)."""

from __future__ import annotations

import pytest

from migrator.core.policy import MigrationPolicy
from migrator.core.throttle import MIB, ThrottleController

XFER = 30 * MIB


def test_below_the_trigger_nothing_happens():
    t = ThrottleController(MigrationPolicy())
    assert all(t.observe(0.5 * XFER, XFER) is None for _ in range(5))
    assert t.throttle == 0.0 and not t.changes


def test_two_syncs_over_the_trigger_before_acting_and_a_quiet_one_resets():
    t = ThrottleController(MigrationPolicy())
    assert t.observe(0.6 * XFER, XFER) is None
    assert t.observe(0.4 * XFER, XFER) is None         # back under: the count restarts
    assert t.observe(0.6 * XFER, XFER) is None
    change = t.observe(0.6 * XFER, XFER)
    assert change is not None and change.ratio == pytest.approx(0.6)


def test_auto_converge_first_step_is_the_ideal_when_above_initial():
    t = ThrottleController(MigrationPolicy())
    t.observe(2 * XFER, XFER)
    change = t.observe(2 * XFER, XFER)
    # ideal: 1 - (1 - 0) * 0.5 / 2 = 0.75 > throttle_initial 0.2
    assert change is not None and change.throttle == pytest.approx(0.75)
    assert change.dirty_limit_Bps is None


def test_auto_converge_steps_at_least_initial_then_step_and_caps():
    t = ThrottleController(MigrationPolicy(throttle_max=0.5))
    t.observe(0.55 * XFER, XFER)
    assert t.observe(0.55 * XFER, XFER).throttle == pytest.approx(0.2)   # ideal 0.09 < 0.2
    t.observe(0.55 * XFER, XFER)
    assert t.observe(0.55 * XFER, XFER).throttle == pytest.approx(0.3)   # + step
    for _ in range(8):
        t.observe(5 * XFER, XFER)
    assert t.throttle == pytest.approx(0.5)                               # throttle_max
    assert t.observe(5 * XFER, XFER) is None and t.observe(5 * XFER, XFER) is None


def test_dirty_limit_sized_from_the_transfer_rate_then_scaled_down():
    t = ThrottleController(MigrationPolicy(throttle="dirty-limit"))
    t.observe(2 * XFER, XFER)
    first = t.observe(2 * XFER, XFER)
    assert first is not None and first.throttle == 0.0
    assert first.dirty_limit_Bps == pytest.approx(0.5 * XFER)
    t.observe(0.8 * XFER, XFER)
    second = t.observe(0.8 * XFER, XFER)
    assert second.dirty_limit_Bps == pytest.approx(0.5 * XFER * 0.5 / 0.8)


def test_dirty_limit_given_by_the_policy_stays():
    t = ThrottleController(MigrationPolicy(throttle="dirty-limit", dirty_limit_mibps=4))
    t.observe(2 * XFER, XFER)
    assert t.observe(2 * XFER, XFER).dirty_limit_Bps == 4 * MIB
    t.observe(2 * XFER, XFER)
    assert t.observe(2 * XFER, XFER) is None and t.dirty_limit_Bps == 4 * MIB


def test_none_never_throttles():
    t = ThrottleController(MigrationPolicy(throttle="none"))
    assert all(t.observe(10 * XFER, XFER) is None for _ in range(6))
    assert not t.active
