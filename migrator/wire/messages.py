"""Payload layouts of the migration stream's messages (framing is in ``migrator.wire.frames``).

All integers big endian.  Binary layouts for everything sent often or large; JSON only for the
one-off HELLO, whose contents will grow (capabilities) without a version bump.

==========  ==============================================================================
HELLO       UTF-8 JSON object (npages, page_size, codecs, streams, ... ; free-form)
CHALLENGE   nonce_d[32]
AUTH        mac[32] nonce_s[32]                      (see migrator.wire.auth)
AUTH_OK     mac[32]
ROUND       round u32, total_pages u32, codec id u8  (pages planned: zero + non-zero)
PAGES       round u32, codec id u8, n_zero u32, n_pages u32,
            zero indices u32[n_zero], page indices u32[n_pages], encoded blob (rest)
ROUND_END   round u32, pages u32, zero_pages u32, bytes_raw u64
STATE       opaque device/CPU state bytes
DIGEST      npages u64, tag[32]: HMAC of the image digest (wire.digest) under the image key
            (wire.session.image_tag): the end-to-end check is keyed
ACK         ok u8, digest_ok u8, UTF-8 message (rest; empty on success)
ABORT       UTF-8 reason
==========  ==============================================================================

Page indices are u32: 2^32 pages of 4 KiB is 16 TiB of guest memory, far beyond the testbed.
A PAGES message must fit in one frame: senders cut rounds into chunks well below MAX_FRAME.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from migrator.wire.auth import MAC_BYTES, NONCE_BYTES
from migrator.wire.digest import image_digest
from migrator.wire.frames import MAX_FRAME, Frame, FrameError, MsgType, encode_frame
from migrator.wire.session import IMAGE_TAG_BYTES, image_tag

_U32 = struct.Struct(">I")
_PAGES_HEAD = struct.Struct(">IBII")
_ROUND = struct.Struct(">IIB")
_ROUND_END = struct.Struct(">IIIQ")
_DIGEST = struct.Struct(f">Q{IMAGE_TAG_BYTES}s")
_ACK = struct.Struct(">BB")


def _need(payload: bytes, size: int, name: str) -> None:
    if len(payload) < size:
        raise FrameError(f"{name} payload of {len(payload)} bytes, expected at least {size}")


def _exact(payload: bytes, size: int, name: str) -> None:
    if len(payload) != size:
        raise FrameError(f"{name} payload of {len(payload)} bytes, expected {size}")


@dataclass(frozen=True)
class Hello:
    TYPE: ClassVar[MsgType] = MsgType.HELLO
    info: dict = field(default_factory=dict)

    def payload(self) -> bytes:
        return json.dumps(self.info, sort_keys=True).encode()

    @classmethod
    def parse(cls, payload: bytes) -> Hello:
        try:
            info = json.loads(payload.decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise FrameError(f"HELLO payload is not UTF-8 JSON: {exc}") from exc
        if not isinstance(info, dict):
            raise FrameError("HELLO payload must be a JSON object")
        return cls(info)


@dataclass(frozen=True)
class Challenge:
    TYPE: ClassVar[MsgType] = MsgType.CHALLENGE
    nonce: bytes

    def payload(self) -> bytes:
        return self.nonce

    @classmethod
    def parse(cls, payload: bytes) -> Challenge:
        _exact(payload, NONCE_BYTES, "CHALLENGE")
        return cls(payload)


@dataclass(frozen=True)
class Auth:
    TYPE: ClassVar[MsgType] = MsgType.AUTH
    mac: bytes
    nonce: bytes

    def payload(self) -> bytes:
        return self.mac + self.nonce

    @classmethod
    def parse(cls, payload: bytes) -> Auth:
        _exact(payload, MAC_BYTES + NONCE_BYTES, "AUTH")
        return cls(payload[:MAC_BYTES], payload[MAC_BYTES:])


@dataclass(frozen=True)
class AuthOk:
    TYPE: ClassVar[MsgType] = MsgType.AUTH_OK
    mac: bytes

    def payload(self) -> bytes:
        return self.mac

    @classmethod
    def parse(cls, payload: bytes) -> AuthOk:
        _exact(payload, MAC_BYTES, "AUTH_OK")
        return cls(payload)


@dataclass(frozen=True)
class Round:
    TYPE: ClassVar[MsgType] = MsgType.ROUND
    round: int
    total_pages: int
    codec_id: int

    def payload(self) -> bytes:
        return _ROUND.pack(self.round, self.total_pages, self.codec_id)

    @classmethod
    def parse(cls, payload: bytes) -> Round:
        _exact(payload, _ROUND.size, "ROUND")
        return cls(*_ROUND.unpack(payload))


@dataclass(frozen=True, eq=False)
class Pages:
    TYPE: ClassVar[MsgType] = MsgType.PAGES
    round: int
    codec_id: int
    zero_indices: np.ndarray
    indices: np.ndarray
    blob: bytes

    def payload(self) -> bytes:
        return b"".join([
            _PAGES_HEAD.pack(self.round, self.codec_id, len(self.zero_indices), len(self.indices)),
            np.asarray(self.zero_indices).astype(">u4").tobytes(),
            np.asarray(self.indices).astype(">u4").tobytes(), self.blob])

    @classmethod
    def parse(cls, payload: bytes) -> Pages:
        _need(payload, _PAGES_HEAD.size, "PAGES")
        rnd, cid, n_zero, n_pages = _PAGES_HEAD.unpack_from(payload)
        end = _PAGES_HEAD.size + 4 * (n_zero + n_pages)
        _need(payload, end, "PAGES")
        idx = np.frombuffer(payload, ">u4", n_zero + n_pages, _PAGES_HEAD.size).astype(np.int64)
        return cls(rnd, cid, idx[:n_zero], idx[n_zero:], payload[end:])

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Pages) and (self.round, self.codec_id, self.blob)
                == (other.round, other.codec_id, other.blob)
                and np.array_equal(self.zero_indices, other.zero_indices)
                and np.array_equal(self.indices, other.indices))

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class RoundEnd:
    TYPE: ClassVar[MsgType] = MsgType.ROUND_END
    round: int
    pages: int
    zero_pages: int
    bytes_raw: int

    def payload(self) -> bytes:
        return _ROUND_END.pack(self.round, self.pages, self.zero_pages, self.bytes_raw)

    @classmethod
    def parse(cls, payload: bytes) -> RoundEnd:
        _exact(payload, _ROUND_END.size, "ROUND_END")
        return cls(*_ROUND_END.unpack(payload))


@dataclass(frozen=True)
class State:
    TYPE: ClassVar[MsgType] = MsgType.STATE
    data: bytes

    def payload(self) -> bytes:
        return self.data

    @classmethod
    def parse(cls, payload: bytes) -> State:
        return cls(payload)


@dataclass(frozen=True)
class Digest:
    TYPE: ClassVar[MsgType] = MsgType.DIGEST
    npages: int
    digest: bytes

    def payload(self) -> bytes:
        return _DIGEST.pack(self.npages, self.digest)

    @classmethod
    def parse(cls, payload: bytes) -> Digest:
        _exact(payload, _DIGEST.size, "DIGEST")
        return cls(*_DIGEST.unpack(payload))

    @classmethod
    def keyed(cls, image_key: bytes, npages: int, digest: bytes) -> Digest:
        """The DIGEST for an image of ``npages`` whose digest (``wire.digest``) is ``digest``."""
        return cls(npages, image_tag(image_key, npages, digest))

    @classmethod
    def of(cls, image_key: bytes, memory: np.ndarray) -> Digest:
        """DIGEST of a ``(npages, PAGE_SIZE)`` memory image, hashed in place (no copy)."""
        return cls.keyed(image_key, len(memory), image_digest(memory))


@dataclass(frozen=True)
class Ack:
    TYPE: ClassVar[MsgType] = MsgType.ACK
    ok: bool
    digest_ok: bool
    message: str = ""

    def payload(self) -> bytes:
        return _ACK.pack(self.ok, self.digest_ok) + self.message.encode()

    @classmethod
    def parse(cls, payload: bytes) -> Ack:
        _need(payload, _ACK.size, "ACK")
        ok, digest_ok = _ACK.unpack_from(payload)
        return cls(bool(ok), bool(digest_ok), payload[_ACK.size:].decode(errors="replace"))


@dataclass(frozen=True)
class Abort:
    TYPE: ClassVar[MsgType] = MsgType.ABORT
    reason: str

    def payload(self) -> bytes:
        return self.reason.encode()

    @classmethod
    def parse(cls, payload: bytes) -> Abort:
        return cls(payload.decode(errors="replace"))


Message = Hello | Challenge | Auth | AuthOk | Round | Pages | RoundEnd | State | Digest | Ack \
    | Abort
_BY_TYPE = {cls.TYPE: cls for cls in (Hello, Challenge, Auth, AuthOk, Round, Pages, RoundEnd,
                                       State, Digest, Ack, Abort)}


def to_frame(msg: Message, max_frame: int = MAX_FRAME) -> bytes:
    """The framed bytes of a message."""
    return encode_frame(msg.TYPE, msg.payload(), max_frame=max_frame)


def from_frame(frame: Frame) -> Message:
    """The message a frame carries; FrameError if its payload does not fit the layout."""
    return _BY_TYPE[frame.type].parse(frame.payload)
