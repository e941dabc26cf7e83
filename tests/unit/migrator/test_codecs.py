"""migrator.codecs: round trips for every codec, zero split, XBZRLE cache sync."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ground.config import ConfigError
from migrator.codecs.chunk import split_zero
from migrator.codecs.names import CODECS, codec_id, codec_name
from migrator.codecs.registry import get_codec
from migrator.codecs.xbzrle import (
    PageCache,
    XbzrleDecoder,
    XbzrleEncoder,
    decode_delta,
    encode_delta,
)
from migrator.memory.pages import PAGE_SIZE, PageMix, fill_pages, mutate_page

STATELESS = ["none", "lz4", "zstd-1", "zstd-3", "zstd-9", "zstd-19"]


@st.composite
def chunks(draw) -> np.ndarray:
    """A chunk of 1..6 pages, each random bytes, zero, text, or a sparse random page."""
    n = draw(st.integers(1, 6))
    pages = np.zeros((n, PAGE_SIZE), np.uint8)
    for i in range(n):
        kind = draw(st.sampled_from(["random", "zero", "text", "sparse"]))
        seed = draw(st.integers(0, 2**32 - 1))
        if kind == "random":
            pages[i] = np.frombuffer(np.random.default_rng(seed).bytes(PAGE_SIZE), np.uint8)
        elif kind == "text":
            fill_pages(pages[i:i + 1], PageMix(0, 1, 0), seed)
        elif kind == "sparse":
            data = draw(st.binary(min_size=1, max_size=64))
            off = draw(st.integers(0, PAGE_SIZE - len(data)))
            pages[i, off:off + len(data)] = np.frombuffer(data, np.uint8)
    return pages


@pytest.mark.parametrize("name", STATELESS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pages=chunks())
def test_stateless_round_trip(name, pages):
    codec = get_codec(name)
    raw = pages.tobytes()
    assert codec.decode(codec.encode(raw), len(pages)) == raw


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=chunks(), seed=st.integers(0, 2**32 - 1), mutations=st.integers(0, 4))
def test_xbzrle_round_trip_across_rounds(first, seed, mutations):
    """Round 1 sends whole pages, round 2 mutated pages as deltas; the decoder follows."""
    enc, dec = XbzrleEncoder(cache_mib=1), XbzrleDecoder(cache_mib=1)
    idx = np.arange(len(first)) * 3 + 5
    assert dec.decode(enc.encode(first.tobytes(), idx), len(idx), idx) == first.tobytes()
    rng = np.random.default_rng(seed)
    second = first.copy()
    for _ in range(mutations):
        mutate_page(second[int(rng.integers(0, len(second)))], rng)
    blob = enc.encode(second.tobytes(), idx)
    assert dec.decode(blob, len(idx), idx) == second.tobytes()


def test_xbzrle_mutated_text_is_much_smaller_than_zstd():
    pages = np.empty((200, PAGE_SIZE), np.uint8)
    fill_pages(pages, PageMix(0, 1, 0), seed=1)
    idx = np.arange(200)
    enc, dec = XbzrleEncoder(), XbzrleDecoder()
    dec.decode(enc.encode(pages.tobytes(), idx), 200, idx)
    rng = np.random.default_rng(2)
    for p in pages:
        mutate_page(p, rng)
    blob = enc.encode(pages.tobytes(), idx)
    zstd = get_codec("zstd-3").encode(pages.tobytes())
    assert enc.stats["delta_pages"] == 200
    # A <=512-byte change costs <=~520 bytes against ~1300 for zstd-3 on a whole text page.
    assert len(blob) < 0.5 * len(zstd)
    assert dec.decode(blob, 200, idx) == pages.tobytes()


def test_xbzrle_rewritten_page_falls_back_to_whole_page():
    enc, dec = XbzrleEncoder(), XbzrleDecoder()
    idx = np.array([1])
    a = np.frombuffer(np.random.default_rng(1).bytes(PAGE_SIZE), np.uint8)
    b = np.frombuffer(np.random.default_rng(2).bytes(PAGE_SIZE), np.uint8)
    dec.decode(enc.encode(a.tobytes(), idx), 1, idx)
    blob = enc.encode(b.tobytes(), idx)
    assert enc.stats == {"delta_pages": 0, "whole_pages": 2}
    assert dec.decode(blob, 1, idx) == b.tobytes()


def test_xbzrle_lru_eviction_stays_in_sync():
    """A 1 MiB cache holds 256 pages; streaming 600 distinct pages evicts identically."""
    enc, dec = XbzrleEncoder(cache_mib=1), XbzrleDecoder(cache_mib=1)
    pages = np.empty((600, PAGE_SIZE), np.uint8)
    fill_pages(pages, PageMix(0, 1, 0), seed=3)
    rng = np.random.default_rng(4)
    for rnd in range(3):
        for start in range(0, 600, 100):
            idx = np.arange(start, start + 100)
            if rnd:
                for i in idx[::2]:
                    mutate_page(pages[i], rng)
            data = pages[idx].tobytes()
            assert dec.decode(enc.encode(data, idx), 100, idx) == data
    assert len(enc.cache) == len(dec.cache) == 256
    assert enc.cache.evictions == dec.cache.evictions > 0
    assert list(enc.cache._slot) == list(dec.cache._slot)


def test_xbzrle_decoder_detects_out_of_step_cache():
    enc, dec = XbzrleEncoder(), XbzrleDecoder()
    page = np.ones(PAGE_SIZE, np.uint8)
    idx = np.array([9])
    enc.encode(page.tobytes(), idx)            # the destination never saw this chunk
    page[10] = 7
    with pytest.raises(ValueError, match="not in the cache"):
        dec.decode(enc.encode(page.tobytes(), idx), 1, idx)


def test_delta_format_matches_qemu_runs():
    old = np.zeros(PAGE_SIZE, np.uint8)
    new = old.copy()
    new[3:5] = [0xAA, 0xBB]
    new[300] = 0xCC
    # zrun 3, nzrun 2 + bytes, zrun 295 (ULEB128: 0xA7 0x02), nzrun 1 + byte; no trailing zrun.
    assert encode_delta(old, new) == bytes([3, 2, 0xAA, 0xBB, 0xA7, 0x02, 1, 0xCC])
    assert np.array_equal(decode_delta(encode_delta(old, new), old), new)
    assert encode_delta(old, old) == b""


def test_delta_overrun_rejected():
    with pytest.raises(ValueError, match="overruns"):
        decode_delta(bytes([0xFF, 0x1F, 5, 1, 2, 3, 4, 5]), np.zeros(PAGE_SIZE, np.uint8))


def test_page_cache_lru_order():
    cache = PageCache(1)
    page = np.zeros(PAGE_SIZE, np.uint8)
    for i in range(cache.capacity):
        cache.put(i, page)
    assert cache.peek(0) is not None           # peek does not refresh page 0
    cache.put(1, page)                         # put refreshes page 1
    cache.put(10_000, page)
    assert 0 not in cache and 1 in cache and 10_000 in cache


def test_split_zero():
    pages = np.zeros((5, PAGE_SIZE), np.uint8)
    pages[1, 4095] = 1
    pages[3, 0] = 2
    zero, nonzero, data = split_zero(np.array([10, 11, 12, 13, 14]), pages.tobytes())
    assert zero.tolist() == [10, 12, 14] and nonzero.tolist() == [11, 13]
    assert data == pages[[1, 3]].tobytes()
    with pytest.raises(ValueError, match="multiple of 4096"):
        split_zero(np.array([1]), b"x" * 100)


def test_registry_and_ids():
    assert {"none", "lz4", "zstd-1", "zstd-3", "zstd-9", "zstd-19", "xbzrle"} <= set(CODECS)
    ids = {codec_id(n) for n in CODECS}
    assert len(ids) == len(CODECS) and max(ids) < 256
    assert all(codec_name(codec_id(n)) == n for n in CODECS)
    with pytest.raises(ValueError, match="unknown codec id"):
        codec_name(200)
    with pytest.raises(ConfigError) as info:
        get_codec("brotli")
    assert info.value.path == "policy.codec" and info.value.value == "brotli"
    with pytest.raises(ConfigError):
        get_codec("zstd-0")


def test_corrupt_blob_is_value_error():
    raw = np.ones((2, PAGE_SIZE), np.uint8).tobytes()
    for name in ("lz4", "zstd-3", "none"):
        codec = get_codec(name)
        blob = codec.encode(raw)
        with pytest.raises(ValueError):
            codec.decode(blob[: len(blob) // 2], 2)
