"""QEMU's command line and the guest's kernel command line, pure.

``kernel_cmdline`` puts the workload (``migrator.memory.workload.WorkloadParams``), the seed,
the guest's address and its buffer size on the kernel command line as ``wanmig.<key>=<value>``
words, which the guest's init (``wanmig.ip``) and agent read; ``parse_kernel_cmdline`` reads
them back.  The agent's buffer is the guest's memory less a headroom (the kernel, the
unpacked initramfs, the page array, the agent's own tables and its store):
``buffer_mib(memory_mib)``; ``check_guest_memory`` refuses a memory below ``MIN_MEMORY_MIB``
(measured: see the constants) naming ``vm.memory``.

``qemu_argv`` is the whole command line of one QEMU.  What QEMU's migration needs identical on
both sides (machine, accelerator, CPU, memory size and backend id, kernel, initrd, command line,
NIC model and MAC) is ``machine_args`` of one ``Machine`` and comes first; only the RAM file,
the NIC's backend, the sockets, the console log and ``-incoming``/``-S`` differ per side.  The
RAM is ``memory-backend-file`` with ``share=on`` on a file under ``/dev/shm``
(``ram_path(vm, tag)``: ``wanmig-qemu-<vm>-<tag>.ram``), so the hypervisor can read and digest
it; whoever starts QEMU removes that file afterwards.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path

from ground.config import ConfigError
from migrator.memory.workload import WorkloadParams

QEMU = "qemu-system-x86_64"
ACCELS = ("kvm", "tcg")
SHM = Path("/dev/shm")
# Memory the agent's buffer leaves to the rest of the guest (``headroom_mib``).  Measured
# (2026-12-02, Debian's 6.1.0-57 kernel, this image, TCG): MemAvailable before the buffer is the
# memory less 71.5 MiB at 96, 70 at 128, 73 at 256, 85 at 512 and 147 at 1024 (the kernel keeps
# about 48 MiB for its image; what grows with the memory grows faster than linearly here).  A
# 256 MiB guest with a 176 MiB buffer (7 MiB left) was OOM-killed, a 128 MiB one with 48 (8 MiB
# left) was not; a 1024 MiB one with 858 ran with MemAvailable at 0.  So: the larger of 72 MiB
# and 48 MiB + an eighth of the memory, plus 16 MiB for the agent's tables, its store (at most
# 4 MiB) and the kernel's own needs: buffers of 8, 40, 160, 384 and 832 MiB at those sizes.
HEADROOM_FIXED_MIB = 72
HEADROOM_BASE_MIB = 48
HEADROOM_DIV = 8
HEADROOM_FREE_MIB = 16
MIN_MEMORY_MIB = 96                 # measured floor (boots, an 8 MiB buffer); smaller refused
MAX_MEMORY_MIB = 1 << 20
MAX_VCPUS = 64
CONSOLE_ARGS = ("console=ttyS0", "panic=-1", "quiet", "loglevel=3")
_MAC_RE = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_VM_RE = re.compile(r"[a-z][a-z0-9-]{0,31}")
PREFIX = "wanmig."


def check_guest_memory(memory_mib: object, path: str = "vm.memory") -> int:
    """``memory_mib`` as an int when a guest of that size boots and runs the agent."""
    if isinstance(memory_mib, bool) or not isinstance(memory_mib, int) \
            or not MIN_MEMORY_MIB <= memory_mib <= MAX_MEMORY_MIB:
        raise ConfigError(path, memory_mib, f"MiB, an integer from {MIN_MEMORY_MIB} (the "
                                            f"smallest guest that boots with its agent) to "
                                            f"{MAX_MEMORY_MIB}")
    return memory_mib


def buffer_mib(memory_mib: int) -> int:
    """The agent's buffer in a guest of ``memory_mib``: the memory less the headroom."""
    memory_mib = check_guest_memory(memory_mib)
    return memory_mib - headroom_mib(memory_mib)


def headroom_mib(memory_mib: int) -> int:
    """What a guest of ``memory_mib`` needs besides the agent's buffer (see the constants)."""
    kernel = max(HEADROOM_FIXED_MIB, HEADROOM_BASE_MIB + memory_mib // HEADROOM_DIV)
    return kernel + HEADROOM_FREE_MIB


def check_address(ip: object, prefix: object, path: str = "vm.ip") -> tuple[str, int]:
    """(ip, prefix) when ``ip`` is an IPv4 host address and ``prefix`` 1..32."""
    if isinstance(prefix, bool) or not isinstance(prefix, int) or not 1 <= prefix <= 32:
        raise ConfigError(f"{path}.prefix", prefix, "a prefix length from 1 to 32")
    try:
        addr = ipaddress.IPv4Address(ip)   # type: ignore[arg-type]
    except (ipaddress.AddressValueError, ValueError, TypeError):
        raise ConfigError(path, ip, "an IPv4 address like 10.1.9.1") from None
    if addr.is_multicast or addr.is_unspecified or str(addr) == "255.255.255.255":
        raise ConfigError(path, ip, "a unicast IPv4 host address")
    return str(addr), prefix


def kernel_cmdline(workload: WorkloadParams, seed: int, ip: str, prefix: int,
                   buf_mib: int) -> str:
    """The guest kernel's command line: the console, then the ``wanmig.*`` parameters."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
        raise ConfigError("seed", seed, "an integer from 0 to 2**31-1")
    if isinstance(buf_mib, bool) or not isinstance(buf_mib, int) or buf_mib < 1:
        raise ConfigError("vm.buf_mib", buf_mib, "a positive integer (MiB)")
    ip, prefix = check_address(ip, prefix)
    w = workload
    words = {"ip": f"{ip}/{prefix}", "buf_mib": buf_mib, "rate": repr(w.dirty_rate_mibps),
             "ws": repr(w.working_set_frac), "skew": w.skew, "zipf_s": repr(w.zipf_s),
             "burst_period": repr(w.burst_period_s), "burst_duty": repr(w.burst_duty),
             "write_bytes": w.write_bytes or 0, "content": w.content, "seed": seed}
    return " ".join([*CONSOLE_ARGS, *(f"{PREFIX}{k}={v}" for k, v in words.items())])


@dataclass(frozen=True)
class GuestParams:
    """What ``kernel_cmdline`` put on a command line, read back."""

    workload: WorkloadParams
    seed: int
    ip: str
    prefix: int
    buf_mib: int


def parse_kernel_cmdline(text: str) -> GuestParams:
    """The ``wanmig.*`` words of a kernel command line; ConfigError naming a bad one."""
    words: dict[str, str] = {}
    for word in text.split():
        if word.startswith(PREFIX):
            key, sep, value = word[len(PREFIX):].partition("=")
            if not sep:
                raise ConfigError(f"cmdline.{key}", word, "wanmig.<key>=<value>")
            words[key] = value

    def take(key: str, kind: type) -> object:
        if key not in words:
            raise ConfigError(f"cmdline.{key}", None, f"a wanmig.{key}= word")
        try:
            return kind(words.pop(key))
        except ValueError:
            raise ConfigError(f"cmdline.{key}", words.get(key), kind.__name__) from None

    ip, _, prefix = str(take("ip", str)).partition("/")
    write_bytes = take("write_bytes", int)
    params = GuestParams(
        workload=WorkloadParams(
            dirty_rate_mibps=take("rate", float), working_set_frac=take("ws", float),
            skew=take("skew", str), zipf_s=take("zipf_s", float),
            burst_period_s=take("burst_period", float), burst_duty=take("burst_duty", float),
            write_bytes=write_bytes or None, content=take("content", str)),
        seed=int(take("seed", int)), ip=ip, prefix=int(prefix) if prefix.isdigit() else -1,
        buf_mib=int(take("buf_mib", int)))
    if words:
        raise ConfigError(f"cmdline.{next(iter(words))}", words, "no other wanmig.* words")
    check_address(params.ip, params.prefix, "cmdline.ip")
    return params


def ram_path(vm: str, tag: str) -> Path:
    """The RAM file of VM ``vm`` on side ``tag`` (``src``, ``dst``, a test's name)."""
    for key, value in (("vm.name", vm), ("tag", tag)):
        if not isinstance(value, str) or not _VM_RE.fullmatch(value):
            raise ConfigError(key, value, "1 to 32 of a-z 0-9 -, starting with a letter")
    return SHM / f"wanmig-qemu-{vm}-{tag}.ram"


def _opt(value: object) -> str:
    """A value inside a QEMU option list: commas doubled."""
    return str(value).replace(",", ",,")


@dataclass(frozen=True)
class Machine:
    """What both sides of a migration run identically."""

    memory_mib: int
    vcpus: int
    accel: str
    kernel: Path
    initrd: Path
    append: str
    mac: str

    def __post_init__(self) -> None:
        check_guest_memory(self.memory_mib)
        if isinstance(self.vcpus, bool) or not isinstance(self.vcpus, int) \
                or not 1 <= self.vcpus <= MAX_VCPUS:
            raise ConfigError("vm.vcpus", self.vcpus, f"an integer from 1 to {MAX_VCPUS}")
        if self.accel not in ACCELS:
            raise ConfigError("vm.accel", self.accel, f"one of {', '.join(ACCELS)}")
        if not isinstance(self.mac, str) or not _MAC_RE.fullmatch(self.mac) \
                or int(self.mac[:2], 16) & 1:
            raise ConfigError("vm.mac", self.mac, "a unicast MAC like 52:54:00:12:34:56 "
                                                  "(lower case)")


def machine_args(m: Machine) -> list[str]:
    """The arguments both sides must share (QEMU refuses a migration between others)."""
    return ["-nodefaults", "-no-user-config", "-display", "none",
            "-machine", "pc,memory-backend=ram", "-accel", m.accel, "-cpu", "qemu64",
            "-smp", str(m.vcpus), "-m", f"{m.memory_mib}M",
            "-kernel", str(m.kernel), "-initrd", str(m.initrd), "-append", m.append,
            "-device", f"virtio-net-pci,netdev=n0,mac={m.mac},romfile="]


@dataclass(frozen=True)
class TapNic:
    """A tap: an open file descriptor QEMU inherits (``fd``), or a name QEMU creates it by."""

    fd: int | None = None
    ifname: str | None = None

    def args(self) -> list[str]:
        if (self.fd is None) == (self.ifname is None):
            raise ConfigError("nic", self, "a tap by fd or by ifname (exactly one)")
        if self.fd is not None:
            return ["-netdev", f"tap,id=n0,fd={int(self.fd)}"]
        return ["-netdev", f"tap,id=n0,ifname={_opt(self.ifname)},script=no,downscript=no"]


@dataclass(frozen=True)
class UserNic:
    """QEMU's user-mode network (tests): the guest is 10.0.2.15/24; ``forwards`` are
    (protocol, host port, guest port) forwarded from 127.0.0.1."""

    forwards: tuple[tuple[str, int, int], ...] = field(default_factory=tuple)
    guest_ip: str = "10.0.2.15"
    prefix: int = 24

    def args(self) -> list[str]:
        fwd = "".join(f",hostfwd={proto}:127.0.0.1:{host}-:{guest}"
                      for proto, host, guest in self.forwards)
        return ["-netdev", f"user,id=n0,net=10.0.2.0/24{fwd}"]


@dataclass(frozen=True)
class Side:
    """What one side (one QEMU process) has of its own."""

    ram: Path
    nic: TapNic | UserNic
    qmp: Path
    console: Path
    location: Path
    incoming: bool = False
    paused: bool = False


def qemu_argv(m: Machine, side: Side, qemu: str = QEMU) -> list[str]:
    """The whole command line: ``machine_args``, then this side's RAM file, NIC backend,
    QMP and location sockets, console log, and ``-incoming defer`` / ``-S`` when asked."""
    argv = [qemu, *machine_args(m),
            "-object", f"memory-backend-file,id=ram,size={m.memory_mib}M,"
                       f"mem-path={_opt(side.ram)},share=on",
            *side.nic.args(),
            "-chardev", f"socket,id=qmp,path={_opt(side.qmp)},server=on,wait=off",
            "-mon", "chardev=qmp,mode=control",
            "-serial", f"file:{side.console}",
            "-chardev", f"socket,id=loc,path={_opt(side.location)},server=on,wait=off",
            "-serial", "chardev:loc"]
    if side.incoming:
        argv += ["-incoming", "defer"]
    if side.paused:
        argv.append("-S")
    return argv
