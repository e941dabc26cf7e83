"""experiments.fleet.placement: fit, rules, cost weight, evacuation and greedy rebalancing, with
a fake cost (time proportional to memory, five times longer across sites)."""

from __future__ import annotations

import json
import math

import pytest

from experiments.fleet.placement import Placement
from experiments.fleet.types import HostInfo, MoveCost, Rule, VmInfo
from ground.config import ConfigError

GiB = 2 ** 30


def _host(name: str, site: str = "s1", gib: float = 16, cpu: float = 8.0,
          state: str = "normal") -> HostInfo:
    return HostInfo(name, site, int(gib * GiB), cpu, state)


def _vm(name: str, host: str, gib: float, cpu: float = 1.0) -> VmInfo:
    return VmInfo(name, host, int(gib * GiB), cpu)


class FakeCost:
    """1 s per GiB within a site, 5 s per GiB across; records every call."""

    def __init__(self, hosts: dict[str, HostInfo]) -> None:
        self.hosts = hosts
        self.calls: list[tuple[str, str, str]] = []

    def __call__(self, vm: VmInfo, source: str, destination: str) -> MoveCost:
        self.calls.append((vm.name, source, destination))
        far = self.hosts[source].site != self.hosts[destination].site
        time_s = vm.memory_bytes / GiB * (5.0 if far else 1.0)
        return MoveCost(time_s, 0.1 * time_s, vm.memory_bytes * (1.2 if far else 1.0))


def _placement(hosts: list[HostInfo], vms: list[VmInfo], rules: tuple[Rule, ...] = (),
               cost_weight: float = 0.01) -> tuple[Placement, FakeCost]:
    by_name = {h.name: h for h in hosts}
    cost = FakeCost(by_name)
    return Placement(by_name, {v.name: v for v in vms}, rules, cost, cost_weight), cost


def _row(rows: list[dict], host: str) -> dict:
    return next(r for r in rows if r["host"] == host)


def test_a_vm_that_does_not_fit_is_refused_with_the_numbers():
    hosts = [_host("a"), _host("b", gib=4), _host("c", state="maintenance"),
             _host("d", state="degraded")]
    p, cost = _placement(hosts, [_vm("big", "a", 1.2), _vm("fill", "b", 3.5)])
    rows = p.candidates("big")
    assert [r["host"] for r in rows] == ["b", "c", "d"], rows
    b = _row(rows, "b")
    assert not b["fits"] and b["rules_ok"], b
    assert b["why_not"] == "memory: 1.2 GiB needed, 0.5 GiB free", b
    assert b["score"] is None and b["time_s"] is None and b["bytes"] is None, b
    assert _row(rows, "c")["why_not"] == "in maintenance"
    assert _row(rows, "d")["why_not"] == "degraded"
    assert cost.calls == [], "the cost is computed for eligible hosts only"
    decision = p.choose("big", "scheduled")
    assert decision["chosen"] is None and p.where()["big"] == "a", decision
    assert "no eligible host" in decision["why"] and "0.5 GiB free" in decision["why"], decision


def test_cpu_is_a_capacity_too():
    p, _ = _placement([_host("a"), _host("b", cpu=2.0)],
                      [_vm("v", "a", 1, cpu=1.5), _vm("w", "b", 1, cpu=1.0)])
    b = _row(p.candidates("v"), "b")
    assert not b["fits"] and b["why_not"] == "cpu: 1.50 needed, 1.00 free", b


def test_anti_affinity_keeps_the_vms_apart():
    rule = Rule("anti-affinity", ("v1", "v2"), name="sep")
    p, _ = _placement([_host("a"), _host("b"), _host("c", gib=64)],
                      [_vm("v1", "a", 4), _vm("v2", "b", 1)], (rule,))
    b = _row(p.candidates("v1"), "b")
    assert not b["rules_ok"] and b["fits"], b
    assert b["why_not"] == "anti-affinity rule 'sep' with v2 on it", b
    assert p.choose("v1", "scheduled")["chosen"] == "c"


def test_affinity_moves_a_member_only_toward_its_partners():
    rule = Rule("affinity", ("v1", "v3"), name="together")
    p, _ = _placement([_host("a"), _host("b", gib=8), _host("c", gib=64)],
                      [_vm("v1", "a", 2), _vm("v3", "b", 4)], (rule,))
    rows = p.candidates("v1")
    assert _row(rows, "b")["rules_ok"], rows
    c = _row(rows, "c")
    assert not c["rules_ok"] and c["why_not"] == "affinity rule 'together': v3 runs on b", c
    # c (empty, large) would balance better; the rule sends v1 to its partner
    decision = p.choose("v1", "scheduled")
    assert decision["chosen"] == "b" and p.where() == {"v1": "b", "v3": "b"}, decision


def test_vm_host_rule_allows_only_its_hosts():
    rule = Rule("vm-host", ("v1",), hosts=("a", "c"), name="pin")
    p, _ = _placement([_host("a"), _host("b", gib=64), _host("c")],
                      [_vm("v1", "a", 2)], (rule,))
    b = _row(p.candidates("v1"), "b")
    assert b["why_not"] == "vm-host rule 'pin' allows only a, c", b
    assert p.choose("v1", "scheduled")["chosen"] == "c"
    refused = p.to_named("v1", "b", "scheduled")
    assert refused["chosen"] is None and "allows only a, c" in refused["why"], refused
    assert p.where()["v1"] == "c"


def test_a_same_site_host_wins_over_an_equally_balanced_remote_one():
    p, _ = _placement([_host("a"), _host("near"), _host("far", site="s2")],
                      [_vm("m", "a", 4), _vm("anchor", "a", 8)])
    rows = p.candidates("m")
    near, far = _row(rows, "near"), _row(rows, "far")
    assert near["imbalance_after"] == pytest.approx(far["imbalance_after"], abs=1e-9)
    assert (near["time_s"], far["time_s"]) == (4.0, 20.0)
    assert near["score"] == pytest.approx(near["imbalance_after"] + 0.04, abs=1e-6), near
    assert p.choose("m", "scheduled")["chosen"] == "near"


@pytest.mark.parametrize(("weight", "winner"), [(0.05, "near"), (0.01, "far"), (0.001, "far")])
def test_the_cost_weight_trades_balance_against_migration_time(weight, winner):
    # a 12 GiB (0.75), near 6 GiB (0.375), far empty. m (4 GiB) to near: loads .5, .625, 0
    # (sd 0.27003, 4 s); to far: .5, .375, .25 (sd 0.10206, 20 s).
    p, _ = _placement([_host("a"), _host("near"), _host("far", site="s2")],
                      [_vm("m", "a", 4), _vm("anchor", "a", 8), _vm("busy", "near", 6)],
                      cost_weight=weight)
    rows = p.candidates("m")
    assert _row(rows, "near")["imbalance_after"] == pytest.approx(0.270031, abs=1e-6)
    assert _row(rows, "far")["imbalance_after"] == pytest.approx(0.102062, abs=1e-6)
    decision = p.choose("m", "scheduled")
    assert decision["chosen"] == winner, (weight, rows)


def test_evacuate_spreads_largest_first_within_capacity():
    hosts = [_host("h0", gib=32), _host("h1", gib=10), _host("h2", gib=10)]
    vms = [_vm("v2", "h0", 2), _vm("v6", "h0", 6), _vm("v3", "h0", 3), _vm("v5", "h0", 5)]
    p, _ = _placement(hosts, vms)
    with pytest.raises(ConfigError):
        p.evacuate("h0")                      # still normal
    p.set_state("h0", "maintenance")
    decisions = p.evacuate("h0")
    assert [d["vm"] for d in decisions] == ["v6", "v5", "v3", "v2"], decisions
    assert all(d["action"] == "evacuate" and d["reason"] == "evacuate" for d in decisions)
    assert all(d["chosen"] in ("h1", "h2") for d in decisions), decisions
    where = p.where()
    assert {vm: where[vm] for vm in ("v6", "v2")} == {"v6": "h1", "v2": "h1"}, where
    assert {vm: where[vm] for vm in ("v5", "v3")} == {"v5": "h2", "v3": "h2"}, where
    assert p.loads() == pytest.approx({"h0": 0.0, "h1": 0.8, "h2": 0.8}), p.loads()
    assert p.imbalance() == pytest.approx(0.0, abs=1e-12)


def test_a_vm_that_fits_nowhere_stays_with_chosen_none():
    p, _ = _placement([_host("h0", gib=32), _host("h1", gib=10), _host("h2", gib=10)],
                      [_vm("huge", "h0", 12), _vm("small", "h0", 1)])
    p.set_state("h0", "degraded")
    decisions = p.evacuate("h0")
    huge = next(d for d in decisions if d["vm"] == "huge")
    assert huge["chosen"] is None, huge
    assert "h1 memory: 12.0 GiB needed, 10.0 GiB free" in huge["why"], huge
    assert p.where() == {"huge": "h0", "small": "h1"}, p.where()


def test_named_destination_applies_when_eligible():
    p, _ = _placement([_host("a"), _host("b"), _host("c", state="maintenance")],
                      [_vm("v", "a", 2)])
    refused = p.to_named("v", "c", "scheduled")
    assert refused["chosen"] is None and refused["why"].endswith("in maintenance"), refused
    assert [r["host"] for r in refused["candidates"]] == ["c"]
    done = p.to_named("v", "b", "scheduled")
    assert done["chosen"] == "b" and done["action"] == "named" and p.where()["v"] == "b", done
    assert p.to_named("v", "b", "scheduled")["chosen"] is None      # already there
    with pytest.raises(ConfigError):
        p.to_named("v", "nowhere", "scheduled")


def _crowded() -> Placement:
    hosts = [_host(f"h{i}") for i in range(1, 5)]
    return _placement(hosts, [_vm(f"v{i}", "h1", 2) for i in range(6)])[0]


def test_rebalance_reaches_the_level_3_target_and_counts_its_moves():
    # six 2 GiB / 1 cpu VMs on h1: loads .75, 0, 0, 0 -> sd 0.32476; target 0.1 (N = 4).
    # Greedy: (5,1,0,0) sd .2577, (4,1,1,0) .1875, (3,1,1,1) .1083, (2,2,1,1) .0625: 4 moves.
    p = _crowded()
    assert p.imbalance() == pytest.approx(0.324760, abs=1e-6)
    records = p.rebalance(3)
    moves, summary = records[:-1], records[-1]
    assert summary["action"] == "rebalance-summary" and summary["vm"] is None, summary
    assert summary["moves"] == len(moves) == 4, records
    assert summary["reached"] and summary["target"] == pytest.approx(0.1), summary
    assert summary["imbalance_before"] == pytest.approx(0.324760, abs=1e-6)
    assert summary["imbalance_after"] == pytest.approx(0.0625, abs=1e-6) == p.imbalance()
    for record in moves:
        assert record["reason"] == "rebalance" and record["source"] == "h1", record
        assert record["imbalance_after"] < record["imbalance_before"] - 1e-6, record
    assert sorted(p.where().values()).count("h1") == 2, p.where()


def test_rebalance_at_level_5_stops_when_no_move_helps():
    records = _crowded().rebalance(5)
    summary = records[-1]
    assert summary["moves"] == 4 and not summary["reached"], summary
    assert "no move lowers the imbalance" in summary["why"], summary


def test_rebalance_respects_max_moves():
    summary = _crowded().rebalance(3, max_moves=2)[-1]
    assert summary["moves"] == 2 and not summary["reached"], summary
    assert summary["imbalance_after"] == pytest.approx(0.1875, abs=1e-6), summary


def test_level_1_balances_nothing():
    p = _crowded()
    before = p.where()
    assert p.rebalance(1) == []
    assert p.where() == before


def test_decision_records_are_json():
    p = _crowded()
    records = [p.choose("v0", "scheduled"), p.to_named("v1", "h3", "scheduled"),
               p.to_named("v2", "h1", "scheduled")]
    p.set_state("h4", "maintenance")
    records += p.evacuate("h4") + p.rebalance(4)
    text = json.dumps(records, allow_nan=False)
    assert json.loads(text) == records
    keys = {"action", "reason", "vm", "source", "chosen", "why", "imbalance_before",
            "imbalance_after", "target", "candidates"}
    assert all(keys <= set(r) for r in records), [set(r) for r in records]


@pytest.mark.parametrize(("rules", "path"), [
    ((Rule("affinity", ("v1", "ghost")),), "drs.rules[0].vms"),
    ((Rule("anti-affinity", ("v1",)), Rule("vm-host", ("v1",), hosts=("b", "x"))),
     "drs.rules[1].hosts"),
    ((Rule("vm-host", ("v1",)),), "drs.rules[0].hosts"),
    ((Rule("together", ("v1",)),), "drs.rules[0].kind"),
])
def test_rules_naming_unknown_vms_or_hosts_are_refused(rules, path):
    with pytest.raises(ConfigError) as err:
        _placement([_host("a"), _host("b")], [_vm("v1", "a", 1)], rules)
    assert err.value.path == path, err.value


def test_bad_host_of_a_vm_and_bad_weight_are_refused():
    with pytest.raises(ConfigError, match="vms.v1.host"):
        _placement([_host("a")], [_vm("v1", "nowhere", 1)])
    with pytest.raises(ConfigError, match="drs.cost_weight"):
        _placement([_host("a")], [_vm("v1", "a", 1)], cost_weight=-1.0)
    assert math.isclose(_placement([_host("a")], [])[0].imbalance(), 0.0)


def test_small_vms_are_sized_in_mib():
    p, _ = _placement([_host("a"), _host("b", gib=0.25)], [_vm("v", "a", 0.375)])
    assert _row(p.candidates("v"), "b")["why_not"] == "memory: 384 MiB needed, 256 MiB free"


def test_an_unnamed_rule_is_named_by_its_index():
    rules = (Rule("vm-host", ("v",), hosts=("a", "b")), Rule("anti-affinity", ("v", "w")))
    p, _ = _placement([_host("a"), _host("b"), _host("c")],
                      [_vm("v", "a", 1), _vm("w", "b", 1)], rules)
    rows = p.candidates("v")
    assert _row(rows, "b")["why_not"] == "anti-affinity rule #1 with w on it", rows
    assert _row(rows, "c")["why_not"] == "vm-host rule #0 allows only a, b", rows
    assert p.choose("v", "scheduled")["chosen"] is None
