"""controller/hosts.py: learning, moves and the flapping guard."""

from __future__ import annotations

import pytest

from controller.hosts import HostTable

M = "02:00:00:00:00:01"
N = "02:00:00:00:00:02"
A, B, C = (1, 1), (1, 2), (2, 1)


def test_learn_same_move():
    t = HostTable(hold_s=1.0)
    s = t.see(0.0, M, A)
    assert (s.kind, s.mac, s.location, s.previous) == ("new", M, A, None)
    assert t.get(M).location == A and t.get(M).learned_at == 0.0
    s = t.see(0.5, M, A)
    assert s.kind == "same" and t.get(M).last_seen == 0.5
    s = t.see(2.0, M, B)
    assert (s.kind, s.location, s.previous) == ("move", B, A)
    e = t.get(M)
    assert (e.location, e.moved_at, e.moves, e.pending) == (B, 2.0, 1, None)
    assert t.get(N) is None


def test_first_move_after_learning_is_immediate():
    t = HostTable(hold_s=1.0)
    t.see(0.0, M, A)
    s = t.see(0.01, M, B)                                  # a migration right after learning
    assert s.kind == "move" and t.get(M).location == B


def test_second_move_within_hold_is_held_and_latest_wins():
    t = HostTable(hold_s=1.0)
    t.see(0.0, M, A)
    assert t.see(10.0, M, B).kind == "move"
    s = t.see(10.2, M, C)
    assert (s.kind, s.location, s.previous) == ("held", C, B)
    s = t.see(10.4, M, A)
    assert s.kind == "held"
    assert t.get(M).location == B and t.get(M).pending == A
    assert t.next_pending_at() == pytest.approx(11.0)
    assert t.due_pending(10.9) == []
    assert t.get(M).location == B
    due = t.due_pending(11.0)
    assert [(d.kind, d.mac, d.location, d.previous) for d in due] == [("move", M, A, B)]
    e = t.get(M)
    assert (e.location, e.pending, e.moved_at, e.moves) == (A, None, 11.0, 2)
    assert t.due_pending(20.0) == []
    assert t.next_pending_at() is None


def test_return_to_current_port_cancels_pending():
    t = HostTable(hold_s=1.0)
    t.see(0.0, M, A)
    t.see(5.0, M, B)
    assert t.see(5.1, M, A).kind == "held"
    assert t.see(5.2, M, B).kind == "same"
    assert t.get(M).pending is None
    assert t.due_pending(7.0) == []
    assert t.get(M).location == B


def test_move_after_hold_expired_is_immediate():
    t = HostTable(hold_s=0.5)
    t.see(0.0, M, A)
    t.see(1.0, M, B)
    s = t.see(1.5, M, C)
    assert s.kind == "move" and s.previous == B


def test_flapping_100_times_within_one_second():
    t = HostTable(hold_s=1.0)
    t.see(0.0, M, A)
    applied = []
    for i in range(1, 101):
        now = i * 0.0099                                   # all within 1 s
        s = t.see(now, M, B if i % 2 else A)
        if s.kind == "move":
            applied.append(s)
        applied += t.due_pending(now)
    applied += t.due_pending(1.5)
    applied += t.due_pending(3.0)
    assert 1 <= len(applied) <= 2, applied
    assert t.get(M).location == A                          # the last sighting (i = 100) wins
    assert t.get(M).moves == len(applied)


def test_flapping_guard_is_per_mac():
    t = HostTable(hold_s=1.0)
    t.see(0.0, M, A)
    t.see(0.0, N, C)
    t.see(0.1, M, B)
    assert t.see(0.2, M, A).kind == "held"
    assert t.see(0.2, N, B).kind == "move"                 # N has never moved: not held


def test_forget_port_and_switch():
    t = HostTable()
    t.see(0.0, M, A)
    t.see(0.0, N, B)
    t.see(0.0, "02:00:00:00:00:03", C)
    assert t.forget_port((1, 9)) == []
    assert t.forget_port(A) == [M]
    assert t.get(M) is None and t.get(N) is not None
    assert t.see(1.0, M, A).kind == "new"                  # relearnt from scratch
    assert sorted(t.forget_switch(1)) == [M, N]
    assert list(t.hosts) == ["02:00:00:00:00:03"]
    assert t.forget_switch(1) == []
