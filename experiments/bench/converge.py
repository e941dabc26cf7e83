"""``make bench`` (hard guests): pre-copy against guests that rewrite a uniform working set with
random whole pages, which no codec shrinks, across the emulated WAN.

The grid: RTT {50, 150} ms x link {100, 250} Mbit/s x a write rate of 40 % and 70 % of the
link's rate; 256 MiB VMs on the 100 Mbit/s links and 512 MiB on the 250 Mbit/s ones (round 0
takes about 20 s on either), half of the memory written uniformly, every write a whole page
of random bytes (the ``crypto`` preset at another rate). Each run is a whole experiment (the
runner: network, link check, controller, clients), with the default policy (adaptive codec,
auto-converge, 300 ms downtime target).

Targets, one verdict each per run:

- it completes without forcing: stop reason ``converged`` (throttled or not), in at most 12
  live rounds;
- downtime <= the target + one RTT;
- mean goodput during pre-copy >= 90 % of the link's TCP goodput measured before the run
  (``link_goodput_mbps``, iperf3 over the path);
- total time <= 1.25x the model's prediction fed with what the run measured: the link's TCP
  goodput, the compression ratio, the non-zero share of round 0 and the distinct dirty rate
  over the live rounds (duration-weighted, so a throttle counts).

``python -m experiments.bench.converge [--rtt 150] [--bw 100] [--fracs 0.4 0.7]``; writes
``results/bench/<time>-converge/`` (``experiments.bench.harness``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from typing import Any

from experiments.bench.harness import Bench, Verdict, at_least, at_most, entry, holds, testbed
from experiments.metrics import nonzero_fraction, prediction
from experiments.runner import run_experiment
from experiments.spec import parse_experiment
from ground.table import render
from migrator.core.records import RoundRecord
from migrator.core.report import live_dirty_Bps

log = logging.getLogger("wanmig.bench")
MIB = 1024 * 1024
MAX_ROUNDS = 12


def memory_for(bw_mbps: float) -> str:
    return "256MiB" if bw_mbps <= 100 else "512MiB"


def spec(rtt_ms: float, bw_mbps: float, frac: float) -> Any:
    rate = frac * bw_mbps * 1e6 / 8 / MIB
    return parse_experiment({
        "name": "convergebench",
        "description": f"{frac:.0%} of {bw_mbps:g} Mbit/s, uniform random pages, {rtt_ms:g} ms",
        "topology": {"wan": [{"between": ["dc1", "dc2"], "rtt_ms": rtt_ms,
                              "bw_mbps": bw_mbps}]},
        "vm": {"memory": memory_for(bw_mbps),
               "workload": {"preset": "crypto", "dirty_rate_mibps": round(rate, 3)}},
        "clients": {"kv_ops": 20, "kv_rate_hz": 5},
        "schedule": {"warmup_s": 3, "cooldown_s": 2}})


def live_dirty_mibps(result: dict | None) -> float | None:
    """The report's duration-weighted distinct dirty rate over the live rounds, in MiB/s."""
    rounds = [RoundRecord(**r) for r in (result or {}).get("rounds") or []]
    return live_dirty_Bps(rounds) / MIB if rounds else None


def judge(s: Any, m: dict, result: dict | None) -> tuple[dict, list[Verdict]]:
    rtt = s.topology.wan[0].rtt_ms
    tcp = m.get("link_goodput_mbps")
    bound = prediction(s, compression_ratio=m.get("compression_ratio") or 1.0,
                       nonzero_frac=nonzero_fraction(result, s.vm.memory_bytes),
                       goodput_mbps=tcp, dirty_rate_mibps=live_dirty_mibps(result))
    model = bound["predicted_total_time_s"]
    total, down = m.get("total_time_s"), m.get("downtime_ms")
    goodput = m.get("mean_goodput_mbps") or 0.0
    limit = s.policy.downtime_target_ms + rtt
    row = {"rtt_ms": rtt, "bw_mbps": s.topology.wan[0].bw_mbps,
           "memory_mib": s.vm.memory_bytes // MIB,
           "write_mibps": s.vm.workload.dirty_rate_mibps, "outcome": m.get("outcome"),
           "stop_reason": m.get("stop_reason"), "rounds": m.get("rounds"),
           "throttle_max": m.get("throttle_max"), "total_time_s": total, "model_s": model,
           "time_ratio": total / model if total and model else None, "downtime_ms": down,
           "downtime_limit_ms": limit, "mean_goodput_mbps": goodput, "link_goodput_mbps": tcp,
           "compression_ratio": m.get("compression_ratio"),
           "integrity_ok": m.get("integrity_ok"), "client_outage_ms": m.get("client_outage_ms")}
    inf = float("inf")
    converged = m.get("outcome") == "completed" and m.get("stop_reason") == "converged"
    return row, [
        holds("converged", f"{m.get('outcome')} ({m.get('stop_reason')})",
              "completed (converged)", converged),
        at_most("live rounds", m.get("rounds") or inf, MAX_ROUNDS, fmt=".0f"),
        at_most("downtime", down if down is not None else inf, limit, fmt=".0f", unit=" ms"),
        at_least("goodput / link TCP goodput", 100 * goodput / tcp if tcp else 0.0, 90.0,
                 fmt=".0f", unit=" %"),
        at_most("total time / model", row["time_ratio"] or inf, 1.25, unit="x")]


def table(rows: list[dict], verdicts: list[list[Verdict]]) -> str:
    def num(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)
    return render(
        ("RTT ms", "Mbit/s", "MiB", "writes MiB/s", "outcome", "rounds", "throttle",
         "downtime ms", "goodput / TCP", "total s / model s", "ratio", "integrity"),
        [(f"{r['rtt_ms']:g}", f"{r['bw_mbps']:g}", r["memory_mib"], f"{r['write_mibps']:.1f}",
          conv.cell(), rounds.cell(), num(r["throttle_max"], ".2f"), down.cell(),
          f"{r['mean_goodput_mbps']:.0f} / {num(r['link_goodput_mbps'], '.0f')}: {gp.cell()}",
          f"{num(r['total_time_s'], '.1f')} / {num(r['model_s'], '.1f')}: {time_.cell()}",
          num(r["compression_ratio"], ".2f"), r["integrity_ok"])
         for r, (conv, rounds, down, gp, time_) in zip(rows, verdicts, strict=True)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.bench.converge", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rtt", type=float, nargs="+", default=[50.0, 150.0])
    p.add_argument("--bw", type=float, nargs="+", default=[100.0, 250.0])
    p.add_argument("--fracs", type=float, nargs="+", default=[0.4, 0.7],
                   help="write rates as fractions of the link's rate")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    testbed("the convergence benchmark runs experiments")
    bench = Bench("converge", "Pre-copy on hard guests: uniform working sets of random pages",
                  argv)
    per_run: list[list[Verdict]] = []
    for rtt in args.rtt:
        for bw in args.bw:
            for frac in args.fracs:
                s = spec(rtt, bw, frac)
                label = f"rtt{rtt:g}-bw{bw:g}-w{round(frac * 100)}"
                run_dir = bench.run_dir(label)
                m = run_experiment(s, run_dir)
                path = run_dir / "migration" / "result.json"
                result = json.loads(path.read_text()) if path.exists() else None
                row, verdicts = judge(s, m, result)
                per_run.append(verdicts)
                bench.add({"run": label, **row},
                          *[dataclasses.replace(v, what=f"{label}: {v.what}") for v in verdicts])
    return bench.finish(table(bench.rows, per_run))


if __name__ == "__main__":
    sys.exit(entry(main))
