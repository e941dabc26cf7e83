"""A guest with a disk migrated over TCP on this machine (memory and disk in one index space,
``migrator.core.disk``): background and write-blocking complete with the image verified, the
guest continues on the destination's disk, and no write it made is lost; a mirror whose
destination dies leaves the guest at the source with every write."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from migrator.core.policy import MigrationPolicy
from migrator.disk.datastore import create_disk, disk_path, remove_disk
from migrator.disk.params import parse_disk
from migrator.endpoints import run_source
from migrator.guest.diskvm import source_vm
from migrator.guest.guestdisk import DiskConfig
from migrator.guest.image import remove_segments
from migrator.guest.vm import start_guest
from tests.processes.migrator.test_guest import HOST, KV_PAGES, free_port, segments, wait_for

NPAGES = 4096                                          # 16 MiB of memory
DISK = {"size": "64MiB", "allocated": "32MiB",
        "workload": {"write_rate_mibps": 4, "read_rate_mibps": 2, "working_set_frac": 0.2}}


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A datastore of its own (the guest process inherits the environment), a VM name, and
    everything removed afterwards."""
    monkeypatch.setenv("WANMIG_DATASTORE", str(tmp_path / "ds"))
    name = "d" + secrets.token_hex(5)
    yield name, tmp_path
    remove_segments(segments(name))
    for host in ("h1", "h2"):
        for tag in ("src", "dst"):
            remove_disk(disk_path(host, name, tag))


def migrate(name: str, tmp: Path, storage: str, kill_dest_after_s: float | None = None):
    params = parse_disk(DISK, "vm.disk")
    src, dst = disk_path("h1", name, "src"), disk_path("h2", name, "dst")
    create_disk(src, params, 7, fill=True, tracking=True)
    report = tmp / "disk.json"
    cfg = DiskConfig(params, str(src), None, storage == "write-blocking", str(tmp / "io.csv"),
                     str(report))
    port, mport, key = free_port(), free_port(), secrets.token_bytes(32)
    handle = start_guest(name, NPAGES, "web", 5, "dc1", service_host=HOST, udp_port=port,
                         tcp_port=port, kv_pages=KV_PAGES, log_level="WARNING", disk=cfg)
    dest = vm = None
    try:
        env = dict(os.environ, WANMIG_MIGRATION_KEY=key.hex())
        dest = subprocess.Popen(
            [sys.executable, "-m", "wanmig.cli", "migrate-dest", "--listen", f"{HOST}:{mport}",
             "--vm", name, "--location", "dc2", "--timeout-s", "20", "--disk", str(dst),
             "--disk-params", json.dumps(params.to_dict())],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        line = dest.stdout.readline()
        assert line.startswith("LISTENING"), line + dest.stdout.read()
        time.sleep(0.5)                 # let the guest write a little before the migration
        if kill_dest_after_s is not None:
            threading.Timer(kill_dest_after_s, lambda: dest.send_signal(signal.SIGKILL)).start()
        vm = source_vm(name, "src", str(src), storage)
        policy = MigrationPolicy(codec="lz4", storage=storage,
                                 max_bandwidth_mbps=200 if kill_dest_after_s else None)
        result = run_source(vm, (HOST, mport), policy, key, rtt_hint_s=0.0, timeout_s=5.0)
        out, _ = dest.communicate(timeout=30)
        moved = wait_for(lambda: vm.location == "dc2", 5, "guest at dc2") \
            if result.outcome == "completed" else False
        time.sleep(0.5)                 # and a little after, wherever it runs
        stats = vm.mirror_stats()
        dst_blocks = os.stat(dst).st_blocks * 512 if dst.exists() else None
    finally:
        if vm is not None:
            vm.close()
        if dest is not None and dest.poll() is None:
            dest.kill()
            dest.wait()
        handle.stop()
    return result, out, moved, json.loads(report.read_text()), stats, dst_blocks, src, dst


@pytest.mark.parametrize("storage", ["background", "write-blocking"])
def test_disk_migrates_with_the_memory_and_no_write_is_lost(world, storage):
    name, tmp = world
    result, out, moved, report, stats, dst_blocks, src, dst = migrate(name, tmp, storage)
    context = f"{result}\n{out}\n{report}\n{stats}"
    assert result.outcome == "completed" and result.integrity_ok, context
    assert moved, context
    assert report["path"] == str(dst), "the guest did not go on with the destination's disk"
    assert report["writes"] > 0 and report["reads"] > 0, context
    assert report["lost_writes"] == 0 and report["verify_lost"] == 0, context
    assert report["verified_blocks"] >= 512, context     # the 32 MiB filled, in 64 KiB blocks
    assert result.disk_sectors_sent >= 32 * 256, context  # every allocated sector went
    assert dst_blocks is not None and dst_blocks < 48 * 2 ** 20, \
        f"the destination's 64 MiB disk is not sparse any more: {dst_blocks} bytes\n{context}"
    if storage == "write-blocking":
        assert result.disk_sectors_resent == 0, context
        assert stats["disk_mirror_writes"] > 0, context
    else:
        assert stats["disk_mirror_writes"] == 0, context


def test_a_mirror_to_a_dead_destination_leaves_every_write_at_the_source(world):
    name, tmp = world
    result, out, moved, report, _, _, src, dst = migrate(name, tmp, "write-blocking",
                                                         kill_dest_after_s=0.5)
    context = f"{result}\n{out}\n{report}"
    assert result.outcome.startswith("aborted") and not moved, context
    assert report["path"] == str(src), context
    assert report["lost_writes"] == 0 and report["verify_lost"] == 0, context
    assert report["writes"] > 0, context
