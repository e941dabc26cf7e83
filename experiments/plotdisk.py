"""The disk's part of the figures (a VM with ``vm.disk``), drawn from stored files only;
``experiments.plot`` calls into it.

* timeline: each round's disk bytes hatched on top of its bar (``disk_bars``, from rounds.csv's
  ``disk_bytes_on_wire``), and a panel of the guest's write latency over time
  (``latency_panel``, log scale, one colour per path: local, remote across the WAN, mirrored),
  from disk_io.csv, whose times are the guest's ``time.monotonic()``: disk.json's
  ``wall_minus_monotonic`` puts them on the wall clock, and ``migration_start_t`` on the
  timeline's (time 0 = the migration start);
* sweep: ``storage_overview.png/.svg``, total time, downtime, disk bytes on the wire and the
  median write latency during the migration (log scale), one line per storage policy against
  the swept numeric key (``STORAGE_PANELS``, ``storage_keys``); the sweep report's table gets
  the disk's columns (``REPORT_COLUMNS``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

log = logging.getLogger("wanmig.plot")

IO_LOG = "disk_io.csv"
DISK_REPORT = "disk.json"
STORAGE_FIGURE = "storage_overview"
STORAGE_PANELS = (("total_time_s", "predicted_total_time_s", "total time (s)"),
                  ("downtime_ms", "predicted_downtime_ms", "downtime (ms)"),
                  ("disk_bytes_on_wire", None, "disk bytes on the wire"),
                  ("disk_write_p50_ms_during", None, "median write latency during (ms)"))
# Added to a sweep report's table when its runs had a disk
REPORT_COLUMNS = ("disk_bytes_on_wire", "disk_write_p50_ms_during", "disk_lost_writes_total")
# Latencies span local (0.1 ms) to the WAN's RTT and more: log scale
LOG_METRICS = frozenset({"disk_write_p50_ms_during"})
DISK_HATCH = "////"
DISK_EDGE = "#54278f"
PATH_COLORS = {"local": "#3182bd", "remote": "#d62728", "mirror": "#756bb1"}
MIN_LATENCY_MS = 1e-3     # log scale: a 0 s latency (clock resolution) is drawn at 1 us


class WriteLatency(NamedTuple):
    t: float          # s since the migration started
    ms: float
    ok: bool
    path: str


def storage_keys(keys: Sequence[str]) -> list[str]:
    """The sweep keys for the storage figure: the grid's without ``policy.storage``, and the
    runs' ``storage_policy`` last (so the x axis stays the first numeric grid key and there is
    a line per policy, swept or not)."""
    return [k for k in keys if k != "policy.storage"] + ["storage_policy"]


def scale_panel(ax: Any, metric: str) -> None:
    """A latency panel of a sweep figure on a log scale, once it has data to scale."""
    if metric in LOG_METRICS and ax.has_data():
        ax.set_yscale("log")
        ax.autoscale(axis="y")


def has_storage(rows: Sequence[Mapping[str, Any]]) -> bool:
    return any(r.get("storage_policy") is not None for r in rows)


def disk_bars(ax: Any, rounds: Sequence[Mapping[str, Any]]) -> None:
    """Hatch each round's disk bytes at the top of its bar (drawn by plot._rounds_panel);
    nothing when rounds.csv has no disk columns or no disk byte was sent."""
    disk = [(r["t_start_s"], max(r["duration_s"], 1e-3), (r.get("bytes_on_wire") or 0) / 2 ** 20,
             (r.get("disk_bytes_on_wire") or 0) / 2 ** 20) for r in rounds]
    if not any(d for *_, d in disk):
        return
    total = sum(b for _, _, b, _ in disk)
    share = sum(d for *_, d in disk) / total if total else 0.0
    ax.bar([t for t, *_ in disk], [d for *_, d in disk], width=[w for _, w, *_ in disk],
           bottom=[b - d for _, _, b, d in disk], align="edge", color="none", hatch=DISK_HATCH,
           edgecolor=DISK_EDGE, lw=0.5, zorder=2.5, label=f"disk ({share:.0%} of the bytes)")


def write_latencies(run_dir: Path, metrics: Mapping[str, Any]) -> list[WriteLatency] | None:
    """The guest's writes from disk_io.csv on the timeline's clock; None when the run has no
    I/O log or nothing to put it on that clock with (a warning says which)."""
    from migrator.disk.iolog import read_iolog

    path = run_dir / IO_LOG
    if not path.is_file():
        return None
    report = run_dir / DISK_REPORT
    offset = json.loads(report.read_text()).get("wall_minus_monotonic") \
        if report.is_file() else None
    start = metrics.get("migration_start_t")
    if offset is None or start is None:
        log.warning("%s: no wall_minus_monotonic in %s or no migration_start_t: the disk "
                    "latency panel is left out", path, DISK_REPORT)
        return None
    return [WriteLatency(r.t + offset - start, max(r.latency_s * 1e3, MIN_LATENCY_MS),
                         bool(r.ok), r.path)
            for r in read_iolog(path) if r.op == "w"]


def latency_panel(ax: Any, writes: Sequence[WriteLatency]) -> None:
    """The guest's write latency over time, log scale, a colour per path, failed writes as
    black crosses."""
    ax.set_ylabel("disk write latency (ms)")
    ax.set_yscale("log")
    if not writes:
        ax.text(0.5, 0.5, "no disk writes recorded", ha="center", transform=ax.transAxes)
        return
    for path in sorted({w.path for w in writes}):
        pts = [w for w in writes if w.path == path and w.ok]
        if pts:
            ax.scatter([w.t for w in pts], [w.ms for w in pts], s=4, alpha=0.7, lw=0,
                       color=PATH_COLORS.get(path, "#7f7f7f"), label=f"{path} ({len(pts)})",
                       zorder=3, rasterized=True)
    failed = [w for w in writes if not w.ok]
    if failed:
        ax.scatter([w.t for w in failed], [w.ms for w in failed], marker="x", s=12,
                   color="k", label=f"failed ({len(failed)})", zorder=4)
    ax.legend(loc="upper left", ncol=4, markerscale=3)
