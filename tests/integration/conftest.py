"""Integration tests build real networks: they need root, Mininet and a running Open vSwitch.

Each test is skipped with the reason when the machine cannot run the testbed, and each checks
that it left nothing behind (bridges, interfaces, processes of its own nodes).
"""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.root


@pytest.fixture(scope="session")
def choice():
    if os.geteuid() != 0:
        pytest.skip("needs root: network namespaces and Open vSwitch (run: sudo make test)")
    from topologies.detect import detect

    _facts, found = detect()
    if not found.ok:
        pytest.skip("this machine cannot run the testbed: " + "; ".join(found.problems))
    return found
