"""The self-checking block: what every guest write puts on the disk, and the check of a read.

A block of ``block_bytes`` is a 32-byte header, then the payload::

    magic b"WMDB" | block_bytes u32 | block index u64 | write sequence u64 | xxh64(payload) u64

all little-endian.  Sequence 0 is the datastore's initial fill, 1, 2, ... the guest's writes of
that block; a block never written reads back as zeros.  So a read tells exactly what went wrong:
all zeros where data was written (the write never reached this copy), an older sequence (a stale
copy: a write lost in a migration), another block's header (misplaced data) or a payload that
does not match its checksum (a torn or corrupted copy).

The payload is cut from a pool built once per process (the text pool of the memory pages for
``text``, compressible 3-4x like them; 16 MiB of seeded random bytes for ``random``) at an offset
mixed from (index, sequence, salt): each write differs, and a 64 KiB block costs two copies and
one hash (about 15 us measured here, well under the 100 us budget).
"""

from __future__ import annotations

import functools
import struct

import numpy as np
import xxhash

from migrator.memory.pages import text_pool
from migrator.memory.writes import CONTENTS, random_bytes

MAGIC = b"WMDB"
HEADER = struct.Struct("<4sIQQQ")
HEADER_BYTES = HEADER.size                 # 32
NEVER_WRITTEN = -1                         # expected_seq of a block that must read as zeros
_RANDOM_POOL_BYTES = 16 * 1024 * 1024
_RANDOM_POOL_SEED = 0x5EED_D15C
_MIX_A = 0x9E3779B97F4A7C15                # odd 64-bit constants (golden ratio, xxh64 prime)
_MIX_B = 0xC2B2AE3D27D4EB4F
_MASK64 = (1 << 64) - 1


@functools.lru_cache(maxsize=2)
def _pool(content: str) -> memoryview:
    if content == "text":
        return memoryview(text_pool().tobytes())
    if content == "random":
        rng = np.random.default_rng(_RANDOM_POOL_SEED)
        return memoryview(random_bytes(rng, _RANDOM_POOL_BYTES).tobytes())
    raise ValueError(f"content must be one of {', '.join(CONTENTS)}, got {content!r}")


@functools.lru_cache(maxsize=8)
def _zeros(n: int) -> bytes:
    return bytes(n)


def _offset(index: int, seq: int, salt: int, span: int) -> int:
    """A well-spread offset in [0, span) from (index, seq, salt)."""
    x = (index * _MIX_A + seq * _MIX_B + salt) & _MASK64
    x ^= x >> 31
    x = (x * _MIX_A) & _MASK64
    x ^= x >> 29
    return x % span


def make_block(index: int, seq: int, block_bytes: int, content: str, salt: int = 0) -> bytes:
    """The bytes the guest writes as the ``seq``-th version of block ``index``."""
    if block_bytes <= HEADER_BYTES:
        raise ValueError(f"block_bytes must exceed the {HEADER_BYTES}-byte header, "
                         f"got {block_bytes}")
    if seq < 0 or index < 0:
        raise ValueError(f"index and seq must be >= 0, got {index}, {seq}")
    pool = _pool(content)
    n = block_bytes - HEADER_BYTES
    if n > len(pool):
        raise ValueError(f"block_bytes {block_bytes} exceeds the payload pool ({len(pool)})")
    off = _offset(index, seq, salt, len(pool) - n + 1)
    payload = pool[off:off + n]
    return HEADER.pack(MAGIC, block_bytes, index, seq, xxhash.xxh64_intdigest(payload)) + payload


def block_seq(data: bytes) -> int:
    """The sequence number in a block's header; -1 when it has no valid header."""
    if len(data) < HEADER_BYTES:
        return NEVER_WRITTEN
    magic, _, _, seq, _ = HEADER.unpack_from(data)
    return seq if magic == MAGIC else NEVER_WRITTEN


def check_block(data: bytes, index: int, expected_seq: int) -> str:
    """'' when ``data`` is the block ``index`` at ``expected_seq`` (-1: never written, all zeros
    expected), else a short reason: 'zeros', 'stale: seq 3, expected 5', 'wrong block 17',
    'corrupt payload', ..."""
    n = len(data)
    if n <= HEADER_BYTES:
        return f"short block: {n} bytes"
    view = memoryview(data)
    zeros = view == _zeros(n)
    if expected_seq == NEVER_WRITTEN:
        if zeros:
            return ""
        seq = block_seq(data)
        return "expected zeros" if seq < 0 else f"expected zeros, found seq {seq}"
    if zeros:
        return "zeros"
    magic, size, idx, seq, digest = HEADER.unpack_from(data)
    if magic != MAGIC:
        return "bad magic"
    if size != n:
        return f"wrong size {size}, read {n}"
    if idx != index:
        return f"wrong block {idx}"
    if seq != expected_seq:
        word = "stale" if seq < expected_seq else "ahead"
        return f"{word}: seq {seq}, expected {expected_seq}"
    if xxhash.xxh64_intdigest(view[HEADER_BYTES:]) != digest:
        return "corrupt payload"
    return ""
