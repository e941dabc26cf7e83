"""A QEMU guest's NIC as a port of a site's switch: a tap, as a hypervisor's vSwitch has it.

The tap is made in the root namespace (where the switches' ports are) by opening
``/dev/net/tun`` and handed to QEMU as an open descriptor, so QEMU itself can run inside the
hypervisor's namespace (where its migration stream starts) and still own the NIC. The tap is not
persistent: it disappears when the last descriptor closes, i.e. when QEMU exits, so a crashed run
leaves no interface behind (the switch goes with the network). Configured like every other port
(MTU, transmit offloads off on the userspace datapath).
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
from dataclasses import dataclass
from typing import Any

from ground.config import check_name

log = logging.getLogger(__name__)

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
TAP_NAME_MAX = 15          # IFNAMSIZ - 1


@dataclass
class Tap:
    name: str
    fd: int                # ours until handed over (``close``d once the process holds it)
    switch: str


def open_tap(name: str) -> int:
    """A new tap named ``name`` in this process's namespace; returns its descriptor."""
    check_name("tap", name, TAP_NAME_MAX)
    fd = os.open("/dev/net/tun", os.O_RDWR)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    os.set_inheritable(fd, True)
    return fd


def plug_tap(net: Any, name: str, switch: str) -> Tap:
    """A tap named ``name`` made and plugged into ``switch`` of ``net`` (a ``WanNetwork``),
    configured like the network's other ports."""
    sw = net.net.get(switch)
    if sw is None or sw not in net.net.switches:
        raise ValueError(f"no switch {switch!r} to plug tap {name!r} into")
    fd = open_tap(name)
    try:
        net.configure_port(name)
        sw.attach(name)
    except BaseException:
        os.close(fd)
        raise
    log.info("tap %s plugged into %s", name, switch)
    return Tap(name, fd, switch)


def release(tap: Tap) -> None:
    """Our descriptor closed (once QEMU holds its own, or when it never started)."""
    if tap.fd >= 0:
        os.close(tap.fd)
        tap.fd = -1


def unplug_tap(net: Any, tap: Tap) -> None:
    """The port removed from its switch and our descriptor closed; the tap itself goes when
    its last holder (QEMU) exits."""
    release(tap)
    sw = net.net.get(tap.switch)
    if sw is not None:
        sw.vsctl("--if-exists", "del-port", tap.switch, tap.name)
