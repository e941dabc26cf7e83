"""AF_PACKET ring geometry and the tpacket2 header layout (no socket is opened)."""

from __future__ import annotations

import struct

import pytest

from topologies.packetring import BLOCK, HEADER, _req, geometry

MTUS = [576, 1500, 4000, 9000]
MIN_FRAMES = [1, 100, 4096, 5000, 100_000]


@pytest.mark.parametrize(("mtu", "frame"), [(1500, 2048), (9000, 16384), (576, 1024)])
def test_frame_size_for_mtu(mtu, frame):
    assert geometry(mtu, 4096).frame_size == frame


@pytest.mark.parametrize("mtu", MTUS)
@pytest.mark.parametrize("min_frames", MIN_FRAMES)
def test_geometry_invariants(mtu, min_frames):
    g = geometry(mtu, min_frames)
    per_block = g.block_size // g.frame_size
    assert g.frame_size & (g.frame_size - 1) == 0           # a power of two
    assert g.frame_size >= 96 + mtu + 18                      # headers, VLAN, padding fit
    assert g.frame_size % 16 == 0                             # TPACKET_ALIGNMENT
    assert g.frames >= min_frames
    assert g.frames % per_block == 0
    assert g.frames - min_frames < per_block                  # no more than one spare block
    assert g.block_size % 4096 == 0
    assert g.block_size % g.frame_size == 0
    assert g.blocks >= 1
    assert g.blocks * per_block == g.frames
    assert g.bytes == g.blocks * g.block_size


def test_geometry_1500_4096_frames_is_8_blocks_of_1mib():
    g = geometry(1500, 4096)
    assert (g.frame_size, g.frames, g.block_size, g.blocks) == (2048, 4096, BLOCK, 8)
    assert g.bytes == 8 << 20


def test_req_is_tpacket_req_in_kernel_order():
    g = geometry(1500, 5000)
    assert struct.unpack("<IIII", _req(g)) == (g.block_size, g.blocks, g.frame_size, g.frames)
    assert len(_req(g)) == 16


def test_header_is_24_bytes():
    assert HEADER.size == 24


def test_header_field_order():
    raw = HEADER.pack(1, 1514, 1500, 66, 80, 1_700_000_000, 123_456_789)
    status, length, snaplen, mac, net, sec, nsec = HEADER.unpack(raw)
    assert (status, length, snaplen, mac, net, sec, nsec) == \
        (1, 1514, 1500, 66, 80, 1_700_000_000, 123_456_789)
    # little-endian tpacket2_hdr offsets: u32 status@0, len@4, snaplen@8, u16 mac@12, net@14,
    # u32 sec@16, nsec@20
    assert struct.unpack_from("<I", raw, 4)[0] == 1514
    assert struct.unpack_from("<H", raw, 12)[0] == 66
    assert struct.unpack_from("<H", raw, 14)[0] == 80
    assert struct.unpack_from("<I", raw, 20)[0] == 123_456_789


def test_header_reads_from_a_slot_prefix():
    slot = bytearray(2048)
    HEADER.pack_into(slot, 0, 1, 60, 60, 66, 80, 5, 6)
    slot[24:32] = b"\xff" * 8                                  # vlan_tci, vlan_tpid, padding
    assert HEADER.unpack_from(slot, 0) == (1, 60, 60, 66, 80, 5, 6)
