"""The load sampler: once a second, what every process and the whole machine used, by part
(``parts``), appended to ``testbed_cpu.csv`` while a run goes on (a thread of the runner).

Columns: ``t0``, ``t1`` (wall-clock seconds the row covers), ``idle_cores`` and
``busy_cores`` (the machine, from ``/proc/stat``: idle and iowait are idle), one column per
part (cores its processes used, from ``/proc/<pid>/stat``), and ``kernel`` (busy time no
process was charged: softirqs and the like). A row's parts and ``kernel`` add up to
``busy_cores`` (a process that ended inside the row loses its last fraction).
"""

from __future__ import annotations

import csv
import logging
import os
import threading
import time
from pathlib import Path

from experiments.load.bound import Sample
from experiments.load.parts import PARTS, classify

log = logging.getLogger(__name__)

TICK = os.sysconf("SC_CLK_TCK")
COLUMNS = ("t0", "t1", "idle_cores", "busy_cores", *PARTS, "kernel")
PERIOD_S = 1.0


def machine_ticks() -> tuple[int, int]:
    """(idle, total) jiffies of all cores since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[3] + fields[4], sum(fields[:8])


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            return fh.read().decode(errors="replace")
    except OSError:
        return None


def process_ticks() -> dict[tuple[int, int], tuple[str, int]]:
    """(pid, start time) -> (name, utime + stime jiffies) of every process."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _read(f"/proc/{entry}/stat")
        if stat is None:
            continue
        comm = stat[stat.find("(") + 1:stat.rfind(")")]
        f = stat[stat.rfind(")") + 2:].split()
        out[(int(entry), int(f[19]))] = (comm, int(f[11]) + int(f[12]))
    return out


class LoadSampler:
    """``with LoadSampler(path):`` samples while the block runs; ``samples`` holds them."""

    def __init__(self, path: Path, period_s: float = PERIOD_S) -> None:
        self.path = path
        self.period_s = period_s
        self.samples: list[Sample] = []
        self.cores = os.cpu_count() or 1
        self._parts: dict[tuple[int, int], str] = {}     # classification, once per process
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="load-sampler", daemon=True)
        self._fh = None

    def __enter__(self) -> LoadSampler:
        self._fh = open(self.path, "w", newline="")  # noqa: SIM115 - closed on exit
        self._writer = csv.writer(self._fh)
        self._writer.writerow(COLUMNS)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self._fh is not None:
            self._fh.close()

    def _part(self, key: tuple[int, int], comm: str) -> str:
        part = self._parts.get(key)
        if part is None:
            cmdline = (_read(f"/proc/{key[0]}/cmdline") or "").replace("\0", " ")
            part = self._parts[key] = classify(comm, cmdline, key[0], os.getpid())
        return part

    def _loop(self) -> None:
        idle0, total0 = machine_ticks()
        procs0, t0 = process_ticks(), time.time()
        while not self._stop.wait(self.period_s):
            try:
                idle1, total1 = machine_ticks()
                procs1, t1 = process_ticks(), time.time()
                self._record(t0, t1, idle1 - idle0, total1 - total0, procs0, procs1)
                idle0, total0, procs0, t0 = idle1, total1, procs1, t1
            except Exception:  # noqa: BLE001 - a sampler never ends a run
                log.exception("load sampling failed; the run goes on without it")
                return

    def _record(self, t0: float, t1: float, idle: int, total: int, before: dict,
                after: dict) -> None:
        if total <= 0 or t1 <= t0:
            return
        scale = self.cores / total           # jiffies of all cores -> cores
        used = dict.fromkeys(PARTS, 0.0)
        for key, (comm, ticks) in after.items():
            prev = before.get(key)
            delta = ticks - prev[1] if prev else ticks
            if delta > 0:
                used[self._part(key, comm)] += delta * scale
        busy = (total - idle) * scale
        kernel = max(0.0, busy - sum(used.values()))
        sample = Sample(t0, t1, idle * scale, used)
        self.samples.append(sample)
        self._writer.writerow([f"{t0:.3f}", f"{t1:.3f}", f"{idle * scale:.3f}", f"{busy:.3f}",
                               *(f"{used[p]:.3f}" for p in PARTS), f"{kernel:.3f}"])
        self._fh.flush()


def read_samples(path: Path) -> list[Sample]:
    """The samples of a stored ``testbed_cpu.csv`` (none when it is missing)."""
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [Sample(float(r["t0"]), float(r["t1"]), float(r["idle_cores"]),
                   {p: float(r[p]) for p in PARTS if r.get(p) not in (None, "")})
            for r in rows]
