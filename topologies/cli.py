"""The network's subcommands: ``check`` (what this machine offers), ``net`` (a topology up,
optionally into Mininet's CLI) and ``linkcheck`` (the WAN measured against what was asked).

``add_subcommands`` is called by the ``wanmig`` command with its subparsers; each subcommand sets
``func(args) -> Exit``. Bad input raises ConfigError before anything starts.
"""

from __future__ import annotations

import argparse
import copy
import json
import signal
from typing import Any

from ground.config import ConfigError
from ground.errors import Exit, UsageError, need_root

NEEDS_ROOT = "this command builds network namespaces and OVS bridges"


def topology_data(path: str | None, overrides: dict[str, Any]) -> dict:
    from ground.yamlfile import read_yaml

    data = {} if path is None else copy.deepcopy(read_yaml(path))   # a mapping, or refused
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides:
        wan = data.get("wan") or [{}]
        if not isinstance(wan, list) or not wan or not isinstance(wan[0], dict):
            raise ConfigError("wan", wan, "a list of WAN links to apply --rtt/--bw/--loss to")
        wan[0] = {**wan[0], **overrides}
        data["wan"] = wan
    return data


def ready_choice() -> tuple[Any, Any]:
    """What this machine offers and the backends chosen; UsageError when it cannot run."""
    from topologies.detect import detect

    facts, choice = detect()
    if not choice.ok:
        raise UsageError("this machine cannot run the testbed: " + "; ".join(choice.problems))
    return facts, choice


def machine_check() -> tuple[list[tuple[str, str]], dict, bool]:
    """What this machine offers the network part of the testbed: table rows, the JSON record
    and whether the testbed can run (``wanmig check``, composed in ``experiments.cli``)."""
    from topologies.detect import as_record, detect

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
    record = {**as_record(facts, choice), "ok": choice.ok, "problems": list(choice.problems)}
    return rows, record, choice.ok


def cmd_net(args: argparse.Namespace) -> Exit:
    from ground.meta import new_run_dir
    from topologies.network import WanNetwork
    from topologies.spec import parse_topology

    spec = parse_topology(topology_data(args.config, {}))
    need_root(NEEDS_ROOT)
    _facts, choice = ready_choice()
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
    return Exit.OK


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


def cmd_linkcheck(args: argparse.Namespace) -> Exit:
    from ground.meta import new_run_dir, run_metadata
    from ground.table import render
    from topologies.detect import as_record
    from topologies.linkcheck import run_linkcheck
    from topologies.network import WanNetwork
    from topologies.spec import parse_topology

    spec = parse_topology(topology_data(args.config, {
        "rtt_ms": args.rtt, "bw_mbps": args.bw, "loss_pct": args.loss, "jitter_ms": args.jitter}))
    if args.pings < 20:
        raise ConfigError("--pings", args.pings, "at least 20 samples")
    need_root(NEEDS_ROOT)
    facts, choice = ready_choice()
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
    return Exit.OK if check.ok else Exit.FAIL



def add_subcommands(subparsers: Any) -> None:
    """Add ``net`` and ``linkcheck`` to the ``wanmig`` command's subparsers (``check`` is
    ``experiments.cli``'s: it also reports the QEMU guests' image and accelerator)."""
    s = subparsers.add_parser("net", help="bring a topology up; Ctrl-C tears it down")
    s.add_argument("config", nargs="?", help="topology YAML (default: two sites)")
    s.add_argument("--cli", action="store_true", help="open Mininet's CLI")
    s.set_defaults(func=cmd_net)

    s = subparsers.add_parser("linkcheck", help="measure the WAN link's RTT and goodput")
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
