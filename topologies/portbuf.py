"""Receive buffers of the userspace switch's ports, so the emulated fabric loses no frames.

Why: with the userspace datapath, ovs-vswitchd reads each port (a veth) through an AF_PACKET
socket that it opens with the kernel's default receive buffer, ``net.core.rmem_default``
(208 KiB here: about 90 full-size frames, 11 ms at 100 Mbit/s). On a busy two-core machine the
switch is not always scheduled within that, and the frames that overflow are dropped where no
counter of the switch or of the veths shows them. Measured (migration at 150 ms, 100 Mbit/s):
about 700 frames lost in the destination site's switch and 1120 TCP retransmissions with the
default; none with 8 MiB. A WAN link configured without loss must not lose packets, so the
default is raised in the switch's namespace while the network's ports are created, and put
back when the network stops (``wanmig clean`` puts it back after a crash, from the registry).

OVS has no per-port option for this socket, hence the namespace-wide default; it only sizes
sockets that do not set their own (TCP uses ``tcp_rmem``), and memory is used only by frames
actually waiting.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

RMEM_DEFAULT = Path("/proc/sys/net/core/rmem_default")
PORT_RCVBUF = 8 << 20          # 8 MiB: 60 ms of full-size frames at 1 Gbit/s


def raise_to(current: int, wanted: int = PORT_RCVBUF) -> int | None:
    """The value to write, or None when the default is already large enough."""
    return wanted if current < wanted else None


def read_default(path: Path = RMEM_DEFAULT) -> int:
    return int(path.read_text().split()[0])


def write_default(value: int, path: Path = RMEM_DEFAULT) -> None:
    path.write_text(f"{value}\n")


def restore(record: dict | None, path: Path = RMEM_DEFAULT) -> bool:
    """Put the default back to ``record['before']`` if it still holds what was set
    (``record['set']``): another network raising it since, or an administrator changing it,
    is left alone. True if it was put back."""
    if not record:
        return False
    try:
        if read_default(path) != record["set"]:
            return False
        write_default(record["before"], path)
    except (OSError, ValueError, KeyError) as exc:
        log.warning("could not restore net.core.rmem_default: %s", exc)
        return False
    return True
