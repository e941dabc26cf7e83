"""The guest process's start and end as its launcher sees them: waiting for its READY line (with
its pid) and ending it (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import subprocess
import time
from typing import Any

from ground.errors import NotAsAskedError
from ground.protocol import Kind, expect

log = logging.getLogger("migrator.guest.vm")


class GuestStartError(NotAsAskedError):
    """The guest process did not come up (its exit status or the timeout is in the message)."""


def end_process(proc: Any, timeout: float) -> int | None:
    """SIGTERM, SIGKILL after ``timeout``; its pipes closed; its exit status."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.warning("guest pid %d ignored SIGTERM for %g s: killing it", proc.pid, timeout)
            proc.kill()
            proc.wait(timeout=timeout)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    return proc.returncode


def wait_ready(proc: Any, timeout: float) -> int:
    """The pid the guest says READY with; GuestStartError on exit or timeout."""
    deadline = time.monotonic() + timeout
    buf = b""
    fd = proc.stdout.fileno()
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise GuestStartError(f"guest pid {proc.pid} printed no READY within "
                                      f"{timeout:g} s")
            if sel.select(min(left, 0.1)):
                chunk = os.read(fd, 4096)
                if not chunk:
                    code = proc.wait(timeout=5)
                    raise GuestStartError(f"guest exited with status {code} before READY "
                                          "(its log is on its stderr)")
                buf += chunk
    line = buf.split(b"\n", 1)[0].decode(errors="replace").strip()
    msg = expect(line, Kind.READY)
    pid = msg.fields.get("pid") if msg is not None else None
    if not isinstance(pid, int) or isinstance(pid, bool):
        raise GuestStartError(f"guest said {line!r}, expected READY with its pid")
    return pid
