"""Where a VM's disk sits in the engine's index space, and what of it a round sends.

A VM with a disk exposes one index space to the engine: its memory pages ``[0, mem_pages)``
and then its disk's 4 KiB sectors ``[mem_pages, npages)``, read, tracked and sent alike (the same
codecs, the same streams, the same image digest, which the destination keeps current as
sectors arrive, so the check does not grow with the disk). Why one space rather than a second
engine: the disk's rounds then converge with the memory's by the same rule (the expected
downtime counts dirty sectors as it counts dirty pages), and one drain empties the pipe of both
before the guest is paused, so the stop-and-copy never waits behind disk bytes.

The VM says so with two optional attributes: ``mem_pages`` (absent: no disk) and
``disk_mirrored`` (write-blocking: every guest write reaches the destination before it
completes, once ``start_mirror()`` returned; the disk's sectors then travel in round 0 only).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from migrator.core.interfaces import VM


@dataclass(frozen=True)
class DiskLayout:
    mem_pages: int          # indices below are memory pages, from here on disk sectors
    npages: int
    mirrored: bool = False

    @classmethod
    def of(cls, vm: VM) -> DiskLayout:
        npages = int(vm.npages)
        mem_pages = int(getattr(vm, "mem_pages", npages))
        mirrored = bool(getattr(vm, "disk_mirrored", False))
        if not 1 <= mem_pages <= npages:
            raise ValueError(f"the VM has {mem_pages} memory pages of {npages} pages in all")
        if mirrored and (mem_pages == npages or not callable(getattr(vm, "start_mirror", None))):
            raise ValueError("the VM says its disk is mirrored but has no disk or no "
                             "start_mirror()")
        return cls(mem_pages, npages, mirrored)

    @property
    def has_disk(self) -> bool:
        return self.mem_pages < self.npages

    def parts(self, indices: np.ndarray, zeros: np.ndarray
              ) -> Iterator[tuple[np.ndarray, np.ndarray, bool]]:
        """(indices, zero indices, is_disk) to send, the disk's part first; a part with
        nothing in it is skipped."""
        if not self.has_disk:
            yield indices, zeros, False
            return
        for disk in (True, False):
            idx = indices[indices >= self.mem_pages] if disk else indices[indices < self.mem_pages]
            zer = zeros[zeros >= self.mem_pages] if disk else zeros[zeros < self.mem_pages]
            if len(idx) or len(zer):
                yield idx, zer, disk

    def on_disk(self, indices: np.ndarray) -> int:
        """How many of ``indices`` are disk sectors."""
        return int(np.count_nonzero(indices >= self.mem_pages)) if self.has_disk else 0

    def to_resend(self, dirty: np.ndarray) -> np.ndarray:
        """The dirty indices a later round sends: all of them, but a mirrored disk's."""
        return dirty[dirty < self.mem_pages] if self.mirrored else dirty
