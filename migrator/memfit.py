"""Whether a VM's memory fits on the machine that holds it: the arithmetic (pure) and the two
readings it needs (``read_host_memory``: MemAvailable, the free space of the images' folder).

Why two copies: the testbed's hypervisors share this one kernel, so during a migration the
source image and the destination image both live in the images' folder (a tmpfs, /dev/shm),
and a tmpfs page is RAM. ``memory: 15GiB`` on a 23 GiB machine passes any per-VM bound and
then fails half-way, when the destination image is written; it is refused before anything
starts instead, naming the key, the value and the largest memory that fits.

What must fit (``Footprint.need``):

* in the images' folder: the images (each its RAM; the source's dirty log, one byte per page,
  and its control block);
* in MemAvailable: the same bytes (a tmpfs is RAM; when the images are process memory, as with
  the in-process loopback guest, they are counted here only), plus the XBZRLE caches when the
  codec is ``xbzrle`` (one per data stream at each end, ``policy.xbzrle_cache_mib`` each, for as
  many streams as the adaptation may open), plus ``PROCESS_HEADROOM`` for the processes
  themselves (the guest, both migrators, the controller, the delay lines: Python processes of
  tens of MiB each).

A reading that is missing (no /proc/meminfo, no such folder) is not checked: None, never a guess.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ground.config import ConfigError
from migrator.core.policy import MigrationPolicy, stream_ceiling
from migrator.memory.pages import PAGE_SIZE

MIB = 1 << 20
GIB = 1 << 30
PROCESS_HEADROOM = 512 * MIB
CONTROL_BYTES = 4096            # migrator.guest.control.CONTROL_SIZE, one per tracked image


@dataclass(frozen=True)
class HostMemory:
    """What this machine can hold now; None where it could not be read."""

    available_bytes: int | None     # /proc/meminfo MemAvailable
    shm_free_bytes: int | None      # free space of the images' folder (statvfs f_bavail)
    shm_dir: str = "/dev/shm"


@dataclass(frozen=True)
class Need:
    shm_bytes: int                  # in the images' folder
    ram_bytes: int                  # in MemAvailable (the images included)


@dataclass(frozen=True)
class Footprint:
    """How a migration on this machine uses memory besides the VM's own bytes."""

    images: int = 2                 # source and destination
    in_shm: bool = True             # the images are tmpfs files (False: process memory)
    cache_bytes: int = 0            # XBZRLE caches, both ends together
    headroom_bytes: int = PROCESS_HEADROOM

    def need(self, memory_bytes: int) -> Need:
        npages = memory_bytes // PAGE_SIZE
        images = self.images * memory_bytes + npages + CONTROL_BYTES    # + dirty log, control
        return Need(shm_bytes=images if self.in_shm else 0,
                    ram_bytes=images + self.cache_bytes + self.headroom_bytes)

    def largest(self, host: HostMemory) -> int | None:
        """The largest memory (whole pages) whose need fits ``host``; None if nothing is
        known; 0 if not even one page fits."""
        fixed = self.need(0)
        per_page = self.images * PAGE_SIZE + 1
        bounds = []
        if host.available_bytes is not None:
            bounds.append((host.available_bytes - fixed.ram_bytes) // per_page)
        if self.in_shm and host.shm_free_bytes is not None:
            bounds.append((host.shm_free_bytes - fixed.shm_bytes) // per_page)
        return max(0, min(bounds)) * PAGE_SIZE if bounds else None


def footprint(policy: MigrationPolicy, *, in_shm: bool = True) -> Footprint:
    """The footprint of a migration with ``policy``: XBZRLE caches for as many data streams as
    it may open (``stream_ceiling``) at both ends, if its codec is xbzrle (the adaptive choice
    never picks it)."""
    streams = stream_ceiling(policy.streams)
    caches = 2 * streams * policy.xbzrle_cache_mib * MIB if policy.codec == "xbzrle" else 0
    return Footprint(in_shm=in_shm, cache_bytes=caches)


def size_text(n: int) -> str:
    """Bytes said in GiB (one decimal) or whole MiB."""
    return f"{n / GIB:.1f} GiB" if n >= GIB else f"{n // MIB} MiB"


def check_fits(path: str, value: Any, memory_bytes: int, fp: Footprint,
               host: HostMemory) -> None:
    """ConfigError naming ``path`` and ``value`` unless ``memory_bytes`` fits ``host``."""
    need = fp.need(memory_bytes)
    over = []
    if host.available_bytes is not None and need.ram_bytes > host.available_bytes:
        over.append(f"MemAvailable is {size_text(host.available_bytes)}")
    if fp.in_shm and host.shm_free_bytes is not None and need.shm_bytes > host.shm_free_bytes:
        over.append(f"{host.shm_dir} has {size_text(host.shm_free_bytes)} free")
    if not over:
        return
    largest = fp.largest(host) or 0
    where = f"in {host.shm_dir}" if fp.in_shm else "in memory"
    extra = fp.cache_bytes + fp.headroom_bytes
    raise ConfigError(path, value,
                      f"at most {size_text(largest)} on this machine: {fp.images} copies of the "
                      f"memory ({where}, source and destination) + {size_text(extra)} (caches, "
                      f"processes) need {size_text(need.ram_bytes)}, and {' and '.join(over)}")


# --- the readings (adapter) ----------------------------------------------------------------------

def mem_available(meminfo: str = "/proc/meminfo") -> int | None:
    """MemAvailable in bytes; None if it cannot be read."""
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def shm_free(folder: str | Path) -> int | None:
    """Bytes an unprivileged writer may still put in ``folder``'s filesystem; None if unknown."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def read_host_memory(shm_dir: str | Path, meminfo: str = "/proc/meminfo") -> HostMemory:
    return HostMemory(available_bytes=mem_available(meminfo), shm_free_bytes=shm_free(shm_dir),
                      shm_dir=str(shm_dir))
