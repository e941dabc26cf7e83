"""Issue 12: a VM with a disk migrated across the emulated WAN under each storage policy.

A 64 MiB web VM with a 128 MiB disk (64 MiB allocated, 4 MiB/s of 64 KiB writes) at 50 ms /
250 Mbit/s. Every policy: the migration completes verified, no write the guest made is lost
(its reads checked as it went and every block ever written read back at the end), nothing is
left behind (disk images, NBD server, network). Background: the disk's allocated sectors all
crossed. Write-blocking: writes were mirrored, none re-sent, and a mirrored write took at least
one RTT. Shared: nothing of the disk crossed, and after the move a write takes one RTT.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from experiments.runner import run_experiment
from experiments.spec import parse_experiment
from migrator.disk.datastore import leftover_disks
from tests.integration.helpers import assert_nothing_left

pytestmark = [pytest.mark.root, pytest.mark.slow]

RTT_MS = 50.0
ALLOCATED_SECTORS = 64 * 256


def storage_spec(storage: str):
    return parse_experiment({
        "name": f"itest-{storage}",
        "topology": {"wan": [{"between": ["dc1", "dc2"], "rtt_ms": RTT_MS, "bw_mbps": 250}]},
        "vm": {"memory": "64MiB", "workload": "web",
               "disk": {"size": "128MiB", "allocated": "64MiB",
                        "workload": {"write_rate_mibps": 4, "read_rate_mibps": 1}}},
        "policy": {"codec": "lz4", "storage": storage},
        "clients": {"kv_ops": 30, "kv_rate_hz": 10},
        "schedule": {"warmup_s": 3, "cooldown_s": 3}})


def _p50(m: dict, phase: str) -> float | None:
    return (((m.get("disk_latency") or {}).get(phase) or {}).get("write") or {}).get("p50_ms")


@pytest.mark.parametrize("storage", ["background", "write-blocking", "shared"])
def test_a_vm_with_a_disk_migrates_and_loses_no_write(choice, storage, tmp_path):
    spec = storage_spec(storage)
    m = run_experiment(spec, tmp_path / "run")
    context = json.dumps({k: v for k, v in m.items() if k != "links"}, indent=1, default=str)
    assert m["outcome"] == "completed" and m["integrity_ok"] is True, context
    assert m["storage_policy"] == storage, context
    assert m["disk_writes"] > 0 and m["disk_reads"] > 0, context
    assert m["disk_lost_writes_total"] == 0 and m["disk_verified_blocks"] >= 1024, context
    assert m["kv_integrity_ok"] is True, context
    before, during, after = (_p50(m, p) for p in ("before", "during", "after"))
    assert before is not None and after is not None, context
    if storage == "background":
        assert m["disk_sectors_sent"] >= ALLOCATED_SECTORS, context
        assert 0 < m["disk_bytes_on_wire"] < m["bytes_on_wire"], context
    elif storage == "write-blocking":
        assert m["disk_mirror_writes"] > 0 and m["disk_sectors_resent"] == 0, context
        assert during is not None and during >= 0.9 * RTT_MS, \
            f"a mirrored write took less than one RTT ({during} ms)\n{context}"
    else:
        assert not m["disk_bytes_on_wire"] and m["disk_remote_reads"] > 0, context
        # after the move the export is across the WAN: one RTT a write, 20 ms of slack for
        # the userspace switch and the server
        assert 0.9 * RTT_MS <= after <= RTT_MS + 20, f"write p50 after: {after} ms\n{context}"
        assert before < 0.5 * RTT_MS, f"write p50 before: {before} ms\n{context}"
    assert leftover_disks() == [], "disk images left in the datastore"
    nbd = subprocess.run(["pgrep", "-x", "qemu-nbd"], capture_output=True, text=True).stdout
    assert nbd == "", f"qemu-nbd still runs: {nbd}"
    assert_nothing_left(spec.topology)
