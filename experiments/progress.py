"""Progress of a migration for the person watching: a bar on a terminal, log lines otherwise.

Why two forms: a bar is what one wants to watch live, but redirected to a file (a sweep, CI)
its carriage returns make an unreadable log; there one line per round is right. The text of a
line is ``format_line`` (pure) in both cases.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

log = logging.getLogger("wanmig.progress")


def _bytes(n: float) -> str:
    for unit, size in (("GiB", 1024 ** 3), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def format_line(phase: str, rnd: int, remaining_bytes: float, rate_Bps: float,  # noqa: N803
                eta_s: float | None, expected_downtime_ms: float | None) -> str:
    eta = "?" if eta_s is None else f"{eta_s:.1f} s"
    down = "-" if expected_downtime_ms is None else f"{expected_downtime_ms:.0f} ms"
    return (f"{phase} round {rnd}: {_bytes(remaining_bytes)} left at "
            f"{rate_Bps * 8 / 1e6:.1f} Mbit/s, eta {eta}, expected downtime {down}")


class Progress:
    """``update(...)`` after each round; ``close()`` (or use as a context manager) at the end."""

    def __init__(self, total_bytes: int | None = None, stream: TextIO | None = None,
                 bar: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.use_bar = self.stream.isatty() if bar is None else bar
        self._bar: Any = None
        self._total = total_bytes
        self.lines: list[str] = []     # every line reported (kept for the run's log)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def update(self, phase: str, rnd: int, remaining_bytes: float, rate_Bps: float,  # noqa: N803
               eta_s: float | None, expected_downtime_ms: float | None) -> None:
        line = format_line(phase, rnd, remaining_bytes, rate_Bps, eta_s, expected_downtime_ms)
        self.lines.append(line)
        if not self.use_bar:
            log.info("%s", line)
            return
        if self._bar is None:
            from tqdm import tqdm
            total = max(self._total or 0, int(remaining_bytes), 1)
            self._bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                             file=self.stream, leave=True, dynamic_ncols=True)
        bar = self._bar
        if remaining_bytes > bar.total:
            bar.total = int(remaining_bytes)
        bar.n = int(max(0, bar.total - remaining_bytes))
        bar.set_description(f"{phase} r{rnd}", refresh=False)
        bar.set_postfix_str(line.split(": ", 1)[1], refresh=False)
        bar.refresh()

    def engine_hook(self, record: Any, eta_s: float | None) -> None:
        """Adapter for the pre-copy engine's progress hook ``(RoundRecord, eta)``: what is left
        after a round is what the guest dirtied during it."""
        self.update(record.phase, record.round, record.dirty_rate_Bps * record.duration_s,
                    record.goodput_Bps, eta_s, record.expected_downtime_s * 1e3)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
