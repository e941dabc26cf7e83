"""The controller's decisions: learning, forwarding, flooding, discovery and host moves.

A plain class with no os-ken import (Faucet's valve, not Ryu's simple_switch): every input is a
method call with the time passed in, every output a list of controller/messages.py objects.

Pipeline per switch (tables in messages.py):
- table 0: discovery probes -> controller; frames from another switch -> table 1; frames from a
  learnt host at its own port -> table 1; anything else (an unknown or moved source) ->
  controller. This is what makes a host that reappears elsewhere visible at once.
- table 1: a flow per known MAC towards it (its port, or the next hop of a shortest path);
  unknown destinations -> table 2.
- table 2: per input port, flood to the edge ports and the spanning-tree ports except that input
  port; frames arriving on a link that is not on the tree are not flooded (no loops).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from controller.graph import SwitchGraph
from controller.hosts import HostTable, Location, Sighting
from controller.messages import (
    P_HOST,
    P_LINK,
    P_MISS,
    P_PROBE,
    T_DST,
    T_FLOOD,
    T_SRC,
    Barrier,
    FlowMod,
    Message,
    PacketOut,
)

log = logging.getLogger(__name__)

PROBE_TYPE = 0x88B5                     # IEEE local experimental ethertype
PROBE_DST = bytes.fromhex("010a0a0a0a0a")
PROBE_MAGIC = b"WMDISC"
PROBE = struct.Struct("!6sQI")          # magic, dpid, port
ETH = struct.Struct("!6s6sH")
VLAN_TYPES = (0x8100, 0x88A8)
# Frames a host sends that may teach us where it is; anything else is forwarded, not learnt.
LEARN_TYPES = frozenset({0x0800, 0x0806, 0x8035, 0x86DD})
RARP = 0x8035
CONTROLLER_MAC = bytes.fromhex("020a0a0a0a0a")


def mac_str(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


@dataclass(frozen=True)
class Frame:
    dst: str
    src: str
    ethertype: int
    multicast_dst: bool
    valid_src: bool             # unicast, not all-zero


def parse_frame(data: bytes) -> Frame | None:
    """The Ethernet header of ``data`` (one VLAN tag skipped); None when it is too short."""
    if len(data) < ETH.size:
        return None
    dst, src, etype = ETH.unpack_from(data)
    if etype in VLAN_TYPES:
        if len(data) < ETH.size + 4:
            return None
        (etype,) = struct.unpack_from("!H", data, ETH.size + 2)
    return Frame(mac_str(dst), mac_str(src), etype, bool(dst[0] & 1),
                 not src[0] & 1 and any(src))


def probe_frame(dpid: int, port: int) -> bytes:
    return PROBE_DST + CONTROLLER_MAC + struct.pack("!H", PROBE_TYPE) + \
        PROBE.pack(PROBE_MAGIC, dpid, port)


def parse_probe(data: bytes) -> tuple[int, int] | None:
    off = ETH.size
    if len(data) < off + PROBE.size:
        return None
    magic, dpid, port = PROBE.unpack_from(data, off)
    return (dpid, port) if magic == PROBE_MAGIC else None


@dataclass
class PendingConfirm:
    """A decision whose flow-mods are out; done when every switch answered its barrier."""

    record: dict
    waiting: set[int]
    last_reply: float = 0.0     # time of the latest barrier reply (the flow-mods' send time first)


@dataclass
class Fabric:
    hold_s: float = 1.0
    emit: Callable[[dict], None] = field(default=lambda event: None)  # event log sink
    graph: SwitchGraph = field(default_factory=SwitchGraph)
    hosts: HostTable = field(init=False)
    pending: dict[int, PendingConfirm] = field(default_factory=dict)  # barrier tag => decision
    counters: dict[str, int] = field(default_factory=lambda: {
        "packet_in": 0, "malformed": 0, "bad_source": 0, "not_learnt": 0, "probe": 0,
        "learn": 0, "move": 0, "held": 0})
    _tag: int = 0

    def __post_init__(self) -> None:
        self.hosts = HostTable(hold_s=self.hold_s)

    # -- switches and links ------------------------------------------------------------------
    def switch_up(self, now: float, dpid: int, ports: set[int]) -> list[Message]:
        """A switch connected (or reconnected): clear it, install the base pipeline, probe."""
        self.graph.add_switch(dpid, ports)
        for mac in self.hosts.forget_switch(dpid):
            log.info("forgot %s: its switch %016x reconnected", mac, dpid)
        msgs: list[Message] = [FlowMod(dpid, t, 0, (), command="delete")
                               for t in (T_SRC, T_DST, T_FLOOD)]
        msgs += [
            FlowMod(dpid, T_SRC, P_PROBE, (("eth_type", PROBE_TYPE),), to_controller=True),
            FlowMod(dpid, T_SRC, P_MISS, (), to_controller=True),
            FlowMod(dpid, T_DST, P_MISS, (), goto=T_FLOOD),
        ]
        # A reconnecting switch keeps its links in the graph (probes will confirm or re-cable
        # them): its link rules and the flows towards hosts elsewhere are put back at once.
        msgs += [self._link_rule(dpid, p) for p in sorted(self.graph.links.get(dpid, {}))]
        msgs += self._flood_flows()
        msgs += self._all_host_flows()
        msgs += self.probes(dpid)
        self.emit({"event": "switch_up", "t": now, "dpid": dpid, "ports": sorted(ports)})
        return msgs

    def switch_down(self, now: float, dpid: int) -> list[Message]:
        self.graph.remove_switch(dpid)
        self.hosts.forget_switch(dpid)
        for tag in [t for t, p in self.pending.items() if dpid in p.waiting]:
            pending = self.pending[tag]
            pending.waiting.discard(dpid)
            pending.record.setdefault("switches_lost", []).append(dpid)
            if not pending.waiting:
                self._finish(tag, pending.last_reply)
        self.emit({"event": "switch_down", "t": now, "dpid": dpid})
        return self._flood_flows() + self._all_host_flows()

    def port_changed(self, now: float, dpid: int, port: int, up: bool) -> list[Message]:
        """A port was added to or removed from a switch (a host re-plugged elsewhere). Hosts
        learnt there stay until they are seen somewhere else (a move)."""
        ports = self.graph.ports.get(dpid)
        if ports is None:
            return []
        if up:
            ports.add(port)
        else:
            ports.discard(port)
            peer = self.graph.remove_link(dpid, port)
            # Both ends stop being link ports: their table-0 admit rules go, so a host plugged
            # into either is seen by the controller (and learnt) again.
            link_rules = [FlowMod(d, T_SRC, P_LINK, (("in_port", p),), command="delete")
                          for d, p in ((dpid, port), *((peer,) if peer else ()))]
        self.emit({"event": "port_up" if up else "port_down", "t": now, "dpid": dpid,
                   "port": port})
        msgs = self._flood_flows()
        if up:
            return msgs + self.probes(dpid)
        return link_rules + msgs + self._all_host_flows()

    def probes(self, dpid: int | None = None) -> list[Message]:
        """Discovery frames out of every port of ``dpid`` (or of every switch)."""
        dpids = [dpid] if dpid is not None else sorted(self.graph.ports)
        return [PacketOut(d, None, (p,), probe_frame(d, p))
                for d in dpids for p in sorted(self.graph.ports.get(d, ()))]

    def _link_seen(self, now: float, a: int, a_port: int, b: int, b_port: int) -> list[Message]:
        if not self.graph.add_link(a, a_port, b, b_port):
            return []
        for mac in self.hosts.forget_port((a, a_port)) + self.hosts.forget_port((b, b_port)):
            log.info("forgot %s: learnt on a port that joins two switches", mac)
        self.emit({"event": "link", "t": now, "a": [a, a_port], "b": [b, b_port],
                   "links": self.graph.link_count()})
        msgs: list[Message] = [self._link_rule(d, p) for d, p in ((a, a_port), (b, b_port))]
        return msgs + self._flood_flows() + self._all_host_flows()

    @staticmethod
    def _link_rule(dpid: int, port: int) -> FlowMod:
        """Table 0: frames from another switch are admitted without learning."""
        return FlowMod(dpid, T_SRC, P_LINK, (("in_port", port),), goto=T_DST)

    def _flood_flows(self) -> list[Message]:
        """Table 2 on every switch, rebuilt whole (topology changes are rare)."""
        tree = self.graph.tree_ports()
        msgs: list[Message] = []
        for dpid, ports in sorted(self.graph.ports.items()):
            flood = self.graph.flood_ports(dpid, tree)
            msgs.append(FlowMod(dpid, T_FLOOD, 0, (), command="delete"))
            for port in sorted(ports):
                out = tuple(sorted(flood - {port})) if port in flood else ()
                msgs.append(FlowMod(dpid, T_FLOOD, P_HOST, (("in_port", port),), output=out))
        return msgs

    # -- hosts ------------------------------------------------------------------------------
    def _dst_flows(self, mac: str, at: Location) -> list[FlowMod]:
        """Table 1 on every switch: towards ``mac`` at ``at`` (an add replaces the old flow)."""
        host_dpid, host_port = at
        hops = self.graph.next_hops(host_dpid)
        msgs = [FlowMod(host_dpid, T_DST, P_HOST, (("eth_dst", mac),), output=(host_port,))]
        msgs += [FlowMod(d, T_DST, P_HOST, (("eth_dst", mac),), output=(port,))
                 for d, port in sorted(hops.items())]
        return msgs

    def _host_flows(self, mac: str, at: Location) -> list[FlowMod]:
        dpid, port = at
        return [FlowMod(dpid, T_SRC, P_HOST, (("in_port", port), ("eth_src", mac)), goto=T_DST),
                *self._dst_flows(mac, at)]

    def _all_host_flows(self) -> list[Message]:
        msgs: list[Message] = []
        for mac, entry in sorted(self.hosts.hosts.items()):
            msgs += self._host_flows(mac, entry.location)
        return msgs

    def _confirm(self, now: float, msgs: list[Message], record: dict) -> list[Message]:
        """Barriers after ``msgs`` on every switch they touch; the record is emitted when all
        replies are in: ``flow_convergence_ms`` (packet-in to the last barrier reply),
        ``dest_convergence_ms`` (to the reply of the host's own switch), ``barrier_ms`` (each)."""
        dpids = sorted({m.dpid for m in msgs if isinstance(m, FlowMod)})
        self._tag += 1
        record.update(t_flowmods_sent=now, n_flowmods=sum(isinstance(m, FlowMod) for m in msgs),
                      switches=dpids)
        self.pending[self._tag] = PendingConfirm(record, set(dpids), now)
        return msgs + [Barrier(d, self._tag) for d in dpids]

    def barrier_reply(self, now: float, dpid: int, tag: int) -> dict | None:
        """A switch confirmed; returns the finished record once the last one has."""
        pending = self.pending.get(tag)
        if pending is None:
            return None
        if dpid not in pending.waiting:
            return None
        pending.waiting.discard(dpid)
        pending.last_reply = now
        rec = pending.record
        rec.setdefault("barrier_ms", {})[str(dpid)] = (now - rec["t_packet_in"]) * 1e3
        if pending.waiting:
            return None
        return self._finish(tag, now)

    def _finish(self, tag: int, now: float) -> dict:
        """Emit a decision whose every live switch confirmed (``switches_lost`` lists those that
        disconnected before answering; the times then stop at the last reply received)."""
        rec = self.pending.pop(tag).record
        rec["t_barrier_done"] = now
        rec["flow_convergence_ms"] = (now - rec["t_packet_in"]) * 1e3
        # The switch the host is now plugged into: once it confirmed, the host is admitted and
        # reachable from its own site; the others (maybe across the WAN) follow.
        rec["dest_convergence_ms"] = rec.get("barrier_ms", {}).get(str(rec["to"][0]))
        self.emit(rec)
        return rec

    def _apply(self, now: float, s: Sighting, ethertype: int | None) -> list[Message]:
        if s.kind == "new":
            self.counters["learn"] += 1
            msgs: list[Message] = list(self._host_flows(s.mac, s.location))
            record = {"event": "learn", "mac": s.mac, "to": list(s.location)}
        else:
            self.counters["move"] += 1
            old_dpid, old_port = s.previous
            # The stale source entry at the old port goes (deleted on every switch, so nothing
            # anywhere still admits this MAC from its old place); destination flows are replaced.
            msgs = [FlowMod(d, T_SRC, P_HOST, (("eth_src", s.mac),), command="delete")
                    for d in sorted(self.graph.ports)]
            msgs += self._host_flows(s.mac, s.location)
            record = {"event": "move", "mac": s.mac, "from": [old_dpid, old_port],
                      "to": list(s.location)}
        record.update(t_packet_in=now, ethertype=ethertype)
        return self._confirm(now, msgs, record)

    def tick(self, now: float) -> list[Message]:
        """Moves the flapping guard held back whose hold has now expired."""
        msgs: list[Message] = []
        for s in self.hosts.due_pending(now):
            msgs += self._apply(now, s, None)
        return msgs

    # -- packets ----------------------------------------------------------------------------
    def packet_in(self, now: float, dpid: int, in_port: int, data: bytes) -> list[Message]:
        """A frame a switch could not place (table-0 miss or probe)."""
        self.counters["packet_in"] += 1
        frame = parse_frame(data)
        if frame is None or dpid not in self.graph.ports:
            self.counters["malformed"] += 1
            return []
        if frame.ethertype == PROBE_TYPE:
            self.counters["probe"] += 1
            origin = parse_probe(data)
            if origin is None or origin[0] not in self.graph.ports:
                return []
            return self._link_seen(now, origin[0], origin[1], dpid, in_port)
        if not frame.valid_src:
            self.counters["bad_source"] += 1
            return []
        msgs: list[Message] = []
        if not self.graph.is_link_port(dpid, in_port):
            if frame.ethertype in LEARN_TYPES:
                sighting = self.hosts.see(now, frame.src, (dpid, in_port))
                if sighting.kind in ("new", "move"):
                    msgs += self._apply(now, sighting, frame.ethertype)
                elif sighting.kind == "held":
                    self.counters["held"] += 1
            else:
                self.counters["not_learnt"] += 1
        return msgs + self._forward(dpid, in_port, frame, data)

    def _forward(self, dpid: int, in_port: int, frame: Frame, data: bytes) -> list[Message]:
        """Send this one frame on its way from here (the flows take the following ones)."""
        dst = None if frame.multicast_dst else self.hosts.get(frame.dst)
        if dst is not None:
            if dst.location[0] == dpid:
                out = (dst.location[1],)
            else:
                hop = self.graph.next_hops(dst.location[0]).get(dpid)
                out = (hop,) if hop is not None else ()
        else:
            flood = self.graph.flood_ports(dpid)
            out = tuple(sorted(flood - {in_port})) if in_port in flood else ()
        out = tuple(p for p in out if p != in_port)
        return [PacketOut(dpid, in_port, out, data)] if out else []

    def status(self) -> dict:
        return {"switches": sorted(self.graph.ports), "links": self.graph.link_count(),
                "hosts": {m: list(e.location) for m, e in sorted(self.hosts.hosts.items())},
                "counters": dict(self.counters), "pending_confirms": len(self.pending)}
