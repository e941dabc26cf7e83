"""migrator.disk.iolog: the guest's I/O rows written, read back, summarised per phase."""

from __future__ import annotations

import pytest

from migrator.disk.iolog import IoLog, IoRow, read_iolog, summarise


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_rows_round_trip_and_flush_every_half_second(tmp_path):
    clock = Clock()
    path = tmp_path / "iolog.csv"
    log = IoLog(path, clock=clock)
    log.append(100.0, "w", 7, 0.0001234, True, "local")
    assert read_iolog(path) == []                # buffered
    clock.t = 100.6
    log.tick()
    assert read_iolog(path) == [IoRow(100.0, "w", 7, 0.0001234, 1, "local")]
    log.append(100.7, "r", 9, 0.15, False, "remote")
    log.close()
    assert read_iolog(path)[1] == IoRow(100.7, "r", 9, 0.15, 0, "remote")
    log.close()                                   # twice is fine
    with pytest.raises(FileExistsError):
        IoLog(path)


def test_malformed_file_names_the_line(tmp_path):
    path = tmp_path / "iolog.csv"
    path.write_text("t,op,block,latency_s,ok,path\n1.0,w,x,0.1,1,local\n")
    with pytest.raises(ValueError, match=r"iolog.csv:2"):
        read_iolog(path)
    path.write_text("a,b\n")
    with pytest.raises(ValueError, match="not an iolog"):
        read_iolog(path)


def test_summary_per_phase_and_op():
    rows = [(float(i), "w", i, 0.001 * (i + 1), 1, "local") for i in range(100)]
    rows += [(150.0 + i, "w", i, 0.150, 1, "mirror") for i in range(10)]
    rows += [(150.5, "r", 3, 0.002, 0, "local")]
    s = summarise(rows, [("before", 0.0, 100.0), ("mirror", 150.0, 160.0), ("none", 500, 600)])
    before = s["before"]["write"]
    assert before["n"] == 100 and before["failed"] == 0
    assert before["p50_ms"] == pytest.approx(50.5)
    assert before["p95_ms"] == pytest.approx(95.05)
    assert before["p99_ms"] == pytest.approx(99.01)
    assert before["mean_ms"] == pytest.approx(50.5)
    assert s["before"]["read"]["n"] == 0 and s["before"]["read"]["p50_ms"] is None
    assert s["mirror"]["write"]["p50_ms"] == pytest.approx(150.0)
    assert s["mirror"]["read"] == {"n": 1, "failed": 1, "p50_ms": 2.0, "p95_ms": 2.0,
                                   "p99_ms": 2.0, "mean_ms": 2.0}
    assert s["none"]["write"]["n"] == 0
