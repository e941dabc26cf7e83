"""``wanmig plot DIR`` and ``wanmig validate SPEC``: experiment subcommands needing no network.

``add_subcommands`` is called by wanmig/cli.py with its subparsers; each subcommand sets
``func(args) -> int``. Bad input raises ConfigError, which wanmig's main turns into exit 2.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from wanmig.config import ConfigError

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


def add_subcommands(subparsers: Any) -> None:
    s = subparsers.add_parser("plot", help="figures and report.md from a run or sweep folder")
    s.add_argument("dir", help="a results folder (run or sweep)")
    s.add_argument("--sweep-only", action="store_true",
                   help="for a sweep, skip the per-run timelines")
    s.set_defaults(func=cmd_plot)

    s = subparsers.add_parser("validate", help="check an experiment or sweep spec and print it "
                                               "resolved")
    s.add_argument("spec", help="experiment or sweep YAML")
    s.set_defaults(func=cmd_validate)
