"""Measured codec speed and ratio on this CPU: for the adaptive policy and as a benchmark.

Why measure rather than assume: compression speed differs several-fold between CPUs (and with
turbo, SMT and thermal state), and the adaptive choice depends on the ratio of CPU speed to link
speed.  ``measure_codec_speeds`` is run once when a migration starts (a fraction of a second per
codec) and by the codec benchmark (``experiments.bench.codecs``) for the record.

What is measured: one-core encode throughput in MB/s (10^6 bytes of *raw* input per second) and
the ratio raw/encoded, over the NON-ZERO pages of the sample, since zero pages never reach a
codec.  XBZRLE is measured on its useful case: its cache is first primed with the sample (not
timed), then every page gets one ``mutate_page`` write and the re-send is timed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import numpy as np

from migrator.codecs.chunk import as_pages
from migrator.codecs.registry import get_codec
from migrator.memory.pages import DEFAULT_MIX, PAGE_SIZE, fill_pages, mutate_page

log = logging.getLogger(__name__)

CHUNK_PAGES = 256                  # 1 MiB chunks, like the engine's sends


def _chunks(pages: np.ndarray) -> list[tuple[np.ndarray, bytes]]:
    return [(np.arange(i, min(i + CHUNK_PAGES, len(pages))), pages[i:i + CHUNK_PAGES].tobytes())
            for i in range(0, len(pages), CHUNK_PAGES)]


def measure_codec_speeds(sample: bytes, codecs: Iterable[str], seconds_each: float,
                         timer: Callable[[], float] = time.perf_counter
                         ) -> dict[str, tuple[float, float]]:
    """``{codec: (encode MB/s on one core, ratio raw/encoded)}`` over ``sample``'s pages.

    Each codec encodes 1 MiB chunks, round and round the sample, until ``seconds_each`` have
    elapsed (at least one chunk).  The ratio is over the bytes actually encoded.
    """
    pages = as_pages(sample)
    pages = pages[pages.view(np.uint64).any(axis=1)]
    if not len(pages):
        raise ValueError("the sample has no non-zero pages to compress")
    chunks = _chunks(pages)
    out = {}
    for name in codecs:
        codec = get_codec(name)
        work = chunks
        if name == "xbzrle":
            for idx, data in chunks:            # prime the cache with what was "sent" before
                codec.encode(data, idx)
            mutated = pages.copy()
            rng = np.random.default_rng(0)
            for page in mutated:
                mutate_page(page, rng)
            work = _chunks(mutated)
        raw = enc = 0
        start = timer()
        elapsed = 0.0
        i = 0
        while True:
            idx, data = work[i % len(work)]
            enc += len(codec.encode(data, idx))
            raw += len(data)
            i += 1
            elapsed = timer() - start
            if elapsed >= seconds_each:
                break
            if name == "xbzrle" and i % len(work) == 0:
                break                           # a second pass would delta against itself
        speed = raw / elapsed / 1e6 if elapsed > 0 else float("inf")
        out[name] = (speed, raw / enc)
        log.info("%-8s %9.1f MB/s  ratio %.2f", name, speed, raw / enc)
    return out


def for_chooser(measured: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """The measurement in the units of ``adaptive.CodecChooser``: (bytes/s, ratio)."""
    return {name: (mbps * 1e6, ratio) for name, (mbps, ratio) in measured.items()
            if name != "xbzrle"}


def default_sample(mib: int = 32, seed: int = 0) -> bytes:
    pages = np.empty((mib * 1024 * 1024 // PAGE_SIZE, PAGE_SIZE), np.uint8)
    fill_pages(pages, DEFAULT_MIX, seed)
    return pages.tobytes()
