"""What a run created, written down before it is created, so that anything left behind by a
crash (or a ``kill -9``) can be found and removed by ``wanmig clean``.

A record is one JSON file per live network under ``/run/wanmig`` (``WANMIG_STATE_DIR``):
switch (bridge) names, node names, and once they exist the processes (PID and start time: a PID
can be reused by an unrelated process after a crash, the pair cannot) and network-namespace
inodes of the nodes. Processes started for the network in the root namespace (the delay lines,
the controller it was handed) are recorded the same way, so this module needs to know nothing
of them. ``clean_networks()`` kills every process inside those namespaces and every recorded one
still running, deletes the bridges and the switch-side veths, and removes the record; it also
stops any stray delay line. What other parts leave (VM memory images) they clean themselves.

Ownership is decided by the records, never by command lines: a network whose owner (PID and
start time) still runs is live, and nothing it owns is touched without ``--all``: the processes
it recorded, those in its namespaces, those descended from its owner, and its bridge, node and
link names (a dead record naming the same switches as a live network leaves them alone).  A
delay line is stray, and stopped, only when no live record owns it in one of those ways and it
is an orphan (a delay line whose parent still runs was started by a live process: a network
recorded elsewhere, or one being built; ``--all`` stops it).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ground.records import (
    ancestors,
    parent_pid,
    same_process,
    start_time,
    state_dir,
    stop_processes,
    write_record,
)

log = logging.getLogger(__name__)

DELAYLINE_MARK = "wanmig-delayline"     # the compiled relay's name (topologies.delaybin)
__all__ = ["Registry", "clean_networks", "recorded_alive", "start_time", "state_dir"]


class Registry:
    """The record of one network; ``update`` rewrites it atomically."""

    def __init__(self, name: str, switches: list[str], nodes: list[str]) -> None:
        self.path = state_dir() / f"net-{os.getpid()}-{int(time.time() * 1000)}.json"
        self.data: dict = {"name": name, "owner_pid": os.getpid(),
                           "owner_start": start_time(os.getpid()), "switches": switches,
                           "nodes": nodes, "pids": [], "netns": []}
        self._write()

    def update(self, **fields: object) -> None:
        self.data.update(fields)
        self._write()

    def add_processes(self, pids: list[int]) -> None:
        """Record processes (with their start time) that teardown and ``wanmig clean`` stop."""
        known = {tuple(p) for p in self.data["pids"]}
        new = [[pid, start] for pid in pids
               if (start := start_time(pid)) is not None and (pid, start) not in known]
        self.update(pids=self.data["pids"] + new)

    def _write(self) -> None:
        write_record(self.path, self.data)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def netns_inode(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def recorded_alive(pids: list) -> list[int]:
    """The recorded ``[pid, start time]`` pairs whose process still runs (not a PID reused)."""
    out = []
    for entry in pids:
        if not isinstance(entry, (list, tuple)) or len(entry) != 2:
            continue
        pid, start = entry
        if pid != os.getpid() and start_time(pid) == start:
            out.append(pid)
    return out


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def processes_in(namespaces: set[str]) -> list[int]:
    """PIDs of every process whose network namespace is one of ``namespaces``."""
    if not namespaces:
        return []
    root_ns = netns_inode(1)
    namespaces = namespaces - {root_ns}
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid() and netns_inode(int(entry)) in namespaces:
            found.append(int(entry))
    return found


def delaylines(scope: set[int] | None = None) -> list[int]:
    """Every delay line running (within ``scope`` if given), whoever owns it."""
    pids = scope if scope is not None else {int(e) for e in os.listdir("/proc") if e.isdigit()}
    return sorted(p for p in pids if p != os.getpid() and DELAYLINE_MARK in _cmdline(p))


def stray_delaylines(scope: set[int] | None = None) -> list[int]:
    """Delay lines no live network's record owns (``owned_by_live``), whoever started them:
    what a test may call left behind. ``clean_networks`` stops only the orphans among them."""
    lines = delaylines(scope)
    if not lines:
        return []
    owned = owned_by_live(live_records(), lines)
    return [p for p in lines if p not in owned]


def unowned(lines: list[int], protect: Owned) -> tuple[list[int], list[tuple[int, int]]]:
    """Of ``lines``, the strays, and (line, parent) for those whose parent still runs: a live
    process started them (a network recorded under another state directory, one being built),
    so they are not ours to stop; an orphan has been adopted by init."""
    strays, adopted = [], []
    for pid in lines:
        if pid in protect:
            continue
        parent = parent_pid(pid)
        if parent and parent != 1 and same_process(parent, None):
            adopted.append((pid, parent))
        else:
            strays.append(pid)
    return strays, adopted


def node_shells(nodes: list[str]) -> list[int]:
    """Mininet's per-node shells (``bash ... mininet:<name>``) for the given node names."""
    marks = {f"mininet:{n}" for n in nodes}
    out = []
    for e in os.listdir("/proc"):
        if e.isdigit():
            words = _cmdline(int(e)).split()
            if words and words[-1] in marks:
                out.append(int(e))
    return out


def _kill(pids: list[int]) -> None:
    stop_processes(pids, grace_s=2.0)


def our_bridges(switches: list[str]) -> list[str]:
    res = subprocess.run(["ovs-vsctl", "--timeout=5", "list-br"], capture_output=True, text=True,
                         check=False)
    existing = set(res.stdout.split()) if res.returncode == 0 else set()
    return [s for s in switches if s in existing]


def our_links(nodes: list[str]) -> list[str]:
    """Interfaces in the root namespace named after our nodes (``node-ethN`` or the bridge)."""
    res = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=False)
    names = [m.group(1) for m in re.finditer(r"^\d+: ([^:@]+)", res.stdout, re.M)]
    if not nodes:
        return []
    pattern = re.compile(r"^({})(-eth\d+)?$".format("|".join(map(re.escape, nodes))))
    return [n for n in names if pattern.match(n)]


def records() -> list[dict]:
    from ground.records import read_records

    return read_records("net-*.json")


def live_records() -> list[dict]:
    return [r for r in records() if _owner_alive(r)]


@dataclass(frozen=True)
class Owned:
    """What live networks own: processes and names, never to be touched without ``--all``."""
    pids: frozenset[int] = frozenset()
    names: frozenset[str] = frozenset()

    def __contains__(self, pid: object) -> bool:
        return pid in self.pids


def owned_by_live(live: list[dict], candidates: list[int] | None = None) -> Owned:
    """The processes live records own (recorded, in their namespaces, descended from their
    owner; ``candidates``, when given, are the processes checked for descent) and their names."""
    pids: set[int] = set()
    names: set[str] = set()
    owners = {r["owner_pid"] for r in live}
    for r in live:
        pids.update(recorded_alive(r.get("pids", [])))
        pids.update(processes_in(set(r.get("netns", []))))
        names.update(r.get("switches", []))
        names.update(r.get("nodes", []))
    pool = candidates if candidates is not None else delaylines()
    pids.update(p for p in pool if owners & set(ancestors(p)))
    return Owned(frozenset(pids | owners), frozenset(names))


def leftovers(record: dict, protect: Owned = Owned()) -> dict[str, list]:
    """What of a record still exists on this machine and no live network owns."""
    names = [n for n in [*record.get("nodes", []), *record.get("switches", [])]
             if n not in protect.names]
    switches = [s for s in record.get("switches", []) if s not in protect.names]
    recorded = recorded_alive(record.get("pids", []))
    # Shells found by node name only (a run killed before it recorded them): the name may be
    # another network's, so only orphans count, as for delay lines.
    by_name = unowned(node_shells(names), protect)[0]
    found = set(processes_in(set(record.get("netns", [])))) | set(by_name) | set(recorded)
    return {"processes": sorted(p for p in found if p not in protect),
            "bridges": our_bridges(switches),
            "links": our_links(names)}


def clean_record(record: dict, protect: Owned = Owned()) -> list[str]:
    actions = []
    left = leftovers(record, protect)
    if left["processes"]:
        _kill(left["processes"])
        actions.append(f"killed {len(left['processes'])} process(es)")
    for br in left["bridges"]:
        subprocess.run(["ovs-vsctl", "--timeout=5", "--if-exists", "del-br", br], check=False)
        actions.append(f"deleted bridge {br}")
    for link in left["links"]:
        subprocess.run(["ip", "link", "del", link], capture_output=True, check=False)
        actions.append(f"deleted link {link}")
    from topologies.portbuf import restore
    if restore(record.get("port_rcvbuf")):
        actions.append("restored net.core.rmem_default")
    path = record.get("_path")
    if path:
        Path(path).unlink(missing_ok=True)
    return actions


def _owner_alive(record: dict) -> bool:
    pid = record.get("owner_pid")
    return pid != os.getpid() and same_process(pid, record.get("owner_start"))


def stale_control_sockets(alive: Callable[[int], bool], include_live: bool = False
                          ) -> list[Path]:
    """Delay-line control sockets (``<relay>-<owner pid>.ctl``, ``topologies.linkcontrol``)
    whose owner is gone (every one with ``include_live``); the relay removes its own on a
    clean exit, not when it is killed."""
    out = []
    for path in sorted(state_dir().glob("*.ctl")):
        pid = path.stem.rpartition("-")[2]
        if include_live or not pid.isdigit() or not alive(int(pid)):
            out.append(path)
    return out


def stale_socket_dirs(alive: Callable[[int], bool], include_live: bool = False
                      ) -> list[Path]:
    """Folders of QEMU guests' monitor and serial sockets (``qemu-<owner pid>``, made by the
    runner of a QEMU run) whose owner is gone (every one with ``include_live``)."""
    out = []
    for path in sorted(state_dir().glob("qemu-*")):
        pid = path.name.rpartition("-")[2]
        if path.is_dir() and (include_live or not pid.isdigit() or not alive(int(pid))):
            out.append(path)
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_networks(include_live: bool = False, *, scope: set[int] | None = None) -> list[str]:
    """Remove what crashed runs left. Networks whose owner still runs are kept, with all they
    own, unless ``include_live`` (their owner is killed first). ``scope`` limits the search
    for stray delay lines to those PIDs (tests)."""
    actions = []
    everything = records()
    live = [r for r in everything if _owner_alive(r)]
    protect = Owned() if include_live else owned_by_live(live, delaylines(scope))
    for record in everything:
        if record in live:
            if not include_live:
                actions.append(f"kept {record['name']}: its owner {record['owner_pid']} is running")
                continue
            _kill([record["owner_pid"]])
            actions.append(f"killed owner {record['owner_pid']} of {record['name']}")
        actions += [f"{record['name']}: {a}" for a in clean_record(record, protect)]
    lines = delaylines(scope)
    strays, started = (lines, []) if include_live else unowned(lines, protect)
    actions += [f"kept delay line {pid}: no record owns it, but its parent {parent} runs "
                "(--all stops it)" for pid, parent in started]
    if strays:
        _kill(strays)
        actions.append(f"stopped {len(strays)} stray delay line(s) no live network owns: "
                       + ", ".join(map(str, strays)))
    for path in stale_control_sockets(_pid_alive, include_live):
        path.unlink(missing_ok=True)
        actions.append(f"removed control socket {path.name}")
    for path in stale_socket_dirs(_pid_alive, include_live):
        shutil.rmtree(path, ignore_errors=True)
        actions.append(f"removed QEMU socket folder {path.name}")
    return actions
