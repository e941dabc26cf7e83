"""XBZRLE: delta-encode a re-sent page against the version sent before (QEMU migration/xbzrle.c).

Why: a page re-dirtied by a small write (a counter, a list node, a few hundred bytes of a buffer)
differs from its previous version in a few runs of bytes; sending just those runs costs far less
than even a zstd-compressed page.  Like QEMU, the source keeps the previously SENT content of
pages in a bounded cache (LRU, ``cache_mib``), and the destination keeps a mirrored cache so it
can apply the delta.

Per page encoding (as QEMU): compare old and new (their XOR is zero where they agree); emit
alternately ``zrun`` (length of an unchanged run, ULEB128) and ``nzrun`` (length of a changed run,
ULEB128, followed by the NEW bytes of that run), starting with a zrun and dropping a trailing
zrun.  Decoding copies the new bytes over the cached old page.

Fallback (documented choice): a page not in the cache, or whose delta would exceed
``max_delta_bytes`` (default 1/2 page: beyond that zstd on the whole page usually wins), is sent
whole, compressed together with the other fallback pages of the chunk by ``fallback``
(default ``zstd-1``).

Chunk blob layout (little endian)::

    u8  fallback codec id
    u32 n_delta
    u8[n_pages]   kind per page, 1 = delta, 0 = whole page (in chunk order)
    u16[n_delta]  encoded length of each delta
    ...           the deltas, concatenated
    ...           the fallback codec's blob of the whole pages, concatenated in chunk order

Keeping the caches in sync: both sides first look pages up WITHOUT touching the LRU order,
then store every page of the chunk, in chunk order, with its new content.  The LRU order and
evictions therefore depend only on the sequence of chunks, which both sides see identically.
A chunk decoded with an error must abort the migration: the caches are then out of step.
"""

from __future__ import annotations

import struct
from collections import OrderedDict

import numpy as np

from migrator.codecs.chunk import STATELESS, Codec, as_pages
from migrator.codecs.names import codec_id, codec_name
from migrator.memory.pages import PAGE_SIZE

_HEAD = struct.Struct("<BI")
DEFAULT_MAX_DELTA = PAGE_SIZE // 2


class PageCache:
    """Bounded LRU of page contents keyed by page index, on one preallocated slab."""

    def __init__(self, cache_mib: int) -> None:
        if cache_mib < 1:
            raise ValueError(f"xbzrle cache must be at least 1 MiB, got {cache_mib}")
        self.capacity = cache_mib * (1024 * 1024 // PAGE_SIZE)
        self._slab = np.empty((self.capacity, PAGE_SIZE), dtype=np.uint8)  # touched lazily
        self._slot: OrderedDict[int, int] = OrderedDict()
        self._free = list(range(self.capacity - 1, -1, -1))
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._slot)

    def __contains__(self, index: int) -> bool:
        return index in self._slot

    def peek(self, index: int) -> np.ndarray | None:
        """The cached page (a view), without changing the LRU order."""
        slot = self._slot.get(index)
        return None if slot is None else self._slab[slot]

    def put(self, index: int, page: np.ndarray) -> None:
        """Store ``page`` as the latest version of ``index``; evicts the LRU page when full."""
        slot = self._slot.get(index)
        if slot is None:
            if not self._free:
                _, slot = self._slot.popitem(last=False)
                self.evictions += 1
            else:
                slot = self._free.pop()
            self._slot[index] = slot
        else:
            self._slot.move_to_end(index)
        self._slab[slot] = page

    def put_many(self, indices: np.ndarray, pages: np.ndarray) -> None:
        for i, index in enumerate(indices.tolist()):
            self.put(index, pages[i])


def _uleb(n: int, out: bytearray) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _read_uleb(buf: bytes, pos: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("xbzrle: truncated run length")
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            return n, pos
        shift += 7
        if shift > 28:
            raise ValueError("xbzrle: run length too long")


def encode_delta(old: np.ndarray, new: np.ndarray) -> bytes:
    """One page's delta in QEMU's zrun/nzrun format (see module docstring)."""
    changed = np.concatenate(([False], old != new, [False]))
    edges = np.flatnonzero(changed[1:] != changed[:-1])
    starts, ends = edges[0::2], edges[1::2]
    out = bytearray()
    pos = 0
    raw = new.tobytes()
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        _uleb(s - pos, out)
        _uleb(e - s, out)
        out += raw[s:e]
        pos = e
    return bytes(out)


def decode_delta(delta: bytes, old: np.ndarray) -> np.ndarray:
    """Apply a delta to a copy of ``old``; ValueError if it is malformed or overruns the page."""
    page = old.copy()
    pos = i = 0
    while i < len(delta):
        zrun, i = _read_uleb(delta, i)
        pos += zrun
        if i >= len(delta):
            break
        nzrun, i = _read_uleb(delta, i)
        if pos + nzrun > PAGE_SIZE or i + nzrun > len(delta):
            raise ValueError("xbzrle: run overruns the page or the delta")
        page[pos:pos + nzrun] = np.frombuffer(delta, dtype=np.uint8, count=nzrun, offset=i)
        pos += nzrun
        i += nzrun
    if pos > PAGE_SIZE:
        raise ValueError("xbzrle: delta overruns the page")
    return page


class XbzrleEncoder:
    """Source side: deltas against the source's cache of previously sent pages."""

    name = "xbzrle"

    def __init__(self, cache_mib: int = 64, max_delta_bytes: int = DEFAULT_MAX_DELTA,
                 fallback: str = "zstd-1") -> None:
        if fallback == "xbzrle":
            raise ValueError("xbzrle cannot be its own fallback")
        self.cache = PageCache(cache_mib)
        self.max_delta_bytes = max_delta_bytes
        if fallback not in STATELESS:
            raise ValueError(f"xbzrle's fallback must be a stateless codec "
                             f"({', '.join(STATELESS)}), got {fallback!r}")
        self.fallback: Codec = STATELESS[fallback]()
        self.stats = {"delta_pages": 0, "whole_pages": 0}

    def encode(self, data: bytes, indices: np.ndarray | None = None) -> bytes:
        if indices is None:
            raise ValueError("xbzrle needs the page indices of the chunk")
        pages = as_pages(data)
        indices = np.asarray(indices, dtype=np.int64)
        if len(indices) != len(pages):
            raise ValueError(f"{len(indices)} indices for {len(pages)} pages")
        kinds = np.zeros(len(pages), dtype=np.uint8)
        deltas: list[bytes] = []
        for i, index in enumerate(indices.tolist()):
            old = self.cache.peek(index)
            if old is None:
                continue
            # Cheap pre-check: a delta has at least as many bytes as changed bytes.
            if int(np.count_nonzero(old != pages[i])) > self.max_delta_bytes:
                continue
            delta = encode_delta(old, pages[i])
            if len(delta) <= self.max_delta_bytes:
                kinds[i] = 1
                deltas.append(delta)
        whole = pages[kinds == 0]
        self.cache.put_many(indices, pages)
        self.stats["delta_pages"] += len(deltas)
        self.stats["whole_pages"] += len(whole)
        lengths = np.array([len(d) for d in deltas], dtype="<u2").tobytes()
        return b"".join([_HEAD.pack(codec_id(self.fallback.name), len(deltas)), kinds.tobytes(),
                         lengths, *deltas, self.fallback.encode(whole.tobytes())])

    def decode(self, blob: bytes, n_pages: int, indices: np.ndarray | None = None) -> bytes:
        raise TypeError("XbzrleEncoder only encodes; the destination uses XbzrleDecoder")


class XbzrleDecoder:
    """Destination side: applies deltas against its mirror of the source's cache."""

    name = "xbzrle"

    def __init__(self, cache_mib: int = 64) -> None:
        self.cache = PageCache(cache_mib)
        self._fallbacks: dict[int, Codec] = {}

    def encode(self, data: bytes, indices: np.ndarray | None = None) -> bytes:
        raise TypeError("XbzrleDecoder only decodes; the source uses XbzrleEncoder")

    def decode(self, blob: bytes, n_pages: int, indices: np.ndarray | None = None) -> bytes:
        if indices is None or len(indices) != n_pages:
            raise ValueError("xbzrle needs the n_pages page indices of the chunk")
        indices = np.asarray(indices, dtype=np.int64)
        if len(blob) < _HEAD.size + n_pages:
            raise ValueError("xbzrle: truncated chunk header")
        fb_id, n_delta = _HEAD.unpack_from(blob)
        kinds = np.frombuffer(blob, dtype=np.uint8, count=n_pages, offset=_HEAD.size)
        if int(np.count_nonzero(kinds)) != n_delta or np.any(kinds > 1):
            raise ValueError("xbzrle: page kinds disagree with the delta count")
        pos = _HEAD.size + n_pages
        if len(blob) < pos + 2 * n_delta:
            raise ValueError("xbzrle: truncated delta lengths")
        lengths = np.frombuffer(blob, dtype="<u2", count=n_delta, offset=pos).tolist()
        pos += 2 * n_delta
        out = np.empty((n_pages, PAGE_SIZE), dtype=np.uint8)
        d = 0
        for i in np.flatnonzero(kinds).tolist():
            old = self.cache.peek(int(indices[i]))
            if old is None:
                raise ValueError(f"xbzrle: delta for page {int(indices[i])} not in the cache "
                                 "(caches out of step)")
            end = pos + lengths[d]
            if end > len(blob):
                raise ValueError("xbzrle: truncated delta")
            out[i] = decode_delta(blob[pos:end], old)
            pos = end
            d += 1
        fallback = self._fallback(fb_id)
        n_whole = n_pages - n_delta
        out[kinds == 0] = as_pages(fallback.decode(blob[pos:], n_whole))
        self.cache.put_many(indices, out)
        return out.tobytes()

    def _fallback(self, ident: int) -> Codec:
        if ident not in self._fallbacks:
            name = codec_name(ident)
            if name not in STATELESS:
                raise ValueError(f"xbzrle: fallback codec cannot be {name}")
            self._fallbacks[ident] = STATELESS[name]()
        return self._fallbacks[ident]
