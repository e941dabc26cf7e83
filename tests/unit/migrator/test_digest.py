"""The image digest: it sees any change, and both ends compute it alike."""

from __future__ import annotations

import numpy as np
import pytest

from migrator.memory.pages import PAGE_SIZE
from migrator.transport.sender import source_digest
from migrator.wire.digest import CHUNK_BYTES, DIGEST_BYTES, chunk_digests, combine, image_digest


def image(npages: int, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (npages, PAGE_SIZE), dtype=np.uint8)


def test_any_byte_and_the_page_order_change_it():
    pages = image(CHUNK_BYTES // PAGE_SIZE * 2 + 3)            # two chunks and a short tail
    one = image_digest(pages)
    assert len(one) == DIGEST_BYTES and image_digest(pages.copy()) == one
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

    assert source_digest(CopyOnly()) == image_digest(pages)


def test_combine_takes_the_digests_joined_or_listed():
    flat = image(CHUNK_BYTES // PAGE_SIZE * 3).reshape(-1)
    listed = chunk_digests(flat, range(3))
    assert combine(listed) == combine(b"".join(listed)) == combine(bytearray(b"".join(listed)))
    assert combine(listed[:2]) != combine(listed)
    with pytest.raises(ValueError, match="not a multiple"):
        combine(b"".join(listed)[:-1])


def test_destination_digest_follows_concurrent_writes():
    """Pages land from several threads while the background hashes chunks; the final digest
    equals a fresh one of the final image, and only chunks written late are re-hashed."""
    import threading
    import time

    from migrator.transport.roundmem import RoundOrderedMemory

    npages = 2048
    mem = RoundOrderedMemory(np.zeros((npages, PAGE_SIZE), np.uint8))
    mem.digest.start(interval_s=0.01)
    rng = np.random.default_rng(7)
    src = image(npages, seed=11)

    def writer(rounds: int, seed: int) -> None:
        r = np.random.default_rng(seed)
        for rnd in range(rounds):
            idx = np.unique(r.integers(0, npages, 400))
            src[idx, :8] = r.integers(0, 256, (len(idx), 8), dtype=np.uint8)
            mem.apply(rnd, idx, src[idx].copy(), np.empty(0, np.int64))

    mem.apply(0, np.arange(npages), src.copy(), np.empty(0, np.int64))
    threads = [threading.Thread(target=writer, args=(30, s)) for s in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Quiet now: the background catches up (two passes of 10 ms) before the last writes.
    deadline = time.monotonic() + 5
    while mem.digest.background_chunks == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    # Writers race on the same pages: the image is what was applied last, per page.
    last = rng.integers(0, npages, 50)
    mem.apply(99, last, image(len(last), seed=5), np.empty(0, np.int64))
    got, stale = mem.digest.finish()
    assert got == image_digest(mem.memory)
    assert mem.digest.background_chunks > 0 and 0 < stale, (mem.digest.background_chunks, stale)


def test_a_chunk_changed_after_it_was_hashed_is_hashed_again():
    from migrator.transport.roundmem import RoundOrderedMemory

    npages = CHUNK_BYTES // PAGE_SIZE * 2
    mem = RoundOrderedMemory(np.zeros((npages, PAGE_SIZE), np.uint8))
    assert mem.digest.background_pass() == 0     # nothing arrived yet: nothing to hash
    mem.apply(0, np.arange(npages), image(npages), np.empty(0, np.int64))
    assert len(mem.digest.stale()) == 0          # completed, so hashed by the writer
    page = image(1, seed=9)
    mem.apply(1, np.array([3]), page, np.empty(0, np.int64))
    got, stale = mem.digest.finish()
    assert stale == 1 and got == image_digest(mem.memory)


def test_zero_pages_of_a_new_image_are_neither_read_nor_hashed_and_the_digest_holds():
    """A new destination image is all zero: a zero page arriving for a page never written is
    not read, nor is a chunk of such pages hashed; pages written with data and zeroed later
    are cleared. The digest equals a fresh one in every case, a short last chunk included."""
    from migrator.transport.roundmem import RoundOrderedMemory

    cp = CHUNK_BYTES // PAGE_SIZE
    npages = cp * 4 + 2                                   # a short last chunk of two pages
    nchunks = -(-npages // cp)
    data = image(npages, seed=21)
    written = np.arange(cp, 2 * cp)                       # chunk 1 has data; the rest zero
    zeros = np.setdiff1d(np.arange(npages), written)
    # Declared zero but marked: a page read and cleared, or a chunk hashed, would show it.
    marked = np.zeros((npages, PAGE_SIZE), np.uint8)
    marked[zeros, 0] = 0xAA
    probe = RoundOrderedMemory(marked, zeroed=True)
    probe.apply(0, written, data[written], zeros)
    assert (probe.memory[zeros, 0] == 0xAA).all(), "a never-written zero page was cleared"
    zero_chunk = chunk_digests(np.zeros(CHUNK_BYTES, np.uint8), [0])[0]
    hashed = probe.digest._hash(np.arange(nchunks))
    assert [h == zero_chunk for h in hashed[:4]] == [True, False, True, True]
    assert hashed[4] == chunk_digests(np.zeros(2 * PAGE_SIZE, np.uint8), [0])[0]
    # The same arrivals into a truly zero image: the digest is the image's.
    mem = RoundOrderedMemory(np.zeros((npages, PAGE_SIZE), np.uint8))
    mem.apply(0, written, data[written], zeros)
    assert not mem.maybe_data[zeros].any() and mem.maybe_data[written].all()
    assert mem.digest._hash(np.arange(nchunks)) == chunk_digests(mem.memory.reshape(-1),
                                                                 range(nchunks))
    # Page cp+1 becomes zero in round 1, and the last page gets data.
    mem.apply(1, np.array([npages - 1]), data[[npages - 1]], np.array([cp + 1]))
    assert not mem.memory[cp + 1].any() and not mem.maybe_data[cp + 1]
    got, _ = mem.digest.finish()
    assert got == image_digest(mem.memory)


def test_an_image_not_known_zero_has_every_zero_page_cleared():
    from migrator.transport.roundmem import RoundOrderedMemory

    npages = CHUNK_BYTES // PAGE_SIZE * 2 + 1
    garbage = image(npages, seed=4)
    mem = RoundOrderedMemory(garbage.copy(), zeroed=False)
    zeros = np.arange(0, npages, 2)
    rest = np.arange(1, npages, 2)
    mem.apply(0, rest, garbage[rest], zeros)
    assert not mem.memory[zeros].any() and (mem.memory[rest] == garbage[rest]).all()
    got, _ = mem.digest.finish()
    assert got == image_digest(mem.memory)
