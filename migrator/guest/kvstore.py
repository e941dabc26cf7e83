"""The guest service's key-value store, kept entirely in guest memory.

Why in guest pages: the point of the emulated VM is that a migration which gets one byte wrong
is *visible*.  The store's only durable state is an append-only log in a reserved region at the
start of guest memory; the dictionary a process uses to answer GETs is rebuilt from those pages
(``KVStore.load``), which is exactly what the guest does after switching to the destination's
copy.  A record lost or damaged in transit is then a value a client cannot read back.

Region layout (big-endian), ``len(region) * 4096`` bytes:

* header, 16 bytes: magic ``b"WKV1"``, version u16 (1), 10 reserved bytes;
* records from offset 16: ``key_len u16, val_len u16, crc32 u32`` then key then value; the CRC
  covers the two lengths, the key and the value;
* the log ends at a header whose ``key_len`` is 0, or at the end of the region.

Every write marks the pages it touched through the ``on_write`` callback (page indices relative
to the region) after writing them, as the dirty log requires.  When the log is full the live
records are compacted in place; if they still do not fit, ``put`` raises ``KVFull`` and changes
nothing.  Keys are ``[A-Za-z0-9_.-]{1,64}``; values are 1 to 1024 printable ASCII characters
without spaces (0x21..0x7e).
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Callable, Iterator

import numpy as np

from migrator.memory.pages import PAGE_SIZE

MAGIC = b"WKV1"
VERSION = 1
_HEADER = struct.Struct(">4sH10x")
_REC = struct.Struct(">HHI")
KEY_MAX = 64
VALUE_MAX = 1024
KEY_RE = re.compile(rb"[A-Za-z0-9_.-]{1,64}")
VALUE_RE = re.compile(rb"[\x21-\x7e]{1,1024}")

OnWrite = Callable[[np.ndarray], None]


class KVError(Exception):
    """Base of the store's errors; the message is fit for an ``ERR`` reply."""


class KVInvalid(KVError, ValueError):  # noqa: N818
    """A key or value the store does not accept."""


class KVFull(KVError):  # noqa: N818
    """No room left in the log even after compaction."""


class KVCorrupt(KVError):  # noqa: N818
    """The log in memory is damaged (strict load)."""


def check_key(key: bytes) -> bytes:
    if not KEY_RE.fullmatch(key):
        raise KVInvalid(f"bad key {key[:80]!r}: expected 1 to {KEY_MAX} of A-Z a-z 0-9 _ . -")
    return key


def check_value(value: bytes) -> bytes:
    if not VALUE_RE.fullmatch(value):
        raise KVInvalid(f"bad value ({len(value)} bytes): expected 1 to {VALUE_MAX} printable "
                        "ASCII characters without spaces")
    return value


def _crc(key: bytes, value: bytes) -> int:
    return zlib.crc32(value, zlib.crc32(key, zlib.crc32(struct.pack(">HH", len(key),
                                                                    len(value)))))


def _record(key: bytes, value: bytes) -> bytes:
    return _REC.pack(len(key), len(value), _crc(key, value)) + key + value


class KVStore:
    """The index (key -> value) over a log region; build with ``format`` or ``load``."""

    def __init__(self, region: np.ndarray, on_write: OnWrite | None) -> None:
        if region.ndim != 2 or region.shape[1] != PAGE_SIZE or region.dtype != np.uint8 \
                or not region.flags.c_contiguous or len(region) < 1:
            raise ValueError(f"region must be a C-contiguous (n>=1, {PAGE_SIZE}) uint8 array, "
                             f"got {region.shape} {region.dtype}")
        self._flat = region.reshape(-1)          # a view: writes go to guest memory
        self.capacity = len(self._flat)
        self._on_write = on_write
        self._index: dict[bytes, bytes] = {}
        self._end = _HEADER.size
        self.corruption: str | None = None       # why load stopped early, if it did
        self._needs_format = False

    # --- construction ----------------------------------------------------------------------------

    @classmethod
    def format(cls, region: np.ndarray, on_write: OnWrite | None = None) -> KVStore:
        """An empty store: writes the header and the end mark."""
        store = cls(region, on_write)
        store._write(0, _HEADER.pack(MAGIC, VERSION) + bytes(_REC.size))
        return store

    @classmethod
    def load(cls, region: np.ndarray, on_write: OnWrite | None = None, *,
             strict: bool = False) -> KVStore:
        """Rebuild the index from the log.  At the first damaged record: ``KVCorrupt`` if
        ``strict``, else keep the records before it, note why in ``corruption`` and append from
        there (the damaged tail is lost, visibly, and never read as data)."""
        store = cls(region, on_write)
        flat = store._flat
        magic, version = _HEADER.unpack_from(flat, 0)
        if magic != MAGIC or version != VERSION:
            store._damaged(0, f"bad header {bytes(flat[:6])!r}", strict)
            store._needs_format = True
            return store
        off = _HEADER.size
        while off + _REC.size <= store.capacity:
            klen, vlen, crc = _REC.unpack_from(flat, off)
            if klen == 0:
                break
            end = off + _REC.size + klen + vlen
            if not 1 <= klen <= KEY_MAX or not 1 <= vlen <= VALUE_MAX or end > store.capacity:
                store._damaged(off, f"bad lengths key {klen} value {vlen}", strict)
                break
            key = flat[off + _REC.size:off + _REC.size + klen].tobytes()
            value = flat[off + _REC.size + klen:end].tobytes()
            if _crc(key, value) != crc:
                store._damaged(off, f"CRC mismatch for key {key[:64]!r}", strict)
                break
            if not KEY_RE.fullmatch(key) or not VALUE_RE.fullmatch(value):
                store._damaged(off, "record with invalid characters", strict)
                break
            store._index[key] = value
            off = end
        store._end = off
        return store

    def _damaged(self, offset: int, why: str, strict: bool) -> None:
        message = f"log damaged at byte {offset}: {why}"
        if strict:
            raise KVCorrupt(message)
        self.corruption = message

    # --- use -------------------------------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        return self._index.get(check_key(key))

    def put(self, key: bytes, value: bytes) -> None:
        record = _record(check_key(key), check_value(value))
        if self._needs_format:
            self._write(0, _HEADER.pack(MAGIC, VERSION))
            self._needs_format = False
        if self._end + len(record) > self.capacity:
            self._compact(extra=len(record), key=key)
        self._append(record)
        self._index[key] = value

    def _append(self, record: bytes) -> None:
        end = self._end + len(record)
        tail = bytes(min(_REC.size, self.capacity - end))   # the end mark, if there is room
        self._write(self._end, record + tail)
        self._end = end

    def _compact(self, extra: int, key: bytes) -> None:
        live = b"".join(_record(k, v) for k, v in self._index.items() if k != key)
        if _HEADER.size + len(live) + extra > self.capacity:
            raise KVFull(f"store full: {len(self._index)} keys use {_HEADER.size + len(live)} "
                         f"of {self.capacity} bytes")
        self._write(_HEADER.size, live)
        self._end = _HEADER.size + len(live)
        if key in self._index:
            del self._index[key]              # its record is re-appended by put

    def _write(self, offset: int, data: bytes) -> None:
        if not data:
            return
        self._flat[offset:offset + len(data)] = np.frombuffer(data, dtype=np.uint8)
        if self._on_write is not None:
            first, last = offset // PAGE_SIZE, (offset + len(data) - 1) // PAGE_SIZE
            self._on_write(np.arange(first, last + 1, dtype=np.int64))

    def __len__(self) -> int:
        return len(self._index)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(list(self._index.items()))

    @property
    def used_bytes(self) -> int:
        return self._end
