"""The source side of the migration over TCP: one control stream and N parallel data streams.

Why several streams (as QEMU's multifd): on a long fat pipe one TCP flow recovers from a loss
at one segment per RTT and is bounded by its window; N flows share the pipe and lose less per
drop, and N encoders use N cores.  How pages are spread: page ``p`` goes on data stream
``p mod N``, each stream with its own encoder (``PageStreamEncoder``) and, at the destination,
its own decoder, so XBZRLE caches stay in step per stream.  Across rounds a page may change
stream (when N grows); the destination therefore applies a page only if its round is not older
than the one it already holds (round numbers strictly increase), so arrival order across streams
does not matter.

Stream lifecycle and messages (``migrator.wire.messages``):

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
``TCP_NOTSENT_LOWAT`` in each socket, and send buffers that hold one bandwidth-delay product
over all streams (``_stream_window``; autotuning would let TCP fill the bottleneck's queue too).
``backlog_bytes`` reports it and ``drain`` waits for it before the engine pauses the guest.

Socket buffers when the link is not known (no RTT hint): ``flowctl.buffer_plan``, left to the
kernel's autotuning when ``net.ipv4.tcp_wmem[2]`` suffices, else set with SO_SNDBUF, which the
kernel caps by ``net.core.wmem_max`` (and doubles); what was granted is read back and recorded
in ``stats()``.

What ``measured_goodput_Bps`` measures: wire bytes (frame headers included) acknowledged by the
destination's TCP (``tcpi_bytes_acked`` summed over the data streams; bytes written to the
socket where TCP_INFO is missing), per second of busy time, over a sliding window
(``flowctl.GoodputMeter``), sampled every ``sample_interval_s``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from migrator.codecs.names import codec_id
from migrator.core.interfaces import VM, FinishReport, SendReport
from migrator.memory.pages import PAGE_SIZE
from migrator.transport.channel import (
    Channel,
    PeerAbortError,
    TransportError,
    client_handshake,
    tcp_info,
)
from migrator.transport.flowctl import (
    GoodputMeter,
    StreamAdapter,
    TokenBucket,
    buffer_plan,
    flight_room,
    next_window,
)
from migrator.wire.auth import AuthError
from migrator.wire.digest import CHUNK_BYTES, combine
from migrator.wire.frames import MAX_FRAME, WIRE_VERSION
from migrator.wire.messages import Ack, Digest, Round, RoundEnd, State, to_frame
from migrator.wire.pagestream import PageStreamEncoder

log = logging.getLogger(__name__)

_EOF = b""                      # queue sentinel: send nothing more, half-close the stream
_SLICE = 64 * 1024              # bytes per token-bucket debit when a rate cap is set
_EMPTY = np.empty(0, dtype=np.int64)
_TCP_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25)   # Linux's number
MIN_WINDOW = 256 * 1024
WINDOW_CEILING = 256 << 20      # a growing flight window stops here (2 Gbit/s at 1 s RTT)
_SO_MAX_PACING_RATE = getattr(socket, "SO_MAX_PACING_RATE", 47)   # Linux's number


@dataclass(frozen=True)
class TransportOptions:
    streams: int = 4                       # data streams at the start
    max_streams: int = 8                   # adaptation adds streams up to this
    max_bandwidth_mbps: float | None = None
    bw_hint_Bps: float = 250e6 / 8         # noqa: N815 - link rate guess for the BDP
    rtt_hint_s: float = 0.0
    timeout_s: float = 30.0                # longest wait for the peer on any stream
    max_frame: int = MAX_FRAME
    xbzrle_cache_mib: int = 64
    queue_bytes: int = 512 * 1024          # per data stream: frames waiting for the writer
    notsent_lowat: int = 128 * 1024        # TCP_NOTSENT_LOWAT: unsent bytes kept in the socket
    adapt_interval_s: float = 1.0          # busy seconds between stream-count decisions
    min_gain: float = 0.10
    sample_interval_s: float = 0.02
    goodput_window_s: float = 2.0
    bound_window: bool = True              # send buffers hold one BDP in all (see _stream_window)
    window_bdps: float = 1.5              # in flight over all streams, in BDPs (see _flight_window)
    pacing_headroom: float = 2.0          # each stream paced at this times its share of the link
    grow_window: bool = False             # bw_hint_Bps is a guess: grow the window (next_window)

    def __post_init__(self) -> None:
        if not 1 <= self.streams <= self.max_streams:
            raise ValueError(f"need 1 <= streams ({self.streams}) <= max_streams "
                             f"({self.max_streams})")
        if self.max_bandwidth_mbps is not None and not self.max_bandwidth_mbps > 0:
            raise ValueError(f"max_bandwidth_mbps must be > 0, got {self.max_bandwidth_mbps}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")


def _read_sysctl(path: str, index: int = 0) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().split()[index])
    except (OSError, ValueError, IndexError):
        return None


def bound_send_buffer(sock: socket.socket, nbytes: int) -> dict:
    """SO_SNDBUF set to ``nbytes`` (the kernel doubles it for its bookkeeping; about that
    much payload fits). As root SO_SNDBUFFORCE passes net.core.wmem_max, which would otherwise
    cap it at a default 208 KiB."""
    force = getattr(socket, "SO_SNDBUFFORCE", 32)
    try:
        sock.setsockopt(socket.SOL_SOCKET, force, nbytes)
        how = "forced"
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, nbytes)
        how = "capped by net.core.wmem_max"
    granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    return {"asked": nbytes, "granted": granted,
            "plan": f"bounded to the stream's share of one BDP ({how})"}


def size_buffer(sock: socket.socket, option: int, bdp_bytes: float, streams: int) -> dict:
    """Apply ``flowctl.buffer_plan`` to one socket; returns what was asked and granted."""
    send = option == socket.SO_SNDBUF
    kind = "wmem" if send else "rmem"
    plan = buffer_plan(bdp_bytes, streams,
                       _read_sysctl(f"/proc/sys/net/ipv4/tcp_{kind}", 2),
                       _read_sysctl(f"/proc/sys/net/core/{kind}_max"))
    if plan.setsockopt_bytes is not None:
        sock.setsockopt(socket.SOL_SOCKET, option, plan.setsockopt_bytes)
    granted = sock.getsockopt(socket.SOL_SOCKET, option)
    if plan.setsockopt_bytes is not None and granted < plan.setsockopt_bytes:
        log.warning("%s: asked %d B, kernel granted %d B (raise net.core.%s_max)",
                    "SO_SNDBUF" if send else "SO_RCVBUF", plan.setsockopt_bytes, granted, kind)
    return {"asked": plan.setsockopt_bytes, "granted": granted, "plan": plan.reason}


class _DataStream:
    """One data connection: its encoder, a bounded frame queue and a writer thread."""

    def __init__(self, index: int, ch: Channel, encoder: PageStreamEncoder, limit: int,
                 pace: Callable[[int], None] | None,
                 room: Callable[[_DataStream, int], None] | None = None) -> None:
        self.index, self.ch, self.encoder, self.limit, self.pace = index, ch, encoder, limit, pace
        self.room = room
        info = tcp_info(ch.sock)
        self.acked0 = info[1] if info else 0          # handshake bytes, not migration data
        self.handed = 0                               # wire bytes queued so far
        self.pages = self.zero_pages = self.bytes_raw = 0
        self.error: Exception | None = None
        self._q: deque[bytes] = deque()
        self._q_bytes = 0
        self._cv = threading.Condition()
        self.thread = threading.Thread(target=self._run, name=f"wanmig-tx{index}", daemon=True)
        self.thread.start()

    def put(self, frame: bytes, deadline: float, failed: Callable[[], Exception | None]) -> None:
        with self._cv:
            while self._q_bytes >= self.limit and self.error is None:
                err = failed()
                if err is not None:
                    raise err
                if time.monotonic() > deadline:
                    raise TransportError(f"{self.ch.name}: send queue full for too long "
                                         "(peer not reading)")
                self._cv.wait(0.05)
            if self.error is not None:
                raise TransportError(f"{self.ch.name}: {self.error}")
            self._q.append(frame)
            self._q_bytes += len(frame)
            self.handed += len(frame)
            self._cv.notify_all()

    def acked(self) -> int:
        info = tcp_info(self.ch.sock) if not self.ch.closed else None
        return info[1] - self.acked0 if info else self.ch.bytes_sent

    def queued(self) -> int:
        """Bytes waiting here for the writer (no system call)."""
        return self._q_bytes

    def unsent(self) -> int:
        """Bytes queued here or in the socket that have not been transmitted yet."""
        info = tcp_info(self.ch.sock) if not self.ch.closed else None
        return self._q_bytes + (info[2] if info else 0)

    def unacked(self) -> int:
        """Bytes written to the socket (handshake included) that the peer has not
        acknowledged: in the socket or in flight."""
        info = tcp_info(self.ch.sock) if not self.ch.closed else None
        return max(0, self.ch.bytes_sent - info[1]) if info else 0

    def backlog(self) -> int:
        """Bytes handed over that the peer has not acknowledged: queued here, in the socket,
        or in flight."""
        info = tcp_info(self.ch.sock) if not self.ch.closed else None
        if info is None:
            return self._q_bytes
        return max(0, self.handed - (info[1] - self.acked0))

    def _run(self) -> None:
        try:
            while True:
                with self._cv:
                    while not self._q:
                        self._cv.wait()
                    frame = self._q[0]
                if not frame:
                    self.ch.sock.shutdown(socket.SHUT_WR)
                    with self._cv:
                        self._q.popleft()
                        self._cv.notify_all()
                    return
                if self.pace is None and self.room is None:
                    self.ch.send_frame(frame)
                else:
                    view = memoryview(frame)
                    for i in range(0, len(frame), _SLICE):
                        piece = view[i:i + _SLICE]
                        if self.room is not None:
                            self.room(self, len(piece))
                        if self.pace is not None:
                            self.pace(len(piece))
                        self.ch.send_frame(piece)
                with self._cv:
                    self._q.popleft()
                    self._q_bytes -= len(frame)
                    self._cv.notify_all()
        except Exception as exc:  # noqa: BLE001 - reported to the sending thread
            log.warning("%s: writer stopped: %s", self.ch.name, exc)
            with self._cv:
                self.error = exc
                self._cv.notify_all()

    def stop(self) -> None:
        with self._cv:
            self._q.clear()
            self._q.append(_EOF)
            self._cv.notify_all()


class _FlightGauge:
    """The data streams' unacknowledged bytes summed, read from the kernel at most every
    ``max_age_s`` (every writer asks before each slice) and raised by what is admitted
    meanwhile, so writers admitted together do not overshoot the window."""

    def __init__(self, streams: Callable[[], list[_DataStream]], max_age_s: float = 0.002
                 ) -> None:
        self._streams, self._max_age = streams, max_age_s
        self._lock = threading.Lock()
        self._total = 0
        self._t = -1.0
        self.held_back = False      # a writer was refused since this was last cleared

    def admit(self, own_unacked: int, nbytes: int, window: float) -> bool:
        with self._lock:
            now = time.monotonic()
            if now - self._t > self._max_age:
                self._total = sum(s.unacked() for s in self._streams())
                self._t = now
            if not flight_room(self._total, own_unacked, nbytes, window):
                self.held_back = True
                return False
            self._total += nbytes
            return True


@dataclass
class _RoundCount:
    round: int = -1
    pages: int = 0
    zero_pages: int = 0
    bytes_raw: int = 0


@dataclass
class SenderStats:
    streams_used: list[int] = field(default_factory=list)   # stream count after each change
    buffers: list[dict] = field(default_factory=list)       # per socket, what was granted
    handshake_rtt_s: float = 0.0
    congestion_control: str = ""                            # of the data streams, as granted
    flight_window_bytes: int | None = None                  # see TcpSender._flight_window
    flight_window_max_bytes: int | None = None              # largest, if it grew


class TcpSender:
    """``interfaces.Sender`` over TCP; ``connect()`` first, ``close()`` always (or ``with``)."""

    def __init__(self, dest: tuple[str, int], key: bytes, vm: VM, options: TransportOptions,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.dest, self.key, self.vm, self.opt, self.clock = dest, key, vm, options, clock
        self.session = secrets.token_hex(8)
        self.control: Channel | None = None
        self.streams: list[_DataStream] = []
        self.stats = SenderStats()
        self.meter = GoodputMeter(options.goodput_window_s)
        self.adapter = StreamAdapter(options.streams, options.max_streams, options.min_gain)
        self._bucket: TokenBucket | None = None
        self._bucket_lock = threading.Lock()
        if options.max_bandwidth_mbps is not None:
            rate = options.max_bandwidth_mbps * 1e6 / 8
            self._bucket = TokenBucket(rate, max(2 * _SLICE, rate * 0.02), clock())
        self._pool = ThreadPoolExecutor(max_workers=max(1, min(options.max_streams,
                                                               os.cpu_count() or 1)),
                                        thread_name_prefix="wanmig-enc")
        self._round = _RoundCount()
        self._error: Exception | None = None
        self._ack: Ack | None = None
        self._ack_cv = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._opening: threading.Thread | None = None
        self._opened: list[_DataStream] = []
        self._open_lock = threading.Lock()
        self._last_adapt = 0.0
        self._next_index = 0
        self._gauge = _FlightGauge(lambda: list(self.streams))
        self._window: float | None = None       # the flight window, once connected
        self._window_step_t = 0.0
        self._min_rtt = float("inf")

    # --- setup ---------------------------------------------------------------------------------

    def _bdp(self) -> float:
        bw = self.opt.bw_hint_Bps if self.opt.max_bandwidth_mbps is None \
            else min(self.opt.bw_hint_Bps, self.opt.max_bandwidth_mbps * 1e6 / 8)
        return bw * self.opt.rtt_hint_s

    def _stream_window(self) -> int | None:
        """Send buffer per data stream when the link is known: the streams together hold one
        bandwidth-delay product. With the kernel's autotuning TCP keeps going past that and
        fills the bottleneck's queue (a second BDP at 150 ms), all of which must drain while
        the guest is paused; one BDP in flight still fills the pipe."""
        if not self.opt.bound_window or self._bdp() <= 0 or self.opt.grow_window:
            return None         # a guessed rate must not cap the buffers: the window grows
        # The buffer holds the unsent bytes (up to TCP_NOTSENT_LOWAT) and those in flight.
        share = self.opt.window_bdps * self._bdp() / self.opt.streams
        return max(MIN_WINDOW, int(share) + self.opt.notsent_lowat)

    def _flight_window(self) -> float | None:
        """Bytes all data streams together may have written and not yet had acknowledged:
        ``window_bdps`` bandwidth-delay products, enough to fill the pipe and at most a
        fraction of an RTT of queue at the bottleneck. One sum over all streams, checked by
        each writer before each slice (``_wait_room``); the count of streams grows, the sum
        does not. Loss-based TCP left to its window fills the bottleneck's queue and then
        loses a burst: at 150 ms every loss episode is a third of a second of nothing
        acknowledged. Fixed once connected, unless the rate is a guess (``_step_window``)."""
        if not self.opt.bound_window or self._bdp() <= 0:
            return None
        if self._window is not None:
            return self._window
        return max(self.opt.window_bdps * self._bdp(), self._window_floor())

    def _window_floor(self) -> float:
        """At a near-zero RTT the BDP is a few KiB: the send buffers' old floor per stream."""
        return MIN_WINDOW * self.opt.streams

    def _step_window(self) -> None:
        """Once per round trip, when the link's rate is a guess: the window follows what the
        data streams' RTT says (``flowctl.next_window``)."""
        if not self.opt.grow_window or self._window is None:
            return
        rtts = [i[0] for s in list(self.streams)
                if not s.ch.closed and (i := tcp_info(s.ch.sock)) is not None and i[0] > 0]
        if not rtts:
            return
        srtt = sum(rtts) / len(rtts)
        self._min_rtt = min(self._min_rtt, min(rtts))
        now = time.monotonic()
        if now - self._window_step_t < max(srtt, self.opt.sample_interval_s):
            return
        self._window_step_t = now
        floor = self._window_floor()
        new = next_window(self._window, self._gauge.held_back, srtt, self._min_rtt, floor,
                          max(WINDOW_CEILING, floor))
        self._gauge.held_back = False
        if new != self._window:
            log.debug("flight window %.0f -> %.0f B (RTT %.1f ms, base %.1f ms)", self._window,
                      new, srtt * 1e3, self._min_rtt * 1e3)
            self._window = new
            self.stats.flight_window_max_bytes = max(self.stats.flight_window_max_bytes or 0,
                                                     int(new))

    def _wait_room(self, stream: _DataStream, nbytes: int) -> None:
        """Block the writer of ``stream`` until ``nbytes`` more fit in the flight window
        (``flowctl.flight_room``)."""
        deadline = time.monotonic() + self.opt.timeout_s
        while not self._stop.is_set() and not stream.ch.closed:
            window = self._flight_window()          # read each time: it may grow meanwhile
            if window is None or self._gauge.admit(stream.unacked(), nbytes, window):
                return
            if time.monotonic() > deadline:
                raise TransportError(f"{stream.ch.name}: nothing acknowledged for "
                                     f"{self.opt.timeout_s:g} s")
            time.sleep(0.002)

    def _stream_pacing_Bps(self) -> int | None:  # noqa: N802
        """Each data stream paced at its share of the link with headroom. Without pacing a
        stream that was idle (between the drain and the final copy) sends its whole window at
        once; the userspace switch's socket overflows and the final copy waits for
        retransmission timeouts (seconds at 150 ms) while the guest is paused."""
        if not self.opt.bound_window or self._bdp() <= 0:
            return None
        bw = self._bdp() / self.opt.rtt_hint_s
        return int(self.opt.pacing_headroom * bw / self.opt.streams)

    def _dial(self, name: str, nodelay: bool) -> Channel:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if nodelay:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            else:
                sock.setsockopt(socket.IPPROTO_TCP, _TCP_NOTSENT_LOWAT, self.opt.notsent_lowat)
                bound = self._stream_window()
                self.stats.buffers.append({"stream": name, **(
                    bound_send_buffer(sock, bound) if bound else
                    size_buffer(sock, socket.SO_SNDBUF, self._bdp(), self.opt.streams))})
                pace = None if self.opt.grow_window else self._stream_pacing_Bps()
                if pace:
                    sock.setsockopt(socket.SOL_SOCKET, _SO_MAX_PACING_RATE, pace)
                self.stats.congestion_control = congestion_control(sock)
            sock.settimeout(self.opt.timeout_s)
            sock.connect(self.dest)
        except OSError as exc:
            sock.close()
            raise TransportError(f"{name}: cannot connect to {self.dest[0]}:{self.dest[1]}: "
                                 f"{exc}") from exc
        return Channel(sock, name, timeout_s=self.opt.timeout_s, max_frame=self.opt.max_frame)

    def _hello(self, role: str, index: int | None = None) -> dict:
        info = {"role": role, "session": self.session, "wire_version": WIRE_VERSION}
        if role == "control":
            info.update(npages=int(self.vm.npages), page_size=PAGE_SIZE,
                        streams=self.opt.streams, max_streams=self.opt.max_streams,
                        xbzrle_cache_mib=self.opt.xbzrle_cache_mib)
        else:
            info["stream"] = index
        return info

    def connect(self) -> None:
        """The control stream and the initial data streams, all at once: each costs three
        round trips (SYN, HELLO/CHALLENGE, AUTH/AUTH_OK), and the destination holds a data
        stream until the control stream's session is set up. On failure every connection
        opened is kept in ``self`` for ``close()``."""
        errors: list[Exception] = []
        with ThreadPoolExecutor(max_workers=self.opt.streams,
                                thread_name_prefix="wanmig-open") as opening:
            futures = [opening.submit(self._open_stream, i) for i in range(self.opt.streams)]
            self._next_index = self.opt.streams
            try:
                ch = self._dial("control stream", nodelay=True)
                self.control = ch
                self.stats.handshake_rtt_s = client_handshake(ch, self.key,
                                                              self._hello("control"))
            except Exception as exc:  # noqa: BLE001 - reported below, with the streams'
                errors.append(exc)
            for fut in futures:
                try:
                    self.streams.append(fut.result())
                except Exception as exc:  # noqa: BLE001
                    errors.append(exc)
        if errors:
            raise most_telling(errors)
        self.streams.sort(key=lambda s: s.index)
        window = self._flight_window()
        self._window = window
        self.stats.flight_window_bytes = int(window) if window else None
        self.stats.streams_used.append(len(self.streams))
        for target, name in ((self._control_reader, "wanmig-ctl"), (self._sampler, "wanmig-gp")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        self._last_adapt = self.clock()
        log.info("connected to %s:%d: %d data streams, handshake RTT %.1f ms", *self.dest,
                 len(self.streams), self.stats.handshake_rtt_s * 1e3)

    def _open_stream(self, index: int) -> _DataStream:
        ch = self._dial(f"data stream {index}", nodelay=False)
        try:
            client_handshake(ch, self.key, self._hello("data", index))
        except BaseException:
            ch.close()
            raise
        enc = PageStreamEncoder(self.opt.xbzrle_cache_mib, self.opt.max_frame)
        return _DataStream(index, ch, enc, self.opt.queue_bytes,
                           self._pace if self._bucket is not None else None,
                           self._wait_room if self._flight_window() else None)

    # --- background threads --------------------------------------------------------------------

    def _pace(self, nbytes: int) -> None:
        assert self._bucket is not None
        with self._bucket_lock:
            wait = self._bucket.reserve(nbytes, self.clock())
        if wait > 0:
            time.sleep(wait)

    def _control_reader(self) -> None:
        assert self.control is not None
        self.control.sock.settimeout(None)   # quiet for whole rounds; finish() bounds the wait
        try:
            while not self._stop.is_set():
                msg = self.control.recv(eof_ok=True)
                if msg is None:
                    raise TransportError("control stream: destination closed the connection")
                if isinstance(msg, Ack):
                    with self._ack_cv:
                        self._ack = msg
                        self._ack_cv.notify_all()
                    return
                log.warning("control stream: unexpected %s ignored", type(msg).__name__)
        except Exception as exc:  # noqa: BLE001 - handed to the engine's thread
            if not self._stop.is_set():
                self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        with self._ack_cv:
            if self._error is None:
                self._error = exc
            self._ack_cv.notify_all()

    def _sampler(self) -> None:
        while not self._stop.wait(self.opt.sample_interval_s):
            self._sample()

    def _sample(self) -> None:
        streams = list(self.streams)
        acked = sum(s.acked() for s in streams)
        handed = sum(s.handed for s in streams)
        self.meter.add(self.clock(), acked, handed)
        self._step_window()

    def _check(self) -> None:
        if self._error is not None:
            err = self._error
            raise err if isinstance(err, TransportError) else TransportError(str(err))
        for s in self.streams:
            if s.error is not None:
                raise TransportError(f"{s.ch.name}: {s.error}")

    def _failed(self) -> Exception | None:
        try:
            self._check()
        except TransportError as exc:
            return exc
        return None

    # --- stream adaptation -----------------------------------------------------------------------

    def _adapt(self) -> None:
        with self._open_lock:
            if self._opened:
                self.streams.extend(self._opened)
                self._opened.clear()
                self.meter.reset()
                self.stats.streams_used.append(len(self.streams))
                log.info("now %d data streams", len(self.streams))
                self._last_adapt = self.clock()
                return
        if self._opening is not None and self._opening.is_alive():
            return
        if self.adapter.frozen or self.meter.busy_s() < self.opt.adapt_interval_s:
            return
        target = self.adapter.observe(len(self.streams), self.meter.rate_Bps())
        if target > len(self.streams):
            index = self._next_index
            self._next_index += 1
            self._opening = threading.Thread(target=self._open_more, args=(index,),
                                             name=f"wanmig-open{index}", daemon=True)
            self._opening.start()

    def _open_more(self, index: int) -> None:
        try:
            stream = self._open_stream(index)
        except Exception as exc:  # noqa: BLE001 - growing is optional; keep what we have
            log.warning("could not add data stream %d: %s", index, exc)
            self.adapter.frozen = True
            return
        with self._open_lock:
            self._opened.append(stream)

    # --- Sender ----------------------------------------------------------------------------------

    def _start_round(self, round_no: int, codec: str) -> None:
        assert self.control is not None
        self._end_round()
        self._round = _RoundCount(round_no)
        self.control.send(Round(round_no, 0, codec_id(codec)))

    def _end_round(self) -> None:
        r = self._round
        if r.round >= 0 and self.control is not None:
            self.control.send(RoundEnd(r.round, r.pages, r.zero_pages, r.bytes_raw))

    def send_pages(self, round_no: int, indices: np.ndarray, data: bytes, codec_name: str,
                   zero_indices: np.ndarray | None = None) -> SendReport:
        t0 = self.clock()
        self._check()
        if round_no != self._round.round:
            self._start_round(round_no, codec_name)
        self._adapt()
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
            encoded = list(self._pool.map(lambda j: self._encode(round_no, codec_name, *j),
                                          jobs))
        else:
            encoded = [self._encode(round_no, codec_name, *j) for j in jobs]
        deadline = time.monotonic() + self.opt.timeout_s
        wire = 0
        # XBZRLE's caches tie a page to its stream; any other codec's frames go to the stream
        # with the least queued, so one stream with a smaller window (over a long RTT they
        # differ) does not hold the others back while the engine waits on its full queue.
        movable = codec_name != "xbzrle" and n > 1
        for (s, idx, _pg, zr), frames in zip(jobs, encoded, strict=True):
            if movable:
                s = self._stream_with_room(deadline)
            for frame in frames:
                s.put(frame, deadline, self._failed)
                wire += len(frame)
            s.pages += len(idx)
            s.zero_pages += len(zr)
            s.bytes_raw += len(idx) * PAGE_SIZE
        r = self._round
        r.pages += len(indices)
        r.zero_pages += len(zero)
        r.bytes_raw += len(data)
        return SendReport(bytes_raw=len(data), bytes_on_wire=wire, seconds=self.clock() - t0)

    def _stream_with_room(self, deadline: float) -> _DataStream:
        """The least-queued stream whose queue has room, waiting until one has. Never one
        stream in particular: a stream just added is in slow start, and waiting on its full
        queue starves the others (measured: 0.7 s with nothing in flight at 150 ms)."""
        while True:
            open_ = [t for t in self.streams if t.queued() < t.limit]
            if open_:
                return min(open_, key=lambda t: t.queued())
            err = self._failed()
            if err is not None:
                raise err
            if time.monotonic() > deadline:
                raise TransportError("data streams: every send queue full for too long (peer "
                                     "not reading)")
            time.sleep(0.002)

    @staticmethod
    def _encode(round_no: int, codec: str, s: _DataStream, idx: np.ndarray, pages: np.ndarray,
                zero: np.ndarray) -> list[bytes]:
        data = pages.tobytes() if len(idx) else b""
        return s.encoder.frames(round_no, idx, data, codec, zero)

    def measured_goodput_Bps(self) -> float:  # noqa: N802
        return self.meter.rate_Bps()

    def base_rtt_s(self) -> float:
        """The larger of the control socket's smoothed RTT and the handshake's round trip (a
        relay on the path answers TCP locally; the handshake is answered by the peer)."""
        info = tcp_info(self.control.sock) if self.control and not self.control.closed else None
        return max(info[0] if info else 0.0, self.stats.handshake_rtt_s)

    def rtt_s(self) -> float:
        """The round-trip time (the backlog is the engine's: ``backlog_bytes``, ``drain``)."""
        return self.base_rtt_s()

    def _pace_at_link_rate(self) -> None:
        """From the end of pre-copy on, every stream is paced at its share of the measured
        goodput: what follows (the last rounds, the final copy) is small and must not lose a
        packet to a full bottleneck queue, which at 150 ms costs a retransmission timeout of
        a third of a second while the guest is paused."""
        if not self.opt.bound_window:
            return
        rate = self.meter.rate_Bps() or (self._bdp() / self.opt.rtt_hint_s
                                         if self.opt.rtt_hint_s else 0.0)
        if rate <= 0:
            return
        share = int(1.05 * rate / len(self.streams))
        for st in self.streams:
            if not st.ch.closed:
                st.ch.sock.setsockopt(socket.SOL_SOCKET, _SO_MAX_PACING_RATE, share)

    def backlog_bytes(self) -> int:
        """Bytes sent but not yet acknowledged by the destination, over all data streams."""
        return sum(s.backlog() for s in self.streams)

    def drain(self, timeout_s: float, slack_bytes: int = 64 * 1024) -> float:
        """Wait until (almost) everything sent is acknowledged; seconds waited. Called before
        the guest is paused, so that the final copy is not queued behind a window of data."""
        t0 = time.monotonic()
        self._pace_at_link_rate()
        while self.backlog_bytes() > slack_bytes and time.monotonic() - t0 < timeout_s:
            self._check()
            self._sample()
            time.sleep(0.002)
        return time.monotonic() - t0

    def finish(self, state: bytes) -> FinishReport:
        """End the last round, STATE, end markers on the data streams, DIGEST; wait for ACK.

        The source digest is computed while the data streams drain.
        """
        assert self.control is not None
        t0 = self.clock()
        self._check()
        last = self._round.round
        self._end_round()
        self._round = _RoundCount()
        self.control.send(State(state))
        deadline = time.monotonic() + self.opt.timeout_s
        for s in self.streams:
            marker = RoundEnd(max(last, 0), s.pages, s.zero_pages, s.bytes_raw)
            s.put(to_frame(marker), deadline, self._failed)
            s.put(_EOF, deadline, self._failed)
        digest = source_digest(self.vm)
        self._check()
        self.control.send(digest)
        pending = sum(s.handed for s in self.streams) - sum(s.acked() for s in self.streams)
        rate = max(self.meter.rate_Bps(), 1e5)
        wait_s = self.opt.timeout_s + max(pending, 0) / rate
        with self._ack_cv:
            end = time.monotonic() + wait_s
            while self._ack is None and self._error is None:
                left = end - time.monotonic()
                if left <= 0:
                    raise TransportError(f"control stream: no ACK within {wait_s:.1f} s")
                self._ack_cv.wait(min(left, 0.1))
            ack, err = self._ack, self._error
        if ack is None:
            assert err is not None
            if isinstance(err, PeerAbortError):
                return FinishReport(False, False, self.clock() - t0, str(err))
            raise err
        return FinishReport(ack.ok, ack.digest_ok, self.clock() - t0, ack.message or None)

    # --- teardown --------------------------------------------------------------------------------

    def abort(self, reason: str) -> None:
        """Tell the destination to drop the migration (best effort)."""
        if self.control is not None:
            self.control.try_abort(reason)

    def close(self) -> None:
        self._stop.set()
        if self._opening is not None:
            self._opening.join(self.opt.timeout_s)
        with self._open_lock:
            self.streams.extend(self._opened)
            self._opened.clear()
        for s in self.streams:
            s.ch.close()
            s.stop()
        if self.control is not None:
            self.control.close()
        for s in self.streams:
            s.thread.join(5.0)
        for t in self._threads:
            t.join(5.0)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> TcpSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def congestion_control(sock: socket.socket) -> str:
    """The socket's TCP congestion control (the namespace's default unless set): recorded,
    because machines differ (this one defaults to bbr, where Linux's own default is cubic)."""
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16)
    except (OSError, AttributeError):
        return ""
    return raw.split(b"\0", 1)[0].decode("ascii", "replace")


def most_telling(errors: list[Exception]) -> Exception:
    """Of the failures of connections opened together, the one that says why: a refused key
    or the peer's own reason before a connection merely closed (the destination closes every
    connection of a session when one fails)."""
    for kind in (AuthError, PeerAbortError):
        for exc in errors:
            if isinstance(exc, kind):
                return exc
    return errors[0]


def source_digest(vm: VM) -> Digest:
    """DIGEST of the paused guest's whole memory (``migrator.wire.digest``): the VM's own
    ``digest()`` when it has one (hashing its memory in place), else chunk by chunk from copies
    of its pages."""
    own = getattr(vm, "digest", None)
    if callable(own):
        return Digest(vm.npages, own())
    batch = CHUNK_BYTES // PAGE_SIZE
    chunks = [hashlib.sha256(vm.page_bytes(np.arange(start, min(start + batch, vm.npages))))
              .digest() for start in range(0, vm.npages, batch)]
    return Digest(vm.npages, combine(chunks))
