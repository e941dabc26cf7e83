"""One authenticated, framed TCP connection of a migration, used by both endpoints.

Why one class for both sides: the source and the destination must agree byte for byte on the
handshake and the framing, and every wait on the network needs the same treatment (a deadline,
a clear error naming the stream, an ABORT to the peer when the stream still works).  Reads are
blocking with a socket timeout (one thread per stream), which keeps the code straight-line;
``recv_into`` a preallocated buffer avoids copying each payload twice.

Handshake (``migrator.wire.auth``): source HELLO -> destination CHALLENGE -> source AUTH ->
destination AUTH_OK.  Either side answers a failed check with ABORT and closes.
"""

from __future__ import annotations

import logging
import socket
import struct
import time

from migrator.wire.auth import AuthError, answer, make_challenge, verify
from migrator.wire.frames import HEADER, MAX_FRAME, FrameError, MsgType, read_frame
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

log = logging.getLogger(__name__)

_TCP_INFO_LEN = 232
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
    """A framed connection; ``name`` appears in every error (``data stream 3``)."""

    def __init__(self, sock: socket.socket, name: str, *, timeout_s: float,
                 max_frame: int = MAX_FRAME) -> None:
        self.sock = sock
        self.name = name
        self.timeout_s = timeout_s
        self.max_frame = max_frame
        self.bytes_sent = 0
        self.bytes_received = 0
        self.closed = False
        sock.settimeout(timeout_s)

    # --- sending -------------------------------------------------------------------------------

    def send(self, msg: Message) -> int:
        return self.send_frame(to_frame(msg, max_frame=self.max_frame))

    def send_frame(self, frame: bytes | memoryview) -> int:
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
        if self.closed:
            return
        try:
            self.sock.settimeout(min(self.timeout_s, 2.0))
            self.sock.sendall(to_frame(Abort(reason[:4000])))
        except OSError:
            pass

    # --- receiving -----------------------------------------------------------------------------

    def _recv_exactly(self, n: int, frame_start: bool = False) -> bytearray:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
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
            frame = read_frame(take, self.max_frame)
        except FrameError as exc:
            raise FrameError(f"{self.name}: {exc}") from None
        msg = from_frame(frame)
        if frame.type == MsgType.ABORT:
            raise PeerAbortError(f"{self.name}: peer aborted: {msg.reason}")  # type: ignore[union-attr]
        return msg

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


def client_handshake(ch: Channel, key: bytes, info: dict) -> float:
    """Source side; returns the seconds from AUTH to AUTH_OK (one round trip)."""
    ch.send(Hello(info))
    challenge = ch.expect(Challenge, "CHALLENGE")
    nonce_s = make_challenge()
    t0 = time.monotonic()
    ch.send(Auth(answer(key, challenge.nonce, "source"), nonce_s))  # type: ignore[union-attr]
    ok = ch.expect(AuthOk, "AUTH_OK")
    rtt = time.monotonic() - t0
    try:
        verify(key, challenge.nonce + nonce_s, ok.mac, "dest")  # type: ignore[union-attr]
    except AuthError as exc:
        ch.try_abort(str(exc))
        raise AuthError(f"{ch.name}: {exc}") from None
    return rtt


def server_handshake(ch: Channel, key: bytes) -> dict:
    """Destination side; returns the peer's HELLO info once it proved the key."""
    hello = ch.expect(Hello, "HELLO")
    nonce_d = make_challenge()
    ch.send(Challenge(nonce_d))
    auth = ch.expect(Auth, "AUTH")
    try:
        verify(key, nonce_d, auth.mac, "source")  # type: ignore[union-attr]
    except AuthError as exc:
        ch.try_abort(f"authentication failed: {exc}")
        raise AuthError(f"{ch.name}: {exc}") from None
    nonce_s = auth.nonce  # type: ignore[union-attr]
    ch.send(AuthOk(answer(key, nonce_d + nonce_s, "dest")))
    return hello.info  # type: ignore[union-attr]

