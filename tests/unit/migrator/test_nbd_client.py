"""The NBD block device's error paths: a missing libnbd says how to install it, a connection
that fails, dies or hangs names the URI, an I/O error is an OSError naming the URI, the offset
and the size; a closed device refuses I/O. A fake ``nbd`` module stands in for libnbd, except
in the last tests, which use the real one against sockets that are no NBD server."""

from __future__ import annotations

import errno
import socket
import sys
import types

import pytest

from migrator.disk.nbdclient import NbdClientError, NbdDevice, load_nbd

URI = "nbd://10.1.1.1:10809/disk"


class FakeError(Exception):
    """libnbd's ``nbd.Error``: (message, errno), shown as ``message (ENAME)``."""

    def __str__(self):
        return f"{self.args[0]} ({errno.errorcode[self.args[1]]})"


class FakeHandle:
    def __init__(self, *, ready_after=0, dies=False, refuse=None, fail_io=None):
        self.ready_after, self.dies, self.refuse, self.fail_io = ready_after, dies, refuse, fail_io
        self.polls, self.calls, self.data = 0, [], bytearray(1 << 20)

    def aio_connect_uri(self, uri):
        self.calls.append(("connect", uri))
        if self.refuse:
            raise FakeError(self.refuse, errno.ECONNREFUSED)

    def aio_is_ready(self):
        return not self.dies and self.polls >= self.ready_after

    def aio_is_dead(self):
        return self.dies

    def aio_is_closed(self):
        return False

    def poll(self, timeout_ms):
        assert 1 <= timeout_ms <= 100
        self.polls += 1

    def get_size(self):
        return len(self.data)

    def pread(self, n, offset):
        if self.fail_io:
            raise FakeError(self.fail_io, errno.EIO)
        return bytearray(self.data[offset:offset + n])

    def pwrite(self, data, offset):
        if self.fail_io:
            raise FakeError(self.fail_io, errno.ENOSPC)
        self.data[offset:offset + len(data)] = data

    def flush(self):
        self.calls.append(("flush",))

    def shutdown(self):
        self.calls.append(("shutdown",))


@pytest.fixture
def fake_nbd(monkeypatch):
    made: list[FakeHandle] = []
    module = types.ModuleType("nbd")
    module.Error = FakeError
    module.options = {}

    def NBD():                                          # noqa: N802 - libnbd's name
        made.append(FakeHandle(**module.options))
        return made[-1]
    module.NBD = NBD
    module.made = made
    monkeypatch.setitem(sys.modules, "nbd", module)
    return module


def test_a_missing_libnbd_says_to_run_make_setup(monkeypatch):
    monkeypatch.setitem(sys.modules, "nbd", None)       # what "not installed" looks like
    with pytest.raises(NbdClientError, match=r"run make setup \(Debian package python3-libnbd"):
        load_nbd()
    with pytest.raises(NbdClientError, match="python3-libnbd"):
        NbdDevice(URI)


def test_a_device_reads_what_was_written_as_bytes(fake_nbd):
    fake_nbd.options = {"ready_after": 3}
    with NbdDevice(URI) as dev:
        assert dev.where == "remote" and dev.size == 1 << 20
        dev.pwrite(b"abc", 4096)
        got = dev.pread(4095, 5)
        assert got == b"\0abc\0" and type(got) is bytes
        dev.flush()
    handle = fake_nbd.made[0]
    assert handle.polls == 3
    assert handle.calls == [("connect", URI), ("flush",), ("shutdown",)]


def test_a_refused_connection_names_the_uri(fake_nbd):
    fake_nbd.options = {"refuse": "connect: Connection refused"}
    with pytest.raises(NbdClientError, match=f"cannot connect to {URI}: connect: Connection "
                                             f"refused"):
        NbdDevice(URI)


def test_a_connection_that_dies_names_the_uri(fake_nbd):
    fake_nbd.options = {"dies": True}
    with pytest.raises(NbdClientError, match=f"cannot connect to {URI}: the connection died"):
        NbdDevice(URI)


def test_a_connection_that_never_gets_ready_has_a_deadline(fake_nbd):
    fake_nbd.options = {"ready_after": 10 ** 9}
    with pytest.raises(NbdClientError, match=f"cannot connect to {URI}: no answer within "
                                             f"0.05 s"):
        NbdDevice(URI, connect_timeout_s=0.05)


def test_io_errors_are_os_errors_naming_uri_offset_and_size(fake_nbd):
    fake_nbd.options = {"fail_io": "server said no"}
    dev = NbdDevice(URI)
    with pytest.raises(OSError, match=f"{URI}: read of 4096 bytes at 8192: "
                                      r"server said no \(EIO\)") as read:
        dev.pread(8192, 4096)
    assert read.value.errno == errno.EIO
    with pytest.raises(OSError, match=f"{URI}: write of 2 bytes at 0: "
                                      r"server said no \(ENOSPC\)") as write:
        dev.pwrite(b"xy", 0)
    assert write.value.errno == errno.ENOSPC
    dev.close()


def test_a_closed_device_refuses_io_and_closes_once(fake_nbd):
    dev = NbdDevice(URI)
    dev.close()
    dev.close()
    assert fake_nbd.made[0].calls.count(("shutdown",)) == 1
    with pytest.raises(ValueError, match="closed device"):
        dev.pread(0, 1)
    with pytest.raises(ValueError, match="closed device"):
        dev.pwrite(b"x", 0)


def _real_nbd():
    try:
        return load_nbd()
    except NbdClientError as exc:
        pytest.skip(str(exc))


def test_libnbd_refused_names_the_uri():
    _real_nbd()
    with socket.socket() as held:                      # bound, not listening: refused
        held.bind(("127.0.0.1", 0))
        uri = f"nbd://127.0.0.1:{held.getsockname()[1]}/disk"
        with pytest.raises(NbdClientError, match=f"cannot connect to {uri}: .*refused"):
            NbdDevice(uri)


def test_libnbd_against_a_silent_server_gives_up_at_the_deadline():
    _real_nbd()
    with socket.socket() as silent:                    # accepts, never says the NBD greeting
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        uri = f"nbd://127.0.0.1:{silent.getsockname()[1]}/disk"
        with pytest.raises(NbdClientError, match=f"cannot connect to {uri}: no answer within "
                                                 f"0.3 s"):
            NbdDevice(uri, connect_timeout_s=0.3)
