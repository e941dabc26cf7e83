"""The fleet's figures from small hand-made rows (CSV strings, empty cells, a failed move, a
move never started) and from empty inputs: a PNG each, every figure closed, and what the
figures draw (failed moves hatched, the goodput stacked on a common grid, the mean load)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pytest
from matplotlib.colors import to_hex

from experiments.fleet import plots
from tests.unit.experiments.fleet.fleetrows import HOSTS, MOVES, RATES, WAN

MIN_PNG_BYTES = 1000


def assert_png(path: Path) -> None:
    assert path.is_file(), f"{path} not written"
    size = path.stat().st_size
    assert size > MIN_PNG_BYTES, f"{path}: {size} bytes, expected > {MIN_PNG_BYTES}"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: not a PNG"
    assert plt.get_fignums() == [], f"figures left open: {plt.get_fignums()}"


@pytest.fixture()
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The figures the plot functions save, kept for inspection (still closed after)."""
    figures: list[Any] = []
    save = plots._save

    def keep(fig: Any, path: Path) -> Path:
        figures.append(fig)
        return save(fig, path)
    monkeypatch.setattr(plots, "_save", keep)
    return figures


def test_gantt_draws_every_move_and_hatches_the_failed_one(tmp_path: Path,
                                                           drawn: list[Any]) -> None:
    out = plots.gantt(MOVES, tmp_path / "gantt.png")
    assert out == tmp_path / "gantt.png"
    assert_png(out)
    ax = drawn[0].axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["vm1", "vm2", "vm3"], f"rows: {labels}"
    hatched = [p for p in ax.patches if p.get_hatch() == plots.FAILED_HATCH]
    assert len(hatched) == 1, f"{len(hatched)} hatched bars, expected the one failed move"
    bar = hatched[0]
    assert to_hex(bar.get_edgecolor()) == plots.FAILED_EDGE
    assert bar.get_x() == pytest.approx(2.0) and bar.get_width() == pytest.approx(7.0), \
        f"failed bar {bar.get_x()}..{bar.get_x() + bar.get_width()}, expected 2..9"
    reasons = {to_hex(p.get_facecolor()) for p in ax.patches
               if p.get_height() == pytest.approx(plots.BAR)}
    assert reasons == {plots.REASON_COLORS[r] for r in ("scheduled", "evacuate", "rebalance")}, \
        f"bar colours {reasons}"
    outlines = [p for p in ax.patches if p.get_height() == pytest.approx(plots.THIN)
                and p.get_facecolor()[3] == 0]
    spans = sorted((float(p.get_x()), float(p.get_width())) for p in outlines)
    assert spans == [(0.0, 10.0), (0.0, 11.0), (12.0, 4.0)], f"the model's spans: {spans}"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "failed" in legend and "queued" in legend and "model" in legend, legend


def test_host_load_dashes_maintenance_and_shades_the_target(tmp_path: Path,
                                                            drawn: list[Any]) -> None:
    assert_png(plots.host_load(HOSTS, tmp_path / "load.png", target=0.2))
    ax = drawn[0].axes[0]
    dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"
              and ln.get_ydata()[0] == pytest.approx(0.9)]
    assert dashed, "h2 in maintenance from t=1 is not drawn dashed"
    assert ax.collections, "no band for the target"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"h1", "h2", "h3", "h4", "maintenance", "degraded"} <= set(legend), legend


def test_mean_load_is_over_the_normal_hosts() -> None:
    samples = plots._samples(HOSTS)
    assert samples["h4"][1] == (14.0, 0.0, "degraded"), "an empty load keeps the previous one"
    times, means = plots.mean_load(samples)
    assert times == [0.0, 1.0, 12.5, 14.0, 20.0]
    # t=0: all four normal; t=1: h2 in maintenance; t=14: h4 degraded too; t=20: h4 normal
    expected = [1.6 / 4, 0.7 / 3, 0.7 / 3, 0.7 / 2, 0.7 / 3]
    assert means == pytest.approx(expected, abs=1e-9), f"{means} != {expected}"


def test_stacked_goodput_on_a_common_grid() -> None:
    grid, values = plots.stacked_goodput(RATES)
    assert grid == [0.0, 2.0, 5.0, 9.0, 12.5, 15.0, 20.0]
    assert values == {"vm1 #1": [100, 100, 60, 60, 0, 0, 0], "vm2 #1": [0, 40, 40, 0, 0, 0, 0],
                      "vm1 #2": [0, 0, 0, 0, 0, 96, 0]}, "the empty vm3 round is left out"


def test_wan_utilisation_draws_links_capacity_and_stacked_goodput(tmp_path: Path,
                                                                  drawn: list[Any]) -> None:
    assert_png(plots.wan_utilisation(WAN, RATES, MOVES, tmp_path / "wan.png",
                                     capacity_mbps={1: 200.0}))
    top, bottom = drawn[0].axes[:2]
    labels = [t.get_text() for t in top.get_legend().get_texts()]
    assert labels == ["link 1 a->b", "link 1 b->a", "link 1 capacity 200"], labels
    stacked = [t.get_text() for t in bottom.get_legend().get_texts()]
    assert stacked == ["vm1 #1", "vm1 #2", "vm2 #1", "sum"], stacked
    total = bottom.get_lines()[0].get_ydata()
    assert max(total) == pytest.approx(140.0), "vm1 100 + vm2 40 at t=2..5"


def test_numbers_as_well_as_strings(tmp_path: Path) -> None:
    typed = [{k: plots.num(v) if plots.num(v) is not None else v for k, v in r.items()}
             for r in MOVES]
    assert_png(plots.gantt(typed, tmp_path / "g.png"))


@pytest.mark.parametrize("name", ["gantt", "host_load", "wan"])
def test_empty_inputs_still_write_a_figure(tmp_path: Path, name: str,
                                           drawn: list[Any]) -> None:
    path = tmp_path / "sub" / f"{name}.png"
    if name == "gantt":
        plots.gantt([], path)
    elif name == "host_load":
        plots.host_load([], path, target=0.1)
    else:
        plots.wan_utilisation([], [], [], path)
    assert_png(path)
    texts = [t.get_text() for ax in drawn[0].axes for t in ax.texts]
    assert any(plots.NO_MIGRATIONS in t for t in texts), texts


def test_num() -> None:
    assert plots.num("12.5") == 12.5 and plots.num("3") == 3.0 and plots.num(4) == 4.0
    assert plots.num("") is None and plots.num(None) is None and plots.num("x") is None
    assert plots.num(True) is None
