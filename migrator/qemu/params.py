"""The migration policy mapped to QEMU 7.2's migration capabilities and parameters (pure).

One row per policy key; what QEMU cannot do is refused with ``ConfigError("policy.<key>", ...)``
before any QEMU is touched, and what is left at a default QEMU has no equivalent for is listed
in ``not_applied`` with why.

=====================  =======================================================================
policy key             QEMU
=====================  =======================================================================
downtime_target_ms     ``downtime-limit`` (whole milliseconds, at most 2000000)
streams                1: one plain stream, no multifd; n > 1: capability ``multifd`` with
                       ``multifd-channels`` n
codec                  ``none``: no compression; ``zstd-1``: ``multifd-compression zstd`` at
                       ``multifd-zstd-level`` 1; other levels are refused: QEMU 7.2 (Debian's
                       7.2.22, tried here) answers ``migrate-set-parameters
                       multifd-zstd-level=3`` with success and keeps 1 (zlib's level too);
                       QEMU compresses only on multifd channels, so
                       with ``streams: 1`` multifd is turned on with one channel (the codec and
                       the stream count are both what was asked); ``xbzrle``: capability
                       ``xbzrle`` with ``xbzrle-cache-size`` (``xbzrle_cache_mib``), one stream
                       only (QEMU 7.2 accepts xbzrle with multifd, but multifd channels send
                       whole pages: tried here, xbzrle-cache said 0 pages encoded); ``lz4``,
                       ``adaptive``: refused (no QEMU equivalent)
throttle               ``auto-converge``: capability ``auto-converge`` with
                       ``cpu-throttle-initial``/``-increment``, ``max-cpu-throttle`` and
                       ``throttle-trigger-threshold`` in whole percent; ``none``: capability
                       off; ``dirty-limit``: refused (QEMU 8.1+)
dirty_limit_mibps      refused when set (QEMU 8.1+)
max_bandwidth_mbps     ``max-bandwidth`` in bytes/s; None: INT64_MAX (below). QEMU 7.2's own
                       default caps a migration at 128 MiB/s (1.07 Gbit/s), which the
                       emulated migrator never does; libvirt asks for "unlimited" the same way
mode                   ``live``: as is; ``cold``: the driver stops the guest (``stop``) before
                       ``migrate``: QEMU copies a paused guest in one pass, downtime = total
time_budget_s,         applied by the driver: ``force`` raises ``downtime-limit`` to its
on_budget              maximum so the next iteration completes; ``abort`` is ``migrate_cancel``
max_rounds             QEMU has no round cap: at its default it is listed in ``not_applied``,
                       any other value is refused
encryption             ``aes-256-gcm``, ``chacha20-poly1305``: TLS with a pre-shared key
                       (``tls-creds-psk`` on both QEMUs), the cipher restricted by a GnuTLS
                       priority string (below); ``none``: no TLS
=====================  =======================================================================

Why AES-256-GCM is TLS 1.2 and ChaCha20-Poly1305 TLS 1.3: a TLS 1.3 external PSK carries a hash
(SHA-256 by default in GnuTLS) and only suites of that hash may use it; TLS_AES_256_GCM_SHA384
is SHA-384, so with 1.3 only GnuTLS answers "No supported cipher suites have been found"
(tried with QEMU 7.2 here). TLS 1.2 has PSK suites with AES-256-GCM (ECDHE-PSK, DHE-PSK, PSK;
QEMU adds those key exchanges to the priority of PSK credentials).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ground.config import ConfigError
from migrator.core.policy import MigrationPolicy

MIB = 1024 * 1024
INT64_MAX = 2 ** 63 - 1
UNCAPPED_BANDWIDTH = INT64_MAX          # bytes/s: "no cap", as libvirt's unlimited
MAX_DOWNTIME_LIMIT_MS = 2_000_000       # QEMU's MAX_MIGRATE_DOWNTIME_SECONDS * 1000
QEMU_CODECS = "none, zstd-1, xbzrle"
QEMU_ZSTD_LEVELS = (1,)                 # what QEMU 7.2 applies (see the module docstring)
TLS_ID = "wanmig-tls0"                  # the tls-creds-psk object on both QEMUs
TLS_PRIORITIES = {
    "aes-256-gcm": "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+AES-256-GCM",
    "chacha20-poly1305": "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+CHACHA20-POLY1305",
}
# The capabilities set on both QEMUs, every one explicitly (on or off) so that a QEMU's own
# defaults never decide; ``events`` gives MIGRATION status and MIGRATION_PASS events.
CAPABILITIES = ("events", "multifd", "xbzrle", "auto-converge")
_DEFAULT = MigrationPolicy()


@dataclass(frozen=True)
class QemuSettings:
    """What to ask of both QEMUs for one migration (``qemu_settings``)."""

    capabilities: dict[str, bool]
    parameters: dict[str, Any]          # migrate-set-parameters arguments, QEMU's names
    tls: str | None                     # the AEAD (policy.encryption) or None: no TLS
    tls_priority: str | None            # the GnuTLS priority that allows only that cipher
    codec: str                          # policy.codec, for rounds.csv
    throttle_policy: str                # policy.throttle, for rounds.csv
    stop_first: bool                    # mode cold: ``stop`` the guest before ``migrate``
    time_budget_s: float
    on_budget: str                      # force or abort
    not_applied: dict[str, str] = field(default_factory=dict)   # policy key => why


def _percent(value: float, key: str, lowest: int, highest: int) -> int:
    """A fraction as QEMU's whole percent; ConfigError naming ``policy.key`` otherwise."""
    pct = round(value * 100)
    if abs(value * 100 - pct) > 1e-6 or not lowest <= pct <= highest:
        raise ConfigError(f"policy.{key}", value,
                          f"a whole percent from {lowest / 100:g} to {highest / 100:g} for "
                          f"vm.kind qemu (QEMU takes integer percents)")
    return pct


def _codec(policy: MigrationPolicy) -> tuple[dict[str, bool], dict[str, Any]]:
    """Capabilities and parameters of the codec and the stream count."""
    codec, streams = policy.codec, policy.streams
    caps = {"multifd": False, "xbzrle": False}
    params: dict[str, Any] = {}
    if codec == "xbzrle":
        if streams != 1:
            raise ConfigError("policy.codec", codec,
                              f"with policy.streams 1 for vm.kind qemu (got streams {streams}):"
                              " QEMU's multifd channels send whole pages, never xbzrle")
        caps["xbzrle"] = True
        params["xbzrle-cache-size"] = policy.xbzrle_cache_mib * MIB
        return caps, params
    if codec == "none":
        level = None
    elif codec.startswith("zstd-") and codec[5:].isdigit() and \
            int(codec[5:]) in QEMU_ZSTD_LEVELS:
        level = int(codec[5:])
    elif codec.startswith("zstd-"):
        raise ConfigError("policy.codec", codec,
                          f"for vm.kind qemu one of {QEMU_CODECS} (QEMU 7.2 keeps "
                          "multifd-zstd-level at 1 whatever it is told)")
    else:
        raise ConfigError("policy.codec", codec, f"for vm.kind qemu one of {QEMU_CODECS}")
    if streams > 1 or level is not None:
        caps["multifd"] = True
        params["multifd-channels"] = streams
        params["multifd-compression"] = "none" if level is None else "zstd"
        if level is not None:
            params["multifd-zstd-level"] = level
    return caps, params


def _throttle(policy: MigrationPolicy) -> tuple[bool, dict[str, Any]]:
    if policy.throttle == "dirty-limit":
        raise ConfigError("policy.throttle", policy.throttle,
                          "auto-converge or none for vm.kind qemu (QEMU's dirty-limit came "
                          "with 8.1; this is 7.2)")
    if policy.dirty_limit_mibps is not None:
        raise ConfigError("policy.dirty_limit_mibps", policy.dirty_limit_mibps,
                          "null for vm.kind qemu (QEMU's vcpu-dirty-limit came with 8.1)")
    if policy.throttle == "none":
        return False, {}
    return True, {
        "cpu-throttle-initial": _percent(policy.throttle_initial, "throttle_initial", 1, 99),
        "cpu-throttle-increment": _percent(policy.throttle_step, "throttle_step", 1, 99),
        "max-cpu-throttle": _percent(policy.throttle_max, "throttle_max", 1, 99),
        "throttle-trigger-threshold": _percent(policy.throttle_trigger, "throttle_trigger",
                                               1, 100),
    }


def _bandwidth(policy: MigrationPolicy, link_mbps: float | None,
               not_applied: dict[str, str]) -> int:
    mbps = policy.max_bandwidth_mbps
    if mbps is None:
        return UNCAPPED_BANDWIDTH
    if link_mbps is not None and mbps > link_mbps:
        not_applied["max_bandwidth_mbps"] = (f"{mbps:g} Mbit/s is above the link's "
                                             f"{link_mbps:g}: the link is the limit")
    return max(1, round(mbps * 1e6 / 8))


def qemu_settings(policy: MigrationPolicy, *, link_mbps: float | None = None) -> QemuSettings:
    """``policy`` as QEMU 7.2's capabilities and parameters (see the module docstring);
    ConfigError naming the policy key for anything QEMU cannot do."""
    if link_mbps is not None and not link_mbps > 0:
        raise ConfigError("link_mbps", link_mbps, "a rate in Mbit/s above 0, or none")
    not_applied: dict[str, str] = {}
    if policy.max_rounds != _DEFAULT.max_rounds:
        raise ConfigError("policy.max_rounds", policy.max_rounds,
                          f"the default {_DEFAULT.max_rounds} for vm.kind qemu (QEMU has no "
                          "round cap: it iterates until the expected downtime meets "
                          "downtime-limit)")
    not_applied["max_rounds"] = ("QEMU has no round cap; it iterates until the expected "
                                 "downtime meets downtime-limit (or the time budget acts)")
    downtime = round(policy.downtime_target_ms)
    if not 1 <= downtime <= MAX_DOWNTIME_LIMIT_MS:
        raise ConfigError("policy.downtime_target_ms", policy.downtime_target_ms,
                          f"1 to {MAX_DOWNTIME_LIMIT_MS} ms for vm.kind qemu "
                          "(downtime-limit, whole milliseconds)")
    if policy.encryption not in ("none", *TLS_PRIORITIES):
        raise ConfigError("policy.encryption", policy.encryption,
                          f"one of none, {', '.join(TLS_PRIORITIES)}")
    caps, params = _codec(policy)
    converge, throttle_params = _throttle(policy)
    caps = {"events": True, **caps, "auto-converge": converge}
    params = {"downtime-limit": downtime,
              "max-bandwidth": _bandwidth(policy, link_mbps, not_applied),
              **params, **throttle_params}
    tls = None if policy.encryption == "none" else policy.encryption
    if tls is None:
        not_applied["encryption"] = ("none: QEMU's stream is then neither encrypted nor "
                                     "authenticated (the emulated migrator still MACs its "
                                     "control stream)")
    else:
        params["tls-creds"] = TLS_ID
    return QemuSettings(capabilities=caps, parameters=params, tls=tls,
                        tls_priority=TLS_PRIORITIES.get(policy.encryption), codec=policy.codec,
                        throttle_policy=policy.throttle, stop_first=policy.mode == "cold",
                        time_budget_s=policy.time_budget_s, on_budget=policy.on_budget,
                        not_applied=not_applied)


def capability_list(caps: dict[str, bool]) -> list[dict[str, Any]]:
    """The argument of ``migrate-set-capabilities``."""
    return [{"capability": name, "state": state} for name, state in caps.items()]


def differences(asked: dict[str, Any], reported: dict[str, Any]) -> dict[str, tuple]:
    """Each key of ``asked`` whose value QEMU reports otherwise: ``{key: (asked, reported)}``
    (capabilities as ``{name: state}`` or parameters); empty when QEMU took everything."""
    return {k: (v, reported.get(k)) for k, v in asked.items() if reported.get(k) != v}


def reported_capabilities(listed: list[dict[str, Any]]) -> dict[str, bool]:
    """``query-migrate-capabilities``'s list as ``{name: state}``."""
    return {c["capability"]: c["state"] for c in listed}
