"""migrator.transport.rate: the stream's transfer rate, link-limited intervals only lowering it."""

from __future__ import annotations

import pytest

from migrator.transport.rate import RateEstimator


def feed(est: RateEstimator, t0: float, seconds: float, rate: float, waiting: bool,
         acked0: int = 0, dt: float = 0.01) -> tuple[float, int]:
    t, acked = t0, acked0
    for _ in range(round(seconds / dt)):
        t += dt
        acked += int(rate * dt)
        est.add(t, acked, waiting)
    return t, acked


def test_none_before_the_first_interval():
    est = RateEstimator()
    est.add(0.0, 0, True)
    est.add(0.05, 1000, True)
    assert est.rate_Bps() is None


def test_link_limited_intervals_give_the_rate():
    est = RateEstimator()
    feed(est, 0.0, 2.0, 25e6, True)
    assert est.rate_Bps() == pytest.approx(25e6, rel=0.02)
    assert est.link_limited >= 15 and est.app_limited == 0


def test_a_short_round_with_nothing_waiting_does_not_lower_it():
    est = RateEstimator()
    t, acked = feed(est, 0.0, 2.0, 25e6, True)
    feed(est, t, 1.0, 5e6, False, acked)       # the engine had little to send
    assert est.rate_Bps() == pytest.approx(25e6, rel=0.02)
    assert est.app_limited >= 9


def test_a_slower_link_lowers_it_smoothly():
    est = RateEstimator(alpha=0.25)
    t, acked = feed(est, 0.0, 2.0, 25e6, True)
    t, acked = feed(est, t, 0.1, 10e6, True, acked)
    one = est.rate_Bps()
    assert 10e6 < one < 25e6                    # one interval moves it part of the way
    feed(est, t, 2.0, 10e6, True, acked)
    assert est.rate_Bps() == pytest.approx(10e6, rel=0.05)


def test_app_limited_faster_than_estimate_raises_it_part_of_the_way():
    est = RateEstimator(alpha=0.25)
    t, acked = feed(est, 0.0, 1.0, 10e6, True)
    feed(est, t, 0.1, 30e6, False, acked)
    assert 10e6 < est.rate_Bps() < 30e6


@pytest.mark.parametrize(("kw", "word"), [({"interval_s": 0}, "interval_s"),
                                           ({"alpha": 0}, "alpha"),
                                           ({"full_frac": 1.5}, "full_frac")])
def test_bad_parameters(kw, word):
    with pytest.raises(ValueError, match=word):
        RateEstimator(**kw)
