"""Topology spec: defaults, good YAML files, and every kind of bad input named precisely."""

from __future__ import annotations

import dataclasses
import math

import pytest

from topologies.spec import (
    ConfigError,
    default_queue_pkts,
    load_topology,
    parse_topology,
)


def write(tmp_path, text: str):
    path = tmp_path / "topo.yaml"
    path.write_text(text)
    return path


# --- the default spec ---------------------------------------------------------------------------

def test_default_spec_is_two_sites_one_link():
    spec = parse_topology({})
    assert spec.name == "two-sites"
    assert [s.name for s in spec.sites] == ["dc1", "dc2"]
    assert spec.site("dc1").hypervisors == ("dc1h1",)
    assert spec.site("dc1").clients == ("dc1c1",)
    assert spec.site("dc2").hypervisors == ("dc2h1",)
    assert spec.site("dc2").clients == ("dc2c1",)
    assert all(s.fabric.kind == "edge" for s in spec.sites)
    assert len(spec.wan) == 1
    link = spec.wan[0]
    assert (link.a, link.b) == ("dc1", "dc2")
    assert link.rtt_ms == 150.0
    assert link.bw_mbps == 250.0
    assert link.loss_pct == 0.0
    assert link.jitter_ms == 0.0
    assert link.mtu == 1500
    assert spec.mtu == 1500
    assert spec.controller.site == "dc1"
    assert spec.controller.control_rtt_ms is None


def test_default_queue_is_one_bdp_of_full_frames():
    link = parse_topology({}).wan[0]
    bdp_bytes = 250e6 / 8 * 0.150
    assert link.queue_pkts == math.ceil(bdp_bytes / 1514) == 3097
    assert link.queue_pkts == default_queue_pkts(150.0, 250.0, 1500)
    assert link.bdp_bytes == pytest.approx(bdp_bytes)


def test_default_queue_has_a_floor_and_a_value_when_unshaped():
    assert default_queue_pkts(1.0, 1.0, 1500) == 100
    assert default_queue_pkts(0.0, 250.0, 1500) == 100
    assert default_queue_pkts(150.0, None, 1500) == 1000


def test_load_topology_none_and_empty_file_give_the_default(tmp_path):
    assert load_topology(None) == parse_topology({})
    assert load_topology(write(tmp_path, "")) == parse_topology({})


def test_spec_is_frozen():
    spec = parse_topology({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.wan[0].rtt_ms = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.sites[0].fabric.kind = "leaf-spine"  # type: ignore[misc]
    assert isinstance(spec.sites, tuple) and isinstance(spec.wan, tuple)


def test_site_lookup_of_unknown_name_raises_keyerror():
    with pytest.raises(KeyError):
        parse_topology({}).site("dc9")


# --- good files ---------------------------------------------------------------------------------

def test_leaf_spine_fabric(tmp_path):
    spec = load_topology(write(tmp_path, """
sites:
  - name: dc1
    hypervisors: 4
    fabric: {kind: leaf-spine, leaves: 3, spines: 2}
  - name: dc2
"""))
    fabric = spec.site("dc1").fabric
    assert (fabric.kind, fabric.leaves, fabric.spines) == ("leaf-spine", 3, 2)
    assert spec.site("dc1").hypervisors == ("dc1h1", "dc1h2", "dc1h3", "dc1h4")
    assert spec.site("dc2").fabric.kind == "edge"


def test_leaf_spine_defaults_to_two_by_two(tmp_path):
    spec = load_topology(write(tmp_path, """
sites:
  - {name: dc1, fabric: {kind: leaf-spine}}
  - {name: dc2}
"""))
    fabric = spec.site("dc1").fabric
    assert (fabric.leaves, fabric.spines) == (2, 2)


def test_three_sites_two_links(tmp_path):
    spec = load_topology(write(tmp_path, """
name: chain
sites: [{name: ams}, {name: fra}, {name: nyc}]
wan:
  - {between: [ams, fra], rtt_ms: 10, bw_mbps: 1000}
  - {between: [fra, nyc], rtt_ms: 80, loss_pct: 1, jitter_ms: 5, mtu: 1500}
controller: {site: fra, control_rtt_ms: 20}
"""))
    assert spec.name == "chain"
    assert [s.name for s in spec.sites] == ["ams", "fra", "nyc"]
    assert [(w.a, w.b) for w in spec.wan] == [("ams", "fra"), ("fra", "nyc")]
    assert spec.wan[0].rtt_ms == 10.0 and spec.wan[0].bw_mbps == 1000.0
    assert spec.wan[1].bw_mbps == 250.0
    assert (spec.wan[1].loss_pct, spec.wan[1].jitter_ms) == (1.0, 5.0)
    assert spec.controller.site == "fra"
    assert spec.controller.control_rtt_ms == 20.0


def test_host_name_lists(tmp_path):
    spec = load_topology(write(tmp_path, """
sites:
  - {name: dc1, hypervisors: [alpha, beta], clients: [load1]}
  - {name: dc2, hypervisors: [gamma], clients: 0}
"""))
    assert spec.site("dc1").hypervisors == ("alpha", "beta")
    assert spec.site("dc1").clients == ("load1",)
    assert spec.site("dc2").hypervisors == ("gamma",)
    assert spec.site("dc2").clients == ()


def test_null_bandwidth_means_unshaped(tmp_path):
    spec = load_topology(write(tmp_path, "wan:\n  - {between: [dc1, dc2], bw_mbps: null}\n"))
    link = spec.wan[0]
    assert link.bw_mbps is None
    assert link.bdp_bytes == 0.0
    assert link.queue_pkts == 1000


def test_controller_local(tmp_path):
    spec = load_topology(write(tmp_path, "controller: {site: local}\n"))
    assert spec.controller.site == "local"


def test_explicit_queue_and_jumbo_mtu(tmp_path):
    spec = load_topology(write(tmp_path, "wan: [{queue_pkts: 42, mtu: 9000}]\n"))
    assert spec.wan[0].queue_pkts == 42
    assert spec.mtu == 9000


# --- bad inputs ---------------------------------------------------------------------------------

def wan(**link):
    return {"wan": [link]}


def site_list(*sites, **top):
    return {"sites": list(sites), **top}


BAD = [
    # (id, data, key path, bad value, fragment of the expectation)
    ("unknown-top-key", {"sitez": []}, "sitez", [], "did you mean 'sites'"),
    ("misspelt-dealy", wan(dealy=10), "wan[0].dealy", 10, "one of the keys"),
    ("misspelt-rtt_m", wan(rtt_m=10), "wan[0].rtt_m", 10, "did you mean 'rtt_ms'"),
    ("string-rtt", wan(rtt_ms="150"), "wan[0].rtt_ms", "150", "a number"),
    ("bool-bw", wan(bw_mbps=True), "wan[0].bw_mbps", True, "a number"),
    ("list-as-site", site_list(["dc1"], {"name": "dc2"}), "sites[0]", ["dc1"], "a mapping"),
    ("negative-rtt", wan(rtt_ms=-1), "wan[0].rtt_ms", -1, "at least 0"),
    ("absurd-rtt", wan(rtt_ms=2001), "wan[0].rtt_ms", 2001, "at most 2000"),
    ("zero-bw", wan(bw_mbps=0), "wan[0].bw_mbps", 0, "greater than 0"),
    ("negative-bw", wan(bw_mbps=-5), "wan[0].bw_mbps", -5, "greater than 0"),
    ("tiny-bw", wan(bw_mbps=0.01), "wan[0].bw_mbps", 0.01, "at least 0.1"),
    ("loss-over-50", wan(loss_pct=51), "wan[0].loss_pct", 51, "at most 50"),
    ("negative-loss", wan(loss_pct=-0.5), "wan[0].loss_pct", -0.5, "at least 0"),
    ("jitter-over-half-rtt", wan(rtt_ms=100, jitter_ms=51), "wan[0].jitter_ms", 51.0,
     "at most half of rtt_ms"),
    ("mtu-too-small", wan(mtu=575), "wan[0].mtu", 575, "at least 576"),
    ("mtu-too-big", wan(mtu=9001), "wan[0].mtu", 9001, "at most 9000"),
    ("mtu-not-integer", wan(mtu=1500.5), "wan[0].mtu", 1500.5, "an integer"),
    ("queue-zero", wan(queue_pkts=0), "wan[0].queue_pkts", 0, "at least 1"),
    ("duplicate-sites", site_list({"name": "dc1"}, {"name": "dc1"}), "sites", "dc1",
     "unique site names"),
    ("site-name-too-long", site_list({"name": "dcabcde"}, {"name": "dc2"}), "sites[0].name",
     "dcabcde", "1 to 6 characters"),
    ("site-name-uppercase", site_list({"name": "DC1"}, {"name": "dc2"}), "sites[0].name",
     "DC1", "lowercase letter"),
    ("site-name-shell", site_list({"name": "dc1"}, {"name": "dc;rm"}), "sites[1].name",
     "dc;rm", "lowercase letter"),
    ("host-name-too-long", site_list({"name": "dc1", "hypervisors": ["abcdefghij"]},
                                     {"name": "dc2"}),
     "sites[0].hypervisors[0]", "abcdefghij", "1 to 9 characters"),
    ("host-name-invalid", site_list({"name": "dc1"}, {"name": "dc2", "clients": ["ok", "c-1"]}),
     "sites[1].clients[1]", "c-1", "lowercase letter"),
    ("duplicate-hosts-across-sites",
     site_list({"name": "dc1", "hypervisors": ["hv"]}, {"name": "dc2", "hypervisors": ["hv"]}),
     "sites", "hv", "unique node names"),
    ("host-is-switch-name", site_list({"name": "dc1", "clients": ["dc1s1"]}, {"name": "dc2"}),
     "sites", "dc1s1", "unique node names"),
    ("link-unknown-site", wan(between=["dc1", "dc9"]), "wan[0].between[1]", "dc9",
     "a site defined under sites"),
    ("link-to-itself", wan(between=["dc1", "dc1"]), "wan[0].between", ["dc1", "dc1"],
     "two different sites"),
    ("duplicate-link-pairs",
     {"wan": [{"between": ["dc1", "dc2"]}, {"between": ["dc2", "dc1"]}]},
     "wan", "dc1-dc2", "unique site pairs"),
    ("not-connected",
     site_list({"name": "dc1"}, {"name": "dc2"}, {"name": "dc3"},
               wan=[{"between": ["dc1", "dc2"]}]),
     "wan", [["dc1", "dc2"]], "unreachable: dc3"),
    ("one-site", site_list({"name": "dc1"}), "sites", [{"name": "dc1"}], "from 2 to 16 sites"),
    ("controller-unknown-site", {"controller": {"site": "dc7"}}, "controller.site", "dc7",
     "'local' or a site name"),
    ("different-mtus",
     site_list({"name": "dc1"}, {"name": "dc2"}, {"name": "dc3"},
               wan=[{"between": ["dc1", "dc2"], "mtu": 1500},
                    {"between": ["dc2", "dc3"], "mtu": 9000}]),
     "wan", [1500, 9000], "the same mtu on every WAN link"),
    ("edge-with-leaves",
     site_list({"name": "dc1", "fabric": {"kind": "edge", "leaves": 2}}, {"name": "dc2"}),
     "sites[0].fabric.leaves", 2, "no leaves or spines with kind edge"),
    ("unknown-fabric-kind",
     site_list({"name": "dc1", "fabric": {"kind": "fat-tree"}}, {"name": "dc2"}),
     "sites[0].fabric.kind", "fat-tree", "one of edge, leaf-spine"),
    ("zero-hypervisors", site_list({"name": "dc1", "hypervisors": 0}, {"name": "dc2"}),
     "sites[0].hypervisors", 0, "a count from 1 to 20"),
    ("too-many-clients", site_list({"name": "dc1"}, {"name": "dc2", "clients": 21}),
     "sites[1].clients", 21, "a count from 0 to 20"),
]


@pytest.mark.parametrize(("data", "path", "value", "expected"),
                         [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_reported_with_path_value_and_expectation(data, path, value, expected):
    with pytest.raises(ConfigError) as info:
        parse_topology(data)
    err = info.value
    message = str(err)
    assert err.path == path, message
    assert message.startswith(f"{path}: "), message
    assert repr(value) in message, message
    assert expected in message, message


def test_bad_input_is_also_reported_through_load_topology(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_topology(write(tmp_path, "wan:\n  - {between: [dc1, dc2], rtt_ms: fast}\n"))
    assert "wan[0].rtt_ms" in str(info.value)
    assert "'fast'" in str(info.value)


def test_three_sites_without_wan_is_an_error():
    with pytest.raises(ConfigError) as info:
        parse_topology(site_list({"name": "a"}, {"name": "b"}, {"name": "c"}))
    assert str(info.value).startswith("wan: ")


def test_invalid_yaml(tmp_path):
    path = write(tmp_path, "sites: [dc1, {name: dc2\nwan: :\n")
    with pytest.raises(ConfigError) as info:
        load_topology(path)
    message = str(info.value)
    assert str(path) in message
    assert "valid YAML" in message


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_topology(path)
    message = str(info.value)
    assert str(path) in message
    assert "a readable YAML file" in message


def test_top_level_not_a_mapping(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_topology(write(tmp_path, "- dc1\n- dc2\n"))
    assert "<top level>" in str(info.value)
    assert "a mapping" in str(info.value)
