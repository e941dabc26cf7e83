"""The image digest: parallel chunks give the same answer as one thread, and it sees any change."""

from __future__ import annotations

import numpy as np

from migrator.digest import CHUNK_BYTES, image_digest
from migrator.pages import PAGE_SIZE
from migrator.transport import source_digest


def image(npages: int, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (npages, PAGE_SIZE), dtype=np.uint8)


def test_threads_do_not_change_it_and_any_byte_does():
    pages = image(CHUNK_BYTES // PAGE_SIZE * 2 + 7)            # two chunks and a tail
    one = image_digest(pages, workers=1)
    assert image_digest(pages, workers=4) == one
    pages[-1, -1] ^= 1
    assert image_digest(pages) != one
    pages[-1, -1] ^= 1
    swapped = pages.copy()
    swapped[[0, 1]] = swapped[[1, 0]]
    assert image_digest(swapped) != one                       # page order matters


def test_source_digest_from_page_copies_equals_in_place():
    pages = image(CHUNK_BYTES // PAGE_SIZE + 3)

    class CopyOnly:                                           # a VM without its own digest()
        npages = len(pages)

        def page_bytes(self, idx: np.ndarray) -> bytes:
            return pages[idx].tobytes()

    assert source_digest(CopyOnly()).sha256 == image_digest(pages)
