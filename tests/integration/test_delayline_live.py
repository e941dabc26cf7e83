"""The compiled delay line live, between two namespaces of its own (no switch): frames sent
through it leave when, and only when, the reference model (topologies/linkmodel.py) says, fed
the very arrival times the relay saw; and with offloads on, TCP's super-frames lose their wire
frames one by one at the configured rate, not whole."""

from __future__ import annotations

import json
import math
import random
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from topologies import delaybin
from topologies.linkmodel import LOST, QUEUE_FULL, LinkModel

pytestmark = pytest.mark.root

NS = ("wmtx1", "wmtr", "wmtx2")
ETHERTYPE = 0x88B6              # IEEE local experimental: no stack answers it


def sh(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def in_ns(ns: str, code: str, *args: str, timeout: float = 60) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c",
                             textwrap.dedent(code), *args], stdout=subprocess.PIPE, text=True)


@pytest.fixture
def line(choice):
    """x1 (a1) -- (ra) relay namespace (rb) -- (a2) x2, IPv4 only, offloads as the kernel
    has them (on); yields a function starting the relay with given arguments."""
    for ns in NS:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        sh("ip", "netns", "add", ns)
    procs: list[subprocess.Popen] = []
    try:
        for ns in NS:
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
               "net.ipv6.conf.default.disable_ipv6=1")
        sh("ip", "link", "add", "a1", "netns", NS[0], "type", "veth", "peer", "name", "ra",
           "netns", NS[1])
        sh("ip", "link", "add", "a2", "netns", NS[2], "type", "veth", "peer", "name", "rb",
           "netns", NS[1])
        for ns, dev in ((NS[0], "a1"), (NS[1], "ra"), (NS[1], "rb"), (NS[2], "a2")):
            sh("ip", "netns", "exec", ns, "ip", "link", "set", dev, "up", "promisc", "on")
        sh("ip", "netns", "exec", NS[0], "ip", "addr", "add", "10.77.0.1/24", "dev", "a1")
        sh("ip", "netns", "exec", NS[2], "ip", "addr", "add", "10.77.0.2/24", "dev", "a2")
        for ns in (NS[0], NS[2]):
            sh("ip", "netns", "exec", ns, "sysctl", "-qw",
               "net.ipv4.tcp_rmem=4096 131072 33554432", "net.ipv4.tcp_wmem=4096 65536 33554432")

        def start(stats: Path, *args: str) -> subprocess.Popen:
            proc = subprocess.Popen(["ip", "netns", "exec", NS[1], str(delaybin.binary()),
                                     "--if-a", "ra", "--if-b", "rb", "--stats", str(stats),
                                     *args], stdout=subprocess.PIPE, text=True)
            procs.append(proc)
            assert proc.stdout.readline().startswith("READY "), "the delay line did not start"
            return proc

        yield start
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=5)
        for ns in NS:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


CAPTURE = """
    import json, socket, struct, sys, time
    dev, seconds = sys.argv[1], float(sys.argv[2])
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88B6))
    s.setsockopt(socket.SOL_SOCKET, 35, 1)          # SO_TIMESTAMPNS
    s.setsockopt(socket.SOL_SOCKET, 33, 32 << 20)
    s.bind((dev, 0))
    s.settimeout(0.2)
    print("ready", flush=True)
    out, end = [], time.time() + seconds
    while time.time() < end:
        try:
            data, anc, _f, addr = s.recvmsg(2048, 64)
        except TimeoutError:
            continue
        if addr[2] == socket.PACKET_OUTGOING:
            continue
        sec, nsec = struct.unpack("qq", anc[0][2][:16])
        out.append([struct.unpack_from("!I", data, 14)[0], len(data), sec, nsec])
    drops = struct.unpack("II", s.getsockopt(263, 6, 8))[1]
    print(json.dumps({"frames": out, "drops": drops}))
"""

SEND = """
    import random, socket, struct, sys, time
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind(("a1", 0))
    rng = random.Random(int(sys.argv[1]))
    dst, src = bytes.fromhex("02000a4d0002"), bytes.fromhex("02000a4d0001")
    for seq in range(int(sys.argv[2])):
        size = rng.choice((60, 200, 800, 1514))
        s.send(dst + src + struct.pack("!HI", 0x88B6, seq) + bytes(size - 18))
        if seq % 40 == 39:          # bursts of 40 frames (26 kB): more than the queue holds
            time.sleep(rng.uniform(0.005, 0.02))
"""


def test_frames_leave_when_the_reference_model_says_and_the_same_ones_are_dropped(line,
                                                                                    tmp_path):
    link = {"delay_ms": 5.0, "jitter_ms": 0.5, "loss_pct": 3.0, "rate_mbps": 20.0,
            "queue_pkts": 12, "seed": 3, "burst_us": 20.0}
    line(tmp_path / "stats.json", "--delay-ms", "5", "--jitter-ms", "0.5", "--loss-pct", "3",
         "--rate-mbps", "20", "--queue-pkts", "12", "--seed", "3", "--burst-us", "20")
    n = 1500
    seen_in = in_ns(NS[1], CAPTURE, "ra", "9")       # what the relay received, as it saw it
    seen_out = in_ns(NS[2], CAPTURE, "a2", "9")      # what it sent, as the far end got it
    for cap in (seen_in, seen_out):
        assert cap.stdout.readline().strip() == "ready"
    sender = in_ns(NS[0], SEND, "8", str(n))
    assert sender.wait(timeout=60) == 0
    arrived = json.loads(seen_in.communicate(timeout=30)[0])
    left = json.loads(seen_out.communicate(timeout=30)[0])
    assert arrived["drops"] == 0 and left["drops"] == 0, "the test's own captures dropped"
    assert [f[0] for f in arrived["frames"]] == list(range(n)), "frames lost before the relay"
    model = LinkModel(link["delay_ms"] / 1e3, link["jitter_ms"] / 1e3, link["loss_pct"] / 100,
                      random.Random(link["seed"]), rate_bps=link["rate_mbps"] * 1e6,
                      queue_bytes=link["queue_pkts"] * 1514)
    # Seconds from a whole second near the start: small numbers keep every nanosecond (the
    # relay converts the same kernel stamps onto its monotonic clock, as exactly).
    s0 = arrived["frames"][0][2]
    due = {seq: model.release((sec - s0) + nsec * 1e-9, length)
           for seq, length, sec, nsec in arrived["frames"]}
    got = {seq: (sec - s0) + nsec * 1e-9 for seq, _len, sec, nsec in left["frames"]}
    dropped = {seq for seq, d in due.items() if d in (LOST, QUEUE_FULL)}
    stats_file = tmp_path / "stats.json"
    stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}
    context = (f"link {link}; {len(dropped)} dropped by the model "
               f"({sum(d == QUEUE_FULL for d in due.values())} by the queue), "
               f"{n - len(got)} not delivered; relay {stats.get('a_to_b')}")
    assert len(dropped) > 20 and any(d == QUEUE_FULL for d in due.values()), context
    assert set(got) == set(due) - dropped, (
        f"delivered differs: extra {sorted(set(got) - (set(due) - dropped))[:10]}, missing "
        f"{sorted((set(due) - dropped) - set(got))[:10]}\n{context}")
    late = [(got[s] - due[s]) * 1e6 for s in got]
    qs = statistics.quantiles(late, n=100)
    context += (f"; lateness us: min {min(late):.1f}, median {qs[49]:.1f}, p90 {qs[89]:.1f}, "
                f"p99 {qs[98]:.1f}, max {max(late):.1f}")
    # Never early (a few us for reading two clocks); within 50 us of the model's time at the
    # median: the relay's own accuracy. The tail is the machine's: timers here oversleep by
    # about 30 us, and now and then this 2-core VM is descheduled for milliseconds, making late
    # every frame due meanwhile (seen: p90 139-215 us, max 5.6 ms, in 2 runs of 10 with a
    # median of 26 us). It is bounded loosely, so that a relay that is late by design (a
    # wake-up per frame missed, a burst held) still fails.
    assert min(late) >= -5.0, context
    assert qs[49] <= 50.0, context
    assert qs[89] <= link["burst_us"] + 300.0, context
    assert max(late) <= 20000.0, context
    assert [f[0] for f in left["frames"]] == sorted(got), f"reordered\n{context}"


IPERF_S = 5.0


def test_one_percent_loss_loses_one_percent_of_wire_frames_one_by_one(line, tmp_path):
    stats_path = tmp_path / "stats.json"
    relay = line(stats_path, "--delay-ms", "2", "--loss-pct", "1", "--rate-mbps", "300",
                 "--queue-pkts", "1000", "--seed", "5", "--burst-us", "500")
    holes_code = """
        import json, socket, struct, sys, time
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
        s.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)
        s.bind(("a2", 0))
        s.settimeout(0.2)
        print("ready", flush=True)
        # Per connection: iperf3's control connection runs beside the data's.
        nxts, jumps, frames, end = {}, [], 0, time.time() + float(sys.argv[1])
        while time.time() < end:
            try:
                data, addr = s.recvfrom(128, socket.MSG_TRUNC)
            except TimeoutError:
                continue
            if addr[2] == socket.PACKET_OUTGOING or data[23] != 6:
                continue
            ihl = (data[14] & 15) * 4
            tcp = 14 + ihl
            total = struct.unpack_from("!H", data, 16)[0]
            size = total - ihl - (data[tcp + 12] >> 4) * 4
            if size <= 0:
                continue
            frames += 1
            flow = data[tcp:tcp + 4]
            seq = struct.unpack_from("!I", data, tcp + 4)[0]
            nxt = nxts.get(flow)
            if nxt is not None and 0 < (seq - nxt) % 2**32 < 2**30:
                jumps.append((seq - nxt) % 2**32)          # bytes the link never delivered
            if nxt is None or 0 <= (seq + size - nxt) % 2**32 < 2**30:
                nxts[flow] = (seq + size) % 2**32
        drops = struct.unpack("II", s.getsockopt(263, 6, 8))[1]
        print(json.dumps({"jumps": jumps, "frames": frames, "drops": drops}))
    """
    holes = in_ns(NS[2], holes_code, str(IPERF_S + 4))
    assert holes.stdout.readline().strip() == "ready"
    server = subprocess.Popen(["ip", "netns", "exec", NS[2], "iperf3", "-s", "-1"],
                              stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        sh("ip", "netns", "exec", NS[0], "iperf3", "-c", "10.77.0.2", "-t", str(IPERF_S))
    finally:
        server.kill()
        server.wait()
    seen = json.loads(holes.communicate(timeout=30)[0])
    relay.terminate()
    relay.wait(timeout=5)
    ab = json.loads(stats_path.read_text())["a_to_b"]
    n, lost = ab["rx_frames"], ab["drop_loss"]
    sd = math.sqrt(0.01 * 0.99 / n)
    jumps = seen["jumps"]
    context = (f"relay a->b {ab}; receiver: {seen['frames']} frames, {len(jumps)} holes, "
               f"median hole {statistics.median(jumps) if jumps else None} B, capture drops "
               f"{seen['drops']}")
    assert ab["rx_superframes"] > 200 and n / ab["rx_superframes"] > 3, \
        f"no super-frames crossed: offloads off?\n{context}"
    assert abs(lost / n - 0.01) <= 4 * sd, f"lost {lost} of {n} wire frames\n{context}"
    assert ab["tx_sends"] > ab["rx_superframes"], f"no super-frame was cut\n{context}"
    # Loss per wire frame: nearly every hole the receiver sees is one segment (two adjacent
    # losses in a hundredth of the cases); whole super-frames lost would leave holes of dozens.
    assert seen["drops"] == 0, f"the test's capture dropped frames\n{context}"
    assert jumps, f"the receiver saw no hole\n{context}"
    mss = statistics.median(jumps)
    assert 1000 <= mss <= 1460, context
    assert sum(j <= mss for j in jumps) >= 0.9 * len(jumps), context
    assert len(jumps) >= 0.8 * lost, f"fewer holes than lost wire frames\n{context}"
