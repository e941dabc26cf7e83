"""The controller on a live two-site network: forwarding, a host move, a restart."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from controller.eventlog import read_events
from experiments.testbed import controlled_network
from ground.protocol import Kind, parse_line
from tests.integration.helpers import assert_nothing_left
from topologies.mobility import move_host
from topologies.spec import parse_topology

pytestmark = pytest.mark.root

RTT_MS = 50.0
REPLY = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from")


def spec_with_controller_at(site: str):
    return parse_topology({"name": "ctl", "wan": [{"rtt_ms": RTT_MS, "bw_mbps": 100}],
                           "controller": {"site": site}})


def flows(switch: str) -> list[str]:
    out = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", switch],
                         capture_output=True, text=True, check=True).stdout
    return [line.strip() for line in out.splitlines() if "priority=" in line]


def reply_times(path: Path) -> list[float]:
    return [float(m.group(1)) for line in path.read_text().splitlines()
            if (m := REPLY.match(line))]


def wait_replies(path: Path, n: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(reply_times(path)) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} ping replies in {timeout_s} s:\n{path.read_text()}")


def test_pingall_under_the_controller_with_a_remote_site(choice, tmp_path):
    spec = spec_with_controller_at("dc1")
    with controlled_network(spec, choice, tmp_path) as net:
        loss = net.net.pingAll(timeout="2")
        status = net.control.controller.status()
        assert loss == 0, f"pingall lost {loss} %; controller status {status}"
        assert len(status["hosts"]) == 4, status
        assert net.control.rtts == {"dc1": 0.0, "dc2": RTT_MS}
    assert_nothing_left(spec)


@pytest.mark.parametrize("controller_site", ["dc2", "dc1"])
def test_moved_host_is_reached_again_within_rtt_plus_100ms(choice, tmp_path, controller_site):
    """dc1h1 is pinged from dc2c1 every 10 ms, re-plugged into dc2's switch, announces itself
    with RARP: replies resume within WAN RTT + 100 ms of the first RARP, and no flow anywhere
    still points at its old port."""
    spec = spec_with_controller_at(controller_site)
    with controlled_network(spec, choice, tmp_path) as net:
        vm, client = net.host("dc1h1"), net.host("dc2c1")
        mac = vm.defaultIntf().MAC()
        log = tmp_path / "ping.txt"
        with open(log, "w") as fh:
            pinger = client.popen(["ping", "-D", "-i", "0.01", "10.1.1.1"], stdout=fh,
                                  stderr=subprocess.STDOUT)
        try:
            wait_replies(log, 20)
            src_rule = [line for line in flows("dc1s1") if f"dl_src={mac}" in line]
            assert src_rule, f"{mac} not learnt at dc1s1: {flows('dc1s1')}"
            old_in_port = re.search(r"in_port=(\d+)", src_rule[0]).group(1)
            new_if = move_host(net, "dc1h1", "dc2s1")
            out = vm.cmd(f"{sys.executable} -m migrator.guest.announce --iface {new_if} "
                         f"--mac {mac}")
            rarps = [m.t for line in out.splitlines()
                     if (m := parse_line(line)) is not None and m.kind is Kind.RARP]
            assert rarps, f"no RARP sent: {out}"
            deadline = time.time() + 2.0
            while time.time() < deadline and not [t for t in reply_times(log) if t > rarps[0]]:
                time.sleep(0.05)
        finally:
            pinger.terminate()
            pinger.wait(timeout=5)
        after = [t for t in reply_times(log) if t > rarps[0]]
        events = read_events(net.control.controller.events)
        moves = [e for e in events if e.get("event") == "move" and e.get("mac") == mac]
        context = (f"controller at {controller_site}; RARP at {rarps}; first replies after "
                   f"{after[:3]}; move events {moves}")
        assert after, f"pings never resumed\n{context}"
        assert after[0] - rarps[0] <= (RTT_MS + 100) / 1e3, context
        assert moves and moves[0]["ethertype"] == 0x8035, context
        assert moves[0]["flow_convergence_ms"] > 0, context
        stale = [f for sw in ("dc1s1", "dc2s1") for f in flows(sw)
                 if mac in f and (f"in_port={old_in_port}," in f and sw == "dc1s1"
                                  or sw == "dc1s1" and f"output:{old_in_port}" in f)]
        assert not stale, f"flows still pointing at dc1s1 port {old_in_port}: {stale}\n{context}"
    assert_nothing_left(spec)


def test_controller_restart_switches_reconnect_and_hosts_are_relearnt(choice, tmp_path):
    spec = spec_with_controller_at("dc1")
    with controlled_network(spec, choice, tmp_path) as net:
        assert net.net.pingAll(timeout="2") == 0
        ctl = net.control.controller
        ctl.restart()
        links = len(net.plan.fabric_links) + len(net.plan.wan)
        status = net.control.wait_converged(len(net.plan.switches), links, timeout_s=60)
        assert status["hosts"] == {}, f"a fresh controller knows hosts already: {status}"
        loss = net.net.pingAll(timeout="2")
        status = ctl.status()
        assert loss == 0, f"pingall after restart lost {loss} %; status {status}"
        assert len(status["hosts"]) == 4, status
        starts = [e for e in read_events(ctl.events) if e["event"] == "controller_start"]
        assert len(starts) == 2, starts
    assert_nothing_left(spec)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_standalone_controller_takes_a_switch_and_stops_on_sigterm(tmp_path):
    """`wanmig controller` serves a bridge it did not build, and a SIGTERM ends it (os-ken's
    server threads would otherwise keep it listening)."""
    port, status = _free_port(), tmp_path / "status.json"
    bridge = "wmstandal0"
    proc = subprocess.Popen([sys.executable, "-m", "wanmig.cli", "controller", "--port",
                             str(port), "--status", str(status)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        subprocess.run(["ovs-vsctl", "--may-exist", "add-br", bridge, "--", "set", "bridge",
                        bridge, "datapath_type=netdev", "protocols=OpenFlow13",
                        "other-config:datapath-id=00000000000000a1"], check=True)
        subprocess.run(["ovs-vsctl", "set-controller", bridge, f"tcp:127.0.0.1:{port}"],
                       check=True)
        deadline, seen = time.monotonic() + 20, None
        while time.monotonic() < deadline:
            if status.exists():
                try:
                    seen = json.loads(status.read_text())
                except ValueError:
                    seen = None
                if seen and seen.get("switches") == [0xA1]:
                    break
            time.sleep(0.1)
        assert seen and seen.get("switches") == [0xA1], f"switch never connected: {seen}"
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError("controller still running 5 s after SIGTERM") from None
        assert proc.returncode == 0, proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        subprocess.run(["ovs-vsctl", "--if-exists", "del-br", bridge], check=False)


def test_with_offloads_on_a_moved_hosts_tcp_stream_survives_with_valid_checksums(choice,
                                                                                  tmp_path):
    """dc1h1 streams TCP to dc2c1 across the WAN, then is re-plugged at dc2 and announces
    itself: the connection lives on, every byte arrives as sent, every segment the client's
    interface received has a checksum that is valid (or, where the offloads left it to the
    kernel, the pseudo-header's sum that completes to the valid one: checked with scapy), the
    client pings it at its new site, and with the fabric's offloads on, super-frames did cross
    (segments longer than the MTU)."""
    spec = spec_with_controller_at("dc1")
    with controlled_network(spec, choice, tmp_path) as net:
        vm, client = net.host("dc1h1"), net.host("dc2c1")
        mac = vm.defaultIntf().MAC()
        report = tmp_path / "tcpcheck.json"
        server = vm.popen([sys.executable, "-m", "tests.integration.tcpcheck", "server", "7777"])
        reader = None
        try:
            time.sleep(0.5)
            reader = client.popen([sys.executable, "-m", "tests.integration.tcpcheck", "client",
                                   "10.1.1.1", "7777", "6", str(report)])
            time.sleep(2.5)
            new_if = move_host(net, "dc1h1", "dc2s1")
            vm.cmd(f"{sys.executable} -m migrator.guest.announce --iface {new_if} --mac {mac}")
            reader.wait(timeout=30)
        finally:
            for p in (reader, server):
                if p is not None and p.poll() is None:
                    p.kill()
                    p.wait(timeout=5)
        ping = client.cmd("ping -c 5 -i 0.2 -W 1 10.1.1.1")
        got = json.loads(report.read_text())
        context = f"offloads {choice.offloads}; report {json.dumps(got)[:3000]}; ping {ping}"
        assert "error" not in got and not got["closed"], f"the connection died\n{context}"
        assert got["corrupt_at"] is None, f"the stream was corrupted\n{context}"
        assert got["bytes"] > 2_000_000, f"too little crossed\n{context}"
        assert got["capture_drops"] == 0 and got["segments"] > 100, context
        assert not got["bad"], f"segments with bad checksums\n{context}"
        assert " 0% packet loss" in ping, f"the moved host does not answer pings\n{context}"
        if choice.offloads:
            assert got["largest"] > 1514 and got["partial"] > 0, context
    assert_nothing_left(spec)
