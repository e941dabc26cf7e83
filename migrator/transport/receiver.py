"""The destination of a migration: accept, authenticate, apply pages, verify, acknowledge.

Why it is built this way:

* every connection proves the shared key before anything else is read from it (a control
  stream first, then data streams naming the control stream's session), and from then on every
  frame carries a tag (``migrator.wire.seal``); a connection that does not authenticate within
  ``handshake_timeout_s`` (a port scan, garbage, a silent peer, a wrong key) is dropped on its
  own and the listener goes on: only an authenticated peer can end the session. At most
  ``MAX_UNAUTHENTICATED`` connections are in their handshake at once (more are closed at
  once), and before authentication a frame is at most ``PREAUTH_MAX_FRAME`` bytes;
* one thread per connection reading with a socket timeout: a silent peer is an error after
  ``timeout_s``, except that the control stream may stay quiet for a whole round as long as the
  data streams keep delivering;
* pages are applied in frame order per stream, each stream with its own decoders (XBZRLE caches
  mirror the source's per-stream encoders).  Across streams, a page is written only if its
  round is not older than the round of what memory already holds for it
  (``RoundOrderedMemory``): a page that moved to another stream when the source added streams
  may arrive out of order, and the newer copy must win;
* the source's ROUND_END messages (control stream) say how many pages each round carried; on
  STATE (the last message before DIGEST) the destination waits until all of them arrived, then
  finishes the image digest while the source finishes its own, and compares on DIGEST, keyed
  with the control stream's image key (``session.image_tag``). The digest is kept current as
  pages are applied (``migrator.wire.incremental``), so finishing it hashes only the chunks
  written since their last hash, not the whole memory;
* any error on an authenticated connection (a truncated, oversized, corrupt or forged frame, a
  bad index, a timeout, an ABORT from the source) ends the migration: ABORT to the source when
  the control stream still works, every socket closed, and ``DestResult.error`` says what
  happened.  The guest is never resumed here unless the digests matched and the ACK went out.
"""

from __future__ import annotations

import hmac
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from migrator.memory.pages import PAGE_SIZE
from migrator.transport.channel import (
    Channel,
    Handshake,
    IdleTimeoutError,
    PeerAbortError,
    TransportError,
    server_handshake,
)
from migrator.transport.mirror import serve_mirror
from migrator.transport.roundmem import RoundOrderedMemory
from migrator.wire.frames import MAX_FRAME, WIRE_VERSION, FrameError
from migrator.wire.messages import Ack, Digest, Pages, Round, RoundEnd, State
from migrator.wire.pagestream import PagesDecoder

log = logging.getLogger(__name__)

MAX_UNAUTHENTICATED = 16         # connections in their handshake at once
HANDSHAKE_TIMEOUT_S = 10.0       # at most this (and at most timeout_s) to authenticate
# (npages) -> a new (npages, PAGE_SIZE) uint8 image, all zero (a new image: anonymous memory,
# a new shared-memory file, a new sparse disk): pages never written need no clearing.
MemoryFactory = Callable[[int], np.ndarray]


@dataclass
class DestResult:
    ok: bool                         # ACK sent with a matching digest, guest switched over
    digest_ok: bool
    error: str | None = None
    npages: int = 0
    pages_received: int = 0          # page updates received (zero and non-zero), all rounds
    pages_applied: int = 0           # of those, written (not superseded by a newer round)
    bytes_received: int = 0          # wire bytes over all streams
    data_streams: int = 0
    rounds: int = 0
    wait_s: float = 0.0              # from STATE until every page had arrived
    hash_s: float = 0.0              # finishing the image digest, once every page arrived
    resume_s: float = 0.0            # on_switchover()
    state: bytes = b""
    buffers: list[dict] = field(default_factory=list)
    encryption: str = ""             # what the authenticated source asked for (wire.seal)
    refused: int = 0                 # connections dropped before (or instead of) authentication
    refusals: list[str] = field(default_factory=list)    # why, the first few


class Receiver:
    """Runs one incoming migration on an already listening socket; see the module docstring."""

    def __init__(self, listener: socket.socket, key: bytes, memory_factory: MemoryFactory,
                 on_switchover: Callable[[], None], *, timeout_s: float,
                 max_frame: int = MAX_FRAME) -> None:
        self.listener, self.key = listener, key
        self.memory_factory, self.on_switchover = memory_factory, on_switchover
        self.timeout_s, self.max_frame = timeout_s, max_frame
        self.result = DestResult(ok=False, digest_ok=False)
        self.mem: RoundOrderedMemory | None = None
        self.session: str | None = None
        # Set once the control stream's HELLO is processed: the source opens its data streams
        # as soon as it is authenticated, and their HELLO may be read before that.
        self._session_ready = threading.Event()
        self.xbzrle_cache_mib = 64
        self.control: Channel | None = None
        self.image_key: bytes | None = None
        self.handshake_timeout_s = min(HANDSHAKE_TIMEOUT_S, timeout_s)
        self._unauthenticated = threading.BoundedSemaphore(MAX_UNAUTHENTICATED)
        self._channels: list[Channel] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._expected = 0
        self._open_streams = 0
        self._last_data = time.monotonic()
        self._hash: tuple[bytes, float] | None = None
        self._hash_done = threading.Event()

    # --- driver --------------------------------------------------------------------------------

    def run(self) -> DestResult:
        self.listener.settimeout(0.1)
        start = time.monotonic()
        try:
            while not self._done.is_set():
                if self.control is None and time.monotonic() - start > self.timeout_s:
                    why = f" ({self.result.refused} connections refused, the last: " \
                          f"{self.result.refusals[-1]})" if self.result.refused else ""
                    self._fail(TransportError(f"no source connected within "
                                              f"{self.timeout_s:g} s{why}"))
                    break
                try:
                    conn, addr = self.listener.accept()
                except TimeoutError:
                    continue
                if not self._unauthenticated.acquire(blocking=False):
                    conn.close()
                    self._refuse(f"{addr[0]}:{addr[1]}: {MAX_UNAUTHENTICATED} connections "
                                 "already authenticating")
                    continue
                self._threads = [t for t in self._threads if t.is_alive()]
                t = threading.Thread(target=self._serve, args=(conn, addr), daemon=True,
                                     name=f"wanmig-rx{len(self._threads)}")
                self._threads.append(t)
                t.start()
        except KeyboardInterrupt:
            self._fail(TransportError("destination interrupted"))
            raise
        finally:
            self._close_all()
            for t in self._threads:
                t.join(5.0)
        r = self.result
        r.bytes_received = sum(ch.bytes_received for ch in self._channels)
        if self.mem is not None:
            r.pages_received, r.pages_applied = self.mem.received, self.mem.applied
        return r

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            first = self.result.error is None and not self.result.ok
            if first:
                self.result.error = str(exc) or type(exc).__name__
                log.error("migration failed at the destination: %s", self.result.error)
        if first and self.control is not None and not isinstance(exc, PeerAbortError):
            self.control.try_abort(self.result.error or "destination error")
        self._done.set()
        self._close_all()
        if self.mem is not None:
            with self.mem.cv:
                self.mem.cv.notify_all()

    def _refuse(self, why: str) -> None:
        with self._lock:
            self.result.refused += 1
            if len(self.result.refusals) < 8:
                self.result.refusals.append(why[:300])
        log.warning("connection dropped: %s", why)

    def _close_all(self) -> None:
        with self._lock:
            channels = list(self._channels)
        for ch in channels:
            ch.close()
        if self.mem is not None:
            self.mem.digest.stop()

    # --- connections ---------------------------------------------------------------------------

    def _serve(self, conn: socket.socket, addr: tuple) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # replies go out at once
        ch = Channel(conn, f"connection from {addr[0]}:{addr[1]}", timeout_s=self.timeout_s,
                     max_frame=self.max_frame)
        with self._lock:
            self._channels.append(ch)
        try:
            hs = self._authenticate(ch)
            if hs is None or self._done.is_set():
                return
            role = hs.info.get("role")
            if role == "control":
                self._control(ch, hs)
            elif role == "data":
                self._data(ch, hs)
            elif role == "mirror":
                if self._joined(ch, hs, "mirror stream"):
                    assert self.mem is not None
                    serve_mirror(ch, self.mem, self.xbzrle_cache_mib)
            else:
                raise FrameError(f"{ch.name}: HELLO role {str(role)[:40]!r}, expected "
                                 "'control', 'data' or 'mirror'")
        except Exception as exc:  # noqa: BLE001 - any failure ends the migration cleanly
            if not self._done.is_set():
                self._fail(exc)
        finally:
            ch.close()

    def _authenticate(self, ch: Channel) -> Handshake | None:
        """The handshake within ``handshake_timeout_s``; None (connection dropped, the
        session untouched) when the peer does not prove the key."""
        try:
            ch.sock.settimeout(self.handshake_timeout_s)
            hs = server_handshake(ch, self.key)
            ch.sock.settimeout(self.timeout_s)
            return hs
        except Exception as exc:  # noqa: BLE001 - whoever it is, it is not our source
            if not self._done.is_set():
                self._refuse(f"{ch.name}: {exc}")
            return None
        finally:
            self._unauthenticated.release()

    def _control(self, ch: Channel, hs: Handshake) -> None:
        info = hs.info
        if self.control is not None:
            ch.try_abort("a migration is already in progress")
            self._refuse(f"{ch.name}: a second control stream (session "
                         f"{str(info.get('session'))[:40]!r})")
            return
        npages, page_size = info.get("npages"), info.get("page_size")
        if info.get("wire_version") != WIRE_VERSION or page_size != PAGE_SIZE \
                or not isinstance(npages, int) or npages < 1:
            raise FrameError(f"{ch.name}: HELLO wire_version {info.get('wire_version')!r}, "
                             f"page_size {page_size!r}, npages {npages!r}: expected version "
                             f"{WIRE_VERSION}, page size {PAGE_SIZE}, at least 1 page")
        ch.name = "control stream"
        memory = self.memory_factory(npages)
        if memory.shape != (npages, PAGE_SIZE):
            raise ValueError(f"memory_factory gave {memory.shape}, expected ({npages}, "
                             f"{PAGE_SIZE})")
        self.xbzrle_cache_mib = int(info.get("xbzrle_cache_mib", 64))
        self.mem = RoundOrderedMemory(memory)
        self.mem.digest.start()
        self.result.npages = npages
        self.session = str(info.get("session"))
        self.image_key = hs.keys.image
        self.result.encryption = hs.encryption
        self.control = ch
        self._session_ready.set()
        log.info("source authenticated: %d pages, session %s, encryption %s", npages,
                 self.session, hs.encryption)
        while True:
            msg = self._recv_control(ch)
            if isinstance(msg, Round):
                log.debug("round %d started", msg.round)
            elif isinstance(msg, RoundEnd):
                self._expected += msg.pages + msg.zero_pages
                self.result.rounds += 1
            elif isinstance(msg, State):
                self.result.state = msg.data
                threading.Thread(target=self._wait_and_hash, daemon=True,
                                 name="wanmig-hash").start()
            elif isinstance(msg, Digest):
                self._verify(ch, msg)
                return
            else:
                raise FrameError(f"control stream: unexpected {type(msg).__name__}")

    def _recv_control(self, ch: Channel) -> object:
        while True:
            try:
                return ch.recv()
            except IdleTimeoutError:
                quiet = time.monotonic() - self._last_data
                if quiet < self.timeout_s and not self._done.is_set():
                    continue        # a long round: the data streams are alive
                raise

    def _joined(self, ch: Channel, hs: Handshake, name: str) -> bool:
        """A data or mirror stream of the session whose control stream came first; else
        refused (False)."""
        info = hs.info
        self._session_ready.wait(self.timeout_s)
        if self.mem is None or info.get("session") != self.session \
                or hs.encryption != self.result.encryption:
            ch.try_abort("unknown session: connect the control stream first")
            self._refuse(f"{ch.name}: {name} for session {str(info.get('session'))[:40]!r}"
                         f" ({hs.encryption}), expected {self.session!r} "
                         f"({self.result.encryption or 'none yet'})")
            return False
        ch.name = name
        return True

    def _data(self, ch: Channel, hs: Handshake) -> None:
        info = hs.info
        if not self._joined(ch, hs, f"data stream {info.get('stream')}"):
            return
        with self._lock:
            self.result.data_streams += 1
        dec = PagesDecoder(self.mem.memory.shape[0], self.xbzrle_cache_mib)
        ended = carrying = False
        while True:
            msg = ch.recv(eof_ok=ended)
            self._last_data = time.monotonic()
            if msg is None:
                return
            if ended:
                raise FrameError(f"{ch.name}: {type(msg).__name__} after the end marker")
            if isinstance(msg, Pages):
                if not carrying:
                    carrying = self._carrying(+1)
                idx, pages, zero = dec.decode(msg)
                self.mem.apply(msg.round, idx, pages, zero)
            elif isinstance(msg, RoundEnd):
                if (msg.pages, msg.zero_pages) != (dec.pages, dec.zero_pages):
                    raise FrameError(f"{ch.name}: end marker counts {msg.pages} pages + "
                                     f"{msg.zero_pages} zero, received {dec.pages} + "
                                     f"{dec.zero_pages}")
                ended = True
                if carrying:
                    self._carrying(-1)
            else:
                raise FrameError(f"{ch.name}: unexpected {type(msg).__name__}")

    def _carrying(self, step: int) -> bool:
        """Count the data streams that carried pages and have not reached their end marker:
        the image is checked only once every one of them has (whatever follows a stream's
        last page, a replayed frame say, is read and refused before the ACK)."""
        assert self.mem is not None
        with self.mem.cv:
            self._open_streams += step
            self.mem.cv.notify_all()
        return True

    # --- verification --------------------------------------------------------------------------

    def _wait_and_hash(self) -> None:
        assert self.mem is not None
        t0 = time.monotonic()
        try:
            with self.mem.cv:
                last, last_t = self.mem.received, time.monotonic()
                while (self.mem.received < self._expected or self._open_streams) \
                        and not self._done.is_set():
                    if self.mem.received != last:
                        last, last_t = self.mem.received, time.monotonic()
                    if time.monotonic() - last_t > self.timeout_s:
                        raise TransportError(
                            f"{self.mem.received} of {self._expected} pages arrived; none for "
                            f"{self.timeout_s:g} s")
                    self.mem.cv.wait(0.1)
            if self._done.is_set():
                return
            t1 = time.monotonic()
            self.result.wait_s = t1 - t0
            digest, stale = self.mem.digest.finish()
            self._hash = (digest, time.monotonic() - t1)
            log.info("image digest: %d chunks to hash at the end, of %d",
                     stale, len(self.mem.digest.gen))
        except Exception as exc:  # noqa: BLE001
            self._fail(exc)
        finally:
            self._hash_done.set()

    def _verify(self, ch: Channel, msg: Digest) -> None:
        assert self.mem is not None
        if not self._hash_done.wait(self.timeout_s * 2 + 60) or self._hash is None:
            raise TransportError(self.result.error or "memory hash did not complete in time")
        digest, self.result.hash_s = self._hash
        assert self.image_key is not None
        npages = self.mem.memory.shape[0]
        ok = msg.npages == npages and hmac.compare_digest(
            msg.digest, Digest.keyed(self.image_key, npages, digest).digest)
        self.result.digest_ok = ok
        ch.send(Ack(ok, ok, "" if ok else "memory digest mismatch at the destination"))
        if not ok:
            raise TransportError("memory digest mismatch: the guest stays at the source")
        with self._lock:
            self.result.ok = True
        t0 = time.monotonic()
        try:
            self.on_switchover()
        except Exception as exc:  # noqa: BLE001 - the ACK is out: report, do not abort
            self.result.error = f"switchover at the destination failed: {exc}"
            log.error("%s", self.result.error)
        finally:
            self.result.resume_s = time.monotonic() - t0
            self._done.set()
        log.info("migration verified and switched over (hash %.3f s, resume %.3f s)",
                 self.result.hash_s, self.result.resume_s)
