"""``make bench`` (faults): the fault sweep (``experiments/faults.yaml``: every fault the testbed
injects, at live round 1 and at stop-copy, on a 64 MiB web VM across 50 ms), each cell judged
by the invariants its run checked afterwards (``experiments.faults.invariants``).

Target (issue: faults the testbed survives and injects): in every cell the VM runs at exactly
one site (no split brain), no write the guest acknowledged is lost, the clients reach it again
and nothing is left behind. An aborted migration is no failure here: a fault may well end one;
what must hold is the invariants.

Writes ``results/bench/<time>-faults/`` (``experiments.bench.harness``; each run's folder under
``runs/``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from experiments.bench.harness import Bench, attempt, entry, holds, testbed
from experiments.runner import run_experiment
from experiments.sweep import expand, load_sweep
from ground.table import render

log = logging.getLogger("wanmig.bench")

FAULTS = Path(__file__).resolve().parents[1] / "faults.yaml"


def judge(values: dict, m: dict) -> tuple[dict, object]:
    """One cell's row and its verdict."""
    inv = m.get("invariants") or {}
    what = f"{values.get('faults[0].kind')} at {values.get('faults[0].phase')}"
    row = {"fault": values.get("faults[0].kind"), "phase": values.get("faults[0].phase"),
           "outcome": m.get("outcome"), "downtime_ms": m.get("downtime_ms"),
           "one_site": inv.get("one_site"), "split_brain": inv.get("split_brain"),
           "lost_writes": inv.get("lost_writes"), "acked_writes": inv.get("acked_writes"),
           "reachable": inv.get("reachable"), "leftovers": inv.get("leftovers"),
           "held": inv.get("held")}
    if not inv:
        return row, holds(what, "not checked (the run ended before its VM existed)",
                          "invariants held", False)
    broken = [k for k, bad in (("split brain", inv.get("split_brain")),
                               ("not at one site", not inv.get("one_site")),
                               (f"{inv.get('lost_writes')} writes lost",
                                inv.get("lost_writes")),
                               ("unreachable", not inv.get("reachable")),
                               ("leftovers", inv.get("leftovers"))) if bad]
    return row, holds(what, "held" if not broken else ", ".join(broken), "invariants held",
                      bool(inv.get("held")))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.bench.faults", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spec", default=str(FAULTS), help="the fault sweep (experiments/faults.yaml)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    runs = expand(load_sweep(args.spec))
    testbed("the fault benchmark runs experiments")
    bench = Bench("faults", "Faults injected, invariants after each", argv,
                  meta={"spec": args.spec})
    for run in runs:
        log.info("fault cell %s", run.run_name)
        m, errors = attempt(lambda lab, run=run: run_experiment(run.spec, bench.run_dir(lab)),
                            run.run_name)
        row, verdict = judge(run.values, m or {"outcome": f"not run: {errors[-1][:60]}"})
        bench.add({"run": run.run_name, **row, "retried": errors}, verdict)

    def cell(v: object, fmt: str = "") -> str:
        return "-" if v is None else (f"{v:{fmt}}" if fmt else str(v))

    return bench.finish(render(
        ("fault", "phase", "outcome", "downtime ms", "lost/acked", "split brain", "reachable",
         "leftovers"),
        [(r["fault"], r["phase"], cell(r["outcome"])[:40], cell(r["downtime_ms"], ".0f"),
          f"{cell(r['lost_writes'])}/{cell(r['acked_writes'])}", cell(r["split_brain"]),
          cell(r["reachable"]), len(r["leftovers"] or [])) for r in bench.rows]))


if __name__ == "__main__":
    sys.exit(entry(main))
