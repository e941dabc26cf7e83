"""Faults injected into a small run (64 MiB VM, 50 ms, 100 Mbit/s): a WAN outage the migration
rides out, and a destination killed at the pause that leaves the VM at home; in both, the
invariants are checked and nothing is left behind."""

from __future__ import annotations

import json
import os

import pytest

from experiments.runner import VM_NAME, run_experiment
from experiments.spec import parse_experiment
from migrator.guest.image import leftover_segments
from tests.integration.helpers import assert_nothing_left
from topologies.cleanup import node_shells

pytestmark = [pytest.mark.root, pytest.mark.slow]

OUTAGE_S = 2.0


def spec_with(name, fault):
    return parse_experiment({
        "name": name,
        "topology": {"wan": [{"between": ["dc1", "dc2"], "rtt_ms": 50, "bw_mbps": 100}]},
        "vm": {"memory": "64MiB", "workload": "web"},
        "clients": {"kv_ops": 400, "kv_rate_hz": 10},
        "schedule": {"warmup_s": 3, "cooldown_s": 4},
        "faults": [fault]})


def check_clean(spec, m, context):
    assert m["invariants"]["leftovers"] == [], context
    assert_nothing_left(spec.topology)
    assert not node_shells([VM_NAME]), "the VM's namespace is still there"
    # This run's images only (the runner names them after its pid): tests of other parts may
    # hold images of their own on this machine meanwhile.
    mine = [n for n in leftover_segments() if n.startswith(f"wanmig-r{os.getpid() % 100000}-")]
    assert not mine, f"VM memory left in /dev/shm: {mine}"


def test_a_wan_outage_in_live_round_1_is_ridden_out(choice, tmp_path):
    spec = spec_with("ifaultout", {"kind": "wan-outage", "phase": "live", "round": 1,
                                   "duration_s": OUTAGE_S})
    out = tmp_path / "run"
    m = run_experiment(spec, out)
    context = json.dumps({k: v for k, v in m.items() if k != "links"}, indent=1, default=str)
    (f,) = m["faults"]
    assert (f["kind"], f["phase"], f["round"], f["error"]) == ("wan-outage", "live", 1, None), \
        context
    assert f["applied"]["relay"]["cut"] is True and f["undone"]["relay"]["cut"] is False, context
    # Undone by the injector's thread, which wakes every 20 ms: 0.1 s is five ticks.
    assert abs(f["ended_t"] - f["fired_t"] - OUTAGE_S) < 0.1, context
    stats = json.loads((out / "net" / "wl1-stats.json").read_text())
    dropped = stats["a_to_b"]["drop_fault"] + stats["b_to_a"]["drop_fault"]
    assert dropped > 0, f"the delay line dropped nothing while cut: {stats}\n{context}"
    # TCP recovered: the migration completed, and it could not have while the WAN was down.
    assert m["outcome"] == "completed" and m["integrity_ok"] is True, context
    assert m["migration_end_t"] >= f["fired_t"] + OUTAGE_S, context
    inv = m["invariants"]
    assert inv["held"] is True and inv["vm_site"] == "dc2", context
    assert inv["lost_writes"] == 0 and inv["acked_writes"] > 0, context
    check_clean(spec, m, context)


def test_a_destination_killed_at_stop_copy_leaves_the_vm_at_the_source(choice, tmp_path):
    spec = spec_with("ifaultkill", {"kind": "kill-destination", "phase": "stop-copy"})
    m = run_experiment(spec, tmp_path / "run")
    context = json.dumps({k: v for k, v in m.items() if k != "links"}, indent=1, default=str)
    (f,) = m["faults"]
    assert (f["kind"], f["phase"], f["error"]) == ("kill-destination", "stop-copy", None), context
    assert f["applied"]["killed_pid"] > 0, context
    assert m["outcome"] == "aborted", context
    inv = m["invariants"]
    assert inv["one_site"] is True and inv["vm_site"] == "dc1", context
    assert inv["split_brain"] is False and inv["reachable"] is True, context
    assert inv["lost_writes"] == 0 and inv["acked_writes"] > 0, context
    assert inv["evidence"]["guest"]["tag"] == "src", context
    assert m["site_after"] == "dc1", context
    check_clean(spec, m, context)
