"""Re-plugging a host (a VM's network identity) into another switch, as a migration does.

The host's namespace and its processes live on; only its cable moves: the veth to the old switch
is removed (its OVS port deleted first) and a new veth to the new switch is made, with the same
MAC and IP. TCP connections inside survive, as under vMotion; neighbour entries on the old
interface go with it and are re-learnt.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


class MoveError(RuntimeError):
    """The host could not be re-plugged (unknown host or switch, not plugged where expected)."""


def current_switch(net: Any, host: Any) -> Any:
    for link in net.net.links:
        for mine, other in ((link.intf1, link.intf2), (link.intf2, link.intf1)):
            if mine.node is host and other.node in net.net.switches:
                return other.node
    raise MoveError(f"{host.name} is not plugged into any switch")


def move_host(net: Any, host_name: str, to_switch: str) -> str:
    """Unplug ``host_name`` from its switch and plug it into ``to_switch``; returns the name of
    its new interface. MAC and IP are kept."""
    host = net.net.get(host_name)
    new_sw = net.net.get(to_switch)
    if host is None or new_sw is None or new_sw not in net.net.switches:
        raise MoveError(f"cannot move {host_name!r} to {to_switch!r}: unknown host or switch")
    old_sw = current_switch(net, host)
    if old_sw is new_sw:
        raise MoveError(f"{host_name} is already plugged into {to_switch}")
    intf = host.defaultIntf()
    mac, ip, prefix = intf.MAC(), intf.IP(), intf.prefixLen
    (link,) = net.net.linksBetween(host, old_sw)
    old_sw.detach(link.intf2 if link.intf1.node is host else link.intf1)
    net.net.delLink(link)
    new = net.net.addLink(host, new_sw)
    host_intf = new.intf1 if new.intf1.node is host else new.intf2
    sw_intf = new.intf2 if host_intf is new.intf1 else new.intf1
    host_intf.setMAC(mac)
    host_intf.setIP(ip, prefix)
    net.configure_new_link(host, host_intf, sw_intf)
    new_sw.attach(sw_intf)
    log.info("moved %s (%s, %s) from %s to %s as %s", host_name, mac, ip, old_sw.name,
             new_sw.name, host_intf.name)
    return host_intf.name
