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

from migrator.transport.flowctl import GoodputMeter, StreamAdapter, flight_room, next_window
from migrator.transport.streams import StreamPool
from migrator.transport.window import MIN_WINDOW, FlightWindow


def test_flight_room_admits_up_to_the_window_and_always_an_idle_stream():
    assert flight_room(total_unacked=900, own_unacked=100, nbytes=100, window=1000)
    assert not flight_room(total_unacked=901, own_unacked=100, nbytes=100, window=1000)
    # A stream with nothing outstanding may always send, even when the others fill the window
    # (no stream starves; a slice larger than the window still goes).
    assert flight_room(total_unacked=5000, own_unacked=0, nbytes=100, window=1000)


class _Kernel:
    """What the kernel says the streams have out, and how often it was asked."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.reads = 0

    def __call__(self) -> int:
        self.reads += 1
        return self.n


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def window(size: float = 1000.0, unacked: _Kernel | None = None, max_age_s: float = 60.0,
           grow: bool = False, clock: _Clock | None = None) -> FlightWindow:
    """A window of ``size`` bytes (bw 1e6 B/s, RTT chosen to give that size at 1 BDP)."""
    w = FlightWindow(bw_Bps=1e6, rtt_s=size / 1e6, streams=1, window_bdps=1.0,
                     total_unacked=unacked or _Kernel(0), grow=grow, max_age_s=max_age_s,
                     clock=clock or _Clock())
    w.size = size           # below the per-stream floor of a real window: set for the test
    return w


def test_window_counts_what_it_admitted_until_the_kernel_is_read_again():
    kernel = _Kernel(800)
    w = window(1000.0, kernel)
    assert w.admit(400, 100)                             # 800 + 100 <= 1000
    assert w.admit(400, 100)                             # 900 + 100 <= 1000
    # The two admissions are counted although the kernel was not read again: a third writer
    # admitted on the stale sum would overshoot.
    assert not w.admit(400, 100)
    assert kernel.reads == 1 and w.held_back


def test_window_rereads_the_kernel_once_its_sum_is_old():
    kernel, clock = _Kernel(900), _Clock()
    w = window(1000.0, kernel, max_age_s=0.001, clock=clock)
    assert not w.admit(900, 200)
    kernel.n = 0                                         # everything acknowledged
    clock.t = 0.005
    assert w.admit(500, 200)
    assert kernel.reads == 2


def test_modes_follow_what_is_known_of_the_link():
    def make(**kw):
        return FlightWindow(bw_Bps=12.5e6, rtt_s=0.15, streams=4, total_unacked=lambda: 0, **kw)
    fixed, growing = make(), make(grow=True)
    off = FlightWindow(bw_Bps=12.5e6, rtt_s=0.0, streams=4, total_unacked=lambda: 0)
    assert (fixed.mode, growing.mode, off.mode) == ("fixed", "growing", "off")
    assert fixed.size == growing.size == pytest.approx(1.5 * 12.5e6 * 0.15)
    assert off.size is None and off.admit(10**9, 10**9)
    # Only a measured rate sizes the buffers and paces the streams; a guess must cap neither.
    assert fixed.send_buffer_bytes() == int(1.5 * 12.5e6 * 0.15 / 4) + 128 * 1024
    assert fixed.stream_pacing_Bps() == int(2.0 * 12.5e6 / 4)
    assert growing.send_buffer_bytes() is None and growing.stream_pacing_Bps() is None
    # At a near-zero RTT the window is the floor, per stream.
    tiny = FlightWindow(bw_Bps=12.5e6, rtt_s=1e-4, streams=4, total_unacked=lambda: 0)
    assert tiny.size == 4 * MIN_WINDOW
    # The final pacing: a share of the measured rate, else of the link as told.
    assert fixed.final_pacing_Bps(10e6, 4) == int(1.05 * 10e6 / 4)
    assert fixed.final_pacing_Bps(0.0, 4) == int(1.05 * 12.5e6 / 4)
    assert off.final_pacing_Bps(0.0, 4) is None
    assert make(bound=False).final_pacing_Bps(10e6, 4) is None


class _Queue:
    def __init__(self, name: str, queued: int, limit: int = 1000) -> None:
        self.name, self._queued, self.limit, self.error = name, queued, limit, None

    def queued(self) -> int:
        return self._queued


@pytest.fixture
def pool():
    def refuse(index: int):
        raise AssertionError("no stream is opened in these tests")
    return StreamPool(refuse, StreamAdapter(1, 4, 0.1), GoodputMeter(2.0), 1.0, lambda n: None)


def _no_failure():
    return None


def test_stream_with_room_is_the_least_queued_of_those_with_room(pool):
    pool.streams = [_Queue("a", 900), _Queue("b", 1200), _Queue("c", 300)]
    assert pool.with_room(time.monotonic() + 1, _no_failure).name == "c"


def test_stream_with_room_waits_for_any_stream_not_the_least_queued(pool):
    """All queues full: the stream that drains first is taken, although another one was less
    queued (that one is a new stream in slow start and drains slowly)."""
    slow, fast = _Queue("slow", 1000), _Queue("fast", 1500)
    pool.streams = [slow, fast]

    def drain() -> None:
        time.sleep(0.05)
        fast._queued = 200

    t = threading.Thread(target=drain)
    t.start()
    t0 = time.monotonic()
    chosen = pool.with_room(time.monotonic() + 5, _no_failure)
    t.join()
    assert chosen is fast, f"took {chosen.name} after {time.monotonic() - t0:.3f} s"


def test_stream_with_room_gives_up_at_the_deadline(pool):
    pool.streams = [_Queue("a", 1000), _Queue("b", 1000)]
    with pytest.raises(Exception, match="every send queue full"):
        pool.with_room(time.monotonic() + 0.05, _no_failure)


def test_a_frozen_pool_takes_no_stream_into_use_and_opens_none():
    """At the end of pre-copy the pool freezes: a stream opened meanwhile is not taken into
    use (it would carry the final copy in slow start), and the adapter opens no more."""
    opened: list[int] = []

    def open_stream(index: int):
        opened.append(index)
        return _Queue(f"s{index}", 0)

    changes: list[int] = []
    pool = StreamPool(open_stream, StreamAdapter(1, 4, 0.1), GoodputMeter(2.0), 0.0,
                      changes.append)
    first = _Queue("s0", 0)
    first.index = 0
    pool.adopt([first])
    pool._opened.append(_Queue("s1", 0))           # finished opening before the freeze
    pool.freeze()
    pool.adapt()
    assert [s.name for s in pool.streams] == ["s0"] and changes == [] and opened == []
    assert pool.adapter.frozen


def test_next_window_grows_only_when_held_back_without_a_queue():
    kw = {"floor": 100.0, "ceiling": 10_000.0}
    assert next_window(1000.0, True, 0.100, 0.100, **kw) == 1250.0         # held back, no queue
    assert next_window(1000.0, False, 0.100, 0.100, **kw) == 1000.0        # not the limit
    assert next_window(1000.0, True, 0.130, 0.100, **kw) == 1000.0         # a queue builds
    assert next_window(1200.0, True, 0.160, 0.100, **kw) == 1000.0         # a queue: shrink
    assert next_window(9000.0, True, 0.100, 0.100, **kw) == 10_000.0       # ceiling
    assert next_window(110.0, False, 0.200, 0.100, **kw) == 100.0          # floor
    assert next_window(1000.0, True, 0.0, 0.100, **kw) == 1000.0           # no RTT yet


def test_window_steps_once_per_rtt_from_the_streams_rtt():
    """The rate is a guess: a 2 MB window that held writers back while the RTT shows no queue
    grows by a quarter, once per round trip."""
    clock = _Clock()
    w = window(2e6, grow=True, clock=clock)
    w.held_back = True
    w.step([0.1])
    assert w.size == 2.5e6 and w.largest == 2_500_000 and not w.held_back
    w.held_back = True
    clock.t += 0.05
    w.step([0.1])                              # within the same round trip: no second step
    assert w.size == 2.5e6
    clock.t += 0.1
    w.step([0.1])
    assert w.size == 2.5e6 * 1.25


def test_a_measured_rate_keeps_the_window_fixed():
    w = window(2e6, grow=False)
    w.held_back = True
    w.step([0.1])
    assert w.size == 2e6 and w.largest is None
