"""``vm.disk``: how big the VM's disk is, how much of it holds data, and how the guest uses it.

```yaml
disk:
  size: 1GiB              # bytes or "<n>B|KiB|MiB|GiB"; a whole number of blocks (required)
  allocated: 512MiB       # written at creation (the datastore's initial fill); default size / 2
  block_bytes: 64KiB      # one guest I/O; a multiple of 4096 from 4 KiB to 1 MiB
  workload:
    write_rate_mibps: 1   # guest writes, MiB/s (>= 0)
    read_rate_mibps: 1    # guest reads, MiB/s (>= 0)
    working_set_frac: 0.1 # the blocks the guest touches, a fraction of all blocks, (0, 1]
    skew: zipf            # uniform | zipf over the working set
    zipf_s: 1.0
    content: text         # text (compressible, like memory pages) | random (incompressible)
```

Sectors are 4 KiB (``PAGE_SIZE``, the migration's unit: a dirty sector is sent as a page is).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ground.config import ConfigError, Section, join
from ground.units import UNITS, parse_size
from migrator.memory.pages import PAGE_SIZE
from migrator.memory.workload import SKEWS
from migrator.memory.writes import CONTENTS

KEYS = ("size", "allocated", "block_bytes", "workload")
WORKLOAD_KEYS = ("write_rate_mibps", "read_rate_mibps", "working_set_frac", "skew", "zipf_s",
                 "content")
SECTOR_BYTES = PAGE_SIZE
DEFAULT_BLOCK = 64 * 1024
MAX_BLOCK = 1024 * 1024
MAX_DISK = 64 * 1024 ** 3       # a sparse file on this machine: a bound on typos, not on tmpfs


@dataclass(frozen=True)
class DiskParams:
    """A VM's disk, validated by ``parse_disk`` (every size a whole number of blocks)."""

    size_bytes: int
    allocated_bytes: int
    block_bytes: int = DEFAULT_BLOCK
    write_rate_mibps: float = 1.0
    read_rate_mibps: float = 1.0
    working_set_frac: float = 0.1
    skew: str = "zipf"
    zipf_s: float = 1.0
    content: str = "text"

    @property
    def sectors(self) -> int:
        """4 KiB sectors of the whole disk (the dirty log has one byte per sector)."""
        return self.size_bytes // SECTOR_BYTES

    @property
    def blocks(self) -> int:
        """Guest I/O blocks of the whole disk."""
        return self.size_bytes // self.block_bytes

    @property
    def allocated_blocks(self) -> int:
        """Blocks 0..allocated_blocks-1 hold data from the start (sequence number 0)."""
        return self.allocated_bytes // self.block_bytes

    @property
    def sectors_per_block(self) -> int:
        return self.block_bytes // SECTOR_BYTES

    def to_dict(self) -> dict:
        """The spec's own shape (``parse_disk(p.to_dict(), path) == p``), for meta.json."""
        return {
            "size": self.size_bytes, "allocated": self.allocated_bytes,
            "block_bytes": self.block_bytes,
            "workload": {"write_rate_mibps": self.write_rate_mibps,
                         "read_rate_mibps": self.read_rate_mibps,
                         "working_set_frac": self.working_set_frac, "skew": self.skew,
                         "zipf_s": self.zipf_s, "content": self.content},
        }


def _size(sec: Section, key: str, value: Any, block: int, upper: int, upper_text: str) -> int:
    expected = (f"a size in bytes (integer) or a string like '1GiB' (units: {', '.join(UNITS)}), "
                f"a multiple of block_bytes ({block}) from {0 if key == 'allocated' else block} "
                f"to {upper_text}")
    size = parse_size(value, sec.where(key), expected)
    lower = 0 if key == "allocated" else block
    if size % block or not lower <= size <= upper:
        raise ConfigError(sec.where(key), value, expected)
    return size


def parse_disk(raw: Any, path: str) -> DiskParams | None:
    """``vm.disk`` checked and resolved; None when there is no disk (``raw`` is None).

    Errors name the key (``vm.disk.workload.write_rate_mibps``), the value and what was expected.
    """
    if raw is None:
        return None
    sec = Section(raw, path, KEYS)
    block_expected = (f"a size in bytes (integer) or a string like '64KiB', a multiple of "
                      f"{PAGE_SIZE} from {PAGE_SIZE} to {MAX_BLOCK}")
    block = parse_size(sec.raw("block_bytes", DEFAULT_BLOCK), sec.where("block_bytes"),
                       block_expected)
    if block % PAGE_SIZE or not PAGE_SIZE <= block <= MAX_BLOCK:
        raise ConfigError(sec.where("block_bytes"), sec.raw("block_bytes"), block_expected)
    if not sec.has("size"):
        raise ConfigError(sec.where("size"), None, "a size like '1GiB' (this key is required)")
    size = _size(sec, "size", sec.raw("size"), block, MAX_DISK, f"{MAX_DISK // 1024 ** 3} GiB")
    default_alloc = size // 2 // block * block
    allocated = _size(sec, "allocated", sec.raw("allocated", default_alloc), block, size,
                      f"size ({size})")
    work = Section(sec.raw("workload"), join(path, "workload"), WORKLOAD_KEYS)
    return DiskParams(
        size_bytes=size, allocated_bytes=allocated, block_bytes=block,
        write_rate_mibps=work.number("write_rate_mibps", 1.0, minimum=0.0),
        read_rate_mibps=work.number("read_rate_mibps", 1.0, minimum=0.0),
        working_set_frac=work.number("working_set_frac", 0.1, above=0.0, maximum=1.0),
        skew=work.string("skew", "zipf", SKEWS),
        zipf_s=work.number("zipf_s", 1.0, above=0.0, maximum=10.0),
        content=work.string("content", "text", CONTENTS),
    )
