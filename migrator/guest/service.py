"""The guest's network service: what clients probe during a migration.

Two protocols, one thread (``selectors``), polled by the guest's main loop between batches of
memory writes, so that a paused guest answers nothing: requests wait in the socket buffers, as
they do while a real VM is stopped, and are answered on resume (at whichever site that is).

* UDP echo (port 7007): a request is exactly ``struct.pack(">Qd", seq, t_send)`` (16 bytes);
  the reply is ``struct.pack(">Qd16s", seq, t_send, location)``, the location ASCII and
  NUL-padded, so a client sees which site answered.  Any other datagram is ignored and counted.
* TCP key-value (port 7070), one request per line: ``PUT <key> <value>`` -> ``OK``;
  ``GET <key>`` -> ``VAL <value>`` or ``NONE``; anything else -> ``ERR <reason>``.  A line longer
  than 2048 bytes closes the connection.  The store lives in guest memory
  (``migrator.guest.kvstore``).

``echo_reply`` and ``handle_line`` are pure; ``GuestService`` only moves bytes.
"""

from __future__ import annotations

import logging
import selectors
import socket
import struct
from collections import Counter
from dataclasses import dataclass, field

from migrator.guest.kvstore import KVError, KVStore

log = logging.getLogger(__name__)

UDP_PORT = 7007
TCP_PORT = 7070
REQUEST = struct.Struct(">Qd")
REPLY = struct.Struct(">Qd16s")
MAX_LINE = 2048
_UDP_BURST = 256             # datagrams handled per poll, so TCP is never starved
_OUT_HIGH = 1 << 20          # stop reading a client that does not read its replies


def echo_reply(data: bytes, location: bytes) -> bytes | None:
    """The reply to one datagram, or None if it is not a 16-byte echo request."""
    if len(data) != REQUEST.size:
        return None
    seq, t_send = REQUEST.unpack(data)
    return REPLY.pack(seq, t_send, location)


def handle_line(store: KVStore, line: bytes) -> bytes:
    """The reply to one request line (without its newline)."""
    if line.endswith(b"\r"):
        line = line[:-1]
    parts = line.split(b" ")
    try:
        if parts[0] == b"PUT" and len(parts) == 3:
            store.put(parts[1], parts[2])
            return b"OK\n"
        if parts[0] == b"GET" and len(parts) == 2:
            value = store.get(parts[1])
            return b"NONE\n" if value is None else b"VAL " + value + b"\n"
    except KVError as exc:
        reason = str(exc).encode("ascii", "replace").replace(b"\n", b" ")
        return b"ERR " + reason + b"\n"
    if parts[0] in (b"PUT", b"GET"):
        return b"ERR usage: PUT <key> <value> | GET <key>\n"
    return b"ERR unknown command " + parts[0][:32].decode("ascii", "replace").encode() + b"\n"


@dataclass
class _Conn:
    sock: socket.socket
    inbuf: bytearray = field(default_factory=bytearray)
    outbuf: bytearray = field(default_factory=bytearray)


class GuestService:
    """UDP echo and TCP KV on ``host``; call ``poll`` from the guest loop, ``close`` at the end.

    ``store`` and ``location`` are plain attributes: the guest replaces them when it switches to
    the destination's memory.
    """

    def __init__(self, store: KVStore, location: str, host: str = "0.0.0.0",
                 udp_port: int = UDP_PORT, tcp_port: int = TCP_PORT) -> None:
        self.store = store
        self.location = location
        self.stats: Counter[str] = Counter()
        self._sel = selectors.DefaultSelector()
        self._conns: dict[int, _Conn] = {}
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self._udp.bind((host, udp_port))
            self._tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._tcp.bind((host, tcp_port))
            self._tcp.listen(128)
        except OSError as exc:
            self.close()
            raise OSError(exc.errno, f"guest service cannot bind {host} udp/{udp_port} "
                                     f"tcp/{tcp_port}: {exc.strerror}") from exc
        self._udp.setblocking(False)
        self._tcp.setblocking(False)
        self._sel.register(self._udp, selectors.EVENT_READ, "udp")
        self._sel.register(self._tcp, selectors.EVENT_READ, "listen")

    @property
    def location(self) -> str:
        return self._location.rstrip(b"\0").decode()

    @location.setter
    def location(self, value: str) -> None:
        raw = value.encode("ascii")
        if not 1 <= len(raw) <= 16:
            raise ValueError(f"location {value!r}: 1 to 16 ASCII characters expected")
        self._location = raw

    @property
    def addresses(self) -> tuple[tuple[str, int], tuple[str, int]]:
        """The bound (udp, tcp) addresses."""
        return self._udp.getsockname(), self._tcp.getsockname()

    def poll(self, timeout: float) -> None:
        """Serve whatever is ready, waiting at most ``timeout`` seconds for something."""
        for key, events in self._sel.select(timeout):
            kind = key.data
            if kind == "udp":
                self._serve_udp()
            elif kind == "listen":
                self._accept()
            else:
                conn = self._conns.get(key.fd)
                if conn is None:
                    continue
                if events & selectors.EVENT_WRITE:
                    self._flush(conn)
                if events & selectors.EVENT_READ and key.fd in self._conns:
                    self._read(conn)

    # --- UDP -------------------------------------------------------------------------------------

    def _serve_udp(self) -> None:
        for _ in range(_UDP_BURST):
            try:
                data, addr = self._udp.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            reply = echo_reply(data, self._location)
            if reply is None:
                self.stats["udp_ignored"] += 1
                continue
            try:
                self._udp.sendto(reply, addr)
                self.stats["udp_replies"] += 1
            except OSError as exc:    # buffer full or unreachable: a lost reply, as on a NIC
                self.stats["udp_send_errors"] += 1
                log.debug("udp reply to %s lost: %s", addr, exc)

    # --- TCP -------------------------------------------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                sock, _addr = self._tcp.accept()
            except (BlockingIOError, InterruptedError):
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conns[sock.fileno()] = _Conn(sock)
            self._sel.register(sock, selectors.EVENT_READ, "conn")
            self.stats["tcp_accepted"] += 1

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(conn)
            return
        if not data:
            self._drop(conn)
            return
        conn.inbuf += data
        while True:
            nl = conn.inbuf.find(b"\n")
            if nl < 0:
                break
            if nl > MAX_LINE:
                break
            line = bytes(conn.inbuf[:nl])
            del conn.inbuf[:nl + 1]
            conn.outbuf += handle_line(self.store, line)
            self.stats["tcp_requests"] += 1
        if len(conn.inbuf) > MAX_LINE and conn.inbuf.find(b"\n", 0, MAX_LINE + 1) < 0:
            self.stats["tcp_long_lines"] += 1
            log.info("closing a connection that sent a line over %d bytes", MAX_LINE)
            self._drop(conn)
            return
        self._flush(conn)

    def _flush(self, conn: _Conn) -> None:
        if conn.outbuf:
            try:
                sent = conn.sock.send(conn.outbuf)
                del conn.outbuf[:sent]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self._drop(conn)
                return
        events = selectors.EVENT_WRITE if conn.outbuf else 0
        if len(conn.outbuf) < _OUT_HIGH:
            events |= selectors.EVENT_READ
        self._sel.modify(conn.sock, events or selectors.EVENT_WRITE, "conn")

    def _drop(self, conn: _Conn) -> None:
        fd = conn.sock.fileno()
        self._conns.pop(fd, None)
        try:
            self._sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()

    def close(self) -> None:
        for conn in list(self._conns.values()):
            self._drop(conn)
        for sock in (self._udp, self._tcp):
            try:
                self._sel.unregister(sock)
            except (KeyError, ValueError):
                pass
            sock.close()
        self._sel.close()
