"""experiments.faults.actions: a kill fault kills the running migrator process (a real one
here) and refuses one that is gone."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest

from experiments.faults.actions import FaultError, RunActions
from experiments.faults.spec import FaultSpec


def test_a_kill_kills_the_running_migrator_and_refuses_one_gone():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        procs = {"dest": SimpleNamespace(proc=proc)}
        acts = RunActions(SimpleNamespace(links=[], control=None), procs.get, "dc2h1")
        assert acts.apply(FaultSpec("kill-destination", None, "stop-copy", None, None)) == {
            "killed_pid": proc.pid}
        assert proc.wait(timeout=5) == -9
        with pytest.raises(FaultError, match="the dest migrator is not running .it has exited"):
            acts.apply(FaultSpec("kill-destination", None, "stop-copy", None, None))
        with pytest.raises(FaultError, match="the source migrator is not running .never"):
            acts.apply(FaultSpec("kill-source", None, "stop-copy", None, None))
    finally:
        proc.kill()
        proc.wait()
