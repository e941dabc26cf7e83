"""The source side of the emulated VM: the engine's ``VM`` over shared memory, and the launcher.

``SharedVM`` is what ``PreCopyEngine`` drives: it maps the guest's memory image, reads and
clears the dirty log, and steers the guest through the control block (pause is acknowledged, so
the stop-and-copy's last dirty read is complete).  ``switch_to`` is the switchover's last step:
the paused guest maps the destination's copy, rebuilds its state from it and resumes there.
A pause, a throttle or a write cap is leased (``migrator.guest.lease``): a thread renews it while
this object holds the guest; ``hand_over`` marks the destination as the owner once the ACK is
in.  Should this process die, the guest takes itself back after ``lease_s``.

``start_guest`` creates and fills the source image, formats the key-value region, starts the
guest process through an injectable ``popen`` (a Mininet host's, to run it in the VM's
namespace) and waits for ``READY``; the guest is recorded (``migrator.guest.records``) and
watches this process, its owner, stopping once it is gone (``migrator.guest.owner``).  The
``GuestHandle`` it returns owns the process and the
segments: ``stop()`` ends the process and unlinks the source image and any image the guest was
switched to, by this ``SharedVM`` or any other (after switchover the VM owns the destination
copy, as a real VM owns its RAM).
Nothing is left behind if the start fails or is interrupted.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ground.config import ConfigError
from migrator.guest.control import LEASE_S, ControlState, check_location
from migrator.guest.guestargs import KV_PAGES
from migrator.guest.guestdisk import DiskConfig
from migrator.guest.guestproc import end_process, wait_ready
from migrator.guest.holder import LeaseHolder, lease_lapsed
from migrator.guest.image import GuestMemory, image_name, remove_segments
from migrator.guest.kvstore import KVStore
from migrator.guest.lease import hand_over, held, release
from migrator.guest.records import remove_guest, write_guest
from migrator.guest.service import TCP_PORT, UDP_PORT
from migrator.memory.pages import DEFAULT_MIX, PageMix, fill_pages
from migrator.memory.workload import WorkloadParams, parse_workload

log = logging.getLogger(__name__)

_REPO_ROOT = Path(__file__).resolve().parents[2]


class SharedVM:
    """``migrator.core.interfaces.VM`` over a tracked image ``wanmig-<vm>-<tag>``."""

    def __init__(self, vm: str, tag: str, *, control_tag: str | None = None,
                 pause_timeout: float = 5.0, switch_timeout: float = 15.0,
                 lease_s: float = LEASE_S) -> None:
        self.memory = GuestMemory.attach(vm, tag)
        # The guest obeys the control block of the image it started on, wherever it moved
        # since: ``control_tag`` names that image when it is not ``tag``.
        self.ctl_memory = self.memory
        try:
            if control_tag not in (None, tag):
                self.ctl_memory = GuestMemory.attach(vm, control_tag)
            if self.memory.dirty is None or self.ctl_memory.control is None:
                raise ValueError(f"{self.memory.name} is not a tracked image (no dirty log, or "
                                 f"no control block in {self.ctl_memory.name}): the guest's "
                                 "first image is created with tracking=True, a destination's "
                                 "with its dirty log")
        except BaseException:
            self.memory.close()
            if self.ctl_memory is not self.memory:
                self.ctl_memory.close()
            raise
        self.vm, self.tag = vm, tag
        self._digest: Any = None                 # IncrementalDigest once tracking started
        self.npages = self.memory.npages
        self.pause_timeout = pause_timeout
        self.switch_timeout = switch_timeout
        self.switched_tags: list[str] = []     # images the guest was moved to, in order
        self.lease = LeaseHolder(self.ctl_memory.ctl_path, lease_s)
        self._paused = False                   # paused by us, under our lease
        self._slowed = False                   # throttled or capped by us, under our lease
        self._expiries = 0                     # the guest's lease expiries when we paused it

    # --- migrators.interfaces.VM -----------------------------------------------------------------

    def read_and_clear_dirty(self) -> np.ndarray:
        """The pages written since the last call; the first call also starts keeping the image
        digest current in the background (``migrator.wire.incremental``)."""
        pages = self._read_dirty()
        if self._digest is None:
            from migrator.wire.incremental import IncrementalDigest

            self._digest = IncrementalDigest(self.image())
            self._digest.start()
        self._digest.touched(pages)
        return pages

    def _read_dirty(self) -> np.ndarray:
        assert self.memory.dirty is not None
        return self.memory.dirty.read_and_clear()

    def nonzero_pages(self) -> np.ndarray:
        return np.flatnonzero(self.memory.pages.any(axis=1)).astype(np.int64)

    def pause(self) -> None:
        """Pause under a lease, renewed from now on (``migrator.guest.holder``)."""
        ctl = self._control()
        self._expiries = ctl.snapshot().lease_expiries
        self.lease.start()            # renewing already while the guest acknowledges
        try:
            ctl.pause(self.pause_timeout, self.lease.lease_s)
        except BaseException:
            self._settle()
            raise
        self._paused = True

    def resume(self) -> None:
        self._control().resume(self.pause_timeout)
        self._paused = False
        self._settle()

    def set_throttle(self, frac: float) -> None:
        self._slow(frac > 0 or bool(self.state().dirty_limit))
        self._control().set_throttle(frac)
        self._settle()

    def set_dirty_limit(self, bytes_per_s: float | None) -> None:
        """Cap the guest's page-write rate (bytes/s; None or 0 lifts it), like QEMU's
        dirty-limit; applied at the guest's next batch, on top of any throttle."""
        self._slow(bool(bytes_per_s) or self.state().throttle > 0)
        self._control().set_dirty_limit(bytes_per_s)
        self._settle()

    def _slow(self, slowed: bool) -> None:
        """Hold the lease before the guest is slowed down (a crash in between lapses)."""
        self._slowed = slowed
        if slowed:
            self.lease.start()

    def _settle(self) -> None:
        """Holding nothing any more: stop renewing, no lease."""
        if not self._paused and not self._slowed and self.lease.active:
            self.lease.stop()
            release(self._control())

    def hand_over(self) -> bool:
        """The destination ACKed: mark it as the owner, stop renewing.  True if it owns the
        guest now; False if our lease had run out and the guest resumed at the source."""
        ok = hand_over(self._control(), self.tag, self._expiries)
        self.lease.stop()
        self._paused = self._slowed = False
        return ok

    def _check_lease(self) -> None:
        if self._paused and not held(self.state(), self._expiries):
            raise lease_lapsed(self.ctl_memory.ctl_path)

    def page_bytes(self, indices: np.ndarray) -> bytes:
        return self.image()[np.asarray(indices, dtype=np.int64)].tobytes()

    def image(self) -> np.ndarray:
        """What migrates, as pages: the memory (a VM with a disk adds its sectors,
        ``migrator.guest.diskvm``)."""
        return self.memory.pages

    def save_state(self) -> bytes:
        """The paused guest's state blob (JSON: location, workload position, counters);
        GuestError if our lease on the pause ran out (the guest runs at the source again)."""
        self._check_lease()
        return self._control().snapshot().blob

    # --- switchover and inspection ---------------------------------------------------------------

    def switch_to(self, tag: str, location: str) -> None:
        """Resume the (paused) guest on memory ``tag`` at ``location``; GuestError if it cannot
        (it then stays paused on the source memory)."""
        check_location(location)
        image_name(self.vm, tag)
        self._control().switch(tag, location, self.switch_timeout)
        self.switched_tags.append(tag)
        self.lease.stop()                 # the guest runs at the destination, unthrottled
        self._paused = self._slowed = False

    def digest(self) -> bytes:
        """The image digest (``migrator.wire.digest``). Exact once the guest is paused and its dirty
        log read after the pause (as the engine does): only chunks reported since they were
        hashed are hashed again."""
        self._check_lease()
        if self._digest is not None:
            return self._digest.finish()[0]
        from migrator.wire.digest import image_digest

        return image_digest(self.image())

    def state(self) -> ControlState:
        return self._control().snapshot()

    @property
    def location(self) -> str:
        return self.state().location

    def _control(self):
        if self.ctl_memory.control is None:
            raise ValueError(f"{self.ctl_memory.name}: closed")
        return self.ctl_memory.control

    def close(self) -> None:
        self.lease.stop()
        if self._paused:
            log.warning("%s: closed with the guest paused and not handed over: it resumes at "
                        "the source when the lease runs out (%g s)", self.memory.name,
                        self.lease.lease_s)
        if self._digest is not None:
            self._digest.stop()
        self.memory.close()
        if self.ctl_memory is not self.memory:
            self.ctl_memory.close()


def create_dest_memory(vm: str, tag: str, npages: int) -> GuestMemory:
    """The destination migrator's image: zeroed, with a dirty log (the guest marks its writes
    there once switched onto it, so it can migrate again) and no control block (it keeps the
    one it started on); its creator unlinks it if the migration fails, the VM's
    ``GuestHandle`` or the runner once the guest was switched onto it."""
    return GuestMemory.create(vm, tag, npages, tracking=True, control=False)


@dataclasses.dataclass
class GuestHandle:
    """A running guest: its process, its source image and the engine's view of it."""

    proc: Any                    # a subprocess.Popen (or a Mininet host's popen result)
    memory: GuestMemory          # the source image, created (and unlinked) by the launcher
    vm: SharedVM
    pid: int
    udp_port: int
    tcp_port: int
    _stopped: bool = False

    @property
    def name(self) -> str:
        return self.memory.vm

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM (SIGKILL after ``timeout``), then unlink every segment; idempotent.
        Returns the guest's exit status."""
        if self._stopped:
            return self.proc.returncode
        self._stopped = True
        tags = [self.memory.tag, *self.vm.switched_tags]
        try:
            tags.append(self.vm.state().tag)     # switched by another process's SharedVM too
        except (ValueError, OSError) as exc:
            log.debug("cannot read the guest's current image: %s", exc)
        try:
            code = end_process(self.proc, timeout)
        finally:
            self.vm.close()
            self.memory.close()
            for tag in dict.fromkeys(t for t in tags if t):
                name = image_name(self.memory.vm, tag)
                remove_segments([f"{name}{s}" for s in (".ram", ".dirty", ".ctl")])
            remove_guest(self.memory.vm)
        return code

    def __enter__(self) -> GuestHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _workload_arg(workload: str | WorkloadParams | Mapping) -> str:
    if isinstance(workload, WorkloadParams):
        return json.dumps(dataclasses.asdict(workload))
    params = parse_workload(workload)              # ConfigError on anything bad
    return workload if isinstance(workload, str) else json.dumps(dataclasses.asdict(params))


def _check_port(name: str, port: object) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(name, port, "a port from 1 to 65535")
    return port


def start_guest(vm: str, npages: int, workload: str | WorkloadParams | Mapping, seed: int,
                location: str, *, popen: Callable[..., Any] = subprocess.Popen,
                service: bool = True, tag: str = "src", service_host: str = "0.0.0.0",
                udp_port: int = UDP_PORT, tcp_port: int = TCP_PORT, kv_pages: int = KV_PAGES,
                mix: PageMix = DEFAULT_MIX, ready_timeout: float = 20.0,
                python: str = sys.executable, stderr: Any = None,
                log_level: str = "INFO", disk: DiskConfig | None = None) -> GuestHandle:
    """Create and fill ``wanmig-<vm>-<tag>``, start the guest with ``popen``, wait for READY.

    Every argument is checked before anything is created (ConfigError naming it).
    ``stderr`` is passed to ``popen`` (None: inherit; a Mininet host's popen would otherwise
    make it a pipe that nobody reads). ``disk``: the VM's disk (``migrator.guest.guestdisk``),
    its image already in the datastore.
    """
    image_name(vm, tag)
    if isinstance(npages, bool) or not isinstance(npages, int) or npages <= kv_pages:
        raise ConfigError("npages", npages, f"an integer above kv_pages ({kv_pages})")
    if isinstance(kv_pages, bool) or not isinstance(kv_pages, int) or kv_pages < 1:
        raise ConfigError("kv_pages", kv_pages, "an integer of at least 1")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError("seed", seed, "an integer of at least 0")
    check_location(location)
    _check_port("udp_port", udp_port)
    _check_port("tcp_port", tcp_port)
    wl = _workload_arg(workload)
    argv = [python, "-m", "migrator.guest.process", "--vm", vm, "--tag", tag, "--workload", wl,
            "--seed", str(seed), "--location", location, "--service-host", service_host,
            "--udp-port", str(udp_port), "--tcp-port", str(tcp_port),
            "--kv-pages", str(kv_pages), "--log-level", log_level,
            "--owner-pid", str(os.getpid())]
    if not service:
        argv.append("--no-service")
    if disk is not None:
        argv += ["--disk", disk.to_json()]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO_ROOT), env.get("PYTHONPATH"))
                                        if p)
    write_guest(vm)                     # before anything exists: wanmig clean knows the owner
    try:
        memory = GuestMemory.create(vm, tag, npages, tracking=True)
    except BaseException:
        remove_guest(vm)
        raise
    proc = shared = None
    try:
        fill_pages(memory.pages, mix, seed)
        KVStore.format(memory.pages[:kv_pages])
        proc = popen(argv, stdout=subprocess.PIPE, stderr=stderr, env=env)
        pid = wait_ready(proc, ready_timeout)
        if pid != proc.pid:
            log.info("guest runs as pid %d (launched pid %d)", pid, proc.pid)
        write_guest(vm, pid=pid)
        shared = SharedVM(vm, tag)
        log.info("guest %s pid %d ready: %d pages, workload %s, at %s", vm, pid, npages, wl,
                 location)
        return GuestHandle(proc=proc, memory=memory, vm=shared, pid=pid, udp_port=udp_port,
                           tcp_port=tcp_port)
    except BaseException:
        try:
            if proc is not None:
                end_process(proc, 5.0)
        finally:
            if shared is not None:
                shared.close()
            memory.close()
            memory.unlink()
            remove_guest(vm)
        raise
