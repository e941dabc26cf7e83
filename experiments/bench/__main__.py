"""``make bench``: every benchmark in turn (``python -m experiments.bench [NAME ...]``).

Exit status: 0 when every target was met, 1 when one was missed or a benchmark failed (the
others still run; each one's table says what it measured), 2 when one could not run here.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from experiments.bench import (
    codecs,
    controller,
    converge,
    encryption,
    faults,
    fleet,
    idle,
    link,
    loopback,
    storage,
    wan,
)
from experiments.bench.harness import entry
from ground.errors import Exit

log = logging.getLogger("wanmig.bench")

BENCHES: dict[str, Callable[[list[str]], int]] = {
    "link": link.main, "controller": controller.main, "codecs": codecs.main,
    "loopback": loopback.main, "idle": idle.main, "wan": wan.main,
    "converge": converge.main, "encryption": encryption.main, "faults": faults.main,
    "storage": storage.main, "fleet": fleet.main}


def main(argv: list[str] | None = None) -> int:
    names = list(argv if argv is not None else sys.argv[1:]) or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"bench: got {unknown}, expected names from {', '.join(BENCHES)}", file=sys.stderr)
        return Exit.INPUT
    status: dict[str, int] = {}
    for name in names:
        print(f"=== benchmark: {name}", flush=True)
        status[name] = entry(lambda name=name: BENCHES[name]([]))
    said = {Exit.OK: "ok", Exit.FAIL: "target missed or failed", Exit.INPUT: "not run"}
    print("benchmarks: " + ", ".join(f"{n} {said.get(s, s)}" for n, s in status.items()))
    return max(status.values())


if __name__ == "__main__":
    sys.exit(main())
