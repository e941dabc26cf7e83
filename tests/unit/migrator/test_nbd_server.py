"""The NBD server's command line (pure) and its adapter's error paths, with a fake process: a
server that cannot start, exits, never comes up, is interrupted or ignores SIGTERM is reported
with what it said and never left running."""

from __future__ import annotations

import os
import socket
import subprocess
import threading

import pytest

from ground.config import ConfigError
from migrator.disk.nbdserver import (
    NbdServer,
    NbdServerError,
    _greets,
    listens,
    nbd_server_argv,
    nbd_uri,
    tcp_accepts,
)


def test_the_command_line_exports_a_raw_image_to_several_clients():
    assert nbd_server_argv("/srv/dc1h1/vm1.img", "10.1.1.1", 10809) == [
        "qemu-nbd", "--format=raw", "--persistent", "--shared=4", "--bind=10.1.1.1",
        "--port=10809", "--export-name=disk", "--cache=writeback", "--aio=threads",
        "/srv/dc1h1/vm1.img"]
    argv = nbd_server_argv("/d/x.img", "::1", 1, export="vm-2.disk", shared_clients=1)
    assert "--bind=::1" in argv and "--export-name=vm-2.disk" in argv
    assert "--shared=1" in argv and argv[-1] == "/d/x.img"


def test_the_uri_is_what_libnbd_connects_to():
    assert nbd_uri("10.1.1.1", 10809) == "nbd://10.1.1.1:10809/disk"
    assert nbd_uri("::1", 5000, "d2") == "nbd://[::1]:5000/d2"
    assert NbdServer("/x.img", "127.0.0.1", 7777).uri == "nbd://127.0.0.1:7777/disk"


@pytest.mark.parametrize("kwargs, key", [
    ({"path": "rel/x.img"}, "nbd.path"),
    ({"path": ""}, "nbd.path"),
    ({"path": 5}, "nbd.path"),
    ({"path": "/x\n.img"}, "nbd.path"),
    ({"host": "localhost"}, "nbd.host"),
    ({"host": "10.1.1"}, "nbd.host"),
    ({"port": 0}, "nbd.port"),
    ({"port": 65536}, "nbd.port"),
    ({"port": True}, "nbd.port"),
    ({"port": "10809"}, "nbd.port"),
    ({"export": ""}, "nbd.export"),
    ({"export": "a/b"}, "nbd.export"),
    ({"export": "-x"}, "nbd.export"),
    ({"export": "x" * 65}, "nbd.export"),
    ({"shared_clients": 0}, "nbd.shared_clients"),
    ({"shared_clients": 65}, "nbd.shared_clients"),
    ({"shared_clients": 2.0}, "nbd.shared_clients"),
])
def test_bad_input_is_refused_naming_the_key(kwargs, key):
    args = {"path": "/x.img", "host": "127.0.0.1", "port": 10809} | kwargs
    path, host, port = args.pop("path"), args.pop("host"), args.pop("port")
    with pytest.raises(ConfigError, match=f"^{key}: got "):
        nbd_server_argv(path, host, port, **args)
    started = []
    with pytest.raises(ConfigError, match=f"^{key}: got "):
        NbdServer(path, host, port, popen=lambda *a, **k: started.append(a), **args)
    assert started == [], "nothing may start on bad input"


class FakeProc:
    """A process that exits with ``code`` after ``exit_after`` polls (None: never), writing
    ``stderr`` first; ``stubborn`` ignores SIGTERM."""

    pid = 424242

    def __init__(self, stderr_file, *, text=b"", exit_after=None, code=1, stubborn=False):
        stderr_file.write(text)
        self.polls, self.exit_after, self.code, self.stubborn = 0, exit_after, code, stubborn
        self.returncode = None
        self.signals: list[str] = []

    def poll(self):
        self.polls += 1
        if self.returncode is None and self.exit_after is not None \
                and self.polls > self.exit_after:
            self.returncode = self.code
        return self.returncode

    def terminate(self):
        self.signals.append("TERM")
        if not self.stubborn:
            self.returncode = -15

    def kill(self):
        self.signals.append("KILL")
        self.returncode = -9

    def wait(self, timeout=None):
        if self.returncode is None:
            raise subprocess.TimeoutExpired("qemu-nbd", timeout)
        return self.returncode


class Launcher:
    def __init__(self, **fake):
        self.fake, self.procs, self.argv = fake, [], None

    def __call__(self, argv, **kw):
        assert kw["stdin"] is subprocess.DEVNULL and kw["stdout"] is subprocess.DEVNULL
        self.argv = argv
        self.procs.append(FakeProc(kw["stderr"], **self.fake))
        return self.procs[-1]


def server(launcher, accepts=lambda proc, host, port: False, timeout=0.2):
    return NbdServer("/img", "127.0.0.1", 10809, popen=launcher, accepts=accepts,
                     ready_timeout_s=timeout)


def test_a_server_that_accepts_is_up_and_stopped_once():
    launch = Launcher()
    srv = server(launch, accepts=lambda proc, host, port: (host, port) == ("127.0.0.1", 10809))
    with srv as s:
        assert s.running and launch.argv == srv.argv
    assert launch.procs[0].signals == ["TERM"] and not srv.running
    assert srv.stop() == -15 and launch.procs[0].signals == ["TERM"], "stop is idempotent"


def test_a_missing_qemu_nbd_says_to_run_make_setup():
    def popen(argv, **kw):
        raise FileNotFoundError(2, "No such file or directory", argv[0])
    with pytest.raises(NbdServerError, match=r"qemu-nbd is not installed: run make setup "
                                             r"\(Debian package qemu-utils\)"):
        server(popen).start()


def test_a_server_that_exits_is_reported_with_its_stderr():
    launch = Launcher(text=b"qemu-nbd: Failed to bind socket: Address already in use\n",
                      exit_after=1, code=1)
    srv = server(launch)
    with pytest.raises(NbdServerError, match=r"exited with status 1 before serving "
                                             r"nbd://127.0.0.1:10809/disk: qemu-nbd: Failed "
                                             r"to bind socket: Address already in use"):
        srv.start()
    assert launch.procs[0].signals == [] and srv.stderr_text() == "", "stderr file closed"


def test_a_server_that_never_listens_is_stopped_after_the_deadline():
    launch = Launcher(text=b"still thinking")
    srv = server(launch, timeout=0.1)
    with pytest.raises(NbdServerError, match=r"did not accept connections on "
                                             r"127.0.0.1:10809 within 0.1 s: still thinking"):
        srv.start()
    assert launch.procs[0].signals == ["TERM"] and not srv.running


def test_ctrl_c_while_waiting_leaves_nothing_running():
    launch = Launcher()

    def interrupted(proc, host, port):
        raise KeyboardInterrupt
    srv = server(launch, accepts=interrupted)
    with pytest.raises(KeyboardInterrupt):
        srv.start()
    assert launch.procs[0].signals == ["TERM"] and not srv.running


def test_a_server_ignoring_sigterm_is_killed():
    launch = Launcher(stubborn=True)
    srv = server(launch, accepts=lambda *a: True).start()
    assert srv.stop() == -9
    assert launch.procs[0].signals == ["TERM", "KILL"]


def test_a_server_is_started_once():
    srv = server(Launcher(), accepts=lambda *a: True).start()
    try:
        with pytest.raises(NbdServerError, match="already started"):
            srv.start()
    finally:
        srv.stop()


class Listener:
    """A TCP listener in this process that sends ``greeting`` to each connection it accepts
    (None: accepts and says nothing)."""

    def __init__(self, greeting: bytes | None):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.greeting, self.conns = greeting, []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return                                   # closed
            self.conns.append(conn)
            if self.greeting is not None:
                conn.sendall(self.greeting)

    def close(self):
        if self.sock.fileno() < 0:
            return                                       # closed already
        self.sock.shutdown(socket.SHUT_RDWR)             # wakes accept()
        self.sock.close()
        self.thread.join(timeout=5)
        for conn in self.conns:
            conn.close()


@pytest.fixture
def listener():
    made = []

    def make(greeting):
        made.append(Listener(greeting))
        return made[-1]
    yield make
    for one in made:
        one.close()


class This:
    pid = os.getpid()


def test_an_nbd_greeting_is_what_ready_means(listener):
    nbd = listener(b"NBDMAGICIHAVEOPT\x00\x03")
    assert _greets(None, "127.0.0.1", nbd.port)
    assert tcp_accepts(This(), "127.0.0.1", nbd.port), "this process listens and greets"


def test_another_listener_on_the_port_is_not_the_server(listener):
    silent, other = listener(None), listener(b"SSH-2.0-OpenSSH\r\n")
    assert not _greets(None, "127.0.0.1", silent.port)
    assert not _greets(None, "127.0.0.1", other.port)
    assert not tcp_accepts(This(), "127.0.0.1", other.port)


def test_a_closed_port_is_not_ready(listener):
    gone = listener(b"NBDMAGIC")
    port = gone.port
    gone.close()
    assert not _greets(None, "127.0.0.1", port)
    assert not listens(os.getpid(), port)


def test_only_the_process_holding_the_listening_socket_is_the_server(listener):
    """Before its exec (``mnexec``/``ip netns exec`` in front) the process holds no listening
    socket; a process that does not hold this one is not taken for the server either."""
    nbd = listener(b"NBDMAGIC")
    assert listens(os.getpid(), nbd.port)
    assert not listens(os.getppid(), nbd.port)

    class Gone:
        pid = 2 ** 22 + 1                        # above pid_max's limit: no such process
    assert not listens(Gone.pid, nbd.port) and not tcp_accepts(Gone(), "127.0.0.1", nbd.port)
