"""``wanmig qemu-migrate``: QEMU's live migration between two running QEMUs, driven over QMP.

It says what ``migrate-source --progress`` and ``migrate-dest --gate`` say (``ground.protocol``:
STARTED, PROGRESS per round, PAUSED, VERIFIED, RESUMED; with ``--gate`` it reads GO on stdin
after VERIFIED), so a runner consumes it unchanged, and writes ``result.json``, ``rounds.csv``,
``summary.json`` and ``meta.json`` into ``--out`` as ``migrate-source`` does. The destination
QEMU must have been started with ``-incoming defer -S``. Exit status: 0 completed, 1 not (the
guest runs at the source), 2 bad input (nothing touched).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from ground.config import ConfigError
from ground.errors import Exit
from ground.protocol import Kind, await_kind, say

log = logging.getLogger(__name__)


class _Say:
    """The driver's hooks as protocol lines (``Hooks``); PROGRESS only with ``--progress``."""

    def __init__(self, progress: bool) -> None:
        self.show_progress = progress

    def started(self, t: float) -> None:
        say(Kind.STARTED, t=t)

    def progress(self, row: Any, eta_s: float | None, t: float) -> None:
        if self.show_progress:
            say(Kind.PROGRESS, phase=row.phase, round=row.round, bytes_raw=row.bytes_raw,
                bytes_on_wire=row.bytes_on_wire, duration_s=row.duration_s,
                goodput_Bps=row.goodput_Bps, dirty_rate_Bps=row.dirty_rate_Bps,
                throttle=row.throttle, expected_downtime_s=row.expected_downtime_s,
                eta_s=eta_s, t=t)

    def paused(self, t: float) -> None:
        say(Kind.PAUSED, t=t)

    def verified(self, t: float) -> None:
        say(Kind.VERIFIED, t=t)

    def resumed(self, t: float) -> None:
        say(Kind.RESUMED, t=t)


def wait_go(timeout_s: float) -> None:
    """``--gate``: wait for GO on stdin after VERIFIED (the runner moves the network); without
    it the guest resumes anyway once ``timeout_s`` has passed: never left paused."""
    go, line = await_kind(Kind.GO, timeout_s)
    if not go:
        log.warning("no GO within %.1f s (got %r): resuming anyway", timeout_s, line)


def _uri(value: str, arg: str) -> str:
    host, _, port = value.removeprefix("tcp:").rpartition(":")
    if not value.startswith("tcp:") or not host or not port.isdigit() or \
            not 0 < int(port) < 65536:
        raise ConfigError(arg, value, "tcp:HOST:PORT")
    return value


def _settings(args: argparse.Namespace) -> Any:
    from ground.yamlfile import read_yaml
    from migrator.core.policy import parse_policy
    from migrator.qemu.params import qemu_settings

    try:
        data = read_yaml(args.policy_file)
    except ConfigError as exc:
        raise ConfigError(f"--policy-file {exc.path}", exc.value, exc.expected) from None
    policy = parse_policy(data, path="policy")
    return policy, qemu_settings(policy, link_mbps=args.link_mbps)


def cmd_qemu_migrate(args: argparse.Namespace) -> Exit:
    from pathlib import Path

    from ground.meta import out_dir, run_metadata

    uri, listen = _uri(args.uri, "--uri"), _uri(args.listen_uri, "--listen-uri")
    for arg, path in (("--src-ram", args.src_ram), ("--dst-ram", args.dst_ram)):
        if not Path(path).is_file():
            raise ConfigError(arg, path, "the RAM file of a running QEMU "
                                         "(memory-backend-file,share=on)")
    if args.link_mbps is not None and not args.link_mbps > 0:
        raise ConfigError("--link-mbps", args.link_mbps, "a rate in Mbit/s above 0")
    if not args.rtt_hint_ms >= 0:
        raise ConfigError("--rtt-hint-ms", args.rtt_hint_ms, "milliseconds, at least 0")
    policy, settings = _settings(args)
    out = out_dir(args.out, "qemu-migrate")
    meta = {**run_metadata(), "args": {k: v for k, v in vars(args).items() if k != "func"}}
    from migrator.qemu.driver import QemuMigration
    from migrator.qemu.qmp import Monitor, QmpError
    from migrator.qemu.report import write

    try:
        src = Monitor(args.src_qmp, args.qmp_timeout_s, name="source")
        dst = Monitor(args.dst_qmp, args.qmp_timeout_s, name="destination")
    except QmpError as exc:
        print(f"wanmig: {exc}", file=sys.stderr)
        return Exit.FAIL
    try:
        migration = QemuMigration(src, dst, settings, uri, listen_uri=listen,
                                  src_ram=args.src_ram, dst_ram=args.dst_ram,
                                  go=(lambda: wait_go(args.gate_timeout_s)) if args.gate
                                  else None, hooks=_Say(args.progress))
        result, qemu = migration.run()
    except KeyboardInterrupt:
        print("wanmig: interrupted", file=sys.stderr)
        return Exit.INTERRUPTED
    finally:
        src.close()
        dst.close()
    s = write(out, result, qemu, rtt_s=args.rtt_hint_ms / 1e3, max_rounds=policy.max_rounds,
              meta=meta)
    print(json.dumps(s, indent=2 if args.json else None))
    return Exit.OK if result.outcome == "completed" else Exit.FAIL


def add_subcommand(subparsers: Any) -> None:
    """Add ``qemu-migrate`` to wanmig's subparsers."""
    s = subparsers.add_parser("qemu-migrate",
                              help="migrate a QEMU guest with QEMU's own live migration")
    s.add_argument("--src-qmp", required=True, metavar="SOCK", help="the source QEMU's QMP")
    s.add_argument("--dst-qmp", required=True, metavar="SOCK",
                   help="the destination QEMU's QMP (started with -incoming defer -S)")
    s.add_argument("--uri", required=True, metavar="tcp:H:P",
                   help="where the source sends (the destination as the source reaches it)")
    s.add_argument("--listen-uri", required=True, metavar="tcp:H:P",
                   help="where the destination listens (migrate-incoming)")
    s.add_argument("--src-ram", required=True, metavar="FILE", help="the source's RAM file")
    s.add_argument("--dst-ram", required=True, metavar="FILE",
                   help="the destination's RAM file")
    s.add_argument("--policy-file", required=True,
                   help="the migration policy as a YAML mapping (see migrator.qemu.params)")
    s.add_argument("--link-mbps", type=float, help="the link's rate, Mbit/s (for the record)")
    s.add_argument("--rtt-hint-ms", type=float, default=0.0, help="the link's RTT, for the "
                   "model's prediction in summary.json (0)")
    s.add_argument("--out", help="result folder (default results/<time>-qemu-migrate)")
    s.add_argument("--gate", action="store_true",
                   help="say VERIFIED and wait for GO on stdin before resuming the guest")
    s.add_argument("--gate-timeout-s", type=float, default=10.0)
    s.add_argument("--progress", action="store_true", help="say PROGRESS per round")
    s.add_argument("--qmp-timeout-s", type=float, default=10.0,
                   help="for QMP to answer, and for the sockets to appear (10)")
    s.add_argument("--json", action="store_true", help="print the summary indented")
    s.set_defaults(func=cmd_qemu_migrate)
