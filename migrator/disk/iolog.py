"""The guest's disk I/O record: one CSV row per I/O, and its summary per migration phase.

``iolog.csv`` columns:

| column | meaning |
|---|---|
| ``t`` | ``time.monotonic()`` when the I/O was issued, s |
| ``op`` | ``r`` or ``w`` |
| ``block`` | the block index |
| ``latency_s`` | as the guest saw it: for a mirrored write the local write plus the mirror copy |
| ``ok`` | 1; 0: a read not returning what was last written (a lost write), or a failed I/O |
| ``path`` | ``local``, ``remote`` (the disk across the WAN) or ``mirror`` (a mirrored write) |

Written by the guest's disk thread only, buffered and flushed at least every 0.5 s (the worker
calls ``tick`` every loop) and on close; the runner reads it after the guest stopped.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

import numpy as np

COLUMNS = ("t", "op", "block", "latency_s", "ok", "path")
OPS = {"w": "write", "r": "read"}
PATHS = ("local", "remote", "mirror")
FLUSH_S = 0.5


class IoRow(NamedTuple):
    t: float
    op: str
    block: int
    latency_s: float
    ok: int
    path: str


class IoLog:
    """Appends rows to a CSV file; one writer thread."""

    def __init__(self, path: Path | str, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self._clock = clock
        self._file: io.TextIOWrapper | None = open(self.path, "x", newline="")  # noqa: SIM115
        self._rows: list[str] = []
        self._last_flush = clock()
        self._file.write(",".join(COLUMNS) + "\n")
        self._file.flush()

    def append(self, t: float, op: str, block: int, latency_s: float, ok: bool,
               path: str) -> None:
        self._rows.append(f"{t:.6f},{op},{block},{latency_s:.7f},{int(ok)},{path}\n")
        self.tick()

    def tick(self) -> None:
        """Flush when the last flush is ``FLUSH_S`` old."""
        if self._rows and self._clock() - self._last_flush >= FLUSH_S:
            self.flush()

    def flush(self) -> None:
        if self._file is None:
            raise ValueError(f"iolog {self.path} is closed")
        self._file.write("".join(self._rows))
        self._file.flush()
        self._rows.clear()
        self._last_flush = self._clock()

    def close(self) -> None:
        if self._file is None:
            return
        try:
            self.flush()
        finally:
            self._file.close()
            self._file = None


def read_iolog(path: Path | str) -> list[IoRow]:
    """Every row of an iolog.csv (ValueError naming the line for a malformed one)."""
    rows = []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(header) != COLUMNS:
            raise ValueError(f"{path}: not an iolog (header {header!r})")
        for n, rec in enumerate(reader, start=2):
            try:
                t, op, block, lat, ok, where = rec
                rows.append(IoRow(float(t), op, int(block), float(lat), int(ok), where))
            except ValueError as exc:
                raise ValueError(f"{path}:{n}: malformed row {rec!r}: {exc}") from exc
    return rows


def _stats(latencies_s: np.ndarray, failed: int) -> dict:
    if len(latencies_s) == 0:
        return {"n": 0, "failed": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None,
                "mean_ms": None}
    ms = latencies_s * 1e3
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {"n": int(len(ms)), "failed": failed, "p50_ms": float(p50), "p95_ms": float(p95),
            "p99_ms": float(p99), "mean_ms": float(ms.mean())}


def summarise(rows: Iterable[IoRow | tuple], phases: list[tuple[str, float, float]]) -> dict:
    """Per phase ``(name, t0, t1)`` (rows with ``t0 <= t < t1``) and op (``write``, ``read``):
    ``{n, failed, p50_ms, p95_ms, p99_ms, mean_ms}`` of the guest-visible latency (None when the
    phase had no such I/O).  Phases may overlap; a row outside every phase is in none."""
    data = [IoRow(*r) for r in rows]
    t = np.array([r.t for r in data], dtype=np.float64)
    lat = np.array([r.latency_s for r in data], dtype=np.float64)
    ok = np.array([r.ok for r in data], dtype=np.int64)
    op = np.array([r.op for r in data], dtype=object)
    out: dict = {}
    for name, t0, t1 in phases:
        inside = (t >= t0) & (t < t1)
        out[name] = {}
        for code, label in OPS.items():
            sel = inside & (op == code)
            out[name][label] = _stats(lat[sel], int(np.count_nonzero(ok[sel] == 0)))
    return out
