"""``make bench`` (fleets): the shipped evacuation at each concurrency, a hard evacuation, and
the shipped rebalance, by the experiment runner.

- ``evacuate-c1``, ``-c2``, ``-c4``: ``experiments/evacuate.yaml``'s sweep, four 256 MiB web
  VMs leaving dc1h1 (maintenance mode) across 150 ms / 250 Mbit/s, at most 1, 2 or 4
  migrations at once;
- ``evacuate-hard-c2``: the same at concurrency 2 with the crypto workload (whole pages of
  random bytes: incompressible, uniform over half of memory);
- ``evacuate-many-c2``: eight 128 MiB web VMs leaving dc1h1 at concurrency 2;
- ``rebalance``: ``experiments/rebalance.yaml``, five VMs on one of three hosts, DRS threshold 3.

Targets (issue: fleets):
- an evacuation's makespan within 1.25x of the fleet model's (the single-migration model per
  move, fed that move's measured compression ratio, non-zero share and distinct dirty rate,
  the links' bandwidth as the preflight measured it shared among the moves running at once,
  and the same scheduler as the run: ``experiments.fleet.fleetmodel``); its lower bound is
  reported beside it;
- every VM's downtime within the downtime target plus one RTT;
- the rebalance reaches the threshold's target with no more moves than the placement
  predicted;
- zero lost client writes across all VMs, and every move completed.

Writes ``results/bench/<time>-fleet/`` (``experiments.bench.harness``).
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
from pathlib import Path
from typing import Any

from experiments.bench.harness import Bench, Verdict, at_most, attempt, entry, holds, testbed
from experiments.runner import run_experiment
from experiments.spec import load_experiment, parse_experiment
from experiments.sweep import expand, load_sweep
from ground.table import render

log = logging.getLogger("wanmig.bench")

HERE = Path(__file__).resolve().parents[1]
INF = float("inf")


def cases(names: list[str]) -> dict[str, Any]:
    """name -> experiment spec, from the shipped files."""
    evac = {f"evacuate-c{r.spec.fleet.execution.max_concurrent}": r.spec
            for r in expand(load_sweep(HERE / "evacuate.yaml"))}
    out: dict[str, Any] = dict(evac)
    if "evacuate-c2" in evac:
        from experiments.spec import resolved_dict

        hard = copy.deepcopy(resolved_dict(evac["evacuate-c2"]))
        hard["name"] = "evacuate-hard-c2"
        for v in hard["vms"]:
            v["workload"] = "crypto"
        hard["vm"]["workload"] = "crypto"
        out["evacuate-hard-c2"] = parse_experiment(hard)
        many = copy.deepcopy(resolved_dict(evac["evacuate-c2"]))
        many["name"] = "evacuate-many-c2"
        many["vm"]["memory"] = "128MiB"
        many["vms"] = [{"name": f"web{i}", "host": "dc1h1", "memory": "128MiB"}
                       for i in range(1, 9)]
        out["evacuate-many-c2"] = parse_experiment(many)
    out["rebalance"] = load_experiment(HERE / "rebalance.yaml")
    return {n: s for n, s in out.items() if n in names}


def judge(case: str, s: Any, m: dict) -> tuple[dict, list[Verdict]]:
    rtt = s.topology.wan[0].rtt_ms
    limit = s.policy.downtime_target_ms + rtt
    make, model = m.get("makespan_s"), m.get("predicted_makespan_s")
    lost = m.get("lost_writes_total")
    row = {"case": case, "outcome": m.get("outcome"), "moves": m.get("moves_total"),
           "completed": m.get("moves_completed"), "makespan_s": make,
           "model_makespan_s": model, "lower_bound_s": m.get("makespan_lower_bound_s"),
           "ratio": make / model if make and model else None,
           "downtime_max_ms": m.get("downtime_max_ms"), "downtime_limit_ms": limit,
           "imbalance_before": m.get("imbalance_before"),
           "imbalance_after": m.get("imbalance_after"), "target": m.get("imbalance_target"),
           "rebalance_moves": m.get("rebalance_moves"),
           "predicted_moves": m.get("rebalance_predicted_moves"), "lost_writes": lost,
           "concurrency": m.get("concurrency")}
    down = m.get("downtime_max_ms")
    verdicts = [holds(f"{case}: every move completed", str(m.get("outcome")), "completed",
                      m.get("outcome") == "completed"),
                holds(f"{case}: lost client writes", str(lost), "0", lost == 0),
                at_most(f"{case}: largest downtime", down if down is not None else INF, limit,
                        fmt=".0f", unit=" ms")]
    if case.startswith("evacuate"):
        verdicts.append(at_most(f"{case}: makespan / fleet model", row["ratio"] or INF, 1.25,
                                unit="x"))
    if case == "rebalance":
        after, target = m.get("imbalance_after"), m.get("imbalance_target")
        verdicts.append(at_most(f"{case}: imbalance after", after if after is not None else INF,
                                target if target is not None else -INF, fmt=".3f"))
        moves, predicted = m.get("rebalance_moves"), m.get("rebalance_predicted_moves")
        verdicts.append(at_most(f"{case}: moves made", moves if moves is not None else INF,
                                predicted if predicted is not None else -INF, fmt=".0f"))
    return row, verdicts


def _f(v: Any, fmt: str = ".1f") -> str:
    return "-" if v is None else f"{v:{fmt}}"


def table(rows: list[dict]) -> str:
    return render(("case", "outcome", "moves", "makespan s / model s (bound s)", "ratio",
                   "largest downtime ms", "imbalance before -> after (target)",
                   "rebalance moves / predicted", "lost"),
                  [(r["case"], r["outcome"], f"{r['completed']}/{r['moves']}",
                    f"{_f(r['makespan_s'])} / {_f(r['model_makespan_s'])} "
                    f"({_f(r['lower_bound_s'])})", _f(r["ratio"], ".2f"),
                    _f(r["downtime_max_ms"], ".0f"),
                    f"{_f(r['imbalance_before'], '.3f')} -> {_f(r['imbalance_after'], '.3f')} "
                    f"({_f(r['target'], '.3f')})",
                    f"{r['rebalance_moves']} / {r['predicted_moves']}", r["lost_writes"])
                   for r in rows])


def main(argv: list[str] | None = None) -> int:
    names = ["evacuate-c1", "evacuate-c2", "evacuate-c4", "evacuate-hard-c2",
             "evacuate-many-c2", "rebalance"]
    p = argparse.ArgumentParser(prog="python -m experiments.bench.fleet", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", default=names, choices=names)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    testbed("the fleet benchmark runs experiments")
    bench = Bench("fleet", "Fleets: evacuation at concurrency 1, 2, 4 (and a hard one, and one "
                           "of 8 VMs) across 150 ms / 250 Mbit/s; a rebalance to DRS threshold 3",
                  argv)
    for case, s in cases(args.cases).items():
        m, errors = attempt(lambda label, s=s: run_experiment(s, bench.run_dir(label)), case)
        if m is None:
            bench.add({"case": case, "outcome": f"not run: {errors}"},
                      holds(f"{case}: ran", "no", "yes", False))
            continue
        row, verdicts = judge(case, s, m)
        row["retries"] = errors
        bench.add(row, *verdicts)
    return bench.finish(table([r for r in bench.rows if "makespan_s" in r]))


if __name__ == "__main__":
    sys.exit(entry(main))
