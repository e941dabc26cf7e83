"""Which part of the testbed a process is: a pure decision from its name and command line.

Accounting only (what is cleaned is decided by records, never by command lines): every
process of the machine falls in exactly one part, so the parts add up to what all processes
used; what the kernel did outside any process (softirqs without a process to charge) is the
machine's busy time less that.
"""

from __future__ import annotations

PARTS = ("switch", "delaylines", "controller", "migrators", "guests", "clients", "preflight",
         "runner", "other")

# Programs known by their name alone.
_NAMES = {"ovs-vswitchd": "switch", "ovsdb-server": "switch", "iperf3": "preflight",
          "ping": "preflight"}
# (part, marks in the command line): the first part with a mark present wins.
_MARKS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("delaylines", ("wanmig-delayline",)),
    ("controller", ("controller.run", "controller.ctlproxy")),
    ("migrators", ("migrate-source", "migrate-dest", "qemu-migrate", "qemu-system-", "qemu-nbd")),
    ("guests", ("migrator.guest.process", "migrator.guest.announce")),
    ("clients", ("experiments.clients",)),
)


def classify(comm: str, cmdline: str, pid: int, runner_pid: int) -> str:
    """The part of process ``pid`` named ``comm`` started as ``cmdline``; ``runner_pid`` is the
    process that runs the experiment (what it does itself is the runner's)."""
    if pid == runner_pid:
        return "runner"
    if comm in _NAMES:
        return _NAMES[comm]
    for part, marks in _MARKS:
        if any(mark in cmdline for mark in marks):
            return part
    return "other"
