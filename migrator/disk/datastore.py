"""The datastore: a directory per hypervisor host holding its VMs' disks as sparse raw images.

Layout under ``datastore_root()``::

    <root>/<host>/wanmig-<vm>-<tag>.disk         the image, ``size`` bytes, sparse
    <root>/<host>/wanmig-<vm>-<tag>.disk.dirty   its dirty log, one byte per 4 KiB sector, the
                                                 layout of ``migrator.guest.dirtylog.DirtyLog``
                                                 (tracked disks only)

The root is ``WANMIG_DATASTORE``, else ``/var/tmp/wanmig-datastore``: a disk file system, not
tmpfs, because the migrators map the image (``migrator.guest.joined``) and on tmpfs reading a
hole through a mapping allocates it (measured here: 64 MiB of holes read through a mapping
became 64 MiB allocated on /dev/shm, nothing on ext4), so a sparse disk would fill up as it
is hashed.  Writes land in the page cache (no fsync: the datastore's durability is not what
is measured).  Only allocated data travels in a migration: ``allocated_sectors`` asks the file
system for its data extents (SEEK_DATA/SEEK_HOLE) and never reads a hole.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from pathlib import Path

import numpy as np

from ground.config import check_name
from migrator.disk.blocks import make_block
from migrator.disk.params import SECTOR_BYTES, DiskParams

log = logging.getLogger(__name__)

ROOT_ENV = "WANMIG_DATASTORE"
DEFAULT_ROOT = "/var/tmp/wanmig-datastore"
PREFIX = "wanmig-"
SUFFIX = ".disk"
DIRTY_SUFFIX = ".dirty"
NAME_MAX = 16                  # vm, tag and host: short lowercase names, safe in file names
_FILL_BATCH = 64               # blocks per os.pwritev when filling


def datastore_root() -> Path:
    """Where the hypervisors' datastores live (every process of one VM must see the same)."""
    explicit = os.environ.get(ROOT_ENV)
    if explicit:
        return Path(explicit)
    return Path(DEFAULT_ROOT)


def disk_path(host: str, vm: str, tag: str) -> Path:
    """``<root>/<host>/wanmig-<vm>-<tag>.disk``, each name checked (ConfigError naming it)."""
    check_name("host", host, NAME_MAX)
    check_name("vm", vm, NAME_MAX)
    check_name("tag", tag, NAME_MAX)
    return datastore_root() / host / f"{PREFIX}{vm}-{tag}{SUFFIX}"


def dirty_log_path(disk: Path) -> Path:
    """The disk's dirty log: ``<disk>.dirty``."""
    return Path(f"{disk}{DIRTY_SUFFIX}")


def _create_file(path: Path, size: int) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, size)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _fill(fd: int, params: DiskParams, salt: int) -> None:
    """Blocks 0..allocated_blocks-1 at sequence 0, in batches of one system call."""
    bs = params.block_bytes
    for first in range(0, params.allocated_blocks, _FILL_BATCH):
        last = min(first + _FILL_BATCH, params.allocated_blocks)
        blocks = [make_block(i, 0, bs, params.content, salt) for i in range(first, last)]
        written = os.pwritev(fd, blocks, first * bs)
        if written != (last - first) * bs:
            raise OSError(errno.EIO, f"short write filling blocks {first}..{last - 1}")


def create_disk(path: Path, params: DiskParams, salt: int = 0, *, fill: bool,
                tracking: bool = False) -> None:
    """A new sparse image of ``params.size_bytes`` at ``path`` (FileExistsError if there is one).

    ``fill``: write the initial data (blocks ``0..allocated_blocks-1`` at sequence 0; a source
    disk); without it the image is all holes (a destination's, before the copy).  ``tracking``:
    also create the empty dirty log beside it.  On any failure nothing is left behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    made: list[Path] = []
    try:
        fd = _create_file(path, params.size_bytes)
        made.append(path)
        try:
            if fill:
                _fill(fd, params, salt)
        finally:
            os.close(fd)
        if tracking:
            os.close(_create_file(dirty_log_path(path), params.sectors))
            made.append(dirty_log_path(path))
    except BaseException:
        for p in made:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        raise
    log.debug("created disk %s (%d bytes, %d blocks filled, tracking=%s)", path,
              params.size_bytes, params.allocated_blocks if fill else 0, tracking)


def allocated_sectors(path: Path) -> np.ndarray:
    """Sorted indices (int64) of the 4 KiB sectors that hold data, from the file's data extents
    (never reading a hole).  A partly allocated sector counts as allocated."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        ranges = []
        pos = 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:      # no data after pos
                    break
                raise
            end = os.lseek(fd, start, os.SEEK_HOLE)
            ranges.append(np.arange(start // SECTOR_BYTES, -(-end // SECTOR_BYTES),
                                    dtype=np.int64))
            pos = end
    finally:
        os.close(fd)
    if not ranges:
        return np.empty(0, dtype=np.int64)
    return np.unique(np.concatenate(ranges))


def remove_disk(path: Path) -> None:
    """The image and its dirty log (either may be missing), then its host directory if empty."""
    path = Path(path)
    for p in (path, dirty_log_path(path)):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    with contextlib.suppress(OSError):        # not empty, or already gone
        path.parent.rmdir()


def leftover_disks() -> list[Path]:
    """Every image and dirty log of ours under the datastore root (for ``wanmig clean``)."""
    root = datastore_root()
    if not root.is_dir():
        return []
    return sorted(p for host in root.iterdir() if host.is_dir() for p in host.iterdir()
                  if p.name.startswith(PREFIX)
                  and (p.name.endswith(SUFFIX) or p.name.endswith(SUFFIX + DIRTY_SUFFIX)))


def remove_empty_host_dirs() -> list[Path]:
    """Host directories of the datastore left empty, and the default root if it is then empty
    (a root named by ``WANMIG_DATASTORE`` is the user's and stays); removed, and returned."""
    root = datastore_root()
    if not root.is_dir():
        return []
    removed = []
    for host in sorted(root.iterdir()):
        if host.is_dir() and not any(host.iterdir()):
            with contextlib.suppress(OSError):
                host.rmdir()
                removed.append(host)
    if str(root) == DEFAULT_ROOT and not any(root.iterdir()):
        with contextlib.suppress(OSError):
            root.rmdir()
            removed.append(root)
    return removed


def open_files() -> set[str]:
    """Paths some process has open or mapped (/proc/<pid>/fd and /proc/<pid>/maps)."""
    paths: set[str] = set()
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        with contextlib.suppress(OSError):
            paths.add(os.readlink(fd))
    for maps in Path("/proc").glob("[0-9]*/maps"):
        with contextlib.suppress(OSError):
            paths.update(line.split(None, 5)[-1] for line in maps.read_text().splitlines()
                         if line.count(" ") >= 5 and "/" in line)
    return paths


def clean_disks(include_live: bool = False) -> list[str]:
    """Disk images (and dirty logs) left in the datastore by crashed runs; those some process
    still has open or mapped (a running guest, migrator or NBD server) are kept unless
    ``include_live``; then empty host folders."""
    found = leftover_disks()
    busy = set() if include_live else open_files()
    actions = []
    for path in found:
        if str(path) in busy:
            actions.append(f"kept disk {path}: still open in a process")
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            actions.append(f"removed disk {path}")
    return actions + [f"removed datastore folder {p}" for p in remove_empty_host_dirs()]
