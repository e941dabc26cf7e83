"""Framing of the migration stream: fixed versioned header, bounded payload, CRC32 per frame.

Why frame at all on top of TCP: the receiver must know where one message ends before it can
decode it, must refuse a length that would make it allocate gigabytes (a corrupted or hostile
header), and must notice corruption the TCP checksum misses (it is weak, and middleboxes on a
long path rewrite packets).  A version byte lets both ends refuse a peer that speaks another
layout instead of misreading it.

Header, 16 bytes, big endian (network order)::

    magic   4s  b'WMIG'
    version u8  WIRE_VERSION
    type    u8  MsgType
    flags   u16 bit 0: payload sealed (AEAD), bit 1: payload MACed (``migrator.wire.seal``)
    length  u32 payload bytes, at most the reader's ``max_frame`` (default MAX_FRAME = 8 MiB)
    crc32   u32 zlib.crc32 over the first 12 header bytes and then the payload

The CRC detects accidents, not attacks: authenticity comes from the handshake
(``migrator.wire.auth``) and, after it, every frame's tag (``migrator.wire.seal``). Before the
handshake a reader accepts frames of at most ``PREAUTH_MAX_FRAME`` bytes, so an unauthenticated
peer cannot make it allocate more.  Payload layouts of each message type are in
``migrator.wire.messages``.
"""

from __future__ import annotations

import enum
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from ground.config import ConfigError
from migrator.wire.auth import AuthError, answer, make_challenge, verify

__all__ = ["HEADER", "MAGIC", "MAX_FRAME", "PREAUTH_MAX_FRAME", "WIRE_VERSION", "AuthError",
           "Frame", "FrameError", "FrameReader", "MsgType", "answer", "encode_frame",
           "make_challenge", "read_frame", "verify"]

MAGIC = b"WMIG"
WIRE_VERSION = 3             # 3: sealed frames, keyed image check, HELLO in the MACs
MAX_FRAME = 8 * 1024 * 1024
PREAUTH_MAX_FRAME = 4096     # HELLO, CHALLENGE, AUTH, AUTH_OK, ABORT before authentication
HEADER = struct.Struct(">4sBBHII")
_CRC_SPAN = HEADER.size - 4


class MsgType(enum.IntEnum):
    """Message types; the numbers are part of the wire format, never reuse one."""

    HELLO = 1
    CHALLENGE = 2
    AUTH = 3
    AUTH_OK = 4
    ROUND = 5
    PAGES = 6
    ROUND_END = 7
    STATE = 8
    DIGEST = 9
    ACK = 10
    ABORT = 11


class FrameError(ValueError):
    """A frame that cannot be accepted; the stream is unusable after it (no resync)."""


@dataclass(frozen=True)
class Frame:
    type: MsgType
    payload: bytes
    flags: int = 0


def check_max_frame(max_frame: int, path: str = "transport.max_frame") -> int:
    if isinstance(max_frame, bool) or not isinstance(max_frame, int) \
            or not HEADER.size <= max_frame <= 0xFFFFFFFF:
        raise ConfigError(path, max_frame, f"an integer number of bytes from {HEADER.size} to "
                                           "4294967295")
    return max_frame


def encode_frame(msg_type: MsgType | int, payload: bytes = b"", flags: int = 0,
                 max_frame: int = MAX_FRAME) -> bytes:
    """Header + payload of one frame; FrameError if the payload exceeds ``max_frame``."""
    msg_type = MsgType(msg_type)
    if len(payload) > max_frame:
        raise FrameError(f"{msg_type.name} payload of {len(payload)} bytes exceeds the "
                         f"{max_frame}-byte frame limit; split it")
    head = HEADER.pack(MAGIC, WIRE_VERSION, msg_type, flags, len(payload), 0)[:_CRC_SPAN]
    crc = zlib.crc32(payload, zlib.crc32(head))
    return head + struct.pack(">I", crc) + payload


def _parse_header(head: bytes, max_frame: int) -> tuple[MsgType, int, int, int]:
    magic, version, type_, flags, length, crc = HEADER.unpack(head)
    if magic != MAGIC:
        raise FrameError(f"bad magic {magic!r}, expected {MAGIC!r}: not a wanmig migration "
                         "stream, or the stream lost its framing")
    if version != WIRE_VERSION:
        raise FrameError(f"unknown wire version {version}, this side speaks {WIRE_VERSION}")
    try:
        msg_type = MsgType(type_)
    except ValueError:
        raise FrameError(f"unknown message type {type_}") from None
    if length > max_frame:
        raise FrameError(f"oversize {msg_type.name} frame: length {length} exceeds the "
                         f"{max_frame}-byte limit")
    return msg_type, flags, length, crc


def _check_crc(head: bytes, payload: bytes, crc: int, msg_type: MsgType) -> None:
    got = zlib.crc32(payload, zlib.crc32(head[:_CRC_SPAN]))
    if got != crc:
        raise FrameError(f"CRC mismatch in {msg_type.name} frame of {len(payload)} bytes: "
                         f"header says {crc:#010x}, data gives {got:#010x}")


class FrameReader:
    """Incremental decoder for non-blocking sockets: ``feed`` bytes as they come, get frames.

    The header is validated as soon as its 16 bytes are in, so an oversize or foreign stream is
    refused before its payload is buffered.  Call ``close`` at EOF: leftover bytes mean the
    peer stopped mid-frame.
    """

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = check_max_frame(max_frame)
        self._buf = bytearray()
        self._head: tuple[MsgType, int, int, int] | None = None

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames = []
        while True:
            if self._head is None:
                if len(self._buf) < HEADER.size:
                    return frames
                self._head = _parse_header(bytes(self._buf[:HEADER.size]), self.max_frame)
            msg_type, flags, length, crc = self._head
            if len(self._buf) < HEADER.size + length:
                return frames
            head = bytes(self._buf[:HEADER.size])
            payload = bytes(self._buf[HEADER.size:HEADER.size + length])
            _check_crc(head, payload, crc, msg_type)
            del self._buf[:HEADER.size + length]
            self._head = None
            frames.append(Frame(msg_type, payload, flags))

    @property
    def pending(self) -> int:
        """Bytes buffered that do not yet make a whole frame."""
        return len(self._buf)

    def close(self) -> None:
        """Declare EOF; FrameError if a frame was cut short."""
        if self._buf:
            raise FrameError(f"truncated frame: stream ended with {len(self._buf)} bytes of an "
                             "incomplete frame")


def read_frame(recv_exactly: Callable[[int], bytes], max_frame: int = MAX_FRAME) -> Frame:
    """One frame from a blocking source; ``recv_exactly(n)`` returns fewer bytes only at EOF."""
    head = recv_exactly(HEADER.size)
    if len(head) < HEADER.size:
        raise FrameError(f"truncated frame: stream ended after {len(head)} of "
                         f"{HEADER.size} header bytes")
    msg_type, flags, length, crc = _parse_header(head, max_frame)
    payload = recv_exactly(length) if length else b""
    if len(payload) < length:
        raise FrameError(f"truncated {msg_type.name} frame: got {len(payload)} of {length} "
                         "payload bytes")
    _check_crc(head, payload, crc, msg_type)
    return Frame(msg_type, payload, flags)
