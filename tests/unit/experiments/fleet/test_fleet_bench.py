"""The fleet benchmark's judgement (pure): the makespan against the fleet model, downtime
against the target plus one RTT, and the rebalance against its own prediction."""

from __future__ import annotations

from experiments.bench.fleet import cases, judge

GOOD = {"outcome": "completed", "moves_total": 4, "moves_completed": 4, "makespan_s": 40.0,
        "predicted_makespan_s": 35.0, "makespan_lower_bound_s": 30.0, "downtime_max_ms": 300.0,
        "lost_writes_total": 0, "imbalance_after": 0.05, "imbalance_target": 0.1,
        "rebalance_moves": 3, "rebalance_predicted_moves": 3}


def verdicts(case: str, **over) -> dict[str, bool]:
    specs = cases([case])
    _, vs = judge(case, specs[case], {**GOOD, **over})
    return {v.what.split(": ", 1)[1]: v.ok for v in vs}


def test_an_evacuation_is_judged_on_makespan_downtime_and_writes():
    assert verdicts("evacuate-c2") == {"every move completed": True, "lost client writes": True,
                                       "largest downtime": True,
                                       "makespan / fleet model": True}
    assert not verdicts("evacuate-c2", makespan_s=44.0)["makespan / fleet model"]   # 1.26x
    assert not verdicts("evacuate-c2", downtime_max_ms=451.0)["largest downtime"]  # 300 + 150
    assert not verdicts("evacuate-c2", lost_writes_total=1)["lost client writes"]
    assert not verdicts("evacuate-c2", predicted_makespan_s=None)["makespan / fleet model"]


def test_a_rebalance_must_reach_the_target_within_its_predicted_moves():
    v = verdicts("rebalance")
    assert v["imbalance after"] and v["moves made"] and "makespan / fleet model" not in v
    assert not verdicts("rebalance", imbalance_after=0.11)["imbalance after"]
    assert not verdicts("rebalance", rebalance_moves=4)["moves made"]
    assert not verdicts("rebalance", rebalance_predicted_moves=None)["moves made"]
