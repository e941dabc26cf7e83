"""A fleet experiment on a started network: every VM up with its clients, the warm-up, then
the events fire, the placement decides, the scheduler starts migrations under the limits, and
they run side by side over the shared WAN until every event fired and every move ended; the
cool-down, then each VM's clients read back what they wrote.

What happens is written as it happens: ``decisions.jsonl`` (each decision with its
candidates), ``fleet/hosts.csv`` (the placement at the start and after every move) and each
migration's folder; ``fleet/wan.csv`` when the WAN sampler stops. ``experiments.fleet.collect``
turns them into metrics.
"""

from __future__ import annotations

import json
import logging
import queue
import sys
import time
from pathlib import Path
from typing import Any

from experiments.fleet import drs
from experiments.fleet.clock import EventClock
from experiments.fleet.costs import MoveModel
from experiments.fleet.member import FleetMember
from experiments.fleet.migration import MIGRATION_PORT_BASE, FleetMigration
from experiments.fleet.placement import Placement
from experiments.fleet.scheduler import Limits, Scheduler, default_limits
from experiments.fleet.spec import Event
from experiments.fleet.types import HostInfo, Move, VmInfo
from experiments.fleet.wansample import WanSampler
from experiments.procs import Proc, wait_for
from experiments.vmrun import RunError, copy_controller_events
from ground.protocol import Kind

log = logging.getLogger("wanmig.fleet")

PY = sys.executable
MIB = 1 << 20


class FleetRun:
    """The runner's ``Run`` for an experiment with ``vms:``."""

    faults = None            # faults need one VM (refused by the spec)
    vm_mac = ""

    def __init__(self, spec: Any, out: Path, net: Any) -> None:
        assert spec.fleet is not None
        self.spec, self.fleet, self.out, self.net = spec, spec.fleet, out, net
        self.lines: queue.Queue = queue.Queue()
        self.procs: dict[str, Proc] = {}
        self.members = {fv.name: FleetMember(fv, i, out, net)
                        for i, fv in enumerate(self.fleet.vms)}
        self.states = {h: "normal" for h in self.fleet.hosts}
        self.planned = {fv.name: fv.host for fv in self.fleet.vms}   # after queued moves
        self.path: dict = {}
        self.links: list[dict] = []          # the preflight's records (set by the runner)
        self.times: dict[str, float] = {}
        self.migrations: list[FleetMigration] = []
        self.queued: dict[int, tuple[Move, float]] = {}   # seq -> (move, time() queued)
        self.not_started: list[tuple[Move, float, str]] = []
        self.decisions: list[dict] = []
        self.host_rows: list[dict] = []
        self.rebalance_predicted: int | None = None
        self.sampler: WanSampler | None = None
        self._seq = 0
        (out / "fleet").mkdir(parents=True, exist_ok=True)

    # -- pieces ---------------------------------------------------------------------------------
    def _start(self, name: str, node: Any, argv: list[str], ready: Kind | None,
               logdir: Path, stdin: bool = False) -> Proc:
        logdir.mkdir(parents=True, exist_ok=True)
        self.procs[name] = Proc(name, node, [PY, *argv], logdir, self.lines, stdin=stdin)
        if ready is not None:
            wait_for(self.lines, self.procs, name, ready, 60)
        return self.procs[name]

    def limits(self) -> Limits:
        e = self.fleet.execution
        bws = [w.bw_mbps for w in self.spec.topology.wan]
        nic = None if any(b is None for b in bws) else min(bws, default=None)
        d = default_limits(nic if nic is not None else 1e9)
        return Limits(overall=e.max_concurrent, per_host=e.per_host or d.per_host,
                      per_link=e.per_link or d.per_link)

    def host_infos(self) -> dict[str, HostInfo]:
        return {n: HostInfo(name=h.name, site=h.site, memory_bytes=h.memory_bytes, cpu=h.cpu,
                            state=self.states[n]) for n, h in self.fleet.hosts.items()}

    def vm_infos(self, where: dict[str, str]) -> dict[str, VmInfo]:
        return {fv.name: VmInfo(name=fv.name, host=where[fv.name],
                                memory_bytes=fv.vm.memory_bytes, cpu=fv.cpu,
                                dirty_rate_Bps=fv.vm.workload.dirty_rate_mibps * MIB)
                for fv in self.fleet.vms}

    def where(self) -> dict[str, str]:
        return {n: m.host for n, m in self.members.items()}

    def snapshot(self) -> None:
        """The placement as it is now, into hosts.csv's rows."""
        hosts, vms = self.host_infos(), self.vm_infos(self.where())
        loads = drs.loads(hosts, vms.values())
        t = time.time() - self.times.get("fleet_start_t", time.time())
        for name, h in hosts.items():
            on = [v for v in vms.values() if v.host == name]
            self.host_rows.append({"t": round(t, 3), "host": name, "site": h.site,
                                   "state": h.state, "load": round(loads[name], 6),
                                   "memory_used_bytes": sum(v.memory_bytes for v in on),
                                   "vms": " ".join(v.name for v in on)})

    def _decide(self, record: dict, when: float) -> None:
        record = {"t": round(when, 3), **record}
        self.decisions.append(record)
        with open(self.out / "decisions.jsonl", "a") as f:
            f.write(json.dumps(record, default=str) + "\n")

    # -- events ---------------------------------------------------------------------------------
    def fire(self, event: Event, when: float) -> None:
        """The placement's decisions for ``event`` (on the placement as planned), queued."""
        model = MoveModel(self.spec, self.links)
        if event.action in ("evacuate", "degrade"):
            assert event.host is not None
            self.states[event.host] = "maintenance" if event.action == "evacuate" \
                else "degraded"
        placement = Placement(self.host_infos(), self.vm_infos(self.planned),
                              self.fleet.drs.rules, model.cost, self.fleet.drs.cost_weight)
        if event.action == "migrate":
            assert event.vm is not None
            records = [placement.choose(event.vm, "scheduled") if event.to == "auto"
                       else placement.to_named(event.vm, str(event.to), "scheduled")]
        elif event.action in ("evacuate", "degrade"):
            records = placement.evacuate(str(event.host), reason="evacuate"
                                         if event.action == "evacuate" else "degraded")
        else:
            records = placement.rebalance(self.fleet.drs.threshold)
            summary = [r for r in records if r.get("action") == "rebalance-summary"]
            if summary:
                self.rebalance_predicted = (self.rebalance_predicted or 0) + \
                    int(summary[-1].get("moves", 0))
        for r in records:
            self._decide({"event": event.action, **r}, when)
            if r.get("vm") and r.get("chosen"):
                self._queue(r["vm"], r["source"], r["chosen"], r.get("reason") or event.action,
                            model)

    def _queue(self, vm: str, source: str, destination: str, reason: str,
               model: MoveModel) -> None:
        fv = self.fleet.vm(vm)
        info = self.vm_infos(self.planned)[vm]
        self._seq += 1
        move = Move(vm=vm, source=source, destination=destination, reason=reason,
                    cost=model.cost(info, source, destination), memory_bytes=fv.vm.memory_bytes,
                    dirty_rate_Bps=info.dirty_rate_Bps, seq=self._seq)
        self.planned[vm] = destination
        self.queued[move.seq] = (move, time.time())
        self.scheduler.submit(move)
        log.info("queued %s: %s -> %s (%s), predicted %.1f s", vm, source, destination, reason,
                 move.cost.time_s)

    # -- the run --------------------------------------------------------------------------------
    def execute(self) -> None:
        (self.out / "logs").mkdir(exist_ok=True)
        for m in self.members.values():
            m.start(self.spec, self._start)
            log.info("%s (%s, %s) at %s", m.name, m.ip, m.mac, m.host)
        self.scheduler = Scheduler(self.limits(), self.fleet.execution.order,
                                   MoveModel(self.spec, self.links).path)
        log.info("warm-up %.0f s: %d VMs, clients at %s", self.spec.schedule.warmup_s,
                 len(self.members), self.spec.clients.host)
        time.sleep(self.spec.schedule.warmup_s)      # the experiment's warm-up, as asked
        self.sampler = WanSampler(self.net).start()
        self.times["fleet_start_t"] = time.time()
        self.snapshot()
        self._loop()
        self.times["fleet_end_t"] = time.time()
        self.snapshot()
        log.info("cool-down %.0f s", self.spec.schedule.cooldown_s)
        time.sleep(self.spec.schedule.cooldown_s)    # the experiment's cool-down, as asked
        for m in self.members.values():
            m.ask_readback()
        for m in self.members.values():
            if m.clients is not None:
                try:
                    m.clients.wait(120)
                except Exception as exc:  # noqa: BLE001 - its stop() below ends it
                    log.warning("%s: %s", m.name, exc)

    def _loop(self) -> None:
        clock = EventClock(self.fleet.events, self.fleet.execution.duration_s)
        t0 = self.times["fleet_start_t"]
        running: dict[str, tuple[FleetMigration, str]] = {}
        budget = (self.fleet.execution.duration_s or 0) + \
            len(self.fleet.vms) * (self.spec.policy.time_budget_s + 180)
        while True:
            now = time.time() - t0
            for when, event in clock.due(now):
                self.fire(event, when)
            for move in self.scheduler.startable():
                self._launch(move, running)
            live = {id(mig) for mig, _ in running.values()}
            if clock.done and self.scheduler.idle and not live:
                return
            if now > budget:
                raise RunError(f"the fleet still migrating after {budget:.0f} s")
            try:
                who, line = self.lines.get(timeout=0.2)
            except queue.Empty:
                who = None
            if who in running:
                mig, role = running[who]
                mig.on_line(role, line)
            for mig in {id(m): m for m, _ in running.values()}.values():
                mig.tick()
                if mig.done:
                    self._ended(mig, running)

    def _launch(self, move: Move, running: dict) -> None:
        m = self.members[move.vm]
        if m.host != move.source:      # an earlier move of this VM failed: it is elsewhere
            why = f"not started: {move.vm} runs on {m.host}, not {move.source}"
            self.not_started.append((move, time.time(), why))
            self.scheduler.finished(move)
            self.planned[move.vm] = m.host
            log.warning("%s", why)
            return
        number = len([g for g in self.migrations if g.member is m]) + 1
        mig = FleetMigration(m, move, number, MIGRATION_PORT_BASE + len(self.migrations),
                             self.out, self.spec, self._path_of(move))
        self.migrations.append(mig)
        for role in ("dst", "src", "ann"):
            running[mig.proc_name(role)] = (mig, role)
        log.info("migrating %s: %s -> %s (%s)", move.vm, move.source, move.destination,
                 move.reason)
        try:
            mig.start(self._start)
        except Exception as exc:  # noqa: BLE001 - one move failing leaves the others going
            log.error("%s: could not start its migration: %s", move.vm, exc)
            mig.error = f"could not start: {exc}"
            mig.ended.update({"src": time.monotonic(), "dst": time.monotonic()})

    def _path_of(self, move: Move) -> dict:
        from experiments.metrics import path_figures

        return path_figures(self.links, list(MoveModel(self.spec, self.links).path(
            move.source, move.destination)))

    def _ended(self, mig: FleetMigration, running: dict) -> None:
        mig.finish()
        for role in ("dst", "src", "ann"):
            running.pop(mig.proc_name(role), None)
        self.scheduler.finished(mig.move)
        if not mig.completed:
            self.planned[mig.move.vm] = mig.member.host
            log.error("%s: migration %s -> %s %s; it stays at %s", mig.move.vm,
                      mig.move.source, mig.move.destination, mig.error, mig.member.host)
        else:
            log.info("%s now at %s (%.1f s)", mig.move.vm, mig.move.destination,
                     mig.result.get("total_time_s") or 0.0)
        self.snapshot()

    def stop(self) -> None:
        if self.sampler is not None:
            self.sampler.stop()
        for proc in reversed(list(self.procs.values())):
            proc.stop(timeout_s=5)
        for m in self.members.values():
            m.stop()
        copy_controller_events(self.net, self.out)
