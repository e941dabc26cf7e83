"""The controller's event log: one JSON object per line, flushed as written, so a run that is
killed still leaves every event up to that moment (times are wall-clock seconds, comparable with
the probes and the migrator's records)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TextIO


class EventLog:
    def __init__(self, path: str | Path | None) -> None:
        self._fh: TextIO | None = open(path, "a") if path else None  # noqa: SIM115
        self._lock = threading.Lock()

    def __call__(self, event: dict) -> None:
        if self._fh is None:
            return
        line = json.dumps(event, sort_keys=True)
        with self._lock:
            self._fh.write(line + "\n")
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def read_events(path: str | Path) -> list[dict]:
    """Every complete line of an event log (a torn last line is skipped)."""
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out
