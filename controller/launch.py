"""Starting and stopping the controller and its control-channel relays as processes of ours.

The controller runs as its own process (``python -m controller.run``) so that a run can kill and
restart it (the restart test) and so that os-ken's threads never share a process with Mininet.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ground.errors import NotAsAskedError

log = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0


class ControllerError(NotAsAskedError):
    """The controller (or a relay) did not start, or the network never converged under it."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, what: str,
                   timeout_s: float = START_TIMEOUT_S) -> None:
    """Return once something accepts TCP connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ControllerError(f"{what} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise ControllerError(f"{what} did not listen on port {port} within {timeout_s:.0f} s")


def stop_process(proc: subprocess.Popen | None, timeout_s: float = 5.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout_s)


class ControllerProcess:
    """The os-ken controller on 127.0.0.1:``port``, its events and status in ``workdir``."""

    def __init__(self, workdir: str | Path, port: int | None = None, hold_s: float = 1.0) -> None:
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.hold_s = hold_s
        self.events = self.workdir / "controller_events.jsonl"
        self.status_path = self.workdir / "controller_status.json"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.status_path.unlink(missing_ok=True)
        logf = open(self.workdir / "controller.log", "a")  # noqa: SIM115 - lives with the proc
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "controller.run", "--port", str(self.port),
             "--events", str(self.events), "--status", str(self.status_path),
             "--hold-s", str(self.hold_s)],
            stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        wait_listening(self.port, self.proc, "the controller")
        log.info("controller pid %d on port %d", self.proc.pid, self.port)

    def stop(self) -> None:
        stop_process(self.proc)

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill(self) -> None:
        """SIGKILL, as a crash: no clean shutdown (``start`` brings a fresh one up)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def status(self) -> dict:
        try:
            return json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            return {}

    def wait_for(self, pred: Callable[[dict], bool], what: str,
                 timeout_s: float = START_TIMEOUT_S) -> dict:
        deadline = time.monotonic() + timeout_s
        status: dict = {}
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ControllerError(f"the controller exited ({self.proc.returncode}); see "
                                      f"{self.workdir / 'controller.log'}")
            status = self.status()
            if status and pred(status):
                return status
            time.sleep(0.05)
        raise ControllerError(f"the controller did not reach '{what}' within {timeout_s:.0f} s; "
                              f"last status {status}")


class ControlRelay:
    """A delayed TCP relay in front of the controller for switches at a remote site."""

    def __init__(self, upstream: int, rtt_ms: float, workdir: str | Path) -> None:
        self.upstream = upstream
        self.rtt_ms = rtt_ms
        self.port = free_port()
        self.workdir = Path(workdir)
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        logf = open(self.workdir / f"ctlproxy-{self.port}.log", "a")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "controller.ctlproxy", "--listen", str(self.port),
             "--upstream", str(self.upstream), "--delay-ms", repr(self.rtt_ms / 2)],
            stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        wait_listening(self.port, self.proc, f"the control relay ({self.rtt_ms:g} ms)")

    def stop(self) -> None:
        stop_process(self.proc)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
