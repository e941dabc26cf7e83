"""The compiled delay line's decisions against the reference model (topologies/linkmodel.py):
the same frame traces through both (the relay's ``--trace`` mode runs its decision code, no
I/O), compared wire frame by wire frame: the same releases, the same drops."""

from __future__ import annotations

import json
import random
import subprocess

import pytest

from topologies import delaybin
from topologies.linkcontrol import LinkControl
from topologies.linkmodel import LOST, QUEUE_FULL, LinkModel, wire_frames

TOL_S = 1e-9       # both do the same double arithmetic; only the text round trip could differ


@pytest.fixture(scope="module")
def relay() -> str:
    return str(delaybin.build())


def run_trace(relay: str, lines: list[str], **link) -> list[str]:
    args = [relay, "--trace", "--delay-ms", repr(link.get("delay_ms", 10.0)),
            "--jitter-ms", repr(link.get("jitter_ms", 0.0)),
            "--loss-pct", repr(link.get("loss_pct", 0.0)),
            "--queue-pkts", str(link.get("queue_pkts", 1000)),
            "--burst-us", repr(link.get("burst_us", 0.0)),
            "--seed", str(link.get("seed", 1))]
    if link.get("rate_mbps"):
        args += ["--rate-mbps", repr(link["rate_mbps"])]
    done = subprocess.run(args, input="".join(f"{line}\n" for line in lines),
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def reference(link: dict) -> LinkModel:
    rate = link.get("rate_mbps")
    return LinkModel(link.get("delay_ms", 10.0) / 1e3, link.get("jitter_ms", 0.0) / 1e3,
                     link.get("loss_pct", 0.0) / 100, random.Random(link.get("seed", 1)),
                     rate_bps=rate * 1e6 if rate else None,
                     queue_bytes=link.get("queue_pkts", 1000) * 1514)


def fate(value: float) -> str | float:
    return {LOST: "LOST", QUEUE_FULL: "QUEUE"}.get(value, value)


def compare(out: list[str], expected: list[str | float], context: str) -> None:
    got = [line.split()[2] for line in out if line.startswith("S ")]
    assert len(got) == len(expected), f"{len(got)} wire frames, expected {len(expected)}\n{context}"
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        if isinstance(e, str) or g in ("LOST", "QUEUE", "CUT"):
            assert g == e, f"wire frame {i}: relay {g}, reference {e}\n{context}"
        else:
            assert abs(float(g) - e) <= TOL_S, \
                f"wire frame {i}: relay {g}, reference {e}\n{context}"


def poisson_trace(seed: int, n: int, mean_gap_s: float, gso: bool) -> list[tuple]:
    """(arrival, length, hdr_len, mss): plain frames of mixed sizes, and with ``gso`` TCP
    super-frames of 2 to 44 wire frames among them."""
    rng = random.Random(seed)
    t, out = 1000.0, []
    for _ in range(n):
        t += rng.expovariate(1 / mean_gap_s)
        if gso and rng.random() < 0.5:
            segs = rng.randint(2, 44)
            out.append((t, 66 + 1448 * (segs - 1) + rng.randint(1, 1448), 66, 1448))
        else:
            out.append((t, rng.choice((60, 66, 590, 1514)), 0, 0))
    return out


LINKS = [
    {"delay_ms": 75.0, "rate_mbps": 250.0, "queue_pkts": 50},
    {"delay_ms": 10.0, "jitter_ms": 2.0, "loss_pct": 2.0, "rate_mbps": 100.0,
     "queue_pkts": 200, "seed": 9},
    {"delay_ms": 0.5, "loss_pct": 1.0, "seed": 3},                      # unshaped
    {"delay_ms": 25.0, "jitter_ms": 5.0, "rate_mbps": 1000.0, "queue_pkts": 100, "seed": 4},
]


@pytest.mark.parametrize("gso", [False, True])
@pytest.mark.parametrize("link", LINKS)
def test_same_trace_same_releases_and_drops(relay, link, gso):
    # Offered above every rate (about 1.5 and 2.6 Gbit/s), so the queues overflow too.
    trace = poisson_trace(len(str(link)), 5000, 3e-6 if not gso else 100e-6, gso)
    out = run_trace(relay, [f"F {t!r} {n} {h} {m}" for t, n, h, m in trace], **link)
    ref = reference(link)
    expected = [fate(ref.release(t, w)) for t, n, h, m in trace for w in wire_frames(n, h, m)]
    drops = sum(isinstance(e, str) for e in expected)
    compare(out, expected, f"link {link}, gso {gso}, {len(expected)} wire frames, "
                           f"{drops} dropped by the reference")
    if link.get("loss_pct") or link.get("queue_pkts", 1000) <= 200:
        assert drops > 0, f"the trace never exercised a drop on {link}"


def test_control_messages_change_both_alike(relay):
    link = {"delay_ms": 20.0, "loss_pct": 0.0, "rate_mbps": 500.0, "seed": 5}
    ref = reference(link)
    other = reference({**link, "seed": 6})
    control = LinkControl([ref, other])
    rng = random.Random(11)
    lines, expected, answers = [], [], []
    t = 50.0
    messages = [{"cut": True}, {"cut": False}, {"loss_pct": 30.0}, {"delay_ms": 60.0},
                {"loss_pct": None, "delay_ms": None}, {"cut": "yes"}, {"bogus": 1}]
    for step in range(len(messages) + 1):
        for _ in range(300):
            t += rng.expovariate(1 / 50e-6)
            lines.append(f"F {t!r} 1514 0 0")
            expected.append("CUT" if control.cut else fate(ref.release(t, 1514)))
        if step < len(messages):
            msg = json.dumps(messages[step])
            lines.append(f"C {msg}")
            answers.append(control.handle(msg.encode()))
    out = run_trace(relay, lines, **link)
    compare(out, expected, f"link {link}, messages {messages}")
    got = [json.loads(line[2:]) for line in out if line.startswith("A ")]
    assert [a["ok"] for a in got] == [a["ok"] for a in answers], (got, answers)
    for g, a in zip(got, answers, strict=True):
        if a["ok"]:
            assert g == pytest.approx(a), (g, a)


@pytest.mark.parametrize("burst_us", [0.0, 100.0, 1000.0])
def test_units_cover_the_survivors_in_order_within_the_burst(relay, burst_us):
    link = {"delay_ms": 30.0, "loss_pct": 3.0, "rate_mbps": 200.0, "queue_pkts": 300,
            "seed": 2, "burst_us": burst_us}
    trace = poisson_trace(5, 2000, 400e-6, gso=True)
    out = run_trace(relay, [f"F {t!r} {n} {h} {m}" for t, n, h, m in trace], **link)
    frames, cur = [], None
    for line in out:
        kind, *rest = line.split()
        if kind == "S":
            if rest[0] == "0":
                cur = {"segs": [], "units": []}
                frames.append(cur)
            cur["segs"].append(None if rest[1] in ("LOST", "QUEUE") else float(rest[1]))
        elif kind == "U":
            cur["units"].append((int(rest[0]), int(rest[1]), float(rest[2])))
    assert len(frames) == len(trace)
    for i, f in enumerate(frames):
        covered = []
        for first, count, due in f["units"]:
            run = list(range(first, first + count))
            dues = [f["segs"][k] for k in run]
            assert None not in dues, f"frame {i}: unit {first}+{count} holds a dropped frame"
            assert due == max(dues), f"frame {i}: unit leaves at {due}, its last at {max(dues)}"
            assert due - dues[0] <= burst_us * 1e-6 + 1e-12, f"frame {i}: span {due - dues[0]}"
            covered += run
        survivors = [k for k, d in enumerate(f["segs"]) if d is not None]
        assert covered == survivors, f"frame {i}: units {f['units']}, survivors {survivors}"
