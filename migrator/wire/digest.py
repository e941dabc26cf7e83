"""The memory image digest both ends compare before the guest may resume at the destination.

SHA-256 over fixed 64 KiB chunks of the image in page order, hashed in parallel threads
(hashlib releases the GIL on large buffers), then SHA-256 over the chunk digests. Computed while
the guest is paused, its time is downtime (a plain SHA-256 of 1 GiB takes 0.6 s here), so both
ends keep chunk digests current while pre-copy runs (``migrator.wire.incremental``: the source from
its dirty log, the destination as pages arrive) and re-hash only the chunks written since.
Any change to any byte or page order changes it.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

CHUNK_BYTES = 64 * 1024      # small: only the chunks the last writes touched are re-hashed
DOMAIN = b"wanmig-image-v1"


def chunk_digests(flat: np.ndarray, chunks: list[int]) -> list[bytes]:
    """SHA-256 of each listed chunk of a flat uint8 image."""
    out = []
    for c in chunks:
        start = c * CHUNK_BYTES
        out.append(hashlib.sha256(flat[start:start + CHUNK_BYTES].data).digest())
    return out


def parallel_chunk_digests(flat: np.ndarray, chunks: list[int],
                           workers: int | None = None) -> list[bytes]:
    """``chunk_digests`` split into contiguous groups, one thread each (not a task per chunk:
    with 64 KiB chunks the scheduling would cost as much as the hashing)."""
    n = max(1, min(workers or os.cpu_count() or 1, len(chunks) // 64 or 1))
    if n == 1:
        return chunk_digests(flat, chunks)
    groups = [list(g) for g in np.array_split(np.asarray(chunks, dtype=np.int64), n)]
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="wanmig-digest") as pool:
        parts = list(pool.map(lambda g: chunk_digests(flat, g), groups))
    return [d for part in parts for d in part]


def image_digest(pages: np.ndarray, workers: int | None = None) -> bytes:
    """Digest of a ``(npages, page_size)`` uint8 image, read in place (no copy)."""
    flat = np.ascontiguousarray(pages).reshape(-1)
    nchunks = -(-flat.size // CHUNK_BYTES)
    return combine(parallel_chunk_digests(flat, list(range(nchunks)), workers))


def combine(chunk_digests: list[bytes]) -> bytes:
    """The top of the tree, from the SHA-256 of each ``CHUNK_BYTES`` chunk in order."""
    top = hashlib.sha256(DOMAIN)
    top.update(len(chunk_digests).to_bytes(8, "big"))
    for c in chunk_digests:
        top.update(c)
    return top.digest()
