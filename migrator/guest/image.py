"""Guest memory as files in /dev/shm: the RAM image, and for a tracked image its dirty log and
control block, shared by the guest process, the launcher and the migrators.

Why plain ``mmap`` of /dev/shm files rather than ``multiprocessing.shared_memory``: the guest,
the launcher and the two migrators are unrelated processes (different network namespaces, one
filesystem), and ``shared_memory`` registers every segment with a per-process resource tracker
that unlinks it when an *attaching* process exits (Python 3.11), which would destroy the VM's
memory under the guest's feet.  A file opened with ``O_EXCL`` and mapped ``MAP_SHARED`` has one
owner by construction (whoever created it unlinks it), is visible under its name to
``wanmig clean``, and works with ``flock`` for the dirty log's atomic read-and-clear.

One memory image ``wanmig-<vm>-<tag>`` is up to three files:

* ``wanmig-<vm>-<tag>.ram``    ``npages * 4096`` bytes, seen as a ``(npages, 4096)`` uint8 array
  (created sparse: every page starts zero);
* ``wanmig-<vm>-<tag>.dirty``  the dirty log (``migrator.guest.dirtylog``), tracked images only;
* ``wanmig-<vm>-<tag>.ctl``    the control block (``migrator.guest.control``), tracked images only.

``WANMIG_SHM_DIR`` moves the files elsewhere (default /dev/shm); every process of one VM must
see the same value.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
from pathlib import Path

import numpy as np

from ground.config import ConfigError, check_name
from migrator.guest.control import CONTROL_SIZE, ControlBlock
from migrator.guest.dirtylog import DirtyLog
from migrator.memory.pages import PAGE_SIZE

log = logging.getLogger(__name__)

PREFIX = "wanmig-"
NAME_MAX = 16                 # vm and tag: short lowercase names, safe in file names
SUFFIXES = (".ram", ".dirty", ".ctl")
MAX_PAGES = 1 << 24           # 64 GiB: a bound on typos, not on the machine


def shm_dir() -> Path:
    return Path(os.environ.get("WANMIG_SHM_DIR", "/dev/shm"))


def image_name(vm: str, tag: str) -> str:
    """``wanmig-<vm>-<tag>`` after checking both names (ConfigError naming ``vm`` or ``tag``)."""
    check_name("vm", vm, NAME_MAX)
    check_name("tag", tag, NAME_MAX)
    return f"{PREFIX}{vm}-{tag}"


def _create_file(path: Path, size: int, populate: bool = False) -> None:
    """A new file of ``size`` zero bytes; ``populate``: its pages allocated now (else at first
    touch)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, size)
        if populate:
            try:
                os.posix_fallocate(fd, 0, size)
            except OSError as exc:
                raise OSError(exc.errno, f"{path}: {size} bytes of shared memory could not be "
                                         f"allocated ({exc.strerror}): is {path.parent} big "
                                         "enough?") from None
    finally:
        os.close(fd)


class GuestMemory:
    """One memory image, mapped in this process.  ``pages`` is the live shared array."""

    def __init__(self, vm: str, tag: str, *, owner: bool) -> None:
        self.vm, self.tag = vm, tag
        self.name = image_name(vm, tag)
        self.owner = owner            # created here: unlink() is this object's job
        base = shm_dir() / self.name
        self.ram_path = Path(f"{base}.ram")
        self.dirty_path = Path(f"{base}.dirty")
        self.ctl_path = Path(f"{base}.ctl")
        fd = os.open(self.ram_path, os.O_RDWR)
        try:
            size = os.fstat(fd).st_size
            if size == 0 or size % PAGE_SIZE:
                raise ValueError(f"{self.ram_path}: size {size} is not a positive multiple of "
                                 f"{PAGE_SIZE}")
            self._mm: mmap.mmap | None = mmap.mmap(fd, size, mmap.MAP_SHARED)
        finally:
            os.close(fd)
        self.npages = size // PAGE_SIZE
        self._pages: np.ndarray | None = np.frombuffer(self._mm, dtype=np.uint8).reshape(
            self.npages, PAGE_SIZE)
        self.dirty: DirtyLog | None = None
        self.control: ControlBlock | None = None
        try:
            if self.dirty_path.exists():
                self.dirty = DirtyLog(self.dirty_path)
                if self.dirty.npages != self.npages:
                    raise ValueError(f"{self.dirty_path}: {self.dirty.npages} pages, the RAM "
                                     f"has {self.npages}")
            if self.ctl_path.exists():
                self.control = ControlBlock(self.ctl_path)
        except BaseException:
            self.close()
            raise

    # --- construction ----------------------------------------------------------------------------

    @classmethod
    def create(cls, vm: str, tag: str, npages: int, *, tracking: bool,
               control: bool | None = None) -> GuestMemory:
        """New zeroed image; FileExistsError if any of its files exists (a crashed run: clean).
        ``tracking``: with a dirty log, and (unless ``control`` is False) a control block; a
        destination's image has the dirty log only: the guest switched onto it marks its writes
        there (so it can leave again) and keeps obeying the block it started on."""
        name = image_name(vm, tag)
        if isinstance(npages, bool) or not isinstance(npages, int) or not 1 <= npages <= MAX_PAGES:
            raise ConfigError("npages", npages, f"an integer from 1 to {MAX_PAGES}")
        base = shm_dir() / name
        wanted = [(".ram", npages * PAGE_SIZE)]
        control = tracking if control is None else control and tracking
        if tracking:
            wanted.append((".dirty", npages))
        if control:
            wanted.append((".ctl", CONTROL_SIZE))
        for suffix in SUFFIXES:
            if Path(f"{base}{suffix}").exists():
                raise FileExistsError(f"shared-memory segment {base}{suffix} already exists "
                                      "(left by a crashed run? 'wanmig clean' removes it)")
        made: list[Path] = []
        try:
            for suffix, size in wanted:
                path = Path(f"{base}{suffix}")
                _create_file(path, size, populate=control and suffix == ".ram")
                made.append(path)
            if control:
                ControlBlock.initialise(Path(f"{base}.ctl"))
            mem = cls(vm, tag, owner=True)
        except BaseException:
            for path in made:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            raise
        log.debug("created %s: %d pages, tracking %s", name, npages, tracking)
        return mem

    @classmethod
    def attach(cls, vm: str, tag: str) -> GuestMemory:
        """Map an existing image (FileNotFoundError naming the file if there is none)."""
        name = image_name(vm, tag)
        path = shm_dir() / f"{name}.ram"
        if not path.exists():
            raise FileNotFoundError(f"no guest memory {name}: {path} does not exist")
        return cls(vm, tag, owner=False)

    @staticmethod
    def exists(vm: str, tag: str) -> bool:
        return (shm_dir() / f"{image_name(vm, tag)}.ram").exists()

    # --- use -------------------------------------------------------------------------------------

    @property
    def pages(self) -> np.ndarray:
        if self._pages is None:
            raise ValueError(f"guest memory {self.name} is closed")
        return self._pages

    @property
    def tracking(self) -> bool:
        return self.dirty is not None

    def segment_paths(self) -> list[Path]:
        return [p for p in (self.ram_path, self.dirty_path, self.ctl_path) if p.exists()]

    def close(self) -> None:
        """Unmap (idempotent).  Views of ``pages`` still held elsewhere keep the mapping alive
        until they go; the files stay (see unlink)."""
        for part in (self.dirty, self.control):
            if part is not None:
                part.close()
        self._pages = None
        if self._mm is not None:
            mm, self._mm = self._mm, None
            try:
                mm.close()
            except BufferError:
                log.debug("%s: views still exported, unmapped when they are freed", self.name)

    def unlink(self) -> None:
        """Remove the files (idempotent); processes that mapped them keep their mapping."""
        remove_segments([p.name for p in (self.ram_path, self.dirty_path, self.ctl_path)])

    def __enter__(self) -> GuestMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GuestMemory({self.name!r}, npages={self.npages}, tracking={self.tracking})"


def leftover_segments() -> list[str]:
    """Names of every wanmig segment in the shared-memory directory (for ``wanmig clean``)."""
    directory = shm_dir()
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir()
                  if p.name.startswith(PREFIX) and p.name.endswith(SUFFIXES))


def remove_segments(names: list[str]) -> list[str]:
    """Unlink the named segments (names as ``leftover_segments`` gives them); returns the ones
    removed.  Names outside the wanmig namespace are refused, never removed."""
    removed = []
    for name in names:
        if "/" in name or not name.startswith(PREFIX) or not name.endswith(SUFFIXES):
            raise ValueError(f"not a wanmig segment name: {name!r} (expected "
                             f"{PREFIX}<vm>-<tag>{{{','.join(SUFFIXES)}}})")
        try:
            (shm_dir() / name).unlink()
            removed.append(name)
        except FileNotFoundError:
            pass
    return removed


def mapped_files() -> set[str]:
    """Base names of every file some process has mapped (from /proc/<pid>/maps)."""
    names: set[str] = set()
    for maps in Path("/proc").glob("[0-9]*/maps"):
        try:
            text = maps.read_text()
        except OSError:
            continue
        names.update(line.rsplit("/", 1)[-1] for line in text.splitlines() if "/" in line)
    return names


def clean_images(include_live: bool = False) -> list[str]:
    """VM memory images (/dev/shm/wanmig-*) left by crashed runs; images some process still
    maps (a running guest or migrator) are kept unless ``include_live``."""
    names = leftover_segments()
    in_use = set() if include_live else mapped_files() & set(names)
    removed = remove_segments([n for n in names if n not in in_use])
    actions = [f"removed VM memory {n}" for n in removed]
    actions += [f"kept VM memory {n}: still mapped by a process" for n in sorted(in_use)]
    return actions
