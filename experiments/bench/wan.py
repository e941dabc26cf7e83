"""``make bench`` (migrator across the emulated WAN): a 256 MiB VM with the web preset migrated
between two sites at 150 ms RTT and 250 Mbit/s (the seed's operating point), by the experiment
runner, repeated; then the data path's rows at gigabit Ethernet.

Targets of the main case (issue: pre-copy live migrator), in every run:
- link utilisation (the migration's mean goodput / the link's bandwidth) at least 90 %;
- total time within 1.25x of the model's lower bound (the analytic model fed with the link's
  rate as TCP payload, the measured compression ratio and the workload's dirty rate). Total
  time runs from the first page sent to the guest resumed at the destination, as the model's;
  the setup before it (connecting, measuring the codecs) is reported in its own column;
- downtime within the target plus one RTT.

The data path's rows (issue: the testbed must not measure itself):
- the seed's headline, 1 ms RTT, 1000 Mbit/s, a 256 MiB web VM: the migration (first page to
  resume) within 2 s, downtime within 100 ms;
- 150 ms, 1000 Mbit/s, a 1 GiB web VM: mean goodput at least 85 % of the link's, with the
  network's MTU at 1500 and at 9000 (jumbo frames, which the seed recommends for the
  migration network).

Every row says whether its run was testbed-bound (``experiments.load``); a verdict on one says
so. Writes ``results/bench/<time>-wan/`` (``experiments.bench.harness``; every run's folder under
``runs/``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from typing import Any

from experiments.bench.harness import Bench, Verdict, at_least, at_most, entry, holds, testbed
from experiments.load.bound import ROW_FIGURES
from experiments.metrics import nonzero_fraction, prediction, round0_dirty_mibps
from experiments.runner import run_experiment
from experiments.spec import parse_experiment
from ground.table import render

log = logging.getLogger("wanmig.bench")


def spec(rtt_ms: float, bw_mbps: float, memory: str, codec: str, streams: int = 4,
         mtu: int = 1500):
    return parse_experiment({
        "name": "wanbench",
        "topology": {"wan": [{"between": ["dc1", "dc2"], "rtt_ms": rtt_ms, "bw_mbps": bw_mbps,
                              "mtu": mtu}]},
        "vm": {"memory": memory, "workload": "web"},
        "policy": {"codec": codec, "streams": streams},
        "clients": {"kv_ops": 20, "kv_rate_hz": 5},
        "schedule": {"warmup_s": 5, "cooldown_s": 3}})


def judge(s: Any, m: dict, result: dict | None) -> tuple[dict, list[Verdict]]:
    """One run's row and its three verdicts."""
    bw = s.topology.wan[0].bw_mbps
    rtt = s.topology.wan[0].rtt_ms
    bound = prediction(s, compression_ratio=m.get("compression_ratio") or 1.0,
                       nonzero_frac=nonzero_fraction(result, s.vm.memory_bytes),
                       dirty_rate_mibps=round0_dirty_mibps(result))
    util = (m.get("mean_goodput_mbps") or 0.0) / bw
    lower = bound["predicted_total_time_s"]
    total = m.get("total_time_s")
    down = m.get("downtime_ms")
    limit = s.policy.downtime_target_ms + rtt
    row = {"outcome": m.get("outcome"), "integrity_ok": m.get("integrity_ok"),
           "utilisation": util, "total_time_s": total, "model_lower_bound_s": lower,
           "time_ratio": total / lower if total and lower else None,
           "downtime_ms": down, "downtime_limit_ms": limit,
           "client_outage_ms": m.get("client_outage_ms"), "rounds": m.get("rounds"),
           "setup_s": (result or {}).get("setup_s"),
           "compression_ratio": m.get("compression_ratio"),
           "mean_goodput_mbps": m.get("mean_goodput_mbps"),
           "link_goodput_mbps": m.get("link_goodput_mbps"),
           **{k: m.get(k) for k in ROW_FIGURES}}
    inf = float("inf")
    return row, [at_least("link utilisation", 100 * util, 90.0, fmt=".0f", unit=" %"),
                 at_most("total time / model bound", row["time_ratio"] or inf, 1.25, unit="x"),
                 at_most("downtime", down if down is not None else inf, limit, fmt=".0f",
                         unit=" ms")]


@dataclasses.dataclass(frozen=True)
class Row:
    """A data-path row: one run, its own targets."""

    label: str
    rtt_ms: float
    bw_mbps: float
    memory: str
    mtu: int = 1500
    max_total_s: float | None = None          # first page to resume
    max_downtime_ms: float | None = None
    min_goodput_frac: float | None = None     # of the link's as the preflight measured it


DATA_PATH = (Row("headline: 1 ms, 1000 Mbit/s, 256 MiB", 1.0, 1000.0, "256MiB",
                 max_total_s=2.0, max_downtime_ms=100.0),
             Row("150 ms, 1000 Mbit/s, 1 GiB", 150.0, 1000.0, "1GiB", min_goodput_frac=0.85),
             Row("150 ms, 1000 Mbit/s, 1 GiB, MTU 9000", 150.0, 1000.0, "1GiB", mtu=9000,
                 min_goodput_frac=0.85))


def judge_row(r: Row, m: dict) -> tuple[dict, list[Verdict]]:
    inf = float("inf")
    total, down = m.get("total_time_s"), m.get("downtime_ms")
    goodput, link = m.get("mean_goodput_mbps"), m.get("link_goodput_mbps")
    frac = goodput / link if goodput and link else None
    row = {"row": r.label, "outcome": m.get("outcome"), "integrity_ok": m.get("integrity_ok"),
           "total_time_s": total, "downtime_ms": down, "mean_goodput_mbps": goodput,
           "link_goodput_mbps": link, "goodput_frac": frac,
           "predicted_total_time_s": m.get("predicted_total_time_s"),
           "compression_ratio": m.get("compression_ratio"), "rounds": m.get("rounds"),
           **{k: m.get(k) for k in ROW_FIGURES}}
    out = [holds(f"{r.label}: outcome", str(m.get("outcome")), "completed, integrity",
                 m.get("outcome") == "completed" and m.get("integrity_ok") is True)]
    if r.max_total_s is not None:
        out.append(at_most(f"{r.label}: migration", total if total is not None else inf,
                           r.max_total_s, unit=" s"))
    if r.max_downtime_ms is not None:
        out.append(at_most(f"{r.label}: downtime", down if down is not None else inf,
                           r.max_downtime_ms, fmt=".0f", unit=" ms"))
    if r.min_goodput_frac is not None:
        out.append(at_least(f"{r.label}: goodput / link's", 100 * (frac or 0.0),
                            100 * r.min_goodput_frac, fmt=".0f", unit=" %"))
    return row, out


def data_path_table(rows: list[dict]) -> str:
    def f(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)
    return render(("row", "outcome", "total s", "model s", "downtime ms", "goodput Mbit/s",
                   "link's Mbit/s", "goodput / link's", "testbed-bound", "least idle"),
                  [(r["row"], r["outcome"], f(r["total_time_s"], ".2f"),
                    f(r["predicted_total_time_s"], ".2f"), f(r["downtime_ms"], ".0f"),
                    f(r["mean_goodput_mbps"], ".0f"), f(r["link_goodput_mbps"], ".0f"),
                    f(r["goodput_frac"], ".0%"), "yes" if r["testbed_bound"] else "no",
                    f(r["testbed_cpu_idle_min"], ".0%")) for r in rows])


def table(rows: list[dict], verdicts: list[list[Verdict]]) -> str:
    return render(("run", "outcome", "utilisation", "total s / bound s", "downtime ms",
                   "outage ms", "rounds", "ratio", "setup s"),
                  [(i, r["outcome"], util.cell(),
                    f"{r['total_time_s']:.2f} / {r['model_lower_bound_s']:.2f}: {time_.cell()}"
                    if r["time_ratio"] else "-", down.cell(),
                    f"{r['client_outage_ms']:.0f}" if r["client_outage_ms"] else "-",
                    r["rounds"], f"{r['compression_ratio']:.2f}" if r["compression_ratio"]
                    else "-", f"{r['setup_s']:.2f}" if r.get("setup_s") is not None else "-")
                   for i, (r, (util, time_, down)) in enumerate(zip(rows, verdicts, strict=True),
                                                              start=1)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.bench.wan", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--rtt", type=float, default=150.0)
    p.add_argument("--bw", type=float, default=250.0)
    p.add_argument("--memory", default="256MiB")
    p.add_argument("--codec", default="adaptive")
    p.add_argument("--streams", type=int, default=4, help="data streams at the start")
    p.add_argument("--rows", choices=("all", "main", "data-path"), default="all",
                   help="the main case's runs, the data path's rows, or both")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    testbed("the WAN benchmark runs experiments")
    s = spec(args.rtt, args.bw, args.memory, args.codec, args.streams)
    bench = Bench("wan", f"Migration across the WAN: {args.memory} web, {args.rtt:g} ms, "
                         f"{args.bw:g} Mbit/s, {args.codec}", argv)
    per_run: list[list[Verdict]] = []
    for i in range(1, args.runs + 1 if args.rows != "data-path" else 1):
        run_dir = bench.run_dir(f"run{i}")
        m = run_experiment(s, run_dir)
        result_path = run_dir / "migration" / "result.json"
        result = json.loads(result_path.read_text()) if result_path.exists() else None
        row, verdicts = judge(s, m, result)
        per_run.append(verdicts)
        bench.add({"run": i, **row}, *[dataclasses.replace(v, what=f"run {i}: {v.what}")
                                       for v in verdicts])
    main_rows = list(bench.rows)
    if args.rows != "main":
        for j, r in enumerate(DATA_PATH, start=1):
            log.info("data path row: %s", r.label)
            m = run_experiment(spec(r.rtt_ms, r.bw_mbps, r.memory, args.codec, args.streams,
                                    r.mtu), bench.run_dir(f"datapath{j}"))
            bench.add(*_row_and_verdicts(r, m))
    parts = [table(main_rows, per_run)] if main_rows else []
    if len(bench.rows) > len(main_rows):
        parts.append(data_path_table(bench.rows[len(main_rows):]))
    return bench.finish("\n\n".join(parts))


def _row_and_verdicts(r: Row, m: dict) -> tuple[dict, ...]:
    row, verdicts = judge_row(r, m)
    return (row, *verdicts)


if __name__ == "__main__":
    sys.exit(entry(main))
