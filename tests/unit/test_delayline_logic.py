"""The delay line's pure parts: the release Schedule and the byte Ring."""

from __future__ import annotations

import random
from collections import deque

import pytest

from topologies.delayline import Ring, Schedule

# --- Schedule -----------------------------------------------------------------------------------


def test_fixed_delay_release_is_arrival_plus_delay():
    sched = Schedule(0.05, 0.0, 0.0, random.Random(1))
    for arrival in (0.0, 0.001, 0.5, 1.25, 100.0):
        assert sched.release(arrival) == pytest.approx(arrival + 0.05, abs=1e-12)


def test_jitter_keeps_fifo_and_never_releases_before_arrival():
    rng = random.Random(7)
    sched = Schedule(0.010, 0.020, 0.0, rng)   # jitter twice the delay: heavy reordering pressure
    arrivals = random.Random(8)
    t, last = 0.0, -1.0
    released = []
    for _ in range(10_000):
        t += arrivals.expovariate(10_000)       # ~100 us apart
        due = sched.release(t)
        assert due >= t, (due, t)
        assert due >= last, (due, last)
        last = due
        released.append(due - t)
    # the jitter did act: not every frame got exactly the base delay
    assert len({round(x, 9) for x in released}) > 100


def test_loss_fraction_matches_the_probability():
    sched = Schedule(0.0, 0.0, 0.1, random.Random(12345))
    n = 20_000
    lost = sum(1 for i in range(n) if sched.release(i * 1e-4) < 0)
    frac = lost / n
    assert abs(frac - 0.1) <= 0.01, f"lost fraction {frac:.4f}, expected 0.1 +- 0.01"


def test_lost_frames_return_minus_one_and_kept_frames_keep_order():
    sched = Schedule(0.02, 0.005, 0.3, random.Random(3))
    results = [sched.release(i * 1e-3) for i in range(2000)]
    assert -1.0 in results
    kept = [r for r in results if r >= 0]
    assert kept == sorted(kept)


def test_no_loss_means_nothing_lost():
    sched = Schedule(0.0, 0.001, 0.0, random.Random(5))
    assert all(sched.release(i * 1e-3) >= 0 for i in range(5000))


@pytest.mark.parametrize(("delay", "jitter", "loss"), [
    (-0.001, 0.0, 0.0),
    (0.05, -0.01, 0.0),
    (0.05, 0.0, -0.1),
    (0.05, 0.0, 1.0),
    (0.05, 0.0, 1.5),
])
def test_invalid_schedule_raises(delay, jitter, loss):
    with pytest.raises(ValueError):
        Schedule(delay, jitter, loss, random.Random(0))


@pytest.mark.parametrize(("delay", "jitter"), [(float("nan"), 0.0), (0.05, float("nan"))])
def test_nan_schedule_raises(delay, jitter):
    with pytest.raises(ValueError):
        Schedule(delay, jitter, 0.0, random.Random(0))


# --- Ring ---------------------------------------------------------------------------------------


def overlaps(a0: int, a1: int, b0: int, b1: int) -> bool:
    return a0 < b1 and b0 < a1


def test_ring_rejects_capacity_below_two_slots():
    with pytest.raises(ValueError):
        Ring(capacity=1000, slot=600, max_frames=16)


def test_ring_reserve_never_overlaps_queued_frames():
    slot, capacity = 1564, 10_000
    ring = Ring(capacity=capacity, slot=slot, max_frames=64)
    rng = random.Random(2024)
    queued: deque[tuple[int, int]] = deque()
    wraps = fulls = 0
    for step in range(50_000):
        if queued and (rng.random() < 0.45 or len(queued) == 64):
            o, n = queued.popleft()
            assert (ring.off[ring.head], ring.length[ring.head]) == (o, n)
            ring.pop()
            continue
        off = ring.reserve()
        if off < 0:
            fulls += 1
            assert queued, "reserve said full with nothing queued"
            o, n = queued.popleft()
            ring.pop()
            continue
        assert 0 <= off and off + slot <= capacity, (step, off)
        for o, n in queued:
            assert not overlaps(off, off + slot, o, o + n), (step, off, o, n, list(queued))
        if queued and off < queued[-1][0]:
            wraps += 1
        n = rng.choice((60, 64, 128, 576, 1000, 1514, slot))
        ring.push(off, n, due=float(step))
        queued.append((off, n))
        assert ring.count == len(queued)
    assert wraps > 100, "the test never exercised wrap-around"
    assert fulls > 100, "the test never filled the ring"


def test_ring_full_returns_minus_one():
    ring = Ring(capacity=4 * 1000, slot=1000, max_frames=100)
    for _ in range(4):
        off = ring.reserve()
        assert off >= 0
        ring.push(off, 1000, 0.0)
    assert ring.reserve() == -1


def test_ring_full_by_frame_count_returns_minus_one():
    ring = Ring(capacity=100_000, slot=1000, max_frames=3)
    for _ in range(3):
        off = ring.reserve()
        assert off >= 0
        ring.push(off, 64, 0.0)
    assert ring.reserve() == -1
    ring.pop()
    assert ring.reserve() >= 0


def test_ring_resets_to_zero_when_empty():
    ring = Ring(capacity=10_000, slot=1500, max_frames=16)
    for _ in range(5):
        off = ring.reserve()
        ring.push(off, 1200, 0.0)
    assert ring.wpos == 6000
    for _ in range(5):
        ring.pop()
    assert ring.count == 0
    assert ring.reserve() == 0
    assert ring.wpos == 0


def test_ring_wraps_to_start_when_tail_space_is_short():
    ring = Ring(capacity=5000, slot=1500, max_frames=16)
    offsets = []
    for _ in range(3):
        off = ring.reserve()
        offsets.append(off)
        ring.push(off, 1500, 0.0)
    assert offsets == [0, 1500, 3000]
    assert ring.reserve() == -1          # 500 bytes at the end, the head still at 0
    ring.pop()
    ring.pop()                           # head now at 3000: the start is free
    assert ring.reserve() == 0
    ring.push(0, 1000, 0.0)
    assert ring.reserve() == 1000        # behind the wrapped frame, still before the head
    ring.push(1000, 1500, 0.0)
    assert ring.reserve() == -1          # 500 bytes left before the head at 3000
