"""Frame protection and the key schedule (pure): what a sealed frame hides and what it refuses."""

from __future__ import annotations

import zlib

import pytest

from migrator.core.policy import ENCRYPTIONS as POLICY_ENCRYPTIONS
from migrator.core.policy import parse_policy
from migrator.wire.frames import HEADER, FrameError, FrameReader, MsgType, encode_frame
from migrator.wire.seal import TAG_BYTES, Opener, Sealer, protection_for, refuse_protected
from migrator.wire.session import ENCRYPTIONS, derive, hello_hash, image_tag

KEY = b"s" * 32
SECRET = b"guest page bytes that must not show" * 20


def _pair(mode: str, key: bytes = KEY) -> tuple[Sealer, Opener]:
    return Sealer(mode, key), Opener(mode, key)


def _with_crc(frame: bytearray) -> bytes:
    """The frame with a right CRC again: anyone can make one, it has no key."""
    head = bytes(frame[:HEADER.size - 4])
    crc = zlib.crc32(bytes(frame[HEADER.size:]), zlib.crc32(head))
    return head + crc.to_bytes(4, "big") + bytes(frame[HEADER.size:])


def _read(wire: bytes):
    return FrameReader(max_frame=1 << 20).feed(wire)


@pytest.mark.parametrize("mode", ["aes-256-gcm", "chacha20-poly1305", "mac"])
def test_sealed_frames_open_in_order_and_hide_the_payload_unless_mac(mode):
    seal, open_ = _pair(mode)
    frames = [encode_frame(MsgType.PAGES, SECRET + bytes([i])) for i in range(3)]
    wire = [seal.seal(f) for f in frames]
    assert all(len(w) == len(f) + TAG_BYTES for w, f in zip(wire, frames, strict=True))
    assert (SECRET in wire[0]) is (mode == "mac"), "only the MAC mode leaves the payload clear"
    got = [open_.open(fr) for w in wire for fr in _read(w)]
    assert [g.payload for g in got] == [SECRET + bytes([i]) for i in range(3)]
    assert all(g.type == MsgType.PAGES and g.flags == 0 for g in got)


@pytest.mark.parametrize("mode", ["aes-256-gcm", "mac"])
def test_replay_reorder_tamper_retype_and_stripping_are_refused(mode):
    seal, _ = _pair(mode)
    a, b = (seal.seal(encode_frame(MsgType.PAGES, SECRET + bytes([i]))) for i in range(2))

    def opens(*wire: bytes) -> None:
        opener = Opener(mode, KEY)
        for w in wire:
            for fr in _read(w):
                opener.open(fr)

    opens(a, b)                                          # the untouched order opens
    for bad, why in [((a, a), "replayed"), ((b, a), "reordered"), ((b,), "dropped")]:
        with pytest.raises(FrameError, match="authentication tag"):
            opens(*bad)
            pytest.fail(f"a {why} frame opened")
    flipped = bytearray(a)
    flipped[HEADER.size + 3] ^= 1
    retyped = bytearray(a)
    retyped[5] = MsgType.ACK
    for bad in (flipped, retyped):
        with pytest.raises(FrameError, match="authentication tag"):
            opens(_with_crc(bad))
    plain = encode_frame(MsgType.ACK, b"\x01\x01")
    with pytest.raises(FrameError, match="unprotected or forged"):
        opens(plain)
    with pytest.raises(FrameError, match="without frame protection"):
        refuse_protected(_read(a)[0])


def test_another_key_cannot_open():
    seal, _ = _pair("aes-256-gcm")
    wire = seal.seal(encode_frame(MsgType.DIGEST, b"x" * 40))
    with pytest.raises(FrameError, match="authentication tag"):
        Opener("aes-256-gcm", b"t" * 32).open(_read(wire)[0])


def test_keys_differ_per_direction_connection_and_hello():
    nd, ns = b"d" * 32, b"n" * 32
    k = derive(KEY, nd, ns, hello_hash(b'{"role": "control"}'))
    assert len({k.source_to_dest, k.dest_to_source, k.image}) == 3
    assert k.sending("source") == k.receiving("dest") == k.source_to_dest
    assert derive(KEY, nd, ns, hello_hash(b'{"role": "control"}')).image == k.image
    others = [derive(KEY, b"e" * 32, ns, hello_hash(b"{}")), derive(KEY, nd, b"m" * 32,
              hello_hash(b"{}")), derive(KEY, nd, ns, hello_hash(b'{"role": "data"}')),
              derive(b"K" * 32, nd, ns, hello_hash(b'{"role": "control"}'))]
    assert all(o.source_to_dest != k.source_to_dest for o in others)
    assert "<hidden>" in repr(k) and KEY.hex() not in repr(k)


def test_image_tag_is_keyed_and_covers_the_page_count():
    d = b"\x07" * 16
    assert image_tag(KEY, 10, d) == image_tag(KEY, 10, d)
    assert image_tag(KEY, 11, d) != image_tag(KEY, 10, d)
    assert image_tag(b"o" * 32, 10, d) != image_tag(KEY, 10, d)


def test_what_protects_each_stream():
    assert protection_for("aes-256-gcm", "data") == "aes-256-gcm"
    assert protection_for("none", "control") == "mac"
    assert protection_for("none", "data") is None
    with pytest.raises(ValueError, match="unknown frame protection"):
        Sealer("rot13", KEY)


def test_policy_names_the_wire_encryptions_and_refuses_others():
    assert POLICY_ENCRYPTIONS == ENCRYPTIONS
    assert parse_policy({}).encryption == "aes-256-gcm"
    assert parse_policy({"encryption": "none"}).encryption == "none"
    from ground.config import ConfigError
    with pytest.raises(ConfigError, match="policy.encryption"):
        parse_policy({"encryption": "aes-128-ecb"})
