"""Issue 14, fault 8: ``wanmig clean`` decides what a network owns from the records under
``WANMIG_STATE_DIR``, never from command lines.  A delay line that a live network's record
owns (recorded by PID and start time, or started by its live owner and not yet recorded) is
left alone; one of a network whose owner is dead, and one no record knows, are stopped.

The "delay lines" are sleeping Python processes whose command line carries the delay line's
module name, which is all the old clean looked at; the records are written in this test's own
state folder, and the search is limited to these processes (``scope``), so nothing else on the
machine can be touched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from ground.records import same_process, start_time, write_record
from topologies.cleanup import DELAYLINE_MARK, clean_networks

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)", DELAYLINE_MARK]
OWNER = ("import subprocess, sys, time; "
         f"p = subprocess.Popen({SLEEPER!r}); print(p.pid, flush=True); time.sleep(120)")


def started(proc_pid: int) -> int:
    deadline = time.monotonic() + 5
    while (start := start_time(proc_pid)) is None:
        assert time.monotonic() < deadline, f"pid {proc_pid} has no start time"
        time.sleep(0.01)
    return start


def record(state, name: str, owner: int, owner_start: int, pids: list[int]) -> None:
    write_record(state / f"net-{owner}-{name}.json", {
        "name": name, "owner_pid": owner, "owner_start": owner_start, "switches": [],
        "nodes": [], "pids": [[p, started(p)] for p in pids], "netns": []})


@pytest.fixture
def procs():
    made: list[subprocess.Popen] = []
    yield made
    for proc in made:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_clean_leaves_a_live_networks_delay_line_and_stops_an_orphans(tmp_path, monkeypatch,
                                                                      procs):
    monkeypatch.setenv("WANMIG_STATE_DIR", str(tmp_path))
    owner = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE)
    procs.append(owner)
    unrecorded_child = int(owner.stdout.readline())          # started by the live owner
    child_start = started(unrecorded_child)
    try:
        check(tmp_path, owner, unrecorded_child, procs)
    finally:
        if same_process(unrecorded_child, child_start):
            os.kill(unrecorded_child, signal.SIGKILL)


def check(tmp_path, owner: subprocess.Popen, unrecorded_child: int,
          procs: list[subprocess.Popen]) -> None:
    live_line, dead_line, stray = (subprocess.Popen(SLEEPER) for _ in range(3))
    procs += [live_line, dead_line, stray]
    gone = subprocess.Popen(SLEEPER)                          # the dead network's owner
    gone_start = started(gone.pid)
    gone.kill()
    gone.wait(timeout=10)
    record(tmp_path, "live", owner.pid, started(owner.pid), [live_line.pid])
    record(tmp_path, "dead", gone.pid, gone_start, [dead_line.pid])
    scope = {unrecorded_child, live_line.pid, dead_line.pid, stray.pid}
    starts = {p: started(p) for p in scope}

    actions = clean_networks(scope=scope)

    alive = {p for p in scope if same_process(p, starts[p])}
    context = f"actions {actions}; alive {alive}"
    assert alive == {unrecorded_child, live_line.pid}, context
    assert f"kept live: its owner {owner.pid} is running" in actions, context
    assert "dead: killed 1 process(es)" in actions, context
    assert f"stopped 1 stray delay line(s) no live network owns: {stray.pid}" in actions, context
    assert sorted(p.name for p in tmp_path.glob("net-*.json")) == \
        [f"net-{owner.pid}-live.json"], context

    actions = clean_networks(include_live=True, scope=scope)       # --all: everything goes
    assert not any(same_process(p, starts[p]) for p in scope), actions
    assert owner.wait(timeout=10) != 0 and list(tmp_path.glob("net-*.json")) == [], actions
