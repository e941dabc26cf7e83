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
import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from experiments.procs import ProcError, follow
from experiments.progress import Progress
from experiments.vmrun import MIGRATION_PORT, VM_NAME, VM_ROLE, Run, RunError
from ground.protocol import Kind, Message, format_line
from ground.records import state_dir

log = logging.getLogger("wanmig.run")

READY_LINE = "wanmig-agent ready"
PY = sys.executable


class RootNode:
    """The root namespace, as a Mininet node is asked for processes (``popen``)."""

    name = "root"

    @staticmethod
    def popen(argv: list[str], **kwargs: Any) -> subprocess.Popen:
        return subprocess.Popen(argv, **kwargs)


def tell_location(path: Path, site: str, timeout_s: float = 5.0) -> None:
    """Write ``site <name>`` into a QEMU's second serial port (its chardev socket)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        s.connect(str(path))
        s.sendall(f"site {site}\n".encode())


def wait_console(log_path: Path, proc: subprocess.Popen, timeout_s: float) -> float:
    """Seconds until the guest agent's ready line is on the console log; ProcError when QEMU
    exits first or the line does not come in time."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if proc.poll() is not None:
            raise ProcError(f"QEMU exited ({proc.returncode}) before its guest was ready; "
                            f"console: {_tail(log_path)}")
        if log_path.exists() and READY_LINE in log_path.read_text(errors="replace"):
            return time.monotonic() - t0
        time.sleep(0.1)          # polling a file QEMU appends to; bounded by the deadline
    raise ProcError(f"the QEMU guest did not say '{READY_LINE}' within {timeout_s:.0f} s; "
                    f"console: {_tail(log_path)}")


def _tail(path: Path, n: int = 8) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no console log)"


@dataclasses.dataclass
class Hypervisor:
    """One QEMU: where it runs, its tap, its sockets and memory file."""

    tag: str
    host: str
    site: str
    qmp: Path
    loc: Path
    console: Path
    ram: Path
    tap: Any = None
    proc: subprocess.Popen | None = None


class QemuRun(Run):
    """``Run`` with a QEMU guest: steps 3 and 5 replaced, everything else inherited."""

    def __init__(self, spec: Any, out: Path, net: Any) -> None:
        super().__init__(spec, out, net)
        # Monitor and serial sockets (short paths: a socket's path has at most 107 bytes);
        # ``wanmig clean`` removes the folder of an owner that is gone.
        self.sockdir = state_dir() / f"qemu-{os.getpid()}"
        self.qemus: dict[str, Hypervisor] = {}
        self.accel: Any = None
        self.guest_image: Any = None
        self.boot_s: float | None = None
        self.pings: dict[str, dict] = {}

    # -- the two QEMUs --------------------------------------------------------------------------
    def _hypervisor(self, tag: str, host: str, site: str) -> Hypervisor:
        from migrator.guest.image import shm_dir

        return Hypervisor(tag=tag, host=host, site=site, qmp=self.sockdir / f"{tag}.qmp",
                          loc=self.sockdir / f"{tag}.loc",
                          console=self.out / "logs" / f"qemu-{tag}-console.log",
                          ram=shm_dir() / f"wanmig-qemu-{self.image}-{tag}.ram")

    def _start_qemu(self, hv: Hypervisor, incoming: bool) -> None:
        from migrator.qemu.launch import QemuConfig, qemu_argv

        from topologies.taps import plug_tap, release

        plan = self.net.plan
        switch = next(h.switch for h in plan.hosts if h.name == hv.host)
        hv.tap = plug_tap(self.net, f"qt{self.image}{hv.tag}"[:15], switch)
        vm = self.spec.vm
        cfg = QemuConfig(image=self.guest_image, accel=self.accel.name,
                         memory_bytes=vm.memory_bytes, vcpus=vm.vcpus, mac=self.vm_mac,
                         ip=self.vm_ip, prefix=8, workload=vm.workload, seed=vm.seed,
                         ram_path=hv.ram, qmp_path=hv.qmp, loc_path=hv.loc,
                         console_path=hv.console)
        argv = qemu_argv(cfg, tap_fd=hv.tap.fd, incoming=incoming)
        err = open(self.out / "logs" / f"qemu-{hv.tag}.log", "w")  # noqa: SIM115
        try:
            hv.proc = self.net.host(hv.host).popen(argv, pass_fds=(hv.tap.fd,),
                                                    stdin=subprocess.DEVNULL,
                                                    stdout=err, stderr=err)
        finally:
            err.close()
            release(hv.tap)       # QEMU holds the tap now; it goes when QEMU exits
        if self.net.registry is not None:
            self.net.registry.add_processes([hv.proc.pid])
        log.info("QEMU %s (pid %d, %s) at %s%s", hv.tag, hv.proc.pid, self.accel.name,
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
        self.qemus = {"src": self._hypervisor("src", p.source, p.source_site),
                      "dst": self._hypervisor("dst", p.destination, p.destination_site)}
        self._start_qemu(self.qemus["src"], incoming=False)
        src = self.qemus["src"]
        assert src.proc is not None
        self.boot_s = wait_console(src.console, src.proc, 180.0)
        tell_location(src.loc, src.site)
        self._start_qemu(self.qemus["dst"], incoming=True)
        log.info("guest %s (%s, %s) ready after %.1f s of boot", VM_NAME, self.vm_ip,
                 self.vm_mac, self.boot_s)

    # -- step 5 ---------------------------------------------------------------------------------
    def _migrate(self) -> None:
        p, plan = self.spec.placement, self.net.plan
        dst_ip = next(h.ip for h in plan.hosts if h.name == p.destination)
        policy = self.out / "logs" / "policy.yaml"
        policy.write_text(yaml.safe_dump(dataclasses.asdict(self.spec.policy)))
        key = self.out / "logs" / "migration.key"
        key.write_text(secrets.token_hex(32) + "\n")
        key.chmod(0o600)
        goodput = self.path.get("goodput_mbps")
        budget = self.spec.policy.time_budget_s + 120
        src, dst = self.qemus["src"], self.qemus["dst"]
        uri = f"tcp:{dst_ip}:{MIGRATION_PORT}"
        self._start("migrate", RootNode(), [
            PY, "-m", "wanmig.cli", "qemu-migrate", "--src-qmp", str(src.qmp), "--dst-qmp",
            str(dst.qmp), "--uri", uri, "--listen-uri", uri, "--src-ram", str(src.ram),
            "--dst-ram", str(dst.ram), "--policy-file", str(policy), "--key-file", str(key),
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
        dst = self.qemus["dst"]
        try:
            tell_location(dst.loc, dst.site)
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
        for hv in self.qemus.values():
            if hv.proc is not None and hv.proc.poll() is None:
                hv.proc.terminate()
                try:
                    hv.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    hv.proc.kill()
                    hv.proc.wait(timeout=5)
            if hv.tap is not None:
                unplug_tap(self.net, hv.tap)
            if hv.ram.exists():
                hv.ram.unlink()
        if self.sockdir.exists():
            shutil.rmtree(self.sockdir, ignore_errors=True)
        ctl = getattr(self.net, "control", None)
        if ctl is not None and ctl.events.exists():
            shutil.copy(ctl.events, self.out / "controller_events.jsonl")

    def extra_metrics(self) -> dict:
        """What a QEMU run records beside the common keys."""
        img = self.guest_image
        return {"qemu_accel": getattr(self.accel, "name", None),
                "qemu_accel_reason": getattr(self.accel, "reason", None),
                "qemu_boot_s": self.boot_s,
                "qemu_image_digest": getattr(img, "digest", None),
                "qemu_version": _qemu_version(),
                "ping_before": self.pings.get("before"), "ping_after": self.pings.get("after")}


def _qemu_version() -> str | None:
    try:
        out = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True,
                             text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0].strip() if out else None

