"""Shaping helpers for the WAN node: tc mirred redirect, the relay's sizing and wake-up."""

from __future__ import annotations

import math

import pytest

from topologies.shaping import (
    RELAY_BURST_MAX_US,
    RELAY_BURST_MIN_US,
    Direction,
    redirect_cmds,
    relay_burst_us,
    relay_ring_frames,
    relay_sndbuf_bytes,
    relay_store_bytes,
)


def direction(delay_ms=50.0, jitter_ms=0.0, loss_pct=0.0, bw_mbps=100.0, queue_pkts=1000,
              mtu=1500) -> Direction:
    return Direction(delay_ms=delay_ms, jitter_ms=jitter_ms, loss_pct=loss_pct, bw_mbps=bw_mbps,
                     queue_pkts=queue_pkts, mtu=mtu)


def test_redirect_cmds_exact_argv():
    assert redirect_cmds("wl1-eth0", "wl1-eth1") == [
        ["tc", "qdisc", "add", "dev", "wl1-eth0", "handle", "ffff:", "ingress"],
        ["tc", "filter", "add", "dev", "wl1-eth0", "parent", "ffff:", "protocol", "all", "u32",
         "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", "wl1-eth1"],
    ]


def test_redirect_cmds_direction_matters():
    fwd, back = redirect_cmds("a", "b"), redirect_cmds("b", "a")
    assert fwd != back
    assert fwd[0][4] == "a" and fwd[1][4] == "a" and fwd[1][-1] == "b"
    assert back[1][-1] == "a"


@pytest.mark.parametrize("d", [
    direction(delay_ms=0, bw_mbps=1),
    direction(delay_ms=0, bw_mbps=None, queue_pkts=1),
    direction(delay_ms=1, bw_mbps=10, queue_pkts=100),
])
def test_relay_ring_frames_floor(d):
    assert relay_ring_frames(d) == 4096


def test_relay_ring_frames_grows_with_rate_and_delay():
    base = direction(delay_ms=100, bw_mbps=1000, queue_pkts=100)
    faster = direction(delay_ms=100, bw_mbps=5000, queue_pkts=100)
    longer = direction(delay_ms=500, bw_mbps=1000, queue_pkts=100)
    jittery = direction(delay_ms=100, jitter_ms=20, bw_mbps=1000, queue_pkts=100)
    bigger_queue = direction(delay_ms=100, bw_mbps=1000, queue_pkts=20_000)
    n = relay_ring_frames(base)
    assert n > 4096
    assert relay_ring_frames(faster) > n
    assert relay_ring_frames(longer) > n
    assert relay_ring_frames(jittery) > n
    assert relay_ring_frames(bigger_queue) > n


@pytest.mark.parametrize("d", [
    direction(delay_ms=75, bw_mbps=250, queue_pkts=3096),
    direction(delay_ms=500, jitter_ms=50, bw_mbps=1000, queue_pkts=1000),
    direction(delay_ms=1000, bw_mbps=10_000, queue_pkts=100, mtu=9000),
    direction(delay_ms=75, bw_mbps=None, queue_pkts=1000),
])
def test_relay_ring_frames_covers_twice_queue_and_in_flight(d):
    rate = d.bw_mbps if d.bw_mbps is not None else 10_000.0   # unshaped: for 10 Gbit/s
    in_flight = math.ceil(rate * 1e6 / 8 * (d.delay_ms + 3 * d.jitter_ms) / 1e3 / d.frame_bytes)
    assert relay_ring_frames(d) >= 2 * (d.queue_pkts + in_flight)
    if d.bw_mbps is not None:
        assert relay_ring_frames(d) >= 2 * (d.queue_pkts + d.in_flight_pkts())


def test_relay_ring_frames_exact_for_a_known_link():
    d = direction(delay_ms=100, bw_mbps=1000, queue_pkts=1000)
    in_flight = math.ceil(1000e6 / 8 * 0.1 / 1514)
    assert in_flight == 8257
    assert relay_ring_frames(d) == 2 * (1000 + in_flight)


@pytest.mark.parametrize("d", [direction(), direction(mtu=576), direction(mtu=9000),
                               direction(bw_mbps=None)])
def test_relay_sndbuf_at_least_16_mib(d):
    n = relay_sndbuf_bytes(d)
    assert n >= 16 << 20
    assert n >= 1024 * 2 * d.frame_bytes
    assert isinstance(n, int)


def test_relay_sndbuf_grows_for_jumbo_frames():
    assert relay_sndbuf_bytes(direction(mtu=9000)) > relay_sndbuf_bytes(direction(mtu=1500))


@pytest.mark.parametrize("d", [
    direction(delay_ms=75, bw_mbps=1000, queue_pkts=12384),
    direction(delay_ms=0, bw_mbps=100, queue_pkts=100),
    direction(delay_ms=150, jitter_ms=10, bw_mbps=None, queue_pkts=1000, mtu=9000),
])
def test_relay_store_holds_twice_the_queue_and_the_bytes_in_flight(d):
    rate = d.bw_mbps if d.bw_mbps is not None else 10_000.0
    in_flight = rate * 1e6 / 8 * (d.delay_ms + 4 * d.jitter_ms) / 1e3
    n = relay_store_bytes(d)
    assert n >= 2 * (d.queue_pkts * d.frame_bytes + in_flight) + (8 << 20) - 1
    assert isinstance(n, int)


def test_relay_store_for_150ms_at_1gbit_with_a_bdp_queue_is_65_mb():
    # 2 x (12384 frames of 1514 bytes + 1 Gbit/s x 75 ms) + 8 MiB
    n = relay_store_bytes(direction(delay_ms=75, bw_mbps=1000, queue_pkts=12384))
    assert n == int(2 * (12384 * 1514 + 1e9 / 8 * 0.075)) + (8 << 20)


@pytest.mark.parametrize(("delay_ms", "burst"), [
    (75.0, RELAY_BURST_MAX_US), (2.0, RELAY_BURST_MAX_US), (1.0, 500.0), (0.3, 150.0),
    (0.05, RELAY_BURST_MIN_US), (0.0, RELAY_BURST_MIN_US)])
def test_relay_burst_is_half_the_delay_within_its_bounds(delay_ms, burst):
    assert relay_burst_us(delay_ms) == pytest.approx(burst)
