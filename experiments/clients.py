"""The client's side of an experiment: UDP probes and key-value operations against the VM.

Runs inside a Mininet client host (its own network namespace)::

    python -m experiments.clients --target 10.1.3.1 --duration 60 --probe-ms 10 --kv-ops 200 \\
        --out DIR

says READY (``ground.protocol``) once its sockets exist, and writes ``probes.csv`` and ``kv.csv``
into DIR when the duration is over or on SIGTERM/SIGINT (the files are always written, whatever
stopped it).

Why both: a UDP probe every 10 ms shows exactly when the VM stopped answering and which site
answered (the reply carries the site name), i.e. the outage a user sees; TCP key-value writes
read back later show whether the guest's state survived the migration (a transfer error would
return a wrong value) and whether TCP connections lived through it.

Protocol of the guest service: UDP port 7007, request ``>Qd`` (sequence, send time), reply
``>Qd16s`` (the same and the answering site, NUL-padded ASCII); TCP port 7070, one line per
request: ``PUT <key> <value>`` -> ``OK``; ``GET <key>`` -> ``VAL <value>`` or ``NONE``; ``ERR
<reason>`` on bad input. While the VM is paused nothing answers.

Times are ``time.time()``: every Mininet namespace shares the machine's clock, so probe times
compare directly with the controller's and the migrator's records.

Key-value operations alternate a write of a new key and a read of an earlier written key; a
request that fails (connection lost, reset or silent for ``--kv-timeout``) is retried on a new
connection for up to ``--kv-retry-s``. At the end every acknowledged write is read back
(``READBACK`` rows, result ``ok`` only when the value matches); a second SIGTERM cuts the read-
back short and the keys not read are recorded ``unverified``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import random
import select
import signal
import socket
import string
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ground.protocol import Kind, say

log = logging.getLogger("wanmig.clients")

PROBE_REQUEST = struct.Struct(">Qd")
PROBE_REPLY = struct.Struct(">Qd16s")
PROBE_PORT, KV_PORT = 7007, 7070
PROBE_COLUMNS = ("seq", "t_send", "t_reply", "rtt_ms", "site")
KV_COLUMNS = ("op", "key", "value", "t", "result")
READBACK_OP = "READBACK"
ALPHABET = string.ascii_letters + string.digits
MAX_LINE = 4096


# --- pure parts ------------------------------------------------------------------------------

def encode_probe(seq: int, t_send: float) -> bytes:
    return PROBE_REQUEST.pack(seq, t_send)


def decode_reply(data: bytes) -> tuple[int, float, str] | None:
    """(seq, t_send, site) of a probe reply; None for anything malformed."""
    if len(data) != PROBE_REPLY.size:
        return None
    seq, t_send, raw = PROBE_REPLY.unpack(data)
    try:
        site = raw.rstrip(b"\0").decode("ascii")
    except UnicodeDecodeError:
        return None
    return seq, t_send, site


@dataclass
class ProbeLog:
    """Probes sent and the first reply to each (duplicates and strangers are counted, not
    recorded). State: ``sent`` seq -> send time; ``replies`` seq -> (reply time, site)."""

    sent: dict[int, float] = field(default_factory=dict)
    replies: dict[int, tuple[float, str]] = field(default_factory=dict)
    duplicates: int = 0
    malformed: int = 0

    def on_send(self, seq: int, t: float) -> None:
        self.sent[seq] = t

    def on_reply(self, data: bytes, t: float) -> bool:
        decoded = decode_reply(data)
        if decoded is None or decoded[0] not in self.sent:
            self.malformed += 1
            return False
        seq, _, site = decoded
        if seq in self.replies:
            self.duplicates += 1
            return False
        self.replies[seq] = (t, site)
        return True

    def rows(self) -> list[dict]:
        out = []
        for seq, t_send in sorted(self.sent.items()):
            reply = self.replies.get(seq)
            out.append({"seq": seq, "t_send": f"{t_send:.6f}",
                        "t_reply": "" if reply is None else f"{reply[0]:.6f}",
                        "rtt_ms": "" if reply is None else f"{(reply[0] - t_send) * 1e3:.3f}",
                        "site": "" if reply is None else reply[1]})
        return out


@dataclass(frozen=True)
class KvOp:
    op: str             # 'PUT' or 'GET'
    key: str
    value: str          # PUT: the value written; GET: the value expected


class KvPlan:
    """Operation ``i``: even i writes a new key, odd i reads a random key written before.
    Seeded, so a run's operations can be replayed."""

    def __init__(self, ops: int, value_bytes: int, seed: int = 0) -> None:
        if ops < 0 or value_bytes < 1:
            raise ValueError(f"ops must be >= 0 and value_bytes >= 1, got {ops}, {value_bytes}")
        self.ops = ops
        self.value_bytes = value_bytes
        self._rng = random.Random(seed)
        self.written: list[tuple[str, str]] = []

    def __len__(self) -> int:
        return self.ops

    def op(self, i: int) -> KvOp:
        """The i-th operation; call in order (reads choose among the writes planned so far)."""
        if i % 2 == 0 or not self.written:
            key = f"k{len(self.written):06d}"
            value = "".join(self._rng.choices(ALPHABET, k=self.value_bytes))
            self.written.append((key, value))
            return KvOp("PUT", key, value)
        key, value = self._rng.choice(self.written)
        return KvOp("GET", key, value)


def judge_reply(op: KvOp, reply: str | None) -> tuple[str, str]:
    """(result, value received) of a request's reply line (None: no reply at all)."""
    if reply is None:
        return "failed", ""
    reply = reply.rstrip("\r\n")
    if op.op == "PUT":
        return ("ok", "") if reply == "OK" else (f"error:{reply[:60]}", "")
    if reply == "NONE":
        return "missing", ""
    if reply.startswith("VAL "):
        got = reply[4:]
        return ("ok" if got == op.value else "mismatch"), got
    return f"error:{reply[:60]}", ""


# --- I/O -------------------------------------------------------------------------------------

class KvConnection:
    """One line-protocol request at a time over TCP, reconnecting and retrying on failure."""

    def __init__(self, target: str, port: int, timeout_s: float, retry_s: float,
                 stop: threading.Event) -> None:
        self.addr = (target, port)
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        self.stop = stop
        self.sock: socket.socket | None = None
        self.reader: Any = None
        self.reconnects = 0

    def close(self) -> None:
        for thing in (self.reader, self.sock):
            if thing is not None:
                try:
                    thing.close()
                except OSError:
                    pass
        self.reader = self.sock = None

    def _connect(self) -> None:
        sock = socket.create_connection(self.addr, timeout=self.timeout_s)
        sock.settimeout(self.timeout_s)
        self.sock, self.reader = sock, sock.makefile("rb")

    def request(self, line: str) -> str | None:
        """The reply line to ``line``, or None when no reply came within the retry budget."""
        deadline = time.monotonic() + self.retry_s
        backoff = 0.05
        while not self.stop.is_set():
            try:
                if self.sock is None:
                    self._connect()
                assert self.sock is not None
                self.sock.sendall(line.encode("ascii") + b"\n")
                reply = self.reader.readline(MAX_LINE)
                if not reply.endswith(b"\n"):
                    raise ConnectionError("connection closed mid-reply")
                return reply.decode("ascii", "replace")
            except (OSError, ConnectionError) as exc:
                self.close()
                self.reconnects += 1
                log.debug("kv %s: %s; reconnecting", line.split()[0], exc)
            if time.monotonic() + backoff > deadline:
                return None
            self.stop.wait(backoff)
            backoff = min(1.0, backoff * 2)
        return None


@dataclass
class ClientConfig:
    target: str
    duration_s: float
    probe_ms: float = 10.0
    kv_ops: int = 0
    kv_rate_hz: float = 10.0
    value_bytes: int = 64
    seed: int = 0
    probe_port: int = PROBE_PORT
    kv_port: int = KV_PORT
    kv_timeout_s: float = 5.0
    kv_retry_s: float = 30.0
    grace_s: float = 1.0          # late replies are still taken this long after the last probe
    readback_s: float = 60.0      # budget of the final read-back


@dataclass
class KvLog:
    rows: list[dict] = field(default_factory=list)
    acked: dict[str, str] = field(default_factory=dict)   # key -> value of acknowledged writes
    lock: threading.Lock = field(default_factory=threading.Lock)
    reconnects: int | None = None   # the writer's connection lost and made again (0: it lived)

    def add(self, op: str, key: str, value: str, t: float, result: str) -> None:
        with self.lock:
            self.rows.append({"op": op, "key": key, "value": value, "t": f"{t:.6f}",
                              "result": result})


def run_kv(cfg: ClientConfig, kvlog: KvLog, stop: threading.Event, end_t: float) -> None:
    """Planned operations at ``kv_rate_hz`` until they are done, ``end_t`` or ``stop``."""
    plan = KvPlan(cfg.kv_ops, cfg.value_bytes, cfg.seed)
    conn = KvConnection(cfg.target, cfg.kv_port, cfg.kv_timeout_s, cfg.kv_retry_s, stop)
    next_t = time.time()
    try:
        for i in range(len(plan)):
            wait = next_t - time.time()
            if wait > 0 and stop.wait(min(wait, end_t - time.time())):
                return
            if stop.is_set() or time.time() >= end_t:
                return
            op = plan.op(i)
            line = f"PUT {op.key} {op.value}" if op.op == "PUT" else f"GET {op.key}"
            reply = conn.request(line)
            result, got = judge_reply(op, reply)
            if op.op == "PUT" and result == "ok":
                kvlog.acked[op.key] = op.value
            kvlog.add(op.op, op.key, op.value if op.op == "PUT" else got, time.time(), result)
            next_t = max(next_t + 1.0 / cfg.kv_rate_hz, time.time())
    finally:
        kvlog.reconnects = conn.reconnects
        conn.close()


def readback(cfg: ClientConfig, kvlog: KvLog, abort: threading.Event) -> None:
    """Read every acknowledged write back; rows ``READBACK`` with result ``ok`` when equal."""
    if not kvlog.acked:
        return
    conn = KvConnection(cfg.target, cfg.kv_port, cfg.kv_timeout_s, cfg.kv_retry_s, abort)
    deadline = time.monotonic() + cfg.readback_s
    try:
        for key, value in sorted(kvlog.acked.items()):
            if abort.is_set() or time.monotonic() > deadline:
                kvlog.add(READBACK_OP, key, "", time.time(), "unverified")
                continue
            result, got = judge_reply(KvOp("GET", key, value), conn.request(f"GET {key}"))
            kvlog.add(READBACK_OP, key, got, time.time(), result)
    finally:
        conn.close()


def _drain(sock: socket.socket, addr: tuple[str, int], probes: ProbeLog) -> None:
    while True:
        try:
            data, src = sock.recvfrom(256)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        if src[0] == addr[0]:
            probes.on_reply(data, time.time())


def run_probes(cfg: ClientConfig, sock: socket.socket, probes: ProbeLog, stop: threading.Event,
               end_t: float) -> None:
    """A probe every ``probe_ms`` until ``end_t`` or ``stop``; then late replies for grace_s.
    A sender that falls behind skips ahead rather than bursting."""
    addr = (cfg.target, cfg.probe_port)
    interval = cfg.probe_ms / 1e3
    seq = 0
    next_t = time.time()
    while not stop.is_set():
        now = time.time()
        if now >= end_t:
            break
        if now >= next_t:
            t = time.time()
            try:
                sock.sendto(encode_probe(seq, t), addr)
            except OSError as exc:   # no route yet, buffer full: the probe counts as lost
                log.debug("probe %d not sent: %s", seq, exc)
            probes.on_send(seq, t)
            seq += 1
            next_t += interval
            if next_t < now:
                next_t = now + interval
        timeout = max(0.0, min(next_t, end_t) - time.time())
        ready, _, _ = select.select([sock], [], [], timeout)
        if ready:
            _drain(sock, addr, probes)
    grace_end = time.time() + cfg.grace_s
    while time.time() < grace_end:
        ready, _, _ = select.select([sock], [], [], max(0.0, grace_end - time.time()))
        if ready:
            _drain(sock, addr, probes)


def write_csv(path: Path, columns: tuple[str, ...], rows: list[dict]) -> None:
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


@dataclass
class ClientReport:
    probes: ProbeLog
    kv: KvLog


def run_clients(cfg: ClientConfig, out: Path, stop: threading.Event,
                abort: threading.Event | None = None,
                ready: Any = None) -> ClientReport:
    """Probes (this thread) and key-value operations (a second thread) for ``duration_s`` or
    until ``stop``; then the read-back (cut short by ``abort``); files written in every case."""
    abort = abort or threading.Event()
    out.mkdir(parents=True, exist_ok=True)
    probes, kvlog = ProbeLog(), KvLog()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    kv_thread: threading.Thread | None = None
    try:
        sock.setblocking(False)
        end_t = time.time() + cfg.duration_s
        if ready is not None:
            ready()
        if cfg.kv_ops:
            kv_thread = threading.Thread(target=run_kv, args=(cfg, kvlog, stop, end_t),
                                         name="kv", daemon=True)
            kv_thread.start()
        run_probes(cfg, sock, probes, stop, end_t)
        stop.set()   # the duration is over: the writer stops too
        if kv_thread is not None:
            kv_thread.join(cfg.kv_retry_s + cfg.kv_timeout_s + 1.0)
        readback(cfg, kvlog, abort)
    finally:
        sock.close()
        write_csv(out / "probes.csv", PROBE_COLUMNS, probes.rows())
        with kvlog.lock:
            write_csv(out / "kv.csv", KV_COLUMNS, list(kvlog.rows))
        # One long-lived TCP connection carries every write: did it live through the run?
        (out / "clients.json").write_text(json.dumps({"kv_reconnects": kvlog.reconnects}) + "\n")
    return ClientReport(probes, kvlog)


def _args(argv: list[str] | None) -> tuple[ClientConfig, Path]:
    p = argparse.ArgumentParser(prog="python -m experiments.clients",
                                description="UDP probes and key-value operations against a VM")
    p.add_argument("--target", required=True, help="the VM's IP address")
    p.add_argument("--duration", type=float, required=True, help="seconds of probing")
    p.add_argument("--probe-ms", type=float, default=10.0)
    p.add_argument("--kv-ops", type=int, default=0)
    p.add_argument("--kv-rate", type=float, default=10.0, help="operations per second")
    p.add_argument("--value-bytes", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--probe-port", type=int, default=PROBE_PORT)
    p.add_argument("--kv-port", type=int, default=KV_PORT)
    p.add_argument("--kv-timeout", type=float, default=5.0)
    p.add_argument("--kv-retry-s", type=float, default=30.0)
    p.add_argument("--grace", type=float, default=1.0)
    p.add_argument("--readback-s", type=float, default=60.0)
    p.add_argument("--out", required=True, help="folder for probes.csv and kv.csv")
    a = p.parse_args(argv)
    checks = [("--duration", a.duration, a.duration > 0), ("--probe-ms", a.probe_ms,
              1 <= a.probe_ms <= 1000), ("--kv-ops", a.kv_ops, a.kv_ops >= 0),
              ("--kv-rate", a.kv_rate, a.kv_rate > 0), ("--value-bytes", a.value_bytes,
              1 <= a.value_bytes <= 1024), ("--kv-timeout", a.kv_timeout, a.kv_timeout > 0),
              ("--kv-retry-s", a.kv_retry_s, a.kv_retry_s >= 0), ("--grace", a.grace,
              a.grace >= 0), ("--readback-s", a.readback_s, a.readback_s >= 0)]
    for name, value, ok in checks:
        if not ok:
            p.error(f"{name}: got {value!r}, out of range")
    cfg = ClientConfig(target=a.target, duration_s=a.duration, probe_ms=a.probe_ms,
                       kv_ops=a.kv_ops, kv_rate_hz=a.kv_rate, value_bytes=a.value_bytes,
                       seed=a.seed, probe_port=a.probe_port, kv_port=a.kv_port,
                       kv_timeout_s=a.kv_timeout, kv_retry_s=a.kv_retry_s, grace_s=a.grace,
                       readback_s=a.readback_s)
    return cfg, Path(a.out)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg, out = _args(argv)
    stop, abort = threading.Event(), threading.Event()

    def on_signal(_sig: int, _frame: object) -> None:
        # First signal: stop probing and read back; second: cut the read-back short.
        (abort if stop.is_set() else stop).set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def ready() -> None:
        say(Kind.READY)

    report = run_clients(cfg, out, stop, abort, ready)
    lost = len(report.probes.sent) - len(report.probes.replies)
    bad = sum(1 for r in report.kv.rows if r["op"] == READBACK_OP and r["result"] != "ok")
    log.info("%d probes, %d lost; %d writes acknowledged, %d not read back intact",
             len(report.probes.sent), lost, len(report.kv.acked), bad)
    return 0


if __name__ == "__main__":
    sys.exit(main())
