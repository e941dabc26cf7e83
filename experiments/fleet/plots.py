"""A fleet run's figures, drawn from its stored CSV rows only (``fleet/*.csv``), one PNG each.

* ``gantt``: a row per VM, a bar per move from its start to its end coloured by reason (failed
  moves hatched with a red outline), the time it waited in the queue as a thin light bar before
  it, and the fleet model's predicted start..end as a thin outline under it: how far the
  schedule the model foresaw is from the one that ran;
* ``host_load``: each host's load over time as steps (a host in maintenance or degraded dashed
  while it is so), and the mean load of the normal hosts +/- the imbalance target as a band;
* ``wan_utilisation``: the WAN links' measured throughput per direction against their capacity,
  and under it each migration's goodput per round stacked, so a reader sees how concurrent
  migrations share the links.

Rows hold the CSV's strings (``experiments.summary.read_csv``) or numbers; an empty cell is
unknown; an empty input gives a figure saying so. Times: seconds from the fleet's start.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from experiments.plotstyle import STYLE  # noqa: E402
from experiments.summary import cell  # noqa: E402

log = logging.getLogger("wanmig.plot")

REASON_COLORS = {"scheduled": "#1f77b4", "evacuate": "#ff7f0e", "rebalance": "#2ca02c",
                 "degraded": "#9467bd"}
OTHER_REASON = "#7f7f7f"
FAILED_EDGE = "#d62728"
FAILED_HATCH = "xxx"
QUEUED_COLOR = "#d9d9d9"
PREDICTED_EDGE = "#525252"
STATE_STYLES = {"normal": "-", "maintenance": "--", "degraded": ":"}
SERIES_CMAP = "tab20"
MIN_BAR_S = 0.05        # a zero-length move still shows
NO_MIGRATIONS = "no migrations"
BAR, THIN = 0.5, 0.14   # bar heights in rows


def num(value: Any) -> float | None:
    """A cell as a float; None when empty, missing or not a number."""
    if isinstance(value, str):
        value = cell(value.strip())
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def failed(row: Mapping[str, Any]) -> bool:
    return str(row.get("outcome") or "").startswith("failed")


def _save(fig: Any, path: Path) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", bbox_inches="tight", metadata={"Software": None})
    finally:
        plt.close(fig)
    return path


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)


# --- Gantt -------------------------------------------------------------------------------------

def _bar_end(row: Mapping[str, Any], start: float) -> float:
    end = num(row.get("end_t"))
    end = start + (num(row.get("total_time_s")) or 0.0) if end is None else end
    return max(end, start + MIN_BAR_S)


def _gantt_row(ax: Any, y: float, row: Mapping[str, Any]) -> None:
    queued, start = num(row.get("queued_t")), num(row.get("start_t"))
    if queued is not None:
        until = start if start is not None else _bar_end(row, queued)
        ax.barh(y, max(until - queued, MIN_BAR_S), left=queued, height=THIN,
                color=QUEUED_COLOR, lw=0, zorder=1)
    if start is not None:
        bad = failed(row)
        ax.barh(y, _bar_end(row, start) - start, left=start, height=BAR, zorder=2,
                color=REASON_COLORS.get(str(row.get("reason")), OTHER_REASON),
                edgecolor=FAILED_EDGE if bad else "white", lw=1.5 if bad else 0.5,
                hatch=FAILED_HATCH if bad else None)
    elif queued is not None:                    # never started: a cross where it was queued
        ax.plot([queued], [y], marker="x", color=FAILED_EDGE, ms=7, zorder=3)
    p0, p1 = num(row.get("predicted_start_s")), num(row.get("predicted_end_s"))
    if p0 is not None and p1 is not None:
        ax.barh(y + BAR / 2 + THIN / 2 + 0.03, max(p1 - p0, MIN_BAR_S), left=p0, height=THIN,
                color="none", edgecolor=PREDICTED_EDGE, lw=0.8, zorder=2)


def gantt(moves: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """A row per VM (in the order of their first queueing), a bar per move; see the module."""
    with plt.rc_context(STYLE):
        first: dict[str, float] = {}
        for r in moves:
            vm, t = str(r.get("vm")), num(r.get("queued_t")) or 0.0
            first[vm] = min(first.get(vm, t), t)
        vms = sorted(first, key=lambda v: (first[v], v))
        fig, ax = plt.subplots(figsize=(8, 1.2 + 0.45 * max(len(vms), 2)))
        if not moves:
            _empty(ax, NO_MIGRATIONS)
            return _save(fig, path)
        rows = {vm: i for i, vm in enumerate(vms)}
        for r in moves:
            _gantt_row(ax, rows[str(r.get("vm"))], r)
        ax.set_yticks(range(len(vms)), vms)
        ax.set_ylim(len(vms) - 0.3, -0.7)       # the first VM on top, room for the outlines
        ax.set_xlim(left=0)
        ax.set_xlabel("time since the fleet started (s)")
        reasons = sorted({str(r.get("reason")) for r in moves})
        handles = [Patch(color=REASON_COLORS.get(x, OTHER_REASON), label=x) for x in reasons]
        if any(failed(r) for r in moves):
            handles.append(Patch(facecolor="white", edgecolor=FAILED_EDGE, hatch=FAILED_HATCH,
                                 label="failed"))
        handles += [Patch(color=QUEUED_COLOR, label="queued"),
                    Patch(facecolor="none", edgecolor=PREDICTED_EDGE, label="model")]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        done = sum(str(r.get("outcome")) == "completed" for r in moves)
        ax.set_title(f"{len(moves)} moves of {len(vms)} VMs, {done} completed")
        return _save(fig, path)


# --- host load ---------------------------------------------------------------------------------

def _samples(hosts: Sequence[Mapping[str, Any]]) -> dict[str, list[tuple[float, float, str]]]:
    """host -> [(t, load, state)] sorted by time; an empty load is the host's previous one
    (a row without a time, or without a load and none before it, is left out)."""
    raw: dict[str, list[tuple[float, float | None, str]]] = {}
    for r in hosts:
        t = num(r.get("t"))
        if t is None:
            log.warning("hosts.csv row without a time, left out: %s", dict(r))
            continue
        state = str(r.get("state") or "normal")
        raw.setdefault(str(r.get("host")), []).append((t, num(r.get("load")), state))
    out: dict[str, list[tuple[float, float, str]]] = {}
    for host, pts in raw.items():
        last = None
        for t, load, state in sorted(pts, key=lambda p: p[0]):
            last = load if load is not None else last
            if last is not None:
                out.setdefault(host, []).append((t, last, state))
    return out


def mean_load(samples: Mapping[str, Sequence[tuple[float, float, str]]]
              ) -> tuple[list[float], list[float]]:
    """(times, mean load) at each change: the mean over the hosts in state normal then (over
    every host known then when none is)."""
    times = sorted({p[0] for pts in samples.values() for p in pts})
    means = []
    for t in times:
        now = [[p for p in pts if p[0] <= t][-1] for pts in samples.values() if pts[0][0] <= t]
        normal = [p[1] for p in now if p[2] == "normal"] or [p[1] for p in now]
        means.append(sum(normal) / len(normal))
    return times, means


def host_load(hosts: Sequence[Mapping[str, Any]], path: Path,
              target: float | None = None) -> Path:
    """Each host's load as steps over time, dashed (maintenance) or dotted (degraded) while it
    is so; the mean load +/- ``target`` shaded when given."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(8, 4))
        samples = _samples(hosts)
        if not samples:
            _empty(ax, f"{NO_MIGRATIONS}: no placement recorded")
            return _save(fig, path)
        end = max(p[0] for pts in samples.values() for p in pts)
        for i, (host, pts) in enumerate(sorted(samples.items())):
            color = f"C{i % 8}"
            ends = [p[0] for p in pts[1:]] + [end]
            for j, ((t, load, state), t1) in enumerate(zip(pts, ends, strict=True)):
                ax.plot([t, max(t1, t)], [load, load], color=color,
                        ls=STATE_STYLES.get(state, "-."), label=host if j == 0 else None)
                if j + 1 < len(pts):
                    ax.plot([t1, t1], [load, pts[j + 1][1]], color=color, lw=0.8)
            if end == pts[0][0]:
                ax.plot([end], [pts[0][1]], "o", color=color, ms=4)
        if target is not None:
            times, means = mean_load(samples)
            times, means = times + [end], means + means[-1:]
            ax.plot(times, means, color="#636363", lw=0.8, drawstyle="steps-post",
                    label="mean (normal hosts)")
            ax.fill_between(times, [max(m - target, 0.0) for m in means], [m + target for m in
                            means], step="post", color="k", alpha=0.1, lw=0, label=f"± {target:g}")
        states = [Line2D([], [], color="k", ls=STATE_STYLES[s], label=s)
                  for s in ("maintenance", "degraded")
                  if any(p[2] == s for pts in samples.values() for p in pts)]
        handles = ax.get_legend_handles_labels()[0] + states
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.set_xlabel("time since the fleet started (s)")     # y: a load of 0 above the axis
        ax.set_ylabel("load")
        ax.set_title("host load")
        return _save(fig, path)


# --- WAN ---------------------------------------------------------------------------------------

def _wan_panel(ax: Any, wan: Sequence[Mapping[str, Any]],
               capacity_mbps: Mapping[int, float] | None) -> None:
    series: dict[tuple[int, str], list[tuple[float, float]]] = {}
    for r in wan:
        t, mbps, link = num(r.get("t")), num(r.get("mbps")), num(r.get("link"))
        if t is not None and mbps is not None and link is not None:
            series.setdefault((int(link), str(r.get("direction"))), []).append((t, mbps))
    links = sorted({k[0] for k in series} | set(capacity_mbps or {}))
    for (link, direction), pts in sorted(series.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], color=f"C{links.index(link) % 8}",
                ls="-" if direction == "a->b" else (0, (4, 1.5)) if direction == "b->a" else ":",
                label=f"link {link} {direction}")
    for link, cap in sorted((capacity_mbps or {}).items()):
        ax.axhline(cap, color=f"C{links.index(link) % 8}", ls="--", lw=0.9, alpha=0.7,
                   label=f"link {link} capacity {cap:g}")
    if not series:
        _empty(ax, "no WAN throughput recorded")
    ax.set_ylabel("WAN throughput (Mbit/s)")
    ax.set_ylim(bottom=0)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))


def stacked_goodput(rates: Sequence[Mapping[str, Any]]
                    ) -> tuple[list[float], dict[str, list[float]]]:
    """(boundaries, {"vm #move": Mbit/s from each boundary to the next}): every round's
    goodput on a common time grid, 0 where the migration sent nothing (the last is 0)."""
    rounds: dict[str, list[tuple[float, float, float]]] = {}
    for r in rates:
        t0, t1, mbps = num(r.get("t0")), num(r.get("t1")), num(r.get("mbps"))
        if t0 is None or t1 is None or mbps is None or t1 <= t0:
            continue
        move = num(r.get("move"))
        name = f"{r.get('vm')} #{int(move) if move is not None else '?'}"
        rounds.setdefault(name, []).append((t0, t1, mbps))
    grid = sorted({t for rs in rounds.values() for t0, t1, _ in rs for t in (t0, t1)})
    values = {name: [sum(m for t0, t1, m in rs if t0 <= t < t1) for t in grid]
              for name, rs in rounds.items()}
    return grid, values


def series_color(i: int) -> Any:
    """The i-th migration's colour: tab20's ten strong colours, then its ten light ones."""
    cmap = plt.get_cmap(SERIES_CMAP)
    return cmap((2 * i + (i // 10) % 2) % 20)


def _goodput_panel(ax: Any, rates: Sequence[Mapping[str, Any]]) -> None:
    grid, values = stacked_goodput(rates)
    ax.set_ylabel("goodput per migration (Mbit/s)")
    ax.set_xlabel("time since the fleet started (s)")
    if not values:
        _empty(ax, NO_MIGRATIONS)
        return
    bottom = [0.0] * len(grid)
    for i, (name, vals) in enumerate(sorted(values.items())):
        top = [b + v for b, v in zip(bottom, vals, strict=True)]
        ax.fill_between(grid, bottom, top, step="post", color=series_color(i), lw=0,
                        alpha=0.85, label=name)
        bottom = top
    ax.plot(grid, bottom, color="k", lw=0.8, drawstyle="steps-post", label="sum")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=1 + len(values) // 16)


def wan_utilisation(wan: Sequence[Mapping[str, Any]], rates: Sequence[Mapping[str, Any]],
                    moves: Sequence[Mapping[str, Any]], path: Path,
                    capacity_mbps: Mapping[int, float] | None = None) -> Path:
    """Top: each WAN link and direction's measured Mbit/s, capacities dashed; bottom: each
    migration's goodput per round, stacked. ``moves`` shade the span some migration ran."""
    with plt.rc_context(STYLE):
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True,
                                          gridspec_kw={"height_ratios": [1, 1.2]})
        _wan_panel(top, wan, capacity_mbps)
        _goodput_panel(bottom, rates)
        for r in moves:
            start, end = num(r.get("start_t")), num(r.get("end_t"))
            if start is not None and end is not None and end > start:
                for ax in (top, bottom):
                    ax.axvspan(start, end, color="#c6dbef", alpha=0.15, lw=0, zorder=0)
        top.set_title(f"WAN utilisation, {len(moves)} migrations")
        top.set_xlim(left=0)
        fig.align_ylabels()
        return _save(fig, path)
