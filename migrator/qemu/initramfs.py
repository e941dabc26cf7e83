"""The guest's initramfs, pure: which kernel modules to load in which order, and the archive.

* ``module_order`` reads a kernel's ``modules.dep`` (``path: dep dep ...``, every dependency of
  a module listed, paths relative to ``/lib/modules/<release>``) and returns the modules to load
  for the wanted ones, each after everything it needs: the virtio-net-pci NIC needs
  ``virtio_pci`` (the PCI transport) and ``virtio_net`` (the driver), which pull in virtio,
  virtio_ring, the PCI transport's two device libraries, failover and net_failover.
* ``newc_archive`` writes a ``newc`` cpio archive (what the kernel unpacks into its rootfs)
  from ``Entry`` values: regular files, directories and symlinks, owned by root, with a fixed
  modification time, so the same inputs give the same bytes; ``gzip_archive`` compresses it.
"""

from __future__ import annotations

import gzip
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

NIC_MODULES = ("virtio_pci", "virtio_net")
_SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")


class ModuleError(ValueError):
    """A wanted module, or one it depends on, is not in modules.dep."""


def module_name(path: str) -> str:
    """``kernel/drivers/net/virtio_net.ko`` -> ``virtio_net`` (dashes read as underscores)."""
    base = path.rsplit("/", 1)[-1]
    for suffix in _SUFFIXES:
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    return base.replace("-", "_")


def parse_modules_dep(text: str) -> dict[str, list[str]]:
    """modules.dep as ``{path: [dependency paths]}``."""
    deps: dict[str, list[str]] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        path, sep, rest = line.partition(":")
        if not sep or not path.strip():
            raise ModuleError(f"modules.dep line {lineno}: no 'path:' in {line[:80]!r}")
        deps[path.strip()] = rest.split()
    return deps


def module_order(modules_dep: str, wanted: Sequence[str]) -> list[str]:
    """Paths of ``wanted`` and everything they need, each after its dependencies, no repeats."""
    deps = parse_modules_dep(modules_dep)
    by_name = {module_name(path): path for path in deps}
    order: list[str] = []
    visiting: set[str] = set()

    def visit(path: str, needed_by: str) -> None:
        if path in order:
            return
        if path not in deps:
            raise ModuleError(f"{path} (needed by {needed_by}) is not in modules.dep")
        if path in visiting:
            raise ModuleError(f"modules.dep has a dependency cycle through {path}")
        visiting.add(path)
        for dep in deps[path]:
            visit(dep, path)
        visiting.discard(path)
        order.append(path)

    for name in wanted:
        key = name.replace("-", "_")
        if key not in by_name:
            raise ModuleError(f"module {name} is not in modules.dep (built in, or another "
                              "kernel?)")
        visit(by_name[key], name)
    return order


@dataclass(frozen=True)
class Entry:
    """One archive member: a file (``data``), a directory (``data`` None, ``link`` None) or a
    symlink (``link``, its target)."""

    path: str
    mode: int = 0o644
    data: bytes | None = None
    link: str | None = None

    def kind_mode(self) -> int:
        if self.link is not None:
            return stat.S_IFLNK | 0o777
        if self.data is None:
            return stat.S_IFDIR | (self.mode & 0o7777)
        return stat.S_IFREG | (self.mode & 0o7777)

    def body(self) -> bytes:
        if self.link is not None:
            return self.link.encode()
        return self.data or b""


def _header(ino: int, mode: int, nlink: int, size: int, name: bytes, mtime: int) -> bytes:
    fields = (ino, mode, 0, 0, nlink, mtime, size, 0, 0, 0, 0, len(name) + 1, 0)
    return b"070701" + b"".join(b"%08X" % f for f in fields)


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 4)


def newc_archive(entries: Iterable[Entry], mtime: int = 0) -> bytes:
    """The entries as a newc cpio archive (directories must precede what they hold)."""
    out = bytearray()
    ino = 0
    for ino, entry in enumerate(entries, 1):
        path = entry.path.strip("/")
        if not path or ".." in path.split("/"):
            raise ValueError(f"bad archive path {entry.path!r}")
        body, name = entry.body(), path.encode() + b"\0"
        nlink = 2 if entry.data is None and entry.link is None else 1
        head = _header(ino, entry.kind_mode(), nlink, len(body), name[:-1], mtime)
        out += head + name + _pad(len(head) + len(name)) + body + _pad(len(body))
    trailer = b"TRAILER!!!\0"
    head = _header(ino + 1, 0, 1, 0, trailer[:-1], 0)
    out += head + trailer + _pad(len(head) + len(trailer))
    return bytes(out)


def gzip_archive(archive: bytes) -> bytes:
    """``archive`` gzip-compressed with no timestamp in the header (reproducible)."""
    return gzip.compress(archive, compresslevel=6, mtime=0)


def read_newc(archive: bytes) -> list[tuple[str, int, bytes]]:
    """(path, mode, body) of every member but the trailer: a reader for checking archives."""
    out, at = [], 0
    while True:
        if archive[at:at + 6] != b"070701":
            raise ValueError(f"no newc header at offset {at}")
        fields = [int(archive[at + 6 + 8 * i: at + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name_at = at + 110
        name = archive[name_at:name_at + namesize - 1].decode()
        body_at = name_at + namesize + (-(110 + namesize) % 4)
        if name == "TRAILER!!!":
            return out
        out.append((name, mode, archive[body_at:body_at + size]))
        at = body_at + size + (-size % 4)
