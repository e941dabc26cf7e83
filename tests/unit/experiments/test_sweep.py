"""experiments.sweep: grids expand to validated runs; every bad key or value is named."""

from __future__ import annotations

import pytest

from experiments.sweep import expand, load_sweep, parse_key_path, parse_sweep
from ground.config import ConfigError


def test_grid_expands_in_order_with_repetitions_innermost():
    sweep = parse_sweep({"name": "s", "base": {"vm": {"memory": "64MiB"}, "seed": 10},
                         "grid": {"wan.rtt_ms": [0, 50], "policy.codec": ["none", "adaptive"]},
                         "repetitions": 2})
    runs = expand(sweep)
    assert len(runs) == 8
    combos = [(r.values["wan.rtt_ms"], r.values["policy.codec"], r.values["repetition"])
              for r in runs]
    assert combos[:4] == [(0, "none", 0), (0, "none", 1), (0, "adaptive", 0),
                          (0, "adaptive", 1)]
    for name, spec, values in runs:
        assert spec.topology.wan[0].rtt_ms == values["wan.rtt_ms"]
        assert spec.policy.codec == values["policy.codec"]
        assert spec.vm.memory_bytes == 64 * 2 ** 20
        assert spec.seed == spec.vm.seed == 10 + values["repetition"]
        assert spec.repetitions == 1 and spec.name == name
    assert runs[0].run_name == "s-000-rtt_ms_0-codec_none-r0"
    assert len({r.run_name for r in runs}) == 8


def test_queue_follows_the_swept_rtt():
    runs = expand(parse_sweep({"grid": {"topology.wan[0].rtt_ms": [10, 150]}}))
    # one bandwidth-delay product: 250 Mbit/s x RTT / 1514-byte frames
    assert [r.spec.topology.wan[0].queue_pkts for r in runs] == [207, 3097]


def test_workload_preset_fields_are_swept_from_the_preset():
    runs = expand(parse_sweep({"base": {"vm": {"workload": "database"}},
                               "grid": {"vm.workload.dirty_rate_mibps": [5, 50]}}))
    assert [r.spec.vm.workload.dirty_rate_mibps for r in runs] == [5.0, 50.0]
    assert all(r.spec.vm.workload.zipf_s == 1.2 for r in runs)   # the rest is the preset's
    default = expand(parse_sweep({"grid": {"vm.workload.skew": ["uniform"]}}))[0].spec
    assert default.vm.workload.dirty_rate_mibps == 20.0           # web, the default preset


def test_base_file_and_its_topology_file_relative_to_their_folders(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "topo.yaml").write_text("sites: [{name: a1}, {name: b1}]\n")
    (tmp_path / "sub" / "exp.yaml").write_text("topology: topo.yaml\nvm: {memory: 32MiB}\n")
    (tmp_path / "sweep.yaml").write_text("base: sub/exp.yaml\ngrid:\n  wan.bw_mbps: [50, 100]\n")
    sweep = load_sweep(tmp_path / "sweep.yaml")
    assert sweep.name == "sweep"
    runs = expand(sweep)
    assert [r.spec.topology.wan[0].bw_mbps for r in runs] == [50.0, 100.0]
    assert runs[0].spec.placement.source == "a1h1"


def test_key_path_syntax():
    assert parse_key_path("topology.wan[0].rtt_ms", "g") == ["topology", "wan", 0, "rtt_ms"]
    assert parse_key_path("policy.codec", "g") == ["policy", "codec"]
    for bad in ("", "policy..codec", "policy.codec[x]", "seed", "name.x", 5):
        with pytest.raises(ConfigError):
            parse_key_path(bad, "g")


THREE_SITES = {"topology": {"sites": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
                            "wan": [{"between": ["a", "b"]}, {"between": ["b", "c"]}]}}


@pytest.mark.parametrize(("data", "path", "words"), [
    ({"grid": {"wan.rtt_ms": [0, -5]}}, "grid.wan.rtt_ms[1]", ("-5", "at least 0")),
    ({"grid": {"policy.codec": ["none", "zstd"]}}, "grid.policy.codec[1]", ("'zstd'", "zstd-1")),
    ({"grid": {"policy.codecc": ["none"]}}, "grid.policy.codecc[0]", ("did you mean",)),
    ({"grid": {"wan.rtt_ms": [0], "wan.jitter_ms": [5]}}, "grid",
     ("'wan.rtt_ms': 0", "'wan.jitter_ms': 5", "jitter_ms")),
    ({"grid": {"wan.rtt_ms": []}}, "grid.wan.rtt_ms", ("non-empty list",)),
    ({"grid": {"wan.rtt_ms": 5}}, "grid.wan.rtt_ms", ("list",)),
    ({"grid": {"wan.rtt_ms": [5, 5]}}, "grid.wan.rtt_ms", ("appears twice",)),
    ({"grid": {"seed": [1, 2]}}, "grid.seed", ("key path",)),
    ({"grid": {}}, "grid", ("at least one key",)),
    ({}, "grid", ("mapping of key paths",)),
    ({"grid": {"wan.rtt_ms": [1]}, "repetitions": 0}, "repetitions", ("at least 1",)),
    ({"grid": {"wan.rtt_ms": list(range(600))}, "repetitions": 2}, "grid", ("at most 1000",)),
    ({"base": THREE_SITES, "grid": {"wan.rtt_ms": [1]}}, "grid.wan.rtt_ms",
     ("2 WAN links", "topology.wan[i].rtt_ms")),
    ({"base": {"vm": {"memory": "1KiB"}}, "grid": {"wan.rtt_ms": [1]}}, "base.vm.memory",
     ("MiB",)),
    ({"base": "nope.yaml", "grid": {"wan.rtt_ms": [1]}}, "base", ("existing experiment file",)),
    ({"grid": {"wan.rtt_ms": [1]}, "extra": 1}, "extra", ("one of the keys",)),
])
def test_bad_sweeps_name_key_and_value(tmp_path, data, path, words):
    with pytest.raises(ConfigError) as info:
        expand(parse_sweep(data, tmp_path))
    assert info.value.path == path, str(info.value)
    for word in words:
        assert word in str(info.value), str(info.value)


def test_explicit_index_works_with_several_links():
    runs = expand(parse_sweep({"base": THREE_SITES, "grid": {"topology.wan[1].rtt_ms": [7]}}))
    assert [w.rtt_ms for w in runs[0].spec.topology.wan] == [150.0, 7.0]
