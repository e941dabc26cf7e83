"""``make bench`` (codecs): each codec's encode speed on one core of this CPU and its ratio, over
the non-zero pages of the default page mix (``migrator.codecs.speed``, the measurement real runs
make for the adaptive policy). A record, not a judgement: no target.

Writes ``results/bench/<time>-codecs/`` (``experiments.bench.harness``).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Sequence

import numpy as np

from experiments.bench.harness import Bench, entry
from ground.table import render
from migrator.codecs.chunk import split_zero
from migrator.codecs.speed import default_sample, measure_codec_speeds
from migrator.memory.pages import DEFAULT_MIX, PAGE_SIZE

CODECS = ("none", "lz4", "zstd-1", "zstd-3", "zstd-6", "zstd-9", "zstd-12", "zstd-19", "xbzrle")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.bench.codecs", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=32, help="sample size (default 32 MiB)")
    ap.add_argument("--seconds", type=float, default=1.0, help="time per codec (default 1)")
    ap.add_argument("--codecs", nargs="+", default=list(CODECS))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sample = default_sample(args.mib)
    idx = np.arange(len(sample) // PAGE_SIZE)
    zero, _, _ = split_zero(idx, sample)
    bench = Bench("codecs", "Codec speed and ratio on this CPU",
                  list(argv) if argv is not None else None,
                  meta={"sample": {"mib": args.mib, "mix": dataclasses.asdict(DEFAULT_MIX),
                                   "zero_page_fraction": len(zero) / len(idx),
                                   "note": "speeds and ratios over the non-zero pages only"},
                        "seconds_each": args.seconds})
    for name, (speed, ratio) in measure_codec_speeds(sample, args.codecs, args.seconds).items():
        bench.add({"codec": name, "encode_MBps_per_core": speed, "ratio": ratio})
    return bench.finish(render(("codec", "MB/s per core", "ratio"),
                               [(r["codec"], f"{r['encode_MBps_per_core']:.1f}",
                                 f"{r['ratio']:.2f}") for r in bench.rows]))


if __name__ == "__main__":
    sys.exit(entry(main))
