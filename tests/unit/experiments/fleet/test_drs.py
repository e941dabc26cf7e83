"""experiments.fleet.drs: loads, imbalance and the KB 1007485 threshold, checked by hand."""

from __future__ import annotations

import math

import pytest

from experiments.fleet import drs
from experiments.fleet.types import HostInfo, VmInfo
from ground.config import ConfigError

GiB = 2 ** 30


def _hosts(c_state: str = "maintenance") -> dict[str, HostInfo]:
    return {"a": HostInfo("a", "s1", 16 * GiB, 8.0), "b": HostInfo("b", "s1", 16 * GiB, 8.0),
            "c": HostInfo("c", "s2", 16 * GiB, 8.0, state=c_state)}


VMS = [VmInfo("v1", "a", 8 * GiB, 2.0), VmInfo("v2", "b", 2 * GiB, 6.0)]


def test_host_load_is_the_busier_resource():
    host = _hosts()["a"]
    assert drs.host_load(host, []) == 0.0
    assert drs.host_load(host, VMS[:1]) == pytest.approx(0.5)      # memory 8/16 > cpu 2/8
    assert drs.host_load(host, VMS[1:]) == pytest.approx(0.75)     # cpu 6/8 > memory 2/16
    assert drs.host_load(host, VMS) == pytest.approx(1.0)          # both: cpu 8/8


def test_loads_cover_every_host_whatever_its_state():
    loads = drs.loads(_hosts(), VMS)
    assert loads == pytest.approx({"a": 0.5, "b": 0.75, "c": 0.0}), loads


def test_imbalance_counts_only_normal_hosts():
    # normal a, b: loads 0.5, 0.75 -> population sd 0.125; c in maintenance is left out
    assert drs.imbalance(_hosts(), VMS) == pytest.approx(0.125, abs=1e-12)
    assert drs.imbalance(_hosts("degraded"), VMS) == pytest.approx(0.125, abs=1e-12)
    # c normal and empty: loads 0.5, 0.75, 0 -> mean 5/12, variance 0.291667/3
    assert drs.imbalance(_hosts("normal"), VMS) == pytest.approx(math.sqrt(0.2916667 / 3),
                                                                  abs=1e-6)


def test_imbalance_is_zero_with_fewer_than_two_normal_hosts():
    hosts = {"a": HostInfo("a", "s1", 16 * GiB, 8.0),
             "b": HostInfo("b", "s1", 16 * GiB, 8.0, state="maintenance")}
    assert drs.imbalance(hosts, VMS) == 0.0
    assert drs.imbalance({}, []) == 0.0


@pytest.mark.parametrize(("n", "expected"), [
    (2, {1: None, 2: 0.3 / math.sqrt(2), 3: 0.2 / math.sqrt(2), 4: 0.1 / math.sqrt(2), 5: 0.0}),
    (4, {1: None, 2: 0.15, 3: 0.1, 4: 0.05, 5: 0.0}),
])
def test_target_imbalance_follows_the_kb_formula(n, expected):
    for level, target in expected.items():
        got = drs.target_imbalance(level, n)
        if target is None:
            assert got is None, (level, n, got)
        else:
            assert got == pytest.approx(target, abs=1e-12), (level, n, got)


@pytest.mark.parametrize("level", [0, 6, -1, True, "3", 2.0])
def test_target_imbalance_refuses_a_level_outside_1_to_5(level):
    with pytest.raises(ConfigError) as err:
        drs.target_imbalance(level, 4)
    assert err.value.path == "drs.threshold"


def test_priority_formula_and_clamping():
    # 6 - ceil(I * 10 * sqrt(N)); N = 4: I = 0.05 is exactly 1 -> priority 5
    assert drs.priority(0.05, 4) == 5
    assert drs.priority(0.0501, 4) == 4
    assert drs.priority(0.1, 4) == 4
    assert drs.priority(0.15, 4) == 3
    assert drs.priority(0.0, 4) == 5          # 6 clamped to 5
    assert drs.priority(1.0, 4) == 1          # 6 - 20 clamped to 1
    assert drs.priority(0.2 / math.sqrt(2), 2) == 4


def test_priority_applied_exactly_when_the_imbalance_exceeds_the_target():
    for n in (2, 3, 4, 9):
        for level in (2, 3, 4, 5):
            target = drs.target_imbalance(level, n)
            for step in range(1, 60):
                imbalance = step * 0.0123
                applied = drs.priority(imbalance, n) <= level
                assert applied == (imbalance > target + 1e-12), (n, level, imbalance, target)
