"""``wanmig migrate``, ``migrate-source`` and ``migrate-dest``: argument checking and output.

Why here and not in wanmig/cli.py: the migrator owns its options; the top-level CLI only calls
``add_subcommands``.  Every argument is checked before anything starts (no guest, no socket):
a bad one prints ``wanmig: bad input: --memory: got '3000B', expected ...`` and exits 2.
Exit status otherwise: 0 the migration completed, 1 it did not (the guest runs at the source),
130 interrupted (everything torn down).

The shared key of ``migrate-source``/``migrate-dest``: ``--key-file`` (at least 16 bytes, read
as is) or the environment variable ``WANMIG_MIGRATION_KEY`` (hex); the loopback command makes
a fresh random key itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ground.config import ConfigError

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAIL, EXIT_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
_SIZE_RE = re.compile(r"\s*([0-9]+)\s*(KiB|MiB|GiB)\s*")
_UNITS = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
KEY_ENV = "WANMIG_MIGRATION_KEY"


# --- pure checks ---------------------------------------------------------------------------------


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


def mem_available(meminfo: str = "/proc/meminfo") -> int | None:
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_fits(size: int, copies: int, available: int | None, arg: str = "--memory") -> None:
    if available is not None and size * copies > available:
        what = "" if copies == 1 else f" ({copies} copies live on this machine)"
        raise ConfigError(arg, f"{size // (1 << 20)}MiB",
                          f"at most {available // copies // (1 << 20)} MiB: MemAvailable is "
                          f"{available // (1 << 20)} MiB{what}")


def parse_hostport(text: str, arg: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(arg, text, "HOST:PORT with a port from 0 to 65535")
    return host, int(port)


def policy_from_args(args: argparse.Namespace) -> Any:
    """The MigrationPolicy, every error naming the command-line argument."""
    from migrator.codecs.names import check_codec_name
    from migrator.core.policy import MODES, MigrationPolicy

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
    return MigrationPolicy(mode=args.mode, downtime_target_ms=float(args.downtime_ms),
                           codec=args.codec, streams=args.streams,
                           max_bandwidth_mbps=args.max_bandwidth_mbps)


def policy_from_file(path: str) -> Any:
    """A whole MigrationPolicy from a YAML/JSON mapping (what an experiment spec resolved)."""
    import yaml

    from migrator.core.policy import parse_policy

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError("--policy-file", path, f"a readable YAML mapping ({exc})") from None
    return parse_policy(data, path="--policy-file")


class _AnnouncedPause:
    """The guest, saying ``PAUSED <t>`` (wall clock) when the engine pauses it: a runner's
    downtime clock starts there and stops when the destination resumes the guest."""

    def __init__(self, vm: Any) -> None:
        self._vm = vm

    def __getattr__(self, name: str) -> Any:
        return getattr(self._vm, name)

    def pause(self) -> None:
        t = time.time()
        self._vm.pause()
        print(f"PAUSED {t:.6f}", flush=True)


def _print_progress(record: Any, eta_s: float | None) -> None:
    """One ``PROGRESS {json}`` line per round, for a runner that shows progress."""
    print("PROGRESS " + json.dumps({
        "phase": record.phase, "round": record.round, "bytes_raw": record.bytes_raw,
        "bytes_on_wire": record.bytes_on_wire, "duration_s": record.duration_s,
        "goodput_Bps": record.goodput_Bps, "dirty_rate_Bps": record.dirty_rate_Bps,
        "throttle": record.throttle, "expected_downtime_s": record.expected_downtime_s,
        "eta_s": eta_s, "t": time.time()}), flush=True)


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


# --- subcommands ---------------------------------------------------------------------------------


def _bad(exc: ConfigError) -> int:
    print(f"wanmig: bad input: {exc}", file=sys.stderr)
    return EXIT_INPUT


def _out_dir(args: argparse.Namespace, name: str) -> Path:
    from ground.meta import new_run_dir

    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        return out
    return new_run_dir(name)


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


def cmd_migrate(args: argparse.Namespace) -> int:
    from ground.meta import run_metadata

    try:
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
        check_fits(size, 2, mem_available())
    except ConfigError as exc:
        return _bad(exc)
    from migrator.endpoints import migrate_loopback, migrate_loopback_real, real_vm_available
    from migrator.memory.pages import PAGE_SIZE

    out = _out_dir(args, "migrate")
    meta = {**run_metadata(), "args": {k: v for k, v in vars(args).items() if k != "func"}}
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    real = real_vm_available() and not args.in_process
    fn = migrate_loopback_real if real else migrate_loopback
    try:
        run = fn(size // PAGE_SIZE, workload, policy, seed=args.seed,
                 rtt_sim_s=args.rtt_sim / 1e3, bw_sim_mbps=args.bw_sim,
                 timeout_s=args.timeout_s)
    except KeyboardInterrupt:
        print("wanmig: interrupted; everything was torn down", file=sys.stderr)
        return EXIT_INTERRUPTED
    run.summary.setdefault("guest", "shared-memory process" if real else "in-process")
    _write(out, run.summary, run.result.rounds, meta)
    _report(args, run.summary, out)
    return EXIT_OK if run.result.outcome == "completed" else EXIT_FAIL


def cmd_migrate_source(args: argparse.Namespace) -> int:
    from ground.meta import run_metadata

    try:
        dest = parse_hostport(args.connect, "--connect")
        policy = policy_from_file(args.policy_file) if args.policy_file \
            else policy_from_args(args)
        key = read_key(args.key_file)
        if not args.rtt_hint_ms >= 0:
            raise ConfigError("--rtt-hint-ms", args.rtt_hint_ms, "milliseconds, at least 0")
        if args.bw_hint_mbps is not None and not args.bw_hint_mbps > 0:
            raise ConfigError("--bw-hint-mbps", args.bw_hint_mbps, "a rate above 0")
        from migrator.guest.image import image_name
        image_name(args.vm, args.tag)
    except ConfigError as exc:
        return _bad(exc)
    from migrator.core.report import summary
    from migrator.endpoints import run_source
    from migrator.guest.vm import SharedVM

    out = _out_dir(args, f"migrate-source-{args.vm}")
    meta = {**run_metadata(), "args": {k: v for k, v in vars(args).items() if k != "func"}}
    vm = SharedVM(args.vm, args.tag)
    stats: dict = {}
    progress = _print_progress if args.progress else None
    started = time.time()
    print(f"STARTED {started:.6f}", flush=True)
    try:
        result = run_source(_AnnouncedPause(vm) if args.progress else vm, dest, policy, key,
                            rtt_hint_s=args.rtt_hint_ms / 1e3, timeout_s=args.timeout_s,
                            bw_hint_Bps=args.bw_hint_mbps * 1e6 / 8 if args.bw_hint_mbps
                            else None,
                            stats=stats, progress=progress)
    except KeyboardInterrupt:
        print("wanmig: interrupted; the guest runs at the source", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        vm.close()
    s = summary(result, rtt_s=stats.get("rtt_s", 0.0), max_rounds=policy.max_rounds,
                extra={"streams_used": stats.get("streams_used"), "role": "source",
                       "congestion_control": stats.get("congestion_control"),
                       "flight_window_bytes": stats.get("flight_window_bytes"),
                       "flight_window_max_bytes": stats.get("flight_window_max_bytes"),
                       "t_start_wall": started})
    _write(out, s, result.rounds, meta)
    (out / "result.json").write_text(json.dumps(dataclasses.asdict(result), indent=1) + "\n")
    _report(args, s, out)
    return EXIT_OK if result.outcome == "completed" else EXIT_FAIL


def _wait_gate(timeout_s: float) -> None:
    """``--gate``: say the image is verified and wait for ``GO`` on stdin (the runner re-plugs
    the VM's network meanwhile). The destination owns the guest once it has ACKed, so without
    an answer it resumes anyway: a guest is never left paused."""
    print(f"VERIFIED {time.time():.6f}", flush=True)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(sys.stdin.readline()), daemon=True)
    reader.start()
    reader.join(timeout_s)
    if not got or got[0].strip() != "GO":
        logging.getLogger(__name__).warning("no GO within %.1f s (got %r): resuming anyway",
                                            timeout_s, got[0] if got else None)


def cmd_migrate_dest(args: argparse.Namespace) -> int:
    """Receive into ``wanmig-<vm>-<tag>``; on a verified ACK the guest (which maps the source
    image on this machine's /dev/shm, as the testbed's hypervisors share one kernel) is
    switched onto it at ``--location``."""
    try:
        listen_at = parse_hostport(args.listen, "--listen")
        key = read_key(args.key_file)
        from migrator.guest.control import check_location
        from migrator.guest.image import image_name
        image_name(args.vm, args.tag)
        image_name(args.vm, args.source_tag)
        check_location(args.location)
        if not args.timeout_s > 0:
            raise ConfigError("--timeout-s", args.timeout_s, "seconds above 0")
    except ConfigError as exc:
        return _bad(exc)
    from migrator.endpoints import run_dest
    from migrator.guest.vm import SharedVM, create_dest_memory

    holder: dict = {}

    def factory(n: int) -> Any:
        holder["mem"] = create_dest_memory(args.vm, args.tag, n)
        return holder["mem"].pages

    def switch() -> None:
        if args.gate:
            _wait_gate(args.gate_timeout_s)
        vm = SharedVM(args.vm, args.source_tag)
        try:
            vm.switch_to(args.tag, args.location)
            holder["switched"] = True
            if args.gate:
                print(f"RESUMED {time.time():.6f}", flush=True)
        finally:
            vm.close()

    ready = threading.Event()
    try:
        result = run_dest(listen_at, key, factory, switch, timeout_s=args.timeout_s,
                          on_listening=lambda a: (print(f"LISTENING {a[0]}:{a[1]}",
                                                        flush=True), ready.set()))
    except KeyboardInterrupt:
        print("wanmig: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
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
              "resume_ms": result.resume_s * 1e3}
    print(json.dumps(record, indent=None if not args.json else 2))
    return EXIT_OK if result.ok and result.error is None else EXIT_FAIL


# --- parser --------------------------------------------------------------------------------------


def _policy_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("--downtime-ms", type=float, default=300.0, help="downtime target (300)")
    s.add_argument("--codec", default="adaptive",
                   help="adaptive, none, lz4, zstd-1 .. zstd-19, xbzrle (adaptive)")
    s.add_argument("--streams", type=int, default=4, help="data streams at the start (4)")
    s.add_argument("--max-bandwidth-mbps", type=float, help="rate cap, Mbit/s (none)")
    s.add_argument("--mode", default="live", help="live or cold (live)")
    s.add_argument("--timeout-s", type=float, default=30.0,
                   help="longest silence accepted from the peer (30)")


def add_subcommands(subparsers: Any) -> None:
    """Add ``migrate``, ``migrate-source`` and ``migrate-dest`` to wanmig's subparsers."""
    s = subparsers.add_parser("migrate", help="migrate a VM (loopback: both ends here)")
    s.add_argument("--loopback", action="store_true", help="both ends on this machine")
    s.add_argument("--memory", default="256MiB", help="guest memory, e.g. 256MiB (256MiB)")
    s.add_argument("--workload", default="idle", help="idle, web, database, memory-intensive")
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
    s.add_argument("--key-file", help=f"shared key file (else ${KEY_ENV}, hex)")
    s.add_argument("--rtt-hint-ms", type=float, default=0.0, help="expected RTT, for buffers")
    s.add_argument("--bw-hint-mbps", type=float,
                   help="the link's goodput as measured, for the flight window (1.5 BDPs); "
                        "without it the window grows from a guess")
    s.add_argument("--policy-file", help="the whole policy as a YAML mapping (overrides the "
                                         "policy options)")
    s.add_argument("--progress", action="store_true", help="a PROGRESS JSON line per round")
    s.add_argument("--out", help="result folder")
    s.add_argument("--json", action="store_true")
    _policy_args(s)
    s.set_defaults(func=cmd_migrate_source)

    s = subparsers.add_parser("migrate-dest", help="receive a migrating guest")
    s.add_argument("--listen", required=True, metavar="HOST:PORT")
    s.add_argument("--vm", required=True, help="the guest's name")
    s.add_argument("--tag", default="dst", help="memory image tag to receive into (dst)")
    s.add_argument("--source-tag", default="src", help="the guest's current image tag (src)")
    s.add_argument("--location", default="dst", help="where the guest runs after switchover")
    s.add_argument("--key-file", help=f"shared key file (else ${KEY_ENV}, hex)")
    s.add_argument("--timeout-s", type=float, default=60.0)
    s.add_argument("--gate", action="store_true",
                   help="print VERIFIED and wait for GO on stdin before resuming the guest")
    s.add_argument("--gate-timeout-s", type=float, default=10.0)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_migrate_dest)
