"""The guest's owner: the process that started it (``--owner-pid``) and alone stops it and
removes its memory.  A guest whose owner is gone (``kill -9`` of ``wanmig migrate --loopback``,
of an experiment's runner) stops by itself instead of writing on as an orphan of pid 1.

Why a watched PID rather than ``PR_SET_PDEATHSIG``: the death signal follows the *thread* that
forked the guest, not the process (a launcher thread that ends would kill a healthy guest), and
a launcher through a shell or ``mnexec`` is not necessarily the parent.  The owner is named by
PID and start time (``ground.records``), so a reused PID does not keep an orphan alive.

Who the owner is: whoever called ``start_guest``.  In an experiment that is the runner, not the
source migrator: a migrator killed mid-migration leaves the guest running (the lease resumes
it, ``migrator.guest.lease``), a runner killed leaves nothing writing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ground.records import same_process, start_time

log = logging.getLogger(__name__)

CHECK_S = 0.25              # how often the guest looks at its owner


class OwnerWatch:
    """``gone(now)`` is True once the owner has been seen dead (checked every ``CHECK_S``)."""

    def __init__(self, pid: int, *, alive: Callable[[int, int | None], bool] = same_process,
                 started: Callable[[int], int | None] = start_time) -> None:
        self.pid = pid
        self.start = started(pid) if pid > 0 else None
        self._alive = alive
        self._next = 0.0
        self._gone = pid > 0 and self.start is None     # dead before we looked

    def gone(self, now: float) -> bool:
        if self.pid <= 0 or self._gone:
            return self._gone
        if now >= self._next:
            self._next = now + CHECK_S
            self._gone = not self._alive(self.pid, self.start)
        return self._gone
