"""Both ends of a migration on this machine: the destination in a thread, the source here, with
an in-process guest or the real shared-memory guest process, optionally through a simulated
link (``--rtt-sim``/``--bw-sim``). What ``wanmig migrate --loopback`` and the loopback benchmark
run; the ends are ``migrator.endpoints``'s, as across the WAN."""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from migrator.core.engine import ProgressHook
from migrator.core.interfaces import VM
from migrator.core.policy import MigrationPolicy
from migrator.core.records import MigrationResult, with_resume
from migrator.core.report import summary
from migrator.endpoints import DEFAULT_BW_Bps, run_dest, run_source
from migrator.memory.pages import PAGE_SIZE
from migrator.memory.workload import WorkloadParams
from migrator.transport.channel import TransportError
from migrator.transport.receiver import DestResult, MemoryFactory

# Straight over loopback the destination, not the link, is the bottleneck: applying pages is
# slower than loopback TCP, and an autotuned receive buffer (up to tcp_rmem's 16 MiB here, per
# stream) fills with data the pause then waits for (measured: 20 MB unread at 4 GiB, 60-140 ms
# of downtime). 1 MiB per stream still covers loopback's tens of microseconds of RTT.
LOOPBACK_RCVBUF = 1 << 20


@dataclass
class LoopbackRun:
    result: MigrationResult            # with the destination's resume time folded in
    dest: DestResult
    summary: dict
    transport: dict


def migrate_loopback(npages: int, workload: WorkloadParams, policy: MigrationPolicy, *,
                     seed: int = 0, rtt_sim_s: float = 0.0, bw_sim_mbps: float | None = None,
                     timeout_s: float = 30.0, progress: ProgressHook | None = None,
                     vm: VM | None = None, memory_factory: MemoryFactory | None = None,
                     on_switchover: Callable[[], None] | None = None) -> LoopbackRun:
    """Both ends on this machine: the destination in a thread, the source here.

    Without ``vm``, an ``InProcessVM`` of ``npages`` pages running ``workload`` is made (and
    stopped).  ``rtt_sim_s``/``bw_sim_mbps`` put a ``SimLink`` relay between the two ends.
    """
    from migrator.guest.localvm import InProcessVM
    from migrator.transport.simlink import SimLink

    key = secrets.token_bytes(32)
    simulated = rtt_sim_s > 0 or bw_sim_mbps is not None
    own_vm = vm is None
    guest: VM = InProcessVM(npages, workload, seed) if vm is None else vm
    holder: dict = {}
    listening = threading.Event()

    def factory(n: int) -> np.ndarray:
        mem = memory_factory(n) if memory_factory else np.zeros((n, PAGE_SIZE), np.uint8)
        holder["memory"] = mem
        return mem

    def on_listen(addr: tuple[str, int]) -> None:
        holder["addr"] = addr
        listening.set()

    def dest_main() -> None:
        try:
            holder["dest"] = run_dest(("127.0.0.1", 0), key, factory,
                                      on_switchover or (lambda: None), timeout_s=timeout_s,
                                      bdp_hint_bytes=_bdp(rtt_sim_s, bw_sim_mbps),
                                      rcvbuf_bytes=None if simulated else LOOPBACK_RCVBUF,
                                      on_listening=on_listen)
        except BaseException as exc:  # noqa: BLE001 - reported below
            holder["dest_error"] = exc
            listening.set()

    dest_thread = threading.Thread(target=dest_main, name="wanmig-dest", daemon=True)
    link: SimLink | None = None
    transport: dict = {}
    try:
        dest_thread.start()
        if not listening.wait(timeout_s) or "addr" not in holder:
            raise TransportError(f"destination did not start: {holder.get('dest_error')}")
        addr = holder["addr"]
        if simulated:
            link = SimLink(addr, rtt_sim_s, bw_sim_mbps * 1e6 / 8 if bw_sim_mbps else None)
            addr = link.start()
        bw_hint = bw_sim_mbps * 1e6 / 8 if bw_sim_mbps else None
        result = run_source(guest, addr, policy, key, rtt_hint_s=rtt_sim_s, progress=progress,
                            bw_hint_Bps=bw_hint or 10e9 / 8, timeout_s=timeout_s,
                            stats=transport)
        dest_thread.join(timeout_s + 5.0)
        if dest_thread.is_alive():
            raise TransportError("destination did not finish in time")
    finally:
        if link is not None:
            link.stop()
        if own_vm:
            guest.stop()  # type: ignore[attr-defined]
    dest: DestResult = holder.get("dest") or DestResult(
        ok=False, digest_ok=False, error=str(holder.get("dest_error")))
    if result.outcome == "completed":
        result = with_resume(result, dest.resume_s)
    rtt = transport.get("rtt_s", 0.0) or rtt_sim_s
    extra = {"streams_used": transport.get("streams_used"),
             "dest_hash_ms": dest.hash_s * 1e3, "dest_wait_ms": dest.wait_s * 1e3,
             "dest_pages_received": dest.pages_received, "dest_error": dest.error,
             "rtt_sim_ms": rtt_sim_s * 1e3, "bw_sim_mbps": bw_sim_mbps,
             "codec": policy.codec, "mode": policy.mode,
             "encryption": transport.get("encryption"), "dest_refused": dest.refused,
             "guest": "in-process" if own_vm else type(guest).__name__}
    return LoopbackRun(result, dest, summary(result, rtt_s=rtt, max_rounds=policy.max_rounds,
                                             extra=extra), transport)


def _bdp(rtt_s: float, bw_mbps: float | None) -> float:
    return (bw_mbps * 1e6 / 8 if bw_mbps else DEFAULT_BW_Bps) * rtt_s


def real_vm_available() -> bool:
    """Whether the shared-memory guest (``migrator.guest.vm``) can be used on this machine."""
    try:
        import migrator.guest.vm  # noqa: F401
    except ImportError:
        return False
    return True


def migrate_loopback_real(npages: int, workload: WorkloadParams, policy: MigrationPolicy, *,
                          seed: int = 0, vm_name: str | None = None, **kw: object
                          ) -> LoopbackRun:
    """``migrate_loopback`` with the real guest: a process writing a shared-memory image,
    migrated into a second image and switched onto it; every segment is removed at the end."""
    from migrator.guest.vm import create_dest_memory, start_guest

    name = vm_name or f"lb{os.getpid() % 100000}"
    handle = start_guest(name, npages, workload, seed, "src", service=False)
    dest_mem = None

    def factory(n: int) -> np.ndarray:
        nonlocal dest_mem
        dest_mem = create_dest_memory(name, "dst", n)
        return dest_mem.pages

    try:
        run = migrate_loopback(npages, workload, policy, seed=seed, vm=handle.vm,
                               memory_factory=factory,
                               on_switchover=lambda: handle.vm.switch_to("dst", "dst"),
                               **kw)  # type: ignore[arg-type]
        run.summary["guest"] = "shared-memory process (SharedVM)"
        return run
    finally:
        switched = "dst" in handle.vm.switched_tags
        handle.stop()
        if dest_mem is not None:
            dest_mem.close()
            if not switched:
                dest_mem.unlink()
