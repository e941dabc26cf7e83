"""``wanmig validate`` on hostile files: a non-UTF-8 file and a YAML alias bomb are bad input
(exit 2) with one line that says so, in bounded time, never a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ground.errors import Exit
from tests.unit.ground.test_yamlfile import BOMB
from wanmig.cli import main

ROOT = Path(__file__).resolve().parents[3]
CLI_BOUND_S = 30.0        # a whole interpreter start and import, on a loaded two-core machine
HOSTILE = {"non-utf8": (b"name: x\ndescription: caf\xe9\n", "UTF-8"),
           "alias-bomb": (BOMB.encode(), "YAML aliases are not supported")}


@pytest.fixture(autouse=True)
def _restore_sigterm():
    previous = signal.getsignal(signal.SIGTERM)   # main() installs its own SIGTERM handler
    yield
    signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_validate_refuses_with_one_line(tmp_path, capsys, kind):
    content, words = HOSTILE[kind]
    path = tmp_path / f"{kind}.yaml"
    path.write_bytes(content)
    assert main(["validate", str(path)]) == Exit.INPUT
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("wanmig: bad input: ") and words in lines[0], err


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_validate_in_a_process_exits_2_without_traceback(tmp_path, kind):
    content, words = HOSTILE[kind]
    path = tmp_path / f"{kind}.yaml"
    path.write_bytes(content)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "wanmig.cli", "validate", str(path)],
                          capture_output=True, text=True, env=env, timeout=CLI_BOUND_S, cwd=ROOT)
    took = time.monotonic() - t0
    assert proc.returncode == Exit.INPUT, (proc.returncode, proc.stderr, f"{took:.2f} s")
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and "bad input" in proc.stderr, proc.stderr
    assert words in proc.stderr, proc.stderr
