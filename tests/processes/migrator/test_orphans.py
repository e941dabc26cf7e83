"""Issue 14, fault 7: a guest never outlives its owner as an orphan still writing, and
``wanmig clean`` (``clean_guests``, then ``clean_images``) decides from the guests' records:
a guest whose owner runs is left alone; one whose owner is dead is stopped and its memory
removed, and it says so.

Everything lives in this test's own state and shared-memory folders (``WANMIG_STATE_DIR``,
``WANMIG_SHM_DIR``), so no other run's guest or image on this machine can be touched.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ground.records import same_process, start_time, write_record
from migrator.guest.image import GuestMemory, clean_images, leftover_segments
from migrator.guest.records import clean_guests, record_path
from tests.processes.migrator.waiting import wait_for

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    shm, state = tmp_path / "shm", tmp_path / "state"
    shm.mkdir()
    state.mkdir()
    monkeypatch.setenv("WANMIG_SHM_DIR", str(shm))
    monkeypatch.setenv("WANMIG_STATE_DIR", str(state))
    return shm, state



def guest_record(state: Path) -> dict | None:
    for path in state.glob("guest-*.json"):
        data = json.loads(path.read_text())
        if data.get("pid"):
            return data
    return None


def dead_process() -> tuple[int, int]:
    """A (pid, start time) pair whose process has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    start = wait_for(lambda: start_time(proc.pid), 5, "start time")
    proc.kill()
    proc.wait(timeout=10)
    return proc.pid, start


def test_kill_9_of_a_loopback_migration_leaves_no_process_and_clean_leaves_no_file(dirs,
                                                                                  tmp_path):
    shm, state = dirs
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "wanmig.cli", "migrate", "--loopback",
                             "--memory", "32MiB", "--workload", "web", "--bw-sim", "8",
                             "--codec", "none", "--out", str(tmp_path / "out")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        rec = wait_for(lambda: guest_record(state), 60, "the guest recorded with its pid")
        # The migration is under way once the destination's image exists.
        wait_for(lambda: any(n.endswith("-dst.ram") for n in leftover_segments()), 60,
                 "the destination's image")
        assert rec["owner_pid"] == proc.pid and same_process(rec["pid"], rec["start"])
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    killed = time.monotonic()
    wait_for(lambda: not same_process(rec["pid"], rec["start"]), 5,
             f"guest pid {rec['pid']} gone after its owner's kill -9")
    print(f"guest gone {time.monotonic() - killed:.2f} s after its owner's kill -9")
    left = leftover_segments()
    assert left, "a kill -9 leaves the images (nobody removed them): the case for clean"
    actions = clean_guests() + clean_images()
    assert list(shm.iterdir()) == [] and list(state.glob("guest-*")) == [], actions
    assert any(a == f"removed the record of guest {rec['vm']}" for a in actions), actions
    assert sum(a.startswith("removed VM memory") for a in actions) == len(left), actions


def test_clean_stops_a_guest_whose_owner_is_dead_and_keeps_one_whose_owner_runs(dirs):
    shm, state = dirs
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    names = ["o" + secrets.token_hex(4), "o" + secrets.token_hex(4)]
    procs = []
    try:
        for name in names:                 # an old guest: it does not watch its owner
            mem = GuestMemory.create(name, "src", 256, tracking=True)
            mem.close()
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "migrator.guest.process", "--vm", name, "--tag", "src",
                 "--workload", "idle", "--no-service", "--kv-pages", "8", "--log-level",
                 "WARNING"], stdout=subprocess.PIPE, env=env))
            assert procs[-1].stdout.readline().startswith(b"READY")
        dead_pid, dead_start = dead_process()
        owners = {names[0]: (dead_pid, dead_start), names[1]: (os.getpid(),
                                                               start_time(os.getpid()))}
        for name, proc in zip(names, procs, strict=True):
            owner, owner_start = owners[name]
            write_record(record_path(name), {
                "vm": name, "owner_pid": owner, "owner_start": owner_start, "pid": proc.pid,
                "start": start_time(proc.pid), "images": f"wanmig-{name}-"})
        actions = clean_guests()
        orphan, kept = procs
        assert orphan.wait(timeout=10) == 0, actions         # SIGTERM: a clean exit
        assert kept.poll() is None, actions
        assert f"stopped guest {names[0]} (pid {orphan.pid}): its owner pid {dead_pid} is gone" \
            in actions, actions
        assert f"kept guest {names[1]} (pid {kept.pid}): its owner pid {os.getpid()} is " \
            "running" in actions, actions
        assert [n for n in leftover_segments() if names[0] in n] == [], actions
        assert len([n for n in leftover_segments() if names[1] in n]) == 3, actions
        assert not record_path(names[0]).exists() and record_path(names[1]).exists()
        actions = clean_guests(include_live=True)
        assert kept.wait(timeout=10) == 0 and list(shm.iterdir()) == [], actions
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            proc.stdout.close()
