"""migrator transport: the shared flight window and the choice of a data stream with room.

Both were measured faults at 150 ms and 100 Mbit/s: streams each bounded by their own send
buffer together kept three bandwidth-delay products in flight and lost bursts at the bottleneck;
and the engine waiting on the full queue of a stream just added (still in slow start) left the
other streams with nothing in flight for 0.7 s.
"""

from __future__ import annotations

import threading
import time

import pytest

from migrator.guest.localvm import InProcessVM
from migrator.memory.workload import WorkloadParams
from migrator.transport.flowctl import flight_room, next_window
from migrator.transport.sender import TcpSender, TransportOptions, _FlightGauge

KEY = b"k" * 32


def test_flight_room_admits_up_to_the_window_and_always_an_idle_stream():
    assert flight_room(total_unacked=900, own_unacked=100, nbytes=100, window=1000)
    assert not flight_room(total_unacked=901, own_unacked=100, nbytes=100, window=1000)
    # A stream with nothing outstanding may always send, even when the others fill the window
    # (no stream starves; a slice larger than the window still goes).
    assert flight_room(total_unacked=5000, own_unacked=0, nbytes=100, window=1000)


class _Unacked:
    def __init__(self, n: int) -> None:
        self.n = n
        self.reads = 0

    def unacked(self) -> int:
        self.reads += 1
        return self.n


def test_gauge_counts_what_it_admitted_until_the_kernel_is_read_again():
    streams = [_Unacked(400), _Unacked(400)]
    gauge = _FlightGauge(lambda: streams, max_age_s=60.0)
    assert gauge.admit(400, 100, window=1000)            # 800 + 100 <= 1000
    assert gauge.admit(400, 100, window=1000)            # 900 + 100 <= 1000
    # The two admissions are counted although the kernel was not read again: a third writer
    # admitted on the stale sum would overshoot.
    assert not gauge.admit(400, 100, window=1000)
    assert [s.reads for s in streams] == [1, 1]


def test_gauge_rereads_the_kernel_once_its_sum_is_old():
    streams = [_Unacked(900)]
    gauge = _FlightGauge(lambda: streams, max_age_s=0.001)
    assert not gauge.admit(900, 200, window=1000)
    streams[0].n = 0                                     # everything acknowledged
    time.sleep(0.005)
    assert gauge.admit(500, 200, window=1000)
    assert streams[0].reads == 2


class _Queue:
    def __init__(self, name: str, queued: int, limit: int = 1000) -> None:
        self.name, self._queued, self.limit, self.error = name, queued, limit, None

    def queued(self) -> int:
        return self._queued


@pytest.fixture
def sender():
    vm = InProcessVM(64, WorkloadParams(dirty_rate_mibps=0.0), seed=1)
    s = TcpSender(("127.0.0.1", 9), KEY, vm, TransportOptions())
    yield s
    s.streams = []              # the fakes have no sockets to close
    s.close()


def test_stream_with_room_is_the_least_queued_of_those_with_room(sender):
    sender.streams = [_Queue("a", 900), _Queue("b", 1200), _Queue("c", 300)]
    assert sender._stream_with_room(time.monotonic() + 1).name == "c"


def test_stream_with_room_waits_for_any_stream_not_the_least_queued(sender):
    """All queues full: the stream that drains first is taken, although another one was less
    queued (that one is a new stream in slow start and drains slowly)."""
    slow, fast = _Queue("slow", 1000), _Queue("fast", 1500)
    sender.streams = [slow, fast]

    def drain() -> None:
        time.sleep(0.05)
        fast._queued = 200

    t = threading.Thread(target=drain)
    t.start()
    t0 = time.monotonic()
    chosen = sender._stream_with_room(time.monotonic() + 5)
    t.join()
    assert chosen is fast, f"took {chosen.name} after {time.monotonic() - t0:.3f} s"


def test_stream_with_room_gives_up_at_the_deadline(sender):
    sender.streams = [_Queue("a", 1000), _Queue("b", 1000)]
    with pytest.raises(Exception, match="every send queue full"):
        sender._stream_with_room(time.monotonic() + 0.05)


def test_next_window_grows_only_when_held_back_without_a_queue():
    kw = {"floor": 100.0, "ceiling": 10_000.0}
    assert next_window(1000.0, True, 0.100, 0.100, **kw) == 1250.0         # held back, no queue
    assert next_window(1000.0, False, 0.100, 0.100, **kw) == 1000.0        # not the limit
    assert next_window(1000.0, True, 0.130, 0.100, **kw) == 1000.0         # a queue builds
    assert next_window(1200.0, True, 0.160, 0.100, **kw) == 1000.0         # a queue: shrink
    assert next_window(9000.0, True, 0.100, 0.100, **kw) == 10_000.0       # ceiling
    assert next_window(110.0, False, 0.200, 0.100, **kw) == 100.0          # floor
    assert next_window(1000.0, True, 0.0, 0.100, **kw) == 1000.0           # no RTT yet


class _Ch:
    closed = False
    sock = None


class _Stream:
    ch = _Ch()


@pytest.fixture
def stepping(sender, monkeypatch):
    """A sender with one stream whose RTT reads 100 ms, a 2 MB window that held writers back;
    ``stepping(grow)`` sets whether the rate is a guess."""
    import migrator.transport.sender as transport

    monkeypatch.setattr(transport, "tcp_info", lambda sock: (0.1, 0, 0))

    def make(grow: bool):
        sender.opt = TransportOptions(grow_window=grow, rtt_hint_s=0.1, bw_hint_Bps=1e6)
        sender.streams = [_Stream()]
        sender._window = 2e6
        sender._gauge.held_back = True
        return sender
    return make


def test_sender_steps_its_window_once_per_rtt_from_the_streams_rtt(stepping):
    sender = stepping(True)
    sender._step_window()
    assert sender._window == 2.5e6 and sender.stats.flight_window_max_bytes == 2_500_000
    assert not sender._gauge.held_back
    sender._gauge.held_back = True
    sender._step_window()                      # within the same round trip: no second step
    assert sender._window == 2.5e6


def test_a_measured_rate_keeps_the_window_fixed(stepping):
    sender = stepping(False)
    sender._step_window()
    assert sender._window == 2e6
