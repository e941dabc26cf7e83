"""How the compiled delay line cuts a GSO super-frame around a lost wire frame: each run of
surviving wire frames leaves as one frame whose headers say exactly what it carries (lengths,
sequence numbers, flags, IP checksum, and the TCP checksum left to the receiver as the kernel
leaves it: the pseudo-header's sum, to be completed over the segment), checked with scapy."""

from __future__ import annotations

import subprocess

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from topologies import delaybin

GSO_TCPV4, GSO_TCPV6, F_NEEDS_CSUM = 1, 4, 1
MSS = 1448


@pytest.fixture(scope="module")
def relay() -> str:
    return str(delaybin.build())


def super_frame(v6: bool, payload: bytes, flags: str = "PA") -> Ether:
    ip = IPv6(src="fd00::1", dst="fd00::2") if v6 else IP(src="10.1.1.1", dst="10.2.1.1",
                                                            id=4242, flags="DF")
    return Ether(src="02:00:0a:01:01:01", dst="02:00:0a:02:01:01") / ip / TCP(
        sport=40000, dport=7070, seq=1_000_000, ack=555, flags=flags, window=512,
        options=[("NOP", None), ("NOP", None), ("Timestamp", (1, 2))]) / payload


def cut(relay: str, frame: bytes, first: int, count: int, gso_type: int) -> list[str]:
    line = f"X {first} {count} {gso_type} {MSS} {frame.hex()}\n"
    done = subprocess.run([relay, "--trace", "--delay-ms", "1"], input=line,
                          capture_output=True, text=True, check=True, timeout=30)
    return done.stdout.split()


def ones_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


@pytest.mark.parametrize("v6", [False, True])
@pytest.mark.parametrize(("first", "count"), [(0, 3), (3, 1), (4, 6), (9, 3), (0, 12)])
def test_a_run_of_wire_frames_is_a_well_formed_frame(relay, v6, first, count):
    payload = bytes((i * 7 + 3) % 251 for i in range(MSS * 11 + 300))      # 12 wire frames
    sf = super_frame(v6, payload, flags="FPA" if not v6 else "CPA")
    raw = bytes(sf)
    y = cut(relay, raw, first, count, GSO_TCPV6 if v6 else GSO_TCPV4)
    kind, nseg, hdr_len = int(y[1]), int(y[2]), int(y[3])
    l4_off = 14 + (40 if v6 else 20)
    context = f"v6 {v6}, wire frames {first}+{count}: {y[:10]}"
    assert (kind, nseg, hdr_len) == (2 if v6 else 1, 12, l4_off + 32), context
    flags, gso_type, gso_size, vh_hdr, csum_start, csum_off = map(int, y[4:10])
    unit = bytes.fromhex(y[10])
    start, end = first * MSS, min(len(payload), (first + count) * MSS)
    assert unit[hdr_len:] == payload[start:end], context
    assert (flags, csum_start, csum_off) == (F_NEEDS_CSUM, l4_off, 16), context
    if end - start > MSS:
        assert (gso_type, gso_size, vh_hdr) == (GSO_TCPV6 if v6 else GSO_TCPV4, MSS, hdr_len)
    else:
        assert (gso_type, gso_size) == (0, 0), context
    # The receiver completes the TCP checksum over the segment from the partial sum in place.
    l4 = unit[l4_off:]
    full = (~ones_sum(l4)) & 0xFFFF
    done = bytearray(unit)
    done[l4_off + 16:l4_off + 18] = full.to_bytes(2, "big")
    pkt = Ether(bytes(done))
    ip = pkt[IPv6] if v6 else pkt[IP]
    tcp = pkt[TCP]
    check = ip.__class__(bytes(ip))
    del check[TCP].chksum
    assert tcp.chksum == (IPv6 if v6 else IP)(bytes(check))[TCP].chksum, context
    assert tcp.seq == 1_000_000 + start, context
    last = first + count == nseg
    assert bool(tcp.flags.F) == (last and not v6), context
    assert bool(tcp.flags.P) == last, context
    assert bool(tcp.flags.C) == (v6 and first == 0), context
    assert tcp.ack == 555 and tcp.options == sf[TCP].options, context
    if v6:
        assert ip.plen == len(l4), context
    else:
        assert ip.len == len(unit) - 14 and ip.id == 4242 + first, context
        check_ip = IP(bytes(ip))
        del check_ip.chksum
        assert ip.chksum == IP(bytes(check_ip)).chksum, context


def test_a_plain_frame_is_one_wire_frame(relay):
    raw = bytes(Ether() / IP(dst="10.2.1.1") / TCP() / (b"x" * 500))
    y = cut(relay, raw, 0, 1, 0)
    assert y[:3] == ["Y", "0", "1"], y


def test_a_udp_super_frame_is_counted_but_never_cut(relay):
    from scapy.layers.inet import UDP

    raw = bytes(Ether() / IP(dst="10.2.1.1") / UDP() / (b"u" * 5000))
    y = cut(relay, raw, 0, 1, 5)          # VIRTIO_NET_HDR_GSO_UDP_L4
    assert y[:4] == ["Y", "3", str(-(-5000 // MSS)), str(14 + 20 + 8)], y
    assert y[4] == "-", y
