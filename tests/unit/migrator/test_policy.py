"""migrator.core.policy: defaults follow QEMU, every bad value is a ConfigError naming its key."""

from __future__ import annotations

import pytest

from ground.config import ConfigError
from migrator.core.policy import MigrationPolicy, parse_policy


def test_defaults_match_qemu():
    p = parse_policy(None)
    assert p == MigrationPolicy()
    assert (p.downtime_target_ms, p.throttle_initial, p.throttle_step, p.throttle_max) == \
        (300.0, 0.2, 0.1, 0.99)
    assert (p.mode, p.on_budget, p.codec, p.streams, p.xbzrle_cache_mib) == \
        ("live", "force", "adaptive", 4, 64)
    assert p.max_bandwidth_mbps is None and p.throttle == "auto-converge"
    assert p.throttle_trigger == 0.5 and p.dirty_limit_mibps is None
    assert p.downtime_target_s == pytest.approx(0.3)


def test_full_mapping_parsed():
    p = parse_policy({"mode": "cold", "downtime_target_ms": 50, "max_rounds": 5,
                      "time_budget_s": 60, "on_budget": "abort", "codec": "zstd-9",
                      "streams": 16, "max_bandwidth_mbps": 100, "throttle": "dirty-limit",
                      "throttle_initial": 0.3, "throttle_step": 0.2, "throttle_max": 0.5,
                      "xbzrle_cache_mib": 128, "throttle_trigger": 0.4,
                      "dirty_limit_mibps": 8})
    assert p.mode == "cold" and p.codec == "zstd-9" and p.streams == 16
    assert p.max_bandwidth_mbps == 100.0 and p.throttle_max == 0.5
    assert (p.throttle, p.throttle_trigger, p.dirty_limit_mibps) == ("dirty-limit", 0.4, 8)
    assert isinstance(p.max_rounds, int) and p.max_rounds == 5


@pytest.mark.parametrize(("key", "value", "expected_word"), [
    ("downtime_target_ms", 0, "greater than 0"),
    ("downtime_target_ms", -5, "greater than 0"),
    ("downtime_target_ms", "300", "number"),
    ("max_rounds", 0, "at least 1"),
    ("max_rounds", 2.5, "integer"),
    ("time_budget_s", 0, "greater than 0"),
    ("on_budget", "panic", "force, abort"),
    ("mode", "warm", "live, cold"),
    ("codec", "gzip", "zstd-1 .. zstd-19"),
    ("codec", "zstd-20", "zstd-1 .. zstd-19"),
    ("codec", 3, "string"),
    ("streams", 0, "at least 1"),
    ("streams", 17, "at most 16"),
    ("max_bandwidth_mbps", 0, "greater than 0"),
    ("auto_converge", True, "no such key any more: policy.throttle"),
    ("throttle", "yes", "one of auto-converge, dirty-limit, none"),
    ("throttle_trigger", 0, "greater than 0"),
    ("dirty_limit_mibps", -1, "greater than 0"),
    ("throttle_initial", 1.5, "at most 0.99"),
    ("throttle_step", 0, "greater than 0"),
    ("throttle_max", 1.0, "at most 0.99"),
    ("xbzrle_cache_mib", 0, "at least 1"),
])
def test_bad_values_name_the_key(key, value, expected_word):
    with pytest.raises(ConfigError) as info:
        parse_policy({key: value})
    assert info.value.path == f"policy.{key}"
    assert info.value.value == value
    assert expected_word in info.value.expected


def test_throttle_max_below_initial_rejected():
    with pytest.raises(ConfigError) as info:
        parse_policy({"throttle_initial": 0.5, "throttle_max": 0.4})
    assert info.value.path == "policy.throttle_max"
    assert "0.5" in info.value.expected


def test_unknown_key_suggests_and_custom_path():
    with pytest.raises(ConfigError) as info:
        parse_policy({"downtime_ms": 10}, path="runs[2].policy")
    assert info.value.path == "runs[2].policy.downtime_ms"
    assert "downtime_target_ms" in info.value.expected


def test_policy_is_frozen():
    p = MigrationPolicy()
    with pytest.raises(AttributeError):
        p.mode = "cold"  # type: ignore[misc]
