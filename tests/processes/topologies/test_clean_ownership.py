"""Issue 14, fault 8: ``wanmig clean`` decides what a network owns from the records under
``WANMIG_STATE_DIR``, never from command lines.  A delay line that a live network's record
owns (recorded by PID and start time, or started by its live owner and not yet recorded) is
left alone; one of a network whose owner is dead, and one no record knows, are stopped.

A delay line that no record owns but whose parent still runs was started by a live process (a
network recorded elsewhere, or one being built): it is kept and said so; an orphan is stopped.

The "delay lines" are sleeping Python processes whose command line carries the delay line's
module name, which is all the old clean looked at; the records are written in this test's own
state folder, and the search is limited to these processes (``scope``), so nothing else on the
machine can be touched.
"""

from __future__ import annotations

import os
import shlex
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
# started by a shell that exits at once: adopted by init, as after its owner's kill -9
ORPHAN = ["sh", "-c", " ".join(map(shlex.quote, SLEEPER)) + " >/dev/null 2>&1 & echo $!"]


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
    """Popen objects and bare PIDs (processes not our children) to end after the test."""
    made: list = []
    yield made
    for proc in made:
        if isinstance(proc, tuple):
            pid, start = proc
            if same_process(pid, start):
                os.kill(pid, signal.SIGKILL)
            continue
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def bare(procs: list, pid: int) -> int:
    procs.append((pid, started(pid)))
    return pid


def test_clean_leaves_a_live_networks_delay_line_and_stops_an_orphans(tmp_path, monkeypatch,
                                                                      procs):
    monkeypatch.setenv("WANMIG_STATE_DIR", str(tmp_path))
    owner = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE)
    procs.append(owner)
    owners_child = bare(procs, int(owner.stdout.readline()))    # not yet recorded
    live_line, dead_line, ours = (subprocess.Popen(SLEEPER) for _ in range(3))
    procs += [live_line, dead_line, ours]
    orphan = bare(procs, int(subprocess.run(ORPHAN, capture_output=True, text=True,
                                            check=True).stdout))
    gone = subprocess.Popen(SLEEPER)                             # the dead network's owner
    gone_start = started(gone.pid)
    gone.kill()
    gone.wait(timeout=10)
    record(tmp_path, "live", owner.pid, started(owner.pid), [live_line.pid])
    record(tmp_path, "dead", gone.pid, gone_start, [dead_line.pid])
    scope = {owners_child, live_line.pid, dead_line.pid, ours.pid, orphan}
    starts = {p: started(p) for p in scope}

    actions = clean_networks(scope=scope)

    alive = {p for p in scope if same_process(p, starts[p])}
    context = f"actions {actions}; alive {alive}"
    assert alive == {owners_child, live_line.pid, ours.pid}, context
    assert f"kept live: its owner {owner.pid} is running" in actions, context
    assert "dead: killed 1 process(es)" in actions, context
    assert f"kept delay line {ours.pid}: no record owns it, but its parent {os.getpid()} runs " \
        "(--all stops it)" in actions, context
    assert f"stopped 1 stray delay line(s) no live network owns: {orphan}" in actions, context
    assert sorted(p.name for p in tmp_path.glob("net-*.json")) == \
        [f"net-{owner.pid}-live.json"], context

    actions = clean_networks(include_live=True, scope=scope)       # --all: everything goes
    assert not any(same_process(p, starts[p]) for p in scope), actions
    assert owner.wait(timeout=10) != 0 and list(tmp_path.glob("net-*.json")) == [], actions
