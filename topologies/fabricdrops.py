"""Frames the userspace switch dropped before it read them: counted, so no run hides them.

Why: with the userspace datapath ovs-vswitchd reads each port through an AF_PACKET socket; a
frame that finds that socket's receive buffer full is dropped by the kernel and shows in no
OVS statistic and no interface counter, only in the socket's own drop count (``sk_drops``,
which ``ss -0 -m`` prints as ``d<n>`` in ``skmem``). ``topologies.portbuf`` sizes the buffers so
that this does not happen; this module checks that it did not, for every run.

Limits: a socket closed between two readings (a port deleted, as when a host is unplugged)
takes its count with it, and another network running at the same time adds its own.
"""

from __future__ import annotations

import re
import subprocess

_SKMEM_DROPS = re.compile(r"skmem:\([^)]*\bd(\d+)\)")


def parse_drops(ss_text: str, process: str = "ovs-vswitchd") -> int:
    """Sum of the drop counts of ``process``'s packet sockets in ``ss -0 -m -p`` output."""
    total = 0
    for line in ss_text.splitlines():
        if f'(("{process}"' not in line:
            continue
        m = _SKMEM_DROPS.search(line)
        if m:
            total += int(m.group(1))
    return total


def switch_drops() -> int | None:
    """The userspace switch's packet sockets' drops now; None if ``ss`` cannot tell."""
    try:
        res = subprocess.run(["ss", "-0", "-m", "-p", "-n"], capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if res.returncode != 0:
        return None
    return parse_drops(res.stdout)
