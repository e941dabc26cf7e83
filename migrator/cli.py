"""``wanmig migrate``, ``migrate-source`` and ``migrate-dest``: the migrator's subcommands.

The migrator owns its options; the ``wanmig`` command only calls ``add_subcommands``. Every
argument is checked before anything starts (``migrator.args``): a bad one raises ConfigError,
which the command prints as ``wanmig: bad input: --memory: got '3000B', expected ...`` (exit 2).
Exit status otherwise: 0 the migration completed, 1 it did not (the guest runs at the source),
130 interrupted (everything torn down).

What ``migrate-source --progress`` and ``migrate-dest --gate`` say to a runner (STARTED,
PROGRESS, PAUSED, LISTENING, VERIFIED, RESUMED; GO read back) is ``ground.protocol``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ground.config import ConfigError
from ground.errors import Exit
from ground.meta import out_dir, run_metadata
from ground.protocol import Kind, await_kind, say
from migrator.args import (
    KEY_ENV,
    check_loopback_fits,
    parse_hostport,
    parse_size,
    policy_from_args,
    policy_from_file,
    read_key,
    workload_from_args,
)

log = logging.getLogger(__name__)


class _AnnouncedPause:
    """The guest, saying PAUSED (wall clock) when the engine pauses it: a runner's downtime
    clock starts there and stops when the destination resumes the guest."""

    def __init__(self, vm: Any) -> None:
        self._vm = vm

    def __getattr__(self, name: str) -> Any:
        return getattr(self._vm, name)

    def pause(self) -> None:
        t = time.time()
        self._vm.pause()
        say(Kind.PAUSED, t=t)


def _print_progress(record: Any, eta_s: float | None) -> None:
    """One PROGRESS message per round, for a runner that shows progress."""
    say(Kind.PROGRESS, phase=record.phase, round=record.round, bytes_raw=record.bytes_raw,
        bytes_on_wire=record.bytes_on_wire, duration_s=record.duration_s,
        goodput_Bps=record.goodput_Bps, dirty_rate_Bps=record.dirty_rate_Bps,
        throttle=record.throttle, expected_downtime_s=record.expected_downtime_s, eta_s=eta_s,
        t=time.time())


# --- subcommands ---------------------------------------------------------------------------------


def _write(out: Path, summary: dict, rounds: Any, meta: dict) -> None:
    from migrator.core.report import rounds_csv

    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "rounds.csv").write_text(rounds_csv(rounds))


def _report(args: argparse.Namespace, summary: dict, out: Path) -> None:
    from ground.table import render
    from migrator.core.report import table_rows

    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(render(("migration", "result"), table_rows(summary)))
        print(f"written: {out}")


def cmd_migrate(args: argparse.Namespace) -> Exit:
    if not args.loopback:
        raise ConfigError("--loopback", False, "--loopback (the only mode so far; across "
                                               "sites use migrate-source/migrate-dest)")
    size = parse_size(args.memory)
    policy = policy_from_args(args)
    workload = workload_from_args(args.workload)
    if not args.rtt_sim >= 0:
        raise ConfigError("--rtt-sim", args.rtt_sim, "milliseconds, at least 0")
    if args.bw_sim is not None and not args.bw_sim > 0:
        raise ConfigError("--bw-sim", args.bw_sim, "a rate in Mbit/s above 0")
    if args.seed < 0:
        raise ConfigError("--seed", args.seed, "an integer of at least 0")
    from migrator.loopback import migrate_loopback, migrate_loopback_real, real_vm_available
    from migrator.memory.pages import PAGE_SIZE

    real = real_vm_available() and not args.in_process
    check_loopback_fits(size, args.memory, policy, real=real)
    out = out_dir(args.out, "migrate")
    meta = {**run_metadata(), "args": {k: v for k, v in vars(args).items() if k != "func"}}
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    fn = migrate_loopback_real if real else migrate_loopback
    try:
        run = fn(size // PAGE_SIZE, workload, policy, seed=args.seed,
                 rtt_sim_s=args.rtt_sim / 1e3, bw_sim_mbps=args.bw_sim,
                 timeout_s=args.timeout_s)
    except KeyboardInterrupt:
        print("wanmig: interrupted; everything was torn down", file=sys.stderr)
        return Exit.INTERRUPTED
    run.summary.setdefault("guest", "shared-memory process" if real else "in-process")
    _write(out, run.summary, run.result.rounds, meta)
    _report(args, run.summary, out)
    return Exit.OK if run.result.outcome == "completed" else Exit.FAIL


def cmd_migrate_source(args: argparse.Namespace) -> Exit:
    from migrator.guest.image import image_name

    dest = parse_hostport(args.connect, "--connect")
    policy = policy_from_file(args.policy_file) if args.policy_file else policy_from_args(args)
    key = read_key(args.key_file)
    if not args.rtt_hint_ms >= 0:
        raise ConfigError("--rtt-hint-ms", args.rtt_hint_ms, "milliseconds, at least 0")
    if args.bw_hint_mbps is not None and not args.bw_hint_mbps > 0:
        raise ConfigError("--bw-hint-mbps", args.bw_hint_mbps, "a rate above 0")
    if not 0 <= args.connect_wait_s <= 600:
        raise ConfigError("--connect-wait-s", args.connect_wait_s, "seconds from 0 to 600")
    image_name(args.vm, args.tag)
    from migrator.guest.control import MAX_LEASE_S, MIN_LEASE_S

    if not MIN_LEASE_S <= args.lease_s <= MAX_LEASE_S:
        raise ConfigError("--lease-s", args.lease_s,
                          f"seconds from {MIN_LEASE_S:g} to {MAX_LEASE_S:g}")
    from migrator.core.report import summary
    from migrator.endpoints import run_source
    from migrator.guest.diskvm import source_vm

    out = out_dir(args.out, f"migrate-source-{args.vm}")
    meta = {**run_metadata(), "args": {k: v for k, v in vars(args).items() if k != "func"}}
    vm = source_vm(args.vm, args.tag, args.disk, policy.storage, lease_s=args.lease_s,
                   control_tag=args.control_tag)
    stats: dict = {}
    progress = _print_progress if args.progress else None
    started = time.time()
    say(Kind.STARTED, t=started)
    try:
        result = run_source(_AnnouncedPause(vm) if args.progress else vm, dest, policy, key,
                            rtt_hint_s=args.rtt_hint_ms / 1e3, timeout_s=args.timeout_s,
                            bw_hint_Bps=args.bw_hint_mbps * 1e6 / 8 if args.bw_hint_mbps
                            else None,
                            stats=stats, progress=progress, connect_wait_s=args.connect_wait_s)
    except KeyboardInterrupt:
        print("wanmig: interrupted; the guest runs at the source", file=sys.stderr)
        return Exit.INTERRUPTED
    finally:
        vm.close()
    s = summary(result, rtt_s=stats.get("rtt_s", 0.0), max_rounds=policy.max_rounds,
                extra={"streams_used": stats.get("streams_used"), "role": "source",
                       "congestion_control": stats.get("congestion_control"),
                       "encryption": stats.get("encryption"),
                       "flight_window_bytes": stats.get("flight_window_bytes"),
                       "flight_window_max_bytes": stats.get("flight_window_max_bytes"),
                       "t_start_wall": started})
    _write(out, s, result.rounds, meta)
    (out / "result.json").write_text(json.dumps(dataclasses.asdict(result), indent=1) + "\n")
    _report(args, s, out)
    return Exit.OK if result.outcome == "completed" else Exit.FAIL


def _wait_gate(timeout_s: float) -> None:
    """``--gate``: say the image is verified and wait for GO on stdin (the runner re-plugs
    the VM's network meanwhile). The destination owns the guest once it has ACKed, so without
    an answer it resumes anyway: a guest is never left paused."""
    say(Kind.VERIFIED, t=time.time())
    go, line = await_kind(Kind.GO, timeout_s)
    if not go:
        log.warning("no GO within %.1f s (got %r): resuming anyway", timeout_s, line)


def cmd_migrate_dest(args: argparse.Namespace) -> Exit:
    """Receive into ``wanmig-<vm>-<tag>``; on a verified ACK the guest (which maps the source
    image on this machine's /dev/shm, as the testbed's hypervisors share one kernel) is
    switched onto it at ``--location``."""
    from migrator.guest.control import check_location
    from migrator.guest.image import image_name

    listen_at = parse_hostport(args.listen, "--listen")
    key = read_key(args.key_file)
    image_name(args.vm, args.tag)
    image_name(args.vm, args.source_tag)
    check_location(args.location)
    if not args.timeout_s > 0:
        raise ConfigError("--timeout-s", args.timeout_s, "seconds above 0")
    from migrator.endpoints import run_dest
    from migrator.guest.diskvm import create_dest_image, dest_disk
    from migrator.guest.vm import SharedVM

    holder: dict = {}
    disk = dest_disk(args.disk, args.disk_params)

    def factory(n: int) -> Any:
        holder["mem"] = create_dest_image(args.vm, args.tag, n, disk)
        return holder["mem"].pages

    def switch() -> None:
        if args.gate:
            _wait_gate(args.gate_timeout_s)
        vm = SharedVM(args.vm, args.source_tag, control_tag=args.control_tag)
        try:
            vm.switch_to(args.tag, args.location)
            holder["switched"] = True
            if args.gate:
                say(Kind.RESUMED, t=time.time())
        finally:
            vm.close()

    ready = threading.Event()
    try:
        result = run_dest(listen_at, key, factory, switch, timeout_s=args.timeout_s,
                          on_listening=lambda a: (say(Kind.LISTENING, host=a[0], port=a[1]),
                                                  ready.set()))
    except KeyboardInterrupt:
        print("wanmig: interrupted", file=sys.stderr)
        return Exit.INTERRUPTED
    finally:
        mem = holder.get("mem")
        if mem is not None:
            mem.close()
            if not holder.get("switched"):
                mem.unlink()
    record = {"ok": result.ok, "digest_ok": result.digest_ok, "error": result.error,
              "npages": result.npages, "pages_received": result.pages_received,
              "bytes_received": result.bytes_received, "data_streams": result.data_streams,
              "wait_ms": result.wait_s * 1e3, "hash_ms": result.hash_s * 1e3,
              "resume_ms": result.resume_s * 1e3, "encryption": result.encryption,
              "refused": result.refused, "refusals": result.refusals}
    print(json.dumps(record, indent=None if not args.json else 2))
    return Exit.OK if result.ok and result.error is None else Exit.FAIL


# --- parser --------------------------------------------------------------------------------------


def _policy_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("--downtime-ms", type=float, default=300.0, help="downtime target (300)")
    s.add_argument("--codec", default="adaptive",
                   help="adaptive, none, lz4, zstd-1 .. zstd-19, xbzrle (adaptive)")
    s.add_argument("--streams", type=int, default=4, help="data streams at the start (4)")
    s.add_argument("--max-bandwidth-mbps", type=float, help="rate cap, Mbit/s (none)")
    s.add_argument("--mode", default="live", help="live or cold (live)")
    s.add_argument("--encryption", default="aes-256-gcm",
                   help="aes-256-gcm, chacha20-poly1305 or none (aes-256-gcm)")
    s.add_argument("--timeout-s", type=float, default=30.0,
                   help="longest silence accepted from the peer (30)")


def add_subcommands(subparsers: Any) -> None:
    """Add ``migrate``, ``migrate-source`` and ``migrate-dest`` to wanmig's subparsers."""
    s = subparsers.add_parser("migrate", help="migrate a VM (loopback: both ends here)")
    s.add_argument("--loopback", action="store_true", help="both ends on this machine")
    s.add_argument("--memory", default="256MiB", help="guest memory, e.g. 256MiB (256MiB)")
    s.add_argument("--workload", default="idle",
                   help="a preset: idle, web, database, memory-intensive, crypto")
    s.add_argument("--rtt-sim", type=float, default=0.0, metavar="MS",
                   help="round-trip time added by a relay between the ends (0)")
    s.add_argument("--bw-sim", type=float, metavar="MBPS", help="bottleneck rate of that relay")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--in-process", action="store_true",
                   help="use the in-process guest instead of the shared-memory guest process")
    s.add_argument("--out", help="result folder (default results/<time>-migrate)")
    s.add_argument("--json", action="store_true", help="print the summary as JSON")
    _policy_args(s)
    s.set_defaults(func=cmd_migrate)

    s = subparsers.add_parser("migrate-source", help="migrate a running guest to a destination")
    s.add_argument("--connect", required=True, metavar="HOST:PORT")
    s.add_argument("--vm", required=True, help="the guest's name")
    s.add_argument("--tag", default="src", help="its memory image tag (src)")
    s.add_argument("--control-tag", help="the tag of the image the guest started on, whose "
                                         "control block it obeys (default: --tag)")
    s.add_argument("--key-file", help=f"shared key file (else ${KEY_ENV}, hex)")
    s.add_argument("--rtt-hint-ms", type=float, default=0.0, help="expected RTT, for buffers")
    s.add_argument("--connect-wait-s", type=float, default=0.0,
                   help="a destination not listening yet is tried again this long (0)")
    s.add_argument("--bw-hint-mbps", type=float,
                   help="the link's goodput as measured, for the flight window (1.5 BDPs); "
                        "without it the window grows from a guess")
    s.add_argument("--policy-file", help="the whole policy as a YAML mapping (overrides the "
                                         "policy options)")
    s.add_argument("--progress", action="store_true",
                   help="say STARTED, PROGRESS per round and PAUSED (ground.protocol)")
    from migrator.guest.control import LEASE_S

    s.add_argument("--disk", help="the VM's disk image in this host's datastore (a VM with a "
                                  "disk migrates it with its memory, policy.storage)")
    s.add_argument("--lease-s", type=float, default=LEASE_S,
                   help="the guest resumes at the source this long after this process stops "
                        "renewing its pause (killed) unless the destination ACKed "
                        f"({LEASE_S:g})")
    s.add_argument("--out", help="result folder")
    s.add_argument("--json", action="store_true")
    _policy_args(s)
    s.set_defaults(func=cmd_migrate_source)

    s = subparsers.add_parser("migrate-dest", help="receive a migrating guest")
    s.add_argument("--listen", required=True, metavar="HOST:PORT")
    s.add_argument("--vm", required=True, help="the guest's name")
    s.add_argument("--tag", default="dst", help="memory image tag to receive into (dst)")
    s.add_argument("--source-tag", default="src", help="the guest's current image tag (src)")
    s.add_argument("--control-tag", help="the tag of the image the guest started on, whose "
                                         "control block it obeys (default: --source-tag)")
    s.add_argument("--location", default="dst", help="where the guest runs after switchover")
    s.add_argument("--key-file", help=f"shared key file (else ${KEY_ENV}, hex)")
    s.add_argument("--timeout-s", type=float, default=60.0)
    s.add_argument("--disk", help="the disk image to receive into (this host's datastore)")
    s.add_argument("--disk-params", help="the disk's vm.disk mapping, JSON (with --disk)")
    s.add_argument("--gate", action="store_true",
                   help="say VERIFIED and wait for GO on stdin before resuming the guest")
    s.add_argument("--gate-timeout-s", type=float, default=10.0)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_migrate_dest)

    from migrator.qemu.cli import add_subcommand as add_qemu_migrate

    add_qemu_migrate(subparsers)
