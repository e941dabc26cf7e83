"""A QEMU guest's tap (``topologies.taps``): made from ``/dev/net/tun`` in this namespace, it
exists while a descriptor is open and is gone with the last one, so a QEMU that dies takes its
NIC with it and a crashed run leaves no interface behind."""

from __future__ import annotations

import os
import subprocess

import pytest

from ground.config import ConfigError
from topologies.taps import open_tap

pytestmark = pytest.mark.root


def _links() -> str:
    return subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                          check=True).stdout


@pytest.fixture
def root_with_tun():
    if os.geteuid() != 0:
        pytest.skip("needs root: creating a tap (run: sudo make test)")
    if not os.path.exists("/dev/net/tun"):
        pytest.skip("this machine has no /dev/net/tun")


def test_a_tap_lives_as_long_as_its_descriptor(root_with_tun):
    name = f"qtt{os.getpid() % 100000}"
    fd = open_tap(name)
    try:
        assert f": {name}:" in _links(), _links()
        assert os.get_inheritable(fd), "QEMU is handed the descriptor: it must be inheritable"
    finally:
        os.close(fd)
    assert f": {name}:" not in _links(), _links()


def test_a_bad_tap_name_is_refused_before_anything_is_made(root_with_tun):
    before = _links()
    with pytest.raises(ConfigError, match="tap"):
        open_tap("Bad-Name")
    with pytest.raises(ConfigError, match="tap"):
        open_tap("a" * 16)
    assert _links() == before
