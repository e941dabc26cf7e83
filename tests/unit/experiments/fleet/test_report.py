"""The fleet's report section and its figures from a run folder, on hand-made rows: the
makespan against the model and the bound as ratios, a row per move with the failed move's
outcome, the figures linked; a folder without some files still gets its figures."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from experiments.fleet import report
from experiments.summary import read_csv
from tests.unit.experiments.fleet.fleetrows import METRICS, MOVES, write_run

IMAGES = {"gantt": "gantt.png", "host_load": "host_load.png", "wan": "wan.png"}


def table_rows(text: str, first: str) -> list[list[str]]:
    """The cells of the markdown table rows whose first cell is ``first``."""
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in text.splitlines()
            if line.startswith(f"| {first} |")]


def test_summary_has_makespans_and_their_ratios() -> None:
    text = report.fleet_section(METRICS, MOVES, IMAGES)
    assert text.startswith("## Fleet\n"), text[:40]
    (makespan,) = table_rows(text, "makespan")
    assert "50.0 s measured" in makespan[1] and "model 40.0 s" in makespan[1], makespan
    assert "measured / model 1.25x" in makespan[1], makespan
    assert "lower bound 25.0 s" in makespan[1] and "measured / bound 2.00x" in makespan[1]
    summary = text.split("Every move")[0]
    for expected in ("2 completed, 1 failed of 4, 1 not started", "0.42 -> 0.18 (target 0.2: met)",
                     "1 (1 completed); predicted 2", "| lost writes | none |",
                     "overall 2, per_host 1, per_link unlimited", "smallest-first"):
        assert expected in summary, f"{expected!r} not in the summary:\n{summary}"


def test_a_row_per_move_with_the_failed_outcome() -> None:
    text = report.fleet_section(METRICS, MOVES, IMAGES)
    rows = {(r[0], r[1]): r for vm in ("vm1", "vm2", "vm3") for r in table_rows(text, vm)}
    assert set(rows) == {("vm1", "1"), ("vm1", "2"), ("vm2", "1"), ("vm3", "1")}, rows.keys()
    header = list(report.MOVE_HEADERS)
    failed = dict(zip(header, rows[("vm2", "1")], strict=True))
    assert failed["outcome"] == "failed: connection reset \\| retry", \
        "the pipe in the outcome must be escaped, not split the row"
    assert failed["source -> destination"] == "h2 (a) -> h4 (b)"
    assert failed["MB on wire"] == "40.0" and failed["downtime ms"] == "-", failed
    waiting = dict(zip(header, rows[("vm3", "1")], strict=True))
    assert waiting["started s"] == "-" and waiting["outcome"] == "not started: deadline"
    shuffled = report.fleet_section(METRICS, MOVES[::-1], IMAGES)
    started = [ln.split(" | ")[0][2:] + "#" + ln.split(" | ")[1]
               for ln in shuffled.splitlines() if ln.startswith("| vm")
               and not ln.startswith("| vm |")]
    assert started == ["vm1#1", "vm2#1", "vm1#2", "vm3#1"], \
        f"not in the order they started (never started last): {started}"


def test_images_are_linked() -> None:
    text = report.fleet_section(METRICS, MOVES, {"gantt": "gantt.png", "other": "x/y.png"})
    assert "![Gantt](gantt.png)" in text and "![other](x/y.png)" in text, text


def test_unknowns_do_not_break_the_section() -> None:
    text = report.fleet_section({"makespan_s": 12.0, "imbalance_target": None}, [], {})
    (makespan,) = table_rows(text, "makespan")
    assert "12.0 s measured" in makespan[1] and "measured / model -" in makespan[1], makespan
    assert "(no threshold)" in text and "No migration was queued." in text
    assert "| rebalance moves | no rebalance |" in text


@pytest.mark.parametrize(("measured", "reference", "expected"),
                         [(50.0, 40.0, "1.25x"), ("30", "40", "0.75x"), (5.0, 0.0, "-"),
                          (None, 4.0, "-"), (5.0, "", "-")])
def test_ratio(measured: object, reference: object, expected: str) -> None:
    assert report.ratio(measured, reference) == expected


def test_write_fleet_plots_from_a_run_folder(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    images = report.write_fleet_plots(run)
    assert images == IMAGES
    for name in images.values():
        size = (run / name).stat().st_size
        assert size > 1000, f"{name}: {size} bytes"
    assert plt.get_fignums() == [], "figures left open"
    metrics = json.loads((run / "metrics.json").read_text())
    text = report.fleet_section(metrics, read_csv(run / "fleet" / "moves.csv"), images)
    assert "measured / model 1.25x" in text and "![WAN utilisation](wan.png)" in text


def test_write_fleet_plots_with_missing_files(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", metrics=False)
    (run / "fleet" / "wan.csv").unlink()
    (run / "fleet" / "hosts.csv").unlink()
    empty = tmp_path / "empty"
    empty.mkdir()
    for folder in (run, empty):
        images = report.write_fleet_plots(folder)
        sizes = {n: (folder / f).stat().st_size for n, f in images.items()}
        assert all(s > 1000 for s in sizes.values()), f"{folder}: {sizes}"
    assert plt.get_fignums() == []


def test_capacities_from_the_links() -> None:
    links = {"links": [{"link": 1, "bw_mbps": 200.0}, {"link": 2, "bw_mbps": None},
                       {"link": 3, "bw_mbps": 50}]}
    assert report.capacities(links) == {1: 200.0, 3: 50.0}
    assert report.capacities({}) == {}
