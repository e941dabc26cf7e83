"""The source hypervisor's end of a write-blocking disk mirror: the guest asks, we copy.

With ``policy.storage: write-blocking`` every disk write of the guest completes only once the
destination has it too (QEMU's active mirror, ``copy-mode=write-blocking``). The guest's disk
thread (``migrator.disk.worker``) writes its block locally, then sends ``(first_sector,
nsectors)`` over a unix socket to this server and waits for one byte (the format is the
client's, ``migrator.disk.device``); we read
those sectors from the source image and hand them to ``copy`` (the migration's mirror stream,
``migrator.transport.mirror``: sealed like every other stream, applied at the destination
before its acknowledgement comes back), then answer ``b"\\x01"``. So a write costs one round
trip more, the quantity researchers measure.

Only one guest connects; ``wait_connected`` tells the engine that every later write is
mirrored. A failed copy is kept in ``error`` (the engine then aborts: the source still has every
write) and the guest is answered ``b"\\x00"``; ``close`` removes the socket, and the guest, seeing
it gone, writes locally only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from migrator.disk.device import MIRROR_ACK, MIRROR_FAILED, MIRROR_REQUEST

log = logging.getLogger(__name__)



class MirrorServer:
    def __init__(self, path: Path, read_sectors: Callable[[int, int], bytes],
                 copy: Callable[[int, bytes], None]) -> None:
        self.path, self.read_sectors, self.copy = path, read_sectors, copy
        self.error: str | None = None
        self.copies = 0
        self.copied_bytes = 0
        self._connected = threading.Event()
        self._closed = threading.Event()
        self._conn: socket.socket | None = None
        with contextlib.suppress(FileNotFoundError):
            path.unlink()                      # a crashed run's
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(os.fspath(path))
        self._sock.listen(1)
        self._thread = threading.Thread(target=self._serve, name="wanmig-mirror", daemon=True)
        self._thread.start()

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def _serve(self) -> None:
        try:
            conn, _ = self._sock.accept()
        except OSError:
            return                              # closed before the guest came
        self._conn = conn
        self._connected.set()
        log.info("disk mirror: the guest connected")
        with conn:
            while not self._closed.is_set():
                try:
                    head = conn.recv(MIRROR_REQUEST.size, socket.MSG_WAITALL)
                except OSError:
                    return
                if len(head) < MIRROR_REQUEST.size:
                    return
                first, n = MIRROR_REQUEST.unpack(head)
                conn.sendall(self._copy(first, n))

    def _copy(self, first: int, n: int) -> bytes:
        if self.error is not None:
            return MIRROR_FAILED
        try:
            data = self.read_sectors(first, n)
            self.copy(first, data)
        except Exception as exc:  # noqa: BLE001 - kept for the engine, the guest told
            self.error = f"disk mirror: {type(exc).__name__}: {exc}"
            log.error("%s", self.error)
            return MIRROR_FAILED
        self.copies += 1
        self.copied_bytes += len(data)
        return MIRROR_ACK

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5.0)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
