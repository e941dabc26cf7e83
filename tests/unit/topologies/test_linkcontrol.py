"""topologies.linkcontrol: the delay line's runtime changes, checked and applied to its link
models, and the datagram protocol between a caller and a relay (a relay's socket served here by
a thread, no network)."""

from __future__ import annotations

import json
import random
import socket
import threading

import pytest

from topologies.linkcontrol import (
    ControlError,
    LinkControl,
    one_way_loss_pct,
    parse_control,
    send_control,
    wan_fault_fields,
)
from topologies.linkmodel import LOST, LinkModel
from topologies.shaping import split_link
from topologies.spec import parse_topology


def models(delay_s=0.025, loss=0.0):
    return [LinkModel(delay_s, loss=loss, rng=random.Random(i)) for i in (1, 2)]


def test_a_cut_link_is_reported_and_forwards_again():
    ctl = LinkControl(models())
    assert ctl.apply({"cut": True}) == {"cut": True, "delay_ms": 25.0, "loss_pct": 0.0}
    assert ctl.cut is True
    assert ctl.apply({"cut": False})["cut"] is False


def test_loss_and_delay_change_both_directions_and_null_restores_them():
    ms = models(delay_s=0.025, loss=0.01)
    ctl = LinkControl(ms)
    ctl.apply({"loss_pct": 50.0, "delay_ms": 60.0})
    assert [(m.loss, m.delay_s) for m in ms] == [(0.5, 0.06), (0.5, 0.06)]
    ctl.apply({"loss_pct": None})
    assert [m.loss for m in ms] == [0.01, 0.01] and ms[0].delay_s == 0.06
    ctl.apply({"delay_ms": None})
    assert [m.delay_s for m in ms] == [0.025, 0.025]


def test_a_loss_burst_drops_about_what_was_asked():
    m = models()[0]
    LinkControl([m]).apply({"loss_pct": 30.0})
    lost = sum(m.release(i * 1e-3, 1500) == LOST for i in range(20_000)) / 20_000
    # 20 000 draws: the standard error of the fraction is 0.3 %; 1.5 % is five of them.
    assert abs(lost - 0.30) < 0.015, lost


def test_a_shorter_delay_never_reorders_frames_already_held():
    m = models(delay_s=0.1)[0]
    first = m.release(0.0, 1500)
    LinkControl([m]).apply({"delay_ms": 10.0})
    second = m.release(0.001, 1500)
    assert first == pytest.approx(0.1) and second == first       # held back behind the first
    assert m.release(0.2, 1500) == pytest.approx(0.21)


@pytest.mark.parametrize("data, error", [
    (b"not json", "not a JSON object"),
    (b"[1, 2]", "expected a JSON object"),
    (b"{}", "expected a JSON object with some of"),
    (b'{"cut": 1}', "cut: got 1, expected true or false"),
    (b'{"loss_pct": 100}', "loss_pct: got 100"),
    (b'{"loss_pct": -1}', "loss_pct: got -1"),
    (b'{"delay_ms": 1e9}', "delay_ms: got 1000000000.0"),
    (b'{"delay_ms": true}', "delay_ms: got True"),
    (b'{"rate_mbps": 5}', "unknown keys ['rate_mbps']"),
    (b"{" + b" " * 5000 + b"}", "at most 4096"),
])
def test_bad_messages_are_refused_with_the_reason(data, error):
    with pytest.raises(ControlError) as err:
        parse_control(data)
    assert error in str(err.value), err.value
    ctl = LinkControl(models())
    answer = ctl.handle(data)
    assert answer["ok"] is False and error in answer["error"], answer
    assert ctl.state() == {"cut": False, "delay_ms": 25.0, "loss_pct": 0.0}   # nothing applied


def test_round_trip_figures_become_one_way_fields():
    link = parse_topology({"wan": [{"between": ["dc1", "dc2"], "rtt_ms": 50,
                                    "loss_pct": 19}]}).wan[0]
    assert one_way_loss_pct(19.0) == pytest.approx(split_link(link).loss_pct)
    # The relay runs 24.3 ms each way for 50 ms (the fabric's 1.4 ms taken off): 150 ms asked
    # keeps that compensation.
    assert wan_fault_fields(24.3, 50.0, rtt_ms=150.0) == {"delay_ms": pytest.approx(74.3)}
    assert wan_fault_fields(24.3, 50.0, rtt_ms=0.0) == {"delay_ms": 0.0}
    assert wan_fault_fields(24.3, 50.0, loss_pct=36.0) == {"loss_pct": pytest.approx(20.0)}


def test_send_control_gets_the_relays_answer(tmp_path):
    path = str(tmp_path / "wl1.ctl")
    ctl = LinkControl(models())
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)

    def serve(n):
        for _ in range(n):
            data, sender = server.recvfrom(8192)
            server.sendto(json.dumps(ctl.handle(data)).encode(), sender)

    t = threading.Thread(target=serve, args=(2,), daemon=True)
    t.start()
    try:
        assert send_control(path, {"cut": True}) == {"ok": True, "cut": True,
                                                     "delay_ms": 25.0, "loss_pct": 0.0}
        with pytest.raises(ControlError, match="refused .* loss_pct: got 200"):
            send_control(path, {"loss_pct": 200})
    finally:
        t.join(timeout=5)
        server.close()
    assert ctl.cut is True


def test_send_control_to_nobody_is_an_oserror(tmp_path):
    with pytest.raises(OSError):
        send_control(str(tmp_path / "nobody.ctl"), {"cut": True}, timeout_s=0.5)
