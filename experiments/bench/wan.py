"""``make bench`` (migrator across the emulated WAN): a 256 MiB VM with the web preset migrated
between two sites at 150 ms RTT and 100 Mbit/s, by the experiment runner, repeated.

Targets (issue: pre-copy live migrator):
- link utilisation (the migration's mean goodput / the link's bandwidth) at least 90 %;
- total time within 1.25x of the model's lower bound (the analytic model fed with the link's
  rate as TCP payload, the measured compression ratio and the workload's dirty rate). Total
  time runs from the first page sent to the guest resumed at the destination, as the model's;
  the setup before it (connecting, measuring the codecs) is reported in its own column;
- downtime within the target plus one RTT.

Writes ``results/bench/<time>-wan/`` (``experiments.bench.harness``; every run's folder under
``runs/``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from typing import Any

from experiments.bench.harness import Bench, Verdict, at_least, at_most, entry, testbed
from experiments.metrics import nonzero_fraction, prediction, round0_dirty_mibps
from experiments.runner import run_experiment
from experiments.spec import parse_experiment
from ground.table import render

log = logging.getLogger("wanmig.bench")


def spec(rtt_ms: float, bw_mbps: float, memory: str, codec: str, streams: int = 4):
    return parse_experiment({
        "name": "wanbench",
        "topology": {"wan": [{"between": ["dc1", "dc2"], "rtt_ms": rtt_ms, "bw_mbps": bw_mbps}]},
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
           "mean_goodput_mbps": m.get("mean_goodput_mbps")}
    inf = float("inf")
    return row, [at_least("link utilisation", 100 * util, 90.0, fmt=".0f", unit=" %"),
                 at_most("total time / model bound", row["time_ratio"] or inf, 1.25, unit="x"),
                 at_most("downtime", down if down is not None else inf, limit, fmt=".0f",
                         unit=" ms")]


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
    p.add_argument("--bw", type=float, default=100.0)
    p.add_argument("--memory", default="256MiB")
    p.add_argument("--codec", default="adaptive")
    p.add_argument("--streams", type=int, default=4, help="data streams at the start")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    testbed("the WAN benchmark runs experiments")
    s = spec(args.rtt, args.bw, args.memory, args.codec, args.streams)
    bench = Bench("wan", f"Migration across the WAN: {args.memory} web, {args.rtt:g} ms, "
                         f"{args.bw:g} Mbit/s, {args.codec}", argv)
    per_run: list[list[Verdict]] = []
    for i in range(1, args.runs + 1):
        run_dir = bench.run_dir(f"run{i}")
        m = run_experiment(s, run_dir)
        result_path = run_dir / "migration" / "result.json"
        result = json.loads(result_path.read_text()) if result_path.exists() else None
        row, verdicts = judge(s, m, result)
        per_run.append(verdicts)
        bench.add({"run": i, **row}, *[dataclasses.replace(v, what=f"run {i}: {v.what}")
                                       for v in verdicts])
    return bench.finish(table(bench.rows, per_run))


if __name__ == "__main__":
    sys.exit(entry(main))
