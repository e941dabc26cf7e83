"""When a fleet's events fire: ``at:`` events once, ``every:`` events at every multiple of their
period up to the fleet's duration. Pure: the runner asks with the seconds since the warm-up
ended."""

from __future__ import annotations

import math
from collections.abc import Sequence

from experiments.fleet.spec import Event


class EventClock:
    """``due(t)`` returns each firing once, in time order (then in the spec's order)."""

    def __init__(self, events: Sequence[Event], duration_s: float | None) -> None:
        self.duration_s = duration_s
        self._times: list[tuple[float, int, Event]] = []
        for i, e in enumerate(events):
            if e.at_s is not None:
                self._times.append((e.at_s, i, e))
            else:
                assert e.every_s is not None and duration_s is not None
                n = math.floor(duration_s / e.every_s + 1e-9)
                self._times += [(k * e.every_s, i, e) for k in range(1, n + 1)]
        self._times.sort(key=lambda x: (x[0], x[1]))

    def due(self, t: float) -> list[tuple[float, Event]]:
        """The firings at or before ``t`` not returned before."""
        out = []
        while self._times and self._times[0][0] <= t:
            when, _, event = self._times.pop(0)
            out.append((when, event))
        return out

    @property
    def done(self) -> bool:
        return not self._times

    @property
    def next_s(self) -> float | None:
        return self._times[0][0] if self._times else None
