"""experiments.plot: figures and reports from the stored fixture run and sweep folders only."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pytest

from experiments.cli import add_subcommands, cmd_plot
from experiments.plot import plot_run, plot_sweep, sweep_series, write_report
from experiments.progress import Progress, format_line
from experiments.summary import read_summary, summary_rows, write_summary
from ground.config import ConfigError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def assert_files(paths: list[Path]) -> None:
    for path in paths:
        assert path.is_file() and path.stat().st_size > 0, path


def test_run_timeline_png_and_svg(tmp_path):
    written = plot_run(FIXTURES / "run_small", tmp_path)
    assert sorted(p.name for p in written) == ["timeline.png", "timeline.svg"]
    assert_files(written)
    assert (tmp_path / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in (tmp_path / "timeline.svg").read_text()


def test_sweep_figures(tmp_path):
    written = plot_sweep(FIXTURES / "sweep_small", tmp_path)
    names = sorted(p.name for p in written)
    figures = ("total_time", "downtime", "client_outage", "overview")
    assert names == sorted(f"sweep_{m}.{f}" for m in figures for f in ("png", "svg"))
    assert_files(written)


def test_sweep_series_mean_and_sd_over_repetitions():
    rows = [{"run": f"r{i}", "wan.rtt_ms": rtt, "policy.codec": codec, "downtime_ms": v}
            for i, (rtt, codec, v) in enumerate([(0, "none", 100.0), (0, "none", 120.0),
                                                 (50, "none", 200.0), (0, "zstd-3", 90.0),
                                                 (50, "zstd-3", None)])]
    x_key, series = sweep_series(["wan.rtt_ms", "policy.codec"], rows, "downtime_ms")
    assert x_key == "wan.rtt_ms"
    (x0, mean0, sd0, n0), (x1, mean1, _, n1) = series["codec=none"]
    assert (x0, mean0, n0, x1, mean1, n1) == (0, 110.0, 2, 50, 200.0, 1)
    assert sd0 == pytest.approx(14.142, abs=1e-3)
    assert series["codec=zstd-3"] == [(0, 90.0, 0.0, 1)]     # the run without it is left out


def test_summary_rebuilt_from_run_folders_matches_the_stored_one(tmp_path):
    sweep = tmp_path / "sweep"
    shutil.copytree(FIXTURES / "sweep_small", sweep)
    stored = (sweep / "summary.csv").read_text()
    (sweep / "summary.csv").unlink()
    write_summary(sweep)
    assert (sweep / "summary.csv").read_text() == stored
    keys, rows = read_summary(sweep / "summary.csv")
    assert keys == ["wan.rtt_ms"] and [r["wan.rtt_ms"] for r in rows] == [50, 150]
    assert summary_rows(sweep)[0] == ["wan.rtt_ms"]


def test_reports_have_the_table_and_the_figures(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FIXTURES / "run_small", run)
    plot_run(run)
    text = write_report(run).read_text()
    assert "| client outage | 251 ms |" in text and "![timeline](timeline.png)" in text
    sweep = tmp_path / "sweep"
    shutil.copytree(FIXTURES / "sweep_small", sweep)
    plot_sweep(sweep)
    text = write_report(sweep).read_text()
    assert "| wan.rtt_ms | runs | total_time_s |" in text, text
    assert "![sweep_downtime](sweep_downtime.png)" in text, text


def test_plot_command_on_a_sweep_and_a_bad_folder(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    shutil.copytree(FIXTURES / "sweep_small", sweep)
    parser = argparse.ArgumentParser()
    add_subcommands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["plot", str(sweep)])
    assert args.func(args) == 0
    printed = capsys.readouterr().out.split()
    assert str(sweep / "report.md") in printed and str(sweep / "sweep_downtime.svg") in printed
    assert_files([Path(p) for p in printed])
    with pytest.raises(ConfigError) as info:
        cmd_plot(argparse.Namespace(dir=str(tmp_path / "empty"), sweep_only=False))
    assert info.value.path == "DIR"


def test_validate_command_prints_the_resolved_spec(capsys):
    parser = argparse.ArgumentParser()
    add_subcommands(parser.add_subparsers(dest="command"))
    repo = Path(__file__).resolve().parents[3]
    args = parser.parse_args(["validate", str(repo / "experiments" / "rtt_sweep.yaml")])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "# 30 runs:" in out and "rtt-sweep-009-rtt_ms_150-codec_adaptive-r2" in out


def test_progress_lines_without_a_terminal():
    line = format_line("live", 2, 3 * 2 ** 20, 25e6 / 8, 1.5, 120.0)
    assert line == ("live round 2: 3.0 MiB left at 25.0 Mbit/s, eta 1.5 s, "
                    "expected downtime 120 ms")
    with Progress(bar=False) as progress:
        progress.update("live", 0, 2 ** 30, 30e6, None, None)
    assert progress.lines == ["live round 0: 1.0 GiB left at 240.0 Mbit/s, eta ?, "
                              "expected downtime -"]
