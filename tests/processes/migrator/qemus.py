"""Two QEMUs on this machine for the migration driver's process tests: no guest OS, but a guest
that dirties memory all the time, so QEMU's dirty log has something to find.

The guest is a multiboot "kernel" of 22 bytes of x86 code made here (``dirtier``): QEMU's
``-kernel`` loader enters it in 32-bit protected mode, and it adds one to the first word of
``pages`` consecutive pages from 4 MiB on, over and over. Writes made from outside through the
shared RAM file are invisible to QEMU's dirty log (TCG tracks only the guest's own stores), so
the test fills RAM through the file only before the source starts. Nothing here needs root.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import struct
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from migrator.qemu.qmp import Monitor, QmpError

QEMU = "qemu-system-x86_64"
MB_MAGIC, MB_FLAGS, MB_LOAD = 0x1BADB002, 0x00010000, 0x100000
DIRTY_BASE = 0x400000           # 4 MiB: above the kernel and multiboot's info
FILL_OFFSET = 16 << 20          # the pattern written into the source's RAM before it starts


def needs_qemu() -> None:
    if shutil.which(QEMU) is None:
        pytest.skip(f"{QEMU} is not installed (make setup installs qemu-system-x86)")


def dirtier(pages: int) -> bytes:
    """A multiboot (a.out kludge) image whose code loops: ``inc dword [esi]`` on ``pages``
    pages from ``DIRTY_BASE``, 4096 bytes apart."""
    code = (b"\xbe" + struct.pack("<I", DIRTY_BASE)       # 0: mov esi, DIRTY_BASE
            + b"\xb9" + struct.pack("<I", pages)         # 5: mov ecx, pages
            + b"\xff\x06"                                # 10: inc dword [esi]
            + b"\x81\xc6\x00\x10\x00\x00"                # 12: add esi, 4096
            + b"\xe2\xf6"                                # 18: loop 10
            + b"\xeb\xea")                               # 20: jmp 0
    header = struct.pack("<8I", MB_MAGIC, MB_FLAGS, (-(MB_MAGIC + MB_FLAGS)) & 0xFFFFFFFF,
                         MB_LOAD, MB_LOAD, 0, 0, MB_LOAD + 32)
    return header + code


def free_udp_port() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    return s


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Pair:
    """The two QEMUs, their QMP sockets and RAM files; ``nic`` receives the destination NIC's
    frames (a ``-netdev socket,udp=`` peer), so its RARPs can be timed."""

    tmp: Path
    src_qmp: Path
    dst_qmp: Path
    src_ram: Path
    dst_ram: Path
    port: int
    nic: socket.socket
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return f"tcp:127.0.0.1:{self.port}"


def _argv(name: str, ram: Path, qmp: Path, kernel: Path, mem_mib: int, nic_port: int,
          extra: list[str]) -> list[str]:
    return [QEMU, "-machine", "pc,memory-backend=ram0", "-m", f"{mem_mib}M", "-nodefaults",
            "-display", "none", "-accel", "tcg", "-name", name,
            "-object", f"memory-backend-file,id=ram0,size={mem_mib}M,mem-path={ram},share=on",
            "-kernel", str(kernel),
            "-netdev", f"socket,id=n0,udp=127.0.0.1:{nic_port},localaddr=127.0.0.1:0",
            "-device", "e1000,netdev=n0,mac=52:54:00:12:34:56",
            "-qmp", f"unix:{qmp},server=on,wait=off", *extra]


@contextmanager
def qemu_pair(tmp: Path, *, mem_mib: int = 128, hot_pages: int = 2048, fill_mib: int = 32
              ) -> Iterator[Pair]:
    """A source QEMU running the dirtier (its RAM file filled with ``fill_mib`` MiB of a
    pattern first) and a destination waiting with ``-incoming defer -S``; both stopped and
    their files removed on the way out, whatever happened."""
    needs_qemu()
    shm = Path(os.environ.get("WANMIG_SHM_DIR", "/dev/shm"))
    tag = secrets.token_hex(4)
    kernel = tmp / "dirtier.bin"
    kernel.write_bytes(dirtier(hot_pages))
    nic = free_udp_port()
    pair = Pair(tmp=tmp, src_qmp=tmp / "src.qmp", dst_qmp=tmp / "dst.qmp",
                src_ram=shm / f"wanmig-test-{tag}-src", dst_ram=shm / f"wanmig-test-{tag}-dst",
                port=free_tcp_port(), nic=nic)
    try:
        with open(pair.src_ram, "wb") as f:
            f.truncate(mem_mib << 20)
            f.seek(FILL_OFFSET)
            block = bytes(range(256)) * 16                 # a 4 KiB page, never all zero
            for i in range((fill_mib << 20) // len(block)):
                f.write(struct.pack("<I", i) + block[4:])
        discard = free_udp_port()                          # the source's frames go nowhere
        src_nic = discard.getsockname()[1]
        discard.close()
        pair.procs["src"] = subprocess.Popen(
            _argv("src", pair.src_ram, pair.src_qmp, kernel, mem_mib, src_nic, []),
            stdout=subprocess.DEVNULL, stderr=open(tmp / "src.log", "w"))  # noqa: SIM115
        pair.procs["dst"] = subprocess.Popen(
            _argv("dst", pair.dst_ram, pair.dst_qmp, kernel, mem_mib, nic.getsockname()[1],
                  ["-incoming", "defer", "-S"]),
            stdout=subprocess.DEVNULL, stderr=open(tmp / "dst.log", "w"))  # noqa: SIM115
        yield pair
    finally:
        for p in pair.procs.values():
            if p.poll() is None:
                p.kill()
            p.wait(10)
        nic.close()
        for path in (pair.src_ram, pair.dst_ram):
            path.unlink(missing_ok=True)


def status(qmp: Path) -> str:
    """A QEMU's run state (``query-status``)."""
    mon = Monitor(qmp, 5.0, name=qmp.stem)
    try:
        return str(mon.cmd("query-status")["status"])
    except QmpError as exc:
        return f"unreachable: {exc}"
    finally:
        mon.close()
