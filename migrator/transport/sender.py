"""The source side of the migration over TCP: one control stream and N parallel data streams.

Why several streams (as QEMU's multifd): on a long fat pipe one TCP flow recovers from a loss
at one segment per RTT and is bounded by its window; N flows share the pipe and lose less per
drop, and N encoders use N cores.  How pages are spread: page ``p`` goes on data stream
``p mod N``, each stream with its own encoder (``PageStreamEncoder``) and, at the destination,
its own decoder, so XBZRLE caches stay in step per stream.  Across rounds a page may change
stream (when N grows); the destination therefore applies a page only if its round is not older
than the one it already holds (round numbers strictly increase), so arrival order across streams
does not matter.

Stream lifecycle and messages (``migrator.wire.messages``; the connections are opened by
``dialer``, the control stream is ``controlstream``, the data streams ``datastream`` and
``streams``):

* control stream (TCP_NODELAY): HELLO (role ``control``, session id, npages, ...) and the HMAC
  handshake; ROUND when a round starts (``total_pages`` 0: the engine streams a round in chunks
  and its size is only known at the end), ROUND_END with the round's real counts, STATE, DIGEST;
  the destination answers ACK, or ABORT at any time (a reader thread watches for it);
* data streams: HELLO (role ``data``, session id, stream index), the same handshake, then PAGES
  frames; at the end one ROUND_END carrying the stream's totals and a half-close.  Streams are
  added while the migration runs (``flowctl.StreamAdapter``); a new one is opened in the
  background and used from the next send on.

Keeping the pipe full across a long RTT: ``send_pages`` encodes (in a thread pool, one task per
stream, when there are several streams and cores) and puts the frames on each stream's bounded
queue; a writer thread per stream drains its queue into the socket.  There is no per-chunk round
trip: the only waits are the queues' back-pressure and the bandwidth cap.

Bounded backlog: what is handed to the transport but not yet acknowledged would delay the final
copy if the engine paused the guest now, so it is kept small: one frame waiting per stream,
``TCP_NOTSENT_LOWAT`` in each socket, and the flight window over all streams (``window``).
``backlog_bytes`` reports it and ``drain`` waits for it before the engine pauses the guest.

What ``measured_goodput_Bps`` measures: the transfer rate of the stream, wire bytes (frame
headers included) acknowledged by the destination's TCP (``tcpi_bytes_acked`` summed over the
data streams; bytes written to the socket where TCP_INFO is missing) per 100 ms interval,
smoothed over the intervals in which data was waiting to be sent (``rate.RateEstimator``: an
interval that had nothing to send says nothing about the link), sampled every
``sample_interval_s``. Before its first interval: the busy-time goodput of
``flowctl.GoodputMeter``, which also drives the stream count.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from migrator.core.interfaces import (
    VM,
    FinishReport,
    Handed,
    PartialSendError,
    SendReport,
    WireCounts,
)
from migrator.memory.pages import PAGE_SIZE
from migrator.transport.channel import PeerAbortError, TransportError, tcp_info
from migrator.transport.controlstream import ControlStream, RoundCount
from migrator.transport.datastream import EOF_MARK, SLICE, DataStream
from migrator.transport.dialer import Dialer, most_telling
from migrator.transport.flowctl import GoodputMeter, StreamAdapter, TokenBucket
from migrator.transport.options import SenderStats, TransportOptions
from migrator.transport.rate import RateEstimator
from migrator.transport.sockets import SO_MAX_PACING_RATE
from migrator.transport.streams import StreamPool
from migrator.transport.window import FlightWindow
from migrator.wire.digest import CHUNK_BYTES, chunk_digest, combine
from migrator.wire.messages import Digest, RoundEnd, State, to_frame

log = logging.getLogger(__name__)

_EMPTY = np.empty(0, dtype=np.int64)
# A writer refused by the flight window looks again after this long, at least and at most.
ROOM_POLL_MIN_S = 0.002
ROOM_POLL_MAX_S = 0.02


class TcpSender:
    """``interfaces.Sender`` over TCP; ``connect()`` first, ``close()`` always (or ``with``)."""

    def __init__(self, dest: tuple[str, int], key: bytes, vm: VM, options: TransportOptions,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.dest, self.vm, self.opt, self.clock = dest, vm, options, clock
        self.stats = SenderStats()
        self.meter = GoodputMeter(options.goodput_window_s)
        self.rate = RateEstimator()
        self.adapter = StreamAdapter(options.streams, options.max_streams, options.min_gain)
        self.window = FlightWindow(
            bw_Bps=options.link_Bps, rtt_s=options.rtt_hint_s, streams=options.streams,
            total_unacked=lambda: self.pool.unacked(), window_bdps=options.window_bdps,
            bound=options.bound_window, grow=options.grow_window,
            notsent_lowat=options.notsent_lowat, pacing_headroom=options.pacing_headroom)
        self.dialer = Dialer(dest, key, options, self.window, self.stats, vm.npages)
        self.pool = StreamPool(lambda i: self.dialer.data(i, *self._writer_hooks()),
                               self.adapter, self.meter, options.adapt_interval_s,
                               self.stats.streams_used.append)
        self.control: ControlStream | None = None
        self._bucket: TokenBucket | None = None
        self._bucket_lock = threading.Lock()
        self._waiting = 0               # writers waiting for room in the flight window
        self._waiting_lock = threading.Lock()
        if options.max_bandwidth_mbps is not None:
            rate = options.max_bandwidth_mbps * 1e6 / 8
            self._bucket = TokenBucket(rate, max(2 * SLICE, rate * 0.02), clock())
        self._encoders = ThreadPoolExecutor(max_workers=max(1, min(options.max_streams,
                                                                   os.cpu_count() or 1)),
                                            thread_name_prefix="wanmig-enc")
        self._stop = threading.Event()
        self._sampler_thread: threading.Thread | None = None

    @property
    def streams(self) -> list[DataStream]:
        return self.pool.streams

    @property
    def session(self) -> str:
        return self.dialer.session

    # --- setup ---------------------------------------------------------------------------------

    def _writer_hooks(self) -> tuple[Callable[[int], None] | None,
                                     Callable[[DataStream, int], None] | None]:
        """What a data stream's writer asks before each slice: the rate cap, the window."""
        return (self._pace if self._bucket is not None else None,
                self._wait_room if self.window.size is not None else None)

    def connect(self) -> None:
        """The control stream and the initial data streams, all at once (``Dialer.together``).
        On failure every connection opened is kept in ``self`` for ``close()``."""
        control, streams, errors = self.dialer.together(self.opt.streams,
                                                         *self._writer_hooks())
        if control is not None:
            self.control = ControlStream(control)
        self.pool.adopt(streams)
        if errors:
            raise most_telling(errors)
        assert self.control is not None
        size = self.window.size
        self.stats.flight_window_bytes = int(size) if size else None
        self.stats.streams_used.append(len(self.streams))
        self.control.start()
        self._sampler_thread = threading.Thread(target=self._sampler, name="wanmig-gp",
                                                daemon=True)
        self._sampler_thread.start()
        log.info("connected to %s:%d: %d data streams, handshake RTT %.1f ms", *self.dest,
                 len(self.streams), self.stats.handshake_rtt_s * 1e3)

    # --- what the writers and the sampler do ---------------------------------------------------

    def _pace(self, nbytes: int) -> None:
        assert self._bucket is not None
        with self._bucket_lock:
            wait = self._bucket.reserve(nbytes, self.clock())
        if wait > 0:
            time.sleep(wait)

    def _wait_room(self, stream: DataStream, nbytes: int) -> None:
        """Block the writer of ``stream`` until ``nbytes`` more fit in the flight window. Room
        comes back at the link's rate for all writers waiting: each looks again after the
        time the link takes to free a slice for each of them (2 to 20 ms), not every 2 ms."""
        deadline = time.monotonic() + self.opt.timeout_s
        waiting = False
        try:
            while not self._stop.is_set() and not stream.ch.closed:
                if self.window.admit(stream.unacked(), nbytes):
                    return
                if time.monotonic() > deadline:
                    raise TransportError(f"{stream.ch.name}: nothing acknowledged for "
                                         f"{self.opt.timeout_s:g} s")
                if not waiting:
                    waiting = True
                    with self._waiting_lock:
                        self._waiting += 1
                bw = self.window.bw_Bps
                pause = self._waiting * nbytes / bw if bw > 0 else ROOM_POLL_MIN_S
                time.sleep(min(ROOM_POLL_MAX_S, max(ROOM_POLL_MIN_S, pause)))
        finally:
            if waiting:
                with self._waiting_lock:
                    self._waiting -= 1

    def _sampler(self) -> None:
        while not self._stop.wait(self.opt.sample_interval_s):
            self._sample()

    def _sample(self) -> None:
        streams = list(self.streams)
        now, acked = self.clock(), self.pool.acked()
        self.meter.add(now, acked, self.pool.handed())
        open_ = [s for s in streams if not s.ch.closed]
        self.rate.add(now, acked, any(s.unsent() > 0 for s in open_))
        self.window.step([i[0] for s in open_ if (i := tcp_info(s.ch.sock)) is not None],
                         self.opt.sample_interval_s)
        self.stats.flight_window_max_bytes = self.window.largest

    def _check(self) -> None:
        err = self.control.error if self.control is not None else None
        if err is not None:
            raise err if isinstance(err, TransportError) else TransportError(str(err))
        err = self.pool.error()
        if err is not None:
            raise err

    def _failed(self) -> Exception | None:
        try:
            self._check()
        except TransportError as exc:
            return exc
        return None

    # --- Sender ----------------------------------------------------------------------------------

    def send_pages(self, round_no: int, indices: np.ndarray, data: bytes, codec_name: str,
                   zero_indices: np.ndarray | None = None) -> SendReport:
        t0 = self.clock()
        self._check()
        assert self.control is not None
        if round_no != self.control.round.round:
            self.control.start_round(round_no, codec_name)
        self.pool.adapt()
        indices = np.asarray(indices, dtype=np.int64)
        zero = _EMPTY if zero_indices is None else np.asarray(zero_indices, dtype=np.int64)
        pages = np.frombuffer(data, dtype=np.uint8).reshape(-1, PAGE_SIZE) if len(indices) \
            else np.empty((0, PAGE_SIZE), np.uint8)
        n = len(self.streams)
        jobs = []
        for s in self.streams:
            if n == 1:
                idx, pg, zr = indices, pages, zero
            else:
                sel = indices % n == s.index % n
                idx, pg, zr = indices[sel], pages[sel], zero[zero % n == s.index % n]
            if len(idx) or len(zr):
                jobs.append((s, idx, pg, zr))
        big = len(data) >= 256 * 1024 and len(jobs) > 1
        if big:
            encoded = list(self._encoders.map(
                lambda j: self._encode(round_no, codec_name, *j), jobs))
        else:
            encoded = [self._encode(round_no, codec_name, *j) for j in jobs]
        deadline = time.monotonic() + self.opt.timeout_s
        wire = pages = zeros = 0
        # XBZRLE's caches tie a page to its stream; any other codec's frames go to the stream
        # with the least queued, so one stream with a smaller window (over a long RTT they
        # differ) does not hold the others back while the engine waits on its full queue.
        movable = codec_name != "xbzrle" and n > 1
        try:
            for (s, idx, _pg, zr), frames in zip(jobs, encoded, strict=True):
                if movable:
                    s = self.pool.with_room(deadline, self._failed)
                for frame in frames:
                    s.put(frame, deadline, self._failed)
                    wire += len(frame)
                s.pages += len(idx)
                s.zero_pages += len(zr)
                s.bytes_raw += len(idx) * PAGE_SIZE
                pages, zeros = pages + len(idx), zeros + len(zr)
        except Exception as exc:    # what was handed over before, for the abort's counters
            raise PartialSendError(exc, Handed(pages, zeros, pages * PAGE_SIZE, wire)) from exc
        r = self.control.round
        r.pages += len(indices)
        r.zero_pages += len(zero)
        r.bytes_raw += len(data)
        return SendReport(bytes_raw=len(data), bytes_on_wire=wire, seconds=self.clock() - t0)

    @staticmethod
    def _encode(round_no: int, codec: str, s: DataStream, idx: np.ndarray, pages: np.ndarray,
                zero: np.ndarray) -> list[bytes]:
        data = pages.tobytes() if len(idx) else b""
        return s.encoder.frames(round_no, idx, data, codec, zero)

    def wire_counts(self) -> WireCounts:
        """What the data streams' sockets took and the destination acknowledged so far."""
        streams = list(self.streams)
        return WireCounts(written=sum(s.written() for s in streams),
                          acked=sum(s.acked() for s in streams))

    def measured_goodput_Bps(self) -> float:  # noqa: N802
        """The stream's transfer rate (module docstring); 0 before anything was measured."""
        rate = self.rate.rate_Bps()
        return rate if rate is not None else self.meter.rate_Bps()

    def base_rtt_s(self) -> float:
        """The larger of the control socket's smoothed RTT and the handshake's round trip (a
        relay on the path answers TCP locally; the handshake is answered by the peer)."""
        srtt = self.control.srtt_s() if self.control is not None else 0.0
        return max(srtt, self.stats.handshake_rtt_s)

    def rtt_s(self) -> float:
        """The round-trip time (the backlog is the engine's: ``backlog_bytes``, ``drain``)."""
        return self.base_rtt_s()

    def _pace_at_link_rate(self) -> None:
        """From the end of pre-copy on, every stream is paced at its share of the measured
        goodput: what follows (the last rounds, the final copy) is small and must not lose a
        packet to a full bottleneck queue, which at 150 ms costs a retransmission timeout of
        a third of a second while the guest is paused."""
        share = self.window.final_pacing_Bps(self.meter.rate_Bps(), len(self.streams))
        if share is None:
            return
        for st in self.streams:
            if not st.ch.closed:
                st.ch.sock.setsockopt(socket.SOL_SOCKET, SO_MAX_PACING_RATE, share)

    def backlog_bytes(self) -> int:
        """Bytes sent but not yet acknowledged by the destination, over all data streams."""
        return self.pool.backlog_bytes()

    def wait_backlog(self, max_bytes: int, timeout_s: float) -> float:
        """Wait until at most ``max_bytes`` handed over are unacknowledged; seconds waited."""
        t0 = time.monotonic()
        while self.backlog_bytes() > max_bytes and time.monotonic() - t0 < timeout_s:
            self._check()
            time.sleep(0.002)
        return time.monotonic() - t0

    def drain(self, timeout_s: float, slack_bytes: int = 64 * 1024) -> float:
        """Wait until (almost) everything sent is acknowledged, then pace the streams for the
        final copy; seconds waited. Called before the guest is paused, so that the final copy
        is not queued behind a window of data. Not paced during the wait: what is left in
        flight may sit on one stream, which its share of the rate would slow to a crawl."""
        self.pool.freeze()
        waited = self.wait_backlog(slack_bytes, timeout_s)
        self._pace_at_link_rate()
        return waited

    def finish(self, state: bytes) -> FinishReport:
        """End the last round, STATE, end markers on the data streams, DIGEST; wait for ACK.

        The source digest is computed while the data streams drain.
        """
        assert self.control is not None
        t0 = self.clock()
        self._check()
        last = self.control.round.round
        self.control.end_round()
        self.control.round = RoundCount()
        self.control.send(State(state))
        deadline = time.monotonic() + self.opt.timeout_s
        for s in self.streams:
            marker = RoundEnd(max(last, 0), s.pages, s.zero_pages, s.bytes_raw)
            s.put(to_frame(marker), deadline, self._failed)
            s.put(EOF_MARK, deadline, self._failed)
        assert self.dialer.image_key is not None
        digest = Digest.keyed(self.dialer.image_key, self.vm.npages, source_digest(self.vm))
        self._check()
        self.control.send(digest)
        pending = self.pool.handed() - self.pool.acked()
        rate = max(self.meter.rate_Bps(), 1e5)
        ack = self.control.wait_ack(self.opt.timeout_s + max(pending, 0) / rate)
        if ack is None:
            err = self.control.error
            assert err is not None
            if isinstance(err, PeerAbortError):
                return FinishReport(False, False, self.clock() - t0, str(err))
            raise err
        return FinishReport(ack.ok, ack.digest_ok, self.clock() - t0, ack.message or None)

    # --- teardown --------------------------------------------------------------------------------

    def abort(self, reason: str) -> None:
        """Tell the destination to drop the migration (best effort)."""
        if self.control is not None:
            self.control.abort(reason)

    def close(self) -> None:
        self._stop.set()
        self.pool.close(self.opt.timeout_s)
        if self.control is not None:
            self.control.close()
        if self._sampler_thread is not None:
            self._sampler_thread.join(5.0)
        self._encoders.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> TcpSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def source_digest(vm: VM) -> bytes:
    """The digest of the paused guest's whole memory (``migrator.wire.digest``): the VM's own
    ``digest()`` when it has one (kept current while pre-copy ran, so only the chunks written
    since are hashed now), else chunk by chunk from copies of its pages."""
    own = getattr(vm, "digest", None)
    if callable(own):
        return own()
    batch = CHUNK_BYTES // PAGE_SIZE
    chunks = [chunk_digest(vm.page_bytes(np.arange(start, min(start + batch, vm.npages))))
              for start in range(0, vm.npages, batch)]
    return combine(chunks)
