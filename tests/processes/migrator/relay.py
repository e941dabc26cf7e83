"""A man in the middle without the key, for the channel's attack tests.

It accepts on 127.0.0.1, opens a connection to the destination for each connection it accepts,
and forwards frame by frame in both directions. ``tamper(conn, direction, frame)`` returns the
frames to forward instead (none, the same, changed ones, extra ones); ``direction`` is 's2d' or
'd2s', ``conn`` a dict with the connection's index, its HELLO role once seen, and what was
forwarded. Every byte the source sent is kept in ``seen`` for the eavesdropping test.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import zlib
from collections.abc import Callable

from migrator.wire.frames import HEADER, MsgType

Tamper = Callable[[dict, str, bytes], list[bytes]]


def frame_type(frame: bytes) -> int:
    return frame[5]


def with_crc(frame: bytes | bytearray) -> bytes:
    """The frame with its CRC made right again (anyone can: it has no key)."""
    f = bytearray(frame)
    crc = zlib.crc32(bytes(f[HEADER.size:]), zlib.crc32(bytes(f[:HEADER.size - 4])))
    f[HEADER.size - 4:HEADER.size] = struct.pack(">I", crc)
    return bytes(f)


def flip_payload_byte(frame: bytes, offset: int = 40) -> bytes:
    f = bytearray(frame)
    f[min(HEADER.size + offset, len(f) - 1)] ^= 0x5A
    return with_crc(f)


class Relay:
    def __init__(self, dest: tuple[str, int], tamper: Tamper | None = None) -> None:
        self.dest = dest
        self.tamper = tamper
        self.seen = bytearray()
        self.conns: list[dict] = []
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.addr = self.listener.getsockname()[:2]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                src, _ = self.listener.accept()
            except OSError:
                return
            dst = socket.create_connection(self.dest, 5)
            conn = {"index": len(self.conns), "role": None, "frames": {"s2d": 0, "d2s": 0}}
            with self._lock:
                self.conns.append(conn)
                self._socks += [src, dst]
            for a, b, d in ((src, dst, "s2d"), (dst, src, "d2s")):
                threading.Thread(target=self._pump, args=(conn, a, b, d), daemon=True).start()

    @staticmethod
    def _read(sock: socket.socket, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    def _pump(self, conn: dict, a: socket.socket, b: socket.socket, direction: str) -> None:
        try:
            while True:
                head = self._read(a, HEADER.size)
                length = HEADER.unpack(head)[4]
                frame = head + (self._read(a, length) if length else b"")
                if direction == "s2d":
                    with self._lock:
                        self.seen += frame
                    if conn["role"] is None and frame_type(frame) == MsgType.HELLO:
                        conn["role"] = json.loads(frame[HEADER.size:]).get("role")
                out = self.tamper(conn, direction, frame) if self.tamper else [frame]
                conn["frames"][direction] += 1
                for f in out:
                    b.sendall(f)
        except (OSError, EOFError):
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()
        with self._lock:
            for s in self._socks:
                s.close()
