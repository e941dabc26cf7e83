"""The source VM of a guest with a disk: its memory and its disk image as one page array.

``SharedDiskVM`` is ``SharedVM`` (pause, throttle, lease, switchover) whose ``image`` is the
memory file followed by the disk image in its datastore (``migrator.guest.joined``), so the
engine migrates both in one index space (``migrator.core.disk``): dirty pages come from the
memory's dirty log and dirty sectors from the disk's (``<disk>.dirty``, one byte per 4 KiB sector,
marked by the guest's disk thread after each write completed); round 0 sends the disk's
allocated sectors only (``SEEK_DATA``: holes are never read, nor sent as data).

Write-blocking (``mirrored``): ``attach_mirror`` is given the migration's mirror stream by the
source endpoint, ``start_mirror`` opens the guest's mirror socket (``migrator.guest.mirrorserve``)
and returns once the guest's disk thread connected: from then on each of its writes reaches
the destination before it completes. A failed mirror copy fails the next dirty sync (the
engine then aborts; the source has every write).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from migrator.disk.datastore import allocated_sectors, dirty_log_path
from migrator.guest.control import GuestError
from migrator.guest.dirtylog import DirtyLog
from migrator.guest.joined import JoinedImage
from migrator.guest.mirrorserve import MirrorServer, mirror_socket_path
from migrator.guest.vm import SharedVM

log = logging.getLogger(__name__)

MIRROR_CONNECT_S = 10.0       # the guest's disk thread looks for the socket every few ms
_NONZERO_BATCH = 16384        # sectors read at once to find the zero ones (64 MiB)


class SharedDiskVM(SharedVM):
    def __init__(self, vm: str, tag: str, disk: Path, *, mirrored: bool = False,
                 **kwargs: float) -> None:
        super().__init__(vm, tag, **kwargs)
        self.disk_path = Path(disk)
        self.disk_mirrored = mirrored
        self.mirror: MirrorServer | None = None
        self._copy: Callable[[int, bytes], None] | None = None
        self.disk_dirty: DirtyLog | None = None
        self.joined: JoinedImage | None = None
        try:
            self.disk_dirty = DirtyLog(dirty_log_path(self.disk_path))
            self.joined = JoinedImage([self.memory.ram_path, self.disk_path])
        except BaseException:
            self.close()
            raise
        self.mem_pages = self.memory.npages
        self.npages = self.joined.pages.shape[0]
        self.disk_sectors = self.npages - self.mem_pages
        if self.disk_dirty.npages != self.disk_sectors:
            self.close()
            raise ValueError(f"{self.disk_dirty.path}: {self.disk_dirty.npages} sectors, the "
                             f"disk has {self.disk_sectors}")

    def image(self) -> np.ndarray:
        assert self.joined is not None
        return self.joined.pages

    def _read_dirty(self) -> np.ndarray:
        if self.mirror is not None and self.mirror.error is not None:
            raise GuestError(self.mirror.error)
        assert self.disk_dirty is not None
        mem = super()._read_dirty()
        return np.concatenate([mem, self.disk_dirty.read_and_clear() + self.mem_pages])

    def nonzero_pages(self) -> np.ndarray:
        pages = self.image()
        found = [super().nonzero_pages()]
        sectors = allocated_sectors(self.disk_path) + self.mem_pages
        for i in range(0, len(sectors), _NONZERO_BATCH):
            part = sectors[i:i + _NONZERO_BATCH]
            found.append(part[pages[part].any(axis=1)])
        return np.concatenate(found).astype(np.int64)

    # --- write-blocking ---------------------------------------------------------------------

    def attach_mirror(self, copy: Callable[[int, bytes], None]) -> None:
        """``copy(first_index, data)``: the pages from ``first_index`` (of the joined image)
        at the destination before it returns."""
        self._copy = copy

    def start_mirror(self, timeout_s: float = MIRROR_CONNECT_S) -> None:
        if self._copy is None:
            raise GuestError("write-blocking: no mirror stream was attached to the VM")
        copy = self._copy
        self.mirror = MirrorServer(mirror_socket_path(self.disk_path), self._read_sectors,
                                   lambda first, data: copy(self.mem_pages + first, data))
        if not self.mirror.wait_connected(timeout_s):
            raise GuestError(f"write-blocking: the guest's disk did not connect to "
                             f"{self.mirror.path} within {timeout_s:g} s")

    def _read_sectors(self, first: int, n: int) -> bytes:
        if first < 0 or n < 1 or first + n > self.disk_sectors:
            raise ValueError(f"sectors {first}+{n} outside the disk's {self.disk_sectors}")
        start = self.mem_pages + first
        return self.image()[start:start + n].tobytes()

    def mirror_stats(self) -> dict:
        m = self.mirror
        return {"disk_mirror_writes": m.copies if m else 0,
                "disk_mirror_bytes": m.copied_bytes if m else 0}

    def close(self) -> None:
        if self.mirror is not None:
            self.mirror.close()
        super().close()              # stops the digest thread that reads the joined image
        if self.disk_dirty is not None:
            self.disk_dirty.close()
        if self.joined is not None:
            self.joined.close()
