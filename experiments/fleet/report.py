"""The "Fleet" section of a fleet run's report.md and its figures, from stored files only.

``write_fleet_plots`` reads ``fleet/{moves,rates,wan,hosts}.csv`` and ``metrics.json`` of a run
folder and draws ``gantt.png``, ``host_load.png`` and ``wan.png`` into it (a missing file is an
empty input). ``fleet_section`` writes the section: what the fleet took against what its model
foresaw and the lower bound (as ratios: measured / model), how many moves completed or failed,
the imbalance before and after against its target, the rebalance's moves against the predicted
count, lost writes, the concurrency limits and the order, then a row per move and the figures.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from experiments.fleet import plots
from experiments.fleet.plots import failed, num
from experiments.summary import read_csv
from ground.table import markdown

log = logging.getLogger("wanmig.plot")

FLEET_DIR = "fleet"
CSV_FILES = ("moves", "rates", "wan", "hosts")
FIGURES = {"gantt": "gantt.png", "host_load": "host_load.png", "wan": "wan.png"}
CAPTIONS = {"gantt": "Gantt", "host_load": "host load", "wan": "WAN utilisation"}
MOVE_HEADERS = ("vm", "move", "reason", "source -> destination", "queued s", "started s",
                "ended s", "total s", "downtime ms", "client outage ms", "MB on wire",
                "Mbit/s", "predicted s", "outcome")


def _fmt(value: Any, fmt: str = ".3g") -> str:
    x = num(value)
    return "-" if x is None else format(x, fmt)


def _secs(value: Any) -> str:
    x = num(value)
    return "-" if x is None else f"{x:.1f} s"


def ratio(measured: Any, reference: Any) -> str:
    """``measured / reference`` as "1.25x"; "-" when either is unknown or the reference is 0."""
    m, r = num(measured), num(reference)
    return "-" if m is None or r is None or r <= 0 else f"{m / r:.2f}x"


def _cell(text: Any) -> str:
    """A table cell ('-' when empty; ``ground.table.markdown`` escapes what would break it)."""
    return "-" if text is None or text == "" else str(text).strip()


def _makespan(m: Mapping[str, Any]) -> str:
    measured, model, bound = (m.get("makespan_s"), m.get("predicted_makespan_s"),
                              m.get("makespan_lower_bound_s"))
    return (f"{_secs(measured)} measured; model {_secs(model)} "
            f"(measured / model {ratio(measured, model)}); lower bound {_secs(bound)} "
            f"(measured / bound {ratio(measured, bound)})")


def _count(m: Mapping[str, Any], key: str, fallback: int) -> str:
    value = num(m.get(key))
    return str(fallback) if value is None else f"{value:g}"


def _moves(m: Mapping[str, Any], moves: Sequence[Mapping[str, Any]]) -> str:
    done = sum(str(r.get("outcome")) == "completed" for r in moves)
    bad = sum(failed(r) for r in moves)
    total = _count(m, "moves_total", len(moves))
    text = (f"{_count(m, 'moves_completed', done)} completed, "
            f"{_count(m, 'moves_failed', bad)} failed of {total}")
    waiting = sum(str(r.get("outcome") or "").startswith("not started") for r in moves)
    return text + (f", {waiting} not started" if waiting else "")


def _imbalance(m: Mapping[str, Any]) -> str:
    target = m.get("imbalance_target")
    text = f"{_fmt(m.get('imbalance_before'))} -> {_fmt(m.get('imbalance_after'))}"
    if target is None:
        return f"{text} (no threshold)"
    after = num(m.get("imbalance_after"))
    verdict = "" if after is None else ": met" if after <= float(target) else ": NOT met"
    return f"{text} (target {_fmt(target)}{verdict})"


def _rebalance(m: Mapping[str, Any], moves: Sequence[Mapping[str, Any]]) -> str:
    ran = [r for r in moves if r.get("reason") == "rebalance"]
    done = sum(str(r.get("outcome")) == "completed" for r in ran)
    predicted = m.get("rebalance_predicted_moves")
    if predicted is None and not ran:
        return "no rebalance"
    return (f"{len(ran)} ({done} completed); predicted "
            f"{'-' if predicted is None else _fmt(predicted, 'g')}")


def _lost(m: Mapping[str, Any], moves: Sequence[Mapping[str, Any]]) -> str:
    total = num(m.get("lost_writes_total"))
    if total is None:
        known = [num(r.get("lost_writes")) for r in moves]
        total = sum(x for x in known if x is not None) if any(x is not None for x in known) \
            else None
    return "unknown" if total is None else "none" if total == 0 else f"{total:g} LOST"


def _limits(m: Mapping[str, Any]) -> str:
    limits = m.get("concurrency")
    if not isinstance(limits, Mapping):
        return "-"
    return ", ".join(f"{k} {'unlimited' if v is None else v}" for k, v in limits.items()) or "-"


def summary_rows(m: Mapping[str, Any], moves: Sequence[Mapping[str, Any]]
                 ) -> list[tuple[str, str]]:
    """(figure, value) rows of the fleet's summary table."""
    return [
        ("VMs", _count(m, "vms", len({str(r.get("vm")) for r in moves}))),
        ("makespan", _makespan(m)),
        ("moves", _moves(m, moves)),
        ("imbalance before -> after", _imbalance(m)),
        ("rebalance moves", _rebalance(m, moves)),
        ("lost writes", _lost(m, moves)),
        ("concurrency limits", _limits(m)),
        ("order", _cell(m.get("order"))),
    ]


def _hosts(r: Mapping[str, Any]) -> str:
    def where(host: str, site: str) -> str:
        name, site = _cell(r.get(host)), r.get(site)
        return f"{name} ({site})" if site not in (None, "") else name
    return f"{where('source', 'source_site')} -> {where('destination', 'destination_site')}"


def _order(r: Mapping[str, Any]) -> tuple:
    start, queued = num(r.get("start_t")), num(r.get("queued_t"))
    return (start is None, start if start is not None else queued or 0.0, str(r.get("vm")),
            num(r.get("move")) or 0.0)


def move_rows(moves: Sequence[Mapping[str, Any]]) -> list[tuple[str, ...]]:
    """One row per move, in the order they started (those that never did last)."""
    rows = []
    for r in sorted(moves, key=_order):
        wire = num(r.get("bytes_on_wire"))
        rows.append((_cell(r.get("vm")), _fmt(r.get("move"), "g"), _cell(r.get("reason")),
                     _hosts(r), _fmt(r.get("queued_t"), ".1f"), _fmt(r.get("start_t"), ".1f"),
                     _fmt(r.get("end_t"), ".1f"), _fmt(r.get("total_time_s")),
                     _fmt(r.get("downtime_ms")), _fmt(r.get("client_outage_ms")),
                     "-" if wire is None else f"{wire / 1e6:.1f}",
                     _fmt(r.get("avg_goodput_mbps")), _fmt(r.get("predicted_time_s")),
                     _cell(r.get("outcome"))))
    return rows


def fleet_section(metrics: Mapping[str, Any], moves: Sequence[Mapping[str, Any]],
                  images: Mapping[str, str]) -> str:
    """The report's "## Fleet" section as markdown (ends with a newline)."""
    lines = ["## Fleet", "", *markdown(("figure", "value"), summary_rows(metrics, moves)), ""]
    if moves:
        lines += ["Every move (times in s since the fleet started; predicted: the fleet "
                  "model's time for it):", "", *markdown(MOVE_HEADERS, move_rows(moves)), ""]
    else:
        lines += ["No migration was queued.", ""]
    lines += [f"![{CAPTIONS.get(name, name)}]({rel})\n" for name, rel in images.items()]
    return "\n".join(lines) + "\n"


def _rows(path: Path) -> list[dict]:
    if not path.is_file():
        log.info("%s: missing, drawn as empty", path)
        return []
    return read_csv(path)


def capacities(metrics: Mapping[str, Any]) -> dict[int, float]:
    """link (1-based) -> configured Mbit/s, from metrics.json's ``links``."""
    out = {}
    for lk in metrics.get("links") or ():
        link, bw = num(lk.get("link")), num(lk.get("bw_mbps"))
        if link is not None and bw is not None:
            out[int(link)] = bw
    return out


def write_fleet_plots(run_dir: Path) -> dict[str, str]:
    """gantt.png, host_load.png and wan.png of a fleet run folder, written into it; returns
    name -> file name (relative to ``run_dir``), ready for ``fleet_section``."""
    run_dir = Path(run_dir)
    data = {name: _rows(run_dir / FLEET_DIR / f"{name}.csv") for name in CSV_FILES}
    metrics_file = run_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    target = num(metrics.get("imbalance_target"))
    plots.gantt(data["moves"], run_dir / FIGURES["gantt"])
    plots.host_load(data["hosts"], run_dir / FIGURES["host_load"], target)
    plots.wan_utilisation(data["wan"], data["rates"], data["moves"], run_dir / FIGURES["wan"],
                          capacities(metrics) or None)
    return dict(FIGURES)
