"""Whether the running ovs-vswitchd has userspace TSO, read from its log (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from topologies.ovstso import decide

OPEN = "|00001|vlog|INFO|opened log file /var/log/openvswitch/ovs-vswitchd.log"
TSO = "|00006|userspace_tso|INFO|Userspace TCP Segmentation Offloading support enabled"
BRIDGE = "|00008|bridge|INFO|ovs-vswitchd (Open vSwitch) 3.1.0"
ADD = "|00042|bridge|INFO|bridge s1: added interface s1-eth1 on port 1"
MONITOR = "|00003|vlog(monitor)|INFO|opened log file /var/log/openvswitch/ovs-vswitchd.log"


def at(seconds: float, text: str) -> str:
    stamp = datetime.fromtimestamp(1_800_000_000 + seconds, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z" + text


def started(seconds: float) -> float:
    return 1_800_000_000 + seconds


def test_not_configured_is_off_whatever_the_log_says():
    state = decide([at(0, OPEN), at(0.1, TSO), at(0.2, BRIDGE)], started(0), False)
    assert (state.active, state.configured) == (False, False)
    assert "userspace-tso-enable" in state.reason


def test_enabled_before_the_bridges_is_on():
    state = decide([at(0, OPEN), at(0.1, TSO), at(0.2, BRIDGE)], started(0), True)
    assert state.active, state


def test_enabled_after_bridges_were_configured_is_off():
    # The setting seen by a running process: ports it already made stay without TSO.
    lines = [at(0, OPEN), at(0.2, BRIDGE), at(1, ADD), at(60, TSO)]
    state = decide(lines, started(0), True)
    assert (state.active, state.configured) == (False, True), state
    assert "restart" in state.reason


def test_an_earlier_process_enabling_it_does_not_count():
    lines = [at(0, OPEN), at(0.1, TSO), at(0.2, BRIDGE), at(100, OPEN), at(100.2, BRIDGE)]
    assert not decide(lines, started(100), True).active


def test_a_restart_within_a_second_of_the_first_start_reads_the_second():
    # make setup on a fresh machine: ovs-ctl starts the switch without the setting, ensure
    # sets it and restarts at once; both starts fall within the start time's slack.
    lines = [at(0.00, OPEN), at(0.01, BRIDGE), at(0.01, MONITOR.replace("opened", "closing")),
             at(0.10, TSO), at(0.15, MONITOR), at(0.27, OPEN), at(0.28, TSO),
             at(0.28, BRIDGE)]
    state = decide(lines, started(0.27), True)
    assert state.active, state


def test_a_log_reopened_later_is_not_a_start():
    lines = [at(0, OPEN), at(0.1, TSO), at(0.2, BRIDGE), at(3600, OPEN), at(3600.1, ADD)]
    assert decide(lines, started(0), True).active


def test_no_start_logged_for_the_running_process_is_off_with_the_reason():
    state = decide([at(0, OPEN), at(0.1, TSO)], started(500), True)
    assert not state.active
    assert "no start" in state.reason
