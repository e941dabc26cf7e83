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
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)

DELAYLINE_MARK = "topologies.delayline"


def state_dir() -> Path:
    return Path(os.environ.get("WANMIG_STATE_DIR", "/run/wanmig"))


class Registry:
    """The record of one network; ``update`` rewrites it atomically."""

    def __init__(self, name: str, switches: list[str], nodes: list[str]) -> None:
        self.path = state_dir() / f"net-{os.getpid()}-{int(time.time() * 1000)}.json"
        self.data: dict = {"name": name, "owner_pid": os.getpid(), "switches": switches,
                           "nodes": nodes, "pids": [], "netns": []}
        self.path.parent.mkdir(parents=True, exist_ok=True)
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
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data))
        os.replace(tmp, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def netns_inode(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22): with
    the PID it names one process for good."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
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


def stray_delaylines() -> list[int]:
    return [int(e) for e in os.listdir("/proc")
            if e.isdigit() and int(e) != os.getpid() and DELAYLINE_MARK in _cmdline(int(e))]


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
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = []
        for pid in pids:
            try:
                os.kill(pid, sig)
                alive.append(pid)
            except ProcessLookupError:
                pass
        if not alive:
            return
        deadline = time.monotonic() + 2.0
        while alive and time.monotonic() < deadline:
            alive = [p for p in alive if Path(f"/proc/{p}").exists() and not _zombie(p)]
            time.sleep(0.05)
        pids = alive


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


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
    out = []
    for path in sorted(state_dir().glob("net-*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        data["_path"] = str(path)
        out.append(data)
    return out


def leftovers(record: dict) -> dict[str, list]:
    """What of a record still exists on this machine."""
    nodes = list(record.get("nodes", []))
    switches = list(record.get("switches", []))
    recorded = recorded_alive(record.get("pids", []))
    return {"processes": sorted(set(processes_in(set(record.get("netns", []))))
                                | set(node_shells(nodes + switches)) | set(recorded)),
            "bridges": our_bridges(switches),
            "links": our_links(nodes + switches)}


def clean_record(record: dict) -> list[str]:
    actions = []
    left = leftovers(record)
    if left["processes"]:
        _kill(left["processes"])
        actions.append(f"killed {len(left['processes'])} process(es)")
    for br in left["bridges"]:
        subprocess.run(["ovs-vsctl", "--timeout=5", "--if-exists", "del-br", br], check=False)
        actions.append(f"deleted bridge {br}")
    for link in our_links(list(record.get("nodes", [])) + list(record.get("switches", []))):
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
    return bool(pid) and pid != os.getpid() and Path(f"/proc/{pid}").exists() and not _zombie(pid)


def clean_networks(include_live: bool = False) -> list[str]:
    """Remove what crashed runs left. Networks whose owner still runs are kept unless
    ``include_live`` (their owner is killed first)."""
    actions = []
    for record in records():
        if _owner_alive(record):
            if not include_live:
                actions.append(f"kept {record['name']}: its owner {record['owner_pid']} is running")
                continue
            _kill([record["owner_pid"]])
            actions.append(f"killed owner {record['owner_pid']} of {record['name']}")
        actions += [f"{record['name']}: {a}" for a in clean_record(record)]
    strays = stray_delaylines()
    if strays:
        _kill(strays)
        actions.append(f"stopped {len(strays)} stray delay line(s)")
    return actions
