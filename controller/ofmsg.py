"""Fabric decisions as OpenFlow 1.3 messages (os-ken's parser classes).

Kept apart from the app so the packet-in benchmark encodes exactly what the running controller
sends, with a fake datapath instead of a switch connection.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from os_ken.ofproto import ofproto_v1_3_parser

from controller.messages import Barrier, FlowMod, Message, PacketOut


@lru_cache(maxsize=4096)
def _match(parser: Any, fields: tuple) -> Any:
    """One OFPMatch per distinct match: building one converts MAC strings through netaddr, the
    largest cost of a move (the same match goes to every switch). Never mutated once built."""
    return parser.OFPMatch(**dict(fields))


def flow_mod(dp: Any, m: FlowMod) -> Any:
    ofp, parser = dp.ofproto, dp.ofproto_parser
    match = _match(parser, m.match) if parser is ofproto_v1_3_parser else \
        parser.OFPMatch(**dict(m.match))
    if m.command == "delete":
        return parser.OFPFlowMod(dp, table_id=m.table, command=ofp.OFPFC_DELETE,
                                 out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY, match=match)
    actions = [parser.OFPActionOutput(p) for p in m.output]
    if m.to_controller:
        actions.append(parser.OFPActionOutput(ofp.OFPP_CONTROLLER, ofp.OFPCML_NO_BUFFER))
    inst = [parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions)] if actions else []
    if m.goto is not None:
        inst.append(parser.OFPInstructionGotoTable(m.goto))
    return parser.OFPFlowMod(dp, table_id=m.table, command=ofp.OFPFC_ADD, priority=m.priority,
                             match=match, instructions=inst)


def packet_out(dp: Any, m: PacketOut) -> Any:
    ofp, parser = dp.ofproto, dp.ofproto_parser
    return parser.OFPPacketOut(
        dp, buffer_id=ofp.OFP_NO_BUFFER,
        in_port=m.in_port if m.in_port is not None else ofp.OFPP_CONTROLLER,
        actions=[parser.OFPActionOutput(p) for p in m.output], data=m.data)


def send(datapaths: dict[int, Any], barriers: dict[tuple[int, int], int],
         msgs: list[Message]) -> None:
    """Send each message to its switch (skipping switches not connected); a barrier's xid is
    remembered in ``barriers`` so its reply can be matched to the fabric's tag."""
    for m in msgs:
        dp = datapaths.get(m.dpid)
        if dp is None:
            continue
        if isinstance(m, FlowMod):
            dp.send_msg(flow_mod(dp, m))
        elif isinstance(m, PacketOut):
            dp.send_msg(packet_out(dp, m))
        elif isinstance(m, Barrier):
            req = dp.ofproto_parser.OFPBarrierRequest(dp)
            dp.set_xid(req)
            barriers[(m.dpid, req.xid)] = m.tag
            dp.send_msg(req)
