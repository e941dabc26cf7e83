"""Measurement: ping and iperf3 output parsed, and the runners driven through fake hosts."""

from __future__ import annotations

import json
import math

import pytest

import topologies.measure as measure
from topologies.measure import (
    IPERF_PORT,
    MeasureError,
    iperf,
    parse_iperf,
    parse_ping,
    ping,
    wait_listening,
)

# --- parse_ping ---------------------------------------------------------------------------------

PING_NORMAL = """\
PING 10.0.2.1 (10.0.2.1) 56(84) bytes of data.

--- 10.0.2.1 ping statistics ---
20 packets transmitted, 20 received, 0% packet loss, time 1049ms
rtt min/avg/max/mdev = 100.282/100.539/101.047/0.241 ms
"""

PING_PIPE = """\
PING 10.0.2.1 (10.0.2.1) 56(84) bytes of data.

--- 10.0.2.1 ping statistics ---
200 packets transmitted, 198 received, 1% packet loss, time 9951ms
rtt min/avg/max/mdev = 150.101/150.873/152.990/0.512 ms, pipe 2
"""

PING_DUP_ERRORS = """\
PING 10.0.2.1 (10.0.2.1) 56(84) bytes of data.
From 10.0.1.1 icmp_seq=7 Destination Host Unreachable

--- 10.0.2.1 ping statistics ---
20 packets transmitted, 17 received, +1 duplicates, +3 errors, 15% packet loss, time 19033ms
rtt min/avg/max/mdev = 0.045/0.061/0.120/0.014 ms, pipe 3
"""

PING_ALL_LOST = """\
PING 10.0.2.1 (10.0.2.1) 56(84) bytes of data.

--- 10.0.2.1 ping statistics ---
5 packets transmitted, 0 received, 100% packet loss, time 4081ms
"""


def test_parse_ping_normal_summary():
    r = parse_ping(PING_NORMAL)
    assert (r.sent, r.received) == (20, 20)
    assert (r.min_ms, r.avg_ms, r.max_ms, r.mdev_ms) == (100.282, 100.539, 101.047, 0.241)
    assert r.loss_pct == 0.0


def test_parse_ping_with_pipe_after_ms():
    r = parse_ping(PING_PIPE)
    assert (r.sent, r.received) == (200, 198)
    assert r.avg_ms == 150.873
    assert r.mdev_ms == 0.512
    assert r.loss_pct == pytest.approx(1.0)


def test_parse_ping_with_duplicates_and_errors():
    r = parse_ping(PING_DUP_ERRORS)
    assert (r.sent, r.received) == (20, 17)
    assert (r.min_ms, r.avg_ms, r.max_ms, r.mdev_ms) == (0.045, 0.061, 0.120, 0.014)
    assert r.loss_pct == pytest.approx(15.0)


def test_parse_ping_all_lost_has_nan_rtts():
    r = parse_ping(PING_ALL_LOST)
    assert (r.sent, r.received) == (5, 0)
    assert r.loss_pct == 100.0
    for x in (r.min_ms, r.avg_ms, r.max_ms, r.mdev_ms):
        assert math.isnan(x)


@pytest.mark.parametrize("text", ["", "ping: unknown host nowhere\n",
                                  "connect: Network is unreachable\n",
                                  "rtt min/avg/max/mdev = 1.0/2.0/3.0/0.1 ms\n"])
def test_parse_ping_garbage_is_measure_error(text):
    with pytest.raises(MeasureError, match="ping"):
        parse_ping(text)


# --- parse_iperf --------------------------------------------------------------------------------

def iperf_json(bps=95.3e6, retransmits=12, seconds=8.0, streams=2) -> dict:
    return {
        "start": {"test_start": {"protocol": "TCP", "num_streams": streams, "omit": 2,
                                 "duration": 8}},
        "intervals": [],
        "end": {
            "sum_sent": {"start": 0, "end": seconds, "seconds": seconds, "bytes": 1,
                         "bits_per_second": bps * 1.01, "retransmits": retransmits},
            "sum_received": {"start": 0, "end": seconds, "seconds": seconds, "bytes": 1,
                             "bits_per_second": bps},
        },
    }


def test_parse_iperf_reads_goodput_retransmits_seconds_streams():
    r = parse_iperf(json.dumps(iperf_json()))
    assert r.goodput_mbps == pytest.approx(95.3)
    assert r.retransmits == 12
    assert r.seconds == 8.0
    assert r.streams == 2


def test_parse_iperf_defaults_when_optional_fields_missing():
    data = {"end": {"sum_received": {"bits_per_second": 1e6}}}
    r = parse_iperf(json.dumps(data))
    assert r.goodput_mbps == pytest.approx(1.0)
    assert (r.retransmits, r.seconds, r.streams) == (0, 0.0, 1)


def test_parse_iperf_error_json_names_the_error():
    text = json.dumps({"start": {}, "intervals": [], "end": {},
                       "error": "unable to connect to server: Connection refused"})
    with pytest.raises(MeasureError, match="unable to connect to server: Connection refused"):
        parse_iperf(text)


@pytest.mark.parametrize("text", ["", "iperf3: error - unable to connect\n", "{not json"])
def test_parse_iperf_non_json_is_measure_error(text):
    with pytest.raises(MeasureError, match="JSON"):
        parse_iperf(text)


def test_parse_iperf_without_sum_received_is_measure_error():
    data = iperf_json()
    del data["end"]["sum_received"]
    with pytest.raises(MeasureError, match="sum_received"):
        parse_iperf(json.dumps(data))
    with pytest.raises(MeasureError, match="sum_received"):
        parse_iperf(json.dumps({"start": {}}))


@pytest.mark.parametrize("text", ["null", "[]", "5"])
def test_parse_iperf_json_that_is_not_an_object_is_measure_error(text):
    with pytest.raises(MeasureError):
        parse_iperf(text)


# --- runners with fake hosts --------------------------------------------------------------------

class FakeProc:
    def __init__(self, argv):
        self.argv = argv
        self.running = True
        self.terminated = False
        self.waited = False

    def poll(self):
        return None if self.running else 0

    def terminate(self):
        self.terminated = True
        self.running = False

    def wait(self, timeout=None):
        self.waited = True
        return 0


class FakeHost:
    """Records every command; answers from ``replies`` (first matching prefix wins)."""

    def __init__(self, name, replies=None):
        self.name = name
        self.replies = replies or {}
        self.cmds: list[str] = []
        self.procs: list[FakeProc] = []

    def cmd(self, command: str) -> str:
        self.cmds.append(command)
        for prefix, reply in self.replies.items():
            if command.startswith(prefix):
                return reply() if callable(reply) else reply
        return ""

    def popen(self, argv):
        proc = FakeProc(argv)
        self.procs.append(proc)
        return proc


SS_LISTEN = "LISTEN 0      5                  *:5201             *:*          \n"


def test_ping_runs_warmup_then_counted_pings():
    host = FakeHost("dc1h1", {"ping": PING_NORMAL})
    r = ping(host, "10.0.2.1", 20, interval_s=0.05)
    assert r.avg_ms == 100.539
    assert len(host.cmds) == 2
    warm, counted = (c.split() for c in host.cmds)
    assert warm[0] == "ping" and warm[warm.index("-c") + 1] == "3"
    assert counted[0] == "ping"
    assert counted[counted.index("-c") + 1] == "20"
    assert counted[counted.index("-i") + 1] == "0.05"
    assert counted[-1] == "10.0.2.1"
    assert "-w" not in counted


def test_ping_without_warmup_runs_once():
    host = FakeHost("dc1h1", {"ping": PING_NORMAL})
    ping(host, "10.0.2.1", 50, interval_s=0.2, warmup=0)
    assert len(host.cmds) == 1
    argv = host.cmds[0].split()
    assert argv[argv.index("-c") + 1] == "50"
    assert argv[argv.index("-i") + 1] == "0.2"


def test_ping_quotes_the_address():
    host = FakeHost("dc1h1", {"ping": PING_NORMAL})
    ping(host, "10.0.2.1; reboot", 20, warmup=0)
    assert host.cmds[0].endswith("'10.0.2.1; reboot'")


def test_ping_unreadable_output_raises():
    host = FakeHost("dc1h1", {"ping": "ping: connect: Network is unreachable\n"})
    with pytest.raises(MeasureError):
        ping(host, "10.0.2.1", 20)


def test_iperf_waits_for_listener_then_runs_client():
    polls = iter(["", "", SS_LISTEN])
    server = FakeHost("dc2h1", {"ss ": lambda: next(polls)})
    client = FakeHost("dc1h1", {"iperf3 ": json.dumps(iperf_json(bps=240e6, streams=4))})

    def client_cmd(command, _orig=client.cmd):
        # the client must only run once the server listens
        assert server.cmds and server.cmds[-1].startswith("ss ")
        assert all(c.startswith("ss ") for c in server.cmds)
        assert len(server.cmds) == 3
        return _orig(command)

    client.cmd = client_cmd
    r = iperf(client, server, "10.0.2.1", seconds=8, omit_s=3, streams=4)
    assert r.goodput_mbps == pytest.approx(240.0)
    assert r.streams == 4

    (srv,) = server.procs
    assert srv.argv[:2] == ["iperf3", "-s"]
    assert srv.argv[srv.argv.index("-p") + 1] == str(IPERF_PORT)
    assert srv.terminated and srv.waited

    (cmd,) = client.cmds
    argv = cmd.split()
    assert argv[:3] == ["iperf3", "-c", "10.0.2.1"]
    assert argv[argv.index("-P") + 1] == "4"
    assert argv[argv.index("-O") + 1] == "3"
    assert argv[argv.index("-t") + 1] == "8"
    assert argv[argv.index("-p") + 1] == str(IPERF_PORT)
    assert "-J" in argv


def test_iperf_does_not_terminate_a_server_that_already_exited():
    server = FakeHost("dc2h1", {"ss ": SS_LISTEN})
    client = FakeHost("dc1h1", {"iperf3 ": json.dumps(iperf_json())})
    orig_popen = server.popen

    def popen(argv):
        proc = orig_popen(argv)
        proc.running = False
        return proc

    server.popen = popen
    iperf(client, server, "10.0.2.1", seconds=1)
    (srv,) = server.procs
    assert not srv.terminated
    assert srv.waited


def test_iperf_error_still_stops_the_server():
    server = FakeHost("dc2h1", {"ss ": SS_LISTEN})
    client = FakeHost("dc1h1", {"iperf3 ": json.dumps({"error": "the server is busy"})})
    with pytest.raises(MeasureError, match="the server is busy"):
        iperf(client, server, "10.0.2.1", seconds=1)
    (srv,) = server.procs
    assert srv.terminated and srv.waited


def test_wait_listening_checks_the_port_not_a_prefix():
    host = FakeHost("dc2h1", {"ss ": "LISTEN 0 5 *:52010 *:*\n"})
    with pytest.raises(MeasureError, match="dc2h1:5201"):
        wait_listening(host, 5201, timeout_s=0.2)
    assert host.cmds and all("5201" in c for c in host.cmds)


def test_wait_listening_returns_when_listening():
    host = FakeHost("dc2h1", {"ss ": SS_LISTEN})
    wait_listening(host, 5201, timeout_s=0.2)
    assert len(host.cmds) == 1


def test_iperf_server_that_never_listens_raises(monkeypatch):
    real = measure.wait_listening
    monkeypatch.setattr(measure, "wait_listening",
                        lambda host, port, timeout_s=10.0: real(host, port, timeout_s=0.2))
    server = FakeHost("dc2h1", {"ss ": ""})
    client = FakeHost("dc1h1", {"iperf3 ": json.dumps(iperf_json())})
    with pytest.raises(MeasureError, match="nothing listens on dc2h1:5201"):
        iperf(client, server, "10.0.2.1", seconds=1)
    assert client.cmds == []             # the client never ran
    (srv,) = server.procs
    assert srv.terminated and srv.waited
