"""Where the VM is, as each part of the testbed sees it, and what a run left on the machine:
the adapters that gather what ``experiments.faults.invariants`` judges.

``where_is_vm`` is read before teardown (the guest, the VM's namespace and the controller are
still there): the guest's control block (running or paused, on which image, at which site), the
VM's cables (each interface of its namespace, the switch at its other end and whether it is
up), the controller's status file (the switch where it last saw the VM's MAC).
``left_behind`` is read after teardown: the network's record (its processes, bridges, links),
the run's own processes, its VM memory segments and the delay lines' control sockets.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger("wanmig.faults")

STATE_NAMES = {0: "starting", 1: "running", 2: "paused", 3: "exited"}


def guest_view(guest: Any) -> dict:
    """The guest's own state from its control block (``GuestHandle``), or why it is unknown."""
    if guest is None:
        return {"state": "gone"}
    try:
        st = guest.vm.state()
    except (ValueError, OSError) as exc:
        return {"state": "unknown", "error": str(exc)}
    alive = guest.proc.poll() is None
    return {"state": STATE_NAMES.get(st.state, str(st.state)) if alive else "exited",
            "location": st.location or None, "tag": st.tag or None, "pid": st.pid,
            "throttle": st.throttle}


def cables(net: Any, vm_name: str) -> list[dict]:
    """Each cable of the VM: its interface, the switch and site at the other end, up or not."""
    host = net.net.nameToNode.get(vm_name)
    if host is None:
        return []
    site_of = {sw.name: sw.site for sw in net.plan.switches}
    out = []
    for link in net.net.links:
        for mine, other in ((link.intf1, link.intf2), (link.intf2, link.intf1)):
            if mine.node is host and other.node.name in site_of:
                state = host.cmd(f"cat /sys/class/net/{mine.name}/operstate").strip()
                out.append({"intf": mine.name, "switch": other.node.name,
                            "site": site_of[other.node.name], "up": state == "up"})
    return out


def controller_site(net: Any, mac: str) -> dict:
    """Where the controller last saw ``mac`` (its status file), if it knows it."""
    ctl = getattr(net, "control", None)
    if ctl is None:
        return {"controller_site": None}
    where = (ctl.controller.status().get("hosts") or {}).get(mac.lower())
    if not where:
        return {"controller_site": None, "controller_location": None}
    site_of = {int(sw.dpid, 16): sw.site for sw in net.plan.switches}
    return {"controller_site": site_of.get(int(where[0])), "controller_location": where}


def where_is_vm(net: Any, vm_name: str, mac: str, guest: Any, source_outcome: str | None,
                dest_tag: str) -> dict:
    """Everything ``invariants.one_site`` judges, each piece on its own (one failing read does
    not hide the others)."""
    evidence: dict[str, Any] = {"guest": guest_view(guest), "source_outcome": source_outcome,
                                "dest_tag": dest_tag}
    try:
        evidence["cables"] = cables(net, vm_name)
    except Exception as exc:  # noqa: BLE001 - evidence, recorded whatever it is
        evidence["cables"], evidence["cables_error"] = [], str(exc)
    try:
        evidence.update(controller_site(net, mac))
    except Exception as exc:  # noqa: BLE001
        evidence["controller_site"], evidence["controller_error"] = None, str(exc)
    return evidence


def network_record(net: Any) -> dict:
    """A copy of the network's cleanup record (teardown removes the file)."""
    registry = getattr(net, "registry", None)
    return dict(registry.data) if registry is not None else {}


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
    except OSError:
        return "?"


def _claimed_by_others() -> set[str]:
    """Bridge and node names of networks that live processes other than this one own (tests
    and runs of other people on the machine), which are not ours to count."""
    from topologies.cleanup import records

    names: set[str] = set()
    for rec in records():
        owner = rec.get("owner_pid")
        if owner and owner != os.getpid() and Path(f"/proc/{owner}").exists():
            names.update(rec.get("switches", []), rec.get("nodes", []))
    return names


def left_behind(record: dict, pids: Iterable[int], image: str,
                files: Iterable[str]) -> list[str]:
    """What of the run is still on the machine after teardown, one line each."""
    from migrator.guest.image import leftover_segments
    from topologies.cleanup import leftovers

    out = []
    if record:
        left = leftovers(record)
        others = _claimed_by_others()
        out += [f"process {p} ({_cmdline(p)})" for p in left["processes"]]
        out += [f"bridge {b}" for b in left["bridges"] if b not in others]
        out += [f"link {k}" for k in left["links"] if k.split("-")[0] not in others]
    for pid in sorted(set(pids)):
        if Path(f"/proc/{pid}").exists() and not _zombie(pid):
            out.append(f"process {pid} ({_cmdline(pid)})")
    out += [f"memory /dev/shm/{n}" for n in leftover_segments()
            if n.startswith(f"wanmig-{image}-")]
    out += [f"file {f}" for f in files if Path(f).exists()]
    return sorted(set(out))


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True
