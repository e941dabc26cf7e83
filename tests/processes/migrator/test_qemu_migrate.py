"""``wanmig qemu-migrate`` between two QEMUs on 127.0.0.1 (no root, no guest OS: a guest that
dirties 8 MiB without pause): a completed migration with the image checked and the protocol
lines a runner reads; TLS-PSK; a time budget that forces the switchover; a destination killed
mid-migration leaves the guest running at the source. Nothing is left behind (``qemus``)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from ground.protocol import Kind, format_line, parse_line
from migrator.core.report import ROUND_COLUMNS
from tests.processes.migrator.qemus import Pair, qemu_pair, status
from tests.processes.migrator.waiting import wait_for

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]


def run_cli(pair: Pair, policy: dict, out: Path, *, gate: bool = True,
            during=None) -> tuple[int, list, dict]:
    """Run ``wanmig qemu-migrate`` on the pair; answer GO after VERIFIED; ``during(lines)`` is
    called from another thread once STARTED is read. Returns (exit status, messages with the
    time each was read, result.json)."""
    (pair.tmp / "policy.yaml").write_text(yaml.safe_dump(policy))
    argv = [sys.executable, "-m", "wanmig.cli", "qemu-migrate", "--src-qmp", str(pair.src_qmp),
            "--dst-qmp", str(pair.dst_qmp), "--uri", pair.uri, "--listen-uri", pair.uri,
            "--src-ram", str(pair.src_ram), "--dst-ram", str(pair.dst_ram),
            "--policy-file", str(pair.tmp / "policy.yaml"), "--out", str(out), "--progress",
            *(["--gate"] if gate else [])]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=open(pair.tmp / "cli.log", "w"), text=True,  # noqa: SIM115
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    msgs = []
    try:
        for line in proc.stdout:
            msg = parse_line(line)
            if msg is None:
                continue
            msgs.append((time.time(), msg))
            if msg.kind is Kind.STARTED and during is not None:
                threading.Thread(target=during, daemon=True).start()
            if msg.kind is Kind.VERIFIED:
                proc.stdin.write(format_line(Kind.GO) + "\n")
                proc.stdin.flush()
        rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = (pair.tmp / "cli.log").read_text()
    assert (out / "result.json").exists(), f"no result.json; exit {rc}; log:\n{log}"
    return rc, msgs, json.loads((out / "result.json").read_text())


def kinds(msgs: list) -> list[Kind]:
    return [m.kind for _, m in msgs]


def rarps(pair: Pair, want: int, deadline_s: float = 5.0) -> int:
    """How many RARP frames (ethertype 0x8035) the destination's NIC sent, reading until
    ``want`` have come or the deadline passed."""
    pair.nic.settimeout(0.05)
    got = 0

    def enough() -> bool:
        nonlocal got
        try:
            frame = pair.nic.recv(2048)
        except TimeoutError:
            return False
        got += frame[12:14] == b"\x80\x35"
        return got >= want
    try:
        wait_for(enough, deadline_s, f"{want} RARPs from the destination")
    except AssertionError:
        pass
    return got


def test_completed_migration_checked_and_reported(tmp_path):
    with qemu_pair(tmp_path) as pair:
        policy = {"codec": "none", "streams": 1, "encryption": "none"}
        t0 = time.monotonic()
        rc, msgs, res = run_cli(pair, policy, tmp_path / "out")
        elapsed = time.monotonic() - t0
        ctx = f"exit {rc}, {elapsed:.2f} s, lines {kinds(msgs)}, result {json.dumps(res)[:1500]}"
        assert rc == 0 and res["outcome"] == "completed", ctx
        assert res["integrity_ok"] is True, ctx
        seq = [k for k in kinds(msgs) if k is not Kind.PROGRESS]
        assert seq == [Kind.STARTED, Kind.PAUSED, Kind.VERIFIED, Kind.RESUMED], ctx
        times = {m.kind: m.t for _, m in msgs}
        resumed = times[Kind.RESUMED]
        assert times[Kind.STARTED] <= times[Kind.PAUSED] <= times[Kind.VERIFIED] <= resumed
        # The downtime is STOP (source) to RESUME (destination), both stamped by QEMU.
        down = resumed - times[Kind.PAUSED]
        assert res["downtime_s"] == pytest.approx(down, abs=1e-3), ctx
        assert status(pair.dst_qmp) == "running" and status(pair.src_qmp) == "postmigrate"
        # QEMU announces (5 RARPs) when the incoming migration completes, the guest still
        # paused; the driver's announce-self after cont makes 5 more.
        assert rarps(pair, 10) == 10, ctx
        q = res["qemu"]
        for side in ("src", "dst"):
            rep = q["reported"][side]
            for k, v in q["asked"]["parameters"].items():
                assert rep["parameters"][k] == v, (side, k, ctx)
            for k, v in q["asked"]["capabilities"].items():
                assert rep["capabilities"][k] is v, (side, k, ctx)
        rows = list(csv.DictReader((tmp_path / "out" / "rounds.csv").open()))
        assert tuple(rows[0]) == ROUND_COLUMNS
        phases = [r["phase"] for r in rows]
        assert phases[-2:] == ["stop-copy", "verify"] and set(phases[:-2]) == {"live"}, rows
        # The rows' sums are QEMU's totals; the first pass sent the 32 MiB filled.
        fig = q["figures"]
        assert sum(int(r["pages"]) for r in rows) == fig["normal"], (rows, fig)
        assert sum(int(r["zero_pages"]) for r in rows) == fig["duplicate"], (rows, fig)
        assert sum(int(r["bytes_on_wire"]) for r in rows) == fig["transferred"], (rows, fig)
        assert int(rows[0]["pages"]) >= 32 * 256, rows[0]
        assert fig["dirty-sync-count"] >= 2 and fig["total-time"] > 0, fig
        summary = json.loads((tmp_path / "out" / "summary.json").read_text())
        assert summary["outcome"] == "completed" and summary["vm_kind"] == "qemu"
        procs = list(pair.procs.values())
    assert all(p.poll() is not None for p in procs), "a QEMU outlived its test"
    assert not pair.src_ram.exists() and not pair.dst_ram.exists(), "a RAM file was left"
    print(f"128 MiB, no TLS, loopback: CLI {elapsed:.2f} s, QEMU total "
              f"{fig['total-time']} ms, QEMU downtime {fig['downtime']} ms, ours "
              f"{res['downtime_s'] * 1e3:.1f} ms (copy {res['final_copy_s'] * 1e3:.1f} + "
              f"verify {res['verify_s'] * 1e3:.1f} + resume {res['resume_s'] * 1e3:.1f})")


@pytest.mark.parametrize("streams", [1, 2])
@pytest.mark.parametrize("cipher", ["none", "aes-256-gcm", "chacha20-poly1305"])
def test_encryption(tmp_path, cipher, streams):
    """TLS-PSK restricted to each cipher, on one stream and on multifd channels (with
    ``none`` beside them: their figures, printed, are what TLS costs here)."""
    with qemu_pair(tmp_path) as pair:
        policy = {"codec": "none", "streams": streams, "encryption": cipher}
        rc, msgs, res = run_cli(pair, policy, tmp_path / "out")
        ctx = f"exit {rc}, lines {kinds(msgs)}, error {res['error']}"
        assert rc == 0 and res["outcome"] == "completed" and res["integrity_ok"], ctx
        q = res["qemu"]
        tls = None if cipher == "none" else cipher
        assert q["tls"] == tls, ctx
        assert q["reported"]["src"]["parameters"]["tls-creds"] == ("" if tls is None
                                                                   else "wanmig-tls0"), ctx
        assert (q["figures"]["multifd-bytes"] > 0) == (streams > 1), q["figures"]
        print(f"{cipher}, {streams} stream(s): QEMU total {q['figures']['total-time']} ms, "
              f"setup {q['figures']['setup-time']} ms, downtime {q['figures']['downtime']} ms, "
              f"wire {res['bytes_on_wire'] / 2**20:.1f} MiB")


@pytest.mark.parametrize(("codec", "streams"), [("zstd-1", 2), ("zstd-1", 1), ("xbzrle", 1)])
def test_codecs(tmp_path, codec, streams):
    """QEMU's codecs as the policy names them: zstd on multifd channels (one channel for one
    stream), xbzrle with its cache on one stream."""
    with qemu_pair(tmp_path) as pair:
        policy = {"codec": codec, "streams": streams, "encryption": "none"}
        rc, msgs, res = run_cli(pair, policy, tmp_path / "out")
        fig = res["qemu"]["figures"]
        ctx = f"exit {rc}, error {res['error']}, figures {fig}"
        assert rc == 0 and res["outcome"] == "completed" and res["integrity_ok"], ctx
        if codec.startswith("zstd"):
            # QEMU 7.2 counts multifd pages before compression: said in result.json
            assert fig["multifd-bytes"] > 0 and res["qemu"]["counting"], ctx
        else:
            assert fig["xbzrle-cache"]["cache-size"] == 64 << 20, ctx
        print(f"{codec} x{streams}: ratio {res['compression_ratio']:.2f}, QEMU total "
              f"{fig['total-time']} ms, xbzrle {fig.get('xbzrle-cache')}")


@pytest.mark.parametrize("on_budget", ["force", "abort"])
def test_time_budget(tmp_path, on_budget):
    with qemu_pair(tmp_path) as pair:
        # 8 MiB always dirty cannot meet 1 ms at a 400 Mbit/s cap: only the budget ends it.
        policy = {"codec": "none", "streams": 1, "encryption": "none",
                  "downtime_target_ms": 1, "time_budget_s": 2, "max_bandwidth_mbps": 400,
                  "on_budget": on_budget}
        rc, msgs, res = run_cli(pair, policy, tmp_path / "out")
        ctx = f"exit {rc}, error {res['error']}, rounds {len(res['rounds'])}"
        assert res["stop_reason"] == "time_budget", ctx
        assert res["total_time_s"] >= 2.0 - 0.2, ctx
        if on_budget == "force":
            assert rc == 0 and res["outcome"] == "completed" and res["integrity_ok"], ctx
        else:
            assert rc == 1 and res["outcome"] == "aborted: budget", ctx
            assert status(pair.src_qmp) == "running", ctx


def test_cold_migration(tmp_path):
    with qemu_pair(tmp_path) as pair:
        policy = {"codec": "none", "streams": 1, "encryption": "none", "mode": "cold"}
        rc, msgs, res = run_cli(pair, policy, tmp_path / "out")
        ctx = f"exit {rc}, error {res['error']}, rounds {res['rounds']}"
        assert rc == 0 and res["outcome"] == "completed" and res["integrity_ok"], ctx
        assert res["stop_reason"] == "cold" and kinds(msgs)[:2] == [Kind.STARTED, Kind.PAUSED]
        assert {r["phase"] for r in res["rounds"]} == {"cold", "verify"}, ctx
        # paused all along: the downtime is the whole migration and then some
        assert res["downtime_s"] >= res["total_time_s"] - 0.05, ctx


def test_destination_killed_aborts_and_source_runs(tmp_path):
    with qemu_pair(tmp_path) as pair:
        # 8 Mbit/s: the 40 MiB to send would take ~40 s; the kill comes after 4 MiB.
        policy = {"codec": "none", "streams": 1, "encryption": "none",
                  "max_bandwidth_mbps": 8}

        def kill_destination() -> None:
            # Once the destination holds 4 MiB of pages (its sparse RAM file fills as they
            # arrive), the migration is well under way: kill it there.
            wait_for(lambda: pair.dst_ram.exists() and
                     pair.dst_ram.stat().st_blocks * 512 > 4 << 20, 20,
                     "the destination receiving pages")
            pair.procs["dst"].send_signal(signal.SIGKILL)

        t0 = time.monotonic()
        rc, msgs, res = run_cli(pair, policy, tmp_path / "out", during=kill_destination)
        ctx = f"exit {rc}, {time.monotonic() - t0:.1f} s, error {res['error']}"
        assert rc == 1 and res["outcome"] == "aborted" and res["error"], ctx
        assert res["rounds"][-1]["phase"] == "abort", ctx
        assert Kind.VERIFIED not in kinds(msgs) and Kind.RESUMED not in kinds(msgs), ctx
        assert status(pair.src_qmp) == "running", ctx
