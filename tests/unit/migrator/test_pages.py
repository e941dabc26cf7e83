"""migrator.memory.pages: deterministic page mixes with the compressibility codecs are tuned for."""

from __future__ import annotations

import time

import numpy as np
import pytest
import zstandard

from ground.config import ConfigError
from migrator.memory.pages import DEFAULT_MIX, PAGE_SIZE, PageMix, fill_pages, mutate_page


def kinds(pages: np.ndarray) -> tuple[int, int]:
    zero = int((~pages.any(axis=1)).sum())
    ratio = [len(pages[i].tobytes()) / len(zstandard.compress(pages[i].tobytes(), 3))
             for i in range(len(pages))]
    incompressible = int(sum(r < 1.05 for r in ratio))
    return zero, incompressible


def test_mix_must_sum_to_one():
    with pytest.raises(ConfigError) as info:
        PageMix(0.5, 0.5, 0.5)
    assert info.value.path == "page_mix" and "sum to 1.5" in info.value.expected


def test_mix_fraction_out_of_range():
    with pytest.raises(ConfigError) as info:
        PageMix(-0.1, 1.1, 0.0)
    assert info.value.path == "page_mix.zero"


def test_fill_is_deterministic_in_seed():
    a = np.empty((64, PAGE_SIZE), np.uint8)
    b = np.empty((64, PAGE_SIZE), np.uint8)
    c = np.empty((64, PAGE_SIZE), np.uint8)
    fill_pages(a, DEFAULT_MIX, seed=7)
    fill_pages(b, DEFAULT_MIX, seed=7)
    fill_pages(c, DEFAULT_MIX, seed=8)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_fill_fractions_within_tolerance():
    # 2000 pages, binomial sd of a fraction ~ 0.011; tolerance 0.05 is > 4 sd.
    pages = np.empty((2000, PAGE_SIZE), np.uint8)
    mix = PageMix(zero=0.3, text=0.5, random=0.2)
    fill_pages(pages, mix, seed=1)
    zero, incompressible = kinds(pages)
    assert abs(zero / 2000 - 0.3) < 0.05
    assert abs(incompressible / 2000 - 0.2) < 0.05


def test_text_pages_compress_3_to_4x_with_zstd3():
    pages = np.empty((256, PAGE_SIZE), np.uint8)
    fill_pages(pages, PageMix(0, 1, 0), seed=3)
    raw = pages.tobytes()
    ratio = len(raw) / len(zstandard.ZstdCompressor(level=3).compress(raw))
    assert 2.8 <= ratio <= 4.2, ratio           # target 3-4x, tolerance 0.2 either side
    assert pages.any(axis=1).all()              # no text page is a zero page


def test_random_pages_incompressible():
    pages = np.empty((32, PAGE_SIZE), np.uint8)
    fill_pages(pages, PageMix(0, 0, 1), seed=4)
    raw = pages.tobytes()
    assert len(zstandard.compress(raw, 3)) > 0.99 * len(raw)


def test_fill_rejects_wrong_shape():
    with pytest.raises(ValueError, match="uint8 array"):
        fill_pages(np.empty((4, 100), np.uint8), DEFAULT_MIX, 0)


def test_fill_is_fast():
    # 64 MiB should take well under a second; 5 s is a generous bound for slow CI machines.
    pages = np.empty((16384, PAGE_SIZE), np.uint8)
    fill_pages(pages[:1], DEFAULT_MIX, 0)       # build the text pool outside the timing
    start = time.perf_counter()
    fill_pages(pages, DEFAULT_MIX, seed=5)
    assert time.perf_counter() - start < 5.0


def test_mutate_page_small_local_change():
    pages = np.empty((1, PAGE_SIZE), np.uint8)
    fill_pages(pages, PageMix(0, 1, 0), seed=6)
    before = pages[0].copy()
    rng = np.random.default_rng(0)
    mutate_page(pages[0], rng)
    changed = np.flatnonzero(before != pages[0])
    assert 0 < len(changed) <= 512
    assert changed[-1] - changed[0] < 512       # one contiguous region of at most 512 bytes
