"""A TCP stream whose every byte and every segment is checked, for tests of the data path.

``python -m tests.integration.tcpcheck server PORT``: accepts one connection and writes a
counting byte stream (byte i is ``i % 251``) into it until killed.

``python -m tests.integration.tcpcheck client HOST PORT SECONDS OUT``: reads that stream for
SECONDS, checking every byte, while a packet socket on the default interface captures every TCP
segment from the server and checks its checksum with scapy. A segment whose checksum the
kernel left to be completed (``TP_STATUS_CSUMNOTREADY``: what offloads deliver) must hold the
pseudo-header's sum, so that completing it over the segment gives the checksum scapy computes;
any other must be valid as it is. Writes a JSON report to OUT.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import threading
import time

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_AUXDATA = 8
TP_STATUS_CSUMNOTREADY = 0x8
AUXDATA = struct.Struct("IIIHHHH")     # tp_status, tp_len, tp_snaplen, mac, net, vlan, tpid
PATTERN = bytes(i % 251 for i in range(251 * 1024))


def server(port: int) -> None:
    lsock = socket.create_server(("0.0.0.0", port))
    conn, _ = lsock.accept()
    offset = 0
    while True:
        start = offset % 251
        conn.sendall(PATTERN[start:start + 250 * 1024])
        offset += 250 * 1024
        time.sleep(0.01)


def ones_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def check_segment(frame: bytes, partial: bool) -> str | None:
    """None when the TCP checksum is right, else what is wrong."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    pkt = Ether(frame)
    if IP not in pkt or TCP not in pkt:
        return None
    ip = pkt[IP]
    fresh = IP(bytes(ip))
    del fresh[TCP].chksum
    want = IP(bytes(fresh))[TCP].chksum
    got = ip[TCP].chksum
    if partial:
        l4 = bytes(ip)[ip.ihl * 4:ip.len]
        got = (~ones_sum(l4)) & 0xFFFF
    if got != want:
        return f"seq {ip[TCP].seq} len {ip.len}: checksum {got:#06x}, expected {want:#06x}"
    return None


def capture(stop: threading.Event, peer: str, report: dict) -> None:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    sock.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)            # SO_RCVBUFFORCE
    sock.settimeout(0.2)
    peer_ip = socket.inet_aton(peer)
    while not stop.is_set():
        try:
            frame, anc, _flags, addr = sock.recvmsg(70000, socket.CMSG_SPACE(AUXDATA.size))
        except TimeoutError:
            continue
        if addr[2] == socket.PACKET_OUTGOING or len(frame) < 54 or frame[12:14] != b"\x08\x00" \
                or frame[23] != 6 or frame[26:30] != peer_ip:
            continue
        status = 0
        for level, kind, data in anc:
            if level == SOL_PACKET and kind == PACKET_AUXDATA:
                status = AUXDATA.unpack_from(data)[0]
        partial = bool(status & TP_STATUS_CSUMNOTREADY)
        report["segments"] += 1
        report["partial"] += partial
        report["largest"] = max(report["largest"], len(frame))
        bad = check_segment(frame, partial)
        if bad is not None:
            report["bad"].append(bad)
    report["capture_drops"] = struct.unpack("II", sock.getsockopt(SOL_PACKET, 6, 8))[1]


def expected(offset: int, n: int) -> bytes:
    """Bytes ``offset`` to ``offset + n`` of the stream."""
    head = PATTERN[offset % 251:]
    return (head + PATTERN * (n // len(PATTERN) + 1))[:n]


def client(host: str, port: int, seconds: float, out: str) -> None:
    report: dict = {"segments": 0, "partial": 0, "largest": 0, "bad": [], "bytes": 0,
                    "corrupt_at": None, "closed": False}
    stop = threading.Event()
    cap = threading.Thread(target=capture, args=(stop, host, report), daemon=True)
    cap.start()
    time.sleep(0.3)
    conn = socket.create_connection((host, port), timeout=10)
    conn.settimeout(5)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            data = conn.recv(1 << 20)
            if not data:
                report["closed"] = True
                break
            if report["corrupt_at"] is None and data != expected(report["bytes"], len(data)):
                report["corrupt_at"] = report["bytes"]
            report["bytes"] += len(data)
    except OSError as exc:
        report["error"] = str(exc)
    stop.set()
    cap.join(timeout=5)
    with open(out, "w") as fh:
        json.dump(report, fh)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(int(sys.argv[2]))
    else:
        client(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5])
