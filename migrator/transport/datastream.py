"""One data connection of a migration: its encoder, a bounded queue of frames and a writer thread
that seals each frame (``Channel.seal``: in the writer, beside the engine's thread, and in queue
order, which is the order of the frame counter) and drains it into the socket, slice by slice
where the flight window or a rate cap must admit each slice first."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable

from migrator.transport.channel import Channel, TransportError, tcp_info
from migrator.wire.pagestream import PageStreamEncoder

log = logging.getLogger(__name__)

EOF_MARK = b""                  # queue sentinel: send nothing more, half-close the stream
SLICE = 64 * 1024               # bytes per admission (flight window) or debit (rate cap)


class DataStream:
    """One data connection: its encoder, a bounded frame queue and a writer thread."""

    def __init__(self, index: int, ch: Channel, encoder: PageStreamEncoder, limit: int,
                 pace: Callable[[int], None] | None,
                 room: Callable[[DataStream, int], None] | None = None) -> None:
        self.index, self.ch, self.encoder, self.limit, self.pace = index, ch, encoder, limit, pace
        self.room = room
        info = tcp_info(ch.sock)
        self.acked0 = info[1] if info else 0          # handshake bytes, not migration data
        self.sent0 = ch.bytes_sent                    # the same, as written
        self.handed = 0                               # wire bytes queued so far
        self.pages = self.zero_pages = self.bytes_raw = 0
        self.error: Exception | None = None
        self._q: deque[bytes] = deque()
        self._q_bytes = 0
        self._cv = threading.Condition()
        self.thread = threading.Thread(target=self._run, name=f"wanmig-tx{index}", daemon=True)
        self.thread.start()

    def put(self, frame: bytes, deadline: float, failed: Callable[[], Exception | None]) -> None:
        with self._cv:
            while self._q_bytes >= self.limit and self.error is None:
                err = failed()
                if err is not None:
                    raise err
                if time.monotonic() > deadline:
                    raise TransportError(f"{self.ch.name}: send queue full for too long "
                                         "(peer not reading)")
                self._cv.wait(0.05)
            if self.error is not None:
                raise TransportError(f"{self.ch.name}: {self.error}")
            self._q.append(frame)
            self._q_bytes += len(frame)
            self.handed += len(frame) + self.ch.overhead     # as sealed by the writer
            self._cv.notify_all()

    def acked(self) -> int:
        """Migration bytes the peer's TCP acknowledged (without TCP_INFO: those written)."""
        info = tcp_info(self.ch.sock) if not self.ch.closed else None
        return info[1] - self.acked0 if info else self.written()

    def written(self) -> int:
        """Migration bytes written into the socket (the handshake not counted)."""
        return self.ch.bytes_sent - self.sent0

    def queued(self) -> int:
        """Bytes waiting here for the writer (no system call)."""
        return self._q_bytes

    def unsent(self) -> int:
        """Bytes queued here or in the socket that have not been transmitted yet."""
        info = tcp_info(self.ch.sock) if not self.ch.closed else None
        return self._q_bytes + (info[2] if info else 0)

    def unacked(self) -> int:
        """Bytes written to the socket (handshake included) that the peer has not
        acknowledged: in the socket or in flight."""
        info = tcp_info(self.ch.sock) if not self.ch.closed else None
        return max(0, self.ch.bytes_sent - info[1]) if info else 0

    def backlog(self) -> int:
        """Bytes handed over that the peer has not acknowledged: queued here, in the socket,
        or in flight."""
        info = tcp_info(self.ch.sock) if not self.ch.closed else None
        if info is None:
            return self._q_bytes
        return max(0, self.handed - (info[1] - self.acked0))

    def _run(self) -> None:
        try:
            while True:
                with self._cv:
                    while not self._q:
                        self._cv.wait()
                    frame = self._q[0]
                if not frame:
                    self.ch.sock.shutdown(socket.SHUT_WR)
                    with self._cv:
                        self._q.popleft()
                        self._cv.notify_all()
                    return
                sealed = self.ch.seal(frame)
                if self.pace is None and self.room is None:
                    self.ch.send_frame(sealed)
                else:
                    view = memoryview(sealed)
                    for i in range(0, len(sealed), SLICE):
                        piece = view[i:i + SLICE]
                        if self.room is not None:
                            self.room(self, len(piece))
                        if self.pace is not None:
                            self.pace(len(piece))
                        self.ch.send_frame(piece)
                with self._cv:
                    self._q.popleft()
                    self._q_bytes -= len(frame)
                    self._cv.notify_all()
        except Exception as exc:  # noqa: BLE001 - reported to the sending thread
            log.warning("%s: writer stopped: %s", self.ch.name, exc)
            with self._cv:
                self.error = exc
                self._cv.notify_all()

    def stop(self) -> None:
        with self._cv:
            self._q.clear()
            self._q.append(EOF_MARK)
            self._cv.notify_all()
