"""Issue 11: a QEMU guest migrated by QEMU's own live migration across the emulated WAN, under
the controller, probed by the same clients, measured into the same metrics.json keys.

A 128 MiB guest at 50 ms / 250 Mbit/s: the migration completes; the clients' one TCP
connection lives through it; replies come from the destination site afterwards (UDP echo, and
ping from the client host to the VM); metrics.json has QEMU's own figures; nothing is left
behind (taps, QEMU processes, memory files, sockets).
"""

from __future__ import annotations

import json
import subprocess

import pytest

from experiments.runner import run_experiment
from experiments.spec import parse_experiment
from migrator.guest.image import leftover_segments
from tests.integration.helpers import assert_nothing_left

pytestmark = [pytest.mark.root, pytest.mark.slow]

RTT_MS, BW_MBPS, PROBE_MS = 50.0, 250.0, 10.0


@pytest.fixture(scope="module")
def guest_image():
    from migrator.qemu.image import find_image

    image = find_image()
    if image is None:
        pytest.skip("no QEMU guest image is built (make setup builds it)")
    return image


def qemu_spec(**policy):
    """128 MiB, a light workload; the policy keeps to what QEMU can do."""
    return parse_experiment({
        "name": "itest-qemu",
        "topology": {"wan": [{"between": ["dc1", "dc2"], "rtt_ms": RTT_MS,
                              "bw_mbps": BW_MBPS}]},
        "vm": {"kind": "qemu", "memory": "128MiB",
               "workload": {"dirty_rate_mibps": 5, "working_set_frac": 0.25}},
        "policy": {"codec": "none", "streams": 1, **policy},
        "clients": {"kv_ops": 60, "kv_rate_hz": 10, "probe_ms": PROBE_MS},
        "schedule": {"warmup_s": 3, "cooldown_s": 5}})


def test_a_qemu_guest_migrates_across_the_wan(choice, guest_image, tmp_path):
    """Live pre-copy, checked end to end. (QEMU 7.2 lost pages here; ``make setup`` installs
    QEMU 10 from bookworm-backports, whose live migrations are exact: README, "QEMU guests".)"""
    spec = qemu_spec()
    out = tmp_path / "run"
    m = run_experiment(spec, out)
    context = json.dumps({k: v for k, v in m.items() if k != "links"}, indent=1, default=str)
    assert m["vm_kind"] == "qemu" and m["qemu_accel"] in ("kvm", "tcg"), context
    assert m["outcome"] == "completed", context
    assert m["integrity_ok"] is True and m["qemu_ram_pages_differing"] == 0, context
    assert m["kv_readback"] > 0 and m["kv_integrity_ok"] is True, context
    assert m["kv_reconnects"] == 0, f"the TCP connection did not survive\n{context}"
    assert m["site_before"] == "dc1" and m["site_after"] == "dc2", context
    assert m["flow_convergence_ms"] is not None, f"QEMU's announcement moved no flow\n{context}"
    # ICMP from the client host at the destination site: across the WAN before, local after.
    before, after = m["ping_before"], m["ping_after"]
    assert before["received"] >= 3 and after["received"] >= 3, context
    assert before["rtt_ms"] >= RTT_MS * 0.9, context
    assert after["rtt_ms"] < RTT_MS / 5, f"ping still crosses the WAN after the move\n{context}"
    # QEMU's own figures, under their names and under the common keys.
    assert m["qemu_total_time_ms"] > 0 and m["qemu_dirty_syncs"] >= 1, context
    # Ours runs from QEMU's first pass (as the emulated engine's from round 0); QEMU's
    # total-time also holds its set-up (connection, TLS handshake): ours is at most QEMU's and
    # not 20 % below it.
    qemu_total_s = m["qemu_total_time_ms"] / 1e3
    assert 0.8 * qemu_total_s <= m["total_time_s"] <= qemu_total_s + 0.05, context
    assert m["downtime_ms"] > 0 and m["client_outage_ms"] is not None, context
    assert m["bytes_on_wire"] > 0 and m["vm_memory_bytes"] == 128 * 2**20, context
    assert m["total_time_s"] >= m["bytes_on_wire"] * 8 / (BW_MBPS * 1e6), context
    assert (out / "migration" / "rounds.csv").stat().st_size > 0
    _nothing_left(spec)


def test_a_cold_qemu_migration_is_exact(choice, guest_image, tmp_path):
    """The guest stopped, copied, resumed at the destination: the same RAM at both ends."""
    spec = qemu_spec(mode="cold")
    m = run_experiment(spec, tmp_path / "run")
    context = json.dumps({k: v for k, v in m.items() if k != "links"}, indent=1, default=str)
    assert m["outcome"] == "completed" and m["qemu_ram_pages_differing"] == 0, context
    assert m["site_after"] == "dc2" and m["kv_integrity_ok"] is True, context
    _nothing_left(spec)


def _nothing_left(spec) -> None:
    assert_nothing_left(spec.topology)
    assert not leftover_segments(), "QEMU memory left in /dev/shm"
    left = subprocess.run(["pgrep", "-f", "qemu-system-x86_64"], capture_output=True, text=True)
    assert left.stdout.strip() == "", f"QEMU processes left: {left.stdout}"


def test_a_policy_qemu_cannot_do_is_refused_before_anything_starts(tmp_path):
    from experiments.runner import check_runnable
    from ground.config import ConfigError

    with pytest.raises(ConfigError) as info:
        check_runnable(qemu_spec(codec="lz4"))
    assert info.value.path == "policy.codec", str(info.value)
    assert not (tmp_path / "run").exists()
