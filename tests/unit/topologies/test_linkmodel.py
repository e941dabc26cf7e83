"""The delay line's pure decision: topologies/linkmodel.py."""

from __future__ import annotations

import random

import pytest

from topologies.linkmodel import LOST, QUEUE_FULL, LinkModel


def test_fixed_delay_release_is_arrival_plus_delay():
    sched = LinkModel(0.05, 0.0, 0.0, random.Random(1))
    for arrival in (0.0, 0.001, 0.5, 1.25, 100.0):
        assert sched.release(arrival, 1514) == pytest.approx(arrival + 0.05, abs=1e-12)


def test_jitter_keeps_fifo_and_never_releases_before_arrival():
    rng = random.Random(7)
    sched = LinkModel(0.010, 0.020, 0.0, rng)   # jitter twice the delay: heavy reordering pressure
    arrivals = random.Random(8)
    t, last = 0.0, -1.0
    released = []
    for _ in range(10_000):
        t += arrivals.expovariate(10_000)       # ~100 us apart
        due = sched.release(t, 1514)
        assert due >= t, (due, t)
        assert due >= last, (due, last)
        last = due
        released.append(due - t)
    # the jitter did act: not every frame got exactly the base delay
    assert len({round(x, 9) for x in released}) > 100


def test_loss_fraction_matches_the_probability():
    sched = LinkModel(0.0, 0.0, 0.1, random.Random(12345))
    n = 20_000
    lost = sum(1 for i in range(n) if sched.release(i * 1e-4, 1514) < 0)
    frac = lost / n
    assert abs(frac - 0.1) <= 0.01, f"lost fraction {frac:.4f}, expected 0.1 +- 0.01"


def test_lost_frames_are_marked_lost_and_kept_frames_keep_order():
    sched = LinkModel(0.02, 0.005, 0.3, random.Random(3))
    results = [sched.release(i * 1e-3, 1514) for i in range(2000)]
    assert LOST in results
    kept = [r for r in results if r >= 0]
    assert kept == sorted(kept)


def test_no_loss_means_nothing_lost():
    sched = LinkModel(0.0, 0.001, 0.0, random.Random(5))
    assert all(sched.release(i * 1e-3, 1514) >= 0 for i in range(5000))


@pytest.mark.parametrize(("delay", "jitter", "loss"), [
    (-0.001, 0.0, 0.0),
    (0.05, -0.01, 0.0),
    (0.05, 0.0, -0.1),
    (0.05, 0.0, 1.0),
    (0.05, 0.0, 1.5),
])
def test_invalid_model_raises(delay, jitter, loss):
    with pytest.raises(ValueError):
        LinkModel(delay, jitter, loss, random.Random(0))


@pytest.mark.parametrize(("delay", "jitter"), [(float("nan"), 0.0), (0.05, float("nan"))])
def test_nan_model_raises(delay, jitter):
    with pytest.raises(ValueError):
        LinkModel(delay, jitter, 0.0, random.Random(0))


# --- rate and queue ------------------------------------------------------------------------------

def test_rate_serialises_back_to_back_frames():
    # 100 Mbit/s: a 1250-byte frame takes 100 us on the wire.
    m = LinkModel(0.010, rate_bps=100e6)
    dues = [m.release(0.0, 1250) for _ in range(5)]
    assert dues == pytest.approx([0.010 + 1e-4 * k for k in range(1, 6)], abs=1e-12)


def test_idle_link_sends_at_arrival_plus_serialisation():
    m = LinkModel(0.050, rate_bps=8e6)            # 1 byte per microsecond
    assert m.release(1.0, 1000) == pytest.approx(1.0 + 0.001 + 0.050)
    assert m.release(5.0, 500) == pytest.approx(5.0 + 0.0005 + 0.050)


def test_long_run_rate_equals_configured_rate():
    rate = 250e6
    m = LinkModel(0.075, rate_bps=rate, queue_bytes=1e12)
    n, size = 100_000, 1514
    last = 0.0
    for _ in range(n):
        last = m.release(0.0, size)             # a burst far above the rate
    carried = n * size * 8 / (last - 0.075)
    assert carried == pytest.approx(rate, rel=1e-9), f"carried {carried} bit/s, rate {rate}"


def test_full_queue_tail_drops_and_drains():
    # 8 Mbit/s = 1 byte/us; a queue of 3000 bytes.
    m = LinkModel(0.0, rate_bps=8e6, queue_bytes=3000)
    results = [m.release(0.0, 1000) for _ in range(6)]
    # The first frame starts at once; backlog 1000, 2000, 3000 bytes are accepted, 4000 is not.
    assert results[:4] == pytest.approx([0.001, 0.002, 0.003, 0.004])
    assert results[4:] == [QUEUE_FULL, QUEUE_FULL]
    assert m.backlog_bytes(0.0) == pytest.approx(4000)
    assert m.backlog_bytes(0.0035) == pytest.approx(500)
    # Once drained the link accepts again.
    assert m.release(0.004, 1000) == pytest.approx(0.005)


def test_unshaped_link_never_queues():
    m = LinkModel(0.02)
    assert all(m.release(0.0, 1514) == pytest.approx(0.02) for _ in range(10_000))
    assert m.backlog_bytes(0.0) == 0.0


@pytest.mark.parametrize("kwargs", [{"rate_bps": 0.0}, {"rate_bps": -1.0},
                                    {"rate_bps": float("nan")}, {"queue_bytes": 0}])
def test_invalid_rate_or_queue_raises(kwargs):
    with pytest.raises(ValueError):
        LinkModel(0.01, **kwargs)
