"""Per-I/O latency of an NBD device, one I/O in flight: writes of ``size`` bytes at random
aligned offsets, then reads of the same blocks (so reads hit data, not holes). Used in this
process (loopback) or run in another network namespace:

    python -m tests.processes.migrator.nbdlatency nbd://HOST:PORT/disk [--count N]

prints one JSON object ``{"write-4096": [ms, ...], "read-4096": [...], ...}``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import time

from migrator.disk.nbdclient import NbdDevice

SIZES = (4096, 65536)
COUNT = 1000
WARMUP = 20
SEED = 12


def measure(dev: NbdDevice, sizes=SIZES, count: int = COUNT) -> dict[str, list[float]]:
    """Milliseconds per call, per ``"<op>-<size>"``."""
    rng = random.Random(SEED)
    out: dict[str, list[float]] = {}
    for size in sizes:
        blocks = dev.size // size
        offsets = [rng.randrange(blocks) * size for _ in range(count)]
        data = rng.randbytes(size)
        for off in offsets[:WARMUP]:
            dev.pwrite(data, off)
            dev.pread(off, size)
        for op in ("write", "read"):
            samples = []
            for off in offsets:
                t0 = time.perf_counter()
                if op == "write":
                    dev.pwrite(data, off)
                else:
                    dev.pread(off, size)
                samples.append((time.perf_counter() - t0) * 1e3)
            out[f"{op}-{size}"] = samples
    return out


def p99(samples: list[float]) -> float:
    """The 99th percentile (nearest rank)."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def table(results: dict[str, list[float]]) -> str:
    rows = [f"{'I/O':<12}{'n':>6}{'median ms':>12}{'p99 ms':>10}{'max ms':>10}"]
    for name, samples in results.items():
        rows.append(f"{name:<12}{len(samples):>6}{statistics.median(samples):>12.3f}"
                    f"{p99(samples):>10.3f}{max(samples):>10.3f}")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("uri")
    ap.add_argument("--count", type=int, default=COUNT)
    args = ap.parse_args()
    with NbdDevice(args.uri) as dev:
        print(json.dumps(measure(dev, count=args.count)))


if __name__ == "__main__":
    main()
