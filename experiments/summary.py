"""Summaries: a sweep's summary.csv from its run folders, and a run's table for the terminal.

Why from folders: summary.csv is rebuilt from what every run stored (its ``metrics.json`` and
``swept.json``, the grid values it ran with), so a sweep interrupted and resumed, or a metric
recomputed, gives the same table; nothing is carried over in memory from the runs.

Sweep folder layout::

    <sweep>/config.yaml           the sweep (experiments.sweep.sweep_dict)
    <sweep>/<run>/metrics.json    one folder per run
    <sweep>/<run>/swept.json      {"<grid key>": value, ..., "repetition": r}
    <sweep>/summary.csv           run, repetition, <grid keys...>, <metrics...>

Grid keys always contain a dot (they are key paths into a section), metric names never do: that
tells them apart in summary.csv.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from experiments.metrics import METRIC_KEYS
from ground.table import render
from ground.yamlfile import read_yaml

log = logging.getLogger("wanmig.summary")

# The testbed's own load during the migration (experiments.load): in every row, so a sweep
# shows which of its runs shared a saturated machine.
LOAD_METRICS = ("testbed_bound", "testbed_cpu_idle_min", "testbed_bound_share")
SUMMARY_METRICS = (*METRIC_KEYS, "probes_lost", "dest_convergence_ms", "stop_reason",
                   "kv_integrity_ok", "memory_integrity_ok", "predicted_rounds", *LOAD_METRICS)
# Columns added when the runs injected faults (experiments.faults.run).
FAULT_METRICS = ("invariants_held", "one_site", "split_brain", "lost_writes", "reachable",
                 "leftovers")
# Columns added when the runs had a disk (experiments.diskrun): its scalar figures, the model's
# lower bound, and the guest's I/O latency flattened (``disk_latency_columns``).
DISK_METRICS = ("storage_policy", "disk_size", "disk_allocated", "disk_block_bytes",
                "disk_bytes_on_wire", "disk_bytes_raw", "disk_sectors_sent",
                "disk_sectors_resent", "disk_bulk_s", "disk_writes", "disk_reads",
                "disk_lost_writes", "disk_lost_writes_total", "disk_mirror_writes",
                "disk_remote_reads", "disk_write_mibps", "disk_read_mibps",
                "disk_verified_blocks", "disk_verify_lost", "predicted_lower_bound_s")
DISK_PHASES = ("before", "during", "after")
LATENCY_CELLS = tuple((phase, op, pct) for phase in DISK_PHASES for op in ("write", "read")
                      for pct in ("p50", "p95"))
DISK_LATENCY = tuple(f"disk_{op}_{pct}_ms_{phase}" for phase, op, pct in LATENCY_CELLS)
SWEPT_FILE = "swept.json"


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def cell(value: str) -> Any:
    """A CSV cell back to a number, bool or None where it looks like one."""
    if value == "":
        return None
    if value in ("True", "False"):
        return value == "True"
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if number.is_integer() and "." not in value and "e" not in value \
        else number


def write_swept(run_dir: Path, values: Mapping[str, Any]) -> None:
    """The grid values a sweep's run ran with (the third item of ``expand``'s tuples)."""
    (Path(run_dir) / SWEPT_FILE).write_text(json.dumps(dict(values), indent=2))


def _grid_keys(sweep_dir: Path, swept: list[Mapping[str, Any]]) -> list[str]:
    config = sweep_dir / "config.yaml"
    if config.is_file():
        data = read_yaml(config)
        if isinstance(data.get("grid"), dict):
            return [str(k) for k in data["grid"]]
    keys: list[str] = []
    for values in swept:
        keys += [k for k in values if k != "repetition" and k not in keys]
    return keys


def disk_latency_columns(latency: Mapping[str, Any] | None) -> dict:
    """``disk_latency`` ({phase: {write|read: {p50_ms, ...} or None}}) as the flat columns
    ``DISK_LATENCY`` (``disk_write_p50_ms_during``...); None where a figure is missing."""
    out: dict[str, Any] = {}
    for column, (phase, op, pct) in zip(DISK_LATENCY, LATENCY_CELLS, strict=True):
        stats = ((latency or {}).get(phase) or {}).get(op) or {}
        out[column] = stats.get(f"{pct}_ms")
    return out


def summary_rows(sweep_dir: Path) -> tuple[list[str], list[dict]]:
    """(grid keys, one row per run folder holding metrics.json and swept.json)."""
    sweep_dir = Path(sweep_dir)
    runs = []
    for run in sorted(p for p in sweep_dir.iterdir() if p.is_dir()):
        metrics_file, swept_file = run / "metrics.json", run / SWEPT_FILE
        if not metrics_file.is_file() or not swept_file.is_file():
            log.warning("%s: no metrics.json or swept.json, left out of the summary", run)
            continue
        runs.append((run.name, json.loads(swept_file.read_text()),
                     json.loads(metrics_file.read_text())))
    keys = _grid_keys(sweep_dir, [s for _, s, _ in runs])
    rows = []
    for name, swept, metrics in runs:
        row = {"run": name, "repetition": swept.get("repetition", 0)}
        row.update({k: swept.get(k) for k in keys})
        row.update({k: metrics.get(k) for k in (*SUMMARY_METRICS, *FAULT_METRICS,
                                                 *DISK_METRICS, *FLEET_METRICS)})
        row.update(disk_latency_columns(metrics.get("disk_latency")))
        rows.append(row)
    return keys, rows


def write_summary(sweep_dir: Path) -> Path:
    keys, rows = summary_rows(sweep_dir)
    path = Path(sweep_dir) / "summary.csv"
    faults = FAULT_METRICS if any(r.get("invariants_held") is not None for r in rows) else ()
    disk = (*DISK_METRICS, *DISK_LATENCY) \
        if any(r.get("storage_policy") is not None for r in rows) else ()
    fleet = FLEET_METRICS if any(r.get("makespan_s") is not None for r in rows) else ()
    write_csv(path, ["run", "repetition", *keys, *SUMMARY_METRICS, *faults, *disk, *fleet],
              rows)
    return path


def read_summary(path: Path) -> tuple[list[str], list[dict]]:
    """(grid keys, typed rows) of a summary.csv."""
    rows = [{k: cell(v) for k, v in r.items()} for r in read_csv(Path(path))]
    with open(path, newline="") as fh:
        header = next(csv.reader(fh), [])
    return [c for c in header if "." in c], rows


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


RUN_TABLE = (("outcome", "outcome", ""), ("stop reason", "stop_reason", ""),
             ("total time", "total_time_s", "s"), ("downtime", "downtime_ms", "ms"),
             ("client outage", "client_outage_ms", "ms"),
             ("flow convergence", "flow_convergence_ms", "ms"),
             ("rounds", "rounds", ""), ("bytes on wire", "bytes_on_wire", "B"),
             ("VM memory", "vm_memory_bytes", "B"), ("compression ratio", "compression_ratio", ""),
             ("mean goodput", "mean_goodput_mbps", "Mbit/s"),
             ("probes lost", "probes_lost", ""), ("site before / after", None, ""),
             ("path RTT configured", "link_rtt_ms_configured", "ms"),
             ("path RTT measured", "link_rtt_ms_measured", "ms"),
             ("path bandwidth", "link_bw_mbps", "Mbit/s"), ("link backend", "link_backend", ""),
             ("frames the switch dropped", "fabric_drops", ""),
             ("integrity", "integrity_ok", ""),
             ("predicted total time", "predicted_total_time_s", "s"),
             ("predicted downtime", "predicted_downtime_ms", "ms"),
             ("testbed-bound", "testbed_bound", ""),
             ("least idle machine share", "testbed_cpu_idle_min", ""))


FLEET_TABLE = (("outcome", "outcome", ""), ("VMs", "vms", ""), ("moves", "moves_total", ""),
               ("moves completed", "moves_completed", ""), ("makespan", "makespan_s", "s"),
               ("predicted makespan", "predicted_makespan_s", "s"),
               ("makespan lower bound", "makespan_lower_bound_s", "s"),
               ("largest downtime", "downtime_max_ms", "ms"),
               ("imbalance before", "imbalance_before", ""),
               ("imbalance after", "imbalance_after", ""),
               ("imbalance target", "imbalance_target", ""),
               ("rebalance moves / predicted", None, ""),
               ("lost writes", "lost_writes_total", ""), ("integrity", "integrity_ok", ""),
               ("testbed-bound", "testbed_bound", ""),
               ("least idle machine share", "testbed_cpu_idle_min", ""))
FLEET_METRICS = ("makespan_s", "predicted_makespan_s", "makespan_lower_bound_s", "moves_total",
                 "moves_completed", "downtime_max_ms", "imbalance_before", "imbalance_after",
                 "imbalance_target", "rebalance_moves", "rebalance_predicted_moves",
                 "lost_writes_total")


def run_rows(metrics: Mapping[str, Any]) -> list[tuple[str, str]]:
    rows = []
    fleet = bool(metrics.get("fleet"))
    for label, key, unit in FLEET_TABLE if fleet else RUN_TABLE:
        if key is None and fleet:
            rows.append((label, f"{_fmt(metrics.get('rebalance_moves'))} / "
                                f"{_fmt(metrics.get('rebalance_predicted_moves'))}"))
            continue
        if key is None:
            text = f"{_fmt(metrics.get('site_before'))} / {_fmt(metrics.get('site_after'))}"
        else:
            text = _fmt(metrics.get(key))
            if unit and metrics.get(key) is not None:
                text += f" {unit}"
        rows.append((label, text))
    return rows


LINK_TABLE = ("link", "between", "RTT configured ms", "RTT measured ms", "bw Mbit/s",
              "goodput Mbit/s", "backend", "preflight", "on the path")


def link_rows(metrics: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """One row per WAN link as the preflight measured it (``metrics["links"]``)."""
    path = set(metrics.get("link_path") or ())
    return [(str(lk.get("link")), f"{lk.get('src')} - {lk.get('dst')}",
             _fmt(lk.get("rtt_ms_configured")), _fmt(lk.get("rtt_ms_measured")),
             _fmt(lk.get("bw_mbps")), _fmt(lk.get("goodput_mbps")), _fmt(lk.get("backend")),
             "ok" if lk.get("ok") else "OFF", "yes" if lk.get("link") in path else "no")
            for lk in metrics.get("links") or ()]


def run_table(metrics: Mapping[str, Any]) -> str:
    """The run's main figures as a plain-text table."""
    return render(("metric", "value"), run_rows(metrics))
