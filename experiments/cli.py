"""Experiment subcommands: ``run`` and ``sweep`` (root, the whole testbed), ``plot`` and
``validate`` (no network).

``add_subcommands`` is called by wanmig/cli.py with its subparsers; each subcommand sets
``func(args) -> int``. Bad input raises ConfigError, which wanmig's main turns into exit 2.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from ground.config import ConfigError

log = logging.getLogger("wanmig.experiments")


def cmd_plot(args: argparse.Namespace) -> int:
    from experiments.plot import plot_run, plot_sweep, write_report
    from experiments.summary import SWEPT_FILE, write_summary

    folder = Path(args.dir)
    if not folder.is_dir():
        raise ConfigError("DIR", args.dir, "a run or sweep folder under results/")
    written: list[Path] = []
    if (folder / "summary.csv").is_file() or any(folder.glob(f"*/{SWEPT_FILE}")):
        if not (folder / "summary.csv").is_file():
            write_summary(folder)
        if not args.sweep_only:
            for run in sorted(p for p in folder.iterdir() if (p / "metrics.json").is_file()):
                written += plot_run(run)
                written.append(write_report(run))
        written += plot_sweep(folder)
    elif (folder / "metrics.json").is_file():
        written += plot_run(folder)
    else:
        raise ConfigError("DIR", args.dir, "a run folder (with metrics.json) or a sweep folder "
                                           "(with summary.csv)")
    written.append(write_report(folder))
    for path in written:
        print(path)
    return 0


def _dump(data: Any) -> str:
    import yaml
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


def cmd_validate(args: argparse.Namespace) -> int:
    from experiments.spec import load_experiment, resolved_dict
    from experiments.sweep import expand, is_sweep, load_sweep, sweep_dict
    from topologies.spec import read_yaml

    path = Path(args.spec)
    if not path.is_file():
        raise ConfigError("SPEC", args.spec, "an experiment or sweep YAML file")
    if is_sweep(read_yaml(path)):
        sweep = load_sweep(path)
        runs = expand(sweep)
        print(_dump(sweep_dict(sweep)), end="")
        print(f"# {len(runs)} runs:")
        for name, spec, values in runs:
            shown = ", ".join(f"{k}={v}" for k, v in values.items())
            print(f"#   {name}: {shown} (seed {spec.seed})")
    else:
        spec = load_experiment(path)
        print(_dump(resolved_dict(spec)), end="")
        print(f"# topology from {spec.topology_source}; valid")
    return 0


def _need_root() -> None:
    import os

    if os.geteuid() != 0:
        raise ConfigError("user", os.geteuid(), "root: runs build Mininet networks (use sudo)")


def _out(args: argparse.Namespace, name: str) -> Path:
    from ground.meta import new_run_dir

    if args.out:
        out = Path(args.out)
        if out.exists() and any(out.iterdir()):
            raise ConfigError("--out", args.out, "a new or empty folder")
        out.mkdir(parents=True, exist_ok=True)
        return out
    return new_run_dir(name)


def _finish_run(out: Path) -> None:
    from experiments.plot import plot_run, write_report

    try:
        plot_run(out)
        write_report(out)
    except Exception:  # noqa: BLE001 - the run's files stand without the figures
        log.exception("plotting %s failed; the run's files are complete", out)


def cmd_run(args: argparse.Namespace) -> int:
    from experiments.runner import check_runnable, run_experiment
    from experiments.spec import load_experiment, parse_experiment
    from experiments.summary import run_table

    spec = load_experiment(args.spec) if args.spec else parse_experiment({})
    check_runnable(spec)
    _need_root()
    out = _out(args, spec.name)
    print(f"run {spec.name}: results in {out}", flush=True)
    try:
        metrics = run_experiment(spec, out)
    finally:
        if (out / "metrics.json").exists():
            _finish_run(out)
    print(run_table(metrics))
    print(f"written: {out} (report.md, timeline.png)")
    return 0 if metrics.get("outcome") == "completed" and metrics.get("integrity_ok") else 1


def cmd_sweep(args: argparse.Namespace) -> int:
    from experiments.plot import plot_sweep, write_report
    from experiments.runner import check_runnable, run_experiment
    from experiments.summary import write_summary, write_swept
    from experiments.sweep import expand, load_sweep

    sweep = load_sweep(args.spec)
    runs = expand(sweep)
    for run in runs:                          # every run checked before the first starts
        check_runnable(run.spec)
    _need_root()
    out = _out(args, sweep.name)
    print(f"sweep {sweep.name}: {len(runs)} runs into {out}", flush=True)
    failed = 0
    for i, (name, spec, values) in enumerate(runs, start=1):
        print(f"[{i}/{len(runs)}] {name}", flush=True)
        run_dir = out / name
        try:
            metrics = run_experiment(spec, run_dir)
            failed += metrics.get("outcome") != "completed"
        except Exception as exc:  # noqa: BLE001 - one failed run does not end the sweep
            log.error("run %s failed: %s", name, exc)
            failed += 1
        finally:
            if (run_dir / "metrics.json").exists():
                write_swept(run_dir, values)
                _finish_run(run_dir)
    write_summary(out)
    plot_sweep(out)
    write_report(out)
    print(f"written: {out} (summary.csv, report.md); {failed} of {len(runs)} runs failed")
    return 0 if failed == 0 else 1


def add_subcommands(subparsers: Any) -> None:
    s = subparsers.add_parser("run", help="run one experiment (default: the quickstart)")
    s.add_argument("spec", nargs="?", help="experiment YAML (default: the built-in quickstart)")
    s.add_argument("--out", help="result folder (default results/<time>-<name>)")
    s.set_defaults(func=cmd_run)

    s = subparsers.add_parser("sweep", help="run a sweep: one folder per run, summary.csv")
    s.add_argument("spec", help="sweep YAML")
    s.add_argument("--out", help="result folder (default results/<time>-<name>)")
    s.set_defaults(func=cmd_sweep)

    s = subparsers.add_parser("plot", help="figures and report.md from a run or sweep folder")
    s.add_argument("dir", help="a results folder (run or sweep)")
    s.add_argument("--sweep-only", action="store_true",
                   help="for a sweep, skip the per-run timelines")
    s.set_defaults(func=cmd_plot)

    s = subparsers.add_parser("validate", help="check an experiment or sweep spec and print it "
                                               "resolved")
    s.add_argument("spec", help="experiment or sweep YAML")
    s.set_defaults(func=cmd_validate)
