"""Measured codec speed and ratio on this CPU: for the adaptive policy and as a benchmark.

Why measure rather than assume: compression speed differs several-fold between CPUs (and with
turbo, SMT and thermal state), and the adaptive choice depends on the ratio of CPU speed to link
speed.  ``measure_codec_speeds`` is run once when a migration starts (a fraction of a second per
codec) and by ``python -m migrator.codecs.speed`` for the record.

What is measured: one-core encode throughput in MB/s (10^6 bytes of *raw* input per second) and
the ratio raw/encoded, over the NON-ZERO pages of the sample, since zero pages never reach a
codec.  XBZRLE is measured on its useful case: its cache is first primed with the sample (not
timed), then every page gets one ``mutate_page`` write and the re-send is timed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from migrator.codecs.chunk import as_pages, split_zero
from migrator.codecs.registry import get_codec
from migrator.memory.pages import DEFAULT_MIX, PAGE_SIZE, fill_pages, mutate_page

log = logging.getLogger(__name__)

BENCH_CODECS = ("none", "lz4", "zstd-1", "zstd-3", "zstd-6", "zstd-9", "zstd-12", "zstd-19",
                "xbzrle")
CHUNK_PAGES = 256                  # 1 MiB chunks, like the engine's sends


def _chunks(pages: np.ndarray) -> list[tuple[np.ndarray, bytes]]:
    return [(np.arange(i, min(i + CHUNK_PAGES, len(pages))), pages[i:i + CHUNK_PAGES].tobytes())
            for i in range(0, len(pages), CHUNK_PAGES)]


def measure_codec_speeds(sample: bytes, codecs: Iterable[str], seconds_each: float,
                         timer: Callable[[], float] = time.perf_counter
                         ) -> dict[str, tuple[float, float]]:
    """``{codec: (encode MB/s on one core, ratio raw/encoded)}`` over ``sample``'s pages.

    Each codec encodes 1 MiB chunks, round and round the sample, until ``seconds_each`` have
    elapsed (at least one chunk).  The ratio is over the bytes actually encoded.
    """
    pages = as_pages(sample)
    pages = pages[pages.view(np.uint64).any(axis=1)]
    if not len(pages):
        raise ValueError("the sample has no non-zero pages to compress")
    chunks = _chunks(pages)
    out = {}
    for name in codecs:
        codec = get_codec(name)
        work = chunks
        if name == "xbzrle":
            for idx, data in chunks:            # prime the cache with what was "sent" before
                codec.encode(data, idx)
            mutated = pages.copy()
            rng = np.random.default_rng(0)
            for page in mutated:
                mutate_page(page, rng)
            work = _chunks(mutated)
        raw = enc = 0
        start = timer()
        elapsed = 0.0
        i = 0
        while True:
            idx, data = work[i % len(work)]
            enc += len(codec.encode(data, idx))
            raw += len(data)
            i += 1
            elapsed = timer() - start
            if elapsed >= seconds_each:
                break
            if name == "xbzrle" and i % len(work) == 0:
                break                           # a second pass would delta against itself
        speed = raw / elapsed / 1e6 if elapsed > 0 else float("inf")
        out[name] = (speed, raw / enc)
        log.info("%-8s %9.1f MB/s  ratio %.2f", name, speed, raw / enc)
    return out


def for_chooser(measured: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """The measurement in the units of ``adaptive.CodecChooser``: (bytes/s, ratio)."""
    return {name: (mbps * 1e6, ratio) for name, (mbps, ratio) in measured.items()
            if name != "xbzrle"}


def default_sample(mib: int = 32, seed: int = 0) -> bytes:
    pages = np.empty((mib * 1024 * 1024 // PAGE_SIZE, PAGE_SIZE), np.uint8)
    fill_pages(pages, DEFAULT_MIX, seed)
    return pages.tobytes()


def main(argv: Sequence[str] | None = None) -> int:
    from ground import meta

    ap = argparse.ArgumentParser(prog="python -m migrator.codecs.speed",
                                 description="Codec MB/s per core and ratio on a page mix.")
    ap.add_argument("--mib", type=int, default=32, help="sample size (default 32 MiB)")
    ap.add_argument("--seconds", type=float, default=1.0, help="time per codec (default 1)")
    ap.add_argument("--codecs", nargs="+", default=list(BENCH_CODECS))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = meta.run_metadata(list(argv) if argv is not None else sys.argv)
    sample = default_sample(args.mib)
    idx = np.arange(len(sample) // PAGE_SIZE)
    zero, _, _ = split_zero(idx, sample)
    measured = measure_codec_speeds(sample, args.codecs, args.seconds)
    lines = [f"{'codec':<9}{'MB/s/core':>12}{'ratio':>8}"]
    lines += [f"{n:<9}{s:>12.1f}{r:>8.2f}" for n, (s, r) in measured.items()]
    sys.stdout.write("\n".join(lines) + "\n")
    run_dir = meta.new_run_dir("codecs", meta.results_root() / "bench")
    doc = {"meta": started,
           "sample": {"mib": args.mib, "mix": dataclasses.asdict(DEFAULT_MIX),
                      "zero_page_fraction": len(zero) / len(idx),
                      "note": "speeds and ratios over the non-zero pages only"},
           "seconds_each": args.seconds,
           "results": {n: {"encode_MBps_per_core": s, "ratio": r}
                       for n, (s, r) in measured.items()}}
    (run_dir / "codecs.json").write_text(json.dumps(doc, indent=2) + "\n")
    sys.stdout.write(f"written {run_dir / 'codecs.json'}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
