"""experiments.faults.trigger: the phase a migration is in, from its messages, and which faults
fire and end, with the clock passed in."""

from __future__ import annotations

from experiments.faults.spec import FaultSpec
from experiments.faults.trigger import FaultPlan, MigrationTracker


def fault(kind="wan-outage", at_s=None, phase=None, rnd=None, duration_s=2.0):
    return FaultSpec(kind=kind, at_s=at_s, phase=phase, round=rnd, duration_s=duration_s)


# What the migrators say during a migration that converges after round 2 (ground.protocol).
MIGRATION = [("STARTED", {"t": 100.0}),
             ("PROGRESS", {"phase": "live", "round": 0}),
             ("PROGRESS", {"phase": "live", "round": 1}),
             ("PROGRESS", {"phase": "live", "round": 2}),
             ("PROGRESS", {"phase": "drain", "round": 3}),
             ("PAUSED", {"t": 104.0}),
             ("PROGRESS", {"phase": "stop-copy", "round": 3}),
             ("PROGRESS", {"phase": "verify", "round": 3}),
             ("VERIFIED", {"t": 105.0}),
             ("RESUMED", {"t": 105.2})]


def test_tracker_follows_a_migration_phase_by_phase():
    tr = MigrationTracker()
    seen = []
    for kind, fields in MIGRATION:
        tr.on_message(kind, fields)
        seen.append((tr.phase, tr.round))
    assert seen == [("setup", None), ("live", 1), ("live", 2), ("live", 3), ("live", 3),
                    ("stop-copy", 3), ("verify", 3), ("verify", 3), ("switchover", 3),
                    ("done", 3)]
    assert tr.started_t == 100.0 and tr.elapsed(102.5) == 2.5


def test_tracker_says_when_something_changed_and_ignores_other_kinds():
    tr = MigrationTracker()
    assert tr.elapsed(5.0) is None
    assert tr.on_message("STARTED", {"t": 1.0}) is True
    assert tr.on_message("READY", {}) is False
    assert tr.on_message("PROGRESS", {"phase": "live", "round": 0}) is True
    assert tr.on_message("PROGRESS", {"phase": "verify", "round": 0}) is False


def test_cold_migration_goes_from_pause_to_verify():
    tr = MigrationTracker()
    for kind, fields in [("STARTED", {"t": 0.0}), ("PAUSED", {"t": 0.1}),
                         ("PROGRESS", {"phase": "cold", "round": 0})]:
        tr.on_message(kind, fields)
    assert tr.phase == "verify"


def test_each_fault_fires_once_at_its_phase_round_or_time():
    plan = FaultPlan([fault(phase="live", rnd=2), fault(phase="stop-copy"),
                      fault(at_s=3.0), fault(phase="switchover")])
    assert plan.due(10.0, None, None, None) == []
    assert plan.due(10.5, 0.5, "live", 1) == []
    assert plan.due(11.0, 1.0, "live", 2) == [0]
    assert plan.due(11.1, 1.1, "live", 2) == []                  # once
    assert plan.due(13.0, 3.0, "live", 3) == [2]
    assert plan.due(14.0, 4.0, "stop-copy", 3) == [1]
    assert plan.fired == {0: 1.0, 2: 3.0, 1: 4.0}
    assert 3 not in plan.fired                                     # switchover never came


def test_a_round_never_reached_never_fires():
    plan = FaultPlan([fault(phase="live", rnd=5)])
    for rnd in (1, 2, 3):
        assert plan.due(float(rnd), float(rnd), "live", rnd) == []
    assert plan.due(4.0, 4.0, "stop-copy", 3) == []


def test_faults_end_after_their_duration_kills_at_once_the_rest_at_finish():
    plan = FaultPlan([fault(duration_s=2.0, phase="live", rnd=1),
                      fault(kind="kill-source", duration_s=None, phase="live", rnd=1),
                      fault(kind="rtt-step", duration_s=None, phase="live", rnd=1),
                      fault(kind="restart-controller", duration_s=0.0, phase="stop-copy")])
    assert plan.due(10.0, 1.0, "live", 1) == [0, 1, 2]
    assert plan.ending(10.0) == [1]
    assert plan.next_end() == 12.0
    assert plan.ending(11.9) == []
    assert plan.ending(12.0) == [0]
    assert plan.next_end() is None
    assert plan.due(13.0, 4.0, "stop-copy", 1) == [3]
    assert plan.ending(13.0) == [3]                                 # down 0 s: restart now
    assert plan.finish() == [2] and plan.finish() == []
    assert plan.ended == {0, 1, 2, 3}


def test_finish_leaves_faults_that_never_fired_alone():
    plan = FaultPlan([fault(phase="verify")])
    assert plan.finish() == [] and plan.ended == set()
