"""controller/graph.py: shortest next hops, the flooding tree, edge ports and link bookkeeping."""

from __future__ import annotations

import itertools
from collections import deque

import pytest

from controller.graph import SwitchGraph

# Leaf-spine: leaves 1, 2 (host ports 1, 2; port 3 -> spine 3, port 4 -> spine 4),
# spines 3, 4 (port 1 -> leaf 1, port 2 -> leaf 2). Four links, one loop 1-3-2-4-1.
LS_PORTS = {1: {1, 2, 3, 4}, 2: {1, 2, 3, 4}, 3: {1, 2}, 4: {1, 2}}
LS_LINKS = [(1, 3, 3, 1), (1, 4, 4, 1), (2, 3, 3, 2), (2, 4, 4, 2)]

# A line 1 - 2 - 3: 1:2 <-> 2:1, 2:2 <-> 3:1; every switch has host ports too.
LINE_PORTS = {1: {1, 2}, 2: {1, 2, 3}, 3: {1, 2}}
LINE_LINKS = [(1, 2, 2, 1), (2, 2, 3, 1)]


def build(ports: dict[int, set[int]], links: list[tuple[int, int, int, int]]) -> SwitchGraph:
    g = SwitchGraph()
    for dpid, p in ports.items():
        g.add_switch(dpid, p)
    for link in links:
        assert g.add_link(*link)
    return g


def distances(g: SwitchGraph, dst: int) -> dict[int, int]:
    """Hop counts to ``dst``, computed independently of next_hops."""
    dist = {dst: 0}
    queue = deque([dst])
    while queue:
        cur = queue.popleft()
        for peer, _ in g.links.get(cur, {}).values():
            if peer not in dist and peer in g.ports:
                dist[peer] = dist[cur] + 1
                queue.append(peer)
    return dist


def follow(g: SwitchGraph, hops: dict[int, int], src: int, dst: int) -> list[int]:
    path = [src]
    cur = src
    for _ in range(len(g.ports) + 1):
        if cur == dst:
            return path
        cur = g.links[cur][hops[cur]][0]
        path.append(cur)
    raise AssertionError(f"next hops loop from {src} to {dst}: {path} (hops {hops})")


def assert_shortest(g: SwitchGraph) -> None:
    for dst in g.ports:
        hops = g.next_hops(dst)
        dist = distances(g, dst)
        assert set(hops) == set(dist) - {dst}, (dst, hops)
        for src in hops:
            assert hops[src] in g.links[src], f"{src} -> {dst}: port {hops[src]} is not a link"
            path = follow(g, hops, src, dst)
            assert len(path) - 1 == dist[src], f"{src} -> {dst}: {path} is not shortest"


def test_next_hops_line():
    g = build(LINE_PORTS, LINE_LINKS)
    assert g.next_hops(3) == {2: 2, 1: 2}
    assert g.next_hops(1) == {2: 1, 3: 1}
    assert g.next_hops(2) == {1: 2, 3: 1}
    assert_shortest(g)


def test_next_hops_leaf_spine_shortest_with_lowest_port_tie_break():
    g = build(LS_PORTS, LS_LINKS)
    assert_shortest(g)
    # leaf 2 reaches leaf 1 through either spine: the tie goes to the lower port (spine 3)
    assert g.next_hops(1) == {3: 1, 4: 1, 2: 3}
    assert g.next_hops(2) == {3: 2, 4: 2, 1: 3}
    assert g.next_hops(3) == {1: 3, 2: 3, 4: 1}
    assert g.next_hops(4) == {1: 4, 2: 4, 3: 1}


def test_next_hops_stable_whatever_the_discovery_order():
    expected = {d: build(LS_PORTS, LS_LINKS).next_hops(d) for d in LS_PORTS}
    for order in itertools.permutations(LS_LINKS):
        for flip in (False, True):
            links = [(b, bp, a, ap) if flip else (a, ap, b, bp) for a, ap, b, bp in order]
            g = build(LS_PORTS, links)
            got = {d: g.next_hops(d) for d in LS_PORTS}
            assert got == expected, f"order {links}"


def test_next_hops_unknown_destination_and_isolated_switch():
    g = build(LINE_PORTS, LINE_LINKS)
    g.add_switch(9, {1})
    assert 9 not in g.next_hops(1)
    assert g.next_hops(9) == {}
    assert g.next_hops(42) == {}


def flood_reach(g: SwitchGraph, tree: dict[int, set[int]], start: int) -> dict[int, int]:
    """Deliveries per switch of a broadcast flooded out of ``start`` along the tree ports."""
    received = {start: 1}
    queue = deque([(start, None)])
    steps = 0
    while queue:
        steps += 1
        assert steps < 100, f"flood from {start} does not stop: tree {tree}"
        dpid, in_port = queue.popleft()
        for port in sorted(tree[dpid] - {in_port}):
            peer, peer_port = g.links[dpid][port]
            received[peer] = received.get(peer, 0) + 1
            if peer_port in tree[peer]:
                queue.append((peer, peer_port))
    return received


@pytest.mark.parametrize("ports,links", [(LS_PORTS, LS_LINKS), (LINE_PORTS, LINE_LINKS)],
                         ids=["leaf-spine", "line"])
def test_tree_ports_span_without_loops(ports, links):
    g = build(ports, links)
    tree = g.tree_ports()
    assert set(tree) == set(ports)
    assert sum(len(p) for p in tree.values()) // 2 == len(ports) - 1, tree
    # both ends of every tree link are on the tree
    for dpid, tp in tree.items():
        for port in tp:
            peer, peer_port = g.links[dpid][port]
            assert peer_port in tree[peer], f"{dpid}:{port} on the tree, {peer}:{peer_port} not"
    for start in ports:
        got = flood_reach(g, tree, start)
        assert got == dict.fromkeys(ports, 1), f"from {start}: {got}, tree {tree}"


def test_tree_ports_leaf_spine_drops_one_link():
    g = build(LS_PORTS, LS_LINKS)
    tree = g.tree_ports()
    non_tree = {(d, p) for d in LS_PORTS for p in g.links[d] if p not in tree[d]}
    assert len(non_tree) == 2, tree                      # one link, both ends
    (a, ap), (b, bp) = sorted(non_tree)
    assert g.links[a][ap] == (b, bp)


def test_tree_ports_one_root_per_component():
    g = build({**LINE_PORTS, 7: {1, 2}, 8: {1}}, [*LINE_LINKS, (7, 2, 8, 1)])
    tree = g.tree_ports()
    assert tree[7] == {2} and tree[8] == {1}
    assert sum(len(p) for p in tree.values()) // 2 == 3


def test_edge_ports_exclude_link_ports():
    g = build(LS_PORTS, LS_LINKS)
    assert g.edge_ports(1) == {1, 2}
    assert g.edge_ports(2) == {1, 2}
    assert g.edge_ports(3) == set()
    assert g.edge_ports(99) == set()
    assert g.is_link_port(1, 3) and not g.is_link_port(1, 1)
    tree = g.tree_ports()
    for dpid in LS_PORTS:
        assert g.flood_ports(dpid, tree) == g.edge_ports(dpid) | tree[dpid]
        assert g.flood_ports(dpid) == g.flood_ports(dpid, tree)


def test_remove_switch_removes_both_ends():
    g = build(LS_PORTS, LS_LINKS)
    g.remove_switch(3)
    assert 3 not in g.ports and 3 not in g.links
    assert 3 not in g.links[1] and 3 not in g.links[2], g.links
    assert all(peer != 3 for d in g.links for peer, _ in g.links[d].values()), g.links
    assert g.link_count() == 2
    assert g.edge_ports(1) == {1, 2, 3}
    assert g.next_hops(1) == {4: 1, 2: 4}
    assert_shortest(g)
    g.remove_switch(3)                                     # twice: harmless
    assert g.link_count() == 2


def test_add_link_returns_false_when_known():
    g = build(LINE_PORTS, [])
    assert g.add_link(1, 2, 2, 1) is True
    assert g.add_link(1, 2, 2, 1) is False
    assert g.add_link(2, 1, 1, 2) is False                 # seen from the other end
    assert g.link_count() == 1
    assert g.add_link(2, 2, 3, 1) is True
    assert g.link_count() == 2


def test_add_link_on_fresh_graph():
    g = SwitchGraph()
    assert g.add_link(1, 1, 2, 1) is True
    assert g.links == {1: {1: (2, 1)}, 2: {1: (1, 1)}}


def test_add_link_over_a_recabled_port_keeps_links_symmetric():
    g = build({1: {1, 2}, 2: {1, 2}, 3: {1, 2}}, [(1, 1, 2, 1)])
    g.add_link(1, 1, 3, 1)                                 # 1:1 re-cabled to 3:1
    for dpid, ports in g.links.items():
        for port, (peer, peer_port) in ports.items():
            assert g.links.get(peer, {}).get(peer_port) == (dpid, port), g.links
    assert g.edge_ports(2) == {1, 2}
