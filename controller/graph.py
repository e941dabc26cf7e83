"""The switch graph: which ports join switches, shortest paths, and a loop-free flooding tree.

Pure data; links are learnt by the controller's own discovery probes (controller/discovery.py)
or given by a test. Ports are OpenFlow port numbers.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class SwitchGraph:
    # dpid => {port => (peer dpid, peer port)}: the inter-switch links seen from each end
    links: dict[int, dict[int, tuple[int, int]]] = field(default_factory=dict)
    # dpid => every port the switch reported (edge ports are these minus the link ports)
    ports: dict[int, set[int]] = field(default_factory=dict)

    def add_switch(self, dpid: int, ports: set[int]) -> None:
        self.ports[dpid] = set(ports)
        self.links.setdefault(dpid, {})

    def remove_switch(self, dpid: int) -> None:
        self.ports.pop(dpid, None)
        for peer, peer_port in self.links.pop(dpid, {}).values():
            self.links.get(peer, {}).pop(peer_port, None)

    def add_link(self, a: int, a_port: int, b: int, b_port: int) -> bool:
        """Record a link seen from ``a`` to ``b``; True if it is new.

        A port re-cabled to another peer loses its old link on both ends, so the two halves of
        every link always agree and the old peer's port becomes an edge port again."""
        ends = self.links.setdefault(a, {}), self.links.setdefault(b, {})
        if ends[0].get(a_port) == (b, b_port) and ends[1].get(b_port) == (a, a_port):
            return False
        self.remove_link(a, a_port)
        self.remove_link(b, b_port)
        self.links[a][a_port] = (b, b_port)
        self.links[b][b_port] = (a, a_port)
        return True

    def remove_link(self, dpid: int, port: int) -> tuple[int, int] | None:
        """Forget the link on ``dpid:port`` (both halves); its peer end, if there was one."""
        peer = self.links.get(dpid, {}).pop(port, None)
        if peer is not None:
            self.links.get(peer[0], {}).pop(peer[1], None)
        return peer

    def is_link_port(self, dpid: int, port: int) -> bool:
        return port in self.links.get(dpid, {})

    def edge_ports(self, dpid: int) -> set[int]:
        return self.ports.get(dpid, set()) - set(self.links.get(dpid, {}))

    def link_count(self) -> int:
        return sum(len(p) for p in self.links.values()) // 2

    def next_hops(self, dst: int) -> dict[int, int]:
        """For every switch that can reach ``dst``: the port of its next hop on a shortest path
        (breadth-first from ``dst``; ties broken by the lowest port, so paths are stable)."""
        hops: dict[int, int] = {}
        seen = {dst}
        queue = deque([dst])
        while queue:
            cur = queue.popleft()
            for port in sorted(self.links.get(cur, {})):
                peer, peer_port = self.links[cur][port]
                if peer not in seen and peer in self.ports:
                    seen.add(peer)
                    hops[peer] = peer_port      # peer reaches cur (towards dst) by peer_port
                    queue.append(peer)
        return hops

    def tree_ports(self) -> dict[int, set[int]]:
        """Link ports on a spanning tree (breadth-first from the lowest dpid of each component):
        flooding along these never loops, whatever redundancy the fabric has."""
        tree: dict[int, set[int]] = {d: set() for d in self.ports}
        seen: set[int] = set()
        for root in sorted(self.ports):
            if root in seen:
                continue
            seen.add(root)
            queue = deque([root])
            while queue:
                cur = queue.popleft()
                for port in sorted(self.links.get(cur, {})):
                    peer, peer_port = self.links[cur][port]
                    if peer in seen or peer not in self.ports:
                        continue
                    seen.add(peer)
                    tree[cur].add(port)
                    tree[peer].add(peer_port)
                    queue.append(peer)
        return tree

    def flood_ports(self, dpid: int, tree: dict[int, set[int]] | None = None) -> set[int]:
        """Where a broadcast goes out of ``dpid``: its edge ports and its tree ports."""
        tree = tree if tree is not None else self.tree_ports()
        return self.edge_ports(dpid) | tree.get(dpid, set())
