"""How a guest write looks: how many bytes of the page it changes, and what it puts there.

Why it matters as much as the rate: the codecs' gains depend on it.  XBZRLE sends the XOR with
the page as last sent, which pays only when a write changes a small run of the page; lz4/zstd pay
only when the written bytes are compressible.  So a workload names both:

* ``write_bytes``: bytes changed by one page write, at a random offset inside the page.
  ``None`` is the default mix of small stores, 64 to 512 bytes uniformly (mean 288), as
  ``pages.mutate_page``; an integer from 1 to ``PAGE_SIZE`` is exactly that many bytes, and
  ``PAGE_SIZE`` rewrites the whole page (a buffer refilled, a page of a stream written out);
* ``content``: ``text`` is cut from the text pool (heap, logs, page cache of text files;
  zstd shrinks it 3-4x); ``random`` is fresh pseudo-random bytes, i.e. encrypted or already
  compressed buffers that no codec shrinks.

Speed (measured on this machine, one core of two): random bytes come from full-range uint64
draws of the seeded ``Generator`` (``integers(..., dtype=uint64)``, about 2.6 GiB/s) and not from
``Generator.bytes`` (about 0.36 GiB/s), so generating a page costs about as much as copying it
in.  Whole-page writes are one vectorised copy (about 1.3 GiB/s of random page writes, 1.8 of
text); partial writes are one slice assignment per page (the per-write Python cost, about 1.6
microseconds: about 2.4 GiB/s of page writes of the default 64-512 bytes).
"""

from __future__ import annotations

import numpy as np

from migrator.memory.pages import PAGE_SIZE, text_pool

CONTENTS = ("text", "random")
DEFAULT_WRITE_RANGE = (64, 512)     # bytes per write when ``write_bytes`` is None
_WORD = np.dtype(np.uint64)


def write_range(write_bytes: int | None) -> tuple[int, int]:
    """The (smallest, largest) bytes changed by one write of a workload's ``write_bytes``."""
    if write_bytes is None:
        return DEFAULT_WRITE_RANGE
    if not 1 <= write_bytes <= PAGE_SIZE:
        raise ValueError(f"write_bytes must be 1..{PAGE_SIZE} or None, got {write_bytes}")
    return write_bytes, write_bytes


def random_bytes(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` pseudo-random bytes (uint8, deterministic in ``rng``), at several GB/s."""
    words = rng.integers(0, np.iinfo(np.uint64).max, size=-(-n // _WORD.itemsize),
                         dtype=np.uint64, endpoint=True)
    return words.view(np.uint8)[:n]


def write_pages(pages: np.ndarray, indices: np.ndarray, rng: np.random.Generator,
                write_bytes: int | None = None, content: str = "text") -> None:
    """One write on each page ``pages[i]`` for ``i`` in ``indices`` (repeats allowed), in place.

    ``pages`` is a ``(npages, PAGE_SIZE)`` uint8 array (a guest's memory).  With the defaults
    this is ``pages.mutate_page`` for many pages, the random draws vectorised (about 14x faster
    per page than calling it in a loop).
    """
    n = len(indices)
    if n == 0:
        return
    if content not in CONTENTS:
        raise ValueError(f"content must be one of {', '.join(CONTENTS)}, got {content!r}")
    lo, hi = write_range(write_bytes)
    if lo == PAGE_SIZE:
        _whole_pages(pages, indices, rng, content)
        return
    lens = rng.integers(lo, hi + 1, size=n) if lo != hi else np.full(n, lo, dtype=np.int64)
    offs = (rng.random(n) * (PAGE_SIZE - lens + 1)).astype(np.int64)
    if content == "text":
        pool = text_pool()
        srcs = (rng.random(n) * (len(pool) - lens)).astype(np.int64)
    else:
        pool = random_bytes(rng, int(lens.sum()))
        srcs = np.cumsum(lens) - lens
    for i, off, length, src in zip(np.asarray(indices).tolist(), offs.tolist(), lens.tolist(),
                                   srcs.tolist(), strict=True):
        pages[i, off:off + length] = pool[src:src + length]


def _whole_pages(pages: np.ndarray, indices: np.ndarray, rng: np.random.Generator,
                 content: str) -> None:
    n = len(indices)
    if content == "random":
        data = random_bytes(rng, n * PAGE_SIZE).reshape(n, PAGE_SIZE)
    else:
        pool = text_pool()
        windows = np.lib.stride_tricks.sliding_window_view(pool, PAGE_SIZE)
        data = windows[rng.integers(0, len(pool) - PAGE_SIZE + 1, size=n)]
    pages[np.asarray(indices, dtype=np.int64)] = data
