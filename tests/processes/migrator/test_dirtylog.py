"""migrator.guest.dirtylog: marks, atomic read-and-clear, no lost write against a real writer."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time

import numpy as np
import pytest

from migrator.guest.dirtylog import DirtyLog
from migrator.guest.image import GuestMemory, leftover_segments, remove_segments

NPAGES = 512

# A writer process as the guest behaves: contents first, then marks, in batches; stops at PAUSE.
WRITER = r"""
import os, sys, numpy as np
from migrator.guest.control import CMD_PAUSE, PAUSED, RUNNING
from migrator.guest.image import GuestMemory
mem = GuestMemory.attach(sys.argv[1], "src")
ctl = mem.control
applied = ctl.guest_start(os.getpid(), "dc1", "src")
rng = np.random.default_rng(7)
counter = 0
while True:
    cmd = ctl.poll(applied)
    if cmd is not None and cmd.kind == CMD_PAUSE:
        ctl.ack(cmd.seq, PAUSED, location="dc1", tag="src",
                blob=('{"writes": %d}' % counter).encode())
        break
    idx = rng.integers(0, mem.npages, size=int(rng.integers(1, 64)))
    for i in idx.tolist():
        counter += 1
        off = int(rng.integers(0, 4096 - 8))
        mem.pages[i, off:off + 8] = np.frombuffer(counter.to_bytes(8, "little"), np.uint8)
    mem.dirty.mark(idx)
    ctl.beat()
mem.close()
"""


@pytest.fixture
def mem():
    vm = "t" + secrets.token_hex(5)
    m = GuestMemory.create(vm, "src", NPAGES, tracking=True)
    yield m
    m.close()
    remove_segments([s for s in leftover_segments() if s.startswith(f"wanmig-{vm}-")])


def test_mark_then_read_and_clear(mem):
    log = mem.dirty
    assert len(log.read_and_clear()) == 0
    log.mark(np.array([5, 3, 5, 400]))
    log.mark(np.empty(0, dtype=np.int64))
    got = log.read_and_clear()
    assert got.tolist() == [3, 5, 400] and got.dtype == np.int64
    assert len(log.read_and_clear()) == 0, "read_and_clear must clear"


def test_two_handles_share_one_log(mem):
    other = DirtyLog(mem.dirty_path)
    try:
        other.mark(np.array([1, 2]))
        assert mem.dirty.count() == 2
        assert mem.dirty.read_and_clear().tolist() == [1, 2]
        assert other.count() == 0
    finally:
        other.close()


def _race(mem: GuestMemory, read_and_clear) -> tuple[np.ndarray, int, int, bool]:
    """Reader copies dirty pages (via ``read_and_clear``) for 1 s while a writer process writes,
    then pauses it and takes a final read.  Returns (pages that differ from the reader's copy,
    writes, reads, whether memory stayed unchanged after the pause acknowledgement)."""
    copy = mem.pages.copy()
    read_and_clear()
    proc = subprocess.Popen([sys.executable, "-c", WRITER, mem.vm])
    try:
        mem.control.wait_ready(timeout=20)
        reads, deadline = 0, time.monotonic() + 1.0
        while time.monotonic() < deadline:
            dirty = read_and_clear()
            copy[dirty] = mem.pages[dirty]
            reads += 1
        mem.control.pause(timeout=10)
        after_pause = mem.pages.copy()
        dirty = read_and_clear()
        copy[dirty] = mem.pages[dirty]
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    writes = json.loads(mem.control.snapshot().blob)["writes"]
    differ = np.flatnonzero((copy != mem.pages).any(axis=1))
    return differ, writes, reads, bool(np.array_equal(after_pause, mem.pages))


def test_no_write_lost_against_a_real_writer(mem):
    """After the final pause, every page that differs from the reader's last copy must have been
    reported dirty, i.e. the copy equals memory."""
    differ, writes, reads, still = _race(mem, mem.dirty.read_and_clear)
    assert writes > 1000 and reads > 10, f"too little concurrency: {writes} writes, {reads} reads"
    assert len(differ) == 0, (f"{len(differ)} pages written but never reported dirty "
                              f"(first {differ[:10].tolist()}); {writes} writes, {reads} reads")
    assert still, "the writer wrote after acknowledging pause"


def test_the_race_check_catches_an_unlocked_reader(mem):
    """The same check against a reader that reads, then clears everything without the lock:
    marks made in between are lost, and the check must see it."""
    bits = np.frombuffer(mem.dirty._mm, dtype=np.uint8)

    def racy() -> np.ndarray:
        idx = np.flatnonzero(bits.copy())
        time.sleep(0.0005)               # widen the window a real reader has anyway
        bits[:] = 0
        return idx

    differ, writes, reads, _ = _race(mem, racy)
    assert len(differ) > 0, f"an unlocked reader lost nothing in {writes} writes, {reads} reads"
