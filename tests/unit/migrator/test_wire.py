"""migrator.wire (frames, messages, auth): framing errors, layouts, handshake."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest

from ground.config import ConfigError
from migrator.wire import messages as m
from migrator.wire.auth import NONCE_BYTES
from migrator.wire.frames import (
    HEADER,
    MAX_FRAME,
    WIRE_VERSION,
    AuthError,
    Frame,
    FrameError,
    FrameReader,
    MsgType,
    answer,
    encode_frame,
    make_challenge,
    read_frame,
    verify,
)

KEY = b"k" * 32

ALL_MESSAGES = [
    m.Hello({"npages": 65536, "codecs": ["zstd-3"], "streams": 4}),
    m.Challenge(b"n" * 32),
    m.Auth(b"a" * 32, b"s" * 32),
    m.AuthOk(b"o" * 32),
    m.Round(3, 1000, 19),
    m.Pages(2, 19, np.array([5, 7]), np.array([1, 2, 4_000_000_000]), b"blob\x00"),
    m.RoundEnd(2, 1000, 50, 4096 * 950),
    m.State(b"\x01cpu-state" * 10),
    m.Digest(65536, b"d" * 32),
    m.Ack(True, True, ""),
    m.Ack(False, False, "digest mismatch"),
    m.Abort("operator cancelled"),
]


def stream_of(data: bytes):
    buf = io.BytesIO(data)
    return buf.read


@pytest.mark.parametrize("msg", ALL_MESSAGES, ids=lambda x: type(x).__name__)
def test_every_message_round_trips(msg):
    frame = read_frame(stream_of(m.to_frame(msg)))
    assert frame.type == msg.TYPE
    assert m.from_frame(frame) == msg


def test_all_types_covered():
    assert {msg.TYPE for msg in ALL_MESSAGES} == set(MsgType)


def test_reader_incremental_byte_by_byte():
    data = b"".join(m.to_frame(msg) for msg in ALL_MESSAGES)
    reader = FrameReader()
    frames = []
    for i in range(len(data)):
        frames += reader.feed(data[i:i + 1])
    reader.close()
    assert [m.from_frame(f) for f in frames] == ALL_MESSAGES
    assert reader.pending == 0


def test_header_layout():
    raw = encode_frame(MsgType.ACK, b"xy")
    magic, version, type_, flags, length, crc = HEADER.unpack(raw[:16])
    assert (magic, version, type_, flags, length) == (b"WMIG", WIRE_VERSION, 10, 0, 2)
    assert crc == zlib.crc32(b"xy", zlib.crc32(raw[:12]))


def test_truncated_frame():
    raw = encode_frame(MsgType.STATE, b"z" * 100)
    reader = FrameReader()
    assert reader.feed(raw[:-1]) == []
    with pytest.raises(FrameError, match="truncated frame"):
        reader.close()
    with pytest.raises(FrameError, match="truncated STATE frame: got 99 of 100"):
        read_frame(stream_of(raw[:-1]))
    with pytest.raises(FrameError, match="after 5 of 16 header bytes"):
        read_frame(stream_of(raw[:5]))


def test_oversize_rejected_on_header_alone():
    head = struct.pack(">4sBBHII", b"WMIG", WIRE_VERSION, MsgType.PAGES, 0, MAX_FRAME + 1, 0)
    with pytest.raises(FrameError, match="oversize PAGES frame: length 8388609 exceeds"):
        FrameReader().feed(head)               # refused before any payload arrives
    with pytest.raises(FrameError, match="exceeds the 100-byte frame limit"):
        encode_frame(MsgType.STATE, b"x" * 101, max_frame=100)
    small = FrameReader(max_frame=64)
    with pytest.raises(FrameError, match="exceeds the 64-byte limit"):
        small.feed(encode_frame(MsgType.STATE, b"x" * 65))


def test_bad_max_frame_is_config_error():
    with pytest.raises(ConfigError) as info:
        FrameReader(max_frame=0)
    assert info.value.path == "transport.max_frame"


@pytest.mark.parametrize("pos", [6, 7, 16, 20, 40])
def test_flipped_byte_is_crc_mismatch(pos):
    raw = bytearray(encode_frame(MsgType.STATE, bytes(range(30))))
    raw[pos] ^= 0x01                            # flags (6, 7) or payload bytes
    with pytest.raises(FrameError, match="CRC mismatch in STATE frame"):
        read_frame(stream_of(bytes(raw)))


def test_wrong_magic_version_type():
    raw = encode_frame(MsgType.ACK, b"\x01\x01")
    with pytest.raises(FrameError, match="bad magic b'XMIG'"):
        FrameReader().feed(b"X" + raw[1:])
    with pytest.raises(FrameError, match=f"unknown wire version 1, this side speaks "
                                         f"{WIRE_VERSION}"):
        FrameReader().feed(raw[:4] + b"\x01" + raw[5:])      # the digest was SHA-256 in 1
    with pytest.raises(FrameError, match="unknown message type 99"):
        FrameReader().feed(raw[:5] + b"\x63" + raw[6:])


@pytest.mark.parametrize(("msg_type", "payload", "text"), [
    (MsgType.CHALLENGE, b"short", "CHALLENGE payload of 5 bytes, expected 32"),
    (MsgType.PAGES, b"\x00" * 5, "PAGES payload of 5 bytes"),
    (MsgType.PAGES, struct.pack(">IBII", 0, 0, 2, 2) + b"\x00" * 8, "expected at least 29"),
    (MsgType.HELLO, b"[1, 2]", "JSON object"),
    (MsgType.HELLO, b"\xff", "not UTF-8 JSON"),
    (MsgType.DIGEST, b"\x00" * 39, "DIGEST payload of 39 bytes, expected 40"),
])
def test_malformed_payloads(msg_type, payload, text):
    with pytest.raises(FrameError, match=text):
        m.from_frame(Frame(msg_type, payload))


IMAGE_KEY = b"i" * 32


def test_digest_of_memory_changes_with_one_byte():
    mem = np.zeros((4, 4096), np.uint8)
    a = m.Digest.of(IMAGE_KEY, mem)
    mem[3, 4095] = 1
    b = m.Digest.of(IMAGE_KEY, mem)
    assert a.npages == 4 and a.digest != b.digest and len(a.digest) == 32
    mem[3, 4095] = 0
    assert m.Digest.of(IMAGE_KEY, mem) == a, "the same image gives the same keyed check"
    assert m.Digest.of(b"x" * 32, mem) != a, "another key gives another check"


def test_handshake_mutual_authentication():
    nonce_d = make_challenge()
    assert len(nonce_d) == NONCE_BYTES and nonce_d != make_challenge()
    nonce_s = make_challenge()
    mac_s = answer(KEY, nonce_d, "source")
    verify(KEY, nonce_d, mac_s, "source")                    # destination checks the source
    mac_d = answer(KEY, nonce_d + nonce_s, "dest")
    verify(KEY, nonce_d + nonce_s, mac_d, "dest")            # source checks the destination
    assert mac_s != answer(KEY, nonce_d, "dest")             # roles are not interchangeable


def test_wrong_key_fails():
    nonce = make_challenge()
    mac = answer(b"x" * 32, nonce)
    with pytest.raises(AuthError, match="source authentication failed: wrong shared key"):
        verify(KEY, nonce, mac)


def test_reflected_or_replayed_answer_fails():
    nonce = make_challenge()
    with pytest.raises(AuthError, match="dest authentication failed"):
        verify(KEY, nonce, answer(KEY, nonce, "source"), "dest")
    with pytest.raises(AuthError, match="source authentication failed"):
        verify(KEY, make_challenge(), answer(KEY, nonce, "source"))


def test_short_key_and_bad_mac_length():
    with pytest.raises(AuthError, match="at least 16 bytes, got 3"):
        answer(b"abc", make_challenge())
    with pytest.raises(AuthError, match="MAC of 5 bytes"):
        verify(KEY, make_challenge(), b"12345")
