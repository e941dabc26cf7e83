"""experiments.faults.spec: every kind with its defaults, triggers, and bad input that names
``faults[i].key``, the value and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.faults.spec import KINDS, FaultSpec, faults_dict
from experiments.spec import parse_experiment, resolved_dict
from experiments.sweep import expand, load_sweep
from ground.config import ConfigError

EXPERIMENTS = Path(__file__).resolve().parents[3] / "experiments"
WAN = {"wan": [{"between": ["dc1", "dc2"], "rtt_ms": 50, "bw_mbps": 100}]}


def faults(*items, topology=None):
    return parse_experiment({"topology": topology or WAN, "faults": list(items)}).faults


def test_no_faults_by_default_and_none_in_config_yaml():
    spec = parse_experiment({})
    assert spec.faults == () and "faults" not in resolved_dict(spec)


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_needs_only_a_kind_and_a_trigger(kind):
    (f,) = faults({"kind": kind, "phase": "live"})
    assert (f.kind, f.phase, f.round, f.at_s) == (kind, "live", 1, None)


def test_kind_defaults():
    out, loss, step, kill, cut, ctl = faults(
        {"kind": "wan-outage", "at_s": 2}, {"kind": "loss-burst", "phase": "stop-copy"},
        {"kind": "rtt-step", "phase": "live", "round": 2},
        {"kind": "kill-source", "phase": "verify"},
        {"kind": "cut-destination", "phase": "switchover"},
        {"kind": "restart-controller", "phase": "live"})
    assert (out.duration_s, out.link, out.at_s, out.phase) == (2.0, 1, 2.0, None)
    assert (loss.duration_s, loss.loss_pct, loss.phase) == (2.0, 20.0, "stop-copy")
    assert (step.rtt_ms, step.duration_s, step.round) == (100.0, None, 2)   # twice the link's
    assert kill.duration_s is None and cut.duration_s is None   # to the end of the run
    assert ctl.duration_s == 1.0
    assert [f.trigger for f in (out, loss, step, kill)] == ["2 s", "stop-copy", "live round 2",
                                                            "verify"]


def test_resolved_faults_parse_back_to_the_same_spec():
    spec = parse_experiment({"topology": WAN, "faults": [
        {"kind": "rtt-step", "at_s": 1.5, "rtt_ms": 80, "duration_s": 3},
        {"kind": "loss-burst", "phase": "live", "round": 3, "loss_pct": 5},
        {"kind": "kill-destination", "phase": "stop-copy"}]})
    assert parse_experiment(resolved_dict(spec)) == spec
    assert faults_dict(spec.faults)[2] == {"kind": "kill-destination", "phase": "stop-copy"}


def test_the_default_link_is_the_first_on_the_migration_path():
    topo = {"sites": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
            "wan": [{"between": ["a", "b"], "rtt_ms": 10}, {"between": ["b", "c"], "rtt_ms": 20}]}
    spec = parse_experiment({"topology": topo, "placement": {"source": "bh1",
                                                             "destination": "ch1"},
                             "faults": [{"kind": "wan-outage", "phase": "live"}]})
    assert spec.faults[0].link == 2


@pytest.mark.parametrize("fault, path, expected", [
    ({"kind": "meltdown", "phase": "live"}, "faults[0].kind", "one of wan-outage"),
    ({"phase": "live"}, "faults[0].kind", "one of wan-outage"),
    ({"kind": "wan-outage"}, "faults[0].phase", "a trigger"),
    ({"kind": "wan-outage", "at_s": 1, "phase": "live"}, "faults[0].phase", "one trigger only"),
    ({"kind": "wan-outage", "at_s": -1}, "faults[0].at_s", "at least 0"),
    ({"kind": "wan-outage", "phase": "drain"}, "faults[0].phase", "one of live, stop-copy"),
    ({"kind": "wan-outage", "phase": "stop-copy", "round": 2}, "faults[0].round",
     "no round with phase stop-copy"),
    ({"kind": "wan-outage", "phase": "live", "round": 0}, "faults[0].round", "at least 1"),
    ({"kind": "wan-outage", "phase": "live", "duration_s": 0}, "faults[0].duration_s",
     "greater than 0"),
    ({"kind": "loss-burst", "phase": "live", "loss_pct": 100}, "faults[0].loss_pct",
     "at most 99"),
    ({"kind": "rtt-step", "phase": "live", "rtt_ms": 5000}, "faults[0].rtt_ms", "at most 2000"),
    ({"kind": "wan-outage", "phase": "live", "link": 2}, "faults[0].link", "at most 1"),
    ({"kind": "wan-outage", "phase": "live", "loss_pct": 5}, "faults[0].loss_pct",
     "one of the keys kind, at_s, phase, round, duration_s, link"),
    ({"kind": "kill-source", "phase": "live", "duration_s": 3}, "faults[0].duration_s",
     "one of the keys kind, at_s, phase, round"),
    ({"kind": "restart-controller", "phase": "live", "duration_s": 61},
     "faults[0].duration_s", "at most 60"),
    ({"kind": "cut-destination", "phase": "live", "target": "source"}, "faults[0].target",
     "one of the keys"),
    ("wan-outage", "faults[0]", "a mapping with kind and a trigger"),
])
def test_bad_faults_name_their_key_and_what_was_expected(fault, path, expected):
    with pytest.raises(ConfigError) as err:
        faults(fault)
    assert err.value.path == path, err.value
    assert expected in err.value.expected, err.value


def test_a_misspelt_key_or_kind_gets_a_suggestion():
    with pytest.raises(ConfigError, match=r"did you mean 'duration_s'"):
        faults({"kind": "wan-outage", "phase": "live", "duraton_s": 3})
    with pytest.raises(ConfigError, match=r"did you mean 'kill-source'"):
        faults({"kind": "kill-sorce", "phase": "live"})


def test_faults_must_be_a_short_list():
    with pytest.raises(ConfigError, match=r"faults: .*a list of at most 20"):
        parse_experiment({"faults": {"kind": "wan-outage"}})
    with pytest.raises(ConfigError, match=r"a list of at most 20"):
        faults(*[{"kind": "kill-source", "phase": "live"}] * 21)


def test_wan_faults_need_a_link_the_delay_line_relays():
    flat = {"wan": [{"between": ["dc1", "dc2"], "rtt_ms": 0}]}
    with pytest.raises(ConfigError, match=r"a WAN link with a delay, loss or jitter") as err:
        faults({"kind": "loss-burst", "phase": "live"}, topology=flat)
    assert err.value.path == "faults[0].link"
    assert faults({"kind": "kill-source", "phase": "live"}, topology=flat)[0].kind == "kill-source"


def test_shipped_fault_sweep_is_every_kind_at_live_round_1_and_stop_copy():
    runs = expand(load_sweep(EXPERIMENTS / "faults.yaml"))
    cells = {(r.spec.faults[0].kind, r.spec.faults[0].trigger) for r in runs}
    assert cells == {(k, t) for k in KINDS for t in ("live round 1", "stop-copy")}
    assert all(len(r.spec.faults) == 1 for r in runs)
    assert all(64 * 2**20 <= r.spec.vm.memory_bytes <= 128 * 2**20 for r in runs)
    assert {r.spec.topology.wan[0].rtt_ms for r in runs} == {50.0}
    assert isinstance(runs[0].spec.faults[0], FaultSpec)
