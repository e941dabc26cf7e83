"""The migrator's hand on the guest's lease (``migrator.guest.lease``): a thread that renews it.

Why a thread: the engine blocks in sends and in the wait for the ACK, for longer than a lease;
the renewal must go on meanwhile, and stop with the process (a ``kill -9`` ends the thread, the
lease runs out, the guest takes itself back).  The holder opens the control block on a file
descriptor of its own, so the block's ``flock`` excludes it from the engine's thread as from
another process.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from migrator.guest import lease
from migrator.guest.control import LEASE_S, ControlBlock, check_lease

log = logging.getLogger(__name__)

RENEWALS_PER_LEASE = 6      # a renewal late by five periods still keeps the lease


class LeaseHolder:
    """Renews the lease on the guest of control block ``path`` while started."""

    def __init__(self, path: Path | str, lease_s: float = LEASE_S) -> None:
        self.path = Path(path)
        self.lease_s = check_lease(lease_s)
        self.lapsed = False          # a renewal found the lease run out
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Renew from now on (idempotent); the first renewal is done before returning."""
        if self.active:
            return
        ctl = ControlBlock(self.path)
        if not lease.renew(ctl, self.lease_s):
            ctl.close()
            self.lapsed = True
            raise lease_lapsed(self.path)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(ctl,), daemon=True,
                                        name="wanmig-lease")
        self._thread.start()

    def stop(self) -> None:
        """Renew no more (idempotent): whatever is still held lapses after ``lease_s``."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None

    def _run(self, ctl: ControlBlock) -> None:
        try:
            while not self._stop.wait(self.lease_s / RENEWALS_PER_LEASE):
                if not lease.renew(ctl, self.lease_s):
                    self.lapsed = True
                    log.error("%s: the lease ran out before it was renewed: the guest takes "
                              "itself back at the source", self.path.name)
                    return
        finally:
            ctl.close()


def lease_lapsed(path: Path) -> Exception:
    from migrator.guest.control import GuestError

    return GuestError(f"{path.name}: the lease on the guest ran out (it resumed at the source "
                      "by itself)")
