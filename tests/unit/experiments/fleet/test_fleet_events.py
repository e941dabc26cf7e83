"""What a fleet run does when its events fire, without a network: the placement's decisions
written to decisions.jsonl with their candidates, and the moves queued on the planned placement
(a later event sees where earlier moves will have put the VMs)."""

from __future__ import annotations

import json
from types import SimpleNamespace

from experiments.fleet.run import FleetRun
from experiments.fleet.scheduler import Scheduler
from experiments.fleet.spec import Event
from experiments.spec import parse_experiment
from topologies.plan import plan_network

LINKS = [{"link": 1, "goodput_mbps": 200.0, "rtt_ms_measured": 150.0, "rtt_ms_configured": 150,
          "bw_mbps": 250, "ok": True}]


def fleet_run(tmp_path, **over):
    spec = parse_experiment({
        "topology": {"sites": [{"name": "dc1", "hypervisors": 2}, {"name": "dc2",
                                                                    "hypervisors": 2}],
                     "wan": [{"between": ["dc1", "dc2"], "rtt_ms": 150, "bw_mbps": 250}]},
        "vm": {"memory": "256MiB", "workload": "web"},
        "vms": [{"name": f"v{i}", "host": "dc1h1"} for i in range(1, 4)],
        "hosts": {"default": {"memory": "1GiB", "cpu": 4}},
        **over})
    net = SimpleNamespace(plan=plan_network(spec.topology))
    run = FleetRun(spec, tmp_path, net)
    run.links = LINKS
    run.scheduler = Scheduler(run.limits(), "scheduled", lambda a, b: ())
    return run


def decisions(tmp_path) -> list[dict]:
    return [json.loads(line) for line in open(tmp_path / "decisions.jsonl")]


def test_degrading_a_host_evacuates_it_and_its_vms_are_planned_elsewhere(tmp_path):
    run = fleet_run(tmp_path)
    run.fire(Event("degrade", at_s=5.0, host="dc1h1"), 5.0)
    queued = [m for m, _ in run.queued.values()]
    assert [m.reason for m in queued] == ["degraded"] * 3
    assert {m.source for m in queued} == {"dc1h1"} and all(m.destination != "dc1h1"
                                                           for m in queued)
    assert run.states["dc1h1"] == "degraded"
    assert run.planned == {m.vm: m.destination for m in queued}
    d = decisions(tmp_path)
    assert len(d) == 3 and all(r["t"] == 5.0 and r["event"] == "degrade" for r in d)
    assert all(len(r["candidates"]) == 3 for r in d), d     # every other host considered
    # the first went to dc1h2: as balanced as the others, and no WAN to cross
    remote = [c["time_s"] for c in d[0]["candidates"] if c["site"] == "dc2"]
    assert queued[0].destination == "dc1h2" and queued[0].cost.time_s < min(remote) / 5, d[0]


def test_a_rebalance_counts_its_predicted_moves_and_a_later_one_sees_them(tmp_path):
    run = fleet_run(tmp_path, drs={"threshold": 4})
    run.fire(Event("rebalance", every_s=30.0), 30.0)
    first = len(run.queued)
    assert first >= 1 and run.rebalance_predicted == first
    # three VMs on four hosts: one host stays empty, so level 4's target (0.05) is out of
    # reach; the first rebalance stops where no move lowers the imbalance, the second (on the
    # placement as planned) finds nothing to do
    run.fire(Event("rebalance", every_s=30.0), 60.0)
    assert len(run.queued) == first and run.rebalance_predicted == first
    summary = [r for r in decisions(tmp_path) if r.get("action") == "rebalance-summary"]
    assert len(summary) == 2 and summary[1]["moves"] == 0, summary
    assert abs(summary[0]["imbalance_after"] - summary[1]["imbalance_before"]) < 1e-6, summary
    assert "no move lowers" in summary[1]["why"], summary


def test_a_named_destination_breaking_a_rule_is_refused_and_nothing_is_queued(tmp_path):
    run = fleet_run(tmp_path, drs={"rules": [{"kind": "vm-host", "vms": ["v1"],
                                              "hosts": ["dc1h1", "dc1h2"]}]})
    run.fire(Event("migrate", at_s=0.0, vm="v1", to="dc2h1"), 0.0)
    assert run.queued == {}
    (d,) = decisions(tmp_path)
    assert d["chosen"] is None and "vm-host" in d["candidates"][0]["why_not"], d
    run.fire(Event("migrate", at_s=1.0, vm="v1", to="auto"), 1.0)
    (move, _), = run.queued.values()
    assert move.destination == "dc1h2", move
