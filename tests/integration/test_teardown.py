"""Nothing is left behind: after a normal exit, after Ctrl-C, and after a kill plus wanmig clean."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.integration.helpers import assert_nothing_left, leftovers
from topologies.portbuf import read_default
from topologies.spec import parse_topology

pytestmark = pytest.mark.root

CONFIG = {"name": "teardown", "sites": [{"name": "td1"}, {"name": "td2"}],
          "wan": [{"rtt_ms": 20, "bw_mbps": 50}]}
UP_TIMEOUT_S = 60


def start_net(tmp_path: Path) -> tuple[subprocess.Popen, dict]:
    cfg = tmp_path / "teardown.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    env = dict(os.environ, WANMIG_STATE_DIR=str(tmp_path / "state"),
               WANMIG_RESULTS=str(tmp_path / "results"))
    proc = subprocess.Popen([sys.executable, "-m", "wanmig.cli", "net", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    deadline = time.monotonic() + UP_TIMEOUT_S
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "network up" in line:
            return proc, env
    proc.kill()
    proc.wait()
    pytest.fail("wanmig net did not come up:\n" + "".join(lines))


def clean(env: dict) -> str:
    res = subprocess.run([sys.executable, "-m", "wanmig.cli", "clean"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_tears_everything_down(choice, tmp_path, sig):
    spec = parse_topology(CONFIG)
    rmem_before = read_default()
    proc, _env = start_net(tmp_path)
    assert leftovers(spec)["bridges"], "the network was not up before the signal"
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert_nothing_left(spec)
    assert read_default() == rmem_before, "net.core.rmem_default was not put back"


def test_killed_run_is_removed_by_wanmig_clean(choice, tmp_path):
    spec = parse_topology(CONFIG)
    rmem_before = read_default()
    proc, env = start_net(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    left = leftovers(spec)
    assert left["bridges"] and left["delaylines"], f"a killed run should leave things: {left}"
    report = clean(env)
    assert "deleted bridge" in report, report
    assert_nothing_left(spec)
    assert read_default() == rmem_before, "wanmig clean did not put net.core.rmem_default back"
    assert not list((tmp_path / "state").glob("net-*.json")), "the cleanup record is still there"
    # A second clean has nothing to do; it may only say what it keeps (another run's delay line
    # or VM memory on this machine, owned by a live process).
    again = clean(env).strip().splitlines()
    assert again == ["nothing to clean"] or all(a.startswith("kept ") for a in again), again
