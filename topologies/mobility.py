"""Re-plugging a host (a VM's network identity) into another switch, as a migration does.

The host's namespace and its processes live on; only its cable moves: the veth to the old switch
is removed (its OVS port deleted first) and a new veth to the new switch is made, with the same
MAC and IP. TCP connections inside survive, as under vMotion; neighbour entries on the old
interface go with it and are re-learnt.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
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


def _endpoints(net: Any, host_name: str, to_switch: str) -> tuple[Any, Any, Any]:
    """(host, the switch it is plugged into, the switch it goes to), checked."""
    host = net.net.get(host_name)
    new_sw = net.net.get(to_switch)
    if host is None or new_sw is None or new_sw not in net.net.switches:
        raise MoveError(f"cannot move {host_name!r} to {to_switch!r}: unknown host or switch")
    old_sw = current_switch(net, host)
    if old_sw is new_sw:
        raise MoveError(f"{host_name} is already plugged into {to_switch}")
    return host, old_sw, new_sw


def _plug(net: Any, host: Any, sw: Any, mac: str, ip: tuple[str, int] | None) -> Any:
    """A new cable from ``host`` (its end with ``mac``; with ``ip`` up and addressed, else
    down) to ``sw``, configured like the others; returns the host's interface."""
    new = net.net.addLink(host, sw)
    host_intf = new.intf1 if new.intf1.node is host else new.intf2
    sw_intf = new.intf2 if host_intf is new.intf1 else new.intf1
    host_intf.setMAC(mac)
    if ip is not None:
        host_intf.setIP(*ip)
    else:
        host.cmd(f"ip link set dev {host_intf.name} down")
    net.configure_new_link(host, host_intf, sw_intf)
    sw.attach(sw_intf)
    return host_intf


def _unplug(net: Any, host: Any, sw: Any, link: Any) -> None:
    sw.detach(link.intf2 if link.intf1.node is host else link.intf1)
    net.net.delLink(link)


def move_host(net: Any, host_name: str, to_switch: str) -> str:
    """Unplug ``host_name`` from its switch and plug it into ``to_switch``; returns the name of
    its new interface. MAC and IP are kept."""
    host, old_sw, new_sw = _endpoints(net, host_name, to_switch)
    intf = host.defaultIntf()
    mac, ip, prefix = intf.MAC(), intf.IP(), intf.prefixLen
    (link,) = net.net.linksBetween(host, old_sw)
    _unplug(net, host, old_sw, link)
    host_intf = _plug(net, host, new_sw, mac, (ip, prefix))
    log.info("moved %s (%s, %s) from %s to %s as %s", host_name, mac, ip, old_sw.name,
             new_sw.name, host_intf.name)
    return host_intf.name


@dataclass
class PreparedMove:
    """A second cable already plugged in at the destination switch, down, with the host's MAC:
    what a destination hypervisor has ready (the VM's NIC on its vSwitch) before switchover."""

    host: Any
    old_link: Any
    old_switch: Any
    new_intf: Any
    ip: str
    prefix: int


def prepare_move(net: Any, host_name: str, to_switch: str) -> PreparedMove:
    host, old_sw, new_sw = _endpoints(net, host_name, to_switch)
    intf = host.defaultIntf()
    (old_link,) = net.net.linksBetween(host, old_sw)
    host_intf = _plug(net, host, new_sw, intf.MAC(), None)
    return PreparedMove(host, old_link, old_sw, host_intf, intf.IP(), intf.prefixLen)


def complete_move(net: Any, prep: PreparedMove) -> str:
    """Switch the host to its prepared cable in one shell command (old down, address moved,
    new up); returns the new interface's name. ``unplug_old`` removes the old cable later."""
    host, new = prep.host, prep.new_intf
    old = prep.old_link.intf1 if prep.old_link.intf1.node is host else prep.old_link.intf2
    out = host.cmd(f"ip link set dev {old.name} down && ip addr flush dev {old.name} && "
                   f"ip addr add {prep.ip}/{prep.prefix} dev {new.name} && "
                   f"ip link set dev {new.name} up; echo __rc=$?")
    if not out.strip().endswith("__rc=0"):
        raise MoveError(f"switching {host.name} to {new.name} failed: {out.strip()}")
    new.ip, new.prefixLen = prep.ip, prep.prefix
    log.info("moved %s (%s) from %s to its prepared %s", host.name, prep.ip,
             prep.old_switch.name, new.name)
    return new.name


def unplug_old(net: Any, prep: PreparedMove) -> None:
    _unplug(net, prep.host, prep.old_switch, prep.old_link)


def cancel_move(net: Any, prep: PreparedMove) -> None:
    """A prepared move that will not happen (the migration failed): its new cable goes, the
    host stays plugged where it was."""
    new = prep.new_intf
    link = new.link
    other = link.intf2 if link.intf1 is new else link.intf1
    _unplug(net, prep.host, other.node, link)
