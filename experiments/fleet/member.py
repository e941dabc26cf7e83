"""One VM of a fleet on the testbed: a Mininet host with its own MAC and IP plugged in next to
the hypervisor it starts on, its guest process, its clients (UDP probes and key-value writes
from the experiment's client host into ``vms/<name>/``), and where it runs now: the hypervisor,
the site and the tag of the memory image it runs on (``src``, then ``m1``, ``m2``... one per
move that completed)."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import Any

from experiments.fleet.spec import FleetVm
from experiments.procs import Proc
from ground.protocol import Kind

log = logging.getLogger("wanmig.fleet")

VM_ROLE = 9               # the address plan's role of VMs: 10.<site>.9.<n>


class FleetMember:
    """``start`` brings the VM up; the runner moves it (``moved``) and stops it."""

    def __init__(self, fv: FleetVm, index: int, out: Path, net: Any) -> None:
        from topologies.plan import address

        self.fv, self.index, self.net = fv, index, net
        self.name = fv.name
        self.image = f"{fv.name}{os.getpid() % 10000}"     # the guest's images' name
        self.dir = out / "vms" / fv.name
        self.host, self.site, self.tag = fv.host, fv.site, "src"
        self.moves = 0                          # moves that completed
        self.ip, self.mac = address(net.plan.site_index[fv.site], VM_ROLE, index + 1)
        self.node: Any = None
        self.guest: Any = None
        self.clients: Proc | None = None

    def switch_of(self, hypervisor: str) -> str:
        return next(h.switch for h in self.net.plan.hosts if h.name == hypervisor)

    def start(self, spec: Any, start_proc: Any) -> None:
        """The VM's host, its guest (READY), then its clients (READY via ``start_proc``)."""
        from migrator.guest.vm import start_guest

        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        self.node = self.net.add_host(self.name, self.ip, self.mac, self.switch_of(self.host))
        vm = self.fv.vm
        with open(self.dir / "logs" / "guest.log", "w") as err:
            self.guest = start_guest(self.image, vm.memory_bytes // 4096, vm.workload, vm.seed,
                                     self.site, popen=self.node.popen, stderr=err)
        c = spec.clients
        self.clients = start_proc(f"{self.name}-clients", self.net.host(c.host), [
            "-m", "experiments.clients", "--target", self.ip, "--duration", "86400",
            "--probe-ms", str(c.probe_ms), "--kv-ops", str(c.kv_ops), "--kv-rate",
            str(c.kv_rate_hz), "--value-bytes", str(c.kv_value_bytes), "--seed",
            str(spec.seed + 1000 * (self.index + 1)), "--out", str(self.dir)],
            Kind.READY, self.dir / "logs")

    def moved(self, destination: str, site: str, tag: str) -> None:
        self.host, self.site, self.tag = destination, site, tag
        self.moves += 1

    def ask_readback(self) -> None:
        """SIGTERM: the clients stop probing and read back every key they wrote (a second
        SIGTERM would cut that short: ``Proc.stop`` signals only one still running)."""
        if self.clients is not None and self.clients.proc.poll() is None:
            self.clients.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        if self.clients is not None:
            self.clients.stop(timeout_s=90)
        if self.guest is not None:
            self.guest.stop()
            self.guest = None
        from migrator.guest.image import leftover_segments, remove_segments

        remove_segments([n for n in leftover_segments() if n.startswith(f"wanmig-{self.image}-")])
