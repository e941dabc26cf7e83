"""The real guest migrated over TCP on this machine: its service's data survives a completed
migration, and a destination killed mid-round leaves it running at the source, data intact."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from migrator.core.policy import MigrationPolicy
from migrator.endpoints import run_source
from migrator.guest.image import remove_segments
from migrator.guest.vm import start_guest
from tests.processes.migrator.test_guest import (
    HOST,
    KV_PAGES,
    KVClient,
    echo,
    free_port,
    segments,
    wait_for,
)

NPAGES = 8192                                          # 32 MiB


@pytest.fixture
def vm_name():
    name = "l" + secrets.token_hex(5)
    yield name
    remove_segments(segments(name))


def start_dest(vm: str, key_hex: str, port: int) -> subprocess.Popen:
    env = dict(os.environ, WANMIG_MIGRATION_KEY=key_hex)
    proc = subprocess.Popen([sys.executable, "-m", "wanmig.cli", "migrate-dest", "--listen",
                             f"{HOST}:{port}", "--vm", vm, "--location", "dc2",
                             "--timeout-s", "20"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    line = proc.stdout.readline()
    assert line.startswith("LISTENING"), line + proc.stdout.read()
    return proc


def write_keys(port: int, n: int) -> dict[str, str]:
    kv = KVClient(port)
    try:
        values = {f"k{i}": secrets.token_hex(8) for i in range(n)}
        assert set(kv.ask(*(f"PUT {k} {v}" for k, v in values.items()))) == {"OK"}
        return values
    finally:
        kv.close()


def read_keys(port: int, values: dict[str, str]) -> dict[str, str]:
    kv = KVClient(port)
    try:
        got = kv.ask(*(f"GET {k}" for k in values))
        return {k: g for k, g in zip(values, got, strict=True) if g != f"VAL {values[k]}"}
    finally:
        kv.close()


@dataclass
class Setup:
    vm: object              # the source guest's handle's VM
    port: int               # its service (UDP echo and key-value store)
    mport: int              # where the destination listens
    key: bytes
    values: dict[str, str]  # written to the guest's store before the migration
    dest: subprocess.Popen


@contextmanager
def guest_and_dest(vm_name: str, seed: int, nkeys: int) -> Iterator[Setup]:
    """A guest at dc1 holding ``nkeys`` values, and a destination listening for it; both
    ended afterwards, whatever happened."""
    port, mport, key = free_port(), free_port(), secrets.token_bytes(32)
    handle = start_guest(vm_name, NPAGES, "web", seed, "dc1", service_host=HOST,
                         udp_port=port, tcp_port=port, kv_pages=KV_PAGES, log_level="WARNING")
    dest = None
    try:
        values = write_keys(port, nkeys)
        dest = start_dest(vm_name, key.hex(), mport)
        yield Setup(handle.vm, port, mport, key, values, dest)
    finally:
        if dest is not None and dest.poll() is None:
            dest.kill()
            dest.wait()
        handle.stop()


def test_completed_migration_keeps_every_value_and_switches_site(vm_name):
    with guest_and_dest(vm_name, 3, 300) as g:
        result = run_source(g.vm, (HOST, g.mport), MigrationPolicy(codec="lz4"), g.key,
                            rtt_hint_s=0.0)
        out, _ = g.dest.communicate(timeout=30)
        assert result.outcome == "completed" and result.integrity_ok, (result, out)
        assert wait_for(lambda: g.vm.location == "dc2", 5, "guest at dc2")
        assert read_keys(g.port, g.values) == {}, "values lost or changed after the migration"
        assert echo(g.port, 7, 2.0)[2] == "dc2"
    assert segments(vm_name) == []


def test_destination_killed_mid_round_leaves_the_guest_running_at_the_source(vm_name):
    with guest_and_dest(vm_name, 4, 100) as g:
        killer = threading.Timer(0.3, lambda: g.dest.send_signal(signal.SIGKILL))
        killer.start()
        # A 10 Mbit/s cap makes round 0 (about 20 MiB) last seconds: the kill lands in it.
        result = run_source(g.vm, (HOST, g.mport),
                            MigrationPolicy(codec="none", max_bandwidth_mbps=10), g.key,
                            rtt_hint_s=0.0, timeout_s=5.0)
        killer.join()
        # Killed in a live round: the guest was never paused, so it lost no time either.
        assert result.outcome == "aborted" and result.downtime_s == 0.0, result
        assert [r.phase for r in result.rounds][-1] == "abort", result
        assert all(r.phase == "live" for r in result.rounds[:-1]), result
        assert result.bytes_on_wire > 0, "what the interrupted round had sent is reported"
        # How far it went, from the sockets: what they took, and of it what the destination's
        # TCP acknowledged before it died; never more than was handed to the transport.
        assert result.bytes_sent is not None and result.bytes_acked is not None, result
        assert 0 < result.bytes_acked <= result.bytes_sent <= result.bytes_on_wire, result
        assert g.vm.location == "dc1"
        assert echo(g.port, 9, 2.0) == (9, 1.25, "dc1"), "the guest does not answer at dc1"
        assert read_keys(g.port, g.values) == {}, "values lost after the aborted migration"
    # SIGKILL gave the destination no chance to remove the image it was receiving into; no
    # process maps it any more, so `wanmig clean` takes it.
    assert segments(vm_name) == [f"wanmig-{vm_name}-dst.dirty", f"wanmig-{vm_name}-dst.ram"]
    from migrator.guest.image import clean_images

    clean_images()
    assert segments(vm_name) == []


def test_source_digest_kept_current_equals_a_fresh_one(vm_name):
    """The guest writes while the source's digest is kept current in the background; after the
    pause and a last read of the dirty log it equals a digest of the whole image."""
    import time

    from migrator.wire.digest import image_digest

    handle = start_guest(vm_name, NPAGES, "memory-intensive", 6, "dc1", service=False,
                         log_level="WARNING")
    try:
        vm = handle.vm
        vm.read_and_clear_dirty()                      # starts tracking and the background
        for _ in range(5):
            time.sleep(0.2)                            # the guest writes at ~300 MiB/s
            vm.read_and_clear_dirty()
        assert vm._digest.background_chunks > 0
        vm.pause()
        vm.read_and_clear_dirty()
        got = vm.digest()
        assert got == image_digest(vm.memory.pages)
        vm.resume()
    finally:
        handle.stop()
    assert segments(vm_name) == []


def test_a_source_started_before_its_destination_waits_for_it_when_asked(vm_name):
    """``connect_wait_s``: the source may be started at the same time as the destination (a
    fleet's runner does, to overlap their start-up); a refused connection is tried again."""
    port, mport, key = free_port(), free_port(), secrets.token_bytes(32)
    handle = start_guest(vm_name, NPAGES, "web", 6, "dc1", service_host=HOST, udp_port=port,
                         tcp_port=port, kv_pages=KV_PAGES, log_level="WARNING")
    dests: list[subprocess.Popen] = []
    try:
        refused = run_source(handle.vm, (HOST, mport), MigrationPolicy(codec="lz4"), key,
                             rtt_hint_s=0.0)
        assert refused.outcome != "completed" and "refused" in str(refused.error), refused
        late = threading.Timer(1.0, lambda: dests.append(start_dest(vm_name, key.hex(), mport)))
        late.start()
        result = run_source(handle.vm, (HOST, mport), MigrationPolicy(codec="lz4"), key,
                            rtt_hint_s=0.0, connect_wait_s=20.0)
        late.join()
        out, _ = dests[0].communicate(timeout=30)
        assert result.outcome == "completed" and result.integrity_ok, (result, out)
        assert wait_for(lambda: handle.vm.location == "dc2", 5, "guest at dc2")
    finally:
        for d in dests:
            if d.poll() is None:
                d.kill()
                d.wait()
        handle.stop()
