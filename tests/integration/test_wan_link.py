"""The WAN link is what was asked for, measured across a live two-site network."""

from __future__ import annotations

import json
import math

import pytest

from tests.integration.helpers import assert_nothing_left
from topologies.linkcheck import rtt_tolerance_ms
from topologies.measure import iperf, ping
from topologies.network import WanNetwork
from topologies.portbuf import PORT_RCVBUF, read_default
from topologies.spec import parse_topology

pytestmark = pytest.mark.root


def two_sites(**wan) -> object:
    return parse_topology({"name": "itest", "wan": [wan]})


def context(net: WanNetwork, **measured) -> str:
    """Everything needed to understand a failure: the asked link, the built one, the figures."""
    for link in net.links:
        net.read_relay_stats(link)
    return json.dumps({"measured": measured, "network": net.record()}, indent=1, default=str)


def test_two_sites_come_up_and_every_host_reaches_every_other(choice, tmp_path):
    spec = two_sites(rtt_ms=10, bw_mbps=100)
    rmem_before = read_default()
    with WanNetwork(spec, choice, tmp_path) as net:
        loss = net.net.pingAll(timeout="2")
        assert loss == 0, f"pingall lost {loss} %\n{context(net)}"
        assert {h.name for h in net.net.hosts} >= {"dc1h1", "dc1c1", "dc2h1", "dc2c1"}
        rec = net.record()
        assert rec["link_backend"] == choice.link_backend
        assert rec["ovs_datapath"] == choice.ovs_datapath
        if choice.ovs_datapath == "user":
            assert rec["ovs_port_rcvbuf_bytes"] >= PORT_RCVBUF, context(net)
    assert_nothing_left(spec)
    assert read_default() == rmem_before, "net.core.rmem_default was not put back"


def test_rtt_100ms_is_measured_within_tolerance(choice, tmp_path):
    spec = two_sites(rtt_ms=100, bw_mbps=100)
    with WanNetwork(spec, choice, tmp_path) as net:
        pr = ping(net.host("dc1h1"), "10.2.1.1", count=50, interval_s=0.05)
        tol = rtt_tolerance_ms(100.0)
        assert pr.received == pr.sent, f"pings lost\n{context(net, ping=vars(pr))}"
        assert abs(pr.avg_ms - 100.0) <= tol, (
            f"RTT {pr.avg_ms:.3f} ms, asked 100 ms, tolerance {tol} ms\n"
            f"{context(net, ping=vars(pr))}")
        # The floor too: no frame may come back faster than the delay line holds it (its
        # delay is the configured one less what the fabric was measured to add).
        floor = 2 * net.links[0].relay_delay_ms
        assert 100.0 - floor <= 2.0, f"relay delay {floor} ms for 100 ms\n{context(net)}"
        assert pr.min_ms >= floor, f"a ping beat the delay line\n{context(net, ping=vars(pr))}"
    assert_nothing_left(spec)


def test_50mbps_link_carries_50mbps_within_10_percent(choice, tmp_path):
    spec = two_sites(rtt_ms=20, bw_mbps=50)
    with WanNetwork(spec, choice, tmp_path) as net:
        res = iperf(net.host("dc1h1"), net.host("dc2h1"), "10.2.1.1", seconds=8, omit_s=2)
        assert 45.0 <= res.goodput_mbps <= 50.0 * 1.02, (
            f"goodput {res.goodput_mbps:.2f} Mbit/s on a 50 Mbit/s link (accepted 45 to 51)\n"
            f"{context(net, iperf=vars(res))}")
    assert_nothing_left(spec)


def test_5_percent_loss_drops_about_5_percent_of_1000_pings(choice, tmp_path):
    spec = two_sites(rtt_ms=10, bw_mbps=100, loss_pct=5)
    with WanNetwork(spec, choice, tmp_path) as net:
        pr = ping(net.host("dc1h1"), "10.2.1.1", count=1000, interval_s=0.01)
        # Four binomial standard deviations over 1000 round trips: 5 +- 2.76 %.
        sd = math.sqrt(0.05 * 0.95 / pr.sent) * 100
        assert pr.sent == 1000
        assert abs(pr.loss_pct - 5.0) <= 4 * sd, (
            f"lost {pr.loss_pct:.2f} % of {pr.sent} pings, asked 5 % (+- {4 * sd:.2f})\n"
            f"{context(net, ping=vars(pr))}")
    assert_nothing_left(spec)


def test_jitter_widens_the_rtt_spread_without_reordering_below_the_floor(choice, tmp_path):
    spec = two_sites(rtt_ms=40, bw_mbps=100, jitter_ms=5)
    with WanNetwork(spec, choice, tmp_path) as net:
        pr = ping(net.host("dc1h1"), "10.2.1.1", count=200, interval_s=0.02)
        # mdev is the mean absolute deviation: for a normal RTT with sd 5 ms it is about 4 ms.
        assert 2.0 <= pr.mdev_ms <= 6.0, f"RTT mdev {pr.mdev_ms} ms\n{context(net, ping=vars(pr))}"
        assert abs(pr.avg_ms - 40.0) <= rtt_tolerance_ms(40.0, 5.0, pr.received) + 1.0, (
            f"RTT {pr.avg_ms} ms\n{context(net, ping=vars(pr))}")
    assert_nothing_left(spec)
