"""migrator.disk.device: the file device, the mirror link and its protocol, the mirror slot."""

from __future__ import annotations

import time

import pytest

from migrator.disk.device import FileDevice, MirrorGone, MirrorLink, MirrorSlot
from tests.unit.migrator.mirrorserver import FakeMirror


def test_file_device_reads_what_it_wrote(tmp_path):
    path = tmp_path / "d.disk"
    path.write_bytes(bytes(8192))
    dev = FileDevice(path)
    assert dev.where == "local"
    dev.pwrite(b"abc", 4096)
    assert dev.pread(4095, 5) == b"\0abc\0"
    with pytest.raises(OSError, match="short read"):
        dev.pread(8190, 4)
    dev.close()
    dev.close()
    with pytest.raises(ValueError, match="closed"):
        dev.pread(0, 1)


def test_mirror_link_waits_for_the_ack(tmp_path):
    server = FakeMirror(tmp_path / "m.sock", delay_s=0.03)
    try:
        link = MirrorLink(server.path)
        t0 = time.monotonic()
        link.copy(32, 16)
        took = time.monotonic() - t0
        assert server.requests == [(32, 16)]
        assert took >= 0.03, f"copy returned after {took * 1e3:.1f} ms, before the 30 ms server"
        link.close()
        with pytest.raises(MirrorGone, match="closed"):
            link.copy(0, 1)
    finally:
        server.stop()


@pytest.mark.parametrize("reply", [b"\x00", b""])
def test_a_wrong_reply_or_eof_is_mirror_gone(tmp_path, reply):
    server = FakeMirror(tmp_path / "m.sock", reply=reply)
    link = MirrorLink(server.path)
    try:
        if not reply:
            server.stop()                          # EOF
        with pytest.raises(MirrorGone):
            link.copy(0, 16)
    finally:
        link.close()
        server.stop()


def test_no_server_is_mirror_gone(tmp_path):
    with pytest.raises(MirrorGone):
        MirrorLink(tmp_path / "none.sock")


def test_slot_connects_when_the_socket_appears_and_drops_when_it_goes(tmp_path):
    now = [0.0]
    slot = MirrorSlot(tmp_path / "m.sock", clock=lambda: now[0])
    assert slot.copy(0, 16) is False and not slot.connected
    server = FakeMirror(tmp_path / "m.sock")
    try:
        assert slot.copy(0, 16) is False, "looked again within 5 ms"
        now[0] = 0.006
        assert slot.copy(16, 16) is True and slot.connected
        assert server.requests == [(16, 16)]
    finally:
        server.stop()
    assert slot.copy(32, 16) is False and not slot.connected and slot.drops == 1
    now[0] = 1.0
    assert slot.copy(48, 16) is False, "reconnected to a removed socket"
