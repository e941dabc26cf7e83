"""Cutting a host off the network and plugging it back: the switch's end of its cable goes
down (the host sees no carrier; whatever it sends or is sent is lost), as when a hypervisor's
uplink fails. Its namespace, addresses and processes live on, so bringing the cable up again
lets TCP recover."""

from __future__ import annotations

import logging
import subprocess
from typing import Any

log = logging.getLogger(__name__)


class CutError(RuntimeError):
    """The host is unknown, plugged nowhere, or its cable could not be changed."""


def switch_ports(net: Any, host_name: str) -> list[str]:
    """The switch-side interfaces of every cable of ``host_name``."""
    host = net.net.get(host_name) if host_name in net.net.nameToNode else None
    if host is None:
        raise CutError(f"no host {host_name!r} in the network")
    ports = []
    for link in net.net.links:
        for mine, other in ((link.intf1, link.intf2), (link.intf2, link.intf1)):
            if mine.node is host and other.node in net.net.switches:
                ports.append(other.name)
    if not ports:
        raise CutError(f"{host_name} is not plugged into any switch")
    return ports


def set_cut(net: Any, host_name: str, cut: bool) -> list[str]:
    """Bring the switch's end of each of the host's cables down (``cut``) or up; returns them."""
    ports = switch_ports(net, host_name)
    for port in ports:
        cmd = ["ip", "link", "set", "dev", port, "down" if cut else "up"]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise CutError(f"`{' '.join(cmd)}` failed: {res.stderr.strip()}")
    log.info("%s %s (%s)", host_name, "cut off" if cut else "plugged back", ", ".join(ports))
    return ports
