"""``make bench`` (idle downtime): an idle guest migrated over loopback at growing memory sizes.

Why: an idle guest dirties almost nothing, so its downtime is the fixed cost of a switchover:
the final copy of a few pages, the image check at both ends, the resume. That cost must depend
on what was written since the last hash, not on the memory size (QEMU's idle-guest downtime on
loopback is tens of ms at any size). The real guest process (shared-memory image) is used, as
in a run; each size is migrated ``--runs`` times and the median is judged.

Targets: downtime <= 60 ms at 256 MiB; the largest size's downtime within 1.5x of the
smallest's.

``python -m experiments.bench.idle [--sizes 256MiB 1GiB 4GiB] [--runs 3]``; writes
``results/bench/<time>-idle/`` (``experiments.bench.harness``). Sizes that do not fit twice in
the memory available are refused before anything starts.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
from collections.abc import Sequence

from experiments.bench.harness import Bench, at_most, entry, holds
from ground.config import ConfigError
from ground.errors import Exit
from ground.table import render
from migrator.args import check_loopback_fits, parse_size
from migrator.core.policy import MigrationPolicy
from migrator.memory.pages import PAGE_SIZE
from migrator.memory.workload import PRESETS

log = logging.getLogger(__name__)
SMALL_TARGET_MS = 60.0
GROWTH = 1.5


def main(argv: Sequence[str] | None = None) -> int:
    from migrator.loopback import migrate_loopback_real

    ap = argparse.ArgumentParser(prog="python -m experiments.bench.idle", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["256MiB", "1GiB", "4GiB"])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    policy = MigrationPolicy(codec="none", streams=2)
    try:
        sizes = [parse_size(s, "--sizes") for s in args.sizes]
        for text, size in zip(args.sizes, sizes, strict=True):
            check_loopback_fits(size, text, policy, real=True, arg="--sizes")
    except ConfigError as exc:
        print(f"bad input: {exc}", file=sys.stderr)
        return Exit.INPUT
    bench = Bench("idle", "Idle guest over loopback: downtime against memory size",
                  list(argv) if argv is not None else None)
    medians: dict[int, float] = {}
    table = []
    for text, size in zip(args.sizes, sizes, strict=True):
        downs, verifies = [], []
        for i in range(args.runs):
            run = migrate_loopback_real(size // PAGE_SIZE, PRESETS["idle"], policy, seed=i,
                                        timeout_s=120.0)
            s = run.summary
            ok = s["outcome"] == "completed" and bool(s["integrity_ok"])
            bench.add({"size": text, "run": i + 1, "summary": s},
                      holds(f"{text} run {i + 1}: outcome, digest equal",
                            f"{s['outcome']}, {s['integrity_ok']}", "completed, True", ok))
            downs.append(s["downtime_ms"])
            verifies.append(s["verify_ms"])
        medians[size] = statistics.median(downs)
        table.append((text, f"{medians[size]:.1f}", f"{statistics.median(verifies):.1f}",
                      ", ".join(f"{d:.0f}" for d in downs)))
    small, large = min(sizes), max(sizes)
    verdicts = []
    if small <= 256 << 20:
        verdicts.append(at_most(f"downtime at {small >> 20} MiB (median)", medians[small],
                                SMALL_TARGET_MS, fmt=".1f", unit=" ms"))
    if large > small:
        verdicts.append(at_most(f"downtime {large >> 20} MiB / {small >> 20} MiB",
                                medians[large] / medians[small], GROWTH, unit="x"))
    bench.judge(*verdicts)
    return bench.finish(render(("memory", "downtime ms (median)", "verify ms (median)",
                                "downtimes ms"), table))


if __name__ == "__main__":
    sys.exit(entry(main))
