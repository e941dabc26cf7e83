"""Figures and a report from stored results only: ``wanmig plot DIR``.

Why only stored files: a figure must be reproducible from the folder alone, months later and
on another machine, and a plotting bug must never need the experiment to be run again. Inputs:
config.yaml, metrics.json, migration/rounds.csv and probes.csv of a run; config.yaml and summary.csv
of a sweep. One style (``STYLE``), fixed output names, PNG and SVG side by side:

* run: ``timeline.png/.svg``: the pre-copy rounds (bytes on the wire, goodput), the dirty rate
  and throttle, and the client's view (probe RTT by answering site, lost probes, the longest
  gap), with the migration phases shaded and the controller's flow move marked; time 0 is the
  migration start; a VM's disk adds its share of each round and a write latency panel;
* sweep: ``sweep_total_time``, ``sweep_downtime``, ``sweep_client_outage`` (``.png/.svg``): the
  metric against the first numeric grid key, one line per combination of the other keys (e.g.
  one per codec), mean with the standard deviation over repetitions as error bars, the
  analytic model's prediction dashed in the same colour. Runs without the metric are left out
  with a warning. Runs with a disk add ``storage_overview`` (``experiments.plotdisk``).
"""

from __future__ import annotations

import json
import logging
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend

from experiments import plotdisk  # noqa: E402
from experiments.diskreport import disk_lines  # noqa: E402
from experiments.faults.report import fault_lines, invariants_cell  # noqa: E402
from experiments.load.bound import warning  # noqa: E402
from experiments.plotstyle import STYLE  # noqa: E402
from experiments.summary import (  # noqa: E402
    LINK_TABLE,
    cell,
    link_rows,
    read_csv,
    read_summary,
    run_rows,
)
from ground.table import markdown  # noqa: E402
from ground.yamlfile import read_yaml  # noqa: E402

log = logging.getLogger("wanmig.plot")

FORMATS = ("png", "svg")
PHASE_COLORS = {"pre-copy": "#c6dbef", "stop-and-copy": "#fdae6b", "back": "#d9d9d9"}
ROW_COLORS = {"stop-copy": "#fd8d3c", "verify": "#e6550d", "drain": "#bdbdbd"}  # else live
SITE_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b")
SWEEP_FIGURES = (("sweep_total_time", "total_time_s", "predicted_total_time_s",
                  "total migration time (s)"),
                 ("sweep_downtime", "downtime_ms", "predicted_downtime_ms", "downtime (ms)"),
                 ("sweep_client_outage", "client_outage_ms", None, "client outage (ms)"))
FLEET_SWEEP_FIGURES = (("sweep_makespan", "makespan_s", "predicted_makespan_s",
                        "makespan (s)"),
                       ("sweep_downtime", "downtime_max_ms", None, "largest downtime (ms)"),
                       ("sweep_imbalance", "imbalance_after", None, "imbalance after"))


def _save(fig: Any, base: Path) -> list[Path]:
    out = []
    for fmt in FORMATS:
        path = base.with_suffix(f".{fmt}")
        meta = {"Date": None} if fmt == "svg" else {"Software": None}
        fig.savefig(path, format=fmt, bbox_inches="tight", metadata=meta)
        out.append(path)
    plt.close(fig)
    return out


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _typed(rows: list[dict]) -> list[dict]:
    return [{k: cell(v) for k, v in r.items()} for r in rows]


def _title(run_dir: Path, metrics: Mapping[str, Any]) -> str:
    config = read_yaml(run_dir / "config.yaml") if (run_dir / "config.yaml").is_file() else {}
    name = config.get("name", run_dir.name)
    policy = config.get("policy") or {}
    parts = [str(name)]
    if metrics.get("link_rtt_ms_configured") is not None:
        parts.append(f"RTT {metrics['link_rtt_ms_configured']:g} ms")
    if metrics.get("link_bw_mbps") is not None:
        parts.append(f"{metrics['link_bw_mbps']:g} Mbit/s")
    if policy.get("codec"):
        parts.append(f"codec {policy['codec']}")
    if metrics.get("outcome"):
        parts.append(str(metrics["outcome"]))
    return ", ".join(parts)


def _shade_phases(axes: Sequence[Any], metrics: Mapping[str, Any]) -> None:
    total = metrics.get("total_time_s")
    if total is None:
        return
    down = (metrics.get("downtime_ms") or 0.0) / 1e3
    spans = [(0.0, total - down, "pre-copy"), (total - down, total, "stop-and-copy")]
    start = metrics.get("migration_start_t")
    if metrics.get("back_start_t") is not None and start is not None \
            and metrics.get("back_total_time_s") is not None:
        b0 = metrics["back_start_t"] - start
        spans.append((b0, b0 + metrics["back_total_time_s"], "back"))
    for i, ax in enumerate(axes):
        for t0, t1, label in spans:
            if t1 > t0:
                ax.axvspan(t0, t1, color=PHASE_COLORS[label], alpha=0.5, lw=0,
                           label=label if i == 0 else None, zorder=0)
        if metrics.get("move_t") is not None and start is not None:
            ax.axvline(metrics["move_t"] - start, color="k", ls=":", lw=1,
                       label="flows moved" if i == 0 else None)


def plot_run(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """timeline.png and timeline.svg of a run folder (written to ``out_dir`` or the folder)."""
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir
    metrics = _json(run_dir / "metrics.json")
    if not metrics:
        raise FileNotFoundError(f"{run_dir / 'metrics.json'}: missing or empty; not a run folder")
    if metrics.get("fleet"):           # a fleet: Gantt chart, host load, WAN utilisation
        from experiments.fleet.report import write_fleet_plots

        return [run_dir / f for f in write_fleet_plots(run_dir).values()]
    rounds_file = run_dir / "migration" / "rounds.csv"       # the migrator writes it
    rounds = _typed(read_csv(rounds_file)) if rounds_file.is_file() else []
    probes = _typed(read_csv(run_dir / "probes.csv")) if (run_dir / "probes.csv").is_file() \
        else []
    start = metrics.get("migration_start_t") or 0.0
    writes = plotdisk.write_latencies(run_dir, metrics)       # None: no disk I/O log
    ratios = [1.2, 0.8, 1.4] + ([0.9] if writes is not None else [])
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(len(ratios), 1, figsize=(8, 2.5 * sum(ratios)), sharex=True,
                                 gridspec_kw={"height_ratios": ratios})
        ax_r, ax_d, ax_c = axes[:3]
        _rounds_panel(ax_r, ax_d, rounds)
        _client_panel(ax_c, probes, metrics, start)
        if writes is not None:
            plotdisk.latency_panel(axes[3], writes)
        _shade_phases(axes, metrics)
        ax_r.set_title(_title(run_dir, metrics))
        ax_r.legend(loc="upper right", ncol=3)
        axes[-1].set_xlabel("time since the migration started (s)")
        fig.align_ylabels()
        return _save(fig, out / "timeline")


def _rounds_panel(ax: Any, ax_d: Any, rounds: list[dict]) -> None:
    ax.set_ylabel("round: MiB on wire")
    ax_d.set_ylabel("dirty rate (MiB/s)")
    if not rounds:
        ax.text(0.5, 0.5, "no rounds recorded", ha="center", transform=ax.transAxes)
        return
    t0 = [r["t_start_s"] for r in rounds]
    width = [max(r["duration_s"], 1e-3) for r in rounds]
    colors = [ROW_COLORS.get(r.get("phase"), "#6baed6") for r in rounds]
    mib = [r["bytes_on_wire"] / 2 ** 20 for r in rounds]
    ax.bar(t0, mib, width=width, align="edge", color=colors, edgecolor="#08519c", lw=0.5,
           zorder=2)
    plotdisk.disk_bars(ax, rounds)
    ax.set_ylim(0, max(mib) * 1.35 or 1.0)   # room for the legend
    gp = ax.twinx()
    gp.spines["right"].set_visible(True)
    xs, ys = _steps(rounds, "goodput_mbps")
    gp.plot(xs, ys, color="#31a354", label="goodput", zorder=3)
    top = max(ys)
    if any(r.get("rate_mbps") for r in rounds):          # the estimate the engine decided on
        xs, ys = _steps(rounds, "rate_mbps")
        gp.plot(xs, ys, color="#31a354", ls=":", label="rate estimate", zorder=3)
        top = max(top, max(ys))
    gp.set_ylabel("goodput (Mbit/s)", color="#31a354")
    gp.set_ylim(0, top * 1.35 or 1.0)
    gp.grid(False)
    xs, ys = _steps(rounds, "dirty_rate_mibps")
    ax_d.plot(xs, ys, color="#d62728", label="dirty rate")
    ax_d.set_ylim(bottom=0)
    if any((r.get("throttle") or 0) > 0 for r in rounds):
        th = ax_d.twinx()
        th.spines["right"].set_visible(True)
        xs, ys = _steps(rounds, "throttle")
        th.plot(xs, [y * 100 for y in ys], color="#756bb1", ls="--", label="throttle")
        th.set_ylabel("throttle (%)", color="#756bb1")
        th.set_ylim(0, 100)
        th.grid(False)


def _steps(rounds: list[dict], key: str) -> tuple[list[float], list[float]]:
    xs: list[float] = []
    ys: list[float] = []
    for r in rounds:
        value = r.get(key) or 0.0
        xs += [r["t_start_s"], r["t_start_s"] + r["duration_s"]]
        ys += [value, value]
    return xs, ys


def _client_panel(ax: Any, probes: list[dict], metrics: Mapping[str, Any],
                  start: float) -> None:
    ax.set_ylabel("probe RTT (ms)")
    if not probes:
        ax.text(0.5, 0.5, "no probes recorded", ha="center", transform=ax.transAxes)
        return
    answered = [p for p in probes if p.get("t_reply") is not None]
    sites = sorted({str(p["site"]) for p in answered})
    for i, site in enumerate(sites):
        pts = [p for p in answered if str(p["site"]) == site]
        ax.scatter([p["t_send"] - start for p in pts], [p["rtt_ms"] for p in pts], s=4,
                   color=SITE_COLORS[i % len(SITE_COLORS)], label=f"answered by {site}",
                   zorder=3)
    lost = [p["t_send"] - start for p in probes if p.get("t_reply") is None]
    if lost:
        ax.plot(lost, [0] * len(lost), "|", color="k", ms=8, label=f"lost ({len(lost)})",
                zorder=3)
    outage, end = metrics.get("client_outage_ms"), metrics.get("client_outage_end_t")
    if outage and end is not None:
        ax.axvspan(end - outage / 1e3 - start, end - start, color="#e31a1c", alpha=0.25, lw=0,
                   label=f"longest gap {outage:.0f} ms", zorder=1)
    top = max((p["rtt_ms"] for p in answered), default=1.0)
    ax.set_ylim(0, max(top, 1.0) * 1.45)    # room for the legend above the points
    ax.legend(loc="upper right", ncol=2)


# --- sweeps ------------------------------------------------------------------------------------

def _x_key(keys: list[str], rows: list[dict]) -> str:
    for key in keys:
        values = [r.get(key) for r in rows]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            return key
    return keys[0]


def _label(key: str, value: Any) -> str:
    return f"{key.split('.')[-1]}={value}"


def sweep_series(keys: list[str], rows: list[dict], metric: str
                 ) -> tuple[str, dict[str, list[tuple[Any, float, float, int]]]]:
    """(x key, {line label: [(x, mean, standard deviation, n), ...]}) of one metric; rows
    without the metric are left out with a warning."""
    x_key = _x_key(keys, rows)
    others = [k for k in keys if k != x_key]
    groups: dict[str, dict[Any, list[float]]] = {}
    for row in rows:
        value = row.get(metric)
        if not isinstance(value, (int, float)) or isinstance(value, bool) \
                or not math.isfinite(value):
            log.warning("%s: no %s, left out of the plot", row.get("run"), metric)
            continue
        label = ", ".join(_label(k, row.get(k)) for k in others) or "runs"
        groups.setdefault(label, {}).setdefault(row.get(x_key), []).append(float(value))
    series = {}
    for label, by_x in groups.items():
        points = []
        for x in sorted(by_x, key=lambda v: (not isinstance(v, (int, float)), v)):
            vals = by_x[x]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            points.append((x, statistics.fmean(vals), sd, len(vals)))
        series[label] = points
    return x_key, series


OVERVIEW = (("total_time_s", "predicted_total_time_s", "total time (s)"),
            ("downtime_ms", "predicted_downtime_ms", "downtime (ms)"),
            ("bytes_on_wire", None, "bytes on the wire"))


def _sweep_panel(ax: Any, keys: list[str], rows: list[dict], metric: str,
                 predicted: str | None, ylabel: str) -> int:
    """One metric of a sweep on ``ax``: a line per combination of the other grid keys (mean
    and sd over repetitions), the model's prediction dashed; returns the most repetitions."""
    x_key, series = sweep_series(keys, rows, metric)
    _, pred = sweep_series(keys, rows, predicted) if predicted else ("", {})
    numeric = all(isinstance(p[0], (int, float)) for pts in series.values() for p in pts)
    ticks: list[Any] = sorted({p[0] for pts in series.values() for p in pts},
                              key=str) if not numeric else []
    pos = (lambda v: v) if numeric else ticks.index
    for i, (label, pts) in enumerate(series.items()):
        color = f"C{i}"
        ax.errorbar([pos(p[0]) for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts],
                    marker="o", ms=4, capsize=3, color=color, label=label)
        if label in pred:
            ppts = [p for p in pred[label] if numeric or p[0] in ticks]
            ax.plot([pos(p[0]) for p in ppts], [p[1] for p in ppts], ls="--", marker="x",
                    ms=4, color=color, alpha=0.7, label=f"{label} (model)")
    if not numeric:
        ax.set_xticks(range(len(ticks)), [str(t) for t in ticks])
    if not series:
        ax.text(0.5, 0.5, f"no run has {metric}", ha="center", transform=ax.transAxes)
    ax.set_xlabel(x_key)
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    if series:
        ax.legend(fontsize="small")
    return max((p[3] for pts in series.values() for p in pts), default=0)


def plot_sweep(sweep_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """sweep_total_time, sweep_downtime, sweep_client_outage, and sweep_overview (total
    time, downtime and bytes on the wire side by side, every line on each: e.g. ``vm.kind``
    emulated and qemu against the RTT) as .png and .svg."""
    sweep_dir = Path(sweep_dir)
    out = Path(out_dir) if out_dir is not None else sweep_dir
    keys, rows = read_summary(sweep_dir / "summary.csv")
    if not keys:
        raise ValueError(f"{sweep_dir / 'summary.csv'}: no grid key columns")
    written: list[Path] = []
    fleet = any(r.get("makespan_s") is not None for r in rows)
    with plt.rc_context(STYLE):
        for name, metric, predicted, ylabel in FLEET_SWEEP_FIGURES if fleet else SWEEP_FIGURES:
            fig, ax = plt.subplots(figsize=(6.4, 4.2))
            n = _sweep_panel(ax, keys, rows, metric, predicted, ylabel)
            ax.set_title(f"{sweep_dir.name}: {ylabel} (mean, sd over {n} repetitions)")
            written += _save(fig, out / name)
        if fleet:
            return written
        written += _overview(sweep_dir.name, keys, rows, OVERVIEW, out / "sweep_overview")
        if plotdisk.has_storage(rows):
            written += _overview(f"{sweep_dir.name}: storage", plotdisk.storage_keys(keys),
                                 rows, plotdisk.STORAGE_PANELS, out / plotdisk.STORAGE_FIGURE)
    return written


def _overview(title: str, keys: list[str], rows: list[dict],
              panels: Sequence[tuple[str, str | None, str]], base: Path) -> list[Path]:
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.2))
    n = 0
    for ax, (metric, predicted, ylabel) in zip(axes, panels, strict=True):
        n = max(n, _sweep_panel(ax, keys, rows, metric, predicted, ylabel))
        plotdisk.scale_panel(ax, metric)
    fig.suptitle(f"{title} (mean, sd over {n} repetitions)")
    return _save(fig, base)


# --- report ------------------------------------------------------------------------------------

def _mean_sd(values: list[Any]) -> str:
    nums = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not nums:
        return "-"
    if len(nums) == 1:
        return f"{nums[0]:.3g}"
    return f"{statistics.fmean(nums):.3g} ± {statistics.stdev(nums):.2g}"


FLEET_SWEEP_COLUMNS = ("makespan_s", "predicted_makespan_s", "makespan_lower_bound_s",
                       "moves_completed", "downtime_max_ms", "imbalance_after",
                       "lost_writes_total")


def load_lines(metrics: Mapping[str, Any]) -> list[str]:
    """A report's first lines when its run was testbed-bound (``experiments.load``)."""
    text = warning(dict(metrics))
    return [text, ""] if text else []


def sweep_load_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    bound = [str(r.get("run")) for r in rows if r.get("testbed_bound") is True]
    if not bound:
        return []
    return [f"**Testbed-bound runs: {len(bound)} of {len(rows)}** ({', '.join(bound[:10])}"
            f"{', ...' if len(bound) > 10 else ''}): the machine had less than 10 % of its "
            "cores idle for more than a fifth of their migration; their figures are partly "
            "the testbed's own (testbed_bound in summary.csv).", ""]


def write_report(directory: str | Path) -> Path:
    """report.md of a run folder (summary table, timeline) or a sweep folder (a table of every
    combination, mean ± sd over repetitions, and the sweep figures)."""
    directory = Path(directory)
    path = directory / "report.md"
    if (directory / "summary.csv").is_file():
        keys, rows = read_summary(directory / "summary.csv")
        combos: dict[tuple, list[dict]] = {}
        for r in rows:
            combos.setdefault(tuple(r.get(k) for k in keys), []).append(r)
        metric_cols = ("total_time_s", "downtime_ms", "client_outage_ms",
                       "flow_convergence_ms", "predicted_total_time_s", "predicted_downtime_ms")
        if any(r.get("makespan_s") is not None for r in rows):        # a fleet sweep
            metric_cols = FLEET_SWEEP_COLUMNS
        metric_cols += plotdisk.REPORT_COLUMNS if plotdisk.has_storage(rows) else ()
        table = [[*combo, len(rs), *(_mean_sd([r.get(m) for r in rs]) for m in metric_cols),
                  "yes" if all(r.get("integrity_ok") is True for r in rs) else "NO",
                  ", ".join(sorted({str(r.get("outcome")) for r in rs}))]
                 for combo, rs in combos.items()]
        headers = [*keys, "runs", *metric_cols, "integrity", "outcome"]
        if any(r.get("invariants_held") is not None for r in rows):     # a fault sweep
            table = [[*t, invariants_cell(rs)] for t, rs in zip(table, combos.values(),
                                                               strict=True)]
            headers.append("invariants")
        names = (*(f[0] for f in (*SWEEP_FIGURES, *FLEET_SWEEP_FIGURES)),
                 plotdisk.STORAGE_FIGURE)
        figures = [name for name in dict.fromkeys(names)
                   if (directory / f"{name}.png").is_file()]
        text = [f"# Sweep {directory.name}", "", *sweep_load_lines(rows),
                f"{len(rows)} runs, {len(combos)} combinations; values are mean ± standard "
                "deviation over repetitions.", "", *markdown(headers, table), ""]
        text += [f"![{name}]({name}.png)\n" for name in figures]
    else:
        metrics = _json(directory / "metrics.json")
        if not metrics:
            raise FileNotFoundError(f"{directory}: neither summary.csv nor metrics.json")
        if metrics.get("fleet"):
            return _fleet_report(directory, metrics)
        text = [f"# Run {directory.name}", "", *load_lines(metrics), _title(directory, metrics),
                "", *markdown(("metric", "value"), run_rows(metrics)), ""]
        if metrics.get("links"):
            text += ["## WAN links", "", "The path figures above sum the RTTs of the links the "
                     "migration crosses and take the smallest rate.", "",
                     *markdown(LINK_TABLE, link_rows(metrics)), ""]
        text += disk_lines(metrics) + fault_lines(metrics)
        if (directory / "timeline.png").is_file():
            text.append("![timeline](timeline.png)\n")
    path.write_text("\n".join(text))
    return path


def _fleet_report(directory: Path, metrics: Mapping[str, Any]) -> Path:
    """report.md of a fleet run (``experiments.fleet.report``)."""
    from experiments.fleet.report import fleet_section

    moves_file = directory / "fleet" / "moves.csv"
    moves = read_csv(moves_file) if moves_file.is_file() else []
    images = {name: f"{name}.png" for name in ("gantt", "host_load", "wan")
              if (directory / f"{name}.png").is_file()}
    path = directory / "report.md"
    path.write_text("\n".join([f"# Run {directory.name}", "", *load_lines(metrics),
                               fleet_section(dict(metrics), moves, images)]))
    return path
