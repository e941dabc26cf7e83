"""migrator.core.adaptive: the codec maximising min(cpu, link * ratio) is chosen."""

from __future__ import annotations

import pytest

from migrator.core.adaptive import CodecChooser

MB = 1_000_000
# Plausible one-core numbers: (encode bytes/s, ratio).
TABLE = {
    "none": (10_000 * MB, 1.0),
    "lz4": (800 * MB, 2.0),
    "zstd-1": (300 * MB, 2.8),
    "zstd-3": (150 * MB, 3.2),
    "zstd-9": (40 * MB, 3.4),
    "zstd-19": (3 * MB, 3.6),
}


def test_slow_link_strongest_compression_that_keeps_up():
    # 10 MB/s link, 2 cores: zstd-19 can only feed 6 MB/s raw < 10*3.6, so it delivers 6;
    # zstd-9 delivers min(80, 34) = 34, the best.
    c = CodecChooser(TABLE, cores=2)
    assert c.delivered_Bps("zstd-19", 10 * MB) == pytest.approx(6 * MB)
    assert c.delivered_Bps("zstd-9", 10 * MB) == pytest.approx(34 * MB)
    assert c.choose(10 * MB) == "zstd-9"
    # At 1 MB/s even zstd-19 keeps up (6 > 3.6): the strongest wins.
    assert c.choose(1 * MB) == "zstd-19"


def test_fast_link_slow_cpu_picks_none_or_lz4():
    slow_cpu = {n: (s / 10, r) for n, (s, r) in TABLE.items()}
    c = CodecChooser(slow_cpu, cores=1)
    # 1.25 GB/s link: none 1000 (cpu-bound memcpy), lz4 min(80, 2500) = 80 -> none.
    assert c.choose(1250 * MB) == "none"
    # 100 MB/s link: none 100, lz4 min(80, 200) = 80, zstd-1 30 -> none still; at 50 MB/s lz4.
    assert c.choose(100 * MB) == "none"
    assert c.choose(35 * MB) == "lz4"                    # none 35, lz4 min(80, 70) = 70


def test_observed_ratio_changes_choice():
    c = CodecChooser({"lz4": (800 * MB, 2.0), "zstd-3": (150 * MB, 3.2)}, cores=1, alpha=0.5)
    assert c.choose(40 * MB) == "zstd-3"                 # min(150, 128) = 128 vs 80
    for _ in range(5):                                   # guest data barely compresses
        c.observe("zstd-3", 1_000_000, 900_000)
    # ratio -> 1.11 + (3.2-1.11)/32 = 1.18; 40*1.18 = 47 < lz4's 80
    assert c.estimates["zstd-3"].ratio == pytest.approx(1.111 + (3.2 - 1.111) / 32, rel=1e-3)
    assert c.choose(40 * MB) == "lz4"


def test_tie_goes_to_higher_ratio():
    c = CodecChooser({"a": (100 * MB, 2.0), "b": (100 * MB, 3.0)}, cores=1)
    assert c.choose(1000 * MB) == "b"                    # both CPU-bound at 100 MB/s


def test_observe_speed_and_ignored_observations():
    c = CodecChooser({"lz4": (800 * MB, 2.0)}, alpha=0.5)
    c.observe_speed("lz4", 400 * MB)
    assert c.estimates["lz4"].encode_Bps == pytest.approx(600 * MB)
    c.observe("lz4", 0, 0)
    c.observe("zstd-3", 10, 1)
    assert c.estimates["lz4"].ratio == 2.0 and "zstd-3" not in c.estimates


def test_bad_construction():
    with pytest.raises(ValueError, match="at least one"):
        CodecChooser({})
    with pytest.raises(ValueError, match="cores"):
        CodecChooser(TABLE, cores=0)
    with pytest.raises(ValueError, match="positive"):
        CodecChooser({"lz4": (0.0, 2.0)})
