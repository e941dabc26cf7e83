"""migrator.disk.worker: the guest's disk thread on a real file: rates met, lost writes caught,
hold really holds, slow devices lag instead of queueing, write-blocking mirroring."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from migrator.disk.blocks import make_block
from migrator.disk.datastore import create_disk
from migrator.disk.device import FileDevice
from migrator.disk.iolog import IoLog, read_iolog
from migrator.disk.params import parse_disk
from migrator.disk.worker import CARRY_S, TICK_S, DiskWorker
from tests.unit.migrator.mirrorserver import FakeMirror

BS = 65536
SPB = BS // 4096


def disk(tmp_path, size="1MiB", allocated=None, **work):
    raw = {"size": size, "block_bytes": BS, "workload": work}
    if allocated is not None:
        raw["allocated"] = allocated
    params = parse_disk(raw, "vm.disk")
    path = tmp_path / "vm.disk"
    create_disk(path, params, fill=True)
    return params, path


def wait_for(cond, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.005)


class Run:
    """A worker with its iolog and dirty marks, always stopped and closed."""

    def __init__(self, tmp_path, params, device, **kw):
        self.marks: list[np.ndarray] = []
        self.iolog = IoLog(tmp_path / "iolog.csv")
        self.worker = DiskWorker(params, device, self.marks.append, self.iolog, seed=11, **kw)

    def __enter__(self):
        self.worker.start()
        return self

    def __exit__(self, *exc):
        self.worker.close()
        self.iolog.close()

    def stat(self, key):
        return self.worker.stats()[key]


def test_rates_met_and_everything_reads_back(tmp_path):
    params, path = disk(tmp_path, size="64MiB", allocated="32MiB", write_rate_mibps=8,
                        read_rate_mibps=8, working_set_frac=0.5, skew="uniform")
    with Run(tmp_path, params, FileDevice(path)) as run:
        wait_for(lambda: run.stat("active_s") >= 1.0, 10, "1 s of disk I/O")
        run.worker.hold()
        s = run.worker.stats()
        checked, lost = run.worker.verify_all()
    expected = 128 * s["active_s"]                 # 8 MiB/s of 64 KiB blocks
    ctx = f"stats {s}, expected {expected:.0f} of each"
    for op in ("writes", "reads"):                 # tolerance: 10 %, plus the carry at the end
        assert abs(s[op] - expected) <= 0.1 * expected + 2, f"{op}: {ctx}"
    assert s["lost_writes"] == 0 and s["write_errors"] == s["read_errors"] == 0, ctx
    assert s["write_mibps"] == pytest.approx(8, rel=0.1), ctx
    assert lost == 0 and checked >= params.allocated_blocks, (checked, lost)
    rows = read_iolog(tmp_path / "iolog.csv")
    assert len(rows) == s["writes"] + s["reads"]
    assert all(r.ok == 1 and r.path == "local" for r in rows)
    written = [r.block for r in rows if r.op == "w"]
    assert [int(m[0]) // SPB for m in run.marks] == written
    assert all(np.array_equal(m, np.arange(m[0], m[0] + SPB)) for m in run.marks)


def test_a_corrupted_block_is_a_lost_write_on_read(tmp_path, caplog):
    params, path = disk(tmp_path, allocated="1MiB", write_rate_mibps=0, read_rate_mibps=16,
                        working_set_frac=1.0, skew="uniform")
    with open(path, "r+b") as f:                   # block 5's last payload byte flipped
        f.seek(6 * BS - 1)
        last = f.read(1)
        f.seek(6 * BS - 1)
        f.write(bytes([last[0] ^ 0xFF]))
    with Run(tmp_path, params, FileDevice(path)) as run:
        wait_for(lambda: run.stat("lost_writes") >= 1, 10, "the corrupted block read")
        run.worker.hold()
        assert run.worker.verify_all() == (16, 1)
    bad = {r.block for r in read_iolog(tmp_path / "iolog.csv") if not r.ok}
    assert bad == {5}
    assert "block 5 on local: corrupt payload" in caplog.text


def test_a_stale_block_is_caught_by_verify(tmp_path, caplog):
    params, path = disk(tmp_path, allocated="1MiB", write_rate_mibps=16, read_rate_mibps=0,
                        working_set_frac=1.0, skew="uniform")
    with Run(tmp_path, params, FileDevice(path)) as run:
        wait_for(lambda: run.stat("writes") >= 60, 10, "60 writes")
        run.worker.hold()
        block = max(range(16), key=run.worker.expected_seq)
        seq = run.worker.expected_seq(block)
        assert seq >= 2
        with open(path, "r+b") as f:               # the write before the last one, as if lost
            f.seek(block * BS)
            f.write(make_block(block, seq - 1, BS, "text", 11))
        assert run.worker.verify_all() == (16, 1)
    assert f"block {block}: stale: seq {seq - 1}, expected {seq}" in caplog.text


class GateDevice(FileDevice):
    """A file device whose writes wait for a gate; records every I/O and when it happened."""

    def __init__(self, path):
        super().__init__(path)
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.calls: list[float] = []

    def pwrite(self, data, offset):
        self.calls.append(time.monotonic())
        self.entered.set()
        self.gate.wait()
        super().pwrite(data, offset)

    def pread(self, offset, n):
        self.calls.append(time.monotonic())
        return super().pread(offset, n)


def test_hold_waits_for_the_io_in_progress_and_stops_io_until_release(tmp_path):
    params, path = disk(tmp_path, write_rate_mibps=32, read_rate_mibps=32, working_set_frac=1.0)
    device = GateDevice(path)
    with Run(tmp_path, params, device) as run:
        assert device.entered.wait(5), "no write started"
        holder = threading.Thread(target=run.worker.hold)
        holder.start()
        holder.join(timeout=0.2)
        assert holder.is_alive(), "hold returned while a write was in progress"
        device.gate.set()
        holder.join(timeout=5)
        assert not holder.is_alive(), "hold did not return once the write finished"
        held_at = time.monotonic()
        n = len(device.calls)
        time.sleep(0.3)                            # 150 ticks at 1 kIO/s planned: none may run
        assert len(device.calls) == n, f"{len(device.calls) - n} I/Os while held"
        run.worker.release()
        other = FileDevice(path)
        try:
            with pytest.raises(RuntimeError, match="held"):
                run.worker.switch_device(other)
        finally:
            other.close()
        wait_for(lambda: len(device.calls) > n + 10, 5, "I/O after release")
        s = run.worker.stats()
    # time held plans nothing: about 1 kIO/s over the active time only, not the 0.3 s held
    active = s["active_s"]
    assert device.calls[n] > held_at + 0.3
    assert s["writes"] + s["reads"] <= 1024 * (active + CARRY_S + TICK_S) + 2, (s, active)


class SlowDevice(FileDevice):
    """Every I/O takes ``delay_s`` (a disk across a 150 ms WAN, scaled down)."""

    delay_s = 0.05
    where = "remote"

    def pwrite(self, data, offset):
        time.sleep(self.delay_s)
        super().pwrite(data, offset)

    def pread(self, offset, n):
        time.sleep(self.delay_s)
        return super().pread(offset, n)


def test_a_slow_device_lowers_the_rate_and_queues_no_backlog(tmp_path):
    params, path = disk(tmp_path, write_rate_mibps=40, read_rate_mibps=0)
    with Run(tmp_path, params, SlowDevice(path)) as run:
        wait_for(lambda: run.stat("active_s") >= 0.6, 10, "0.6 s of slow I/O")
        t0 = time.monotonic()
        run.worker.hold()
        took = time.monotonic() - t0
        s = run.worker.stats()
    planned = 640 * s["active_s"]                  # 40 MiB/s of 64 KiB blocks
    backlog = planned - s["writes"] - s["lagged"]
    ctx = f"stats {s}, planned {planned:.0f}, backlog {backlog:.0f}, hold took {took:.3f} s"
    assert abs(s["writes"] - s["active_s"] / SlowDevice.delay_s) <= 3, ctx
    assert backlog <= 640 * (CARRY_S + TICK_S) + 2, ctx
    assert took < 2 * SlowDevice.delay_s + 0.05, ctx


def test_mirrored_writes_complete_after_the_copy(tmp_path):
    params, path = disk(tmp_path, write_rate_mibps=2, read_rate_mibps=1)
    sock = tmp_path / "mirror.sock"
    run = Run(tmp_path, params, FileDevice(path), mirror_path=sock)
    server = FakeMirror(sock, delay_s=0.02,
                        on_request=lambda first, n: _not_yet_marked(run, server, first, n))
    try:
        with run:
            wait_for(lambda: run.stat("writes") >= 15, 10, "15 mirrored writes")
            run.worker.hold()
            s = run.worker.stats()
    finally:
        server.stop()
    assert server.errors == []
    assert s["mirror_writes"] == s["writes"] and s["lost_writes"] == 0, s
    writes = [r for r in read_iolog(tmp_path / "iolog.csv") if r.op == "w"]
    assert server.requests == [(r.block * SPB, SPB) for r in writes]
    assert all(r.path == "mirror" for r in writes)
    fastest = min(r.latency_s for r in writes)
    assert fastest >= 0.02, f"a mirrored write took {fastest * 1e3:.1f} ms, under the 20 ms copy"


def _not_yet_marked(run, server, first, n):
    """At the copy request, the write being copied is not yet in the dirty marks."""
    assert len(run.marks) == len(server.requests), (len(run.marks), len(server.requests))


def test_a_guest_that_does_not_write_still_connects_to_an_offered_mirror(tmp_path):
    """The migrator waits for the connection before it starts tracking: a guest that only reads
    must not leave it waiting for a write."""
    params, path = disk(tmp_path, write_rate_mibps=0, read_rate_mibps=1)
    sock = tmp_path / "mirror.sock"
    run = Run(tmp_path, params, FileDevice(path), mirror_path=sock)
    server = None
    try:
        with run:
            wait_for(lambda: run.stat("reads") >= 2, 10, "two reads before the mirror")
            server = FakeMirror(sock)
            wait_for(lambda: server.connections == 1, 2, "the guest connected to the mirror")
            s = run.worker.stats()
    finally:
        if server is not None:
            server.stop()
    assert s["writes"] == 0 and server.requests == [], (s, server.requests)


def test_mirror_gone_goes_on_locally(tmp_path, caplog):
    params, path = disk(tmp_path, write_rate_mibps=4, read_rate_mibps=4, working_set_frac=1.0)
    sock = tmp_path / "mirror.sock"
    server = FakeMirror(sock)
    try:
        with Run(tmp_path, params, FileDevice(path), mirror_path=sock) as run:
            wait_for(lambda: run.stat("mirror_writes") >= 5, 10, "5 mirrored writes")
            server.stop()
            n = run.stat("writes")
            wait_for(lambda: run.stat("writes") >= n + 10, 10, "10 writes after the mirror went")
            run.worker.hold()
            s = run.worker.stats()
            checked, lost = run.worker.verify_all()
    finally:
        server.stop()
    assert s["error"] is None and s["lost_writes"] == 0 and lost == 0, s
    assert s["mirror_drops"] == 1 and s["mirror_writes"] >= 5, s
    rows = [r for r in read_iolog(tmp_path / "iolog.csv") if r.op == "w"]
    assert [r.path for r in rows[-10:]] == ["local"] * 10
    assert caplog.text.count("disk mirror gone") == 1


def test_throttle_slows_the_guest_io(tmp_path):
    params, path = disk(tmp_path, size="16MiB", write_rate_mibps=16, read_rate_mibps=16,
                        working_set_frac=1.0)
    with Run(tmp_path, params, FileDevice(path)) as run:
        run.worker.set_throttle(0.5)
        wait_for(lambda: run.stat("active_s") >= 1.0, 10, "1 s of throttled I/O")
        run.worker.hold()
        s = run.worker.stats()
    for key in ("write_mibps", "read_mibps"):       # half of 16 MiB/s, within 10 %
        assert s[key] == pytest.approx(8, rel=0.1), (key, s)


class FailingWrites(FileDevice):
    """Writes of even blocks fail, as a remote disk whose link broke would."""

    def pwrite(self, data, offset):
        if (offset // BS) % 2 == 0:
            raise OSError(5, "Input/output error")
        super().pwrite(data, offset)


def test_a_failed_write_is_counted_and_not_a_lost_write(tmp_path):
    params, path = disk(tmp_path, allocated="1MiB", write_rate_mibps=16, read_rate_mibps=16,
                        working_set_frac=1.0, skew="uniform")
    with Run(tmp_path, params, FailingWrites(path)) as run:
        wait_for(lambda: run.stat("write_errors") >= 5 and run.stat("reads") >= 50, 10,
                 "failed writes and reads")
        run.worker.hold()
        s = run.worker.stats()
        failed = {b for b in range(0, 16, 2) if run.worker.expected_seq(b) == -2}
        checked, lost = run.worker.verify_all()
    assert s["error"] is None and s["lost_writes"] == 0 and lost == 0, s
    assert failed and checked == 16 - len(failed), (failed, checked)
    rows = read_iolog(tmp_path / "iolog.csv")
    assert all(r.ok == (r.op == "r" or r.block % 2 == 1) for r in rows)
