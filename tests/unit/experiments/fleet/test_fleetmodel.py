"""experiments.fleet.fleetmodel: processor sharing of the WAN links, hand-computed cases, the
pre-copy penalty of concurrency, and a lower bound the simulation never beats."""

from __future__ import annotations

import random

import pytest

from experiments.fleet.fleetmodel import model_time_at, simulate
from experiments.fleet.scheduler import ORDERS, Limits
from experiments.fleet.types import Move, MoveCost
from migrator.core.model import ModelInputs, predict

# sites a, b, c; link 1 joins a-b, link 2 joins b-c; a-c crosses both
SITE = {"a1": "a", "a2": "a", "b1": "b", "b2": "b", "c1": "c", "c2": "c"}
LINKS = {frozenset("ab"): (1,), frozenset("bc"): (2,), frozenset("ac"): (1, 2)}
BW = {1: 1e8, 2: 5e7}
GB = 1e9
REL = 1e-9


def links_of(source: str, destination: str) -> tuple[int, ...]:
    s, d = SITE[source], SITE[destination]
    return () if s == d else LINKS[frozenset(s + d)]


def mv(seq: int, vm: str, src: str = "a1", dst: str = "b1", bytes_: float = GB) -> Move:
    return Move(vm=vm, source=src, destination=dst, reason="scheduled",
                cost=MoveCost(time_s=bytes_ / BW[1], downtime_s=0.0, bytes_on_wire=bytes_),
                seq=seq)


def constant_bytes(move: Move, b: float) -> float:
    """No dirtying: the move's bytes at whatever share."""
    return move.cost.bytes_on_wire / b


def run(moves, *, releases=None, limits=None, order="scheduled", time_at=constant_bytes,
        local=None):
    releases = releases or {m.seq: 0.0 for m in moves}
    return simulate(moves, releases, limits or Limits(), order, links_of, BW, time_at, local)


def spans(p) -> list[float]:
    """start, end, start, end, ... of the rows, flat (for pytest.approx)."""
    return [t for r in p.rows for t in (r["start_s"], r["end_s"])]


def close(a: float, b: float) -> bool:
    return a == pytest.approx(b, rel=REL)


def test_one_move_alone_takes_time_at_full_bandwidth():
    p = run([mv(0, "v0")])
    assert close(p.makespan_s, 10.0), p
    assert p.rows == [{"seq": 0, "vm": "v0", "start_s": 0.0, "end_s": p.makespan_s,
                       "min_share_Bps": 1e8, "max_share_Bps": 1e8}]
    assert close(p.lower_bound_s, p.makespan_s), "alone, the bound is reached"


def test_pure_bandwidth_sharing_changes_nothing_when_bytes_are_constant():
    moves = [mv(0, "v0"), mv(1, "v1")]
    one = run(moves, limits=Limits(per_link=1))
    two = run(moves, limits=Limits(per_link=2))
    # one at a time: 10 s each at 1e8 B/s; together: 1e9 B each at 5e7 B/s = 20 s, both
    assert spans(one) == pytest.approx([0, 10, 10, 20], rel=REL), one
    assert spans(two) == pytest.approx([0, 20, 0, 20], rel=REL), two
    assert close(one.makespan_s, 20.0) and close(two.makespan_s, 20.0), (one, two)
    assert all(r["max_share_Bps"] == 5e7 for r in two.rows), two.rows


def dirty_inputs(memory: float = GB, dirty: float = 3e7) -> ModelInputs:
    return ModelInputs(memory_bytes=memory, bandwidth_Bps=BW[1], dirty_rate_Bps=dirty,
                       downtime_target_s=0.3)


def test_dirty_pages_make_concurrency_slower():
    # Why longer: each round's length is its bytes over the share, and the guest dirties at a
    # fixed rate meanwhile; at half the share the dirty/bandwidth ratio doubles (0.3 -> 0.6),
    # so each round re-sends a larger fraction and more rounds are needed. The geometric sum
    # M/b / (1 - D/b) makes time_at(b/2) > 2 * time_at(b): two together finish later than
    # two one after the other.
    f = model_time_at(dirty_inputs())
    moves = [mv(0, "v0"), mv(1, "v1")]
    one = run(moves, limits=Limits(per_link=1), time_at=lambda m, b: f(b))
    two = run(moves, limits=Limits(per_link=2), time_at=lambda m, b: f(b))
    assert close(one.makespan_s, 2 * f(1e8)), one
    assert close(two.makespan_s, f(5e7)), two
    assert two.makespan_s > one.makespan_s * 1.05, (one.makespan_s, two.makespan_s)


def test_releases_are_respected_and_shares_change_mid_move():
    # v0 alone 0-4 s sends 4e8 B; then both at 5e7 B/s: v0's 6e8 B take 12 s (end 16), v1 sends
    # 6e8 B meanwhile, then its last 4e8 B alone at 1e8 B/s: 4 s (end 20)
    p = run([mv(0, "v0"), mv(1, "v1")], releases={0: 0.0, 1: 4.0})
    (r0, r1) = p.rows
    assert (r0["start_s"], r1["start_s"]) == (0.0, 4.0)
    assert close(r0["end_s"], 16.0) and close(r1["end_s"], 20.0), p.rows
    assert (r0["min_share_Bps"], r0["max_share_Bps"]) == (5e7, 1e8)
    assert (r1["min_share_Bps"], r1["max_share_Bps"]) == (5e7, 1e8)
    late = run([mv(0, "v0")], releases={0: 7.5})
    assert late.rows[0]["start_s"] == 7.5 and close(late.makespan_s, 17.5), late


def test_moves_on_different_links_do_not_share():
    p = run([mv(0, "v0", "a1", "b1"), mv(1, "v1", "b2", "c1")])
    assert close(p.rows[0]["end_s"], 10.0) and close(p.rows[1]["end_s"], 20.0), p.rows
    assert [r["min_share_Bps"] for r in p.rows] == [1e8, 5e7]


def test_a_move_across_two_links_gets_its_smallest_share():
    # v0 a->c: link 1 shared with v1 (1e8 / 2), link 2 alone (5e7): 5e7 either way
    p = run([mv(0, "v0", "a1", "c1"), mv(1, "v1", "a2", "b1")])
    assert p.rows[0]["max_share_Bps"] == 5e7 and close(p.rows[0]["end_s"], 20.0), p.rows
    # v1 shares link 1 until v0 ends at 20 s, so sends all its bytes at 5e7: 20 s
    assert close(p.rows[1]["end_s"], 20.0), p.rows


def test_a_move_inside_a_site_needs_the_local_bandwidth():
    with pytest.raises(ValueError, match="local_bandwidth_Bps"):
        run([mv(0, "v0", "a1", "a2")])
    p = run([mv(0, "v0", "a1", "a2"), mv(1, "v1", "a2", "a1")], local=1e9)
    assert [r["end_s"] for r in p.rows] == pytest.approx([1.0, 1.0]), "local is not shared"


def test_the_scheduler_orders_the_model():
    # largest cost first, one at a time: the 2e9 B move runs first
    moves = [mv(0, "v0", bytes_=GB), mv(1, "v1", bytes_=2 * GB)]
    p = run(moves, limits=Limits(overall=1), order="largest-cost")
    assert spans(p) == pytest.approx([20, 30, 0, 20], rel=REL), p


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="release_s"):
        simulate([mv(0, "v0")], {}, Limits(), "scheduled", links_of, BW, constant_bytes)
    with pytest.raises(ValueError, match="same seq"):
        run([mv(0, "v0"), mv(0, "v1")])
    with pytest.raises(ValueError, match="positive finite"):
        run([mv(0, "v0")], time_at=lambda m, b: 0.0)
    assert run([]).makespan_s == 0.0


def test_model_time_at_is_the_model_at_that_bandwidth():
    inp = dirty_inputs()
    f = model_time_at(inp)
    assert f(1e8) == predict(inp).total_time_s
    assert f(5e7) == predict(ModelInputs(memory_bytes=GB, bandwidth_Bps=5e7,
                                         dirty_rate_Bps=3e7)).total_time_s
    assert f(5e7) > 2 * f(1e8)


def test_lower_bound_never_beaten_on_random_fleets():
    rng = random.Random(1313)
    hosts = sorted(SITE)
    for case in range(40):
        moves, times, releases = [], {}, {}
        for seq in range(rng.randint(1, 8)):
            src, dst = rng.sample(hosts, 2)
            inp = ModelInputs(memory_bytes=rng.uniform(0.2, 4) * GB, bandwidth_Bps=1.0,
                              dirty_rate_Bps=rng.choice([0.0, rng.uniform(1e6, 2e7)]))
            f = model_time_at(inp)
            crossed = links_of(src, dst)
            full = min(BW[k] for k in crossed) if crossed else 1e9
            res = predict(ModelInputs(**{**inp.__dict__, "bandwidth_Bps": full}))
            vm = f"v{rng.randint(0, 4)}"              # a VM may move more than once
            moves.append(Move(vm=vm, source=src, destination=dst, reason="rebalance",
                              cost=MoveCost(res.total_time_s, res.downtime_s,
                                            res.bytes_on_wire), seq=seq))
            times[seq] = f
            releases[seq] = rng.choice([0.0, rng.uniform(0, 60)])
        limits = Limits(overall=rng.choice([None, 1, 2, 3]), per_host=rng.choice([None, 1, 2]),
                        per_link=rng.choice([None, 1, 2, 4]))
        order = rng.choice(ORDERS)
        p = simulate(moves, releases, limits, order, links_of, BW,
                     lambda m, b, t=times: t[m.seq](b), local_bandwidth_Bps=1e9)
        ctx = f"case {case}: {limits} {order} lb={p.lower_bound_s} makespan={p.makespan_s}"
        assert p.lower_bound_s <= p.makespan_s * (1 + REL), ctx
        assert p.lower_bound_s > 0, ctx
        for r in p.rows:
            assert releases[r["seq"]] <= r["start_s"] < r["end_s"] <= p.makespan_s, (ctx, r)
        for vm in {m.vm for m in moves}:
            own = sorted((r["start_s"], r["end_s"]) for r in p.rows if r["vm"] == vm)
            assert all(a[1] <= b[0] for a, b in zip(own, own[1:], strict=False)), (ctx, vm, own)
