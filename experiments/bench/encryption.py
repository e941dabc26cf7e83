"""``make bench`` (encryption): what the migration channel's encryption costs, measured on the
quickstart (``experiments/quickstart.yaml``: 256 MiB web VM, 150 ms, 250 Mbit/s, adaptive codec),
run with ``policy.encryption`` at its default (aes-256-gcm) and at ``none``, alternately, so that
the machine's drift falls on both alike.

Target (issue: an authenticated, encrypted migration channel): encryption costs at most 10 % of
the quickstart's total time, medians against medians. Downtime and goodput are reported beside.

Writes ``results/bench/<time>-encryption/`` (``experiments.bench.harness``).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import statistics
import sys
from pathlib import Path

from experiments.bench.harness import Bench, at_most, attempt, entry, testbed
from experiments.runner import run_experiment
from experiments.spec import load_experiment
from ground.table import render

log = logging.getLogger("wanmig.bench")

QUICKSTART = Path(__file__).resolve().parents[1] / "quickstart.yaml"
MODES = ("aes-256-gcm", "none")


def cost(rows: list[dict]) -> tuple[dict[str, float | None], float | None]:
    """Median total time per encryption over the completed runs, and the relative cost."""
    med: dict[str, float | None] = {}
    for mode in MODES:
        times = [r["total_time_s"] for r in rows if r["encryption"] == mode
                 and r["outcome"] == "completed" and r["total_time_s"]]
        med[mode] = statistics.median(times) if times else None
    on, off = med[MODES[0]], med["none"]
    return med, (on / off - 1.0 if on and off else None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.bench.encryption",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=3, help="runs of each mode (3)")
    p.add_argument("--spec", default=str(QUICKSTART), help="experiment (the quickstart)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    base = load_experiment(args.spec)
    testbed("the encryption benchmark runs experiments")
    bench = Bench("encryption", f"Encryption's cost on {base.name}", argv,
                  meta={"spec": args.spec})
    for i in range(1, args.pairs + 1):
        for mode in MODES:
            spec = dataclasses.replace(base, policy=dataclasses.replace(base.policy,
                                                                        encryption=mode))
            label = f"{mode}-{i}"
            m, errors = attempt(lambda lab, spec=spec: run_experiment(spec, bench.run_dir(lab)),
                                label)
            m = m or {"outcome": f"not run: {errors[-1][:60]}"}
            bench.add({"pair": i, "encryption": mode, "recorded": m.get("encryption"),
                       "retried": errors,
                       "outcome": m.get("outcome"), "total_time_s": m.get("total_time_s"),
                       "downtime_ms": m.get("downtime_ms"),
                       "mean_goodput_mbps": m.get("mean_goodput_mbps"),
                       "rounds": m.get("rounds")})
    med, rel = cost(bench.rows)
    bench.meta["median_total_time_s"] = med
    bench.judge(at_most("encryption's cost, median total time", 100 * rel if rel is not None
                        else float("inf"), 10.0, fmt=".1f", unit=" %"))

    def num(v: float | None, fmt: str) -> str:
        return "-" if v is None else f"{v:{fmt}}"

    return bench.finish(render(
        ("pair", "encryption (recorded)", "outcome", "total s", "downtime ms", "Mbit/s",
         "rounds"),
        [(r["pair"], f"{r['encryption']} ({r['recorded']})", r["outcome"],
          num(r["total_time_s"], ".2f"), num(r["downtime_ms"], ".0f"),
          num(r["mean_goodput_mbps"], ".0f"), r["rounds"]) for r in bench.rows]),
        footer="medians: " + ", ".join(f"{k} {num(v, '.2f')} s" for k, v in med.items()))


if __name__ == "__main__":
    sys.exit(entry(main))
