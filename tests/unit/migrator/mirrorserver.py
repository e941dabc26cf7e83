"""A stand-in for the source migrator's mirror socket, for the disk tests.

Serves the guest's mirror requests on a unix stream socket: records each ``(first_sector,
nsectors)``, calls ``on_request`` (a test's check of what must hold at that moment), waits
``delay_s`` (the copy across the WAN) and answers ``reply``.  ``stop`` closes everything and
removes the socket, as a migrator that ends the mirror does.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from migrator.disk.device import MIRROR_ACK, MIRROR_REQUEST


class FakeMirror:
    def __init__(self, path: Path, delay_s: float = 0.0, reply: bytes = MIRROR_ACK,
                 on_request: Callable[[int, int], None] | None = None) -> None:
        self.path = Path(path)
        self.delay_s = delay_s
        self.reply = reply
        self.on_request = on_request
        self.requests: list[tuple[int, int]] = []
        self.errors: list[BaseException] = []
        self.connections = 0
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(self.path))
        self._server.listen(4)
        self._server.settimeout(0.05)
        self._start(self._accept)

    def _start(self, target: Callable, *args: object) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(t)
        t.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._conns.append(conn)
            self._start(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(None)
        with contextlib.suppress(OSError):
            while True:
                data = b""
                while len(data) < MIRROR_REQUEST.size:
                    chunk = conn.recv(MIRROR_REQUEST.size - len(data))
                    if not chunk:
                        return
                    data += chunk
                first, n = MIRROR_REQUEST.unpack(data)
                try:
                    if self.on_request is not None:
                        self.on_request(first, n)
                except BaseException as exc:  # noqa: BLE001 - reported by the test
                    self.errors.append(exc)
                with self._lock:
                    self.requests.append((first, n))
                if self.delay_s:
                    time.sleep(self.delay_s)          # the copy across the WAN
                conn.sendall(self.reply)

    def stop(self) -> None:
        self._stop.set()
        self._server.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        for t in self._threads:
            t.join(timeout=5)
