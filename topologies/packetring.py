"""Linux ``AF_PACKET`` memory-mapped rings (``TPACKET_V2``), the delay line's I/O.

An RX ring lets the kernel write frames straight into memory we share, each slot with a header
(status, length, kernel timestamp). Frames can be *held* in the ring (the slot stays ours until
we give it back), so a delayed frame is never copied by us: it is sent from its slot when due.

Layout (linux/if_packet.h): ``tpacket2_hdr`` is ``u32 status, u32 len, u32 snaplen, u16 mac,
u16 net, u32 sec, u32 nsec, u16 vlan_tci, u16 vlan_tpid, u8 pad[4]`` (32 bytes); the frame itself
starts ``mac`` bytes into the slot.
"""

from __future__ import annotations

import mmap
import socket
import struct
from dataclasses import dataclass

SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
PACKET_IGNORE_OUTGOING = 23
TPACKET_V2 = 1
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33
ETH_P_ALL = 0x0003

TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
HEADER = struct.Struct("<IIIHHII")     # status, len, snaplen, mac, net, sec, nsec
U32 = struct.Struct("<I")
BLOCK = 1 << 20


@dataclass(frozen=True)
class RingGeometry:
    frame_size: int
    frames: int

    @property
    def block_size(self) -> int:
        return max(BLOCK, self.frame_size)

    @property
    def blocks(self) -> int:
        return self.frames * self.frame_size // self.block_size

    @property
    def bytes(self) -> int:
        return self.blocks * self.block_size


def geometry(mtu: int, min_frames: int) -> RingGeometry:
    """Power-of-two frame slots big enough for ``mtu`` (headers, VLAN tag and padding included),
    at least ``min_frames`` of them, in whole 1 MiB blocks."""
    need = 96 + mtu + 18
    frame = 1 << (need - 1).bit_length()
    per_block = max(1, BLOCK // frame)
    blocks = max(1, -(-min_frames // per_block))
    return RingGeometry(frame, blocks * per_block)


def _req(g: RingGeometry) -> bytes:
    return struct.pack("<IIII", g.block_size, g.blocks, g.frame_size, g.frames)


class RxRing:
    """Frames arriving on one interface, in slots we read in order and give back in order."""

    def __init__(self, ifname: str, g: RingGeometry) -> None:
        # Protocol 0: capture nothing until the ring exists and the socket is bound to ifname.
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        self.sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
        self.sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        self.sock.setsockopt(SOL_PACKET, PACKET_RX_RING, _req(g))
        self.mm = mmap.mmap(self.sock.fileno(), g.bytes, mmap.MAP_SHARED,
                            mmap.PROT_READ | mmap.PROT_WRITE)
        self.view = memoryview(self.mm)
        self.g = g
        self.sock.bind((ifname, ETH_P_ALL))
        self.sock.setblocking(False)

    def drops(self) -> int:
        """Frames the kernel dropped since the last call (ring full); reading resets it."""
        raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        return struct.unpack("<II", raw)[1]

    def close(self) -> None:
        self.view.release()
        self.mm.close()
        self.sock.close()


def tx_socket(ifname: str, sndbuf: int) -> socket.socket:
    """A packet socket that only sends, out of ``ifname``. Frames waiting in the qdisc after it
    are charged to its send buffer, so ``sndbuf`` must exceed that queue (root may force it past
    ``net.core.wmem_max``)."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, sndbuf)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    sock.bind((ifname, 0))
    sock.setblocking(False)
    return sock
