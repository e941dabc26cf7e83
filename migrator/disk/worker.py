"""The guest's disk thread: reads and writes the VM's disk at the configured rates, beside (never
inside) the guest's 1 ms service loop, and checks every read against what it wrote.

Every tick (``TICK_S``, 2 ms, at high rates; about one I/O's time at low rates, at most
``IDLE_TICK_S``: an idle disk costs about 1.5 % of a core, a 2 ms tick 5 %) the thread asks
the plan (``migrator.disk.plan``) which blocks are due, then:

* a write: the block's next sequence number, ``make_block``, ``device.pwrite``, then, when a
  mirror is offered (write-blocking mirroring), the copy of its sectors by the source migrator,
  then ``mark_dirty(sectors)``: only once the write is complete everywhere.  Its latency as the
  guest sees it (local write plus mirror copy) goes to the I/O log, path ``mirror`` when
  mirrored, else the device's ``where``;
* a read: ``device.pread`` and ``check_block`` against the last sequence written; a block that
  is not what was written is a lost write (counted, the first few logged with the reason).

A device slower than the plan (each I/O 150 ms across a WAN) lowers the achieved rate; it never
queues a backlog: at most ``carry_s`` plus one tick's worth of due I/O is carried, the rest is
counted as lagged.  (``carry_s`` is 20 ms rather than one 2 ms tick so that a scheduling hiccup
on a busy machine is caught up rather than counted as lag: at 40 + 40 MiB/s of 64 KiB blocks
beside a busy core, a 2 ms carry lagged 10 of 12800 I/Os in 10 s, 20 ms none.)
Time spent held (the VM paused) plans no I/O.

Controls, thread-safe: ``hold`` (returns once no I/O is in progress; none starts until
``release``), ``set_throttle``, ``switch_device`` (while held), ``verify_all``, ``stats``.
The worker owns the device it is given: ``switch_device`` closes the old one, ``close`` the last.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from migrator.disk.blocks import NEVER_WRITTEN, check_block, make_block
from migrator.disk.device import BlockDevice, MirrorSlot
from migrator.disk.iolog import IoLog
from migrator.disk.params import DiskParams
from migrator.disk.plan import DiskPlan
from migrator.memory.workload import MIB

log = logging.getLogger(__name__)

TICK_S = 0.002                 # planning period of the disk thread at high rates
IDLE_TICK_S = 0.02             # ... at low rates: about one I/O per tick, at most this long
CARRY_S = 0.02                 # at most this much due I/O (plus a tick's) is carried
UNKNOWN = -2                   # a block whose last write failed: its content is not checked
MAX_LOGGED = 5                 # lost writes and I/O errors logged one by one, then only counted


class DiskWorker:
    """One VM's disk thread; see the module docstring."""

    def __init__(self, params: DiskParams, device: BlockDevice,
                 mark_dirty: Callable[[np.ndarray], None] | None, iolog: IoLog | None,
                 seed: int = 0, mirror_path: Path | None = None,
                 initial_allocated_blocks: int | None = None, *, tick_s: float = TICK_S,
                 carry_s: float = CARRY_S, clock: Callable[[], float] = time.monotonic) -> None:
        """``seed`` seeds the plan and salts the blocks' payloads; ``initial_allocated_blocks``
        (default: the params') are the blocks the datastore filled at sequence 0."""
        self.params = params
        self._device = device
        self._mark_dirty = mark_dirty
        self._iolog = iolog
        self._salt = seed
        self._clock = clock
        self._tick_s = tick_s
        self._carry_s = carry_s
        self._plan = DiskPlan(params, seed)
        allocated = params.allocated_blocks if initial_allocated_blocks is None \
            else initial_allocated_blocks
        if not 0 <= allocated <= params.blocks:
            raise ValueError(f"initial_allocated_blocks must be 0..{params.blocks}, "
                             f"got {allocated}")
        # block => sequence number of its last write (0: the initial fill, -1: never written,
        # UNKNOWN: its last write failed)
        self._seq = np.full(params.blocks, NEVER_WRITTEN, dtype=np.int64)
        self._seq[:allocated] = 0
        self._mirror = MirrorSlot(mirror_path, clock) if mirror_path is not None else None
        self._cond = threading.Condition()
        self._held = False
        self._busy = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._pending_w: list[int] = []
        self._pending_r: list[int] = []
        self._counts = dict.fromkeys(
            ("writes", "reads", "bytes_written", "bytes_read", "lost_writes", "mirror_writes",
             "remote_reads", "write_errors", "read_errors"), 0)
        self._lagged = 0
        self._active_s = 0.0
        self.error: BaseException | None = None

    # --- controls -------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("disk worker already started")
        self._thread = threading.Thread(target=self._run, name="disk", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops the thread (after the I/O in progress) and joins it; drops the mirror link."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
        if self._mirror is not None:
            self._mirror.drop()

    def close(self) -> None:
        """``stop``, then the device closed."""
        self.stop()
        self._device.close()

    def hold(self) -> None:
        """Returns once no I/O is in progress; no further I/O until ``release``."""
        with self._cond:
            self._held = True
            while self._busy:
                self._cond.wait()

    def release(self) -> None:
        with self._cond:
            self._held = False
            self._cond.notify_all()

    @property
    def held(self) -> bool:
        return self._held

    def set_throttle(self, frac: float) -> None:
        """Slow the guest's I/O to ``1 - frac`` of its rates (0 to 1)."""
        with self._cond:
            self._plan.throttle = frac

    def switch_device(self, device: BlockDevice, *, mirror_path: Path | None = None) -> None:
        """Do I/O on ``device`` from now on (only while held): the old device is closed, any
        mirror link dropped, and the mirror looked for at ``mirror_path`` from now on (None:
        none; a guest moved to its destination no longer mirrors to its source)."""
        with self._cond:
            if not self._held:
                raise RuntimeError("switch_device needs the disk worker held")
            old, self._device = self._device, device
            if self._mirror is not None:
                self._mirror.drop()
            self._mirror = MirrorSlot(mirror_path, self._clock) if mirror_path is not None \
                else None
        old.close()

    def expected_seq(self, block: int) -> int:
        """The sequence number block ``block`` must read back (-1: zeros; -2: unknown)."""
        return int(self._seq[block])

    def stats(self) -> dict:
        with self._cond:
            out: dict = dict(self._counts)
            active = self._active_s
            out["lagged"] = self._lagged
            out["mirror_drops"] = self._mirror.drops if self._mirror is not None else 0
        out["active_s"] = active
        out["write_mibps"] = out["bytes_written"] / MIB / active if active > 0 else 0.0
        out["read_mibps"] = out["bytes_read"] / MIB / active if active > 0 else 0.0
        out["error"] = repr(self.error) if self.error is not None else None
        return out

    def verify_all(self) -> tuple[int, int]:
        """Reads back every block that holds data (written, or filled at creation and never
        rewritten: sequence 0) and checks it; (checked, lost).  Holds the I/O meanwhile."""
        was_held = self._held
        self.hold()
        try:
            bs = self.params.block_bytes
            checked = lost = 0
            for block in np.flatnonzero(self._seq >= 0).tolist():
                reason = check_block(self._device.pread(block * bs, bs), block,
                                     int(self._seq[block]))
                checked += 1
                if reason:
                    lost += 1
                    if lost <= MAX_LOGGED:
                        log.error("disk verify: block %d: %s", block, reason)
            if lost:
                log.error("disk verify: %d of %d blocks not as written", lost, checked)
            return checked, lost
        finally:
            if not was_held:
                self.release()

    # --- the thread -----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # noqa: BLE001 - kept for the guest, which reports it
            self.error = exc
            log.exception("disk worker failed")
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()
            if self._iolog is not None:
                self._iolog.flush()

    def _loop(self) -> None:
        last = self._clock()
        while True:
            with self._cond:
                if self._held and not self._stopping:
                    self._cond.wait_for(lambda: not self._held or self._stopping)
                    last = self._clock()              # a paused VM plans no I/O
                if self._stopping:
                    return
                now = self._clock()
                dt = now - last
                last = now
                self._active_s += dt
                writes, reads = self._plan.next(dt)
                tick = self._tick()
                self._carry(writes.tolist(), reads.tolist(), tick)
            self._do_pending()
            if self._iolog is not None:
                self._iolog.tick()
            with self._cond:
                wait = last + tick - self._clock()
                if wait > 0 and not self._stopping:
                    self._cond.wait(wait)

    def _tick(self) -> float:
        """The planning period: ``tick_s``, or about one I/O's time at low rates."""
        rate = self._plan.write_blocks_per_s() + self._plan.read_blocks_per_s()
        if rate <= 0:
            return max(self._tick_s, IDLE_TICK_S)
        return max(self._tick_s, min(IDLE_TICK_S, 1.0 / rate))

    def _carry(self, writes: list[int], reads: list[int], tick: float) -> None:
        """Add the due I/O, keeping at most ``carry_s + tick`` worth (at least one of each)."""
        for pending, new, rate in ((self._pending_w, writes, self._plan.write_blocks_per_s()),
                                   (self._pending_r, reads, self._plan.read_blocks_per_s())):
            pending.extend(new)
            cap = max(1, math.ceil(rate * (self._carry_s + tick)))
            if len(pending) > cap:
                self._lagged += len(pending) - cap
                del pending[:len(pending) - cap]      # the oldest go

    def _begin(self) -> bool:
        with self._cond:
            if self._held or self._stopping:
                return False
            self._busy = True
            return True

    def _end(self) -> None:
        with self._cond:
            self._busy = False
            self._cond.notify_all()

    def _do_pending(self) -> None:
        """The due I/O, writes and reads alternating (neither waits behind all of the other on
        a slow device); stops as soon as the worker is held or stopped."""
        if self._mirror is not None and not self._mirror.connected and self._begin():
            try:                      # offered while no I/O is due: connect now, so that the
                self._mirror.look()   # migrator waiting for it does not wait for a write
            finally:
                self._end()
        write_next = True
        while self._pending_w or self._pending_r:
            if not self._begin():
                return
            try:
                if self._pending_w and (write_next or not self._pending_r):
                    self._write(self._pending_w.pop(0))
                else:
                    self._read(self._pending_r.pop(0))
            finally:
                self._end()
            write_next = not write_next

    def _write(self, block: int) -> None:
        bs, spb = self.params.block_bytes, self.params.sectors_per_block
        seq = max(int(self._seq[block]), 0) + 1
        data = make_block(block, seq, bs, self.params.content, self._salt)
        device = self._device
        t0 = self._clock()
        try:
            device.pwrite(data, block * bs)
        except OSError as exc:
            self._seq[block] = UNKNOWN
            self._failed("write_errors", "w", block, t0, device.where, exc)
            return
        path = device.where
        if self._mirror is not None and self._mirror.copy(block * spb, spb):
            path = "mirror"
        latency = self._clock() - t0
        self._seq[block] = seq
        if self._mark_dirty is not None:
            self._mark_dirty(np.arange(block * spb, (block + 1) * spb, dtype=np.int64))
        with self._cond:
            self._counts["writes"] += 1
            self._counts["bytes_written"] += bs
            self._counts["mirror_writes"] += path == "mirror"
        if self._iolog is not None:
            self._iolog.append(t0, "w", block, latency, True, path)

    def _read(self, block: int) -> None:
        bs = self.params.block_bytes
        device = self._device
        t0 = self._clock()
        try:
            data = device.pread(block * bs, bs)
        except OSError as exc:
            self._failed("read_errors", "r", block, t0, device.where, exc)
            return
        latency = self._clock() - t0
        expected = int(self._seq[block])
        reason = "" if expected == UNKNOWN else check_block(data, block, expected)
        with self._cond:
            self._counts["reads"] += 1
            self._counts["bytes_read"] += bs
            self._counts["remote_reads"] += device.where == "remote"
            if reason:
                self._counts["lost_writes"] += 1
                lost = self._counts["lost_writes"]
        if reason and lost <= MAX_LOGGED:
            log.error("disk read of block %d on %s: %s (lost write %d)", block, device.where,
                      reason, lost)
        if self._iolog is not None:
            self._iolog.append(t0, "r", block, latency, not reason, device.where)

    def _failed(self, counter: str, op: str, block: int, t0: float, where: str,
                exc: OSError) -> None:
        latency = self._clock() - t0
        with self._cond:
            self._counts[counter] += 1
            n = self._counts[counter]
        if n <= MAX_LOGGED:
            log.warning("disk %s of block %d on %s failed: %s", "write" if op == "w" else "read",
                        block, where, exc)
        if self._iolog is not None:
            self._iolog.append(t0, op, block, latency, False, where)
