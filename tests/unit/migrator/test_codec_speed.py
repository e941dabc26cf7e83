"""migrator.codecs.speed: the measurement arithmetic (fake timer) and the benchmark entry."""

from __future__ import annotations

import json

import numpy as np
import pytest

from experiments.bench.codecs import main
from migrator.codecs.speed import for_chooser, measure_codec_speeds
from migrator.memory.pages import PAGE_SIZE, PageMix, fill_pages

MIX = PageMix(0.25, 0.5, 0.25)


def sample(npages: int = 512, mix: PageMix = MIX) -> bytes:
    pages = np.empty((npages, PAGE_SIZE), np.uint8)
    fill_pages(pages, mix, seed=2)
    return pages.tobytes()


class StepTimer:
    """Each call is 0.5 s later than the previous: elapsed time is exact in calls."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 0.5
        return self.t


def test_speed_is_raw_bytes_over_elapsed():
    data = sample(npages=300, mix=PageMix(0, 1, 0))      # no zero pages: chunks of 256 + 44
    # Timer: start 0.5; after chunk 1 elapsed 0.5 < 1.0 go on; after chunk 2 elapsed 1.0 stop.
    speed, ratio = measure_codec_speeds(data, ["none"], 1.0, timer=StepTimer())["none"]
    assert ratio == 1.0
    assert speed == pytest.approx(300 * PAGE_SIZE / 1.0 / 1e6)


def test_ratios_ordered_and_xbzrle_wins_on_mutations():
    out = measure_codec_speeds(sample(), ["lz4", "zstd-1", "zstd-9", "xbzrle"], 0.01)
    assert all(speed > 0 for speed, _ in out.values())
    assert 1.0 < out["lz4"][1] < out["zstd-9"][1]
    assert out["zstd-1"][1] <= out["zstd-9"][1]
    assert out["xbzrle"][1] > 3 * out["zstd-9"][1]          # one <=512 B write per page
    assert set(for_chooser(out)) == {"lz4", "zstd-1", "zstd-9"}
    assert for_chooser(out)["lz4"][0] == pytest.approx(out["lz4"][0] * 1e6)


def test_all_zero_sample_rejected():
    with pytest.raises(ValueError, match="no non-zero pages"):
        measure_codec_speeds(bytes(PAGE_SIZE * 4), ["lz4"], 0.01)


def test_main_writes_json(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANMIG_RESULTS", str(tmp_path))
    assert main(["--mib", "1", "--seconds", "0.01", "--codecs", "none", "zstd-3"]) == 0
    files = list((tmp_path / "bench").glob("*-codecs/bench.json"))
    assert len(files) == 1
    doc = json.loads(files[0].read_text())
    results = {r["codec"]: r for r in doc["rows"]}
    assert set(results) == {"none", "zstd-3"}
    assert results["zstd-3"]["ratio"] > 1.5 and "git" in doc["meta"]
    assert 0.25 < doc["meta"]["sample"]["zero_page_fraction"] < 0.45   # 0.35 mix, 256 pages
    assert (files[0].parent / "table.md").is_file()
    assert "zstd-3" in capsys.readouterr().out
    sealed = {(r["codec"], r["encryption"]): r for r in doc["meta"]["encryption"]}
    assert set(sealed) == {(c, e) for c in ("none", "zstd-3")
                           for e in ("aes-256-gcm", "chacha20-poly1305", "none")}, sealed
    for (_c, e), r in sealed.items():
        assert r["encode_seal_MBps_per_core"] > 0, r
        assert (r["seal_MBps_per_core"] is None) is (e == "none"), r
        assert e == "none" or r["open_MBps_per_core"] > 0, r
