"""A real QEMU guest from the built image, under TCG with a user-mode NIC: it boots to the
agent's ready line, takes its location from the second serial port, answers the clients'
UDP echo and key-value protocols, and dirties its memory at the rate it was asked for, as
QEMU itself measures it (QMP ``calc-dirty-rate``).  Everything is killed and removed after.

Skipped when QEMU or the image is missing (``make setup`` / ``python -m migrator.qemu.image
build``).  One boot for the module: about 15 s on this machine kind.
"""

from __future__ import annotations

import math
import shutil
import socket
import time

import pytest

from migrator.guest.service import REPLY, REQUEST
from migrator.memory.pages import PAGE_SIZE
from migrator.memory.workload import WorkloadParams
from migrator.qemu.boot import boot_user_guest
from migrator.qemu.debs import ImageError
from migrator.qemu.image import find_image
from migrator.qemu.launch import QEMU, SHM, buffer_mib
from tests.processes.migrator.waiting import wait_for

pytestmark = pytest.mark.slow

MEMORY_MIB = 256
# Web-like but uniform over the whole buffer, so nearly every write dirties a new page and what
# QEMU counts (distinct pages per second) is close to the rate asked for.
WORKLOAD = WorkloadParams(dirty_rate_mibps=20.0, working_set_frac=1.0, skew="uniform")
CALC_S = 2
SAMPLE_PAGES = 4096           # per GiB: 1024 sampled pages of 256 MiB, about 8 % noise
TOLERANCE = 0.35
READY_DEADLINE_S = 60.0


def _image():
    if shutil.which(QEMU) is None:
        pytest.skip(f"{QEMU} is not installed (make setup)")
    try:
        image = find_image()
    except ImageError as exc:
        pytest.skip(f"the guest image cannot be looked up: {exc}")
    if image is None:
        pytest.skip("the guest image is not built: python -m migrator.qemu.image build")
    return image


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def guest(tmp_path_factory):
    image = _image()
    udp, tcp = _free_port(socket.SOCK_DGRAM), _free_port(socket.SOCK_STREAM)
    work = tmp_path_factory.mktemp("qemu")
    g = boot_user_guest(image.kernel, image.initrd, "tcg", work, "ptest", memory_mib=MEMORY_MIB,
                        workload=WORKLOAD, forwards=(("udp", udp, 7007), ("tcp", tcp, 7070)))
    g.ports = (udp, tcp)
    try:
        ready = g.wait_ready(READY_DEADLINE_S)
        assert ready is not None, f"no ready line within {READY_DEADLINE_S} s: " \
                                  f"{g.why_not_ready()}"
        print(f"TCG boot to ready: {ready:.1f} s")
        yield g
    finally:
        ram = g.side.ram
        g.close()
        assert not ram.exists(), f"{ram} left behind"
    assert not [p for p in SHM.glob("wanmig-qemu-ptest-*")], "RAM files left in /dev/shm"


def _echo(port: int, seq: int) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        s.sendto(REQUEST.pack(seq, 2.5), ("127.0.0.1", port))
        try:
            got_seq, t, loc = REPLY.unpack(s.recv(100))
        except TimeoutError:
            return None
        assert (got_seq, t) == (seq, 2.5)
        return loc.rstrip(b"\0")


def test_location_reaches_the_udp_echo(guest):
    udp = guest.ports[0]
    first = wait_for(lambda: _echo(udp, 1), 10, "a first echo reply through QEMU's NIC")
    assert first == b"unknown", guest.console()
    guest.set_location("dc9")
    wait_for(lambda: _echo(udp, 2) == b"dc9", 10,
             f"dc9 in the echo replies; console: {guest.console()[-500:]}")
    assert "wanmig-agent location dc9" in guest.console()


def test_key_value_over_one_connection(guest):
    with socket.create_connection(("127.0.0.1", guest.ports[1]), timeout=10) as s:
        f = s.makefile("rwb")
        for i in range(20):
            f.write(b"PUT k%d v%d\n" % (i, i))
            f.flush()
            assert f.readline() == b"OK\n", guest.console()[-500:]
        for i in reversed(range(20)):
            f.write(b"GET k%d\n" % i)
            f.flush()
            assert f.readline() == b"VAL v%d\n" % i
        f.write(b"GET nothing\n")
        f.flush()
        assert f.readline() == b"NONE\n"


def _expected_distinct_mibps(workload: WorkloadParams, buf_mib: int, seconds: float) -> float:
    """Distinct pages a uniform workload dirties in ``seconds``, per second, in MiB/s."""
    pages = buf_mib * 2**20 // PAGE_SIZE * workload.working_set_frac
    writes = workload.dirty_rate_mibps * 2**20 / PAGE_SIZE * seconds
    return pages * (1 - math.exp(-writes / pages)) * PAGE_SIZE / 2**20 / seconds


def test_dirty_rate_as_qemu_measures_it(guest):
    from qemu.qmp.legacy import QEMUMonitorProtocol

    qmp = QEMUMonitorProtocol(str(guest.side.qmp))
    qmp.connect()
    try:
        qmp.cmd("calc-dirty-rate", **{"calc-time": CALC_S, "sample-pages": SAMPLE_PAGES})
        deadline = time.monotonic() + CALC_S + 10
        while True:
            result = qmp.cmd("query-dirty-rate")
            result = result.get("return", result)
            if result.get("status") == "measured" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        qmp.close()
    asked = WORKLOAD.dirty_rate_mibps
    expected = _expected_distinct_mibps(WORKLOAD, buffer_mib(MEMORY_MIB), CALC_S)
    context = (f"asked {asked} MiB/s of page writes, expected {expected:.1f} MiB/s of distinct "
               f"pages over {CALC_S} s, QEMU measured {result}; console: "
               f"{guest.console()[-400:]}")
    print(context)
    assert result.get("status") == "measured", context
    measured = result["dirty-rate"]
    assert abs(measured - asked) <= TOLERANCE * asked, context
