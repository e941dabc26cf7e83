"""topologies.fabricdrops: the switch's packet-socket drops summed from ``ss -0 -m -p``."""

from __future__ import annotations

from topologies.fabricdrops import parse_drops

SKMEM = "skmem:(r0,rb8388608,t0,tb212992,f0,w0,o0,bl0,d{})"
SS = "\n".join([
    "Netid Recv-Q Send-Q Local Address:Port Peer Address:PortProcess",
    'p_raw 0 0 [0]:* * users:(("ovs-vswitchd",pid=19145,fd=47)) ' + SKMEM.format(0),
    'p_raw 0 0 [0]:dc2s1-eth3 * users:(("ovs-vswitchd",pid=19145,fd=52)) ' + SKMEM.format(712),
    'p_raw 0 0 [0]:dc1s1-eth1 * users:(("ovs-vswitchd",pid=19145,fd=53)) ' + SKMEM.format(3),
    'p_raw 0 0 [0]:eth0 * users:(("tcpdump",pid=77,fd=3)) ' + SKMEM.format(99),
])


def test_sums_the_switch_sockets_only():
    assert parse_drops(SS) == 715


def test_no_switch_sockets_is_zero():
    assert parse_drops(SS.replace("ovs-vswitchd", "other")) == 0
    assert parse_drops("") == 0


def test_run_metrics_split_preflight_and_run():
    from experiments.runner import fabric_metrics

    assert fabric_metrics({"up": 5, "preflight": 9, "end": 9}) == {
        "fabric_drops_preflight": 4, "fabric_drops": 0}
    assert fabric_metrics({"up": 0, "preflight": 0, "end": 700})["fabric_drops"] == 700
    # Unreadable, or the kernel datapath: unknown, never a made-up zero.
    assert fabric_metrics({"up": None, "preflight": None, "end": None}) == {
        "fabric_drops_preflight": None, "fabric_drops": None}
    assert fabric_metrics({}) == {"fabric_drops_preflight": None, "fabric_drops": None}
