"""Guests written down before they start (``ground.records``), and what ``wanmig clean`` does
with those whose owner is dead.

A record ``guest-<vm>.json`` under the state directory names the VM, its owner (the launcher:
PID and start time), and once it said READY the guest process (PID and start time); its memory
is every segment ``wanmig-<vm>-*`` (the source image and any it was switched to).  The launcher
writes it before the image exists and removes it once the guest is stopped and its memory gone.

``clean_guests``: a guest whose owner still runs is left alone (``include_live`` stops it too);
one whose owner is dead is stopped (SIGTERM, then SIGKILL), since nobody is left to migrate it,
read its results or remove its memory; then its segments that no live process maps are removed
and the record goes.  Each step is said.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ground.records import (
    read_records,
    same_process,
    start_time,
    state_dir,
    stop_processes,
    write_record,
)
from migrator.guest.image import PREFIX, leftover_segments, mapped_files, remove_segments

log = logging.getLogger(__name__)


def record_path(vm: str) -> Path:
    return state_dir() / f"guest-{vm}.json"


def write_guest(vm: str, *, pid: int | None = None) -> Path | None:
    """Record guest ``vm`` owned by this process (and its process once known).  A state
    directory this process may not write (not root) is logged and skipped: the guest still
    stops with its owner (``migrator.guest.owner``)."""
    me = os.getpid()
    data = {"vm": vm, "owner_pid": me, "owner_start": start_time(me), "pid": pid,
            "start": start_time(pid) if pid else None, "images": f"{PREFIX}{vm}-"}
    path = record_path(vm)
    try:
        write_record(path, data)
    except OSError as exc:
        log.warning("cannot record guest %s in %s (%s): wanmig clean will not know its owner",
                    vm, path.parent, exc.strerror)
        return None
    return path


def remove_guest(vm: str) -> None:
    record_path(vm).unlink(missing_ok=True)


def _segments_of(prefix: str) -> list[str]:
    return [n for n in leftover_segments() if n.startswith(prefix)]


def clean_guests(include_live: bool = False) -> list[str]:
    """Stop guests whose owner is dead and remove their memory; see the module docstring."""
    actions = []
    for rec in read_records("guest-*.json"):
        vm = str(rec.get("vm", "?"))
        owner, pid = rec.get("owner_pid"), rec.get("pid")
        owner_alive = same_process(owner, rec.get("owner_start"))
        guest_alive = pid is not None and same_process(pid, rec.get("start"))
        if owner_alive and not include_live:
            actions.append(f"kept guest {vm}" + (f" (pid {pid})" if guest_alive else "")
                           + f": its owner pid {owner} is running")
            continue
        why = "its owner is running (--all)" if owner_alive else f"its owner pid {owner} is gone"
        if guest_alive and stop_processes([pid], grace_s=3.0):
            actions.append(f"stopped guest {vm} (pid {pid}): {why}")
        prefix = str(rec.get("images") or f"{PREFIX}{vm}-")
        if not prefix.startswith(PREFIX) or "/" in prefix:
            actions.append(f"guest {vm}: record names images {prefix!r}, not ours: left alone")
        else:
            names = _segments_of(prefix)
            in_use = set() if include_live else mapped_files() & set(names)
            actions += [f"removed VM memory {n}"
                        for n in remove_segments([n for n in names if n not in in_use])]
            actions += [f"kept VM memory {n}: still mapped by a process" for n in sorted(in_use)]
        Path(rec["_path"]).unlink(missing_ok=True)
        actions.append(f"removed the record of guest {vm}")
    return actions
