"""Stateless chunk codecs (none, lz4, zstd-N) and zero-page elision: the pieces every other codec
stands on.

Codecs work on CHUNKS (many pages concatenated) rather than single pages because the per-call
Python overhead (~µs) would otherwise dominate at hundreds of MB/s, and because zstd/lz4 find
more redundancy in a larger window.  Zero pages never reach a codec: ``split_zero`` removes them
first and they travel as a list of indices (QEMU's ``RAM_SAVE_FLAG_ZERO``).

Every codec has ``encode(data, indices)`` and ``decode(blob, n_pages, indices)``; the stateless
ones ignore ``indices``, XBZRLE (``migrator.codecs.xbzrle``) needs them to find each page's
previous version.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from itertools import zip_longest
from typing import Protocol

import lz4.block
import numpy as np
import zstandard

from migrator.codecs.names import ZSTD_LEVELS
from migrator.memory.pages import PAGE_SIZE


class Codec(Protocol):
    """What the engine and the transport call; one instance per stream (not thread-safe)."""

    name: str

    def encode(self, data: bytes, indices: np.ndarray | None = None) -> bytes: ...

    def decode(self, blob: bytes, n_pages: int, indices: np.ndarray | None = None) -> bytes: ...


def _check_size(out: bytes, n_pages: int, name: str) -> bytes:
    if len(out) != n_pages * PAGE_SIZE:
        raise ValueError(f"{name}: decoded {len(out)} bytes, expected {n_pages} pages "
                         f"({n_pages * PAGE_SIZE} bytes)")
    return out


class NoneCodec:
    """Raw pages: the right choice when the link is faster than any compressor on this CPU."""

    name = "none"

    def encode(self, data: bytes, indices: np.ndarray | None = None) -> bytes:
        # Always a copy (bytes(b) would return b itself): the benchmark then measures memcpy.
        return bytes(memoryview(data))

    def decode(self, blob: bytes, n_pages: int, indices: np.ndarray | None = None) -> bytes:
        return _check_size(bytes(blob), n_pages, self.name)


class Lz4Codec:
    """lz4 block format: ~2x on text at GB/s, the cheap option for fast links."""

    name = "lz4"

    def encode(self, data: bytes, indices: np.ndarray | None = None) -> bytes:
        return lz4.block.compress(data, store_size=False)

    def decode(self, blob: bytes, n_pages: int, indices: np.ndarray | None = None) -> bytes:
        try:
            out = lz4.block.decompress(blob, uncompressed_size=n_pages * PAGE_SIZE)
        except lz4.block.LZ4BlockError as exc:
            raise ValueError(f"lz4: corrupt block: {exc}") from exc
        return _check_size(out, n_pages, self.name)


class ZstdCodec:
    """zstd at a fixed level; QEMU's multifd uses zstd too.  Level trades CPU for ratio."""

    def __init__(self, level: int) -> None:
        self.level = level
        self.name = f"zstd-{level}"
        self._c = zstandard.ZstdCompressor(level=level)
        self._d = zstandard.ZstdDecompressor()

    def encode(self, data: bytes, indices: np.ndarray | None = None) -> bytes:
        return self._c.compress(data)

    def decode(self, blob: bytes, n_pages: int, indices: np.ndarray | None = None) -> bytes:
        try:
            out = self._d.decompress(blob, max_output_size=n_pages * PAGE_SIZE)
        except zstandard.ZstdError as exc:
            raise ValueError(f"{self.name}: corrupt frame: {exc}") from exc
        return _check_size(out, n_pages, self.name)


# name => maker of a fresh instance, for every codec that keeps no state between chunks
STATELESS: dict[str, Callable[[], Codec]] = {
    "none": NoneCodec, "lz4": Lz4Codec,
    **{f"zstd-{n}": partial(ZstdCodec, n) for n in ZSTD_LEVELS}}


def as_pages(data: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """A read-only ``(n, PAGE_SIZE)`` uint8 view of page data (no copy)."""
    arr = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) \
        else data.reshape(-1)
    if arr.size % PAGE_SIZE:
        raise ValueError(f"page data of {arr.size} bytes is not a multiple of {PAGE_SIZE}")
    return arr.reshape(-1, PAGE_SIZE)


def split_zero(indices: np.ndarray, data: bytes | np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, bytes]:
    """Separate all-zero pages: ``(zero_indices, nonzero_indices, nonzero_data)``.

    Vectorised: the pages are viewed as 512 uint64 words and tested with ``any`` per row.
    """
    pages = as_pages(data)
    indices = np.asarray(indices, dtype=np.int64)
    if len(indices) != len(pages):
        raise ValueError(f"{len(indices)} indices for {len(pages)} pages")
    nonzero = pages.view(np.uint64).any(axis=1)
    return indices[~nonzero], indices[nonzero], pages[nonzero].tobytes()


def batches(indices: np.ndarray, zero: np.ndarray, chunk: int, zero_batch: int
            ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One send's worth at a time: up to ``chunk`` pages with data and ``zero_batch`` zero-page
    indices, paired in order (an empty array where one list ran out)."""
    empty = np.empty(0, dtype=np.int64)
    chunks = [indices[i:i + chunk] for i in range(0, len(indices), chunk)]
    zeros = [zero[i:i + zero_batch] for i in range(0, len(zero), zero_batch)]
    yield from zip_longest(chunks, zeros, fillvalue=empty)
