"""A VM crossing two WAN links: three sites in a line, a leaf-spine fabric in the middle, the VM
migrated from the first site to the last. The runner, the metrics and the report work for any
number of WAN links (before, a second link crashed the run after the migration completed)."""

from __future__ import annotations

import json

import pytest

from experiments.runner import VM_NAME, run_experiment
from experiments.spec import parse_experiment
from migrator.guest.image import leftover_segments
from tests.integration.helpers import assert_nothing_left
from topologies.cleanup import node_shells

pytestmark = [pytest.mark.root, pytest.mark.slow]

RTTS_MS = (40.0, 60.0)


def three_site_spec():
    return parse_experiment({
        "name": "itest3",
        "topology": {
            "name": "three-sites",
            "sites": [{"name": "dc1"},
                      {"name": "dc2", "fabric": {"kind": "leaf-spine", "leaves": 2,
                                                 "spines": 2}},
                      {"name": "dc3"}],
            "wan": [{"between": ["dc1", "dc2"], "rtt_ms": RTTS_MS[0], "bw_mbps": 100},
                    {"between": ["dc2", "dc3"], "rtt_ms": RTTS_MS[1], "bw_mbps": 100}],
            "controller": {"site": "dc2"}},
        "vm": {"memory": "32MiB", "workload": "web"},
        "placement": {"source": "dc1h1", "destination": "dc3h1"},
        "clients": {"host": "dc3c1", "kv_ops": 20, "kv_rate_hz": 10},
        "schedule": {"warmup_s": 3, "cooldown_s": 3}})


def test_vm_crosses_two_wan_links_and_the_run_writes_its_metrics(choice, tmp_path):
    from experiments.plot import plot_run, write_report

    spec = three_site_spec()
    out = tmp_path / "run"
    m = run_experiment(spec, out)
    context = json.dumps(m, indent=1, default=str)
    stored = json.loads((out / "metrics.json").read_text())
    assert stored["outcome"] == m["outcome"] == "completed", context
    assert m["integrity_ok"] is True and m["kv_readback"] > 0, context
    assert (m["site_before"], m["site_after"]) == ("dc1", "dc3"), context
    # Per link: both measured, in link order; the path's figures sum the RTTs.
    checks = json.loads((out / "linkcheck.json").read_text())
    assert [c["link"] for c in checks] == [1, 2], checks
    assert [lk["link"] for lk in m["links"]] == [1, 2] and m["link_path"] == [1, 2], context
    for lk, rtt in zip(m["links"], RTTS_MS, strict=True):
        assert lk["rtt_ms_configured"] == rtt and lk["ok"] is True, context
        assert abs(lk["rtt_ms_measured"] - rtt) <= max(1.0, 0.02 * rtt), context
    total = sum(RTTS_MS)
    assert m["link_rtt_ms_configured"] == total, context
    # Each link's measurement carries its own tolerance; the path sums two of them.
    assert abs(m["link_rtt_ms_measured"] - total) <= 2 * max(1.0, 0.02 * max(RTTS_MS)), context
    assert m["link_bw_mbps"] == 100 and m["predicted_total_time_s"] is not None, context
    written = plot_run(out) + [write_report(out)]
    assert all(p.stat().st_size > 0 for p in written), written
    report = (out / "report.md").read_text()
    assert "## WAN links" in report and "dc2h1 - dc3h1" in report, report
    assert_nothing_left(spec.topology)
    assert not node_shells([VM_NAME]), "the VM's namespace is still there"
    assert not leftover_segments(), "VM memory left in /dev/shm"
