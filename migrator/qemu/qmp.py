"""A thin synchronous QMP client over ``qemu.qmp.legacy.QEMUMonitorProtocol``.

``Monitor(path, timeout)`` connects to QEMU's QMP socket (``-qmp unix:PATH,server=on,
wait=off``), retrying until the deadline because the socket appears only once QEMU has
started; ``cmd`` raises ``QmpError`` with QEMU's own message; ``events`` returns what QEMU said
meanwhile, each with QEMU's timestamp as wall-clock seconds. QEMU stamps an event with the
host's clock (``g_get_real_time``) when it happens, not when it is read, so a STOP on the
source and a RESUME on the destination (both on this machine) give the real downtime whatever
the polling.

The legacy client runs its asyncio loop only inside a call: events are read from the socket
during ``cmd`` and ``events`` calls and wait in its queue meanwhile.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qemu.qmp import ConnectError, ExecuteError, QMPError
from qemu.qmp.legacy import QEMUMonitorProtocol

log = logging.getLogger(__name__)

CONNECT_RETRY_S = 0.02          # between attempts while the socket is not there yet


class QmpError(RuntimeError):
    """A QMP command QEMU refused or could not answer; the message is QEMU's."""

    def __init__(self, command: str, message: str, error_class: str | None = None) -> None:
        self.command, self.message, self.error_class = command, message, error_class
        super().__init__(f"QMP {command}: {message}")


@dataclass(frozen=True)
class Event:
    """A QMP event: its name, its data and when QEMU emitted it (wall-clock seconds)."""

    name: str
    t: float
    data: dict[str, Any] = field(default_factory=dict)


def event_from_message(msg: dict[str, Any]) -> Event:
    """An ``Event`` from a QMP event message (``{"event", "data", "timestamp": {"seconds",
    "microseconds"}}``)."""
    stamp = msg.get("timestamp") or {}
    t = float(stamp.get("seconds", 0)) + float(stamp.get("microseconds", 0)) / 1e6
    return Event(name=str(msg.get("event")), t=t, data=dict(msg.get("data") or {}))


class Monitor:
    """One QEMU's QMP socket. ``timeout`` bounds the connection (socket not there yet, QEMU
    still starting) and every command."""

    def __init__(self, path: str | Path, timeout: float = 10.0, name: str = "qemu") -> None:
        self.path, self.name, self.timeout = str(path), name, timeout
        self._qmp = self._connect()

    def _connect(self) -> QEMUMonitorProtocol:
        deadline = time.monotonic() + self.timeout
        while True:
            qmp = QEMUMonitorProtocol(self.path, nickname=self.name)
            try:
                qmp.connect()
                qmp.settimeout(self.timeout)
                return qmp
            except (ConnectError, OSError) as exc:
                if time.monotonic() >= deadline:
                    raise QmpError("connect", f"{self.name}: no QMP at {self.path} within "
                                   f"{self.timeout:g} s ({exc})") from None
            # The socket appears once QEMU has parsed its command line; retry until then.
            time.sleep(CONNECT_RETRY_S)

    def cmd(self, command: str, /, **args: Any) -> Any:
        """Run a QMP command and return its answer; QmpError with QEMU's message otherwise
        (an error answer, a closed socket, no answer within the timeout). The command is
        positional only: QMP arguments may be called ``name`` (``set_link``)."""
        try:
            return self._qmp.cmd(command, **args)
        except ExecuteError as exc:
            raise QmpError(command, f"{self.name}: {exc}", exc.error_class) from None
        except (TimeoutError, QMPError, EOFError, OSError) as exc:
            raise QmpError(command, f"{self.name}: {type(exc).__name__} {exc}".rstrip()) \
                from None

    def events(self, wait: float = 0.0) -> list[Event]:
        """The events QEMU sent since the last call, oldest first; waits up to ``wait`` seconds
        for one when there is none (0: does not wait)."""
        try:
            got = self._qmp.get_events(wait=float(wait) if wait > 0 else False)
        except TimeoutError:
            return []
        except (QMPError, EOFError, OSError) as exc:
            raise QmpError("events", f"{self.name}: {type(exc).__name__} {exc}") from None
        return [event_from_message(m) for m in got]

    def close(self) -> None:
        """Close the connection; a QEMU already gone (``quit``, killed) is not an error."""
        try:
            self._qmp.close()
        except (QMPError, EOFError, OSError) as exc:
            log.debug("%s: closing QMP: %s", self.name, exc)

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
