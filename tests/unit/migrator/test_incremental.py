"""The incremental image digest: whatever the order of writes, reports and background passes,
``finish`` gives the digest of the image as it is, and it hashes at the end only what changed
since its last hash. Pure and deterministic: the background passes are called by hand."""

from __future__ import annotations

import numpy as np
import pytest

from migrator.memory.pages import PAGE_SIZE
from migrator.wire import incremental
from migrator.wire.digest import CHUNK_BYTES, image_digest
from migrator.wire.incremental import IncrementalDigest

CHUNK_PAGES = CHUNK_BYTES // PAGE_SIZE


def image(npages: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (npages, PAGE_SIZE), dtype=np.uint8)


def write(mem: np.ndarray, dig: IncrementalDigest, pages: np.ndarray,
          rng: np.random.Generator) -> None:
    """A guest's writes, then their report (the order the rule requires)."""
    for p in pages:
        off = int(rng.integers(0, PAGE_SIZE - 8))
        mem[p, off:off + 8] = rng.integers(0, 256, 8, dtype=np.uint8)
    dig.touched(pages)


def hashed(chunks: int, seed: int) -> tuple[np.random.Generator, np.ndarray, IncrementalDigest]:
    """An image of ``chunks`` chunks, every chunk hashed once (one background pass)."""
    mem = image(CHUNK_PAGES * chunks)
    dig = IncrementalDigest(mem)
    dig.background_pass()
    return np.random.default_rng(seed), mem, dig


@pytest.mark.parametrize("seed", range(5))
def test_random_writes_and_passes_end_in_the_image_digest(seed):
    rng = np.random.default_rng(seed)
    mem = image(CHUNK_PAGES * 9 + 3, seed)              # the last chunk is short
    dig = IncrementalDigest(mem)
    for _ in range(30):
        if rng.random() < 0.5:
            write(mem, dig, np.unique(rng.integers(0, len(mem), rng.integers(1, 20))), rng)
        else:
            dig.background_pass()
    got, _ = dig.finish()
    assert got == image_digest(mem)


def test_the_whole_image_is_covered_by_the_first_pass_and_nothing_is_left():
    mem = image(CHUNK_PAGES * 8 + 1)
    dig = IncrementalDigest(mem)
    assert dig.background_pass() == 9                   # every chunk, at once
    assert dig.background_pass() == 0 and len(dig.stale()) == 0
    got, at_end = dig.finish()
    assert at_end == 0 and got == image_digest(mem)


def test_only_chunks_written_since_their_hash_are_hashed_at_the_end():
    rng, mem, dig = hashed(16, 3)
    write(mem, dig, np.array([0, 1, 5 * CHUNK_PAGES, 5 * CHUNK_PAGES + 2]), rng)
    assert list(dig.stale()) == [0, 5]
    got, at_end = dig.finish()
    assert at_end == 2 and got == image_digest(mem)


def test_a_change_after_the_hash_is_caught_and_an_unreported_one_is_a_mismatch():
    rng = np.random.default_rng(4)
    mem = image(CHUNK_PAGES * 4)
    reported, unreported = IncrementalDigest(mem), IncrementalDigest(mem)
    reported.background_pass()
    unreported.background_pass()
    write(mem, reported, np.array([2 * CHUNK_PAGES + 1]), rng)   # both see the write...
    assert reported.finish()[0] == image_digest(mem)
    assert unreported.finish()[0] != image_digest(mem)           # ...only one was told


def test_a_write_during_the_hash_is_hashed_again(monkeypatch):
    """The hash reads a page while the guest writes it: the write's report comes after, bumps
    the generation past the one read before the hash, and ``finish`` hashes the chunk again."""
    rng = np.random.default_rng(5)
    mem = image(CHUNK_PAGES * 3)
    dig = IncrementalDigest(mem)
    real = incremental.chunk_digests
    racing = {"left": 1}

    def hash_while_written(flat, chunks):
        digests = real(flat, chunks)
        if racing["left"]:
            racing["left"] -= 1
            write(mem, dig, np.array([1]), rng)          # lands in chunk 0, being hashed
        return digests

    monkeypatch.setattr(incremental, "chunk_digests", hash_while_written)
    assert dig.background_pass() == 3
    assert list(dig.stale()) == [0]
    got, at_end = dig.finish()
    assert at_end == 1 and got == image_digest(mem)


def test_a_chunk_still_changing_waits_for_a_quiet_pass():
    rng, mem, dig = hashed(4, 6)
    write(mem, dig, np.array([3 * CHUNK_PAGES]), rng)
    assert dig.background_pass() == 0                    # changed since the previous pass
    assert dig.background_pass() == 1                    # quiet for one interval: hashed
    assert dig.finish() == (image_digest(mem), 0)


def test_the_destination_hashes_a_chunk_only_once_all_its_pages_arrived():
    src = image(CHUNK_PAGES * 3 + 2)
    dst = np.zeros_like(src)
    dig = IncrementalDigest(dst, complete=False)
    assert dig.background_pass() == 0                    # zeros are not the image yet
    first = np.arange(0, len(src), 2)                    # every other page of every chunk
    dst[first] = src[first]
    dig.touched(np.concatenate([first, first]))          # a page listed twice counts once
    assert dig.background_pass() == 0
    rest = np.arange(1, len(src), 2)
    dst[rest] = src[rest]
    dig.touched(rest)
    assert dig.background_pass() == 4                    # complete, never hashed: at once
    dst[[0, 0]] = src[[0, 0]]                            # a page sent twice counts once
    dig.touched(np.array([0, 0]))
    assert dig.missing.tolist() == [0, 0, 0, 0]
    got, at_end = dig.finish()
    assert at_end == 1 and got == image_digest(src)


def test_the_writer_hashes_what_it_completed_and_an_older_hash_never_wins():
    rng = np.random.default_rng(7)
    src = image(CHUNK_PAGES * 2)
    dst = np.zeros_like(src)
    dig = IncrementalDigest(dst, complete=False)
    dst[:CHUNK_PAGES + 1] = src[:CHUNK_PAGES + 1]
    done, gens = dig.touched(np.arange(CHUNK_PAGES + 1))
    assert done.tolist() == [0] and gens.tolist() == [1]   # chunk 1 still misses pages
    write(dst, dig, np.array([2]), rng)                  # written again before the writer
    assert dig.background_pass() == 1                    # hashed it, at generation 2
    dig.hash_chunks(done, gens)                          # the writer's hash comes late...
    assert dig.hashed_gen[0] == 2                        # ...and does not label it older
    rest = np.arange(CHUNK_PAGES + 1, len(src))
    dst[rest] = src[rest]
    dig.hash_chunks(*dig.touched(rest))
    src[2] = dst[2]
    assert dig.finish() == (image_digest(src), 0)


def test_a_page_that_never_arrives_leaves_its_chunk_to_finish():
    src = image(CHUNK_PAGES * 2)
    dst = np.zeros_like(src)
    dig = IncrementalDigest(dst, complete=False)
    some = np.arange(1, len(src))                        # page 0 is zero at the source
    src[0] = 0
    dst[some] = src[some]
    dig.touched(some)
    assert dig.background_pass() == 1                    # chunk 1 only
    got, at_end = dig.finish()
    assert at_end == 1 and got == image_digest(src)


def test_the_background_thread_covers_the_image_and_stops():
    mem = image(CHUNK_PAGES * 8)
    dig = IncrementalDigest(mem)
    dig.start(interval_s=0.001)
    got, at_end = dig.finish()                           # stops it first; hashes what is left
    assert got == image_digest(mem) and dig.background_chunks + at_end >= 8
    assert dig._thread is not None and not dig._thread.is_alive()
