"""migrator.core.report: rounds.csv, its one writer, one meaning per column."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path

import pytest

from migrator.core.records import RoundRecord
from migrator.core.report import ROUND_COLUMNS, round_rows, rounds_csv

RUN = Path(__file__).resolve().parents[2] / "fixtures" / "run_small"


def records() -> list[RoundRecord]:
    return [RoundRecord(**r) for r in json.loads((RUN / "migration.json").read_text())["rounds"]]


def test_round_rows_start_times_are_cumulative_and_pages_keep_their_meaning():
    recs = records()
    rows = round_rows(recs)
    assert [r["t_start_s"] for r in rows] == [0.0, 1.0, 1.2]
    assert rows[0]["goodput_mbps"] == pytest.approx(16 * 2 ** 20 * 8 / 1e6, abs=1e-3)
    assert rows[1]["dirty_rate_mibps"] == pytest.approx(5.0)
    assert rows[2]["phase"] == "stop-copy"
    # pages: non-zero pages sent with data; zero_pages: sent as a bare index. Never summed.
    assert [(r["pages"], r["zero_pages"]) for r in rows] == \
        [(rec.pages, rec.zero_pages) for rec in recs]
    assert all(r["bytes_raw"] == rec.pages * 4096 for r, rec in zip(rows, recs, strict=True))


def test_rounds_csv_has_the_documented_columns_and_the_stored_fixture_matches():
    text = rounds_csv(records())
    reader = csv.DictReader(io.StringIO(text))
    assert tuple(reader.fieldnames or ()) == ROUND_COLUMNS
    assert text == (RUN / "migration" / "rounds.csv").read_text()


def test_round_rows_carry_the_disk_share_of_each_round():
    recs = records()
    recs[0] = dataclasses.replace(recs[0], disk_pages=100, disk_bytes_raw=409600,
                                  disk_bytes_on_wire=2000)
    rows = round_rows(recs)
    assert [(r["disk_pages"], r["disk_bytes_raw"], r["disk_bytes_on_wire"]) for r in rows] == \
        [(100, 409600, 2000), (0, 0, 0), (0, 0, 0)]
