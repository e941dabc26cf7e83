"""The emulated VM's run: steps 3-6 of ``experiments.runner`` on a started network (the VM as
a Mininet host with its guest process, the RARP announcer, the clients, the two migrators and
the switchover), and what every kind of run shares (the VM's name and address role, the
migration port, ``RunError``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import secrets
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from experiments.diskrun import DiskRun
from experiments.faults.run import FaultRun
from experiments.procs import Proc, follow, wait_for
from experiments.progress import Progress
from experiments.spec import ExperimentSpec
from ground.errors import NotAsAskedError
from ground.protocol import Kind, Message, format_line

log = logging.getLogger("wanmig.run")

VM_NAME = "vm1"           # the Mininet host
VM_ROLE = 9               # address plan role of VMs: 10.<site>.9.<n>
MIGRATION_PORT = 7700
DEST_GRACE_S = 15.0       # a destination running this long after the source ended is stopped
PY = sys.executable


class RunError(NotAsAskedError):
    """The run could not go on (preflight failed, a step timed out); the message says which."""


class Run:
    """One run's moving parts; ``execute`` does steps 3-6 on a started network."""

    def __init__(self, spec: ExperimentSpec, out: Path, net: Any) -> None:
        self.spec, self.out, self.net = spec, out, net
        self.lines: queue.Queue = queue.Queue()
        self.procs: dict[str, Proc] = {}
        self.guest: Any = None
        self.image = f"r{os.getpid() % 100000}"
        self.times: dict[str, float] = {}
        self.vm_mac = ""
        self.path: dict = {}                  # the migration's path as the preflight measured it
        self.prepared: Any = None             # the VM's cable at the destination, not yet up
        self.iface = ""                       # the VM's interface once moved
        self.bar: Progress | None = None
        self.faults = FaultRun(self, VM_NAME) if spec.faults else None   # experiments/faults
        self.disk = DiskRun(spec, out, net, self.image) if spec.vm.disk is not None else None

    # -- pieces ---------------------------------------------------------------------------------
    def _start(self, name: str, node: Any, argv: list[str], stdin: bool = False) -> Proc:
        self.procs[name] = Proc(name, node, argv, self.out / "logs", self.lines, stdin=stdin)
        return self.procs[name]

    def _add_vm(self) -> Any:
        from topologies.plan import address

        p = self.spec.placement
        plan = self.net.plan
        src = next(h for h in plan.hosts if h.name == p.source)
        ip, mac = address(plan.site_index[p.source_site], VM_ROLE, 1)
        self.vm_mac, self.vm_ip = mac, ip
        return self.net.add_host(VM_NAME, ip, mac, src.switch)

    def _start_guest(self, vm_host: Any) -> None:
        from migrator.guest.vm import start_guest

        vm = self.spec.vm
        err = open(self.out / "logs" / "guest.log", "w")  # noqa: SIM115 - the guest keeps it
        try:
            disk = self.disk.prepare() if self.disk is not None else None
            self.guest = start_guest(self.image, vm.memory_bytes // 4096, vm.workload, vm.seed,
                                     self.spec.placement.source_site, popen=vm_host.popen,
                                     stderr=err, disk=disk)
        finally:
            err.close()

    def _start_clients(self) -> None:
        c = self.spec.clients
        argv = [PY, "-m", "experiments.clients", "--target", self.vm_ip, "--duration", "86400",
                "--probe-ms", str(c.probe_ms), "--kv-ops", str(c.kv_ops), "--kv-rate",
                str(c.kv_rate_hz), "--value-bytes", str(c.kv_value_bytes), "--seed",
                str(self.spec.seed), "--out", str(self.out)]
        self._start("clients", self.net.host(c.host), argv)
        wait_for(self.lines, self.procs, "clients", Kind.READY, 30)

    def _migrate(self) -> None:
        from topologies.mobility import prepare_move

        p, plan = self.spec.placement, self.net.plan
        dst = next(h for h in plan.hosts if h.name == p.destination)
        key = self.out / "logs" / "migration.key"
        key.write_text(secrets.token_hex(32) + "\n")
        key.chmod(0o600)
        policy = self.out / "logs" / "policy.yaml"
        policy.write_text(yaml.safe_dump(dataclasses.asdict(self.spec.policy)))
        rtt = self.path.get("rtt_ms_measured") or self.path.get("rtt_ms_configured") or 0.0
        goodput = self.path.get("goodput_mbps")
        budget = self.spec.policy.time_budget_s + 120
        # The VM's NIC at the destination is plugged in (down) before the migration starts, as
        # a destination hypervisor's vSwitch port would be; switchover only brings it up.
        self.prepared = prepare_move(self.net, VM_NAME, dst.switch)
        self._start("dest", self.net.host(p.destination), [
            PY, "-m", "wanmig.cli", "migrate-dest", "--listen", f"{dst.ip}:{MIGRATION_PORT}",
            "--vm", self.image, "--tag", "dst", "--source-tag", "src", "--location",
            p.destination_site, "--key-file", str(key), "--timeout-s", str(budget), "--gate",
            "--json", *(self.disk.dest_args() if self.disk is not None else [])], stdin=True)
        wait_for(self.lines, self.procs, "dest", Kind.LISTENING, 60)
        self._start("source", self.net.host(p.source), [
            PY, "-m", "wanmig.cli", "migrate-source", "--connect", f"{dst.ip}:{MIGRATION_PORT}",
            "--vm", self.image, "--tag", "src", "--key-file", str(key), "--rtt-hint-ms",
            str(rtt), *(["--bw-hint-mbps", str(goodput)] if goodput else []),
            "--policy-file", str(policy), "--timeout-s", "60", "--progress", "--out",
            str(self.out / "migration"),
            *(self.disk.source_args() if self.disk is not None else [])])
        handlers = {Kind.STARTED: self._on_started, Kind.PAUSED: self._on_paused,
                    Kind.PROGRESS: self._on_progress, Kind.VERIFIED: self._on_verified,
                    Kind.RESUMED: self._on_resumed}

        def grace(ended: dict[str, float]) -> None:
            if "dest" not in ended and time.monotonic() - ended.get("source", 1e300) \
                    > DEST_GRACE_S:     # nothing will come: do not wait for its timeout
                log.warning("the destination migrator still runs %.0f s after the source "
                            "ended: stopping it", DEST_GRACE_S)
                self.procs["dest"].stop()

        disk_bytes = self.spec.vm.disk.allocated_bytes if self.spec.vm.disk is not None else 0
        with Progress(total_bytes=self.spec.vm.memory_bytes + disk_bytes) as self.bar:
            follow(self.lines, {"source", "dest"}, handlers, budget, "the migration",
                   on_message=self.faults.on_message if self.faults is not None else None,
                   on_tick=grace)
        for name in ("source", "dest"):
            rc = self.procs[name].wait(30)
            log.info("%s exited %d", name, rc)

    # -- what the migrator says (ground.protocol), one handler per kind -------------------------
    def _on_started(self, msg: Message) -> None:
        self.times["migration_start_t"] = msg.t

    def _on_paused(self, msg: Message) -> None:
        self.times["paused_t"] = msg.t

    def _on_progress(self, msg: Message) -> None:
        r = msg.fields
        # The engine's clock starts with round 0 (after connecting and, for the adaptive
        # policy, measuring the codecs): rounds.csv is relative to that.
        self.times.setdefault("rounds_start_t", msg.t - r["duration_s"])
        left = r["dirty_rate_Bps"] * r["duration_s"]          # the next round's pages
        assert self.bar is not None
        self.bar.update(r["phase"], r["round"], left, r["goodput_Bps"], r["eta_s"],
                        r["expected_downtime_s"] * 1e3)

    def _on_verified(self, msg: Message) -> None:
        """The image is verified at the destination: the VM's cable goes to the destination
        switch, then GO resumes the guest there."""
        from topologies.mobility import complete_move

        self.times["verified_t"] = msg.t
        t0 = time.time()
        self.iface = complete_move(self.net, self.prepared)
        self.times["network_move_ms"] = (time.time() - t0) * 1e3
        try:
            self.procs["dest"].send(format_line(Kind.GO))
        except OSError as exc:          # it died after VERIFIED (a fault, a crash)
            log.error("could not say GO to the destination migrator: %s", exc)

    def _on_resumed(self, msg: Message) -> None:
        """The guest runs at the destination: it announces itself; the old cable goes."""
        from topologies.mobility import unplug_old

        self.times["resumed_t"] = msg.t
        self.procs["announce"].send(format_line(Kind.GO, iface=self.iface))
        unplug_old(self.net, self.prepared)

    # -- the run --------------------------------------------------------------------------------
    def execute(self) -> None:
        (self.out / "logs").mkdir(exist_ok=True)
        if self.faults is not None:
            self.faults.check()
        vm_host = self._add_vm()
        self._start_guest(vm_host)
        self._start("announce", vm_host, [PY, "-m", "migrator.guest.announce", "--iface", "-",
                                          "--mac", self.vm_mac, "--first-now"], stdin=True)
        wait_for(self.lines, self.procs, "announce", Kind.READY, 60)
        self._start_clients()
        log.info("warm-up %.0f s: VM %s (%s) at %s, clients at %s", self.spec.schedule.warmup_s,
                 VM_NAME, self.vm_ip, self.spec.placement.source, self.spec.clients.host)
        time.sleep(self.spec.schedule.warmup_s)      # the experiment's warm-up, as asked
        log.info("migrating %s -> %s", self.spec.placement.source,
                 self.spec.placement.destination)
        if self.faults is not None:
            self.faults.start()
        self._migrate()
        log.info("cool-down %.0f s", self.spec.schedule.cooldown_s)
        time.sleep(self.spec.schedule.cooldown_s)    # the experiment's cool-down, as asked
        # The clients stop probing on SIGTERM, then read back every key they wrote (a paused
        # VM makes every request wait for its retry budget, hence the longer wait with faults).
        self.procs["clients"].stop(timeout_s=150 if self.faults is not None else 90)

    def stop(self) -> None:
        if self.faults is not None:      # where the VM is, before anything goes; faults undone
            self.faults.finish()
        for proc in reversed(list(self.procs.values())):
            proc.stop(timeout_s=5)
        if self.guest is not None:
            self.guest.stop()
            self.guest = None
        if self.disk is not None:
            self.disk.remove()
        # A destination that died mid-migration leaves the image it was receiving into.
        from migrator.guest.image import leftover_segments, remove_segments

        remove_segments([n for n in leftover_segments() if n.startswith(f"wanmig-{self.image}-")])
        self.copy_controller_events()

    def extra_metrics(self) -> dict:
        """The disk's figures, for a VM with a disk (``experiments.diskrun``)."""
        return self.disk.metrics(self.times) if self.disk is not None else {}

    def copy_controller_events(self) -> None:
        copy_controller_events(self.net, self.out)


def copy_controller_events(net: Any, out: Path) -> None:
    """The controller's event log into the run folder (what the metrics read)."""
    ctl = getattr(net, "control", None)
    if ctl is not None and ctl.events.exists():
        shutil.copy(ctl.events, out / "controller_events.jsonl")
