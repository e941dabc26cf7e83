"""The NBD server of shared storage: ``qemu-nbd`` exporting a VM's raw disk image from the
source site's datastore, so that the guest reaches its disk over the network wherever it runs.

``nbd_server_argv`` is the whole command line, pure, its input checked (``ConfigError``) before
anything starts. ``NbdServer`` is the thin adapter: it starts that command through an injected
``popen`` (a Mininet host's ``popen`` in a run, so the server lives in the hypervisor's network
namespace; ``subprocess.Popen`` in tests), waits until the server accepts a TCP connection
(polled with a deadline; qemu-nbd's stderr in the error when it exits first), and stops it
(terminate, wait, kill; idempotent), also when the wait is interrupted (Ctrl-C).

Ready means: the process itself holds the listening socket (read from ``/proc``, so neither
the process before its exec nor another one that had the port is taken for it), and a TCP
connection to it is greeted as NBD servers greet. That connection is made from the server's own
network namespace (``/proc/PID/ns/net``), entered by a short-lived thread when it is not this
process's: the runner sits in the root namespace, where a hypervisor's address is unreachable.

Options, for qemu-nbd 10 (``qemu-nbd --help``):
- ``--format=raw``: the image is a plain sparse file; never let qemu-nbd probe the format.
- ``--persistent``: the guest may reconnect (after a move) without the server exiting.
- ``--shared=N``: the guest and, meanwhile, a verifier or a second reader.
- ``--cache=writeback --aio=threads``: the datastore may be tmpfs, which has no ``O_DIRECT``, so
  neither ``cache=none`` nor ``aio=native`` (which needs it) can open it; a write reaches the
  file (its page cache) before the reply, so a reader of the file sees every acknowledged write.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import logging
import os
import re
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ground.config import ConfigError
from ground.errors import NotAsAskedError

log = logging.getLogger(__name__)

QEMU_NBD = "qemu-nbd"
DEFAULT_EXPORT = "disk"
DEFAULT_SHARED_CLIENTS = 4
MAX_SHARED_CLIENTS = 64
READY_TIMEOUT_S = 10.0      # qemu-nbd listens within ~20 ms here; 10 s allows a loaded CI
STOP_TIMEOUT_S = 5.0        # after SIGTERM, before SIGKILL
PROBE_TIMEOUT_S = 0.5       # one TCP connect attempt
POLL_S = 0.02
STDERR_CHARS = 2000         # of qemu-nbd's stderr in an error message
_EXPORT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_CLONE_NEWNET = 0x40000000
NBD_GREETING = b"NBDMAGIC"  # the first 8 bytes an NBD server sends (the NBD protocol)
TCP_LISTEN = "0A"           # a listening socket's state in /proc/net/tcp


class NbdServerError(NotAsAskedError):
    """The NBD server could not be started, or did not come up in time."""


def _check_host(host: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(host)  # type: ignore[arg-type]
    except ValueError:
        raise ConfigError("nbd.host", host, "an IPv4 or IPv6 address to listen on") from None


def _check_port(port: object) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError("nbd.port", port, "a TCP port, an integer from 1 to 65535")
    return port


def _check_export(export: object) -> str:
    if not isinstance(export, str) or not _EXPORT_RE.fullmatch(export):
        raise ConfigError("nbd.export", export, "an export name of 1-64 letters, digits, "
                                                "'.', '_' or '-', not starting with '.', '_', '-'")
    return export


def nbd_uri(host: str, port: int, export: str = DEFAULT_EXPORT) -> str:
    """``nbd://host:port/export`` (an IPv6 host in brackets), the URI libnbd connects to."""
    addr = _check_host(host)
    netloc = f"[{addr}]" if addr.version == 6 else str(addr)
    return f"nbd://{netloc}:{_check_port(port)}/{_check_export(export)}"


def nbd_server_argv(path: str | os.PathLike, host: str, port: int, *,
                    export: str = DEFAULT_EXPORT,
                    shared_clients: int = DEFAULT_SHARED_CLIENTS) -> list[str]:
    """qemu-nbd's command line exporting the raw image ``path`` as ``export`` on
    ``host:port`` (see the module's docstring for each option)."""
    if not isinstance(path, (str, os.PathLike)) or not str(path) \
            or not os.path.isabs(path) or "\n" in str(path):
        raise ConfigError("nbd.path", path, "the absolute path of the raw disk image")
    if isinstance(shared_clients, bool) or not isinstance(shared_clients, int) \
            or not 1 <= shared_clients <= MAX_SHARED_CLIENTS:
        raise ConfigError("nbd.shared_clients", shared_clients,
                          f"an integer from 1 to {MAX_SHARED_CLIENTS}")
    return [QEMU_NBD, "--format=raw", "--persistent", f"--shared={shared_clients}",
            f"--bind={_check_host(host)}", f"--port={_check_port(port)}",
            f"--export-name={_check_export(export)}", "--cache=writeback", "--aio=threads",
            os.fspath(path)]


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _greets(netns: str | None, host: str, port: int) -> bool:
    """Whether an NBD server at ``host:port`` accepts a TCP connection from the network
    namespace ``netns`` (a ``/proc/PID/ns/net`` path; None: this thread's) and greets it
    (``NBDMAGIC``, which it sends first): anything else listening there is not it."""
    def attempt() -> bool:
        try:
            with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S) as sock:
                got = b""
                while len(got) < len(NBD_GREETING):
                    chunk = sock.recv(len(NBD_GREETING) - len(got))
                    if not chunk:
                        return False
                    got += chunk
                return got == NBD_GREETING
        except OSError:
            return False
    if netns is None:
        return attempt()
    result: list[bool] = []

    def in_netns() -> None:                 # this thread only: it ends after the attempt
        try:
            fd = os.open(netns, os.O_RDONLY)
        except OSError:
            result.append(False)            # the process is gone
            return
        try:
            _setns(fd)
        finally:
            os.close(fd)
        result.append(attempt())
    t = threading.Thread(target=in_netns, name="nbd-probe", daemon=True)
    t.start()
    t.join()
    if not result:
        raise NbdServerError(f"cannot enter {netns} to probe {host}:{port} (needs root)")
    return result[0]


def listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` itself holds a socket listening on TCP ``port`` (read from
    ``/proc/PID/net/tcp{,6}``, which show the process's own namespace, and its descriptors):
    not a process before its exec, nor another that had the port first."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            rows = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            return False
        for row in rows:
            f = row.split()
            if len(f) > 9 and f[3] == TCP_LISTEN and int(f[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{f[9]}]")
    if not inodes:
        return False
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                return True
    return False


def tcp_accepts(proc: Any, host: str, port: int) -> bool:
    """The default readiness probe: ``proc`` itself listens on ``port`` (``listens``), and a
    TCP connection to ``host:port`` from that process's network namespace is greeted by an NBD
    server (``_greets``)."""
    if not listens(proc.pid, port):
        return False
    try:
        theirs = os.stat(f"/proc/{proc.pid}/ns/net")
    except OSError:
        return False
    mine = os.stat("/proc/self/ns/net")
    same = (theirs.st_dev, theirs.st_ino) == (mine.st_dev, mine.st_ino)
    return _greets(None if same else f"/proc/{proc.pid}/ns/net", host, port)


class NbdServer:
    """qemu-nbd serving one image; ``start()``/``stop()`` or a ``with`` block.

    ``popen(argv, stdin=, stdout=, stderr=)`` starts the command (``subprocess.Popen`` or a
    Mininet host's ``popen``); ``accepts(proc, host, port)`` says whether it is up
    (``tcp_accepts``)."""

    def __init__(self, path: str | os.PathLike, host: str, port: int, *,
                 export: str = DEFAULT_EXPORT, shared_clients: int = DEFAULT_SHARED_CLIENTS,
                 popen: Callable[..., Any] = subprocess.Popen,
                 accepts: Callable[[Any, str, int], bool] = tcp_accepts,
                 ready_timeout_s: float = READY_TIMEOUT_S) -> None:
        self.argv = nbd_server_argv(path, host, port, export=export,
                                    shared_clients=shared_clients)
        self.uri = nbd_uri(host, port, export)
        self.host, self.port, self.export = str(_check_host(host)), port, export
        self._popen, self._accepts, self._ready_timeout_s = popen, accepts, ready_timeout_s
        self.proc: Any = None
        self._stderr: IO[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> NbdServer:
        """Start qemu-nbd and return once it accepts connections; NbdServerError (and nothing
        left running) when it cannot be started, exits, or is not up in time."""
        if self.proc is not None:
            raise NbdServerError(f"{self.uri}: already started")
        self._stderr = tempfile.TemporaryFile(prefix="wanmig-nbd-")  # noqa: SIM115 - stop()
        try:
            try:
                self.proc = self._popen(self.argv, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=self._stderr)
            except FileNotFoundError:
                raise NbdServerError(f"{QEMU_NBD} is not installed: run make setup "
                                     f"(Debian package qemu-utils)") from None
            log.debug("started %s (pid %s)", " ".join(self.argv), self.proc.pid)
            self._wait_ready()
        except BaseException:               # Ctrl-C included: nothing left running
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._ready_timeout_s
        while True:
            code = self.proc.poll()
            if code is not None:
                raise NbdServerError(f"{QEMU_NBD} exited with status {code} before serving "
                                     f"{self.uri}: {self.stderr_text() or '(no output)'}")
            if self._accepts(self.proc, self.host, self.port):
                log.info("NBD server up: %s", self.uri)
                return
            if time.monotonic() >= deadline:
                raise NbdServerError(f"{QEMU_NBD} did not accept connections on "
                                     f"{self.host}:{self.port} within "
                                     f"{self._ready_timeout_s:g} s: "
                                     f"{self.stderr_text() or '(no output)'}")
            time.sleep(POLL_S)

    def stderr_text(self) -> str:
        """The end of what qemu-nbd wrote to stderr (empty once stopped)."""
        if self._stderr is None or self._stderr.closed:
            return ""
        self._stderr.flush()
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace").strip()
        return text[-STDERR_CHARS:]

    def stop(self) -> int | None:
        """Terminate qemu-nbd, wait, kill it if it will not go; its exit status. Idempotent."""
        code = None
        try:
            if self.proc is not None:
                if self.proc.poll() is None:
                    self.proc.terminate()
                    try:
                        self.proc.wait(timeout=STOP_TIMEOUT_S)
                    except subprocess.TimeoutExpired:
                        log.warning("%s ignored SIGTERM: killing it", QEMU_NBD)
                        self.proc.kill()
                        self.proc.wait(timeout=STOP_TIMEOUT_S)
                code = self.proc.returncode
        finally:
            if self._stderr is not None:
                with contextlib.suppress(OSError):
                    self._stderr.close()
        return code

    def __enter__(self) -> NbdServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
