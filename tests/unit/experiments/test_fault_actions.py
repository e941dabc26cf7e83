"""experiments.faults.actions against fakes: what each fault asks of the delay line, the
migrators and the controller, and the faults a network cannot take, refused up front."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from experiments.faults.actions import FaultError, RunActions
from experiments.faults.spec import FaultSpec


def link(relayed=True):
    return SimpleNamespace(relay_proc=object() if relayed else None, backend="delayline",
                           relay_control_path="/run/wanmig/wl1-1.ctl" if relayed else None,
                           forwarding="relay" if relayed else "tc-mirred", relay_delay_ms=24.3,
                           spec=SimpleNamespace(rtt_ms=50.0))


def net(relayed=True, control=True):
    return SimpleNamespace(links=[link(relayed)], control=SimpleNamespace() if control else None)


def wan(kind, **kw):
    return FaultSpec(kind, None, "live", 1, kw.pop("duration_s", 2.0), link=1, **kw)


def test_wan_faults_on_a_link_without_a_delay_line_are_refused_up_front():
    acts = RunActions(net(relayed=False), lambda name: None, "dc2h1")
    with pytest.raises(FaultError, match=r"faults\[0\]: wan-outage on WAN link 1, which is not "
                                         r"a delay line \(backend delayline, forwarding "
                                         r"tc-mirred\)"):
        acts.check([wan("wan-outage")])
    acts.check([FaultSpec("kill-source", None, "live", 1, None)])     # no link needed


def test_a_controller_restart_needs_a_controller():
    acts = RunActions(net(control=False), lambda name: None, "dc2h1")
    with pytest.raises(FaultError, match="no controller"):
        acts.check([FaultSpec("restart-controller", None, "live", 1, 1.0)])


def test_wan_faults_and_their_undoing_as_control_messages(monkeypatch):
    sent = []

    def fake_send(path, fields):
        sent.append((path, dict(fields)))
        return {"ok": True, **fields}

    monkeypatch.setattr("topologies.linkcontrol.send_control", fake_send)
    acts = RunActions(net(), lambda name: None, "dc2h1")
    for f in (wan("wan-outage"), wan("loss-burst", loss_pct=36.0),
              wan("rtt-step", rtt_ms=150.0, duration_s=None)):
        acts.apply(f)
        acts.undo(f)
    fields = [f for _, f in sent]
    assert fields[0] == {"cut": True} and fields[1] == {"cut": False}
    assert fields[2] == {"loss_pct": pytest.approx(20.0)} and fields[3] == {"loss_pct": None}
    assert fields[4] == {"delay_ms": pytest.approx(74.3)} and fields[5] == {"delay_ms": None}
    assert {p for p, _ in sent} == {"/run/wanmig/wl1-1.ctl"}


def test_a_relay_that_does_not_answer_is_a_fault_error(monkeypatch):
    def silent(path, fields):
        raise TimeoutError("timed out")

    monkeypatch.setattr("topologies.linkcontrol.send_control", silent)
    with pytest.raises(FaultError, match="delay line of WAN link 1: timed out"):
        RunActions(net(), lambda name: None, "dc2h1").apply(wan("wan-outage"))
