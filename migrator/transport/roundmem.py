"""Destination memory where a page only ever moves forward in rounds.

Why: a page that moved to another data stream when the source added streams may arrive out of
order, and the newer copy must win; the image digest is kept current as pages are applied
(``migrator.wire.incremental``), so that finishing it at the pause hashes only what changed.
"""

from __future__ import annotations

import threading

import numpy as np

from migrator.memory.pages import PAGE_SIZE
from migrator.wire.incremental import IncrementalDigest

MIRROR_ROUND = 2 ** 32 - 1      # the largest round a PAGES frame can carry
CLEAR_BATCH = 1024              # pages read at once to find which of them to zero (4 MiB)


class RoundOrderedMemory:
    """Destination memory where a page only ever moves forward in rounds; thread-safe."""

    def __init__(self, memory: np.ndarray, zeroed: bool = True) -> None:
        """``zeroed``: ``memory`` is all zero at the start (a new image, as the receiver's
        memory factory makes); otherwise every page may hold data until written."""
        if memory.ndim != 2 or memory.shape[1] != PAGE_SIZE or memory.dtype != np.uint8:
            raise ValueError(f"memory must be a (npages, {PAGE_SIZE}) uint8 array, got "
                             f"{memory.shape} {memory.dtype}")
        self.memory = memory
        self.round_of = np.full(len(memory), -1, dtype=np.int64)
        # Pages that may hold non-zero bytes: only these are read when a zero page arrives or
        # their chunk is hashed.
        self.maybe_data = np.full(len(memory), not zeroed, dtype=bool)
        self.received = 0
        self.applied = 0
        self.mirrored = 0
        self.cv = threading.Condition()
        self.digest = IncrementalDigest(memory, self.cv, complete=False,
                                        maybe_data=self.maybe_data)

    def apply(self, round_no: int, indices: np.ndarray, pages: np.ndarray,
              zero: np.ndarray) -> None:
        with self.cv:
            keep = self.round_of[indices] <= round_no
            if keep.all():
                self.memory[indices] = pages
            elif keep.any():
                self.memory[indices[keep]] = pages[keep]
            self.round_of[indices[keep]] = round_no
            self.maybe_data[indices[keep]] = True
            zkeep = self.round_of[zero] <= round_no
            self._clear(zero[zkeep])
            self.round_of[zero[zkeep]] = round_no
            # After the writes (see wire.incremental); the chunks they completed are hashed
            # below, outside the lock, while the other streams apply theirs.
            completed = self.digest.touched(np.concatenate([indices[keep], zero[zkeep]]))
            self.received += len(indices) + len(zero)
            self.applied += int(keep.sum()) + int(zkeep.sum())
            self.cv.notify_all()
        self.digest.hash_chunks(*completed)

    def _clear(self, zero: np.ndarray) -> None:
        """Zero the pages that are not zero already: writing zeros into a hole of a sparse
        disk image would allocate it (a 1 GiB disk half empty would arrive whole). Only pages
        written with data before are read, a batch at a time: reading a page of a new
        shared-memory image allocates it too, and a copy of every zero page of a round (a
        third of a 1 GiB web guest) cost faults and the lock's time."""
        cand = zero[self.maybe_data[zero]]
        for i in range(0, len(cand), CLEAR_BATCH):
            part = cand[i:i + CLEAR_BATCH]
            self.memory[part[self.memory[part].any(axis=1)]] = 0
        self.maybe_data[cand] = False

    def mirror(self, idx: np.ndarray, pages: np.ndarray) -> None:
        """A disk write mirrored from the source (write-blocking): newer than anything a round
        carries, so no round's copy of these pages, arriving later, replaces it; not counted
        among the pages the rounds announced."""
        with self.cv:
            self.memory[idx] = pages
            self.round_of[idx] = MIRROR_ROUND
            self.maybe_data[idx] = True
            completed = self.digest.touched(idx)
            self.mirrored += len(idx)
            self.cv.notify_all()
        self.digest.hash_chunks(*completed)
