"""A small experiment end to end (32 MiB VM, 50 ms RTT): every file and metric, consistent,
plots made, nothing left behind."""

from __future__ import annotations

import json

import pytest

from experiments.runner import VM_NAME, run_experiment
from experiments.spec import parse_experiment
from migrator.guest.image import leftover_segments
from tests.integration.helpers import assert_nothing_left, leftovers, run_until
from topologies.cleanup import node_shells

pytestmark = [pytest.mark.root, pytest.mark.slow]

RTT_MS, BW_MBPS, PROBE_MS = 50.0, 100.0, 10.0


def small_spec():
    return parse_experiment({
        "name": "itest",
        "topology": {"wan": [{"between": ["dc1", "dc2"], "rtt_ms": RTT_MS,
                              "bw_mbps": BW_MBPS}]},
        "vm": {"memory": "32MiB", "workload": "web"},
        "clients": {"kv_ops": 30, "kv_rate_hz": 10, "probe_ms": PROBE_MS},
        "schedule": {"warmup_s": 3, "cooldown_s": 3}})


def test_small_run_end_to_end(choice, tmp_path):
    from experiments.plot import plot_run, write_report

    spec = small_spec()
    out = tmp_path / "run"
    m = run_experiment(spec, out)
    context = json.dumps(m, indent=1, default=str)
    for name in ("config.yaml", "meta.json", "metrics.json", "migration/rounds.csv",
                 "probes.csv", "kv.csv", "controller_events.jsonl", "linkcheck.json"):
        assert (out / name).stat().st_size > 0, f"{name} missing or empty\n{context}"
    assert m["outcome"] == "completed", context
    assert m["integrity_ok"] is True and m["kv_readback"] > 0, context
    assert m["site_before"] == "dc1" and m["site_after"] == "dc2", context
    assert m["link_backend"] == json.loads((out / "meta.json").read_text())["link_backend"]
    assert abs(m["link_rtt_ms_measured"] - RTT_MS) <= 1.0, context
    assert [lk["link"] for lk in m["links"]] == [1] and m["link_path"] == [1], context
    # The client is at the destination: its last reply before the pause was in flight for a
    # one-way WAN delay, the first after the resume is local. So the gap it sees may be
    # shorter than the VM's downtime by up to that delay (and one probe interval).
    assert m["client_outage_ms"] >= m["downtime_ms"] - RTT_MS / 2 - PROBE_MS, context
    # Nothing faster than the link: the bytes sent need at least bytes / rate.
    assert m["total_time_s"] >= m["bytes_on_wire"] * 8 / (BW_MBPS * 1e6), context
    assert m["flow_convergence_ms"] is not None and m["flow_convergence_ms"] > 0, context
    assert m["vm_memory_bytes"] == 32 * 2**20, context
    if choice.ovs_datapath == "user":
        # The switch must not be where frames are lost (a link without loss was asked for).
        # Tolerance: a handful of frames; without the ports' buffers it was hundreds per run.
        assert m["fabric_drops"] is not None and m["fabric_drops"] <= 10, context
    written = plot_run(out) + [write_report(out)]
    assert all(p.stat().st_size > 0 for p in written), written
    # The testbed's own load: sampled all along, and a small run leaves the machine cores idle.
    assert (out / "testbed_cpu.csv").stat().st_size > 0, context
    assert m["testbed_bound"] is False, context
    assert 0.1 <= m["testbed_cpu_idle_min"] <= 1.0, context
    assert "Testbed-bound" not in (out / "report.md").read_text()
    assert_nothing_left(spec.topology)
    assert not node_shells([VM_NAME]), "the VM's namespace is still there"
    assert not leftover_segments(), "VM memory left in /dev/shm"


def test_a_run_on_a_saturated_machine_says_it_was_testbed_bound(choice, tmp_path):
    """Every core kept busy by a spinning process (at the lowest priority, so the run itself
    hardly slows): the migration had no idle core, and its metrics and report say so."""
    import os
    import subprocess
    import sys

    spin = "import os, time\nos.nice(19)\nt = time.time() + 600\nwhile time.time() < t: pass\n"
    hogs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(os.cpu_count() or 1)]
    try:
        out = tmp_path / "run"
        m = run_experiment(small_spec(), out)
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    context = json.dumps({k: m.get(k) for k in ("outcome", "testbed_bound",
                                                 "testbed_bound_share", "testbed_cpu_idle_min",
                                                 "testbed_cpu", "testbed_window_s")}, indent=1)
    assert m["outcome"] == "completed", context
    assert m["testbed_bound"] is True, context
    assert m["testbed_cpu_idle_min"] < 0.1, context
    assert m["testbed_cpu"]["other"] > 0.5, context       # the spinning processes
    from experiments.plot import write_report

    assert "**Testbed-bound**" in write_report(out).read_text().split("\n", 4)[2], context
    assert_nothing_left(small_spec().topology)
    assert not node_shells([VM_NAME]), "the VM's namespace is still there"
    assert not leftover_segments(), "VM memory left in /dev/shm"


def test_bad_spec_is_refused_before_anything_starts(tmp_path):
    from ground.config import ConfigError

    with pytest.raises(ConfigError, match=r"schedule\.migrate_back"):
        run_experiment(parse_experiment({"schedule": {"migrate_back": True}}), tmp_path / "r")
    assert not (tmp_path / "r").exists()
    assert not any(leftovers(parse_experiment({}).topology).values())


@pytest.mark.parametrize("phase", ["warm-up", "migrating"])
def test_ctrl_c_during_a_run_leaves_nothing(choice, tmp_path, phase):
    """SIGINT in the warm-up or in the middle of the migration: exit 130, metrics.json says
    so, no namespace, bridge, process or VM memory left."""
    import signal
    import subprocess
    import sys
    import time

    import yaml

    spec_file = tmp_path / "small.yaml"
    spec_file.write_text(yaml.safe_dump({
        "name": "itestint",
        "topology": {"wan": [{"between": ["dc1", "dc2"], "rtt_ms": RTT_MS,
                              "bw_mbps": 20}]},
        "vm": {"memory": "64MiB", "workload": "web"},
        "schedule": {"warmup_s": 5, "cooldown_s": 1}}))
    out = tmp_path / "run"
    proc, seen = run_until([sys.executable, "-m", "wanmig.cli", "run", str(spec_file), "--out",
                            str(out)], phase)
    assert any(phase in line for line in seen), "".join(seen)
    if phase == "migrating":
        time.sleep(1.0)        # into round 0 (64 MiB at 20 Mbit/s takes several seconds)
    proc.send_signal(signal.SIGINT)
    try:
        rest, _ = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    text = "".join(seen) + rest
    assert proc.returncode == 130, text
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["outcome"] == "failed: interrupted", metrics
    topo = small_spec().topology
    assert not any(leftovers(topo).values()), (leftovers(topo), text)
    assert not node_shells([VM_NAME]), text
    assert not leftover_segments(), (leftover_segments(), text)
