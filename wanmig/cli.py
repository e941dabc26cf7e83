"""The ``wanmig`` command: one entry point, a subcommand per task.

Exit status: 0 success, 1 the testbed or the link is not what was asked, 2 bad input (nothing was
started), 130 interrupted (everything torn down).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from ground.config import ConfigError

log = logging.getLogger("wanmig")

EXIT_OK, EXIT_FAIL, EXIT_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(RuntimeError):
    """A request that cannot run on this machine (e.g. not root); nothing was started."""


def _sigterm_to_interrupt(_sig: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _need_root() -> None:
    if os.geteuid() != 0:
        raise UsageError("this command builds network namespaces and OVS bridges: run it as root "
                         "(sudo)")


def _topology_data(path: str | None, overrides: dict[str, Any]) -> dict:
    from topologies.spec import read_yaml

    data = {} if path is None else read_yaml(path)
    data = copy.deepcopy(data) if data is not None else {}
    if not isinstance(data, dict):
        raise ConfigError(path or "<top level>", data, "a mapping of keys to values")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides:
        wan = data.get("wan") or [{}]
        if not isinstance(wan, list) or not wan or not isinstance(wan[0], dict):
            raise ConfigError("wan", wan, "a list of WAN links to apply --rtt/--bw/--loss to")
        wan[0] = {**wan[0], **overrides}
        data["wan"] = wan
    return data


def _ready_choice() -> tuple[Any, Any]:
    from topologies.detect import detect

    facts, choice = detect()
    if not choice.ok:
        raise UsageError("this machine cannot run the testbed: " + "; ".join(choice.problems))
    return facts, choice


def cmd_check(args: argparse.Namespace) -> int:
    from ground.table import render
    from topologies.detect import detect

    facts, choice = detect()
    rows = [("root", "yes" if facts.root else "no"),
            ("kernel", facts.kernel),
            ("sch_netem", {True: "yes", False: f"no ({facts.netem_error})",
                           None: facts.netem_error}[facts.netem]),
            ("link backend", choice.link_backend),
            ("openvswitch module", "yes" if facts.ovs_kernel_module else "no"),
            ("OVS datapath", choice.ovs_datapath),
            ("OVS running", "yes" if facts.ovs_running else "no"),
            ("Mininet importable", "yes" if facts.mininet else "no"),
            ("os-ken importable", "yes" if facts.os_ken else "no")]
    rows += [(f"tool {t}", p or "MISSING") for t, p in sorted(facts.tools.items())]
    rows.append(("testbed can run", "yes" if choice.ok else "NO: " + "; ".join(choice.problems)))
    if args.json:
        from topologies.detect import as_record
        print(json.dumps({**as_record(facts, choice), "ok": choice.ok,
                          "problems": list(choice.problems)}, indent=2))
    else:
        print(render(("what", "found"), rows))
    return EXIT_OK if choice.ok else EXIT_FAIL


def cmd_net(args: argparse.Namespace) -> int:
    from ground.meta import new_run_dir
    from topologies.network import WanNetwork
    from topologies.spec import parse_topology

    spec = parse_topology(_topology_data(args.config, {}))
    _need_root()
    _facts, choice = _ready_choice()
    with WanNetwork(spec, choice, new_run_dir(f"net-{spec.name}")) as net:
        for h in net.plan.hosts:
            print(f"{h.name:10s} {h.role:10s} site {h.site:6s} {h.ip:12s} {h.mac} on {h.switch}",
                  flush=True)
        for link in net.links:
            print(f"WAN {link.index}: {link.spec.a}-{link.spec.b} rtt {link.spec.rtt_ms:g} ms "
                  f"bw {link.spec.bw_mbps} Mbit/s backend {link.backend}", flush=True)
        if args.cli:
            from mininet.cli import CLI
            CLI(net.net)
        else:
            print("network up; Ctrl-C tears it down", flush=True)
            signal.pause()
    return EXIT_OK


def _linkcheck_rows(check: Any) -> list[tuple[str, str]]:
    def f(x: Any, fmt: str = ".2f") -> str:
        return "-" if x is None else format(x, fmt)
    return [("link", f"{check.link} ({check.src} -> {check.dst})"),
            ("backend / datapath", f"{check.backend} / {check.datapath}"),
            ("RTT configured", f"{check.rtt_ms_configured:g} ms"),
            ("RTT measured (avg)", f"{f(check.rtt_ms_measured)} ms over {check.ping_samples} "
                                   f"pings (min {f(check.rtt_min_ms)}, max {f(check.rtt_max_ms)},"
                                   f" mdev {f(check.rtt_mdev_ms, '.3f')})"),
            ("RTT tolerance", f"+-{check.rtt_tolerance_ms:.2f} ms"),
            ("loss configured / measured", f"{check.loss_pct_configured:g} % / "
                                           f"{check.loss_pct_measured:.1f} %"),
            ("bandwidth configured", "unshaped" if check.bw_mbps is None
             else f"{check.bw_mbps:g} Mbit/s"),
            ("TCP goodput (iperf3)", f"{f(check.goodput_mbps, '.1f')} Mbit/s, "
                                     f"{check.retransmits} retransmits"),
            ("verdict", "OK" if check.ok else "OFF: " + "; ".join(check.problems))]


def cmd_linkcheck(args: argparse.Namespace) -> int:
    from ground.meta import new_run_dir, run_metadata
    from ground.table import render
    from topologies.detect import as_record
    from topologies.linkcheck import run_linkcheck
    from topologies.network import WanNetwork
    from topologies.spec import parse_topology

    spec = parse_topology(_topology_data(args.config, {
        "rtt_ms": args.rtt, "bw_mbps": args.bw, "loss_pct": args.loss, "jitter_ms": args.jitter}))
    if args.pings < 20:
        raise ConfigError("--pings", args.pings, "at least 20 samples")
    _need_root()
    facts, choice = _ready_choice()
    out = new_run_dir("linkcheck")
    meta = {**run_metadata(), **as_record(facts, choice)}
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    with WanNetwork(spec, choice, out) as net:
        check = run_linkcheck(net, pings=args.pings, iperf_s=args.seconds, omit_s=args.omit,
                              streams=args.streams, min_goodput_frac=args.min_goodput_frac)
        record = {**check.to_json(), "network": net.record()}
    record["network"] = {**record["network"], "wan": [lk.record() for lk in net.links]}
    (out / "linkcheck.json").write_text(json.dumps(record, indent=2))
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        print(render(("linkcheck", "result"), _linkcheck_rows(check)))
        print(f"written: {out / 'linkcheck.json'}")
    return EXIT_OK if check.ok else EXIT_FAIL


def cmd_controller(args: argparse.Namespace) -> int:
    """The controller on its own, for a user's own Mininet (``mn --controller remote,port=P``).
    Links are discovered with its own probes, so no topology is needed; one given is validated
    and its expected switches and links are printed to compare with the status file."""
    from controller import run
    from topologies.plan import plan_network
    from topologies.spec import parse_topology

    if args.topology:
        spec = parse_topology(_topology_data(args.topology, {}))
        plan = plan_network(spec)
        print(f"topology {spec.name}: expecting {len(plan.switches)} switches and "
              f"{len(plan.fabric_links) + len(plan.wan)} links", flush=True)
    argv = ["--port", str(args.port), "--host", args.host, "--hold-s", str(args.hold_s)]
    argv += ["--events", args.events] if args.events else []
    argv += ["--status", args.status] if args.status else []
    print(f"controller listening on {args.host}:{args.port} (OpenFlow 1.3); Ctrl-C stops it",
          flush=True)
    run.main(argv)
    return EXIT_OK


def cmd_clean(args: argparse.Namespace) -> int:
    from topologies.cleanup import clean

    _need_root()
    actions = clean(include_live=args.all)
    print("\n".join(actions) if actions else "nothing to clean")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wanmig", description="long-distance live VM migration "
                                                           "testbed")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("check", help="what this machine offers and whether the testbed can run")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_check)

    s = sub.add_parser("net", help="bring a topology up; Ctrl-C tears it down")
    s.add_argument("config", nargs="?", help="topology YAML (default: two sites)")
    s.add_argument("--cli", action="store_true", help="open Mininet's CLI")
    s.set_defaults(func=cmd_net)

    s = sub.add_parser("linkcheck", help="measure the WAN link's RTT and goodput")
    s.add_argument("config", nargs="?", help="topology YAML (default: two sites)")
    s.add_argument("--rtt", type=float, help="override wan[0].rtt_ms")
    s.add_argument("--bw", type=float, help="override wan[0].bw_mbps")
    s.add_argument("--loss", type=float, help="override wan[0].loss_pct")
    s.add_argument("--jitter", type=float, help="override wan[0].jitter_ms")
    s.add_argument("--pings", type=int, default=20, help="RTT samples (at least 20)")
    s.add_argument("--seconds", type=float, default=8.0, help="iperf3 duration counted")
    s.add_argument("--omit", type=float, default=3.0, help="iperf3 seconds not counted (slow "
                                                           "start)")
    s.add_argument("--streams", type=int, default=1, help="parallel TCP streams")
    s.add_argument("--min-goodput-frac", type=float, default=0.8,
                   help="goodput below this fraction of bw_mbps fails the check")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_linkcheck)

    s = sub.add_parser("controller", help="run the SDN controller on its own")
    s.add_argument("--port", type=int, default=6653)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--events", help="JSON-lines event log (learns, moves, convergence)")
    s.add_argument("--status", help="JSON status file (switches, links, hosts)")
    s.add_argument("--topology", help="topology YAML to check against")
    s.add_argument("--hold-s", type=float, default=1.0, help="flapping guard hold time")
    s.set_defaults(func=cmd_controller)

    from experiments.cli import add_subcommands as add_experiment_commands
    from migrator.cli import add_subcommands as add_migration_commands

    add_migration_commands(sub)
    add_experiment_commands(sub)

    s = sub.add_parser("clean", help="remove what crashed runs left behind")
    s.add_argument("--all", action="store_true", help="also networks whose owner still runs")
    s.set_defaults(func=cmd_clean)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ConfigError as exc:
        print(f"wanmig: bad input: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except UsageError as exc:
        print(f"wanmig: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("wanmig: interrupted; everything was torn down", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the message, not a traceback, is for users
        from topologies.measure import MeasureError
        from topologies.network import LinkError
        if isinstance(exc, (LinkError, MeasureError)):
            print(f"wanmig: {exc}", file=sys.stderr)
            return EXIT_FAIL
        raise


if __name__ == "__main__":
    sys.exit(main())
