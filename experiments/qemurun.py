"""One run with a QEMU guest (``vm.kind: qemu``): the same experiment, a real hypervisor.

What differs from the emulated VM (``experiments.vmrun.Run``), step by step:

3. the VM: a QEMU guest (``migrator.qemu``: the image ``make setup`` built, the accelerator as
   probed) started in the source hypervisor's namespace, its NIC a tap with the VM's MAC plugged
   into the source site's switch (``topologies.taps``); the destination QEMU waits in the
   destination hypervisor's namespace with ``-incoming defer -S``, its own tap already on the
   destination site's switch, as a destination host's vSwitch port would be. Each QEMU's
   second serial port tells the guest agent which site it runs at (what the UDP echo reports);
5. the migration: ``wanmig qemu-migrate`` drives QEMU's own live migration over QMP (from the
   root namespace: the monitors are sockets in the file system) and says the same protocol
   lines as the emulated migrators. The stream runs between the two hypervisors across the WAN;
   no cable moves: once the destination runs, QEMU's own announcement (``announce_self``, RARP
   at its default timing) makes the controller move the VM's flows.

The clients, the warm-up and cool-down, the preflight and the metrics are the emulated run's.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from experiments.procs import ProcError, follow
from experiments.progress import Progress
from experiments.vmrun import MIGRATION_PORT, PY, VM_NAME, VM_ROLE, Run, RunError
from ground.protocol import Kind, Message, format_line
from ground.records import state_dir

log = logging.getLogger("wanmig.run")

BOOT_TIMEOUT_S = 180.0      # a guest under TCG on a busy machine boots in 10-15 s


class RootNode:
    """The root namespace, as a Mininet node is asked for processes (``popen``)."""

    name = "root"

    @staticmethod
    def popen(argv: list[str], **kwargs: Any) -> subprocess.Popen:
        return subprocess.Popen(argv, **kwargs)


@dataclasses.dataclass
class Hypervisor:
    """One side: the hypervisor host it runs on, its site, its QEMU and the QEMU's tap."""

    tag: str
    host: str
    site: str
    guest: Any = None            # migrator.qemu.boot.QemuGuest once started
    tap: Any = None              # topologies.taps.Tap


class QemuRun(Run):
    """``Run`` with a QEMU guest: steps 3 and 5 replaced, everything else inherited."""

    def __init__(self, spec: Any, out: Path, net: Any) -> None:
        super().__init__(spec, out, net)
        # Monitor and serial sockets (short paths: a socket's path has at most 107 bytes);
        # ``wanmig clean`` removes the folder of an owner that is gone.
        self.sockdir = state_dir() / f"qemu-{os.getpid()}"
        self.sides: dict[str, Hypervisor] = {}
        self.accel: Any = None
        self.guest_image: Any = None
        self.boot_s: float | None = None
        self.pings: dict[str, dict] = {}

    # -- the two QEMUs --------------------------------------------------------------------------
    def _machine(self) -> Any:
        from migrator.qemu.launch import Machine, buffer_mib, kernel_cmdline
        from topologies.plan import PREFIX_LEN

        vm = self.spec.vm
        mib = vm.memory_bytes >> 20
        append = kernel_cmdline(vm.workload, vm.seed, self.vm_ip, PREFIX_LEN, buffer_mib(mib))
        return Machine(memory_mib=mib, vcpus=vm.vcpus, accel=self.accel.name,
                       kernel=self.guest_image.kernel, initrd=self.guest_image.initrd,
                       append=append, mac=self.vm_mac)

    def _start_qemu(self, hv: Hypervisor, machine: Any, incoming: bool) -> None:
        from migrator.qemu.boot import QemuGuest
        from migrator.qemu.launch import Side, TapNic, ram_path
        from topologies.taps import plug_tap, release

        switch = next(h.switch for h in self.net.plan.hosts if h.name == hv.host)
        hv.tap = plug_tap(self.net, f"qt{self.image}{hv.tag}"[:15], switch)
        side = Side(ram=ram_path(self.image, hv.tag), nic=TapNic(fd=hv.tap.fd),
                    qmp=self.sockdir / f"{hv.tag}.qmp", location=self.sockdir / f"{hv.tag}.loc",
                    console=self.out / "logs" / f"qemu-{hv.tag}-console.log",
                    incoming=incoming, paused=incoming)
        try:
            hv.guest = QemuGuest(machine, side, popen=self.net.host(hv.host).popen,
                                 pass_fds=(hv.tap.fd,))
        finally:
            release(hv.tap)       # QEMU holds the tap now; it goes when QEMU exits
        if self.net.registry is not None:
            self.net.registry.add_processes([hv.guest.proc.pid])
        log.info("QEMU %s (pid %d, %s) at %s%s", hv.tag, hv.guest.proc.pid, self.accel.name,
                 hv.host, ", waiting for the incoming migration" if incoming else "")

    def _start_guest_qemu(self) -> None:
        from migrator.qemu.accel import probe_accel
        from migrator.qemu.image import find_image
        from topologies.plan import address

        self.guest_image = find_image()
        if self.guest_image is None:
            raise RunError("no QEMU guest image is built: run `sudo make setup` "
                           "(python -m migrator.qemu.image build)")
        self.accel = probe_accel(self.guest_image)
        p = self.spec.placement
        self.vm_ip, self.vm_mac = address(self.net.plan.site_index[p.source_site], VM_ROLE, 1)
        self.sockdir.mkdir(parents=True, exist_ok=True)
        machine = self._machine()
        self.sides = {"src": Hypervisor("src", p.source, p.source_site),
                      "dst": Hypervisor("dst", p.destination, p.destination_site)}
        src = self.sides["src"]
        self._start_qemu(src, machine, incoming=False)
        self.boot_s = src.guest.wait_ready(BOOT_TIMEOUT_S)
        if self.boot_s is None:
            raise ProcError(f"the QEMU guest was not ready within {BOOT_TIMEOUT_S:.0f} s: "
                            f"{src.guest.why_not_ready()}")
        src.guest.set_location(src.site)
        self._start_qemu(self.sides["dst"], machine, incoming=True)
        log.info("guest %s (%s, %s) ready after %.1f s of boot (%s)", VM_NAME, self.vm_ip,
                 self.vm_mac, self.boot_s, self.accel.name)

    # -- step 5 ---------------------------------------------------------------------------------
    def _migrate(self) -> None:
        p, plan = self.spec.placement, self.net.plan
        dst_ip = next(h.ip for h in plan.hosts if h.name == p.destination)
        policy = self.out / "logs" / "policy.yaml"
        policy.write_text(yaml.safe_dump(dataclasses.asdict(self.spec.policy)))
        goodput = self.path.get("goodput_mbps")
        budget = self.spec.policy.time_budget_s + 120
        src, dst = self.sides["src"].guest.side, self.sides["dst"].guest.side
        uri = f"tcp:{dst_ip}:{MIGRATION_PORT}"
        self._start("migrate", RootNode(), [
            PY, "-m", "wanmig.cli", "qemu-migrate", "--src-qmp", str(src.qmp), "--dst-qmp",
            str(dst.qmp), "--uri", uri, "--listen-uri", uri, "--src-ram", str(src.ram),
            "--dst-ram", str(dst.ram), "--policy-file", str(policy), "--rtt-hint-ms",
            str(self.path.get("rtt_ms_measured") or self.path.get("rtt_ms_configured") or 0.0),
            *(["--link-mbps", str(goodput)] if goodput else []), "--gate", "--progress",
            "--out", str(self.out / "migration")], stdin=True)
        handlers = {Kind.STARTED: self._on_started, Kind.PAUSED: self._on_paused,
                    Kind.PROGRESS: self._on_progress, Kind.VERIFIED: self._on_verified_qemu,
                    Kind.RESUMED: self._on_resumed_qemu}
        with Progress(total_bytes=self.spec.vm.memory_bytes) as self.bar:
            follow(self.lines, {"migrate"}, handlers, budget, "the QEMU migration")
        rc = self.procs["migrate"].wait(30)
        log.info("qemu-migrate exited %d", rc)

    def _on_verified_qemu(self, msg: Message) -> None:
        """Nothing to re-plug: the destination's tap is on its switch already."""
        self.times["verified_t"] = msg.t
        self.times["network_move_ms"] = 0.0
        try:
            self.procs["migrate"].send(format_line(Kind.GO))
        except OSError as exc:
            log.error("could not say GO to qemu-migrate: %s", exc)

    def _on_resumed_qemu(self, msg: Message) -> None:
        self.times["resumed_t"] = msg.t
        dst = self.sides["dst"]
        try:
            dst.guest.set_location(dst.site)
        except OSError as exc:
            log.error("could not tell the guest at %s where it runs: %s", dst.host, exc)

    def _ping(self, count: int = 5) -> dict:
        """ICMP echo from the client host to the VM (the guest's kernel answers): how many
        replies came and the mean RTT, i.e. across the WAN or local."""
        from topologies.measure import ping

        r = ping(self.net.host(self.spec.clients.host), self.vm_ip, count, interval_s=0.2,
                 warmup=0)
        return {"sent": r.sent, "received": r.received,
                "rtt_ms": None if r.received == 0 else r.avg_ms}

    # -- the run --------------------------------------------------------------------------------
    def execute(self) -> None:
        (self.out / "logs").mkdir(exist_ok=True)
        self._start_guest_qemu()
        self._start_clients()
        log.info("warm-up %.0f s: QEMU guest %s (%s) at %s, clients at %s",
                 self.spec.schedule.warmup_s, VM_NAME, self.vm_ip, self.spec.placement.source,
                 self.spec.clients.host)
        time.sleep(self.spec.schedule.warmup_s)      # the experiment's warm-up, as asked
        self.pings["before"] = self._ping()
        log.info("migrating %s -> %s (QEMU)", self.spec.placement.source,
                 self.spec.placement.destination)
        self._migrate()
        log.info("cool-down %.0f s", self.spec.schedule.cooldown_s)
        t0 = time.monotonic()
        self.pings["after"] = self._ping()
        # the experiment's cool-down, as asked (the pings are part of it)
        time.sleep(max(0.0, self.spec.schedule.cooldown_s - (time.monotonic() - t0)))
        self.procs["clients"].stop(timeout_s=90)

    def stop(self) -> None:
        from topologies.taps import unplug_tap

        for proc in reversed(list(self.procs.values())):
            proc.stop(timeout_s=5)
        for hv in self.sides.values():
            if hv.guest is not None:
                hv.guest.close()          # QEMU killed, its RAM file and sockets removed
            if hv.tap is not None:
                unplug_tap(self.net, hv.tap)
        shutil.rmtree(self.sockdir, ignore_errors=True)
        self.copy_controller_events()

    def extra_metrics(self) -> dict:
        """What a QEMU run records beside the common keys."""
        from migrator.qemu.accel import qemu_version

        img = self.guest_image
        try:
            result = json.loads((self.out / "migration" / "result.json").read_text())
        except (OSError, ValueError):
            result = {}
        qemu = result.get("qemu") or {}
        figures = qemu.get("figures") or {}
        differing = qemu.get("ram_differing") or {}
        return {"qemu_accel": getattr(self.accel, "name", None),
                "qemu_accel_reason": getattr(self.accel, "reason", None),
                "qemu_boot_s": self.boot_s,
                "qemu_image_digest": getattr(img, "digest", None),
                "qemu_kernel": getattr(img, "kernel_version", None),
                "qemu_version": qemu_version(),
                "qemu_total_time_ms": figures.get("total-time"),
                "qemu_downtime_ms": figures.get("downtime"),
                "qemu_setup_time_ms": figures.get("setup-time"),
                "qemu_expected_downtime_ms": figures.get("expected-downtime"),
                "qemu_dirty_syncs": figures.get("dirty-sync-count"),
                "qemu_throttle_pct": figures.get("cpu-throttle-percentage"),
                "qemu_ram_pages_differing": differing.get("pages", 0 if result.get(
                    "integrity_ok") else None),
                "ping_before": self.pings.get("before"), "ping_after": self.pings.get("after")}
