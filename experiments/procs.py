"""Processes the runner starts inside Mininet hosts, and their output read line by line.

Each process's stdout is read by a thread into one shared queue of ``(name, line)``, so the
runner can react to whichever speaks first (the source's progress, the destination's VERIFIED)
without polling; stderr goes to a log file in the run folder.
"""

from __future__ import annotations

import logging
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ground.errors import NotAsAskedError
from ground.protocol import Kind, Message, parse_line

log = logging.getLogger(__name__)


class ProcError(NotAsAskedError):
    """A process did not say what it should have, in time, or exited early."""


class Proc:
    def __init__(self, name: str, node: Any, argv: list[str], logdir: Path,
                 lines: queue.Queue, stdin: bool = False) -> None:
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self._err: IO[str] = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = node.popen(argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=self._err, text=True, bufsize=1)
        self.output: list[str] = []
        self._lines = lines
        self._reader = threading.Thread(target=self._read, name=f"read-{name}", daemon=True)
        self._reader.start()
        log.debug("started %s on %s: %s", name, getattr(node, "name", node), " ".join(argv))

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.output.append(line)
            self._lines.put((self.name, line))
        self._lines.put((self.name, None))           # end of output

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def wait(self, timeout_s: float) -> int:
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise ProcError(f"{self.name} still running after {timeout_s:.0f} s "
                            f"(log {self.log_path})") from None

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 5.0) -> int | None:
        """Signal it (if running), wait, kill if it will not go; always closes its log."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
                try:
                    self.proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    log.warning("%s ignored signal %d: killing it", self.name, sig)
                    self.proc.kill()
                    self.proc.wait(timeout=5)
            return self.proc.returncode
        finally:
            self._reader.join(timeout=2)
            self._err.close()
            self.log_path.with_suffix(".out").write_text("\n".join(self.output) + "\n")

    def tail(self, n: int = 15) -> str:
        try:
            err = self.log_path.read_text().splitlines()[-n:]
        except OSError:
            err = []
        return "\n".join(self.output[-n:] + err)


def wait_for(lines: queue.Queue, procs: dict[str, Proc], name: str, kind: Kind,
             timeout_s: float) -> Message:
    """The first message of ``kind`` that process ``name`` says (``ground.protocol``). Lines of
    other processes met meanwhile are dropped: use only before anything else speaks (start-up
    handshakes)."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ProcError(f"{name} did not say {kind.value} within {timeout_s:.0f} s:\n"
                            f"{procs[name].tail()}")
        try:
            who, line = lines.get(timeout=left)
        except queue.Empty:
            continue
        if who == name and line is None:
            raise ProcError(f"{name} exited before saying {kind.value}:\n{procs[name].tail()}")
        if who == name:
            msg = parse_line(line)
            if msg is not None and msg.kind is kind:
                return msg


def follow(lines: queue.Queue, names: set[str], handlers: dict[Kind, Callable[[Message], None]],
           budget_s: float, what: str, *, on_message: Callable[[Message], None] | None = None,
           on_tick: Callable[[dict[str, float]], None] | None = None) -> dict[str, float]:
    """Every ``ground.protocol`` message the processes ``names`` say, handed to ``on_message``
    and to the handler of its kind, until all of them have ended (their output closed); returns
    when each ended (``time.monotonic``). ``on_tick`` is called at least once a second with
    that record so far. ProcError when ``what`` takes longer than ``budget_s``."""
    ended: dict[str, float] = {}
    deadline = time.monotonic() + budget_s
    while ended.keys() != names:
        if time.monotonic() > deadline:
            raise ProcError(f"{what} still running after {budget_s:.0f} s")
        if on_tick is not None:
            on_tick(ended)
        try:
            who, line = lines.get(timeout=1.0)
        except queue.Empty:
            continue
        if who not in names:
            continue
        if line is None:
            ended[who] = time.monotonic()
            continue
        msg = parse_line(line)          # None: a log line or the result record
        if msg is None:
            continue
        if on_message is not None:
            on_message(msg)
        if msg.kind in handlers:
            handlers[msg.kind](msg)
    return ended
