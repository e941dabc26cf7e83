"""The fault schedule run alongside a migration: one thread that fires each fault when
``FaultPlan`` says, undoes it when its duration is over, and records both.

The runner hands it every message the migrators say (``on_message``, from the runner's own
reading loop, never blocked: the thread does the work); ``start`` before the migration,
``finish`` at the end of the run undoes whatever is still in force. A fault whose action fails
is recorded with its error and the run goes on: what it did to the VM is for the invariants to
judge.

One record per fault (``records()``, metrics.json's ``faults``): ``index``, ``kind``, ``at``
(the trigger, in words), ``fired_at`` (seconds after the migration started; None: it never
fired, the phase never came), ``fired_t`` (wall clock), ``phase``/``round`` seen when it fired,
``ended_at``/``ended_t``, ``ended_by`` (``duration``, or ``end of run``: in force
until the run's end), ``duration_s``, ``applied``/``undone`` (what the actions did), ``error``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from experiments.faults.actions import FaultError, RunActions
from experiments.faults.spec import FaultSpec
from experiments.faults.trigger import INSTANT_KINDS, FaultPlan, MigrationTracker
from ground.protocol import Message

log = logging.getLogger("wanmig.faults")

TICK_S = 0.02     # the thread's longest sleep: at_s triggers are this precise


class FaultInjector:
    def __init__(self, faults: tuple[FaultSpec, ...], actions: RunActions,
                 clock: Callable[[], float] = time.time) -> None:
        self.faults, self.actions, self.clock = faults, actions, clock
        self.tracker = MigrationTracker()
        self.plan = FaultPlan(list(faults))
        self._records = [{"index": i, "kind": f.kind, "at": f.trigger, "fired_at": None,
                          "fired_t": None, "phase": None, "round": None, "ended_at": None,
                          "ended_t": None, "ended_by": None, "duration_s": f.duration_s,
                          "applied": None, "undone": None, "error": None}
                         for i, f in enumerate(faults)]
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="faults", daemon=True)
        self._thread.start()

    def on_message(self, msg: Message) -> None:
        with self._lock:
            changed = self.tracker.on_message(msg.kind.value, msg.fields)
        if changed:
            self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.step()
            self._wake.wait(TICK_S)
            self._wake.clear()

    def step(self) -> None:
        """One pass: fire what is due, undo what is over (the thread runs it every TICK_S)."""
        now = self.clock()
        with self._lock:
            phase, rnd = self.tracker.phase, self.tracker.round
            fire = self.plan.due(now, self.tracker.elapsed(now), phase, rnd)
        for i in fire:
            rec = self._records[i]
            rec.update(fired_at=self.plan.fired[i], fired_t=now, phase=phase, round=rnd)
            log.info("fault %d (%s at %s) fires: phase %s, round %s", i, rec["kind"], rec["at"],
                     phase, rnd)
            self._do(i, "applied", self.actions.apply)
        for i in self.plan.ending(self.clock()):
            self._end(i)

    def _end(self, i: int, by: str = "duration") -> None:
        rec = self._records[i]
        rec["ended_by"] = by
        if self.faults[i].kind not in INSTANT_KINDS:     # a kill has nothing to undo
            self._do(i, "undone", self.actions.undo)
        started, now = self.tracker.started_t, self.clock()
        rec["ended_t"] = now
        rec["ended_at"] = None if started is None else now - started

    def _do(self, i: int, key: str, action: Callable[[FaultSpec], dict]) -> None:
        rec = self._records[i]
        try:
            rec[key] = action(self.faults[i])
        except (FaultError, OSError) as exc:
            log.error("fault %d (%s): %s failed: %s", i, rec["kind"], key, exc)
            rec["error"] = f"{rec['error']}; {exc}" if rec["error"] else str(exc)

    def finish(self) -> None:
        """Stop the thread; undo every fault still in force."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        for i in self.plan.finish():
            self._end(i, by="end of run")

    def records(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._records]
