"""The guest agent (migrator/qemu/agent/agent.c) compiled and run on the host, without QEMU:
its protocols are the emulated guest's, its location follows the port, bad input is refused.

Run on 127.0.0.1 with free ports, the kernel command line read from a file and the location
from a FIFO (in the guest: /proc/cmdline and /dev/ttyS1)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess

import pytest

from migrator.guest.service import MAX_LINE, REPLY, REQUEST
from migrator.memory.workload import PRESETS
from migrator.qemu import image
from migrator.qemu.launch import kernel_cmdline
from tests.processes.migrator.waiting import wait_for

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")


@pytest.fixture(scope="module")
def agent_bin(tmp_path_factory):
    out = tmp_path_factory.mktemp("agent") / "wanmig-agent"
    image.compile_agent(out)
    return out


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Agent:
    def __init__(self, binary, tmp_path, cmdline: str) -> None:
        self.cmdline = tmp_path / "cmdline"
        self.cmdline.write_text(cmdline + "\n")
        self.loc = tmp_path / "loc"
        os.mkfifo(self.loc)
        self.out = tmp_path / "console"
        self.udp, self.tcp = _free_port(socket.SOCK_DGRAM), _free_port(socket.SOCK_STREAM)
        with open(self.out, "wb") as out:
            self.proc = subprocess.Popen(
                [str(binary), "--cmdline", str(self.cmdline), "--location", str(self.loc),
                 "--bind", "127.0.0.1", "--udp-port", str(self.udp), "--tcp-port",
                 str(self.tcp)], stdout=out, stderr=subprocess.STDOUT)

    def console(self) -> str:
        return self.out.read_text(errors="replace")

    def echo(self, seq: int) -> tuple[int, float, bytes] | None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.5)
            s.sendto(REQUEST.pack(seq, 1.25), ("127.0.0.1", self.udp))
            try:
                return REPLY.unpack(s.recv(100))
            except TimeoutError:
                return None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def agent(agent_bin, tmp_path):
    a = Agent(agent_bin, tmp_path, kernel_cmdline(PRESETS["web"], 3, "10.0.2.15", 24, 8))
    try:
        wait_for(lambda: "wanmig-agent ready" in a.console() or a.proc.poll() is not None, 10,
                 "the agent's ready line")
        assert a.proc.poll() is None, a.console()
        yield a
    finally:
        a.close()


def test_udp_echo_carries_the_location(agent):
    assert agent.echo(41) == (41, 1.25, b"unknown".ljust(16, b"\0")), agent.console()
    with open(agent.loc, "w") as loc:
        loc.write("site dc9\r\n")
    wait_for(lambda: (r := agent.echo(42)) and r[2].rstrip(b"\0") == b"dc9", 5,
             f"the location dc9 in replies; console: {agent.console()}")
    with open(agent.loc, "w") as loc:
        loc.write("place nowhere\nsite abcdefghijklmnopq\nsite dc2\n")
    wait_for(lambda: (r := agent.echo(43)) and r[2].rstrip(b"\0") == b"dc2", 5,
             f"the location dc2; console: {agent.console()}")
    assert agent.console().count("bad location line") == 2, agent.console()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:   # not 16 bytes: ignored
        s.settimeout(0.3)
        s.sendto(b"x" * 15, ("127.0.0.1", agent.udp))
        with pytest.raises(TimeoutError):
            s.recv(100)


def test_key_value_lines_as_the_emulated_guest(agent):
    with socket.create_connection(("127.0.0.1", agent.tcp), timeout=5) as s:
        f = s.makefile("rwb")

        def ask(line: bytes) -> bytes:
            f.write(line + b"\n")
            f.flush()
            return f.readline()
        assert ask(b"GET k1") == b"NONE\n"
        assert ask(b"PUT k1 v1") == b"OK\n"
        assert ask(b"PUT k1 v2\r") == b"OK\n"
        assert ask(b"GET k1") == b"VAL v2\n"
        value = b"x" * 1024
        for i in range(3000):      # the table grows past its first size
            f.write(b"PUT key%d %s\n" % (i, value[: 1 + i % 1024]))
        f.flush()
        assert all(f.readline() == b"OK\n" for _ in range(3000))
        assert ask(b"GET key2999") == b"VAL " + value[:1 + 2999 % 1024] + b"\n"
        assert ask(b"PUT k1") == b"ERR usage: PUT <key> <value> | GET <key>\n"
        assert ask(b"DEL k1") == b"ERR unknown command DEL\n"
        assert ask(b"PUT bad/key v").startswith(b"ERR bad key")
        assert ask(b"PUT k " + b"v" * 1025).startswith(b"ERR bad value (1025 bytes)")
        f.write(b"y" * (MAX_LINE + 1))
        f.flush()
        assert f.readline() == b"", "a line over 2048 bytes must close the connection"
    with socket.create_connection(("127.0.0.1", agent.tcp), timeout=5) as s2:
        s2.sendall(b"GET k1\n" + b"z" * MAX_LINE + b"\n")
        f2 = s2.makefile("rb")
        assert f2.readline() == b"VAL v2\n", "the store is the agent's, not the connection's"
        assert f2.readline() == b"ERR unknown command " + b"z" * 32 + b"\n"
    assert "over 2048 bytes" in agent.console()


def test_concurrent_connections(agent):
    conns = [socket.create_connection(("127.0.0.1", agent.tcp), timeout=5) for _ in range(5)]
    try:
        for i, c in enumerate(conns):
            c.sendall(b"PUT c%d v%d\n" % (i, i))
        for c in conns:
            assert c.recv(16) == b"OK\n"
        for i, c in enumerate(reversed(conns)):
            c.sendall(b"GET c%d\n" % i)
            assert c.recv(16) == b"VAL v%d\n" % i
    finally:
        for c in conns:
            c.close()


@pytest.mark.parametrize(("word", "named"), [
    ("wanmig.rate=fast", "wanmig.rate=fast"), ("wanmig.ws=0", "wanmig.ws=0"),
    ("wanmig.skew=pareto", "wanmig.skew=pareto"), ("wanmig.write_bytes=4097", "write_bytes"),
    ("wanmig.colour=red", "wanmig.colour=red"), ("wanmig.seed=-1", "wanmig.seed"),
])
def test_bad_parameters_exit_2_naming_the_key(agent_bin, tmp_path, word, named):
    base = kernel_cmdline(PRESETS["idle"], 1, "10.0.2.15", 24, 4)
    key = word.split("=")[0]
    words = [w for w in base.split() if not w.startswith(key + "=")] + [word]
    (tmp_path / "cmdline").write_text(" ".join(words))
    done = subprocess.run([str(agent_bin), "--cmdline", str(tmp_path / "cmdline"),
                           "--location", "/dev/null"], capture_output=True, text=True,
                          timeout=10)
    assert done.returncode == 2, done.stdout
    assert named in done.stdout and "bad parameter" in done.stdout, done.stdout


def test_missing_buffer_size_is_refused(agent_bin, tmp_path):
    (tmp_path / "cmdline").write_text("console=ttyS0 wanmig.rate=1\n")
    done = subprocess.run([str(agent_bin), "--cmdline", str(tmp_path / "cmdline")],
                          capture_output=True, text=True, timeout=10)
    assert done.returncode == 2 and "wanmig.buf_mib" in done.stdout, done.stdout

