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


def test_qemu_socket_folders_of_dead_owners_are_stale(tmp_path, monkeypatch):
    from topologies.cleanup import stale_socket_dirs

    monkeypatch.setenv("WANMIG_STATE_DIR", str(tmp_path))
    for name in ("qemu-100", "qemu-200", "qemu-x"):
        (tmp_path / name).mkdir()
    (tmp_path / "qemu-300").write_text("")        # not a folder: not ours to remove
    alive = {200}.__contains__
    stale = {p.name for p in stale_socket_dirs(alive)}
    assert stale == {"qemu-100", "qemu-x"}, stale
    every = {p.name for p in stale_socket_dirs(alive, include_live=True)}
    assert every == stale | {"qemu-200"}, every
