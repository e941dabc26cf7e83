"""A VM's disk in the figures, the run's report and the sweep's summary, from small synthetic
run folders (the run_small fixture with a disk's files added) on tmp dirs."""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from experiments import plotdisk
from experiments.plot import plot_run, plot_sweep, sweep_series, write_report
from experiments.summary import (
    DISK_LATENCY,
    DISK_METRICS,
    disk_latency_columns,
    read_summary,
    write_summary,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
MIB = 2 ** 20
OFFSET = 900.0          # disk.json's wall_minus_monotonic: guest clock + OFFSET = wall clock


def latency(p50: float, n: int = 10) -> dict:
    return {"n": n, "failed": 0, "p50_ms": p50, "p95_ms": p50 * 2, "p99_ms": p50 * 3,
            "mean_ms": p50 * 1.1}


def disk_metrics(policy: str, *, write_p50_during: float = 40.0) -> dict:
    """The disk's keys of a run's metrics.json (experiments.diskrun), made up."""
    return {
        "storage_policy": policy, "disk_size": 256 * MIB, "disk_allocated": 128 * MIB,
        "disk_block_bytes": 65536,
        "disk_workload": {"write_rate_mibps": 10.0, "read_rate_mibps": 2.0,
                          "working_set_frac": 0.1, "skew": "zipf", "zipf_s": 1.0},
        "disk_bytes_on_wire": 8 * MIB, "disk_bytes_raw": 16 * MIB,
        "disk_sectors_sent": 4096, "disk_sectors_resent": 512, "disk_bulk_s": 0.75,
        "disk_writes": 300, "disk_reads": 60, "disk_lost_writes": 0, "disk_verify_lost": 0,
        "disk_lost_writes_total": 0, "disk_mirror_writes": 58, "disk_remote_reads": 0,
        "disk_write_mibps": 9.5, "disk_read_mibps": 1.9, "disk_verified_blocks": 2201,
        "predicted_lower_bound_s": 1.25,
        "disk_latency": {"before": {"write": latency(0.15), "read": latency(0.03)},
                         "during": {"write": latency(write_p50_during, 84), "read": None},
                         "after": {"write": latency(0.06), "read": latency(0.03)}},
    }


def disk_run(tmp_path: Path, policy: str = "write-blocking") -> Path:
    """run_small with a disk: its metrics, disk.json, disk_io.csv (the guest's clock) and the
    disk's share of each round in rounds.csv (half of round 0, none after)."""
    run = tmp_path / "run"
    shutil.copytree(FIXTURES / "run_small", run)
    metrics = json.loads((run / "metrics.json").read_text())
    metrics.update(disk_metrics(policy))
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "disk.json").write_text(json.dumps({"writes": 3, "wall_minus_monotonic": OFFSET}))
    start = metrics["migration_start_t"]            # 1000.0: the guest's clock reads 100.0
    (run / "disk_io.csv").write_text(
        "t,op,block,latency_s,ok,path\n"
        f"{start - OFFSET - 1.0:.6f},w,1,0.0001000,1,local\n"
        f"{start - OFFSET + 0.5:.6f},w,2,0.1500000,1,mirror\n"
        f"{start - OFFSET + 0.6:.6f},r,2,0.0000300,1,local\n"
        f"{start - OFFSET + 2.0:.6f},w,3,0.0000000,0,local\n")
    rounds_file = run / "migration" / "rounds.csv"
    with open(rounds_file, newline="") as fh:
        rows = list(csv.DictReader(fh))
    rows[0]["disk_bytes_on_wire"] = str(int(rows[0]["bytes_on_wire"]) // 2)
    with open(rounds_file, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return run


def test_report_has_the_disk_section_with_its_figures(tmp_path):
    run = disk_run(tmp_path)
    text = write_report(run).read_text()
    assert "## Disk" in text, text
    for line in ("| storage policy | write-blocking |",
                 "| disk size / allocated | 256.0 MiB / 128.0 MiB |",
                 "| block | 64 KiB |",
                 # 8 MiB of the run's 19398656 bytes (18.5 MiB)
                 "| disk bytes on wire | 8.0 MiB (43% of 18.5 MiB in all) |",
                 "| sectors sent / re-sent | 4096 / 512 |",
                 "| bulk copy time | 0.75 s |",
                 "| mirrored writes | 58 |",
                 "| achieved write / read rate | 9.5 / 1.9 MiB/s |",
                 "| lost writes | 0 during the run, 0 at the final check of 2201 blocks: none |",
                 "| predicted lower bound | 1.25 s |",
                 "| phase | op | n | failed | p50 ms | p95 ms | p99 ms | mean ms |",
                 "| during | write | 84 | 0 | 40 | 80 | 120 | 44 |",
                 "| during | read | 0 | 0 | - | - | - | - |",
                 "| after | write | 10 | 0 | 0.06 | 0.12 | 0.18 | 0.066 |"):
        assert line in text, f"{line!r} not in\n{text}"


def test_report_says_when_writes_were_lost(tmp_path):
    run = disk_run(tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    metrics.update(disk_lost_writes=1, disk_verify_lost=2, disk_lost_writes_total=3)
    (run / "metrics.json").write_text(json.dumps(metrics))
    text = write_report(run).read_text()
    assert "| lost writes | 1 during the run, 2 at the final check of 2201 blocks: 3 LOST |" \
        in text, text


def test_report_without_a_disk_has_no_disk_section(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FIXTURES / "run_small", run)
    text = write_report(run).read_text()
    assert "Disk" not in text and "disk" not in text, text
    assert "| client outage | 251 ms |" in text


def test_write_latencies_are_on_the_timeline_clock(tmp_path):
    run = disk_run(tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    writes = plotdisk.write_latencies(run, metrics)
    assert writes is not None
    # t = guest clock + wall_minus_monotonic - migration_start_t; reads left out; a 0 s
    # latency drawn at the log scale's floor
    got = [(round(w.t, 6), round(w.ms, 6), w.ok, w.path) for w in writes]
    assert got == [(-1.0, 0.1, True, "local"), (0.5, 150.0, True, "mirror"),
                   (2.0, plotdisk.MIN_LATENCY_MS, False, "local")]


def test_write_latencies_need_the_log_and_the_clock_offset(tmp_path, caplog):
    run = disk_run(tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "disk.json").unlink()
    with caplog.at_level(logging.WARNING, logger="wanmig.plot"):
        assert plotdisk.write_latencies(run, metrics) is None
    assert "wall_minus_monotonic" in caplog.text
    (run / "disk_io.csv").unlink()
    assert plotdisk.write_latencies(run, metrics) is None


def test_disk_share_is_hatched_at_the_top_of_each_round():
    rounds = [{"t_start_s": 0.0, "duration_s": 1.0, "bytes_on_wire": 4 * MIB,
               "disk_bytes_on_wire": 3 * MIB},
              {"t_start_s": 1.0, "duration_s": 0.5, "bytes_on_wire": 2 * MIB,
               "disk_bytes_on_wire": 0}]
    fig, ax = plt.subplots()
    try:
        plotdisk.disk_bars(ax, rounds)
        bars = [(p.get_x(), p.get_y(), p.get_width(), p.get_height()) for p in ax.patches]
        assert bars == [(0.0, 1.0, 1.0, 3.0), (1.0, 2.0, 0.5, 0.0)]
        assert ax.patches[0].get_hatch() == plotdisk.DISK_HATCH
        assert ax.containers[0].get_label() == "disk (50% of the bytes)"
        ax.cla()
        plotdisk.disk_bars(ax, [{**r, "disk_bytes_on_wire": None} for r in rounds])
        assert not ax.patches                    # no disk columns: nothing drawn
    finally:
        plt.close(fig)


def test_timeline_has_the_latency_panel_only_with_a_disk_io_log(tmp_path, monkeypatch):
    drawn = []
    real = plotdisk.latency_panel
    monkeypatch.setattr(plotdisk, "latency_panel",
                        lambda ax, writes: (drawn.append((ax.figure, len(writes))),
                                            real(ax, writes)))
    run = disk_run(tmp_path)
    written = plot_run(run)
    assert sorted(p.name for p in written) == ["timeline.png", "timeline.svg"]
    assert all(p.stat().st_size > 0 for p in written)
    assert len(drawn) == 1 and drawn[0][1] == 3
    assert len(drawn[0][0].axes) >= 4            # rounds, dirty rate, clients, disk (+ twins)
    plot_run(FIXTURES / "run_small", tmp_path)
    assert len(drawn) == 1                       # no disk_io.csv: no panel


def test_disk_latency_flattened_into_columns():
    flat = disk_latency_columns(disk_metrics("background")["disk_latency"])
    assert set(flat) == set(DISK_LATENCY)
    assert flat["disk_write_p50_ms_during"] == 40.0 and flat["disk_write_p95_ms_during"] == 80.0
    assert flat["disk_read_p50_ms_during"] is None            # no read in that phase
    assert flat["disk_write_p50_ms_before"] == 0.15
    assert all(v is None for v in disk_latency_columns(None).values())


POLICIES = {"shared": 50.0, "background": 0.1, "write-blocking": 100.0}


def storage_sweep(tmp_path: Path) -> Path:
    """3 policies x 2 write rates, one run each; a made-up median write latency per policy."""
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    grid = {"policy.storage": list(POLICIES), "vm.disk.workload.write_rate_mibps": [1, 10]}
    (sweep / "config.yaml").write_text(f"name: sweep\ngrid: {json.dumps(grid)}\n")
    base = json.loads((FIXTURES / "run_small" / "metrics.json").read_text())
    for i, (policy, rate) in enumerate((p, r) for p in POLICIES for r in (1, 10)):
        run = sweep / f"sweep-{i:03d}-r0"
        run.mkdir()
        metrics = {**base, **disk_metrics(policy, write_p50_during=POLICIES[policy] * rate)}
        (run / "metrics.json").write_text(json.dumps(metrics))
        (run / "swept.json").write_text(json.dumps({
            "policy.storage": policy, "vm.disk.workload.write_rate_mibps": rate,
            "repetition": 0}))
    return sweep


def test_summary_carries_the_disk_columns(tmp_path):
    sweep = storage_sweep(tmp_path)
    keys, rows = read_summary(write_summary(sweep))
    assert keys == ["policy.storage", "vm.disk.workload.write_rate_mibps"]
    header = (sweep / "summary.csv").read_text().splitlines()[0].split(",")
    assert set(DISK_METRICS) | set(DISK_LATENCY) <= set(header)
    got = {(r["storage_policy"], r["vm.disk.workload.write_rate_mibps"]):
           (r["disk_write_p50_ms_during"], r["disk_write_p95_ms_during"], r["disk_bytes_on_wire"])
           for r in rows}
    assert got[("background", 10)] == (1.0, 2.0, 8 * MIB)
    assert got[("write-blocking", 1)] == (100.0, 200.0, 8 * MIB)


def test_storage_overview_has_a_line_per_policy(tmp_path):
    sweep = storage_sweep(tmp_path)
    write_summary(sweep)
    keys, rows = read_summary(sweep / "summary.csv")
    x_key, series = sweep_series(plotdisk.storage_keys(keys), rows, "disk_write_p50_ms_during")
    assert x_key == "vm.disk.workload.write_rate_mibps"
    assert {label: [(x, y) for x, y, _, _ in pts] for label, pts in series.items()} == {
        "storage_policy=shared": [(1, 50.0), (10, 500.0)],
        "storage_policy=background": [(1, 0.1), (10, 1.0)],
        "storage_policy=write-blocking": [(1, 100.0), (10, 1000.0)]}
    written = plot_sweep(sweep)
    names = {p.name for p in written}
    assert {"storage_overview.png", "storage_overview.svg"} <= names
    assert all(p.stat().st_size > 0 for p in written)
    report = write_report(sweep).read_text()
    assert "![storage_overview](storage_overview.png)" in report
    # the table's disk columns: bytes on wire, write p50 during, lost writes
    assert "| disk_bytes_on_wire | disk_write_p50_ms_during | disk_lost_writes_total |" \
        in report, report
    assert "| write-blocking | 10 | 1 |" in report and "| 8.39e+06 | 1e+03 | 0 |" in report, \
        report


def test_only_the_latency_panel_of_a_sweep_figure_is_on_a_log_scale():
    fig, (lat, other, empty) = plt.subplots(1, 3)
    try:
        for ax in (lat, other):
            ax.plot([1, 10], [0.1, 150.0])
        plotdisk.scale_panel(lat, "disk_write_p50_ms_during")
        plotdisk.scale_panel(other, "downtime_ms")
        plotdisk.scale_panel(empty, "disk_write_p50_ms_during")     # no run had it
        assert (lat.get_yscale(), other.get_yscale(), empty.get_yscale()) == \
            ("log", "linear", "linear")
        assert lat.get_ylim()[0] > 0
    finally:
        plt.close(fig)


@pytest.mark.parametrize("keys, expected", [
    (["policy.storage", "vm.disk.workload.write_rate_mibps"],
     ["vm.disk.workload.write_rate_mibps", "storage_policy"]),
    (["wan.rtt_ms"], ["wan.rtt_ms", "storage_policy"])])
def test_storage_keys_put_the_policy_last(keys, expected):
    assert plotdisk.storage_keys(keys) == expected
