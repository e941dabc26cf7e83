"""The "Disk" section of a run's report.md, from its metrics.json only (``experiments.diskrun``
writes the figures; ``experiments.plot.write_report`` calls ``disk_lines``).

A run had a disk when its metrics carry ``storage_policy``; a run without one gets no section
(the memory migration's own figures stay as they were). The section: the policy and the disk
(size, allocated, block, workload), what crossed the WAN for it (its share of all the bytes,
sectors sent and re-sent, the bulk copy's time), what the guest did (mirrored writes, reads
served across the WAN, achieved rates), lost writes during the run and at the final check, and a
table of the guest's write and read latency percentiles per phase (before the migration, during
it until the guest is paused, after the resume).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ground.table import markdown

MIB = 1024 * 1024
PHASES = ("before", "during", "after")
OPS = ("write", "read")
LATENCY_HEADERS = ("phase", "op", "n", "failed", "p50 ms", "p95 ms", "p99 ms", "mean ms")


def has_disk(metrics: Mapping[str, Any]) -> bool:
    return metrics.get("storage_policy") is not None


def _num(value: Any, fmt: str = ".3g") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return format(value, fmt)


def _mib(value: Any) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{value / MIB:.1f} MiB"


def _share(part: Any, whole: Any) -> str:
    if not isinstance(part, (int, float)) or not isinstance(whole, (int, float)) or whole <= 0:
        return ""
    return f" ({part / whole:.0%} of {_mib(whole)} in all)"


def _workload(work: Any) -> str:
    if not isinstance(work, Mapping):
        return "-"
    parts = [f"writes {_num(work.get('write_rate_mibps'))} MiB/s",
             f"reads {_num(work.get('read_rate_mibps'))} MiB/s"]
    if work.get("working_set_frac") is not None:
        parts.append(f"working set {_num(work['working_set_frac'] * 100)} %")
    if work.get("skew") is not None:
        parts.append(str(work["skew"]))
    return ", ".join(parts)


def _lost(m: Mapping[str, Any]) -> str:
    text = (f"{_num(m.get('disk_lost_writes'))} during the run, "
            f"{_num(m.get('disk_verify_lost'))} at the final check of "
            f"{_num(m.get('disk_verified_blocks'), 'd')} blocks")
    total = m.get("disk_lost_writes_total")
    verdict = "unknown" if total is None else "none" if total == 0 else f"{total} LOST"
    return f"{text}: {verdict}"


def disk_rows(m: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(figure, value) rows of the disk table."""
    bulk = m.get("disk_bulk_s")
    return [
        ("storage policy", str(m.get("storage_policy"))),
        ("disk size / allocated", f"{_mib(m.get('disk_size'))} / {_mib(m.get('disk_allocated'))}"),
        ("block", "-" if m.get("disk_block_bytes") is None
         else f"{m['disk_block_bytes'] // 1024} KiB"),
        ("workload", _workload(m.get("disk_workload"))),
        ("disk bytes on wire", _mib(m.get("disk_bytes_on_wire"))
         + _share(m.get("disk_bytes_on_wire"), m.get("bytes_on_wire"))),
        ("disk bytes raw", _mib(m.get("disk_bytes_raw"))),
        ("sectors sent / re-sent", f"{_num(m.get('disk_sectors_sent'), 'd')} / "
                                   f"{_num(m.get('disk_sectors_resent'), 'd')}"),
        ("bulk copy time", "-" if bulk is None else f"{bulk:.3g} s"),
        ("mirrored writes", _num(m.get("disk_mirror_writes"), "d")),
        ("reads served remotely (NBD)", _num(m.get("disk_remote_reads"), "d")),
        ("guest writes / reads", f"{_num(m.get('disk_writes'), 'd')} / "
                                 f"{_num(m.get('disk_reads'), 'd')}"),
        ("achieved write / read rate", f"{_num(m.get('disk_write_mibps'))} / "
                                       f"{_num(m.get('disk_read_mibps'))} MiB/s"),
        ("lost writes", _lost(m)),
        ("predicted lower bound", "-" if m.get("predicted_lower_bound_s") is None
         else f"{m['predicted_lower_bound_s']:.3g} s"),
    ]


def latency_rows(m: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """One row per phase and op of ``disk_latency`` (a phase without such I/O: n 0, dashes)."""
    latency = m.get("disk_latency") or {}
    rows = []
    for phase in PHASES:
        for op in OPS:
            s = (latency.get(phase) or {}).get(op) or {}
            rows.append((phase, op, _num(s.get("n", 0), "d"), _num(s.get("failed", 0), "d"),
                         *(_num(s.get(k)) for k in ("p50_ms", "p95_ms", "p99_ms", "mean_ms"))))
    return rows


def disk_lines(metrics: Mapping[str, Any]) -> list[str]:
    """The report's Disk section as markdown lines; none for a run without a disk."""
    if not has_disk(metrics):
        return []
    lines = ["## Disk", "", *markdown(("figure", "value"), disk_rows(metrics)), ""]
    if metrics.get("disk_latency"):
        lines += ["The guest's disk I/O latency as it saw it (a mirrored write includes its "
                  "copy to the destination; a shared disk's I/O crosses the WAN after the move):",
                  "", *markdown(LATENCY_HEADERS, latency_rows(metrics)), ""]
    else:
        lines += ["No disk I/O log was recorded: no latency figures.", ""]
    return lines
