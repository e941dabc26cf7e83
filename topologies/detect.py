"""What this machine offers: detected by trying, never assumed, and recorded in every result.

``probe()`` does the I/O (a throwaway veth pair to try a netem qdisc, /sys/module for the OVS
kernel datapath, the running ovs-vswitchd's log for its userspace TSO, PATH for the tools, the
compiled delay line); ``choose()`` is the pure decision from those facts.

The fabric's offloads follow the datapath: the kernel datapath takes super-frames; the userspace
one only when the running switch has TCP segmentation offload (``topologies.ovstso``), else every
interface of the network has its transmit offloads off (TCP stalls otherwise).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass, field

log = logging.getLogger(__name__)

TOOLS = ("ip", "tc", "ovs-vsctl", "ovs-ofctl", "iperf3", "ping", "ethtool", "mnexec")
BACKEND_ENV = "WANMIG_LINK_BACKEND"      # force 'delayline' (or 'netem' where it exists)
DATAPATH_ENV = "WANMIG_OVS_DATAPATH"     # force 'user' (or 'kernel' where it exists)
TSO_ENV = "WANMIG_OVS_TSO"               # 'off': offloads off even where the switch has TSO


class CapabilityError(RuntimeError):
    """The machine cannot do what was asked (missing tool, not root, forced backend absent)."""


@dataclass(frozen=True)
class Facts:
    root: bool
    netem: bool | None             # None: could not be probed (not root)
    netem_error: str
    ovs_kernel_module: bool
    ovs_running: bool
    tools: dict[str, str | None] = field(default_factory=dict)
    os_ken: bool = False
    mininet: bool = False
    kernel: str = ""
    ovs_userspace_tso: bool = False     # the running ovs-vswitchd has it (topologies.ovstso)
    ovs_userspace_tso_reason: str = ""
    delayline: str | None = None        # the compiled delay line for these sources, if built
    delayline_error: str = ""


@dataclass(frozen=True)
class Choice:
    link_backend: str      # 'netem' or 'delayline'
    ovs_datapath: str      # 'kernel' or 'user'
    problems: tuple[str, ...]
    userspace_tso: bool = False    # userspace datapath with TSO: the fabric's offloads stay on

    @property
    def offloads(self) -> bool:
        """Whether the fabric's interfaces keep their transmit offloads (super-frames)."""
        return self.ovs_datapath == "kernel" or self.userspace_tso

    @property
    def ok(self) -> bool:
        return not self.problems


def choose(facts: Facts, force_backend: str | None = None,
           force_datapath: str | None = None, force_tso: str | None = None) -> Choice:
    """Pick the link backend, the OVS datapath and the fabric's offloads from the facts; list
    what stops the testbed."""
    problems = []
    if not facts.root:
        problems.append("not root: network namespaces and Open vSwitch need root (use sudo)")
    problems += [f"tool not found: {t}" for t, path in sorted(facts.tools.items()) if not path]
    if not facts.mininet:
        problems.append("Mininet does not import (run make setup; the venv needs "
                        "--system-site-packages)")
    if not facts.ovs_running:
        problems.append("Open vSwitch is not running (make setup starts it)")
    backend = "netem" if facts.netem else "delayline"
    if force_backend:
        if force_backend not in ("netem", "delayline"):
            problems.append(f"{BACKEND_ENV}={force_backend!r}: expected netem or delayline")
        elif force_backend == "netem" and not facts.netem:
            problems.append(f"{BACKEND_ENV}=netem but this kernel has no netem "
                            f"({facts.netem_error or 'not probed'})")
        else:
            backend = force_backend
    datapath = "kernel" if facts.ovs_kernel_module else "user"
    if force_datapath:
        if force_datapath not in ("kernel", "user"):
            problems.append(f"{DATAPATH_ENV}={force_datapath!r}: expected kernel or user")
        elif force_datapath == "kernel" and not facts.ovs_kernel_module:
            problems.append(f"{DATAPATH_ENV}=kernel but the openvswitch module is not loaded")
        else:
            datapath = force_datapath
    if backend == "delayline" and facts.root and not facts.delayline:
        problems.append(f"the delay line is needed and not built: {facts.delayline_error}")
    tso = datapath == "user" and facts.ovs_userspace_tso
    if force_tso:
        if force_tso != "off":
            problems.append(f"{TSO_ENV}={force_tso!r}: expected off (or unset)")
        tso = False
    return Choice(backend, datapath, tuple(problems), userspace_tso=tso)


def _run(cmd: list[str], timeout: float = 10) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def probe_netem() -> tuple[bool, str]:
    """Try a netem qdisc on a throwaway veth pair; returns (available, error text)."""
    name = f"wmprb{os.getpid() % 100000}"
    made = _run(["ip", "link", "add", f"{name}a", "type", "veth", "peer", "name", f"{name}b"])
    if made.returncode != 0:
        return False, f"could not make a probe veth: {made.stderr.strip()}"
    try:
        res = _run(["tc", "qdisc", "add", "dev", f"{name}a", "root", "netem", "delay", "1ms"])
        return res.returncode == 0, res.stderr.strip()
    finally:
        _run(["ip", "link", "del", f"{name}a"])


def probe_ovs_module() -> bool:
    if os.path.isdir("/sys/module/openvswitch"):
        return True
    if shutil.which("modprobe"):
        _run(["modprobe", "-q", "openvswitch"])
    return os.path.isdir("/sys/module/openvswitch")


def probe_delayline() -> tuple[str | None, str]:
    from topologies import delaybin

    try:
        return str(delaybin.binary()), ""
    except delaybin.DelaylineError as exc:
        return None, str(exc)


def probe() -> Facts:
    from topologies import ovstso

    root = os.geteuid() == 0
    netem, netem_error = probe_netem() if root else (None, "not probed: not root")
    tools = {t: shutil.which(t) for t in TOOLS}
    ovs_running = bool(tools.get("ovs-vsctl")) and root and \
        _run(["ovs-vsctl", "--timeout=3", "show"]).returncode == 0
    tso = ovstso.state() if ovs_running else None
    delayline, delayline_error = probe_delayline()
    return Facts(root=root, netem=netem, netem_error=netem_error,
                 ovs_kernel_module=probe_ovs_module() if root else False,
                 ovs_running=ovs_running, tools=tools,
                 os_ken=importlib.util.find_spec("os_ken") is not None,
                 mininet=importlib.util.find_spec("mininet") is not None,
                 kernel=os.uname().release,
                 ovs_userspace_tso=bool(tso and tso.active),
                 ovs_userspace_tso_reason=tso.reason if tso else "ovs-vswitchd not running",
                 delayline=delayline, delayline_error=delayline_error)


def detect() -> tuple[Facts, Choice]:
    facts = probe()
    choice = choose(facts, os.environ.get(BACKEND_ENV) or None,
                    os.environ.get(DATAPATH_ENV) or None, os.environ.get(TSO_ENV) or None)
    return facts, choice


def as_record(facts: Facts, choice: Choice) -> dict:
    """What goes into a result's metadata."""
    return {"link_backend": choice.link_backend, "ovs_datapath": choice.ovs_datapath,
            "netem_available": facts.netem, "netem_error": facts.netem_error,
            "ovs_kernel_module": facts.ovs_kernel_module, "kernel": facts.kernel,
            "ovs_userspace_tso": choice.userspace_tso,
            "ovs_userspace_tso_available": facts.ovs_userspace_tso,
            "ovs_userspace_tso_reason": facts.ovs_userspace_tso_reason,
            "fabric_offloads": choice.offloads, "delayline": facts.delayline,
            "tools": asdict(facts)["tools"]}
