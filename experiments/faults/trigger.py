"""When faults fire and end: pure decisions, the clock and the migrator's messages passed in.

``MigrationTracker`` follows the migration from what the two migrators say
(``ground.protocol``): STARTED starts the clock of ``at_s``; the source's PROGRESS line comes
when a round's row is written, so a live row of round n means round n+1 begins (or the drain
that precedes the pause: from outside the two cannot be told apart); PAUSED is the pause, the
first step of stop-and-copy; the stop-copy row means the verify phase (state, digest, ACK)
begins; the destination's VERIFIED means switchover, RESUMED the end. A drain row means pre-copy
goes on in the same round, unless the pause follows at once.

``FaultPlan`` decides, given that state and the time, which faults fire now (each once) and
which end now (``duration_s`` after firing; a fault without a duration lasts until ``finish``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from experiments.faults.spec import FaultSpec

# The phases the tracker reports, in order (a fault fires at any of PHASES).
SETUP, DONE = "setup", "done"
# Kinds whose action is one blow: nothing to undo, they end when they fire.
INSTANT_KINDS = ("kill-source", "kill-destination")


@dataclass
class MigrationTracker:
    """Where the migration is. State: ``started_t`` (wall clock of STARTED), ``phase`` (None
    before it starts, then setup, live, stop-copy, verify, switchover, done), ``round`` (the
    live round running, once round 0's row is in)."""

    started_t: float | None = None
    phase: str | None = None
    round: int | None = None

    def on_message(self, kind: str, fields: Mapping[str, Any]) -> bool:
        """Take one message (its kind's name and fields); True when the phase or round
        changed."""
        before = (self.phase, self.round)
        if kind == "STARTED":
            self.started_t = float(fields.get("t", 0.0))
            self.phase = SETUP
        elif kind == "PROGRESS":
            row, rnd = fields.get("phase"), int(fields.get("round", 0))
            if row == "live":
                self.phase, self.round = "live", rnd + 1
            elif row == "drain":
                self.phase, self.round = "live", rnd
            elif row in ("stop-copy", "cold"):
                self.phase = "verify"
        elif kind == "PAUSED":
            self.phase = "stop-copy"
        elif kind == "VERIFIED":
            self.phase = "switchover"
        elif kind == "RESUMED":
            self.phase = DONE
        return (self.phase, self.round) != before

    def elapsed(self, now: float) -> float | None:
        """Seconds since the migration started (None before)."""
        return None if self.started_t is None else now - self.started_t


@dataclass
class FaultPlan:
    """Which faults fire and end. State: ``fired`` index => seconds since the migration
    started when it fired, ``fired_at_now`` index => the clock's time then, ``ended`` the
    indices over (undone, or nothing to undo)."""

    faults: Sequence[FaultSpec]
    fired: dict[int, float] = field(default_factory=dict)
    fired_at_now: dict[int, float] = field(default_factory=dict)   # index => the clock's now
    ended: set[int] = field(default_factory=set)

    def due(self, now: float, elapsed: float | None, phase: str | None,
            rnd: int | None) -> list[int]:
        """The faults that fire now (marked fired); ``elapsed`` is seconds since the migration
        started (None before), ``phase``/``rnd`` the tracker's."""
        out = []
        for i, f in enumerate(self.faults):
            if i in self.fired:
                continue
            if f.at_s is not None:
                hit = elapsed is not None and elapsed >= f.at_s
            elif f.phase == "live":
                hit = phase == "live" and rnd == f.round
            else:
                hit = phase == f.phase
            if hit:
                self.fired[i] = elapsed if elapsed is not None else 0.0
                self.fired_at_now[i] = now
                out.append(i)
        return out

    def ending(self, now: float) -> list[int]:
        """Fired faults whose duration is over at ``now`` (marked ended); instant kinds end as
        they fire."""
        out = []
        for i, t in self.fired_at_now.items():
            if i in self.ended:
                continue
            f = self.faults[i]
            if f.kind in INSTANT_KINDS or (f.duration_s is not None and now >= t + f.duration_s):
                self.ended.add(i)
                out.append(i)
        return out

    def finish(self) -> list[int]:
        """The faults still in force (fired, not ended), marked ended: the run is over."""
        out = [i for i in self.fired_at_now if i not in self.ended]
        self.ended.update(out)
        return out

    def next_end(self) -> float | None:
        """When the next fault in force ends (the clock's time), None if none has an end."""
        ends = [t + self.faults[i].duration_s for i, t in self.fired_at_now.items()
                if i not in self.ended and self.faults[i].duration_s is not None]
        return min(ends) if ends else None
