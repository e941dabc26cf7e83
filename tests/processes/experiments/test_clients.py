"""experiments.clients against a tiny guest service on 127.0.0.1 speaking the VM's protocol."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from experiments.clients import (
    READBACK_OP,
    ClientConfig,
    KvOp,
    KvPlan,
    ProbeLog,
    decode_reply,
    encode_probe,
    judge_reply,
    run_clients,
)

REPO = Path(__file__).resolve().parents[3]


class FakeGuest:
    """UDP echo and TCP key-value service; can drop probes, corrupt a key, drop a connection."""

    def __init__(self, site: bytes = b"dc1", drop_seqs: frozenset[int] = frozenset(),
                 corrupt: str | None = None, close_after: int | None = None) -> None:
        self.site, self.drop_seqs, self.corrupt = site, drop_seqs, corrupt
        self.close_after = close_after      # close the first connection after n requests
        self.store: dict[str, str] = {}
        self.probes_seen = 0
        self.requests = 0
        self.connections = 0
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp.settimeout(0.05)
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(8)
        self.tcp.settimeout(0.05)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._udp_loop, daemon=True),
                        threading.Thread(target=self._tcp_loop, daemon=True)]
        for t in self.threads:
            t.start()

    @property
    def ports(self) -> tuple[int, int]:
        return self.udp.getsockname()[1], self.tcp.getsockname()[1]

    def _udp_loop(self) -> None:
        while not self.stop.is_set():
            try:
                data, src = self.udp.recvfrom(64)
            except TimeoutError:
                continue
            except OSError:
                return
            seq, t_send = struct.unpack(">Qd", data)
            self.probes_seen += 1
            if seq not in self.drop_seqs:
                self.udp.sendto(struct.pack(">Qd16s", seq, t_send, self.site), src)

    def _tcp_loop(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.tcp.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn, self.connections), daemon=True
                             ).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        served = 0
        with conn, conn.makefile("rwb") as fh:
            while not self.stop.is_set():
                line = fh.readline()
                if not line:
                    return
                if number == 1 and self.close_after is not None and served >= self.close_after:
                    return          # drop the connection without answering this request
                served += 1
                self.requests += 1
                parts = line.decode().split()
                if parts[:1] == ["PUT"] and len(parts) == 3:
                    self.store[parts[1]] = parts[2]
                    fh.write(b"OK\n")
                elif parts[:1] == ["GET"] and len(parts) == 2:
                    value = self.store.get(parts[1])
                    if value is not None and parts[1] == self.corrupt:
                        value = "X" + value[1:]
                    fh.write(b"NONE\n" if value is None else f"VAL {value}\n".encode())
                else:
                    fh.write(b"ERR bad request\n")
                fh.flush()

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(2)
        self.udp.close()
        self.tcp.close()


@pytest.fixture
def guest_factory():
    made: list[FakeGuest] = []

    def make(**kw) -> FakeGuest:
        g = FakeGuest(**kw)
        made.append(g)
        return g
    yield make
    for g in made:
        g.close()


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def config(guest: FakeGuest, **kw) -> ClientConfig:
    probe_port, kv_port = guest.ports
    base = dict(target="127.0.0.1", duration_s=0.6, probe_ms=10.0, kv_ops=0, kv_rate_hz=100.0,
                value_bytes=16, probe_port=probe_port, kv_port=kv_port, kv_timeout_s=1.0,
                kv_retry_s=3.0, grace_s=0.2, readback_s=5.0)
    base.update(kw)
    return ClientConfig(**base)


# --- pure parts ----------------------------------------------------------------------------------

def test_probe_encoding_and_reply_decoding():
    assert struct.unpack(">Qd", encode_probe(7, 1.5)) == (7, 1.5)
    assert decode_reply(struct.pack(">Qd16s", 7, 1.5, b"dc2")) == (7, 1.5, "dc2")
    assert decode_reply(b"short") is None
    assert decode_reply(struct.pack(">Qd16s", 1, 0.0, b"\xff\xfe")) is None


def test_probe_log_keeps_first_reply_and_marks_lost():
    log = ProbeLog()
    for seq in range(3):
        log.on_send(seq, 100.0 + seq)
    assert log.on_reply(struct.pack(">Qd16s", 0, 100.0, b"dc1"), 100.05)
    assert not log.on_reply(struct.pack(">Qd16s", 0, 100.0, b"dc1"), 100.06)   # duplicate
    assert not log.on_reply(struct.pack(">Qd16s", 9, 0.0, b"dc1"), 100.07)     # never sent
    assert log.on_reply(struct.pack(">Qd16s", 2, 102.0, b"dc2"), 102.5)
    rows = log.rows()
    assert [r["site"] for r in rows] == ["dc1", "", "dc2"]
    assert rows[1]["t_reply"] == "" and rows[1]["rtt_ms"] == ""
    assert float(rows[0]["rtt_ms"]) == pytest.approx(50.0, abs=1e-3)
    assert (log.duplicates, log.malformed) == (1, 1)


def test_kv_plan_alternates_writes_and_reads_of_earlier_writes():
    plan = KvPlan(20, 8, seed=3)
    ops = [plan.op(i) for i in range(20)]
    written = {}
    for op in ops:
        if op.op == "PUT":
            assert len(op.value) == 8 and op.key not in written
            written[op.key] = op.value
        else:
            assert written[op.key] == op.value     # reads expect what was written before
    assert [o.op for o in ops[:4]] == ["PUT", "GET", "PUT", "GET"]
    again = KvPlan(20, 8, seed=3)
    assert [again.op(i) for i in range(20)] == ops


@pytest.mark.parametrize(("op", "reply", "expected"), [
    (KvOp("PUT", "k", "v"), "OK\n", ("ok", "")),
    (KvOp("PUT", "k", "v"), "ERR full\n", ("error:ERR full", "")),
    (KvOp("GET", "k", "v"), "VAL v\n", ("ok", "v")),
    (KvOp("GET", "k", "v"), "VAL w\n", ("mismatch", "w")),
    (KvOp("GET", "k", "v"), "NONE\n", ("missing", "")),
    (KvOp("GET", "k", "v"), None, ("failed", "")),
])
def test_judge_reply(op, reply, expected):
    assert judge_reply(op, reply) == expected


# --- against the fake guest -------------------------------------------------------------------

def test_probes_recorded_and_a_dropped_reply_is_lost(tmp_path, guest_factory):
    guest = guest_factory(site=b"dc2", drop_seqs=frozenset({5}))
    run_clients(config(guest), tmp_path, threading.Event())
    rows = read_csv(tmp_path / "probes.csv")
    context = f"rows={rows[:8]}..., n={len(rows)}"
    # 0.6 s at 10 ms: 60 probes; allow a slow scheduler to lose a third of them.
    assert 40 <= len(rows) <= 61, context
    assert [int(r["seq"]) for r in rows] == list(range(len(rows))), context
    lost = [int(r["seq"]) for r in rows if r["t_reply"] == ""]
    assert lost == [5], context
    answered = [r for r in rows if r["t_reply"]]
    assert {r["site"] for r in answered} == {"dc2"}, context
    for r in answered:     # loopback: well under 100 ms even on a loaded machine
        assert 0 <= float(r["rtt_ms"]) < 100, r
        assert float(r["t_reply"]) >= float(r["t_send"]), r


def test_kv_readback_detects_a_wrong_value(tmp_path, guest_factory):
    guest = guest_factory(corrupt="k000002")
    run_clients(config(guest, kv_ops=10, duration_s=1.0), tmp_path, threading.Event())
    rows = read_csv(tmp_path / "kv.csv")
    puts = [r for r in rows if r["op"] == "PUT"]
    readback = {r["key"]: r for r in rows if r["op"] == READBACK_OP}
    assert len(puts) == 5 and all(r["result"] == "ok" for r in puts), rows
    assert set(readback) == {r["key"] for r in puts}, rows
    assert readback["k000002"]["result"] == "mismatch", rows
    assert readback["k000002"]["value"].startswith("X"), rows
    assert all(r["result"] == "ok" for k, r in readback.items() if k != "k000002"), rows
    # One connection carried every write: it lived.
    assert json.loads((tmp_path / "clients.json").read_text()) == {"kv_reconnects": 0}


def test_kv_client_reconnects_after_connection_loss(tmp_path, guest_factory):
    guest = guest_factory(close_after=3)
    run_clients(config(guest, kv_ops=8, duration_s=1.0), tmp_path, threading.Event())
    rows = read_csv(tmp_path / "kv.csv")
    ops = [r for r in rows if r["op"] in ("PUT", "GET")]
    context = f"connections={guest.connections}, rows={rows}"
    assert guest.connections >= 3, context       # the run's second one, and the read-back's
    reconnects = json.loads((tmp_path / "clients.json").read_text())["kv_reconnects"]
    assert reconnects >= 1, f"the lost connection was not counted: {reconnects}; {context}"
    assert len(ops) == 8 and all(r["result"] == "ok" for r in ops), context
    assert all(r["result"] == "ok" for r in rows if r["op"] == READBACK_OP), context


def test_command_prints_ready_and_flushes_on_sigterm(tmp_path, guest_factory):
    guest = guest_factory()
    probe_port, kv_port = guest.ports
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.clients", "--target", "127.0.0.1", "--duration",
         "60", "--probe-port", str(probe_port), "--kv-port", str(kv_port), "--kv-ops", "1000",
         "--kv-rate", "50", "--grace", "0.2", "--out", str(out)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        deadline = time.monotonic() + 10
        while (guest.probes_seen < 20 or guest.requests < 4) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert guest.probes_seen >= 20 and guest.requests >= 4, \
            f"probes {guest.probes_seen}, kv requests {guest.requests} after 10 s"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    probes = read_csv(out / "probes.csv")
    kv = read_csv(out / "kv.csv")
    assert len(probes) >= 20 and sum(1 for r in probes if r["t_reply"]) >= 19, probes[:5]
    assert any(r["op"] == READBACK_OP and r["result"] == "ok" for r in kv), kv[:5]
    assert not list(out.glob("*.part"))
