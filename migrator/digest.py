"""The memory image digest both ends compare before the guest may resume at the destination.

SHA-256 over fixed 4 MiB chunks of the image in page order, hashed in parallel threads
(hashlib releases the GIL on large buffers), then SHA-256 over the chunk digests. Computed while
the guest is paused, its time is downtime (a plain SHA-256 of 1 GiB takes 0.6 s here), so the
source hashes in parallel and the destination keeps chunk digests current as pages arrive
(``migrator.destdigest``). Any change to any byte or page order changes it.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

CHUNK_BYTES = 4 * 1024 * 1024
DOMAIN = b"wanmig-image-v1"


def image_digest(pages: np.ndarray, workers: int | None = None) -> bytes:
    """Digest of a ``(npages, page_size)`` uint8 image, read in place (no copy)."""
    flat = np.ascontiguousarray(pages).reshape(-1)
    spans = [(i, min(i + CHUNK_BYTES, flat.size)) for i in range(0, flat.size, CHUNK_BYTES)]
    n = workers or min(len(spans), os.cpu_count() or 1)

    def one(span: tuple[int, int]) -> bytes:
        return hashlib.sha256(flat[span[0]:span[1]].data).digest()

    if n <= 1 or len(spans) <= 1:
        chunks = [one(s) for s in spans]
    else:
        with ThreadPoolExecutor(max_workers=n, thread_name_prefix="wanmig-digest") as pool:
            chunks = list(pool.map(one, spans))
    return combine(chunks)


def combine(chunk_digests: list[bytes]) -> bytes:
    """The top of the tree, from the SHA-256 of each ``CHUNK_BYTES`` chunk in order."""
    top = hashlib.sha256(DOMAIN)
    top.update(len(chunk_digests).to_bytes(8, "big"))
    for c in chunk_digests:
        top.update(c)
    return top.digest()
