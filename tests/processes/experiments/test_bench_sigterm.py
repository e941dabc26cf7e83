"""A benchmark terminated with SIGTERM tears down what it built (its finally blocks run) and
exits as interrupted, as the wanmig command does; it once left its network behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
BENCH = """
import sys, threading
from experiments.bench.harness import entry

def main():
    try:
        print("BUILT", flush=True)
        threading.Event().wait(60)
        return 0
    finally:
        print("TORN DOWN", flush=True)

sys.exit(entry(main))
"""


def test_sigterm_runs_the_teardown_and_exits_as_interrupted():
    proc = subprocess.Popen([sys.executable, "-c", BENCH], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout.readline().strip() == "BUILT"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert "TORN DOWN" in out and proc.returncode == 130, (proc.returncode, out, err)
