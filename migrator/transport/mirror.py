"""The disk mirror stream of a migration: one guest write at a time, acknowledged once applied.

Write-blocking storage migration (``migrator.guest.mirrorserve``) needs a guest write at the
destination before the write completes. The source opens one more authenticated stream of the
session, role ``mirror`` (sealed with the session's encryption like the others; TCP_NODELAY),
and sends each write as a PAGES frame of round ``MIRROR_ROUND`` (codec none: one block at a
time, latency is what matters); the destination applies it (``RoundOrderedMemory.mirror``: no
round's older copy of those pages replaces it, and the image digest follows) and answers with a
ROUND_END counting the pages. So a write costs one round trip over the WAN plus the apply.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import numpy as np

from migrator.memory.pages import PAGE_SIZE
from migrator.transport.channel import Channel, IdleTimeoutError, TransportError
from migrator.transport.roundmem import MIRROR_ROUND, RoundOrderedMemory
from migrator.wire.frames import FrameError
from migrator.wire.messages import Pages, RoundEnd
from migrator.wire.pagestream import PagesDecoder, PageStreamEncoder

log = logging.getLogger(__name__)


class MirrorStream:
    """Source side: ``copy(first, data)`` returns once the destination applied the pages."""

    def __init__(self, dial: Callable[[], Channel], max_frame: int) -> None:
        self._dial = dial
        self._ch: Channel | None = None
        self._enc = PageStreamEncoder(max_frame=max_frame)
        self._lock = threading.Lock()
        self._closed = False

    def open(self) -> None:
        """Dial now (before the rounds fill the link, whose queue would delay each round trip
        of the handshake); otherwise the first write dials."""
        with self._lock:
            if self._ch is None and not self._closed:
                self._ch = self._dial()

    def copy(self, first: int, data: bytes) -> None:
        n = len(data) // PAGE_SIZE
        if n < 1 or len(data) % PAGE_SIZE:
            raise ValueError(f"a mirrored write of {len(data)} bytes: whole pages expected")
        idx = np.arange(first, first + n, dtype=np.int64)
        with self._lock:
            if self._closed:
                raise TransportError("mirror stream closed")
            if self._ch is None:
                self._ch = self._dial()
            for frame in self._enc.frames(MIRROR_ROUND, idx, data, "none"):
                self._ch.send_frame(self._ch.seal(frame))
            ack = self._ch.expect(RoundEnd, "mirror acknowledgement")
        if ack.round != MIRROR_ROUND or ack.pages != n:   # type: ignore[union-attr]
            raise TransportError(f"mirror stream: acknowledged {ack}, expected {n} pages")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._ch is not None:
                self._ch.close()
                self._ch = None


def serve_mirror(ch: Channel, mem: RoundOrderedMemory, xbzrle_cache_mib: int) -> None:
    """Destination side, until the source closes the stream: apply each mirrored write and
    acknowledge it."""
    dec = PagesDecoder(mem.memory.shape[0], xbzrle_cache_mib)
    while True:
        try:
            msg = ch.recv(eof_ok=True)
        except IdleTimeoutError:
            continue            # a guest that writes rarely; the control stream watches the source
        if msg is None:
            return
        if not isinstance(msg, Pages) or msg.round != MIRROR_ROUND:
            raise FrameError(f"{ch.name}: {type(msg).__name__} round "
                             f"{getattr(msg, 'round', None)}, expected mirrored PAGES")
        idx, pages, zero = dec.decode(msg)
        if len(zero):
            idx = np.concatenate([idx, zero])
            pages = np.concatenate([pages, np.zeros((len(zero), PAGE_SIZE), np.uint8)])
        mem.mirror(idx, pages)
        ch.send(RoundEnd(MIRROR_ROUND, len(idx), 0, 0))
