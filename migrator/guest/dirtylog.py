"""The dirty log: which guest pages were written since the migrator last looked.

Written by the guest process, read and cleared by the source migrator, two unrelated processes.
The one property pre-copy needs is that no write is lost: a page written after the reader took
its copy must be reported by a later read.  The guest writes a batch of page contents first and
marks the batch afterwards; marking and read-and-clear each hold an exclusive ``flock`` on the
log file.  So a mark is either entirely before a read (reported by it, and the content the reader
then copies is at least as new) or entirely after it (reported by the next read); a torn copy of
a page being written is always followed by its mark.  ``flock`` works between any processes that
open the same file, whatever their network namespace, and costs two system calls per batch of
writes, negligible next to the writes themselves.

Layout: one byte per page (0 clean, 1 dirty), ``npages`` bytes.  A byte rather than a bit keeps
marking a single numpy fancy assignment.
"""

from __future__ import annotations

import fcntl
import mmap
import os
from pathlib import Path

import numpy as np


class DirtyLog:
    """One process's handle on a dirty-log file (its own descriptor, so its own flock)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_RDWR)
        try:
            size = os.fstat(self._fd).st_size
            if size < 1:
                raise ValueError(f"{self.path}: empty dirty log")
            self._mm: mmap.mmap | None = mmap.mmap(self._fd, size, mmap.MAP_SHARED)
        except BaseException:
            os.close(self._fd)
            raise
        self.npages = size
        self._bits: np.ndarray | None = np.frombuffer(self._mm, dtype=np.uint8)

    def _lock(self) -> None:
        if self._bits is None:
            raise ValueError(f"dirty log {self.path} is closed")
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def _unlock(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def mark(self, indices: np.ndarray) -> None:
        """Writer: the pages ``indices`` have been written (call after writing their contents)."""
        if len(indices) == 0:
            return
        self._lock()
        try:
            self._bits[indices] = 1
        finally:
            self._unlock()

    def read_and_clear(self) -> np.ndarray:
        """Reader: sorted indices (int64) of pages marked since the previous call; clears them."""
        self._lock()
        try:
            idx = np.flatnonzero(self._bits)
            self._bits[idx] = 0
        finally:
            self._unlock()
        return idx.astype(np.int64, copy=False)

    def count(self) -> int:
        """Pages marked right now (informational, not atomic with anything)."""
        if self._bits is None:
            raise ValueError(f"dirty log {self.path} is closed")
        return int(np.count_nonzero(self._bits))

    def close(self) -> None:
        if self._mm is None:
            return
        self._bits = None
        mm, self._mm = self._mm, None
        try:
            mm.close()
        except BufferError:       # a view escaped; the mapping goes with it
            pass
        os.close(self._fd)
