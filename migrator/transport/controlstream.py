"""The source's end of the control stream: ROUND and ROUND_END around each round, then STATE and
DIGEST out; the destination's ACK (or its ABORT, at any time) in, read by a thread of its own
since the stream stays quiet for whole rounds."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from migrator.codecs.names import codec_id
from migrator.transport.channel import Channel, TransportError, tcp_info
from migrator.wire.messages import Ack, Message, Round, RoundEnd

log = logging.getLogger(__name__)


@dataclass
class RoundCount:
    round: int = -1
    pages: int = 0
    zero_pages: int = 0
    bytes_raw: int = 0


class ControlStream:
    def __init__(self, ch: Channel) -> None:
        self.ch = ch
        self.round = RoundCount()
        self.error: Exception | None = None      # the reader's failure, or the peer's ABORT
        self._ack: Ack | None = None
        self._cv = threading.Condition()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._read, name="wanmig-ctl", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def send(self, msg: Message) -> None:
        self.ch.send(msg)

    def start_round(self, round_no: int, codec: str) -> None:
        """ROUND_END of the round before (if any), ROUND of this one (its size is known only at
        its end: the engine streams a round in chunks)."""
        self.end_round()
        self.round = RoundCount(round_no)
        self.ch.send(Round(round_no, 0, codec_id(codec)))

    def end_round(self) -> None:
        r = self.round
        if r.round >= 0:
            self.ch.send(RoundEnd(r.round, r.pages, r.zero_pages, r.bytes_raw))

    def _read(self) -> None:
        self.ch.sock.settimeout(None)      # quiet for whole rounds; wait_ack() bounds the wait
        try:
            while not self._stop.is_set():
                msg = self.ch.recv(eof_ok=True)
                if msg is None:
                    raise TransportError("control stream: destination closed the connection")
                if isinstance(msg, Ack):
                    with self._cv:
                        self._ack = msg
                        self._cv.notify_all()
                    return
                log.warning("control stream: unexpected %s ignored", type(msg).__name__)
        except Exception as exc:  # noqa: BLE001 - handed to the engine's thread
            if not self._stop.is_set():
                self.fail(exc)

    def fail(self, exc: Exception) -> None:
        with self._cv:
            if self.error is None:
                self.error = exc
            self._cv.notify_all()

    def wait_ack(self, wait_s: float) -> Ack | None:
        """The ACK; None when the reader failed first (``error`` says why); TransportError when
        neither came within ``wait_s``."""
        with self._cv:
            end = time.monotonic() + wait_s
            while self._ack is None and self.error is None:
                left = end - time.monotonic()
                if left <= 0:
                    raise TransportError(f"control stream: no ACK within {wait_s:.1f} s")
                self._cv.wait(min(left, 0.1))
            return self._ack

    def srtt_s(self) -> float:
        """The control socket's smoothed RTT (0 when unknown)."""
        info = tcp_info(self.ch.sock) if not self.ch.closed else None
        return info[0] if info else 0.0

    def abort(self, reason: str) -> None:
        """Tell the destination to drop the migration (best effort)."""
        self.ch.try_abort(reason)

    def close(self) -> None:
        self._stop.set()
        self.ch.close()
        if self.thread.is_alive():
            self.thread.join(5.0)
