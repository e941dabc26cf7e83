"""The two ends of a migration as functions: ``run_source`` and ``run_dest``.

Why functions over the transport and the engine: ``wanmig migrate-source``/``migrate-dest`` in
the two hypervisors of a two-site network, the loopback command (``migrator.loopback``) and the
tests all run exactly this code, so what is measured on loopback is what runs across the
emulated WAN.

Guarantees: ``run_source`` returns a ``MigrationResult`` for every failure before the ACK (the
engine resumes the guest at the source; a failure to even connect leaves it untouched) and
closes every socket and thread it opened, on Ctrl-C too (the guest is resumed and unthrottled
before the interrupt propagates); once the ACK is in it hands the guest over (a leased pause,
``migrator.guest.lease``: the destination is marked as the owner before the lease may lapse).
``run_dest`` returns a ``DestResult``; the guest is resumed there (``on_switchover``) only after
the digests matched and the ACK was sent.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from migrator.codecs.speed import default_sample, for_chooser, measure_codec_speeds
from migrator.core.adaptive import CodecChooser
from migrator.core.engine import PreCopyEngine, ProgressHook
from migrator.core.interfaces import VM
from migrator.core.policy import MigrationPolicy, stream_ceiling
from migrator.core.records import MigrationResult
from migrator.memory.pages import PAGE_SIZE
from migrator.transport.channel import TransportError
from migrator.transport.mirror import MirrorStream
from migrator.transport.options import TransportOptions
from migrator.transport.receiver import DestResult, MemoryFactory, Receiver
from migrator.transport.sender import TcpSender
from migrator.transport.sockets import listen

log = logging.getLogger(__name__)

ADAPTIVE_CODECS = ("none", "lz4", "zstd-1", "zstd-3")
DEFAULT_BW_Bps = 250e6 / 8        # noqa: N816 - the classic WAN of the testbed


class MonotonicClock:
    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def build_chooser(vm: VM, streams: int, seconds_each: float = 0.1,
                  sample_pages: int = 2048) -> CodecChooser:
    """Codec speeds measured on (a spread of) the guest's own non-zero pages."""
    nonzero = np.asarray(vm.nonzero_pages(), dtype=np.int64)
    if len(nonzero):
        pick = nonzero[np.linspace(0, len(nonzero) - 1, min(sample_pages, len(nonzero)))
                       .astype(np.int64)]
        sample = vm.page_bytes(pick)
    else:
        sample = default_sample(8)
    measured = measure_codec_speeds(sample, ADAPTIVE_CODECS, seconds_each)
    return CodecChooser(for_chooser(measured), cores=max(1, min(streams, os.cpu_count() or 1)))


def not_started(vm: VM, policy: MigrationPolicy, error: str, elapsed_s: float
                ) -> MigrationResult:
    """The result of a migration that failed before the first page (guest untouched)."""
    return MigrationResult(outcome="aborted", stop_reason="error", rounds=(),
                           total_time_s=elapsed_s, downtime_s=0.0, final_copy_s=0.0,
                           verify_s=0.0, resume_s=0.0, bytes_on_wire=0, bytes_raw=0,
                           vm_memory_bytes=vm.npages * PAGE_SIZE, compression_ratio=1.0,
                           mean_goodput_Bps=0.0, integrity_ok=None, throttle_max=0.0,
                           downtime_target_s=policy.downtime_target_s, error=error)


def run_source(vm: VM, dest: tuple[str, int], policy: MigrationPolicy, key: bytes, *,
               rtt_hint_s: float, progress: ProgressHook | None = None,
               bw_hint_Bps: float | None = None, timeout_s: float = 30.0,  # noqa: N803
               max_streams: int | None = None, stats: dict | None = None,
               connect_wait_s: float = 0.0) -> MigrationResult:
    """Migrate ``vm`` to the destination listening at ``dest``; see the module docstring.

    ``stats``, when given, receives the transport's record (streams used, socket buffers
    granted, handshake RTT, final RTT estimate). ``connect_wait_s``: a destination not yet
    listening is tried again this long (it may be started at the same time).
    """
    start = time.monotonic()
    bw = bw_hint_Bps or (policy.max_bandwidth_mbps * 1e6 / 8 if policy.max_bandwidth_mbps
                         else DEFAULT_BW_Bps)
    opts = TransportOptions(streams=policy.streams,
                            max_streams=stream_ceiling(policy.streams, max_streams),
                            max_bandwidth_mbps=policy.max_bandwidth_mbps, bw_hint_Bps=bw,
                            rtt_hint_s=rtt_hint_s, timeout_s=timeout_s,
                            grow_window=bw_hint_Bps is None and not policy.max_bandwidth_mbps,
                            xbzrle_cache_mib=policy.xbzrle_cache_mib,
                            encryption=policy.encryption, connect_wait_s=connect_wait_s)
    sender = TcpSender(dest, key, vm, opts)
    mirror = _attach_mirror(vm, sender, opts)
    # The codecs are measured while the connections are set up (round trips, mostly waiting).
    measuring = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wanmig-codecs")
    chooser_f = measuring.submit(build_chooser, vm, policy.streams) \
        if policy.codec == "adaptive" else None
    try:
        try:
            sender.connect()
            if mirror is not None and getattr(vm, "disk_mirrored", False) \
                    and policy.mode == "live":
                mirror.open()       # before the rounds fill the link's queue
        except (OSError, ValueError, TransportError) as exc:   # AuthError, FrameError: ValueError
            log.error("cannot start the migration: %s", exc)
            return not_started(vm, policy, str(exc), time.monotonic() - start)
        finally:
            chooser = chooser_f.result() if chooser_f is not None else None
            measuring.shutdown()
        engine = PreCopyEngine(MonotonicClock(), vm, sender, policy, chooser=chooser,
                               progress=progress, initial_goodput_Bps=bw)
        setup_s = time.monotonic() - start
        try:
            result = dataclasses.replace(engine.run(), setup_s=setup_s)
        except BaseException:
            _resume_at_source(vm)
            sender.abort("source interrupted")
            raise
        if result.outcome != "completed":
            sender.abort(result.error or result.outcome)
        return _hand_over(vm, result)
    finally:
        if stats is not None:
            stats.update(streams_used=list(sender.stats.streams_used),
                         buffers=list(sender.stats.buffers),
                         handshake_rtt_s=sender.stats.handshake_rtt_s,
                         encryption=sender.stats.encryption,
                         congestion_control=sender.stats.congestion_control,
                         flight_window_bytes=sender.stats.flight_window_bytes,
                         flight_window_max_bytes=sender.stats.flight_window_max_bytes,
                         rtt_s=sender.base_rtt_s())
        if mirror is not None:
            mirror.close()
        sender.close()


def _attach_mirror(vm: VM, sender: TcpSender, opts: TransportOptions) -> MirrorStream | None:
    """A VM that mirrors its disk writes (write-blocking, ``migrator.core.disk``) is given the
    session's mirror stream, opened at its first write."""
    attach = getattr(vm, "attach_mirror", None)
    if not callable(attach):
        return None
    mirror = MirrorStream(sender.dialer.mirror, opts.max_frame)
    attach(mirror.copy)
    return mirror


def _hand_over(vm: VM, result: MigrationResult) -> MigrationResult:
    """The ACK is in: the destination owns the guest. A guest held under a lease
    (``migrator.guest.lease``) is marked so before our lease lapses; if it lapsed first, the
    guest runs at the source again and the migration did not complete."""
    mark = getattr(vm, "hand_over", None)
    if result.outcome != "completed" or not callable(mark) or mark():
        return result
    log.error("the lease on the paused guest ran out before the ACK was in: it runs at the source")
    return dataclasses.replace(result, outcome="aborted",
                               error="the lease on the paused guest ran out before the ACK: "
                                     "the guest resumed at the source")


def _resume_at_source(vm: VM) -> None:
    try:
        vm.set_throttle(0.0)
        lift = getattr(vm, "set_dirty_limit", None)      # optional in the VM protocol
        if lift is not None:
            lift(None)
        vm.resume()
    except Exception as exc:  # noqa: BLE001 - never hide the interrupt
        log.error("could not resume the guest at the source: %s", exc)


def run_dest(listen_at: tuple[str, int], key: bytes, memory_factory: MemoryFactory,
             on_switchover: Callable[[], None], *, timeout_s: float,
             bdp_hint_bytes: float = 0.0, rcvbuf_bytes: int | None = None,
             on_listening: Callable[[tuple[str, int]], None] | None = None) -> DestResult:
    """Receive one migration on ``listen_at`` (port 0: any; ``on_listening`` gets the address;
    ``rcvbuf_bytes``: a fixed receive buffer, see ``sockets.listen``)."""
    sock, granted = listen(listen_at, bdp_hint_bytes, rcvbuf_bytes=rcvbuf_bytes)
    try:
        if on_listening is not None:
            on_listening(sock.getsockname()[:2])
        rx = Receiver(sock, key, memory_factory, on_switchover, timeout_s=timeout_s)
        result = rx.run()
        result.buffers.append({"stream": "listener", **granted})
        return result
    finally:
        sock.close()
