"""How faults and invariants show in report.md and in a sweep's summary."""

from __future__ import annotations

import json

from experiments.faults.report import fault_lines, invariants_cell
from experiments.summary import FAULT_METRICS, read_summary, write_summary

HELD = {"one_site": True, "vm_site": "dc1", "split_brain": False, "one_site_why": [],
        "acked_writes": 64, "lost_writes": 0, "reachable": True, "final_reply_frac": 1.0,
        "leftovers": [], "held": True}
FAULT = {"index": 0, "kind": "kill-destination", "at": "stop-copy", "fired_at": 2.71,
         "ended_at": 2.72, "error": None}


def test_a_run_without_faults_has_no_fault_section():
    assert fault_lines({"outcome": "completed"}) == []


def test_the_fault_section_lists_each_fault_and_each_invariant():
    text = "\n".join(fault_lines({"faults": [FAULT, {**FAULT, "index": 1, "at": "verify",
                                                      "fired_at": None, "ended_at": None}],
                                  "invariants": HELD}))
    assert "| 0 | kill-destination | stop-copy | 2.71 s | 2.72 s |  |" in text
    assert "| 1 | kill-destination | verify | never (not reached) | - |  |" in text
    assert "Invariants: **held**" in text and "| every acknowledged write reads back | yes | " \
        "0 of 64 lost |" in text


def test_a_broken_invariant_says_what_broke():
    inv = {**HELD, "one_site": False, "vm_site": None, "held": False, "lost_writes": 50,
           "one_site_why": ["the guest is paused, not running"], "reachable": False,
           "final_reply_frac": 0.0}
    text = "\n".join(fault_lines({"faults": [FAULT], "invariants": inv}))
    assert "Invariants: **BROKEN**" in text
    assert "| the VM runs at exactly one site | NO | the guest is paused, not running |" in text
    assert "| every acknowledged write reads back | NO | 50 of 64 lost |" in text
    assert "| the clients reach it again | NO | 0% of the last second's probes answered |" \
        in text


def test_a_sweep_cell_says_held_or_what_broke():
    held = {"invariants_held": True, "one_site": True, "split_brain": False, "lost_writes": 0,
            "reachable": True, "leftovers": 0}
    assert invariants_cell([held, held]) == "held"
    bad = {**held, "invariants_held": False, "one_site": False, "lost_writes": 3,
           "reachable": False}
    assert invariants_cell([held, bad]) == "NO: not one site, 3 lost writes, unreachable"
    assert invariants_cell([{"invariants_held": None}]) == "NO: not checked"


def test_summary_has_the_invariant_columns_only_when_faults_ran(tmp_path):
    for name, extra in (("a", {}), ("b", {"invariants_held": True, "lost_writes": 0})):
        run = tmp_path / name
        run.mkdir()
        (run / "metrics.json").write_text(json.dumps({"outcome": "completed", **extra}))
        (run / "swept.json").write_text(json.dumps({"faults[0].kind": name, "repetition": 0}))
    _, rows = read_summary(write_summary(tmp_path))
    assert all(k in rows[0] for k in FAULT_METRICS)
    assert (rows[0]["invariants_held"], rows[1]["invariants_held"]) == (None, True)
    (tmp_path / "b" / "metrics.json").write_text(json.dumps({"outcome": "completed"}))
    _, rows = read_summary(write_summary(tmp_path))
    assert not any(k in rows[0] for k in FAULT_METRICS)
