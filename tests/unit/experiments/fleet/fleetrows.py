"""Small hand-made fleet run rows (three VMs, one failed move, one never started, empty cells)
as the runner writes them in ``fleet/*.csv`` (strings), and a writer of such a folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

MOVE_KEYS = ("vm", "move", "reason", "source", "destination", "source_site",
             "destination_site", "queued_t", "start_t", "end_t", "outcome", "total_time_s",
             "downtime_ms", "client_outage_ms", "bytes_on_wire", "avg_goodput_mbps",
             "predicted_time_s", "predicted_downtime_ms", "predicted_start_s",
             "predicted_end_s", "lost_writes")


def _move(*values: str) -> dict[str, str]:
    return dict(zip(MOVE_KEYS, values, strict=True))


MOVES = [
    _move("vm1", "1", "scheduled", "h1", "h3", "a", "b", "0.0", "0.0", "12.5", "completed",
          "12.5", "310", "420", "150000000", "96.0", "11.0", "250", "0.0", "11.0", "0"),
    _move("vm2", "1", "evacuate", "h2", "h4", "a", "b", "0.0", "2.0", "9.0",
          "failed: connection reset | retry", "7.0", "", "", "40000000", "45.7", "10.0", "",
          "0.0", "10.0", "0"),
    _move("vm1", "2", "rebalance", "h3", "h4", "b", "b", "13.0", "15.0", "20.0", "completed",
          "5.0", "120", "", "60000000", "96.0", "4.0", "100", "12.0", "16.0", "0"),
    _move("vm3", "1", "degraded", "h2", "h3", "a", "b", "3.0", "", "", "not started: deadline",
          "", "", "", "", "", "9.0", "", "", "", ""),
]
RATES = [
    {"vm": "vm1", "move": "1", "t0": "0.0", "t1": "5.0", "mbps": "100"},
    {"vm": "vm1", "move": "1", "t0": "5.0", "t1": "12.5", "mbps": "60"},
    {"vm": "vm2", "move": "1", "t0": "2.0", "t1": "9.0", "mbps": "40"},
    {"vm": "vm1", "move": "2", "t0": "15.0", "t1": "20.0", "mbps": "96"},
    {"vm": "vm3", "move": "1", "t0": "", "t1": "", "mbps": ""},
]
WAN = [{"t": f"{i * 0.5:.1f}", "link": "1", "direction": d, "mbps": f"{m:.1f}"}
       for i in range(41) for d, m in (("a->b", 150.0 if i < 25 else 90.0), ("b->a", 2.0))]
HOSTS = [
    {"t": "0.0", "host": h, "site": s, "state": "normal", "load": load,
     "memory_used_bytes": "1000", "vms": vms}
    for h, s, load, vms in (("h1", "a", "0.6", "vm1"), ("h2", "a", "0.9", "vm2 vm3"),
                            ("h3", "b", "0.1", ""), ("h4", "b", "0.0", ""))
] + [
    {"t": "1.0", "host": "h2", "site": "a", "state": "maintenance", "load": "0.9",
     "memory_used_bytes": "2000", "vms": "vm2 vm3"},
    {"t": "12.5", "host": "h1", "site": "a", "state": "normal", "load": "0.0",
     "memory_used_bytes": "0", "vms": ""},
    {"t": "12.5", "host": "h3", "site": "b", "state": "normal", "load": "0.7",
     "memory_used_bytes": "1000", "vms": "vm1"},
    {"t": "14.0", "host": "h4", "site": "b", "state": "degraded", "load": "", "vms": ""},
    {"t": "20.0", "host": "h3", "site": "b", "state": "normal", "load": "0.1",
     "memory_used_bytes": "0", "vms": ""},
    {"t": "20.0", "host": "h4", "site": "b", "state": "normal", "load": "0.6",
     "memory_used_bytes": "1000", "vms": "vm1"},
]
METRICS = {
    "makespan_s": 50.0, "predicted_makespan_s": 40.0, "makespan_lower_bound_s": 25.0,
    "moves_total": 4, "moves_completed": 2, "moves_failed": 1, "imbalance_before": 0.42,
    "imbalance_after": 0.18, "imbalance_target": 0.2, "rebalance_predicted_moves": 2,
    "lost_writes_total": 0, "concurrency": {"overall": 2, "per_host": 1, "per_link": None},
    "order": "smallest-first", "vms": 3,
    "links": [{"link": 1, "bw_mbps": 200.0}],
}


def write_csv(path: Path, rows: list[dict]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys, restval="")
        writer.writeheader()
        writer.writerows(rows)


def write_run(run: Path, *, metrics: bool = True) -> Path:
    """A fleet run folder with the four CSVs (and metrics.json unless told not to)."""
    (run / "fleet").mkdir(parents=True)
    for name, rows in (("moves", MOVES), ("rates", RATES), ("wan", WAN), ("hosts", HOSTS)):
        write_csv(run / "fleet" / f"{name}.csv", rows)
    if metrics:
        (run / "metrics.json").write_text(json.dumps(METRICS))
    return run
