"""Who owns what after a crash: the records under ``/run/wanmig`` and the identity of a process.

Every part that starts something a ``kill -9`` could leave behind writes a record here first
(``WANMIG_STATE_DIR``, default ``/run/wanmig``): a network (``net-*.json``, topologies) or a
guest (``guest-*.json``, migrator).  ``wanmig clean`` decides from these records, never from
command lines, what is dead and may go.

A process is named by its PID *and* its start time (``/proc/<pid>/stat`` field 22, clock ticks
since boot): after a crash a PID can be reused by an unrelated process, the pair cannot.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def state_dir() -> Path:
    return Path(os.environ.get("WANMIG_STATE_DIR", "/run/wanmig"))


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, None if there is no such process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def zombie(pid: int) -> bool:
    """True for a zombie (or a process gone meanwhile): it runs no more."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


def same_process(pid: object, start: object) -> bool:
    """Whether ``pid`` still runs and is the process that started at ``start`` (not a PID
    reused, not a zombie).  ``start`` None (a record from before start times were kept): the
    PID alone."""
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return False
    now = start_time(pid)
    if now is None or zombie(pid):
        return False
    return start is None or now == start


def parent_pid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def ancestors(pid: int, limit: int = 64) -> list[int]:
    """The chain of parents of ``pid`` up to (not including) pid 0."""
    out: list[int] = []
    while len(out) < limit:
        ppid = parent_pid(pid)
        if not ppid:
            break
        out.append(ppid)
        pid = ppid
    return out


def write_record(path: Path, data: dict) -> None:
    """Write ``data`` as JSON at ``path`` atomically (a reader sees the old or the new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def read_records(pattern: str) -> list[dict]:
    """Every readable record matching ``pattern`` in the state directory, each with ``_path``."""
    out = []
    for path in sorted(state_dir().glob(pattern)):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            data["_path"] = str(path)
            out.append(data)
    return out


def stop_processes(pids: list[int], grace_s: float = 2.0) -> list[int]:
    """SIGTERM, then SIGKILL to those still running after ``grace_s``; returns the PIDs that
    were running when asked (the ones stopped)."""
    import signal
    import time

    asked: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = []
        for pid in pids:
            try:
                os.kill(pid, sig)
                alive.append(pid)
            except ProcessLookupError:
                pass
        if sig == signal.SIGTERM:
            asked = list(alive)
        deadline = time.monotonic() + grace_s
        while alive and time.monotonic() < deadline:
            alive = [p for p in alive if not zombie(p)]
            if alive:
                time.sleep(0.05)
        if not alive:
            break
        pids = alive
    return asked
