"""What a test network may have left on this machine."""

from __future__ import annotations

import re
import subprocess

from topologies.cleanup import (
    live_records,
    node_shells,
    our_bridges,
    our_links,
    owned_by_live,
    stray_delaylines,
)
from topologies.names import node_names


def leftovers(spec) -> dict[str, list]:
    """What of ``spec``'s network still exists on this machine (a shell of the same name that
    a live network's record owns, another test's ``wl1`` say, is not ours)."""
    names = sorted(set(node_names(spec.sites, len(spec.wan))))
    switches = [n for n in names if re.fullmatch(r"[a-z][a-z0-9]*(s1|l\d+|p\d+)", n)]
    owned = owned_by_live(live_records(), [])
    return {"bridges": our_bridges(switches), "links": our_links(names),
            "shells": [p for p in node_shells(names) if p not in owned],
            "delaylines": stray_delaylines()}


def assert_nothing_left(spec) -> None:
    left = leftovers(spec)
    assert not any(left.values()), (
        f"left behind by {spec.name}: {left}\n"
        f"ovs-vsctl list-br: {_bridges()!r}")


def _bridges() -> str:
    return subprocess.run(["ovs-vsctl", "list-br"], capture_output=True, text=True).stdout


def run_until(argv: list[str], marker: str, timeout_s: float = 120.0
              ) -> tuple[subprocess.Popen, list[str]]:
    """``argv`` started (stderr into stdout, unbuffered), read until a line holding ``marker``
    (or its end, or ``timeout_s``); the process and the lines read. The caller checks that
    the marker came."""
    import os
    import time

    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if marker in line:
            break
    return proc, seen
