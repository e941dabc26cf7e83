"""migrator.qemu.params: every policy key mapped to QEMU 7.2's capabilities and parameters, and
every refusal a ConfigError that names its policy key."""

from __future__ import annotations

import dataclasses

import pytest

from ground.config import ConfigError
from migrator.core.policy import MigrationPolicy
from migrator.qemu.params import (
    CAPABILITIES,
    MAX_DOWNTIME_LIMIT_MS,
    MIB,
    TLS_ID,
    UNCAPPED_BANDWIDTH,
    capability_list,
    differences,
    qemu_settings,
    reported_capabilities,
)

# A policy QEMU can take: the defaults with a codec QEMU has (adaptive has none).
BASE = MigrationPolicy(codec="none")


def settings(**changes):
    return qemu_settings(dataclasses.replace(BASE, **changes))


def test_defaults_map_to_qemu_defaults_but_no_bandwidth_cap():
    s = settings()
    assert set(s.capabilities) == set(CAPABILITIES)
    assert s.capabilities == {"events": True, "multifd": True, "xbzrle": False,
                              "auto-converge": True}
    p = s.parameters
    assert p["downtime-limit"] == 300
    assert (p["cpu-throttle-initial"], p["cpu-throttle-increment"], p["max-cpu-throttle"],
            p["throttle-trigger-threshold"]) == (20, 10, 99, 50)
    assert p["max-bandwidth"] == UNCAPPED_BANDWIDTH == 2 ** 63 - 1
    assert p["multifd-channels"] == 4 and p["multifd-compression"] == "none"
    assert s.tls == "aes-256-gcm" and p["tls-creds"] == TLS_ID
    assert not s.stop_first and s.time_budget_s == 600 and s.on_budget == "force"
    assert "max_rounds" in s.not_applied and s.codec == "none"


def test_downtime_target_is_whole_milliseconds():
    assert settings(downtime_target_ms=50.4).parameters["downtime-limit"] == 50
    with pytest.raises(ConfigError, match=r"policy\.downtime_target_ms"):
        settings(downtime_target_ms=MAX_DOWNTIME_LIMIT_MS + 1)
    with pytest.raises(ConfigError, match=r"policy\.downtime_target_ms"):
        settings(downtime_target_ms=0.2)


def test_one_stream_is_plain_migration():
    s = settings(streams=1)
    assert s.capabilities["multifd"] is False
    assert not {"multifd-channels", "multifd-compression"} & set(s.parameters)


def test_streams_are_multifd_channels():
    s = settings(streams=8)
    assert s.capabilities["multifd"] and s.parameters["multifd-channels"] == 8


def test_zstd_is_multifd_compression():
    s = settings(codec="zstd-1", streams=2)
    assert s.capabilities["multifd"] and not s.capabilities["xbzrle"]
    assert s.parameters["multifd-compression"] == "zstd"
    assert s.parameters["multifd-zstd-level"] == 1
    assert s.codec == "zstd-1"


@pytest.mark.parametrize("level", [2, 3, 19])
def test_zstd_levels_qemu_does_not_apply_are_refused(level):
    with pytest.raises(ConfigError) as err:
        settings(codec=f"zstd-{level}", streams=2)
    assert err.value.path == "policy.codec" and "keeps multifd-zstd-level at 1" in \
        str(err.value)


def test_zstd_with_one_stream_turns_multifd_on_with_one_channel():
    s = settings(codec="zstd-1", streams=1)
    assert s.capabilities["multifd"] and s.parameters["multifd-channels"] == 1
    assert s.parameters["multifd-zstd-level"] == 1


def test_xbzrle_is_its_capability_with_the_cache():
    s = settings(codec="xbzrle", streams=1, xbzrle_cache_mib=128)
    assert s.capabilities["xbzrle"] and not s.capabilities["multifd"]
    assert s.parameters["xbzrle-cache-size"] == 128 * MIB


def test_xbzrle_with_several_streams_is_refused_naming_both():
    with pytest.raises(ConfigError, match=r"policy\.codec.*policy\.streams 1"):
        settings(codec="xbzrle", streams=4)


@pytest.mark.parametrize("codec", ["lz4", "adaptive"])
def test_codecs_qemu_lacks_are_refused(codec):
    with pytest.raises(ConfigError) as err:
        settings(codec=codec)
    assert err.value.path == "policy.codec"
    assert "for vm.kind qemu one of none, zstd-1, xbzrle" in str(err.value)


def test_auto_converge_steps_are_percents():
    s = settings(throttle_initial=0.3, throttle_step=0.05, throttle_max=0.8,
                 throttle_trigger=0.7)
    p = s.parameters
    assert (p["cpu-throttle-initial"], p["cpu-throttle-increment"], p["max-cpu-throttle"],
            p["throttle-trigger-threshold"]) == (30, 5, 80, 70)
    assert s.throttle_policy == "auto-converge"


@pytest.mark.parametrize(("key", "value"), [("throttle_initial", 0.0),
                                            ("throttle_initial", 0.255),
                                            ("throttle_step", 0.001),
                                            ("throttle_max", 0.0)])
def test_throttle_percents_qemu_cannot_take_are_refused(key, value):
    with pytest.raises(ConfigError) as err:
        settings(**{key: value})
    assert err.value.path == f"policy.{key}" and "whole percent" in str(err.value)


def test_throttle_none_turns_auto_converge_off():
    s = settings(throttle="none")
    assert s.capabilities["auto-converge"] is False
    assert "cpu-throttle-initial" not in s.parameters


def test_dirty_limit_is_refused():
    with pytest.raises(ConfigError, match=r"policy\.throttle.*8\.1"):
        settings(throttle="dirty-limit")
    with pytest.raises(ConfigError, match=r"policy\.dirty_limit_mibps"):
        settings(dirty_limit_mibps=8.0)


def test_bandwidth_cap_in_bytes_per_second():
    assert settings(max_bandwidth_mbps=100).parameters["max-bandwidth"] == 12_500_000
    s = qemu_settings(dataclasses.replace(BASE, max_bandwidth_mbps=500), link_mbps=250)
    assert "max_bandwidth_mbps" in s.not_applied
    with pytest.raises(ConfigError, match="link_mbps"):
        qemu_settings(BASE, link_mbps=0)


def test_cold_stops_first():
    assert settings(mode="cold").stop_first is True


def test_budget_passes_to_the_driver():
    s = settings(time_budget_s=12.5, on_budget="abort")
    assert (s.time_budget_s, s.on_budget) == (12.5, "abort")


def test_max_rounds_changed_is_refused():
    with pytest.raises(ConfigError, match=r"policy\.max_rounds"):
        settings(max_rounds=5)


@pytest.mark.parametrize(("cipher", "must"), [
    ("aes-256-gcm", ("+VERS-TLS1.2", "-CIPHER-ALL", "+AES-256-GCM")),
    ("chacha20-poly1305", ("+VERS-TLS1.3", "-CIPHER-ALL", "+CHACHA20-POLY1305"))])
def test_encryption_is_tls_psk_restricted_to_the_cipher(cipher, must):
    s = settings(encryption=cipher)
    assert s.tls == cipher and s.parameters["tls-creds"] == TLS_ID
    assert all(part in s.tls_priority.split(":") for part in must), s.tls_priority
    assert "-VERS-ALL" in s.tls_priority


def test_no_encryption_is_no_tls_and_says_so():
    s = settings(encryption="none")
    assert s.tls is None and s.tls_priority is None and "tls-creds" not in s.parameters
    assert "encryption" in s.not_applied


def test_unknown_encryption_is_refused():
    with pytest.raises(ConfigError, match=r"policy\.encryption"):
        settings(encryption="rot13")


def test_capability_list_and_differences():
    caps = {"events": True, "multifd": False}
    assert capability_list(caps) == [{"capability": "events", "state": True},
                                     {"capability": "multifd", "state": False}]
    listed = [{"capability": "events", "state": True}, {"capability": "multifd",
                                                        "state": True}]
    assert differences(caps, reported_capabilities(listed)) == {"multifd": (False, True)}
    assert differences({"downtime-limit": 300}, {"downtime-limit": 300, "x": 1}) == {}
