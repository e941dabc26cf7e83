"""Synthetic guest memory: page size, a realistic mix of page contents, and small page writes.

Why synthetic but realistic: codec speed and ratio, zero-page elision and XBZRLE gains depend
entirely on what the memory holds.  Real guests have many zero pages (freshly booted, ballooned),
many text-like pages (heap, page cache of text files, code) that compress 3-4x with zstd, and some
incompressible pages (encrypted or already-compressed data).  ``fill_pages`` reproduces such a
mix deterministically from a seed; ``mutate_page`` reproduces a typical guest write (a few hundred
bytes rewritten), which is what makes delta encoding pay off on re-sent pages.

Speed: text pages are cut at random offsets from one pool of generated text (built once per
process) and then given a little per-page variation, so filling 256 MiB takes well under a few
seconds on one core.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ground.config import ConfigError

PAGE_SIZE = 4096

_VOCAB_SEED = 0x5EED_0001
_VOCAB_WORDS = 1024
_POOL_BYTES = 16 * 1024 * 1024
_DIGITS = np.frombuffer(b"0123456789", dtype=np.uint8)


@dataclass(frozen=True)
class PageMix:
    """Fractions of zero, text-like and random (incompressible) pages; they sum to 1."""

    zero: float
    text: float
    random: float

    def __post_init__(self) -> None:
        for name in ("zero", "text", "random"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0.0 <= value <= 1.0:
                raise ConfigError(f"page_mix.{name}", value, "a fraction between 0 and 1")
        total = self.zero + self.text + self.random
        if abs(total - 1.0) > 1e-6:
            raise ConfigError("page_mix", (self.zero, self.text, self.random),
                              f"fractions summing to 1 (they sum to {total:g})")


# A guest a while after boot: a third never touched, half text/heap-like, a sixth incompressible.
DEFAULT_MIX = PageMix(zero=0.35, text=0.5, random=0.15)


def _vocabulary() -> list[bytes]:
    """Fixed pseudo-words (lowercase, a few capitalised, a few numbers): the text alphabet."""
    rng = np.random.default_rng(_VOCAB_SEED)
    letters = np.frombuffer(b"etaoinshrdlcumwfgypbvkjxqz", dtype=np.uint8)
    weights = np.linspace(2.0, 0.2, len(letters))
    weights /= weights.sum()
    words = []
    for i in range(_VOCAB_WORDS):
        if i % 16 == 15:
            word = str(int(rng.integers(0, 100_000))).encode()
        else:
            n = int(rng.integers(2, 11))
            word = bytes(rng.choice(letters, size=n, p=weights))
            if i % 7 == 0:
                word = word.capitalize()
        words.append(word)
    return words


@functools.lru_cache(maxsize=1)
def text_pool() -> np.ndarray:
    """16 MiB of text: Zipf-distributed words from the vocabulary, spaces, newlines, tabs.

    Built once per process from a fixed seed so that every run sees the same text.
    """
    rng = np.random.default_rng(_VOCAB_SEED + 1)
    vocab = _vocabulary()
    seps = [b" "] * 12 + [b"\n", b", ", b". ", b"\t", b"  "]
    # Zipf-like word frequencies (rank^-1), like natural text and symbol tables.
    p = 1.0 / np.arange(1, len(vocab) + 1)
    p /= p.sum()
    widths = max(len(w) for w in vocab) + 2
    table = np.zeros((len(vocab) * len(seps), widths), dtype=np.uint8)
    lengths = np.zeros(len(vocab) * len(seps), dtype=np.int64)
    for i, word in enumerate(vocab):
        for j, sep in enumerate(seps):
            token = word + sep
            table[i * len(seps) + j, :len(token)] = np.frombuffer(token, dtype=np.uint8)
            lengths[i * len(seps) + j] = len(token)
    mean_len = float((p[:, None] * lengths.reshape(len(vocab), len(seps))).sum() / len(seps))
    n_tokens = int(_POOL_BYTES / mean_len * 1.05) + 1024
    tokens = rng.choice(len(vocab), size=n_tokens, p=p) * len(seps) \
        + rng.integers(0, len(seps), size=n_tokens)
    # Flatten the variable-length tokens: keep the first len(token) bytes of every padded row.
    keep = np.arange(widths)[None, :] < lengths[tokens][:, None]
    pool = table[tokens][keep][:_POOL_BYTES]
    assert len(pool) == _POOL_BYTES, "token stream shorter than the pool"
    pool.flags.writeable = False
    return pool


def _text_pages(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` text pages cut from the pool at random offsets, each with a few digits changed."""
    pool = text_pool()
    windows = np.lib.stride_tricks.sliding_window_view(pool, PAGE_SIZE)
    offsets = rng.integers(0, len(pool) - PAGE_SIZE, size=n)
    out = windows[offsets]                      # fancy indexing copies: (n, PAGE_SIZE)
    # Per-page variation (counters, pointers, timestamps) so equal offsets are not equal pages.
    k = 16
    rows = np.repeat(np.arange(n), k)
    cols = rng.integers(0, PAGE_SIZE, size=n * k)
    out[rows, cols] = _DIGITS[rng.integers(0, 10, size=n * k)]
    return out


def fill_pages(pages: np.ndarray, mix: PageMix = DEFAULT_MIX, seed: int = 0) -> None:
    """Fill a ``(npages, PAGE_SIZE)`` uint8 array in place with ``mix``, deterministic in ``seed``.

    The kind of each page is drawn independently, so the realised fractions are within a few
    standard deviations of ``mix`` (exact in expectation).
    """
    if pages.ndim != 2 or pages.shape[1] != PAGE_SIZE or pages.dtype != np.uint8:
        raise ValueError(f"pages must be a (npages, {PAGE_SIZE}) uint8 array, "
                         f"got {pages.shape} {pages.dtype}")
    rng = np.random.default_rng(seed)
    kinds = rng.choice(3, size=len(pages), p=[mix.zero, mix.text, mix.random])
    zero = np.flatnonzero(kinds == 0)
    text = np.flatnonzero(kinds == 1)
    rand = np.flatnonzero(kinds == 2)
    pages[zero] = 0
    batch = 4096                               # 16 MiB per batch bounds the temporary copies
    for i in range(0, len(text), batch):
        idx = text[i:i + batch]
        pages[idx] = _text_pages(len(idx), rng)
    for i in range(0, len(rand), batch):
        idx = rand[i:i + batch]
        pages[idx] = np.frombuffer(rng.bytes(len(idx) * PAGE_SIZE),
                                   dtype=np.uint8).reshape(len(idx), PAGE_SIZE)


def mutate_page(page: np.ndarray, rng: np.random.Generator) -> None:
    """Rewrite a few hundred text-like bytes of one page in place, as a guest store would.

    Small, local writes are what XBZRLE exploits: the XOR with the previously sent version is
    zero except in the written run.  The guests write many pages at once, and other shapes of
    write (whole pages, random bytes), with ``migrator.memory.writes.write_pages``; this is its
    default write on one page.
    """
    pool = text_pool()
    n = int(rng.integers(64, 513))
    off = int(rng.integers(0, PAGE_SIZE - n + 1))
    src = int(rng.integers(0, len(pool) - n))
    page[off:off + n] = pool[src:src + n]
