"""A block device over NBD (libnbd's Python bindings, Debian's python3-libnbd): how a guest with
shared storage reaches its disk in the source site's datastore, wherever it runs.

``NbdDevice`` has the block device's methods (``pread``, ``pwrite``, ``close``, ``where``) and
is deliberately synchronous: one I/O in flight, so the time of each call is one I/O's latency
(a request, the server's work, a reply: at least one RTT once the guest has moved), the
quantity shared storage is measured by. The connection has a deadline (``connect_timeout_s``)
and an error that names the URI; a machine without the bindings is told to run ``make setup``.
"""

from __future__ import annotations

import errno
import importlib
import logging
import time
from types import ModuleType
from typing import Any

from ground.errors import NotAsAskedError

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
POLL_MS = 100


class NbdClientError(NotAsAskedError):
    """The NBD export cannot be reached (or libnbd is missing)."""


def load_nbd() -> ModuleType:
    """libnbd's module ``nbd``; NbdClientError saying how to install it when missing."""
    try:
        return importlib.import_module("nbd")
    except ImportError as exc:
        raise NbdClientError(f"libnbd's Python module 'nbd' cannot be imported ({exc}): run "
                             f"make setup (Debian package python3-libnbd; the virtual "
                             f"environment must see Debian's dist-packages)") from None


def _io_error(nbd: ModuleType, exc: Exception, what: str) -> OSError:
    code = exc.args[1] if isinstance(exc, nbd.Error) and len(exc.args) > 1 else 0
    return OSError(code or errno.EIO, f"{what}: {exc}")


def _release(h: Any) -> None:
    """Close a handle: ``close()`` where libnbd has it (1.16 on), else the last reference
    dropped (1.14 closes in ``__del__``; calling that by hand would close it twice)."""
    close = getattr(h, "close", None)
    if close is not None:
        close()


class NbdDevice:
    """The export at ``uri`` (``nbd://host:port/export``) as a block device."""

    where = "remote"

    def __init__(self, uri: str, *, connect_timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        self.uri = uri
        self._nbd = load_nbd()
        self._h: Any = self._nbd.NBD()
        try:
            self._connect(connect_timeout_s)
            self.size: int = self._h.get_size()
        except BaseException:
            _release(self._h)
            self._h = None
            raise
        log.debug("connected to %s (%d bytes)", uri, self.size)

    def _connect(self, timeout_s: float) -> None:
        h, nbd = self._h, self._nbd
        deadline = time.monotonic() + timeout_s
        try:
            h.aio_connect_uri(self.uri)
            while not h.aio_is_ready():
                if h.aio_is_dead() or h.aio_is_closed():
                    raise NbdClientError(f"cannot connect to {self.uri}: the connection died")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise NbdClientError(f"cannot connect to {self.uri}: no answer within "
                                         f"{timeout_s:g} s")
                h.poll(max(1, min(POLL_MS, int(left * 1000))))
        except nbd.Error as exc:
            raise NbdClientError(f"cannot connect to {self.uri}: {exc}") from None

    def _handle(self) -> Any:
        if self._h is None:
            raise ValueError(f"{self.uri}: I/O on a closed device")
        return self._h

    def pread(self, offset: int, n: int) -> bytes:
        """``n`` bytes at ``offset`` (zeros where nothing was written)."""
        h = self._handle()
        try:
            return bytes(h.pread(n, offset))   # libnbd 1.14 gives a bytearray
        except self._nbd.Error as exc:
            raise _io_error(self._nbd, exc, f"{self.uri}: read of {n} bytes at {offset}") \
                from None

    def pwrite(self, data: bytes, offset: int) -> None:
        """Write ``data`` at ``offset``; returns once the server has acknowledged it."""
        h = self._handle()
        try:
            h.pwrite(data, offset)
        except self._nbd.Error as exc:
            raise _io_error(self._nbd, exc,
                            f"{self.uri}: write of {len(data)} bytes at {offset}") from None

    def flush(self) -> None:
        """Ask the server to make every acknowledged write durable."""
        h = self._handle()
        try:
            h.flush()
        except self._nbd.Error as exc:
            raise _io_error(self._nbd, exc, f"{self.uri}: flush") from None

    def close(self) -> None:
        """Disconnect (idempotent)."""
        h, self._h = self._h, None
        if h is None:
            return
        try:
            h.shutdown()
        except self._nbd.Error as exc:      # the server already gone: nothing left to tell it
            log.debug("%s: shutdown: %s", self.uri, exc)
        finally:
            _release(h)

    def __enter__(self) -> NbdDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
