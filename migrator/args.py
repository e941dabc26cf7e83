"""The migrator's command-line arguments checked before anything starts (no guest, no socket):
a bad one is a ConfigError that names the argument, the value and what was expected.

The shared key of ``migrate-source``/``migrate-dest``: ``--key-file`` (at least 16 bytes, read
as is) or the environment variable ``WANMIG_MIGRATION_KEY`` (hex); the loopback command makes
a fresh random key itself.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Any

from ground.config import ConfigError

_SIZE_RE = re.compile(r"\s*([0-9]+)\s*(KiB|MiB|GiB)\s*")
_UNITS = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
KEY_ENV = "WANMIG_MIGRATION_KEY"


def parse_size(text: str, arg: str = "--memory") -> int:
    """``'256MiB'`` -> bytes; a whole number of 4 KiB pages, at least one."""
    from migrator.memory.pages import PAGE_SIZE

    m = _SIZE_RE.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise ConfigError(arg, text, "a size like 256MiB (a whole number with KiB, MiB or GiB)")
    size = int(m.group(1)) * _UNITS[m.group(2)]
    if size < PAGE_SIZE or size % PAGE_SIZE:
        raise ConfigError(arg, text, f"a whole number of {PAGE_SIZE}-byte pages (at least one)")
    return size


def check_loopback_fits(size: int, text: str, policy: Any, *, real: bool,
                        arg: str = "--memory") -> None:
    """Both copies of a loopback migration (and its caches) fit this machine now: in the
    images' folder and MemAvailable for the real guest, in MemAvailable for the in-process
    one (``migrator.memfit``)."""
    from migrator.guest.image import shm_dir
    from migrator.memfit import check_fits, footprint, read_host_memory

    check_fits(arg, text, size, footprint(policy, in_shm=real), read_host_memory(shm_dir()))


def parse_hostport(text: str, arg: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(arg, text, "HOST:PORT with a port from 0 to 65535")
    return host, int(port)


def policy_from_args(args: argparse.Namespace) -> Any:
    """The MigrationPolicy, every error naming the command-line argument."""
    from migrator.codecs.names import check_codec_name
    from migrator.core.policy import ENCRYPTIONS, MODES, MigrationPolicy

    if not args.downtime_ms > 0:
        raise ConfigError("--downtime-ms", args.downtime_ms, "a number of milliseconds above 0")
    if args.codec != "adaptive":
        check_codec_name(args.codec, "--codec")
    if not 1 <= args.streams <= 16:
        raise ConfigError("--streams", args.streams, "an integer from 1 to 16")
    if args.max_bandwidth_mbps is not None and not args.max_bandwidth_mbps > 0:
        raise ConfigError("--max-bandwidth-mbps", args.max_bandwidth_mbps, "a rate above 0")
    if not args.timeout_s > 0:
        raise ConfigError("--timeout-s", args.timeout_s, "seconds above 0")
    if args.mode not in MODES:
        raise ConfigError("--mode", args.mode, f"one of {', '.join(MODES)}")
    if args.encryption not in ENCRYPTIONS:
        raise ConfigError("--encryption", args.encryption, f"one of {', '.join(ENCRYPTIONS)}")
    return MigrationPolicy(mode=args.mode, downtime_target_ms=float(args.downtime_ms),
                           codec=args.codec, streams=args.streams,
                           max_bandwidth_mbps=args.max_bandwidth_mbps,
                           encryption=args.encryption)


def policy_from_file(path: str) -> Any:
    """A whole MigrationPolicy from a YAML/JSON mapping (what an experiment spec resolved)."""
    from ground.yamlfile import read_yaml
    from migrator.core.policy import parse_policy

    try:
        data = read_yaml(path)
    except ConfigError as exc:
        raise ConfigError(f"--policy-file {exc.path}", exc.value, exc.expected) from None
    return parse_policy(data, path="--policy-file")


def workload_from_args(name: str) -> Any:
    from migrator.memory.workload import PRESETS

    if name not in PRESETS:
        raise ConfigError("--workload", name, f"one of {', '.join(PRESETS)}")
    return PRESETS[name]


def read_key(path: str | None) -> bytes:
    from migrator.wire.auth import MIN_KEY_BYTES

    if path is not None:
        try:
            key = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError("--key-file", path, f"a readable file ({exc.strerror})") from None
        where = "--key-file"
    else:
        text = os.environ.get(KEY_ENV)
        if text is None:
            raise ConfigError("--key-file", None, f"a key file, or {KEY_ENV} set (hex)")
        try:
            key = bytes.fromhex(text)
        except ValueError:
            raise ConfigError(KEY_ENV, "<hidden>", "hexadecimal digits") from None
        where = KEY_ENV
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(where, f"{len(key)} bytes", f"a key of at least {MIN_KEY_BYTES} bytes")
    return key


