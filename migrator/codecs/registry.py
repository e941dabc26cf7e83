"""Chunk codecs for page data, zero-page elision, and the codec registry.

Codecs work on CHUNKS (many pages concatenated) rather than single pages because the per-call
Python overhead (~µs) would otherwise dominate at hundreds of MB/s, and because zstd/lz4 find
more redundancy in a larger window.  Zero pages never reach a codec: ``split_zero`` removes them
first and they travel as a list of indices (QEMU's ``RAM_SAVE_FLAG_ZERO``).

Every codec has ``encode(data, indices)`` and ``decode(blob, n_pages, indices)``; the stateless
ones ignore ``indices``, XBZRLE (``migrator.codecs.xbzrle``) needs them to find each page's previous
version.  A codec's wire id (one byte in the PAGES message) is given by ``codec_id``.
"""

from __future__ import annotations

import re
from typing import Protocol

import lz4.block
import numpy as np
import zstandard

from ground.config import ConfigError
from migrator.memory.pages import PAGE_SIZE

ZSTD_LEVELS = range(1, 20)
CODECS: tuple[str, ...] = ("none", "lz4", *(f"zstd-{n}" for n in ZSTD_LEVELS), "xbzrle")
_ZSTD_RE = re.compile(r"zstd-([0-9]{1,2})")
_ZSTD_ID_BASE = 0x10


class Codec(Protocol):
    """What the engine and the transport call; one instance per stream (not thread-safe)."""

    name: str

    def encode(self, data: bytes, indices: np.ndarray | None = None) -> bytes: ...

    def decode(self, blob: bytes, n_pages: int, indices: np.ndarray | None = None) -> bytes: ...


def check_codec_name(name: object, path: str = "policy.codec") -> str:
    """``name`` if it is a codec name, else ConfigError naming ``path``."""
    if not isinstance(name, str) or name not in CODECS:
        raise ConfigError(path, name, "a codec: none, lz4, zstd-1 .. zstd-19 or xbzrle")
    return name


def codec_id(name: str) -> int:
    """The one-byte wire id of a codec name."""
    check_codec_name(name)
    if name == "none":
        return 0
    if name == "lz4":
        return 1
    if name == "xbzrle":
        return 2
    return _ZSTD_ID_BASE + int(name.split("-")[1])


def codec_name(ident: int) -> str:
    """Inverse of ``codec_id``; ValueError for an id no codec has."""
    fixed = {0: "none", 1: "lz4", 2: "xbzrle"}
    if ident in fixed:
        return fixed[ident]
    level = ident - _ZSTD_ID_BASE
    if level in ZSTD_LEVELS:
        return f"zstd-{level}"
    raise ValueError(f"unknown codec id {ident}")


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


def get_codec(name: str, *, role: str = "encode", xbzrle_cache_mib: int = 64,
              path: str = "policy.codec") -> Codec:
    """A fresh codec instance; ConfigError (``path``) for an unknown name.

    ``role`` matters only for XBZRLE, whose encoder and decoder keep mirrored caches: the source
    asks for ``role='encode'``, the destination for ``role='decode'``, with the same cache size.
    """
    check_codec_name(name, path)
    if name == "none":
        return NoneCodec()
    if name == "lz4":
        return Lz4Codec()
    if name == "xbzrle":
        from migrator.codecs.xbzrle import XbzrleDecoder, XbzrleEncoder
        if role == "decode":
            return XbzrleDecoder(xbzrle_cache_mib)
        return XbzrleEncoder(xbzrle_cache_mib)
    match = _ZSTD_RE.fullmatch(name)
    assert match is not None
    return ZstdCodec(int(match.group(1)))


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
