"""migrator transport: rate cap, goodput, stream adaptation (pure), then real sockets on
127.0.0.1: whole migrations of an in-process guest per codec, and every failure path ending
cleanly (wrong key, truncated / corrupt / oversized frames, a destination dying mid-round)."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest

from migrator.core.engine import PreCopyEngine
from migrator.core.policy import MigrationPolicy
from migrator.endpoints import MonotonicClock, run_dest, run_source
from migrator.guest.localvm import InProcessVM
from migrator.loopback import migrate_loopback
from migrator.memory.pages import PAGE_SIZE
from migrator.memory.workload import WorkloadParams
from migrator.transport.channel import Channel, client_handshake, server_handshake
from migrator.transport.flowctl import GoodputMeter, StreamAdapter, TokenBucket, buffer_plan
from migrator.transport.options import TransportOptions
from migrator.transport.roundmem import RoundOrderedMemory
from migrator.transport.sender import TcpSender
from migrator.wire.frames import HEADER, MAGIC, MAX_FRAME, WIRE_VERSION, MsgType
from migrator.wire.messages import Pages, Round, to_frame

KEY = b"k" * 32
NPAGES = 2048                                   # 8 MiB guest
IDLE = WorkloadParams(dirty_rate_mibps=0.0)
BUSY = WorkloadParams(dirty_rate_mibps=20.0, working_set_frac=0.2, skew="zipf")

# --- pure decisions ------------------------------------------------------------------------------


def test_token_bucket_long_run_rate_is_the_cap_and_burst_is_bounded():
    rate, burst = 1_000_000.0, 50_000.0
    b = TokenBucket(rate, burst, now=0.0)
    t, sent = 0.0, 0
    while t < 10.0:
        t += b.reserve(10_000, t)          # the caller waits what it is told, then sends
        sent += 10_000
    achieved = sent / t
    assert achieved == pytest.approx(rate, rel=0.01), \
        f"cap {rate} B/s, burst {burst} B: sent {sent} B in {t:.3f} s = {achieved:.0f} B/s"
    b2 = TokenBucket(rate, burst, now=0.0)
    assert b2.reserve(50_000, 100.0) == 0.0, "a full bucket sends its depth at once"
    assert b2.reserve(10_000, 100.0) == pytest.approx(0.01), "beyond the depth: wait n/rate"


def test_token_bucket_rejects_nonsense():
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(0, 10, 0.0)
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(10, 0, 0.0)


def test_goodput_counts_only_busy_time_in_the_window():
    m = GoodputMeter(window_s=10.0)
    m.add(0.0, acked=0, handed=1000)
    m.add(1.0, acked=1000, handed=1000)          # busy second: 1000 B/s
    m.add(5.0, acked=1000, handed=1000)          # idle gap between rounds: not counted
    m.add(5.5, acked=1000, handed=3000)
    m.add(6.5, acked=3000, handed=3000)          # 2000 B in the busy second (and idle 0.5 s)
    assert m.busy_s() == pytest.approx(2.0)
    assert m.rate_Bps() == pytest.approx(1500.0), "3000 B acked over 2 busy seconds"
    m.add(30.0, acked=3000, handed=3000)
    assert m.rate_Bps() == 0.0, "old samples leave the window"


def test_stream_adapter_grows_while_it_pays_then_freezes():
    a = StreamAdapter(initial=2, maximum=6, min_gain=0.10)
    assert a.observe(2, 100.0) == 3
    assert a.observe(3, 130.0) == 4               # +30 %: keep growing
    assert a.observe(4, 135.0) == 4 and a.frozen  # +4 %: stop
    assert a.observe(4, 500.0) == 4, "frozen stays frozen"
    b = StreamAdapter(initial=1, maximum=2)
    assert b.observe(1, 10.0) == 2
    assert b.observe(2, 30.0) == 2 and b.frozen, "never beyond the maximum"
    assert StreamAdapter(3, 3).observe(3, 1.0) == 3
    with pytest.raises(ValueError):
        StreamAdapter(4, 2)


def test_buffer_plan_autotunes_when_it_can_and_caps_otherwise():
    assert buffer_plan(1e6, 4, autotune_max=4 << 20, core_max=212992).setsockopt_bytes is None
    big = buffer_plan(100e6, 2, autotune_max=4 << 20, core_max=16 << 20)
    assert big.setsockopt_bytes == 16 << 20 and "capped" in big.reason
    assert buffer_plan(10e6, 1, autotune_max=None, core_max=None).setsockopt_bytes == 20_000_000


def test_round_ordered_memory_never_goes_back_a_round():
    mem = RoundOrderedMemory(np.zeros((8, PAGE_SIZE), np.uint8))
    new = np.full((1, PAGE_SIZE), 2, np.uint8)
    old = np.full((1, PAGE_SIZE), 1, np.uint8)
    mem.apply(2, np.array([3]), new, np.array([], np.int64))
    mem.apply(1, np.array([3]), old, np.array([5]))          # late copy from round 1
    assert mem.memory[3, 0] == 2, "an older round's copy arriving late must not win"
    assert mem.received == 3 and mem.applied == 2


# --- real sockets --------------------------------------------------------------------------------


def _loopback(codec: str, workload: WorkloadParams, **kw):
    holder = {}

    def factory(n):
        holder["mem"] = np.zeros((n, PAGE_SIZE), np.uint8)
        return holder["mem"]

    vm = InProcessVM(NPAGES, workload, seed=3)
    try:
        run = migrate_loopback(NPAGES, workload, MigrationPolicy(codec=codec, **kw), vm=vm,
                               memory_factory=factory, timeout_s=10.0)
    finally:
        vm.stop()
    return run, vm, holder.get("mem")


@pytest.mark.parametrize("codec", ["none", "lz4", "zstd-3", "xbzrle", "adaptive"])
def test_full_migration_per_codec_memory_equal(codec):
    run, vm, dest = _loopback(codec, BUSY, streams=2)
    s = run.summary
    assert run.result.outcome == "completed", f"{codec}: {s}"
    assert run.dest.ok and run.dest.digest_ok, f"{codec}: {run.dest}"
    assert vm.paused, "a completed migration leaves the source guest paused"
    assert np.array_equal(dest, vm.memory), f"{codec}: destination memory differs"
    assert s["integrity_ok"] is True and s["bytes_on_wire"] > 0 and s["rounds"] >= 2
    assert run.dest.pages_received >= NPAGES, "round 0 covers every page (zero or not)"


def test_streams_added_mid_migration_keep_memory_exact():
    """Force the adapter to add a stream every round: pages change stream between rounds and
    XBZRLE caches are per stream; the destination must still end up byte-identical."""
    holder: dict = {}
    ready = threading.Event()
    vm = InProcessVM(NPAGES, BUSY, seed=5)
    policy = MigrationPolicy(codec="xbzrle", streams=1, downtime_target_ms=1.0, max_rounds=6)

    def factory(n):
        holder["mem"] = np.zeros((n, PAGE_SIZE), np.uint8)
        return holder["mem"]

    def dest():
        holder["dest"] = run_dest(("127.0.0.1", 0), KEY, factory, lambda: None, timeout_s=10,
                                  on_listening=lambda a: (holder.update(addr=a), ready.set()))

    t = threading.Thread(target=dest, daemon=True)
    t.start()
    try:
        assert ready.wait(5), "destination did not listen"
        opts = TransportOptions(streams=1, max_streams=4, adapt_interval_s=0.0, timeout_s=10)
        with TcpSender(holder["addr"], KEY, vm, opts) as sender:
            sender.connect()
            sender.adapter.observe = lambda n, g: min(n + 1, 4)   # type: ignore[method-assign]
            sender.meter.busy_s = lambda: 1.0                      # type: ignore[method-assign]
            result = PreCopyEngine(MonotonicClock(), vm, sender, policy, chunk_pages=128).run()
            used = list(sender.stats.streams_used)
            cc = sender.stats.congestion_control
        t.join(15)
    finally:
        vm.stop()
    assert result.outcome == "completed", result
    assert used[-1] > 1, f"streams never grew: {used}"
    with open("/proc/sys/net/ipv4/tcp_congestion_control") as f:
        assert cc == f.read().strip(), f"recorded congestion control {cc!r}"
    assert np.array_equal(holder["mem"], vm.memory), f"memory differs after streams {used}"


def _idle_vm():
    vm = InProcessVM(NPAGES, IDLE, seed=7)
    return vm, vm.memory.copy()


def _assert_source_safe(vm, before, result, words):
    assert result.outcome.startswith("aborted"), result
    assert any(w in (result.error or "") for w in words), \
        f"error {result.error!r} should mention one of {words}"
    assert not vm.paused, "the guest must run at the source after a failed migration"
    assert np.array_equal(vm.memory, before), "the source guest's memory changed"


def test_wrong_key_ends_both_sides_cleanly():
    holder: dict = {}
    ready = threading.Event()

    def dest():
        holder["dest"] = run_dest(("127.0.0.1", 0), b"d" * 32, lambda n: np.zeros(
            (n, PAGE_SIZE), np.uint8), lambda: holder.update(switched=True), timeout_s=5,
            on_listening=lambda a: (holder.update(addr=a), ready.set()))

    t = threading.Thread(target=dest, daemon=True)
    t.start()
    vm, before = _idle_vm()
    try:
        assert ready.wait(5)
        res = run_source(vm, holder["addr"], MigrationPolicy(codec="lz4"), KEY, rtt_hint_s=0,
                         timeout_s=5)
        t.join(10)
    finally:
        vm.stop()
    _assert_source_safe(vm, before, res, ["authentication"])
    assert not t.is_alive(), "destination still running after a failed handshake"
    d = holder["dest"]
    assert not d.ok and "authentication" in (d.error or ""), d
    assert "switched" not in holder


class _RawSource:
    """Authenticates as a source, then sends whatever the test wants (data frames in clear:
    ``encryption: none`` protects only the control stream)."""

    def __init__(self, addr):
        self.ctl = Channel(socket.create_connection(addr, 5), "ctl", timeout_s=5)
        client_handshake(self.ctl, KEY, {"role": "control", "session": "s", "npages": 16,
                                         "page_size": PAGE_SIZE, "wire_version": WIRE_VERSION,
                                         "encryption": "none"})
        self.data = Channel(socket.create_connection(addr, 5), "data", timeout_s=5)
        client_handshake(self.data, KEY, {"role": "data", "session": "s", "stream": 0,
                                          "encryption": "none"})
        self.ctl.send(Round(0, 0, 0))

    def close(self):
        self.ctl.close()
        self.data.close()


def _page_frame() -> bytes:
    pages = np.full((2, PAGE_SIZE), 7, np.uint8)
    return to_frame(Pages(0, 0, np.array([], np.int64), np.array([1, 2]), pages.tobytes()))


def _cut(frame):
    return frame[:HEADER.size + 100]


def _corrupt(frame):
    return frame[:-1] + bytes([frame[-1] ^ 0xFF])


def _oversize(_frame):
    return HEADER.pack(MAGIC, WIRE_VERSION, MsgType.PAGES, 0, MAX_FRAME + 1, 0) + b"x" * 64


@pytest.mark.parametrize("mangle,words", [(_cut, ["truncated", "closed"]),
                                          (_corrupt, ["CRC mismatch"]),
                                          (_oversize, ["oversize"])])
def test_bad_frames_end_the_destination_with_a_clear_error_and_abort(mangle, words):
    holder: dict = {}
    ready = threading.Event()

    def dest():
        holder["dest"] = run_dest(("127.0.0.1", 0), KEY, lambda n: np.zeros(
            (n, PAGE_SIZE), np.uint8), lambda: holder.update(switched=True), timeout_s=5,
            on_listening=lambda a: (holder.update(addr=a), ready.set()))

    t = threading.Thread(target=dest, daemon=True)
    t.start()
    assert ready.wait(5)
    src = _RawSource(holder["addr"])
    try:
        src.data.send_frame(_page_frame())
        src.data.send_frame(mangle(_page_frame()))
        if mangle is _cut:
            src.data.sock.shutdown(socket.SHUT_WR)
        t.join(10)
        assert not t.is_alive(), "destination did not end"
        err = holder["dest"].error or ""
        assert not holder["dest"].ok and any(w in err for w in words), \
            f"error {err!r} should mention one of {words}"
        with pytest.raises(Exception, match="aborted|closed|reset"):
            src.ctl.recv()            # the source is told (ABORT), or at least cut off
    finally:
        src.close()
    assert "switched" not in holder


def test_destination_dying_mid_round_resumes_the_source_unchanged():
    listener = socket.create_server(("127.0.0.1", 0))
    addr = listener.getsockname()
    conns: list[Channel] = []

    def fake_dest():
        listener.settimeout(5)
        try:
            data = []
            for _ in range(3):                       # control + 2 data streams, in any order
                c, _a = listener.accept()
                ch = Channel(c, "fake", timeout_s=5)
                if server_handshake(ch, KEY).info.get("role") != "control":
                    data.append(ch)
                conns.append(ch)
            data[0].sock.recv(256 * 1024)            # some of round 0, then die
        finally:
            for ch in conns:
                ch.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                ch.close()
            listener.close()

    t = threading.Thread(target=fake_dest, daemon=True)
    t.start()
    vm, before = _idle_vm()
    t0 = time.monotonic()
    try:
        res = run_source(vm, addr, MigrationPolicy(codec="none", streams=2), KEY,
                         rtt_hint_s=0, timeout_s=5)
    finally:
        vm.stop()
        t.join(5)
    _assert_source_safe(vm, before, res, ["stream", "closed", "reset", "pipe"])
    assert time.monotonic() - t0 < 5, "the failure must be noticed at once, not by timeout"


def test_source_refused_connection_is_a_clean_abort():
    s = socket.create_server(("127.0.0.1", 0))
    addr = s.getsockname()
    s.close()                                    # nobody listens there now
    vm, before = _idle_vm()
    try:
        res = run_source(vm, addr, MigrationPolicy(codec="none"), KEY, rtt_hint_s=0,
                         timeout_s=2)
    finally:
        vm.stop()
    _assert_source_safe(vm, before, res, ["cannot connect"])


def test_rate_cap_is_obeyed_end_to_end():
    run, _vm, _mem = _loopback("none", IDLE, streams=2, max_bandwidth_mbps=200.0)
    wire, total = run.summary["bytes_on_wire"], run.result.total_time_s
    rate_mbps = wire * 8 / 1e6 / total
    assert run.result.outcome == "completed"
    assert rate_mbps <= 200.0 * 1.10, \
        f"cap 200 Mbit/s, sent {wire} B in {total:.3f} s = {rate_mbps:.1f} Mbit/s"



def test_simulated_rtt_and_rate_are_seen_by_the_transport():
    guest = InProcessVM(NPAGES, BUSY, seed=9)
    try:
        run = migrate_loopback(NPAGES, BUSY, MigrationPolicy(codec="lz4", streams=2), vm=guest,
                               rtt_sim_s=0.04, bw_sim_mbps=200.0, timeout_s=10.0)
    finally:
        guest.stop()
    s = run.summary
    assert run.result.outcome == "completed", s
    assert s["rtt_ms"] == pytest.approx(40.0, abs=8.0), f"simulated 40 ms RTT, measured: {s}"
    assert s["total_time_s"] >= s["bytes_on_wire"] * 8 / 200e6, \
        f"faster than the simulated 200 Mbit/s bottleneck: {s}"


def test_straight_over_loopback_the_destination_buffers_are_fixed_not_autotuned():
    from migrator.loopback import LOOPBACK_RCVBUF

    run, _vm, _mem = _loopback("none", IDLE, streams=2)
    listener = [b for b in run.dest.buffers if b.get("stream") == "listener"]
    assert run.result.outcome == "completed", run.summary
    assert listener and listener[0]["asked"] == LOOPBACK_RCVBUF, run.dest.buffers
    # Linux doubles what is asked (its bookkeeping); it never grants less here.
    assert LOOPBACK_RCVBUF <= listener[0]["granted"] <= 2 * LOOPBACK_RCVBUF, run.dest.buffers
