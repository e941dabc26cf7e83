"""A guest that arrived can leave again: there, back and there once more over TCP on this
machine, each move verified, the guest's values intact and its site switched every time. The
destination's image keeps a dirty log (the guest marks its writes there once switched onto it)
and the guest keeps obeying the control block of the image it started on (``--control-tag``)."""

from __future__ import annotations

import os
import subprocess
import sys

from migrator.core.policy import MigrationPolicy
from migrator.endpoints import run_source
from migrator.guest.vm import SharedVM, start_guest
from tests.processes.migrator.test_guest import HOST, KV_PAGES, echo, free_port, segments, wait_for
from tests.processes.migrator.test_loopback import NPAGES, read_keys, vm_name, write_keys

__all__ = ["vm_name"]          # the fixture, used by name

MOVES = [("src", "m1", "dc2"), ("m1", "m2", "dc1"), ("m2", "m3", "dc2")]


def start_dest(vm: str, key_hex: str, port: int, tag: str, source_tag: str,
               location: str) -> subprocess.Popen:
    env = dict(os.environ, WANMIG_MIGRATION_KEY=key_hex)
    proc = subprocess.Popen([sys.executable, "-m", "wanmig.cli", "migrate-dest", "--listen",
                             f"{HOST}:{port}", "--vm", vm, "--tag", tag, "--source-tag",
                             source_tag, "--control-tag", "src", "--location", location,
                             "--timeout-s", "20"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    line = proc.stdout.readline()
    assert line.startswith("LISTENING"), line + proc.stdout.read()
    return proc


def test_there_back_and_there_again_each_move_verified(vm_name):
    port = free_port()
    handle = start_guest(vm_name, NPAGES, "web", 5, "dc1", service_host=HOST, udp_port=port,
                         tcp_port=port, kv_pages=KV_PAGES, log_level="WARNING")
    try:
        values = write_keys(port, 100)
        for n, (src, dst, site) in enumerate(MOVES, start=1):
            key, mport = os.urandom(32), free_port()
            dest = start_dest(vm_name, key.hex(), mport, dst, src, site)
            vm = handle.vm if src == "src" else SharedVM(vm_name, src, control_tag="src")
            try:
                result = run_source(vm, (HOST, mport), MigrationPolicy(codec="lz4"), key,
                                    rtt_hint_s=0.0)
                out, _ = dest.communicate(timeout=30)
            finally:
                if vm is not handle.vm:
                    vm.close()
                if dest.poll() is None:
                    dest.kill()
                    dest.wait()
            assert result.outcome == "completed" and result.integrity_ok, (n, result, out)
            # Every move after the first reads the guest's writes from the image it arrived
            # in: a destination image without a dirty log would have nothing to send again.
            assert len(result.rounds) >= 2 and result.rounds[1].pages > 0, (n, result.rounds)
            assert wait_for(lambda site=site: handle.vm.location == site, 5, f"guest at {site}")
            assert handle.vm.state().tag == dst, (n, handle.vm.state())
            assert read_keys(port, values) == {}, f"values lost or changed by move {n}"
            values.update(write_keys(port, 20 * n))      # written where it runs now
            assert echo(port, 3, 2.0)[2] == site
    finally:
        handle.stop()
    leftovers = segments(vm_name)
    # The guest's handle removes its first image and the one it runs on; images it passed
    # through are the runner's to remove (it removes every image of its VMs at the end).
    assert set(leftovers) <= {f"wanmig-{vm_name}-m1.ram", f"wanmig-{vm_name}-m1.dirty",
                              f"wanmig-{vm_name}-m2.ram", f"wanmig-{vm_name}-m2.dirty"}, \
        leftovers
