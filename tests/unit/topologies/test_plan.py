"""Network plan: names, addresses, dpids, interface-name lengths, placement, loops."""

from __future__ import annotations

import ipaddress
import re
from collections import Counter

import pytest

from topologies.names import node_names
from topologies.plan import address, border_switch, plan_network, wan_path, wan_rtt_between
from topologies.spec import MAX_SITES, NODE_NAME_MAX, SITE_NAME_MAX, ConfigError, parse_topology

IFNAMSIZ_MAX = 15  # Linux interface names: 16 bytes including the NUL


def leaf_spine(leaves: int, spines: int):
    return parse_topology({"sites": [
        {"name": "dc1", "hypervisors": 4, "clients": 2,
         "fabric": {"kind": "leaf-spine", "leaves": leaves, "spines": spines}},
        {"name": "dc2"},
    ]})


def test_default_plan_names():
    plan = plan_network(parse_topology({}))
    assert [h.name for h in plan.hosts] == ["dc1h1", "dc1c1", "dc2h1", "dc2c1"]
    assert [s.name for s in plan.switches] == ["dc1s1", "dc2s1"]
    assert [s.tier for s in plan.switches] == ["edge", "edge"]
    assert plan.fabric_links == ()
    assert len(plan.wan) == 1
    w = plan.wan[0]
    assert (w.index, w.a_site, w.b_site, w.a_switch, w.b_switch, w.relay) == \
        (1, "dc1", "dc2", "dc1s1", "dc2s1", "wl1")
    assert plan.site_index == {"dc1": 1, "dc2": 2}
    assert plan.host("dc2c1").switch == "dc2s1"


def test_ips_and_macs_follow_site_role_number():
    spec = parse_topology({"sites": [{"name": "dc1", "hypervisors": 3, "clients": 2},
                                     {"name": "dc2", "hypervisors": 12}]})
    plan = plan_network(spec)
    h = plan.host("dc1h3")
    assert (h.role, h.ip, h.mac) == ("hypervisor", "10.1.1.3", "02:00:0a:01:01:03")
    c = plan.host("dc1c2")
    assert (c.role, c.ip, c.mac) == ("client", "10.1.2.2", "02:00:0a:01:02:02")
    h12 = plan.host("dc2h12")
    assert (h12.ip, h12.mac) == ("10.2.1.12", "02:00:0a:02:01:0c")
    assert len({x.ip for x in plan.hosts}) == len(plan.hosts)
    assert len({x.mac for x in plan.hosts}) == len(plan.hosts)
    mac_re = re.compile(r"^02(:[0-9a-f]{2}){5}$")
    assert all(mac_re.match(x.mac) for x in plan.hosts)


def test_address_function():
    assert address(3, 2, 20) == ("10.3.2.20", "02:00:0a:03:02:14")


def test_named_hosts_are_numbered_in_order():
    spec = parse_topology({"sites": [{"name": "dc1", "hypervisors": ["alpha", "beta"]},
                                     {"name": "dc2"}]})
    plan = plan_network(spec)
    assert plan.host("alpha").ip == "10.1.1.1"
    assert plan.host("beta").ip == "10.1.1.2"
    assert [h.name for h in plan.hosts_at("dc1", "hypervisor")] == ["alpha", "beta"]
    assert [h.name for h in plan.hosts_at("dc1")] == ["alpha", "beta", "dc1c1"]


def test_dpids_unique_and_sixteen_hex_digits():
    spec = parse_topology({"sites": [
        {"name": "dc1", "fabric": {"kind": "leaf-spine", "leaves": 8, "spines": 8}},
        {"name": "dc2", "fabric": {"kind": "leaf-spine", "leaves": 8, "spines": 8}},
        {"name": "dc3"},
    ], "wan": [{"between": ["dc1", "dc2"]}, {"between": ["dc2", "dc3"]}]})
    plan = plan_network(spec)
    dpids = [s.dpid for s in plan.switches]
    assert len(dpids) == 8 + 8 + 8 + 8 + 1
    assert len(set(dpids)) == len(dpids)
    assert all(re.fullmatch(r"[0-9a-f]{16}", d) for d in dpids), dpids
    assert all(int(d, 16) != 0 for d in dpids)


def max_names_spec():
    """Every name at its longest, every site at its largest."""
    long_site_a = "a" * SITE_NAME_MAX
    long_site_b = "b" * SITE_NAME_MAX
    long_hosts = [f"x{i:0{NODE_NAME_MAX - 1}d}" for i in range(1, 21)]
    return parse_topology({"sites": [
        {"name": long_site_a, "hypervisors": 20, "clients": 20},
        {"name": long_site_b, "hypervisors": 20, "clients": 20,
         "fabric": {"kind": "leaf-spine", "leaves": 8, "spines": 8}},
        {"name": "c" * SITE_NAME_MAX, "hypervisors": long_hosts, "clients": 20,
         "fabric": {"kind": "leaf-spine", "leaves": 1, "spines": 1}},
    ], "wan": [{"between": [long_site_a, long_site_b]},
               {"between": [long_site_b, "c" * SITE_NAME_MAX]},
               {"between": ["c" * SITE_NAME_MAX, long_site_a]}]})


def test_every_interface_name_fits_ifnamsiz():
    spec = max_names_spec()
    plan = plan_network(spec)
    links = [(h.name, h.switch) for h in plan.hosts] + list(plan.fabric_links)
    for w in plan.wan:
        links += [(w.a_switch, w.relay), (w.relay, w.b_switch)]
    degree = Counter(n for link in links for n in link)
    assert max(len(n) for n in node_names(spec.sites, len(spec.wan))) == NODE_NAME_MAX
    for node, n in degree.items():
        # Mininet numbers host interfaces from eth0 and switch ports from eth1: allow ethN.
        ifname = f"{node}-eth{n}"
        assert len(ifname) <= IFNAMSIZ_MAX, ifname


def test_generated_names_are_unique_at_maximum_size():
    spec = max_names_spec()
    names = node_names(spec.sites, len(spec.wan))
    assert len(names) == len(set(names))


@pytest.mark.parametrize("spec", [parse_topology({}), max_names_spec()],
                         ids=["default", "largest"])
def test_the_names_the_spec_checks_are_the_names_the_plan_makes(spec):
    plan = plan_network(spec)
    made = [h.name for h in plan.hosts] + [s.name for s in plan.switches] \
        + [w.relay for w in plan.wan]
    assert sorted(node_names(spec.sites, len(spec.wan))) == sorted(made)


def test_leaf_spine_hosts_spread_across_leaves():
    plan = plan_network(leaf_spine(leaves=3, spines=2))
    site_hosts = plan.hosts_at("dc1")
    assert len(site_hosts) == 6
    per_leaf = Counter(h.switch for h in site_hosts)
    assert set(per_leaf) == {"dc1l1", "dc1l2", "dc1l3"}
    assert set(per_leaf.values()) == {2}
    tiers = {s.name: s.tier for s in plan.switches}
    assert all(tiers[h.switch] == "leaf" for h in site_hosts)


def test_leaf_spine_fabric_is_full_mesh_and_border_is_first_spine():
    plan = plan_network(leaf_spine(leaves=2, spines=2))
    assert set(plan.fabric_links) == {("dc1l1", "dc1p1"), ("dc1l1", "dc1p2"),
                                      ("dc1l2", "dc1p1"), ("dc1l2", "dc1p2")}
    assert plan.wan[0].a_switch == "dc1p1"
    assert plan.wan[0].b_switch == "dc2s1"
    dc1 = [s for s in plan.switches if s.site == "dc1"]
    assert border_switch(dc1) == "dc1p1"


def test_switch_graph_no_cycle_for_edge_two_sites():
    assert plan_network(parse_topology({})).switch_graph_has_cycle() is False


def test_switch_graph_cycle_for_two_spines_two_leaves():
    assert plan_network(leaf_spine(leaves=2, spines=2)).switch_graph_has_cycle() is True


def test_switch_graph_no_cycle_for_one_spine():
    assert plan_network(leaf_spine(leaves=3, spines=1)).switch_graph_has_cycle() is False


def test_switch_graph_cycle_for_ring_of_three_sites():
    spec = parse_topology({"sites": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
                           "wan": [{"between": ["a", "b"]}, {"between": ["b", "c"]},
                                   {"between": ["c", "a"]}]})
    assert plan_network(spec).switch_graph_has_cycle() is True


def test_switch_graph_no_cycle_for_chain_of_three_sites():
    spec = parse_topology({"sites": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
                           "wan": [{"between": ["a", "b"]}, {"between": ["b", "c"]}]})
    assert plan_network(spec).switch_graph_has_cycle() is False


def test_more_sites_than_addresses_allow_are_rejected():
    names = [f"s{i}" for i in range(1, 257)]
    data = {"sites": [{"name": n, "clients": 0} for n in names],
            "wan": [{"between": [a, b]} for a, b in zip(names, names[1:], strict=False)]}
    with pytest.raises(ConfigError) as err:
        parse_topology(data)
    assert err.value.path == "sites"


def test_largest_site_count_is_addressable():
    names = [f"s{i}" for i in range(1, MAX_SITES + 1)]
    links = [{"between": [a, b]} for a, b in zip(names, names[1:], strict=False)]
    spec = parse_topology({"sites": [{"name": n, "hypervisors": 20} for n in names],
                           "wan": links})
    for h in plan_network(spec).hosts:
        ipaddress.IPv4Address(h.ip)
        assert re.fullmatch(r"02(:[0-9a-f]{2}){5}", h.mac), h.mac


def test_wan_path_takes_the_smallest_rtt_and_keeps_the_order_of_the_links():
    spec = parse_topology({
        "sites": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
        "wan": [{"between": ["a", "b"], "rtt_ms": 40}, {"between": ["b", "c"], "rtt_ms": 60},
                {"between": ["a", "c"], "rtt_ms": 150}]})
    assert wan_path(spec, "a", "c") == [1, 2]           # 100 ms through b beats 150 direct
    assert wan_path(spec, "c", "a") == [2, 1]
    assert wan_path(spec, "b", "b") == []
    assert wan_rtt_between(spec, "a", "c") == 100.0
