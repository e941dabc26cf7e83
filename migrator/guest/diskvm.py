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

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ground.config import ConfigError
from migrator.disk.datastore import allocated_sectors, create_disk, dirty_log_path, remove_disk
from migrator.disk.device import mirror_socket_path
from migrator.disk.params import DiskParams, parse_disk
from migrator.guest.control import GuestError
from migrator.guest.dirtylog import DirtyLog
from migrator.guest.image import GuestMemory
from migrator.guest.joined import JoinedImage
from migrator.guest.mirrorserve import MirrorServer
from migrator.guest.vm import SharedVM, create_dest_memory

log = logging.getLogger(__name__)

MIRROR_CONNECT_S = 10.0       # the guest's disk thread looks for the socket every few ms
_NONZERO_BATCH = 16384        # sectors read at once to find the zero ones (64 MiB)


class SharedDiskVM(SharedVM):
    def __init__(self, vm: str, tag: str, disk: Path, *, mirrored: bool = False,
                 **kwargs: Any) -> None:
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


def source_vm(vm: str, tag: str, disk: str | None, storage: str, **kwargs: Any) -> SharedVM:
    """The engine's VM at the source: with a disk image, memory and disk (mirrored when
    ``storage`` is write-blocking); shared storage or no disk: the memory only."""
    if disk is None or storage == "shared":
        return SharedVM(vm, tag, **kwargs)
    return SharedDiskVM(vm, tag, Path(disk), mirrored=storage == "write-blocking", **kwargs)


def dest_disk(path: str | None, params_json: str | None) -> tuple[Path, DiskParams] | None:
    """``--disk``/``--disk-params`` of the destination migrator, checked (ConfigError)."""
    if path is None and params_json is None:
        return None
    if path is None or params_json is None:
        raise ConfigError("--disk", path, "--disk and --disk-params together")
    try:
        raw = json.loads(params_json)
    except json.JSONDecodeError as exc:
        raise ConfigError("--disk-params", params_json, f"a JSON mapping ({exc})") from exc
    params = parse_disk(raw, "--disk-params")
    assert params is not None
    return Path(path), params


class DestImage:
    """The destination's memory image and, for a VM with a disk, its disk image, as one page
    array ``pages``; ``unlink`` removes both (a failed migration leaves nothing)."""

    def __init__(self, memory: GuestMemory, disk: Path | None) -> None:
        self.memory, self.disk = memory, disk
        self.joined = JoinedImage([memory.ram_path, disk]) if disk is not None else None

    @property
    def pages(self) -> np.ndarray:
        return self.joined.pages if self.joined is not None else self.memory.pages

    def close(self) -> None:
        if self.joined is not None:
            self.joined.close()
        self.memory.close()

    def unlink(self) -> None:
        self.memory.unlink()
        if self.disk is not None:
            remove_disk(self.disk)


def create_dest_image(vm: str, tag: str, npages: int,
                      disk: tuple[Path, DiskParams] | None) -> DestImage:
    """The destination's image for ``npages`` pages in all: the memory, then the disk's
    sectors in a new sparse image (with its dirty log: the guest goes on marking it there)."""
    if disk is None:
        return DestImage(create_dest_memory(vm, tag, npages), None)
    path, params = disk
    mem_pages = npages - params.sectors
    if mem_pages < 1:
        raise ValueError(f"the source announced {npages} pages, fewer than the disk's "
                         f"{params.sectors} sectors")
    create_disk(path, params, fill=False, tracking=True)
    try:
        return DestImage(create_dest_memory(vm, tag, mem_pages), path)
    except BaseException:
        remove_disk(path)
        raise
