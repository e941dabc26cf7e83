"""One QEMU guest started from the image and waited for (a thin process adapter).

``QemuGuest`` starts ``qemu_argv`` of a ``Machine`` and a ``Side`` whose files (RAM under
``/dev/shm``, QMP and location sockets, console log, QEMU's own output) it owns; ``wait_ready``
waits for the agent's ``wanmig-agent ready`` on the console with a deadline (returning early
if QEMU exits); ``set_location`` writes ``site <name>`` to the location socket; ``close`` kills
QEMU and removes every file it owns.  The accelerator probe and the tests boot guests with it;
``boot_user_guest`` is the common case of a user-mode NIC with forwarded ports.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from migrator.memory.workload import WorkloadParams
from migrator.qemu.launch import (
    QEMU,
    Machine,
    Side,
    UserNic,
    buffer_mib,
    kernel_cmdline,
    qemu_argv,
    ram_path,
)

READY = "wanmig-agent ready"
_POLL_S = 0.05
_TAIL = 400


class QemuGuest:
    """A running QEMU; use as a context manager (``close`` on exit, whatever happened)."""

    def __init__(self, machine: Machine, side: Side, qemu: str = QEMU,
                 popen: Callable[..., subprocess.Popen] = subprocess.Popen,
                 pass_fds: tuple[int, ...] = ()) -> None:
        """``popen`` starts the process (a Mininet host's, to run QEMU in its namespace);
        ``pass_fds`` are inherited (a tap's descriptor)."""
        self.machine, self.side = machine, side
        self.output = side.console.with_suffix(".qemu.log")
        # A console left by an earlier guest would say "ready" before this one has booted.
        side.console.unlink(missing_ok=True)
        self.argv = qemu_argv(machine, side, qemu)
        self.t_start = time.monotonic()
        self._loc: socket.socket | None = None
        with open(self.output, "wb") as out:
            self.proc = popen(self.argv, stdin=subprocess.DEVNULL, stdout=out,
                              stderr=subprocess.STDOUT, pass_fds=pass_fds)

    def __enter__(self) -> QemuGuest:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def console(self) -> str:
        try:
            return self.side.console.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def qemu_output(self) -> str:
        try:
            return self.output.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_ready(self, timeout_s: float) -> float | None:
        """Seconds from the start to the agent's ready line; None when it did not come within
        ``timeout_s`` or QEMU exited first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if READY in self.console():
                return time.monotonic() - self.t_start
            if self.proc.poll() is not None:
                return None
            time.sleep(_POLL_S)
        return None

    def why_not_ready(self) -> str:
        """One line on what the console and QEMU said (for an error message)."""
        status = self.proc.poll()
        state = "running" if status is None else f"exited with {status}"
        console = " | ".join(self.console().split("\n")[-4:]).strip()[-_TAIL:]
        qemu = " ".join(self.qemu_output().split())[-_TAIL:]
        return f"QEMU {state}; console: {console or '(empty)'}; QEMU said: {qemu or '(nothing)'}"

    def set_location(self, site: str, timeout_s: float = 5.0) -> None:
        """``site <site>`` to the guest's second serial port.  The connection stays open until
        ``close``: QEMU drops what a peer that hangs up sent before the guest read it."""
        deadline = time.monotonic() + timeout_s
        while self._loc is None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(str(self.side.location))
                self._loc = s
            except (FileNotFoundError, ConnectionRefusedError):
                s.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(_POLL_S)
        self._loc.sendall(f"site {site}\n".encode())

    def close(self) -> None:
        if self._loc is not None:
            self._loc.close()
            self._loc = None
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for path in (self.side.ram, self.side.qmp, self.side.location):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def boot_user_guest(image_kernel: Path, image_initrd: Path, accel: str, workdir: Path,
                    name: str, *, memory_mib: int = 128, workload: WorkloadParams | None = None,
                    forwards: tuple[tuple[str, int, int], ...] = (), seed: int = 1,
                    mac: str = "52:54:00:00:00:01") -> QemuGuest:
    """A guest with a user-mode NIC (10.0.2.15/24, ``forwards`` from 127.0.0.1), its files in
    ``workdir`` and its RAM in ``ram_path(name, accel)``."""
    nic = UserNic(forwards)
    workload = workload or WorkloadParams(dirty_rate_mibps=0.1, working_set_frac=0.05)
    append = kernel_cmdline(workload, seed, nic.guest_ip, nic.prefix, buffer_mib(memory_mib))
    machine = Machine(memory_mib, 1, accel, image_kernel, image_initrd, append, mac)
    side = Side(ram_path(name, accel), nic, workdir / f"{name}-{accel}.qmp",
                workdir / f"{name}-{accel}.console", workdir / f"{name}-{accel}.loc")
    return QemuGuest(machine, side)
