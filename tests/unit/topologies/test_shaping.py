"""Shaping: round-trip figures split per direction, and the exact tc argv lists built."""

from __future__ import annotations

import math

import pytest

from topologies.shaping import (
    Direction,
    delayline_shaping_cmds,
    htb_burst_bytes,
    netem_args,
    netem_cmds,
    split_link,
)
from topologies.spec import WanLinkSpec


def link(rtt_ms=100.0, bw_mbps=100.0, loss_pct=0.0, jitter_ms=0.0, queue_pkts=1000, mtu=1500):
    return WanLinkSpec(a="dc1", b="dc2", rtt_ms=rtt_ms, bw_mbps=bw_mbps, loss_pct=loss_pct,
                       jitter_ms=jitter_ms, queue_pkts=queue_pkts, mtu=mtu)


def test_split_delay_is_half_the_rtt():
    d = split_link(link(rtt_ms=100))
    assert d.delay_ms == 50.0
    assert (d.bw_mbps, d.queue_pkts, d.mtu) == (100.0, 1000, 1500)
    assert d.jitter_ms == 0.0 and d.loss_pct == 0.0


def test_split_jitter_adds_up_to_the_rtt_jitter():
    d = split_link(link(rtt_ms=100, jitter_ms=10))
    assert d.jitter_ms == pytest.approx(10 / math.sqrt(2))
    assert math.sqrt(2 * d.jitter_ms ** 2) == pytest.approx(10.0)


def test_split_loss_compounds_to_the_round_trip_loss():
    d = split_link(link(loss_pct=5))
    p1 = d.loss_pct / 100
    assert 0 < p1 < 0.05
    assert 1 - (1 - p1) ** 2 == pytest.approx(0.05)


def test_netem_cmds_exact_argv():
    d = split_link(link(rtt_ms=100, bw_mbps=100, queue_pkts=1000, mtu=1500))
    in_flight = math.ceil(100e6 / 8 * 0.050 / 1514)
    assert in_flight == 413
    cmds = netem_cmds("s1-eth3", d)
    assert cmds == [
        ["tc", "qdisc", "replace", "dev", "s1-eth3", "root", "handle", "1:", "htb",
         "default", "1"],
        ["tc", "class", "add", "dev", "s1-eth3", "parent", "1:", "classid", "1:1", "htb",
         "rate", "100000kbit", "ceil", "100000kbit", "burst", "15140", "cburst", "15140",
         "quantum", "15140"],
        ["tc", "qdisc", "add", "dev", "s1-eth3", "parent", "1:1", "handle", "10:",
         "netem", "limit", str(1000 + in_flight), "delay", "50000us"],
    ]
    assert all(isinstance(a, str) for cmd in cmds for a in cmd)


def test_netem_limit_covers_queue_and_in_flight_with_jitter():
    d = split_link(link(rtt_ms=100, bw_mbps=100, jitter_ms=10, queue_pkts=1000))
    limit = int(netem_args(d)[2])
    in_flight = math.ceil(100e6 / 8 * (0.050 + 3 * 0.010 / math.sqrt(2)) / 1514)
    assert limit == 1000 + in_flight
    assert d.in_flight_pkts() == in_flight


def test_jitter_adds_normal_distribution():
    d = split_link(link(rtt_ms=100, jitter_ms=10))
    args = netem_args(d)
    i = args.index("delay")
    assert args[i:i + 5] == ["delay", "50000us", "7071.067812us", "distribution", "normal"]


def test_loss_adds_random_loss():
    d = split_link(link(loss_pct=5))
    args = netem_args(d)
    i = args.index("loss")
    assert args[i:i + 2] == ["loss", "random"]
    assert args[i + 2].endswith("%")
    assert float(args[i + 2][:-1]) == pytest.approx(d.loss_pct, abs=1e-6)
    assert float(args[i + 2][:-1]) == pytest.approx(100 * (1 - math.sqrt(0.95)), abs=1e-6)


def test_no_loss_no_jitter_means_no_such_options():
    args = netem_args(split_link(link(rtt_ms=100)))
    assert "loss" not in args
    assert "distribution" not in args


def test_zero_rtt_no_loss_is_netem_without_delay():
    d = split_link(link(rtt_ms=0, bw_mbps=100, queue_pkts=500))
    assert netem_args(d) == ["netem", "limit", "500"]


def test_unshaped_puts_netem_at_the_root():
    d = split_link(link(rtt_ms=100, bw_mbps=None, queue_pkts=1000))
    cmds = netem_cmds("x-eth1", d)
    assert len(cmds) == 1
    cmd = cmds[0]
    assert cmd[:8] == ["tc", "qdisc", "replace", "dev", "x-eth1", "root", "handle", "10:"]
    assert cmd[8] == "netem"
    assert "htb" not in cmd
    # in flight at the 10 Gbit/s assumed for an unshaped link
    assert int(cmd[10]) == 1000 + math.ceil(10_000e6 / 8 * 0.050 / 1514)


def test_delayline_shaping_is_htb_with_a_byte_fifo_of_the_queue():
    d = split_link(link(rtt_ms=100, bw_mbps=50, queue_pkts=777))
    cmds = delayline_shaping_cmds("dc1p1-eth9", d)
    assert len(cmds) == 3
    assert cmds[0] == ["tc", "qdisc", "replace", "dev", "dc1p1-eth9", "root", "handle", "1:",
                       "htb", "default", "1"]
    assert "rate" in cmds[1] and cmds[1][cmds[1].index("rate") + 1] == "50000kbit"
    assert cmds[2] == ["tc", "qdisc", "add", "dev", "dc1p1-eth9", "parent", "1:1", "handle",
                       "10:", "bfifo", "limit", str(777 * 1514)]
    assert not any("netem" in cmd for cmd in cmds)


def test_delayline_shaping_unshaped_is_nothing():
    assert delayline_shaping_cmds("x", split_link(link(bw_mbps=None))) == []


@pytest.mark.parametrize("bw", [0.1, 1.0, 10.0, 100.0, 1000.0, 10_000.0, 100_000.0])
@pytest.mark.parametrize("mtu", [576, 1500, 9000])
def test_htb_burst_never_below_ten_frames(bw, mtu):
    burst = htb_burst_bytes(bw, mtu)
    assert burst >= 10 * (mtu + 14)
    assert burst >= bw * 1e6 / 8 * 1e-3  # at least one millisecond at the rate


def test_htb_burst_is_one_millisecond_at_high_rates():
    assert htb_burst_bytes(10_000.0, 1500) == 1_250_000


def test_small_rate_class_in_kbit():
    d = Direction(delay_ms=1.0, jitter_ms=0.0, loss_pct=0.0, bw_mbps=0.1, queue_pkts=10,
                  mtu=1500)
    cls = netem_cmds("e", d)[1]
    assert cls[cls.index("rate") + 1] == "100kbit"
    assert cls[cls.index("ceil") + 1] == "100kbit"
