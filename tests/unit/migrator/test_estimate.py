"""migrator.core.estimate: the engine's stop-rule arithmetic, exactly."""

from __future__ import annotations

import pytest

from migrator.core import estimate

MIB = 1024 * 1024


def test_expected_downtime_counts_the_drain_the_ratio_and_one_rtt():
    # 4 MiB dirty, 2 MiB/s dirtying, 1 MiB in flight at 8 MiB/s on the wire, ratio 2.
    got = estimate.expected_downtime(4 * MIB, 2 * MIB, 1 * MIB, 8 * MIB, 16 * MIB, 0.15)
    drain_s = 1 / 8
    assert got == pytest.approx((4 * MIB + 2 * MIB * drain_s) / (16 * MIB) + 0.15)


def test_nothing_dirty_nothing_in_flight_is_one_rtt():
    assert estimate.expected_downtime(0, 0, 0, 1e6, 1e6, 0.05) == pytest.approx(0.05)


@pytest.mark.parametrize(("dirty_Bps", "want"), [(0.1 * MIB, True),    # idle: a round pays
                                                 (4 * MIB, False)])    # half the link: no
def test_halves(dirty_Bps, want):  # noqa: N803
    # 2 MiB dirty at 8 MiB/s raw: a 0.25 s round.
    assert estimate.halves(2 * MIB, dirty_Bps, 8 * MIB, 0.05) is want


def test_halves_never_for_an_empty_set():
    assert estimate.halves(0, 0, 8 * MIB, 0.05) is False


def test_eta_geometric_and_none_when_not_shrinking():
    assert estimate.eta(8 * MIB, 4 * MIB, 8 * MIB, 0.1) == pytest.approx(2.0 + 0.1)
    assert estimate.eta(8 * MIB, 8 * MIB, 8 * MIB, 0.1) is None
