"""experiments.fleet.scheduler: limits as vCenter counts them, the order policies, one move per
VM at a time in seq order, no head-of-line blocking."""

from __future__ import annotations

import pytest

from experiments.fleet.scheduler import ORDERS, Limits, Scheduler, default_limits
from experiments.fleet.types import Move, MoveCost
from ground.config import ConfigError

# hosts a1, a2 at site a; b1, b2 at site b; c1 at site c; link 1 joins a-b, link 2 joins b-c,
# a-c crosses both
SITE = {"a1": "a", "a2": "a", "b1": "b", "b2": "b", "c1": "c"}
LINKS = {frozenset("ab"): (1,), frozenset("bc"): (2,), frozenset("ac"): (1, 2)}


def links_of(source: str, destination: str) -> tuple[int, ...]:
    s, d = SITE[source], SITE[destination]
    return () if s == d else LINKS[frozenset(s + d)]


def mv(seq: int, vm: str, src: str = "a1", dst: str = "b1", *, mem: int = 0, dirty: float = 0.0,
       time_s: float = 1.0) -> Move:
    return Move(vm=vm, source=src, destination=dst, reason="scheduled",
                cost=MoveCost(time_s=time_s, downtime_s=0.1, bytes_on_wire=1.0),
                memory_bytes=mem, dirty_rate_Bps=dirty, seq=seq)


def sched(*moves: Move, order: str = "scheduled", **limits: int | None) -> Scheduler:
    s = Scheduler(Limits(**limits), order, links_of)
    for m in moves:
        s.submit(m)
    return s


def seqs(moves) -> list[int]:
    return [m.seq for m in moves]


def test_overall_limit_starts_only_that_many_in_order():
    s = sched(*(mv(i, f"v{i}") for i in range(5)), overall=2)
    assert seqs(s.startable()) == [0, 1]
    assert s.startable() == [], "no slot left until one finishes"
    assert seqs(s.running) == [0, 1] and seqs(s.pending) == [2, 3, 4]


def test_per_host_counts_both_ends():
    # v0 a1->b1 and v1 b1->a2 both involve b1: with per_host 1 the second waits, even though
    # b1 is its source and the first's destination
    s = sched(mv(0, "v0", "a1", "b1"), mv(1, "v1", "b1", "a2"), mv(2, "v2", "a2", "b2"),
              per_host=1)
    # v2 a2->b2: a2 and b2 free; v1 blocked by b1 (taken by v0)
    assert seqs(s.startable()) == [0, 2]
    s.finished(s.running[0])
    assert seqs(s.startable()) == [], "a2 still busy with v2, so v1 (b1->a2) waits"
    s.finished(s.running[0])
    assert seqs(s.startable()) == [1]


def test_per_link_counts_every_link_crossed():
    # v0 a1->c1 crosses links 1 and 2; with per_link 1 neither a->b nor b->c can start with it
    s = sched(mv(0, "v0", "a1", "c1"), mv(1, "v1", "a2", "b1"), mv(2, "v2", "b2", "c1"),
              mv(3, "v3", "a1", "a2"), per_link=1)
    assert seqs(s.startable()) == [0, 3], "v3 stays inside site a and crosses no link"
    s.finished(s.running[0])
    assert seqs(s.startable()) == [1, 2], "link 1 and link 2 each take one"


def test_same_vm_never_twice_and_later_move_waits_for_the_earlier():
    # v0's second move (seq 1) is smaller and would come first by smallest-memory, but it waits
    s = sched(mv(0, "v0", "a1", "b1", mem=900), mv(1, "v0", "b1", "c1", mem=100),
              mv(2, "v2", "a2", "b2", mem=500), order="smallest-memory")
    assert seqs(s.startable()) == [2, 0], "policy order 1, 2, 0 with seq 1 skipped"
    assert seqs(s.startable()) == [], "v0 is moving"
    s.finished(s.running[0])
    assert seqs(s.startable()) == [1]


def test_later_move_of_a_vm_waits_even_when_the_earlier_cannot_start():
    # seq 0 (v0) blocked by the host limit; v0's seq 2 must not overtake it
    s = sched(mv(9, "x", "a1", "b1"), order="scheduled", per_host=1)
    assert seqs(s.startable()) == [9]
    s.submit(mv(10, "v0", "a1", "b2"))
    s.submit(mv(11, "v0", "a2", "b2"))
    assert seqs(s.startable()) == [], "seq 11 would fit but is v0's later move"


@pytest.mark.parametrize("order, expected", [
    ("scheduled", [0, 1, 2, 3]),
    ("smallest-memory", [2, 0, 3, 1]),      # 100, 300, 300 (seq 3 after seq 0), 900
    ("lowest-dirty-rate", [3, 1, 0, 2]),    # 0, 5, 10, 20
    ("largest-cost", [1, 2, 0, 3]),         # 40, 30, 10, 10 (seq 0 before seq 3)
])
def test_order_policies(order, expected):
    moves = [mv(0, "v0", mem=300, dirty=10.0, time_s=10.0),
             mv(1, "v1", mem=900, dirty=5.0, time_s=40.0),
             mv(2, "v2", mem=100, dirty=20.0, time_s=30.0),
             mv(3, "v3", mem=300, dirty=0.0, time_s=10.0)]
    s = sched(*reversed(moves), order=order)
    assert seqs(s.pending) == expected
    assert seqs(s.startable()) == expected
    one = sched(*moves, order=order, overall=1)
    started = []
    while not one.idle:
        [m] = one.startable()
        started.append(m.seq)
        one.finished(m)
    assert started == expected, f"{order}: one at a time started {started}"


def test_no_head_of_line_blocking():
    # by smallest-memory seq 6 is first but its host a1 is full; seq 7 (larger) still starts
    s = sched(mv(5, "busy", "a1", "c1", mem=99), order="smallest-memory", per_host=1)
    assert seqs(s.startable()) == [5]
    s.submit(mv(7, "v1", "a2", "b2", mem=2))
    s.submit(mv(6, "v0", "a1", "b1", mem=1))
    assert seqs(s.pending) == [6, 7]
    assert seqs(s.startable()) == [7]
    assert seqs(s.pending) == [6]


def test_finished_frees_slots_and_unknown_finish_is_refused():
    s = sched(mv(0, "v0"), mv(1, "v1"), overall=1)
    [first] = s.startable()
    assert s.startable() == []
    s.finished(first)
    assert seqs(s.startable()) == [1]
    with pytest.raises(ValueError, match="not running"):
        s.finished(first)
    s.finished(s.running[0])
    assert s.idle


def test_cancel_removes_only_that_vms_queued_moves():
    s = sched(mv(0, "v0"), mv(1, "v1"), mv(2, "v0", "b1", "c1"), mv(3, "v2"), overall=1)
    assert seqs(s.startable()) == [0]
    assert seqs(s.cancel("v0")) == [2], "the running move stays"
    assert seqs(s.pending) == [1, 3] and seqs(s.running) == [0]
    assert s.cancel("nobody") == []
    assert not s.idle


def test_refusals():
    with pytest.raises(ValueError, match="source and destination"):
        sched(mv(0, "v0", "a1", "a1"))
    with pytest.raises(ValueError, match="seq already"):
        sched(mv(0, "v0"), mv(0, "v1"))
    with pytest.raises(ConfigError) as err:
        Scheduler(Limits(), "random", links_of)
    assert err.value.path == "execution.order"
    for order in ORDERS:
        Scheduler(Limits(), order, links_of)
    with pytest.raises(ConfigError) as err:
        Limits(per_host=0)
    assert err.value.path == "execution.limits.per_host"


def test_unlimited_starts_everything_but_a_vms_second_move():
    s = sched(*(mv(i, f"v{i % 3}") for i in range(6)))
    assert seqs(s.startable()) == [0, 1, 2]


@pytest.mark.parametrize("mbps, n", [(1000, 4), (100, 4), (9999, 4), (10_000, 8),
                                     (40_000, 8), (None, 4)])
def test_default_limits_are_vcenters_anchors(mbps, n):
    # None = speed unknown: the 1 GbE anchor, the cautious one
    assert default_limits(mbps) == Limits(overall=None, per_host=n, per_link=n)
