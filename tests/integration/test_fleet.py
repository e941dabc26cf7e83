"""Issue 13: a fleet on the emulated WAN. Two 64 MiB web VMs at dc1h1, two hypervisors a site,
50 ms / 250 Mbit/s. At t=0 dc1h1 goes into maintenance: both VMs are evacuated, one to dc1h2
(the cheapest: no WAN, the same switch) and, as an anti-affinity rule keeps them apart, the
other across the WAN. At t=1 web1 is sent on (to: auto): it leaves the host it arrived on as
soon as its first move ended, never for dc1h1 (in maintenance) nor web2's host. Every move
completes verified and measured, the clients lose no write, the WAN's throughput was sampled,
every decision is recorded with its candidates, the report and its figures are written, and
nothing is left behind.
"""

from __future__ import annotations

import csv
import json

import pytest

from experiments.runner import run_experiment
from experiments.spec import parse_experiment
from migrator.guest.image import leftover_segments
from tests.integration.helpers import assert_nothing_left, run_until

pytestmark = [pytest.mark.root, pytest.mark.slow]


def fleet_spec():
    return parse_experiment({
        "name": "itest-fleet",
        "topology": {"sites": [{"name": "dc1", "hypervisors": 2, "clients": 1},
                               {"name": "dc2", "hypervisors": 2, "clients": 1}],
                     "wan": [{"between": ["dc1", "dc2"], "rtt_ms": 50, "bw_mbps": 250}]},
        "vm": {"memory": "64MiB", "workload": "web"},
        "vms": [{"name": "web1", "host": "dc1h1"}, {"name": "web2", "host": "dc1h1"}],
        "hosts": {"default": {"memory": "1GiB", "cpu": 4}},
        "drs": {"rules": [{"kind": "anti-affinity", "vms": ["web1", "web2"]}]},
        "policy": {"codec": "lz4"},
        "execution": {"max_concurrent": 2},
        "events": [{"at": 0, "action": "evacuate", "host": "dc1h1"},
                   {"at": 1, "action": "migrate", "vm": "web1", "to": "auto"}],
        "clients": {"host": "dc2c1", "kv_ops": 30, "kv_rate_hz": 10},
        "schedule": {"warmup_s": 3, "cooldown_s": 3}})


def test_a_fleet_is_evacuated_then_one_vm_moves_again(choice, tmp_path):
    spec = fleet_spec()
    out = tmp_path / "run"
    m = run_experiment(spec, out)
    context = json.dumps({k: v for k, v in m.items() if k != "links"}, indent=1, default=str)
    moves = list(csv.DictReader(open(out / "fleet" / "moves.csv")))
    context += "\n" + json.dumps(moves, indent=1)
    assert m["outcome"] == "completed" and m["integrity_ok"] is True, context
    assert m["moves_completed"] == 3 and m["lost_writes_total"] == 0, context
    first = {r["vm"]: r["destination"] for r in moves if r["move"] == "1"}
    assert set(first) == {"web1", "web2"}, context
    assert sorted(first.values())[0] == "dc1h2" and sorted(first.values())[1] in \
        ("dc2h1", "dc2h2"), context
    again = [r for r in moves if r["vm"] == "web1" and r["move"] == "2"]
    assert again and again[0]["source"] == first["web1"], context
    assert again[0]["destination"] not in ("dc1h1", first["web2"]), context
    assert m["placement_after"] == {"web1": again[0]["destination"], "web2": first["web2"]}, \
        context
    for r in moves:        # measured, each of them
        assert float(r["total_time_s"]) > 0 and 0 < float(r["downtime_ms"]) < 1000, context
        assert float(r["bytes_on_wire"]) > 0 and r["predicted_time_s"], context
    # web1 could not start its second move before its first ended
    assert float(again[0]["start_t"]) >= float(
        next(r for r in moves if r["vm"] == "web1" and r["move"] == "1")["end_t"]), context
    assert m["makespan_s"] > 0 and m["predicted_makespan_s"] > 0, context
    assert m["makespan_lower_bound_s"] <= m["predicted_makespan_s"] + 1e-6, context
    decisions = [json.loads(line) for line in open(out / "decisions.jsonl")]
    evac = [d for d in decisions if d["event"] == "evacuate"]
    assert len(evac) == 2 and all(d["candidates"] for d in evac), decisions
    wan = list(csv.DictReader(open(out / "fleet" / "wan.csv")))
    assert max(float(r["mbps"]) for r in wan) > 20, "the WAN sampler saw no migration"
    from experiments.plot import plot_run, write_report

    plot_run(out)
    report = write_report(out).read_text()
    assert "## Fleet" in report and "web1" in report, report
    for name in ("gantt", "host_load", "wan"):
        assert (out / f"{name}.png").stat().st_size > 1000, name
    left = [s for s in leftover_segments() if "web" in s]
    assert left == [], f"VM memory left in /dev/shm: {left}"
    assert_nothing_left(spec.topology)


def test_one_failed_migration_leaves_its_vm_at_the_source_and_the_others_go_on(choice,
                                                                                  tmp_path):
    """web2's own policy caps it at 5 Mbit/s and aborts it after 2 s: its migration fails, it
    goes on running at dc1h1 (answering there, losing nothing), while web1's completes."""
    spec = parse_experiment({
        "name": "itest-fleet-fail",
        "topology": {"wan": [{"between": ["dc1", "dc2"], "rtt_ms": 50, "bw_mbps": 250}]},
        "vm": {"memory": "64MiB", "workload": "web"},
        "vms": [{"name": "web1", "host": "dc1h1"},
                {"name": "web2", "host": "dc1h1",
                 "policy": {"max_bandwidth_mbps": 5, "time_budget_s": 2, "on_budget": "abort"}}],
        "policy": {"codec": "lz4"},
        "events": [{"at": 0, "action": "evacuate", "host": "dc1h1"}],
        "clients": {"kv_ops": 30, "kv_rate_hz": 10},
        "schedule": {"warmup_s": 3, "cooldown_s": 3}})
    out = tmp_path / "run"
    m = run_experiment(spec, out)
    moves = {r["vm"]: r for r in csv.DictReader(open(out / "fleet" / "moves.csv"))}
    context = json.dumps({k: v for k, v in m.items() if k != "links"}, indent=1, default=str) \
        + "\n" + json.dumps(moves, indent=1)
    assert moves["web1"]["outcome"] == "completed", context
    assert moves["web2"]["outcome"].startswith("failed"), context
    assert m["moves_completed"] == 1 and m["moves_failed"] == 1, context
    assert m["placement_after"] == {"web1": "dc2h1", "web2": "dc1h1"}, context
    assert m["lost_writes_total"] == 0 and m["kv_integrity_ok"] is True, context
    probes = list(csv.DictReader(open(out / "vms" / "web2" / "probes.csv")))
    answered = [r for r in probes if r["t_reply"]]
    assert answered and answered[-1]["site"] == "dc1", "web2 does not answer at dc1 any more"
    assert [s for s in leftover_segments() if "web" in s] == []
    assert_nothing_left(spec.topology)


def test_ctrl_c_in_the_middle_of_a_fleets_migrations_leaves_nothing(choice, tmp_path):
    """SIGINT while two migrations run side by side: exit status 130, and no network, no VM
    memory, no guest or migrator process is left."""
    import signal
    import subprocess
    import sys
    import time

    import yaml

    from experiments.spec import resolved_dict

    spec = fleet_spec()
    cfg = tmp_path / "fleet.yaml"
    cfg.write_text(yaml.safe_dump(resolved_dict(spec)))
    proc, seen = run_until([sys.executable, "-m", "wanmig.cli", "run", str(cfg), "--out",
                            str(tmp_path / "run")], "migrating web2")
    assert "migrating web2" in "".join(seen), "".join(seen)
    time.sleep(1.0)                         # both migrations under way
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, "".join(seen) + out
    assert [s for s in leftover_segments() if "web" in s] == []
    running = subprocess.run(["pgrep", "-af", "migrator.guest.process|wanmig.cli migrate-"],
                             capture_output=True, text=True).stdout
    assert running == "", running
    assert_nothing_left(spec.topology)
