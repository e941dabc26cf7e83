"""The subcommands that compose the parts: ``run`` and ``sweep`` (root, the whole testbed),
``plot`` and ``validate`` (no network), ``controller`` (the controller on its own, checked
against a topology) and ``clean`` (each part removes what crashed runs left of it).

``add_subcommands`` is called by the ``wanmig`` command with its subparsers; each subcommand sets
``func(args) -> Exit``. Bad input raises ConfigError, which the command turns into exit 2.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from ground.config import ConfigError
from ground.errors import Exit, need_root
from ground.meta import out_dir

log = logging.getLogger("wanmig.experiments")

NEEDS_ROOT = "runs build Mininet networks"


def cmd_plot(args: argparse.Namespace) -> Exit:
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
    return Exit.OK


def _dump(data: Any) -> str:
    import yaml
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


def cmd_validate(args: argparse.Namespace) -> Exit:
    """The spec checked (and each run of a sweep), its memory against this machine too."""
    from experiments.capacity import check_capacity
    from experiments.spec import load_experiment, resolved_dict
    from experiments.sweep import expand, is_sweep, load_sweep, sweep_dict
    from ground.yamlfile import read_yaml

    path = Path(args.spec)
    if not path.is_file():
        raise ConfigError("SPEC", args.spec, "an experiment or sweep YAML file")
    if is_sweep(read_yaml(path)):
        sweep = load_sweep(path)
        runs = expand(sweep)
        for run in runs:
            check_capacity(run.spec)
        print(_dump(sweep_dict(sweep)), end="")
        print(f"# {len(runs)} runs:")
        for name, spec, values in runs:
            shown = ", ".join(f"{k}={v}" for k, v in values.items())
            print(f"#   {name}: {shown} (seed {spec.seed})")
    else:
        spec = load_experiment(path)
        check_capacity(spec)
        print(_dump(resolved_dict(spec)), end="")
        print(f"# topology from {spec.topology_source}; valid")
    return Exit.OK


def _finish_run(out: Path) -> None:
    from experiments.plot import plot_run, write_report

    try:
        plot_run(out)
        write_report(out)
    except Exception:  # noqa: BLE001 - the run's files stand without the figures
        log.exception("plotting %s failed; the run's files are complete", out)


def cmd_run(args: argparse.Namespace) -> Exit:
    from experiments.runner import check_runnable, run_experiment
    from experiments.spec import load_experiment, parse_experiment
    from experiments.summary import run_table

    spec = load_experiment(args.spec) if args.spec else parse_experiment({})
    check_runnable(spec)
    need_root(NEEDS_ROOT)
    out = out_dir(args.out, spec.name)
    print(f"run {spec.name}: results in {out}", flush=True)
    try:
        metrics = run_experiment(spec, out)
    finally:
        if (out / "metrics.json").exists():
            _finish_run(out)
    print(run_table(metrics))
    print(f"written: {out} (report.md, timeline.png)")
    return Exit.OK if metrics.get("outcome") == "completed" and metrics.get("integrity_ok") \
        else Exit.FAIL


def run_passed(metrics: dict) -> bool:
    """A run with faults passes when its invariants held (a fault may well abort the
    migration); any other when its migration completed."""
    if "invariants" in metrics:
        return bool((metrics.get("invariants") or {}).get("held"))
    return metrics.get("outcome") == "completed"


def cmd_sweep(args: argparse.Namespace) -> Exit:
    from experiments.plot import plot_sweep, write_report
    from experiments.runner import check_runnable, run_experiment
    from experiments.summary import write_summary, write_swept
    from experiments.sweep import expand, load_sweep

    sweep = load_sweep(args.spec)
    runs = expand(sweep)
    for run in runs:                          # every run checked before the first starts
        check_runnable(run.spec)
    need_root(NEEDS_ROOT)
    out = out_dir(args.out, sweep.name)
    print(f"sweep {sweep.name}: {len(runs)} runs into {out}", flush=True)
    failed = 0
    for i, (name, spec, values) in enumerate(runs, start=1):
        print(f"[{i}/{len(runs)}] {name}", flush=True)
        run_dir = out / name
        try:
            metrics = run_experiment(spec, run_dir)
            failed += not run_passed(metrics)
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
    what = ("its migration did not complete, or, with faults, an invariant broke"
            if any(spec.faults for _, spec, _ in runs) else "its migration did not complete")
    print(f"written: {out} (summary.csv, report.md); {failed} of {len(runs)} runs failed "
          f"({what})")
    return Exit.OK if failed == 0 else Exit.FAIL


def cmd_controller(args: argparse.Namespace) -> Exit:
    """The controller on its own, for a user's own Mininet (``mn --controller remote,port=P``).
    Links are discovered with its own probes, so no topology is needed; one given is validated
    and its expected switches and links are printed to compare with the status file."""
    from controller import run
    from topologies.cli import topology_data
    from topologies.plan import plan_network
    from topologies.spec import parse_topology

    if args.topology:
        spec = parse_topology(topology_data(args.topology, {}))
        plan = plan_network(spec)
        print(f"topology {spec.name}: expecting {len(plan.switches)} switches and "
              f"{len(plan.fabric_links) + len(plan.wan)} links", flush=True)
    argv = ["--port", str(args.port), "--host", args.host, "--hold-s", str(args.hold_s)]
    argv += ["--events", args.events] if args.events else []
    argv += ["--status", args.status] if args.status else []
    print(f"controller listening on {args.host}:{args.port} (OpenFlow 1.3); Ctrl-C stops it",
          flush=True)
    run.main(argv)
    return Exit.OK


def cmd_clean(args: argparse.Namespace) -> Exit:
    """Each part removes what crashed runs left of it: the networks (with their processes,
    the controller's included), the guests whose owner is dead (stopped, their memory
    removed), then any other VM memory image no process maps, and any disk image no process
    has open."""
    from migrator.disk.datastore import clean_disks
    from migrator.guest.image import clean_images
    from migrator.guest.records import clean_guests
    from topologies.cleanup import clean_networks

    need_root("wanmig clean removes network namespaces, OVS bridges and processes")
    actions = (clean_networks(include_live=args.all) + clean_guests(include_live=args.all)
               + clean_images(include_live=args.all) + clean_disks(include_live=args.all))
    print("\n".join(actions) if actions else "nothing to clean")
    return Exit.OK


def qemu_rows(q: dict) -> list[tuple[str, str]]:
    """``wanmig check``'s rows for QEMU guests (``migrator.qemu.status.describe``)."""
    image, accel = q.get("image") or {}, q.get("accel") or {}
    built = (f"{image.get('kernel_version')}, digest {str(image.get('digest'))[:12]}"
             if image.get("built") else f"NOT BUILT ({image.get('error')})")
    verdict = (f"{accel['name']} ({accel.get('reason')})" if accel.get("name")
               else "not probed yet: the first QEMU run probes it")
    return [("QEMU", q.get("qemu") or "MISSING (vm.kind qemu cannot run)"),
            ("QEMU guest image", built),
            ("QEMU accelerator", verdict)]


def cmd_check(args: argparse.Namespace) -> Exit:
    """What this machine offers: the network part (``topologies.cli.machine_check``), then
    QEMU guests (reported; the testbed runs without them, with emulated VMs)."""
    from ground.table import render
    from migrator.qemu.status import describe
    from topologies.cli import machine_check

    rows, record, ok = machine_check()
    q = describe(probe=False)
    if args.json:
        print(json.dumps({**record, "qemu": q}, indent=2))
    else:
        print(render(("what", "found"), rows + qemu_rows(q)))
    return Exit.OK if ok else Exit.FAIL


def add_subcommands(subparsers: Any) -> None:
    s = subparsers.add_parser("check", help="what this machine offers and whether the testbed "
                                            "can run")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_check)

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

    s = subparsers.add_parser("controller", help="run the SDN controller on its own")
    s.add_argument("--port", type=int, default=6653)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--events", help="JSON-lines event log (learns, moves, convergence)")
    s.add_argument("--status", help="JSON status file (switches, links, hosts)")
    s.add_argument("--topology", help="topology YAML to check against")
    s.add_argument("--hold-s", type=float, default=1.0, help="flapping guard hold time")
    s.set_defaults(func=cmd_controller)

    s = subparsers.add_parser("clean", help="remove what crashed runs left behind")
    s.add_argument("--all", action="store_true", help="also networks whose owner still runs")
    s.set_defaults(func=cmd_clean)
