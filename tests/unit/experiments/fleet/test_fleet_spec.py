"""The fleet's keys: defaults from vm:, every bad input named by its key, the resolved config
parsing back to the same spec, and what a fleet refuses (placement, faults, disks)."""

from __future__ import annotations

import pytest

from experiments.capacity import check_fleet_capacity
from experiments.runner import check_runnable
from experiments.spec import load_experiment, parse_experiment, resolved_dict
from ground.config import ConfigError
from migrator.memfit import HostMemory

TOPO = {"sites": [{"name": "dc1", "hypervisors": 2}, {"name": "dc2"}],
        "wan": [{"between": ["dc1", "dc2"], "rtt_ms": 150, "bw_mbps": 250}]}


def fleet(**over):
    data = {"topology": TOPO, "vm": {"memory": "128MiB", "workload": "web"},
            "vms": [{"name": "a1", "host": "dc1h1"},
                    {"name": "b1", "host": "dc1h2", "memory": "256MiB", "workload": "idle",
                     "cpu": 2}],
            "events": [{"at": 0, "action": "evacuate", "host": "dc1h1"},
                       {"at": 5, "action": "migrate", "vm": "b1", "to": "auto"}]}
    data.update(over)
    return data


def test_vms_take_the_vm_keys_as_defaults_and_their_own_over_them():
    s = parse_experiment(fleet())
    a, b = s.fleet.vms
    assert (a.vm.memory_bytes, a.vm.workload_preset, a.cpu, a.site) == (128 << 20, "web", 1.0,
                                                                        "dc1")
    assert (b.vm.memory_bytes, b.vm.workload_preset, b.cpu) == (256 << 20, "idle", 2.0)
    assert a.vm.seed != b.vm.seed, "each VM its own seed by default"
    assert s.fleet.hosts["dc2h1"].memory_bytes == 4 << 30 and s.fleet.drs.threshold == 3


def test_the_resolved_config_parses_back_to_the_same_fleet():
    s = parse_experiment(fleet(hosts={"default": {"memory": "2GiB"}, "dc2h1": {"cpu": 8}},
                               drs={"threshold": 4, "rules": [
                                   {"kind": "vm-host", "vms": ["b1"], "hosts": ["dc2h1"]}]},
                               execution={"max_concurrent": 2, "order": "largest-cost",
                                          "duration_s": 60},
                               events=[{"every": 20, "action": "rebalance"}]))
    assert parse_experiment(resolved_dict(s)) == s


@pytest.mark.parametrize("over, path", [
    ({"vms": [{"name": "A1", "host": "dc1h1"}]}, "vms[0].name"),
    ({"vms": [{"name": "dc1h1", "host": "dc1h1"}]}, "vms[0].name"),
    ({"vms": [{"name": "a1", "host": "dc9h1"}]}, "vms[0].host"),
    ({"vms": [{"name": "a1", "host": "dc1h1", "memory": "1KiB"}]}, "vms[0].memory"),
    ({"vms": [{"name": "a1", "host": "dc1h1", "disk": {"size": "1GiB"}}]}, "vms[0].disk"),
    ({"hosts": {"dc7h1": {"memory": "1GiB"}}}, "hosts.dc7h1"),
    ({"hosts": {"default": {"memory": "0"}}}, "hosts.default.memory"),
    ({"drs": {"threshold": 6}}, "drs.threshold"),
    ({"drs": {"rules": [{"kind": "anti-affinity", "vms": ["a1"]}]}}, "drs.rules[0].vms"),
    ({"execution": {"order": "random"}}, "execution.order"),
    ({"execution": {"max_concurrent": 0}}, "execution.max_concurrent"),
    ({"events": [{"every": 10, "action": "rebalance"}]}, "execution.duration_s"),
    ({"events": [{"at": 0, "action": "migrate", "vm": "zz", "to": "auto"}]}, "events[0].vm"),
    ({"events": [{"at": 0, "action": "migrate", "vm": "a1"}]}, "events[0].to"),
    ({"events": [{"at": 0, "action": "evacuate", "vm": "a1"}]}, "events[0].vm"),
    ({"events": [{"action": "rebalance"}]}, "events[0]"),
    ({"placement": {"source": "dc1h1"}}, "placement"),
])
def test_bad_input_names_its_key(over, path):
    with pytest.raises(ConfigError) as err:
        parse_experiment(fleet(**over))
    assert err.value.path == path, str(err.value)


def test_fleet_keys_without_vms_are_refused_and_migrate_back_points_to_fleets():
    with pytest.raises(ConfigError) as err:
        parse_experiment({"events": [{"at": 0, "action": "rebalance"}]})
    assert err.value.path == "events"
    with pytest.raises(ConfigError, match="fleet experiment") as err:
        check_runnable(parse_experiment({"schedule": {"migrate_back": True}}))
    assert err.value.path == "schedule.migrate_back"


def test_the_fleet_must_fit_this_machine_all_at_once():
    s = parse_experiment(fleet())
    roomy = HostMemory(available_bytes=64 << 30, shm_free_bytes=64 << 30, shm_dir="/dev/shm")
    check_fleet_capacity(s, roomy)
    tight = HostMemory(available_bytes=512 << 20, shm_free_bytes=512 << 20, shm_dir="/dev/shm")
    with pytest.raises(ConfigError) as err:
        check_fleet_capacity(s, tight)
    assert err.value.path == "vms" and "2 VMs" in str(err.value.value)


@pytest.mark.parametrize("name", ["evacuate", "rebalance"])
def test_the_shipped_fleet_experiments_parse(name):
    from pathlib import Path

    from experiments.sweep import expand, load_sweep

    here = Path(__file__).resolve().parents[4] / "experiments"
    if name == "evacuate":
        runs = expand(load_sweep(here / "evacuate.yaml"))
        assert [r.spec.fleet.execution.max_concurrent for r in runs] == [1, 2, 4]
        assert all(len(r.spec.fleet.vms) == 4 and r.spec.topology.wan[0].rtt_ms == 150
                   for r in runs)
    else:
        s = load_experiment(here / "rebalance.yaml")
        assert s.fleet.events[0].action == "rebalance"


def test_a_vms_own_policy_keys_go_over_the_experiments():
    s = parse_experiment(fleet(policy={"codec": "lz4", "downtime_target_ms": 200},
                               vms=[{"name": "a1", "host": "dc1h1"},
                                    {"name": "b1", "host": "dc1h2",
                                     "policy": {"downtime_target_ms": 500}}],
                               events=[]))
    a, b = s.fleet.vms
    assert (a.policy.codec, a.policy.downtime_target_ms) == ("lz4", 200.0)
    assert (b.policy.codec, b.policy.downtime_target_ms) == ("lz4", 500.0)
    with pytest.raises(ConfigError) as err:
        parse_experiment(fleet(vms=[{"name": "a1", "host": "dc1h1",
                                     "policy": {"codec": "gzip"}}], events=[]))
    assert err.value.path == "vms[0].policy.codec"
