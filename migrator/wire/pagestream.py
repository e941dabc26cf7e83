"""PAGES messages from engine sends, and their application to destination memory.

Why here and not in the transport: turning ``send_pages`` arguments into frames and frames back
into memory is pure and codec-specific (XBZRLE state must advance identically on both sides, in
frame order), so it belongs with the codecs and can be tested without sockets.  The transport
only moves the bytes; with several streams, all XBZRLE traffic must go over one stream (or one
encoder/decoder pair per stream, with pages partitioned between streams by index) to keep the
caches in step.
"""

from __future__ import annotations

import numpy as np

from migrator.codecs.chunk import Codec, as_pages
from migrator.codecs.names import codec_id, codec_name
from migrator.codecs.registry import get_codec
from migrator.memory.pages import PAGE_SIZE
from migrator.wire.frames import HEADER, MAX_FRAME, FrameError
from migrator.wire.messages import Pages, to_frame

_EMPTY = np.empty(0, dtype=np.int64)
_PAGES_FIXED = HEADER.size + 13


class PageStreamEncoder:
    """Source side: one codec instance per codec name, kept for the whole migration."""

    def __init__(self, xbzrle_cache_mib: int = 64, max_frame: int = MAX_FRAME) -> None:
        self.xbzrle_cache_mib = xbzrle_cache_mib
        self.max_frame = max_frame
        self._codecs: dict[str, Codec] = {}

    def _codec(self, name: str) -> Codec:
        if name not in self._codecs:
            self._codecs[name] = get_codec(name, role="encode",
                                           xbzrle_cache_mib=self.xbzrle_cache_mib)
        return self._codecs[name]

    def frames(self, round_no: int, indices: np.ndarray, data: bytes, codec: str,
               zero_indices: np.ndarray | None = None) -> list[bytes]:
        """Framed PAGES messages for one send; split in halves until each fits ``max_frame``.

        The split happens BEFORE encoding (the encoded size of a chunk is only known after
        encoding, and XBZRLE must not encode the same pages twice), using the worst case of
        raw pages plus a 1/64 margin.
        """
        indices = np.asarray(indices, dtype=np.int64)
        zero = _EMPTY if zero_indices is None else np.asarray(zero_indices, dtype=np.int64)
        pages = as_pages(data) if len(indices) else np.empty((0, PAGE_SIZE), np.uint8)
        out: list[bytes] = []
        self._emit(round_no, indices, pages, codec, zero, out)
        return out

    def _emit(self, rnd: int, idx: np.ndarray, pages: np.ndarray, codec: str,
              zero: np.ndarray, out: list[bytes]) -> None:
        worst = _PAGES_FIXED + 4 * (len(idx) + len(zero)) + len(pages) * PAGE_SIZE * 65 // 64 \
            + 64
        if worst > self.max_frame and len(idx) + len(zero) > 1:
            h, z = len(idx) // 2, len(zero) // 2
            self._emit(rnd, idx[:h], pages[:h], codec, zero[:z], out)
            self._emit(rnd, idx[h:], pages[h:], codec, zero[z:], out)
            return
        blob = self._codec(codec).encode(pages.tobytes(), idx) if len(idx) else b""
        msg = Pages(rnd, codec_id(codec), zero, idx, blob)
        out.append(to_frame(msg, max_frame=self.max_frame))


class PagesDecoder:
    """PAGES -> (indices, pages, zero indices), checked: indices inside the guest, a known
    codec, a blob that decodes; anything else is a FrameError naming the round. One instance
    per stream (XBZRLE's cache follows the stream's frame order); counts what it decoded."""

    def __init__(self, npages: int, xbzrle_cache_mib: int = 64) -> None:
        self.npages = npages
        self.xbzrle_cache_mib = xbzrle_cache_mib
        self._codecs: dict[int, Codec] = {}
        self.pages = self.zero_pages = 0

    def decode(self, msg: Pages) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        for name, arr in (("zero", msg.zero_indices), ("page", msg.indices)):
            if len(arr) and (arr.min() < 0 or arr.max() >= self.npages):
                raise FrameError(f"PAGES round {msg.round}: {name} index {int(arr.max())} "
                                 f"outside the guest's {self.npages} pages")
        if msg.codec_id not in self._codecs:
            try:
                name = codec_name(msg.codec_id)
            except ValueError as exc:
                raise FrameError(f"PAGES round {msg.round}: {exc}") from None
            self._codecs[msg.codec_id] = get_codec(name, role="decode",
                                                   xbzrle_cache_mib=self.xbzrle_cache_mib)
        pages = np.empty((0, PAGE_SIZE), np.uint8)
        if len(msg.indices):
            try:
                raw = self._codecs[msg.codec_id].decode(msg.blob, len(msg.indices), msg.indices)
            except ValueError as exc:
                raise FrameError(f"PAGES round {msg.round}: {exc}") from None
            pages = as_pages(raw)
        self.pages += len(msg.indices)
        self.zero_pages += len(msg.zero_indices)
        return msg.indices, pages, msg.zero_indices


class PageStreamDecoder:
    """Destination side: applies PAGES messages, in stream order, to a memory image."""

    def __init__(self, memory: np.ndarray, xbzrle_cache_mib: int = 64) -> None:
        if memory.ndim != 2 or memory.shape[1] != PAGE_SIZE:
            raise ValueError(f"memory must be (npages, {PAGE_SIZE}), got {memory.shape}")
        self.memory = memory
        self._decoder = PagesDecoder(len(memory), xbzrle_cache_mib)
        self.pages_applied = 0

    def apply(self, msg: Pages) -> None:
        idx, pages, zero = self._decoder.decode(msg)
        if len(idx):
            self.memory[idx] = pages
        if len(zero):
            self.memory[zero] = 0
        self.pages_applied += len(idx) + len(zero)
