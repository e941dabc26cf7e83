"""``make bench`` (controller part): packet-in rate and convergence after host moves.

Targets (issue: SDN controller):
- convergence after a move, from the announcing frame's packet-in to the last barrier reply:
  median at most 10 ms with the controller at the destination site, at most one control RTT more
  when it is at the other site; median and p95 over at least 20 moves;
- packet-in handling (learn + decide + flow-mods) at least 2,000 per second.

A move: ``dc1h1`` is re-plugged alternately into dc2's and dc1's edge switch and sends one RARP
(``migrator.guest.announce --rounds 1``); the controller's event log gives, per move, the barrier
reply time of every switch. Reported per move: ``dest_site_ms`` (the last reply from the destination
site's switches: the VM is reachable from its new site) and ``all_ms`` (the last reply from any
switch, ``flow_convergence_ms``). With two sites a move always touches both (the stale entry at the
old site is deleted), so ``all_ms`` includes one control RTT whenever either site is remote.

Writes ``results/bench/<time>-controller/`` (``experiments.bench.harness``; each placement's
network and event log under ``runs/``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

from controller.eventlog import read_events
from experiments.bench.harness import Bench, Verdict, at_least, at_most, entry, testbed
from experiments.bench.packetin import measure
from experiments.testbed import controlled_network
from ground.protocol import Kind, parse_line
from ground.table import render
from topologies.detect import as_record
from topologies.mobility import move_host
from topologies.spec import parse_topology

log = logging.getLogger("wanmig.bench")

RATE_TARGET = 2000.0
LOCAL_TARGET_MS = 10.0
VM = "dc1h1"


def _moves_of(events_path: Path, mac: str) -> list[dict]:
    return [e for e in read_events(events_path) if e.get("event") == "move"
            and e.get("mac") == mac]


def _wait_moves(events_path: Path, mac: str, n: int, timeout_s: float) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        moves = _moves_of(events_path, mac)
        if len(moves) >= n:
            return moves
        time.sleep(0.02)
    raise RuntimeError(f"move {n} of {mac} not confirmed within {timeout_s} s "
                       f"(log {events_path})")


def run_moves(controller_site: str, moves: int, rtt_ms: float, choice: object, workdir: Path,
              hold_s: float = 0.3) -> list[dict]:
    """``moves`` moves of the VM host; one row per move with its convergence figures."""
    spec = parse_topology({"name": "ctlbench", "wan": [{"rtt_ms": rtt_ms, "bw_mbps": 100}],
                           "controller": {"site": controller_site}})
    rows: list[dict] = []
    with controlled_network(spec, choice, workdir, hold_s=hold_s) as net:
        site_of = {int(s.dpid, 16): s.site for s in net.plan.switches}
        events = net.control.events
        vm = net.host(VM)
        mac = vm.defaultIntf().MAC()
        vm.cmd("ping -c 1 -W 2 10.2.2.1")              # learnt at dc1 before the first move
        for i in range(moves):
            to_site = "dc2" if i % 2 == 0 else "dc1"
            iface = move_host(net, VM, f"{to_site}s1")
            out = vm.cmd(f"{sys.executable} -m migrator.guest.announce --iface {iface} --mac {mac} "
                         "--rounds 1 --first-now")
            if not any((m := parse_line(line)) is not None and m.kind is Kind.RARP
                       for line in out.splitlines()):
                raise RuntimeError(f"announce failed: {out}")
            ev = _wait_moves(events, mac, i + 1, timeout_s=5 + 4 * rtt_ms / 1e3)[i]
            dest = [ms for d, ms in ev["barrier_ms"].items() if site_of[int(d)] == to_site]
            rows.append({"move": i + 1, "to_site": to_site, "controller_site": controller_site,
                         "dest_is_controller_site": to_site == controller_site,
                         "dest_site_ms": max(dest), "all_ms": ev["flow_convergence_ms"],
                         "switches_ms": ev["barrier_ms"], "n_flowmods": ev["n_flowmods"]})
            # The flapping guard holds a MAC that moves again within hold_s: wait it out.
            time.sleep(hold_s * 1.5)
    return rows


def summarize(rows: list[dict], control_rtt_ms: float) -> list[dict]:
    out = []
    for local in (True, False):
        group = [r for r in rows if r["dest_is_controller_site"] == local]
        if not group:
            continue
        dest = np.array([r["dest_site_ms"] for r in group])
        every = np.array([r["all_ms"] for r in group])
        target = LOCAL_TARGET_MS + (0.0 if local else control_rtt_ms)
        out.append({"controller": "at destination" if local else "at the other site",
                    "moves": len(group), "target_ms": target,
                    "dest_site_median_ms": float(np.median(dest)),
                    "dest_site_p95_ms": float(np.percentile(dest, 95)),
                    "all_median_ms": float(np.median(every)),
                    "all_p95_ms": float(np.percentile(every, 95))})
    return out


def rate_rows(repeats: int = 3) -> list[dict]:
    rows = []
    for kind in ("learn", "move", "forward"):
        runs = [measure(kind) for _ in range(repeats)]
        rates = sorted(r["per_s"] for r in runs)
        rows.append({**runs[0], "per_s": rates[len(rates) // 2], "per_s_all": rates})
    return rows


def rate_verdict(row: dict) -> Verdict:
    return at_least(f"packet-ins per s ({row['kind']}, median of 3)", row["per_s"], RATE_TARGET,
                    fmt=".0f")


def convergence_verdict(c: dict) -> Verdict:
    return at_most(f"convergence at the destination site, median, controller {c['controller']}",
                   c["dest_site_median_ms"], c["target_ms"], fmt=".1f", unit=" ms")


def tables(rate: list[dict], conv: list[dict], rtt_ms: float) -> str:
    t1 = render(("packet-in", "per s (median of 3)", "OpenFlow msgs each", "target"),
                [(r["kind"], f"{r['per_s']:.0f}", f"{r['openflow_msgs_per_packet_in']:.0f}",
                  rate_verdict(r).cell()) for r in rate])
    t2 = render(("controller", "moves", "dest site median / p95 ms", "all switches median / "
                 "p95 ms", "target (dest site)"),
                [(c["controller"], c["moves"],
                  f"{c['dest_site_median_ms']:.1f} / {c['dest_site_p95_ms']:.1f}",
                  f"{c['all_median_ms']:.1f} / {c['all_p95_ms']:.1f}",
                  convergence_verdict(c).cell()) for c in conv])
    return f"{t1}\n\nmoves at WAN RTT = control RTT = {rtt_ms:g} ms\n{t2}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.bench.controller", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--moves", type=int, default=40, help="moves per controller placement")
    p.add_argument("--rtt", type=float, default=150.0, help="WAN RTT in ms")
    p.add_argument("--rate-only", action="store_true", help="packet-in rate only (no root)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.moves < 2:
        p.error(f"--moves: got {args.moves}, expected at least 2")
    facts, choice = (None, None) if args.rate_only else \
        testbed("the moves build networks (--rate-only does not)")
    bench = Bench("controller", "Controller benchmark", argv)
    rate = rate_rows()
    for row in rate:
        bench.add({"part": "rate", **row}, rate_verdict(row))
    conv: list[dict] = []
    if not args.rate_only:
        bench.meta.update(as_record(facts, choice))
        moves: list[dict] = []
        for site in ("dc1", "dc2"):
            log.info("moves with the controller at %s", site)
            for row in run_moves(site, args.moves, args.rtt, choice,
                                 bench.run_dir(f"controller_at_{site}")):
                moves.append(row)
                bench.add({"part": "move", **row})
        conv = summarize(moves, args.rtt)
        bench.judge(*[convergence_verdict(c) for c in conv])
        bench.meta["convergence"] = conv
    return bench.finish(tables(rate, conv, args.rtt))


if __name__ == "__main__":
    sys.exit(entry(main))
