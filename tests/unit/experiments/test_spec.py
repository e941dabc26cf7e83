"""experiments.spec: defaults are the quickstart, good files parse, bad input names its key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from experiments.spec import load_experiment, parse_experiment, parse_memory, resolved_dict
from ground.config import ConfigError
from migrator.memory.workload import PRESETS

EXPERIMENTS = Path(__file__).resolve().parents[3] / "experiments"


def test_default_is_the_quickstart():
    spec = parse_experiment({})
    assert spec.name == "quickstart"
    assert spec.topology.wan[0].rtt_ms == 150.0 and spec.topology.wan[0].bw_mbps == 250.0
    assert spec.vm.memory_bytes == 256 * 2 ** 20 and spec.vm.workload == PRESETS["web"]
    assert spec.policy.codec == "adaptive"
    assert (spec.placement.source, spec.placement.destination) == ("dc1h1", "dc2h1")
    assert (spec.clients.host, spec.clients.site, spec.clients.probe_ms) == ("dc2c1", "dc2", 10.0)
    assert spec.repetitions == 1 and spec.vm.seed == spec.seed == 1


def test_shipped_quickstart_equals_the_default():
    shipped = load_experiment(EXPERIMENTS / "quickstart.yaml")
    default = parse_experiment({})
    assert dataclasses.replace(shipped, description="") == default


def test_resolved_dict_parses_back_to_the_same_spec(tmp_path):
    topo = tmp_path / "topo.yaml"
    topo.write_text("sites: [{name: east, hypervisors: 2, clients: [alice, bob]}, {name: west}]\n"
                    "wan: [{rtt_ms: 40, bw_mbps: 100, jitter_ms: 2}]\n")
    exp = tmp_path / "exp.yaml"
    exp.write_text("topology: topo.yaml\nvm: {memory: 64MiB, workload: {preset: database, "
                   "dirty_rate_mibps: 7}, seed: 9}\nplacement: {source: easth2}\n"
                   "policy: {codec: zstd-3, streams: 2}\nschedule: {migrate_back: true}\n")
    spec = load_experiment(exp)
    assert spec.name == "exp" and spec.topology_source == str(topo)
    assert spec.placement.source == "easth2" and spec.placement.destination == "westh1"
    assert spec.clients.host == "westc1"          # first client at the destination site
    assert spec.vm.workload.dirty_rate_mibps == 7.0 and spec.vm.workload.zipf_s == 1.2
    again = parse_experiment(resolved_dict(spec))
    assert again == spec


def test_write_shape_keys_resolve_and_parse_back(tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text("vm: {workload: {preset: crypto, write_bytes: 1024}}\n")
    spec = load_experiment(exp)
    wl = spec.vm.workload
    assert (wl.dirty_rate_mibps, wl.write_bytes, wl.content) == (40.0, 1024, "random")
    assert spec.vm.workload_preset == "crypto"
    assert parse_experiment(resolved_dict(spec)) == spec
    text = parse_experiment({"vm": {"workload": {"dirty_rate_mibps": 5, "content": "random"}}})
    assert text.vm.workload.write_bytes is None and text.vm.workload.content == "random"


@pytest.mark.parametrize(("value", "expected"), [
    ("256MiB", 256 * 2 ** 20), ("1GiB", 2 ** 30), ("4096KiB", 4 * 2 ** 20),
    (8 * 2 ** 20, 8 * 2 ** 20), ("1.5MiB", 1536 * 1024), (" 2 MiB ", 2 * 2 ** 20),
])
def test_memory_sizes(value, expected):
    assert parse_memory(value, "vm.memory") == expected


@pytest.mark.parametrize(("data", "path", "word"), [
    ({"nmae": "x"}, "nmae", "did you mean 'name'"),
    ({"name": "a b"}, "name", "letters, digits"),
    ({"vm": {"memory": "256MB"}}, "vm.memory", "MiB"),
    ({"vm": {"memory": 2 ** 20 + 1}}, "vm.memory", "multiple of 4096"),
    ({"vm": {"memory": "64GiB"}}, "vm.memory", "16 GiB"),
    ({"vm": {"memory": True}}, "vm.memory", "size in bytes"),
    ({"vm": {"workload": "webserver"}}, "vm.workload", "web"),
    ({"vm": {"workload": {"dirty_rate_mibps": -1}}}, "vm.workload.dirty_rate_mibps", "at least 0"),
    ({"vm": {"workload": {"preset": "nope"}}}, "vm.workload.preset", "one of"),
    ({"vm": {"workload": {"preset": "web", "write_bytes": 0}}}, "vm.workload.write_bytes",
     "at least 1"),
    ({"vm": {"workload": {"preset": "crypto", "write_bytes": 5000}}}, "vm.workload.write_bytes",
     "at most 4096"),
    ({"vm": {"workload": {"preset": "web", "content": "zeros"}}}, "vm.workload.content",
     "text, random"),
    ({"vm": {"seed": -1}}, "vm.seed", "at least 0"),
    ({"vm": {"kind": "kvm"}}, "vm.kind", "emulated, qemu"),
    ({"vm": {"kind": "qemu", "vcpus": 0}}, "vm.vcpus", "at least 1"),
    ({"vm": {"kind": "qemu", "vcpus": 9}}, "vm.vcpus", "at most 8"),
    ({"vm": {"vcpus": 2}}, "vm.vcpus", "1 for vm.kind emulated"),
    ({"placement": {"source": "dc3h1"}}, "placement.source", "dc1h1, dc2h1"),
    ({"placement": {"destination": "dc1h1"}}, "placement.destination", "other than"),
    ({"policy": {"codec": "zstd"}}, "policy.codec", "zstd-1"),
    ({"policy": {"streams": 0}}, "policy.streams", "at least 1"),
    ({"clients": {"host": "dc1h1"}}, "clients.host", "client host"),
    ({"clients": {"probe_ms": 0.5}}, "clients.probe_ms", "at least 1"),
    ({"clients": {"kv_value_bytes": 5000}}, "clients.kv_value_bytes", "at most 1024"),
    ({"schedule": {"warmup_s": -1}}, "schedule.warmup_s", "at least 0"),
    ({"schedule": {"migrate_back": "yes"}}, "schedule.migrate_back", "true or false"),
    ({"repetitions": 0}, "repetitions", "at least 1"),
    ({"seed": 1.5}, "seed", "integer"),
    ({"topology": {"wan": [{"rtt_ms": -3}]}}, "topology.wan[0].rtt_ms", "at least 0"),
    ({"topology": 5}, "topology", "topology file name"),
    ({"topology": "missing.yaml"}, "topology", "existing topology file"),
    ({"topology": {"sites": [{"name": "dc1"}, {"name": "dc2", "clients": 0}]}}, "clients.host",
     "no clients"),
])
def test_bad_input_names_the_key(tmp_path, data, path, word):
    with pytest.raises(ConfigError) as info:
        parse_experiment(data, tmp_path)
    assert info.value.path == path, str(info.value)
    assert word in str(info.value), str(info.value)


def test_error_in_a_topology_file_names_the_file(tmp_path):
    (tmp_path / "t.yaml").write_text("wan: [{rtt_ms: 10, jitter_ms: 6}]\n")
    with pytest.raises(ConfigError) as info:
        parse_experiment({"topology": "t.yaml"}, tmp_path)
    assert info.value.path.startswith("topology.wan[0].jitter_ms (in ")
    assert "t.yaml" in info.value.path


def test_every_shipped_experiment_validates():
    from experiments.sweep import expand, is_sweep, load_sweep
    from ground.yamlfile import read_yaml

    files = sorted(EXPERIMENTS.glob("*.yaml"))
    assert {f.name for f in files} >= {"quickstart.yaml", "rtt_sweep.yaml", "codec_sweep.yaml",
                                       "bandwidth_sweep.yaml", "dirty_rate_sweep.yaml",
                                       "throttle_sweep.yaml"}
    for f in files:
        if is_sweep(read_yaml(f)):
            runs = expand(load_sweep(f))
            assert runs, f
            assert all(r.spec.vm.memory_bytes <= 256 * 2 ** 20 for r in runs), f
        else:
            load_experiment(f)


def test_topology_naming_a_non_yaml_file_is_refused_unread(tmp_path, monkeypatch):
    import experiments.spec as spec_module

    def never(_path):
        raise AssertionError("a file that is not a .yaml/.yml must not be opened")

    monkeypatch.setattr(spec_module, "read_yaml", never)
    with pytest.raises(ConfigError) as info:
        parse_experiment({"topology": "/etc/passwd"}, tmp_path)
    assert info.value.path == "topology"
    assert "ending in .yaml or .yml" in str(info.value)


def test_topology_file_that_holds_no_mapping_is_not_echoed(tmp_path):
    content = "alice:x:0:0:alice:/home/alice:/bin/bash\nsecretuser:x:1000:1000::/home/s:/bin/sh\n"
    (tmp_path / "t.yaml").write_text(content)
    with pytest.raises(ConfigError) as info:
        parse_experiment({"topology": "t.yaml"}, tmp_path)
    message = str(info.value)
    assert "t.yaml" in message and "mapping" in message, message
    assert "alice" not in message and "secretuser" not in message, message


def test_a_long_description_of_the_wrong_type_is_cut(tmp_path):
    with pytest.raises(ConfigError) as info:
        parse_experiment({"description": ["word"] * 10_000}, tmp_path)
    message = str(info.value)
    assert info.value.path == "description"
    assert "(10000 items)" in message and len(message) < 200, message


def test_memory_that_cannot_fit_twice_on_this_machine_is_refused():
    from experiments.capacity import check_capacity
    from migrator.memfit import GIB, HostMemory

    spec = parse_experiment({"vm": {"memory": "15GiB"}})
    machine = HostMemory(available_bytes=23 * GIB, shm_free_bytes=24 * GIB)
    with pytest.raises(ConfigError) as info:
        check_capacity(spec, machine)
    assert info.value.path == "vm.memory" and info.value.value == "15GiB"
    assert "at most 11.2 GiB" in str(info.value), str(info.value)
    check_capacity(parse_experiment({"vm": {"memory": "11GiB"}}), machine)


def test_vm_kind_defaults_to_the_emulated_vm_and_qemu_parses_back(tmp_path):
    assert (parse_experiment({}).vm.kind, parse_experiment({}).vm.vcpus) == ("emulated", 1)
    spec = parse_experiment({"vm": {"kind": "qemu", "vcpus": 2, "memory": "128MiB"}})
    assert (spec.vm.kind, spec.vm.vcpus) == ("qemu", 2)
    assert parse_experiment(resolved_dict(spec), tmp_path) == spec
