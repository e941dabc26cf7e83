"""TCP segmentation offload in Open vSwitch's userspace datapath: whether the running switch
has it, and (``make setup``) turning it on.

With ``other_config:userspace-tso-enable=true`` the userspace datapath reads and writes its
ports with virtio-net headers and passes GSO super-frames (up to 64 KiB) through whole, so
the hosts' interfaces keep their offloads on and the switch handles a few thousand frames a
second where it would handle tens of thousands (measured here: eight times the throughput per
core). OVS reads the setting when ovs-vswitchd starts (a process that sees it later enables it
for ports made afterwards only), so it counts as on only when the running ovs-vswitchd logged
it at its start, before it configured any bridge. OVS 3.1 (Debian 12's) has no software
segmentation: every port of the datapath must take super-frames. Its ports here are veths and
taps (the kernel segments for a device that cannot take them) and the delay line, which takes
them (``topologies/delayline.py``).

``decide`` is the pure reading of the log; ``state`` does the I/O; ``ensure`` (``python -m
topologies.ovstso ensure``, run by ``make setup``) sets the option and restarts ovs-vswitchd
when the running one does not have it, unless a live network would lose its switch.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)

LOG_PATH = Path("/var/log/openvswitch/ovs-vswitchd.log")
PID_PATH = Path("/var/run/openvswitch/ovs-vswitchd.pid")
OVS_CTL = "/usr/share/openvswitch/scripts/ovs-ctl"
ENABLED_LINE = "userspace_tso|INFO|Userspace TCP Segmentation Offloading support enabled"
START_LINE = re.compile(r"\|vlog\|INFO\|opened log file")
CONFIGURED = re.compile(r"\|bridge\|INFO\|(bridge |ovs-vswitchd \(Open vSwitch\))")
STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z\|")
START_SLACK_S = 2.0     # the log's first line follows the process's start by this, at most


@dataclass(frozen=True)
class TsoState:
    active: bool        # the running ovs-vswitchd passes super-frames on every port it makes
    configured: bool    # other_config:userspace-tso-enable=true
    reason: str

    def record(self) -> dict:
        return {"ovs_userspace_tso": self.active, "ovs_userspace_tso_configured":
                self.configured, "ovs_userspace_tso_reason": self.reason}


def _stamp(line: str) -> float | None:
    m = STAMP.match(line)
    if not m:
        return None
    return datetime.fromisoformat(m.group(1)).replace(tzinfo=UTC).timestamp()


def decide(log_lines: list[str], process_start: float, configured: bool) -> TsoState:
    """Whether the ovs-vswitchd that started at ``process_start`` (epoch seconds) enabled
    userspace TSO at its start, from its log."""
    if not configured:
        return TsoState(False, False, "other_config:userspace-tso-enable is not true")
    # The running process's start is the last one logged within the slack of its start time:
    # a switch restarted within a second of its first start (make setup on a fresh machine)
    # leaves both starts in that window; a log reopened later (logrotate) is outside it.
    begin = None
    for i, line in enumerate(log_lines):
        t = _stamp(line)
        if t is not None and abs(t - process_start) <= START_SLACK_S \
                and START_LINE.search(line) and "(monitor)" not in line:
            begin = i
    if begin is None:
        return TsoState(False, True, "the log has no start of the running ovs-vswitchd "
                                     f"(started {process_start:.0f})")
    for line in log_lines[begin:]:
        if ENABLED_LINE in line:
            return TsoState(True, True, "the running ovs-vswitchd enabled it at its start "
                                        f"({line[:23]})")
        if CONFIGURED.search(line):
            break
    return TsoState(False, True, "configured, but the running ovs-vswitchd did not enable "
                                 "it at its start (restart it: make setup)")


def _run(cmd: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def configured() -> bool:
    res = _run(["ovs-vsctl", "--timeout=5", "get", "Open_vSwitch", ".",
                "other_config:userspace-tso-enable"])
    return res.returncode == 0 and res.stdout.strip().strip('"') == "true"


def process_start(pid: int) -> float:
    """Epoch seconds at which ``pid`` started."""
    ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                 if line.startswith("btime "))
    return btime + ticks / os.sysconf("SC_CLK_TCK")


def state() -> TsoState:
    """The running switch's state; off, with the reason, whenever it cannot be read."""
    try:
        pid = int(PID_PATH.read_text().split()[0])
        started = process_start(pid)
    except (OSError, ValueError, IndexError, StopIteration):
        return TsoState(False, False, f"ovs-vswitchd is not running ({PID_PATH} unreadable)")
    is_on = configured()
    try:
        lines = LOG_PATH.read_text(errors="replace").splitlines()
    except OSError as exc:
        return TsoState(False, is_on, f"its log {LOG_PATH} cannot be read: {exc.strerror}")
    return decide(lines, started, is_on)


def _live_networks() -> list[str]:
    from topologies.cleanup import live_records

    return [str(r.get("name")) for r in live_records()]


def ensure() -> int:
    """Userspace TSO on in the running switch (make setup): 0 when it is, or when a live
    network stops the restart (runs detect it and keep the offloads off); 1 when it cannot be
    turned on (said why)."""
    if os.path.isdir("/sys/module/openvswitch"):
        print("OVS: kernel datapath present; userspace TSO not needed")
        return 0
    now = state()
    if now.active:
        print(f"OVS: userspace TSO on ({now.reason})")
        return 0
    if not now.configured:
        res = _run(["ovs-vsctl", "--timeout=5", "set", "Open_vSwitch", ".",
                    "other_config:userspace-tso-enable=true"])
        if res.returncode != 0:
            print(f"OVS: setting userspace-tso-enable failed: {res.stderr.strip()}",
                  file=sys.stderr)
            return 1
    live = _live_networks()
    if live:
        print(f"OVS: userspace TSO is set but ovs-vswitchd runs without it; not restarted while "
              f"networks {live} run (runs keep the offloads off until it is)", file=sys.stderr)
        return 0
    print("OVS: restarting ovs-vswitchd for userspace TSO")
    res = _run([OVS_CTL, "--no-ovsdb-server", "restart", "--system-id=random"], timeout=120)
    if res.returncode != 0:
        print(f"OVS: restart failed: {(res.stderr or res.stdout).strip()}", file=sys.stderr)
        return 1
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        now = state()
        if now.active:
            print(f"OVS: userspace TSO on ({now.reason})")
            return 0
        time.sleep(0.2)
    print(f"OVS: userspace TSO still off after the restart: {now.reason}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m topologies.ovstso", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("show", "ensure"))
    args = p.parse_args(argv)
    if args.action == "ensure":
        return ensure()
    print(state().record())
    return 0


if __name__ == "__main__":
    sys.exit(main())
