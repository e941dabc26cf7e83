"""The migration policy: what the operator asks for, validated before anything starts.

Defaults mirror QEMU (``downtime-limit`` 300 ms, ``cpu-throttle-initial`` 20 %,
``cpu-throttle-increment`` 10 %, ``max-cpu-throttle`` 99 %, ``throttle-trigger-threshold``
50 %, xbzrle cache 64 MiB) so that the testbed's numbers are comparable with a stock hypervisor
unless a run says otherwise.

``throttle`` chooses how a guest that dirties faster than the link carries is slowed down
(``migrator.core.throttle``): ``auto-converge`` slows its vCPUs (QEMU's capability of that
name), ``dirty-limit`` caps its write rate (QEMU's ``dirty-limit``, ``vcpu-dirty-limit``),
``none`` leaves it alone. ``dirty_limit_mibps`` fixes the cap; without it the cap is sized from
the measured transfer rate (``throttle_trigger`` times it).

``encryption`` protects every stream of the migration (``migrator.wire.seal``): an AEAD per
frame under keys fresh for each connection, as QEMU's TLS migration and VMware's encrypted
vMotion (AES-GCM) do; ``none`` is there to measure what encryption costs, and still MACs the
control stream and keys the image check.

``storage`` says what happens to a VM's disk (``vm.disk``; ignored without one): ``background``
copies it with the memory, in the same rounds (Storage vMotion's shared-nothing migration),
``write-blocking`` too, but every guest write from the start reaches both copies before it
completes (QEMU's active mirror), so no round re-sends a sector; ``shared`` leaves it in the
source site's datastore, reached over NBD, across the WAN once the VM has moved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ground.config import ConfigError, Section

MODES = ("live", "cold")
ON_BUDGET = ("force", "abort")
THROTTLES = ("auto-converge", "dirty-limit", "none")
KEYS = ("mode", "downtime_target_ms", "max_rounds", "time_budget_s", "on_budget", "codec",
        "streams", "max_bandwidth_mbps", "throttle", "throttle_trigger", "throttle_initial",
        "throttle_step", "throttle_max", "dirty_limit_mibps", "xbzrle_cache_mib", "encryption",
        "storage")
# The channel's encryptions (``migrator.wire.session.ENCRYPTIONS``), named here so that the
# policy stays free of the wire's imports; a test checks the two agree.
ENCRYPTIONS = ("aes-256-gcm", "chacha20-poly1305", "none")
STORAGES = ("background", "write-blocking", "shared")


@dataclass(frozen=True)
class MigrationPolicy:
    """How one migration is run; see the module docstring for where the defaults come from."""

    mode: str = "live"
    downtime_target_ms: float = 300.0
    max_rounds: int = 30
    time_budget_s: float = 600.0
    on_budget: str = "force"
    codec: str = "adaptive"
    streams: int = 4
    max_bandwidth_mbps: float | None = None
    throttle: str = "auto-converge"
    throttle_trigger: float = 0.5
    throttle_initial: float = 0.2
    throttle_step: float = 0.1
    throttle_max: float = 0.99
    dirty_limit_mibps: float | None = None
    xbzrle_cache_mib: int = 64
    encryption: str = "aes-256-gcm"
    storage: str = "background"

    @property
    def downtime_target_s(self) -> float:
        return self.downtime_target_ms / 1000.0


def stream_ceiling(streams: int, asked: int | None = None) -> int:
    """The most data streams a migration starting with ``streams`` may open: ``asked``, or
    twice the start (at most 16); never fewer than it starts with."""
    return max(streams, asked or min(16, 2 * streams))


def parse_policy(data: Any, path: str = "policy") -> MigrationPolicy:
    """A validated policy from a YAML mapping; any bad value raises ConfigError with its key."""
    # Imported here: codecs imports numpy and compression libraries, policy should stay light.
    from migrator.codecs.names import check_codec_name

    if isinstance(data, dict) and "auto_converge" in data:
        raise ConfigError(f"{path}.auto_converge", data["auto_converge"],
                          f"no such key any more: {path}.throttle, one of {', '.join(THROTTLES)}")
    s = Section(data, path, KEYS)
    d = MigrationPolicy()
    codec = s.string("codec", d.codec)
    if codec != "adaptive":
        check_codec_name(codec, s.where("codec"))
    initial = s.number("throttle_initial", d.throttle_initial, minimum=0.0, maximum=0.99)
    step = s.number("throttle_step", d.throttle_step, above=0.0, maximum=0.99)
    tmax = s.number("throttle_max", d.throttle_max, minimum=0.0, maximum=0.99)
    if tmax < initial:
        raise ConfigError(s.where("throttle_max"), tmax,
                          f"a number of at least throttle_initial ({initial:g})")
    return MigrationPolicy(
        mode=s.string("mode", d.mode, MODES),
        downtime_target_ms=s.number("downtime_target_ms", d.downtime_target_ms, above=0.0),
        max_rounds=s.number("max_rounds", d.max_rounds, minimum=1, maximum=10_000, integer=True),
        time_budget_s=s.number("time_budget_s", d.time_budget_s, above=0.0),
        on_budget=s.string("on_budget", d.on_budget, ON_BUDGET),
        codec=codec,
        streams=s.number("streams", d.streams, minimum=1, maximum=16, integer=True),
        max_bandwidth_mbps=s.number("max_bandwidth_mbps", above=0.0, optional=True),
        throttle=s.string("throttle", d.throttle, THROTTLES),
        throttle_trigger=s.number("throttle_trigger", d.throttle_trigger, above=0.0,
                                  maximum=1.0),
        dirty_limit_mibps=s.number("dirty_limit_mibps", above=0.0, optional=True),
        throttle_initial=initial,
        throttle_step=step,
        throttle_max=tmax,
        xbzrle_cache_mib=s.number("xbzrle_cache_mib", d.xbzrle_cache_mib, minimum=1,
                                  maximum=65536, integer=True),
        encryption=s.string("encryption", d.encryption, ENCRYPTIONS),
        storage=s.string("storage", d.storage, STORAGES),
    )
