"""The fault and encryption benchmarks' judgements (pure): what counts as held, what a cost is."""

from __future__ import annotations

import pytest

from experiments.bench.encryption import cost
from experiments.bench.faults import judge

CELL = {"faults[0].kind": "kill-source", "faults[0].phase": "stop-copy", "repetition": 0}
HELD = {"one_site": True, "split_brain": False, "lost_writes": 0, "acked_writes": 50,
        "reachable": True, "leftovers": [], "held": True}


def test_an_aborted_run_whose_invariants_held_passes():
    row, v = judge(CELL, {"outcome": "aborted: destination gone", "invariants": HELD})
    assert v.ok and v.value == "held" and v.what == "kill-source at stop-copy", v
    assert row["outcome"].startswith("aborted") and row["acked_writes"] == 50


@pytest.mark.parametrize("broken,words", [
    ({"split_brain": True, "one_site": False, "held": False}, ["split brain", "one site"]),
    ({"lost_writes": 3, "held": False}, ["3 writes lost"]),
    ({"reachable": False, "held": False}, ["unreachable"]),
    ({"leftovers": ["veth dc1h1-eth0"], "held": False}, ["leftovers"])])
def test_each_broken_invariant_is_named(broken, words):
    _, v = judge(CELL, {"outcome": "completed", "invariants": {**HELD, **broken}})
    assert not v.ok and all(w in v.value for w in words), v


def test_a_run_that_never_checked_fails():
    _, v = judge(CELL, {"outcome": "failed: network did not come up"})
    assert not v.ok and "not checked" in v.value


def test_encryption_cost_is_median_against_median_over_completed_runs():
    rows = [{"encryption": "aes-256-gcm", "outcome": "completed", "total_time_s": t}
            for t in (10.0, 11.0, 30.0)] + \
           [{"encryption": "none", "outcome": "completed", "total_time_s": t}
            for t in (10.0, 10.0)] + \
           [{"encryption": "none", "outcome": "aborted", "total_time_s": 1.0}]
    med, rel = cost(rows)
    assert med == {"aes-256-gcm": 11.0, "none": 10.0}
    assert rel == pytest.approx(0.10)
    assert cost([{"encryption": "none", "outcome": "completed", "total_time_s": 5.0}])[1] is None


def test_a_sweep_counts_a_fault_run_by_its_invariants():
    from experiments.cli import run_passed

    assert run_passed({"outcome": "aborted: x", "invariants": HELD})
    assert not run_passed({"outcome": "completed", "invariants": {**HELD, "held": False}})
    assert run_passed({"outcome": "completed"}) and not run_passed({"outcome": "aborted"})


def test_attempt_retries_a_run_error_in_a_folder_of_its_own_and_records_it():
    from experiments.bench.harness import attempt
    from experiments.runner import RunError

    labels: list[str] = []

    def flaky(label: str) -> dict:
        labels.append(label)
        if len(labels) == 1:
            raise RunError("link preflight failed: goodput 258 Mbit/s")
        return {"outcome": "completed"}

    m, errors = attempt(flaky, "aes-1")
    assert m == {"outcome": "completed"} and labels == ["aes-1", "aes-1-try2"]
    assert len(errors) == 1 and "preflight" in errors[0]

    def broken(label: str) -> dict:
        raise RunError("network did not come up")

    m, errors = attempt(broken, "x", tries=2)
    assert m is None and len(errors) == 2

    def bug(label: str) -> dict:
        raise ValueError("a bug is not retried")

    with pytest.raises(ValueError):
        attempt(bug, "y")
