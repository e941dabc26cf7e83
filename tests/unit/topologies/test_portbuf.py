"""topologies.portbuf: the switch ports' receive buffer is raised only when too small, and put
back only if nobody changed it since."""

from __future__ import annotations

from topologies.portbuf import PORT_RCVBUF, raise_to, read_default, restore, write_default


def test_raise_only_a_smaller_default():
    assert raise_to(212992) == PORT_RCVBUF
    assert raise_to(PORT_RCVBUF) is None
    assert raise_to(PORT_RCVBUF * 2) is None


def test_restore_puts_back_what_was_there(tmp_path):
    f = tmp_path / "rmem_default"
    write_default(PORT_RCVBUF, f)
    assert restore({"before": 212992, "set": PORT_RCVBUF}, f)
    assert read_default(f) == 212992


def test_restore_leaves_a_value_someone_else_set(tmp_path):
    f = tmp_path / "rmem_default"
    write_default(1 << 20, f)                      # changed since the network raised it
    assert not restore({"before": 212992, "set": PORT_RCVBUF}, f)
    assert read_default(f) == 1 << 20


def test_nothing_to_restore_when_nothing_was_raised(tmp_path):
    f = tmp_path / "rmem_default"
    write_default(PORT_RCVBUF * 2, f)
    assert not restore({"before": PORT_RCVBUF * 2, "set": None}, f)
    assert not restore(None, f)
    assert read_default(f) == PORT_RCVBUF * 2
