"""``make bench`` (codecs): each codec's encode speed on one core of this CPU and its ratio, over
the non-zero pages of the default page mix (``migrator.codecs.speed``, the measurement real runs
make for the adaptive policy); then what the channel's encryption adds (``migrator.wire.seal``):
for the adaptive policy's codecs, encode + frame + seal per core (raw MB/s), and sealing and
opening alone per core (wire MB/s), for each encryption. A record, not a judgement: no target.

Writes ``results/bench/<time>-codecs/`` (``experiments.bench.harness``).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from collections.abc import Sequence

import numpy as np

from experiments.bench.harness import Bench, entry
from ground.table import render
from migrator.codecs.chunk import split_zero
from migrator.codecs.registry import get_codec
from migrator.codecs.speed import CHUNK_PAGES, default_sample, measure_codec_speeds
from migrator.memory.pages import DEFAULT_MIX, PAGE_SIZE
from migrator.wire.frames import FrameReader, MsgType, encode_frame
from migrator.wire.seal import Opener, Sealer, protection_for
from migrator.wire.session import ENCRYPTIONS

CODECS = ("none", "lz4", "zstd-1", "zstd-3", "zstd-6", "zstd-9", "zstd-12", "zstd-19", "xbzrle")
SEALED_CODECS = ("none", "lz4", "zstd-1", "zstd-3")


def _timed(work, seconds: float) -> tuple[float, int]:
    """Run ``work(i)`` (returns bytes counted) round and round for ``seconds``; (s, bytes)."""
    start, i, n = time.perf_counter(), 0, 0
    while True:
        n += work(i)
        i += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return elapsed, n


def sealed_speeds(pages: np.ndarray, codec_name: str, encryption: str, seconds: float) -> dict:
    """Encode + frame + seal of 1 MiB chunks on one core (raw MB/s); seal and open alone
    (wire MB/s). With ``none`` the data streams are not sealed: the codec and framing alone."""
    codec = get_codec(codec_name)
    mode = protection_for(encryption, "data")
    chunks = [(np.arange(i, min(i + CHUNK_PAGES, len(pages))),
               pages[i:i + CHUNK_PAGES].tobytes()) for i in range(0, len(pages), CHUNK_PAGES)]
    frames = [encode_frame(MsgType.PAGES, codec.encode(d, idx)) for idx, d in chunks]
    sealer = Sealer(mode, b"b" * 32) if mode else None

    def pipeline(i: int) -> int:
        idx, data = chunks[i % len(chunks)]
        frame = encode_frame(MsgType.PAGES, codec.encode(data, idx))
        if sealer is not None:
            sealer.seal(frame)
        return len(data)

    t, raw = _timed(pipeline, seconds)
    row = {"codec": codec_name, "encryption": encryption, "encode_seal_MBps_per_core": raw / t
           / 1e6, "seal_MBps_per_core": None, "open_MBps_per_core": None}
    if mode is not None:
        seal_only = Sealer(mode, b"b" * 32)
        t, n = _timed(lambda i: len(seal_only.seal(frames[i % len(frames)])), seconds)
        row["seal_MBps_per_core"] = n / t / 1e6
        one = Sealer(mode, b"c" * 32)
        sealed = [one.seal(f) for f in frames]
        opened = FrameReader(max_frame=1 << 30)
        parsed = [opened.feed(w)[0] for w in sealed]
        box: dict = {}

        def open_one(i: int) -> int:
            if i % len(parsed) == 0:
                box["o"] = Opener(mode, b"c" * 32)     # the counter starts again
            return len(box["o"].open(parsed[i % len(parsed)]).payload)

        t, n = _timed(open_one, seconds)
        row["open_MBps_per_core"] = n / t / 1e6
    return row


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
    table = render(("codec", "MB/s per core", "ratio"),
                   [(r["codec"], f"{r['encode_MBps_per_core']:.1f}", f"{r['ratio']:.2f}")
                    for r in bench.rows])
    pages = np.frombuffer(sample, np.uint8).reshape(-1, PAGE_SIZE)
    pages = pages[pages.view(np.uint64).any(axis=1)]
    sealed = [sealed_speeds(pages, c, e, args.seconds) for c in SEALED_CODECS
              if c in args.codecs for e in ENCRYPTIONS]
    bench.meta["encryption"] = sealed

    def mbps(v: float | None) -> str:
        return "-" if v is None else f"{v:.0f}"

    table += "\n\n" + render(
        ("codec", "encryption", "encode+seal raw MB/s/core", "seal wire MB/s", "open wire MB/s"),
        [(r["codec"], r["encryption"], mbps(r["encode_seal_MBps_per_core"]),
          mbps(r["seal_MBps_per_core"]), mbps(r["open_MBps_per_core"])) for r in sealed])
    return bench.finish(table)


if __name__ == "__main__":
    sys.exit(entry(main))
