"""experiments.faults.injector: faults fired from the migrators' messages and the clock, undone
after their duration, every one recorded (actions faked, the clock passed in, no thread)."""

from __future__ import annotations

from experiments.faults.actions import FaultError
from experiments.faults.injector import FaultInjector
from experiments.faults.spec import FaultSpec
from ground.protocol import Kind, Message


class FakeActions:
    def __init__(self, fail=()):
        self.log, self.fail = [], set(fail)

    def apply(self, f):
        self.log.append(("apply", f.kind))
        if f.kind in self.fail:
            raise FaultError(f"{f.kind} could not be injected")
        return {"did": f.kind}

    def undo(self, f):
        self.log.append(("undo", f.kind))
        return {"undid": f.kind}


class Clock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


def injector(faults, actions, clock):
    return FaultInjector(tuple(faults), actions, clock=clock)


def say(inj, kind, **fields):
    inj.on_message(Message(kind, fields))
    inj.step()


def test_an_outage_at_live_round_1_fires_then_ends_after_its_duration():
    acts, clock = FakeActions(), Clock()
    inj = injector([FaultSpec("wan-outage", None, "live", 1, 2.0, link=1)], acts, clock)
    say(inj, Kind.STARTED, t=1000.0)
    clock.t = 1003.0
    say(inj, Kind.PROGRESS, phase="live", round=0)
    assert acts.log == [("apply", "wan-outage")]
    clock.t = 1004.9
    inj.step()
    assert acts.log == [("apply", "wan-outage")]
    clock.t = 1005.0
    inj.step()
    assert acts.log == [("apply", "wan-outage"), ("undo", "wan-outage")]
    (rec,) = inj.records()
    assert rec["at"] == "live round 1" and rec["fired_at"] == 3.0 and rec["ended_at"] == 5.0
    assert (rec["phase"], rec["round"], rec["error"]) == ("live", 1, None)
    assert rec["ended_by"] == "duration"
    assert rec["applied"] == {"did": "wan-outage"} and rec["undone"] == {"undid": "wan-outage"}


def test_a_kill_at_stop_copy_fires_at_the_pause_and_needs_no_undo():
    acts, clock = FakeActions(), Clock()
    inj = injector([FaultSpec("kill-destination", None, "stop-copy", None, None)], acts, clock)
    say(inj, Kind.STARTED, t=1000.0)
    say(inj, Kind.PROGRESS, phase="live", round=0)
    assert acts.log == []
    clock.t = 1002.5
    say(inj, Kind.PAUSED, t=1002.5)
    assert acts.log == [("apply", "kill-destination")]
    assert inj.records()[0]["fired_at"] == 2.5 and inj.records()[0]["undone"] is None


def test_finish_undoes_what_is_in_force_and_a_fault_never_reached_stays_unfired():
    acts, clock = FakeActions(), Clock()
    inj = injector([FaultSpec("rtt-step", 1.0, None, None, None, link=1, rtt_ms=100.0),
                    FaultSpec("cut-destination", None, "switchover", None, None)], acts, clock)
    say(inj, Kind.STARTED, t=1000.0)
    clock.t = 1001.0
    inj.step()
    inj.finish()
    assert acts.log == [("apply", "rtt-step"), ("undo", "rtt-step")]
    step, cut = inj.records()
    assert step["fired_at"] == 1.0 and step["ended_at"] == 1.0
    assert step["ended_by"] == "end of run"
    assert cut["fired_at"] is None and cut["applied"] is None


def test_a_failed_action_is_recorded_and_the_others_go_on():
    acts, clock = FakeActions(fail={"kill-source"}), Clock()
    inj = injector([FaultSpec("kill-source", 0.0, None, None, None),
                    FaultSpec("wan-outage", 0.0, None, None, 1.0, link=1)], acts, clock)
    say(inj, Kind.STARTED, t=1000.0)
    kill, out = inj.records()
    assert kill["error"] == "kill-source could not be injected" and kill["applied"] is None
    assert out["error"] is None and out["applied"] == {"did": "wan-outage"}


def test_nothing_fires_before_the_migration_starts():
    acts, clock = FakeActions(), Clock()
    inj = injector([FaultSpec("wan-outage", 0.0, None, None, 1.0, link=1)], acts, clock)
    inj.step()
    inj.finish()
    assert acts.log == [] and inj.records()[0]["fired_at"] is None
