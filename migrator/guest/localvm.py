"""A guest that lives in this process: numpy memory written by a thread in real time.

Why: the transport and the endpoints must be exercised end to end (real sockets, real time,
real dirtying while pages are in flight) without the shared-memory guest and its processes,
in unit tests and where that guest is not available.  It implements ``interfaces.VM`` exactly
like the real guest agent: writes follow a seeded ``DirtyPlan`` (throttle and dirty-rate limit
included), each write is the workload's (``writes.write_pages``: its ``write_bytes`` and
``content``), and the dirty log is a boolean bitmap.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from migrator.memory.pages import DEFAULT_MIX, PAGE_SIZE, PageMix, fill_pages, text_pool
from migrator.memory.workload import DirtyPlan, WorkloadParams
from migrator.memory.writes import write_pages
from migrator.wire.digest import image_digest
from migrator.wire.incremental import IncrementalDigest


class InProcessVM:
    """``interfaces.VM`` over a numpy array; call ``stop()`` (or use ``with``) when done."""

    def __init__(self, npages: int, workload: WorkloadParams, seed: int = 0,
                 mix: PageMix = DEFAULT_MIX, tick_s: float = 0.01) -> None:
        self.npages = npages
        self.memory = np.empty((npages, PAGE_SIZE), np.uint8)
        fill_pages(self.memory, mix, seed)
        self.workload = workload
        if workload.content == "text":
            text_pool()              # built before the writer thread holds the lock, not in it
        self.plan = DirtyPlan(workload, npages, seed=seed + 1)
        self.dirty = np.zeros(npages, dtype=bool)
        self.paused = False
        self.tick_s = tick_s
        self.writes = 0
        self._rng = np.random.default_rng(seed + 2)
        self._lock = threading.Lock()
        self._digest: IncrementalDigest | None = None   # once the dirty log is first read
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wanmig-localvm", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self.tick_s):
            now = time.monotonic()
            with self._lock:
                if not self.paused:
                    self._write(self.plan.pages_for(now - last))
            last = now

    def _write(self, idx: np.ndarray) -> None:
        if not len(idx):
            return
        write_pages(self.memory, idx, self._rng, self.workload.write_bytes,
                    self.workload.content)
        self.dirty[idx] = True
        self.writes += len(idx)

    # --- interfaces.VM -------------------------------------------------------------------------

    def read_and_clear_dirty(self) -> np.ndarray:
        """The pages written since the last call; the first call also starts keeping the image
        digest current in the background, as the shared-memory guest's agent does."""
        with self._lock:
            out = np.flatnonzero(self.dirty)
            self.dirty[:] = False
        if self._digest is None:
            self._digest = IncrementalDigest(self.memory)
            self._digest.start()
        self._digest.touched(out)          # after the writes: see wire.incremental
        return out

    def nonzero_pages(self) -> np.ndarray:
        with self._lock:
            return np.flatnonzero(self.memory.view(np.uint64).any(axis=1))

    def pause(self) -> None:
        with self._lock:
            self.paused = True

    def resume(self) -> None:
        with self._lock:
            self.paused = False

    def set_throttle(self, frac: float) -> None:
        with self._lock:
            self.plan.throttle = frac

    def set_dirty_limit(self, bytes_per_s: float | None) -> None:
        """Cap the write rate (bytes/s; None or 0 lifts it), as the real guest does."""
        with self._lock:
            self.plan.dirty_limit_Bps = bytes_per_s

    def page_bytes(self, indices: np.ndarray) -> bytes:
        with self._lock:
            return self.memory[indices].tobytes()

    def digest(self) -> bytes:
        """The image digest (``migrator.wire.digest``). Exact once the guest is paused and its
        dirty log read after the pause (as the engine does): only the chunks reported since
        they were hashed are hashed now."""
        if self._digest is not None:
            return self._digest.finish()[0]
        with self._lock:
            return image_digest(self.memory)

    def save_state(self) -> bytes:
        return f"inprocess-vm npages={self.npages} writes={self.writes}".encode()

    # --- lifetime ------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        if self._digest is not None:
            self._digest.stop()

    def __enter__(self) -> InProcessVM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
