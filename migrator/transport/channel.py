"""One authenticated, framed TCP connection of a migration, used by both endpoints.

Why one class for both sides: the source and the destination must agree byte for byte on the
handshake and the framing, and every wait on the network needs the same treatment (a deadline,
a clear error naming the stream, an ABORT to the peer when the stream still works).  Reads are
blocking with a socket timeout (one thread per stream), which keeps the code straight-line;
``recv_into`` a preallocated buffer avoids copying each payload twice.

Handshake (``migrator.wire.auth``): source HELLO -> destination CHALLENGE -> source AUTH ->
destination AUTH_OK.  Either side answers a failed check with ABORT and closes.  Until it is
done a frame may be at most ``PREAUTH_MAX_FRAME`` bytes; after it, both ends derive the
connection's keys (``migrator.wire.session``) and every frame in either direction is sealed
with the encryption the source's HELLO asked for (``migrator.wire.seal``), or at least MACed.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from dataclasses import dataclass

from migrator.wire.auth import AuthError, answer, make_challenge, verify
from migrator.wire.frames import (
    HEADER,
    MAX_FRAME,
    PREAUTH_MAX_FRAME,
    Frame,
    FrameError,
    MsgType,
    read_frame,
)
from migrator.wire.messages import (
    Abort,
    Auth,
    AuthOk,
    Challenge,
    Hello,
    Message,
    from_frame,
    to_frame,
)
from migrator.wire.seal import Opener, Sealer, protection_for, refuse_protected
from migrator.wire.session import ENCRYPTIONS, SessionKeys, derive, hello_hash

log = logging.getLogger(__name__)

_TCP_INFO_LEN = 232
SO_RCVLOWAT = getattr(socket, "SO_RCVLOWAT", 18)
# A reader is woken once this much of what it waits for has arrived (or all of it, when less):
# not for every segment, as paced streams over a WAN arrive in many small pieces. Kept well
# below the receive buffer: Linux would otherwise grow the buffer and clamp the window to it.
RCVLOWAT_CAP = 256 * 1024
_TCPI_RTT = struct.Struct("=I")      # tcpi_rtt, microseconds, at offset 68
_TCPI_ACKED = struct.Struct("=Q")    # tcpi_bytes_acked at offset 120 (Linux >= 4.1)
_TCPI_NOTSENT = struct.Struct("=I")  # tcpi_notsent_bytes at offset 144 (Linux >= 4.6)


class TransportError(RuntimeError):
    """The peer went away, aborted, or did not answer in time; the migration cannot go on."""


class PeerAbortError(TransportError):
    """The peer sent ABORT with a reason."""


class IdleTimeoutError(TransportError):
    """Nothing at all arrived for ``timeout_s`` while waiting for the next frame (the stream is
    still in step: waiting again is safe)."""


def tcp_info(sock: socket.socket) -> tuple[float, int, int] | None:
    """``(smoothed RTT in s, bytes acknowledged, bytes queued in the socket and not yet sent)``
    from the kernel; None where unsupported."""
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
    except (OSError, AttributeError):
        return None
    if len(raw) < 148:
        return None
    return (_TCPI_RTT.unpack_from(raw, 68)[0] / 1e6, _TCPI_ACKED.unpack_from(raw, 120)[0],
            _TCPI_NOTSENT.unpack_from(raw, 144)[0])


class Channel:
    """A framed connection; ``name`` appears in every error (``data stream 3``).

    ``max_frame`` is the largest payload once authenticated; before, ``PREAUTH_MAX_FRAME``."""

    def __init__(self, sock: socket.socket, name: str, *, timeout_s: float,
                 max_frame: int = MAX_FRAME) -> None:
        self.sock = sock
        self.name = name
        self.timeout_s = timeout_s
        self.max_frame = max_frame
        self.read_limit = min(PREAUTH_MAX_FRAME, max_frame)
        self.bytes_sent = 0
        self.bytes_received = 0
        self.closed = False
        self.last_payload = b""              # of the last frame received (the HELLO's hash)
        self.sealer: Sealer | None = None
        self.opener: Opener | None = None
        self._send_lock = threading.Lock()
        self._lowat = 1                      # the socket's SO_RCVLOWAT, as last set
        sock.settimeout(timeout_s)

    def protect(self, mode: str | None, keys: SessionKeys, role: str) -> None:
        """From now on frames are sealed with ``mode`` (``seal.protection_for``; None: not at
        all) under the connection's keys; ``role`` is this end's, 'source' or 'dest'."""
        if mode is not None:
            self.sealer = Sealer(mode, keys.sending(role))
            self.opener = Opener(mode, keys.receiving(role))
        self.read_limit = self.max_frame + self.overhead

    @property
    def overhead(self) -> int:
        """Bytes sealing adds to each frame."""
        return self.sealer.overhead if self.sealer is not None else 0

    def seal(self, frame: bytes) -> bytes:
        """A whole frame as it must go on the wire (sealed when the connection is protected);
        call in sending order (the frame counter is the nonce)."""
        return self.sealer.seal(frame) if self.sealer is not None else frame

    # --- sending -------------------------------------------------------------------------------

    def send(self, msg: Message) -> int:
        with self._send_lock:
            return self.send_frame(self.seal(to_frame(msg, max_frame=self.max_frame)))

    def send_frame(self, frame: bytes | memoryview) -> int:
        """Raw bytes of (a part of) a frame already sealed (``seal``)."""
        try:
            self.sock.sendall(frame)
        except TimeoutError:
            raise TransportError(f"{self.name}: peer did not take data for "
                                 f"{self.timeout_s:g} s") from None
        except OSError as exc:
            raise TransportError(f"{self.name}: send failed: {exc}") from exc
        self.bytes_sent += len(frame)
        return len(frame)

    def try_abort(self, reason: str) -> None:
        """Best effort ABORT to the peer (the stream may already be dead)."""
        if self.closed or not self._send_lock.acquire(timeout=2.0):
            return
        try:
            self.sock.settimeout(min(self.timeout_s, 2.0))
            self.sock.sendall(self.seal(to_frame(Abort(reason[:1000]))))
        except (OSError, FrameError):
            pass
        finally:
            self._send_lock.release()

    # --- receiving -----------------------------------------------------------------------------

    def _recv_exactly(self, n: int, frame_start: bool = False) -> bytearray:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            self._wake_at(n - got)
            try:
                k = self.sock.recv_into(view[got:])
            except TimeoutError:
                if frame_start and got == 0:
                    raise IdleTimeoutError(f"{self.name}: nothing received for "
                                           f"{self.timeout_s:g} s") from None
                raise TransportError(f"{self.name}: stalled for {self.timeout_s:g} s inside a "
                                     f"frame ({got} of {n} bytes)") from None
            except OSError as exc:
                raise TransportError(f"{self.name}: receive failed: {exc}") from exc
            if k == 0:
                break
            got += k
        view.release()
        if got < n:
            del buf[got:]
        self.bytes_received += got
        return buf

    def _wake_at(self, need: int) -> None:
        """The reader is woken when ``need`` bytes (at most ``RCVLOWAT_CAP``) are there."""
        lowat = max(1, min(need, RCVLOWAT_CAP))
        if lowat != self._lowat:
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVLOWAT, lowat)
                self._lowat = lowat
            except OSError:
                pass

    def recv(self, *, eof_ok: bool = False) -> Message | None:
        """The next message; ABORT raises PeerAbortError.  At a clean EOF between frames: None if
        ``eof_ok`` else TransportError.  A cut or corrupt frame raises FrameError."""
        head = self._recv_exactly(HEADER.size, frame_start=True)
        if not head:
            if eof_ok:
                return None
            raise TransportError(f"{self.name}: peer closed the connection")
        pending = [head]

        def take(n: int) -> bytearray:
            return pending.pop() if pending else self._recv_exactly(n)

        try:
            frame = self._open(read_frame(take, self.read_limit))
        except FrameError as exc:
            raise FrameError(f"{self.name}: {exc}") from None
        self.last_payload = frame.payload
        msg = from_frame(frame)
        if frame.type == MsgType.ABORT:
            raise PeerAbortError(f"{self.name}: peer aborted: {msg.reason}")  # type: ignore[union-attr]
        return msg

    def _open(self, frame: Frame) -> Frame:
        return self.opener.open(frame) if self.opener is not None else refuse_protected(frame)

    def expect(self, cls: type, what: str) -> Message:
        msg = self.recv()
        if not isinstance(msg, cls):
            raise FrameError(f"{self.name}: expected {what}, got {type(msg).__name__}")
        return msg

    def close(self) -> None:
        """Close; a thread blocked reading this socket wakes up (shutdown, then close)."""
        if not self.closed:
            self.closed = True
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                self.sock.close()
            except OSError:
                pass


# --- handshake ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Handshake:
    """What an authenticated connection agreed: the source's HELLO, the connection's keys, the
    encryption in use, and (source side) the seconds from AUTH to AUTH_OK (one round trip)."""

    info: dict
    keys: SessionKeys
    encryption: str
    rtt_s: float = 0.0


def _stream_kind(info: dict) -> str:
    return "control" if info.get("role") == "control" else "data"


def client_handshake(ch: Channel, key: bytes, info: dict) -> Handshake:
    """Source side: ``info`` is the HELLO and must name its ``encryption``; on return the
    channel is protected."""
    encryption = info.get("encryption")
    if encryption not in ENCRYPTIONS:
        raise ValueError(f"HELLO encryption {encryption!r}, expected one of "
                         f"{', '.join(ENCRYPTIONS)}")
    hello = Hello(info)
    payload = hello.payload()
    ch.send(hello)
    h = hello_hash(payload)
    challenge = ch.expect(Challenge, "CHALLENGE")
    nonce_d = challenge.nonce  # type: ignore[union-attr]
    nonce_s = make_challenge()
    t0 = time.monotonic()
    ch.send(Auth(answer(key, nonce_d + h, "source"), nonce_s))
    ok = ch.expect(AuthOk, "AUTH_OK")
    rtt = time.monotonic() - t0
    try:
        verify(key, nonce_d + nonce_s + h, ok.mac, "dest")  # type: ignore[union-attr]
    except AuthError as exc:
        ch.try_abort(str(exc))
        raise AuthError(f"{ch.name}: {exc}") from None
    keys = derive(key, nonce_d, nonce_s, h)
    ch.protect(protection_for(encryption, _stream_kind(info)), keys, "source")
    return Handshake(info, keys, encryption, rtt)


def server_handshake(ch: Channel, key: bytes) -> Handshake:
    """Destination side: the peer's HELLO once it proved the key; the channel protected with
    the encryption the (authenticated) HELLO asked for."""
    hello = ch.expect(Hello, "HELLO")
    h = hello_hash(ch.last_payload)
    info = hello.info  # type: ignore[union-attr]
    encryption = info.get("encryption")
    if encryption not in ENCRYPTIONS:
        ch.try_abort(f"unknown encryption {str(encryption)[:40]!r}")
        raise FrameError(f"{ch.name}: HELLO encryption {str(encryption)[:40]!r}, expected one "
                         f"of {', '.join(ENCRYPTIONS)}")
    nonce_d = make_challenge()
    ch.send(Challenge(nonce_d))
    auth = ch.expect(Auth, "AUTH")
    try:
        verify(key, nonce_d + h, auth.mac, "source")  # type: ignore[union-attr]
    except AuthError as exc:
        ch.try_abort(f"authentication failed: {exc}")
        raise AuthError(f"{ch.name}: {exc}") from None
    nonce_s = auth.nonce  # type: ignore[union-attr]
    ch.send(AuthOk(answer(key, nonce_d + nonce_s + h, "dest")))
    keys = derive(key, nonce_d, nonce_s, h)
    ch.protect(protection_for(encryption, _stream_kind(info)), keys, "dest")
    return Handshake(info, keys, encryption)
