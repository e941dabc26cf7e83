"""controller/fabric.py: the controller's decisions, checked against simulated flow tables.

``FakeSwitches`` applies the returned FlowMods to per-switch tables with OpenFlow semantics
(an add replaces an identical table/priority/match; a delete is non-strict) and can push a
frame through a switch's pipeline; ``Net`` wires switches together and feeds discovery probes
back to the fabric as packet-ins.
"""

from __future__ import annotations

import struct
from collections import deque

import pytest

from controller.fabric import (
    PROBE_DST,
    PROBE_TYPE,
    Fabric,
    parse_frame,
    parse_probe,
    probe_frame,
)
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
    PacketOut,
)

BCAST = "ff:ff:ff:ff:ff:ff"
M = "02:00:00:00:00:0a"
H = "02:00:00:00:00:0b"
G = "02:00:00:00:00:0c"
ARP, RARP, IPV4 = 0x0806, 0x8035, 0x0800


def raw(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def eth(dst: str, src: str, etype: int, payload: bytes = bytes(28)) -> bytes:
    return raw(dst) + raw(src) + struct.pack("!H", etype) + payload


def arp(src: str) -> bytes:
    return eth(BCAST, src, ARP)


def rarp(src: str) -> bytes:
    return eth(BCAST, src, RARP)


def fields_of(fm: FlowMod) -> dict:
    return dict(fm.match)


def find(msgs, dpid=None, table=None, priority=None, command="add", **match) -> list[FlowMod]:
    """FlowMods whose match is exactly ``match`` (all of them if no match is given)."""
    out = []
    for m in msgs:
        if not isinstance(m, FlowMod) or m.command != command:
            continue
        if dpid is not None and m.dpid != dpid or table is not None and m.table != table:
            continue
        if priority is not None and m.priority != priority:
            continue
        if match and fields_of(m) != match:
            continue
        out.append(m)
    return out


class FakeSwitches:
    """Flow tables per switch, as the messages leave them."""

    def __init__(self) -> None:
        self.tables: dict[int, dict[tuple, FlowMod]] = {}
        self.packet_outs: list[PacketOut] = []
        self.barriers: list[Barrier] = []

    @staticmethod
    def key(fm: FlowMod) -> tuple:
        return fm.table, fm.priority, tuple(sorted(fm.match, key=lambda kv: kv[0]))

    def apply(self, msgs) -> None:
        for m in msgs:
            if isinstance(m, FlowMod):
                t = self.tables.setdefault(m.dpid, {})
                if m.command == "delete":
                    want = set(m.match)
                    for k in [k for k, fm in t.items()
                              if fm.table == m.table and want <= set(fm.match)]:
                        del t[k]
                else:
                    assert m.command == "add", m
                    t[self.key(m)] = m
            elif isinstance(m, PacketOut):
                self.packet_outs.append(m)
            elif isinstance(m, Barrier):
                self.barriers.append(m)
            else:
                raise AssertionError(f"unknown message {m!r}")

    def flows(self, dpid: int, table: int | None = None, **match) -> list[FlowMod]:
        got = [fm for fm in self.tables.get(dpid, {}).values()
               if table is None or fm.table == table]
        return [fm for fm in got if all(fields_of(fm).get(k) == v for k, v in match.items())]

    def dump(self, dpids=None) -> str:
        lines = []
        for dpid in sorted(dpids if dpids is not None else self.tables):
            lines.append(f"switch {dpid}:")
            for fm in sorted(self.tables.get(dpid, {}).values(),
                             key=lambda f: (f.table, -f.priority, repr(f.match))):
                what = [f"out={list(fm.output)}"] if fm.output else []
                what += [f"goto={fm.goto}"] if fm.goto is not None else []
                what += ["controller"] if fm.to_controller else []
                lines.append(f"  t{fm.table} p{fm.priority} {dict(fm.match)} -> "
                             f"{' '.join(what) or 'drop'}")
        return "\n".join(lines)

    def lookup(self, dpid: int, table: int, pkt: dict) -> FlowMod | None:
        hits = [fm for fm in self.flows(dpid, table)
                if all(pkt.get(k) == v for k, v in fm.match)]
        if not hits:
            return None
        top = max(fm.priority for fm in hits)
        best = [fm for fm in hits if fm.priority == top]
        assert len(best) == 1, f"overlapping rules {best}\n{self.dump([dpid])}"
        return best[0]

    def process(self, dpid: int, in_port: int, data: bytes) -> tuple[tuple[int, ...], bool]:
        """The ports a frame leaves ``dpid`` by, and whether it goes to the controller."""
        frame = parse_frame(data)
        pkt = {"in_port": in_port, "eth_src": frame.src, "eth_dst": frame.dst,
               "eth_type": frame.ethertype}
        out: list[int] = []
        to_ctl = False
        table = T_SRC
        for _ in range(8):
            fm = self.lookup(dpid, table, pkt)
            if fm is None:
                break
            out += fm.output
            to_ctl |= fm.to_controller
            if fm.goto is None:
                break
            assert fm.goto > table, f"goto backwards {fm}"
            table = fm.goto
        return tuple(out), to_ctl


TWO_PORTS = {1: {1, 2, 3}, 2: {1, 2, 3}}
TWO_WIRES = [((1, 3), (2, 3))]
# leaves 1, 2 (hosts on 1, 2; port 3 -> spine 3, port 4 -> spine 4); spines 3, 4
LS_PORTS = {1: {1, 2, 3, 4}, 2: {1, 2, 3, 4}, 3: {1, 2}, 4: {1, 2}}
LS_WIRES = [((1, 3), (3, 1)), ((1, 4), (4, 1)), ((2, 3), (3, 2)), ((2, 4), (4, 2))]


class Net:
    def __init__(self, ports, wires, hold_s: float = 1.0) -> None:
        self.ports = ports
        self.events: list[dict] = []
        self.fabric = Fabric(hold_s=hold_s, emit=self.events.append)
        self.sw = FakeSwitches()
        self.wires: dict[tuple[int, int], tuple[int, int]] = {}
        for a, b in wires:
            self.wires[a] = b
            self.wires[b] = a

    def send(self, now: float, msgs) -> list:
        """Apply ``msgs``; probes that reach a connected switch come back as packet-ins.
        Returns every message sent, including the ones the probes caused."""
        msgs = list(msgs)
        self.sw.apply(msgs)
        sent = list(msgs)
        for m in msgs:
            if isinstance(m, PacketOut) and m.in_port is None and parse_probe(m.data):
                for port in m.output:
                    peer = self.wires.get((m.dpid, port))
                    if peer is not None and peer[0] in self.fabric.graph.ports:
                        sent += self.send(now, self.fabric.packet_in(now, *peer, m.data))
        return sent

    def up(self, now: float = 0.0) -> Net:
        for dpid, ports in sorted(self.ports.items()):
            self.send(now, self.fabric.switch_up(now, dpid, ports))
        return self

    def packet_in(self, now: float, dpid: int, port: int, data: bytes) -> list:
        msgs = self.fabric.packet_in(now, dpid, port, data)
        self.send(now, msgs)
        return msgs

    def ack(self, now: float) -> list[dict]:
        """Every switch answers its outstanding barriers; the finished records."""
        done = []
        barriers, self.sw.barriers = self.sw.barriers, []
        for b in barriers:
            rec = self.fabric.barrier_reply(now, b.dpid, b.tag)
            if rec is not None:
                done.append(rec)
        return done

    def learn(self, now: float, mac: str, at: tuple[int, int]) -> None:
        self.packet_in(now, *at, arp(mac))
        assert self.fabric.hosts.get(mac).location == at
        self.ack(now)

    def flood(self, dpid: int, in_port: int, data: bytes, first_out=None):
        """Follow a frame through the installed flows from switch to switch.
        Returns (receptions per switch, edge ports it left by, controller copies)."""
        received = {dpid: 1}
        edge: list[tuple[int, int]] = []
        to_controller: list[tuple[int, int]] = []
        queue = deque([(dpid, in_port, first_out)])
        steps = 0
        while queue:
            steps += 1
            assert steps < 50, f"frame loops\n{self.sw.dump()}"
            cur, port, out = queue.popleft()
            if out is None:
                out, ctl = self.sw.process(cur, port, data)
                if ctl:
                    to_controller.append((cur, port))
            for p in out:
                peer = self.wires.get((cur, p))
                if peer is None:
                    edge.append((cur, p))
                else:
                    received[peer[0]] = received.get(peer[0], 0) + 1
                    queue.append((peer[0], peer[1], None))
        return received, edge, to_controller

    def link_rule_ports(self) -> dict[int, set[int]]:
        return {d: {fields_of(fm)["in_port"] for fm in self.sw.flows(d, T_SRC)
                    if fm.priority == P_LINK} for d in self.ports}

    def link_ports(self) -> dict[int, set[int]]:
        return {d: set(self.fabric.graph.links.get(d, {})) for d in self.ports}


def two() -> Net:
    return Net(TWO_PORTS, TWO_WIRES).up()


def leaf_spine() -> Net:
    return Net(LS_PORTS, LS_WIRES).up()


def by_type(msgs, kind) -> list:
    return [m for m in msgs if isinstance(m, kind)]


def barriers_follow_flowmods(msgs) -> None:
    """Each switch's barrier comes after every flow-mod sent to that switch."""
    for i, m in enumerate(msgs):
        if isinstance(m, Barrier):
            later = [x for x in msgs[i + 1:] if isinstance(x, FlowMod) and x.dpid == m.dpid]
            assert not later, f"flow-mods after the barrier to {m.dpid}: {later}"


# -- switch_up and discovery ------------------------------------------------------------------
def test_switch_up_installs_base_pipeline_and_probes():
    events: list[dict] = []
    f = Fabric(emit=events.append)
    msgs = f.switch_up(5.0, 1, {1, 2, 3})
    fms = by_type(msgs, FlowMod)
    dels = find(msgs, dpid=1, command="delete")
    assert {d.table for d in dels if d.match == ()} == {T_SRC, T_DST, T_FLOOD}
    probe_rule = find(msgs, 1, T_SRC, P_PROBE, eth_type=PROBE_TYPE)
    assert len(probe_rule) == 1 and probe_rule[0].to_controller and not probe_rule[0].output
    miss0 = [m for m in find(msgs, 1, T_SRC, P_MISS) if m.match == ()]
    assert len(miss0) == 1 and miss0[0].to_controller and miss0[0].goto is None
    miss1 = [m for m in find(msgs, 1, T_DST, P_MISS) if m.match == ()]
    assert len(miss1) == 1 and miss1[0].goto == T_FLOOD and not miss1[0].to_controller
    # the clearing comes before anything is added
    first_add = min(i for i, m in enumerate(msgs) if isinstance(m, FlowMod)
                    and m.command == "add")
    assert all(msgs.index(d) < first_add for d in dels[:3]), fms
    # a lone switch floods every port to every other one
    for port in (1, 2, 3):
        rule = find(msgs, 1, T_FLOOD, in_port=port)
        assert [r.output for r in rule] == [tuple(sorted({1, 2, 3} - {port}))]
    probes = by_type(msgs, PacketOut)
    assert sorted(p.output for p in probes) == [(1,), (2,), (3,)]
    for p in probes:
        assert p.dpid == 1 and p.in_port is None
        assert p.data == probe_frame(1, p.output[0])
        assert parse_probe(p.data) == (1, p.output[0])
        assert p.data[:6] == PROBE_DST
    assert events[-1]["event"] == "switch_up" and events[-1]["ports"] == [1, 2, 3]
    assert f.status()["switches"] == [1] and f.status()["links"] == 0


def test_discovery_creates_link_and_link_rules():
    net = Net(TWO_PORTS, TWO_WIRES)
    net.send(0.0, net.fabric.switch_up(0.0, 1, TWO_PORTS[1]))
    assert net.fabric.status()["links"] == 0               # switch 2 not up: probe lost
    sent = net.send(0.1, net.fabric.switch_up(0.1, 2, TWO_PORTS[2]))
    assert net.fabric.status()["links"] == 1
    assert net.fabric.graph.links == {1: {3: (2, 3)}, 2: {3: (1, 3)}}
    for dpid in (1, 2):
        rule = find(sent, dpid, T_SRC, P_LINK, in_port=3)
        assert len(rule) == 1 and rule[0].goto == T_DST, sent
    assert net.link_rule_ports() == {1: {3}, 2: {3}}, net.sw.dump()
    link_events = [e for e in net.events if e["event"] == "link"]
    assert len(link_events) == 1 and link_events[0]["links"] == 1
    assert {tuple(link_events[0]["a"]), tuple(link_events[0]["b"])} == {(1, 3), (2, 3)}
    # table 2 now floods over the link: host ports reach the link port and vice versa
    assert net.sw.process(1, 3, arp(M)) == ((1, 2), False), net.sw.dump()
    # probing again changes nothing
    again = net.send(1.0, net.fabric.probes())
    assert by_type(again, FlowMod) == []
    assert net.fabric.status()["links"] == 1
    assert net.fabric.counters["probe"] >= 2


def test_probe_arrives_in_probe_rule_not_in_link_rule():
    net = two()
    out, ctl = net.sw.process(1, 3, probe_frame(2, 3))
    assert ctl and out == (), net.sw.dump([1])
    out, ctl = net.sw.process(1, 1, probe_frame(9, 9))
    assert ctl and out == ()


# -- learning ----------------------------------------------------------------------------------
def test_learn_installs_flows_and_confirms():
    net = two()
    msgs = net.packet_in(10.0, 1, 1, arp(M))
    src = find(msgs, 1, T_SRC, P_HOST, in_port=1, eth_src=M)
    assert len(src) == 1 and src[0].goto == T_DST, msgs
    assert [m.output for m in find(msgs, 1, T_DST, P_HOST, eth_dst=M)] == [(1,)]
    assert [m.output for m in find(msgs, 2, T_DST, P_HOST, eth_dst=M)] == [(3,)]
    assert find(msgs, 2, T_SRC, eth_src=M) == []
    barriers = by_type(msgs, Barrier)
    assert sorted(b.dpid for b in barriers) == [1, 2]
    assert len({b.tag for b in barriers}) == 1
    barriers_follow_flowmods(msgs)
    # the broadcast itself is flooded from the controller
    outs = by_type(msgs, PacketOut)
    assert [(p.dpid, p.in_port, p.output, p.data) for p in outs] == [(1, 1, (2, 3), arp(M))]
    assert net.fabric.status()["hosts"] == {M: [1, 1]}
    assert net.fabric.counters["learn"] == 1
    assert net.fabric.status()["pending_confirms"] == 1

    tag = barriers[0].tag
    assert net.fabric.barrier_reply(10.002, 1, tag) is None
    assert net.fabric.barrier_reply(10.002, 1, tag + 100) is None      # unknown tag
    assert not [e for e in net.events if e["event"] == "learn"]
    rec = net.fabric.barrier_reply(10.005, 2, tag)
    learn = [e for e in net.events if e["event"] == "learn"]
    assert learn == [rec]
    assert rec["mac"] == M and rec["to"] == [1, 1] and rec["ethertype"] == ARP
    assert rec["flow_convergence_ms"] >= 0
    assert rec["flow_convergence_ms"] == pytest.approx(5.0)
    assert rec["switches"] == [1, 2] and rec["n_flowmods"] == len(by_type(msgs, FlowMod))
    assert net.fabric.status()["pending_confirms"] == 0
    assert net.fabric.barrier_reply(10.006, 2, tag) is None             # already done

    # the following frames stay in the switches
    assert net.sw.process(1, 1, arp(M)) == ((2, 3), False), net.sw.dump()
    assert net.sw.process(1, 3, eth(M, H, IPV4)) == ((1,), False), net.sw.dump()
    assert net.sw.process(2, 2, eth(M, H, IPV4)) == ((), True)   # H unknown: to the controller


def test_same_port_again_is_quiet():
    net = two()
    net.learn(1.0, M, (1, 1))
    msgs = net.packet_in(2.0, 1, 1, arp(M))
    assert by_type(msgs, FlowMod) == [] and by_type(msgs, Barrier) == []
    assert net.fabric.counters["learn"] == 1 and net.fabric.counters["move"] == 0


def test_unicast_between_learnt_hosts_follows_flows():
    net = two()
    net.learn(1.0, M, (1, 1))
    net.learn(1.1, H, (2, 2))
    received, edge, ctl = net.flood(1, 1, eth(H, M, IPV4))
    assert (received, edge, ctl) == ({1: 1, 2: 1}, [(2, 2)], []), net.sw.dump()
    received, edge, ctl = net.flood(2, 2, eth(M, H, IPV4))
    assert (received, edge, ctl) == ({2: 1, 1: 1}, [(1, 1)], []), net.sw.dump()
    # the controller sends a first frame to a known host straight there
    msgs = net.fabric.packet_in(1.2, 2, 2, eth(M, H, IPV4))
    assert [(p.dpid, p.output) for p in by_type(msgs, PacketOut)] == [(2, (3,))]


def test_no_learning_on_inter_switch_ports():
    net = two()
    net.learn(1.0, M, (1, 1))
    before = net.fabric.status()["hosts"]
    msgs = net.packet_in(2.0, 2, 3, arp(G))
    assert net.fabric.status()["hosts"] == before
    assert net.fabric.hosts.get(G) is None
    assert by_type(msgs, FlowMod) == [] and by_type(msgs, Barrier) == []
    assert [(p.dpid, p.in_port, p.output) for p in by_type(msgs, PacketOut)] == [(2, 3, (1, 2))]
    # a known host's frame seen on a link port does not move it either
    net.packet_in(2.1, 2, 3, rarp(M))
    assert net.fabric.hosts.get(M).location == (1, 1)
    assert net.fabric.counters["move"] == 0


def test_host_learnt_on_a_port_that_turns_out_to_be_a_link_is_forgotten():
    net = Net(TWO_PORTS, TWO_WIRES)
    net.send(0.0, net.fabric.switch_up(0.0, 1, TWO_PORTS[1]))
    net.send(0.0, net.fabric.switch_up(0.0, 2, set()))     # switch 2 has no ports yet
    net.packet_in(0.5, 1, 3, arp(G))                       # G is really behind switch 2
    assert net.fabric.hosts.get(G) is not None
    net.send(1.0, net.fabric.port_changed(1.0, 2, 3, True))   # probes out of 2:3
    assert net.fabric.status()["links"] == 1
    assert net.fabric.hosts.get(G) is None


# -- moves ---------------------------------------------------------------------------------------
def test_move_rewrites_flows_everywhere():
    net = two()
    net.learn(1.0, M, (1, 1))
    net.learn(1.1, H, (1, 2))
    assert net.sw.flows(1, T_SRC, in_port=1, eth_src=M)
    msgs = net.packet_in(20.0, 2, 1, rarp(M))
    assert net.fabric.counters["move"] == 1
    for dpid in (1, 2):
        d = find(msgs, dpid, T_SRC, command="delete", eth_src=M)
        assert len(d) == 1, msgs
    new_src = find(msgs, 2, T_SRC, P_HOST, in_port=1, eth_src=M)
    assert len(new_src) == 1 and new_src[0].goto == T_DST
    assert [m.output for m in find(msgs, 2, T_DST, P_HOST, eth_dst=M)] == [(1,)]
    assert [m.output for m in find(msgs, 1, T_DST, P_HOST, eth_dst=M)] == [(3,)]
    assert sorted(b.dpid for b in by_type(msgs, Barrier)) == [1, 2]
    barriers_follow_flowmods(msgs)

    # what the switches hold afterwards
    dump = net.sw.dump()
    assert net.sw.flows(1, T_SRC, in_port=1, eth_src=M) == [], dump
    assert net.sw.flows(1, T_SRC, eth_src=M) == [], dump
    assert [f.output for f in net.sw.flows(1, T_DST, eth_dst=M)] == [(3,)], dump
    assert [f.output for f in net.sw.flows(2, T_DST, eth_dst=M)] == [(1,)], dump
    assert len(net.sw.flows(2, T_SRC, in_port=1, eth_src=M)) == 1, dump
    assert net.sw.flows(1, T_SRC, eth_src=H), dump        # other hosts untouched
    # H's traffic to M now reaches the new place; M at its old port goes to the controller
    received, edge, ctl = net.flood(1, 2, eth(M, H, IPV4))
    assert (edge, ctl) == ([(2, 1)], []), dump
    assert net.sw.process(1, 1, eth(H, M, IPV4))[1] is True, dump

    rec, = net.ack(20.0125)
    assert rec in net.events
    assert rec["event"] == "move" and rec["mac"] == M
    assert rec["from"] == [1, 1] and rec["to"] == [2, 1]
    assert rec["ethertype"] == RARP
    assert rec["flow_convergence_ms"] == pytest.approx((20.0125 - 20.0) * 1000)
    assert net.fabric.status()["hosts"][M] == [2, 1]


def test_move_within_one_switch():
    net = two()
    net.learn(1.0, M, (1, 1))
    net.packet_in(5.0, 1, 2, rarp(M))
    dump = net.sw.dump()
    assert net.sw.flows(1, T_SRC, in_port=1, eth_src=M) == [], dump
    assert len(net.sw.flows(1, T_SRC, in_port=2, eth_src=M)) == 1, dump
    assert [f.output for f in net.sw.flows(1, T_DST, eth_dst=M)] == [(2,)], dump
    assert [f.output for f in net.sw.flows(2, T_DST, eth_dst=M)] == [(3,)], dump


@pytest.mark.parametrize("tick_every", [None, 0.05], ids=["no-tick", "tick"])
def test_flapping_guard_bounds_moves(tick_every):
    hold = 0.5
    net = Net(TWO_PORTS, TWO_WIRES, hold_s=hold).up()
    net.learn(0.0, M, (1, 1))
    tags: set[int] = set()
    next_tick = tick_every
    k = 0
    for k in range(1, 201):                                # every 10 ms for 2 s
        now = k * 0.01
        if tick_every is not None and now >= next_tick:
            msgs = net.fabric.tick(now)
            net.send(now, msgs)
            tags |= {b.tag for b in by_type(msgs, Barrier)}
            next_tick += tick_every
        msgs = net.packet_in(now, 1, 2 if k % 2 else 1, arp(M))
        tags |= {b.tag for b in by_type(msgs, Barrier)}
        net.ack(now)
    moves = net.fabric.counters["move"]
    assert len(tags) == moves
    assert 1 <= moves <= 2.0 / hold + 1, (moves, net.fabric.counters)
    assert net.fabric.counters["held"] > 50

    # a final sighting elsewhere is held, then applied by tick() after the hold
    entry = net.fabric.hosts.get(M)
    target = (1, 1) if entry.location == (1, 2) else (1, 2)
    now = 2.005
    assert now - entry.moved_at < hold
    net.packet_in(now, *target, arp(M))
    assert entry.location != target and entry.pending == target
    due = entry.moved_at + hold
    assert net.fabric.tick(due - 0.01) == []
    msgs = net.fabric.tick(due + 0.001)
    net.send(due + 0.001, msgs)
    assert entry.location == target
    assert net.fabric.counters["move"] == moves + 1
    src = find(msgs, 1, T_SRC, P_HOST, in_port=target[1], eth_src=M)
    assert len(src) == 1, msgs
    assert [f.output for f in net.sw.flows(1, T_DST, eth_dst=M)] == [(target[1],)], \
        net.sw.dump()
    rec, = net.ack(due + 0.004)
    assert rec["event"] == "move" and rec["to"] == list(target) and rec["ethertype"] is None
    assert rec["flow_convergence_ms"] == pytest.approx(3.0)
    assert net.fabric.tick(due + 5) == []


# -- flooding on a loop --------------------------------------------------------------------------
def test_leaf_spine_discovery():
    net = leaf_spine()
    assert net.fabric.status()["links"] == 4
    assert net.link_rule_ports() == {1: {3, 4}, 2: {3, 4}, 3: {1, 2}, 4: {1, 2}}, \
        net.sw.dump()


def test_tree_flooding_reaches_every_switch_once():
    net = leaf_spine()
    net.learn(1.0, M, (1, 1))
    frame = arp(M)
    # the following broadcasts stay in the switches
    received, edge, ctl = net.flood(1, 1, frame)
    dump = net.sw.dump()
    assert received == {1: 1, 2: 1, 3: 1, 4: 1}, dump
    assert sorted(edge) == [(1, 2), (2, 1), (2, 2)], dump
    assert ctl == [], dump
    # and from a host on the other leaf
    net.learn(1.5, H, (2, 2))
    received, edge, ctl = net.flood(2, 2, arp(H))
    assert received == {1: 1, 2: 1, 3: 1, 4: 1}, net.sw.dump()
    assert sorted(edge) == [(1, 1), (1, 2), (2, 1)], net.sw.dump()


def test_first_broadcast_sent_by_controller_reaches_every_switch_once():
    net = leaf_spine()
    msgs = net.packet_in(1.0, 2, 1, arp(G))
    out, = by_type(msgs, PacketOut)
    assert (out.dpid, out.in_port) == (2, 1)
    received, edge, ctl = net.flood(2, 1, out.data, first_out=out.output)
    assert received == {1: 1, 2: 1, 3: 1, 4: 1}, net.sw.dump()
    assert sorted(edge) == [(1, 1), (1, 2), (2, 2)], net.sw.dump()


def test_no_flooding_from_non_tree_link_ports():
    net = leaf_spine()
    net.learn(1.0, M, (1, 1))
    tree = net.fabric.graph.tree_ports()
    non_tree = [(d, p) for d in LS_PORTS for p in net.fabric.graph.links[d]
                if p not in tree[d]]
    assert len(non_tree) == 2, tree
    for dpid, port in non_tree:
        out, ctl = net.sw.process(dpid, port, arp(M))
        assert (out, ctl) == ((), False), f"{dpid}:{port}\n{net.sw.dump([dpid])}"
        msgs = net.fabric.packet_in(2.0, dpid, port, arp(G))
        assert by_type(msgs, PacketOut) == [], (dpid, port)
        assert net.fabric.hosts.get(G) is None
    # a unicast to a known host still crosses a non-tree link if that is the shortest way
    for dpid, port in non_tree:
        out, _ = net.sw.process(dpid, port, eth(M, H, IPV4))
        assert out, f"{dpid}:{port}\n{net.sw.dump([dpid])}"


def test_unicast_on_leaf_spine_takes_shortest_path():
    net = leaf_spine()
    net.learn(1.0, M, (1, 1))
    net.learn(1.0, H, (2, 2))
    received, edge, ctl = net.flood(2, 2, eth(M, H, IPV4))
    assert edge == [(1, 1)] and ctl == [], net.sw.dump()
    assert sum(received.values()) == 3, received             # leaf - spine - leaf


# -- malformed input -----------------------------------------------------------------------------
def vlan_truncated() -> bytes:
    return raw(BCAST) + raw(G) + struct.pack("!HH", 0x8100, 5)


def bad_magic_probe() -> bytes:
    good = probe_frame(2, 3)
    return good[:14] + b"XXDISC" + good[20:]


MALFORMED = {
    "empty": (1, 1, b"", "malformed"),
    "5 bytes": (1, 1, b"\x01\x02\x03\x04\x05", "malformed"),
    "13 bytes": (1, 1, arp(G)[:13], "malformed"),
    "truncated vlan": (1, 1, vlan_truncated(), "malformed"),
    "broadcast src": (1, 2, eth(BCAST, BCAST, ARP), "bad_source"),
    "multicast src": (1, 2, eth(BCAST, "01:00:5e:00:00:01", ARP), "bad_source"),
    "zero src": (1, 2, eth(BCAST, "00:00:00:00:00:00", ARP), "bad_source"),
    "unknown ethertype": (1, 2, eth(BCAST, G, 0x1234), "not_learnt"),
    "known mac, unknown ethertype, elsewhere": (2, 1, eth(BCAST, M, 0x1234), "not_learnt"),
    "probe bad magic": (1, 3, bad_magic_probe(), "probe"),
    "probe from unknown dpid": (1, 2, probe_frame(99, 1), "probe"),
    "probe too short": (1, 2, probe_frame(2, 3)[:20], "probe"),
    "unknown dpid": (99, 1, arp(G), "malformed"),
}


@pytest.mark.parametrize("dpid,port,data,counter", MALFORMED.values(), ids=list(MALFORMED))
def test_malformed_input(dpid, port, data, counter):
    net = two()
    net.learn(1.0, M, (1, 1))
    hosts = net.fabric.status()["hosts"]
    links = {d: dict(p) for d, p in net.fabric.graph.links.items()}
    before = dict(net.fabric.counters)
    msgs = net.fabric.packet_in(2.0, dpid, port, data)
    assert by_type(msgs, FlowMod) == [] and by_type(msgs, Barrier) == []
    assert net.fabric.status()["hosts"] == hosts
    assert net.fabric.graph.links == links
    assert net.fabric.counters[counter] == before[counter] + 1
    assert net.fabric.counters["packet_in"] == before["packet_in"] + 1
    changed = {k for k, v in net.fabric.counters.items() if v != before[k]}
    assert changed == {"packet_in", counter}, net.fabric.counters
    assert 99 not in net.fabric.status()["switches"]


def test_unlearnt_ethertype_is_still_forwarded():
    net = two()
    msgs = net.fabric.packet_in(1.0, 1, 2, eth(BCAST, G, 0x1234))
    assert [(p.dpid, p.output) for p in by_type(msgs, PacketOut)] == [(1, (1, 3))]
    assert net.fabric.hosts.get(G) is None


# -- port and switch changes ---------------------------------------------------------------------
def test_port_added_joins_flood_set():
    net = two()
    msgs = net.send(3.0, net.fabric.port_changed(3.0, 1, 4, True))
    dump = net.sw.dump([1])
    assert 4 in net.fabric.graph.edge_ports(1)
    for port in (1, 2, 3):
        rule, = net.sw.flows(1, T_FLOOD, in_port=port)
        assert 4 in rule.output, dump
    rule, = net.sw.flows(1, T_FLOOD, in_port=4)
    assert rule.output == (1, 2, 3), dump
    probes = [p for p in by_type(msgs, PacketOut) if p.in_port is None]
    assert (1, (4,)) in [(p.dpid, p.output) for p in probes]
    assert net.fabric.status()["links"] == 1
    # a host on the new port is learnt
    net.packet_in(3.5, 1, 4, arp(G))
    assert net.fabric.hosts.get(G).location == (1, 4)


def test_link_port_removed_removes_link():
    net = two()
    net.learn(1.0, M, (1, 1))
    net.send(3.0, net.fabric.port_changed(3.0, 1, 3, False))
    assert net.fabric.status()["links"] == 0
    assert net.fabric.graph.links == {1: {}, 2: {}}
    dump = net.sw.dump()
    assert net.sw.flows(1, T_FLOOD, in_port=3) == [], dump
    assert all(3 not in f.output for f in net.sw.flows(1, T_FLOOD)), dump
    # switch 2's port 3 is an edge port now: it is flooded to
    rule, = net.sw.flows(2, T_FLOOD, in_port=1)
    assert rule.output == (2, 3), dump
    assert any(e["event"] == "port_down" for e in net.events)
    assert net.fabric.port_changed(3.0, 42, 1, False) == []          # unknown switch


def test_link_port_removed_removes_link_rules():
    net = two()
    net.send(3.0, net.fabric.port_changed(3.0, 1, 3, False))
    assert net.link_rule_ports() == net.link_ports(), net.sw.dump()
    _, ctl = net.sw.process(2, 3, arp(G))
    assert ctl, net.sw.dump([2])


def test_reconnect_clears_switch_and_forgets_its_hosts():
    net = two()
    net.learn(1.0, M, (1, 1))
    net.learn(1.0, H, (2, 1))
    msgs = net.fabric.switch_up(5.0, 1, {1, 2, 3})
    clears = [m for m in find(msgs, 1, command="delete") if m.match == ()]
    assert {m.table for m in clears} == {T_SRC, T_DST, T_FLOOD}
    first_add = min(i for i, m in enumerate(msgs)
                    if isinstance(m, FlowMod) and m.dpid == 1 and m.command == "add")
    assert all(msgs.index(m) < first_add for m in clears)
    # the other switch keeps its tables 0 and 1 (table 2 is rebuilt everywhere)
    assert {m.table for m in find(msgs, 2, command="delete") if m.match == ()} <= {T_FLOOD}
    assert net.fabric.hosts.get(M) is None
    assert net.fabric.hosts.get(H).location == (2, 1)
    net.send(5.0, msgs)
    dump = net.sw.dump([1])
    assert net.sw.flows(1, T_SRC, eth_src=M) == [], dump
    assert net.sw.flows(1, T_DST, eth_dst=M) == [], dump
    # M is relearnt when it speaks again
    net.packet_in(6.0, 1, 1, arp(M))
    assert net.fabric.hosts.get(M).location == (1, 1)
    assert net.fabric.counters["learn"] == 3


def reconnect(net: Net, now: float) -> None:
    net.send(now, net.fabric.switch_up(now, 1, {1, 2, 3}))
    net.send(now + 0.5, net.fabric.probes())              # the periodic probes, both ways


def test_reconnect_reinstalls_link_rules():
    net = two()
    reconnect(net, 5.0)
    assert net.link_rule_ports() == {1: {3}, 2: {3}}, net.sw.dump()
    _, ctl = net.sw.process(1, 3, eth(BCAST, H, IPV4))
    assert not ctl, net.sw.dump([1])


def test_reconnect_reinstalls_flows_to_hosts_elsewhere():
    net = two()
    net.learn(1.0, H, (2, 1))
    reconnect(net, 5.0)
    assert [f.output for f in net.sw.flows(1, T_DST, eth_dst=H)] == [(3,)], net.sw.dump([1])


def test_switch_down_forgets_switch():
    net = two()
    net.learn(1.0, M, (1, 1))
    net.learn(1.0, H, (2, 1))
    msgs = net.fabric.switch_down(3.0, 2)
    assert net.fabric.status()["switches"] == [1]
    assert net.fabric.status()["links"] == 0
    assert net.fabric.hosts.get(H) is None
    assert all(m.dpid == 1 for m in msgs)
    net.send(3.0, msgs)
    rule, = net.sw.flows(1, T_FLOOD, in_port=1)
    assert rule.output == (2, 3), net.sw.dump([1])


def test_switch_down_completes_confirms_waiting_for_it():
    net = two()
    msgs = net.packet_in(1.0, 1, 1, arp(M))
    tag = by_type(msgs, Barrier)[0].tag
    assert net.fabric.barrier_reply(1.002, 1, tag) is None
    net.fabric.switch_down(1.5, 2)
    assert net.fabric.status()["pending_confirms"] == 0
    assert [e["event"] for e in net.events if e.get("mac") == M] == ["learn"]


# -- parsing -------------------------------------------------------------------------------------
@pytest.mark.parametrize("tpid", [0x8100, 0x88A8])
def test_parse_frame_vlan(tpid):
    tagged = raw(BCAST) + raw(M) + struct.pack("!HHH", tpid, 0x0064, ARP) + bytes(28)
    f = parse_frame(tagged)
    assert f is not None
    assert (f.dst, f.src, f.ethertype) == (BCAST, M, ARP)
    assert f.multicast_dst and f.valid_src
    assert parse_frame(tagged[:17]) is None                 # the tag's ethertype cut short
    assert parse_frame(tagged[:18]).ethertype == ARP


def test_parse_frame_flags():
    f = parse_frame(eth(H, M, IPV4))
    assert (f.ethertype, f.multicast_dst, f.valid_src) == (IPV4, False, True)
    assert parse_frame(eth(H, "03:00:00:00:00:01", IPV4)).valid_src is False
    assert parse_frame(eth(H, "00:00:00:00:00:00", IPV4)).valid_src is False
    assert parse_frame(eth("33:33:00:00:00:01", M, 0x86DD)).multicast_dst is True
    assert parse_frame(eth(H, M, IPV4)[:14]) is not None
    assert parse_frame(eth(H, M, IPV4)[:13]) is None


def test_vlan_tagged_arp_is_learnt():
    net = two()
    tagged = raw(BCAST) + raw(M) + struct.pack("!HHH", 0x8100, 10, ARP) + bytes(28)
    net.packet_in(1.0, 1, 2, tagged)
    assert net.fabric.hosts.get(M).location == (1, 2)
