"""migrator.guest.kvstore: a key-value log in guest pages, rebuilt from a copy, damage detected."""

from __future__ import annotations

import numpy as np
import pytest

from migrator.guest.kvstore import KVCorrupt, KVFull, KVInvalid, KVStore
from migrator.memory.pages import PAGE_SIZE


def region(npages: int = 4) -> np.ndarray:
    # Not zero: the store must never depend on memory being clean beyond what format writes.
    return np.random.default_rng(3).integers(0, 256, size=(npages, PAGE_SIZE), dtype=np.uint8)


def test_put_get_overwrite_and_missing():
    kv = KVStore.format(region())
    assert kv.get(b"a") is None and len(kv) == 0
    kv.put(b"a", b"1")
    kv.put(b"user.42_x-y", b"~!value{}")
    kv.put(b"a", b"2")
    assert kv.get(b"a") == b"2" and kv.get(b"user.42_x-y") == b"~!value{}" and len(kv) == 2


def test_rebuilt_from_a_copy_of_the_pages():
    mem = region(8)
    kv = KVStore.format(mem)
    want = {f"k{i}".encode(): f"v{i}-{'x' * (i % 50)}".encode() for i in range(300)}
    for key, value in want.items():
        kv.put(key, value)
    kv.put(b"k7", b"new")
    want[b"k7"] = b"new"
    copy = mem.copy()
    again = KVStore.load(copy, strict=True)
    assert dict(again.items()) == want and again.corruption is None
    again.put(b"more", b"1")                      # appends continue where the log ended
    assert KVStore.load(copy, strict=True).get(b"more") == b"1"


def test_on_write_reports_every_changed_page():
    mem = region(16)
    marked: list[int] = []
    kv = KVStore.format(mem, on_write=lambda idx: marked.extend(idx.tolist()))
    for i in range(150):
        before = mem.copy()
        marked.clear()
        kv.put(f"key{i % 120}".encode(), b"v" * (1 + (i * 37) % 300))
        changed = set(np.flatnonzero((before != mem).any(axis=1)).tolist())
        assert changed, f"put {i} changed no page"
        assert changed <= set(marked), f"put {i}: pages {changed - set(marked)} not marked"


def test_corrupt_record_detected_strict_and_lenient():
    mem = region(2)
    kv = KVStore.format(mem)
    for i in range(10):
        kv.put(f"k{i}".encode(), f"value{i}".encode())
    flat = mem.reshape(-1)
    pos = flat.tobytes().index(b"value6")
    flat[pos] ^= 0x01                           # one bit flipped in transit
    with pytest.raises(KVCorrupt, match="CRC mismatch for key b'k6'"):
        KVStore.load(mem, strict=True)
    lenient = KVStore.load(mem)
    assert lenient.corruption is not None and "CRC" in lenient.corruption
    assert sorted(k for k, _ in lenient.items()) == [f"k{i}".encode() for i in range(6)]
    lenient.put(b"after", b"ok")                # overwrites the damaged tail: consistent again
    again = KVStore.load(mem, strict=True)
    assert again.get(b"after") == b"ok" and again.get(b"k8") is None


def test_bad_header_means_empty_store_then_reformat():
    mem = region(1)
    with pytest.raises(KVCorrupt, match="bad header"):
        KVStore.load(mem, strict=True)
    kv = KVStore.load(mem)
    assert len(kv) == 0 and "bad header" in kv.corruption
    kv.put(b"a", b"b")
    assert KVStore.load(mem, strict=True).get(b"a") == b"b"


@pytest.mark.parametrize(("key", "value"), [
    (b"", b"v"), (b"a b", b"v"), (b"k" * 65, b"v"), (b"caf\xc3\xa9", b"v"), (b"k\n", b"v"),
    (b"k", b""), (b"k", b"a b"), (b"k", b"x" * 1025), (b"k", b"\x7f"), (b"k", b"tab\there"),
])
def test_invalid_keys_and_values_refused(key, value):
    kv = KVStore.format(region(1))
    with pytest.raises(KVInvalid):
        kv.put(key, value)
    assert len(kv) == 0


def test_full_log_is_an_error_never_corruption():
    mem = region(1)
    kv = KVStore.format(mem)
    stored = {}
    with pytest.raises(KVFull, match="store full"):
        for i in range(1000):
            kv.put(f"key{i:04d}".encode(), b"v" * 100)
            stored[f"key{i:04d}".encode()] = b"v" * 100
    assert len(stored) > 10
    assert dict(KVStore.load(mem, strict=True).items()) == stored
    assert dict(kv.items()) == stored


def test_overwrites_compact_instead_of_filling():
    mem = region(1)
    kv = KVStore.format(mem)
    for i in range(2000):                       # ~100 KiB of records through a 4 KiB log
        kv.put(b"hot", f"{i:040d}".encode())
        kv.put(b"cold", b"c")
    again = KVStore.load(mem, strict=True)
    assert again.get(b"hot") == f"{1999:040d}".encode() and again.get(b"cold") == b"c"
    assert len(again) == 2
