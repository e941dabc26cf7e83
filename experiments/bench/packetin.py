"""Packet-in handling rate: parse the OpenFlow packet-in, decide (Fabric), encode and serialize
every flow-mod, packet-out and barrier it answers with — the controller's whole per-packet path
except the TCP write, on a fake datapath.

Three kinds of packet-in, measured separately: ``learn`` (a new MAC: flows on every switch and a
barrier each), ``move`` (a known MAC at another edge port: deletes everywhere, new flows,
barriers) and ``forward`` (a known source whose frame still reached the controller, e.g. before
its flows landed: a packet-out only).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import Any

from os_ken.ofproto import ofproto_parser, ofproto_v1_3, ofproto_v1_3_parser

from controller import ofmsg
from controller.fabric import Fabric

ETH_ARP = bytes.fromhex("0806")
BCAST = b"\xff" * 6


class FakeDatapath:
    """What os-ken's Datapath offers the app, serializing instead of writing to a socket."""

    ofproto = ofproto_v1_3
    ofproto_parser = ofproto_v1_3_parser

    def __init__(self, dpid: int) -> None:
        self.id = dpid
        self.xid = 0
        self.sent_msgs = 0
        self.sent_bytes = 0

    def set_xid(self, msg: Any) -> None:
        self.xid += 1
        msg.set_xid(self.xid)

    def send_msg(self, msg: Any) -> None:
        if msg.xid is None:
            self.set_xid(msg)
        msg.serialize()
        self.sent_msgs += 1
        self.sent_bytes += len(msg.buf)


def mac(i: int) -> bytes:
    return bytes([0x02, 0, (i >> 24) & 0xFF, (i >> 16) & 0xFF, (i >> 8) & 0xFF, i & 0xFF])


def arp_frame(src: bytes) -> bytes:
    return BCAST + src + ETH_ARP + bytes(28)


def packet_in_bytes(dp: FakeDatapath, in_port: int, frame: bytes) -> bytes:
    """A switch's OFPT_PACKET_IN as it arrives on the wire (os-ken only parses these, so the
    bytes are laid out here: header, buffer id, length, reason, table, cookie, match, pad)."""
    ofp = dp.ofproto
    match = bytearray()
    dp.ofproto_parser.OFPMatch(in_port=in_port).serialize(match, 0)
    body = struct.pack("!IHBBQ", ofp.OFP_NO_BUFFER, len(frame), ofp.OFPR_NO_MATCH, 0, 0)
    length = 8 + len(body) + len(match) + 2 + len(frame)
    head = struct.pack("!BBHI", ofp.OFP_VERSION, ofp.OFPT_PACKET_IN, length, 0)
    return head + body + bytes(match) + bytes(2) + frame


def chain(n_switches: int) -> tuple[Fabric, dict[int, FakeDatapath]]:
    """``n_switches`` in a line (ports 1-2 edge, 3 to the previous switch, 4 to the next)."""
    fabric = Fabric(hold_s=0.0)
    dps = {d: FakeDatapath(d) for d in range(1, n_switches + 1)}
    for d in dps:
        fabric.switch_up(0.0, d, {1, 2, 3, 4})
    for d in range(1, n_switches):
        fabric.graph.add_link(d, 4, d + 1, 3)
    return fabric, dps


def handle(fabric: Fabric, dps: dict[int, FakeDatapath], barriers: dict, raw: bytes,
           dpid: int) -> None:
    dp = dps[dpid]
    version, msg_type, msg_len, xid = ofproto_parser.header(raw)
    msg = ofproto_parser.msg(dp, version, msg_type, msg_len, xid, raw)
    ofmsg.send(dps, barriers, fabric.packet_in(time.time(), dpid, msg.match["in_port"],
                                               bytes(msg.data)))


def measure(kind: str, n: int = 3000, n_switches: int = 4,
            clock: Callable[[], float] = time.perf_counter) -> dict:
    """Packet-ins per second of one kind (see the module docstring)."""
    fabric, dps = chain(n_switches)
    barriers: dict[tuple[int, int], int] = {}
    first, last = dps[1], dps[n_switches]
    learn = [packet_in_bytes(first, 1, arp_frame(mac(i))) for i in range(n)]
    if kind == "learn":
        work = [(raw, 1) for raw in learn]
    else:
        for raw in learn:
            handle(fabric, dps, barriers, raw, 1)
        if kind == "move":
            work = [(packet_in_bytes(last, 2, arp_frame(mac(i))), n_switches) for i in range(n)]
        elif kind == "forward":
            work = [(raw, 1) for raw in learn]
        else:
            raise ValueError(f"kind: got {kind!r}, expected learn, move or forward")
    sent0 = sum(dp.sent_msgs for dp in dps.values())
    t0 = clock()
    for raw, dpid in work:
        handle(fabric, dps, barriers, raw, dpid)
    elapsed = clock() - t0
    sent = sum(dp.sent_msgs for dp in dps.values()) - sent0
    return {"kind": kind, "packet_ins": n, "switches": n_switches, "seconds": elapsed,
            "per_s": n / elapsed, "openflow_msgs_per_packet_in": sent / n,
            "counters": dict(fabric.counters)}
