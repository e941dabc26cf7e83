"""Measuring what a link really does: ping for RTT and loss, iperf3 for TCP goodput.

Parsers are pure (unit-tested on captured output); runners take Mininet hosts.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import time
from dataclasses import dataclass
from typing import Any

from ground.errors import NotAsAskedError

PING_COUNTS = re.compile(r"(\d+) packets transmitted, (\d+) received")
PING_RTT = re.compile(r"rtt min/avg/max/mdev = ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms")
IPERF_PORT = 5201


class MeasureError(NotAsAskedError):
    """A measurement tool failed or printed something that cannot be read."""


@dataclass(frozen=True)
class PingResult:
    sent: int
    received: int
    min_ms: float
    avg_ms: float
    max_ms: float
    mdev_ms: float

    @property
    def loss_pct(self) -> float:
        return 100.0 * (self.sent - self.received) / self.sent if self.sent else 0.0


@dataclass(frozen=True)
class IperfResult:
    goodput_mbps: float      # received payload, omitted seconds excluded
    retransmits: int
    seconds: float
    streams: int


def parse_ping(text: str) -> PingResult:
    counts = PING_COUNTS.search(text)
    if not counts:
        raise MeasureError(f"cannot read ping's summary from: {text.strip()[-300:]!r}")
    sent, received = int(counts.group(1)), int(counts.group(2))
    rtt = PING_RTT.search(text)
    if rtt is None:
        nan = math.nan
        return PingResult(sent, received, nan, nan, nan, nan)
    return PingResult(sent, received, *(float(rtt.group(i)) for i in range(1, 5)))


def parse_iperf(text: str) -> IperfResult:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise MeasureError(f"iperf3 did not print JSON: {text.strip()[-300:]!r}") from exc
    if not isinstance(data, dict):
        raise MeasureError(f"iperf3 printed JSON that is not an object: {text.strip()[-300:]!r}")
    if "error" in data:
        raise MeasureError(f"iperf3: {data['error']}")
    end = data.get("end", {})
    recv, sent = end.get("sum_received", {}), end.get("sum_sent", {})
    if "bits_per_second" not in recv:
        raise MeasureError(f"iperf3 JSON without end.sum_received: {sorted(end)}")
    streams = data.get("start", {}).get("test_start", {}).get("num_streams", 1)
    return IperfResult(goodput_mbps=recv["bits_per_second"] / 1e6,
                       retransmits=int(sent.get("retransmits", 0)),
                       seconds=float(recv.get("seconds", 0.0)), streams=int(streams))


def ping(src: Any, dst_ip: str, count: int, interval_s: float = 0.05,
         warmup: int = 3) -> PingResult:
    """``count`` pings after ``warmup`` unrecorded ones (ARP and MAC learning happen there)."""
    if warmup:
        src.cmd(f"ping -c {warmup} -i 0.2 -W 2 {shlex.quote(dst_ip)}")
    # -c alone (no -w): exactly ``count`` requests, each reply awaited up to -W seconds.
    out = src.cmd(f"ping -c {count} -i {interval_s} -W 5 -q {shlex.quote(dst_ip)}")
    return parse_ping(out)


def wait_listening(host: Any, port: int, timeout_s: float = 10.0) -> None:
    """Return once ``host`` has a TCP socket listening on ``port``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if f":{port} " in host.cmd(f"ss -Htln 'sport = :{port}'"):
            return
        time.sleep(0.05)
    raise MeasureError(f"nothing listens on {host.name}:{port} after {timeout_s} s")


def iperf(client: Any, server: Any, server_ip: str, seconds: float, omit_s: float = 2.0,
          streams: int = 1, port: int = IPERF_PORT) -> IperfResult:
    """TCP goodput from ``client`` to ``server``; the first ``omit_s`` seconds are not counted."""
    srv = server.popen(["iperf3", "-s", "-1", "-p", str(port)])
    try:
        wait_listening(server, port)
        out = client.cmd(f"iperf3 -c {shlex.quote(server_ip)} -p {port} -J -t {seconds:g} "
                         f"-O {omit_s:g} -P {streams}")
        return parse_iperf(out)
    finally:
        if srv.poll() is None:
            srv.terminate()
        srv.wait(timeout=5)
