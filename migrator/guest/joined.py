"""One page array over several files: a VM's memory image followed by its disk image.

Why: the engine, the transport and the image digest work on one ``(npages, 4096)`` array;
a VM with a disk migrates both through them (``migrator.core.disk``), so each end maps its
memory file and its disk file back to back into one range of its address space, both
``MAP_SHARED``: a write through the array is a write to the file, and what the guest writes
with ``pwrite`` into the disk image is what the array reads. A sparse disk stays sparse: its
holes read as zeros without being allocated, as long as nothing writes them.

Python's ``mmap`` cannot place a mapping at an address, so this reserves the range with one
anonymous ``PROT_NONE`` mapping and maps each file over its part with ``MAP_FIXED`` (libc's
``mmap`` through ctypes); ``close`` unmaps the whole range. The array must not be used after
``close`` (the digest thread over it is stopped first by its owner).
"""

from __future__ import annotations

import ctypes
import mmap
import os
from pathlib import Path

import numpy as np

from migrator.memory.pages import PAGE_SIZE

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long)
_libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
_FAILED = ctypes.c_void_p(-1).value
_PROT_NONE = 0                  # not in Python's mmap module (Linux: 0)
_MAP_FIXED = 0x10               # Linux, every architecture Python runs on here


def _mmap(addr: int | None, size: int, prot: int, flags: int, fd: int) -> int:
    out = _libc.mmap(addr, size, prot, flags, fd, 0)
    if out in (None, _FAILED):
        err = ctypes.get_errno()
        raise OSError(err, f"mmap of {size} bytes: {os.strerror(err)}")
    return int(out)


class JoinedImage:
    """The files' pages, in order, as one ``(npages, PAGE_SIZE)`` uint8 array ``pages``;
    ``starts[i]`` is the first page of file ``i``."""

    def __init__(self, paths: list[Path]) -> None:
        sizes = [os.stat(p).st_size for p in paths]
        for path, size in zip(paths, sizes, strict=True):
            if size == 0 or size % PAGE_SIZE:
                raise ValueError(f"{path}: size {size} is not a positive multiple of "
                                 f"{PAGE_SIZE}")
        self.total = sum(sizes)
        self.starts = [sum(sizes[:i]) // PAGE_SIZE for i in range(len(sizes))]
        self._base: int | None = _mmap(None, self.total, _PROT_NONE,
                                       mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
        try:
            at = self._base
            for path, size in zip(paths, sizes, strict=True):
                fd = os.open(path, os.O_RDWR)
                try:
                    _mmap(at, size, mmap.PROT_READ | mmap.PROT_WRITE,
                          mmap.MAP_SHARED | _MAP_FIXED, fd)
                finally:
                    os.close(fd)
                at += size
        except BaseException:
            self.close()
            raise
        buf = (ctypes.c_uint8 * self.total).from_address(self._base)
        self._pages: np.ndarray | None = np.ctypeslib.as_array(buf).reshape(-1, PAGE_SIZE)

    @property
    def pages(self) -> np.ndarray:
        if self._pages is None:
            raise ValueError("joined image is closed")
        return self._pages

    def close(self) -> None:
        self._pages = None
        if self._base is not None:
            _libc.munmap(self._base, self.total)
            self._base = None

    def __enter__(self) -> JoinedImage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
