"""Delay-line control sockets left by a killed run are removed by clean; a live owner's stay."""

from __future__ import annotations

from topologies.cleanup import stale_control_sockets


def test_sockets_of_dead_owners_are_stale_live_ones_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("WANMIG_STATE_DIR", str(tmp_path))
    for name in ("wl1-100.ctl", "wl2-100.ctl", "wl1-200.ctl", "odd.ctl", "net-100.json"):
        (tmp_path / name).write_text("")
    alive = {200}.__contains__
    stale = {p.name for p in stale_control_sockets(alive)}
    assert stale == {"wl1-100.ctl", "wl2-100.ctl", "odd.ctl"}, stale
    every = {p.name for p in stale_control_sockets(alive, include_live=True)}
    assert every == stale | {"wl1-200.ctl"}, every
