"""Per-frame protection of an authenticated connection: an AEAD, or a MAC alone.

Each direction of a connection has its own key (``migrator.wire.session``) and a frame counter
that both ends keep; the counter is the AEAD's nonce (4 zero bytes, then the counter as u64), so
a frame replayed, dropped, reordered or moved to another connection fails its tag. The sealed
frame's header (magic, version, type, flags with the protection bit set, length) is the
associated data: its type and length are authenticated, not only its payload.

A sealed frame is an ordinary frame (``frames``: same header, CRC over what is sent) whose
payload is ``ciphertext || tag`` (``FLAG_SEALED``) or ``plaintext || tag`` (``FLAG_MACED``, the
mode ``encryption: none`` uses on the control stream: readable, but a forged ROUND_END, DIGEST
or ACK fails). A receiver that expects protection refuses an unprotected frame and the other way
round, so nobody can strip the protection of a frame.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from migrator.wire.frames import HEADER, MAGIC, WIRE_VERSION, Frame, FrameError, encode_frame

TAG_BYTES = 16
FLAG_SEALED = 0x1
FLAG_MACED = 0x2
PROTECTION_FLAGS = FLAG_SEALED | FLAG_MACED
_AEADS = {"aes-256-gcm": AESGCM, "chacha20-poly1305": ChaCha20Poly1305}
_NONCE = struct.Struct(">4xQ")
_AAD_SPAN = HEADER.size - 4


class _Primitive(Protocol):
    def encrypt(self, nonce: bytes, data: bytes, aad: bytes) -> bytes: ...
    def decrypt(self, nonce: bytes, data: bytes, aad: bytes) -> bytes: ...


class _Mac:
    """Integrity without secrecy, in the AEAD's shape: payload || HMAC-SHA256/128."""

    def __init__(self, key: bytes) -> None:
        self.key = key

    def _tag(self, nonce: bytes, data: bytes | memoryview, aad: bytes) -> bytes:
        return hmac.new(self.key, nonce + aad + bytes(data), hashlib.sha256).digest()[:TAG_BYTES]

    def encrypt(self, nonce: bytes, data: bytes | memoryview, aad: bytes) -> bytes:
        return bytes(data) + self._tag(nonce, data, aad)

    def decrypt(self, nonce: bytes, data: bytes, aad: bytes) -> bytes:
        body, tag = data[:-TAG_BYTES], data[-TAG_BYTES:]
        if len(data) < TAG_BYTES or not hmac.compare_digest(self._tag(nonce, body, aad), tag):
            raise InvalidTag
        return body


def _primitive(mode: str, key: bytes) -> tuple[_Primitive, int]:
    if mode == "mac":
        return _Mac(key), FLAG_MACED
    try:
        return _AEADS[mode](key), FLAG_SEALED
    except KeyError:
        raise ValueError(f"unknown frame protection {mode!r}, expected one of "
                         f"{', '.join([*_AEADS, 'mac'])}") from None


def _aad(type_: int, flags: int, length: int) -> bytes:
    return HEADER.pack(MAGIC, WIRE_VERSION, type_, flags, length, 0)[:_AAD_SPAN]


class Sealer:
    """Protects the frames one end sends on one connection, in the order they are sent."""

    overhead = TAG_BYTES

    def __init__(self, mode: str, key: bytes) -> None:
        self.mode = mode
        self._prim, self.flag = _primitive(mode, key)
        self.seq = 0

    def seal(self, frame: bytes | memoryview) -> bytes:
        """The protected frame for a whole frame (``frames.encode_frame``'s output)."""
        _magic, _version, type_, flags, length, _crc = HEADER.unpack_from(frame)
        if flags & PROTECTION_FLAGS:
            raise FrameError("frame already protected")
        # bytes: the installed cryptography takes no memoryview (one memcpy, ~10 GB/s)
        payload = bytes(memoryview(frame)[HEADER.size:HEADER.size + length])
        flags |= self.flag
        body = self._prim.encrypt(_NONCE.pack(self.seq), payload,
                                  _aad(type_, flags, length + TAG_BYTES))
        self.seq += 1
        return encode_frame(type_, body, flags, max_frame=len(body))


class Opener:
    """Checks (and decrypts) the frames one end receives on one connection, in order."""

    def __init__(self, mode: str, key: bytes) -> None:
        self.mode = mode
        self._prim, self.flag = _primitive(mode, key)
        self.seq = 0

    def open(self, frame: Frame) -> Frame:
        if frame.flags & PROTECTION_FLAGS != self.flag:
            raise FrameError(f"{frame.type.name} frame {self.seq} has protection flags "
                             f"{frame.flags:#x}, expected {self.flag:#x} ({self.mode}): "
                             "an unprotected or forged frame")
        try:
            plain = self._prim.decrypt(_NONCE.pack(self.seq), bytes(frame.payload),
                                       _aad(frame.type, frame.flags, len(frame.payload)))
        except InvalidTag:
            raise FrameError(f"{frame.type.name} frame {self.seq} failed its {self.mode} "
                             "authentication tag: tampered, forged, replayed or reordered"
                             ) from None
        self.seq += 1
        return Frame(frame.type, plain, frame.flags & ~PROTECTION_FLAGS)


def refuse_protected(frame: Frame) -> Frame:
    """On a connection without protection, a frame that claims some is refused."""
    if frame.flags & PROTECTION_FLAGS:
        raise FrameError(f"{frame.type.name} frame with protection flags {frame.flags:#x} on a "
                         "connection without frame protection")
    return frame


def protection_for(encryption: str, stream: str) -> str | None:
    """What protects a connection's frames: the AEAD of ``encryption``; with ``none``, a MAC on
    the control stream (small, and carries ROUND_END, DIGEST, ACK) and nothing on data streams
    (their pages are checked by the keyed image digest at the end)."""
    if encryption != "none":
        return encryption
    return "mac" if stream == "control" else None
