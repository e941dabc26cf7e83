"""A fleet run's figures from what it stored: one row per migration (``fleet/moves.csv``), each
migration's goodput by round (``fleet/rates.csv``), the WAN's throughput (``fleet/wan.csv``),
the placement over time (``fleet/hosts.csv``) and the fleet's metrics: makespan against the
fleet model's prediction and lower bound (fed each move's measured compression, non-zero
share and dirty rate, and the links' measured goodput), imbalance before and after against
the threshold's target, moves against the placement's prediction, and lost writes.

Times in the CSVs are seconds from the fleet's start (the end of the warm-up, when the first
event may fire). A client's outage for one move is the longest gap between its probe replies
that ends within the move (from its start to 3 s after its end).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from experiments.fleet import drs
from experiments.fleet.costs import LOCAL_GOODPUT_MBPS, MoveModel
from experiments.fleet.fleetmodel import model_time_at, simulate
from experiments.fleet.types import MoveCost
from experiments.metrics import kv_integrity, link_metrics, longest_gap, parse_probes
from experiments.summary import read_csv, write_csv
from migrator.core.model import predict

log = logging.getLogger("wanmig.fleet")

MOVE_COLUMNS = ("vm", "move", "reason", "source", "destination", "source_site",
                "destination_site", "queued_t", "start_t", "end_t", "outcome", "setup_s",
                "total_time_s",
                "downtime_ms", "client_outage_ms", "bytes_on_wire", "avg_goodput_mbps",
                "predicted_time_s", "predicted_downtime_ms", "predicted_start_s",
                "predicted_end_s", "lost_writes")
OUTAGE_AFTER_S = 3.0


def outage_ms(probes: list[Any], start_t: float, end_t: float) -> float | None:
    """The longest gap between replies that ends within [start_t, end_t + OUTAGE_AFTER_S]."""
    replies = [p.t_reply for p in probes if p.t_reply is not None
               and start_t - 5.0 <= p.t_reply <= end_t + OUTAGE_AFTER_S]
    sent = [p.t_send for p in probes if p.t_send <= end_t + OUTAGE_AFTER_S]
    gap = longest_gap(replies, start_t, max(sent) if sent else None)
    return None if gap is None else gap[0] * 1e3


def collect_fleet(spec: Any, out: Path, run: Any, error: str | None, links: list[dict]
                  ) -> dict:
    """metrics.json of a fleet run (partial runs included), and its CSVs; ``links``: the
    preflight's records."""
    model = MoveModel(spec, links)
    t0 = run.times.get("fleet_start_t") if run is not None else None
    migs = list(run.migrations) if run is not None else []
    probes = {n: parse_probes(read_csv(out / "vms" / n / "probes.csv"))
              for n in (fv.name for fv in spec.fleet.vms)
              if (out / "vms" / n / "probes.csv").exists()}
    kv = {n: kv_integrity(read_csv(out / "vms" / n / "kv.csv"))
          for n in (fv.name for fv in spec.fleet.vms) if (out / "vms" / n / "kv.csv").exists()}
    rows, rates, sim_moves, release, time_at = [], [], [], {}, {}
    for mig in migs:
        res = getattr(mig, "result", None) or {}
        mv, tm = mig.move, mig.times
        queued = run.queued.get(mv.seq, (mv, tm.get("start_t", 0.0)))[1]
        start, end = tm.get("start_t"), tm.get("end_t")
        downtime = (tm["resumed_t"] - tm["paused_t"]) * 1e3 \
            if {"resumed_t", "paused_t"} <= tm.keys() else None
        inputs = model.measured(mv.vm, mv.source, mv.destination, res) if res else None
        alone = model_time_at(inputs) if inputs is not None else None
        total = res.get("total_time_s")
        row = {"vm": mv.vm, "move": mig.number, "reason": mv.reason, "source": mv.source,
               "destination": mv.destination, "source_site": model.site_of[mv.source],
               "destination_site": model.site_of[mv.destination],
               "queued_t": _rel(queued, t0), "start_t": _rel(start, t0), "end_t": _rel(end, t0),
               "outcome": "completed" if getattr(mig, "completed", False)
               else (mig.error or "failed"),
               "total_time_s": total, "downtime_ms": downtime,
               "setup_s": tm["rounds_start_t"] - start if start and "rounds_start_t" in tm
               else None,
               "client_outage_ms": outage_ms(probes.get(mv.vm, []), start, end)
               if start and end else None,
               "bytes_on_wire": res.get("bytes_on_wire"),
               "avg_goodput_mbps": res["bytes_on_wire"] * 8 / total / 1e6
               if total and res.get("bytes_on_wire") else None,
               "lost_writes": (kv.get(mv.vm) or {}).get("kv_readback_failures")}
        if alone is not None and inputs is not None:
            p = predict(inputs)             # alone on its path, as measured
            row["predicted_time_s"] = p.total_time_s
            row["predicted_downtime_ms"] = p.downtime_s * 1e3
            # The fleet model's move: its cost from what it measured, not the placement's
            # (which priced every page non-zero and incompressible).
            sim_moves.append(dataclasses.replace(mv, cost=MoveCost(
                p.total_time_s, p.downtime_s, p.bytes_on_wire)))
            release[mv.seq] = _rel(queued, t0) or 0.0
            time_at[mv.seq] = alone
        rows.append(row)
        rates += _rates(mig, mv.vm, t0)
    for mv, t, why in (run.not_started if run is not None else []):
        rows.append({"vm": mv.vm, "move": "", "reason": mv.reason, "source": mv.source,
                     "destination": mv.destination, "queued_t": _rel(t, t0), "outcome": why})
    metrics = _fleet_metrics(spec, run, rows, kv, links, model, sim_moves, release, time_at)
    fleet_dir = out / "fleet"
    fleet_dir.mkdir(parents=True, exist_ok=True)
    write_csv(fleet_dir / "moves.csv", MOVE_COLUMNS, rows)
    write_csv(fleet_dir / "rates.csv", ("vm", "move", "t0", "t1", "mbps"), rates)
    wan = [{**r, "t": _rel(r["t"], t0)} for r in (run.sampler.rows if run and run.sampler
                                                   else [])]
    write_csv(fleet_dir / "wan.csv", ("t", "link", "direction", "mbps"), wan)
    write_csv(fleet_dir / "hosts.csv", ("t", "host", "site", "state", "load",
                                        "memory_used_bytes", "vms"),
              run.host_rows if run is not None else [])
    if error is not None:
        metrics["outcome"] = f"failed: {error}"
    return metrics


def _rel(t: float | None, t0: float | None) -> float | None:
    return None if t is None or t0 is None else round(t - t0, 3)


def _rates(mig: Any, vm: str, t0: float | None) -> list[dict]:
    """Each round's goodput, on the fleet's clock (the rounds' own clock starts at round 0)."""
    start = mig.times.get("rounds_start_t")
    rounds = mig.dir / "migration" / "rounds.csv"
    if start is None or t0 is None or not rounds.exists():
        return []
    out = []
    for r in read_csv(rounds):
        a = start + float(r["t_start_s"]) - t0
        d = float(r["duration_s"])
        if d > 0:
            out.append({"vm": vm, "move": mig.number, "t0": round(a, 3), "t1": round(a + d, 3),
                        "mbps": float(r["bytes_on_wire"]) * 8 / d / 1e6})
    return out


def _fleet_metrics(spec: Any, run: Any, rows: list[dict], kv: dict, links: list[dict],
                   model: MoveModel, sim_moves: list, release: dict, time_at: dict) -> dict:
    done = [r for r in rows if r.get("outcome") == "completed"]
    started = [r for r in rows if r.get("start_t") is not None]
    first = min((r["queued_t"] for r in rows if r.get("queued_t") is not None), default=None)
    last = max((r["end_t"] for r in started if r.get("end_t") is not None), default=None)
    pred = None
    sched = getattr(run, "scheduler", None)
    if sim_moves and sched is not None:
        bws = model.link_bandwidth_Bps()
        try:
            pred = simulate(sim_moves, release, sched.limits, sched.order,
                            model.path, bws, lambda m, b: time_at[m.seq](b),
                            local_bandwidth_Bps=LOCAL_GOODPUT_MBPS * 1e6 / 8)
        except ValueError as exc:
            log.warning("the fleet model could not run: %s", exc)
        if pred is not None:
            by_seq = {r["seq"]: r for r in pred.rows}
            seqs = {m.seq: m for m in sim_moves}
            for row, mig in zip(rows, run.migrations, strict=False):
                p = by_seq.get(mig.move.seq) if mig.move.seq in seqs else None
                if p is not None:
                    row["predicted_start_s"], row["predicted_end_s"] = p["start_s"], p["end_s"]
    hosts = run.host_infos() if run is not None else {}
    before_vms = {fv.name: fv.host for fv in spec.fleet.vms}
    after = run.where() if run is not None else before_vms
    before_hosts = {n: dataclasses.replace(h, state="normal") for n, h in hosts.items()}
    n_normal = sum(1 for h in hosts.values() if h.state == "normal")
    target = drs.target_imbalance(spec.fleet.drs.threshold, max(n_normal, 1))
    makespan = last - first if first is not None and last is not None else None
    lost = sum((k.get("kv_readback_failures") or 0) for k in kv.values())
    return {
        "fleet": True, "vms": len(spec.fleet.vms), "outcome": "completed"
        if rows and len(done) == len(rows) else ("no moves" if not rows else
                                                 f"{len(rows) - len(done)} of {len(rows)} "
                                                 "moves did not complete"),
        "moves_total": len(rows), "moves_completed": len(done),
        "moves_failed": len(rows) - len(done),
        "makespan_s": makespan,
        "predicted_makespan_s": None if pred is None else pred.makespan_s - (first or 0.0),
        "makespan_lower_bound_s": None if pred is None else pred.lower_bound_s - (first or 0.0),
        "imbalance_before": drs.imbalance(before_hosts, run.vm_infos(before_vms).values())
        if run is not None else None,
        "imbalance_after": drs.imbalance(hosts, run.vm_infos(after).values())
        if run is not None else None,
        "imbalance_target": target,
        "rebalance_predicted_moves": run.rebalance_predicted if run is not None else None,
        "rebalance_moves": sum(1 for r in done if r.get("reason") == "rebalance"),
        "lost_writes_total": lost if kv else None,
        "kv_integrity_ok": all(k["kv_integrity_ok"] for k in kv.values()) if kv else None,
        "downtime_max_ms": max((r["downtime_ms"] for r in done if r.get("downtime_ms")),
                               default=None),
        "concurrency": dataclasses.asdict(sched.limits) if sched is not None else None,
        "order": spec.fleet.execution.order, "placement_after": after,
        "links": link_metrics(links)["links"],
        "integrity_ok": bool(kv) and lost == 0 and all(
            r.get("outcome") == "completed" for r in rows),
    }
